//! Creating groups: from the environment (and the process-wide default group), from
//! a store, or as threads of one process; the topology exchange that decides which
//! peers share this host.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};

use tutti_transport::bridge::Bridge;
use tutti_transport::p2p::{Channel, Engine, EngineConfig, SingleCopy};
use tutti_transport::registry::{
    self, OpenCtx, PeerInfo, Purpose, Selection, Topology, WindowSpec, join_window,
};
use tutti_transport::shm::{InprocHub, ShmConfig};
use tutti_transport::window::{Window, WindowConfig, WindowHub};
use tutti_transport::{AbortHandle, Deadline, WaitBudget};

use super::collectives::HostReducer;
use super::env::JobEnv;
use super::layout::Layout;
use super::links::{LinkTable, StoreRendezvous, connect_mesh, with_faults};
use super::options::GroupOptions;
use super::paths::{LocalMap, Paths};
use super::work::Worker;
use super::{Inner, ProcessGroup};
use crate::store::{MemoryStore, Store, TcpStore};
use crate::{DataType, Error, ReduceOp, Result};

/// State shared by the thread ranks of one in-process job: the FIFO hubs of its
/// groups, by group name.
pub(crate) struct ThreadJob {
    hubs: Mutex<HashMap<String, Arc<InprocHub>>>,
    windows: Arc<WindowHub>,
}

impl ThreadJob {
    fn hub(&self, name: &str, abort: &AbortHandle, size: usize) -> Arc<InprocHub> {
        let mut hubs = self.hubs.lock().unwrap_or_else(|p| p.into_inner());
        hubs.entry(name.to_string())
            .or_insert_with(|| {
                let mut cfg = ShmConfig::from_env(size);
                cfg.abort = abort.clone();
                InprocHub::new(cfg)
            })
            .clone()
    }
}

/// This host as the transports see it: ranks with equal ids can share memory.
///
/// `TUTTI_HOST_ID`, when set, is the id itself: ranks that set the same value are
/// taken to share a host (its `/dev/shm` and process table), ranks that set
/// different values to be on different hosts. Containers or network namespaces on
/// one machine use it to stand for several hosts (or to declare that they share
/// memory). Otherwise the id is the node name, the boot id and the mount namespace.
pub(crate) fn host_id() -> String {
    if let Ok(id) = std::env::var("TUTTI_HOST_ID")
        && !id.trim().is_empty()
    {
        return format!("id:{}", id.trim());
    }
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let link = |p: &str| {
        std::fs::read_link(p)
            .map(|s| s.display().to_string())
            .unwrap_or_default()
    };
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    format!(
        "{host}/{}/{}",
        read("/proc/sys/kernel/random/boot_id"),
        link("/proc/self/ns/mnt")
    )
}

/// This rank's window among the group's ranks on this host (see
/// [`registry::join_window`]). Each host's window has its own rendezvous prefix (the
/// group's name and the host's lowest rank) so that several hosts' windows never
/// read each other's keys.
fn connect_window(
    spec: &Spec,
    local: &LocalMap,
    local_ranks: usize,
    abort: &AbortHandle,
    deadline: Deadline,
) -> tutti_transport::Result<Arc<Window>> {
    let mut cfg = WindowConfig::from_env(local_ranks);
    cfg.abort = abort.clone();
    if let Some(b) = spec.opts.window_bytes {
        cfg.data_bytes = b;
    }
    let names: Vec<String> = local
        .members
        .iter()
        .map(|&r| format!("rank {r} of group {}", spec.name))
        .collect();
    let prefix = if local.members.len() == spec.global_ranks.len() {
        spec.name.clone()
    } else {
        format!("{}/host{}", spec.name, local.members[0])
    };
    let window_spec = WindowSpec {
        prefix: &prefix,
        names: &names,
        index: local.member_of(spec.rank).unwrap_or(0),
        cfg: &cfg,
        threads: spec.threads.as_ref().map(|j| &j.windows),
    };
    join_window(&window_spec, &StoreRendezvous(&*spec.store), deadline)
}

