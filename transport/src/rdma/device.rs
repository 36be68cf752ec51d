//! Device discovery: the RDMA devices and ports libibverbs sees, and the choice of
//! one port (and GID) by `TUTTI_IB_HCA` / `TUTTI_IB_GID_INDEX`.

use std::sync::Arc;

use sideway::ibverbs::address::Gid;
use sideway::ibverbs::device::{
    DeviceInfo, DeviceList, GetDeviceListError, GetDeviceListErrorKind,
};
use sideway::ibverbs::device_context::{DeviceContext, LinkLayer};

use super::RdmaConfig;
use crate::{Result, TransportError};

/// `ibv_port_state::IBV_PORT_ACTIVE`.
const PORT_ACTIVE: u32 = 4;

/// The link layer of a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkLayerKind {
    /// InfiniBand: addressed by LID (and GID across subnets).
    InfiniBand,
    /// Ethernet (RoCE): addressed by GID.
    Ethernet,
    /// A value libibverbs reported that this crate does not know.
    Other(u8),
}

impl LinkLayerKind {
    fn from_raw(v: u8) -> Self {
        // An unspecified link layer is what older InfiniBand drivers report.
        if v == LinkLayer::InfiniBand as u8 || v == LinkLayer::Unspecified as u8 {
            LinkLayerKind::InfiniBand
        } else if v == LinkLayer::Ethernet as u8 {
            LinkLayerKind::Ethernet
        } else {
            LinkLayerKind::Other(v)
        }
    }

    /// The byte carried in the connection handshake.
    pub(super) fn to_wire(self) -> u8 {
        match self {
            LinkLayerKind::InfiniBand => 1,
            LinkLayerKind::Ethernet => 2,
            LinkLayerKind::Other(v) => v,
        }
    }
}

/// One port of an RDMA device, as [`ports`] lists it.
#[derive(Clone, Debug)]
pub struct RdmaPort {
    /// Device name (`mlx5_0`, `rxe0`, ...).
    pub device: String,
    /// Port number, from 1.
    pub port: u8,
    /// True when the port's logical state is ACTIVE.
    pub active: bool,
    /// The port's state, as text (`ACTIVE`, `DOWN`, ...).
    pub state: &'static str,
    /// The link layer.
    pub link_layer: LinkLayerKind,
    /// The port's LID (InfiniBand; 0 on Ethernet).
    pub lid: u16,
    /// The active MTU in bytes.
    pub mtu: u32,
}

/// Every port of every RDMA device libibverbs sees, or
/// [`TransportError::Unavailable`] saying why there are none.
pub fn ports() -> Result<Vec<RdmaPort>> {
    let list = device_list()?;
    let mut out = Vec::new();
    for dev in &list {
        let name = dev.name();
        let Ok(ctx) = dev.open() else {
            tracing::debug!(device = %name, "cannot open RDMA device");
            continue;
        };
        let Ok(attr) = ctx.query_device() else {
            continue;
        };
        for port in 1..=attr.phys_port_cnt() {
            if let Ok(p) = ctx.query_port(port) {
                let a = &p.attr;
                out.push(RdmaPort {
                    device: name.clone(),
                    port,
                    active: a.state == PORT_ACTIVE,
                    state: port_state_name(a.state),
                    link_layer: LinkLayerKind::from_raw(a.link_layer),
                    lid: a.lid,
                    mtu: mtu_bytes(a.active_mtu),
                });
            }
        }
    }
    Ok(out)
}

fn device_list() -> Result<DeviceList> {
    let list = DeviceList::new().map_err(list_error)?;
    if list.is_empty() {
        return Err(TransportError::Unavailable(
            "no RDMA device: libibverbs found none (no RDMA driver loaded, or no \
             /sys/class/infiniband entries in this container)"
                .into(),
        ));
    }
    Ok(list)
}

fn list_error(e: GetDeviceListError) -> TransportError {
    let io = match &e.0 {
        GetDeviceListErrorKind::Ibverbs(io) => Some(io),
        #[allow(unreachable_patterns)]
        _ => None,
    };
    match io.and_then(|io| io.raw_os_error()) {
        // What the rdma-mummy-sys shim reports when it could not dlopen
        // libibverbs.so.1 at start-up.
        Some(libc::EOPNOTSUPP) => TransportError::Unavailable(
            "no RDMA device: libibverbs.so.1 could not be loaded (install rdma-core's \
             libibverbs1 and ibverbs-providers)"
                .into(),
        ),
        Some(libc::ENOSYS) => TransportError::Unavailable(
            "no RDMA device: the kernel has no RDMA verbs support here (no \
             /sys/class/infiniband_verbs; load the driver, e.g. rdma_rxe for Soft-RoCE)"
                .into(),
        ),
        _ => TransportError::Unavailable(format!(
            "no RDMA device: ibv_get_device_list failed: {}",
            io.map_or_else(|| e.to_string(), |io| io.to_string())
        )),
    }
}

