//! Orphaned process trees (DESIGN.md, "Orphans"). They exist because of the
//! seeds: MCP servers started as `uv tool uvx X` (plus the python it runs) keep
//! running, reparented to launchd or init, whenever whatever started them is
//! SIGKILLed — eleven such pairs after three days in seed 001 — and idle multi-GB
//! REPLs that nothing ever reaps pile up (seed 003). Nobody sees them because
//! nobody owns them any more; this module finds them and describes them so a
//! person (or the opt-in idle reaper) can act.
//!
//! Everything here is pure: a process table in, trees out. The engine keeps the
//! two pieces of history detection needs across scans — the [`Lineage`] journal
//! (who started whom, recorded while the parent lived) and the [`IdleTracker`]
//! (when each process last used CPU) — and a one-shot CLI simply passes empty
//! ones.
//!
//! A process is **reparented** when its parent is pid 1, or on Linux a subreaper
//! that is not the parent it started with ([`find_orphans`] lists the evidence it
//! accepts). A reparented process is an **orphan** when its group or session
//! leader is gone, when the lineage shows its original parent died, or when it
//! matches an `[orphans] match` pattern ([`OrphanReason`]).

use crate::model::{UnixMillis, unix_millis};
use crate::tree::ProcessTree;
use leakwatch_probe::{ProcessId, ProcessInfo, ProcessState};
use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// How long the lineage remembers a process after it was last seen.
pub const LINEAGE_RETENTION: Duration = Duration::from_secs(3600);
/// The most entries the lineage keeps, whatever the table's size.
pub const LINEAGE_CAPACITY: usize = 32_768;

/// A process that has exited but is not reaped yet is dead for every purpose
/// here: it holds no memory or descriptors, leads nothing and cannot be signalled.
/// (Some inits, like this project's CI machine's, reap slowly.)
fn is_dead(process: &ProcessInfo) -> bool {
    matches!(process.state, ProcessState::Zombie | ProcessState::Dead)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The live (not zombie) processes of a table by pid.
fn live_by_pid(table: &[ProcessInfo]) -> HashMap<u32, &ProcessInfo> {
    table.iter().filter(|p| !is_dead(p)).map(|p| (p.id.pid, p)).collect()
}

// ---------------------------------------------------------------------------------
// Lineage
// ---------------------------------------------------------------------------------

/// The parent a process had when Leakwatch first saw both alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ParentRecord {
    #[serde(flatten)]
    pub id: ProcessId,
    pub name: String,
    pub argv: Arc<[String]>,
}

/// What the lineage knows of one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineageEntry {
    /// The process's own command line when first recorded.
    pub argv: Arc<[String]>,
    /// Its parent at that time.
    pub parent: ParentRecord,
    pub recorded_at: UnixMillis,
    /// The last scan that saw the process alive.
    pub last_seen: UnixMillis,
}

/// The lineage journal: for every process, its original parent, recorded while
/// that parent was alive. After a SIGKILL the child's `ppid` says 1 (or a
/// subreaper) and the kernel has forgotten who started it; the journal has not,
/// so "its parent died" is evidence, not a guess.
///
/// Bounded: an entry is forgotten [`LINEAGE_RETENTION`] after its process was last
/// seen, and the journal never holds more than its capacity (gone processes go
/// first, oldest first; then the most recently recorded live ones).
#[derive(Debug, Clone)]
pub struct Lineage {
    entries: HashMap<ProcessId, LineageEntry>,
    retention: Duration,
    capacity: usize,
}

impl Default for Lineage {
    fn default() -> Self {
        Self::new()
    }
}

impl Lineage {
    /// An empty journal with the default bounds.
    pub fn new() -> Self {
        Self::with_limits(LINEAGE_RETENTION, LINEAGE_CAPACITY)
    }

    /// An empty journal forgetting gone processes after `retention` and holding
    /// at most `capacity` entries.
    pub fn with_limits(retention: Duration, capacity: usize) -> Self {
        Self { entries: HashMap::new(), retention, capacity }
    }

    /// Number of processes remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What is known of `id`.
    pub fn entry(&self, id: &ProcessId) -> Option<&LineageEntry> {
        self.entries.get(id)
    }

    /// Records every live process of `table` whose parent is alive too (and is
    /// not pid 0 or 1, which never die: nothing to learn). A process already
    /// known keeps its first record: a parent only ever changes by reparenting,
    /// so the first parent seen is the original one. A parent that started after
    /// its child cannot have forked it (the child was reparented before Leakwatch
    /// first saw it), so it is not recorded as the original. Then forgets what is
    /// past the bounds.
    pub fn record(&mut self, table: &[ProcessInfo], now: UnixMillis) {
        let live = live_by_pid(table);
        for process in live.values() {
            if process.is_kernel_thread {
                continue;
            }
            if let Some(entry) = self.entries.get_mut(&process.id) {
                entry.last_seen = now;
                continue;
            }
            if process.ppid <= 1 || process.ppid == process.id.pid {
                continue;
            }
            let Some(parent) = live.get(&process.ppid) else { continue };
            if parent.id.start_time > process.id.start_time {
                continue;
            }
            self.entries.insert(
                process.id,
                LineageEntry {
                    argv: process.argv.clone(),
                    parent: ParentRecord {
                        id: parent.id,
                        name: parent.name.clone(),
                        argv: parent.argv.clone(),
                    },
                    recorded_at: now,
                    last_seen: now,
                },
            );
        }
        self.prune(&live, now);
    }

