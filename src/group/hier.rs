//! Hierarchical collectives, for groups whose ranks sit on several hosts: the
//! window inside each host, the links between one leader per host (the host's lowest
//! rank), as NCCL reduces inside a node before crossing the network.
//!
//! - all_reduce: reduce inside each host to its leader (the window's `reduce`, or
//!   the small-message lines for tiny buffers), all_reduce between the leaders (ring,
//!   double binary tree or one hop, pipelined in chunks over their links, chosen by
//!   the tuner for the leaders' links), broadcast inside each host.
//! - broadcast: from the root on its host's window, between the leaders from the
//!   root's leader (tree or chain), from each leader on its window.
//! - all_gather: gather inside each host to its leader, all_gather of the hosts'
//!   blocks between the leaders (a ring over their links), broadcast inside each host.
//! - reduce_scatter: reduce inside each host to its leader, reduce_scatter of the
//!   hosts' blocks between the leaders, scatter inside each host.
//!
//! Results are exact and independent of timing: each host folds its ranks in rank
//! order (the window algorithms), and the leaders' schedule folds the hosts' partial
//! results in an order fixed by the layout, so a float result has the same bits on
//! every rank and from one call to the next (not necessarily the bits of a flat
//! fold over all ranks in rank order). The final step of `Avg` and `PreMulSum` runs
//! once, on the whole result.

use tutti_intra as intra;
use tutti_ring::Schedule;
use tutti_transport::window::{Addr, HostExec, LINE_PAYLOAD, Window};
use tutti_transport::{ByteReducer, Deadline, ReduceError, TransportError};

use super::ProcessGroup;
use super::links::SubLinks;
use super::options::Algo;
use super::paths::Paths;
use super::small;
use super::tuner::Plan;

type TResult<T> = std::result::Result<T, TransportError>;

/// A reducer whose final step is left out (the partial results of a hierarchical
/// schedule are combined again; the final step runs once at the end).
pub(crate) struct Partial<'a>(pub &'a dyn ByteReducer);

impl ByteReducer for Partial<'_> {
    fn element_size(&self) -> usize {
        self.0.element_size()
    }
    fn reduce_inplace(&self, dst: &mut [u8], src: &[u8]) -> Result<(), ReduceError> {
        self.0.reduce_inplace(dst, src)
    }
    fn reduce(&self, dst: &mut [u8], a: &[u8], b: &[u8]) -> Result<(), ReduceError> {
        self.0.reduce(dst, a, b)
    }
    fn reduce_inplace_after(&self, dst: &mut [u8], src: &[u8]) -> Result<(), ReduceError> {
        self.0.reduce_inplace_after(dst, src)
    }
    fn finalize(&self, _dst: &mut [u8]) -> Result<(), ReduceError> {
        Ok(())
    }
}

fn addr_mut(b: &mut [u8]) -> Addr {
    b.as_mut_ptr() as Addr
}

fn addr(b: &[u8]) -> Addr {
    b.as_ptr() as Addr
}

/// This rank's place in the hierarchy.
struct Place<'a> {
    /// The leaders, in host order.
    leaders: &'a [usize],
    /// This rank's host index, when it is its host's leader.
    leader_index: Option<usize>,
}

