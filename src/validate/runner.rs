//! The run: placement and inventory, then each selected check in order, with the
//! process group rebuilt when a check breaks it, and the report.

use std::time::Instant;

use super::checks::{self, inventory::HostInventory};
use super::exchange::Exchange;
use super::judge::Rules;
use super::progress::Progress;
use super::report::{CheckResult, NodeReport, Report, SCHEMA, Status, Subject, ThresholdsInfo};
use super::thresholds::{DEFAULT_FRACTION, Thresholds};
use super::topology::{Placement, Topology};
use super::{Requirement, ValidateError, ValidateOptions};
use crate::ProcessGroup;

/// A check: its id, level and what it checks.
#[derive(Clone, Copy, Debug)]
pub struct CheckInfo {
    /// Stable id (`shm.pairs`).
    pub id: &'static str,
    /// Level 1, 2 or 3.
    pub level: u8,
    /// What it checks.
    pub title: &'static str,
}

const fn info(id: &'static str, level: u8, title: &'static str) -> CheckInfo {
    CheckInfo { id, level, title }
}

/// Every check, in the order they run.
pub const CHECKS: &[CheckInfo] = &[
    info(
        "host.inventory",
        1,
        "CPU, cores, memory and NUMA of every node",
    ),
    info(
        "host.limits",
        1,
        "/dev/shm size, locked-memory and open-file limits, ptrace scope",
    ),
    info(
        "host.network",
        1,
        "network interfaces: the one tutti uses, its MTU and speed",
    ),
    info(
        "host.consistency",
        1,
        "every node has the same hardware and software",
    ),
    info(
        "gpu.inventory",
        1,
        "GPUs through NVML: ECC, retired pages, remapped rows, persistence, throttling, PCIe link",
    ),
    info("rdma.devices", 1, "RDMA devices and ports"),
    info("memory.bandwidth", 2, "memory copy bandwidth of each rank"),
    info(
        "shm.pairs",
        2,
        "latency and bandwidth of every pair of ranks on a node",
    ),
    info(
        "collectives.all_reduce",
        2,
        "all_reduce: every dtype and op, checked",
    ),
    info(
        "collectives.broadcast",
        2,
        "broadcast: every dtype, every root, checked",
    ),
    info("collectives.reduce", 2, "reduce: every dtype, checked"),
    info(
        "collectives.all_gather",
        2,
        "all_gather: every dtype, checked",
    ),
    info(
        "collectives.reduce_scatter",
        2,
        "reduce_scatter: every dtype, checked",
    ),
    info(
        "collectives.all_to_all",
        2,
        "all_to_all: every dtype, checked per source rank",
    ),
    info(
        "collectives.gather",
        2,
        "gather: every dtype, every root, checked per source rank",
    ),
    info(
        "collectives.scatter",
        2,
        "scatter: every dtype, every root, checked",
    ),
    info(
        "collectives.send_recv",
        2,
        "send/recv between every ordered pair of ranks, checked",
    ),
    info(
        "all_reduce.busbw",
        2,
        "all_reduce bus bandwidth at its plateau size",
    ),
    info(
        "gpu.copy",
        2,
        "host<->device and device memory copy bandwidth of every GPU",
    ),
    info(
        "gpu.p2p",
        2,
        "copy bandwidth between every pair of GPUs of a node",
    ),
    info(
        "gpu.kernels",
        2,
        "GPU reduction kernels against the CPU reference",
    ),
    info("gpu.all_reduce", 2, "all_reduce on device buffers"),
    info(
        "soak",
        3,
        "checked collectives for --soak seconds (intermittent corruption)",
    ),
    info(
        "links.pairs",
        3,
        "latency and bandwidth of every pair of nodes, in rounds",
    ),
];

/// Whether `--check filter` selects check `id` (either is a dotted prefix of
/// the other: `gpu` selects `gpu.copy`, `collectives.all_reduce` runs the
/// collectives stage and keeps that check).
pub fn selects(filter: &str, id: &str) -> bool {
    let f = filter.trim().trim_end_matches('.');
    let prefix = |a: &str, b: &str| a == b || b.strip_prefix(a).is_some_and(|r| r.starts_with('.'));
    prefix(f, id) || prefix(id, f)
}

/// The title of check `id`.
pub fn title(id: &str) -> &'static str {
    CHECKS.iter().find(|c| c.id == id).map_or("", |c| c.title)
}

