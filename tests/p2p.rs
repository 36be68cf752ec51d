//! Operations that progress together (issue: non-blocking send/recv that cannot
//! deadlock): isend/irecv of any size posted in either order, ring shifts, a pipeline
//! passing activations forward and gradients back while another group all_reduces,
//! batches where every rank exchanges with every other, any-source receives, uneven
//! all_to_all with zero splits, group scopes, async collectives, typed Work errors,
//! monitored_barrier. Ranks as threads (windows, and TCP) and as processes (shm and
//! tcp, one run with the fault injector delaying messages). Every element checked.

mod ranks;

use std::time::{Duration, Instant};

use tutti::group::{Algo, GroupOptions, P2POp, TransportChoice};
use tutti::{Error, ProcessGroup, ReduceOp};

fn opts(transport: TransportChoice) -> GroupOptions {
    GroupOptions {
        transport,
        timeout: Duration::from_secs(60),
        ..GroupOptions::default()
    }
}

/// Deterministic data of message (from, to, tag), `len` f32.
fn msg(from: usize, to: usize, tag: u32, len: usize) -> Vec<f32> {
    let seed = (from * 1_000_003 + to * 1009 + tag as usize) as u64;
    ranks::random_bytes(len * 4, seed)
        .chunks_exact(4)
        .map(|c| f32::from_bits(u32::from_le_bytes(c.try_into().unwrap()) & 0x3fff_ffff))
        .collect()
}

fn threads<R: Send + 'static>(
    n: usize,
    t: TransportChoice,
    f: impl Fn(ProcessGroup) -> R + Send + Sync + 'static,
) -> Vec<R> {
    ProcessGroup::run_threads(n, opts(t), f).unwrap()
}

// ---------------------------------------------------------------- the scenarios

/// isend + irecv of `len` f32 between ranks 0 and 1, posted in either order.
fn exchange(g: &ProcessGroup, len: usize, recv_first: bool) {
    let (r, peer) = (g.rank(), 1 - g.rank());
    let start = Instant::now();
    let (s, rv) = if recv_first {
        let rv = g.recv_async(vec![0f32; len], peer, 7);
        let s = g.send_async(msg(r, peer, 7, len), peer, 7);
        (s, rv)
    } else {
        let s = g.send_async(msg(r, peer, 7, len), peer, 7);
        let rv = g.recv_async(vec![0f32; len], peer, 7);
        (s, rv)
    };
    s.wait().unwrap();
    let got = rv.wait().unwrap();
    assert!(got == msg(peer, r, 7, len), "rank {r}: wrong data");
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
}

fn ring_shift(g: &ProcessGroup, len: usize) {
    let (n, r) = (g.size(), g.rank());
    let (next, prev) = ((r + 1) % n, (r + n - 1) % n);
    // Blocking-looking order on every rank: send first. The engine makes it safe.
    let s = g.send_async(msg(r, next, 1, len), next, 1);
    let mut buf = vec![0f32; len];
    g.recv(&mut buf, prev, 1).unwrap();
    s.wait().unwrap();
    assert!(buf == msg(prev, r, 1, len), "rank {r}: ring shift data");
    // The same shift with the blocking sendrecv (both in flight together).
    let mut buf = vec![0f32; len];
    g.sendrecv(&msg(r, next, 2, len), next, &mut buf, prev, 2)
        .unwrap();
    assert!(buf == msg(prev, r, 2, len), "rank {r}: sendrecv shift data");
}

fn all_pairs_batch(g: &ProcessGroup, len: usize) {
    let (n, r) = (g.size(), g.rank());
    let mut ops = Vec::new();
    for p in (0..n).filter(|&p| p != r) {
        ops.push(P2POp::Send {
            buf: msg(r, p, 3, len + p),
            peer: p,
            tag: 3,
        });
        ops.push(P2POp::Recv {
            buf: vec![0f32; len + r],
            peer: p,
            tag: 3,
        });
    }
    let bufs = g.batch_isend_irecv(ops).wait().unwrap();
    for (i, p) in (0..n).filter(|&p| p != r).enumerate() {
        assert!(
            bufs[2 * i + 1] == msg(p, r, 3, len + r),
            "rank {r}: from {p}"
        );
    }
}

fn any_source(g: &ProcessGroup) {
    let (n, r) = (g.size(), g.rank());
    if r == 0 {
        let mut seen = Vec::new();
        for _ in 1..n {
            let mut b = vec![0f32; 5000];
            let src = g.recv_any(&mut b, 9).unwrap();
            assert!(b == msg(src, 0, 9, 5000), "from {src}");
            seen.push(src);
        }
        seen.sort();
        assert_eq!(seen, (1..n).collect::<Vec<_>>());
    } else {
        g.send(&msg(r, 0, 9, 5000), 0, 9).unwrap();
    }
}

