//! Exactly reducible data for benchmarks and validation (`tutti-bench -c`,
//! `tutti validate`'s collective and GPU kernel checks).
//!
//! Rank `r`'s input is a virtual array `X_r[i]` that any rank can regenerate from
//! `(r, i, rep)` alone (a hash, no communication), as nccl-tests does. Each rank then
//! computes the result it must receive from the other ranks' regenerated inputs with
//! tutti's CPU kernels ([`fill_reduced`]) and compares every element bit for bit
//! ([`count_wrong`], [`mismatches`]).
//!
//! The values are chosen so that the reduction is exact in every order the ring or
//! tree may apply it: small integers for sums (bounded so that `n * max` stays below
//! the dtype's exact-integer limit, e.g. 2048 for f16, 256 for bf16, 16 for f8e4m3),
//! `±1`/`±2` for floating-point products (with at most as many factors of 2 as the
//! exponent range holds), anything for min/max and bitwise ops, integers wrap (exact
//! in any order). `Avg` and `PreMulSum` finalize once after an exact sum, so their
//! results are bit-identical too.
//!
//! [`with_elem!`](crate::with_elem) binds the Rust element type of a run-time
//! [`DataType`](crate::DataType), to run generic code on a dtype chosen at run time.

use half::{bf16, f16};
use num_complex::Complex;

use crate::{Element, F8E4M3, F8E5M2, ReduceOp};

/// The crates [`with_elem!`](crate::with_elem) names types from, so that its users
/// need not depend on them.
#[doc(hidden)]
pub mod deps {
    pub use half;
    pub use num_complex;
}

/// An element type the generator can make values of.
pub trait TestElem: Element {
    /// Largest integer magnitude up to which every integer is representable (and
    /// so sums of such integers are exact), per component; `i64::MAX` for the
    /// integer types, whose wrapping arithmetic is exact in any order.
    const EXACT: i64;
    /// How many factors of 2 a product may hold and stay finite.
    const MAX_POW2: u32;
    /// True for the integer types.
    const INTEGER: bool;
    /// True for the complex types.
    const COMPLEX: bool = false;
    /// The value `re + im·i` (real types ignore `im`; integers wrap).
    fn from_parts(re: i64, im: i64) -> Self;
}

macro_rules! int_elem {
    ($($t:ty),*) => {$(
        impl TestElem for $t {
            const EXACT: i64 = i64::MAX;
            const MAX_POW2: u32 = 62;
            const INTEGER: bool = true;
            fn from_parts(re: i64, _im: i64) -> Self {
                re as $t
            }
        }
    )*};
}
int_elem!(i8, u8, i32, u32, i64, u64);

/// Real floats: `$t => EXACT, MAX_POW2, conversion from i64`.
macro_rules! float_elem {
    ($($t:ty => $exact:expr, $pow2:expr, $conv:expr);* $(;)?) => {$(
        impl TestElem for $t {
            const EXACT: i64 = $exact;
            const MAX_POW2: u32 = $pow2;
            const INTEGER: bool = false;
            fn from_parts(re: i64, _im: i64) -> Self {
                let f: fn(i64) -> $t = $conv;
                f(re)
            }
        }
    )*};
}
float_elem! {
    f16 => 2048, 15, |x| f16::from_f64(x as f64);
    bf16 => 256, 127, |x| bf16::from_f64(x as f64);
    f32 => 1 << 24, 127, |x| x as f32;
    f64 => 1 << 53, 1023, |x| x as f64;
    F8E4M3 => 16, 8, |x| F8E4M3::from_f32(x as f32);
    F8E5M2 => 8, 15, |x| F8E5M2::from_f32(x as f32);
}

