//! The benchmarked collectives: nccl-tests' buffer sizes and bandwidth formulas,
//! one run of each (out-of-place and in-place), and their `-c` checks.
//!
//! Sizes follow nccl-tests: for a size `S` bytes of a type of `w` bytes, `count = S / w`
//! and, with `n` ranks,
//!
//! | collective | send count | recv count | `count` column | busbw factor |
//! |---|---|---|---|---|
//! | all_reduce | count | count | count | 2(n-1)/n |
//! | all_gather | count/n | (count/n)·n | count/n | (n-1)/n |
//! | reduce_scatter | (count/n)·n | count/n | count/n | (n-1)/n |
//! | broadcast, reduce | count | count | count | 1 |
//! | all_to_all | (count/n)·n | (count/n)·n | count/n | (n-1)/n |
//! | send_recv | count | count | count | 1 |
//!
//! The `size` column is the larger of the send and recv buffers in bytes, and
//! `algbw = size / time`, `busbw = algbw · factor` (GB/s, 1e9 bytes/s).
//!
//! In place means what it means in nccl-tests (all_gather's input is the rank's own
//! block of the output, reduce_scatter's output is the rank's block of the input,
//! the other collectives use one buffer). tutti's typed API takes `&[T]` and
//! `&mut [T]`, which cannot alias, so the in-place all_gather, reduce_scatter and
//! all_to_all stage through a scratch buffer (one extra copy of the input block, the
//! output block or the buffer), and the out-of-place broadcast and reduce copy the
//! input into the output on the root first. send_recv (rank r sends to r+1 and
//! receives from r-1) runs as send-then-receive on even ranks and receive-then-send
//! on odd ones, since tutti has no grouped send/recv yet.

use tutti::{ProcessGroup, ReduceOp};

use crate::data::{self, Pattern, TestElem};

/// A collective the bench runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Collective {
    /// all_reduce
    AllReduce,
    /// all_gather
    AllGather,
    /// reduce_scatter
    ReduceScatter,
    /// broadcast
    Broadcast,
    /// reduce
    Reduce,
    /// all_to_all
    AllToAll,
    /// send_recv: a ring of point-to-point transfers
    SendRecv,
}

/// How many elements a collective moves at one size, as nccl-tests counts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Elements in the send buffer.
    pub send: usize,
    /// Elements in the receive buffer.
    pub recv: usize,
    /// The count passed to the collective (the `count` column).
    pub param: usize,
    /// The `size` column: the larger buffer, in bytes.
    pub bytes: u64,
}

/// The tag send_recv's messages carry.
const TAG: u32 = 0x7e57;

impl Collective {
    /// Every collective, in the order `all` runs them.
    pub const ALL: [Collective; 7] = [
        Collective::AllReduce,
        Collective::AllGather,
        Collective::ReduceScatter,
        Collective::Broadcast,
        Collective::Reduce,
        Collective::AllToAll,
        Collective::SendRecv,
    ];

    /// The name on the command line and in outputs (`all_reduce`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Collective::AllReduce => "all_reduce",
            Collective::AllGather => "all_gather",
            Collective::ReduceScatter => "reduce_scatter",
            Collective::Broadcast => "broadcast",
            Collective::Reduce => "reduce",
            Collective::AllToAll => "all_to_all",
            Collective::SendRecv => "send_recv",
        }
    }

    /// The collective named `name` (as [`Collective::name`] spells it).
    pub fn from_name(name: &str) -> Option<Collective> {
        Collective::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Whether the collective reduces (and so uses `-o`).
    pub fn reduces(self) -> bool {
        matches!(
            self,
            Collective::AllReduce | Collective::ReduceScatter | Collective::Reduce
        )
    }

    /// Whether the collective has a root (and so uses `-r`).
    pub fn rooted(self) -> bool {
        matches!(self, Collective::Broadcast | Collective::Reduce)
    }

    /// The `redop` column: the op for reductions and send_recv (as nccl-tests
    /// prints it), `none` otherwise.
    pub fn redop_column(self, op: ReduceOp) -> &'static str {
        if self.reduces() || self == Collective::SendRecv {
            data::op_name(op)
        } else {
            "none"
        }
    }

    /// The `root` column: the root for broadcast and reduce, -1 otherwise.
    pub fn root_column(self, root: usize) -> i64 {
        if self.rooted() { root as i64 } else { -1 }
    }

    /// Buffer sizes for `bytes` bytes of `elem`-byte elements over `n` ranks.
    pub fn layout(self, bytes: u64, elem: usize, n: usize) -> Layout {
        let count = (bytes / elem as u64) as usize;
        let n = n.max(1);
        let (send, recv, param) = match self {
            Collective::AllReduce
            | Collective::Broadcast
            | Collective::Reduce
            | Collective::SendRecv => (count, count, count),
            Collective::AllGather => (count / n, count / n * n, count / n),
            Collective::ReduceScatter => (count / n * n, count / n, count / n),
            Collective::AllToAll => (count / n * n, count / n * n, count / n),
        };
        Layout {
            send,
            recv,
            param,
            bytes: (send.max(recv) * elem) as u64,
        }
    }

    /// nccl-tests' bus bandwidth factor for `n` ranks.
    pub fn bus_factor(self, n: usize) -> f64 {
        let n = n.max(1) as f64;
        match self {
            Collective::AllReduce => 2.0 * (n - 1.0) / n,
            Collective::AllGather | Collective::ReduceScatter | Collective::AllToAll => {
                (n - 1.0) / n
            }
            Collective::Broadcast | Collective::Reduce | Collective::SendRecv => 1.0,
        }
    }
}

