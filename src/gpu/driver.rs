//! The CUDA driver calls of the device collectives, each wrapped once with its
//! contract (CUDA Driver API reference, sections "Memory Management", "Stream Memory
//! Operations", "Unified Addressing", "Stream Management", "Peer Context Memory
//! Access"): device allocations exported and mapped with CUDA IPC, host memory
//! registered for the device, pinned staging memory, stream-ordered 64-bit flag writes
//! and waits, asynchronous copies, and the memory kind of a pointer.
//!
//! Every call runs under [`guarded`](super::device::guarded): cudarc loads libcuda's
//! symbols lazily and panics when one is missing, which becomes
//! [`Error::GpuUnavailable`]. Calls that need a current context say so; the caller
//! binds it ([`CudaContext::bind_to_thread`]) first.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex};

use cudarc::driver::sys::{
    self, CUdevice_attribute, CUdeviceptr, CUipcMemHandle, CUmemorytype, CUpointer_attribute,
    CUstream, CUstreamWaitValue_flags, CUstreamWriteValue_flags,
};
use cudarc::driver::{CudaContext, DriverError};

use super::device::guarded;
use crate::group::MemoryKind;
use crate::{Error, Result};

/// Bytes of a CUDA IPC memory handle (`CUipcMemHandle`, 64 opaque bytes).
pub const IPC_HANDLE_BYTES: usize = 64;

fn cuda(context: impl Into<String>, e: DriverError) -> Error {
    Error::Cuda {
        context: context.into(),
        message: e.to_string(),
    }
}

/// Runs one driver call under the panic guard and turns its status into a result.
fn call(what: &str, f: impl FnOnce() -> sys::CUresult) -> Result<()> {
    guarded(what, f)?.result().map_err(|e| cuda(what, e))
}

/// Binds `ctx` to the calling thread (every call below that needs a current context
/// runs after this).
pub(crate) fn bind(ctx: &CudaContext) -> Result<()> {
    guarded("cuCtxSetCurrent", || ctx.bind_to_thread())?
        .map_err(|e| cuda("making the CUDA context current", e))
}

// ------------------------------------------------------------------ memory kind ------

/// Where `ptr` points, as the CUDA driver sees it: device memory of device N (also
/// managed memory, reported against the device it was allocated on), or host memory
/// (pageable, pinned, registered, or any address the driver does not know). Without a
/// CUDA driver every pointer is host memory.
///
/// Errors: [`Error::Cuda`] when the driver fails for another reason than "not a CUDA
/// pointer".
pub fn memory_kind(ptr: u64) -> Result<MemoryKind> {
    if ptr == 0 || !super::driver_present() {
        return Ok(MemoryKind::Host);
    }
    // cuInit is idempotent; without it every query below fails with NOT_INITIALIZED.
    match guarded("cuInit", cudarc::driver::result::init)? {
        Ok(()) => {}
        // No device or no usable driver: no pointer can be device memory.
        Err(_) => return Ok(MemoryKind::Host),
    }
    // Pointer queries may need a current context (drivers have answered
    // CUDA_ERROR_INVALID_CONTEXT on threads that never made one current); with unified
    // addressing any context resolves any pointer of the process, so the queries run
    // again with device 0's primary context current, and the thread is left without a
    // current context again afterwards.
    if let Some(kind) = memory_kind_queries(ptr)? {
        return Ok(kind);
    }
    if current_context()?.is_null() {
        let ctx = fallback_context()?;
        bind(&ctx)?;
        let again = memory_kind_queries(ptr);
        // SAFETY: cuCtxSetCurrent with NULL: "the CUDA context previously bound to the
        // calling CPU thread is unbound"; the thread had none before the bind above.
        let unbound = call("cuCtxSetCurrent", || unsafe {
            sys::cuCtxSetCurrent(std::ptr::null_mut())
        });
        if let Some(kind) = again? {
            unbound?;
            return Ok(kind);
        }
    }
    Err(cuda(
        format!("cuPointerGetAttribute of {ptr:#x}"),
        DriverError(sys::CUresult::CUDA_ERROR_INVALID_CONTEXT),
    ))
}

