//! Choosing the algorithm and the pipeline chunk from an alpha-beta cost model.
//!
//! Each transport is described by `alpha`, the fixed cost of one message hop, and
//! `beta`, the cost per byte. For `n` ranks, `S` bytes and `k` chunks of `c = S/k`:
//!
//! - ring all_reduce: `2(n-1)` pipelined steps over segments of `S/n`:
//!   `T_ring = (2(n-1) + k_seg - 1) * (alpha + c * beta)`, `k_seg = S/(n c)`;
//! - double binary tree all_reduce: up and down a tree of depth `d = ceil(log2 n)`,
//!   each tree carrying `S/2`, interior ranks forwarding to two children:
//!   `T_tree = (2d + k_half - 1) * (alpha + 2 c beta)`, `k_half = S/(2c)`;
//! - direct (one hop) all_reduce, for buffers that fit one message: every rank sends
//!   `S` to each of the `n - 1` others and folds all `n` buffers itself:
//!   `T_direct = alpha + (n-1) S (beta + gamma)`, against the ring's reduction work of
//!   `2 (n-1)/n S gamma`, with `gamma` the reduction cost per byte.
//!
//! The ring wins on bandwidth (each byte crosses each link ~twice), the tree on
//! latency for many ranks (`log n` instead of `n` hops). The chunk is the largest the
//! links carry in one message, shrunk so each segment has at least two chunks to
//! pipeline. `TUTTI_ALGO` and `TUTTI_CHUNK_BYTES` override both choices.

use super::options::Algo;

pub use tutti_transport::registry::LinkCost;

/// Seconds per byte of CPU reduction (~15 GB/s, in cache).
const GAMMA: f64 = 1.0 / 15e9;

/// The tuner's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The algorithm.
    pub algo: Algo,
    /// Pipeline chunk in bytes (a multiple of 16).
    pub chunk: usize,
}

/// Picks an all_reduce algorithm and chunk for `bytes` over `n` ranks.
pub fn plan_all_reduce(
    bytes: usize,
    n: usize,
    cost: LinkCost,
    max_message: usize,
    forced: (Option<Algo>, Option<usize>),
) -> Plan {
    let chunk = forced
        .1
        .unwrap_or_else(|| pick_chunk(bytes / n.max(1), max_message))
        .min(max_message)
        .max(16);
    let algo = forced.0.unwrap_or_else(|| {
        // Tiny buffers: one hop always wins; skip the model on the latency path.
        if bytes <= 4096 && bytes <= max_message && n <= 16 {
            return Algo::Direct;
        }
        let c = chunk as f64;
        let s = bytes as f64;
        let nf = n as f64;
        let k_seg = (s / (nf * c)).ceil().max(1.0);
        let ring = (2.0 * (nf - 1.0) + k_seg - 1.0) * (cost.alpha + c.min(s / nf) * cost.beta)
            + 2.0 * (nf - 1.0) / nf * s * GAMMA;
        let d = nf.log2().ceil();
        let k_half = (s / (2.0 * c)).ceil().max(1.0);
        let tree =
            (2.0 * d + k_half - 1.0) * (cost.alpha + 2.0 * c.min(s / 2.0) * cost.beta) + s * GAMMA;
        let direct = cost.alpha + (nf - 1.0) * s * (cost.beta + GAMMA);
        if bytes <= max_message && n <= 16 && direct <= ring.min(tree) {
            Algo::Direct
        } else if n > 2 && tree < ring {
            Algo::Tree
        } else {
            Algo::Ring
        }
    });
    Plan { algo, chunk }
}

/// Where an all_reduce over several hosts runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Spread {
    /// One flat schedule over every rank's links.
    Flat(Plan),
    /// Inside each host on the window, between the hosts' leaders with this plan.
    Hier(Plan),
}

/// Per-message CPU overhead of a sender, as a fraction of a hop's latency: a rank
/// that sends `m` messages in a row pays it `m - 1` times (one-hop exchanges).
const SEND_OVERHEAD: f64 = 0.5;

