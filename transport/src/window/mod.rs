//! Registered, peer-mapped windows: the same-host data path.
//!
//! Every rank of a group that shares a host with others creates one *window*, a block
//! of memory that every other local rank maps: a `/dev/shm` segment between
//! processes (unlinked as soon as every peer has mapped it, so nothing is left behind
//! whoever dies), a heap block between threads of one process. Collectives then read
//! the peers' buffers directly and synchronise through counters in the windows
//! ([`Window::post`], [`Window::wait_all`]); point-to-point messages travel through
//! per-pair rings in the receiver's window ([`ring`]), each rank's progress engine
//! sleeping on a doorbell that its peers ring.
//!
//! The window knows nothing about dtypes or devices: the algorithms (crate
//! `tutti-window`) work on raw addresses handed to an executor, so a CUDA IPC window
//! can implement the same shape with device memory and stream-ordered flags.

mod exec;
mod layout;
pub mod ring;
mod shared;
mod stream;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

pub use exec::{Addr, Exec, HostExec, Move};
pub use layout::LINE_PAYLOAD;
use layout::{Header, Layout, MAGIC, PAGE, SmallLine, VERSION};
pub use shared::{SharedBuf, SharedRegistry};

use crate::liveness::{self, Liveness};
use crate::shm::{Region, segment};
use crate::wait::{AbortHandle, Bell, WaitBudget, wait_on_bell};
use crate::{Deadline, GeometryError, Rendezvous, RendezvousError, Result, TransportError};

/// Geometry and waiting of a group's windows.
#[derive(Clone, Debug)]
pub struct WindowConfig {
    /// Bytes of each of the two collective buffers (a multiple of 4096;
    /// `TUTTI_WINDOW_BYTES`).
    pub data_bytes: usize,
    /// Bytes of each point-to-point ring (a multiple of 4096, at least 16 KiB;
    /// `TUTTI_P2P_RING_BYTES`).
    pub ring_bytes: usize,
    /// How waits poll before sleeping.
    pub budget: WaitBudget,
    /// Aborts every wait on the windows made with this config.
    pub abort: AbortHandle,
}

/// Default collective buffer: 512 KiB, two of them (see bench/RESULTS.md).
pub const DEFAULT_DATA_BYTES: usize = 512 << 10;
/// Default point-to-point ring: 512 KiB per peer.
pub const DEFAULT_RING_BYTES: usize = 512 << 10;

impl WindowConfig {
    /// Defaults for `local_ranks` ranks on this host, overridden by
    /// `TUTTI_WINDOW_BYTES` and `TUTTI_P2P_RING_BYTES`.
    pub fn from_env(local_ranks: usize) -> Self {
        let parse = |n: &str| {
            std::env::var(n)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
        };
        WindowConfig {
            data_bytes: parse("TUTTI_WINDOW_BYTES").unwrap_or(DEFAULT_DATA_BYTES),
            ring_bytes: parse("TUTTI_P2P_RING_BYTES").unwrap_or(DEFAULT_RING_BYTES),
            budget: WaitBudget::for_local_ranks(local_ranks),
            abort: AbortHandle::new(),
        }
    }

    fn validate(&self) -> std::result::Result<(), GeometryError> {
        let page_multiple = |v: usize| v > 0 && v.is_multiple_of(PAGE) && v <= 1 << 30;
        if !page_multiple(self.data_bytes) {
            return Err(GeometryError::OutOfRange {
                what: "window data size (TUTTI_WINDOW_BYTES)",
                rule: "a positive multiple of 4096 up to 1 GiB",
                got: self.data_bytes as u64,
            });
        }
        if !page_multiple(self.ring_bytes) || self.ring_bytes < 16 << 10 {
            return Err(GeometryError::OutOfRange {
                what: "point-to-point ring size (TUTTI_P2P_RING_BYTES)",
                rule: "a multiple of 4096 from 16 KiB to 1 GiB",
                got: self.ring_bytes as u64,
            });
        }
        Ok(())
    }
}

