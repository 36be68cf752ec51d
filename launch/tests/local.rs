//! `tutti_launch::local`: ranks started as real processes with the rank environment.

use std::process::{Command, Stdio};

use tutti_launch::local::{SpawnError, free_loopback_port, spawn_local_ranks};

/// Each rank prints its environment; every variable is checked on every rank.
#[test]
fn every_rank_gets_the_rank_environment_and_the_callers_own_variables_win() {
    let children = spawn_local_ranks(3, "local-test", |r| {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "echo \"$RANK $LOCAL_RANK $WORLD_SIZE $LOCAL_WORLD_SIZE $MASTER_ADDR $MASTER_PORT $TUTTI_JOB_TOKEN $MINE\"",
        ])
        .env("MINE", format!("m{r}"))
        .stdout(Stdio::piped());
        if r == 2 {
            cmd.env("MASTER_ADDR", "10.1.2.3");
        }
        cmd
    })
    .unwrap();
    let lines: Vec<Vec<String>> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success());
            String::from_utf8(out.stdout)
                .unwrap()
                .split_whitespace()
                .map(str::to_string)
                .collect()
        })
        .collect();
    assert_eq!(lines.len(), 3);
    for (r, f) in lines.iter().enumerate() {
        assert_eq!(f.len(), 8, "rank {r} printed {f:?}");
        assert_eq!(f[0], r.to_string());
        assert_eq!(f[1], r.to_string());
        assert_eq!(f[2], "3");
        assert_eq!(f[3], "3");
        let addr = if r == 2 { "10.1.2.3" } else { "127.0.0.1" };
        assert_eq!(f[4], addr);
        assert!(f[5].parse::<u16>().unwrap() > 0);
        assert_eq!(f[5], lines[0][5], "one port for the job");
        assert!(f[6].starts_with("local-test-"), "token {}", f[6]);
        assert_eq!(f[6], lines[0][6], "one token for the job");
        assert_eq!(f[7], format!("m{r}"));
    }
}

/// A rank that cannot start fails the launch with its rank named, and the ranks
/// started before it are stopped (not left waiting for a rendezvous).
#[test]
fn a_rank_that_cannot_start_is_named_and_the_others_are_stopped() {
    let pid_file = std::env::temp_dir().join(format!("tutti-local-{}", std::process::id()));
    let pf = pid_file.clone();
    let err = spawn_local_ranks(3, "local-test", |r| {
        if r == 1 {
            // Rank 0 is running (it wrote its pid) before rank 1 fails to start.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !std::fs::read_to_string(&pf).is_ok_and(|s| s.ends_with('\n')) {
                assert!(std::time::Instant::now() < deadline, "rank 0 never started");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Command::new("/nonexistent/tutti-no-such-program")
        } else {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", &format!("echo $$ > {}; sleep 60", pf.display())]);
            cmd
        }
    })
    .unwrap_err();
    match &err {
        SpawnError::Start { rank, source } => {
            assert_eq!(*rank, 1);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(err.to_string().contains("starting rank 1"), "{err}");
    // Rank 0 was killed and reaped: its pid is gone.
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = std::fs::remove_file(&pid_file);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "rank 0 (pid {pid}) still runs"
    );
}

#[test]
fn a_free_loopback_port_can_be_bound() {
    let p = free_loopback_port().unwrap();
    std::net::TcpListener::bind(("127.0.0.1", p)).unwrap();
}
