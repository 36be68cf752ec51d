//! The RDMA link halves. [`RdmaSend`] writes messages into the peer's ring with
//! RDMA WRITE WITH IMMEDIATE and waits for credits; [`RdmaRecv`] takes arrivals off
//! its completion queue, lends the slots out and writes credits back.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sideway::ibverbs::completion::{BasicCompletionQueue, WorkCompletionOperationType};
use sideway::ibverbs::queue_pair::{
    BasicQueuePair, PostSendGuard, QueuePair, SetScatterGatherEntry, WorkRequestFlags,
};

use super::completion::{Completion, SendQueue, failure, ok, poll};
use super::memory::RegisteredBuf;
use super::waiter::Waiter;
use crate::link::{Message, RecvHalf, SendHalf};
use crate::wait::{AbortHandle, WaitPolicy};
use crate::{Deadline, Result, TransportError};

/// What a work request was, in the top byte of its id; the rest is a sequence
/// number (for messages) or zero.
const KIND_SHIFT: u32 = 56;
const KIND_MESSAGE: u64 = 1;
const KIND_PROBE: u64 = 2;
const KIND_CREDIT: u64 = 3;
const KIND_RECV: u64 = 4;

/// How long `release` waits for room in the send queue for a credit write. It only
/// waits while earlier credit writes are unacknowledged, which the transport's
/// retry timeout bounds; this is a backstop.
const RELEASE_WAIT: Duration = Duration::from_secs(60);

fn wr_id(kind: u64, seq: u64) -> u64 {
    (kind << KIND_SHIFT) | (seq & ((1 << KIND_SHIFT) - 1))
}

fn what(wr_id: u64) -> String {
    let seq = wr_id & ((1 << KIND_SHIFT) - 1);
    match wr_id >> KIND_SHIFT {
        KIND_MESSAGE => format!("RDMA write of message {seq}"),
        KIND_PROBE => "liveness probe (empty RDMA write)".into(),
        KIND_CREDIT => "credit write".into(),
        KIND_RECV => "receive".into(),
        k => format!("work request of unknown kind {k}"),
    }
}

/// The first failure of a half, replayed by every later call: a queue pair that
/// saw a failed completion is in the error state for good.
enum Broken {
    PeerGone(String),
    Corrupt(String),
    Local(String),
}

impl Broken {
    fn of(e: &TransportError) -> Option<Broken> {
        match e {
            TransportError::PeerGone { detail, .. } => Some(Broken::PeerGone(detail.clone())),
            TransportError::Corrupt { detail, .. } => Some(Broken::Corrupt(detail.clone())),
            TransportError::Io { .. } => Some(Broken::Local(e.to_string())),
            _ => None,
        }
    }

    fn error(&self, peer: &str, op: &'static str) -> TransportError {
        let peer = peer.to_string();
        match self {
            Broken::PeerGone(d) => TransportError::PeerGone {
                peer,
                op,
                detail: format!("the link failed earlier: {d}"),
            },
            Broken::Corrupt(d) => TransportError::Corrupt {
                peer,
                detail: format!("the link failed earlier: {d}"),
            },
            Broken::Local(d) => TransportError::io(
                &peer,
                op,
                std::io::Error::other(format!("the link failed earlier: {d}")),
            ),
        }
    }
}

/// Settings shared by both halves.
pub(super) struct HalfConfig {
    pub peer: Arc<str>,
    pub policy: WaitPolicy,
    pub abort: AbortHandle,
}

/// Where the sending half writes.
pub(super) struct RemoteRing {
    pub addr: u64,
    pub rkey: u32,
    pub slots: u32,
    pub slot_size: usize,
}

/// The sending half.
pub(super) struct RdmaSend {
    // Fields drop in order: the queue pair goes first, so the device stops using
    // the buffers before they are deregistered.
    qp: BasicQueuePair,
    cq: Arc<BasicCompletionQueue>,
    /// `slots` x `slot_size` bytes, the source of the writes: slot `i` holds message
    /// `i mod slots` until the peer's credit for it returns.
    staging: RegisteredBuf,
    /// Word 0: the number of messages the peer has consumed, written by the peer.
    credit: RegisteredBuf,
    remote: RemoteRing,
    cfg: HalfConfig,
    /// Messages committed.
    sent: u64,
    sq: SendQueue,
    /// Length of the reserved, uncommitted message.
    reserved: Option<usize>,
    scratch: Vec<Completion>,
    broken: Option<Broken>,
}

