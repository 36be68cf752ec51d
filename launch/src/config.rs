//! [`LaunchConfig`]: everything `tutti run` is told, with torchrun's defaults, and the
//! small value types its flags parse into.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::{LaunchError, Result};

/// torchrun's default port of the `c10d`/store rendezvous endpoint.
pub const DEFAULT_RDZV_PORT: u16 = 29400;
/// etcd's default client port.
pub const DEFAULT_ETCD_PORT: u16 = 2379;

fn config_error(msg: impl Into<String>) -> LaunchError {
    LaunchError::Config(msg.into())
}

/// How launchers find each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RdzvBackend {
    /// Fixed membership: every launcher is given its `--node-rank`; the launcher with
    /// node rank 0 serves a TCP store at the endpoint (`--master-addr:--master-port`
    /// unless `--rdzv-endpoint` is given).
    Static,
    /// Dynamic membership through a TCP store: the launcher on the endpoint's host
    /// serves it, the others connect. Also accepted as `c10d` (torchrun's name).
    Store,
    /// Dynamic membership through keys in an existing etcd cluster (cargo feature
    /// `etcd`).
    Etcd,
}

impl RdzvBackend {
    /// The backend's name as the flag spells it.
    pub fn name(self) -> &'static str {
        match self {
            RdzvBackend::Static => "static",
            RdzvBackend::Store => "store",
            RdzvBackend::Etcd => "etcd",
        }
    }
}

impl fmt::Display for RdzvBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RdzvBackend {
    type Err = LaunchError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "static" => Ok(RdzvBackend::Static),
            "store" | "c10d" | "tcp" => Ok(RdzvBackend::Store),
            "etcd" | "etcd-v2" => Ok(RdzvBackend::Etcd),
            other => Err(config_error(format!(
                "unknown rendezvous backend {other:?} (expected static, store (or c10d) or etcd)"
            ))),
        }
    }
}

/// The number of launchers (nodes) a job runs on: `N` or `MIN:MAX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NNodes {
    /// The job starts once this many launchers joined (and the join window closed).
    pub min: usize,
    /// At most this many launchers take part; later ones wait for a free place.
    pub max: usize,
}

impl NNodes {
    /// Exactly `n` launchers.
    pub fn fixed(n: usize) -> Self {
        NNodes { min: n, max: n }
    }

    /// Whether membership may change (`min < max`).
    pub fn is_elastic(&self) -> bool {
        self.min < self.max
    }
}

impl fmt::Display for NNodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}:{}", self.min, self.max)
        }
    }
}

impl FromStr for NNodes {
    type Err = LaunchError;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            config_error(format!(
                "--nnodes {s:?} is not N or MIN:MAX with 1 <= MIN <= MAX"
            ))
        };
        let num = |p: &str| p.trim().parse::<usize>().map_err(|_| bad());
        let nn = match s.split_once(':') {
            None => NNodes::fixed(num(s)?),
            Some((a, b)) => NNodes {
                min: num(a)?,
                max: num(b)?,
            },
        };
        if nn.min == 0 || nn.min > nn.max {
            return Err(bad());
        }
        Ok(nn)
    }
}

/// Which of a worker's standard streams a `--redirects` / `--tee` value selects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Std {
    /// Standard output.
    pub stdout: bool,
    /// Standard error.
    pub stderr: bool,
}

impl Std {
    /// Neither stream (`0`).
    pub const NONE: Std = Std {
        stdout: false,
        stderr: false,
    };
    /// Both streams (`3`).
    pub const ALL: Std = Std {
        stdout: true,
        stderr: true,
    };

    fn from_code(code: &str) -> Option<Std> {
        Some(match code.trim() {
            "0" => Std::NONE,
            "1" => Std {
                stdout: true,
                stderr: false,
            },
            "2" => Std {
                stdout: false,
                stderr: true,
            },
            "3" => Std::ALL,
            _ => return None,
        })
    }
}