/// Estimated seconds of the fastest flat all_reduce of `bytes` over `n` ranks: the
/// ring over `ring` links (every step moves one segment, chunk by chunk, over every
/// link at once), the double binary tree and the one-hop exchange over `mesh` links.
pub(crate) fn flat_seconds(
    bytes: usize,
    n: usize,
    ring: LinkCost,
    mesh: LinkCost,
    chunk: usize,
    max_message: usize,
) -> f64 {
    if n <= 1 {
        return 0.0;
    }
    let (s, nf, c) = (bytes as f64, n as f64, chunk.max(16) as f64);
    let seg = s / nf;
    let k_seg = (seg / c).ceil().max(1.0);
    let ring_t = 2.0 * (nf - 1.0) * ring.time(k_seg, seg) + (nf - 1.0) / nf * s * GAMMA;
    let d = nf.log2().ceil();
    let k_half = (s / (2.0 * c)).ceil().max(1.0);
    let tree_t = mesh.time(2.0 * d + 3.0 * k_half, 2.0 * s) + s * GAMMA;
    let direct_t = if bytes <= max_message {
        mesh.alpha * (1.0 + (nf - 2.0) * SEND_OVERHEAD) + (nf - 1.0) * s * (mesh.beta + GAMMA)
    } else {
        f64::INFINITY
    };
    ring_t.min(tree_t).min(direct_t)
}

/// Estimated seconds of the window part of a hierarchical all_reduce on `l` ranks
/// (reduce to the leader, then broadcast from it) with `window` costs and window
/// buffers of `window_bytes`: reduce rounds of half a buffer (two flag waits, a
/// copy in, a slice reduced, the slices copied out), broadcast rounds of a whole
/// buffer (a flag wait, a copy in, a copy out).
pub(crate) fn window_seconds(bytes: usize, l: usize, window: LinkCost, window_bytes: usize) -> f64 {
    if l <= 1 {
        return 0.0;
    }
    let s = bytes as f64;
    let reduce_rounds = (s / (window_bytes as f64 / 2.0)).ceil().max(1.0);
    let bcast_rounds = (s / window_bytes as f64).ceil().max(1.0);
    window.time(2.0 * reduce_rounds + bcast_rounds, 4.0 * s) + s * GAMMA
}

/// Picks flat or hierarchical for an all_reduce of `bytes` over the hosts of
/// `layout` (`window_bytes`: the windows' buffer size), and the plan of the
/// schedule over links. `forced` is `TUTTI_ALGO` (`hier`, or a flat link
/// algorithm) and `TUTTI_CHUNK_BYTES`.
pub(crate) fn plan_spread(
    bytes: usize,
    layout: &super::layout::Layout,
    window_bytes: usize,
    max_message: usize,
    forced: (Option<Algo>, Option<usize>),
) -> Spread {
    let n = layout.host_of.len();
    let h = layout.hosts.len();
    let costs = layout.costs;
    let leaders = || plan_all_reduce(bytes, h, costs.leaders, max_message, (None, forced.1));
    let flat = |algo: Option<Algo>| {
        Spread::Flat(plan_all_reduce(
            bytes,
            n,
            costs.ring,
            max_message,
            (algo, forced.1),
        ))
    };
    if !layout.is_hierarchical() {
        return flat(forced.0.filter(|a| a.uses_links()));
    }
    match forced.0 {
        Some(Algo::Hier) => return Spread::Hier(leaders()),
        Some(a) if a.uses_links() => return flat(Some(a)),
        _ => {}
    }
    let flat_chunk = forced
        .1
        .unwrap_or_else(|| pick_chunk(bytes / n.max(1), max_message));
    let flat_t = flat_seconds(bytes, n, costs.ring, costs.mesh, flat_chunk, max_message);
    let lp = leaders();
    let hier_t = window_seconds(bytes, layout.max_local(), costs.window, window_bytes)
        + flat_seconds(
            bytes,
            h,
            costs.leaders,
            costs.leaders,
            lp.chunk,
            max_message,
        );
    if hier_t <= flat_t {
        Spread::Hier(lp)
    } else {
        flat(None)
    }
}

/// How an all_reduce runs on the same-host window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowPlan {
    /// Up to one cache line of payload: the small-message lines.
    Line,
    /// Every rank reduces every window (one synchronisation per round).
    OneShot,
    /// Reduce-scatter by slices, then all-gather of the reduced slices.
    TwoShot,
}

