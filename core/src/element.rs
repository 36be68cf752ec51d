//! [`Element`]: the Rust types that collectives accept, mapped to [`DataType`].

use num_complex::Complex;

use crate::{DataType, F8E4M3, F8E5M2};

mod sealed {
    pub trait Sealed {}
}

/// A Rust type whose slices tutti can reduce and move.
///
/// Implemented for `i8`, `u8`, `i32`, `u32`, `i64`, `u64`, [`half::f16`],
/// [`half::bf16`], `f32`, `f64`, [`F8E4M3`], [`F8E5M2`], `Complex<f32>` and
/// `Complex<f64>` (from `num-complex`: `#[repr(C)]` (re, im) pairs). The trait is
/// sealed: the byte layout of each type is part of tutti's wire and kernel ABI.
pub trait Element:
    bytemuck::Pod + Copy + Send + Sync + PartialEq + std::fmt::Debug + sealed::Sealed + 'static
{
    /// The data type of this Rust type.
    const DTYPE: DataType;
}

macro_rules! element {
    ($($t:ty => $dt:ident),* $(,)?) => {
        $(
            impl sealed::Sealed for $t {}
            impl Element for $t {
                const DTYPE: DataType = DataType::$dt;
            }
        )*
    };
}

element! {
    i8 => I8,
    u8 => U8,
    i32 => I32,
    u32 => U32,
    i64 => I64,
    u64 => U64,
    half::f16 => F16,
    half::bf16 => BF16,
    f32 => F32,
    f64 => F64,
    F8E4M3 => F8E4M3,
    F8E5M2 => F8E5M2,
    Complex<f32> => C64,
    Complex<f64> => C128,
}
