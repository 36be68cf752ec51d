//! Worker identities: [`WorkerInfo`] and the ways to name a worker ([`WorkerRef`]).

use std::fmt;

/// A worker of the job: its unique name and its rank (torch's `WorkerInfo`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WorkerInfo {
    /// The name given to `init_rpc`.
    pub name: String,
    /// The rank (torch calls it `id`).
    pub id: usize,
}

impl fmt::Display for WorkerInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (rank {})", self.name, self.id)
    }
}

/// A worker named by name or by rank: what `to` parameters take (`"worker1"`, `1`,
/// `&WorkerInfo`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerRef<'a> {
    /// By name.
    Name(&'a str),
    /// By rank.
    Rank(usize),
}

impl<'a> From<&'a str> for WorkerRef<'a> {
    fn from(s: &'a str) -> Self {
        WorkerRef::Name(s)
    }
}

impl<'a> From<&'a String> for WorkerRef<'a> {
    fn from(s: &'a String) -> Self {
        WorkerRef::Name(s)
    }
}

impl From<usize> for WorkerRef<'_> {
    fn from(r: usize) -> Self {
        WorkerRef::Rank(r)
    }
}

impl<'a> From<&'a WorkerInfo> for WorkerRef<'a> {
    fn from(w: &'a WorkerInfo) -> Self {
        WorkerRef::Rank(w.id)
    }
}

impl fmt::Display for WorkerRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkerRef::Name(n) => write!(f, "{n:?}"),
            WorkerRef::Rank(r) => write!(f, "rank {r}"),
        }
    }
}

/// Checks a worker name: 1 to 128 characters of `[A-Za-z0-9_.:-]` (torch's rule,
/// with `.` added).
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err(format!(
            "worker name {name:?} must be 1 to 128 characters long (got {})",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '.')))
    {
        return Err(format!(
            "worker name {name:?} contains {c:?}; names use letters, digits, '_', '-', ':' and '.'"
        ));
    }
    Ok(())
}
