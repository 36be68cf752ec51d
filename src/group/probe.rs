//! The host probe: how fast this host runs the window algorithms, measured once per
//! host (and cached), so that the tuner's choices come from measurements rather than
//! constants tuned on one CPU.
//!
//! At the first group creation on a host, one process (the others wait on a file
//! lock) runs one-shot and two-shot all_reduce between `n` threads (the number of
//! ranks sharing the host, at most 8) over windows of the default geometry, at sizes
//! from 8 KiB to 4 MiB, and keeps, per size, which algorithm was faster. That takes
//! 20-100 ms. The result is cached in `$TMPDIR/tutti-probe-<uid>-<boot id>.txt`
//! (a reboot or a move to another machine measures again), one line per rank count.
//! `TUTTI_PROBE=0` skips the probe (the model's defaults apply), `TUTTI_PROBE=force`
//! measures again. A measurement taken while the host is busy (1-minute load average
//! above its core count: a build, a test suite) serves this process only and is not
//! cached, so a noisy moment does not decide for the rest of the boot.

use std::collections::BTreeMap;
use std::io::{Read, Seek, Write};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tutti_intra as intra;
use tutti_transport::window::{Addr, HostExec, WindowConfig, WindowHub};
use tutti_transport::{Deadline, WaitBudget};

use super::collectives::HostReducer;
use crate::{DataType, ReduceOp};

/// Sizes the probe measures.
const SIZES: [usize; 6] = [8 << 10, 32 << 10, 128 << 10, 512 << 10, 2 << 20, 4 << 20];

/// For one rank count: from which size two-shot beats one-shot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowCrossover {
    /// All-reduces of at least this many bytes run two-shot.
    pub two_shot_from: usize,
}

impl WindowCrossover {
    /// The model's guess when nothing was measured: one-shot reads `n` buffers per
    /// byte reduced, two-shot about three, so two-shot wins from a size that shrinks
    /// with `n`.
    pub fn model(n: usize) -> Self {
        WindowCrossover {
            two_shot_from: if n <= 2 {
                256 << 10
            } else {
                (64 << 10) * 2 / n
            },
        }
    }
}

fn cache() -> &'static Mutex<BTreeMap<usize, WindowCrossover>> {
    static C: OnceLock<Mutex<BTreeMap<usize, WindowCrossover>>> = OnceLock::new();
    C.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// The crossover for `n` ranks sharing this host: measured (or read from the host's
/// cache), else the model's.
pub fn window_crossover(n: usize) -> WindowCrossover {
    let n = n.clamp(2, 8);
    if let Some(c) = cache().lock().unwrap_or_else(|p| p.into_inner()).get(&n) {
        return *c;
    }
    let mode = std::env::var("TUTTI_PROBE").unwrap_or_default();
    let c = if mode.trim() == "0" {
        WindowCrossover::model(n)
    } else {
        cached_or_measured(n, mode.trim() == "force").unwrap_or_else(|e| {
            tracing::debug!(error = %e, "host probe unavailable, using the model");
            WindowCrossover::model(n)
        })
    };
    cache()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(n, c);
    c
}

fn cache_path() -> std::path::PathBuf {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let uid = rustix::process::getuid().as_raw();
    std::env::temp_dir().join(format!("tutti-probe-{uid}-{boot}.txt"))
}

/// Bumped when the algorithms or their copies change what the probe would find, so
/// that a cached result from an older build is measured again (2: the window copies
/// avoid glibc's slow `rep movsb` case, `tutti_transport::copy`; with it, two-shot
/// wins on a Zen 3 where it never did).
const REVISION: u32 = 2;

/// The key of a measurement: tutti's version, the probe's revision, the copy policy,
/// the rank count and the window size.
fn key(n: usize) -> String {
    format!(
        "v{} r{REVISION} copy={:?} n={n} window={}",
        env!("CARGO_PKG_VERSION"),
        tutti_transport::copy::policy(),
        tutti_transport::window::DEFAULT_DATA_BYTES
    )
}

fn cached_or_measured(n: usize, force: bool) -> std::io::Result<WindowCrossover> {
    let path = cache_path();
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(&path)?;
    // One process per host measures; the others wait here, then read its line.
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)?;
    let mut text = String::new();
    file.seek(std::io::SeekFrom::Start(0))?;
    file.read_to_string(&mut text)?;
    let k = key(n);
    if !force
        && let Some(v) = text
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix(&k)?.trim().strip_prefix("two_shot_from="))
            .and_then(|v| v.trim().parse().ok())
    {
        return Ok(WindowCrossover { two_shot_from: v });
    }
    let start = Instant::now();
    let c = measure(n);
    tracing::info!(
        ranks = n,
        two_shot_from = c.two_shot_from,
        took_ms = start.elapsed().as_millis() as u64,
        "host probe: window all_reduce crossover measured"
    );
    if host_is_busy() {
        tracing::debug!("host probe: the host is busy, result not cached");
    } else {
        writeln!(file, "{k} two_shot_from={}", c.two_shot_from)?;
    }
    Ok(c)
}

