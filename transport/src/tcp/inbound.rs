//! One socket's receiving side: frames read without blocking into a ring of slots,
//! by whichever thread of this rank is waiting (see [`super::progress`]); no thread
//! of its own.
//!
//! At a frame boundary the socket is read into a small stage, so that a small frame
//! arrives with its header in one `recv`; the rest of a large payload is read
//! straight into its slot. After a large frame, the next one is expected large too:
//! its header, pad and payload are read straight into a slot in one `recv`, and
//! whatever came after the frame's end goes to the stage (two `recv`s per 64 KiB
//! frame cost ~0.8 us more than one on loopback, bench/RESULTS.md).

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
/// Where in its (page-aligned) slot a frame read straight in starts: its header ends
/// 64 bytes in, so that the payload starts 64-byte aligned whether a pad follows or
/// not. (Measured against a header 104 bytes in, payload at 128 or 192: the 64 KiB
/// 2-rank all_reduce over TCP took ~1 us longer, medians of 6 runs 26.9 against
/// 25.7 us; at 0, payload unaligned, 25.9; bench/RESULTS.md.)
const LEAD: usize = 64 - HEADER_LEN;
/// Where the payload of a staged frame goes in its slot (as that of a padded frame
/// read straight in), and so the bytes of every slot before the longest payload.
const PREFIX: usize = LEAD + HEADER_LEN + PAD_LEN;
const _: () = assert!(HEADER_LEN <= 64 && PREFIX.is_multiple_of(64));

/// Why a socket delivers nothing more (typed: callers decide on the variant).
pub(crate) enum End {
    /// The peer closed the connection cleanly at a frame boundary.
    Closed,
    /// Reading failed: reset, closed mid-frame, or a frame broke the protocol or its
    /// checksum.
    Failed(TransportError),
}

