//! [`GpuKernels`]: the kernel module loaded into one CUDA context, with every entry
//! point looked up.

use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use cudarc::driver::sys::CUdevice_attribute;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use cudarc::nvrtc::{CompileOptions, Ptx};

use super::image::{self, KernelImageKind};
use crate::{DataType, Error, Result, StepOp};

/// Where the loaded module came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KernelOrigin {
    /// The fatbin nvcc built.
    Fatbin,
    /// SASS assembled at build time by ptxas for this GPU's architecture.
    BuildCubin,
    /// The PTX compiled at build time, JIT-compiled by the driver.
    BuildPtx,
    /// The embedded source, compiled by NVRTC in this process.
    RuntimeNvrtc,
}

/// The reduction kernels loaded into one CUDA context.
///
/// Get it with [`GpuKernels::load`]: the module is loaded once per context and shared
/// (the handle is cached for as long as someone holds it). Launch with the methods in
/// `launch.rs` ([`GpuKernels::reduce`], [`GpuKernels::reduce_bytes`],
/// [`GpuKernels::launch_reduce`], ...).
#[derive(Debug)]
pub struct GpuKernels {
    pub(super) ctx: Arc<CudaContext>,
    origin: KernelOrigin,
    /// Indexed by `dtype as usize * 7 + step as usize`.
    step: Vec<Option<CudaFunction>>,
    /// Indexed by `dtype as usize`.
    avg: Vec<CudaFunction>,
    /// Indexed by `dtype as usize`; `None` for integers.
    scale: Vec<Option<CudaFunction>>,
    /// The n-source folds, indexed like `step`.
    fold: Vec<Option<CudaFunction>>,
    pub(super) sm_count: u32,
    _module: Arc<CudaModule>,
}

/// Loaded modules, by context handle.
static LOADED: Mutex<Vec<(usize, Weak<GpuKernels>)>> = Mutex::new(Vec::new());

/// PTX compiled by NVRTC in this process, by target architecture.
static RUNTIME_PTX: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

fn cuda_err(context: impl Into<String>) -> impl FnOnce(cudarc::driver::DriverError) -> Error {
    let context = context.into();
    move |e| Error::Cuda {
        context,
        message: e.to_string(),
    }
}

impl GpuKernels {
    /// The kernels loaded into `ctx`: loads the module on first use in this context
    /// (the fatbin or build-time PTX, else the embedded source through NVRTC), looks up
    /// every entry point, and returns the shared handle afterwards.
    ///
    /// Errors: [`Error::KernelBuild`] when no image loads (driver too old for the PTX,
    /// no libnvrtc for the embedded source, a missing entry point; the message lists
    /// every attempt), [`Error::Cuda`] for other driver failures.
    pub fn load(ctx: &Arc<CudaContext>) -> Result<Arc<GpuKernels>> {
        let key = ctx.cu_ctx() as usize;
        let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
        loaded.retain(|(_, weak)| weak.strong_count() > 0);
        if let Some(kernels) = loaded
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, weak)| weak.upgrade())
        {
            return Ok(kernels);
        }
        let kernels = Arc::new(GpuKernels::load_uncached(ctx)?);
        loaded.push((key, Arc::downgrade(&kernels)));
        Ok(kernels)
    }

    fn load_uncached(ctx: &Arc<CudaContext>) -> Result<GpuKernels> {
        let start = Instant::now();
        let (module, origin) = load_module(ctx)?;
        let function = |name: &str| {
            module.load_function(name).map_err(|e| Error::KernelBuild {
                context: format!("looking up entry point {name}"),
                log: e.to_string(),
            })
        };
        let mut step = Vec::with_capacity(DataType::ALL.len() * StepOp::ALL.len());
        let mut avg = Vec::with_capacity(DataType::ALL.len());
        let mut scale = Vec::with_capacity(DataType::ALL.len());
        let mut fold = Vec::with_capacity(DataType::ALL.len() * StepOp::ALL.len());
        for dtype in DataType::ALL {
            for s in StepOp::ALL {
                step.push(
                    image::step_kernel_name(dtype, s)
                        .map(|name| function(&name))
                        .transpose()?,
                );
                fold.push(
                    image::fold_kernel_name(dtype, s)
                        .map(|name| function(&name))
                        .transpose()?,
                );
            }
            avg.push(function(&image::avg_kernel_name(dtype))?);
            scale.push(
                image::scale_kernel_name(dtype)
                    .map(|name| function(&name))
                    .transpose()?,
            );
        }
        let sms = ctx
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(cuda_err("querying the SM count"))?;
        let sm_count = u32::try_from(sms).unwrap_or(1).max(1);
        tracing::info!(
            ordinal = ctx.ordinal(),
            ?origin,
            sm_count,
            elapsed_ms = start.elapsed().as_millis() as u64,
            "loaded tutti CUDA kernels"
        );
        Ok(GpuKernels {
            ctx: ctx.clone(),
            origin,
            step,
            avg,
            scale,
            fold,
            sm_count,
            _module: module,
        })
    }

    /// The context the kernels are loaded in.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// Which image was loaded.
    pub fn origin(&self) -> KernelOrigin {
        self.origin
    }

    /// The device's number of streaming multiprocessors (sizes the grids).
    pub fn sm_count(&self) -> u32 {
        self.sm_count
    }

    pub(super) fn step_fn(&self, dtype: DataType, step: StepOp) -> Option<&CudaFunction> {
        self.step
            .get(dtype as usize * StepOp::ALL.len() + step as usize)
            .and_then(Option::as_ref)
    }

    pub(super) fn fold_fn(&self, dtype: DataType, step: StepOp) -> Option<&CudaFunction> {
        self.fold
            .get(dtype as usize * StepOp::ALL.len() + step as usize)
            .and_then(Option::as_ref)
    }

    pub(super) fn avg_fn(&self, dtype: DataType) -> &CudaFunction {
        &self.avg[dtype as usize]
    }

    pub(super) fn scale_fn(&self, dtype: DataType) -> Option<&CudaFunction> {
        self.scale.get(dtype as usize).and_then(Option::as_ref)
    }
}

