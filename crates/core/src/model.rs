//! The engine's shared vocabulary: samples, series, severities and events. Every
//! face (CLI, daemon, app, metrics) and the store speak in these types, so their
//! field names are the JSON names too.

use leakwatch_probe::{FdClass, FdKind, FdLimit, ProcessId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch: the one time unit of samples and events.
pub type UnixMillis = u64;

/// `now` as [`UnixMillis`].
pub fn unix_millis(at: SystemTime) -> UnixMillis {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One poll of one watched process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Sample {
    pub at: UnixMillis,
    /// All open descriptors.
    pub total: u64,
    /// Descriptors per canonical kind; absent kinds are zero.
    #[serde(default)]
    pub kinds: BTreeMap<FdKind, u64>,
    /// The soft limit the percentages and the ETA are measured against.
    pub limit: Option<u64>,
    pub rss_bytes: Option<u64>,
    pub cpu_seconds: Option<f64>,
    pub threads: Option<u32>,
    /// Number of descendants (the whole tree below the process).
    #[serde(default)]
    pub descendants: u32,
}

impl Sample {
    /// Count of one kind.
    pub fn kind(&self, kind: FdKind) -> u64 {
        self.kinds.get(&kind).copied().unwrap_or(0)
    }

    /// Count of one class of kinds.
    pub fn class(&self, class: FdClass) -> u64 {
        self.kinds.iter().filter(|(k, _)| k.class() == class).map(|(_, n)| n).sum()
    }

    /// Descriptors used, as a percentage of the limit.
    pub fn percent_of_limit(&self) -> Option<f64> {
        let limit = self.limit.filter(|l| *l > 0)?;
        Some(self.total as f64 * 100.0 / limit as f64)
    }
}

/// The identity a series of samples belongs to: a target as matched by one process.
/// A restart (a new process for the target) starts a new series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SeriesKey {
    pub target: String,
    #[serde(flatten)]
    pub process: ProcessId,
}

/// How bad a rule's state is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Ok,
    Warning,
    Critical,
}

impl Severity {
    /// The canonical name.
    pub const fn name(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// What happened, in the event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A rule crossed its threshold for enough samples.
    Raised,
    /// A raised rule got worse (warning → critical).
    Escalated,
    /// A raised rule is still beyond its threshold after its cooldown.
    Reminded,
    /// A rule fell below its clear threshold.
    Cleared,
    /// The target's process changed (restart, new pid on the port): a new series.
    SeriesStarted,
    /// The configuration could not be loaded; the last good one stays in force.
    ConfigError,
    /// The configuration was reloaded.
    ConfigReloaded,
    /// An action (restart, cleanup) ran; the message says what it did.
    Action,
}

/// What an event is about: a typed fact, so that faces match events to rows,
/// metrics label them and the store files them without reading a name apart.
/// Its [`Display`](std::fmt::Display) is the label people and the store see
/// (`web`, `web[4321]`, `orphans`, `leakwatch`), the same as a row's name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Subject {
    /// A `[[watch]]` target's process. `instance` is its pid when the target's
    /// selector matched several processes (each is a row of its own), as a
    /// status row's `target` and `instance` say.
    Target { name: String, instance: Option<u32> },
    /// A top descriptor holder watched in automatic mode (no target configured):
    /// not a target until someone watches it. `name` is its process name.
    Process { name: String, pid: u32 },
    /// The orphan trees, as `[orphans.rules]` and the idle reaper see them.
    Orphans,
    /// Leakwatch itself: its configuration.
    Leakwatch,
}

impl Subject {
    /// A configured target's only process (or the target while it is down).
    pub fn target(name: &str) -> Self {
        Subject::Target { name: name.to_owned(), instance: None }
    }

    /// The subject a label names, for what was written as text before events
    /// carried their subject (the store's `target` column, an older engine's
    /// events): `orphans`, `leakwatch`, `name[pid]` (a target's instance; an
    /// automatic-mode holder is written the same way and reads back as one),
    /// else a target's name. A target called `orphans` or `leakwatch` reads
    /// back as those: the label alone cannot tell them apart.
    pub fn from_label(label: &str) -> Self {
        match label {
            "orphans" => return Subject::Orphans,
            "leakwatch" => return Subject::Leakwatch,
            _ => {}
        }
        let instance = label
            .strip_suffix(']')
            .and_then(|rest| rest.rsplit_once('['))
            .and_then(|(name, pid)| Some((name, pid.parse::<u32>().ok()?)))
            .filter(|(name, _)| !name.is_empty());
        match instance {
            Some((name, pid)) => Subject::Target { name: name.to_owned(), instance: Some(pid) },
            None => Subject::target(label),
        }
    }

    /// The configured target this is about, if any.
    pub fn target_name(&self) -> Option<&str> {
        match self {
            Subject::Target { name, .. } => Some(name),
            _ => None,
        }
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::Target { name, instance: None } => f.write_str(name),
            Subject::Target { name, instance: Some(pid) } | Subject::Process { name, pid } => {
                write!(f, "{name}[{pid}]")
            }
            Subject::Orphans => f.write_str("orphans"),
            Subject::Leakwatch => f.write_str("leakwatch"),
        }
    }
}

