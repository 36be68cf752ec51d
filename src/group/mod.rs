//! [`ProcessGroup`]: a communicator over a set of ranks, and the collectives on it.
//!
//! A group is created from the environment ([`init`], [`ProcessGroup::from_env`]; torchrun /
//! Slurm / Open MPI variables, rendezvous through the embedded TCP store), from a
//! [`Store`] ([`ProcessGroup::from_store`]), or as threads of one process
//! ([`ProcessGroup::threads`]). At creation the ranks of one host join a shared
//! window, and every rank connects to every other over the transport the registry
//! ([`tutti_transport::registry`]) picks for the pair: shared memory on one host
//! (in-process FIFOs between threads), RDMA or TCP between hosts; `TUTTI_TRANSPORT`
//! narrows the choice (`auto`, `shm`, `tcp`, `rdma`). With ranks on several hosts the
//! tuner can run the collectives hierarchically: inside each host on the window,
//! between one leader per host over the links.
//!
//! Operations are collective: every rank calls them in the same order. Blocking
//! calls work on borrowed slices; the `*_async` variants take owned buffers and
//! return a [`Work`] that hands them back. Every operation has a timeout (the
//! group's, 30 minutes by default, or [`ProcessGroup::with_timeout`]'s; zero means
//! none). A peer that dies, stops calling or sends corrupt data turns into
//! [`Error::Collective`] on this rank, naming the op, its sequence number and the
//! peer; the group then cuts its links (so that the other ranks fail fast too) and
//! refuses further operations with [`Error::GroupFailed`]. [`ProcessGroup::abort`]
//! unblocks every pending operation with an error.
//!
//! Bad arguments (an invalid (dtype, op) pair, a rank or root outside the group,
//! buffers whose lengths do not fit the collective) are errors before any byte
//! moves, and do not break the group.

mod asyncs;
mod check;
mod collectives;
mod device;
mod device_comm;
mod device_raw;
mod device_work;
mod env;
mod hier;
mod init;
mod layout;
mod links;
mod options;
mod p2p;
mod paths;
pub mod probe;
mod raw;
mod scope;
mod shared;
mod small;
mod subgroup;
mod tuner;
mod uneven;
mod work;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tutti_transport::p2p::Engine;
use tutti_transport::window::Window;
use tutti_transport::{AbortHandle, Deadline, TransportError};

pub use device_comm::{DEFAULT_DEVICE_WINDOW_BYTES, DEFAULT_STAGE_BYTES};
pub use device_work::DeviceWork;
pub use env::{DEFAULT_MASTER_PORT, JobEnv};
pub use init::{default_group, destroy_default_group, init};
pub use links::StoreRendezvous;
pub use options::{Algo, DEFAULT_OP_TIMEOUT, DirectReads, GroupOptions, TransportChoice};
pub use p2p::P2POp;
pub use raw::MemoryKind;
pub use scope::GroupScope;
pub use shared::SharedBuffer;
pub use tuner::{LinkCost, Plan, pick_chunk, plan_all_reduce};
pub use work::Work;

use crate::store::Store;
use crate::{Error, Result};
use paths::{LocalMap, Paths};
use work::Worker;

/// A communicator: the ranks of a job (or a subset of them) and the links between
/// them. Cheap to clone (clones share the group).
#[derive(Clone)]
pub struct ProcessGroup {
    inner: Arc<Inner>,
    timeout: Duration,
}

