//! Device collectives with ranks as real processes (and threads) sharing one GPU:
//! every collective, every dtype and valid op, sizes 0, 1, odd, around the device
//! window's round boundaries and 64 MiB, random data, every element compared with the
//! CPU kernels' rank-order fold (bit for bit: the device windows reduce in rank
//! order); the staged path (through pinned host memory, on this host's window or over
//! TCP links, the path of ranks on several hosts); a rank killed mid-collective; stream
//! ordering; the typed API on cudarc buffers; the raw layer's memory-kind checks.
//!
//! Without a GPU every test prints `SKIPPED: <reason>` and passes (`cargo test --no-run`
//! still compiles all of it); with `TUTTI_REQUIRE_GPU=1` a missing GPU fails.

mod gpu_support;
mod ranks;

use std::sync::Arc;
use std::time::{Duration, Instant};

use gpu_support::{Case, data, first_difference, fold};
use rand::Rng;
use tutti::gpu::cudarc::driver::{CudaContext, CudaSlice, CudaStream, DevicePtr};
use tutti::gpu::{self, GpuKernels};
use tutti::group::{DeviceWork, GroupOptions, MemoryKind};
use tutti::{DataType, Error, ProcessGroup, ReduceOp};

/// Window buffers of 64 KiB: even small sizes take several rounds.
const WINDOW_BYTES: usize = 64 << 10;
/// Staging chunks of 32 KiB: the pipelines take several chunks.
const STAGE_BYTES: usize = 32 << 10;

fn env(extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut e = vec![
        ("TUTTI_DEVICE_WINDOW_BYTES", WINDOW_BYTES.to_string()),
        ("TUTTI_DEVICE_STAGE_BYTES", STAGE_BYTES.to_string()),
        ("TUTTI_TIMEOUT_SECS", "120".to_string()),
    ];
    e.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    e
}

fn group() -> ProcessGroup {
    ProcessGroup::from_env(GroupOptions::from_env().unwrap()).unwrap()
}

/// A rank's device: `TUTTI_TEST_RANKS_PER_GPU` ranks per GPU (default: all on GPU 0).
struct Dev {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
}

fn device_for(rank: usize) -> Dev {
    let per_gpu: usize = std::env::var("TUTTI_TEST_RANKS_PER_GPU")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX);
    let count = gpu::device_count().expect("a rank process of a GPU test needs the GPU");
    let ordinal = (rank / per_gpu.max(1)).min(count - 1);
    let ctx = gpu::open_device(ordinal).unwrap();
    let stream = ctx.new_stream().unwrap();
    Dev { ctx, stream }
}

// ------------------------------------------------------------------ the matrix -------

/// How much of the matrix a configuration runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Level {
    /// Every dtype, every valid op, every size, every collective.
    Full,
    /// Every dtype with Sum and one other op; every collective.
    Reduced,
}

/// The data every rank regenerates for every rank.
#[derive(Clone, Copy, Debug)]
struct Inputs {
    /// Floats are small integers (sums exact in any order): for paths that do not
    /// reduce in rank order (TCP links).
    exact: bool,
}

impl Inputs {
    fn of(
        &self,
        dtype: DataType,
        op: Option<ReduceOp>,
        count: usize,
        seed: u64,
        rank: usize,
    ) -> Vec<u8> {
        let mut rng = gpu_support::rng(&[seed, rank as u64, dtype as u64]);
        if !self.exact || dtype.is_integer() {
            return data(dtype, count, Case::Values, &mut rng);
        }
        let prod = matches!(op, Some(ReduceOp::Prod));
        let mut out = Vec::with_capacity(count * dtype.size());
        for _ in 0..count {
            let pick = |rng: &mut rand::rngs::StdRng| -> f32 {
                if prod {
                    [-2.0f32, -1.0, 1.0, 2.0][rng.random_range(0..4)]
                } else {
                    rng.random_range(-3i32..=3) as f32
                }
            };
            let (re, im) = (pick(&mut rng), pick(&mut rng));
            match dtype {
                DataType::F16 => out.extend(half::f16::from_f32(re).to_le_bytes()),
                DataType::BF16 => out.extend(half::bf16::from_f32(re).to_le_bytes()),
                DataType::F32 => out.extend(re.to_le_bytes()),
                DataType::F64 => out.extend((re as f64).to_le_bytes()),
                DataType::F8E4M3 => out.push(tutti::F8E4M3::from_f32(re).to_bits()),
                DataType::F8E5M2 => out.push(tutti::F8E5M2::from_f32(re).to_bits()),
                DataType::C64 => {
                    out.extend(re.to_le_bytes());
                    out.extend(im.to_le_bytes());
                }
                DataType::C128 => {
                    out.extend((re as f64).to_le_bytes());
                    out.extend((im as f64).to_le_bytes());
                }
                _ => unreachable!("integers take the branch above"),
            }
        }
        out
    }
}