/// The port links use, opened.
pub(super) struct Selected {
    pub ctx: Arc<DeviceContext>,
    pub name: String,
    pub port: u8,
    pub link_layer: LinkLayerKind,
    pub lid: u16,
    /// The source GID index for the GRH; `None` routes by LID (InfiniBand).
    pub gid_index: Option<u32>,
    /// The GID at `gid_index` (zero when `None`).
    pub gid: Gid,
    /// The active MTU as an `ibv_mtu` value (1 = 256 B ... 5 = 4096 B).
    pub mtu: u32,
    /// Largest message the port carries.
    pub max_msg: u32,
    /// Device limits on queue depths.
    pub max_qp_wr: u32,
    pub max_cqe: u32,
}

impl std::fmt::Debug for Selected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Selected")
            .field("device", &self.name)
            .field("port", &self.port)
            .field("link_layer", &self.link_layer)
            .field("lid", &self.lid)
            .field("gid_index", &self.gid_index)
            .field("gid", &self.gid.to_string())
            .finish_non_exhaustive()
    }
}

/// Opens the first device and active port that `cfg.hca` allows.
pub(super) fn select(cfg: &RdmaConfig) -> Result<Selected> {
    let filter = HcaFilter::parse(cfg.hca.as_deref().unwrap_or(""));
    let list = device_list()?;
    let mut skipped = Vec::new();
    for dev in &list {
        let name = dev.name();
        if !filter.allows_device(&name) {
            skipped.push(format!("{name}: excluded by TUTTI_IB_HCA"));
            continue;
        }
        let ctx = match dev.open() {
            Ok(c) => c,
            Err(e) => {
                skipped.push(format!("{name}: cannot open: {}", error_chain(&e)));
                continue;
            }
        };
        let attr = match ctx.query_device() {
            Ok(a) => a,
            Err(e) => {
                skipped.push(format!("{name}: cannot query: {}", error_chain(&e)));
                continue;
            }
        };
        for port in 1..=attr.phys_port_cnt() {
            if !filter.allows(&name, port) {
                continue;
            }
            let pa = match ctx.query_port(port) {
                Ok(p) => p.attr,
                Err(e) => {
                    skipped.push(format!("{name} port {port}: {}", error_chain(&e)));
                    continue;
                }
            };
            if pa.state != PORT_ACTIVE {
                skipped.push(format!("{name} port {port}: {}", port_state_name(pa.state)));
                continue;
            }
            let link_layer = LinkLayerKind::from_raw(pa.link_layer);
            if let LinkLayerKind::Other(v) = link_layer {
                skipped.push(format!("{name} port {port}: unknown link layer {v}"));
                continue;
            }
            let (gid_index, gid) =
                match pick_gid(&ctx, &name, port, link_layer, pa.gid_tbl_len, cfg) {
                    Ok(g) => g,
                    Err(reason) => {
                        skipped.push(reason);
                        continue;
                    }
                };
            let sel = Selected {
                name: name.clone(),
                port,
                link_layer,
                lid: pa.lid,
                gid_index,
                gid,
                mtu: if (1..=5).contains(&pa.active_mtu) {
                    pa.active_mtu
                } else {
                    3
                },
                max_msg: pa.max_msg_sz,
                max_qp_wr: u32::try_from(attr.max_qp_wr()).unwrap_or(0),
                max_cqe: u32::try_from(attr.max_cqe()).unwrap_or(0),
                ctx,
            };
            tracing::debug!(selected = ?sel, "RDMA port selected");
            return Ok(sel);
        }
    }
    let hca = cfg
        .hca
        .as_deref()
        .map_or(String::new(), |h| format!(" matching TUTTI_IB_HCA={h:?}"));
    Err(TransportError::Unavailable(format!(
        "no RDMA device with an active port{hca} ({})",
        if skipped.is_empty() {
            "none matched".to_string()
        } else {
            skipped.join("; ")
        }
    )))
}

