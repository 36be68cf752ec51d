//! RDMA devices from sysfs (`/sys/class/infiniband/<dev>/ports/<n>`): state, rate,
//! link layer. Judged at level 1: a node without an active port, or a port slower
//! than its peers.

use serde::{Deserialize, Serialize};

use super::super::report::{CheckResult, Status, Subject};
use super::super::runner::Ctx;
use super::super::{Requirement, ValidateError};

/// One RDMA port.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RdmaPort {
    /// Device (`mlx5_0`).
    pub device: String,
    /// Port number.
    pub port: u32,
    /// State (`ACTIVE`, `DOWN`).
    pub state: String,
    /// Rate in Gb/s.
    pub rate_gbps: Option<f64>,
    /// `InfiniBand` or `Ethernet` (RoCE).
    pub link_layer: String,
}

const ROOT: &str = "/sys/class/infiniband";

fn read(p: &std::path::Path) -> String {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Every port of every RDMA device on this node.
pub fn ports() -> Vec<RdmaPort> {
    let mut out = Vec::new();
    let Ok(devs) = std::fs::read_dir(ROOT) else {
        return out;
    };
    let mut devs: Vec<_> = devs.flatten().collect();
    devs.sort_by_key(|d| d.file_name());
    for dev in devs {
        let name = dev.file_name().to_string_lossy().into_owned();
        let Ok(ports) = std::fs::read_dir(dev.path().join("ports")) else {
            continue;
        };
        for p in ports.flatten() {
            let Ok(port) = p.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let dir = p.path();
            // `state` reads `4: ACTIVE`; `rate` reads `200 Gb/sec (4X HDR)`.
            let state = read(&dir.join("state"));
            let state = state
                .split_once(':')
                .map_or(state.as_str(), |(_, s)| s)
                .trim()
                .to_string();
            let rate = read(&dir.join("rate"));
            out.push(RdmaPort {
                device: name.clone(),
                port,
                state,
                rate_gbps: rate.split_whitespace().next().and_then(|v| v.parse().ok()),
                link_layer: read(&dir.join("link_layer")),
            });
        }
    }
    out.sort_by(|a, b| (&a.device, a.port).cmp(&(&b.device, b.port)));
    out
}

/// `rdma.devices`: active ports on every node, and their rates against the
/// thresholds and the median of all ports.
pub fn check(ctx: &mut Ctx) -> Result<Vec<CheckResult>, ValidateError> {
    const ID: &str = "rdma.devices";
    const TITLE: &str = "RDMA devices and ports";
    let nodes: Vec<(String, Vec<RdmaPort>)> = ctx
        .nodes_inventory()
        .map(|(n, inv)| (n.to_string(), inv.rdma_ports.clone()))
        .collect();
    let any = nodes.iter().any(|(_, p)| !p.is_empty());
    if !any {
        let why = format!("no RDMA devices on any node ({ROOT} is empty or absent)");
        return Ok(vec![ctx.skip_or_fail(ID, TITLE, 1, Requirement::Rdma, why)]);
    }
    let rules = ctx.rules();
    let mut c = CheckResult::new(ID, TITLE, 1);
    let mut counts = Vec::new();
    let mut rates = Vec::new();
    for (node, ports) in &nodes {
        let active: Vec<&RdmaPort> = ports.iter().filter(|p| p.state == "ACTIVE").collect();
        counts.push((Subject::Node { node: node.clone() }, active.len() as f64));
        for p in ports {
            if p.state != "ACTIVE" {
                c.details.push(format!(
                    "{} port {} of {node}: {}",
                    p.device, p.port, p.state
                ));
            }
        }
        for p in active {
            if let Some(r) = p.rate_gbps {
                let subject = Subject::RdmaPort {
                    node: node.clone(),
                    device: p.device.clone(),
                    port: p.port,
                };
                rates.push((subject, r));
            }
        }
    }
    let mut ms = rules.judge("rdma.devices", counts, "nodes");
    for m in &mut ms {
        if m.value == 0.0 && m.status == Status::Pass {
            m.status = Status::Fail;
            m.note = Some(format!(
                "{}: no active RDMA port (other nodes have one)",
                m.subject
            ));
        }
    }
    c.add(ms);
    let n_ports = rates.len();
    c.add(rules.judge("rdma.port_rate_gbps", rates, "ports"));
    c.summary = format!("{n_ports} active ports on {} nodes", nodes.len());
    Ok(vec![c])
}
