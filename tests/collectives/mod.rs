//! The collectives correctness matrix, run by `collectives_threads.rs` (ranks as
//! threads) and `collectives_processes.rs` (ranks as processes, shm and tcp).
//!
//! Every rank regenerates every rank's random input from (case seed, rank) (drawn
//! once per process, [`input`]), so it can compute the reference itself: integer
//! results and min/max must be bit-exact; float sums, products and averages must lie
//! within the documented rounding bound `2 n u (sum |x_i| + |ref|)` (products:
//! `2 n u |ref|`), `u` the type's unit roundoff, because the ring and the tree add in
//! a different order than the reference. Every rank's result must also be
//! bit-identical to rank 0's.

#![allow(dead_code, clippy::needless_range_loop)]

use half::{bf16, f16};
use num_complex::Complex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::any::Any;
use std::collections::VecDeque;
use std::sync::Mutex;
use tutti::{Element, ProcessGroup, ReduceOp, cpu};

/// How much of the matrix a configuration runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Level {
    /// Every dtype x every valid op x every size, every collective.
    Full,
    /// A representative subset (for many-process configurations).
    Reduced,
}

/// Element types the matrix covers, with what the checks need.
pub trait TestElem: Element {
    const INT: bool;
    /// Unit roundoff (0 for integers).
    const U: f64;
    /// Spacing of the type's subnormals: the absolute error floor of one rounding.
    const TINY: f64 = 0.0;
    fn draw(rng: &mut SmallRng, for_prod: bool) -> Self;
    /// Real and imaginary parts as f64.
    fn parts(self) -> [f64; 2];
}

macro_rules! int_elem {
    ($($t:ty),*) => {$(
        impl TestElem for $t {
            const INT: bool = true;
            const U: f64 = 0.0;
            fn draw(rng: &mut SmallRng, _: bool) -> Self { rng.random() }
            fn parts(self) -> [f64; 2] { [self as f64, 0.0] }
        }
    )*};
}
int_elem!(i32, u8);

fn real(rng: &mut SmallRng, for_prod: bool) -> f64 {
    if for_prod {
        rng.random_range(0.6..1.4)
    } else {
        rng.random_range(-1.0..1.0)
    }
}

impl TestElem for f32 {
    const INT: bool = false;
    const U: f64 = 5.960464477539063e-8;
    fn draw(rng: &mut SmallRng, p: bool) -> Self {
        real(rng, p) as f32
    }
    fn parts(self) -> [f64; 2] {
        [self as f64, 0.0]
    }
}
impl TestElem for f64 {
    const INT: bool = false;
    const U: f64 = 1.1102230246251565e-16;
    fn draw(rng: &mut SmallRng, p: bool) -> Self {
        real(rng, p)
    }
    fn parts(self) -> [f64; 2] {
        [self, 0.0]
    }
}
impl TestElem for f16 {
    const INT: bool = false;
    const U: f64 = 4.8828125e-4;
    const TINY: f64 = 5.960464477539063e-8;
    fn draw(rng: &mut SmallRng, p: bool) -> Self {
        f16::from_f64(real(rng, p))
    }
    fn parts(self) -> [f64; 2] {
        [self.to_f64(), 0.0]
    }
}
impl TestElem for bf16 {
    const INT: bool = false;
    const U: f64 = 3.90625e-3;
    fn draw(rng: &mut SmallRng, p: bool) -> Self {
        bf16::from_f64(real(rng, p))
    }
    fn parts(self) -> [f64; 2] {
        [self.to_f64(), 0.0]
    }
}
impl TestElem for Complex<f32> {
    const INT: bool = false;
    const U: f64 = 5.960464477539063e-8;
    fn draw(rng: &mut SmallRng, p: bool) -> Self {
        Complex::new(
            real(rng, p) as f32,
            real(rng, p) as f32 * if p { 0.3 } else { 1.0 },
        )
    }
    fn parts(self) -> [f64; 2] {
        [self.re as f64, self.im as f64]
    }
}
impl TestElem for Complex<f64> {
    const INT: bool = false;
    const U: f64 = 1.1102230246251565e-16;
    fn draw(rng: &mut SmallRng, p: bool) -> Self {
        Complex::new(real(rng, p), real(rng, p) * if p { 0.3 } else { 1.0 })
    }
    fn parts(self) -> [f64; 2] {
        [self.re, self.im]
    }
}

