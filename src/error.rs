//! The library's one error type.
//!
//! Every fallible call in tutti returns [`Result<T>`](crate::Result). Errors carry
//! enough context (what was called, with which dtype, op, length or peer) that the
//! message alone tells the user what was wrong. Bad user input is always an error,
//! never a panic, and is detected before any byte moves.

use crate::{DataType, ReduceOp};

/// Errors returned by tutti.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The reduction operation is not defined for the data type (see
    /// [`ReduceOp::check`](crate::ReduceOp::check) for the validity matrix).
    #[error("reduce op {op} is not supported for dtype {dtype}: {reason}")]
    InvalidOp {
        /// The operation that was asked for.
        op: ReduceOp,
        /// The element type it was asked for.
        dtype: DataType,
        /// Why the pair is invalid.
        reason: &'static str,
    },

    /// Two buffers that must have the same length do not.
    #[error("{what}: length mismatch: expected {expected} {unit}, got {actual}")]
    LengthMismatch {
        /// Which call and which buffer.
        what: &'static str,
        /// The length that was required.
        expected: usize,
        /// The length that was passed.
        actual: usize,
        /// The unit of both lengths ("elements" or "bytes").
        unit: &'static str,
    },

    /// A byte buffer whose length is not a whole number of elements of its dtype.
    #[error("{what}: {len} bytes is not a whole number of {dtype} elements ({size} bytes each)")]
    PartialElement {
        /// Which call and which buffer.
        what: &'static str,
        /// The buffer's length in bytes.
        len: usize,
        /// The element type.
        dtype: DataType,
        /// The element size in bytes.
        size: usize,
    },

    /// A parameter is out of its valid range (a world size of zero, a non-finite
    /// PreMulSum scalar, ...). The message names the parameter and the value.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A name that does not denote a known data type.
    #[error("unknown data type {0:?} (expected one of: {names})", names = DataType::NAMES_HELP)]
    UnknownDataType(String),

    /// A name that does not denote a known reduction operation.
    #[error("unknown reduce op {0:?} (expected one of: sum, prod, min, max, avg, premulsum:<scalar>, band, bor, bxor)")]
    UnknownReduceOp(String),

    /// No usable CUDA driver or device: GPU work cannot run here.
    #[error("GPU unavailable: {0}")]
    GpuUnavailable(String),

    /// A CUDA driver call failed.
    #[error("CUDA error in {context}: {message}")]
    Cuda {
        /// What tutti was doing.
        context: String,
        /// The driver's message.
        message: String,
    },

    /// The CUDA kernels could not be compiled or loaded.
    #[error("CUDA kernel build failed ({context}): {log}")]
    KernelBuild {
        /// Which step failed (NVRTC compile, module load, ...).
        context: String,
        /// The compiler log or loader message.
        log: String,
    },
}

/// `Result` with tutti's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
