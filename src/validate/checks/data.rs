//! Data for the checked collectives: rank `r`'s contribution is a pure function of
//! `(r, seed, index)`, so every rank can compute what it must receive without
//! communicating, and bit-exact comparisons hold whatever order the algorithm
//! reduces in: sums of floats use small integers (the partial sums of `n` ranks
//! stay below the dtype's exact-integer limit: 16 for f8e4m3, 256 for bf16),
//! products use ±1 and ±2 (with few enough 2s to stay finite), min/max and bitwise
//! ops any value, integers wrap (exact in any order). `Avg` and `PreMulSum` scale
//! once after an exact sum.

use half::{bf16, f16};
use num_complex::Complex;

use crate::{DataType, Element, F8E4M3, F8E5M2, ReduceOp};

/// An element type with the properties the generator needs.
pub trait Value: Element {
    /// Largest magnitude up to which every integer is exact (per component).
    const EXACT: i64;
    /// Factors of 2 a product may hold and stay finite.
    const POW2: u32;
    /// Integer type.
    const INTEGER: bool;
    /// Complex type.
    const COMPLEX: bool = false;
    /// `re + im i` (integers wrap; real types drop `im`).
    fn make(re: i64, im: i64) -> Self;
}

macro_rules! ints {
    ($($t:ty),*) => {$(
        impl Value for $t {
            const EXACT: i64 = i64::MAX;
            const POW2: u32 = 62;
            const INTEGER: bool = true;
            fn make(re: i64, _im: i64) -> Self {
                re as $t
            }
        }
    )*};
}
ints!(i8, u8, i32, u32, i64, u64);

macro_rules! floats {
    ($($t:ty => $exact:expr, $pow2:expr, $conv:expr);* $(;)?) => {$(
        impl Value for $t {
            const EXACT: i64 = $exact;
            const POW2: u32 = $pow2;
            const INTEGER: bool = false;
            fn make(re: i64, _im: i64) -> Self {
                let f: fn(f64) -> $t = $conv;
                f(re as f64)
            }
        }
    )*};
}
floats! {
    f16 => 2048, 15, f16::from_f64;
    bf16 => 256, 127, bf16::from_f64;
    f32 => 1 << 24, 127, |x| x as f32;
    f64 => 1 << 53, 1023, |x| x;
    F8E4M3 => 16, 8, |x| F8E4M3::from_f32(x as f32);
    F8E5M2 => 8, 15, |x| F8E5M2::from_f32(x as f32);
}

impl Value for Complex<f32> {
    const EXACT: i64 = 1 << 24;
    const POW2: u32 = 127;
    const INTEGER: bool = false;
    const COMPLEX: bool = true;
    fn make(re: i64, im: i64) -> Self {
        Complex::new(re as f32, im as f32)
    }
}

impl Value for Complex<f64> {
    const EXACT: i64 = 1 << 53;
    const POW2: u32 = 1023;
    const INTEGER: bool = false;
    const COMPLEX: bool = true;
    fn make(re: i64, im: i64) -> Self {
        Complex::new(re as f64, im as f64)
    }
}

/// Runs `$body` with `$t` bound to the element type of `$dtype`.
macro_rules! with_value {
    ($dtype:expr, $t:ident, $body:block) => {
        match $dtype {
            $crate::DataType::I8 => {
                type $t = i8;
                $body
            }
            $crate::DataType::U8 => {
                type $t = u8;
                $body
            }
            $crate::DataType::I32 => {
                type $t = i32;
                $body
            }
            $crate::DataType::U32 => {
                type $t = u32;
                $body
            }
            $crate::DataType::I64 => {
                type $t = i64;
                $body
            }
            $crate::DataType::U64 => {
                type $t = u64;
                $body
            }
            $crate::DataType::F16 => {
                type $t = ::half::f16;
                $body
            }
            $crate::DataType::BF16 => {
                type $t = ::half::bf16;
                $body
            }
            $crate::DataType::F32 => {
                type $t = f32;
                $body
            }
            $crate::DataType::F64 => {
                type $t = f64;
                $body
            }
            $crate::DataType::F8E4M3 => {
                type $t = $crate::F8E4M3;
                $body
            }
            $crate::DataType::F8E5M2 => {
                type $t = $crate::F8E5M2;
                $body
            }
            $crate::DataType::C64 => {
                type $t = ::num_complex::Complex<f32>;
                $body
            }
            $crate::DataType::C128 => {
                type $t = ::num_complex::Complex<f64>;
                $body
            }
        }
    };
}
pub(crate) use with_value;

/// Which values a contribution holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Integers in `[-max, max]`.
    Sum {
        /// Largest magnitude.
        max: i64,
    },
    /// ±1, ±2 (a 2 only on the first `POW2` ranks).
    Prod,
    /// Integers in `[-1000, 1000]`.
    Order,
    /// Any bits.
    Bits,
    /// Moved, not reduced.
    Copy,
}

