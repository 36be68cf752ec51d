//! Collectives with ranks as real processes (`ProcessGroup::from_env`, the embedded
//! TCP store on rank 0): the correctness matrix over shared memory and TCP, the
//! failure semantics (a SIGKILLed rank, a rank that never calls, abort(), a dropped
//! message) and the bad-input errors.

mod collectives;
mod ranks;

use std::time::{Duration, Instant};

use collectives::{Level, matrix, matrix_rank_order};
use tutti::group::{Algo, GroupOptions, TransportChoice};
use tutti::{DataType, Error, ProcessGroup, ReduceOp};

fn env(transport: &str, algo: &str) -> Vec<(&'static str, String)> {
    vec![
        ("TUTTI_TRANSPORT", transport.to_string()),
        ("TUTTI_ALGO", algo.to_string()),
        ("TUTTI_CHUNK_BYTES", "4096".to_string()),
        ("TUTTI_TIMEOUT_SECS", "120".to_string()),
    ]
}

fn group() -> ProcessGroup {
    ProcessGroup::from_env(GroupOptions::from_env().unwrap()).unwrap()
}

macro_rules! matrix_test {
    ($name:ident, $n:expr, $transport:expr, $algo:expr, $level:expr) => {
        #[test]
        fn $name() {
            if ranks::worker_rank().is_some() {
                matrix(&group(), $level);
                return;
            }
            let _serial = ranks::serial();
            ranks::run_ranks(
                stringify!($name),
                $n,
                &env($transport, $algo),
                Duration::from_secs(600),
            );
        }
    };
}

matrix_test!(shm_ring_3_processes, 3, "shm", "ring", Level::Reduced);
matrix_test!(shm_tree_4_processes, 4, "shm", "tree", Level::Reduced);
matrix_test!(shm_direct_4_processes, 4, "shm", "direct", Level::Reduced);

/// The window path between processes: 4 KiB window buffers (many rounds), results
/// equal to the rank-order fold bit for bit.
macro_rules! window_test {
    ($name:ident, $n:expr, $algo:expr, $level:expr) => {
        #[test]
        fn $name() {
            if ranks::worker_rank().is_some() {
                matrix_rank_order(&group(), $level);
                return;
            }
            let _serial = ranks::serial();
            let mut e = env("auto", $algo);
            e.push(("TUTTI_WINDOW_BYTES", "4096".to_string()));
            ranks::run_ranks(stringify!($name), $n, &e, Duration::from_secs(600));
        }
    };
}

window_test!(window_one_shot_2_processes_full, 2, "oneshot", Level::Full);
window_test!(window_two_shot_3_processes, 3, "twoshot", Level::Reduced);
window_test!(window_tuned_5_processes, 5, "", Level::Reduced);
window_test!(window_two_shot_8_processes, 8, "twoshot", Level::Reduced);
matrix_test!(tcp_ring_2_processes, 2, "tcp", "ring", Level::Reduced);
matrix_test!(tcp_tree_3_processes, 3, "tcp", "tree", Level::Reduced);
matrix_test!(
    tcp_halving_doubling_4_processes,
    4,
    "tcp",
    "hd",
    Level::Reduced
);
matrix_test!(single_process_group, 1, "auto", "ring", Level::Full);

/// Rank 2 of 4 kills itself 30 ms into a stream of 64 MiB all_reduces: the others
/// must fail within 5 s naming it, and refuse further operations.
fn sigkill_mid_all_reduce(name: &str, env: &[(&str, String)]) {
    sigkill_mid_all_reduce_on(name, env, false)
}