/// A `--redirects` / `--tee` value: one [`Std`] for every local rank (`3`), or a
/// value per local rank (`0:1,1:2`; ranks not named get none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StdSpec {
    /// The value of ranks not in `per_rank`.
    pub default: Std,
    /// Values for given local ranks.
    pub per_rank: BTreeMap<usize, Std>,
}

impl StdSpec {
    /// The same value for every local rank.
    pub fn all(std: Std) -> Self {
        StdSpec {
            default: std,
            per_rank: BTreeMap::new(),
        }
    }

    /// The value for `local_rank`.
    pub fn get(&self, local_rank: usize) -> Std {
        self.per_rank
            .get(&local_rank)
            .copied()
            .unwrap_or(self.default)
    }
}

impl FromStr for StdSpec {
    type Err = LaunchError;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            config_error(format!(
                "{s:?} is not a stream selection: expected 0 (none), 1 (stdout), 2 (stderr), 3 (both), or LOCAL_RANK:VALUE,... such as 0:1,1:2"
            ))
        };
        if !s.contains(':') {
            return Std::from_code(s).map(StdSpec::all).ok_or_else(bad);
        }
        let mut spec = StdSpec::default();
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let (rank, code) = part.split_once(':').ok_or_else(bad)?;
            let rank: usize = rank.trim().parse().map_err(|_| bad())?;
            spec.per_rank
                .insert(rank, Std::from_code(code).ok_or_else(bad)?);
        }
        Ok(spec)
    }
}

/// Options of the dynamic rendezvous (`--rdzv-conf key=value,...`), with torch's
/// names and defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct RdzvOptions {
    /// How long a launcher waits for a round to reach `--nnodes` MIN (`join_timeout`,
    /// also `timeout`; default 600 s).
    pub join_timeout: Duration,
    /// Once MIN launchers joined, how long the round stays open for more
    /// (`last_call_timeout`, default 30 s). A round with MAX launchers closes at once.
    pub last_call_timeout: Duration,
    /// How often a launcher proves it is alive (`keep_alive_interval`, default 5 s).
    pub keep_alive_interval: Duration,
    /// After this many missed keep-alives a launcher counts as dead
    /// (`keep_alive_max_attempt`, default 3).
    pub keep_alive_max_attempt: u32,
    /// Whether this launcher serves the store backend's TCP store (`is_host`); by
    /// default the launcher on the endpoint's host does.
    pub is_host: Option<bool>,
}

impl Default for RdzvOptions {
    fn default() -> Self {
        RdzvOptions {
            join_timeout: Duration::from_secs(600),
            last_call_timeout: Duration::from_secs(30),
            keep_alive_interval: Duration::from_secs(5),
            keep_alive_max_attempt: 3,
            is_host: None,
        }
    }
}

impl RdzvOptions {
    /// How long a silent launcher stays a member.
    pub fn dead_after(&self) -> Duration {
        self.keep_alive_interval * self.keep_alive_max_attempt.max(1)
    }

    /// Applies `key=value,key=value` (unknown keys are logged and ignored, as torch's
    /// backends ignore what they do not use).
    pub fn apply(&mut self, conf: &str) -> Result<()> {
        for part in conf.split(',').filter(|p| !p.trim().is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(|| {
                config_error(format!(
                    "--rdzv-conf entry {part:?} is not key=value (in {conf:?})"
                ))
            })?;
            let (key, value) = (key.trim(), value.trim());
            let secs = || parse_seconds(&format!("--rdzv-conf {key}"), value);
            match key {
                "join_timeout" | "timeout" => self.join_timeout = secs()?,
                "last_call_timeout" => self.last_call_timeout = secs()?,
                "keep_alive_interval" => {
                    self.keep_alive_interval = secs()?;
                    if self.keep_alive_interval.is_zero() {
                        return Err(config_error("--rdzv-conf keep_alive_interval must be > 0"));
                    }
                }
                "keep_alive_max_attempt" => {
                    self.keep_alive_max_attempt = value.parse().map_err(|_| {
                        config_error(format!(
                            "--rdzv-conf keep_alive_max_attempt={value:?} is not a count"
                        ))
                    })?
                }
                "is_host" => {
                    self.is_host = Some(match value.to_ascii_lowercase().as_str() {
                        "1" | "true" | "yes" => true,
                        "0" | "false" | "no" => false,
                        _ => {
                            return Err(config_error(format!(
                                "--rdzv-conf is_host={value:?} is not a boolean"
                            )));
                        }
                    })
                }
                other => tracing::warn!("--rdzv-conf: ignoring unknown key {other:?}"),
            }
        }
        Ok(())
    }
}