/// Pipeline stages 0 -> 1 -> ... pass activations forward and gradients back over
/// `micro` micro-batches (1F1B-like: every stage posts the next forward receive
/// before waiting for the backward one) while a data-parallel group of the same
/// ranks all_reduces on another thread.
fn pipeline_with_all_reduce(g: &ProcessGroup, micro: usize, len: usize) {
    let (n, r) = (g.size(), g.rank());
    let dp = g.new_group(&(0..n).collect::<Vec<_>>()).unwrap().unwrap();
    let dp_thread = std::thread::spawn(move || {
        for i in 0..20 {
            let mut v = vec![(dp.rank() + i) as f32; 100_000];
            dp.all_reduce(&mut v, ReduceOp::Sum).unwrap();
            let want: f32 = (0..dp.size()).map(|k| (k + i) as f32).sum();
            assert!(v.iter().all(|&x| x == want));
        }
    });
    let mut sends = Vec::new();
    for m in 0..micro {
        let tag = m as u32;
        // Forward.
        let act = if r == 0 {
            msg(0, 0, tag, len)
        } else {
            let mut a = vec![0f32; len];
            g.recv(&mut a, r - 1, tag).unwrap();
            // Stage k adds k: the same additions, in the same order, as the stages.
            let want: Vec<f32> = msg(0, 0, tag, len)
                .iter()
                .map(|&x| (0..r).fold(x, |acc, k| acc + k as f32))
                .collect();
            assert!(a == want, "rank {r}: activation of micro-batch {m}");
            a
        };
        let out: Vec<f32> = act.iter().map(|x| x + r as f32).collect();
        if r + 1 < n {
            sends.push(g.send_async(out, r + 1, tag));
        }
    }
    for m in 0..micro {
        let tag = 1000 + m as u32;
        // Backward: the last stage starts.
        let grad = if r + 1 == n {
            msg(n, 0, tag, len)
        } else {
            let mut gr = vec![0f32; len];
            g.recv(&mut gr, r + 1, tag).unwrap();
            gr
        };
        let want_grad: Vec<f32> = msg(n, 0, tag, len)
            .iter()
            .map(|x| x * 2f32.powi((n - 1 - r) as i32))
            .collect();
        assert!(grad == want_grad, "rank {r}: gradient of micro-batch {m}");
        if r > 0 {
            let back: Vec<f32> = grad.iter().map(|x| x * 2.0).collect();
            sends.push(g.send_async(back, r - 1, tag));
        }
    }
    for s in sends {
        s.wait().unwrap();
    }
    dp_thread.join().unwrap();
}

fn uneven_all_to_all(g: &ProcessGroup) {
    let (n, r) = (g.size(), g.rank());
    // Rank s sends (s + 2 d) % 3 * 1000 elements to d: zero for some pairs.
    let split = |s: usize, d: usize| ((s + 2 * d) % 3) * 1000;
    let ins: Vec<usize> = (0..n).map(|d| split(r, d)).collect();
    let outs: Vec<usize> = (0..n).map(|s| split(s, r)).collect();
    let input: Vec<f32> = (0..n).flat_map(|d| msg(r, d, 11, ins[d])).collect();
    let mut output = vec![0f32; outs.iter().sum()];
    g.all_to_all_single(&input, &mut output, &ins, &outs)
        .unwrap();
    let want: Vec<f32> = (0..n).flat_map(|s| msg(s, r, 11, outs[s])).collect();
    assert!(output == want, "rank {r}: uneven all_to_all");
    // A split mismatch is an error on every rank, before any data moves.
    let mut bad_outs = outs.clone();
    if r == 0 {
        bad_outs[n - 1] += 1;
    }
    let mut o2 = vec![0f32; bad_outs.iter().sum()];
    let err = g
        .all_to_all_single(&input, &mut o2, &ins, &bad_outs)
        .unwrap_err();
    assert!(err.to_string().contains("split sizes disagree"), "{err}");
    // Per-rank lengths: all_gather_v, gather_v, scatter_v.
    let counts: Vec<usize> = (0..n).map(|k| (k * 700) % 1500).collect();
    let mine = msg(r, r, 12, counts[r]);
    let mut all = vec![0f32; counts.iter().sum()];
    g.all_gather_v(&mine, &mut all, &counts).unwrap();
    let concat: Vec<f32> = (0..n).flat_map(|k| msg(k, k, 12, counts[k])).collect();
    assert!(all == concat);
    let root = n - 1;
    let mut gathered = vec![0f32; if r == root { concat.len() } else { 0 }];
    g.gather_v(&mine, &mut gathered, &counts, root).unwrap();
    if r == root {
        assert!(gathered == concat);
    }
    let src = if r == root {
        concat.clone()
    } else {
        Vec::new()
    };
    let mut piece = vec![0f32; counts[r]];
    g.scatter_v(&src, &mut piece, &counts, root).unwrap();
    assert!(piece == mine);
}

