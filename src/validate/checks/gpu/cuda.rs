//! GPU measurements through the CUDA driver (cudarc, loaded at run time): pinned
//! host<->device copies, device memory copies, peer copies between two GPUs, and
//! tutti's reduction kernels against the CPU kernels.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaStream, sys};
use serde::{Deserialize, Serialize};

use super::super::data::{Pattern, TestElem, dtypes, fill, with_elem};
use crate::gpu::{self, GpuKernels};
use crate::{DataType, ReduceOp};

/// Bytes per copy.
const COPY_BYTES: usize = 256 << 20;
/// Timed repetitions per copy (the median is kept).
const REPS: usize = 5;

/// Copy bandwidths of one GPU, GB/s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CopyResult {
    /// Host to device (pinned).
    pub h2d: f64,
    /// Device to host (pinned).
    pub d2h: f64,
    /// Device memory copy, bytes read + written.
    pub memory: f64,
}

fn cuda<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Median of the timed repetitions of `op` on `stream`, in seconds.
fn timed(
    ctx: &Arc<CudaContext>,
    stream: &Arc<CudaStream>,
    mut op: impl FnMut() -> Result<(), String>,
) -> Result<f64, String> {
    let flags = Some(sys::CUevent_flags::CU_EVENT_DEFAULT);
    op()?; // warm-up
    let mut times = Vec::with_capacity(REPS);
    for _ in 0..REPS {
        let start = ctx.new_event(flags).map_err(cuda("cuEventCreate"))?;
        let end = ctx.new_event(flags).map_err(cuda("cuEventCreate"))?;
        start.record(stream).map_err(cuda("cuEventRecord"))?;
        op()?;
        end.record(stream).map_err(cuda("cuEventRecord"))?;
        end.synchronize().map_err(cuda("cuEventSynchronize"))?;
        let ms = start.elapsed_ms(&end).map_err(cuda("cuEventElapsedTime"))?;
        times.push(f64::from(ms) / 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[REPS / 2])
}

/// Pinned host<->device and device memory copy bandwidth of CUDA device `ordinal`.
pub fn copies(ordinal: usize) -> Result<CopyResult, String> {
    let ctx = gpu::open_device(ordinal).map_err(|e| e.to_string())?;
    let stream = ctx.new_stream().map_err(cuda("cuStreamCreate"))?;
    let (free, _) = ctx.mem_get_info().map_err(cuda("cuMemGetInfo"))?;
    let bytes = COPY_BYTES.min(free / 4).max(1 << 20);
    // SAFETY: the pinned buffer is only used as a copy source and destination for
    // bandwidth; its initial contents are never read as values (flags 0: ordinary,
    // cacheable page-locked memory, as nvbandwidth uses).
    let mut host =
        unsafe { ctx.alloc_pinned_with_flags::<u8>(bytes, 0) }.map_err(cuda("cuMemHostAlloc"))?;
    let mut a = stream
        .alloc_zeros::<u8>(bytes)
        .map_err(cuda("cuMemAlloc"))?;
    let mut b = stream
        .alloc_zeros::<u8>(bytes)
        .map_err(cuda("cuMemAlloc"))?;
    let gbps = |secs: f64, factor: f64| factor * bytes as f64 / secs / 1e9;
    let h2d = timed(&ctx, &stream, || {
        stream
            .memcpy_htod(&host, &mut a)
            .map_err(cuda("cuMemcpyHtoD"))
    })?;
    let d2h = timed(&ctx, &stream, || {
        stream
            .memcpy_dtoh(&a, &mut host)
            .map_err(cuda("cuMemcpyDtoH"))
    })?;
    let d2d = timed(&ctx, &stream, || {
        stream.memcpy_dtod(&a, &mut b).map_err(cuda("cuMemcpyDtoD"))
    })?;
    Ok(CopyResult {
        h2d: gbps(h2d, 1.0),
        d2h: gbps(d2h, 1.0),
        memory: gbps(d2d, 2.0),
    })
}

/// Whether `a` can map `b`'s memory, and enables it (so copies take NVLink/PCIe
/// peer paths rather than staging through the host).
fn enable_peer(a: &Arc<CudaContext>, b: &Arc<CudaContext>) -> Result<bool, String> {
    let mut can = 0i32;
    // SAFETY: both devices come from live contexts; `can` is a valid out-pointer.
    let rc = unsafe { sys::cuDeviceCanAccessPeer(&mut can, a.cu_device(), b.cu_device()) };
    if rc != sys::CUresult::CUDA_SUCCESS {
        return Err(format!("cuDeviceCanAccessPeer: {rc:?}"));
    }
    if can == 0 {
        return Ok(false);
    }
    a.bind_to_thread().map_err(cuda("cuCtxSetCurrent"))?;
    // SAFETY: `a` is current on this thread and `b.cu_ctx()` is a live context;
    // enabling twice returns CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED, accepted below.
    let rc = unsafe { sys::cuCtxEnablePeerAccess(b.cu_ctx(), 0) };
    match rc {
        sys::CUresult::CUDA_SUCCESS | sys::CUresult::CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED => {
            Ok(true)
        }
        other => Err(format!("cuCtxEnablePeerAccess: {other:?}")),
    }
}

/// Copy bandwidth between two GPUs of a node.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerCopy {
    /// From the first device to the second, GB/s.
    pub a_to_b: f64,
    /// From the second device to the first, GB/s.
    pub b_to_a: f64,
    /// Whether peer access could be enabled (else the copies staged through the host).
    pub peer_access: bool,
}

