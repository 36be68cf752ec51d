//! Shared-memory links: ranks on one host, in different processes ([`connect`]) or
//! threads of one process ([`InprocHub`]).
//!
//! Each direction is a FIFO of slots (see `fifo.rs`) in a `/dev/shm` segment
//! created by the receiving rank and mapped by the sending rank; the name is
//! exchanged through a [`Rendezvous`] and unlinked as soon as both sides mapped it
//! (nothing leaks, whoever crashes later). Waits spin, then yield, then sleep on a
//! futex in the segment ([`WaitPolicy`]). A receiver reduces straight out of the
//! sender's slot. Messages of at least [`ShmConfig::single_copy_from`] bytes are
//! not copied through slots: the receiver reads them from the sender's memory with
//! `process_vm_readv` (one copy), when the kernel allows it (checked at setup).
//! A peer process that dies is noticed through a pidfd within 10 ms.

pub(crate) mod cma;
mod endpoint;
mod fifo;
mod region;
pub(crate) mod segment;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use fifo::FifoConfig;
pub use segment::{list_segments, sweep_stale_segments};

use endpoint::Liveness;
pub(crate) use endpoint::{Consumer, Producer};
use fifo::Fifo;
pub(crate) use region::Region;

use crate::link::Link;
use crate::wait::{AbortHandle, WaitPolicy};
use crate::{Deadline, Rendezvous, Result, TransportError};

/// Settings of shared-memory links.
#[derive(Clone, Debug)]
pub struct ShmConfig {
    /// FIFO geometry per direction.
    pub fifo: FifoConfig,
    /// Messages of at least this many bytes use the single-copy path (`None`: never).
    pub single_copy_from: Option<usize>,
    /// How waits spin and sleep.
    pub policy: WaitPolicy,
    /// Aborts every wait of the links made with this config.
    pub abort: AbortHandle,
}

impl ShmConfig {
    /// Defaults for `local_ranks` ranks on this host, overridden by
    /// `TUTTI_SHM_SLOTS`, `TUTTI_SHM_SLOT_BYTES`, `TUTTI_SHM_CHECKSUM=1` and
    /// `TUTTI_SHM_SINGLE_COPY_BYTES` (a size turns the single-copy path on; 0 or unset
    /// leaves it off, see [`DEFAULT_SINGLE_COPY_FROM`]).
    pub fn from_env(local_ranks: usize) -> Self {
        let mut fifo = FifoConfig::default();
        if let Some(v) = env_parse::<u32>("TUTTI_SHM_SLOTS") {
            fifo.slots = v;
        }
        if let Some(v) = env_parse::<u32>("TUTTI_SHM_SLOT_BYTES") {
            fifo.slot_size = v;
        }
        if let Some(v) = env_parse::<u32>("TUTTI_SHM_CHECKSUM") {
            fifo.checksum = v != 0;
        }
        let single_copy_from = match env_parse::<usize>("TUTTI_SHM_SINGLE_COPY_BYTES") {
            None => DEFAULT_SINGLE_COPY_FROM,
            Some(0) => None,
            Some(v) => Some(v),
        };
        ShmConfig {
            fifo,
            single_copy_from,
            policy: WaitPolicy::for_local_ranks(local_ranks),
            abort: AbortHandle::new(),
        }
    }
}

/// The single-copy path is off by default: on the 2-vCPU VM this project is measured
/// on, `process_vm_readv` moved 3.7-4.4 GB/s for 2-128 MiB messages while the slot
/// FIFO moved 13.6-41 GB/s (bench/RESULTS.md, "Point to point"). Set
/// `TUTTI_SHM_SINGLE_COPY_BYTES` to a size to turn it on where page pinning is cheap.
pub const DEFAULT_SINGLE_COPY_FROM: Option<usize> = None;

fn env_parse<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok()?.trim().parse().ok()
}