fn sigkill_mid_all_reduce_on(name: &str, env: &[(&str, String)], shared: bool) {
    if let Some(rank) = ranks::worker_rank() {
        let g = group();
        let mut shared_buf;
        let mut heap_buf;
        let buf: &mut [f32] = if shared {
            shared_buf = g.alloc_shared::<f32>(16 << 20).unwrap();
            shared_buf.fill(1.0);
            &mut shared_buf
        } else {
            heap_buf = vec![1.0f32; 16 << 20];
            &mut heap_buf
        };
        g.barrier().unwrap();
        if rank == 2 {
            // Die in the middle of the all_reduce.
            std::thread::spawn(|| {
                std::thread::sleep(Duration::from_millis(30));
                rustix::process::kill_process(
                    rustix::process::getpid(),
                    rustix::process::Signal::KILL,
                )
                .unwrap();
            });
        }
        let start = Instant::now();
        let mut last = Ok(());
        for _ in 0..50 {
            last = g.all_reduce(buf, ReduceOp::Sum);
            if last.is_err() {
                break;
            }
        }
        let took = start.elapsed();
        let err = last.expect_err("the all_reduce must fail once rank 2 is dead");
        eprintln!("rank {rank}: {err} (after {took:?})");
        assert!(
            matches!(
                err,
                Error::Collective {
                    op: "all_reduce",
                    ..
                }
            ),
            "{err}"
        );
        assert!(took < Duration::from_secs(5), "rank {rank} took {took:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("all_reduce #") && msg.contains("rank "),
            "{msg}"
        );
        assert!(
            msg.contains("[2]"),
            "the error names the dead rank 2: {msg}"
        );
        // The group now refuses new operations.
        let again = g.all_reduce(&mut buf[..4], ReduceOp::Sum).unwrap_err();
        assert!(matches!(again, Error::GroupFailed { .. }), "{again}");
        // Rank 0 serves the store: let the others read it before it goes away.
        if rank == 0 {
            std::thread::sleep(Duration::from_millis(1500));
        }
        return;
    }
    let _serial = ranks::serial();
    let outs = ranks::wait_all(ranks::spawn(name, 4, env), Duration::from_secs(120));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(outs[2].status.signal(), Some(9));
    let survivors: Vec<_> = [0, 1, 3].iter().map(|&r| outs[r].clone()).collect();
    ranks::check_success("sigkill survivors", &survivors);
}

#[test]
fn sigkill_of_one_rank_mid_all_reduce_fails_the_others_within_5s() {
    sigkill_mid_all_reduce(
        "sigkill_of_one_rank_mid_all_reduce_fails_the_others_within_5s",
        &env("shm", "ring"),
    );
}

#[test]
fn sigkill_of_one_rank_mid_all_reduce_on_the_window_path() {
    sigkill_mid_all_reduce(
        "sigkill_of_one_rank_mid_all_reduce_on_the_window_path",
        &env("auto", ""),
    );
}

#[test]
fn sigkill_of_one_rank_mid_all_reduce_reading_the_members_directly() {
    let mut e = env("auto", "");
    e.push(("TUTTI_WINDOW_DIRECT", "all".to_string()));
    sigkill_mid_all_reduce(
        "sigkill_of_one_rank_mid_all_reduce_reading_the_members_directly",
        &e,
    );
}

#[test]
fn sigkill_of_one_rank_mid_all_reduce_on_shared_buffers() {
    sigkill_mid_all_reduce_on(
        "sigkill_of_one_rank_mid_all_reduce_on_shared_buffers",
        &env("auto", ""),
        true,
    );
}

