//! The watch engine: the one poll loop behind `leakwatch watch`, the daemon and the
//! menubar app. Each tick it locates every target's process, samples its
//! descriptors by kind, fits the leak trend, evaluates the rules, writes history
//! and raises events; the faces only render the [`Status`](crate::status::Status) it publishes.
//!
//! A tick is synchronous work (the probe reads `/proc` or calls libproc) and runs
//! on a blocking thread. The async loop in [`Engine::spawn`] only schedules ticks
//! and handles commands, and it never waits on a tick: when a tick is still
//! running at the next interval, that interval is skipped, so a hung probe can
//! neither block the loop nor pile ticks up behind it.
//!
//! The engine is split by concern: [`runner`] is the async loop that schedules
//! ticks and commands, [`tick`] one poll of every due target, [`instances`] the
//! per-process state (series, windows, limits), [`alerts`] rule evaluation and
//! notification, [`status`] the status the faces render, [`history`] the store
//! writes, [`reload`] the config file's reload, [`marks`] user-marked
//! baselines, [`handle`] the faces' handle, and [`autopilot`] the automatic
//! actions.

mod alerts;
pub mod autopilot;
mod handle;
mod history;
mod instances;
mod marks;
mod reload;
mod runner;
mod status;
mod tick;

pub use crate::command::Command;
pub use handle::EngineHandle;
pub use instances::resolve_limit;
pub use runner::descriptor_exhaustion;

use crate::actions::locate::PortMemo;
use crate::config::source::ConfigSource;
use crate::config::{Config, ConfigError};
use crate::model::{Event, EventKind, Severity, Subject, UnixMillis, unix_millis};
use crate::notifier::Notifier;
use crate::orphans::{IdleTracker, Lineage, OrphanTree};
use crate::owner::{DataDirLock, Face, LockError};
use crate::rules::RuleState;
use crate::status::{Affected, Problem, RuleStatus};
use crate::store::{Store, StoreError};
use crate::throttle::Throttle;
use autopilot::Autopilot;
use instances::Instance;
use leakwatch_probe::{Probe, ProcessId, ProcessInfo};
use reload::file_stamp;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often the whole process table is read. Between full scans the engine only
/// reads the processes it watches: a full scan of a desktop's few hundred
/// processes costs milliseconds, and the engine's budget is 0.1 % of a core.
const FULL_SCAN_EVERY: Duration = Duration::from_secs(10);
/// How long a target's descriptor table read by kind may be reused while its
/// descriptor count stands still. Counting costs one `stat` (Linux 6.2+); reading
/// the kinds costs a `readlink` per descriptor, most of the engine's budget. A
/// count that moves (a leak, a connection) is read by kind at once; one
/// descriptor swapped for another of a different kind shows within this age.
const FD_KINDS_MAX_AGE: Duration = Duration::from_secs(10);
/// How many processes the automatic mode (no config) watches.
const AUTOMATIC_TARGETS: usize = 10;
/// Events kept in the status for the faces.
const RECENT_EVENTS: usize = 50;
/// How often the store is pruned and downsampled.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How often a history write that keeps failing (a full disk) is logged again.
const STORE_WARN_EVERY: Duration = Duration::from_secs(600);
/// How often a tick that keeps failing is logged again.
const TICK_FAILURE_LOG_EVERY: Duration = Duration::from_secs(60);
/// After this many ticks in a row have failed, the engine cannot go on: it stops
/// and [`EngineHandle::failure`] says why, so the process can exit non-zero and
/// its service manager restart it, rather than live on with a dead engine.
pub const GIVE_UP_AFTER_FAILED_TICKS: u32 = 20;

