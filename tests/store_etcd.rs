//! etcd store tests against a real etcd server that the tests start on free loopback
//! ports and stop. Without an etcd binary (Debian: `etcd-server`; or `TUTTI_ETCD_BIN`)
//! or without the `etcd` cargo feature they skip with a reason, unless
//! `TUTTI_REQUIRE_ETCD=1`, which turns the skip into a failure.

mod store_common;

fn etcd_required() -> bool {
    std::env::var("TUTTI_REQUIRE_ETCD").is_ok_and(|v| v == "1")
}

#[cfg(not(feature = "etcd"))]
#[test]
fn etcd_store_needs_the_etcd_feature() {
    assert!(
        !etcd_required(),
        "TUTTI_REQUIRE_ETCD=1 but tutti was built without the `etcd` feature (use --features etcd)"
    );
    eprintln!(
        "skipping the etcd store tests: built without the `etcd` feature (use --features etcd)"
    );
}

/// Child-process entry point: does nothing unless started by `spawn_worker`.
#[cfg(feature = "etcd")]
#[test]
fn worker() {
    with_etcd::worker_main();
}

#[cfg(feature = "etcd")]
mod with_etcd {
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use super::etcd_required;
    use super::store_common::{WORKER_ENV, conformance, free_port, spawn_worker, wait_child};
    use tutti::store::StoreError as Error;
    use tutti::store::{EtcdStore, Store, barrier, synchronize};

    /// A running etcd, killed and cleaned up on drop.
    struct Etcd {
        child: Child,
        dir: PathBuf,
        endpoint: String,
    }

    impl Drop for Etcd {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn etcd_binary() -> Option<PathBuf> {
        if let Ok(bin) = std::env::var("TUTTI_ETCD_BIN") {
            return Some(PathBuf::from(bin));
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
            .map(|d| d.join("etcd"))
            .find(|p| p.is_file())
    }

