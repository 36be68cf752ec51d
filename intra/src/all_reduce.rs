//! All-reduce: one-shot (small buffers) and two-shot (large ones).

use crate::{Addr, Addrs, Exec, Few, Move, Result, at, check, slice, whole};

/// In rounds of up to a window buffer, every rank copies its piece into its window,
/// then reduces every member's window itself, in rank order, into `output` (which may
/// be `input`). One synchronisation per round; each rank reads `n * len` bytes, so
/// this is the choice for small buffers, and for large ones on two ranks.
pub fn all_reduce_one_shot(e: &mut dyn Exec, input: Addr, output: Addr, len: usize) -> Result<()> {
    check(e, "all_reduce (one-shot)", len)?;
    let (n, me, elem) = (e.members(), e.index(), e.element_size());
    if n == 1 {
        if input != output && len > 0 {
            e.copy(output, input, len)?;
        }
        return e.finalize(output, len);
    }
    let step = whole(e.buffer_bytes(), elem);
    let mut off = 0;
    while off < len {
        let c = step.min(len - off);
        crate::round(
            e,
            |e, b| {
                let mine = e.buffer(me, b);
                e.copy(mine, at(input, off), c)
            },
            |e, b| {
                let srcs = Addrs::of(n, |m| e.buffer(m, b));
                e.reduce(at(output, off), srcs.as_slice(), c)?;
                e.finalize(at(output, off), c)
            },
        )?;
        off += c;
    }
    Ok(())
}

/// Reduce-scatter then all-gather, in rounds of up to a window buffer: each rank
/// copies the slices of the round's piece of `input` that the other members reduce
/// into its window (its own slice stays where it is), reduces its slice from its own
/// input and every other member's window (in rank order) into its window, copies the
/// result to `output`, and copies every other member's reduced slice into `output`
/// (during the next round's first copies, interleaved with them).
/// Each rank reads about `2.5 len` bytes and writes `2 len` whatever the number of
/// ranks.
pub fn all_reduce_two_shot(e: &mut dyn Exec, input: Addr, output: Addr, len: usize) -> Result<()> {
    check(e, "all_reduce (two-shot)", len)?;
    let (n, me, elem) = (e.members(), e.index(), e.element_size());
    if n == 1 {
        if input != output && len > 0 {
            e.copy(output, input, len)?;
        }
        return e.finalize(output, len);
    }
    let step = whole(e.buffer_bytes(), elem);
    let mut off = 0;
    // The other members' reduced slices of the previous round, copied to `output`
    // while this round's pieces go into the window: their buffers stay untouched
    // until every member has posted this round's second time, which this rank does
    // only after.
    // The other members, in rank order.
    let other = |i: usize| if i < me { i } else { i + 1 };
    let mut pending: Few<Move> = Few::of(0, |_| Move::default());
    while off < len {
        let c = step.min(len - off);
        let (b, v) = e.begin_round();
        let mine = e.buffer(me, b);
        // The others read only their slices of this rank's piece.
        let copies = Few::of(n - 1, |i| {
            let s = slice(c, elem, n, other(i));
            Move {
                dst: at(mine, s.start),
                src: at(input, off + s.start),
                len: s.len(),
            }
        });
        e.copy_interleaved(copies.as_slice(), pending.as_slice())?;
        e.post(v + 1)?;
        e.wait_all(v + 1)?;
        let s = slice(c, elem, n, me);
        if !s.is_empty() {
            // Reduced into the window (the others gather it from there), from this
            // rank's input where it lies: `output` may be `input`.
            let red = at(mine, s.start);
            let srcs = Addrs::of(n, |m| {
                if m == me {
                    at(input, off + s.start)
                } else {
                    at(e.buffer(m, b), s.start)
                }
            });
            e.reduce_copy_out(red, at(output, off + s.start), srcs.as_slice(), s.len())?;
        }
        e.post(v + 2)?;
        e.wait_all(v + 2)?;
        pending = Few::of(n - 1, |i| {
            let m = other(i);
            let s = slice(c, elem, n, m);
            Move {
                dst: at(output, off + s.start),
                src: at(e.buffer(m, b), s.start),
                len: s.len(),
            }
        });
        off += c;
    }
    e.copy_interleaved(&[], pending.as_slice())?;
    Ok(())
}