struct Ctx<'a> {
    pg: &'a ProcessGroup,
    dev: &'a Dev,
    inputs: Inputs,
    failures: Vec<String>,
    runs: usize,
}

fn upload(dev: &Dev, bytes: &[u8]) -> CudaSlice<u8> {
    if bytes.is_empty() {
        // cudarc cannot allocate 0 bytes everywhere: one spare byte.
        return dev.stream.alloc_zeros::<u8>(1).unwrap();
    }
    dev.stream.clone_htod(bytes).unwrap()
}

fn download(dev: &Dev, buf: &CudaSlice<u8>, len: usize) -> Vec<u8> {
    let mut v = dev.stream.clone_dtoh(buf).unwrap();
    v.truncate(len);
    v
}

/// Poisoned output (0xa5 bytes): every element the collective must write is checked.
fn poisoned(dev: &Dev, len: usize) -> CudaSlice<u8> {
    upload(dev, &vec![0xa5u8; len.max(1)])
}

impl Ctx<'_> {
    fn record(&mut self, what: String, r: Result<(), String>) {
        self.runs += 1;
        if let Err(e) = r {
            self.failures.push(format!("{what}: {e}"));
        }
    }

    fn compare(dtype: DataType, got: &[u8], want: &[u8]) -> Result<(), String> {
        match first_difference(dtype, got, want) {
            None => Ok(()),
            Some(i) => {
                let s = dtype.size();
                let g = got.get(i * s..(i + 1) * s).unwrap_or(&[]);
                let w = want.get(i * s..(i + 1) * s).unwrap_or(&[]);
                Err(format!(
                    "element {i} of {}: want {w:02x?}, got {g:02x?}",
                    want.len() / s
                ))
            }
        }
    }

    fn wait(w: tutti::Result<DeviceWork>) -> Result<(), String> {
        w.map_err(|e| format!("enqueue: {e}"))?
            .wait()
            .map_err(|e| format!("wait: {e}"))
    }

    fn all_reduce(
        &mut self,
        dtype: DataType,
        op: ReduceOp,
        count: usize,
        in_place: bool,
        seed: u64,
    ) {
        let (pg, dev) = (self.pg, self.dev);
        let (n, r) = (pg.size(), pg.rank());
        let ins: Vec<Vec<u8>> = (0..n)
            .map(|k| self.inputs.of(dtype, Some(op), count, seed, k))
            .collect();
        let refs: Vec<&[u8]> = ins.iter().map(Vec::as_slice).collect();
        let want = fold(dtype, op, &refs, n);
        let len = count * dtype.size();
        let r = (|| {
            let input = upload(dev, &ins[r]);
            let out = if in_place {
                None
            } else {
                Some(poisoned(dev, len))
            };
            {
                let (pi, _gi) = input.device_ptr(&dev.stream);
                let po = match &out {
                    Some(o) => o.device_ptr(&dev.stream).0,
                    None => pi,
                };
                // SAFETY: both buffers hold `len` bytes of this device, live until
                // after the wait; equal (in place) or distinct allocations.
                Self::wait(unsafe {
                    pg.all_reduce_cuda(pi, po, count, dtype, op, dev.stream.cu_stream())
                })?;
            }
            let got = download(dev, out.as_ref().unwrap_or(&input), len);
            Self::compare(dtype, &got, &want)
        })();
        self.record(
            format!("all_reduce {dtype} {op} count={count} in_place={in_place}"),
            r,
        );
    }

    fn reduce_scatter(&mut self, dtype: DataType, op: ReduceOp, count: usize, seed: u64) {
        let (pg, dev) = (self.pg, self.dev);
        let (n, r) = (pg.size(), pg.rank());
        let size = dtype.size();
        let ins: Vec<Vec<u8>> = (0..n)
            .map(|k| self.inputs.of(dtype, Some(op), n * count, seed, k))
            .collect();
        let blocks: Vec<&[u8]> = ins
            .iter()
            .map(|x| &x[r * count * size..(r + 1) * count * size])
            .collect();
        let want = fold(dtype, op, &blocks, n);
        let r = (|| {
            let input = upload(dev, &ins[r]);
            let out = poisoned(dev, count * size);
            {
                let (pi, _gi) = input.device_ptr(&dev.stream);
                let (po, _go) = out.device_ptr(&dev.stream);
                // SAFETY: `input` holds n * count elements, `out` count, both live
                // until after the wait, distinct allocations.
                Self::wait(unsafe {
                    pg.reduce_scatter_cuda(pi, po, count, dtype, op, dev.stream.cu_stream())
                })?;
            }
            Self::compare(dtype, &download(dev, &out, count * size), &want)
        })();
        self.record(format!("reduce_scatter {dtype} {op} count={count}"), r);
    }

    fn reduce(&mut self, dtype: DataType, op: ReduceOp, count: usize, seed: u64) {
        let (pg, dev) = (self.pg, self.dev);
        let (n, me) = (pg.size(), pg.rank());
        let root = count % n;
        let ins: Vec<Vec<u8>> = (0..n)
            .map(|k| self.inputs.of(dtype, Some(op), count, seed, k))
            .collect();
        let refs: Vec<&[u8]> = ins.iter().map(Vec::as_slice).collect();
        let want = if me == root {
            fold(dtype, op, &refs, n)
        } else {
            ins[me].clone()
        };
        let r = (|| {
            let buf = upload(dev, &ins[me]);
            {
                let (p, _g) = buf.device_ptr(&dev.stream);
                // SAFETY: `buf` holds `count` elements, live until after the wait; in
                // place.
                Self::wait(unsafe {
                    pg.reduce_cuda(p, p, count, dtype, op, root, dev.stream.cu_stream())
                })?;
            }
            Self::compare(dtype, &download(dev, &buf, count * dtype.size()), &want)
        })();
        self.record(format!("reduce {dtype} {op} count={count} root={root}"), r);
    }

    fn all_gather(&mut self, dtype: DataType, count: usize, seed: u64) {
        let (pg, dev) = (self.pg, self.dev);
        let (n, me) = (pg.size(), pg.rank());
        let ins: Vec<Vec<u8>> = (0..n)
            .map(|k| self.inputs.of(dtype, None, count, seed, k))
            .collect();
        let want = ins.concat();
        let len = n * count * dtype.size();
        let r = (|| {
            let input = upload(dev, &ins[me]);
            let out = poisoned(dev, len);
            {
                let (pi, _gi) = input.device_ptr(&dev.stream);
                let (po, _go) = out.device_ptr(&dev.stream);
                // SAFETY: `input` holds count elements, `out` n * count, distinct, live
                // until after the wait.
                Self::wait(unsafe {
                    pg.all_gather_cuda(pi, po, count, dtype, dev.stream.cu_stream())
                })?;
            }
            Self::compare(dtype, &download(dev, &out, len), &want)
        })();
        self.record(format!("all_gather {dtype} count={count}"), r);
    }

    fn broadcast(&mut self, dtype: DataType, count: usize, seed: u64) {
        let (pg, dev) = (self.pg, self.dev);
        let (n, me) = (pg.size(), pg.rank());
        let root = (count + 1) % n;
        let mine = self.inputs.of(dtype, None, count, seed, me);
        let want = self.inputs.of(dtype, None, count, seed, root);
        let r = (|| {
            let buf = upload(dev, &mine);
            {
                let (p, _g) = buf.device_ptr(&dev.stream);
                // SAFETY: `buf` holds `count` elements, live until after the wait.
                Self::wait(unsafe {
                    pg.broadcast_cuda(p, count, dtype, root, dev.stream.cu_stream())
                })?;
            }
            Self::compare(dtype, &download(dev, &buf, count * dtype.size()), &want)
        })();
        self.record(format!("broadcast {dtype} count={count} root={root}"), r);
    }

    fn all_to_all(&mut self, dtype: DataType, count: usize, seed: u64) {
        let (pg, dev) = (self.pg, self.dev);
        let (n, me) = (pg.size(), pg.rank());
        let size = dtype.size();
        let ins: Vec<Vec<u8>> = (0..n)
            .map(|k| self.inputs.of(dtype, None, n * count, seed, k))
            .collect();
        let want: Vec<u8> = (0..n)
            .flat_map(|k| ins[k][me * count * size..(me + 1) * count * size].to_vec())
            .collect();
        let len = n * count * size;
        let r = (|| {
            let input = upload(dev, &ins[me]);
            let out = poisoned(dev, len);
            {
                let (pi, _gi) = input.device_ptr(&dev.stream);
                let (po, _go) = out.device_ptr(&dev.stream);
                // SAFETY: both hold n * count elements, distinct, live until after the
                // wait.
                Self::wait(unsafe {
                    pg.all_to_all_cuda(pi, po, count, dtype, dev.stream.cu_stream())
                })?;
            }
            Self::compare(dtype, &download(dev, &out, len), &want)
        })();
        self.record(format!("all_to_all {dtype} count={count}"), r);
    }

    /// Gather and scatter through the typed API (bytes: they do not reduce).
    fn gather_scatter(&mut self, dtype: DataType, count: usize, seed: u64) {
        let (pg, dev) = (self.pg, self.dev);
        let (n, me) = (pg.size(), pg.rank());
        let root = (count + 2) % n;
        let len = count * dtype.size();
        let ins: Vec<Vec<u8>> = (0..n)
            .map(|k| self.inputs.of(dtype, None, count, seed, k))
            .collect();
        let r = (|| {
            let input = upload(dev, &ins[me]);
            let mut out = poisoned(dev, if me == root { n * len } else { 1 });
            let input_view = input.slice(..len);
            if me == root {
                let mut ov = out.slice_mut(..n * len);
                Self::wait(pg.gather_device(&input_view, &mut ov, root, &dev.stream))?;
            } else {
                Self::wait(pg.gather_device(&input_view, &mut out, root, &dev.stream))?;
            }
            if me == root {
                Self::compare(dtype, &download(dev, &out, n * len), &ins.concat())?;
            }
            // Scatter the root's gathered buffer back out.
            let src = if me == root {
                upload(dev, &ins.concat())
            } else {
                upload(dev, &[])
            };
            let mut back = poisoned(dev, len);
            {
                let src_view = src.slice(..if me == root { n * len } else { 0 });
                let mut back_view = back.slice_mut(..len);
                Self::wait(pg.scatter_device(&src_view, &mut back_view, root, &dev.stream))?;
            }
            Self::compare(dtype, &download(dev, &back, len), &ins[me])
        })();
        self.record(
            format!("gather/scatter {dtype} count={count} root={root}"),
            r,
        );
    }
}

