//! The binary step of each reduction, per element type: `combine(acc, x)`.
//!
//! One zero-sized type per [`StepOp`](crate::StepOp); `Combine<T>` is implemented for
//! every valid (type, step) pair. Every `combine` is `#[inline(always)]` and free of
//! data-dependent branches so the loops in `simd.rs` vectorize.

use half::{bf16, f16};
use num_complex::Complex;

use crate::convert;
use crate::{F8E4M3, F8E5M2};

/// `combine(a, b)` for one step op on one element type. `a` is the accumulator.
pub(crate) trait Combine<T>: 'static {
    fn combine(a: T, b: T) -> T;
}

/// `a + b` (integers wrap).
pub(crate) struct Sum;
/// `a * b` (integers wrap; complex multiplication).
pub(crate) struct Prod;
/// NaN-propagating minimum; keeps `a` on ties.
pub(crate) struct Min;
/// NaN-propagating maximum; keeps `a` on ties.
pub(crate) struct Max;
/// `a & b`.
pub(crate) struct BAnd;
/// `a | b`.
pub(crate) struct BOr;
/// `a ^ b`.
pub(crate) struct BXor;

macro_rules! int_combine {
    ($($t:ty),*) => {$(
        impl Combine<$t> for Sum {
            #[inline(always)]
            fn combine(a: $t, b: $t) -> $t { a.wrapping_add(b) }
        }
        impl Combine<$t> for Prod {
            #[inline(always)]
            fn combine(a: $t, b: $t) -> $t { a.wrapping_mul(b) }
        }
        impl Combine<$t> for Min {
            #[inline(always)]
            fn combine(a: $t, b: $t) -> $t { if b < a { b } else { a } }
        }
        impl Combine<$t> for Max {
            #[inline(always)]
            fn combine(a: $t, b: $t) -> $t { if b > a { b } else { a } }
        }
        impl Combine<$t> for BAnd {
            #[inline(always)]
            fn combine(a: $t, b: $t) -> $t { a & b }
        }
        impl Combine<$t> for BOr {
            #[inline(always)]
            fn combine(a: $t, b: $t) -> $t { a | b }
        }
        impl Combine<$t> for BXor {
            #[inline(always)]
            fn combine(a: $t, b: $t) -> $t { a ^ b }
        }
    )*};
}
int_combine!(i8, u8, i32, u32, i64, u64);

macro_rules! float_combine {
    ($($t:ty),*) => {$(
        impl Combine<$t> for Sum {
            #[inline(always)]
            fn combine(a: $t, b: $t) -> $t { a + b }
        }
        impl Combine<$t> for Prod {
            #[inline(always)]
            fn combine(a: $t, b: $t) -> $t { a * b }
        }
        impl Combine<$t> for Min {
            #[inline(always)]
            fn combine(a: $t, b: $t) -> $t {
                let m = if b < a { b } else { a };
                if a.is_nan() || b.is_nan() { <$t>::NAN } else { m }
            }
        }
        impl Combine<$t> for Max {
            #[inline(always)]
            fn combine(a: $t, b: $t) -> $t {
                let m = if b > a { b } else { a };
                if a.is_nan() || b.is_nan() { <$t>::NAN } else { m }
            }
        }
    )*};
}
float_combine!(f32, f64);

/// Narrow floats: widen both operands to f32, combine in f32, round back (RNE).
macro_rules! narrow_combine {
    ($t:ty, $to:expr, $from:expr) => {
        impl Combine<$t> for Sum {
            #[inline(always)]
            fn combine(a: $t, b: $t) -> $t {
                $from(<Sum as Combine<f32>>::combine($to(a), $to(b)))
            }
        }
        impl Combine<$t> for Prod {
            #[inline(always)]
            fn combine(a: $t, b: $t) -> $t {
                $from(<Prod as Combine<f32>>::combine($to(a), $to(b)))
            }
        }
        impl Combine<$t> for Min {
            #[inline(always)]
            fn combine(a: $t, b: $t) -> $t {
                $from(<Min as Combine<f32>>::combine($to(a), $to(b)))
            }
        }
        impl Combine<$t> for Max {
            #[inline(always)]
            fn combine(a: $t, b: $t) -> $t {
                $from(<Max as Combine<f32>>::combine($to(a), $to(b)))
            }
        }
    };
}
narrow_combine!(f16, |x: f16| convert::f16_to_f32(x.to_bits()), |v: f32| {
    f16::from_bits(convert::f32_to_f16(v))
});
narrow_combine!(
    bf16,
    |x: bf16| convert::bf16_to_f32(x.to_bits()),
    |v: f32| bf16::from_bits(convert::f32_to_bf16(v))
);
narrow_combine!(F8E4M3, |x: F8E4M3| convert::e4m3_to_f32(x.0), |v: f32| {
    F8E4M3(convert::f32_to_e4m3(v))
});
narrow_combine!(F8E5M2, |x: F8E5M2| convert::e5m2_to_f32(x.0), |v: f32| {
    F8E5M2(convert::f32_to_e5m2(v))
});

macro_rules! complex_combine {
    ($($t:ty),*) => {$(
        impl Combine<Complex<$t>> for Sum {
            #[inline(always)]
            fn combine(a: Complex<$t>, b: Complex<$t>) -> Complex<$t> {
                Complex { re: a.re + b.re, im: a.im + b.im }
            }
        }
        impl Combine<Complex<$t>> for Prod {
            #[inline(always)]
            fn combine(a: Complex<$t>, b: Complex<$t>) -> Complex<$t> {
                Complex { re: a.re * b.re - a.im * b.im, im: a.re * b.im + a.im * b.re }
            }
        }
    )*};
}
complex_combine!(f32, f64);
