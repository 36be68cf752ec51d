//! [`ReduceOp`]: how collectives combine values, and which (dtype, op) pairs are valid.

use std::fmt;
use std::str::FromStr;

use crate::{DataError as Error, DataType, Result};

/// A reduction operation.
///
/// # Validity (torch.distributed's rules, checked before any byte moves)
///
/// | op | integers | f16 bf16 f32 f64 fp8 | complex64/128 |
/// |---|---|---|---|
/// | `Sum`, `Avg` | yes | yes | yes |
/// | `Prod` | yes | yes | yes (complex multiplication; torch rejects it, tutti defines it) |
/// | `Min`, `Max` | yes | yes | **error**: complex numbers have no order |
/// | `PreMulSum(s)` | **error**: a real scale of integers is not an integer | yes | yes |
/// | `BAnd`, `BOr`, `BXor` | yes | **error** | **error** |
///
/// Every invalid pair is [`Error::InvalidOp`] naming the op, the dtype and why.
///
/// # Semantics
///
/// - **Integer overflow wraps** (two's complement), for `Sum`, `Prod` and `Avg`'s sum:
///   `i8` 100 + 100 = -56, `u8` 200 + 100 = 44. Results do not depend on the order
///   of the ranks because wrapping addition and multiplication are associative.
/// - **Integer `Avg`** is the wrapped sum divided by the number of ranks, truncating
///   toward zero (`-7 / 2 = -3`), computed exactly (no intermediate overflow).
/// - **Float `Avg`** is the sum divided by the number of ranks, in the accumulation
///   type (f32 for f16/bf16/fp8), then rounded to the element type.
/// - **`PreMulSum(s)`** is `s * (x_0 + x_1 + ... + x_{n-1})`: tutti sums first and
///   scales once at the end (NCCL scales each input first; the two are equal up to
///   rounding). The scalar is real, applied in the accumulation type (`s as f32` for
///   f32/f16/bf16/fp8/complex64, `f64` for f64/complex128), and must be finite.
/// - **`Min` / `Max` propagate NaN**, like `torch.minimum`: if either operand is NaN
///   the result is NaN. For equal operands (including `+0.0` and `-0.0`) the first
///   operand, the accumulator, is kept. NaN payloads are not preserved.
/// - **f16, bf16 and fp8 accumulate in f32 per step**: each step converts both
///   operands to f32, combines them in f32, and rounds the result back to the element
///   type with round-to-nearest-even. So a ring of n ranks rounds n-1 times, exactly as
///   NCCL does; results are bit-identical for the same algorithm and rank order.
/// - **fp8 overflow** follows torch's conversions: f8e4m3 (no infinities) turns
///   magnitudes above 464 (halfway between 448, its largest value, and the NaN
///   code), infinities and NaN into NaN; f8e5m2 turns magnitudes >= 61440 into
///   infinity. f16 and bf16 overflow to infinity.
/// - **Complex** `Sum`/`Avg`/`PreMulSum` act on the real and imaginary parts
///   separately; `Prod` is `(a+bi)(c+di) = (ac-bd) + (ad+bc)i`.
/// - Float `Sum`/`Prod` follow IEEE 754 (inf - inf = NaN, NaN propagates).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ReduceOp {
    /// Sum of all ranks' values.
    Sum,
    /// Product of all ranks' values.
    Prod,
    /// Minimum (NaN propagates).
    Min,
    /// Maximum (NaN propagates).
    Max,
    /// Sum divided by the number of ranks (integers: truncating division).
    Avg,
    /// Sum multiplied by a real scalar: `s * sum(x_i)`.
    PreMulSum(f64),
    /// Bitwise AND (integers only).
    BAnd,
    /// Bitwise OR (integers only).
    BOr,
    /// Bitwise XOR (integers only).
    BXor,
}

/// The binary step a reduction applies between two values; `Avg` and `PreMulSum`
/// reduce with [`StepOp::Sum`] and then apply a final scaling (see
/// [`ReduceOp::step`]). The discriminants are part of the CUDA kernels' C ABI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum StepOp {
    /// `a + b`
    Sum = 0,
    /// `a * b`
    Prod = 1,
    /// `min(a, b)`, NaN-propagating
    Min = 2,
    /// `max(a, b)`, NaN-propagating
    Max = 3,
    /// `a & b`
    BAnd = 4,
    /// `a | b`
    BOr = 5,
    /// `a ^ b`
    BXor = 6,
}

impl StepOp {
    /// Every step op, in discriminant order.
    pub const ALL: [StepOp; 7] = [
        StepOp::Sum,
        StepOp::Prod,
        StepOp::Min,
        StepOp::Max,
        StepOp::BAnd,
        StepOp::BOr,
        StepOp::BXor,
    ];

    /// Lower-case name, as used in kernel symbols (`sum`, `prod`, `min`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            StepOp::Sum => "sum",
            StepOp::Prod => "prod",
            StepOp::Min => "min",
            StepOp::Max => "max",
            StepOp::BAnd => "band",
            StepOp::BOr => "bor",
            StepOp::BXor => "bxor",
        }
    }

    /// Whether this step is defined for `dtype` (the same matrix as [`ReduceOp::check`]).
    pub const fn supports(self, dtype: DataType) -> bool {
        match self {
            StepOp::Sum | StepOp::Prod => true,
            StepOp::Min | StepOp::Max => !dtype.is_complex(),
            StepOp::BAnd | StepOp::BOr | StepOp::BXor => dtype.is_integer(),
        }
    }
}

