//! Remote references between real worker processes, under the faulty agent
//! (torch's faulty-agent tests): forks to third workers with the reference-counting
//! messages dropped and retried, dropped and timed-out `remote` calls, slow
//! `to_here`, and counts back to zero afterwards.

mod support;

use std::time::Duration;

use support::{Counts, init, name, ramp, wait_until};
use tutti_rpc::{
    ElementSlice, Elements, Error, FaultyOptions, MessageType, RRef, Rpc, RpcOptions, builtin,
};

const NONE: Option<Duration> = None;
const MS: Duration = Duration::from_millis(1);

/// Every worker of the job (this one by polling) holds no RRef any more.
fn assert_all_released(rpc: &Rpc) {
    for r in 0..rpc.world_size() {
        if r == rpc.worker_info().id {
            continue;
        }
        let c: Counts = rpc
            .rpc_sync(r, "wait_refs_released", &5000u64, None)
            .unwrap();
        assert_eq!(
            c,
            (0, 0, 0, 0),
            "{} still holds (owner RRefs, forks, user RRefs, pending children)",
            name(r)
        );
    }
    wait_until(
        "this worker's RRefs to be released",
        Duration::from_secs(5),
        || support::counts(rpc) == (0, 0, 0, 0),
    );
}

worker_test!(
    rref_passed_to_third_workers_with_ref_messages_dropped,
    4,
    |w| {
        // torch's test_check_failed_messages: the four retried message types fail 3
        // times each (the faulty defaults), no delays.
        let faulty = FaultyOptions::new()
            .messages_to_delay(Vec::<(&str, f64)>::new())
            .unwrap();
        let rpc = init(w, RpcOptions::new().faulty(faulty));
        let f = rpc.faulty_options().unwrap();
        assert_eq!(f.num_fail_sends, 3);
        assert_eq!(
            f.messages_to_fail,
            [
                MessageType::RRefForkRequest,
                MessageType::RRefChildAccept,
                MessageType::RRefUserDelete,
                MessageType::Cleanup
            ]
        );
        assert!(f.messages_to_delay.is_empty());
        assert_eq!(rpc.rpc_timeout(), Duration::from_secs(60));
        if w.rank == 0 {
            // worker0 creates an RRef on worker1 and passes it to worker2, which adds
            // it to a value; worker0's to_here returns the sum.
            let n = 1000;
            let ones = vec![1.0f32; n];
            let rref: RRef<Elements<f32>> = rpc
                .remote(
                    "worker1",
                    builtin::ADD,
                    &(ElementSlice(&ones), ElementSlice(&ones)),
                    NONE,
                )
                .unwrap();
            assert_eq!(rref.owner_name(), "worker1");
            assert!(!rref.is_owner());
            let v = ramp(n, 0.0);
            let sum: RRef<Elements<f32>> = rpc
                .remote(
                    "worker2",
                    "add_rref_to_value",
                    &(&rref, ElementSlice(&v)),
                    NONE,
                )
                .unwrap();
            let got = sum.to_here(NONE).unwrap();
            assert_eq!(got.len(), n);
            for i in 0..n {
                assert_eq!(got[i], 2.0 + v[i], "element {i}");
            }
            assert_eq!(rref.to_here(NONE).unwrap().0, vec![2.0f32; n]);
            let direct: Elements<f32> = rpc
                .rpc_sync(
                    "worker3",
                    "add_rref_to_value",
                    &(&rref, ElementSlice(&v)),
                    NONE,
                )
                .unwrap();
            assert_eq!(direct.0, got.0);
            // While referenced, the owner counts the RRef and its forks.
            let (owned, forks, _, _): Counts =
                rpc.rpc_sync("worker1", "counts", &(), NONE).unwrap();
            assert!(
                owned >= 1 && forks >= 1,
                "worker1 owns {owned} RRefs with {forks} forks"
            );

            let x: RRef<i64> = rpc
                .remote("worker1", "add_i64", &(20i64, 22i64), NONE)
                .unwrap();
            // A fork of a fork: worker2 passes it on to worker3.
            assert_eq!(
                rpc.rpc_sync::<_, i64>("worker2", "forward_rref", &(&x, 3usize, 100i64), NONE)
                    .unwrap(),
                142
            );
            // The owner receives its own RRef, and passes it on itself.
            assert_eq!(
                rpc.rpc_sync::<_, i64>("worker1", "add_rref_i64", &(&x, 1i64), NONE)
                    .unwrap(),
                43
            );
            assert_eq!(
                rpc.rpc_sync::<_, i64>("worker1", "forward_rref", &(&x, 2usize, 2i64), NONE)
                    .unwrap(),
                44
            );
            // Calls on the owner through the RRef.
            assert_eq!(x.rpc_sync::<_, i64>("local_plus", &5i64, NONE).unwrap(), 47);
            let y: RRef<i64> = x.remote("local_plus", &6i64, NONE).unwrap();
            assert_eq!((y.owner_name(), y.to_here(NONE).unwrap()), ("worker1", 48));
            // An RRef as a result: worker3 makes one on worker2 and returns it.
            let z: RRef<i64> = rpc
                .rpc_sync("worker3", "remote_on", &(2usize, 7i64), NONE)
                .unwrap();
            assert_eq!((z.owner_name(), z.to_here(NONE).unwrap()), ("worker2", 7));
            // local_value is for the owner.
            let e = x.local_value().unwrap_err();
            assert!(matches!(e, Error::NotOwner { .. }), "{e}");
            assert!(
                e.to_string()
                    .contains("the value lives on its owner worker1 (rank 1)"),
                "{e}"
            );
            // Calling oneself, and owning the result.
            let mine: RRef<i64> = rpc
                .remote("worker0", "add_i64", &(1i64, 2i64), NONE)
                .unwrap();
            assert!(mine.is_owner());
            assert_eq!(mine.local_value().unwrap(), 3);
            assert_eq!(mine.to_here(NONE).unwrap(), 3);
            assert_eq!(
                rpc.rpc_sync::<_, i64>("worker3", "add_rref_i64", &(&mine, 10i64), NONE)
                    .unwrap(),
                13
            );
            assert_eq!(
                rpc.rpc_sync::<_, i64>("worker0", "add_rref_i64", &(&mine, 20i64), NONE)
                    .unwrap(),
                23
            );
            assert_eq!(
                rpc.rpc_sync::<_, i64>("worker0", "add_rref_i64", &(&x, 1i64), NONE)
                    .unwrap(),
                43
            );
            let clone = x.clone();
            drop((rref, sum, x, y, z, mine));
            assert_eq!(
                clone.to_here(NONE).unwrap(),
                42,
                "a clone keeps the reference"
            );
            drop(clone);
            // Owner and fork counts drop to zero everywhere.
            assert_all_released(&rpc);
            // Worker0 sent each reference-counting type (fork request and child accept
            // for `x`, deletes for everything): the first three of each were dropped.
            let injected = rpc.debug_info().injected_faults;
            for t in [
                MessageType::RRefForkRequest,
                MessageType::RRefChildAccept,
                MessageType::RRefUserDelete,
            ] {
                assert_eq!(injected.get(&t), Some(&3), "{t}: {injected:?}");
            }
        } else {
            // Every worker makes RRefs on the next and passes them to the one after,
            // concurrently with worker0.
            let (next, after) = (1 + w.rank % 3, 1 + (w.rank + 1) % 3);
            for i in 0..5i64 {
                let r: RRef<i64> = rpc.remote(next, "add_i64", &(i, 1000i64), NONE).unwrap();
                assert_eq!(
                    rpc.rpc_sync::<_, i64>(after, "add_rref_i64", &(&r, 1i64), NONE)
                        .unwrap(),
                    i + 1001
                );
            }
        }
        rpc.shutdown(true).unwrap();
    }
);

