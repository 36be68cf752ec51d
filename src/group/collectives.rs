//! The collectives on typed host slices, and the byte-level layer they share with the
//! raw pointer API.

use tutti_ring::Ring;
use tutti_transport::{ByteReducer, Deadline};
use tutti_tree::Tree;

use super::ProcessGroup;
use super::check::Desc;
use super::links::LinkTable;
use super::options::Algo;
use super::tuner::{LinkCost, Plan, pick_chunk, plan_all_reduce};
use crate::cpu::Reducer;
use crate::{DataType, Element, Error, ReduceOp, Result};

/// The CPU kernels as the transports' byte-level reducer.
pub(crate) struct HostReducer(pub Reducer);

impl ByteReducer for HostReducer {
    fn element_size(&self) -> usize {
        ByteReducer::element_size(&self.0)
    }
    fn reduce_inplace(&self, dst: &mut [u8], src: &[u8]) -> std::result::Result<(), String> {
        ByteReducer::reduce_inplace(&self.0, dst, src)
    }
    fn reduce(&self, dst: &mut [u8], a: &[u8], b: &[u8]) -> std::result::Result<(), String> {
        ByteReducer::reduce(&self.0, dst, a, b)
    }
}

fn len_error(what: &str, expected: usize, actual: usize) -> Error {
    Error::InvalidArgument(format!(
        "{what}: expected {expected} elements, got {actual}"
    ))
}

impl ProcessGroup {
    fn check_root(&self, what: &str, root: usize) -> Result<()> {
        if root >= self.size() {
            return Err(Error::InvalidArgument(format!(
                "{what}: root {root} is outside the group of {} ranks",
                self.size()
            )));
        }
        Ok(())
    }

    fn cost(&self, links: &LinkTable) -> LinkCost {
        if links.any_tcp {
            LinkCost::tcp()
        } else {
            let cores = tutti_transport::cores();
            LinkCost::shm(self.inner.local_ranks > cores)
        }
    }

    fn plan(&self, links: &LinkTable, bytes: usize, tree_ok: bool) -> Plan {
        let o = &self.inner.opts;
        let forced_algo = o.algo.filter(|a| tree_ok || *a == Algo::Ring);
        let mut p = plan_all_reduce(
            bytes,
            self.size(),
            self.cost(links),
            links.max_message,
            (forced_algo, o.chunk),
        );
        if !tree_ok {
            p.algo = Algo::Ring;
        }
        p
    }

