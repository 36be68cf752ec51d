//! [`DeviceExec`]: the [`Exec`] of device windows, so that the same-host algorithms of
//! `tutti-intra` run unchanged on device memory. Every method only *enqueues* on the
//! caller's stream: copies are cuMemcpyAsync, reductions the n-source fold kernel
//! (rank order, bit-identical to the CPU path), the final pass of `Avg` and
//! `PreMulSum` a kernel, a post one cuStreamWriteValue64 per peer, a wait one
//! cuStreamWaitValue64 per peer. The host returns as soon as the collective is
//! enqueued; the stream runs it in order with the caller's other work.

use cudarc::driver::CudaStream;
use tutti_transport::window::{Addr, Exec};
use tutti_transport::{ReduceError, TransportError};

use super::driver;
use super::module::GpuKernels;
use super::window::DeviceWindow;
use crate::{DataType, Error, ReduceOp};

/// The round counters of one device window (host side): rounds started (their buffer
/// parity) and the last value this rank posted. They advance at enqueue time; the
/// stream catches up in order.
#[derive(Debug, Default, Clone, Copy)]
pub struct Rounds {
    /// Rounds begun so far.
    pub rounds: u64,
    /// The last value posted.
    pub posted: u64,
}

/// An executor for one collective on a device window.
pub struct DeviceExec<'a> {
    win: &'a DeviceWindow,
    rounds: &'a mut Rounds,
    kernels: &'a GpuKernels,
    stream: &'a CudaStream,
    dtype: DataType,
    op: Option<ReduceOp>,
    world: usize,
    what: &'static str,
    /// The first CUDA error met while enqueueing (the [`Exec`] methods can only return
    /// a transport error; the caller takes this typed one back).
    cuda_error: Option<Error>,
}

impl<'a> DeviceExec<'a> {
    /// An executor for collective `what` on `dtype` elements, reducing with `op`
    /// (`None` for collectives that do not reduce) over a group of `world` ranks (the
    /// divisor of `Avg`), enqueueing on `stream` (of the window's context).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        win: &'a DeviceWindow,
        rounds: &'a mut Rounds,
        kernels: &'a GpuKernels,
        stream: &'a CudaStream,
        dtype: DataType,
        op: Option<ReduceOp>,
        world: usize,
        what: &'static str,
    ) -> Self {
        DeviceExec {
            win,
            rounds,
            kernels,
            stream,
            dtype,
            op,
            world,
            what,
            cuda_error: None,
        }
    }

    /// The CUDA error that made a method fail, if one did.
    pub fn take_cuda_error(&mut self) -> Option<Error> {
        self.cuda_error.take()
    }

    fn fail(&mut self, e: Error) -> TransportError {
        let detail = e.to_string();
        if self.cuda_error.is_none() {
            self.cuda_error = Some(e);
        }
        // The typed CUDA error stays with this executor (take_cuda_error); the
        // transport error carries its description.
        TransportError::Reduce {
            peer: format!("(this rank's CUDA device {})", self.win.context().ordinal()),
            source: ReduceError::Kernel(format!("{}: {detail}", self.what).into()),
        }
    }

    fn count(&self, len: usize) -> usize {
        len / self.dtype.size()
    }
}

fn overlaps(a: Addr, b: Addr, len: usize) -> bool {
    a < b + len && b < a + len
}