    /// Starts etcd, or returns `None` (skip) when there is no binary and it is not
    /// required.
    fn start_etcd() -> Option<Etcd> {
        let Some(bin) = etcd_binary() else {
            assert!(
                !etcd_required(),
                "TUTTI_REQUIRE_ETCD=1 but no etcd binary was found (install etcd-server or set TUTTI_ETCD_BIN)"
            );
            eprintln!(
                "skipping: no etcd binary on PATH (install Debian's etcd-server, or set TUTTI_ETCD_BIN)"
            );
            return None;
        };
        // tmpfs when there is one: etcd fsyncs every write.
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let client_port = free_port();
        let peer_port = free_port();
        let dir = base.join(format!("tutti-etcd-{}-{client_port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(dir.join("etcd.log")).unwrap();
        let child = Command::new(&bin)
            .arg("--name=tutti-test")
            .arg(format!("--data-dir={}", dir.join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=tutti-test={peer_url}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                let _ = std::fs::remove_dir_all(&dir);
                panic!("starting {}: {e}", bin.display())
            });
        Some(Etcd {
            child,
            dir,
            endpoint: client_url,
        })
    }

    fn connect(endpoint: &str, prefix: &str) -> EtcdStore {
        EtcdStore::connect(&[endpoint], prefix, Duration::from_secs(30)).unwrap()
    }

    /// Child-process entry point (see the top-level `worker` test).
    pub fn worker_main() {
        let Ok(scenario) = std::env::var(WORKER_ENV) else {
            return;
        };
        assert_eq!(scenario, "etcd_ops");
        let endpoint = std::env::var("ETCD_ENDPOINT").unwrap();
        let id = std::env::var("WORKER_ID").unwrap();
        let store = connect(&endpoint, "/tutti-test/procs/");
        // Woken by the parent process's set.
        store.wait(&["go"], None).unwrap();
        for _ in 0..20 {
            store.add("counter", 1).unwrap();
        }
        store.append("log", id.as_bytes()).unwrap();
        assert_eq!(
            store
                .compare_set(&format!("cs/{id}"), b"", b"mine")
                .unwrap(),
            b"mine"
        );
        store
            .multi_set(
                &[&format!("multi/{id}/a"), &format!("multi/{id}/b")],
                &[b"a", b"b"],
            )
            .unwrap();
        store.set(&format!("done/{id}"), id.as_bytes()).unwrap();
    }

    #[test]
    fn etcd_store_against_a_real_etcd() {
        let Some(etcd) = start_etcd() else { return };
        let t0 = Instant::now();
        let endpoint = etcd.endpoint.clone();

        // Every operation, in process.
        conformance(
            &|| Box::new(connect(&endpoint, "/tutti-test/conf/")),
            "",
            64,
            3,
        );
        let conf = connect(&endpoint, "/tutti-test/conf/");
        let other = connect(&endpoint, "/tutti-test/other/");
        let before = other.num_keys().unwrap();
        other.set("x", b"1").unwrap();
        assert_eq!(
            other.num_keys().unwrap(),
            before + 1,
            "num_keys counts only the store's prefix"
        );
        assert!(!conf.check(&["x"]).unwrap());

        // Across processes.
        let children: Vec<_> = (0..3)
            .map(|i| {
                spawn_worker(
                    "etcd_ops",
                    &[
                        ("ETCD_ENDPOINT", endpoint.clone()),
                        ("WORKER_ID", i.to_string()),
                    ],
                )
            })
            .collect();
        let store = connect(&endpoint, "/tutti-test/procs/");
        std::thread::sleep(Duration::from_millis(200));
        store.set("go", b"1").unwrap();
        store
            .wait(
                &["done/0", "done/1", "done/2"],
                Some(Duration::from_secs(120)),
            )
            .unwrap();
        assert_eq!(store.get("counter").unwrap(), b"60");
        let mut log = store.get("log").unwrap();
        log.sort();
        assert_eq!(log, b"012");
        assert_eq!(
            store
                .multi_get(&["multi/2/a", "multi/2/b", "cs/1"])
                .unwrap(),
            vec![b"a".to_vec(), b"b".to_vec(), b"mine".to_vec()]
        );
        for (i, child) in children.into_iter().enumerate() {
            wait_child(child, &format!("etcd worker {i}"), Duration::from_secs(120));
        }

        // Rendezvous over etcd, threads as ranks.
        let world = 4;
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..world)
                .map(|rank| {
                    let endpoint = &endpoint;
                    s.spawn(move || {
                        let st = connect(endpoint, "/tutti-test/rdzv/");
                        barrier(&st, world, "b", Duration::from_secs(60), Some(rank)).unwrap();
                        synchronize(
                            &st,
                            &[rank as u8],
                            rank,
                            world,
                            "s/",
                            Duration::from_secs(60),
                        )
                        .unwrap()
                    })
                })
                .collect();
            for h in hs {
                assert_eq!(h.join().unwrap(), vec![vec![0], vec![1], vec![2], vec![3]]);
            }
        });

        // A wait timeout names the missing key.
        let err = store
            .wait(&["go", "absent"], Some(Duration::from_millis(300)))
            .unwrap_err();
        match err {
            Error::Timeout { missing, .. } => assert_eq!(missing, ["absent"]),
            other => panic!("{other}"),
        }
        eprintln!("etcd store tests took {:?}", t0.elapsed());
        drop(etcd);
    }

    #[test]
    fn etcd_store_connect_gives_up_after_its_timeout() {
        if etcd_binary().is_none() && !etcd_required() {
            eprintln!("skipping: no etcd binary");
            return;
        }
        let port = free_port();
        let t0 = Instant::now();
        let err = EtcdStore::connect(
            &[format!("http://127.0.0.1:{port}")],
            "/x/",
            Duration::from_millis(500),
        )
        .unwrap_err();
        assert!(matches!(err, Error::Backend { .. }), "{err}");
        assert!(t0.elapsed() < Duration::from_secs(10));
    }
}
