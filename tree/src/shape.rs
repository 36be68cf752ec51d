//! Tree shapes: balanced binary trees over ranks, in-order numbered, and the mirror
//! tree that makes the pair complementary.

/// A rank's neighbours in one binary tree over `n` ranks (in-order numbering, as
/// NCCL builds its trees): the parent (`None` at the root) and up to two children.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeNode {
    /// The parent rank, `None` for the root.
    pub parent: Option<usize>,
    /// The children ranks.
    pub children: [Option<usize>; 2],
}

/// The node of `rank` in the first tree of the double binary tree over `n` ranks:
/// a balanced binary tree whose in-order traversal is `0..n`.
pub fn tree_node(rank: usize, n: usize) -> TreeNode {
    fn build(lo: usize, hi: usize, parent: Option<usize>, rank: usize) -> Option<TreeNode> {
        if lo >= hi {
            return None;
        }
        let mid = lo + (hi - lo) / 2;
        let child = |l: usize, h: usize| (l < h).then(|| l + (h - l) / 2);
        if rank == mid {
            return Some(TreeNode {
                parent,
                children: [child(lo, mid), child(mid + 1, hi)],
            });
        }
        if rank < mid {
            build(lo, mid, Some(mid), rank)
        } else {
            build(mid + 1, hi, Some(mid), rank)
        }
    }
    build(0, n, None, rank).unwrap_or(TreeNode {
        parent: None,
        children: [None, None],
    })
}

/// The node of `rank` in the second tree: the first tree mirrored (rank `r` plays
/// the role of `n - 1 - r`), so that leaves of one tree are interior in the other
/// when `n` is even.
pub fn mirror_tree_node(rank: usize, n: usize) -> TreeNode {
    let m = |r: usize| n - 1 - r;
    let t = tree_node(m(rank), n);
    TreeNode {
        parent: t.parent.map(m),
        children: [t.children[0].map(m), t.children[1].map(m)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rank_but_the_root_has_a_parent_that_lists_it() {
        for n in 1..20 {
            for tree in [tree_node as fn(usize, usize) -> TreeNode, mirror_tree_node] {
                let roots: Vec<_> = (0..n).filter(|&r| tree(r, n).parent.is_none()).collect();
                assert_eq!(roots.len(), 1, "n={n}");
                for r in 0..n {
                    if let Some(p) = tree(r, n).parent {
                        assert!(tree(p, n).children.contains(&Some(r)), "n={n} r={r}");
                    }
                }
            }
        }
    }
}
