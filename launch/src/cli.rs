//! `tutti run`: the command line of the launcher, with torchrun's flags (dashes or
//! underscores) and defaults.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::config::{LaunchConfig, NNodes, RdzvOptions, parse_seconds};
use super::slurm::{SlurmTask, job_port};
use super::{Launcher, exit_with_signal};
use crate::{LaunchError, Result};

/// The flags of `tutti run [flags] [--] PROGRAM [ARGS...]`.
///
/// Under `srun` (one `tutti run` per node: `SLURM_STEP_ID` and `SLURM_NODEID` set),
/// the flags left out default to the Slurm step's: `--nnodes` its node count,
/// `--node-rank` `SLURM_NODEID`, `--master-addr` its first host
/// (`SLURM_STEP_NODELIST`), `--master-port` `MASTER_PORT` or one derived from
/// `SLURM_JOB_ID`, `--rdzv-id` the job id.
#[derive(Args, Debug, Clone)]
#[command(about = "Launch workers on this host (torchrun-compatible)")]
pub struct RunArgs {
    /// Workers per node: a number, `cpu`/`auto` (one per CPU) or `gpu` (one per GPU).
    #[arg(long = "nproc-per-node", alias = "nproc_per_node", default_value = "1")]
    pub nproc_per_node: String,
    /// Number of nodes (launchers): N or MIN:MAX (elastic). Default 1 (under srun:
    /// the step's nodes).
    #[arg(long)]
    pub nnodes: Option<String>,
    /// This node's rank (static backend; a sort key otherwise). Default 0 (under
    /// srun: SLURM_NODEID).
    #[arg(long = "node-rank", alias = "node_rank")]
    pub node_rank: Option<usize>,
    /// Rendezvous backend: static, store (alias c10d) or etcd.
    #[arg(
        long = "rdzv-backend",
        alias = "rdzv_backend",
        default_value = "static"
    )]
    pub rdzv_backend: String,
    /// Rendezvous endpoint `HOST[:PORT]`.
    #[arg(long = "rdzv-endpoint", alias = "rdzv_endpoint", default_value = "")]
    pub rdzv_endpoint: String,
    /// The job's id, the same on every node. Default none (under srun: the Slurm
    /// job id).
    #[arg(long = "rdzv-id", alias = "rdzv_id")]
    pub rdzv_id: Option<String>,
    /// Rendezvous options key=value,...: join_timeout, last_call_timeout,
    /// keep_alive_interval, keep_alive_max_attempt, is_host.
    #[arg(long = "rdzv-conf", alias = "rdzv_conf", default_value = "")]
    pub rdzv_conf: String,
    /// Single-node job with a private rendezvous.
    #[arg(long)]
    pub standalone: bool,
    /// Static rendezvous host. Default 127.0.0.1 (under srun: the step's first
    /// host).
    #[arg(long = "master-addr", alias = "master_addr")]
    pub master_addr: Option<String>,
    /// Static rendezvous port. Default 29500 (under srun: MASTER_PORT, else derived
    /// from SLURM_JOB_ID).
    #[arg(long = "master-port", alias = "master_port")]
    pub master_port: Option<u16>,
    /// The address other nodes reach this one at.
    #[arg(long = "local-addr", alias = "local_addr")]
    pub local_addr: Option<String>,
    /// Restarts of the worker group after failures.
    #[arg(long = "max-restarts", alias = "max_restarts", default_value_t = 0)]
    pub max_restarts: u32,
    /// Seconds between checks of the workers.
    #[arg(
        long = "monitor-interval",
        alias = "monitor_interval",
        default_value = "0.1"
    )]
    pub monitor_interval: String,
    /// The workers' role.
    #[arg(long, default_value = "default")]
    pub role: String,
    /// Streams sent only to the log files: 0 none, 1 stdout, 2 stderr, 3 both, or
    /// LOCAL_RANK:VALUE,...
    #[arg(short = 'r', long, default_value = "0")]
    pub redirects: String,
    /// Streams sent to the log files and to the console, lines prefixed (same values
    /// as --redirects).
    #[arg(short = 't', long, default_value = "0")]
    pub tee: String,
    /// Directory of the logs and error files (default: a temporary one).
    #[arg(long = "log-dir", alias = "log_dir")]
    pub log_dir: Option<PathBuf>,
    /// Prefix of teed lines, with ${role_name}, ${rank} and ${local_rank}.
    #[arg(long = "log-line-prefix-template", alias = "log_line_prefix_template")]
    pub log_line_prefix_template: Option<String>,
    /// Seconds a finished node waits for the others (never an error).
    #[arg(long = "exit-barrier-timeout", default_value = "300")]
    pub exit_barrier_timeout: String,
    /// Seconds between SIGTERM and SIGKILL when stopping workers.
    #[arg(long = "stop-timeout", default_value = "30")]
    pub stop_timeout: String,
    /// Accepted for torchrun compatibility (workers are always new processes).
    #[arg(long = "start-method", alias = "start_method", default_value = "spawn")]
    pub start_method: String,
    /// Run PROGRAM directly even when it ends in `.py`.
    #[arg(long = "no-python", alias = "no_python")]
    pub no_python: bool,
    /// Which torch.distributed (c10d TCPStore protocol) clients the workers' store
    /// accepts: any (default), loopback (this host only) or deny. They cannot present
    /// the job token; tutti's own clients always must.
    #[arg(long = "c10d-store", alias = "c10d_store", default_value = "any")]
    pub c10d_store: String,
    /// PROGRAM is a Python module (`$PYTHON_EXEC -u -m PROGRAM`; python3 when
    /// PYTHON_EXEC is unset, as torchrun).
    #[arg(short = 'm', long = "module")]
    pub module: bool,
    /// The program each worker runs, and its arguments.
    #[arg(
        value_name = "PROGRAM",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<OsString>,
}

