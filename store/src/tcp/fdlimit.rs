//! Raising the open-file limit, for servers (and tests) with thousands of sockets.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

use crate::{Result, StoreError};

/// Raises this process's soft limit on open file descriptors (`RLIMIT_NOFILE`) to its
/// hard limit and returns the new soft limit (`u64::MAX` if unlimited).
///
/// The TCP store server holds one descriptor per client; the default soft limit
/// (often 1024) is too low for thousands of ranks.
pub fn raise_fd_limit() -> Result<u64> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return Ok(limit.current.unwrap_or(u64::MAX));
    }
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    setrlimit(Resource::Nofile, raised).map_err(|e| StoreError::Io {
        context: format!(
            "raising RLIMIT_NOFILE from {:?} to {:?}",
            limit.current, limit.maximum
        ),
        source: e.into(),
    })?;
    Ok(limit.maximum.unwrap_or(u64::MAX))
}
