//! # tutti-ring
//!
//! Ring schedules for the collectives, written against `tutti-transport`'s link
//! halves and fused primitives. This crate knows no dtypes and no devices: buffers
//! are bytes, reductions go through a [`ByteReducer`], and every length is a whole
//! number of `elem`-byte elements.
//!
//! Every schedule is pipelined: the buffer is cut into per-rank segments and each
//! segment into chunks of at most [`Schedule::chunk`] bytes, and the steps run chunk by
//! chunk, so that no link ever holds more than a chunk or two in flight. That keeps
//! bounded link buffers deadlock-free and overlaps the steps of neighbouring ranks.
//! The result does not depend on timing: every rank reduces in a fixed order.

mod all_gather;
mod all_reduce;
mod all_to_all;
mod chain;
mod direct;
mod gather;
mod halving_doubling;
mod reduce_scatter;
mod segments;

pub use all_gather::all_gather;
pub use all_reduce::{all_reduce, all_reduce_into};
pub use all_to_all::{all_to_all, all_to_all_v};
pub use chain::{broadcast, reduce};
pub use direct::{all_reduce_direct, all_reduce_direct_into};
pub use gather::{gather, scatter};
pub use halving_doubling::all_reduce_halving_doubling;
pub use reduce_scatter::reduce_scatter;
pub use segments::{chunk_range, chunks_in, segment};
pub use tutti_transport::{
    ByteReducer, Deadline, Links, RecvHalf, Result, SendHalf, TransportError,
};

/// One rank's view of a collective schedule over links (ring, chain or tree): who it
/// is, its links, the pipeline's chunk and the deadline. Shared by the ring and tree
/// crates.
pub struct Schedule<'a> {
    /// This rank (0-based, in the ring order).
    pub rank: usize,
    /// Number of ranks.
    pub size: usize,
    /// Links to the other ranks.
    pub links: &'a mut dyn Links,
    /// Pipeline chunk in bytes: a multiple of every element size used (16 bytes
    /// covers them all) and at most the links' `max_message`.
    pub chunk: usize,
    /// When every blocking wait gives up.
    pub deadline: Deadline,
    /// Ring all_reduce sends the next round's own chunk before the round's last
    /// receive, where the link to the next rank has a [`SendHalf::depth`] of 2.
    pub ahead: bool,
}

impl Schedule<'_> {
    /// The next rank in the ring.
    pub fn next(&self) -> usize {
        (self.rank + 1) % self.size
    }

    /// The previous rank in the ring.
    pub fn prev(&self) -> usize {
        (self.rank + self.size - 1) % self.size
    }

    /// `(rank + k) mod size` for any integer `k`.
    pub fn offset(&self, k: isize) -> usize {
        let n = self.size as isize;
        ((self.rank as isize + k) % n + n) as usize % self.size
    }
}

/// Checks the arguments every schedule shares (rank, whole elements, chunk).
pub fn check(ring: &Schedule<'_>, what: &str, len: usize, elem: usize) -> Result<()> {
    if ring.size == 0 || ring.rank >= ring.size {
        return Err(TransportError::InvalidArgument(format!(
            "{what}: rank {} is outside a ring of {}",
            ring.rank, ring.size
        )));
    }
    if elem == 0 || !len.is_multiple_of(elem) {
        return Err(TransportError::InvalidArgument(format!(
            "{what}: {len} bytes is not a whole number of {elem}-byte elements"
        )));
    }
    if ring.chunk < elem || !ring.chunk.is_multiple_of(elem) {
        return Err(TransportError::InvalidArgument(format!(
            "{what}: chunk of {} bytes is not a positive multiple of the {elem}-byte element",
            ring.chunk
        )));
    }
    Ok(())
}

/// Checks that an out-of-place schedule's `input`, when given, is as long as `out`.
pub(crate) fn check_input(what: &str, input: Option<&[u8]>, out: &[u8]) -> Result<()> {
    match input {
        Some(i) if i.len() != out.len() => Err(TransportError::InvalidArgument(format!(
            "{what}: input of {} bytes, output of {}",
            i.len(),
            out.len()
        ))),
        _ => Ok(()),
    }
}

/// With one rank or no bytes there is nothing to exchange: copies `input` (when
/// given) to `out` and returns true.
pub(crate) fn nothing_to_exchange(
    ring: &Schedule<'_>,
    input: Option<&[u8]>,
    out: &mut [u8],
) -> bool {
    if ring.size > 1 && !out.is_empty() {
        return false;
    }
    if let Some(i) = input {
        tutti_transport::copy::copy_slice(out, i);
    }
    true
}