/// A group of checks run by one function.
struct Stage {
    /// The ids of the checks it produces.
    ids: &'static [&'static str],
    /// Whether it runs operations on the process group.
    group: bool,
    run: fn(&mut Ctx) -> Result<Vec<CheckResult>, ValidateError>,
}

const STAGES: &[Stage] = &[
    Stage {
        ids: &[
            "host.inventory",
            "host.limits",
            "host.network",
            "host.consistency",
        ],
        group: false,
        run: checks::host::check,
    },
    Stage {
        ids: &["gpu.inventory"],
        group: false,
        run: checks::gpu::inventory_check,
    },
    Stage {
        ids: &["rdma.devices"],
        group: false,
        run: checks::rdma::check,
    },
    Stage {
        ids: &["memory.bandwidth"],
        group: false,
        run: checks::memory::check,
    },
    Stage {
        ids: &["shm.pairs"],
        group: true,
        run: checks::shm::check,
    },
    Stage {
        ids: &[
            "collectives.all_reduce",
            "collectives.broadcast",
            "collectives.reduce",
            "collectives.all_gather",
            "collectives.reduce_scatter",
            "collectives.all_to_all",
            "collectives.gather",
            "collectives.scatter",
            "collectives.send_recv",
        ],
        group: true,
        run: checks::collectives::check,
    },
    Stage {
        ids: &["all_reduce.busbw"],
        group: true,
        run: checks::busbw::check,
    },
    Stage {
        ids: &["gpu.copy", "gpu.p2p", "gpu.kernels", "gpu.all_reduce"],
        group: false,
        run: checks::gpu::device_checks,
    },
    Stage {
        ids: &["soak"],
        group: true,
        run: checks::soak::check,
    },
    Stage {
        ids: &["links.pairs"],
        group: true,
        run: checks::links::check,
    },
];

/// What every check gets: the group, the store exchange, the nodes and what level
/// 1 found on them, the options and the thresholds.
pub struct Ctx {
    /// The process group (rebuilt after a check breaks it).
    pub pg: ProcessGroup,
    /// Results between ranks.
    pub xchg: Exchange,
    /// The nodes.
    pub topo: Topology,
    /// Each node's inventory (read by its lowest rank).
    pub inventory: Vec<HostInventory>,
    /// The options.
    pub opts: ValidateOptions,
    /// The thresholds applied.
    pub thresholds: Thresholds,
    /// Built-in minimums (used where the thresholds say nothing).
    pub defaults: Thresholds,
    /// Progress on rank 0's terminal.
    pub progress: Progress,
}

impl Ctx {
    /// This rank.
    pub fn rank(&self) -> usize {
        self.pg.rank()
    }

    /// Number of ranks.
    pub fn size(&self) -> usize {
        self.pg.size()
    }

    /// How measurements are judged.
    pub fn rules(&self) -> Rules<'_> {
        Rules {
            thresholds: &self.thresholds,
            defaults: &self.defaults,
            relative: true,
        }
    }

    /// `(node name, inventory)` of every node.
    pub fn nodes_inventory(&self) -> impl Iterator<Item = (&str, &HostInventory)> {
        self.topo
            .nodes
            .iter()
            .zip(&self.inventory)
            .map(|(n, inv)| (n.name.as_str(), inv))
    }

    /// Rank `r` as a report subject.
    pub fn rank_subject(&self, r: usize) -> Subject {
        Subject::Rank {
            rank: r,
            node: self.topo.node_name(r),
        }
    }

    /// A check that cannot run for lack of hardware: skipped, or failed when the
    /// hardware is required.
    pub fn skip_or_fail(
        &self,
        id: &str,
        title: &str,
        level: u8,
        need: Requirement,
        why: String,
    ) -> CheckResult {
        if self.opts.require.contains(&need) {
            let mut c = CheckResult::new(id, title, level);
            c.fail(Subject::Job, format!("--require {}: {why}", need.name()));
            c.summary = format!("required {} missing: {why}", need.name());
            c
        } else {
            CheckResult::skipped(id, title, level, why)
        }
    }

    /// Whether check `id` is selected (level and `--check`).
    pub fn wants(&self, id: &str) -> bool {
        let level = CHECKS.iter().find(|c| c.id == id).map_or(1, |c| c.level);
        level <= self.opts.level
            && (self.opts.checks.is_empty() || self.opts.checks.iter().any(|f| selects(f, id)))
    }

    /// The timeout-bounded handle of the group for the checks' operations.
    pub fn group(&self) -> ProcessGroup {
        self.pg.with_timeout(self.opts.timeout)
    }
}