/// The context bound to the calling thread (null when none).
fn current_context() -> Result<sys::CUcontext> {
    let mut current: sys::CUcontext = std::ptr::null_mut();
    // SAFETY: cuCtxGetCurrent "returns in *pctx the CUDA context bound to the calling
    // CPU thread", NULL when none, through a pointer to a live CUcontext.
    call("cuCtxGetCurrent", || unsafe {
        sys::cuCtxGetCurrent(&mut current)
    })?;
    Ok(current)
}

/// Device 0's primary context, for pointer queries on threads without a current
/// context (retained once, for the life of the process).
fn fallback_context() -> Result<Arc<CudaContext>> {
    static FALLBACK: std::sync::OnceLock<Arc<CudaContext>> = std::sync::OnceLock::new();
    if let Some(c) = FALLBACK.get() {
        return Ok(c.clone());
    }
    let c = super::open_device(0)?;
    Ok(FALLBACK.get_or_init(|| c).clone())
}

/// The pointer queries of [`memory_kind`] (cuInit done); `None` when the driver
/// answered CUDA_ERROR_INVALID_CONTEXT.
fn memory_kind_queries(ptr: u64) -> Result<Option<MemoryKind>> {
    let mut memtype: u32 = 0;
    // SAFETY: cuPointerGetAttribute(CU_POINTER_ATTRIBUTE_MEMORY_TYPE) writes one
    // CUmemorytype (a 32-bit enum) through `data`, which points to a live u32; `ptr` is
    // only looked up in the driver's address tables, never dereferenced. For an
    // address the driver did not allocate, map or register it returns
    // CUDA_ERROR_INVALID_VALUE and writes nothing.
    let rc = guarded("cuPointerGetAttribute", || unsafe {
        sys::cuPointerGetAttribute(
            (&mut memtype as *mut u32).cast::<c_void>(),
            CUpointer_attribute::CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
            ptr,
        )
    })?;
    match rc {
        sys::CUresult::CUDA_SUCCESS => {}
        sys::CUresult::CUDA_ERROR_INVALID_VALUE | sys::CUresult::CUDA_ERROR_NOT_INITIALIZED => {
            return Ok(Some(MemoryKind::Host));
        }
        sys::CUresult::CUDA_ERROR_INVALID_CONTEXT => return Ok(None),
        other => {
            return Err(cuda(
                format!("cuPointerGetAttribute(MEMORY_TYPE) of {ptr:#x}"),
                DriverError(other),
            ));
        }
    }
    let mut managed: u32 = 0;
    // SAFETY: as above; CU_POINTER_ATTRIBUTE_IS_MANAGED writes a boolean (32-bit) for
    // a pointer the driver knows, which `ptr` is (the previous query succeeded).
    let managed_rc = guarded("cuPointerGetAttribute", || unsafe {
        sys::cuPointerGetAttribute(
            (&mut managed as *mut u32).cast::<c_void>(),
            CUpointer_attribute::CU_POINTER_ATTRIBUTE_IS_MANAGED,
            ptr,
        )
    })?;
    let is_device = memtype == CUmemorytype::CU_MEMORYTYPE_DEVICE as u32
        || (managed_rc == sys::CUresult::CUDA_SUCCESS && managed != 0);
    if !is_device {
        return Ok(Some(MemoryKind::Host));
    }
    let mut ordinal: i32 = -1;
    // SAFETY: CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL writes the device ordinal (an int)
    // of the allocation `ptr` belongs to, through a pointer to a live i32.
    let rc = guarded("cuPointerGetAttribute", || unsafe {
        sys::cuPointerGetAttribute(
            (&mut ordinal as *mut i32).cast::<c_void>(),
            CUpointer_attribute::CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
            ptr,
        )
    })?;
    match rc {
        sys::CUresult::CUDA_SUCCESS => {}
        sys::CUresult::CUDA_ERROR_INVALID_CONTEXT => return Ok(None),
        other => {
            return Err(cuda(
                format!("cuPointerGetAttribute(DEVICE_ORDINAL) of {ptr:#x}"),
                DriverError(other),
            ));
        }
    }
    let device = usize::try_from(ordinal).map_err(|_| Error::Cuda {
        context: format!("cuPointerGetAttribute(DEVICE_ORDINAL) of {ptr:#x}"),
        message: format!("negative device ordinal {ordinal}"),
    })?;
    Ok(Some(MemoryKind::Cuda { device }))
}

