//! The multi-launcher scenarios against a real etcd (Debian's etcd-server, started by
//! each test on free loopback ports) with `--rdzv-backend etcd`. Without an etcd
//! binary or the `etcd` cargo feature the tests skip with the reason, unless
//! `TUTTI_REQUIRE_ETCD=1`.

mod launch_common;

use launch_common::{
    Backend, TempDir, etcd_required, scenario_all_reduce, scenario_elastic, scenario_late_finisher,
    scenario_roles, start_etcd,
};

/// Child-process entry point: does nothing unless started as a launcher test worker.
#[test]
fn launch_worker() {
    launch_common::worker_main();
}

/// Starts etcd and returns the backend, or `None` to skip.
fn etcd_backend() -> Option<(launch_common::Etcd, Backend)> {
    if !cfg!(feature = "etcd") {
        assert!(
            !etcd_required(),
            "TUTTI_REQUIRE_ETCD=1 but tutti was built without the `etcd` feature (use --features etcd)"
        );
        eprintln!("skipping: built without the `etcd` feature (use --features etcd)");
        return None;
    }
    let etcd = start_etcd()?;
    let backend = Backend::Etcd {
        endpoint: etcd.endpoint.clone(),
    };
    Some((etcd, backend))
}

#[test]
fn etcd_backend_all_reduce_across_two_launchers() {
    let Some((_etcd, backend)) = etcd_backend() else {
        return;
    };
    let dir = TempDir::new("etcd-ar");
    scenario_all_reduce(&backend, &dir, "etcd-ar");
}

#[test]
fn etcd_backend_heterogeneous_roles() {
    let Some((_etcd, backend)) = etcd_backend() else {
        return;
    };
    let dir = TempDir::new("etcd-roles");
    scenario_roles(&backend, &dir, "etcd-roles");
}

#[test]
fn etcd_backend_survivor_finishes_after_the_first_launcher_dies() {
    let Some((_etcd, backend)) = etcd_backend() else {
        return;
    };
    let dir = TempDir::new("etcd-elastic");
    scenario_elastic(&backend, &dir, "etcd-elastic", true);
}

#[test]
fn etcd_backend_late_finisher_does_not_fail_the_job() {
    let Some((_etcd, backend)) = etcd_backend() else {
        return;
    };
    let dir = TempDir::new("etcd-late");
    scenario_late_finisher(&backend, &dir, "etcd-late");
}
