//! [`DeviceWindow`]: the device twin of the same-host window. Each local rank
//! allocates two collective buffers in device memory with cuMemAlloc (a plain
//! allocation, so CUDA IPC can export it), publishes its IPC handle, and maps every
//! peer's buffers into its context (cuIpcOpenMemHandle; thread ranks of one process
//! use each other's pointers directly, with peer access enabled across devices).
//!
//! **Flags.** Synchronisation is stream-ordered: a rank's post is a
//! cuStreamWriteValue64 and its wait a cuStreamWaitValue64 (GEQ) enqueued on the
//! caller's stream. The flag words live in *host* memory: block 0 of a small host
//! window (a shared-memory segment between processes, a heap block between threads)
//! that every rank maps and registers for the device (cuMemHostRegister, DEVICEMAP).
//! Member `m`'s block holds one 64-bit slot per member; member `k` writes the value
//! it posts into slot `k` of every other member's block (a push), and a rank waits
//! on the slots of its own block. Host flags cost a few microseconds of PCIe latency
//! per synchronisation, and buy what a dead or stuck peer needs: the host sees every
//! slot (which ranks never arrived), and can unblock its own stream by storing a large
//! value into its own slots ([`DeviceWindow::unblock`]), with a plain CPU store, even
//! when every stream of the GPU is stuck.
//!
//! **Setup** is collective among the local ranks and all-or-nothing: every rank
//! prepares (registers the flags, allocates, exports), publishes the outcome, maps the
//! peers only if every rank prepared, and publishes again; a rank whose step failed
//! makes every rank fall back to staging through host memory, with the reason.
//!
//! **Teardown** never frees memory a peer may still read: each rank unmaps the
//! peers' buffers after its own stream work finished, counts itself out in every
//! peer's second flag block, and frees its buffers once every peer counted itself out
//! (or died), leaking them instead after a bounded wait.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cudarc::driver::CudaContext;
use cudarc::driver::sys::CUdeviceptr;
use tutti_transport::window::Window;
use tutti_transport::{Deadline, Rendezvous, TransportError};

use super::driver::{self, DeviceAlloc, HostRegistration, IPC_HANDLE_BYTES, IpcMapping};
use crate::{Error, Result};

/// Bytes of the host window's data buffers that carry the flags (one page each).
pub const FLAG_BLOCK_BYTES: usize = 4096;

/// Most members a flag block holds (one 8-byte slot each).
pub const MAX_MEMBERS: usize = FLAG_BLOCK_BYTES / 8;

/// How long a rank waits at teardown for its peers to unmap its buffers before it
/// leaks them instead of freeing memory a peer might still read.
const DETACH_WAIT: Duration = Duration::from_secs(10);

/// Why a device window could not be set up (every local rank gets the same reason,
/// and falls back to staging through host memory).
#[derive(Debug, Clone)]
pub struct Unavailable(pub String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One rank's view of the device windows of its group's ranks on this host.
pub struct DeviceWindow {
    ctx: Arc<CudaContext>,
    index: usize,
    members: usize,
    data_bytes: usize,
    /// The base device address of each member's two buffers, in this context.
    bases: Vec<CUdeviceptr>,
    /// The peers' allocations mapped with CUDA IPC (closed at teardown); thread
    /// ranks of this process and this rank's own buffers need none.
    mappings: Vec<IpcMapping>,
    /// The device address, in this context, of each member's flag block.
    flag_dev: Vec<CUdeviceptr>,
    /// Registrations of every member's flag block (dropped before `flags`).
    regs: Vec<HostRegistration>,
    alloc: Option<DeviceAlloc>,
    flags: Arc<Window>,
    /// Set when the window's operations failed: teardown does not wait as long for
    /// peers that may be gone.
    broken: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for DeviceWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceWindow")
            .field("device", &self.ctx.ordinal())
            .field("index", &self.index)
            .field("members", &self.members)
            .field("data_bytes", &self.data_bytes)
            .finish_non_exhaustive()
    }
}

