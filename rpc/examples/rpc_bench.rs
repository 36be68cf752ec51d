//! Small-call round trips between two processes on this host: latency of
//! sequential `rpc_sync` calls and throughput of `rpc_async` calls with a window
//! in flight. The call is the built-in `tutti.add` on two 1-element f32 vectors
//! (torch.distributed.rpc's `rpc_sync("worker1", torch.add, (torch.ones(1),
//! torch.ones(1)))`, see `benches/torch_rpc_bench.py`), and a user function on two
//! i64.
//!
//! ```text
//! cargo run --release -p tutti-rpc --example rpc_bench -- [--calls N] [--window W] [--repeats R]
//! ```
//!
//! The process is worker0 and starts worker1 (itself, again) as a child.

use std::collections::VecDeque;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tutti_rpc::store::TcpStore;
use tutti_rpc::{ElementSlice, Elements, Functions, Rpc, RpcOptions, builtin, init_rpc};

struct Args {
    calls: usize,
    window: usize,
    repeats: usize,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        calls: 20_000,
        window: 32,
        repeats: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> Result<usize, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .filter(|&v| v > 0)
                .ok_or_else(|| format!("{name} takes a positive integer"))
        };
        match flag.as_str() {
            "--calls" => a.calls = value("--calls")?,
            "--window" => a.window = value("--window")?,
            "--repeats" => a.repeats = value("--repeats")?,
            "--bench" => {}
            other => {
                return Err(format!(
                    "unknown flag {other:?} (expected --calls, --window, --repeats)"
                ));
            }
        }
    }
    Ok(a)
}

fn functions() -> Functions {
    let mut f = Functions::new();
    f.register("add_i64", |(a, b): (i64, i64)| Ok::<_, String>(a + b))
        .expect("register add_i64");
    f
}

fn connect(rank: usize, port: u16) -> (Arc<TcpStore>, Rpc) {
    let store = TcpStore::builder("127.0.0.1", port)
        .master(rank == 0)
        .timeout(Duration::from_secs(60))
        .connect()
        .expect("store");
    let store = Arc::new(store);
    let rpc = init_rpc(
        &format!("worker{rank}"),
        rank,
        2,
        RpcOptions::new()
            .store(store.clone())
            .functions(functions()),
    )
    .expect("init_rpc");
    (store, rpc)
}

fn add(rpc: &Rpc, a: &[f32], b: &[f32]) -> Elements<f32> {
    rpc.rpc_sync(1, builtin::ADD, &(ElementSlice(a), ElementSlice(b)), None)
        .expect("tutti.add")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn latency(name: &str, calls: usize, mut call: impl FnMut()) {
    let mut times = Vec::with_capacity(calls);
    let start = Instant::now();
    for _ in 0..calls {
        let t = Instant::now();
        call();
        times.push(t.elapsed());
    }
    let total = start.elapsed();
    times.sort();
    println!(
        "{name:<24} sync      calls {calls:>7}  {:>9.0} round trips/s  mean {:>6.1} us  p50 {:>6.1} us  p99 {:>6.1} us",
        calls as f64 / total.as_secs_f64(),
        total.as_secs_f64() * 1e6 / calls as f64,
        percentile(&times, 0.5).as_secs_f64() * 1e6,
        percentile(&times, 0.99).as_secs_f64() * 1e6,
    );
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("rpc_bench: {e}");
            std::process::exit(2);
        }
    };
    if let Ok(port) = std::env::var("TUTTI_RPC_BENCH_PORT") {
        let port: u16 = port.parse().expect("TUTTI_RPC_BENCH_PORT");
        let (_store, rpc) = connect(1, port);
        rpc.shutdown(true).expect("shutdown");
        return;
    }
    // worker0 serves the store on a free port and starts worker1.
    let store = TcpStore::builder("127.0.0.1", 0)
        .master(true)
        .timeout(Duration::from_secs(60))
        .connect()
        .expect("store");
    let port = store.port();
    let mut child = Command::new(std::env::current_exe().expect("current_exe"))
        .env("TUTTI_RPC_BENCH_PORT", port.to_string())
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn worker1");
    let store = Arc::new(store);
    let rpc = init_rpc(
        "worker0",
        0,
        2,
        RpcOptions::new()
            .store(store.clone())
            .functions(functions()),
    )
    .expect("init_rpc");

    let (a, b) = ([1.0f32], [1.0f32]);
    for _ in 0..2000 {
        assert_eq!(add(&rpc, &a, &b).0, [2.0]);
    }
    println!(
        "tutti-rpc: 2 processes, loopback TCP, {} calls per run, window {}",
        args.calls, args.window
    );
    for _ in 0..args.repeats {
        latency("tutti.add f32[1]", args.calls, || {
            let r = add(&rpc, &a, &b);
            debug_assert_eq!(r.0, [2.0]);
        });
        latency("add_i64", args.calls, || {
            let r: i64 = rpc
                .rpc_sync(1, "add_i64", &(20i64, 22i64), None)
                .expect("add_i64");
            debug_assert_eq!(r, 42);
        });
        let start = Instant::now();
        let mut window = VecDeque::with_capacity(args.window);
        for _ in 0..args.calls {
            if window.len() == args.window {
                let f: tutti_rpc::RpcFuture<Elements<f32>> = window.pop_front().expect("window");
                assert_eq!(f.wait().expect("tutti.add").0, [2.0]);
            }
            window.push_back(
                rpc.rpc_async(1, builtin::ADD, &(ElementSlice(&a), ElementSlice(&b)), None)
                    .expect("rpc_async"),
            );
        }
        for f in window {
            assert_eq!(f.wait().expect("tutti.add").0, [2.0]);
        }
        let total = start.elapsed();
        println!(
            "{:<24} async     calls {:>7}  {:>9.0} calls/s (window {})",
            "tutti.add f32[1]",
            args.calls,
            args.calls as f64 / total.as_secs_f64(),
            args.window
        );
    }
    rpc.shutdown(true).expect("shutdown");
    let status = child.wait().expect("worker1");
    assert!(status.success(), "worker1 failed: {status}");
}
