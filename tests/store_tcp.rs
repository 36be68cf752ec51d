//! TCP store tests: every operation (in-process and from another process), the
//! embedded master, connect retry, the job token, hostile bytes, clients killed
//! mid-frame or mid-wait, 8 real processes through barrier and synchronize, and 4096
//! concurrent clients.

mod store_common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use store_common::{
    WORKER_ENV, capture_warnings, conformance, free_port, logged, spawn_worker, wait_child,
    worker_command,
};
use tutti::store::StoreError as Error;
use tutti::store::{Store, TcpStore, TcpStoreServer, barrier, raise_fd_limit, synchronize};

const TOKEN: &str = "test-token-3f9a";

fn server() -> TcpStoreServer {
    TcpStoreServer::bind("127.0.0.1:0", Some(TOKEN)).unwrap()
}

fn client(port: u16) -> TcpStore {
    TcpStore::builder("127.0.0.1", port)
        .token(TOKEN)
        .timeout(Duration::from_secs(60))
        .connect()
        .unwrap()
}

fn env_usize(name: &str) -> usize {
    std::env::var(name).unwrap().parse().unwrap()
}

/// A hello frame, built by hand (the protocol module is private on purpose).
fn hello(token: &str, version: u16) -> Vec<u8> {
    let mut body = vec![0x01];
    body.extend_from_slice(b"TUTS");
    body.extend_from_slice(&version.to_le_bytes());
    body.extend_from_slice(&(token.len() as u32).to_le_bytes());
    body.extend_from_slice(token.as_bytes());
    let mut frame = (body.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// Reads one frame's body from a raw socket.
fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
    s.read_exact(&mut body)?;
    Ok(body)
}

/// Reads until the server closes the connection; fails if it does not within 10 s.
fn expect_closed(s: &mut TcpStream, what: &str) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut sink = Vec::new();
    match s.read_to_end(&mut sink) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("{what}: the server did not close the connection: {e}"),
    }
}

/// Child-process entry point: does nothing unless started by `spawn_worker`.
#[test]
fn worker() {
    let Ok(scenario) = std::env::var(WORKER_ENV) else {
        return;
    };
    let port: u16 = env_usize("PORT") as u16;
    match scenario.as_str() {
        // Every operation from another process, with the token from TUTTI_JOB_TOKEN.
        "ops" => {
            let open = || -> Box<dyn Store> {
                Box::new(
                    TcpStore::builder("127.0.0.1", port)
                        .timeout(Duration::from_secs(60))
                        .connect()
                        .unwrap(),
                )
            };
            conformance(&open, "child/", 64, 20);
            let store = open();
            store.set("child/hello", b"from child").unwrap();
            store
                .wait(&["parent/reply"], Some(Duration::from_secs(60)))
                .unwrap();
            assert_eq!(store.get("parent/reply").unwrap(), b"from parent");
            store.set("child/done", b"1").unwrap();
        }
        // One rank of an 8-process job; rank 0 hosts the server.
        "rank" => {
            let rank = env_usize("RANK");
            let world = env_usize("WORLD_SIZE");
            let store = TcpStore::builder("127.0.0.1", port)
                .master(rank == 0)
                .world_size(world)
                .token(TOKEN)
                .timeout(Duration::from_secs(60))
                .connect()
                .unwrap();
            barrier(
                &store,
                world,
                "job/barrier",
                Duration::from_secs(60),
                Some(rank),
            )
            .unwrap();
            let mine = format!("rank {rank} pid {}", std::process::id());
            let all = synchronize(
                &store,
                mine.as_bytes(),
                rank,
                world,
                "job/sync/",
                Duration::from_secs(60),
            )
            .unwrap();
            assert_eq!(all.len(), world);
            let mut pids = std::collections::HashSet::new();
            for (i, v) in all.iter().enumerate() {
                let s = String::from_utf8(v.clone()).unwrap();
                assert!(s.starts_with(&format!("rank {i} pid ")), "{s}");
                pids.insert(s);
            }
            assert_eq!(pids.len(), world, "every rank is its own process");
            assert_eq!(all[rank], mine.as_bytes());
        }
        // Authenticates, sends half a frame, then waits to be killed.
        "half_frame" => {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(&hello(TOKEN, 1)).unwrap();
            assert_eq!(read_frame(&mut s).unwrap(), [0x81]);
            let mut frame = 1000u32.to_le_bytes().to_vec();
            frame.push(0x10);
            frame.extend_from_slice(&[7u8; 95]);
            s.write_all(&frame).unwrap();
            println!("READY");
            std::io::stdout().flush().unwrap();
            std::thread::sleep(Duration::from_secs(60));
        }
        // Parks a wait forever, then waits to be killed.
        "parked" => {
            let store = client(port);
            store.set("parked/ready", b"1").unwrap();
            let _ = store.wait(&["parked/never"], Some(Duration::ZERO));
        }
        other => panic!("unknown worker scenario {other}"),
    }
}

