//! One-hop all_reduce for small messages.

use tutti_transport::ops;

use crate::{ByteReducer, Result, Schedule, TransportError, check};

/// Small-message all_reduce in one hop, in place: every rank sends its whole `buf` to
/// every other rank, then folds all `size` buffers in rank order (`x0 op x1 op ...`),
/// so every rank computes the same bits. Latency is one message time instead of the
/// ring's `2 (n - 1)`; each rank sends `(n - 1) * len` bytes, so the tuner uses it
/// for small buffers only. `buf` must fit in one message of every link (all the
/// sends are posted before any receive).
pub fn all_reduce_direct(
    ring: &mut Schedule<'_>,
    buf: &mut [u8],
    reducer: &dyn ByteReducer,
) -> Result<()> {
    all_reduce_direct_into(ring, None, buf, reducer)
}

/// [`all_reduce_direct`] out of place when `input` is given: sends `input` and folds
/// the ranks' buffers straight into `out` (rank 0's first), with no buffer of its
/// own. In place (`input` `None`), rank 0 folds into `buf` directly; the other ranks
/// keep a copy of their own contribution, which comes after rank 0's in the order.
pub fn all_reduce_direct_into(
    ring: &mut Schedule<'_>,
    input: Option<&[u8]>,
    out: &mut [u8],
    reducer: &dyn ByteReducer,
) -> Result<()> {
    let what = "all_reduce (direct)";
    check(ring, what, out.len(), reducer.element_size())?;
    if let Some(i) = input
        && i.len() != out.len()
    {
        return Err(TransportError::InvalidArgument(format!(
            "{what}: input of {} bytes, output of {}",
            i.len(),
            out.len()
        )));
    }
    let n = ring.size;
    if n == 1 || out.is_empty() {
        if let Some(i) = input {
            out.copy_from_slice(i);
        }
        return Ok(());
    }
    let (chunk, dl, me) = (ring.chunk.max(out.len()), ring.deadline, ring.rank);
    for k in 1..n {
        let to = ring.offset(k as isize);
        let (tx, _) = ring.links.pair(to, to)?;
        ops::send(tx, input.unwrap_or(out), chunk, dl)?;
    }
    // Two ranks out of place: one pass, `x0 op x1` from the input and the message.
    if let (2, Some(i)) = (n, input) {
        let peer = 1 - me;
        let (_, rx) = ring.links.pair(peer, peer)?;
        return ops::recv_reduce_into(rx, i, out, me == 0, reducer, dl);
    }
    // In place, a rank other than 0 needs its own bytes after rank 0's have landed in
    // `out`: small ones on the stack (no allocation on the latency path).
    let mut stack = [0u8; 1024];
    let mut heap = Vec::new();
    let own: Option<&[u8]> = match input {
        Some(i) => Some(i),
        None if me == 0 => None,
        None if out.len() <= stack.len() => {
            stack[..out.len()].copy_from_slice(out);
            Some(&stack[..out.len()])
        }
        None => {
            heap.extend_from_slice(out);
            Some(&heap)
        }
    };
    for p in 0..n {
        if p == me {
            match (p, own) {
                // In place on rank 0: `out` already holds this rank's bytes.
                (_, None) => {}
                (0, Some(o)) => out.copy_from_slice(o),
                (_, Some(o)) => {
                    reducer
                        .reduce_inplace(out, o)
                        .map_err(|source| TransportError::Reduce {
                            peer: format!("rank {me} (local)"),
                            source,
                        })?
                }
            }
            continue;
        }
        let (_, rx) = ring.links.pair(p, p)?;
        if p == 0 {
            ops::recv(rx, out, dl)?;
        } else {
            ops::recv_reduce(rx, out, reducer, dl)?;
        }
    }
    Ok(())
}
