//! CPU reduction kernel bandwidth next to a plain copy of the same size.
//!
//! `cargo bench -p tutti-bench --bench kernels`
//!
//! Throughput is reported in bytes of the destination buffer per second ("payload").
//! Memory traffic is larger: a copy reads and writes the buffer (2x payload), an
//! in-place reduction `dst += src` reads two buffers and writes one (3x payload),
//! an out-of-place `dst = a + b` reads two and writes one (3x, plus the write-allocate
//! read of `dst` unless the stores stream). bench/RESULTS.md gives both figures.
//!
//! `TUTTI_BENCH_SIZES=64K,4M` limits the sizes (default 64K, 4M, 256M).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use half::{bf16, f16};
use num_complex::Complex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::hint::black_box;
use std::time::Duration;
use tutti::{Element, ReduceOp, cpu};

fn sizes() -> Vec<(String, usize)> {
    let spec = std::env::var("TUTTI_BENCH_SIZES").unwrap_or_else(|_| "64K,4M,256M".into());
    spec.split(',')
        .filter_map(|s| {
            let s = s.trim();
            let (num, mul) = match s.chars().last()? {
                'K' | 'k' => (&s[..s.len() - 1], 1 << 10),
                'M' | 'm' => (&s[..s.len() - 1], 1 << 20),
                'G' | 'g' => (&s[..s.len() - 1], 1 << 30),
                _ => (s, 1),
            };
            Some((s.to_string(), num.parse::<usize>().ok()? * mul))
        })
        .collect()
}

fn configure(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    bytes: usize,
) {
    if bytes >= 64 << 20 {
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(4))
            .warm_up_time(Duration::from_secs(1));
    } else {
        group
            .sample_size(30)
            .measurement_time(Duration::from_secs(2))
            .warm_up_time(Duration::from_millis(500));
    }
}

fn bench_sum<T: Element>(c: &mut Criterion, make: impl Fn(&mut StdRng) -> T) {
    let mut rng = StdRng::seed_from_u64(7);
    let name = format!("sum_inplace/{}", T::DTYPE.short_name());
    let mut group = c.benchmark_group(name);
    for (label, bytes) in sizes() {
        let n = bytes / std::mem::size_of::<T>();
        let src: Vec<T> = (0..n).map(|_| make(&mut rng)).collect();
        let mut dst: Vec<T> = (0..n).map(|_| make(&mut rng)).collect();
        configure(&mut group, bytes);
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_function(BenchmarkId::from_parameter(&label), |b| {
            b.iter(|| {
                cpu::reduce_inplace(ReduceOp::Sum, black_box(&mut dst), black_box(&src)).unwrap()
            })
        });
    }
    group.finish();
}

fn bench_f32_out_of_place(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(8);
    let mut group = c.benchmark_group("sum_out_of_place/f32");
    for (label, bytes) in sizes() {
        let n = bytes / 4;
        let a: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        let b: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        let mut dst = vec![0f32; n];
        configure(&mut group, bytes);
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_function(BenchmarkId::from_parameter(&label), |bch| {
            bch.iter(|| {
                cpu::reduce(
                    ReduceOp::Sum,
                    black_box(&mut dst),
                    black_box(&a),
                    black_box(&b),
                )
                .unwrap()
            })
        });
    }
    group.finish();
}

fn bench_copy(c: &mut Criterion) {
    let mut group = c.benchmark_group("copy");
    for (label, bytes) in sizes() {
        let src = vec![1u8; bytes];
        let mut dst = vec![0u8; bytes];
        configure(&mut group, bytes);
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_function(BenchmarkId::from_parameter(&label), |b| {
            b.iter(|| black_box(&mut dst).copy_from_slice(black_box(&src)))
        });
    }
    group.finish();
}

fn kernels(c: &mut Criterion) {
    eprintln!("CPU kernels at SIMD level {}", cpu::simd_level().name());
    bench_copy(c);
    bench_sum::<f32>(c, |r| r.random_range(-1.0..1.0));
    bench_sum::<f64>(c, |r| r.random_range(-1.0..1.0));
    bench_sum::<bf16>(c, |r| bf16::from_f32(r.random_range(-1.0..1.0)));
    bench_sum::<f16>(c, |r| f16::from_f32(r.random_range(-1.0..1.0)));
    bench_sum::<Complex<f32>>(c, |r| {
        Complex::new(r.random_range(-1.0..1.0), r.random_range(-1.0..1.0))
    });
    bench_f32_out_of_place(c);
}

criterion_group!(benches, kernels);
criterion_main!(benches);
