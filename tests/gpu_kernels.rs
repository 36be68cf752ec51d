//! The CUDA kernels against the CPU kernels: every dtype, every valid op (Avg with
//! world sizes 3 and 8, PreMulSum(0.37)), random data (ordinary values, and all bit
//! patterns with NaN, infinities, subnormals and integer extremes mixed in), sizes
//! from 0 to 2^20 + 3, and five buffer layouts (aligned, in place, same offset, mixed
//! offsets, odd byte offsets) covering the kernels' vector, element and byte paths.
//! Results must be equal bit for bit (NaN: equal as a class); the bytes around each
//! output must be untouched.
//!
//! Without a GPU every test prints `SKIPPED: <reason>` and passes; with
//! `TUTTI_REQUIRE_GPU=1` it fails instead.

use std::sync::Arc;

use half::{bf16, f16};
use num_complex::Complex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tutti::cpu::Reducer;
use tutti::gpu::cudarc::driver::{CudaSlice, CudaStream};
use tutti::gpu::{self, GpuKernels};
use tutti::{DataType, Error, F8E4M3, F8E5M2, ReduceOp};

struct Gpu {
    kernels: Arc<GpuKernels>,
    stream: Arc<CudaStream>,
}

/// The GPU, or `None` after printing why the test is skipped (a panic instead when
/// `TUTTI_REQUIRE_GPU=1`). A GPU whose kernels fail to load is a failure.
fn gpu() -> Option<Gpu> {
    let required = std::env::var("TUTTI_REQUIRE_GPU").as_deref() == Ok("1");
    let ctx = match gpu::open_device(0) {
        Ok(ctx) => ctx,
        Err(e) => {
            assert!(!required, "TUTTI_REQUIRE_GPU=1 but no GPU is usable: {e}");
            eprintln!("SKIPPED: {e}");
            return None;
        }
    };
    let kernels = GpuKernels::load(&ctx).unwrap_or_else(|e| {
        panic!(
            "a GPU is present but the kernels do not load ({}): {e}",
            gpu::kernel_image().how
        )
    });
    let stream = ctx.default_stream();
    Some(Gpu { kernels, stream })
}

// ------------------------------------------------------------------ data -------------

#[derive(Clone, Copy, Debug)]
enum Case {
    /// Ordinary values (floats in a moderate range; integers: all bit patterns, so sums
    /// and products overflow).
    Values,
    /// All bit patterns, with one element in four replaced by a special value.
    Specials,
}

