//! Kernel launches, in three layers:
//!
//! - typed, on cudarc buffers of an [`Element`] type ([`GpuKernels::reduce`],
//!   [`GpuKernels::reduce_inplace`], [`GpuKernels::finalize`]);
//! - byte-level, on `u8` buffers with a [`DataType`] ([`GpuKernels::reduce_bytes`],
//!   ...), what the collective algorithms hand around;
//! - raw, on device pointers ([`GpuKernels::launch_reduce`],
//!   [`GpuKernels::launch_finalize`]), `unsafe`.
//!
//! Every call validates the (dtype, op) pair with [`ReduceOp::check`], the lengths and
//! the stream's context before anything is enqueued, and only enqueues: the work runs
//! in stream order, and cudarc's event tracking orders it against other streams that
//! use the same buffers (typed and byte layers).

use cudarc::driver::sys::CUdeviceptr;
use cudarc::driver::{
    CudaStream, DevicePtr, DevicePtrMut, DeviceSlice, DriverError, LaunchConfig, PushKernelArg,
};

use super::module::GpuKernels;
use crate::{DataType, Element, Error, Finalize, ReduceOp, Result};

/// Threads per block.
const BLOCK: u32 = 256;
/// 16-byte vectors each thread handles per grid-stride iteration (`TT_UNROLL`).
const VECTORS_PER_THREAD: u64 = 4;
/// Blocks per SM at most: enough resident warps to saturate memory bandwidth.
const BLOCKS_PER_SM: u32 = 8;
/// Sources one fold launch takes (`TUTTI_FOLD_MAX` in `kernels/tutti_kernels.h`).
pub const FOLD_MAX: usize = 8;

