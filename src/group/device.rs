//! Collectives on device memory: cudarc buffers (`CudaSlice<T>`, `CudaView`,
//! `CudaViewMut`, anything implementing `DevicePtr`/`DevicePtrMut`, the types candle,
//! cubecl and mistral.rs share) with the caller's `CudaStream`.
//!
//! Like NCCL, every call only *enqueues*: the collective runs on the stream after the
//! work queued before it, and work queued after it sees its result. The call returns a
//! [`DeviceWork`] (a CUDA event) to poll, wait for, or make another stream wait for.
//! Several ranks may share one GPU (NCCL refuses this).
//!
//! A rank's device collectives in a group are bound to one CUDA device (its primary
//! context), chosen by its first device collective, which sets up the device path
//! collectively (see [`ProcessGroup::device_path`]): every rank of the group must call
//! the same collectives in the same order, host and device alike.

use cudarc::driver::{CudaStream, DevicePtr, DevicePtrMut, DeviceSlice};

use super::ProcessGroup;
use super::device_comm::Call;
use super::device_work::DeviceWork;
use crate::{DataType, Element, Error, ReduceOp, Result};

/// The device of a buffer (its context's ordinal), checked against the stream's.
fn device_of<T>(
    what: &str,
    name: &str,
    buf: &impl DeviceSlice<T>,
    stream: &CudaStream,
) -> Result<usize> {
    let ctx = buf.stream().context();
    if ctx.cu_ctx() != stream.context().cu_ctx() {
        return Err(Error::InvalidArgument(format!(
            "{what}: {name} belongs to CUDA device {}'s context but the stream to device {}'s (or another context of the device)",
            ctx.ordinal(),
            stream.context().ordinal()
        )));
    }
    Ok(ctx.ordinal())
}

fn len_error(what: &str, expected: usize, actual: usize) -> Error {
    Error::InvalidArgument(format!(
        "{what}: expected {expected} elements, got {actual}"
    ))
}

impl ProcessGroup {
    fn check_device_root(&self, what: &str, root: usize) -> Result<()> {
        if root >= self.size() {
            return Err(Error::InvalidArgument(format!(
                "{what}: root {root} is outside the group of {} ranks",
                self.size()
            )));
        }
        Ok(())
    }

    /// Enqueues `call` for device `device` on `stream`.
    pub(crate) fn device_submit(
        &self,
        device: usize,
        call: Call,
        dtype: DataType,
        stream: &CudaStream,
    ) -> Result<DeviceWork> {
        let comm = self.device_comm(device)?;
        comm.submit(self, call, dtype, stream)
    }

    /// How this rank's device collectives run, once the first one set them up:
    /// `"window"` (CUDA IPC windows between this host's ranks) or `"staged: <why>"`
    /// (through pinned host memory and the host paths); `None` before.
    pub fn device_path(&self) -> Option<String> {
        let slot = self.inner.device.comm_if_created()?;
        Some(match slot.staged_reason() {
            None => "window".into(),
            Some(why) => format!("staged: {why}"),
        })
    }

    /// All-reduce of `buf` in place on `stream` (see [`all_reduce`](Self::all_reduce)
    /// for the semantics of each op). Only enqueues.
    ///
    /// Errors (before anything is enqueued): an invalid (dtype, op) pair, a buffer of
    /// another context than the stream, [`Error::GpuUnavailable`], a failed group.
    pub fn all_reduce_device<T: Element>(
        &self,
        buf: &mut impl DevicePtrMut<T>,
        op: ReduceOp,
        stream: &CudaStream,
    ) -> Result<DeviceWork> {
        op.check(T::DTYPE)?;
        let device = device_of("all_reduce_device", "buf", buf, stream)?;
        let count = buf.len();
        let (p, _done) = buf.device_ptr_mut(stream);
        let call = Call::AllReduce {
            input: p,
            output: p,
            count,
            op,
        };
        self.device_submit(device, call, T::DTYPE, stream)
    }