/// How this rank can read a member's private memory directly (the single-copy path of
/// large point-to-point messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direct {
    /// A thread of this process: plain loads.
    SameProcess,
    /// Another process that allows `process_vm_readv`.
    Cma(i32),
    /// Not allowed (ptrace restrictions): messages go through the rings.
    No,
}

/// One rank's view of its group's windows on this host: its own and a mapping of each
/// local peer's, indexed by *member* (the position among the group's ranks on this
/// host, in group-rank order).
pub struct Window {
    index: usize,
    regions: Vec<Arc<Region>>,
    layout: Layout,
    /// Per member: its description for errors and how to notice it died.
    peers: Vec<(Arc<str>, Liveness)>,
    /// Per member: whether and how its memory can be read directly.
    direct: Vec<Direct>,
    budget: WaitBudget,
    abort: AbortHandle,
    /// Rounds run so far by the collectives (their buffer parity); local.
    rounds: AtomicU64,
}

impl std::fmt::Debug for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Window")
            .field("index", &self.index)
            .field("members", &self.regions.len())
            .field("data_bytes", &self.layout.data_bytes)
            .finish_non_exhaustive()
    }
}

fn geometry_err(peer: &str, source: GeometryError) -> TransportError {
    TransportError::Geometry {
        peer: peer.to_string(),
        source: Box::new(source),
    }
}

fn rendezvous_err(peer: &str, step: &'static str, source: RendezvousError) -> TransportError {
    TransportError::Rendezvous {
        peer: peer.to_string(),
        step,
        source: Box::new(source),
    }
}

fn setup_err(peer: &str, detail: impl Into<String>) -> TransportError {
    TransportError::Setup {
        peer: peer.to_string(),
        detail: detail.into(),
    }
}