    fn ring<'a>(&self, links: &'a mut LinkTable, chunk: usize, deadline: Deadline) -> Ring<'a> {
        Ring {
            rank: self.rank(),
            size: self.size(),
            links,
            chunk,
            deadline,
        }
    }

    fn tree<'a>(&self, links: &'a mut LinkTable, chunk: usize, deadline: Deadline) -> Tree<'a> {
        Tree {
            rank: self.rank(),
            size: self.size(),
            links,
            chunk,
            deadline,
        }
    }

    fn chunk_for(&self, links: &LinkTable, segment: usize) -> usize {
        self.inner
            .opts
            .chunk
            .unwrap_or_else(|| pick_chunk(segment, links.max_message))
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
        let reducer = HostReducer(Reducer::new(dtype, op)?);
        if !buf.len().is_multiple_of(dtype.size()) {
            return Err(Error::PartialElement {
                what: "all_reduce: buffer",
                len: buf.len(),
                dtype,
                size: dtype.size(),
            });
        }
        let desc = Desc::new(Some(dtype), buf.len() / dtype.size(), None, Some(op));
        self.run("all_reduce", desc, |links, dl| {
            let plan = self.plan(links, buf.len(), true);
            tracing::trace!(
                algo = plan.algo.name(),
                chunk = plan.chunk,
                bytes = buf.len(),
                "all_reduce plan"
            );
            if let (Some(i), Algo::Direct | Algo::Tree) = (input, plan.algo) {
                buf.copy_from_slice(i);
            }
            match plan.algo {
                Algo::Ring if input.is_some() => tutti_ring::all_reduce_into(
                    &mut self.ring(links, plan.chunk, dl),
                    input.unwrap_or_default(),
                    buf,
                    &reducer,
                ),
                Algo::Direct if buf.len() <= links.max_message => tutti_ring::all_reduce_direct(
                    &mut self.ring(links, plan.chunk, dl),
                    buf,
                    &reducer,
                ),
                Algo::Ring | Algo::Direct => {
                    tutti_ring::all_reduce(&mut self.ring(links, plan.chunk, dl), buf, &reducer)
                }
                Algo::Tree => {
                    tutti_tree::all_reduce(&mut self.tree(links, plan.chunk, dl), buf, &reducer)
                }
            }
        })?;
        reducer.0.finalize(buf, self.size())
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
        self.run("broadcast", desc, |links, dl| {
            let plan = self.plan(links, buf.len(), true);
            match plan.algo {
                Algo::Ring | Algo::Direct => {
                    tutti_ring::broadcast(&mut self.ring(links, plan.chunk, dl), buf, root)
                }
                Algo::Tree => {
                    tutti_tree::broadcast(&mut self.tree(links, plan.chunk, dl), buf, root)
                }
            }
        })
    }

    /// Reduce of every rank's `buf` into the root's `buf` (the other ranks' `buf`
    /// is left as it was).
    pub fn reduce<T: Element>(&self, buf: &mut [T], op: ReduceOp, root: usize) -> Result<()> {
        let dtype = T::DTYPE;
        let reducer = HostReducer(Reducer::new(dtype, op)?);
        self.check_root("reduce", root)?;
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(buf);
        let is_root = self.rank() == root;
        let desc = Desc::new(
            Some(dtype),
            bytes.len() / dtype.size(),
            Some(root),
            Some(op),
        );
        self.run("reduce", desc, |links, dl| {
            let plan = self.plan(links, bytes.len(), true);
            // Only the root writes into its buffer, so only the root needs a copy of
            // its input; the others reduce straight from theirs.
            let owned;
            let (input, out): (&[u8], &mut [u8]) = if is_root {
                owned = bytes.to_vec();
                (&owned, &mut *bytes)
            } else {
                (&*bytes, &mut [])
            };
            match plan.algo {
                Algo::Ring | Algo::Direct => tutti_ring::reduce(
                    &mut self.ring(links, plan.chunk, dl),
                    input,
                    out,
                    root,
                    &reducer,
                ),
                Algo::Tree => tutti_tree::reduce(
                    &mut self.tree(links, plan.chunk, dl),
                    input,
                    out,
                    root,
                    &reducer,
                ),
            }
        })?;
        if is_root {
            reducer.0.finalize(bytes, self.size())?;
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
        self.run("all_gather", desc, |links, dl| {
            let chunk = self.chunk_for(links, inb.len());
            tutti_ring::all_gather(&mut self.ring(links, chunk, dl), inb, outb)
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
        let reducer = HostReducer(Reducer::new(T::DTYPE, op)?);
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
        self.run("reduce_scatter", desc, |links, dl| {
            let chunk = self.chunk_for(links, outb.len());
            tutti_ring::reduce_scatter(&mut self.ring(links, chunk, dl), inb, outb, &reducer)
        })?;
        reducer.0.finalize(outb, self.size())
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
        self.run("all_to_all", desc, |links, dl| {
            let chunk = self.chunk_for(links, inb.len() / n);
            tutti_ring::all_to_all(&mut self.ring(links, chunk, dl), inb, outb)
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
        self.run("gather", desc, |links, dl| {
            let chunk = self.chunk_for(links, inb.len());
            tutti_ring::gather(&mut self.ring(links, chunk, dl), inb, outb, root)
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
        self.run("scatter", desc, |links, dl| {
            let chunk = self.chunk_for(links, outb.len());
            tutti_ring::scatter(&mut self.ring(links, chunk, dl), inb, outb, root)
        })
    }

    /// Blocks until every rank of the group has called `barrier`.
    pub fn barrier(&self) -> Result<()> {
        let mut token = [0u8; 1];
        let reducer = HostReducer(Reducer::new(DataType::U8, ReduceOp::Sum)?);
        self.run("barrier", Desc::new(None, 0, None, None), |links, dl| {
            let chunk = self.chunk_for(links, 16);
            let mut t = self.tree(links, chunk, dl);
            tutti_tree::all_reduce(&mut t, &mut token, &reducer)
        })
    }
}
