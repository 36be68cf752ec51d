//! Worker logs: `<log_dir>/<run_id>/attempt_<n>/<local_rank>/{stdout.log,stderr.log,error.json}`.
//!
//! `--redirects` sends a stream only to its file; `--tee` sends it to its file and to
//! the launcher's console, each line prefixed (`[${role_name}${rank}]:` unless a
//! template is given). Streams that are neither are inherited from the launcher.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::config::LaunchConfig;
use crate::{LaunchError, Result};

/// The default prefix of teed lines.
pub const DEFAULT_PREFIX_TEMPLATE: &str = "[${role_name}${rank}]:";

fn io_error(context: String) -> impl FnOnce(std::io::Error) -> LaunchError {
    move |source| LaunchError::Io { context, source }
}

/// Where a run's logs and error files go.
#[derive(Debug)]
pub(crate) struct LogLayout {
    /// `<log_dir>/<run_id>`.
    pub run_dir: PathBuf,
    /// The temporary base directory this launcher created (no `--log-dir`).
    pub temp_base: Option<PathBuf>,
}

impl LogLayout {
    /// Creates `<log_dir>/<run_id>` (a fresh temporary `log_dir` when none is given).
    pub(crate) fn new(cfg: &LaunchConfig) -> Result<Self> {
        let (base, temp_base) = match &cfg.log_dir {
            Some(d) => (d.clone(), None),
            None => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.subsec_nanos())
                    .unwrap_or(0);
                let d = std::env::temp_dir()
                    .join(format!("tutti-run-{}-{nanos:08x}", std::process::id()));
                (d.clone(), Some(d))
            }
        };
        let run_dir = base.join(&cfg.run_id);
        std::fs::create_dir_all(&run_dir).map_err(io_error(format!(
            "creating the log directory {}",
            run_dir.display()
        )))?;
        Ok(LogLayout { run_dir, temp_base })
    }

    /// The directory of one worker in one attempt (created).
    pub(crate) fn worker_dir(&self, attempt: u32, local_rank: usize) -> Result<PathBuf> {
        let d = self
            .run_dir
            .join(format!("attempt_{attempt}"))
            .join(local_rank.to_string());
        std::fs::create_dir_all(&d).map_err(io_error(format!(
            "creating the log directory {}",
            d.display()
        )))?;
        Ok(d)
    }

    /// Removes the temporary directory, if this launcher made one.
    pub(crate) fn remove_temp(&self) {
        if let Some(d) = &self.temp_base {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Where one of a worker's streams goes.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    Inherit,
    File(PathBuf),
    Tee(PathBuf),
}

/// How one worker's stdout and stderr are wired.
#[derive(Clone, Debug)]
pub(crate) struct StreamPlan {
    stdout: Target,
    stderr: Target,
    prefix: String,
}

/// Expands a prefix template for one worker.
pub fn expand_prefix(template: &str, role: &str, rank: usize, local_rank: usize) -> String {
    template
        .replace("${role_name}", role)
        .replace("${rank}", &rank.to_string())
        .replace("${local_rank}", &local_rank.to_string())
}

impl StreamPlan {
    /// The wiring of worker `local_rank` (global `rank`) writing into `dir`.
    pub(crate) fn new(cfg: &LaunchConfig, dir: &Path, rank: usize, local_rank: usize) -> Self {
        let (redirect, tee) = (cfg.redirects.get(local_rank), cfg.tee.get(local_rank));
        let target = |tee: bool, redirect: bool, name: &str| {
            if tee {
                Target::Tee(dir.join(name))
            } else if redirect {
                Target::File(dir.join(name))
            } else {
                Target::Inherit
            }
        };
        let template = cfg
            .log_line_prefix_template
            .as_deref()
            .unwrap_or(DEFAULT_PREFIX_TEMPLATE);
        StreamPlan {
            stdout: target(tee.stdout, redirect.stdout, "stdout.log"),
            stderr: target(tee.stderr, redirect.stderr, "stderr.log"),
            prefix: expand_prefix(template, &cfg.role, rank, local_rank),
        }
    }

    /// Sets the command's stdout and stderr.
    pub(crate) fn apply(&self, cmd: &mut Command) -> Result<()> {
        let stdio = |t: &Target| -> Result<Stdio> {
            Ok(match t {
                Target::Inherit => Stdio::inherit(),
                Target::Tee(_) => Stdio::piped(),
                Target::File(p) => Stdio::from(
                    File::create(p).map_err(io_error(format!("creating {}", p.display())))?,
                ),
            })
        };
        cmd.stdout(stdio(&self.stdout)?);
        cmd.stderr(stdio(&self.stderr)?);
        Ok(())
    }

    /// Starts the threads that copy teed streams to their files and the console.
    pub(crate) fn start_pumps(&self, child: &mut Child) -> Result<Vec<JoinHandle<()>>> {
        let mut pumps = Vec::new();
        if let (Target::Tee(p), Some(out)) = (&self.stdout, child.stdout.take()) {
            pumps.push(pump(out, p, self.prefix.clone(), false)?);
        }
        if let (Target::Tee(p), Some(err)) = (&self.stderr, child.stderr.take()) {
            pumps.push(pump(err, p, self.prefix.clone(), true)?);
        }
        Ok(pumps)
    }
}

fn pump(
    src: impl Read + Send + 'static,
    path: &Path,
    prefix: String,
    to_stderr: bool,
) -> Result<JoinHandle<()>> {
    let mut file = File::create(path).map_err(io_error(format!("creating {}", path.display())))?;
    std::thread::Builder::new()
        .name("tutti-log-tee".into())
        .spawn(move || {
            let mut reader = BufReader::new(src);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let _ = file.write_all(&line);
                if !line.ends_with(b"\n") {
                    line.push(b'\n');
                }
                let mut buf = prefix.as_bytes().to_vec();
                buf.extend_from_slice(&line);
                if to_stderr {
                    let _ = std::io::stderr().lock().write_all(&buf);
                } else {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(&buf);
                    let _ = out.flush();
                }
            }
            let _ = file.flush();
        })
        .map_err(io_error("spawning a log thread".into()))
}

/// Waits up to `limit` for the pump threads (a stream stays open while any
/// descendant of the worker holds it; those threads are left to finish alone).
pub(crate) fn join_pumps(pumps: Vec<JoinHandle<()>>, limit: Duration) {
    let deadline = Instant::now() + limit;
    for p in pumps {
        while !p.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if p.is_finished() {
            let _ = p.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_template() {
        assert_eq!(
            expand_prefix(DEFAULT_PREFIX_TEMPLATE, "trainer", 3, 1),
            "[trainer3]:"
        );
        assert_eq!(
            expand_prefix("${role_name}-${local_rank}> ", "r", 3, 1),
            "r-1> "
        );
    }
}
