//! Named shared-memory segments in `/dev/shm`, and their cleanup.
//!
//! A segment is created by the consumer of a FIFO, mapped by the producer, and
//! unlinked by its creator as soon as the producer has mapped it: from then on it
//! lives exactly as long as the mappings, so no crash can leak it. A creator that
//! dies before its peer attached leaves a name behind; names carry the creator's
//! pid, and every link setup removes the segments of creators that no longer exist.

use std::os::fd::OwnedFd;

use rustix::fs::Mode;
use rustix::shm::OFlags;

/// Prefix of every tutti segment name.
pub(crate) const PREFIX: &str = "tutti-";

/// A unique segment name for a FIFO created by this process.
pub(crate) fn segment_name(job: &str, from: usize, to: usize) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let job: String = job
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(32)
        .collect();
    format!(
        "/{PREFIX}{}-{job}-{from}to{to}-{n}-{nanos:x}",
        std::process::id()
    )
}

/// Creates a zero-filled segment of `len` bytes (fails if the name exists).
pub(crate) fn create(name: &str, len: usize) -> std::io::Result<OwnedFd> {
    let fd = rustix::shm::open(
        name,
        OFlags::CREATE | OFlags::EXCL | OFlags::RDWR,
        Mode::RUSR | Mode::WUSR,
    )?;
    if let Err(e) = rustix::fs::ftruncate(&fd, len as u64) {
        let _ = rustix::shm::unlink(name);
        return Err(e.into());
    }
    Ok(fd)
}

/// Opens an existing segment read-write; returns it and its size.
pub(crate) fn open(name: &str) -> std::io::Result<(OwnedFd, usize)> {
    let fd = rustix::shm::open(name, OFlags::RDWR, Mode::empty())?;
    let len = rustix::fs::fstat(&fd)?.st_size as usize;
    Ok((fd, len))
}

/// Removes a segment name (the memory stays while mapped).
pub(crate) fn unlink(name: &str) {
    if let Err(e) = rustix::shm::unlink(name) {
        tracing::debug!(name, error = %e, "shm_unlink");
    }
}

/// Removes `/dev/shm/tutti-<pid>-*` segments whose creator process is gone.
/// Returns how many were removed.
pub fn sweep_stale_segments() -> usize {
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return 0;
    };
    let mut removed = 0;
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let alive = rustix::process::Pid::from_raw(pid).is_some_and(|p| {
            rustix::process::test_kill_process(p).is_ok()
                || std::path::Path::new(&format!("/proc/{pid}")).exists()
        });
        if !alive {
            unlink(&format!("/{name}"));
            tracing::info!(
                segment = name,
                pid,
                "removed a stale shared-memory segment of a dead process"
            );
            removed += 1;
        }
    }
    removed
}

/// Names of the tutti segments currently in `/dev/shm` (for tests and diagnostics).
pub fn list_segments() -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| n.starts_with(PREFIX))
                .collect()
        })
        .unwrap_or_default()
}

/// Unlinks a segment name when dropped (setup errors included).
pub(crate) struct UnlinkGuard(Option<String>);

impl UnlinkGuard {
    /// Guards `name`.
    pub(crate) fn new(name: String) -> Self {
        UnlinkGuard(Some(name))
    }
}

impl Drop for UnlinkGuard {
    fn drop(&mut self) {
        if let Some(name) = self.0.take() {
            unlink(&name);
        }
    }
}