/// Parses a non-negative number of seconds (fractions allowed) for `what`.
pub fn parse_seconds(what: &str, value: &str) -> Result<Duration> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| config_error(format!("{what}={value:?} is not a number of seconds")))
}

/// Everything a launcher needs; the CLI (`tutti run`) fills one from its flags.
/// [`Default`] gives torchrun's defaults: one node, one worker, static rendezvous.
#[derive(Clone, Debug)]
pub struct LaunchConfig {
    /// Workers started by this launcher (`--nproc-per-node`, default 1).
    pub nproc_per_node: usize,
    /// Launchers in the job (`--nnodes`, default 1).
    pub nnodes: NNodes,
    /// This launcher's node rank (`--node-rank`, default 0): its group rank with the
    /// static backend; with the dynamic ones a sort key (lower first) among launchers
    /// of the same role.
    pub node_rank: usize,
    /// How launchers meet (`--rdzv-backend`, default static).
    pub rdzv_backend: RdzvBackend,
    /// `HOST[:PORT]` of the rendezvous (`--rdzv-endpoint`).
    pub rdzv_endpoint: Option<String>,
    /// The job's id, shared by its launchers (`--rdzv-id`, default `none`).
    pub run_id: String,
    /// Options of the rendezvous (`--rdzv-conf`).
    pub rdzv: RdzvOptions,
    /// A single-node job with a private rendezvous (`--standalone`).
    pub standalone: bool,
    /// Rendezvous host of the static backend (`--master-addr`, default 127.0.0.1).
    pub master_addr: String,
    /// Rendezvous port of the static backend (`--master-port`, default 29500).
    pub master_port: u16,
    /// The address other hosts reach this launcher at (`--local-addr`); default: the
    /// loopback address for single-host jobs, else the host name.
    pub local_addr: Option<String>,
    /// Restarts of the worker group after a failure (`--max-restarts`, default 0).
    pub max_restarts: u32,
    /// How often workers are polled (`--monitor-interval`, default 0.1 s).
    pub monitor_interval: Duration,
    /// The workers' role (`--role`, default `default`).
    pub role: String,
    /// Streams written only to the log files (`--redirects`).
    pub redirects: StdSpec,
    /// Streams written to the log files and to the console (`--tee`).
    pub tee: StdSpec,
    /// Where logs and error files go (`--log-dir`); default a fresh temporary
    /// directory, removed after a successful run.
    pub log_dir: Option<PathBuf>,
    /// Prefix of teed lines (`--log-line-prefix-template`), with `${role_name}`,
    /// `${rank}` and `${local_rank}`; default `[${role_name}${rank}]:`.
    pub log_line_prefix_template: Option<String>,
    /// How long a launcher whose workers succeeded waits for the other launchers
    /// (`--exit-barrier-timeout`, default 300 s). Its expiry is logged, never an error.
    pub exit_barrier_timeout: Duration,
    /// Time between SIGTERM and SIGKILL when stopping workers
    /// (`--stop-timeout`, default 30 s).
    pub stop_timeout: Duration,
    /// Whether the launcher catches SIGINT, SIGTERM, SIGHUP and SIGQUIT to forward
    /// them to its workers (default true).
    pub handle_signals: bool,
    /// Extra environment variables of every worker.
    pub env: Vec<(OsString, OsString)>,
    /// The token launchers present to the rendezvous store; default
    /// `TUTTI_JOB_TOKEN`, else one derived from `run_id`. Also the workers' job
    /// token when set; else every round gets a random one.
    pub job_token: Option<String>,
    /// Which clients of c10d's TCPStore protocol (torch.distributed's workers,
    /// which cannot present the job token) the workers' store accepts
    /// (`--c10d-store`, default any: torch workers on every node reach it). tutti's
    /// own protocol always requires the token; refused connections are logged.
    pub c10d_store: tutti_store::C10dAccess,
}

