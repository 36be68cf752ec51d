//! The group's host layout: which ranks share a window (a "host"), one leader per
//! host, and the link costs the tuner plans with. Everything here is computed from
//! the exchanged [`Topology`] and the registry's [`Selection`], so every rank of the
//! group reaches the same plans.

use tutti_transport::registry::{LinkCost, Selection, Topology};

/// The ranks grouped by window, and what their links cost.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    /// The ranks of each host (window), in rank order; hosts ordered by their lowest
    /// rank.
    pub hosts: Vec<Vec<usize>>,
    /// The host index of every rank.
    pub host_of: Vec<usize>,
    /// The leader (lowest rank) of every host, in host order.
    pub leaders: Vec<usize>,
    /// What a hop costs on each kind of path.
    pub costs: Costs,
    /// Whether the ranks of some host outnumber its cores (the tuner then pipelines
    /// less, [`super::tuner::pick_chunk`]).
    pub crowded: bool,
}

/// Bottleneck link costs (worst alpha and worst beta over the links a schedule
/// crosses).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Costs {
    /// The flat ring over every rank in rank order (`r -> r+1`).
    pub ring: LinkCost,
    /// Between the hosts' leaders.
    pub leaders: LinkCost,
}

const ZERO: LinkCost = LinkCost {
    alpha: 0.0,
    beta: 0.0,
};

impl Layout {
    /// The layout of `topo` under `sel`.
    pub fn new(topo: &Topology, sel: &Selection) -> Layout {
        let n = topo.size();
        let mut host_of = vec![usize::MAX; n];
        let mut hosts: Vec<Vec<usize>> = Vec::new();
        for r in 0..n {
            if host_of[r] != usize::MAX {
                continue;
            }
            let h = hosts.len();
            let members: Vec<usize> = (r..n)
                .filter(|&p| host_of[p] == usize::MAX && sel.window_joins(topo, r, p))
                .collect();
            for &m in &members {
                host_of[m] = h;
            }
            hosts.push(members);
        }
        let link = |a: usize, b: usize| sel.cost(topo, a, b);
        let mut ring = ZERO;
        if n > 1 {
            for r in 0..n {
                ring = ring.worst(link(r, (r + 1) % n));
            }
        }
        let leaders: Vec<usize> = hosts.iter().map(|h| h[0]).collect();
        let mut between = ZERO;
        for (i, &a) in leaders.iter().enumerate() {
            for &b in &leaders[i + 1..] {
                between = between.worst(link(a, b));
            }
        }
        Layout {
            hosts,
            host_of,
            leaders,
            crowded: topo.any_oversubscribed(),
            costs: Costs {
                ring,
                leaders: between,
            },
        }
    }

    /// Whether a hierarchical schedule means anything here: several hosts, and at
    /// least one of them with several ranks.
    pub fn is_hierarchical(&self) -> bool {
        self.hosts.len() > 1 && self.hosts.len() < self.host_of.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tutti_transport::registry::{PeerInfo, names};

    fn topo(hosts: &[&str]) -> Topology {
        Topology {
            peers: hosts
                .iter()
                .map(|h| PeerInfo {
                    host: h.to_string(),
                    cores: 64,
                    usable: names()
                        .into_iter()
                        .filter(|n| *n != "rdma")
                        .map(str::to_string)
                        .collect(),
                })
                .collect(),
            threads: false,
        }
    }

    #[test]
    fn hosts_are_grouped_by_window_in_order_of_their_lowest_rank() {
        let t = topo(&["b", "a", "b", "c", "a"]);
        let l = Layout::new(&t, &Selection::auto());
        assert_eq!(l.hosts, vec![vec![0, 2], vec![1, 4], vec![3]]);
        assert_eq!(l.host_of, vec![0, 1, 0, 2, 1]);
        assert_eq!(l.leaders, vec![0, 1, 3]);
        assert!(l.is_hierarchical());
        assert_eq!(l.costs.leaders, LinkCost::tcp());
        assert_eq!(l.costs.ring, LinkCost::tcp());
        // TCP forced: no window, every rank its own host.
        let tcp = Layout::new(&t, &Selection::by_name("tcp").unwrap());
        assert_eq!(tcp.hosts.len(), 5);
        assert!(!tcp.is_hierarchical());
    }

    #[test]
    fn one_host_is_not_hierarchical_and_its_ring_is_shared_memory() {
        let l = Layout::new(&topo(&["a", "a", "a"]), &Selection::auto());
        assert!(!l.is_hierarchical());
        assert_eq!(l.costs.ring, LinkCost::shm(false));
    }
}
