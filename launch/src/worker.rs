//! Starting, watching and stopping one launcher's group of worker processes.
//!
//! Every worker leads its own process group (signals reach the whole tree it
//! starts) and dies with SIGKILL if its launcher dies first.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

use super::config::LaunchConfig;
use super::env::{RoundInfo, worker_env};
use super::error_file::{self, unix_now};
use super::logs::{LogLayout, StreamPlan, join_pumps};
use super::report::{ExitKind, WorkerFailure};
use crate::{LaunchError, Result};

/// The environment variable naming the file a Rust entrypoint writes its return
/// value to.
pub const RESULT_FILE_ENV: &str = "TUTTI_LAUNCH_RESULT_FILE";

/// What every worker runs.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// The program.
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Its name in reports.
    pub display: String,
    /// Variables added for this kind of entrypoint.
    pub env: Vec<(OsString, OsString)>,
}

/// One running (or finished) worker.
#[derive(Debug)]
pub(crate) struct Worker {
    pub local_rank: usize,
    pub rank: usize,
    pub pid: u32,
    child: Child,
    pub exit: Option<ExitKind>,
    pub exit_time: u64,
    pub dir: PathBuf,
    pub error_file: PathBuf,
    pumps: Vec<JoinHandle<()>>,
    /// Whether the launcher signalled it (its exit then is no failure of its own).
    stopped: bool,
}

/// The state of a worker group after a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupState {
    /// Some workers still run, none failed.
    Running,
    /// Every worker exited with 0.
    Succeeded,
    /// At least one worker failed.
    Failed,
}

/// One launcher's workers in one round.
#[derive(Debug)]
pub(crate) struct WorkerGroup {
    pub workers: Vec<Worker>,
    pub restart_count: u32,
}

fn signal_of(sig: i32) -> Signal {
    Signal::from_named_raw(sig).unwrap_or(Signal::KILL)
}

fn spawn_one(
    cfg: &LaunchConfig,
    entry: &Entry,
    layout: &LogLayout,
    round: &RoundInfo<'_>,
    local_rank: usize,
) -> Result<Worker> {
    let rank = round.assignment.base_rank + local_rank;
    let dir = layout.worker_dir(round.restart_count, local_rank)?;
    let error_file = dir.join("error.json");
    let result_file = dir.join("result.json");
    let _ = std::fs::remove_file(&error_file);
    let _ = std::fs::remove_file(&result_file);
    let mut cmd = Command::new(&entry.program);
    cmd.args(&entry.args)
        .envs(worker_env(cfg, round, local_rank, &error_file))
        .envs(entry.env.iter().cloned())
        .env(RESULT_FILE_ENV, &result_file)
        .stdin(Stdio::null())
        .process_group(0);
    let plan = StreamPlan::new(cfg, &dir, rank, local_rank);
    plan.apply(&mut cmd)?;
    let parent = rustix::process::getpid();
    // SAFETY: the hook runs in the forked child before exec and only makes raw
    // system calls (prctl, getppid) that are async-signal-safe; it allocates nothing
    // (the error is built from a raw errno).
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
            if rustix::process::getppid() != Some(parent) {
                // The launcher died before the death signal was armed.
                return Err(std::io::Error::from_raw_os_error(3));
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|source| LaunchError::WorkerSpawn {
        program: entry.program.to_string_lossy().into_owned(),
        source,
    })?;
    let pumps = plan.start_pumps(&mut child)?;
    tracing::debug!(rank, local_rank, pid = child.id(), "worker started");
    Ok(Worker {
        local_rank,
        rank,
        pid: child.id(),
        child,
        exit: None,
        exit_time: 0,
        dir,
        error_file,
        pumps,
        stopped: false,
    })
}

impl WorkerGroup {
    /// Starts the `local_world_size` workers of this round.
    pub(crate) fn spawn(
        cfg: &LaunchConfig,
        entry: &Entry,
        layout: &LogLayout,
        round: &RoundInfo<'_>,
    ) -> Result<Self> {
        let mut group = WorkerGroup {
            workers: Vec::new(),
            restart_count: round.restart_count,
        };
        for local_rank in 0..round.assignment.local_world_size {
            match spawn_one(cfg, entry, layout, round, local_rank) {
                Ok(w) => group.workers.push(w),
                Err(e) => {
                    group.stop(libc_sigterm(), cfg.stop_timeout);
                    return Err(e);
                }
            }
        }
        Ok(group)
    }

