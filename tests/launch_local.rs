//! `tutti run` on one host with real worker processes: rank files, the worker
//! environment, failure reports with error files, restarts after SIGKILL, restart
//! exhaustion, signal forwarding, and a late worker.

mod launch_common;

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use launch_common::{Launch, TempDir, sh, wait_files};
use tutti::launch::WORKER_ENV_VARS;

const LIMIT: Duration = Duration::from_secs(60);

fn flags(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn four_workers_write_their_rank_files() {
    let dir = TempDir::new("ranks");
    let mut l = Launch::start(
        dir.path(),
        "launcher",
        &flags(&["--standalone", "--nproc-per-node", "4", "--tee", "1"]),
        &sh("echo $RANK > \"$OUT/rank.$RANK\"; echo hi from $RANK"),
        &[],
    );
    l.expect_success(LIMIT);
    let out = l.output();
    for r in 0..4 {
        assert_eq!(dir.read(&format!("rank.{r}")).trim(), r.to_string());
        // --tee 1: stdout lines reach the console prefixed with role and rank.
        assert!(
            out.contains(&format!("[default{r}]:hi from {r}\n")),
            "{out}"
        );
    }
}

#[test]
fn every_worker_gets_the_full_environment() {
    let dir = TempDir::new("env");
    let logs = dir.join("logs");
    let mut l = Launch::start(
        dir.path(),
        "launcher",
        &flags(&[
            "--nproc-per-node",
            "3",
            "--role",
            "trainer",
            "--rdzv-id",
            "envjob",
            "--max-restarts",
            "2",
            "--log-dir",
            logs.to_str().unwrap(),
            "--redirects",
            "1",
        ]),
        &sh("env > \"$OUT/env.$RANK\"; echo hello from $RANK"),
        &[],
    );
    l.expect_success(LIMIT);
    let omp_preset = std::env::var_os("OMP_NUM_THREADS").is_some();
    let mut tokens = Vec::new();
    for r in 0..3 {
        let text = dir.read(&format!("env.{r}"));
        let env: HashMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
        for var in WORKER_ENV_VARS {
            assert!(env.contains_key(var), "rank {r} lacks {var}:\n{text}");
        }
        let expect = [
            ("RANK", r.to_string()),
            ("LOCAL_RANK", r.to_string()),
            ("WORLD_SIZE", "3".into()),
            ("LOCAL_WORLD_SIZE", "3".into()),
            ("GROUP_RANK", "0".into()),
            ("GROUP_WORLD_SIZE", "1".into()),
            ("ROLE_RANK", r.to_string()),
            ("ROLE_NAME", "trainer".into()),
            ("ROLE_WORLD_SIZE", "3".into()),
            ("MASTER_ADDR", "127.0.0.1".into()),
            ("TORCHELASTIC_RESTART_COUNT", "0".into()),
            ("TORCHELASTIC_MAX_RESTARTS", "2".into()),
            ("TORCHELASTIC_RUN_ID", "envjob".into()),
            ("TORCHELASTIC_USE_AGENT_STORE", "True".into()),
        ];
        for (k, v) in expect {
            assert_eq!(env[k], v, "rank {r}: {k}");
        }
        assert!(env["MASTER_PORT"].parse::<u16>().unwrap() > 0);
        assert_eq!(
            env["TORCHELASTIC_ERROR_FILE"],
            logs.join(format!("envjob/attempt_0/{r}/error.json"))
                .display()
                .to_string()
        );
        assert!(!env["TUTTI_JOB_TOKEN"].is_empty());
        tokens.push(env["TUTTI_JOB_TOKEN"].to_string());
        if !omp_preset {
            assert_eq!(env["OMP_NUM_THREADS"], "1", "rank {r}");
        }
        // --redirects 1: stdout went to the log file only.
        let log =
            std::fs::read_to_string(logs.join(format!("envjob/attempt_0/{r}/stdout.log"))).unwrap();
        assert_eq!(log.trim(), format!("hello from {r}"));
    }
    assert!(tokens.iter().all(|t| *t == tokens[0]));
    assert!(!l.output().contains("hello from"), "{}", l.output());
}

#[test]
fn a_failing_worker_fails_the_launcher_with_a_report() {
    let dir = TempDir::new("fail");
    let own_error_file = dir.join("launcher-error.json");
    let script = r#"
if [ "$RANK" = 1 ]; then
  printf '{"message": {"message": "custom failure from rank 1", "extraInfo": {"py_callstack": "line 7 in train", "timestamp": "%s"}}}' "$(date +%s)" > "$TORCHELASTIC_ERROR_FILE"
  exit 1
fi
sleep 30
"#;
    let mut l = Launch::start(
        dir.path(),
        "launcher",
        &flags(&["--nproc-per-node", "2", "--tee", "3", "--stop-timeout", "5"]),
        &sh(script),
        &[(
            "TORCHELASTIC_ERROR_FILE",
            own_error_file.display().to_string(),
        )],
    );
    let status = l.wait(LIMIT);
    assert_eq!(status.code(), Some(1), "{}", l.output());
    let err = l.stderr();
    assert!(err.contains("sh FAILED"), "{err}");
    assert!(err.contains("rank      : 1 (local_rank: 1"), "{err}");
    assert!(err.contains("exitcode  : 1 (pid: "), "{err}");
    assert!(err.contains("custom failure from rank 1"), "{err}");
    assert!(err.contains("line 7 in train"), "{err}");
    assert!(err.contains("attempt_0/1/error.json"), "{err}");
    assert!(
        err.contains("<NO_OTHER_FAILURES>"),
        "rank 0 was stopped, not failed: {err}"
    );
    // Nested under a launcher: the root cause is copied into the launcher's own file.
    let own: serde_json::Value = serde_json::from_str(&dir.read("launcher-error.json")).unwrap();
    assert_eq!(own["message"]["message"], "custom failure from rank 1");
    assert_eq!(own["message"]["errorCode"], 1);
}

#[test]
fn a_worker_killed_by_sigkill_is_restarted() {
    let dir = TempDir::new("sigkill");
    let script = r#"
echo "$TORCHELASTIC_RESTART_COUNT" >> "$OUT/attempts.$RANK"
if [ "$RANK" = 1 ] && [ "$TORCHELASTIC_RESTART_COUNT" = 0 ]; then kill -9 $$; fi
if [ "$RANK" = 0 ] && [ "$TORCHELASTIC_RESTART_COUNT" = 0 ]; then sleep 30; fi
echo ok > "$OUT/ok.$RANK.$TORCHELASTIC_RESTART_COUNT"
"#;
    let mut l = Launch::start(
        dir.path(),
        "launcher",
        &flags(&["--nproc-per-node", "2", "--max-restarts", "3"]),
        &sh(script),
        &[],
    );
    l.expect_success(LIMIT);
    // Rank 1 ran twice; rank 0 may have been stopped before its first line.
    assert_eq!(dir.read("attempts.1"), "0\n1\n");
    assert!(dir.read("attempts.0").ends_with("1\n"));
    for r in 0..2 {
        assert!(dir.join(&format!("ok.{r}.1")).exists(), "rank {r}");
        assert!(!dir.join(&format!("ok.{r}.0")).exists(), "rank {r}");
    }
    let err = l.stderr();
    assert!(err.contains("SIGKILL"), "{err}");
    assert!(err.contains("restarting the worker group"), "{err}");
}

#[test]
fn exhausted_restarts_fail_after_max_restarts_plus_one_attempts() {
    let dir = TempDir::new("exhaust");
    let mut l = Launch::start(
        dir.path(),
        "launcher",
        &flags(&["--nproc-per-node", "2", "--max-restarts", "2"]),
        &sh(
            "echo \"$TORCHELASTIC_RESTART_COUNT\" >> \"$OUT/attempts.$RANK\"; [ \"$RANK\" = 0 ] && exit 7; sleep 30",
        ),
        &[],
    );
    let status = l.wait(LIMIT);
    assert_eq!(status.code(), Some(1), "{}", l.output());
    // Rank 0 fails in every attempt (rank 1 may be stopped before it writes).
    assert_eq!(dir.read("attempts.0"), "0\n1\n2\n");
    let rank1 = std::fs::read_to_string(dir.join("attempts.1")).unwrap_or_default();
    assert!(!rank1.contains('3'), "{rank1}");
    let err = l.stderr();
    assert!(err.contains("exitcode  : 7"), "{err}");
    assert!(err.contains("attempt   : 2"), "{err}");
}

#[test]
fn sigterm_to_the_launcher_reaches_the_workers() {
    let dir = TempDir::new("sigterm");
    let script = r#"
trap 'echo term > "$OUT/term.$RANK"; exit 0' TERM
touch "$OUT/ready.$RANK"
while true; do sleep 0.05; done
"#;
    let mut l = Launch::start(
        dir.path(),
        "launcher",
        &flags(&["--nproc-per-node", "2", "--stop-timeout", "10"]),
        &sh(script),
        &[],
    );
    let ready = [dir.join("ready.0"), dir.join("ready.1")];
    wait_files(&ready, LIMIT, &|| l.output());
    let pid = rustix::process::Pid::from_raw(l.child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = l.wait(LIMIT);
    assert_eq!(status.signal(), Some(15), "{status}\n{}", l.output());
    for r in 0..2 {
        assert_eq!(dir.read(&format!("term.{r}")).trim(), "term", "rank {r}");
    }
}

#[test]
fn a_worker_finishing_long_after_the_other_does_not_fail_the_job() {
    let dir = TempDir::new("late");
    let mut l = Launch::start(
        dir.path(),
        "launcher",
        &flags(&["--nproc-per-node", "2", "--monitor-interval", "0.05"]),
        &sh("if [ \"$RANK\" = 1 ]; then sleep 2; fi; echo done > \"$OUT/done.$RANK\""),
        &[],
    );
    l.expect_success(LIMIT);
    assert!(dir.join("done.0").exists() && dir.join("done.1").exists());
}

#[test]
fn bad_flags_are_errors_naming_the_flag() {
    let dir = TempDir::new("flags");
    let mut l = Launch::start(
        dir.path(),
        "launcher",
        &flags(&["--nnodes", "3:2"]),
        &sh("true"),
        &[],
    );
    let status = l.wait(LIMIT);
    assert_eq!(status.code(), Some(2));
    assert!(l.stderr().contains("--nnodes"), "{}", l.stderr());
}