impl Window {
    /// Creates this rank's window and maps every local peer's, between processes:
    /// `names[m]` describes member `m` (this rank is member `index`); every member
    /// calls this with the same `prefix`, `names.len()` and config geometry.
    pub fn connect(
        rdv: &dyn Rendezvous,
        prefix: &str,
        index: usize,
        names: &[String],
        cfg: &WindowConfig,
        deadline: Deadline,
    ) -> Result<Window> {
        let members = names.len();
        let me_name = names.get(index).map_or("(this rank)", String::as_str);
        cfg.validate().map_err(|g| geometry_err(me_name, g))?;
        segment::sweep_stale_segments();
        let layout = Layout {
            members,
            data_bytes: cfg.data_bytes,
            ring_bytes: cfg.ring_bytes,
        };
        // 1. Our window, created, initialised and published.
        let name = segment::segment_name(prefix, index, index);
        let fd = segment::create(&name, layout.total()).map_err(|e| {
            TransportError::io(
                me_name,
                format!("creating the window {name} ({} bytes)", layout.total()),
                e,
            )
        })?;
        let guard = segment::UnlinkGuard::new(name.clone());
        let mine = Region::map(std::os::fd::AsFd::as_fd(&fd), layout.total())
            .map_err(|e| TransportError::io(me_name, format!("mapping the window {name}"), e))?;
        drop(fd);
        init_header(&mine, &layout, index, std::process::id());
        header(&mine).probe_addr.store(
            &crate::shm::cma::PROBE as *const u64 as u64,
            Ordering::Release,
        );
        let key = |m: usize| format!("{prefix}/window/{m}");
        rdv.publish(&key(index), name.as_bytes())
            .map_err(|e| rendezvous_err(me_name, "publishing the window name", e))?;

        // 2. Every peer's window, mapped and checked.
        let mut regions = Vec::with_capacity(members);
        let mut peers = Vec::with_capacity(members);
        let mut direct = Vec::with_capacity(members);
        let mut mine = Some(Arc::new(mine));
        for (m, peer) in names.iter().enumerate() {
            if m == index {
                regions.push(mine.take().expect("own window taken once"));
                peers.push((Arc::from(peer.as_str()), Liveness::SameProcess));
                direct.push(Direct::SameProcess);
                continue;
            }
            let pname = rdv
                .lookup(&key(m), deadline)
                .map_err(|e| rendezvous_err(peer, "waiting for the peer's window name", e))?;
            let pname = String::from_utf8(pname)
                .map_err(|_| setup_err(peer, "window name is not UTF-8"))?;
            let (pfd, plen) = segment::open(&pname).map_err(|e| {
                TransportError::io(peer, format!("opening the peer's window {pname}"), e)
            })?;
            let region = Region::map(std::os::fd::AsFd::as_fd(&pfd), plen)
                .map_err(|e| TransportError::io(peer, format!("mapping {pname}"), e))?;
            drop(pfd);
            let pid = check_header(&region, &layout, m).map_err(|g| geometry_err(peer, g))?;
            let probe = header(&region).probe_addr.load(Ordering::Acquire);
            direct.push(if crate::shm::cma::probe(pid as i32, probe) {
                Direct::Cma(pid as i32)
            } else {
                Direct::No
            });
            header(&region).attached.fetch_add(1, Ordering::AcqRel);
            regions.push(Arc::new(region));
            peers.push((Arc::from(peer.as_str()), liveness::of_process(pid as i32)));
        }

        // 3. Once every peer mapped ours, the name goes: the memory now lives exactly
        //    as long as the mappings.
        let own = header(&regions[index]);
        while own.attached.load(Ordering::Acquire) < (members - 1) as u32 {
            if deadline.expired() {
                return Err(TransportError::Timeout {
                    peer: me_name.to_string(),
                    op: "window setup (waiting for every local peer to map this rank's window)",
                    waited: deadline.waited(),
                });
            }
            for (p, (n, l)) in peers.iter().enumerate() {
                if p != index {
                    l.check(n, "window setup")?;
                }
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        drop(guard);
        tracing::debug!(
            prefix,
            index,
            members,
            bytes = layout.total(),
            ?direct,
            "windows mapped"
        );
        Ok(Window {
            index,
            regions,
            layout,
            peers,
            direct,
            budget: cfg.budget,
            abort: cfg.abort.clone(),
            rounds: AtomicU64::new(0),
        })
    }

    /// This rank's member index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Number of members (ranks of the group on this host).
    pub fn members(&self) -> usize {
        self.regions.len()
    }

    /// Bytes of each collective buffer.
    pub fn data_bytes(&self) -> usize {
        self.layout.data_bytes
    }

    /// Bytes of each point-to-point ring.
    pub fn ring_bytes(&self) -> usize {
        self.layout.ring_bytes
    }

    /// The description of member `m` (for errors).
    pub fn peer_name(&self, m: usize) -> &str {
        self.peers.get(m).map_or("(unknown member)", |(n, _)| n)
    }

    /// How waits on these windows poll before sleeping.
    pub fn budget(&self) -> WaitBudget {
        self.budget
    }

    /// The first byte of collective buffer `b` (0 or 1) of member `m`. Every member
    /// may read and write any member's buffers; the algorithms' protocol (post, wait)
    /// decides who touches which bytes when.
    pub fn data(&self, m: usize, b: usize) -> *mut u8 {
        debug_assert!(m < self.members() && b < 2);
        // SAFETY: `data(b) + data_bytes <= total`, the length of every member's
        // region (checked at setup).
        unsafe { self.regions[m].ptr().add(self.layout.data(b)) }
    }

    fn word<T>(&self, m: usize, offset: usize) -> &T {
        // SAFETY: `offset` is one of the layout's control offsets, aligned for `T`
        // (atomics only), inside every member's region (at least `layout.total()`
        // bytes); the region lives as long as self.
        unsafe { &*(self.regions[m].ptr().add(offset) as *const T) }
    }

    fn counter(&self, m: usize) -> &AtomicU64 {
        self.word(m, Layout::COUNTER)
    }

    fn coll_bell(&self, m: usize) -> Bell<'_> {
        Bell {
            seq: self.word(m, Layout::COLL_BELL),
            sleeping: self.word(m, Layout::COLL_SLEEPING),
        }
    }

    pub(crate) fn p2p_bell(&self, m: usize) -> Bell<'_> {
        Bell {
            seq: self.word(m, Layout::P2P_BELL),
            sleeping: self.word(m, Layout::P2P_SLEEPING),
        }
    }

