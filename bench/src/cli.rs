//! The command line of `tutti-bench` (and `tutti bench`): nccl-tests' flags plus
//! tutti's (`--nranks`, `--transport`, `--algo`) and the output options.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use tutti::{DataType, ReduceOp};

use crate::collectives::Collective;
use crate::sizes::parse_size;

/// Which collective(s) to benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CollectiveArg {
    /// all_reduce (nccl-tests: all_reduce_perf)
    #[value(name = "all_reduce", alias = "allreduce", alias = "all-reduce")]
    AllReduce,
    /// all_gather
    #[value(name = "all_gather", alias = "allgather", alias = "all-gather")]
    AllGather,
    /// reduce_scatter
    #[value(
        name = "reduce_scatter",
        alias = "reducescatter",
        alias = "reduce-scatter"
    )]
    ReduceScatter,
    /// broadcast (root -r)
    #[value(name = "broadcast")]
    Broadcast,
    /// reduce (root -r)
    #[value(name = "reduce")]
    Reduce,
    /// all_to_all
    #[value(name = "all_to_all", alias = "alltoall", alias = "all-to-all")]
    AllToAll,
    /// send_recv: rank r sends to r+1 and receives from r-1
    #[value(name = "send_recv", alias = "sendrecv", alias = "send-recv")]
    SendRecv,
    /// every collective above, in turn
    #[value(name = "all")]
    All,
}

impl CollectiveArg {
    /// The collectives this argument selects.
    pub fn collectives(self) -> Vec<Collective> {
        match self {
            CollectiveArg::AllReduce => vec![Collective::AllReduce],
            CollectiveArg::AllGather => vec![Collective::AllGather],
            CollectiveArg::ReduceScatter => vec![Collective::ReduceScatter],
            CollectiveArg::Broadcast => vec![Collective::Broadcast],
            CollectiveArg::Reduce => vec![Collective::Reduce],
            CollectiveArg::AllToAll => vec![Collective::AllToAll],
            CollectiveArg::SendRecv => vec![Collective::SendRecv],
            CollectiveArg::All => Collective::ALL.to_vec(),
        }
    }
}

fn size_arg(s: &str) -> Result<u64, String> {
    parse_size(s).map(|n| n as u64)
}

fn op_arg(s: &str) -> Result<ReduceOp, String> {
    s.parse::<ReduceOp>().map_err(|e| e.to_string())
}

fn dtype_arg(s: &str) -> Result<DataType, String> {
    s.parse::<DataType>().map_err(|e| e.to_string())
}

/// tutti-bench: nccl-tests-compatible collective benchmarks.
///
/// Prints nccl-tests' table: per size, the time per operation, the algorithm
/// bandwidth (size / time) and the bus bandwidth (algbw times the collective's
/// factor: all_reduce 2(n-1)/n; all_gather, reduce_scatter, all_to_all (n-1)/n;
/// broadcast, reduce, send_recv 1), out of place and in place, and the number of
/// wrong elements found by -c (every element is compared with a reference).
#[derive(Parser, Debug, Clone)]
#[command(
    name = "tutti-bench",
    version,
    after_help = "Ranks: with --nranks N, tutti-bench starts N local ranks (processes). Without it, it runs as one rank of the job described by the environment (under `tutti run`, torchrun, Slurm or mpirun); with neither, it starts 2 local ranks.\n\nExamples:\n  tutti-bench all_reduce --nranks 2 -b 8 -e 64M\n  tutti-bench all --nranks 4 -b 1K -e 16M --transport tcp --json run.json\n  tutti-bench all_reduce --nranks 2 -b 8 -e 64M --compare run.json --plot busbw.svg\n  tutti run --nproc-per-node 4 -- tutti-bench all_gather -b 1M -e 1G -d bfloat16"
)]
pub struct Cli {
    /// The collective to benchmark, or `all`.
    #[arg(value_enum)]
    pub collective: CollectiveArg,

    /// Smallest size in bytes (8, 64K, 1M, 1G).
    #[arg(short = 'b', long = "minbytes", value_parser = size_arg, default_value = "32M")]
    pub minbytes: u64,

    /// Largest size in bytes.
    #[arg(short = 'e', long = "maxbytes", value_parser = size_arg, default_value = "32M")]
    pub maxbytes: u64,

    /// Multiply the size by this factor at each step [default: 2, or step by -i
    /// when -i is given and -f is not; -f 1 steps by -i].
    #[arg(short = 'f', long = "stepfactor")]
    pub stepfactor: Option<u64>,

    /// Add this many bytes at each step (with -f 1 or without -f) [default: 1M].
    #[arg(short = 'i', long = "stepbytes", value_parser = size_arg)]
    pub stepbytes: Option<u64>,

    /// Timed iterations per size.
    #[arg(short = 'n', long = "iters", default_value_t = 20)]
    pub iters: u32,