/// Complex floats: `$t => component type, EXACT, MAX_POW2`.
macro_rules! complex_elem {
    ($($f:ty => $exact:expr, $pow2:expr);* $(;)?) => {$(
        impl TestElem for Complex<$f> {
            const COMPLEX: bool = true;
            const EXACT: i64 = $exact;
            const MAX_POW2: u32 = $pow2;
            const INTEGER: bool = false;
            fn from_parts(re: i64, im: i64) -> Self {
                Complex::new(re as $f, im as $f)
            }
        }
    )*};
}
complex_elem! {
    f32 => 1 << 24, 127;
    f64 => 1 << 53, 1023;
}

/// Runs `$body` with the type alias `$t` bound to the Rust element type of the
/// [`DataType`](crate::DataType) `$dtype` (every type implements
/// [`TestElem`](crate::testdata::TestElem) and [`Element`](crate::Element)).
///
/// ```
/// use tutti::{DataType, Element, with_elem};
/// fn size_of<T: Element>() -> usize {
///     std::mem::size_of::<T>()
/// }
/// for &dt in &DataType::ALL {
///     assert_eq!(with_elem!(dt, T, { size_of::<T>() }), dt.size());
/// }
/// ```
#[macro_export]
macro_rules! with_elem {
    ($dtype:expr, $t:ident, $body:block) => {
        $crate::with_elem!(@arms $dtype, $t, $body;
            I8 => i8, U8 => u8, I32 => i32, U32 => u32, I64 => i64, U64 => u64,
            F16 => $crate::testdata::deps::half::f16,
            BF16 => $crate::testdata::deps::half::bf16,
            F32 => f32, F64 => f64,
            F8E4M3 => $crate::F8E4M3, F8E5M2 => $crate::F8E5M2,
            C64 => $crate::testdata::deps::num_complex::Complex<f32>,
            C128 => $crate::testdata::deps::num_complex::Complex<f64>)
    };
    (@arms $dtype:expr, $t:ident, $body:block; $($dt:ident => $ty:ty),* $(,)?) => {
        match $dtype {
            $($crate::DataType::$dt => {
                type $t = $ty;
                $body
            })*
        }
    };
}

/// Which values an input holds (see the module docs for why).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// Integers in `[-max, max]` (both components for complex).
    Sum {
        /// Largest magnitude.
        max: i64,
    },
    /// `±1`/`±2` for real floats, `1`/`2` for complex (a factor 2 only on the
    /// first `MAX_POW2` ranks), `±1..±3` for integers.
    Prod,
    /// Integers in `[-1000, 1000]` (min/max: any value works).
    Order,
    /// Arbitrary bits (bitwise ops).
    Bits,
    /// Data-movement collectives: arbitrary integers, or integers in
    /// `[-1000, 1000]` for floats.
    Copy,
}

