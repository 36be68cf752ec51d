//! The worker side of a Rust entrypoint ([`Launcher::run_fn`](super::Launcher::run_fn)):
//! the launcher re-executes the current program with `TUTTI_LAUNCH_FN_WORKER=1`; in
//! that process the same `run_fn` call runs the closure instead of launching, writes
//! its return value (JSON) for the launcher, or an error file when it fails or
//! panics, and exits.

use std::fmt::Display;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use super::env::WorkerContext;
use super::error_file::{self, ERROR_FILE_ENV};
use super::worker::RESULT_FILE_ENV;

/// The variable that makes a re-executed program a worker of a Rust entrypoint.
pub const FN_WORKER_ENV: &str = "TUTTI_LAUNCH_FN_WORKER";

static CONSUMED: AtomicBool = AtomicBool::new(false);
static PANIC_INFO: Mutex<Option<(String, String)>> = Mutex::new(None);

/// Whether this process is a worker started by `run_fn` (true until its `run_fn`
/// call has taken the worker role; nested launches then launch).
pub fn is_fn_worker() -> bool {
    std::env::var_os(FN_WORKER_ENV).is_some_and(|v| v == "1") && !CONSUMED.load(Ordering::SeqCst)
}

/// Takes the worker role (once per process).
pub(crate) fn take_worker_role() -> bool {
    is_fn_worker() && !CONSUMED.swap(true, Ordering::SeqCst)
}

fn fail(message: &str, traceback: &str) -> ! {
    eprintln!("tutti worker: {message}");
    if let Some(path) = std::env::var_os(ERROR_FILE_ENV).filter(|p| !p.is_empty())
        && let Err(e) = error_file::write(std::path::Path::new(&path), message, traceback)
    {
        eprintln!("tutti worker: could not write the error file: {e}");
    }
    std::process::exit(1)
}

/// Runs `f` as this worker and exits the process.
pub(crate) fn run_worker<R, E, F>(f: F) -> !
where
    R: Serialize,
    E: Display,
    F: FnOnce(WorkerContext) -> Result<R, E>,
{
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = match info.payload().downcast_ref::<&str>() {
            Some(s) => s.to_string(),
            None => info
                .payload()
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "Box<dyn Any>".into()),
        };
        let location = info
            .location()
            .map(|l| format!(" at {}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        let bt = std::backtrace::Backtrace::force_capture().to_string();
        *PANIC_INFO.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((format!("panicked{location}: {msg}"), bt));
        previous(info);
    }));
    let ctx = match WorkerContext::from_env() {
        Ok(c) => c,
        Err(e) => fail(&e.to_string(), ""),
    };
    let rank = ctx.rank;
    match catch_unwind(AssertUnwindSafe(|| f(ctx))) {
        Ok(Ok(value)) => {
            let Some(path) = std::env::var_os(RESULT_FILE_ENV) else {
                fail(&format!("rank {rank}: {RESULT_FILE_ENV} is not set"), "");
            };
            let json = match serde_json::to_vec(&value) {
                Ok(j) => j,
                Err(e) => fail(
                    &format!("rank {rank}: the return value does not serialize: {e}"),
                    "",
                ),
            };
            if let Err(e) = std::fs::write(&path, json) {
                fail(
                    &format!("rank {rank}: writing the return value to {path:?}: {e}"),
                    "",
                );
            }
            std::process::exit(0)
        }
        Ok(Err(e)) => fail(&format!("rank {rank}: entrypoint failed: {e}"), ""),
        Err(_) => {
            let (msg, bt) = PANIC_INFO
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .unwrap_or_else(|| ("panicked".into(), String::new()));
            fail(&format!("rank {rank}: entrypoint {msg}"), &bt)
        }
    }
}
