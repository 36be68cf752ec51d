//! The store backend's store (torchrun's `c10d`): the launcher on the endpoint's
//! host serves a TCP store there, the others connect to it.
//!
//! A launcher serves when `--rdzv-conf is_host=1` says so, or, by default, when it
//! can listen on the endpoint (its address is one of this host's and the port is
//! free); when the port is taken, another launcher on this host serves it.

use std::io::ErrorKind;

use crate::Result;
use crate::config::{DEFAULT_RDZV_PORT, LaunchConfig, split_host_port};
use tutti_store::{PrefixStore, Store, TcpStore, TcpStoreServer};

/// Opens the store rendezvous (namespaced by the run id).
pub(super) fn open(
    cfg: &LaunchConfig,
    token: &str,
) -> Result<(Box<dyn Store>, Option<TcpStoreServer>)> {
    let endpoint = cfg.rdzv_endpoint.as_deref().unwrap_or("localhost");
    let (host, port) = split_host_port(endpoint, DEFAULT_RDZV_PORT)?;
    let server = match cfg.rdzv.is_host {
        Some(false) => None,
        Some(true) => Some(TcpStoreServer::bind((host.as_str(), port), Some(token))?),
        None => match TcpStoreServer::bind((host.as_str(), port), Some(token)) {
            Ok(s) => Some(s),
            Err(tutti_store::StoreError::Io { source, .. })
                if matches!(
                    source.kind(),
                    ErrorKind::AddrInUse | ErrorKind::AddrNotAvailable
                ) =>
            {
                None
            }
            Err(e) => return Err(e.into()),
        },
    };
    if server.is_some() {
        tracing::info!(%host, port, "serving the rendezvous store");
    }
    let client = TcpStore::builder(host, port)
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
