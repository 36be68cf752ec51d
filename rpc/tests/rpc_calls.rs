//! Calls between real worker processes: values, element vectors, errors, the
//! worker pool, timeouts (with the faulty agent's delays), a worker killed
//! mid-call, and graceful shutdown with calls in flight.

mod support;

use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{Worker, init, name, ramp};
use tutti_rpc::store::MemoryStore;
use tutti_rpc::{
    ElementSlice, Elements, Error, FaultyOptions, Functions, MessageType, RpcOptions, builtin,
    init_rpc,
};

const SEC: Duration = Duration::from_secs(1);

worker_test!(calls_values_and_errors, 3, |w| {
    let rpc = init(w, RpcOptions::new());
    // Defaults (torch's): 16 worker threads, 60 s timeout, no faults.
    assert_eq!(rpc.num_worker_threads(), 16);
    assert_eq!(rpc.rpc_timeout(), Duration::from_secs(60));
    assert!(rpc.faulty_options().is_none());
    assert_eq!(rpc.worker_info().name, w.name());
    let names: Vec<&str> = rpc.worker_infos().iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["worker0", "worker1", "worker2"]);
    assert_eq!(rpc.get_worker_info("worker2").unwrap().id, 2);
    assert_eq!(rpc.get_worker_info(1).unwrap().name, "worker1");
    let e = rpc.get_worker_info("worker9").unwrap_err();
    assert!(matches!(e, Error::UnknownWorker { .. }), "{e}");
    assert!(
        e.to_string().contains("\"worker9\"")
            && e.to_string().contains("worker0, worker1, worker2"),
        "{e}"
    );

    // Everyone calls everyone (itself included), by name, rank and WorkerInfo.
    let r = w.rank as i64;
    for to in 0..w.world {
        let info = rpc.get_worker_info(to).unwrap();
        assert_eq!(
            rpc.rpc_sync::<_, i64>(&name(to), "add_i64", &(r, 100), None)
                .unwrap(),
            r + 100
        );
        assert_eq!(
            rpc.rpc_sync::<_, i64>(to, "add_i64", &(r, -5), None)
                .unwrap(),
            r - 5
        );
        assert_eq!(
            rpc.rpc_sync::<_, i64>(&info, "add_i64", &(r, 1), None)
                .unwrap(),
            r + 1
        );
        let (caller, callee): (String, String) = rpc.rpc_sync(to, "whoami", &(), None).unwrap();
        assert_eq!(
            (caller.as_str(), callee.as_str()),
            (w.name().as_str(), name(to).as_str())
        );
    }
    let next = (w.rank + 1) % w.world;

    // Element vectors, built-in and user-defined; every element checked.
    let n = 1 << 20;
    let a = ramp(n, 0.5);
    let b = ramp(n, -3.0);
    let sum: Elements<f32> = rpc
        .rpc_sync(
            next,
            builtin::ADD,
            &(ElementSlice(&a), ElementSlice(&b)),
            None,
        )
        .unwrap();
    assert_eq!(sum.len(), n);
    for i in 0..n {
        assert_eq!(sum[i], a[i] + b[i], "element {i}");
    }
    let x: Vec<i64> = (0..1000).map(|i| i64::MAX - i).collect();
    let y: Vec<i64> = (0..1000).map(|i| i + 2).collect();
    let prod: Elements<i64> = rpc
        .rpc_sync(
            next,
            builtin::MUL,
            &(ElementSlice(&x), ElementSlice(&y)),
            None,
        )
        .unwrap();
    for i in 0..1000 {
        assert_eq!(prod[i], x[i].wrapping_mul(y[i]), "element {i}");
    }
    let echoed: (String, Elements<u8>) = rpc
        .rpc_sync(
            next,
            builtin::ECHO,
            &("hi", Elements(vec![1u8, 2, 3])),
            None,
        )
        .unwrap();
    assert_eq!(echoed, ("hi".to_string(), Elements(vec![1, 2, 3])));
    let user: Elements<f32> = rpc
        .rpc_sync(
            next,
            "add_vec",
            &(ElementSlice(&a[..1000]), ElementSlice(&b[..1000])),
            None,
        )
        .unwrap();
    assert_eq!(user.0, (0..1000).map(|i| a[i] + b[i]).collect::<Vec<_>>());

    // Errors name what was wrong.
    let e = rpc
        .rpc_sync::<_, Elements<f32>>(
            next,
            builtin::ADD,
            &(ElementSlice(&a[..3]), ElementSlice(&x[..3])),
            None,
        )
        .unwrap_err();
    assert!(matches!(e, Error::BadArguments { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("tutti.add: the vectors have different dtypes (float32 and int64)"),
        "{e}"
    );
    let e = rpc
        .rpc_sync::<_, Elements<f32>>(
            next,
            builtin::ADD,
            &(ElementSlice(&a[..3]), ElementSlice(&a[..4])),
            None,
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("length mismatch: 3 and 4 elements"),
        "{e}"
    );
    let e = rpc
        .rpc_sync::<_, Elements<f32>>(
            next,
            "add_vec",
            &(ElementSlice(&x[..3]), ElementSlice(&x[..3])),
            None,
        )
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::BadArguments { .. }), "{e}");
    assert!(
        msg.contains("\"add_vec\"")
            && msg.contains(&name(next))
            && msg.contains("expected float32 elements, got int64"),
        "{msg}"
    );
    let e = rpc.rpc_sync::<_, i64>(next, "nope", &(), None).unwrap_err();
    assert!(
        matches!(&e, Error::UnknownFunction { func, .. } if func == "nope"),
        "{e}"
    );
    assert!(
        e.to_string().contains("add_i64") && e.to_string().contains(&name(next)),
        "{e}"
    );
    let e = rpc
        .rpc_sync::<_, ()>(next, "fail", &"boom", None)
        .unwrap_err();
    assert!(
        matches!(&e, Error::Remote { func, message, .. } if func == "fail" && message == "boom"),
        "{e}"
    );
    let e = rpc
        .rpc_sync::<_, ()>(next, "panic", &"kaput", None)
        .unwrap_err();
    assert!(e.to_string().contains("panicked: kaput"), "{e}");
    let e = rpc
        .rpc_sync::<_, String>(next, "add_i64", &(1i64, 2i64), None)
        .unwrap_err();
    assert!(matches!(e, Error::Decode { .. }), "{e}");
    assert!(
        e.to_string().contains("the result of call \"add_i64\""),
        "{e}"
    );
    let e = rpc
        .rpc_sync::<_, i64>(next, "add_i64", &"not a pair", None)
        .unwrap_err();
    assert!(matches!(e, Error::BadArguments { .. }), "{e}");
    let e = rpc
        .rpc_sync::<_, i64>("worker7", "add_i64", &(1i64, 2i64), None)
        .unwrap_err();
    assert!(matches!(e, Error::UnknownWorker { .. }), "{e}");

    // Futures: then-callbacks, wait with a timeout.
    let f = rpc
        .rpc_async::<_, i64>(next, "add_i64", &(1i64, 2i64), None)
        .unwrap();
    let g = f.then(|r| r.map(|v| v * 10));
    assert_eq!(g.wait().unwrap(), 30);
    let slow = rpc
        .rpc_async::<_, i64>(next, "sleep_ms_then", &(300u64, 7i64), None)
        .unwrap();
    assert!(!slow.wait_for(Duration::from_millis(10)));
    let e = slow.wait_timeout(Duration::from_millis(20)).unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e}");
    assert!(
        e.to_string().contains("wait for call \"sleep_ms_then\"")
            && e.to_string().contains(&name(next)),
        "{e}"
    );
    let slow = rpc
        .rpc_async::<_, i64>(next, "sleep_ms_then", &(100u64, 8i64), None)
        .unwrap();
    assert!(slow.wait_for(5 * SEC));
    assert!(slow.is_done());
    assert_eq!(slow.wait().unwrap(), 8);

    // A call from inside a call.
    let third = (w.rank + 2) % w.world;
    assert_eq!(
        rpc.rpc_sync::<_, i64>(next, "nested_add_one", &(third, 41i64), None)
            .unwrap(),
        42
    );

    rpc.shutdown(true).unwrap();
    rpc.shutdown(true).unwrap();
    let e = rpc
        .rpc_sync::<_, i64>(next, "add_i64", &(1i64, 2i64), None)
        .unwrap_err();
    assert!(matches!(e, Error::ShutDown { .. }), "{e}");
    assert_eq!(support::rpc_threads(), 0, "RPC threads left after shutdown");
});