fn ops(dtype: DataType, level: Level) -> Vec<ReduceOp> {
    let all = ReduceOp::valid_for(dtype, 0.37);
    match level {
        Level::Full => all,
        Level::Reduced => {
            let other = if dtype.is_integer() {
                ReduceOp::BXor
            } else {
                ReduceOp::Avg
            };
            all.into_iter()
                .filter(|&o| o == ReduceOp::Sum || o == other)
                .collect()
        }
    }
}

/// Sizes in elements: empty, one, odd, around the window's round boundaries.
fn sizes(dtype: DataType, n: usize) -> Vec<usize> {
    let w = WINDOW_BYTES / dtype.size();
    let mut v = vec![0, 1, 7, 1023, w / n + 1, w - 1, w, w + 1, 2 * w + 3];
    v.sort_unstable();
    v.dedup();
    v
}

/// The whole matrix on this rank; panics listing the failures.
fn matrix(pg: &ProcessGroup, dev: &Dev, level: Level, inputs: Inputs, large: bool) {
    let mut c = Ctx {
        pg,
        dev,
        inputs,
        failures: Vec::new(),
        runs: 0,
    };
    let n = pg.size();
    let start = Instant::now();
    let mut seed = 0u64;
    for dtype in DataType::ALL {
        for count in sizes(dtype, n) {
            for op in ops(dtype, level) {
                seed += 1;
                c.all_reduce(dtype, op, count, seed.is_multiple_of(2), seed);
                c.reduce_scatter(dtype, op, count, seed);
                c.reduce(dtype, op, count, seed);
            }
            seed += 1;
            c.all_gather(dtype, count, seed);
            c.broadcast(dtype, count, seed);
            c.all_to_all(dtype, count, seed);
            c.gather_scatter(dtype, count, seed);
        }
    }
    // A device barrier, in stream order.
    c.record("barrier".into(), Ctx::wait(pg.barrier_device(&dev.stream)));
    if large {
        // 64 MiB: many rounds of the largest windows' worth.
        for (dtype, op) in [
            (DataType::F32, ReduceOp::Sum),
            (DataType::BF16, ReduceOp::Sum),
            (DataType::I32, ReduceOp::Sum),
        ] {
            seed += 1;
            let count = (64 << 20) / dtype.size();
            c.all_reduce(dtype, op, count, true, seed);
        }
    }
    eprintln!(
        "rank {}: {} device collectives in {:?}, {} wrong (path: {})",
        pg.rank(),
        c.runs,
        start.elapsed(),
        c.failures.len(),
        pg.device_path().unwrap_or_default()
    );
    assert!(
        c.failures.is_empty(),
        "rank {}: {} of {} device collectives differ from the CPU reference:\n{}",
        pg.rank(),
        c.failures.len(),
        c.runs,
        c.failures
            .iter()
            .take(25)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Runs `matrix` in `n` rank processes with `extra` environment; checks the path.
fn matrix_test(
    name: &str,
    n: usize,
    extra: &[(&'static str, &str)],
    level: Level,
    inputs: Inputs,
    large: bool,
    path: &str,
) {
    if let Some(rank) = ranks::worker_rank() {
        let pg = group();
        let dev = device_for(rank);
        matrix(&pg, &dev, level, inputs, large);
        let got = pg.device_path().unwrap_or_default();
        assert!(
            got.starts_with(path),
            "device path {got:?}, expected {path:?}"
        );
        pg.barrier().unwrap();
        return;
    }
    if gpu_support::devices().is_none() {
        return;
    }
    let _serial = ranks::serial();
    ranks::run_ranks(name, n, &env(extra), Duration::from_secs(600));
}

const RANDOM: Inputs = Inputs { exact: false };
const EXACT: Inputs = Inputs { exact: true };

#[test]
fn device_collectives_2_ranks_on_one_gpu() {
    matrix_test(
        "device_collectives_2_ranks_on_one_gpu",
        2,
        &[],
        Level::Full,
        RANDOM,
        true,
        "window",
    );
}

#[test]
fn device_collectives_3_ranks_on_one_gpu() {
    matrix_test(
        "device_collectives_3_ranks_on_one_gpu",
        3,
        &[],
        Level::Full,
        RANDOM,
        false,
        "window",
    );
}

#[test]
fn device_collectives_4_ranks_on_one_gpu() {
    matrix_test(
        "device_collectives_4_ranks_on_one_gpu",
        4,
        &[],
        Level::Full,
        RANDOM,
        true,
        "window",
    );
}

/// Two-shot all_reduce forced (the tuner picks one-shot below 256 KiB).
#[test]
fn device_collectives_two_shot_4_ranks() {
    matrix_test(
        "device_collectives_two_shot_4_ranks",
        4,
        &[("TUTTI_ALGO", "twoshot")],
        Level::Reduced,
        RANDOM,
        false,
        "window",
    );
}

/// Staging through pinned memory on this host's (host) window: rank-order sums.
#[test]
fn device_collectives_staged_on_one_host() {
    matrix_test(
        "device_collectives_staged_on_one_host",
        3,
        &[("TUTTI_DEVICE_PATH", "staged")],
        Level::Reduced,
        RANDOM,
        false,
        "staged",
    );
}

/// Staging over TCP links: the path of ranks on different hosts (floats exact).
#[test]
fn device_collectives_staged_over_tcp() {
    matrix_test(
        "device_collectives_staged_over_tcp",
        2,
        &[("TUTTI_TRANSPORT", "tcp")],
        Level::Reduced,
        EXACT,
        true,
        "staged",
    );
}

/// One rank per GPU (needs 2 GPUs).
#[test]
fn device_collectives_one_rank_per_gpu() {
    if ranks::worker_rank().is_none() {
        match gpu_support::devices() {
            None => return,
            Some(n) if n < 2 => {
                eprintln!("SKIPPED: one rank per GPU needs 2 GPUs, this machine has {n}");
                return;
            }
            Some(_) => {}
        }
    }
    matrix_test(
        "device_collectives_one_rank_per_gpu",
        2,
        &[("TUTTI_TEST_RANKS_PER_GPU", "1")],
        Level::Reduced,
        RANDOM,
        false,
        "",
    );
}

/// Ranks as threads of one process on one GPU (one context, one stream each).
#[test]
fn device_collectives_threads_on_one_gpu() {
    if gpu_support::devices().is_none() {
        return;
    }
    // The default device window (32 MiB buffers): this process's environment is
    // shared with the other tests.
    let opts = GroupOptions::from_env().unwrap();
    let results = ProcessGroup::run_threads(3, opts, |pg| {
        let dev = device_for(0);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            matrix(&pg, &dev, Level::Reduced, RANDOM, false)
        }))
        .map_err(|p| {
            p.downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "panic".into())
        })
    })
    .unwrap();
    for (r, res) in results.into_iter().enumerate() {
        assert!(res.is_ok(), "thread rank {r}: {}", res.unwrap_err());
    }
}

