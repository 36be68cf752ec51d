//! The raw layer on device memory, for frameworks that own their memory and streams
//! (NCCL's C API shape): `(CUdeviceptr, count, DataType, ReduceOp, CUstream)`. Every
//! call only enqueues on the stream (in place when send == recv) and returns a
//! [`DeviceWork`].
//!
//! The memory kind of every pointer is detected with cuPointerGetAttribute: host
//! memory passed where device memory is expected (or the reverse, through
//! [`MemoryKind`] in the `*_raw` calls), or memory of another device than the stream's,
//! is [`Error::MemoryMismatch`] before anything is enqueued.

use std::ffi::c_void;
use std::fmt;
use std::sync::Arc;

use cudarc::driver::CudaStream;
use cudarc::driver::sys::{CUdeviceptr, CUstream};

use super::ProcessGroup;
use super::device_comm::{Call, DeviceComm};
use super::device_work::DeviceWork;
use super::raw::MemoryKind;
use crate::gpu;
use crate::{DataType, Error, ReduceOp, Result};

impl fmt::Display for MemoryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryKind::Host => f.write_str("host memory"),
            MemoryKind::Cuda { device } => write!(f, "memory of CUDA device {device}"),
        }
    }
}

impl MemoryKind {
    /// Where `ptr` points, as the CUDA driver sees it (host memory without a driver).
    pub fn of(ptr: *const c_void) -> Result<MemoryKind> {
        gpu::memory_kind(ptr as u64)
    }
}

/// Checks that every non-empty buffer of a `*_raw` call is where `claimed` says, and
/// returns the kind (for `Cuda`, the detected device). Empty buffers (count 0) are not
/// looked at.
pub(crate) fn check_memory(
    what: &str,
    claimed: MemoryKind,
    buffers: &[(&'static str, *const c_void, bool)],
) -> Result<MemoryKind> {
    for &(name, p, used) in buffers {
        if !used || p.is_null() {
            continue;
        }
        let actual = MemoryKind::of(p)?;
        if actual != claimed {
            return Err(Error::MemoryMismatch {
                what: what.to_string(),
                buffer: name,
                claimed,
                actual,
            });
        }
    }
    Ok(claimed)
}

/// The CUDA device every non-empty buffer lives on; host memory, or buffers on two
/// devices, are errors naming the buffer.
fn cuda_device(what: &str, buffers: &[(&'static str, CUdeviceptr, bool)]) -> Result<Option<usize>> {
    let mut device: Option<(usize, &str)> = None;
    for &(name, p, used) in buffers {
        if !used {
            continue;
        }
        if p == 0 {
            return Err(Error::InvalidArgument(format!(
                "{what}: {name} is a null device pointer with a nonzero count"
            )));
        }
        match gpu::memory_kind(p)? {
            MemoryKind::Host => {
                return Err(Error::MemoryMismatch {
                    what: what.to_string(),
                    buffer: name,
                    claimed: MemoryKind::Cuda {
                        device: device.map_or(0, |d| d.0),
                    },
                    actual: MemoryKind::Host,
                });
            }
            MemoryKind::Cuda { device: d } => match device {
                None => device = Some((d, name)),
                Some((first, first_name)) if first != d => {
                    return Err(Error::InvalidArgument(format!(
                        "{what}: {first_name} is on CUDA device {first} but {name} on device {d}"
                    )));
                }
                Some(_) => {}
            },
        }
    }
    Ok(device.map(|d| d.0))
}

fn overlap(a: u64, alen: usize, b: u64, blen: usize) -> bool {
    alen > 0 && blen > 0 && a < b + blen as u64 && b < a + alen as u64
}

fn bytes(what: &str, count: usize, dtype: DataType) -> Result<usize> {
    count
        .checked_mul(dtype.size())
        .filter(|&b| b <= isize::MAX as usize)
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{what}: count {count} of {dtype} overflows the address space"
            ))
        })
}