/// Rank `r`'s input for a case.
///
/// Every rank draws every rank's input (to compute the reference), so with `n`
/// thread ranks in one process each input used to be drawn `n` times: half of the
/// thread matrix's time (perf, 8 ranks) went to the generator. Inputs are drawn once
/// per process and kept in a small cache that every thread rank asking for the same
/// one copies from.
pub fn input<T: TestElem>(seed: u64, r: usize, count: usize, op: ReduceOp) -> Vec<T> {
    let for_prod = matches!(op, ReduceOp::Prod);
    let key = (T::DTYPE, seed, r, count, for_prod);
    let mut cache = INPUTS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, v)) = cache.iter().find(|(k, _)| *k == key)
        && let Some(v) = v.downcast_ref::<Vec<T>>()
    {
        return v.clone();
    }
    let mut rng = SmallRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(r as u64));
    let v: Vec<T> = (0..count).map(|_| T::draw(&mut rng, for_prod)).collect();
    let bytes = |c: &InputCache| c.iter().map(|(k, _)| k.3 * k.0.size()).sum::<usize>();
    cache.push_back((key, Box::new(v.clone())));
    while cache.len() > 1 && bytes(&cache) > INPUT_CACHE_BYTES {
        cache.pop_front();
    }
    v
}

/// (dtype, case seed, rank, count, drawn for a product).
type InputKey = (tutti::DataType, u64, usize, usize, bool);

/// Inputs kept for the other thread ranks: the largest case of 8 ranks (8 inputs of
/// `8 x 1 MiB`) fits.
const INPUT_CACHE_BYTES: usize = 96 << 20;

/// Recent inputs, oldest first, each a `Vec<T>` of its key's dtype.
type InputCache = VecDeque<(InputKey, Box<dyn Any + Send + Sync>)>;

static INPUTS: Mutex<InputCache> = Mutex::new(VecDeque::new());

/// When set, every reduction must equal the rank-order fold `x0 op x1 op ...` bit
/// for bit (the same-host window algorithms promise it), floats included.
pub static RANK_ORDER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Checks `got` (the reduction of `inputs` with `op`) element by element.
pub fn check_reduction<T: TestElem>(what: &str, op: ReduceOp, inputs: &[Vec<T>], got: &[T]) {
    let n = inputs.len();
    let count = inputs[0].len();
    assert_eq!(got.len(), count, "{what}: result length");
    if RANK_ORDER.load(std::sync::atomic::Ordering::Relaxed) {
        let mut want = inputs[0].clone();
        for x in &inputs[1..] {
            cpu::reduce_inplace(op, &mut want, x).unwrap();
        }
        cpu::finalize(op, &mut want, n).unwrap();
        let (g, w): (&[u8], &[u8]) = (bytemuck::cast_slice(got), bytemuck::cast_slice(&want));
        if let Some(i) = (0..count).find(|&i| {
            let s = T::DTYPE.size();
            g[i * s..(i + 1) * s] != w[i * s..(i + 1) * s]
        }) {
            panic!(
                "{what}: element {i} of {count}: got {:?}, want {:?} (bits of the rank-order fold)",
                got[i], want[i]
            );
        }
        return;
    }
    let exact = T::INT
        || matches!(
            op,
            ReduceOp::Min | ReduceOp::Max | ReduceOp::BAnd | ReduceOp::BOr | ReduceOp::BXor
        );
    if exact {
        let mut want = inputs[0].clone();
        for x in &inputs[1..] {
            cpu::reduce_inplace(op, &mut want, x).unwrap();
        }
        cpu::finalize(op, &mut want, n).unwrap();
        for i in 0..count {
            assert!(
                got[i] == want[i],
                "{what}: element {i} of {count}: got {:?}, want {:?}",
                got[i],
                want[i]
            );
        }
        return;
    }
    let complex = T::DTYPE.is_complex();
    let f = match op {
        ReduceOp::Avg => 1.0 / n as f64,
        ReduceOp::PreMulSum(s) => s,
        _ => 1.0,
    };
    for i in 0..count {
        // The reference in f64, one pass over the ranks' inputs (no allocation per
        // element: with 8 thread ranks each checking every element this loop is
        // most of the matrix's time).
        let (want, scale) = if matches!(op, ReduceOp::Prod) {
            let mut acc = [1.0, 0.0];
            for v in inputs {
                let x = v[i].parts();
                acc = if complex {
                    [acc[0] * x[0] - acc[1] * x[1], acc[0] * x[1] + acc[1] * x[0]]
                } else {
                    [acc[0] * x[0], 0.0]
                };
            }
            (acc, [acc[0].abs().max(acc[1].abs()); 2])
        } else {
            let (mut sum, mut mag) = ([0.0f64; 2], [0.0f64; 2]);
            for v in inputs {
                let x = v[i].parts();
                sum[0] += x[0];
                sum[1] += x[1];
                mag[0] += x[0].abs();
                mag[1] += x[1].abs();
            }
            (
                [sum[0] * f, sum[1] * f],
                [
                    (mag[0] + sum[0].abs()) * f.abs(),
                    (mag[1] + sum[1].abs()) * f.abs(),
                ],
            )
        };
        let g = got[i].parts();
        for k in 0..2 {
            let bound = 2.0 * n as f64 * T::U * scale[k].max(f64::MIN_POSITIVE)
                + 4.0 * T::U * want[k].abs()
                + 2.0 * n as f64 * T::TINY;
            assert!(
                (g[k] - want[k]).abs() <= bound,
                "{what}: element {i} of {count} part {k}: got {}, want {} (bound {bound:e})",
                g[k],
                want[k]
            );
        }
    }
}

