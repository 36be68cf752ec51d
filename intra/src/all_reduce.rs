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

/// Two-shot without the copy-in, for executors that read the members' own buffers
/// ([`Exec::reads_members_directly`]; [`all_reduce_two_shot`] after one more
/// synchronisation when some member's input cannot be read directly this time):
/// every rank publishes its input, then, in
/// rounds of up to a window buffer, reduces its slice of the round's piece straight
/// from every member's input (in rank order) into its window and `output`, posts,
/// and copies every other member's reduced slice from their windows into `output`.
/// One synchronisation per round plus one per operation, and no pass that copies the
/// input into the window: each rank reads about `2 len` bytes and writes `2 len`.
///
/// A member's input stays untouched while the others read it: they read their
/// slices of a round before posting that round, and its owner returns only after
/// every member posted the last round. In place, a rank writes the others' slices
/// of its buffer only after they posted the round that read them.
pub fn all_reduce_two_shot_direct(
    e: &mut dyn Exec,
    input: Addr,
    output: Addr,
    len: usize,
) -> Result<()> {
    check(e, "all_reduce (two-shot, direct)", len)?;
    if !e.reads_members_directly() {
        return Err(crate::bad(
            "all_reduce (two-shot, direct)",
            "the executor cannot read the members' own buffers".into(),
        ));
    }
    let (n, me, elem) = (e.members(), e.index(), e.element_size());
    if n == 1 {
        if input != output && len > 0 {
            e.copy(output, input, len)?;
        }
        return e.finalize(output, len);
    }
    if len == 0 {
        return Ok(());
    }
    // A round without buffer writes: where every member's input and output lie. If
    // some member's input cannot be read directly (every member sees the same), all
    // copy.
    let Some(p) = crate::publish_all(e, input, Some(output), len)? else {
        return all_reduce_two_shot(e, input, output, len);
    };
    let inputs = p.inputs;
    // Only where it saves synchronisations (three, against one per window round
    // plus one): with fewer rounds the rounds' pipelining wins (Intel Xeon, 4
    // processes on shared buffers, 256 KiB: 5.35 GB/s busbw against 6.40).
    if let Some(outputs) = p.outputs.filter(|_| len > 2 * e.buffer_bytes()) {
        return symmetric_rest(e, p.scratch_buffer, &inputs, &outputs, len);
    }
    let other = |i: usize| if i < me { i } else { i + 1 };
    let step = whole(e.buffer_bytes(), elem);
    let mut off = 0;
    while off < len {
        let c = step.min(len - off);
        let (b, v) = e.begin_round();
        let s = slice(c, elem, n, me);
        if !s.is_empty() {
            let srcs = Addrs::of(n, |m| at(inputs.as_slice()[m], off + s.start));
            e.reduce_copy_out_direct(
                at(e.buffer(me, b), s.start),
                at(output, off + s.start),
                srcs.as_slice(),
                s.len(),
            )?;
        }
        e.post(v + 1)?;
        e.wait_all(v + 1)?;
        let gathers = Few::of(n - 1, |i| {
            let m = other(i);
            let s = slice(c, elem, n, m);
            Move {
                dst: at(output, off + s.start),
                src: at(e.buffer(m, b), s.start),
                len: s.len(),
            }
        });
        e.copy_interleaved(&[], gathers.as_slice())?;
        off += c;
    }
    Ok(())
}

/// The rest of [`all_reduce_two_shot_direct`] when every member's output can be read
/// too (threads; buffers from shared allocations): each rank reduces its slice of
/// the whole buffer straight into its own output (through its window buffer `b0`,
/// a cache-sized scratch that nobody else reads), then copies every other member's
/// reduced slice from that member's output. No window rounds: three
/// synchronisations whatever the size, and the reduced slice is written once.
fn symmetric_rest(
    e: &mut dyn Exec,
    b0: usize,
    inputs: &Addrs,
    outputs: &Addrs,
    len: usize,
) -> Result<()> {
    let (n, me, elem) = (e.members(), e.index(), e.element_size());
    let (inputs, outputs) = (inputs.as_slice(), outputs.as_slice());
    let other = |i: usize| if i < me { i } else { i + 1 };
    let s = slice(len, elem, n, me);
    let step = whole(e.buffer_bytes(), elem);
    let scratch = e.buffer(me, b0);
    let mut off = s.start;
    while off < s.end {
        let c = step.min(s.end - off);
        let srcs = Addrs::of(n, |m| at(inputs[m], off));
        e.reduce_copy_out_direct(scratch, at(outputs[me], off), srcs.as_slice(), c)?;
        off += c;
    }
    // Every reduced slice is in its owner's output; in place, every member is done
    // reading the slices of this rank's input that the gather overwrites.
    let (_, v) = e.begin_round();
    e.post(v + 1)?;
    e.wait_all(v + 1)?;
    let gathers = Few::of(n - 1, |i| {
        let m = other(i);
        let s = slice(len, elem, n, m);
        Move {
            dst: at(outputs[me], s.start),
            src: at(outputs[m], s.start),
            len: s.len(),
        }
    });
    e.copy_interleaved(&[], gathers.as_slice())?;
    // The others read this rank's output until they post.
    crate::release(e)
}