    /// All-reduce of `input` into `output` (same length) on `stream`.
    pub fn all_reduce_device_into<T: Element>(
        &self,
        input: &impl DevicePtr<T>,
        output: &mut impl DevicePtrMut<T>,
        op: ReduceOp,
        stream: &CudaStream,
    ) -> Result<DeviceWork> {
        op.check(T::DTYPE)?;
        const WHAT: &str = "all_reduce_device_into";
        let device = device_of(WHAT, "input", input, stream)?;
        device_of(WHAT, "output", output, stream)?;
        if input.len() != output.len() {
            return Err(len_error(
                "all_reduce_device_into: output",
                input.len(),
                output.len(),
            ));
        }
        let count = input.len();
        let (i, _i_done) = input.device_ptr(stream);
        let (o, _o_done) = output.device_ptr_mut(stream);
        let call = Call::AllReduce {
            input: i,
            output: o,
            count,
            op,
        };
        self.device_submit(device, call, T::DTYPE, stream)
    }

    /// Broadcast of the root's `buf` to every rank's `buf` on `stream`.
    pub fn broadcast_device<T: Element>(
        &self,
        buf: &mut impl DevicePtrMut<T>,
        root: usize,
        stream: &CudaStream,
    ) -> Result<DeviceWork> {
        self.check_device_root("broadcast_device", root)?;
        let device = device_of("broadcast_device", "buf", buf, stream)?;
        let count = buf.len();
        let (p, _done) = buf.device_ptr_mut(stream);
        let call = Call::Broadcast {
            buf: p,
            count,
            root,
        };
        self.device_submit(device, call, T::DTYPE, stream)
    }

    /// Reduce of every rank's `buf` into the root's `buf` on `stream` (the others'
    /// are left as they were).
    pub fn reduce_device<T: Element>(
        &self,
        buf: &mut impl DevicePtrMut<T>,
        op: ReduceOp,
        root: usize,
        stream: &CudaStream,
    ) -> Result<DeviceWork> {
        op.check(T::DTYPE)?;
        self.check_device_root("reduce_device", root)?;
        let device = device_of("reduce_device", "buf", buf, stream)?;
        let count = buf.len();
        let (p, _done) = buf.device_ptr_mut(stream);
        let call = Call::Reduce {
            input: p,
            output: p,
            count,
            op,
            root,
        };
        self.device_submit(device, call, T::DTYPE, stream)
    }

    /// All-gather on `stream`: `output` (`size * input.len()` elements) receives
    /// every rank's `input`, rank `i`'s at `i * input.len()`.
    pub fn all_gather_device<T: Element>(
        &self,
        input: &impl DevicePtr<T>,
        output: &mut impl DevicePtrMut<T>,
        stream: &CudaStream,
    ) -> Result<DeviceWork> {
        const WHAT: &str = "all_gather_device";
        let device = device_of(WHAT, "input", input, stream)?;
        device_of(WHAT, "output", output, stream)?;
        let count = input.len();
        if output.len() != count * self.size() {
            return Err(len_error(
                "all_gather_device: output (group size x input)",
                count * self.size(),
                output.len(),
            ));
        }
        let (i, _i_done) = input.device_ptr(stream);
        let (o, _o_done) = output.device_ptr_mut(stream);
        let call = Call::AllGather {
            input: i,
            output: o,
            count,
        };
        self.device_submit(device, call, T::DTYPE, stream)
    }

    /// Reduce-scatter on `stream`: `input` (`size * output.len()` elements) is
    /// reduced across ranks and rank `r` receives block `r` in `output`.
    pub fn reduce_scatter_device<T: Element>(
        &self,
        input: &impl DevicePtr<T>,
        output: &mut impl DevicePtrMut<T>,
        op: ReduceOp,
        stream: &CudaStream,
    ) -> Result<DeviceWork> {
        op.check(T::DTYPE)?;
        const WHAT: &str = "reduce_scatter_device";
        let device = device_of(WHAT, "input", input, stream)?;
        device_of(WHAT, "output", output, stream)?;
        let count = output.len();
        if input.len() != count * self.size() {
            return Err(len_error(
                "reduce_scatter_device: input (group size x output)",
                count * self.size(),
                input.len(),
            ));
        }
        let (i, _i_done) = input.device_ptr(stream);
        let (o, _o_done) = output.device_ptr_mut(stream);
        let call = Call::ReduceScatter {
            input: i,
            output: o,
            count,
            op,
        };
        self.device_submit(device, call, T::DTYPE, stream)
    }