/// What a rank publishes after preparing.
#[derive(Clone)]
struct Prepared {
    pid: u32,
    ptr: CUdeviceptr,
    handle: [u8; IPC_HANDLE_BYTES],
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn encode(r: &std::result::Result<Prepared, String>) -> String {
    match r {
        Ok(p) => format!("ok {} {:x} {}", p.pid, p.ptr, hex(&p.handle)),
        Err(reason) => format!("fail {reason}"),
    }
}

fn decode(s: &str) -> std::result::Result<Prepared, String> {
    if let Some(reason) = s.strip_prefix("fail ") {
        return Err(reason.to_string());
    }
    let parse = || -> Option<Prepared> {
        let mut it = s.strip_prefix("ok ")?.split(' ');
        let pid = it.next()?.parse().ok()?;
        let ptr = u64::from_str_radix(it.next()?, 16).ok()?;
        let handle: [u8; IPC_HANDLE_BYTES] = unhex(it.next()?)?.try_into().ok()?;
        Some(Prepared { pid, ptr, handle })
    };
    parse().ok_or_else(|| format!("malformed device window record {s:?}"))
}

impl DeviceWindow {
    /// Sets up this rank's device window among the members of `flags` (the group's
    /// ranks on this host, this rank being member `flags.index()`), exchanging through
    /// `rdv` under `prefix`: two buffers of `data_bytes` each on `ctx`'s device.
    ///
    /// Returns `Ok(Err(Unavailable))`, on every member alike, when any member could
    /// not take part (no 64-bit stream memory operations, host registration or IPC
    /// refused, no peer access between two GPUs, ...); `Err` only when the exchange
    /// itself fails (a peer never published: the deadline passed).
    pub fn connect(
        ctx: &Arc<CudaContext>,
        flags: Arc<Window>,
        rdv: &dyn Rendezvous,
        prefix: &str,
        data_bytes: usize,
        deadline: Deadline,
    ) -> Result<std::result::Result<DeviceWindow, Unavailable>> {
        let (index, members) = (flags.index(), flags.members());
        if members > MAX_MEMBERS {
            return Ok(Err(Unavailable(format!(
                "{members} ranks on this host; device windows hold at most {MAX_MEMBERS}"
            ))));
        }
        if flags.data_bytes() < FLAG_BLOCK_BYTES {
            return Err(Error::InvalidArgument(format!(
                "the flag window's buffers hold {} bytes, {FLAG_BLOCK_BYTES} needed",
                flags.data_bytes()
            )));
        }
        let mut win = DeviceWindow {
            ctx: ctx.clone(),
            index,
            members,
            data_bytes,
            bases: vec![0; members],
            mappings: Vec::with_capacity(members),
            flag_dev: vec![0; members],
            regs: Vec::with_capacity(members),
            alloc: None,
            flags,
            broken: std::sync::atomic::AtomicBool::new(false),
        };
        // 1. Prepare: flags registered, buffers allocated and exported.
        let prepared = win.prepare().map_err(|e| e.to_string());
        let key = |phase: &str, m: usize| format!("{prefix}/{phase}/{m}");
        let publish = |k: String, v: String| {
            rdv.publish(&k, v.as_bytes()).map_err(|e| Error::Setup {
                rank: index,
                source: TransportError::Rendezvous {
                    peer: "(all)".into(),
                    step: "publishing the device window",
                    source: Box::new(e),
                },
            })
        };
        let lookup = |k: String| -> Result<String> {
            rdv.lookup(&k, deadline)
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .map_err(|e| Error::Setup {
                    rank: index,
                    source: TransportError::Rendezvous {
                        peer: k.clone(),
                        step: "waiting for a peer's device window",
                        source: Box::new(e),
                    },
                })
        };
        publish(key("prep", index), encode(&prepared))?;
        let mut records = Vec::with_capacity(members);
        for m in 0..members {
            records.push(if m == index {
                prepared.clone()
            } else {
                decode(&lookup(key("prep", m))?)
            });
        }
        if let Some((m, Err(reason))) = records.iter().enumerate().find(|(_, r)| r.is_err()) {
            // Nobody maps anything: every member sees this failure before mapping.
            win.drop_no_peers();
            return Ok(Err(Unavailable(format!("local rank {m}: {reason}"))));
        }
        // 2. Map every peer's buffers.
        let mapped = win.map_peers(&records);
        publish(
            key("map", index),
            match &mapped {
                Ok(()) => "ok".into(),
                Err(e) => format!("fail {e}"),
            },
        )?;
        let mut failure = mapped.err().map(|e| format!("local rank {index}: {e}"));
        for m in (0..members).filter(|&m| m != index) {
            let v = lookup(key("map", m))?;
            if let Some(reason) = v.strip_prefix("fail ")
                && failure.is_none()
            {
                failure = Some(format!("local rank {m}: {reason}"));
            }
        }
        if let Some(reason) = failure {
            // Some members mapped ours: the teardown waits for them to count out.
            drop(win);
            return Ok(Err(Unavailable(reason)));
        }
        tracing::debug!(
            device = ctx.ordinal(),
            index,
            members,
            data_bytes,
            "device window mapped"
        );
        Ok(Ok(win))
    }

