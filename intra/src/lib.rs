//! # tutti-intra
//!
//! Collectives among the ranks of one host, on registered windows that every local
//! rank maps (see `tutti_transport::window`). Each algorithm is a few *rounds* of
//! "write my part into my window, post, wait for every member, read the members'
//! windows" (one file per collective, Gloo style):
//!
//! - [`all_reduce_one_shot`]: every rank copies its buffer into its window and
//!   reduces all windows itself (one synchronisation; small buffers);
//! - [`all_reduce_two_shot`]: reduce-scatter by slices read from every window, then
//!   all-gather of the reduced slices, pipelined in window-sized rounds (large ones);
//!   [`all_reduce_two_shot_direct`] the same reading the members' own inputs instead
//!   of copies of them, where the executor can;
//! - [`reduce_scatter`], [`all_gather`], [`broadcast`], [`reduce`], [`all_to_all`]
//!   (uneven splits), [`gather_v`], [`scatter_v`] and [`barrier`];
//!   [`reduce_scatter_direct`], [`all_gather_direct`] and [`broadcast_direct`] read
//!   the members' own buffers where the executor can (one copy instead of two).
//!
//! Reductions fold the members in rank order (`x0 op x1 op ... op xn-1`, left to
//! right), so a float result has the same bits whatever the algorithm, the round size
//! or the timing.
//!
//! The crate knows no dtypes and no devices: buffers are addresses ([`Addr`]) in the
//! executor's memory, and an [`Exec`] copies, reduces and synchronises. tutti's host
//! executor uses the CPU kernels and the window's counters; a device executor can
//! enqueue copies, reduction kernels and stream-ordered flag writes and waits.
//!
//! **The round protocol.** Rounds alternate between the windows' two buffers. In every
//! round a rank writes only its own buffer, posts, waits until every member posted,
//! and only then reads the others' buffers; a rank writes a buffer again two rounds
//! later, after it has seen every member post in the round between, which each does
//! only after it finished reading. So no buffer is overwritten while being read, with
//! no extra synchronisation.

mod all_gather;
mod all_reduce;
mod all_to_all;
mod barrier;
mod broadcast;
mod gather;
mod reduce;
mod reduce_scatter;

pub use all_gather::{all_gather, all_gather_direct, all_gather_v, all_gather_v_direct};
pub use all_reduce::{all_reduce_one_shot, all_reduce_two_shot, all_reduce_two_shot_direct};
pub use all_to_all::{all_to_all, all_to_all_v};
pub use barrier::barrier;
pub use broadcast::{broadcast, broadcast_direct};
pub use gather::{gather_v, scatter_v};
pub use reduce::reduce;
pub use reduce_scatter::{reduce_scatter, reduce_scatter_direct};
pub use tutti_transport::window::{Addr, Exec, HostExec, Move};
pub use tutti_transport::{Result, TransportError};

/// Offsets an address.
#[inline]
pub fn at(base: Addr, offset: usize) -> Addr {
    base + offset
}

/// Up to one item per member (addresses, copies), without allocating for up to 16.
pub(crate) struct Few<T> {
    small: [T; 16],
    big: Vec<T>,
    n: usize,
}

/// The addresses of one place in every member's window.
pub(crate) type Addrs = Few<Addr>;

impl<T: Copy + Default> Few<T> {
    /// `item(0), ..., item(n - 1)`.
    pub(crate) fn of(n: usize, item: impl Fn(usize) -> T) -> Few<T> {
        let mut a = Few {
            small: [T::default(); 16],
            big: Vec::new(),
            n,
        };
        if n <= 16 {
            for (m, slot) in a.small.iter_mut().enumerate().take(n) {
                *slot = item(m);
            }
        } else {
            a.big = (0..n).map(item).collect();
        }
        a
    }

    pub(crate) fn set(&mut self, i: usize, item: T) {
        if self.n <= 16 {
            self.small[i] = item;
        } else {
            self.big[i] = item;
        }
    }

    pub(crate) fn as_slice(&self) -> &[T] {
        if self.n <= 16 {
            &self.small[..self.n]
        } else {
            &self.big
        }
    }
}