/// The context a stream belongs to (the current context for the legacy and
/// per-thread default streams).
pub(crate) fn stream_context(stream: CUstream) -> Result<sys::CUcontext> {
    let mut ctx: sys::CUcontext = std::ptr::null_mut();
    // SAFETY: cuStreamGetCtx writes the stream's context through a pointer to a live
    // CUcontext; the caller passes a stream handle it owns (a null handle is the
    // legacy default stream, whose context is the current one).
    call("cuStreamGetCtx", || unsafe {
        sys::cuStreamGetCtx(stream, &mut ctx)
    })?;
    Ok(ctx)
}

// ------------------------------------------------------------------ attributes -------

/// A device attribute of `ctx`'s device.
pub(crate) fn attribute(ctx: &CudaContext, attr: CUdevice_attribute) -> Result<i32> {
    guarded("cuDeviceGetAttribute", || ctx.attribute(attr))?
        .map_err(|e| cuda(format!("cuDeviceGetAttribute({attr:?})"), e))
}

/// Whether the device supports the 64-bit stream memory operations
/// (cuStreamWriteValue64 / cuStreamWaitValue64), which the flags of the device
/// windows use.
pub(crate) fn has_64bit_stream_mem_ops(ctx: &CudaContext) -> Result<bool> {
    Ok(attribute(
        ctx,
        CUdevice_attribute::CU_DEVICE_ATTRIBUTE_CAN_USE_64_BIT_STREAM_MEM_OPS,
    )? != 0)
}

/// Whether device `a` can map memory of device `b` (always true for `a == b`).
pub(crate) fn can_access_peer(a: &CudaContext, b: &CudaContext) -> Result<bool> {
    if a.cu_device() == b.cu_device() {
        return Ok(true);
    }
    let mut ok: i32 = 0;
    // SAFETY: cuDeviceCanAccessPeer writes an int through a pointer to a live i32;
    // both device handles come from live contexts.
    call("cuDeviceCanAccessPeer", || unsafe {
        sys::cuDeviceCanAccessPeer(&mut ok, a.cu_device(), b.cu_device())
    })?;
    Ok(ok != 0)
}

/// Lets kernels and copies of `ctx` (current) access allocations of `peer`; already
/// enabled is success.
pub(crate) fn enable_peer_access(ctx: &CudaContext, peer: &CudaContext) -> Result<()> {
    if ctx.cu_ctx() == peer.cu_ctx() {
        return Ok(());
    }
    bind(ctx)?;
    // SAFETY: cuCtxEnablePeerAccess ("Enables direct access to memory allocations in a
    // peer context", Flags reserved, must be 0) acts on the current context, bound
    // above; `peer` is a live context. CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED means
    // there is nothing to do.
    let rc = guarded("cuCtxEnablePeerAccess", || unsafe {
        sys::cuCtxEnablePeerAccess(peer.cu_ctx(), 0)
    })?;
    match rc {
        sys::CUresult::CUDA_SUCCESS | sys::CUresult::CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED => {
            Ok(())
        }
        other => Err(cuda(
            format!(
                "cuCtxEnablePeerAccess (device {} to device {})",
                ctx.ordinal(),
                peer.ordinal()
            ),
            DriverError(other),
        )),
    }
}

// ------------------------------------------------------------------ device memory ----

/// Device memory from cuMemAlloc (not a pool allocation, so it can be exported with
/// CUDA IPC), freed on drop.
pub(crate) struct DeviceAlloc {
    ptr: CUdeviceptr,
    bytes: usize,
    ctx: Arc<CudaContext>,
}

