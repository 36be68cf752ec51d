//! Running the benchmark: starting local ranks (`--nranks`), or running as one rank
//! of a job (`tutti run`, torchrun, Slurm, mpirun), and timing each size as
//! nccl-tests does.
//!
//! Per collective: warm-up at the largest then the smallest size (`-w` each, then the
//! smallest until the rank has run 200 ms, [`WARMUP_FLOOR`]); then per size,
//! out of place and in place: (with `-c`) fill the inputs, one untimed run, a
//! barrier, `-n` timed runs (with `-z`, a barrier after each), the time per run
//! combined across ranks (`-a`), then (with `-c`) `-c` checked runs on fresh data
//! whose wrong elements are summed over ranks. Rank 0 prints.
//!
//! Test hook: `TUTTI_BENCH_CORRUPT=<rank>` (or `all`) flips one bit of the result
//! on that rank before each check, so that tests can see `-c` catch a wrong result.

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use tutti::launch::local::spawn_local_ranks;
use tutti::{GroupOptions, ProcessGroup, ReduceOp};

use crate::cli::Cli;
use crate::collectives::{self, Buffers, Collective, Spec};
use crate::data::{self, TestElem};
use crate::device::{DeviceBuffers, Gpu};
use crate::output::{Config, Measure, Report, Row, Run};
use crate::progress::Progress;
use crate::{compare, plot, table};

/// The least time a rank runs before its first timed size, on top of `-w` iterations
/// at the largest and the smallest size of each collective. CPU ranks start wherever the scheduler put them and
/// run slower for their first tens of milliseconds, until it has spread them over
/// the cores: a 64 KiB shm all_reduce with 2 ranks measured 1.2-6.0 GB/s right after
/// 20 warm-up operations and 5.4-6.8 after 2000 (bench/RESULTS.md). The peers'
/// harnesses time each size for a fixed duration after their own warm-up.
const WARMUP_FLOOR: Duration = Duration::from_millis(200);
/// Operations between two checks of the warm-up time.
const WARMUP_BATCH: u32 = 16;

/// Set in the environment of the ranks that `--nranks` starts.
pub const CHILD_ENV: &str = "TUTTI_BENCH_CHILD";
/// The corruption test hook (see the module docs).
pub const CORRUPT_ENV: &str = "TUTTI_BENCH_CORRUPT";
/// Ranks started when neither `--nranks` nor a job environment says how many.
pub const DEFAULT_NRANKS: u32 = 2;

/// Exit code for bad command lines and arguments.
const USAGE: u8 = 2;

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("tutti-bench: error: {msg}");
    ExitCode::from(USAGE)
}

/// The `tutti-bench` program: parses the command line and runs.
pub fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from_args(&args) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if let Err(msg) = cli.validate() {
        return usage_error(&msg);
    }
    let is_child = std::env::var_os(CHILD_ENV).is_some();
    if !is_child {
        for path in &cli.compare {
            if let Err(msg) = Report::load(path) {
                return usage_error(&msg);
            }
        }
        let outputs = [
            (&cli.json, "--json"),
            (&cli.csv, "--csv"),
            (&cli.plot, "--plot"),
        ];
        for (path, flag) in outputs {
            let dir = path
                .as_deref()
                .filter(|p| p.as_os_str() != "-")
                .and_then(Path::parent)
                .filter(|d| !d.as_os_str().is_empty());
            if let Some(d) = dir
                && !d.is_dir()
            {
                return usage_error(&format!("{flag}: directory {} does not exist", d.display()));
            }
        }
    }
    let in_job = tutti::group::JobEnv::from_env().is_ok();
    if is_child || (cli.nranks.is_none() && in_job) {
        worker(&cli, &args)
    } else {
        spawn(cli.nranks.unwrap_or(DEFAULT_NRANKS) as usize, &args[1..])
    }
}

impl Cli {
    fn try_parse_from_args(args: &[OsString]) -> Result<Cli, clap::Error> {
        <Cli as clap::Parser>::try_parse_from(args)
    }
}