/// What the engine is started with.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Where the config comes from: an absent default file means built-in
    /// defaults (automatic mode); a missing named file is an error.
    pub config: ConfigSource,
    /// The history database; `None` keeps no history (as `watch --no-store`).
    pub store_path: Option<PathBuf>,
    pub notifier: Arc<dyn Notifier>,
    /// Overrides every target's interval (`watch --interval`).
    pub interval: Option<Duration>,
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Probe(#[from] leakwatch_probe::Error),
    /// Another engine owns the data directory (see [`crate::owner`]).
    #[error(transparent)]
    Locked(#[from] LockError),
}

impl EngineError {
    /// What failed, as [`Problem::what`] names it.
    pub fn what(&self) -> Affected {
        match self {
            EngineError::Config(_) => Affected::Config,
            EngineError::Store(_) => Affected::History,
            EngineError::Probe(_) => Affected::Probe,
            EngineError::Locked(_) => Affected::Engine,
        }
    }
}

/// The engine's state between ticks.
#[derive(Debug)]
pub struct Engine {
    options: EngineOptions,
    /// What the engine runs on: the config in force, or the built-in defaults
    /// while it has none (see `config_read`). Shared, so faces can act on the
    /// config in force without reading the file again ([`EngineHandle::config`]).
    config: Arc<Config>,
    /// Whether `config` was actually read: a good file, or automatic mode's
    /// defaults when the platform's default file is absent. An engine started
    /// on a broken file runs on the defaults, but those are no config in
    /// force: their empty `protect` list must never reach an action (issue 13),
    /// so none is published until a reload reads a good file.
    config_read: bool,
    /// The file the config came from and its modification stamp, to notice edits.
    config_file: Option<PathBuf>,
    config_stamp: Option<(SystemTime, u64)>,
    config_error: Option<String>,
    /// What went wrong at start and is still true (no history), for the faces.
    problems: Vec<Problem>,
    probe: Probe,
    store: Option<Store>,
    instances: BTreeMap<String, Instance>,
    rule_states: HashMap<(Subject, String), RuleState>,
    port_memos: HashMap<String, PortMemo>,
    table: Vec<ProcessInfo>,
    /// When the whole table was last read, on the tick's clock.
    table_read_at: Option<UnixMillis>,
    /// See [`FD_KINDS_MAX_AGE`] and [`Engine::reuse_fd_kinds_for`].
    fd_kinds_max_age: Duration,
    automatic_pids: Vec<u32>,
    next_due: HashMap<String, UnixMillis>,
    tick: u64,
    recent_events: VecDeque<Event>,
    paused_until: Option<UnixMillis>,
    notify_failures: u64,
    last_prune: Option<UnixMillis>,
    notes: Vec<String>,
    /// Events raised between ticks (a reload by command), logged with the next.
    pending_events: Vec<Event>,
    /// The last tick's events, until [`Engine::take_events`] takes them.
    raised: Vec<Event>,
    /// Who started whom, recorded on every full scan: the evidence that an
    /// orphan's parent died (DESIGN.md, "Orphans").
    lineage: Lineage,
    /// When each process last used CPU: how long orphan trees have been idle.
    idle: IdleTracker,
    /// The orphan trees of the last full scan.
    orphans: Vec<OrphanTree>,
    /// The state of each `[orphans.rules]` rule after the last full scan.
    orphan_rules: Vec<RuleStatus>,
    /// Automatic restarts and orphan reaping in flight.
    autopilot: Autopilot,
    /// The data directory's lock, held while the engine lives (with a store).
    lock: Option<DataDirLock>,
    /// History writes that fail on every tick (a full disk) are logged through it.
    store_throttle: Throttle,
    /// Why history is not being kept, when it is not (see [`Status::history_error`]).
    history_error: Option<String>,
    /// Whether reloads are parsed by the spawned loop on a blocking thread
    /// rather than in place (see [`reload`]).
    defer_reloads: bool,
    /// A reload the loop has yet to start.
    reload_wanted: bool,
    /// Whether the series left open by a previous run, whose processes died while
    /// no engine watched, have been closed (on the first full scan).
    stale_series_closed: bool,
    /// Makes this many ticks panic: the tests' stand-in for a tick that cannot go on.
    #[cfg(test)]
    fail_ticks: u32,
    /// Holds every mark's descriptor read until a message arrives: the tests'
    /// stand-in for a `/proc` read that hangs.
    #[cfg(test)]
    mark_gate: Option<Arc<std::sync::Mutex<std::sync::mpsc::Receiver<()>>>>,
}

/// How long before `now` `at` was, both on the tick's clock (see
/// [`Engine::tick_at`]); `None` when `at` is later, as after the wall clock was
/// set back, which callers take as long ago rather than waiting for the clock
/// to catch up.
fn age(at: UnixMillis, now: UnixMillis) -> Option<Duration> {
    now.checked_sub(at).map(Duration::from_millis)
}

/// Locks the data directory of an engine that keeps history (its store's
/// folder), so that one engine per user samples and writes it. Another engine
/// holding it is an error ([`EngineError::Locked`]); a directory that cannot be
/// locked at all (read-only, not creatable) is `Some(Err(..))`: the engine then
/// runs without history and says why, as it does when the store cannot open.
fn lock_data_dir(
    options: &EngineOptions,
    face: Face,
) -> Result<Option<Result<DataDirLock, LockError>>, LockError> {
    let Some(dir) = options.store_path.as_deref().and_then(Path::parent) else {
        return Ok(None);
    };
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    match DataDirLock::acquire(dir, face) {
        Ok(lock) => Ok(Some(Ok(lock))),
        Err(held @ LockError::Held { .. }) => Err(held),
        Err(unusable) => Ok(Some(Err(unusable))),
    }
}

impl Engine {
    /// Loads the config, opens the store and the probe. A config error here stops
    /// the start (there is no last good config yet); later ones do not. For a
    /// command a person runs (`watch`, the daemon), where failing loudly is the
    /// clearest answer; the app uses [`Engine::new_lenient_as`]. With a store,
    /// the engine first locks its data directory as [`Face::Other`]: see
    /// [`Engine::new_as`].
    pub fn new(options: EngineOptions) -> Result<Self, EngineError> {
        Self::new_as(options, Face::Other)
    }

    /// [`Engine::new`] for `face`, named in the data directory's lock so that a
    /// second engine started on the same history can say which one runs
    /// ([`EngineError::Locked`]) instead of writing every sample twice.
    pub fn new_as(options: EngineOptions, face: Face) -> Result<Self, EngineError> {
        let lock = lock_data_dir(&options, face)?;
        let config = options.config.load_or_default()?;
        Self::assemble(options, config, None, lock)
    }

    /// Starts whatever the state of the files, for `face` (see
    /// [`Engine::new_as`]): a config that is missing (when named) or broken
    /// leaves the engine watching on the built-in defaults with the error in
    /// the status (file, line, key). Those defaults are not a config in force:
    /// [`Engine::config_in_force`] is `None` (so faces' actions refuse with the
    /// config's error rather than act without the user's `protect` list) until
    /// the usual reload reads a good file. Only a platform with no process
    /// interface stops it, or another engine owning the data directory
    /// ([`EngineError::Locked`]: the caller retries, and so takes over when
    /// that owner goes away).
    pub fn new_lenient_as(options: EngineOptions, face: Face) -> Result<Self, EngineError> {
        let lock = lock_data_dir(&options, face)?;
        let (config, config_error) = match options.config.load_or_default() {
            Ok(config) => (config, None),
            Err(error) => {
                tracing::warn!("running on the built-in defaults: {error}");
                (Config::default(), Some(error.to_string()))
            }
        };
        Self::assemble(options, config, config_error, lock)
    }

    /// Opens the history, if the engine keeps one. A watchdog without history
    /// beats none at all (whichever constructor): a read-only or unwritable data
    /// directory is said, in the notes, [`Status::history_error`] and a
    /// [`Problem`] with its fix, and the engine runs on.
    fn open_history(
        path: Option<&Path>,
        lock: Option<&LockError>,
        notes: &mut Vec<String>,
    ) -> (Option<Store>, Option<String>, Option<Problem>) {
        let Some(path) = path else { return (None, None, None) };
        let opened = match lock {
            Some(error) => Err(error.to_string()),
            None => Store::open(path).map_err(|error| error.to_string()),
        };
        match opened {
            Ok(opened) => {
                notes.extend(opened.permissions_fixed.iter().cloned());
                // Logged by `spawn`, or shown by a face that takes them first.
                notes.extend(opened.message());
                (Some(opened.store), None, None)
            }
            Err(error) => {
                let message = format!("running without history: {error}");
                notes.push(message.clone());
                let problem = Problem {
                    what: Affected::History,
                    message: message.clone(),
                    fix: format!(
                        "make {} writable (or set LEAKWATCH_DATA_DIR), then restart Leakwatch",
                        path.parent().unwrap_or(path).display()
                    ),
                };
                (None, Some(message), Some(problem))
            }
        }
    }

    fn assemble(
        options: EngineOptions,
        config: Config,
        config_error: Option<String>,
        lock: Option<Result<DataDirLock, LockError>>,
    ) -> Result<Self, EngineError> {
        let mut notes = Vec::new();
        let (lock, lock_error) = match lock {
            Some(Ok(lock)) => (Some(lock), None),
            Some(Err(error)) => (None, Some(error)),
            None => (None, None),
        };
        let (store, history_error, problem) =
            Self::open_history(options.store_path.as_deref(), lock_error.as_ref(), &mut notes);
        let problems: Vec<Problem> = problem.into_iter().collect();
        let config_file = options.config.path().map(Path::to_path_buf);
        let config_stamp = config_file.as_deref().and_then(file_stamp);
        let mut pending_events = Vec::new();
        if let Some(message) = &config_error {
            pending_events.push(Event {
                at: unix_millis(SystemTime::now()),
                subject: Subject::Leakwatch,
                pid: None,
                kind: EventKind::ConfigError,
                rule: None,
                severity: Severity::Warning,
                value: None,
                message: format!(
                    "{message} (watching on the built-in defaults; no action runs until the \
                     file is fixed)"
                ),
                notified: false,
            });
        }
        Ok(Self {
            options,
            config: Arc::new(config),
            // Only the lenient start passes an error, and then the defaults.
            config_read: config_error.is_none(),
            config_file,
            config_stamp,
            config_error,
            problems,
            probe: Probe::new()?,
            store,
            instances: BTreeMap::new(),
            rule_states: HashMap::new(),
            port_memos: HashMap::new(),
            table: Vec::new(),
            table_read_at: None,
            fd_kinds_max_age: FD_KINDS_MAX_AGE,
            automatic_pids: Vec::new(),
            next_due: HashMap::new(),
            tick: 0,
            recent_events: VecDeque::new(),
            paused_until: None,
            notify_failures: 0,
            last_prune: None,
            notes,
            pending_events,
            raised: Vec::new(),
            lineage: Lineage::new(),
            idle: IdleTracker::new(),
            orphans: Vec::new(),
            orphan_rules: Vec::new(),
            autopilot: Autopilot::default(),
            lock,
            store_throttle: Throttle::new(STORE_WARN_EVERY),
            history_error,
            defer_reloads: false,
            reload_wanted: false,
            stale_series_closed: false,
            #[cfg(test)]
            fail_ticks: 0,
            #[cfg(test)]
            mark_gate: None,
        })
    }

    /// The data directory's lock, when the engine keeps history.
    pub fn lock(&self) -> Option<&DataDirLock> {
        self.lock.as_ref()
    }

    /// The config the engine runs on: the config in force, or the built-in
    /// defaults while there is none ([`Engine::config_in_force`]).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The config in force, shared: what the handle publishes and faces act
    /// on. `None` while the engine runs on the defaults because its file could
    /// not be read at start, until a reload reads a good one.
    pub fn config_in_force(&self) -> Option<Arc<Config>> {
        self.config_read.then(|| Arc::clone(&self.config))
    }

    /// Messages from start-up worth showing once (a corrupt store moved aside).
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// The last tick's events, oldest first, all of them, for the loop to
    /// publish once after each tick (the status keeps only the last few, for
    /// display); empty once taken.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.raised)
    }

    /// The shortest interval of any target: how often the loop wakes.
    pub fn base_interval(&self) -> Duration {
        if let Some(interval) = self.options.interval {
            return interval;
        }
        self.config
            .watch
            .iter()
            .map(|t| self.config.interval(t))
            .min()
            .unwrap_or(self.config.defaults.interval)
    }

    /// Applies a command in place, a mark's descriptor reads included. The
    /// loop [`Engine::spawn`] runs does not: it reads those on a blocking
    /// thread, apart from the engine, so a read that hangs holds up neither
    /// the loop nor the ticks.
    pub fn apply(&mut self, command: Command) {
        match command {
            Command::Reload => self.reload(true, unix_millis(SystemTime::now())),
            Command::Rescan => {
                self.table_read_at = None;
                self.next_due.clear();
            }
            Command::PauseAlerts(duration) => {
                self.paused_until = duration.map(|d| {
                    unix_millis(SystemTime::now()) + u64::try_from(d.as_millis()).unwrap_or(0)
                });
            }
            Command::MarkBaseline { target, reply } => {
                let _ = reply.send(self.mark_baseline(&target));
            }
            Command::SinceMark { target, reply } => {
                let _ = reply.send(self.since_mark(&target));
            }
        }
    }

    /// How long a target's descriptors read by kind are reused while its count
    /// stands still (10 s unless set). `Duration::ZERO` reads every table on every
    /// tick: what the benchmark's worst case measures.
    pub fn reuse_fd_kinds_for(&mut self, age: Duration) {
        self.fd_kinds_max_age = age;
    }

    /// Waits for automatic actions still running: call before dropping the engine.
    /// Their outcomes (a restart's forensic snapshots, its event) are written to
    /// the history as a tick's would be, so a restart that was still running at
    /// shutdown leaves its evidence too.
    pub fn finish(&mut self) {
        let now = unix_millis(SystemTime::now());
        let mut events = Vec::new();
        self.autopilot.finish(self.store.as_ref(), now, &mut events);
        if let Some(store) = &self.store {
            for event in &events {
                if let Err(error) = store.record_event(event) {
                    tracing::warn!("{error}");
                }
            }
        }
        for event in events {
            if self.recent_events.len() == RECENT_EVENTS {
                self.recent_events.pop_front();
            }
            self.recent_events.push_back(event);
        }
    }

    /// The orphan trees of the last full scan, largest first.
    pub fn orphans(&self) -> &[OrphanTree] {
        &self.orphans
    }

    /// The roots of the orphan trees idle (no member's CPU time advancing) for at
    /// least `[orphans] idle_reap_after`: what the opt-in reaper takes down.
    /// Empty when reaping is not configured.
    pub fn orphans_to_reap(&self) -> Vec<ProcessId> {
        let Some(after) = self.config.orphans.idle_reap_after else { return Vec::new() };
        self.orphans
            .iter()
            .filter(|tree| tree.chosen_by_default())
            .filter(|tree| tree.idle_for.is_some_and(|idle| idle >= after))
            .map(|tree| tree.root)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unwritable_data_directory_runs_without_history_and_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A data directory that cannot be created (under a regular file): what a
        // read-only one is even to root.
        let file = dir.path().join("not-a-directory");
        std::fs::write(&file, b"").expect("file");
        let config = dir.path().join("config.toml");
        std::fs::write(&config, "").expect("config");
        let mut engine = Engine::new(EngineOptions {
            config: ConfigSource::Named(config),
            store_path: Some(file.join("history.sqlite3")),
            notifier: Arc::new(crate::notifier::NullNotifier),
            interval: Some(Duration::from_millis(20)),
        })
        .expect("the engine starts without history");
        let notes = engine.take_notes();
        assert!(notes.iter().any(|n| n.starts_with("running without history")), "{notes:?}");
        let status = engine.tick();
        let why = status.history_error.clone().expect("the status says so");
        assert!(why.contains(&file.display().to_string()), "{why}");
        assert_eq!(status.tick, 1);
    }
}