impl std::fmt::Debug for DeviceAlloc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceAlloc")
            .field("ptr", &format_args!("{:#x}", self.ptr))
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl DeviceAlloc {
    /// `bytes` bytes (more than 0) of uninitialised device memory of `ctx`'s device.
    pub(crate) fn new(ctx: &Arc<CudaContext>, bytes: usize) -> Result<DeviceAlloc> {
        if bytes == 0 {
            return Err(Error::InvalidArgument(
                "a device allocation needs at least one byte".into(),
            ));
        }
        bind(ctx)?;
        let mut ptr: CUdeviceptr = 0;
        // SAFETY: cuMemAlloc ("Allocates bytesize bytes of linear memory on the
        // device ... suitably aligned for any kind of variable. The memory is not
        // cleared") writes the new pointer through a pointer to a live CUdeviceptr;
        // the context is current (bound above) and bytes > 0.
        call(&format!("cuMemAlloc({bytes} bytes)"), || unsafe {
            sys::cuMemAlloc_v2(&mut ptr, bytes)
        })?;
        Ok(DeviceAlloc {
            ptr,
            bytes,
            ctx: ctx.clone(),
        })
    }

    pub(crate) fn ptr(&self) -> CUdeviceptr {
        self.ptr
    }

    /// The CUDA IPC handle of this allocation, for another process to map.
    pub(crate) fn ipc_handle(&self) -> Result<[u8; IPC_HANDLE_BYTES]> {
        bind(&self.ctx)?;
        let mut handle = CUipcMemHandle {
            reserved: [0; IPC_HANDLE_BYTES],
        };
        // SAFETY: cuIpcGetMemHandle "takes a pointer to the base of an existing
        // device memory allocation created with cuMemAlloc and exports it for use in
        // another process"; `self.ptr` is exactly such a base, alive while self is,
        // and the handle is written through a pointer to a live CUipcMemHandle.
        call("cuIpcGetMemHandle", || unsafe {
            sys::cuIpcGetMemHandle(&mut handle, self.ptr)
        })?;
        let mut out = [0u8; IPC_HANDLE_BYTES];
        for (o, c) in out.iter_mut().zip(handle.reserved) {
            *o = c as u8;
        }
        Ok(out)
    }

    /// Frees the memory now (a drop that cannot report errors does the same).
    pub(crate) fn free(mut self) -> Result<()> {
        let r = self.free_inner();
        std::mem::forget(self);
        r
    }

    fn free_inner(&mut self) -> Result<()> {
        if self.ptr == 0 {
            return Ok(());
        }
        bind(&self.ctx)?;
        let ptr = std::mem::replace(&mut self.ptr, 0);
        // SAFETY: cuMemFree frees memory returned by cuMemAlloc, exactly once (the
        // pointer is cleared above). The owner (the device window) frees only after
        // its stream work on it finished and every importing process closed its IPC
        // mapping or exited ("Calling cuMemFree on an exported memory region before
        // calling cuIpcCloseMemHandle in the importing context will result in
        // undefined behavior").
        call("cuMemFree", || unsafe { sys::cuMemFree_v2(ptr) })
    }
}

impl Drop for DeviceAlloc {
    fn drop(&mut self) {
        if let Err(e) = self.free_inner() {
            tracing::warn!(error = %e, "freeing a device window buffer failed");
        }
    }
}

/// A peer process's device allocation mapped into this context with CUDA IPC,
/// unmapped on drop.
pub(crate) struct IpcMapping {
    ptr: CUdeviceptr,
    ctx: Arc<CudaContext>,
}

impl IpcMapping {
    /// Maps the allocation behind `handle` (exported by another process) into `ctx`,
    /// enabling peer access when it lives on another device.
    pub(crate) fn open(ctx: &Arc<CudaContext>, handle: &[u8; IPC_HANDLE_BYTES]) -> Result<Self> {
        bind(ctx)?;
        let mut h = CUipcMemHandle {
            reserved: [0; IPC_HANDLE_BYTES],
        };
        for (r, b) in h.reserved.iter_mut().zip(handle) {
            *r = *b as std::ffi::c_char;
        }
        let mut ptr: CUdeviceptr = 0;
        // SAFETY: cuIpcOpenMemHandle "maps memory exported from another process with
        // cuIpcGetMemHandle into the current device address space" (the context bound
        // above, a primary context: "CUipcMemHandles from each CUdevice in a given
        // process may only be opened by one CUcontext per CUdevice per other
        // process"); CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS enables peer access when the
        // memory is on another device. The pointer is written through a live
        // CUdeviceptr; the mapping is released with cuIpcCloseMemHandle on drop.
        call("cuIpcOpenMemHandle", || unsafe {
            sys::cuIpcOpenMemHandle_v2(
                &mut ptr,
                h,
                sys::CUipcMem_flags::CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS as u32,
            )
        })?;
        Ok(IpcMapping {
            ptr,
            ctx: ctx.clone(),
        })
    }

