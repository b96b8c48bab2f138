//! What a configuration is: the loaded, validated model every face reads
//! (targets, selectors, restarts, orphans, notify, metrics), its defaults and
//! limits, and the error that names file, line and key. Kept apart from the
//! parser so the engine and the actions depend on the data, not on TOML.

use super::rule::{RuleMap, RuleSpec, builtin_rules};
use crate::model::Severity;
use regex::Regex;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment variable naming the config file, overriding the platform default.
pub const CONFIG_ENV: &str = "LEAKWATCH_CONFIG";
/// Environment variable naming the data directory (the store), overriding the
/// platform default.
pub const DATA_DIR_ENV: &str = "LEAKWATCH_DATA_DIR";

/// Default poll interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
/// Default trend window.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(30 * 60);
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
    /// The text it was parsed from; `None` for [`Config::default`]. The file may
    /// have changed (or broken) since: this is what the engine runs on, and what
    /// it hands to faces attached to it (`GET /v1/config`), which parse it again
    /// rather than read a file that may no longer say the same.
    pub text: Option<std::sync::Arc<str>>,
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
    /// Rules on [`Metric::OrphanCount`](super::Metric::OrphanCount) and [`Metric::OrphanRss`](super::Metric::OrphanRss).
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
            text: None,
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

pub(super) fn home_dir() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|b| b.home_dir().to_path_buf())
}

/// `path` with the home directory shown as `~`, as people write it.
pub(super) fn display_path(path: &Path) -> String {
    if let Some(home) = home_dir().filter(|h| h.as_os_str().len() > 1)
        && let Ok(rest) = path.strip_prefix(&home)
    {
        return Path::new("~").join(rest).display().to_string();
    }
    path.display().to_string()
}
