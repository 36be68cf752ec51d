//! The two ends of a FIFO as link halves: [`Producer`] (a [`SendHalf`]) and
//! [`Consumer`] (a [`RecvHalf`]), for ranks in different processes (shared futex
//! words, liveness through a pidfd) or threads of one process.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::cma::CmaRead;
use super::fifo::{Fifo, KIND_INLINE, KIND_REMOTE};
use crate::link::{Injected, Message, RecvHalf, SendHalf};
pub(crate) use crate::liveness::Liveness;
use crate::wait::{AbortHandle, WaitCtx, WaitPolicy, wait_until};
use crate::{Deadline, Result, TransportError};

fn closed(peer: &str, op: &'static str) -> TransportError {
    TransportError::PeerGone {
        peer: peer.to_string(),
        op,
        detail: "the peer closed the link".into(),
    }
}

/// The sending end of a FIFO.
pub(crate) struct Producer {
    pub(crate) fifo: Fifo,
    pub(crate) peer: Arc<str>,
    pub(crate) policy: WaitPolicy,
    pub(crate) abort: AbortHandle,
    pub(crate) shared: bool,
    pub(crate) liveness: Liveness,
    /// Messages published so far (our copy of the shared `tail`).
    pub(crate) tail: u64,
    /// Last `head` seen.
    pub(crate) head_seen: u64,
    pub(crate) reserved: Option<usize>,
    /// Messages from this size go single-copy (when the consumer can read us).
    pub(crate) single_copy_from: Option<usize>,
    /// Fault injection: corrupt the next committed message.
    pub(crate) corrupt_next: bool,
    /// Fault injection: the link was cut; nothing more is published.
    pub(crate) cut: bool,
}

impl Producer {
    /// Waits until fewer than `max_in_flight` published messages are unreleased.
    fn wait_space(
        &mut self,
        max_in_flight: u64,
        deadline: Deadline,
        op: &'static str,
    ) -> Result<()> {
        if self.tail - self.head_seen < max_in_flight {
            return Ok(());
        }
        let fifo = &self.fifo;
        let tail = self.tail;
        let head_seen = &mut self.head_seen;
        let hdr = fifo.header();
        let ctx = WaitCtx {
            policy: self.policy,
            deadline,
            abort: &self.abort,
            peer: &self.peer,
            op,
        };
        let liveness = &self.liveness;
        wait_until(
            &fifo.space_words(self.shared),
            &ctx,
            || {
                *head_seen = fifo.head().load(Ordering::Acquire);
                tail - *head_seen < max_in_flight
                    || hdr.consumer_closed.load(Ordering::Relaxed) != 0
            },
            || liveness.check(&self.peer, op),
        )?;
        if self.tail - self.head_seen >= max_in_flight {
            return Err(closed(&self.peer, op));
        }
        Ok(())
    }

    fn publish(&mut self) {
        self.tail += 1;
        self.fifo.tail().store(self.tail, Ordering::Release);
        self.fifo.data_words(self.shared).notify();
    }
}

impl SendHalf for Producer {
    fn peer(&self) -> &str {
        &self.peer
    }

    fn max_message(&self) -> usize {
        self.fifo.slot_size()
    }

    fn reserve(&mut self, len: usize, deadline: Deadline) -> Result<&mut [u8]> {
        if len > self.fifo.slot_size() {
            return Err(TransportError::InvalidArgument(format!(
                "message of {len} bytes exceeds the link's slot size {} (peer {})",
                self.fifo.slot_size(),
                self.peer
            )));
        }
        self.wait_space(
            self.fifo.slots(),
            deadline,
            "send (waiting for a free slot)",
        )?;
        self.reserved = Some(len);
        let ptr = self.fifo.slot_ptr(self.tail);
        // SAFETY: slot `tail % slots` is free (the consumer released it: tail - head
        // < slots), so only this producer touches it until it is published; it is
        // `slot_size >= len` bytes inside the region, which self.fifo keeps alive,
        // and the returned borrow of self prevents publishing while it is in use.
        Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
    }

    fn commit(&mut self) -> Result<()> {
        let Some(len) = self.reserved.take() else {
            return Err(TransportError::InvalidArgument(format!(
                "commit without a reserved message (peer {})",
                self.peer
            )));
        };
        if self.cut {
            return Err(closed(&self.peer, "send (the link was cut)"));
        }
        let meta = self.fifo.meta(self.tail);
        meta.len.store(len as u64, Ordering::Relaxed);
        meta.kind.store(KIND_INLINE, Ordering::Relaxed);
        if self.fifo.checksum() {
            // SAFETY: the slot is still ours (not yet published) and holds `len`
            // initialised bytes written through `reserve`'s slice.
            let data = unsafe { std::slice::from_raw_parts(self.fifo.slot_ptr(self.tail), len) };
            meta.crc.store(crc32fast::hash(data), Ordering::Relaxed);
        }
        if std::mem::take(&mut self.corrupt_next) && len > 0 {
            // SAFETY: as above: the unpublished slot holds `len` bytes we own.
            unsafe { *self.fifo.slot_ptr(self.tail) ^= 0x5a };
        }
        self.publish();
        Ok(())
    }

    fn single_copy_threshold(&self) -> Option<usize> {
        self.single_copy_from
    }

    /// The FIFO's slots; 1 with the single-copy path on (such a send returns only
    /// once the peer has read it).
    fn depth(&self) -> usize {
        if self.single_copy_from.is_some() {
            1
        } else {
            self.fifo.slots() as usize
        }
    }