impl ProcessGroup {
    fn place(&self) -> Place<'_> {
        let layout = &self.inner.layout;
        let h = layout.host_of[self.rank()];
        Place {
            leader_index: (layout.leaders[h] == self.rank()).then_some(h),
            leaders: &layout.leaders,
        }
    }

    fn window<'a>(&self, paths: &'a Paths) -> TResult<&'a Window> {
        paths.window.as_deref().ok_or_else(|| {
            TransportError::InvalidArgument("hierarchical schedule without a window".into())
        })
    }

    /// Runs `step` with the leaders' schedule over their links, on a leader of a
    /// group with several hosts (other ranks, and a single host, skip it).
    fn between_leaders(
        &self,
        paths: &mut Paths,
        chunk: usize,
        dl: Deadline,
        step: impl FnOnce(Schedule<'_>) -> TResult<()>,
    ) -> TResult<()> {
        let place = self.place();
        let Some(index) = place.leader_index else {
            return Ok(());
        };
        if place.leaders.len() < 2 {
            return Ok(());
        }
        let mut sub = SubLinks {
            links: &mut paths.links,
            ranks: place.leaders,
        };
        step(Schedule {
            rank: index,
            size: place.leaders.len(),
            links: &mut sub,
            chunk,
            deadline: dl,
            ahead: self.inner.opts.ring_ahead,
        })
    }

    /// Broadcast of `buf` from the host's member `from` to the other members on the
    /// window (nothing when the rank is alone on its host).
    fn within_host_broadcast(
        &self,
        paths: &Paths,
        elem: usize,
        from: usize,
        buf: &mut [u8],
        dl: Deadline,
        op: &'static str,
    ) -> TResult<()> {
        let w = self.window(paths)?;
        if w.members() > 1 {
            let mut e = HostExec::new(w, None, elem, dl, op);
            intra::broadcast(&mut e, from, addr_mut(buf), buf.len())?;
        }
        Ok(())
    }

    /// Hierarchical all_reduce into `buf` (of `input`, or of `buf` itself), without
    /// the final step (the caller runs it). `leaders` is the tuner's plan for the
    /// leaders' all_reduce.
    pub(super) fn all_reduce_hier(
        &self,
        paths: &mut Paths,
        reducer: &dyn ByteReducer,
        input: Option<&[u8]>,
        buf: &mut [u8],
        leaders: Plan,
        dl: Deadline,
    ) -> TResult<()> {
        let partial = Partial(reducer);
        let len = buf.len();
        // 1. Inside the host: the host's reduction lands in the leader's `buf`.
        {
            let w = self.window(paths)?;
            if w.members() == 1 {
                if let Some(i) = input {
                    tutti_transport::copy::copy_slice(buf, i);
                }
            } else if len <= LINE_PAYLOAD {
                small::all_reduce(w, &partial, input, buf, dl)?;
            } else {
                let out = addr_mut(buf);
                let inp = input.map_or(out, addr);
                let mut e = HostExec::new(w, Some(&partial), 0, dl, "all_reduce");
                intra::reduce(&mut e, 0, inp, out, len)?;
            }
        }
        // 2. Between the hosts' leaders, over their links.
        let max_message = paths.links.max_message;
        self.between_leaders(paths, leaders.chunk, dl, |mut s| match leaders.algo {
            Algo::Direct if len <= max_message => {
                tutti_ring::all_reduce_direct(&mut s, buf, &partial)
            }
            Algo::Tree => tutti_tree::all_reduce(&mut s, buf, &partial),
            Algo::HalvingDoubling if s.size.is_power_of_two() => {
                tutti_ring::all_reduce_halving_doubling(&mut s, None, buf, &partial)
            }
            _ => tutti_ring::all_reduce(&mut s, buf, &partial),
        })?;
        // 3. Inside the host: the leader's result to every member.
        let elem = reducer.element_size();
        self.within_host_broadcast(paths, elem, 0, buf, dl, "all_reduce")
    }

    /// Hierarchical broadcast of the root's `buf`: on the root's host from the root
    /// on the window (when it is not the leader), between the leaders from the root's
    /// leader over their links (a tree or a chain, as `leaders` says), then from each
    /// other leader on its window.
    pub(super) fn broadcast_hier(
        &self,
        paths: &mut Paths,
        elem: usize,
        buf: &mut [u8],
        root: usize,
        leaders: Plan,
        dl: Deadline,
    ) -> TResult<()> {
        let layout = &self.inner.layout;
        let (mine, root_host) = (layout.host_of[self.rank()], layout.host_of[root]);
        let root_member = layout.hosts[root_host]
            .iter()
            .position(|&r| r == root)
            .unwrap_or(0);
        // 1. The root's host, when the root is not its leader: the leader gets it too.
        if mine == root_host && root_member != 0 {
            self.within_host_broadcast(paths, elem, root_member, buf, dl, "broadcast")?;
        }
        // 2. Between the leaders, from the root's host's.
        self.between_leaders(paths, leaders.chunk, dl, |mut s| match leaders.algo {
            Algo::Tree => tutti_tree::broadcast(&mut s, buf, root_host),
            _ => tutti_ring::broadcast(&mut s, buf, root_host),
        })?;
        // 3. Every other host (and the root's, when the root leads it): from the
        //    leader.
        if mine != root_host || root_member == 0 {
            self.within_host_broadcast(paths, elem, 0, buf, dl, "broadcast")?;
        }
        Ok(())
    }

    /// Hierarchical all_gather: `output` (`size` blocks of `input.len()` bytes)
    /// receives every rank's `input`. The leader gathers its host's blocks in place,
    /// the leaders exchange their hosts' blocks over their links, and each leader
    /// broadcasts the whole result on its window.
    pub(super) fn all_gather_hier(
        &self,
        paths: &mut Paths,
        elem: usize,
        input: &[u8],
        output: &mut [u8],
        chunk: usize,
        dl: Deadline,
    ) -> TResult<()> {
        let layout = &self.inner.layout;
        let block = input.len();
        let host = &layout.hosts[layout.host_of[self.rank()]];
        // 1. The host's blocks, each at its rank's place in the leader's output.
        {
            let w = self.window(paths)?;
            let lens = vec![block; host.len()];
            let displs: Vec<usize> = host.iter().map(|&r| r * block).collect();
            let mut e = HostExec::new(w, None, elem, dl, "all_gather");
            intra::gather_v(&mut e, 0, addr(input), addr_mut(output), &lens, &displs)?;
        }
        // 2. The leaders exchange their hosts' blocks: each leader sends the blocks
        //    of its host and receives every other host's, along a ring.
        self.between_leaders(paths, chunk, dl, |s| {
            exchange_host_blocks(s, &layout.hosts, block, output)
        })?;
        // 3. The whole result to every member of the host.
        self.within_host_broadcast(paths, elem, 0, output, dl, "all_gather")
    }

    /// Hierarchical reduce_scatter, without the final step: `input` holds `size`
    /// blocks of `output.len()` bytes; rank `r` receives the reduction of every
    /// rank's block `r`. The leader reduces its host's inputs, the leaders
    /// reduce-scatter the hosts' block sets over their links, and each leader
    /// scatters its host's blocks on its window.
    pub(super) fn reduce_scatter_hier(
        &self,
        paths: &mut Paths,
        reducer: &dyn ByteReducer,
        input: &[u8],
        output: &mut [u8],
        chunk: usize,
        dl: Deadline,
    ) -> TResult<()> {
        let partial = Partial(reducer);
        let layout = &self.inner.layout;
        let block = output.len();
        let place = self.place();
        let host = &layout.hosts[layout.host_of[self.rank()]];
        // 1. The host's reduction of the whole input, in the leader's `acc`.
        let mut acc = if place.leader_index.is_some() {
            vec![0u8; input.len()]
        } else {
            Vec::new()
        };
        {
            let w = self.window(paths)?;
            if w.members() == 1 {
                tutti_transport::copy::copy_slice(&mut acc, input);
            } else {
                let out = if acc.is_empty() {
                    addr(input)
                } else {
                    addr_mut(&mut acc)
                };
                let mut e = HostExec::new(w, Some(&partial), 0, dl, "reduce_scatter");
                intra::reduce(&mut e, 0, addr(input), out, input.len())?;
            }
        }
        // 2. The leaders reduce-scatter the hosts' block sets.
        self.between_leaders(paths, chunk, dl, |s| {
            reduce_scatter_host_blocks(s, &layout.hosts, block, &mut acc, &partial)
        })?;
        // 3. Each member's block from its leader.
        let w = self.window(paths)?;
        let elem = reducer.element_size();
        let lens = vec![block; host.len()];
        let displs: Vec<usize> = host.iter().map(|&r| r * block).collect();
        let src = if acc.is_empty() {
            addr(input)
        } else {
            addr(&acc)
        };
        let mut e = HostExec::new(w, None, elem, dl, "reduce_scatter");
        intra::scatter_v(&mut e, 0, src, &lens, &displs, addr_mut(output))
    }
}