/// How the window's all_reduce runs, the same on every member: from which size
/// two-shot (the first member's `TUTTI_TWO_SHOT_FROM`, else the host probe's
/// measurement, cached per host), and whether two-shot reads the members' inputs
/// directly (only if every member can and wants to). Passed around on the window's
/// small-message lines: a u64 max of the first member's size and the others' zeros,
/// and of each member's "cannot read directly" flag. Each rank deciding for itself
/// let ranks pick different algorithms when their measurements differed (the probe
/// is not cached while the host is busy, so every process measured its own):
/// one-shot's post then satisfied two-shot's second wait, and both ranks hung one
/// call later.
pub(super) fn agree_window_plan(
    window: &Window,
    forced: Option<usize>,
    direct: super::options::DirectReads,
    deadline: Deadline,
) -> tutti_transport::Result<WindowAgreement> {
    let n = window.members();
    if n < 2 {
        return Ok(WindowAgreement {
            two_shot_from: forced.unwrap_or(usize::MAX),
            direct: false,
        });
    }
    let from: u64 = if window.index() == 0 {
        forced.unwrap_or_else(|| super::probe::window_crossover(n).two_shot_from) as u64
    } else {
        0
    };
    let can = match direct {
        super::options::DirectReads::Off => false,
        super::options::DirectReads::InProcess => window.every_member_in_process(),
        super::options::DirectReads::All => window.reads_every_member_directly(),
    };
    let cannot = u64::from(!can);
    let reducer = HostReducer::new(DataType::U64, ReduceOp::Max, n)
        .map_err(|e| tutti_transport::TransportError::InvalidArgument(e.to_string()))?;
    let mut agreed = [from, cannot];
    super::small::all_reduce(
        window,
        &reducer,
        None,
        bytemuck::cast_slice_mut(&mut agreed),
        deadline,
    )?;
    Ok(WindowAgreement {
        two_shot_from: usize::try_from(agreed[0]).unwrap_or(usize::MAX),
        direct: agreed[1] == 0,
    })
}

/// What the window's members agreed on at group creation ([`agree_window_plan`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct WindowAgreement {
    /// All_reduces from this size run two-shot.
    pub two_shot_from: usize,
    /// Two-shot reads the members' inputs directly.
    pub direct: bool,
}

/// Messages to ranks on this host up to a 32nd of the point-to-point ring travel
/// eagerly (16 KiB with the default 512 KiB ring; `TUTTI_P2P_EAGER_BYTES` overrides
/// this and [`EAGER_BRIDGED_RING_FRACTION`]), so that a burst of 16
/// such messages each way takes at most half the ring. With 64 KiB (an eighth), 16
/// messages of 32 KiB filled the ring and the sender waited on a receiver that was
/// itself sending: 4 ranks on 2 cores (Zen 3), bidirectional 32 KiB 1.7-2.2 GB/s
/// against 4.3-5.6 at 16 KiB; with a 32nd, 5.1-5.7 (bench/RESULTS.md, issue 18).
const EAGER_RING_FRACTION: usize = 32;

/// The eager limit for a ring of `ring_bytes`: [`EAGER_RING_FRACTION`] of it, within
/// 4 KiB..64 KiB.
fn default_eager(ring_bytes: usize) -> usize {
    (ring_bytes / EAGER_RING_FRACTION).clamp(4 << 10, 64 << 10)
}

/// Peers over a bridged link (another host) take messages up to an eighth of the
/// ring eagerly (64 KiB with the default ring): there the request-to-send round trip
/// crosses a writer and a reader thread on each side, and an eager message that finds
/// no receive waits on the heap, not in the ring. TCP, 2 ranks on 2 cores (Zen 3),
/// `tutti-p2p`, half round trip at 64 KiB: 152-176 us with 16 KiB, 73-76 with 64 KiB
/// (one way 0.94-0.97 -> 1.68-1.95 GB/s); 256 KiB eagerly gained nothing; 4 ranks
/// bidirectional 32-64 KiB no slower (bench/RESULTS.md, issue 17, "Eleventh session").
const EAGER_BRIDGED_RING_FRACTION: usize = 8;

