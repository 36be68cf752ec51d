//! The launcher's main loop: rendezvous, start the workers, watch them, and on a
//! failure or a membership change stop them and go round again.

use super::config::LaunchConfig;
use super::env::RoundInfo;
use super::error_file::{self, ERROR_FILE_ENV};
use super::logs::LogLayout;
use super::rendezvous::{Decision, Halt, Rendezvous, Round};
use super::report::{FailureReport, signal_name};
use super::signals::SignalGuard;
use super::worker::{Entry, GroupState, WorkerGroup, libc_sigterm};
use crate::{LaunchError, Result};

/// A run whose workers all succeeded.
pub(crate) struct Finished {
    pub group: WorkerGroup,
    pub round: Round,
    pub layout: LogLayout,
}

enum Outcome {
    Succeeded,
    Failed,
    Membership(String),
    Halt(Halt),
}

/// Runs `entry` under `cfg` until the job succeeds or fails for good.
pub(crate) fn run(cfg: &LaunchConfig, entry: &Entry) -> Result<Finished> {
    cfg.validate()?;
    let layout = LogLayout::new(cfg)?;
    // Until the rendezvous is open no worker exists: signals keep their default
    // action (a launcher still connecting dies at once).
    let mut rdzv = Rendezvous::open(cfg)?;
    let signals = SignalGuard::install(cfg.handle_signals)?;
    let host = rdzv.me().host.clone();
    let whoami = format!("launcher on {host} (pid {})", std::process::id());
    let mut after = None;
    let result: std::result::Result<(WorkerGroup, Round), Halt> = loop {
        let mut round = match rdzv.next_round(after, &signals) {
            Ok(r) => r,
            Err(h) => break Err(h),
        };
        after = Some(round.number);
        let info = RoundInfo {
            assignment: &round.assignment,
            restart_count: round.restart_count,
            store: &round.store,
        };
        let mut group = match WorkerGroup::spawn(cfg, entry, &layout, &info) {
            Ok(g) => g,
            Err(e) => {
                rdzv.shutdown(&format!("{whoami} could not start its workers: {e}"));
                break Err(Halt::Error(e));
            }
        };
        tracing::info!(
            attempt = round.restart_count,
            ranks = %format!(
                "{}..{}",
                round.assignment.base_rank,
                round.assignment.base_rank + round.assignment.local_world_size
            ),
            world_size = round.assignment.world_size,
            "workers started"
        );
        let outcome = loop {
            match group.poll() {
                GroupState::Failed => break Outcome::Failed,
                GroupState::Succeeded => break Outcome::Succeeded,
                GroupState::Running => {}
            }
            if let Some(sig) = signals.pending() {
                break Outcome::Halt(Halt::Signal(sig));
            }
            match rdzv.watch(&mut round) {
                Ok(None) => {}
                Ok(Some(reason)) => break Outcome::Membership(reason),
                Err(h) => break Outcome::Halt(h),
            }
            std::thread::sleep(cfg.monitor_interval);
        };
        match outcome {
            Outcome::Succeeded => {
                group.finish_logs();
                tracing::info!(attempt = round.restart_count, "workers finished");
                rdzv.exit_barrier(&mut round, cfg.exit_barrier_timeout, &signals);
                break Ok((group, round));
            }
            Outcome::Failed => {
                group.stop(libc_sigterm(), cfg.stop_timeout);
                let report = FailureReport::new(
                    entry.display.clone(),
                    group.failures(cfg, &entry.display, &host),
                );
                let summary = report.summary();
                match rdzv.on_failure(&round, cfg.max_restarts, &format!("{whoami}: {summary}")) {
                    Ok(Decision::Restart) => {
                        tracing::warn!(
                            attempt = round.restart_count,
                            max_restarts = cfg.max_restarts,
                            "{summary}; restarting the worker group"
                        );
                        continue;
                    }
                    Ok(Decision::Fail) => {
                        tracing::error!("{summary}; no restarts left");
                        break Err(Halt::Error(LaunchError::WorkersFailed(Box::new(report))));
                    }
                    Err(e) => {
                        tracing::error!("{summary}; and the rendezvous failed: {e}");
                        break Err(Halt::Error(LaunchError::WorkersFailed(Box::new(report))));
                    }
                }
            }
            Outcome::Membership(reason) => {
                tracing::warn!("{reason}: stopping the workers and joining a new rendezvous round");
                group.stop(libc_sigterm(), cfg.stop_timeout);
                continue;
            }
            Outcome::Halt(Halt::Signal(sig)) => {
                tracing::warn!(
                    "received {}: forwarding it to the workers",
                    signal_name(sig)
                );
                group.stop(sig, cfg.stop_timeout);
                rdzv.shutdown(&format!("{whoami} received {}", signal_name(sig)));
                break Err(Halt::Signal(sig));
            }
            Outcome::Halt(h) => {
                group.stop(libc_sigterm(), cfg.stop_timeout);
                if let Halt::Error(e) = &h {
                    rdzv.shutdown(&format!("{whoami} failed: {e}"));
                }
                break Err(h);
            }
        }
    };
    drop(signals);
    match result {
        Ok((group, round)) => Ok(Finished {
            group,
            round,
            layout,
        }),
        Err(halt) => {
            let err = match halt {
                Halt::Error(e) => e,
                Halt::Signal(signal) => LaunchError::Signal {
                    signal,
                    name: signal_name(signal),
                },
                Halt::Shutdown(reason) => LaunchError::Aborted { reason },
            };
            write_own_error_file(&err);
            if !matches!(err, LaunchError::WorkersFailed(_)) {
                // No report points into a temporary log directory: remove it.
                layout.remove_temp();
            }
            Err(err)
        }
    }
}

/// When this launcher runs under another one (its own `TORCHELASTIC_ERROR_FILE`
/// is set), copies the root failure there.
fn write_own_error_file(err: &LaunchError) {
    let Some(path) = std::env::var_os(ERROR_FILE_ENV).filter(|p| !p.is_empty()) else {
        return;
    };
    let path = std::path::PathBuf::from(path);
    let value = match err {
        LaunchError::WorkersFailed(report) => {
            let root = report.root();
            error_file::nested_copy(
                root.and_then(|f| f.error.as_ref()),
                &report.summary(),
                root.map_or(1, |f| f.exit.torch_code()),
            )
        }
        other => error_file::nested_copy(None, &other.to_string(), 1),
    };
    if let Err(e) = error_file::write_json(&path, &value) {
        tracing::warn!("could not write the error file {}: {e}", path.display());
    }
}