impl Pattern {
    /// The pattern for a collective that reduces with `op` over `nranks` ranks
    /// (`None`: it only moves data).
    pub fn new<T: TestElem>(op: Option<ReduceOp>, nranks: usize) -> Pattern {
        let n = nranks.max(1) as i64;
        match op {
            None => Pattern::Copy,
            Some(ReduceOp::Sum | ReduceOp::Avg | ReduceOp::PreMulSum(_)) => Pattern::Sum {
                max: if T::INTEGER {
                    1 << 30
                } else {
                    (T::EXACT / n).min(1000)
                },
            },
            Some(ReduceOp::Prod) => Pattern::Prod,
            Some(ReduceOp::Min | ReduceOp::Max) => Pattern::Order,
            Some(ReduceOp::BAnd | ReduceOp::BOr | ReduceOp::BXor) => Pattern::Bits,
        }
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A number in `0..m` from the hash `h` (multiply-high, no division).
fn below(h: u64, m: u64) -> i64 {
    ((u128::from(h) * u128::from(m)) >> 64) as i64
}

/// Fills `out` with `X_rank[start..start + out.len()]` of repetition `rep` (any
/// seed: runs with different `rep` get different values).
pub fn fill<T: TestElem>(p: Pattern, rank: usize, rep: u64, start: usize, out: &mut [T]) {
    let seed = splitmix(rep.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ ((rank as u64) << 20));
    let doubling = (rank as u64) < u64::from(T::MAX_POW2);
    for (k, o) in out.iter_mut().enumerate() {
        let idx = (start + k) as u64;
        let h = splitmix(seed ^ idx.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let h2 = h.rotate_left(32);
        *o = match p {
            Pattern::Sum { max } => {
                let m = (2 * max + 1) as u64;
                T::from_parts(below(h, m) - max, below(h2, m) - max)
            }
            Pattern::Prod if T::INTEGER => {
                let v = below(h, 6) - 3;
                T::from_parts(if v >= 0 { v + 1 } else { v }, 0)
            }
            Pattern::Prod => {
                // Complex products of negative reals could end with an imaginary
                // part of -0 or +0 depending on the order: keep them positive.
                let sign = if h & 1 == 1 && !T::COMPLEX { -1 } else { 1 };
                let mag = if doubling && (h >> 1) & 1 == 1 { 2 } else { 1 };
                T::from_parts(sign * mag, 0)
            }
            Pattern::Order => T::from_parts(below(h, 2001) - 1000, 0),
            Pattern::Bits => T::from_parts(h as i64, 0),
            Pattern::Copy if T::INTEGER => T::from_parts(h as i64, 0),
            Pattern::Copy => T::from_parts(below(h, 2001) - 1000, below(h2, 2001) - 1000),
        };
    }
}

/// The reduction with `op` over ranks `0..nranks` of `X_r[start..start + acc.len()]`,
/// finalized (Avg, PreMulSum), into `acc`; `tmp` is scratch of the same length.
pub fn fill_reduced<T: TestElem>(
    p: Pattern,
    op: ReduceOp,
    nranks: usize,
    rep: u64,
    start: usize,
    acc: &mut [T],
    tmp: &mut [T],
) -> crate::Result<()> {
    fill(p, 0, rep, start, acc);
    for r in 1..nranks {
        fill(p, r, rep, start, tmp);
        crate::cpu::reduce_inplace(op, acc, tmp)?;
    }
    crate::cpu::finalize(op, acc, nranks)
}

/// Elements compared per block by [`count_wrong`] (the expected values are
/// generated block by block).
const BLOCK: usize = 16 * 1024;

/// Counts the elements of `got` whose bits differ from the expected values, which
/// `expect(start, block)` writes for `got[start..start + block.len()]`, a block at
/// a time (so a large output needs no reference as large).
pub fn count_wrong<T: TestElem>(
    got: &[T],
    mut expect: impl FnMut(usize, &mut [T]) -> crate::Result<()>,
) -> crate::Result<u64> {
    let zero = <T as bytemuck::Zeroable>::zeroed();
    let mut want = vec![zero; BLOCK.min(got.len())];
    let mut wrong = 0u64;
    for (b, chunk) in got.chunks(BLOCK).enumerate() {
        let w = &mut want[..chunk.len()];
        expect(b * BLOCK, w)?;
        wrong += mismatches(chunk, w);
    }
    Ok(wrong)
}

/// The number of elements of `got` whose bits differ from `want`'s, plus the
/// difference in length (elements missing or extra count as wrong).
pub fn mismatches<T: TestElem>(got: &[T], want: &[T]) -> u64 {
    got.iter()
        .zip(want)
        .filter(|(g, w)| bytemuck::bytes_of(*g) != bytemuck::bytes_of(*w))
        .count() as u64
        + got.len().abs_diff(want.len()) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DataType;

    #[test]
    fn sums_are_exact_in_any_order() {
        // f8e4m3 over 2 ranks: values in [-8, 8], sums in [-16, 16], all exact.
        let p = Pattern::new::<F8E4M3>(Some(ReduceOp::Sum), 2);
        assert_eq!(p, Pattern::Sum { max: 8 });
        let (mut a, mut b) = (vec![F8E4M3::default(); 1000], vec![F8E4M3::default(); 1000]);
        fill(p, 0, 1, 0, &mut a);
        fill(p, 1, 1, 0, &mut b);
        for (x, y) in a.iter().zip(&b) {
            let s = x.to_f32() + y.to_f32();
            assert_eq!(F8E4M3::from_f32(s).to_f32(), s);
        }
    }

    #[test]
    fn float_sums_are_exact_in_any_order() {
        let n = 4;
        let p = Pattern::new::<F8E4M3>(Some(ReduceOp::Sum), n);
        assert_eq!(p, Pattern::Sum { max: 4 });
        let mut parts = vec![vec![F8E4M3::default(); 500]; n];
        for (r, part) in parts.iter_mut().enumerate() {
            fill(p, r, 9, 0, part);
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
    fn generation_is_deterministic_and_blockwise() {
        let p = Pattern::new::<f32>(Some(ReduceOp::Sum), 4);
        let mut whole = vec![0f32; 100];
        fill(p, 3, 7, 0, &mut whole);
        let mut part = vec![0f32; 40];
        fill(p, 3, 7, 50, &mut part);
        assert_eq!(&whole[50..90], &part[..]);
        let mut other = vec![0f32; 100];
        fill(p, 2, 7, 0, &mut other);
        assert_ne!(whole, other);
    }

    #[test]
    fn count_wrong_sees_a_flipped_bit() {
        let p = Pattern::Copy;
        let mut got = vec![0u8; 40_000];
        fill(p, 1, 0, 0, &mut got);
        let check = |got: &[u8]| {
            count_wrong(got, |s, w: &mut [u8]| {
                fill(p, 1, 0, s, w);
                Ok(())
            })
        };
        assert_eq!(check(&got).unwrap(), 0);
        // In the third block.
        got[35_000] ^= 0x10;
        assert_eq!(check(&got).unwrap(), 1);
    }

    #[test]
    fn the_reference_sees_one_flipped_bit() {
        let p = Pattern::new::<f32>(Some(ReduceOp::Sum), 3);
        let (mut want, mut tmp) = (vec![0f32; 100], vec![0f32; 100]);
        fill_reduced(p, ReduceOp::Sum, 3, 5, 10, &mut want, &mut tmp).unwrap();
        let mut got = want.clone();
        assert_eq!(mismatches(&got, &want), 0);
        got[7] = f32::from_bits(got[7].to_bits() ^ 1);
        assert_eq!(mismatches(&got, &want), 1);
        assert_eq!(mismatches(&got[..90], &want), 11);
        // Blocks generate the same values as the whole.
        let mut part = vec![0f32; 10];
        fill_reduced(p, ReduceOp::Sum, 3, 5, 50, &mut part, &mut tmp[..10]).unwrap();
        assert_eq!(&part[..], &want[40..50]);
    }

    #[test]
    fn reduced_reference_matches_a_direct_sum() {
        let p = Pattern::new::<i32>(Some(ReduceOp::Sum), 3);
        let (mut acc, mut tmp) = (vec![0i32; 10], vec![0i32; 10]);
        fill_reduced(p, ReduceOp::Sum, 3, 0, 5, &mut acc, &mut tmp).unwrap();
        let mut want = vec![0i32; 10];
        for r in 0..3 {
            fill(p, r, 0, 5, &mut tmp);
            for (w, t) in want.iter_mut().zip(&tmp) {
                *w = w.wrapping_add(*t);
            }
        }
        assert_eq!(acc, want);
    }

    #[test]
    fn with_elem_binds_every_dtype() {
        fn dtype_of<T: TestElem>() -> DataType {
            T::DTYPE
        }
        for &dt in &DataType::ALL {
            assert_eq!(with_elem!(dt, T, { dtype_of::<T>() }), dt);
        }
    }
}
