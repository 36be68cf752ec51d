//! RDMA links between two threads of this process, through a real device (a NIC,
//! or Soft-RoCE: `rdma link add rxe0 type rxe netdev lo`). Without one every test
//! prints `SKIPPED: <reason>` and passes, unless `TUTTI_REQUIRE_RDMA=1`, which
//! turns the skip into a failure.
#![cfg(feature = "rdma")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use tutti_testkit::{AddU32, Board, random_bytes as random};
use tutti_transport::rdma::{self, RdmaConfig, RdmaEndpoint};
use tutti_transport::{ByteReducer, Deadline, Link, Rendezvous, TransportError, ops};

fn add(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut d = a.to_vec();
    AddU32.reduce_inplace(&mut d, b).unwrap();
    d
}

fn deadline() -> Deadline {
    Deadline::after(Duration::from_secs(60))
}

/// True when a device is there; otherwise prints why and returns false, or
/// panics when `TUTTI_REQUIRE_RDMA=1`.
fn have_device() -> bool {
    match rdma::available() {
        Ok(()) => true,
        Err(e) => {
            if std::env::var("TUTTI_REQUIRE_RDMA").is_ok_and(|v| v.trim() == "1") {
                panic!("TUTTI_REQUIRE_RDMA=1 but RDMA is unavailable: {e}");
            }
            eprintln!("SKIPPED: {e}");
            false
        }
    }
}

/// Small slots so that the sizes below span many of them.
const SLOT: usize = 64 << 10;

fn config() -> RdmaConfig {
    let mut cfg = RdmaConfig::from_env(2);
    cfg.slots = 4;
    cfg.slot_size = SLOT;
    cfg
}

