//! Where the time of a window all_reduce goes: 2 thread ranks, f32 Sum, one-shot and
//! two-shot, per window size; prints time per op and its split into copy-in, waiting
//! and reducing (rank 0). `cargo run --release --example window_profile -- [bytes]`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tutti::cpu::Reducer;
use tutti::intra::{self, Addr, Exec};
use tutti::transport::window::{HostExec, WindowConfig, WindowHub};
use tutti::transport::{ByteReducer, Deadline, ReduceError};
use tutti::{DataType, ReduceOp};

/// Times the executor's steps.
struct Timed<'a> {
    e: HostExec<'a>,
    copy: Duration,
    wait: Duration,
    reduce: Duration,
}

impl Exec for Timed<'_> {
    fn members(&self) -> usize {
        self.e.members()
    }
    fn index(&self) -> usize {
        self.e.index()
    }
    fn element_size(&self) -> usize {
        self.e.element_size()
    }
    fn buffer_bytes(&self) -> usize {
        self.e.buffer_bytes()
    }
    fn begin_round(&mut self) -> (usize, u64) {
        self.e.begin_round()
    }
    fn buffer(&self, m: usize, b: usize) -> Addr {
        self.e.buffer(m, b)
    }
    fn copy(&mut self, dst: Addr, src: Addr, len: usize) -> tutti::transport::Result<()> {
        let t = Instant::now();
        let r = self.e.copy(dst, src, len);
        self.copy += t.elapsed();
        r
    }
    fn reduce(&mut self, dst: Addr, srcs: &[Addr], len: usize) -> tutti::transport::Result<()> {
        let t = Instant::now();
        let r = self.e.reduce(dst, srcs, len);
        self.reduce += t.elapsed();
        r
    }
    fn finalize(&mut self, dst: Addr, len: usize) -> tutti::transport::Result<()> {
        self.e.finalize(dst, len)
    }
    fn post(&mut self, v: u64) -> tutti::transport::Result<()> {
        self.e.post(v)
    }
    fn wait_all(&mut self, v: u64) -> tutti::transport::Result<()> {
        let t = Instant::now();
        let r = self.e.wait_all(v);
        self.wait += t.elapsed();
        r
    }
}

struct R(Reducer);
impl ByteReducer for R {
    fn element_size(&self) -> usize {
        4
    }
    fn reduce_inplace(&self, d: &mut [u8], s: &[u8]) -> Result<(), ReduceError> {
        ByteReducer::reduce_inplace(&self.0, d, s)
    }
    fn reduce(&self, d: &mut [u8], a: &[u8], b: &[u8]) -> Result<(), ReduceError> {
        ByteReducer::reduce(&self.0, d, a, b)
    }
}

fn main() {
    let bytes: usize = std::env::args()
        .nth(1)
        .map_or(1 << 20, |s| s.parse().expect("bytes"));
    let n = 2;
    for window in [32 << 10, 64 << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20] {
        for two in [false, true] {
            let hub = WindowHub::new();
            let names: Vec<String> = (0..n).map(|r| format!("rank {r}")).collect();
            let names = Arc::new(names);
            let hs: Vec<_> = (0..n)
                .map(|r| {
                    let (hub, names) = (hub.clone(), names.clone());
                    std::thread::spawn(move || {
                        let mut cfg = WindowConfig::from_env(n);
                        cfg.data_bytes = window;
                        let w = hub
                            .join(
                                "p",
                                r,
                                &names,
                                &cfg,
                                Deadline::after(Duration::from_secs(10)),
                            )
                            .unwrap();
                        let red = R(Reducer::new(DataType::F32, ReduceOp::Sum).unwrap());
                        let input = vec![1.0f32; bytes / 4];
                        let mut out = vec![0f32; bytes / 4];
                        let iters = ((1usize << 30) / bytes).clamp(5, 20000);
                        let mut t = Timed {
                            e: HostExec::new(&w, Some(&red), 4, Deadline::never(), "ar"),
                            copy: Duration::ZERO,
                            wait: Duration::ZERO,
                            reduce: Duration::ZERO,
                        };
                        let i = input.as_ptr() as Addr;
                        let o = out.as_mut_ptr() as Addr;
                        for _ in 0..3 {
                            intra::all_reduce_one_shot(&mut t, i, o, bytes).unwrap();
                        }
                        intra::barrier(&mut t).unwrap();
                        t.copy = Duration::ZERO;
                        t.wait = Duration::ZERO;
                        t.reduce = Duration::ZERO;
                        let start = Instant::now();
                        for _ in 0..iters {
                            if two {
                                intra::all_reduce_two_shot(&mut t, i, o, bytes).unwrap();
                            } else {
                                intra::all_reduce_one_shot(&mut t, i, o, bytes).unwrap();
                            }
                        }
                        let per = start.elapsed() / iters as u32;
                        let k = iters as u32;
                        (per, t.copy / k, t.wait / k, t.reduce / k)
                    })
                })
                .collect();
            let res: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
            let (per, c, w, r) = res[0];
            println!(
                "{bytes} B window {:>5} KiB {}: {:>9.2?}/op busbw {:5.2} GB/s | copy {:>8.2?} wait {:>8.2?} reduce {:>8.2?}",
                window >> 10,
                if two { "two-shot" } else { "one-shot" },
                per,
                bytes as f64 / per.as_secs_f64() / 1e9,
                c,
                w,
                r
            );
        }
    }
}
