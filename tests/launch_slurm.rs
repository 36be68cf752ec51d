//! Slurm's variables, as `srun` sets them, fed to `ProcessGroup::from_env` (four
//! real ranks, an all_reduce) and to `tutti run` (two launchers as the step's two
//! nodes), with hostlists (`node[01-04,07]`) and tasks-per-node forms (`2(x3),1`);
//! wrong or partial variables give errors that name the variable. (No Slurm runs
//! here: the variables are what a real `srun` exports.)

mod launch_common;

use std::process::{Command, Stdio};
use std::time::Duration;

use launch_common::{Launch, TUTTI, TempDir, free_port, self_worker};
use tutti::launch::slurm::{expand_hostlist, job_port, parse_tasks_per_node};

/// The variables a child must not inherit: it sees only those a test gives it.
const SCHEDULER_VARS: &[&str] = &[
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "TUTTI_JOB_TOKEN",
    "TORCHELASTIC_USE_AGENT_STORE",
    "SLURM_PROCID",
    "SLURM_NTASKS",
    "SLURM_LOCALID",
    "SLURM_NODEID",
    "SLURM_STEP_ID",
    "SLURM_JOB_ID",
    "SLURM_NTASKS_PER_NODE",
    "SLURM_TASKS_PER_NODE",
    "SLURM_STEP_TASKS_PER_NODE",
    "SLURM_STEP_NODELIST",
    "SLURM_JOB_NODELIST",
    "OMPI_COMM_WORLD_RANK",
    "OMPI_COMM_WORLD_SIZE",
    "OMPI_COMM_WORLD_LOCAL_RANK",
    "OMPI_COMM_WORLD_LOCAL_SIZE",
    "OMPI_MCA_ess_base_jobid",
];

const CHILD_ENV: &str = "TUTTI_SLURM_TEST_CHILD";