impl<'de> Deserialize<'de> for Subject {
    /// The tagged object this build writes, or the plain label an engine wrote
    /// before events carried a subject (read back through the local API).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        enum Tagged {
            Target { name: String, instance: Option<u32> },
            Process { name: String, pid: u32 },
            Orphans,
            Leakwatch,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Tagged(Tagged),
            Label(String),
        }
        Ok(match Wire::deserialize(deserializer)? {
            Wire::Tagged(Tagged::Target { name, instance }) => Subject::Target { name, instance },
            Wire::Tagged(Tagged::Process { name, pid }) => Subject::Process { name, pid },
            Wire::Tagged(Tagged::Orphans) => Subject::Orphans,
            Wire::Tagged(Tagged::Leakwatch) => Subject::Leakwatch,
            Wire::Label(label) => Subject::from_label(&label),
        })
    }
}

/// One entry of the event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Event {
    pub at: UnixMillis,
    /// What it is about. An engine from before typed subjects sent its label
    /// as `target`.
    #[serde(alias = "target")]
    pub subject: Subject,
    pub pid: Option<u32>,
    pub kind: EventKind,
    /// The rule's metric name (`fds`, `kqueue`, `eta`, ...), if a rule raised it.
    pub rule: Option<String>,
    pub severity: Severity,
    /// The metric's value when the event was raised.
    pub value: Option<f64>,
    /// Text a person can act on: "copilot: 812 kqueues, +96/h, limit in 2 h 40 min".
    /// It says what happened, never whether it was notified: that is `notified`.
    pub message: String,
    /// Whether a desktop notification was shown for it. Only rule changes and
    /// actions notify, and not a rule raised again within its cooldown, nor
    /// while alerts are paused or notifications are off (or the notification
    /// service failed). The history keeps it (schema 2); events recorded
    /// before schema 2, or sent without it by an older engine, read as not
    /// notified.
    #[serde(default)]
    pub notified: bool,
}

/// A descriptor limit as the engine uses it: the probe's reading, or the target's
/// configured `fd_limit` where the OS cannot tell (macOS).
pub type EffectiveLimit = FdLimit;

/// A duration rendered the way the UI and notifications say it: "2 h 40 min".
pub fn human_duration(d: Duration) -> String {
    let minutes = d.as_secs() / 60;
    let (days, hours, mins) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    match (days, hours) {
        (0, 0) if minutes == 0 => format!("{} s", d.as_secs()),
        (0, 0) => format!("{mins} min"),
        (0, _) if mins == 0 => format!("{hours} h"),
        (0, _) => format!("{hours} h {mins} min"),
        _ => format!("{days} d {hours} h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(Duration::from_secs(40)), "40 s");
        assert_eq!(human_duration(Duration::from_secs(600)), "10 min");
        assert_eq!(human_duration(Duration::from_secs(9600)), "2 h 40 min");
        assert_eq!(human_duration(Duration::from_secs(7200)), "2 h");
        assert_eq!(human_duration(Duration::from_secs(3 * 86400 + 7200)), "3 d 2 h");
    }

    #[test]
    fn subject_labels_are_the_row_names_and_read_back() {
        let cases = [
            (Subject::target("web"), "web"),
            (Subject::Target { name: "web".into(), instance: Some(4321) }, "web[4321]"),
            (Subject::Orphans, "orphans"),
            (Subject::Leakwatch, "leakwatch"),
        ];
        for (subject, label) in cases {
            assert_eq!(subject.to_string(), label);
            assert_eq!(Subject::from_label(label), subject);
        }
        let holder = Subject::Process { name: "python3".into(), pid: 7 };
        assert_eq!(holder.to_string(), "python3[7]");
        // Brackets that are not an instance's pid are part of the name.
        assert_eq!(Subject::from_label("a[b]"), Subject::target("a[b]"));
        assert_eq!(Subject::from_label("[7]"), Subject::target("[7]"));
    }

    #[test]
    fn subject_is_tagged_on_the_wire_and_reads_an_older_engines_label() {
        let subject = Subject::Target { name: "web".into(), instance: Some(9) };
        let json = serde_json::to_value(&subject).unwrap();
        assert_eq!(json, serde_json::json!({"type": "target", "name": "web", "instance": 9}));
        assert_eq!(serde_json::from_value::<Subject>(json).unwrap(), subject);
        let orphans = serde_json::to_value(Subject::Orphans).unwrap();
        assert_eq!(orphans, serde_json::json!({"type": "orphans"}));
        assert_eq!(serde_json::from_value::<Subject>(orphans).unwrap(), Subject::Orphans);
        // Issue 13: an engine from before typed subjects sent `"target": "label"`.
        assert_eq!(serde_json::from_str::<Subject>(r#""orphans""#).unwrap(), Subject::Orphans);
        assert_eq!(serde_json::from_str::<Subject>(r#""web[9]""#).unwrap(), subject);
    }

    #[test]
    fn sample_percent_and_classes() {
        let mut kinds = BTreeMap::new();
        kinds.insert(FdKind::Kqueue, 150);
        kinds.insert(FdKind::Unix, 50);
        let sample = Sample {
            at: 0,
            total: 200,
            kinds,
            limit: Some(256),
            rss_bytes: None,
            cpu_seconds: None,
            threads: None,
            descendants: 0,
        };
        assert_eq!(sample.class(FdClass::EventLoops), 150);
        assert_eq!(sample.kind(FdKind::Epoll), 0);
        assert!((sample.percent_of_limit().unwrap() - 78.125).abs() < 1e-9);
    }
}