/// The leaders' ring reduce-scatter of whole hosts' block sets: in step `k` leader
/// `i` sends its partial reduction of host `i - k - 1`'s blocks to leader `i + 1`
/// and folds leader `i - 1`'s partial reduction of host `i - k - 2`'s blocks into
/// its own, so that after `H - 1` steps leader `i` holds the full reduction of its
/// own host's blocks (folded in an order fixed by the layout).
fn reduce_scatter_host_blocks(
    s: Schedule<'_>,
    hosts: &[Vec<usize>],
    block: usize,
    acc: &mut [u8],
    reducer: &dyn ByteReducer,
) -> TResult<()> {
    ring_host_blocks(s, hosts, block, acc, 1, Some(reducer))
}

/// The leaders' ring exchange of whole hosts' blocks: in step `k` leader `i` sends
/// the blocks of host `i - k` to leader `i + 1` and receives those of host
/// `i - k - 1` from leader `i - 1`, so that after `H - 1` steps every leader's
/// `output` holds every host's blocks at their ranks' places.
fn exchange_host_blocks(
    s: Schedule<'_>,
    hosts: &[Vec<usize>],
    block: usize,
    output: &mut [u8],
) -> TResult<()> {
    ring_host_blocks(s, hosts, block, output, 0, None)
}