/// True when the 1-minute load average exceeds the number of cores.
fn host_is_busy() -> bool {
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    load > tutti_transport::cores() as f64
}

/// Times one-shot and two-shot all_reduce on `n` threads at each probe size.
fn measure(n: usize) -> WindowCrossover {
    let hub = WindowHub::new();
    let names: Arc<Vec<String>> = Arc::new((0..n).map(|r| format!("probe thread {r}")).collect());
    let results = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..n)
        .map(|r| {
            let (hub, names, results) = (hub.clone(), names.clone(), results.clone());
            std::thread::Builder::new()
                .name(format!("tutti-probe-{r}"))
                .spawn(move || {
                    let mut cfg = WindowConfig::from_env(n);
                    cfg.data_bytes = tutti_transport::window::DEFAULT_DATA_BYTES;
                    cfg.budget = WaitBudget::for_local_ranks(n);
                    let dl = Deadline::after(Duration::from_secs(30));
                    let Ok(w) = hub.join("probe", r, &names, &cfg, dl) else {
                        return;
                    };
                    let Ok(red) = HostReducer::new(DataType::F32, ReduceOp::Sum, n) else {
                        return;
                    };
                    let mut e = HostExec::new(&w, Some(&red), 4, dl, "probe");
                    let max = SIZES[SIZES.len() - 1];
                    let input = vec![1.0f32; max / 4];
                    let mut output = vec![0f32; max / 4];
                    let (i, o) = (input.as_ptr() as Addr, output.as_mut_ptr() as Addr);
                    let mut mine = Vec::new();
                    for &size in &SIZES {
                        let reps = ((4 << 20) / size).clamp(2, 64);
                        let mut time = |two: bool| {
                            let run = |e: &mut HostExec<'_>| {
                                if two {
                                    intra::all_reduce_two_shot(e, i, o, size)
                                } else {
                                    intra::all_reduce_one_shot(e, i, o, size)
                                }
                            };
                            let _ = run(&mut e);
                            let _ = intra::barrier(&mut e);
                            let t = Instant::now();
                            for _ in 0..reps {
                                if run(&mut e).is_err() {
                                    return f64::INFINITY;
                                }
                            }
                            t.elapsed().as_secs_f64() / reps as f64
                        };
                        // Interleaved, best of two, to shrug off a descheduling.
                        let (a1, b1, a2, b2) = (time(false), time(true), time(false), time(true));
                        mine.push((size, a1.min(a2), b1.min(b2)));
                    }
                    if r == 0 {
                        *results.lock().unwrap_or_else(|p| p.into_inner()) = mine;
                    }
                })
        })
        .collect();
    for t in threads.into_iter().flatten() {
        let _ = t.join();
    }
    let results = results.lock().unwrap_or_else(|p| p.into_inner()).clone();
    tracing::debug!(?results, "host probe: (bytes, one-shot s, two-shot s)");
    if results.is_empty() {
        return WindowCrossover::model(n);
    }
    WindowCrossover {
        two_shot_from: crossover(&results),
    }
}

/// The crossover that loses least over the probed sizes: for each candidate (a probed
/// size, or never), the sum over sizes of the chosen algorithm's time over the best
/// one's. One descheduled sample cannot flip the choice for every larger size, as
/// "the smallest size from which two-shot always wins" would.
fn crossover(results: &[(usize, f64, f64)]) -> usize {
    let cost = |from: usize| -> f64 {
        results
            .iter()
            .map(|&(size, one, two)| {
                let chosen = if size >= from { two } else { one };
                chosen / one.min(two).max(f64::MIN_POSITIVE)
            })
            .sum()
    };
    let candidates = results.iter().map(|r| r.0).chain([usize::MAX]);
    let mut best = (usize::MAX, f64::INFINITY);
    for c in candidates {
        let v = cost(c);
        if v < best.1 - 1e-9 {
            best = (c, v);
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::crossover;

    #[test]
    fn one_noisy_size_does_not_flip_the_crossover() {
        // Two-shot wins from 128 KiB, except one disturbed sample at 2 MiB.
        let r = [
            (8 << 10, 1.0, 1.5),
            (32 << 10, 2.0, 2.4),
            (128 << 10, 8.0, 6.0),
            (512 << 10, 30.0, 20.0),
            (2 << 20, 100.0, 130.0),
            (4 << 20, 300.0, 150.0),
        ];
        assert_eq!(crossover(&r), 128 << 10);
        // One-shot everywhere.
        let r = [(8 << 10, 1.0, 2.0), (4 << 20, 100.0, 200.0)];
        assert_eq!(crossover(&r), usize::MAX);
        // Two-shot everywhere.
        let r = [(8 << 10, 2.0, 1.0), (4 << 20, 200.0, 100.0)];
        assert_eq!(crossover(&r), 8 << 10);
    }
}