#[test]
fn tcp_store_conformance() {
    let srv = server();
    let port = srv.port();
    conformance(&|| Box::new(client(port)), "", 64, 100);
}

#[test]
fn tcp_store_ops_across_processes() {
    let srv = server();
    let child = spawn_worker(
        "ops",
        &[
            ("PORT", srv.port().to_string()),
            ("TUTTI_JOB_TOKEN", TOKEN.to_string()),
        ],
    );
    let store = client(srv.port());
    assert_eq!(store.get("child/hello").unwrap(), b"from child");
    store.set("parent/reply", b"from parent").unwrap();
    store
        .wait(&["child/done"], Some(Duration::from_secs(120)))
        .unwrap();
    // The child's conformance run left its counter behind.
    assert_eq!(
        store.get("child/counter").unwrap(),
        (64 * 20).to_string().into_bytes()
    );
    assert_eq!(store.get("child/cs").unwrap(), b"second");
    wait_child(child, "ops worker", Duration::from_secs(120));
}

#[test]
fn barrier_and_synchronize_with_8_processes() {
    let port = free_port();
    let world = 8;
    // Workers start in reverse order, so most of them retry until rank 0 listens.
    let children: Vec<_> = (0..world)
        .rev()
        .map(|rank| {
            let envs = [
                ("PORT", port.to_string()),
                ("RANK", rank.to_string()),
                ("WORLD_SIZE", world.to_string()),
            ];
            (rank, spawn_worker("rank", &envs))
        })
        .collect();
    for (rank, child) in children {
        wait_child(child, &format!("rank {rank}"), Duration::from_secs(120));
    }
}

