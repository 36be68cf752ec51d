//! Level 1 host checks, judged from the inventory every node's lowest rank read:
//! `host.inventory`, `host.limits`, `host.network`, `host.consistency`.

use super::super::ValidateError;
use super::super::judge::{common_majority, list};
use super::super::report::{CheckResult, Subject, number};
use super::super::runner::{Ctx, title};

fn node(n: &str) -> Subject {
    Subject::Node {
        node: n.to_string(),
    }
}

/// The four host checks.
pub fn check(ctx: &mut Ctx) -> Result<Vec<CheckResult>, ValidateError> {
    Ok(vec![
        inventory(ctx),
        limits(ctx),
        network(ctx),
        consistency(ctx),
    ])
}

fn inventory(ctx: &Ctx) -> CheckResult {
    const ID: &str = "host.inventory";
    let rules = ctx.rules();
    let mut c = CheckResult::new(ID, title(ID), 1);
    let mut cpus = Vec::new();
    let mut mem = Vec::new();
    let mut numa = Vec::new();
    for (name, inv) in ctx.nodes_inventory() {
        cpus.push((node(name), inv.cpus_usable as f64));
        mem.push((node(name), inv.memory_gib));
        numa.push((node(name), inv.numa_nodes as f64));
        c.details.push(format!(
            "{name}: {}, {} CPUs online ({} usable), {:.1} GiB, {} NUMA node(s), kernel {}",
            inv.cpu_model,
            inv.cpus_online,
            inv.cpus_usable,
            inv.memory_gib,
            inv.numa_nodes,
            inv.kernel
        ));
    }
    c.add(rules.judge("host.cpus", cpus, "nodes"));
    c.add(rules.judge("host.memory_gib", mem, "nodes"));
    c.add(rules.judge("host.numa_nodes", numa, "nodes"));
    let first = &ctx.inventory[0];
    c.summary = format!(
        "{} node(s): {}, {} CPUs, {:.1} GiB, {} NUMA node(s)",
        ctx.inventory.len(),
        first.cpu_model,
        first.cpus_online,
        first.memory_gib,
        first.numa_nodes
    );
    c
}

fn limits(ctx: &Ctx) -> CheckResult {
    const ID: &str = "host.limits";
    let rules = ctx.rules();
    let mut c = CheckResult::new(ID, title(ID), 1);
    let mut shm = Vec::new();
    let mut memlock = Vec::new();
    let mut files = Vec::new();
    let mut ptrace = Vec::new();
    for (name, inv) in ctx.nodes_inventory() {
        match inv.dev_shm_gib {
            Some(g) => shm.push((node(name), g)),
            None => c.fail(
                node(name),
                format!(
                    "node {name}: /dev/shm is not mounted (same-host ranks share memory through it)"
                ),
            ),
        }
        memlock.push((node(name), inv.memlock_gib));
        files.push((node(name), inv.open_files));
        // No Yama: any same-user process may be read, as with scope 0.
        ptrace.push((node(name), f64::from(inv.ptrace_scope.unwrap_or(0))));
    }
    c.add(rules.judge("host.dev_shm_gib", shm, "nodes"));
    c.add(rules.judge("host.memlock_gib", memlock, "nodes"));
    c.add(rules.judge("host.open_files", files, "nodes"));
    let mut pt = rules.judge("host.ptrace_scope", ptrace, "nodes");
    for m in &mut pt {
        if m.value >= 2.0 && m.note.is_none() {
            m.note = Some(format!(
                "{}: ptrace_scope {} disables single-copy reads between ranks (large same-host messages take two copies)",
                m.subject,
                number(m.value)
            ));
        }
    }
    c.add(pt);
    let inv = &ctx.inventory[0];
    c.summary = format!(
        "/dev/shm {}, memlock {}, nofile {}, ptrace_scope {}",
        inv.dev_shm_gib
            .map_or("absent".into(), |g| format!("{g:.1} GiB")),
        gib(inv.memlock_gib),
        number(inv.open_files),
        inv.ptrace_scope
            .map_or("(no Yama)".into(), |p| p.to_string())
    );
    c
}

fn gib(v: f64) -> String {
    if v.is_infinite() {
        "unlimited".into()
    } else if v >= 1.0 {
        format!("{v:.1} GiB")
    } else {
        format!("{:.0} MiB", v * 1024.0)
    }
}