/// Runs `f(rank, link_to_other)` on two threads connected through `board`.
fn pair<F>(board: Arc<Board>, prefix: &'static str, cfg: RdmaConfig, f: F)
where
    F: Fn(usize, Link) + Send + Sync + 'static,
{
    let f = Arc::new(f);
    let hs: Vec<_> = (0..2)
        .map(|r| {
            let (board, f, cfg) = (board.clone(), f.clone(), cfg.clone());
            std::thread::spawn(move || {
                let mut ep = RdmaEndpoint::open(cfg, r, prefix).unwrap();
                let link = ep
                    .connect(&*board, 1 - r, &format!("rank {}", 1 - r), deadline())
                    .unwrap();
                f(r, link);
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
}

/// Sizes: empty, one element, odd, exactly one slot, one slot +- 4, many slots,
/// 8 MiB. Odd sizes are only sent (the reducer works on 4-byte elements).
fn sizes() -> Vec<usize> {
    vec![
        0,
        4,
        1001,
        4 * 1001,
        SLOT - 4,
        SLOT,
        SLOT + 3,
        SLOT + 4,
        7 * SLOT + 12,
        8 << 20,
    ]
}

#[test]
fn rdma_links_move_and_reduce_every_size() {
    if !have_device() {
        return;
    }
    pair(Arc::new(Board::default()), "r1", config(), |rank, mut l| {
        for (i, n) in sizes().into_iter().enumerate() {
            let mine = random(n, (rank * 100 + i) as u64);
            let theirs = random(n, ((1 - rank) * 100 + i) as u64);
            // One way, then the other.
            for sender in [0, 1] {
                if rank == sender {
                    ops::send(&mut *l.tx, &mine, SLOT, deadline()).unwrap();
                } else {
                    let mut got = vec![0u8; n];
                    ops::recv(&mut *l.rx, &mut got, deadline()).unwrap();
                    assert_eq!(got, theirs, "recv of {n} bytes from rank {sender}");
                }
            }
            if n % 4 != 0 {
                continue;
            }
            // Both directions at once, chunk by chunk: send, then reduce the peer's.
            let mut acc = mine.clone();
            for (k, piece) in mine.chunks(SLOT).enumerate() {
                ops::send(&mut *l.tx, piece, SLOT, deadline()).unwrap();
                let off = k * SLOT;
                ops::recv_reduce(
                    &mut *l.rx,
                    &mut acc[off..off + piece.len()],
                    &AddU32,
                    deadline(),
                )
                .unwrap();
            }
            assert_eq!(acc, add(&mine, &theirs), "recv_reduce of {n} bytes");
        }
        l.tx.flush(deadline()).unwrap();
    });
}

#[test]
fn next_without_release_returns_the_same_message() {
    if !have_device() {
        return;
    }
    pair(Arc::new(Board::default()), "r2", config(), |rank, mut l| {
        if rank == 0 {
            for m in [&b"first"[..], b"second"] {
                let buf = l.tx.reserve(m.len(), deadline()).unwrap();
                buf.copy_from_slice(m);
                l.tx.commit().unwrap();
            }
            l.tx.flush(deadline()).unwrap();
            // Wait for the peer before tearing the link down.
            let mut ack = [0u8; 1];
            ops::recv(&mut *l.rx, &mut ack, deadline()).unwrap();
        } else {
            let a = l.rx.next(deadline()).unwrap().len();
            let b = match l.rx.next(deadline()).unwrap() {
                tutti_transport::Message::Bytes(b) => b.to_vec(),
                _ => panic!("RDMA messages are in place"),
            };
            assert_eq!((a, &b[..]), (5, &b"first"[..]));
            l.rx.release().unwrap();
            assert!(matches!(
                l.rx.release(),
                Err(TransportError::InvalidArgument(_))
            ));
            let mut second = [0u8; 6];
            ops::recv(&mut *l.rx, &mut second, deadline()).unwrap();
            assert_eq!(&second, b"second");
            ops::send(&mut *l.tx, &[1], 1, deadline()).unwrap();
        }
    });
}

#[test]
fn a_dead_peer_is_an_error_naming_it_not_a_hang() {
    if !have_device() {
        return;
    }
    let mut cfg = config();
    // 4.096 us x 2^12 = 17 ms per attempt: the loss shows within a second.
    cfg.timeout = 12;
    cfg.retry_cnt = 3;
    pair(Arc::new(Board::default()), "r3", cfg, |rank, mut l| {
        if rank == 1 {
            drop(l);
            return;
        }
        // Give the peer time to go, then wait for a message that never comes:
        // the receive half's probe must find the peer gone.
        std::thread::sleep(Duration::from_millis(200));
        let t = Instant::now();
        let mut buf = [0u8; 4];
        let err = ops::recv(&mut *l.rx, &mut buf, deadline()).unwrap_err();
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "took {:?}",
            t.elapsed()
        );
        assert!(err.is_peer_failure(), "{err}");
        assert!(err.to_string().contains("rank 1"), "{err}");
        // Sending fails too, once the writes go unacknowledged.
        let err = (0..64)
            .find_map(|_| ops::send(&mut *l.tx, &[0u8; 1024], 1024, deadline()).err())
            .or_else(|| l.tx.flush(deadline()).err())
            .expect("sending to a dead peer must fail");
        assert!(err.is_peer_failure(), "{err}");
        assert!(err.to_string().contains("rank 1"), "{err}");
    });
}

#[test]
fn a_bad_handshake_is_a_setup_error() {
    if !have_device() {
        return;
    }
    let board = Board::default();
    board.publish("r4/rdma/1/0", b"127.0.0.1:5000").unwrap();
    let mut ep = RdmaEndpoint::open(config(), 0, "r4").unwrap();
    let Err(err) = ep.connect(&board, 1, "rank 1", Deadline::after(Duration::from_secs(5))) else {
        panic!("connected with a garbage handshake");
    };
    assert!(matches!(err, TransportError::Setup { .. }), "{err}");
    assert!(
        err.to_string().contains("rank 1") && err.to_string().contains("bad RDMA handshake"),
        "{err}"
    );
}

/// Runs everywhere: without a device, `available` and `RdmaEndpoint::open` must
/// say why (and never panic).
#[test]
fn without_a_device_the_reason_is_given() {
    match rdma::available() {
        Ok(()) => eprintln!("an RDMA device is present: {:?}", rdma::ports()),
        Err(e) => {
            assert!(matches!(e, TransportError::Unavailable(_)), "{e}");
            assert!(e.to_string().contains("no RDMA device"), "{e}");
            let open = RdmaEndpoint::open(RdmaConfig::from_env(1), 0, "r5");
            assert!(
                matches!(open, Err(TransportError::Unavailable(_))),
                "{open:?}"
            );
            assert!(
                rdma::ports().is_err() || rdma::ports().is_ok_and(|p| p.iter().all(|p| !p.active))
            );
        }
    }
}
