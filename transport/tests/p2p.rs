//! The point-to-point engine between thread ranks over window rings: exchanges that
//! would deadlock with blocking sends, matching by (peer, tag), any-source receives,
//! length mismatches, timeouts and a peer that leaves. Every byte checked.

use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use tutti_testkit::{random_bytes, run_engines};
use tutti_transport::p2p::Engine;
use tutti_transport::{Deadline, TransportError};

fn dl() -> Deadline {
    Deadline::after(Duration::from_secs(60))
}

fn data(from: usize, to: usize, tag: u32, len: usize) -> Vec<u8> {
    random_bytes(len, (from * 1_000_000 + to * 1000 + tag as usize) as u64)
}

/// Posts a send and a receive (in either order) and waits for both.
fn exchange(e: &Engine, me: usize, peer: usize, len: usize, recv_first: bool) -> Vec<u8> {
    let (tx, rx) = mpsc::channel();
    let out = data(me, peer, 7, len);
    let post_send = |tx: mpsc::Sender<()>| {
        e.send_owned(peer, 7, out.clone(), dl(), move |r| {
            r.unwrap();
            tx.send(()).unwrap();
        })
    };
    let got = Arc::new(Mutex::new(None));
    let g2 = got.clone();
    let (rtx, rrx) = mpsc::channel();
    let post_recv = || {
        e.recv_owned(Some(peer), 7, vec![0u8; len], dl(), move |r| {
            let (buf, src) = r.unwrap();
            assert_eq!(src, peer);
            *g2.lock().unwrap() = Some(buf);
            rtx.send(()).unwrap();
        })
    };
    if recv_first {
        post_recv();
        post_send(tx);
    } else {
        post_send(tx);
        post_recv();
    }
    e.drive(
        &|| got.lock().unwrap().is_some() && e.pending() == 0,
        Some(Instant::now() + Duration::from_secs(60)),
    );
    rx.recv_timeout(Duration::from_secs(5)).unwrap();
    rrx.recv_timeout(Duration::from_secs(5)).unwrap();
    got.lock().unwrap().take().unwrap()
}

#[test]
fn a_64_mib_exchange_posted_in_either_order_completes() {
    for recv_first in [false, true] {
        let len = 64 << 20;
        let start = Instant::now();
        let outs = run_engines(2, 256 << 10, move |r, e| {
            let got = exchange(e, r, 1 - r, len, recv_first && r == 0);
            got == data(1 - r, r, 7, len)
        });
        assert!(outs.into_iter().all(|ok| ok), "data differs");
        assert!(start.elapsed() < Duration::from_secs(30));
    }
}

#[test]
fn blocking_send_then_recv_on_both_sides_with_large_messages() {
    // Both ranks call the blocking send first: the engine must still complete it
    // (the peer's engine takes the RTS while its own send waits for its CTS).
    let len = 3 << 20;
    let outs = run_engines(2, 64 << 10, move |r, e| {
        let peer = 1 - r;
        let (tx, rx) = mpsc::channel();
        e.recv_owned(Some(peer), 1, vec![0u8; len], dl(), move |res| {
            tx.send(res.map(|(b, _)| b)).unwrap();
        });
        e.send(peer, 1, &data(r, peer, 1, len), dl()).unwrap();
        e.drive(&|| e.pending() == 0, None);
        rx.recv().unwrap().unwrap() == data(peer, r, 1, len)
    });
    assert!(outs.into_iter().all(|ok| ok));
}

#[test]
fn ring_shift_over_n_ranks_and_all_pairs() {
    for n in [2, 3, 4, 8] {
        for len in [0usize, 1, 4095, 4096, 4097, 300_001] {
            let outs = run_engines(n, 64 << 10, move |r, e| {
                // Every rank sends to every other and receives from every other, all
                // posted at once, in an order different on every rank.
                let (tx, rx) = mpsc::channel();
                for k in 1..n {
                    let to = (r + k) % n;
                    let from = (r + n - k) % n;
                    let tx2 = tx.clone();
                    e.recv_owned(Some(from), 3, vec![0u8; len], dl(), move |res| {
                        let (b, src) = res.unwrap();
                        tx2.send((src, b)).unwrap();
                    });
                    e.send_owned(to, 3, data(r, to, 3, len), dl(), |res| {
                        res.map(|_| ()).unwrap()
                    });
                }
                e.drive(&|| e.pending() == 0, None);
                drop(tx);
                let mut got: Vec<(usize, Vec<u8>)> = rx.iter().collect();
                got.sort_by_key(|(s, _)| *s);
                got.len() == n - 1 && got.iter().all(|(s, b)| *b == data(*s, r, 3, len))
            });
            assert!(outs.into_iter().all(|ok| ok), "n={n} len={len}");
        }
    }
}

