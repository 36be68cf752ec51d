//! Every ring schedule on 1..=5 threads over in-process links, random data, every
//! byte checked against a reference computed from all ranks' inputs.

use std::sync::Arc;

use tutti_testkit::{
    AddU32, random_bytes as random, run_schedule as run, run_schedule_ahead, sum_u32 as sum,
};

/// Element counts: empty, single, fewer than ranks, chunk boundaries +-1, many chunks.
fn counts(n: usize) -> Vec<usize> {
    vec![
        0,
        1,
        n - 1,
        n + 1,
        1023,
        1024 * n,
        1024 * n + 1,
        9 * 1024 + 3,
    ]
}

#[test]
fn all_reduce_reduce_scatter_all_gather() {
    for n in 1..=5 {
        for count in counts(n) {
            let len = count * 4;
            let inputs: Arc<Vec<Vec<u8>>> =
                Arc::new((0..n).map(|r| random(len, (n * 1000 + r) as u64)).collect());
            let want = sum(&inputs);
            let ins = inputs.clone();
            let outs = run(n, 4096, move |ring| {
                let mut b = ins[ring.rank].clone();
                tutti_ring::all_reduce(ring, &mut b, &AddU32).unwrap();
                b
            });
            for (r, o) in outs.iter().enumerate() {
                assert_eq!(o, &want, "all_reduce n={n} count={count} rank={r}");
            }
            let ins = inputs.clone();
            let outs = run(n, 4096, move |ring| {
                let seg = tutti_ring::segment(ins[0].len(), 4, ring.size, ring.rank);
                let mut out = vec![0u8; seg.len()];
                tutti_ring::reduce_scatter(ring, &ins[ring.rank], &mut out, &AddU32).unwrap();
                out
            });
            for (r, o) in outs.iter().enumerate() {
                assert_eq!(
                    o[..],
                    want[tutti_ring::segment(len, 4, n, r)],
                    "reduce_scatter n={n} count={count} rank={r}"
                );
            }
            let ins = inputs.clone();
            let outs = run(n, 4096, move |ring| {
                let mut out = vec![0u8; ins[0].len() * ring.size];
                tutti_ring::all_gather(ring, &ins[ring.rank], &mut out).unwrap();
                out
            });
            let cat: Vec<u8> = inputs.concat();
            for (r, o) in outs.iter().enumerate() {
                assert_eq!(o, &cat, "all_gather n={n} count={count} rank={r}");
            }
        }
    }
}

/// The next round's own chunk sent ahead or not, over links of two slots (just
/// enough), in place and out of place, chunks of 4 KiB and of 16 bytes (many
/// rounds): the same bytes as the reference.
#[test]
fn all_reduce_sending_ahead() {
    for n in 2..=5 {
        for ahead in [false, true] {
            for chunk in [4096, 16] {
                for count in [n + 1, 1024 * n + 1, 9 * 1024 + 3] {
                    let len = count * 4;
                    let inputs: Arc<Vec<Vec<u8>>> =
                        Arc::new((0..n).map(|r| random(len, (n * 77 + r) as u64)).collect());
                    let want = sum(&inputs);
                    let ins = inputs.clone();
                    let outs = run_schedule_ahead(n, chunk, ahead, move |ring| {
                        let mut b = ins[ring.rank].clone();
                        tutti_ring::all_reduce(ring, &mut b, &AddU32).unwrap();
                        let mut o = vec![0u8; len];
                        tutti_ring::all_reduce_into(ring, &ins[ring.rank], &mut o, &AddU32)
                            .unwrap();
                        (b, o)
                    });
                    for (r, (b, o)) in outs.iter().enumerate() {
                        let what =
                            format!("n={n} ahead={ahead} chunk={chunk} count={count} rank={r}");
                        assert_eq!(b, &want, "in place, {what}");
                        assert_eq!(o, &want, "out of place, {what}");
                    }
                }
            }
        }
    }
}

