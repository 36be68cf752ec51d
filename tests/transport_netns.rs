//! TCP links between ranks in two network namespaces joined by a bridge: each
//! rank binds the interface `TUTTI_SOCKET_IFNAME` names, payloads cross the veth
//! byte-exactly, with and without `tc netem` delay and loss. Needs root and
//! iproute2 (`ip netns`); skips with the reason otherwise (fails instead with
//! `TUTTI_REQUIRE_NETNS=1`).

mod netns;
mod ranks;

use std::time::Duration;

use netns::Net;
use tutti::group::StoreRendezvous;
use tutti::transport::tcp::{TcpConfig, TcpEndpoint};
use tutti::transport::{Deadline, ops};

fn worker() {
    let rank = ranks::worker_rank().unwrap();
    let store = ranks::store();
    let rdv = StoreRendezvous(&*store);
    let mut ep = TcpEndpoint::bind(TcpConfig::from_env(1), rank, "netns").unwrap();
    let want_ip = std::env::var("TUTTI_TEST_EXPECT_IP").unwrap();
    assert_eq!(
        ep.addr().ip().to_string(),
        want_ip,
        "TUTTI_SOCKET_IFNAME chose the wrong address"
    );
    ep.publish(&rdv).unwrap();
    let dl = Deadline::after(Duration::from_secs(60));
    let mut link = ep
        .connect(&rdv, 1 - rank, &format!("rank {}", 1 - rank), dl)
        .unwrap();
    let n: usize = std::env::var("TUTTI_TEST_BYTES").unwrap().parse().unwrap();
    for round in 0..2 {
        let data = ranks::random_bytes(n, 10 + round);
        let mut got = vec![0u8; n];
        if rank == round as usize {
            ops::send(&mut *link.tx, &data, 1 << 16, dl).unwrap();
            ops::recv(&mut *link.rx, &mut got[..1], dl).unwrap();
        } else {
            ops::recv(&mut *link.rx, &mut got, dl).unwrap();
            assert!(
                got == data,
                "payload of {n} bytes differs after crossing the veth"
            );
            ops::send(&mut *link.tx, &[1], 1, dl).unwrap();
        }
    }
}

fn run(net: &Net, bytes: usize) {
    let outs = ranks::wait_all(
        ranks::spawn_with(
            "tcp_between_network_namespaces",
            2,
            &[
                ("TUTTI_TEST_BYTES", bytes.to_string()),
                ("MASTER_ADDR", net.addr[0].clone()),
                ("TUTTI_TEST_STORE_BIND", net.addr[0].clone()),
            ],
            &|r| {
                vec![
                    "ip".into(),
                    "netns".into(),
                    "exec".into(),
                    net.ns[r].clone(),
                    "env".into(),
                    format!("TUTTI_SOCKET_IFNAME={}", net.dev[r]),
                    format!("TUTTI_TEST_EXPECT_IP={}", net.addr[r]),
                ]
            },
        ),
        Duration::from_secs(120),
    );
    ranks::check_success("netns ranks", &outs);
}

#[test]
fn tcp_between_network_namespaces() {
    if ranks::worker_rank().is_some() {
        worker();
        return;
    }
    let Some(net) = Net::create_or_skip(2) else {
        return;
    };
    run(&net, 8 << 20);
    match net.netem(&["delay", "5ms", "loss", "1%"]) {
        Ok(()) => run(&net, 2 << 20),
        Err(reason) => eprintln!("SKIPPED (netem part): {reason}"),
    }
}
