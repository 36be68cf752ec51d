//! Shared by the launcher tests: starting `tutti run` (the real binary) with real
//! worker processes, the worker body the test binaries re-execute into (an
//! all_reduce through tutti's ProcessGroup), an etcd server, and the scenarios run
//! against every multi-launcher rendezvous backend.

#![allow(dead_code)]

use std::fs::File;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The `tutti` binary under test.
pub const TUTTI: &str = env!("CARGO_BIN_EXE_tutti");

/// The variable that turns a test binary into a launcher test worker.
pub const WORKER_ENV: &str = "TUTTI_LAUNCH_TEST_WORKER";

/// A free TCP port on loopback (bound then released).
pub fn free_port() -> u16 {
    tutti::launch::local::free_loopback_port().unwrap()
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base = std::env::temp_dir().join(format!(
            "tutti-launch-test-{name}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        TempDir(base)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }

    pub fn read(&self, p: &str) -> String {
        std::fs::read_to_string(self.join(p))
            .unwrap_or_else(|e| panic!("reading {}: {e}", self.join(p).display()))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A running `tutti run`, its output going to files.
pub struct Launch {
    pub child: Child,
    pub name: String,
    out: PathBuf,
    err: PathBuf,
}

impl Launch {
    /// Starts `tutti run FLAGS -- PROGRAM ARGS` with `env` added; output goes to
    /// `<dir>/<name>.out|err`.
    pub fn start(
        dir: &Path,
        name: &str,
        flags: &[String],
        program: &[String],
        env: &[(&str, String)],
    ) -> Launch {
        let out = dir.join(format!("{name}.out"));
        let err = dir.join(format!("{name}.err"));
        let mut cmd = Command::new(TUTTI);
        cmd.arg("run");
        if !flags.iter().any(|f| f == "--log-dir") {
            cmd.arg("--log-dir").arg(dir.join(format!("logs-{name}")));
        }
        cmd.args(flags)
            .arg("--")
            .args(program)
            .env("OUT", dir)
            .env("RUST_LOG", "warn,tutti_launch=info")
            .stdin(Stdio::null())
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(&err).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Launch {
            child: cmd.spawn().unwrap(),
            name: name.to_string(),
            out,
            err,
        }
    }

    /// Waits for the launcher (killing it past `limit`).
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "launcher {} did not finish within {limit:?}\n{}",
                    self.name,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its stdout and stderr so far.
    pub fn output(&self) -> String {
        format!(
            "--- {} stdout\n{}\n--- {} stderr\n{}",
            self.name,
            std::fs::read_to_string(&self.out).unwrap_or_default(),
            self.name,
            std::fs::read_to_string(&self.err).unwrap_or_default()
        )
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits and asserts success.
    pub fn expect_success(&mut self, limit: Duration) {
        let s = self.wait(limit);
        assert!(
            s.success(),
            "launcher {} failed: {s}\n{}",
            self.name,
            self.output()
        );
    }
}

impl Drop for Launch {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `sh -c SCRIPT` as a worker program.
pub fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

/// This test binary re-executed as a launcher test worker running `scenario`
/// (the binary's `launch_worker` test reads it).
pub fn self_worker(scenario: &str) -> (Vec<String>, (&'static str, String)) {
    let exe = std::env::current_exe().unwrap().display().to_string();
    (
        vec![
            exe,
            "launch_worker".into(),
            "--exact".into(),
            "--nocapture".into(),
            "--test-threads=1".into(),
        ],
        (WORKER_ENV, scenario.to_string()),
    )
}

fn env_num(name: &str) -> usize {
    std::env::var(name).unwrap().parse().unwrap()
}

/// The body of a launcher test worker (does nothing unless started as one).
///
/// `allreduce`: joins tutti's default group from the launcher's environment,
/// all-reduces its rank, writes `w<world>_rank<rank>` = `world=.. sum=.. restart=..`
/// under `$OUT`; fails before that when `FAIL_RANK_ON_FIRST` names its rank on
/// restart 0; sleeps long afterwards when `SLEEP_IF_WORLD` equals the world size.
pub fn worker_main() {
    let Ok(scenario) = std::env::var(WORKER_ENV) else {
        return;
    };
    assert_eq!(scenario, "allreduce");
    let rank = env_num("RANK");
    let world = env_num("WORLD_SIZE");
    let restart = env_num("TORCHELASTIC_RESTART_COUNT");
    let out = PathBuf::from(std::env::var("OUT").unwrap());
    if std::env::var("FAIL_RANK_ON_FIRST").is_ok_and(|r| r == rank.to_string()) && restart == 0 {
        eprintln!("rank {rank}: failing on purpose on the first attempt");
        std::process::exit(1);
    }
    let pg = tutti::ProcessGroup::from_env(tutti::GroupOptions::from_env().unwrap()).unwrap();
    assert_eq!(pg.rank(), rank);
    assert_eq!(pg.size(), world);
    let mut buf = [rank as f64];
    pg.all_reduce(&mut buf, tutti::ReduceOp::Sum).unwrap();
    std::fs::write(
        out.join(format!("w{world}_rank{rank}")),
        format!("world={world} sum={} restart={restart}", buf[0]),
    )
    .unwrap();
    if std::env::var("SLEEP_IF_WORLD").is_ok_and(|w| w == world.to_string()) {
        std::thread::sleep(Duration::from_secs(120));
    }
}

/// Waits until every path exists (panics past `limit`).
pub fn wait_files(paths: &[PathBuf], limit: Duration, what: &dyn Fn() -> String) {
    let start = Instant::now();
    while !paths.iter().all(|p| p.exists()) {
        assert!(
            start.elapsed() < limit,
            "files {:?} did not appear within {limit:?}\n{}",
            paths.iter().filter(|p| !p.exists()).collect::<Vec<_>>(),
            what()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until something accepts connections on `127.0.0.1:port`.
pub fn wait_port(port: u16, limit: Duration) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < limit, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A multi-launcher rendezvous to run the scenarios against.
#[derive(Clone, Debug)]
pub enum Backend {
    /// `--rdzv-backend store`, endpoint on loopback.
    Store { port: u16 },
    /// `--rdzv-backend etcd` at this endpoint.
    Etcd { endpoint: String },
}

impl Backend {
    pub fn store() -> Backend {
        Backend::Store { port: free_port() }
    }

    /// The rendezvous flags of every launcher of job `run_id`.
    pub fn flags(&self, run_id: &str, nnodes: &str) -> Vec<String> {
        let (backend, endpoint) = match self {
            Backend::Store { port } => ("store", format!("127.0.0.1:{port}")),
            Backend::Etcd { endpoint } => ("etcd", endpoint.clone()),
        };
        [
            "--rdzv-backend",
            backend,
            "--rdzv-endpoint",
            &endpoint,
            "--rdzv-id",
            run_id,
            "--nnodes",
            nnodes,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// Waits until the first launcher serves the store (store backend only), so
    /// that it is the host.
    pub fn wait_host(&self) {
        if let Backend::Store { port } = self {
            wait_port(*port, Duration::from_secs(20));
        }
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

const LIMIT: Duration = Duration::from_secs(60);

/// Two launchers x 2 workers all-reduce their ranks (0+1+2+3); rank 3 fails on the
/// first attempt, so both launchers restart once.
pub fn scenario_all_reduce(backend: &Backend, dir: &TempDir, run_id: &str) {
    let (program, worker) = self_worker("allreduce");
    let env = [worker, ("FAIL_RANK_ON_FIRST", "3".into())];
    let mut launches: Vec<Launch> = (0..2)
        .map(|i| {
            let mut flags = backend.flags(run_id, "2");
            flags.extend(strings(&[
                "--nproc-per-node",
                "2",
                "--max-restarts",
                "1",
                "--node-rank",
                &i.to_string(),
            ]));
            let l = Launch::start(dir.path(), &format!("launcher{i}"), &flags, &program, &env);
            if i == 0 {
                backend.wait_host();
            }
            l
        })
        .collect();
    for l in &mut launches {
        l.expect_success(LIMIT);
    }
    for rank in 0..4 {
        assert_eq!(
            dir.read(&format!("w4_rank{rank}")),
            "world=4 sum=6 restart=1",
            "rank {rank}"
        );
    }
    let all: String = launches.iter().map(|l| l.stderr()).collect();
    assert!(all.contains("restarting the worker group"), "{all}");
}

/// master x1, trainer 1+2+3+4, ps 5+2: consecutive global ranks per launcher and per
/// role, role ranks and sizes per role.
pub fn scenario_roles(backend: &Backend, dir: &TempDir, run_id: &str) {
    // (role, nproc, node rank), started in a scrambled order.
    let nodes = [
        ("ps", 5, 5),
        ("trainer", 3, 3),
        ("master", 1, 0),
        ("trainer", 1, 1),
        ("ps", 2, 6),
        ("trainer", 4, 4),
        ("trainer", 2, 2),
    ];
    let script = sh(
        "echo \"$ROLE_NAME $ROLE_RANK $ROLE_WORLD_SIZE $GROUP_RANK $GROUP_WORLD_SIZE $LOCAL_RANK $LOCAL_WORLD_SIZE $WORLD_SIZE\" > \"$OUT/rank.$RANK\"",
    );
    let mut launches: Vec<Launch> = nodes
        .iter()
        .enumerate()
        .map(|(i, (role, n, node_rank))| {
            let mut flags = backend.flags(run_id, "7");
            flags.extend(strings(&[
                "--role",
                role,
                "--nproc-per-node",
                &n.to_string(),
                "--node-rank",
                &node_rank.to_string(),
            ]));
            let l = Launch::start(dir.path(), &format!("launcher{i}"), &flags, &script, &[]);
            if i == 0 {
                backend.wait_host();
            }
            l
        })
        .collect();
    for l in &mut launches {
        l.expect_success(LIMIT);
    }
    // Expected, in group order: (role, nproc, first global rank, first role rank).
    let expected = [
        ("master", 1, 0, 0, 1),
        ("trainer", 1, 1, 0, 10),
        ("trainer", 2, 2, 1, 10),
        ("trainer", 3, 4, 3, 10),
        ("trainer", 4, 7, 6, 10),
        ("ps", 5, 11, 0, 7),
        ("ps", 2, 16, 5, 7),
    ];
    for (group_rank, (role, n, base, role_base, role_world)) in expected.into_iter().enumerate() {
        for local in 0..n {
            let got = dir.read(&format!("rank.{}", base + local));
            let want = format!(
                "{role} {} {role_world} {group_rank} 7 {local} {n} 18",
                role_base + local
            );
            assert_eq!(got.trim(), want, "global rank {}", base + local);
        }
    }
}

/// Two launchers with --nnodes 1:2; once their workers all-reduced, one launcher is
/// killed (SIGKILL): the survivor re-rendezvouses alone and its workers finish.
/// `kill_first`: kill the launcher that serves the workers' store (etcd), else the
/// second (the store backend's host must survive).
pub fn scenario_elastic(backend: &Backend, dir: &TempDir, run_id: &str, kill_first: bool) {
    let (program, worker) = self_worker("allreduce");
    let env = [worker, ("SLEEP_IF_WORLD", "4".into())];
    let mut launches: Vec<Launch> = (0..2)
        .map(|i| {
            let mut flags = backend.flags(run_id, "1:2");
            flags.extend(strings(&[
                "--nproc-per-node",
                "2",
                "--rdzv-conf",
                "last_call_timeout=2,keep_alive_interval=0.2,keep_alive_max_attempt=8",
                "--stop-timeout",
                "5",
            ]));
            let l = Launch::start(dir.path(), &format!("launcher{i}"), &flags, &program, &env);
            if i == 0 {
                backend.wait_host();
            }
            l
        })
        .collect();
    let round0: Vec<PathBuf> = (0..4).map(|r| dir.join(&format!("w4_rank{r}"))).collect();
    wait_files(&round0, LIMIT, &|| {
        launches.iter().map(|l| l.output()).collect::<String>()
    });
    let (victim, survivor) = if kill_first { (0, 1) } else { (1, 0) };
    launches[victim].child.kill().unwrap();
    launches[victim].child.wait().unwrap();
    launches[survivor].expect_success(LIMIT);
    for rank in 0..2 {
        assert_eq!(
            dir.read(&format!("w2_rank{rank}")),
            "world=2 sum=1 restart=0",
            "rank {rank} after the re-rendezvous"
        );
    }
    let err = launches[survivor].stderr();
    assert!(err.contains("stopped sending keep-alives"), "{err}");
}

/// The workers of the second launcher finish 3 s after the first's: both succeed,
/// the first waiting in the exit barrier.
pub fn scenario_late_finisher(backend: &Backend, dir: &TempDir, run_id: &str) {
    let script =
        sh("if [ \"$GROUP_RANK\" = 1 ]; then sleep 3; fi; echo done > \"$OUT/done.$RANK\"");
    let start = Instant::now();
    let mut launches: Vec<Launch> = (0..2)
        .map(|i| {
            let mut flags = backend.flags(run_id, "2");
            flags.extend(strings(&[
                "--nproc-per-node",
                "1",
                "--node-rank",
                &i.to_string(),
            ]));
            let l = Launch::start(dir.path(), &format!("launcher{i}"), &flags, &script, &[]);
            if i == 0 {
                backend.wait_host();
            }
            l
        })
        .collect();
    for l in &mut launches {
        l.expect_success(LIMIT);
    }
    assert!(start.elapsed() >= Duration::from_secs(3));
    assert!(dir.join("done.0").exists() && dir.join("done.1").exists());
}

/// A running etcd, killed and cleaned up on drop.
pub struct Etcd {
    child: Child,
    dir: PathBuf,
    pub endpoint: String,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether a missing etcd must fail the tests (`TUTTI_REQUIRE_ETCD=1`).
pub fn etcd_required() -> bool {
    std::env::var("TUTTI_REQUIRE_ETCD").is_ok_and(|v| v == "1")
}

fn etcd_binary() -> Option<PathBuf> {
    if let Ok(bin) = std::env::var("TUTTI_ETCD_BIN") {
        return Some(PathBuf::from(bin));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())
}

/// Starts etcd on free loopback ports, or returns `None` (skip, with the reason
/// printed) when there is no binary and it is not required.
pub fn start_etcd() -> Option<Etcd> {
    let Some(bin) = etcd_binary() else {
        assert!(
            !etcd_required(),
            "TUTTI_REQUIRE_ETCD=1 but no etcd binary was found (install etcd-server or set TUTTI_ETCD_BIN)"
        );
        eprintln!(
            "skipping: no etcd binary on PATH (install Debian's etcd-server, or set TUTTI_ETCD_BIN)"
        );
        return None;
    };
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let client_port = free_port();
    let peer_port = free_port();
    let dir = base.join(format!(
        "tutti-launch-etcd-{}-{client_port}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let client_url = format!("http://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let log = File::create(dir.join("etcd.log")).unwrap();
    let child = Command::new(&bin)
        .arg("--name=tutti-launch-test")
        .arg(format!("--data-dir={}", dir.join("data").display()))
        .arg(format!("--listen-client-urls={client_url}"))
        .arg(format!("--advertise-client-urls={client_url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=tutti-launch-test={peer_url}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| {
            let _ = std::fs::remove_dir_all(&dir);
            panic!("starting {}: {e}", bin.display())
        });
    wait_port(client_port, Duration::from_secs(20));
    Some(Etcd {
        child,
        dir,
        endpoint: format!("127.0.0.1:{client_port}"),
    })
}