/// Counts the GPUs for `--nproc-per-node gpu`: the number of devices, or why there
/// is none. The `tutti` binary passes one that asks the CUDA driver.
pub type GpuCounter<'a> = &'a dyn Fn() -> std::result::Result<usize, String>;

fn nproc(value: &str, gpus: GpuCounter<'_>) -> Result<usize> {
    let v = value.trim().to_ascii_lowercase();
    let n = match v.as_str() {
        "cpu" | "auto" => std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1),
        "gpu" => match gpus() {
            Ok(n) if n > 0 => n,
            Ok(_) => {
                return Err(LaunchError::Config(
                    "--nproc-per-node gpu: no CUDA device found".into(),
                ));
            }
            Err(why) => {
                return Err(LaunchError::Config(format!(
                    "--nproc-per-node gpu: no CUDA device found ({why})"
                )));
            }
        },
        _ => v.parse().map_err(|_| {
            LaunchError::Config(format!(
                "--nproc-per-node {value:?} is not a number, cpu, auto or gpu"
            ))
        })?,
    };
    Ok(n)
}

impl RunArgs {
    /// The launch configuration, the program and its arguments; `gpus` counts the
    /// devices for `--nproc-per-node gpu`.
    pub fn into_config(
        self,
        gpus: GpuCounter<'_>,
    ) -> Result<(LaunchConfig, OsString, Vec<OsString>)> {
        let mut rdzv = RdzvOptions::default();
        rdzv.apply(&self.rdzv_conf)?;
        let slurm = if self.standalone {
            None
        } else {
            SlurmDefaults::from_env()?
        };
        let slurm = slurm.as_ref();
        let nnodes = match (&self.nnodes, slurm) {
            (Some(n), _) => n.parse()?,
            (None, Some(s)) => NNodes::fixed(s.nnodes),
            (None, None) => NNodes::fixed(1),
        };
        let cfg = LaunchConfig {
            nproc_per_node: nproc(&self.nproc_per_node, gpus)?,
            nnodes,
            node_rank: self.node_rank.or(slurm.map(|s| s.node_rank)).unwrap_or(0),
            rdzv_backend: self.rdzv_backend.parse()?,
            rdzv_endpoint: Some(self.rdzv_endpoint).filter(|e| !e.trim().is_empty()),
            run_id: self
                .rdzv_id
                .or(slurm.map(|s| s.run_id.clone()))
                .unwrap_or_else(|| "none".into()),
            rdzv,
            standalone: self.standalone,
            master_addr: self
                .master_addr
                .or(slurm.map(|s| s.master_addr.clone()))
                .unwrap_or_else(|| "127.0.0.1".into()),
            master_port: self
                .master_port
                .or(slurm.map(|s| s.master_port))
                .unwrap_or(29500),
            local_addr: self.local_addr,
            max_restarts: self.max_restarts,
            monitor_interval: parse_seconds("--monitor-interval", &self.monitor_interval)?,
            role: self.role,
            redirects: self.redirects.parse()?,
            tee: self.tee.parse()?,
            log_dir: self.log_dir,
            log_line_prefix_template: self.log_line_prefix_template,
            exit_barrier_timeout: parse_seconds(
                "--exit-barrier-timeout",
                &self.exit_barrier_timeout,
            )?,
            stop_timeout: parse_seconds("--stop-timeout", &self.stop_timeout)?,
            c10d_store: self.c10d_store.parse().map_err(|_| {
                LaunchError::Config(format!(
                    "--c10d-store {:?} is not one of any, loopback, deny",
                    self.c10d_store
                ))
            })?,
            ..LaunchConfig::default()
        };
        cfg.validate()?;
        let mut command = self.command.into_iter();
        let Some(program) = command.next() else {
            return Err(LaunchError::Config("no PROGRAM to run".into()));
        };
        let args: Vec<OsString> = command.collect();
        let is_py = program.to_string_lossy().ends_with(".py");
        let python = python_exec();
        Ok(if self.module {
            let mut a = vec!["-u".into(), "-m".into(), program];
            a.extend(args);
            (cfg, python.clone(), a)
        } else if is_py && !self.no_python {
            let mut a = vec!["-u".into(), program];
            a.extend(args);
            (cfg, python.clone(), a)
        } else {
            (cfg, program, args)
        })
    }
}

