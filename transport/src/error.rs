//! Transport errors. Every error names the peer it concerns.

use std::time::Duration;

use crate::{ReduceError, RendezvousError};

/// Errors from links and their setup.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The peer went away: its process exited, or it closed or reset the connection.
    #[error("peer {peer} is gone during {op}: {detail}")]
    PeerGone {
        /// The peer (rank, host, pid).
        peer: String,
        /// What this side was doing.
        op: &'static str,
        /// How the loss was detected.
        detail: String,
    },

    /// A blocking wait passed its deadline.
    #[error("{op} with peer {peer} timed out after {waited:?}")]
    Timeout {
        /// The peer (rank, host, pid).
        peer: String,
        /// What this side was waiting for.
        op: &'static str,
        /// How long it waited.
        waited: Duration,
    },

    /// A frame failed its integrity check or broke the protocol.
    #[error("corrupted data from peer {peer}: {detail}")]
    Corrupt {
        /// The peer (rank, host, pid).
        peer: String,
        /// What was wrong.
        detail: String,
    },

    /// An operating-system call failed.
    #[error("{context} (peer {peer}): {source}")]
    Io {
        /// The peer (rank, host, pid), or the local endpoint during setup.
        peer: String,
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// Connection setup failed (rendezvous, handshake, mapping shared memory).
    #[error("link setup with peer {peer} failed: {detail}")]
    Setup {
        /// The peer (rank, host, pid).
        peer: String,
        /// What failed.
        detail: String,
    },

    /// The link was aborted locally (see [`AbortHandle`](crate::AbortHandle)).
    #[error("link with peer {peer} aborted during {op}")]
    Aborted {
        /// The peer (rank, host, pid).
        peer: String,
        /// What was interrupted.
        op: &'static str,
    },

    /// The reducer rejected the data (see [`ByteReducer`](crate::ByteReducer)).
    #[error("reduction of data from peer {peer} failed: {source}")]
    Reduce {
        /// The peer (rank, host, pid).
        peer: String,
        /// Why the reducer refused.
        #[source]
        source: ReduceError,
    },

    /// A FIFO or window geometry that cannot be used, or that differs between ranks.
    #[error("link setup with peer {peer} failed: {source}")]
    Geometry {
        /// The peer (rank, host, pid), or this rank for its own configuration.
        peer: String,
        /// What is wrong with it (boxed: rare, and keeps every error small).
        #[source]
        source: Box<GeometryError>,
    },

    /// The rendezvous exchange of connection details failed during setup.
    #[error("link setup with peer {peer} failed while {step}: {source}")]
    Rendezvous {
        /// The peer (rank, host, pid).
        peer: String,
        /// What was being exchanged.
        step: &'static str,
        /// Why it failed (boxed: it is rare, and keeps every error small).
        #[source]
        source: Box<RendezvousError>,
    },

    /// A call's arguments do not fit the link (a chunk larger than a slot, a receive
    /// buffer smaller than the message, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A point-to-point receive and the message matched to it disagree on the length
    /// (reported on both sides: the receive fails, and so does the send).
    #[error(
        "message with tag {tag} between this rank and peer {peer}: the receive expects {expected} bytes, the message has {actual}"
    )]
    Mismatch {
        /// The other rank.
        peer: String,
        /// The message's tag.
        tag: u32,
        /// The receive buffer's length.
        expected: usize,
        /// The message's length.
        actual: usize,
    },

    /// The transport is not available on this machine (no RDMA device, feature not
    /// built, ...).
    #[error("transport unavailable: {0}")]
    Unavailable(String),
}

/// `Result` with [`TransportError`].
pub type Result<T, E = TransportError> = std::result::Result<T, E>;

impl TransportError {
    /// True when the error means the peer is dead or unreachable (not a local bug).
    pub fn is_peer_failure(&self) -> bool {
        matches!(
            self,
            TransportError::PeerGone { .. }
                | TransportError::Timeout { .. }
                | TransportError::Corrupt { .. }
        )
    }

    pub(crate) fn io(peer: &str, context: impl Into<String>, source: std::io::Error) -> Self {
        TransportError::Io {
            peer: peer.to_string(),
            context: context.into(),
            source,
        }
    }
}

/// A FIFO or window geometry that cannot be used, or that differs between ranks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GeometryError {
    /// A size or count outside what the structure supports.
    #[error("{what} must be {rule}, got {got}")]
    OutOfRange {
        /// The setting (e.g. "window data size").
        what: &'static str,
        /// What it must be.
        rule: &'static str,
        /// What it was.
        got: u64,
    },
    /// A peer's segment is smaller than its header or geometry needs.
    #[error("segment of {len} bytes is too small for a {what} (needs {needed})")]
    TooSmall {
        /// "FIFO" or "window".
        what: &'static str,
        /// The segment's length.
        len: usize,
        /// The bytes it needs.
        needed: usize,
    },
    /// A peer's segment does not start with an initialised header.
    #[error("segment is not an initialised tutti {what} (bad magic)")]
    BadMagic {
        /// "FIFO" or "window".
        what: &'static str,
    },
    /// The ranks were configured differently.
    #[error("{what} geometry differs between ranks: peer {peer}, here {here} ({hint})")]
    Differs {
        /// Which geometry and the order of its fields.
        what: &'static str,
        /// The peer's values.
        peer: String,
        /// This rank's values.
        here: String,
        /// The settings that must agree.
        hint: &'static str,
    },
}
