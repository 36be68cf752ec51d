//! Every window algorithm on 1..=8 thread ranks, window buffers small enough that
//! every size takes several rounds, random data, every byte checked against a
//! reference folded in rank order; float sums bit-identical across algorithms and
//! round sizes.

use std::sync::Arc;
use std::time::Duration;

use tutti_intra as intra;
use tutti_testkit::{AddF32, AddU32, fold, random_bytes, random_f32_bytes, run_windows};
use tutti_transport::window::{Addr, HostExec};
use tutti_transport::{ByteReducer, Deadline};

fn deadline() -> Deadline {
    Deadline::after(Duration::from_secs(60))
}

fn addr(v: &[u8]) -> Addr {
    v.as_ptr() as Addr
}

fn addr_mut(v: &mut [u8]) -> Addr {
    v.as_mut_ptr() as Addr
}

/// Element counts: empty, one, fewer than ranks, around the window buffer, many rounds.
fn counts(n: usize, window: usize) -> Vec<usize> {
    let w = window / 4;
    vec![
        0,
        1,
        n.saturating_sub(1).max(1),
        n + 1,
        w - 1,
        w,
        w + 1,
        3 * w + 5,
        17 * w / 3,
    ]
}

const WINDOW: usize = 4096;

/// The all_reduce algorithms.
#[derive(Clone, Copy, Debug)]
enum Algo {
    OneShot,
    TwoShot,
    /// Two-shot reading the members' inputs where they lie.
    Direct,
}

const ALGOS: [Algo; 3] = [Algo::OneShot, Algo::TwoShot, Algo::Direct];

/// Runs `algo` on `e` (made able to read the members directly for `Direct`).
fn all_reduce(
    algo: Algo,
    e: HostExec<'_>,
    i: Addr,
    o: Addr,
    len: usize,
) -> (HostExec<'_>, intra::Result<()>) {
    let mut e = e.reading_members_directly(matches!(algo, Algo::Direct));
    let r = match algo {
        Algo::OneShot => intra::all_reduce_one_shot(&mut e, i, o, len),
        Algo::TwoShot => intra::all_reduce_two_shot(&mut e, i, o, len),
        Algo::Direct => intra::all_reduce_two_shot_direct(&mut e, i, o, len),
    };
    (e, r)
}

#[test]
fn all_reduce_one_shot_and_two_shot_match_the_rank_order_fold() {
    for n in 1..=8 {
        for count in counts(n, WINDOW) {
            let len = count * 4;
            let inputs: Arc<Vec<Vec<u8>>> = Arc::new(
                (0..n)
                    .map(|r| random_bytes(len, (n * 977 + r) as u64))
                    .collect(),
            );
            let want = fold(&AddU32, &inputs);
            for algo in ALGOS {
                let ins = inputs.clone();
                let outs = run_windows(n, WINDOW, move |r, w| {
                    // Out of place, then in place on a copy.
                    let mut out = vec![0u8; len];
                    let mut inplace = ins[r].clone();
                    let e = HostExec::new(&w, Some(&AddU32), 4, deadline(), "all_reduce");
                    let (e, res) = all_reduce(algo, e, addr(&ins[r]), addr_mut(&mut out), len);
                    res.unwrap();
                    let p = addr_mut(&mut inplace);
                    all_reduce(algo, e, p, p, len).1.unwrap();
                    (out, inplace)
                });
                for (r, (out, inplace)) in outs.into_iter().enumerate() {
                    assert!(
                        out == want,
                        "n={n} count={count} {algo:?} rank {r}: out of place differs"
                    );
                    assert!(
                        inplace == want,
                        "n={n} count={count} {algo:?} rank {r}: in place differs"
                    );
                }
            }
        }
    }
}