    fn send_single_copy(&mut self, data: &[u8], deadline: Deadline) -> Result<bool> {
        let readable = self.fifo.header().single_copy.load(Ordering::Acquire) == 1;
        if self.single_copy_from.is_none() || self.reserved.is_some() || !readable {
            return Ok(false);
        }
        self.wait_space(
            self.fifo.slots(),
            deadline,
            "send (waiting for a free slot)",
        )?;
        let meta = self.fifo.meta(self.tail);
        meta.len.store(data.len() as u64, Ordering::Relaxed);
        meta.kind.store(KIND_REMOTE, Ordering::Relaxed);
        meta.remote_addr
            .store(data.as_ptr() as u64, Ordering::Relaxed);
        self.publish();
        // `data` must stay valid until the consumer has read it: wait for it to
        // release this message (no message of ours left in flight).
        self.wait_space(
            1,
            deadline,
            "single-copy send (waiting for the peer to read)",
        )?;
        Ok(true)
    }

    fn inject(&mut self, fault: Injected) -> bool {
        match fault {
            Injected::CorruptNext => self.corrupt_next = true,
            Injected::DropNext => return false,
            Injected::Cut => {
                self.cut = true;
                self.fifo
                    .header()
                    .producer_closed
                    .store(1, Ordering::Release);
                self.fifo.data_words(self.shared).notify();
            }
        }
        true
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.fifo
            .header()
            .producer_closed
            .store(1, Ordering::Release);
        self.fifo.data_words(self.shared).notify();
    }
}

/// The receiving end of a FIFO.
pub(crate) struct Consumer {
    pub(crate) fifo: Fifo,
    pub(crate) peer: Arc<str>,
    pub(crate) policy: WaitPolicy,
    pub(crate) abort: AbortHandle,
    pub(crate) shared: bool,
    pub(crate) liveness: Liveness,
    /// Messages released so far (our copy of the shared `head`).
    pub(crate) head: u64,
    /// Last `tail` seen.
    pub(crate) tail_seen: u64,
    /// The current remote message, if `next` returned one.
    pub(crate) remote: Option<CmaRead>,
}

impl RecvHalf for Consumer {
    fn peer(&self) -> &str {
        &self.peer
    }

    fn max_message(&self) -> usize {
        self.fifo.slot_size()
    }

    fn next(&mut self, deadline: Deadline) -> Result<Message<'_>> {
        let op = "recv (waiting for data)";
        if self.tail_seen <= self.head {
            let fifo = &self.fifo;
            let head = self.head;
            let tail_seen = &mut self.tail_seen;
            let hdr = fifo.header();
            let ctx = WaitCtx {
                policy: self.policy,
                deadline,
                abort: &self.abort,
                peer: &self.peer,
                op,
            };
            let liveness = &self.liveness;
            wait_until(
                &fifo.data_words(self.shared),
                &ctx,
                || {
                    *tail_seen = fifo.tail().load(Ordering::Acquire);
                    *tail_seen > head || hdr.producer_closed.load(Ordering::Acquire) != 0
                },
                || liveness.check(&self.peer, op),
            )?;
            if self.tail_seen <= self.head {
                // Closed: one last look, the final message may have raced the flag.
                self.tail_seen = self.fifo.tail().load(Ordering::Acquire);
                if self.tail_seen <= self.head {
                    return Err(closed(&self.peer, op));
                }
            }
        }
        let meta = self.fifo.meta(self.head);
        let len = meta.len.load(Ordering::Relaxed) as usize;
        match meta.kind.load(Ordering::Relaxed) {
            KIND_INLINE => {
                if len > self.fifo.slot_size() {
                    return Err(TransportError::Corrupt {
                        peer: self.peer.to_string(),
                        detail: format!(
                            "message length {len} exceeds the slot size {}",
                            self.fifo.slot_size()
                        ),
                    });
                }
                // SAFETY: the producer published this slot (tail > head, acquired)
                // and will not touch it until we release it; `len <= slot_size`.
                let data =
                    unsafe { std::slice::from_raw_parts(self.fifo.slot_ptr(self.head), len) };
                if self.fifo.checksum() && crc32fast::hash(data) != meta.crc.load(Ordering::Relaxed)
                {
                    return Err(TransportError::Corrupt {
                        peer: self.peer.to_string(),
                        detail: format!(
                            "checksum mismatch in a {len}-byte message (message #{})",
                            self.head
                        ),
                    });
                }
                Ok(Message::Bytes(data))
            }
            KIND_REMOTE => {
                let Liveness::Process { pid, .. } = self.liveness else {
                    return Err(TransportError::Corrupt {
                        peer: self.peer.to_string(),
                        detail: "single-copy message on an in-process link".into(),
                    });
                };
                let remote = self.remote.insert(CmaRead {
                    pid,
                    addr: meta.remote_addr.load(Ordering::Relaxed),
                    len,
                    peer: self.peer.clone(),
                });
                Ok(Message::Remote(remote))
            }
            other => Err(TransportError::Corrupt {
                peer: self.peer.to_string(),
                detail: format!("unknown message kind {other}"),
            }),
        }
    }

    fn release(&mut self) -> Result<()> {
        if self.tail_seen <= self.head {
            return Err(TransportError::InvalidArgument(format!(
                "release without a received message (peer {})",
                self.peer
            )));
        }
        self.remote = None;
        self.head += 1;
        self.fifo.head().store(self.head, Ordering::Release);
        self.fifo.space_words(self.shared).notify();
        Ok(())
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.fifo
            .header()
            .consumer_closed
            .store(1, Ordering::Release);
        self.fifo.space_words(self.shared).notify();
    }
}
