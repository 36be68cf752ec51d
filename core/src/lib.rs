//! # tutti-core
//!
//! tutti's data model, shared by `tutti` and the crates below it (the RPC layer):
//! [`DataType`], the [`Element`] trait of the Rust types that carry them, the fp8
//! types [`F8E4M3`] and [`F8E5M2`] with their conversions ([`convert`]), and
//! [`ReduceOp`] with torch's (dtype, op) validity rules. `tutti` re-exports all of it.

pub mod convert;
mod dtype;
mod element;
mod error;
mod float8;
mod op;

pub use dtype::DataType;
pub use element::Element;
pub use error::DataError;
pub use float8::{F8E4M3, F8E5M2};
pub use op::{Finalize, ReduceOp, StepOp};

/// `Result` with [`DataError`].
pub type Result<T, E = DataError> = std::result::Result<T, E>;
