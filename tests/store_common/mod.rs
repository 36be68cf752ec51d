//! Shared by the store tests: a conformance suite every `Store` must pass, and helpers
//! to run scenarios in child processes (the test binary re-executes itself).

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tutti::store::StoreError as Error;
use tutti::store::{MAX_KEY_LEN, Store};

/// Opens another handle (connection, clone, file handle) on the store under test.
pub type Open<'a> = &'a (dyn Fn() -> Box<dyn Store> + Sync);

/// How a store reports `add` on a value that is not a number.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AddErrors {
    /// A typed `StoreError::Request` naming the problem.
    Typed,
    /// The server closes the connection (c10d's TCPStore protocol has no error
    /// reply): an I/O error on that handle.
    ClosesConnection,
}

/// Runs every operation of the `Store` trait against `open()`'s store, with keys under
/// `ns`; `threads` x `adds` concurrent increments must all land.
pub fn conformance(open: Open<'_>, ns: &str, threads: usize, adds: usize) {
    conformance_with(open, ns, threads, adds, AddErrors::Typed)
}

/// [`conformance`], for a store that reports bad `add`s as `add_errors` says.
pub fn conformance_with(
    open: Open<'_>,
    ns: &str,
    threads: usize,
    adds: usize,
    add_errors: AddErrors,
) {
    let store = open();
    let k = |s: &str| format!("{ns}{s}");

    // set / get, overwrite, binary and empty values.
    store.set(&k("a"), b"1").unwrap();
    assert_eq!(store.get(&k("a")).unwrap(), b"1");
    store.set(&k("a"), &[0, 255, 10, 13]).unwrap();
    assert_eq!(store.get(&k("a")).unwrap(), [0, 255, 10, 13]);
    store.set(&k("empty"), b"").unwrap();
    assert_eq!(store.get(&k("empty")).unwrap(), b"");
    assert!(
        store.check(&[&k("empty")]).unwrap(),
        "an empty value still exists"
    );

    // add: decimal text, missing key counts from 0, non-numbers refused.
    assert_eq!(store.add(&k("n"), 5).unwrap(), 5);
    assert_eq!(store.add(&k("n"), -2).unwrap(), 3);
    assert_eq!(store.add(&k("n"), 0).unwrap(), 3);
    assert_eq!(store.get(&k("n")).unwrap(), b"3");
    store.set(&k("text"), b"abc").unwrap();
    let err = open().add(&k("text"), 1).unwrap_err();
    match add_errors {
        AddErrors::Typed => {
            assert!(matches!(err, Error::Request { op: "add", .. }), "{err}");
            assert!(err.to_string().contains("not a decimal integer"), "{err}");
        }
        AddErrors::ClosesConnection => {
            assert!(matches!(err, Error::Io { .. }), "{err}");
        }
    }
    store.set(&k("n2"), b"40").unwrap();
    assert_eq!(store.add(&k("n2"), 2).unwrap(), 42);

    // compare_set: c10d's four cases.
    assert_eq!(store.compare_set(&k("cs"), b"x", b"y").unwrap(), b"x");
    assert!(
        !store.check(&[&k("cs")]).unwrap(),
        "missing key + non-empty expected sets nothing"
    );
    assert_eq!(
        store.compare_set(&k("cs"), b"", b"first").unwrap(),
        b"first"
    );
    assert_eq!(
        store.compare_set(&k("cs"), b"wrong", b"second").unwrap(),
        b"first"
    );
    assert_eq!(
        store.compare_set(&k("cs"), b"first", b"second").unwrap(),
        b"second"
    );
    assert_eq!(store.get(&k("cs")).unwrap(), b"second");

    // check.
    assert!(!store.check(&[&k("a"), &k("nope")]).unwrap());
    assert!(store.check(&[&k("a"), &k("n")]).unwrap());
    assert!(store.check(&[]).unwrap());

    // multi_set / multi_get keep order.
    let keys = [k("m0"), k("m1"), k("m2")];
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    store.multi_set(&key_refs, &[b"zero", b"one", b""]).unwrap();
    assert_eq!(
        store.multi_get(&key_refs).unwrap(),
        vec![b"zero".to_vec(), b"one".to_vec(), Vec::new()]
    );
    assert!(
        store.multi_set(&key_refs, &[b"x"]).is_err(),
        "length mismatch"
    );
    assert_eq!(store.multi_get(&[]).unwrap(), Vec::<Vec<u8>>::new());

    // append creates, then concatenates.
    store.append(&k("log"), b"ab").unwrap();
    store.append(&k("log"), b"cd").unwrap();
    assert_eq!(store.get(&k("log")).unwrap(), b"abcd");

    // delete_key and num_keys.
    let before = store.num_keys().unwrap();
    store.set(&k("tmp"), b"t").unwrap();
    assert_eq!(store.num_keys().unwrap(), before + 1);
    assert!(store.delete_key(&k("tmp")).unwrap());
    assert!(!store.delete_key(&k("tmp")).unwrap());
    assert!(!store.check(&[&k("tmp")]).unwrap());
    assert_eq!(store.num_keys().unwrap(), before);

    // size bounds.
    let long_key = "k".repeat(MAX_KEY_LEN + 1);
    assert!(matches!(
        store.set(&long_key, b"v"),
        Err(Error::Request { .. })
    ));

    // wait: immediate, timeout with its message, woken by a later set.
    store
        .wait(&[&k("a"), &k("n")], Some(Duration::from_secs(5)))
        .unwrap();
    let t0 = Instant::now();
    let err = store
        .wait(&[&k("a"), &k("never")], Some(Duration::from_millis(300)))
        .unwrap_err();
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(290),
        "returned after {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(10),
        "returned after {waited:?}"
    );
    match &err {
        Error::Timeout {
            keys,
            missing,
            waited,
        } => {
            assert_eq!(keys, &[k("a"), k("never")]);
            assert_eq!(missing, &[k("never")]);
            assert!(*waited >= Duration::from_millis(290));
        }
        other => panic!("expected a store timeout, got {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("store timeout after") && msg.contains(&k("never")),
        "{msg}"
    );

    let old = store.timeout();
    store.set_timeout(Duration::from_millis(200));
    assert!(matches!(store.get(&k("never")), Err(Error::Timeout { .. })));
    assert!(matches!(
        store.multi_get(&[&k("a"), &k("never")]),
        Err(Error::Timeout { .. })
    ));
    store.set_timeout(old);

    let other = open();
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(150));
            other.set(&k("late"), b"here").unwrap();
            std::thread::sleep(Duration::from_millis(100));
            other.set(&k("late2"), b"too").unwrap();
        });
        let t0 = Instant::now();
        store
            .wait(&[&k("late")], Some(Duration::from_secs(20)))
            .unwrap();
        assert!(
            t0.elapsed() >= Duration::from_millis(140),
            "woke after {:?}",
            t0.elapsed()
        );
        // get and multi_get wait too.
        assert_eq!(
            store.multi_get(&[&k("late"), &k("late2")]).unwrap(),
            vec![b"here".to_vec(), b"too".to_vec()]
        );
    });

    // Concurrent add: no lost update.
    let counter = k("counter");
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let h = open();
                for _ in 0..adds {
                    h.add(&counter, 1).unwrap();
                }
            });
        }
    });
    assert_eq!(
        store.get(&counter).unwrap(),
        (threads * adds).to_string().into_bytes()
    );
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    tutti::launch::local::free_loopback_port().unwrap()
}

