//! The smallest tutti program: every rank all-reduces a vector and checks the sum.
//!
//! ```sh
//! cargo build --release --example hello_all_reduce
//! tutti run --nproc-per-node 4 -- target/release/examples/hello_all_reduce
//! ```
//!
//! Under `tutti run` (or torchrun, Slurm, mpirun) the rank, the world size and the
//! rendezvous come from the environment.

use std::process::ExitCode;

use tutti::{GroupOptions, ProcessGroup, ReduceOp};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hello_all_reduce: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> tutti::Result<()> {
    let pg = ProcessGroup::from_env(GroupOptions::from_env()?)?;
    let (rank, n) = (pg.rank(), pg.size());
    // Rank r contributes r + i at index i; the sum is n*i + n*(n-1)/2.
    let mut v: Vec<f32> = (0..1 << 20).map(|i| (rank + i % 1000) as f32).collect();
    pg.all_reduce(&mut v, ReduceOp::Sum)?;
    let wrong = v
        .iter()
        .enumerate()
        .filter(|&(i, &x)| x != (n * (i % 1000) + n * (n - 1) / 2) as f32)
        .count();
    if wrong > 0 {
        return Err(tutti::Error::InvalidArgument(format!(
            "rank {rank}: {wrong} of {} elements wrong",
            v.len()
        )));
    }
    // A neighbour exchange: send to the next rank, receive from the previous one.
    let mut got = vec![0u32; 1 << 20];
    let mine = vec![rank as u32; 1 << 20];
    pg.sendrecv(&mine, (rank + 1) % n, &mut got, (rank + n - 1) % n, 7)?;
    let prev = ((rank + n - 1) % n) as u32;
    if let Some(bad) = got.iter().position(|&x| x != prev) {
        return Err(tutti::Error::InvalidArgument(format!(
            "rank {rank}: element {bad} from rank {prev} is {}",
            got[bad]
        )));
    }
    println!(
        "rank {rank}/{n}: all_reduce of {} floats checked, neighbour exchange of 4 MiB done",
        v.len()
    );
    Ok(())
}