worker_test!(dropped_remote_call_fails_every_use_of_the_rref, 3, |w| {
    // torch's test_remote_message_dropped_pickle(_to_self): remote calls fail.
    let faulty = FaultyOptions::new()
        .messages_to_fail(["PYTHON_REMOTE_CALL"])
        .unwrap()
        .messages_to_delay(Vec::<(&str, f64)>::new())
        .unwrap();
    let rpc = init(w, RpcOptions::new().faulty(faulty));
    assert_eq!(
        rpc.faulty_options().unwrap().messages_to_fail,
        [MessageType::RemoteCall]
    );
    if w.rank == 0 {
        for (attempt, dst) in [(1, 1usize), (2, 0)] {
            let rref: RRef<i64> = rpc
                .remote(dst, "sleep_ms_then", &(1u64, 5i64), NONE)
                .unwrap();
            let e = rref.wait_created(None).unwrap_err();
            match &e {
                Error::InjectedFault {
                    message_type,
                    attempt: a,
                    num_fail_sends,
                    to,
                    ..
                } => {
                    assert_eq!(
                        (*message_type, *a, *num_fail_sends),
                        (MessageType::RemoteCall, attempt, 3)
                    );
                    assert_eq!(to, &format!("{} (rank {dst})", name(dst)));
                }
                other => panic!("expected an injected fault, got {other}"),
            }
            assert!(
                e.to_string().contains("remote_call")
                    && e.to_string().contains("injected by the faulty agent"),
                "{e}"
            );
            let creation_error = |e: Error| {
                let msg = e.to_string();
                assert!(
                    matches!(&e, Error::RRefCreationFailed { cause, .. } if matches!(**cause, Error::InjectedFault { .. })),
                    "{e}"
                );
                assert!(
                    msg.starts_with("RRef creation failed")
                        && msg.contains(&name(dst))
                        && msg.contains("injected"),
                    "{msg}"
                );
            };
            creation_error(rref.to_here(NONE).unwrap_err());
            // Passing it on fails with the creation error too (before anything is sent).
            creation_error(
                rpc.rpc_async::<_, i64>(2, "add_rref_i64", &(&rref, 1i64), NONE)
                    .unwrap_err(),
            );
            creation_error(
                rpc.remote::<_, i64>(dst, "add_rref_i64", &(&rref, 1i64), NONE)
                    .unwrap_err(),
            );
            creation_error(
                rref.rpc_sync::<_, i64>("local_plus", &1i64, NONE)
                    .unwrap_err(),
            );
        }
        // The third send fails too; the fourth goes through.
        let third: RRef<i64> = rpc.remote(2, "add_i64", &(1i64, 1i64), NONE).unwrap();
        assert!(matches!(
            third.wait_created(None),
            Err(Error::InjectedFault { attempt: 3, .. })
        ));
        let fourth: RRef<i64> = rpc.remote(2, "add_i64", &(2i64, 3i64), NONE).unwrap();
        fourth.wait_created(None).unwrap();
        assert_eq!(fourth.to_here(NONE).unwrap(), 5);
        drop((third, fourth));
        assert_all_released(&rpc);
    }
    rpc.shutdown(true).unwrap();
});

