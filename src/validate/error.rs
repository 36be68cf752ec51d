//! [`ValidateError`]: why `tutti validate` could not run (exit code 2), as opposed
//! to a check that ran and failed (a FAIL row, exit code 1).

use std::path::PathBuf;

/// Errors that stop a validation run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ValidateError {
    /// A thresholds file could not be read.
    #[error("cannot read thresholds file {path}: {source}")]
    ThresholdsIo {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A thresholds file (or a shipped class) is not valid: names the file and what
    /// is wrong in it.
    #[error("thresholds {source_name}: {detail}")]
    Thresholds {
        /// Where the thresholds came from (a path, or `class h200`).
        source_name: String,
        /// What is wrong.
        detail: String,
    },

    /// A machine class that tutti does not ship.
    #[error("unknown machine class {0:?} (shipped classes: {names}; or none)", names = crate::validate::thresholds::builtin_names().join(", "))]
    UnknownClass(String),

    /// An option has a value outside its range.
    #[error("invalid option: {0}")]
    InvalidOption(String),

    /// The process group could not be created or used for the run's bookkeeping.
    #[error("process group: {0}")]
    Group(#[from] crate::Error),

    /// The store that carries the ranks' results failed.
    #[error("exchanging results through the store during {what}: {source}")]
    Store {
        /// Which step exchanged results.
        what: String,
        /// The store's error.
        #[source]
        source: crate::store::StoreError,
    },

    /// Ranks stopped reporting: they died or hang. Names them.
    #[error(
        "rank(s) {ranks:?} did not report their results of {what} within {timeout_s} s (dead or hung)"
    )]
    Unresponsive {
        /// Which step.
        what: String,
        /// The ranks that never reported.
        ranks: Vec<usize>,
        /// The time waited, in seconds.
        timeout_s: u64,
    },

    /// A rank's results could not be decoded (ranks running different tutti versions).
    #[error(
        "rank {rank} sent results of {what} that do not decode ({detail}); are all ranks running the same tutti?"
    )]
    Decode {
        /// Which step.
        what: String,
        /// The rank whose results were bad.
        rank: usize,
        /// The decoder's message.
        detail: String,
    },

    /// Writing the report failed.
    #[error("cannot write {path}: {source}")]
    Output {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}
