//! `tutti-p2p`: point-to-point latency and bandwidth, like osu_latency, osu_bw and
//! osu_bibw, with 2 ranks or several pairs at once.
//!
//! ```text
//! tutti-p2p [--api group|link] [--transport auto|shm|tcp] [--nranks 2] [-b 8] [-e 256M] [-f 4] [-t 0.3]
//! ```
//!
//! `--api group` (the default) measures what applications use: `ProcessGroup::send`
//! and `recv` and their async variants through the progress engine (same-host window
//! rings, or TCP with `--transport tcp`). `--api link` measures one raw link (the
//! shared-memory FIFO or a TCP link) with the transport primitives.
//!
//! Ranks are processes (this binary re-executes itself); pairs are (0,1), (2,3), ...
//! all measuring at the same time. Latency: half the round trip of a ping-pong.
//! Bandwidth: a window of 16 back-to-back messages one way (fewer from 32 MiB: at most
//! 256 MiB in flight), then a 1-byte ack.
//! Bidirectional (group API): both ranks of a pair post 16 sends and 16 receives at
//! once; the figure counts the bytes of both directions. Rank 0 prints pair (0,1)'s
//! table and, with more pairs, the other pairs' figures.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tutti::ProcessGroup;
use tutti::group::{GroupOptions, StoreRendezvous};
use tutti::store::{Store, TcpStore};
use tutti::transport::shm::{self, ShmConfig};
use tutti::transport::tcp::{TcpConfig, TcpEndpoint};
use tutti::transport::{Deadline, Link, ops};
use tutti_bench::sizes::{format_size, parse_size};

struct Args {
    api: String,
    transport: String,
    nranks: usize,
    min: usize,
    max: usize,
    factor: usize,
    target: f64,
}

fn usage(err: &str) -> ! {
    eprintln!(
        "tutti-p2p: {err}\nusage: tutti-p2p [--api group|link] [--transport auto|shm|tcp] [--nranks N (even)] [-b MIN] [-e MAX] [-f FACTOR] [-t SECONDS_PER_SIZE]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        api: "group".into(),
        transport: "auto".into(),
        nranks: 2,
        min: 8,
        max: 256 << 20,
        factor: 4,
        target: 0.3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--transport" => a.transport = val(),
            "--api" => a.api = val(),
            "--nranks" | "-n" => a.nranks = val().parse().unwrap_or_else(|_| usage("bad --nranks")),
            "-b" | "--minbytes" => a.min = parse_size(&val()).unwrap_or_else(|e| usage(&e)),
            "-e" | "--maxbytes" => a.max = parse_size(&val()).unwrap_or_else(|e| usage(&e)),
            "-f" | "--stepfactor" => a.factor = val().parse().unwrap_or_else(|_| usage("bad -f")),
            "-t" | "--time" => a.target = val().parse().unwrap_or_else(|_| usage("bad -t")),
            "-h" | "--help" => usage("help"),
            other => usage(&format!("unknown flag {other}")),
        }
    }
    if a.nranks < 2 || !a.nranks.is_multiple_of(2) || a.factor < 2 || a.min == 0 || a.min > a.max {
        usage("need an even --nranks >= 2, -f >= 2 and 0 < -b <= -e");
    }
    match a.api.as_str() {
        "group" if matches!(a.transport.as_str(), "auto" | "shm" | "tcp") => {}
        "link" if matches!(a.transport.as_str(), "shm" | "tcp") => {}
        "link" if a.transport == "auto" => a.transport = "shm".into(),
        "group" | "link" => usage("--transport must be auto, shm or tcp"),
        _ => usage("--api must be group or link"),
    }
    a
}

fn main() {
    let args = parse_args();
    match std::env::var("TUTTI_P2P_RANK")
        .ok()
        .and_then(|r| r.parse::<usize>().ok())
    {
        Some(rank) => worker(rank, &args),
        None => launch(&args),
    }
}