/// `(algbw, busbw)` in GB/s for `bytes` (the size column) moved in `seconds`.
pub fn bandwidths(coll: Collective, bytes: u64, seconds: f64, n: usize) -> (f64, f64) {
    let algbw = crate::gbps(bytes, seconds);
    (algbw, algbw * coll.bus_factor(n))
}

/// The buffers of one collective's run, sized for its largest size.
pub struct Buffers<T: TestElem> {
    /// Send buffer (out of place).
    pub send: Mem<T>,
    /// Receive buffer (and the in-place buffer).
    pub recv: Mem<T>,
    /// Staging for the in-place variants (see the module docs).
    pub scratch: Mem<T>,
}

/// Where a benchmark buffer lives: ordinary heap memory, or memory every rank of the
/// host maps (`-R`, [`ProcessGroup::alloc_shared`]).
pub enum Mem<T: TestElem> {
    /// A `Vec`.
    Heap(Vec<T>),
    /// A shared allocation.
    Shared(tutti::SharedBuffer<T>),
}

impl<T: TestElem> std::ops::Deref for Mem<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match self {
            Mem::Heap(v) => v,
            Mem::Shared(s) => s,
        }
    }
}

impl<T: TestElem> std::ops::DerefMut for Mem<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match self {
            Mem::Heap(v) => v,
            Mem::Shared(s) => s,
        }
    }
}

impl<T: TestElem> Buffers<T> {
    /// Buffers for the largest of `layouts` (the receive buffer also holds the
    /// in-place input, so it is as large as both), in shared allocations of `pg`
    /// when `shared` (collective: every rank passes the same).
    pub fn new(pg: &ProcessGroup, layouts: &[Layout], shared: bool) -> tutti::Result<Self> {
        let send = layouts.iter().map(|l| l.send).max().unwrap_or(0);
        let recv = send.max(layouts.iter().map(|l| l.recv).max().unwrap_or(0));
        let zero = <T as bytemuck::Zeroable>::zeroed();
        let mem = |len: usize| -> tutti::Result<Mem<T>> {
            Ok(if shared {
                Mem::Shared(pg.alloc_shared::<T>(len)?)
            } else {
                Mem::Heap(vec![zero; len])
            })
        };
        Ok(Buffers {
            send: mem(send)?,
            recv: mem(recv)?,
            scratch: mem(recv)?,
        })
    }
}

/// One benchmark's parameters, shared by every run of the collective.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// The collective.
    pub coll: Collective,
    /// The reduction (reducing collectives).
    pub op: ReduceOp,
    /// The root (broadcast, reduce).
    pub root: usize,
}