    /// All-to-all on `stream`: block `i` of `input` goes to rank `i`, which stores it
    /// as block `r` of its `output` (same lengths, a multiple of the group size).
    pub fn all_to_all_device<T: Element>(
        &self,
        input: &impl DevicePtr<T>,
        output: &mut impl DevicePtrMut<T>,
        stream: &CudaStream,
    ) -> Result<DeviceWork> {
        const WHAT: &str = "all_to_all_device";
        let device = device_of(WHAT, "input", input, stream)?;
        device_of(WHAT, "output", output, stream)?;
        let n = self.size();
        if !input.len().is_multiple_of(n) || output.len() != input.len() {
            return Err(Error::InvalidArgument(format!(
                "all_to_all_device: input ({}) and output ({}) must have the same number of elements, a multiple of the group size {n}",
                input.len(),
                output.len()
            )));
        }
        let count = input.len() / n;
        let (i, _i_done) = input.device_ptr(stream);
        let (o, _o_done) = output.device_ptr_mut(stream);
        let call = Call::AllToAll {
            input: i,
            output: o,
            count,
        };
        self.device_submit(device, call, T::DTYPE, stream)
    }

    /// Gather on `stream`: the root's `output` (`size * input.len()` elements)
    /// receives every rank's `input`; other ranks' `output` is not touched (any
    /// length).
    pub fn gather_device<T: Element>(
        &self,
        input: &impl DevicePtr<T>,
        output: &mut impl DevicePtrMut<T>,
        root: usize,
        stream: &CudaStream,
    ) -> Result<DeviceWork> {
        const WHAT: &str = "gather_device";
        self.check_device_root(WHAT, root)?;
        let device = device_of(WHAT, "input", input, stream)?;
        device_of(WHAT, "output", output, stream)?;
        let count = input.len();
        if self.rank() == root && output.len() != count * self.size() {
            return Err(len_error(
                "gather_device: the root's output (group size x input)",
                count * self.size(),
                output.len(),
            ));
        }
        let (i, _i_done) = input.device_ptr(stream);
        let (o, _o_done) = output.device_ptr_mut(stream);
        let call = Call::Gather {
            input: i,
            output: o,
            count,
            root,
        };
        self.device_submit(device, call, T::DTYPE, stream)
    }

    /// Scatter on `stream`: block `i` of the root's `input` (`size * output.len()`
    /// elements) goes to rank `i`'s `output`; other ranks' `input` is not read.
    pub fn scatter_device<T: Element>(
        &self,
        input: &impl DevicePtr<T>,
        output: &mut impl DevicePtrMut<T>,
        root: usize,
        stream: &CudaStream,
    ) -> Result<DeviceWork> {
        const WHAT: &str = "scatter_device";
        self.check_device_root(WHAT, root)?;
        let device = device_of(WHAT, "input", input, stream)?;
        device_of(WHAT, "output", output, stream)?;
        let count = output.len();
        if self.rank() == root && input.len() != count * self.size() {
            return Err(len_error(
                "scatter_device: the root's input (group size x output)",
                count * self.size(),
                input.len(),
            ));
        }
        let (i, _i_done) = input.device_ptr(stream);
        let (o, _o_done) = output.device_ptr_mut(stream);
        let call = Call::Scatter {
            input: i,
            output: o,
            count,
            root,
        };
        self.device_submit(device, call, T::DTYPE, stream)
    }

    /// A barrier in stream order: work queued on `stream` after it starts once every
    /// rank's stream reached its own barrier (the host does not block).
    pub fn barrier_device(&self, stream: &CudaStream) -> Result<DeviceWork> {
        self.device_submit(
            stream.context().ordinal(),
            Call::Barrier,
            DataType::U8,
            stream,
        )
    }
}
