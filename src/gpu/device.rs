//! Is there a usable GPU? Opening devices without letting cudarc panic.
//!
//! cudarc loads libcuda lazily and *panics* when it is missing (or lacks a symbol), so
//! every path here first checks [`driver_present`] and runs driver calls under
//! `catch_unwind`, turning both into [`Error::GpuUnavailable`].

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};

use cudarc::driver::CudaContext;

use crate::{Error, Result};

/// Whether the CUDA driver library (libcuda) can be loaded. Cheap after the first call.
pub fn driver_present() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    *PRESENT.get_or_init(|| {
        // SAFETY: is_culib_present only tries to dlopen libcuda's usual names and
        // closes what it opened; it calls no CUDA function.
        unsafe { cudarc::driver::sys::is_culib_present() }
    })
}

/// Runs a driver call, turning a cudarc panic (missing library or symbol) into an error.
pub(super) fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| {
        let msg = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        Error::GpuUnavailable(format!(
            "{what}: the CUDA driver library is unusable: {msg}"
        ))
    })
}

/// The number of CUDA devices.
///
/// Errors: [`Error::GpuUnavailable`] saying why there is no GPU: no libcuda, driver
/// initialization failed (no device node, driver/library mismatch, ...), or zero
/// devices.
pub fn device_count() -> Result<usize> {
    if !driver_present() {
        return Err(Error::GpuUnavailable(
            "the CUDA driver library (libcuda.so) was not found".into(),
        ));
    }
    let count = guarded("cuDeviceGetCount", CudaContext::device_count)?
        .map_err(|e| Error::GpuUnavailable(format!("CUDA driver initialization failed: {e}")))?;
    match usize::try_from(count) {
        Ok(0) | Err(_) => Err(Error::GpuUnavailable(
            "the CUDA driver reports no device".into(),
        )),
        Ok(n) => Ok(n),
    }
}

/// Opens (retains) the primary context of device `ordinal`.
///
/// Errors: [`Error::GpuUnavailable`] as for [`device_count`], or when `ordinal` is not
/// below the device count; [`Error::Cuda`] when the driver fails to create the context.
pub fn open_device(ordinal: usize) -> Result<Arc<CudaContext>> {
    let count = device_count()?;
    if ordinal >= count {
        return Err(Error::GpuUnavailable(format!(
            "device {ordinal} does not exist ({count} CUDA device(s))"
        )));
    }
    let ctx = guarded("cuDevicePrimaryCtxRetain", || CudaContext::new(ordinal))?.map_err(|e| {
        Error::Cuda {
            context: format!("creating the primary context of device {ordinal}"),
            message: e.to_string(),
        }
    })?;
    tracing::debug!(ordinal, "opened CUDA device");
    Ok(ctx)
}
