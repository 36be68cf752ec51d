//! Test support shared by tutti's crates (a dev-dependency only): reference reducers,
//! random data, an in-memory rendezvous, free ports, and harnesses that run ranks as
//! threads over in-process links ([`run_schedule`]) or windows ([`run_windows`]).

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng, rngs::StdRng};
use tutti_ring::Schedule;
use tutti_transport::shm::{InprocHub, ShmConfig};
use tutti_transport::window::{Window, WindowConfig, WindowHub};
use tutti_transport::{ByteReducer, Deadline, Link, ReduceError, Rendezvous, RendezvousError};

/// The reducers' argument check: equal lengths of whole 4-byte elements.
fn check_lengths(dst: &[u8], src: &[u8]) -> Result<(), ReduceError> {
    if dst.len() != src.len() {
        return Err(ReduceError::LengthMismatch {
            dst: dst.len(),
            src: src.len(),
        });
    }
    if !dst.len().is_multiple_of(4) {
        return Err(ReduceError::PartialElement {
            len: dst.len(),
            element_size: 4,
        });
    }
    Ok(())
}

/// `dst[i] = step(dst[i], src[i])` over native-endian u32 elements.
fn fold_u32(dst: &mut [u8], src: &[u8], step: impl Fn(u32, u32) -> u32) -> Result<(), ReduceError> {
    check_lengths(dst, src)?;
    for (d, s) in dst.chunks_exact_mut(4).zip(src.chunks_exact(4)) {
        let v = step(
            u32::from_ne_bytes(d.try_into().unwrap()),
            u32::from_ne_bytes(s.try_into().unwrap()),
        );
        d.copy_from_slice(&v.to_ne_bytes());
    }
    Ok(())
}

/// Wrapping u32 addition (the reducer tutti passes for u32 Sum).
pub struct AddU32;

impl ByteReducer for AddU32 {
    fn element_size(&self) -> usize {
        4
    }
    fn reduce_inplace(&self, dst: &mut [u8], src: &[u8]) -> Result<(), ReduceError> {
        fold_u32(dst, src, u32::wrapping_add)
    }
    fn reduce(&self, dst: &mut [u8], a: &[u8], b: &[u8]) -> Result<(), ReduceError> {
        dst.copy_from_slice(a);
        self.reduce_inplace(dst, b)
    }
}

/// An order-sensitive u32 step, `a op b = 31 a + b` (wrapping): neither commutative
/// nor associative, so a schedule that folds in any order but rank order, or swaps
/// the operands of one step, gives other values.
pub struct Ordered;

impl ByteReducer for Ordered {
    fn element_size(&self) -> usize {
        4
    }
    fn reduce_inplace(&self, dst: &mut [u8], src: &[u8]) -> Result<(), ReduceError> {
        fold_u32(dst, src, |a, b| a.wrapping_mul(31).wrapping_add(b))
    }
    fn reduce(&self, dst: &mut [u8], a: &[u8], b: &[u8]) -> Result<(), ReduceError> {
        dst.copy_from_slice(a);
        self.reduce_inplace(dst, b)
    }
}

/// f32 addition, folded exactly as written (for bit-exactness tests), with an
/// optional final division (Avg).
pub struct AddF32 {
    /// Divide by this in `finalize` (1 = Sum).
    pub divide_by: f32,
}

impl ByteReducer for AddF32 {
    fn element_size(&self) -> usize {
        4
    }
    fn reduce_inplace(&self, dst: &mut [u8], src: &[u8]) -> Result<(), ReduceError> {
        check_lengths(dst, src)?;
        for (d, s) in dst.chunks_exact_mut(4).zip(src.chunks_exact(4)) {
            let v = f32::from_ne_bytes(d.try_into().unwrap())
                + f32::from_ne_bytes(s.try_into().unwrap());
            d.copy_from_slice(&v.to_ne_bytes());
        }
        Ok(())
    }
    fn reduce(&self, dst: &mut [u8], a: &[u8], b: &[u8]) -> Result<(), ReduceError> {
        dst.copy_from_slice(a);
        self.reduce_inplace(dst, b)
    }
    fn finalize(&self, dst: &mut [u8]) -> Result<(), ReduceError> {
        if self.divide_by != 1.0 {
            for d in dst.chunks_exact_mut(4) {
                let v = f32::from_ne_bytes((&*d).try_into().unwrap()) / self.divide_by;
                d.copy_from_slice(&v.to_ne_bytes());
            }
        }
        Ok(())
    }
}

/// The left fold `inputs[0] op inputs[1] op ...` with `reducer`, then its finalize.
pub fn fold(reducer: &dyn ByteReducer, inputs: &[Vec<u8>]) -> Vec<u8> {
    let mut acc = inputs[0].clone();
    for x in &inputs[1..] {
        reducer.reduce_inplace(&mut acc, x).unwrap();
    }
    reducer.finalize(&mut acc).unwrap();
    acc
}

/// Wrapping u32 sum of every input.
pub fn sum_u32(inputs: &[Vec<u8>]) -> Vec<u8> {
    fold(&AddU32, inputs)
}

/// `n` random bytes from `seed`.
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut r = StdRng::seed_from_u64(seed);
    (0..n).map(|_| r.random()).collect()
}

/// `n` random f32 as bytes: random sign and mantissa, exponents spread over
/// 2^-20..2^20, so that sums round and their order shows in the bits.
pub fn random_f32_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut r = StdRng::seed_from_u64(seed);
    (0..n)
        .flat_map(|_| {
            let sign = r.random::<u32>() & 0x8000_0000;
            let exp = (127 + r.random_range(-20i32..=20)) as u32;
            let mant = r.random::<u32>() & 0x007f_ffff;
            f32::from_bits(sign | exp << 23 | mant).to_ne_bytes()
        })
        .collect()
}