fn scope_and_async_collectives(g: &ProcessGroup) {
    let (n, r) = (g.size(), g.rank());
    let (next, prev) = ((r + 1) % n, (r + n - 1) % n);
    let scope = g.group_start().unwrap();
    let s = g.send_async(msg(r, next, 21, 70_000), next, 21);
    let rv = g.recv_async(vec![0f32; 70_000], prev, 21);
    let ar = g.all_reduce_async(vec![r as f32; 1000], ReduceOp::Sum);
    let rs = g.reduce_scatter_async(vec![1.0f32; 4 * n], ReduceOp::Sum);
    let a2a = g.all_to_all_async((0..n).map(|d| (r * 10 + d) as f32).collect());
    assert!(matches!(g.group_start(), Err(Error::InvalidArgument(_))));
    let all = scope.end();
    assert!(all.wait_timeout(Duration::from_secs(30)).unwrap());
    all.wait().unwrap();
    assert!(s.is_completed() && rv.is_completed() && ar.is_completed());
    s.wait().unwrap();
    assert!(rv.wait().unwrap() == msg(prev, r, 21, 70_000));
    let sum: f32 = (0..n).map(|k| k as f32).sum();
    assert!(ar.wait().unwrap().iter().all(|&x| x == sum));
    assert!(rs.wait().unwrap() == vec![n as f32; 4]);
    let got = a2a.wait().unwrap();
    assert!(got == (0..n).map(|s| (s * 10 + r) as f32).collect::<Vec<_>>());
    // Several collectives in flight, issue order kept.
    let works: Vec<_> = (0..5)
        .map(|i| g.all_reduce_async(vec![(r * i) as f32; 10_000], ReduceOp::Max))
        .collect();
    for (i, w) in works.into_iter().enumerate() {
        assert!(w.wait().unwrap().iter().all(|&x| x == ((n - 1) * i) as f32));
    }
}

fn typed_work_errors(g: &ProcessGroup) {
    let r = g.rank();
    if r == 0 {
        // A receive nobody matches, with a short timeout: wait_timeout says "not yet",
        // then the Work fails with a typed timeout naming the peer and tag.
        let short = g.with_timeout(Duration::from_millis(400));
        let w = short.recv_async(vec![0f32; 10], 1, 777);
        assert!(!w.wait_timeout(Duration::from_millis(50)).unwrap());
        assert!(!w.is_completed());
        assert!(w.wait_timeout(Duration::from_secs(5)).unwrap());
        let err = w.error().expect("the receive must fail");
        match &*err {
            Error::Collective {
                op: "recv", source, ..
            } => {
                assert!(
                    matches!(source, tutti::transport::TransportError::Timeout { .. }),
                    "{source}"
                );
                assert!(source.to_string().contains("tag 777"), "{source}");
            }
            other => panic!("unexpected error {other}"),
        }
        assert!(matches!(w.wait(), Err(Error::Shared(_))));
        // A length mismatch is typed too: a small message (eager) and a large one
        // (rendezvous: its sender fails as well).
        for (tag, want, got) in [(778u32, 40usize, 44usize), (779, 400_000, 400_004)] {
            let w = g.recv_async(vec![0f32; want / 4], 1, tag);
            let e = w.wait().unwrap_err();
            assert!(
                matches!(&e, Error::Collective { source: tutti::transport::TransportError::Mismatch { expected, actual, .. }, .. } if *expected == want && *actual == got),
                "{e}"
            );
        }
    } else if r == 1 {
        // The small send completes once buffered (it cannot know yet)...
        g.send(&[1f32; 11], 0, 778).unwrap();
        // ...the large one waits for the receiver, which refuses it.
        let e = g.send(&vec![1f32; 100_001], 0, 779).unwrap_err();
        assert!(
            matches!(
                &e,
                Error::Collective {
                    op: "send",
                    source: tutti::transport::TransportError::Mismatch { .. },
                    ..
                }
            ),
            "{e}"
        );
    }
    g.barrier().unwrap();
    // The group still works after p2p timeouts and mismatches.
    let mut v = vec![1f32; 100];
    g.all_reduce(&mut v, ReduceOp::Sum).unwrap();
    assert!(v.iter().all(|&x| x == g.size() as f32));
}

