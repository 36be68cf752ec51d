//! All-gather on windows, with equal or per-member lengths.

use crate::{Addr, Exec, Result, at, bad, check, even, publish_all, release, whole};

/// Every member's `len` bytes of `input` land in every member's `output` at
/// `m * len`.
pub fn all_gather(e: &mut dyn Exec, input: Addr, output: Addr, len: usize) -> Result<()> {
    let (lens, displs) = even(e.members(), len);
    all_gather_v(e, input, output, &lens, &displs)
}

/// Member `m`'s `lens[m]` bytes land in every member's `output` at `displs[m]`
/// (`input` holds this member's `lens[index]` bytes). Every member passes the same
/// `lens`. In rounds of up to a window buffer per member.
pub fn all_gather_v(
    e: &mut dyn Exec,
    input: Addr,
    output: Addr,
    lens: &[usize],
    displs: &[usize],
) -> Result<()> {
    const WHAT: &str = "all_gather";
    let (n, me, elem) = (e.members(), e.index(), e.element_size());
    if lens.len() != n || displs.len() != n {
        return Err(bad(
            WHAT,
            format!(
                "{} lengths and {} offsets for {n} members",
                lens.len(),
                displs.len()
            ),
        ));
    }
    for &l in lens {
        check(e, WHAT, l)?;
    }
    let longest = lens.iter().copied().max().unwrap_or(0);
    if n == 1 {
        if input != at(output, displs[0]) && lens[0] > 0 {
            e.copy(at(output, displs[0]), input, lens[0])?;
        }
        return Ok(());
    }
    let step = whole(e.buffer_bytes(), elem);
    let part = |l: usize, off: usize| l.saturating_sub(off).min(step);
    let mut off = 0;
    while off < longest {
        crate::round(
            e,
            |e, b| {
                let p = part(lens[me], off);
                if p > 0 {
                    let mine = e.buffer(me, b);
                    e.copy(mine, at(input, off), p)?;
                }
                Ok(())
            },
            |e, b| {
                for m in 0..n {
                    let p = part(lens[m], off);
                    if p > 0 {
                        let src = e.buffer(m, b);
                        e.copy(at(output, displs[m] + off), src, p)?;
                    }
                }
                Ok(())
            },
        )?;
        off += step;
    }
    Ok(())
}

/// [`all_gather`] reading every member's input where it lies
/// ([`Exec::reads_members_directly`]): one copy per byte instead of two (into the
/// window, out of it), and two synchronisations whatever the size. Falls back to
/// [`all_gather`] on every member when some member's input cannot be read directly.
pub fn all_gather_direct(e: &mut dyn Exec, input: Addr, output: Addr, len: usize) -> Result<()> {
    let (lens, displs) = even(e.members(), len);
    all_gather_v_direct(e, input, output, &lens, &displs)
}

/// [`all_gather_v`] reading every member's input where it lies (see
/// [`all_gather_direct`]).
pub fn all_gather_v_direct(
    e: &mut dyn Exec,
    input: Addr,
    output: Addr,
    lens: &[usize],
    displs: &[usize],
) -> Result<()> {
    let (n, me) = (e.members(), e.index());
    if n == 1 || !e.reads_members_directly() || lens.len() != n || displs.len() != n {
        return all_gather_v(e, input, output, lens, displs);
    }
    for &l in lens {
        check(e, "all_gather", l)?;
    }
    let Some(p) = publish_all(e, input, None, lens[me])? else {
        return all_gather_v(e, input, output, lens, displs);
    };
    let inputs = p.inputs;
    for m in 0..n {
        let dst = at(output, displs[m]);
        if m == me {
            if dst != input && lens[m] > 0 {
                e.copy(dst, input, lens[m])?;
            }
        } else {
            e.copy_from_member(m, dst, inputs.as_slice()[m], lens[m])?;
        }
    }
    release(e)
}
