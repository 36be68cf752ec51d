//! Pairwise-exchange all_to_all, with equal or uneven pieces.

use std::ops::Range;

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
    let blocks: Vec<Range<usize>> = (0..n).map(|i| i * l..(i + 1) * l).collect();
    all_to_all_v(ring, input, &blocks, output, &blocks)
}

/// Uneven all_to_all: this rank sends `input[sends[i]]` to rank `i` and receives rank
/// `i`'s piece for it into `output[recvs[i]]`; piece lengths may differ and be zero
/// (each side must expect what the other sends). Pairwise steps as in
/// [`all_to_all`], chunk by chunk: a rank sends at most one chunk before receiving
/// one, so bounded links cannot deadlock.
pub fn all_to_all_v(
    ring: &mut Schedule<'_>,
    input: &[u8],
    sends: &[Range<usize>],
    output: &mut [u8],
    recvs: &[Range<usize>],
) -> Result<()> {
    let n = ring.size;
    check(ring, "all_to_all", 0, 1)?;
    if sends.len() != n || recvs.len() != n {
        return Err(TransportError::InvalidArgument(format!(
            "all_to_all: {} send and {} receive pieces for {n} ranks",
            sends.len(),
            recvs.len()
        )));
    }
    if let Some(r) = sends
        .iter()
        .find(|r| r.start > r.end || r.end > input.len())
    {
        return Err(TransportError::InvalidArgument(format!(
            "all_to_all: send piece {r:?} is outside the {}-byte input",
            input.len()
        )));
    }
    if let Some(r) = recvs
        .iter()
        .find(|r| r.start > r.end || r.end > output.len())
    {
        return Err(TransportError::InvalidArgument(format!(
            "all_to_all: receive piece {r:?} is outside the {}-byte output",
            output.len()
        )));
    }
    let me = ring.rank;
    if sends[me].len() != recvs[me].len() {
        return Err(TransportError::InvalidArgument(format!(
            "all_to_all: this rank sends itself {} bytes but expects {}",
            sends[me].len(),
            recvs[me].len()
        )));
    }
    tutti_transport::copy::copy_slice(&mut output[recvs[me].clone()], &input[sends[me].clone()]);
    let (chunk, dl) = (ring.chunk, ring.deadline);
    for k in 1..n {
        let to = ring.offset(k as isize);
        let from = ring.offset(-(k as isize));
        let (out_piece, in_piece) = (sends[to].clone(), recvs[from].clone());
        let steps = chunks_in(out_piece.len(), chunk).max(chunks_in(in_piece.len(), chunk));
        for c in 0..steps {
            let (tx, rx) = ring.links.pair(to, from)?;
            let s = chunk_range(&out_piece, chunk, c);
            if !s.is_empty() {
                ops::send(tx, &input[s], chunk, dl)?;
            }
            let r = chunk_range(&in_piece, chunk, c);
            if !r.is_empty() {
                ops::recv(rx, &mut output[r], dl)?;
            }
        }
    }
    Ok(())
}
