//! The catalogue of metrics `tutti validate` measures: each metric's name (the key a
//! thresholds file uses), unit and direction. A thresholds file that names a metric
//! not listed here is an error, so a typo cannot silently disable a bound.

/// Which values of a metric are good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    /// Larger is better (bandwidths, counts of cores): a `min` bound, and the
    /// relative check fails values below `fraction x median`.
    Higher,
    /// Smaller is better (latencies, error counts): a `max` bound, and the relative
    /// check fails values above `median / fraction`.
    Lower,
    /// A yes/no property (ECC enabled): a `require` entry.
    Flag,
    /// A number that must be within bounds but is not compared with peers (PCIe
    /// generation, MTU).
    Bounded,
}

/// One metric.
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    /// The key in thresholds files and JSON reports (`shm.pair_bandwidth_gbps`).
    pub name: &'static str,
    /// Unit for people (`GB/s`, `us`, empty for counts).
    pub unit: &'static str,
    /// Which direction is good.
    pub better: Better,
    /// Whether a rank/pair/GPU is compared with the median of its peers.
    pub relative: bool,
    /// The relative rule also needs the value to differ from the median by more
    /// than this (in the metric's unit): microsecond latencies jitter by a few
    /// microseconds on busy hosts without anything being wrong.
    pub slack: f64,
    /// What it measures.
    pub about: &'static str,
}

const fn m(
    name: &'static str,
    unit: &'static str,
    better: Better,
    relative: bool,
    about: &'static str,
) -> Metric {
    Metric {
        name,
        unit,
        better,
        relative,
        slack: 0.0,
        about,
    }
}

const fn with_slack(m: Metric, slack: f64) -> Metric {
    Metric { slack, ..m }
}

use Better::{Bounded, Flag, Higher, Lower};

