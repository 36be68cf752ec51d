//! The CPU reduction kernels against an independent scalar reference, for every
//! valid (dtype, op) pair, on random data, at lengths that hit every vector tail,
//! aligned and misaligned, plus the invalid pairs and the documented edge cases.
//!
//! The reference computes each step in the most direct way (`half`'s conversions for
//! f16/bf16, a brute-force nearest-even search for fp8, `i128` for integer Avg) and
//! is compared bit for bit (NaN compared by class).

use half::{bf16, f16};
use num_complex::Complex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tutti::cpu::{self, Reducer};
use tutti::{DataType, Element, Error, F8E4M3, F8E5M2, ReduceOp};

/// Lengths that cover empty, single, odd, every tail of 16/32/64-byte vectors and
/// one larger than the staging block of the misaligned path.
const LENGTHS: &[usize] = &[
    0, 1, 2, 3, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 255, 1000, 4099,
];

/// A scalar reference implementation per element type.
trait Ref: Element {
    fn random(rng: &mut StdRng) -> Self;
    /// Values that include NaN, infinities, zeros of both signs and extremes.
    fn special(rng: &mut StdRng) -> Self {
        Self::random(rng)
    }
    fn step(op: ReduceOp, a: Self, b: Self) -> Self;
    fn div_n(x: Self, n: usize) -> Self;
    fn mul_scalar(x: Self, s: f64) -> Self;
    fn same(a: Self, b: Self) -> bool;
}

macro_rules! int_ref {
    ($($t:ty),*) => {$(
        impl Ref for $t {
            fn random(rng: &mut StdRng) -> Self { rng.random() }
            fn special(rng: &mut StdRng) -> Self {
                [<$t>::MIN, <$t>::MAX, 0, 1, (0 as $t).wrapping_sub(1), rng.random()][rng.random_range(0..6)]
            }
            fn step(op: ReduceOp, a: Self, b: Self) -> Self {
                match op {
                    ReduceOp::Sum | ReduceOp::Avg => a.wrapping_add(b),
                    ReduceOp::Prod => a.wrapping_mul(b),
                    ReduceOp::Min => a.min(b),
                    ReduceOp::Max => a.max(b),
                    ReduceOp::BAnd => a & b,
                    ReduceOp::BOr => a | b,
                    ReduceOp::BXor => a ^ b,
                    ReduceOp::PreMulSum(_) => unreachable!("invalid for integers"),
                }
            }
            fn div_n(x: Self, n: usize) -> Self { (x as i128 / n as i128) as $t }
            fn mul_scalar(_: Self, _: f64) -> Self { unreachable!("invalid for integers") }
            fn same(a: Self, b: Self) -> bool { a == b }
        }
    )*};
}
int_ref!(i8, u8, i32, u32, i64, u64);

fn float_special_f64(rng: &mut StdRng) -> f64 {
    let choices = [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        0.0,
        -0.0,
        1e-300,
        -1e300,
        3.5,
        -2.25,
    ];
    if rng.random_bool(0.5) {
        choices[rng.random_range(0..choices.len())]
    } else {
        rng.random_range(-100.0..100.0)
    }
}

fn min_ref(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if b < a {
        b
    } else {
        a
    }
}

fn max_ref(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if b > a {
        b
    } else {
        a
    }
}

