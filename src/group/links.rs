//! The group's links: one [`Link`] per peer, connected at group creation over the
//! transport the registry picks for the pair, and the [`Links`] views the schedules
//! use (all ranks, or a renumbered subset).

use std::sync::Arc;
use std::time::Duration;

use tutti_transport::registry::{self, OpenCtx, Purpose, Selection, Topology};
use tutti_transport::shm::InprocHub;
use tutti_transport::{
    AbortHandle, Deadline, Injected, Link, Links, RecvHalf, Rendezvous, RendezvousError, SendHalf,
    TransportError,
};

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

/// One link per peer (none to self).
pub(crate) struct LinkTable {
    links: Vec<Option<Link>>,
    /// The smallest `max_message` over the links of every rank of the group (the
    /// same on every rank, so that the ranks agree on pipeline chunks).
    pub max_message: usize,
    /// The registry entry of each link.
    pub transports: Vec<Option<&'static str>>,
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
            transports: vec![None; size],
        }
    }
}

/// The links of a subset of the group's ranks, renumbered: rank `i` of the view is
/// group rank `ranks[i]` (the leaders of a hierarchical schedule).
pub(crate) struct SubLinks<'a> {
    pub links: &'a mut LinkTable,
    pub ranks: &'a [usize],
}

impl Links for SubLinks<'_> {
    fn pair(
        &mut self,
        to: usize,
        from: usize,
    ) -> tutti_transport::Result<(&mut dyn SendHalf, &mut dyn RecvHalf)> {
        let at = |i: usize| {
            self.ranks.get(i).copied().ok_or_else(|| {
                TransportError::InvalidArgument(format!(
                    "rank {i} is outside a sub-schedule of {} ranks",
                    self.ranks.len()
                ))
            })
        };
        let (to, from) = (at(to)?, at(from)?);
        self.links.pair(to, from)
    }
}

/// Connects this rank to every other member over the transport the registry picks
/// for the pair, pair by pair in the global order of `(min rank, max rank)`, which no
/// two ranks can wait on in a cycle; then agrees with the others on the largest
/// message every link carries.
#[allow(clippy::too_many_arguments)]
pub(crate) fn connect_mesh(
    store: &dyn Store,
    prefix: &str,
    rank: usize,
    topo: &Topology,
    sel: &Selection,
    inproc: Option<&Arc<InprocHub>>,
    abort: &AbortHandle,
    deadline: Deadline,
) -> tutti_transport::Result<LinkTable> {
    let size = topo.size();
    let rdv = StoreRendezvous(store);
    let name = |p: usize| format!("rank {p} of group {prefix}");
    let ctx = OpenCtx {
        rank,
        prefix,
        rdv: &rdv,
        topo,
        abort,
        inproc,
        purpose: Purpose::Collectives,
    };
    let peers: Vec<usize> = (0..size).filter(|&p| p != rank).collect();
    let mut links: Vec<Option<Link>> = (0..size).map(|_| None).collect();
    let mut transports = vec![None; size];
    for (p, link, t) in registry::connect_links(sel, &ctx, &peers, &name, deadline)? {
        links[p] = Some(with_faults(rank, link)?);
        transports[p] = Some(t);
    }
    let mine = links
        .iter()
        .flatten()
        .map(|l| l.tx.max_message().min(l.rx.max_message()))
        .min()
        .unwrap_or(1 << 20);
    let max_message = agree_on_min(store, prefix, rank, size, mine, deadline)?;
    Ok(LinkTable {
        links,
        max_message,
        transports,
    })
}

/// The smallest of every rank's `value`, exchanged through the store.
fn agree_on_min(
    store: &dyn Store,
    prefix: &str,
    rank: usize,
    size: usize,
    value: usize,
    deadline: Deadline,
) -> tutti_transport::Result<usize> {
    let key = |r: usize| format!("{prefix}/max_message/{r}");
    let err = |source| TransportError::Rendezvous {
        peer: "(all)".into(),
        step: "agreeing on the largest link message",
        source: Box::new(source),
    };
    StoreRendezvous(store)
        .publish(&key(rank), value.to_string().as_bytes())
        .map_err(err)?;
    let keys: Vec<String> = (0..size).map(key).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let timeout = match deadline.remaining() {
        None => Duration::ZERO,
        Some(r) if r.is_zero() => {
            return Err(err(RendezvousError::Timeout {
                key: keys[0].clone(),
            }));
        }
        Some(r) => r,
    };
    store
        .wait(&refs, Some(timeout))
        .map_err(|e| err(store_error(&keys[0], e)))?;
    let values = store
        .multi_get(&refs)
        .map_err(|e| err(store_error(&keys[0], e)))?;
    let mut min = value;
    for (r, v) in values.iter().enumerate() {
        let v: usize =
            String::from_utf8_lossy(v)
                .trim()
                .parse()
                .map_err(|_| TransportError::Setup {
                    peer: format!("rank {r} of group {prefix}"),
                    detail: "its largest link message does not parse".into(),
                })?;
        min = min.min(v);
    }
    Ok(min)
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
