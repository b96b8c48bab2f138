//! Process trees built from one process-table snapshot: a process and all its
//! descendants. Orphan trees, kill-tree plans and `leakwatch tree` all start here.

use leakwatch_probe::{ProcessId, ProcessInfo};
use serde::Serialize;
use std::collections::HashMap;

/// Children of every pid in one snapshot of the process table.
#[derive(Debug)]
pub struct ProcessTree<'a> {
    by_pid: HashMap<u32, &'a ProcessInfo>,
    children: HashMap<u32, Vec<&'a ProcessInfo>>,
}

/// One process of a tree, with its depth below the root.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TreeNode<'a> {
    pub depth: usize,
    pub process: &'a ProcessInfo,
}

impl<'a> ProcessTree<'a> {
    /// Indexes `processes` by parent.
    pub fn new(processes: &'a [ProcessInfo]) -> Self {
        let mut children: HashMap<u32, Vec<&ProcessInfo>> = HashMap::new();
        let mut by_pid = HashMap::with_capacity(processes.len());
        for process in processes {
            by_pid.insert(process.id.pid, process);
            // pid 0 on macOS is its own parent; never let a node parent itself.
            if process.ppid != process.id.pid {
                children.entry(process.ppid).or_default().push(process);
            }
        }
        for list in children.values_mut() {
            list.sort_by_key(|p| p.id.pid);
        }
        Self { by_pid, children }
    }

    /// The process with `pid`, if the snapshot has it.
    pub fn get(&self, pid: u32) -> Option<&'a ProcessInfo> {
        self.by_pid.get(&pid).copied()
    }

    /// Direct children of `pid`.
    pub fn children(&self, pid: u32) -> &[&'a ProcessInfo] {
        self.children.get(&pid).map_or(&[], Vec::as_slice)
    }

    /// `root` and every descendant, depth first (parents before children), or
    /// `None` when `root` is not in the snapshot.
    pub fn subtree(&self, root: u32) -> Option<Vec<TreeNode<'a>>> {
        let root = self.get(root)?;
        let mut out = Vec::new();
        let mut stack = vec![TreeNode { depth: 0, process: root }];
        while let Some(node) = stack.pop() {
            out.push(node);
            // Reverse so the lowest pid is visited first.
            for child in self.children(node.process.id.pid).iter().rev() {
                stack.push(TreeNode { depth: node.depth + 1, process: child });
            }
        }
        Some(out)
    }

    /// Identities of `root` and its descendants.
    pub fn subtree_ids(&self, root: u32) -> Vec<ProcessId> {
        self.subtree(root).unwrap_or_default().iter().map(|n| n.process.id).collect()
    }

    /// The chain of ancestors of `pid`, nearest first (its parent, grandparent...).
    pub fn ancestors(&self, pid: u32) -> Vec<&'a ProcessInfo> {
        let mut out = Vec::new();
        let mut current = self.get(pid);
        while let Some(process) = current {
            if process.ppid == process.id.pid || out.len() > self.by_pid.len() {
                break;
            }
            current = self.get(process.ppid);
            if let Some(parent) = current {
                out.push(parent);
            }
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use leakwatch_probe::{ProcessState, StartTime};
    use std::time::UNIX_EPOCH;

    pub(crate) fn process(pid: u32, ppid: u32) -> ProcessInfo {
        ProcessInfo {
            id: ProcessId { pid, start_time: StartTime(u64::from(pid) * 10) },
            ppid,
            pgid: pid,
            sid: pid,
            uid: 1000,
            state: ProcessState::Sleeping,
            name: format!("p{pid}"),
            exe: None,
            argv: Vec::new().into(),
            rss_bytes: Some(1 << 20),
            cpu_time: None,
            threads: Some(1),
            started_at: UNIX_EPOCH,
            is_kernel_thread: false,
        }
    }

    #[test]
    fn subtree_is_depth_first_with_depths() {
        let table = vec![
            process(1, 0),
            process(10, 1),
            process(11, 10),
            process(12, 10),
            process(13, 11),
            process(20, 1),
        ];
        let tree = ProcessTree::new(&table);
        let nodes = tree.subtree(10).unwrap();
        let got: Vec<(u32, usize)> = nodes.iter().map(|n| (n.process.id.pid, n.depth)).collect();
        assert_eq!(got, vec![(10, 0), (11, 1), (13, 2), (12, 1)]);
        assert!(tree.subtree(99).is_none());
        let ancestors: Vec<u32> = tree.ancestors(13).iter().map(|p| p.id.pid).collect();
        assert_eq!(ancestors, vec![11, 10, 1]);
    }

    #[test]
    fn self_parented_pid_zero_does_not_loop() {
        let table = vec![process(0, 0), process(1, 0)];
        let tree = ProcessTree::new(&table);
        assert_eq!(tree.subtree(0).unwrap().len(), 2);
        assert!(tree.ancestors(0).is_empty());
    }
}
