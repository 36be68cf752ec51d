//! `tutti-gpu-bw`: the GPU's ceilings and tutti's reduction kernels against them.
//!
//! ```text
//! tutti-gpu-bw [--probe] [--device N] [--bytes 256M] [--iters 20]
//! ```
//!
//! - `--probe`: the CUDA features the device collectives use, one line each;
//! - the device copy bandwidth (cuMemcpyDtoDAsync of `--bytes`, bytes read plus
//!   written per second);
//! - tutti's reduction kernels on f32 and bf16 Sum (the binary step `dst = a + b`,
//!   and the n-source fold over 2, 4 and 8 sources), bytes read plus written per
//!   second, and their ratio to the copy bandwidth (target: at least 90%).
//!
//! Each figure is the median of `--iters` runs timed with CUDA events, after warm-up,
//! on random (non-zero) data.

use std::process::ExitCode;

use tutti::gpu::cudarc::driver::sys::CUevent_flags;
use tutti::gpu::cudarc::driver::{CudaContext, CudaSlice, CudaStream};
use tutti::gpu::{self, GpuKernels};
use tutti::{DataType, ReduceOp};

struct Args {
    probe: bool,
    device: usize,
    bytes: usize,
    iters: usize,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        probe: false,
        device: 0,
        bytes: 256 << 20,
        iters: 20,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--probe" => a.probe = true,
            "--device" => {
                a.device = value("--device")?
                    .parse()
                    .map_err(|e| format!("--device: {e}"))?
            }
            "--bytes" => a.bytes = tutti_bench::sizes::parse_size(&value("--bytes")?)?,
            "--iters" => {
                a.iters = value("--iters")?
                    .parse()
                    .map_err(|e| format!("--iters: {e}"))?
            }
            "-h" | "--help" => {
                println!(
                    "tutti-gpu-bw [--probe] [--device N] [--bytes 256M] [--iters 20]\n\
                     Device copy bandwidth and tutti's reduction kernels (f32, bf16 Sum) against it."
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    if a.bytes < 4096 || a.iters == 0 {
        return Err("--bytes must be at least 4K and --iters at least 1".into());
    }
    Ok(a)
}

type Res<T> = Result<T, String>;

fn s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Median seconds of `iters` runs of `f`, each timed with a pair of events.
fn time(
    ctx: &std::sync::Arc<CudaContext>,
    stream: &CudaStream,
    iters: usize,
    mut f: impl FnMut() -> Res<()>,
) -> Res<f64> {
    for _ in 0..3 {
        f()?;
    }
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let start = ctx
            .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(s)?;
        let end = ctx
            .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(s)?;
        start.record(stream).map_err(s)?;
        f()?;
        end.record(stream).map_err(s)?;
        times.push(f64::from(start.elapsed_ms(&end).map_err(s)?) / 1e3);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok(times[times.len() / 2])
}

/// `n` bytes of pseudo-random data valid for `dtype` (moderate floats, no NaN).
fn random(dtype: DataType, n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let v = (next() % 2001) as f32 / 100.0 - 10.0;
        match dtype {
            DataType::BF16 => out.extend(half::bf16::from_f32(v).to_le_bytes()),
            _ => out.extend(v.to_le_bytes()),
        }
    }
    out.truncate(n);
    out
}

fn run(a: &Args) -> Res<()> {
    if a.probe {
        println!("# tutti-gpu-bw --probe: device {}", a.device);
        let mut failed = 0;
        for c in gpu::probe(a.device) {
            match c.result {
                Ok(v) => println!("ok      {:<58} {v}", c.name),
                Err(e) => {
                    failed += 1;
                    println!("FAILED  {:<58} {e}", c.name)
                }
            }
        }
        println!("# {failed} check(s) failed");
        return if failed == 0 {
            Ok(())
        } else {
            Err(format!("{failed} probe check(s) failed"))
        };
    }
    let ctx = gpu::open_device(a.device).map_err(s)?;
    let kernels = GpuKernels::load(&ctx).map_err(s)?;
    let stream = ctx.new_stream().map_err(s)?;
    let n = a.bytes;
    println!(
        "# tutti-gpu-bw: device {} {} ({} SMs), {} MiB buffers, median of {} runs\n# kernels: {:?}, {}",
        a.device,
        ctx.name().unwrap_or_default(),
        kernels.sm_count(),
        n >> 20,
        a.iters,
        kernels.origin(),
        gpu::kernel_image().how
    );
    let upload = |bytes: &[u8]| -> Res<CudaSlice<u8>> { stream.clone_htod(bytes).map_err(s) };
    let src = upload(&random(DataType::F32, n, 1))?;
    let mut dst = stream.alloc_zeros::<u8>(n).map_err(s)?;
    let copy = time(&ctx, &stream, a.iters, || {
        stream.memcpy_dtod(&src, &mut dst).map_err(s)
    })?;
    let copy_gbs = 2.0 * n as f64 / copy / 1e9;
    println!(
        "{:<28} {:>6} {:>8} {:>12} {:>10} {:>9}",
        "# operation", "dtype", "sources", "time (us)", "GB/s", "vs copy"
    );
    println!(
        "{:<28} {:>6} {:>8} {:>12.1} {:>10.1} {:>8.1}%",
        "copy (cuMemcpyDtoD)",
        "-",
        1,
        copy * 1e6,
        copy_gbs,
        100.0
    );
    let mut worst: f64 = f64::INFINITY;
    for dtype in [DataType::F32, DataType::BF16] {
        let srcs: Vec<CudaSlice<u8>> = (0..8)
            .map(|k| upload(&random(dtype, n, 100 + k)))
            .collect::<Res<_>>()?;
        let t = time(&ctx, &stream, a.iters, || {
            kernels
                .reduce_bytes(&stream, dtype, ReduceOp::Sum, &mut dst, &srcs[0], &srcs[1])
                .map_err(s)
        })?;
        let gbs = 3.0 * n as f64 / t / 1e9;
        worst = worst.min(gbs / copy_gbs);
        println!(
            "{:<28} {:>6} {:>8} {:>12.1} {:>10.1} {:>8.1}%",
            "reduce dst = a + b",
            dtype.to_string(),
            2,
            t * 1e6,
            gbs,
            100.0 * gbs / copy_gbs
        );
        for k in [2usize, 4, 8] {
            let views: Vec<_> = srcs[..k].iter().map(|b| b.slice(..)).collect();
            let t = time(&ctx, &stream, a.iters, || {
                kernels
                    .fold_bytes(&stream, dtype, ReduceOp::Sum, &mut dst, &views)
                    .map_err(s)
            })?;
            let gbs = (k + 1) as f64 * n as f64 / t / 1e9;
            worst = worst.min(gbs / copy_gbs);
            println!(
                "{:<28} {:>6} {:>8} {:>12.1} {:>10.1} {:>8.1}%",
                "fold (rank-order reduce)",
                dtype.to_string(),
                k,
                t * 1e6,
                gbs,
                100.0 * gbs / copy_gbs
            );
        }
    }
    println!(
        "# lowest kernel bandwidth: {:.1}% of the copy bandwidth (target >= 90%): {}",
        100.0 * worst,
        if worst >= 0.9 { "met" } else { "MISSED" }
    );
    Ok(())
}

fn main() -> ExitCode {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tutti-gpu-bw: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tutti-gpu-bw: {e}");
            ExitCode::FAILURE
        }
    }
}
