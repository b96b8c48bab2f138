//! Detection: which processes of a table are reparented, which of those are
//! orphans, and the trees they root.

use super::idle::IdleTracker;
use super::lineage::{Lineage, ParentRecord};
use super::trees::{OrphanMember, OrphanReason, OrphanTree};
use super::wrappers::{Wrapper, fold_wrappers, passes_through};
use super::{is_dead, live_by_pid};
use crate::model::{UnixMillis, unix_millis};
use crate::tree::ProcessTree;
use leakwatch_probe::{ProcessId, ProcessInfo};
use regex::Regex;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// Finds the orphan trees of `table`.
///
/// A process is a candidate root when it is alive (zombies are dead), not a kernel
/// thread, not pid 0 or 1, not a child of pid 0 or of the kernel's thread daemon,
/// not Leakwatch itself, owned by `only_uid` when that is given, and
/// **reparented**, which takes one of:
/// - its parent is pid 1 (launchd, init);
/// - the lineage recorded another original parent, and that one is dead (its new
///   parent is a Linux subreaper);
/// - its parent started after it did, so cannot have forked it;
/// - its parent is a `systemd --user` instance, the subreaper Linux desktops
///   reparent to (without lineage history that is all a one-shot can tell; a
///   service it started itself leads its own group and session and so is not
///   taken by the leader rule below).
///
/// It is an orphan for the first of these that holds: the lineage shows its
/// original parent died ([`OrphanReason::ParentDied`]); its group or session
/// leader is gone ([`OrphanReason::LeaderGone`]; never for a process leading
/// both its own group and session, and never when the OS reports the id as 0,
/// i.e. outside this pid namespace); its command line matches one of `patterns`
/// ([`OrphanReason::Pattern`]; for a launcher wrapper the worker's command line
/// counts too). A candidate inside another candidate's tree is part of that
/// tree, and a tree that holds Leakwatch (this process, so also its ancestors, or
/// another process of the same name or executable, such as a detached `leakwatch
/// daemon`) is never reported: cleaning it up would take the watchdog down.
///
/// `fds` counts a member's descriptors (`probe.fd_count`), `None` when not
/// permitted. Trees come largest resident memory first.
pub fn find_orphans(
    table: &[ProcessInfo],
    lineage: &Lineage,
    idle: &IdleTracker,
    patterns: &[Regex],
    only_uid: Option<u32>,
    fds: impl Fn(u32) -> Option<u64>,
    now: UnixMillis,
) -> Vec<OrphanTree> {
    let own = std::process::id();
    let live = live_by_pid(table);
    let live_ids: HashSet<ProcessId> = live.values().map(|p| p.id).collect();
    let tree = ProcessTree::new(table);
    let kthreadd = live.get(&2).is_some_and(|p| p.is_kernel_thread).then_some(2);
    let me = live.get(&own).copied();
    let is_leakwatch = |p: &ProcessInfo| {
        p.id.pid == own
            || me.is_some_and(|me| me.name == p.name || (me.exe.is_some() && me.exe == p.exe))
    };

    let mut candidates: Vec<(&ProcessInfo, OrphanReason, Option<ParentRecord>)> = Vec::new();
    for process in live.values() {
        if process.is_kernel_thread
            || process.id.pid <= 1
            || process.ppid == 0
            || Some(process.ppid) == kthreadd
            || is_leakwatch(process)
            || only_uid.is_some_and(|uid| process.uid != uid)
        {
            continue;
        }
        if !reparented(process, &live, &live_ids, lineage) {
            continue;
        }
        let dead_parent =
            lineage.original_parent(&process.id).filter(|parent| !live_ids.contains(&parent.id));
        let reason = if dead_parent.is_some() {
            OrphanReason::ParentDied
        } else if leader_gone(process, &live) {
            OrphanReason::LeaderGone
        } else if let Some(re) = matching_pattern(process, &tree, patterns) {
            OrphanReason::Pattern(re.as_str().to_owned())
        } else {
            continue;
        };
        candidates.push((process, reason, dead_parent.cloned()));
    }

    let roots: HashSet<u32> = candidates.iter().map(|(p, _, _)| p.id.pid).collect();
    let mut trees = Vec::new();
    for (root, reason, original_parent) in candidates {
        if tree.ancestors(root.id.pid).iter().any(|a| roots.contains(&a.id.pid)) {
            continue;
        }
        let Some(nodes) = tree.subtree(root.id.pid) else { continue };
        let nodes: Vec<_> = nodes.into_iter().filter(|n| !is_dead(n.process)).collect();
        if nodes.iter().any(|n| is_leakwatch(n.process)) {
            continue;
        }
        let mut members: Vec<OrphanMember> = nodes
            .iter()
            .map(|node| {
                let p = node.process;
                OrphanMember {
                    id: p.id,
                    ppid: p.ppid,
                    depth: node.depth,
                    name: p.name.clone(),
                    argv: p.argv.clone(),
                    rss_bytes: p.rss_bytes,
                    fds: fds(p.id.pid),
                    cpu_seconds: p.cpu_time.map(|d| d.as_secs_f64()),
                    label: None,
                    folded_into: None,
                }
            })
            .collect();
        fold_wrappers(&mut members);
        let idle_for = members
            .iter()
            .map(|m| idle.idle_for(&m.id, now))
            .collect::<Option<Vec<Duration>>>()
            .and_then(|all| all.into_iter().min());
        let label = members.first().map(OrphanMember::display).unwrap_or_default();
        trees.push(OrphanTree {
            root: root.id,
            reason,
            original_parent,
            label,
            total_rss_bytes: members.iter().filter_map(|m| m.rss_bytes).sum(),
            total_fds: members.iter().filter_map(|m| m.fds).sum(),
            members,
            age: Duration::from_millis(now.saturating_sub(unix_millis(root.started_at))),
            idle_for,
            watched: Vec::new(),
        });
    }
    trees.sort_by(|a, b| b.total_rss_bytes.cmp(&a.total_rss_bytes).then(a.root.cmp(&b.root)));
    trees
}

