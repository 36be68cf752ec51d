//! [`RdmaEndpoint`]: a rank's open RDMA port, and connection setup through the
//! [`Rendezvous`].

use std::hash::{BuildHasher, Hasher};
use std::num::NonZeroU32;
use std::sync::Arc;

use sideway::ibverbs::AccessFlags;
use sideway::ibverbs::address::Gid;
use sideway::ibverbs::completion::BasicCompletionQueue;
use sideway::ibverbs::protection_domain::ProtectionDomain;
use sideway::ibverbs::queue_pair::QueuePair;

use super::RdmaConfig;
use super::completion::POLL_BATCH;
use super::device::{LinkLayerKind, Selected, error_chain, mtu_bytes, select};
use super::link::{HalfConfig, RdmaRecv, RdmaSend, RemoteCredit, RemoteRing, post_recvs};
use super::memory::RegisteredBuf;
use super::qp::{self, Remote};
use super::wire::{self, Handshake};
use crate::{Deadline, Link, Rendezvous, Result, TransportError};

/// Largest slot a peer may ask for.
const MAX_SLOT: u32 = 1 << 30;
/// Most slots a peer may ask for.
const MAX_SLOTS: u32 = 1 << 16;

/// A rank's RDMA endpoint: the selected device port and a protection domain that
/// every link's queue pairs and buffers belong to.
pub struct RdmaEndpoint {
    sel: Selected,
    pd: Arc<ProtectionDomain>,
    cfg: RdmaConfig,
    me: usize,
    prefix: String,
}