/// Buffers from `alloc_shared`: all_reduce in and out of place reads the peers'
/// blocks where they lie; float sums bit-identical to the rank-order fold at sizes
/// below the direct path (copying), of one and of several window rounds; a call
/// where one rank's input is an ordinary `Vec` falls back to copying on every rank;
/// nothing is left in /dev/shm once the allocation returned.
#[test]
fn shared_buffers_all_reduce_in_rank_order_and_leave_nothing_in_dev_shm() {
    if let Some(rank) = ranks::worker_rank() {
        let g = group();
        let n = g.size();
        let value = |r: usize, i: usize| ((r * 7919 + i * 104_729) % 10_007) as f32 * 1.0e-3 + 0.1;
        let max = (640 << 10) + 1;
        let mut input = g.alloc_shared::<f32>(max).unwrap();
        let mut output = g.alloc_shared::<f32>(max + 5).unwrap();
        assert_eq!((input.len(), output.len()), (max, max + 5));
        assert!(input.iter().all(|&x| x == 0.0), "zero-filled");
        let mine = format!("tutti-{}-", std::process::id());
        let left: Vec<String> = tutti::transport::shm::list_segments()
            .into_iter()
            .filter(|s| s.starts_with(&mine) && s.contains("shared"))
            .collect();
        assert!(left.is_empty(), "segment names left behind: {left:?}");
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for count in [1000, 16 << 10, (128 << 10) + 3, max] {
            let want: Vec<f32> = (0..count)
                .map(|i| (1..n).fold(value(0, i), |acc, r| acc + value(r, i)))
                .collect();
            for (i, x) in input[..count].iter_mut().enumerate() {
                *x = value(rank, i);
            }
            g.all_reduce_into(&input[..count], &mut output[..count], ReduceOp::Sum)
                .unwrap();
            assert!(
                bits(&output[..count]) == bits(&want),
                "out of place, {count}, rank {rank}"
            );
            assert!(
                input[..count]
                    .iter()
                    .enumerate()
                    .all(|(i, &x)| x == value(rank, i))
            );
            // In place, at an offset into the block.
            let off = 5;
            for (i, x) in output[off..off + count].iter_mut().enumerate() {
                *x = value(rank, i);
            }
            g.all_reduce(&mut output[off..off + count], ReduceOp::Sum)
                .unwrap();
            assert!(
                bits(&output[off..off + count]) == bits(&want),
                "in place, {count}, rank {rank}"
            );
            // Rank 1's input an ordinary Vec: every rank copies instead.
            let private: Vec<f32> = (0..count).map(|i| value(rank, i)).collect();
            let src: &[f32] = if rank == 1 { &private } else { &input[..count] };
            g.all_reduce_into(src, &mut output[..count], ReduceOp::Sum)
                .unwrap();
            assert!(
                bits(&output[..count]) == bits(&want),
                "mixed, {count}, rank {rank}"
            );
        }
        // Dropping a buffer on every rank leaves the others working.
        drop(input);
        let mut v = vec![rank as u64 + 1; 300 << 10];
        g.all_reduce(&mut v, ReduceOp::Sum).unwrap();
        assert!(v.iter().all(|&x| x == (1..=n as u64).sum::<u64>()));
        return;
    }
    let _serial = ranks::serial();
    let mut e = env("auto", "");
    e.push(("TUTTI_TIMEOUT_SECS", "30".to_string()));
    for n in [2, 3] {
        ranks::run_ranks(
            "shared_buffers_all_reduce_in_rank_order_and_leave_nothing_in_dev_shm",
            n,
            &e,
            Duration::from_secs(120),
        );
    }
}

/// Ranks that allocate different sizes get an error naming the sizes, not a hang.
#[test]
fn shared_allocations_of_different_sizes_are_an_error() {
    if let Some(rank) = ranks::worker_rank() {
        let g = group().with_timeout(Duration::from_secs(10));
        let len = if rank == 0 { 1000 } else { 100_000 };
        let err = g.alloc_shared::<f32>(len).unwrap_err().to_string();
        assert!(
            err.contains("every rank must allocate the same size"),
            "{err}"
        );
        let huge = group_overflow(&g);
        assert!(huge.contains("overflow"), "{huge}");
        if rank == 0 {
            std::thread::sleep(Duration::from_millis(1500));
        }
        return;
    }
    let _serial = ranks::serial();
    ranks::run_ranks(
        "shared_allocations_of_different_sizes_are_an_error",
        2,
        &env("auto", ""),
        Duration::from_secs(60),
    );
}

/// A rank whose allocation fails tells the others at once: they fail naming it
/// instead of waiting for the operation's timeout.
#[test]
fn a_failed_shared_allocation_fails_every_rank_promptly() {
    if let Some(rank) = ranks::worker_rank() {
        let g = group().with_timeout(Duration::from_secs(60));
        let len = if rank == 1 { 1usize << 62 } else { 4096 };
        let start = Instant::now();
        let err = g.alloc_shared::<u8>(len).unwrap_err().to_string();
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "took {:?}",
            start.elapsed()
        );
        if rank == 0 {
            assert!(
                err.contains("rank 1") && err.contains("could not allocate"),
                "{err}"
            );
            std::thread::sleep(Duration::from_millis(1500));
        }
        return;
    }
    let _serial = ranks::serial();
    ranks::run_ranks(
        "a_failed_shared_allocation_fails_every_rank_promptly",
        2,
        &env("auto", ""),
        Duration::from_secs(90),
    );
}