/// The environment variable that puts the test binary in worker mode.
pub const WORKER_ENV: &str = "TUTTI_STORE_TEST_WORKER";

/// A command that runs this test binary again as a worker running `scenario` (read
/// by the binary's `worker` test), with extra environment variables.
pub fn worker_command(scenario: &str, envs: &[(&str, String)]) -> Command {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", "worker", "--nocapture", "--test-threads=1"])
        .env(WORKER_ENV, scenario)
        .stdin(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

/// Starts a worker (see [`worker_command`]).
pub fn spawn_worker(scenario: &str, envs: &[(&str, String)]) -> Child {
    worker_command(scenario, envs).spawn().unwrap()
}

/// Waits for a child with a time limit; kills it and fails past the limit.
pub fn wait_child(mut child: Child, what: &str, limit: Duration) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{what} failed: {status}");
            return;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Server log lines at WARN and ERROR, captured by a global subscriber.
pub static LOGS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

struct CaptureWarnings;

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        let _ = write!(self.0, "{}={value:?} ", field.name());
    }
}

impl tracing::Subscriber for CaptureWarnings {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= tracing::Level::WARN
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        LOGS.lock()
            .unwrap()
            .push(format!("{} {}", event.metadata().level(), fields.0));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

pub fn capture_warnings() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = tracing::subscriber::set_global_default(CaptureWarnings);
    });
}

/// Waits up to 10 s for a captured WARN/ERROR line containing every one of `needles`.
pub fn logged(needles: &[&str]) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if LOGS
            .lock()
            .unwrap()
            .iter()
            .any(|l| needles.iter().all(|n| l.contains(n)))
        {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
