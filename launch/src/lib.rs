//! The launcher: `tutti run` and its library API, compatible with torchrun.
//!
//! A launcher (one per host) starts `--nproc-per-node` worker processes with
//! torchrun's environment (`RANK`, `LOCAL_RANK`, `WORLD_SIZE`, `MASTER_ADDR`, ...,
//! see [`WORKER_ENV_VARS`]) plus `TUTTI_JOB_TOKEN`, so that
//! `tutti::ProcessGroup::from_env` finds its store without
//! further setup. It watches them; when one fails it stops the others (SIGTERM, then
//! SIGKILL after [`LaunchConfig::stop_timeout`]) and, while restarts remain, starts
//! the group again with `TORCHELASTIC_RESTART_COUNT` incremented; otherwise it
//! reports the first failure ([`FailureReport`]) and fails.
//!
//! Launchers on several hosts meet through a rendezvous ([`RdzvBackend`]): static
//! (node ranks given), store (a TCP store served by the launcher on the endpoint's
//! host) or etcd. With `--nnodes MIN:MAX` membership is elastic: a round starts once
//! MIN launchers joined and the join window closed, and when a launcher dies the
//! survivors (at least MIN) form a new round and restart their workers.
//!
//! A failure restart increments the job-wide restart count (the same on every
//! launcher); a membership change (a launcher joining or dying) starts a new round
//! without counting as a restart.
//!
//! The workers of each round rendezvous through a fresh TCP store served by the
//! round's first launcher (`MASTER_ADDR:MASTER_PORT`,
//! `TORCHELASTIC_USE_AGENT_STORE=True`), so nothing from an earlier attempt leaks
//! into the next; `--master-addr/--master-port` name the static backend's
//! rendezvous between launchers.
//!
//! ```no_run
//! use tutti_launch::{LaunchConfig, Launcher};
//!
//! // Four processes of this program, each returning its rank times two.
//! let out = Launcher::new(LaunchConfig::standalone(4))
//!     .run_fn(|ctx| Ok::<_, String>(ctx.rank * 2))
//!     .unwrap();
//! assert_eq!(out.ranks.values().sum::<usize>(), 12);
//! ```

mod agent;
pub mod assign;
pub mod cli;
pub mod config;
mod entry;
pub mod env;
mod error;
pub mod error_file;
pub mod local;
mod logs;
mod rendezvous;
pub mod report;
mod signals;
pub mod slurm;
mod worker;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt::Display;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use config::{LaunchConfig, NNodes, RdzvBackend, RdzvOptions, Std, StdSpec};
pub use entry::{FN_WORKER_ENV, is_fn_worker};
pub use env::{WORKER_ENV_VARS, WorkerContext, WorkerStore};
pub use error::{LaunchError, Result};
pub use logs::DEFAULT_PREFIX_TEMPLATE;
pub use report::{ExitKind, FailureReport, WorkerFailure};
pub use signals::exit_with_signal;
pub use worker::RESULT_FILE_ENV;

/// What a successful launch returns: one value per worker of this launcher.
#[derive(Clone, Debug)]
pub struct LaunchOutcome<T> {
    /// The job's id.
    pub run_id: String,
    /// This launcher's rank among the launchers of the final round.
    pub group_rank: usize,
    /// The number of launchers in the final round.
    pub group_world_size: usize,
    /// The number of workers in the final round.
    pub world_size: usize,
    /// Restarts after failures before the final round.
    pub restart_count: u32,
    /// Per worker of this launcher, by global rank: its return value (Rust
    /// entrypoint) or how it exited (program).
    pub ranks: BTreeMap<usize, T>,
}

/// How a program worker ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerExit {
    /// Its local rank.
    pub local_rank: usize,
    /// Its process id.
    pub pid: u32,
    /// Its exit.
    pub exit: ExitKind,
}

/// Runs a job's workers on this host (see the [module docs](self)).
#[derive(Clone, Debug)]
pub struct Launcher {
    config: LaunchConfig,
    fn_args: Option<Vec<OsString>>,
}

