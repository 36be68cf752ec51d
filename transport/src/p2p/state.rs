//! The engine's state: per-peer queues, posted receives, unexpected messages, and one
//! progress pass over every channel.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use super::protocol::{CTS, CTS_GO, CTS_REFUSE, DATA, EAGER, FIN, RTS};
use super::{Channel, Completion, EngineConfig, Shared, SingleCopy};
use crate::{Deadline, Result, TransportError};

type Finished = Box<dyn FnOnce() + Send>;

/// A send's buffer and how to complete it.
pub(crate) trait Outgoing: Send {
    fn data(&self) -> &[u8];
    fn finish(self: Box<Self>, r: Result<()>) -> Finished;
}

/// A receive's buffer and how to complete it.
pub(crate) trait Incoming: Send {
    fn buf(&mut self) -> &mut [u8];
    fn finish(self: Box<Self>, r: Completion) -> Finished;
}

/// Completion of a borrowed operation, waited for by its poster (which drives
/// progress, sleeping on the doorbell; completions ring it).
#[derive(Default)]
pub(crate) struct Done {
    result: Mutex<Option<Completion>>,
    flag: std::sync::atomic::AtomicBool,
}

impl Done {
    fn set(&self, r: Completion) {
        *self.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
        self.flag.store(true, Ordering::Release);
    }