// ------------------------------------------------------------------ failures ---------

/// Rank 2 of 4 kills itself 30 ms into a stream of 64 MiB device all_reduces: the
/// others must fail within 5 s, naming it among the ranks that never arrived, and
/// refuse further operations.
#[test]
fn sigkill_of_one_rank_mid_device_all_reduce_fails_the_others_within_5s() {
    const NAME: &str = "sigkill_of_one_rank_mid_device_all_reduce_fails_the_others_within_5s";
    if let Some(rank) = ranks::worker_rank() {
        let pg = group();
        let dev = device_for(rank);
        let mut buf = dev.stream.alloc_zeros::<f32>(16 << 20).unwrap();
        pg.all_reduce_device(&mut buf, ReduceOp::Sum, &dev.stream)
            .unwrap()
            .wait()
            .unwrap();
        pg.barrier().unwrap();
        if rank == 2 {
            std::thread::spawn(|| {
                std::thread::sleep(Duration::from_millis(30));
                rustix::process::kill_process(
                    rustix::process::getpid(),
                    rustix::process::Signal::KILL,
                )
                .unwrap();
            });
        }
        let start = Instant::now();
        let mut last = Ok(());
        for _ in 0..200 {
            last = pg
                .all_reduce_device(&mut buf, ReduceOp::Sum, &dev.stream)
                .and_then(|w| w.wait());
            if last.is_err() {
                break;
            }
        }
        let took = start.elapsed();
        let err = last.expect_err("the device all_reduce must fail once rank 2 is dead");
        eprintln!("rank {rank}: {err} (after {took:?})");
        assert!(took < Duration::from_secs(5), "rank {rank} took {took:?}");
        let inner = match &err {
            Error::Shared(e) => &**e,
            e => e,
        };
        match inner {
            Error::Collective {
                op: "all_reduce",
                missing_ranks,
                ..
            } => assert!(
                missing_ranks.contains(&2) || err.to_string().contains("rank 2"),
                "{err}"
            ),
            // Reading a dead peer's device memory may also poison this context.
            Error::Cuda { .. } => {}
            other => panic!("unexpected error {other}"),
        }
        let again = pg
            .all_reduce_device(&mut buf, ReduceOp::Sum, &dev.stream)
            .unwrap_err();
        assert!(matches!(again, Error::GroupFailed { .. }), "{again}");
        if rank == 0 {
            std::thread::sleep(Duration::from_millis(1500));
        }
        return;
    }
    if gpu_support::devices().is_none() {
        return;
    }
    let _serial = ranks::serial();
    let outs = ranks::wait_all(ranks::spawn(NAME, 4, &env(&[])), Duration::from_secs(120));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(outs[2].status.signal(), Some(9));
    let survivors: Vec<_> = [0, 1, 3].iter().map(|&r| outs[r].clone()).collect();
    ranks::check_success("device sigkill survivors", &survivors);
}

