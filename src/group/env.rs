//! Reading a rank's place in the job from the environment: torchrun's variables
//! first, then Slurm's, then Open MPI's.

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
    /// Host of the rendezvous store (`MASTER_ADDR`, default `127.0.0.1`).
    pub master_addr: String,
    /// Port of the rendezvous store (`MASTER_PORT`, default 29500).
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

impl JobEnv {
    /// Reads `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR`,
    /// `MASTER_PORT` (torchrun); else `SLURM_PROCID`, `SLURM_NTASKS`,
    /// `SLURM_LOCALID`, `SLURM_NTASKS_PER_NODE`; else `OMPI_COMM_WORLD_RANK`,
    /// `OMPI_COMM_WORLD_SIZE`, `OMPI_COMM_WORLD_LOCAL_RANK`,
    /// `OMPI_COMM_WORLD_LOCAL_SIZE`. Errors name the variable that is missing or bad.
    pub fn from_env() -> Result<JobEnv> {
        let sets: [(&'static str, [&str; 4]); 3] = [
            (
                "torchrun",
                ["RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"],
            ),
            (
                "slurm",
                [
                    "SLURM_PROCID",
                    "SLURM_NTASKS",
                    "SLURM_LOCALID",
                    "SLURM_NTASKS_PER_NODE",
                ],
            ),
            (
                "openmpi",
                [
                    "OMPI_COMM_WORLD_RANK",
                    "OMPI_COMM_WORLD_SIZE",
                    "OMPI_COMM_WORLD_LOCAL_RANK",
                    "OMPI_COMM_WORLD_LOCAL_SIZE",
                ],
            ),
        ];
        for (source, [r, w, lr, lw]) in sets {
            let (Some(rank), world) = (num(r)?, num(w)?) else {
                continue;
            };
            let world_size = world
                .ok_or_else(|| Error::InvalidArgument(format!("{r} is set but {w} is not")))?;
            if world_size == 0 || rank >= world_size {
                return Err(Error::InvalidArgument(format!(
                    "{r}={rank} is not a valid rank for {w}={world_size}"
                )));
            }
            let local_rank = num(lr)?.unwrap_or(rank);
            let local_world_size = num(lw)?.unwrap_or(world_size);
            let master_port = match var("MASTER_PORT") {
                None => DEFAULT_MASTER_PORT,
                Some(p) => p.trim().parse().map_err(|_| {
                    Error::InvalidArgument(format!(
                        "environment variable MASTER_PORT={p:?} is not a port number"
                    ))
                })?,
            };
            return Ok(JobEnv {
                rank,
                world_size,
                local_rank,
                local_world_size,
                master_addr: var("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".into()),
                master_port,
                source,
            });
        }
        Err(Error::InvalidArgument(
            "no rank in the environment: set RANK and WORLD_SIZE (torchrun), or run under Slurm (SLURM_PROCID) or Open MPI (OMPI_COMM_WORLD_RANK)".into(),
        ))
    }
}