    pub(crate) fn is_done(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    pub(crate) fn take(&self) -> Completion {
        self.result
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_else(|| {
                Err(TransportError::InvalidArgument(
                    "point-to-point completion taken twice".into(),
                ))
            })
    }
}

/// A send from a caller's slice: the caller waits (in `Engine::send`) until the
/// engine is done with it.
pub(crate) struct BorrowedOut {
    pub ptr: *const u8,
    pub len: usize,
    pub done: std::sync::Arc<Done>,
}

// SAFETY: the pointer is only read while the poster waits for this operation's
// completion (Engine::send does not return before `finish`), so the slice it came from
// outlives every use, from whichever thread drives progress.
unsafe impl Send for BorrowedOut {}

impl Outgoing for BorrowedOut {
    fn data(&self) -> &[u8] {
        // SAFETY: see the Send impl: the caller's slice is alive and not written
        // while the operation is pending.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
    fn finish(self: Box<Self>, r: Result<()>) -> Finished {
        self.done.set(r.map(|()| 0));
        Box::new(|| {})
    }
}

/// A receive into a caller's slice (see [`BorrowedOut`]).
pub(crate) struct BorrowedIn {
    pub ptr: *mut u8,
    pub len: usize,
    pub done: std::sync::Arc<Done>,
}

// SAFETY: as for BorrowedOut: Engine::recv waits for completion before returning, so
// the exclusive borrow of the caller's slice covers every write.
unsafe impl Send for BorrowedIn {}

impl Incoming for BorrowedIn {
    fn buf(&mut self) -> &mut [u8] {
        // SAFETY: see the Send impl; `&mut self` keeps this the only live view.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
    fn finish(self: Box<Self>, r: Completion) -> Finished {
        self.done.set(r);
        Box::new(|| {})
    }
}

/// A send of an owned buffer, handed back when done.
pub(crate) struct OwnedOut<B, F> {
    pub buf: Option<B>,
    pub done: Option<F>,
}

impl<B: AsRef<[u8]> + Send + 'static, F: FnOnce(Result<B>) + Send + 'static> Outgoing
    for OwnedOut<B, F>
{
    fn data(&self) -> &[u8] {
        self.buf.as_ref().map_or(&[], |b| b.as_ref())
    }
    fn finish(mut self: Box<Self>, r: Result<()>) -> Finished {
        let (buf, done) = (self.buf.take(), self.done.take());
        Box::new(move || {
            if let (Some(b), Some(d)) = (buf, done) {
                d(r.map(|()| b));
            }
        })
    }
}

/// A receive into an owned buffer, handed back with the source when done.
pub(crate) struct OwnedIn<B, F> {
    pub buf: Option<B>,
    pub done: Option<F>,
}

impl<B: AsMut<[u8]> + Send + 'static, F: FnOnce(Result<(B, usize)>) + Send + 'static> Incoming
    for OwnedIn<B, F>
{
    fn buf(&mut self) -> &mut [u8] {
        self.buf.as_mut().map_or(&mut [], |b| b.as_mut())
    }
    fn finish(mut self: Box<Self>, r: Completion) -> Finished {
        let (buf, done) = (self.buf.take(), self.done.take());
        Box::new(move || {
            if let (Some(b), Some(d)) = (buf, done) {
                d(r.map(|src| (b, src)));
            }
        })
    }
}

struct SendOp {
    peer: usize,
    tag: u32,
    id: u64,
    sent: usize,
    out: Box<dyn Outgoing>,
    deadline: Deadline,
}

impl SendOp {
    fn len(&self) -> usize {
        self.out.data().len()
    }
}

struct RecvOp {
    src: Option<usize>,
    tag: u32,
    got: usize,
    /// The sender's buffer, when this rank reads the message from it directly.
    direct: Option<u64>,
    /// The message's sender, once matched.
    from: usize,
    inc: Box<dyn Incoming>,
    deadline: Deadline,
}

impl RecvOp {
    fn matches(&self, from: usize, tag: u32) -> bool {
        self.tag == tag && self.src.is_none_or(|s| s == from)
    }
}

enum Unexpected {
    Eager {
        from: usize,
        tag: u32,
        data: Vec<u8>,
    },
    Rts {
        from: usize,
        tag: u32,
        len: usize,
        id: u64,
        addr: u64,
    },
}

impl Unexpected {
    fn key(&self) -> (usize, u32) {
        match self {
            Unexpected::Eager { from, tag, .. } | Unexpected::Rts { from, tag, .. } => {
                (*from, *tag)
            }
        }
    }
}

struct PeerState {
    channel: Channel,
    /// Sends whose EAGER or RTS is not written yet, in post order.
    queue: VecDeque<SendOp>,
    /// RTS written, waiting for the CTS, by message id.
    awaiting: HashMap<u64, SendOp>,
    /// CTS received: DATA to write, in order.
    streaming: VecDeque<SendOp>,
    /// Control records to write: (kind, words): CTS (message id, status, receiver's
    /// length) and FIN (message id, status).
    ctl: VecDeque<(u32, [u64; 3])>,
    /// Matched receives this rank reads straight from the peer's memory, in order.
    reading: VecDeque<u64>,
    /// Receives matched to this peer's large messages, by message id.
    matched: HashMap<u64, RecvOp>,
    next_id: u64,
    /// Set once the peer is gone; operations with it fail at once.
    failed: Option<String>,
}

pub(crate) struct State {
    peers: Vec<Option<PeerState>>,
    c: Common,
}

/// Everything but the peers (so that a peer and the rest can be borrowed at once).
struct Common {
    rank: usize,
    names: Vec<String>,
    /// Receives not matched yet, in post order.
    posted: VecDeque<RecvOp>,
    /// Messages that arrived before a matching receive, in arrival order.
    unexpected: VecDeque<Unexpected>,
    cfg: EngineConfig,
    finished: Vec<Finished>,
    /// Set by `fail_all`: every new operation fails with it.
    closed: Option<String>,
}

fn corrupt(peer: &str, detail: String) -> TransportError {
    TransportError::Corrupt {
        peer: peer.to_string(),
        detail,
    }
}

impl Common {
    fn name(&self, p: usize) -> String {
        self.names
            .get(p)
            .cloned()
            .unwrap_or_else(|| format!("rank {p}"))
    }

    fn finish_send(&mut self, op: SendOp, r: Result<()>, sh: &Shared) {
        sh.pending.fetch_sub(1, Ordering::AcqRel);
        self.finished.push(op.out.finish(r));
    }

    fn finish_recv(&mut self, op: RecvOp, r: Completion, sh: &Shared) {
        sh.pending.fetch_sub(1, Ordering::AcqRel);
        self.finished.push(op.inc.finish(r));
    }

