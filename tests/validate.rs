//! `tutti validate` end to end: the `tutti` binary runs as real rank processes
//! (local ranks with `--nranks`, or one process per rank with torchrun's variables,
//! some in network namespaces), and each failure it must catch is caused for real:
//! a rank whose sends are corrupted (`TUTTI_FAULTS` on that rank only, over
//! shared-memory links with checksums off), a link rate-limited with `tc tbf`
//! between two of four namespaces joined by a full mesh of veth pairs, thresholds
//! this machine cannot meet, and a missing GPU with and without `--require gpu`.

mod netns;
mod ranks;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use netns::Mesh;
use ranks::{free_port, serial, wait_all};
use serde_json::Value;

fn tutti() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tutti"))
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tutti-validate-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn text(o: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `tutti validate ARGS` with `env`, as one command (local ranks or none).
fn validate(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = tutti();
    cmd.arg("validate")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for v in [
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "LOCAL_WORLD_SIZE",
        "MASTER_ADDR",
        "MASTER_PORT",
    ] {
        cmd.env_remove(v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    wait_all(vec![cmd.spawn().unwrap()], Duration::from_secs(150)).remove(0)
}

/// `n` processes of `tutti validate ARGS`, one per rank, with torchrun's variables
/// and `env(rank)`; `prefix(rank)` runs before the binary (e.g. `ip netns exec`).
fn job(
    n: usize,
    args: &[&str],
    master: &str,
    env: &dyn Fn(usize) -> Vec<(String, String)>,
    prefix: &dyn Fn(usize) -> Vec<String>,
) -> Vec<Output> {
    let port = free_port().to_string();
    let children = (0..n)
        .map(|r| {
            let pre = prefix(r);
            let mut cmd = if pre.is_empty() {
                tutti()
            } else {
                let mut c = Command::new(&pre[0]);
                c.args(&pre[1..]).arg(env!("CARGO_BIN_EXE_tutti"));
                c
            };
            cmd.arg("validate")
                .args(args)
                .env("RANK", r.to_string())
                .env("WORLD_SIZE", n.to_string())
                .env("MASTER_ADDR", master)
                .env("MASTER_PORT", &port)
                .env(
                    "TUTTI_JOB_TOKEN",
                    format!("validate-test-{}", std::process::id()),
                )
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            for (k, v) in env(r) {
                cmd.env(k, v);
            }
            cmd.spawn().unwrap()
        })
        .collect();
    wait_all(children, Duration::from_secs(150))
}

fn read_json(path: &Path) -> Value {
    let s = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&s).unwrap()
}

fn check<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {report:#}"))
}

fn culprits(c: &Value) -> Vec<Value> {
    c["culprits"].as_array().unwrap().clone()
}

#[test]
fn level_two_passes_here_with_table_and_json() {
    let _g = serial();
    let dir = scratch("level2");
    let json = dir.join("report.json");
    // A looser relative rule than the default: this test checks the whole run and
    // its outputs on a shared 2-core machine, not how evenly its cores perform.
    let out = validate(
        &[
            "--level",
            "2",
            "--nranks",
            "4",
            "--relative",
            "0.5",
            "--json",
            json.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for want in [
        "CHECK",
        "STATUS",
        "memory.bandwidth",
        "shm.pairs",
        "collectives.all_reduce",
        "RESULT: PASS",
    ] {
        assert!(
            stdout.contains(want),
            "{want:?} missing from the table:\n{stdout}"
        );
    }
    let r = read_json(&json);
    assert_eq!(r["schema"], "tutti-validate/1");
    assert_eq!(r["status"], "pass");
    assert_eq!(r["exit_code"], 0);
    assert_eq!(r["world_size"], 4);
    assert_eq!(r["nodes"][0]["ranks"], serde_json::json!([0, 1, 2, 3]));
    assert!(r["nodes"][0]["inventory"]["cpus_online"].as_u64().unwrap() >= 1);
    for c in r["checks"].as_array().unwrap() {
        assert!(c["status"] == "pass" || c["status"] == "skip", "{c:#}");
        if c["status"] == "skip" {
            assert!(
                !c["reason"].as_str().unwrap_or("").is_empty(),
                "a skip without a reason: {c:#}"
            );
        }
    }
    // Six pairs among four ranks, each measured; every collective checked.
    let shm = check(&r, "shm.pairs");
    let pairs = shm["measurements"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["metric"] == "shm.pair_bandwidth_gbps")
        .count();
    assert_eq!(pairs, 6);
    for coll in [
        "all_reduce",
        "broadcast",
        "reduce",
        "all_gather",
        "reduce_scatter",
        "all_to_all",
        "gather",
        "scatter",
        "send_recv",
    ] {
        let c = check(&r, &format!("collectives.{coll}"));
        assert_eq!(c["status"], "pass", "{c:#}");
        assert_eq!(c["measurements"][0]["value"], 0.0);
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_rank_that_corrupts_its_data_is_named() {
    let _g = serial();
    let dir = scratch("corrupt");
    let json = dir.join("report.json");
    // Rank 2 flips a byte of each of its first 4000 messages over the links (a
    // link algorithm is forced so that collectives use them; shared-memory links
    // have no checksum unless asked, so the corruption is silent).
    let faults: Vec<String> = (1..=4000).map(|i| format!("corrupt:data:{i}")).collect();
    let faults = faults.join(",");
    let outs = job(
        4,
        &[
            "--level",
            "2",
            "--check",
            "collectives",
            "-q",
            "--json",
            json.to_str().unwrap(),
        ],
        "127.0.0.1",
        &|r| {
            let mut v = vec![
                ("TUTTI_ALGO".to_string(), "ring".to_string()),
                ("TUTTI_SHM_CHECKSUM".into(), "0".into()),
                ("LOCAL_RANK".into(), r.to_string()),
                ("LOCAL_WORLD_SIZE".into(), "4".into()),
            ];
            if r == 2 {
                v.push(("TUTTI_FAULTS".into(), faults.clone()));
            }
            v
        },
        &|_| Vec::new(),
    );
    for (r, o) in outs.iter().enumerate() {
        assert_eq!(o.status.code(), Some(1), "rank {r}: {}", text(o));
    }
    let stdout = String::from_utf8_lossy(&outs[0].stdout);
    assert!(
        stdout.contains("rank 2: the data it sent arrived wrong at ranks 0, 1 and 3"),
        "{stdout}"
    );
    let r = read_json(&json);
    assert_eq!(r["status"], "fail");
    // all_to_all blocks come straight from their source: rank 2's are wrong on
    // every other rank, nobody else's are.
    let a2a = check(&r, "collectives.all_to_all");
    assert_eq!(a2a["status"], "fail", "{a2a:#}");
    let named = culprits(a2a);
    assert!(!named.is_empty());
    for c in &named {
        assert_eq!(c["subject"]["kind"], "rank", "{c:#}");
        assert_eq!(c["subject"]["rank"], 2, "only rank 2 may be named: {c:#}");
    }
    // The reductions fail too and carry the same culprit.
    let ar = check(&r, "collectives.all_reduce");
    assert_eq!(ar["status"], "fail");
    assert!(
        culprits(ar).iter().any(|c| c["subject"]["rank"] == 2),
        "{ar:#}"
    );
    // send/recv takes the point-to-point rings, not the faulty links: clean.
    assert_eq!(check(&r, "collectives.send_recv")["status"], "pass");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn thresholds_this_machine_cannot_meet_fail_with_measured_and_required() {
    let _g = serial();
    let dir = scratch("thresholds");
    let file = dir.join("huge.toml");
    std::fs::write(
        &file,
        "format = \"tutti-validate-thresholds/1\"\nname = \"huge\"\n[min]\n\"memory.copy_gbps\" = 1000000\n\"host.cpus\" = 100000\n",
    )
    .unwrap();
    let json = dir.join("report.json");
    let out = validate(
        &[
            "--level",
            "2",
            "--nranks",
            "2",
            "--check",
            "memory,host.inventory",
            "--thresholds",
            file.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("is below the required 1000000 GB/s (thresholds huge)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("is below the required 100000 (thresholds huge)"),
        "{stdout}"
    );
    let r = read_json(&json);
    assert_eq!(r["thresholds"]["name"], "huge");
    let mem = check(&r, "memory.bandwidth");
    assert_eq!(mem["status"], "fail");
    let ms = mem["measurements"].as_array().unwrap();
    assert_eq!(ms.len(), 2);
    for m in ms {
        assert_eq!(m["min"], 1_000_000.0);
        let v = m["value"].as_f64().unwrap();
        assert!(v > 0.0 && v < 1_000_000.0, "{m:#}");
        assert_eq!(m["status"], "fail");
        assert!(
            m["note"]
                .as_str()
                .unwrap()
                .contains("GB/s is below the required"),
            "{m:#}"
        );
    }
    assert_eq!(culprits(mem).len(), 2, "both ranks are named: {mem:#}");

    // `--class none`: no shipped class, only the relative rule and built-in minimums.
    let out = validate(
        &[
            "--nranks",
            "1",
            "--check",
            "host.inventory",
            "--class",
            "none",
            "--json",
            json.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(read_json(&json)["thresholds"]["name"], "relative");

    // A file with a typo is an error (exit 2) naming the key, before any rank starts.
    std::fs::write(
        &file,
        "format = \"tutti-validate-thresholds/1\"\nname = \"x\"\n[min]\n\"memory.copy_gpbs\" = 1\n",
    )
    .unwrap();
    let out = validate(
        &["--nranks", "2", "--thresholds", file.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("\"memory.copy_gpbs\" is not a metric"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_missing_gpu_skips_with_the_reason_or_fails_when_required() {
    let _g = serial();
    let dir = scratch("gpu");
    let json = dir.join("report.json");
    let args = |req: bool| {
        let mut a = vec![
            "--level",
            "2",
            "--nranks",
            "1",
            "--check",
            "gpu",
            // No machine class: a shipped class (auto-selected from the GPU model)
            // describes a full 8-GPU node, and GPU test machines may have one GPU.
            "--class",
            "none",
            "--json",
            json.to_str().unwrap(),
        ];
        if req {
            a.extend(["--require", "gpu"]);
        }
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |req: bool| {
        let a = args(req);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let out = validate(&refs, &[]);
        (out.status.code(), read_json(&json), text(&out))
    };
    if tutti::gpu::device_count().is_ok() {
        // A GPU machine: the GPU checks run and pass (the device all_reduce skips
        // until the process group takes device buffers).
        let (code, r, out) = run(true);
        assert_eq!(code, Some(0), "{out}");
        for id in ["gpu.inventory", "gpu.copy", "gpu.kernels"] {
            assert_eq!(check(&r, id)["status"], "pass", "{out}");
        }
        return;
    }
    if std::env::var("TUTTI_REQUIRE_GPU").as_deref() == Ok("1") {
        panic!("TUTTI_REQUIRE_GPU=1 but this machine has no usable GPU");
    }
    let (code, r, out) = run(false);
    assert_eq!(code, Some(0), "{out}");
    for id in ["gpu.inventory", "gpu.copy", "gpu.p2p", "gpu.kernels"] {
        let c = check(&r, id);
        assert_eq!(c["status"], "skip", "{c:#}");
        assert!(
            c["reason"].as_str().unwrap().starts_with("no GPU: "),
            "{c:#}"
        );
    }
    assert!(out.contains("SKIPPED"), "{out}");
    let (code, r, out) = run(true);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(r["require"], serde_json::json!(["gpu"]));
    for id in ["gpu.inventory", "gpu.copy", "gpu.p2p", "gpu.kernels"] {
        let c = check(&r, id);
        assert_eq!(c["status"], "fail", "{c:#}");
        let why = c["culprits"][0]["reason"].as_str().unwrap();
        assert!(why.starts_with("--require gpu: no GPU: "), "{why}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_slow_link_between_two_of_four_nodes_is_named() {
    let _g = serial();
    let mesh = match Mesh::create(4) {
        Ok(m) => m,
        Err(reason) => {
            return netns::unavailable(format!("network namespaces unavailable: {reason}"));
        }
    };
    if let Err(reason) = mesh.limit(1, 3, "200mbit") {
        return netns::unavailable(reason);
    }
    let dir = scratch("links");
    let json = dir.join("report.json");
    // Each node gets its hostname (a UTS namespace) when util-linux's unshare is
    // there; the report names nodes by hostname.
    let unshare = Command::new("unshare")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let prefix = |r: usize| {
        let mut p: Vec<String> = ["ip", "netns", "exec", &mesh.ns[r]]
            .map(String::from)
            .to_vec();
        if unshare {
            // `sh -c 'hostname nodeR; exec "$0" "$@"' BINARY ARGS...`
            p.extend(["unshare", "--uts", "sh", "-c"].map(String::from));
            p.push(format!("hostname node{r} && exec \"$0\" \"$@\""));
        }
        p
    };
    // The slow pair is far below the rule; the looser fraction keeps the other
    // pairs (two measured at a time on two shared cores) clear of it.
    let outs = job(
        4,
        &[
            "--level",
            "3",
            "--check",
            "links",
            "--relative",
            "0.4",
            "-q",
            "--json",
            json.to_str().unwrap(),
        ],
        &mesh.addr(0),
        &|_| {
            vec![
                ("LOCAL_RANK".to_string(), "0".to_string()),
                ("LOCAL_WORLD_SIZE".into(), "1".into()),
                ("TUTTI_SOCKET_IFNAME".into(), format!("tv{}x", mesh.net)),
            ]
        },
        &prefix,
    );
    for (r, o) in outs.iter().enumerate() {
        assert_eq!(o.status.code(), Some(1), "rank {r}: {}", text(o));
    }
    let r = read_json(&json);
    assert_eq!(r["nodes"].as_array().unwrap().len(), 4, "{r:#}");
    let name = |rank: u64| {
        r["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["ranks"] == serde_json::json!([rank]))
            .unwrap()["name"]
            .as_str()
            .unwrap()
            .to_string()
    };
    if unshare {
        assert_eq!(name(3), "node3");
    }
    let links = check(&r, "links.pairs");
    assert_eq!(links["status"], "fail", "{links:#}");
    // The limit acts on bandwidth: of the 6 pairs' bandwidth measurements, exactly
    // the limited pair's fails, and it is the first culprit named. A healthy pair's
    // latency may be named too: 4 namespaces' processes share this machine's 2 cores,
    // whose slow episodes (bench/RESULTS.md) can triple one pair's round trip while
    // it is measured (seen once in a fresh-clone run: 1174 us against a 396 us median).
    let bw_failed: Vec<(String, String)> = links["measurements"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["metric"] == "links.pair_bandwidth_gbps")
        .filter(|m| m["status"] == "fail")
        .map(|m| {
            let s = &m["subject"];
            (
                s["a"].as_str().unwrap().to_string(),
                s["b"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        bw_failed,
        [(name(1), name(3))],
        "only the slow pair's bandwidth: {links:#}"
    );
    let named = culprits(links);
    assert_eq!(named[0]["subject"]["kind"], "node_pair");
    assert_eq!(named[0]["subject"]["a"], name(1).as_str());
    assert_eq!(named[0]["subject"]["b"], name(3).as_str());
    let why = named[0]["reason"].as_str().unwrap();
    assert!(
        why.contains("GB/s") && why.contains("x the median of 6 node pairs"),
        "{why}"
    );
    for c in &named[1..] {
        let why = c["reason"].as_str().unwrap();
        assert!(
            why.contains(" us, "),
            "a second culprit other than a latency: {why}"
        );
    }
    let stdout = String::from_utf8_lossy(&outs[0].stdout);
    assert!(
        stdout.contains(&format!("link {}<->{}", name(1), name(3))),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
