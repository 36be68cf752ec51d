//! Rendezvous between launchers: rounds of membership over a [`Store`], whichever
//! backend provides it (static: a TCP store on node rank 0; store: a TCP store on the
//! endpoint's host; etcd: keys in etcd; a single launcher: an in-memory store).
//!
//! A round `r` (keys under `r<r>/`) works like this:
//! - a launcher joins by adding 1 to `joined` (its join order, `seq`), then writes a
//!   keep-alive `hb/<seq>` and its [`NodeInfo`] under `node/<seq>`;
//! - the round closes (`closed` = member count, set once by compare-and-set) when MAX
//!   launchers joined, or when at least MIN did and the last-call window has passed;
//!   launchers whose `seq` is beyond `closed` wait for the next round;
//! - every member reads all [`NodeInfo`]s and computes the same rank assignment; the
//!   first launcher in group order serves a fresh TCP store for the round's workers
//!   and publishes it under `store`.
//!
//! While workers run, each launcher refreshes its keep-alive and watches the others:
//! a newer round (another launcher restarts), a launcher waiting to join while there
//! is room, or a member whose keep-alive stopped all make the members stop their
//! workers and join the next round (`round` holds the newest round number). After a
//! worker failure, the first launcher to claim the round's `outcome` decides for all:
//! restart (adding 1 to the job-wide `restarts` counter, the next round's
//! `TORCHELASTIC_RESTART_COUNT`) or, with no restarts left, shut the job down
//! (`shutdown` holds the reason).

mod etcd;
mod static_;
mod store;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::assign::{NodeAssignment, NodeInfo, assign, group_order};
use super::config::{LaunchConfig, NNodes, RdzvBackend, RdzvOptions, split_host_port};
use super::env::WorkerStore;
use super::signals::SignalGuard;
use crate::{LaunchError, Result};
use tutti_store::{MemoryStore, Store, TcpStoreServer};

/// Why a launcher stops what it is doing.
#[derive(Debug)]
pub(crate) enum Halt {
    /// An error.
    Error(LaunchError),
    /// The launcher received this signal.
    Signal(i32),
    /// Another launcher shut the job down, for this reason.
    Shutdown(String),
}

impl From<LaunchError> for Halt {
    fn from(e: LaunchError) -> Self {
        Halt::Error(e)
    }
}

impl From<tutti_store::StoreError> for Halt {
    fn from(e: tutti_store::StoreError) -> Self {
        Halt::Error(e.into())
    }
}

/// What the launchers decided after a worker failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Start the group again.
    Restart,
    /// Give up.
    Fail,
}

/// How often rendezvous waits look at the store.
const POLL: Duration = Duration::from_millis(25);
/// How often a running round looks at the store (at most).
const WATCH_EVERY: Duration = Duration::from_millis(100);

/// A launcher's membership in the job's rendezvous.
pub(crate) struct Rendezvous {
    store: Box<dyn Store>,
    /// The TCP store this launcher serves for the others (static and store backends).
    _server: Option<TcpStoreServer>,
    backend: RdzvBackend,
    nnodes: NNodes,
    opts: RdzvOptions,
    me: NodeInfo,
    /// Whether this launcher is the job's only one (no keep-alives needed).
    single: bool,
    /// Bind the workers' store to loopback only.
    loopback: bool,
    /// The workers' token when the user gave one.
    token: Option<String>,
    /// Which c10d clients the workers' store accepts.
    c10d: tutti_store::C10dAccess,
}

/// One round this launcher is a member of.
pub(crate) struct Round {
    /// The round number.
    pub number: u64,
    /// This launcher's join order in it.
    pub seq: u64,
    /// The members in join order.
    pub members: Vec<NodeInfo>,
    /// This launcher's assignment.
    pub assignment: NodeAssignment,
    /// Failure restarts before this round.
    pub restart_count: u32,
    /// The workers' store.
    pub store: WorkerStore,
    /// The workers' store server, on the round's first launcher.
    pub _worker_server: Option<TcpStoreServer>,
    last_watch: Instant,
    beat: u64,
    last_beat: Instant,
    /// Per member seq: the last keep-alive value seen and when it changed.
    peers: HashMap<u64, (Vec<u8>, Instant)>,
}

