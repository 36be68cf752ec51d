//! Reliable-connected queue pairs: creation and the INIT -> RTR -> RTS transitions.

use std::sync::Arc;

use sideway::ibverbs::AccessFlags;
use sideway::ibverbs::address::{AddressHandleAttribute, Gid};
use sideway::ibverbs::completion::BasicCompletionQueue;
use sideway::ibverbs::device_context::Mtu;
use sideway::ibverbs::protection_domain::ProtectionDomain;
use sideway::ibverbs::queue_pair::{
    BasicQueuePair, QueuePair, QueuePairAttribute, QueuePairState, QueuePairType,
};

use super::RdmaConfig;
use super::device::{Selected, error_chain};
use crate::{Result, TransportError};

fn setup_err(peer: &str, detail: String) -> TransportError {
    TransportError::Setup {
        peer: peer.to_string(),
        detail,
    }
}

/// Creates an RC queue pair whose send and receive completions go to `cq`.
pub(super) fn create(
    pd: &Arc<ProtectionDomain>,
    cq: &Arc<BasicCompletionQueue>,
    max_send_wr: u32,
    max_recv_wr: u32,
    peer: &str,
) -> Result<BasicQueuePair> {
    pd.create_qp_builder()
        .setup_qp_type(QueuePairType::ReliableConnection)
        .setup_send_cq(Arc::clone(cq))
        .setup_recv_cq(Arc::clone(cq))
        .setup_max_send_wr(max_send_wr)
        .setup_max_recv_wr(max_recv_wr)
        .setup_max_send_sge(1)
        .setup_max_recv_sge(1)
        .build()
        .map_err(|e| {
            setup_err(
                peer,
                format!(
                    "creating an RC queue pair ({max_send_wr} send, {max_recv_wr} receive \
                     requests): {}",
                    error_chain(&e)
                ),
            )
        })
}

/// RESET -> INIT on the selected port; the peer may write into memory this
/// queue pair's protection domain registered for remote writes.
pub(super) fn to_init(qp: &mut BasicQueuePair, sel: &Selected, peer: &str) -> Result<()> {
    let mut attr = QueuePairAttribute::new();
    attr.setup_state(QueuePairState::Init)
        .setup_pkey_index(0)
        .setup_port(sel.port)
        .setup_access_flags(AccessFlags::LocalWrite | AccessFlags::RemoteWrite);
    qp.modify(&attr).map_err(|e| {
        setup_err(
            peer,
            format!(
                "queue pair {:#x} RESET -> INIT on {} port {}: {}",
                qp.qp_number(),
                sel.name,
                sel.port,
                error_chain(&e)
            ),
        )
    })
}

/// Where the remote queue pair is.
pub(super) struct Remote {
    pub qpn: u32,
    pub psn: u32,
    pub lid: u16,
    pub gid: Option<Gid>,
    /// Path MTU (`ibv_mtu`), the smaller of both ports'.
    pub mtu: u32,
}

/// INIT -> RTR: connects to the remote queue pair, expecting its first PSN.
pub(super) fn to_rtr(
    qp: &mut BasicQueuePair,
    sel: &Selected,
    cfg: &RdmaConfig,
    remote: &Remote,
    peer: &str,
) -> Result<()> {
    let mut ah = AddressHandleAttribute::new();
    ah.setup_dest_lid(remote.lid)
        .setup_port(sel.port)
        .setup_service_level(cfg.service_level);
    if let Some(gid) = &remote.gid {
        ah.setup_grh(
            gid,
            0,
            sel.gid_index.unwrap_or(0) as u8,
            255,
            cfg.traffic_class,
        );
    }
    let mut attr = QueuePairAttribute::new();
    attr.setup_state(QueuePairState::ReadyToReceive)
        .setup_path_mtu(mtu(remote.mtu))
        .setup_dest_qp_num(remote.qpn)
        .setup_rq_psn(remote.psn)
        .setup_max_dest_read_atomic(0)
        .setup_min_rnr_timer(12)
        .setup_address_vector(&ah);
    qp.modify(&attr).map_err(|e| {
        setup_err(
            peer,
            format!(
                "queue pair {:#x} INIT -> RTR (to remote queue pair {:#x}, LID {}, GID {}): {}",
                qp.qp_number(),
                remote.qpn,
                remote.lid,
                remote.gid.map_or("none".to_string(), |g| g.to_string()),
                error_chain(&e)
            ),
        )
    })
}

/// RTR -> RTS: starts sending at `psn`, with the configured ACK timeout and
/// retries (which bound how long a dead peer goes unnoticed).
pub(super) fn to_rts(
    qp: &mut BasicQueuePair,
    cfg: &RdmaConfig,
    psn: u32,
    peer: &str,
) -> Result<()> {
    let mut attr = QueuePairAttribute::new();
    attr.setup_state(QueuePairState::ReadyToSend)
        .setup_sq_psn(psn)
        .setup_timeout(cfg.timeout)
        .setup_retry_cnt(cfg.retry_cnt)
        .setup_rnr_retry(7)
        .setup_max_read_atomic(0);
    qp.modify(&attr).map_err(|e| {
        setup_err(
            peer,
            format!(
                "queue pair {:#x} RTR -> RTS: {}",
                qp.qp_number(),
                error_chain(&e)
            ),
        )
    })
}

fn mtu(v: u32) -> Mtu {
    match v {
        1 => Mtu::Mtu256,
        2 => Mtu::Mtu512,
        3 => Mtu::Mtu1024,
        4 => Mtu::Mtu2048,
        _ => Mtu::Mtu4096,
    }
}