/// Built-in minimums: what tutti itself needs, and GPU health rules every class
/// shares.
fn defaults(world: usize) -> Thresholds {
    let mut t = Thresholds::relative(DEFAULT_FRACTION);
    t.name = "built-in".into();
    t.source = "built-in minimums".into();
    // Windows and FIFOs of every local pair live in /dev/shm (Docker's default of
    // 64 MiB is too small for a node of GPUs).
    t.min.insert("host.dev_shm_gib".into(), 0.25);
    // Sockets to every peer, and the store's connections.
    t.min
        .insert("host.open_files".into(), (256 + 4 * world) as f64);
    t.max.insert("gpu.ecc_uncorrected_volatile".into(), 0.0);
    for flag in [
        "gpu.retired_pages_pending",
        "gpu.remapped_rows_pending",
        "gpu.remapped_rows_failed",
        "gpu.throttled",
    ] {
        t.require.insert(flag.into(), false);
    }
    t
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Runs a validation over `pg` (see [`super::Validator::run`]).
pub fn run(pg: &ProcessGroup, opts: &ValidateOptions) -> Result<Report, ValidateError> {
    opts.check()?;
    let started = Instant::now();
    let started_unix = unix_now();
    let (rank, size) = (pg.rank(), pg.size());
    let mut xchg = Exchange::new(
        pg.store().clone(),
        format!("{}/validate", pg.name()),
        rank,
        size,
        opts.timeout,
    );
    let placements = xchg.all_gather("placement", &Placement::here())?;
    let topo = Topology::new(&placements);
    let leader = topo.node(rank).leader() == rank;
    let mine = checks::inventory::collect(leader);
    let all = xchg.all_gather("inventory", &mine)?;
    let inventory: Vec<HostInventory> =
        topo.nodes.iter().map(|n| all[n.leader()].clone()).collect();
    let mut thresholds = match &opts.thresholds {
        Some(t) => t.clone(),
        None => inventory
            .iter()
            .flat_map(|i| i.gpus.first())
            .find_map(|g| Thresholds::for_gpu(&g.name))
            .map(|mut t| {
                t.source = format!(
                    "{} (selected for GPU model {})",
                    t.source,
                    inventory
                        .iter()
                        .flat_map(|i| i.gpus.first())
                        .map(|g| g.name.as_str())
                        .next()
                        .unwrap_or("")
                );
                t
            })
            .unwrap_or_else(|| Thresholds::relative(DEFAULT_FRACTION)),
    };
    if let Some(f) = opts.relative_fraction {
        thresholds.relative_fraction = f;
    }
    let selected: Vec<&Stage> = STAGES
        .iter()
        .filter(|s| {
            s.ids.iter().any(|id| {
                let level = CHECKS.iter().find(|c| c.id == *id).map_or(1, |c| c.level);
                level <= opts.level
                    && (opts.checks.is_empty() || opts.checks.iter().any(|f| selects(f, id)))
            })
        })
        .collect();
    let mut ctx = Ctx {
        pg: pg.clone(),
        xchg,
        topo,
        inventory,
        opts: opts.clone(),
        thresholds,
        defaults: defaults(size),
        progress: Progress::new(opts.progress && rank == 0, selected.len()),
    };
    let mut results: Vec<CheckResult> = Vec::new();
    let mut broken: Option<String> = None;
    let mut stopped: Option<String> = None;
    for stage in selected {
        let ids: Vec<&str> = stage
            .ids
            .iter()
            .copied()
            .filter(|id| ctx.wants(id))
            .collect();
        ctx.progress.stage(ids.first().copied().unwrap_or(""));
        if let Some(why) = stopped
            .as_ref()
            .or(if stage.group { broken.as_ref() } else { None })
        {
            for id in &ids {
                results.push(CheckResult::skipped(
                    id,
                    title(id),
                    level_of(id),
                    why.clone(),
                ));
            }
            continue;
        }
        let t = Instant::now();
        let out = match (stage.run)(&mut ctx) {
            Ok(out) => out,
            Err(ValidateError::Unresponsive {
                what,
                ranks,
                timeout_s,
            }) => {
                // A rank died or hangs: name it, and stop (every later step would
                // wait for it too).
                let mut c = CheckResult::new(ids[0], title(ids[0]), level_of(ids[0]));
                for &r in &ranks {
                    c.fail(
                        ctx.rank_subject(r),
                        format!("rank {r} stopped responding during {what} (no report within {timeout_s} s: dead or hung)"),
                    );
                }
                c.summary = format!("rank(s) {ranks:?} stopped responding");
                stopped = Some(format!("not run: rank(s) {ranks:?} stopped responding"));
                vec![c]
            }
            Err(e) => return Err(e),
        };
        let secs = t.elapsed().as_secs_f64();
        let n = out.len().max(1) as f64;
        for mut c in out {
            if c.duration_s == 0.0 {
                c.duration_s = secs / n;
            }
            if ctx.wants(&c.id) {
                results.push(c);
            }
        }
        if stage.group && stopped.is_none() {
            match repair_group(&mut ctx) {
                Ok(()) => {}
                Err(RepairError::Broken(why)) => broken = Some(why),
                Err(RepairError::Fatal(e)) => return Err(e),
            }
        }
    }
    ctx.progress.done();
    let nodes = ctx
        .topo
        .nodes
        .iter()
        .zip(&ctx.inventory)
        .map(|(n, inv)| NodeReport {
            name: n.name.clone(),
            hostname: n.hostname.clone(),
            ranks: n.ranks.clone(),
            inventory: Some(inv.clone()),
        })
        .collect();
    let mut report = Report {
        schema: SCHEMA.into(),
        tutti_version: env!("CARGO_PKG_VERSION").into(),
        status: Status::Pass,
        exit_code: 0,
        level: opts.level,
        started_unix_s: started_unix,
        duration_s: started.elapsed().as_secs_f64(),
        world_size: size,
        nodes,
        thresholds: ThresholdsInfo {
            name: ctx.thresholds.name.clone(),
            source: ctx.thresholds.source.clone(),
            relative_fraction: ctx.thresholds.relative_fraction,
        },
        require: opts.require.iter().map(|r| r.name().to_string()).collect(),
        counts: Default::default(),
        checks: results,
    };
    report.finish();
    Ok(report)
}

fn level_of(id: &str) -> u8 {
    CHECKS.iter().find(|c| c.id == id).map_or(1, |c| c.level)
}

enum RepairError {
    Broken(String),
    Fatal(ValidateError),
}

/// After a check that used the group: if it failed on any rank, every rank builds
/// a fresh group over the same ranks so the later checks still run.
fn repair_group(ctx: &mut Ctx) -> Result<(), RepairError> {
    let failure = ctx.pg.failure();
    let all = ctx
        .xchg
        .all_gather("group health", &failure)
        .map_err(RepairError::Fatal)?;
    let Some((r, why)) = all
        .iter()
        .enumerate()
        .find_map(|(r, f)| f.as_ref().map(|f| (r, f.clone())))
    else {
        return Ok(());
    };
    tracing::info!(rank = r, reason = %why, "validate: rebuilding the process group");
    let ranks: Vec<usize> = (0..ctx.size()).collect();
    let fresh = ctx.pg.new_group(&ranks);
    let status: Result<(), String> = fresh.as_ref().map(|_| ()).map_err(|e| e.to_string());
    let all = ctx
        .xchg
        .all_gather("group rebuild", &status)
        .map_err(RepairError::Fatal)?;
    if let Some((bad, e)) = all
        .iter()
        .enumerate()
        .find_map(|(r, s)| s.as_ref().err().map(|e| (r, e.clone())))
    {
        return Err(RepairError::Broken(format!(
            "not run: the process group failed (rank {r}: {why}) and could not be rebuilt (rank {bad}: {e})"
        )));
    }
    match fresh {
        Ok(Some(g)) => {
            ctx.pg = g;
            Ok(())
        }
        _ => Err(RepairError::Broken(
            "not run: the rebuilt process group does not contain this rank".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_selection_by_prefix() {
        assert!(selects("gpu", "gpu.copy"));
        assert!(selects("collectives.all_reduce", "collectives.all_reduce"));
        assert!(!selects("collectives.all_reduce", "collectives.all_gather"));
        assert!(!selects("gp", "gpu.copy"));
        assert!(selects("links", "links.pairs"));
        for s in STAGES {
            for id in s.ids {
                assert!(CHECKS.iter().any(|c| c.id == *id), "{id}");
            }
        }
        for c in CHECKS {
            assert!(STAGES.iter().any(|s| s.ids.contains(&c.id)), "{}", c.id);
        }
    }
}
