//! The 8-bit float element types [`F8E4M3`] and [`F8E5M2`] (OCP FP8 formats).
//!
//! Storage only: arithmetic converts to f32 and rounds back (see
//! [`ReduceOp`](crate::ReduceOp) for the accumulation rules).

use std::fmt;

use bytemuck::{Pod, Zeroable};

use crate::convert;

/// 8-bit float with 4 exponent bits (bias 7) and 3 mantissa bits, no infinities:
/// OCP "E4M3FN", torch's `float8_e4m3fn`. Largest finite value 448, smallest
/// subnormal 2^-9; `0x7f`/`0xff` are NaN.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
#[repr(transparent)]
pub struct F8E4M3(pub u8);

/// 8-bit float with 5 exponent bits (bias 15) and 2 mantissa bits: OCP "E5M2",
/// torch's `float8_e5m2`. Largest finite value 57344, with infinities and NaN.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
#[repr(transparent)]
pub struct F8E5M2(pub u8);

impl F8E4M3 {
    /// Rounds an f32 to the nearest value (ties to even); magnitudes above 464 and
    /// NaN become NaN, as in torch.
    pub fn from_f32(v: f32) -> Self {
        F8E4M3(convert::f32_to_e4m3(v))
    }

    /// The exact f32 value.
    pub fn to_f32(self) -> f32 {
        convert::e4m3_to_f32(self.0)
    }

    /// The raw bits.
    pub fn to_bits(self) -> u8 {
        self.0
    }

    /// From raw bits.
    pub fn from_bits(bits: u8) -> Self {
        F8E4M3(bits)
    }

    /// True for the two NaN codes.
    pub fn is_nan(self) -> bool {
        self.0 & 0x7f == 0x7f
    }
}

impl F8E5M2 {
    /// Rounds an f32 to the nearest value (ties to even); magnitudes >= 61440
    /// become infinity, NaN stays NaN.
    pub fn from_f32(v: f32) -> Self {
        F8E5M2(convert::f32_to_e5m2(v))
    }

    /// The exact f32 value.
    pub fn to_f32(self) -> f32 {
        convert::e5m2_to_f32(self.0)
    }

    /// The raw bits.
    pub fn to_bits(self) -> u8 {
        self.0
    }

    /// From raw bits.
    pub fn from_bits(bits: u8) -> Self {
        F8E5M2(bits)
    }

    /// True for NaN codes (exponent all ones, mantissa not zero).
    pub fn is_nan(self) -> bool {
        self.0 & 0x7f > 0x7c
    }
}

impl fmt::Debug for F8E4M3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(0x{:02x})", self.to_f32(), self.0)
    }
}

impl fmt::Debug for F8E5M2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(0x{:02x})", self.to_f32(), self.0)
    }
}

impl fmt::Display for F8E4M3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_f32(), f)
    }
}

impl fmt::Display for F8E5M2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_f32(), f)
    }
}