fn group_overflow(g: &ProcessGroup) -> String {
    g.alloc_shared::<f64>(usize::MAX / 4)
        .unwrap_err()
        .to_string()
}

/// Two-shot reading the other processes' inputs with `process_vm_readv`
/// (`TUTTI_WINDOW_DIRECT=all`): float sums bit-identical to the rank-order fold, in
/// and out of place, sizes of one to several window rounds; then the same with one
/// rank refusing direct reads, where the ranks must agree to copy instead.
#[test]
fn direct_reads_between_processes_fold_in_rank_order() {
    if let Some(rank) = ranks::worker_rank() {
        let g = group();
        let n = g.size();
        let value = |r: usize, i: usize| ((r * 7919 + i * 104_729) % 10_007) as f32 * 1.0e-3 + 0.1;
        for count in [16 << 10, (64 << 10) + 5, (128 << 10) + 3, (640 << 10) + 1] {
            let input: Vec<f32> = (0..count).map(|i| value(rank, i)).collect();
            let want: Vec<f32> = (0..count)
                .map(|i| (1..n).fold(value(0, i), |acc, r| acc + value(r, i)))
                .collect();
            let mut out = vec![0f32; count];
            g.all_reduce_into(&input, &mut out, ReduceOp::Sum).unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert!(
                bits(&out) == bits(&want),
                "out of place, {count} floats, rank {rank}"
            );
            let mut buf = input.clone();
            g.all_reduce(&mut buf, ReduceOp::Sum).unwrap();
            assert!(
                bits(&buf) == bits(&want),
                "in place, {count} floats, rank {rank}"
            );
            // The input of an out-of-place call is left as it was.
            assert!(input.iter().enumerate().all(|(i, &x)| x == value(rank, i)));
        }
        let mut tail = [rank as u64];
        g.all_reduce(&mut tail, ReduceOp::Sum).unwrap();
        assert_eq!(tail[0], (0..n as u64).sum::<u64>());
        return;
    }
    let _serial = ranks::serial();
    let name = "direct_reads_between_processes_fold_in_rank_order";
    let mut e = env("auto", "");
    e.push(("TUTTI_TIMEOUT_SECS", "30".to_string()));
    e.push(("TUTTI_TWO_SHOT_FROM", "4096".to_string()));
    for refusing in [None, Some(1)] {
        let direct = |r: usize| {
            let v = if Some(r) == refusing { "off" } else { "all" };
            vec!["env".to_string(), format!("TUTTI_WINDOW_DIRECT={v}")]
        };
        let outs = ranks::wait_all(
            ranks::spawn_with(name, 3, &e, &direct),
            Duration::from_secs(120),
        );
        ranks::check_success(name, &outs);
    }
}

/// Ranks told different one-shot/two-shot crossovers (as ranks that each measured
/// the host while it was busy could be) still run the same window algorithm: the
/// first member's value holds on every rank. Before the ranks agreed, rank 0 ran
/// one-shot and rank 1 two-shot at 8 KiB-512 KiB; one-shot's post satisfied
/// two-shot's second wait and both hung one call later (tutti-bench on a fresh
/// machine, CI).
#[test]
fn ranks_that_measured_different_crossovers_run_the_same_algorithm() {
    if let Some(rank) = ranks::worker_rank() {
        let g = group();
        let n = g.size();
        for bytes in [8 << 10, 32 << 10, 64 << 10, 256 << 10, 512 << 10] {
            let count = bytes / 4;
            let input: Vec<f32> = (0..count).map(|i| (rank * 1000 + i % 997) as f32).collect();
            let want: Vec<f32> = (0..count)
                .map(|i| (0..n).map(|r| (r * 1000 + i % 997) as f32).sum())
                .collect();
            let mut out = vec![0f32; count];
            g.all_reduce_into(&input, &mut out, ReduceOp::Sum).unwrap();
            assert_eq!(out, want, "out of place, {bytes} bytes, rank {rank}");
            let mut buf = input.clone();
            g.all_reduce(&mut buf, ReduceOp::Sum).unwrap();
            assert_eq!(buf, want, "in place, {bytes} bytes, rank {rank}");
        }
        // One more small call: a rank one post ahead hangs here.
        let mut tail = [rank as u64];
        g.all_reduce(&mut tail, ReduceOp::Sum).unwrap();
        assert_eq!(tail[0], (0..n as u64).sum::<u64>());
        return;
    }
    let _serial = ranks::serial();
    let mut e = env("auto", "");
    e.push(("TUTTI_TIMEOUT_SECS", "20".to_string()));
    let name = "ranks_that_measured_different_crossovers_run_the_same_algorithm";
    let from = |r: usize| {
        let bytes = if r == 0 { 1 << 20 } else { 4096 };
        vec!["env".to_string(), format!("TUTTI_TWO_SHOT_FROM={bytes}")]
    };
    let outs = ranks::wait_all(
        ranks::spawn_with(name, 2, &e, &from),
        Duration::from_secs(120),
    );
    ranks::check_success(name, &outs);
}