    /// Warm-up iterations (at the largest and the smallest size; then the smallest
    /// size runs on until 200 ms of warm-up have passed; 0: no warm-up).
    #[arg(
        short = 'w',
        long = "warmup_iters",
        alias = "warmup-iters",
        default_value_t = 5
    )]
    pub warmup_iters: u32,

    /// Check results: 0 (off) or the number of checked runs per size; checking
    /// compares every element with a reference. `-c` alone means 1.
    #[arg(short = 'c', long = "check", default_value_t = 1, num_args = 0..=1, default_missing_value = "1")]
    pub check: u32,

    /// Reduction: sum, prod, min, max, avg, mulsum:SCALAR (premulsum), band, bor, bxor.
    #[arg(short = 'o', long = "op", value_parser = op_arg, default_value = "sum")]
    pub op: ReduceOp,

    /// Data type: int8 uint8 int32 uint32 int64 uint64 half float double bfloat16
    /// f8e4m3 f8e5m2 c64 c128 (torch names also work: float32, bfloat16, ...).
    #[arg(short = 'd', long = "datatype", value_parser = dtype_arg, default_value = "float")]
    pub datatype: DataType,

    /// Root rank of broadcast and reduce.
    #[arg(short = 'r', long = "root", default_value_t = 0)]
    pub root: usize,

    /// 1: barrier after each operation (nccl-tests' blocking mode). `-z` alone means 1.
    #[arg(short = 'z', long = "blocking", default_value_t = 0, num_args = 0..=1, default_missing_value = "1")]
    pub blocking: u32,

    /// Buffer registration (nccl-tests' `-R`): 0 ordinary memory; 1 or 2 the send,
    /// receive and scratch buffers in memory every rank of the host maps
    /// (`ProcessGroup::alloc_shared`, NCCL's symmetric registration), so that the
    /// ranks read each other's data where it lies.
    #[arg(short = 'R', long = "local_register", alias = "register", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=2))]
    pub register: u32,

    /// Time reported across ranks: 0 rank 0's, 1 the mean, 2 the minimum, 3 the maximum.
    #[arg(short = 'a', long = "average", default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=3))]
    pub average: u32,

    /// Start N local ranks (processes) and benchmark them.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub nranks: Option<u32>,

    /// Transport between ranks [default: TUTTI_TRANSPORT, else auto: shared memory
    /// on one host, RDMA or TCP across hosts].
    #[arg(long, value_parser = ["auto", "shm", "tcp", "rdma"])]
    pub transport: Option<String>,

    /// Algorithm [default: TUTTI_ALGO, else the tuner's choice]; `hier` runs inside
    /// each host on the window and between one leader per host over the links.
    #[arg(long, value_parser = ["ring", "tree", "hier"])]
    pub algo: Option<String>,

    /// Where the buffers live: `cpu` (host memory) or `cuda` (GPU memory; each rank
    /// takes a GPU round-robin over the visible ones, or see --ranks-per-gpu).
    #[arg(long, value_parser = ["cpu", "cuda"], default_value = "cpu")]
    pub device: String,

    /// With --device cuda: this many consecutive local ranks share each GPU (4 ranks
    /// with --ranks-per-gpu 4 all run on GPU 0).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub ranks_per_gpu: Option<u32>,

    /// Write the results as JSON to FILE (`-` or no FILE: to stdout, instead of the table).
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "-")]
    pub json: Option<PathBuf>,

    /// Write the results as CSV to FILE (`-` or no FILE: to stdout, instead of the table).
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "-")]
    pub csv: Option<PathBuf>,

    /// Draw busbw against size into an SVG file (one line per run, saved runs of
    /// --compare included).
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,

    /// Print the ratio of this run's busbw to a saved --json report's, per size
    /// (repeatable).
    #[arg(long, value_name = "FILE.json")]
    pub compare: Vec<PathBuf>,

    /// Name of this run in JSON, CSV and plots [default: "TRANSPORT N ranks"].
    #[arg(long)]
    pub label: Option<String>,

    /// Never draw the progress bar (it is drawn on stderr only when it is a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

/// How sizes step from -b to -e.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Multiply by the factor.
    Factor(u64),
    /// Add this many bytes.
    Bytes(u64),
}

/// Most sizes one run may have (a guard against `-i 1 -e 1G`).
pub const MAX_SIZES: usize = 10_000;

impl Cli {
    /// The size step, from -f and -i (see their help).
    pub fn step(&self) -> Step {
        match (self.stepfactor, self.stepbytes) {
            (Some(f), _) if f > 1 => Step::Factor(f),
            (Some(_), b) | (None, b @ Some(_)) => Step::Bytes(b.unwrap_or(1 << 20)),
            (None, None) => Step::Factor(2),
        }
    }

    /// The sizes, from -b to -e (inclusive) by the step.
    pub fn sizes(&self) -> Vec<u64> {
        let mut v = Vec::new();
        let mut s = self.minbytes;
        while s <= self.maxbytes && v.len() < MAX_SIZES {
            v.push(s);
            let next = match self.step() {
                Step::Factor(f) => s.checked_mul(f),
                Step::Bytes(b) => s.checked_add(b),
            };
            match next {
                Some(n) if n > s => s = n,
                _ => break,
            }
        }
        v
    }