impl GpuKernels {
    /// The launch shape for `count` elements of `dtype`: one block per
    /// `16 * 4 * 256` bytes, at most 8 blocks per SM (the kernels grid-stride).
    fn config(&self, dtype: DataType, count: usize) -> LaunchConfig {
        let bytes = (count as u64).saturating_mul(dtype.size() as u64);
        let per_block = 16 * VECTORS_PER_THREAD * u64::from(BLOCK);
        let max_blocks = self.sm_count.saturating_mul(BLOCKS_PER_SM).max(1);
        let blocks = u32::try_from(bytes.div_ceil(per_block))
            .unwrap_or(u32::MAX)
            .clamp(1, max_blocks);
        LaunchConfig {
            grid_dim: (blocks, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    fn check_stream(&self, what: &str, stream: &CudaStream) -> Result<()> {
        if stream.context().cu_ctx() != self.ctx.cu_ctx() {
            return Err(Error::InvalidArgument(format!(
                "{what}: the stream belongs to another CUDA context than the kernels (device {} vs {})",
                stream.context().ordinal(),
                self.ctx.ordinal()
            )));
        }
        Ok(())
    }

    fn check_buffer<T>(&self, what: &str, buf: &impl DeviceSlice<T>) -> Result<()> {
        let ctx = buf.stream().context();
        if ctx.cu_ctx() != self.ctx.cu_ctx() {
            return Err(Error::InvalidArgument(format!(
                "{what}: the buffer was allocated in another CUDA context than the kernels (device {} vs {})",
                ctx.ordinal(),
                self.ctx.ordinal()
            )));
        }
        Ok(())
    }

    /// Enqueues `dst[i] = a[i] op b[i]` for `count` elements of `dtype` on `stream`
    /// (the `Sum` step for `Avg` and `PreMulSum`; run [`GpuKernels::launch_finalize`]
    /// once at the end). `dst` may equal `a` or `b`. Any alignment is accepted
    /// (16-byte aligned pointers take the vector path). `count == 0` enqueues nothing.
    ///
    /// Errors: [`Error::InvalidOp`] for an invalid pair, [`Error::InvalidArgument`]
    /// for a stream of another context, [`Error::Cuda`] when the launch fails.
    ///
    /// # Safety
    ///
    /// `dst`, `a` and `b` must be device pointers valid in the kernels' context for
    /// `count * dtype.size()` bytes until the kernel has run on `stream`, with `dst`
    /// writable; `dst` must equal or not overlap each of `a` and `b`; no other work may
    /// write `a` or `b`, or access `dst`, concurrently.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn launch_reduce(
        &self,
        stream: &CudaStream,
        dtype: DataType,
        op: ReduceOp,
        dst: CUdeviceptr,
        a: CUdeviceptr,
        b: CUdeviceptr,
        count: usize,
    ) -> Result<()> {
        op.check(dtype)?;
        self.check_stream("launch_reduce", stream)?;
        if count == 0 {
            return Ok(());
        }
        let step = op.step();
        let func = self.step_fn(dtype, step).ok_or(Error::InvalidOp {
            op,
            dtype,
            reason: "no kernel for this pair",
        })?;
        let n = count as u64;
        let mut args = stream.launch_builder(func);
        args.arg(&dst).arg(&a).arg(&b).arg(&n);
        tracing::trace!(%dtype, %op, count, "launch reduce");
        // SAFETY: the kernel's parameters are (void*, const void*, const void*,
        // unsigned long long), matching the four 8-byte arguments; the caller
        // guarantees the pointers' validity, size and aliasing (see # Safety).
        unsafe { args.launch(self.config(dtype, count)) }
            .map(|_| ())
            .map_err(|e| launch_error(func_name(dtype, op), e))
    }

    /// Enqueues `dst[i] = srcs[0][i] op srcs[1][i] op ... op srcs[k-1][i]` for `count`
    /// elements of `dtype` on `stream`, folded left to right (the `Sum` step for `Avg`
    /// and `PreMulSum`; run [`GpuKernels::launch_finalize`] once at the end). The
    /// result has the bits of `k - 1` binary steps applied in that order (and of the
    /// CPU kernels' fold). Up to [`FOLD_MAX`] sources take one launch; more continue
    /// the fold from `dst` in further launches on the same stream. One source is a
    /// copy (cuMemcpyAsync). `count == 0` enqueues nothing.
    ///
    /// Errors: [`Error::InvalidOp`], [`Error::InvalidArgument`] for no sources or a
    /// stream of another context, [`Error::Cuda`] when a launch fails.
    ///
    /// # Safety
    ///
    /// `dst` and every source must be device pointers valid in the kernels' context
    /// (their own allocations, or peers' memory mapped into it) for
    /// `count * dtype.size()` bytes until the kernels have run on `stream`, `dst`
    /// writable; no source may overlap `dst` (sources may overlap each other); no
    /// other work may write the sources, or access `dst`, meanwhile.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn launch_fold(
        &self,
        stream: &CudaStream,
        dtype: DataType,
        op: ReduceOp,
        dst: CUdeviceptr,
        srcs: &[CUdeviceptr],
        count: usize,
    ) -> Result<()> {
        op.check(dtype)?;
        self.check_stream("launch_fold", stream)?;
        if srcs.is_empty() {
            return Err(Error::InvalidArgument(
                "launch_fold: a fold needs at least one source".into(),
            ));
        }
        if count == 0 {
            return Ok(());
        }
        let bytes = count.checked_mul(dtype.size()).ok_or_else(|| {
            Error::InvalidArgument(format!("launch_fold: {count} elements of {dtype} overflow"))
        })?;
        if let [one] = srcs {
            if *one == dst {
                return Ok(());
            }
            // SAFETY: cuMemcpyAsync (CUDA driver API, "Copies memory", unified
            // addressing infers the kind from the pointers) copies `bytes` bytes in
            // stream order; the caller guarantees both ranges are valid device memory
            // of this context for `bytes` bytes and do not overlap.
            let rc =
                unsafe { cudarc::driver::sys::cuMemcpyAsync(dst, *one, bytes, stream.cu_stream()) };
            return rc
                .result()
                .map_err(|e| launch_error("cuMemcpyAsync (1-source fold)".into(), e));
        }
        let step = op.step();
        let func = self.fold_fn(dtype, step).ok_or(Error::InvalidOp {
            op,
            dtype,
            reason: "no kernel for this pair",
        })?;
        let n = count as u64;
        let cfg = self.config(dtype, count);
        // The first launch folds up to FOLD_MAX sources into dst; each further one
        // folds dst (the partial result, src[0] of the launch) with up to FOLD_MAX - 1
        // more, which keeps the left-to-right order.
        let mut next = 0;
        while next < srcs.len() {
            // tutti_fold_srcs: { const void* src[8]; unsigned long long n; }, passed
            // by value: nine 8-byte words.
            let mut params = [0u64; FOLD_MAX + 1];
            let mut k = 0;
            if next > 0 {
                params[0] = dst;
                k = 1;
            }
            while k < FOLD_MAX && next < srcs.len() {
                params[k] = srcs[next];
                k += 1;
                next += 1;
            }
            params[FOLD_MAX] = k as u64;
            let mut args = stream.launch_builder(func);
            args.arg(&dst).arg(&params).arg(&n);
            tracing::trace!(%dtype, %op, count, sources = k, "launch fold");
            // SAFETY: the kernel's parameters are (void*, struct tutti_fold_srcs,
            // unsigned long long); the struct is 8 pointers and a 64-bit count, 72
            // bytes with 8-byte alignment, the layout of [u64; 9]; every used pointer
            // is valid for `count` elements (the caller's contract), and only the first
            // source of a continuation launch equals `dst`, which the kernel allows.
            unsafe { args.launch(cfg) }
                .map(|_| ())
                .map_err(|e| launch_error(fold_name(dtype, op), e))?;
        }
        Ok(())
    }

    /// Enqueues the final pass of `op` over `count` reduced elements of `dtype` at
    /// `buf`: divide by `world_size` for `Avg`, multiply by the scalar for
    /// `PreMulSum`, nothing for the other ops.
    ///
    /// Errors: as for [`GpuKernels::launch_reduce`], and [`Error::InvalidArgument`]
    /// when `world_size` is 0.
    ///
    /// # Safety
    ///
    /// `buf` must be a device pointer valid and writable in the kernels' context for
    /// `count * dtype.size()` bytes until the kernel has run on `stream`, with no
    /// concurrent access by other work.
    pub unsafe fn launch_finalize(
        &self,
        stream: &CudaStream,
        dtype: DataType,
        op: ReduceOp,
        buf: CUdeviceptr,
        count: usize,
        world_size: usize,
    ) -> Result<()> {
        op.check(dtype)?;
        self.check_stream("launch_finalize", stream)?;
        if world_size == 0 {
            return Err(Error::InvalidArgument(
                "finalize: world_size must be at least 1, got 0".into(),
            ));
        }
        if count == 0 {
            return Ok(());
        }
        let n = count as u64;
        let cfg = self.config(dtype, count);
        match op.finalize() {
            Finalize::None => Ok(()),
            Finalize::DivideByWorldSize => {
                let ws = world_size as u64;
                let mut args = stream.launch_builder(self.avg_fn(dtype));
                args.arg(&buf).arg(&n).arg(&ws);
                tracing::trace!(%dtype, count, world_size, "launch avg");
                // SAFETY: the kernel's parameters are (void*, unsigned long long,
                // unsigned long long), matching the three 8-byte arguments; the caller
                // guarantees `buf` (see # Safety).
                unsafe { args.launch(cfg) }
                    .map(|_| ())
                    .map_err(|e| launch_error(super::avg_kernel_name(dtype), e))
            }
            Finalize::Scale(s) => {
                let func = self.scale_fn(dtype).ok_or(Error::InvalidOp {
                    op,
                    dtype,
                    reason: "no kernel for this pair",
                })?;
                let mut args = stream.launch_builder(func);
                args.arg(&buf).arg(&n).arg(&s);
                tracing::trace!(%dtype, count, scalar = s, "launch scale");
                // SAFETY: the kernel's parameters are (void*, unsigned long long,
                // double), matching the three 8-byte arguments; the caller guarantees
                // `buf` (see # Safety).
                unsafe { args.launch(cfg) }.map(|_| ()).map_err(|e| {
                    launch_error(super::scale_kernel_name(dtype).unwrap_or_default(), e)
                })
            }
        }
    }

    /// Enqueues `dst[i] = a[i] op b[i]` on `stream` over byte buffers holding whole
    /// elements of `dtype` (the `Sum` step for `Avg` and `PreMulSum`; call
    /// [`GpuKernels::finalize_bytes`] once at the end). Any alignment is accepted.
    ///
    /// Errors: [`Error::InvalidOp`], [`Error::PartialElement`] when `dst` is not a
    /// whole number of elements, [`Error::LengthMismatch`] when the lengths differ,
    /// [`Error::InvalidArgument`] when the stream or a buffer belongs to another
    /// context, [`Error::Cuda`] when the launch fails. Nothing is enqueued on error.
    pub fn reduce_bytes(
        &self,
        stream: &CudaStream,
        dtype: DataType,
        op: ReduceOp,
        dst: &mut impl DevicePtrMut<u8>,
        a: &impl DevicePtr<u8>,
        b: &impl DevicePtr<u8>,
    ) -> Result<()> {
        op.check(dtype)?;
        let count = whole_elements("reduce_bytes: dst", dtype, dst.len())?;
        same_len("reduce_bytes: a", dst.len(), a.len(), "bytes")?;
        same_len("reduce_bytes: b", dst.len(), b.len(), "bytes")?;
        self.check_stream("reduce_bytes", stream)?;
        self.check_buffer("reduce_bytes: dst", dst)?;
        self.check_buffer("reduce_bytes: a", a)?;
        self.check_buffer("reduce_bytes: b", b)?;
        let (pd, _dst_done) = dst.device_ptr_mut(stream);
        let (pa, _a_done) = a.device_ptr(stream);
        let (pb, _b_done) = b.device_ptr(stream);
        // SAFETY: the pointers come from live buffers of this context holding
        // `count * dtype.size()` bytes each (checked above); `dst` is borrowed
        // mutably, so it cannot overlap `a` or `b`; cudarc orders the launch after
        // earlier work on the buffers and records it for later work when the guards
        // drop, after the launch.
        unsafe { self.launch_reduce(stream, dtype, op, pd, pa, pb, count) }
    }

    /// Enqueues `dst[i] = dst[i] op src[i]` on `stream` over byte buffers of whole
    /// elements of `dtype`. Errors as for [`GpuKernels::reduce_bytes`].
    pub fn reduce_inplace_bytes(
        &self,
        stream: &CudaStream,
        dtype: DataType,
        op: ReduceOp,
        dst: &mut impl DevicePtrMut<u8>,
        src: &impl DevicePtr<u8>,
    ) -> Result<()> {
        op.check(dtype)?;
        let count = whole_elements("reduce_inplace_bytes: dst", dtype, dst.len())?;
        same_len("reduce_inplace_bytes: src", dst.len(), src.len(), "bytes")?;
        self.check_stream("reduce_inplace_bytes", stream)?;
        self.check_buffer("reduce_inplace_bytes: dst", dst)?;
        self.check_buffer("reduce_inplace_bytes: src", src)?;
        let (pd, _dst_done) = dst.device_ptr_mut(stream);
        let (ps, _src_done) = src.device_ptr(stream);
        // SAFETY: as in `reduce_bytes`; `dst` is both the output and the first
        // operand, which the kernels allow (each element is read before it is written
        // by the same thread).
        unsafe { self.launch_reduce(stream, dtype, op, pd, pd, ps, count) }
    }

    /// Enqueues the final pass of `op` (see [`GpuKernels::launch_finalize`]) over a
    /// byte buffer of whole elements of `dtype`, reduced over `world_size` ranks.
    ///
    /// Errors: as for [`GpuKernels::reduce_bytes`], and [`Error::InvalidArgument`]
    /// when `world_size` is 0.
    pub fn finalize_bytes(
        &self,
        stream: &CudaStream,
        dtype: DataType,
        op: ReduceOp,
        buf: &mut impl DevicePtrMut<u8>,
        world_size: usize,
    ) -> Result<()> {
        op.check(dtype)?;
        let count = whole_elements("finalize_bytes: buf", dtype, buf.len())?;
        self.check_stream("finalize_bytes", stream)?;
        self.check_buffer("finalize_bytes: buf", buf)?;
        let (pb, _buf_done) = buf.device_ptr_mut(stream);
        // SAFETY: `buf` is a live, mutably borrowed buffer of this context holding
        // `count` elements; cudarc orders the launch against other work on it.
        unsafe { self.launch_finalize(stream, dtype, op, pb, count, world_size) }
    }

    /// Enqueues the n-source fold `dst[i] = srcs[0][i] op ... op srcs[k-1][i]` on
    /// byte buffers of whole elements of `dtype` (see [`GpuKernels::launch_fold`]).
    ///
    /// Errors: as for [`GpuKernels::reduce_bytes`], and [`Error::InvalidArgument`]
    /// when `srcs` is empty.
    pub fn fold_bytes(
        &self,
        stream: &CudaStream,
        dtype: DataType,
        op: ReduceOp,
        dst: &mut impl DevicePtrMut<u8>,
        srcs: &[cudarc::driver::CudaView<'_, u8>],
    ) -> Result<()> {
        op.check(dtype)?;
        let count = whole_elements("fold_bytes: dst", dtype, dst.len())?;
        for s in srcs {
            same_len("fold_bytes: a source", dst.len(), s.len(), "bytes")?;
            self.check_buffer("fold_bytes: a source", s)?;
        }
        self.check_stream("fold_bytes", stream)?;
        self.check_buffer("fold_bytes: dst", dst)?;
        let (pd, _dst_done) = dst.device_ptr_mut(stream);
        let mut guards = Vec::with_capacity(srcs.len());
        let mut ptrs = Vec::with_capacity(srcs.len());
        for s in srcs {
            let (p, g) = s.device_ptr(stream);
            ptrs.push(p);
            guards.push(g);
        }
        // SAFETY: every pointer comes from a live buffer of this context holding
        // `count` elements (checked above); `dst` is borrowed mutably, so no source
        // overlaps it; cudarc orders the launches after earlier work on the buffers
        // and records them for later work when the guards drop, after the launches.
        unsafe { self.launch_fold(stream, dtype, op, pd, &ptrs, count) }
    }

    /// Enqueues `dst[i] = a[i] op b[i]` on typed buffers (the `Sum` step for `Avg`
    /// and `PreMulSum`; call [`GpuKernels::finalize`] once at the end).
    ///
    /// Errors: [`Error::InvalidOp`], [`Error::LengthMismatch`] (in elements),
    /// [`Error::InvalidArgument`] for another context's stream or buffer,
    /// [`Error::Cuda`] when the launch fails.
    pub fn reduce<T: Element>(
        &self,
        stream: &CudaStream,
        op: ReduceOp,
        dst: &mut impl DevicePtrMut<T>,
        a: &impl DevicePtr<T>,
        b: &impl DevicePtr<T>,
    ) -> Result<()> {
        op.check(T::DTYPE)?;
        same_len("reduce: a", dst.len(), a.len(), "elements")?;
        same_len("reduce: b", dst.len(), b.len(), "elements")?;
        self.check_stream("reduce", stream)?;
        self.check_buffer("reduce: dst", dst)?;
        self.check_buffer("reduce: a", a)?;
        self.check_buffer("reduce: b", b)?;
        let count = dst.len();
        let (pd, _dst_done) = dst.device_ptr_mut(stream);
        let (pa, _a_done) = a.device_ptr(stream);
        let (pb, _b_done) = b.device_ptr(stream);
        // SAFETY: as in `reduce_bytes`: live, same-length buffers of this context;
        // `dst` is borrowed mutably so it does not overlap `a` or `b`.
        unsafe { self.launch_reduce(stream, T::DTYPE, op, pd, pa, pb, count) }
    }

    /// Enqueues `dst[i] = dst[i] op src[i]` on typed buffers. Errors as for
    /// [`GpuKernels::reduce`].
    pub fn reduce_inplace<T: Element>(
        &self,
        stream: &CudaStream,
        op: ReduceOp,
        dst: &mut impl DevicePtrMut<T>,
        src: &impl DevicePtr<T>,
    ) -> Result<()> {
        op.check(T::DTYPE)?;
        same_len("reduce_inplace: src", dst.len(), src.len(), "elements")?;
        self.check_stream("reduce_inplace", stream)?;
        self.check_buffer("reduce_inplace: dst", dst)?;
        self.check_buffer("reduce_inplace: src", src)?;
        let count = dst.len();
        let (pd, _dst_done) = dst.device_ptr_mut(stream);
        let (ps, _src_done) = src.device_ptr(stream);
        // SAFETY: as in `reduce_inplace_bytes`.
        unsafe { self.launch_reduce(stream, T::DTYPE, op, pd, pd, ps, count) }
    }

    /// Enqueues the final pass of `op` over a typed buffer reduced over `world_size`
    /// ranks (see [`GpuKernels::launch_finalize`]). Errors as for
    /// [`GpuKernels::finalize_bytes`].
    pub fn finalize<T: Element>(
        &self,
        stream: &CudaStream,
        op: ReduceOp,
        buf: &mut impl DevicePtrMut<T>,
        world_size: usize,
    ) -> Result<()> {
        op.check(T::DTYPE)?;
        self.check_stream("finalize", stream)?;
        self.check_buffer("finalize: buf", buf)?;
        let count = buf.len();
        let (pb, _buf_done) = buf.device_ptr_mut(stream);
        // SAFETY: as in `finalize_bytes`.
        unsafe { self.launch_finalize(stream, T::DTYPE, op, pb, count, world_size) }
    }
}

fn whole_elements(what: &'static str, dtype: DataType, len: usize) -> Result<usize> {
    let size = dtype.size();
    if !len.is_multiple_of(size) {
        return Err(Error::PartialElement {
            what,
            len,
            dtype,
            size,
        });
    }
    Ok(len / size)
}

fn same_len(what: &'static str, expected: usize, actual: usize, unit: &'static str) -> Result<()> {
    if expected != actual {
        return Err(Error::LengthMismatch {
            what,
            expected,
            actual,
            unit,
        });
    }
    Ok(())
}

fn fold_name(dtype: DataType, op: ReduceOp) -> String {
    super::fold_kernel_name(dtype, op.step()).unwrap_or_default()
}

fn func_name(dtype: DataType, op: ReduceOp) -> String {
    super::step_kernel_name(dtype, op.step()).unwrap_or_default()
}

fn launch_error(kernel: String, e: DriverError) -> Error {
    Error::Cuda {
        context: format!("launching {kernel}"),
        message: e.to_string(),
    }
}
