//! The transport registry: every way two ranks can reach each other, one entry per
//! transport, tried in priority order (NCCL's `ncclTransports[]`).
//!
//! An entry ([`Transport`]) says what it is called (the name `TUTTI_TRANSPORT`
//! selects it by), what it gives ([`Shape`]: the peer-mapped window a host's ranks
//! share, or a point-to-point [`Link`]), whether it can connect two ranks of a
//! [`Topology`] (and why not), what a link costs the tuner ([`LinkCost`]), and how
//! this rank opens its endpoint ([`Transport::open`]) and connects a peer through it
//! ([`Endpoint::connect`]).
//!
//! [`TRANSPORTS`] lists the entries in priority order: the same-host window, shared
//! memory FIFO links, RDMA (built with the `rdma` feature; usable where a device
//! is), TCP. A [`Selection`] (from `TUTTI_TRANSPORT`: `auto`, or one entry's name)
//! narrows the list; for each pair of ranks the first selected link-shaped entry
//! that can connect them is used, and the window joins the ranks of this host when
//! the selection keeps it. Every rank computes the same choices from the same
//! exchanged [`Topology`], so both ends of a pair always agree.
//!
//! Adding a transport is one file implementing [`Transport`] (and [`Endpoint`]) and
//! one line in [`TRANSPORTS`].

#[cfg(feature = "rdma")]
mod rdma;
mod shm;
mod tcp;
mod window;

use std::sync::Arc;

use crate::shm::InprocHub;
use crate::wait::AbortHandle;
use crate::{Deadline, Link, Rendezvous, Result, TransportError};

pub use window::{WindowSpec, join_window};

/// Every transport, in priority order: for each pair of ranks the first selected
/// entry that can connect them wins.
pub static TRANSPORTS: &[&dyn Transport] = &[
    &window::Window,
    &shm::Shm,
    #[cfg(feature = "rdma")]
    &rdma::Rdma,
    &tcp::Tcp,
];

/// The entry called `name` (case-insensitive), if it is registered (built).
pub fn find(name: &str) -> Option<&'static dyn Transport> {
    let name = name.trim();
    TRANSPORTS
        .iter()
        .copied()
        .find(|t| t.name().eq_ignore_ascii_case(name))
}

/// The names of the registered entries, in priority order.
pub fn names() -> Vec<&'static str> {
    TRANSPORTS.iter().map(|t| t.name()).collect()
}

/// What an entry connects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A window every rank of one host maps (the intra-node algorithms run on it).
    Window,
    /// A point-to-point link per pair of ranks (ring, tree and the p2p engine).
    Link,
}

/// Cost of one message hop and of one byte on a link, for the tuner's alpha-beta
/// model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkCost {
    /// Seconds per message hop.
    pub alpha: f64,
    /// Seconds per byte.
    pub beta: f64,
}

impl LinkCost {
    /// Shared memory, measured on a 2-core host: ~1 us per hop when ranks have
    /// their own cores (more when they share), ~8 GB/s through a FIFO.
    pub fn shm(oversubscribed: bool) -> Self {
        LinkCost {
            alpha: if oversubscribed { 5e-6 } else { 1e-6 },
            beta: 1.0 / 8e9,
        }
    }

    /// TCP: ~15 us per hop, ~3 GB/s (loopback; slower networks only change the
    /// balance further towards the ring for large messages).
    pub fn tcp() -> Self {
        LinkCost {
            alpha: 15e-6,
            beta: 1.0 / 3e9,
        }
    }

    /// The worse of two costs, term by term (the bottleneck of a schedule whose
    /// steps cross both links).
    pub fn worst(self, other: LinkCost) -> LinkCost {
        LinkCost {
            alpha: self.alpha.max(other.alpha),
            beta: self.beta.max(other.beta),
        }
    }

    /// Seconds to move `bytes` in `messages` hops.
    pub fn time(self, messages: f64, bytes: f64) -> f64 {
        messages * self.alpha + bytes * self.beta
    }
}

