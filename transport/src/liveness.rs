//! [`Liveness`]: how a rank notices that a peer process on its host died (a pidfd,
//! readable once the process exits), shared by the shared-memory links and windows.

use std::os::fd::OwnedFd;

use crate::{Result, TransportError};

/// How an endpoint learns that its peer died.
pub(crate) enum Liveness {
    /// Threads of one process: endpoints dropped during unwinding mark the FIFO
    /// closed, nothing else to watch.
    SameProcess,
    /// A pidfd of the peer process: readable once it exits.
    Process { pid: i32, pidfd: Option<OwnedFd> },
}

impl Liveness {
    pub(crate) fn check(&self, peer: &str, op: &'static str) -> Result<()> {
        let Liveness::Process { pid, pidfd } = self else {
            return Ok(());
        };
        let dead = match pidfd {
            Some(fd) => {
                let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
                matches!(rustix::event::poll(&mut fds, Some(&rustix::time::Timespec::default())), Ok(n) if n > 0)
            }
            // No pidfd (old kernel): signal 0 tells whether the pid exists.
            None => rustix::process::Pid::from_raw(*pid)
                .is_some_and(|p| rustix::process::test_kill_process(p).is_err()),
        };
        if dead {
            return Err(TransportError::PeerGone {
                peer: peer.to_string(),
                op,
                detail: format!("process {pid} exited"),
            });
        }
        Ok(())
    }
}

/// Liveness of process `pid`, through a pidfd when the kernel has them.
pub(crate) fn of_process(pid: i32) -> Liveness {
    let pidfd = rustix::process::Pid::from_raw(pid)
        .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok());
    Liveness::Process { pid, pidfd }
}
