//! Reading Slurm's description of a job: hostlists (`node[01-04,07]`), task counts
//! per node (`2(x3),1`), and the step a task (or a launcher started by `srun`)
//! belongs to. Used by `tutti run` under `srun` and by
//! `tutti::ProcessGroup::from_env`. Every error names the variable that was wrong.

use std::env::VarError;

/// The most hosts a hostlist may expand to (a forged `n[0-999999999]` is refused).
pub const MAX_HOSTS: usize = 1 << 20;

/// A Slurm variable that is missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {variable}: {message}")]
pub struct SlurmEnvError {
    /// The variable.
    pub variable: String,
    /// What was wrong with it.
    pub message: String,
}

fn err(variable: &str, message: impl Into<String>) -> SlurmEnvError {
    SlurmEnvError {
        variable: variable.to_string(),
        message: message.into(),
    }
}

/// Expands a Slurm hostlist: comma-separated names, each with any number of
/// bracketed range lists (`node[01-04,07]`, `rack[1-2]-gpu[1-2]`); zero padding
/// follows the lower bound's width. Names come out in Slurm's order.
pub fn expand_hostlist(list: &str) -> Result<Vec<String>, String> {
    let mut hosts = Vec::new();
    for item in split_top_level(list)? {
        if item.is_empty() {
            return Err(format!("empty host name in {list:?}"));
        }
        let mut names = vec![String::new()];
        let mut rest = item;
        while let Some(open) = rest.find('[') {
            let close = rest[open..]
                .find(']')
                .map(|c| open + c)
                .ok_or_else(|| format!("unclosed '[' in {item:?}"))?;
            let prefix = &rest[..open];
            let values =
                expand_ranges(&rest[open + 1..close]).map_err(|e| format!("{e} in {item:?}"))?;
            let mut next = Vec::with_capacity(names.len() * values.len());
            for n in &names {
                for v in &values {
                    next.push(format!("{n}{prefix}{v}"));
                }
            }
            if hosts.len() + next.len() > MAX_HOSTS {
                return Err(format!("{list:?} expands to more than {MAX_HOSTS} hosts"));
            }
            names = next;
            rest = &rest[close + 1..];
        }
        if rest.contains(']') {
            return Err(format!("unmatched ']' in {item:?}"));
        }
        hosts.extend(names.into_iter().map(|n| n + rest));
    }
    if hosts.is_empty() {
        return Err("the hostlist is empty".into());
    }
    Ok(hosts)
}

/// Splits at the commas outside brackets.
fn split_top_level(list: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in list.char_indices() {
        match c {
            '[' if depth == 0 => depth = 1,
            '[' => return Err(format!("nested '[' in {list:?}")),
            ']' if depth == 1 => depth = 0,
            ']' => return Err(format!("unmatched ']' in {list:?}")),
            ',' if depth == 0 => {
                parts.push(list[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("unclosed '[' in {list:?}"));
    }
    parts.push(list[start..].trim());
    Ok(parts)
}

/// `01-04,07` -> `01 02 03 04 07`.
fn expand_ranges(ranges: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for r in ranges.split(',') {
        let r = r.trim();
        let (lo, hi) = r.split_once('-').unwrap_or((r, r));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(lo) || !digits(hi) {
            return Err(format!("range {r:?} is not N or N-M"));
        }
        let (a, b): (u64, u64) = match (lo.parse(), hi.parse()) {
            (Ok(a), Ok(b)) => (a, b),
            _ => return Err(format!("range {r:?} is too large")),
        };
        if b < a {
            return Err(format!("range {r:?} runs backwards"));
        }
        if b - a >= MAX_HOSTS as u64 || out.len() + (b - a) as usize >= MAX_HOSTS {
            return Err(format!("range {r:?} has more than {MAX_HOSTS} values"));
        }
        let width = lo.len();
        out.extend((a..=b).map(|v| format!("{v:0width$}")));
    }
    Ok(out)
}

/// Parses Slurm's tasks per node (`SLURM_TASKS_PER_NODE`,
/// `SLURM_STEP_TASKS_PER_NODE`): `2(x3),1` -> `[2, 2, 2, 1]`.
pub fn parse_tasks_per_node(s: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let (count, repeat) = match part.split_once('(') {
            None => (part, 1usize),
            Some((count, rep)) => {
                let n = rep
                    .strip_prefix('x')
                    .and_then(|r| r.strip_suffix(')'))
                    .and_then(|r| r.parse::<usize>().ok())
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("{part:?} is not N or N(xM)"))?;
                (count, n)
            }
        };
        let count: usize = count
            .parse()
            .map_err(|_| format!("{part:?} is not N or N(xM)"))?;
        if out.len() + repeat > MAX_HOSTS {
            return Err(format!("{s:?} describes more than {MAX_HOSTS} nodes"));
        }
        out.extend(std::iter::repeat_n(count, repeat));
    }
    Ok(out)
}

/// The port a job's rendezvous uses when `MASTER_PORT` is not set: `20000 +
/// job_id % 10000`, so that concurrent jobs on one host (different Slurm job ids,
/// or Open MPI job ids) pick different ports and every task of one job the same.
pub fn job_port(job_id: u64) -> u16 {
    20000 + (job_id % 10000) as u16
}

fn var(name: &str) -> Result<Option<String>, SlurmEnvError> {
    match std::env::var(name) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => Ok(Some(v.trim().to_string())),
        Err(VarError::NotPresent) => Ok(None),
        Err(VarError::NotUnicode(_)) => Err(err(name, "is not valid UTF-8")),
    }
}