    fn prune(&mut self, live: &HashMap<u32, &ProcessInfo>, now: UnixMillis) {
        let alive = |id: &ProcessId| live.get(&id.pid).is_some_and(|p| p.id == *id);
        let retention = millis(self.retention);
        self.entries.retain(|id, e| alive(id) || now.saturating_sub(e.last_seen) <= retention);
        if self.entries.len() <= self.capacity {
            return;
        }
        let mut excess = self.entries.len() - self.capacity;
        // Gone ones first, the longest gone first.
        let mut gone: Vec<(UnixMillis, ProcessId)> = self
            .entries
            .iter()
            .filter(|(id, _)| !alive(id))
            .map(|(id, e)| (e.last_seen, *id))
            .collect();
        gone.sort_unstable();
        for (_, id) in gone.into_iter().take(excess) {
            self.entries.remove(&id);
            excess -= 1;
        }
        if excess == 0 {
            return;
        }
        // Then the newest live ones: the long-lived are the ones worth knowing
        // about (a server started days ago is what gets orphaned).
        let mut newest: Vec<(std::cmp::Reverse<UnixMillis>, ProcessId)> =
            self.entries.iter().map(|(id, e)| (std::cmp::Reverse(e.recorded_at), *id)).collect();
        newest.sort_unstable();
        for (_, id) in newest.into_iter().take(excess) {
            self.entries.remove(&id);
        }
    }

    /// The parent `id` had when first recorded.
    pub fn original_parent(&self, id: &ProcessId) -> Option<&ParentRecord> {
        self.entries.get(id).map(|e| &e.parent)
    }

    /// Whether `id`'s recorded original parent is no longer alive in `table` (a
    /// zombie counts as dead; a pid now held by another process does not count as
    /// alive). `false` when there is no record.
    pub fn parent_died(&self, id: &ProcessId, table: &[ProcessInfo]) -> bool {
        self.original_parent(id)
            .is_some_and(|parent| !table.iter().any(|p| p.id == parent.id && !is_dead(p)))
    }
}

// ---------------------------------------------------------------------------------
// Idle time
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CpuMark {
    cpu: Duration,
    since: UnixMillis,
}

/// When each process last used CPU: its CPU time and the scan at which that time
/// last changed. Idle means "CPU time unchanged since", so a process is idle for
/// at least as long as it has been watched without its CPU time advancing; a
/// process seen for the first time has been idle for zero so far. Holds live
/// identities only (each [`observe`](Self::observe) drops the rest).
#[derive(Debug, Clone, Default)]
pub struct IdleTracker {
    marks: HashMap<ProcessId, CpuMark>,
}

impl IdleTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes the CPU time of every live process of `table` at `now`.
    pub fn observe(&mut self, table: &[ProcessInfo], now: UnixMillis) {
        let mut next = HashMap::with_capacity(table.len());
        for process in table.iter().filter(|p| !is_dead(p)) {
            let Some(cpu) = process.cpu_time else { continue };
            let mark = match self.marks.get(&process.id) {
                Some(mark) if mark.cpu == cpu => *mark,
                _ => CpuMark { cpu, since: now },
            };
            next.insert(process.id, mark);
        }
        self.marks = next;
    }

    /// How long `id`'s CPU time has not moved, as of `now`; `None` when it was
    /// never observed (or the OS hides its CPU time).
    pub fn idle_for(&self, id: &ProcessId, now: UnixMillis) -> Option<Duration> {
        self.marks.get(id).map(|m| Duration::from_millis(now.saturating_sub(m.since)))
    }

    /// Number of processes tracked.
    pub fn len(&self) -> usize {
        self.marks.len()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.marks.is_empty()
    }
}

// ---------------------------------------------------------------------------------
// Orphan trees
// ---------------------------------------------------------------------------------

/// Why a reparented process counts as an orphan. In JSON: `"reason":
/// "leader_gone"`, `"parent_died"`, or `"pattern"` with `"pattern": "<regex>"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "reason", content = "pattern", rename_all = "snake_case")]
pub enum OrphanReason {
    /// Its process group's or session's leader no longer exists: it was part of a
    /// job whose leader died. (A process leading both its own group and its own
    /// session, like a launchd agent or a systemd service, never counts so.)
    LeaderGone,
    /// The lineage journal saw its original parent alive, and that parent is dead.
    ParentDied,
    /// Its command line (or its launcher's worker's) matches this
    /// `[orphans] match` regex.
    Pattern(String),
}

impl OrphanReason {
    /// The snake_case name, as in JSON.
    pub const fn name(&self) -> &'static str {
        match self {
            OrphanReason::LeaderGone => "leader_gone",
            OrphanReason::ParentDied => "parent_died",
            OrphanReason::Pattern(_) => "pattern",
        }
    }
}

impl fmt::Display for OrphanReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrphanReason::LeaderGone => f.write_str("leader gone"),
            OrphanReason::ParentDied => f.write_str("parent died"),
            OrphanReason::Pattern(re) => write!(f, "matches /{re}/"),
        }
    }
}

/// One process of an orphan tree.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct OrphanMember {
    #[serde(flatten)]
    pub id: ProcessId,
    pub ppid: u32,
    /// Depth below the tree's root (the root is 0).
    pub depth: usize,
    pub name: String,
    pub argv: Arc<[String]>,
    pub rss_bytes: Option<u64>,
    /// Open descriptors; `None` when not permitted.
    pub fds: Option<u64>,
    pub cpu_seconds: Option<f64>,
    /// For a launcher wrapper (`uv tool uvx X`, `npm exec X`...): the folded
    /// label, e.g. `uvx X (uv → python)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub label: Option<String>,
    /// For the worker a wrapper started (and any shell in between): the pid of
    /// the wrapper whose row it is shown in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub folded_into: Option<u32>,
}

impl OrphanMember {
    /// How this process is shown: its folded label, else its command line.
    pub fn display(&self) -> String {
        match &self.label {
            Some(label) => label.clone(),
            None if self.argv.is_empty() => format!("[{}]", self.name),
            None => self.argv.join(" "),
        }
    }
}