#[test]
fn broadcast_reduce_all_to_all_gather_scatter() {
    for n in 1..=5 {
        for count in [0, 1, 1024 * n + 1, 5000] {
            let len = count * 4;
            let inputs: Arc<Vec<Vec<u8>>> = Arc::new(
                (0..n)
                    .map(|r| random(len * n, (n * 77 + r) as u64))
                    .collect(),
            );
            for root in 0..n {
                let ins = inputs.clone();
                let outs = run(n, 4096, move |ring| {
                    let mut b = if ring.rank == root {
                        ins[root][..len].to_vec()
                    } else {
                        vec![0u8; len]
                    };
                    tutti_ring::broadcast(ring, &mut b, root).unwrap();
                    b
                });
                for o in &outs {
                    assert_eq!(o[..], inputs[root][..len], "broadcast n={n} root={root}");
                }
                let ins = inputs.clone();
                let outs = run(n, 4096, move |ring| {
                    let mut out = if ring.rank == root {
                        vec![0u8; len]
                    } else {
                        Vec::new()
                    };
                    tutti_ring::reduce(ring, &ins[ring.rank][..len], &mut out, root, &AddU32)
                        .unwrap();
                    out
                });
                let part: Vec<Vec<u8>> = inputs.iter().map(|x| x[..len].to_vec()).collect();
                assert_eq!(outs[root], sum(&part), "reduce n={n} root={root}");
                let ins = inputs.clone();
                let outs = run(n, 4096, move |ring| {
                    let mut out = if ring.rank == root {
                        vec![0u8; len * ring.size]
                    } else {
                        Vec::new()
                    };
                    tutti_ring::gather(ring, &ins[ring.rank][..len], &mut out, root).unwrap();
                    out
                });
                assert_eq!(outs[root], part.concat(), "gather n={n} root={root}");
                let ins = inputs.clone();
                let outs = run(n, 4096, move |ring| {
                    let mut out = vec![0u8; len];
                    tutti_ring::scatter(
                        ring,
                        if ring.rank == root { &ins[root] } else { &[] },
                        &mut out,
                        root,
                    )
                    .unwrap();
                    out
                });
                for (r, o) in outs.iter().enumerate() {
                    assert_eq!(
                        o[..],
                        inputs[root][r * len..(r + 1) * len],
                        "scatter n={n} root={root} rank={r}"
                    );
                }
            }
            let ins = inputs.clone();
            let outs = run(n, 4096, move |ring| {
                let mut out = vec![0u8; len * ring.size];
                tutti_ring::all_to_all(ring, &ins[ring.rank], &mut out).unwrap();
                out
            });
            for (r, o) in outs.iter().enumerate() {
                for i in 0..n {
                    assert_eq!(
                        o[i * len..(i + 1) * len],
                        inputs[i][r * len..(r + 1) * len],
                        "all_to_all n={n} rank={r} block={i}"
                    );
                }
            }
        }
    }
}

/// The one-hop all_reduce, in place and out of place, folds in rank order on every
/// rank: float sums whose bits depend on the order equal the rank-order fold.
#[test]
fn direct_all_reduce_in_place_and_out_of_place_fold_in_rank_order() {
    use tutti_testkit::{AddF32, fold, random_f32_bytes};
    for n in 1..=5 {
        // Up to one message of the test links (4 KiB): the sends are posted before
        // any receive.
        for count in [0, 1, n + 1, 300, 1024] {
            let inputs: Arc<Vec<Vec<u8>>> = Arc::new(
                (0..n)
                    .map(|r| random_f32_bytes(count, (n * 31 + r) as u64))
                    .collect(),
            );
            let want = fold(&AddF32 { divide_by: 1.0 }, &inputs);
            for in_place in [true, false] {
                let ins = inputs.clone();
                let outs = run(n, 4096, move |ring| {
                    let add = AddF32 { divide_by: 1.0 };
                    let mine = &ins[ring.rank];
                    if in_place {
                        // A larger call first: the kept copy of this rank's
                        // contribution (reused per thread) must not leak into the
                        // next, smaller one.
                        let mut big = random_f32_bytes(1024, 7);
                        tutti_ring::all_reduce_direct(ring, &mut big, &add).unwrap();
                        let mut b = mine.clone();
                        tutti_ring::all_reduce_direct(ring, &mut b, &add).unwrap();
                        b
                    } else {
                        // Garbage in the output: it must be written, not read.
                        let mut out = vec![0xa5u8; mine.len()];
                        tutti_ring::all_reduce_direct_into(ring, Some(mine), &mut out, &add)
                            .unwrap();
                        out
                    }
                });
                for (r, o) in outs.iter().enumerate() {
                    assert_eq!(
                        o, &want,
                        "direct all_reduce n={n} count={count} in_place={in_place} rank={r}"
                    );
                }
            }
        }
    }
}