fn num(name: &str) -> Result<Option<usize>, SlurmEnvError> {
    var(name)?
        .map(|v| {
            v.parse::<usize>()
                .map_err(|_| err(name, format!("{v:?} is not a non-negative integer")))
        })
        .transpose()
}

fn required(name: &str, why: &str) -> Result<usize, SlurmEnvError> {
    num(name)?.ok_or_else(|| err(name, format!("is not set ({why})")))
}

/// The first of the variables that is set, with its name.
fn first_of(names: &[&'static str]) -> Result<Option<(&'static str, String)>, SlurmEnvError> {
    for n in names {
        if let Some(v) = var(n)? {
            return Ok(Some((n, v)));
        }
    }
    Ok(None)
}

/// A task of a Slurm step, as its variables describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmTask {
    /// `SLURM_PROCID`.
    pub rank: usize,
    /// `SLURM_NTASKS`.
    pub world_size: usize,
    /// `SLURM_LOCALID`.
    pub local_rank: usize,
    /// Tasks on this node: this node's entry of `SLURM_STEP_TASKS_PER_NODE` (or
    /// `SLURM_TASKS_PER_NODE`), else `SLURM_NTASKS_PER_NODE`.
    pub local_world_size: usize,
    /// `SLURM_NODEID` (0 when absent and the step has one node).
    pub node_id: usize,
    /// Nodes of the step: the length of the tasks-per-node list.
    pub nnodes: usize,
    /// The step's hosts (`SLURM_STEP_NODELIST`, else `SLURM_JOB_NODELIST`), expanded;
    /// empty when neither is set.
    pub hosts: Vec<String>,
    /// `SLURM_JOB_ID`.
    pub job_id: Option<u64>,
}