struct Inner {
    rank: usize,
    size: usize,
    /// The job-wide (global) rank of each member.
    global_ranks: Vec<usize>,
    /// What every member told the others (host, cores, usable transports).
    topo: tutti_transport::registry::Topology,
    /// The members grouped by host, and the link costs the tuner uses.
    layout: layout::Layout,
    /// Store key prefix of this group (unique per group in the job).
    name: String,
    store: Arc<dyn Store>,
    /// The links and the window, held by the running operation.
    paths: Mutex<Paths>,
    /// The same-host window (also in `paths`), for abort and the progress engine.
    window: Option<Arc<Window>>,
    /// Which group ranks share this host.
    local: LocalMap,
    /// The point-to-point progress engine.
    engine: Arc<Engine>,
    /// The open group scope, if any.
    scope: Mutex<Option<scope::ScopeState>>,
    seq: AtomicU64,
    failed: Mutex<Option<String>>,
    /// `failed.is_some()`, readable without the lock on the hot path.
    has_failed: std::sync::atomic::AtomicBool,
    abort: AbortHandle,
    opts: GroupOptions,
    worker: Worker,
    /// How sub-groups reach each other (threads share a hub registry).
    threads: Option<Arc<init::ThreadJob>>,
    /// Counter of sub-groups created from this group (identical on every rank).
    subgroups: AtomicU64,
    /// The transport that reaches each member ("window" for the window's).
    transports: Vec<Option<&'static str>>,
    local_ranks: usize,
    /// How window all_reduces run (agreed by the window's members at creation,
    /// [`init::agree_window_plan`]).
    window_plan: init::WindowAgreement,
    /// This rank's shared allocations ([`ProcessGroup::alloc_shared`]).
    shared: tutti_transport::window::SharedRegistry,
    /// Device collectives (created at the first one).
    device: device_comm::DeviceSlot,
}

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessGroup")
            .field("name", &self.inner.name)
            .field("rank", &self.inner.rank)
            .field("size", &self.inner.size)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ProcessGroup {
    /// This rank in the group.
    pub fn rank(&self) -> usize {
        self.inner.rank
    }

    /// Number of ranks in the group.
    pub fn size(&self) -> usize {
        self.inner.size
    }

    /// The job-wide rank of group rank `r`.
    pub fn global_rank(&self, r: usize) -> Option<usize> {
        self.inner.global_ranks.get(r).copied()
    }

    /// The group ranks that share this host (this rank included), in rank order.
    /// Collectives among them run on the same-host window.
    pub fn local_ranks(&self) -> &[usize] {
        &self.inner.local.members
    }

    /// The transport this rank reaches group rank `peer` by: `"window"` for the
    /// ranks sharing its window, the registry's name of the link otherwise (`"shm"`,
    /// `"tcp"`, `"rdma"`); `None` for itself, a rank outside the group, or a peer
    /// without a link (every collective then runs on the window).
    pub fn transport_to(&self, peer: usize) -> Option<&'static str> {
        self.inner.transports.get(peer).copied().flatten()
    }

    /// The group ranks of each host, in rank order, hosts in order of their lowest
    /// rank (one host when every rank shares this one's window).
    pub fn hosts(&self) -> &[Vec<usize>] {
        &self.inner.layout.hosts
    }

    /// The group's store-key prefix (unique per group within the job).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The store the group rendezvoused through.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The timeout this handle's operations use.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A handle to the same group whose operations use `timeout` (zero: none).
    pub fn with_timeout(&self, timeout: Duration) -> ProcessGroup {
        ProcessGroup {
            inner: self.inner.clone(),
            timeout,
        }
    }

    /// Number of operations issued so far (the next op's sequence number).
    pub fn sequence_number(&self) -> u64 {
        self.inner.seq.load(Ordering::Relaxed)
    }

    /// Unblocks every pending operation of this rank with an error (within ~10 ms)
    /// and makes the group refuse new ones.
    pub fn abort(&self) {
        self.inner.abort.abort();
        self.inner.fail("aborted by abort()".into());
        if let Some(w) = &self.inner.window {
            w.close();
        }
        self.inner.engine.fail_all(|| TransportError::Aborted {
            peer: "(all)".into(),
            op: "point-to-point (abort() was called)",
        });
        // When no operation holds the links, cut them now so that the peers fail
        // fast; otherwise the pending operation cuts them as it fails.
        if let Ok(mut paths) = self.inner.paths.try_lock() {
            paths.links.cut_all();
        }
    }

    /// The first failure, if the group is unusable.
    pub fn failure(&self) -> Option<String> {
        self.inner
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs `f` as operation `op` on this thread: refuses it if the group failed,
    /// waits for earlier asynchronous operations, gives it the links and a
    /// deadline, and turns a transport error into [`Error::Collective`] (cutting the
    /// links so the peers fail fast).
    fn run<R>(
        &self,
        op: &'static str,
        desc: check::Desc,
        f: impl FnOnce(&mut Paths, Deadline) -> std::result::Result<R, TransportError>,
    ) -> Result<R> {
        self.inner.worker.drain();
        self.inner.run(op, Some(desc), self.timeout, f)
    }
}

