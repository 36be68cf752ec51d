//! The collectives on typed host slices, and the byte-level layer they share with the
//! raw pointer API. Each collective runs on the same-host window when every rank
//! shares this host (the `tutti-intra` algorithms), else over the links (the ring and
//! tree schedules); see [`Route`].

use tutti_intra as intra;
use tutti_ring::Schedule;
use tutti_transport::window::{Addr, HostExec, Window};
use tutti_transport::{ByteReducer, Deadline, ReduceError, TransportError};

use super::ProcessGroup;
use super::check::Desc;
use super::links::LinkTable;
use super::options::Algo;
use super::paths::Route;
use super::small;
use super::tuner::{
    Plan, Spread, WindowPlan, pick_chunk, plan_all_reduce, plan_spread, plan_window,
};
use crate::cpu::Reducer;
use crate::{DataType, Element, Error, ReduceOp, Result};

/// The CPU kernels as the algorithms' byte-level reducer, with the group size for
/// the final step of `Avg`.
pub(crate) struct HostReducer {
    pub reducer: Reducer,
    pub size: usize,
}

impl HostReducer {
    pub(crate) fn new(dtype: DataType, op: ReduceOp, size: usize) -> Result<Self> {
        Ok(HostReducer {
            reducer: Reducer::new(dtype, op)?,
            size,
        })
    }
}

impl ByteReducer for HostReducer {
    fn element_size(&self) -> usize {
        ByteReducer::element_size(&self.reducer)
    }
    fn reduce_inplace(&self, dst: &mut [u8], src: &[u8]) -> std::result::Result<(), ReduceError> {
        ByteReducer::reduce_inplace(&self.reducer, dst, src)
    }
    fn reduce(&self, dst: &mut [u8], a: &[u8], b: &[u8]) -> std::result::Result<(), ReduceError> {
        ByteReducer::reduce(&self.reducer, dst, a, b)
    }
    fn reduce_inplace_after(
        &self,
        dst: &mut [u8],
        src: &[u8],
    ) -> std::result::Result<(), ReduceError> {
        ByteReducer::reduce_inplace_after(&self.reducer, dst, src)
    }
    fn finalize(&self, dst: &mut [u8]) -> std::result::Result<(), ReduceError> {
        self.reducer
            .finalize(dst, self.size)
            .map_err(crate::cpu::reduce_error)
    }
}

fn len_error(what: &str, expected: usize, actual: usize) -> Error {
    Error::InvalidArgument(format!(
        "{what}: expected {expected} elements, got {actual}"
    ))
}

fn addr(b: &[u8]) -> Addr {
    b.as_ptr() as Addr
}

fn addr_mut(b: &mut [u8]) -> Addr {
    b.as_mut_ptr() as Addr
}

/// Byte lengths and offsets of `n` consecutive blocks of `len` bytes.
fn even(n: usize, len: usize) -> (Vec<usize>, Vec<usize>) {
    (vec![len; n], (0..n).map(|m| m * len).collect())
}

/// Two-shot window all_reduces of at least this many bytes read the members' inputs
/// directly where they can ([`intra::all_reduce_two_shot_direct`]). Below it the
/// extra synchronisation that publishes the inputs costs more than the copy it
/// saves: Intel Xeon (2 vCPUs), 64 KiB, 2 processes on shared buffers 8.5-9.0 us
/// against 8.2 copying, 4 processes 24-35 against 22; from 256 KiB it wins (2
/// processes 20-26 against 31-37 us).
const DIRECT_FROM: usize = 256 << 10;

impl ProcessGroup {
    /// Whether a window collective moving `bytes` per rank reads the members' own
    /// buffers where it can: where the members agreed to direct reads or may have
    /// shared buffers (the count of allocations is the same on every member), from
    /// [`DIRECT_FROM`]. The same answer on every member.
    fn reads_directly(&self, bytes: usize) -> bool {
        bytes >= DIRECT_FROM
            && (self.inner.window_plan.direct || self.inner.shared.allocations() > 0)
    }

    /// `e`, allowed the direct reads [`reads_directly`](Self::reads_directly) decided.
    fn direct_exec<'a>(&'a self, e: HostExec<'a>) -> HostExec<'a> {
        e.reading_members_directly(self.inner.window_plan.direct)
            .with_shared(&self.inner.shared)
    }