/// Picks the window all_reduce for `bytes` over `n` local ranks (`forced` from
/// `TUTTI_ALGO`: `oneshot` or `twoshot`): the small-message lines up to one cache
/// line, then one-shot below the crossover the host probe measured for `n` ranks
/// ([`super::probe`]), two-shot from it.
pub fn plan_window(bytes: usize, n: usize, forced: Option<Algo>) -> WindowPlan {
    match forced {
        Some(Algo::TwoShot) => return WindowPlan::TwoShot,
        Some(Algo::OneShot) if bytes > tutti_transport::window::LINE_PAYLOAD => {
            return WindowPlan::OneShot;
        }
        _ => {}
    }
    if bytes <= tutti_transport::window::LINE_PAYLOAD {
        WindowPlan::Line
    } else if bytes < super::probe::window_crossover(n).two_shot_from {
        WindowPlan::OneShot
    } else {
        WindowPlan::TwoShot
    }
}

/// Chunk for other collectives: as large as one message, at least 2 per segment.
pub fn pick_chunk(segment: usize, max_message: usize) -> usize {
    let half = (segment / 2).next_multiple_of(16);
    half.clamp(4096.min(max_message), max_message)
        .next_multiple_of(16)
        .min(max_message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_messages_go_direct_mid_sizes_on_many_ranks_the_tree_large_ones_the_ring() {
        let tcp = LinkCost::tcp();
        let shm = LinkCost::shm(false);
        let plan = |b: usize, n: usize, c: LinkCost, m: usize| {
            plan_all_reduce(b, n, c, m, (None, None)).algo
        };
        assert_eq!(plan(8, 8, tcp, 1 << 19), Algo::Direct);
        assert_eq!(plan(8, 2, shm, 1 << 16), Algo::Direct);
        assert_eq!(plan(1 << 20, 16, tcp, 1 << 19), Algo::Tree);
        assert_eq!(plan(256 << 20, 8, tcp, 1 << 19), Algo::Ring);
        assert_eq!(plan(4 << 20, 2, shm, 1 << 16), Algo::Ring);
        // Too large for one message: never direct.
        assert_ne!(plan(1 << 20, 2, shm, 1 << 16), Algo::Direct);
        let forced = plan_all_reduce(256 << 20, 8, tcp, 1 << 19, (Some(Algo::Tree), Some(4096)));
        assert_eq!(
            forced,
            Plan {
                algo: Algo::Tree,
                chunk: 4096
            }
        );
    }

    fn layout(hosts: usize, per_host: usize, cores: usize) -> super::super::layout::Layout {
        use tutti_transport::registry::{PeerInfo, Selection, Topology};
        let topo = Topology {
            peers: (0..hosts * per_host)
                .map(|r| PeerInfo {
                    host: format!("h{}", r / per_host),
                    cores,
                    usable: vec!["window".into(), "shm".into(), "tcp".into()],
                })
                .collect(),
            threads: false,
        };
        super::super::layout::Layout::new(&topo, &Selection::auto())
    }

    #[test]
    fn several_hosts_go_hierarchical_for_latency_and_forced_choices_win() {
        let l = layout(4, 4, 8);
        let spread = |b: usize, forced| plan_spread(b, &l, 512 << 10, 512 << 10, (forced, None));
        for b in [8, 4096, 64 << 10, 1 << 20] {
            assert!(
                matches!(spread(b, None), Spread::Hier(_)),
                "{b}: {:?}",
                spread(b, None)
            );
        }
        assert!(matches!(
            spread(256 << 20, Some(Algo::Hier)),
            Spread::Hier(_)
        ));
        assert!(matches!(
            spread(8, Some(Algo::Ring)),
            Spread::Flat(Plan {
                algo: Algo::Ring,
                ..
            })
        ));
        // One rank per host, or one host: nothing to be hierarchical about.
        let flat = layout(4, 1, 8);
        assert!(matches!(
            plan_spread(
                1 << 20,
                &flat,
                512 << 10,
                512 << 10,
                (Some(Algo::Hier), None)
            ),
            Spread::Flat(_)
        ));
    }

    #[test]
    fn chunks_are_multiples_of_16_within_the_message_limit() {
        for seg in [0, 1, 100, 5000, 1 << 20, 1 << 30] {
            let c = pick_chunk(seg, 65536);
            assert!(
                c.is_multiple_of(16) && (4096..=65536).contains(&c),
                "{seg} -> {c}"
            );
        }
    }
}