worker_test!(requests_from_many_callers_run_concurrently, 4, |w| {
    let rpc = init(w, RpcOptions::new().num_worker_threads(3));
    assert_eq!(rpc.num_worker_threads(), 3);
    if w.rank != 0 {
        // Three callers, each waiting inside worker0 until all three are in: only
        // passes if worker0 serves them at once.
        let n: u64 = rpc
            .rpc_sync("worker0", "rendezvous", &(3u64, 10_000u64), None)
            .unwrap();
        assert_eq!(n, 3);
    }
    rpc.shutdown(true).unwrap();
});

worker_test!(timeouts_against_delayed_calls, 3, |w| {
    // torch's test_rpc_builtin_timeout: calls are delayed 1.5 s by the faulty agent.
    let faulty = FaultyOptions::new()
        .messages_to_fail(Vec::<&str>::new())
        .unwrap();
    let rpc = init(w, RpcOptions::new().faulty(faulty));
    let f = rpc.faulty_options().unwrap();
    assert!(f.messages_to_fail.is_empty());
    assert_eq!(f.num_fail_sends, 3);
    assert_eq!(f.messages_to_delay.len(), 1);
    assert_eq!(
        f.messages_to_delay[&MessageType::Call],
        Duration::from_millis(1500)
    );
    let next = (w.rank + 1) % w.world;
    let to = name(next);

    let check_timeout = |e: Error, timeout: Duration, start: Instant| {
        let msg = e.to_string();
        match &e {
            Error::Timeout {
                what,
                to: t,
                timeout: got,
                waited,
            } => {
                assert_eq!(what, "call \"add_i64\"");
                assert_eq!(t, &format!("{to} (rank {next})"));
                assert_eq!(*got, timeout);
                assert!(
                    *waited >= timeout && *waited < timeout + SEC,
                    "waited {waited:?}"
                );
            }
            other => panic!("expected a timeout, got {other}"),
        }
        assert!(
            msg.contains("call \"add_i64\"") && msg.contains(&to) && msg.contains("waited"),
            "{msg}"
        );
        assert!(
            start.elapsed() < Duration::from_millis(1450),
            "the timeout fired late: {:?}",
            start.elapsed()
        );
    };
    // 1 s against a 1.5 s delay: rpc_async and rpc_sync time out.
    let start = Instant::now();
    let fut = rpc
        .rpc_async::<_, i64>(next, "add_i64", &(1i64, 1i64), Some(SEC))
        .unwrap();
    let e = rpc
        .rpc_sync::<_, i64>(next, "add_i64", &(1i64, 1i64), Some(SEC))
        .unwrap_err();
    check_timeout(e, SEC, start);
    check_timeout(fut.wait().unwrap_err(), SEC, start);

    // The default (60 s) and a timeout of 0 succeed; after set_rpc_timeout(1 ms)
    // the default times out.
    let default = rpc
        .rpc_async::<_, i64>(next, "add_i64", &(2i64, 2i64), None)
        .unwrap();
    rpc.set_rpc_timeout(Duration::from_millis(1));
    assert_eq!(rpc.rpc_timeout(), Duration::from_millis(1));
    let start = Instant::now();
    let short = rpc
        .rpc_async::<_, i64>(next, "add_i64", &(3i64, 3i64), None)
        .unwrap();
    let none = rpc
        .rpc_async::<_, i64>(next, "add_i64", &(4i64, 4i64), Some(Duration::ZERO))
        .unwrap();
    let e = short.wait().unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert!(
        start.elapsed() < SEC,
        "a 1 ms timeout took {:?}",
        start.elapsed()
    );
    assert!(e.to_string().contains("within 1ms"), "{e}");
    assert_eq!(default.wait().unwrap(), 4);
    assert_eq!(none.wait().unwrap(), 8);
    rpc.set_rpc_timeout(Duration::from_secs(60));
    rpc.shutdown(true).unwrap();
});

