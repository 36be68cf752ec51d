//! Every tree schedule on 1..=8 threads over in-process links, random data, every
//! byte checked against a reference computed from all ranks' inputs.

use std::sync::Arc;

use tutti_testkit::{AddU32, random_bytes as random, run_schedule as run, sum_u32 as sum};

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
