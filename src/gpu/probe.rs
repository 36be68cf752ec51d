//! [`probe`]: checks, one by one, the CUDA features the device collectives rely on, so
//! that a first run on a new machine (or `tutti validate`) says exactly which one is
//! missing instead of failing somewhere inside a collective.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cudarc::driver::sys::CUdevice_attribute;
use tutti_transport::window::{Window, WindowConfig};
use tutti_transport::{Deadline, Rendezvous, RendezvousError};

use super::driver::{self, DeviceAlloc, HostRegistration, PinnedHost};
use super::{GpuKernels, open_device};

/// The outcome of one check: what was found, or why it failed.
#[derive(Clone, Debug)]
pub struct ProbeCheck {
    /// What was checked.
    pub name: &'static str,
    /// `Ok(what was found)` or `Err(why it failed)`.
    pub result: Result<String, String>,
}

/// A rendezvous for one member (the probe's own flag window).
struct Alone(std::sync::Mutex<Vec<(String, Vec<u8>)>>);

impl Rendezvous for Alone {
    fn publish(&self, key: &str, value: &[u8]) -> Result<(), RendezvousError> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((key.into(), value.into()));
        Ok(())
    }
    fn lookup(&self, key: &str, _deadline: Deadline) -> Result<Vec<u8>, RendezvousError> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| RendezvousError::Timeout { key: key.into() })
    }
}

/// Runs every check on device `ordinal`, in order; a check whose prerequisite failed
/// is reported as not run.
pub fn probe(ordinal: usize) -> Vec<ProbeCheck> {
    let mut out = Vec::new();
    let mut push = |name: &'static str, result: Result<String, String>| {
        let ok = result.is_ok();
        out.push(ProbeCheck { name, result });
        ok
    };
    let ctx = match open_device(ordinal) {
        Ok(c) => c,
        Err(e) => {
            push("open the device", Err(e.to_string()));
            return out;
        }
    };
    let (major, minor) = ctx.compute_capability().unwrap_or((0, 0));
    push(
        "open the device",
        Ok(format!(
            "device {ordinal}: {} (compute capability {major}.{minor}, {} MiB)",
            ctx.name().unwrap_or_default(),
            ctx.total_mem().unwrap_or(0) >> 20
        )),
    );
    for (name, attr) in [
        (
            "64-bit stream memory operations",
            CUdevice_attribute::CU_DEVICE_ATTRIBUTE_CAN_USE_64_BIT_STREAM_MEM_OPS,
        ),
        (
            "host memory registration",
            CUdevice_attribute::CU_DEVICE_ATTRIBUTE_HOST_REGISTER_SUPPORTED,
        ),
        (
            "unified addressing",
            CUdevice_attribute::CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING,
        ),
        (
            "IPC events (and IPC)",
            CUdevice_attribute::CU_DEVICE_ATTRIBUTE_IPC_EVENT_SUPPORTED,
        ),
        (
            "host pointers usable for registered memory",
            CUdevice_attribute::CU_DEVICE_ATTRIBUTE_CAN_USE_HOST_POINTER_FOR_REGISTERED_MEM,
        ),
    ] {
        let r = driver::attribute(&ctx, attr).map_err(|e| e.to_string());
        push(
            name,
            match r {
                Ok(0) => Err(format!("{attr:?} is 0")),
                Ok(v) => Ok(format!("{attr:?} = {v}")),
                Err(e) => Err(e),
            },
        );
    }
    let kernels = GpuKernels::load(&ctx);
    push(
        "load the kernels",
        kernels
            .as_ref()
            .map(|k| {
                format!(
                    "{:?}, {} SMs ({})",
                    k.origin(),
                    k.sm_count(),
                    super::kernel_image().how
                )
            })
            .map_err(|e| e.to_string()),
    );
    let alloc = DeviceAlloc::new(&ctx, 2 << 20);
    let export = alloc
        .as_ref()
        .map_err(|e| e.to_string())
        .and_then(|a| a.ipc_handle().map_err(|e| e.to_string()));
    push(
        "cuMemAlloc + cuIpcGetMemHandle",
        export.map(|h| format!("handle {:02x}{:02x}{:02x}{:02x}...", h[0], h[1], h[2], h[3])),
    );
    // A shared-memory window like the device windows' flags, registered for the GPU,
    // and a stream writing then waiting on one of its words.
    let mut cfg = WindowConfig::from_env(1);
    cfg.data_bytes = super::window::FLAG_BLOCK_BYTES;
    cfg.ring_bytes = 16 << 10;
    let rdv = Alone(Default::default());
    let names = ["probe".to_string()];
    let flags = Window::connect(
        &rdv,
        &format!("probe{}", std::process::id()),
        0,
        &names,
        &cfg,
        Deadline::after(Duration::from_secs(5)),
    )
    .map(Arc::new);
    let flags = match flags {
        Ok(f) => f,
        Err(e) => {
            push("shared-memory flag window", Err(e.to_string()));
            return out;
        }
    };
    let word = flags.data(0, 0);
    // SAFETY: `word` is the first byte of the window's first data buffer (4096 bytes),
    // mapped while `flags` lives; the registration is dropped before `flags`.
    let reg = unsafe { HostRegistration::new(&ctx, word, super::window::FLAG_BLOCK_BYTES) };
    let dev = reg
        .as_ref()
        .map_err(|e| e.to_string())
        .and_then(|_| driver::host_device_pointer(&ctx, word).map_err(|e| e.to_string()));
    if !push(
        "cuMemHostRegister of shared memory",
        dev.as_ref()
            .map(|d| format!("device pointer {d:#x}"))
            .map_err(Clone::clone),
    ) {
        return out;
    }
    let dev = dev.unwrap_or_default();
    let stream_ops = (|| -> Result<String, String> {
        let stream = ctx.new_stream().map_err(|e| e.to_string())?;
        let s = stream.cu_stream();
        // SAFETY: `dev` is the device pointer of the registered, 8-byte aligned first
        // word of the flag window, alive until the end of this function; the stream
        // belongs to `ctx` (bound by the calls above). The wait is satisfied by the
        // write just before it on the same stream.
        unsafe {
            driver::bind(&ctx).map_err(|e| e.to_string())?;
            driver::write_value(s, dev, 7).map_err(|e| e.to_string())?;
            driver::wait_value(s, dev, 7).map_err(|e| e.to_string())?;
            driver::write_value(s, dev + 8, 9).map_err(|e| e.to_string())?;
        }
        let event = stream.record_event(None).map_err(|e| e.to_string())?;
        let start = Instant::now();
        while !event.try_is_complete().map_err(|e| e.to_string())? {
            if start.elapsed() > Duration::from_secs(5) {
                return Err("the stream did not finish write, wait, write within 5 s".into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        // SAFETY: the words are plain memory of the mapped window (8-byte aligned).
        let (a, b) = unsafe {
            (
                std::ptr::read_volatile(word as *const u64),
                std::ptr::read_volatile(word.add(8) as *const u64),
            )
        };
        if (a, b) != (7, 9) {
            return Err(format!("the host read {a} and {b}, expected 7 and 9"));
        }
        Ok(format!("write/wait/write done in {:?}", start.elapsed()))
    })();
    push(
        "cuStreamWriteValue64 / cuStreamWaitValue64 on host flags",
        stream_ops,
    );
    let pinned = PinnedHost::new(&ctx, 4096)
        .map(|p| format!("device pointer {:#x}", p.device_ptr()))
        .map_err(|e| e.to_string());
    push("cuMemHostAlloc (staging)", pinned);
    drop(reg);
    out
}
