//! The shared-memory entry: FIFO links between ranks of one host (`/dev/shm`
//! segments between processes, in-process FIFOs between threads).

use super::{Endpoint, LinkCost, OpenCtx, Topology, Transport};
use crate::shm::{InprocHub, ShmConfig};
use crate::{Deadline, Link, Rendezvous, Result};

pub(super) struct Shm;

impl Transport for Shm {
    fn name(&self) -> &'static str {
        "shm"
    }

    fn can_connect(&self, topo: &Topology, a: usize, b: usize) -> std::result::Result<(), String> {
        if topo.same_host(a, b) {
            Ok(())
        } else {
            Err("needs the same host".into())
        }
    }

    fn cost(&self, topo: &Topology, a: usize, _b: usize) -> LinkCost {
        LinkCost::shm(topo.oversubscribed(a))
    }

    fn keeps_window(&self) -> bool {
        true
    }

    fn open(&self, ctx: &OpenCtx<'_>) -> Result<Box<dyn Endpoint>> {
        let mut cfg = ShmConfig::from_env(ctx.topo.ranks_on_host_of(ctx.rank));
        cfg.abort = ctx.abort.clone();
        Ok(Box::new(ShmEndpoint {
            me: ctx.rank,
            prefix: ctx.prefix.to_string(),
            hub: ctx.inproc.cloned(),
            cfg,
        }))
    }
}

struct ShmEndpoint {
    me: usize,
    prefix: String,
    hub: Option<std::sync::Arc<InprocHub>>,
    cfg: ShmConfig,
}

impl Endpoint for ShmEndpoint {
    fn connect(
        &mut self,
        rdv: &dyn Rendezvous,
        peer: usize,
        peer_name: &str,
        deadline: Deadline,
    ) -> Result<Link> {
        match &self.hub {
            Some(hub) => hub.connect(self.me, peer, peer_name),
            None => crate::shm::connect(
                rdv,
                &self.prefix,
                self.me,
                peer,
                peer_name,
                &self.cfg,
                deadline,
            ),
        }
    }
}
