//! How much data this host's caches hold for a job on all its cores: one thread per
//! core each copies its own source buffer into its own destination buffer, over and
//! over, for growing working sets (every thread's source and destination together),
//! and the program prints the copy speed per thread at each, then the largest working
//! set whose speed is still at least 0.8x the best (the measured cache; the no-cliff
//! rule of issue 18 names it next to the nominal last-level cache, which a virtual
//! machine shares with other guests).
//!
//! ```text
//! cargo run --release -p tutti-transport --example cache_sweep -- [THREADS] [MAX_MIB]
//! ```
//! Defaults: one thread per core, working sets from 1 MiB to 40 MiB in steps of 2 MiB
//! from 8 MiB (about 5 s).

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::Instant;

/// Bytes each thread copies per measurement (about 0.1 s in cache).
const BYTES_PER_POINT: usize = 3 << 30;

fn main() {
    let mut args = std::env::args().skip(1);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let threads: usize = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(cores)
        .max(1);
    let max_mib: usize = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40)
        .max(1);
    let mut sets: Vec<usize> = vec![1, 2, 4, 6];
    sets.extend((8..=max_mib).step_by(2));
    sets.retain(|&s| s <= max_mib);
    let mut rows = Vec::new();
    for &mib in &sets {
        let per = (mib << 20) / (2 * threads);
        let speeds = measure(threads, per);
        let mean = speeds.iter().sum::<f64>() / threads as f64;
        let each: Vec<String> = speeds.iter().map(|v| format!("{v:.1}")).collect();
        println!(
            "cache_sweep {threads} threads, working set {mib:>3} MiB ({} KiB per buffer): {mean:.1} GB/s copied per thread ({})",
            per >> 10,
            each.join(" ")
        );
        rows.push((mib, mean));
    }
    let best = rows.iter().map(|r| r.1).fold(0.0, f64::max);
    let holds = rows
        .iter()
        .take_while(|r| r.1 >= 0.8 * best)
        .last()
        .map_or(0, |r| r.0);
    println!(
        "cache_sweep: measured cache {holds} MiB ({threads} threads keep >= 0.8x of the best {best:.1} GB/s up to that working set)"
    );
}

/// Copy speed (GB/s) of each of `threads` threads copying `per` bytes at once.
fn measure(threads: usize, per: usize) -> Vec<f64> {
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let src = vec![t as u8 + 1; per];
                let mut dst = vec![0u8; per];
                let rounds = (BYTES_PER_POINT / per.max(1)).clamp(4, 100_000);
                for _ in 0..3 {
                    dst.copy_from_slice(black_box(&src));
                }
                barrier.wait();
                let start = Instant::now();
                for _ in 0..rounds {
                    dst.copy_from_slice(black_box(&src));
                    black_box(&mut dst);
                }
                let secs = start.elapsed().as_secs_f64();
                barrier.wait();
                assert_eq!(dst[per / 2], t as u8 + 1, "the copy moved the wrong bytes");
                (per * rounds) as f64 / secs / 1e9
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("a copying thread panicked"))
        .collect()
}