#[test]
fn direct_all_reduce_keeps_every_operand_in_rank_order() {
    use tutti_testkit::{Ordered, fold, random_bytes};
    // `31 a + b`: any step folded out of order or with its operands swapped shows.
    for n in 2..=5 {
        for count in [1, 300, 1024] {
            let inputs: Arc<Vec<Vec<u8>>> = Arc::new(
                (0..n)
                    .map(|r| random_bytes(count * 4, (n * 17 + r) as u64))
                    .collect(),
            );
            let want = fold(&Ordered, &inputs);
            for in_place in [true, false] {
                let ins = inputs.clone();
                let outs = run(n, 4096, move |ring| {
                    let mine = &ins[ring.rank];
                    if in_place {
                        let mut b = mine.clone();
                        tutti_ring::all_reduce_direct(ring, &mut b, &Ordered).unwrap();
                        b
                    } else {
                        let mut out = vec![0xa5u8; mine.len()];
                        tutti_ring::all_reduce_direct_into(ring, Some(mine), &mut out, &Ordered)
                            .unwrap();
                        out
                    }
                });
                for (r, o) in outs.iter().enumerate() {
                    assert_eq!(
                        o, &want,
                        "direct all_reduce (ordered op) n={n} count={count} in_place={in_place} rank={r}"
                    );
                }
            }
        }
    }
}

/// Halving-doubling on 1, 2, 4 and 8 threads, in place and out of place, chunks of
/// 4 KiB and of 16 bytes (many exchanges per step), counts that split unevenly: every
/// byte equal to the reference, the input untouched, and every rank with the same
/// bytes. Rank counts that are not powers of two are refused.
#[test]
fn all_reduce_halving_doubling() {
    for n in [1, 2, 4, 8] {
        for chunk in [4096, 16] {
            for count in [0, 1, n - 1, n + 1, 1023, 1024 * n + 3, 9 * 1024 + 3] {
                let len = count * 4;
                let inputs: Arc<Vec<Vec<u8>>> =
                    Arc::new((0..n).map(|r| random(len, (n * 31 + r) as u64)).collect());
                let want = sum(&inputs);
                for in_place in [true, false] {
                    let ins = inputs.clone();
                    let outs = run(n, chunk, move |ring| {
                        let mine = &ins[ring.rank];
                        if in_place {
                            let mut b = mine.clone();
                            tutti_ring::all_reduce_halving_doubling(ring, None, &mut b, &AddU32)
                                .unwrap();
                            b
                        } else {
                            let mut out = vec![0xa5u8; mine.len()];
                            let copy = mine.clone();
                            tutti_ring::all_reduce_halving_doubling(
                                ring,
                                Some(&copy),
                                &mut out,
                                &AddU32,
                            )
                            .unwrap();
                            assert_eq!(&copy, mine, "input changed");
                            out
                        }
                    });
                    for (r, o) in outs.iter().enumerate() {
                        assert_eq!(
                            o, &want,
                            "halving-doubling n={n} chunk={chunk} count={count} in_place={in_place} rank={r}"
                        );
                    }
                }
            }
        }
    }
    let outs = run(3, 4096, |ring| {
        let mut b = vec![0u8; 64];
        tutti_ring::all_reduce_halving_doubling(ring, None, &mut b, &AddU32)
            .unwrap_err()
            .to_string()
    });
    assert!(
        outs[0].contains("3 ranks is not a power of two"),
        "{}",
        outs[0]
    );
}