/// The point-to-point engine: rings in the window for the ranks on this host, rings
/// bridged to a link (the registry's pick for the pair: TCP, RDMA) for the others.
fn connect_engine(
    spec: &Spec,
    (topo, sel): (&Topology, &Selection),
    local: &LocalMap,
    window: &Arc<Window>,
    local_ranks: usize,
    deadline: Deadline,
) -> tutti_transport::Result<Engine> {
    let size = spec.global_ranks.len();
    let names: Vec<String> = (0..size)
        .map(|r| format!("rank {r} of group {}", spec.name))
        .collect();
    let mut channels: Vec<Option<Channel>> = (0..size).map(|_| None).collect();
    for (p, c) in channels.iter_mut().enumerate() {
        if p == spec.rank {
            continue;
        }
        if let Some(m) = local.member_of(p) {
            *c = Some(Channel::Window {
                tx: window.ring_writer(m),
                rx: window.ring_reader(m),
                member: m,
            });
        }
    }
    let remote: Vec<usize> = (0..size)
        .filter(|&p| p != spec.rank && local.member_of(p).is_none())
        .collect();
    if !remote.is_empty() {
        let abort = AbortHandle::new();
        let rdv = StoreRendezvous(&*spec.store);
        let ctx = OpenCtx {
            rank: spec.rank,
            prefix: &spec.name,
            rdv: &rdv,
            topo,
            abort: &abort,
            inproc: None,
            purpose: Purpose::PointToPoint,
        };
        let name = |p: usize| names[p].clone();
        for (p, link, _) in registry::connect_links(sel, &ctx, &remote, &name, deadline)? {
            let link = with_faults(spec.rank, link)?;
            let max_payload = tutti_transport::bridge::max_payload(
                link.tx.max_message().min(link.rx.max_message()),
            );
            let bridge = Bridge::start(
                link,
                window.ring_bytes(),
                window.p2p_doorbell(),
                abort.clone(),
            )?;
            channels[p] = Some(Channel::Bridged {
                bridge: Box::new(bridge),
                max_payload,
            });
        }
    }
    let eager_env: Option<usize> = std::env::var("TUTTI_P2P_EAGER_BYTES")
        .ok()
        .and_then(|v| v.trim().parse().ok());
    let eager_max = eager_env.unwrap_or_else(|| default_eager(window.ring_bytes()));
    let eager_max_bridged = eager_env.unwrap_or(window.ring_bytes() / EAGER_BRIDGED_RING_FRACTION);
    let single_copy = SingleCopy::from_env();
    let cfg = EngineConfig {
        eager_max,
        eager_max_bridged,
        single_copy,
        chunk: (window.ring_bytes() / 4).max(4096),
        budget: WaitBudget::for_local_ranks(local_ranks),
    };
    Ok(Engine::new(
        spec.rank,
        names,
        channels,
        window.p2p_doorbell(),
        Some(window.clone()),
        cfg,
    ))
}

/// Everything needed to build one member of a group.
pub(crate) struct Spec {
    pub store: Arc<dyn Store>,
    pub name: String,
    pub rank: usize,
    pub global_ranks: Vec<usize>,
    /// What the members told each other (host, cores, usable transports), when
    /// already known (threads, sub-groups).
    pub peers: Option<Vec<PeerInfo>>,
    pub threads: Option<Arc<ThreadJob>>,
    pub opts: GroupOptions,
}