/// `count` slots of `size` bytes on the heap, each starting on a page.
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
        let size = size.next_multiple_of(4096);
        let bytes = count.checked_mul(size).filter(|&b| b > 0);
        let layout = bytes
            .and_then(|b| Layout::from_size_align(b, 4096).ok())
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
    /// Complete frames in arrival order: (slot, payload offset in it, payload length).
    filled: VecDeque<(usize, usize, usize)>,
    /// The slot the current frame's payload goes to, and where in it.
    filling: Option<usize>,
    at: usize,
    /// The frame being read, how many bytes of its pad are still to skip, and how
    /// many payload bytes are in.
    cur: Option<Header>,
    skip: usize,
    have: usize,
    /// Sequence number of the next frame, and the step between this socket's frames.
    seq: u64,
    stride: u64,
    max_len: usize,
    /// Payload length of the last complete frame: from [`STAGE`] up, the next frame
    /// is read straight into a slot.
    last_len: usize,
    /// Bytes read past a frame, `lo..hi`; [`STAGE`] long, longer only while it holds
    /// more than that read past a frame that was shorter than the one before.
    stage: Vec<u8>,
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
            slots: Slots::new(count, PREFIX + max_len)?,
            free: (0..count).rev().collect(),
            filled: VecDeque::with_capacity(count),
            filling: None,
            at: PREFIX,
            cur: None,
            skip: 0,
            have: 0,
            seq: first_seq,
            stride,
            max_len,
            last_len: 0,
            stage: vec![0; STAGE],
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
        let (slot, at, len) = self.filled[0];
        // SAFETY: `at + len` is within the slot (checked when the frame was read).
        (unsafe { self.slots.base(slot).add(at) }.cast_const(), len)
    }

    /// Frees the head slot.
    pub(crate) fn release(&mut self) -> bool {
        match self.filled.pop_front() {
            Some((slot, _, _)) => {
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
                self.at = PREFIX;
                if h.len == 0 {
                    self.complete(h, peer)?;
                }
                return Ok(true);
            }
            if self.lo == self.hi {
                (self.lo, self.hi) = (0, 0);
                if self.stage.len() > STAGE {
                    self.stage.truncate(STAGE);
                    self.stage.shrink_to_fit();
                }
                if self.last_len >= STAGE {
                    return self.read_direct(peer);
                }
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
        let slot = self.payload_mut(len)?;
        let k = (self.hi - self.lo).min(len - self.have);
        if k > 0 {
            crate::copy::copy_slice(
                &mut slot[self.have..self.have + k],
                &self.stage[self.lo..self.lo + k],
            );
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

    /// At a frame boundary with nothing staged, after a large frame: one read of up
    /// to the last frame's length (with header and pad) straight into the free slot
    /// filled next. What follows the frame's end in it goes to the stage.
    fn read_direct(&mut self, peer: &str) -> Result<bool, End> {
        let Some(&slot) = self.free.last() else {
            return Ok(false);
        };
        let room = PREFIX + self.last_len.min(self.max_len);
        let area = self.area(slot, room);
        let n = match read(&self.sock, &mut area[LEAD..], peer)? {
            None => return Ok(false),
            Some(0) => return Err(End::Closed),
            Some(n) => n,
        };
        let got = &area[LEAD..LEAD + n];
        if n < HEADER_LEN {
            self.stage[..n].copy_from_slice(got);
            self.hi = n;
            return Ok(true);
        }
        let mut b = [0u8; HEADER_LEN];
        b.copy_from_slice(&got[..HEADER_LEN]);
        let h = Header::decode(&b, self.seq, self.max_len, peer).map_err(End::Failed)?;
        let pad = if h.flags & FLAG_PAD != 0 { PAD_LEN } else { 0 };
        let len = h.len as usize;
        let after = n - HEADER_LEN;
        self.cur = Some(h);
        self.filling = self.free.pop();
        if after < pad {
            // The pad is still arriving: the payload goes where a staged one does.
            (self.skip, self.have, self.at) = (pad - after, 0, PREFIX);
            return Ok(true);
        }
        self.at = LEAD + HEADER_LEN + pad;
        self.skip = 0;
        self.have = (after - pad).min(len);
        let past = &got[HEADER_LEN + pad + self.have..];
        if !past.is_empty() {
            if past.len() > self.stage.len() {
                self.stage.resize(past.len(), 0);
            }
            crate::copy::copy_slice(&mut self.stage[..past.len()], past);
            self.hi = past.len();
        }
        if self.have == len {
            self.complete(h, peer)?;
        }
        Ok(true)
    }

    /// The first `room` bytes of free slot `slot`, for a frame read straight in.
    fn area<'s>(&self, slot: usize, room: usize) -> &'s mut [u8] {
        assert!(room <= self.slots.size);
        // SAFETY: `slot < count` (`base` checks) and `room <= size`, so the range is
        // inside the allocation. The slot is free: neither filled nor lent to the
        // consumer, and nothing else writes it. Only the thread holding this
        // `Inbound`'s mutex (the caller, through `&mut self` of `step`) touches it,
        // and the slice does not outlive that call.
        unsafe { std::slice::from_raw_parts_mut(self.slots.base(slot), room) }
    }

    /// The payload area of the frame being read (`len` bytes at `at` in its slot).
    fn payload_mut<'s>(&self, len: usize) -> Result<&'s mut [u8], End> {
        let slot = self.filling.ok_or_else(|| {
            End::Failed(TransportError::InvalidArgument(
                "TCP receive: a frame without a slot (internal error)".into(),
            ))
        })?;
        assert!(self.at + len <= self.slots.size);
        // SAFETY: `slot < count` (`base` checks) and `at + len <= size`, so the range
        // is inside the allocation. The slot was taken from `free` for this frame: it
        // is neither filled nor lent to the consumer, and nothing else writes it. Only
        // the thread holding this `Inbound`'s mutex (the caller, through `&mut self`
        // of `step`) touches it, and the slice does not outlive that call.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.slots.base(slot).add(self.at), len) })
    }

    fn complete(&mut self, h: Header, peer: &str) -> Result<(), End> {
        let len = h.len as usize;
        if h.flags & FLAG_CRC != 0 {
            let got = checksum(self.payload_mut(len)?);
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
            self.filled.push_back((slot, self.at, len));
        }
        self.last_len = len;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    /// A connected loopback pair: the writer, and an `Inbound` of 4 slots on the
    /// other end.
    fn pair(max_len: usize) -> (TcpStream, Inbound) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let w = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (r, _) = l.accept().unwrap();
        w.set_nodelay(true).unwrap();
        r.set_nonblocking(true).unwrap();
        (w, Inbound::new(Socket::from(r), 0, 1, 4, max_len).unwrap())
    }

    fn frame(seq: u64, payload: &[u8], pad: bool, crc: bool) -> Vec<u8> {
        let h = Header {
            flags: if crc { FLAG_CRC } else { 0 } | if pad { FLAG_PAD } else { 0 },
            seq,
            len: payload.len() as u32,
            crc: if crc { checksum(payload) } else { 0 },
        };
        let mut v = h.encode().to_vec();
        if pad {
            v.extend_from_slice(&[0; PAD_LEN]);
        }
        v.extend_from_slice(payload);
        v
    }

    fn payload(len: usize, seed: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i * 31 + seed * 7 + i / 251) as u8)
            .collect()
    }

    /// Reads until a message waits (at most 5 s), returns a copy of it and frees it.
    fn next(ib: &mut Inbound) -> Vec<u8> {
        let t = Instant::now();
        loop {
            ib.pump("test peer", true);
            if ib.ready() {
                break;
            }
            assert!(!ib.exhausted(), "stream ended: {}", ib.failure("test peer"));
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "no message within 5 s"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        let (p, n) = ib.front();
        // SAFETY: `front` lends the head message's `n` bytes until `release`.
        let v = unsafe { std::slice::from_raw_parts(p, n) }.to_vec();
        assert!(ib.release());
        v
    }

    /// Frames queued back to back after large ones: each large frame makes the next
    /// read go straight into a slot with room for as much again, which swallows the
    /// small frames behind it (more than the 8 KiB stage holds, so the stage grows)
    /// and the start of the next large one. Every frame arrives whole and in order,
    /// with and without pads and checksums.
    #[test]
    fn frames_after_a_large_one_arrive_whole_whatever_follows_them() {
        for crc in [false, true] {
            let (mut w, mut ib) = pair(1 << 20);
            let sizes = [
                (65_536, false),
                (65_536, true),
                (8, false),
                (30_000, false),
                (30_000, true),
                (0, false),
                (3, false),
                (65_536 + 8, false),
                (100_000, true),
                (20, false),
                (9_000, false),
                (8_192, true),
                (65_536, false),
            ];
            let mut bytes = Vec::new();
            for (i, &(len, pad)) in sizes.iter().enumerate() {
                bytes.extend(frame(i as u64, &payload(len, i), pad, crc));
            }
            let writer = std::thread::spawn(move || w.write_all(&bytes).map(|()| w));
            // Let it all queue up before the first read.
            std::thread::sleep(Duration::from_millis(50));
            for (i, &(len, _)) in sizes.iter().enumerate() {
                assert_eq!(
                    next(&mut ib),
                    payload(len, i),
                    "frame {i} ({len} bytes), crc {crc}"
                );
            }
            let _w = writer.join().unwrap().unwrap();
        }
    }

    /// After a large frame, the next one arrives in pieces split inside its header,
    /// inside its pad and inside its payload: each piece is read as it comes, and the
    /// frame arrives whole.
    #[test]
    fn a_frame_split_anywhere_after_a_large_one_arrives_whole() {
        for pad in [false, true] {
            let len = 20_000;
            let head = HEADER_LEN + if pad { PAD_LEN } else { 0 };
            for cuts in [
                vec![1],
                vec![10, 23],
                vec![HEADER_LEN],
                vec![HEADER_LEN + 1, head + 5],
                vec![HEADER_LEN + 30],
                vec![head, head + 1, head + 8191],
                vec![5, head + 100, head + len - 1],
            ] {
                let (mut w, mut ib) = pair(1 << 20);
                w.write_all(&frame(0, &payload(65_536, 0), false, true))
                    .unwrap();
                assert_eq!(next(&mut ib), payload(65_536, 0));
                let f = frame(1, &payload(len, 1), pad, true);
                let mut from = 0;
                for &cut in cuts.iter().filter(|&&c| c < f.len()) {
                    w.write_all(&f[from..cut]).unwrap();
                    from = cut;
                    std::thread::sleep(Duration::from_millis(5));
                    ib.pump("test peer", true);
                    assert!(
                        !ib.ready(),
                        "frame complete after {cut} of {} bytes",
                        f.len()
                    );
                    assert!(!ib.exhausted(), "{}", ib.failure("test peer"));
                }
                w.write_all(&f[from..]).unwrap();
                assert_eq!(next(&mut ib), payload(len, 1), "pad {pad}, cuts {cuts:?}");
                // And the link goes on.
                w.write_all(&frame(2, &payload(100, 2), false, false))
                    .unwrap();
                assert_eq!(next(&mut ib), payload(100, 2));
            }
        }
    }

    /// A broken header read straight into a slot fails the stream with the reason.
    #[test]
    fn a_bad_header_after_a_large_frame_fails_the_stream() {
        let (mut w, mut ib) = pair(1 << 20);
        w.write_all(&frame(0, &payload(65_536, 0), false, false))
            .unwrap();
        assert_eq!(next(&mut ib), payload(65_536, 0));
        let mut bad = frame(1, &payload(1000, 1), false, false);
        bad[0] ^= 0xff;
        w.write_all(&bad).unwrap();
        let t = Instant::now();
        while !ib.exhausted() && t.elapsed() < Duration::from_secs(5) {
            ib.pump("test peer", true);
            std::thread::sleep(Duration::from_micros(200));
        }
        assert!(ib.failed());
        let e = ib.failure("test peer").to_string();
        assert!(e.contains("bad frame magic"), "{e}");
    }
}
