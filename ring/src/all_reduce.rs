//! Ring all_reduce: reduce-scatter then all-gather, chunk by chunk.

use tutti_transport::ops;

use crate::segments::{chunk_range, chunks_in, segment};
use crate::{ByteReducer, Result, Schedule, check};

/// Reduces `buf` across all ranks, in place: afterwards every rank holds the same
/// bytes, the element-wise reduction of every rank's input.
///
/// The buffer is split into one segment per rank. Reduce-scatter: in `size - 1`
/// steps each segment travels once around the ring, reduced at every hop
/// (recv-reduce-send), until rank `r` holds segment `r + 1` fully reduced. All-gather:
/// the reduced segments travel around once more (recv-copy-send). Bus bandwidth
/// factor `2 (n - 1) / n`.
pub fn all_reduce(
    ring: &mut Schedule<'_>,
    buf: &mut [u8],
    reducer: &dyn ByteReducer,
) -> Result<()> {
    schedule(ring, None, buf, reducer)
}

/// Out-of-place [`all_reduce`]: reduces every rank's `input` into `output` (same
/// length) without modifying `input`. Reads `input` chunk by chunk where the
/// in-place schedule reads `buf`, so it moves no more bytes than the in-place one
/// (no up-front copy of the whole buffer).
pub fn all_reduce_into(
    ring: &mut Schedule<'_>,
    input: &[u8],
    output: &mut [u8],
    reducer: &dyn ByteReducer,
) -> Result<()> {
    crate::check_input("all_reduce", Some(input), output)?;
    if ring.size == 1 {
        check(ring, "all_reduce", input.len(), reducer.element_size())?;
        tutti_transport::copy::copy_slice(output, input);
        return Ok(());
    }
    schedule(ring, Some(input), output, reducer)
}

/// The ring schedule; `input` is `None` in place (read from `out`).
fn schedule(
    ring: &mut Schedule<'_>,
    input: Option<&[u8]>,
    out: &mut [u8],
    reducer: &dyn ByteReducer,
) -> Result<()> {
    let elem = reducer.element_size();
    check(ring, "all_reduce", out.len(), elem)?;
    let n = ring.size;
    if n == 1 || out.is_empty() {
        return Ok(());
    }
    let len = out.len();
    let seg = |i: usize| segment(len, elem, n, i);
    let chunk = ring.chunk;
    let rounds = (0..n)
        .map(|i| chunks_in(seg(i).len(), chunk))
        .max()
        .unwrap_or(0);
    let (next, prev, dl) = (ring.next(), ring.prev(), ring.deadline);
    let (rank, nn) = (ring.rank as isize, n as isize);
    let at = move |k: isize| ((rank + k) % nn + nn) as usize % n;
    let mine = at(0);
    let final_rs = at(1);
    let last_ag = at(2 - n as isize);
    // Sends this rank's own chunk of round `c` (the first message of its round).
    let send_own = |ring: &mut Schedule<'_>, out: &[u8], c: usize| -> Result<()> {
        let s = chunk_range(&seg(mine), chunk, c);
        if s.is_empty() {
            return Ok(());
        }
        let local = match input {
            Some(i) => &i[s],
            None => &out[s],
        };
        let (tx, _) = ring.links.pair(next, prev)?;
        ops::send(tx, local, chunk, dl)
    };
    let ahead = sends_ahead(ring)?;
    for c in 0..rounds {
        if c == 0 || !ahead {
            send_own(ring, out, c)?;
        }
        let (tx, rx) = ring.links.pair(next, prev)?;
        for k in 1..n - 1 {
            let s = chunk_range(&seg(at(-(k as isize))), chunk, c);
            if !s.is_empty() {
                let local = match input {
                    Some(i) => &i[s],
                    None => &out[s],
                };
                ops::recv_reduce_send(rx, tx, local, reducer, dl)?;
            }
        }
        let s = chunk_range(&seg(final_rs), chunk, c);
        if !s.is_empty() {
            match input {
                Some(i) => ops::recv_reduce_copy_send_into(
                    rx,
                    tx,
                    &i[s.clone()],
                    &mut out[s],
                    reducer,
                    dl,
                )?,
                None => ops::recv_reduce_copy_send(rx, tx, &mut out[s], reducer, dl)?,
            }
        }
        for k in 1..n - 1 {
            let s = chunk_range(&seg(at(1 - k as isize)), chunk, c);
            if !s.is_empty() {
                ops::recv_copy_send(rx, tx, &mut out[s], dl)?;
            }
        }
        // Every message of this round is sent: the next round's first one can go
        // before this rank waits for the round's last, so the link carries data
        // meanwhile.
        if ahead && c + 1 < rounds {
            send_own(ring, out, c + 1)?;
        }
        let (_, rx) = ring.links.pair(next, prev)?;
        let s = chunk_range(&seg(last_ag), chunk, c);
        if !s.is_empty() {
            ops::recv(rx, &mut out[s], dl)?;
        }
    }
    Ok(())
}

/// Whether to send the next round's own chunk ahead ([`Schedule::ahead`]): only
/// when the link to the next rank holds two messages, the round's last and the one
/// sent ahead, so that ranks that all send ahead at once never wait on each other.
fn sends_ahead(ring: &mut Schedule<'_>) -> Result<bool> {
    let (next, prev) = (ring.next(), ring.prev());
    let (tx, _) = ring.links.pair(next, prev)?;
    Ok(ring.ahead && tx.depth() >= 2)
}
