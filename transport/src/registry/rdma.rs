//! The RDMA entry (the `rdma` feature): RC queue pairs between ranks whose hosts
//! both have a usable device (`TUTTI_IB_HCA`).

use super::{Endpoint, LinkCost, OpenCtx, Purpose, Topology, Transport};
use crate::rdma::{RdmaConfig, RdmaEndpoint};
use crate::{Deadline, Link, Rendezvous, Result};

pub(super) struct Rdma;

impl Transport for Rdma {
    fn name(&self) -> &'static str {
        "rdma"
    }

    /// Checked once per process (opening the device list is not free).
    fn usable_here(&self) -> std::result::Result<(), String> {
        static USABLE: std::sync::OnceLock<std::result::Result<(), String>> =
            std::sync::OnceLock::new();
        USABLE
            .get_or_init(|| crate::rdma::available().map_err(|e| e.to_string()))
            .clone()
    }

    fn can_connect(&self, topo: &Topology, a: usize, b: usize) -> std::result::Result<(), String> {
        for r in [a, b] {
            if !topo.peers[r].can_use("rdma") {
                return Err(format!("rank {r} has no usable RDMA device"));
            }
        }
        Ok(())
    }

    /// A few microseconds per hop and ~10 GB/s (a 100 Gb/s port); nominal figures,
    /// not measured here (this machine has no device).
    fn cost(&self, _: &Topology, _: usize, _: usize) -> LinkCost {
        LinkCost {
            alpha: 4e-6,
            beta: 1.0 / 10e9,
        }
    }

    fn open(&self, ctx: &OpenCtx<'_>) -> Result<Box<dyn Endpoint>> {
        let mut cfg = RdmaConfig::from_env(ctx.topo.ranks_on_host_of(ctx.rank));
        cfg.abort = ctx.abort.clone();
        let prefix = match ctx.purpose {
            Purpose::Collectives => ctx.prefix.to_string(),
            Purpose::PointToPoint => format!("{}/p2p", ctx.prefix),
        };
        Ok(Box::new(RdmaEndpoint::open(cfg, ctx.rank, &prefix)?))
    }
}

impl Endpoint for RdmaEndpoint {
    fn connect(
        &mut self,
        rdv: &dyn Rendezvous,
        peer: usize,
        peer_name: &str,
        deadline: Deadline,
    ) -> Result<Link> {
        RdmaEndpoint::connect(self, rdv, peer, peer_name, deadline)
    }
}