fn k(round: u64, key: &str) -> String {
    format!("r{round}/{key}")
}

fn parse_u64(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// A random hex token (for the workers' store of a round).
fn random_token() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok();
    if !ok {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes.copy_from_slice(&(t ^ u128::from(std::process::id())).to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The token launchers present to a TCP rendezvous store.
fn rendezvous_token(cfg: &LaunchConfig) -> String {
    cfg.job_token
        .clone()
        .or_else(|| {
            std::env::var(tutti_store::JOB_TOKEN_ENV)
                .ok()
                .filter(|t| !t.is_empty())
        })
        .unwrap_or_else(|| format!("tutti-rdzv-{}", cfg.run_id))
}

fn rdzv_error(backend: RdzvBackend, message: impl Into<String>) -> LaunchError {
    LaunchError::Rendezvous {
        backend: backend.name(),
        message: message.into(),
    }
}

impl Rendezvous {
    /// Connects to (or starts) the configured rendezvous.
    pub(crate) fn open(cfg: &LaunchConfig) -> Result<Self> {
        let single = cfg.is_single_launcher();
        let endpoint_host = if single {
            None
        } else {
            Some(match (&cfg.rdzv_endpoint, cfg.rdzv_backend) {
                (Some(ep), _) => split_host_port(ep, 0)?.0,
                (None, RdzvBackend::Static) => cfg.master_addr.clone(),
                (None, _) => "localhost".into(),
            })
        };
        let loopback = match (&cfg.local_addr, &endpoint_host) {
            (Some(a), _) => is_loopback_host(a),
            (None, None) => true,
            (None, Some(h)) => is_loopback_host(h),
        };
        let addr = match &cfg.local_addr {
            Some(a) => a.clone(),
            None if loopback => "127.0.0.1".into(),
            None => hostname(),
        };
        let token = rendezvous_token(cfg);
        let (store, server): (Box<dyn Store>, Option<TcpStoreServer>) = if single {
            (Box::new(MemoryStore::new()), None)
        } else {
            match cfg.rdzv_backend {
                RdzvBackend::Static => static_::open(cfg, &token)?,
                RdzvBackend::Store => store::open(cfg, &token)?,
                RdzvBackend::Etcd => etcd::open(cfg)?,
            }
        };
        let me = NodeInfo {
            role: cfg.role.clone(),
            local_world_size: cfg.nproc_per_node,
            node_rank: cfg.node_rank,
            seq: 0,
            host: hostname(),
            addr,
            pid: std::process::id(),
        };
        Ok(Rendezvous {
            store,
            _server: server,
            backend: if single {
                RdzvBackend::Static
            } else {
                cfg.rdzv_backend
            },
            nnodes: if single { NNodes::fixed(1) } else { cfg.nnodes },
            opts: cfg.rdzv.clone(),
            me,
            single,
            loopback,
            token: cfg.job_token.clone().or_else(|| {
                std::env::var(tutti_store::JOB_TOKEN_ENV)
                    .ok()
                    .filter(|t| !t.is_empty())
            }),
            c10d: cfg.c10d_store,
        })
    }

    /// This launcher's description (its `seq` is that of the last round joined).
    pub(crate) fn me(&self) -> &NodeInfo {
        &self.me
    }

    fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        if !self.store.check(&[key])? {
            return Ok(None);
        }
        Ok(parse_u64(&self.store.get(key)?))
    }

    fn current_round(&self) -> Result<u64> {
        Ok(parse_u64(&self.store.compare_set("round", b"", b"0")?).unwrap_or(0))
    }

    /// Moves the job to round `r + 1` (if it still is at `r`).
    fn bump(&self, r: u64) -> Result<()> {
        self.store.compare_set(
            "round",
            r.to_string().as_bytes(),
            (r + 1).to_string().as_bytes(),
        )?;
        Ok(())
    }

    fn check_halt(&self, signals: &SignalGuard) -> std::result::Result<(), Halt> {
        if let Some(sig) = signals.pending() {
            return Err(Halt::Signal(sig));
        }
        if self.store.check(&["shutdown"])? {
            let reason = String::from_utf8_lossy(&self.store.get("shutdown")?).into_owned();
            return Err(Halt::Shutdown(reason));
        }
        Ok(())
    }

    /// Joins the next round (after round `after`, if given) and waits until it is
    /// formed and its workers' store is known.
    pub(crate) fn next_round(
        &mut self,
        after: Option<u64>,
        signals: &SignalGuard,
    ) -> std::result::Result<Round, Halt> {
        let started = Instant::now();
        let join_timeout = self.opts.join_timeout;
        let timed_out = |what: String| -> Halt {
            Halt::Error(rdzv_error(
                self.backend,
                format!("{what} within the join timeout of {join_timeout:?}"),
            ))
        };
        let mut r = self.current_round()?.max(after.map_or(0, |a| a + 1));
        'join: loop {
            self.check_halt(signals)?;
            let seq = self.store.add(&k(r, "joined"), 1)? as u64;
            self.me.seq = seq;
            self.store.set(&k(r, &format!("hb/{seq}")), b"0")?;
            let desc = serde_json::to_vec(&self.me).map_err(|e| {
                rdzv_error(self.backend, format!("encoding this launcher's entry: {e}"))
            })?;
            self.store.set(&k(r, &format!("node/{seq}")), &desc)?;
            tracing::info!(round = r, seq, backend = %self.backend, "joined rendezvous round");

            // Wait for the round to close.
            let mut min_seen: Option<Instant> = None;
            let closed = loop {
                self.check_halt(signals)?;
                if let Some(c) = self.get_u64(&k(r, "closed"))? {
                    break c;
                }
                let cur = self.current_round()?;
                if cur > r {
                    r = cur;
                    continue 'join;
                }
                let n = self.store.add(&k(r, "joined"), 0)? as u64;
                let (min, max) = (self.nnodes.min as u64, self.nnodes.max as u64);
                let close_with = if n >= max {
                    Some(max)
                } else if n >= min {
                    let since = *min_seen.get_or_insert_with(Instant::now);
                    (since.elapsed() >= self.opts.last_call_timeout).then_some(n)
                } else {
                    None
                };
                if let Some(c) = close_with {
                    let v =
                        self.store
                            .compare_set(&k(r, "closed"), b"", c.to_string().as_bytes())?;
                    break parse_u64(&v).unwrap_or(c);
                }
                if started.elapsed() > join_timeout {
                    return Err(timed_out(format!(
                        "rendezvous round {r}: only {n} of at least {min} launchers joined"
                    )));
                }
                std::thread::sleep(POLL);
            };

            if seq > closed {
                tracing::info!(
                    round = r,
                    "rendezvous round {r} is closed; waiting for the next one"
                );
                loop {
                    self.check_halt(signals)?;
                    let cur = self.current_round()?;
                    if cur > r {
                        r = cur;
                        continue 'join;
                    }
                    std::thread::sleep(POLL * 4);
                }
            }

            // The members and their assignment.
            let keys: Vec<String> = (1..=closed).map(|s| k(r, &format!("node/{s}"))).collect();
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            loop {
                self.check_halt(signals)?;
                if self.store.check(&refs)? {
                    break;
                }
                if started.elapsed() > join_timeout {
                    return Err(timed_out(format!(
                        "rendezvous round {r}: not every member wrote its entry"
                    )));
                }
                std::thread::sleep(POLL);
            }
            let members: Vec<NodeInfo> = self
                .store
                .multi_get(&refs)?
                .iter()
                .map(|v| serde_json::from_slice(v))
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| {
                    rdzv_error(
                        self.backend,
                        format!("a launcher's entry does not parse: {e}"),
                    )
                })?;
            if self.backend == RdzvBackend::Static && !self.single {
                let mut ranks: Vec<usize> = members.iter().map(|m| m.node_rank).collect();
                ranks.sort_unstable();
                if let Some(w) = ranks.windows(2).find(|w| w[0] == w[1]) {
                    return Err(Halt::Error(rdzv_error(
                        self.backend,
                        format!("two launchers have --node-rank {}", w[0]),
                    )));
                }
            }
            let me_index = members.iter().position(|m| m.seq == seq).ok_or_else(|| {
                rdzv_error(self.backend, "this launcher is missing from its round")
            })?;
            let assignment = assign(&members).swap_remove(me_index);
            let restart_count = self.store.add("restarts", 0)? as u32;

            // The workers' store: served by the first launcher in group order.
            let store_key = k(r, "store");
            let (store, worker_server) = if assignment.group_rank == 0 {
                let token = self.token.clone().unwrap_or_else(random_token);
                let bind: std::net::IpAddr = if self.loopback {
                    std::net::Ipv4Addr::LOCALHOST.into()
                } else {
                    std::net::Ipv4Addr::UNSPECIFIED.into()
                };
                let server = TcpStoreServer::bind_with_c10d((bind, 0), Some(&token), self.c10d)?;
                let ws = WorkerStore {
                    addr: self.me.addr.clone(),
                    port: server.port(),
                    token,
                };
                let json = serde_json::to_vec(&ws)
                    .map_err(|e| rdzv_error(self.backend, format!("encoding the store: {e}")))?;
                self.store.set(&store_key, &json)?;
                (ws, Some(server))
            } else {
                loop {
                    self.check_halt(signals)?;
                    if self.store.check(&[&store_key])? {
                        break;
                    }
                    if self.current_round()? > r {
                        // The round failed before it started; join the next one.
                        r = self.current_round()?;
                        continue 'join;
                    }
                    if started.elapsed() > join_timeout {
                        return Err(timed_out(format!(
                            "rendezvous round {r}: the first launcher did not publish the workers' store"
                        )));
                    }
                    std::thread::sleep(POLL);
                }
                let ws: WorkerStore = serde_json::from_slice(&self.store.get(&store_key)?)
                    .map_err(|e| {
                        rdzv_error(
                            self.backend,
                            format!("the workers' store entry does not parse: {e}"),
                        )
                    })?;
                (ws, None)
            };
            let order = group_order(&members);
            tracing::info!(
                round = r,
                group_rank = assignment.group_rank,
                group_world_size = assignment.group_world_size,
                world_size = assignment.world_size,
                restart_count,
                members = ?order.iter().map(|&i| format!("{}@{}", members[i].role, members[i].host)).collect::<Vec<_>>(),
                "rendezvous round complete"
            );
            let now = Instant::now();
            let peers = members
                .iter()
                .filter(|m| m.seq != seq)
                .map(|m| (m.seq, (b"0".to_vec(), now)))
                .collect();
            return Ok(Round {
                number: r,
                seq,
                members,
                assignment,
                restart_count,
                store,
                _worker_server: worker_server,
                last_watch: now,
                beat: 0,
                last_beat: now,
                peers,
            });
        }
    }

    fn heartbeat(&self, round: &mut Round) -> Result<()> {
        if self.single || round.last_beat.elapsed() < self.opts.keep_alive_interval {
            return Ok(());
        }
        round.beat += 1;
        round.last_beat = Instant::now();
        self.store.set(
            &k(round.number, &format!("hb/{}", round.seq)),
            round.beat.to_string().as_bytes(),
        )?;
        Ok(())
    }

    /// The members whose keep-alive stopped (and that did not finish).
    fn dead_members(&self, round: &mut Round) -> Result<Vec<u64>> {
        let seqs: Vec<u64> = round.peers.keys().copied().collect();
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = seqs
            .iter()
            .map(|s| k(round.number, &format!("hb/{s}")))
            .collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let values = self.store.multi_get(&refs)?;
        let now = Instant::now();
        let mut dead = Vec::new();
        for (seq, v) in seqs.into_iter().zip(values) {
            let entry = round.peers.entry(seq).or_insert((v.clone(), now));
            if entry.0 != v {
                *entry = (v, now);
            } else if now.duration_since(entry.1) > self.opts.dead_after()
                && !self
                    .store
                    .check(&[&k(round.number, &format!("done/{seq}"))])?
            {
                dead.push(seq);
            }
        }
        Ok(dead)
    }

    /// Called while the round's workers run: refreshes this launcher's keep-alive and
    /// returns why the round must end, if it must.
    pub(crate) fn watch(&self, round: &mut Round) -> std::result::Result<Option<String>, Halt> {
        if self.single || round.last_watch.elapsed() < WATCH_EVERY {
            return Ok(None);
        }
        round.last_watch = Instant::now();
        self.heartbeat(round)?;
        if self.store.check(&["shutdown"])? {
            let reason = String::from_utf8_lossy(&self.store.get("shutdown")?).into_owned();
            return Err(Halt::Shutdown(reason));
        }
        let r = round.number;
        if self.current_round()? > r {
            return Ok(Some(
                "another launcher started a new rendezvous round".into(),
            ));
        }
        let joined = self.store.add(&k(r, "joined"), 0)? as usize;
        if joined > round.members.len() && round.members.len() < self.nnodes.max {
            self.bump(r)?;
            return Ok(Some(format!(
                "{} launcher(s) waiting to join",
                joined - round.members.len()
            )));
        }
        let dead = self.dead_members(round)?;
        if !dead.is_empty() {
            let names: Vec<String> = round
                .members
                .iter()
                .filter(|m| dead.contains(&m.seq))
                .map(|m| format!("{} (pid {}, role {})", m.host, m.pid, m.role))
                .collect();
            self.bump(r)?;
            return Ok(Some(format!(
                "launcher(s) {} stopped sending keep-alives",
                names.join(", ")
            )));
        }
        Ok(None)
    }

    /// After this launcher's workers failed: restart (while restarts remain) or fail;
    /// the first launcher to decide for the round decides for all.
    pub(crate) fn on_failure(
        &self,
        round: &Round,
        max_restarts: u32,
        reason: &str,
    ) -> Result<Decision> {
        let r = round.number;
        let restarts = self.store.add("restarts", 0)? as u32;
        let want = if restarts < max_restarts {
            format!("restart:{}", round.seq)
        } else {
            format!("fail:{}", round.seq)
        };
        let got = self
            .store
            .compare_set(&k(r, "outcome"), b"", want.as_bytes())?;
        let decision = if got.starts_with(b"restart") {
            Decision::Restart
        } else {
            Decision::Fail
        };
        if got == want.as_bytes() {
            match decision {
                Decision::Restart => {
                    self.store.add("restarts", 1)?;
                    self.bump(r)?;
                }
                Decision::Fail => {
                    if !self.single {
                        self.store.set("shutdown", reason.as_bytes())?;
                    }
                }
            }
        }
        Ok(decision)
    }

    /// Ends the job for every launcher (best effort).
    pub(crate) fn shutdown(&self, reason: &str) {
        if !self.single
            && let Err(e) = self.store.set("shutdown", reason.as_bytes())
        {
            tracing::warn!("could not tell the other launchers to stop: {e}");
        }
    }

    /// After this launcher's workers succeeded: waits up to `timeout` for the other
    /// members to finish too. Never fails: problems are logged.
    pub(crate) fn exit_barrier(&self, round: &mut Round, timeout: Duration, signals: &SignalGuard) {
        if self.single {
            return;
        }
        let r = round.number;
        let result = (|| -> std::result::Result<(), Halt> {
            self.store
                .set(&k(r, &format!("done/{}", round.seq)), b"1")?;
            let keys: Vec<String> = round
                .members
                .iter()
                .map(|m| k(r, &format!("done/{}", m.seq)))
                .collect();
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let start = Instant::now();
            loop {
                if self.store.check(&refs)? {
                    return Ok(());
                }
                if let Some(sig) = signals.pending() {
                    return Err(Halt::Signal(sig));
                }
                if self.store.check(&["shutdown"])? {
                    return Err(Halt::Shutdown(
                        String::from_utf8_lossy(&self.store.get("shutdown")?).into_owned(),
                    ));
                }
                if self.current_round()? > r {
                    return Err(Halt::Shutdown(
                        "another launcher started a new round after this one finished".into(),
                    ));
                }
                if start.elapsed() > timeout {
                    return Err(Halt::Shutdown(format!(
                        "not every launcher finished within {timeout:?}"
                    )));
                }
                self.heartbeat(round)?;
                std::thread::sleep(POLL * 4);
            }
        })();
        match result {
            Ok(()) => tracing::debug!(round = r, "exit barrier passed"),
            Err(Halt::Error(e)) => tracing::warn!("exit barrier: {e} (the job still succeeded)"),
            Err(Halt::Signal(s)) => tracing::warn!(
                "exit barrier: interrupted by {} (the job still succeeded)",
                super::report::signal_name(s)
            ),
            Err(Halt::Shutdown(m)) => tracing::warn!("exit barrier: {m} (the job still succeeded)"),
        }
    }
}