    /// Checks what can be checked before any rank starts; the message says what is
    /// wrong (exit code 2).
    pub fn validate(&self) -> Result<(), String> {
        if self.minbytes > self.maxbytes {
            return Err(format!(
                "-b/--minbytes ({}) is larger than -e/--maxbytes ({})",
                self.minbytes, self.maxbytes
            ));
        }
        if let Step::Factor(_) = self.step()
            && self.minbytes == 0
        {
            return Err("-b/--minbytes must be at least 1 when sizes grow by a factor (-f)".into());
        }
        if let Step::Bytes(0) = self.step() {
            return Err("-i/--stepbytes must be at least 1".into());
        }
        if self.iters == 0 {
            return Err("-n/--iters must be at least 1".into());
        }
        let n = self.sizes().len();
        if n >= MAX_SIZES {
            return Err(format!(
                "-b/-e/-f/-i give more than {MAX_SIZES} sizes; use a larger step"
            ));
        }
        let colls = self.collective.collectives();
        if colls.iter().any(|c| c.reduces()) {
            self.op.check(self.datatype).map_err(|e| {
                format!(
                    "-o {} with -d {}: {e}",
                    crate::data::op_name(self.op),
                    crate::data::type_name(self.datatype)
                )
            })?;
        }
        if let Some(n) = self.nranks
            && colls.iter().any(|c| c.rooted())
            && self.root >= n as usize
        {
            return Err(format!(
                "-r/--root {} is not a rank of {n} (ranks are 0..{})",
                self.root,
                n - 1
            ));
        }
        if self.device != "cuda" && self.ranks_per_gpu.is_some() {
            return Err("--ranks-per-gpu needs --device cuda".into());
        }
        if self.device == "cuda" && colls.contains(&Collective::SendRecv) {
            return Err("send_recv has no device path yet: use --device cpu for it".into());
        }
        let to_stdout = |p: &Option<PathBuf>| p.as_ref().is_some_and(|p| p.as_os_str() == "-");
        if to_stdout(&self.json) && to_stdout(&self.csv) {
            return Err("--json and --csv cannot both go to stdout; give one a FILE".into());
        }
        Ok(())
    }

    /// nccl-tests' `step:` text in the header (`2(factor)`, `1048576(bytes)`).
    pub fn step_text(&self) -> String {
        match self.step() {
            Step::Factor(f) => format!("{f}(factor)"),
            Step::Bytes(b) => format!("{b}(bytes)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("tutti-bench").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn sizes_and_steps() {
        let c = cli(&["all_reduce", "-b", "8", "-e", "64"]);
        assert_eq!(c.sizes(), vec![8, 16, 32, 64]);
        let c = cli(&["all_reduce", "-b", "1K", "-e", "4K", "-f", "1", "-i", "1K"]);
        assert_eq!(c.sizes(), vec![1024, 2048, 3072, 4096]);
        let c = cli(&["all_reduce", "-b", "1K", "-e", "2K", "-i", "512"]);
        assert_eq!(c.sizes(), vec![1024, 1536, 2048]);
        let c = cli(&["all_reduce", "-b", "8", "-e", "100", "-f", "4"]);
        assert_eq!(c.sizes(), vec![8, 32]);
        assert_eq!(cli(&["all_reduce"]).sizes(), vec![32 << 20]);
    }

    #[test]
    fn flags_like_nccl_tests() {
        let c = cli(&[
            "reduce", "-c", "0", "-o", "max", "-d", "half", "-r", "1", "-z", "-n", "3", "-w", "0",
        ]);
        assert_eq!((c.check, c.blocking, c.root, c.iters), (0, 1, 1, 3));
        assert_eq!(c.op, ReduceOp::Max);
        assert_eq!(c.datatype, DataType::F16);
        let c = cli(&["all_reduce", "-c", "--json"]);
        assert_eq!(c.check, 1);
        assert_eq!(c.json, Some(PathBuf::from("-")));
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(Cli::try_parse_from(["tutti-bench", "all_reduce", "-b", "12Q"]).is_err());
        assert!(Cli::try_parse_from(["tutti-bench", "nope"]).is_err());
        assert!(
            cli(&["all_reduce", "-b", "1M", "-e", "1K"])
                .validate()
                .is_err()
        );
        assert!(
            cli(&["all_reduce", "-o", "band", "-d", "float"])
                .validate()
                .is_err()
        );
        assert!(
            cli(&["broadcast", "--nranks", "2", "-r", "2"])
                .validate()
                .is_err()
        );
        assert!(cli(&["all_reduce", "-b", "0"]).validate().is_err());
        assert!(
            cli(&["all_reduce", "--ranks-per-gpu", "2"])
                .validate()
                .is_err()
        );
        assert!(cli(&["send_recv", "--device", "cuda"]).validate().is_err());
        assert!(
            cli(&["all_reduce", "--device", "cuda", "--ranks-per-gpu", "4"])
                .validate()
                .is_ok()
        );
        assert!(
            cli(&["all_gather", "-o", "band", "-d", "float"])
                .validate()
                .is_ok()
        );
    }
}
