//! # tutti-bench
//!
//! Benchmarks of tutti: the point-to-point benchmark `tutti-p2p` (osu_latency /
//! osu_bw style), the criterion micro-benchmarks in `benches/`, and what they share.

pub mod sizes;

/// GB/s (1e9 bytes per second) for `bytes` moved in `seconds`.
pub fn gbps(bytes: u64, seconds: f64) -> f64 {
    if seconds <= 0.0 {
        return 0.0;
    }
    bytes as f64 / seconds / 1e9
}
