//! What the engine knows after a tick, as one value every face renders: the CLI's
//! `watch` table, the daemon's metrics, the app's popover. Being plain data it is
//! cheap to clone behind an `Arc`, serialises to the JSON that `watch --json`
//! prints and the UI receives, and keeps the faces free of engine internals.

use crate::diagnose::Signature;
use crate::model::{Event, Sample, Severity, UnixMillis};
use crate::orphans::OrphanTree;
use crate::summary::PathGroup;
use leakwatch_probe::{FdKind, FdLimit, ProcessId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The whole state after one tick.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
// Read back from the local API ([`crate::api`]) by faces that attach: an older or
// newer engine may leave fields out.
#[serde(default)]
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
    /// The engine that made this status, as its data-directory lock names it
    /// (pid, face, since when, socket): a face attached to another engine (the
    /// app to the daemon) shows whose state it is. `None` for an engine that
    /// keeps no history and so owns no data directory.
    pub engine: Option<crate::owner::Owner>,
}

/// Something wrong with Leakwatch itself, not with a watched process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Problem {
    /// What is affected.
    pub what: Affected,
    /// What went wrong, with the file or call that failed.
    pub message: String,
    /// What a person can do about it.
    pub fix: String,
}

/// The part of Leakwatch a [`Problem`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Affected {
    /// The configuration could not be loaded.
    Config,
    /// The history (the data directory's database) cannot be opened or written.
    History,
    /// The process interface (`/proc`, libproc) cannot be used.
    Probe,
    /// The engine: it could not start, or the one owning the data directory
    /// does not answer.
    Engine,
    /// A part this version does not know (a newer engine's, read back through
    /// the local API).
    #[serde(other)]
    Other,
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
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(default)]
pub struct ConfigStatus {
    /// The file, or `None` when running on built-in defaults.
    pub path: Option<String>,
    /// The last load error, if the file on disk is currently invalid.
    pub error: Option<String>,
    /// True when no target is configured and the top descriptor holders are shown.
    pub automatic: bool,
}

/// Whether a target's process could be found and read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum TargetState {
    Up,
    /// No process matches the target's selector.
    Down(String),
    /// The process exists but this user may not read it.
    PermissionDenied(String),
    /// Whether the target runs cannot be told now: its pidfile could not be
    /// read in time (a hung mount?). Not `Down`: no `down` rule is fed and no
    /// automatic restart follows from it.
    Unknown(String),
}

/// One watched process (a target may match several: each is one row).
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    #[serde(default)]
    pub restartable: bool,
    /// Why not, when not: what the user can do instead.
    pub restart_unavailable: Option<String>,
    /// True when the process's own descriptor limit cannot be read (another
    /// user's process, or any other process on macOS) and no `fd_limit` is
    /// configured: percentage thresholds and the ETA do not apply; a configured
    /// `fd_limit` fixes it.
    #[serde(default)]
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
    #[serde(default)]
    pub kind_slopes_per_hour: BTreeMap<FdKind, f64>,
    /// Projected seconds until the soft limit is reached at the current slope.
    pub eta_seconds: Option<f64>,
    /// The worst state of the target's rules.
    pub severity: Severity,
    #[serde(default)]
    pub rules: Vec<RuleStatus>,
    /// Most-held paths, when the engine read them this series.
    #[serde(default)]
    pub top_paths: Vec<PathGroup>,
    /// Kinds that grew since the series' first sample, most first.
    #[serde(default)]
    pub grew: Vec<KindGrowth>,
    /// `(time, total)` pairs of the last hour, for sparklines.
    #[serde(default)]
    pub history: Vec<(UnixMillis, u64)>,
    /// What is leaking, in one line ("event loops leaking: 1 epoll + 2 unix
    /// sockets each, +96/h"), from the descriptors that survived since the
    /// series started; `None` while nothing recognisable survives.
    pub diagnosis: Option<String>,
    /// The leak signatures behind `diagnosis`, most certain first.
    #[serde(default)]
    pub signatures: Vec<Signature>,
    /// How far the reading has come: measuring until a slope exists, then
    /// measured, or at the limit. Faces never show a measuring row as fine.
    #[serde(default)]
    pub reading: Reading,
    /// When this run of the engine first found the target down (or unreadable),
    /// for "since 14:56"; `None` while it is up.
    #[serde(default)]
    pub down_since: Option<UnixMillis>,
}

/// How far the engine's reading of a row has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Reading {
    /// No slope yet: too little history in the window (right after a target
    /// appears or restarts, when the store held none of its series). Neither
    /// fine nor failing.
    #[default]
    Measuring,
    /// A slope exists: the row's severity says how it is doing.
    Measured,
    /// The descriptor table is full: the process's calls that open a
    /// descriptor fail now. Not "limit in 0 min": it has already happened.
    AtLimit,
}

