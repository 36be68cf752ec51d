//! Verdicts: a measured value against the absolute bounds of the thresholds, and
//! against the median of its peers (the relative rule: below `fraction x median`
//! fails for bandwidths, above `median / fraction` for latencies).

use super::metrics::{self, Better, Metric};
use super::report::{Measurement, Status, Subject, number, with_unit};
use super::thresholds::Thresholds;

/// Fewest peers the relative rule needs: with two values there is no telling
/// which one is bad.
pub const MIN_PEERS: usize = 3;

/// The median of `values` (finite ones; `None` if there are none).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// How a set of peers is judged.
#[derive(Clone, Copy, Debug)]
pub struct Rules<'a> {
    /// The absolute bounds (a file or a shipped class).
    pub thresholds: &'a Thresholds,
    /// Bounds used for the metrics `thresholds` says nothing about.
    pub defaults: &'a Thresholds,
    /// Whether the relative rule applies.
    pub relative: bool,
}

impl Rules<'_> {
    /// The bound on `metric` and where it comes from.
    fn bound(&self, metric: &str) -> (super::thresholds::Bound, String) {
        let b = self.thresholds.bound(metric);
        if b.min.is_some() || b.max.is_some() || b.require.is_some() {
            return (b, self.thresholds.label());
        }
        (self.defaults.bound(metric), self.defaults.label())
    }

    /// Judges one metric's values over a set of peers (`peers`: what they are, for
    /// messages: `ranks`, `pairs`, `GPUs`).
    pub fn judge(
        &self,
        metric: &str,
        samples: Vec<(Subject, f64)>,
        peers: &str,
    ) -> Vec<Measurement> {
        let m = metrics::get(metric);
        let (bound, label) = self.bound(metric);
        let values: Vec<f64> = samples.iter().map(|(_, v)| *v).collect();
        let med = if self.relative && m.relative && samples.len() >= MIN_PEERS {
            median(&values).filter(|&x| x > 0.0)
        } else {
            None
        };
        let frac = self.thresholds.relative_fraction;
        samples
            .into_iter()
            .map(|(subject, value)| {
                let mut out = Measurement::new(subject, metric, value);
                let mut notes: Vec<String> = Vec::new();
                if bound.min.is_some() || bound.max.is_some() || bound.require.is_some() {
                    out.bound_source = Some(label.clone());
                }
                out.min = bound.min;
                out.max = bound.max;
                if let Some(lo) = bound.min
                    && (value < lo || value.is_nan())
                {
                    notes.push(format!(
                        "{}: {} is below the required {} ({})",
                        out.subject,
                        with_unit(value, m.unit),
                        with_unit(lo, m.unit),
                        label
                    ));
                }
                if let Some(hi) = bound.max
                    && (value > hi || value.is_nan())
                {
                    notes.push(format!(
                        "{}: {} is above the allowed {} ({})",
                        out.subject,
                        with_unit(value, m.unit),
                        with_unit(hi, m.unit),
                        label
                    ));
                }
                if let Some(want) = bound.require
                    && (value != 0.0) != want
                {
                    notes.push(format!(
                        "{}: {} is {}, required {} ({})",
                        out.subject,
                        m.name,
                        yes_no(value != 0.0),
                        yes_no(want),
                        label
                    ));
                }
                if let Some(med) = med {
                    let ratio = value / med;
                    out.median = Some(med);
                    out.ratio = Some(ratio);
                    out.peers = Some(values.len());
                    if relative_fail(m, value, med, frac) {
                        notes.push(relative_note(
                            m,
                            &out.subject,
                            value,
                            ratio,
                            med,
                            values.len(),
                            peers,
                        ));
                    }
                }
                if !notes.is_empty() {
                    out.status = Status::Fail;
                    out.note = Some(notes.join("; "));
                }
                out
            })
            .collect()
    }

    /// Judges a single value (no peers).
    pub fn judge_one(&self, metric: &str, subject: Subject, value: f64) -> Measurement {
        let mut v = self.judge(metric, vec![(subject, value)], "");
        v.pop()
            .unwrap_or_else(|| Measurement::new(Subject::Job, metric, value))
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Whether `value` breaks the relative rule for `m` against `median`: below
/// `fraction x median` (higher is better) or above `median / fraction` (lower is
/// better), and farther from the median than the metric's slack.
pub fn relative_fail(m: &Metric, value: f64, median: f64, fraction: f64) -> bool {
    let ratio = value / median;
    let beyond = match m.better {
        Better::Higher => ratio < fraction || ratio.is_nan(),
        Better::Lower => ratio > 1.0 / fraction || ratio.is_nan(),
        Better::Flag | Better::Bounded => false,
    };
    let distance = (value - median).abs();
    beyond && (distance > m.slack || distance.is_nan())
}

fn relative_note(
    m: &Metric,
    subject: &Subject,
    value: f64,
    ratio: f64,
    median: f64,
    n: usize,
    peers: &str,
) -> String {
    format!(
        "{subject}: {}, {:.2}x the median of {n} {peers} ({})",
        with_unit(value, m.unit),
        ratio,
        with_unit(median, m.unit),
    )
}

/// Subjects whose values break the relative rule (candidates for a second
/// measurement before they are condemned).
pub fn suspects(metric: &str, samples: &[(Subject, f64)], fraction: f64) -> Vec<Subject> {
    let m = metrics::get(metric);
    if !m.relative || samples.len() < MIN_PEERS {
        return Vec::new();
    }
    let values: Vec<f64> = samples.iter().map(|(_, v)| *v).collect();
    let Some(med) = median(&values).filter(|&x| x > 0.0) else {
        return Vec::new();
    };
    samples
        .iter()
        .filter(|(_, v)| relative_fail(m, *v, med, fraction))
        .map(|(s, _)| s.clone())
        .collect()
}

/// Members (ranks, nodes, GPUs) that are in every failing pair they belong to, in
/// at least two failing pairs, while pairs without them pass: the likely bad part
/// behind several bad pairs. `pairs` are `(a, b, failed)`.
pub fn common_members<K: Clone + PartialEq>(pairs: &[(K, K, bool)]) -> Vec<(K, usize, usize)> {
    let mut members: Vec<K> = Vec::new();
    for (a, b, _) in pairs {
        for k in [a, b] {
            if !members.contains(k) {
                members.push(k.clone());
            }
        }
    }
    let mut out = Vec::new();
    for k in members {
        let mine: Vec<bool> = pairs
            .iter()
            .filter(|(a, b, _)| *a == k || *b == k)
            .map(|(_, _, f)| *f)
            .collect();
        let others_pass = pairs
            .iter()
            .filter(|(a, b, _)| *a != k && *b != k)
            .any(|(_, _, f)| !f);
        let failed = mine.iter().filter(|f| **f).count();
        if failed >= 2 && failed == mine.len() && others_pass {
            out.push((k, failed, mine.len()));
        }
    }
    out
}

/// The values that differ from a strict majority, with their indices (empty when
/// all agree or no value holds a majority).
pub fn common_majority(values: &[String]) -> Vec<(usize, String)> {
    let n = values.len();
    let Some(mode) = values
        .iter()
        .max_by_key(|v| values.iter().filter(|w| w == v).count())
    else {
        return Vec::new();
    };
    if values.iter().filter(|v| *v == mode).count() * 2 <= n {
        return Vec::new();
    }
    values
        .iter()
        .enumerate()
        .filter(|(_, v)| *v != mode)
        .map(|(i, v)| (i, v.clone()))
        .collect()
}

/// `a, b and c`.
pub fn list<T: std::fmt::Display>(items: &[T]) -> String {
    let s: Vec<String> = items.iter().map(ToString::to_string).collect();
    match s.len() {
        0 => String::new(),
        1 => s[0].clone(),
        n => format!("{} and {}", s[..n - 1].join(", "), s[n - 1]),
    }
}

/// `min .. max (median m)` of a set of values, for summaries.
pub fn spread(values: &[f64], unit: &str) -> String {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let (Some(lo), Some(hi), Some(med)) = (
        finite.iter().copied().reduce(f64::min),
        finite.iter().copied().reduce(f64::max),
        median(&finite),
    ) else {
        return "no values".into();
    };
    if finite.len() == 1 {
        return with_unit(lo, unit);
    }
    format!(
        "median {} (min {}, max {})",
        with_unit(med, unit),
        number(lo),
        number(hi)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rank(r: usize) -> Subject {
        Subject::Rank {
            rank: r,
            node: "n".into(),
        }
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn the_slow_peer_fails_with_its_ratio() {
        let t = Thresholds::relative(0.75);
        let rules = Rules {
            thresholds: &t,
            defaults: &t,
            relative: true,
        };
        let ms = rules.judge(
            "memory.copy_gbps",
            vec![
                (rank(0), 10.0),
                (rank(1), 9.5),
                (rank(2), 2.1),
                (rank(3), 10.5),
            ],
            "ranks",
        );
        let bad: Vec<_> = ms.iter().filter(|m| m.status == Status::Fail).collect();
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].subject, rank(2));
        let note = bad[0].note.as_deref().unwrap();
        assert!(
            note.contains("rank 2 (n): 2.10 GB/s, 0.22x the median of 4 ranks (9.75 GB/s)"),
            "{note}"
        );
        // Latency: lower is better.
        let ms = rules.judge(
            "links.pair_latency_us",
            vec![(rank(0), 30.0), (rank(1), 31.0), (rank(2), 500.0)],
            "pairs",
        );
        assert_eq!(ms.iter().filter(|m| m.status == Status::Fail).count(), 1);
        assert_eq!(ms[2].status, Status::Fail);
        // Within the slack: 3.5 us against a median of 1.4 us is jitter.
        let ms = rules.judge(
            "shm.pair_latency_us",
            vec![(rank(0), 1.4), (rank(1), 1.3), (rank(2), 3.5)],
            "pairs",
        );
        assert!(ms.iter().all(|m| m.status == Status::Pass));
    }

    #[test]
    fn absolute_bounds_name_measured_and_required() {
        let t = Thresholds::parse(
            &format!(
                "format = \"{}\"\nname = \"big\"\n[min]\n\"memory.copy_gbps\" = 1000\n[require]\n\"gpu.ecc_enabled\" = true",
                super::super::thresholds::FORMAT
            ),
            "big.toml",
        )
        .unwrap();
        let d = Thresholds::relative(0.75);
        let rules = Rules {
            thresholds: &t,
            defaults: &d,
            relative: false,
        };
        let m = rules.judge_one("memory.copy_gbps", rank(1), 9.0);
        assert_eq!(m.status, Status::Fail);
        assert_eq!(
            m.note.as_deref(),
            Some("rank 1 (n): 9 GB/s is below the required 1000 GB/s (thresholds big)")
        );
        let m = rules.judge_one("gpu.ecc_enabled", rank(1), 0.0);
        assert!(m.note.unwrap().contains("is no, required yes"));
    }

    #[test]
    fn a_member_of_every_bad_pair_is_named() {
        let pairs = vec![
            (0, 1, false),
            (0, 2, true),
            (0, 3, false),
            (1, 2, true),
            (1, 3, false),
            (2, 3, true),
        ];
        assert_eq!(common_members(&pairs), vec![(2, 3, 3)]);
        // One bad pair: no common member.
        let pairs = vec![(0, 1, false), (0, 2, true), (1, 2, false)];
        assert!(common_members(&pairs).is_empty());
    }

    #[test]
    fn the_odd_value_out() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            common_majority(&v(&["a", "a", "b"])),
            vec![(2, "b".to_string())]
        );
        assert!(common_majority(&v(&["a", "b"])).is_empty());
        assert!(common_majority(&v(&["a", "a"])).is_empty());
    }
}