// ------------------------------------------------------------------ ordering ---------

/// The collective waits for a kernel queued before it on the caller's stream: 64
/// additions of 1 into the buffer (each a kernel launch over 16M elements) then an
/// all_reduce; every element must be `64 * n`, never a partial sum.
#[test]
fn device_collective_waits_for_work_queued_before_it() {
    const NAME: &str = "device_collective_waits_for_work_queued_before_it";
    if let Some(rank) = ranks::worker_rank() {
        let pg = group();
        let dev = device_for(rank);
        let kernels = GpuKernels::load(&dev.ctx).unwrap();
        let count = 16 << 20;
        let ones = dev.stream.clone_htod(&vec![1.0f32; count]).unwrap();
        for round in 0..3 {
            let mut buf = dev.stream.alloc_zeros::<f32>(count).unwrap();
            dev.stream.synchronize().unwrap();
            for _ in 0..64 {
                kernels
                    .reduce_inplace(&dev.stream, ReduceOp::Sum, &mut buf, &ones)
                    .unwrap();
            }
            let work = pg
                .all_reduce_device(&mut buf, ReduceOp::Sum, &dev.stream)
                .unwrap();
            // Work queued after it sees the result: add 1 more.
            kernels
                .reduce_inplace(&dev.stream, ReduceOp::Sum, &mut buf, &ones)
                .unwrap();
            work.wait().unwrap();
            let got = dev.stream.clone_dtoh(&buf).unwrap();
            let want = (64 * pg.size() + 1) as f32;
            let bad = got.iter().filter(|&&x| x != want).count();
            assert_eq!(
                bad,
                0,
                "round {round}: {bad} elements differ from {want} (first: {:?})",
                got.iter().find(|&&x| x != want)
            );
        }
        pg.barrier().unwrap();
        return;
    }
    if gpu_support::devices().is_none() {
        return;
    }
    let _serial = ranks::serial();
    ranks::run_ranks(NAME, 2, &env(&[]), Duration::from_secs(300));
}