/// Runs the collective once at `l` (nothing when `l.param` is 0: every rank skips).
pub fn run_once<T: TestElem>(
    pg: &ProcessGroup,
    s: &Spec,
    l: &Layout,
    in_place: bool,
    b: &mut Buffers<T>,
) -> tutti::Result<()> {
    let (n, r, c) = (pg.size(), pg.rank(), l.param);
    if c == 0 {
        return Ok(());
    }
    let (root, op) = (s.root, s.op);
    match (s.coll, in_place) {
        (Collective::AllReduce, false) => pg.all_reduce_into(&b.send[..c], &mut b.recv[..c], op),
        (Collective::AllReduce, true) => pg.all_reduce(&mut b.recv[..c], op),
        (Collective::AllGather, false) => pg.all_gather(&b.send[..c], &mut b.recv[..n * c]),
        (Collective::AllGather, true) => {
            b.scratch[..c].copy_from_slice(&b.recv[r * c..(r + 1) * c]);
            pg.all_gather(&b.scratch[..c], &mut b.recv[..n * c])
        }
        (Collective::ReduceScatter, false) => {
            pg.reduce_scatter(&b.send[..n * c], &mut b.recv[..c], op)
        }
        (Collective::ReduceScatter, true) => {
            pg.reduce_scatter(&b.recv[..n * c], &mut b.scratch[..c], op)?;
            b.recv[r * c..(r + 1) * c].copy_from_slice(&b.scratch[..c]);
            Ok(())
        }
        (Collective::Broadcast, in_place) => {
            if !in_place && r == root {
                b.recv[..c].copy_from_slice(&b.send[..c]);
            }
            pg.broadcast(&mut b.recv[..c], root)
        }
        (Collective::Reduce, true) => pg.reduce(&mut b.recv[..c], op, root),
        (Collective::Reduce, false) => {
            if r == root {
                b.recv[..c].copy_from_slice(&b.send[..c]);
                pg.reduce(&mut b.recv[..c], op, root)
            } else {
                // A non-root's buffer is only read (tutti leaves it as it was).
                pg.reduce(&mut b.send[..c], op, root)
            }
        }
        (Collective::AllToAll, false) => pg.all_to_all(&b.send[..n * c], &mut b.recv[..n * c]),
        (Collective::AllToAll, true) => {
            b.scratch[..n * c].copy_from_slice(&b.recv[..n * c]);
            pg.all_to_all(&b.scratch[..n * c], &mut b.recv[..n * c])
        }
        (Collective::SendRecv, in_place) => send_recv(pg, c, in_place, b),
    }
}

fn send_recv<T: TestElem>(
    pg: &ProcessGroup,
    c: usize,
    in_place: bool,
    b: &mut Buffers<T>,
) -> tutti::Result<()> {
    let (n, r) = (pg.size(), pg.rank());
    if n == 1 {
        if !in_place {
            b.recv[..c].copy_from_slice(&b.send[..c]);
        }
        return Ok(());
    }
    // As nccl-tests: the send and the receive in flight together (one group).
    let (dst, src) = ((r + 1) % n, (r + n - 1) % n);
    if in_place {
        // Receive into the scratch buffer while ours leaves, then swap them.
        pg.sendrecv(&b.recv[..c], dst, &mut b.scratch[..c], src, TAG)?;
        std::mem::swap(&mut b.recv, &mut b.scratch);
        Ok(())
    } else {
        pg.sendrecv(&b.send[..c], dst, &mut b.recv[..c], src, TAG)
    }
}

/// The input pattern of `s` for `T` over `n` ranks.
pub fn pattern<T: TestElem>(s: &Spec, n: usize) -> Pattern {
    Pattern::new::<T>(s.coll.reduces().then_some(s.op), n)
}

/// Writes this rank's inputs of repetition `rep` for a run at `l` (and zeroes the
/// output), as nccl-tests' `InitData` does.
pub fn init<T: TestElem>(
    pg: &ProcessGroup,
    s: &Spec,
    l: &Layout,
    in_place: bool,
    rep: u64,
    b: &mut Buffers<T>,
) {
    let (n, r) = (pg.size(), pg.rank());
    let p = pattern::<T>(s, n);
    let zero = <T as bytemuck::Zeroable>::zeroed();
    b.recv[..l.send.max(l.recv)].fill(zero);
    let c = l.param;
    match s.coll {
        Collective::AllGather => {
            let input = if in_place {
                &mut b.recv[r * c..(r + 1) * c]
            } else {
                &mut b.send[..c]
            };
            data::fill(p, r, rep, 0, input);
        }
        Collective::Broadcast => {
            if r == s.root {
                let input = if in_place {
                    &mut b.recv[..c]
                } else {
                    &mut b.send[..c]
                };
                data::fill(p, r, rep, 0, input);
            }
        }
        _ => {
            let input = if in_place {
                &mut b.recv[..l.send]
            } else {
                &mut b.send[..l.send]
            };
            data::fill(p, r, rep, 0, input);
        }
    }
}