#[test]
fn killed_worker_fails_pending_calls_within_seconds() {
    let Some(w) = support::worker() else {
        // worker1 must die of SIGKILL, the others succeed.
        let _serial = support::serial();
        let test = "killed_worker_fails_pending_calls_within_seconds";
        let outs = support::wait_all(support::spawn(test, 3), Duration::from_secs(60));
        support::check(test, &outs, |r, o| {
            if r == 1 {
                o.status.signal() == Some(9)
            } else {
                o.status.success()
            }
        });
        return;
    };
    let rpc = init(w, RpcOptions::new());
    if w.rank == 1 {
        // Killed by its own kill_self_after (SIGKILL), mid-call.
        std::thread::sleep(Duration::from_secs(30));
        unreachable!("worker1 should have been killed");
    }
    let start = Instant::now();
    let slow = rpc
        .rpc_async::<_, i64>("worker1", "sleep_ms_then", &(20_000u64, 1i64), None)
        .unwrap();
    let kill = rpc
        .rpc_async::<_, ()>("worker1", "kill_self_after", &(300u64), None)
        .unwrap();
    for e in [slow.wait().unwrap_err(), kill.wait().unwrap_err()] {
        let elapsed = start.elapsed();
        assert!(elapsed < Duration::from_secs(5), "error after {elapsed:?}");
        assert!(matches!(e, Error::ConnectionLost { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("worker1 (rank 1)")
                && msg.contains("connection to worker1 (rank 1) was lost"),
            "{msg}"
        );
    }
    // New calls to the dead worker fail at once too.
    let e = rpc
        .rpc_sync::<_, i64>("worker1", "add_i64", &(1i64, 1i64), None)
        .unwrap_err();
    assert!(matches!(e, Error::Unreachable { .. }), "{e}");
    assert!(start.elapsed() < Duration::from_secs(5));
    // The survivors still talk.
    let other = if w.rank == 0 { 2 } else { 0 };
    assert_eq!(
        rpc.rpc_sync::<_, i64>(other, "add_i64", &(1i64, 1i64), None)
            .unwrap(),
        2
    );
    // Both survivors are done with each other before either leaves (and worker0
    // has answered worker2 before it stops).
    let n: u64 = rpc
        .rpc_sync("worker0", "rendezvous", &(2u64, 10_000u64), None)
        .unwrap();
    assert_eq!(n, 2);
    if w.rank == 0 {
        support::wait_until("worker0's reply to worker2", 10 * SEC, || {
            rpc.debug_info().active_calls == 0
        });
    }
    rpc.shutdown(false).unwrap();
}

worker_test!(graceful_shutdown_keeps_in_flight_results, 4, |w| {
    let rpc = init(w, RpcOptions::new());
    let mut futures = Vec::new();
    let mut held = None;
    if w.rank != 0 {
        for i in 0..5i64 {
            let v = 10 * w.rank as i64 + i;
            futures.push((
                v,
                rpc.rpc_async::<_, i64>(
                    "worker0",
                    "sleep_ms_then",
                    &(200 + 50 * i as u64, v),
                    None,
                )
                .unwrap(),
            ));
        }
        let next = 1 + w.rank % 3;
        futures.push((
            -1,
            rpc.rpc_async::<_, i64>(next, "sleep_ms_then", &(100u64, -1i64), None)
                .unwrap(),
        ));
        // An RRef dropped at once, and one still held at shutdown: both released.
        drop(
            rpc.remote::<_, i64>("worker0", "sleep_ms_then", &(100u64, 5i64), None)
                .unwrap(),
        );
        held = Some(
            rpc.remote::<_, i64>(next, "add_i64", &(1i64, 2i64), None)
                .unwrap(),
        );
    }
    // Shut down at once, with everything in flight.
    rpc.shutdown(true).unwrap();
    if let Some(h) = held {
        let e = h.to_here(None).unwrap_err();
        assert!(matches!(e, Error::ShutDown { .. }), "{e}");
    }
    for (v, f) in futures {
        assert!(f.is_done(), "a call was still pending after shutdown");
        assert_eq!(f.wait().unwrap(), v);
    }
    let info = rpc.debug_info();
    assert_eq!(
        (
            info.owner_rrefs,
            info.forks,
            info.user_rrefs,
            info.pending_calls
        ),
        (0, 0, 0, 0),
        "{info:?}"
    );
    assert_eq!(support::rpc_threads(), 0);
});

#[test]
fn init_checks_its_arguments() {
    if support::worker().is_some() {
        return;
    }
    let store: Arc<dyn tutti_rpc::store::Store> = Arc::new(MemoryStore::new());
    let opts = || {
        RpcOptions::new()
            .store(store.clone())
            .init_timeout(Duration::from_millis(500))
    };
    let e = init_rpc("w", 0, 0, opts()).unwrap_err();
    assert!(
        e.to_string().contains("world_size must be at least 1"),
        "{e}"
    );
    let e = init_rpc("w", 2, 2, opts()).unwrap_err();
    assert!(
        e.to_string()
            .contains("rank 2 is out of range for world_size 2"),
        "{e}"
    );
    let e = init_rpc("bad name!", 0, 1, opts()).unwrap_err();
    assert!(
        matches!(e, Error::InvalidArgument(_)) && e.to_string().contains("\"bad name!\""),
        "{e}"
    );
    let e = init_rpc("w", 0, 1, opts().num_worker_threads(0)).unwrap_err();
    assert!(
        e.to_string()
            .contains("num_worker_threads must be at least 1"),
        "{e}"
    );
    let e = init_rpc("w", 0, 1, RpcOptions::new().init_method("http://x")).unwrap_err();
    assert!(
        e.to_string()
            .contains("expected env://, tcp://host:port or file:///path"),
        "{e}"
    );
    let mut f = Functions::new();
    let e = f
        .register("tutti.mine", |x: i64| Ok::<_, String>(x))
        .map(|_| ())
        .unwrap_err();
    assert!(e.to_string().contains("reserved"), "{e}");
    f.register("twice", |x: i64| Ok::<_, String>(x)).unwrap();
    let e = f
        .register("twice", |x: i64| Ok::<_, String>(x))
        .map(|_| ())
        .unwrap_err();
    assert!(e.to_string().contains("already registered"), "{e}");

    // Two threads asking for one name: one is told who has it; the other times out
    // waiting for a second worker.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| init_rpc("same", 0, 2, opts()));
        let b = s.spawn(|| init_rpc("same", 1, 2, opts()));
        (a.join().unwrap(), b.join().unwrap())
    });
    let (dup, other) = match (a, b) {
        (Err(e @ Error::DuplicateName { .. }), other)
        | (other, Err(e @ Error::DuplicateName { .. })) => (e, other),
        (a, b) => panic!("expected a DuplicateName error, got {a:?} / {b:?}"),
    };
    assert!(
        dup.to_string()
            .contains("worker name \"same\" is already taken by rank"),
        "{dup}"
    );
    let other = other.unwrap_err();
    assert!(
        matches!(other, Error::Store { .. }) && other.to_string().contains("store timeout"),
        "{other}"
    );
}