/// A reparented root and everything below it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct OrphanTree {
    pub root: ProcessId,
    #[serde(flatten)]
    pub reason: OrphanReason,
    /// The root's original parent, when the lineage knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub original_parent: Option<ParentRecord>,
    /// The root as shown: its folded wrapper label, else its command line.
    pub label: String,
    /// The root first, then its descendants depth first.
    pub members: Vec<OrphanMember>,
    pub total_rss_bytes: u64,
    pub total_fds: u64,
    /// How long the root has been running.
    #[serde(rename = "age_seconds", with = "secs_serde")]
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub age: Duration,
    /// How long no member's CPU time has advanced: the tree is idle only while
    /// all of it is. `None` when unknown (not observed long enough, or hidden).
    #[serde(rename = "idle_seconds", with = "secs_opt_serde")]
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(type = "number | null"))]
    pub idle_for: Option<Duration>,
    /// The watched targets whose process is a member ("contains agent-server"):
    /// cleaning the tree up would take a watched server down, so it is never
    /// chosen by default (see [`OrphanTree::chosen_by_default`]).
    #[serde(default)]
    pub watched: Vec<String>,
}

impl OrphanTree {
    /// Whether "select all", the tray's clean-up and the idle reaper take this
    /// tree: only when no watched target's process is in it.
    pub fn chosen_by_default(&self) -> bool {
        self.watched.is_empty()
    }

    /// Records which of `watched` (target name, pid) are members of this tree.
    pub fn mark_watched<'a>(&mut self, watched: impl IntoIterator<Item = (&'a str, ProcessId)>) {
        let mut names: Vec<String> = watched
            .into_iter()
            .filter(|(_, id)| self.members.iter().any(|m| m.id == *id))
            .map(|(name, _)| name.to_owned())
            .collect();
        names.sort_unstable();
        names.dedup();
        self.watched = names;
    }

    /// Every member's identity, root first: what a kill-tree takes down.
    pub fn ids(&self) -> Vec<ProcessId> {
        self.members.iter().map(|m| m.id).collect()
    }

    /// The rows of a human listing: members not folded into a wrapper's row,
    /// each with its depth counted in rows (folded processes take no level).
    pub fn rows(&self) -> Vec<(usize, &OrphanMember)> {
        let mut depth_of: HashMap<u32, usize> = HashMap::with_capacity(self.members.len());
        let mut rows = Vec::new();
        for member in &self.members {
            let depth = match member.folded_into {
                Some(wrapper) => depth_of.get(&wrapper).copied().unwrap_or(0),
                None if member.depth == 0 => 0,
                None => depth_of.get(&member.ppid).map_or(member.depth, |d| d + 1),
            };
            depth_of.insert(member.id.pid, depth);
            if member.folded_into.is_none() {
                rows.push((depth, member));
            }
        }
        rows
    }
}

/// [`secs`] and [`from_secs`] as one `#[serde(with)]` module: ts-rs understands
/// `with` (and its `#[ts(type)]`), and warns on `serialize_with` (issue 13).
mod secs_serde {
    pub(super) use super::{from_secs as deserialize, secs as serialize};
}

/// [`secs_opt`] and [`from_secs_opt`] as one `#[serde(with)]` module.
mod secs_opt_serde {
    pub(super) use super::{from_secs_opt as deserialize, secs_opt as serialize};
}

fn secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Seconds back into a duration, as a face attached to the local API reads
/// them; a negative or non-finite number (never sent) reads as zero.
fn from_secs<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let secs = f64::deserialize(d)?;
    Ok(Duration::try_from_secs_f64(secs).unwrap_or_default())
}

fn from_secs_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let secs = Option::<f64>::deserialize(d)?;
    Ok(secs.map(|s| Duration::try_from_secs_f64(s).unwrap_or_default()))
}

fn secs_opt<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

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

// ---------------------------------------------------------------------------------
// Launcher wrappers
// ---------------------------------------------------------------------------------

/// A launcher (`uv tool uvx X`, `uvx X`, `npm exec X`, `npx X`, `pnpm dlx X`, ...)
/// that starts the real worker as its child and waits: two processes, one thing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wrapper {
    /// How the launch is named in labels: `uvx`, `npm exec`, `npx`, `pnpm dlx`.
    pub tool: &'static str,
    /// The program that runs it: `uv`, `uvx`, `npm`, `npx`, `pnpm`, ...
    pub program: String,
    /// What it launches: the package or command.
    pub target: String,
}

/// Options of the launchers that take a value, so the value is not taken for the
/// package (`uvx --from git+https://... server`, `npx -p pkg cmd`).
const VALUE_FLAGS: &[&str] = &[
    "--from",
    "--with",
    "--with-editable",
    "--with-requirements",
    "--python",
    "-p",
    "--index",
    "--default-index",
    "--index-url",
    "-i",
    "--extra-index-url",
    "--find-links",
    "-f",
    "--constraints",
    "--overrides",
    "--build-constraints",
    "-b",
    "--env-file",
    "--directory",
    "--project",
    "--config-file",
    "--cache-dir",
    "--color",
    "--python-platform",
    "--exclude-newer",
    "--index-strategy",
    "--keyring-provider",
    "--resolution",
    "--prerelease",
    "--package",
    "--workspace",
    "-w",
    "--registry",
    "--cache",
    "--userconfig",
    "--prefix",
    "--spec",
    "--pip-args",
];

