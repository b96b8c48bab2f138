//! What detection finds and faces show: an orphan tree, its members, and why it
//! counts as orphaned. Plain data with its wire format (JSON, TypeScript).

use super::lineage::ParentRecord;
use leakwatch_probe::ProcessId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

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

    /// What tells this tree apart from the others of `all` that show the same
    /// label (two `uvx mcp-server` trees, say): its root's pid, and the parent
    /// that started it when the lineage knows it ("pid 700, started by copilot
    /// (pid 600)"). `None` when no other tree shares its label.
    pub fn twin_hint(&self, all: &[OrphanTree]) -> Option<String> {
        let twins = all.iter().filter(|t| t.label == self.label && t.root != self.root).count();
        if twins == 0 {
            return None;
        }
        let mut hint = format!("pid {}", self.root.pid);
        if let Some(parent) = &self.original_parent {
            hint.push_str(&format!(", started by {} (pid {})", parent.name, parent.id.pid));
        }
        Some(hint)
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