/// The last pass a reduction needs after all steps, if any.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Finalize {
    /// Nothing to do (`Sum`, `Prod`, `Min`, `Max`, bitwise ops).
    None,
    /// Divide by the number of ranks (`Avg`).
    DivideByWorldSize,
    /// Multiply by the scalar (`PreMulSum`).
    Scale(f64),
}

impl ReduceOp {
    /// Lower-case name as nccl-tests prints it in its `redop` column (`sum`, `prod`,
    /// `min`, `max`, `avg`, `premulsum`, `band`, `bor`, `bxor`).
    pub const fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Prod => "prod",
            ReduceOp::Min => "min",
            ReduceOp::Max => "max",
            ReduceOp::Avg => "avg",
            ReduceOp::PreMulSum(_) => "premulsum",
            ReduceOp::BAnd => "band",
            ReduceOp::BOr => "bor",
            ReduceOp::BXor => "bxor",
        }
    }

    /// The binary step applied between ranks' values.
    pub const fn step(self) -> StepOp {
        match self {
            ReduceOp::Sum | ReduceOp::Avg | ReduceOp::PreMulSum(_) => StepOp::Sum,
            ReduceOp::Prod => StepOp::Prod,
            ReduceOp::Min => StepOp::Min,
            ReduceOp::Max => StepOp::Max,
            ReduceOp::BAnd => StepOp::BAnd,
            ReduceOp::BOr => StepOp::BOr,
            ReduceOp::BXor => StepOp::BXor,
        }
    }

    /// The final pass applied once to the fully reduced buffer.
    pub const fn finalize(self) -> Finalize {
        match self {
            ReduceOp::Avg => Finalize::DivideByWorldSize,
            ReduceOp::PreMulSum(s) => Finalize::Scale(s),
            _ => Finalize::None,
        }
    }

    /// Checks that this op is defined for `dtype` (the matrix in the type's docs).
    ///
    /// ```
    /// use tutti_core::{DataType, ReduceOp};
    /// assert!(ReduceOp::Sum.check(DataType::C64).is_ok());
    /// let err = ReduceOp::Max.check(DataType::C64).unwrap_err();
    /// assert!(err.to_string().contains("complex"));
    /// assert!(ReduceOp::BXor.check(DataType::F32).is_err());
    /// ```
    pub fn check(self, dtype: DataType) -> Result<()> {
        let invalid = |reason: &'static str| {
            Err(Error::InvalidOp {
                op: self,
                dtype,
                reason,
            })
        };
        match self {
            ReduceOp::Sum | ReduceOp::Prod | ReduceOp::Avg => Ok(()),
            ReduceOp::Min | ReduceOp::Max if dtype.is_complex() => invalid(
                "complex numbers have no order (min/max are defined for integers and real floats)",
            ),
            ReduceOp::Min | ReduceOp::Max => Ok(()),
            ReduceOp::PreMulSum(_) if dtype.is_integer() => invalid(
                "premulsum scales by a real scalar and is defined for floating-point and complex dtypes only",
            ),
            ReduceOp::PreMulSum(s) if !s.is_finite() => {
                invalid("the premulsum scalar must be finite")
            }
            ReduceOp::PreMulSum(_) => Ok(()),
            ReduceOp::BAnd | ReduceOp::BOr | ReduceOp::BXor if !dtype.is_integer() => {
                invalid("bitwise ops are defined for integer dtypes only")
            }
            ReduceOp::BAnd | ReduceOp::BOr | ReduceOp::BXor => Ok(()),
        }
    }

    /// Every valid op for `dtype`, with `PreMulSum` carrying `scalar`.
    pub fn valid_for(dtype: DataType, scalar: f64) -> Vec<ReduceOp> {
        [
            ReduceOp::Sum,
            ReduceOp::Prod,
            ReduceOp::Min,
            ReduceOp::Max,
            ReduceOp::Avg,
            ReduceOp::PreMulSum(scalar),
            ReduceOp::BAnd,
            ReduceOp::BOr,
            ReduceOp::BXor,
        ]
        .into_iter()
        .filter(|op| op.check(dtype).is_ok())
        .collect()
    }
}

impl fmt::Display for ReduceOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReduceOp::PreMulSum(s) => write!(f, "premulsum({s})"),
            op => f.write_str(op.name()),
        }
    }
}

impl FromStr for ReduceOp {
    type Err = Error;

    /// Parses `sum`, `prod`, `min`, `max`, `avg`, `band`, `bor`, `bxor` (also
    /// `and`/`or`/`xor`) case-insensitively, and `premulsum:<scalar>` (also
    /// `mulsum:<scalar>`, nccl-tests' name).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        let op = match t.as_str() {
            "sum" => ReduceOp::Sum,
            "prod" | "product" => ReduceOp::Prod,
            "min" => ReduceOp::Min,
            "max" => ReduceOp::Max,
            "avg" | "mean" => ReduceOp::Avg,
            "band" | "and" => ReduceOp::BAnd,
            "bor" | "or" => ReduceOp::BOr,
            "bxor" | "xor" => ReduceOp::BXor,
            other => {
                let scalar = other
                    .strip_prefix("premulsum:")
                    .or_else(|| other.strip_prefix("mulsum:"))
                    .and_then(|v| v.parse::<f64>().ok())
                    .filter(|v| v.is_finite());
                match scalar {
                    Some(v) => ReduceOp::PreMulSum(v),
                    None => return Err(Error::UnknownReduceOp(s.to_string())),
                }
            }
        };
        Ok(op)
    }
}