    fn mismatch(&self, peer: usize, tag: u32, expected: usize, actual: usize) -> TransportError {
        TransportError::Mismatch {
            peer: self.name(peer),
            tag,
            expected,
            actual,
        }
    }

    /// The first posted receive that takes a message from `from` with `tag`.
    fn take_posted(&mut self, from: usize, tag: u32) -> Option<RecvOp> {
        let i = self.posted.iter().position(|r| r.matches(from, tag))?;
        self.posted.remove(i)
    }
}

/// A receive matched a large message from `from`: read it straight from the sender's
/// memory when offered (`addr`) and allowed, else answer with a CTS (or a refusal).
#[allow(clippy::too_many_arguments)]
fn accept_rts(
    ps: &mut PeerState,
    c: &mut Common,
    mut op: RecvOp,
    from: usize,
    tag: u32,
    len: usize,
    id: u64,
    addr: u64,
    sh: &Shared,
) {
    let want = op.inc.buf().len();
    if want != len {
        ps.ctl.push_back((CTS, [id, CTS_REFUSE, want as u64]));
        let e = c.mismatch(from, tag, want, len);
        c.finish_recv(op, Err(e), sh);
        return;
    }
    op.from = from;
    let direct = addr != 0
        && match (&ps.channel, &sh.window, c.cfg.single_copy) {
            (_, _, SingleCopy::Off) => false,
            (Channel::Window { member, .. }, Some(w), SingleCopy::Threads) => {
                w.reads_in_process(*member)
            }
            (Channel::Window { member, .. }, Some(w), SingleCopy::Always) => {
                w.can_read_directly(*member)
            }
            _ => false,
        };
    if direct {
        op.direct = Some(addr);
        ps.reading.push_back(id);
    } else {
        ps.ctl.push_back((CTS, [id, CTS_GO, want as u64]));
    }
    ps.matched.insert(id, op);
}

impl State {
    pub(crate) fn new(
        rank: usize,
        names: Vec<String>,
        channels: Vec<Option<Channel>>,
        cfg: EngineConfig,
    ) -> State {
        State {
            peers: channels
                .into_iter()
                .map(|c| {
                    c.map(|channel| PeerState {
                        channel,
                        queue: VecDeque::new(),
                        awaiting: HashMap::new(),
                        streaming: VecDeque::new(),
                        ctl: VecDeque::new(),
                        reading: VecDeque::new(),
                        matched: HashMap::new(),
                        next_id: 0,
                        failed: None,
                    })
                })
                .collect(),
            c: Common {
                rank,
                names,
                posted: VecDeque::new(),
                unexpected: VecDeque::new(),
                cfg,
                finished: Vec::new(),
                closed: None,
            },
        }
    }

    pub(crate) fn take_finished(&mut self) -> Vec<Finished> {
        std::mem::take(&mut self.c.finished)
    }

    /// The reason an operation with `peer` cannot be posted, if any.
    fn refuse(&self, peer: usize, what: &'static str) -> Option<TransportError> {
        if let Some(reason) = &self.c.closed {
            return Some(TransportError::Aborted {
                peer: format!("{} ({reason})", self.c.name(peer)),
                op: what,
            });
        }
        match self.peers.get(peer) {
            _ if peer == self.c.rank => Some(TransportError::InvalidArgument(format!(
                "{what}: rank {peer} is this rank"
            ))),
            None => Some(TransportError::InvalidArgument(format!(
                "{what}: rank {peer} is outside the group of {} ranks",
                self.peers.len()
            ))),
            Some(None) => Some(TransportError::Unavailable(format!(
                "{what}: no channel to rank {peer}"
            ))),
            Some(Some(ps)) => ps.failed.as_ref().map(|why| TransportError::PeerGone {
                peer: self.c.name(peer),
                op: what,
                detail: why.clone(),
            }),
        }
    }

