//! The static backend's store: node rank 0 serves a TCP store at the endpoint
//! (`--rdzv-endpoint`, else `--master-addr:--master-port`); the others connect.

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr};

use crate::Result;
use crate::config::{LaunchConfig, split_host_port};
use tutti_store::{PrefixStore, Store, TcpStore, TcpStoreServer};

/// Opens the static rendezvous store (namespaced by the run id).
pub(super) fn open(
    cfg: &LaunchConfig,
    token: &str,
) -> Result<(Box<dyn Store>, Option<TcpStoreServer>)> {
    let (host, port) = match &cfg.rdzv_endpoint {
        Some(ep) => split_host_port(ep, cfg.master_port)?,
        None => (cfg.master_addr.clone(), cfg.master_port),
    };
    let server = if cfg.node_rank == 0 {
        // Listen on the endpoint's address; if it is not one of ours (a NAT or DNS
        // name), on every address.
        let server = match TcpStoreServer::bind((host.as_str(), port), Some(token)) {
            Err(tutti_store::StoreError::Io { source, .. })
                if source.kind() == ErrorKind::AddrNotAvailable =>
            {
                TcpStoreServer::bind((IpAddr::V4(Ipv4Addr::UNSPECIFIED), port), Some(token))?
            }
            other => other?,
        };
        Some(server)
    } else {
        None
    };
    let (chost, cport) = match &server {
        Some(s) if s.local_addr().ip().is_unspecified() => ("127.0.0.1".to_string(), s.port()),
        Some(s) => (s.local_addr().ip().to_string(), s.port()),
        None => (host, port),
    };
    let client = TcpStore::builder(chost, cport)
        .token(token)
        .timeout(cfg.rdzv.join_timeout)
        .connect()?;
    Ok((
        Box::new(PrefixStore::new(
            format!("tutti-rdzv/{}", cfg.run_id),
            client,
        )),
        server,
    ))
}
