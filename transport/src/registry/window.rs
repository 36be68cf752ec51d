//! The window entry: the ranks of one host share registered windows (shared memory
//! between processes, heap blocks between threads) and run the intra-node
//! algorithms on them.

use std::sync::Arc;

use super::{Endpoint, LinkCost, OpenCtx, Shape, Topology, Transport};
use crate::window::{Window as HostWindow, WindowConfig, WindowHub};
use crate::{Deadline, Rendezvous, Result, TransportError};

pub(super) struct Window;

impl Transport for Window {
    fn name(&self) -> &'static str {
        "window"
    }

    fn shape(&self) -> Shape {
        Shape::Window
    }

    fn can_connect(&self, topo: &Topology, a: usize, b: usize) -> std::result::Result<(), String> {
        if topo.same_host(a, b) {
            Ok(())
        } else {
            Err("needs the same host".into())
        }
    }

    /// A round on the window: one flag post and wait (~1 us, a few when the host's
    /// ranks share cores) and a copy at memory speed (~10 GB/s).
    fn cost(&self, topo: &Topology, a: usize, _b: usize) -> LinkCost {
        LinkCost {
            alpha: if topo.oversubscribed(a) { 4e-6 } else { 1e-6 },
            beta: 1.0 / 10e9,
        }
    }

    fn keeps_window(&self) -> bool {
        true
    }

    fn open(&self, _ctx: &OpenCtx<'_>) -> Result<Box<dyn Endpoint>> {
        Err(TransportError::InvalidArgument(
            "the window is joined by a host's ranks together (join_window), not linked pair by pair"
                .into(),
        ))
    }
}

/// Where and how this rank joins its host's window.
pub struct WindowSpec<'a> {
    /// Prefix of the rendezvous keys, unique per job, group and host.
    pub prefix: &'a str,
    /// Descriptions of the members (`names[i]`: member `i`), in member order.
    pub names: &'a [String],
    /// This rank's member index.
    pub index: usize,
    /// The window geometry and waits.
    pub cfg: &'a WindowConfig,
    /// The process's window registry when the members are threads of it.
    pub threads: Option<&'a Arc<WindowHub>>,
}

/// This rank's window among the members of `spec`: shared memory between processes,
/// heap blocks between threads, a private block when alone.
pub fn join_window(
    spec: &WindowSpec<'_>,
    rdv: &dyn Rendezvous,
    deadline: Deadline,
) -> Result<Arc<HostWindow>> {
    let window = match (spec.threads, spec.names.len()) {
        (_, 1) => WindowHub::new().join("self", 0, spec.names, spec.cfg, deadline)?,
        (Some(hub), _) => hub.join(spec.prefix, spec.index, spec.names, spec.cfg, deadline)?,
        (None, _) => {
            HostWindow::connect(rdv, spec.prefix, spec.index, spec.names, spec.cfg, deadline)?
        }
    };
    Ok(Arc::new(window))
}
