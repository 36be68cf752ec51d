//! Support shared by the GPU tests (`tests/gpu_*.rs`): whether a GPU is here (a test
//! without one prints `SKIPPED: <reason>` and passes, and fails instead with
//! `TUTTI_REQUIRE_GPU=1`), random data of every dtype, bit-exact comparison (NaN as a
//! class), and the CPU reference of a rank-order fold.

#![allow(dead_code)]

use half::{bf16, f16};
use num_complex::Complex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tutti::cpu::Reducer;
use tutti::{DataType, F8E4M3, F8E5M2, ReduceOp};

/// Whether `TUTTI_REQUIRE_GPU=1` (a missing GPU is then a failure).
pub fn required() -> bool {
    std::env::var("TUTTI_REQUIRE_GPU").as_deref() == Ok("1")
}

/// The number of CUDA devices, or `None` after printing why the test is skipped (a
/// panic instead when `TUTTI_REQUIRE_GPU=1`).
pub fn devices() -> Option<usize> {
    match tutti::gpu::device_count() {
        Ok(n) => Some(n),
        Err(e) => {
            assert!(!required(), "TUTTI_REQUIRE_GPU=1 but no GPU is usable: {e}");
            eprintln!("SKIPPED: {e}");
            None
        }
    }
}

/// A generator seeded from `parts`.
pub fn rng(parts: &[u64]) -> StdRng {
    let mut seed = 0x5eed_u64;
    for p in parts {
        seed = seed.rotate_left(17) ^ p.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    StdRng::seed_from_u64(seed)
}

/// The left fold `inputs[0] op inputs[1] op ...` with the CPU kernels, then the
/// final pass of `op` over `world` ranks: what every device collective must produce,
/// bit for bit (NaN payloads excepted).
pub fn fold(dtype: DataType, op: ReduceOp, inputs: &[&[u8]], world: usize) -> Vec<u8> {
    let reducer = Reducer::new(dtype, op).expect("a valid pair");
    let mut acc = inputs[0].to_vec();
    for x in &inputs[1..] {
        reducer.reduce_inplace(&mut acc, x).expect("same lengths");
    }
    reducer.finalize(&mut acc, world).expect("finalize");
    acc
}

/// The index of the first element where `got` and `want` differ (see [`same`]).
pub fn first_difference(dtype: DataType, got: &[u8], want: &[u8]) -> Option<usize> {
    if got.len() != want.len() {
        return Some(0);
    }
    let size = dtype.size();
    (0..got.len() / size).find(|&i| {
        let r = i * size..(i + 1) * size;
        !same(dtype, &got[r.clone()], &want[r])
    })
}

#[derive(Clone, Copy, Debug)]
pub enum Case {
    /// Ordinary values (floats in a moderate range; integers: all bit patterns, so sums
    /// and products overflow).
    Values,
    /// All bit patterns, with one element in four replaced by a special value.
    Specials,
}

pub fn specials(dtype: DataType) -> Vec<Vec<u8>> {
    let f32s: [u32; 11] = [
        0x7f80_0000,
        0xff80_0000,
        0x7fc0_0000,
        0xffc0_0000,
        0x7f80_0001,
        0,
        0x8000_0000,
        1,
        0x7f7f_ffff,
        0x0080_0000,
        0x3f80_0000,
    ];
    let f64s: [u64; 10] = [
        0x7ff0_0000_0000_0000,
        0xfff0_0000_0000_0000,
        0x7ff8_0000_0000_0000,
        0xfff8_0000_0000_0000,
        0x7ff0_0000_0000_0001,
        0,
        0x8000_0000_0000_0000,
        1,
        0x7fef_ffff_ffff_ffff,
        0x3ff0_0000_0000_0000,
    ];
    let u16s = |v: &[u16]| v.iter().map(|x| x.to_le_bytes().to_vec()).collect();
    let u8s = |v: &[u8]| v.iter().map(|x| vec![*x]).collect();
    match dtype {
        DataType::I8 | DataType::U8 => u8s(&[0x80, 0x7f, 0xff, 0, 1]),
        DataType::I32 | DataType::U32 => [i32::MIN, i32::MAX, -1, 0, 1]
            .iter()
            .map(|x| x.to_le_bytes().to_vec())
            .collect(),
        DataType::I64 | DataType::U64 => [i64::MIN, i64::MAX, -1, 0, 1]
            .iter()
            .map(|x| x.to_le_bytes().to_vec())
            .collect(),
        DataType::F16 => u16s(&[0x7c00, 0xfc00, 0x7e00, 0x7c01, 0, 0x8000, 1, 0x7bff, 0x3c00]),
        DataType::BF16 => u16s(&[0x7f80, 0xff80, 0x7fc0, 0x7f81, 0, 0x8000, 1, 0x7f7f, 0x3f80]),
        DataType::F32 => f32s.iter().map(|x| x.to_le_bytes().to_vec()).collect(),
        DataType::F64 => f64s.iter().map(|x| x.to_le_bytes().to_vec()).collect(),
        DataType::F8E4M3 => u8s(&[0x7f, 0xff, 0x7e, 0xfe, 0, 0x80, 1, 8]),
        DataType::F8E5M2 => u8s(&[0x7c, 0xfc, 0x7e, 0x7d, 0x7b, 0, 0x80, 1]),
        DataType::C64 => f32s
            .iter()
            .flat_map(|re| f32s.iter().map(move |im| [*re, *im]))
            .map(|[re, im]| [re.to_le_bytes(), im.to_le_bytes()].concat())
            .collect(),
        DataType::C128 => f64s
            .iter()
            .flat_map(|re| f64s.iter().map(move |im| [*re, *im]))
            .map(|[re, im]| [re.to_le_bytes(), im.to_le_bytes()].concat())
            .collect(),
    }
}

/// One ordinary value of `dtype`, little-endian.
pub fn value(dtype: DataType, rng: &mut StdRng) -> Vec<u8> {
    match dtype {
        DataType::F16 => f16::from_f32(rng.random_range(-300.0..300.0))
            .to_le_bytes()
            .to_vec(),
        DataType::BF16 => bf16::from_f32(rng.random_range(-1000.0..1000.0))
            .to_le_bytes()
            .to_vec(),
        DataType::F32 => rng.random_range(-1000.0f32..1000.0).to_le_bytes().to_vec(),
        DataType::F64 => rng.random_range(-1000.0f64..1000.0).to_le_bytes().to_vec(),
        DataType::F8E4M3 => vec![F8E4M3::from_f32(rng.random_range(-30.0..30.0)).to_bits()],
        DataType::F8E5M2 => vec![F8E5M2::from_f32(rng.random_range(-300.0..300.0)).to_bits()],
        DataType::C64 => {
            let c = Complex::new(
                rng.random_range(-100.0f32..100.0),
                rng.random_range(-100.0f32..100.0),
            );
            bytemuck::bytes_of(&c).to_vec()
        }
        DataType::C128 => {
            let c = Complex::new(
                rng.random_range(-100.0f64..100.0),
                rng.random_range(-100.0f64..100.0),
            );
            bytemuck::bytes_of(&c).to_vec()
        }
        // Integers: any bit pattern.
        _ => {
            let mut v = vec![0u8; dtype.size()];
            rng.fill(&mut v[..]);
            v
        }
    }
}

pub fn data(dtype: DataType, count: usize, case: Case, rng: &mut StdRng) -> Vec<u8> {
    let size = dtype.size();
    let mut out = vec![0u8; count * size];
    match case {
        Case::Values if dtype.is_integer() => rng.fill(&mut out[..]),
        Case::Values => {
            for chunk in out.chunks_exact_mut(size) {
                chunk.copy_from_slice(&value(dtype, rng));
            }
        }
        Case::Specials => {
            rng.fill(&mut out[..]);
            let sp = specials(dtype);
            for chunk in out.chunks_exact_mut(size) {
                if rng.random_range(0..4) == 0 {
                    chunk.copy_from_slice(&sp[rng.random_range(0..sp.len())]);
                }
            }
        }
    }
    out
}

pub fn is_nan(bytes: &[u8], dtype: DataType) -> bool {
    let u16v = || u16::from_le_bytes([bytes[0], bytes[1]]);
    let f32v = |b: &[u8]| f32::from_le_bytes(b[..4].try_into().unwrap());
    let f64v = |b: &[u8]| f64::from_le_bytes(b[..8].try_into().unwrap());
    match dtype {
        DataType::F16 => u16v() & 0x7fff > 0x7c00,
        DataType::BF16 => u16v() & 0x7fff > 0x7f80,
        DataType::F32 => f32v(bytes).is_nan(),
        DataType::F64 => f64v(bytes).is_nan(),
        DataType::F8E4M3 => F8E4M3(bytes[0]).is_nan(),
        DataType::F8E5M2 => F8E5M2(bytes[0]).is_nan(),
        _ => false,
    }
}

/// Bit-equal, or NaN in both (per component for complex).
pub fn same(dtype: DataType, x: &[u8], y: &[u8]) -> bool {
    match dtype {
        DataType::C64 => {
            same(DataType::F32, &x[..4], &y[..4]) && same(DataType::F32, &x[4..], &y[4..])
        }
        DataType::C128 => {
            same(DataType::F64, &x[..8], &y[..8]) && same(DataType::F64, &x[8..], &y[8..])
        }
        _ => x == y || (is_nan(x, dtype) && is_nan(y, dtype)),
    }
}