#[test]
fn float_sums_and_averages_are_bit_identical_across_algorithms_and_window_sizes() {
    for n in [2, 3, 4, 5, 8] {
        let count = 3000;
        let len = count * 4;
        let inputs: Arc<Vec<Vec<u8>>> = Arc::new(
            (0..n)
                .map(|r| random_f32_bytes(count, (n * 31 + r) as u64))
                .collect(),
        );
        for divide_by in [1.0f32, n as f32] {
            let reducer = AddF32 { divide_by };
            let want = fold(&reducer, &inputs);
            // The result must not depend on the order: check that this data would
            // show a different order (otherwise the test proves nothing).
            let reversed: Vec<Vec<u8>> = inputs.iter().rev().cloned().collect();
            if n > 2 {
                assert!(
                    fold(&reducer, &reversed) != want,
                    "test data too tame for n={n}"
                );
            }
            // The last: output copies streamed past the caches (as for data larger
            // than the last-level cache).
            for (window, algo, stream) in [
                (16384, Algo::OneShot, false),
                (4096, Algo::OneShot, false),
                (4096, Algo::TwoShot, false),
                (8192, Algo::TwoShot, false),
                (65536, Algo::TwoShot, false),
                (65536, Algo::TwoShot, true),
                (4096, Algo::Direct, false),
                (65536, Algo::Direct, true),
            ] {
                let ins = inputs.clone();
                let outs = run_windows(n, window, move |r, w| {
                    let reducer = AddF32 { divide_by };
                    let mut out = vec![0u8; len];
                    let mut e = HostExec::new(&w, Some(&reducer), 4, deadline(), "all_reduce");
                    if stream {
                        e = e.sized_for(usize::MAX / 64);
                    }
                    all_reduce(algo, e, addr(&ins[r]), addr_mut(&mut out), len)
                        .1
                        .unwrap();
                    out
                });
                for (r, out) in outs.into_iter().enumerate() {
                    assert!(
                        out == want,
                        "n={n} window={window} {algo:?} stream={stream} avg={} rank {r}: bits differ from the rank-order fold",
                        divide_by != 1.0
                    );
                }
            }
        }
    }
}

#[test]
fn reduce_scatter_reduce_and_broadcast() {
    for n in 1..=8 {
        for count in counts(n, WINDOW) {
            let block = count * 4;
            let inputs: Arc<Vec<Vec<u8>>> = Arc::new(
                (0..n)
                    .map(|r| random_bytes(block * n, (n * 131 + r) as u64))
                    .collect(),
            );
            let total = fold(&AddU32, &inputs);
            let root = n / 2;
            let ins = inputs.clone();
            let outs = run_windows(n, WINDOW, move |r, w| {
                let mut e = HostExec::new(&w, Some(&AddU32), 4, deadline(), "test");
                let mut rs = vec![0u8; block];
                intra::reduce_scatter(&mut e, addr(&ins[r]), addr_mut(&mut rs), block).unwrap();
                let mut red = vec![0u8; block * n];
                intra::reduce(&mut e, root, addr(&ins[r]), addr_mut(&mut red), block * n).unwrap();
                let mut bc = if r == root {
                    ins[r].clone()
                } else {
                    vec![0u8; block * n]
                };
                intra::broadcast(&mut e, root, addr_mut(&mut bc), block * n).unwrap();
                (rs, red, bc)
            });
            for (r, (rs, red, bc)) in outs.into_iter().enumerate() {
                assert!(
                    rs == total[r * block..(r + 1) * block],
                    "reduce_scatter n={n} count={count} rank {r}"
                );
                if r == root {
                    assert!(red == total, "reduce n={n} count={count}");
                } else {
                    assert!(
                        red.iter().all(|&b| b == 0),
                        "reduce wrote a non-root's output"
                    );
                }
                assert!(bc == inputs[root], "broadcast n={n} count={count} rank {r}");
            }
        }
    }
}