impl Ref for f32 {
    fn random(rng: &mut StdRng) -> Self {
        rng.random_range(-100.0..100.0)
    }
    fn special(rng: &mut StdRng) -> Self {
        float_special_f64(rng) as f32
    }
    fn step(op: ReduceOp, a: Self, b: Self) -> Self {
        match op {
            ReduceOp::Sum | ReduceOp::Avg | ReduceOp::PreMulSum(_) => a + b,
            ReduceOp::Prod => a * b,
            ReduceOp::Min => min_ref(a as f64, b as f64) as f32,
            ReduceOp::Max => max_ref(a as f64, b as f64) as f32,
            _ => unreachable!(),
        }
    }
    fn div_n(x: Self, n: usize) -> Self {
        x / n as f32
    }
    fn mul_scalar(x: Self, s: f64) -> Self {
        x * s as f32
    }
    fn same(a: Self, b: Self) -> bool {
        (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
    }
}

impl Ref for f64 {
    fn random(rng: &mut StdRng) -> Self {
        rng.random_range(-100.0..100.0)
    }
    fn special(rng: &mut StdRng) -> Self {
        float_special_f64(rng)
    }
    fn step(op: ReduceOp, a: Self, b: Self) -> Self {
        match op {
            ReduceOp::Sum | ReduceOp::Avg | ReduceOp::PreMulSum(_) => a + b,
            ReduceOp::Prod => a * b,
            ReduceOp::Min => min_ref(a, b),
            ReduceOp::Max => max_ref(a, b),
            _ => unreachable!(),
        }
    }
    fn div_n(x: Self, n: usize) -> Self {
        x / n as f64
    }
    fn mul_scalar(x: Self, s: f64) -> Self {
        x * s
    }
    fn same(a: Self, b: Self) -> bool {
        (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
    }
}

/// fp8 reference: decode from the spec, encode by brute-force nearest even.
fn fp8_decode(code: u8, e4m3: bool) -> f32 {
    let (man_bits, bias) = if e4m3 { (3, 7) } else { (2, 15) };
    let sign = if code & 0x80 != 0 { -1.0f64 } else { 1.0 };
    let e = ((code & 0x7f) >> man_bits) as i32;
    let m = (code & ((1 << man_bits) - 1)) as f64;
    let top = if e4m3 { 15 } else { 31 };
    if e == top && (!e4m3 || m as u32 == 7) {
        if !e4m3 && m == 0.0 {
            return (sign * f64::INFINITY) as f32;
        }
        return f32::NAN;
    }
    let scale = (1u32 << man_bits) as f64;
    let v = if e == 0 {
        (m / scale) * 2f64.powi(1 - bias)
    } else {
        (1.0 + m / scale) * 2f64.powi(e - bias)
    };
    (sign * v) as f32
}

fn fp8_encode(x: f32, e4m3: bool) -> u8 {
    let sign = if x.is_sign_negative() { 0x80u8 } else { 0 };
    let a = (x as f64).abs();
    if x.is_nan() || (e4m3 && a > 464.0) {
        return 0x7f | sign;
    }
    if !e4m3 && a >= 61440.0 {
        return 0x7c | sign;
    }
    let max_code = if e4m3 { 0x7e } else { 0x7b };
    let mut best = (0u8, f64::INFINITY);
    for c in 0..=max_code {
        let d = (fp8_decode(c, e4m3) as f64 - a).abs();
        if d < best.1 || (d == best.1 && c % 2 == 0) {
            best = (c, d);
        }
    }
    best.0 | sign
}

/// Narrow floats: reference step is round(f32(a) op f32(b)).
macro_rules! narrow_ref {
    ($t:ty, $to:expr, $from:expr, $random:expr) => {
        impl Ref for $t {
            fn random(rng: &mut StdRng) -> Self {
                $from($random(rng))
            }
            fn special(rng: &mut StdRng) -> Self {
                $from(float_special_f64(rng) as f32)
            }
            fn step(op: ReduceOp, a: Self, b: Self) -> Self {
                $from(<f32 as Ref>::step(op, $to(a), $to(b)))
            }
            fn div_n(x: Self, n: usize) -> Self {
                $from($to(x) / n as f32)
            }
            fn mul_scalar(x: Self, s: f64) -> Self {
                $from($to(x) * s as f32)
            }
            fn same(a: Self, b: Self) -> bool {
                <f32 as Ref>::same($to(a), $to(b))
            }
        }
    };
}
narrow_ref!(f16, |x: f16| x.to_f32(), f16::from_f32, |r: &mut StdRng| r
    .random_range(-60.0f32..60.0));
narrow_ref!(
    bf16,
    |x: bf16| x.to_f32(),
    bf16::from_f32,
    |r: &mut StdRng| r.random_range(-60.0f32..60.0)
);
narrow_ref!(
    F8E4M3,
    |x: F8E4M3| fp8_decode(x.0, true),
    |v: f32| F8E4M3(fp8_encode(v, true)),
    |r: &mut StdRng| r.random_range(-20.0f32..20.0)
);
narrow_ref!(
    F8E5M2,
    |x: F8E5M2| fp8_decode(x.0, false),
    |v: f32| F8E5M2(fp8_encode(v, false)),
    |r: &mut StdRng| r.random_range(-20.0f32..20.0)
);

macro_rules! complex_ref {
    ($($t:ty),*) => {$(
        impl Ref for Complex<$t> {
            fn random(rng: &mut StdRng) -> Self {
                Complex::new(<$t as Ref>::random(rng), <$t as Ref>::random(rng))
            }
            fn special(rng: &mut StdRng) -> Self {
                Complex::new(<$t as Ref>::special(rng), <$t as Ref>::special(rng))
            }
            fn step(op: ReduceOp, a: Self, b: Self) -> Self {
                match op {
                    ReduceOp::Sum | ReduceOp::Avg | ReduceOp::PreMulSum(_) => Complex::new(a.re + b.re, a.im + b.im),
                    ReduceOp::Prod => Complex::new(a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re),
                    _ => unreachable!(),
                }
            }
            fn div_n(x: Self, n: usize) -> Self {
                Complex::new(<$t as Ref>::div_n(x.re, n), <$t as Ref>::div_n(x.im, n))
            }
            fn mul_scalar(x: Self, s: f64) -> Self {
                Complex::new(<$t as Ref>::mul_scalar(x.re, s), <$t as Ref>::mul_scalar(x.im, s))
            }
            fn same(a: Self, b: Self) -> bool {
                <$t as Ref>::same(a.re, b.re) && <$t as Ref>::same(a.im, b.im)
            }
        }
    )*};
}
complex_ref!(f32, f64);

fn assert_same<T: Ref>(what: &str, got: &[T], want: &[T]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            T::same(*g, *w),
            "{what}: element {i} of {}: got {g:?}, want {w:?}",
            got.len()
        );
    }
}

