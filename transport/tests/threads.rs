//! Links between threads of this process: the in-process FIFO links and TCP over
//! loopback, every primitive, random payloads checked byte for byte. (Cross-process
//! tests with real stores live in the workspace's `tests/`.)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tutti_testkit::{AddU32, Board, random_bytes as random};
use tutti_transport::shm::{InprocHub, ShmConfig};
use tutti_transport::tcp::{TcpConfig, TcpEndpoint};
use tutti_transport::{ByteReducer, Deadline, Link, Message, TransportError, ops};

fn add(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut d = a.to_vec();
    AddU32.reduce_inplace(&mut d, b).unwrap();
    d
}

fn deadline() -> Deadline {
    Deadline::after(Duration::from_secs(30))
}

/// Sizes: empty, one byte, odd, exactly one slot, one slot +- 4, many slots.
fn sizes(slot: usize) -> Vec<usize> {
    vec![
        0,
        4,
        12,
        4 * 1001,
        slot - 4,
        slot,
        slot + 4,
        7 * slot + 12,
        3 << 20,
    ]
}

/// Runs `f(rank, link_to_other)` on two threads connected by `make`.
fn pair<F>(make: impl Fn(usize) -> Link + Send + Sync + 'static, f: F)
where
    F: Fn(usize, &mut Link) + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let f = Arc::new(f);
    let hs: Vec<_> = (0..2)
        .map(|r| {
            let (make, f) = (make.clone(), f.clone());
            std::thread::spawn(move || {
                let mut l = make(r);
                f(r, &mut l);
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
}

fn exercise(rank: usize, l: &mut Link, slot: usize) {
    for (i, n) in sizes(slot).into_iter().enumerate() {
        let mine = random(n, (rank * 100 + i) as u64);
        let theirs = random(n, ((1 - rank) * 100 + i) as u64);
        // send / recv, rank 0 first.
        if rank == 0 {
            ops::send(&mut *l.tx, &mine, slot, deadline()).unwrap();
        } else {
            let mut got = vec![0u8; n];
            ops::recv(&mut *l.rx, &mut got, deadline()).unwrap();
            assert_eq!(got, theirs, "recv of {n} bytes");
        }
        // Both send then both recv-reduce (bounded buffering must not deadlock
        // for messages up to the FIFO depth; larger ones interleave chunk by chunk).
        let mut acc = mine.clone();
        let chunk = slot.min(64 << 10);
        for (k, piece) in mine.chunks(chunk).enumerate() {
            ops::send(&mut *l.tx, piece, chunk, deadline()).unwrap();
            let off = k * chunk;
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
}

#[test]
fn inproc_links_move_and_reduce_every_size() {
    let cfg = ShmConfig::from_env(2);
    let slot = cfg.fifo.slot_size as usize;
    let hub = InprocHub::new(cfg);
    pair(
        move |r| hub.connect(r, 1 - r, &format!("rank {}", 1 - r)).unwrap(),
        move |r, l| exercise(r, l, slot),
    );
}

fn tcp_make(
    board: Arc<Board>,
    prefix: &'static str,
    checksum: bool,
) -> impl Fn(usize) -> Link + Send + Sync {
    move |r| {
        let mut cfg = TcpConfig::from_env(2);
        cfg.checksum = checksum;
        cfg.sockets = 3;
        let mut ep = TcpEndpoint::bind_addr(cfg, r, prefix, [127, 0, 0, 1].into()).unwrap();
        ep.publish(&*board).unwrap();
        ep.connect(&*board, 1 - r, &format!("rank {}", 1 - r), deadline())
            .unwrap()
    }
}

#[test]
fn tcp_links_move_and_reduce_every_size() {
    let board = Arc::new(Board::default());
    let slot = TcpConfig::from_env(2).max_message;
    pair(tcp_make(board, "t1", true), move |r, l| {
        exercise(r, l, slot)
    });
}

/// The fused steps that keep their result in the caller's buffer send it from there
/// over TCP (transfers above the single-copy threshold, several frames each): both
/// ranks at once, every element checked, for the out-of-place and in-place
/// reduce-and-forward and for the plain forward.
#[test]
fn tcp_fused_steps_send_from_the_callers_buffer() {
    let board = Arc::new(Board::default());
    let n = (3 << 20) + 12;
    pair(tcp_make(board, "t-kept", true), move |r, l| {
        let mine = random(n, 40 + r as u64);
        let theirs = random(n, 41 - r as u64);
        let sum = add(&mine, &theirs);
        let chunk = l.tx.max_message();
        // Out of place: out = mine + theirs, forwarded; the peer's result comes back.
        ops::send(&mut *l.tx, &mine, chunk, deadline()).unwrap();
        let mut out = vec![0u8; n];
        ops::recv_reduce_copy_send_into(
            &mut *l.rx,
            &mut *l.tx,
            &mine,
            &mut out,
            &AddU32,
            deadline(),
        )
        .unwrap();
        let mut back = vec![0u8; n];
        ops::recv(&mut *l.rx, &mut back, deadline()).unwrap();
        assert_eq!(out, sum, "recv_reduce_copy_send_into, rank {r}");
        assert_eq!(back, sum, "what the peer forwarded, rank {r}");
        // In place.
        ops::send(&mut *l.tx, &mine, chunk, deadline()).unwrap();
        let mut buf = mine.clone();
        ops::recv_reduce_copy_send(&mut *l.rx, &mut *l.tx, &mut buf, &AddU32, deadline()).unwrap();
        ops::recv(&mut *l.rx, &mut back, deadline()).unwrap();
        assert_eq!(buf, sum, "recv_reduce_copy_send, rank {r}");
        assert_eq!(back, sum, "what the peer forwarded, rank {r}");
        // Forward: rank 0's bytes go to rank 1 and back.
        if r == 0 {
            ops::send(&mut *l.tx, &mine, chunk, deadline()).unwrap();
            ops::recv(&mut *l.rx, &mut back, deadline()).unwrap();
            assert_eq!(back, mine, "recv_copy_send's forward");
        } else {
            ops::recv_copy_send(&mut *l.rx, &mut *l.tx, &mut out, deadline()).unwrap();
            assert_eq!(out, theirs, "recv_copy_send");
        }
    });
}

#[test]
fn fused_ring_steps_over_three_threads() {
    // A ring 0 -> 1 -> 2 -> 0: recv_reduce_send, recv_reduce_copy_send, recv_copy_send.
    let hub = InprocHub::new(ShmConfig::from_env(3));
    let n = 300_004;
    let inputs: Vec<Vec<u8>> = (0..3).map(|r| random(n, 7 + r)).collect();
    let inputs = Arc::new(inputs);
    let hs: Vec<_> = (0..3usize)
        .map(|r| {
            let (hub, inputs) = (hub.clone(), inputs.clone());
            std::thread::spawn(move || {
                let next = (r + 1) % 3;
                let prev = (r + 2) % 3;
                // Connect in rank order to both neighbours.
                let mut links: HashMap<usize, Link> = HashMap::new();
                for p in [next, prev]
                    .into_iter()
                    .collect::<std::collections::BTreeSet<_>>()
                {
                    links.insert(p, hub.connect(r, p, &format!("rank {p}")).unwrap());
                }
                let mut tx = links.remove(&next).unwrap();
                let mut rx = links.remove(&prev).unwrap_or_else(|| unreachable!());
                let mine = &inputs[r];
                match r {
                    0 => {
                        ops::send(&mut *tx.tx, mine, 64 << 10, deadline()).unwrap();
                        // Final sum comes back around: recv it.
                        let mut out = vec![0u8; n];
                        ops::recv(&mut *rx.rx, &mut out, deadline()).unwrap();
                        out
                    }
                    1 => {
                        ops::recv_reduce_send(&mut *rx.rx, &mut *tx.tx, mine, &AddU32, deadline())
                            .unwrap();
                        Vec::new()
                    }
                    _ => {
                        let mut buf = mine.clone();
                        ops::recv_reduce_copy_send(
                            &mut *rx.rx,
                            &mut *tx.tx,
                            &mut buf,
                            &AddU32,
                            deadline(),
                        )
                        .unwrap();
                        buf
                    }
                }
            })
        })
        .collect();
    let outs: Vec<Vec<u8>> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    let want = add(&add(&inputs[0], &inputs[1]), &inputs[2]);
    assert_eq!(outs[0], want);
    assert_eq!(outs[2], want);
}

#[test]
fn tcp_corruption_is_detected_and_names_the_peer() {
    let board = Arc::new(Board::default());
    let make = tcp_make(board, "t2", true);
    pair(make, |r, l| {
        if r == 0 {
            use tutti_transport::faulty::{FaultPlan, FaultySend};
            let inner = std::mem::replace(&mut l.tx, Box::new(NullSend));
            let mut f = FaultySend::new(inner, FaultPlan::parse("corrupt:data:2").unwrap());
            ops::send(&mut f, &random(3 * 4096, 1), 4096, deadline()).unwrap();
            // Keep the link open until the peer has seen the corruption.
            let mut ack = [0u8; 1];
            let _ = ops::recv(
                &mut *l.rx,
                &mut ack,
                Deadline::after(Duration::from_secs(5)),
            );
        } else {
            let mut got = vec![0u8; 3 * 4096];
            let t = std::time::Instant::now();
            let err = ops::recv(&mut *l.rx, &mut got, deadline()).unwrap_err();
            assert!(t.elapsed() < Duration::from_secs(2));
            assert!(matches!(err, TransportError::Corrupt { .. }), "{err}");
            assert!(
                err.to_string().contains("rank 0") && err.to_string().contains("checksum"),
                "{err}"
            );
            ops::send(&mut *l.tx, &[1], 1, deadline()).unwrap();
        }
    });
}

/// A placeholder half used while the real one is moved into a wrapper.
struct NullSend;
impl tutti_transport::SendHalf for NullSend {
    fn peer(&self) -> &str {
        "none"
    }
    fn max_message(&self) -> usize {
        0
    }
    fn reserve(&mut self, _: usize, _: Deadline) -> tutti_transport::Result<&mut [u8]> {
        Err(TransportError::InvalidArgument("null link".into()))
    }
    fn commit(&mut self) -> tutti_transport::Result<()> {
        Ok(())
    }
}

/// Two TCP endpoints' links over loopback, made on two threads at once.
fn tcp_pair(prefix: &'static str, cfg: TcpConfig) -> (Link, Link) {
    let board = Arc::new(Board::default());
    let hs: Vec<_> = (0..2)
        .map(|r| {
            let (board, cfg) = (board.clone(), cfg.clone());
            std::thread::spawn(move || {
                let mut ep = TcpEndpoint::bind_addr(cfg, r, prefix, [127, 0, 0, 1].into()).unwrap();
                ep.publish(&*board).unwrap();
                ep.connect(&*board, 1 - r, &format!("rank {}", 1 - r), deadline())
                    .unwrap()
            })
        })
        .collect();
    let mut links = hs.into_iter().map(|h| h.join().unwrap());
    (links.next().unwrap(), links.next().unwrap())
}

#[test]
fn tcp_abort_unblocks_a_waiting_receiver() {
    let cfg = TcpConfig::from_env(2);
    let abort = cfg.abort.clone();
    let (mut a, _b) = tcp_pair("t-abort", cfg);
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        abort.abort();
    });
    let start = std::time::Instant::now();
    let mut buf = [0u8; 8];
    // The peer never sends: only the abort ends this.
    let err = ops::recv(&mut *a.rx, &mut buf, deadline()).unwrap_err();
    t.join().unwrap();
    assert!(matches!(err, TransportError::Aborted { .. }), "{err}");
    assert!(err.to_string().contains("rank 1"), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn tcp_send_to_a_peer_that_never_reads_times_out_naming_it() {
    let (mut a, _b) = tcp_pair("t-full", TcpConfig::from_env(2));
    let data = random(64 << 20, 3);
    let d = Duration::from_secs(1);
    let start = std::time::Instant::now();
    let err = ops::send(&mut *a.tx, &data, 1 << 20, Deadline::after(d)).unwrap_err();
    let took = start.elapsed();
    assert!(matches!(err, TransportError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("rank 1"), "{err}");
    // Deadlines read the coarse clock (a few ms of resolution).
    assert!(
        took + Duration::from_millis(50) >= d && took < d + Duration::from_secs(1),
        "{took:?}"
    );
}

#[test]
fn tcp_corruption_cannot_be_injected_without_the_checksum() {
    let mut cfg = TcpConfig::from_env(2);
    cfg.checksum = false;
    let (a, _b) = tcp_pair("t-nocrc", cfg);
    use tutti_transport::faulty::{FaultPlan, FaultySend};
    let mut f = FaultySend::new(a.tx, FaultPlan::parse("corrupt:data:1").unwrap());
    let err = ops::send(&mut f, &[1u8; 64], 64, deadline()).unwrap_err();
    assert!(matches!(err, TransportError::InvalidArgument(_)), "{err}");
    assert!(
        err.to_string().contains("cannot inject corruption"),
        "{err}"
    );
}

#[test]
fn tcp_peer_dropping_its_link_is_peer_gone_at_once() {
    let (mut a, b) = tcp_pair("t-drop", TcpConfig::from_env(2));
    drop(b);
    let start = std::time::Instant::now();
    let mut buf = [0u8; 8];
    let err = ops::recv(&mut *a.rx, &mut buf, deadline()).unwrap_err();
    assert!(matches!(err, TransportError::PeerGone { .. }), "{err}");
    assert!(err.to_string().contains("rank 1"), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
}

/// Setup failures come back as typed errors a caller can match on: a geometry that
/// differs between ranks, a setting out of range, a rendezvous key nobody publishes.
#[test]
fn setup_errors_are_typed() {
    use tutti_transport::window::{WindowConfig, WindowHub};
    use tutti_transport::{GeometryError, RendezvousError};

    let hub = WindowHub::new();
    let names: Arc<Vec<String>> = Arc::new(vec!["rank 0".into(), "rank 1".into()]);
    let joins: Vec<_> = (0..2)
        .map(|r| {
            let (hub, names) = (hub.clone(), names.clone());
            std::thread::spawn(move || {
                let mut cfg = WindowConfig::from_env(2);
                cfg.data_bytes = if r == 0 { 64 << 10 } else { 128 << 10 };
                hub.join("typed", r, &names, &cfg, deadline()).map(|_| ())
            })
        })
        .collect();
    for j in joins {
        match j.join().unwrap() {
            Err(TransportError::Geometry { source, .. }) => {
                assert!(matches!(*source, GeometryError::Differs { .. }), "{source}")
            }
            other => panic!("expected a geometry error, got {other:?}"),
        }
    }

    let mut cfg = WindowConfig::from_env(1);
    cfg.data_bytes = 1000;
    let names = vec!["rank 0".to_string()];
    match WindowHub::new().join("bad", 0, &names, &cfg, deadline()) {
        Err(TransportError::Geometry { source, .. }) => match *source {
            GeometryError::OutOfRange { got, .. } => assert_eq!(got, 1000),
            other => panic!("expected out of range, got {other:?}"),
        },
        other => panic!("expected a geometry error, got {:?}", other.map(|_| ())),
    }

    // Rank 0 waits for rank 1's address, which never comes.
    let board = Board::default();
    let mut ep =
        TcpEndpoint::bind_addr(TcpConfig::from_env(2), 0, "typed", [127, 0, 0, 1].into()).unwrap();
    let short = Deadline::after(Duration::from_millis(50));
    match ep.connect(&board, 1, "rank 1", short) {
        Err(TransportError::Rendezvous { source, .. }) => {
            assert!(
                matches!(*source, RendezvousError::Timeout { .. }),
                "{source}"
            )
        }
        other => panic!("expected a rendezvous timeout, got {:?}", other.map(|_| ())),
    }
}

/// A reducer's refusal reaches the caller as `TransportError::Reduce` with the typed
/// reason.
#[test]
fn reduce_errors_are_typed() {
    use tutti_transport::ReduceError;
    let mut d = vec![0u8; 8];
    match AddU32.reduce_inplace(&mut d, &[0u8; 4]) {
        Err(ReduceError::LengthMismatch { dst: 8, src: 4 }) => {}
        other => panic!("expected a length mismatch, got {other:?}"),
    }
    match AddU32.reduce_inplace(&mut d[..6], &[0u8; 6]) {
        Err(ReduceError::PartialElement {
            len: 6,
            element_size: 4,
        }) => {}
        other => panic!("expected a partial element, got {other:?}"),
    }
}

/// A buffer holding `data` so that it starts at `page_off` bytes past a page, and
/// where in the buffer it starts.
fn at_page_offset(data: &[u8], page_off: usize) -> (Vec<u8>, usize) {
    let mut room = vec![0u8; data.len() + 8192];
    let skew = (page_off + 4096 - (room.as_ptr() as usize & 4095)) & 4095;
    room[skew..skew + data.len()].copy_from_slice(data);
    assert_eq!(room[skew..].as_ptr() as usize & 4095, page_off);
    (room, skew)
}

/// Frames whose payload starts at a page offset that gets the 64-byte pad (0..=24 and
/// 4057..=4095) and ones that do not, through the link's buffer (below the
/// single-copy size) and straight from the caller's memory (above it, several
/// frames), with and without the checksum: every byte arrives, in order, and the
/// link goes on with the next message.
#[test]
fn tcp_frames_from_any_page_offset_arrive_whole() {
    for checksum in [false, true] {
        let board = Arc::new(Board::default());
        pair(tcp_make(board, "t-pad", checksum), move |r, l| {
            let max = l.tx.max_message();
            for len in [100, 4096, 65_532, 65_536 + 44, 2 * max + 20] {
                for page_off in [0usize, 8, 16, 24, 25, 40, 64, 2048, 4032, 4056, 4057, 4090] {
                    let data = random(len, (len + page_off) as u64);
                    let (mut room, skew) = at_page_offset(&data, page_off);
                    let placed = &room[skew..skew + len];
                    let what =
                        format!("{len} bytes from page offset {page_off}, checksum {checksum}");
                    if r == 0 {
                        ops::send(&mut *l.tx, placed, max, deadline()).unwrap();
                        let mut back = vec![0u8; len];
                        ops::recv(&mut *l.rx, &mut back, deadline()).unwrap();
                        assert_eq!(back, data, "echoed {what}");
                    } else {
                        let mut got = vec![0u8; len];
                        ops::recv(&mut *l.rx, &mut got, deadline()).unwrap();
                        assert_eq!(got, data, "received {what}");
                        // Echo it from the same page offset.
                        room[skew..skew + len].copy_from_slice(&got);
                        ops::send(&mut *l.tx, &room[skew..skew + len], max, deadline()).unwrap();
                    }
                }
            }
        });
    }
}

/// `send_parts` (what the point-to-point bridges send records with): a head and a
/// body from anywhere in memory arrive as one message, byte for byte, with and without
/// the checksum, at the sizes around the pad's threshold and up to the largest message.
#[test]
fn tcp_parts_arrive_as_one_message() {
    for checksum in [false, true] {
        let board = Arc::new(Board::default());
        pair(tcp_make(board, "t-parts", checksum), move |r, l| {
            let max = l.tx.max_message();
            for len in [0, 100, 4095, 4096, 65_536, max - 56] {
                for page_off in [0usize, 16, 40, 2048, 4090] {
                    let head = random(56, len as u64);
                    let body = random(len, (len + page_off) as u64);
                    let what =
                        format!("{len}-byte body at page offset {page_off}, checksum {checksum}");
                    if r == 0 {
                        let (room, skew) = at_page_offset(&body, page_off);
                        l.tx.send_parts(&head, &room[skew..skew + len], deadline())
                            .unwrap();
                    } else {
                        let Message::Bytes(got) = l.rx.next(deadline()).unwrap() else {
                            panic!("a TCP link delivered a remote message ({what})");
                        };
                        assert_eq!(got.len(), 56 + len, "{what}");
                        assert_eq!(&got[..56], &head[..], "head of {what}");
                        assert_eq!(&got[56..], &body[..], "body of {what}");
                        l.rx.release().unwrap();
                    }
                }
            }
        });
    }
}