fn specials(dtype: DataType) -> Vec<Vec<u8>> {
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
fn value(dtype: DataType, rng: &mut StdRng) -> Vec<u8> {
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

fn data(dtype: DataType, count: usize, case: Case, rng: &mut StdRng) -> Vec<u8> {
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

// ------------------------------------------------------------------ comparison -------

fn is_nan(bytes: &[u8], dtype: DataType) -> bool {
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
fn same(dtype: DataType, x: &[u8], y: &[u8]) -> bool {
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

// ------------------------------------------------------------------ one check --------

/// Buffer placement: byte offsets of (dst, a, b) inside their allocations, and whether
/// dst is `a` (in place).
#[derive(Clone, Copy, Debug)]
enum Layout {
    /// Fresh allocations (256-byte aligned): the 16-byte vector path.
    Aligned,
    /// `dst` is `a`.
    InPlace,
    /// All three one element in: the head-then-vector path.
    SameOffset,
    /// `dst` one element in, `a` and `b` aligned: the element path.
    MixedOffset,
    /// Odd byte offsets (1, 2, 3): the byte path (element path for 1-byte types).
    ByteOffset,
}

impl Layout {
    const ALL: [Layout; 5] = [
        Layout::Aligned,
        Layout::InPlace,
        Layout::SameOffset,
        Layout::MixedOffset,
        Layout::ByteOffset,
    ];

    fn offsets(self, size: usize) -> (usize, usize, usize) {
        match self {
            Layout::Aligned | Layout::InPlace => (0, 0, 0),
            Layout::SameOffset => (size, size, size),
            Layout::MixedOffset => (size, 0, 0),
            Layout::ByteOffset => (1, 2, 3),
        }
    }
}

/// Guard bytes after each buffer (must stay untouched).
const PAD: usize = 32;
const GUARD: u8 = 0xa5;

fn upload(g: &Gpu, off: usize, data: &[u8]) -> CudaSlice<u8> {
    let mut host = vec![GUARD; off + data.len() + PAD];
    host[off..off + data.len()].copy_from_slice(data);
    g.stream.clone_htod(&host).expect("upload")
}

#[derive(Clone, Copy, Debug)]
struct Combo {
    dtype: DataType,
    op: ReduceOp,
    world: usize,
    count: usize,
    layout: Layout,
    case: Case,
    seed: u64,
}

/// Runs one combination on both sides; `Err` describes the first mismatch.
fn check(g: &Gpu, c: Combo) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(c.seed);
    let size = c.dtype.size();
    let n = c.count * size;
    let a = data(c.dtype, c.count, c.case, &mut rng);
    let b = data(c.dtype, c.count, c.case, &mut rng);
    let garbage = data(c.dtype, c.count, Case::Specials, &mut rng);

    let reducer = Reducer::new(c.dtype, c.op).map_err(|e| e.to_string())?;
    let mut want = vec![0u8; n];
    reducer
        .reduce(&mut want, &a, &b)
        .map_err(|e| e.to_string())?;
    reducer
        .finalize(&mut want, c.world)
        .map_err(|e| e.to_string())?;

    let (od, oa, ob) = c.layout.offsets(size);
    let k = &g.kernels;
    let s = &g.stream;
    let mut dbuf = upload(
        g,
        od,
        if matches!(c.layout, Layout::InPlace) {
            &a
        } else {
            &garbage
        },
    );
    let abuf = upload(g, oa, &a);
    let bbuf = upload(g, ob, &b);
    {
        let mut dview = dbuf.slice_mut(od..od + n);
        let bview = bbuf.slice(ob..ob + n);
        if matches!(c.layout, Layout::InPlace) {
            k.reduce_inplace_bytes(s, c.dtype, c.op, &mut dview, &bview)
        } else {
            let aview = abuf.slice(oa..oa + n);
            k.reduce_bytes(s, c.dtype, c.op, &mut dview, &aview, &bview)
        }
        .map_err(|e| format!("reduce: {e}"))?;
        k.finalize_bytes(s, c.dtype, c.op, &mut dview, c.world)
            .map_err(|e| format!("finalize: {e}"))?;
    }
    let got = s.clone_dtoh(&dbuf).map_err(|e| format!("download: {e}"))?;
    if got[..od].iter().chain(&got[od + n..]).any(|&x| x != GUARD) {
        return Err("bytes outside the output were written".into());
    }
    let got = &got[od..od + n];
    for i in 0..c.count {
        let r = i * size..(i + 1) * size;
        if !same(c.dtype, &got[r.clone()], &want[r.clone()]) {
            return Err(format!(
                "element {i}: a={:02x?} b={:02x?} cpu={:02x?} gpu={:02x?}",
                &a[r.clone()],
                &b[r.clone()],
                &want[r.clone()],
                &got[r]
            ));
        }
    }
    Ok(())
}

/// Every valid op of `dtype` (Avg twice: world sizes 3 and 8), with the world size
/// passed to finalize.
fn ops(dtype: DataType) -> Vec<(ReduceOp, usize)> {
    let mut out = Vec::new();
    for op in ReduceOp::valid_for(dtype, 0.37) {
        if op == ReduceOp::Avg {
            out.push((op, 3));
            out.push((op, 8));
        } else {
            out.push((op, 2));
        }
    }
    out
}

const SIZES: [usize; 6] = [0, 1, 3, 17, 4099, (1 << 20) + 3];

fn check_dtype(dtype: DataType) {
    let Some(g) = gpu() else { return };
    let mut failures = Vec::new();
    let mut runs = 0;
    let mut seed = 0x7u64 << 32 | dtype as u64;
    for (op, world) in ops(dtype) {
        for count in SIZES {
            for layout in Layout::ALL {
                // The large size in two layouts only (vector path; head + vector).
                if count > 5000 && !matches!(layout, Layout::Aligned | Layout::SameOffset) {
                    continue;
                }
                for case in [Case::Values, Case::Specials] {
                    seed += 1;
                    let combo = Combo {
                        dtype,
                        op,
                        world,
                        count,
                        layout,
                        case,
                        seed,
                    };
                    runs += 1;
                    if let Err(e) = check(&g, combo) {
                        failures.push(format!("{combo:?}: {e}"));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{dtype}: {} of {runs} combinations differ from the CPU kernels:\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!("{dtype}: {runs} combinations equal to the CPU kernels");
}

macro_rules! dtype_tests {
    ($($name:ident => $dtype:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            check_dtype(DataType::$dtype);
        }
    )*};
}

dtype_tests! {
    matches_cpu_i8 => I8,
    matches_cpu_u8 => U8,
    matches_cpu_i32 => I32,
    matches_cpu_u32 => U32,
    matches_cpu_i64 => I64,
    matches_cpu_u64 => U64,
    matches_cpu_f16 => F16,
    matches_cpu_bf16 => BF16,
    matches_cpu_f32 => F32,
    matches_cpu_f64 => F64,
    matches_cpu_f8e4m3 => F8E4M3,
    matches_cpu_f8e5m2 => F8E5M2,
    matches_cpu_c64 => C64,
    matches_cpu_c128 => C128,
}

// ------------------------------------------------------------------ API layers -------

#[test]
fn typed_api_matches_cpu() {
    let Some(g) = gpu() else { return };
    let s = &g.stream;
    let mut rng = StdRng::seed_from_u64(42);
    let a: Vec<f32> = (0..1001).map(|_| rng.random_range(-10.0..10.0)).collect();
    let b: Vec<f32> = (0..1001).map(|_| rng.random_range(-10.0..10.0)).collect();
    for op in [
        ReduceOp::Sum,
        ReduceOp::Max,
        ReduceOp::Avg,
        ReduceOp::PreMulSum(0.37),
    ] {
        let mut want = vec![0f32; a.len()];
        tutti::cpu::reduce(op, &mut want, &a, &b).unwrap();
        tutti::cpu::finalize(op, &mut want, 5).unwrap();

        let da = s.clone_htod(&a).unwrap();
        let db = s.clone_htod(&b).unwrap();
        let mut dd = s.alloc_zeros::<f32>(a.len()).unwrap();
        g.kernels.reduce(s, op, &mut dd, &da, &db).unwrap();
        g.kernels.finalize(s, op, &mut dd, 5).unwrap();
        let got = s.clone_dtoh(&dd).unwrap();
        assert_eq!(
            got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            "{op}"
        );

        // In place, on a view.
        let mut acc = s.clone_htod(&a).unwrap();
        let mut view = acc.slice_mut(..);
        g.kernels.reduce_inplace(s, op, &mut view, &db).unwrap();
        g.kernels.finalize(s, op, &mut view, 5).unwrap();
        let got = s.clone_dtoh(&acc).unwrap();
        assert_eq!(
            got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            "{op} in place"
        );
    }

    let a: Vec<u64> = (0..77).map(|_| rng.random()).collect();
    let b: Vec<u64> = (0..77).map(|_| rng.random()).collect();
    let mut want = vec![0u64; a.len()];
    tutti::cpu::reduce(ReduceOp::BXor, &mut want, &a, &b).unwrap();
    let da = s.clone_htod(&a).unwrap();
    let db = s.clone_htod(&b).unwrap();
    let mut dd = s.alloc_zeros::<u64>(a.len()).unwrap();
    g.kernels
        .reduce(s, ReduceOp::BXor, &mut dd, &da, &db)
        .unwrap();
    assert_eq!(s.clone_dtoh(&dd).unwrap(), want);

    let a: Vec<f16> = (0..333)
        .map(|_| f16::from_f32(rng.random_range(-4.0..4.0)))
        .collect();
    let b: Vec<f16> = (0..333)
        .map(|_| f16::from_f32(rng.random_range(-4.0..4.0)))
        .collect();
    let mut want = vec![f16::ZERO; a.len()];
    tutti::cpu::reduce(ReduceOp::Prod, &mut want, &a, &b).unwrap();
    let da = s.clone_htod(&a).unwrap();
    let db = s.clone_htod(&b).unwrap();
    let mut dd = s.alloc_zeros::<f16>(a.len()).unwrap();
    g.kernels
        .reduce(s, ReduceOp::Prod, &mut dd, &da, &db)
        .unwrap();
    assert_eq!(s.clone_dtoh(&dd).unwrap(), want);
}

#[test]
fn raw_api_matches_cpu() {
    use tutti::gpu::cudarc::driver::{DevicePtr, DevicePtrMut};
    let Some(g) = gpu() else { return };
    let s = &g.stream;
    let a: Vec<i32> = (0..4099).map(|i| i * 7 - 9000).collect();
    let b: Vec<i32> = (0..4099).map(|i| 12345 - i * 3).collect();
    let mut want = vec![0i32; a.len()];
    tutti::cpu::reduce(ReduceOp::Avg, &mut want, &a, &b).unwrap();
    tutti::cpu::finalize(ReduceOp::Avg, &mut want, 2).unwrap();

    let da = s.clone_htod(&a).unwrap();
    let db = s.clone_htod(&b).unwrap();
    let mut dd = s.alloc_zeros::<i32>(a.len()).unwrap();
    {
        let (pd, _d) = dd.device_ptr_mut(s);
        let (pa, _a) = da.device_ptr(s);
        let (pb, _b) = db.device_ptr(s);
        // SAFETY: three live device buffers of 4099 i32 in this context, distinct, kept
        // alive (and their cudarc events recorded by the guards) until after the sync
        // below.
        unsafe {
            g.kernels
                .launch_reduce(s, DataType::I32, ReduceOp::Avg, pd, pa, pb, a.len())
                .unwrap();
            g.kernels
                .launch_finalize(s, DataType::I32, ReduceOp::Avg, pd, a.len(), 2)
                .unwrap();
        }
    }
    assert_eq!(s.clone_dtoh(&dd).unwrap(), want);
}

#[test]
fn bad_input_is_an_error_not_a_launch() {
    let Some(g) = gpu() else { return };
    let s = &g.stream;
    let k = &g.kernels;
    let a = s.alloc_zeros::<u8>(64).unwrap();
    let b = s.alloc_zeros::<u8>(60).unwrap();
    let mut d = s.alloc_zeros::<u8>(64).unwrap();
    assert!(matches!(
        k.reduce_bytes(s, DataType::C64, ReduceOp::Max, &mut d, &a, &a),
        Err(Error::InvalidOp { .. })
    ));
    assert!(matches!(
        k.reduce_bytes(s, DataType::F32, ReduceOp::BXor, &mut d, &a, &a),
        Err(Error::InvalidOp { .. })
    ));
    assert!(matches!(
        k.reduce_bytes(
            s,
            DataType::F32,
            ReduceOp::PreMulSum(f64::NAN),
            &mut d,
            &a,
            &a
        ),
        Err(Error::InvalidOp { .. })
    ));
    assert!(matches!(
        k.reduce_bytes(s, DataType::F32, ReduceOp::Sum, &mut d, &a, &b),
        Err(Error::LengthMismatch { .. })
    ));
    assert!(matches!(
        k.reduce_inplace_bytes(s, DataType::F64, ReduceOp::Sum, &mut d.slice_mut(..60), &b),
        Err(Error::PartialElement { .. })
    ));
    assert!(matches!(
        k.finalize_bytes(s, DataType::F32, ReduceOp::Avg, &mut d, 0),
        Err(Error::InvalidArgument(_))
    ));
    // Nothing ran: d is still zero.
    assert!(s.clone_dtoh(&d).unwrap().iter().all(|&x| x == 0));
}
