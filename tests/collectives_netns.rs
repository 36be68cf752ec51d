//! 16 rank processes as 4 "hosts" of 4 ranks: each host a network namespace on a
//! bridge, with its own address; the ranks of a namespace share a host id
//! (`TUTTI_HOST_ID`), so they run on the window and shm links among themselves and
//! over TCP to the other namespaces. The store is served by the test process on the
//! bridge's address.
//!
//! - `hierarchical_collectives_across_namespaces`: the layout and the transports
//!   each rank sees; all_reduce (hierarchical as the tuner picks it, forced
//!   hierarchical, and the flat ring), all_gather, broadcast and reduce_scatter
//!   checked element by element against a CPU reference, bit-identical on every
//!   rank.
//! - `a_lost_host_fails_every_survivor_within_5s`: all_reduce in a loop; one
//!   namespace's processes are killed mid-collective; every survivor must fail
//!   within 5 s with an error naming the lost host's ranks.
//!
//! Needs root and iproute2; skips with `SKIPPED: <reason>` otherwise (fails with
//! `TUTTI_REQUIRE_NETNS=1`).

mod collectives;
mod netns;
mod ranks;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use collectives::{check_reduction, input, same_on_every_rank};
use netns::Net;
use tutti::group::{Algo, GroupOptions};
use tutti::store::{Store, TcpStore, TcpStoreServer};
use tutti::{Error, ProcessGroup, ReduceOp};

const HOSTS: usize = 4;
const PER_HOST: usize = 4;
const WORLD: usize = HOSTS * PER_HOST;

fn opts(algo: Option<Algo>) -> GroupOptions {
    GroupOptions {
        algo,
        timeout: Duration::from_secs(60),
        connect_timeout: Duration::from_secs(60),
        ..GroupOptions::default()
    }
}

/// Small windows (64 KiB) and chunks (16 KiB), so that modest sizes take many
/// window rounds and pipeline chunks.
fn small_opts(algo: Option<Algo>) -> GroupOptions {
    GroupOptions {
        window_bytes: Some(64 << 10),
        chunk: Some(16 << 10),
        ..opts(algo)
    }
}

/// The job's store, served by the test process.
fn store() -> Arc<dyn Store> {
    let addr = std::env::var("MASTER_ADDR").unwrap();
    let port: u16 = std::env::var("MASTER_PORT").unwrap().parse().unwrap();
    Arc::new(
        TcpStore::builder(addr, port)
            .master(false)
            .timeout(Duration::from_secs(60))
            .connect()
            .unwrap(),
    )
}

fn group(name: &str, o: GroupOptions) -> ProcessGroup {
    let rank = ranks::worker_rank().unwrap();
    ProcessGroup::from_store(store(), rank, WORLD, name, o).unwrap()
}

/// Runs the 16 ranks of test `name` in the 4 namespaces (rank `r` in namespace
/// `r / 4`, host id `netns-host-{r / 4}`) against a store served here on the
/// bridge, with `env` added; `during` runs while they do. Returns their outputs.
fn run_job(
    net: &Net,
    name: &str,
    env: &[(&str, String)],
    timeout: Duration,
    during: &dyn Fn(),
) -> Vec<std::process::Output> {
    let token = format!("netns-token-{}", std::process::id());
    let server = TcpStoreServer::bind((net.bridge_addr.as_str(), 0), Some(&token)).unwrap();
    let mut env: Vec<(&str, String)> = env.to_vec();
    env.extend([
        // Correctness, not tuning: skip the window probe each process would run.
        ("TUTTI_PROBE", "0".to_string()),
        ("MASTER_ADDR", net.bridge_addr.clone()),
        ("MASTER_PORT", server.port().to_string()),
        ("TUTTI_JOB_TOKEN", token.clone()),
    ]);
    let children = ranks::spawn_with(name, WORLD, &env, &|r| {
        let mut pre = net.exec(r / PER_HOST);
        pre.extend([
            "env".into(),
            format!("TUTTI_HOST_ID=netns-host-{}", r / PER_HOST),
        ]);
        pre
    });
    during();
    let outs = ranks::wait_all(children, timeout);
    server.shutdown();
    outs
}