impl SlurmTask {
    /// Reads the task from the environment: `None` when `SLURM_PROCID` is unset
    /// (not under Slurm); an error naming the variable when one is missing,
    /// malformed or inconsistent with the others.
    pub fn from_env() -> Result<Option<SlurmTask>, SlurmEnvError> {
        let Some(rank) = num("SLURM_PROCID")? else {
            return Ok(None);
        };
        let why = "SLURM_PROCID is set";
        let world_size = required("SLURM_NTASKS", why)?;
        if rank >= world_size {
            return Err(err(
                "SLURM_PROCID",
                format!("{rank} is not below SLURM_NTASKS={world_size}"),
            ));
        }
        let local_rank = required("SLURM_LOCALID", why)?;
        let node_id = num("SLURM_NODEID")?;
        let per_node = match first_of(&["SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE"])? {
            Some((name, v)) => {
                let list = parse_tasks_per_node(&v).map_err(|m| err(name, m))?;
                let total: usize = list.iter().sum();
                if total != world_size {
                    return Err(err(
                        name,
                        format!("{v:?} adds up to {total} tasks, but SLURM_NTASKS={world_size}"),
                    ));
                }
                Some((name, list))
            }
            None => None,
        };
        let (local_world_size, nnodes, node_id) = match (per_node, node_id) {
            (Some((name, list)), node) => {
                let node = match node {
                    Some(n) => n,
                    None if list.len() == 1 => 0,
                    None => {
                        return Err(err(
                            "SLURM_NODEID",
                            format!("is not set ({name} describes {} nodes)", list.len()),
                        ));
                    }
                };
                let here = *list.get(node).ok_or_else(|| {
                    err(
                        "SLURM_NODEID",
                        format!("{node} is not below the {} nodes of {name}", list.len()),
                    )
                })?;
                (here, list.len(), node)
            }
            (None, node) => {
                let n = required(
                    "SLURM_NTASKS_PER_NODE",
                    "nor SLURM_STEP_TASKS_PER_NODE or SLURM_TASKS_PER_NODE",
                )?;
                if n == 0 || world_size % n != 0 {
                    return Err(err(
                        "SLURM_NTASKS_PER_NODE",
                        format!("{n} does not divide SLURM_NTASKS={world_size}"),
                    ));
                }
                (n, world_size / n, node.unwrap_or(0))
            }
        };
        if local_rank >= local_world_size {
            return Err(err(
                "SLURM_LOCALID",
                format!("{local_rank} is not below the {local_world_size} tasks of node {node_id}"),
            ));
        }
        let hosts = match first_of(&["SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST"])? {
            Some((name, v)) => {
                let hosts = expand_hostlist(&v).map_err(|m| err(name, m))?;
                if name == "SLURM_STEP_NODELIST" && hosts.len() != nnodes {
                    return Err(err(
                        name,
                        format!(
                            "{v:?} names {} hosts, but the step has {nnodes} nodes",
                            hosts.len()
                        ),
                    ));
                }
                hosts
            }
            None => Vec::new(),
        };
        let job_id = var("SLURM_JOB_ID")?
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| err("SLURM_JOB_ID", format!("{v:?} is not a number")))
            })
            .transpose()?;
        Ok(Some(SlurmTask {
            rank,
            world_size,
            local_rank,
            local_world_size,
            node_id,
            nnodes,
            hosts,
            job_id,
        }))
    }

    /// The host of the job's rendezvous: the step's first host (where task 0 runs,
    /// Slurm's block distribution).
    pub fn first_host(&self) -> Option<&str> {
        self.hosts.first().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_hostlists() {
        assert_eq!(
            expand_hostlist("node[01-04,07]").unwrap(),
            ["node01", "node02", "node03", "node04", "node07"]
        );
        assert_eq!(
            expand_hostlist("a,b[8-10],c-ib").unwrap(),
            ["a", "b8", "b9", "b10", "c-ib"]
        );
        assert_eq!(
            expand_hostlist("r[1-2]-n[009-010]").unwrap(),
            ["r1-n009", "r1-n010", "r2-n009", "r2-n010"]
        );
        assert_eq!(expand_hostlist("gpu[3]").unwrap(), ["gpu3"]);
        for bad in [
            "",
            "node[01-",
            "node]",
            "n[a-b]",
            "n[4-2]",
            "n[1-2",
            "a,,b",
            "n[[1]]",
            "n[0-99999999]",
        ] {
            assert!(expand_hostlist(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parses_tasks_per_node() {
        assert_eq!(parse_tasks_per_node("2(x3)").unwrap(), [2, 2, 2]);
        assert_eq!(parse_tasks_per_node("2(x3),1").unwrap(), [2, 2, 2, 1]);
        assert_eq!(parse_tasks_per_node("4").unwrap(), [4]);
        for bad in ["", "2(x", "2(3)", "x", "2(x0)", "-1"] {
            assert!(parse_tasks_per_node(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn job_ports_are_in_range() {
        assert_eq!(job_port(0), 20000);
        assert_eq!(job_port(123_456), 23456);
        assert!(job_port(u64::MAX) < 30000);
    }
}
