//! Building a TCP [`Link`] over connected sockets.

use std::sync::{Arc, Mutex};

use socket2::Socket;

use super::config::TcpConfig;
use super::inbound::Inbound;
use super::progress::{Engine, RxShared};
use super::recv::TcpRecv;
use super::send::TcpSend;
use crate::{Link, Result, TransportError};

/// Builds the two halves over connected sockets (socket `i` carries messages
/// `i, i + n, ...`); the receiving side joins `engine`, the endpoint's set of
/// sockets drained while any of its links waits.
pub(crate) fn make_link(
    sockets: Vec<Socket>,
    peer: &str,
    cfg: &TcpConfig,
    engine: &Arc<Engine>,
) -> Result<Link> {
    let peer: Arc<str> = Arc::from(peer);
    let n = sockets.len() as u64;
    let mut inbound = Vec::with_capacity(sockets.len());
    for (i, sock) in sockets.iter().enumerate() {
        sock.set_nonblocking(true)
            .map_err(|e| TransportError::io(&peer, "configuring a socket", e))?;
        let rsock = sock
            .try_clone()
            .map_err(|e| TransportError::io(&peer, "cloning a socket", e))?;
        inbound.push(Inbound::new(
            rsock,
            i as u64,
            n,
            cfg.queue.max(1) as usize,
            cfg.max_message,
        )?);
    }
    let rx = Arc::new(RxShared {
        peer: peer.clone(),
        inbound: Mutex::new(inbound),
    });
    if cfg.drain_others {
        engine.register(&rx);
    }
    let tx = TcpSend {
        socks: sockets,
        engine: engine.clone(),
        peer,
        seq: 0,
        buf: vec![0; cfg.max_message],
        reserved: None,
        checksum: cfg.checksum,
        corrupt_next: false,
        drop_next: false,
        depth: cfg.queue.max(1) as usize * n as usize,
    };
    let rx = TcpRecv {
        rx,
        engine: engine.clone(),
        index: 0,
        sockets: n,
        max_message: cfg.max_message,
    };
    Ok(Link {
        tx: Box::new(tx),
        rx: Box::new(rx),
    })
}