/// Picks the source GID: the configured index, none on InfiniBand, else the best
/// RoCE GID (v2 with an IPv4-mapped address, then v2, then any valid one).
fn pick_gid(
    ctx: &DeviceContext,
    name: &str,
    port: u8,
    link_layer: LinkLayerKind,
    table_len: i32,
    cfg: &RdmaConfig,
) -> std::result::Result<(Option<u32>, Gid), String> {
    if let Some(i) = cfg.gid_index {
        let gid = ctx.query_gid(port, i).map_err(|e| {
            format!(
                "{name} port {port}: TUTTI_IB_GID_INDEX={i} is not usable: {}",
                error_chain(&e)
            )
        })?;
        if gid.is_zero() {
            return Err(format!(
                "{name} port {port}: TUTTI_IB_GID_INDEX={i} holds no GID"
            ));
        }
        return Ok((Some(i), gid));
    }
    if link_layer == LinkLayerKind::InfiniBand {
        return Ok((None, Gid::default()));
    }
    let mut best: Option<(u8, u32, Gid)> = None;
    for i in 0..u32::try_from(table_len).unwrap_or(0) {
        let Ok(gid) = ctx.query_gid(port, i) else {
            continue;
        };
        if gid.is_zero() {
            continue;
        }
        // 1 = RoCE v2 in sysfs terms; older libraries may not answer.
        let v2 = ctx.query_gid_type(port, i).is_ok_and(|t| t == 1);
        let ipv4 = gid.raw[..10].iter().all(|&b| b == 0) && gid.raw[10..12] == [0xff, 0xff];
        let rank = u8::from(v2) * 2 + u8::from(ipv4);
        if best.is_none_or(|(r, _, _)| rank > r) {
            best = Some((rank, i, gid));
        }
    }
    best.map(|(_, i, g)| (Some(i), g)).ok_or_else(|| {
        format!("{name} port {port}: no valid GID (no IP address on the RoCE netdev?)")
    })
}

/// `TUTTI_IB_HCA`: comma-separated `device[:port]` entries, prefix-matched unless
/// the list starts with `=`, and an exclusion list when it starts with `^`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct HcaFilter {
    exclude: bool,
    exact: bool,
    entries: Vec<(String, Option<u8>)>,
}

impl HcaFilter {
    pub(super) fn parse(spec: &str) -> Self {
        let mut s = spec.trim();
        let exclude = s.starts_with('^');
        if exclude {
            s = &s[1..];
        }
        let exact = s.starts_with('=');
        if exact {
            s = &s[1..];
        }
        let entries = s
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| match e.split_once(':') {
                Some((d, p)) => (d.to_string(), p.trim().parse().ok()),
                None => (e.to_string(), None),
            })
            .collect();
        HcaFilter {
            exclude,
            exact,
            entries,
        }
    }

    fn name_matches(&self, entry: &str, device: &str) -> bool {
        if self.exact {
            entry == device
        } else {
            device.starts_with(entry)
        }
    }

    /// Whether any port of `device` may be used.
    pub(super) fn allows_device(&self, device: &str) -> bool {
        if self.entries.is_empty() {
            return true;
        }
        let named = self
            .entries
            .iter()
            .any(|(d, p)| self.name_matches(d, device) && (p.is_none() || !self.exclude));
        if self.exclude { !named } else { named }
    }

    /// Whether `device` port `port` may be used.
    pub(super) fn allows(&self, device: &str, port: u8) -> bool {
        if self.entries.is_empty() {
            return true;
        }
        let named = self
            .entries
            .iter()
            .any(|(d, p)| self.name_matches(d, device) && p.is_none_or(|p| p == port));
        if self.exclude { !named } else { named }
    }
}

fn port_state_name(state: u32) -> &'static str {
    match state {
        0 => "NOP",
        1 => "DOWN",
        2 => "INIT",
        3 => "ARMED",
        4 => "ACTIVE",
        5 => "ACTIVE_DEFER",
        _ => "unknown state",
    }
}

/// `ibv_mtu` to bytes.
pub(super) fn mtu_bytes(mtu: u32) -> u32 {
    match mtu {
        1..=5 => 128 << mtu,
        _ => 0,
    }
}

/// An error and its sources, `: `-separated (sideway's errors put the OS error in
/// the source).
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_filter_allows_everything() {
        let f = HcaFilter::parse("");
        assert!(f.allows_device("mlx5_0") && f.allows("mlx5_0", 2));
    }

    #[test]
    fn prefix_exact_port_and_exclusion() {
        let f = HcaFilter::parse("mlx5");
        assert!(f.allows("mlx5_0", 1) && f.allows("mlx5_10", 1) && !f.allows("rxe0", 1));

        let f = HcaFilter::parse("=mlx5_1");
        assert!(f.allows("mlx5_1", 1) && !f.allows("mlx5_10", 1));

        let f = HcaFilter::parse("mlx5_0:1, mlx5_1");
        assert!(f.allows("mlx5_0", 1) && !f.allows("mlx5_0", 2) && f.allows("mlx5_1", 2));

        let f = HcaFilter::parse("^mlx5_0");
        assert!(!f.allows_device("mlx5_0") && f.allows("rxe0", 1));

        // Excluding one port leaves the device's other ports usable.
        let f = HcaFilter::parse("^=mlx5_0:1");
        assert!(f.allows_device("mlx5_0") && !f.allows("mlx5_0", 1) && f.allows("mlx5_0", 2));
    }

    #[test]
    fn mtu_values() {
        assert_eq!(mtu_bytes(1), 256);
        assert_eq!(mtu_bytes(5), 4096);
        assert_eq!(mtu_bytes(9), 0);
    }
}