// ------------------------------------------------------------------ typed API --------

/// The typed API on cudarc buffers (f32, bf16; slices and views; in place and into),
/// and DeviceWork's event: another stream waits for the collective.
#[test]
fn typed_device_api_on_cudarc_buffers() {
    const NAME: &str = "typed_device_api_on_cudarc_buffers";
    if let Some(rank) = ranks::worker_rank() {
        let pg = group();
        let dev = device_for(rank);
        let n = pg.size();
        let s = &dev.stream;
        let x: Vec<f32> = (0..1000).map(|i| (i * (rank + 1)) as f32).collect();
        let mut buf = s.clone_htod(&x).unwrap();
        pg.all_reduce_device(&mut buf, ReduceOp::Max, s)
            .unwrap()
            .wait()
            .unwrap();
        let want: Vec<f32> = (0..1000).map(|i| (i * n) as f32).collect();
        assert_eq!(s.clone_dtoh(&buf).unwrap(), want);

        let input = s.clone_htod(&vec![half::bf16::from_f32(1.5); 333]).unwrap();
        let mut out = s.alloc_zeros::<half::bf16>(333).unwrap();
        let work = pg
            .all_reduce_device_into(&input, &mut out, ReduceOp::Sum, s)
            .unwrap();
        let other = dev.ctx.new_stream().unwrap();
        work.stream_wait(&other).unwrap();
        let got = other.clone_dtoh(&out).unwrap();
        assert!(
            got.iter()
                .all(|&v| v == half::bf16::from_f32(1.5 * n as f32)),
            "{:?}",
            &got[..4]
        );
        assert!(work.is_completed());

        // A view of part of a buffer.
        let mut big = s.clone_htod(&vec![2i32; 100]).unwrap();
        {
            let mut view = big.slice_mut(10..20);
            pg.all_reduce_device(&mut view, ReduceOp::Prod, s)
                .unwrap()
                .wait()
                .unwrap();
        }
        let got = s.clone_dtoh(&big).unwrap();
        assert!(got[10..20].iter().all(|&v| v == 1 << n));
        assert!(got[..10].iter().chain(&got[20..]).all(|&v| v == 2));

        // Bad input is an error before anything is enqueued, and the group goes on.
        let mut c = s.alloc_zeros::<f32>(4).unwrap();
        let e = pg.all_reduce_device(&mut c, ReduceOp::BAnd, s).unwrap_err();
        assert!(matches!(e, Error::InvalidOp { .. }), "{e}");
        let short = s.alloc_zeros::<f32>(3).unwrap();
        let mut o = s.alloc_zeros::<f32>(3 * n + 1).unwrap();
        let e = pg.all_gather_device(&short, &mut o, s).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
        let e = pg.broadcast_device(&mut o, n, s).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
        pg.barrier_device(s).unwrap().wait().unwrap();
        pg.barrier().unwrap();
        return;
    }
    if gpu_support::devices().is_none() {
        return;
    }
    let _serial = ranks::serial();
    ranks::run_ranks(NAME, 2, &env(&[]), Duration::from_secs(300));
}