/// What one rank told the others about itself at group creation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// Host identity: ranks with equal ids can share memory.
    pub host: String,
    /// CPU cores of its host.
    pub cores: usize,
    /// The registered entries it can open (see [`Transport::usable_here`]).
    pub usable: Vec<String>,
}

impl PeerInfo {
    /// This rank on host `host`: its cores and the entries it can open.
    pub fn here(host: &str) -> PeerInfo {
        PeerInfo {
            host: host.to_string(),
            cores: crate::cores(),
            usable: TRANSPORTS
                .iter()
                .filter(|t| match t.usable_here() {
                    Ok(()) => true,
                    Err(why) => {
                        tracing::debug!(transport = t.name(), %why, "transport not usable here");
                        false
                    }
                })
                .map(|t| t.name().to_string())
                .collect(),
        }
    }

    /// Whether this rank can open entry `name`.
    pub fn can_use(&self, name: &str) -> bool {
        self.usable.iter().any(|u| u == name)
    }

    /// The form published through the rendezvous (one line each: host, cores,
    /// usable entries separated by commas).
    pub fn encode(&self) -> String {
        format!(
            "{}\n{}\n{}",
            self.host.replace('\n', " "),
            self.cores,
            self.usable.join(",")
        )
    }

    /// Parses [`encode`](Self::encode)'s form; a bare host id (an older peer)
    /// reads as a host with one core and every entry usable.
    pub fn decode(s: &str) -> PeerInfo {
        let mut lines = s.splitn(3, '\n');
        let host = lines.next().unwrap_or_default().to_string();
        let cores = lines.next().and_then(|c| c.trim().parse().ok());
        let usable = lines.next().map(|u| {
            u.split(',')
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect()
        });
        PeerInfo {
            host,
            cores: cores.unwrap_or(1),
            usable: usable.unwrap_or_else(|| names().into_iter().map(str::to_string).collect()),
        }
    }
}

/// The ranks of a group as the registry sees them: every rank's [`PeerInfo`], in
/// group rank order, identical on every rank.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// One entry per group rank.
    pub peers: Vec<PeerInfo>,
    /// The ranks are threads of one process (links between them are in-process
    /// FIFOs, windows are heap blocks).
    pub threads: bool,
}

impl Topology {
    /// Number of ranks.
    pub fn size(&self) -> usize {
        self.peers.len()
    }

    /// Whether ranks `a` and `b` share a host.
    pub fn same_host(&self, a: usize, b: usize) -> bool {
        self.peers[a].host == self.peers[b].host
    }

    /// Number of ranks on rank `a`'s host.
    pub fn ranks_on_host_of(&self, a: usize) -> usize {
        (0..self.size()).filter(|&r| self.same_host(a, r)).count()
    }

    /// Whether the ranks on rank `a`'s host outnumber its cores.
    pub fn oversubscribed(&self, a: usize) -> bool {
        self.ranks_on_host_of(a) > self.peers[a].cores.max(1)
    }

    /// Whether [`oversubscribed`](Self::oversubscribed) holds for any rank (counted
    /// once per host, not once per rank: group creation calls it on every rank).
    pub fn any_oversubscribed(&self) -> bool {
        let mut ranks: std::collections::HashMap<&str, usize> = Default::default();
        for p in &self.peers {
            *ranks.entry(p.host.as_str()).or_default() += 1;
        }
        self.peers
            .iter()
            .any(|p| ranks[p.host.as_str()] > p.cores.max(1))
    }

    /// The topology of a sub-group: `ranks[i]` of this one is rank `i` of it.
    pub fn subset(&self, ranks: &[usize]) -> Topology {
        Topology {
            peers: ranks.iter().map(|&r| self.peers[r].clone()).collect(),
            threads: self.threads,
        }
    }
}

