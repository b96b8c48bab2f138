//! The TOML configuration: what to watch, how to find and restart it, and when to
//! warn. It exists as its own pure module so that every face (CLI, daemon, app)
//! reads one file the same way, and so that a bad file is caught with a message a
//! person can fix at once: every error names the file, the line, the key and what
//! was expected, e.g.
//! `~/.config/leakwatch/config.toml:12: watch[0].interval: expected a duration like "2s" or "1h", found "2x"`.
//!
//! The document is parsed into toml's spanned tree ([`toml::de::DeTable`]) and
//! validated by hand rather than through `serde` derive: only that way does every
//! semantic error (two selectors, an unknown metric, a bad glob, a duplicate name)
//! carry the line of the key that caused it, not just the syntax errors. Unknown
//! keys are errors, with a "did you mean" where one is close.

use crate::model::Severity;
use globset::{Glob, GlobMatcher};
use leakwatch_probe::{FdClass, FdKind, ProcessInfo};
use regex::Regex;
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Environment variable naming the config file, overriding the platform default.
pub const CONFIG_ENV: &str = "LEAKWATCH_CONFIG";
/// Environment variable naming the data directory (the store), overriding the
/// platform default.
pub const DATA_DIR_ENV: &str = "LEAKWATCH_DATA_DIR";

/// Default poll interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
/// Default trend window.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(30 * 60);
/// Default number of consecutive samples before a rule fires or clears.
pub const DEFAULT_SAMPLES: u32 = 2;
/// Default time between reminders of a raised rule.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(30 * 60);
/// Default time a restarted command gets to become healthy.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
/// Default wait between SIGTERM and the next step of the escalation.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3);
/// A poll more often than this costs more than a watchdog may.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// The largest config file read: a hand-written config is a few kilobytes.
pub const MAX_CONFIG_BYTES: usize = 1024 * 1024;
/// The most `[[watch]]` targets one config may have: each is polled every
/// interval, so more would cost more than a watchdog may.
pub const MAX_TARGETS: usize = 1000;
/// The most a single compiled regex (`process`, `argv`, `protect`, `[orphans]
/// match`) may take, so checking a config stays fast and small.
pub const MAX_REGEX_BYTES: usize = 256 * 1024;

/// The longest duration accepted anywhere, on the command line or in the config:
/// anything longer is a typo, and would overflow the clock's arithmetic.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Parses a duration (`"2s"`, `"500ms"`, `"1h30m"`) the one way the CLI and the
/// config both do: humantime's syntax, at most [`MAX_DURATION`]. The error says
/// what was expected; callers add where it came from.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("{e}: expected a duration like \"2s\", \"500ms\" or \"1h\""))?;
    if d > MAX_DURATION {
        return Err(format!(
            "{:?} is too long: durations are at most 365 days",
            text.trim().chars().take(40).collect::<String>()
        ));
    }
    Ok(d)
}

// ---------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from; `None` for [`Config::default`].
    pub source: Option<PathBuf>,
    /// Processes never signalled: regexes on the process name or argv\[0\].
    pub protect: Vec<Regex>,
    /// Root only: whether leakwatch may act on other users' processes.
    pub allow_other_users: bool,
    /// Settings every target inherits.
    pub defaults: Defaults,
    /// The configured targets, in file order. Empty: the engine watches the
    /// user's top FD holders instead.
    pub watch: Vec<Target>,
    /// `[orphans]`: what counts as an orphan, reaping, orphan rules.
    pub orphans: OrphansConfig,
    /// `[notify]`: desktop notifications.
    pub notify: NotifyConfig,
    /// `[metrics]`: the Prometheus endpoint.
    pub metrics: MetricsConfig,
}

/// Rules by metric key ([`Metric::key`]); `None` is a rule turned off with
/// `key = false`, which hides an inherited rule of the same key.
pub type RuleMap = BTreeMap<String, Option<RuleSpec>>;

/// `[defaults]`: what every target inherits.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// Poll interval.
    pub interval: Duration,
    /// Trend window.
    pub window: Duration,
    /// The FD limit to assume where the OS cannot tell (macOS).
    pub fd_limit: Option<u64>,
    /// The built-in rules (fds, eta, down) with `[defaults.rules]` merged over them.
    pub rules: RuleMap,
}

/// One `[[watch]]` entry.
#[derive(Debug, Clone)]
pub struct Target {
    /// Unique display name.
    pub name: String,
    pub selector: Selector,
    /// Overrides of [`Defaults`]; use [`Config::interval`] and friends for the
    /// values in force.
    pub interval: Option<Duration>,
    pub window: Option<Duration>,
    pub fd_limit: Option<u64>,
    /// The target's own rules; [`Config::effective_rules`] merges them with the
    /// defaults.
    pub rules: RuleMap,
    pub restart: Option<Restart>,
    pub auto_restart: Option<AutoRestart>,
}

/// How a target's process is found.
#[derive(Debug, Clone)]
pub enum Selector {
    /// The pid written in this file.
    Pidfile(PathBuf),
    /// The process listening on this TCP port: follows launchers that double-fork.
    Port(u16),
    /// A launchd job label.
    Launchd(String),
    /// A systemd (user) unit.
    Systemd(String),
    /// A regex on the process name.
    Process(Regex),
    /// A regex on the whole command line (argv joined by spaces).
    Argv(Regex),
}

impl Selector {
    /// The config key of this selector.
    pub const fn key(&self) -> &'static str {
        match self {
            Selector::Pidfile(_) => "pidfile",
            Selector::Port(_) => "port",
            Selector::Launchd(_) => "launchd",
            Selector::Systemd(_) => "systemd",
            Selector::Process(_) => "process",
            Selector::Argv(_) => "argv",
        }
    }

    /// Whether `process` matches, for the selectors that are decided by the process
    /// table alone (`process`, `argv`); `None` for the ones that need the OS
    /// (a pidfile, a port, a service manager).
    pub fn matches_process(&self, process: &ProcessInfo) -> Option<bool> {
        match self {
            Selector::Process(re) => Some(re.is_match(&process.name)),
            Selector::Argv(re) => {
                Some(!process.argv.is_empty() && re.is_match(&process.argv.join(" ")))
            }
            _ => None,
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Pidfile(path) => write!(f, "pidfile {}", path.display()),
            Selector::Port(port) => write!(f, "port {port}"),
            Selector::Launchd(label) => write!(f, "launchd {label}"),
            Selector::Systemd(unit) => write!(f, "systemd {unit}"),
            Selector::Process(re) => write!(f, "process /{}/", re.as_str()),
            Selector::Argv(re) => write!(f, "argv /{}/", re.as_str()),
        }
    }
}

/// How a target is restarted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restart {
    /// `launchctl kickstart -k gui/UID/<label>`.
    Launchd(String),
    /// `systemctl --user restart <unit>`.
    Systemd(String),
    /// Stop the tree, wait for the port, spawn this detached, wait for health.
    Command {
        /// Program and arguments; not run through a shell.
        argv: Vec<String>,
        /// Working directory; the caller's when `None`.
        cwd: Option<PathBuf>,
        /// Variables added to the inherited environment.
        env: BTreeMap<String, String>,
        /// Where the command's stdout and stderr go.
        log: Option<PathBuf>,
        /// `None`: the target's port accepting connections.
        health: Option<Health>,
        health_timeout: Duration,
        /// Wait between SIGTERM and the next step when stopping the old tree.
        grace: Duration,
    },
}

/// How a restarted command proves it is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// An `http://` URL answering 2xx.
    Http(String),
    /// An address accepting TCP connections.
    Tcp(SocketAddr),
}

/// The circuit breaker of automatic restarts: at most `max` per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoRestart {
    /// The severity that triggers a restart (warning or critical).
    pub on: Severity,
    /// Most restarts per period; then the breaker trips.
    pub max: u32,
    /// The period.
    pub per: Duration,
}

/// `[orphans]`.
#[derive(Debug, Clone, Default)]
pub struct OrphansConfig {
    /// Regexes on the command line: reparented processes matching one are orphans.
    pub patterns: Vec<Regex>,
    /// Reap orphan trees idle (CPU not advancing) longer than this; off when `None`.
    pub idle_reap_after: Option<Duration>,
    /// Rules on [`Metric::OrphanCount`] and [`Metric::OrphanRss`].
    pub rules: Vec<RuleSpec>,
}