impl RdmaSend {
    pub fn new(
        qp: BasicQueuePair,
        cq: Arc<BasicCompletionQueue>,
        staging: RegisteredBuf,
        credit: RegisteredBuf,
        remote: RemoteRing,
        sq_depth: u32,
        cfg: HalfConfig,
    ) -> Self {
        RdmaSend {
            qp,
            cq,
            staging,
            credit,
            remote,
            cfg,
            sent: 0,
            sq: SendQueue::new(sq_depth),
            reserved: None,
            scratch: Vec::new(),
            broken: None,
        }
    }

    /// Records the first link-breaking error and returns it.
    fn fail(&mut self, e: TransportError) -> TransportError {
        if self.broken.is_none() {
            self.broken = Broken::of(&e);
            tracing::warn!(peer = %self.cfg.peer, error = %e, "RDMA send half failed");
        }
        e
    }

    fn check_broken(&self, op: &'static str) -> Result<()> {
        match &self.broken {
            Some(b) => Err(b.error(&self.cfg.peer, op)),
            None => Ok(()),
        }
    }

    /// Takes completed work requests off the completion queue.
    fn reap(&mut self) -> Result<()> {
        let mut done = std::mem::take(&mut self.scratch);
        done.clear();
        let polled = poll(&self.cq, &mut done);
        let mut outcome = polled.map(|_| ()).map_err(|e| {
            TransportError::io(&self.cfg.peer, "polling the send completion queue", e)
        });
        if outcome.is_ok() {
            for c in &done {
                if !ok(c) {
                    outcome = Err(failure(&self.cfg.peer, "rdma send", &what(c.wr_id), c));
                    break;
                }
                self.sq.completed += 1;
            }
        }
        self.scratch = done;
        outcome.map_err(|e| self.fail(e))
    }

    /// Messages the peer has room for.
    fn credits(&self) -> Result<u64> {
        let consumed = self.credit.word(0).load(Ordering::Acquire);
        if consumed > self.sent {
            return Err(TransportError::Corrupt {
                peer: self.cfg.peer.to_string(),
                detail: format!(
                    "the peer reports {consumed} messages consumed but only {} were sent",
                    self.sent
                ),
            });
        }
        Ok(u64::from(self.remote.slots) - (self.sent - consumed))
    }

    fn ready(&self) -> Result<bool> {
        Ok(self.credits()? > 0 && self.sq.has_room())
    }

    /// Waits for a free remote slot and room in the send queue.
    fn wait_for_room(&mut self, deadline: Deadline) -> Result<()> {
        self.reap()?;
        if self.ready().map_err(|e| self.fail(e))? {
            return Ok(());
        }
        let (peer, abort) = (self.cfg.peer.clone(), self.cfg.abort.clone());
        let mut w = Waiter::new(
            self.cfg.policy,
            deadline,
            &abort,
            &peer,
            "rdma send (waiting for the receiver to free a slot)",
        );
        loop {
            self.reap()?;
            if self.ready().map_err(|e| self.fail(e))? {
                return Ok(());
            }
            if w.probe_due() && self.sq.has_room() {
                self.post_probe()?;
            }
            w.pause()?;
        }
    }

    /// Posts an empty RDMA write to the peer's ring: it fails (retry exceeded)
    /// when the peer is gone, and does nothing otherwise.
    fn post_probe(&mut self) -> Result<()> {
        let mut guard = self.qp.start_post_send();
        guard
            .construct_wr(wr_id(KIND_PROBE, 0), WorkRequestFlags::Signaled)
            .setup_write(self.remote.rkey, self.remote.addr);
        let posted = guard.post();
        self.after_post(posted, "posting a liveness probe")
    }

