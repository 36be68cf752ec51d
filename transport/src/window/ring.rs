//! Point-to-point rings: a single-producer single-consumer ring of variable-size
//! records, non-blocking on both ends, for the progress engine.
//!
//! The ring a rank writes to a local peer lives in the peer's window (`in_window`);
//! the rings that bridge a TCP connection to the engine live on the heap
//! ([`local_pair`]). A record is a 64-byte header (total size, kind, payload length
//! and six words for the caller) followed by the payload, padded to 64 bytes; a record
//! never wraps (a padding record fills the end of the ring instead). `head` and `tail`
//! are byte counters that only grow, each in its own cache-line block. After
//! publishing, the producer rings the consumer's doorbell if it sleeps; after
//! releasing, the consumer rings the producer's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

use super::Window;
use super::layout::{BLOCK, Layout};
use crate::shm::Region;
use crate::{Result, TransportError};

const ALIGN: usize = 64;
const HEADER: usize = 64;
const KIND_PAD: u32 = 0;

/// Words a record carries besides its payload, for the caller's protocol.
pub type Words = [u64; 6];

#[repr(C, align(64))]
struct RecordHeader {
    total: u32,
    kind: u32,
    len: u32,
    _pad: u32,
    words: Words,
}

const _: () = assert!(std::mem::size_of::<RecordHeader>() == HEADER);

/// A doorbell in memory kept alive by `_keep`: the futex word and its sleeper flag.
#[derive(Clone)]
pub struct BellRef {
    _keep: Arc<dyn Send + Sync>,
    seq: *const AtomicU32,
    sleeping: *const AtomicU32,
}

// SAFETY: the pointers target atomics inside memory that `_keep` keeps alive; atomics
// may be used from any thread.
unsafe impl Send for BellRef {}
// SAFETY: as above.
unsafe impl Sync for BellRef {}

impl BellRef {
    /// The point-to-point doorbell of member `m` of `window`.
    pub fn of_window(window: &Arc<Window>, m: usize) -> BellRef {
        let b = window.p2p_bell(m);
        BellRef {
            seq: b.seq,
            sleeping: b.sleeping,
            _keep: window.clone(),
        }
    }

    /// A doorbell of its own, on the heap (for a thread that bridges a socket).
    pub fn standalone() -> BellRef {
        let words = Arc::new([AtomicU32::new(0), AtomicU32::new(0)]);
        BellRef {
            seq: &words[0],
            sleeping: &words[1],
            _keep: words,
        }
    }

    fn words(&self) -> (&AtomicU32, &AtomicU32) {
        // SAFETY: see the Send impl: `_keep` keeps the atomics alive as long as self.
        unsafe { (&*self.seq, &*self.sleeping) }
    }

    /// Wakes the owner if it sleeps.
    pub fn ring(&self) {
        let (seq, sleeping) = self.words();
        fence(Ordering::SeqCst);
        if sleeping.load(Ordering::Relaxed) != 0 {
            seq.fetch_add(1, Ordering::Release);
            let _ = rustix::thread::futex::wake(
                seq,
                rustix::thread::futex::Flags::empty(),
                i32::MAX as u32,
            );
        }
    }