fn launch(args: &Args) {
    let exe = std::env::current_exe().expect("current exe");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let children: Vec<_> = (0..args.nranks)
        .map(|r| {
            Command::new(&exe)
                .args(std::env::args().skip(1))
                .env("TUTTI_P2P_RANK", r.to_string())
                .env("TUTTI_P2P_PORT", port.to_string())
                .env("TUTTI_JOB_TOKEN", format!("p2p-{}", std::process::id()))
                .spawn()
                .expect("spawn rank")
        })
        .collect();
    let mut ok = true;
    for mut c in children {
        ok &= c.wait().map(|s| s.success()).unwrap_or(false);
    }
    std::process::exit(if ok { 0 } else { 1 });
}

fn deadline() -> Deadline {
    Deadline::after(Duration::from_secs(300))
}

fn worker(rank: usize, args: &Args) {
    let port: u16 = std::env::var("TUTTI_P2P_PORT").unwrap().parse().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        TcpStore::builder("127.0.0.1", port)
            .master(rank == 0)
            .timeout(Duration::from_secs(120))
            .connect()
            .expect("store"),
    );
    let peer = rank ^ 1;
    let pinger = rank.is_multiple_of(2);
    let mut ends = if args.api == "group" {
        let opts = GroupOptions {
            transport: args.transport.parse().expect("transport"),
            ..GroupOptions::default()
        };
        Ends::Group(
            ProcessGroup::from_store(store.clone(), rank, args.nranks, "p2p", opts)
                .expect("process group"),
        )
    } else {
        Ends::Link(link(rank, peer, args, &*store))
    };
    let mut sizes = Vec::new();
    let mut s = args.min;
    while s <= args.max {
        sizes.push(s);
        s = match s.checked_mul(args.factor) {
            Some(n) => n,
            None => break,
        };
    }
    if sizes.last().is_some_and(|&l| l < args.max) {
        sizes.push(args.max);
    }
    let mut rows = Vec::new();
    store.add("p2p/ready", 1).unwrap();
    wait_count(&*store, "p2p/ready", args.nranks);
    // Warm up (page faults, wake-up paths) with small ping-pongs for ~50 ms.
    {
        let (s, mut r) = (vec![0u8; 8], vec![0u8; 8]);
        let n = agree(&*store, "warmup", rank, 20_000);
        ends.pingpong(pinger, peer, &s, &mut r, n);
    }
    for &size in &sizes {
        let sbuf = vec![0x5au8; size];
        let mut rbuf = vec![0u8; size];
        // Latency: ping-pong, iteration count calibrated on a first round trip.
        let lat = {
            let t = Instant::now();
            ends.pingpong(pinger, peer, &sbuf, &mut rbuf, 2);
            let one = t.elapsed().as_secs_f64() / 2.0;
            let iters = ((args.target / 3.0 / one.max(1e-7)) as usize).clamp(3, 100_000);
            let iters = agree(&*store, &format!("lat/{size}"), rank, iters);
            let t = Instant::now();
            ends.pingpong(pinger, peer, &sbuf, &mut rbuf, iters);
            t.elapsed().as_secs_f64() / (2.0 * iters as f64)
        };
        // Bandwidth: windows of messages, then an ack; bidirectional: both ways.
        let window = window_for(size);
        let mut pool = Pool::default();
        let mut measure = |bidir: bool| {
            let t = Instant::now();
            ends.stream(&mut pool, pinger, peer, &sbuf, &mut rbuf, window, bidir);
            let one = t.elapsed().as_secs_f64();
            let loops = ((args.target / 3.0 / one.max(1e-7)) as usize).clamp(2, 10_000);
            let what = if bidir { "bibw" } else { "bw" };
            let loops = agree(&*store, &format!("{what}/{size}"), rank, loops);
            let t = Instant::now();
            for _ in 0..loops {
                ends.stream(&mut pool, pinger, peer, &sbuf, &mut rbuf, window, bidir);
            }
            let ways = if bidir { 2 } else { 1 };
            (ways * size * window * loops) as f64 / t.elapsed().as_secs_f64() / 1e9
        };
        let bw = measure(false);
        let bibw = if args.api == "group" {
            measure(true)
        } else {
            f64::NAN
        };
        rows.push((size, lat, bw, bibw));
    }
    report(rank, args, &*store, &rows);
    store.add("p2p/done", 1).unwrap();
    if rank == 0 {
        wait_count(&*store, "p2p/done", args.nranks);
    }
}