/// `[notify]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotifyConfig {
    /// Whether to show desktop notifications (default true).
    pub enabled: bool,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MetricsConfig {
    /// Off when `None`; a non-loopback address only when written explicitly.
    pub listen: Option<SocketAddr>,
}

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

    /// Whether the metric counts descriptors (so a percentage of the limit means
    /// something).
    pub const fn counts_descriptors(&self) -> bool {
        matches!(self, Metric::Fds | Metric::Kind(_) | Metric::Class(_) | Metric::Path(_))
    }

    /// Reads a threshold written for this metric; the error says what was expected.
    fn parse_threshold(&self, value: &DeValue<'_>) -> Result<Threshold, String> {
        let found = describe(value);
        match self {
            Metric::Fds | Metric::Kind(_) | Metric::Class(_) | Metric::Path(_) => {
                let expected = "expected a descriptor count like 500 or a percentage of the FD limit like \"80%\"";
                match value {
                    DeValue::String(s) if s.trim_end().ends_with('%') => {
                        parse_percent(s).map(Threshold::Percent).ok_or_else(|| {
                            format!("expected a percentage of the FD limit between 0 and 100 like \"80%\", found {found}")
                        })
                    }
                    _ => positive_number(value).map(Threshold::Count).ok_or_else(|| format!("{expected}, found {found}")),
                }
            }
            Metric::OrphanCount => positive_number(value)
                .map(Threshold::Count)
                .ok_or_else(|| format!("expected a number of orphan trees like 5, found {found}")),
            Metric::Rss | Metric::OrphanRss => match value {
                DeValue::String(s) if s.contains('%') => Err(format!(
                    "a percentage means nothing for rss: expected a size like \"2GiB\" or \"500MB\", found {found}"
                )),
                DeValue::String(s) => parse_bytes(s)
                    .map(Threshold::Bytes)
                    .ok_or_else(|| format!("expected a size like \"2GiB\" or \"500MB\", or a byte count, found {found}")),
                _ => integer(value)
                    .filter(|n| *n > 0)
                    .and_then(|n| u64::try_from(n).ok())
                    .map(Threshold::Bytes)
                    .ok_or_else(|| format!("expected a size like \"2GiB\" or \"500MB\", or a byte count, found {found}")),
            },
            Metric::Slope => {
                let number = match value {
                    DeValue::String(s) => s
                        .trim()
                        .strip_suffix("/h")
                        .and_then(|n| n.trim().parse::<f64>().ok())
                        .filter(|n| n.is_finite() && *n > 0.0),
                    _ => positive_number(value),
                };
                number
                    .map(Threshold::PerHour)
                    .ok_or_else(|| format!("expected descriptors per hour like 50 or \"50/h\", found {found}"))
            }
            Metric::Eta => match value {
                DeValue::String(s) => parse_duration(s)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .map(Threshold::Duration)
                    .ok_or_else(|| format!("expected a duration like \"6h\" or \"30m\", found {found}")),
                _ => Err(format!("expected a duration like \"6h\" or \"30m\", found {found}")),
            },
            Metric::Down => match value {
                DeValue::Boolean(b) => Ok(Threshold::Flag(*b)),
                _ => Err(format!("expected true or false, found {found}")),
            },
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
    fn comparable(&self) -> Option<(u8, f64)> {
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
            Threshold::Bytes(b) => f.write_str(&crate::rules::human_bytes(*b)),
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

impl Default for Defaults {
    fn default() -> Self {
        Self {
            interval: DEFAULT_INTERVAL,
            window: DEFAULT_WINDOW,
            fd_limit: None,
            rules: builtin_rules(),
        }
    }
}

impl Default for Config {
    /// No targets: the engine watches the user's top FD holders and their orphans.
    fn default() -> Self {
        Self {
            source: None,
            protect: Vec::new(),
            allow_other_users: false,
            defaults: Defaults::default(),
            watch: Vec::new(),
            orphans: OrphansConfig::default(),
            notify: NotifyConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

/// A configuration that could not be loaded: where, which key, and what was
/// expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line; 0 when the file could not be read at all.
    pub line: usize,
    /// The key path, like `watch[0].rules.kqueue.warn`; empty when unknown.
    pub key: String,
    /// What was wrong and what was expected.
    pub message: String,
}

impl ConfigError {
    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// 1-based line; 0 when the file could not be read at all.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The key path, like `watch[0].interval`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// What was wrong and what was expected.
    pub fn message(&self) -> &str {
        &self.message
    }

    fn render(&self) -> String {
        let mut out = display_path(&self.path);
        if self.line > 0 {
            out.push_str(&format!(":{}", self.line));
        }
        out.push_str(": ");
        if !self.key.is_empty() {
            out.push_str(&self.key);
            out.push_str(": ");
        }
        out.push_str(&self.message);
        out
    }
}

const EXAMPLE_TEXT: &str = r##"# Leakwatch configuration.
#
# Durations are written like "2s", "30m" or "1h 30m". Descriptor thresholds are
# counts like 500 or percentages of the process's FD limit like "80%". Sizes are
# like "500MB" or "2GiB" (KB, MB, GB are powers of 1000; K, M, G and KiB, MiB, GiB
# of 1024). Every key is optional unless it says otherwise.
#
# Lines starting with a bare "#" (no space after it) are options left off: remove
# the "#" to turn one on. As written, this file watches no server of its own:
# leakwatch then watches your top descriptor holders and their orphans.

# Regexes on a process's name or argv[0]: such processes are never signalled.
protect = ["^sshd$", "^launchd$"]
# Root only: whether leakwatch may act on other users' processes.
allow_other_users = false

[defaults]
interval = "2s"          # how often each target is polled
window = "30m"           # how much history the leak slope and ETA are fitted over
#fd_limit = 256          # the FD limit to assume where the OS cannot tell (macOS)

# Rules every target gets unless it sets a rule for the same metric. These three
# are built in; set a metric to false (eta = false) to turn an inherited rule off.
[defaults.rules]
fds = { warn = "80%", critical = "95%" }   # all descriptors, as a share of the FD limit
eta = { warn = "6h", critical = "1h" }     # fires when the limit is projected sooner than this
down = { critical = true }                 # a configured target's process cannot be found

# One [[watch]] table per server to watch.
#[[watch]]
#name = "copilot"        # required and unique: the name shown everywhere
# Exactly one selector says how to find the process:
#port = 4321             # the process listening on this TCP port (follows launchers that double-fork)
# pidfile = "~/.local/state/app.pid"     # the pid written in this file
# launchd = "com.example.app"            # a launchd job label
# systemd = "app.service"                # a systemd --user unit
# process = "^node$"                     # a regex on the process name
# argv = "copilot --headless"            # a regex on the whole command line
# Overrides of [defaults]:
#interval = "5s"
#window = "1h"
#fd_limit = 10240

# Rules for this target; they win over [defaults.rules] for the same metric.
# A metric is one of: fds (all descriptors); a kind (kqueue, epoll, eventfd,
# timerfd, signalfd, inotify, fsevents, pidfd, unix, tcp, udp, socket, file, dir,
# device, shm, sem, pipe, other); a class (event_loops, sockets, files, pipes);
# "path:<glob>" (descriptors on matching paths); rss; slope (descriptors per hour);
# eta; down. A rule has warn and/or critical, and optionally:
#   clear     where a raised rule clears (default: 90% of its lowest threshold;
#             for eta, 1.5 times its longest)
#   samples   consecutive samples beyond a threshold before it fires or clears (2)
#   cooldown  least time between reminders while it stays raised ("30m")
#[watch.rules]
#kqueue = { warn = 500, critical = "50%", clear = 400, samples = 3, cooldown = "30m" }
#"path:*state.db*" = { warn = 40 }      # descriptors on matching paths: leaked SQLite connections
#sockets = { warn = 300 }
#rss = { warn = "2GiB", critical = "8GiB" }
#slope = { warn = 50 }                  # growing by 50 descriptors an hour
#down = { critical = true }

# How to restart it: one of launchd = "label", systemd = "unit", or a command.
#[watch.restart]
#command = ["python3", "server.py"]
#cwd = "/srv/app"
#env = { PORT = "8787" }
#log = "/tmp/app.log"     # the command's stdout and stderr
#health = "http://127.0.0.1:8787/health"   # or "tcp:127.0.0.1:8787"; default: the target's port accepting connections
#health_timeout = "30s"   # how long the new process gets to become healthy
#grace = "3s"             # between SIGTERM and the next step when stopping the old tree

# Restart automatically, at most max times per period; then stop and say so.
#[watch.auto_restart]
#on = "critical"          # or "warning"
#max = 3
#per = "1h"

# A second target: found by its command line, restarted by launchd.
#[[watch]]
#name = "gateway"
#argv = "hermes.*gateway"
#[watch.restart]
#launchd = "com.example.gateway"

[orphans]
# Regexes on the command line: reparented processes matching one count as orphans.
match = ["uv tool uvx", "npm exec", "npx", "pnpm dlx"]
# Reap orphan trees idle (CPU not advancing) for longer than this. Off unless set.
#idle_reap_after = "6h"

# Rules on orphans: count (orphan trees) and rss (their total resident memory).
#[orphans.rules]
#count = { warn = 5 }
#rss = { warn = "1GiB", critical = "4GiB" }

[notify]
enabled = true           # desktop notifications

# A Prometheus /metrics endpoint. Off unless set; a non-loopback address exposes
# it to the network, so write one only if you mean it.
#[metrics]
#listen = "127.0.0.1:9464"
"##;

// ---------------------------------------------------------------------------------
// Loading and queries
// ---------------------------------------------------------------------------------

impl Config {
    /// A commented example, written by `leakwatch config init`. As written it is
    /// the default configuration plus the seed orphan patterns: every option is
    /// shown, but lines that would act (targets, restarts, reaping, a metrics
    /// port) are commented out with a bare `#`, so that a fresh file never restarts
    /// or kills anything by surprise. Removing the `#` in front of them gives a
    /// valid file too.
    pub const EXAMPLE: &'static str = EXAMPLE_TEXT;

    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        use std::io::Read;
        let error = |message: String| ConfigError {
            path: path.to_path_buf(),
            line: 0,
            key: String::new(),
            message,
        };
        let file = std::fs::File::open(path)
            .map_err(|e| error(format!("cannot read the configuration: {e}")))?;
        // Read one byte past the limit, so a bigger file is told apart unread.
        let mut bytes = Vec::new();
        file.take(MAX_CONFIG_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| error(format!("cannot read the configuration: {e}")))?;
        if bytes.len() > MAX_CONFIG_BYTES {
            return Err(error(too_big()));
        }
        let text = String::from_utf8(bytes)
            .map_err(|e| error(format!("cannot read the configuration: not UTF-8: {e}")))?;
        Self::parse(&text, path)
    }

    /// Loads the file at [`Config::default_path`]: a missing file at the platform
    /// default is the default configuration; a missing file named by
    /// `LEAKWATCH_CONFIG` is an error (someone asked for it).
    pub fn load_default() -> Result<Config, ConfigError> {
        crate::config_source::ConfigSource::resolve(None).load_or_default()
    }

    /// Validates `text`; `path` is named in errors, and relative paths in the file
    /// (pidfile, cwd, log) are taken relative to its directory when it is absolute.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        if text.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError {
                path: path.to_path_buf(),
                line: 0,
                key: String::new(),
                message: too_big(),
            });
        }
        let doc = Doc { text, path };
        let root = DeTable::parse(text).map_err(|e| doc.syntax_error(&e))?;
        let root = Table { path: String::new(), span: 0..0, map: root.get_ref() };
        Parser { doc: &doc }.config(&root)
    }

    /// The config file: `LEAKWATCH_CONFIG` when set, else `config.toml` in the
    /// platform's config directory (`~/.config/leakwatch` on Linux,
    /// `~/Library/Application Support/dev.leakwatch.Leakwatch` on macOS).
    pub fn default_path() -> Option<PathBuf> {
        resolve_dir(std::env::var_os(CONFIG_ENV), |dirs| dirs.config_dir().join("config.toml"))
    }

    /// The platform's config file, whatever `LEAKWATCH_CONFIG` says: the file a
    /// new user has not written yet.
    pub fn platform_path() -> Option<PathBuf> {
        resolve_dir(None, |dirs| dirs.config_dir().join("config.toml"))
    }

    /// The data directory (the store): `LEAKWATCH_DATA_DIR` when set, else the
    /// platform's data directory (`~/.local/share/leakwatch` on Linux,
    /// `~/Library/Application Support/dev.leakwatch.Leakwatch` on macOS).
    pub fn data_dir() -> Option<PathBuf> {
        resolve_dir(std::env::var_os(DATA_DIR_ENV), |dirs| dirs.data_dir().to_path_buf())
    }

    /// The target called `name`.
    pub fn target(&self, name: &str) -> Option<&Target> {
        self.watch.iter().find(|t| t.name == name)
    }

    /// The poll interval in force for `target`.
    pub fn interval(&self, target: &Target) -> Duration {
        target.interval.unwrap_or(self.defaults.interval)
    }

    /// The trend window in force for `target`.
    pub fn window(&self, target: &Target) -> Duration {
        target.window.unwrap_or(self.defaults.window)
    }

    /// The fallback FD limit for `target`, where the OS cannot tell.
    pub fn fd_limit(&self, target: &Target) -> Option<u64> {
        target.fd_limit.or(self.defaults.fd_limit)
    }

    /// The rules in force for `target`: the defaults with the target's merged over
    /// them (the target wins per metric key; `key = false` removes one), in key
    /// order.
    pub fn effective_rules(&self, target: &Target) -> Vec<RuleSpec> {
        let mut merged = self.defaults.rules.clone();
        for (key, spec) in &target.rules {
            merged.insert(key.clone(), spec.clone());
        }
        merged.into_values().flatten().collect()
    }

    /// The rules for processes watched without configuration (the top FD
    /// holders): the defaults less `down`, since such a process going away is
    /// not an outage.
    pub fn auto_rules(&self) -> Vec<RuleSpec> {
        self.defaults
            .rules
            .values()
            .flatten()
            .filter(|spec| spec.metric != Metric::Down)
            .cloned()
            .collect()
    }

    /// Whether a process with this name and argv\[0\] is on the `protect` list
    /// (argv\[0\] is tried whole and by its last path component).
    pub fn is_protected(&self, name: &str, argv0: Option<&str>) -> bool {
        let base = argv0.map(|a| a.rsplit('/').next().unwrap_or(a));
        self.protect.iter().any(|re| {
            re.is_match(name)
                || argv0.is_some_and(|a| re.is_match(a))
                || base.is_some_and(|b| re.is_match(b))
        })
    }
}

