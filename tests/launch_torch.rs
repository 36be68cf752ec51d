//! Real torch.distributed programs (tests/torch/train.py: Gloo through env://, one
//! all_reduce checked element by element, a barrier) run unchanged under `tutti run`:
//! 1, 2 and 4 workers, `--standalone`, two launchers as two nodes (static and store
//! rendezvous), a worker that raises under `@record` (its error file in the
//! first-failure report) and a restart that succeeds. And the other way round: a
//! Rust program using `ProcessGroup::from_env` under torchrun, its store client
//! speaking c10d's protocol to torchrun's agent store.
//!
//! They print `SKIPPED` without torch, and fail instead with TUTTI_REQUIRE_TORCH=1.

mod launch_common;
mod torch_common;

use std::time::Duration;

use launch_common::{Backend, Launch, TUTTI, TempDir, WORKER_ENV, free_port, self_worker};

const LIMIT: Duration = Duration::from_secs(180);

/// The line rank `rank` of a `world`-worker job writes in attempt `restart`.
fn expected(world: usize, restart: u32) -> String {
    let values: Vec<String> = (0..8)
        .map(|i| (i * world + world * (world - 1) / 2).to_string())
        .collect();
    format!(
        "world={world} restart={restart} values=[{}]",
        values.join(", ")
    )
}

fn train(extra: &[&str]) -> Vec<String> {
    let mut v = vec![
        torch_common::script("train.py")
            .to_string_lossy()
            .into_owned(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Every rank of a `world`-worker job wrote its line for attempt `restart`.
fn check_ranks(dir: &TempDir, world: usize, restart: u32) {
    for rank in 0..world {
        assert_eq!(
            dir.read(&format!("torch_rank{rank}")),
            expected(world, restart),
            "rank {rank}"
        );
    }
}

/// The environment of every launcher: the interpreter the probe found.
fn env() -> Vec<(&'static str, String)> {
    vec![("PYTHON_EXEC", torch_common::python())]
}

#[test]
fn torch_gloo_all_reduce_with_1_2_and_4_workers() {
    if torch_common::torch("torch_gloo_all_reduce_with_1_2_and_4_workers").is_none() {
        return;
    }
    for n in [1usize, 2, 4] {
        let dir = TempDir::new(&format!("torch-ar{n}"));
        let mut l = Launch::start(
            dir.path(),
            "launcher",
            &strings(&["--nproc-per-node", &n.to_string()]),
            &train(&[]),
            &env(),
        );
        l.expect_success(LIMIT);
        check_ranks(&dir, n, 0);
    }
}

#[test]
fn torch_standalone() {
    if torch_common::torch("torch_standalone").is_none() {
        return;
    }
    let dir = TempDir::new("torch-standalone");
    let mut l = Launch::start(
        dir.path(),
        "launcher",
        &strings(&["--standalone", "--nproc-per-node", "2"]),
        &train(&[]),
        &env(),
    );
    l.expect_success(LIMIT);
    check_ranks(&dir, 2, 0);
}

#[test]
fn torch_two_launchers_static_rendezvous() {
    if torch_common::torch("torch_two_launchers_static_rendezvous").is_none() {
        return;
    }
    let dir = TempDir::new("torch-static");
    let port = free_port().to_string();
    let mut launches: Vec<Launch> = (0..2)
        .map(|i| {
            let flags = strings(&[
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
            ]);
            Launch::start(dir.path(), &format!("node{i}"), &flags, &train(&[]), &env())
        })
        .collect();
    for l in &mut launches {
        l.expect_success(LIMIT);
    }
    check_ranks(&dir, 4, 0);
}

#[test]
fn torch_two_launchers_store_rendezvous() {
    if torch_common::torch("torch_two_launchers_store_rendezvous").is_none() {
        return;
    }
    let dir = TempDir::new("torch-store");
    let backend = Backend::store();
    let mut launches = Vec::new();
    for i in 0..2 {
        let mut flags = backend.flags("torch-store", "2");
        flags.extend(strings(&["--nproc-per-node", "2"]));
        launches.push(Launch::start(
            dir.path(),
            &format!("node{i}"),
            &flags,
            &train(&[]),
            &env(),
        ));
        if i == 0 {
            backend.wait_host();
        }
    }
    for l in &mut launches {
        l.expect_success(LIMIT);
    }
    check_ranks(&dir, 4, 0);
}

#[test]
fn torch_worker_that_raises_is_reported_with_its_error_file() {
    if torch_common::torch("torch_worker_that_raises_is_reported_with_its_error_file").is_none() {
        return;
    }
    let dir = TempDir::new("torch-raise");
    let mut l = Launch::start(
        dir.path(),
        "launcher",
        &strings(&["--nproc-per-node", "2"]),
        &train(&["--fail-rank", "1"]),
        &env(),
    );
    let status = l.wait(LIMIT);
    assert_eq!(status.code(), Some(1), "{}", l.output());
    let err = l.stderr();
    let root = err
        .split("Root Cause (first observed failure):")
        .nth(1)
        .unwrap_or_else(|| panic!("no first-failure report:\n{err}"));
    assert!(root.contains("rank      : 1 (local_rank: 1"), "{root}");
    assert!(root.contains("exitcode  : 1"), "{root}");
    assert!(
        root.contains("RuntimeError: rank 1 fails on purpose in attempt 0"),
        "the message comes from @record's error file:\n{root}"
    );
    assert!(root.contains("traceback :"), "{root}");
    let path = root
        .lines()
        .find_map(|l| l.trim().strip_prefix("error_file: "))
        .unwrap_or_else(|| panic!("no error file in\n{root}"));
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let message = file["message"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("rank 1 fails on purpose"),
        "torch's error file: {file}"
    );
    assert!(file["message"]["extraInfo"]["py_callstack"].is_string());
}

#[test]
fn torch_restart_after_a_failure_succeeds() {
    if torch_common::torch("torch_restart_after_a_failure_succeeds").is_none() {
        return;
    }
    let dir = TempDir::new("torch-restart");
    let mut l = Launch::start(
        dir.path(),
        "launcher",
        &strings(&["--nproc-per-node", "2", "--max-restarts", "1"]),
        &train(&["--fail-rank", "0", "--fail-attempt", "0"]),
        &env(),
    );
    l.expect_success(LIMIT);
    check_ranks(&dir, 2, 1);
}

#[test]
fn bad_c10d_store_flag_names_the_flag() {
    let out = std::process::Command::new(TUTTI)
        .args(["run", "--c10d-store", "sometimes", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--c10d-store \"sometimes\" is not one of any, loopback, deny"),
        "{err}"
    );
}

/// Child-process entry point of the Rust workers torchrun starts.
#[test]
fn launch_worker() {
    launch_common::worker_main();
}

#[test]
fn rust_process_group_under_torchrun() {
    if torch_common::torch("rust_process_group_under_torchrun").is_none() {
        return;
    }
    let dir = TempDir::new("torchrun-rust");
    let (program, (var, scenario)) = self_worker("allreduce");
    assert_eq!(var, WORKER_ENV);
    let out = std::process::Command::new(torch_common::python())
        .args([
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "--no-python",
        ])
        .args(&program)
        .env(var, scenario)
        .env("OUT", dir.path())
        .env_remove("TUTTI_JOB_TOKEN")
        .env_remove("TUTTI_STORE_PROTOCOL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "torchrun failed: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for rank in 0..2 {
        assert_eq!(
            dir.read(&format!("w2_rank{rank}")),
            "world=2 sum=1 restart=0",
            "rank {rank}"
        );
    }
}