fn command(program: &str, env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(program);
    for v in SCHEDULER_VARS {
        cmd.env_remove(v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn strings(v: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    v.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

/// Child-process entry points: `jobenv` prints `JobEnv::from_env()`; `pg` joins
/// `ProcessGroup::from_env` and checks an all_reduce.
#[test]
fn slurm_child() {
    let Ok(scenario) = std::env::var(CHILD_ENV) else {
        return;
    };
    match scenario.as_str() {
        "jobenv" => match tutti::group::JobEnv::from_env() {
            Ok(e) => println!(
                "JOBENV rank={} world={} local={}/{} master={}:{} source={}",
                e.rank,
                e.world_size,
                e.local_rank,
                e.local_world_size,
                e.master_addr,
                e.master_port,
                e.source
            ),
            Err(e) => println!("JOBENV error: {e}"),
        },
        "pg" => {
            let pg = tutti::ProcessGroup::from_env(tutti::GroupOptions::default()).unwrap();
            let (rank, world) = (pg.rank(), pg.size());
            let mut buf: Vec<i64> = (0..10_000).map(|i| i * (rank as i64 + 1)).collect();
            pg.all_reduce(&mut buf, tutti::ReduceOp::Sum).unwrap();
            let factor = (world * (world + 1) / 2) as i64;
            for (i, v) in buf.iter().enumerate() {
                assert_eq!(*v, i as i64 * factor, "element {i}");
            }
            println!("PG rank={rank} world={world} ok");
        }
        other => panic!("unknown scenario {other}"),
    }
}

/// What `JobEnv::from_env` says in a child with `env`.
fn job_env(env: &[(&'static str, &str)]) -> String {
    let exe = std::env::current_exe().unwrap();
    let mut env = strings(env);
    env.push((CHILD_ENV, "jobenv".into()));
    let out = command(exe.to_str().unwrap(), &env)
        .args(["slurm_child", "--exact", "--nocapture", "--test-threads=1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.split_once("JOBENV ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no JOBENV line: {stdout}"))
        .to_string()
}

#[test]
fn hostlists_and_tasks_per_node_forms() {
    assert_eq!(
        expand_hostlist("node[01-04,07]").unwrap(),
        ["node01", "node02", "node03", "node04", "node07"]
    );
    assert_eq!(
        expand_hostlist("login,gpu[8-10]-ib").unwrap(),
        ["login", "gpu8-ib", "gpu9-ib", "gpu10-ib"]
    );
    assert_eq!(parse_tasks_per_node("2(x3)").unwrap(), [2, 2, 2]);
    assert_eq!(parse_tasks_per_node("2(x3),1").unwrap(), [2, 2, 2, 1]);
    assert_eq!(job_port(4242), 24242);
}

#[test]
fn job_env_reads_slurm_variables() {
    // Task 5 of 8 on the third of five nodes (2 tasks on each of the first three).
    assert_eq!(
        job_env(&[
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "8"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_NODEID", "2"),
            ("SLURM_STEP_TASKS_PER_NODE", "2(x3),1(x2)"),
            ("SLURM_STEP_NODELIST", "node[01-04,07]"),
            ("SLURM_JOB_ID", "4242"),
        ]),
        "rank=5 world=8 local=1/2 master=node01:24242 source=slurm"
    );
    // The batch-step forms: SLURM_NTASKS_PER_NODE and the job's nodelist.
    assert_eq!(
        job_env(&[
            ("SLURM_PROCID", "3"),
            ("SLURM_NTASKS", "4"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_NODEID", "1"),
            ("SLURM_NTASKS_PER_NODE", "2"),
            ("SLURM_JOB_NODELIST", "gpu[1-2]"),
        ]),
        "rank=3 world=4 local=1/2 master=gpu1:29500 source=slurm"
    );
    // MASTER_ADDR and MASTER_PORT win; torchrun's variables win over Slurm's.
    let step = [
        ("SLURM_PROCID", "0"),
        ("SLURM_NTASKS", "2"),
        ("SLURM_LOCALID", "0"),
        ("SLURM_STEP_TASKS_PER_NODE", "2"),
        ("SLURM_STEP_NODELIST", "node7"),
        ("SLURM_JOB_ID", "1"),
    ];
    let mut with_master = step.to_vec();
    with_master.extend([("MASTER_ADDR", "head"), ("MASTER_PORT", "1234")]);
    assert_eq!(
        job_env(&with_master),
        "rank=0 world=2 local=0/2 master=head:1234 source=slurm"
    );
    let mut with_torchrun = step.to_vec();
    with_torchrun.extend([("RANK", "1"), ("WORLD_SIZE", "3")]);
    assert_eq!(
        job_env(&with_torchrun),
        "rank=1 world=3 local=1/3 master=127.0.0.1:29500 source=torchrun"
    );
    // Open MPI on one host: loopback, a port from the job id.
    assert_eq!(
        job_env(&[
            ("OMPI_COMM_WORLD_RANK", "2"),
            ("OMPI_COMM_WORLD_SIZE", "4"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "2"),
            ("OMPI_COMM_WORLD_LOCAL_SIZE", "4"),
            ("OMPI_MCA_ess_base_jobid", "993001473"),
        ]),
        "rank=2 world=4 local=2/4 master=127.0.0.1:21473 source=openmpi"
    );
}

#[test]
fn wrong_or_partial_variables_name_the_variable() {
    let base = [
        ("SLURM_PROCID", "1"),
        ("SLURM_NTASKS", "4"),
        ("SLURM_LOCALID", "1"),
        ("SLURM_NODEID", "0"),
        ("SLURM_STEP_TASKS_PER_NODE", "2(x2)"),
        ("SLURM_STEP_NODELIST", "node[1-2]"),
    ];
    let with = |changes: &[(&'static str, &'static str)]| {
        let mut env: Vec<(&'static str, &str)> = base
            .iter()
            .filter(|(k, _)| !changes.iter().any(|(c, _)| c == k))
            .copied()
            .collect();
        env.extend(changes.iter().filter(|(_, v)| !v.is_empty()).copied());
        job_env(&env)
    };
    assert_eq!(
        with(&[]),
        "rank=1 world=4 local=1/2 master=node1:29500 source=slurm"
    );
    // (variables changed, "" meaning removed; what the error must say)
    type Case<'a> = (&'a [(&'static str, &'static str)], &'a [&'a str]);
    let cases: &[Case<'_>] = &[
        (&[("SLURM_NTASKS", "")], &["SLURM_NTASKS", "is not set"]),
        (&[("SLURM_LOCALID", "")], &["SLURM_LOCALID", "is not set"]),
        (&[("SLURM_NTASKS", "four")], &["SLURM_NTASKS", "\"four\""]),
        (
            &[("SLURM_PROCID", "9")],
            &["SLURM_PROCID", "9 is not below"],
        ),
        (
            &[("SLURM_STEP_NODELIST", "node[01-")],
            &["SLURM_STEP_NODELIST", "unclosed '['"],
        ),
        (
            &[("SLURM_STEP_NODELIST", "node[1-3]")],
            &["SLURM_STEP_NODELIST", "names 3 hosts", "2 nodes"],
        ),
        (
            &[("SLURM_STEP_TASKS_PER_NODE", "2(x")],
            &["SLURM_STEP_TASKS_PER_NODE", "not N or N(xM)"],
        ),
        (
            &[("SLURM_STEP_TASKS_PER_NODE", "3(x2)")],
            &["SLURM_STEP_TASKS_PER_NODE", "adds up to 6 tasks"],
        ),
        (
            &[("SLURM_NODEID", "2")],
            &["SLURM_NODEID", "2 is not below"],
        ),
        (&[("SLURM_NODEID", "")], &["SLURM_NODEID", "is not set"]),
        (
            &[("SLURM_LOCALID", "2")],
            &["SLURM_LOCALID", "2 is not below the 2 tasks"],
        ),
        (
            &[("SLURM_STEP_TASKS_PER_NODE", ""), ("SLURM_NODEID", "")],
            &["SLURM_NTASKS_PER_NODE", "is not set"],
        ),
        (
            &[("MASTER_PORT", "http")],
            &["MASTER_PORT", "not a port number"],
        ),
    ];
    for (changes, needles) in cases {
        let got = with(changes);
        assert!(got.starts_with("error: "), "{changes:?}: {got}");
        for n in *needles {
            assert!(got.contains(n), "{changes:?}: {got:?} lacks {n:?}");
        }
    }
    // Open MPI: partial variables, and a job across hosts without MASTER_ADDR.
    let got = job_env(&[("OMPI_COMM_WORLD_RANK", "0")]);
    assert!(got.contains("OMPI_COMM_WORLD_SIZE is not"), "{got}");
    let got = job_env(&[
        ("OMPI_COMM_WORLD_RANK", "0"),
        ("OMPI_COMM_WORLD_SIZE", "4"),
        ("OMPI_COMM_WORLD_LOCAL_RANK", "0"),
        ("OMPI_COMM_WORLD_LOCAL_SIZE", "2"),
    ]);
    assert!(
        got.contains("MASTER_ADDR is not set") && got.contains("spans hosts"),
        "{got}"
    );
}

/// A port in 20000..30000 that is free now, and the Slurm job id that maps to it.
fn free_job_id() -> (u16, u64) {
    for id in (std::process::id() as u64 % 10000..)
        .chain(0..10000)
        .take(10000)
    {
        let port = job_port(id);
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return (port, id);
        }
    }
    panic!("no free port in 20000..30000");
}

#[test]
fn process_group_from_env_under_slurm_variables() {
    // Four tasks, two per "node" (all on this host), rendezvous at the step's first
    // host on the port derived from the job id: no MASTER_* variable.
    let (_, job_id) = free_job_id();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|r| {
            let env = vec![
                (CHILD_ENV, "pg".to_string()),
                ("SLURM_PROCID", r.to_string()),
                ("SLURM_NTASKS", "4".into()),
                ("SLURM_LOCALID", (r % 2).to_string()),
                ("SLURM_NODEID", (r / 2).to_string()),
                ("SLURM_STEP_TASKS_PER_NODE", "2(x2)".into()),
                ("SLURM_STEP_NODELIST", "localhost,node[07]".into()),
                ("SLURM_JOB_ID", job_id.to_string()),
            ];
            command(exe.to_str().unwrap(), &env)
                .args(["slurm_child", "--exact", "--nocapture", "--test-threads=1"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (r, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains(&format!("PG rank={r} world=4 ok")),
            "task {r}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Child-process entry point of the launcher workers.
#[test]
fn launch_worker() {
    launch_common::worker_main();
}

/// The variables `srun --nodes 2 --ntasks-per-node 1` gives node `i`'s task.
fn srun_env(i: usize, nodelist: &str, tasks: &str, port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("SLURM_STEP_ID", "0".into()),
        ("SLURM_JOB_ID", "77".into()),
        ("SLURM_PROCID", i.to_string()),
        ("SLURM_NTASKS", "2".into()),
        ("SLURM_LOCALID", "0".into()),
        ("SLURM_NODEID", i.to_string()),
        ("SLURM_STEP_TASKS_PER_NODE", tasks.into()),
        ("SLURM_STEP_NODELIST", nodelist.into()),
        ("MASTER_PORT", port.to_string()),
    ]
}

#[test]
fn tutti_run_takes_nodes_and_ranks_from_srun() {
    let dir = TempDir::new("slurm-run");
    let port = free_port();
    let (program, worker) = self_worker("allreduce");
    let mut launches: Vec<Launch> = (0..2)
        .map(|i| {
            let mut env = srun_env(i, "localhost,node[07]", "1(x2)", port);
            env.push((worker.0, worker.1.clone()));
            let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, v.clone())).collect();
            Launch::start(
                dir.path(),
                &format!("node{i}"),
                &["--nproc-per-node".into(), "2".into()],
                &program,
                &env,
            )
        })
        .collect();
    for l in &mut launches {
        l.expect_success(Duration::from_secs(60));
    }
    for rank in 0..4 {
        assert_eq!(
            dir.read(&format!("w4_rank{rank}")),
            "world=4 sum=6 restart=0",
            "rank {rank}"
        );
    }
    let log = launches[0].stderr();
    assert!(
        log.contains("defaults from the Slurm step") && log.contains("slurm-77"),
        "{log}"
    );
}

#[test]
fn tutti_run_refuses_wrong_slurm_variables() {
    let run = |env: Vec<(&'static str, String)>| {
        let out = command(TUTTI, &env)
            .args(["run", "--", "true"])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(srun_env(0, "node[01-", "1(x2)", 1));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("SLURM_STEP_NODELIST") && err.contains("unclosed '['"),
        "{err}"
    );
    let (code, err) = run(srun_env(0, "node1", "2", 1));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("SLURM_STEP_TASKS_PER_NODE") && err.contains("--ntasks-per-node=1"),
        "{err}"
    );
    let mut env = srun_env(0, "node[1-2]", "1(x2)", 1);
    env.retain(|(k, _)| *k != "SLURM_NTASKS");
    let (code, err) = run(env);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("SLURM_NTASKS: is not set"), "{err}");
}