/// Every metric, in report order.
pub const METRICS: &[Metric] = &[
    m(
        "host.cpus",
        "",
        Higher,
        false,
        "logical CPUs this rank may run on",
    ),
    m(
        "host.memory_gib",
        "GiB",
        Higher,
        false,
        "physical memory of the node",
    ),
    m(
        "host.numa_nodes",
        "",
        Bounded,
        false,
        "NUMA nodes of the node",
    ),
    m(
        "host.dev_shm_gib",
        "GiB",
        Higher,
        false,
        "size of /dev/shm (shared-memory windows and FIFOs live there)",
    ),
    m(
        "host.memlock_gib",
        "GiB",
        Higher,
        false,
        "locked-memory limit (RLIMIT_MEMLOCK; pinned and RDMA-registered memory), inf = unlimited",
    ),
    m(
        "host.open_files",
        "",
        Higher,
        false,
        "open-file limit (RLIMIT_NOFILE; sockets to every peer)",
    ),
    m(
        "host.ptrace_scope",
        "",
        Lower,
        false,
        "kernel.yama.ptrace_scope (0 or 1 lets same-host ranks use single-copy reads)",
    ),
    m(
        "net.mtu",
        "",
        Bounded,
        false,
        "MTU of the interface tutti's TCP links use",
    ),
    m(
        "net.speed_mbps",
        "Mb/s",
        Higher,
        false,
        "link speed of the interface tutti's TCP links use",
    ),
    m(
        "memory.copy_gbps",
        "GB/s",
        Higher,
        true,
        "memory copy bandwidth of one rank (bytes read + written per second, STREAM copy)",
    ),
    m(
        "shm.pair_bandwidth_gbps",
        "GB/s",
        Higher,
        true,
        "point-to-point bandwidth between two ranks of a node (slower direction)",
    ),
    with_slack(
        m(
            "shm.pair_latency_us",
            "us",
            Lower,
            true,
            "point-to-point one-way latency of 8 bytes between two ranks of a node",
        ),
        5.0,
    ),
    m(
        "collectives.wrong_elements",
        "",
        Lower,
        false,
        "elements of collective results that differ from the reference (always at most 0)",
    ),
    m(
        "all_reduce.busbw_gbps",
        "GB/s",
        Higher,
        false,
        "host all_reduce bus bandwidth at its plateau size",
    ),
    m(
        "soak.wrong_elements",
        "",
        Lower,
        false,
        "wrong elements over the soak (always at most 0)",
    ),
    m(
        "links.pair_bandwidth_gbps",
        "GB/s",
        Higher,
        true,
        "point-to-point bandwidth between two nodes (slower direction)",
    ),
    with_slack(
        m(
            "links.pair_latency_us",
            "us",
            Lower,
            true,
            "point-to-point one-way latency of 8 bytes between two nodes",
        ),
        20.0,
    ),
    m("gpu.count", "", Bounded, false, "GPUs per node (NVML)"),
    m(
        "gpu.pcie_gen",
        "",
        Higher,
        false,
        "maximum PCIe generation of each GPU's link",
    ),
    m(
        "gpu.pcie_width",
        "",
        Higher,
        false,
        "current PCIe link width of each GPU",
    ),
    m("gpu.ecc_enabled", "", Flag, false, "ECC mode of each GPU"),
    m(
        "gpu.persistence_mode",
        "",
        Flag,
        false,
        "persistence mode of each GPU",
    ),
    m(
        "gpu.ecc_uncorrected_volatile",
        "",
        Lower,
        false,
        "uncorrected ECC errors since the driver loaded",
    ),
    m(
        "gpu.ecc_uncorrected_aggregate",
        "",
        Lower,
        false,
        "uncorrected ECC errors over the GPU's life",
    ),
    m(
        "gpu.retired_pages",
        "",
        Lower,
        false,
        "retired memory pages (single- and double-bit causes)",
    ),
    m(
        "gpu.retired_pages_pending",
        "",
        Flag,
        false,
        "pages waiting for retirement (a reset is needed); require false",
    ),
    m(
        "gpu.remapped_rows_pending",
        "",
        Flag,
        false,
        "row remappings waiting for a reset; require false",
    ),
    m(
        "gpu.remapped_rows_failed",
        "",
        Flag,
        false,
        "a row remapping failed (the GPU needs service); require false",
    ),
    m(
        "gpu.throttled",
        "",
        Flag,
        false,
        "hardware/thermal/power-brake slowdown active; require false",
    ),
    m(
        "gpu.sm_clock_max_mhz",
        "MHz",
        Higher,
        true,
        "maximum SM clock",
    ),
    m(
        "gpu.h2d_gbps",
        "GB/s",
        Higher,
        true,
        "host-to-device copy bandwidth (pinned memory)",
    ),
    m(
        "gpu.d2h_gbps",
        "GB/s",
        Higher,
        true,
        "device-to-host copy bandwidth (pinned memory)",
    ),
    m(
        "gpu.memory_gbps",
        "GB/s",
        Higher,
        true,
        "device memory copy bandwidth (bytes read + written)",
    ),
    m(
        "gpu.p2p_gbps",
        "GB/s",
        Higher,
        true,
        "device-to-device copy bandwidth between two GPUs of a node (slower direction)",
    ),
    m(
        "gpu.kernel_wrong_elements",
        "",
        Lower,
        false,
        "reduction kernel results that differ from the CPU reference (always at most 0)",
    ),
    m(
        "gpu.all_reduce_busbw_gbps",
        "GB/s",
        Higher,
        false,
        "device all_reduce bus bandwidth at its plateau size",
    ),
    m(
        "rdma.devices",
        "",
        Higher,
        false,
        "RDMA devices with an active port",
    ),
    m(
        "rdma.port_rate_gbps",
        "Gb/s",
        Higher,
        true,
        "rate of each active RDMA port",
    ),
];

/// The metric named `name`.
pub fn find(name: &str) -> Option<&'static Metric> {
    METRICS.iter().find(|m| m.name == name)
}

/// The metric named `name`, which this module defines (a typo is a bug).
pub(crate) fn get(name: &str) -> &'static Metric {
    find(name).unwrap_or_else(|| panic!("validate: metric {name:?} is not in the catalogue"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_sectioned() {
        for (i, a) in METRICS.iter().enumerate() {
            assert!(a.name.contains('.'), "{}", a.name);
            assert!(
                METRICS[i + 1..].iter().all(|b| b.name != a.name),
                "{} twice",
                a.name
            );
            assert!(!a.relative || matches!(a.better, Better::Higher | Better::Lower));
        }
    }
}