#[test]
fn a_rank_that_never_calls_is_named_in_the_timeout_error() {
    if let Some(rank) = ranks::worker_rank() {
        let g = group().with_timeout(Duration::from_secs(2));
        g.barrier().unwrap();
        if rank == 2 {
            // Never calls the all_reduce; stays alive until the others are done.
            std::thread::sleep(Duration::from_secs(6));
            return;
        }
        let mut buf = vec![1i32; 1000];
        let start = Instant::now();
        let err = g.all_reduce(&mut buf, ReduceOp::Sum).unwrap_err();
        let took = start.elapsed();
        eprintln!("rank {rank}: {err} after {took:?}");
        let msg = err.to_string();
        assert!(msg.contains("all_reduce #1"), "{msg}");
        assert!(
            msg.contains("never reached all_reduce #1") && msg.contains("[2]"),
            "{msg}"
        );
        assert!(
            took < Duration::from_secs(2) + Duration::from_secs(3),
            "took {took:?}"
        );
        if rank == 0 {
            std::thread::sleep(Duration::from_secs(2));
        }
        return;
    }
    let _serial = ranks::serial();
    ranks::run_ranks(
        "a_rank_that_never_calls_is_named_in_the_timeout_error",
        3,
        &env("shm", "ring"),
        Duration::from_secs(60),
    );
}

#[test]
fn a_dropped_message_is_a_timeout_error() {
    // Rank 1's links drop its second message: in a 2-rank ring all_reduce of one
    // chunk that is its last one (the reduced segment), so rank 0 waits for bytes
    // that never come and must time out naming rank 1; rank 1 itself completes.
    if let Some(rank) = ranks::worker_rank() {
        let g = group().with_timeout(Duration::from_secs(2));
        let mut buf = vec![1.0f64; 256];
        let start = Instant::now();
        let r = g.all_reduce(&mut buf, ReduceOp::Sum);
        if rank == 0 {
            let err = r.unwrap_err();
            eprintln!("rank 0: {err}");
            assert!(start.elapsed() < Duration::from_secs(2) + Duration::from_secs(3));
            let msg = err.to_string();
            assert!(
                msg.contains("all_reduce #0")
                    && msg.contains("timed out")
                    && msg.contains("rank 1"),
                "{msg}"
            );
        } else {
            // Stay alive past rank 0's timeout, so rank 0 sees silence, not a closed link.
            std::thread::sleep(Duration::from_secs(4));
        }
        return;
    }
    let mut e = env("shm", "ring");
    e.push(("TUTTI_FAULTS", "drop:data:2".into()));
    e.push(("TUTTI_FAULTS_RANK", "1".into()));
    let _serial = ranks::serial();
    ranks::run_ranks(
        "a_dropped_message_is_a_timeout_error",
        2,
        &e,
        Duration::from_secs(60),
    );
}

#[test]
fn abort_from_another_thread_unblocks_the_pending_op() {
    let groups = ProcessGroup::threads(2, GroupOptions::default()).unwrap();
    let g0 = groups[0].clone();
    let aborter = g0.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        aborter.abort();
    });
    let start = Instant::now();
    // Rank 1 never calls: only abort() can end this (the timeout is 30 minutes).
    let err = g0.all_reduce(&mut [1.0f32; 64], ReduceOp::Sum).unwrap_err();
    t.join().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(err.to_string().contains("aborted"), "{err}");
    let again = g0.barrier().unwrap_err();
    assert!(
        matches!(again, Error::GroupFailed { .. }) && again.to_string().contains("aborted"),
        "{again}"
    );
    drop(groups);
}

