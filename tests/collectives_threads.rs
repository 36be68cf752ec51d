//! The collectives matrix with ranks as threads: world sizes 1, 2, 3, 4, 5 and 8, on
//! the same-host windows (one-shot, two-shot, tuned: results equal to the rank-order
//! fold bit for bit), in-process links (ring, tree, direct) and TCP over loopback.

mod collectives;

use std::time::Duration;

use collectives::{Level, matrix, matrix_rank_order};
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
    let window = !o.algo.is_some_and(Algo::uses_links) && o.transport != TransportChoice::Tcp;
    ProcessGroup::run_threads(n, o, move |g| {
        if window {
            matrix_rank_order(&g, level)
        } else {
            matrix(&g, level)
        }
    })
    .unwrap();
    eprintln!("matrix n={n} {level:?}: {:?}", start.elapsed());
}

/// Window options: 4 KiB buffers, so that every size takes several rounds.
fn window(algo: Option<Algo>) -> GroupOptions {
    GroupOptions {
        algo,
        window_bytes: Some(4096),
        timeout: Duration::from_secs(120),
        ..GroupOptions::default()
    }
}

#[test]
fn window_one_shot_every_world_size() {
    for (n, level) in [
        (1, Level::Reduced),
        (2, Level::Full),
        (4, Level::Reduced),
        (5, Level::Reduced),
    ] {
        run(n, window(Some(Algo::OneShot)), level);
    }
}

#[test]
fn window_two_shot_every_world_size() {
    for (n, level) in [(2, Level::Reduced), (3, Level::Full), (8, Level::Reduced)] {
        run(n, window(Some(Algo::TwoShot)), level);
    }
}

#[test]
fn window_tuned_default_geometry() {
    for n in [2, 4] {
        let o = GroupOptions {
            timeout: Duration::from_secs(120),
            ..GroupOptions::default()
        };
        run(n, o, Level::Reduced);
    }
}

#[test]
fn inproc_ring_every_world_size() {
    for (n, level) in [
        (1, Level::Reduced),
        (2, Level::Full),
        (3, Level::Reduced),
        (5, Level::Reduced),
    ] {
        run(n, opts(Algo::Ring, TransportChoice::Shm), level);
    }
}

#[test]
fn inproc_tree_every_world_size() {
    for n in [3, 8] {
        run(n, opts(Algo::Tree, TransportChoice::Shm), Level::Reduced);
    }
}

#[test]
fn inproc_direct_and_tuned() {
    for n in [2, 5] {
        run(n, opts(Algo::Direct, TransportChoice::Shm), Level::Reduced);
    }
}

/// Halving-doubling forced: its all_reduce on 4 and 8 ranks (the other collectives,
/// and rank counts that are not powers of two, run the ring).
#[test]
fn inproc_halving_doubling() {
    for n in [4, 8, 3] {
        run(
            n,
            opts(Algo::HalvingDoubling, TransportChoice::Shm),
            Level::Reduced,
        );
    }
}

#[test]
fn tcp_threads_ring_and_tree() {
    run(3, opts(Algo::Ring, TransportChoice::Tcp), Level::Reduced);
    run(4, opts(Algo::Tree, TransportChoice::Tcp), Level::Reduced);
}

/// Threads standing for ranks on several hosts (`ProcessGroup::threads_on_hosts`):
/// windows inside each pretend host, TCP on loopback between them. The matrix runs
/// the hierarchical all_reduce (forced, and as the tuner picks it), all_gather and
/// reduce_scatter, and the flat link algorithms for the rest, on uneven and
/// interleaved layouts, with 4 KiB windows and chunks so that every size takes
/// several rounds.
#[test]
fn hierarchical_on_pretend_hosts() {
    let layouts: [(&[usize], Option<Algo>); 3] = [
        (&[0, 0, 0, 1, 1, 2], Some(Algo::Hier)),
        (&[0, 1, 0, 1, 1], None),
        (&[0, 0, 1, 1], Some(Algo::Ring)),
    ];
    for (hosts, algo) in layouts {
        let _one_at_a_time = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let start = std::time::Instant::now();
        let o = GroupOptions {
            algo,
            chunk: Some(4096),
            window_bytes: Some(4096),
            timeout: Duration::from_secs(120),
            ..GroupOptions::default()
        };
        let groups = ProcessGroup::threads_on_hosts(hosts, o).unwrap();
        std::thread::scope(|s| {
            for g in groups {
                s.spawn(move || {
                    let me = g.rank();
                    for p in (0..g.size()).filter(|&p| p != me) {
                        let want = if hosts[p] == hosts[me] {
                            "window"
                        } else {
                            "tcp"
                        };
                        assert_eq!(g.transport_to(p), Some(want), "rank {me} to {p}");
                    }
                    matrix(&g, Level::Reduced)
                });
            }
        });
        eprintln!("hosts {hosts:?} {algo:?}: {:?}", start.elapsed());
    }
}

