//! Every tree schedule on 1..=8 threads over in-process links, random data, every
//! byte checked against a reference computed from all ranks' inputs.

use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng, rngs::StdRng};
use tutti_transport::shm::{InprocHub, ShmConfig};
use tutti_transport::{ByteReducer, Deadline, Link};
use tutti_tree::Tree;

/// Wrapping u32 addition (the reducer the tutti crate would pass for u32 Sum).
struct AddU32;
impl ByteReducer for AddU32 {
    fn element_size(&self) -> usize {
        4
    }
    fn reduce_inplace(&self, dst: &mut [u8], src: &[u8]) -> std::result::Result<(), String> {
        for (d, s) in dst.chunks_exact_mut(4).zip(src.chunks_exact(4)) {
            let v = u32::from_ne_bytes(d.try_into().unwrap())
                .wrapping_add(u32::from_ne_bytes(s.try_into().unwrap()));
            d.copy_from_slice(&v.to_ne_bytes());
        }
        Ok(())
    }
    fn reduce(&self, dst: &mut [u8], a: &[u8], b: &[u8]) -> std::result::Result<(), String> {
        dst.copy_from_slice(a);
        self.reduce_inplace(dst, b)
    }
}

fn sum(inputs: &[Vec<u8>]) -> Vec<u8> {
    let mut acc = inputs[0].clone();
    for x in &inputs[1..] {
        AddU32.reduce_inplace(&mut acc, x).unwrap();
    }
    acc
}

fn random(n: usize, seed: u64) -> Vec<u8> {
    let mut r = StdRng::seed_from_u64(seed);
    (0..n).map(|_| r.random()).collect()
}

/// Runs `f(ring)` on `n` threads, returning each rank's result.
fn run<T: Send + 'static>(
    n: usize,
    chunk: usize,
    f: impl Fn(&mut Tree<'_>) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let mut cfg = ShmConfig::from_env(n);
    cfg.fifo.slots = 2;
    cfg.fifo.slot_size = 4096;
    let hub = InprocHub::new(cfg);
    let f = Arc::new(f);
    let hs: Vec<_> = (0..n)
        .map(|r| {
            let (hub, f) = (hub.clone(), f.clone());
            std::thread::spawn(move || {
                let mut mesh: Vec<Option<Link>> = (0..n)
                    .map(|p| (p != r).then(|| hub.connect(r, p, &format!("rank {p}")).unwrap()))
                    .collect();
                let mut ring = Tree {
                    rank: r,
                    size: n,
                    links: &mut mesh,
                    chunk,
                    deadline: Deadline::after(Duration::from_secs(60)),
                };
                f(&mut ring)
            })
        })
        .collect();
    hs.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn tree_all_reduce_broadcast_reduce() {
    for n in 1..=8 {
        for count in [0usize, 1, n - 1, 1023, 2048 * n + 1, 6001] {
            let len = count * 4;
            let inputs: Arc<Vec<Vec<u8>>> =
                Arc::new((0..n).map(|r| random(len, (n * 31 + r) as u64)).collect());
            let want = sum(&inputs);
            let ins = inputs.clone();
            let outs = run(n, 4096, move |t| {
                let mut b = ins[t.rank].clone();
                tutti_tree::all_reduce(t, &mut b, &AddU32).unwrap();
                b
            });
            for (r, o) in outs.iter().enumerate() {
                assert_eq!(o, &want, "tree all_reduce n={n} count={count} rank={r}");
            }
            for root in 0..n {
                let ins = inputs.clone();
                let outs = run(n, 4096, move |t| {
                    let mut b = if t.rank == root {
                        ins[root].clone()
                    } else {
                        vec![0u8; ins[0].len()]
                    };
                    tutti_tree::broadcast(t, &mut b, root).unwrap();
                    b
                });
                for o in &outs {
                    assert_eq!(o, &inputs[root], "tree broadcast n={n} root={root}");
                }
                let ins = inputs.clone();
                let outs = run(n, 4096, move |t| {
                    let mut out = if t.rank == root {
                        vec![0u8; ins[0].len()]
                    } else {
                        Vec::new()
                    };
                    tutti_tree::reduce(t, &ins[t.rank], &mut out, root, &AddU32).unwrap();
                    out
                });
                assert_eq!(outs[root], want, "tree reduce n={n} root={root}");
            }
        }
    }
}