    /// Sleeps up to `nap` unless `ready()` or a ring comes first. Several threads
    /// may sleep on one bell (`sleeping` counts them).
    pub fn sleep(&self, nap: std::time::Duration, ready: impl Fn() -> bool) {
        let (seq, sleeping) = self.words();
        sleeping.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let seen = seq.load(Ordering::Acquire);
        if !ready() {
            let ts = rustix::time::Timespec {
                tv_sec: nap.as_secs() as i64,
                tv_nsec: i64::from(nap.subsec_nanos()),
            };
            let _ = rustix::thread::futex::wait(
                seq,
                rustix::thread::futex::Flags::empty(),
                seen,
                Some(&ts),
            );
        }
        sleeping.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where one ring lives.
struct RingMem {
    _keep: Arc<dyn Send + Sync>,
    head: *const AtomicU64,
    tail: *const AtomicU64,
    data: *mut u8,
    size: usize,
    /// Rung by the producer after publishing.
    consumer_bell: BellRef,
    /// Rung by the consumer after releasing.
    producer_bell: BellRef,
}

// SAFETY: the pointers target memory kept alive by `_keep`; the SPSC protocol (one
// RingTx and one RingRx per ring, release/acquire on head and tail) decides who touches
// which bytes.
unsafe impl Send for RingMem {}

impl RingMem {
    fn head(&self) -> &AtomicU64 {
        // SAFETY: see the Send impl.
        unsafe { &*self.head }
    }
    fn tail(&self) -> &AtomicU64 {
        // SAFETY: see the Send impl.
        unsafe { &*self.tail }
    }
    fn header_at(&self, pos: u64) -> *mut RecordHeader {
        // SAFETY: `pos % size` is a multiple of 64 below `size`, so a header fits.
        unsafe { self.data.add((pos % self.size as u64) as usize).cast() }
    }

    fn in_window(window: &Arc<Window>, consumer: usize, producer: usize) -> RingMem {
        let layout: &Layout = window.layout();
        let region: &Arc<Region> = window.region(consumer);
        let base = region.ptr();
        // SAFETY: the layout's ring offsets lie inside every member's region.
        let (head, tail, data) = unsafe {
            (
                base.add(layout.ring_head(producer)) as *const AtomicU64,
                base.add(layout.ring_tail(producer)) as *const AtomicU64,
                base.add(layout.ring_data(producer)),
            )
        };
        RingMem {
            _keep: window.clone(),
            head,
            tail,
            data,
            size: layout.ring_bytes,
            consumer_bell: BellRef::of_window(window, consumer),
            producer_bell: BellRef::of_window(window, producer),
        }
    }
}

/// The producer end of a ring.
pub struct RingTx {
    mem: RingMem,
    tail: u64,
    head_seen: u64,
    /// `(start of the record, total bytes)` of the reserved record.
    reserved: Option<(u64, usize, u32)>,
}

/// The consumer end of a ring.
pub struct RingRx {
    mem: RingMem,
    head: u64,
    tail_seen: u64,
    /// Total bytes of the record returned by the last `try_peek`.
    peeked: Option<usize>,
}

/// A record borrowed from a ring.
#[derive(Debug)]
pub struct Record<'a> {
    /// The producer's kind (never 0).
    pub kind: u32,
    /// The producer's words.
    pub words: Words,
    /// The payload.
    pub payload: &'a [u8],
}

/// The largest payload a ring of `ring_bytes` carries in one record.
pub fn max_payload(ring_bytes: usize) -> usize {
    ring_bytes / 2 - HEADER
}

impl RingTx {
    pub(crate) fn in_window(window: Arc<Window>, to: usize) -> RingTx {
        let mem = RingMem::in_window(&window, to, window.index());
        // Resume from the counters: a ring is written by one RingTx at a time.
        let tail = mem.tail().load(Ordering::Acquire);
        RingTx {
            head_seen: mem.head().load(Ordering::Acquire),
            mem,
            tail,
            reserved: None,
        }
    }

    /// The largest payload of one record.
    pub fn max_payload(&self) -> usize {
        max_payload(self.mem.size)
    }

