//! Staging device buffers through pinned host memory, for collectives that run on the
//! host paths (other hosts over TCP links, or no device window on this host).
//!
//! A staged collective is a [`Pipeline`] of chunks. The caller's stream copies chunk
//! `i` of the device input into pinned buffer `i % 2` (DtoH) and raises the `ready`
//! flag to `base + i + 1` (cuStreamWriteValue64 into pinned memory); a host thread
//! waits for that value, runs the host collective on the pinned chunk, and raises the
//! `done` flag; the stream waits for `done` (cuStreamWaitValue64) before it copies the
//! result back (HtoD) and before it reuses the pinned buffer for chunk `i + 2`. So the
//! device copies of chunks `i - 1` and `i + 1` overlap the host transfer of chunk `i`
//! (double buffering), and the caller's stream stays in order: the host only ever
//! waits on flags, the stream only on flags and its own earlier work.
//!
//! Element-wise collectives (all_reduce, broadcast, reduce) pipeline in chunks;
//! the others stage their whole input and output in one step.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cudarc::driver::CudaContext;
use cudarc::driver::sys::{CUdeviceptr, CUstream};

use super::driver::{self, PinnedHost};
use crate::{Error, Result};

/// Added to a flag value to release every wait on it (cyclic comparison) when an
/// operation is given up.
pub const RELEASE: u64 = 1 << 40;

/// The two flags of staged collectives, in one pinned page: `ready` (written by the
/// GPU, read by the host) and `done` (written by the host, waited on by the GPU), on
/// separate cache lines.
pub struct StageFlags {
    page: PinnedHost,
}

const DONE_OFFSET: usize = 64;

impl StageFlags {
    /// A fresh pair of flags (both 0) in pinned memory of `ctx`.
    pub fn new(ctx: &Arc<CudaContext>) -> Result<StageFlags> {
        Ok(StageFlags {
            page: PinnedHost::new(ctx, 4096)?,
        })
    }

    fn word(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: the page is 4096 bytes of page-aligned pinned memory owned by self;
        // offsets 0 and 64 are 8-byte aligned words accessed only atomically (by the
        // host here, by the GPU through 8-byte stream memory operations).
        unsafe { &*(self.page.ptr().add(offset) as *const AtomicU64) }
    }

    /// The `ready` flag: the last chunk value whose input reached pinned memory.
    pub fn ready(&self) -> &AtomicU64 {
        self.word(0)
    }

    /// The `done` flag: the last chunk value the host finished.
    pub fn done(&self) -> &AtomicU64 {
        self.word(DONE_OFFSET)
    }

    fn ready_dev(&self) -> CUdeviceptr {
        self.page.device_ptr()
    }

    fn done_dev(&self) -> CUdeviceptr {
        self.page.device_ptr() + DONE_OFFSET as u64
    }

    /// Releases every stream wait on `done` for values up to `upto` (when the
    /// collective is given up).
    pub fn release(&self, upto: u64) {
        self.done()
            .store(upto.wrapping_add(RELEASE), Ordering::Release);
    }
}

/// The host step of a staged collective: `(chunk index, input, output)`.
pub type HostStep<'a> = dyn FnMut(usize, &mut [u8], &mut [u8]) -> Result<()> + 'a;

/// A pinned host buffer shared by the stream operations and the host side of staged
/// collectives (kept alive by both until the collective completed).
pub type Pinned = Arc<PinnedHost>;

/// Allocates a pinned buffer of at least `bytes` bytes (4 KiB granularity).
pub fn pinned(ctx: &Arc<CudaContext>, bytes: usize) -> Result<Pinned> {
    Ok(Arc::new(PinnedHost::new(
        ctx,
        bytes.max(1).next_multiple_of(4096),
    )?))
}

/// One step of a staged collective: what the stream copies in and out around the host
/// collective, and in which pinned buffers.
#[derive(Clone, Debug)]
pub struct Chunk {
    /// Device bytes copied into pinned buffer `buf_in` before the host step.
    pub input: Option<(CUdeviceptr, usize)>,
    /// Device bytes written from pinned buffer `buf_out` after the host step.
    pub output: Option<(CUdeviceptr, usize)>,
    /// Index of the pinned buffer the input lands in.
    pub buf_in: usize,
    /// Index of the pinned buffer the output is read from.
    pub buf_out: usize,
}

/// A staged collective: its chunks and the flag values they use
/// (`base + 1 ..= base + chunks.len()`).
#[derive(Clone, Debug)]
pub struct Pipeline {
    /// The flag value before the first chunk.
    pub base: u64,
    /// The steps, in order. Chunks `i` and `i + 2` may share buffers; `i` and `i + 1`
    /// must not.
    pub chunks: Vec<Chunk>,
}

