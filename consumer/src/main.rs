//! A user's program: collectives and point-to-point under `tutti run`, every element
//! checked (see README.md).

use std::process::ExitCode;

use tutti::{GroupOptions, ProcessGroup, ReduceOp};

fn main() -> ExitCode {
    match run() {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tutti-consumer: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Rank `r`'s value at index `i`: small integers, so float sums are exact.
fn value(r: usize, i: usize) -> f32 {
    ((r * 7 + i) % 251) as f32
}

fn check(what: &str, got: &[f32], want: impl Fn(usize) -> f32) -> Result<(), String> {
    match got.iter().enumerate().find(|&(i, &x)| x != want(i)) {
        None => Ok(()),
        Some((i, &x)) => Err(format!("{what}: element {i} is {x}, expected {}", want(i))),
    }
}

fn run() -> Result<String, String> {
    let opts = GroupOptions::from_env().map_err(|e| e.to_string())?;
    let pg = ProcessGroup::from_env(opts).map_err(|e| e.to_string())?;
    let (rank, n) = (pg.rank(), pg.size());
    let err = |what: &str| {
        let what = what.to_string();
        move |e: tutti::Error| format!("rank {rank}: {what}: {e}")
    };
    let sum = |i: usize| (0..n).map(|r| value(r, i)).sum::<f32>();
    let mut calls = 0;
    // 4 B .. 8 MiB: the small-message lines, one-shot, two-shot, many window rounds;
    // over links the one-hop exchange, halving-doubling (64 KiB on 4 or 8 ranks) and
    // the ring.
    for count in [1usize, 14, 1000, 4096, 16_384, 65_536, 262_144, 2 << 20] {
        let input: Vec<f32> = (0..count).map(|i| value(rank, i)).collect();
        let mut out = vec![0f32; count];
        pg.all_reduce_into(&input, &mut out, ReduceOp::Sum)
            .map_err(err("all_reduce_into"))?;
        check(
            &format!("rank {rank}: all_reduce_into of {count}"),
            &out,
            sum,
        )?;
        let mut buf = input.clone();
        pg.all_reduce(&mut buf, ReduceOp::Avg)
            .map_err(err("all_reduce avg"))?;
        check(
            &format!("rank {rank}: all_reduce avg of {count}"),
            &buf,
            |i| sum(i) / n as f32,
        )?;
        calls += 2;
    }
    let root = n - 1;
    let mut b: Vec<f32> = (0..300_000)
        .map(|i| if rank == root { value(root, i) } else { -1.0 })
        .collect();
    pg.broadcast(&mut b, root).map_err(err("broadcast"))?;
    check(&format!("rank {rank}: broadcast"), &b, |i| value(root, i))?;
    let part = 50_000;
    let mine: Vec<f32> = (0..part).map(|i| value(rank, i)).collect();
    let mut all = vec![0f32; part * n];
    pg.all_gather(&mine, &mut all).map_err(err("all_gather"))?;
    check(&format!("rank {rank}: all_gather"), &all, |i| {
        value(i / part, i % part)
    })?;
    let full: Vec<f32> = (0..part * n).map(|i| value(rank, i)).collect();
    let mut red = vec![0f32; part];
    pg.reduce_scatter(&full, &mut red, ReduceOp::Sum)
        .map_err(err("reduce_scatter"))?;
    check(&format!("rank {rank}: reduce_scatter"), &red, |i| {
        sum(rank * part + i)
    })?;
    calls += 3;
    // isend + irecv of 4 MiB between neighbours, both directions posted before either
    // waits (the pattern that once deadlocked).
    if n > 1 {
        let count = 1 << 20;
        let (next, prev) = ((rank + 1) % n, (rank + n - 1) % n);
        let out: Vec<f32> = (0..count).map(|i| value(rank, i)).collect();
        let send = pg.send_async(out, next, 7);
        let recv = pg.recv_async(vec![0f32; count], prev, 7);
        let got = recv.wait().map_err(err("irecv"))?;
        send.wait().map_err(err("isend"))?;
        check(&format!("rank {rank}: irecv from {prev}"), &got, |i| {
            value(prev, i)
        })?;
        calls += 1;
    }
    // Gradient buckets in memory every rank of the host maps (alloc_shared): large
    // all_reduces and reduce_scatters read the other ranks' data where it lies.
    let count = 1 << 20;
    let mut bucket = pg.alloc_shared::<f32>(count).map_err(err("alloc_shared"))?;
    let mut grads = pg.alloc_shared::<f32>(count).map_err(err("alloc_shared"))?;
    for step in 0..3 {
        for (i, x) in bucket.iter_mut().enumerate() {
            *x = value(rank + step, i);
        }
        pg.all_reduce(&mut bucket, ReduceOp::Sum)
            .map_err(err("all_reduce on shared memory"))?;
        let want = |i: usize| (0..n).map(|r| value(r + step, i)).sum::<f32>();
        check(
            &format!("rank {rank}: all_reduce on shared memory, step {step}"),
            &bucket,
            want,
        )?;
        grads.copy_from_slice(&bucket);
        let block = count / n;
        let mut mine = vec![0f32; block];
        pg.reduce_scatter(&grads[..block * n], &mut mine, ReduceOp::Sum)
            .map_err(err("reduce_scatter on shared memory"))?;
        check(
            &format!("rank {rank}: reduce_scatter on shared memory, step {step}"),
            &mine,
            |i| n as f32 * want(rank * block + i),
        )?;
        calls += 2;
    }
    pg.barrier().map_err(err("barrier"))?;
    Ok(format!(
        "tutti-consumer: rank {rank} of {n}: {calls} calls checked, every element right"
    ))
}