fn network(ctx: &Ctx) -> CheckResult {
    const ID: &str = "host.network";
    let rules = ctx.rules();
    let mut c = CheckResult::new(ID, title(ID), 1);
    let mut mtu = Vec::new();
    let mut speed = Vec::new();
    for (name, inv) in ctx.nodes_inventory() {
        for i in &inv.interfaces {
            c.details.push(format!(
                "{name}: {} {} mtu {} speed {} [{}]",
                i.name,
                if i.up { "up" } else { "down" },
                i.mtu.map_or("?".into(), |m| m.to_string()),
                i.speed_mbps.map_or("n/a".into(), |s| format!("{s} Mb/s")),
                i.addresses.join(", ")
            ));
        }
        let Some(ifname) = &inv.tutti_interface else {
            continue;
        };
        let Some(i) = inv.interfaces.iter().find(|i| &i.name == ifname) else {
            continue;
        };
        if !i.up {
            c.fail(
                node(name),
                format!("node {name}: interface {ifname}, which tutti's TCP links use, is down"),
            );
        }
        if let Some(m) = i.mtu {
            mtu.push((node(name), f64::from(m)));
        }
        if let Some(s) = i.speed_mbps {
            speed.push((node(name), s as f64));
        }
    }
    // Nodes that disagree with the others' MTU (jumbo frames on some hosts only).
    let values: Vec<String> = mtu.iter().map(|(_, v)| number(*v)).collect();
    for (i, odd) in common_majority(&values) {
        c.fail(
            mtu[i].0.clone(),
            format!(
                "{}: MTU {odd}, where most nodes have {}",
                mtu[i].0,
                values[majority_index(&values)]
            ),
        );
    }
    let summary_mtu = values.first().cloned().unwrap_or_else(|| "?".into());
    c.add(rules.judge("net.mtu", mtu, "nodes"));
    let summary_speed = speed.first().map(|(_, s)| format!("{} Mb/s", number(*s)));
    c.add(rules.judge("net.speed_mbps", speed, "nodes"));
    let iface = ctx.inventory[0]
        .tutti_interface
        .clone()
        .unwrap_or_else(|| "loopback".into());
    c.summary = format!(
        "tutti uses {iface} (mtu {summary_mtu}, speed {})",
        summary_speed.unwrap_or_else(|| "n/a".into())
    );
    c
}

fn majority_index(values: &[String]) -> usize {
    (0..values.len())
        .max_by_key(|&i| values.iter().filter(|v| **v == values[i]).count())
        .unwrap_or(0)
}

fn consistency(ctx: &Ctx) -> CheckResult {
    const ID: &str = "host.consistency";
    let mut c = CheckResult::new(ID, title(ID), 1);
    let names: Vec<&str> = ctx.nodes_inventory().map(|(n, _)| n).collect();
    if names.len() < 2 {
        c.summary = "one node: nothing to compare".into();
        return c;
    }
    type Fact = (&'static str, fn(&super::inventory::HostInventory) -> String);
    let facts: [Fact; 8] = [
        ("CPU model", |i| i.cpu_model.clone()),
        ("CPUs online", |i| i.cpus_online.to_string()),
        // Memory to the nearest 4 GiB: firmware and kernels reserve slightly
        // different amounts on equal nodes.
        ("memory", |i| {
            format!("{:.0} GiB", (i.memory_gib / 4.0).round() * 4.0)
        }),
        ("NUMA nodes", |i| i.numa_nodes.to_string()),
        ("GPU count", |i| i.gpus.len().to_string()),
        ("GPU model", |i| {
            i.gpus.first().map_or("none".into(), |g| g.name.clone())
        }),
        ("NVIDIA driver", |i| {
            i.driver_version.clone().unwrap_or_else(|| "none".into())
        }),
        ("tutti version", |i| i.tutti_version.clone()),
    ];
    let mut compared = Vec::new();
    for (what, get) in facts {
        let values: Vec<String> = ctx.inventory.iter().map(get).collect();
        if values.iter().all(|v| *v == values[0]) {
            compared.push(what);
            continue;
        }
        let odd = common_majority(&values);
        if odd.is_empty() {
            let all: Vec<String> = names
                .iter()
                .zip(&values)
                .map(|(n, v)| format!("{n} {v}"))
                .collect();
            c.fail(
                Subject::Job,
                format!(
                    "nodes disagree on {what} with no majority: {}",
                    all.join(", ")
                ),
            );
        }
        for (i, v) in odd {
            let usual = &values[majority_index(&values)];
            c.fail(
                node(names[i]),
                format!(
                    "node {}: {what} {v}, where most nodes have {usual}",
                    names[i]
                ),
            );
        }
    }
    c.summary = if c.culprits.is_empty() {
        format!("{} nodes agree on {}", names.len(), list(&compared))
    } else {
        format!(
            "nodes differ: {}",
            list(
                &c.culprits
                    .iter()
                    .map(|k| k.subject.to_string())
                    .collect::<Vec<_>>()
            )
        )
    };
    c
}