    pub(crate) fn ptr(&self) -> CUdeviceptr {
        self.ptr
    }
}

impl Drop for IpcMapping {
    fn drop(&mut self) {
        let ptr = self.ptr;
        let r = bind(&self.ctx).and_then(|()| {
            // SAFETY: cuIpcCloseMemHandle "attempts to unmap memory returned by
            // cuIpcOpenMemHandle"; `ptr` is exactly such a pointer, closed once, after
            // the owner finished every stream operation that reads it (the device
            // window synchronizes its last event before dropping its mappings).
            call("cuIpcCloseMemHandle", || unsafe {
                sys::cuIpcCloseMemHandle(ptr)
            })
        });
        if let Err(e) = r {
            tracing::warn!(error = %e, "unmapping a peer's device window failed");
        }
    }
}

// ------------------------------------------------------------------ host memory ------

/// Page-aligned host ranges this process registered with cuMemHostRegister, with the
/// number of users of each (several thread ranks of one process register the same
/// windows; a range may be registered only once).
static REGISTERED: Mutex<Option<HashMap<usize, (usize, usize)>>> = Mutex::new(None);

const PAGE: usize = 4096;

/// A host range registered (page-locked and mapped) for every CUDA context of this
/// process; unregistered when the last user drops it.
pub(crate) struct HostRegistration {
    base: usize,
}

impl HostRegistration {
    /// Registers the pages holding `[ptr, ptr + len)` (once per process) with
    /// `CU_MEMHOSTREGISTER_PORTABLE | CU_MEMHOSTREGISTER_DEVICEMAP`, `ctx` current.
    ///
    /// # Safety
    ///
    /// The range must be mapped host memory that stays mapped until every
    /// registration of it (this one included) is dropped.
    pub(crate) unsafe fn new(ctx: &CudaContext, ptr: *mut u8, len: usize) -> Result<Self> {
        let base = (ptr as usize) & !(PAGE - 1);
        let end = (ptr as usize + len).next_multiple_of(PAGE);
        let bytes = end - base;
        let mut reg = REGISTERED.lock().unwrap_or_else(|p| p.into_inner());
        let map = reg.get_or_insert_with(HashMap::new);
        if let Some((registered, users)) = map.get_mut(&base) {
            if *registered < bytes {
                return Err(Error::InvalidArgument(format!(
                    "host range {base:#x} is registered with {registered} bytes, {bytes} needed"
                )));
            }
            *users += 1;
            return Ok(HostRegistration { base });
        }
        bind(ctx)?;
        // SAFETY: cuMemHostRegister "page-locks the memory range specified by p and
        // bytesize and maps it for the device(s) as specified by Flags"; the range is
        // page aligned (rounded above) and mapped for as long as the registration
        // lives (the caller's contract); PORTABLE makes it pinned for every context,
        // DEVICEMAP maps it into the CUDA address space (device pointer through
        // cuMemHostGetDevicePointer). It is unregistered once, with the same base
        // address, by the last user (`Drop`).
        call(
            &format!("cuMemHostRegister({bytes} bytes at {base:#x})"),
            || unsafe {
                sys::cuMemHostRegister_v2(
                    base as *mut c_void,
                    bytes,
                    sys::CU_MEMHOSTREGISTER_PORTABLE | sys::CU_MEMHOSTREGISTER_DEVICEMAP,
                )
            },
        )?;
        map.insert(base, (bytes, 1));
        Ok(HostRegistration { base })
    }
}