/// Builds a group member: exchanges host ids if needed and connects the links.
pub(crate) fn build(spec: Spec) -> Result<ProcessGroup> {
    let size = spec.global_ranks.len();
    if spec.rank >= size {
        return Err(Error::InvalidArgument(format!(
            "rank {} is outside a group of {size}",
            spec.rank
        )));
    }
    let deadline = Deadline::after(spec.opts.connect_timeout);
    let sel = spec.opts.transport.selection()?;
    let peers = match spec.peers.clone() {
        Some(p) => p,
        None => exchange_peers(
            &*spec.store,
            &spec.name,
            spec.rank,
            size,
            spec.opts.connect_timeout,
        )?,
    };
    let topo = Topology {
        peers,
        threads: spec.threads.is_some(),
    };
    let layout = Layout::new(&topo, &sel);
    // Ranks sharing this host (the wait budgets), whether or not they share the window.
    let local_ranks = topo.ranks_on_host_of(spec.rank);
    let abort = AbortHandle::new();
    let setup = |source| Error::Setup {
        rank: spec.rank,
        source,
    };
    // The window's members: the ranks the registry joins to this one (only this
    // rank when the selected transport does not keep the window, so that every
    // byte crosses it).
    let local = LocalMap {
        members: layout.hosts[layout.host_of[spec.rank]].clone(),
    };
    let window = connect_window(&spec, &local, local_ranks, &abort, deadline).map_err(setup)?;
    let agreed = agree_window_plan(
        &window,
        spec.opts.two_shot_from,
        spec.opts.window_direct,
        deadline,
    )
    .map_err(setup)?;
    // Links: to every peer when some are outside the window, or when a link
    // algorithm is forced.
    let needs_links =
        local.members.len() < size || spec.opts.algo.is_some_and(super::options::Algo::uses_links);
    let links = if needs_links && size > 1 {
        let hub = spec
            .threads
            .as_ref()
            .map(|job| job.hub(&spec.name, &abort, size));
        connect_mesh(
            &*spec.store,
            &spec.name,
            spec.rank,
            &topo,
            &sel,
            hub.as_ref(),
            &abort,
            deadline,
        )
        .map_err(setup)?
    } else {
        LinkTable::empty(size)
    };
    let transports: Vec<Option<&'static str>> = (0..size)
        .map(
            |p| match (p == spec.rank, local.member_of(p), links.transports[p]) {
                (true, _, _) => None,
                (false, Some(_), _) => Some("window"),
                (false, None, t) => t,
            },
        )
        .collect();
    let engine = connect_engine(&spec, (&topo, &sel), &local, &window, local_ranks, deadline)
        .map_err(setup)?;
    tracing::debug!(group = %spec.name, rank = spec.rank, size, "process group connected");
    let timeout = spec.opts.timeout;
    Ok(ProcessGroup {
        inner: Arc::new(Inner {
            rank: spec.rank,
            size,
            global_ranks: spec.global_ranks,
            topo,
            layout,
            name: spec.name,
            store: spec.store,
            paths: Mutex::new(Paths {
                links,
                window: Some(window.clone()),
            }),
            window: Some(window),
            local,
            engine: Arc::new(engine),
            scope: Mutex::new(None),
            seq: AtomicU64::new(0),
            failed: Mutex::new(None),
            has_failed: std::sync::atomic::AtomicBool::new(false),
            abort,
            opts: spec.opts,
            worker: Worker::new(),
            threads: spec.threads,
            subgroups: AtomicU64::new(0),
            transports,
            local_ranks,
            window_plan: agreed,
            shared: Default::default(),
            device: Default::default(),
        }),
        timeout,
    })
}

/// Publishes this rank's [`PeerInfo`] (host id, cores, usable transports) and
/// reads every member's.
fn exchange_peers(
    store: &dyn Store,
    name: &str,
    rank: usize,
    size: usize,
    timeout: std::time::Duration,
) -> Result<Vec<PeerInfo>> {
    let key = |r: usize| format!("{name}/host/{r}");
    store.set(&key(rank), PeerInfo::here(&host_id()).encode().as_bytes())?;
    let keys: Vec<String> = (0..size).map(key).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    store.wait(&refs, Some(timeout))?;
    Ok(store
        .multi_get(&refs)?
        .into_iter()
        .map(|v| PeerInfo::decode(&String::from_utf8_lossy(&v)))
        .collect())
}

impl ProcessGroup {
    /// A group of all `world_size` ranks that rendezvous through `store` (every rank
    /// passes a store reaching the same keys). `name` distinguishes groups sharing
    /// one store ("default" for the job's main group).
    pub fn from_store(
        store: Arc<dyn Store>,
        rank: usize,
        world_size: usize,
        name: &str,
        opts: GroupOptions,
    ) -> Result<Self> {
        if world_size == 0 {
            return Err(Error::InvalidArgument(
                "world_size must be at least 1".into(),
            ));
        }
        build(Spec {
            store,
            name: format!("tutti/{name}"),
            rank,
            global_ranks: (0..world_size).collect(),
            peers: None,
            threads: None,
            opts,
        })
    }

    /// `n` ranks as threads of this process: returns one group handle per rank, to
    /// be moved into its thread. Links are in-process FIFOs (or TCP over loopback
    /// with `opts.transport = Tcp`, which then needs every rank's thread running).
    pub fn threads(n: usize, opts: GroupOptions) -> Result<Vec<ProcessGroup>> {
        Self::threads_on_hosts(&vec![0; n], opts)
    }