    fn after_post(
        &mut self,
        posted: Result<(), sideway::ibverbs::queue_pair::PostSendError>,
        context: &str,
    ) -> Result<()> {
        match posted {
            Ok(()) => {
                self.sq.posted += 1;
                Ok(())
            }
            Err(e) => {
                let e = TransportError::io(
                    &self.cfg.peer,
                    context,
                    std::io::Error::other(super::device::error_chain(&e)),
                );
                Err(self.fail(e))
            }
        }
    }
}

impl SendHalf for RdmaSend {
    fn peer(&self) -> &str {
        &self.cfg.peer
    }

    fn max_message(&self) -> usize {
        self.remote.slot_size
    }

    /// The peer's receive slots (a send waits for a credit only when all are full).
    fn depth(&self) -> usize {
        self.remote.slots as usize
    }

    fn reserve(&mut self, len: usize, deadline: Deadline) -> Result<&mut [u8]> {
        if len > self.remote.slot_size {
            return Err(TransportError::InvalidArgument(format!(
                "message of {len} bytes exceeds the link's maximum {} (peer {})",
                self.remote.slot_size, self.cfg.peer
            )));
        }
        self.check_broken("rdma send")?;
        if self.reserved.is_none() {
            self.wait_for_room(deadline)?;
        }
        self.reserved = Some(len);
        let slot = (self.sent % u64::from(self.remote.slots)) as usize;
        // SAFETY: the slot's previous message has been consumed by the peer (there
        // is a credit for this one), so the device finished reading it; nothing is
        // posted from this slot until `commit`. In bounds: slot < slots, len <=
        // slot_size, and the buffer holds slots * slot_size bytes.
        Ok(unsafe { self.staging.slice_mut(slot * self.remote.slot_size, len) })
    }

    fn commit(&mut self) -> Result<()> {
        let Some(len) = self.reserved.take() else {
            return Err(TransportError::InvalidArgument(format!(
                "commit without a reserved message (peer {})",
                self.cfg.peer
            )));
        };
        self.check_broken("rdma send")?;
        let slot = (self.sent % u64::from(self.remote.slots)) as usize;
        let offset = slot * self.remote.slot_size;
        let remote_addr = self.remote.addr + offset as u64;
        let (lkey, local_addr) = (self.staging.lkey(), self.staging.addr(offset));
        // The receiver checks the sequence number; the length is the completion's
        // byte count. Immediates travel in network byte order.
        let imm = (self.sent as u32).to_be();
        let mut guard = self.qp.start_post_send();
        let wr = guard
            .construct_wr(wr_id(KIND_MESSAGE, self.sent), WorkRequestFlags::Signaled)
            .setup_write_imm(self.remote.rkey, remote_addr, imm);
        if len > 0 {
            // SAFETY: the range is inside the registered staging buffer (lkey), which
            // outlives the queue pair, and is not written again before the peer's
            // credit for this message proves the device has read it.
            unsafe { wr.setup_sge(lkey, local_addr, len as u32) };
        }
        let posted = guard.post();
        self.after_post(posted, "posting an RDMA write")?;
        self.sent += 1;
        self.reap()
    }

    fn flush(&mut self, deadline: Deadline) -> Result<()> {
        self.check_broken("rdma flush")?;
        let (peer, abort) = (self.cfg.peer.clone(), self.cfg.abort.clone());
        let mut w = Waiter::new(
            self.cfg.policy,
            deadline,
            &abort,
            &peer,
            "rdma flush (waiting for the peer to acknowledge every write)",
        );
        loop {
            self.reap()?;
            if self.sq.idle() {
                return Ok(());
            }
            w.pause()?;
        }
    }
}

/// Where the receiving half writes its credits.
pub(super) struct RemoteCredit {
    pub addr: u64,
    pub rkey: u32,
}

/// The receiving half.
pub(super) struct RdmaRecv {
    // The queue pair goes first (see `RdmaSend`).
    qp: BasicQueuePair,
    cq: Arc<BasicCompletionQueue>,
    /// `slots` x `slot_size` bytes the peer writes into.
    ring: RegisteredBuf,
    /// Word 0: the count of consumed messages, the source of credit writes.
    credit_src: RegisteredBuf,
    remote: RemoteCredit,
    slots: u32,
    slot_size: usize,
    cfg: HalfConfig,
    /// Messages whose arrival has been seen.
    arrived: u64,
    /// Lengths of arrived messages not yet released, oldest first (message
    /// `consumed` is the front).
    ready: VecDeque<u32>,
    /// Whether the front message is lent out by `next`.
    lent: bool,
    /// Messages released.
    consumed: u64,
    sq: SendQueue,
    scratch: Vec<Completion>,
    broken: Option<Broken>,
}