impl ProcessGroup {
    /// The comm and a stream handle for a raw call on `device`, `stream` checked to
    /// belong to its (primary) context.
    ///
    /// # Safety
    /// `stream` must be a live stream (or null: the legacy default stream) for as long
    /// as the collective is in flight.
    unsafe fn raw_stream(
        &self,
        what: &str,
        device: usize,
        stream: CUstream,
    ) -> Result<(Arc<DeviceComm>, Arc<CudaStream>)> {
        let comm = self.device_comm(device)?;
        gpu::driver::bind(&comm.ctx)?;
        let ctx = gpu::driver::stream_context(stream)?;
        if ctx != comm.ctx.cu_ctx() {
            return Err(Error::InvalidArgument(format!(
                "{what}: the stream belongs to another CUDA context than device {device}'s primary context, which this rank's device collectives use"
            )));
        }
        // SAFETY: the stream belongs to this context (checked above) and outlives the
        // call (the caller's contract); the wrapper does not destroy it.
        let s = unsafe { comm.ctx.wrap_borrowed_stream(stream) };
        Ok((comm, s))
    }

    /// Runs `call` on the device of the buffers, or does nothing for a group-wide
    /// no-op (every buffer empty: every rank skips).
    ///
    /// # Safety
    /// As for the public raw calls.
    unsafe fn raw_submit(
        &self,
        what: &str,
        buffers: &[(&'static str, CUdeviceptr, bool)],
        call: Call,
        dtype: DataType,
        stream: CUstream,
    ) -> Result<DeviceWork> {
        let device = match cuda_device(what, buffers)? {
            Some(d) => d,
            // Every buffer is empty on this rank: the collective still runs (others
            // may have data, e.g. a non-root), on the device of the stream.
            None => {
                let ctx = gpu::driver::stream_context(stream)?;
                self.device_comm_for_context(what, ctx)?
            }
        };
        // SAFETY: forwarded caller contract on `stream`.
        let (comm, s) = unsafe { self.raw_stream(what, device, stream)? };
        comm.submit(self, call, dtype, &s)
    }

    /// The device whose primary context is `ctx`, once device collectives were set up
    /// on this rank.
    fn device_comm_for_context(
        &self,
        what: &str,
        ctx: cudarc::driver::sys::CUcontext,
    ) -> Result<usize> {
        match self.inner.device.comm_if_created() {
            Some(c) if c.ctx.cu_ctx() == ctx => Ok(c.ctx.ordinal()),
            _ => Err(Error::InvalidArgument(format!(
                "{what}: every buffer is empty and this rank's device collectives are not set up yet; pass the device buffers (even empty) of a device collective first"
            ))),
        }
    }

    /// All-reduce of `count` elements from device buffer `send` into `recv` (in place
    /// when equal), enqueued on `stream`.
    ///
    /// # Safety
    /// `send` and `recv` must be device pointers valid for `count` elements of `dtype`
    /// until the collective ran on `stream` (equal, or not overlapping); nothing else
    /// may write `send` or access `recv` meanwhile; `stream` must be a live stream of
    /// the buffers' device's primary context (or null: its legacy default stream).
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn all_reduce_cuda(
        &self,
        send: CUdeviceptr,
        recv: CUdeviceptr,
        count: usize,
        dtype: DataType,
        op: ReduceOp,
        stream: CUstream,
    ) -> Result<DeviceWork> {
        const WHAT: &str = "all_reduce_cuda";
        op.check(dtype)?;
        let b = bytes(WHAT, count, dtype)?;
        if send != recv && overlap(send, b, recv, b) {
            return Err(Error::InvalidArgument(format!(
                "{WHAT}: send and recv overlap without being equal"
            )));
        }
        let call = Call::AllReduce {
            input: send,
            output: recv,
            count,
            op,
        };
        let bufs = [("send", send, b > 0), ("recv", recv, b > 0)];
        // SAFETY: forwarded caller contract.
        unsafe { self.raw_submit(WHAT, &bufs, call, dtype, stream) }
    }

    /// Broadcast of `count` elements of the root's device buffer `buf`, on `stream`.
    ///
    /// # Safety
    /// As for [`all_reduce_cuda`](Self::all_reduce_cuda), for `buf`.
    pub unsafe fn broadcast_cuda(
        &self,
        buf: CUdeviceptr,
        count: usize,
        dtype: DataType,
        root: usize,
        stream: CUstream,
    ) -> Result<DeviceWork> {
        const WHAT: &str = "broadcast_cuda";
        self.check_device_root_raw(WHAT, root)?;
        let b = bytes(WHAT, count, dtype)?;
        let call = Call::Broadcast { buf, count, root };
        // SAFETY: forwarded caller contract.
        unsafe { self.raw_submit(WHAT, &[("buf", buf, b > 0)], call, dtype, stream) }
    }

    /// Reduce of every rank's `send` into the root's `recv` (in place when equal; the
    /// other ranks' `recv` is not touched), on `stream`.
    ///
    /// # Safety
    /// As for [`all_reduce_cuda`](Self::all_reduce_cuda); `recv` matters on the root
    /// only.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn reduce_cuda(
        &self,
        send: CUdeviceptr,
        recv: CUdeviceptr,
        count: usize,
        dtype: DataType,
        op: ReduceOp,
        root: usize,
        stream: CUstream,
    ) -> Result<DeviceWork> {
        const WHAT: &str = "reduce_cuda";
        op.check(dtype)?;
        self.check_device_root_raw(WHAT, root)?;
        let b = bytes(WHAT, count, dtype)?;
        let is_root = self.rank() == root;
        if is_root && send != recv && overlap(send, b, recv, b) {
            return Err(Error::InvalidArgument(format!(
                "{WHAT}: send and recv overlap without being equal"
            )));
        }
        let call = Call::Reduce {
            input: send,
            output: recv,
            count,
            op,
            root,
        };
        let bufs = [("send", send, b > 0), ("recv", recv, b > 0 && is_root)];
        // SAFETY: forwarded caller contract.
        unsafe { self.raw_submit(WHAT, &bufs, call, dtype, stream) }
    }

    /// All-gather: `count` elements from each rank's `send` into `recv`
    /// (`size * count` elements), on `stream`. In place when
    /// `send == recv + rank * count` elements.
    ///
    /// # Safety
    /// As for [`all_reduce_cuda`](Self::all_reduce_cuda), `recv` holding
    /// `size * count` elements.
    pub unsafe fn all_gather_cuda(
        &self,
        send: CUdeviceptr,
        recv: CUdeviceptr,
        count: usize,
        dtype: DataType,
        stream: CUstream,
    ) -> Result<DeviceWork> {
        const WHAT: &str = "all_gather_cuda";
        let b = bytes(WHAT, count, dtype)?;
        let total = bytes(WHAT, count.saturating_mul(self.size()), dtype)?;
        let in_place = send == recv + (self.rank() * b) as u64;
        if !in_place && overlap(send, b, recv, total) {
            return Err(Error::InvalidArgument(format!(
                "{WHAT}: send overlaps recv without being this rank's block of it (in place)"
            )));
        }
        let call = Call::AllGather {
            input: send,
            output: recv,
            count,
        };
        let bufs = [("send", send, b > 0), ("recv", recv, total > 0)];
        // SAFETY: forwarded caller contract.
        unsafe { self.raw_submit(WHAT, &bufs, call, dtype, stream) }
    }

    /// Reduce-scatter: each rank's `send` (`size * count` elements) is reduced and
    /// block `rank` of the result lands in `recv` (`count` elements), on `stream`. In
    /// place when `recv == send + rank * count` elements.
    ///
    /// # Safety
    /// As for [`all_reduce_cuda`](Self::all_reduce_cuda), `send` holding
    /// `size * count` elements.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn reduce_scatter_cuda(
        &self,
        send: CUdeviceptr,
        recv: CUdeviceptr,
        count: usize,
        dtype: DataType,
        op: ReduceOp,
        stream: CUstream,
    ) -> Result<DeviceWork> {
        const WHAT: &str = "reduce_scatter_cuda";
        op.check(dtype)?;
        let b = bytes(WHAT, count, dtype)?;
        let total = bytes(WHAT, count.saturating_mul(self.size()), dtype)?;
        let in_place = recv == send + (self.rank() * b) as u64;
        if !in_place && overlap(send, total, recv, b) {
            return Err(Error::InvalidArgument(format!(
                "{WHAT}: recv overlaps send without being this rank's block of it (in place)"
            )));
        }
        let call = Call::ReduceScatter {
            input: send,
            output: recv,
            count,
            op,
        };
        let bufs = [("send", send, total > 0), ("recv", recv, b > 0)];
        // SAFETY: forwarded caller contract.
        unsafe { self.raw_submit(WHAT, &bufs, call, dtype, stream) }
    }