/// A 64-bit digest of a result, to compare ranks bit for bit.
pub fn digest<T: Element>(v: &[T]) -> u64 {
    // FNV-1a over 8-byte words (a byte at a time cost more than the collectives).
    let bytes: &[u8] = bytemuck::cast_slice(v);
    let words = bytes.chunks_exact(8);
    let tail = words.remainder();
    let fnv = |h: u64, x: u64| (h ^ x).wrapping_mul(0x100_0000_01b3);
    let h = words.fold(0xcbf2_9ce4_8422_2325u64, |h, w| {
        fnv(h, u64::from_le_bytes(w.try_into().unwrap_or([0; 8])))
    });
    tail.iter().fold(h, |h, &b| fnv(h, u64::from(b)))
}

/// Asserts that every rank holds the same digest (an all_gather of digests).
pub fn same_on_every_rank<T: Element>(g: &ProcessGroup, what: &str, v: &[T]) {
    let d = [digest(v)];
    let mut all = vec![0u64; g.size()];
    g.all_gather(&d, &mut all).unwrap();
    assert!(
        all.iter().all(|x| *x == all[0]),
        "{what}: ranks disagree bit for bit: {all:x?}"
    );
}

/// Element counts for a group of `n` with a forced 4096-byte chunk: empty, one,
/// fewer than ranks, ring chunk boundaries +-1, tree half boundaries, a few MiB.
pub fn counts<T: Element>(n: usize, level: Level) -> Vec<usize> {
    let cb = 4096 / T::DTYPE.size();
    let mut v = vec![
        0,
        1,
        n.saturating_sub(1).max(1),
        n * cb - 1,
        n * cb + 1,
        2 * cb + 1,
    ];
    if level == Level::Full {
        v.extend([n * cb, 2 * cb - 1, (3 << 20) / T::DTYPE.size() + 7]);
    } else {
        v.push((1 << 20) / T::DTYPE.size() + 3);
    }
    v
}

/// all_reduce (in place and out of place) and reduce_scatter for every valid op on
/// `T`, plus reduce to every root, checked against the reference.
pub fn reductions<T: TestElem>(g: &ProcessGroup, level: Level, seed: u64) {
    let n = g.size();
    let r = g.rank();
    let ops = ReduceOp::valid_for(T::DTYPE, 0.37);
    let ops: Vec<ReduceOp> = if level == Level::Full {
        ops
    } else {
        ops.into_iter().take(2).chain([ReduceOp::Avg]).collect()
    };
    for (oi, &op) in ops.iter().enumerate() {
        for (ci, count) in counts::<T>(n, level).into_iter().enumerate() {
            let case = seed * 10_000 + (oi * 100 + ci) as u64;
            let inputs: Vec<Vec<T>> = (0..n).map(|k| input::<T>(case, k, count, op)).collect();
            let what = format!("{} {op} n={n} count={count}", T::DTYPE);
            let mut buf = inputs[r].clone();
            g.all_reduce(&mut buf, op).unwrap();
            check_reduction(&format!("all_reduce in-place {what}"), op, &inputs, &buf);
            same_on_every_rank(g, &what, &buf);
            let mut out = vec![T::zeroed(); count];
            g.all_reduce_into(&inputs[r], &mut out, op).unwrap();
            check_reduction(
                &format!("all_reduce out-of-place {what}"),
                op,
                &inputs,
                &out,
            );
            // reduce_scatter: every rank contributes n blocks of `count`.
            let big: Vec<Vec<T>> = (0..n)
                .map(|k| input::<T>(case + 7, k, count * n, op))
                .collect();
            let mut block = vec![T::zeroed(); count];
            g.reduce_scatter(&big[r], &mut block, op).unwrap();
            let mine: Vec<Vec<T>> = big
                .iter()
                .map(|b| b[r * count..(r + 1) * count].to_vec())
                .collect();
            check_reduction(&format!("reduce_scatter {what}"), op, &mine, &block);
            // reduce to a root (all roots in full runs).
            let roots: Vec<usize> = if level == Level::Full {
                (0..n).collect()
            } else {
                vec![n - 1]
            };
            for root in roots {
                let mut b = inputs[r].clone();
                g.reduce(&mut b, op, root).unwrap();
                if r == root {
                    check_reduction(&format!("reduce root={root} {what}"), op, &inputs, &b);
                } else {
                    assert!(
                        b == inputs[r],
                        "reduce: a non-root buffer was modified ({what})"
                    );
                }
            }
        }
    }
}