fn correctness_worker() {
    let rank = ranks::worker_rank().unwrap();
    let t0 = Instant::now();
    let phase = |what: &str| {
        if rank == 0 {
            eprintln!("[rank 0] {what}: {:?}", t0.elapsed());
        }
    };
    let auto = group("auto", opts(None));
    phase("group auto");
    // The layout: 4 hosts of 4 consecutive ranks; the window inside, TCP across.
    let want_hosts: Vec<Vec<usize>> = (0..HOSTS)
        .map(|h| (h * PER_HOST..(h + 1) * PER_HOST).collect())
        .collect();
    assert_eq!(auto.hosts(), &want_hosts[..], "rank {rank}: host layout");
    for p in (0..WORLD).filter(|&p| p != rank) {
        let want = if p / PER_HOST == rank / PER_HOST {
            "window"
        } else {
            "tcp"
        };
        assert_eq!(
            auto.transport_to(p),
            Some(want),
            "rank {rank}: transport to rank {p}"
        );
    }
    let hier = group("hier", small_opts(Some(Algo::Hier)));
    let ring = group("ring", small_opts(Some(Algo::Ring)));
    phase("groups hier, ring");
    // Sizes: one element, less than a cache line, a few KiB, several window rounds
    // and pipeline chunks (with the small windows and chunks of `hier` and `ring`).
    let counts = [1usize, 13, 4099, 40_009];
    let mut case = 0u64;
    for (gi, g) in [&auto, &hier, &ring].into_iter().enumerate() {
        for &count in &counts {
            // i32 Sum (exact), f32 Sum and f64 Avg (within the rounding bound).
            case += 10;
            all_reduce_case::<i32>(g, case, count, ReduceOp::Sum, false);
            all_reduce_case::<f32>(g, case + 1, count, ReduceOp::Sum, true);
            all_reduce_case::<f64>(g, case + 2, count, ReduceOp::Avg, false);
            phase(&format!("group {gi} all_reduce count={count}"));
        }
        // all_gather, broadcast and reduce_scatter (hierarchical on `auto` and `hier`).
        for count in [1usize, 1000, 4099] {
            case += 10;
            let ins: Vec<Vec<u8>> = (0..WORLD)
                .map(|k| input(case, k, count, ReduceOp::Sum))
                .collect();
            let mut all = vec![0u8; count * WORLD];
            g.all_gather(&ins[rank], &mut all).unwrap();
            assert!(
                all == ins.concat(),
                "group {gi} all_gather u8 count={count}"
            );
            // broadcast from a leader, a rank that leads no host, the last rank.
            for root in [0, 5, WORLD - 1] {
                let want: Vec<u8> = input(case + 3, root, count, ReduceOp::Sum);
                let mut b = if rank == root {
                    want.clone()
                } else {
                    vec![0u8; count]
                };
                g.broadcast(&mut b, root).unwrap();
                assert!(
                    b == want,
                    "group {gi} broadcast u8 root={root} count={count}"
                );
            }
            reduce_scatter_case::<i32>(g, case + 1, count, ReduceOp::Max);
            reduce_scatter_case::<f32>(g, case + 2, count, ReduceOp::Sum);
            phase(&format!(
                "group {gi} all_gather, reduce_scatter count={count}"
            ));
        }
    }
    // Determinism: the same hierarchical all_reduce twice gives the same bits.
    let ins: Vec<f32> = input(999, rank, 100_003, ReduceOp::Sum);
    let (mut a, mut b) = (ins.clone(), ins);
    auto.all_reduce(&mut a, ReduceOp::Sum).unwrap();
    auto.all_reduce(&mut b, ReduceOp::Sum).unwrap();
    assert!(
        bytemuck::cast_slice::<f32, u8>(&a) == bytemuck::cast_slice::<f32, u8>(&b),
        "rank {rank}: two identical all_reduces differ in their bits"
    );
    auto.barrier().unwrap();
}

/// One all_reduce case: every rank reduces its input (in place, or out of place
/// with `into`); one rank (chosen by the case) checks every element against the CPU
/// reference over every rank's input, and every rank's result must be bit-identical
/// to the others'.
fn all_reduce_case<T: collectives::TestElem>(
    g: &ProcessGroup,
    case: u64,
    count: usize,
    op: ReduceOp,
    into: bool,
) {
    let rank = g.rank();
    let mine: Vec<T> = input(case, rank, count, op);
    let got = if into {
        let mut out = vec![T::zeroed(); count];
        g.all_reduce_into(&mine, &mut out, op).unwrap();
        out
    } else {
        let mut buf = mine.clone();
        g.all_reduce(&mut buf, op).unwrap();
        buf
    };
    let what = format!(
        "{} all_reduce{} {op} count={count}",
        T::DTYPE,
        if into { "_into" } else { "" }
    );
    if rank == case as usize % WORLD {
        let t = Instant::now();
        let ins: Vec<Vec<T>> = (0..WORLD).map(|k| input(case, k, count, op)).collect();
        check_reduction(&what, op, &ins, &got);
        eprintln!("[rank {rank}] checked {what} in {:?}", t.elapsed());
    }
    same_on_every_rank(g, &what, &got);
}

