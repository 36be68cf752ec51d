//! A single-producer single-consumer FIFO of fixed-size slots in a [`Region`]: the
//! data path of the shared-memory and in-process links.
//!
//! Layout: a header (magic, geometry, the producer's `tail` and the consumer's
//! `head` counters on their own cache lines, the futex words each side sleeps on),
//! then one metadata record per slot, then the page-aligned slots. The producer
//! fills slot `tail % slots`, writes its metadata and publishes with a release store
//! of `tail + 1`; the consumer reads slot `head % slots` in place and frees it with a
//! release store of `head + 1`. A message is either inline bytes in the slot or a
//! descriptor of a buffer in the producer's memory for a single-copy read.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::region::Region;
use crate::GeometryError;
use crate::wait::WakeWords;

const MAGIC: u64 = 0x0031_6669_7474_7574; // "tuttif1" little-endian
const HEADER_BYTES: usize = 512;
const META_BYTES: usize = 64;
const PAGE: usize = 4096;

/// Message kinds in [`SlotMeta::kind`].
pub(crate) const KIND_INLINE: u32 = 0;
/// The payload stays in the producer's memory (single-copy read).
pub(crate) const KIND_REMOTE: u32 = 1;

/// Header flag: inline payloads carry a CRC32 checked by the consumer.
pub(crate) const FLAG_CHECKSUM: u32 = 1;

#[repr(C, align(64))]
struct Line<T>(T);

#[repr(C)]
pub(crate) struct Header {
    magic: AtomicU64,
    slots: AtomicU32,
    slot_size: AtomicU32,
    flags: AtomicU32,
    /// pid of the consumer (the segment's creator) and of the producer.
    pub consumer_pid: AtomicU32,
    pub producer_pid: AtomicU32,
    /// Set by the producer once it has mapped the segment (the creator may unlink).
    pub attached: AtomicU32,
    /// Set when an endpoint is dropped.
    pub producer_closed: AtomicU32,
    pub consumer_closed: AtomicU32,
    /// Address in the producer of a probe word for the single-copy check.
    pub probe_addr: AtomicU64,
    /// 1 when the consumer can read the producer's memory (single copy), 2 when not.
    pub single_copy: AtomicU32,
    tail: Line<AtomicU64>,
    data_seq: Line<AtomicU32>,
    data_sleeping: Line<AtomicU32>,
    head: Line<AtomicU64>,
    space_seq: Line<AtomicU32>,
    space_sleeping: Line<AtomicU32>,
}

const _: () = assert!(std::mem::size_of::<Header>() <= HEADER_BYTES);

/// Per-slot message metadata.
#[repr(C, align(64))]
pub(crate) struct SlotMeta {
    pub len: AtomicU64,
    pub kind: AtomicU32,
    pub crc: AtomicU32,
    pub remote_addr: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<SlotMeta>() == META_BYTES);

/// Geometry of a FIFO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FifoConfig {
    /// Number of slots (messages in flight).
    pub slots: u32,
    /// Bytes per slot (the largest message); a multiple of 4096.
    pub slot_size: u32,
    /// Checksum inline payloads.
    pub checksum: bool,
}

impl Default for FifoConfig {
    fn default() -> Self {
        FifoConfig {
            slots: 8,
            slot_size: 64 << 10,
            checksum: false,
        }
    }
}

impl FifoConfig {
    /// Total bytes of the region this geometry needs.
    pub(crate) fn region_bytes(&self) -> usize {
        data_offset(self.slots) + self.slots as usize * self.slot_size as usize
    }

    /// Checks the geometry.
    pub(crate) fn validate(&self) -> Result<(), GeometryError> {
        if self.slots == 0 || self.slots > 1024 {
            return Err(GeometryError::OutOfRange {
                what: "FIFO slots",
                rule: "in 1..=1024",
                got: u64::from(self.slots),
            });
        }
        if self.slot_size == 0
            || !(self.slot_size as usize).is_multiple_of(PAGE)
            || self.slot_size > 1 << 30
        {
            return Err(GeometryError::OutOfRange {
                what: "FIFO slot size",
                rule: "a positive multiple of 4096 up to 1 GiB",
                got: u64::from(self.slot_size),
            });
        }
        Ok(())
    }
}

fn data_offset(slots: u32) -> usize {
    (HEADER_BYTES + slots as usize * META_BYTES).next_multiple_of(PAGE)
}

