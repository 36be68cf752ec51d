//! c10d's TCPStore protocol on tutti's store server, and tutti's client speaking it:
//! real torch.distributed clients and servers (tests/torch/store_*.py), tutti's own
//! c10d client through the whole conformance suite, the access policy, and bad input
//! from c10d clients (refused, logged with the peer's address, everyone else served).

mod store_common;
mod torch_common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use store_common::{AddErrors, capture_warnings, conformance_with, logged};
use tutti::store::StoreError as Error;
use tutti::store::{C10dAccess, Store, StoreProtocol, TcpStore, TcpStoreServer};

const TOKEN: &str = "c10d-test-token";

fn server(access: C10dAccess) -> TcpStoreServer {
    TcpStoreServer::bind_with_c10d("127.0.0.1:0", Some(TOKEN), access).unwrap()
}

fn tutti_client(port: u16) -> TcpStore {
    TcpStore::builder("127.0.0.1", port)
        .token(TOKEN)
        .timeout(Duration::from_secs(60))
        .connect()
        .unwrap()
}

fn c10d_client(port: u16) -> TcpStore {
    TcpStore::builder("127.0.0.1", port)
        .protocol(StoreProtocol::C10d)
        .timeout(Duration::from_secs(60))
        .connect()
        .unwrap()
}