    fn small(&self, m: usize, value: u64) -> &SmallLine {
        self.word(m, Layout::SMALL[(value % 2) as usize])
    }

    /// The value this rank posted last.
    pub fn posted(&self) -> u64 {
        self.counter(self.index).load(Ordering::Relaxed)
    }

    /// Publishes `value` as this rank's counter (values only grow) and wakes the
    /// peers that sleep waiting for it. Everything written to this rank's buffers
    /// before is visible to a peer that saw the value.
    pub fn post(&self, value: u64) {
        self.counter(self.index).store(value, Ordering::Release);
        self.ring_coll_bells();
    }

    fn ring_coll_bells(&self) {
        fence(Ordering::SeqCst);
        for m in (0..self.members()).filter(|&m| m != self.index) {
            let b = self.coll_bell(m);
            if b.sleeping.load(Ordering::Relaxed) != 0 {
                b.seq.fetch_add(1, Ordering::Release);
                let _ =
                    rustix::thread::futex::wake(b.seq, rustix::thread::futex::Flags::empty(), 1);
            }
        }
    }

    /// Waits until every member's counter is at least `value` (then everything they
    /// wrote before posting it is visible here). Fails when the deadline passes, the
    /// group is aborted, or a peer died or gave up; the error names the first peer
    /// not yet there.
    pub fn wait_all(&self, value: u64, deadline: Deadline, op: &'static str) -> Result<()> {
        let n = self.members();
        // Fast path: one pass, usually hitting lines already in cache.
        let mut next = 0;
        while next < n
            && (next == self.index || self.counter(next).load(Ordering::Acquire) >= value)
        {
            next += 1;
        }
        if next == n {
            return Ok(());
        }
        let next = std::cell::Cell::new(next);
        let ready = || {
            let mut m = next.get();
            while m < n && (m == self.index || self.counter(m).load(Ordering::Acquire) >= value) {
                m += 1;
            }
            next.set(m);
            m == n
        };
        wait_on_bell(
            &self.coll_bell(self.index),
            self.budget,
            deadline,
            ready,
            || self.check_waiting(next.get(), deadline, op),
        )
    }

    /// Waits until member `m`'s counter is at least `value`.
    pub fn wait_member(
        &self,
        m: usize,
        value: u64,
        deadline: Deadline,
        op: &'static str,
    ) -> Result<()> {
        if self.counter(m).load(Ordering::Acquire) >= value {
            return Ok(());
        }
        wait_on_bell(
            &self.coll_bell(self.index),
            self.budget,
            deadline,
            || self.counter(m).load(Ordering::Acquire) >= value,
            || self.check_waiting(m, deadline, op),
        )
    }

    /// The checks of a waiter blocked on member `m`.
    fn check_waiting(&self, m: usize, deadline: Deadline, op: &'static str) -> Result<()> {
        let peer = self.peer_name(m);
        if self.abort.is_aborted() {
            return Err(TransportError::Aborted {
                peer: peer.to_string(),
                op,
            });
        }
        // The member waited for first: the error names it when it is the one gone.
        let n = self.members();
        for p in (0..n).map(|k| (m + k) % n).filter(|&p| p != self.index) {
            self.check_member(p, op)?;
        }
        if deadline.expired() {
            return Err(TransportError::Timeout {
                peer: peer.to_string(),
                op,
                waited: deadline.waited(),
            });
        }
        Ok(())
    }

    /// Marks this rank's window closed and wakes every waiting peer, whose waits then
    /// fail naming this rank (after an error or an abort, or when leaving).
    pub fn close(&self) {
        header(&self.regions[self.index])
            .closed
            .store(1, Ordering::Release);
        fence(Ordering::SeqCst);
        for m in (0..self.members()).filter(|&m| m != self.index) {
            for b in [self.coll_bell(m), self.p2p_bell(m)] {
                b.seq.fetch_add(1, Ordering::Release);
                let _ = rustix::thread::futex::wake(
                    b.seq,
                    rustix::thread::futex::Flags::empty(),
                    i32::MAX as u32,
                );
            }
        }
    }

