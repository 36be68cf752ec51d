//! The etcd backend's store: keys under `/tutti/rdzv/<run_id>/` in an existing etcd
//! cluster (cargo feature `etcd`). Every launcher is a client; none serves anything
//! for the rendezvous, so any of them may die without ending the job.

#[cfg(not(feature = "etcd"))]
use crate::LaunchError;
use crate::Result;
use crate::config::LaunchConfig;
#[cfg(feature = "etcd")]
use crate::config::{DEFAULT_ETCD_PORT, split_host_port};
use tutti_store::{Store, TcpStoreServer};

/// Connects to etcd at the endpoint (`HOST:PORT` or a `http(s)://` URL; several
/// separated by commas).
#[cfg(feature = "etcd")]
pub(super) fn open(cfg: &LaunchConfig) -> Result<(Box<dyn Store>, Option<TcpStoreServer>)> {
    let endpoint = cfg.rdzv_endpoint.as_deref().unwrap_or("localhost");
    let urls: Vec<String> = endpoint
        .split(',')
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let e = e.trim();
            if e.starts_with("http://") || e.starts_with("https://") {
                Ok(e.to_string())
            } else {
                let (h, p) = split_host_port(e, DEFAULT_ETCD_PORT)?;
                let h = if h.contains(':') { format!("[{h}]") } else { h };
                Ok(format!("http://{h}:{p}"))
            }
        })
        .collect::<Result<_>>()?;
    let store = tutti_store::EtcdStore::connect(
        &urls,
        &format!("/tutti/rdzv/{}/", cfg.run_id),
        cfg.rdzv.join_timeout,
    )?;
    Ok((Box::new(store), None))
}

/// Without the `etcd` feature: an error saying so.
#[cfg(not(feature = "etcd"))]
pub(super) fn open(_cfg: &LaunchConfig) -> Result<(Box<dyn Store>, Option<TcpStoreServer>)> {
    Err(LaunchError::Config(
        "--rdzv-backend etcd needs tutti built with the `etcd` cargo feature".into(),
    ))
}