impl TargetStatus {
    /// A row with no sample: nothing measured, no trend, rule, path or
    /// diagnosis, severity ok and still measuring. What a target shows before
    /// its first sample, or while it is down, unreadable or unknown; callers
    /// set what they know beyond its `name`, `selector` and `state` (its
    /// target, instance, process, whether it can be restarted).
    pub fn unsampled(
        name: impl Into<String>,
        selector: impl Into<String>,
        state: TargetState,
    ) -> Self {
        TargetStatus {
            name: name.into(),
            target: None,
            instance: None,
            restartable: false,
            restart_unavailable: None,
            limit_unknown: false,
            top_kind: None,
            selector: selector.into(),
            state,
            process: None,
            sample: None,
            limit: None,
            slope_per_hour: None,
            kind_slopes_per_hour: BTreeMap::new(),
            eta_seconds: None,
            severity: Severity::Ok,
            rules: Vec::new(),
            top_paths: Vec::new(),
            grew: Vec::new(),
            history: Vec::new(),
            diagnosis: None,
            signatures: Vec::new(),
            reading: Reading::Measuring,
            down_since: None,
        }
    }

    /// The order faces list rows in: most urgent first (severity, then the
    /// nearest limit, a full table before any ETA).
    pub fn urgency_cmp(&self, other: &Self) -> std::cmp::Ordering {
        let eta = |t: &Self| match t.reading {
            Reading::AtLimit => Some(-1.0),
            _ => t.eta_seconds.filter(|s| s.is_finite()),
        };
        other.severity.cmp(&self.severity).then_with(|| match (eta(self), eta(other)) {
            (Some(a), Some(b)) => a.total_cmp(&b),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        })
    }
}

/// A row's headline kind: "kqueue 812 ↑ +96/h".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ProcessSummary {
    #[serde(flatten)]
    pub id: ProcessId,
    pub name: String,
    pub argv: Vec<String>,
    pub started_at: UnixMillis,
}

/// A rule's current state.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct RuleStatus {
    pub metric: String,
    pub severity: Severity,
    pub value: Option<f64>,
}

/// How much one kind grew within a series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct KindGrowth {
    pub kind: FdKind,
    pub first: u64,
    pub now: u64,
}

