//! TCP store benchmark: set/get/add round trips per second (one client, and 16 client
//! threads each with its own connection), and the time for a barrier of 256, 1024 and
//! 4096 clients (threads, each with its own connection) on one server.
//!
//! Run: `cargo bench -p tutti-bench --bench store` (prints a Markdown table).

use std::sync::Barrier;
use std::time::{Duration, Instant};

use tutti::store::{Store, TcpStore, TcpStoreServer, barrier, raise_fd_limit};

const TOKEN: &str = "bench-token";
/// Repetitions of each round-trip measurement.
const RUNS: usize = 5;

fn client(port: u16) -> TcpStore {
    TcpStore::builder("127.0.0.1", port)
        .token(TOKEN)
        .timeout(Duration::from_secs(300))
        .connect()
        .expect("connect to the store server")
}

#[derive(Clone, Copy)]
enum Op {
    Set,
    Get,
    Add,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Set => "set",
            Op::Get => "get",
            Op::Add => "add",
        }
    }

    fn run(self, store: &TcpStore, key: &str, value: &[u8], n: usize) {
        for _ in 0..n {
            match self {
                Op::Set => store.set(key, value).expect("set"),
                Op::Get => drop(store.get(key).expect("get")),
                Op::Add => drop(store.add(key, 1).expect("add")),
            }
        }
    }
}

/// Round trips per second with `threads` clients doing `per_thread` ops each.
fn round_trips(port: u16, op: Op, threads: usize, per_thread: usize) -> f64 {
    let clients: Vec<TcpStore> = (0..threads).map(|_| client(port)).collect();
    let value = [7u8; 8];
    for (i, c) in clients.iter().enumerate() {
        c.set(&format!("k{i}"), b"0").expect("seed key");
        op.run(c, &format!("k{i}"), &value, per_thread / 10); // warm up
    }
    let start = Barrier::new(threads + 1);
    let elapsed = std::thread::scope(|s| {
        let handles: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let (start, value) = (&start, &value);
                s.spawn(move || {
                    let key = format!("k{i}");
                    start.wait();
                    op.run(c, &key, value, per_thread);
                })
            })
            .collect();
        start.wait();
        let t0 = Instant::now();
        for h in handles {
            h.join().expect("client thread");
        }
        t0.elapsed()
    });
    (threads * per_thread) as f64 / elapsed.as_secs_f64()
}

/// Times of `rounds` barriers of `n` connected clients: from the release of all
/// threads to the last one leaving the barrier.
fn barrier_times(port: u16, n: usize, rounds: usize) -> Vec<Duration> {
    let go = Barrier::new(n + 1);
    let done = Barrier::new(n + 1);
    let mut times = Vec::new();
    std::thread::scope(|s| {
        for _ in 0..n {
            let (go, done) = (&go, &done);
            std::thread::Builder::new()
                .stack_size(128 << 10)
                .spawn_scoped(s, move || {
                    let c = client(port);
                    for round in 0..rounds {
                        go.wait();
                        barrier(
                            &c,
                            n,
                            &format!("bench/{n}/{round}"),
                            Duration::from_secs(300),
                            None,
                        )
                        .expect("barrier");
                        done.wait();
                    }
                })
                .expect("spawn a client thread");
        }
        for _ in 0..rounds {
            go.wait();
            let t0 = Instant::now();
            done.wait();
            times.push(t0.elapsed());
        }
    });
    times
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and test discovery
    }
    let limit = raise_fd_limit().expect("raise RLIMIT_NOFILE");
    let server = TcpStoreServer::bind("127.0.0.1:0", Some(TOKEN)).expect("start the store server");
    let port = server.port();

    println!("## TCP store round trips (loopback, 8-byte values)\n");
    println!(
        "| op | clients | round trips/s (median of {RUNS}) | best | mean latency (us, median) |"
    );
    println!("|---|---:|---:|---:|---:|");
    for op in [Op::Set, Op::Get, Op::Add] {
        for (threads, per_thread) in [(1usize, 10_000usize), (16, 2_000)] {
            let mut rates: Vec<f64> = (0..RUNS)
                .map(|_| round_trips(port, op, threads, per_thread))
                .collect();
            rates.sort_by(f64::total_cmp);
            let rate = rates[RUNS / 2];
            let best = rates[RUNS - 1];
            let latency_us = threads as f64 / rate * 1e6;
            println!(
                "| {} | {threads} | {rate:.0} | {best:.0} | {latency_us:.1} |",
                op.name()
            );
        }
    }

    println!("\n## Barrier (`tutti::store::barrier`, every client its own connection)\n");
    println!("| clients | median (ms) | min (ms) | rounds |");
    println!("|---:|---:|---:|---:|");
    for n in [256usize, 1024, 4096] {
        if (2 * n + 64) as u64 > limit {
            println!("| {n} | skipped: RLIMIT_NOFILE {limit} too low | | |");
            continue;
        }
        let rounds = 7;
        let times = barrier_times(port, n, rounds);
        let min = *times.iter().min().expect("rounds > 0");
        println!(
            "| {n} | {:.2} | {:.2} | {rounds} |",
            median(times).as_secs_f64() * 1e3,
            min.as_secs_f64() * 1e3
        );
    }
}
