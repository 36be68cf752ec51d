//! Ring all_gather.

use tutti_transport::ops;

use crate::segments::{chunk_range, chunks_in};
use crate::{Result, Schedule, TransportError, check};

/// Gathers every rank's `input` (the same length `L` everywhere) into `output`
/// (`size * L` bytes, rank `i`'s input at `i * L`) on every rank.
/// Bus bandwidth factor `(n - 1) / n`.
pub fn all_gather(ring: &mut Schedule<'_>, input: &[u8], output: &mut [u8]) -> Result<()> {
    check(ring, "all_gather", input.len(), 1)?;
    let n = ring.size;
    let l = input.len();
    if output.len() != n * l {
        return Err(TransportError::InvalidArgument(format!(
            "all_gather: output of {} bytes, expected {n} x {l}",
            output.len()
        )));
    }
    let block = |i: usize| i * l..(i + 1) * l;
    tutti_transport::copy::copy_slice(&mut output[block(ring.rank)], input);
    if n == 1 || l == 0 {
        return Ok(());
    }
    let chunk = ring.chunk;
    let (next, prev, dl) = (ring.next(), ring.prev(), ring.deadline);
    let middle: Vec<usize> = (1..n - 1).map(|k| ring.offset(-(k as isize))).collect();
    let last = ring.offset(1);
    for c in 0..chunks_in(l, chunk) {
        let (tx, rx) = ring.links.pair(next, prev)?;
        let s = chunk_range(&(0..l), chunk, c);
        ops::send(tx, &input[s.clone()], chunk, dl)?;
        for &i in &middle {
            let b = block(i);
            ops::recv_copy_send(rx, tx, &mut output[b.start + s.start..b.start + s.end], dl)?;
        }
        let b = block(last);
        ops::recv(rx, &mut output[b.start + s.start..b.start + s.end], dl)?;
    }
    Ok(())
}
