//! CPU reduction kernels for every valid (dtype, op) pair.
//!
//! Three operations, each on typed slices and on raw bytes:
//! - in place: `dst[i] = dst[i] op src[i]` ([`reduce_inplace`], [`Reducer::reduce_inplace`]);
//! - out of place: `dst[i] = a[i] op b[i]` ([`reduce`], [`Reducer::reduce`]);
//! - the final pass of `Avg` and `PreMulSum` ([`finalize`], [`Reducer::finalize`]),
//!   run once on the fully reduced buffer; a no-op for the other ops.
//!
//! For `Avg` and `PreMulSum` the in-place and out-of-place kernels apply the `Sum`
//! step: a collective reduces with them and finalizes once at the end. The rules
//! (wrapping integers, NaN-propagating min/max, f32 accumulation of narrow floats)
//! are documented on [`ReduceOp`].
//!
//! The loops vectorize (SSE2, AVX2 or AVX-512, picked at run time: see [`simd_level`]).
//! Byte buffers need not be aligned; misaligned ones take a slower blocked path.

mod combine;
mod scale;
mod simd;

use std::marker::PhantomData;

use bytemuck::Pod;
use half::{bf16, f16};
use num_complex::Complex;

use crate::{DataType, Element, Error, F8E4M3, F8E5M2, ReduceOp, Result};
use crate::{Finalize, StepOp};
use combine::{BAnd, BOr, BXor, Combine, Max, Min, Prod, Sum};
use scale::Scale;
use simd::Kernel;
pub use simd::{SimdLevel, detected_simd_level, simd_level};
use tutti_transport::ReduceError;

/// `dst[i] = dst[i] op src[i]` for every `i` (the `Sum` step for `Avg`/`PreMulSum`).
///
/// Errors: [`Error::InvalidOp`] for an invalid (dtype, op) pair,
/// [`Error::LengthMismatch`] when the slices differ in length. Nothing is written on
/// error.
pub fn reduce_inplace<T: Element>(op: ReduceOp, dst: &mut [T], src: &[T]) -> Result<()> {
    Reducer::new(T::DTYPE, op)?
        .reduce_inplace(bytemuck::cast_slice_mut(dst), bytemuck::cast_slice(src))
}

/// `dst[i] = a[i] op b[i]` for every `i` (the `Sum` step for `Avg`/`PreMulSum`).
///
/// Errors as for [`reduce_inplace`]; all three slices must have one length.
pub fn reduce<T: Element>(op: ReduceOp, dst: &mut [T], a: &[T], b: &[T]) -> Result<()> {
    Reducer::new(T::DTYPE, op)?.reduce(
        bytemuck::cast_slice_mut(dst),
        bytemuck::cast_slice(a),
        bytemuck::cast_slice(b),
    )
}

/// The final pass of `op` over a fully reduced buffer of `world_size` ranks'
/// values: `x / world_size` for `Avg`, `x * s` for `PreMulSum(s)`, nothing otherwise.
///
/// Errors: [`Error::InvalidOp`], or [`Error::InvalidArgument`] when `world_size` is 0.
pub fn finalize<T: Element>(op: ReduceOp, buf: &mut [T], world_size: usize) -> Result<()> {
    Reducer::new(T::DTYPE, op)?.finalize(bytemuck::cast_slice_mut(buf), world_size)
}

/// A validated (dtype, op) pair that reduces raw byte buffers: the byte-level
/// reducer the ring and tree algorithms are handed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reducer {
    dtype: DataType,
    op: ReduceOp,
}

impl Reducer {
    /// Checks the pair (see [`ReduceOp::check`]).
    pub fn new(dtype: DataType, op: ReduceOp) -> Result<Self> {
        op.check(dtype)?;
        Ok(Reducer { dtype, op })
    }

    /// The element type.
    pub fn dtype(&self) -> DataType {
        self.dtype
    }

    /// The operation.
    pub fn op(&self) -> ReduceOp {
        self.op
    }

    /// `dst op= src`, element-wise over whole elements of the dtype.
    pub fn reduce_inplace(&self, dst: &mut [u8], src: &[u8]) -> Result<()> {
        self.whole_elements("reduce_inplace: dst", dst.len())?;
        same_len("reduce_inplace: src", dst.len(), src.len())?;
        dispatch(self.dtype, self.op, Args::InPlace { dst, src });
        Ok(())
    }

