//! The lineage journal: who started whom, recorded while the parent lived, so
//! that "its parent died" is evidence after a SIGKILL has made the kernel forget.

use super::{is_dead, live_by_pid, millis};
use crate::model::UnixMillis;
use leakwatch_probe::{ProcessId, ProcessInfo};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How long the lineage remembers a process after it was last seen.
pub const LINEAGE_RETENTION: Duration = Duration::from_secs(3600);
/// The most entries the lineage keeps, whatever the table's size.
pub const LINEAGE_CAPACITY: usize = 32_768;

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
