//! `links.pairs`: the pairwise link matrix between nodes. Each node's lowest rank
//! measures latency and bandwidth with every other node's, in round-robin rounds so
//! that a node is in one pair at a time; a pair below the relative rule is named
//! ("link node1<->node3: 0.05 GB/s, 0.02x the median of 6 pairs"), and a node whose
//! every link is bad is named instead of its links.

use std::time::Duration;

use super::super::ValidateError;
use super::super::report::{CheckResult, Subject};
use super::super::runner::{Ctx, title};
use super::super::topology::rounds;
use super::pairs::PairConfig;
use super::shm::{PairView, judge_pairs, measure_with_retries};

const ID: &str = "links.pairs";
const BW: &str = "links.pair_bandwidth_gbps";
const LAT: &str = "links.pair_latency_us";

const CONFIG: PairConfig = PairConfig {
    message: 4 << 20,
    sample: Duration::from_millis(40),
    pings: 100,
};

/// The check.
pub fn check(ctx: &mut Ctx) -> Result<Vec<CheckResult>, ValidateError> {
    let n = ctx.topo.nodes.len();
    if n < 2 {
        return Ok(vec![CheckResult::skipped(
            ID,
            title(ID),
            3,
            "one node: no links between nodes to measure",
        )]);
    }
    let leaders: Vec<usize> = ctx.topo.nodes.iter().map(|n| n.leader()).collect();
    let turns: Vec<Vec<(usize, usize)>> = rounds(n)
        .into_iter()
        .map(|round| {
            round
                .into_iter()
                .map(|(i, j)| (leaders[i], leaders[j]))
                .collect()
        })
        .collect();
    let topo = ctx.topo.clone();
    let subject_of = |a: usize, b: usize| Subject::NodePair {
        a: topo.node_name(a),
        b: topo.node_name(b),
    };
    let member = |r: usize| Subject::Node {
        node: topo.node_name(r),
    };
    let class = |_: usize, _: usize| "node".to_string();
    let view = PairView {
        subject: &subject_of,
        member: &member,
        class: &class,
        metrics: (BW, LAT),
    };
    let results = measure_with_retries(ctx, "node pairs", &turns, &CONFIG, &view)?;
    let mut c = CheckResult::new(ID, title(ID), 3);
    judge_pairs(ctx, &mut c, &results, &view);
    Ok(vec![c])
}