    /// `dst = src op dst` (`src` first in the fold), element-wise over whole
    /// elements of the dtype.
    pub fn reduce_inplace_after(&self, dst: &mut [u8], src: &[u8]) -> Result<()> {
        self.whole_elements("reduce_inplace_after: dst", dst.len())?;
        same_len("reduce_inplace_after: src", dst.len(), src.len())?;
        dispatch(self.dtype, self.op, Args::InPlaceAfter { dst, src });
        Ok(())
    }

    /// `dst = a op b`, element-wise over whole elements of the dtype.
    pub fn reduce(&self, dst: &mut [u8], a: &[u8], b: &[u8]) -> Result<()> {
        self.whole_elements("reduce: dst", dst.len())?;
        same_len("reduce: a", dst.len(), a.len())?;
        same_len("reduce: b", dst.len(), b.len())?;
        dispatch(self.dtype, self.op, Args::OutOfPlace { dst, a, b });
        Ok(())
    }

    /// The final pass (see [`finalize`]).
    pub fn finalize(&self, buf: &mut [u8], world_size: usize) -> Result<()> {
        self.whole_elements("finalize: buf", buf.len())?;
        if world_size == 0 {
            return Err(Error::InvalidArgument(
                "finalize: world_size must be at least 1, got 0".into(),
            ));
        }
        match self.op.finalize() {
            Finalize::None => {}
            Finalize::DivideByWorldSize => {
                dispatch(self.dtype, self.op, Args::DivN { buf, n: world_size })
            }
            Finalize::Scale(s) => dispatch(self.dtype, self.op, Args::MulScalar { buf, s }),
        }
        Ok(())
    }

    fn whole_elements(&self, what: &'static str, len: usize) -> Result<()> {
        let size = self.dtype.size();
        if !len.is_multiple_of(size) {
            return Err(Error::PartialElement {
                what,
                len,
                dtype: self.dtype,
                size,
            });
        }
        Ok(())
    }
}

/// The CPU kernels are the byte-level reducer the transports and algorithms are
/// handed for host memory.
impl tutti_transport::ByteReducer for Reducer {
    fn element_size(&self) -> usize {
        self.dtype.size()
    }
    fn reduce_inplace(&self, dst: &mut [u8], src: &[u8]) -> std::result::Result<(), ReduceError> {
        Reducer::reduce_inplace(self, dst, src).map_err(reduce_error)
    }
    fn reduce(&self, dst: &mut [u8], a: &[u8], b: &[u8]) -> std::result::Result<(), ReduceError> {
        Reducer::reduce(self, dst, a, b).map_err(reduce_error)
    }
    fn reduce_inplace_after(
        &self,
        dst: &mut [u8],
        src: &[u8],
    ) -> std::result::Result<(), ReduceError> {
        Reducer::reduce_inplace_after(self, dst, src).map_err(reduce_error)
    }
}

/// The kernels' typed error as the transports' [`ReduceError`]: length and element
/// errors by their variants, anything else kept as the source.
pub(crate) fn reduce_error(e: Error) -> ReduceError {
    match e {
        Error::LengthMismatch {
            expected, actual, ..
        } => ReduceError::LengthMismatch {
            dst: expected,
            src: actual,
        },
        Error::PartialElement { len, size, .. } => ReduceError::PartialElement {
            len,
            element_size: size,
        },
        e => ReduceError::Kernel(Box::new(e)),
    }
}

fn same_len(what: &'static str, expected: usize, actual: usize) -> Result<()> {
    if expected != actual {
        return Err(Error::LengthMismatch {
            what,
            expected,
            actual,
            unit: "bytes",
        });
    }
    Ok(())
}

/// The buffers of one kernel call, as bytes of whole elements.
enum Args<'a> {
    InPlace {
        dst: &'a mut [u8],
        src: &'a [u8],
    },
    /// `dst = src op dst`.
    InPlaceAfter {
        dst: &'a mut [u8],
        src: &'a [u8],
    },
    OutOfPlace {
        dst: &'a mut [u8],
        a: &'a [u8],
        b: &'a [u8],
    },
    DivN {
        buf: &'a mut [u8],
        n: usize,
    },
    MulScalar {
        buf: &'a mut [u8],
        s: f64,
    },
}