    /// Threads of this process standing for ranks on several hosts: rank `r` is on
    /// pretend host `hosts[r]`. Ranks on one pretend host share a window and
    /// in-process FIFOs; ranks on different ones reach each other over TCP on
    /// loopback, as on separate machines. For exercising the multi-host paths
    /// (hierarchical collectives) in one process.
    pub fn threads_on_hosts(hosts: &[usize], opts: GroupOptions) -> Result<Vec<ProcessGroup>> {
        let n = hosts.len();
        if n == 0 {
            return Err(Error::InvalidArgument(
                "a group needs at least 1 rank".into(),
            ));
        }
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let job = Arc::new(ThreadJob {
            hubs: Mutex::new(HashMap::new()),
            windows: WindowHub::new(),
        });
        let host = host_id();
        let distinct = hosts.iter().any(|&h| h != hosts[0]);
        let peers: Vec<PeerInfo> = hosts
            .iter()
            .map(|h| {
                if distinct {
                    PeerInfo::here(&format!("{host}/pretend-{h}"))
                } else {
                    PeerInfo::here(&host)
                }
            })
            .collect();
        // Build the members concurrently: TCP links need every rank connecting.
        let built: Vec<Result<ProcessGroup>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..n)
                .map(|r| {
                    let (store, job, peers, opts) =
                        (store.clone(), job.clone(), peers.clone(), opts.clone());
                    scope.spawn(move || {
                        build(Spec {
                            store,
                            name: "tutti/threads".into(),
                            rank: r,
                            global_ranks: (0..n).collect(),
                            peers: Some(peers),
                            threads: Some(job),
                            opts,
                        })
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::InvalidArgument(
                            "building a thread rank panicked".into(),
                        ))
                    })
                })
                .collect()
        });
        built.into_iter().collect()
    }

    /// Runs `f` on `n` threads, each with its rank's group, and returns their
    /// results in rank order; a panicking rank is an error naming it.
    pub fn run_threads<R: Send + 'static>(
        n: usize,
        opts: GroupOptions,
        f: impl Fn(ProcessGroup) -> R + Send + Sync + 'static,
    ) -> Result<Vec<R>> {
        let groups = Self::threads(n, opts)?;
        let f = Arc::new(f);
        let handles: Vec<_> = groups
            .into_iter()
            .map(|g| {
                let f = f.clone();
                let r = g.rank();
                std::thread::Builder::new()
                    .name(format!("tutti-rank-{r}"))
                    .spawn(move || f(g))
                    .map_err(|e| Error::InvalidArgument(format!("spawning rank {r}'s thread: {e}")))
            })
            .collect::<Result<_>>()?;
        handles
            .into_iter()
            .enumerate()
            .map(|(r, h)| {
                h.join().map_err(|p| {
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    Error::InvalidArgument(format!("rank {r}'s thread panicked: {msg}"))
                })
            })
            .collect()
    }

    /// The job's group, from the environment (see [`JobEnv::from_env`]): rank 0
    /// serves the TCP store on `MASTER_ADDR:MASTER_PORT` (unless a launcher already
    /// does, `TORCHELASTIC_USE_AGENT_STORE=True`), every rank connects to it with the
    /// job token `TUTTI_JOB_TOKEN`.
    pub fn from_env(opts: GroupOptions) -> Result<Self> {
        let env = JobEnv::from_env()?;
        let agent_store = std::env::var("TORCHELASTIC_USE_AGENT_STORE")
            .is_ok_and(|v| v.eq_ignore_ascii_case("true"));
        let store = TcpStore::builder(env.master_addr.clone(), env.master_port)
            .master(env.rank == 0 && !agent_store)
            .timeout(opts.connect_timeout)
            .connect()?;
        tracing::info!(
            rank = env.rank,
            world_size = env.world_size,
            source = env.source,
            "process group from the environment"
        );
        Self::from_store(Arc::new(store), env.rank, env.world_size, "default", opts)
    }
}

fn default_slot() -> &'static Mutex<Option<ProcessGroup>> {
    static SLOT: OnceLock<Mutex<Option<ProcessGroup>>> = OnceLock::new();
    SLOT.get_or_init(|| Mutex::new(None))
}

/// Initialises the process-wide default group from the environment (torch's
/// `init_process_group`) with options from `TUTTI_*` variables. A second call
/// without [`destroy_default_group`] is an error.
pub fn init() -> Result<ProcessGroup> {
    let mut slot = default_slot().lock().unwrap_or_else(|p| p.into_inner());
    if slot.is_some() {
        return Err(Error::InvalidArgument(
            "the default process group is already initialized (call destroy_default_group() first)"
                .into(),
        ));
    }
    let g = ProcessGroup::from_env(GroupOptions::from_env()?)?;
    *slot = Some(g.clone());
    Ok(g)
}

/// The default group, if [`init`] was called.
pub fn default_group() -> Option<ProcessGroup> {
    default_slot()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// Forgets the default group (its links close when the last handle is dropped).
pub fn destroy_default_group() {
    default_slot()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
}