    pub(crate) fn post_send(
        &mut self,
        peer: usize,
        tag: u32,
        out: Box<dyn Outgoing>,
        deadline: Deadline,
        sh: &Shared,
    ) {
        sh.pending.fetch_add(1, Ordering::AcqRel);
        let mut op = SendOp {
            peer,
            tag,
            id: 0,
            sent: 0,
            out,
            deadline,
        };
        if let Some(e) = self.refuse(peer, "send") {
            self.c.finish_send(op, Err(e), sh);
            return;
        }
        if let Some(Some(ps)) = self.peers.get_mut(peer) {
            op.id = ps.next_id;
            ps.next_id += 1;
            ps.queue.push_back(op);
        }
    }

    pub(crate) fn post_recv(
        &mut self,
        src: Option<usize>,
        tag: u32,
        inc: Box<dyn Incoming>,
        deadline: Deadline,
        sh: &Shared,
    ) {
        sh.pending.fetch_add(1, Ordering::AcqRel);
        let mut op = RecvOp {
            src,
            tag,
            got: 0,
            direct: None,
            from: 0,
            inc,
            deadline,
        };
        // A message that already arrived counts, even if its sender left since.
        let Some(i) = self.c.unexpected.iter().position(|u| {
            let (from, t) = u.key();
            op.matches(from, t)
        }) else {
            let refused = match src {
                Some(s) => self.refuse(s, "recv"),
                None => self
                    .c
                    .closed
                    .as_ref()
                    .map(|reason| TransportError::Aborted {
                        peer: format!("any source ({reason})"),
                        op: "recv",
                    }),
            };
            match refused {
                Some(e) => self.c.finish_recv(op, Err(e), sh),
                None => self.c.posted.push_back(op),
            }
            return;
        };
        match self.c.unexpected.remove(i) {
            Some(Unexpected::Eager { from, tag, data }) => {
                let buf = op.inc.buf();
                if buf.len() == data.len() {
                    crate::copy::copy_slice(buf, &data);
                    self.c.finish_recv(op, Ok(from), sh);
                } else {
                    let e = self.c.mismatch(from, tag, buf.len(), data.len());
                    self.c.finish_recv(op, Err(e), sh);
                }
            }
            Some(Unexpected::Rts {
                from,
                tag,
                len,
                id,
                addr,
            }) => match self.peers.get_mut(from) {
                Some(Some(ps)) => accept_rts(ps, &mut self.c, op, from, tag, len, id, addr, sh),
                _ => self.c.posted.push_back(op),
            },
            None => self.c.posted.push_back(op),
        }
    }

    /// One pass over every channel: incoming records first, then control, new
    /// messages and data. Returns whether anything moved.
    pub(crate) fn progress(&mut self, sh: &Shared) -> bool {
        let mut moved = false;
        for p in 0..self.peers.len() {
            let Some(Some(ps)) = self.peers.get_mut(p) else {
                continue;
            };
            if ps.failed.is_some() {
                continue;
            }
            let r = receive_side(p, ps, &mut self.c, sh).and_then(|m| {
                let d = direct_side(ps, &mut self.c, sh);
                send_side(ps, &mut self.c, sh).map(|s| m | s | d)
            });
            match r {
                Ok(m) => moved |= m,
                Err(e) => {
                    self.fail_peer(p, &e.to_string(), sh);
                    moved = true;
                }
            }
        }
        moved
    }

    /// Fails every operation with peer `p` (it died, or its channel broke).
    fn fail_peer(&mut self, p: usize, why: &str, sh: &Shared) {
        let name = self.c.name(p);
        let Some(Some(ps)) = self.peers.get_mut(p) else {
            return;
        };
        if ps.failed.is_some() {
            return;
        }
        tracing::warn!(peer = %name, reason = why, "point-to-point channel failed");
        ps.failed = Some(why.to_string());
        let sends: Vec<SendOp> = ps
            .queue
            .drain(..)
            .chain(ps.awaiting.drain().map(|(_, o)| o))
            .chain(ps.streaming.drain(..))
            .collect();
        let mut recvs: Vec<RecvOp> = ps.matched.drain().map(|(_, o)| o).collect();
        let (from_p, keep): (VecDeque<RecvOp>, VecDeque<RecvOp>) =
            self.c.posted.drain(..).partition(|r| r.src == Some(p));
        self.c.posted = keep;
        recvs.extend(from_p);
        let gone = |op: &'static str| TransportError::PeerGone {
            peer: name.clone(),
            op,
            detail: why.to_string(),
        };
        for s in sends {
            self.c.finish_send(s, Err(gone("send")), sh);
        }
        for r in recvs {
            self.c.finish_recv(r, Err(gone("recv")), sh);
        }
    }