// ------------------------------------------------------------------ raw layer --------

/// The raw layer's memory kinds: device pointers are detected as such, the `*_raw`
/// calls run device memory on the device path, and a false claim (host memory as
/// device memory, device memory as host memory) is `MemoryMismatch`.
#[test]
fn raw_layer_detects_memory_kinds() {
    const NAME: &str = "raw_layer_detects_memory_kinds";
    if let Some(rank) = ranks::worker_rank() {
        let pg = group();
        let dev = device_for(rank);
        let n = pg.size();
        let s = &dev.stream;
        let ordinal = dev.ctx.ordinal();
        let buf = s.clone_htod(&vec![3u64; 64]).unwrap();
        let (p, _g) = buf.device_ptr(s);
        assert_eq!(
            MemoryKind::of(p as *const std::ffi::c_void).unwrap(),
            MemoryKind::Cuda { device: ordinal }
        );
        // From a thread that never made a context current, too.
        let addr = p as usize;
        let kind = std::thread::spawn(move || MemoryKind::of(addr as *const std::ffi::c_void))
            .join()
            .unwrap();
        assert_eq!(kind.unwrap(), MemoryKind::Cuda { device: ordinal });
        s.synchronize().unwrap();
        // SAFETY: `buf` holds 64 u64 of this device, live until the call returned
        // (the *_raw calls wait).
        unsafe {
            pg.all_reduce_raw(
                p as *const std::ffi::c_void,
                p as *mut std::ffi::c_void,
                64,
                DataType::U64,
                ReduceOp::Sum,
                MemoryKind::Cuda { device: ordinal },
            )
        }
        .unwrap();
        assert!(
            s.clone_dtoh(&buf)
                .unwrap()
                .iter()
                .all(|&v| v == 3 * n as u64)
        );
        // Device memory claimed as host memory.
        // SAFETY: rejected before any access.
        let e = unsafe {
            pg.all_reduce_raw(
                p as *const std::ffi::c_void,
                p as *mut std::ffi::c_void,
                64,
                DataType::U64,
                ReduceOp::Sum,
                MemoryKind::Host,
            )
        }
        .unwrap_err();
        assert!(
            matches!(
                e,
                Error::MemoryMismatch {
                    claimed: MemoryKind::Host,
                    actual: MemoryKind::Cuda { .. },
                    ..
                }
            ),
            "{e}"
        );
        // Host memory passed to the device layer.
        let host = vec![1u64; 64];
        // SAFETY: rejected before any access.
        let e = unsafe {
            pg.all_reduce_cuda(
                host.as_ptr() as u64,
                p,
                64,
                DataType::U64,
                ReduceOp::Sum,
                s.cu_stream(),
            )
        }
        .unwrap_err();
        assert!(
            matches!(
                e,
                Error::MemoryMismatch {
                    buffer: "send",
                    actual: MemoryKind::Host,
                    ..
                }
            ),
            "{e}"
        );
        pg.barrier().unwrap();
        return;
    }
    if gpu_support::devices().is_none() {
        return;
    }
    let _serial = ranks::serial();
    ranks::run_ranks(NAME, 2, &env(&[]), Duration::from_secs(300));
}