impl Kind {
    /// The values for a collective that reduces with `op` over `n` ranks (`None`:
    /// it only moves data).
    pub fn new<T: Value>(op: Option<ReduceOp>, n: usize) -> Kind {
        match op {
            None => Kind::Copy,
            Some(ReduceOp::Sum | ReduceOp::Avg | ReduceOp::PreMulSum(_)) => Kind::Sum {
                max: if T::INTEGER {
                    1 << 30
                } else {
                    (T::EXACT / n.max(1) as i64).clamp(0, 1000)
                },
            },
            Some(ReduceOp::Prod) => Kind::Prod,
            Some(ReduceOp::Min | ReduceOp::Max) => Kind::Order,
            Some(ReduceOp::BAnd | ReduceOp::BOr | ReduceOp::BXor) => Kind::Bits,
        }
    }
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A number in `0..m`.
fn below(h: u64, m: u64) -> i64 {
    ((u128::from(h) * u128::from(m)) >> 64) as i64
}

/// Writes elements `start..start + out.len()` of rank `rank`'s contribution.
pub fn fill<T: Value>(kind: Kind, rank: usize, seed: u64, start: usize, out: &mut [T]) {
    let base = mix(seed ^ (rank as u64).wrapping_mul(0xa076_1d64_78bd_642f));
    let may_double = (rank as u64) < u64::from(T::POW2);
    for (k, o) in out.iter_mut().enumerate() {
        let h = mix(base ^ ((start + k) as u64).wrapping_mul(0xe703_7ed1_a0b4_28db));
        let h2 = h.rotate_left(29);
        *o = match kind {
            Kind::Sum { max } => {
                let m = (2 * max + 1) as u64;
                T::make(below(h, m) - max, below(h2, m) - max)
            }
            Kind::Prod if T::INTEGER => {
                let v = below(h, 6) - 3;
                T::make(if v >= 0 { v + 1 } else { v }, 0)
            }
            Kind::Prod => {
                // Negative complex factors could leave -0/+0 imaginary parts that
                // depend on the order: keep complex factors positive.
                let sign = if h & 1 == 1 && !T::COMPLEX { -1 } else { 1 };
                let mag = if may_double && (h >> 1) & 1 == 1 {
                    2
                } else {
                    1
                };
                T::make(sign * mag, 0)
            }
            Kind::Order => T::make(below(h, 2001) - 1000, 0),
            Kind::Bits => T::make(h as i64, 0),
            Kind::Copy if T::INTEGER => T::make(h as i64, 0),
            Kind::Copy => T::make(below(h, 2001) - 1000, below(h2, 2001) - 1000),
        };
    }
}

/// The reduction with `op` over ranks `0..n` of elements `start..start +
/// out.len()`, finalized, into `out`.
pub fn reduced<T: Value>(
    kind: Kind,
    op: ReduceOp,
    n: usize,
    seed: u64,
    start: usize,
    out: &mut [T],
) -> crate::Result<()> {
    fill(kind, 0, seed, start, out);
    let mut tmp = out.to_vec();
    for r in 1..n {
        fill(kind, r, seed, start, &mut tmp);
        crate::cpu::reduce_inplace(op, out, &tmp)?;
    }
    crate::cpu::finalize(op, out, n)
}

/// Number of elements whose bits differ.
pub fn wrong<T: Value>(got: &[T], want: &[T]) -> u64 {
    got.iter()
        .zip(want)
        .filter(|(g, w)| bytemuck::bytes_of(*g) != bytemuck::bytes_of(*w))
        .count() as u64
        + got.len().abs_diff(want.len()) as u64
}

/// Every data type.
pub fn dtypes() -> &'static [DataType] {
    &DataType::ALL
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_sums_are_exact_in_any_order() {
        let n = 4;
        let kind = Kind::new::<F8E4M3>(Some(ReduceOp::Sum), n);
        assert_eq!(kind, Kind::Sum { max: 4 });
        let mut parts = vec![vec![F8E4M3::default(); 500]; n];
        for (r, p) in parts.iter_mut().enumerate() {
            fill(kind, r, 9, 0, p);
        }
        for i in 0..500 {
            let fwd = parts
                .iter()
                .fold(0f32, |a, p| F8E4M3::from_f32(a + p[i].to_f32()).to_f32());
            let rev = parts
                .iter()
                .rev()
                .fold(0f32, |a, p| F8E4M3::from_f32(a + p[i].to_f32()).to_f32());
            assert_eq!(fwd, rev);
        }
    }

    #[test]
    fn the_reference_sees_one_flipped_bit() {
        let kind = Kind::new::<f32>(Some(ReduceOp::Sum), 3);
        let mut want = vec![0f32; 100];
        reduced(kind, ReduceOp::Sum, 3, 5, 10, &mut want).unwrap();
        let mut got = want.clone();
        assert_eq!(wrong(&got, &want), 0);
        got[7] = f32::from_bits(got[7].to_bits() ^ 1);
        assert_eq!(wrong(&got, &want), 1);
        // Blocks generate the same values as the whole.
        let mut part = vec![0f32; 10];
        reduced(kind, ReduceOp::Sum, 3, 5, 50, &mut part).unwrap();
        assert_eq!(&part[..], &want[40..50]);
    }
}
