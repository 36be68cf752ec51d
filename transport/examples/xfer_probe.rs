//! How fast this host moves data from one core to another: two threads hand a buffer
//! back and forth (one copies its bytes in, the other copies them out), and the
//! program prints GB/s handed over. Two threads each copying their own buffer do not
//! depend on where the host places its vCPUs; this does, so it tells a host whose
//! cores are slow to share data (the "slow state" in bench/RESULTS.md) from a slow
//! library.
//!
//! ```text
//! cargo run --release -p tutti-transport --example xfer_probe -- [KIB] [ROUNDS]
//! ```
//! Defaults: 1024 KiB, 1000 rounds (about 0.1-0.5 s).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let kib: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1024);
    let rounds: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let len = kib.max(1) << 10;
    let shared = Arc::new(Mutex::new(vec![0u8; len]));
    // True while the reader's turn.
    let full = Arc::new(AtomicBool::new(false));
    let reader = {
        let (shared, full) = (shared.clone(), full.clone());
        std::thread::spawn(move || {
            let mut out = vec![2u8; len];
            for _ in 0..rounds {
                while !full.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }
                out.copy_from_slice(&shared.lock().unwrap_or_else(|p| p.into_inner()));
                full.store(false, Ordering::Release);
            }
            out[len / 2]
        })
    };
    let src = vec![1u8; len];
    let start = Instant::now();
    for _ in 0..rounds {
        while full.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .copy_from_slice(&src);
        full.store(true, Ordering::Release);
    }
    let last = reader.join().expect("the reader thread panicked");
    let secs = start.elapsed().as_secs_f64();
    println!(
        "xfer_probe {kib} KiB x {rounds}: {:.2} GB/s handed between two threads (check byte {last})",
        (len * rounds) as f64 / secs / 1e9
    );
}