/// One raw link to the partner (`--api link`).
fn link(rank: usize, peer: usize, args: &Args, store: &dyn Store) -> Link {
    let rdv = StoreRendezvous(store);
    let name = format!("rank {peer}");
    let dl = deadline();
    match args.transport.as_str() {
        "shm" => shm::connect(
            &rdv,
            "p2p",
            rank,
            peer,
            &name,
            &ShmConfig::from_env(args.nranks),
            dl,
        )
        .expect("shm link"),
        _ => {
            let mut ep = TcpEndpoint::bind_addr(
                TcpConfig::from_env(args.nranks),
                rank,
                &format!("p2p{}", rank / 2),
                [127, 0, 0, 1].into(),
            )
            .expect("tcp endpoint");
            ep.publish(&rdv).expect("publish");
            ep.connect(&rdv, peer, &name, dl).expect("tcp link")
        }
    }
}

/// What a pair measures over: the group API, or one raw link.
enum Ends {
    Group(ProcessGroup),
    Link(Link),
}

impl Ends {
    fn pingpong(&mut self, pinger: bool, peer: usize, sbuf: &[u8], rbuf: &mut [u8], iters: usize) {
        match self {
            Ends::Link(link) => pingpong(link, pinger, sbuf, rbuf, iters),
            Ends::Group(g) => {
                for _ in 0..iters {
                    if pinger {
                        g.send(sbuf, peer, 1).unwrap();
                        g.recv(rbuf, peer, 1).unwrap();
                    } else {
                        g.recv(rbuf, peer, 1).unwrap();
                        g.send(sbuf, peer, 1).unwrap();
                    }
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn stream(
        &mut self,
        pool: &mut Pool,
        sender: bool,
        peer: usize,
        sbuf: &[u8],
        rbuf: &mut [u8],
        window: usize,
        bidir: bool,
    ) {
        match self {
            Ends::Link(link) => stream(link, sender, sbuf, rbuf, window),
            Ends::Group(_) if rbuf.len() != sbuf.len() => unreachable!("buffers of one size"),
            Ends::Group(g) => {
                let (sends, recvs) = if bidir {
                    (window, window)
                } else if sender {
                    (window, 0)
                } else {
                    (0, window)
                };
                // The async API owns its buffers: the same ones go round and round.
                let size = sbuf.len();
                if pool.sends.len() < window || pool.sends[0].len() != size {
                    pool.sends = (0..window).map(|_| sbuf.to_vec()).collect();
                    pool.recvs = (0..window).map(|_| vec![0u8; size]).collect();
                }
                let recv_works: Vec<_> = pool
                    .recvs
                    .drain(..recvs)
                    .map(|b| g.recv_async(b, peer, 2))
                    .collect();
                let send_works: Vec<_> = pool
                    .sends
                    .drain(..sends)
                    .map(|b| g.send_async(b, peer, 2))
                    .collect();
                for w in send_works {
                    pool.sends.push(w.wait().unwrap());
                }
                for w in recv_works {
                    pool.recvs.push(w.wait().unwrap());
                }
                let mut ack = [0u8; 1];
                if sender {
                    g.recv(&mut ack, peer, 3).unwrap();
                } else {
                    g.send(&ack, peer, 3).unwrap();
                }
            }
        }
    }
}

/// Buffers the async sends and receives of the group API reuse.
#[derive(Default)]
struct Pool {
    sends: Vec<Vec<u8>>,
    recvs: Vec<Vec<u8>>,
}

fn report(rank: usize, args: &Args, store: &dyn Store, rows: &[(usize, f64, f64, f64)]) {
    if rank.is_multiple_of(2) {
        let text: String = rows
            .iter()
            .map(|(s, l, b, bi)| format!("{s} {l} {b} {bi}\n"))
            .collect();
        store
            .set(&format!("p2p/result/{}", rank / 2), text.as_bytes())
            .unwrap();
    }
    if rank != 0 {
        return;
    }
    let pairs = args.nranks / 2;
    let keys: Vec<String> = (0..pairs).map(|p| format!("p2p/result/{p}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    store.wait(&refs, Some(Duration::from_secs(600))).unwrap();
    let all: Vec<Vec<(usize, f64, f64, f64)>> = store
        .multi_get(&refs)
        .unwrap()
        .into_iter()
        .map(|v| {
            String::from_utf8_lossy(&v)
                .lines()
                .map(|l| {
                    let f: Vec<&str> = l.split(' ').collect();
                    (
                        f[0].parse().unwrap(),
                        f[1].parse().unwrap(),
                        f[2].parse().unwrap(),
                        f[3].parse().unwrap(),
                    )
                })
                .collect()
        })
        .collect();
    println!(
        "# tutti-p2p api={} transport={} nranks={} pairs={} (latency = half round trip; bandwidth = one way, window 16 (at most 256 MiB in flight); bidirectional = both ways together)",
        args.api, args.transport, args.nranks, pairs
    );
    print!(
        "{:>10} {:>12} {:>12} {:>12}",
        "size", "lat_us", "bw_GB/s", "bibw_GB/s"
    );
    for p in 1..pairs {
        print!(" {:>12} {:>12}", format!("lat_us[{p}]"), format!("bw[{p}]"));
    }
    println!();
    for (i, (s, l, b, bi)) in all[0].iter().enumerate() {
        print!(
            "{:>10} {:>12.3} {:>12.3} {:>12.3}",
            format_size(*s),
            l * 1e6,
            b,
            bi
        );
        for pair in &all[1..] {
            print!(" {:>12.3} {:>12.3}", pair[i].1 * 1e6, pair[i].2);
        }
        println!();
    }
}

fn pingpong(link: &mut Link, pinger: bool, sbuf: &[u8], rbuf: &mut [u8], iters: usize) {
    let chunk = link.tx.max_message();
    for _ in 0..iters {
        if pinger {
            ops::send(&mut *link.tx, sbuf, chunk, deadline()).unwrap();
            ops::recv(&mut *link.rx, rbuf, deadline()).unwrap();
        } else {
            ops::recv(&mut *link.rx, rbuf, deadline()).unwrap();
            ops::send(&mut *link.tx, sbuf, chunk, deadline()).unwrap();
        }
    }
}

fn stream(link: &mut Link, sender: bool, sbuf: &[u8], rbuf: &mut [u8], window: usize) {
    let chunk = link.tx.max_message();
    let mut ack = [0u8; 1];
    if sender {
        for _ in 0..window {
            ops::send(&mut *link.tx, sbuf, chunk, deadline()).unwrap();
        }
        ops::recv(&mut *link.rx, &mut ack, deadline()).unwrap();
    } else {
        for _ in 0..window {
            ops::recv(&mut *link.rx, rbuf, deadline()).unwrap();
        }
        ops::send(&mut *link.tx, &ack, 1, deadline()).unwrap();
    }
}

/// Messages per bandwidth window: 16, fewer from 32 MiB so that no rank holds more
/// than 256 MiB of them (the async API owns a buffer per message in flight; 16 of
/// 256 MiB each way took 8 GiB per rank and four ranks did not fit in 24 GiB).
fn window_for(size: usize) -> usize {
    ((256 << 20) / size.max(1)).clamp(1, 16)
}

/// The pinger's choice of an iteration count, shared with its partner.
fn agree(store: &dyn Store, what: &str, rank: usize, mine: usize) -> usize {
    let key = format!("p2p/{}/{what}", rank / 2);
    if rank.is_multiple_of(2) {
        store.set(&key, mine.to_string().as_bytes()).unwrap();
        mine
    } else {
        String::from_utf8(store.get(&key).unwrap())
            .unwrap()
            .parse()
            .unwrap()
    }
}

fn wait_count(store: &dyn Store, key: &str, n: usize) {
    while store.add(key, 0).unwrap() < n as i64 {
        std::thread::sleep(Duration::from_millis(2));
    }
}