impl Launcher {
    /// A launcher with `config`.
    pub fn new(config: LaunchConfig) -> Self {
        Launcher {
            config,
            fn_args: None,
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &LaunchConfig {
        &self.config
    }

    /// The arguments [`run_fn`](Self::run_fn) re-executes this program with
    /// (default: this process's own arguments). A test harness, for example, passes
    /// `[test_name, "--exact"]`.
    #[must_use]
    pub fn fn_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.fn_args = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// Runs `program args...` as every worker. Succeeds when every worker of the
    /// final round exited with 0; otherwise [`LaunchError::WorkersFailed`] carries the
    /// report of the first failure.
    pub fn run_program<I, S>(
        &self,
        program: impl AsRef<OsStr>,
        args: I,
    ) -> Result<LaunchOutcome<WorkerExit>>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let program = program.as_ref().to_os_string();
        let entry = worker::Entry {
            display: std::path::Path::new(&program)
                .file_name()
                .unwrap_or(&program)
                .to_string_lossy()
                .into_owned(),
            program,
            args: args.into_iter().map(Into::into).collect(),
            env: Vec::new(),
        };
        let done = agent::run(&self.config, &entry)?;
        let ranks = done
            .group
            .workers
            .iter()
            .map(|w| {
                (
                    w.rank,
                    WorkerExit {
                        local_rank: w.local_rank,
                        pid: w.pid,
                        exit: w.exit.unwrap_or(ExitKind::Code(0)),
                    },
                )
            })
            .collect();
        done.layout.remove_temp();
        Ok(self.outcome(&done, ranks))
    }

    /// Runs the closure `f` as every worker, in processes that re-execute this
    /// program (see [`fn_args`](Self::fn_args)), and returns each worker's value.
    ///
    /// In a worker process (started by this call, [`is_fn_worker`]) the same call
    /// runs `f` with the worker's [`WorkerContext`] instead of launching, writes its
    /// value for the launcher and exits the process; the program must therefore
    /// reach this call in the same way in its workers. A worker whose `f` returns an
    /// error or panics writes a torchelastic error file with the message (and the
    /// backtrace) and exits with 1.
    pub fn run_fn<R, E, F>(&self, f: F) -> Result<LaunchOutcome<R>>
    where
        R: Serialize + DeserializeOwned,
        E: Display,
        F: FnOnce(WorkerContext) -> std::result::Result<R, E>,
    {
        if entry::take_worker_role() {
            entry::run_worker(f);
        }
        let exe = std::env::current_exe().map_err(|source| LaunchError::Io {
            context: "finding the current executable to re-execute".into(),
            source,
        })?;
        let args = self
            .fn_args
            .clone()
            .unwrap_or_else(|| std::env::args_os().skip(1).collect());
        let entry = worker::Entry {
            display: exe
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| exe.display().to_string()),
            program: exe.into_os_string(),
            args,
            env: vec![(FN_WORKER_ENV.into(), "1".into())],
        };
        let done = agent::run(&self.config, &entry)?;
        let mut ranks = BTreeMap::new();
        for w in &done.group.workers {
            let path = w.dir.join("result.json");
            let bytes = std::fs::read(&path).map_err(|e| LaunchError::WorkerResult {
                rank: w.rank,
                message: format!(
                    "exited with 0 but left no return value at {} ({e}); did the re-executed program reach Launcher::run_fn?",
                    path.display()
                ),
            })?;
            let value = serde_json::from_slice(&bytes).map_err(|e| LaunchError::WorkerResult {
                rank: w.rank,
                message: format!("its return value does not parse: {e}"),
            })?;
            ranks.insert(w.rank, value);
        }
        done.layout.remove_temp();
        Ok(self.outcome(&done, ranks))
    }

    fn outcome<T>(&self, done: &agent::Finished, ranks: BTreeMap<usize, T>) -> LaunchOutcome<T> {
        LaunchOutcome {
            run_id: self.config.run_id.clone(),
            group_rank: done.round.assignment.group_rank,
            group_world_size: done.round.assignment.group_world_size,
            world_size: done.round.assignment.world_size,
            restart_count: done.round.restart_count,
            ranks,
        }
    }
}