/// Counts the wrong elements of this rank's result of repetition `rep` (every
/// element of the output is compared with the reference).
pub fn check<T: TestElem>(
    pg: &ProcessGroup,
    s: &Spec,
    l: &Layout,
    in_place: bool,
    rep: u64,
    b: &mut Buffers<T>,
    corrupt: bool,
) -> tutti::Result<u64> {
    let (n, r, c) = (pg.size(), pg.rank(), l.param);
    let p = pattern::<T>(s, n);
    let op = s.op;
    let zero = <T as bytemuck::Zeroable>::zeroed();
    let mut tmp = vec![zero; c.min(16 * 1024)];
    let out: &mut [T] = match s.coll {
        Collective::ReduceScatter if in_place => &mut b.recv[r * c..(r + 1) * c],
        _ => &mut b.recv[..l.recv],
    };
    if corrupt {
        data::corrupt(out);
    }
    let out: &[T] = out;
    match s.coll {
        Collective::AllReduce => data::count_wrong(out, |st, w| {
            data::fill_reduced(p, op, n, rep, st, w, &mut tmp[..w.len()])
        }),
        Collective::ReduceScatter => data::count_wrong(out, |st, w| {
            data::fill_reduced(p, op, n, rep, r * c + st, w, &mut tmp[..w.len()])
        }),
        Collective::Reduce if r == s.root => data::count_wrong(out, |st, w| {
            data::fill_reduced(p, op, n, rep, st, w, &mut tmp[..w.len()])
        }),
        Collective::Reduce if in_place => data::count_wrong(out, |st, w| {
            data::fill(p, r, rep, st, w);
            Ok(())
        }),
        Collective::Reduce => data::count_wrong(out, |_, w| {
            w.fill(zero);
            Ok(())
        }),
        Collective::Broadcast => data::count_wrong(out, |st, w| {
            data::fill(p, s.root, rep, st, w);
            Ok(())
        }),
        // Block j of the output is rank j's input (all_gather: all of it;
        // all_to_all: its block r). Blocks are compared element by element.
        Collective::AllGather | Collective::AllToAll => {
            let offset = if s.coll == Collective::AllToAll {
                r * c
            } else {
                0
            };
            let mut wrong = 0;
            for (j, block) in out.chunks(c.max(1)).enumerate() {
                wrong += data::count_wrong(block, |st, w| {
                    data::fill(p, j, rep, offset + st, w);
                    Ok(())
                })?;
            }
            Ok(wrong)
        }
        Collective::SendRecv => {
            let src = (r + n - 1) % n;
            data::count_wrong(out, |st, w| {
                data::fill(p, src, rep, st, w);
                Ok(())
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_follow_nccl_tests() {
        // 8 bytes of float over 2 ranks.
        let l = Collective::AllGather.layout(8, 4, 2);
        assert_eq!((l.send, l.recv, l.param, l.bytes), (1, 2, 1, 8));
        let l = Collective::ReduceScatter.layout(1 << 20, 4, 3);
        assert_eq!(l.param, (1 << 18) / 3);
        assert_eq!(l.bytes, (l.param * 3 * 4) as u64);
        let l = Collective::AllToAll.layout(4, 4, 2);
        assert_eq!((l.param, l.bytes), (0, 0));
        let l = Collective::AllReduce.layout(10, 4, 2);
        assert_eq!((l.param, l.bytes), (2, 8));
    }

    #[test]
    fn bus_factors() {
        assert_eq!(Collective::AllReduce.bus_factor(4), 1.5);
        assert_eq!(Collective::AllGather.bus_factor(4), 0.75);
        assert_eq!(Collective::ReduceScatter.bus_factor(2), 0.5);
        assert_eq!(Collective::AllToAll.bus_factor(8), 0.875);
        assert_eq!(Collective::Broadcast.bus_factor(8), 1.0);
        assert_eq!(Collective::Reduce.bus_factor(8), 1.0);
        assert_eq!(Collective::SendRecv.bus_factor(8), 1.0);
        assert_eq!(Collective::AllReduce.bus_factor(1), 0.0);
    }
}
