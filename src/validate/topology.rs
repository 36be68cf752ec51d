//! Which ranks share a node, the nodes' names, and schedules of pairs in rounds.

use serde::{Deserialize, Serialize};

/// A rank's view of where it runs (exchanged between ranks).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The hostname.
    pub hostname: String,
    /// Identifies the host: ranks with equal ids can share memory (hostname, boot
    /// id and mount namespace, as the process group decides).
    pub host_id: String,
    /// The NUMA node this rank is confined to (`None`: its CPUs span several, or
    /// the node is unknown).
    #[serde(default)]
    pub numa: Option<u32>,
}

impl Placement {
    /// This process's placement.
    pub fn here() -> Placement {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        let mnt = std::fs::read_link("/proc/self/ns/mnt")
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let hostname = hostname();
        Placement {
            host_id: format!(
                "{hostname}/{}/{mnt}",
                read("/proc/sys/kernel/random/boot_id")
            ),
            hostname,
            numa: numa_node(),
        }
    }
}

/// CPUs in a list like `0-3,8,10-11`.
pub fn cpu_list(s: &str) -> Vec<usize> {
    s.split(',')
        .filter_map(|r| {
            let r = r.trim();
            let (a, b) = r.split_once('-').unwrap_or((r, r));
            Some(a.trim().parse::<usize>().ok()?..=b.trim().parse::<usize>().ok()?)
        })
        .flatten()
        .collect()
}

/// The one NUMA node every CPU this process may run on belongs to.
fn numa_node() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?;
    let mut node = None;
    for cpu in cpu_list(list) {
        let dir = std::fs::read_dir(format!("/sys/devices/system/cpu/cpu{cpu}")).ok()?;
        let n = dir.flatten().find_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("node")?
                .parse::<u32>()
                .ok()
        })?;
        match node {
            None => node = Some(n),
            Some(m) if m != n => return None,
            Some(_) => {}
        }
    }
    node
}

/// This host's name.
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// A node of the job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Name in reports: the hostname, with `#k` added when hostnames repeat.
    pub name: String,
    /// The hostname.
    pub hostname: String,
    /// Its ranks, ascending.
    pub ranks: Vec<usize>,
}

impl Node {
    /// The rank that speaks for the node (its lowest).
    pub fn leader(&self) -> usize {
        self.ranks[0]
    }
}

/// The job's nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// Nodes in order of their lowest rank.
    pub nodes: Vec<Node>,
    /// Node index of every rank.
    pub node_of: Vec<usize>,
    /// NUMA node of every rank (when confined to one).
    pub numa: Vec<Option<u32>>,
}

impl Topology {
    /// Groups ranks by host id.
    pub fn new(placements: &[Placement]) -> Topology {
        let mut nodes: Vec<Node> = Vec::new();
        let mut ids: Vec<&str> = Vec::new();
        let mut node_of = Vec::with_capacity(placements.len());
        for (r, p) in placements.iter().enumerate() {
            let i = match ids.iter().position(|id| *id == p.host_id) {
                Some(i) => i,
                None => {
                    ids.push(&p.host_id);
                    nodes.push(Node {
                        name: String::new(),
                        hostname: p.hostname.clone(),
                        ranks: Vec::new(),
                    });
                    nodes.len() - 1
                }
            };
            nodes[i].ranks.push(r);
            node_of.push(i);
        }
        let names: Vec<String> = nodes.iter().map(|n| n.hostname.clone()).collect();
        for (i, n) in nodes.iter_mut().enumerate() {
            let dup = names.iter().filter(|h| **h == n.hostname).count() > 1;
            n.name = if dup {
                format!("{}#{i}", n.hostname)
            } else {
                n.hostname.clone()
            };
        }
        let numa = placements.iter().map(|p| p.numa).collect();
        Topology {
            nodes,
            node_of,
            numa,
        }
    }

    /// The node of rank `r`.
    pub fn node(&self, r: usize) -> &Node {
        &self.nodes[self.node_of[r]]
    }

    /// Node name of rank `r`.
    pub fn node_name(&self, r: usize) -> String {
        self.node(r).name.clone()
    }

    /// This rank's index among its node's ranks.
    pub fn local_index(&self, r: usize) -> usize {
        self.node(r).ranks.iter().position(|&x| x == r).unwrap_or(0)
    }

    /// How two ranks of one node share memory, for comparing like with like:
    /// `same NUMA node`, `across NUMA nodes` or `unpinned`.
    pub fn numa_class(&self, a: usize, b: usize) -> &'static str {
        match (self.numa[a], self.numa[b]) {
            (Some(x), Some(y)) if x == y => "same-NUMA",
            (Some(_), Some(_)) => "cross-NUMA",
            _ => "unpinned",
        }
    }

    /// Number of ranks on the node with the most.
    pub fn max_local(&self) -> usize {
        self.nodes.iter().map(|n| n.ranks.len()).max().unwrap_or(0)
    }
}

/// Round-robin rounds over `n` members (the circle method): every pair meets once,
/// each member is in at most one pair per round; `n - 1` rounds for even `n`, `n`
/// for odd.
pub fn rounds(n: usize) -> Vec<Vec<(usize, usize)>> {
    if n < 2 {
        return Vec::new();
    }
    let m = n + n % 2; // a bye for odd n
    let mut ring: Vec<usize> = (0..m).collect();
    let mut out = Vec::with_capacity(m - 1);
    for _ in 0..m - 1 {
        let mut round = Vec::new();
        for i in 0..m / 2 {
            let (a, b) = (ring[i], ring[m - 1 - i]);
            if a < n && b < n {
                round.push((a.min(b), a.max(b)));
            }
        }
        round.sort_unstable();
        out.push(round);
        // Keep the first fixed, rotate the rest.
        let last = ring.pop().unwrap_or(0);
        ring.insert(1, last);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pair_once_and_one_pair_per_member_per_round() {
        for n in 2..12 {
            let rs = rounds(n);
            let mut seen = std::collections::HashSet::new();
            for round in &rs {
                let mut busy = std::collections::HashSet::new();
                for &(a, b) in round {
                    assert!(a < b && b < n);
                    assert!(busy.insert(a) && busy.insert(b), "n={n}: {round:?}");
                    assert!(seen.insert((a, b)), "n={n}: ({a},{b}) twice");
                }
            }
            assert_eq!(seen.len(), n * (n - 1) / 2, "n={n}");
        }
        assert!(rounds(1).is_empty());
    }

    #[test]
    fn nodes_by_host_id_with_unique_names() {
        let p = |h: &str, id: &str| Placement {
            hostname: h.into(),
            host_id: id.into(),
            numa: None,
        };
        let t = Topology::new(&[p("a", "1"), p("a", "2"), p("a", "1"), p("b", "3")]);
        assert_eq!(t.nodes.len(), 3);
        assert_eq!(t.nodes[0].ranks, vec![0, 2]);
        assert_eq!(t.nodes[0].name, "a#0");
        assert_eq!(t.nodes[1].name, "a#1");
        assert_eq!(t.nodes[2].name, "b");
        assert_eq!(t.node_of, vec![0, 1, 0, 2]);
        assert_eq!(t.local_index(2), 1);
        assert_eq!(cpu_list("0-2,5, 7-8"), vec![0, 1, 2, 5, 7, 8]);
    }
}