impl Exec for DeviceExec<'_> {
    fn members(&self) -> usize {
        self.win.members()
    }

    fn index(&self) -> usize {
        self.win.index()
    }

    fn element_size(&self) -> usize {
        self.dtype.size()
    }

    fn buffer_bytes(&self) -> usize {
        self.win.data_bytes()
    }

    fn begin_round(&mut self) -> (usize, u64) {
        let r = self.rounds.rounds;
        self.rounds.rounds += 1;
        ((r % 2) as usize, self.rounds.posted)
    }

    fn buffer(&self, m: usize, b: usize) -> Addr {
        self.win.buffer(m, b) as Addr
    }

    fn copy(&mut self, dst: Addr, src: Addr, len: usize) -> tutti_transport::Result<()> {
        if len == 0 || dst == src {
            return Ok(());
        }
        if overlaps(dst, src, len) {
            return Err(TransportError::InvalidArgument(format!(
                "{}: overlapping device copy of {len} bytes",
                self.what
            )));
        }
        // SAFETY: the algorithms hand in `len`-byte ranges of the caller's device
        // buffers (valid until the stream ran the collective: the caller's contract)
        // and of device windows (alive as long as the group's device state, which
        // outlives every enqueued operation), not overlapping (checked); the stream
        // belongs to the window's context, current since the comm bound it.
        match unsafe { driver::memcpy(self.stream.cu_stream(), dst as u64, src as u64, len) } {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn reduce(&mut self, dst: Addr, srcs: &[Addr], len: usize) -> tutti_transport::Result<()> {
        let Some(op) = self.op else {
            return Err(TransportError::InvalidArgument(format!(
                "{}: reduction without an op",
                self.what
            )));
        };
        match srcs {
            [] => {
                return Err(TransportError::InvalidArgument(format!(
                    "{}: reduction of no sources",
                    self.what
                )));
            }
            [one] => return self.copy(dst, *one, len),
            _ => {}
        }
        if srcs.iter().any(|&s| overlaps(dst, s, len)) {
            return Err(TransportError::InvalidArgument(format!(
                "{}: reduction destination overlaps a source",
                self.what
            )));
        }
        let ptrs: Vec<u64> = srcs.iter().map(|&s| s as u64).collect();
        let count = self.count(len);
        // SAFETY: as in `copy`: every range is `len` bytes of a live device buffer or
        // window of this context (peers' windows mapped into it), the destination
        // overlaps no source (checked), and the round protocol guarantees no other
        // stream writes the sources or touches the destination meanwhile.
        let r = unsafe {
            self.kernels
                .launch_fold(self.stream, self.dtype, op, dst as u64, &ptrs, count)
        };
        r.map_err(|e| self.fail(e))
    }

    fn finalize(&mut self, dst: Addr, len: usize) -> tutti_transport::Result<()> {
        let Some(op) = self.op else {
            return Ok(());
        };
        let count = self.count(len);
        // SAFETY: `dst` is `len` bytes of the caller's output or of this rank's
        // window, valid and not accessed by other work until the stream ran it.
        let r = unsafe {
            self.kernels
                .launch_finalize(self.stream, self.dtype, op, dst as u64, count, self.world)
        };
        r.map_err(|e| self.fail(e))
    }

    fn post(&mut self, value: u64) -> tutti_transport::Result<()> {
        let me = self.win.index();
        for m in (0..self.win.members()).filter(|&m| m != me) {
            let addr = self.win.slot_dev(m, me);
            // SAFETY: `addr` is slot `me` of member `m`'s flag block: 8-byte aligned
            // host memory registered with DEVICEMAP, addressed through its device
            // pointer, mapped while the window lives (which outlives the stream's use
            // of it); the stream belongs to the window's context.
            if let Err(e) = unsafe { driver::write_value(self.stream.cu_stream(), addr, value) } {
                return Err(self.fail(e));
            }
        }
        self.rounds.posted = value;
        Ok(())
    }

    fn wait_all(&mut self, value: u64) -> tutti_transport::Result<()> {
        let me = self.win.index();
        for k in (0..self.win.members()).filter(|&k| k != me) {
            let addr = self.win.slot_dev(me, k);
            // SAFETY: as in `post`, for slot `k` of this rank's own block. Member `k`
            // posts `value` in the same round of the same collective (every member runs
            // the same algorithm), and the comm's watchdog stores a satisfying value
            // itself when `k` dies or the deadline passes, so the wait ends.
            if let Err(e) = unsafe { driver::wait_value(self.stream.cu_stream(), addr, value) } {
                return Err(self.fail(e));
            }
        }
        Ok(())
    }
}
