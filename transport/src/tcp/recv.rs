//! The receiving half: message `i` is the next frame of socket `i % sockets`, read
//! by the calling thread (see [`super::progress`]) and lent out of its slot.

use std::sync::Arc;

use super::progress::{Engine, Phase, RxShared, Waiting};
use crate::link::{Message, RecvHalf};
use crate::{Deadline, Result, TransportError};

pub(crate) struct TcpRecv {
    pub rx: Arc<RxShared>,
    pub engine: Arc<Engine>,
    /// Messages released so far.
    pub index: u64,
    pub sockets: u64,
    pub max_message: usize,
}

impl TcpRecv {
    /// Waits until the next message is complete; returns where it lies.
    fn wait_ready(&mut self, deadline: Deadline) -> Result<(*const u8, usize)> {
        let q = (self.index % self.sockets) as usize;
        let mut wait = Waiting::new(self.engine.budget);
        loop {
            let fd = {
                let mut g = self.rx.lock();
                let ib = &mut g[q];
                if !ib.ready() {
                    ib.pump(&self.rx.peer, true);
                }
                if ib.ready() {
                    return Ok(ib.front());
                }
                if ib.exhausted() {
                    return Err(ib.failure(&self.rx.peer));
                }
                let fd = ib.fd();
                // A socket of this link that broke (reset, corrupt frame) breaks the
                // link: say so now rather than wait for a message striped onto it.
                if let Some(bad) = g.iter().find(|ib| ib.failed()) {
                    return Err(bad.failure(&self.rx.peer));
                }
                fd
            };
            self.engine.check(&self.rx.peer, "recv", deadline)?;
            match wait.phase() {
                // Poll readiness without taking the socket's lock (a busy `recv`
                // takes it and contends with the kernel delivering the data).
                Phase::Spin => {
                    while !readable(fd) && wait.phase() == Phase::Spin {
                        if self.engine.abort.is_aborted() {
                            break;
                        }
                        std::hint::spin_loop();
                    }
                }
                Phase::Yield => std::thread::yield_now(),
                Phase::Sleep => self.engine.sleep(fd, libc::POLLIN, deadline),
            }
        }
    }
}

/// Whether `fd` has data (or a hang-up or error) to read, without blocking.
fn readable(fd: std::os::fd::RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd; `fd` is kept open by the link that asks.
    unsafe { libc::poll(&mut p, 1, 0) > 0 }
}

impl RecvHalf for TcpRecv {
    fn peer(&self) -> &str {
        &self.rx.peer
    }

    fn max_message(&self) -> usize {
        self.max_message
    }

    fn next(&mut self, deadline: Deadline) -> Result<Message<'_>> {
        let (ptr, len) = self.wait_ready(deadline)?;
        // SAFETY: `ptr..ptr + len` is the complete frame at the head of socket `q`'s
        // slot ring, inside memory owned by `self.rx` (kept alive by `self`). No
        // thread writes that slot until `release` advances the head, which needs
        // `&mut self` and so ends this borrow first.
        Ok(Message::Bytes(unsafe {
            std::slice::from_raw_parts(ptr, len)
        }))
    }

    fn release(&mut self) -> Result<()> {
        let q = (self.index % self.sockets) as usize;
        if !self.rx.lock()[q].release() {
            return Err(TransportError::InvalidArgument(format!(
                "release without a received message (peer {})",
                self.rx.peer
            )));
        }
        self.index += 1;
        Ok(())
    }
}