/// Whether `process` was reparented (see [`find_orphans`]).
fn reparented(
    process: &ProcessInfo,
    live: &HashMap<u32, &ProcessInfo>,
    live_ids: &HashSet<ProcessId>,
    lineage: &Lineage,
) -> bool {
    if process.ppid == 1 {
        return true;
    }
    // A parent that is gone while the child still names it: the table was read
    // mid-exit; the next scan will tell.
    let Some(parent) = live.get(&process.ppid) else { return false };
    if parent.is_kernel_thread {
        return false;
    }
    if let Some(original) = lineage.original_parent(&process.id) {
        if original.id == parent.id {
            return false;
        }
        if !live_ids.contains(&original.id) {
            return true;
        }
    }
    parent.id.start_time > process.id.start_time || is_session_subreaper(parent)
}

/// `systemd --user`: where orphans of a Linux desktop session land.
fn is_session_subreaper(process: &ProcessInfo) -> bool {
    process.name == "systemd" && process.argv.iter().any(|a| a == "--user")
}

/// Whether `process`'s group or session leader no longer exists.
fn leader_gone(process: &ProcessInfo, live: &HashMap<u32, &ProcessInfo>) -> bool {
    let pid = process.id.pid;
    if process.pgid == pid && process.sid == pid {
        return false;
    }
    // While a group or session exists the kernel does not hand its id out as a
    // new pid, so a live process with that pid still in it is its leader.
    let group_gone = process.pgid != 0
        && process.pgid != pid
        && live.get(&process.pgid).is_none_or(|l| l.pgid != process.pgid);
    let session_gone = process.sid != 0
        && process.sid != pid
        && live.get(&process.sid).is_none_or(|l| l.sid != process.sid);
    group_gone || session_gone
}

/// The first pattern matching `process`'s command line or, when it is a launcher
/// wrapper, that of the worker it runs. Only the root and its worker: a pattern
/// matching something deep inside a reparented tmux server must not make the
/// whole server an orphan.
fn matching_pattern<'r>(
    process: &ProcessInfo,
    tree: &ProcessTree<'_>,
    patterns: &'r [Regex],
) -> Option<&'r Regex> {
    if patterns.is_empty() {
        return None;
    }
    let mut lines = vec![process.command_line()];
    if Wrapper::parse(&process.argv).is_some() {
        let mut current = process;
        while let [only] = tree.children(current.id.pid) {
            if is_dead(only) {
                break;
            }
            lines.push(only.command_line());
            if !passes_through(&only.argv) || lines.len() > 8 {
                break;
            }
            current = only;
        }
    }
    patterns.iter().find(|re| lines.iter().any(|line| re.is_match(line)))
}