impl RdmaRecv {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        qp: BasicQueuePair,
        cq: Arc<BasicCompletionQueue>,
        ring: RegisteredBuf,
        credit_src: RegisteredBuf,
        remote: RemoteCredit,
        slots: u32,
        slot_size: usize,
        sq_depth: u32,
        cfg: HalfConfig,
    ) -> Self {
        RdmaRecv {
            qp,
            cq,
            ring,
            credit_src,
            remote,
            slots,
            slot_size,
            cfg,
            arrived: 0,
            ready: VecDeque::with_capacity(slots as usize),
            lent: false,
            consumed: 0,
            sq: SendQueue::new(sq_depth),
            scratch: Vec::new(),
            broken: None,
        }
    }

    fn fail(&mut self, e: TransportError) -> TransportError {
        if self.broken.is_none() {
            self.broken = Broken::of(&e);
            tracing::warn!(peer = %self.cfg.peer, error = %e, "RDMA receive half failed");
        }
        e
    }

    fn check_broken(&self, op: &'static str) -> Result<()> {
        match &self.broken {
            Some(b) => Err(b.error(&self.cfg.peer, op)),
            None => Ok(()),
        }
    }

    /// Takes arrivals and completed credit writes off the completion queue.
    fn reap(&mut self) -> Result<()> {
        let mut done = std::mem::take(&mut self.scratch);
        done.clear();
        let mut outcome = poll(&self.cq, &mut done).map(|_| ()).map_err(|e| {
            TransportError::io(&self.cfg.peer, "polling the receive completion queue", e)
        });
        if outcome.is_ok() {
            for c in &done {
                if let Err(e) = self.on_completion(c) {
                    outcome = Err(e);
                    break;
                }
            }
        }
        self.scratch = done;
        outcome.map_err(|e| self.fail(e))
    }

    fn on_completion(&mut self, c: &Completion) -> Result<()> {
        if !ok(c) {
            return Err(failure(&self.cfg.peer, "rdma recv", &what(c.wr_id), c));
        }
        if c.wr_id >> KIND_SHIFT != KIND_RECV {
            self.sq.completed += 1;
            return Ok(());
        }
        let corrupt = |detail: String| TransportError::Corrupt {
            peer: self.cfg.peer.to_string(),
            detail,
        };
        if c.opcode != WorkCompletionOperationType::ReceiveWithImmediate as u32 {
            return Err(corrupt(format!(
                "expected an RDMA write with immediate, got a completion with opcode {}",
                c.opcode
            )));
        }
        let seq = u32::from_be(c.imm);
        if seq != self.arrived as u32 {
            return Err(corrupt(format!(
                "message sequence gap: got message {seq}, expected {}",
                self.arrived as u32
            )));
        }
        if c.byte_len as usize > self.slot_size {
            return Err(corrupt(format!(
                "message {seq} of {} bytes overran its {}-byte slot",
                c.byte_len, self.slot_size
            )));
        }
        if self.ready.len() >= self.slots as usize {
            return Err(corrupt(format!(
                "message {seq} arrived while all {} slots were full (the peer ignored the credits)",
                self.slots
            )));
        }
        self.ready.push_back(c.byte_len);
        self.arrived += 1;
        Ok(())
    }

    fn post_recv(&mut self) -> Result<()> {
        post_recvs(&mut self.qp, 1).map_err(|detail| {
            let e = TransportError::io(
                &self.cfg.peer,
                "posting a receive",
                std::io::Error::other(detail),
            );
            self.fail(e)
        })
    }

    /// Writes the count of consumed messages into the peer's credit word; `kind`
    /// says whether it is a credit or a liveness probe (the same write).
    fn post_credit(&mut self, kind: u64) -> Result<()> {
        self.credit_src
            .word(0)
            .store(self.consumed, Ordering::Release);
        let (lkey, addr) = (self.credit_src.lkey(), self.credit_src.addr(0));
        let mut guard = self.qp.start_post_send();
        let wr = guard
            .construct_wr(wr_id(kind, 0), WorkRequestFlags::Signaled)
            .setup_write(self.remote.rkey, self.remote.addr);
        // SAFETY: the source word is inside the registered buffer `credit_src`,
        // which outlives the queue pair. It may change before the device reads it,
        // which only makes the credit newer (the count never decreases).
        unsafe { wr.setup_sge(lkey, addr, 8) };
        match guard.post() {
            Ok(()) => {
                self.sq.posted += 1;
                Ok(())
            }
            Err(e) => {
                let e = TransportError::io(
                    &self.cfg.peer,
                    "posting a credit write",
                    std::io::Error::other(super::device::error_chain(&e)),
                );
                Err(self.fail(e))
            }
        }
    }

    /// Waits until the send queue has room for a credit write.
    fn wait_for_sq(&mut self) -> Result<()> {
        self.reap()?;
        if self.sq.has_room() {
            return Ok(());
        }
        let (peer, abort) = (self.cfg.peer.clone(), self.cfg.abort.clone());
        let mut w = Waiter::new(
            self.cfg.policy,
            Deadline::after(RELEASE_WAIT),
            &abort,
            &peer,
            "rdma release (waiting for earlier credit writes to complete)",
        );
        loop {
            self.reap()?;
            if self.sq.has_room() {
                return Ok(());
            }
            w.pause()?;
        }
    }

    fn wait_for_arrival(&mut self, deadline: Deadline) -> Result<()> {
        self.reap()?;
        if !self.ready.is_empty() {
            return Ok(());
        }
        let (peer, abort) = (self.cfg.peer.clone(), self.cfg.abort.clone());
        let mut w = Waiter::new(
            self.cfg.policy,
            deadline,
            &abort,
            &peer,
            "rdma recv (waiting for the next message)",
        );
        loop {
            self.reap()?;
            if !self.ready.is_empty() {
                return Ok(());
            }
            if w.probe_due() && self.sq.has_room() {
                self.post_credit(KIND_PROBE)?;
            }
            w.pause()?;
        }
    }
}