/// Everything an entry needs to open this rank's endpoint.
pub struct OpenCtx<'a> {
    /// This rank.
    pub rank: usize,
    /// Prefix of the rendezvous keys (unique per job and group).
    pub prefix: &'a str,
    /// Where the endpoints exchange their details.
    pub rdv: &'a dyn Rendezvous,
    /// The group's topology.
    pub topo: &'a Topology,
    /// Aborts every wait of the links opened here.
    pub abort: &'a AbortHandle,
    /// The in-process FIFO hub, when the ranks are threads of one process.
    pub inproc: Option<&'a Arc<InprocHub>>,
    /// What the links are for.
    pub purpose: Purpose,
}

/// What a rank's links carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// The collectives' schedules (several sockets per TCP peer, ...).
    Collectives,
    /// The point-to-point engine's bridged records (one connection per peer).
    PointToPoint,
}

/// A rank's open endpoint of one link-shaped entry (a listening socket, an open
/// RDMA device, ...), connecting peers one at a time.
pub trait Endpoint {
    /// Connects this rank with `peer`: both ranks call it (in the same global
    /// order of pairs), `peer_name` describes the peer in errors.
    fn connect(
        &mut self,
        rdv: &dyn Rendezvous,
        peer: usize,
        peer_name: &str,
        deadline: Deadline,
    ) -> Result<Link>;
}

/// One transport: a registry entry.
pub trait Transport: Sync {
    /// The name `TUTTI_TRANSPORT` selects it by (lower case).
    fn name(&self) -> &'static str;

    /// What it connects.
    fn shape(&self) -> Shape {
        Shape::Link
    }

    /// `Ok` when this rank can open it (the library was built with it, a device is
    /// there), else why not.
    fn usable_here(&self) -> std::result::Result<(), String> {
        Ok(())
    }

    /// `Ok` when it can connect ranks `a` and `b` of `topo` (a property of the
    /// pair, the same seen from either end), else why not.
    fn can_connect(&self, topo: &Topology, a: usize, b: usize) -> std::result::Result<(), String>;

    /// What one hop between `a` and `b` costs.
    fn cost(&self, topo: &Topology, a: usize, b: usize) -> LinkCost;

    /// Whether selecting this entry alone (`TUTTI_TRANSPORT=<name>`) still runs
    /// the same-host collectives on the window (shared memory does; TCP and RDMA
    /// do not, so that every byte crosses them).
    fn keeps_window(&self) -> bool {
        false
    }

