//! CUDA reduction kernels: the GPU twin of [`crate::cpu`].
//!
//! The kernels are hand-written CUDA in `kernels/` (C ABI documented in
//! `kernels/tutti_kernels.h`): one entry point per valid (step, dtype) pair,
//! `dst[i] = a[i] op b[i]`, plus the final passes of `Avg` and `PreMulSum`, all
//! grid-stride loops with 16-byte vector loads. Results are bit-identical to the CPU
//! kernels (NaN payloads excepted).
//!
//! `build.rs` compiles them with nvcc (fatbin) or NVRTC (PTX) when either is present,
//! else embeds the source for NVRTC at first use ([`kernel_image`] says which). At run
//! time they are loaded through the CUDA driver with [cudarc] (loaded
//! dynamically: a machine without CUDA runs everything else, and the calls here return
//! [`Error::GpuUnavailable`](crate::Error::GpuUnavailable)).
//!
//! ```no_run
//! use tutti::gpu::{self, GpuKernels};
//! use tutti::ReduceOp;
//!
//! # fn main() -> tutti::Result<()> {
//! let ctx = gpu::open_device(0)?;
//! let kernels = GpuKernels::load(&ctx)?;
//! let stream = ctx.default_stream();
//! let a = stream.clone_htod(&[1.0f32, 2.0, 3.0]).unwrap();
//! let mut acc = stream.clone_htod(&[10.0f32, 20.0, 30.0]).unwrap();
//! kernels.reduce_inplace(&stream, ReduceOp::Sum, &mut acc, &a)?;
//! assert_eq!(stream.clone_dtoh(&acc).unwrap(), vec![11.0, 22.0, 33.0]);
//! # Ok(())
//! # }
//! ```

mod device;
pub(crate) mod driver;
pub(crate) mod exec;
mod image;
mod launch;
mod module;
mod probe;
pub(crate) mod staging;
pub(crate) mod window;

/// The cudarc crate tutti is built against (buffers, streams and contexts in this
/// module's signatures are cudarc's).
pub use cudarc;
pub use device::{device_count, driver_present, open_device};
pub use driver::memory_kind;
pub use image::{
    KernelImage, KernelImageKind, avg_kernel_name, entry_points, fold_kernel_name, kernel_image,
    kernel_ptx, kernel_source, scale_kernel_name, step_kernel_name,
};
pub use launch::FOLD_MAX;
pub use module::{GpuKernels, KernelOrigin};
pub use probe::{ProbeCheck, probe};
