//! tutti-a2av: all_to_all with uneven splits (the MoE dispatch pattern) against the
//! even all_to_all of the same bytes, between local processes.
//!
//! ```text
//! tutti-a2av [--nranks 4] [--transport auto|shm|tcp] [-b 64K] [-e 64M] [-f 4] [-t 0.3]
//! ```
//!
//! At each size S (bytes each rank sends in all), rank r sends to rank p a share of S
//! weighted by `(3r + 5p + 1) % 4` (0 to 3 units: some pairs exchange nothing, others
//! three times the mean), through `all_to_all_single` with its input and output
//! splits; the even row sends S/n to every rank. Every element of the first
//! iteration is checked. Time is the slowest rank's mean; GB/s = S / time (each rank's
//! sent bytes per second, the `algbw` of nccl-tests' alltoall).

use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tutti::store::{Store, TcpStore};
use tutti::{GroupOptions, ProcessGroup};
use tutti_bench::sizes::parse_size;

struct Args {
    nranks: usize,
    transport: String,
    min: usize,
    max: usize,
    factor: usize,
    target: f64,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        nranks: 4,
        transport: "auto".into(),
        min: 64 << 10,
        max: 64 << 20,
        factor: 4,
        target: 0.3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--nranks" | "-n" => a.nranks = val()?.parse().map_err(|_| "bad --nranks")?,
            "--transport" => a.transport = val()?,
            "-b" => a.min = parse_size(&val()?)?,
            "-e" => a.max = parse_size(&val()?)?,
            "-f" => a.factor = val()?.parse().map_err(|_| "bad -f")?,
            "-t" => a.target = val()?.parse().map_err(|_| "bad -t")?,
            "-h" | "--help" => return Err("help".into()),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.nranks < 2 || a.factor < 2 || a.min == 0 || a.min > a.max {
        return Err("need --nranks >= 2, -f >= 2 and 0 < -b <= -e".into());
    }
    Ok(a)
}

/// Units rank `r` sends to rank `p` (0..=3).
fn weight(r: usize, p: usize) -> usize {
    (3 * r + 5 * p + 1) % 4
}

/// Elements rank `r` sends to each rank, for `total` elements in all: uneven
/// (weighted) or even.
fn splits(r: usize, n: usize, total: usize, uneven: bool) -> Vec<usize> {
    if !uneven {
        return vec![total / n; n];
    }
    let units: usize = (0..n).map(|p| weight(r, p)).sum::<usize>().max(1);
    let mut s: Vec<usize> = (0..n).map(|p| total * weight(r, p) / units).collect();
    // The rounding remainder goes to the first non-empty split.
    let rest = total - s.iter().sum::<usize>();
    if let Some(i) = (0..n).find(|&p| weight(r, p) > 0) {
        s[i] += rest;
    }
    s
}

/// The element rank `from` puts at index `i` of its block for rank `to`.
fn value(from: usize, to: usize, i: usize) -> u32 {
    ((from as u32) << 24) ^ ((to as u32) << 16) ^ (i as u32 & 0xffff)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "tutti-a2av: {e}\nusage: tutti-a2av [--nranks N] [--transport auto|shm|tcp] [-b MIN] [-e MAX] [-f FACTOR] [-t SECONDS_PER_SIZE]"
            );
            return ExitCode::from(2);
        }
    };
    match std::env::var("TUTTI_A2AV_RANK") {
        Ok(r) => match r
            .parse()
            .map_err(|_| "bad rank".to_string())
            .and_then(|r| worker(r, &args))
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tutti-a2av: {e}");
                ExitCode::FAILURE
            }
        },
        Err(_) => launch(&args),
    }
}

