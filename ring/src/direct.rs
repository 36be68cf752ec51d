//! One-hop all_reduce for small messages.

use tutti_transport::ops;

use crate::{ByteReducer, Result, Schedule, check};

/// Small-message all_reduce in one hop: every rank sends its whole `buf` to every
/// other rank, then folds all `size` buffers in rank order (`x0 op x1 op ...`), so
/// every rank computes the same bits. Latency is one message time instead of the
/// ring's `2 (n - 1)`; each rank sends `(n - 1) * len` bytes, so the tuner uses it
/// for small buffers only. `buf` must fit in one message of every link (all the
/// sends are posted before any receive).
pub fn all_reduce_direct(
    ring: &mut Schedule<'_>,
    buf: &mut [u8],
    reducer: &dyn ByteReducer,
) -> Result<()> {
    check(
        ring,
        "all_reduce (direct)",
        buf.len(),
        reducer.element_size(),
    )?;
    let n = ring.size;
    if n == 1 || buf.is_empty() {
        return Ok(());
    }
    let (chunk, dl, me) = (ring.chunk.max(buf.len()), ring.deadline, ring.rank);
    for k in 1..n {
        let to = ring.offset(k as isize);
        let (tx, _) = ring.links.pair(to, to)?;
        ops::send(tx, buf, chunk, dl)?;
    }
    // Small buffers fold on the stack: no allocation on the latency path.
    let mut stack = [0u8; 1024];
    let mut heap = Vec::new();
    let acc: &mut [u8] = if buf.len() <= stack.len() {
        &mut stack[..buf.len()]
    } else {
        heap.resize(buf.len(), 0);
        &mut heap
    };
    for p in 0..n {
        if p == me {
            if p == 0 {
                acc.copy_from_slice(buf);
            } else {
                reducer.reduce_inplace(acc, buf).map_err(|source| {
                    tutti_transport::TransportError::Reduce {
                        peer: format!("rank {me} (local)"),
                        source,
                    }
                })?;
            }
            continue;
        }
        let (_, rx) = ring.links.pair(p, p)?;
        if p == 0 {
            ops::recv(rx, acc, dl)?;
        } else {
            ops::recv_reduce(rx, acc, reducer, dl)?;
        }
    }
    buf.copy_from_slice(acc);
    Ok(())
}
