//! What the engine knows after a tick, as one value every face renders: the CLI's
//! `watch` table, the daemon's metrics, the app's popover. Being plain data it is
//! cheap to clone behind an `Arc`, serialises to the JSON that `watch --json`
//! prints and the UI receives, and keeps the faces free of engine internals.

use crate::diagnose::Signature;
use crate::model::{Event, Sample, Severity, UnixMillis};
use crate::orphans::OrphanTree;
use crate::summary::PathGroup;
use leakwatch_probe::{FdKind, FdLimit, ProcessId};
use serde::Serialize;
use std::collections::BTreeMap;

/// The whole state after one tick.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Status {
    pub at: UnixMillis,
    pub tick: u64,
    pub targets: Vec<TargetStatus>,
    /// Where the configuration came from and, when the last reload failed, why
    /// (the previous good configuration stays in force).
    pub config: ConfigStatus,
    /// Leakwatch's own footprint, so a watchdog that leaks is seen too.
    pub own: OwnUsage,
    /// Recent events, newest last.
    pub recent_events: Vec<Event>,
    /// Whether notifications are paused, and until when.
    pub alerts_paused_until: Option<UnixMillis>,
    /// Orphaned process trees found by the last full scan, largest first.
    pub orphans: Vec<OrphanTree>,
    /// The state of each `[orphans.rules]` rule (`orphans.count`, `orphans.rss`).
    pub orphan_rules: Vec<RuleStatus>,
    /// Automatic restarts performed per target since the engine started.
    pub restarts: BTreeMap<String, u64>,
    /// What keeps the engine from working fully (no history, no process
    /// interface yet), each with how to fix it: the app keeps running and shows
    /// them rather than exit.
    pub problems: Vec<Problem>,
    /// Why history is not being kept or written, when it is not: a data
    /// directory that cannot be written (the engine runs without history), a
    /// full disk.
    pub history_error: Option<String>,
}

/// Something wrong with Leakwatch itself, not with a watched process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Problem {
    /// What is affected: `history`, `probe`.
    pub what: String,
    /// What went wrong, with the file or call that failed.
    pub message: String,
    /// What a person can do about it.
    pub fix: String,
}

impl Status {
    /// The engine's one-line diagnosis of the configured `target` (of its first
    /// row that has one): what a forensic snapshot before a manual restart
    /// records, as an automatic restart's does.
    pub fn diagnosis_of(&self, target: &str) -> Option<String> {
        self.targets
            .iter()
            .filter(|t| t.target.as_deref() == Some(target))
            .find_map(|t| t.diagnosis.clone())
    }

    /// The worst severity over all targets and the orphan rules: the tray icon's
    /// variant. A config error or a [`Problem`] is at least a warning: the
    /// watchdog is not watching what its user asked for.
    pub fn worst(&self) -> Severity {
        let targets = self.targets.iter().map(|t| t.severity);
        let own =
            (self.config.error.is_some() || !self.problems.is_empty()).then_some(Severity::Warning);
        targets
            .chain(self.orphan_rules.iter().map(|r| r.severity))
            .chain(own)
            .max()
            .unwrap_or(Severity::Ok)
    }
}

/// The configuration in force.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ConfigStatus {
    /// The file, or `None` when running on built-in defaults.
    pub path: Option<String>,
    /// The last load error, if the file on disk is currently invalid.
    pub error: Option<String>,
    /// True when no target is configured and the top descriptor holders are shown.
    pub automatic: bool,
}

/// Whether a target's process could be found and read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum TargetState {
    Up,
    /// No process matches the target's selector.
    Down(String),
    /// The process exists but this user may not read it.
    PermissionDenied(String),
}

