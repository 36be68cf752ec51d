//! Spin, then block: for waits that usually end within a loopback round trip.
//!
//! Waking a parked thread costs tens of microseconds on virtual machines (the idle
//! vCPU has to be woken too), more than a whole round trip between two processes.
//! A waiter that expects its event soon first polls for a time budget, then blocks.
//! The budget is a time, `TUTTI_RPC_SPIN_US` microseconds (default 100; 0 turns
//! spinning off), and at most `cores - 1` threads of a process spin at once, so
//! spinning never takes every core.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The environment variable with the spin budget in microseconds.
pub const SPIN_ENV: &str = "TUTTI_RPC_SPIN_US";

const DEFAULT_BUDGET_US: u64 = 100;

static SPINNERS: AtomicUsize = AtomicUsize::new(0);

struct Config {
    budget: Duration,
    max_spinners: usize,
}

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let us = std::env::var(SPIN_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(DEFAULT_BUDGET_US);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Config {
            budget: Duration::from_micros(us),
            max_spinners: cores.saturating_sub(1),
        }
    })
}

/// Polls `poll` until it returns `Some`, for at most the budget, if a spinner slot
/// is free; `None` means: block now.
pub(crate) fn spin<T>(mut poll: impl FnMut() -> Option<T>) -> Option<T> {
    let c = config();
    if c.budget.is_zero() {
        return None;
    }
    if SPINNERS.fetch_add(1, Ordering::AcqRel) >= c.max_spinners {
        SPINNERS.fetch_sub(1, Ordering::AcqRel);
        return None;
    }
    let start = Instant::now();
    let mut found = None;
    loop {
        if let Some(v) = poll() {
            found = Some(v);
            break;
        }
        if start.elapsed() >= c.budget {
            break;
        }
        for _ in 0..32 {
            std::hint::spin_loop();
        }
    }
    SPINNERS.fetch_sub(1, Ordering::AcqRel);
    found
}