// ---------------------------------------------------------------- threads

#[test]
fn threads_exchange_64_mib_in_either_order() {
    for t in [TransportChoice::Auto, TransportChoice::Tcp] {
        threads(2, t, |g| {
            exchange(&g, 16 << 20, false);
            exchange(&g, 16 << 20, true);
        });
    }
}

#[test]
fn threads_ring_shift_batches_and_any_source() {
    for n in [2, 3, 4, 8] {
        threads(n, TransportChoice::Auto, |g| {
            for len in [0, 1, 1000, 300_000] {
                ring_shift(&g, len);
            }
            all_pairs_batch(&g, 20_000);
            any_source(&g);
        });
    }
    threads(3, TransportChoice::Tcp, |g| {
        ring_shift(&g, 200_000);
        all_pairs_batch(&g, 20_000);
        any_source(&g);
    });
}

#[test]
fn threads_pipeline_while_another_group_all_reduces() {
    threads(4, TransportChoice::Auto, |g| {
        pipeline_with_all_reduce(&g, 8, 50_000)
    });
}

#[test]
fn threads_uneven_collectives_scopes_and_typed_errors() {
    for n in [1, 3, 4] {
        threads(n, TransportChoice::Auto, |g| {
            uneven_all_to_all(&g);
            if g.size() > 1 {
                scope_and_async_collectives(&g);
                typed_work_errors(&g);
            }
        });
    }
    // The link path of the uneven collectives (a link algorithm forced).
    let o = GroupOptions {
        algo: Some(Algo::Ring),
        ..opts(TransportChoice::Shm)
    };
    ProcessGroup::run_threads(3, o, |g| uneven_all_to_all(&g)).unwrap();
}

// ---------------------------------------------------------------- processes

fn group() -> ProcessGroup {
    ProcessGroup::from_env(GroupOptions::from_env().unwrap()).unwrap()
}

fn penv(transport: &str) -> Vec<(&'static str, String)> {
    vec![
        ("TUTTI_TRANSPORT", transport.to_string()),
        ("TUTTI_TIMEOUT_SECS", "60".to_string()),
    ]
}

macro_rules! process_test {
    ($name:ident, $n:expr, $env:expr, $body:expr) => {
        #[test]
        fn $name() {
            if ranks::worker_rank().is_some() {
                let g = group();
                let body: fn(&ProcessGroup) = $body;
                body(&g);
                g.barrier().unwrap();
                return;
            }
            let _serial = ranks::serial();
            ranks::run_ranks(stringify!($name), $n, &$env, Duration::from_secs(120));
        }
    };
}

process_test!(processes_shm_exchange_64_mib, 2, penv("auto"), |g| {
    exchange(g, 16 << 20, false);
    exchange(g, 16 << 20, true);
});
process_test!(
    processes_single_copy_exchange_and_ring_shift,
    3,
    {
        // process_vm_readv straight from the sender's buffer (off by default).
        let mut e = penv("auto");
        e.push(("TUTTI_P2P_SINGLE_COPY", "all".into()));
        e
    },
    |g| {
        exchange_if_pair(g);
        ring_shift(g, 3_000_001);
        all_pairs_batch(g, 200_000);
    }
);
process_test!(processes_tcp_exchange_64_mib, 2, penv("tcp"), |g| {
    exchange(g, 16 << 20, true);
});
process_test!(
    processes_shm_ring_shift_batch_any_source_4,
    4,
    penv("auto"),
    |g| {
        ring_shift(g, 300_000);
        all_pairs_batch(g, 50_000);
        any_source(g);
        uneven_all_to_all(g);
    }
);
process_test!(
    processes_tcp_ring_shift_batch_any_source_3,
    3,
    penv("tcp"),
    |g| {
        ring_shift(g, 300_000);
        all_pairs_batch(g, 50_000);
        any_source(g);
        uneven_all_to_all(g);
    }
);
process_test!(
    processes_pipeline_while_another_group_all_reduces,
    4,
    penv("auto"),
    |g| {
        pipeline_with_all_reduce(g, 6, 100_000);
    }
);
process_test!(
    processes_tcp_with_delayed_messages_still_complete,
    3,
    {
        let mut e = penv("tcp");
        // Delay several messages of every p2p and collective link by 50-200 ms.
        e.push((
            "TUTTI_FAULTS",
            "delay:data:1:200,delay:data:2:50,delay:data:5:100,delay:data:9:50".into(),
        ));
        e
    },
    |g| {
        ring_shift(g, 300_000);
        all_pairs_batch(g, 50_000);
        exchange_if_pair(g);
    }
);