    /// Deadlines and the peers' liveness (called while idle).
    pub(crate) fn check(&mut self, sh: &Shared) {
        for p in 0..self.peers.len() {
            let Some(Some(ps)) = self.peers.get_mut(p) else {
                continue;
            };
            if ps.failed.is_some() {
                continue;
            }
            let broken = match &ps.channel {
                Channel::Window { member, .. } => sh
                    .window
                    .as_ref()
                    .and_then(|w| w.check_member(*member, "point-to-point").err())
                    .map(|e| e.to_string()),
                Channel::Bridged { bridge, .. } => bridge.failure(),
            };
            if let Some(why) = broken {
                // What the peer sent before it left still counts.
                let _ = receive_side(p, ps, &mut self.c, sh);
                self.fail_peer(p, &why, sh);
            }
        }
        self.expire(sh);
    }

    fn expire(&mut self, sh: &Shared) {
        let mut sends = Vec::new();
        let mut recvs = Vec::new();
        for ps in self.peers.iter_mut().flatten() {
            let (gone, keep): (VecDeque<SendOp>, VecDeque<SendOp>) =
                ps.queue.drain(..).partition(|o| o.deadline.expired());
            ps.queue = keep;
            sends.extend(gone);
            let ids: Vec<u64> = ps
                .awaiting
                .iter()
                .filter(|(_, o)| o.deadline.expired())
                .map(|(i, _)| *i)
                .collect();
            sends.extend(ids.iter().filter_map(|i| ps.awaiting.remove(i)));
            let (gone, keep): (VecDeque<SendOp>, VecDeque<SendOp>) =
                ps.streaming.drain(..).partition(|o| o.deadline.expired());
            ps.streaming = keep;
            sends.extend(gone);
            let ids: Vec<u64> = ps
                .matched
                .iter()
                .filter(|(_, o)| o.deadline.expired())
                .map(|(i, _)| *i)
                .collect();
            recvs.extend(ids.iter().filter_map(|i| ps.matched.remove(i)));
        }
        let (gone, keep): (VecDeque<RecvOp>, VecDeque<RecvOp>) =
            self.c.posted.drain(..).partition(|o| o.deadline.expired());
        self.c.posted = keep;
        recvs.extend(gone);
        for op in sends {
            let e = TransportError::Timeout {
                peer: format!("{} (tag {})", self.c.name(op.peer), op.tag),
                op: "send",
                waited: op.deadline.waited(),
            };
            self.c.finish_send(op, Err(e), sh);
        }
        for op in recvs {
            let peer = match op.src {
                Some(s) => format!("{} (tag {})", self.c.name(s), op.tag),
                None => format!("any source (tag {})", op.tag),
            };
            let e = TransportError::Timeout {
                peer,
                op: "recv",
                waited: op.deadline.waited(),
            };
            self.c.finish_recv(op, Err(e), sh);
        }
    }

