//! The collectives matrix with ranks as threads: world sizes 1, 2, 3, 4, 5 and 8,
//! in-process links (ring and tree) and TCP over loopback.

mod collectives;

use std::time::Duration;

use collectives::{Level, matrix};
use tutti::ProcessGroup;
use tutti::group::{Algo, GroupOptions, TransportChoice};

fn opts(algo: Algo, transport: TransportChoice) -> GroupOptions {
    GroupOptions {
        algo: Some(algo),
        chunk: Some(4096),
        transport,
        timeout: Duration::from_secs(120),
        ..GroupOptions::default()
    }
}

/// The matrix tests run one at a time: each already has more rank threads than
/// this machine has cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run(n: usize, o: GroupOptions, level: Level) {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let start = std::time::Instant::now();
    ProcessGroup::run_threads(n, o, move |g| matrix(&g, level)).unwrap();
    eprintln!("matrix n={n} {level:?}: {:?}", start.elapsed());
}

#[test]
fn inproc_ring_every_world_size() {
    for n in [1, 2, 3, 4, 5, 8] {
        let level = if n == 2 || n == 3 {
            Level::Full
        } else {
            Level::Reduced
        };
        run(n, opts(Algo::Ring, TransportChoice::Shm), level);
    }
}

#[test]
fn inproc_tree_every_world_size() {
    for n in [2, 3, 5, 8] {
        let level = Level::Reduced;
        run(n, opts(Algo::Tree, TransportChoice::Shm), level);
    }
}

#[test]
fn inproc_direct_and_tuned() {
    for n in [2, 5] {
        run(n, opts(Algo::Direct, TransportChoice::Shm), Level::Reduced);
    }
    // The tuner's own choices (direct, tree, ring by size), default chunk.
    let tuned = GroupOptions {
        timeout: Duration::from_secs(120),
        ..GroupOptions::default()
    };
    run(4, tuned, Level::Reduced);
}

#[test]
fn tcp_threads_ring_and_tree() {
    run(3, opts(Algo::Ring, TransportChoice::Tcp), Level::Reduced);
    run(4, opts(Algo::Tree, TransportChoice::Tcp), Level::Reduced);
}
