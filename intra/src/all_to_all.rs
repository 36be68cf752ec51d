//! All-to-all on windows, with equal or uneven splits.

use crate::{Addr, Exec, Result, at, bad, check, whole};

/// Block `k` (of `block` bytes) of every member's `input` lands as block `m` of
/// member `k`'s `output`, `m` being the sender.
pub fn all_to_all(e: &mut dyn Exec, input: Addr, output: Addr, block: usize) -> Result<()> {
    let n = e.members();
    let lens = vec![block; n];
    let displs: Vec<usize> = (0..n).map(|m| m * block).collect();
    all_to_all_v(e, input, &lens, &displs, output, &lens, &displs, block)
}

/// Uneven all-to-all: this member sends `send_lens[k]` bytes from
/// `input + send_displs[k]` to member `k`, and receives `recv_lens[m]` bytes from
/// member `m` at `output + recv_displs[m]`. `longest` is the largest length any
/// member sends to any other (the same on every member: it fixes the number of
/// rounds). Zero-length pieces are allowed.
#[allow(clippy::too_many_arguments)]
pub fn all_to_all_v(
    e: &mut dyn Exec,
    input: Addr,
    send_lens: &[usize],
    send_displs: &[usize],
    output: Addr,
    recv_lens: &[usize],
    recv_displs: &[usize],
    longest: usize,
) -> Result<()> {
    const WHAT: &str = "all_to_all";
    let (n, me, elem) = (e.members(), e.index(), e.element_size());
    for (name, v) in [
        ("send lengths", send_lens),
        ("send offsets", send_displs),
        ("receive lengths", recv_lens),
        ("receive offsets", recv_displs),
    ] {
        if v.len() != n {
            return Err(bad(WHAT, format!("{} {name} for {n} members", v.len())));
        }
    }
    for &l in send_lens.iter().chain(recv_lens) {
        check(e, WHAT, l)?;
        if l > longest {
            return Err(bad(
                WHAT,
                format!("a piece of {l} bytes is longer than the agreed longest ({longest})"),
            ));
        }
    }
    if n == 1 {
        if send_lens[0] != recv_lens[0] {
            return Err(bad(
                WHAT,
                format!(
                    "this member sends itself {} bytes but expects {}",
                    send_lens[0], recv_lens[0]
                ),
            ));
        }
        if send_lens[0] > 0 && at(input, send_displs[0]) != at(output, recv_displs[0]) {
            e.copy(
                at(output, recv_displs[0]),
                at(input, send_displs[0]),
                send_lens[0],
            )?;
        }
        return Ok(());
    }
    let piece = whole(e.buffer_bytes() / n, elem);
    if piece * n > e.buffer_bytes() {
        return Err(bad(
            WHAT,
            "window buffers too small for one element per member".into(),
        ));
    }
    let part = |l: usize, off: usize| l.saturating_sub(off).min(piece);
    let mut off = 0;
    while off < longest {
        crate::round(
            e,
            |e, b| {
                let mine = e.buffer(me, b);
                for k in 0..n {
                    let p = part(send_lens[k], off);
                    if p > 0 {
                        e.copy(at(mine, k * piece), at(input, send_displs[k] + off), p)?;
                    }
                }
                Ok(())
            },
            |e, b| {
                for m in 0..n {
                    let p = part(recv_lens[m], off);
                    if p > 0 {
                        let src = at(e.buffer(m, b), me * piece);
                        e.copy(at(output, recv_displs[m] + off), src, p)?;
                    }
                }
                Ok(())
            },
        )?;
        off += piece;
    }
    Ok(())
}
