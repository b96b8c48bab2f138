//! Survivors since a baseline: descriptors opened after a moment (a series start,
//! a restart, a moment the user marked) and still open now. A busy server opens and
//! closes thousands of descriptors between two reads and leaves almost none behind;
//! a leak leaves every one. Counting survivors instead of the raw total is what
//! tells the two apart, and what the signatures in [`super::signatures`] read.

use crate::model::UnixMillis;
use leakwatch_probe::{FdKind, FdTable};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};

/// At most this many descriptor identities are kept per baseline: a process
/// holding more has already hit any sane limit, and the cap bounds the memory a
/// target costs (about 100 bytes a key). Descriptors beyond it count as present
/// at the baseline, so a capped baseline under-reports survivors, never invents
/// them.
pub const BASELINE_MAX: usize = 65_536;

/// How many paths and endpoints a [`Survivors`] lists, most held first.
pub const SURVIVOR_GROUPS_MAX: usize = 20;

/// One descriptor's identity: its number and what it refers to. The object (an
/// inode) tells a pipe closed and reopened under the same number from the one that
/// stayed open; where the platform gives none, the kind and path stand in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FdKey {
    fd: i32,
    kind: FdKind,
    object: Option<u64>,
    path: Option<Box<str>>,
}

impl FdKey {
    fn of(table: &FdTable, index: usize) -> Option<FdKey> {
        let fd = table.fds.get(index)?;
        Some(FdKey {
            fd: fd.fd,
            kind: fd.kind,
            object: table.object(index),
            path: fd.path.as_deref().map(Box::from),
        })
    }
}

/// Why a baseline was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum BaselineReason {
    /// The first read of a series: the process was first seen or was restarted.
    SeriesStart,
    /// The start of a window `leakwatch explain` watched itself.
    Observation,
    /// A moment the user marked (`leakwatch explain TARGET --mark`, the app's
    /// "Mark baseline"), kept by the running engine.
    Marked,
}

impl BaselineReason {
    /// The baseline in words, as `explain` names it.
    pub const fn describe(self) -> &'static str {
        match self {
            BaselineReason::SeriesStart => "the start of the series",
            BaselineReason::Observation => "the start of the watch",
            BaselineReason::Marked => "the baseline you marked",
        }
    }
}

/// The descriptors open at one moment, to compare later reads against.
#[derive(Debug, Clone)]
pub struct Baseline {
    pub at: UnixMillis,
    pub reason: BaselineReason,
    kinds: BTreeMap<FdKind, usize>,
    keys: HashSet<FdKey>,
    /// Descriptor numbers beyond [`BASELINE_MAX`]: treated as present at the
    /// baseline whatever they hold.
    overflow_from: Option<i32>,
}

/// Descriptors opened since a baseline and still open.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Survivors {
    /// When the baseline was taken.
    pub since: UnixMillis,
    pub at: UnixMillis,
    pub total: usize,
    /// Survivors per kind; kinds with none are left out.
    pub kinds: BTreeMap<FdKind, usize>,
    /// The change of each kind's count since the baseline (survivors minus
    /// descriptors of the baseline closed since); kinds that did not change are
    /// left out.
    pub growth: BTreeMap<FdKind, i64>,
    /// Surviving descriptors by path, most first (at most [`SURVIVOR_GROUPS_MAX`]).
    pub paths: Vec<SurvivorGroup>,
    /// Surviving sockets by endpoint, most first (at most [`SURVIVOR_GROUPS_MAX`]).
    /// Empty unless the table was read with endpoints.
    pub endpoints: Vec<SurvivorGroup>,
    /// Surviving TCP sockets whose peer closed (`CLOSE_WAIT`); zero unless the
    /// table was read with endpoints.
    pub close_wait: usize,
    /// Pipes of which both ends survive in this process: made with `pipe()` and
    /// never handed on or closed.
    pub pipe_pairs: usize,
}

/// A path or endpoint and how many surviving descriptors hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SurvivorGroup {
    pub kind: FdKind,
    pub name: String,
    pub count: usize,
}

impl Baseline {
    /// Remembers `table` as it is now.
    pub fn new(table: &FdTable, at: UnixMillis, reason: BaselineReason) -> Self {
        let mut keys = HashSet::with_capacity(table.fds.len().min(BASELINE_MAX));
        let mut kinds = BTreeMap::new();
        let mut overflow_from = None;
        for (index, fd) in table.fds.iter().enumerate() {
            *kinds.entry(fd.kind).or_insert(0) += 1;
            if keys.len() >= BASELINE_MAX {
                overflow_from = Some(overflow_from.map_or(fd.fd, |o: i32| o.min(fd.fd)));
                continue;
            }
            if let Some(key) = FdKey::of(table, index) {
                keys.insert(key);
            }
        }
        Baseline { at, reason, kinds, keys, overflow_from }
    }

