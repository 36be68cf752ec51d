//! Where everything lives in a window: the header, the control words (each on its own
//! pair of cache lines), the point-to-point rings and the collective data buffers.
//!
//! ```text
//! 0        header (one page): magic, geometry, owner pid, attach count, closed flag
//! 4096     control page: the collective counter, two doorbells, two small-message lines
//! 8192     ring controls: per member, head and tail of the ring it writes into us
//! ...      ring data: per member, `ring_bytes` (page aligned)
//! ...      collective data: buffers 0 and 1, `data_bytes` each (page aligned)
//! ```
//!
//! Every control word sits alone in a 128-byte block: two ranks writing neighbouring
//! words would otherwise bounce one cache line (or, with the adjacent-line prefetcher,
//! a pair of lines) between their cores.

use std::sync::atomic::{AtomicU32, AtomicU64};

/// "tuttiw1\0", little-endian.
pub(crate) const MAGIC: u64 = 0x0031_7769_7474_7574;
/// Layout version; a mismatch between ranks is a setup error.
pub(crate) const VERSION: u32 = 2;
pub(crate) const PAGE: usize = 4096;
/// Spacing of control words.
pub(crate) const BLOCK: usize = 128;
/// Largest payload of a small-message line (one cache line with its sequence word).
pub const LINE_PAYLOAD: usize = 56;

/// The first page of a window.
#[repr(C)]
pub(crate) struct Header {
    pub magic: AtomicU64,
    pub version: AtomicU32,
    /// Number of members (ranks sharing this host in the group).
    pub members: AtomicU32,
    /// The owner's member index.
    pub index: AtomicU32,
    pub owner_pid: AtomicU32,
    pub data_bytes: AtomicU64,
    pub ring_bytes: AtomicU64,
    /// Number of peers that mapped this window (the owner unlinks its name once
    /// every peer has).
    pub attached: AtomicU32,
    /// Set when the owner gave up (its operation failed, it aborted or it left):
    /// the peers' waits fail instead of waiting for posts that will never come.
    pub closed: AtomicU32,
    /// Address, in the owner's process, of a word peers read once with
    /// `process_vm_readv` to learn whether they may read the owner's memory directly.
    pub probe_addr: AtomicU64,
    /// Where the owner's buffers for the current operation lie, for the members
    /// that read them directly: input then output, each `[0, address]` for the
    /// owner's private memory or `[id + 1, offset]` for shared allocation `id`.
    /// Written by the owner before it posts, read after that post. In its own
    /// block: the owner writes it every operation.
    pub op_source: OwnBlock<[AtomicU64; 4]>,
}

/// A word alone in a 128-byte block (see the module's note on control words).
#[repr(C, align(128))]
pub(crate) struct OwnBlock<T>(pub T);

/// A small-message line: the payload and the sequence number that publishes it, in one
/// cache line, so that a reader gets both with one transfer.
#[repr(C, align(64))]
pub(crate) struct SmallLine {
    pub seq: AtomicU64,
    pub payload: [AtomicU64; LINE_PAYLOAD / 8],
}

/// Offsets of one window geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub members: usize,
    pub data_bytes: usize,
    pub ring_bytes: usize,
}

impl Layout {
    const CONTROL: usize = PAGE;
    /// Control page offsets.
    pub const COUNTER: usize = Self::CONTROL;
    pub const COLL_BELL: usize = Self::CONTROL + BLOCK;
    pub const COLL_SLEEPING: usize = Self::CONTROL + 2 * BLOCK;
    pub const P2P_BELL: usize = Self::CONTROL + 3 * BLOCK;
    pub const P2P_SLEEPING: usize = Self::CONTROL + 4 * BLOCK;
    pub const SMALL: [usize; 2] = [Self::CONTROL + 5 * BLOCK, Self::CONTROL + 6 * BLOCK];
    const RING_CONTROLS: usize = 2 * PAGE;
    /// Bytes of ring control per member: head and tail, one block each.
    const RING_CONTROL: usize = 2 * BLOCK;

    /// Head (bytes consumed) of the ring member `from` writes into this window.
    pub fn ring_head(&self, from: usize) -> usize {
        Self::RING_CONTROLS + from * Self::RING_CONTROL
    }

    /// Tail (bytes published) of that ring.
    pub fn ring_tail(&self, from: usize) -> usize {
        self.ring_head(from) + BLOCK
    }

    fn rings_start(&self) -> usize {
        (Self::RING_CONTROLS + self.members * Self::RING_CONTROL).next_multiple_of(PAGE)
    }

    /// Data of the ring member `from` writes into this window.
    pub fn ring_data(&self, from: usize) -> usize {
        self.rings_start() + from * self.ring_bytes
    }

    fn data_start(&self) -> usize {
        self.rings_start() + self.members * self.ring_bytes
    }

    /// Collective buffer `b` (0 or 1).
    pub fn data(&self, b: usize) -> usize {
        self.data_start() + b * self.data_bytes
    }

    /// Total bytes of a window.
    pub fn total(&self) -> usize {
        self.data_start() + 2 * self.data_bytes
    }
}

const _: () = assert!(std::mem::size_of::<Header>() <= PAGE);
const _: () = assert!(std::mem::size_of::<SmallLine>() == 64);
const _: () = assert!(Layout::SMALL[1] + 64 <= 2 * PAGE);