worker_test!(remote_timeouts_and_slow_to_here, 3, |w| {
    // torch's test_remote_message_*_delay_timeout(_to_self) and
    // test_rref_to_here_timeout: remote calls and fetches are delayed.
    let faulty = FaultyOptions::new()
        .messages_to_fail(Vec::<&str>::new())
        .unwrap()
        .messages_to_delay([("PYTHON_REMOTE_CALL", 0.5), ("SCRIPT_RREF_FETCH_CALL", 0.3)])
        .unwrap();
    let rpc = init(w, RpcOptions::new().faulty(faulty));
    if w.rank == 0 {
        for dst in [1usize, 0] {
            // A remote call with a 1 ms timeout fails with a timeout ...
            let rref: RRef<i64> = rpc.remote(dst, "add_i64", &(1i64, 1i64), Some(MS)).unwrap();
            let e = rref.wait_created(None).unwrap_err();
            match &e {
                Error::Timeout {
                    what,
                    to,
                    timeout,
                    waited,
                } => {
                    assert!(what.starts_with("remote call \"add_i64\""), "{what}");
                    assert_eq!(to, &format!("{} (rank {dst})", name(dst)));
                    assert_eq!(*timeout, MS);
                    assert!(
                        *waited >= MS && *waited < Duration::from_millis(500),
                        "{waited:?}"
                    );
                }
                other => panic!("expected a timeout, got {other}"),
            }
            // ... then to_here fails with the creation error, which says why.
            let e = rref.to_here(NONE).unwrap_err();
            assert!(
                e.is_timeout() && matches!(e, Error::RRefCreationFailed { .. }),
                "{e}"
            );
            let msg = e.to_string();
            assert!(
                msg.starts_with("RRef creation failed")
                    && msg.contains("timed out")
                    && msg.contains("within 1ms"),
                "{msg}"
            );
        }
        // to_here(1 ms) on a slow remote times out; a later to_here() returns the value.
        let slow: RRef<i64> = rpc.remote(1, "add_i64", &(20i64, 22i64), NONE).unwrap();
        let e = slow.to_here(Some(MS)).unwrap_err();
        assert!(
            matches!(&e, Error::Timeout { what, .. } if what.contains("to_here of RRef")),
            "{e}"
        );
        assert!(e.to_string().contains("worker1 (rank 1)"), "{e}");
        assert_eq!(slow.to_here(NONE).unwrap(), 42);
        // Created: now the (delayed) fetch itself times out, and then succeeds.
        let e = slow.to_here(Some(Duration::from_millis(100))).unwrap_err();
        assert!(
            matches!(&e, Error::Timeout { what, .. } if what.starts_with("rref fetch of RRef")),
            "{e}"
        );
        assert_eq!(slow.to_here(NONE).unwrap(), 42);
        drop(slow);
        // The timed-out creations reach their owners late: nothing leaks.
        std::thread::sleep(Duration::from_millis(600));
        assert_all_released(&rpc);
    }
    rpc.shutdown(true).unwrap();
});
