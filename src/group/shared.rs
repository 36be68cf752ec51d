//! Shared buffers ([`ProcessGroup::alloc_shared`]): memory that every rank of the
//! host maps, so that collectives read the peers' data where it lies instead of
//! copying it into the windows first (NCCL's registered windows, torch's symmetric
//! memory).

use std::marker::PhantomData;

use tutti_core::Element;
use tutti_transport::window::{HostExec, SharedBuf};

use super::ProcessGroup;
use super::check::Desc;
use super::links::StoreRendezvous;
use crate::{Error, Result};

/// `len` elements of `T` in memory that every rank of this host maps, from
/// [`ProcessGroup::alloc_shared`]. Dereferences to `[T]` (zero-filled at first);
/// pass it (or a sub-slice) to the group's collectives like any buffer. When every
/// rank's buffer of a two-shot all_reduce lies in such an allocation, the ranks
/// read each other's inputs there instead of copying them into the windows.
pub struct SharedBuffer<T: Element> {
    buf: SharedBuf,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: Element> std::fmt::Debug for SharedBuffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedBuffer")
            .field("id", &self.buf.id())
            .field("len", &self.len)
            .finish()
    }
}

impl<T: Element> std::ops::Deref for SharedBuffer<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        let bytes = &self.buf.bytes()[..self.len * std::mem::size_of::<T>()];
        bytemuck::cast_slice(bytes)
    }
}

impl<T: Element> std::ops::DerefMut for SharedBuffer<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        let n = self.len * std::mem::size_of::<T>();
        bytemuck::cast_slice_mut(&mut self.buf.bytes_mut()[..n])
    }
}

impl ProcessGroup {
    /// Allocates `len` elements of `T` that every rank of this host maps. Collective:
    /// every rank of the group calls it, in the same order relative to the group's
    /// other operations, with the same `T` and `len`. Worth it for buffers that
    /// large all_reduces use again and again (gradient buckets): the ranks then read
    /// each other's inputs in place (2 processes, Intel Xeon, 1 MiB: see
    /// bench/RESULTS.md). Ranks alone on their host get ordinary memory.
    ///
    /// The memory is returned when the group is dropped, not when the buffer is:
    /// every rank keeps its peers' blocks mapped for as long as a peer may pass them
    /// to a collective, so allocate buffers once and reuse them. Ranks that pass
    /// different sizes get an error naming both; a call where some rank's buffer is
    /// not shared memory still runs correctly (every rank copies, as for ordinary
    /// buffers).
    pub fn alloc_shared<T: Element>(&self, len: usize) -> Result<SharedBuffer<T>> {
        let bytes = len.checked_mul(std::mem::size_of::<T>()).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "alloc_shared: {len} elements of {} bytes overflow",
                std::mem::size_of::<T>()
            ))
        })?;
        let inner = &self.inner;
        let prefix = format!("{}/host{}", inner.name, inner.local.members[0]);
        let buf = self.run(
            "alloc_shared",
            Desc::new(Some(T::DTYPE), len, None, None),
            |paths, dl| {
                let Some(w) = &paths.window else {
                    return Err(tutti_transport::TransportError::Unavailable(
                        "alloc_shared: this rank has no same-host window".into(),
                    ));
                };
                let rdv = StoreRendezvous(&*inner.store);
                let buf = w.alloc_shared(&rdv, &prefix, bytes, &inner.shared, dl)?;
                // Every member mapped every block: the names can go.
                let mut e = HostExec::new(w, None, 1, dl, "alloc_shared");
                tutti_intra::barrier(&mut e)?;
                buf.mapped_everywhere();
                Ok(buf)
            },
        )?;
        Ok(SharedBuffer {
            buf,
            len,
            _t: PhantomData,
        })
    }
}
