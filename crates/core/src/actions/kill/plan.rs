//! Recording the trees to kill ([`super::KillPlan`]): each root pinned by
//! identity, every descendant listed, protected processes marked as left alone.

use super::guard::{Guard, Shield};
use super::outcome::Refusal;
use super::{KillError, KillPlan, PlannedProcess};
use crate::tree::ProcessTree;
use leakwatch_probe::{ProcessId, ProcessInfo};
use std::collections::HashSet;
use std::time::Duration;

/// Each root pinned by identity, as `table` has it now: live, or left alone with
/// why (gone, its pid now another process's, or what `left_alone` says of it).
pub(super) fn pinned_roots(
    table: &[ProcessInfo],
    roots: &[ProcessId],
    left_alone: impl Fn(&ProcessInfo) -> Option<Refusal>,
) -> Vec<Root> {
    roots
        .iter()
        .map(|&id| match table.iter().find(|p| p.id.pid == id.pid) {
            Some(p) if p.id == id => match left_alone(p) {
                Some(reason) => Root::Stale(id, reason),
                None => Root::Live(id),
            },
            Some(_) => Root::Stale(id, Refusal::PidReused { pid: id.pid }),
            None => Root::Stale(id, Refusal::NotRunning),
        })
        .collect()
}

/// A root as asked for.
pub(super) enum Root {
    Live(ProcessId),
    Stale(ProcessId, Refusal),
}

pub(super) fn build_plan(
    table: &[ProcessInfo],
    roots: &[Root],
    grace: Duration,
    guard: &Guard,
) -> Result<KillPlan, KillError> {
    let shield = Shield::new(Some(table));
    let tree = ProcessTree::new(table);
    let mut plan = KillPlan { roots: Vec::new(), grace, processes: Vec::new() };
    let mut seen = HashSet::new();
    for root in roots {
        let id = match root {
            Root::Live(id) => *id,
            Root::Stale(id, reason) => {
                if seen.insert(id.pid) {
                    // Still running when it is left alone for a protection.
                    let live = tree.get(id.pid).filter(|p| p.id == *id);
                    plan.roots.push(*id);
                    plan.processes.push(PlannedProcess {
                        id: *id,
                        ppid: live.map_or(0, |p| p.ppid),
                        depth: 0,
                        name: live.map(|p| p.name.clone()).unwrap_or_default(),
                        argv: live.map(|p| p.argv.to_vec()).unwrap_or_default(),
                        rss_bytes: live.and_then(|p| p.rss_bytes),
                        protected: Some(reason.clone()),
                    });
                }
                continue;
            }
        };
        let Some(nodes) = tree.subtree(id.pid) else {
            return Err(KillError::NoSuchProcess { pid: id.pid });
        };
        if let Some(root) = nodes.first()
            && let Some(reason) = shield.check(guard, root.process)
        {
            return Err(KillError::Refused { pid: id.pid, reason });
        }
        plan.roots.push(id);
        for node in nodes {
            let p = node.process;
            if !seen.insert(p.id.pid) {
                continue;
            }
            plan.processes.push(PlannedProcess {
                id: p.id,
                ppid: p.ppid,
                depth: node.depth,
                name: p.name.clone(),
                argv: p.argv.to_vec(),
                rss_bytes: p.rss_bytes,
                protected: shield.check(guard, p),
            });
        }
    }
    Ok(plan)
}
