//! Pairwise-exchange all_to_all.

use tutti_transport::ops;

use crate::segments::{chunk_range, chunks_in};
use crate::{Result, Schedule, TransportError, check};

/// Rank `r` sends block `i` of its `input` to rank `i` and receives rank `i`'s block
/// `r` into block `i` of its `output` (both `size * L` bytes). In step `k` every rank
/// sends to `r + k` and receives from `r - k`, chunk by chunk.
/// Bus bandwidth factor `(n - 1) / n`.
pub fn all_to_all(ring: &mut Schedule<'_>, input: &[u8], output: &mut [u8]) -> Result<()> {
    check(ring, "all_to_all", input.len(), 1)?;
    let n = ring.size;
    if !input.len().is_multiple_of(n) || output.len() != input.len() {
        return Err(TransportError::InvalidArgument(format!(
            "all_to_all: input of {} and output of {} bytes must be equal and a multiple of the group size {n}",
            input.len(),
            output.len()
        )));
    }
    let l = input.len() / n;
    let block = |i: usize| i * l..(i + 1) * l;
    output[block(ring.rank)].copy_from_slice(&input[block(ring.rank)]);
    if n == 1 || l == 0 {
        return Ok(());
    }
    let (chunk, dl) = (ring.chunk, ring.deadline);
    for k in 1..n {
        let to = ring.offset(k as isize);
        let from = ring.offset(-(k as isize));
        for c in 0..chunks_in(l, chunk) {
            let s = chunk_range(&(0..l), chunk, c);
            let (tx, rx) = ring.links.pair(to, from)?;
            let src = block(to);
            ops::send(
                tx,
                &input[src.start + s.start..src.start + s.end],
                chunk,
                dl,
            )?;
            let dst = block(from);
            ops::recv(rx, &mut output[dst.start + s.start..dst.start + s.end], dl)?;
        }
    }
    Ok(())
}
