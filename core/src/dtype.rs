//! [`DataType`]: the element types tutti reduces and moves.

use std::fmt;
use std::str::FromStr;

use crate::DataError as Error;

/// The element type of a buffer.
///
/// The discriminant values are stable: they are part of the CUDA kernels' C ABI
/// (`kernels/tutti_kernels.h`) and of wire headers that carry a dtype.
///
/// | dtype | Rust type | size | notes |
/// |---|---|---|---|
/// | `I8`, `U8`, `I32`, `U32`, `I64`, `U64` | `i8` ... `u64` | 1..8 | two's complement; arithmetic wraps |
/// | `F16` | [`half::f16`] | 2 | IEEE binary16 |
/// | `BF16` | [`half::bf16`] | 2 | bfloat16 |
/// | `F32`, `F64` | `f32`, `f64` | 4, 8 | IEEE binary32/64 |
/// | `F8E4M3` | [`F8E4M3`](crate::F8E4M3) | 1 | OCP E4M3FN: no infinities, max 448 |
/// | `F8E5M2` | [`F8E5M2`](crate::F8E5M2) | 1 | OCP E5M2: IEEE-like, with infinities |
/// | `C64`, `C128` | [`num_complex::Complex<f32>`], `Complex<f64>` | 8, 16 | (re, im) pairs |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum DataType {
    /// Signed 8-bit integer.
    I8 = 0,
    /// Unsigned 8-bit integer.
    U8 = 1,
    /// Signed 32-bit integer.
    I32 = 2,
    /// Unsigned 32-bit integer.
    U32 = 3,
    /// Signed 64-bit integer.
    I64 = 4,
    /// Unsigned 64-bit integer.
    U64 = 5,
    /// IEEE 754 binary16.
    F16 = 6,
    /// bfloat16 (the top half of an f32).
    BF16 = 7,
    /// IEEE 754 binary32.
    F32 = 8,
    /// IEEE 754 binary64.
    F64 = 9,
    /// 8-bit float, 4 exponent bits, 3 mantissa bits, no infinities (OCP "E4M3FN").
    F8E4M3 = 10,
    /// 8-bit float, 5 exponent bits, 2 mantissa bits (OCP "E5M2").
    F8E5M2 = 11,
    /// Complex number of two f32 (real, imaginary).
    C64 = 12,
    /// Complex number of two f64 (real, imaginary).
    C128 = 13,
}

impl DataType {
    /// Every data type, in discriminant order.
    pub const ALL: [DataType; 14] = [
        DataType::I8,
        DataType::U8,
        DataType::I32,
        DataType::U32,
        DataType::I64,
        DataType::U64,
        DataType::F16,
        DataType::BF16,
        DataType::F32,
        DataType::F64,
        DataType::F8E4M3,
        DataType::F8E5M2,
        DataType::C64,
        DataType::C128,
    ];

    /// The accepted names, for error messages.
    pub const NAMES_HELP: &'static str = "int8, uint8, int32, uint32, int64, uint64, float16, bfloat16, float32, float64, float8_e4m3fn, float8_e5m2, complex64, complex128 (or i8, u8, i32, u32, i64, u64, f16/half, bf16, f32/float, f64/double, f8e4m3, f8e5m2, c64, c128)";

    /// Size of one element in bytes.
    pub const fn size(self) -> usize {
        match self {
            DataType::I8 | DataType::U8 | DataType::F8E4M3 | DataType::F8E5M2 => 1,
            DataType::F16 | DataType::BF16 => 2,
            DataType::I32 | DataType::U32 | DataType::F32 => 4,
            DataType::I64 | DataType::U64 | DataType::F64 | DataType::C64 => 8,
            DataType::C128 => 16,
        }
    }

