//! Reading a rank's place in the job from the environment: torchrun's variables
//! first, then Slurm's, then Open MPI's.

use tutti_launch::slurm::{SlurmTask, job_port};

use crate::{Error, Result};

/// Where this process sits in the job, as its launcher described it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobEnv {
    /// Global rank.
    pub rank: usize,
    /// Number of ranks.
    pub world_size: usize,
    /// Rank among the processes on this host.
    pub local_rank: usize,
    /// Number of processes on this host.
    pub local_world_size: usize,
    /// Host of the rendezvous store (`MASTER_ADDR`; under Slurm the step's first
    /// host; else `127.0.0.1`).
    pub master_addr: String,
    /// Port of the rendezvous store (`MASTER_PORT`; under Slurm and Open MPI one
    /// derived from the job id, see [`job_port`]; else 29500).
    pub master_port: u16,
    /// Which launcher's variables were read (`torchrun`, `slurm`, `openmpi`).
    pub source: &'static str,
}

/// torchrun's default `MASTER_PORT`.
pub const DEFAULT_MASTER_PORT: u16 = 29500;

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn num(name: &str) -> Result<Option<usize>> {
    match var(name) {
        None => Ok(None),
        Some(v) => v.trim().parse::<usize>().map(Some).map_err(|_| {
            Error::InvalidArgument(format!(
                "environment variable {name}={v:?} is not a non-negative integer"
            ))
        }),
    }
}

/// `MASTER_PORT` if set, else `derived`.
fn master_port(derived: u16) -> Result<u16> {
    match var("MASTER_PORT") {
        None => Ok(derived),
        Some(p) => p.trim().parse().map_err(|_| {
            Error::InvalidArgument(format!(
                "environment variable MASTER_PORT={p:?} is not a port number"
            ))
        }),
    }
}

fn check_rank(r: &str, rank: usize, w: &str, world_size: usize) -> Result<()> {
    if world_size == 0 || rank >= world_size {
        return Err(Error::InvalidArgument(format!(
            "{r}={rank} is not a valid rank for {w}={world_size}"
        )));
    }
    Ok(())
}

impl JobEnv {
    /// Reads, in this order of precedence:
    /// - torchrun's `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`,
    ///   `MASTER_ADDR`, `MASTER_PORT`;
    /// - Slurm's `SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`, tasks per node
    ///   (`SLURM_STEP_TASKS_PER_NODE` with `SLURM_NODEID`, forms like `2(x3),1`), the
    ///   rendezvous host from `MASTER_ADDR` or the first host of
    ///   `SLURM_STEP_NODELIST`/`SLURM_JOB_NODELIST` (hostlists like
    ///   `node[01-04,07]`), the port from `MASTER_PORT` or `SLURM_JOB_ID`;
    /// - Open MPI's `OMPI_COMM_WORLD_RANK`, `OMPI_COMM_WORLD_SIZE`,
    ///   `OMPI_COMM_WORLD_LOCAL_RANK`, `OMPI_COMM_WORLD_LOCAL_SIZE`; the host from
    ///   `MASTER_ADDR` (needed when the job spans hosts; loopback on one host), the
    ///   port from `MASTER_PORT` or Open MPI's job id.
    ///
    /// Errors name the variable that is missing, malformed or inconsistent.
    pub fn from_env() -> Result<JobEnv> {
        if let Some(env) = Self::torchrun()? {
            return Ok(env);
        }
        if let Some(env) = Self::slurm()? {
            return Ok(env);
        }
        if let Some(env) = Self::openmpi()? {
            return Ok(env);
        }
        Err(Error::InvalidArgument(
            "no rank in the environment: set RANK and WORLD_SIZE (torchrun), or run under Slurm (SLURM_PROCID) or Open MPI (OMPI_COMM_WORLD_RANK)".into(),
        ))
    }

    fn torchrun() -> Result<Option<JobEnv>> {
        let Some(rank) = num("RANK")? else {
            return Ok(None);
        };
        let world_size = num("WORLD_SIZE")?
            .ok_or_else(|| Error::InvalidArgument("RANK is set but WORLD_SIZE is not".into()))?;
        check_rank("RANK", rank, "WORLD_SIZE", world_size)?;
        Ok(Some(JobEnv {
            rank,
            world_size,
            local_rank: num("LOCAL_RANK")?.unwrap_or(rank),
            local_world_size: num("LOCAL_WORLD_SIZE")?.unwrap_or(world_size),
            master_addr: var("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".into()),
            master_port: master_port(DEFAULT_MASTER_PORT)?,
            source: "torchrun",
        }))
    }

    fn slurm() -> Result<Option<JobEnv>> {
        let Some(task) =
            SlurmTask::from_env().map_err(|e| Error::InvalidArgument(e.to_string()))?
        else {
            return Ok(None);
        };
        let master_addr = match (var("MASTER_ADDR"), task.first_host()) {
            (Some(a), _) => a,
            (None, Some(h)) => h.to_string(),
            (None, None) if task.nnodes == 1 => "127.0.0.1".into(),
            (None, None) => {
                return Err(Error::InvalidArgument(format!(
                    "environment variable SLURM_STEP_NODELIST (or SLURM_JOB_NODELIST, or MASTER_ADDR) is not set, and the Slurm step spans {} nodes",
                    task.nnodes
                )));
            }
        };
        Ok(Some(JobEnv {
            rank: task.rank,
            world_size: task.world_size,
            local_rank: task.local_rank,
            local_world_size: task.local_world_size,
            master_addr,
            master_port: master_port(task.job_id.map_or(DEFAULT_MASTER_PORT, job_port))?,
            source: "slurm",
        }))
    }

    fn openmpi() -> Result<Option<JobEnv>> {
        let (r, w) = ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE");
        let (lr, lw) = ("OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE");
        let Some(rank) = num(r)? else {
            return Ok(None);
        };
        let need = |name: &'static str| {
            move || Error::InvalidArgument(format!("{r} is set but {name} is not"))
        };
        let world_size = num(w)?.ok_or_else(need(w))?;
        check_rank(r, rank, w, world_size)?;
        let local_rank = num(lr)?.ok_or_else(need(lr))?;
        let local_world_size = num(lw)?.ok_or_else(need(lw))?;
        check_rank(lr, local_rank, lw, local_world_size)?;
        let master_addr = match var("MASTER_ADDR") {
            Some(a) => a,
            None if local_world_size == world_size => "127.0.0.1".into(),
            None => {
                return Err(Error::InvalidArgument(format!(
                    "environment variable MASTER_ADDR is not set, and the Open MPI job spans hosts ({lw}={local_world_size} < {w}={world_size}): set it to rank 0's host"
                )));
            }
        };
        let job_id = var("OMPI_MCA_ess_base_jobid").and_then(|j| j.trim().parse::<u64>().ok());
        Ok(Some(JobEnv {
            rank,
            world_size,
            local_rank,
            local_world_size,
            master_addr,
            master_port: master_port(job_id.map_or(DEFAULT_MASTER_PORT, job_port))?,
            source: "openmpi",
        }))
    }
}