#[test]
fn master_embeds_server_and_waits_for_workers() {
    let port = free_port();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|i| {
                s.spawn(move || {
                    // Started before the master: retries with backoff.
                    let c = TcpStore::builder("127.0.0.1", port)
                        .world_size(3)
                        .token(TOKEN)
                        .timeout(Duration::from_secs(30))
                        .connect()
                        .unwrap();
                    assert_eq!(c.get("from-master").unwrap(), b"hi");
                    c.set(&format!("worker{i}"), b"ok").unwrap();
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let master = TcpStore::builder("127.0.0.1", port)
            .master(true)
            .world_size(3)
            .token(TOKEN)
            .timeout(Duration::from_secs(30))
            .connect()
            .unwrap();
        assert!(master.server().is_some());
        assert_eq!(master.get("tutti/store/init").unwrap(), b"3");
        master.set("from-master", b"hi").unwrap();
        master.wait(&["worker0", "worker1"], None).unwrap();
        for w in workers {
            w.join().unwrap();
        }
    });

    // A master whose workers never come.
    let t0 = Instant::now();
    let err = TcpStore::builder("127.0.0.1", 0)
        .master(true)
        .world_size(2)
        .token(TOKEN)
        .timeout(Duration::from_millis(300))
        .connect()
        .unwrap_err();
    assert!(err.to_string().contains("1 of 2 clients joined"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(5));
}

#[test]
fn connect_retries_until_the_server_appears_or_the_timeout() {
    let port = free_port();
    let t0 = Instant::now();
    let err = TcpStore::builder("127.0.0.1", port)
        .token(TOKEN)
        .timeout(Duration::from_millis(300))
        .connect()
        .unwrap_err();
    assert!(t0.elapsed() >= Duration::from_millis(290));
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(err.to_string().contains("gave up after"), "{err}");

    std::thread::scope(|s| {
        let c = s.spawn(|| {
            TcpStore::builder("127.0.0.1", port)
                .token(TOKEN)
                .timeout(Duration::from_secs(30))
                .connect()
                .unwrap()
        });
        std::thread::sleep(Duration::from_millis(300));
        let srv = TcpStoreServer::bind(("127.0.0.1", port), Some(TOKEN)).unwrap();
        let c = c.join().unwrap();
        c.set("k", b"v").unwrap();
        assert_eq!(client(srv.port()).get("k").unwrap(), b"v");
        drop(c);
    });
}

#[test]
fn wrong_token_is_refused_clearly() {
    capture_warnings();
    let srv = server();
    let t0 = Instant::now();
    let err = TcpStore::builder("127.0.0.1", srv.port())
        .token("not-the-token")
        .timeout(Duration::from_secs(30))
        .connect()
        .unwrap_err();
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "a refused token is not retried"
    );
    assert!(matches!(err, Error::Auth { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("refused")
            && msg.contains("wrong job token")
            && msg.contains("TUTTI_JOB_TOKEN"),
        "{msg}"
    );
    assert!(
        logged(&["wrong job token", "peer=127.0.0.1:"]),
        "the refusal is logged with the peer's address"
    );

    // Other protocol versions are refused too, and nobody else is affected.
    let mut raw = TcpStream::connect(("127.0.0.1", srv.port())).unwrap();
    raw.write_all(&hello(TOKEN, 99)).unwrap();
    let reply = read_frame(&mut raw).unwrap();
    assert_eq!(reply[0], 0x88, "an error frame");
    assert!(String::from_utf8_lossy(&reply).contains("protocol version"));
    expect_closed(&mut raw, "version mismatch");

    let good = client(srv.port());
    good.set("still", b"serving").unwrap();
    assert_eq!(good.get("still").unwrap(), b"serving");
}

#[test]
fn garbage_and_truncated_frames_close_only_their_connection() {
    let srv = server();
    let port = srv.port();
    let good = client(port);
    good.set("before", b"1").unwrap();
    std::thread::scope(|s| {
        // A client parked in a wait across all the abuse.
        let waiter = s.spawn(|| {
            let c = client(port);
            c.wait(&["after-garbage"], Some(Duration::from_secs(60)))
                .unwrap();
            c.get("after-garbage").unwrap()
        });

        let authed = |extra: &[u8]| [hello(TOKEN, 1), extra.to_vec()].concat();
        let frame =
            |body: &[u8]| [(body.len() as u32).to_le_bytes().to_vec(), body.to_vec()].concat();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "huge length before the hello",
                [0xff, 0xff, 0xff, 0xff, 1, 2, 3].to_vec(),
            ),
            ("empty frame", frame(&[])),
            ("request before the hello", frame(&[0x1a])),
            (
                "bad magic",
                frame(&[0x01, b'X', b'X', b'X', b'X', 1, 0, 0, 0, 0, 0]),
            ),
            ("unknown opcode", authed(&frame(&[0x7f, 1, 2]))),
            (
                "key length past the frame",
                authed(&frame(&[0x10, 0xff, 0xff, 0, 0, b'k'])),
            ),
            ("trailing bytes", authed(&frame(&[0x1a, 0]))),
            (
                "key not UTF-8",
                authed(&frame(&[0x19, 2, 0, 0, 0, 0xff, 0xfe])),
            ),
            ("frame over the limit", authed(&u32::MAX.to_le_bytes())),
            ("second hello", authed(&hello(TOKEN, 1))),
        ];
        for (what, bytes) in cases {
            let mut raw = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let _ = raw.write_all(&bytes);
            expect_closed(&mut raw, what);
            assert_eq!(good.get("before").unwrap(), b"1", "after {what}");
        }

        // Truncated frames: the client goes away mid-frame.
        for cut in [1, 3, 7] {
            let mut raw = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let bytes = authed(&frame(b"\x10\x01\x00\x00\x00k\x01\x00\x00\x00v"));
            raw.write_all(&bytes[..bytes.len() - cut]).unwrap();
            raw.shutdown(std::net::Shutdown::Write).unwrap();
            expect_closed(&mut raw, "truncated frame");
        }

        // Random byte streams, with and without a valid handshake first.
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        for i in 0..200 {
            let len = rng.random_range(0..600);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if i % 2 == 0 {
                bytes = authed(&bytes);
            }
            let mut raw = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let _ = raw.write_all(&bytes);
            let _ = raw.shutdown(std::net::Shutdown::Write);
            expect_closed(&mut raw, "random bytes");
        }

        good.set("after-garbage", b"still here").unwrap();
        assert_eq!(waiter.join().unwrap(), b"still here");
    });
    assert_eq!(good.get("before").unwrap(), b"1");
}

#[test]
fn clients_killed_mid_frame_or_mid_wait_leave_the_server_serving() {
    let srv = server();
    let port = srv.port();
    let store = client(port);

    // The worker prints READY once half its frame is out (the harness prints other
    // lines too).
    let mut cmd = worker_command("half_frame", &[("PORT", port.to_string())]);
    cmd.stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "the worker never got ready");
        match lines.next() {
            Some(Ok(line)) if line.contains("READY") => break,
            Some(Ok(_)) => {}
            other => panic!("worker output ended: {other:?}"),
        }
    }
    child.kill().unwrap(); // SIGKILL, in the middle of its frame
    child.wait().unwrap();
    store.set("after-kill", b"1").unwrap();
    assert_eq!(store.get("after-kill").unwrap(), b"1");

    let child = spawn_worker("parked", &[("PORT", port.to_string())]);
    store
        .wait(&["parked/ready"], Some(Duration::from_secs(60)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut child = child;
    child.kill().unwrap();
    child.wait().unwrap();
    // Waking the dead client's wait must not disturb anyone.
    store.set("parked/never", b"now").unwrap();
    assert_eq!(store.get("parked/never").unwrap(), b"now");
    assert_eq!(store.add("counter", 2).unwrap(), 2);
}

#[test]
fn serves_4096_concurrent_clients() {
    const CLIENTS: usize = 4096;
    let limit = raise_fd_limit().unwrap();
    assert!(
        limit >= 2 * CLIENTS as u64 + 256,
        "RLIMIT_NOFILE hard limit {limit} is too low for {CLIENTS} clients and their server in one process"
    );
    let srv = server();
    let port = srv.port();
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..CLIENTS {
            std::thread::Builder::new()
                .stack_size(128 << 10)
                .spawn_scoped(s, move || {
                    let c = TcpStore::builder("127.0.0.1", port)
                        .token(TOKEN)
                        .timeout(Duration::from_secs(120))
                        .connect()
                        .unwrap();
                    // Every client is connected and parked at once here.
                    barrier(&c, CLIENTS, "big/", Duration::from_secs(120), None).unwrap();
                    c.add("big/done", 1).unwrap();
                })
                .unwrap();
        }
    });
    let elapsed = t0.elapsed();
    let store = client(port);
    assert_eq!(
        store.get("big/done").unwrap(),
        CLIENTS.to_string().into_bytes()
    );
    eprintln!("{CLIENTS} clients connected and passed a barrier in {elapsed:?}");
}
