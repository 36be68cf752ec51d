//! The final pass of `Avg` (divide by the number of ranks) and `PreMulSum`
//! (multiply by the scalar), per element type.

use half::{bf16, f16};
use num_complex::Complex;

use crate::convert;
use crate::{F8E4M3, F8E5M2};

/// Final scaling of one reduced value.
pub(crate) trait Scale: Copy + 'static {
    /// `x / n` (integers: exact, truncating toward zero).
    fn div_n(x: Self, n: usize) -> Self;
    /// `x * s`; only called for float and complex types.
    fn mul_scalar(x: Self, s: f64) -> Self;
}

macro_rules! int_scale {
    ($($t:ty),*) => {$(
        impl Scale for $t {
            #[inline(always)]
            fn div_n(x: $t, n: usize) -> $t {
                // Exact: the quotient's magnitude never exceeds |x|.
                (i128::from(x) / n as i128) as $t
            }
            #[inline(always)]
            fn mul_scalar(x: $t, _s: f64) -> $t {
                // ReduceOp::check rejects PreMulSum on integers before any kernel runs.
                x
            }
        }
    )*};
}
int_scale!(i8, u8, i32, u32, i64, u64);

impl Scale for f32 {
    #[inline(always)]
    fn div_n(x: f32, n: usize) -> f32 {
        x / n as f32
    }
    #[inline(always)]
    fn mul_scalar(x: f32, s: f64) -> f32 {
        x * s as f32
    }
}

impl Scale for f64 {
    #[inline(always)]
    fn div_n(x: f64, n: usize) -> f64 {
        x / n as f64
    }
    #[inline(always)]
    fn mul_scalar(x: f64, s: f64) -> f64 {
        x * s
    }
}

macro_rules! narrow_scale {
    ($t:ty, $to:expr, $from:expr) => {
        impl Scale for $t {
            #[inline(always)]
            fn div_n(x: $t, n: usize) -> $t {
                $from($to(x) / n as f32)
            }
            #[inline(always)]
            fn mul_scalar(x: $t, s: f64) -> $t {
                $from($to(x) * s as f32)
            }
        }
    };
}
narrow_scale!(f16, |x: f16| convert::f16_to_f32(x.to_bits()), |v: f32| {
    f16::from_bits(convert::f32_to_f16(v))
});
narrow_scale!(
    bf16,
    |x: bf16| convert::bf16_to_f32(x.to_bits()),
    |v: f32| bf16::from_bits(convert::f32_to_bf16(v))
);
narrow_scale!(F8E4M3, |x: F8E4M3| convert::e4m3_to_f32(x.0), |v: f32| {
    F8E4M3(convert::f32_to_e4m3(v))
});
narrow_scale!(F8E5M2, |x: F8E5M2| convert::e5m2_to_f32(x.0), |v: f32| {
    F8E5M2(convert::f32_to_e5m2(v))
});

impl<T: Scale> Scale for Complex<T> {
    #[inline(always)]
    fn div_n(x: Self, n: usize) -> Self {
        Complex {
            re: T::div_n(x.re, n),
            im: T::div_n(x.im, n),
        }
    }
    #[inline(always)]
    fn mul_scalar(x: Self, s: f64) -> Self {
        Complex {
            re: T::mul_scalar(x.re, s),
            im: T::mul_scalar(x.im, s),
        }
    }
}
