//! `shm.pairs`: latency and bandwidth of every pair of ranks on a node, one pair
//! per node at a time (nodes in parallel), over the same-host rings of the group's
//! point-to-point engine.

use std::time::Duration;

use super::super::ValidateError;
use super::super::judge::{common_members, spread};
use super::super::report::{CheckResult, Status, Subject};
use super::super::runner::{Ctx, title};
use super::super::topology::Topology;
use super::pairs::{self, PairConfig, PairOutcome};

const ID: &str = "shm.pairs";
const BW: &str = "shm.pair_bandwidth_gbps";
const LAT: &str = "shm.pair_latency_us";

const CONFIG: PairConfig = PairConfig {
    message: 4 << 20,
    sample: Duration::from_millis(25),
    pings: 200,
};

/// How many times a suspect pair is measured again.
const RETRIES: usize = 2;

/// How pairs are described and grouped for judging.
pub struct PairView<'a> {
    /// The report subject of pair `(a, b)`.
    pub subject: &'a dyn Fn(usize, usize) -> Subject,
    /// The report subject of a member.
    pub member: &'a dyn Fn(usize) -> Subject,
    /// Pairs are only compared with pairs of the same class (same or different
    /// NUMA nodes).
    pub class: &'a dyn Fn(usize, usize) -> String,
    /// Bandwidth and latency metrics.
    pub metrics: (&'a str, &'a str),
}

/// Judges pair results (local pairs, node pairs) into `c`, each class against
/// its own median, and names a member of every bad pair.
pub fn judge_pairs(ctx: &Ctx, c: &mut CheckResult, results: &[PairOutcome], view: &PairView<'_>) {
    let rules = ctx.rules();
    let (bw_metric, lat_metric) = view.metrics;
    let mut classes: Vec<String> = Vec::new();
    for (a, b, _) in results {
        let k = (view.class)(*a, *b);
        if !classes.contains(&k) {
            classes.push(k);
        }
    }
    let mut bw_values = Vec::new();
    let mut lat_values = Vec::new();
    let mut measured = Vec::new();
    for class in &classes {
        let mut bw = Vec::new();
        let mut lat = Vec::new();
        for (a, b, r) in results
            .iter()
            .filter(|(a, b, _)| (view.class)(*a, *b) == *class)
        {
            let s = (view.subject)(*a, *b);
            match r {
                Ok(p) => {
                    bw.push((s.clone(), p.bandwidth()));
                    lat.push((s.clone(), p.latency_us));
                    c.details.push(format!(
                        "{s} [{class}]: {:.2} us, {:.2} GB/s ({a}->{b}) / {:.2} GB/s ({b}->{a})",
                        p.latency_us, p.bw_ab, p.bw_ba
                    ));
                }
                Err(e) => c.fail(s.clone(), format!("{s}: {e}")),
            }
        }
        bw_values.extend(bw.iter().map(|(_, v)| *v));
        lat_values.extend(lat.iter().map(|(_, v)| *v));
        let peers = format!("{class} pairs");
        measured.extend(rules.judge(bw_metric, bw, &peers));
        measured.extend(rules.judge(lat_metric, lat, &peers));
    }
    // A member of every bad pair is the likely culprit behind them.
    let failed = |s: &Subject| {
        measured
            .iter()
            .any(|m| &m.subject == s && m.status == Status::Fail)
            || c.culprits.iter().any(|k| &k.subject == s)
    };
    let marks: Vec<(usize, usize, bool)> = results
        .iter()
        .map(|(a, b, _)| (*a, *b, failed(&(view.subject)(*a, *b))))
        .collect();
    for (m, _, all) in common_members(&marks) {
        let who = (view.member)(m);
        c.fail(
            who.clone(),
            format!(
                "{who}: all {all} of its pairs are slow or failed, while pairs without it are fine"
            ),
        );
    }
    c.add(measured);
    c.summary = format!(
        "{} pairs: bandwidth {}, latency {}",
        results.len(),
        spread(&bw_values, "GB/s"),
        spread(&lat_values, "us")
    );
}

/// Measures pair turns, then the suspects again (up to `RETRIES` times).
pub fn measure_with_retries(
    ctx: &mut Ctx,
    what: &str,
    turns: &[Vec<(usize, usize)>],
    cfg: &PairConfig,
    view: &PairView<'_>,
) -> Result<Vec<PairOutcome>, ValidateError> {
    let mut results = pairs::measure_turns(ctx, what, turns, cfg)?;
    for attempt in 0..RETRIES {
        let again = pairs::suspect_pairs(&results, view, ctx.thresholds.relative_fraction);
        if again.is_empty() {
            break;
        }
        // One suspect at a time: nothing else competes with it.
        let turns: Vec<Vec<(usize, usize)>> = again.iter().map(|&p| vec![p]).collect();
        let what = format!("{what} (suspects, again {})", attempt + 1);
        let second = pairs::measure_turns(ctx, &what, &turns, cfg)?;
        for (a, b, r) in second {
            if let (Some(slot), Ok(p)) =
                (results.iter_mut().find(|(x, y, _)| *x == a && *y == b), r)
                && let Ok(old) = &slot.2
            {
                slot.2 = Ok(old.best(p));
            }
        }
    }
    Ok(results)
}

/// Local pairs in turns: turn `t` holds the `t`-th pair of every node.
fn local_turns(topo: &Topology) -> Vec<Vec<(usize, usize)>> {
    let per_node: Vec<Vec<(usize, usize)>> = topo
        .nodes
        .iter()
        .map(|n| {
            let mut v = Vec::new();
            for (i, &a) in n.ranks.iter().enumerate() {
                for &b in &n.ranks[i + 1..] {
                    v.push((a, b));
                }
            }
            v
        })
        .collect();
    let most = per_node.iter().map(Vec::len).max().unwrap_or(0);
    (0..most)
        .map(|t| per_node.iter().filter_map(|v| v.get(t).copied()).collect())
        .collect()
}

/// The check.
pub fn check(ctx: &mut Ctx) -> Result<Vec<CheckResult>, ValidateError> {
    let turns = local_turns(&ctx.topo);
    if turns.is_empty() {
        return Ok(vec![CheckResult::skipped(
            ID,
            title(ID),
            2,
            "every node runs one rank: no same-node pairs",
        )]);
    }
    let topo = ctx.topo.clone();
    let subject_of = |a: usize, b: usize| Subject::RankPair {
        a,
        b,
        node: topo.node_name(a),
    };
    let member = |r: usize| Subject::Rank {
        rank: r,
        node: topo.node_name(r),
    };
    let class = |a: usize, b: usize| topo.numa_class(a, b).to_string();
    let view = PairView {
        subject: &subject_of,
        member: &member,
        class: &class,
        metrics: (BW, LAT),
    };
    let results = measure_with_retries(ctx, "same-node pairs", &turns, &CONFIG, &view)?;
    let mut c = CheckResult::new(ID, title(ID), 2);
    judge_pairs(ctx, &mut c, &results, &view);
    Ok(vec![c])
}
