//! What the engine knows after a tick, as one value every face renders: the CLI's
//! `watch` table, the daemon's metrics, the app's popover. Being plain data it is
//! cheap to clone behind an `Arc`, serialises to the JSON that `watch --json`
//! prints and the UI receives, and keeps the faces free of engine internals.

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
    /// Why history is not being kept or written, when it is not: a data
    /// directory that cannot be written (the engine runs without history), a
    /// full disk.
    pub history_error: Option<String>,
}

impl Status {
    /// The worst severity over all targets and the orphan rules: the tray icon's
    /// variant.
    pub fn worst(&self) -> Severity {
        let targets = self.targets.iter().map(|t| t.severity);
        targets.chain(self.orphan_rules.iter().map(|r| r.severity)).max().unwrap_or(Severity::Ok)
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
    /// The target's configured name, with `[pid]` when its selector matched several.
    pub name: String,
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
