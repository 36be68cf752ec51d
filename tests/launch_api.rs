//! The launcher's library API: a Rust closure as the entrypoint, run in real worker
//! processes (this test binary re-executed), returning values or failing.

use tutti::launch::LaunchError as Error;
use tutti::launch::{ExitKind, LaunchConfig, Launcher};

fn log_dir(test: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("tutti-launch-api-{test}-{}", std::process::id()))
}

/// Removes the logs of `test` (kept when it panics).
fn cleanup(test: &str) {
    let _ = std::fs::remove_dir_all(log_dir(test));
}

fn launcher(test: &str, nproc: usize) -> Launcher {
    let config = LaunchConfig {
        log_dir: Some(log_dir(test)),
        ..LaunchConfig::standalone(nproc)
    };
    Launcher::new(config).fn_args([test, "--exact", "--nocapture", "--test-threads=1"])
}

#[test]
fn closure_return_values_are_collected() {
    let out = launcher("closure_return_values_are_collected", 3)
        .run_fn(|ctx| {
            Ok::<_, String>((
                ctx.rank,
                ctx.world_size,
                ctx.role_name.clone(),
                format!("value {}", ctx.rank * 10),
            ))
        })
        .unwrap();
    assert_eq!(out.world_size, 3);
    assert_eq!(out.restart_count, 0);
    assert_eq!(out.ranks.len(), 3);
    for (rank, v) in &out.ranks {
        assert_eq!(
            v,
            &(
                *rank,
                3,
                "default".to_string(),
                format!("value {}", rank * 10)
            )
        );
    }
    cleanup("closure_return_values_are_collected");
}

fn failure_of(err: &Error) -> (usize, String, Option<String>) {
    let Error::WorkersFailed(report) = err else {
        panic!("expected WorkersFailed, got {err}");
    };
    assert_eq!(report.failures.len(), 1, "{err}");
    let f = &report.failures[0];
    assert_eq!(f.exit, ExitKind::Code(1));
    assert!(
        f.error_file
            .ends_with(format!("attempt_0/{}/error.json", f.local_rank)),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("FAILED") && text.contains("Root Cause"),
        "{text}"
    );
    (
        f.rank,
        f.message(),
        f.error.as_ref().and_then(|e| e.traceback.clone()),
    )
}

#[test]
fn a_closure_returning_an_error_writes_an_error_file() {
    let err = launcher("a_closure_returning_an_error_writes_an_error_file", 2)
        .run_fn(|ctx| {
            if ctx.rank == 1 {
                return Err(format!("bad input on rank {}", ctx.rank));
            }
            std::thread::sleep(std::time::Duration::from_secs(30));
            Ok(ctx.rank)
        })
        .unwrap_err();
    let (rank, message, _) = failure_of(&err);
    assert_eq!(rank, 1);
    assert!(message.contains("bad input on rank 1"), "{err}");
    cleanup("a_closure_returning_an_error_writes_an_error_file");
}

#[test]
fn a_panicking_closure_writes_an_error_file_with_its_backtrace() {
    let err = launcher(
        "a_panicking_closure_writes_an_error_file_with_its_backtrace",
        3,
    )
    .run_fn(|ctx| {
        if ctx.rank == 2 {
            panic!("rank two exploded");
        }
        std::thread::sleep(std::time::Duration::from_secs(30));
        Ok::<_, String>(ctx.rank)
    })
    .unwrap_err();
    let (rank, message, traceback) = failure_of(&err);
    assert_eq!(rank, 2);
    assert!(message.contains("rank two exploded"), "{err}");
    assert!(
        message.contains("launch_api.rs"),
        "the panic location: {err}"
    );
    assert!(traceback.is_some_and(|t| !t.is_empty()), "{err}");
    cleanup("a_panicking_closure_writes_an_error_file_with_its_backtrace");
}

#[test]
fn run_program_reports_exit_statuses() {
    let out = Launcher::new(LaunchConfig::standalone(2))
        .run_program("sh", ["-c", "exit 0"])
        .unwrap();
    assert_eq!(out.ranks.len(), 2);
    assert!(out.ranks.values().all(|w| w.exit == ExitKind::Code(0)));
    let err = Launcher::new(LaunchConfig::standalone(2))
        .run_program("/nonexistent/program", Vec::<String>::new())
        .unwrap_err();
    assert!(matches!(err, Error::WorkerSpawn { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/program"), "{err}");
}