fn resolve_dir(
    env: Option<OsString>,
    from_project: impl FnOnce(&directories::ProjectDirs) -> PathBuf,
) -> Option<PathBuf> {
    if let Some(value) = env.filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(value));
    }
    directories::ProjectDirs::from("dev", "leakwatch", "Leakwatch").map(|dirs| from_project(&dirs))
}

fn home_dir() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|b| b.home_dir().to_path_buf())
}

/// `path` with the home directory shown as `~`, as people write it.
fn display_path(path: &Path) -> String {
    if let Some(home) = home_dir().filter(|h| h.as_os_str().len() > 1)
        && let Ok(rest) = path.strip_prefix(&home)
    {
        return Path::new("~").join(rest).display().to_string();
    }
    path.display().to_string()
}

// ---------------------------------------------------------------------------------
// The validating walk over the spanned document
// ---------------------------------------------------------------------------------

/// The text being parsed and the file to name in errors.
struct Doc<'t> {
    text: &'t str,
    path: &'t Path,
}

impl Doc<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end].iter().filter(|b| **b == b'\n').count() + 1
    }

    fn error(&self, span: &Range<usize>, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: self.path.to_path_buf(),
            line: self.line_of(span.start),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    /// A TOML syntax error: toml knows the position but not the key, so the key
    /// is read back from the text (the table header above and the key on the line).
    fn syntax_error(&self, error: &toml::de::Error) -> ConfigError {
        let offset = error.span().map_or(0, |s| s.start);
        let line = self.line_of(offset);
        ConfigError {
            path: self.path.to_path_buf(),
            line,
            key: key_at_line(self.text, line),
            message: format!("invalid TOML: {}", error.message()),
        }
    }

    /// Relative paths in the file are relative to the file's directory.
    fn resolve_path(&self, raw: &str) -> PathBuf {
        let expanded = match raw.strip_prefix('~') {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => match home_dir() {
                Some(home) => home.join(rest.trim_start_matches('/')),
                None => PathBuf::from(raw),
            },
            _ => PathBuf::from(raw),
        };
        match self.path.parent() {
            Some(dir) if expanded.is_relative() && dir.is_absolute() => dir.join(expanded),
            _ => expanded,
        }
    }
}

/// The key path of a line, best effort, for syntax errors: `[header]` or
/// `[[header]]` (with its index) above it, plus `key =` on the line itself.
fn key_at_line(text: &str, line: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let current = lines.get(line.saturating_sub(1)).map_or("", |l| l.trim());
    let header_of = |l: &str| -> Option<(String, bool)> {
        let l = l.trim();
        if let Some(inner) = l.strip_prefix("[[") {
            let name = inner.split("]]").next()?.trim();
            return Some((name.to_owned(), true));
        }
        let inner = l.strip_prefix('[')?;
        Some((inner.split(']').next()?.trim().to_owned(), false))
    };
    // The header this line belongs to, and which element of an array of tables.
    let mut header: Option<(String, bool)> = None;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for l in lines.iter().take(line.saturating_sub(1)) {
        if let Some((name, array)) = header_of(l) {
            if array {
                *counts.entry(name.clone()).or_insert(0) += 1;
            }
            header = Some((name, array));
        }
    }
    let mut path = String::new();
    if let Some((name, _)) = &header {
        // `[watch.rules]` after the second `[[watch]]` is `watch[1].rules`.
        let mut parts = Vec::new();
        let mut prefix = String::new();
        for part in name.split('.') {
            if !prefix.is_empty() {
                prefix.push('.');
            }
            prefix.push_str(part.trim());
            match counts.get(&prefix) {
                Some(n) => parts.push(format!("{}[{}]", part.trim(), n.saturating_sub(1))),
                None => parts.push(part.trim().to_owned()),
            }
        }
        path = parts.join(".");
    }
    if header_of(current).is_none()
        && let Some((key, _)) = current.split_once('=')
    {
        let key = key.trim();
        if !key.is_empty() && !key.starts_with('#') {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key);
        }
    } else if let Some((name, _)) = header_of(current) {
        return name;
    }
    path
}

/// A key path extended by one key, quoting keys that are not bare.
fn join_key(parent: &str, key: &str) -> String {
    let bare =
        !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare { key.to_owned() } else { format!("{key:?}") };
    if parent.is_empty() { key } else { format!("{parent}.{key}") }
}

/// A table of the document, with its key path and header span.
struct Table<'a, 'i> {
    path: String,
    span: Range<usize>,
    map: &'a DeTable<'i>,
}

/// A value of the document, with its key path and the spans of key and value.
struct Item<'a, 'i> {
    path: String,
    name: &'a str,
    key_span: Range<usize>,
    value: &'a Spanned<DeValue<'i>>,
}

impl<'a, 'i> Table<'a, 'i> {
    /// Entries in file order (the map itself is sorted by key).
    fn entries(&self) -> Vec<Item<'a, 'i>> {
        let mut items: Vec<Item<'a, 'i>> = self
            .map
            .iter()
            .map(|(k, v)| Item {
                path: join_key(&self.path, k.get_ref()),
                name: k.get_ref().as_ref(),
                key_span: k.span(),
                value: v,
            })
            .collect();
        items.sort_by_key(|item| item.key_span.start);
        items
    }

    fn get(&self, name: &str) -> Option<Item<'a, 'i>> {
        self.map.iter().find(|(k, _)| k.get_ref().as_ref() == name).map(|(k, v)| Item {
            path: join_key(&self.path, name),
            name: k.get_ref().as_ref(),
            key_span: k.span(),
            value: v,
        })
    }

    /// Rejects keys not in `allowed`, naming the first in the file.
    fn check_keys(&self, doc: &Doc<'_>, allowed: &[&str]) -> Result<(), ConfigError> {
        for item in self.entries() {
            if !allowed.contains(&item.name) {
                let mut message = String::from("unknown key");
                if let Some(close) = did_you_mean(item.name, allowed.iter().copied()) {
                    message.push_str(&format!(" (did you mean \"{close}\"?)"));
                }
                message.push_str(&format!("; expected one of: {}", allowed.join(", ")));
                return Err(doc.error(&item.key_span, &item.path, message));
            }
        }
        Ok(())
    }
}

impl<'a, 'i> Item<'a, 'i> {
    fn value(&self) -> &'a DeValue<'i> {
        self.value.get_ref()
    }

    fn span(&self) -> Range<usize> {
        self.value.span()
    }

    fn error(&self, doc: &Doc<'_>, message: impl Into<String>) -> ConfigError {
        doc.error(&self.span(), &self.path, message)
    }

    fn key_error(&self, doc: &Doc<'_>, message: impl Into<String>) -> ConfigError {
        doc.error(&self.key_span, &self.path, message)
    }

    fn expected(&self, doc: &Doc<'_>, what: &str) -> ConfigError {
        self.error(doc, format!("expected {what}, found {}", describe(self.value())))
    }

    fn table(&self, doc: &Doc<'_>) -> Result<Table<'a, 'i>, ConfigError> {
        match self.value() {
            DeValue::Table(map) => Ok(Table { path: self.path.clone(), span: self.span(), map }),
            _ => Err(self.expected(doc, "a table")),
        }
    }