    /// Registers the flag blocks, checks the stream memory operations, allocates and
    /// exports the buffers.
    fn prepare(&mut self) -> Result<Prepared> {
        if !driver::has_64bit_stream_mem_ops(&self.ctx)? {
            return Err(Error::GpuUnavailable(format!(
                "device {} lacks 64-bit stream memory operations \
                 (CU_DEVICE_ATTRIBUTE_CAN_USE_64_BIT_STREAM_MEM_OPS is 0)",
                self.ctx.ordinal()
            )));
        }
        for m in 0..self.members {
            for b in 0..2 {
                let p = self.flags.data(m, b);
                // SAFETY: `p` is the first byte of data buffer `b` of member `m`'s
                // flag window, `FLAG_BLOCK_BYTES` long (checked in `connect`) and
                // mapped for as long as `self.flags` lives; `self.regs` is dropped
                // before `self.flags` (see `Drop`).
                let reg = unsafe { HostRegistration::new(&self.ctx, p, FLAG_BLOCK_BYTES)? };
                self.regs.push(reg);
            }
            self.flag_dev[m] = driver::host_device_pointer(&self.ctx, self.flags.data(m, 0))?;
        }
        // Round up to 2 MiB so that the buffers are an allocation of their own.
        let bytes = (2 * self.data_bytes).next_multiple_of(2 << 20);
        let alloc = DeviceAlloc::new(&self.ctx, bytes)?;
        let handle = alloc.ipc_handle()?;
        let ptr = alloc.ptr();
        self.alloc = Some(alloc);
        Ok(Prepared {
            pid: std::process::id(),
            ptr,
            handle,
        })
    }

    fn map_peers(&mut self, records: &[std::result::Result<Prepared, String>]) -> Result<()> {
        let me = std::process::id();
        for (m, r) in records.iter().enumerate() {
            let Ok(p) = r else {
                unreachable!("checked by the caller: every record is Ok")
            };
            if m == self.index {
                self.bases[m] = p.ptr;
            } else if p.pid == me {
                // A thread rank of this process: same address space; across devices
                // the contexts need peer access.
                if let crate::group::MemoryKind::Cuda { device } = driver::memory_kind(p.ptr)?
                    && device != self.ctx.ordinal()
                {
                    let peer = super::open_device(device)?;
                    if !driver::can_access_peer(&self.ctx, &peer)? {
                        return Err(Error::GpuUnavailable(format!(
                            "device {} cannot access device {device}'s memory (no peer access)",
                            self.ctx.ordinal()
                        )));
                    }
                    driver::enable_peer_access(&self.ctx, &peer)?;
                }
                self.bases[m] = p.ptr;
            } else {
                let mapping = IpcMapping::open(&self.ctx, &p.handle)?;
                self.bases[m] = mapping.ptr();
                self.mappings.push(mapping);
            }
        }
        Ok(())
    }

    /// This rank's member index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Number of members.
    pub fn members(&self) -> usize {
        self.members
    }

    /// Bytes of each of the two buffers.
    pub fn data_bytes(&self) -> usize {
        self.data_bytes
    }