    /// Room for a record with `len` payload bytes, if the ring has it now; fill it
    /// and [`commit`](Self::commit). Asking again before committing returns the same
    /// record (resized).
    pub fn try_reserve(&mut self, len: usize) -> Result<Option<&mut [u8]>> {
        if len > self.max_payload() {
            return Err(TransportError::InvalidArgument(format!(
                "a ring record of {len} bytes exceeds the ring's largest ({})",
                self.max_payload()
            )));
        }
        let size = self.mem.size as u64;
        let total = (HEADER + len).next_multiple_of(ALIGN);
        let pos = self.tail % size;
        let to_end = (size - pos) as usize;
        let needed = if total > to_end {
            to_end + total
        } else {
            total
        };
        if (size - (self.tail - self.head_seen)) < needed as u64 {
            self.head_seen = self.mem.head().load(Ordering::Acquire);
            if (size - (self.tail - self.head_seen)) < needed as u64 {
                return Ok(None);
            }
        }
        let mut start = self.tail;
        if total > to_end {
            // Fill the end of the ring with a padding record (published with the
            // record itself).
            let pad = self.mem.header_at(start);
            // SAFETY: the bytes from `tail` to the end of the ring are free (checked
            // above) and only this producer writes them until it publishes.
            unsafe {
                (*pad).total = to_end as u32;
                (*pad).kind = KIND_PAD;
                (*pad).len = 0;
            }
            start += to_end as u64;
        }
        self.reserved = Some((start, total, len as u32));
        // SAFETY: the record's bytes are free (checked above), lie inside the ring
        // (`start % size + total <= size`), and belong to this producer until commit;
        // the returned borrow of self prevents a commit while it is alive.
        Ok(Some(unsafe {
            std::slice::from_raw_parts_mut(self.mem.header_at(start).cast::<u8>().add(HEADER), len)
        }))
    }

    /// Publishes the reserved record with `kind` (not 0) and `words`, and wakes the
    /// consumer if it sleeps.
    pub fn commit(&mut self, kind: u32, words: Words) -> Result<()> {
        let Some((start, total, len)) = self.reserved.take() else {
            return Err(TransportError::InvalidArgument(
                "ring commit without a reserved record".into(),
            ));
        };
        if kind == KIND_PAD {
            return Err(TransportError::InvalidArgument(
                "ring record kind 0 is reserved for padding".into(),
            ));
        }
        let h = self.mem.header_at(start);
        // SAFETY: the reserved record is ours until the tail store below.
        unsafe {
            (*h).total = total as u32;
            (*h).kind = kind;
            (*h).len = len;
            (*h).words = words;
        }
        self.tail = start + total as u64;
        self.mem.tail().store(self.tail, Ordering::Release);
        self.mem.consumer_bell.ring();
        Ok(())
    }

    /// True when the consumer has taken every record published so far.
    pub fn is_drained(&mut self) -> bool {
        self.head_seen = self.mem.head().load(Ordering::Acquire);
        self.head_seen == self.tail
    }
}

impl RingRx {
    pub(crate) fn in_window(window: Arc<Window>, from: usize) -> RingRx {
        let mem = RingMem::in_window(&window, window.index(), from);
        let head = mem.head().load(Ordering::Acquire);
        RingRx {
            tail_seen: mem.tail().load(Ordering::Acquire),
            mem,
            head,
            peeked: None,
        }
    }

    /// The next record, if one was published; it stays until [`release`](Self::release).
    pub fn try_peek(&mut self) -> Result<Option<Record<'_>>> {
        loop {
            if self.head == self.tail_seen {
                self.tail_seen = self.mem.tail().load(Ordering::Acquire);
                if self.head == self.tail_seen {
                    return Ok(None);
                }
            }
            let size = self.mem.size as u64;
            let pos = self.head % size;
            let h = self.mem.header_at(self.head);
            // SAFETY: the producer published this header (tail > head, acquired) and
            // does not touch it until we advance head.
            let (total, kind, len) = unsafe { ((*h).total as usize, (*h).kind, (*h).len as usize) };
            let avail = self.tail_seen - self.head;
            if total < ALIGN
                || !total.is_multiple_of(ALIGN)
                || total as u64 > avail
                || pos + total as u64 > size
                || (kind != KIND_PAD && HEADER + len > total)
            {
                return Err(TransportError::Corrupt {
                    peer: "(point-to-point ring)".into(),
                    detail: format!(
                        "bad ring record at byte {}: total {total}, kind {kind}, length {len}",
                        self.head
                    ),
                });
            }
            if kind == KIND_PAD {
                self.head += total as u64;
                continue;
            }
            self.peeked = Some(total);
            // SAFETY: as above; the payload lies inside the record.
            let (words, payload) = unsafe {
                (
                    (*h).words,
                    std::slice::from_raw_parts(h.cast::<u8>().add(HEADER), len),
                )
            };
            return Ok(Some(Record {
                kind,
                words,
                payload,
            }));
        }
    }

