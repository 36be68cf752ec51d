//! `init_rpc`: the rendezvous through the store and the start of the agent.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use super::{Agent, Calls, Faults, RUNNING, Stats};
use crate::pool::Pool;
use crate::store::{FileStore, Store, TcpStore};
use crate::timer::Timer;
use crate::worker::check_name;
use crate::{Error, Result, RpcOptions, WorkerInfo};

/// What a worker publishes in the store.
#[derive(Serialize, Deserialize)]
struct WorkerRecord {
    name: String,
    host: String,
    port: u16,
    secret: [u64; 2],
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn parse_port(s: &str, what: &str) -> Result<u16> {
    s.parse()
        .map_err(|_| Error::InvalidArgument(format!("{what}: {s:?} is not a port number")))
}

/// The store `options` ask for (torch's `init_method`).
fn default_store(rank: usize, world_size: usize, options: &RpcOptions) -> Result<Arc<dyn Store>> {
    let method = options
        .init_method
        .clone()
        .unwrap_or_else(|| "env://".into());
    let tcp = |host: String, port: u16| -> Result<Arc<dyn Store>> {
        let s = TcpStore::builder(host.clone(), port)
            .master(rank == 0)
            .world_size(world_size)
            .timeout(options.init_timeout)
            .connect()
            .map_err(|e| {
                Error::store(format!("connecting to the TCP store at {host}:{port}"), e)
            })?;
        Ok(Arc::new(s))
    };
    if method == "env://" {
        let (Some(host), Some(port)) = (env("MASTER_ADDR"), env("MASTER_PORT")) else {
            return Err(Error::InvalidArgument(
                "init_rpc: no store given and MASTER_ADDR / MASTER_PORT are not set (the default init_method is env://)".into(),
            ));
        };
        tcp(host, parse_port(&port, "MASTER_PORT")?)
    } else if let Some(rest) = method.strip_prefix("tcp://") {
        let (host, port) = rest.rsplit_once(':').ok_or_else(|| {
            Error::InvalidArgument(format!("init_method {method:?}: expected tcp://host:port"))
        })?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        tcp(
            host.to_string(),
            parse_port(port, &format!("init_method {method:?}"))?,
        )
    } else if let Some(path) = method.strip_prefix("file://") {
        let s = FileStore::open_with_timeout(path, options.init_timeout)
            .map_err(|e| Error::store(format!("opening the file store {path}"), e))?;
        Ok(Arc::new(s))
    } else {
        Err(Error::InvalidArgument(format!(
            "init_method {method:?}: expected env://, tcp://host:port or file:///path"
        )))
    }
}

/// The address other workers reach this one at.
fn detect_host() -> String {
    if let Some(master) = env("MASTER_ADDR") {
        let port = env("MASTER_PORT").and_then(|p| p.parse().ok()).unwrap_or(1);
        if let Some(sa) = (master.as_str(), port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
        {
            if sa.ip().is_loopback() {
                return sa.ip().to_string();
            }
            // The interface the kernel routes to the master through.
            let bind: SocketAddr = if sa.is_ipv4() {
                (Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (Ipv6Addr::UNSPECIFIED, 0).into()
            };
            if let Ok(u) = UdpSocket::bind(bind)
                && u.connect(sa).is_ok()
                && let Ok(local) = u.local_addr()
                && !local.ip().is_unspecified()
            {
                return local.ip().to_string();
            }
        }
    }
    "127.0.0.1".to_string()
}

pub(crate) fn init(
    name: &str,
    rank: usize,
    world_size: usize,
    options: RpcOptions,
) -> Result<Arc<Agent>> {
    if world_size == 0 {
        return Err(Error::InvalidArgument(
            "init_rpc: world_size must be at least 1 (got 0)".into(),
        ));
    }
    if rank >= world_size {
        return Err(Error::InvalidArgument(format!(
            "init_rpc: rank {rank} is out of range for world_size {world_size}"
        )));
    }
    check_name(name).map_err(|m| Error::InvalidArgument(format!("init_rpc: {m}")))?;
    options.validate()?;
    let store = match &options.store {
        Some(s) => s.clone(),
        None => default_store(rank, world_size, &options)?,
    };
    // The n-th agent of each rank uses the n-th set of keys, so a job can shut RPC
    // down and start it again on the same store.
    let generation = store
        .add(&format!("tutti/rpc/generation/{rank}"), 1)
        .map_err(|e| Error::store("counting this rank's RPC agents", e))?;
    let prefix = format!("tutti/rpc/{generation}/");

    // Claim the name.
    let me = rank.to_string();
    let taken = store
        .compare_set(&format!("{prefix}name/{name}"), b"", me.as_bytes())
        .map_err(|e| Error::store("claiming the worker name", e))?;
    if taken != me.as_bytes() {
        let taken_by = String::from_utf8_lossy(&taken)
            .parse()
            .unwrap_or(usize::MAX);
        return Err(Error::DuplicateName {
            name: name.to_string(),
            taken_by,
            rank,
        });
    }

    // Listen, publish, and learn everyone's address.
    let host = options.host.clone().unwrap_or_else(detect_host);
    let bind_ip = options.bind_addr.unwrap_or(match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    });
    let listener = TcpListener::bind((bind_ip, 0))
        .map_err(|e| Error::io(format!("binding the RPC listener on {bind_ip}"), e))?;
    let listen_addr = listener
        .local_addr()
        .map_err(|e| Error::io("reading the listener's address", e))?;
    let secret: [u64; 2] = rand::random();
    let record = WorkerRecord {
        name: name.to_string(),
        host: host.clone(),
        port: listen_addr.port(),
        secret,
    };
    let bytes = postcard::to_stdvec(&record).map_err(|e| Error::Encode {
        what: "the worker record".into(),
        message: e.to_string(),
    })?;
    store
        .set(&format!("{prefix}worker/{rank}"), &bytes)
        .map_err(|e| Error::store("publishing this worker's address", e))?;
    let keys: Vec<String> = (0..world_size)
        .map(|r| format!("{prefix}worker/{r}"))
        .collect();
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    store
        .wait(&key_refs, Some(options.init_timeout))
        .map_err(|e| Error::store("waiting for every worker to publish its address", e))?;
    let values = store
        .multi_get(&key_refs)
        .map_err(|e| Error::store("reading the workers' addresses", e))?;
    let mut workers = Vec::with_capacity(world_size);
    let mut addrs = Vec::with_capacity(world_size);
    let mut secrets = Vec::with_capacity(world_size);
    let mut names = HashMap::new();
    for (r, v) in values.iter().enumerate() {
        let rec: WorkerRecord = postcard::from_bytes(v).map_err(|e| {
            Error::Protocol(format!(
                "the store's record of rank {r} does not decode: {e}"
            ))
        })?;
        if let Some(other) = names.insert(rec.name.clone(), r) {
            return Err(Error::DuplicateName {
                name: rec.name,
                taken_by: other,
                rank: r,
            });
        }
        addrs.push(if rec.host.contains(':') {
            format!("[{}]:{}", rec.host, rec.port)
        } else {
            format!("{}:{}", rec.host, rec.port)
        });
        secrets.push(rec.secret);
        workers.push(WorkerInfo {
            name: rec.name,
            id: r,
        });
    }

    let pool = Pool::new("tutti-rpc-w", options.num_worker_threads)
        .map_err(|e| Error::io("starting the RPC worker threads", e))?;
    let bg =
        Pool::new("tutti-rpc-bg", 1).map_err(|e| Error::io("starting the RPC send thread", e))?;
    let agent = Arc::new(Agent {
        me: rank,
        workers,
        addrs,
        secrets,
        my_secret: secret,
        names,
        functions: options.functions.clone(),
        faults: options.faulty.clone().map(|f| Faults {
            options: f,
            counts: Mutex::new(HashMap::new()),
        }),
        num_worker_threads: options.num_worker_threads,
        max_message: options.max_message_size,
        default_timeout_ns: AtomicU64::new(0),
        shutdown_timeout: options.shutdown_timeout,
        state: AtomicU8::new(RUNNING),
        peers: (0..world_size).map(|_| Mutex::new(None)).collect(),
        left: (0..world_size).map(|_| AtomicBool::new(false)).collect(),
        calls: Mutex::new(Calls::default()),
        next_id: AtomicU64::new(1),
        timer: Timer::new(),
        pool,
        bg,
        refs: Mutex::default(),
        refs_cv: Condvar::new(),
        stats: Stats::default(),
        threads: Mutex::new(Vec::new()),
        server_conns: Mutex::new(HashMap::new()),
        listen_addr,
        store,
        prefix,
        rpc: OnceLock::new(),
    });
    agent.set_default_timeout(options.rpc_timeout);
    let a = agent.clone();
    let started = agent
        .spawn_thread("tutti-rpc-listen".into(), move || a.listen(listener))
        .and_then(|()| {
            let a = agent.clone();
            agent.spawn_thread("tutti-rpc-timer".into(), move || {
                a.timer.run(&|now| a.expire(now))
            })
        });
    if let Err(e) = started {
        agent.stop();
        return Err(Error::io("starting the RPC threads", e));
    }
    tracing::debug!(name, rank, world_size, %host, port = listen_addr.port(), "RPC agent started");
    Ok(agent)
}