/// Runs a Python script to completion and returns the JSON object on its last
/// stdout line.
fn run_python(args: &[&str]) -> Value {
    let out = Command::new(torch_common::python())
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{args:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let last = stdout.lines().last().unwrap_or("");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"))
}

#[test]
fn torch_client_against_tutti_server() {
    let Some(version) = torch_common::torch("torch_client_against_tutti_server") else {
        return;
    };
    let srv = server(C10dAccess::Loopback);
    let rust = tutti_client(srv.port());
    rust.set("from-rust", b"rust value").unwrap();
    rust.add("rust-counter", 5).unwrap();
    let script = torch_common::script("store_client.py");
    let out = run_python(&[
        script.to_str().unwrap(),
        "127.0.0.1",
        &srv.port().to_string(),
    ]);
    println!("torch {version}: {out}");
    let s = |k: &str| out[k].as_str().unwrap_or_else(|| panic!("{k}: {out}"));
    let i = |k: &str| out[k].as_i64().unwrap_or_else(|| panic!("{k}: {out}"));
    let b = |k: &str| out[k].as_bool().unwrap_or_else(|| panic!("{k}: {out}"));
    // Keys are shared both ways: torch's "/k" is tutti's "k".
    assert_eq!(s("from_rust"), "rust value");
    assert_eq!(i("rust_counter"), 7);
    assert_eq!(rust.get("rust-counter").unwrap(), b"7");
    assert_eq!(rust.get("from-torch").unwrap(), b"torch value");
    assert_eq!(s("get"), "v1");
    assert_eq!((i("add_new"), i("add_again")), (3, -7));
    assert_eq!(s("cnt_text"), "-7", "ADD keeps decimal ASCII");
    assert_eq!(s("cas_missing_expected"), "x");
    assert_eq!(s("cas_missing_empty"), "first");
    assert_eq!(s("cas_mismatch"), "first");
    assert_eq!(s("cas_match"), "second");
    assert_eq!(rust.get("cas").unwrap(), b"second");
    assert!(b("check_yes") && !b("check_no"));
    let timeout = s("wait_timeout");
    assert!(
        timeout.contains("DistStoreError") && timeout.contains("/never"),
        "{timeout}"
    );
    assert_eq!(s("after_timeout"), "v1");
    assert_eq!(out["multi_get"], serde_json::json!(["a", "b", "v1"]));
    assert_eq!(s("append"), "xyz");
    assert!(b("delete_present") && !b("delete_absent"));
    assert_eq!(i("num_keys"), rust.num_keys().unwrap() as i64 - 1);
    assert_eq!(i("queue_len"), 2);
    assert_eq!(out["queue_pop"], serde_json::json!(["first", "second"]));
    assert!(s("queue_empty").contains("QueueEmpty"), "{out}");
}

#[test]
fn tutti_client_against_torch_server() {
    if torch_common::torch("tutti_client_against_torch_server").is_none() {
        return;
    }
    let script = torch_common::script("store_server.py");
    let mut child = Command::new(torch_common::python())
        .arg(&script)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let port: u16 = first
        .strip_prefix("PORT ")
        .unwrap_or_else(|| panic!("{first}"))
        .parse()
        .unwrap();

    let store = TcpStore::builder("127.0.0.1", port)
        .protocol(StoreProtocol::C10d)
        .timeout(Duration::from_secs(60))
        .connect()
        .unwrap();
    assert_eq!(store.protocol(), StoreProtocol::C10d);
    assert_eq!(store.get("from-torch").unwrap(), b"torch value");
    store.set("from-rust", b"rust value").unwrap();
    assert_eq!(store.add("counter", 40).unwrap(), 40);
    assert_eq!(store.add("counter", 2).unwrap(), 42);
    assert_eq!(store.compare_set("cas", b"x", b"y").unwrap(), b"x");
    assert!(!store.check(&["cas"]).unwrap());
    assert_eq!(store.compare_set("cas", b"", b"one").unwrap(), b"one");
    assert_eq!(store.compare_set("cas", b"bad", b"two").unwrap(), b"one");
    assert_eq!(store.compare_set("cas", b"one", b"two").unwrap(), b"two");
    store.multi_set(&["m1", "m2"], &[b"a", b"b"]).unwrap();
    assert_eq!(
        store.multi_get(&["m1", "m2"]).unwrap(),
        vec![b"a".to_vec(), b"b".to_vec()]
    );
    store.append("ap", b"x").unwrap();
    store.append("ap", b"yz").unwrap();
    store.set("gone", b"1").unwrap();
    assert!(store.delete_key("gone").unwrap());
    assert!(!store.delete_key("gone").unwrap());
    store
        .wait(&["from-torch", "counter"], Some(Duration::from_secs(5)))
        .unwrap();
    // Wait timeout: c10d's CANCEL_WAIT, then the connection still works.
    let t0 = Instant::now();
    let err = store
        .wait(&["counter", "never"], Some(Duration::from_millis(300)))
        .unwrap_err();
    assert!(t0.elapsed() >= Duration::from_millis(290));
    match &err {
        Error::Timeout { keys, missing, .. } => {
            assert_eq!(keys, &["counter", "never"]);
            assert_eq!(missing, &["never"]);
        }
        other => panic!("expected a timeout, got {other}"),
    }
    store.set_timeout(Duration::from_millis(200));
    assert!(matches!(store.get("never"), Err(Error::Timeout { .. })));
    store.set_timeout(Duration::from_secs(60));
    let n = store.num_keys().unwrap();
    // A second connection, then release the script.
    let other = store.try_clone().unwrap();
    other.set("rust-done", b"1").unwrap();

    let last = lines.next().unwrap().unwrap();
    assert!(child.wait().unwrap().success());
    let out: Value = serde_json::from_str(&last).unwrap();
    assert_eq!(out["from_rust"], "rust value");
    assert_eq!(out["counter"], "42");
    assert_eq!(out["cas"], "two");
    assert_eq!(out["multi"], serde_json::json!(["a", "b"]));
    assert_eq!(out["append"], "xyz");
    assert_eq!(out["deleted"], false);
    assert_eq!(out["num_keys"].as_u64().unwrap(), n + 1);
}

#[test]
fn c10d_client_passes_the_conformance_suite_on_tutti_server() {
    let srv = server(C10dAccess::Loopback);
    let port = srv.port();
    let open = move || -> Box<dyn Store> { Box::new(c10d_client(port)) };
    conformance_with(&open, "c10d/", 8, 50, AddErrors::ClosesConnection);
    // Both protocols reach the same keys on one server.
    let t = tutti_client(port);
    assert_eq!(t.get("c10d/counter").unwrap(), b"400");
    t.set("shared", b"from tutti").unwrap();
    assert_eq!(c10d_client(port).get("shared").unwrap(), b"from tutti");
}

#[test]
fn c10d_clients_follow_the_access_policy() {
    capture_warnings();
    let deny = server(C10dAccess::Deny);
    let err = TcpStore::builder("127.0.0.1", deny.port())
        .protocol(StoreProtocol::C10d)
        .timeout(Duration::from_millis(500))
        .connect()
        .unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(
        logged(&[
            "refused a connection",
            "c10d access is deny",
            "peer=127.0.0.1:"
        ]),
        "the refusal is logged with the peer"
    );
    // tutti's protocol on the same server still needs (and accepts) the token.
    tutti_client(deny.port()).set("k", b"v").unwrap();

    let any = server(C10dAccess::Any);
    c10d_client(any.port()).set("k", b"v").unwrap();
    assert_eq!(tutti_client(any.port()).get("k").unwrap(), b"v");
    let err = TcpStore::builder("127.0.0.1", any.port())
        .token("wrong")
        .timeout(Duration::from_secs(5))
        .connect()
        .unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err}");

    for (text, access) in [
        ("deny", C10dAccess::Deny),
        ("loopback", C10dAccess::Loopback),
        ("any", C10dAccess::Any),
    ] {
        assert_eq!(text.parse::<C10dAccess>().unwrap(), access);
    }
    assert!("sometimes".parse::<C10dAccess>().is_err());
}

/// c10d request bytes, built by hand.
struct Req(Vec<u8>);

