//! Data for the checked collectives: [`crate::testdata`]'s generator (rank `r`'s
//! contribution is a pure function of `(r, seed, index)`, exact in any reduction
//! order), and the data types the checks cover.

use crate::DataType;
pub use crate::testdata::{Pattern, TestElem, fill, fill_reduced, mismatches};
pub(crate) use crate::with_elem;

/// Every data type.
pub fn dtypes() -> &'static [DataType] {
    &DataType::ALL
}