    fn string(&self, doc: &Doc<'_>, what: &str) -> Result<&'a str, ConfigError> {
        match self.value() {
            DeValue::String(s) => Ok(s.as_ref()),
            _ => Err(self.expected(doc, what)),
        }
    }

    fn non_empty_string(&self, doc: &Doc<'_>, what: &str) -> Result<&'a str, ConfigError> {
        match self.string(doc, what)? {
            s if s.trim().is_empty() => Err(self.expected(doc, what)),
            s => Ok(s),
        }
    }

    fn bool(&self, doc: &Doc<'_>) -> Result<bool, ConfigError> {
        self.value().as_bool().ok_or_else(|| self.expected(doc, "true or false"))
    }

    fn duration(&self, doc: &Doc<'_>) -> Result<Duration, ConfigError> {
        let what = "a duration like \"2s\" or \"1h\"";
        let text = self.string(doc, what)?;
        match parse_duration(text) {
            Ok(d) => Ok(d),
            Err(_) if humantime::parse_duration(text.trim()).is_ok() => {
                Err(self.error(doc, "expected a duration of at most 365 days"))
            }
            Err(_) => Err(self.expected(doc, what)),
        }
    }

    fn positive_duration(&self, doc: &Doc<'_>) -> Result<Duration, ConfigError> {
        let d = self.duration(doc)?;
        if d.is_zero() {
            return Err(
                self.error(doc, "expected a duration longer than zero, like \"2s\" or \"1h\"")
            );
        }
        Ok(d)
    }

    fn integer_in(
        &self,
        doc: &Doc<'_>,
        min: i128,
        max: i128,
        what: &str,
    ) -> Result<i128, ConfigError> {
        integer(self.value())
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| self.expected(doc, what))
    }

    fn regex(&self, doc: &Doc<'_>, what: &str) -> Result<Regex, ConfigError> {
        let text = self.string(doc, what)?;
        compile_regex(text).map_err(|e| self.error(doc, e))
    }

    fn regex_list(&self, doc: &Doc<'_>, what: &str) -> Result<Vec<Regex>, ConfigError> {
        let DeValue::Array(items) = self.value() else {
            return Err(self.expected(doc, what));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, value)| {
                let item = Item {
                    path: format!("{}[{i}]", self.path),
                    name: self.name,
                    key_span: value.span(),
                    value,
                };
                item.regex(doc, "a regex string")
            })
            .collect()
    }
}

fn too_big() -> String {
    format!(
        "the configuration is larger than {} KiB, the most Leakwatch reads",
        MAX_CONFIG_BYTES / 1024
    )
}

fn compile_regex(text: &str) -> Result<Regex, String> {
    let mut builder = regex::RegexBuilder::new(text);
    builder.size_limit(MAX_REGEX_BYTES).dfa_size_limit(MAX_REGEX_BYTES);
    builder.build().map_err(|e| {
        if matches!(e, regex::Error::CompiledTooBig(_)) {
            let quoted: String = text.chars().take(60).collect();
            return format!(
                "regex {quoted:?}{} is too big: compiled, a regex may take at most {} KiB",
                if text.chars().count() > 60 { "..." } else { "" },
                MAX_REGEX_BYTES / 1024
            );
        }
        // The regex crate's message spans several lines with a caret diagram; the
        // line starting with "error:" is the part that reads well after a key.
        let full = e.to_string();
        let reason = full.lines().find_map(|l| l.trim().strip_prefix("error:")).map_or_else(
            || full.lines().last().unwrap_or("").trim().to_owned(),
            |r| r.trim().to_owned(),
        );
        format!("invalid regex {text:?}: {reason}")
    })
}

fn glob_error(error: &globset::Error) -> String {
    error.kind().to_string()
}

/// How a value reads in "found ..." messages.
fn describe(value: &DeValue<'_>) -> String {
    match value {
        DeValue::String(s) => format!("{:?}", s.as_ref()),
        DeValue::Integer(i) => i.to_string(),
        DeValue::Float(f) => f.to_string(),
        DeValue::Boolean(b) => b.to_string(),
        DeValue::Datetime(d) => format!("the date {d}"),
        DeValue::Array(_) => "an array".into(),
        DeValue::Table(_) => "a table".into(),
    }
}

fn integer(value: &DeValue<'_>) -> Option<i128> {
    let i = value.as_integer()?;
    let digits = i.as_str().replace('_', "");
    i128::from_str_radix(&digits, i.radix()).ok()
}

fn float(value: &DeValue<'_>) -> Option<f64> {
    match value {
        DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
        _ => integer(value).map(|i| i as f64),
    }
}

fn positive_number(value: &DeValue<'_>) -> Option<f64> {
    float(value).filter(|n| n.is_finite() && *n > 0.0)
}

fn parse_percent(text: &str) -> Option<f64> {
    let number = text.trim().strip_suffix('%')?.trim().parse::<f64>().ok()?;
    (number.is_finite() && number > 0.0 && number <= 100.0).then_some(number)
}

/// `"500MB"`, `"2GiB"`, `"1.5 GB"`, `"2G"` or `"1048576"`: KB, MB, GB and TB are
/// powers of 1000; K, M, G, T and KiB, MiB, GiB, TiB of 1024, as `ulimit` and `top`
/// read them.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split =
        text.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.replace('_', "").parse().ok()?;
    let multiplier: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = (number * multiplier).round();
    (bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

fn trim_float(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 { format!("{}", n as i64) } else { format!("{n}") }
}

/// The closest of `candidates` to a misspelt `word`, if one is close.
fn did_you_mean<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    let candidates: Vec<&str> = candidates.into_iter().collect();
    // An abbreviation ("crit") is as telling as a typo.
    if word.len() >= 3
        && let Some(full) = candidates.iter().find(|c| c.len() > word.len() && c.starts_with(word))
    {
        return Some(full);
    }
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d > 0 && *d <= 2.max(c.len() / 4) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

fn target_metric_names() -> impl Iterator<Item = &'static str> {
    ["fds", "rss", "slope", "eta", "down"]
        .into_iter()
        .chain(FdKind::ALL.into_iter().map(FdKind::name))
        .chain(FdClass::ALL.into_iter().map(FdClass::name))
}

const ROOT_KEYS: &[&str] =
    &["protect", "allow_other_users", "defaults", "watch", "orphans", "notify", "metrics"];
const DEFAULTS_KEYS: &[&str] = &["interval", "window", "fd_limit", "rules"];
const SELECTOR_KEYS: &[&str] = &["pidfile", "port", "launchd", "systemd", "process", "argv"];
const TARGET_KEYS: &[&str] = &[
    "name",
    "pidfile",
    "port",
    "launchd",
    "systemd",
    "process",
    "argv",
    "interval",
    "window",
    "fd_limit",
    "rules",
    "restart",
    "auto_restart",
];
const RULE_KEYS: &[&str] = &["warn", "critical", "clear", "samples", "cooldown"];
const RESTART_KEYS: &[&str] =
    &["launchd", "systemd", "command", "cwd", "env", "log", "health", "health_timeout", "grace"];
const COMMAND_ONLY_KEYS: &[&str] = &["cwd", "env", "log", "health", "health_timeout", "grace"];
const AUTO_RESTART_KEYS: &[&str] = &["on", "max", "per"];
const ORPHANS_KEYS: &[&str] = &["match", "idle_reap_after", "rules"];

/// Which `rules` table is being read.
#[derive(Clone, Copy)]
enum RuleScope {
    Target,
    Orphans,
}

struct Parser<'d, 't> {
    doc: &'d Doc<'t>,
}

impl Parser<'_, '_> {
    fn config(&self, root: &Table<'_, '_>) -> Result<Config, ConfigError> {
        let doc = self.doc;
        root.check_keys(doc, ROOT_KEYS)?;
        let mut config = Config { source: Some(doc.path.to_path_buf()), ..Config::default() };
        if let Some(item) = root.get("protect") {
            config.protect = item.regex_list(doc, "an array of regexes like [\"^sshd$\"]")?;
        }
        if let Some(item) = root.get("allow_other_users") {
            config.allow_other_users = item.bool(doc)?;
        }
        if let Some(item) = root.get("defaults") {
            self.defaults(&item.table(doc)?, &mut config.defaults)?;
        }
        if let Some(item) = root.get("watch") {
            config.watch = self.targets(&item, &config.defaults)?;
        }
        if let Some(item) = root.get("orphans") {
            config.orphans = self.orphans(&item.table(doc)?)?;
        }
        if let Some(item) = root.get("notify") {
            let table = item.table(doc)?;
            table.check_keys(doc, &["enabled"])?;
            if let Some(enabled) = table.get("enabled") {
                config.notify.enabled = enabled.bool(doc)?;
            }
        }
        if let Some(item) = root.get("metrics") {
            let table = item.table(doc)?;
            table.check_keys(doc, &["listen"])?;
            if let Some(listen) = table.get("listen") {
                let what = "an address like \"127.0.0.1:9464\"";
                let text = listen.string(doc, what)?;
                config.metrics.listen =
                    Some(parse_socket_addr(text).ok_or_else(|| listen.expected(doc, what))?);
            }
        }
        Ok(config)
    }

    fn defaults(&self, table: &Table<'_, '_>, defaults: &mut Defaults) -> Result<(), ConfigError> {
        let doc = self.doc;
        table.check_keys(doc, DEFAULTS_KEYS)?;
        if let Some(item) = table.get("interval") {
            defaults.interval = self.interval(&item)?;
        }
        if let Some(item) = table.get("window") {
            defaults.window = self.window(&item, defaults.interval)?;
        }
        if let Some(item) = table.get("fd_limit") {
            defaults.fd_limit = Some(self.fd_limit(&item)?);
        }
        if let Some(item) = table.get("rules") {
            for (key, spec) in self.rules(&item.table(doc)?, RuleScope::Target)? {
                defaults.rules.insert(key, spec);
            }
        }
        Ok(())
    }

