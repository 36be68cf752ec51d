//! The `tutti validate` command: options, starting local ranks (`--nranks`) or
//! running as one rank of a job, and printing the table and the JSON report.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use clap::Args;

use super::thresholds::{self, Thresholds};
use super::{
    CHECKS, Report, Requirement, ValidateError, ValidateOptions, Validator, metrics, render_table,
};
use crate::ProcessGroup;
use crate::group::{GroupOptions, JobEnv};
use crate::launch::local::spawn_local_ranks;

/// Set in the environment of the ranks `--nranks` starts.
pub const CHILD_ENV: &str = "TUTTI_VALIDATE_CHILD";

/// Exit code when validate itself could not run.
const CANNOT_RUN: u8 = 2;

/// `tutti validate` options.
#[derive(Args, Debug, Clone)]
#[command(
    after_help = "Exit codes: 0 every check passed or skipped, 1 a check failed, 2 validate could not run.\n\
Examples:\n  tutti validate --level 2 --nranks 4\n  tutti run --nproc-per-node 8 -- tutti validate --level 2 --json node.json\n  srun -N 16 --ntasks-per-node 8 tutti validate --level 3 --class h200"
)]
pub struct ValidateArgs {
    /// 1: inventory and configuration (seconds); 2: bandwidth and correctness (about
    /// a minute); 3: soak and the link matrix between nodes (minutes).
    #[arg(short, long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=3))]
    pub level: u8,
    /// Start N ranks on this host (default without a job environment: one per GPU,
    /// else min(4, CPUs), at least 2). Without it, under tutti run / torchrun /
    /// Slurm / mpirun, this process is one rank of the job.
    #[arg(short = 'n', long)]
    pub nranks: Option<usize>,
    /// Thresholds file (format tutti-validate-thresholds/1, see --print-thresholds).
    #[arg(long, value_name = "FILE", conflicts_with = "class")]
    pub thresholds: Option<PathBuf>,
    /// A shipped machine class: h100, h200, a100, or none (relative rules and
    /// built-in minimums only). Default: the class matching the GPUs NVML reports,
    /// else none.
    #[arg(long, value_name = "NAME")]
    pub class: Option<String>,
    /// Fraction of the peers' median below which a rank, pair, link or GPU fails
    /// (default: the thresholds' value, else 0.75).
    #[arg(long, value_name = "F")]
    pub relative: Option<f64>,
    /// Hardware that must be present: gpu, rdma (repeatable or comma-separated);
    /// its checks fail instead of skipping.
    #[arg(long, value_name = "WHAT", value_delimiter = ',')]
    pub require: Vec<String>,
    /// Write the JSON report (schema tutti-validate/1) to FILE (`-`: stdout, the
    /// table then goes to stderr).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Run only these checks (ids or prefixes such as gpu, collectives.all_reduce;
    /// repeatable or comma-separated; see --list-checks).
    #[arg(long = "check", value_name = "ID", value_delimiter = ',')]
    pub checks: Vec<String>,
    /// Soak duration in seconds (level 3).
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub soak: f64,
    /// Seconds a rank waits for the others (per step, and per collective) before
    /// naming them unresponsive.
    #[arg(long, value_name = "SECS", default_value_t = 120.0)]
    pub timeout: f64,
    /// No progress line on the terminal.
    #[arg(short, long)]
    pub quiet: bool,
    /// List the checks and exit.
    #[arg(long)]
    pub list_checks: bool,
    /// List the metrics (thresholds keys) and exit.
    #[arg(long)]
    pub list_metrics: bool,
    /// Print a shipped thresholds file (a template) and exit.
    #[arg(long, value_name = "CLASS")]
    pub print_thresholds: Option<String>,
}

fn secs(what: &str, v: f64) -> Result<Duration, ValidateError> {
    if v.is_finite() && v > 0.0 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(ValidateError::InvalidOption(format!(
            "{what} {v}: expected a positive number of seconds"
        )))
    }
}

impl ValidateArgs {
    /// The options these arguments describe (reads the thresholds file).
    pub fn options(&self) -> Result<ValidateOptions, ValidateError> {
        let thresholds = match (&self.thresholds, &self.class) {
            (Some(path), _) => Some(Thresholds::load(path)?),
            (None, Some(class)) if class.trim().eq_ignore_ascii_case("none") => {
                Some(Thresholds::relative(thresholds::DEFAULT_FRACTION))
            }
            (None, Some(class)) => Some(Thresholds::builtin(class)?),
            (None, None) => None,
        };
        let require = self
            .require
            .iter()
            .filter(|r| !r.trim().is_empty())
            .map(|r| r.parse::<Requirement>())
            .collect::<Result<Vec<_>, _>>()?;
        let opts = ValidateOptions {
            level: self.level,
            thresholds,
            relative_fraction: self.relative,
            require,
            checks: self
                .checks
                .iter()
                .filter(|c| !c.trim().is_empty())
                .cloned()
                .collect(),
            soak: secs("--soak", self.soak)?,
            timeout: secs("--timeout", self.timeout)?,
            progress: !self.quiet,
        };
        opts.check()?;
        Ok(opts)
    }
}

fn cannot_run(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("tutti validate: error: {e}");
    ExitCode::from(CANNOT_RUN)
}