    /// True once member `m` closed its window.
    pub fn is_closed(&self, m: usize) -> bool {
        header(&self.regions[m]).closed.load(Ordering::Acquire) != 0
    }

    /// Publishes up to [`LINE_PAYLOAD`] bytes together with `value` in this rank's
    /// small-message line (one of two, by the parity of `value`), and posts `value`.
    /// A peer reads both with one cache-line transfer ([`read_small`](Self::read_small)).
    pub fn post_small(&self, value: u64, payload: &[u8]) {
        debug_assert!(payload.len() <= LINE_PAYLOAD);
        let line = self.small(self.index, value);
        let mut words = [0u64; LINE_PAYLOAD / 8];
        // SAFETY: `words` has LINE_PAYLOAD >= payload.len() bytes; u64 has no
        // invalid bit patterns.
        unsafe {
            std::ptr::copy_nonoverlapping(
                payload.as_ptr(),
                words.as_mut_ptr().cast::<u8>(),
                payload.len(),
            );
        }
        for (w, v) in line.payload.iter().zip(words) {
            w.store(v, Ordering::Relaxed);
        }
        line.seq.store(value, Ordering::Release);
        self.counter(self.index).store(value, Ordering::Relaxed);
        self.ring_coll_bells();
    }

    /// Waits for member `m`'s small-message line to carry `value` and copies its
    /// payload into `out` (at most [`LINE_PAYLOAD`] bytes).
    pub fn read_small(
        &self,
        m: usize,
        value: u64,
        out: &mut [u8],
        deadline: Deadline,
        op: &'static str,
    ) -> Result<()> {
        let line = self.small(m, value);
        if line.seq.load(Ordering::Acquire) != value {
            wait_on_bell(
                &self.coll_bell(self.index),
                self.budget,
                deadline,
                || line.seq.load(Ordering::Acquire) == value,
                || self.check_waiting(m, deadline, op),
            )?;
        }
        let mut words = [0u64; LINE_PAYLOAD / 8];
        for (v, w) in words.iter_mut().zip(&line.payload) {
            *v = w.load(Ordering::Relaxed);
        }
        let n = out.len().min(LINE_PAYLOAD);
        // SAFETY: `words` holds LINE_PAYLOAD >= n initialised bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(words.as_ptr().cast::<u8>(), out.as_mut_ptr(), n);
        }
        Ok(())
    }

    /// The ring member `from` writes into this rank's window, read side.
    pub fn ring_reader(self: &Arc<Self>, from: usize) -> ring::RingRx {
        ring::RingRx::in_window(self.clone(), from)
    }

    /// The ring this rank writes into member `to`'s window.
    pub fn ring_writer(self: &Arc<Self>, to: usize) -> ring::RingTx {
        ring::RingTx::in_window(self.clone(), to)
    }

    /// This rank's point-to-point doorbell: peers ring it when they publish a record
    /// for it or free room in a ring it writes; its progress engine sleeps on it.
    pub fn p2p_doorbell(self: &Arc<Self>) -> ring::BellRef {
        ring::BellRef::of_window(self, self.index)
    }

    /// Checks whether member `m` is still alive and in the group (for the progress
    /// engine, which waits on many peers at once).
    pub fn check_member(&self, m: usize, op: &'static str) -> Result<()> {
        if m == self.index {
            return Ok(());
        }
        if self.is_closed(m) {
            return Err(TransportError::PeerGone {
                peer: self.peer_name(m).to_string(),
                op,
                detail: "it gave up (its operation failed, it aborted or it left the group)".into(),
            });
        }
        self.peers[m].1.check(&self.peers[m].0, op)
    }

    /// True when this rank can read member `m`'s private memory directly (a thread of
    /// this process, or a process that allows `process_vm_readv`).
    pub fn can_read_directly(&self, m: usize) -> bool {
        self.direct.get(m).is_some_and(|d| *d != Direct::No)
    }

    /// True when member `m` is a thread of this process.
    pub fn reads_in_process(&self, m: usize) -> bool {
        self.direct.get(m) == Some(&Direct::SameProcess)
    }

    /// True when this rank can read every other member's private memory directly.
    pub fn reads_every_member_directly(&self) -> bool {
        (0..self.members()).all(|m| self.can_read_directly(m))
    }

    /// True when every member is a thread of this process.
    pub fn every_member_in_process(&self) -> bool {
        (0..self.members()).all(|m| self.reads_in_process(m))
    }

    /// Publishes where this rank's buffer `which` (0: input, 1: output) for the
    /// current operation lies, for the members that read it directly: they read it
    /// after this rank's next [`post`](Self::post).
    pub(crate) fn publish_source(&self, which: usize, at: shared::Placement, addr: u64) {
        let (a, b) = match at {
            shared::Placement::Shared { id, offset } => (id + 1, offset),
            shared::Placement::Private => (0, addr),
        };
        let w = &header(&self.regions[self.index]).op_source.0[2 * which..2 * which + 2];
        w[0].store(a, Ordering::Relaxed);
        w[1].store(b, Ordering::Release);
    }

    /// What member `m` last published with [`publish_source`](Self::publish_source)
    /// for buffer `which`: the shared allocation and offset, or the private address.
    pub(crate) fn published_source(&self, m: usize, which: usize) -> (Option<u64>, u64) {
        let w = &header(&self.regions[m]).op_source.0[2 * which..2 * which + 2];
        let b = w[1].load(Ordering::Acquire);
        let a = w[0].load(Ordering::Relaxed);
        (a.checked_sub(1), b)
    }

    /// Copies `out.len()` bytes from address `addr` of member `m`'s memory into `out`
    /// (one copy: plain loads between threads, `process_vm_readv` between processes).
    /// The member must keep those bytes unchanged until it learns the copy is done.
    pub fn read_directly(&self, m: usize, addr: u64, out: &mut [u8]) -> Result<()> {
        match self.direct.get(m) {
            Some(Direct::SameProcess) => {
                // SAFETY: `addr` is the address of a buffer of this process that the
                // member (a thread) published for exactly this read and keeps valid and
                // unmodified until we report completion; `out` is ours and does not
                // overlap it (a buffer cannot be both a pending send and a receive).
                unsafe { crate::copy::copy(out.as_mut_ptr(), addr as *const u8, out.len()) };
                Ok(())
            }
            Some(Direct::Cma(pid)) => crate::shm::cma::CmaRead {
                pid: *pid,
                addr,
                len: out.len(),
                peer: self.peers[m].0.clone(),
            }
            .read_all(out),
            _ => Err(TransportError::Unavailable(format!(
                "direct reads of {}'s memory are not allowed",
                self.peer_name(m)
            ))),
        }
    }

    pub(crate) fn region(&self, m: usize) -> &Arc<Region> {
        &self.regions[m]
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        self.close();
    }
}

