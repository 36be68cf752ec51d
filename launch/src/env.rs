//! The environment of a worker (torchrun's variables plus tutti's) and
//! [`WorkerContext`], its reading from inside the worker.

use std::ffi::OsString;
use std::path::Path;

use super::assign::NodeAssignment;
use super::config::LaunchConfig;
use super::error_file::ERROR_FILE_ENV;
use crate::{LaunchError, Result};

/// The variables every worker gets (besides the launcher's own environment).
pub const WORKER_ENV_VARS: &[&str] = &[
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "GROUP_WORLD_SIZE",
    "ROLE_RANK",
    "ROLE_NAME",
    "ROLE_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "TORCHELASTIC_RESTART_COUNT",
    "TORCHELASTIC_MAX_RESTARTS",
    "TORCHELASTIC_RUN_ID",
    "TORCHELASTIC_USE_AGENT_STORE",
    ERROR_FILE_ENV,
    "TUTTI_JOB_TOKEN",
];

/// The store the workers of a round rendezvous through, served by the round's
/// first launcher.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkerStore {
    /// Its host (`MASTER_ADDR`).
    pub addr: String,
    /// Its port (`MASTER_PORT`).
    pub port: u16,
    /// The job token its clients present (`TUTTI_JOB_TOKEN`).
    pub token: String,
}

/// Everything that differs between the workers of one launcher in one round.
pub(crate) struct RoundInfo<'a> {
    pub assignment: &'a NodeAssignment,
    pub restart_count: u32,
    pub store: &'a WorkerStore,
}

/// The variables of worker `local_rank`.
pub(crate) fn worker_env(
    cfg: &LaunchConfig,
    round: &RoundInfo<'_>,
    local_rank: usize,
    error_file: &Path,
) -> Vec<(OsString, OsString)> {
    let a = round.assignment;
    let pairs: Vec<(&str, String)> = vec![
        ("RANK", (a.base_rank + local_rank).to_string()),
        ("LOCAL_RANK", local_rank.to_string()),
        ("WORLD_SIZE", a.world_size.to_string()),
        ("LOCAL_WORLD_SIZE", a.local_world_size.to_string()),
        ("GROUP_RANK", a.group_rank.to_string()),
        ("GROUP_WORLD_SIZE", a.group_world_size.to_string()),
        ("ROLE_RANK", (a.role_base_rank + local_rank).to_string()),
        ("ROLE_NAME", cfg.role.clone()),
        ("ROLE_WORLD_SIZE", a.role_world_size.to_string()),
        ("MASTER_ADDR", round.store.addr.clone()),
        ("MASTER_PORT", round.store.port.to_string()),
        (
            "TORCHELASTIC_RESTART_COUNT",
            round.restart_count.to_string(),
        ),
        ("TORCHELASTIC_MAX_RESTARTS", cfg.max_restarts.to_string()),
        ("TORCHELASTIC_RUN_ID", cfg.run_id.clone()),
        ("TORCHELASTIC_USE_AGENT_STORE", "True".into()),
        (ERROR_FILE_ENV, error_file.display().to_string()),
        ("TUTTI_JOB_TOKEN", round.store.token.clone()),
    ];
    let mut env: Vec<(OsString, OsString)> = pairs
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    if a.local_world_size > 1 && std::env::var_os("OMP_NUM_THREADS").is_none() {
        env.push(("OMP_NUM_THREADS".into(), "1".into()));
    }
    env.extend(cfg.env.iter().cloned());
    env
}

/// A worker's place in the job, as its launcher described it in the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerContext {
    /// Global rank (`RANK`).
    pub rank: usize,
    /// Rank on this launcher (`LOCAL_RANK`).
    pub local_rank: usize,
    /// Number of workers in the job (`WORLD_SIZE`).
    pub world_size: usize,
    /// Number of workers of this launcher (`LOCAL_WORLD_SIZE`).
    pub local_world_size: usize,
    /// Rank of this launcher (`GROUP_RANK`).
    pub group_rank: usize,
    /// Number of launchers (`GROUP_WORLD_SIZE`).
    pub group_world_size: usize,
    /// Rank among the workers of this role (`ROLE_RANK`).
    pub role_rank: usize,
    /// Number of workers of this role (`ROLE_WORLD_SIZE`).
    pub role_world_size: usize,
    /// This worker's role (`ROLE_NAME`).
    pub role_name: String,
    /// Restarts of the worker group so far (`TORCHELASTIC_RESTART_COUNT`).
    pub restart_count: u32,
    /// Restarts allowed (`TORCHELASTIC_MAX_RESTARTS`).
    pub max_restarts: u32,
    /// The job's id (`TORCHELASTIC_RUN_ID`).
    pub run_id: String,
    /// Host of the workers' store (`MASTER_ADDR`).
    pub master_addr: String,
    /// Port of the workers' store (`MASTER_PORT`).
    pub master_port: u16,
}

fn var(name: &str) -> Result<String> {
    std::env::var(name).map_err(|_| {
        LaunchError::InvalidArgument(format!(
            "environment variable {name} is not set (is this process a worker of `tutti run`?)"
        ))
    })
}

fn num<T: std::str::FromStr>(name: &str) -> Result<T> {
    let v = var(name)?;
    v.trim().parse().map_err(|_| {
        LaunchError::InvalidArgument(format!("environment variable {name}={v:?} is not a number"))
    })
}

impl WorkerContext {
    /// Reads the variables a launcher sets (see [`WORKER_ENV_VARS`]).
    pub fn from_env() -> Result<Self> {
        Ok(WorkerContext {
            rank: num("RANK")?,
            local_rank: num("LOCAL_RANK")?,
            world_size: num("WORLD_SIZE")?,
            local_world_size: num("LOCAL_WORLD_SIZE")?,
            group_rank: num("GROUP_RANK")?,
            group_world_size: num("GROUP_WORLD_SIZE")?,
            role_rank: num("ROLE_RANK")?,
            role_world_size: num("ROLE_WORLD_SIZE")?,
            role_name: var("ROLE_NAME")?,
            restart_count: num("TORCHELASTIC_RESTART_COUNT")?,
            max_restarts: num("TORCHELASTIC_MAX_RESTARTS")?,
            run_id: var("TORCHELASTIC_RUN_ID")?,
            master_addr: var("MASTER_ADDR")?,
            master_port: num("MASTER_PORT")?,
        })
    }
}