impl Pipeline {
    /// The chunks of an element-wise collective over `len` bytes from `input` to
    /// `output` (device addresses), `chunk` bytes at a time, alternating between
    /// pinned buffers 0 and 1; `read` and `write` say whether this rank copies its
    /// input in and the result out (a broadcast's root only reads, a reduce's
    /// non-roots only read).
    pub fn chunked(
        base: u64,
        input: CUdeviceptr,
        output: CUdeviceptr,
        len: usize,
        chunk: usize,
        read: bool,
        write: bool,
    ) -> Pipeline {
        let chunk = chunk.max(1);
        let mut chunks = Vec::with_capacity(len.div_ceil(chunk));
        let mut off = 0;
        while off < len {
            let l = chunk.min(len - off);
            let i = chunks.len();
            chunks.push(Chunk {
                input: read.then_some((input + off as u64, l)),
                output: write.then_some((output + off as u64, l)),
                buf_in: i % 2,
                buf_out: i % 2,
            });
            off += l;
        }
        Pipeline { base, chunks }
    }

    /// One step: `in_len` bytes of `input` into pinned buffer 0, `out_len` bytes of
    /// pinned buffer 1 to `output` (either may be absent: 0 bytes).
    pub fn whole(
        base: u64,
        input: CUdeviceptr,
        in_len: usize,
        output: CUdeviceptr,
        out_len: usize,
    ) -> Pipeline {
        Pipeline {
            base,
            chunks: vec![Chunk {
                input: (in_len > 0).then_some((input, in_len)),
                output: (out_len > 0).then_some((output, out_len)),
                buf_in: 0,
                buf_out: 1,
            }],
        }
    }

    /// The last flag value the pipeline uses.
    pub fn end(&self) -> u64 {
        self.base + self.chunks.len() as u64
    }

    /// The stream's side, in order: for each chunk `i`, wait until the host finished
    /// chunk `i - 2` and copy its result out, copy chunk `i` in, raise `ready`; then
    /// wait for and copy out the last two chunks.
    ///
    /// # Safety
    ///
    /// `stream` must belong to the current context; every device range of the chunks
    /// must stay valid until the stream ran the pipeline; `bufs[b]` must hold every
    /// chunk placed in buffer `b` and stay alive until then (the caller keeps the
    /// Arcs in the operation's record); the host side ([`Pipeline::host`]) must run
    /// for the same flags and values, or the flags be released.
    pub unsafe fn enqueue(
        &self,
        stream: CUstream,
        flags: &StageFlags,
        bufs: &[Pinned],
    ) -> Result<()> {
        let k = self.chunks.len();
        let out = |i: usize| -> Result<()> {
            let c = &self.chunks[i];
            // SAFETY: wait for `done >= base + i + 1`, which the host side stores
            // after finishing chunk i (or a release value on failure): see
            // driver::wait_value; the flag is pinned, mapped memory owned by `flags`.
            unsafe { driver::wait_value(stream, flags.done_dev(), self.base + i as u64 + 1)? };
            if let Some((dst, len)) = c.output {
                // SAFETY: `len` bytes of pinned buffer `buf_out` (holding them, the
                // caller's contract) to the caller's device range; no overlap
                // (host and device memory).
                unsafe { driver::memcpy(stream, dst, bufs[c.buf_out].device_ptr(), len)? };
            }
            Ok(())
        };
        for i in 0..k {
            if i >= 2 {
                out(i - 2)?;
            }
            let c = &self.chunks[i];
            if let Some((src, len)) = c.input {
                // SAFETY: the caller's device range into pinned buffer `buf_in`, which
                // the host no longer reads (chunk i - 2, its last user, is done: the
                // wait above, in stream order).
                unsafe { driver::memcpy(stream, bufs[c.buf_in].device_ptr(), src, len)? };
            }
            // SAFETY: `ready` is pinned, mapped memory owned by `flags`; the write
            // carries a fence, so the copy above is visible to the host first.
            unsafe { driver::write_value(stream, flags.ready_dev(), self.base + i as u64 + 1)? };
        }
        for i in k.saturating_sub(2)..k {
            out(i)?;
        }
        Ok(())
    }