#[test]
fn bad_input_is_an_error_before_any_byte_moves() {
    let out = ProcessGroup::run_threads(3, GroupOptions::default(), |g| {
        let r = g.rank();
        let mut f = vec![1.0f32; 6];
        let e = g.all_reduce(&mut f, ReduceOp::BXor).unwrap_err();
        assert!(
            matches!(e, Error::InvalidOp { .. }) && e.to_string().contains("bxor"),
            "{e}"
        );
        let mut c = vec![num_complex::Complex::new(1.0f64, 1.0); 3];
        assert!(
            g.all_reduce(&mut c, ReduceOp::Max)
                .unwrap_err()
                .to_string()
                .contains("complex")
        );
        let e = g.broadcast(&mut f, 3).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid argument: broadcast: root 3 is outside the group of 3 ranks"
        );
        let e = g.reduce(&mut f, ReduceOp::Sum, 7).unwrap_err();
        assert!(
            e.to_string()
                .contains("root 7 is outside the group of 3 ranks"),
            "{e}"
        );
        let e = g.send(&f, 5, 0).unwrap_err();
        assert!(
            e.to_string()
                .contains("send: rank 5 is outside the group of 3 ranks"),
            "{e}"
        );
        let e = g.recv(&mut f, r, 0).unwrap_err();
        assert!(e.to_string().contains("is this rank"), "{e}");
        let mut small = vec![0.0f32; 5];
        let e = g.all_gather(&f, &mut small).unwrap_err();
        assert!(
            e.to_string()
                .contains("all_gather: output (group size x input): expected 18 elements, got 5"),
            "{e}"
        );
        let e = g.reduce_scatter(&f, &mut small, ReduceOp::Sum).unwrap_err();
        assert!(
            e.to_string().contains(
                "reduce_scatter: input (group size x output): expected 15 elements, got 6"
            ),
            "{e}"
        );
        let e = g.all_to_all(&f[..5], &mut small).unwrap_err();
        assert!(
            e.to_string().contains("multiple of the group size 3"),
            "{e}"
        );
        let e = g
            .all_reduce_into(&f, &mut small, ReduceOp::Sum)
            .unwrap_err();
        assert!(e.to_string().contains("expected 6 elements, got 5"), "{e}");
        assert!(
            g.new_group(&[0, 3])
                .unwrap_err()
                .to_string()
                .contains("rank 3 is outside the parent group")
        );
        // None of that broke the group: a real op still works on every rank.
        let mut v = vec![r as u64 + 1; 4];
        g.all_reduce(&mut v, ReduceOp::Sum).unwrap();
        assert_eq!(v, vec![6; 4]);
        let _ = DataType::F32;
        true
    })
    .unwrap();
    assert_eq!(out, vec![true; 3]);
}

#[test]
fn bad_environment_and_second_init_are_clear_errors() {
    if ranks::worker_rank().is_some() {
        let r = ranks::worker_rank().unwrap();
        let g = tutti::init().unwrap();
        let e = tutti::init().unwrap_err();
        assert!(e.to_string().contains("already initialized"), "{e}");
        g.barrier().unwrap();
        if r == 0 {
            std::thread::sleep(Duration::from_millis(500));
        }
        return;
    }
    let _serial = ranks::serial();
    ranks::run_ranks(
        "bad_environment_and_second_init_are_clear_errors",
        2,
        &env("auto", "ring"),
        Duration::from_secs(60),
    );
    // Unknown names in the environment, checked in a child with the variable set.
    let outs = ranks::wait_all(
        ranks::spawn(
            "unknown_transport_name_worker",
            1,
            &[("TUTTI_TRANSPORT", "carrier-pigeon".into())],
        ),
        Duration::from_secs(60),
    );
    ranks::check_success("unknown transport", &outs);
}

#[test]
fn unknown_transport_name_worker() {
    if ranks::worker_rank().is_none() {
        return; // Runs only as the child of bad_environment_and_second_init_are_clear_errors.
    }
    let e = GroupOptions::from_env().unwrap_err();
    assert!(
        e.to_string()
            .contains("unknown transport \"carrier-pigeon\""),
        "{e}"
    );
    let e = "smoke".parse::<Algo>().unwrap_err();
    assert!(e.to_string().contains("unknown algorithm \"smoke\""), "{e}");
    let _ = TransportChoice::Auto;
}