/// Two-shot all_reduces large enough to read the other thread ranks' inputs directly
/// (the default between threads), the same with direct reads off, and on buffers
/// from `alloc_shared`: float sums bit-identical to the rank-order fold, in and out
/// of place, with window buffers small enough for several rounds; then
/// reduce_scatter and all_gather large enough to read directly.
#[test]
fn window_direct_reads_between_threads_fold_in_rank_order() {
    use tutti::{DirectReads, ReduceOp};
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    for n in [2, 3, 4] {
        for direct in [DirectReads::InProcess, DirectReads::Off] {
            let o = GroupOptions {
                algo: Some(Algo::TwoShot),
                window_bytes: Some(64 << 10),
                window_direct: direct,
                timeout: Duration::from_secs(120),
                ..GroupOptions::default()
            };
            ProcessGroup::run_threads(n, o, move |g| {
                let (rank, n) = (g.rank(), g.size());
                let value =
                    |r: usize, i: usize| ((r * 7919 + i * 104_729) % 10_007) as f32 * 1.0e-3 + 0.1;
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                let mut shared = g.alloc_shared::<f32>(300_001).unwrap();
                for count in [(64 << 10) + 7, 300_001] {
                    let want: Vec<f32> = (0..count)
                        .map(|i| (1..n).fold(value(0, i), |acc, r| acc + value(r, i)))
                        .collect();
                    let input: Vec<f32> = (0..count).map(|i| value(rank, i)).collect();
                    let mut out = vec![0f32; count];
                    g.all_reduce_into(&input, &mut out, ReduceOp::Sum).unwrap();
                    assert!(
                        bits(&out) == bits(&want),
                        "{direct:?} n={n} out of place {count}"
                    );
                    let mut buf = input.clone();
                    g.all_reduce(&mut buf, ReduceOp::Sum).unwrap();
                    assert!(
                        bits(&buf) == bits(&want),
                        "{direct:?} n={n} in place {count}"
                    );
                    shared[..count].copy_from_slice(&input);
                    g.all_reduce(&mut shared[..count], ReduceOp::Sum).unwrap();
                    assert!(
                        bits(&shared[..count]) == bits(&want),
                        "{direct:?} n={n} shared {count}"
                    );
                }
                // reduce_scatter and all_gather of 300 000 floats per rank.
                let block = 100_000;
                let input: Vec<f32> = (0..n * block).map(|i| value(rank, i)).collect();
                let mut mine = vec![0f32; block];
                g.reduce_scatter(&input, &mut mine, ReduceOp::Sum).unwrap();
                let want: Vec<f32> = (rank * block..(rank + 1) * block)
                    .map(|i| (1..n).fold(value(0, i), |acc, r| acc + value(r, i)))
                    .collect();
                assert!(
                    bits(&mine) == bits(&want),
                    "{direct:?} n={n} reduce_scatter"
                );
                let piece: Vec<f32> = (0..3 * block).map(|i| value(rank, i)).collect();
                let mut all = vec![0f32; n * 3 * block];
                g.all_gather(&piece, &mut all).unwrap();
                for m in 0..n {
                    let got = &all[m * 3 * block..(m + 1) * 3 * block];
                    assert!(
                        got.iter().enumerate().all(|(i, &x)| x == value(m, i)),
                        "{direct:?} n={n} all_gather block {m}"
                    );
                }
            })
            .unwrap();
        }
    }
}
