//! Runs a test's body in real rank processes: the test binary re-executes itself
//! once per rank with `TUTTI_TEST_RANK` set, and the same `#[test]` function, seeing
//! the variable, runs the rank's body instead of spawning.

#![allow(dead_code)]

use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tutti::launch::local::{free_loopback_port, spawn_local_ranks};
use tutti::store::{Store, TcpStore};

/// This process's rank when it is a rank worker.
pub fn worker_rank() -> Option<usize> {
    std::env::var("TUTTI_TEST_RANK").ok()?.parse().ok()
}

/// The world size of a rank worker.
pub fn world_size() -> usize {
    std::env::var("TUTTI_TEST_WORLD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// A free TCP port on loopback (bound then released).
pub fn free_port() -> u16 {
    free_loopback_port().unwrap()
}

/// Spawns `n` rank processes running test `name` of this binary, with the
/// torchrun-style environment and `env` added. `prefix` (e.g. `ip netns exec NS`)
/// runs before the binary for each rank if given.
pub fn spawn_with(
    name: &str,
    n: usize,
    env: &[(&str, String)],
    prefix: &dyn Fn(usize) -> Vec<String>,
) -> Vec<Child> {
    let exe = std::env::current_exe().unwrap();
    spawn_local_ranks(n, "test-token", |r| {
        let pre = prefix(r);
        let mut cmd = if pre.is_empty() {
            Command::new(&exe)
        } else {
            let mut c = Command::new(&pre[0]);
            c.args(&pre[1..]).arg(&exe);
            c
        };
        cmd.args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env("TUTTI_TEST_RANK", r.to_string())
            .env("TUTTI_TEST_WORLD", n.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    })
    .unwrap()
}

/// [`spawn_with`] without a prefix.
pub fn spawn(name: &str, n: usize, env: &[(&str, String)]) -> Vec<Child> {
    spawn_with(name, n, env, &|_| Vec::new())
}

/// Waits for every child (killing all after `timeout`) and returns their outputs.
pub fn wait_all(children: Vec<Child>, timeout: Duration) -> Vec<Output> {
    let start = Instant::now();
    let mut children: Vec<Option<Child>> = children.into_iter().map(Some).collect();
    let mut done: Vec<Option<std::process::ExitStatus>> = vec![None; children.len()];
    while done.iter().any(Option::is_none) {
        for (i, c) in children.iter_mut().enumerate() {
            if done[i].is_none()
                && let Some(s) = c.as_mut().unwrap().try_wait().unwrap()
            {
                done[i] = Some(s);
            }
        }
        if start.elapsed() > timeout {
            for c in children.iter_mut().flatten() {
                let _ = c.kill();
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    children
        .into_iter()
        .map(|c| c.unwrap().wait_with_output().unwrap())
        .collect()
}

/// Spawns, waits and asserts that every rank exited successfully, printing each
/// rank's output on failure.
pub fn run_ranks(name: &str, n: usize, env: &[(&str, String)], timeout: Duration) -> Vec<Output> {
    let outs = wait_all(spawn(name, n, env), timeout);
    check_success(name, &outs);
    outs
}

/// Asserts that every rank succeeded, showing every failed rank's output (the
/// first to fail is often not the one that went wrong).
pub fn check_success(name: &str, outs: &[Output]) {
    let failed: Vec<String> = outs
        .iter()
        .enumerate()
        .filter(|(_, o)| !o.status.success())
        .map(|(r, o)| {
            format!(
                "rank {r} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
                o.status,
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
        .collect();
    assert!(failed.is_empty(), "{name}: {}", failed.join("\n"));
}

/// The job's TCP store from a rank worker: rank 0 serves it.
pub fn store() -> Arc<dyn Store> {
    let port: u16 = std::env::var("MASTER_PORT").unwrap().parse().unwrap();
    let addr = std::env::var("MASTER_ADDR").unwrap_or_else(|_| "127.0.0.1".into());
    let rank = worker_rank().unwrap();
    let s = TcpStore::builder(addr, port)
        .master(rank == 0)
        .bind_addr(
            std::env::var("TUTTI_TEST_STORE_BIND")
                .ok()
                .and_then(|a| a.parse().ok())
                .unwrap_or([0, 0, 0, 0].into()),
        )
        .timeout(Duration::from_secs(60))
        .connect()
        .unwrap();
    Arc::new(s)
}

/// Deterministic pseudo-random bytes for (seed, length).
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes()[..(n - out.len()).min(8)]);
    }
    out
}

/// Number of tutti's own threads (named `tutti-*`) in this process: other tests of
/// the same binary run in parallel threads, so counting every thread would be flaky.
pub fn thread_count() -> usize {
    thread_names()
        .iter()
        .filter(|n| n.starts_with("tutti-"))
        .count()
}

/// `/dev/shm` segments created by any of `pids`.
pub fn segments_of(pids: &[u32]) -> Vec<String> {
    tutti::transport::shm::list_segments()
        .into_iter()
        .filter(|n| pids.iter().any(|p| n.starts_with(&format!("tutti-{p}-"))))
        .collect()
}

/// Names of this process's threads (for failure messages).
pub fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|c| c.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Serialises the multi-process tests of one test binary: each already runs more
/// rank processes than this machine has cores, and their timing assertions (errors
/// within a few seconds) should not depend on how many others run at once.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}