    /// Reaps the workers that exited and says where the group stands.
    pub(crate) fn poll(&mut self) -> GroupState {
        for w in self.workers.iter_mut().filter(|w| w.exit.is_none()) {
            match w.child.try_wait() {
                Ok(Some(status)) => {
                    w.exit = Some(ExitKind::from_status(status));
                    w.exit_time = unix_now();
                    tracing::debug!(rank = w.rank, pid = w.pid, exit = %ExitKind::from_status(status), "worker exited");
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(rank = w.rank, "waiting for worker: {e}");
                    w.exit = Some(ExitKind::Code(-1));
                    w.exit_time = unix_now();
                }
            }
        }
        if self
            .workers
            .iter()
            .any(|w| !w.stopped && w.exit.is_some_and(|e| !e.success()))
        {
            GroupState::Failed
        } else if self.workers.iter().all(|w| w.exit.is_some()) {
            GroupState::Succeeded
        } else {
            GroupState::Running
        }
    }

    /// The workers that failed on their own (not stopped by the launcher).
    pub(crate) fn failures(
        &self,
        cfg: &LaunchConfig,
        program: &str,
        host: &str,
    ) -> Vec<WorkerFailure> {
        self.workers
            .iter()
            .filter(|w| !w.stopped)
            .filter_map(|w| {
                let exit = w.exit.filter(|e| !e.success())?;
                let error = error_file::read(&w.error_file);
                let timestamp = error
                    .as_ref()
                    .and_then(|e| e.timestamp)
                    .unwrap_or(w.exit_time);
                Some(WorkerFailure {
                    program: program.to_string(),
                    host: host.to_string(),
                    rank: w.rank,
                    local_rank: w.local_rank,
                    role: cfg.role.clone(),
                    pid: w.pid,
                    exit,
                    error_file: w.error_file.clone(),
                    error,
                    timestamp,
                    restart_count: self.restart_count,
                })
            })
            .collect()
    }

    /// Sends `sig` to every running worker's process group.
    pub(crate) fn signal(&mut self, sig: i32) {
        for w in self.workers.iter_mut().filter(|w| w.exit.is_none()) {
            w.stopped = true;
            if let Some(pid) = Pid::from_raw(w.pid as i32) {
                let _ = rustix::process::kill_process_group(pid, signal_of(sig));
            }
        }
    }

    /// Stops every running worker: `sig`, then SIGKILL after `grace`; reaps all.
    pub(crate) fn stop(&mut self, sig: i32, grace: Duration) {
        if self.workers.iter().any(|w| w.exit.is_none()) {
            tracing::info!(signal = %super::report::signal_name(sig), "stopping workers");
            self.signal(sig);
            let deadline = Instant::now() + grace;
            while self.workers.iter().any(|w| w.exit.is_none()) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
                self.poll();
            }
            if self.workers.iter().any(|w| w.exit.is_none()) {
                self.signal(Signal::KILL.as_raw());
                for w in self.workers.iter_mut().filter(|w| w.exit.is_none()) {
                    if let Ok(status) = w.child.wait() {
                        w.exit = Some(ExitKind::from_status(status));
                        w.exit_time = unix_now();
                    }
                }
            }
        }
        self.finish_logs();
    }

    /// Waits briefly for the log threads.
    pub(crate) fn finish_logs(&mut self) {
        let pumps: Vec<_> = self
            .workers
            .iter_mut()
            .flat_map(|w| std::mem::take(&mut w.pumps))
            .collect();
        join_pumps(pumps, Duration::from_secs(2));
    }
}

impl Drop for WorkerGroup {
    fn drop(&mut self) {
        if self.workers.iter().any(|w| w.exit.is_none()) {
            self.stop(Signal::KILL.as_raw(), Duration::ZERO);
        }
    }
}

/// SIGTERM's number.
pub(crate) fn libc_sigterm() -> i32 {
    Signal::TERM.as_raw()
}