    fn check_root(&self, what: &str, root: usize) -> Result<()> {
        if root >= self.size() {
            return Err(Error::InvalidArgument(format!(
                "{what}: root {root} is outside the group of {} ranks",
                self.size()
            )));
        }
        Ok(())
    }

    fn forced(&self) -> Option<Algo> {
        self.inner.opts.algo
    }

    /// Whether broadcast, all_gather and reduce_scatter run hierarchically: ranks on
    /// several hosts, some sharing one, and no flat link algorithm forced (they cross
    /// the network with fewer, larger messages, and the window is the cheaper path
    /// inside a host; bench/RESULTS.md has the measurements).
    fn hierarchical(&self) -> bool {
        self.inner.layout.is_hierarchical() && !self.forced().is_some_and(Algo::uses_links)
    }

    fn plan(&self, links: &LinkTable, bytes: usize, tree_ok: bool) -> Plan {
        let o = &self.inner.opts;
        let forced_algo = o
            .algo
            .filter(|a| a.uses_links() && (tree_ok || *a == Algo::Ring));
        let mut p = plan_all_reduce(
            bytes,
            self.size(),
            self.inner.layout.costs.ring,
            links.max_message,
            self.inner.layout.crowded,
            (forced_algo, o.chunk),
        );
        if !tree_ok {
            p.algo = Algo::Ring;
        }
        p
    }

