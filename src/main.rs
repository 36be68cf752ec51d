//! The `tutti` command line: `tutti run` (the launcher), `tutti bench` (the
//! benchmark, the `tutti-bench` binary) and `tutti validate` (hardware validation). Each subcommand is one
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

// Parsed once per process: the size difference between the variants is harmless.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Launch workers on this host (torchrun-compatible): tutti run [flags] -- PROGRAM [ARGS...]
    Run(tutti::launch::cli::RunArgs),
    /// Benchmark collectives (nccl-tests-compatible): runs the tutti-bench binary,
    /// e.g. tutti bench all_reduce --nranks 2 -b 8 -e 64M (tutti bench --help)
    #[command(disable_help_flag = true)]
    Bench {
        /// Arguments passed to tutti-bench.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Validate this node or job: inventory, bandwidths, checked collectives, link
    /// matrix; names the bad rank, pair, link, node or GPU (exit 0 pass, 1 fail, 2
    /// could not run), e.g. tutti validate --level 2 --nranks 4
    Validate(tutti::validate::ValidateArgs),
}

/// `tutti bench ARGS`: execs `tutti-bench` from this executable's directory, else
/// from PATH.
fn bench(args: Vec<std::ffi::OsString>) -> ExitCode {
    use std::os::unix::process::CommandExt;
    const NAME: &str = "tutti-bench";
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join(NAME)))
        .filter(|p| p.is_file());
    let on_path = || {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(NAME))
                .find(|p| p.is_file())
        })
    };
    let Some(exe) = beside.or_else(on_path) else {
        eprintln!(
            "tutti bench: the {NAME} binary was not found next to this executable or on PATH; build it with cargo build --release -p tutti-bench"
        );
        return ExitCode::from(2);
    };
    let err = std::process::Command::new(&exe).args(args).exec();
    eprintln!("tutti bench: cannot run {}: {err}", exe.display());
    ExitCode::FAILURE
}

/// Logs to stderr: `RUST_LOG` if set, else the level in `TUTTI_DEBUG` (e.g. INFO),
/// else `default`.
fn init_tracing(default: &str) {
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
        .unwrap_or_else(|| default.into());
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
    // Warnings and the launcher's progress; validate reports every failure in its
    // table, so the library's own warnings (a peer that left, a broken link) would
    // only repeat them: errors only, unless TUTTI_DEBUG or RUST_LOG say otherwise.
    init_tracing(match cli.command {
        Command::Validate(_) => "error",
        _ => "warn,tutti_launch=info",
    });
    match cli.command {
        Command::Run(args) => tutti::launch::cli::run(args, &|| {
            tutti::gpu::device_count().map_err(|e| e.to_string())
        }),
        Command::Bench { args } => bench(args),
        Command::Validate(args) => tutti::validate::cli_main(args),
    }
}
