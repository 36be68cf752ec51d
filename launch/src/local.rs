//! A job's ranks started as processes on this host, each with the environment a
//! worker of `tutti run` gets: `RANK`, `LOCAL_RANK`, `WORLD_SIZE`,
//! `LOCAL_WORLD_SIZE`, `MASTER_ADDR`/`MASTER_PORT` on loopback (a free port, rank 0
//! serves the store there) and a `TUTTI_JOB_TOKEN` of their own. `tutti-bench
//! --nranks N`, `tutti validate --nranks N` and the tests' rank processes start their
//! ranks this way; `tutti run` is the launcher for everything else (restarts, several
//! nodes, error files).
//!
//! ```no_run
//! use std::process::Command;
//! let exe = std::env::current_exe().unwrap();
//! let ranks = tutti_launch::local::spawn_local_ranks(2, "my-tool", |_rank| {
//!     let mut cmd = Command::new(&exe);
//!     cmd.arg("--as-rank");
//!     cmd
//! })
//! .unwrap();
//! for mut child in ranks {
//!     child.wait().unwrap();
//! }
//! ```

use std::io;
use std::process::{Child, Command};

/// Why [`spawn_local_ranks`] started no job.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// No TCP port on 127.0.0.1 could be bound for the rendezvous.
    #[error("no free TCP port on 127.0.0.1 for the rendezvous: {0}")]
    NoPort(#[source] io::Error),
    /// Rank `rank`'s process could not be started (the ranks started before it were
    /// killed and reaped).
    #[error("starting rank {rank}: {source}")]
    Start {
        /// The rank that did not start.
        rank: usize,
        /// What `spawn` said.
        #[source]
        source: io::Error,
    },
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound, then released).
pub fn free_loopback_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts `n` ranks: `command(rank)` gives each rank's command (program, arguments,
/// its own environment, stdio), to which the rank environment is added (a variable
/// the command sets itself, `MASTER_ADDR` say, is left as it is); the job token
/// is `<token_prefix>-<pid>-<nanoseconds>`. Returns the children in rank order. If
/// one cannot start, the ranks already started are killed and reaped, so that no
/// rank waits for a rendezvous that will not come.
pub fn spawn_local_ranks(
    n: usize,
    token_prefix: &str,
    mut command: impl FnMut(usize) -> Command,
) -> Result<Vec<Child>, SpawnError> {
    let port = free_loopback_port().map_err(SpawnError::NoPort)?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let token = format!("{token_prefix}-{}-{nanos}", std::process::id());
    let mut children: Vec<Child> = Vec::with_capacity(n);
    for rank in 0..n {
        let mut cmd = command(rank);
        let rank_env = [
            ("RANK", rank.to_string()),
            ("LOCAL_RANK", rank.to_string()),
            ("WORLD_SIZE", n.to_string()),
            ("LOCAL_WORLD_SIZE", n.to_string()),
            ("MASTER_ADDR", "127.0.0.1".to_string()),
            ("MASTER_PORT", port.to_string()),
            ("TUTTI_JOB_TOKEN", token.clone()),
        ];
        for (key, value) in rank_env {
            // What the caller's command sets itself wins (a store on another address).
            if !cmd.get_envs().any(|(k, _)| k == key) {
                cmd.env(key, value);
            }
        }
        // Under `tutti run` or torchrun, the ranks must not join the agent's store.
        cmd.env_remove("TORCHELASTIC_USE_AGENT_STORE");
        match cmd.spawn() {
            Ok(c) => children.push(c),
            Err(source) => {
                for mut c in children {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                return Err(SpawnError::Start { rank, source });
            }
        }
    }
    Ok(children)
}