/// Without a GPU too: host memory claimed as CUDA memory is an error naming the buffer
/// (and the host path still runs host memory).
#[test]
fn host_memory_claimed_as_device_memory_is_an_error() {
    let groups = ProcessGroup::threads(1, GroupOptions::default()).unwrap();
    let pg = &groups[0];
    let mut v = vec![1.0f32; 16];
    let p = v.as_mut_ptr().cast::<std::ffi::c_void>();
    assert_eq!(MemoryKind::of(p).unwrap(), MemoryKind::Host);
    // SAFETY: `v` holds 16 f32; the call is rejected before any access.
    let e = unsafe {
        pg.all_reduce_raw(
            p,
            p,
            16,
            DataType::F32,
            ReduceOp::Sum,
            MemoryKind::Cuda { device: 0 },
        )
    }
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::MemoryMismatch {
                buffer: "send",
                claimed: MemoryKind::Cuda { device: 0 },
                actual: MemoryKind::Host,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("host memory"), "{e}");
    // SAFETY: as above, for broadcast.
    let e = unsafe { pg.broadcast_raw(p, 16, DataType::F32, 0, MemoryKind::Cuda { device: 0 }) }
        .unwrap_err();
    assert!(
        matches!(e, Error::MemoryMismatch { buffer: "buf", .. }),
        "{e}"
    );
    // The host path is unchanged.
    // SAFETY: `v` holds 16 f32, exclusively borrowed for the call.
    unsafe { pg.all_reduce_raw(p, p, 16, DataType::F32, ReduceOp::Sum, MemoryKind::Host) }.unwrap();
    assert_eq!(v, vec![1.0f32; 16]);
    // The device layer refuses host pointers (without a GPU: host memory; with one:
    // the same).
    // SAFETY: rejected before any access.
    let e = unsafe {
        pg.all_reduce_cuda(
            v.as_ptr() as u64,
            v.as_ptr() as u64,
            16,
            DataType::F32,
            ReduceOp::Sum,
            std::ptr::null_mut(),
        )
    }
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::MemoryMismatch {
                actual: MemoryKind::Host,
                ..
            }
        ),
        "{e}"
    );
}