/// Connects this rank (`me`) with `peer` on the same host, in another process.
/// Both ranks call it with the same `prefix` (unique per job and group); `peer_name`
/// describes the peer in errors.
pub fn connect(
    rdv: &dyn Rendezvous,
    prefix: &str,
    me: usize,
    peer: usize,
    peer_name: &str,
    cfg: &ShmConfig,
    deadline: Deadline,
) -> Result<Link> {
    let setup = |detail: String| TransportError::Setup {
        peer: peer_name.to_string(),
        detail,
    };
    cfg.fifo.validate().map_err(setup)?;
    sweep_stale_segments();

    // 1. Our incoming FIFO (peer -> me), created and initialised here.
    let name = segment::segment_name(prefix, peer, me);
    let fd = segment::create(&name, cfg.fifo.region_bytes())
        .map_err(|e| TransportError::io(peer_name, format!("creating shared memory {name}"), e))?;
    let guard = segment::UnlinkGuard::new(name.clone());
    let region = Region::map(std::os::fd::AsFd::as_fd(&fd), cfg.fifo.region_bytes())
        .map_err(|e| TransportError::io(peer_name, format!("mapping {name}"), e))?;
    drop(fd);
    let incoming = Fifo::init(Arc::new(region), cfg.fifo);
    incoming
        .header()
        .consumer_pid
        .store(std::process::id(), Ordering::Release);
    rdv.publish(&key(prefix, peer, me), name.as_bytes())
        .map_err(|e| setup(format!("publishing the segment name: {e}")))?;

    // 2. Its outgoing FIFO (me -> peer), created by the peer.
    let out_name = rdv
        .lookup(&key(prefix, me, peer), deadline)
        .map_err(|e| setup(format!("waiting for the peer's segment name: {e}")))?;
    let out_name =
        String::from_utf8(out_name).map_err(|_| setup("segment name is not UTF-8".into()))?;
    let (ofd, olen) = segment::open(&out_name).map_err(|e| {
        TransportError::io(
            peer_name,
            format!("opening the peer's shared memory {out_name}"),
            e,
        )
    })?;
    let oregion = Region::map(std::os::fd::AsFd::as_fd(&ofd), olen)
        .map_err(|e| TransportError::io(peer_name, format!("mapping {out_name}"), e))?;
    drop(ofd);
    let outgoing = Fifo::open(Arc::new(oregion)).map_err(setup)?;
    let oh = outgoing.header();
    oh.probe_addr
        .store(&cma::PROBE as *const u64 as u64, Ordering::Relaxed);
    oh.producer_pid.store(std::process::id(), Ordering::Relaxed);
    oh.attached.store(1, Ordering::Release);
    let consumer_pid = oh.consumer_pid.load(Ordering::Acquire) as i32;

    // 3. Wait for the peer to map ours, then drop the name: the memory now lives
    //    exactly as long as the two mappings.
    let ih = incoming.header();
    while ih.attached.load(Ordering::Acquire) == 0 {
        if deadline.expired() {
            return Err(TransportError::Timeout {
                peer: peer_name.to_string(),
                op: "shared-memory setup (waiting for the peer to map its segment)",
                waited: deadline.waited(),
            });
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    drop(guard);
    let producer_pid = ih.producer_pid.load(Ordering::Acquire) as i32;
    let probe_addr = ih.probe_addr.load(Ordering::Acquire);
    let can_read = cfg.single_copy_from.is_some() && cma::probe(producer_pid, probe_addr);
    ih.single_copy
        .store(if can_read { 1 } else { 2 }, Ordering::Release);
    tracing::debug!(
        peer = peer_name,
        segment_in = name,
        segment_out = out_name,
        single_copy = can_read,
        "shared-memory link up"
    );

    let peer_arc: Arc<str> = Arc::from(peer_name);
    let tx = Producer {
        fifo: outgoing,
        peer: peer_arc.clone(),
        policy: cfg.policy,
        abort: cfg.abort.clone(),
        shared: true,
        liveness: liveness(consumer_pid),
        tail: 0,
        head_seen: 0,
        reserved: None,
        single_copy_from: cfg.single_copy_from,
        corrupt_next: false,
        cut: false,
    };
    let rx = Consumer {
        fifo: incoming,
        peer: peer_arc,
        policy: cfg.policy,
        abort: cfg.abort.clone(),
        shared: true,
        liveness: liveness(producer_pid),
        head: 0,
        tail_seen: 0,
        remote: None,
    };
    Ok(Link {
        tx: Box::new(tx),
        rx: Box::new(rx),
    })
}

fn key(prefix: &str, from: usize, to: usize) -> String {
    format!("{prefix}/shm/{from}->{to}")
}

fn liveness(pid: i32) -> Liveness {
    crate::liveness::of_process(pid)
}

/// Connects ranks that are threads of one process with in-memory FIFOs (the same
/// data path as [`connect`], without segments or pids).
pub struct InprocHub {
    cfg: ShmConfig,
    pending: Mutex<HashMap<(usize, usize), Arc<Region>>>,
}

impl InprocHub {
    /// A hub whose links use `cfg` (its single-copy setting is ignored).
    pub fn new(cfg: ShmConfig) -> Arc<Self> {
        Arc::new(InprocHub {
            cfg,
            pending: Mutex::new(HashMap::new()),
        })
    }

    /// The link from `me` to `peer`; both threads call this once.
    pub fn connect(&self, me: usize, peer: usize, peer_name: &str) -> Result<Link> {
        self.cfg
            .fifo
            .validate()
            .map_err(|detail| TransportError::Setup {
                peer: peer_name.to_string(),
                detail,
            })?;
        let outgoing = self.take(me, peer)?;
        let incoming = self.take(peer, me)?;
        let peer_arc: Arc<str> = Arc::from(peer_name);
        let tx = Producer {
            fifo: outgoing,
            peer: peer_arc.clone(),
            policy: self.cfg.policy,
            abort: self.cfg.abort.clone(),
            shared: false,
            liveness: Liveness::SameProcess,
            tail: 0,
            head_seen: 0,
            reserved: None,
            single_copy_from: None,
            corrupt_next: false,
            cut: false,
        };
        let rx = Consumer {
            fifo: incoming,
            peer: peer_arc,
            policy: self.cfg.policy,
            abort: self.cfg.abort.clone(),
            shared: false,
            liveness: Liveness::SameProcess,
            head: 0,
            tail_seen: 0,
            remote: None,
        };
        Ok(Link {
            tx: Box::new(tx),
            rx: Box::new(rx),
        })
    }

    /// The FIFO for `from -> to`: created by whichever end asks first, handed to
    /// the second and forgotten.
    fn take(&self, from: usize, to: usize) -> Result<Fifo> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(region) = pending.remove(&(from, to)) {
            return Fifo::open(region).map_err(|detail| TransportError::Setup {
                peer: format!("rank {to}"),
                detail,
            });
        }
        let region = Arc::new(Region::heap(self.cfg.fifo.region_bytes()).ok_or_else(|| {
            TransportError::Setup {
                peer: format!("rank {to}"),
                detail: "allocating the in-process FIFO failed".into(),
            }
        })?);
        pending.insert((from, to), region.clone());
        Ok(Fifo::init(region, self.cfg.fifo))
    }
}

/// Makes a connected pair of in-process links (`a` talks to `b`), for tests and for
/// a rank talking to itself.
pub fn inproc_pair(cfg: ShmConfig) -> Result<(Link, Link)> {
    let hub = InprocHub::new(cfg);
    Ok((
        hub.connect(0, 1, "rank 1 (in-process)")?,
        hub.connect(1, 0, "rank 0 (in-process)")?,
    ))
}
