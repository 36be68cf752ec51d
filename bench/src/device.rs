//! `--device cuda`: the benchmark's buffers in GPU memory. Each rank takes a GPU
//! (round-robin over the visible GPUs, or `--ranks-per-gpu` ranks per GPU, so that
//! several ranks can share one), allocates device twins of the host buffers, and runs
//! the device collectives (the raw layer, on its own stream). Data are generated and
//! checked on the host exactly as for host buffers: `-c` uploads the inputs, runs the
//! collective on the device, downloads the output and compares every element with the
//! CPU kernels' reference.

use std::sync::Arc;

use tutti::gpu::cudarc::driver::{CudaContext, CudaSlice, CudaStream, DevicePtr};
use tutti::{DataType, Error, ProcessGroup, Result};

use crate::collectives::{Buffers, Collective, Layout, Spec};
use crate::data::TestElem;

/// Which GPU this rank uses: `local` is its index among the group's ranks on this host.
pub fn pick_gpu(
    local: usize,
    ranks_per_gpu: Option<u32>,
    gpus: usize,
) -> std::result::Result<usize, String> {
    if gpus == 0 {
        return Err("no CUDA device".into());
    }
    match ranks_per_gpu {
        None => Ok(local % gpus),
        Some(k) => {
            let g = local / k.max(1) as usize;
            if g >= gpus {
                Err(format!(
                    "local rank {local} with --ranks-per-gpu {k} needs GPU {g}, but only {gpus} are visible"
                ))
            } else {
                Ok(g)
            }
        }
    }
}

/// A rank's GPU: its primary context and the stream the collectives run on.
pub struct Gpu {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
}

impl Gpu {
    /// Opens GPU `ordinal` and creates a stream on it.
    pub fn open(ordinal: usize) -> Result<Gpu> {
        let ctx = tutti::gpu::open_device(ordinal)?;
        let stream = ctx.new_stream().map_err(cuda("creating a stream"))?;
        Ok(Gpu { ctx, stream })
    }

    /// `cuda:N [name]`, for the preamble.
    pub fn describe(&self) -> String {
        format!(
            "cuda:{} [{}]",
            self.ctx.ordinal(),
            self.ctx.name().unwrap_or_else(|_| "?".into())
        )
    }

    /// Blocks until the stream ran everything queued.
    pub fn sync(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(cuda("synchronizing the stream"))
    }
}

fn cuda(context: &'static str) -> impl Fn(tutti::gpu::cudarc::driver::DriverError) -> Error {
    move |e| Error::Cuda {
        context: context.into(),
        message: e.to_string(),
    }
}

/// Device twins of [`Buffers`] (bytes), sized for the largest layout.
pub struct DeviceBuffers {
    send: CudaSlice<u8>,
    recv: CudaSlice<u8>,
    elem: usize,
}

impl DeviceBuffers {
    /// Buffers for `layouts` of `elem`-byte elements on `gpu`.
    pub fn new(gpu: &Gpu, layouts: &[Layout], elem: usize) -> Result<DeviceBuffers> {
        let send = layouts.iter().map(|l| l.send).max().unwrap_or(0);
        let recv = layouts.iter().map(|l| l.recv).max().unwrap_or(0).max(send);
        let alloc = |n: usize| {
            gpu.stream
                .alloc_zeros::<u8>((n * elem).max(1))
                .map_err(cuda("allocating device buffers"))
        };
        Ok(DeviceBuffers {
            send: alloc(send)?,
            recv: alloc(recv)?,
            elem,
        })
    }

    /// Copies the host inputs (and the zeroed output) of layout `l` to the device.
    pub fn upload<T: TestElem>(&mut self, gpu: &Gpu, b: &Buffers<T>, l: &Layout) -> Result<()> {
        let s = &gpu.stream;
        let send: &[u8] = bytemuck::cast_slice(&b.send[..l.send]);
        let recv: &[u8] = bytemuck::cast_slice(&b.recv[..l.send.max(l.recv)]);
        if !send.is_empty() {
            s.memcpy_htod(send, &mut self.send.slice_mut(..send.len()))
                .map_err(cuda("uploading the input"))?;
        }
        if !recv.is_empty() {
            s.memcpy_htod(recv, &mut self.recv.slice_mut(..recv.len()))
                .map_err(cuda("uploading the output"))?;
        }
        gpu.sync()
    }