/// How long a failing rank waits for the others to report the same failure before
/// naming the ranks that did not ...
const FAILURE_GRACE: Duration = Duration::from_millis(1500);
/// ... unless reports are still arriving: each one keeps the wait open this long
/// after it (ranks that learn of the failure second-hand, from a leader closing
/// their window, report later on a loaded host), up to [`FAILURE_GRACE_MAX`].
const FAILURE_GRACE_EXTEND: Duration = Duration::from_millis(600);
const FAILURE_GRACE_MAX: Duration = Duration::from_millis(2500);

/// The ranks listed in a failure report key: `append`ed "r," entries.
fn reported_ranks(list: &[u8], size: usize) -> Vec<bool> {
    let mut seen = vec![false; size];
    for r in String::from_utf8_lossy(list)
        .split(',')
        .filter_map(|x| x.trim().parse::<usize>().ok())
    {
        if let Some(s) = seen.get_mut(r) {
            *s = true;
        }
    }
    seen
}

impl Inner {
    /// After op `seq` failed: reports this rank's failure through the store and
    /// returns the ranks that did not report theirs within the grace (the dead ones
    /// and the ones that never called the op). Every rank appends itself to one key
    /// per op, so a poll is one round trip whatever the group's size.
    fn missing_ranks(&self, op: &str, seq: u64) -> Vec<usize> {
        let key = format!("{}/failed/{seq}", self.name);
        if self
            .store
            .append(&key, format!("{},", self.rank).as_bytes())
            .is_err()
        {
            tracing::debug!(rank = self.rank, op, seq, "could not report the failure");
            return Vec::new();
        }
        let start = std::time::Instant::now();
        let mut until = FAILURE_GRACE;
        let mut reported = 0;
        loop {
            // The key exists: this rank appended to it.
            let seen = match self.store.get(&key) {
                Ok(list) => reported_ranks(&list, self.size),
                Err(_) => return Vec::new(),
            };
            let missing: Vec<usize> = (0..self.size).filter(|&r| !seen[r]).collect();
            if self.size - missing.len() > reported {
                reported = self.size - missing.len();
                until = until.max(start.elapsed() + FAILURE_GRACE_EXTEND);
            }
            if missing.is_empty() || start.elapsed() >= until.min(FAILURE_GRACE_MAX) {
                return missing;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn check_usable(&self) -> Result<()> {
        if !self.has_failed.load(Ordering::Acquire) {
            return Ok(());
        }
        if let Some(reason) = self
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Err(Error::GroupFailed { reason });
        }
        Ok(())
    }

    fn fail(&self, reason: String) {
        let mut f = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            tracing::warn!(group = %self.name, rank = self.rank, %reason, "process group failed");
            *f = Some(reason);
            self.has_failed.store(true, Ordering::Release);
        }
    }

    fn run<R>(
        &self,
        op: &'static str,
        desc: Option<check::Desc>,
        timeout: Duration,
        f: impl FnOnce(&mut Paths, Deadline) -> std::result::Result<R, TransportError>,
    ) -> Result<R> {
        self.check_usable()?;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        if let (true, Some(desc)) = (self.opts.check, &desc) {
            check::verify(self, op, seq, desc, timeout)?;
        }
        let deadline = Deadline::after(timeout);
        let mut paths = self.paths.lock().unwrap_or_else(|p| p.into_inner());
        tracing::trace!(group = %self.name, rank = self.rank, op, seq, "op start");
        match f(&mut paths, deadline) {
            Ok(r) => Ok(r),
            Err(source) => {
                // Cut first, so that the peers waiting on this rank fail now too.
                paths.links.cut_all();
                if let Some(w) = &paths.window {
                    w.close();
                }
                drop(paths);
                let missing_ranks = if source.is_peer_failure() {
                    self.missing_ranks(op, seq)
                } else {
                    Vec::new()
                };
                let err = Error::Collective {
                    op,
                    seq,
                    rank: self.rank,
                    source,
                    missing_ranks,
                };
                self.fail(err.to_string());
                Err(err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::reported_ranks;

    #[test]
    fn failure_reports_name_each_rank_once_and_ignore_junk() {
        assert_eq!(
            reported_ranks(b"3,0,3,", 5),
            vec![true, false, false, true, false]
        );
        // Out of range and malformed entries are skipped, not a panic.
        assert_eq!(reported_ranks(b"9,x,,1,", 2), vec![false, true]);
        assert_eq!(reported_ranks(b"", 2), vec![false, false]);
    }
}