    /// Fails every pending operation and refuses new ones.
    pub(crate) fn fail_all(&mut self, err: &dyn Fn() -> TransportError, sh: &Shared) {
        if self.c.closed.is_none() {
            self.c.closed = Some(err().to_string());
        }
        let mut sends = Vec::new();
        let mut recvs: Vec<RecvOp> = self.c.posted.drain(..).collect();
        for ps in self.peers.iter_mut().flatten() {
            sends.extend(ps.queue.drain(..));
            sends.extend(ps.awaiting.drain().map(|(_, o)| o));
            sends.extend(ps.streaming.drain(..));
            recvs.extend(ps.matched.drain().map(|(_, o)| o));
        }
        for s in sends {
            self.c.finish_send(s, Err(err()), sh);
        }
        for r in recvs {
            self.c.finish_recv(r, Err(err()), sh);
        }
    }
}

/// Takes every record waiting from peer `p` and acts on it.
fn receive_side(p: usize, ps: &mut PeerState, c: &mut Common, sh: &Shared) -> Result<bool> {
    let mut moved = false;
    loop {
        let Some(rec) = ps.channel.rx().try_peek()? else {
            return Ok(moved);
        };
        let (kind, w, payload) = (rec.kind, rec.words, rec.payload);
        match kind {
            EAGER => {
                let (tag, len) = (w[0] as u32, w[1] as usize);
                if len != payload.len() {
                    return Err(corrupt(
                        &c.name(p),
                        format!("eager message of {len} bytes carries {}", payload.len()),
                    ));
                }
                match c.take_posted(p, tag) {
                    Some(mut op) => {
                        let buf = op.inc.buf();
                        if buf.len() == len {
                            crate::copy::copy_slice(buf, payload);
                            c.finish_recv(op, Ok(p), sh);
                        } else {
                            let e = c.mismatch(p, tag, buf.len(), len);
                            c.finish_recv(op, Err(e), sh);
                        }
                    }
                    None => c.unexpected.push_back(Unexpected::Eager {
                        from: p,
                        tag,
                        data: payload.to_vec(),
                    }),
                }
            }
            RTS => {
                let (tag, len, id, addr) = (w[0] as u32, w[1] as usize, w[2], w[3]);
                match c.take_posted(p, tag) {
                    Some(op) => accept_rts(ps, c, op, p, tag, len, id, addr, sh),
                    None => c.unexpected.push_back(Unexpected::Rts {
                        from: p,
                        tag,
                        len,
                        id,
                        addr,
                    }),
                }
            }
            FIN => {
                let (id, status) = (w[0], w[1]);
                if let Some(op) = ps.awaiting.remove(&id) {
                    let r = if status == CTS_GO {
                        Ok(())
                    } else {
                        Err(TransportError::PeerGone {
                            peer: c.name(p),
                            op: "send",
                            detail:
                                "the receiver could not read the message from this rank's memory"
                                    .into(),
                        })
                    };
                    c.finish_send(op, r, sh);
                }
            }
            CTS => {
                let (id, status, their_len) = (w[0], w[1], w[2] as usize);
                if let Some(op) = ps.awaiting.remove(&id) {
                    if status == CTS_GO {
                        ps.streaming.push_back(op);
                    } else {
                        let e = c.mismatch(p, op.tag, their_len, op.len());
                        c.finish_send(op, Err(e), sh);
                    }
                }
            }
            DATA => {
                let (id, off) = (w[0], w[1] as usize);
                // Data of a receive that timed out meanwhile is dropped.
                if let Some(op) = ps.matched.get_mut(&id) {
                    let buf = op.inc.buf();
                    if off + payload.len() > buf.len() {
                        return Err(corrupt(
                            &c.name(p),
                            format!(
                                "data at {off}+{} past the {}-byte receive",
                                payload.len(),
                                buf.len()
                            ),
                        ));
                    }
                    crate::copy::copy_slice(&mut buf[off..off + payload.len()], payload);
                    op.got += payload.len();
                    if op.got == buf.len()
                        && let Some(op) = ps.matched.remove(&id)
                    {
                        let from = op.from;
                        c.finish_recv(op, Ok(from), sh);
                    }
                }
            }
            other => {
                return Err(corrupt(
                    &c.name(p),
                    format!("unknown point-to-point record kind {other}"),
                ));
            }
        }
        ps.channel.rx().release();
        moved = true;
    }
}

/// Bytes a single-copy read moves per progress pass (the others wait that long).
const DIRECT_PIECE: usize = 1 << 20;

/// Reads the next piece of the first message taken straight from the peer's memory;
/// when it is complete, answers FIN.
fn direct_side(ps: &mut PeerState, c: &mut Common, sh: &Shared) -> bool {
    let Some(&id) = ps.reading.front() else {
        return false;
    };
    let (Channel::Window { member, .. }, Some(w)) = (&ps.channel, &sh.window) else {
        return false;
    };
    let member = *member;
    let Some(op) = ps.matched.get_mut(&id) else {
        // Timed out meanwhile: the sender still waits for an answer.
        ps.reading.pop_front();
        ps.ctl.push_back((FIN, [id, CTS_REFUSE, 0]));
        return true;
    };
    let addr = op.direct.unwrap_or(0);
    let got = op.got;
    let buf = op.inc.buf();
    let n = DIRECT_PIECE.min(buf.len() - got);
    let r = w.read_directly(member, addr + got as u64, &mut buf[got..got + n]);
    op.got += n;
    let complete = op.got == buf.len();
    match r {
        Ok(()) if !complete => {}
        Ok(()) => {
            ps.reading.pop_front();
            ps.ctl.push_back((FIN, [id, CTS_GO, 0]));
            if let Some(op) = ps.matched.remove(&id) {
                let from = op.from;
                c.finish_recv(op, Ok(from), sh);
            }
        }
        Err(e) => {
            ps.reading.pop_front();
            ps.ctl.push_back((FIN, [id, CTS_REFUSE, 0]));
            if let Some(op) = ps.matched.remove(&id) {
                c.finish_recv(op, Err(e), sh);
            }
        }
    }
    true
}

/// Control records, then new messages (EAGER or RTS) in order, then data.
fn send_side(ps: &mut PeerState, c: &mut Common, sh: &Shared) -> Result<bool> {
    let eager_max = match ps.channel {
        Channel::Window { .. } => c.cfg.eager_max,
        Channel::Bridged { .. } => c.cfg.eager_max_bridged,
    };
    let chunk = c.cfg.chunk;
    let max = ps.channel.max_payload();
    let mut moved = false;
    while let Some(&(kind, [a, b, d])) = ps.ctl.front() {
        let tx = ps.channel.tx();
        if tx.try_reserve(0)?.is_none() {
            break;
        }
        tx.commit(kind, [a, b, d, 0, 0, 0])?;
        ps.ctl.pop_front();
        moved = true;
    }
    let offer =
        c.cfg.single_copy != SingleCopy::Off && matches!(ps.channel, Channel::Window { .. });
    while let Some(op) = ps.queue.front() {
        let len = op.len();
        let tx = ps.channel.tx();
        if len <= eager_max.min(max) {
            let Some(dst) = tx.try_reserve(len)? else {
                break;
            };
            crate::copy::copy_slice(dst, op.out.data());
            tx.commit(EAGER, [u64::from(op.tag), len as u64, op.id, 0, 0, 0])?;
            if let Some(op) = ps.queue.pop_front() {
                c.finish_send(op, Ok(()), sh);
            }
        } else {
            if tx.try_reserve(0)?.is_none() {
                break;
            }
            // The buffer's address lets a same-host receiver read it in one copy; it
            // stays valid and unchanged until the receiver answers (CTS or FIN).
            let addr = if offer {
                op.out.data().as_ptr() as u64
            } else {
                0
            };
            tx.commit(RTS, [u64::from(op.tag), len as u64, op.id, addr, 0, 0])?;
            if let Some(op) = ps.queue.pop_front() {
                ps.awaiting.insert(op.id, op);
            }
        }
        moved = true;
    }
    let piece_max = chunk.min(max).max(1);
    while let Some(op) = ps.streaming.front_mut() {
        let len = op.len();
        while op.sent < len {
            let n = piece_max.min(len - op.sent);
            let tx = ps.channel.tx();
            let Some(dst) = tx.try_reserve(n)? else {
                return Ok(moved);
            };
            crate::copy::copy_slice(dst, &op.out.data()[op.sent..op.sent + n]);
            tx.commit(DATA, [op.id, op.sent as u64, 0, 0, 0, 0])?;
            op.sent += n;
            moved = true;
        }
        if let Some(op) = ps.streaming.pop_front() {
            c.finish_send(op, Ok(()), sh);
        }
    }
    Ok(moved)
}
