//! The group's links: one [`Link`] per peer, connected at group creation over the
//! transport the topology calls for, and the [`Links`] view the schedules use.

use std::sync::Arc;
use std::time::Duration;

use tutti_transport::shm::{InprocHub, ShmConfig};
use tutti_transport::tcp::{TcpConfig, TcpEndpoint};
use tutti_transport::{
    AbortHandle, Deadline, Injected, Link, Links, RecvHalf, Rendezvous, RendezvousError, SendHalf,
    TransportError,
};

use super::options::TransportChoice;
use crate::store::Store;
use tutti_transport::faulty::{FaultPlan, FaultySend};

/// Exposes a [`Store`] as the transports' [`Rendezvous`] (for setting up links of
/// your own with `tutti_transport`).
pub struct StoreRendezvous<'a>(pub &'a dyn Store);

impl Rendezvous for StoreRendezvous<'_> {
    fn publish(&self, key: &str, value: &[u8]) -> Result<(), RendezvousError> {
        self.0.set(key, value).map_err(|e| store_error(key, e))
    }

    fn lookup(&self, key: &str, deadline: Deadline) -> Result<Vec<u8>, RendezvousError> {
        let timeout = match deadline.remaining() {
            None => Duration::ZERO,
            Some(r) if r.is_zero() => {
                return Err(RendezvousError::Timeout { key: key.into() });
            }
            Some(r) => r,
        };
        self.0
            .wait(&[key], Some(timeout))
            .map_err(|e| store_error(key, e))?;
        self.0.get(key).map_err(|e| store_error(key, e))
    }
}

/// A store's timeout is the rendezvous' timeout; any other failure is kept as the
/// source.
fn store_error(key: &str, e: crate::store::StoreError) -> RendezvousError {
    match e {
        crate::store::StoreError::Timeout { .. } => RendezvousError::Timeout { key: key.into() },
        e => RendezvousError::Store {
            key: key.into(),
            source: Box::new(e),
        },
    }
}

/// How the ranks of a group reach each other.
pub(crate) enum Wiring {
    /// Threads of one process: in-process FIFOs from a shared hub.
    Threads(Arc<InprocHub>),
    /// Processes: `same_host[p]` says whether group rank `p` shares this host.
    Processes {
        same_host: Vec<bool>,
        local_ranks: usize,
    },
}

/// One link per peer (none to self).
pub(crate) struct LinkTable {
    links: Vec<Option<Link>>,
    /// The smallest `max_message` over all links.
    pub max_message: usize,
    /// Whether any link is TCP (for the tuner).
    pub any_tcp: bool,
}

impl Links for LinkTable {
    fn pair(
        &mut self,
        to: usize,
        from: usize,
    ) -> tutti_transport::Result<(&mut dyn SendHalf, &mut dyn RecvHalf)> {
        self.links.pair(to, from)
    }
}

impl LinkTable {
    /// Cuts every link so that the peers fail fast instead of waiting for data this
    /// rank will never send (after an error or an abort).
    pub(crate) fn cut_all(&mut self) {
        for l in self.links.iter_mut().flatten() {
            l.tx.inject(Injected::Cut);
        }
    }

    /// Number of peers with a link.
    pub(crate) fn connected(&self) -> usize {
        self.links.iter().flatten().count()
    }

    /// A table without links (every peer reached through the window).
    pub(crate) fn empty(size: usize) -> Self {
        LinkTable {
            links: (0..size).map(|_| None).collect(),
            max_message: 1 << 20,
            any_tcp: false,
        }
    }
}