fn header(region: &Region) -> &Header {
    // SAFETY: every window region is at least one page long and page aligned; the
    // header holds only atomics; the borrow cannot outlive the region.
    unsafe { &*(region.ptr() as *const Header) }
}

fn init_header(region: &Region, layout: &Layout, index: usize, pid: u32) {
    let h = header(region);
    h.version.store(VERSION, Ordering::Relaxed);
    h.members.store(layout.members as u32, Ordering::Relaxed);
    h.index.store(index as u32, Ordering::Relaxed);
    h.owner_pid.store(pid, Ordering::Relaxed);
    h.data_bytes
        .store(layout.data_bytes as u64, Ordering::Relaxed);
    h.ring_bytes
        .store(layout.ring_bytes as u64, Ordering::Relaxed);
    h.magic.store(MAGIC, Ordering::Release);
}

/// Validates a peer's window against the geometry every member must share; returns
/// the owner's pid.
fn check_header(
    region: &Region,
    layout: &Layout,
    index: usize,
) -> std::result::Result<u32, GeometryError> {
    if region.len() < PAGE {
        return Err(GeometryError::TooSmall {
            what: "window",
            len: region.len(),
            needed: PAGE,
        });
    }
    let h = header(region);
    if h.magic.load(Ordering::Acquire) != MAGIC {
        return Err(GeometryError::BadMagic { what: "window" });
    }
    let got = (
        h.version.load(Ordering::Relaxed),
        h.members.load(Ordering::Relaxed) as usize,
        h.index.load(Ordering::Relaxed) as usize,
        h.data_bytes.load(Ordering::Relaxed) as usize,
        h.ring_bytes.load(Ordering::Relaxed) as usize,
    );
    let want = (
        VERSION,
        layout.members,
        index,
        layout.data_bytes,
        layout.ring_bytes,
    );
    if got != want {
        return Err(GeometryError::Differs {
            what: "window (version, members, index, data bytes, ring bytes)",
            peer: format!("{got:?}"),
            here: format!("{want:?}"),
            hint: "TUTTI_WINDOW_BYTES and TUTTI_P2P_RING_BYTES must be equal on every rank",
        });
    }
    if region.len() < layout.total() {
        return Err(GeometryError::TooSmall {
            what: "window",
            len: region.len(),
            needed: layout.total(),
        });
    }
    Ok(h.owner_pid.load(Ordering::Relaxed))
}

