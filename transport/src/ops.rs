//! The primitives collectives are built from (NCCL's names), over link halves:
//! [`send`], [`recv`], [`recv_reduce`] (and its out-of-place form
//! [`recv_reduce_into`], and [`recv_reduce_after`] with the incoming bytes first),
//! [`recv_reduce_send`],
//! [`recv_reduce_copy_send`] (and its out-of-place form
//! [`recv_reduce_copy_send_into`]) and [`recv_copy_send`].
//!
//! Messages are at most `chunk` bytes (and at most the link's `max_message`); the
//! receiving side handles whatever message sizes arrive, so sender and receiver need
//! only agree on the total length. Every `chunk` must be a whole number of elements;
//! every link's `max_message` is a multiple of 16 bytes, so clamping keeps that.

use crate::link::{Message, RecvHalf, SendHalf};
use crate::{ByteReducer, Deadline, ReduceError, Result, TransportError};

/// Staging size for payloads read from a remote (single-copy) message before they are
/// reduced or forwarded: small enough to stay in cache.
const STAGE: usize = 256 << 10;

/// Sends `data` to the peer in messages of at most `chunk` bytes, or as one
/// single-copy message when the link has such a path and `data` is large enough.
pub fn send(tx: &mut dyn SendHalf, data: &[u8], chunk: usize, deadline: Deadline) -> Result<()> {
    if tx.single_copy_threshold().is_some_and(|t| data.len() >= t)
        && tx.send_single_copy(data, deadline)?
    {
        return Ok(());
    }
    let chunk = effective_chunk(chunk, tx.max_message());
    for piece in data.chunks(chunk) {
        let buf = tx.reserve(piece.len(), deadline)?;
        crate::copy::copy_slice(buf, piece);
        tx.commit()?;
    }
    Ok(())
}

/// What went wrong while a message was borrowed; turned into a [`TransportError`]
/// naming the peer once the borrow has ended (so the hot path allocates nothing).
enum Fault {
    TooLong { got: usize, room: usize },
    Empty,
    Reduce(ReduceError),
    Transport(TransportError),
}

impl From<TransportError> for Fault {
    fn from(e: TransportError) -> Self {
        Fault::Transport(e)
    }
}

impl Fault {
    fn into_error(self, peer: &str) -> TransportError {
        match self {
            Fault::TooLong { got, room } => TransportError::Corrupt {
                peer: peer.to_string(),
                detail: format!(
                    "received a {got}-byte message where at most {room} bytes were expected (the ranks disagree on the transfer size)"
                ),
            },
            Fault::Empty => TransportError::Corrupt {
                peer: peer.to_string(),
                detail: "received an empty message inside a transfer".into(),
            },
            Fault::Reduce(source) => TransportError::Reduce {
                peer: peer.to_string(),
                source,
            },
            Fault::Transport(e) => e,
        }
    }
}

