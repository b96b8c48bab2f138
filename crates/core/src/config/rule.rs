//! The rule vocabulary: what a rule measures ([`Metric`]), its thresholds and
//! pacing ([`RuleSpec`]) and the built-in rules. It lives with the config because
//! the config is where rules are written; evaluating them is `crate::rules`'s
//! job, a layer above, so the two never import each other both ways.

use super::suggest::{did_you_mean, target_metric_names};
use globset::{Glob, GlobMatcher};
use leakwatch_probe::{FdClass, FdKind};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Default number of consecutive samples before a rule fires or clears.
pub const DEFAULT_SAMPLES: u32 = 2;
/// Default time between reminders of a raised rule.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(30 * 60);

/// Rules by metric key ([`Metric::key`](super::Metric::key)); `None` is a rule turned off with
/// `key = false`, which hides an inherited rule of the same key.
pub type RuleMap = BTreeMap<String, Option<RuleSpec>>;

/// What a rule measures.
#[derive(Debug, Clone)]
pub enum Metric {
    /// All open descriptors.
    Fds,
    /// Descriptors of one canonical kind.
    Kind(FdKind),
    /// Descriptors of one gauge class.
    Class(FdClass),
    /// Descriptors on paths matching a glob (SQLite companions included).
    Path(PathGlob),
    /// Resident memory of the target.
    Rss,
    /// Leak slope of all descriptors, per hour.
    Slope,
    /// Projected time until the FD limit; fires when it is *below* the threshold.
    Eta,
    /// The target's process cannot be found.
    Down,
    /// Number of orphan trees.
    OrphanCount,
    /// Resident memory of all orphan trees.
    OrphanRss,
}

/// A compiled `path:<glob>` pattern, with its text.
#[derive(Debug, Clone)]
pub struct PathGlob {
    text: String,
    matcher: GlobMatcher,
}

impl PathGlob {
    /// Compiles `text` (globset syntax; `*` also crosses `/`).
    pub fn new(text: &str) -> Result<Self, globset::Error> {
        Ok(Self { text: text.to_owned(), matcher: Glob::new(text)?.compile_matcher() })
    }

    /// The glob as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `path` matches.
    pub fn is_match(&self, path: &str) -> bool {
        self.matcher.is_match(path)
    }
}

/// Which way is worse for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Higher is worse: counts, bytes, slopes, the down flag.
    Above,
    /// Lower is worse: the ETA.
    Below,
}

impl Metric {
    /// Parses a key of a `[*.rules]` table of a target or `[defaults]`.
    pub fn from_key(key: &str) -> Result<Self, String> {
        if let Some(glob) = key.strip_prefix("path:") {
            if glob.is_empty() {
                return Err("expected a glob after \"path:\", like \"path:*state.db*\"".into());
            }
            return PathGlob::new(glob)
                .map(Metric::Path)
                .map_err(|e| format!("invalid glob: {}", glob_error(&e)));
        }
        // "other" is both a kind and a class; the kind wins (the class adds only pidfd).
        if let Some(kind) = FdKind::from_name(key) {
            return Ok(Metric::Kind(kind));
        }
        if let Some(class) = FdClass::ALL.into_iter().find(|c| c.name() == key) {
            return Ok(Metric::Class(class));
        }
        match key {
            "fds" => Ok(Metric::Fds),
            "rss" => Ok(Metric::Rss),
            "slope" => Ok(Metric::Slope),
            "eta" => Ok(Metric::Eta),
            "down" => Ok(Metric::Down),
            _ => {
                let mut message = String::from("unknown metric");
                if let Some(close) = did_you_mean(key, target_metric_names()) {
                    message.push_str(&format!(" (did you mean \"{close}\"?)"));
                }
                message.push_str(
                    "; expected fds, a descriptor kind (kqueue, epoll, unix, tcp, file, ...), a class \
                     (event_loops, sockets, files, pipes), \"path:<glob>\", rss, slope, eta or down",
                );
                Err(message)
            }
        }
    }

    /// Parses a key of `[orphans.rules]`.
    pub fn from_orphan_key(key: &str) -> Result<Self, String> {
        match key {
            "count" => Ok(Metric::OrphanCount),
            "rss" => Ok(Metric::OrphanRss),
            _ => {
                let mut message = String::from("unknown orphan metric");
                if let Some(close) = did_you_mean(key, ["count", "rss"]) {
                    message.push_str(&format!(" (did you mean \"{close}\"?)"));
                }
                message.push_str("; expected count or rss");
                Err(message)
            }
        }
    }