#[test]
fn all_gather_gather_scatter_with_uneven_lengths() {
    for n in 1..=8 {
        for count in counts(n, WINDOW) {
            // Rank m contributes (count + m) % (count + 2) elements: some zero.
            let lens: Vec<usize> = (0..n).map(|m| ((count + m) % (count + 2)) * 4).collect();
            let displs: Vec<usize> = lens
                .iter()
                .scan(0, |acc, &l| {
                    let d = *acc;
                    *acc += l;
                    Some(d)
                })
                .collect();
            let total: usize = lens.iter().sum();
            let inputs: Arc<Vec<Vec<u8>>> = Arc::new(
                (0..n)
                    .map(|r| random_bytes(lens[r], (n * 71 + r) as u64))
                    .collect(),
            );
            let want: Vec<u8> = inputs.concat();
            let root = n - 1;
            let (ins, l2, d2) = (inputs.clone(), lens.clone(), displs.clone());
            let outs = run_windows(n, WINDOW, move |r, w| {
                let mut e = HostExec::new(&w, None, 4, deadline(), "test");
                let mut ag = vec![0u8; total];
                intra::all_gather_v(&mut e, addr(&ins[r]), addr_mut(&mut ag), &l2, &d2).unwrap();
                let mut g = vec![0u8; if r == root { total } else { 0 }];
                intra::gather_v(&mut e, root, addr(&ins[r]), addr_mut(&mut g), &l2, &d2).unwrap();
                let src = if r == root { ins.concat() } else { Vec::new() };
                let mut sc = vec![0u8; l2[r]];
                intra::scatter_v(&mut e, root, addr(&src), &l2, &d2, addr_mut(&mut sc)).unwrap();
                (ag, g, sc)
            });
            for (r, (ag, g, sc)) in outs.into_iter().enumerate() {
                assert!(ag == want, "all_gather n={n} count={count} rank {r}");
                if r == root {
                    assert!(g == want, "gather n={n} count={count}");
                }
                assert!(sc == inputs[r], "scatter n={n} count={count} rank {r}");
            }
        }
    }
}

#[test]
fn all_to_all_even_and_uneven_with_zero_length_pieces() {
    for n in 1..=8 {
        for count in [0usize, 1, 700, 1025, 3000] {
            // Rank s sends (s * 3 + d * 5 + count) % (count + 3) elements to rank d;
            // zero for some pairs whenever count > 0.
            let len = move |s: usize, d: usize| ((s * 3 + d * 5 + count) % (count + 3)) * 4;
            let longest = (0..n)
                .flat_map(|s| (0..n).map(move |d| (s, d)))
                .map(|(s, d)| len(s, d))
                .max()
                .unwrap_or(0);
            let outs = run_windows(n, WINDOW, move |r, w| {
                let send_lens: Vec<usize> = (0..n).map(|d| len(r, d)).collect();
                let recv_lens: Vec<usize> = (0..n).map(|s| len(s, r)).collect();
                let displs = |l: &[usize]| -> Vec<usize> {
                    l.iter()
                        .scan(0, |a, &x| {
                            let d = *a;
                            *a += x;
                            Some(d)
                        })
                        .collect()
                };
                let (sd, rd) = (displs(&send_lens), displs(&recv_lens));
                let input: Vec<u8> = (0..n)
                    .flat_map(|d| random_bytes(send_lens[d], (r * 100 + d) as u64))
                    .collect();
                let mut out = vec![0u8; recv_lens.iter().sum()];
                let mut e = HostExec::new(&w, None, 4, deadline(), "all_to_all");
                intra::all_to_all_v(
                    &mut e,
                    addr(&input),
                    &send_lens,
                    &sd,
                    addr_mut(&mut out),
                    &recv_lens,
                    &rd,
                    longest,
                )
                .unwrap();
                let want: Vec<u8> = (0..n)
                    .flat_map(|s| random_bytes(recv_lens[s], (s * 100 + r) as u64))
                    .collect();
                // Even all_to_all on the same window afterwards.
                let block = count * 4;
                let even: Vec<u8> = (0..n)
                    .flat_map(|d| random_bytes(block, (r * 1000 + d) as u64))
                    .collect();
                let mut eo = vec![0u8; block * n];
                intra::all_to_all(&mut e, addr(&even), addr_mut(&mut eo), block).unwrap();
                let ewant: Vec<u8> = (0..n)
                    .flat_map(|s| random_bytes(block, (s * 1000 + r) as u64))
                    .collect();
                (out == want, eo == ewant)
            });
            for (r, (uneven, even)) in outs.into_iter().enumerate() {
                assert!(uneven, "uneven all_to_all n={n} count={count} rank {r}");
                assert!(even, "all_to_all n={n} count={count} rank {r}");
            }
        }
    }
}