impl Drop for HostRegistration {
    fn drop(&mut self) {
        let mut reg = REGISTERED.lock().unwrap_or_else(|p| p.into_inner());
        let Some(map) = reg.as_mut() else { return };
        let Some((_, users)) = map.get_mut(&self.base) else {
            return;
        };
        *users -= 1;
        if *users > 0 {
            return;
        }
        map.remove(&self.base);
        let base = self.base;
        // SAFETY: cuMemHostUnregister "unmaps the memory range whose base address is
        // specified by p, and makes it pageable again. The base address must be the
        // same one specified to cuMemHostRegister()": `base` is that address, and no
        // registration of it is left. The device window drops its registrations
        // after its last stream operation on the flags completed.
        if let Err(e) = call("cuMemHostUnregister", || unsafe {
            sys::cuMemHostUnregister(base as *mut c_void)
        }) {
            tracing::warn!(error = %e, "unregistering host flags failed");
        }
    }
}

/// The device address of registered or pinned host memory at `ptr`, in `ctx`.
pub(crate) fn host_device_pointer(ctx: &CudaContext, ptr: *mut u8) -> Result<CUdeviceptr> {
    bind(ctx)?;
    let mut dptr: CUdeviceptr = 0;
    // SAFETY: cuMemHostGetDevicePointer "passes back the device pointer pdptr
    // corresponding to the mapped, pinned host buffer p" (registered with DEVICEMAP, or
    // allocated by cuMemHostAlloc with DEVICEMAP); Flags "must be set to 0"; the result
    // is written through a live CUdeviceptr.
    call("cuMemHostGetDevicePointer", || unsafe {
        sys::cuMemHostGetDevicePointer_v2(&mut dptr, ptr.cast::<c_void>(), 0)
    })?;
    Ok(dptr)
}

/// Page-locked host memory from cuMemHostAlloc (portable, mapped), zeroed, freed on
/// drop: the staging buffers of device collectives across hosts and their flags.
pub(crate) struct PinnedHost {
    ptr: *mut u8,
    bytes: usize,
    dev: CUdeviceptr,
    ctx: Arc<CudaContext>,
}

// SAFETY: plain host memory; the staging protocol decides who touches which bytes
// when (the flags in it are accessed through atomics).
unsafe impl Send for PinnedHost {}
// SAFETY: as above.
unsafe impl Sync for PinnedHost {}

impl PinnedHost {
    /// `bytes` (more than 0) bytes of zeroed pinned host memory, mapped for the device.
    pub(crate) fn new(ctx: &Arc<CudaContext>, bytes: usize) -> Result<PinnedHost> {
        if bytes == 0 {
            return Err(Error::InvalidArgument(
                "a pinned host buffer needs at least one byte".into(),
            ));
        }
        bind(ctx)?;
        let mut p: *mut c_void = std::ptr::null_mut();
        // SAFETY: cuMemHostAlloc "allocates bytesize bytes of host memory that is
        // page-locked and accessible to the device"; PORTABLE: pinned for every
        // context, DEVICEMAP: mapped into the CUDA address space. The pointer is
        // written through a live *mut c_void and freed with cuMemFreeHost on drop.
        call(&format!("cuMemHostAlloc({bytes} bytes)"), || unsafe {
            sys::cuMemHostAlloc(
                &mut p,
                bytes,
                sys::CU_MEMHOSTALLOC_PORTABLE | sys::CU_MEMHOSTALLOC_DEVICEMAP,
            )
        })?;
        let ptr = p.cast::<u8>();
        // SAFETY: `ptr` is a fresh, writable allocation of `bytes` bytes.
        unsafe { std::ptr::write_bytes(ptr, 0, bytes) };
        let mut pinned = PinnedHost {
            ptr,
            bytes,
            dev: 0,
            ctx: ctx.clone(),
        };
        pinned.dev = host_device_pointer(ctx, ptr)?;
        Ok(pinned)
    }