    /// The canonical name, as torch spells the dtype (`float32`, `bfloat16`,
    /// `float8_e4m3fn`, `complex64`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            DataType::I8 => "int8",
            DataType::U8 => "uint8",
            DataType::I32 => "int32",
            DataType::U32 => "uint32",
            DataType::I64 => "int64",
            DataType::U64 => "uint64",
            DataType::F16 => "float16",
            DataType::BF16 => "bfloat16",
            DataType::F32 => "float32",
            DataType::F64 => "float64",
            DataType::F8E4M3 => "float8_e4m3fn",
            DataType::F8E5M2 => "float8_e5m2",
            DataType::C64 => "complex64",
            DataType::C128 => "complex128",
        }
    }

    /// The short name used in kernel symbols and tables (`f32`, `bf16`, `c64`, ...).
    pub const fn short_name(self) -> &'static str {
        match self {
            DataType::I8 => "i8",
            DataType::U8 => "u8",
            DataType::I32 => "i32",
            DataType::U32 => "u32",
            DataType::I64 => "i64",
            DataType::U64 => "u64",
            DataType::F16 => "f16",
            DataType::BF16 => "bf16",
            DataType::F32 => "f32",
            DataType::F64 => "f64",
            DataType::F8E4M3 => "f8e4m3",
            DataType::F8E5M2 => "f8e5m2",
            DataType::C64 => "c64",
            DataType::C128 => "c128",
        }
    }

    /// True for the integer types (`i8` ... `u64`).
    pub const fn is_integer(self) -> bool {
        matches!(
            self,
            DataType::I8
                | DataType::U8
                | DataType::I32
                | DataType::U32
                | DataType::I64
                | DataType::U64
        )
    }

    /// True for the signed integer types.
    pub const fn is_signed_integer(self) -> bool {
        matches!(self, DataType::I8 | DataType::I32 | DataType::I64)
    }

    /// True for the real floating-point types (f16, bf16, f32, f64 and both fp8).
    pub const fn is_float(self) -> bool {
        matches!(
            self,
            DataType::F16
                | DataType::BF16
                | DataType::F32
                | DataType::F64
                | DataType::F8E4M3
                | DataType::F8E5M2
        )
    }

    /// True for the complex types.
    pub const fn is_complex(self) -> bool {
        matches!(self, DataType::C64 | DataType::C128)
    }

    /// True for the types narrower than f32 whose arithmetic runs in f32 and is
    /// rounded back after every step (f16, bf16, fp8).
    pub const fn accumulates_in_f32(self) -> bool {
        matches!(
            self,
            DataType::F16 | DataType::BF16 | DataType::F8E4M3 | DataType::F8E5M2
        )
    }

    /// The data type with the given discriminant (see the type's docs).
    pub fn from_u8(v: u8) -> Option<DataType> {
        DataType::ALL.get(usize::from(v)).copied()
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DataType {
    type Err = Error;

    /// Parses torch names (`float32`, `bfloat16`, `float8_e4m3fn`, ...), short names
    /// (`f32`, `bf16`, `c64`, ...) and nccl-tests' names (`float`, `double`, `half`,
    /// `int`, `uint8`, ...), case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        let dt = match t.as_str() {
            "int8" | "i8" | "char" => DataType::I8,
            "uint8" | "u8" | "byte" => DataType::U8,
            "int32" | "i32" | "int" => DataType::I32,
            "uint32" | "u32" => DataType::U32,
            "int64" | "i64" | "long" => DataType::I64,
            "uint64" | "u64" => DataType::U64,
            "float16" | "f16" | "half" | "fp16" => DataType::F16,
            "bfloat16" | "bf16" => DataType::BF16,
            "float32" | "f32" | "float" | "fp32" => DataType::F32,
            "float64" | "f64" | "double" | "fp64" => DataType::F64,
            "float8_e4m3fn" | "float8_e4m3" | "f8e4m3" | "fp8_e4m3" | "e4m3" => DataType::F8E4M3,
            "float8_e5m2" | "f8e5m2" | "fp8_e5m2" | "e5m2" => DataType::F8E5M2,
            "complex64" | "c64" | "cfloat" => DataType::C64,
            "complex128" | "c128" | "cdouble" => DataType::C128,
            _ => return Err(Error::UnknownDataType(s.to_string())),
        };
        Ok(dt)
    }
}
