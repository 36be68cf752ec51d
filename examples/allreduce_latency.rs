//! All-reduce latency between local processes: `cargo run --release --example
//! allreduce_latency -- [NRANKS] [BYTES] [ITERS]`. Spawns the ranks itself (rank 0
//! serves the store) and prints rank 0's mean time per all_reduce.

use std::process::Command;
use std::time::Instant;

use tutti::{GroupOptions, ProcessGroup, ReduceOp};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(2);
    let bytes: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(8);
    let iters: usize = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(10_000);
    if std::env::var("RANK").is_err() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let kids: Vec<_> = (0..n)
            .map(|r| {
                Command::new(std::env::current_exe().unwrap())
                    .args(&args[1..])
                    .env("RANK", r.to_string())
                    .env("WORLD_SIZE", n.to_string())
                    .env("MASTER_ADDR", "127.0.0.1")
                    .env("MASTER_PORT", port.to_string())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut k in kids {
            assert!(k.wait().unwrap().success());
        }
        return;
    }
    let g = ProcessGroup::from_env(GroupOptions::from_env().unwrap()).unwrap();
    let mut buf = vec![1.0f32; bytes / 4];
    for _ in 0..iters / 10 {
        g.all_reduce(&mut buf, ReduceOp::Sum).unwrap();
    }
    g.barrier().unwrap();
    let t = Instant::now();
    for _ in 0..iters {
        g.all_reduce(&mut buf, ReduceOp::Sum).unwrap();
    }
    let dt = t.elapsed().as_secs_f64() / iters as f64;
    g.barrier().unwrap();
    if g.rank() == 0 {
        println!("{n} ranks, {bytes} B: {:.3} us per all_reduce", dt * 1e6);
    }
}