impl Wrapper {
    /// Recognises a launcher's command line. `argv` may also be one string with
    /// spaces: node programs like npm rewrite their title (`npm exec X`) over
    /// argv. `node .../npx-cli.js X` counts as `npx X`.
    pub fn parse(argv: &[String]) -> Option<Wrapper> {
        let words: Vec<&str> = match argv {
            [single] => single.split_whitespace().collect(),
            _ => argv.iter().map(String::as_str).collect(),
        };
        let (first, mut args) = words.split_first()?;
        let mut program = basename(first);
        if is_node(program) {
            let (script, rest) = args.split_first()?;
            program = node_script_tool(basename(script))?;
            args = rest;
        }
        let (tool, rest): (&'static str, &[&str]) = match (program, args) {
            ("uv", ["tool", "uvx" | "run", rest @ ..]) => ("uvx", rest),
            ("uvx", rest) => ("uvx", rest),
            ("npm", ["exec" | "x", rest @ ..]) => ("npm exec", rest),
            ("npx", rest) => ("npx", rest),
            ("pnpm", ["dlx", rest @ ..]) => ("pnpm dlx", rest),
            ("pnpx", rest) => ("pnpx", rest),
            ("bunx", rest) => ("bunx", rest),
            ("bun", ["x", rest @ ..]) => ("bunx", rest),
            ("pipx", ["run", rest @ ..]) => ("pipx run", rest),
            _ => return None,
        };
        let target = target_of(tool, rest)?;
        Some(Wrapper { tool, program: program.to_owned(), target })
    }

    /// `uvx microsoft-fabric-rti-mcp`.
    pub fn launch(&self) -> String {
        format!("{} {}", self.tool, self.target)
    }
}

/// The package or command a launcher runs: the first word that is not an option
/// (or an option's value), or the word after `--`.
fn target_of(tool: &str, args: &[&str]) -> Option<String> {
    let npm = matches!(tool, "npm exec" | "npx");
    let mut words = args.iter();
    while let Some(word) = words.next() {
        if *word == "--" {
            return words.next().map(|w| (*w).to_owned());
        }
        if npm && matches!(*word, "-c" | "--call") {
            // `npx -c 'server --port 1'`: the command string (split by the title).
            return words.next().map(|w| (*w).to_owned());
        }
        if let Some(call) = word.strip_prefix("--call=").filter(|_| npm) {
            return Some(call.to_owned());
        }
        if word.starts_with('-') {
            if !word.contains('=') && VALUE_FLAGS.contains(word) {
                words.next();
            }
            continue;
        }
        return Some((*word).to_owned());
    }
    None
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// `node`, `nodejs`, `node22`.
fn is_node(program: &str) -> bool {
    program == "nodejs"
        || program.strip_prefix("node").is_some_and(|v| v.chars().all(|c| c.is_ascii_digit()))
}

/// The launcher a node script is: `npx-cli.js` is npx, and so on.
fn node_script_tool(script: &str) -> Option<&'static str> {
    let stem = script.split('.').next().unwrap_or(script);
    match stem {
        "npx" | "npx-cli" => Some("npx"),
        "npm" | "npm-cli" => Some("npm"),
        "pnpm" => Some("pnpm"),
        "pnpx" => Some("pnpx"),
        _ => None,
    }
}

/// A process a wrapper's chain goes through to reach the worker: a shell running
/// `-c` (npm exec runs `sh -c X`), or another launcher (`uvx` runs `uv tool uvx`).
fn passes_through(argv: &[String]) -> bool {
    let shell = argv.first().is_some_and(|a| {
        matches!(basename(a), "sh" | "bash" | "dash" | "zsh" | "ash" | "ksh" | "fish")
    }) && argv.iter().skip(1).any(|a| a == "-c");
    shell || Wrapper::parse(argv).is_some()
}

/// The program name shown in a folded label's arrow: the launcher's own name for
/// a launcher, else argv\[0\]'s last component (`python`, `node`, `sh`), else the
/// process name.
fn program_name(member: &OrphanMember) -> String {
    if let Some(wrapper) = Wrapper::parse(&member.argv) {
        return wrapper.program;
    }
    let first = match &member.argv[..] {
        [single] => single.split_whitespace().next(),
        argv => argv.first().map(String::as_str),
    };
    match first.map(basename) {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ => member.name.clone(),
    }
}