impl RecvHalf for RdmaRecv {
    fn peer(&self) -> &str {
        &self.cfg.peer
    }

    fn max_message(&self) -> usize {
        self.slot_size
    }

    fn next(&mut self, deadline: Deadline) -> Result<Message<'_>> {
        if !self.lent {
            self.check_broken("rdma recv")?;
            if self.ready.is_empty() {
                self.wait_for_arrival(deadline)?;
            }
            self.lent = true;
        }
        let len = self.ready.front().copied().unwrap_or(0) as usize;
        let slot = (self.consumed % u64::from(self.slots)) as usize;
        // SAFETY: the peer wrote this slot before the completion we saw and writes
        // it again only after the credit `release` returns; in bounds since slot <
        // slots and len <= slot_size (checked on arrival).
        Ok(Message::Bytes(unsafe {
            self.ring.slice(slot * self.slot_size, len)
        }))
    }

    fn release(&mut self) -> Result<()> {
        if !self.lent {
            return Err(TransportError::InvalidArgument(format!(
                "release without a message from next (peer {})",
                self.cfg.peer
            )));
        }
        self.check_broken("rdma release")?;
        self.lent = false;
        self.ready.pop_front();
        self.consumed += 1;
        // The receive goes back before the credit, so that every write the credit
        // allows finds one.
        self.post_recv()?;
        self.wait_for_sq()?;
        self.post_credit(KIND_CREDIT)
    }
}

/// Posts `n` zero-length receives, one per expected write with immediate: the data
/// lands where the writer says, the receive only carries the immediate.
pub(super) fn post_recvs(qp: &mut BasicQueuePair, n: u32) -> std::result::Result<(), String> {
    let mut guard = qp.start_post_recv();
    for _ in 0..n {
        guard.construct_wr(wr_id(KIND_RECV, 0));
    }
    guard.post().map_err(|e| super::device::error_chain(&e))
}