impl Default for LaunchConfig {
    fn default() -> Self {
        LaunchConfig {
            nproc_per_node: 1,
            nnodes: NNodes::fixed(1),
            node_rank: 0,
            rdzv_backend: RdzvBackend::Static,
            rdzv_endpoint: None,
            run_id: "none".into(),
            rdzv: RdzvOptions::default(),
            standalone: false,
            master_addr: "127.0.0.1".into(),
            master_port: 29500,
            local_addr: None,
            max_restarts: 0,
            monitor_interval: Duration::from_millis(100),
            role: "default".into(),
            redirects: StdSpec::default(),
            tee: StdSpec::default(),
            log_dir: None,
            log_line_prefix_template: None,
            exit_barrier_timeout: Duration::from_secs(300),
            stop_timeout: Duration::from_secs(30),
            handle_signals: true,
            env: Vec::new(),
            job_token: None,
            c10d_store: tutti_store::C10dAccess::Any,
        }
    }
}

impl LaunchConfig {
    /// A single-node configuration with `nproc` workers and a private rendezvous.
    pub fn standalone(nproc: usize) -> Self {
        LaunchConfig {
            nproc_per_node: nproc,
            standalone: true,
            ..LaunchConfig::default()
        }
    }

    /// Checks the combination of options; errors name the flag that is wrong.
    pub fn validate(&self) -> Result<()> {
        if self.nproc_per_node == 0 {
            return Err(config_error("--nproc-per-node must be at least 1"));
        }
        if self.nnodes.min == 0 || self.nnodes.min > self.nnodes.max {
            return Err(config_error(format!(
                "--nnodes {} is not valid (need 1 <= MIN <= MAX)",
                self.nnodes
            )));
        }
        if self.role.is_empty() || self.role.contains(['/', '\n']) {
            return Err(config_error(format!(
                "--role {:?} must be a non-empty name without '/'",
                self.role
            )));
        }
        if self.run_id.is_empty() || self.run_id.contains(['/', '\n']) {
            return Err(config_error(format!(
                "--rdzv-id {:?} must be a non-empty name without '/'",
                self.run_id
            )));
        }
        if self.monitor_interval.is_zero() {
            return Err(config_error("--monitor-interval must be > 0"));
        }
        if self.standalone {
            if self.nnodes.max != 1 {
                return Err(config_error(format!(
                    "--standalone runs one node, but --nnodes is {}",
                    self.nnodes
                )));
            }
            return Ok(());
        }
        match self.rdzv_backend {
            RdzvBackend::Static => {
                if self.nnodes.is_elastic() {
                    return Err(config_error(format!(
                        "the static rendezvous needs a fixed --nnodes, not {} (use --rdzv-backend store or etcd for elastic jobs)",
                        self.nnodes
                    )));
                }
                if self.node_rank >= self.nnodes.max {
                    return Err(config_error(format!(
                        "--node-rank {} is outside --nnodes {}",
                        self.node_rank, self.nnodes
                    )));
                }
            }
            RdzvBackend::Store | RdzvBackend::Etcd => {
                if self.nnodes.max > 1 && self.rdzv_endpoint.is_none() {
                    return Err(config_error(format!(
                        "--rdzv-backend {} with --nnodes {} needs --rdzv-endpoint HOST:PORT",
                        self.rdzv_backend, self.nnodes
                    )));
                }
            }
        }
        if let Some(ep) = &self.rdzv_endpoint {
            split_host_port(ep, 0)?;
        }
        Ok(())
    }

