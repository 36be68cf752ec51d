//! One socket's receiving side: frames read without blocking into a ring of slots,
//! by whichever thread of this rank is waiting (see [`super::progress`]); no thread
//! of its own.
//!
//! At a frame boundary the socket is read into a small stage, so that a small frame
//! arrives with its header in one `recv`; the rest of a large payload is read
//! straight into its slot.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::collections::VecDeque;
use std::io::{ErrorKind, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::ptr::NonNull;

use socket2::Socket;

use super::frame::{FLAG_CRC, FLAG_PAD, HEADER_LEN, Header, PAD_LEN, checksum};
use crate::{Result, TransportError};

/// Bytes read ahead at a frame boundary.
const STAGE: usize = 8 << 10;

/// Why a socket delivers nothing more (typed: callers decide on the variant).
pub(crate) enum End {
    /// The peer closed the connection cleanly at a frame boundary.
    Closed,
    /// Reading failed: reset, closed mid-frame, or a frame broke the protocol or its
    /// checksum.
    Failed(TransportError),
}

/// `count` slots of `size` bytes on the heap.
struct Slots {
    ptr: NonNull<u8>,
    layout: Layout,
    count: usize,
    size: usize,
}

// SAFETY: `Slots` owns plain heap memory. Which thread may touch which slot is
// decided by the owning `Inbound`'s bookkeeping (free, being filled, filled, lent),
// which only changes under the mutex that guards it (see `Inbound::slot_mut` and
// `Inbound::front`).
unsafe impl Send for Slots {}

impl Slots {
    fn new(count: usize, size: usize) -> Result<Slots> {
        let bytes = count.checked_mul(size).filter(|&b| b > 0);
        let layout = bytes
            .and_then(|b| Layout::from_size_align(b, 64).ok())
            .ok_or_else(|| {
                TransportError::InvalidArgument(format!(
                    "TCP receive buffer of {count} x {size} bytes"
                ))
            })?;
        // SAFETY: the layout has a non-zero size (checked above).
        let raw = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).ok_or_else(|| {
            TransportError::Unavailable(format!(
                "out of memory for a {} byte TCP receive buffer",
                layout.size()
            ))
        })?;
        Ok(Slots {
            ptr,
            layout,
            count,
            size,
        })
    }

    fn base(&self, slot: usize) -> *mut u8 {
        assert!(slot < self.count);
        // SAFETY: slot < count, so the offset stays inside the allocation.
        unsafe { self.ptr.as_ptr().add(slot * self.size) }
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed once.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// The receiving state of one socket of a link.
///
/// Every slot is in one of four states: free (`free`), being filled (`filling`),
/// filled and waiting (`filled`), or lent to the consumer (the front of `filled`,
/// once [`front`](Self::front) handed it out, until [`release`](Self::release)).
/// The slot freed last is filled next, so that a receiver that keeps up reuses one
/// cache-hot slot instead of cycling through all of them.
pub(crate) struct Inbound {
    sock: Socket,
    slots: Slots,
    /// Free slots; the last one was released last.
    free: Vec<usize>,
    /// Complete frames in arrival order: (slot, payload length).
    filled: VecDeque<(usize, usize)>,
    /// The slot the current frame's payload goes to.
    filling: Option<usize>,
    /// The frame being read, how many bytes of its pad are still to skip, and how
    /// many payload bytes are in.
    cur: Option<Header>,
    skip: usize,
    have: usize,
    /// Sequence number of the next frame, and the step between this socket's frames.
    seq: u64,
    stride: u64,
    max_len: usize,
    stage: Box<[u8]>,
    lo: usize,
    hi: usize,
    end: Option<End>,
}

impl Inbound {
    pub(crate) fn new(
        sock: Socket,
        first_seq: u64,
        stride: u64,
        queue: usize,
        max_len: usize,
    ) -> Result<Inbound> {
        let count = queue.max(1);
        Ok(Inbound {
            sock,
            slots: Slots::new(count, max_len)?,
            free: (0..count).rev().collect(),
            filled: VecDeque::with_capacity(count),
            filling: None,
            cur: None,
            skip: 0,
            have: 0,
            seq: first_seq,
            stride,
            max_len,
            stage: vec![0; STAGE].into_boxed_slice(),
            lo: 0,
            hi: 0,
            end: None,
        })
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// A complete message waits at the head.
    pub(crate) fn ready(&self) -> bool {
        !self.filled.is_empty()
    }

    /// The socket may be read: a frame is being received or a slot is free, and the
    /// stream has not ended.
    pub(crate) fn wants_input(&self) -> bool {
        self.end.is_none() && (self.filling.is_some() || !self.free.is_empty())
    }

    /// The stream ended and no complete message is left.
    pub(crate) fn exhausted(&self) -> bool {
        self.end.is_some() && !self.ready()
    }

    /// Reading failed (not a clean close).
    pub(crate) fn failed(&self) -> bool {
        matches!(self.end, Some(End::Failed(_)))
    }

    /// The message at the head: its payload's address and length. The slot stays
    /// untouched until [`release`](Self::release): the reader only writes the slot
    /// it took from `free`, and a filled slot goes back there only on release.
    pub(crate) fn front(&self) -> (*const u8, usize) {
        let (slot, len) = self.filled[0];
        (self.slots.base(slot).cast_const(), len)
    }

    /// Frees the head slot.
    pub(crate) fn release(&mut self) -> bool {
        match self.filled.pop_front() {
            Some((slot, _)) => {
                self.free.push(slot);
                true
            }
            None => false,
        }
    }

    /// The error for a consumer that wants a message from an exhausted stream.
    pub(crate) fn failure(&self, peer: &str) -> TransportError {
        match &self.end {
            Some(End::Failed(e)) => duplicate(e, peer),
            Some(End::Closed) | None => TransportError::PeerGone {
                peer: peer.to_string(),
                op: "recv",
                detail: "connection closed by the peer".into(),
            },
        }
    }

    /// Reads what has arrived, without blocking, until the socket would block, the
    /// slots are full or the stream ends (errors are kept for [`failure`]); with
    /// `until_ready`, stops as soon as a message waits at the head.
    ///
    /// [`failure`]: Self::failure
    pub(crate) fn pump(&mut self, peer: &str, until_ready: bool) {
        while self.wants_input() && !(until_ready && self.ready()) {
            match self.step(peer) {
                Ok(true) => {}
                Ok(false) => return,
                Err(end) => {
                    if let End::Failed(e) = &end {
                        tracing::debug!(peer, error = %e, "TCP receive stopped");
                    }
                    self.end = Some(end);
                    return;
                }
            }
        }
    }

    /// One read; `Ok(false)` when the socket would block.
    fn step(&mut self, peer: &str) -> Result<bool, End> {
        let Some(h) = self.cur else {
            if self.hi - self.lo >= HEADER_LEN {
                let mut b = [0u8; HEADER_LEN];
                b.copy_from_slice(&self.stage[self.lo..self.lo + HEADER_LEN]);
                self.lo += HEADER_LEN;
                let h = Header::decode(&b, self.seq, self.max_len, peer).map_err(End::Failed)?;
                self.cur = Some(h);
                self.skip = if h.flags & FLAG_PAD != 0 { PAD_LEN } else { 0 };
                self.have = 0;
                // `wants_input` (checked by `pump` before every step) saw a free slot.
                self.filling = self.free.pop();
                if h.len == 0 {
                    self.complete(h, peer)?;
                }
                return Ok(true);
            }
            if self.lo > 0 {
                self.stage.copy_within(self.lo..self.hi, 0);
                self.hi -= self.lo;
                self.lo = 0;
            }
            let got = read(&self.sock, &mut self.stage[self.hi..], peer)?;
            return Ok(match got {
                Some(0) if self.hi == 0 => return Err(End::Closed),
                Some(0) => return Err(closed_mid_frame(peer, self.hi, HEADER_LEN)),
                Some(n) => {
                    self.hi += n;
                    true
                }
                None => false,
            });
        };
        if self.skip > 0 {
            let k = (self.hi - self.lo).min(self.skip);
            self.lo += k;
            self.skip -= k;
            if self.skip > 0 {
                // The stage is empty: read the rest of the pad, and what follows,
                // into it.
                (self.lo, self.hi) = (0, 0);
                return Ok(match read(&self.sock, &mut self.stage[..], peer)? {
                    Some(0) => return Err(closed_mid_frame(peer, 0, h.len as usize)),
                    Some(n) => {
                        self.hi = n;
                        true
                    }
                    None => false,
                });
            }
        }
        let len = h.len as usize;
        let slot = self.slot_mut(len)?;
        let k = (self.hi - self.lo).min(len - self.have);
        if k > 0 {
            slot[self.have..self.have + k].copy_from_slice(&self.stage[self.lo..self.lo + k]);
            self.lo += k;
            self.have += k;
        }
        if self.have < len {
            match read(&self.sock, &mut slot[self.have..], peer)? {
                Some(0) => return Err(closed_mid_frame(peer, self.have, len)),
                Some(n) => self.have += n,
                None => return Ok(false),
            }
        }
        if self.have == len {
            self.complete(h, peer)?;
        }
        Ok(true)
    }

    /// The payload area of the frame being read (its slot's first `len` bytes).
    fn slot_mut<'s>(&self, len: usize) -> Result<&'s mut [u8], End> {
        let slot = self.filling.ok_or_else(|| {
            End::Failed(TransportError::InvalidArgument(
                "TCP receive: a frame without a slot (internal error)".into(),
            ))
        })?;
        assert!(len <= self.slots.size);
        // SAFETY: `slot < count` (`base` checks) and `len <= size`, so the range is
        // inside the allocation. The slot was taken from `free` for this frame: it is
        // neither filled nor lent to the consumer, and nothing else writes it. Only
        // the thread holding this `Inbound`'s mutex (the caller, through `&mut self`
        // of `step`) touches it, and the slice does not outlive that call.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.slots.base(slot), len) })
    }

    fn complete(&mut self, h: Header, peer: &str) -> Result<(), End> {
        let len = h.len as usize;
        if h.flags & FLAG_CRC != 0 {
            let got = checksum(self.slot_mut(len)?);
            if got != h.crc {
                return Err(End::Failed(TransportError::Corrupt {
                    peer: peer.to_string(),
                    detail: format!(
                        "checksum mismatch in frame {} ({len} bytes): CRC32 0x{got:08x}, header says 0x{:08x}",
                        self.seq, h.crc
                    ),
                }));
            }
        }
        if let Some(slot) = self.filling.take() {
            self.filled.push_back((slot, len));
        }
        self.seq += self.stride;
        self.cur = None;
        Ok(())
    }
}

/// One non-blocking read: `Some(n)` bytes (0 = end of stream), `None` when it would
/// block.
fn read(sock: &Socket, buf: &mut [u8], peer: &str) -> Result<Option<usize>, End> {
    loop {
        match (&*sock).read(buf) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(End::Failed(gone_or_io(peer, "recv", e))),
        }
    }
}

fn closed_mid_frame(peer: &str, got: usize, want: usize) -> End {
    End::Failed(TransportError::PeerGone {
        peer: peer.to_string(),
        op: "recv",
        detail: format!("connection closed mid-frame ({got} of {want} bytes read)"),
    })
}

/// A connection error as [`TransportError::PeerGone`] when it means the peer went
/// away, else as an I/O error.
pub(crate) fn gone_or_io(peer: &str, op: &'static str, e: std::io::Error) -> TransportError {
    match e.kind() {
        ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe
        | ErrorKind::UnexpectedEof
        | ErrorKind::NotConnected => TransportError::PeerGone {
            peer: peer.to_string(),
            op,
            detail: e.to_string(),
        },
        _ => TransportError::io(peer, op, e),
    }
}

/// The same error again (a failed stream reports its failure to every later call).
fn duplicate(e: &TransportError, peer: &str) -> TransportError {
    match e {
        TransportError::PeerGone { peer, op, detail } => TransportError::PeerGone {
            peer: peer.clone(),
            op,
            detail: detail.clone(),
        },
        TransportError::Corrupt { peer, detail } => TransportError::Corrupt {
            peer: peer.clone(),
            detail: detail.clone(),
        },
        TransportError::Io {
            peer,
            context,
            source,
        } => TransportError::Io {
            peer: peer.clone(),
            context: context.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        other => TransportError::PeerGone {
            peer: peer.to_string(),
            op: "recv",
            detail: other.to_string(),
        },
    }
}