    /// Opens this rank's endpoint (link-shaped entries).
    fn open(&self, ctx: &OpenCtx<'_>) -> Result<Box<dyn Endpoint>>;
}

/// The entries a group may use, in priority order (`TUTTI_TRANSPORT`).
#[derive(Clone)]
pub struct Selection {
    /// What was asked for (`auto` or an entry's name), for errors.
    requested: &'static str,
    entries: Vec<&'static dyn Transport>,
}

impl std::fmt::Debug for Selection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Selection")
            .field("requested", &self.requested)
            .field(
                "entries",
                &self.entries.iter().map(|t| t.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Selection {
    /// Every entry, in priority order.
    pub fn auto() -> Selection {
        Selection {
            requested: "auto",
            entries: TRANSPORTS.to_vec(),
        }
    }

    /// `auto` (or empty) for every entry, else the entry of that name (plus the
    /// window when the entry keeps it). An unknown name is an error listing the
    /// known ones.
    pub fn by_name(name: &str) -> Result<Selection> {
        let n = name.trim();
        if n.is_empty() || n.eq_ignore_ascii_case("auto") {
            return Ok(Selection::auto());
        }
        let Some(t) = find(n) else {
            if n.eq_ignore_ascii_case("rdma") {
                return Err(TransportError::Unavailable(
                    "TUTTI_TRANSPORT=rdma, but this build of tutti has no RDMA transport (build with the `rdma` feature)".into(),
                ));
            }
            return Err(TransportError::InvalidArgument(format!(
                "unknown transport {n:?} (TUTTI_TRANSPORT expects auto or one of: {})",
                names().join(", ")
            )));
        };
        let mut entries = Vec::new();
        if t.keeps_window() && t.shape() == Shape::Link {
            entries.extend(TRANSPORTS.iter().filter(|e| e.shape() == Shape::Window));
        }
        entries.push(t);
        Ok(Selection {
            requested: t.name(),
            entries,
        })
    }

    /// What was asked for: `auto` or an entry's name.
    pub fn requested(&self) -> &'static str {
        self.requested
    }

    /// Whether ranks on one host share the window.
    pub fn uses_window(&self) -> bool {
        self.entries.iter().any(|t| t.shape() == Shape::Window)
    }

    /// Whether the window joins ranks `a` and `b`.
    pub fn window_joins(&self, topo: &Topology, a: usize, b: usize) -> bool {
        a == b
            || self
                .entries
                .iter()
                .any(|t| t.shape() == Shape::Window && t.can_connect(topo, a, b).is_ok())
    }

    /// The group ranks in rank `me`'s window (itself included), in rank order.
    pub fn window_members(&self, topo: &Topology, me: usize) -> Vec<usize> {
        (0..topo.size())
            .filter(|&r| self.window_joins(topo, me, r))
            .collect()
    }

    /// The entry that links ranks `a` and `b`: the first selected link-shaped
    /// entry that can connect them. `None` when none can;
    /// [`link_error`](Self::link_error) says why.
    pub fn link(&self, topo: &Topology, a: usize, b: usize) -> Option<&'static dyn Transport> {
        self.entries
            .iter()
            .copied()
            .find(|t| t.shape() == Shape::Link && t.can_connect(topo, a, b).is_ok())
    }

    /// The error for a pair no selected entry can link, with every entry's reason.
    pub fn link_error(&self, topo: &Topology, a: usize, b: usize, peer: &str) -> TransportError {
        let reasons: Vec<String> = self
            .entries
            .iter()
            .filter(|t| t.shape() == Shape::Link)
            .map(|t| match t.can_connect(topo, a, b) {
                Ok(()) => format!("{}: ok", t.name()),
                Err(why) => format!("{}: {why}", t.name()),
            })
            .collect();
        TransportError::Setup {
            peer: peer.to_string(),
            detail: format!(
                "no transport of TUTTI_TRANSPORT={} can connect rank {a} (host {}) and rank {b} (host {}) ({})",
                self.requested,
                topo.peers[a].host,
                topo.peers[b].host,
                reasons.join("; ")
            ),
        }
    }

    /// The cost of one hop on the link between `a` and `b` (+inf for a pair no
    /// selected entry links).
    pub fn cost(&self, topo: &Topology, a: usize, b: usize) -> LinkCost {
        match self.link(topo, a, b) {
            Some(t) => t.cost(topo, a, b),
            None => LinkCost {
                alpha: f64::INFINITY,
                beta: f64::INFINITY,
            },
        }
    }
}

/// Connects this rank to each rank `p` of `peers` (its link-shaped entry per
/// [`Selection::link`]), pair by pair in increasing peer order, opening each entry's
/// endpoint the first time it is needed. Returns the links in `peers` order.
pub fn connect_links(
    sel: &Selection,
    ctx: &OpenCtx<'_>,
    peers: &[usize],
    name: &dyn Fn(usize) -> String,
    deadline: Deadline,
) -> Result<Vec<(usize, Link, &'static str)>> {
    let me = ctx.rank;
    // Every endpoint is opened (and published) before the first connect, so that a
    // peer waiting on this rank's address finds it whatever the pair order.
    let mut chosen = Vec::with_capacity(peers.len());
    for &p in peers {
        let t = sel
            .link(ctx.topo, me, p)
            .ok_or_else(|| sel.link_error(ctx.topo, me, p, &name(p)))?;
        chosen.push((p, t));
    }
    let mut endpoints: Vec<(&'static str, Box<dyn Endpoint>)> = Vec::new();
    for (_, t) in &chosen {
        if !endpoints.iter().any(|(n, _)| n == &t.name()) {
            endpoints.push((t.name(), t.open(ctx)?));
        }
    }
    let mut out = Vec::with_capacity(chosen.len());
    for (p, t) in chosen {
        let ep = endpoints
            .iter_mut()
            .find(|(n, _)| *n == t.name())
            .map(|(_, e)| e)
            .ok_or_else(|| TransportError::InvalidArgument(format!("{} not opened", t.name())))?;
        let link = ep.connect(ctx.rdv, p, &name(p), deadline)?;
        tracing::debug!(rank = me, peer = p, transport = t.name(), "link connected");
        out.push((p, link, t.name()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo(hosts: &[&str]) -> Topology {
        Topology {
            peers: hosts
                .iter()
                .map(|h| PeerInfo {
                    host: h.to_string(),
                    cores: 2,
                    usable: names().into_iter().map(str::to_string).collect(),
                })
                .collect(),
            threads: false,
        }
    }

    #[test]
    fn auto_links_same_host_over_shm_and_other_hosts_over_the_network() {
        let t = topo(&["a", "a", "b"]);
        let sel = Selection::auto();
        assert_eq!(sel.link(&t, 0, 1).unwrap().name(), "shm");
        let remote = sel.link(&t, 0, 2).unwrap().name();
        assert!(remote == "tcp" || remote == "rdma", "{remote}");
        assert_eq!(sel.window_members(&t, 0), vec![0, 1]);
        assert_eq!(sel.window_members(&t, 2), vec![2]);
    }

    #[test]
    fn naming_one_transport_uses_only_it_and_keeps_the_window_only_for_shm() {
        let t = topo(&["a", "a", "b"]);
        let tcp = Selection::by_name("TCP").unwrap();
        assert_eq!(tcp.link(&t, 0, 1).unwrap().name(), "tcp");
        assert_eq!(tcp.window_members(&t, 0), vec![0]);
        let shm = Selection::by_name("shm").unwrap();
        assert_eq!(shm.window_members(&t, 0), vec![0, 1]);
        assert!(shm.link(&t, 0, 2).is_none());
        let e = shm.link_error(&t, 0, 2, "rank 2").to_string();
        assert!(
            e.contains("TUTTI_TRANSPORT=shm") && e.contains("same host"),
            "{e}"
        );
        let bad = Selection::by_name("carrier-pigeon")
            .unwrap_err()
            .to_string();
        assert!(
            bad.contains("carrier-pigeon") && bad.contains("tcp"),
            "{bad}"
        );
    }

    #[test]
    fn a_host_with_more_ranks_than_cores_is_oversubscribed() {
        // 2 cores per host.
        let t = topo(&["a", "b", "a", "a", "b"]);
        assert!(t.oversubscribed(0) && !t.oversubscribed(1));
        assert!(t.any_oversubscribed());
        let fits = topo(&["a", "b", "a", "b"]);
        assert!(!(0..4).any(|r| fits.oversubscribed(r)));
        assert!(!fits.any_oversubscribed());
    }

    #[test]
    fn rdma_needs_both_ends() {
        let mut t = topo(&["a", "b"]);
        t.peers[1].usable.retain(|u| u != "rdma");
        assert_eq!(Selection::auto().link(&t, 0, 1).unwrap().name(), "tcp");
    }

    #[test]
    fn peer_info_round_trips() {
        let p = PeerInfo {
            host: "h/1/x".into(),
            cores: 8,
            usable: vec!["window".into(), "tcp".into()],
        };
        assert_eq!(PeerInfo::decode(&p.encode()), p);
        let old = PeerInfo::decode("just-a-host");
        assert_eq!(old.host, "just-a-host");
        assert!(old.can_use("tcp"));
    }
}
