//! The report of a validation run: checks with their verdicts, measurements and
//! culprits, and its JSON form.
//!
//! # JSON schema `tutti-validate/1`
//!
//! `tutti validate --json FILE` writes one object (the [`Report`] below, field for
//! field). Fields are only ever added within a schema version; a field removed or
//! changed in meaning bumps the version in `schema`.
//!
//! ```text
//! {
//!   "schema": "tutti-validate/1",
//!   "tutti_version": "0.1.0",
//!   "status": "pass" | "fail",          // fail when any check failed
//!   "exit_code": 0 | 1,
//!   "level": 1..3,
//!   "started_unix_s": 1764000000.0, "duration_s": 41.2,
//!   "world_size": 4,
//!   "nodes": [ { "name": "host1", "hostname": "host1", "ranks": [0, 1, 2, 3],
//!                "inventory": { ...facts of the node, see HostInventory... } } ],
//!   "thresholds": { "name": "h200" | "relative", "source": "...", "relative_fraction": 0.75 },
//!   "require": ["gpu"],
//!   "counts": { "pass": 10, "fail": 1, "skip": 4 },
//!   "checks": [ {
//!       "id": "shm.pairs", "title": "...", "level": 2,
//!       "status": "pass" | "fail" | "skip",
//!       "summary": "one line for people",
//!       "reason": "why it was skipped (skip only)",
//!       "duration_s": 1.9,
//!       "culprits": [ { "subject": {"kind": "rank", "rank": 2, "node": "host1"},
//!                       "reason": "..." } ],
//!       "measurements": [ { "subject": {...}, "metric": "shm.pair_bandwidth_gbps",
//!                           "value": 5.1, "unit": "GB/s", "status": "pass",
//!                           "median": 5.0, "ratio": 1.02, "peers": 6,
//!                           "min": 1.0, "max": null, "bound_source": "...",
//!                           "note": "..." } ],
//!       "details": ["free-form lines"] } ]
//! }
//! ```
//!
//! A subject's `kind` is one of `job`, `node` (`node`), `rank` (`rank`, `node`),
//! `rank_pair` (`a`, `b`, `node`), `link` (directed: `src`, `dst`), `node_pair`
//! (`a`, `b`: node names), `gpu` (`node`, `index`), `gpu_pair` (`node`, `a`, `b`),
//! `rdma_port` (`node`, `device`, `port`). Metric names are those of
//! [`metrics::METRICS`](super::metrics::METRICS); `value` is a number (flags are 0
//! or 1; an unlimited limit is `null` in JSON and `inf` in tables).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The schema version of the JSON report.
pub const SCHEMA: &str = "tutti-validate/1";

/// The outcome of a check or a measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Within every bound.
    Pass,
    /// Outside a bound, wrong data, or an error.
    Fail,
    /// Not run (the reason says why).
    Skip,
}

impl Status {
    /// `PASS`, `FAIL`, `SKIP`.
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }
}

/// What a measurement or a culprit is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Subject {
    /// The whole job.
    Job,
    /// A node (host).
    Node {
        /// Node name.
        node: String,
    },
    /// A rank.
    Rank {
        /// Global rank.
        rank: usize,
        /// Its node.
        node: String,
    },
    /// Two ranks of one node.
    RankPair {
        /// Lower rank.
        a: usize,
        /// Higher rank.
        b: usize,
        /// Their node.
        node: String,
    },
    /// Data sent by `src` and received by `dst`.
    Link {
        /// Sending rank.
        src: usize,
        /// Receiving rank.
        dst: usize,
    },
    /// Two nodes.
    NodePair {
        /// First node.
        a: String,
        /// Second node.
        b: String,
    },
    /// A GPU.
    Gpu {
        /// Its node.
        node: String,
        /// NVML / CUDA index on that node.
        index: u32,
    },
    /// Two GPUs of one node.
    GpuPair {
        /// Their node.
        node: String,
        /// First GPU.
        a: u32,
        /// Second GPU.
        b: u32,
    },
    /// An RDMA port.
    RdmaPort {
        /// Its node.
        node: String,
        /// Device name (`mlx5_0`).
        device: String,
        /// Port number.
        port: u32,
    },
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Job => f.write_str("job"),
            Subject::Node { node } => write!(f, "node {node}"),
            Subject::Rank { rank, node } => write!(f, "rank {rank} ({node})"),
            Subject::RankPair { a, b, node } => write!(f, "ranks {a}<->{b} ({node})"),
            Subject::Link { src, dst } => write!(f, "data from rank {src} to rank {dst}"),
            Subject::NodePair { a, b } => write!(f, "link {a}<->{b}"),
            Subject::Gpu { node, index } => write!(f, "GPU {index} of {node}"),
            Subject::GpuPair { node, a, b } => write!(f, "GPUs {a}<->{b} of {node}"),
            Subject::RdmaPort { node, device, port } => write!(f, "{device} port {port} of {node}"),
        }
    }
}

