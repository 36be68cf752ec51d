//! The `tutti` command line: `tutti run` (the launcher). Each subcommand is one
//! variant of [`Command`] whose arguments live next to its implementation.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// tutti: collective communication for Rust.
#[derive(Parser, Debug)]
#[command(name = "tutti", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Launch workers on this host (torchrun-compatible): tutti run [flags] -- PROGRAM [ARGS...]
    Run(tutti::launch::cli::RunArgs),
}

/// Logs to stderr: `RUST_LOG` if set, else the level in `TUTTI_DEBUG` (e.g. INFO),
/// else warnings and the launcher's progress.
fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .or_else(|| {
            std::env::var("TUTTI_DEBUG")
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(|v| v.trim().to_ascii_lowercase())
        })
        .unwrap_or_else(|| "warn,tutti::launch=info".into());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match cli.command {
        Command::Run(args) => tutti::launch::cli::run(args),
    }
}
