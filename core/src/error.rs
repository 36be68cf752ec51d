//! [`DataError`]: what the data model rejects.

use crate::{DataType, ReduceOp};

/// Errors of the data model (`tutti::Error` has a variant for each).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The reduction operation is not defined for the data type.
    #[error("reduce op {op} is not supported for dtype {dtype}: {reason}")]
    InvalidOp {
        /// The operation that was asked for.
        op: ReduceOp,
        /// The element type it was asked for.
        dtype: DataType,
        /// Why the pair is invalid.
        reason: &'static str,
    },

    /// A name that does not denote a known data type.
    #[error("unknown data type {0:?} (expected one of: {names})", names = DataType::NAMES_HELP)]
    UnknownDataType(String),

    /// A name that does not denote a known reduction operation.
    #[error(
        "unknown reduce op {0:?} (expected one of: sum, prod, min, max, avg, premulsum:<scalar>, band, bor, bxor)"
    )]
    UnknownReduceOp(String),
}