    /// All-to-all: block `i` (`count` elements) of `send` goes to rank `i`, which
    /// stores it as block `rank` of `recv`; both hold `size * count` elements, equal
    /// (in place) or not overlapping. On `stream`.
    ///
    /// # Safety
    /// As for [`all_reduce_cuda`](Self::all_reduce_cuda), both holding `size * count`
    /// elements.
    pub unsafe fn all_to_all_cuda(
        &self,
        send: CUdeviceptr,
        recv: CUdeviceptr,
        count: usize,
        dtype: DataType,
        stream: CUstream,
    ) -> Result<DeviceWork> {
        const WHAT: &str = "all_to_all_cuda";
        let total = bytes(WHAT, count.saturating_mul(self.size()), dtype)?;
        if send != recv && overlap(send, total, recv, total) {
            return Err(Error::InvalidArgument(format!(
                "{WHAT}: send and recv overlap without being equal"
            )));
        }
        let call = Call::AllToAll {
            input: send,
            output: recv,
            count,
        };
        let bufs = [("send", send, total > 0), ("recv", recv, total > 0)];
        // SAFETY: forwarded caller contract.
        unsafe { self.raw_submit(WHAT, &bufs, call, dtype, stream) }
    }

    /// A barrier on `stream` (of device `device`): work queued after it starts once
    /// every rank's stream reached its barrier.
    ///
    /// # Safety
    /// `stream` must be a live stream of device `device`'s primary context (or null).
    pub unsafe fn barrier_cuda(&self, device: usize, stream: CUstream) -> Result<DeviceWork> {
        // SAFETY: forwarded caller contract.
        let (comm, s) = unsafe { self.raw_stream("barrier_cuda", device, stream)? };
        comm.submit(self, Call::Barrier, DataType::U8, &s)
    }