#[test]
fn barrier_and_many_back_to_back_operations_keep_the_round_protocol() {
    // Mixed collectives back to back (the buffer parity carries across them).
    let n = 4;
    let outs = run_windows(n, WINDOW, move |r, w| {
        let mut e =
            HostExec::new(&w, Some(&AddU32), 4, deadline(), "mixed").reading_members_directly(true);
        for i in 0..200u32 {
            let mut v = (0..(i as usize % 50 + 1) * 100)
                .flat_map(|k| ((k as u32) ^ (r as u32) ^ i).to_ne_bytes())
                .collect::<Vec<u8>>();
            let len = v.len();
            let p = addr_mut(&mut v);
            match i % 4 {
                0 => intra::all_reduce_one_shot(&mut e, p, p, len).unwrap(),
                1 => intra::all_reduce_two_shot(&mut e, p, p, len).unwrap(),
                2 => intra::all_reduce_two_shot_direct(&mut e, p, p, len).unwrap(),
                _ => intra::barrier(&mut e).unwrap(),
            }
        }
        true
    });
    assert!(outs.into_iter().all(|x| x));
}

#[test]
fn a_rank_that_leaves_fails_the_others_promptly_naming_it() {
    let n = 3;
    let outs = run_windows(n, WINDOW, move |r, w| {
        if r == 1 {
            // Leaves without calling: dropping the window closes it.
            drop(w);
            return Ok(());
        }
        let mut v = vec![1u8; 64];
        let p = addr_mut(&mut v);
        let start = std::time::Instant::now();
        let mut e = HostExec::new(&w, Some(&AddU32), 4, deadline(), "all_reduce");
        let res = intra::all_reduce_one_shot(&mut e, p, p, 64);
        assert!(start.elapsed() < Duration::from_secs(5));
        res.map_err(|e| e.to_string())
    });
    for (r, o) in outs.into_iter().enumerate() {
        if r != 1 {
            let err = o.expect_err("a peer left: the all_reduce must fail");
            assert!(err.contains("rank 1"), "rank {r}: {err}");
        }
    }
}

#[test]
fn bad_arguments_are_errors() {
    let outs = run_windows(2, WINDOW, |_, w| {
        let mut e = HostExec::new(&w, Some(&AddU32), 4, deadline(), "all_reduce");
        let v = [0u8; 8];
        let partial = intra::all_reduce_two_shot(&mut e, addr(&v), addr(&v) + 1, 6).unwrap_err();
        let odd = [0u8; 7];
        let too_big =
            intra::all_reduce_one_shot(&mut e, addr(&odd), addr(&odd), odd.len()).unwrap_err();
        let bad_root = intra::broadcast(&mut e, 5, addr(&v), 8).unwrap_err();
        // Direct reads the executor was not allowed: an error, not a hang or a
        // read of whatever address a peer last published.
        let not_agreed =
            intra::all_reduce_two_shot_direct(&mut e, addr(&v), addr(&v), 8).unwrap_err();
        (
            partial.to_string(),
            too_big.to_string(),
            bad_root.to_string(),
            not_agreed.to_string(),
        )
    });
    for (p, t, b, d) in outs {
        assert!(p.contains("whole number"), "{p}");
        assert!(t.contains("7 bytes"), "{t}");
        assert!(b.contains("root member 5"), "{b}");
        assert!(d.contains("cannot read the members' own buffers"), "{d}");
    }
    let _ = AddU32.element_size();
}

