//! The asynchronous variants of the collectives: owned buffers in, a [`Work`] that
//! hands them back. They run on the group's worker thread in the order they were
//! issued (several may be in flight), before any later blocking collective of the
//! group.

use super::ProcessGroup;
use super::work::Work;
use crate::{Element, ReduceOp, Result};

fn zeros<T: Element>(n: usize) -> Vec<T> {
    vec![<T as bytemuck::Zeroable>::zeroed(); n]
}

impl ProcessGroup {
    /// Queues `f` on the group's worker thread (after every earlier asynchronous
    /// collective) and counts it into an open group scope.
    fn spawn<R: Send + 'static>(
        &self,
        f: impl FnOnce(&ProcessGroup) -> Result<R> + Send + 'static,
    ) -> Work<R> {
        let (work, done) = Work::new();
        let g = self.clone();
        self.inner
            .worker
            .submit(Box::new(move || done.complete(f(&g))));
        self.inner.register(&work);
        work
    }

    /// Asynchronous [`all_reduce`](Self::all_reduce): the buffer comes back from
    /// [`Work::wait`].
    pub fn all_reduce_async<T: Element>(&self, mut buf: Vec<T>, op: ReduceOp) -> Work<Vec<T>> {
        self.spawn(move |g| g.all_reduce(&mut buf, op).map(|()| buf))
    }

    /// Asynchronous [`broadcast`](Self::broadcast).
    pub fn broadcast_async<T: Element>(&self, mut buf: Vec<T>, root: usize) -> Work<Vec<T>> {
        self.spawn(move |g| g.broadcast(&mut buf, root).map(|()| buf))
    }

    /// Asynchronous [`reduce`](Self::reduce).
    pub fn reduce_async<T: Element>(
        &self,
        mut buf: Vec<T>,
        op: ReduceOp,
        root: usize,
    ) -> Work<Vec<T>> {
        self.spawn(move |g| g.reduce(&mut buf, op, root).map(|()| buf))
    }

    /// Asynchronous [`all_gather`](Self::all_gather): returns the gathered buffer.
    pub fn all_gather_async<T: Element>(&self, input: Vec<T>) -> Work<Vec<T>> {
        self.spawn(move |g| {
            let mut out = zeros(input.len() * g.size());
            g.all_gather(&input, &mut out).map(|()| out)
        })
    }

    /// Asynchronous [`reduce_scatter`](Self::reduce_scatter): returns this rank's block.
    pub fn reduce_scatter_async<T: Element>(&self, input: Vec<T>, op: ReduceOp) -> Work<Vec<T>> {
        self.spawn(move |g| {
            let mut out = zeros(input.len() / g.size().max(1));
            g.reduce_scatter(&input, &mut out, op).map(|()| out)
        })
    }

    /// Asynchronous [`all_to_all`](Self::all_to_all): returns the output buffer.
    pub fn all_to_all_async<T: Element>(&self, input: Vec<T>) -> Work<Vec<T>> {
        self.spawn(move |g| {
            let mut out = zeros(input.len());
            g.all_to_all(&input, &mut out).map(|()| out)
        })
    }

    /// Asynchronous [`all_to_all_single`](Self::all_to_all_single) with split sizes:
    /// returns the output buffer (the sum of `output_splits` elements).
    pub fn all_to_all_single_async<T: Element>(
        &self,
        input: Vec<T>,
        input_splits: Vec<usize>,
        output_splits: Vec<usize>,
    ) -> Work<Vec<T>> {
        self.spawn(move |g| {
            let mut out = zeros(output_splits.iter().sum());
            g.all_to_all_single(&input, &mut out, &input_splits, &output_splits)
                .map(|()| out)
        })
    }

    /// Asynchronous [`gather`](Self::gather): the root gets the gathered buffer,
    /// the others an empty one.
    pub fn gather_async<T: Element>(&self, input: Vec<T>, root: usize) -> Work<Vec<T>> {
        self.spawn(move |g| {
            let mut out = if g.rank() == root {
                zeros(input.len() * g.size())
            } else {
                Vec::new()
            };
            g.gather(&input, &mut out, root).map(|()| out)
        })
    }

    /// Asynchronous [`scatter`](Self::scatter): `input` matters on the root; every
    /// rank gets its `count` elements.
    pub fn scatter_async<T: Element>(
        &self,
        input: Vec<T>,
        count: usize,
        root: usize,
    ) -> Work<Vec<T>> {
        self.spawn(move |g| {
            let mut out = zeros(count);
            g.scatter(&input, &mut out, root).map(|()| out)
        })
    }

    /// Asynchronous [`barrier`](Self::barrier).
    pub fn barrier_async(&self) -> Work<()> {
        self.spawn(|g| g.barrier())
    }
}