    fn ring<'a>(&self, links: &'a mut LinkTable, chunk: usize, deadline: Deadline) -> Schedule<'a> {
        Schedule {
            rank: self.rank(),
            size: self.size(),
            links,
            chunk,
            deadline,
            ahead: self.inner.opts.ring_ahead,
        }
    }

    fn chunk_for(&self, links: &LinkTable, segment: usize) -> usize {
        self.inner
            .opts
            .chunk
            .unwrap_or_else(|| pick_chunk(segment, links.max_message, self.inner.layout.crowded))
            .min(links.max_message)
    }

    /// All-reduce of `buf` in place: every rank ends with the reduction of every
    /// rank's `buf` (for `Avg` divided by the group size, for `PreMulSum(s)` scaled).
    pub fn all_reduce<T: Element>(&self, buf: &mut [T], op: ReduceOp) -> Result<()> {
        self.all_reduce_bytes(T::DTYPE, op, None, bytemuck::cast_slice_mut(buf))
    }

    /// All-reduce of `input` into `output` (same length); `input` is not modified.
    pub fn all_reduce_into<T: Element>(
        &self,
        input: &[T],
        output: &mut [T],
        op: ReduceOp,
    ) -> Result<()> {
        op.check(T::DTYPE)?;
        if input.len() != output.len() {
            return Err(len_error(
                "all_reduce_into: output",
                input.len(),
                output.len(),
            ));
        }
        self.all_reduce_bytes(
            T::DTYPE,
            op,
            Some(bytemuck::cast_slice(input)),
            bytemuck::cast_slice_mut(output),
        )
    }

    /// All-reduce into `buf`, of `input` (out of place) or of `buf` itself.
    pub(crate) fn all_reduce_bytes(
        &self,
        dtype: DataType,
        op: ReduceOp,
        input: Option<&[u8]>,
        buf: &mut [u8],
    ) -> Result<()> {
        let reducer = HostReducer::new(dtype, op, self.size())?;
        if !buf.len().is_multiple_of(dtype.size()) {
            return Err(Error::PartialElement {
                what: "all_reduce: buffer",
                len: buf.len(),
                dtype,
                size: dtype.size(),
            });
        }
        let desc = Desc::new(Some(dtype), buf.len() / dtype.size(), None, Some(op));
        let finalize_after = self.run("all_reduce", desc, |paths, dl| {
            match (paths.route(self.size(), self.forced()), &paths.window) {
                (Route::Window, Some(w)) => {
                    self.all_reduce_window(w, &reducer, input, buf, dl)?;
                    Ok(false)
                }
                _ => {
                    let spread = plan_spread(
                        buf.len(),
                        &self.inner.layout,
                        paths.links.max_message,
                        (self.forced(), self.inner.opts.chunk),
                    );
                    tracing::trace!(?spread, bytes = buf.len(), "all_reduce across hosts");
                    match spread {
                        Spread::Hier(leaders) => {
                            self.all_reduce_hier(paths, &reducer, input, buf, leaders, dl)?
                        }
                        Spread::Flat(plan) => {
                            self.all_reduce_links(&mut paths.links, &reducer, input, buf, plan, dl)?
                        }
                    }
                    Ok(true)
                }
            }
        })?;
        if finalize_after {
            reducer.reducer.finalize(buf, self.size())?;
        }
        Ok(())
    }

    fn all_reduce_window(
        &self,
        w: &Window,
        reducer: &HostReducer,
        input: Option<&[u8]>,
        buf: &mut [u8],
        dl: Deadline,
    ) -> std::result::Result<(), TransportError> {
        let len = buf.len();
        let plan = plan_window(len, self.inner.window_plan.two_shot_from, self.forced());
        tracing::trace!(?plan, bytes = len, "all_reduce on the window");
        if plan == WindowPlan::Line {
            return small::all_reduce(w, reducer, input, buf, dl);
        }
        let out = addr_mut(buf);
        let inp = input.map_or(out, addr);
        let mut e = HostExec::new(w, Some(reducer), 0, dl, "all_reduce");
        if inp != out {
            // Out of place, the output is written without being read first: streamed
            // past the caches when the data exceeds them. In place its lines were
            // just read and are in the cache.
            e = e.sized_for(len);
        }
        match plan {
            // Direct reads where the members agreed to them or may have shared
            // buffers (the count of allocations is the same on every member), for
            // buffers large enough that the saved copy pays for the extra
            // synchronisation.
            WindowPlan::TwoShot if self.reads_directly(len) => {
                let mut e = self.direct_exec(e);
                intra::all_reduce_two_shot_direct(&mut e, inp, out, len)
            }
            WindowPlan::TwoShot => intra::all_reduce_two_shot(&mut e, inp, out, len),
            _ => intra::all_reduce_one_shot(&mut e, inp, out, len),
        }
    }

    fn all_reduce_links(
        &self,
        links: &mut LinkTable,
        reducer: &HostReducer,
        input: Option<&[u8]>,
        buf: &mut [u8],
        plan: Plan,
        dl: Deadline,
    ) -> std::result::Result<(), TransportError> {
        tracing::trace!(
            algo = plan.algo.name(),
            chunk = plan.chunk,
            bytes = buf.len(),
            "all_reduce plan"
        );
        if let (Some(i), Algo::Tree) = (input, plan.algo) {
            tutti_transport::copy::copy_slice(buf, i);
        }
        match plan.algo {
            Algo::Ring if input.is_some() => tutti_ring::all_reduce_into(
                &mut self.ring(links, plan.chunk, dl),
                input.unwrap_or_default(),
                buf,
                reducer,
            ),
            Algo::Direct if buf.len() <= links.max_message => tutti_ring::all_reduce_direct_into(
                &mut self.ring(links, plan.chunk, dl),
                input,
                buf,
                reducer,
            ),
            Algo::Tree => {
                tutti_tree::all_reduce(&mut self.ring(links, plan.chunk, dl), buf, reducer)
            }
            Algo::HalvingDoubling if self.size().is_power_of_two() => {
                tutti_ring::all_reduce_halving_doubling(
                    &mut self.ring(links, plan.chunk, dl),
                    input,
                    buf,
                    reducer,
                )
            }
            _ => {
                if let Some(i) = input {
                    tutti_transport::copy::copy_slice(buf, i);
                }
                tutti_ring::all_reduce(&mut self.ring(links, plan.chunk, dl), buf, reducer)
            }
        }
    }

    /// Broadcast of the root's `buf` to every rank's `buf`.
    pub fn broadcast<T: Element>(&self, buf: &mut [T], root: usize) -> Result<()> {
        self.broadcast_bytes(T::DTYPE, bytemuck::cast_slice_mut(buf), root)
    }

    pub(crate) fn broadcast_bytes(
        &self,
        dtype: DataType,
        buf: &mut [u8],
        root: usize,
    ) -> Result<()> {
        self.check_root("broadcast", root)?;
        let desc = Desc::new(Some(dtype), buf.len() / dtype.size(), Some(root), None);
        self.run("broadcast", desc, |paths, dl| {
            match (paths.route(self.size(), self.forced()), &paths.window) {
                (Route::Window, Some(w)) => {
                    // Not intra::broadcast_direct: with one reader per core it copies
                    // the whole buffer across cores in one pass, where the window's
                    // rounds overlap the root's copy-in with the others' copy-out
                    // (Intel Xeon, 2 processes on shared buffers, out of place 1 MiB:
                    // 180 us against 105-117; bench/RESULTS.md, eighth session).
                    let mut e = HostExec::new(w, None, dtype.size(), dl, "broadcast");
                    intra::broadcast(&mut e, root, addr_mut(buf), buf.len())
                }
                _ if self.hierarchical() => {
                    let layout = &self.inner.layout;
                    let o = &self.inner.opts;
                    let leaders = plan_all_reduce(
                        buf.len(),
                        layout.hosts.len(),
                        layout.costs.leaders,
                        paths.links.max_message,
                        layout.crowded,
                        (None, o.chunk),
                    );
                    self.broadcast_hier(paths, dtype.size(), buf, root, leaders, dl)
                }
                _ => {
                    let links = &mut paths.links;
                    let plan = self.plan(links, buf.len(), true);
                    let mut s = self.ring(links, plan.chunk, dl);
                    match plan.algo {
                        Algo::Tree => tutti_tree::broadcast(&mut s, buf, root),
                        _ => tutti_ring::broadcast(&mut s, buf, root),
                    }
                }
            }
        })
    }

    /// Reduce of every rank's `buf` into the root's `buf` (the other ranks' `buf`
    /// is left as it was).
    pub fn reduce<T: Element>(&self, buf: &mut [T], op: ReduceOp, root: usize) -> Result<()> {
        let dtype = T::DTYPE;
        let reducer = HostReducer::new(dtype, op, self.size())?;
        self.check_root("reduce", root)?;
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(buf);
        let is_root = self.rank() == root;
        let desc = Desc::new(
            Some(dtype),
            bytes.len() / dtype.size(),
            Some(root),
            Some(op),
        );
        let finalize_after = self.run("reduce", desc, |paths, dl| {
            match (paths.route(self.size(), self.forced()), &paths.window) {
                (Route::Window, Some(w)) => {
                    let mut e = HostExec::new(w, Some(&reducer), 0, dl, "reduce");
                    let p = addr_mut(bytes);
                    intra::reduce(&mut e, root, p, p, bytes.len())?;
                    Ok(false)
                }
                _ => {
                    let links = &mut paths.links;
                    let plan = self.plan(links, bytes.len(), true);
                    // Only the root writes into its buffer, so only the root needs a
                    // copy of its input; the others reduce straight from theirs.
                    let owned;
                    let (input, out): (&[u8], &mut [u8]) = if is_root {
                        owned = bytes.to_vec();
                        (&owned, &mut *bytes)
                    } else {
                        (&*bytes, &mut [])
                    };
                    let mut s = self.ring(links, plan.chunk, dl);
                    match plan.algo {
                        Algo::Tree => tutti_tree::reduce(&mut s, input, out, root, &reducer),
                        _ => tutti_ring::reduce(&mut s, input, out, root, &reducer),
                    }?;
                    Ok(true)
                }
            }
        })?;
        if is_root && finalize_after {
            reducer.reducer.finalize(bytes, self.size())?;
        }
        Ok(())
    }

    /// All-gather: `output` (`size * input.len()` elements) receives every rank's
    /// `input`, rank `i`'s at `i * input.len()`.
    pub fn all_gather<T: Element>(&self, input: &[T], output: &mut [T]) -> Result<()> {
        if output.len() != input.len() * self.size() {
            return Err(len_error(
                "all_gather: output (group size x input)",
                input.len() * self.size(),
                output.len(),
            ));
        }
        let (inb, outb): (&[u8], &mut [u8]) = (
            bytemuck::cast_slice(input),
            bytemuck::cast_slice_mut(output),
        );
        let desc = Desc::new(Some(T::DTYPE), input.len(), None, None);
        self.run("all_gather", desc, |paths, dl| {
            match (paths.route(self.size(), self.forced()), &paths.window) {
                (Route::Window, Some(w)) => {
                    let mut e = HostExec::new(w, None, T::DTYPE.size(), dl, "all_gather");
                    if self.reads_directly(outb.len()) {
                        e = self.direct_exec(e);
                        intra::all_gather_direct(&mut e, addr(inb), addr_mut(outb), inb.len())
                    } else {
                        intra::all_gather(&mut e, addr(inb), addr_mut(outb), inb.len())
                    }
                }
                _ if self.hierarchical() => {
                    let chunk = self.chunk_for(&paths.links, inb.len());
                    self.all_gather_hier(paths, T::DTYPE.size(), inb, outb, chunk, dl)
                }
                _ => {
                    let chunk = self.chunk_for(&paths.links, inb.len());
                    tutti_ring::all_gather(&mut self.ring(&mut paths.links, chunk, dl), inb, outb)
                }
            }
        })
    }

    /// Reduce-scatter: `input` (`size * output.len()` elements) is reduced across
    /// ranks and rank `r` receives block `r` of the result in `output`.
    pub fn reduce_scatter<T: Element>(
        &self,
        input: &[T],
        output: &mut [T],
        op: ReduceOp,
    ) -> Result<()> {
        let reducer = HostReducer::new(T::DTYPE, op, self.size())?;
        if input.len() != output.len() * self.size() {
            return Err(len_error(
                "reduce_scatter: input (group size x output)",
                output.len() * self.size(),
                input.len(),
            ));
        }
        let desc = Desc::new(Some(T::DTYPE), output.len(), None, Some(op));
        let (inb, outb): (&[u8], &mut [u8]) = (
            bytemuck::cast_slice(input),
            bytemuck::cast_slice_mut(output),
        );
        let finalize_after = self.run("reduce_scatter", desc, |paths, dl| {
            match (paths.route(self.size(), self.forced()), &paths.window) {
                (Route::Window, Some(w)) => {
                    let mut e = HostExec::new(w, Some(&reducer), 0, dl, "reduce_scatter");
                    if self.reads_directly(inb.len()) {
                        e = self.direct_exec(e);
                        intra::reduce_scatter_direct(
                            &mut e,
                            addr(inb),
                            addr_mut(outb),
                            outb.len(),
                        )?;
                    } else {
                        intra::reduce_scatter(&mut e, addr(inb), addr_mut(outb), outb.len())?;
                    }
                    Ok(false)
                }
                _ if self.hierarchical() => {
                    let chunk = self.chunk_for(&paths.links, outb.len());
                    self.reduce_scatter_hier(paths, &reducer, inb, outb, chunk, dl)?;
                    Ok(true)
                }
                _ => {
                    let chunk = self.chunk_for(&paths.links, outb.len());
                    let mut s = self.ring(&mut paths.links, chunk, dl);
                    tutti_ring::reduce_scatter(&mut s, inb, outb, &reducer)?;
                    Ok(true)
                }
            }
        })?;
        if finalize_after {
            reducer.reducer.finalize(outb, self.size())?;
        }
        Ok(())
    }

    /// All-to-all: block `i` of `input` goes to rank `i`, which stores it as block
    /// `r` of its `output` (`input`, `output`: the same length, a multiple of the
    /// group size).
    pub fn all_to_all<T: Element>(&self, input: &[T], output: &mut [T]) -> Result<()> {
        let n = self.size();
        if !input.len().is_multiple_of(n) || output.len() != input.len() {
            return Err(Error::InvalidArgument(format!(
                "all_to_all: input ({}) and output ({}) must have the same number of elements, a multiple of the group size {n}",
                input.len(),
                output.len()
            )));
        }
        let (inb, outb): (&[u8], &mut [u8]) = (
            bytemuck::cast_slice(input),
            bytemuck::cast_slice_mut(output),
        );
        let desc = Desc::new(Some(T::DTYPE), input.len(), None, None);
        self.run("all_to_all", desc, |paths, dl| {
            match (paths.route(self.size(), self.forced()), &paths.window) {
                (Route::Window, Some(w)) => {
                    let mut e = HostExec::new(w, None, T::DTYPE.size(), dl, "all_to_all");
                    intra::all_to_all(&mut e, addr(inb), addr_mut(outb), inb.len() / n)
                }
                _ => {
                    let chunk = self.chunk_for(&paths.links, inb.len() / n);
                    tutti_ring::all_to_all(&mut self.ring(&mut paths.links, chunk, dl), inb, outb)
                }
            }
        })
    }

    /// Gather: the root's `output` (`size * input.len()` elements) receives every
    /// rank's `input`; other ranks pass an empty `output`.
    pub fn gather<T: Element>(&self, input: &[T], output: &mut [T], root: usize) -> Result<()> {
        self.check_root("gather", root)?;
        if self.rank() == root && output.len() != input.len() * self.size() {
            return Err(len_error(
                "gather: the root's output (group size x input)",
                input.len() * self.size(),
                output.len(),
            ));
        }
        let (inb, outb): (&[u8], &mut [u8]) = (
            bytemuck::cast_slice(input),
            bytemuck::cast_slice_mut(output),
        );
        let desc = Desc::new(Some(T::DTYPE), input.len(), Some(root), None);
        self.run("gather", desc, |paths, dl| {
            match (paths.route(self.size(), self.forced()), &paths.window) {
                (Route::Window, Some(w)) => {
                    let (lens, displs) = even(self.size(), inb.len());
                    let mut e = HostExec::new(w, None, T::DTYPE.size(), dl, "gather");
                    intra::gather_v(&mut e, root, addr(inb), addr_mut(outb), &lens, &displs)
                }
                _ => {
                    let chunk = self.chunk_for(&paths.links, inb.len());
                    tutti_ring::gather(&mut self.ring(&mut paths.links, chunk, dl), inb, outb, root)
                }
            }
        })
    }

    /// Scatter: block `i` of the root's `input` (`size * output.len()` elements)
    /// goes to rank `i`'s `output`; other ranks pass an empty `input`.
    pub fn scatter<T: Element>(&self, input: &[T], output: &mut [T], root: usize) -> Result<()> {
        self.check_root("scatter", root)?;
        if self.rank() == root && input.len() != output.len() * self.size() {
            return Err(len_error(
                "scatter: the root's input (group size x output)",
                output.len() * self.size(),
                input.len(),
            ));
        }
        let desc = Desc::new(Some(T::DTYPE), output.len(), Some(root), None);
        let (inb, outb): (&[u8], &mut [u8]) = (
            bytemuck::cast_slice(input),
            bytemuck::cast_slice_mut(output),
        );
        self.run("scatter", desc, |paths, dl| {
            match (paths.route(self.size(), self.forced()), &paths.window) {
                (Route::Window, Some(w)) => {
                    let (lens, displs) = even(self.size(), outb.len());
                    let mut e = HostExec::new(w, None, T::DTYPE.size(), dl, "scatter");
                    intra::scatter_v(&mut e, root, addr(inb), &lens, &displs, addr_mut(outb))
                }
                _ => {
                    let chunk = self.chunk_for(&paths.links, outb.len());
                    tutti_ring::scatter(
                        &mut self.ring(&mut paths.links, chunk, dl),
                        inb,
                        outb,
                        root,
                    )
                }
            }
        })
    }

    /// Blocks until every rank of the group has called `barrier`.
    pub fn barrier(&self) -> Result<()> {
        let mut token = [0u8; 1];
        let reducer = HostReducer::new(DataType::U8, ReduceOp::Sum, self.size())?;
        self.run(
            "barrier",
            Desc::new(None, 0, None, None),
            |paths, dl| match (paths.route(self.size(), self.forced()), &paths.window) {
                (Route::Window, Some(w)) => {
                    let mut e = HostExec::new(w, None, 1, dl, "barrier");
                    intra::barrier(&mut e)
                }
                _ => {
                    let chunk = self.chunk_for(&paths.links, 16);
                    let mut t = self.ring(&mut paths.links, chunk, dl);
                    tutti_tree::all_reduce(&mut t, &mut token, &reducer)
                }
            },
        )
    }
}
