//! Level 1 facts about a node, read from `/proc`, `/sys`, resource limits, NVML and
//! the RDMA sysfs tree. Collecting never fails: what cannot be read is `None` (or an
//! empty list) and the checks say so.

use serde::{Deserialize, Serialize};

use super::gpu::nvml::{self, GpuInfo};
use super::rdma::{self, RdmaPort};

/// Facts about one node (read by its lowest rank).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostInventory {
    /// The hostname.
    pub hostname: String,
    /// `uname -r`.
    pub kernel: String,
    /// The CPU model (`/proc/cpuinfo`).
    pub cpu_model: String,
    /// Logical CPUs online.
    pub cpus_online: usize,
    /// Logical CPUs this rank may run on (affinity and cgroup quota).
    pub cpus_usable: usize,
    /// Physical memory.
    pub memory_gib: f64,
    /// NUMA nodes.
    pub numa_nodes: usize,
    /// Size of `/dev/shm` (`None`: not mounted).
    pub dev_shm_gib: Option<f64>,
    /// RLIMIT_MEMLOCK (soft) in GiB; infinite when unlimited (`null` in JSON).
    #[serde(with = "inf_null")]
    pub memlock_gib: f64,
    /// RLIMIT_NOFILE (soft); infinite when unlimited.
    #[serde(with = "inf_null")]
    pub open_files: f64,
    /// `kernel.yama.ptrace_scope` (`None`: Yama is off, which acts as 0).
    pub ptrace_scope: Option<u32>,
    /// Network interfaces.
    pub interfaces: Vec<Interface>,
    /// The interface (and address) tutti's TCP links listen on.
    pub tutti_interface: Option<String>,
    /// GPUs seen through NVML.
    pub gpus: Vec<GpuInfo>,
    /// Why there are no GPUs (no driver, NVML error).
    pub gpu_unavailable: Option<String>,
    /// NVIDIA driver version.
    pub driver_version: Option<String>,
    /// CUDA version the driver supports (`12.8`).
    pub cuda_driver_version: Option<String>,
    /// RDMA ports.
    pub rdma_ports: Vec<RdmaPort>,
    /// The tutti version of the reading rank.
    pub tutti_version: String,
}

/// A network interface.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    /// Name (`eth0`).
    pub name: String,
    /// `operstate` is up (or unknown, as for loopback).
    pub up: bool,
    /// MTU.
    pub mtu: Option<u32>,
    /// Link speed in Mb/s (absent for virtual interfaces).
    pub speed_mbps: Option<u64>,
    /// Its addresses.
    pub addresses: Vec<String>,
}

/// Infinite values as JSON `null`.
mod inf_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

const GIB: f64 = (1u64 << 30) as f64;

/// The value of `key` in `/proc/meminfo`, in bytes.
fn meminfo(key: &str) -> Option<u64> {
    let text = read("/proc/meminfo")?;
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib * 1024)
    })
}

fn cpu_model() -> String {
    read("/proc/cpuinfo")
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

fn cpus_online() -> usize {
    // `/sys/devices/system/cpu/online` holds ranges like `0-63,128-191`.
    read("/sys/devices/system/cpu/online")
        .map(|s| super::super::topology::cpu_list(&s).len())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn numa_nodes() -> usize {
    std::fs::read_dir("/sys/devices/system/node")
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    n.strip_prefix("node")
                        .is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()))
                })
                .count()
        })
        .unwrap_or(0)
        .max(1)
}

fn dev_shm_gib() -> Option<f64> {
    let s = rustix::fs::statvfs("/dev/shm").ok()?;
    Some((s.f_blocks as f64) * (s.f_frsize as f64) / GIB)
}

fn limit(resource: rustix::process::Resource, scale: f64) -> f64 {
    match rustix::process::getrlimit(resource).current {
        Some(v) => v as f64 / scale,
        None => f64::INFINITY,
    }
}

fn interfaces() -> Vec<Interface> {
    let addrs = crate::transport::tcp::interface_addresses();
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    for (n, _) in &addrs {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let base = format!("/sys/class/net/{name}");
            let state = read(&format!("{base}/operstate")).unwrap_or_default();
            Interface {
                up: state == "up" || state == "unknown",
                mtu: read(&format!("{base}/mtu")).and_then(|v| v.parse().ok()),
                // Virtual interfaces have no speed (reading fails) or report -1.
                speed_mbps: read(&format!("{base}/speed"))
                    .and_then(|v| v.parse::<i64>().ok())
                    .and_then(|v| u64::try_from(v).ok())
                    .filter(|&v| v > 0),
                addresses: addrs
                    .iter()
                    .filter(|(n, _)| *n == name)
                    .map(|(_, a)| a.to_string())
                    .collect(),
                name,
            }
        })
        .collect()
}

/// The interface name tutti's TCP links would use (`TUTTI_SOCKET_IFNAME` or the
/// first non-loopback IPv4 address).
fn tutti_interface(ifs: &[Interface]) -> Option<String> {
    let ip = crate::transport::tcp::select_address(None)
        .ok()?
        .to_string();
    ifs.iter()
        .find(|i| i.addresses.contains(&ip))
        .map(|i| i.name.clone())
}

/// Reads this node's facts; `full` adds NVML and RDMA (the node's lowest rank).
pub fn collect(full: bool) -> HostInventory {
    let interfaces = interfaces();
    let (gpus, gpu_unavailable, driver_version, cuda_driver_version) = if full {
        match nvml::inventory() {
            Ok(n) => (n.gpus, None, Some(n.driver_version), n.cuda_version),
            Err(why) => (Vec::new(), Some(why), None, None),
        }
    } else {
        (Vec::new(), None, None, None)
    };
    HostInventory {
        hostname: super::super::topology::hostname(),
        kernel: rustix::system::uname()
            .release()
            .to_string_lossy()
            .into_owned(),
        cpu_model: cpu_model(),
        cpus_online: cpus_online(),
        cpus_usable: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_gib: meminfo("MemTotal").map_or(0.0, |b| b as f64 / GIB),
        numa_nodes: numa_nodes(),
        dev_shm_gib: dev_shm_gib(),
        memlock_gib: limit(rustix::process::Resource::Memlock, GIB),
        open_files: limit(rustix::process::Resource::Nofile, 1.0),
        ptrace_scope: read("/proc/sys/kernel/yama/ptrace_scope").and_then(|v| v.parse().ok()),
        tutti_interface: tutti_interface(&interfaces),
        interfaces,
        gpus,
        gpu_unavailable,
        driver_version,
        cuda_driver_version,
        rdma_ports: if full { rdma::ports() } else { Vec::new() },
        tutti_version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_has_a_cpu_and_memory() {
        let inv = collect(false);
        assert!(inv.cpus_online >= 1 && inv.cpus_usable >= 1);
        assert!(inv.memory_gib > 0.0);
        assert!(inv.numa_nodes >= 1);
        assert!(
            inv.interfaces.iter().any(|i| i.name == "lo"),
            "{:?}",
            inv.interfaces
        );
        let json = serde_json::to_string(&inv).unwrap();
        let back: HostInventory = serde_json::from_str(&json).unwrap();
        assert_eq!(back, inv);
    }
}