    fn check_device_root_raw(&self, what: &str, root: usize) -> Result<()> {
        if root >= self.size() {
            return Err(Error::InvalidArgument(format!(
                "{what}: root {root} is outside the group of {} ranks",
                self.size()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlaps_are_half_open() {
        assert!(overlap(0, 8, 4, 8));
        assert!(!overlap(0, 8, 8, 8));
        assert!(!overlap(0, 0, 0, 8));
        assert!(overlap(16, 8, 0, 17));
    }

    #[test]
    fn host_memory_is_detected_and_a_false_claim_is_an_error() {
        let v = [1u32; 16];
        let p = v.as_ptr().cast::<c_void>();
        assert_eq!(MemoryKind::of(p).unwrap(), MemoryKind::Host);
        assert_eq!(
            check_memory("t", MemoryKind::Host, &[("send", p, true)]).unwrap(),
            MemoryKind::Host
        );
        let e =
            check_memory("t", MemoryKind::Cuda { device: 0 }, &[("send", p, true)]).unwrap_err();
        assert!(matches!(
            e,
            Error::MemoryMismatch {
                buffer: "send",
                claimed: MemoryKind::Cuda { device: 0 },
                actual: MemoryKind::Host,
                ..
            }
        ));
        // Unused buffers are not looked at.
        assert!(check_memory("t", MemoryKind::Cuda { device: 0 }, &[("send", p, false)]).is_ok());
        let e = cuda_device("t", &[("recv", p as u64, true)]).unwrap_err();
        assert!(matches!(e, Error::MemoryMismatch { buffer: "recv", .. }));
    }
}