#[test]
fn threads_of_one_process_share_a_memory_store() {
    if support::worker().is_some() {
        return;
    }
    let store: Arc<dyn tutti_rpc::store::Store> = Arc::new(MemoryStore::new());
    let results: Vec<i64> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|r| {
                let store = store.clone();
                s.spawn(move || {
                    let w = Worker { rank: r, world: 3 };
                    let rpc = init(w, RpcOptions::new().store(store));
                    let v: i64 = rpc
                        .rpc_sync((r + 1) % 3, "add_i64", &(r as i64, 1000i64), None)
                        .unwrap();
                    rpc.shutdown(true).unwrap();
                    v
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results, [1000, 1001, 1002]);
}

#[test]
fn malformed_input_closes_only_its_connection() {
    if support::worker().is_some() {
        return;
    }
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let store: Arc<dyn tutti_rpc::store::Store> = Arc::new(MemoryStore::new());
    let rpcs: Vec<tutti_rpc::Rpc> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|r| {
                let store = store.clone();
                s.spawn(move || {
                    let opts = RpcOptions::new().store(store).max_message_size(1 << 20);
                    init(Worker { rank: r, world: 2 }, opts)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let addr = rpcs[1].address().to_string();
    let closed = |bytes: &[u8]| {
        let mut c = TcpStream::connect(&addr).unwrap();
        c.set_read_timeout(Some(5 * SEC)).unwrap();
        c.write_all(bytes).unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut buf = [0u8; 64];
        // The worker hangs up (EOF or reset) at once, without answering.
        let start = Instant::now();
        match c.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("expected the worker to hang up, got {other:?}"),
        }
        assert!(start.elapsed() < 2 * SEC);
    };
    let mut huge = vec![0xff, 0xff, 0xff, 0xff];
    huge.extend_from_slice(&[0u8; 8]);
    closed(&huge); // a header length over the limit
    let mut junk = vec![4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    junk.extend_from_slice(&[0xfe; 4]);
    closed(&junk); // an undecodable header
    closed(&[1, 2, 3]); // a truncated frame, then EOF
    // Messages over the limit are refused by the sender, whole.
    let big = vec![7u8; 2 << 20];
    let e = rpcs[0]
        .rpc_sync::<_, Elements<u8>>(1, builtin::ECHO, &ElementSlice(&big), None)
        .unwrap_err();
    assert!(
        matches!(e, Error::MessageTooLarge { max: 1048576, .. }),
        "{e}"
    );
    assert!(
        e.to_string().contains("exceeds the limit of 1048576 bytes"),
        "{e}"
    );
    let e = rpcs[0]
        .rpc_sync::<_, Elements<u8>>(1, "zeros", &(2usize << 20), None)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("the reply to call \"zeros\" from worker1 (rank 1): message of 2097157 bytes exceeds the limit of 1048576 bytes"),
        "{e}"
    );
    let ok: Elements<u8> = rpcs[0].rpc_sync(1, "zeros", &1000usize, None).unwrap();
    assert_eq!(ok.0, vec![0u8; 1000]);
    // The workers still serve each other.
    assert_eq!(
        rpcs[0]
            .rpc_sync::<_, i64>(1, "add_i64", &(2i64, 3i64), None)
            .unwrap(),
        5
    );
    assert_eq!(
        rpcs[1]
            .rpc_sync::<_, i64>(0, "add_i64", &(4i64, 3i64), None)
            .unwrap(),
        7
    );
    std::thread::scope(|s| {
        for rpc in &rpcs {
            s.spawn(move || rpc.shutdown(true).unwrap());
        }
    });
}

#[test]
fn init_methods_file_and_tcp() {
    if support::worker().is_some() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("tutti-rpc-file-init-{}", std::process::id()));
    let _ = std::fs::remove_file(&dir);
    let port = support::free_port();
    for method in [
        format!("file://{}", dir.display()),
        format!("tcp://127.0.0.1:{port}"),
    ] {
        let sums: Vec<i64> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..2)
                .map(|r| {
                    let method = method.clone();
                    s.spawn(move || {
                        let opts = RpcOptions::new()
                            .init_method(method)
                            .init_timeout(Duration::from_secs(20));
                        let rpc = init(Worker { rank: r, world: 2 }, opts);
                        let v: i64 = rpc
                            .rpc_sync(1 - r, "add_i64", &(r as i64, 10i64), None)
                            .unwrap();
                        rpc.shutdown(true).unwrap();
                        v
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(sums, [10, 11], "{method}");
    }
    let _ = std::fs::remove_file(&dir);
}
