//! Ring reduce_scatter.

use tutti_transport::ops;

use crate::segments::{chunk_range, chunks_in, segment};
use crate::{ByteReducer, Result, Schedule, TransportError, check};

/// Reduces `input` (the same length on every rank, split into `size` segments)
/// across ranks; rank `r` receives segment `r` of the result in `output`.
/// Bus bandwidth factor `(n - 1) / n`.
pub fn reduce_scatter(
    ring: &mut Schedule<'_>,
    input: &[u8],
    output: &mut [u8],
    reducer: &dyn ByteReducer,
) -> Result<()> {
    let elem = reducer.element_size();
    check(ring, "reduce_scatter", input.len(), elem)?;
    let n = ring.size;
    let len = input.len();
    let seg = |i: usize| segment(len, elem, n, i);
    let own = seg(ring.rank);
    if output.len() != own.len() {
        return Err(TransportError::InvalidArgument(format!(
            "reduce_scatter: output of {} bytes, but this rank's segment of a {len}-byte input is {} bytes",
            output.len(),
            own.len()
        )));
    }
    tutti_transport::copy::copy_slice(output, &input[own.clone()]);
    if n == 1 || len == 0 {
        return Ok(());
    }
    let chunk = ring.chunk;
    let rounds = (0..n)
        .map(|i| chunks_in(seg(i).len(), chunk))
        .max()
        .unwrap_or(0);
    let (next, prev, dl) = (ring.next(), ring.prev(), ring.deadline);
    let first = ring.offset(-1);
    let middle: Vec<usize> = (1..n - 1).map(|k| ring.offset(-1 - k as isize)).collect();
    for c in 0..rounds {
        let (tx, rx) = ring.links.pair(next, prev)?;
        let s = chunk_range(&seg(first), chunk, c);
        if !s.is_empty() {
            ops::send(tx, &input[s], chunk, dl)?;
        }
        for &i in &middle {
            let s = chunk_range(&seg(i), chunk, c);
            if !s.is_empty() {
                ops::recv_reduce_send(rx, tx, &input[s], reducer, dl)?;
            }
        }
        let s = chunk_range(&(0..own.len()), chunk, c);
        if !s.is_empty() {
            ops::recv_reduce(rx, &mut output[s], reducer, dl)?;
        }
    }
    Ok(())
}
