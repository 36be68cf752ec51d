//! `tutti validate`: accept or reject a node (and a set of nodes), and name the part
//! that is bad.
//!
//! A [`Validator`] runs on every rank of a [`ProcessGroup`] (under `tutti run`,
//! torchrun, Slurm or mpirun, or local ranks started by `tutti validate --nranks
//! N`) and returns the same [`Report`] on every rank. Checks come in levels:
//!
//! | level | time | checks |
//! |---|---|---|
//! | 1 | seconds | `host.inventory` (CPU, cores, memory, NUMA), `host.limits` (/dev/shm, locked memory, open files, ptrace scope), `host.network` (interfaces, MTU, speed), `host.consistency` (nodes agree), `gpu.inventory` (NVML: model, driver, ECC mode and errors, retired pages, remapped rows, persistence, clocks, throttling, PCIe link), `rdma.devices` |
//! | 2 | about a minute | `memory.bandwidth` (per rank), `shm.pairs` (latency and bandwidth of every pair of ranks on a node), `collectives.*` (every collective on every dtype, checked element by element, naming the rank whose data arrived wrong), `all_reduce.busbw` (at its plateau), `gpu.copy` (host<->device, device memory), `gpu.p2p` (every GPU pair), `gpu.kernels` (reduction kernels against the CPU), `gpu.all_reduce` |
//! | 3 | minutes | `soak` (checked collectives for `--soak` seconds), `links.pairs` (latency and bandwidth of every pair of nodes, in rounds so each node is in one pair at a time) |
//!
//! Each measurement is judged against the [`Thresholds`] (a file, a shipped machine
//! class, or built-in minimums) and, for per-rank, per-pair, per-link and per-GPU
//! metrics, against the median of its peers: below `fraction x median` (default
//! 0.75) fails, and the report names the part ("link node3<->node5: 1.1 GB/s, 0.21x
//! the median of 28 pairs (5.2 GB/s)"). A pair measured below the rule is measured
//! again before it is condemned, so one scheduling hiccup does not fail a node.
//!
//! Results travel between ranks through the job's store, not through the data path
//! under test. Checks that need hardware the machine lacks (GPU, RDMA) skip with the
//! reason, or fail with [`Requirement`]s. The command's exit code is 0 when every
//! check passed or skipped, 1 when one failed, 2 when validate could not run.

pub mod checks;
mod cli;
mod error;
mod exchange;
pub mod judge;
pub mod metrics;
mod progress;
pub mod report;
mod runner;
mod table;
pub mod thresholds;
pub mod topology;

use std::time::Duration;

pub use cli::{ValidateArgs, main as cli_main};
pub use error::ValidateError;
pub use report::{CheckResult, Culprit, Measurement, Report, Status, Subject};
pub use runner::{CHECKS, CheckInfo};
pub use table::render as render_table;
pub use thresholds::Thresholds;

use crate::ProcessGroup;

/// Hardware whose absence fails the run instead of skipping its checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// NVIDIA GPUs (NVML and the CUDA driver).
    Gpu,
    /// RDMA devices with an active port.
    Rdma,
}

impl Requirement {
    /// `gpu`, `rdma`.
    pub fn name(self) -> &'static str {
        match self {
            Requirement::Gpu => "gpu",
            Requirement::Rdma => "rdma",
        }
    }
}

impl std::str::FromStr for Requirement {
    type Err = ValidateError;
    fn from_str(s: &str) -> Result<Self, ValidateError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "gpu" | "cuda" => Ok(Requirement::Gpu),
            "rdma" | "ib" => Ok(Requirement::Rdma),
            other => Err(ValidateError::InvalidOption(format!(
                "--require {other:?}: expected gpu or rdma"
            ))),
        }
    }
}

/// What a validation run does.
#[derive(Clone, Debug)]
pub struct ValidateOptions {
    /// 1, 2 or 3 (each level includes the lower ones).
    pub level: u8,
    /// Bounds to apply; `None`: the shipped class matching the GPUs, else only the
    /// relative rule and the built-in minimums.
    pub thresholds: Option<Thresholds>,
    /// Overrides the thresholds' relative fraction.
    pub relative_fraction: Option<f64>,
    /// Hardware that must be present.
    pub require: Vec<Requirement>,
    /// Only the checks whose ids start with one of these (empty: all).
    pub checks: Vec<String>,
    /// Duration of the level-3 soak.
    pub soak: Duration,
    /// How long a rank waits for the others (per step) before naming them
    /// unresponsive; also the timeout of every collective the checks run.
    pub timeout: Duration,
    /// Rank 0 shows progress on stderr when it is a terminal.
    pub progress: bool,
}

impl Default for ValidateOptions {
    fn default() -> Self {
        ValidateOptions {
            level: 1,
            thresholds: None,
            relative_fraction: None,
            require: Vec::new(),
            checks: Vec::new(),
            soak: Duration::from_secs(60),
            timeout: Duration::from_secs(120),
            progress: false,
        }
    }
}

impl ValidateOptions {
    /// Checks the options (level, fraction, check names).
    pub fn check(&self) -> Result<(), ValidateError> {
        if !(1..=3).contains(&self.level) {
            return Err(ValidateError::InvalidOption(format!(
                "--level {}: expected 1, 2 or 3",
                self.level
            )));
        }
        if let Some(f) = self.relative_fraction {
            thresholds::check_fraction(f)
                .map_err(|e| ValidateError::InvalidOption(format!("--relative {e}")))?;
        }
        for c in &self.checks {
            if !CHECKS.iter().any(|k| runner::selects(c, k.id)) {
                let ids: Vec<&str> = CHECKS.iter().map(|k| k.id).collect();
                return Err(ValidateError::InvalidOption(format!(
                    "--check {c:?} names no check (checks: {})",
                    ids.join(", ")
                )));
            }
        }
        if self.timeout.is_zero() {
            return Err(ValidateError::InvalidOption(
                "--timeout must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// Runs the checks of a [`ValidateOptions`] over a process group.
#[derive(Clone, Debug)]
pub struct Validator {
    opts: ValidateOptions,
}

impl Validator {
    /// A validator with `opts` (checked: a bad option is an error here).
    pub fn new(opts: ValidateOptions) -> Result<Self, ValidateError> {
        opts.check()?;
        Ok(Validator { opts })
    }

    /// The options.
    pub fn options(&self) -> &ValidateOptions {
        &self.opts
    }

    /// Runs every selected check; collective over `pg` (every rank calls it) and
    /// returns the same report on every rank. A check that fails is in the report;
    /// an `Err` means validation itself could not run.
    pub fn run(&self, pg: &ProcessGroup) -> Result<Report, ValidateError> {
        runner::run(pg, &self.opts)
    }
}