/// One reduce_scatter case: every rank checks its own block element by element.
fn reduce_scatter_case<T: collectives::TestElem>(
    g: &ProcessGroup,
    case: u64,
    count: usize,
    op: ReduceOp,
) {
    let rank = g.rank();
    let mine: Vec<T> = input(case, rank, count * WORLD, op);
    let mut block = vec![T::zeroed(); count];
    g.reduce_scatter(&mine, &mut block, op).unwrap();
    let blocks: Vec<Vec<T>> = (0..WORLD)
        .map(|k| input::<T>(case, k, count * WORLD, op)[rank * count..(rank + 1) * count].to_vec())
        .collect();
    check_reduction(
        &format!("{} reduce_scatter {op} count={count}", T::DTYPE),
        op,
        &blocks,
        &block,
    );
}

#[test]
fn hierarchical_collectives_across_namespaces() {
    if ranks::worker_rank().is_some() {
        correctness_worker();
        return;
    }
    let _serial = ranks::serial();
    let Some(net) = Net::create_or_skip(HOSTS) else {
        return;
    };
    let start = Instant::now();
    let outs = run_job(
        &net,
        "hierarchical_collectives_across_namespaces",
        &[],
        Duration::from_secs(240),
        &|| {},
    );
    ranks::check_success("hierarchical_collectives_across_namespaces", &outs);
    for o in &outs {
        for line in String::from_utf8_lossy(&o.stderr).lines() {
            if line.starts_with("[rank ") {
                eprintln!("{line}");
            }
        }
    }
    eprintln!("16 ranks in 4 namespaces: {:?}", start.elapsed());
}

/// The lost host.
const LOST: usize = 2;

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

fn loss_worker() {
    let rank = ranks::worker_rank().unwrap();
    let g = group("loss", opts(None));
    let dir = std::env::var("TUTTI_TEST_DIR").unwrap();
    let mut buf = vec![1f32; 256 << 10];
    let mut done = 0u64;
    loop {
        match g.all_reduce(&mut buf, ReduceOp::Sum) {
            Ok(()) => {
                done += 1;
                buf.fill(1.0);
                if done == 3 {
                    std::fs::write(format!("{dir}/running-{rank}"), b"").unwrap();
                }
            }
            Err(e) => {
                let at = now_ms();
                let missing = match &e {
                    Error::Collective { missing_ranks, .. } => missing_ranks.clone(),
                    _ => Vec::new(),
                };
                println!("LOST at={at} after={done} missing={missing:?} error: {e}");
                return;
            }
        }
    }
}

#[test]
fn a_lost_host_fails_every_survivor_within_5s() {
    if ranks::worker_rank().is_some() {
        loss_worker();
        return;
    }
    let _serial = ranks::serial();
    let Some(net) = Net::create_or_skip(HOSTS) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("tutti-netns-loss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let killed_at = std::sync::Mutex::new(0u128);
    let outs = run_job(
        &net,
        "a_lost_host_fails_every_survivor_within_5s",
        &[("TUTTI_TEST_DIR", dir.display().to_string())],
        Duration::from_secs(180),
        &|| {
            // Once every rank is in its loop, kill the lost host's processes.
            let start = Instant::now();
            while (0..WORLD).any(|r| !dir.join(format!("running-{r}")).exists()) {
                if start.elapsed() > Duration::from_secs(120) {
                    return; // the ranks' outputs say why
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(100));
            *killed_at.lock().unwrap() = now_ms();
            let killed = net.kill_all(LOST);
            assert_eq!(killed.len(), PER_HOST, "processes in the lost namespace");
        },
    );
    let _ = std::fs::remove_dir_all(&dir);
    let killed_at = *killed_at.lock().unwrap();
    assert!(
        killed_at > 0,
        "the ranks never all reached their loop: {}",
        outs.iter()
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .collect::<Vec<_>>()
            .join("\n---\n")
    );
    let lost: Vec<usize> = (LOST * PER_HOST..(LOST + 1) * PER_HOST).collect();
    for (r, o) in outs.iter().enumerate() {
        if lost.contains(&r) {
            continue;
        }
        let stdout = String::from_utf8_lossy(&o.stdout);
        let report = || {
            format!(
                "rank {r} ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            )
        };
        // (libtest may print "test NAME ... " on the same line first.)
        let line = stdout
            .lines()
            .find_map(|l| l.find("LOST ").map(|i| &l[i..]))
            .unwrap_or_else(|| panic!("survivor did not report the loss: {}", report()));
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .unwrap_or_default()
                .to_string()
        };
        let at: u128 = field("at=").parse().unwrap();
        let waited = at.saturating_sub(killed_at);
        assert!(
            waited <= 5000,
            "rank {r} failed {waited} ms after the kill (limit 5000): {}",
            report()
        );
        let missing = line
            .split("missing=[")
            .nth(1)
            .and_then(|s| s.split(']').next())
            .unwrap_or_default();
        let missing: Vec<usize> = missing
            .split(',')
            .filter_map(|x| x.trim().parse().ok())
            .collect();
        assert_eq!(
            missing,
            lost,
            "rank {r} must name exactly the lost ranks: {}",
            report()
        );
        eprintln!("rank {r}: failed {waited} ms after the kill");
    }
}
