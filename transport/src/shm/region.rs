//! [`Region`]: a block of memory shared by the two ends of a FIFO: a mapping of a
//! `/dev/shm` segment (ranks in different processes) or a heap block (threads).

use std::ptr::NonNull;

/// Page-aligned memory that outlives both FIFO endpoints using it.
pub(crate) struct Region {
    ptr: NonNull<u8>,
    len: usize,
    kind: Kind,
}

enum Kind {
    /// A shared mapping, unmapped on drop.
    Mapped,
    /// A heap allocation with this layout, freed on drop.
    Heap(std::alloc::Layout),
}

// SAFETY: a Region is plain memory; the FIFO protocol (atomics in the header)
// decides which side may touch which bytes when.
unsafe impl Send for Region {}
// SAFETY: as above; shared references only hand out raw pointers.
unsafe impl Sync for Region {}

impl Region {
    /// Zeroed heap memory of `len` bytes, page aligned.
    pub(crate) fn heap(len: usize) -> Option<Region> {
        let layout = std::alloc::Layout::from_size_align(len.max(1), 4096).ok()?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        Some(Region {
            ptr: NonNull::new(ptr)?,
            len,
            kind: Kind::Heap(layout),
        })
    }

    /// Maps `len` bytes of `fd` shared and read-write.
    pub(crate) fn map(fd: std::os::fd::BorrowedFd<'_>, len: usize) -> std::io::Result<Region> {
        use rustix::mm::{MapFlags, ProtFlags, mmap};
        // SAFETY: a fresh mapping at an address the kernel picks aliases no Rust
        // object; its lifetime is tied to the returned Region (munmap on drop).
        let ptr = unsafe {
            mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )
        }?;
        Ok(Region {
            ptr: NonNull::new(ptr.cast())
                .ok_or_else(|| std::io::Error::other("mmap returned null"))?,
            len,
            kind: Kind::Mapped,
        })
    }

    /// The first byte.
    pub(crate) fn ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Size in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        match self.kind {
            Kind::Mapped => {
                // SAFETY: ptr/len are exactly the mapping made in `map`, and no
                // reference into it outlives the Region (endpoints hold an Arc).
                let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
            }
            // SAFETY: allocated in `heap` with this layout.
            Kind::Heap(layout) => unsafe { std::alloc::dealloc(self.ptr.as_ptr(), layout) },
        }
    }
}