    fn interval(&self, item: &Item<'_, '_>) -> Result<Duration, ConfigError> {
        let interval = item.positive_duration(self.doc)?;
        if interval < MIN_INTERVAL {
            return Err(item.error(self.doc, "the interval must be at least 100ms: polling faster costs more than a watchdog may"));
        }
        Ok(interval)
    }

    fn window(&self, item: &Item<'_, '_>, interval: Duration) -> Result<Duration, ConfigError> {
        let window = item.positive_duration(self.doc)?;
        if window < interval.saturating_mul(2) {
            return Err(item.error(
                self.doc,
                format!(
                    "the window must hold at least two samples: longer than twice the interval ({})",
                    humantime::format_duration(interval)
                ),
            ));
        }
        Ok(window)
    }

    fn fd_limit(&self, item: &Item<'_, '_>) -> Result<u64, ConfigError> {
        item.integer_in(self.doc, 1, i128::from(u64::MAX), "a descriptor limit like 256")
            .map(|n| u64::try_from(n).unwrap_or(u64::MAX))
    }

    fn targets(
        &self,
        item: &Item<'_, '_>,
        defaults: &Defaults,
    ) -> Result<Vec<Target>, ConfigError> {
        let doc = self.doc;
        let DeValue::Array(entries) = item.value() else {
            return Err(item.expected(doc, "[[watch]] tables"));
        };
        if entries.len() > MAX_TARGETS {
            return Err(item.error(
                doc,
                format!("{} targets: a config may watch at most {MAX_TARGETS}", entries.len()),
            ));
        }
        let mut targets: Vec<Target> = Vec::new();
        let mut names: HashMap<String, usize> = HashMap::with_capacity(entries.len());
        for (index, value) in entries.iter().enumerate() {
            let entry = Item {
                path: format!("watch[{index}]"),
                name: item.name,
                key_span: value.span(),
                value,
            };
            let table = entry.table(doc)?;
            let target = self.target(&table, defaults)?;
            if let Some(&first) = names.get(&target.name) {
                let name = table.get("name");
                let (span, key) =
                    name.as_ref().map_or((table.span.clone(), table.path.clone()), |n| {
                        (n.span(), n.path.clone())
                    });
                return Err(doc.error(
                    &span,
                    &key,
                    format!(
                        "duplicate target name {:?}: watch[{first}] already uses it",
                        target.name
                    ),
                ));
            }
            names.insert(target.name.clone(), index);
            targets.push(target);
        }
        Ok(targets)
    }

    fn target(&self, table: &Table<'_, '_>, defaults: &Defaults) -> Result<Target, ConfigError> {
        let doc = self.doc;
        table.check_keys(doc, TARGET_KEYS)?;
        let name = match table.get("name") {
            Some(item) => {
                item.non_empty_string(doc, "a non-empty name like \"copilot\"")?.trim().to_owned()
            }
            None => {
                return Err(doc.error(
                    &table.span,
                    &table.path,
                    "a target needs a name, like name = \"copilot\"",
                ));
            }
        };
        let selectors: Vec<Item<'_, '_>> =
            table.entries().into_iter().filter(|item| SELECTOR_KEYS.contains(&item.name)).collect();
        let selector = match selectors.as_slice() {
            [] => {
                return Err(doc.error(
                    &table.span,
                    &table.path,
                    "a target needs exactly one selector: pidfile, port, launchd, systemd, process or argv",
                ));
            }
            [one] => self.selector(one)?,
            [first, second, ..] => {
                return Err(second.key_error(
                    doc,
                    format!(
                        "a target takes exactly one selector, but both {} and {} are given",
                        first.name, second.name
                    ),
                ));
            }
        };
        let interval = table.get("interval").map(|i| self.interval(&i)).transpose()?;
        let window = match table.get("window") {
            Some(item) => Some(self.window(&item, interval.unwrap_or(defaults.interval))?),
            None => {
                if let (Some(interval), Some(item)) = (interval, table.get("interval"))
                    && defaults.window < interval.saturating_mul(2)
                {
                    return Err(item.error(
                        doc,
                        format!(
                            "the interval must be under half the window ({}) so the trend has two samples",
                            humantime::format_duration(defaults.window)
                        ),
                    ));
                }
                None
            }
        };
        let fd_limit = table.get("fd_limit").map(|i| self.fd_limit(&i)).transpose()?;
        let rules = match table.get("rules") {
            Some(item) => self.rules(&item.table(doc)?, RuleScope::Target)?.into_iter().collect(),
            None => RuleMap::new(),
        };
        let restart = table.get("restart").map(|i| self.restart(&i)).transpose()?;
        let auto_restart = match table.get("auto_restart") {
            Some(item) => {
                if restart.is_none() {
                    return Err(item.key_error(
                        doc,
                        "auto_restart needs a [watch.restart] table saying how to restart (launchd, systemd or command)",
                    ));
                }
                Some(self.auto_restart(&item.table(doc)?)?)
            }
            None => None,
        };
        Ok(Target { name, selector, interval, window, fd_limit, rules, restart, auto_restart })
    }

    fn selector(&self, item: &Item<'_, '_>) -> Result<Selector, ConfigError> {
        let doc = self.doc;
        Ok(match item.name {
            "pidfile" => Selector::Pidfile(
                doc.resolve_path(item.non_empty_string(doc, "the path of a pid file")?),
            ),
            "port" => Selector::Port(
                u16::try_from(item.integer_in(doc, 1, 65535, "a TCP port between 1 and 65535")?)
                    .unwrap_or(u16::MAX),
            ),
            "launchd" => Selector::Launchd(
                item.non_empty_string(doc, "a launchd label like \"com.example.app\"")?.to_owned(),
            ),
            "systemd" => Selector::Systemd(
                item.non_empty_string(doc, "a systemd unit like \"app.service\"")?.to_owned(),
            ),
            "process" => Selector::Process(item.regex(doc, "a regex on the process name")?),
            _ => Selector::Argv(item.regex(doc, "a regex on the command line")?),
        })
    }

    fn rules(
        &self,
        table: &Table<'_, '_>,
        scope: RuleScope,
    ) -> Result<Vec<(String, Option<RuleSpec>)>, ConfigError> {
        let doc = self.doc;
        let mut rules = Vec::new();
        for item in table.entries() {
            let metric = match scope {
                RuleScope::Target => Metric::from_key(item.name),
                RuleScope::Orphans => Metric::from_orphan_key(item.name),
            }
            .map_err(|message| item.key_error(doc, message))?;
            let key = metric.key();
            let spec = self.rule(&item, metric)?;
            rules.push((key, spec));
        }
        Ok(rules)
    }

    /// One rule; `None` when it is turned off (`key = false`, or a `down` whose
    /// flags are all false).
    fn rule(&self, item: &Item<'_, '_>, metric: Metric) -> Result<Option<RuleSpec>, ConfigError> {
        let doc = self.doc;
        let table = match item.value() {
            DeValue::Boolean(false) => return Ok(None),
            DeValue::Table(_) => item.table(doc)?,
            _ => {
                return Err(item.expected(
                    doc,
                    "a rule like { warn = ..., critical = ... }, or false to turn it off",
                ));
            }
        };
        table.check_keys(doc, RULE_KEYS)?;
        let threshold = |name: &str| -> Result<Option<(Threshold, Item<'_, '_>)>, ConfigError> {
            let Some(item) = table.get(name) else {
                return Ok(None);
            };
            let threshold =
                metric.parse_threshold(item.value()).map_err(|message| item.error(doc, message))?;
            Ok(Some((threshold, item)))
        };
        let warn = threshold("warn")?;
        let critical = threshold("critical")?;
        let clear = threshold("clear")?;
        if warn.is_none() && critical.is_none() {
            return Err(doc.error(&table.span, &table.path, "a rule needs warn, critical or both"));
        }
        if metric == Metric::Down {
            if let Some((_, item)) = &clear {
                return Err(item.key_error(
                    doc,
                    "down clears when the target is found again; it takes no clear",
                ));
            }
            let on = |t: &Option<(Threshold, Item<'_, '_>)>| {
                matches!(t, Some((Threshold::Flag(true), _)))
            };
            if !on(&warn) && !on(&critical) {
                return Ok(None);
            }
        }
        let direction = metric.direction();
        let beyond = |a: f64, b: f64| match direction {
            Direction::Above => a > b,
            Direction::Below => a < b,
        };
        if let (Some((w, _)), Some((c, c_item))) = (&warn, &critical)
            && let (Some((wu, wv)), Some((cu, cv))) = (w.comparable(), c.comparable())
            && wu == cu
            && !beyond(cv, wv)
        {
            let side = match direction {
                Direction::Above => "above",
                Direction::Below => "below",
            };
            return Err(c_item.error(
                doc,
                format!("critical ({c}) must be {side} warn ({w}): it is the worse level"),
            ));
        }
        if let Some((clear_threshold, clear_item)) = &clear
            && let Some((cu, cv)) = clear_threshold.comparable()
        {
            for (t, name) in [(&warn, "warn"), (&critical, "critical")] {
                if let Some((t, _)) = t
                    && let Some((tu, tv)) = t.comparable()
                    && tu == cu
                    && !beyond(tv, cv)
                {
                    let side = match direction {
                        Direction::Above => "below",
                        Direction::Below => "above",
                    };
                    return Err(clear_item.error(
                        doc,
                        format!("clear ({clear_threshold}) must be {side} {name} ({t}), or the rule would flap"),
                    ));
                }
            }
        }
        let samples = match table.get("samples") {
            Some(item) => u32::try_from(item.integer_in(
                doc,
                1,
                10_000,
                "a number of consecutive samples, 1 or more",
            )?)
            .unwrap_or(DEFAULT_SAMPLES),
            None => DEFAULT_SAMPLES,
        };
        let cooldown = match table.get("cooldown") {
            Some(item) => item.duration(doc)?,
            None => DEFAULT_COOLDOWN,
        };
        Ok(Some(RuleSpec {
            metric,
            warn: warn.map(|(t, _)| t),
            critical: critical.map(|(t, _)| t),
            clear: clear.map(|(t, _)| t),
            samples,
            cooldown,
        }))
    }

