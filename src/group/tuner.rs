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

/// Cost of one message hop and of one byte on a transport.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkCost {
    /// Seconds per message hop.
    pub alpha: f64,
    /// Seconds per byte.
    pub beta: f64,
}

/// Seconds per byte of CPU reduction (~15 GB/s, in cache).
const GAMMA: f64 = 1.0 / 15e9;

impl LinkCost {
    /// Shared memory, measured on a 2-core host: ~1 us per hop when ranks have
    /// their own cores (more when they share), ~8 GB/s through a FIFO.
    pub fn shm(oversubscribed: bool) -> Self {
        LinkCost {
            alpha: if oversubscribed { 5e-6 } else { 1e-6 },
            beta: 1.0 / 8e9,
        }
    }

    /// TCP: ~15 us per hop, ~3 GB/s (loopback; slower networks only change the
    /// balance further towards the ring for large messages).
    pub fn tcp() -> Self {
        LinkCost {
            alpha: 15e-6,
            beta: 1.0 / 3e9,
        }
    }
}

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