/// Leakwatch's own use of the machine.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(default)]
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

    /// A status as an engine serves it (targets up and down, an orphan tree
    /// with a folded member and a pattern, a path with companions).
    const SERVED: &str = r#"{"alerts_paused_until":1796064400000,"at":1796064375846,"config":{"automatic":false,"error":null,"path":"/tmp/config.toml"},"engine":{"face":"daemon","pid":6957,"since":1796064300000,"socket":"/tmp/data/engine.sock"},"history_error":null,"orphan_rules":[{"metric":"orphans.count","severity":"warning","value":2.0}],"orphans":[{"age_seconds":878.664,"idle_seconds":12.5,"label":"xtask bench","members":[{"argv":["xtask","bench"],"cpu_seconds":0.4,"depth":0,"fds":5,"name":"xtask","pid":9780,"ppid":1,"rss_bytes":659456,"start_time":1163818},{"argv":["cargo","build"],"cpu_seconds":1.39,"depth":1,"fds":18,"folded_into":9780,"label":"cargo (uv → python)","name":"cargo","pid":12874,"ppid":9780,"rss_bytes":84590592,"start_time":1173401}],"original_parent":{"argv":["bash"],"name":"bash","pid":77,"start_time":12},"pattern":"xtask","reason":"pattern","root":{"pid":9780,"start_time":1163818},"total_fds":23,"total_rss_bytes":85250048,"watched":[]}],"own":{"cpu_seconds":0.12,"fds":18,"pid":6957,"rss_bytes":21204992,"threads":4},"problems":[{"fix":"make it writable","message":"running without history","what":"history"}],"recent_events":[{"at":1796064373844,"kind":"series_started","message":"leaky: watching pid 6954 (lw-helper)","notified":false,"pid":6954,"rule":null,"severity":"ok","subject":{"instance":null,"name":"leaky","type":"target"},"value":null},{"at":1796064374844,"kind":"raised","message":"orphans: 2 orphaned process trees","notified":true,"pid":null,"rule":"orphans.count","severity":"warning","subject":{"type":"orphans"},"value":2.0}],"restarts":{"leaky":1},"targets":[{"diagnosis":"event loops leaking","down_since":null,"eta_seconds":3600.0,"grew":[{"first":1,"kind":"epoll","now":9}],"history":[[1796064375846,5],[1796064376846,7]],"instance":null,"kind_slopes_per_hour":{"epoll":96.0},"limit":{"hard":20000,"soft":20000,"source":"proc_limits"},"limit_unknown":false,"name":"leaky","process":{"argv":["lw-helper"],"name":"lw-helper","pid":6954,"start_time":1251588,"started_at":1796064372880},"restart_unavailable":null,"reading":"measured","restartable":true,"rules":[{"metric":"fds","severity":"ok","value":5.0}],"sample":{"at":1796064375846,"cpu_seconds":0.0,"descendants":0,"kinds":{"device":1,"pipe":4},"limit":20000,"rss_bytes":2580480,"threads":1,"total":5},"selector":"pidfile /tmp/helper.pid","severity":"warning","signatures":["event_loops_not_closed"],"slope_per_hour":96.0,"state":"up","target":"leaky","top_kind":{"count":4,"kind":"pipe","slope_per_hour":null},"top_paths":[{"companions":[{"count":46,"suffix":"-wal"}],"count":48,"kind":"file","path":"/tmp/state.db"}]},{"diagnosis":null,"down_since":1796064370000,"eta_seconds":null,"grew":[],"history":[],"instance":4321,"kind_slopes_per_hour":{},"limit":null,"limit_unknown":true,"name":"web[4321]","process":null,"reading":"measuring","reason":"no process listens on port 4321","restart_unavailable":null,"restartable":false,"rules":[],"sample":null,"selector":"port 4321","severity":"critical","signatures":[],"slope_per_hour":null,"state":"down","target":"web","top_kind":null,"top_paths":[]}],"tick":3}"#;

    #[test]
    fn status_read_back_from_the_api_is_the_status_that_was_sent() {
        let sent: serde_json::Value = serde_json::from_str(SERVED).unwrap();
        let read: Status = serde_json::from_value(sent.clone()).unwrap();
        assert_eq!(
            read.targets[1].state,
            TargetState::Down("no process listens on port 4321".into())
        );
        assert_eq!(serde_json::to_value(&read).unwrap(), sent);
    }

    #[test]
    fn status_from_an_engine_that_leaves_fields_out_reads_with_defaults() {
        let read: Status = serde_json::from_str(
            r#"{"tick":4,"targets":[{"name":"web","target":"web","instance":null,"selector":"port 1","state":"up","process":null,"sample":null,"limit":null,"slope_per_hour":null,"eta_seconds":null,"severity":"ok","signatures":["a_shape_of_the_future"]}],"future_field":1}"#,
        )
        .unwrap();
        assert_eq!(read.tick, 4);
        assert!(read.orphans.is_empty() && read.problems.is_empty());
        assert_eq!(read.targets[0].signatures, [Signature::Unrecognised]);
        assert!(read.targets[0].history.is_empty());
    }

    #[test]
    fn top_kind_is_the_fastest_growing_kind_with_its_count() {
        let counts = BTreeMap::from([(FdKind::Kqueue, 812), (FdKind::Unix, 2000)]);
        let slopes = BTreeMap::from([(FdKind::Kqueue, 96.0), (FdKind::Unix, -3.0)]);
        let top = TopKind::pick(&counts, &slopes).unwrap();
        assert_eq!(top, TopKind { kind: FdKind::Kqueue, count: 812, slope_per_hour: Some(96.0) });
    }

    fn row(name: &str, severity: Severity, eta: Option<f64>, reading: Reading) -> TargetStatus {
        TargetStatus {
            target: Some(name.to_owned()),
            eta_seconds: eta,
            severity,
            reading,
            ..TargetStatus::unsampled(name, "", TargetState::Up)
        }
    }

    #[test]
    fn rows_order_by_severity_then_nearest_limit_with_a_full_table_first() {
        let mut rows = [
            row("calm", Severity::Ok, None, Reading::Measured),
            row("later", Severity::Critical, Some(3600.0), Reading::Measured),
            row("warned", Severity::Warning, Some(60.0), Reading::Measured),
            row("down", Severity::Critical, None, Reading::Measuring),
            row("soon", Severity::Critical, Some(360.0), Reading::Measured),
            row("full", Severity::Critical, Some(0.0), Reading::AtLimit),
        ];
        rows.sort_by(TargetStatus::urgency_cmp);
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["full", "soon", "later", "down", "warned", "calm"]);
    }

    #[test]
    fn top_kind_without_growth_is_the_most_held_kind() {
        let counts = BTreeMap::from([(FdKind::Kqueue, 812), (FdKind::Unix, 2000)]);
        let slopes = BTreeMap::from([(FdKind::Unix, -3.0)]);
        let top = TopKind::pick(&counts, &slopes).unwrap();
        assert_eq!(top, TopKind { kind: FdKind::Unix, count: 2000, slope_per_hour: None });
        assert_eq!(TopKind::pick(&BTreeMap::new(), &BTreeMap::new()), None);
    }

    /// Issue 13: a problem's `what` was a bare string any caller could spell
    /// its own way. It is a fixed set, with the words faces already read, and
    /// a part a newer engine names reads as `other` rather than failing the
    /// whole status.
    #[test]
    fn a_problems_part_is_one_of_a_fixed_set_with_its_words_kept() {
        let words = [
            (Affected::Config, "config"),
            (Affected::History, "history"),
            (Affected::Probe, "probe"),
            (Affected::Engine, "engine"),
        ];
        for (part, word) in words {
            assert_eq!(serde_json::to_value(part).unwrap(), serde_json::json!(word));
            assert_eq!(serde_json::from_value::<Affected>(serde_json::json!(word)).unwrap(), part);
        }
        let newer: Problem =
            serde_json::from_str(r#"{"what":"gpu","message":"m","fix":"f"}"#).unwrap();
        assert_eq!(newer.what, Affected::Other);
    }
}