/// Copy bandwidth from device `a` to `b` and back, and whether peer access was
/// possible.
pub fn peer(a: usize, b: usize) -> Result<PeerCopy, String> {
    let ca = gpu::open_device(a).map_err(|e| e.to_string())?;
    let cb = gpu::open_device(b).map_err(|e| e.to_string())?;
    let p = enable_peer(&ca, &cb)? & enable_peer(&cb, &ca)?;
    let sa = ca.new_stream().map_err(cuda("cuStreamCreate"))?;
    let sb = cb.new_stream().map_err(cuda("cuStreamCreate"))?;
    let bytes = COPY_BYTES;
    let bufa = sa.alloc_zeros::<u8>(bytes).map_err(cuda("cuMemAlloc"))?;
    let mut bufb = sb.alloc_zeros::<u8>(bytes).map_err(cuda("cuMemAlloc"))?;
    let ab = timed(&cb, &sb, || {
        sb.memcpy_dtod(&bufa, &mut bufb)
            .map_err(cuda("cuMemcpyPeer"))
    })?;
    let mut bufa = bufa;
    let ba = timed(&ca, &sa, || {
        sa.memcpy_dtod(&bufb, &mut bufa)
            .map_err(cuda("cuMemcpyPeer"))
    })?;
    Ok(PeerCopy {
        a_to_b: bytes as f64 / ab / 1e9,
        b_to_a: bytes as f64 / ba / 1e9,
        peer_access: p,
    })
}

/// The reduction kernels of one GPU against the CPU kernels.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KernelCheck {
    /// Elements compared.
    pub compared: u64,
    /// Elements that differ from the CPU's.
    pub wrong: u64,
    /// The (dtype, op) cases that differ, described.
    pub cases: Vec<String>,
}

/// Runs every (dtype, op) reduction kernel and its final pass on device `ordinal`
/// against the CPU kernels.
pub fn kernels(ordinal: usize) -> Result<KernelCheck, String> {
    let ctx = gpu::open_device(ordinal).map_err(|e| e.to_string())?;
    let k = GpuKernels::load(&ctx).map_err(|e| e.to_string())?;
    let stream = ctx.new_stream().map_err(cuda("cuStreamCreate"))?;
    let mut out = KernelCheck::default();
    for &dt in dtypes() {
        for op in ReduceOp::valid_for(dt, 0.5) {
            let (n, w) = with_elem!(dt, T, { one::<T>(&k, &stream, dt, op) })?;
            out.compared += n;
            out.wrong += w;
            if w > 0 {
                out.cases.push(format!(
                    "{} {op}: {w} of {n} differ from the CPU",
                    dt.short_name()
                ));
            }
        }
    }
    Ok(out)
}

/// One (dtype, op): `a op b` then the final pass (over 2 "ranks"), GPU against CPU.
fn one<T: TestElem>(
    k: &GpuKernels,
    stream: &Arc<CudaStream>,
    dt: DataType,
    op: ReduceOp,
) -> Result<(u64, u64), String> {
    const COUNT: usize = (1 << 20) + 3;
    let zero = <T as bytemuck::Zeroable>::zeroed();
    let pattern = Pattern::new::<T>(Some(op), 2);
    let (mut a, mut b) = (vec![zero; COUNT], vec![zero; COUNT]);
    fill(pattern, 0, 77, 0, &mut a);
    fill(pattern, 1, 77, 0, &mut b);
    let (ab, bb): (&[u8], &[u8]) = (bytemuck::cast_slice(&a), bytemuck::cast_slice(&b));
    let mut da = stream.clone_htod(ab).map_err(cuda("cuMemcpyHtoD"))?;
    let db = stream.clone_htod(bb).map_err(cuda("cuMemcpyHtoD"))?;
    k.reduce_inplace_bytes(stream, dt, op, &mut da, &db)
        .map_err(|e| e.to_string())?;
    k.finalize_bytes(stream, dt, op, &mut da, 2)
        .map_err(|e| e.to_string())?;
    let got = stream.clone_dtoh(&da).map_err(cuda("cuMemcpyDtoH"))?;
    crate::cpu::reduce_inplace(op, &mut a, &b).map_err(|e| e.to_string())?;
    crate::cpu::finalize(op, &mut a, 2).map_err(|e| e.to_string())?;
    let want: &[u8] = bytemuck::cast_slice(&a);
    let size = dt.size();
    let w = got
        .chunks(size)
        .zip(want.chunks(size))
        .filter(|(g, w)| g != w)
        .count() as u64;
    Ok((COUNT as u64, w))
}
