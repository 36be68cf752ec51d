//! The raw layer for frameworks that own their memory: collectives on pointers with a
//! count, a [`DataType`] and a [`MemoryKind`], like NCCL's C API.

use std::ffi::c_void;

use super::ProcessGroup;
use crate::{DataType, Element, Error, ReduceOp, Result};

/// Where a raw buffer lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    /// Host (CPU) memory.
    Host,
    /// Memory of CUDA device `device`: the `*_raw` calls run the device collectives
    /// on the device's legacy default stream and wait for them (the `*_cuda` calls
    /// take a stream and only enqueue).
    Cuda {
        /// The CUDA device ordinal.
        device: usize,
    },
}

/// Dispatches on a [`DataType`] with its element type bound to `$t` (the crate-wide
/// [`with_elem!`](crate::with_elem)).
pub(crate) use crate::with_elem as with_element;

/// The memory the buffers really are in, checked against `memory` (a mismatch is
/// [`Error::MemoryMismatch`]); `(name, pointer, non-empty)` per buffer.
fn memory_of(
    what: &str,
    memory: MemoryKind,
    buffers: &[(&'static str, *const c_void, bool)],
) -> Result<MemoryKind> {
    super::device_raw::check_memory(what, memory, buffers)
}

fn check_ptr(
    what: &str,
    name: &str,
    p: *const c_void,
    count: usize,
    dtype: DataType,
) -> Result<()> {
    if count > 0 && p.is_null() {
        return Err(Error::InvalidArgument(format!(
            "{what}: {name} is null with count {count}"
        )));
    }
    if count
        .checked_mul(dtype.size())
        .is_none_or(|b| b > isize::MAX as usize)
    {
        return Err(Error::InvalidArgument(format!(
            "{what}: count {count} of {dtype} overflows the address space"
        )));
    }
    // Complex numbers align like their parts.
    let align = if dtype.is_complex() {
        dtype.size() / 2
    } else {
        dtype.size()
    };
    if count > 0 && !(p as usize).is_multiple_of(align) {
        return Err(Error::InvalidArgument(format!(
            "{what}: {name} is not aligned for {dtype} elements"
        )));
    }
    Ok(())
}

/// # Safety
/// `p` is valid for `count` elements of `T` for `'a` (checked non-null and aligned).
unsafe fn slice<'a, T: Element>(p: *const c_void, count: usize) -> &'a [T] {
    if count == 0 {
        return &[];
    }
    // SAFETY: forwarded from the caller: `p` points to `count` initialised `T`s,
    // valid and not mutated elsewhere for 'a.
    unsafe { std::slice::from_raw_parts(p as *const T, count) }
}

/// # Safety
/// `p` is valid for writes of `count` elements of `T` for `'a`, and not aliased.
unsafe fn slice_mut<'a, T: Element>(p: *mut c_void, count: usize) -> &'a mut [T] {
    if count == 0 {
        return &mut [];
    }
    // SAFETY: forwarded from the caller: `p` points to `count` `T`s this call may
    // read and write exclusively for 'a.
    unsafe { std::slice::from_raw_parts_mut(p as *mut T, count) }
}

impl ProcessGroup {
    /// All-reduce of `count` elements from `send` into `recv` (in place when they
    /// are equal).
    ///
    /// # Safety
    /// `send` must be valid for reads and `recv` for writes of `count` elements of
    /// `dtype` for the duration of the call, aligned for the element type; the two
    /// must be equal or not overlap, and nothing else may access `recv` meanwhile.
    pub unsafe fn all_reduce_raw(
        &self,
        send: *const c_void,
        recv: *mut c_void,
        count: usize,
        dtype: DataType,
        op: ReduceOp,
        memory: MemoryKind,
    ) -> Result<()> {
        op.check(dtype)?;
        let used = count > 0;
        let bufs = [("send", send, used), ("recv", recv as *const c_void, used)];
        if let MemoryKind::Cuda { .. } = memory_of("all_reduce_raw", memory, &bufs)? {
            // SAFETY: the caller's contract, on device memory (checked), on the
            // device's legacy default stream; waited for before returning.
            let work = unsafe {
                self.all_reduce_cuda(
                    send as u64,
                    recv as u64,
                    count,
                    dtype,
                    op,
                    std::ptr::null_mut(),
                )
            }?;
            return work.wait();
        }
        check_ptr("all_reduce_raw", "send", send, count, dtype)?;
        check_ptr("all_reduce_raw", "recv", recv, count, dtype)?;
        with_element!(dtype, T, {
            // SAFETY: the caller guarantees `recv` (and `send`) for `count` Ts.
            let out: &mut [T] = unsafe { slice_mut(recv, count) };
            if !std::ptr::eq(send, recv as *const c_void) {
                // SAFETY: as above; distinct from `recv` by the caller's contract.
                let input: &[T] = unsafe { slice(send, count) };
                out.copy_from_slice(input);
            }
            self.all_reduce(out, op)
        })
    }

    /// Broadcast of `count` elements of the root's `buf`.
    ///
    /// # Safety
    /// `buf` must be valid for reads and writes of `count` elements of `dtype`,
    /// aligned, and not accessed elsewhere during the call.
    pub unsafe fn broadcast_raw(
        &self,
        buf: *mut c_void,
        count: usize,
        dtype: DataType,
        root: usize,
        memory: MemoryKind,
    ) -> Result<()> {
        let bufs = [("buf", buf as *const c_void, count > 0)];
        if let MemoryKind::Cuda { .. } = memory_of("broadcast_raw", memory, &bufs)? {
            // SAFETY: as in all_reduce_raw.
            let work = unsafe {
                self.broadcast_cuda(buf as u64, count, dtype, root, std::ptr::null_mut())
            }?;
            return work.wait();
        }
        check_ptr("broadcast_raw", "buf", buf, count, dtype)?;
        with_element!(dtype, T, {
            // SAFETY: the caller's contract for `buf`.
            let b: &mut [T] = unsafe { slice_mut(buf, count) };
            self.broadcast(b, root)
        })
    }

    /// All-gather: `count` elements from each rank's `send` into `recv`
    /// (`size * count` elements).
    ///
    /// # Safety
    /// `send` valid for reads of `count` elements, `recv` for writes of
    /// `size * count`, aligned, not overlapping, for the duration of the call.
    pub unsafe fn all_gather_raw(
        &self,
        send: *const c_void,
        recv: *mut c_void,
        count: usize,
        dtype: DataType,
        memory: MemoryKind,
    ) -> Result<()> {
        let total = count.checked_mul(self.size()).ok_or_else(|| {
            Error::InvalidArgument("all_gather_raw: count x group size overflows".into())
        })?;
        let bufs = [
            ("send", send, count > 0),
            ("recv", recv as *const c_void, total > 0),
        ];
        if let MemoryKind::Cuda { .. } = memory_of("all_gather_raw", memory, &bufs)? {
            // SAFETY: as in all_reduce_raw.
            let work = unsafe {
                self.all_gather_cuda(send as u64, recv as u64, count, dtype, std::ptr::null_mut())
            }?;
            return work.wait();
        }
        check_ptr("all_gather_raw", "send", send, count, dtype)?;
        check_ptr("all_gather_raw", "recv", recv, total, dtype)?;
        with_element!(dtype, T, {
            // SAFETY: the caller's contract for `send` and `recv`.
            let (i, o): (&[T], &mut [T]) = unsafe { (slice(send, count), slice_mut(recv, total)) };
            self.all_gather(i, o)
        })
    }

    /// Reduce-scatter: each rank's `send` (`size * count` elements) is reduced and
    /// block `rank` of the result (`count` elements) lands in `recv`.
    ///
    /// # Safety
    /// `send` valid for reads of `size * count` elements, `recv` for writes of
    /// `count`, aligned, not overlapping, for the duration of the call.
    pub unsafe fn reduce_scatter_raw(
        &self,
        send: *const c_void,
        recv: *mut c_void,
        count: usize,
        dtype: DataType,
        op: ReduceOp,
        memory: MemoryKind,
    ) -> Result<()> {
        op.check(dtype)?;
        let total = count.checked_mul(self.size()).ok_or_else(|| {
            Error::InvalidArgument("reduce_scatter_raw: count x group size overflows".into())
        })?;
        let bufs = [
            ("send", send, total > 0),
            ("recv", recv as *const c_void, count > 0),
        ];
        if let MemoryKind::Cuda { .. } = memory_of("reduce_scatter_raw", memory, &bufs)? {
            // SAFETY: as in all_reduce_raw.
            let work = unsafe {
                self.reduce_scatter_cuda(
                    send as u64,
                    recv as u64,
                    count,
                    dtype,
                    op,
                    std::ptr::null_mut(),
                )
            }?;
            return work.wait();
        }
        check_ptr("reduce_scatter_raw", "send", send, total, dtype)?;
        check_ptr("reduce_scatter_raw", "recv", recv, count, dtype)?;
        with_element!(dtype, T, {
            // SAFETY: the caller's contract for `send` and `recv`.
            let (i, o): (&[T], &mut [T]) = unsafe { (slice(send, total), slice_mut(recv, count)) };
            self.reduce_scatter(i, o, op)
        })
    }
}