    /// The host's side: for each chunk, waits until its input is in pinned memory,
    /// runs `step(i, input, output)` (the same slice when `buf_in == buf_out`: then
    /// `output` is empty and the step works in place on `input`), and raises `done`.
    /// Gives up (releasing the stream's waits) when `step` fails, `alive()` returns an
    /// error, or the stream does not deliver a chunk before `deadline`.
    ///
    /// # Safety
    ///
    /// `bufs` must be the buffers the stream side uses for this pipeline, and no other
    /// host code may touch them meanwhile.
    pub unsafe fn host(
        &self,
        flags: &StageFlags,
        bufs: &[Pinned],
        deadline: Option<Instant>,
        alive: &dyn Fn() -> Result<()>,
        step: &mut HostStep<'_>,
    ) -> Result<()> {
        let r = (|| -> Result<()> {
            for (i, c) in self.chunks.iter().enumerate() {
                let want = self.base + i as u64 + 1;
                wait_flag(flags.ready(), want, deadline, alive)?;
                let in_len = c.input.map_or(0, |(_, l)| l);
                let out_len = c.output.map_or(0, |(_, l)| l);
                if c.buf_in == c.buf_out {
                    let len = in_len.max(out_len);
                    // SAFETY: buffer `buf_in` holds the chunk (`len` bytes); the stream
                    // wrote its input before raising `ready` (fenced) and touches it
                    // again only after `done` (stream order); no other host code does.
                    let buf = unsafe { std::slice::from_raw_parts_mut(bufs[c.buf_in].ptr(), len) };
                    step(i, buf, &mut [])?;
                } else {
                    // SAFETY: as above, for two distinct buffers.
                    let (inp, outp) = unsafe {
                        (
                            std::slice::from_raw_parts_mut(bufs[c.buf_in].ptr(), in_len),
                            std::slice::from_raw_parts_mut(bufs[c.buf_out].ptr(), out_len),
                        )
                    };
                    step(i, inp, outp)?;
                }
                flags.done().store(want, Ordering::Release);
            }
            Ok(())
        })();
        if r.is_err() {
            flags.release(self.end());
        }
        r
    }
}

/// Waits until `flag` reached `want` (cyclic comparison), spinning briefly, then
/// sleeping in growing steps up to 200 µs.
fn wait_flag(
    flag: &AtomicU64,
    want: u64,
    deadline: Option<Instant>,
    alive: &dyn Fn() -> Result<()>,
) -> Result<()> {
    let reached = || (flag.load(Ordering::Acquire).wrapping_sub(want) as i64) >= 0;
    let start = Instant::now();
    let mut sleep = Duration::from_micros(1);
    let mut checked = Instant::now();
    while !reached() {
        if start.elapsed() < Duration::from_micros(50) {
            std::hint::spin_loop();
            continue;
        }
        if checked.elapsed() > Duration::from_millis(10) {
            alive()?;
            checked = Instant::now();
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            return Err(Error::Cuda {
                context: "staging a device buffer through host memory".into(),
                message: format!(
                    "the stream did not deliver the data within the operation's timeout \
                     (is the stream blocked by earlier work?); waited {:?}",
                    start.elapsed()
                ),
            });
        }
        std::thread::sleep(sleep);
        sleep = (sleep * 2).min(Duration::from_micros(200));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_pipelines_alternate_buffers_and_cover_the_range() {
        let p = Pipeline::chunked(10, 0x1000, 0x9000, 10, 4, true, true);
        assert_eq!(p.chunks.len(), 3);
        assert_eq!(p.end(), 13);
        let ins: Vec<_> = p.chunks.iter().map(|c| c.input.unwrap()).collect();
        assert_eq!(ins, vec![(0x1000, 4), (0x1004, 4), (0x1008, 2)]);
        let outs: Vec<_> = p.chunks.iter().map(|c| c.output.unwrap()).collect();
        assert_eq!(outs, vec![(0x9000, 4), (0x9004, 4), (0x9008, 2)]);
        let bufs: Vec<_> = p.chunks.iter().map(|c| (c.buf_in, c.buf_out)).collect();
        assert_eq!(bufs, vec![(0, 0), (1, 1), (0, 0)]);
        let root = Pipeline::chunked(0, 1, 1, 8, 4, true, false);
        assert!(root.chunks.iter().all(|c| c.output.is_none()));
        assert!(
            Pipeline::chunked(0, 1, 1, 0, 4, true, true)
                .chunks
                .is_empty()
        );
    }

    #[test]
    fn whole_pipelines_use_two_buffers() {
        let p = Pipeline::whole(5, 0x10, 8, 0x20, 32);
        assert_eq!(p.chunks.len(), 1);
        assert_eq!((p.chunks[0].buf_in, p.chunks[0].buf_out), (0, 1));
        assert_eq!(p.chunks[0].input, Some((0x10, 8)));
        assert_eq!(p.chunks[0].output, Some((0x20, 32)));
        assert_eq!(p.end(), 6);
        let none = Pipeline::whole(0, 0, 0, 0, 0);
        assert!(none.chunks[0].input.is_none() && none.chunks[0].output.is_none());
    }

    #[test]
    fn flags_compare_cyclically() {
        let f = AtomicU64::new(u64::MAX - 1);
        let ok = || Ok(());
        // u64::MAX - 1 is "before" 1 cyclically: not reached yet, so a deadline in
        // the past fails.
        let past = Some(Instant::now());
        assert!(wait_flag(&f, 1, past, &ok).is_err());
        f.store(1u64.wrapping_add(RELEASE), Ordering::Relaxed);
        assert!(wait_flag(&f, 1, past, &ok).is_ok());
    }
}