    /// Whether every launcher of the job runs in this process's host only (no
    /// rendezvous with other launchers).
    pub fn is_single_launcher(&self) -> bool {
        self.standalone || (self.nnodes.max == 1 && self.rdzv_backend == RdzvBackend::Static)
    }
}

/// Splits `HOST[:PORT]` (IPv6 as `[addr]:port`), using `default_port` when the port
/// is missing; a port of 0 without a default is an error.
pub fn split_host_port(endpoint: &str, default_port: u16) -> Result<(String, u16)> {
    let bad = || {
        config_error(format!(
            "endpoint {endpoint:?} is not HOST:PORT (IPv6 as [ADDR]:PORT)"
        ))
    };
    let endpoint = endpoint.trim();
    let endpoint = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .unwrap_or(endpoint);
    let (host, port) = if let Some(rest) = endpoint.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        match after.strip_prefix(':') {
            Some(p) => (host, Some(p)),
            None if after.is_empty() => (host, None),
            None => return Err(bad()),
        }
    } else {
        match endpoint.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            Some(_) => (endpoint, None),
            None => (endpoint, None),
        }
    };
    if host.is_empty() {
        return Err(bad());
    }
    let port = match port {
        Some(p) => p.parse::<u16>().map_err(|_| bad())?,
        None => default_port,
    };
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flags() {
        assert_eq!("2".parse::<NNodes>().unwrap(), NNodes::fixed(2));
        assert_eq!("1:4".parse::<NNodes>().unwrap(), NNodes { min: 1, max: 4 });
        assert!("0".parse::<NNodes>().is_err());
        assert!("3:2".parse::<NNodes>().is_err());
        assert!("x".parse::<NNodes>().is_err());
        assert_eq!("c10d".parse::<RdzvBackend>().unwrap(), RdzvBackend::Store);
        assert!("zk".parse::<RdzvBackend>().is_err());
        let s: StdSpec = "3".parse().unwrap();
        assert_eq!(s.get(7), Std::ALL);
        let s: StdSpec = "0:1,1:2".parse().unwrap();
        assert!(s.get(0).stdout && !s.get(0).stderr);
        assert!(!s.get(1).stdout && s.get(1).stderr);
        assert_eq!(s.get(2), Std::NONE);
        assert!("4".parse::<StdSpec>().is_err());
        assert_eq!(
            split_host_port("[::1]:5", 0).unwrap(),
            ("::1".to_string(), 5)
        );
        assert_eq!(
            split_host_port("node1", 29400).unwrap(),
            ("node1".to_string(), 29400)
        );
        assert_eq!(
            split_host_port("http://h:2379", 0).unwrap(),
            ("h".to_string(), 2379)
        );
        assert!(split_host_port("h:x", 1).is_err());
        let mut o = RdzvOptions::default();
        o.apply("last_call_timeout=0.5, join_timeout=7,keep_alive_max_attempt=2")
            .unwrap();
        assert_eq!(o.last_call_timeout, Duration::from_millis(500));
        assert_eq!(o.join_timeout, Duration::from_secs(7));
        assert_eq!(o.dead_after(), Duration::from_secs(10));
        assert!(o.apply("join_timeout").is_err());
    }

    #[test]
    fn validates() {
        assert!(LaunchConfig::default().validate().is_ok());
        let c = LaunchConfig {
            nnodes: NNodes { min: 1, max: 2 },
            ..LaunchConfig::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("static"));
        let c = LaunchConfig {
            nnodes: NNodes::fixed(2),
            node_rank: 2,
            ..LaunchConfig::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("--node-rank")
        );
        let c = LaunchConfig {
            nproc_per_node: 0,
            ..LaunchConfig::default()
        };
        assert!(c.validate().is_err());
    }
}