/// Strong progress: a large send posted and then left alone while its owner computes
/// (no tutti call for a second) still reaches the receiver, through the background
/// thread, within a few milliseconds of being left (shm: rendezvous, streamed
/// through the ring in pieces that only the sender's engine can write; tcp: bridged).
fn posted_send_progresses_while_its_owner_computes(g: &ProcessGroup) {
    let len = 8 << 20;
    g.barrier().unwrap();
    if g.rank() == 0 {
        let w = g.send_async(msg(0, 1, 7, len), 1, 7);
        std::thread::sleep(Duration::from_millis(1000));
        let sent = w.wait().unwrap();
        assert_eq!(sent, msg(0, 1, 7, len));
    } else {
        let start = Instant::now();
        let mut got = vec![0f32; len];
        g.recv(&mut got, 0, 7).unwrap();
        let took = start.elapsed();
        assert!(got == msg(0, 1, 7, len), "wrong data");
        assert!(
            took < Duration::from_millis(500),
            "the receive took {took:?}: the sender's posted send did not progress while it computed"
        );
    }
}

process_test!(
    processes_posted_send_progresses_while_its_owner_computes,
    2,
    penv("auto"),
    posted_send_progresses_while_its_owner_computes
);
process_test!(
    processes_tcp_posted_send_progresses_while_its_owner_computes,
    2,
    penv("tcp"),
    posted_send_progresses_while_its_owner_computes
);

/// Small messages over TCP between two pairs at once: each round trip must take well
/// under a millisecond. With several bridged links in one process, a bridge thread
/// that read another link's socket while waiting consumed the data whose arrival that
/// link's own reader slept on, which then woke only after its 10 ms nap (about 5 ms
/// per message on average): 100 round trips took a second.
fn small_round_trips_between_two_pairs(g: &ProcessGroup) {
    let peer = g.rank() ^ 1;
    let mut b = [0f32; 2];
    g.barrier().unwrap();
    let start = Instant::now();
    for i in 0..100 {
        let v = [i as f32, g.rank() as f32];
        if g.rank().is_multiple_of(2) {
            g.send(&v, peer, 9).unwrap();
            g.recv(&mut b, peer, 9).unwrap();
            assert_eq!(b, [i as f32, peer as f32]);
        } else {
            g.recv(&mut b, peer, 9).unwrap();
            assert_eq!(b, [i as f32, peer as f32]);
            g.send(&v, peer, 9).unwrap();
        }
    }
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(400),
        "100 round trips of 8 bytes took {took:?} (a lost wake-up costs a 10 ms nap)"
    );
}

process_test!(
    processes_tcp_small_round_trips_between_two_pairs,
    4,
    penv("tcp"),
    small_round_trips_between_two_pairs
);

fn exchange_if_pair(g: &ProcessGroup) {
    // Ranks 0 and 1 exchange 4 MiB in both directions while rank 2 waits.
    if g.rank() < 2 {
        let sub = g.new_group(&[0, 1]).unwrap().unwrap();
        exchange(&sub, 1 << 20, true);
    } else {
        assert!(g.new_group(&[0, 1]).unwrap().is_none());
    }
}

#[test]
fn monitored_barrier_names_the_rank_that_did_not_arrive() {
    if let Some(rank) = ranks::worker_rank() {
        let g = group();
        g.barrier().unwrap();
        if rank == 2 {
            std::thread::sleep(Duration::from_secs(3));
            return;
        }
        let start = Instant::now();
        let err = g
            .monitored_barrier(Duration::from_millis(800), true)
            .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(3));
        match &err {
            Error::MonitoredBarrier { missing, .. } => {
                if rank == 0 {
                    assert_eq!(missing, &vec![2], "{err}");
                }
            }
            other => panic!("unexpected error {other}"),
        }
        if rank == 0 {
            std::thread::sleep(Duration::from_millis(2500));
        }
        return;
    }
    let _serial = ranks::serial();
    ranks::run_ranks(
        "monitored_barrier_names_the_rank_that_did_not_arrive",
        3,
        &penv("auto"),
        Duration::from_secs(60),
    );
}
