//! Shared support of the RPC tests: runs a test's body in real worker processes
//! (the test binary re-executes itself once per worker with `TUTTI_RPC_TEST_RANK`
//! set, and the same `#[test]` function, seeing it, runs the worker's body), and
//! the functions every worker registers.

#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tutti_rpc::{CallContext, Elements, Functions, RRef, Rpc, RpcOptions, init_rpc};

/// This process's place when it is a worker.
#[derive(Clone, Copy, Debug)]
pub struct Worker {
    pub rank: usize,
    pub world: usize,
}

impl Worker {
    pub fn name(&self) -> String {
        name(self.rank)
    }
}

/// `worker{rank}`.
pub fn name(rank: usize) -> String {
    format!("worker{rank}")
}

/// `Some` in a worker process.
pub fn worker() -> Option<Worker> {
    let rank = std::env::var("TUTTI_RPC_TEST_RANK").ok()?.parse().ok()?;
    let world = std::env::var("TUTTI_RPC_TEST_WORLD").ok()?.parse().ok()?;
    Some(Worker { rank, world })
}

/// A free TCP port on loopback (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Serialises the multi-process tests of one binary (each runs more processes
/// than this machine has cores; their timing assertions should not depend on how
/// many others run at once).
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Spawns `n` worker processes running test `test` of this binary, with torch's
/// `env://` variables (rank 0 serves the store).
pub fn spawn(test: &str, n: usize) -> Vec<Child> {
    let exe = std::env::current_exe().unwrap();
    let port = free_port();
    (0..n)
        .map(|r| {
            Command::new(&exe)
                .args([test, "--exact", "--nocapture", "--test-threads=1"])
                .env("TUTTI_RPC_TEST_RANK", r.to_string())
                .env("TUTTI_RPC_TEST_WORLD", n.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", port.to_string())
                .env(
                    "TUTTI_JOB_TOKEN",
                    format!("rpc-test-{}", std::process::id()),
                )
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect()
}

/// Waits for every child (killing all after `timeout`) and returns their outputs.
pub fn wait_all(children: Vec<Child>, timeout: Duration) -> Vec<Output> {
    let start = Instant::now();
    let mut children: Vec<Child> = children;
    loop {
        let mut running = false;
        for c in children.iter_mut() {
            if c.try_wait().unwrap().is_none() {
                running = true;
            }
        }
        if !running {
            break;
        }
        if start.elapsed() > timeout {
            for c in children.iter_mut() {
                let _ = c.kill();
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect()
}

/// Panics with every worker's output unless `ok(rank, output)` holds for each.
pub fn check(test: &str, outs: &[Output], ok: impl Fn(usize, &Output) -> bool) {
    let failed: Vec<usize> = (0..outs.len()).filter(|&r| !ok(r, &outs[r])).collect();
    if failed.is_empty() {
        return;
    }
    let mut report = String::new();
    for (r, o) in outs.iter().enumerate() {
        report += &format!(
            "\n=== worker {r} ({}):\n--- stdout\n{}\n--- stderr\n{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    panic!("{test}: workers {failed:?} failed{report}");
}

/// Runs test `test` in `n` worker processes and checks that all succeed.
pub fn run(test: &str, n: usize) {
    let _serial = serial();
    let outs = wait_all(spawn(test, n), Duration::from_secs(60));
    check(test, &outs, |_, o| o.status.success());
}

/// Defines a test whose body runs in `$n` worker processes.
#[macro_export]
macro_rules! worker_test {
    ($(#[$m:meta])* $name:ident, $n:expr, |$w:ident| $body:block) => {
        $(#[$m])*
        #[test]
        fn $name() {
            if let Some($w) = support::worker() {
                $body
                return;
            }
            support::run(stringify!($name), $n);
        }
    };
}

/// Starts this worker's agent as `worker{rank}` with the test functions (with
/// `RUST_LOG` set, the agent's logs go to stderr, prefixed by the rank).
pub fn init(w: Worker, options: RpcOptions) -> Rpc {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .with_thread_names(true)
            .try_init();
    }
    init_rpc(&w.name(), w.rank, w.world, options.functions(functions())).unwrap()
}

/// Polls `f` until it holds, failing after `timeout` with `what`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `n` elements `start, start+1, ...` as f32.
pub fn ramp(n: usize, start: f32) -> Vec<f32> {
    (0..n).map(|i| start + i as f32).collect()
}

/// The RRef counts of a worker: (owner RRefs, forks, user RRefs, pending children).
pub type Counts = (usize, usize, usize, usize);

pub fn counts(rpc: &Rpc) -> Counts {
    let i = rpc.debug_info();
    (i.owner_rrefs, i.forks, i.user_rrefs, i.pending_children)
}

/// Number of this process's RPC threads (named `tutti-rpc-*`).
pub fn rpc_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .filter(|c| c.starts_with("tutti-rpc"))
                .count()
        })
        .unwrap_or(0)
}

static INSIDE: Mutex<u64> = Mutex::new(0);
static INSIDE_CV: Condvar = Condvar::new();

/// The functions every test worker serves.
pub fn functions() -> Functions {
    let mut f = Functions::new();
    f.register("add_i64", |(a, b): (i64, i64)| Ok::<_, String>(a + b))
        .unwrap();
    f.register("add_vec", |(a, b): (Elements<f32>, Elements<f32>)| {
        if a.len() != b.len() {
            return Err(format!("length mismatch: {} and {}", a.len(), b.len()));
        }
        Ok(Elements(
            a.iter()
                .zip(b.iter())
                .map(|(x, y)| x + y)
                .collect::<Vec<f32>>(),
        ))
    })
    .unwrap();
    f.register("sleep_ms_then", |(ms, v): (u64, i64)| {
        std::thread::sleep(Duration::from_millis(ms));
        Ok::<_, String>(v)
    })
    .unwrap();
    f.register("fail", |msg: String| Err::<(), _>(msg)).unwrap();
    f.register("zeros", |n: usize| Ok::<_, String>(Elements(vec![0u8; n])))
        .unwrap();
    f.register("panic", |msg: String| -> Result<(), String> {
        panic!("{msg}")
    })
    .unwrap();
    f.register_with_context("whoami", |ctx: &CallContext<'_>, (): ()| {
        Ok::<_, String>((ctx.caller().name.clone(), ctx.worker().name.clone()))
    })
    .unwrap();
    // Calls add_i64(x, 1) on worker `to` from inside a call.
    f.register_with_context(
        "nested_add_one",
        |ctx: &CallContext<'_>, (to, x): (usize, i64)| {
            let rpc = ctx.rpc().ok_or("no agent")?;
            rpc.rpc_sync::<_, i64>(to, "add_i64", &(x, 1i64), None)
                .map_err(|e| e.to_string())
        },
    )
    .unwrap();
    // Returns when `n` calls are inside at once (served concurrently), or fails.
    f.register("rendezvous", |(n, timeout_ms): (u64, u64)| {
        let mut inside = INSIDE.lock().unwrap();
        *inside += 1;
        INSIDE_CV.notify_all();
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        while *inside < n {
            let now = Instant::now();
            if now >= deadline {
                return Err(format!("only {} of {n} calls ran at once", *inside));
            }
            inside = INSIDE_CV.wait_timeout(inside, deadline - now).unwrap().0;
        }
        Ok(*inside)
    })
    .unwrap();
    // Sleeps, then kills this process with SIGKILL (mid-call).
    f.register("kill_self_after", |ms: u64| -> Result<(), String> {
        std::thread::sleep(Duration::from_millis(ms));
        let _ = Command::new("kill")
            .args(["-9", &std::process::id().to_string()])
            .status();
        std::thread::sleep(Duration::from_secs(60));
        Ok(())
    })
    .unwrap();
    // torch's add_rref_to_value.
    f.register(
        "add_rref_to_value",
        |(rref, v): (RRef<Elements<f32>>, Elements<f32>)| {
            let a = rref.to_here(None).map_err(|e| e.to_string())?;
            Ok::<_, String>(Elements(
                a.iter()
                    .zip(v.iter())
                    .map(|(x, y)| x + y)
                    .collect::<Vec<f32>>(),
            ))
        },
    )
    .unwrap();
    f.register("add_rref_i64", |(rref, v): (RRef<i64>, i64)| {
        Ok::<_, String>(rref.to_here(None).map_err(|e| e.to_string())? + v)
    })
    .unwrap();
    // Passes the RRef on to worker `to` (add_rref_i64 there): a fork of a fork.
    f.register_with_context(
        "forward_rref",
        |ctx: &CallContext<'_>, (rref, to, v): (RRef<i64>, usize, i64)| {
            let rpc = ctx.rpc().ok_or("no agent")?;
            rpc.rpc_sync::<_, i64>(to, "add_rref_i64", &(&rref, v), None)
                .map_err(|e| e.to_string())
        },
    )
    .unwrap();
    // Creates an RRef on worker `owner` and returns it (an RRef as a result).
    f.register_with_context(
        "remote_on",
        |ctx: &CallContext<'_>, (owner, v): (usize, i64)| {
            let rpc = ctx.rpc().ok_or("no agent")?;
            rpc.remote::<_, i64>(owner, "add_i64", &(v, 0i64), None)
                .map_err(|e| e.to_string())
        },
    )
    .unwrap();
    // For RRef::rpc_sync: runs on the owner with (rref, x).
    f.register("local_plus", |(rref, x): (RRef<i64>, i64)| {
        Ok::<_, String>(rref.local_value().map_err(|e| e.to_string())? + x)
    })
    .unwrap();
    // Waits until this worker holds no RRef; returns its counts then.
    f.register_with_context(
        "wait_refs_released",
        |ctx: &CallContext<'_>, timeout_ms: u64| {
            let rpc = ctx.rpc().ok_or("no agent")?;
            let deadline = Instant::now() + Duration::from_millis(timeout_ms);
            loop {
                let c = counts(&rpc);
                if c == (0, 0, 0, 0) || Instant::now() >= deadline {
                    return Ok::<Counts, String>(c);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        },
    )
    .unwrap();
    f.register_with_context("counts", |ctx: &CallContext<'_>, (): ()| {
        Ok::<Counts, String>(counts(&ctx.rpc().ok_or("no agent")?))
    })
    .unwrap();
    f
}