#[test]
fn tutti_check_names_the_first_rank_that_differs() {
    let out = ProcessGroup::run_threads(
        3,
        GroupOptions {
            check: true,
            ..GroupOptions::default()
        },
        |g| {
            let count = if g.rank() == 2 { 5 } else { 4 };
            let mut v = vec![1.0f32; count];
            g.all_reduce(&mut v, ReduceOp::Sum).unwrap_err().to_string()
        },
    )
    .unwrap();
    for msg in out {
        assert!(
            msg.contains("rank 2 called all_reduce(count=5")
                && msg.contains("rank 0 called all_reduce(count=4"),
            "{msg}"
        );
    }
}

#[test]
fn raw_pointer_layer_matches_the_typed_api() {
    use std::ffi::c_void;
    use tutti::group::MemoryKind;
    let out = ProcessGroup::run_threads(2, GroupOptions::default(), |g| {
        let r = g.rank() as f32;
        let send: Vec<f32> = (0..100).map(|i| i as f32 + r).collect();
        let mut recv = vec![0f32; 100];
        // SAFETY: both buffers hold 100 f32 and outlive the call.
        unsafe {
            g.all_reduce_raw(
                send.as_ptr().cast(),
                recv.as_mut_ptr().cast(),
                100,
                DataType::F32,
                ReduceOp::Sum,
                MemoryKind::Host,
            )
            .unwrap();
        }
        assert!(
            recv.iter()
                .enumerate()
                .all(|(i, v)| *v == 2.0 * i as f32 + 1.0)
        );
        let mut inplace = send.clone();
        let p = inplace.as_mut_ptr() as *mut c_void;
        // SAFETY: in place: the same buffer for send and recv.
        unsafe {
            g.all_reduce_raw(p, p, 100, DataType::F32, ReduceOp::Max, MemoryKind::Host)
                .unwrap()
        };
        assert!(
            inplace
                .iter()
                .enumerate()
                .all(|(i, v)| *v == i as f32 + 1.0)
        );
        let mut gathered = vec![0f32; 200];
        // SAFETY: 100 in, 200 out.
        unsafe {
            g.all_gather_raw(
                send.as_ptr().cast(),
                gathered.as_mut_ptr().cast(),
                100,
                DataType::F32,
                MemoryKind::Host,
            )
            .unwrap()
        };
        assert_eq!(gathered[100], 1.0);
        let mut block = vec![0f32; 50];
        // SAFETY: 100 in, 50 out.
        unsafe {
            g.reduce_scatter_raw(
                send.as_ptr().cast(),
                block.as_mut_ptr().cast(),
                50,
                DataType::F32,
                ReduceOp::Sum,
                MemoryKind::Host,
            )
            .unwrap()
        };
        let k = g.rank() * 50;
        assert!(
            block
                .iter()
                .enumerate()
                .all(|(i, v)| *v == 2.0 * (k + i) as f32 + 1.0)
        );
        let mut b = vec![r; 8];
        // SAFETY: 8 f32.
        unsafe {
            g.broadcast_raw(b.as_mut_ptr().cast(), 8, DataType::F32, 1, MemoryKind::Host)
                .unwrap()
        };
        assert_eq!(b, vec![1.0; 8]);
        // Bad input: null pointers, device memory, invalid (dtype, op).
        // SAFETY: the calls are rejected before touching memory.
        let e = unsafe {
            g.all_reduce_raw(
                std::ptr::null(),
                std::ptr::null_mut(),
                4,
                DataType::F32,
                ReduceOp::Sum,
                MemoryKind::Host,
            )
        }
        .unwrap_err();
        assert!(e.to_string().contains("send is null with count 4"), "{e}");
        // SAFETY: as above.
        let e = unsafe {
            g.broadcast_raw(
                b.as_mut_ptr().cast(),
                8,
                DataType::F32,
                0,
                MemoryKind::Cuda { device: 0 },
            )
        }
        .unwrap_err();
        assert!(e.to_string().contains("CUDA device 0"), "{e}");
        // SAFETY: as above.
        let e =
            unsafe { g.all_reduce_raw(p, p, 100, DataType::F32, ReduceOp::BAnd, MemoryKind::Host) }
                .unwrap_err();
        assert!(matches!(e, Error::InvalidOp { .. }), "{e}");
        true
    })
    .unwrap();
    assert_eq!(out, vec![true, true]);
}

