//! Rank assignment: from the launchers of a rendezvous round to every worker's
//! global rank, role rank and world sizes (torchelastic's rules).
//!
//! Launchers are put in group order: grouped by role (roles in the order of their
//! first launcher), then by node rank, then by join order. Each launcher's workers
//! take consecutive global ranks in that order, so the global ranks of one launcher,
//! and of one role, form a consecutive range; role ranks count the role's workers
//! from 0 in the same order.

use serde::{Deserialize, Serialize};

/// What a launcher tells the others when it joins a round.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its workers' role.
    pub role: String,
    /// How many workers it starts.
    pub local_world_size: usize,
    /// Its `--node-rank` (the group rank with the static backend, a sort key otherwise).
    pub node_rank: usize,
    /// Its place in the round's join order (1-based).
    pub seq: u64,
    /// Its host name (for reports).
    pub host: String,
    /// The address other hosts reach it at.
    pub addr: String,
    /// Its process id (for reports).
    pub pid: u32,
}

/// Where one launcher's workers sit in the job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeAssignment {
    /// The launcher's rank among launchers (`GROUP_RANK`).
    pub group_rank: usize,
    /// The number of launchers (`GROUP_WORLD_SIZE`).
    pub group_world_size: usize,
    /// The global rank of its local rank 0.
    pub base_rank: usize,
    /// The number of workers in the job (`WORLD_SIZE`).
    pub world_size: usize,
    /// The role rank of its local rank 0.
    pub role_base_rank: usize,
    /// The number of workers of its role (`ROLE_WORLD_SIZE`).
    pub role_world_size: usize,
    /// Its number of workers (`LOCAL_WORLD_SIZE`).
    pub local_world_size: usize,
}

/// The indices of `nodes` in group order.
pub fn group_order(nodes: &[NodeInfo]) -> Vec<usize> {
    let key = |n: &NodeInfo| (n.node_rank, n.seq);
    // Each role's sort key is that of its first launcher.
    let role_key = |role: &str| {
        nodes
            .iter()
            .filter(|n| n.role == role)
            .map(key)
            .min()
            .unwrap_or((usize::MAX, u64::MAX))
    };
    let mut idx: Vec<usize> = (0..nodes.len()).collect();
    idx.sort_by(|&a, &b| {
        let (na, nb) = (&nodes[a], &nodes[b]);
        (role_key(&na.role), &na.role, key(na)).cmp(&(role_key(&nb.role), &nb.role, key(nb)))
    });
    idx
}

/// The assignment of every launcher in `nodes` (indexed like `nodes`).
pub fn assign(nodes: &[NodeInfo]) -> Vec<NodeAssignment> {
    let order = group_order(nodes);
    let world_size: usize = nodes.iter().map(|n| n.local_world_size).sum();
    let mut out: Vec<Option<NodeAssignment>> = vec![None; nodes.len()];
    let mut base = 0;
    for (group_rank, &i) in order.iter().enumerate() {
        let node = &nodes[i];
        let same_role = |j: &&usize| nodes[**j].role == node.role;
        let role_world_size = order
            .iter()
            .filter(same_role)
            .map(|&j| nodes[j].local_world_size)
            .sum();
        let role_base_rank = order[..group_rank]
            .iter()
            .filter(same_role)
            .map(|&j| nodes[j].local_world_size)
            .sum();
        out[i] = Some(NodeAssignment {
            group_rank,
            group_world_size: nodes.len(),
            base_rank: base,
            world_size,
            role_base_rank,
            role_world_size,
            local_world_size: node.local_world_size,
        });
        base += node.local_world_size;
    }
    out.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(role: &str, lws: usize, node_rank: usize, seq: u64) -> NodeInfo {
        NodeInfo {
            role: role.into(),
            local_world_size: lws,
            node_rank,
            seq,
            host: "h".into(),
            addr: "127.0.0.1".into(),
            pid: 1,
        }
    }

    #[test]
    fn homogeneous_nodes_follow_node_rank() {
        let nodes = [node("default", 2, 1, 1), node("default", 2, 0, 2)];
        let a = assign(&nodes);
        assert_eq!(a[1].group_rank, 0);
        assert_eq!(a[1].base_rank, 0);
        assert_eq!(a[0].group_rank, 1);
        assert_eq!(a[0].base_rank, 2);
        assert!(
            a.iter()
                .all(|x| x.world_size == 4 && x.role_world_size == 4)
        );
        assert_eq!(a[0].role_base_rank, 2);
    }

    #[test]
    fn roles_get_consecutive_ranks() {
        // Joined in a scrambled order; node ranks give master, trainers, ps.
        let nodes = [
            node("ps", 5, 5, 1),
            node("trainer", 3, 3, 2),
            node("master", 1, 0, 3),
            node("trainer", 1, 1, 4),
            node("ps", 2, 6, 5),
            node("trainer", 4, 4, 6),
            node("trainer", 2, 2, 7),
        ];
        let a = assign(&nodes);
        let by_group: Vec<(&str, usize, usize, usize)> = group_order(&nodes)
            .into_iter()
            .map(|i| {
                (
                    nodes[i].role.as_str(),
                    a[i].base_rank,
                    a[i].role_base_rank,
                    a[i].role_world_size,
                )
            })
            .collect();
        assert_eq!(
            by_group,
            [
                ("master", 0, 0, 1),
                ("trainer", 1, 0, 10),
                ("trainer", 2, 1, 10),
                ("trainer", 4, 3, 10),
                ("trainer", 7, 6, 10),
                ("ps", 11, 0, 7),
                ("ps", 16, 5, 7),
            ]
        );
        assert!(
            a.iter()
                .all(|x| x.world_size == 18 && x.group_world_size == 7)
        );
    }

    #[test]
    fn interleaved_roles_are_grouped() {
        let nodes = [node("a", 1, 0, 1), node("b", 1, 1, 2), node("a", 1, 2, 3)];
        let a = assign(&nodes);
        assert_eq!(a[0].base_rank, 0);
        assert_eq!(a[2].base_rank, 1);
        assert_eq!(a[1].base_rank, 2);
        assert_eq!(a[2].role_base_rank, 1);
    }
}