/// One measured value and its verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// What was measured.
    pub subject: Subject,
    /// The metric's name (see [`metrics`](super::metrics)).
    pub metric: String,
    /// The value (`None`: unlimited).
    #[serde(with = "finite_or_null")]
    pub value: f64,
    /// Unit.
    pub unit: String,
    /// The verdict.
    pub status: Status,
    /// Median over the peers compared with (relative metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median: Option<f64>,
    /// `value / median`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// How many values the median is over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<usize>,
    /// The lower bound applied (absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// The upper bound applied (absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Where the bound came from (`thresholds h200 (class)`, `built-in`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_source: Option<String>,
    /// Why it failed, or anything else worth saying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Measurement {
    /// A passing measurement with no bound yet.
    pub fn new(subject: Subject, metric: &str, value: f64) -> Self {
        let unit = super::metrics::find(metric).map_or("", |m| m.unit);
        Measurement {
            subject,
            metric: metric.to_string(),
            value,
            unit: unit.to_string(),
            status: Status::Pass,
            median: None,
            ratio: None,
            peers: None,
            min: None,
            max: None,
            bound_source: None,
            note: None,
        }
    }

    /// `5.12 GB/s`, `inf GiB`, `3`.
    pub fn value_text(&self) -> String {
        with_unit(self.value, &self.unit)
    }
}

/// `value unit`, numbers shortened for people.
pub fn with_unit(v: f64, unit: &str) -> String {
    let n = number(v);
    if unit.is_empty() {
        n
    } else {
        format!("{n} {unit}")
    }
}

/// A number for people: integers plainly, others with 3 significant digits.
pub fn number(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if v.is_nan() {
        return "nan".into();
    }
    if v == v.trunc() && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// A part that is bad, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Culprit {
    /// The rank, pair, link, node or GPU.
    pub subject: Subject,
    /// The evidence, one line.
    pub reason: String,
}

/// The result of one check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Stable identifier (`shm.pairs`, `collectives.all_reduce`).
    pub id: String,
    /// What it checks, for people.
    pub title: String,
    /// The level it belongs to.
    pub level: u8,
    /// The verdict.
    pub status: Status,
    /// One line for the table.
    pub summary: String,
    /// Why it was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Wall time of the check.
    pub duration_s: f64,
    /// The bad parts (failed checks).
    #[serde(default)]
    pub culprits: Vec<Culprit>,
    /// Every value measured.
    #[serde(default)]
    pub measurements: Vec<Measurement>,
    /// Further lines (errors seen by ranks, evidence).
    #[serde(default)]
    pub details: Vec<String>,
}

impl CheckResult {
    /// A check that ran; its status follows its measurements (and `failed`).
    pub fn new(id: &str, title: &str, level: u8) -> Self {
        CheckResult {
            id: id.to_string(),
            title: title.to_string(),
            level,
            status: Status::Pass,
            summary: String::new(),
            reason: None,
            duration_s: 0.0,
            culprits: Vec::new(),
            measurements: Vec::new(),
            details: Vec::new(),
        }
    }

    /// A skipped check.
    pub fn skipped(id: &str, title: &str, level: u8, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        CheckResult {
            status: Status::Skip,
            summary: reason.clone(),
            reason: Some(reason),
            ..CheckResult::new(id, title, level)
        }
    }