#[test]
fn send_recv_with_tags_and_async_work() {
    let out = ProcessGroup::run_threads(3, GroupOptions::default(), |g| {
        let r = g.rank();
        let next = (r + 1) % 3;
        let prev = (r + 2) % 3;
        // A ring of sends: even ranks send first, odd ranks receive first.
        let mine: Vec<i64> = (0..1000).map(|i| i * 10 + r as i64).collect();
        let mut got = vec![0i64; 1000];
        if r % 2 == 0 {
            g.send(&mine, next, 7).unwrap();
            g.recv(&mut got, prev, 7).unwrap();
        } else {
            g.recv(&mut got, prev, 7).unwrap();
            g.send(&mine, next, 7).unwrap();
        }
        assert!(
            got.iter()
                .enumerate()
                .all(|(i, v)| *v == i as i64 * 10 + prev as i64)
        );
        // Async: the work hands the buffer back.
        let w = g.all_reduce_async(vec![r as u32 + 1; 64], ReduceOp::Sum);
        let sum = w.wait().unwrap();
        assert_eq!(sum, vec![6; 64]);
        let w = g.barrier_async();
        assert!(w.wait_timeout(Duration::from_secs(30)).unwrap());
        assert!(w.is_completed() && w.error().is_none());
        // Messages are matched by tag: a receive for tag 6 does not take the pending
        // tag-5 message (it times out naming its tag), the tag-5 receive then does.
        let out = if r == 0 {
            g.send(&[1u8; 4], 1, 5).unwrap();
            String::new()
        } else if r == 1 {
            let mut b = [0u8; 4];
            let short = g.with_timeout(Duration::from_millis(300));
            let e = short.recv(&mut b, 0, 6).unwrap_err().to_string();
            short.recv(&mut b, 0, 5).unwrap();
            assert_eq!(b, [1u8; 4]);
            e
        } else {
            String::new()
        };
        g.barrier().unwrap();
        out
    })
    .unwrap();
    assert!(
        out[1].contains("tag 6") && out[1].contains("timed out"),
        "{}",
        out[1]
    );
}

#[test]
fn new_group_and_split_make_working_subgroups() {
    let out = ProcessGroup::run_threads(5, GroupOptions::default(), |g| {
        let r = g.rank();
        // new_group of the odd ranks.
        let odd = g.new_group(&[1, 3]).unwrap();
        assert_eq!(odd.is_some(), r % 2 == 1);
        let mut odd_sum = None;
        if let Some(sub) = &odd {
            assert_eq!(sub.size(), 2);
            assert_eq!(sub.global_rank(sub.rank()), Some(r));
            let mut v = vec![r as u64; 16];
            sub.all_reduce(&mut v, ReduceOp::Sum).unwrap();
            odd_sum = Some(v[0]);
        }
        // split by parity, ordered by descending parent rank (key = -rank).
        let part = g.split(Some((r % 2) as u32), -(r as i64)).unwrap().unwrap();
        let want_size = if r % 2 == 0 { 3 } else { 2 };
        assert_eq!(part.size(), want_size);
        let mut ranks = vec![0u64; part.size()];
        part.all_gather(&[r as u64], &mut ranks).unwrap();
        // A rank outside every colour gets no group.
        let none = g.split(if r == 4 { None } else { Some(0) }, 0).unwrap();
        assert_eq!(none.is_none(), r == 4);
        // The parent group still works after its sub-groups.
        let mut v = vec![1u32; 8];
        g.all_reduce(&mut v, ReduceOp::Sum).unwrap();
        assert_eq!(v, vec![5; 8]);
        (odd_sum, ranks)
    })
    .unwrap();
    assert_eq!(out[1].0, Some(4));
    assert_eq!(out[3].0, Some(4));
    assert_eq!(out[0].1, vec![4, 2, 0]);
    assert_eq!(out[1].1, vec![3, 1]);
}
