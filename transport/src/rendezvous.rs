//! [`Rendezvous`]: how two ranks exchange what they need to connect (socket
//! addresses, shared-memory segment names). `tutti` implements it for every Store.

use crate::Deadline;

/// A key-value exchange between the ranks of a job.
pub trait Rendezvous: Send + Sync {
    /// Publishes `value` under `key`.
    fn publish(&self, key: &str, value: &[u8]) -> Result<(), RendezvousError>;
    /// Waits until `key` exists (or the deadline passes) and returns its value.
    fn lookup(&self, key: &str, deadline: Deadline) -> Result<Vec<u8>, RendezvousError>;
}

/// Why a [`Rendezvous`] exchange failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RendezvousError {
    /// The key did not appear before the deadline (the peer never published it).
    #[error("rendezvous key {key:?} did not appear before the deadline")]
    Timeout {
        /// The key waited for.
        key: String,
    },
    /// The exchange was interrupted (the group was aborted).
    #[error("rendezvous on key {key:?} aborted")]
    Aborted {
        /// The key being exchanged.
        key: String,
    },
    /// The store behind the exchange failed; its typed error is the source.
    #[error("rendezvous store failed on key {key:?}: {source}")]
    Store {
        /// The key being exchanged.
        key: String,
        /// The store's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}