/// Connects this rank to every other member, pair by pair in the global order of
/// `(min rank, max rank)`, which no two ranks can wait on in a cycle.
#[allow(clippy::too_many_arguments)]
pub(crate) fn connect_mesh(
    store: &dyn Store,
    prefix: &str,
    rank: usize,
    size: usize,
    wiring: &Wiring,
    choice: TransportChoice,
    abort: &AbortHandle,
    deadline: Deadline,
) -> tutti_transport::Result<LinkTable> {
    let rdv = StoreRendezvous(store);
    let name = |p: usize| format!("rank {p} of group {prefix}");
    let mut links: Vec<Option<Link>> = (0..size).map(|_| None).collect();
    let mut any_tcp = false;
    match wiring {
        Wiring::Threads(hub) if choice != TransportChoice::Tcp => {
            for p in (0..size).filter(|&p| p != rank) {
                links[p] = Some(hub.connect(rank, p, &name(p))?);
            }
        }
        _ => {
            let (same_host, local_ranks) = match wiring {
                Wiring::Processes {
                    same_host,
                    local_ranks,
                } => (same_host.clone(), *local_ranks),
                Wiring::Threads(_) => (vec![true; size], size),
            };
            let use_tcp = |p: usize| {
                choice == TransportChoice::Tcp || (choice == TransportChoice::Auto && !same_host[p])
            };
            if choice == TransportChoice::Shm
                && let Some(p) = (0..size).find(|&p| !same_host[p])
            {
                return Err(TransportError::Setup {
                    peer: name(p),
                    detail: "TUTTI_TRANSPORT=shm but this rank is on another host".into(),
                });
            }
            let mut tcp = None;
            if (0..size).any(|p| p != rank && use_tcp(p)) {
                let mut cfg = TcpConfig::from_env(local_ranks);
                cfg.abort = abort.clone();
                let ep = TcpEndpoint::bind(cfg, rank, prefix)?;
                ep.publish(&rdv)?;
                tcp = Some(ep);
                any_tcp = true;
            }
            let mut shm_cfg = ShmConfig::from_env(local_ranks);
            shm_cfg.abort = abort.clone();
            for p in (0..size).filter(|&p| p != rank) {
                let link = match (&mut tcp, use_tcp(p)) {
                    (Some(ep), true) => ep.connect(&rdv, p, &name(p), deadline)?,
                    _ => tutti_transport::shm::connect(
                        &rdv,
                        prefix,
                        rank,
                        p,
                        &name(p),
                        &shm_cfg,
                        deadline,
                    )?,
                };
                links[p] = Some(link);
            }
        }
    }
    for l in links.iter_mut() {
        if let Some(link) = l.take() {
            *l = Some(with_faults(rank, link)?);
        }
    }
    let max_message = links
        .iter()
        .flatten()
        .map(|l| l.tx.max_message().min(l.rx.max_message()))
        .min()
        .unwrap_or(1 << 20);
    Ok(LinkTable {
        links,
        max_message,
        any_tcp,
    })
}

/// Fault injection for tests: `TUTTI_FAULTS` wraps this rank's sending half (only on
/// rank `TUTTI_FAULTS_RANK` when that is set).
pub(crate) fn with_faults(rank: usize, mut link: Link) -> tutti_transport::Result<Link> {
    let faulty_rank = std::env::var("TUTTI_FAULTS_RANK")
        .ok()
        .and_then(|r| r.trim().parse::<usize>().ok());
    if faulty_rank.is_none_or(|r| r == rank)
        && let Some(plan) = FaultPlan::from_env()?
    {
        let tx = std::mem::replace(&mut link.tx, Box::new(Detached));
        link.tx = Box::new(FaultySend::new(tx, plan));
    }
    Ok(link)
}

/// A placeholder sending half, only present while a real one is being wrapped.
struct Detached;

impl SendHalf for Detached {
    fn peer(&self) -> &str {
        "(detached)"
    }
    fn max_message(&self) -> usize {
        0
    }
    fn reserve(&mut self, _len: usize, _deadline: Deadline) -> tutti_transport::Result<&mut [u8]> {
        Err(TransportError::InvalidArgument("detached link".into()))
    }
    fn commit(&mut self) -> tutti_transport::Result<()> {
        Err(TransportError::InvalidArgument("detached link".into()))
    }
}