    /// Frees the record returned by the last [`try_peek`](Self::try_peek) and wakes
    /// the producer if it sleeps.
    pub fn release(&mut self) {
        if let Some(total) = self.peeked.take() {
            self.head += total as u64;
        }
        self.mem.head().store(self.head, Ordering::Release);
        self.mem.producer_bell.ring();
    }
}

/// A ring on the heap between two threads of this process: `consumer_bell` is rung
/// when a record is published, `producer_bell` when one is released.
pub fn local_pair(
    ring_bytes: usize,
    consumer_bell: BellRef,
    producer_bell: BellRef,
) -> Result<(RingTx, RingRx)> {
    if ring_bytes < 4 * HEADER || !ring_bytes.is_multiple_of(ALIGN) {
        return Err(TransportError::InvalidArgument(format!(
            "a local ring needs a multiple of 64 bytes of at least 256, got {ring_bytes}"
        )));
    }
    let region = Arc::new(Region::heap(2 * BLOCK + ring_bytes).ok_or_else(|| {
        TransportError::Unavailable(format!("allocating a {ring_bytes}-byte ring"))
    })?);
    let base = region.ptr();
    let mem = || RingMem {
        _keep: region.clone(),
        head: base as *const AtomicU64,
        // SAFETY: inside the region (2 blocks of control, then the data).
        tail: unsafe { base.add(BLOCK) } as *const AtomicU64,
        // SAFETY: as above.
        data: unsafe { base.add(2 * BLOCK) },
        size: ring_bytes,
        consumer_bell: consumer_bell.clone(),
        producer_bell: producer_bell.clone(),
    };
    Ok((
        RingTx {
            mem: mem(),
            tail: 0,
            head_seen: 0,
            reserved: None,
        },
        RingRx {
            mem: mem(),
            head: 0,
            tail_seen: 0,
            peeked: None,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two threads push records of random sizes through a small ring; every record
    /// arrives once, in order, intact (padding at the wrap included).
    #[test]
    fn records_of_random_sizes_arrive_in_order_across_wraps() {
        let (a, b) = (BellRef::standalone(), BellRef::standalone());
        let (mut tx, mut rx) = local_pair(4096, a.clone(), b.clone()).unwrap();
        const N: u64 = 20_000;
        let producer = std::thread::spawn(move || {
            let mut x: u64 = 12345;
            for i in 0..N {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let len = (x % 1900) as usize;
                loop {
                    if let Some(buf) = tx.try_reserve(len).unwrap() {
                        for (k, v) in buf.iter_mut().enumerate() {
                            *v = (i as usize + k) as u8;
                        }
                        tx.commit(7, [i, len as u64, 0, 0, 0, 0]).unwrap();
                        break;
                    }
                    b.sleep(std::time::Duration::from_millis(1), || false);
                }
            }
        });
        for i in 0..N {
            loop {
                if let Some(rec) = rx.try_peek().unwrap() {
                    assert_eq!(rec.kind, 7);
                    assert_eq!(rec.words[0], i, "record order");
                    assert_eq!(rec.payload.len() as u64, rec.words[1]);
                    for (k, v) in rec.payload.iter().enumerate() {
                        assert_eq!(*v, (i as usize + k) as u8, "record {i} byte {k}");
                    }
                    rx.release();
                    break;
                }
                a.sleep(std::time::Duration::from_millis(1), || false);
            }
        }
        producer.join().unwrap();
        assert!(rx.try_peek().unwrap().is_none());
    }
}