    /// The context the window lives in.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The device address of buffer `b` (0 or 1) of member `m`, in this context.
    pub fn buffer(&self, m: usize, b: usize) -> CUdeviceptr {
        self.bases[m] + (b * self.data_bytes) as u64
    }

    /// The device address of the slot member `k` writes in member `m`'s flag block.
    pub fn slot_dev(&self, m: usize, k: usize) -> CUdeviceptr {
        self.flag_dev[m] + 8 * k as u64
    }

    /// The slot member `k` writes in this rank's flag block: the last value `k`
    /// posted to this rank (read by the host to see who arrived).
    pub fn own_slot(&self, k: usize) -> &AtomicU64 {
        self.word(self.index, 0, k)
    }

    fn word(&self, m: usize, b: usize, k: usize) -> &AtomicU64 {
        debug_assert!(m < self.members && b < 2 && k < MAX_MEMBERS);
        // SAFETY: data buffer `b` of member `m`'s flag window is at least
        // FLAG_BLOCK_BYTES = 8 * MAX_MEMBERS bytes, page aligned, mapped while
        // `self.flags` lives (as long as self), and only ever accessed atomically
        // (by hosts through this, by GPUs through 8-byte stream memory operations).
        unsafe { &*(self.flags.data(m, b) as *const AtomicU64).add(k) }
    }

    /// The host flag window (liveness of the members, closing).
    pub fn flags(&self) -> &Arc<Window> {
        &self.flags
    }

    /// Unblocks every wait this rank's streams have on its own flag block, for values
    /// up to `upto`: stores `upto + 2^40` (cyclic greater-or-equal holds) into every
    /// peer's slot. Call it only once the window is given up: the peers' values are
    /// overwritten.
    pub fn unblock(&self, upto: u64) {
        self.broken.store(true, Ordering::Relaxed);
        let v = upto.wrapping_add(1 << 40);
        for k in (0..self.members).filter(|&k| k != self.index) {
            self.own_slot(k).store(v, Ordering::Release);
        }
    }

    /// Marks the window given up (teardown waits less for peers).
    pub fn mark_broken(&self) {
        self.broken.store(true, Ordering::Relaxed);
    }

    /// Teardown when no member mapped anything (a preparation failed somewhere).
    fn drop_no_peers(&mut self) {
        self.mappings.clear();
        if let Some(a) = self.alloc.take()
            && let Err(e) = a.free()
        {
            tracing::warn!(error = %e, "freeing an unused device window failed");
        }
    }
}

impl Drop for DeviceWindow {
    fn drop(&mut self) {
        // 1. Unmap the peers' buffers (the owner of this window finished its stream
        //    work before dropping it).
        self.mappings.clear();
        // 2. Count out in every peer's second block, then wait for the peers to count
        //    out of ours before freeing.
        if let Some(alloc) = self.alloc.take() {
            for m in (0..self.members).filter(|&m| m != self.index) {
                self.word(m, 1, 0).fetch_add(1, Ordering::AcqRel);
            }
            let want = (self.members - 1) as u64;
            let limit = if self.broken.load(Ordering::Relaxed) {
                DETACH_WAIT / 5
            } else {
                DETACH_WAIT
            };
            let start = Instant::now();
            let mine = self.word(self.index, 1, 0);
            let all_out = loop {
                let out = mine.load(Ordering::Acquire);
                // Peers whose process is gone cannot read our memory any more.
                let dead = (0..self.members)
                    .filter(|&m| m != self.index)
                    .filter(|&m| {
                        !self.flags.is_closed(m) && self.flags.check_member(m, "teardown").is_err()
                    })
                    .count() as u64;
                if out + dead >= want {
                    break true;
                }
                if start.elapsed() > limit {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(1));
            };
            if all_out {
                if let Err(e) = alloc.free() {
                    tracing::warn!(error = %e, "freeing the device window failed");
                }
            } else {
                tracing::warn!(
                    device = self.ctx.ordinal(),
                    "peers did not unmap this rank's device window within {limit:?}: leaking it \
                     rather than freeing memory they may still read"
                );
                std::mem::forget(alloc);
            }
        }
        // 3. Unregister the flags before the flag window (a field) unmaps them.
        self.regs.clear();
    }
}