/// Rounds of one synchronisation each, for the collectives that write once and read
/// once per round: `write(e, buffer_of_mine)` then, after everyone posted,
/// `read(e, b)`.
pub(crate) fn round(
    e: &mut dyn Exec,
    write: impl FnOnce(&mut dyn Exec, usize) -> Result<()>,
    read: impl FnOnce(&mut dyn Exec, usize) -> Result<()>,
) -> Result<()> {
    let (b, v) = e.begin_round();
    write(e, b)?;
    e.post(v + 1)?;
    e.wait_all(v + 1)?;
    read(e, b)
}

/// Where this rank reads the members' buffers for an operation ([`publish_all`]).
pub(crate) struct Published {
    /// Every member's input (this rank's own included).
    pub inputs: Addrs,
    /// Every member's output, when all can be read with plain loads.
    pub outputs: Option<Addrs>,
    /// The window buffer of the publishing round, which no member reads: scratch.
    pub scratch_buffer: usize,
}

/// A round without buffer writes that publishes `len` bytes at `input` (and at
/// `output`, if given), this rank's buffers for the operation, and returns where
/// this rank reads every member's, or `None` when some member's input cannot be read
/// directly. Every member gets the same answers, so all then take the copying
/// algorithm (or all read the outputs).
pub(crate) fn publish_all(
    e: &mut dyn Exec,
    input: Addr,
    output: Option<Addr>,
    len: usize,
) -> Result<Option<Published>> {
    let n = e.members();
    let (b, v) = e.begin_round();
    e.publish(input, output, len)?;
    e.post(v + 1)?;
    e.wait_all(v + 1)?;
    // This rank's own entries too: the others decide from what it published, and
    // so must this rank.
    let mut inputs = Addrs::of(n, |_| 0);
    for m in 0..n {
        match e.published(m, len)? {
            Some(a) => inputs.set(m, a),
            None => return Ok(None),
        }
    }
    let mut outputs = output.map(|_| Addrs::of(n, |_| 0));
    for m in 0..n {
        let Some(outs) = outputs.as_mut() else { break };
        match e.published_output(m, len)? {
            Some(a) => outs.set(m, a),
            None => outputs = None,
        }
    }
    Ok(Some(Published {
        inputs,
        outputs,
        scratch_buffer: b,
    }))
}

/// `n` equal pieces of `len` bytes, one after the other: lengths and offsets.
pub(crate) fn even(n: usize, len: usize) -> (Vec<usize>, Vec<usize>) {
    (vec![len; n], (0..n).map(|m| m * len).collect())
}

/// The closing round of an algorithm that read the members' own buffers: no rank
/// returns (and lets its caller change its buffer) while another may still read it.
pub(crate) fn release(e: &mut dyn Exec) -> Result<()> {
    let (_, v) = e.begin_round();
    e.post(v + 1)?;
    e.wait_all(v + 1)
}

/// The byte range of member `i`'s slice when `len` bytes of `elem`-byte elements are
/// split among `parts` members.
pub(crate) fn slice(len: usize, elem: usize, parts: usize, i: usize) -> std::ops::Range<usize> {
    tutti_ring::segment(len, elem, parts, i)
}

/// Largest multiple of `elem` not above `bytes` (at least one element).
pub(crate) fn whole(bytes: usize, elem: usize) -> usize {
    (bytes / elem * elem).max(elem)
}

pub(crate) fn bad(what: &str, detail: String) -> TransportError {
    TransportError::InvalidArgument(format!("{what}: {detail}"))
}

/// Checks the executor's geometry for a collective on `len` bytes.
pub(crate) fn check(e: &dyn Exec, what: &str, len: usize) -> Result<()> {
    let elem = e.element_size();
    if elem == 0 || !len.is_multiple_of(elem) {
        return Err(bad(
            what,
            format!("{len} bytes is not a whole number of {elem}-byte elements"),
        ));
    }
    if e.index() >= e.members() {
        return Err(bad(
            what,
            format!(
                "member {} is outside a window set of {}",
                e.index(),
                e.members()
            ),
        ));
    }
    if e.buffer_bytes() < e.members() * elem {
        return Err(bad(
            what,
            format!(
                "window buffers of {} bytes cannot hold one {elem}-byte element per member ({})",
                e.buffer_bytes(),
                e.members()
            ),
        ));
    }
    Ok(())
}