/// broadcast, all_gather, all_to_all, gather and scatter: data movement, checked
/// byte for byte.
pub fn movements<T: TestElem>(g: &ProcessGroup, level: Level, seed: u64) {
    let n = g.size();
    let r = g.rank();
    for (ci, count) in counts::<T>(n, level).into_iter().enumerate() {
        let case = seed * 10_000 + ci as u64;
        let what = format!("{} n={n} count={count}", T::DTYPE);
        let inputs: Vec<Vec<T>> = (0..n)
            .map(|k| input::<T>(case, k, count, ReduceOp::Sum))
            .collect();
        for root in 0..n {
            let mut b = if r == root {
                inputs[root].clone()
            } else {
                vec![T::zeroed(); count]
            };
            g.broadcast(&mut b, root).unwrap();
            assert!(b == inputs[root], "broadcast root={root} {what}");
        }
        let mut all = vec![T::zeroed(); count * n];
        g.all_gather(&inputs[r], &mut all).unwrap();
        assert!(all == inputs.concat(), "all_gather {what}");
        // all_to_all: rank k's input of n blocks; block j goes to rank j.
        let a2a: Vec<Vec<T>> = (0..n)
            .map(|k| input::<T>(case + 3, k, count * n, ReduceOp::Sum))
            .collect();
        let mut out = vec![T::zeroed(); count * n];
        g.all_to_all(&a2a[r], &mut out).unwrap();
        for k in 0..n {
            assert!(
                out[k * count..(k + 1) * count] == a2a[k][r * count..(r + 1) * count],
                "all_to_all {what} block {k}"
            );
        }
        let root = (ci + 1) % n;
        let mut gathered = if r == root {
            vec![T::zeroed(); count * n]
        } else {
            Vec::new()
        };
        g.gather(&inputs[r], &mut gathered, root).unwrap();
        if r == root {
            assert!(gathered == inputs.concat(), "gather root={root} {what}");
        }
        let mut piece = vec![T::zeroed(); count];
        let src = if r == root {
            a2a[root].clone()
        } else {
            Vec::new()
        };
        g.scatter(&src, &mut piece, root).unwrap();
        assert!(
            piece == a2a[root][r * count..(r + 1) * count],
            "scatter root={root} {what}"
        );
    }
}

/// The whole matrix on one group whose reductions must equal the rank-order fold
/// bit for bit (the window path).
pub fn matrix_rank_order(g: &ProcessGroup, level: Level) {
    RANK_ORDER.store(true, std::sync::atomic::Ordering::Relaxed);
    run_matrix(g, level);
}

/// The whole matrix on one group (float results within the documented bound).
pub fn matrix(g: &ProcessGroup, level: Level) {
    RANK_ORDER.store(false, std::sync::atomic::Ordering::Relaxed);
    run_matrix(g, level);
}

fn run_matrix(g: &ProcessGroup, level: Level) {
    match level {
        Level::Full => {
            reductions::<f32>(g, level, 1);
            reductions::<f64>(g, level, 2);
            reductions::<bf16>(g, level, 3);
            reductions::<f16>(g, level, 4);
            reductions::<i32>(g, level, 5);
            reductions::<u8>(g, level, 6);
            reductions::<Complex<f32>>(g, level, 7);
            reductions::<Complex<f64>>(g, level, 8);
            movements::<u8>(g, level, 9);
            movements::<Complex<f64>>(g, level, 10);
        }
        Level::Reduced => {
            reductions::<f32>(g, level, 11);
            reductions::<i32>(g, level, 12);
            reductions::<bf16>(g, level, 13);
            reductions::<Complex<f32>>(g, level, 14);
            movements::<f32>(g, level, 15);
        }
    }
    g.barrier().unwrap();
}