/// The `H - 1` ring steps both use: in step `k` leader `i` sends the blocks of host
/// `i - k - lag` from `buf` to leader `i + 1` and receives those of the host before
/// it from leader `i - 1`, into `buf` (copied, or folded in with `reducer`). Sends
/// and receives alternate chunk by chunk, so that bounded link buffers never hold up
/// both neighbours.
fn ring_host_blocks(
    s: Schedule<'_>,
    hosts: &[Vec<usize>],
    block: usize,
    buf: &mut [u8],
    lag: usize,
    reducer: Option<&dyn ByteReducer>,
) -> TResult<()> {
    let h = s.size;
    let (next, prev) = (s.next(), s.prev());
    let chunk = s.chunk.max(1);
    let dl = s.deadline;
    for k in 0..h - 1 {
        let send_host = (s.rank + 2 * h - k - lag) % h;
        let recv_host = (send_host + h - 1) % h;
        let (tx, rx) = s.links.pair(next, prev)?;
        let sends = pieces(&hosts[send_host], block, chunk);
        let recvs = pieces(&hosts[recv_host], block, chunk);
        for i in 0..sends.len().max(recvs.len()) {
            if let Some(&(off, len)) = sends.get(i) {
                tutti_transport::ops::send(tx, &buf[off..off + len], len, dl)?;
            }
            if let Some(&(off, len)) = recvs.get(i) {
                let dst = &mut buf[off..off + len];
                match reducer {
                    Some(r) => tutti_transport::ops::recv_reduce(rx, dst, r, dl)?,
                    None => tutti_transport::ops::recv(rx, dst, dl)?,
                }
            }
        }
    }
    Ok(())
}

/// `(offset, length)` pieces of at most `chunk` bytes covering the blocks of `ranks`
/// in an output of `block`-byte blocks.
fn pieces(ranks: &[usize], block: usize, chunk: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for &r in ranks {
        let mut off = 0;
        while off < block {
            let len = chunk.min(block - off);
            out.push((r * block + off, len));
            off += len;
        }
    }
    out
}
