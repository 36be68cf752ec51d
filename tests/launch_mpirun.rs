//! Under Open MPI's `mpirun` on one host, with no variable of tutti's or torchrun's:
//! `mpirun -np 4 tutti-bench all_reduce`, and a Rust program that joins
//! `ProcessGroup::from_env` and checks an all_reduce element by element.
//!
//! Without Open MPI's mpirun they print `SKIPPED`, and fail instead with
//! TUTTI_REQUIRE_MPIRUN=1. Running as root needs Open MPI's own consent variables
//! (`OMPI_ALLOW_RUN_AS_ROOT*`); four ranks on fewer cores need oversubscription
//! (`OMPI_MCA_rmaps_base_oversubscribe`): both are Open MPI settings, not tutti's.

mod launch_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use launch_common::{TUTTI, TempDir};

const REQUIRE_ENV: &str = "TUTTI_REQUIRE_MPIRUN";
const WORKER_ENV: &str = "TUTTI_MPIRUN_TEST_WORKER";

/// Variables a launcher (or this test's own environment) could have left behind;
/// mpirun's ranks must find their place from Open MPI's variables alone.
const FOREIGN_VARS: &[&str] = &[
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "TUTTI_JOB_TOKEN",
    "TORCHELASTIC_USE_AGENT_STORE",
    "SLURM_PROCID",
];

fn skip_or_fail(test: &str, why: &str) {
    if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
        panic!("{test}: {REQUIRE_ENV}=1 but {why}");
    }
    println!("SKIPPED: {test}: {why}");
}

/// Open MPI's mpirun: `mpirun.openmpi` (Debian's name when several MPIs are
/// installed), else an `mpirun` that says it is Open MPI.
fn openmpi_mpirun() -> Result<String, String> {
    for name in ["mpirun.openmpi", "mpirun"] {
        if let Ok(out) = Command::new(name).arg("--version").output()
            && String::from_utf8_lossy(&out.stdout).contains("Open MPI")
        {
            return Ok(name.to_string());
        }
    }
    Err("Open MPI's mpirun is not installed (scripts/setup installs openmpi-bin)".into())
}

/// `mpirun -np N PROGRAM ARGS` with Open MPI's root and oversubscription consent.
fn mpirun(mpirun: &str, np: usize, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(mpirun);
    cmd.arg("-np")
        .arg(np.to_string())
        .arg(program)
        .args(args)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1");
    for v in FOREIGN_VARS {
        cmd.env_remove(v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn mpirun_runs_tutti_bench_with_four_ranks() {
    let test = "mpirun_runs_tutti_bench_with_four_ranks";
    let mpi = match openmpi_mpirun() {
        Ok(m) => m,
        Err(why) => return skip_or_fail(test, &why),
    };
    let bench: PathBuf = Path::new(TUTTI).with_file_name("tutti-bench");
    if !bench.is_file() {
        return skip_or_fail(
            test,
            &format!(
                "{} is not built (cargo test --workspace builds it)",
                bench.display()
            ),
        );
    }
    let out = mpirun(
        &mpi,
        4,
        &bench,
        &["all_reduce", "-b", "8", "-e", "256K", "-f", "8", "-c", "1"],
        &[],
    );
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for r in 0..4 {
        assert!(
            stdout.contains(&format!("Rank {r:>2} Group")),
            "rank {r}: {all}"
        );
    }
    assert!(stdout.contains("# Out of bounds values : 0 OK"), "{all}");
    // Every data row (8 B .. 256 KiB, x8) has 0 wrong elements out of and in place.
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    assert_eq!(rows.len(), 6, "{all}");
    for row in rows {
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols.len(), 13, "{row}");
        assert_eq!((cols[8], cols[12]), ("0", "0"), "wrong elements: {row}");
    }
}

/// Child entry point: a rank started by mpirun (does nothing otherwise).
#[test]
fn mpirun_worker() {
    if std::env::var_os(WORKER_ENV).is_none() {
        return;
    }
    let env = tutti::group::JobEnv::from_env().unwrap();
    assert_eq!(env.source, "openmpi");
    assert_eq!(env.master_addr, "127.0.0.1");
    let pg = tutti::ProcessGroup::from_env(tutti::GroupOptions::default()).unwrap();
    let (rank, world) = (pg.rank(), pg.size());
    assert_eq!((rank, world), (env.rank, env.world_size));
    let n = 100_003;
    let mut buf: Vec<f64> = (0..n).map(|i| (rank * 1000 + i) as f64).collect();
    pg.all_reduce(&mut buf, tutti::ReduceOp::Sum).unwrap();
    let base = (1000 * world * (world - 1) / 2) as f64;
    for (i, v) in buf.iter().enumerate() {
        assert_eq!(*v, base + (i * world) as f64, "element {i}");
    }
    let out = PathBuf::from(std::env::var("OUT").unwrap());
    std::fs::write(
        out.join(format!("mpi_rank{rank}")),
        format!(
            "world={world} local={}/{} port={}",
            env.local_rank, env.local_world_size, env.master_port
        ),
    )
    .unwrap();
}

#[test]
fn mpirun_runs_a_process_group_from_env() {
    let test = "mpirun_runs_a_process_group_from_env";
    let mpi = match openmpi_mpirun() {
        Ok(m) => m,
        Err(why) => return skip_or_fail(test, &why),
    };
    let dir = TempDir::new("mpirun-pg");
    let exe = std::env::current_exe().unwrap();
    let out_dir = dir.path().display().to_string();
    let out = mpirun(
        &mpi,
        4,
        &exe,
        &[
            "mpirun_worker",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ],
        &[(WORKER_ENV, "1"), ("OUT", &out_dir)],
    );
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    let lines: Vec<String> = (0..4).map(|r| dir.read(&format!("mpi_rank{r}"))).collect();
    for (r, line) in lines.iter().enumerate() {
        assert!(
            line.starts_with(&format!("world=4 local={r}/4 port=")),
            "{line}"
        );
    }
    // Every rank derived the same port from Open MPI's job id.
    let ports: Vec<&str> = lines
        .iter()
        .map(|l| l.rsplit('=').next().unwrap())
        .collect();
    assert!(ports.iter().all(|p| *p == ports[0]), "{ports:?}");
    let port: u16 = ports[0].parse().unwrap();
    assert!(
        (20000..30000).contains(&port),
        "derived from the job id: {port}"
    );
}