/// One watched process (a target may match several: each is one row).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct TargetStatus {
    /// The row's display name: the target's configured name, with `[pid]` when
    /// its selector matched several. Faces use `target` and `instance`, never
    /// parse this.
    pub name: String,
    /// The `[[watch]]` entry this row belongs to; `None` for a top descriptor
    /// holder shown in automatic mode (not a target until someone watches it).
    pub target: Option<String>,
    /// The pid this row stands for when its target matched several processes
    /// (each is one row), or in automatic mode; `None` for a target's only row.
    pub instance: Option<u32>,
    /// Whether Restart works for this row: a configured target with a
    /// `[watch.restart]` (its process may be down: restarting starts it).
    pub restartable: bool,
    /// Why not, when not: what the user can do instead.
    pub restart_unavailable: Option<String>,
    /// True when the process's own descriptor limit cannot be read (another
    /// user's process, or any other process on macOS) and no `fd_limit` is
    /// configured: percentage thresholds and the ETA do not apply; a configured
    /// `fd_limit` fixes it.
    pub limit_unknown: bool,
    /// What is growing: the kind with the steepest positive slope, else the
    /// most-held kind, with its count now.
    pub top_kind: Option<TopKind>,
    /// The selector, as written in the config (`port 4321`, `process ^copilot$`).
    pub selector: String,
    #[serde(flatten)]
    pub state: TargetState,
    pub process: Option<ProcessSummary>,
    pub sample: Option<Sample>,
    pub limit: Option<FdLimit>,
    /// Total leak slope, descriptors per hour (Theil–Sen over the window).
    pub slope_per_hour: Option<f64>,
    /// Slope per kind that changed in the window.
    pub kind_slopes_per_hour: BTreeMap<FdKind, f64>,
    /// Projected seconds until the soft limit is reached at the current slope.
    pub eta_seconds: Option<f64>,
    /// The worst state of the target's rules.
    pub severity: Severity,
    pub rules: Vec<RuleStatus>,
    /// Most-held paths, when the engine read them this series.
    pub top_paths: Vec<PathGroup>,
    /// Kinds that grew since the series' first sample, most first.
    pub grew: Vec<KindGrowth>,
    /// `(time, total)` pairs of the last hour, for sparklines.
    pub history: Vec<(UnixMillis, u64)>,
    /// What is leaking, in one line ("event loops leaking: 1 epoll + 2 unix
    /// sockets each, +96/h"), from the descriptors that survived since the
    /// series started; `None` while nothing recognisable survives.
    pub diagnosis: Option<String>,
    /// The leak signatures behind `diagnosis`, most certain first.
    pub signatures: Vec<Signature>,
}

/// A row's headline kind: "kqueue 812 ↑ +96/h".
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct TopKind {
    pub kind: FdKind,
    pub count: u64,
    /// Its slope per hour, when it grows; `None` when no kind grows (then this
    /// is the most-held kind).
    pub slope_per_hour: Option<f64>,
}

impl TopKind {
    /// The fastest-growing kind of `kinds` (slopes per hour) present in
    /// `counts`, else the most-held one of `counts`.
    pub fn pick(counts: &BTreeMap<FdKind, u64>, slopes: &BTreeMap<FdKind, f64>) -> Option<Self> {
        let growing = slopes
            .iter()
            .filter(|(_, slope)| **slope > 0.0 && slope.is_finite())
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(kind, slope)| TopKind {
                kind: *kind,
                count: counts.get(kind).copied().unwrap_or(0),
                slope_per_hour: Some(*slope),
            });
        growing.or_else(|| {
            counts
                .iter()
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
                .map(|(kind, count)| TopKind { kind: *kind, count: *count, slope_per_hour: None })
        })
    }
}

/// The process a target currently resolves to.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ProcessSummary {
    #[serde(flatten)]
    pub id: ProcessId,
    pub name: String,
    pub argv: Vec<String>,
    pub started_at: UnixMillis,
}

/// A rule's current state.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct RuleStatus {
    pub metric: String,
    pub severity: Severity,
    pub value: Option<f64>,
}

/// How much one kind grew within a series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct KindGrowth {
    pub kind: FdKind,
    pub first: u64,
    pub now: u64,
}

/// Leakwatch's own use of the machine.
#[derive(Debug, Clone, Copy, Default, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct OwnUsage {
    pub pid: u32,
    pub fds: Option<u64>,
    pub rss_bytes: Option<u64>,
    pub cpu_seconds: Option<f64>,
    pub threads: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_kind_is_the_fastest_growing_kind_with_its_count() {
        let counts = BTreeMap::from([(FdKind::Kqueue, 812), (FdKind::Unix, 2000)]);
        let slopes = BTreeMap::from([(FdKind::Kqueue, 96.0), (FdKind::Unix, -3.0)]);
        let top = TopKind::pick(&counts, &slopes).unwrap();
        assert_eq!(top, TopKind { kind: FdKind::Kqueue, count: 812, slope_per_hour: Some(96.0) });
    }

    #[test]
    fn top_kind_without_growth_is_the_most_held_kind() {
        let counts = BTreeMap::from([(FdKind::Kqueue, 812), (FdKind::Unix, 2000)]);
        let slopes = BTreeMap::from([(FdKind::Unix, -3.0)]);
        let top = TopKind::pick(&counts, &slopes).unwrap();
        assert_eq!(top, TopKind { kind: FdKind::Unix, count: 2000, slope_per_hour: None });
        assert_eq!(TopKind::pick(&BTreeMap::new(), &BTreeMap::new()), None);
    }
}
