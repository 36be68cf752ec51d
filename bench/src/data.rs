//! Deterministic benchmark data and the reference results `-c` checks against:
//! [`tutti::testdata`]'s generator (rank `r`'s input is a virtual array any rank can
//! regenerate from `(r, i, rep)`, exact in any reduction order, as nccl-tests does;
//! the reference from tutti's CPU kernels, every element compared bit for bit),
//! re-exported, and the bench's own helpers: the corruption hook and nccl-tests'
//! names of types and ops.

pub use tutti::testdata::{Pattern, TestElem, count_wrong, fill, fill_reduced};
use tutti::{DataType, ReduceOp};

/// Flips one bit of the element in the middle of `buf` (the `TUTTI_BENCH_CORRUPT`
/// test hook: the check must then report at least one wrong element).
pub fn corrupt<T: TestElem>(buf: &mut [T]) {
    if buf.is_empty() {
        return;
    }
    let mid = buf.len() / 2;
    let bytes: &mut [u8] = bytemuck::bytes_of_mut(&mut buf[mid]);
    bytes[0] ^= 0x01;
}

/// nccl-tests' name of a data type for the `type` column (`float`, `half`,
/// `bfloat16`, ...); tutti-only types get short names (`f8e4m3`, `c64`).
pub fn type_name(dtype: DataType) -> &'static str {
    match dtype {
        DataType::I8 => "int8",
        DataType::U8 => "uint8",
        DataType::I32 => "int32",
        DataType::U32 => "uint32",
        DataType::I64 => "int64",
        DataType::U64 => "uint64",
        DataType::F16 => "half",
        DataType::BF16 => "bfloat16",
        DataType::F32 => "float",
        DataType::F64 => "double",
        DataType::F8E4M3 => "f8e4m3",
        DataType::F8E5M2 => "f8e5m2",
        DataType::C64 => "c64",
        DataType::C128 => "c128",
    }
}

/// nccl-tests' name of a reduction for the `redop` column (`sum`, `prod`, `max`,
/// `min`, `avg`, `mulsum`; tutti's bitwise ops as `band`, `bor`, `bxor`).
pub fn op_name(op: ReduceOp) -> &'static str {
    match op {
        ReduceOp::PreMulSum(_) => "mulsum",
        op => op.name(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tutti::testdata::mismatches;

    #[test]
    fn corrupt_flips_one_bit_of_the_middle_element() {
        let mut got = vec![0f32; 33];
        fill(Pattern::Copy, 1, 0, 0, &mut got);
        let want = got.clone();
        corrupt(&mut got);
        assert_eq!(mismatches(&got, &want), 1);
        assert_eq!((got[16].to_bits() ^ want[16].to_bits()).count_ones(), 1);
        corrupt::<u8>(&mut []);
    }

    #[test]
    fn names_follow_nccl_tests() {
        assert_eq!(type_name(DataType::F32), "float");
        assert_eq!(type_name(DataType::BF16), "bfloat16");
        assert_eq!(op_name(ReduceOp::Sum), "sum");
        assert_eq!(op_name(ReduceOp::PreMulSum(2.0)), "mulsum");
    }
}
