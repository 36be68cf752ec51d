//! Built-in functions, registered on every worker.
//!
//! - [`ADD`] (`tutti.add`): element-wise sum of two element vectors of one dtype,
//!   `(Elements<T>, Elements<T>) -> Elements<T>`; integers wrap, f16/bf16 round
//!   per element (torch.add's semantics).
//! - [`MUL`] (`tutti.mul`): element-wise product, same types.
//! - [`ECHO`] (`tutti.echo`): returns its argument unchanged (any type without
//!   RRefs).
//!
//! Every dtype but the two float8 types is supported.

use std::sync::Arc;

use half::{bf16, f16};
use num_complex::Complex;

use crate::Functions;
use crate::elements::{DataType, Element, ElementSlice, vec_from_bytes};
use crate::functions::{CallContext, HandlerError};

/// `tutti.add`: element-wise sum of two vectors.
pub const ADD: &str = "tutti.add";
/// `tutti.mul`: element-wise product of two vectors.
pub const MUL: &str = "tutti.mul";
/// `tutti.echo`: returns its argument.
pub const ECHO: &str = "tutti.echo";

pub(crate) fn register(f: &mut Functions) {
    // The names are distinct constants: inserting them into an empty set cannot fail.
    // They never block: they are served on the connection's reader thread.
    let add = |_: &CallContext<'_>, b: &[u8]| binary(ADD, b, Op::Add);
    let mul = |_: &CallContext<'_>, b: &[u8]| binary(MUL, b, Op::Mul);
    let _ = f.insert(ADD, Arc::new(add), true);
    let _ = f.insert(MUL, Arc::new(mul), true);
    let _ = f.insert(ECHO, Arc::new(echo), true);
}

#[derive(Clone, Copy)]
enum Op {
    Add,
    Mul,
}

fn echo(ctx: &CallContext<'_>, bytes: &[u8]) -> Result<Vec<u8>, HandlerError> {
    let carries_rrefs = ctx
        .arrivals
        .borrow()
        .as_ref()
        .is_some_and(|a| !a.0.is_empty());
    if carries_rrefs {
        return Err(HandlerError::BadArguments(format!(
            "{ECHO} does not take RRefs"
        )));
    }
    Ok(bytes.to_vec())
}

type Pair<'a> = ((u8, &'a [u8]), (u8, &'a [u8]));

fn binary(name: &str, bytes: &[u8], op: Op) -> Result<Vec<u8>, HandlerError> {
    let ((ca, a), (cb, b)): Pair<'_> = match postcard::take_from_bytes::<Pair<'_>>(bytes) {
        Ok((v, [])) => v,
        _ => {
            return Err(HandlerError::BadArguments(format!(
                "{name} takes two element vectors of one dtype (Elements<T>, Elements<T>)"
            )));
        }
    };
    let dtype = |c: u8| {
        DataType::from_u8(c)
            .ok_or_else(|| HandlerError::BadArguments(format!("{name}: unknown dtype code {c}")))
    };
    let (da, db) = (dtype(ca)?, dtype(cb)?);
    if da != db {
        return Err(HandlerError::BadArguments(format!(
            "{name}: the vectors have different dtypes ({da} and {db})"
        )));
    }
    macro_rules! ints {
        ($t:ty) => {
            match op {
                Op::Add => typed::<$t>(name, a, b, |x, y| x.wrapping_add(y)),
                Op::Mul => typed::<$t>(name, a, b, |x, y| x.wrapping_mul(y)),
            }
        };
    }
    macro_rules! arith {
        ($t:ty) => {
            match op {
                Op::Add => typed::<$t>(name, a, b, |x, y| x + y),
                Op::Mul => typed::<$t>(name, a, b, |x, y| x * y),
            }
        };
    }
    match da {
        DataType::I8 => ints!(i8),
        DataType::U8 => ints!(u8),
        DataType::I32 => ints!(i32),
        DataType::U32 => ints!(u32),
        DataType::I64 => ints!(i64),
        DataType::U64 => ints!(u64),
        DataType::F16 => arith!(f16),
        DataType::BF16 => arith!(bf16),
        DataType::F32 => arith!(f32),
        DataType::F64 => arith!(f64),
        DataType::C64 => arith!(Complex<f32>),
        DataType::C128 => arith!(Complex<f64>),
        other => Err(HandlerError::BadArguments(format!(
            "{name} does not support {other}"
        ))),
    }
}

fn typed<T: Element>(
    name: &str,
    a: &[u8],
    b: &[u8],
    f: impl Fn(T, T) -> T,
) -> Result<Vec<u8>, HandlerError> {
    let bad = |m: String| HandlerError::BadArguments(format!("{name}: {m}"));
    let mut a = vec_from_bytes::<T>(a).map_err(bad)?;
    let b = vec_from_bytes::<T>(b).map_err(bad)?;
    if a.len() != b.len() {
        return Err(HandlerError::BadArguments(format!(
            "{name}: length mismatch: {} and {} elements",
            a.len(),
            b.len()
        )));
    }
    for (x, y) in a.iter_mut().zip(&b) {
        *x = f(*x, *y);
    }
    postcard::to_stdvec(&ElementSlice(&a)).map_err(|e| HandlerError::Failed(e.to_string()))
}