fn values<T: Ref>(rng: &mut StdRng, n: usize, special: bool) -> Vec<T> {
    (0..n)
        .map(|_| {
            if special {
                T::special(rng)
            } else {
                T::random(rng)
            }
        })
        .collect()
}

/// Every valid op on `T`, every length, random and special values, in place, out of
/// place and through misaligned byte buffers; plus a simulated world of `n` ranks
/// reduced step by step and finalized.
fn check_matrix<T: Ref>(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    for op in ReduceOp::valid_for(T::DTYPE, 0.37) {
        for &len in LENGTHS {
            for special in [false, true] {
                let what = format!("{} {op} len={len} special={special}", T::DTYPE);
                let a: Vec<T> = values(&mut rng, len, special);
                let b: Vec<T> = values(&mut rng, len, special);
                let want: Vec<T> = a.iter().zip(&b).map(|(x, y)| T::step(op, *x, *y)).collect();

                let mut dst = a.clone();
                cpu::reduce_inplace(op, &mut dst, &b).unwrap();
                assert_same(&format!("{what} in-place"), &dst, &want);

                let mut out = vec![<T as bytemuck::Zeroable>::zeroed(); len];
                cpu::reduce(op, &mut out, &a, &b).unwrap();
                assert_same(&format!("{what} out-of-place"), &out, &want);

                // Misaligned byte buffers (offset by one byte) take the staged path.
                let size = T::DTYPE.size();
                let r = Reducer::new(T::DTYPE, op).unwrap();
                let mut dbuf = vec![0u8; len * size + 1];
                let mut sbuf = vec![0u8; len * size + 3];
                dbuf[1..].copy_from_slice(bytemuck::cast_slice(&a));
                sbuf[3..].copy_from_slice(bytemuck::cast_slice(&b));
                r.reduce_inplace(&mut dbuf[1..], &sbuf[3..]).unwrap();
                let got: Vec<T> = bytemuck::pod_collect_to_vec(&dbuf[1..]);
                assert_same(&format!("{what} misaligned in-place"), &got, &want);
                let mut obuf = vec![0u8; len * size + 5];
                r.reduce(&mut obuf[5..], &sbuf[3..], bytemuck::cast_slice(&a))
                    .unwrap();
                let got: Vec<T> = bytemuck::pod_collect_to_vec(&obuf[5..]);
                let want_ba: Vec<T> = b.iter().zip(&a).map(|(x, y)| T::step(op, *x, *y)).collect();
                assert_same(&format!("{what} misaligned out-of-place"), &got, &want_ba);

                // `dst = src op dst` (the incoming contribution first), aligned and
                // through the staged path: the same bits as `reduce(dst, src, dst)`.
                let mut after = a.clone();
                r.reduce_inplace_after(
                    bytemuck::cast_slice_mut(&mut after),
                    bytemuck::cast_slice(&b),
                )
                .unwrap();
                assert_same(&format!("{what} in-place after"), &after, &want_ba);
                dbuf[1..].copy_from_slice(bytemuck::cast_slice(&a));
                r.reduce_inplace_after(&mut dbuf[1..], &sbuf[3..]).unwrap();
                let got: Vec<T> = bytemuck::pod_collect_to_vec(&dbuf[1..]);
                assert_same(&format!("{what} misaligned in-place after"), &got, &want_ba);
            }
        }
        // A world of n ranks: fold the steps in rank order, then finalize.
        for n in [1usize, 3, 8] {
            let len = 1031;
            let inputs: Vec<Vec<T>> = (0..n).map(|_| values(&mut rng, len, false)).collect();
            let mut acc = inputs[0].clone();
            for x in &inputs[1..] {
                cpu::reduce_inplace(op, &mut acc, x).unwrap();
            }
            cpu::finalize(op, &mut acc, n).unwrap();
            let want: Vec<T> = (0..len)
                .map(|i| {
                    let mut v = inputs[0][i];
                    for x in &inputs[1..] {
                        v = T::step(op, v, x[i]);
                    }
                    match op {
                        ReduceOp::Avg => T::div_n(v, n),
                        ReduceOp::PreMulSum(s) => T::mul_scalar(v, s),
                        _ => v,
                    }
                })
                .collect();
            assert_same(&format!("{} {op} world of {n}", T::DTYPE), &acc, &want);

            // The misaligned finalize path gives the same bits.
            let mut fin = vec![0u8; len * T::DTYPE.size() + 1];
            let mut acc2 = inputs[0].clone();
            for x in &inputs[1..] {
                cpu::reduce_inplace(op, &mut acc2, x).unwrap();
            }
            fin[1..].copy_from_slice(bytemuck::cast_slice(&acc2));
            Reducer::new(T::DTYPE, op)
                .unwrap()
                .finalize(&mut fin[1..], n)
                .unwrap();
            let got: Vec<T> = bytemuck::pod_collect_to_vec(&fin[1..]);
            assert_same(
                &format!("{} {op} world of {n} misaligned finalize", T::DTYPE),
                &got,
                &want,
            );
        }
    }
}

