//! One-hop all_reduce for small messages.

use tutti_transport::ops;

use crate::{
    ByteReducer, Result, Schedule, TransportError, check, check_input, nothing_to_exchange,
};

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
/// own. In place (`input` `None`), ranks 0 and 1 fold around their bytes in `out`
/// (rank 1 folds rank 0's in before its own); later ranks keep a copy of their own
/// contribution, which comes after the earlier ranks' in the order.
pub fn all_reduce_direct_into(
    ring: &mut Schedule<'_>,
    input: Option<&[u8]>,
    out: &mut [u8],
    reducer: &dyn ByteReducer,
) -> Result<()> {
    let what = "all_reduce (direct)";
    check(ring, what, out.len(), reducer.element_size())?;
    check_input(what, input, out)?;
    if nothing_to_exchange(ring, input, out) {
        return Ok(());
    }
    let n = ring.size;
    let (chunk, dl, me) = (ring.chunk.max(out.len()), ring.deadline, ring.rank);
    for k in 1..n {
        let to = ring.offset(k as isize);
        let (tx, _) = ring.links.pair(to, to)?;
        ops::send(tx, input.unwrap_or(out), chunk, dl)?;
    }
    // Where this rank's own contribution lies while the others' are folded into
    // `out`: in place, ranks 0 and 1 fold around it (rank 1 folds rank 0's in before
    // it); a later rank keeps a copy in this thread's scratch buffer (no allocation
    // per call).
    match input {
        Some(i) => fold(ring, Own::Apart(i), out, reducer),
        None if me <= 1 => fold(ring, Own::InOut, out, reducer),
        None => KEPT.with(|cell| match cell.try_borrow_mut() {
            Ok(mut kept) => {
                kept.clear();
                kept.extend_from_slice(out);
                fold(ring, Own::Apart(&kept), out, reducer)
            }
            // Already in use on this thread (a reducer that runs a collective): a
            // buffer of this call's own.
            Err(_) => {
                let kept = out.to_vec();
                fold(ring, Own::Apart(&kept), out, reducer)
            }
        }),
    }
}

thread_local! {
    /// The own contribution of an in-place direct all_reduce on rank 2 or later, kept
    /// while the earlier ranks' are folded into the buffer. At most one message of a link (the direct all_reduce's limit); reused
    /// by every call on this thread instead of allocated per call.
    static KEPT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Where a rank's own contribution lies during the fold.
#[derive(Clone, Copy)]
enum Own<'a> {
    /// Already in `out` (in place, ranks 0 and 1).
    InOut,
    /// Apart from `out`: the input, or a kept copy.
    Apart(&'a [u8]),
}

/// Folds every rank's buffer into `out` in rank order (`x0 op x1 op ...`) once the
/// sends are posted: this rank's own contribution is `own`, the others arrive on the
/// links. The first step, `x0 op x1`, is one pass on ranks 0 and 1 (from the input
/// and the message, or around the bytes already in `out`).
fn fold(
    ring: &mut Schedule<'_>,
    own: Own<'_>,
    out: &mut [u8],
    reducer: &dyn ByteReducer,
) -> Result<()> {
    let (n, me, dl) = (ring.size, ring.rank, ring.deadline);
    let mut first = 0;
    if me <= 1 {
        let other = 1 - me;
        let (_, rx) = ring.links.pair(other, other)?;
        match (own, me) {
            (Own::Apart(o), _) => ops::recv_reduce_into(rx, o, out, me == 0, reducer, dl)?,
            (Own::InOut, 0) => ops::recv_reduce(rx, out, reducer, dl)?,
            (Own::InOut, _) => ops::recv_reduce_after(rx, out, reducer, dl)?,
        }
        first = 2;
    }
    for p in first..n {
        if p == me {
            if let Own::Apart(o) = own {
                reducer
                    .reduce_inplace(out, o)
                    .map_err(|source| TransportError::Reduce {
                        peer: format!("rank {me} (local)"),
                        source,
                    })?;
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
