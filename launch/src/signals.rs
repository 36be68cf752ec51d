//! Signals a launcher catches (SIGINT, SIGTERM, SIGHUP, SIGQUIT) while it runs
//! workers, to forward them and stop cleanly; outside a run they keep their default
//! action.
//!
//! The handlers are registered once per process through `signal-hook`'s safe flag
//! API: one records the signal number, one runs the default action when no launcher
//! is running.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};

use crate::{LaunchError, Result};

/// The signals a running launcher forwards to its workers.
pub const FORWARDED: [i32; 4] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT];

struct Handlers {
    /// The last signal received while a launcher ran (0: none).
    pending: Arc<AtomicUsize>,
    /// True while no launcher runs: signals then take their default action.
    idle: Arc<AtomicBool>,
    /// Launchers running in this process.
    active: Mutex<usize>,
}

fn handlers() -> Result<&'static Handlers> {
    static HANDLERS: OnceLock<std::result::Result<Handlers, String>> = OnceLock::new();
    HANDLERS
        .get_or_init(|| {
            let h = Handlers {
                pending: Arc::new(AtomicUsize::new(0)),
                idle: Arc::new(AtomicBool::new(true)),
                active: Mutex::new(0),
            };
            for sig in FORWARDED {
                signal_hook::flag::register_conditional_default(sig, Arc::clone(&h.idle))
                    .and_then(|_| {
                        signal_hook::flag::register_usize(sig, Arc::clone(&h.pending), sig as usize)
                    })
                    .map_err(|e| format!("registering a handler for signal {sig}: {e}"))?;
            }
            Ok(h)
        })
        .as_ref()
        .map_err(|e| LaunchError::Config(e.clone()))
}

/// Catches the forwarded signals while it lives (when enabled).
pub(crate) struct SignalGuard {
    handlers: Option<&'static Handlers>,
}

impl SignalGuard {
    /// Starts catching signals if `enabled`.
    pub(crate) fn install(enabled: bool) -> Result<Self> {
        if !enabled {
            return Ok(SignalGuard { handlers: None });
        }
        let h = handlers()?;
        let mut active = h.active.lock().unwrap_or_else(|p| p.into_inner());
        if *active == 0 {
            h.pending.store(0, Ordering::SeqCst);
        }
        *active += 1;
        h.idle.store(false, Ordering::SeqCst);
        Ok(SignalGuard { handlers: Some(h) })
    }

    /// The signal received, if any.
    pub(crate) fn pending(&self) -> Option<i32> {
        let h = self.handlers?;
        match h.pending.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s as i32),
        }
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        if let Some(h) = self.handlers {
            let mut active = h.active.lock().unwrap_or_else(|p| p.into_inner());
            *active = active.saturating_sub(1);
            if *active == 0 {
                h.idle.store(true, Ordering::SeqCst);
            }
        }
    }
}

/// Ends this process the way signal `sig` would by default (the launcher's exit
/// after forwarding it), falling back to exit code 128 + `sig`.
pub fn exit_with_signal(sig: i32) -> ! {
    if let Ok(h) = handlers() {
        h.idle.store(true, Ordering::SeqCst);
    }
    let _ = signal_hook::low_level::emulate_default_handler(sig);
    std::process::exit(128 + sig)
}
