//! Single-copy reads from another process's memory with `process_vm_readv` (Linux
//! cross-memory attach): the large-message path of shared-memory links.

use std::sync::Arc;

use crate::link::RemoteRead;
use crate::{Result, TransportError};

/// A buffer in the peer process, readable with `process_vm_readv`.
pub(crate) struct CmaRead {
    pub pid: i32,
    pub addr: u64,
    pub len: usize,
    pub peer: Arc<str>,
}

impl CmaRead {
    /// Reads the whole payload into `out` (`out.len()` bytes from the start).
    pub(crate) fn read_all(&self, out: &mut [u8]) -> Result<()> {
        RemoteRead::read(self, 0, out)
    }
}

impl RemoteRead for CmaRead {
    fn len(&self) -> usize {
        self.len
    }

    fn read(&self, offset: usize, out: &mut [u8]) -> Result<()> {
        if offset
            .checked_add(out.len())
            .is_none_or(|end| end > self.len)
        {
            return Err(TransportError::InvalidArgument(format!(
                "single-copy read of {} bytes at offset {offset} is outside the peer's {}-byte message",
                out.len(),
                self.len
            )));
        }
        let mut done = 0;
        while done < out.len() {
            let n = read_once(
                self.pid,
                self.addr + (offset + done) as u64,
                &mut out[done..],
            )
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ESRCH) => TransportError::PeerGone {
                    peer: self.peer.to_string(),
                    op: "single-copy read",
                    detail: format!("process {} no longer exists", self.pid),
                },
                _ => TransportError::io(&self.peer, "process_vm_readv from the peer", e),
            })?;
            if n == 0 {
                return Err(TransportError::PeerGone {
                    peer: self.peer.to_string(),
                    op: "single-copy read",
                    detail: "process_vm_readv read nothing (the peer's buffer went away)".into(),
                });
            }
            done += n;
        }
        Ok(())
    }
}

/// One `process_vm_readv` call: copies up to `out.len()` bytes from `addr` in
/// process `pid`.
pub(crate) fn read_once(pid: i32, addr: u64, out: &mut [u8]) -> std::io::Result<usize> {
    let local = libc::iovec {
        iov_base: out.as_mut_ptr().cast(),
        iov_len: out.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: out.len(),
    };
    // SAFETY: `local` describes `out`, which we own mutably for the call; the kernel
    // validates `remote` against the other process's address space and never
    // touches ours outside `local`.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// A word whose value and address a producer publishes so that its consumer can
/// check, once at setup, that it may read this process's memory.
pub(crate) static PROBE: u64 = 0x7475_7474_695f_636d;

/// True when this process can read `PROBE` at `addr` in process `pid`.
pub(crate) fn probe(pid: i32, addr: u64) -> bool {
    let mut buf = [0u8; 8];
    matches!(read_once(pid, addr, &mut buf), Ok(8)) && u64::from_ne_bytes(buf) == PROBE
}
