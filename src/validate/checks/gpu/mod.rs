//! GPU checks: `gpu.inventory` (level 1, NVML) and `gpu.copy`, `gpu.p2p`,
//! `gpu.kernels`, `gpu.all_reduce` (level 2, CUDA driver). Without a GPU they skip
//! with the reason (NVML's or the CUDA driver's), or fail under `--require gpu`.
//!
//! Which GPUs a rank measures: the CUDA devices it sees (after
//! `CUDA_VISIBLE_DEVICES`), device `d` by the node's rank with local index
//! `d % ranks_on_node`, one device per node at a time for copies (so they do not
//! share PCIe switches while measured); peer pairs by the node's lowest rank.

pub mod cuda;
pub mod nvml;

use serde::{Deserialize, Serialize};

use super::super::Requirement;
use super::super::ValidateError;
use super::super::judge::{list, spread};
use super::super::report::{CheckResult, Subject, number};
use super::super::runner::{Ctx, title};

fn gpu(node: &str, index: u32) -> Subject {
    Subject::Gpu {
        node: node.to_string(),
        index,
    }
}

fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// `gpu.inventory`.
pub fn inventory_check(ctx: &mut Ctx) -> Result<Vec<CheckResult>, ValidateError> {
    const ID: &str = "gpu.inventory";
    let with_gpus = ctx.inventory.iter().filter(|i| !i.gpus.is_empty()).count();
    if with_gpus == 0 {
        let why = ctx.inventory[0]
            .gpu_unavailable
            .clone()
            .unwrap_or_else(|| "NVML reports no GPU".into());
        return Ok(vec![ctx.skip_or_fail(
            ID,
            title(ID),
            1,
            Requirement::Gpu,
            format!("no GPU: {why}"),
        )]);
    }
    let rules = ctx.rules();
    let mut c = CheckResult::new(ID, title(ID), 1);
    let mut m: std::collections::BTreeMap<&'static str, Vec<(Subject, f64)>> = Default::default();
    let mut count = Vec::new();
    for (node, inv) in ctx.nodes_inventory() {
        count.push((Subject::Node { node: node.into() }, inv.gpus.len() as f64));
        if inv.gpus.is_empty() {
            c.fail(
                Subject::Node { node: node.into() },
                format!(
                    "node {node}: no GPU ({}), where {with_gpus} node(s) have GPUs",
                    inv.gpu_unavailable
                        .as_deref()
                        .unwrap_or("NVML reports none")
                ),
            );
        }
        for g in &inv.gpus {
            let s = gpu(node, g.index);
            let mut put = |k: &'static str, v: Option<f64>| {
                if let Some(v) = v {
                    m.entry(k).or_default().push((s.clone(), v));
                }
            };
            put("gpu.ecc_enabled", g.ecc_enabled.map(flag));
            put("gpu.persistence_mode", g.persistence_mode.map(flag));
            put(
                "gpu.ecc_uncorrected_volatile",
                g.ecc_uncorrected_volatile.map(|v| v as f64),
            );
            put(
                "gpu.ecc_uncorrected_aggregate",
                g.ecc_uncorrected_aggregate.map(|v| v as f64),
            );
            put("gpu.retired_pages", g.retired_pages.map(|v| v as f64));
            put(
                "gpu.retired_pages_pending",
                g.retired_pages_pending.map(flag),
            );
            put(
                "gpu.remapped_rows_pending",
                g.remapped_rows_pending.map(flag),
            );
            put("gpu.remapped_rows_failed", g.remapped_rows_failed.map(flag));
            put("gpu.throttled", g.throttled.map(flag));
            put("gpu.sm_clock_max_mhz", g.sm_clock_max_mhz.map(f64::from));
            put("gpu.pcie_gen", g.pcie_gen_max.map(f64::from));
            put("gpu.pcie_width", g.pcie_width.map(f64::from));
            // A link trained narrower than it can be (a bad riser or seating).
            if let (Some(w), Some(max)) = (g.pcie_width, g.pcie_width_max)
                && w < max
            {
                c.fail(s.clone(), format!("{s}: PCIe link runs at x{w} of x{max}"));
            }
            c.details.push(format!(
                "{s}: {} {} ECC {} persistence {} PCIe gen {}/{} x{}/{} SM {}/{} MHz {} C throttle [{}]",
                g.name,
                g.uuid.as_deref().unwrap_or(""),
                opt(g.ecc_enabled),
                opt(g.persistence_mode),
                optn(g.pcie_gen),
                optn(g.pcie_gen_max),
                optn(g.pcie_width),
                optn(g.pcie_width_max),
                optn(g.sm_clock_mhz),
                optn(g.sm_clock_max_mhz),
                optn(g.temperature_c),
                g.throttle_reasons.join(",")
            ));
        }
    }
    c.add(rules.judge("gpu.count", count, "nodes"));
    for (k, v) in m {
        c.add(rules.judge(k, v, "GPUs"));
    }
    let first = ctx.inventory.iter().find(|i| !i.gpus.is_empty());
    c.summary = match first {
        Some(i) => format!(
            "{} GPU(s) per node: {}, driver {}, CUDA {}",
            i.gpus.len(),
            i.gpus[0].name,
            i.driver_version.as_deref().unwrap_or("?"),
            i.cuda_driver_version.as_deref().unwrap_or("?")
        ),
        None => String::new(),
    };
    Ok(vec![c])
}