impl Req {
    fn new(query: u8) -> Self {
        Req(vec![query])
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(self, v: &[u8]) -> Self {
        let mut r = self.u64(v.len() as u64);
        r.0.extend_from_slice(v);
        r
    }
}

const VALIDATE: u8 = 0;
const SET: u8 = 1;
const GET: u8 = 3;
const ADD: u8 = 4;
const WAIT: u8 = 6;
const PING: u8 = 13;
const MAGIC: u32 = 0x3C85_F7CE;

fn validated(extra: &[u8]) -> Vec<u8> {
    [Req::new(VALIDATE).u32(MAGIC).0, extra.to_vec()].concat()
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

#[test]
fn c10d_bad_input_closes_only_that_connection() {
    capture_warnings();
    let srv = server(C10dAccess::Any);
    let port = srv.port();
    let good_tutti = tutti_client(port);
    let good_c10d = c10d_client(port);
    good_c10d.set("before", b"1").unwrap();
    std::thread::scope(|s| {
        // c10d and tutti clients parked in waits across all the abuse.
        let waiter_c10d = s.spawn(|| {
            let c = c10d_client(port);
            c.get("after-abuse").unwrap()
        });
        let waiter_tutti = s.spawn(|| {
            let c = tutti_client(port);
            c.get("after-abuse").unwrap()
        });

        let long_key = vec![b'k'; 8 * 1024 + 1];
        let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
            (
                "wrong VALIDATE magic",
                Req::new(VALIDATE).u32(0xdead_beef).0,
                &["wrong magic 0xdeadbeef"],
            ),
            (
                "request before VALIDATE",
                Req::new(PING).u32(7).0,
                &["a c10d client must start with VALIDATE"],
            ),
            (
                "garbage",
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
                &["neither tutti's store protocol nor c10d's"],
            ),
            (
                "key over the limit",
                validated(&Req::new(GET).u64(long_key.len() as u64).0),
                &["key of 8193 bytes exceeds the limit of 8192 bytes"],
            ),
            (
                "value over the limit",
                validated(&Req::new(SET).bytes(b"k").u64(8 * 1024 * 1024 + 1).0),
                &["value of 8388609 bytes exceeds the limit of 8388608 bytes"],
            ),
            (
                "too many keys",
                validated(&Req::new(WAIT).u64(1 << 20).0),
                &["WAIT of 1048576 keys exceeds the limit"],
            ),
            (
                "unknown query type",
                validated(&[0x7f, 1, 2, 3]),
                &["unknown c10d query type 127"],
            ),
            (
                "second VALIDATE",
                validated(&Req::new(VALIDATE).u32(MAGIC).0),
                &["second VALIDATE"],
            ),
            (
                "ADD to a value that is not a number",
                validated(
                    &[
                        Req::new(SET).bytes(b"/text").bytes(b"abc").0,
                        Req::new(ADD).bytes(b"/text").u64(1).0,
                    ]
                    .concat(),
                ),
                &["ADD 1 to key \"/text\"", "not a decimal integer"],
            ),
            (
                "request while waiting",
                validated(
                    &[
                        Req::new(WAIT).u64(1).bytes(b"/nope").0,
                        Req::new(PING).u32(7).0,
                    ]
                    .concat(),
                ),
                &["while its wait was pending"],
            ),
        ];
        for (what, bytes, needles) in cases {
            let mut raw = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let me = raw.local_addr().unwrap().to_string();
            let _ = raw.write_all(&bytes);
            expect_closed(&mut raw, what);
            let mut needles = needles.to_vec();
            let peer = format!("peer={me}");
            needles.push(&peer);
            assert!(logged(&needles), "{what}: no log line with {needles:?}");
            assert_eq!(good_c10d.get("before").unwrap(), b"1", "after {what}");
            assert_eq!(good_tutti.get("before").unwrap(), b"1", "after {what}");
        }

        // Truncated requests: the client goes away mid-request.
        let set = validated(&Req::new(SET).bytes(b"/k").bytes(b"value").0);
        for cut in [1, 4, 9, 14] {
            let mut raw = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let me = raw.local_addr().unwrap().to_string();
            raw.write_all(&set[..set.len() - cut]).unwrap();
            raw.shutdown(std::net::Shutdown::Write).unwrap();
            expect_closed(&mut raw, "truncated request");
            let peer = format!("peer={me}");
            assert!(
                logged(&["in the middle of a frame", &peer]),
                "truncated by {cut}: not logged"
            );
        }
        assert!(!good_c10d.check(&["k"]).unwrap(), "no truncated SET landed");

        // A well-behaved raw client on the same server: PING echoes.
        let mut raw = TcpStream::connect(("127.0.0.1", port)).unwrap();
        raw.write_all(&validated(&Req::new(PING).u32(0x1234_5678).0))
            .unwrap();
        let mut echo = [0u8; 4];
        raw.read_exact(&mut echo).unwrap();
        assert_eq!(u32::from_le_bytes(echo), 0x1234_5678);

        good_tutti.set("after-abuse", b"still here").unwrap();
        assert_eq!(waiter_c10d.join().unwrap(), b"still here");
        assert_eq!(waiter_tutti.join().unwrap(), b"still here");
    });
}
