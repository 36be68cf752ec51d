//! # tutti-bench
//!
//! Benchmarks of tutti: the nccl-tests-compatible collective benchmark `tutti-bench`
//! (also `tutti bench`; [`runner`] has the flow, [`cli`] the flags), the
//! point-to-point benchmark `tutti-p2p` (osu_latency / osu_bw style), the criterion
//! micro-benchmarks in `benches/`, and what they share.

#![warn(missing_docs)]

pub mod cli;
pub mod collectives;
pub mod compare;
pub mod data;
pub mod device;
pub mod output;
pub mod plot;
pub mod progress;
pub mod runner;
pub mod sizes;
pub mod table;

/// GB/s (1e9 bytes per second) for `bytes` moved in `seconds`.
pub fn gbps(bytes: u64, seconds: f64) -> f64 {
    if seconds <= 0.0 {
        return 0.0;
    }
    bytes as f64 / seconds / 1e9
}
