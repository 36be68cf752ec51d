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
//! pipeline, except where the ranks of a host outnumber its cores ([`pick_chunk`]).
//! `TUTTI_ALGO` and `TUTTI_CHUNK_BYTES` override both choices.
//!
//! Each link's `alpha` and `beta` come from the transport registry (the entry that
//! connects the pair); a flat schedule is planned with its worst link. Ranks on
//! several hosts run all_reduce hierarchically ([`plan_spread`]): the window inside
//! each host, the leaders' all_reduce planned with the costs of their links.

use super::options::Algo;

pub use tutti_transport::registry::LinkCost;

/// Seconds per byte of CPU reduction (~15 GB/s, in cache).
const GAMMA: f64 = 1.0 / 15e9;

/// All_reduce sizes that run halving-doubling instead of the one-hop exchange, the
/// ring or the tree (power-of-two rank counts of 4 or more, over links). Its
/// `2 log2 n` exchanges beat the ring's `2 (n - 1)` steps while the hops cost more
/// than the bytes, and it sends each byte once where the one-hop exchange sends it to
/// every peer. 4 ranks over TCP on 2 cores (Intel Xeon, Emerald Rapids), interleaved
/// runs, time per all_reduce in us, halving-doubling / ring / one-hop: 8 KiB 40-62 /
/// 65-67 / 45-76, 32 KiB 61-83 / 133-147 / 80-95, 64 KiB 71-113 / 150-184 / 199-335,
/// 128 KiB 141-199 / 200-206 / 507-692, 256 KiB 242-549 / 301-348 / 930-1087, 512 KiB
/// 582-897 / 553-610, 1 MiB 1125-2086 / 1004-1321 (bench/RESULTS.md). On the AMD Zen
/// 4 an earlier halving-doubling (chunked like the ring) measured 0.38 GB/s at 64 KiB
/// against the ring's 0.31 and the one-hop exchange's 0.53. Below 32 KiB the one-hop
/// exchange ties or wins; at 256 KiB halving-doubling varies more than the ring and
/// the campaign's medians went the ring's way (`bench/campaign/out-s8-tcp2`: 1.03 GB/s
/// against 1.30 in `out-s8-tcp`), and from 512 KiB the ring's pipeline, which keeps
/// every link busy at once, wins.
const HALVING_DOUBLING: std::ops::RangeInclusive<usize> = (32 << 10) + 1..=128 << 10;

/// The tuner's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The algorithm.
    pub algo: Algo,
    /// Pipeline chunk in bytes (a multiple of 16).
    pub chunk: usize,
}

/// Picks an all_reduce algorithm and chunk for `bytes` over `n` ranks; `crowded`:
/// the ranks of some host outnumber its cores (see [`pick_chunk`]).
pub fn plan_all_reduce(
    bytes: usize,
    n: usize,
    cost: LinkCost,
    max_message: usize,
    crowded: bool,
    forced: (Option<Algo>, Option<usize>),
) -> Plan {
    let chunk = forced
        .1
        .unwrap_or_else(|| pick_chunk(bytes / n.max(1), max_message, crowded))
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
        if n >= 4 && n.is_power_of_two() && HALVING_DOUBLING.contains(&bytes) {
            Algo::HalvingDoubling
        } else if bytes <= max_message && n <= 16 && direct <= ring.min(tree) {
            Algo::Direct
        } else if n > 2 && tree < ring {
            Algo::Tree
        } else {
            Algo::Ring
        }
    });
    // Halving-doubling's exchanges are not pipelined across steps: its chunk only
    // bounds what a link holds, so it takes the largest the links carry.
    let chunk = match (algo, forced.1) {
        (Algo::HalvingDoubling, None) => (max_message / 16 * 16).max(16),
        _ => chunk,
    };
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

