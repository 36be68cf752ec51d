//! The launcher's error type.

use tutti_store::StoreError;

use crate::FailureReport;

/// Errors returned by the launcher.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    /// The launcher's configuration (a `tutti run` flag) is invalid; the message
    /// names the flag.
    #[error("invalid launch configuration: {0}")]
    Config(String),

    /// A value read from the environment (a worker's `RANK`, ...) is missing or
    /// malformed; the message names the variable.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// Launchers could not form (or keep) their rendezvous.
    #[error("rendezvous ({backend} backend) failed: {message}")]
    Rendezvous {
        /// The rendezvous backend.
        backend: &'static str,
        /// What went wrong.
        message: String,
    },

    /// A worker process could not be started.
    #[error("could not start worker program {program:?}: {source}")]
    WorkerSpawn {
        /// The program.
        program: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The launcher could not create its log directories or files.
    #[error("launcher I/O error: {context}: {source}")]
    Io {
        /// What the launcher was doing.
        context: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// Workers failed and no restarts remain; the report names the first failure
    /// (rank, local rank, exit code or signal, error-file message).
    #[error("{0}")]
    WorkersFailed(Box<FailureReport>),

    /// Another launcher of the job shut it down (its workers failed for good, or it
    /// was interrupted).
    #[error("the job was stopped by another launcher: {reason}")]
    Aborted {
        /// What the other launcher reported.
        reason: String,
    },

    /// The launcher received a signal, forwarded it to its workers and stopped them.
    #[error("the launcher received {name} (signal {signal}) and stopped its workers")]
    Signal {
        /// The signal number.
        signal: i32,
        /// Its name (`SIGTERM`).
        name: String,
    },

    /// A worker of a Rust entrypoint exited with 0 but its return value could not
    /// be read.
    #[error("worker rank {rank}: {message}")]
    WorkerResult {
        /// The worker's global rank.
        rank: usize,
        /// What was wrong.
        message: String,
    },

    /// A Slurm variable is missing or malformed (`tutti run` under `srun`).
    #[error(transparent)]
    Slurm(#[from] crate::slurm::SlurmEnvError),

    /// The rendezvous or workers' store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `Result` with [`LaunchError`].
pub type Result<T, E = LaunchError> = std::result::Result<T, E>;
