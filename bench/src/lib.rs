//! # tutti-bench
//!
//! Benchmarks of tutti: the nccl-tests-compatible bench CLI (later) and the
//! criterion micro-benchmarks in `benches/`. This library holds what they share.

/// GB/s (1e9 bytes per second) for `bytes` moved in `seconds`.
pub fn gbps(bytes: u64, seconds: f64) -> f64 {
    if seconds <= 0.0 {
        return 0.0;
    }
    bytes as f64 / seconds / 1e9
}