/// Picks flat or hierarchical for an all_reduce of `bytes` over the hosts of
/// `layout`, and the plan of the schedule over links. `forced` is `TUTTI_ALGO`
/// (`hier`, or a flat link algorithm) and `TUTTI_CHUNK_BYTES`.
///
/// A layout with several hosts, some with several ranks, runs hierarchically at every
/// size: between hosts it sends fewer messages (`2(H-1)` hops instead of `2(n-1)`)
/// and fewer bytes per host (`2(H-1)/H` of the buffer through the leader's link
/// instead of `2(n-1)/n`), and inside a host the window is the cheap path. Measured
/// on 16 ranks in 4 network namespaces on one 2-core machine (bench/RESULTS.md), it
/// was 1.7-4x faster than the flat ring up to 256 KiB, and from 1 MiB on 0.6-2.2x of
/// it depending on the sitting (this machine's noise); an alpha-beta
/// comparison of the two (window rounds plus the leaders' schedule against the
/// flat ring) ranked the flat ring first from 4 MiB, which no sitting confirmed, so
/// the layout alone decides. The leaders' plan comes from their links' cost
/// ([`plan_all_reduce`]).
pub(crate) fn plan_spread(
    bytes: usize,
    layout: &super::layout::Layout,
    max_message: usize,
    forced: (Option<Algo>, Option<usize>),
) -> Spread {
    let n = layout.host_of.len();
    let h = layout.hosts.len();
    let costs = layout.costs;
    let flat_algo = forced.0.filter(|a| a.uses_links());
    if !layout.is_hierarchical() || flat_algo.is_some() {
        return Spread::Flat(plan_all_reduce(
            bytes,
            n,
            costs.ring,
            max_message,
            layout.crowded,
            (flat_algo, forced.1),
        ));
    }
    Spread::Hier(plan_all_reduce(
        bytes,
        h,
        costs.leaders,
        max_message,
        layout.crowded,
        (None, forced.1),
    ))
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

/// Picks the window all_reduce for `bytes` (`forced` from `TUTTI_ALGO`: `oneshot` or
/// `twoshot`): the small-message lines up to one cache line, then one-shot below
/// `two_shot_from` (the crossover the window's members agreed on at group creation,
/// from the host probe, [`super::probe`]), two-shot from it. Every member must pass
/// the same value: the algorithms pair their posts.
pub fn plan_window(bytes: usize, two_shot_from: usize, forced: Option<Algo>) -> WindowPlan {
    match forced {
        Some(Algo::TwoShot) => return WindowPlan::TwoShot,
        Some(Algo::OneShot) if bytes > tutti_transport::window::LINE_PAYLOAD => {
            return WindowPlan::OneShot;
        }
        _ => {}
    }
    if bytes <= tutti_transport::window::LINE_PAYLOAD {
        WindowPlan::Line
    } else if bytes < two_shot_from {
        WindowPlan::OneShot
    } else {
        WindowPlan::TwoShot
    }
}

/// Pipeline chunk for a segment of `segment` bytes: as large as one message, at least
/// 2 per segment so that a rank forwards the first while the second arrives.
///
/// `crowded` (the ranks of some host outnumber its cores): one chunk per segment, up
/// to half a message. Ranks that take turns on a core gain little from overlapping
/// their steps, and every further chunk costs each rank a hand-off; chunks of a whole
/// message ran slower again. 4 ranks over TCP (512 KiB messages) on 2 cores (AMD Zen
/// 3), ring, busbw in GB/s, interleaved runs, two chunks per segment / one: 256 KiB
/// 0.49-0.73 / 0.75-1.05, 512 KiB 0.76-1.01 / 1.10-1.48, 1 MiB 0.77-1.22 / 1.08-1.33
/// (4 runs each); chunks of 512 KiB / 256 KiB: 2 MiB 0.98-1.16 / 0.72-1.11 (4 runs),
/// 4 MiB 1.24-1.45 / 1.37-1.43 (3 runs). Over shared-memory links one chunk per
/// segment measured the same as two (512 KiB: 5.06-5.57 / 5.12-5.49 GB/s).
/// bench/RESULTS.md, issue 17, "Eleventh session".
pub fn pick_chunk(segment: usize, max_message: usize, crowded: bool) -> usize {
    let want = if crowded {
        segment.min(max_message / 2)
    } else {
        segment / 2
    };
    want.next_multiple_of(16)
        .clamp(4096.min(max_message), max_message)
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
            plan_all_reduce(b, n, c, m, false, (None, None)).algo
        };
        assert_eq!(plan(8, 8, tcp, 1 << 19), Algo::Direct);
        assert_eq!(plan(8, 2, shm, 1 << 16), Algo::Direct);
        assert_eq!(plan(1 << 20, 16, tcp, 1 << 19), Algo::Tree);
        // Mid sizes on a power-of-two rank count of 4 or more: halving-doubling.
        assert_eq!(plan(64 << 10, 4, tcp, 1 << 19), Algo::HalvingDoubling);
        assert_ne!(plan(32 << 10, 4, tcp, 1 << 19), Algo::HalvingDoubling);
        assert_eq!(plan(128 << 10, 8, tcp, 1 << 19), Algo::HalvingDoubling);
        assert_ne!(plan(64 << 10, 6, tcp, 1 << 19), Algo::HalvingDoubling);
        assert_ne!(plan(64 << 10, 2, tcp, 1 << 19), Algo::HalvingDoubling);
        assert_ne!(plan(256 << 10, 4, tcp, 1 << 19), Algo::HalvingDoubling);
        assert_eq!(plan(256 << 20, 8, tcp, 1 << 19), Algo::Ring);
        assert_eq!(plan(4 << 20, 2, shm, 1 << 16), Algo::Ring);
        // Too large for one message: never direct.
        assert_ne!(plan(1 << 20, 2, shm, 1 << 16), Algo::Direct);
        let forced = plan_all_reduce(
            256 << 20,
            8,
            tcp,
            1 << 19,
            true,
            (Some(Algo::Tree), Some(4096)),
        );
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
    fn several_hosts_go_hierarchical_and_forced_choices_win() {
        let l = layout(4, 4, 8);
        let spread = |b: usize, forced| plan_spread(b, &l, 512 << 10, (forced, None));
        for b in [8, 4096, 64 << 10, 1 << 20, 256 << 20] {
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
            plan_spread(1 << 20, &flat, 512 << 10, (Some(Algo::Hier), None)),
            Spread::Flat(_)
        ));
    }

    #[test]
    fn chunks_are_multiples_of_16_within_the_message_limit() {
        for seg in [0, 1, 100, 5000, 1 << 20, 1 << 30] {
            for crowded in [false, true] {
                let c = pick_chunk(seg, 65536, crowded);
                assert!(
                    c.is_multiple_of(16) && (4096..=65536).contains(&c),
                    "{seg} {crowded} -> {c}"
                );
            }
        }
    }

    #[test]
    fn crowded_hosts_send_one_chunk_per_segment() {
        assert_eq!(pick_chunk(256 << 10, 512 << 10, false), 128 << 10);
        assert_eq!(pick_chunk(256 << 10, 512 << 10, true), 256 << 10);
        assert_eq!(pick_chunk(4 << 20, 512 << 10, true), 256 << 10);
        assert_eq!(pick_chunk(4 << 20, 512 << 10, false), 512 << 10);
        assert_eq!(pick_chunk(1000, 512 << 10, true), 4096);
        let tcp = LinkCost::tcp();
        let plan = |crowded| plan_all_reduce(1 << 20, 4, tcp, 512 << 10, crowded, (None, None));
        assert_eq!(plan(false).chunk, 128 << 10);
        assert_eq!(plan(true).chunk, 256 << 10);
        assert_eq!(plan(true).algo, plan(false).algo);
        // Every rank on a host with cores enough: not crowded.
        assert!(!layout(2, 4, 8).crowded);
        assert!(layout(2, 4, 2).crowded);
    }
}
