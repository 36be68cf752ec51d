//! The transport registry as a group sees it: `TUTTI_TRANSPORT` names (auto, shm,
//! tcp, rdma, any registered entry), which transport reaches each peer, and RDMA,
//! selectable where tutti is built with the `rdma` feature and a device exists.
//! Without a device the RDMA test prints `SKIPPED: <reason>` (after checking that a
//! group asking for RDMA fails with an error naming the reason);
//! `TUTTI_REQUIRE_RDMA=1` turns the skip into a failure.

use std::time::Duration;

use tutti::group::{GroupOptions, TransportChoice};
use tutti::transport::registry;
use tutti::{ProcessGroup, ReduceOp};

fn opts(transport: TransportChoice) -> GroupOptions {
    GroupOptions {
        transport,
        timeout: Duration::from_secs(60),
        connect_timeout: Duration::from_secs(60),
        ..GroupOptions::default()
    }
}

#[test]
fn transport_names_map_onto_the_registry() {
    let parse = |s: &str| s.parse::<TransportChoice>();
    assert_eq!(parse("").unwrap(), TransportChoice::Auto);
    assert_eq!(parse("AUTO").unwrap(), TransportChoice::Auto);
    assert_eq!(parse("shm").unwrap(), TransportChoice::Shm);
    assert_eq!(parse(" Tcp ").unwrap(), TransportChoice::Tcp);
    assert_eq!(parse("rdma").unwrap(), TransportChoice::Rdma);
    assert_eq!(
        parse("window").unwrap(),
        TransportChoice::Named("window"),
        "every registry entry is selectable by name"
    );
    for t in [
        TransportChoice::Auto,
        TransportChoice::Shm,
        TransportChoice::Tcp,
    ] {
        assert_eq!(parse(t.name()).unwrap(), t);
        t.selection().unwrap();
    }
    let e = parse("carrier-pigeon").unwrap_err().to_string();
    assert!(
        e.contains("carrier-pigeon") && e.contains("window, shm") && e.contains("tcp"),
        "{e}"
    );
    // The registry lists its entries in priority order.
    let names = registry::names();
    let pos = |n: &str| names.iter().position(|x| *x == n);
    assert!(
        pos("window") < pos("shm") && pos("shm") < pos("tcp"),
        "{names:?}"
    );
    if cfg!(feature = "rdma") {
        assert!(pos("rdma") < pos("tcp"), "{names:?}");
        TransportChoice::Rdma.selection().unwrap();
    } else {
        let e = TransportChoice::Rdma.selection().unwrap_err().to_string();
        assert!(e.contains("`rdma` feature"), "{e}");
    }
}

/// Sums 1..=n over `n` thread ranks and returns what each rank reaches its peers by.
fn all_reduce_and_transports(
    n: usize,
    t: TransportChoice,
) -> tutti::Result<Vec<Vec<Option<&'static str>>>> {
    ProcessGroup::run_threads(n, opts(t), |g| {
        let mut v = vec![g.rank() as u32 + 1; 1000];
        g.all_reduce(&mut v, ReduceOp::Sum).unwrap();
        let n = g.size() as u32;
        assert!(v.iter().all(|&x| x == n * (n + 1) / 2), "rank {}", g.rank());
        (0..g.size()).map(|p| g.transport_to(p)).collect()
    })
}

#[test]
fn each_choice_reaches_the_peers_by_its_transports() {
    for (t, want) in [
        (TransportChoice::Auto, "window"),
        (TransportChoice::Shm, "window"),
        (TransportChoice::Named("window"), "window"),
        (TransportChoice::Tcp, "tcp"),
    ] {
        let seen = all_reduce_and_transports(3, t).unwrap();
        for (r, row) in seen.iter().enumerate() {
            for (p, got) in row.iter().enumerate() {
                let want = (p != r).then_some(want);
                assert_eq!(*got, want, "{t:?}: rank {r} to rank {p}");
            }
        }
    }
    // Pretend hosts: the window inside, TCP between (shm alone cannot cross).
    let groups = ProcessGroup::threads_on_hosts(&[0, 0, 1], opts(TransportChoice::Auto)).unwrap();
    assert_eq!(groups[0].transport_to(1), Some("window"));
    assert_eq!(groups[0].transport_to(2), Some("tcp"));
    assert_eq!(groups[0].hosts(), &[vec![0, 1], vec![2]]);
    drop(groups);
    let e = ProcessGroup::threads_on_hosts(&[0, 1], opts(TransportChoice::Shm)).unwrap_err();
    let e = e.to_string();
    assert!(
        e.contains("TUTTI_TRANSPORT=shm") && e.contains("same host"),
        "{e}"
    );
}

fn require_rdma() -> bool {
    std::env::var("TUTTI_REQUIRE_RDMA").is_ok_and(|v| v.trim() == "1")
}

#[cfg(feature = "rdma")]
#[test]
fn rdma_is_selectable_in_a_group_where_a_device_exists() {
    match tutti::transport::rdma::available() {
        Ok(()) => {
            let seen = all_reduce_and_transports(2, TransportChoice::Rdma).unwrap();
            assert_eq!(seen[0][1], Some("rdma"));
            assert_eq!(seen[1][0], Some("rdma"));
        }
        Err(reason) => {
            assert!(
                !require_rdma(),
                "TUTTI_REQUIRE_RDMA=1 but RDMA is unavailable: {reason}"
            );
            // Asking for it anyway is a clear error, not a panic or a hang.
            let e = all_reduce_and_transports(2, TransportChoice::Rdma)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("TUTTI_TRANSPORT=rdma") && e.contains("no usable RDMA device"),
                "{e}"
            );
            // And auto falls back to the window (and TCP between hosts).
            let seen = all_reduce_and_transports(2, TransportChoice::Auto).unwrap();
            assert_eq!(seen[0][1], Some("window"));
            eprintln!("SKIPPED: RDMA is unavailable: {reason}");
        }
    }
}

#[cfg(not(feature = "rdma"))]
#[test]
fn rdma_is_selectable_in_a_group_where_a_device_exists() {
    assert!(
        !require_rdma(),
        "TUTTI_REQUIRE_RDMA=1 but tutti was built without the `rdma` feature"
    );
    eprintln!("SKIPPED: tutti was built without the `rdma` feature");
}
