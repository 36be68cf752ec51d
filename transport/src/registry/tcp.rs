//! The TCP entry: framed messages over several sockets per peer, on any pair of
//! ranks (loopback on one host).

use super::{Endpoint, LinkCost, OpenCtx, Purpose, Topology, Transport};
use crate::tcp::{PollBudget, TcpConfig, TcpEndpoint};
use crate::{Deadline, Link, Rendezvous, Result};

pub(super) struct Tcp;

impl Transport for Tcp {
    fn name(&self) -> &'static str {
        "tcp"
    }

    fn can_connect(&self, _: &Topology, _: usize, _: usize) -> std::result::Result<(), String> {
        Ok(())
    }

    fn cost(&self, _: &Topology, _: usize, _: usize) -> LinkCost {
        LinkCost::tcp()
    }

    fn open(&self, ctx: &OpenCtx<'_>) -> Result<Box<dyn Endpoint>> {
        let mut cfg = TcpConfig::from_env(ctx.topo.ranks_on_host_of(ctx.rank));
        cfg.abort = ctx.abort.clone();
        let prefix = match ctx.purpose {
            Purpose::Collectives => ctx.prefix.to_string(),
            Purpose::PointToPoint => {
                // One connection per peer: the bridge's records are small and in order.
                cfg.sockets = 1;
                // The bridge's threads sleep in poll(2) at once: the engine's waiting
                // thread already polls the rings they fill, and a bridge thread
                // polling its socket too took the cores the ranks need (2 ranks on
                // 2 cores: 8-byte half round trip 93-209 us polling, 39-58 without;
                // bench/RESULTS.md, issue 17, "Ninth session").
                cfg.wait = PollBudget::SLEEP;
                // Each bridge's reader thread reads its own socket only.
                cfg.drain_others = false;
                format!("{}/p2p", ctx.prefix)
            }
        };
        let ep = TcpEndpoint::bind(cfg, ctx.rank, &prefix)?;
        ep.publish(ctx.rdv)?;
        Ok(Box::new(ep))
    }
}

impl Endpoint for TcpEndpoint {
    fn connect(
        &mut self,
        rdv: &dyn Rendezvous,
        peer: usize,
        peer_name: &str,
        deadline: Deadline,
    ) -> Result<Link> {
        TcpEndpoint::connect(self, rdv, peer, peer_name, deadline)
    }
}