    /// The metric's name in events and rule maps: the config key for target
    /// metrics (`fds`, `kqueue`, `path:*state.db*`), `orphans.count` and
    /// `orphans.rss` for the orphan ones.
    pub fn key(&self) -> String {
        match self {
            Metric::Fds => "fds".into(),
            Metric::Kind(kind) => kind.name().into(),
            Metric::Class(class) => class.name().into(),
            Metric::Path(glob) => format!("path:{}", glob.as_str()),
            Metric::Rss => "rss".into(),
            Metric::Slope => "slope".into(),
            Metric::Eta => "eta".into(),
            Metric::Down => "down".into(),
            Metric::OrphanCount => "orphans.count".into(),
            Metric::OrphanRss => "orphans.rss".into(),
        }
    }

    /// Which way is worse.
    pub const fn direction(&self) -> Direction {
        match self {
            Metric::Eta => Direction::Below,
            _ => Direction::Above,
        }
    }
}

impl PartialEq for Metric {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Metric {}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// A rule's threshold, in the unit its metric allows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// An absolute number (descriptors, orphan trees).
    Count(f64),
    /// A percentage of the process's FD limit.
    Percent(f64),
    Bytes(u64),
    /// Descriptors per hour.
    PerHour(f64),
    /// For the ETA.
    Duration(Duration),
    /// For `down`: `true` fires when down, `false` never fires.
    Flag(bool),
}

impl Threshold {
    /// The threshold in the metric's unit (descriptors, bytes, per hour, seconds,
    /// 1 for a set flag); `None` when it cannot be known: a percentage without a
    /// limit, or a `false` flag.
    pub fn resolve(&self, limit: Option<u64>) -> Option<f64> {
        match *self {
            Threshold::Count(n) | Threshold::PerHour(n) => Some(n),
            Threshold::Percent(p) => limit.map(|l| p * l as f64 / 100.0),
            Threshold::Bytes(b) => Some(b as f64),
            Threshold::Duration(d) => Some(d.as_secs_f64()),
            Threshold::Flag(true) => Some(1.0),
            Threshold::Flag(false) => None,
        }
    }

    /// The value and a unit tag, for comparing two thresholds without a limit.
    pub(super) fn comparable(&self) -> Option<(u8, f64)> {
        match *self {
            Threshold::Count(n) => Some((0, n)),
            Threshold::Percent(p) => Some((1, p)),
            Threshold::Bytes(b) => Some((2, b as f64)),
            Threshold::PerHour(r) => Some((3, r)),
            Threshold::Duration(d) => Some((4, d.as_secs_f64())),
            Threshold::Flag(_) => None,
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Threshold::Count(n) => write!(f, "{}", trim_float(*n)),
            Threshold::Percent(p) => write!(f, "{}%", trim_float(*p)),
            Threshold::Bytes(b) => f.write_str(&crate::units::human_bytes(*b)),
            Threshold::PerHour(r) => write!(f, "{}/h", trim_float(*r)),
            Threshold::Duration(d) => write!(f, "{}", humantime::format_duration(*d)),
            Threshold::Flag(b) => write!(f, "{b}"),
        }
    }
}

/// One rule: a metric with its thresholds and pacing.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSpec {
    pub metric: Metric,
    pub warn: Option<Threshold>,
    pub critical: Option<Threshold>,
    /// Where a raised rule clears; `None`: the default (see `rules`).
    pub clear: Option<Threshold>,
    /// Consecutive samples beyond a threshold before it fires, or below clear
    /// before it clears.
    pub samples: u32,
    /// Least time between notifications of the same rule.
    pub cooldown: Duration,
}

impl RuleSpec {
    /// A rule with default pacing.
    pub fn new(metric: Metric, warn: Option<Threshold>, critical: Option<Threshold>) -> Self {
        Self {
            metric,
            warn,
            critical,
            clear: None,
            samples: DEFAULT_SAMPLES,
            cooldown: DEFAULT_COOLDOWN,
        }
    }
}

/// The rules every configuration starts from: fds at 80% / 95% of the limit, an
/// ETA under 6 h / 1 h, and a configured target that cannot be found.
pub fn builtin_rules() -> RuleMap {
    [
        RuleSpec::new(Metric::Fds, Some(Threshold::Percent(80.0)), Some(Threshold::Percent(95.0))),
        RuleSpec::new(
            Metric::Eta,
            Some(Threshold::Duration(Duration::from_secs(6 * 3600))),
            Some(Threshold::Duration(Duration::from_secs(3600))),
        ),
        RuleSpec::new(Metric::Down, None, Some(Threshold::Flag(true))),
    ]
    .into_iter()
    .map(|spec| (spec.metric.key(), Some(spec)))
    .collect()
}

pub(super) fn glob_error(error: &globset::Error) -> String {
    error.kind().to_string()
}

pub(super) fn trim_float(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 { format!("{}", n as i64) } else { format!("{n}") }
}