/// `tutti validate ARGS`.
pub fn main(args: ValidateArgs) -> ExitCode {
    if args.list_checks {
        for c in CHECKS {
            println!("{:<28} level {}  {}", c.id, c.level, c.title);
        }
        return ExitCode::SUCCESS;
    }
    if args.list_metrics {
        for m in metrics::METRICS {
            let unit = if m.unit.is_empty() {
                String::new()
            } else {
                format!(" [{}]", m.unit)
            };
            println!("{:<32} {}{unit}", m.name, m.about);
        }
        return ExitCode::SUCCESS;
    }
    if let Some(class) = &args.print_thresholds {
        return match thresholds::builtin_text(class) {
            Some(t) => {
                print!("{t}");
                ExitCode::SUCCESS
            }
            None => cannot_run(ValidateError::UnknownClass(class.clone())),
        };
    }
    let opts = match args.options() {
        Ok(o) => o,
        Err(e) => return cannot_run(e),
    };
    if let Some(dir) = args
        .json
        .as_deref()
        .filter(|p| p.as_os_str() != "-")
        .and_then(std::path::Path::parent)
        .filter(|d| !d.as_os_str().is_empty() && !d.is_dir())
    {
        return cannot_run(format!(
            "--json: directory {} does not exist",
            dir.display()
        ));
    }
    let child = std::env::var_os(CHILD_ENV).is_some();
    if child || (args.nranks.is_none() && JobEnv::from_env().is_ok()) {
        return worker(&args, opts);
    }
    let n = args.nranks.unwrap_or_else(default_nranks);
    if n == 0 {
        return cannot_run("--nranks must be at least 1");
    }
    spawn(n)
}

/// One rank per GPU, else min(4, CPUs) and at least 2.
fn default_nranks() -> usize {
    match crate::gpu::device_count() {
        Ok(n) if n > 0 => n,
        _ => std::thread::available_parallelism()
            .map_or(2, |c| c.get())
            .clamp(2, 4),
    }
}

fn worker(args: &ValidateArgs, opts: ValidateOptions) -> ExitCode {
    let pg = match GroupOptions::from_env().and_then(ProcessGroup::from_env) {
        Ok(pg) => pg,
        Err(e) => return cannot_run(format!("cannot join the job's process group: {e}")),
    };
    let validator = match Validator::new(opts) {
        Ok(v) => v,
        Err(e) => return cannot_run(e),
    };
    let report = match validator.run(&pg) {
        Ok(r) => r,
        Err(e) => return cannot_run(e),
    };
    let printed = if pg.rank() == 0 {
        output(args, &report)
    } else {
        Ok(())
    };
    leave(pg, validator.options().timeout);
    match printed {
        Ok(()) => ExitCode::from(report.exit_code),
        Err(e) => cannot_run(e),
    }
}

/// Waits (in the store) until every rank is done, then leaves without closing the
/// group: closing it one rank after another makes the progress engines of the ranks
/// still open warn that a peer left. The process exits right after, and the
/// shared-memory segments were unlinked when they were mapped, so nothing is left.
/// Rank 0, which may serve the store, leaves last.
fn leave(pg: ProcessGroup, timeout: Duration) {
    let (store, rank, size) = (pg.store().clone(), pg.rank(), pg.size());
    let base = format!("{}/validate-exit", pg.name());
    let mut x = super::exchange::Exchange::new(store.clone(), base.clone(), rank, size, timeout);
    let gone = |r: usize| format!("{base}/gone/{r}");
    let left = x.all_gather("exit", &()).and_then(|_| {
        let err = |source| ValidateError::Store {
            what: "exit".into(),
            source,
        };
        if rank == 0 {
            let keys: Vec<String> = (1..size).map(gone).collect();
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            store.wait(&refs, Some(timeout)).map_err(err)
        } else {
            store.set(&gone(rank), b"1").map_err(err)
        }
    });
    if let Err(e) = left {
        tracing::debug!(error = %e, "validate: ranks did not all finish together");
    }
    std::mem::forget(pg);
}

/// Rank 0: the table (stdout, or stderr when the JSON goes to stdout) and the JSON.
fn output(args: &ValidateArgs, report: &Report) -> Result<(), ValidateError> {
    let table = render_table(report);
    let json_stdout = args.json.as_ref().is_some_and(|p| p.as_os_str() == "-");
    if json_stdout {
        eprint!("{table}");
        println!("{}", report.to_json());
    } else {
        print!("{table}");
        let _ = std::io::stdout().flush();
        if let Some(path) = &args.json {
            std::fs::write(path, report.to_json() + "\n").map_err(|source| {
                ValidateError::Output {
                    path: path.clone(),
                    source,
                }
            })?;
            println!("JSON report: {}", path.display());
        }
    }
    Ok(())
}

/// Starts `n` ranks of this command on this host and returns rank 0's exit code
/// (2 when a rank could not start or was killed).
fn spawn(n: usize) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            return cannot_run(format!(
                "cannot find this executable to start the ranks: {e}"
            ));
        }
    };
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let children = match spawn_local_ranks(n, "tutti-validate", |_| {
        let mut cmd = Command::new(&exe);
        cmd.args(&args).env(CHILD_ENV, "1");
        cmd
    }) {
        Ok(c) => c,
        Err(e) => return cannot_run(e),
    };
    let mut codes = Vec::with_capacity(n);
    for (r, mut c) in children.into_iter().enumerate() {
        match c.wait() {
            Ok(s) => codes.push(s.code()),
            Err(e) => {
                eprintln!("tutti validate: waiting for rank {r}: {e}");
                codes.push(None);
            }
        }
    }
    for (r, code) in codes.iter().enumerate() {
        match code {
            Some(0 | 1) => {}
            Some(c) => eprintln!("tutti validate: rank {r} exited with code {c}"),
            None => eprintln!("tutti validate: rank {r} was killed by a signal"),
        }
    }
    match codes.first().copied().flatten() {
        Some(c @ (0 | 1)) if codes.iter().all(|k| matches!(k, Some(0 | 1))) => {
            ExitCode::from(c as u8)
        }
        Some(c @ 1) => ExitCode::from(c as u8),
        _ => ExitCode::from(CANNOT_RUN),
    }
}
