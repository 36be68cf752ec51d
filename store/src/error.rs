//! The store's error type.

use std::time::Duration;

/// Errors returned by the stores and the rendezvous utilities.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A store operation that waits for keys (get, wait, multi_get) ran past its
    /// timeout. Names every key waited for, those still missing, and the time waited.
    #[error(
        "store timeout after {waited:?} waiting for keys {keys:?} (still missing: {missing:?})"
    )]
    Timeout {
        /// The keys the call waited for.
        keys: Vec<String>,
        /// The keys that did not exist when the timeout expired.
        missing: Vec<String>,
        /// How long the call waited.
        waited: Duration,
    },

    /// A store barrier ran past its timeout. On rank 0 `missing_ranks` lists the ranks
    /// that never reached the barrier (at most 16 probed misses); the other ranks
    /// carry `None` and point at rank 0's error for the list.
    #[error(
        "Timed out waiting on barrier on rank {rank}, for key prefix: {prefix} (world_size={world_size}, missing_ranks={missing}, timeout={timeout:?})",
        missing = crate::format_missing_ranks(.missing_ranks.as_deref())
    )]
    BarrierTimeout {
        /// The rank that raised the error.
        rank: usize,
        /// The barrier's key prefix.
        prefix: String,
        /// The number of ranks the barrier waited for.
        world_size: usize,
        /// The ranks that never checked in (rank 0 only).
        missing_ranks: Option<Vec<usize>>,
        /// The barrier's timeout.
        timeout: Duration,
    },

    /// The store server refused this client's job token (or handshake).
    #[error(
        "store server {addr} refused the connection: {message} (check TUTTI_JOB_TOKEN or the token passed to the store)"
    )]
    Auth {
        /// The server's address.
        addr: String,
        /// The server's reason.
        message: String,
    },

    /// A peer of the store sent bytes that do not follow the store's wire protocol.
    #[error("store protocol error with {peer}: {message}")]
    Protocol {
        /// The other end of the connection.
        peer: String,
        /// What was wrong with its bytes.
        message: String,
    },

    /// An I/O error while talking to (or serving, or reading the file of) a store.
    #[error("store I/O error: {context}: {source}")]
    Io {
        /// What the store was doing.
        context: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The store refused a request (for example `add` on a value that is not a
    /// decimal integer, or a key or value over the size limits).
    #[error("store {op} on key {key:?} failed: {message}")]
    Request {
        /// The operation (set, add, ...).
        op: &'static str,
        /// The key it was applied to.
        key: String,
        /// Why it was refused.
        message: String,
    },

    /// The store's backend (etcd) returned an error.
    #[error("store backend error: {context}: {message}")]
    Backend {
        /// What the store was doing.
        context: String,
        /// The backend's message.
        message: String,
    },

    /// A parameter is out of its valid range (mismatched multi_set slices, a world
    /// size of zero, an oversized token, ...). The message names it.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// `Result` with [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