    /// Copies the device output of layout `l` back into the host buffers.
    pub fn download<T: TestElem>(&self, gpu: &Gpu, b: &mut Buffers<T>, l: &Layout) -> Result<()> {
        let n = l.send.max(l.recv);
        if n == 0 {
            return Ok(());
        }
        let dst: &mut [u8] = bytemuck::cast_slice_mut(&mut b.recv[..n]);
        gpu.stream
            .memcpy_dtoh(&self.recv.slice(..dst.len()), dst)
            .map_err(cuda("downloading the output"))?;
        gpu.sync()
    }

    /// Enqueues one run of the collective at `l` on the GPU's stream (nccl-tests'
    /// placements: in place means what it means there, see [`crate::collectives`]).
    pub fn run_once(
        &mut self,
        gpu: &Gpu,
        pg: &ProcessGroup,
        s: &Spec,
        l: &Layout,
        in_place: bool,
        dtype: DataType,
    ) -> Result<()> {
        let (r, c) = (pg.rank(), l.param);
        if c == 0 {
            return Ok(());
        }
        let st = &gpu.stream;
        let block = (c * self.elem) as u64;
        if s.coll == Collective::Broadcast && !in_place && r == s.root {
            // The out-of-place broadcast's root copies its input into the output first.
            let len = block as usize;
            st.memcpy_dtod(&self.send.slice(..len), &mut self.recv.slice_mut(..len))
                .map_err(cuda("copying the broadcast input"))?;
        }
        let (send, _gs) = self.send.device_ptr(st);
        let (recv, _gr) = self.recv.device_ptr(st);
        let stream = st.cu_stream();
        let (root, op) = (s.root, s.op);
        // SAFETY: `send` and `recv` are live device buffers of this GPU sized for the
        // largest layout (so for `l`, including the in-place offsets), kept alive by
        // `self` across the benchmark, which synchronizes the stream before reading or
        // freeing them; the placements below are the ones the raw layer documents
        // (equal, this rank's block, or disjoint).
        let work = unsafe {
            match (s.coll, in_place) {
                (Collective::AllReduce, false) => {
                    pg.all_reduce_cuda(send, recv, c, dtype, op, stream)
                }
                (Collective::AllReduce, true) => {
                    pg.all_reduce_cuda(recv, recv, c, dtype, op, stream)
                }
                (Collective::AllGather, false) => pg.all_gather_cuda(send, recv, c, dtype, stream),
                (Collective::AllGather, true) => {
                    pg.all_gather_cuda(recv + r as u64 * block, recv, c, dtype, stream)
                }
                (Collective::ReduceScatter, false) => {
                    pg.reduce_scatter_cuda(send, recv, c, dtype, op, stream)
                }
                (Collective::ReduceScatter, true) => {
                    pg.reduce_scatter_cuda(recv, recv + r as u64 * block, c, dtype, op, stream)
                }
                (Collective::Broadcast, _) => pg.broadcast_cuda(recv, c, dtype, root, stream),
                (Collective::Reduce, true) => {
                    pg.reduce_cuda(recv, recv, c, dtype, op, root, stream)
                }
                (Collective::Reduce, false) => {
                    pg.reduce_cuda(send, recv, c, dtype, op, root, stream)
                }
                (Collective::AllToAll, false) => pg.all_to_all_cuda(send, recv, c, dtype, stream),
                (Collective::AllToAll, true) => pg.all_to_all_cuda(recv, recv, c, dtype, stream),
                (Collective::SendRecv, _) => {
                    return Err(Error::InvalidArgument(
                        "send_recv has no device path yet (--device cuda)".into(),
                    ));
                }
            }
        }?;
        drop(work);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpus_are_picked_round_robin_or_in_groups() {
        assert_eq!(pick_gpu(5, None, 4), Ok(1));
        assert_eq!(pick_gpu(3, Some(4), 1), Ok(0));
        assert_eq!(pick_gpu(5, Some(2), 4), Ok(2));
        assert!(pick_gpu(4, Some(2), 2).is_err());
        assert!(pick_gpu(0, None, 0).is_err());
    }
}