/// The defaults a Slurm step gives `tutti run` (one launcher per node, under srun).
#[derive(Debug, Clone, PartialEq, Eq)]
struct SlurmDefaults {
    nnodes: usize,
    node_rank: usize,
    master_addr: String,
    master_port: u16,
    run_id: String,
}

impl SlurmDefaults {
    /// `None` unless this is a task of a Slurm step (`SLURM_STEP_ID` set).
    fn from_env() -> Result<Option<Self>> {
        if std::env::var_os("SLURM_STEP_ID").is_none() {
            return Ok(None);
        }
        let Some(task) = SlurmTask::from_env()? else {
            return Ok(None);
        };
        if task.local_world_size != 1 {
            return Err(LaunchError::Config(format!(
                "under srun, tutti run must be the only task of its node, but SLURM_STEP_TASKS_PER_NODE gives node {} {} tasks (use srun --ntasks-per-node=1)",
                task.node_id, task.local_world_size
            )));
        }
        let master_addr = task.first_host().map(str::to_string).ok_or_else(|| {
            LaunchError::Config(
                "under srun: environment variable SLURM_STEP_NODELIST (or SLURM_JOB_NODELIST) is not set; pass --master-addr".into(),
            )
        })?;
        let master_port = match std::env::var("MASTER_PORT") {
            Ok(p) if !p.trim().is_empty() => p.trim().parse().map_err(|_| {
                LaunchError::Config(format!(
                    "environment variable MASTER_PORT={p:?} is not a port number"
                ))
            })?,
            _ => task.job_id.map_or(29500, job_port),
        };
        let defaults = SlurmDefaults {
            nnodes: task.nnodes,
            node_rank: task.node_id,
            master_addr,
            master_port,
            run_id: task
                .job_id
                .map_or_else(|| "none".to_string(), |j| format!("slurm-{j}")),
        };
        tracing::info!(
            ?defaults,
            "tutti run under srun: defaults from the Slurm step"
        );
        Ok(Some(defaults))
    }
}

/// The Python interpreter of `.py` programs and `-m`: `PYTHON_EXEC` (torchrun's
/// variable), else `python3`.
pub fn python_exec() -> OsString {
    std::env::var_os("PYTHON_EXEC")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".into())
}

/// Runs `tutti run`: returns the exit code (a failure report is printed on
/// stderr); when the launcher received a signal, ends the process with it.
pub fn run(args: RunArgs, gpus: GpuCounter<'_>) -> ExitCode {
    let (cfg, program, args) = match args.into_config(gpus) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("tutti run: {e}");
            return ExitCode::from(2);
        }
    };
    match Launcher::new(cfg).run_program(program, args) {
        Ok(_) => ExitCode::SUCCESS,
        Err(LaunchError::Signal { signal, .. }) => exit_with_signal(signal),
        Err(e @ LaunchError::WorkersFailed(_)) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("tutti run: {e}");
            ExitCode::from(1)
        }
    }
}