    fn restart(&self, item: &Item<'_, '_>) -> Result<Restart, ConfigError> {
        let doc = self.doc;
        let table = item.table(doc)?;
        table.check_keys(doc, RESTART_KEYS)?;
        let ways: Vec<Item<'_, '_>> = table
            .entries()
            .into_iter()
            .filter(|i| matches!(i.name, "launchd" | "systemd" | "command"))
            .collect();
        let way = match ways.as_slice() {
            [] => {
                return Err(doc.error(
                    &table.span,
                    &table.path,
                    "a restart needs one of: launchd = \"label\", systemd = \"unit\" or command = [...]",
                ));
            }
            [one] => one,
            [first, second, ..] => {
                return Err(second.key_error(
                    doc,
                    format!(
                        "a restart takes one way, but both {} and {} are given",
                        first.name, second.name
                    ),
                ));
            }
        };
        match way.name {
            "launchd" | "systemd" => {
                if let Some(extra) =
                    table.entries().into_iter().find(|i| COMMAND_ONLY_KEYS.contains(&i.name))
                {
                    return Err(extra.key_error(
                        doc,
                        format!(
                            "{} only goes with command = [...]: {} starts the service itself",
                            extra.name, way.name
                        ),
                    ));
                }
                if way.name == "launchd" {
                    Ok(Restart::Launchd(
                        way.non_empty_string(doc, "a launchd label like \"com.example.app\"")?
                            .to_owned(),
                    ))
                } else {
                    Ok(Restart::Systemd(
                        way.non_empty_string(doc, "a systemd unit like \"app.service\"")?
                            .to_owned(),
                    ))
                }
            }
            _ => self.command(&table, way),
        }
    }

    fn command(&self, table: &Table<'_, '_>, way: &Item<'_, '_>) -> Result<Restart, ConfigError> {
        let doc = self.doc;
        let what = "a command as an array of strings, like [\"python3\", \"server.py\"]";
        let DeValue::Array(parts) = way.value() else {
            return Err(way.expected(doc, what));
        };
        let argv = parts
            .iter()
            .map(|part| match part.get_ref() {
                DeValue::String(s) => Ok(s.to_string()),
                _ => Err(way.expected(doc, what)),
            })
            .collect::<Result<Vec<String>, ConfigError>>()?;
        if argv.first().is_none_or(|program| program.trim().is_empty()) {
            return Err(way.expected(doc, what));
        }
        let cwd = table
            .get("cwd")
            .map(|i| i.non_empty_string(doc, "a directory").map(|s| doc.resolve_path(s)))
            .transpose()?;
        let log = table
            .get("log")
            .map(|i| {
                i.non_empty_string(doc, "a file path for the command's output")
                    .map(|s| doc.resolve_path(s))
            })
            .transpose()?;
        let mut env = BTreeMap::new();
        if let Some(item) = table.get("env") {
            for var in item.table(doc)?.entries() {
                let value = match var.value() {
                    DeValue::String(s) => s.to_string(),
                    // PORT = 8787 is what people write; the environment is text anyway.
                    DeValue::Integer(_) | DeValue::Float(_) | DeValue::Boolean(_) => {
                        describe(var.value())
                    }
                    _ => return Err(var.expected(doc, "a string value")),
                };
                env.insert(var.name.to_owned(), value);
            }
        }
        let health = table
            .get("health")
            .map(|i| {
                let what =
                    "an http:// URL or \"tcp:HOST:PORT\", like \"http://127.0.0.1:8787/health\"";
                parse_health(i.string(doc, what)?).ok_or_else(|| i.expected(doc, what))
            })
            .transpose()?;
        let health_timeout = match table.get("health_timeout") {
            Some(item) => item.positive_duration(doc)?,
            None => DEFAULT_HEALTH_TIMEOUT,
        };
        let grace = match table.get("grace") {
            Some(item) => item.duration(doc)?,
            None => DEFAULT_GRACE,
        };
        Ok(Restart::Command { argv, cwd, env, log, health, health_timeout, grace })
    }

    fn auto_restart(&self, table: &Table<'_, '_>) -> Result<AutoRestart, ConfigError> {
        let doc = self.doc;
        table.check_keys(doc, AUTO_RESTART_KEYS)?;
        let on = match table.get("on") {
            Some(item) => match item.string(doc, "\"warning\" or \"critical\"")? {
                "warning" => Severity::Warning,
                "critical" => Severity::Critical,
                _ => return Err(item.expected(doc, "\"warning\" or \"critical\"")),
            },
            None => Severity::Critical,
        };
        let max = match table.get("max") {
            Some(item) => u32::try_from(item.integer_in(
                doc,
                1,
                i128::from(u32::MAX),
                "a number of restarts, 1 or more",
            )?)
            .unwrap_or(u32::MAX),
            None => 3,
        };
        let per = match table.get("per") {
            Some(item) => item.positive_duration(doc)?,
            None => Duration::from_secs(3600),
        };
        Ok(AutoRestart { on, max, per })
    }

    fn orphans(&self, table: &Table<'_, '_>) -> Result<OrphansConfig, ConfigError> {
        let doc = self.doc;
        table.check_keys(doc, ORPHANS_KEYS)?;
        let mut orphans = OrphansConfig::default();
        if let Some(item) = table.get("match") {
            orphans.patterns = item.regex_list(
                doc,
                "an array of regexes on the command line, like [\"uv tool uvx\"]",
            )?;
        }
        if let Some(item) = table.get("idle_reap_after") {
            orphans.idle_reap_after = Some(item.positive_duration(doc)?);
        }
        if let Some(item) = table.get("rules") {
            orphans.rules = self
                .rules(&item.table(doc)?, RuleScope::Orphans)?
                .into_iter()
                .filter_map(|(_, spec)| spec)
                .collect();
        }
        Ok(orphans)
    }
}

fn parse_socket_addr(text: &str) -> Option<SocketAddr> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return (addr.port() != 0).then_some(addr);
    }
    // "localhost" is the one name resolved here: the rest would need DNS, which a
    // config parser must not wait on.
    let port: u16 = text.strip_prefix("localhost:")?.parse().ok()?;
    (port != 0).then_some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
}

