//! In-process store tests: the memory, file and prefix stores through the conformance
//! suite, and the rendezvous utilities with threads as ranks.

mod store_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use store_common::{WORKER_ENV, conformance, spawn_worker, wait_child};
use tutti::store::StoreError as Error;
use tutti::store::{
    FileStore, MemoryStore, PrefixStore, Store, barrier, barrier_with_trace_timeout, get_all,
    synchronize,
};

/// A store file in a per-process temporary directory, removed (with the directory,
/// once empty) on drop.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tutti-store-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        Self(path)
    }
}

impl std::ops::Deref for TempFile {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for TempFile {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Child-process entry point: does nothing unless started by `spawn_worker`.
#[test]
fn worker() {
    let Ok(scenario) = std::env::var(WORKER_ENV) else {
        return;
    };
    assert_eq!(scenario, "file_adds");
    let path = std::env::var("STORE_FILE").unwrap();
    let id = std::env::var("WORKER_ID").unwrap();
    let store = FileStore::open_with_timeout(&path, Duration::from_secs(60)).unwrap();
    // Woken by the parent process's set.
    store.wait(&["start"], None).unwrap();
    for _ in 0..100 {
        store.add("counter", 1).unwrap();
    }
    store.append("log", id.as_bytes()).unwrap();
    store.set(&format!("done/{id}"), id.as_bytes()).unwrap();
}

#[test]
fn file_store_across_processes() {
    let path = TempFile::new("procs");
    let store = FileStore::open(&path).unwrap();
    let children: Vec<_> = (0..4)
        .map(|i| {
            spawn_worker(
                "file_adds",
                &[
                    ("STORE_FILE", path.display().to_string()),
                    ("WORKER_ID", i.to_string()),
                ],
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    store.set("start", b"go").unwrap();
    let done: Vec<String> = (0..4).map(|i| format!("done/{i}")).collect();
    let done: Vec<&str> = done.iter().map(String::as_str).collect();
    store.wait(&done, Some(Duration::from_secs(120))).unwrap();
    assert_eq!(store.get("counter").unwrap(), b"400");
    let mut log = store.get("log").unwrap();
    log.sort();
    assert_eq!(log, b"0123");
    for (i, child) in children.into_iter().enumerate() {
        wait_child(child, &format!("file worker {i}"), Duration::from_secs(60));
    }
}

#[test]
fn memory_store_conformance() {
    let store = MemoryStore::new();
    conformance(&|| Box::new(store.clone()), "", 64, 200);
}

#[test]
fn file_store_conformance() {
    let path = TempFile::new("conformance");
    // Every handle opens the file itself, as separate processes do.
    conformance(&|| Box::new(FileStore::open(&path).unwrap()), "", 64, 20);
}

#[test]
fn file_store_rejects_foreign_files_and_survives_torn_records() {
    let path = TempFile::new("foreign");
    std::fs::write(&path, b"hello world, not a store").unwrap();
    let err = FileStore::open(&path).unwrap_err();
    assert!(err.to_string().contains("bad header"), "{err}");

    let path = TempFile::new("torn");
    let store = FileStore::open(&path).unwrap();
    store.set("k", b"v").unwrap();
    // A writer that died in the middle of a record.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(&[1, 5, 0, 0, 0, b'a']).unwrap();
    }
    let other = FileStore::open(&path).unwrap();
    assert_eq!(other.get("k").unwrap(), b"v");
    other.set("k2", b"v2").unwrap();
    assert_eq!(store.get("k2").unwrap(), b"v2");
    assert_eq!(store.num_keys().unwrap(), 2);
}

#[test]
fn prefix_store_conformance_and_namespacing() {
    let inner = MemoryStore::new();
    conformance(
        &|| Box::new(PrefixStore::new("job7", inner.clone())),
        "",
        8,
        50,
    );
    let p = PrefixStore::new("ns", inner.clone());
    p.set("key", b"v").unwrap();
    assert_eq!(inner.get("ns/key").unwrap(), b"v");
    assert!(!inner.check(&["key"]).unwrap());
    // Nested prefixes compose.
    let nested = PrefixStore::new("b", PrefixStore::new("a", inner.clone()));
    nested.set("x", b"1").unwrap();
    assert_eq!(inner.get("a/b/x").unwrap(), b"1");
}

#[test]
fn barrier_synchronize_get_all_with_threads() {
    let store = MemoryStore::new();
    let world = 8;
    let results: Vec<Vec<Vec<u8>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..world)
            .map(|rank| {
                let store = store.clone();
                s.spawn(move || {
                    barrier(&store, world, "b1", Duration::from_secs(30), Some(rank)).unwrap();
                    let data = format!("data of rank {rank}").into_bytes();
                    let all =
                        synchronize(&store, &data, rank, world, "sync/", Duration::from_secs(30))
                            .unwrap();
                    barrier(&store, world, "b2", Duration::from_secs(30), None).unwrap();
                    all
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let expected: Vec<Vec<u8>> = (0..world)
        .map(|r| format!("data of rank {r}").into_bytes())
        .collect();
    for r in results {
        assert_eq!(r, expected);
    }
    // get_all over keys set by hand.
    for i in 0..3 {
        store.set(&format!("g/{i}"), &[i as u8]).unwrap();
    }
    let got = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|rank| {
                let store = store.clone();
                s.spawn(move || {
                    get_all(&store, rank, "g/", 3, Some(Duration::from_secs(30))).unwrap()
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    assert!(got.iter().all(|g| g == &vec![vec![0], vec![1], vec![2]]));
    assert!(barrier(&store, 0, "bad", Duration::from_secs(1), None).is_err());
    assert!(synchronize(&store, b"", 3, 3, "bad", Duration::from_secs(1)).is_err());
}

#[test]
fn barrier_timeout_names_missing_ranks() {
    let store = Arc::new(MemoryStore::new());
    let world = 7;
    let present = [0usize, 2, 4];
    let timeout = Duration::from_secs(1);
    let start = Instant::now();
    let errors: Vec<(usize, Error)> = std::thread::scope(|s| {
        let hs: Vec<_> = present
            .iter()
            .map(|&rank| {
                let store = Arc::clone(&store);
                s.spawn(move || {
                    let e = barrier_with_trace_timeout(
                        &*store,
                        world,
                        "bt/",
                        timeout,
                        Some(rank),
                        Duration::from_millis(300),
                    )
                    .unwrap_err();
                    (rank, e)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(start.elapsed() < Duration::from_secs(10));
    for (rank, err) in errors {
        let msg = err.to_string();
        if rank == 0 {
            assert_eq!(
                msg,
                "Timed out waiting on barrier on rank 0, for key prefix: bt/ (world_size=7, missing_ranks=[1, 3, 5, 6], timeout=1s)"
            );
        } else {
            assert_eq!(
                msg,
                format!(
                    "Timed out waiting on barrier on rank {rank}, for key prefix: bt/ (world_size=7, missing_ranks=[<check rank 0 (0) for missing rank info>], timeout=1s)"
                )
            );
        }
    }
    // Without a rank, the store's own timeout error comes back.
    let err = barrier(&*store, 2, "bt2/", Duration::from_millis(100), None).unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
}