/// Receives the next message and hands it to `f` with the room left; returns the
/// number of bytes consumed after releasing the message.
fn consume(
    rx: &mut dyn RecvHalf,
    room: usize,
    deadline: Deadline,
    f: impl FnOnce(Message<'_>, usize) -> Result<(), Fault>,
) -> Result<usize> {
    let msg = rx.next(deadline)?;
    let got = msg.len();
    let outcome = if got > room {
        Err(Fault::TooLong { got, room })
    } else if got == 0 {
        Err(Fault::Empty)
    } else {
        f(msg, got).map(|()| got)
    };
    match outcome {
        Ok(n) => {
            rx.release()?;
            Ok(n)
        }
        Err(fault) => Err(fault.into_error(rx.peer())),
    }
}

/// Receives exactly `out.len()` bytes from the peer into `out`.
pub fn recv(rx: &mut dyn RecvHalf, out: &mut [u8], deadline: Deadline) -> Result<()> {
    let mut off = 0;
    while off < out.len() {
        let room = out.len() - off;
        let dst = &mut out[off..];
        off += consume(rx, room, deadline, |msg, n| {
            match msg {
                Message::Bytes(b) => crate::copy::copy_slice(&mut dst[..n], b),
                Message::Remote(r) => r.read(0, &mut dst[..n])?,
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// Receives `dst.len()` bytes and reduces them into `dst`: `dst op= incoming`,
/// straight out of the link's buffer.
pub fn recv_reduce(
    rx: &mut dyn RecvHalf,
    dst: &mut [u8],
    reducer: &dyn ByteReducer,
    deadline: Deadline,
) -> Result<()> {
    recv_fold(rx, dst, reducer.element_size(), deadline, |d, inc| {
        reducer.reduce_inplace(d, inc)
    })
}

/// Receives `dst.len()` bytes and folds them in before `dst`: `dst = incoming op dst`
/// (the sender's contribution comes first in the order the ranks fold), straight out
/// of the link's buffer.
pub fn recv_reduce_after(
    rx: &mut dyn RecvHalf,
    dst: &mut [u8],
    reducer: &dyn ByteReducer,
    deadline: Deadline,
) -> Result<()> {
    recv_fold(rx, dst, reducer.element_size(), deadline, |d, inc| {
        reducer.reduce_inplace_after(d, inc)
    })
}

/// Receives `dst.len()` bytes of `elem`-byte elements and applies `f(piece of dst,
/// incoming)` to each piece as it arrives.
fn recv_fold(
    rx: &mut dyn RecvHalf,
    dst: &mut [u8],
    elem: usize,
    deadline: Deadline,
    f: impl Fn(&mut [u8], &[u8]) -> Result<(), ReduceError>,
) -> Result<()> {
    let mut off = 0;
    let mut stage = Vec::new();
    while off < dst.len() {
        let room = dst.len() - off;
        let d = &mut dst[off..];
        off += consume(rx, room, deadline, |msg, n| {
            pieces(msg, n, elem, &mut stage, |o, inc| {
                f(&mut d[o..o + inc.len()], inc).map_err(Fault::Reduce)
            })
        })?;
    }
    Ok(())
}

/// Receives `out.len()` bytes and reduces them with `local` into `out`, in the order
/// the ranks fold: `out = local op incoming` when `local_first`, else
/// `out = incoming op local`. One pass, `local` untouched.
pub fn recv_reduce_into(
    rx: &mut dyn RecvHalf,
    local: &[u8],
    out: &mut [u8],
    local_first: bool,
    reducer: &dyn ByteReducer,
    deadline: Deadline,
) -> Result<()> {
    same_len("recv_reduce_into", local, out)?;
    let fold = |d: &mut [u8], l: &[u8], inc: &[u8]| {
        if local_first {
            reducer.reduce(d, l, inc)
        } else {
            reducer.reduce(d, inc, l)
        }
        .map_err(Fault::Reduce)
    };
    let mut off = 0;
    let mut stage = Vec::new();
    while off < out.len() {
        let room = out.len() - off;
        let (d, l) = (&mut out[off..], &local[off..]);
        off += consume(rx, room, deadline, |msg, n| {
            pieces(msg, n, reducer.element_size(), &mut stage, |o, inc| {
                let k = o + inc.len();
                fold(&mut d[o..k], &l[o..k], inc)
            })
        })?;
    }
    Ok(())
}

/// Receives `local.len()` bytes, reduces them with `local` and forwards the result:
/// `next = local op incoming`, written straight into the sending link's buffer.
pub fn recv_reduce_send(
    rx: &mut dyn RecvHalf,
    tx: &mut dyn SendHalf,
    local: &[u8],
    reducer: &dyn ByteReducer,
    deadline: Deadline,
) -> Result<()> {
    forward(
        rx,
        tx,
        local.len(),
        reducer.element_size(),
        deadline,
        |off, out, incoming| {
            let l = &local[off..off + out.len()];
            reducer.reduce(out, l, incoming).map_err(Fault::Reduce)
        },
    )
}

/// Like [`recv_reduce_send`], and also keeps the result: `next = buf op incoming`
/// and `buf = next`.
pub fn recv_reduce_copy_send(
    rx: &mut dyn RecvHalf,
    tx: &mut dyn SendHalf,
    buf: &mut [u8],
    reducer: &dyn ByteReducer,
    deadline: Deadline,
) -> Result<()> {
    let elem = reducer.element_size();
    if sends_from_caller(tx, buf.len()) {
        return forward_kept(rx, tx, buf, elem, deadline, |kept, incoming| {
            reducer
                .reduce_inplace(kept, incoming)
                .map_err(Fault::Reduce)
        });
    }
    let len = buf.len();
    forward(rx, tx, len, elem, deadline, |off, out, incoming| {
        let local = &mut buf[off..off + out.len()];
        reducer
            .reduce(out, local, incoming)
            .map_err(Fault::Reduce)?;
        crate::copy::copy_slice(local, out);
        Ok(())
    })
}

/// Out-of-place [`recv_reduce_copy_send`]: `next = local op incoming` and
/// `out = next`, leaving `local` as it is (`out` has `local`'s length).
pub fn recv_reduce_copy_send_into(
    rx: &mut dyn RecvHalf,
    tx: &mut dyn SendHalf,
    local: &[u8],
    out: &mut [u8],
    reducer: &dyn ByteReducer,
    deadline: Deadline,
) -> Result<()> {
    same_len("recv_reduce_copy_send_into", local, out)?;
    let elem = reducer.element_size();
    if sends_from_caller(tx, out.len()) {
        let mut off = 0;
        return forward_kept(rx, tx, out, elem, deadline, |kept, incoming| {
            let l = &local[off..off + kept.len()];
            off += kept.len();
            reducer.reduce(kept, l, incoming).map_err(Fault::Reduce)
        });
    }
    forward(
        rx,
        tx,
        local.len(),
        elem,
        deadline,
        |off, next, incoming| {
            let l = &local[off..off + next.len()];
            reducer.reduce(next, l, incoming).map_err(Fault::Reduce)?;
            crate::copy::copy_slice(&mut out[off..off + next.len()], next);
            Ok(())
        },
    )
}

/// Receives `out.len()` bytes into `out` and forwards them: `next = out = incoming`.
pub fn recv_copy_send(
    rx: &mut dyn RecvHalf,
    tx: &mut dyn SendHalf,
    out: &mut [u8],
    deadline: Deadline,
) -> Result<()> {
    if sends_from_caller(tx, out.len()) {
        return forward_kept(rx, tx, out, 1, deadline, |kept, incoming| {
            crate::copy::copy_slice(kept, incoming);
            Ok(())
        });
    }
    let len = out.len();
    forward(rx, tx, len, 1, deadline, |off, next, incoming| {
        crate::copy::copy_slice(next, incoming);
        crate::copy::copy_slice(&mut out[off..off + next.len()], incoming);
        Ok(())
    })
}

/// Receives `len` bytes and, piece by piece, reserves the same number of bytes on
/// `tx`, calls `f(offset, next_buf, incoming)` to fill them, and commits.
fn forward(
    rx: &mut dyn RecvHalf,
    tx: &mut dyn SendHalf,
    len: usize,
    elem: usize,
    deadline: Deadline,
    mut f: impl FnMut(usize, &mut [u8], &[u8]) -> Result<(), Fault>,
) -> Result<()> {
    let mut off = 0;
    let mut stage = Vec::new();
    let out_max = stage_len(tx.max_message(), elem);
    while off < len {
        let base = off;
        off += consume(rx, len - off, deadline, |msg, n| {
            let mut done = 0;
            match msg {
                Message::Bytes(b) => {
                    while done < n {
                        let k = out_max.min(n - done);
                        let next = tx.reserve(k, deadline)?;
                        f(base + done, next, &b[done..done + k])?;
                        tx.commit()?;
                        done += k;
                    }
                }
                Message::Remote(r) => {
                    let step = out_max.min(stage_len(STAGE, elem));
                    stage.resize(step.min(n), 0);
                    while done < n {
                        let k = step.min(n - done);
                        r.read(done, &mut stage[..k])?;
                        let next = tx.reserve(k, deadline)?;
                        f(base + done, next, &stage[..k])?;
                        tx.commit()?;
                        done += k;
                    }
                }
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// Whether a primitive that keeps its result in the caller's buffer should send it
/// from there ([`SendHalf::send_single_copy`]) rather than write it into the link's
/// buffer and copy it back: when the link sends large messages from the caller's
/// memory and the transfer is that large.
fn sends_from_caller(tx: &dyn SendHalf, len: usize) -> bool {
    tx.single_copy_threshold().is_some_and(|t| len >= t)
}

/// Receives `kept.len()` bytes and, message by message, calls `f(piece, incoming)`
/// to write the piece of `kept` the message covers, then sends that piece from
/// `kept` (single copy where the link can, else through its buffer).
fn forward_kept(
    rx: &mut dyn RecvHalf,
    tx: &mut dyn SendHalf,
    kept: &mut [u8],
    elem: usize,
    deadline: Deadline,
    mut f: impl FnMut(&mut [u8], &[u8]) -> Result<(), Fault>,
) -> Result<()> {
    let len = kept.len();
    let mut off = 0;
    let mut stage = Vec::new();
    while off < len {
        let base = off;
        off += consume(rx, len - off, deadline, |msg, n| {
            let piece = &mut kept[base..base + n];
            pieces(msg, n, elem, &mut stage, |o, inc| {
                f(&mut piece[o..o + inc.len()], inc)
            })?;
            if !tx.send_single_copy(piece, deadline)? {
                let most = tx.max_message();
                send(tx, piece, most, deadline)?;
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// Hands a received message's `n` bytes to `f(offset, bytes)`: at once when they lie
/// in the link's buffer, in [`STAGE`]-sized pieces of whole `elem`-byte elements read
/// into `stage` when they stay in the sender's memory.
fn pieces(
    msg: Message<'_>,
    n: usize,
    elem: usize,
    stage: &mut Vec<u8>,
    mut f: impl FnMut(usize, &[u8]) -> Result<(), Fault>,
) -> Result<(), Fault> {
    match msg {
        Message::Bytes(b) => f(0, &b[..n]),
        Message::Remote(r) => {
            let step = stage_len(STAGE, elem);
            stage.resize(step.min(n), 0);
            let mut done = 0;
            while done < n {
                let k = step.min(n - done);
                r.read(done, &mut stage[..k])?;
                f(done, &stage[..k])?;
                done += k;
            }
            Ok(())
        }
    }
}

/// The out-of-place primitives' check: `local` and `out` of one length.
fn same_len(what: &str, local: &[u8], out: &[u8]) -> Result<()> {
    if local.len() != out.len() {
        return Err(TransportError::InvalidArgument(format!(
            "{what}: input of {} bytes, output of {}",
            local.len(),
            out.len()
        )));
    }
    Ok(())
}

fn effective_chunk(chunk: usize, max_message: usize) -> usize {
    chunk.clamp(1, max_message.max(1))
}

/// The largest multiple of `elem` that is at most `limit` (at least one element).
fn stage_len(limit: usize, elem: usize) -> usize {
    let elem = elem.max(1);
    (limit / elem).max(1) * elem
}
