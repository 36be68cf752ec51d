//! All_reduce between thread ranks of one process (`ProcessGroup::run_threads`),
//! two-shot window path with and without reading the other ranks' inputs directly
//! (`GroupOptions::window_direct`), interleaved; f32 Sum out of place, time per
//! operation and nccl-tests' busbw, every element checked.
//! `cargo run --release --example thread_ranks -- [ranks]`.

use std::time::Instant;

use tutti::{DirectReads, GroupOptions, ProcessGroup, ReduceOp};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(2, |v| v.parse().expect("ranks: a number"));
    println!("# {n} thread ranks, f32 sum, out of place");
    println!(
        "# {:>9} {:>8} {:>10} {:>8}",
        "bytes", "direct", "us", "busbw"
    );
    for bytes in [64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20] {
        for direct in [DirectReads::Off, DirectReads::InProcess].repeat(2) {
            let opts = GroupOptions {
                window_direct: direct,
                ..GroupOptions::default()
            };
            let us = ProcessGroup::run_threads(n, opts, move |g| {
                let count = bytes / 4;
                let input = vec![1.0f32; count];
                let mut out = vec![0.0f32; count];
                let iters = (200_000_000 / bytes).clamp(10, 2000);
                for _ in 0..iters / 10 {
                    g.all_reduce_into(&input, &mut out, ReduceOp::Sum).unwrap();
                }
                g.barrier().unwrap();
                let t = Instant::now();
                for _ in 0..iters {
                    g.all_reduce_into(&input, &mut out, ReduceOp::Sum).unwrap();
                }
                let us = t.elapsed().as_secs_f64() * 1e6 / iters as f64;
                assert!(out.iter().all(|&x| x == g.size() as f32));
                us
            })
            .expect("thread ranks")[0];
            let busbw = bytes as f64 * 2.0 * (n - 1) as f64 / n as f64 / us / 1e3;
            println!(
                "  {bytes:>9} {:>8} {us:>10.1} {busbw:>8.2}",
                format!("{direct:?}")
            );
        }
    }
}