/// Shared access to the FIFO structure in a region.
pub(crate) struct Fifo {
    region: Arc<Region>,
    slots: u32,
    slot_size: usize,
    flags: u32,
}

impl Fifo {
    /// Writes a fresh header into `region` (which must be zeroed and at least
    /// `config.region_bytes()` long).
    pub(crate) fn init(region: Arc<Region>, config: FifoConfig) -> Fifo {
        debug_assert!(region.len() >= config.region_bytes());
        let f = Fifo {
            region,
            slots: config.slots,
            slot_size: config.slot_size as usize,
            flags: if config.checksum { FLAG_CHECKSUM } else { 0 },
        };
        let h = f.header();
        h.slots.store(config.slots, Ordering::Relaxed);
        h.slot_size.store(config.slot_size, Ordering::Relaxed);
        h.flags.store(f.flags, Ordering::Relaxed);
        h.magic.store(MAGIC, Ordering::Release);
        f
    }

    /// Validates the header a peer wrote into `region`.
    pub(crate) fn open(region: Arc<Region>) -> Result<Fifo, GeometryError> {
        if region.len() < HEADER_BYTES {
            return Err(GeometryError::TooSmall {
                what: "FIFO",
                len: region.len(),
                needed: HEADER_BYTES,
            });
        }
        // SAFETY: the region is at least HEADER_BYTES long and page aligned.
        let h = unsafe { &*(region.ptr() as *const Header) };
        if h.magic.load(Ordering::Acquire) != MAGIC {
            return Err(GeometryError::BadMagic { what: "FIFO" });
        }
        let config = FifoConfig {
            slots: h.slots.load(Ordering::Relaxed),
            slot_size: h.slot_size.load(Ordering::Relaxed),
            checksum: h.flags.load(Ordering::Relaxed) & FLAG_CHECKSUM != 0,
        };
        config.validate()?;
        if region.len() < config.region_bytes() {
            return Err(GeometryError::TooSmall {
                what: "FIFO",
                len: region.len(),
                needed: config.region_bytes(),
            });
        }
        Ok(Fifo {
            region,
            slots: config.slots,
            slot_size: config.slot_size as usize,
            flags: h.flags.load(Ordering::Relaxed),
        })
    }

    pub(crate) fn header(&self) -> &Header {
        // SAFETY: the region starts with a Header (init/open checked the size) and
        // lives as long as self; Header holds only atomics.
        unsafe { &*(self.region.ptr() as *const Header) }
    }

    pub(crate) fn meta(&self, index: u64) -> &SlotMeta {
        let i = (index % u64::from(self.slots)) as usize;
        // SAFETY: the metadata array lies inside the region (region_bytes), each
        // record 64-byte aligned, holding only atomics.
        unsafe { &*(self.region.ptr().add(HEADER_BYTES + i * META_BYTES) as *const SlotMeta) }
    }

    /// Raw pointer to the payload of slot `index % slots`.
    pub(crate) fn slot_ptr(&self, index: u64) -> *mut u8 {
        let i = (index % u64::from(self.slots)) as usize;
        // SAFETY: the slot lies inside the region (region_bytes).
        unsafe {
            self.region
                .ptr()
                .add(data_offset(self.slots) + i * self.slot_size)
        }
    }

    pub(crate) fn slots(&self) -> u64 {
        u64::from(self.slots)
    }

    pub(crate) fn slot_size(&self) -> usize {
        self.slot_size
    }

    pub(crate) fn checksum(&self) -> bool {
        self.flags & FLAG_CHECKSUM != 0
    }

    pub(crate) fn tail(&self) -> &AtomicU64 {
        &self.header().tail.0
    }

    pub(crate) fn head(&self) -> &AtomicU64 {
        &self.header().head.0
    }

    /// The words the consumer sleeps on, waiting for data.
    pub(crate) fn data_words(&self, shared: bool) -> WakeWords<'_> {
        let h = self.header();
        WakeWords {
            seq: &h.data_seq.0,
            sleeping: &h.data_sleeping.0,
            shared,
        }
    }

    /// The words the producer sleeps on, waiting for space (or for an ack).
    pub(crate) fn space_words(&self, shared: bool) -> WakeWords<'_> {
        let h = self.header();
        WakeWords {
            seq: &h.space_seq.0,
            sleeping: &h.space_sleeping.0,
            shared,
        }
    }
}