    pub(crate) fn ptr(&self) -> *mut u8 {
        self.ptr
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The device address of the first byte.
    pub(crate) fn device_ptr(&self) -> CUdeviceptr {
        self.dev
    }
}

impl Drop for PinnedHost {
    fn drop(&mut self) {
        let p = self.ptr;
        let r = bind(&self.ctx).and_then(|()| {
            // SAFETY: cuMemFreeHost frees memory from cuMemHostAlloc, once; the owner
            // drops it after the stream operations using it completed.
            call("cuMemFreeHost", || unsafe {
                sys::cuMemFreeHost(p.cast::<c_void>())
            })
        });
        if let Err(e) = r {
            tracing::warn!(error = %e, "freeing pinned staging memory failed");
        }
    }
}

// ------------------------------------------------------------------ stream ops -------

/// Enqueues on `stream` a write of `value` to the 64-bit word at device address
/// `addr`, after everything enqueued before it completed, with a memory fence before
/// the write (so the stream's earlier writes are visible to whoever sees the value).
///
/// # Safety
///
/// `addr` must be 8-byte aligned device-accessible memory (device memory, or host
/// memory registered or allocated with DEVICEMAP, through its device pointer) valid
/// until the write has executed; `stream` must belong to the current context.
pub(crate) unsafe fn write_value(stream: CUstream, addr: CUdeviceptr, value: u64) -> Result<()> {
    // SAFETY: cuStreamWriteValue64 "Write a value to memory. If the memory was
    // registered via cuMemHostRegister(), the device pointer should be obtained with
    // cuMemHostGetDevicePointer()"; CU_STREAM_WRITE_VALUE_DEFAULT keeps the memory
    // fence before the write ("similar semantics to __threadfence_system() but is
    // scoped to the stream"); the caller guarantees `addr` and `stream`. Support was
    // checked at setup (CU_DEVICE_ATTRIBUTE_CAN_USE_64_BIT_STREAM_MEM_OPS).
    call("cuStreamWriteValue64", || unsafe {
        sys::cuStreamWriteValue64_v2(
            stream,
            addr,
            value,
            CUstreamWriteValue_flags::CU_STREAM_WRITE_VALUE_DEFAULT as u32,
        )
    })
}

/// Enqueues on `stream` a wait until the 64-bit word at `addr` is at least `value`
/// (cyclic: `(int64_t)(*addr - value) >= 0`); later work on the stream starts after it.
///
/// # Safety
///
/// As for [`write_value`]; whoever must write `addr` (a peer's stream, or the host
/// when it aborts) must eventually write a value that satisfies the wait, or the
/// stream blocks forever (the device windows' watchdog guarantees it).
pub(crate) unsafe fn wait_value(stream: CUstream, addr: CUdeviceptr, value: u64) -> Result<()> {
    // SAFETY: cuStreamWaitValue64 "enqueues a synchronization of the stream on the
    // given memory location. Work ordered after the operation will block until the
    // given condition on the memory is satisfied. By default, the condition is to wait
    // for (int64_t)(*addr - value) >= 0, a cyclic greater-or-equal" (GEQ = 0); the
    // caller guarantees `addr`, `stream` and that the value eventually comes.
    call("cuStreamWaitValue64", || unsafe {
        sys::cuStreamWaitValue64_v2(
            stream,
            addr,
            value,
            CUstreamWaitValue_flags::CU_STREAM_WAIT_VALUE_GEQ as u32,
        )
    })
}

/// Enqueues a copy of `bytes` bytes from `src` to `dst` on `stream` (any direction:
/// unified addressing infers it from the pointers).
///
/// # Safety
///
/// Both ranges must be valid for `bytes` bytes (device memory of, or mapped into, the
/// current context, or pinned host memory) until the copy has executed, and must not
/// overlap; `stream` must belong to the current context.
pub(crate) unsafe fn memcpy(
    stream: CUstream,
    dst: CUdeviceptr,
    src: CUdeviceptr,
    bytes: usize,
) -> Result<()> {
    if bytes == 0 {
        return Ok(());
    }
    // SAFETY: cuMemcpyAsync "copies data between two pointers ... infers the type of
    // the transfer (host to host, host to device, device to device, or device to host)
    // from the pointer values. This function is only allowed in contexts which support
    // unified addressing" (every 64-bit Linux context); the caller guarantees both
    // ranges and the stream; the copy runs in stream order.
    call("cuMemcpyAsync", || unsafe {
        sys::cuMemcpyAsync(dst, src, bytes, stream)
    })
}