/// Routes a validated call to the kernel monomorphized for its dtype and step.
fn dispatch(dtype: DataType, op: ReduceOp, args: Args<'_>) {
    match dtype {
        DataType::I8 => int_step::<i8>(op.step(), args),
        DataType::U8 => int_step::<u8>(op.step(), args),
        DataType::I32 => int_step::<i32>(op.step(), args),
        DataType::U32 => int_step::<u32>(op.step(), args),
        DataType::I64 => int_step::<i64>(op.step(), args),
        DataType::U64 => int_step::<u64>(op.step(), args),
        DataType::F16 => float_step::<f16>(op.step(), args),
        DataType::BF16 => float_step::<bf16>(op.step(), args),
        DataType::F32 => float_step::<f32>(op.step(), args),
        DataType::F64 => float_step::<f64>(op.step(), args),
        DataType::F8E4M3 => float_step::<F8E4M3>(op.step(), args),
        DataType::F8E5M2 => float_step::<F8E5M2>(op.step(), args),
        DataType::C64 => complex_step::<Complex<f32>>(op.step(), args),
        DataType::C128 => complex_step::<Complex<f64>>(op.step(), args),
    }
}

fn int_step<T>(step: StepOp, args: Args<'_>)
where
    T: Pod + Scale,
    Sum: Combine<T>,
    Prod: Combine<T>,
    Min: Combine<T>,
    Max: Combine<T>,
    BAnd: Combine<T>,
    BOr: Combine<T>,
    BXor: Combine<T>,
{
    match step {
        StepOp::Sum => run::<T, Sum>(args),
        StepOp::Prod => run::<T, Prod>(args),
        StepOp::Min => run::<T, Min>(args),
        StepOp::Max => run::<T, Max>(args),
        StepOp::BAnd => run::<T, BAnd>(args),
        StepOp::BOr => run::<T, BOr>(args),
        StepOp::BXor => run::<T, BXor>(args),
    }
}

fn float_step<T>(step: StepOp, args: Args<'_>)
where
    T: Pod + Scale,
    Sum: Combine<T>,
    Prod: Combine<T>,
    Min: Combine<T>,
    Max: Combine<T>,
{
    match step {
        StepOp::Sum => run::<T, Sum>(args),
        StepOp::Prod => run::<T, Prod>(args),
        StepOp::Min => run::<T, Min>(args),
        StepOp::Max => run::<T, Max>(args),
        // ReduceOp::check rejects bitwise ops on floats before dispatch.
        StepOp::BAnd | StepOp::BOr | StepOp::BXor => {}
    }
}

fn complex_step<T>(step: StepOp, args: Args<'_>)
where
    T: Pod + Scale,
    Sum: Combine<T>,
    Prod: Combine<T>,
{
    match step {
        StepOp::Sum => run::<T, Sum>(args),
        StepOp::Prod => run::<T, Prod>(args),
        // ReduceOp::check rejects min/max and bitwise ops on complex before dispatch.
        StepOp::Min | StepOp::Max | StepOp::BAnd | StepOp::BOr | StepOp::BXor => {}
    }
}

/// Size of the aligned staging blocks used for misaligned byte buffers; a multiple
/// of every element size.
const BLOCK: usize = 4096;

#[repr(C, align(64))]
struct Block([u8; BLOCK]);

impl Block {
    fn new() -> Self {
        Block([0; BLOCK])
    }
}

fn aligned<T>(bytes: &[u8]) -> bool {
    (bytes.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>())
}

fn run<T: Pod + Scale, C: Combine<T>>(args: Args<'_>) {
    match args {
        Args::InPlace { dst, src } => in_place::<T, C, false>(dst, src),
        Args::InPlaceAfter { dst, src } => in_place::<T, C, true>(dst, src),
        Args::OutOfPlace { dst, a, b } => {
            if aligned::<T>(dst) && aligned::<T>(a) && aligned::<T>(b) {
                simd::run(OutOfPlace::<T, C>::new(
                    bytemuck::cast_slice_mut(dst),
                    bytemuck::cast_slice(a),
                    bytemuck::cast_slice(b),
                ));
                return;
            }
            let (mut bd, mut bs) = (Block::new(), Block::new());
            for ((d, x), y) in dst
                .chunks_mut(BLOCK)
                .zip(a.chunks(BLOCK))
                .zip(b.chunks(BLOCK))
            {
                let n = d.len();
                bd.0[..n].copy_from_slice(x);
                bs.0[..n].copy_from_slice(y);
                simd::run(InPlace::<T, C, false>::new(
                    bytemuck::cast_slice_mut(&mut bd.0[..n]),
                    bytemuck::cast_slice(&bs.0[..n]),
                ));
                d.copy_from_slice(&bd.0[..n]);
            }
        }
        Args::DivN { buf, n } => for_each_aligned::<T>(buf, |v| simd::run(DivN { buf: v, n })),
        Args::MulScalar { buf, s } => {
            for_each_aligned::<T>(buf, |v| simd::run(MulScalar { buf: v, s }))
        }
    }
}

/// `dst op= src` (`dst = src op dst` when `AFTER`): on the slices themselves when
/// both are aligned for `T`, else block by block through aligned copies.
fn in_place<T: Pod, C: Combine<T>, const AFTER: bool>(dst: &mut [u8], src: &[u8]) {
    if aligned::<T>(dst) && aligned::<T>(src) {
        simd::run(InPlace::<T, C, AFTER>::new(
            bytemuck::cast_slice_mut(dst),
            bytemuck::cast_slice(src),
        ));
        return;
    }
    let (mut bd, mut bs) = (Block::new(), Block::new());
    for (d, s) in dst.chunks_mut(BLOCK).zip(src.chunks(BLOCK)) {
        let n = d.len();
        bd.0[..n].copy_from_slice(d);
        bs.0[..n].copy_from_slice(s);
        simd::run(InPlace::<T, C, AFTER>::new(
            bytemuck::cast_slice_mut(&mut bd.0[..n]),
            bytemuck::cast_slice(&bs.0[..n]),
        ));
        d.copy_from_slice(&bd.0[..n]);
    }
}

/// Calls `f` on `buf` as typed slices: directly when aligned, else block by block
/// through an aligned copy.
fn for_each_aligned<T: Pod>(buf: &mut [u8], mut f: impl FnMut(&mut [T])) {
    if aligned::<T>(buf) {
        f(bytemuck::cast_slice_mut(buf));
        return;
    }
    let mut block = Block::new();
    for chunk in buf.chunks_mut(BLOCK) {
        let n = chunk.len();
        block.0[..n].copy_from_slice(chunk);
        f(bytemuck::cast_slice_mut(&mut block.0[..n]));
        chunk.copy_from_slice(&block.0[..n]);
    }
}

/// `dst op= src`, or `dst = src op dst` when `AFTER` (the incoming operand first).
struct InPlace<'a, T, C, const AFTER: bool> {
    dst: &'a mut [T],
    src: &'a [T],
    _op: PhantomData<C>,
}

impl<'a, T, C, const AFTER: bool> InPlace<'a, T, C, AFTER> {
    fn new(dst: &'a mut [T], src: &'a [T]) -> Self {
        InPlace {
            dst,
            src,
            _op: PhantomData,
        }
    }
}

impl<T: Copy, C: Combine<T>, const AFTER: bool> Kernel for InPlace<'_, T, C, AFTER> {
    #[inline(always)]
    fn run(self) {
        for (d, s) in self.dst.iter_mut().zip(self.src) {
            *d = if AFTER {
                C::combine(*s, *d)
            } else {
                C::combine(*d, *s)
            };
        }
    }
}

struct OutOfPlace<'a, T, C> {
    dst: &'a mut [T],
    a: &'a [T],
    b: &'a [T],
    _op: PhantomData<C>,
}

impl<'a, T, C> OutOfPlace<'a, T, C> {
    fn new(dst: &'a mut [T], a: &'a [T], b: &'a [T]) -> Self {
        OutOfPlace {
            dst,
            a,
            b,
            _op: PhantomData,
        }
    }
}

impl<T: Copy, C: Combine<T>> Kernel for OutOfPlace<'_, T, C> {
    #[inline(always)]
    fn run(self) {
        for ((d, x), y) in self.dst.iter_mut().zip(self.a).zip(self.b) {
            *d = C::combine(*x, *y);
        }
    }
}

struct DivN<'a, T> {
    buf: &'a mut [T],
    n: usize,
}

impl<T: Scale> Kernel for DivN<'_, T> {
    #[inline(always)]
    fn run(self) {
        for v in self.buf.iter_mut() {
            *v = T::div_n(*v, self.n);
        }
    }
}

struct MulScalar<'a, T> {
    buf: &'a mut [T],
    s: f64,
}

impl<T: Scale> Kernel for MulScalar<'_, T> {
    #[inline(always)]
    fn run(self) {
        for v in self.buf.iter_mut() {
            *v = T::mul_scalar(*v, self.s);
        }
    }
}