fn opt(b: Option<bool>) -> &'static str {
    match b {
        Some(true) => "on",
        Some(false) => "off",
        None => "n/a",
    }
}

fn optn(v: Option<u32>) -> String {
    v.map_or("?".into(), |v| v.to_string())
}

/// What a rank measured on its GPUs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct RankGpus {
    /// Why this rank could not use CUDA.
    unavailable: Option<String>,
    /// (device, result) per measured device.
    copies: Vec<(u32, Result<cuda::CopyResult, String>)>,
    /// (device, result) per device.
    kernels: Vec<(u32, Result<cuda::KernelCheck, String>)>,
    /// (a, b, result) per pair (measured by the node's lowest rank).
    peers: Vec<(u32, u32, Result<cuda::PeerCopy, String>)>,
}

/// The level 2 GPU checks.
pub fn device_checks(ctx: &mut Ctx) -> Result<Vec<CheckResult>, ValidateError> {
    let ids = ["gpu.copy", "gpu.p2p", "gpu.kernels", "gpu.all_reduce"];
    let me = ctx.rank();
    let node = ctx.topo.node(me).clone();
    let local = ctx.topo.local_index(me);
    let count = crate::gpu::device_count();
    let mine: Vec<u32> = match &count {
        Ok(n) => (0..*n)
            .filter(|d| d % node.ranks.len() == local)
            .map(|d| d as u32)
            .collect(),
        Err(_) => Vec::new(),
    };
    let any = ctx.xchg.all_gather(
        "gpu count",
        &count.as_ref().map(|n| *n).map_err(|e| e.to_string()),
    )?;
    if any.iter().all(Result::is_err) {
        let why = any
            .iter()
            .find_map(|r| r.as_ref().err().cloned())
            .unwrap_or_default();
        return Ok(ids
            .iter()
            .map(|id| {
                ctx.skip_or_fail(id, title(id), 2, Requirement::Gpu, format!("no GPU: {why}"))
            })
            .collect());
    }
    let mut out = RankGpus {
        unavailable: count.as_ref().err().map(ToString::to_string),
        ..RankGpus::default()
    };
    // Copies: one device per node at a time.
    let turns: Vec<Vec<usize>> = (0..ctx.topo.max_local())
        .map(|t| {
            ctx.topo
                .nodes
                .iter()
                .filter_map(|n| n.ranks.get(t).copied())
                .collect()
        })
        .collect();
    ctx.progress.note("host<->device copies");
    ctx.xchg.take_turns::<()>("gpu copies", &turns, |_| {
        for &d in &mine {
            out.copies.push((d, cuda::copies(d as usize)));
        }
        Ok(())
    })?;
    if node.leader() == me
        && let Ok(n) = count
    {
        ctx.progress.note("GPU pairs");
        for a in 0..n as u32 {
            for b in a + 1..n as u32 {
                out.peers.push((a, b, cuda::peer(a as usize, b as usize)));
            }
        }
    }
    ctx.progress.note("reduction kernels");
    for &d in &mine {
        out.kernels.push((d, cuda::kernels(d as usize)));
    }
    let all = ctx.xchg.all_gather("gpu results", &out)?;
    let rules = ctx.rules();
    let (mut copy, mut p2p, mut kern) = (
        CheckResult::new(ids[0], title(ids[0]), 2),
        CheckResult::new(ids[1], title(ids[1]), 2),
        CheckResult::new(ids[2], title(ids[2]), 2),
    );
    let (mut h2d, mut d2h, mut mem, mut pairs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut compared, mut wrong) = (0u64, 0u64);
    for (r, g) in all.iter().enumerate() {
        let node = ctx.topo.node_name(r);
        if let Some(why) = &g.unavailable
            && any.iter().any(Result::is_ok)
        {
            copy.fail(
                ctx.rank_subject(r),
                format!("rank {r} ({node}): no usable GPU ({why}) where other ranks have one"),
            );
        }
        for (d, res) in &g.copies {
            match res {
                Ok(c) => {
                    h2d.push((gpu(&node, *d), c.h2d));
                    d2h.push((gpu(&node, *d), c.d2h));
                    mem.push((gpu(&node, *d), c.memory));
                }
                Err(e) => copy.fail(gpu(&node, *d), format!("GPU {d} of {node}: {e}")),
            }
        }
        for (a, b, res) in &g.peers {
            let s = Subject::GpuPair {
                node: node.clone(),
                a: *a,
                b: *b,
            };
            match res {
                Ok(cuda::PeerCopy {
                    a_to_b: ab,
                    b_to_a: ba,
                    peer_access: peer,
                }) => {
                    pairs.push((s.clone(), ab.min(*ba)));
                    p2p.details.push(format!(
                        "{s}: {} GB/s ({a}->{b}) / {} GB/s ({b}->{a}), peer access {}",
                        number(*ab),
                        number(*ba),
                        if *peer {
                            "yes"
                        } else {
                            "no (staged through the host)"
                        }
                    ));
                }
                Err(e) => p2p.fail(s.clone(), format!("{s}: {e}")),
            }
        }
        for (d, res) in &g.kernels {
            match res {
                Ok(k) => {
                    compared += k.compared;
                    wrong += k.wrong;
                    if k.wrong > 0 {
                        kern.fail(
                            gpu(&node, *d),
                            format!("GPU {d} of {node}: {}", list(&k.cases)),
                        );
                    }
                }
                Err(e) => kern.fail(gpu(&node, *d), format!("GPU {d} of {node}: {e}")),
            }
        }
    }
    let n_gpus = h2d.len();
    copy.summary = format!(
        "{n_gpus} GPU(s): h2d {}, d2h {}, memory {}",
        spread(&h2d.iter().map(|x| x.1).collect::<Vec<_>>(), "GB/s"),
        spread(&d2h.iter().map(|x| x.1).collect::<Vec<_>>(), "GB/s"),
        spread(&mem.iter().map(|x| x.1).collect::<Vec<_>>(), "GB/s"),
    );
    copy.add(rules.judge("gpu.h2d_gbps", h2d, "GPUs"));
    copy.add(rules.judge("gpu.d2h_gbps", d2h, "GPUs"));
    copy.add(rules.judge("gpu.memory_gbps", mem, "GPUs"));
    let p2p = if pairs.is_empty() && p2p.culprits.is_empty() {
        CheckResult::skipped(ids[1], title(ids[1]), 2, "fewer than two GPUs per node")
    } else {
        p2p.summary = format!(
            "{} pair(s): {}",
            pairs.len(),
            spread(&pairs.iter().map(|x| x.1).collect::<Vec<_>>(), "GB/s")
        );
        p2p.add(rules.judge("gpu.p2p_gbps", pairs, "pairs"));
        p2p
    };
    kern.measurements.push(rules.judge_one(
        "gpu.kernel_wrong_elements",
        Subject::Job,
        wrong as f64,
    ));
    if kern.culprits.is_empty() {
        kern.summary = format!(
            "every (dtype, op) kernel on {n_gpus} GPU(s): {compared} elements, 0 differ from the CPU"
        );
    } else {
        kern.summary = format!("{wrong} elements differ from the CPU kernels");
    }
    let all_reduce = CheckResult::skipped(
        ids[3],
        title(ids[3]),
        2,
        "the process group has no device-buffer collectives in this build (host buffers only)",
    );
    Ok(vec![copy, p2p, kern, all_reduce])
}