/// Loads the build's image into `ctx`, falling back to NVRTC on the embedded source
/// when there is no compiled image or the driver rejects it (e.g. a driver older than
/// the PTX).
fn load_module(ctx: &Arc<CudaContext>) -> Result<(Arc<CudaModule>, KernelOrigin)> {
    let info = image::kernel_image();
    let mut failures = Vec::new();
    let mut compiled: Vec<(Ptx, KernelOrigin, String)> = Vec::new();
    match info.kind {
        KernelImageKind::Fatbin => {
            if let Some(bin) = image::kernel_fatbin() {
                compiled.push((
                    Ptx::from_binary(bin.to_vec()),
                    KernelOrigin::Fatbin,
                    "fatbin".into(),
                ));
            }
        }
        KernelImageKind::Ptx => {
            let (major, minor) = ctx
                .compute_capability()
                .map_err(cuda_err("querying the compute capability"))?;
            if let Some((bin, arch)) = image::kernel_cubin(major, minor) {
                compiled.push((
                    Ptx::from_binary(bin.to_vec()),
                    KernelOrigin::BuildCubin,
                    format!("{arch} cubin"),
                ));
            }
            if let Some(ptx) = image::kernel_ptx() {
                compiled.push((
                    Ptx::from_src(ptx),
                    KernelOrigin::BuildPtx,
                    "build-time PTX".into(),
                ));
            }
        }
        _ => {}
    }
    for (ptx, origin, what) in compiled {
        match ctx.load_module(ptx) {
            Ok(module) => return Ok((module, origin)),
            Err(e) => {
                tracing::warn!(error = %e, "the driver rejected the {what} ({})", info.how);
                failures.push(format!("loading the {what} ({}): {e}", info.how));
            }
        }
    }
    match runtime_ptx(ctx).and_then(|ptx| {
        ctx.load_module(Ptx::from_src(ptx))
            .map_err(|e| format!("loading the NVRTC-compiled PTX: {e}"))
    }) {
        Ok(module) => Ok((module, KernelOrigin::RuntimeNvrtc)),
        Err(e) => {
            failures.push(e);
            Err(Error::KernelBuild {
                context: "loading the CUDA kernels".into(),
                log: failures.join("; "),
            })
        }
    }
}

/// Compiles the embedded source for `ctx`'s device with NVRTC (once per architecture
/// per process).
fn runtime_ptx(ctx: &Arc<CudaContext>) -> std::result::Result<String, String> {
    // SAFETY: is_culib_present only tries to dlopen libnvrtc's usual names and closes
    // what it opened; it calls no NVRTC function.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(
            "compiling the kernel source at first use needs libnvrtc, which was not found on the \
             loader's path (install nvidia-cuda-nvrtc-cu12 and add its nvidia/cuda_nvrtc/lib to \
             LD_LIBRARY_PATH, or rebuild tutti where nvcc or libnvrtc is present)"
                .into(),
        );
    }
    let (major, minor) = ctx
        .compute_capability()
        .map_err(|e| format!("querying the compute capability: {e}"))?;
    // PTX for compute_90 runs on every later GPU; older GPUs get their own arch.
    let arch = if major >= 9 {
        "compute_90".to_string()
    } else {
        format!("compute_{major}{minor}")
    };
    let mut cache = RUNTIME_PTX.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, ptx)) = cache.iter().find(|(a, _)| *a == arch) {
        return Ok(ptx.clone());
    }
    let start = Instant::now();
    let opts = CompileOptions {
        ftz: Some(false),
        prec_sqrt: Some(true),
        prec_div: Some(true),
        fmad: Some(false),
        options: vec![format!("--gpu-architecture={arch}")],
        name: Some("kernels/reduce.cu".into()),
        ..Default::default()
    };
    let compiled = std::panic::catch_unwind(|| {
        cudarc::nvrtc::compile_ptx_with_opts(image::kernel_source(), opts)
    })
    .map_err(|_| format!("NVRTC panicked while compiling the kernels for {arch}"))?
    .map_err(|e| match e {
        cudarc::nvrtc::CompileError::CompileError { nvrtc, log, .. } => format!(
            "NVRTC failed to compile the kernels for {arch}: {nvrtc:?}\n{}",
            log.to_string_lossy()
        ),
        other => format!("NVRTC failed for {arch}: {other}"),
    })?;
    let ptx = compiled.to_src();
    tracing::info!(
        %arch,
        elapsed_ms = start.elapsed().as_millis() as u64,
        "compiled the tutti CUDA kernels with NVRTC"
    );
    cache.push((arch, ptx.clone()));
    Ok(ptx)
}
