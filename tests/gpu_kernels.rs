//! The CUDA kernels against the CPU kernels: every dtype, every valid op (Avg with
//! world sizes 3 and 8, PreMulSum(0.37)), random data (ordinary values, and all bit
//! patterns with NaN, infinities, subnormals and integer extremes mixed in), sizes
//! from 0 to 2^20 + 3, and five buffer layouts (aligned, in place, same offset, mixed
//! offsets, odd byte offsets) covering the kernels' vector, element and byte paths.
//! Results must be equal bit for bit (NaN: equal as a class); the bytes around each
//! output must be untouched.
//!
//! The n-source fold kernels (what the collectives launch) against the CPU left fold:
//! every dtype and valid op, 2 to 11 sources (more than one launch past 8), the same
//! layouts.
//!
//! Without a GPU every test prints `SKIPPED: <reason>` and passes; with
//! `TUTTI_REQUIRE_GPU=1` it fails instead.

mod gpu_support;

use std::sync::Arc;

use gpu_support::{Case, data, same};
use half::f16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tutti::cpu::Reducer;
use tutti::gpu::cudarc::driver::{CudaSlice, CudaStream};
use tutti::gpu::{self, GpuKernels};
use tutti::{DataType, Error, ReduceOp};

struct Gpu {
    kernels: Arc<GpuKernels>,
    stream: Arc<CudaStream>,
}

/// The GPU, or `None` after printing why the test is skipped (a panic instead when
/// `TUTTI_REQUIRE_GPU=1`). A GPU whose kernels fail to load is a failure.
fn gpu() -> Option<Gpu> {
    let required = gpu_support::required();
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

// ------------------------------------------------------------------ folds ------------

/// The fold of `k` random sources of `count` elements against the CPU left fold, in
/// `layout` (sources at the layout's `a` offset, the destination at its `dst` offset).
fn check_fold(
    g: &Gpu,
    dtype: DataType,
    op: ReduceOp,
    k: usize,
    count: usize,
    layout: Layout,
    seed: u64,
) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let size = dtype.size();
    let n = count * size;
    let srcs: Vec<Vec<u8>> = (0..k)
        .map(|_| data(dtype, count, Case::Values, &mut rng))
        .collect();
    let refs: Vec<&[u8]> = srcs.iter().map(Vec::as_slice).collect();
    let want = gpu_support::fold(dtype, op, &refs, 1);
    let (od, oa, _) = layout.offsets(size);
    let garbage = data(dtype, count, Case::Specials, &mut rng);
    let mut dbuf = upload(g, od, &garbage);
    let sbufs: Vec<CudaSlice<u8>> = srcs.iter().map(|x| upload(g, oa, x)).collect();
    {
        let views: Vec<_> = sbufs.iter().map(|b| b.slice(oa..oa + n)).collect();
        let mut dview = dbuf.slice_mut(od..od + n);
        g.kernels
            .fold_bytes(&g.stream, dtype, op, &mut dview, &views)
            .map_err(|e| format!("fold: {e}"))?;
    }
    let got = g
        .stream
        .clone_dtoh(&dbuf)
        .map_err(|e| format!("download: {e}"))?;
    if got[..od].iter().chain(&got[od + n..]).any(|&x| x != GUARD) {
        return Err("bytes outside the output were written".into());
    }
    match gpu_support::first_difference(dtype, &got[od..od + n], &want) {
        None => Ok(()),
        Some(i) => Err(format!(
            "element {i}: cpu={:02x?} gpu={:02x?}",
            &want[i * size..(i + 1) * size],
            &got[od + i * size..od + (i + 1) * size]
        )),
    }
}

#[test]
fn fold_kernels_match_the_cpu_left_fold() {
    let Some(g) = gpu() else { return };
    let mut failures = Vec::new();
    let mut runs = 0;
    let mut seed = 0xf01d_u64;
    for dtype in DataType::ALL {
        for op in ReduceOp::valid_for(dtype, 0.37) {
            // The fold is the step; Avg and PreMulSum fold with Sum.
            if matches!(op, ReduceOp::Avg | ReduceOp::PreMulSum(_)) {
                continue;
            }
            for k in [2usize, 3, 8, 9, 11] {
                for (count, layout) in [
                    (0, Layout::Aligned),
                    (1, Layout::Aligned),
                    (1027, Layout::Aligned),
                    (1027, Layout::SameOffset),
                    (129, Layout::MixedOffset),
                    (65, Layout::ByteOffset),
                    ((1 << 18) + 5, Layout::Aligned),
                ] {
                    seed += 1;
                    runs += 1;
                    if let Err(e) = check_fold(&g, dtype, op, k, count, layout, seed) {
                        failures.push(format!("{dtype} {op} k={k} count={count} {layout:?}: {e}"));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {runs} folds differ from the CPU left fold:\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!("{runs} folds equal to the CPU left fold");
}

#[test]
fn a_fold_of_one_source_is_a_copy_and_of_none_an_error() {
    let Some(g) = gpu() else { return };
    let s = &g.stream;
    let src = s.clone_htod(&[1u8, 2, 3, 4]).unwrap();
    let mut dst = s.alloc_zeros::<u8>(4).unwrap();
    g.kernels
        .fold_bytes(s, DataType::U8, ReduceOp::Max, &mut dst, &[src.slice(..)])
        .unwrap();
    assert_eq!(s.clone_dtoh(&dst).unwrap(), vec![1, 2, 3, 4]);
    assert!(matches!(
        g.kernels
            .fold_bytes(s, DataType::U8, ReduceOp::Max, &mut dst, &[]),
        Err(Error::InvalidArgument(_))
    ));
}
