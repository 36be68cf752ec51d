//! Pipelined chains around the ring: broadcast from a root, reduce to a root.

use tutti_transport::ops;

use crate::segments::{chunk_range, chunks_in};
use crate::{ByteReducer, Result, Schedule, TransportError, check};

fn check_root(ring: &Schedule<'_>, what: &str, root: usize) -> Result<()> {
    if root >= ring.size {
        return Err(TransportError::InvalidArgument(format!(
            "{what}: root {root} is outside a group of {}",
            ring.size
        )));
    }
    Ok(())
}

/// Copies the root's `buf` into every rank's `buf` along the chain
/// `root -> root+1 -> ... -> root-1`, chunk by chunk. Bus bandwidth factor 1.
pub fn broadcast(ring: &mut Schedule<'_>, buf: &mut [u8], root: usize) -> Result<()> {
    check(ring, "broadcast", buf.len(), 1)?;
    check_root(ring, "broadcast", root)?;
    let n = ring.size;
    if n == 1 || buf.is_empty() {
        return Ok(());
    }
    let pos = (ring.rank + n - root) % n;
    let chunk = ring.chunk;
    let (next, prev, dl) = (ring.next(), ring.prev(), ring.deadline);
    let all = 0..buf.len();
    for c in 0..chunks_in(buf.len(), chunk) {
        let s = chunk_range(&all, chunk, c);
        let (tx, rx) = ring.links.pair(next, prev)?;
        if pos == 0 {
            ops::send(tx, &buf[s], chunk, dl)?;
        } else if pos == n - 1 {
            ops::recv(rx, &mut buf[s], dl)?;
        } else {
            ops::recv_copy_send(rx, tx, &mut buf[s], dl)?;
        }
    }
    Ok(())
}

/// Reduces every rank's `input` into the root's `output` along the chain
/// `root+1 -> root+2 -> ... -> root`, chunk by chunk. `output` is only written on
/// the root (it must be `input.len()` bytes there; other ranks may pass an empty
/// slice). Bus bandwidth factor 1.
pub fn reduce(
    ring: &mut Schedule<'_>,
    input: &[u8],
    output: &mut [u8],
    root: usize,
    reducer: &dyn ByteReducer,
) -> Result<()> {
    check(ring, "reduce", input.len(), reducer.element_size())?;
    check_root(ring, "reduce", root)?;
    let n = ring.size;
    let is_root = ring.rank == root;
    if is_root {
        if output.len() != input.len() {
            return Err(TransportError::InvalidArgument(format!(
                "reduce: the root's output has {} bytes, the input {}",
                output.len(),
                input.len()
            )));
        }
        tutti_transport::copy::copy_slice(output, input);
    }
    if n == 1 || input.is_empty() {
        return Ok(());
    }
    let pos = (ring.rank + n - root - 1) % n;
    let chunk = ring.chunk;
    let (next, prev, dl) = (ring.next(), ring.prev(), ring.deadline);
    let all = 0..input.len();
    for c in 0..chunks_in(input.len(), chunk) {
        let s = chunk_range(&all, chunk, c);
        let (tx, rx) = ring.links.pair(next, prev)?;
        if pos == 0 {
            ops::send(tx, &input[s], chunk, dl)?;
        } else if is_root {
            ops::recv_reduce(rx, &mut output[s], reducer, dl)?;
        } else {
            ops::recv_reduce_send(rx, tx, &input[s], reducer, dl)?;
        }
    }
    Ok(())
}
