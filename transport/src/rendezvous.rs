//! [`Rendezvous`]: how two ranks exchange what they need to connect (socket
//! addresses, shared-memory segment names). `tutti` implements it for every Store.

use crate::Deadline;

/// A key-value exchange between the ranks of a job.
pub trait Rendezvous: Send + Sync {
    /// Publishes `value` under `key`.
    fn publish(&self, key: &str, value: &[u8]) -> Result<(), String>;
    /// Waits until `key` exists (or the deadline passes) and returns its value.
    fn lookup(&self, key: &str, deadline: Deadline) -> Result<Vec<u8>, String>;
}
