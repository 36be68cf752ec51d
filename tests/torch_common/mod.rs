//! Shared by the tests that run real torch.distributed programs: finding Python
//! (as torchrun does: `PYTHON_EXEC`, else `python3`), checking that torch with Gloo
//! imports, and the scripts under `tests/torch/`.
//!
//! Without torch a test prints `SKIPPED: <reason>` and passes, unless
//! `TUTTI_REQUIRE_TORCH=1` (set by CI), which turns the skip into a failure.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The variable that makes a missing torch a failure.
pub const REQUIRE_ENV: &str = "TUTTI_REQUIRE_TORCH";

/// The Python interpreter: `PYTHON_EXEC` (torchrun's variable), else `python3`.
pub fn python() -> String {
    std::env::var("PYTHON_EXEC")
        .ok()
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| "python3".into())
}

/// The path of `tests/torch/<name>`.
pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/torch")
        .join(name)
}

fn probe() -> Result<String, String> {
    let out = Command::new(python())
        .args([
            "-c",
            "import torch, torch.distributed as d; assert d.is_available() and d.is_gloo_available(), 'no gloo'; print(torch.__version__)",
        ])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("").to_string();
        return Err(format!(
            "torch with Gloo does not import in {} ({last}); scripts/setup installs it",
            python()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Whether torch is usable: its version, or `None` after printing why the calling
/// test skips. Panics instead when `TUTTI_REQUIRE_TORCH=1`.
pub fn torch(test: &str) -> Option<String> {
    static PROBE: OnceLock<Result<String, String>> = OnceLock::new();
    match PROBE.get_or_init(probe) {
        Ok(v) => Some(v.clone()),
        Err(why) => {
            if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
                panic!("{test}: {REQUIRE_ENV}=1 but {why}");
            }
            println!("SKIPPED: {test}: {why}");
            None
        }
    }
}
