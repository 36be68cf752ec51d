//! [`DeviceWork`]: the handle of a device collective, backed by a CUDA event recorded
//! on the caller's stream right after the collective's last enqueued operation.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cudarc::driver::{CudaEvent, CudaStream};

use crate::{Error, Result};

/// What the group's device watchdog knows about one operation.
#[derive(Debug, Default)]
pub(crate) struct WorkState {
    error: Mutex<Option<Arc<Error>>>,
}

impl WorkState {
    /// Records the operation's error (the first one wins).
    pub(crate) fn set_error(&self, e: Arc<Error>) {
        let mut g = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            *g = Some(e);
        }
    }

    pub(crate) fn error(&self) -> Option<Arc<Error>> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The handle of a device collective (NCCL's asynchronous semantics, torch's `Work`
/// for CUDA): the collective is enqueued on the caller's stream when the call returns,
/// and this handle follows it through a CUDA event recorded after it.
///
/// - [`is_completed`](Self::is_completed) polls the event;
/// - [`wait`](Self::wait) blocks the host until the collective ran (or failed);
/// - [`stream_wait`](Self::stream_wait) makes another stream wait for it without
///   blocking the host (cuStreamWaitEvent).
///
/// A peer that dies or never arrives turns into an error here (and the group fails):
/// the group's watchdog notices within milliseconds (dead process) or at the deadline
/// (the op timeout), releases this rank's stream, and records the error, so the
/// event still completes. Dropping the handle does not cancel the collective.
#[derive(Clone)]
pub struct DeviceWork {
    pub(crate) event: Arc<CudaEvent>,
    pub(crate) state: Arc<WorkState>,
    /// The host-side bound of [`wait`](Self::wait) (the op timeout plus a grace
    /// period; `None`: no bound).
    pub(crate) limit: Option<Duration>,
}

impl std::fmt::Debug for DeviceWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceWork")
            .field("completed", &self.event.is_complete())
            .field("error", &self.state.error().map(|e| e.to_string()))
            .finish()
    }
}

impl DeviceWork {
    /// True once the collective finished on the device (or failed).
    pub fn is_completed(&self) -> bool {
        self.state.error().is_some() || self.event.is_complete()
    }

    /// The collective's error, if it failed (the group's first failure, shared).
    pub fn error(&self) -> Option<Arc<Error>> {
        self.state.error()
    }

    /// Blocks until the collective ran on the device; its error if it failed.
    pub fn wait(&self) -> Result<()> {
        match self.wait_until(self.limit.map(|l| Instant::now() + l))? {
            true => Ok(()),
            false => Err(Error::Cuda {
                context: "waiting for a device collective".into(),
                message: format!(
                    "it did not complete within {:?} (the op timeout and a grace period)",
                    self.limit.unwrap_or_default()
                ),
            }),
        }
    }

    /// Waits up to `timeout`: `Ok(true)` once the collective ran, `Ok(false)` if it is
    /// still running, its error if it failed.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.wait_until(Some(Instant::now() + timeout))
    }

    fn wait_until(&self, until: Option<Instant>) -> Result<bool> {
        let mut sleep = Duration::from_micros(1);
        let start = Instant::now();
        loop {
            if let Some(e) = self.state.error() {
                return Err(Error::Shared(e));
            }
            match self.event.try_is_complete() {
                Ok(true) => {
                    // An operation released after a failure completes too: the error
                    // was recorded before the release.
                    return match self.state.error() {
                        Some(e) => Err(Error::Shared(e)),
                        None => Ok(true),
                    };
                }
                Ok(false) => {}
                Err(e) => {
                    return Err(Error::Cuda {
                        context: "querying a device collective's event".into(),
                        message: e.to_string(),
                    });
                }
            }
            if until.is_some_and(|u| Instant::now() >= u) {
                return Ok(false);
            }
            if start.elapsed() < Duration::from_micros(20) {
                std::hint::spin_loop();
            } else {
                std::thread::sleep(sleep);
                sleep = (sleep * 2).min(Duration::from_micros(500));
            }
        }
    }

    /// Makes `stream` wait (on the device, not the host) until the collective ran.
    pub fn stream_wait(&self, stream: &CudaStream) -> Result<()> {
        stream.wait(&self.event).map_err(|e| Error::Cuda {
            context: "making a stream wait for a device collective".into(),
            message: e.to_string(),
        })
    }

    /// The CUDA event recorded after the collective.
    pub fn event(&self) -> &CudaEvent {
        &self.event
    }
}