    /// How many descriptors the baseline remembers.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the baseline holds no descriptor.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The descriptors of `table` that were not open at the baseline: opened
    /// since, and not closed yet.
    pub fn survivors(&self, table: &FdTable, at: UnixMillis) -> Survivors {
        let mut out = Survivors { since: self.at, at, ..Survivors::default() };
        let mut paths: HashMap<(FdKind, &str), usize> = HashMap::new();
        let mut endpoints: HashMap<(FdKind, &str), usize> = HashMap::new();
        let mut pipe_ends: HashMap<u64, usize> = HashMap::new();
        let mut now_kinds: BTreeMap<FdKind, usize> = BTreeMap::new();
        for (index, fd) in table.fds.iter().enumerate() {
            *now_kinds.entry(fd.kind).or_insert(0) += 1;
            if self.overflow_from.is_some_and(|from| fd.fd >= from) {
                continue;
            }
            let Some(key) = FdKey::of(table, index) else { continue };
            if self.keys.contains(&key) {
                continue;
            }
            out.total += 1;
            *out.kinds.entry(fd.kind).or_insert(0) += 1;
            if let Some(path) = fd.path.as_deref() {
                *paths.entry((fd.kind, path)).or_insert(0) += 1;
            }
            if let Some(endpoint) = fd.endpoint.as_deref() {
                *endpoints.entry((fd.kind, endpoint)).or_insert(0) += 1;
                if fd.kind == FdKind::Tcp && endpoint.ends_with("(CLOSE_WAIT)") {
                    out.close_wait += 1;
                }
            }
            if fd.kind == FdKind::Pipe
                && let Some(object) = key.object
            {
                *pipe_ends.entry(object).or_insert(0) += 1;
            }
        }
        out.pipe_pairs = pipe_ends.values().filter(|ends| **ends >= 2).count();
        out.paths = top_groups(paths);
        out.endpoints = top_groups(endpoints);
        for kind in self.kinds.keys().chain(now_kinds.keys()) {
            let before = i64::try_from(self.kinds.get(kind).copied().unwrap_or(0)).unwrap_or(0);
            let now = i64::try_from(now_kinds.get(kind).copied().unwrap_or(0)).unwrap_or(0);
            if now != before {
                out.growth.insert(*kind, now - before);
            }
        }
        out
    }
}

impl Survivors {
    /// Survivors of one kind.
    pub fn kind(&self, kind: FdKind) -> usize {
        self.kinds.get(&kind).copied().unwrap_or(0)
    }

    /// Surviving descriptors on `path` (any kind).
    pub fn path(&self, path: &str) -> usize {
        self.paths.iter().filter(|g| g.name == path).map(|g| g.count).sum()
    }
}

fn top_groups(groups: HashMap<(FdKind, &str), usize>) -> Vec<SurvivorGroup> {
    let mut groups: Vec<SurvivorGroup> = groups
        .into_iter()
        .map(|((kind, name), count)| SurvivorGroup { kind, name: name.to_owned(), count })
        .collect();
    groups.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    groups.truncate(SURVIVOR_GROUPS_MAX);
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use leakwatch_probe::{Fd, ProcessId, StartTime};

    pub(crate) fn table(fds: &[(i32, FdKind, Option<u64>, Option<&str>)]) -> FdTable {
        FdTable {
            id: ProcessId { pid: 42, start_time: StartTime(7) },
            fds: fds
                .iter()
                .map(|(fd, kind, _, path)| Fd {
                    fd: *fd,
                    kind: *kind,
                    path: path.map(str::to_owned),
                    endpoint: None,
                })
                .collect(),
            objects: fds.iter().map(|(_, _, object, _)| *object).collect(),
        }
    }

    #[test]
    fn churn_between_reads_leaves_no_survivor() {
        let before =
            table(&[(0, FdKind::Device, None, Some("/dev/null")), (3, FdKind::Epoll, None, None)]);
        let baseline = Baseline::new(&before, 1_000, BaselineReason::SeriesStart);
        // Thousands opened and closed in between: the table looks the same.
        let survivors = baseline.survivors(&before, 2_000);
        assert_eq!(survivors.total, 0);
        assert!(survivors.growth.is_empty());
    }

    #[test]
    fn a_reused_number_with_another_object_is_a_survivor() {
        let before =
            table(&[(5, FdKind::Pipe, Some(100), None), (6, FdKind::Pipe, Some(100), None)]);
        let baseline = Baseline::new(&before, 0, BaselineReason::SeriesStart);
        let after = table(&[
            (5, FdKind::Pipe, Some(100), None),
            (6, FdKind::Pipe, Some(200), None),
            (7, FdKind::Pipe, Some(200), None),
        ]);
        let survivors = baseline.survivors(&after, 10);
        assert_eq!(survivors.kind(FdKind::Pipe), 2);
        assert_eq!(survivors.pipe_pairs, 1);
        assert_eq!(survivors.growth.get(&FdKind::Pipe), Some(&1));
    }

    #[test]
    fn survivors_group_by_path_and_closed_baseline_fds_show_in_growth() {
        let before = table(&[(3, FdKind::File, None, Some("/a")), (4, FdKind::Tcp, Some(9), None)]);
        let baseline = Baseline::new(&before, 0, BaselineReason::Observation);
        let after = table(&[
            (3, FdKind::File, None, Some("/a")),
            (5, FdKind::File, None, Some("/db")),
            (6, FdKind::File, None, Some("/db")),
        ]);
        let survivors = baseline.survivors(&after, 10);
        assert_eq!(survivors.total, 2);
        assert_eq!(survivors.path("/db"), 2);
        assert_eq!(survivors.growth.get(&FdKind::Tcp), Some(&-1));
        assert_eq!(survivors.growth.get(&FdKind::File), Some(&2));
    }

    #[test]
    fn baseline_memory_is_capped() {
        let many: Vec<_> = (0..(BASELINE_MAX as i32 + 10))
            .map(|fd| (fd, FdKind::Pipe, Some(fd as u64), None))
            .collect();
        let big = table(&many);
        let baseline = Baseline::new(&big, 0, BaselineReason::SeriesStart);
        assert_eq!(baseline.len(), BASELINE_MAX);
        // Whatever sits above the cap counts as present at the baseline.
        assert_eq!(baseline.survivors(&big, 1).total, 0);
    }
}
