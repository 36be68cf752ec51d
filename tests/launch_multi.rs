//! Several `tutti run` launchers on this host meeting through the store backend (and
//! the static one): an all_reduce across launchers with a restart, heterogeneous
//! roles, an elastic job surviving a killed launcher, and a late finisher.

mod launch_common;

use launch_common::{
    Backend, Launch, TempDir, free_port, scenario_all_reduce, scenario_elastic,
    scenario_late_finisher, scenario_roles, self_worker,
};
use std::time::Duration;

/// Child-process entry point: does nothing unless started as a launcher test worker.
#[test]
fn launch_worker() {
    launch_common::worker_main();
}

#[test]
fn store_backend_all_reduce_across_two_launchers() {
    let dir = TempDir::new("store-ar");
    scenario_all_reduce(&Backend::store(), &dir, "store-ar");
}

#[test]
fn store_backend_heterogeneous_roles() {
    let dir = TempDir::new("store-roles");
    scenario_roles(&Backend::store(), &dir, "store-roles");
}

#[test]
fn store_backend_survivor_finishes_after_a_launcher_dies() {
    let dir = TempDir::new("store-elastic");
    scenario_elastic(&Backend::store(), &dir, "store-elastic", false);
}

#[test]
fn store_backend_late_finisher_does_not_fail_the_job() {
    let dir = TempDir::new("store-late");
    scenario_late_finisher(&Backend::store(), &dir, "store-late");
}

#[test]
fn static_backend_all_reduce_across_two_launchers() {
    let dir = TempDir::new("static-ar");
    let port = free_port().to_string();
    let (program, worker) = self_worker("allreduce");
    let mut launches: Vec<Launch> = (0..2)
        .map(|i| {
            let flags: Vec<String> = [
                "--nnodes",
                "2",
                "--node-rank",
                &i.to_string(),
                "--nproc-per-node",
                "2",
                "--master-addr",
                "127.0.0.1",
                "--master-port",
                &port,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            Launch::start(
                dir.path(),
                &format!("launcher{i}"),
                &flags,
                &program,
                std::slice::from_ref(&worker),
            )
        })
        .collect();
    for l in &mut launches {
        l.expect_success(Duration::from_secs(60));
    }
    for rank in 0..4 {
        assert_eq!(
            dir.read(&format!("w4_rank{rank}")),
            "world=4 sum=6 restart=0"
        );
    }
}
