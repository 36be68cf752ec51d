//! [`RegisteredBuf`]: page-aligned memory registered with the device, owned for the
//! life of a link half.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use sideway::ibverbs::AccessFlags;
use sideway::ibverbs::memory_region::MemoryRegion;
use sideway::ibverbs::protection_domain::ProtectionDomain;

use super::device::error_chain;
use crate::{Result, TransportError};

const ALIGN: usize = 4096;

/// A zeroed, page-aligned allocation registered as a memory region. The device may
/// read or write it at any time while registered, so it is only ever accessed
/// through raw pointers, slices of parts the protocol says the device leaves
/// alone, and atomics.
pub(super) struct RegisteredBuf {
    // Declared first so that it is dropped (deregistered) before the memory is
    // freed: once `ibv_dereg_mr` returns the device no longer touches the memory.
    mr: Option<Arc<MemoryRegion>>,
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: the buffer is plain memory owned by this value; the raw pointer is what
// makes the type !Send by default, and no thread-affine state hangs off it.
unsafe impl Send for RegisteredBuf {}

impl RegisteredBuf {
    /// Allocates `len` zeroed bytes (rounded up to a page) and registers them.
    pub fn new(
        pd: &Arc<ProtectionDomain>,
        len: usize,
        access: AccessFlags,
        peer: &str,
        what: &str,
    ) -> Result<Self> {
        let size = len.max(1).next_multiple_of(ALIGN);
        let layout = Layout::from_size_align(size, ALIGN).map_err(|_| {
            TransportError::InvalidArgument(format!("{what}: {len} bytes is too large"))
        })?;
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).ok_or_else(|| TransportError::Setup {
            peer: peer.to_string(),
            detail: format!("{what}: cannot allocate {size} bytes"),
        })?;
        let mut buf = RegisteredBuf {
            mr: None,
            ptr,
            layout,
        };
        // SAFETY: `ptr` is valid for `size` bytes and stays allocated until after
        // the region is deregistered (see the field order and `Drop`).
        let mr = unsafe { pd.reg_mr(ptr.as_ptr() as usize, size, access) }.map_err(|e| {
            TransportError::Setup {
                peer: peer.to_string(),
                detail: format!(
                    "registering {what} ({size} bytes) with the RDMA device: {} \
                     (is the locked-memory limit, ulimit -l, too low?)",
                    error_chain(&e)
                ),
            }
        })?;
        buf.mr = Some(mr);
        Ok(buf)
    }

    fn mr(&self) -> &MemoryRegion {
        // Always set once `new` returned.
        self.mr.as_deref().expect("registered")
    }

    /// The local key, for scatter/gather entries.
    pub fn lkey(&self) -> u32 {
        self.mr().lkey()
    }

    /// The remote key the peer uses to access this buffer.
    pub fn rkey(&self) -> u32 {
        self.mr().rkey()
    }

    /// The address of byte `offset` (the device's view is the virtual address).
    pub fn addr(&self, offset: usize) -> u64 {
        self.ptr.as_ptr() as u64 + offset as u64
    }

    /// Registered length in bytes.
    pub fn len(&self) -> usize {
        self.layout.size()
    }

    /// Bytes `offset..offset + len` as a shared slice.
    ///
    /// # Safety
    ///
    /// The device must not write that range while the slice lives (the protocol
    /// guarantees it for a received slot until its credit is returned), and the
    /// range must be in bounds.
    pub unsafe fn slice(&self, offset: usize, len: usize) -> &[u8] {
        debug_assert!(offset + len <= self.len());
        // SAFETY: in bounds and not written concurrently, per the caller.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(offset), len) }
    }

    /// Bytes `offset..offset + len` as a mutable slice.
    ///
    /// # Safety
    ///
    /// The device must not access that range while the slice lives (a staging
    /// slot whose previous write has completed), and the range must be in bounds.
    pub unsafe fn slice_mut(&mut self, offset: usize, len: usize) -> &mut [u8] {
        debug_assert!(offset + len <= self.len());
        // SAFETY: in bounds and not accessed concurrently, per the caller; `&mut
        // self` rules out other slices of this buffer.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(offset), len) }
    }

    /// The 8-byte word at `offset` (a multiple of 8), which the device may write at
    /// any time, as an atomic.
    pub fn word(&self, offset: usize) -> &AtomicU64 {
        assert!(offset.is_multiple_of(8) && offset + 8 <= self.len());
        // SAFETY: in bounds, 8-aligned (the buffer is page-aligned), and only ever
        // accessed atomically by this process (the device writes whole aligned
        // words, which is what the credit protocol relies on, as NCCL does).
        unsafe { AtomicU64::from_ptr(self.ptr.as_ptr().add(offset).cast::<u64>()) }
    }
}

impl Drop for RegisteredBuf {
    fn drop(&mut self) {
        // Deregister first: afterwards the device cannot access the memory.
        drop(self.mr.take());
        // SAFETY: allocated in `new` with this layout, freed once.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) };
    }
}