/// Labels each launcher wrapper among `members` (depth first, parents first) and
/// folds into it the single child chain down to its worker: `uv tool uvx X` with
/// its python child becomes one row `uvx X (uv → python)`. A wrapper with several
/// children (or none yet) keeps them as rows of their own, with the label
/// `uvx X`.
fn fold_wrappers(members: &mut [OrphanMember]) {
    for i in 0..members.len() {
        if members[i].folded_into.is_some() {
            continue;
        }
        let Some(wrapper) = Wrapper::parse(&members[i].argv) else { continue };
        let mut chain = vec![i];
        let mut current = i;
        loop {
            let parent = members[current].id.pid;
            let mut children = members.iter().enumerate().filter(|(_, m)| m.ppid == parent);
            let (Some((only, _)), None) = (children.next(), children.next()) else { break };
            chain.push(only);
            if !passes_through(&members[only].argv) {
                break;
            }
            current = only;
        }
        let label = if chain.len() > 1 {
            let names: Vec<String> = chain.iter().map(|&j| program_name(&members[j])).collect();
            format!("{} ({})", wrapper.launch(), names.join(" → "))
        } else {
            wrapper.launch()
        };
        let pid = members[i].id.pid;
        members[i].label = Some(label);
        for &j in &chain[1..] {
            members[j].folded_into = Some(pid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leakwatch_probe::StartTime;
    use std::time::UNIX_EPOCH;

    /// "Now" in the made-up tables: a day after the epoch.
    const NOW: UnixMillis = 86_400_000;

    /// A made-up process: its own group and session leader unless changed, 1 MiB
    /// resident, started `pid` seconds after the epoch (so lower pids are older).
    fn process(pid: u32, ppid: u32, argv: &[&str]) -> ProcessInfo {
        let name = argv.first().map_or("?", |a| basename(a)).chars().take(15).collect();
        ProcessInfo {
            id: ProcessId { pid, start_time: StartTime(u64::from(pid) * 100) },
            ppid,
            pgid: pid,
            sid: pid,
            uid: 1000,
            state: ProcessState::Sleeping,
            name,
            exe: None,
            argv: argv.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>().into(),
            rss_bytes: Some(1 << 20),
            cpu_time: Some(Duration::from_millis(10)),
            threads: Some(1),
            started_at: UNIX_EPOCH + Duration::from_secs(u64::from(pid)),
            is_kernel_thread: false,
        }
    }

    fn in_group(mut p: ProcessInfo, pgid: u32, sid: u32) -> ProcessInfo {
        p.pgid = pgid;
        p.sid = sid;
        p
    }

    fn init() -> ProcessInfo {
        process(1, 0, &["/sbin/launchd"])
    }

    fn find(table: &[ProcessInfo], lineage: &Lineage, patterns: &[Regex]) -> Vec<OrphanTree> {
        find_orphans(
            table,
            lineage,
            &IdleTracker::new(),
            patterns,
            Some(1000),
            |pid| Some(u64::from(pid % 7)),
            NOW,
        )
    }

    fn pids(tree: &OrphanTree) -> Vec<u32> {
        tree.members.iter().map(|m| m.id.pid).collect()
    }

    /// Seed 001: copilot (600, in the login shell's session) started `uv tool uvx
    /// microsoft-fabric-rti-mcp` in its own process group; copilot was SIGKILLed,
    /// so uv and its python are reparented to launchd and their group leader is
    /// gone.
    fn seed_001() -> Vec<ProcessInfo> {
        vec![
            init(),
            in_group(process(500, 1, &["-zsh"]), 500, 500),
            in_group(process(700, 1, &["uv", "tool", "uvx", "microsoft-fabric-rti-mcp"]), 600, 500),
            in_group(
                process(
                    701,
                    700,
                    &["/Users/me/.cache/uv/archive-v0/x/bin/python", "microsoft-fabric-rti-mcp"],
                ),
                600,
                500,
            ),
        ]
    }

    #[test]
    fn sigkilled_parent_leaves_a_uvx_python_pair() {
        let trees = find(&seed_001(), &Lineage::new(), &[]);
        assert_eq!(trees.len(), 1, "{trees:#?}");
        let tree = &trees[0];
        assert_eq!(tree.root.pid, 700);
        assert_eq!(tree.reason, OrphanReason::LeaderGone);
        assert_eq!(pids(tree), [700, 701]);
        assert_eq!(tree.label, "uvx microsoft-fabric-rti-mcp (uv → python)");
        assert_eq!(tree.members[1].folded_into, Some(700));
        assert_eq!(tree.members[1].depth, 1);
        assert_eq!(tree.total_rss_bytes, 2 << 20);
        assert_eq!(tree.total_fds, 1, "pid % 7 each: 0 + 1");
        assert_eq!(tree.age, Duration::from_secs(86_400 - 700));
        assert_eq!(tree.idle_for, None, "never observed");
        // One row for the pair.
        let rows: Vec<(usize, u32)> = tree.rows().iter().map(|(d, m)| (*d, m.id.pid)).collect();
        assert_eq!(rows, [(0, 700)]);
        assert_eq!(tree.ids().len(), 2);
    }

    #[test]
    fn a_launchd_agent_leading_its_own_group_is_not_an_orphan() {
        let table = vec![
            init(),
            process(800, 1, &["/Applications/Agent.app/Contents/MacOS/agent"]),
            in_group(process(801, 800, &["agent-helper"]), 800, 800),
            // A daemon leading its own session: the same.
            process(900, 1, &["/usr/sbin/cupsd", "-l"]),
        ];
        assert!(find(&table, &Lineage::new(), &[]).is_empty());
        // Leading its group but not its session, whose leader is gone: a job of a
        // closed terminal.
        let mut table = table;
        table.push(in_group(process(950, 1, &["server"]), 950, 940));
        let trees = find(&table, &Lineage::new(), &[]);
        assert_eq!(trees.iter().map(|t| t.root.pid).collect::<Vec<_>>(), [950]);
        assert_eq!(trees[0].reason, OrphanReason::LeaderGone);
    }

    #[test]
    fn ids_of_zero_are_outside_the_namespace_not_gone() {
        let table = vec![init(), in_group(process(13_640, 1, &["memfd:sealed"]), 13_640, 0)];
        assert!(find(&table, &Lineage::new(), &[]).is_empty());
    }

    #[test]
    fn a_pattern_makes_a_self_led_process_an_orphan() {
        let table = vec![
            init(),
            process(900, 1, &["julia", "--project", "-e", "Gate.serve()"]),
            process(910, 1, &["/usr/sbin/cupsd"]),
            // Not reparented: a pattern alone does not make an orphan.
            process(920, 900, &["julia", "worker"]),
        ];
        let patterns = [Regex::new("^julia .*Gate").unwrap(), Regex::new("worker").unwrap()];
        let trees = find(&table, &Lineage::new(), &patterns);
        assert_eq!(trees.len(), 1);
        assert_eq!(trees[0].reason, OrphanReason::Pattern("^julia .*Gate".into()));
        assert_eq!(pids(&trees[0]), [900, 920]);
        assert_eq!(trees[0].reason.to_string(), "matches /^julia .*Gate/");
    }

    #[test]
    fn a_pattern_on_the_worker_counts_for_its_wrapper() {
        let table = vec![
            init(),
            process(300, 1, &["npm exec @playwright/mcp@latest"]),
            in_group(process(301, 300, &["sh", "-c", "mcp-server-playwright"]), 300, 300),
            in_group(process(302, 301, &["node", "/x/bin/mcp-server-playwright"]), 300, 300),
        ];
        let patterns = [Regex::new("mcp-server-playwright$").unwrap()];
        let trees = find(&table, &Lineage::new(), &patterns);
        assert_eq!(trees.len(), 1);
        assert_eq!(trees[0].label, "npm exec @playwright/mcp@latest (npm → sh → node)");
        assert!(matches!(trees[0].reason, OrphanReason::Pattern(_)));
        assert_eq!(trees[0].rows().len(), 1);
    }

    #[test]
    fn lineage_sees_the_original_parent_die() {
        // 100 (an editor) started 101, a server leading its own group and session:
        // after 100 dies, only the lineage can tell 101 from a daemon.
        let before =
            vec![init(), process(100, 1, &["editor"]), process(101, 100, &["server", "--stdio"])];
        let mut lineage = Lineage::new();
        lineage.record(&before, NOW - 10_000);
        let record = lineage.original_parent(&before[2].id).unwrap();
        assert_eq!(record.id.pid, 100);
        assert_eq!(record.name, "editor");
        assert!(lineage.original_parent(&before[1].id).is_none(), "ppid 1: nothing to learn");
        assert!(!lineage.parent_died(&before[2].id, &before));
        assert!(find(&before, &lineage, &[]).is_empty());

        let after = vec![init(), process(101, 1, &["server", "--stdio"])];
        assert!(lineage.parent_died(&after[1].id, &after));
        assert!(find(&after, &Lineage::new(), &[]).is_empty(), "no history, no evidence");
        let trees = find(&after, &lineage, &[]);
        assert_eq!(trees.len(), 1);
        assert_eq!(trees[0].reason, OrphanReason::ParentDied);
        assert_eq!(trees[0].original_parent.as_ref().map(|p| p.id.pid), Some(100));

        // A zombie parent is dead too; a pid reused by a newcomer is not the parent.
        let mut zombie = before.clone();
        zombie[1].state = ProcessState::Zombie;
        assert!(lineage.parent_died(&before[2].id, &zombie));
        let mut reused = before;
        reused[1].id.start_time = StartTime(999_999);
        assert!(lineage.parent_died(&reused[2].id, &reused));
    }

    #[test]
    fn lineage_keeps_the_first_parent_and_is_bounded() {
        let mut lineage = Lineage::with_limits(Duration::from_secs(60), 3);
        let table = vec![init(), process(10, 1, &["a"]), process(11, 10, &["b"])];
        lineage.record(&table, 0);
        // Reparented later: the first parent stays the record.
        let moved = vec![init(), process(11, 1, &["b"])];
        lineage.record(&moved, 1_000);
        assert_eq!(lineage.original_parent(&table[2].id).map(|p| p.id.pid), Some(10));
        // A parent younger than the child was not its original parent.
        let young = vec![init(), process(50, 1, &["subreaper"]), process(40, 50, &["c"])];
        lineage.record(&young, 2_000);
        assert!(lineage.entry(&young[2].id).is_none());
        // Gone for longer than the retention: forgotten.
        lineage.record(&[init()], 60_000);
        assert_eq!(lineage.len(), 1);
        lineage.record(&[init()], 62_000);
        assert!(lineage.is_empty());
        // The capacity holds even for a table of live processes.
        let mut big = vec![init(), process(2_000, 1, &["root"])];
        big.extend((2_001..2_010).map(|pid| process(pid, 2_000, &["kid"])));
        lineage.record(&big, 70_000);
        assert_eq!(lineage.len(), 3);
        // Gone entries go before live ones.
        let mut next = vec![init(), process(2_000, 1, &["root"])];
        next.extend((3_001..3_003).map(|pid| process(pid, 2_000, &["kid"])));
        lineage.record(&next, 71_000);
        assert_eq!(lineage.len(), 3);
        assert!(lineage.entry(&next[2].id).is_some() && lineage.entry(&next[3].id).is_some());
    }

    #[test]
    fn idle_time_is_cpu_time_unchanged_since() {
        let mut a = process(10, 1, &["a"]);
        let b = process(11, 1, &["b"]);
        let mut idle = IdleTracker::new();
        idle.observe(&[a.clone(), b.clone()], 1_000);
        assert_eq!(idle.idle_for(&a.id, 1_000), Some(Duration::ZERO));
        a.cpu_time = Some(Duration::from_millis(20));
        idle.observe(&[a.clone(), b.clone()], 5_000);
        assert_eq!(idle.idle_for(&a.id, 9_000), Some(Duration::from_secs(4)));
        assert_eq!(idle.idle_for(&b.id, 9_000), Some(Duration::from_secs(8)));
        // Gone identities are dropped; CPU hidden by the OS is unknown.
        let mut hidden = process(12, 1, &["c"]);
        hidden.cpu_time = None;
        idle.observe(&[b.clone(), hidden.clone()], 10_000);
        assert_eq!(idle.len(), 1);
        assert_eq!(idle.idle_for(&a.id, 10_000), None);
        assert_eq!(idle.idle_for(&hidden.id, 10_000), None);
    }

    #[test]
    fn a_tree_is_idle_only_while_every_member_is() {
        let mut table = seed_001();
        let mut idle = IdleTracker::new();
        idle.observe(&table, NOW - 60_000);
        table[3].cpu_time = Some(Duration::from_secs(1));
        idle.observe(&table, NOW - 20_000);
        let trees = find_orphans(&table, &Lineage::new(), &idle, &[], Some(1000), |_| None, NOW);
        assert_eq!(trees[0].idle_for, Some(Duration::from_secs(20)));
        assert_eq!(trees[0].total_fds, 0);
    }

    #[test]
    fn a_subreaper_inherits_an_orphan() {
        // 10 is a subreaper (a desktop session manager); 20, its child, started 30.
        let before = vec![
            init(),
            process(10, 1, &["session-manager"]),
            process(20, 10, &["host"]),
            process(30, 20, &["mcp-server"]),
        ];
        let mut lineage = Lineage::new();
        lineage.record(&before, NOW - 1_000);
        // 20 is SIGKILLed; the kernel hands 30 to the subreaper, not to pid 1.
        let after =
            vec![init(), process(10, 1, &["session-manager"]), process(30, 10, &["mcp-server"])];
        lineage.record(&after, NOW);
        let trees = find(&after, &lineage, &[]);
        assert_eq!(trees.iter().map(|t| t.root.pid).collect::<Vec<_>>(), [30]);
        assert_eq!(trees[0].reason, OrphanReason::ParentDied);
        // Without history a subreaper older than the child tells nothing...
        assert!(find(&after, &Lineage::new(), &[]).is_empty());
        // ...but `systemd --user` is known to be one, and a subreaper younger than
        // the child cannot be its original parent.
        let systemd = vec![
            init(),
            process(10, 1, &["/usr/lib/systemd/systemd", "--user"]),
            in_group(process(30, 10, &["mcp-server"]), 20, 20),
            // A service it started itself leads its own group and session.
            process(31, 10, &["/usr/bin/pipewire"]),
        ];
        let trees = find(&systemd, &Lineage::new(), &[]);
        assert_eq!(trees.iter().map(|t| t.root.pid).collect::<Vec<_>>(), [30]);
        assert_eq!(trees[0].reason, OrphanReason::LeaderGone);
        let younger =
            vec![init(), process(50, 1, &["reaper"]), in_group(process(40, 50, &["x"]), 20, 20)];
        assert_eq!(find(&younger, &Lineage::new(), &[]).len(), 1);
        // A child the lineage saw started by its current parent is not reparented.
        let mut lineage = Lineage::new();
        lineage.record(&systemd, NOW);
        assert!(find(&systemd, &lineage, &[]).is_empty());
    }

    #[test]
    fn a_candidate_inside_another_tree_belongs_to_it() {
        let before = vec![
            init(),
            in_group(process(100, 1, &["outer"]), 90, 90),
            process(110, 100, &["reaper"]),
            process(120, 110, &["middle"]),
            process(130, 120, &["inner"]),
        ];
        let mut lineage = Lineage::new();
        lineage.record(&before, NOW - 1);
        let mut after = before;
        after.remove(3);
        after[3].ppid = 110;
        let trees = find(&after, &lineage, &[]);
        assert_eq!(trees.len(), 1);
        assert_eq!(pids(&trees[0]), [100, 110, 130]);
    }

    #[test]
    fn zombies_kernel_threads_other_users_and_leakwatch_are_left_out() {
        let own = std::process::id();
        let mut zombie = in_group(process(700, 1, &["gone"]), 600, 600);
        zombie.state = ProcessState::Zombie;
        let mut kthread = in_group(process(3, 2, &[]), 0, 0);
        kthread.is_kernel_thread = true;
        let mut kthreadd = process(2, 0, &[]);
        kthreadd.is_kernel_thread = true;
        let mut other = in_group(process(710, 1, &["theirs"]), 600, 600);
        other.uid = 0;
        let me = in_group(process(own, 1, &["leakwatch", "daemon"]), 600, 600);
        let parent_of_me = in_group(process(720, 1, &["sh"]), 600, 600);
        let mut child = in_group(process(721, 720, &["sleep"]), 600, 600);
        child.state = ProcessState::Zombie;
        let mut me_below = me.clone();
        me_below.ppid = 720;
        let table = vec![init(), kthreadd.clone(), kthread.clone(), zombie, other, me, child];
        assert!(find(&table, &Lineage::new(), &[]).is_empty());
        // A tree holding leakwatch is never reported: reaping it would end us.
        let table = vec![init(), kthreadd, kthread, parent_of_me, me_below];
        assert!(find(&table, &Lineage::new(), &[]).is_empty());
        // Another leakwatch (a detached daemon, another build) neither.
        let mut me = in_group(process(own, 30, &["leakwatch", "orphans"]), 30, 30);
        me.exe = Some("/usr/bin/leakwatch".into());
        let mut daemon = in_group(process(730, 1, &["leakwatch", "daemon"]), 600, 600);
        daemon.exe = Some("/home/me/src/leakwatch/target/debug/leakwatch".into());
        let mut renamed = in_group(process(740, 1, &["lw", "daemon"]), 600, 600);
        renamed.exe = me.exe.clone();
        let server = in_group(process(750, 1, &["server"]), 600, 600);
        let table = vec![init(), process(30, 1, &["zsh"]), me, daemon, renamed, server];
        let trees = find(&table, &Lineage::new(), &[]);
        assert_eq!(trees.iter().map(|t| t.root.pid).collect::<Vec<_>>(), [750]);
        // All users: the other user's tree appears.
        let mut other = in_group(process(710, 1, &["theirs"]), 600, 600);
        other.uid = 0;
        let trees = find_orphans(
            &[init(), other],
            &Lineage::new(),
            &IdleTracker::new(),
            &[],
            None,
            |_| None,
            NOW,
        );
        assert_eq!(trees.len(), 1);
    }

    #[test]
    fn zombie_members_are_dead() {
        let mut table = seed_001();
        table[3].state = ProcessState::Zombie;
        let trees = find(&table, &Lineage::new(), &[]);
        assert_eq!(pids(&trees[0]), [700]);
        assert_eq!(trees[0].label, "uvx microsoft-fabric-rti-mcp");
    }

    #[test]
    fn wrapper_labels() {
        let label = |argv: &[&str]| {
            let argv: Vec<String> = argv.iter().map(|a| (*a).to_owned()).collect();
            Wrapper::parse(&argv).map(|w| (w.launch(), w.program))
        };
        let some = |launch: &str, program: &str| Some((launch.to_owned(), program.to_owned()));
        assert_eq!(
            label(&["/opt/homebrew/bin/uv", "tool", "uvx", "microsoft-fabric-rti-mcp"]),
            some("uvx microsoft-fabric-rti-mcp", "uv")
        );
        assert_eq!(
            label(&[
                "uvx",
                "--from",
                "git+https://x/y",
                "--python=3.12",
                "-q",
                "mcp-x",
                "--port",
                "1"
            ]),
            some("uvx mcp-x", "uvx")
        );
        assert_eq!(
            label(&["npm exec @playwright/mcp@latest"]),
            some("npm exec @playwright/mcp@latest", "npm")
        );
        assert_eq!(
            label(&[
                "node",
                "/usr/lib/node_modules/npm/bin/npx-cli.js",
                "-y",
                "@scope/server",
                "/tmp"
            ]),
            some("npx @scope/server", "npx")
        );
        assert_eq!(label(&["npx", "-p", "pkg", "--", "cmd"]), some("npx cmd", "npx"));
        assert_eq!(label(&["npx", "-c", "serve --port 1"]), some("npx serve --port 1", "npx"));
        assert_eq!(label(&["pnpm", "dlx", "create-x"]), some("pnpm dlx create-x", "pnpm"));
        assert_eq!(label(&["bun", "x", "cowsay"]), some("bunx cowsay", "bun"));
        assert_eq!(label(&["pipx", "run", "--spec", "a==1", "a"]), some("pipx run a", "pipx"));
        assert_eq!(label(&["uv", "run", "script.py"]), None);
        assert_eq!(label(&["npm", "start"]), None);
        assert_eq!(label(&["node", "server.js"]), None);
        assert_eq!(label(&["uvx"]), None, "no target: not a launch");
        assert_eq!(label(&[]), None);
    }

    #[test]
    fn a_tree_holding_a_watched_target_is_flagged_and_not_chosen_by_default() {
        let table = vec![
            init(),
            in_group(process(700, 1, &["python3", "agent_server.py"]), 600, 600),
            in_group(process(701, 700, &["python3", "worker.py"]), 600, 600),
            in_group(process(800, 1, &["node", "mcp.js"]), 610, 610),
        ];
        let mut trees = find(&table, &Lineage::new(), &[]);
        assert_eq!(trees.len(), 2);
        let worker = table[2].id;
        let elsewhere = ProcessId { pid: 999, start_time: StartTime(1) };
        for tree in &mut trees {
            tree.mark_watched([("agent-server", worker), ("other", elsewhere)]);
        }
        let holding = trees.iter().find(|t| t.root.pid == 700).unwrap();
        assert_eq!(holding.watched, ["agent-server"]);
        assert!(!holding.chosen_by_default());
        let free = trees.iter().find(|t| t.root.pid == 800).unwrap();
        assert!(free.watched.is_empty());
        assert!(free.chosen_by_default());
        // The same pid with another start time is another process: not a member.
        let reused = ProcessId { pid: 701, start_time: StartTime(u64::MAX) };
        let mut tree = holding.clone();
        tree.mark_watched([("agent-server", reused)]);
        assert!(tree.chosen_by_default());
    }

    #[test]
    fn a_wrapper_with_several_children_is_not_folded() {
        let table = vec![
            init(),
            in_group(process(700, 1, &["uvx", "tool-x"]), 600, 600),
            in_group(process(701, 700, &["python", "a"]), 600, 600),
            in_group(process(702, 700, &["python", "b"]), 600, 600),
            // A member wrapper folds with its worker; the worker's child stays a row.
            in_group(process(703, 701, &["uvx", "inner"]), 600, 600),
            in_group(process(704, 703, &["uv", "tool", "uvx", "inner"]), 600, 600),
            in_group(process(705, 704, &["python3", "inner"]), 600, 600),
            in_group(process(706, 705, &["child-of-worker"]), 600, 600),
        ];
        let trees = find(&table, &Lineage::new(), &[]);
        let tree = &trees[0];
        assert_eq!(tree.label, "uvx tool-x");
        let rows: Vec<(usize, u32, String)> =
            tree.rows().iter().map(|(d, m)| (*d, m.id.pid, m.display())).collect();
        assert_eq!(
            rows,
            [
                (0, 700, "uvx tool-x".to_owned()),
                (1, 701, "python a".to_owned()),
                (2, 703, "uvx inner (uvx → uv → python3)".to_owned()),
                (3, 706, "child-of-worker".to_owned()),
                (1, 702, "python b".to_owned()),
            ]
        );
    }

    #[test]
    fn trees_serialise_with_reason_and_seconds() {
        let mut idle = IdleTracker::new();
        idle.observe(&seed_001(), NOW - 5_000);
        let trees = find_orphans(&seed_001(), &Lineage::new(), &idle, &[], None, |_| Some(3), NOW);
        let json = serde_json::to_value(&trees[0]).unwrap();
        assert_eq!(json["reason"], "leader_gone");
        assert!(json.get("pattern").is_none());
        assert_eq!(json["root"]["pid"], 700);
        assert_eq!(json["root"]["start_time"], 70_000);
        assert_eq!(json["total_fds"], 6);
        assert_eq!(json["idle_seconds"], 5.0);
        assert_eq!(json["age_seconds"], 85_700.0);
        assert_eq!(json["members"][1]["folded_into"], 700);
        assert_eq!(json["members"][1]["pid"], 701);
        assert!(json["members"][0].get("folded_into").is_none());
        let pattern = OrphanTree {
            reason: OrphanReason::Pattern("uvx".into()),
            idle_for: None,
            ..trees[0].clone()
        };
        let json = serde_json::to_value(&pattern).unwrap();
        assert_eq!((&json["reason"], &json["pattern"]), (&"pattern".into(), &"uvx".into()));
        assert!(json["idle_seconds"].is_null());
        assert_eq!(OrphanReason::ParentDied.name(), "parent_died");
    }
}