/// A free TCP port on loopback (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A rendezvous between threads of one test (the transport crates cannot use
/// tutti's stores).
#[derive(Default)]
pub struct Board {
    map: Mutex<HashMap<String, Vec<u8>>>,
    cv: Condvar,
}

impl Rendezvous for Board {
    fn publish(&self, key: &str, value: &[u8]) -> Result<(), RendezvousError> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.into(), value.into());
        self.cv.notify_all();
        Ok(())
    }
    fn lookup(&self, key: &str, deadline: Deadline) -> Result<Vec<u8>, RendezvousError> {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(v) = m.get(key) {
                return Ok(v.clone());
            }
            if deadline.expired() {
                return Err(RendezvousError::Timeout { key: key.into() });
            }
            m = self
                .cv
                .wait_timeout(m, Duration::from_millis(10))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// Runs `f` on `n` threads, each with its rank, and returns the results in rank
/// order (a panicking rank fails the test with its message).
pub fn run_ranks<T: Send + 'static>(
    n: usize,
    f: impl Fn(usize) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let f = Arc::new(f);
    let hs: Vec<_> = (0..n)
        .map(|r| {
            let f = f.clone();
            std::thread::Builder::new()
                .name(format!("rank-{r}"))
                .spawn(move || f(r))
                .expect("spawning a rank thread")
        })
        .collect();
    hs.into_iter()
        .map(|h| h.join().expect("a rank thread panicked"))
        .collect()
}

/// Runs `f(schedule)` on `n` threads over in-process links (FIFOs of two 4 KiB
/// slots, so that chunking and back-pressure are exercised), with pipeline `chunk`.
/// The schedule's `ahead` is off.
pub fn run_schedule<T: Send + 'static>(
    n: usize,
    chunk: usize,
    f: impl Fn(&mut Schedule<'_>) -> T + Send + Sync + 'static,
) -> Vec<T> {
    run_schedule_ahead(n, chunk, false, f)
}

/// [`run_schedule`] with the schedule's `ahead` set as given (two slots are just
/// enough for it).
pub fn run_schedule_ahead<T: Send + 'static>(
    n: usize,
    chunk: usize,
    ahead: bool,
    f: impl Fn(&mut Schedule<'_>) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let mut cfg = ShmConfig::from_env(n);
    cfg.fifo.slots = 2;
    cfg.fifo.slot_size = 4096;
    let hub = InprocHub::new(cfg);
    run_ranks(n, move |r| {
        let mut mesh: Vec<Option<Link>> = (0..n)
            .map(|p| {
                (p != r).then(|| {
                    hub.connect(r, p, &format!("rank {p}"))
                        .expect("connecting in-process links")
                })
            })
            .collect();
        let mut s = Schedule {
            rank: r,
            size: n,
            links: &mut mesh,
            chunk,
            deadline: Deadline::after(Duration::from_secs(60)),
            ahead,
        };
        f(&mut s)
    })
}

/// Runs `f(rank, window)` on `n` threads sharing windows whose buffers hold
/// `data_bytes` each.
pub fn run_windows<T: Send + 'static>(
    n: usize,
    data_bytes: usize,
    f: impl Fn(usize, Arc<Window>) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let hub = WindowHub::new();
    let names: Vec<String> = (0..n).map(|r| format!("rank {r}")).collect();
    run_ranks(n, move |r| {
        let mut cfg = WindowConfig::from_env(n);
        cfg.data_bytes = data_bytes;
        cfg.ring_bytes = 64 << 10;
        let w = hub
            .join(
                "test",
                r,
                &names,
                &cfg,
                Deadline::after(Duration::from_secs(30)),
            )
            .expect("joining the windows");
        f(r, Arc::new(w))
    })
}

/// The point-to-point engine settings the tests use (small eager limit and pieces,
/// so that the rendezvous path and chunking are exercised).
pub fn engine_config(window: &Window) -> tutti_transport::p2p::EngineConfig {
    tutti_transport::p2p::EngineConfig {
        eager_max: 4096,
        eager_max_bridged: 4096,
        chunk: 16 << 10,
        single_copy: tutti_transport::p2p::SingleCopy::from_env(),
        budget: window.budget(),
    }
}

/// Runs `f(rank, engine)` on `n` threads whose engines reach each other through
/// rings in shared windows (`ring_bytes` each).
pub fn run_engines<T: Send + 'static>(
    n: usize,
    ring_bytes: usize,
    f: impl Fn(usize, &tutti_transport::p2p::Engine) -> T + Send + Sync + 'static,
) -> Vec<T> {
    use tutti_transport::p2p::{Channel, Engine};
    let hub = WindowHub::new();
    let names: Vec<String> = (0..n).map(|r| format!("rank {r}")).collect();
    run_ranks(n, move |r| {
        let mut cfg = WindowConfig::from_env(n);
        cfg.data_bytes = 4096;
        cfg.ring_bytes = ring_bytes;
        let w = Arc::new(
            hub.join(
                "engines",
                r,
                &names,
                &cfg,
                Deadline::after(Duration::from_secs(30)),
            )
            .expect("joining the windows"),
        );
        let channels = (0..n)
            .map(|p| {
                (p != r).then(|| Channel::Window {
                    tx: w.ring_writer(p),
                    rx: w.ring_reader(p),
                    member: p,
                })
            })
            .collect();
        let engine = Engine::new(
            r,
            names.clone(),
            channels,
            w.p2p_doorbell(),
            Some(w.clone()),
            engine_config(&w),
        );
        f(r, &engine)
    })
}