/// Starts `n` ranks of this program on this host and waits for them; the exit code
/// is the first failing rank's.
fn spawn(n: usize, args: &[OsString]) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("tutti-bench: cannot find this executable to start the ranks: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut children = match spawn_local_ranks(n, "tutti-bench", |_| {
        let mut cmd = Command::new(&exe);
        cmd.args(args).env(CHILD_ENV, "1");
        cmd
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tutti-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Wait for all; once one fails, give the others a grace period to report their
    // own error (tutti fails every rank of a broken group), then stop them.
    let mut codes: Vec<Option<i32>> = vec![None; n];
    let mut first_failure: Option<(usize, i32)> = None;
    let mut failed_at: Option<Instant> = None;
    loop {
        let mut running = 0;
        for (r, c) in children.iter_mut().enumerate() {
            if codes[r].is_some() {
                continue;
            }
            match c.try_wait() {
                Ok(Some(status)) => {
                    let code = status.code().unwrap_or(1);
                    codes[r] = Some(code);
                    if code != 0 && first_failure.is_none() {
                        first_failure = Some((r, code));
                        failed_at = Some(Instant::now());
                    }
                }
                Ok(None) => running += 1,
                Err(_) => codes[r] = Some(1),
            }
        }
        if running == 0 {
            break;
        }
        if failed_at.is_some_and(|t| t.elapsed() > Duration::from_secs(10)) {
            for (r, c) in children.iter_mut().enumerate() {
                if codes[r].is_none() {
                    eprintln!("tutti-bench: stopping rank {r} (another rank failed)");
                    let _ = c.kill();
                    let _ = c.wait();
                    codes[r] = Some(1);
                }
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    match first_failure {
        None => ExitCode::SUCCESS,
        Some((_, code)) => ExitCode::from(u8::try_from(code).unwrap_or(1).max(1)),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Everything a rank needs while it benchmarks.
struct Bench<'a> {
    pg: &'a ProcessGroup,
    cli: &'a Cli,
    progress: Progress,
    rep: u64,
    corrupt: bool,
    transport: String,
    algo: String,
    label: String,
    /// With `--device cuda`: this rank's GPU and the device twins of the buffers.
    gpu: Option<Gpu>,
    dbufs: Option<DeviceBuffers>,
    /// When this rank started: the warm-up floor ([`WARMUP_FLOOR`]) counts from
    /// here, so it is paid once per process, not once per collective.
    started: Instant,
}

impl Bench<'_> {
    fn rank0(&self) -> bool {
        self.pg.rank() == 0
    }

    /// Prints a table line on rank 0, unless stdout carries JSON or CSV.
    fn print(&mut self, text: &str) {
        if self.rank0() && self.table_on_stdout() {
            for line in text.trim_end_matches('\n').split('\n') {
                self.progress.println(line);
            }
        }
    }

    fn table_on_stdout(&self) -> bool {
        let stdout =
            |p: &Option<std::path::PathBuf>| p.as_ref().is_some_and(|p| p.as_os_str() == "-");
        !stdout(&self.cli.json) && !stdout(&self.cli.csv)
    }

    /// Combines this rank's seconds per operation across ranks (`-a`).
    fn combine_time(&self, secs: f64) -> tutti::Result<f64> {
        let mut v = [secs];
        match self.cli.average {
            0 => self.pg.broadcast(&mut v, 0)?,
            1 => self.pg.all_reduce(&mut v, ReduceOp::Avg)?,
            2 => self.pg.all_reduce(&mut v, ReduceOp::Min)?,
            _ => self.pg.all_reduce(&mut v, ReduceOp::Max)?,
        }
        Ok(v[0])
    }

    /// The largest of the ranks' `secs`.
    fn slowest(&self, secs: f64) -> tutti::Result<f64> {
        let mut v = [secs];
        self.pg.all_reduce(&mut v, ReduceOp::Max)?;
        Ok(v[0])
    }

    fn sum_u64(&self, x: u64) -> tutti::Result<u64> {
        let mut v = [x];
        self.pg.all_reduce(&mut v, ReduceOp::Sum)?;
        Ok(v[0])
    }

    /// One run of the collective: on the host buffers, or enqueued on the GPU.
    fn run_once<T: TestElem>(
        &mut self,
        s: &Spec,
        l: &collectives::Layout,
        in_place: bool,
        b: &mut Buffers<T>,
    ) -> tutti::Result<()> {
        match (&self.gpu, &mut self.dbufs) {
            (Some(g), Some(d)) => d.run_once(g, self.pg, s, l, in_place, self.cli.datatype),
            _ => collectives::run_once(self.pg, s, l, in_place, b),
        }
    }

    /// Waits until the GPU ran everything queued (nothing to do on the host).
    fn sync(&self) -> tutti::Result<()> {
        self.gpu.as_ref().map_or(Ok(()), Gpu::sync)
    }

    /// nccl-tests' `InitData`, then the upload to the GPU.
    fn init<T: TestElem>(
        &mut self,
        s: &Spec,
        l: &collectives::Layout,
        in_place: bool,
        rep: u64,
        b: &mut Buffers<T>,
    ) -> tutti::Result<()> {
        collectives::init(self.pg, s, l, in_place, rep, b);
        match (&self.gpu, &mut self.dbufs) {
            (Some(g), Some(d)) => d.upload(g, b, l),
            _ => Ok(()),
        }
    }

    /// Brings the GPU's output back before `-c` checks it.
    fn fetch<T: TestElem>(&self, l: &collectives::Layout, b: &mut Buffers<T>) -> tutti::Result<()> {
        match (&self.gpu, &self.dbufs) {
            (Some(g), Some(d)) => d.download(g, b, l),
            _ => Ok(()),
        }
    }

    /// nccl-tests' `BenchTime`: one size, one placement.
    fn bench_time<T: TestElem>(
        &mut self,
        s: &Spec,
        l: &collectives::Layout,
        in_place: bool,
        b: &mut Buffers<T>,
    ) -> tutti::Result<Measure> {
        let pg = self.pg;
        if self.cli.check > 0 {
            self.init(s, l, in_place, 0, b)?;
        }
        self.run_once(s, l, in_place, b)?;
        self.sync()?;
        pg.barrier()?;
        let iters = self.cli.iters.max(1);
        let t = Instant::now();
        for _ in 0..iters {
            self.run_once(s, l, in_place, b)?;
            if self.cli.blocking > 0 {
                self.sync()?;
                pg.barrier()?;
            }
        }
        self.sync()?;
        let secs = self.combine_time(t.elapsed().as_secs_f64() / f64::from(iters))?;
        let mut nwrong = None;
        for _ in 0..self.cli.check {
            self.rep += 1;
            self.init(s, l, in_place, self.rep, b)?;
            self.run_once(s, l, in_place, b)?;
            self.sync()?;
            self.fetch(l, b)?;
            let mine = collectives::check(pg, s, l, in_place, self.rep, b, self.corrupt)?;
            let all = self.sum_u64(mine)?;
            nwrong = Some(all);
            if all > 0 {
                break;
            }
        }
        let (algbw, busbw) = collectives::bandwidths(s.coll, l.bytes, secs, pg.size());
        self.progress.inc();
        Ok(Measure {
            time_us: secs * 1e6,
            algbw,
            busbw,
            nwrong,
        })
    }

    /// nccl-tests' `TimeTest`: every size of one collective.
    fn run<T: TestElem>(&mut self, coll: Collective) -> tutti::Result<Run> {
        let (pg, cli) = (self.pg, self.cli);
        let n = pg.size();
        let elem = cli.datatype.size();
        let s = Spec {
            coll,
            op: cli.op,
            root: cli.root,
        };
        let sizes = cli.sizes();
        let layouts: Vec<_> = sizes.iter().map(|&b| coll.layout(b, elem, n)).collect();
        let mut b = Buffers::<T>::new(pg, &layouts, cli.register > 0)?;
        if let Some(g) = &self.gpu {
            self.dbufs = Some(DeviceBuffers::new(g, &layouts, elem)?);
        }
        self.print(&format!(
            "#\n# Collective test starting: {}\n{}",
            coll.name(),
            table::column_header()
        ));
        self.progress.set(format!("{} warm-up", coll.name()));
        for l in [layouts.last(), layouts.first()].into_iter().flatten() {
            for _ in 0..cli.warmup_iters {
                self.run_once(&s, l, false, &mut b)?;
            }
        }
        self.sync()?;
        // Then the smallest size until every rank has run for WARMUP_FLOOR since it
        // started (the ranks agree after each batch, so they run the same
        // operations; later collectives find it passed); `-w 0` means no warm-up.
        if let Some(l) = layouts.first().filter(|_| cli.warmup_iters > 0) {
            while self.slowest(self.started.elapsed().as_secs_f64())? < WARMUP_FLOOR.as_secs_f64() {
                for _ in 0..WARMUP_BATCH {
                    self.run_once(&s, l, false, &mut b)?;
                }
                self.sync()?;
            }
        }
        let mut rows = Vec::new();
        for l in &layouts {
            let size = crate::sizes::format_size(l.bytes as usize);
            self.progress
                .set(format!("{} {size} out-of-place", coll.name()));
            let oop = self.bench_time(&s, l, false, &mut b)?;
            self.progress
                .set(format!("{} {size} in-place", coll.name()));
            let ip = self.bench_time(&s, l, true, &mut b)?;
            let row = Row {
                size: l.bytes,
                count: l.param as u64,
                type_name: data::type_name(cli.datatype).into(),
                redop: coll.redop_column(cli.op).into(),
                root: coll.root_column(cli.root),
                out_of_place: oop,
                in_place: ip,
            };
            self.print(&table::row(&row));
            rows.push(row);
        }
        let (out_of_bounds, avg_busbw) = summary(&rows);
        let run = Run {
            label: self.label.clone(),
            collective: coll.name().into(),
            nranks: n,
            transport: self.transport.clone(),
            algo: self.algo.clone(),
            bus_factor: coll.bus_factor(n),
            results: rows,
            out_of_bounds,
            avg_busbw,
        };
        self.print(&table::footer(&run));
        Ok(run)
    }
}

/// nccl-tests' footer figures: how many measurements had wrong elements, and the
/// mean busbw over every row, out of place and in place.
fn summary(rows: &[Row]) -> (u64, f64) {
    let measures: Vec<&Measure> = rows
        .iter()
        .flat_map(|r| [&r.out_of_place, &r.in_place])
        .collect();
    let bad = measures
        .iter()
        .filter(|m| m.nwrong.is_some_and(|w| w > 0))
        .count() as u64;
    let avg = if measures.is_empty() {
        0.0
    } else {
        measures.iter().map(|m| m.busbw).sum::<f64>() / measures.len() as f64
    };
    (bad, avg)
}

fn group_options(cli: &Cli) -> Result<GroupOptions, String> {
    let mut opts = GroupOptions::from_env().map_err(|e| e.to_string())?;
    if let Some(t) = &cli.transport {
        opts.transport = t.parse().map_err(|e: tutti::Error| e.to_string())?;
    }
    if let Some(a) = &cli.algo {
        opts.algo = Some(a.parse().map_err(|e: tutti::Error| e.to_string())?);
    }
    Ok(opts)
}

/// How this process copies bulk data (`tutti::transport::copy`), and what the
/// start-up measurement behind that choice found; a comment line for the header.
fn copy_line() -> String {
    use tutti::transport::copy;
    let policy = copy::policy();
    match copy::measured() {
        Some(p) => format!(
            "# copy: {policy:?} (destination 16 B past the source modulo 4 KiB: C library {:.1} GB/s, vector loop {:.1} GB/s)\n",
            p.libc_gbps(),
            p.vector_gbps()
        ),
        None => format!("# copy: {policy:?} (TUTTI_COPY)\n"),
    }
}

/// The header before the first table: nccl-tests' parameter line and one line per rank.
fn preamble(cli: &Cli, pg: &ProcessGroup, ranks: &[String], transport: &str, algo: &str) -> String {
    let mut s = format!(
        "# tutti-bench {} (nccl-tests compatible)\n# nThread 1 nGpus 1 minBytes {} maxBytes {} step: {} warmup iters: {} iters: {} agg iters: 1 validation: {} graph: 0\n",
        env!("CARGO_PKG_VERSION"),
        cli.minbytes,
        cli.maxbytes,
        cli.step_text(),
        cli.warmup_iters,
        cli.iters,
        cli.check
    );
    if cli.blocking > 0 {
        s.push_str("# Blocking Enabled: wait for completion and barrier after each collective\n");
    }
    s.push_str(&format!(
        "# nRanks {} transport {transport} algo {algo} time: {}\n",
        pg.size(),
        [
            "rank 0",
            "mean over ranks",
            "min over ranks",
            "max over ranks"
        ][cli.average.min(3) as usize]
    ));
    s.push_str(&copy_line());
    s.push_str("#\n# Using devices\n");
    for (r, info) in ranks.iter().enumerate() {
        let mut parts = info.splitn(3, ' ');
        let pid = parts.next().unwrap_or("?");
        let host = parts.next().unwrap_or("?");
        let device = parts.next().unwrap_or("cpu [host memory]");
        s.push_str(&format!(
            "#  Rank {r:>2} Group  0 Pid {pid:>6} on {host:>10} device {device}\n"
        ));
    }
    s
}

/// Exchanges "pid host" through the group's store; rank 0 gets every rank's.
fn rank_infos(pg: &ProcessGroup, device: &str) -> tutti::Result<Vec<String>> {
    let key = |r: usize| format!("tutti-bench/info/{r}");
    let store = pg.store();
    store.set(
        &key(pg.rank()),
        format!("{} {} {device}", std::process::id(), hostname()).as_bytes(),
    )?;
    if pg.rank() != 0 {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = (0..pg.size()).map(key).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    store.wait(&refs, Some(Duration::from_secs(300)))?;
    Ok(store
        .multi_get(&refs)?
        .into_iter()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .collect())
}

fn write_to(
    path: &Path,
    what: &str,
    f: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), String> {
    if path.as_os_str() == "-" {
        let mut out = std::io::stdout().lock();
        return f(&mut out)
            .and_then(|()| out.flush())
            .map_err(|e| format!("writing {what} to stdout: {e}"));
    }
    let mut file = std::fs::File::create(path)
        .map(std::io::BufWriter::new)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f(&mut file)
        .and_then(|()| file.flush())
        .map_err(|e| format!("writing {what} to {}: {e}", path.display()))
}

/// Rank 0's outputs after the runs: JSON, CSV, comparisons, plot.
fn outputs(cli: &Cli, args: &[OsString], runs: &[Run], bench: &mut Bench) -> Result<(), String> {
    let config = Config {
        nranks: bench.pg.size(),
        transport: bench.transport.clone(),
        algo: bench.algo.clone(),
        minbytes: cli.minbytes,
        maxbytes: cli.maxbytes,
        stepfactor: match cli.step() {
            crate::cli::Step::Factor(f) => Some(f),
            crate::cli::Step::Bytes(_) => None,
        },
        stepbytes: match cli.step() {
            crate::cli::Step::Bytes(b) => Some(b),
            crate::cli::Step::Factor(_) => None,
        },
        iters: cli.iters,
        warmup_iters: cli.warmup_iters,
        check: cli.check,
        blocking: cli.blocking,
        average: cli.average,
        datatype: data::type_name(cli.datatype).into(),
        op: data::op_name(cli.op).into(),
        root: cli.root,
    };
    let report = Report {
        tool: "tutti-bench".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        unix_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        host: hostname(),
        args: args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        config,
        runs: runs.to_vec(),
    };
    if let Some(p) = &cli.json {
        write_to(p, "JSON", |w| writeln!(w, "{}", report.to_json()))?;
    }
    if let Some(p) = &cli.csv {
        write_to(p, "CSV", |w| crate::output::write_csv(w, runs))?;
    }
    let mut saved = Vec::new();
    for path in &cli.compare {
        let rep = Report::load(path)?;
        let name = path.display().to_string();
        for run in runs {
            let text = compare::compare(run, &rep, &name);
            if bench.table_on_stdout() {
                bench.print(&text);
            } else {
                eprint!("{text}");
            }
        }
        saved.push((name, rep));
    }
    if let Some(p) = &cli.plot {
        let mut series: Vec<plot::Series> =
            runs.iter().map(|r| plot::Series::from_run(r, "")).collect();
        for (name, rep) in &saved {
            let file = Path::new(name)
                .file_name()
                .map_or(name.clone(), |f| f.to_string_lossy().into_owned());
            series.extend(
                rep.runs
                    .iter()
                    .map(|r| plot::Series::from_run(r, &format!("[{file}] "))),
            );
        }
        let title = format!(
            "tutti-bench: bus bandwidth, out of place ({}, {})",
            data::type_name(cli.datatype),
            if runs.len() == 1 {
                runs[0].collective.as_str()
            } else {
                "all"
            }
        );
        plot::plot(p, &title, &series)?;
    }
    Ok(())
}

/// Runs as one rank of the job in the environment.
fn worker(cli: &Cli, args: &[OsString]) -> ExitCode {
    let opts = match group_options(cli) {
        Ok(o) => o,
        Err(msg) => return usage_error(&msg),
    };
    let transport = cli
        .transport
        .clone()
        .unwrap_or_else(|| opts.transport.name().to_string());
    let algo = opts.algo.map_or("auto", |a| a.name()).to_string();
    let pg = match ProcessGroup::from_env(opts) {
        Ok(pg) => pg,
        Err(e) => {
            eprintln!("tutti-bench: cannot create the process group: {e}");
            return ExitCode::FAILURE;
        }
    };
    let n = pg.size();
    let colls = cli.collective.collectives();
    if colls.iter().any(|c| c.rooted()) && cli.root >= n {
        if pg.rank() == 0 {
            eprintln!(
                "tutti-bench: error: -r/--root {} is not a rank of {n} (ranks are 0..{})",
                cli.root,
                n - 1
            );
        }
        return ExitCode::from(USAGE);
    }
    let gpu = if cli.device == "cuda" {
        let local = pg
            .local_ranks()
            .iter()
            .position(|&r| r == pg.rank())
            .unwrap_or(0);
        let opened = tutti::gpu::device_count()
            .map_err(|e| e.to_string())
            .and_then(|n| crate::device::pick_gpu(local, cli.ranks_per_gpu, n))
            .and_then(|ordinal| Gpu::open(ordinal).map_err(|e| e.to_string()));
        match opened {
            Ok(g) => Some(g),
            Err(msg) => {
                eprintln!("tutti-bench: rank {}: --device cuda: {msg}", pg.rank());
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let corrupt = std::env::var(CORRUPT_ENV).is_ok_and(|v| {
        let v = v.trim();
        v == "all" || v.parse::<usize>().ok() == Some(pg.rank())
    });
    let total = (colls.len() * cli.sizes().len() * 2) as u64;
    let mut bench = Bench {
        pg: &pg,
        cli,
        progress: Progress::new(total, pg.rank() == 0 && !cli.no_progress),
        rep: 0,
        corrupt,
        label: cli.label.clone().unwrap_or_else(|| match &gpu {
            Some(_) => format!("cuda {transport} {n} ranks"),
            None => format!("{transport} {n} ranks"),
        }),
        transport,
        algo,
        gpu,
        dbufs: None,
        started: Instant::now(),
    };
    let result = (|| -> Result<Vec<Run>, String> {
        let device = bench
            .gpu
            .as_ref()
            .map_or_else(|| "cpu [host memory]".to_string(), Gpu::describe);
        let infos = rank_infos(&pg, &device).map_err(|e| e.to_string())?;
        let pre = preamble(cli, &pg, &infos, &bench.transport, &bench.algo);
        bench.print(&pre);
        let mut runs = Vec::new();
        for coll in colls {
            let run = tutti::with_elem!(cli.datatype, T, { bench.run::<T>(coll) })
                .map_err(|e| format!("{}: {e}", coll.name()))?;
            runs.push(run);
        }
        bench.progress.finish();
        Ok(runs)
    })();
    let runs = match result {
        Ok(r) => r,
        Err(msg) => {
            bench.progress.finish();
            eprintln!("tutti-bench: rank {}: {msg}", pg.rank());
            return ExitCode::FAILURE;
        }
    };
    let mut code = ExitCode::SUCCESS;
    if pg.rank() == 0
        && let Err(msg) = outputs(cli, args, &runs, &mut bench)
    {
        eprintln!("tutti-bench: {msg}");
        code = ExitCode::FAILURE;
    }
    // Every rank knows the (summed) wrong counts: fail like nccl-tests when any.
    if runs.iter().any(|r| r.out_of_bounds > 0) {
        code = ExitCode::FAILURE;
    }
    if let Err(e) = pg.barrier() {
        eprintln!("tutti-bench: rank {}: final barrier: {e}", pg.rank());
        code = ExitCode::FAILURE;
    }
    code
}