/// The direct variants (reading the members' buffers by address, as between thread
/// ranks): reduce_scatter out of place and in place, all_gather_v with uneven and
/// zero lengths, broadcast; every byte against the rank-order reference.
#[test]
fn direct_reduce_scatter_all_gather_and_broadcast() {
    for n in 1..=6 {
        for count in counts(n, WINDOW) {
            let block = count * 4;
            let inputs: Arc<Vec<Vec<u8>>> = Arc::new(
                (0..n)
                    .map(|r| random_bytes(block * n, (n * 313 + r) as u64))
                    .collect(),
            );
            let total = fold(&AddU32, &inputs);
            let lens: Vec<usize> = (0..n).map(|m| ((count + m) % (count + 2)) * 4).collect();
            let displs: Vec<usize> = lens
                .iter()
                .scan(0, |acc, &l| {
                    let d = *acc;
                    *acc += l;
                    Some(d)
                })
                .collect();
            let pieces: Arc<Vec<Vec<u8>>> = Arc::new(
                (0..n)
                    .map(|m| random_bytes(lens[m], (n * 17 + m) as u64))
                    .collect(),
            );
            let gathered: Vec<u8> = pieces.concat();
            let root = n.div_ceil(2) % n;
            let (ins, l2, d2, ps) = (inputs.clone(), lens.clone(), displs.clone(), pieces.clone());
            let outs = run_windows(n, WINDOW, move |r, w| {
                let mut e = HostExec::new(&w, Some(&AddU32), 4, deadline(), "test")
                    .reading_members_directly(true);
                let mut rs = vec![0u8; block];
                intra::reduce_scatter_direct(&mut e, addr(&ins[r]), addr_mut(&mut rs), block)
                    .unwrap();
                // In place: the output is this rank's own block of the input.
                let mut inplace = ins[r].clone();
                let p = addr_mut(&mut inplace);
                intra::reduce_scatter_direct(&mut e, p, p + r * block, block).unwrap();
                let mut ag = vec![0u8; l2.iter().sum()];
                intra::all_gather_v_direct(&mut e, addr(&ps[r]), addr_mut(&mut ag), &l2, &d2)
                    .unwrap();
                let mut bc = if r == root {
                    ins[r].clone()
                } else {
                    vec![0u8; block * n]
                };
                intra::broadcast_direct(&mut e, root, addr_mut(&mut bc), block * n).unwrap();
                (rs, inplace[r * block..(r + 1) * block].to_vec(), ag, bc)
            });
            for (r, (rs, inplace, ag, bc)) in outs.into_iter().enumerate() {
                let want = &total[r * block..(r + 1) * block];
                assert!(rs == want, "reduce_scatter n={n} count={count} rank {r}");
                assert!(
                    inplace == want,
                    "reduce_scatter in place n={n} count={count} rank {r}"
                );
                assert!(ag == gathered, "all_gather_v n={n} count={count} rank {r}");
                assert!(bc == inputs[root], "broadcast n={n} count={count} rank {r}");
            }
        }
    }
}

/// A rank whose buffer the others read directly returns only once they are done:
/// the root of a large direct broadcast and every rank of a direct all_gather
/// overwrite their buffers the moment the call returns, and no peer sees that.
#[test]
fn direct_reads_finish_before_any_rank_returns() {
    let n = 3;
    let len = 8 << 20;
    for round in 0..4u8 {
        let outs = run_windows(n, WINDOW, move |r, w| {
            let mut e =
                HostExec::new(&w, None, 4, deadline(), "test").reading_members_directly(true);
            let mut data = vec![if r == 0 { round + 1 } else { 0 }; len];
            intra::broadcast_direct(&mut e, 0, addr_mut(&mut data), len).unwrap();
            if r == 0 {
                data.fill(0xEE);
            }
            let mut mine = vec![r as u8 + round; len / 4];
            let mut all = vec![0u8; n * len / 4];
            intra::all_gather_direct(&mut e, addr(&mine), addr_mut(&mut all), len / 4).unwrap();
            mine.fill(0xEE);
            (data, all)
        });
        for (r, (data, all)) in outs.into_iter().enumerate() {
            if r != 0 {
                assert!(data.iter().all(|&b| b == round + 1), "broadcast, rank {r}");
            }
            for m in 0..n {
                let block = &all[m * len / 4..(m + 1) * len / 4];
                assert!(
                    block.iter().all(|&b| b == m as u8 + round),
                    "all_gather, rank {r} block {m}"
                );
            }
        }
    }
}