/// Runs the whole matrix at the SIMD level this process selected.
#[test]
fn matrix_every_dtype_every_op() {
    eprintln!("CPU kernels at SIMD level {}", cpu::simd_level().name());
    check_matrix::<i8>(1);
    check_matrix::<u8>(2);
    check_matrix::<i32>(3);
    check_matrix::<u32>(4);
    check_matrix::<i64>(5);
    check_matrix::<u64>(6);
    check_matrix::<f16>(7);
    check_matrix::<bf16>(8);
    check_matrix::<f32>(9);
    check_matrix::<f64>(10);
    check_matrix::<F8E4M3>(11);
    check_matrix::<F8E5M2>(12);
    check_matrix::<Complex<f32>>(13);
    check_matrix::<Complex<f64>>(14);
}

/// The same matrix in child processes forced to each lower SIMD level, so every
/// compiled variant of every kernel is checked on this CPU.
#[test]
fn matrix_under_every_simd_level() {
    let exe = std::env::current_exe().unwrap();
    for level in ["baseline", "avx2", "avx512"] {
        let out = std::process::Command::new(&exe)
            .args([
                "--exact",
                "matrix_every_dtype_every_op",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("TUTTI_CPU_SIMD", level)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "TUTTI_CPU_SIMD={level} failed:\n{stderr}\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let wanted = level.parse_level().min(cpu::detected_simd_level());
        assert!(
            stderr.contains(&format!("CPU kernels at SIMD level {}", wanted.name())),
            "TUTTI_CPU_SIMD={level} ran at the wrong level:\n{stderr}"
        );
    }
}

trait ParseLevel {
    fn parse_level(&self) -> cpu::SimdLevel;
}

impl ParseLevel for &str {
    fn parse_level(&self) -> cpu::SimdLevel {
        match *self {
            "baseline" => cpu::SimdLevel::Baseline,
            "avx2" => cpu::SimdLevel::Avx2,
            _ => cpu::SimdLevel::Avx512,
        }
    }
}

#[test]
fn every_invalid_pair_is_the_documented_error_and_writes_nothing() {
    let all_ops = [
        ReduceOp::Sum,
        ReduceOp::Prod,
        ReduceOp::Min,
        ReduceOp::Max,
        ReduceOp::Avg,
        ReduceOp::PreMulSum(2.0),
        ReduceOp::BAnd,
        ReduceOp::BOr,
        ReduceOp::BXor,
    ];
    let mut invalid = 0;
    for dtype in DataType::ALL {
        for op in all_ops {
            let expect_valid = match op {
                ReduceOp::Sum | ReduceOp::Prod | ReduceOp::Avg => true,
                ReduceOp::Min | ReduceOp::Max => !dtype.is_complex(),
                ReduceOp::PreMulSum(_) => !dtype.is_integer(),
                _ => dtype.is_integer(),
            };
            let r = Reducer::new(dtype, op);
            assert_eq!(r.is_ok(), expect_valid, "{dtype} {op}");
            if expect_valid {
                continue;
            }
            invalid += 1;
            let err = r.unwrap_err();
            let msg = err.to_string();
            assert!(
                matches!(err, Error::InvalidOp { .. }),
                "{dtype} {op}: {err:?}"
            );
            assert!(
                msg.contains(dtype.name()) && msg.contains(op.name()),
                "{msg}"
            );
            let reason = match op {
                ReduceOp::Min | ReduceOp::Max => "complex numbers have no order",
                ReduceOp::PreMulSum(_) => "floating-point and complex dtypes only",
                _ => "integer dtypes only",
            };
            assert!(msg.contains(reason), "{msg}");
        }
    }
    // 2 complex x (min, max, 3 bitwise) + 6 floats x 3 bitwise + 6 ints x premulsum.
    assert_eq!(invalid, 2 * 5 + 6 * 3 + 6);

    // The typed entry points reject before writing anything.
    let mut dst = [1.5f32, 2.5];
    let err = cpu::reduce_inplace(ReduceOp::BXor, &mut dst, &[1.0, 1.0]).unwrap_err();
    assert!(matches!(err, Error::InvalidOp { .. }));
    assert_eq!(dst, [1.5, 2.5]);
    let mut c = [Complex::new(1.0f64, 2.0)];
    assert!(cpu::reduce_inplace(ReduceOp::Max, &mut c, &[Complex::new(0.0, 0.0)]).is_err());
    assert_eq!(c, [Complex::new(1.0, 2.0)]);
    let mut i = [7i32];
    assert!(cpu::finalize(ReduceOp::PreMulSum(0.5), &mut i, 2).is_err());
    assert_eq!(i, [7]);
    for bad in [f64::NAN, f64::INFINITY] {
        let err = Reducer::new(DataType::F32, ReduceOp::PreMulSum(bad)).unwrap_err();
        assert!(err.to_string().contains("must be finite"), "{err}");
    }
}

#[test]
fn bad_lengths_are_errors_that_name_the_buffer_and_write_nothing() {
    let mut dst = [1u8, 2, 3];
    let err = cpu::reduce_inplace(ReduceOp::Sum, &mut dst, &[1, 2]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "reduce_inplace: src: length mismatch: expected 3 bytes, got 2"
    );
    assert_eq!(dst, [1, 2, 3]);
    let mut out = [0i64; 2];
    let err = cpu::reduce(ReduceOp::Sum, &mut out, &[1, 2], &[1, 2, 3]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("reduce: b: length mismatch: expected 16 bytes, got 24"),
        "{err}"
    );
    assert_eq!(out, [0, 0]);

    let r = Reducer::new(DataType::F32, ReduceOp::Sum).unwrap();
    let mut six = [0u8; 6];
    let err = r.reduce_inplace(&mut six, &[0u8; 6]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "reduce_inplace: dst: 6 bytes is not a whole number of float32 elements (4 bytes each)"
    );
    let err = cpu::finalize(ReduceOp::Avg, &mut [1.0f32], 0).unwrap_err();
    assert!(
        err.to_string()
            .contains("world_size must be at least 1, got 0"),
        "{err}"
    );
}

#[test]
fn integer_overflow_wraps_and_avg_truncates_toward_zero() {
    let mut a = [100i8, -128, 127];
    cpu::reduce_inplace(ReduceOp::Sum, &mut a, &[100, -1, 1]).unwrap();
    assert_eq!(a, [-56, 127, -128]);
    let mut u = [200u8, 0, 16];
    cpu::reduce_inplace(ReduceOp::Sum, &mut u, &[100, 0u8.wrapping_sub(1), 16]).unwrap();
    assert_eq!(u, [44, 255, 32]);
    let mut p = [i64::MAX, 1 << 62];
    cpu::reduce_inplace(ReduceOp::Prod, &mut p, &[2, 4]).unwrap();
    assert_eq!(p, [-2, 0]);
    let mut m = [u64::MAX, 3];
    cpu::reduce_inplace(ReduceOp::Sum, &mut m, &[1, u64::MAX]).unwrap();
    assert_eq!(m, [0, 2]);

    let mut avg = [-7i32, 7, -1, i32::MIN];
    cpu::finalize(ReduceOp::Avg, &mut avg, 2).unwrap();
    assert_eq!(avg, [-3, 3, 0, i32::MIN / 2]);
    let mut big = [u64::MAX];
    cpu::finalize(ReduceOp::Avg, &mut big, 3).unwrap();
    assert_eq!(big, [u64::MAX / 3]);
    // A world larger than the type's range divides exactly.
    let mut small = [-128i8, 127];
    cpu::finalize(ReduceOp::Avg, &mut small, 1000).unwrap();
    assert_eq!(small, [0, 0]);
    let mut s = [-100i8];
    cpu::finalize(ReduceOp::Avg, &mut s, 200).unwrap();
    assert_eq!(s, [0]);
}

#[test]
fn nan_and_infinity_follow_the_documented_rules() {
    let nan = f32::NAN;
    let inf = f32::INFINITY;
    let mut a = [nan, 1.0, 1.0, inf, -0.0, 0.0];
    cpu::reduce_inplace(ReduceOp::Min, &mut a, &[1.0, nan, 2.0, 5.0, 0.0, -0.0]).unwrap();
    assert!(a[0].is_nan() && a[1].is_nan());
    assert_eq!(a[2], 1.0);
    assert_eq!(a[3], 5.0);
    // Ties keep the accumulator, sign of zero included.
    assert_eq!(a[4].to_bits(), (-0.0f32).to_bits());
    assert_eq!(a[5].to_bits(), 0.0f32.to_bits());
    let mut m = [f64::NAN, -inf as f64, 3.0];
    cpu::reduce_inplace(ReduceOp::Max, &mut m, &[0.0, f64::NEG_INFINITY, f64::NAN]).unwrap();
    assert!(m[0].is_nan() && m[2].is_nan());
    assert_eq!(m[1], f64::NEG_INFINITY);
    let mut s = [inf, inf, 0.0];
    cpu::reduce_inplace(ReduceOp::Sum, &mut s, &[-inf, inf, nan]).unwrap();
    assert!(s[0].is_nan());
    assert_eq!(s[1], inf);
    assert!(s[2].is_nan());
    let mut p = [0.0f32, inf];
    cpu::reduce_inplace(ReduceOp::Prod, &mut p, &[inf, -2.0]).unwrap();
    assert!(p[0].is_nan());
    assert_eq!(p[1], -inf);
    // Narrow types propagate NaN through min/max too.
    let mut h = [f16::NAN, f16::from_f32(2.0)];
    cpu::reduce_inplace(ReduceOp::Max, &mut h, &[f16::from_f32(3.0), f16::NAN]).unwrap();
    assert!(h[0].is_nan() && h[1].is_nan());
}

#[test]
fn narrow_floats_accumulate_in_f32_and_round_to_nearest_even() {
    // f16: 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even (1.0).
    let one = f16::from_f32(1.0);
    let mut h = [
        one,
        f16::from_f32(1.0 + 2f32.powi(-10)),
        f16::from_f32(65504.0),
        f16::from_f32(2048.0),
    ];
    let src = [
        f16::from_f32(2f32.powi(-11)),
        f16::from_f32(2f32.powi(-11)),
        f16::from_f32(16.0),
        f16::from_f32(1.0),
    ];
    cpu::reduce_inplace(ReduceOp::Sum, &mut h, &src).unwrap();
    assert_eq!(h[0], one, "tie rounds down to even");
    assert_eq!(
        h[1].to_f32(),
        1.0 + 2.0 * 2f32.powi(-10),
        "tie rounds up to even"
    );
    assert_eq!(h[2], f16::INFINITY, "65504 + 16 overflows to inf");
    assert_eq!(
        h[3].to_f32(),
        2048.0,
        "2049 is not representable: ties to even 2048"
    );

    // bf16: 256 + 1 = 257 is halfway between 256 and 258: ties to even (256).
    let mut b = [
        bf16::from_f32(256.0),
        bf16::from_f32(258.0),
        bf16::from_f32(1.0),
    ];
    cpu::reduce_inplace(
        ReduceOp::Sum,
        &mut b,
        &[
            bf16::from_f32(1.0),
            bf16::from_f32(1.0),
            bf16::from_f32(2f32.powi(-8)),
        ],
    )
    .unwrap();
    assert_eq!(b[0].to_f32(), 256.0);
    assert_eq!(b[1].to_f32(), 260.0);
    assert_eq!(b[2].to_f32(), 1.0, "1 + 2^-8 rounds back to 1 in bf16");

    // Per-step rounding: (1 + 2^-11) + 2^-11 in f16 is 1 (each step rounds), not 1 + 2^-10.
    let mut acc = [one];
    cpu::reduce_inplace(ReduceOp::Sum, &mut acc, &[f16::from_f32(2f32.powi(-11))]).unwrap();
    cpu::reduce_inplace(ReduceOp::Sum, &mut acc, &[f16::from_f32(2f32.powi(-11))]).unwrap();
    assert_eq!(acc[0], one);

    // fp8 e4m3: 448 is the largest value; 448 + 16 = 464 ties to 448; 448 + 32 is NaN.
    let mut e = [
        F8E4M3::from_f32(448.0),
        F8E4M3::from_f32(448.0),
        F8E4M3::from_f32(1.0),
    ];
    cpu::reduce_inplace(
        ReduceOp::Sum,
        &mut e,
        &[
            F8E4M3::from_f32(16.0),
            F8E4M3::from_f32(32.0),
            F8E4M3::from_f32(0.0625),
        ],
    )
    .unwrap();
    assert_eq!(e[0].to_f32(), 448.0);
    assert!(e[1].is_nan());
    assert_eq!(e[2].to_f32(), 1.0, "1 + 1/16 ties to even 1.0 (step 1/8)");
    // fp8 e5m2 overflows to infinity.
    let mut e5 = [F8E5M2::from_f32(57344.0)];
    cpu::reduce_inplace(ReduceOp::Sum, &mut e5, &[F8E5M2::from_f32(8192.0)]).unwrap();
    assert_eq!(e5[0].to_f32(), f32::INFINITY);
}

#[test]
fn complex_prod_and_avg() {
    let mut a = [Complex::new(1.0f32, 2.0), Complex::new(0.5, -1.0)];
    cpu::reduce_inplace(
        ReduceOp::Prod,
        &mut a,
        &[Complex::new(3.0, 4.0), Complex::new(2.0, 2.0)],
    )
    .unwrap();
    assert_eq!(a, [Complex::new(-5.0, 10.0), Complex::new(3.0, -1.0)]);
    let mut v = [Complex::new(3.0f64, -6.0)];
    cpu::finalize(ReduceOp::Avg, &mut v, 3).unwrap();
    assert_eq!(v, [Complex::new(1.0, -2.0)]);
    cpu::finalize(ReduceOp::PreMulSum(0.5), &mut v, 3).unwrap();
    assert_eq!(v, [Complex::new(0.5, -1.0)]);
}

#[test]
fn names_parse_and_print() {
    for dt in DataType::ALL {
        assert_eq!(dt.name().parse::<DataType>().unwrap(), dt);
        assert_eq!(dt.short_name().parse::<DataType>().unwrap(), dt);
        assert_eq!(DataType::from_u8(dt as u8), Some(dt));
    }
    assert_eq!("float".parse::<DataType>().unwrap(), DataType::F32);
    assert_eq!("half".parse::<DataType>().unwrap(), DataType::F16);
    let err = "float17".parse::<DataType>().unwrap_err();
    assert!(
        err.to_string().starts_with("unknown data type \"float17\""),
        "{err}"
    );
    assert_eq!(
        "premulsum:0.25".parse::<ReduceOp>().unwrap(),
        ReduceOp::PreMulSum(0.25)
    );
    assert_eq!("MAX".parse::<ReduceOp>().unwrap(), ReduceOp::Max);
    assert!("premulsum:nan".parse::<ReduceOp>().is_err());
    let err = "mean-ish".parse::<ReduceOp>().unwrap_err();
    assert!(
        err.to_string().contains("unknown reduce op \"mean-ish\""),
        "{err}"
    );
}