impl std::fmt::Debug for RdmaEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RdmaEndpoint")
            .field("device", &self.sel)
            .field("rank", &self.me)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RdmaEndpoint {
    /// Opens the device port `cfg` selects (see [`RdmaConfig::hca`]). `prefix` must
    /// be unique per job and group: it names the rendezvous keys and is checked in
    /// every handshake. Fails with [`TransportError::Unavailable`] when there is no
    /// usable device.
    pub fn open(cfg: RdmaConfig, me: usize, prefix: &str) -> Result<Self> {
        let sel = select(&cfg)?;
        let pd = sel.ctx.alloc_pd().map_err(|e| TransportError::Setup {
            peer: "(local)".into(),
            detail: format!(
                "allocating a protection domain on {}: {}",
                sel.name,
                error_chain(&e)
            ),
        })?;
        if cfg.slot_size > sel.max_msg as usize && sel.max_msg > 0 {
            return Err(TransportError::Setup {
                peer: "(local)".into(),
                detail: format!(
                    "TUTTI_IB_CHUNK_BYTES={} exceeds {} port {}'s largest message ({} bytes)",
                    cfg.slot_size, sel.name, sel.port, sel.max_msg
                ),
            });
        }
        tracing::debug!(device = %sel.name, port = sel.port, rank = me, "RDMA endpoint open");
        Ok(RdmaEndpoint {
            sel,
            pd,
            cfg,
            me,
            prefix: prefix.to_string(),
        })
    }

    /// The device and port in use, as `name:port`.
    pub fn device(&self) -> String {
        format!("{}:{}", self.sel.name, self.sel.port)
    }

    /// Connects to `peer`: both ranks call this. Each side publishes its
    /// handshake under `{prefix}/rdma/{me}/{peer}`, reads the peer's, brings its
    /// two queue pairs to RTS, then publishes a ready mark and waits for the
    /// peer's, so that neither side writes before the other can receive.
    pub fn connect(
        &mut self,
        rdv: &dyn Rendezvous,
        peer: usize,
        peer_name: &str,
        deadline: Deadline,
    ) -> Result<Link> {
        let setup = |detail: String| TransportError::Setup {
            peer: peer_name.to_string(),
            detail,
        };
        let rendezvous = |step, source| TransportError::Rendezvous {
            peer: peer_name.to_string(),
            step,
            source: Box::new(source),
        };
        let slots = self.cfg.slots;
        let slot_size = self.cfg.slot_size;
        let max_wr = if self.sel.max_qp_wr == 0 {
            u32::MAX
        } else {
            self.sel.max_qp_wr
        };
        if slots > max_wr {
            return Err(setup(format!(
                "TUTTI_IB_SLOTS={slots} exceeds {}'s queue depth {max_wr}",
                self.sel.name
            )));
        }
        // Every request is signaled; these bound the unreaped ones.
        let sq_depth = (2 * slots + 2).min(max_wr);

        let tx_cq = self.cq(sq_depth + 1, peer_name)?;
        let rx_cq = self.cq(slots + sq_depth, peer_name)?;
        let mut tx_qp = qp::create(&self.pd, &tx_cq, sq_depth, 1, peer_name)?;
        let mut rx_qp = qp::create(&self.pd, &rx_cq, sq_depth, slots, peer_name)?;
        qp::to_init(&mut tx_qp, &self.sel, peer_name)?;
        qp::to_init(&mut rx_qp, &self.sel, peer_name)?;

        let remote_write = AccessFlags::LocalWrite | AccessFlags::RemoteWrite;
        let ring = RegisteredBuf::new(
            &self.pd,
            slots as usize * slot_size,
            remote_write,
            peer_name,
            "the receive ring",
        )?;
        let credit_in =
            RegisteredBuf::new(&self.pd, 8, remote_write, peer_name, "the credit word")?;
        let credit_src = RegisteredBuf::new(
            &self.pd,
            8,
            AccessFlags::LocalWrite,
            peer_name,
            "the credit source word",
        )?;

        let mine = Handshake {
            from: self.me as u64,
            to: peer as u64,
            tag: wire::tag(&self.prefix),
            link_layer: self.sel.link_layer.to_wire(),
            mtu: self.sel.mtu as u8,
            use_gid: self.sel.gid_index.is_some(),
            lid: self.sel.lid,
            gid: self.sel.gid.raw,
            tx_qpn: tx_qp.qp_number(),
            tx_psn: random_psn(),
            rx_qpn: rx_qp.qp_number(),
            rx_psn: random_psn(),
            ring_addr: ring.addr(0),
            ring_rkey: ring.rkey(),
            slots,
            slot_size: slot_size as u32,
            credit_addr: credit_in.addr(0),
            credit_rkey: credit_in.rkey(),
        };

        // Receives go up before the peer can learn where to write.
        post_recvs(&mut rx_qp, slots)
            .map_err(|e| setup(format!("posting {slots} receives: {e}")))?;

        rdv.publish(&self.key(self.me, peer), &mine.encode())
            .map_err(|source| rendezvous("publishing the RDMA handshake", source))?;
        let raw = rdv
            .lookup(&self.key(peer, self.me), deadline)
            .map_err(|source| rendezvous("waiting for the peer's RDMA handshake", source))?;
        let theirs = Handshake::decode(&raw)
            .map_err(|e| setup(format!("the peer published a bad RDMA handshake: {e}")))?;
        self.validate(&theirs, peer).map_err(setup)?;

        let use_gid = self.sel.link_layer == LinkLayerKind::Ethernet
            || (self.sel.gid_index.is_some() && theirs.use_gid);
        let gid = Gid { raw: theirs.gid };
        if use_gid && gid.is_zero() {
            return Err(setup(
                "the peer published no GID, which this port needs to reach it".into(),
            ));
        }
        let mtu = u32::from(theirs.mtu).min(self.sel.mtu);
        let remote = |qpn, psn| Remote {
            qpn,
            psn,
            lid: theirs.lid,
            gid: use_gid.then_some(gid),
            mtu,
        };
        // My sender writes to the peer's receiver (and takes its credit writes);
        // my receiver takes the peer's sender's writes.
        let to_peer_rx = remote(theirs.rx_qpn, theirs.rx_psn);
        qp::to_rtr(&mut tx_qp, &self.sel, &self.cfg, &to_peer_rx, peer_name)?;
        qp::to_rts(&mut tx_qp, &self.cfg, mine.tx_psn, peer_name)?;
        let to_peer_tx = remote(theirs.tx_qpn, theirs.tx_psn);
        qp::to_rtr(&mut rx_qp, &self.sel, &self.cfg, &to_peer_tx, peer_name)?;
        qp::to_rts(&mut rx_qp, &self.cfg, mine.rx_psn, peer_name)?;

        let staging = RegisteredBuf::new(
            &self.pd,
            theirs.slots as usize * theirs.slot_size as usize,
            AccessFlags::LocalWrite,
            peer_name,
            "the send staging buffer",
        )?;

        // Both sides are at RTS once both ready marks exist.
        rdv.publish(&format!("{}/ready", self.key(self.me, peer)), b"1")
            .map_err(|source| rendezvous("publishing the RDMA ready mark", source))?;
        rdv.lookup(&format!("{}/ready", self.key(peer, self.me)), deadline)
            .map_err(|source| rendezvous("waiting for the peer's RDMA ready mark", source))?;

        let half = || HalfConfig {
            peer: Arc::from(peer_name),
            policy: self.cfg.policy,
            abort: self.cfg.abort.clone(),
        };
        let tx = RdmaSend::new(
            tx_qp,
            tx_cq,
            staging,
            credit_in,
            RemoteRing {
                addr: theirs.ring_addr,
                rkey: theirs.ring_rkey,
                slots: theirs.slots,
                slot_size: theirs.slot_size as usize,
            },
            sq_depth,
            half(),
        );
        let rx = RdmaRecv::new(
            rx_qp,
            rx_cq,
            ring,
            credit_src,
            RemoteCredit {
                addr: theirs.credit_addr,
                rkey: theirs.credit_rkey,
            },
            slots,
            slot_size,
            sq_depth,
            half(),
        );
        tracing::debug!(
            peer = peer_name,
            device = %self.device(),
            tx_qpn = mine.tx_qpn,
            rx_qpn = mine.rx_qpn,
            mtu = mtu_bytes(mtu),
            slots,
            slot_size,
            "RDMA link up"
        );
        Ok(Link {
            tx: Box::new(tx),
            rx: Box::new(rx),
        })
    }

    fn key(&self, from: usize, to: usize) -> String {
        format!("{}/rdma/{from}/{to}", self.prefix)
    }

    fn cq(&self, cqe: u32, peer_name: &str) -> Result<Arc<BasicCompletionQueue>> {
        if self.sel.max_cqe > 0 && cqe > self.sel.max_cqe {
            return Err(TransportError::Setup {
                peer: peer_name.to_string(),
                detail: format!(
                    "a completion queue of {cqe} entries exceeds {}'s limit of {} \
                     (lower TUTTI_IB_SLOTS)",
                    self.sel.name, self.sel.max_cqe
                ),
            });
        }
        let mut cq = self
            .sel
            .ctx
            .create_cq_builder()
            .setup_cqe(cqe)
            .build()
            .map_err(|e| TransportError::Setup {
                peer: peer_name.to_string(),
                detail: format!(
                    "creating a completion queue of {cqe} entries on {}: {}",
                    self.sel.name,
                    error_chain(&e)
                ),
            })?;
        if let (Some(q), Some(n)) = (Arc::get_mut(&mut cq), NonZeroU32::new(POLL_BATCH)) {
            q.setup_poll_batch(n);
        }
        Ok(cq)
    }

    /// Checks the peer's handshake against this side; `Err` says what is wrong.
    fn validate(&self, h: &Handshake, peer: usize) -> std::result::Result<(), String> {
        if h.from != peer as u64 || h.to != self.me as u64 {
            return Err(format!(
                "the handshake is from rank {} to rank {}, expected {peer} to {}",
                h.from, h.to, self.me
            ));
        }
        if h.tag != wire::tag(&self.prefix) {
            return Err("the handshake belongs to another job or group".into());
        }
        if h.link_layer != self.sel.link_layer.to_wire() {
            return Err(format!(
                "link layers differ: the peer's port is {}, this one ({}:{}) is {:?}",
                match h.link_layer {
                    1 => "InfiniBand",
                    2 => "Ethernet (RoCE)",
                    _ => "unknown",
                },
                self.sel.name,
                self.sel.port,
                self.sel.link_layer
            ));
        }
        if mtu_bytes(u32::from(h.mtu)) == 0 {
            return Err(format!("invalid MTU code {}", h.mtu));
        }
        if h.slots == 0 || h.slots > MAX_SLOTS {
            return Err(format!("invalid slot count {}", h.slots));
        }
        if h.slot_size == 0 || !h.slot_size.is_multiple_of(16) || h.slot_size > MAX_SLOT {
            return Err(format!("invalid slot size {}", h.slot_size));
        }
        if self.sel.max_msg > 0 && h.slot_size > self.sel.max_msg {
            return Err(format!(
                "the peer's {}-byte slots exceed this port's largest message ({} bytes)",
                h.slot_size, self.sel.max_msg
            ));
        }
        if h.ring_addr == 0 || h.credit_addr == 0 {
            return Err("null buffer address".into());
        }
        Ok(())
    }
}

/// A packet sequence number to start from (24 bits). It need not be secret, only
/// unlikely to match a stale connection's.
fn random_psn() -> u32 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    (h.finish() & 0x00ff_ffff) as u32
}