fn parse_health(text: &str) -> Option<Health> {
    let text = text.trim();
    if let Some(addr) = text.strip_prefix("tcp:") {
        return parse_socket_addr(addr).map(Health::Tcp);
    }
    let rest = text.strip_prefix("http://")?;
    let host = rest.split('/').next().unwrap_or("");
    (!host.is_empty()).then(|| Health::Http(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/leakwatch/config.toml"))
    }

    #[track_caller]
    fn parse_err(text: &str) -> ConfigError {
        match parse(text) {
            Ok(_) => panic!("expected an error for:\n{text}"),
            Err(e) => e,
        }
    }

    /// Asserts the error's line, key and a fragment of its message, and that the
    /// rendered text carries all three with the file.
    #[track_caller]
    fn assert_err(text: &str, line: usize, key: &str, fragment: &str) {
        let err = parse_err(text);
        let rendered = err.to_string();
        assert_eq!((err.line, err.key.as_str()), (line, key), "{rendered}");
        assert!(err.message.contains(fragment), "{rendered}");
        assert!(
            rendered.starts_with(&format!("/etc/leakwatch/config.toml:{line}: {key}: ")),
            "{rendered}"
        );
    }

    /// The example with its commented-out option lines (`#key`, `#[table]`) enabled.
    fn example_uncommented() -> String {
        Config::EXAMPLE
            .lines()
            .map(|line| match line.strip_prefix('#') {
                Some(rest)
                    if !rest.is_empty() && !rest.starts_with(' ') && !rest.starts_with('#') =>
                {
                    rest
                }
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn example_parses_as_written_and_does_nothing_by_surprise() {
        let config = parse(Config::EXAMPLE).unwrap();
        assert!(config.watch.is_empty());
        assert!(config.metrics.listen.is_none());
        assert!(config.orphans.idle_reap_after.is_none());
        assert_eq!(config.defaults.interval, DEFAULT_INTERVAL);
        assert_eq!(config.defaults.window, DEFAULT_WINDOW);
        assert_eq!(config.defaults.rules, builtin_rules());
        assert_eq!(config.orphans.patterns.len(), 4);
    }

    #[test]
    fn example_with_every_option_enabled_parses() {
        let text = example_uncommented();
        let config = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(config.protect.len(), 2);
        assert!(!config.allow_other_users);
        assert_eq!(config.defaults.fd_limit, Some(256));
        assert_eq!(config.watch.len(), 2);
        let copilot = &config.watch[0];
        assert_eq!(copilot.name, "copilot");
        assert!(matches!(copilot.selector, Selector::Port(4321)));
        assert_eq!(copilot.interval, Some(Duration::from_secs(5)));
        assert_eq!(config.interval(copilot), Duration::from_secs(5));
        assert_eq!(config.window(copilot), Duration::from_secs(3600));
        assert_eq!(config.fd_limit(copilot), Some(10240));
        let kqueue = copilot.rules["kqueue"].as_ref().unwrap();
        assert_eq!(kqueue.warn, Some(Threshold::Count(500.0)));
        assert_eq!(kqueue.critical, Some(Threshold::Percent(50.0)));
        assert_eq!(kqueue.clear, Some(Threshold::Count(400.0)));
        assert_eq!(kqueue.samples, 3);
        let Some(Some(state_db)) = copilot.rules.get("path:*state.db*") else {
            panic!("no path rule");
        };
        assert!(matches!(&state_db.metric, Metric::Path(g) if g.is_match("/srv/state.db-wal")));
        assert_eq!(
            copilot.rules["rss"].as_ref().unwrap().critical,
            Some(Threshold::Bytes(8 << 30))
        );
        assert_eq!(copilot.rules["slope"].as_ref().unwrap().warn, Some(Threshold::PerHour(50.0)));
        assert_eq!(
            copilot.rules["sockets"].as_ref().unwrap().metric,
            Metric::Class(FdClass::Sockets)
        );
        let Some(Restart::Command { argv, cwd, env, log, health, health_timeout, grace }) =
            &copilot.restart
        else {
            panic!("no command restart");
        };
        assert_eq!(argv, &["python3", "server.py"]);
        assert_eq!(cwd.as_deref(), Some(Path::new("/srv/app")));
        assert_eq!(env["PORT"], "8787");
        assert_eq!(log.as_deref(), Some(Path::new("/tmp/app.log")));
        assert_eq!(health, &Some(Health::Http("http://127.0.0.1:8787/health".into())));
        assert_eq!(*health_timeout, Duration::from_secs(30));
        assert_eq!(*grace, Duration::from_secs(3));
        assert_eq!(
            copilot.auto_restart,
            Some(AutoRestart { on: Severity::Critical, max: 3, per: Duration::from_secs(3600) })
        );
        let gateway = &config.watch[1];
        assert!(
            matches!(&gateway.selector, Selector::Argv(re) if re.is_match("python -m hermes gateway run"))
        );
        assert_eq!(gateway.restart, Some(Restart::Launchd("com.example.gateway".into())));
        assert_eq!(config.orphans.idle_reap_after, Some(Duration::from_secs(6 * 3600)));
        assert_eq!(config.orphans.rules.len(), 2);
        assert_eq!(config.orphans.rules[0].metric, Metric::OrphanCount);
        assert!(config.notify.enabled);
        assert_eq!(config.metrics.listen, Some("127.0.0.1:9464".parse().unwrap()));
    }

    #[test]
    fn empty_file_is_the_default() {
        let config = parse("").unwrap();
        assert!(config.watch.is_empty());
        assert_eq!(config.defaults.rules, builtin_rules());
        let defaults = Config::default();
        assert!(defaults.source.is_none());
        let keys: Vec<String> = defaults.auto_rules().iter().map(|r| r.metric.key()).collect();
        assert_eq!(keys, ["eta", "fds"]);
    }

    #[test]
    fn bad_duration_names_line_and_key() {
        let text = "[defaults]\ninterval = \"2s\"\n\n[[watch]]\nname = \"a\"\nport = 1\n\n[[watch]]\nname = \"b\"\nport = 2\ninterval = \"2x\"\n";
        assert_err(
            text,
            11,
            "watch[1].interval",
            "expected a duration like \"2s\" or \"1h\", found \"2x\"",
        );
        assert_err(
            "[defaults]\nwindow = 30\n",
            2,
            "defaults.window",
            "expected a duration like \"2s\" or \"1h\", found 30",
        );
    }

    #[test]
    fn home_is_shown_as_tilde() {
        let Some(home) = home_dir() else { return };
        let path = home.join(".config/leakwatch/config.toml");
        let err = Config::parse("[defaults]\ninterval = \"2x\"\n", &path).unwrap_err();
        assert_eq!(
            err.to_string(),
            "~/.config/leakwatch/config.toml:2: defaults.interval: expected a duration like \"2s\" or \"1h\", found \"2x\""
        );
    }

    #[test]
    fn syntax_errors_name_line_and_key() {
        assert_err("[defaults]\ninterval = 2s\n", 2, "defaults.interval", "invalid TOML");
        assert_err(
            "[[watch]]\nname = \"a\"\nport = 1\n[[watch]]\nname = \"b\"\n[watch.rules]\nfds = { warn = }\n",
            7,
            "watch[1].rules.fds",
            "invalid TOML",
        );
        let err = parse_err("a = 1\na = 2\n");
        assert_eq!(err.line, 2);
        assert_eq!(err.key, "a");
    }

    #[test]
    fn unknown_keys_are_errors_with_suggestions() {
        assert_err(
            "[defaults]\nintreval = \"2s\"\n",
            2,
            "defaults.intreval",
            "did you mean \"interval\"",
        );
        assert_err("colour = 1\n", 1, "colour", "expected one of: protect");
        assert_err(
            "[[watch]]\nname = \"a\"\nport = 1\n[watch.rules]\nfds = { warn = 10, crit = 20 }\n",
            5,
            "watch[0].rules.fds.crit",
            "did you mean \"critical\"",
        );
        assert_err("[notify]\nenable = true\n", 2, "notify.enable", "did you mean \"enabled\"");
    }

    #[test]
    fn selectors_exactly_one() {
        assert_err(
            "[[watch]]\nname = \"a\"\nport = 80\npidfile = \"/run/a.pid\"\n",
            4,
            "watch[0].pidfile",
            "both port and pidfile",
        );
        assert_err(
            "[[watch]]\nname = \"a\"\ninterval = \"5s\"\n",
            1,
            "watch[0]",
            "exactly one selector",
        );
        assert_err("[[watch]]\nport = 80\n", 1, "watch[0]", "needs a name");
        assert_err(
            "[[watch]]\nname = \"a\"\nport = 70000\n",
            3,
            "watch[0].port",
            "between 1 and 65535",
        );
        assert_err(
            "[[watch]]\nname = \"a\"\nprocess = \"(node\"\n",
            3,
            "watch[0].process",
            "invalid regex",
        );
    }

    #[test]
    fn each_selector_parses() {
        let text = r#"
[[watch]]
name = "pid"
pidfile = "run/app.pid"
[[watch]]
name = "port"
port = 8787
[[watch]]
name = "agent"
launchd = "com.example.agent"
[[watch]]
name = "unit"
systemd = "app.service"
[[watch]]
name = "proc"
process = "^node$"
[[watch]]
name = "cmd"
argv = "copilot --headless"
"#;
        let config = parse(text).unwrap();
        let keys: Vec<&str> = config.watch.iter().map(|t| t.selector.key()).collect();
        assert_eq!(keys, ["pidfile", "port", "launchd", "systemd", "process", "argv"]);
        // Relative to the config file's directory.
        assert!(
            matches!(&config.watch[0].selector, Selector::Pidfile(p) if p == Path::new("/etc/leakwatch/run/app.pid"))
        );
        assert_eq!(config.watch[1].selector.to_string(), "port 8787");
        assert!(
            matches!(&config.watch[4].selector, Selector::Process(re) if re.is_match("node") && !re.is_match("nodejs"))
        );
        assert_eq!(
            config.target("unit").map(|t| t.selector.to_string()),
            Some("systemd app.service".into())
        );
    }

    #[test]
    fn duplicate_names_are_rejected() {
        assert_err(
            "[[watch]]\nname = \"a\"\nport = 1\n\n[[watch]]\nname = \"a\"\nport = 2\n",
            6,
            "watch[1].name",
            "watch[0] already uses it",
        );
    }

    #[test]
    fn rule_errors_name_line_and_key() {
        let head = "[[watch]]\nname = \"a\"\nport = 1\n[watch.rules]\n";
        assert_err(
            &format!("{head}kqueues = {{ warn = 5 }}\n"),
            5,
            "watch[0].rules.kqueues",
            "did you mean \"kqueue\"",
        );
        assert_err(
            &format!("{head}\"path:[x\" = {{ warn = 5 }}\n"),
            5,
            "watch[0].rules.\"path:[x\"",
            "invalid glob",
        );
        assert_err(
            &format!("{head}rss = {{ warn = \"80%\" }}\n"),
            5,
            "watch[0].rules.rss.warn",
            "percentage means nothing for rss",
        );
        assert_err(
            &format!("{head}fds = {{ warn = \"6h\" }}\n"),
            5,
            "watch[0].rules.fds.warn",
            "expected a descriptor count",
        );
        assert_err(
            &format!("{head}eta = {{ warn = 500 }}\n"),
            5,
            "watch[0].rules.eta.warn",
            "expected a duration like \"6h\"",
        );
        assert_err(
            &format!("{head}fds = {{ warn = \"120%\" }}\n"),
            5,
            "watch[0].rules.fds.warn",
            "between 0 and 100",
        );
        assert_err(
            &format!("{head}fds = {{ samples = 3 }}\n"),
            5,
            "watch[0].rules.fds",
            "needs warn, critical or both",
        );
        assert_err(
            &format!("{head}fds = {{ warn = 500,\n  critical = 400 }}\n"),
            6,
            "watch[0].rules.fds.critical",
            "must be above warn",
        );
        assert_err(
            &format!("{head}eta = {{ warn = \"1h\", critical = \"6h\" }}\n"),
            5,
            "watch[0].rules.eta.critical",
            "must be below warn",
        );
        assert_err(
            &format!("{head}fds = {{ warn = 500, clear = 600 }}\n"),
            5,
            "watch[0].rules.fds.clear",
            "must be below warn",
        );
        assert_err(
            &format!("{head}eta = {{ warn = \"6h\", clear = \"2h\" }}\n"),
            5,
            "watch[0].rules.eta.clear",
            "must be above warn",
        );
        assert_err(
            &format!("{head}down = {{ critical = true, clear = false }}\n"),
            5,
            "watch[0].rules.down.clear",
            "takes no clear",
        );
        assert_err(
            &format!("{head}fds = {{ warn = 5, samples = 0 }}\n"),
            5,
            "watch[0].rules.fds.samples",
            "1 or more",
        );
        assert_err(
            &format!("{head}fds = 500\n"),
            5,
            "watch[0].rules.fds",
            "or false to turn it off",
        );
        assert_err(
            &format!("{head}rss = {{ warn = \"2 GiBs\" }}\n"),
            5,
            "watch[0].rules.rss.warn",
            "expected a size like \"2GiB\"",
        );
        assert_err(
            "[orphans.rules]\nfds = { warn = 5 }\n",
            2,
            "orphans.rules.fds",
            "expected count or rss",
        );
    }

    #[test]
    fn restart_errors() {
        let head = "[[watch]]\nname = \"a\"\nport = 1\n";
        assert_err(
            &format!("{head}[watch.restart]\nlaunchd = \"x\"\ncommand = [\"y\"]\n"),
            6,
            "watch[0].restart.command",
            "both launchd and command",
        );
        assert_err(
            &format!("{head}[watch.restart]\ncwd = \"/srv\"\n"),
            4,
            "watch[0].restart",
            "needs one of",
        );
        assert_err(
            &format!("{head}[watch.restart]\nsystemd = \"x\"\ngrace = \"3s\"\n"),
            6,
            "watch[0].restart.grace",
            "only goes with command",
        );
        assert_err(
            &format!("{head}[watch.restart]\ncommand = []\n"),
            5,
            "watch[0].restart.command",
            "array of strings",
        );
        assert_err(
            &format!("{head}[watch.restart]\ncommand = [\"x\"]\nhealth = \"https://x/\"\n"),
            6,
            "watch[0].restart.health",
            "http:// URL",
        );
        assert_err(
            &format!("{head}[watch.auto_restart]\non = \"critical\"\n"),
            4,
            "watch[0].auto_restart",
            "needs a [watch.restart]",
        );
        assert_err(
            &format!(
                "{head}[watch.restart]\ncommand = [\"x\"]\n[watch.auto_restart]\non = \"ok\"\n"
            ),
            7,
            "watch[0].auto_restart.on",
            "\"warning\" or \"critical\"",
        );
    }

    #[test]
    fn other_sections_errors() {
        assert_err("protect = \"sshd\"\n", 1, "protect", "an array of regexes");
        assert_err("protect = [\"ok\", \"(bad\"]\n", 1, "protect[1]", "invalid regex");
        assert_err("[metrics]\nlisten = \"0.0.0.0\"\n", 2, "metrics.listen", "127.0.0.1:9464");
        assert_err(
            "[orphans]\nidle_reap_after = \"0s\"\n",
            2,
            "orphans.idle_reap_after",
            "longer than zero",
        );
        assert_err("[defaults]\ninterval = \"10ms\"\n", 2, "defaults.interval", "at least 100ms");
        assert_err(
            "[defaults]\ninterval = \"10s\"\nwindow = \"15s\"\n",
            3,
            "defaults.window",
            "twice the interval",
        );
        assert_err("[defaults]\nfd_limit = 0\n", 2, "defaults.fd_limit", "a descriptor limit");
        assert_err(
            "allow_other_users = \"yes\"\n",
            1,
            "allow_other_users",
            "expected true or false, found \"yes\"",
        );
        assert_err(
            "[[watch]]\nname = \"a\"\nport = 1\ninterval = \"20m\"\n",
            4,
            "watch[0].interval",
            "under half the window",
        );
    }

    #[test]
    fn read_errors_name_the_file() {
        let err = Config::load(Path::new("/nonexistent/leakwatch.toml")).unwrap_err();
        assert_eq!(err.line, 0);
        assert!(err.to_string().starts_with("/nonexistent/leakwatch.toml: cannot read"), "{err}");
    }

    #[test]
    fn rules_merge_defaults_with_target() {
        let text = r#"
[defaults.rules]
fds = { warn = 900, critical = 1000 }
kqueue = { warn = 500 }
[[watch]]
name = "a"
port = 1
[watch.rules]
kqueue = { warn = 50 }
eta = false
[[watch]]
name = "b"
port = 2
"#;
        let config = parse(text).unwrap();
        let a = config.effective_rules(&config.watch[0]);
        let keys: Vec<String> = a.iter().map(|r| r.metric.key()).collect();
        assert_eq!(keys, ["down", "fds", "kqueue"]);
        assert_eq!(a[1].warn, Some(Threshold::Count(900.0)));
        assert_eq!(a[2].warn, Some(Threshold::Count(50.0)));
        let b = config.effective_rules(&config.watch[1]);
        let keys: Vec<String> = b.iter().map(|r| r.metric.key()).collect();
        assert_eq!(keys, ["down", "eta", "fds", "kqueue"]);
        assert_eq!(b[3].warn, Some(Threshold::Count(500.0)));
        assert_eq!(b[0].critical, Some(Threshold::Flag(true)));
        assert_eq!(b[0].samples, DEFAULT_SAMPLES);
        assert_eq!(b[0].cooldown, DEFAULT_COOLDOWN);
    }

    #[test]
    fn down_false_turns_it_off() {
        let text =
            "[defaults.rules]\ndown = { critical = false }\n[[watch]]\nname = \"a\"\nport = 1\n";
        let config = parse(text).unwrap();
        assert!(config.effective_rules(&config.watch[0]).iter().all(|r| r.metric != Metric::Down));
    }

    #[test]
    fn thresholds_and_sizes() {
        assert_eq!(parse_bytes("500MB"), Some(500_000_000));
        assert_eq!(parse_bytes("2GiB"), Some(2 << 30));
        assert_eq!(parse_bytes("1.5 GB"), Some(1_500_000_000));
        assert_eq!(parse_bytes("2G"), Some(2 << 30));
        assert_eq!(parse_bytes("1024"), Some(1024));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(parse_bytes("0"), None);
        assert_eq!(Threshold::Percent(50.0).resolve(Some(1024)), Some(512.0));
        assert_eq!(Threshold::Percent(50.0).resolve(None), None);
        assert_eq!(Threshold::Flag(false).resolve(None), None);
        assert_eq!(Threshold::Duration(Duration::from_secs(3600)).to_string(), "1h");
        assert_eq!(Threshold::Percent(80.0).to_string(), "80%");
        let text = "[[watch]]\nname = \"a\"\nport = 1\n[watch.rules]\nrss = { warn = 1073741824, critical = \"8 GiB\" }\nslope = { warn = \"50/h\" }\nother = { warn = 3 }\nevent_loops = { warn = 3 }\n";
        let config = parse(text).unwrap();
        let rules = &config.watch[0].rules;
        assert_eq!(rules["rss"].as_ref().unwrap().warn, Some(Threshold::Bytes(1 << 30)));
        assert_eq!(rules["slope"].as_ref().unwrap().warn, Some(Threshold::PerHour(50.0)));
        assert_eq!(rules["other"].as_ref().unwrap().metric, Metric::Kind(FdKind::Other));
        assert_eq!(
            rules["event_loops"].as_ref().unwrap().metric,
            Metric::Class(FdClass::EventLoops)
        );
    }

    #[test]
    fn health_and_addresses() {
        assert_eq!(
            parse_health("tcp:127.0.0.1:8787"),
            Some(Health::Tcp("127.0.0.1:8787".parse().unwrap()))
        );
        assert_eq!(
            parse_health("tcp:localhost:8787"),
            Some(Health::Tcp("127.0.0.1:8787".parse().unwrap()))
        );
        assert_eq!(
            parse_health("http://[::1]:8787/h"),
            Some(Health::Http("http://[::1]:8787/h".into()))
        );
        assert_eq!(parse_health("http://"), None);
        assert_eq!(parse_socket_addr("[::1]:9464"), Some("[::1]:9464".parse().unwrap()));
        assert_eq!(parse_socket_addr("127.0.0.1:0"), None);
    }

    #[test]
    fn protect_matches_name_and_argv0() {
        let config = parse("protect = [\"^sshd$\", \"^launchd$\"]\n").unwrap();
        assert!(config.is_protected("sshd", None));
        assert!(config.is_protected("sshd-session", Some("/usr/sbin/sshd")));
        assert!(!config.is_protected("sshd-session", Some("/usr/sbin/sshd-session")));
    }

    #[test]
    fn default_paths_honour_env() {
        assert_eq!(
            resolve_dir(Some("/x/config.toml".into()), |_| PathBuf::from("/unused")),
            Some(PathBuf::from("/x/config.toml"))
        );
        if let Some(path) = resolve_dir(None, |d| d.config_dir().join("config.toml")) {
            assert!(path.ends_with("config.toml"));
            #[cfg(target_os = "linux")]
            assert!(path.to_string_lossy().contains("leakwatch"), "{}", path.display());
        }
    }

    #[test]
    fn key_paths_quote_non_bare_keys() {
        assert_eq!(join_key("watch[0].rules", "path:*x*"), "watch[0].rules.\"path:*x*\"");
        assert_eq!(join_key("", "fds"), "fds");
        assert_eq!(
            key_at_line("[[watch]]\na=1\n[[watch]]\n[watch.rules]\nfds = x\n", 5),
            "watch[1].rules.fds"
        );
    }

    /// Regression (issue 10, item 17): a 60,000-target config took 27 s and
    /// 928 MB to check. Past the documented limits it is a clear error; at them
    /// it is accepted.
    #[test]
    fn configs_past_the_documented_limits_are_refused_and_at_them_accepted() {
        let targets = |n: usize| {
            (0..n)
                .map(|i| format!("[[watch]]\nname = \"t{i}\"\nprocess = \"^server-{i}$\"\n"))
                .collect::<String>()
        };
        let at_limit = parse(&targets(MAX_TARGETS)).unwrap();
        assert_eq!(at_limit.watch.len(), MAX_TARGETS);
        assert!(at_limit.watch[MAX_TARGETS - 1].selector.to_string().contains("server-999"));

        let error = parse(&targets(MAX_TARGETS + 1)).unwrap_err();
        assert_eq!(error.key, "watch", "{error}");
        assert!(error.message.contains("1001 targets: a config may watch at most 1000"), "{error}");

        // Duplicates are still found, the last against the first.
        let mut text = targets(MAX_TARGETS - 1);
        text.push_str("[[watch]]\nname = \"t0\"\nport = 1\n");
        let error = parse(&text).unwrap_err();
        assert!(error.message.contains("watch[0] already uses it"), "{error}");

        let huge = format!("# {}\n", "x".repeat(MAX_CONFIG_BYTES));
        let error = parse(&huge).unwrap_err();
        assert!(error.message.contains("larger than 1024 KiB"), "{error}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.toml");
        std::fs::write(&path, &huge).unwrap();
        let error = Config::load(&path).unwrap_err();
        assert!(error.to_string().contains("larger than 1024 KiB"), "{error}");

        let error =
            parse("[[watch]]\nname = \"x\"\nprocess = \"\\\\w{1000}{1000}\"\n").unwrap_err();
        assert_eq!(error.key, "watch[0].process", "{error}");
        assert!(error.message.contains("too big"), "{error}");
    }
}