    /// Marks the check failed with `culprit`.
    pub fn fail(&mut self, subject: Subject, reason: impl Into<String>) {
        self.status = Status::Fail;
        let reason = reason.into();
        if !self
            .culprits
            .iter()
            .any(|c| c.subject == subject && c.reason == reason)
        {
            self.culprits.push(Culprit { subject, reason });
        }
    }

    /// Adds measurements; a failing one fails the check and names its subject.
    pub fn add(&mut self, ms: Vec<Measurement>) {
        for m in ms {
            if m.status == Status::Fail {
                let why = m
                    .note
                    .clone()
                    .unwrap_or_else(|| format!("{} = {}", m.metric, m.value_text()));
                self.fail(m.subject.clone(), why);
            }
            self.measurements.push(m);
        }
    }
}

/// Facts about a node, gathered at level 1 (also in the JSON).
pub use super::checks::inventory::HostInventory;

/// A node of the job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    /// Name used in the report (the hostname, made unique).
    pub name: String,
    /// The hostname.
    pub hostname: String,
    /// Its ranks.
    pub ranks: Vec<usize>,
    /// What level 1 found on it.
    pub inventory: Option<HostInventory>,
}

/// Which thresholds were applied.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThresholdsInfo {
    /// Class name (`h200`), or `relative` when no file applied.
    pub name: String,
    /// Where they came from.
    pub source: String,
    /// The fraction of the median below which a peer fails.
    pub relative_fraction: f64,
}

/// Check counts per status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Passed checks.
    pub pass: usize,
    /// Failed checks.
    pub fail: usize,
    /// Skipped checks.
    pub skip: usize,
}

/// A whole run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`SCHEMA`].
    pub schema: String,
    /// The tutti that ran.
    pub tutti_version: String,
    /// `pass` or `fail`.
    pub status: Status,
    /// 0 (pass) or 1 (a check failed).
    pub exit_code: u8,
    /// The level run.
    pub level: u8,
    /// Start time (seconds since the Unix epoch).
    pub started_unix_s: f64,
    /// Wall time of the run.
    pub duration_s: f64,
    /// Number of ranks.
    pub world_size: usize,
    /// The nodes.
    pub nodes: Vec<NodeReport>,
    /// The thresholds applied.
    pub thresholds: ThresholdsInfo,
    /// Hardware required (`gpu`, `rdma`).
    pub require: Vec<String>,
    /// Check counts.
    pub counts: Counts,
    /// The checks, in the order run.
    pub checks: Vec<CheckResult>,
}

impl Report {
    /// Fills `status`, `exit_code` and `counts` from the checks.
    pub fn finish(&mut self) {
        let mut c = Counts::default();
        for k in &self.checks {
            match k.status {
                Status::Pass => c.pass += 1,
                Status::Fail => c.fail += 1,
                Status::Skip => c.skip += 1,
            }
        }
        self.counts = c;
        self.status = if c.fail > 0 {
            Status::Fail
        } else {
            Status::Pass
        };
        self.exit_code = u8::from(c.fail > 0);
    }

    /// The check with id `id`.
    pub fn check(&self, id: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.id == id)
    }

    /// Pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

/// Infinite values (an unlimited limit) as JSON `null`.
mod finite_or_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_for_people() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(5.1234), "5.12");
        assert_eq!(number(12.345), "12.3");
        assert_eq!(number(0.2134), "0.213");
        assert_eq!(number(f64::INFINITY), "inf");
        assert_eq!(with_unit(1.5, "GB/s"), "1.50 GB/s");
    }

    #[test]
    fn failing_measurement_fails_the_check_and_names_it() {
        let mut c = CheckResult::new("x", "x", 2);
        let mut m = Measurement::new(
            Subject::Rank {
                rank: 2,
                node: "n".into(),
            },
            "memory.copy_gbps",
            1.0,
        );
        m.status = Status::Fail;
        m.note = Some("too slow".into());
        c.add(vec![m]);
        assert_eq!(c.status, Status::Fail);
        assert_eq!(c.culprits[0].reason, "too slow");
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains("\"kind\":\"rank\""), "{json}");
        let back: CheckResult = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
    }
}