/// Windows between threads of one process: heap blocks handed out by a hub, one set
/// per group name.
#[derive(Default)]
pub struct WindowHub {
    sets: Mutex<HashMap<String, Vec<Option<Arc<Region>>>>>,
    cv: Condvar,
}

impl WindowHub {
    /// A new, empty hub.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// This thread rank's window in the set `key` (member `index` of `names.len()`);
    /// waits until every member has joined.
    pub fn join(
        &self,
        key: &str,
        index: usize,
        names: &[String],
        cfg: &WindowConfig,
        deadline: Deadline,
    ) -> Result<Window> {
        let members = names.len();
        let me_name = names.get(index).map_or("(this rank)", String::as_str);
        cfg.validate().map_err(|g| geometry_err(me_name, g))?;
        let layout = Layout {
            members,
            data_bytes: cfg.data_bytes,
            ring_bytes: cfg.ring_bytes,
        };
        let region = Region::heap(layout.total()).ok_or_else(|| {
            setup_err(
                me_name,
                format!("allocating a {}-byte window", layout.total()),
            )
        })?;
        init_header(&region, &layout, index, std::process::id());
        let mut sets = self.sets.lock().unwrap_or_else(|p| p.into_inner());
        {
            let set = sets
                .entry(key.to_string())
                .or_insert_with(|| vec![None; members]);
            if set.len() != members || set[index].is_some() {
                return Err(setup_err(
                    me_name,
                    format!(
                        "window set {key:?} joined twice as member {index} or with another size"
                    ),
                ));
            }
            set[index] = Some(Arc::new(region));
        }
        self.cv.notify_all();
        let regions = loop {
            let set = &sets[key];
            if set.iter().all(Option::is_some) {
                break set.iter().flatten().cloned().collect::<Vec<_>>();
            }
            if deadline.expired() {
                let missing = set.iter().position(Option::is_none).unwrap_or(0);
                return Err(TransportError::Timeout {
                    peer: names[missing].clone(),
                    op: "window setup (waiting for every thread rank to join)",
                    waited: deadline.waited(),
                });
            }
            sets = self
                .cv
                .wait_timeout(sets, Duration::from_millis(10))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        };
        // The last member to take the set removes it, so the key can be reused.
        header(&regions[index])
            .attached
            .fetch_add(1, Ordering::AcqRel);
        let taken: u32 = regions
            .iter()
            .map(|r| header(r).attached.load(Ordering::Acquire))
            .sum();
        if taken as usize == members {
            sets.remove(key);
        }
        drop(sets);
        for (m, r) in regions.iter().enumerate() {
            check_header(r, &layout, m).map_err(|g| geometry_err(&names[m], g))?;
        }
        Ok(Window {
            index,
            regions,
            layout,
            peers: names
                .iter()
                .map(|n| (Arc::from(n.as_str()), Liveness::SameProcess))
                .collect(),
            direct: vec![Direct::SameProcess; members],
            budget: cfg.budget,
            abort: cfg.abort.clone(),
            rounds: AtomicU64::new(0),
        })
    }
}