#[test]
fn tags_match_out_of_order_and_equal_tags_in_order() {
    let outs = run_engines(2, 64 << 10, |r, e| {
        if r == 0 {
            // tag 1 (small), tag 2 (large), tag 1 again, tag 2 again.
            for (tag, len) in [(1u32, 100usize), (2, 100_000), (1, 200), (2, 50_000)] {
                e.send_owned(1, tag, vec![tag as u8 + len as u8; len], dl(), |r| {
                    r.unwrap();
                });
            }
            e.drive(&|| e.pending() == 0, None);
            true
        } else {
            // Receive tag 2 first, then tag 1: equal tags keep their order.
            let mut b2a = vec![0u8; 100_000];
            e.recv(Some(0), 2, &mut b2a, dl()).unwrap();
            let mut b1a = vec![0u8; 100];
            e.recv(Some(0), 1, &mut b1a, dl()).unwrap();
            let mut b2b = vec![0u8; 50_000];
            e.recv(Some(0), 2, &mut b2b, dl()).unwrap();
            let mut b1b = vec![0u8; 200];
            e.recv(Some(0), 1, &mut b1b, dl()).unwrap();
            b2a.iter().all(|&x| x == 2 + 100_000usize as u8)
                && b1a.iter().all(|&x| x == 1 + 100)
                && b2b.iter().all(|&x| x == 2 + 50_000usize as u8)
                && b1b.iter().all(|&x| x == 1 + 200)
        }
    });
    assert!(outs.into_iter().all(|ok| ok));
}

#[test]
fn any_source_receive_returns_the_sender() {
    let n = 4;
    let outs = run_engines(n, 64 << 10, move |r, e| {
        if r == 0 {
            let mut seen = Vec::new();
            for _ in 1..n {
                let mut b = vec![0u8; 10_000];
                let src = e.recv(None, 9, &mut b, dl()).unwrap();
                assert!(b == data(src, 0, 9, 10_000), "data from {src}");
                seen.push(src);
            }
            seen.sort();
            seen == (1..n).collect::<Vec<_>>()
        } else {
            e.send(0, 9, &data(r, 0, 9, 10_000), dl()).unwrap();
            true
        }
    });
    assert!(outs.into_iter().all(|ok| ok));
}

#[test]
fn a_length_mismatch_fails_both_sides_with_a_typed_error() {
    let outs = run_engines(2, 64 << 10, |r, e| {
        if r == 0 {
            // Large (rendezvous) then small (eager).
            let big = e.send(1, 5, &vec![1u8; 100_000], dl()).unwrap_err();
            let small = e.send(1, 6, &[1u8; 10], dl());
            (Some(big), small.err())
        } else {
            let mut b = vec![0u8; 99_999];
            let big = e.recv(Some(0), 5, &mut b, dl()).unwrap_err();
            let mut s = vec![0u8; 11];
            let small = e.recv(Some(0), 6, &mut s, dl()).unwrap_err();
            (Some(big), Some(small))
        }
    });
    for (r, (big, small)) in outs.into_iter().enumerate() {
        let big = big.unwrap();
        assert!(
            matches!(
                big,
                TransportError::Mismatch {
                    expected: 99_999,
                    actual: 100_000,
                    ..
                }
            ),
            "rank {r}: {big}"
        );
        if r == 1 {
            let small = small.unwrap();
            assert!(
                matches!(
                    small,
                    TransportError::Mismatch {
                        expected: 11,
                        actual: 10,
                        ..
                    }
                ),
                "{small}"
            );
        }
    }
}

#[test]
fn an_unmatched_receive_times_out_naming_the_peer_and_tag() {
    let outs = run_engines(2, 64 << 10, |r, e| {
        if r == 0 {
            let start = Instant::now();
            let mut b = [0u8; 8];
            let err = e
                .recv(
                    Some(1),
                    42,
                    &mut b,
                    Deadline::after(Duration::from_millis(300)),
                )
                .unwrap_err();
            (start.elapsed(), err.to_string())
        } else {
            // Stay in the group (leaving would fail the receive at once).
            std::thread::sleep(Duration::from_secs(1));
            (Duration::ZERO, String::new())
        }
    });
    let (took, msg) = &outs[0];
    assert!(
        *took >= Duration::from_millis(300) && *took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(
        msg.contains("rank 1") && msg.contains("tag 42") && msg.contains("timed out"),
        "{msg}"
    );
}

#[test]
fn a_peer_that_leaves_fails_pending_operations_promptly() {
    let outs = run_engines(3, 64 << 10, |r, e| {
        if r == 2 {
            return String::new();
        }
        std::thread::sleep(Duration::from_millis(50));
        let start = Instant::now();
        let mut b = vec![0u8; 100];
        let err = e.recv(Some(2), 1, &mut b, dl()).unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        err.to_string()
    });
    for msg in &outs[..2] {
        assert!(msg.contains("rank 2") && msg.contains("gone"), "{msg}");
    }
}
