//! `tutti-bench`: nccl-tests-compatible benchmarks of tutti's collectives.
//!
//! ```text
//! tutti-bench all_reduce --nranks 2 -b 8 -e 64M [-f 2] [-c 1] [-d float] [-o sum]
//! tutti-bench all --nranks 4 --transport tcp --json run.json --plot busbw.svg
//! ```
//!
//! See `tutti-bench --help` and the `tutti_bench::runner` docs.

fn main() -> std::process::ExitCode {
    tutti_bench::runner::main()
}
