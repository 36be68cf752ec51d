//! `tutti-p2p`: point-to-point latency and bandwidth over one transport, like
//! osu_latency and osu_bw, with 2 ranks or several pairs at once.
//!
//! ```text
//! tutti-p2p --transport shm --nranks 2 [-b 8] [-e 256M] [-f 4] [-t 0.3]
//! ```
//!
//! Ranks are processes (this binary re-executes itself); pairs are (0,1), (2,3), ...
//! all measuring at the same time. Latency: half the round trip of a ping-pong.
//! Bandwidth: a window of 16 back-to-back messages one way, then a 1-byte ack.
//! Rank 0 prints pair (0,1)'s table and, with more pairs, the other pairs' figures.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tutti::group::StoreRendezvous;
use tutti::store::{Store, TcpStore};
use tutti::transport::shm::{self, ShmConfig};
use tutti::transport::tcp::{TcpConfig, TcpEndpoint};
use tutti::transport::{Deadline, Link, ops};
use tutti_bench::sizes::{format_size, parse_size};

struct Args {
    transport: String,
    nranks: usize,
    min: usize,
    max: usize,
    factor: usize,
    target: f64,
}

fn usage(err: &str) -> ! {
    eprintln!(
        "tutti-p2p: {err}\nusage: tutti-p2p --transport shm|tcp [--nranks N (even)] [-b MIN] [-e MAX] [-f FACTOR] [-t SECONDS_PER_SIZE]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        transport: "shm".into(),
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
    if !matches!(a.transport.as_str(), "shm" | "tcp") {
        usage("--transport must be shm or tcp");
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
    let rdv = StoreRendezvous(&*store);
    let peer = rank ^ 1;
    let name = format!("rank {peer}");
    let dl = deadline();
    let mut link: Link = match args.transport.as_str() {
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
    };
    let chunk = link.tx.max_message();
    let pinger = rank.is_multiple_of(2);
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
        pingpong(&mut link, pinger, &s, &mut r, chunk, n);
    }
    for &size in &sizes {
        let sbuf = vec![0x5au8; size];
        let mut rbuf = vec![0u8; size];
        // Latency: ping-pong, iteration count calibrated on a first round trip.
        let lat = {
            let t = Instant::now();
            pingpong(&mut link, pinger, &sbuf, &mut rbuf, chunk, 2);
            let one = t.elapsed().as_secs_f64() / 2.0;
            let iters = ((args.target / 2.0 / one.max(1e-7)) as usize).clamp(3, 100_000);
            let iters = agree(&*store, &format!("lat/{size}"), rank, iters);
            let t = Instant::now();
            pingpong(&mut link, pinger, &sbuf, &mut rbuf, chunk, iters);
            t.elapsed().as_secs_f64() / (2.0 * iters as f64)
        };
        // Bandwidth: windows of 16 messages, then an ack.
        let bw = {
            let window = 16;
            let t = Instant::now();
            stream(&mut link, pinger, &sbuf, &mut rbuf, chunk, window);
            let one = t.elapsed().as_secs_f64();
            let loops = ((args.target / 2.0 / one.max(1e-7)) as usize).clamp(2, 10_000);
            let loops = agree(&*store, &format!("bw/{size}"), rank, loops);
            let t = Instant::now();
            for _ in 0..loops {
                stream(&mut link, pinger, &sbuf, &mut rbuf, chunk, window);
            }
            (size * window * loops) as f64 / t.elapsed().as_secs_f64() / 1e9
        };
        rows.push((size, lat, bw));
    }
    if pinger {
        let text: String = rows
            .iter()
            .map(|(s, l, b)| format!("{s} {l} {b}\n"))
            .collect();
        store
            .set(&format!("p2p/result/{}", rank / 2), text.as_bytes())
            .unwrap();
    }
    if rank == 0 {
        let pairs = args.nranks / 2;
        let keys: Vec<String> = (0..pairs).map(|p| format!("p2p/result/{p}")).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        store.wait(&refs, Some(Duration::from_secs(600))).unwrap();
        let all: Vec<Vec<(usize, f64, f64)>> = store
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
                        )
                    })
                    .collect()
            })
            .collect();
        println!(
            "# tutti-p2p transport={} nranks={} pairs={} (latency = half round trip; bandwidth = one way, window 16)",
            args.transport, args.nranks, pairs
        );
        print!("{:>10} {:>12} {:>12}", "size", "lat_us", "bw_GB/s");
        for p in 1..pairs {
            print!(" {:>12} {:>12}", format!("lat_us[{p}]"), format!("bw[{p}]"));
        }
        println!();
        for (i, (s, l, b)) in all[0].iter().enumerate() {
            print!("{:>10} {:>12.3} {:>12.3}", format_size(*s), l * 1e6, b);
            for pair in &all[1..] {
                print!(" {:>12.3} {:>12.3}", pair[i].1 * 1e6, pair[i].2);
            }
            println!();
        }
    }
    store.add("p2p/done", 1).unwrap();
    if rank == 0 {
        wait_count(&*store, "p2p/done", args.nranks);
    }
}

fn pingpong(
    link: &mut Link,
    pinger: bool,
    sbuf: &[u8],
    rbuf: &mut [u8],
    chunk: usize,
    iters: usize,
) {
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

fn stream(
    link: &mut Link,
    sender: bool,
    sbuf: &[u8],
    rbuf: &mut [u8],
    chunk: usize,
    window: usize,
) {
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