fn launch(args: &Args) -> ExitCode {
    let port = match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(a) => a.port(),
        Err(e) => {
            eprintln!("tutti-a2av: no free port: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Ok(exe) = std::env::current_exe() else {
        return ExitCode::FAILURE;
    };
    let children: Vec<_> = (0..args.nranks)
        .filter_map(|r| {
            Command::new(&exe)
                .args(std::env::args().skip(1))
                .env("TUTTI_A2AV_RANK", r.to_string())
                .env("TUTTI_A2AV_PORT", port.to_string())
                .env("TUTTI_JOB_TOKEN", format!("a2av-{}", std::process::id()))
                .spawn()
                .ok()
        })
        .collect();
    let mut ok = children.len() == args.nranks;
    for mut c in children {
        ok &= c.wait().map(|s| s.success()).unwrap_or(false);
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn worker(rank: usize, args: &Args) -> Result<(), String> {
    let port: u16 = std::env::var("TUTTI_A2AV_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .ok_or("TUTTI_A2AV_PORT unset")?;
    let store: Arc<dyn Store> = Arc::new(
        TcpStore::builder("127.0.0.1", port)
            .master(rank == 0)
            .timeout(Duration::from_secs(120))
            .connect()
            .map_err(|e| e.to_string())?,
    );
    let opts = GroupOptions {
        transport: args
            .transport
            .parse()
            .map_err(|e: tutti::Error| e.to_string())?,
        ..GroupOptions::default()
    };
    let n = args.nranks;
    let pg = ProcessGroup::from_store(store, rank, n, "a2av", opts).map_err(|e| e.to_string())?;
    if rank == 0 {
        println!(
            "# tutti-a2av nranks={n} transport={} (uneven: rank r sends (3r+5p+1)%4 units to rank p; GB/s = bytes each rank sends / time)",
            args.transport
        );
        println!(
            "{:>12} {:>12} {:>12} {:>12} {:>12} {:>8}",
            "size", "even_us", "even_GB/s", "uneven_us", "uneven_GB/s", "#wrong"
        );
    }
    let mut size = args.min;
    while size <= args.max {
        let total = size / 4;
        let mut row = Vec::new();
        let mut wrong = 0usize;
        for uneven in [false, true] {
            let send = splits(rank, n, total, uneven);
            let recv: Vec<usize> = (0..n).map(|p| splits(p, n, total, uneven)[rank]).collect();
            let mut input = Vec::with_capacity(total);
            for (p, &c) in send.iter().enumerate() {
                input.extend((0..c).map(|i| value(rank, p, i)));
            }
            input.resize(send.iter().sum(), 0);
            let mut output = vec![0u32; recv.iter().sum()];
            let run = |input: &[u32], output: &mut [u32]| {
                pg.all_to_all_single(input, output, &send, &recv)
                    .map_err(|e| e.to_string())
            };
            run(&input, &mut output)?;
            let mut at = 0;
            for (p, &c) in recv.iter().enumerate() {
                wrong += (0..c)
                    .filter(|&i| output[at + i] != value(p, rank, i))
                    .count();
                at += c;
            }
            // Calibrate on one timed call, agree on the largest count, then time.
            let t = Instant::now();
            run(&input, &mut output)?;
            let one = t.elapsed().as_secs_f64();
            let mut iters = vec![((args.target / 2.0 / one.max(1e-7)) as u64).clamp(3, 100_000)];
            pg.all_reduce(&mut iters, tutti::ReduceOp::Max)
                .map_err(|e| e.to_string())?;
            pg.barrier().map_err(|e| e.to_string())?;
            let t = Instant::now();
            for _ in 0..iters[0] {
                run(&input, &mut output)?;
            }
            let mut mean = vec![t.elapsed().as_secs_f64() / iters[0] as f64];
            pg.all_reduce(&mut mean, tutti::ReduceOp::Max)
                .map_err(|e| e.to_string())?;
            row.push(mean[0]);
        }
        let mut w = vec![wrong as u64];
        pg.all_reduce(&mut w, tutti::ReduceOp::Sum)
            .map_err(|e| e.to_string())?;
        if rank == 0 {
            let gbps = |s: f64| size as f64 / s / 1e9;
            println!(
                "{:>12} {:>12.2} {:>12.2} {:>12.2} {:>12.2} {:>8}",
                size,
                row[0] * 1e6,
                gbps(row[0]),
                row[1] * 1e6,
                gbps(row[1]),
                w[0]
            );
        }
        if w[0] > 0 {
            return Err(format!("{} wrong elements at {size} bytes", w[0]));
        }
        size = match size.checked_mul(args.factor) {
            Some(s) => s,
            None => break,
        };
    }
    Ok(())
}
