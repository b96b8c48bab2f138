//! The watch engine: the one poll loop behind `leakwatch watch`, the daemon and the
//! menubar app. Each tick it locates every target's process, samples its
//! descriptors by kind, fits the leak trend, evaluates the rules, writes history
//! and raises events; the faces only render the [`Status`] it publishes.
//!
//! A tick is synchronous work (the probe reads `/proc` or calls libproc) and runs
//! on a blocking thread. The async loop in [`Engine::spawn`] only schedules ticks
//! and handles commands, and it never waits on a tick: when a tick is still
//! running at the next interval, that interval is skipped, so a hung probe can
//! neither block the loop nor pile ticks up behind it.

use crate::actions::locate::{NotFound, PortMemo, locate};
use crate::autopilot::Autopilot;
use crate::config::{Config, ConfigError, Target};
use crate::config_source::ConfigSource;
use crate::diagnose::{
    Baseline, BaselineReason, Diagnosis, Evidence, Mark, MarkError, SinceMark, diagnose,
};
use crate::model::{Event, EventKind, Sample, SeriesKey, Severity, UnixMillis, unix_millis};
use crate::notifier::{Notification, Notifier};
use crate::orphans::{IdleTracker, Lineage, OrphanTree, find_orphans};
use crate::owner::{DataDirLock, Face, LockError};
use crate::rules::{MessageContext, Observation, RuleState, measure, outcome_message};
use crate::status::{
    ConfigStatus, KindGrowth, OwnUsage, Problem, ProcessSummary, Reading, RuleStatus, Status,
    TargetState, TargetStatus, TopKind,
};
use crate::store::{SeriesId, Store, StoreError};
use crate::summary::FdSummary;
use crate::throttle::Throttle;
use crate::tree::ProcessTree;
use crate::trend::{Trend, what_grew};
use crate::window::SampleWindow;
use leakwatch_probe::{
    ErrorKind, FdLimit, LimitSource, Probe, ProcessId, ProcessInfo, ProcessState,
};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::MissedTickBehavior;

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
/// The pseudo-target name of `[orphans.rules]` in events and notifications.
pub const ORPHANS: &str = "orphans";

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
    /// What failed, as [`Problem::what`] names it: `config`, `history`, `probe`.
    pub fn what(&self) -> &'static str {
        match self {
            EngineError::Config(_) => "config",
            EngineError::Store(_) => "history",
            EngineError::Probe(_) => "probe",
            EngineError::Locked(_) => "engine",
        }
    }
}

/// Something for the engine to do between ticks.
#[derive(Debug)]
pub enum Command {
    /// Read the config file again (SIGHUP, or the app's settings were saved).
    Reload,
    /// Silence notifications for this long; `None` resumes them.
    PauseAlerts(Option<Duration>),
    /// Read the process table and poll every target now, not at their next
    /// turn: an action (a restart, an orphan clean-up) changed the processes, and
    /// the faces should show it at once.
    Rescan,
    /// Mark a baseline on every process of the target now (see
    /// [`crate::diagnose::mark`]); the reply says what was marked.
    MarkBaseline { target: String, reply: oneshot::Sender<Result<Vec<Mark>, MarkError>> },
    /// What survived on the target's processes since their marks, read now.
    SinceMark { target: String, reply: oneshot::Sender<Result<Vec<SinceMark>, MarkError>> },
}

impl Command {
    /// Whether the spawned loop ticks at once after it, rather than on its beat.
    const fn ticks_now(&self) -> bool {
        matches!(self, Command::Reload | Command::Rescan)
    }

    /// Whether someone waits for its reply: applied as soon as no tick runs,
    /// rather than before the next one.
    const fn awaited(&self) -> bool {
        matches!(self, Command::MarkBaseline { .. } | Command::SinceMark { .. })
    }
}

/// One watched process (or one target that is down).
#[derive(Debug)]
struct Instance {
    target: String,
    process: Option<ProcessSummary>,
    series: Option<(SeriesKey, Option<SeriesId>)>,
    /// Recent samples, folded into a bounded number of buckets: the trend and the
    /// sparkline. The full history lives in the store.
    history: SampleWindow,
    first: Option<Sample>,
    limit: Option<FdLimit>,
    /// Whether `limit` was resolved for this series (`None` then means unknown).
    limit_read: bool,
    status: Option<TargetStatus>,
    /// The last descriptor table read by kind, for [`FD_KINDS_MAX_AGE`].
    kinds: Option<KindsRead>,
    /// The descriptors open at the series' first read by kind: what survives
    /// since is what the diagnosis reads.
    baseline: Option<Baseline>,
    /// The diagnosis of the last read by kind.
    diagnosis: Diagnosis,
    /// When this run first found the target down or unreadable (see
    /// [`TargetStatus::down_since`]).
    down_since: Option<UnixMillis>,
    /// The baseline the user marked on this process, if any.
    marked: Option<(Mark, Baseline)>,
}

/// A process's descriptors summarised by kind, when, and the count
/// ([`Probe::fd_count`]) taken right before.
#[derive(Debug)]
struct KindsRead {
    id: ProcessId,
    count: usize,
    at: Instant,
    summary: Arc<FdSummary>,
}

impl Instance {
    /// A process of `target` not sampled yet (or a target that is down).
    fn new(target: &str) -> Self {
        Self {
            target: target.to_owned(),
            process: None,
            series: None,
            history: SampleWindow::default(),
            first: None,
            limit: None,
            limit_read: false,
            status: None,
            kinds: None,
            baseline: None,
            diagnosis: Diagnosis::default(),
            down_since: None,
            marked: None,
        }
    }
}

/// The engine's state between ticks.
#[derive(Debug)]
pub struct Engine {
    options: EngineOptions,
    config: Config,
    /// The file the config came from and its modification stamp, to notice edits.
    config_file: Option<PathBuf>,
    config_stamp: Option<(SystemTime, u64)>,
    config_error: Option<String>,
    /// What went wrong at start and is still true (no history), for the faces.
    problems: Vec<Problem>,
    probe: Probe,
    store: Option<Store>,
    instances: BTreeMap<String, Instance>,
    rule_states: HashMap<(String, String), RuleState>,
    port_memos: HashMap<String, PortMemo>,
    table: Vec<ProcessInfo>,
    table_read_at: Option<Instant>,
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
    /// Whether the series left open by a previous run, whose processes died while
    /// no engine watched, have been closed (on the first full scan).
    stale_series_closed: bool,
    /// Makes this many ticks panic: the tests' stand-in for a tick that cannot go on.
    #[cfg(test)]
    fail_ticks: u32,
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

    /// Starts whatever the state of the files: a config that is missing (when
    /// named) or broken leaves the built-in defaults in force with the error in
    /// the status (file, line, key), as a later bad edit keeps the last good
    /// config. Fixing the file is picked up by the usual reload. Only a platform
    /// with no process interface stops it, or another engine owning the data
    /// directory ([`EngineError::Locked`]: the caller retries, and so takes over
    /// when that owner goes away).
    pub fn new_lenient(options: EngineOptions) -> Result<Self, EngineError> {
        Self::new_lenient_as(options, Face::Other)
    }

    /// [`Engine::new_lenient`] for `face` (see [`Engine::new_as`]).
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
                    what: "history".to_owned(),
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
                target: "leakwatch".to_owned(),
                pid: None,
                kind: EventKind::ConfigError,
                rule: None,
                severity: Severity::Warning,
                value: None,
                message: format!("{message} (running on the built-in defaults)"),
            });
        }
        Ok(Self {
            options,
            config,
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
            lineage: Lineage::new(),
            idle: IdleTracker::new(),
            orphans: Vec::new(),
            orphan_rules: Vec::new(),
            autopilot: Autopilot::default(),
            lock,
            store_throttle: Throttle::new(STORE_WARN_EVERY),
            history_error,
            stale_series_closed: false,
            #[cfg(test)]
            fail_ticks: 0,
        })
    }

    /// The data directory's lock, when the engine keeps history.
    pub fn lock(&self) -> Option<&DataDirLock> {
        self.lock.as_ref()
    }

    /// The config in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Messages from start-up worth showing once (a corrupt store moved aside).
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
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

    /// Applies a command.
    pub fn apply(&mut self, command: Command) {
        match command {
            Command::Reload => self.reload(true),
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

    /// The watched processes of `target` (a configured name, or a row's), with
    /// their row names; an error says why there are none.
    fn marked_instances(&self, target: &str) -> Result<Vec<(String, ProcessId)>, MarkError> {
        let found: Vec<(String, ProcessId)> = self
            .instances
            .iter()
            .filter(|(name, i)| i.target == target || name.as_str() == target)
            .filter_map(|(name, i)| Some((name.clone(), i.process.as_ref()?.id)))
            .collect();
        if !found.is_empty() {
            return Ok(found);
        }
        let known = self.config.target(target).is_some()
            || self.instances.iter().any(|(name, i)| i.target == target || name == target);
        if known {
            return Err(MarkError::NotRunning { target: target.to_owned() });
        }
        let mut watched: Vec<String> = self.config.watch.iter().map(|t| t.name.clone()).collect();
        if watched.is_empty() {
            watched = self.instances.keys().cloned().collect();
        }
        Err(MarkError::UnknownTarget { target: target.to_owned(), watched })
    }

    fn probe_error(target: &str, pid: u32, e: &leakwatch_probe::Error) -> MarkError {
        MarkError::Probe {
            target: target.to_owned(),
            pid,
            message: e.to_string(),
            permission: e.kind() == ErrorKind::PermissionDenied,
        }
    }

    /// Reads each process of `target` now and keeps its descriptors as the
    /// marked baseline, replacing an earlier mark.
    pub fn mark_baseline(&mut self, target: &str) -> Result<Vec<Mark>, MarkError> {
        let mut marks = Vec::new();
        for (name, id) in self.marked_instances(target)? {
            let table = match self.probe.fd_kinds(id.pid) {
                Ok(table) if table.id == id => table,
                // Gone or replaced since the last tick: the next tick sees it.
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::NoSuchProcess => continue,
                Err(e) => return Err(Self::probe_error(target, id.pid, &e)),
            };
            let at = unix_millis(SystemTime::now());
            let Some(instance) = self.instances.get_mut(&name) else { continue };
            let mark = Mark {
                instance: name.clone(),
                target: instance.target.clone(),
                process: id,
                at,
                descriptors: table.fds.len(),
            };
            instance.marked =
                Some((mark.clone(), Baseline::new(&table, at, BaselineReason::Marked)));
            tracing::info!(
                "{name}: baseline marked on pid {} ({} descriptors)",
                id.pid,
                mark.descriptors
            );
            marks.push(mark);
        }
        if marks.is_empty() {
            return Err(MarkError::NotRunning { target: target.to_owned() });
        }
        Ok(marks)
    }

    /// What survived since the marks on `target`'s processes, read now (with
    /// socket endpoints, for CLOSE_WAIT).
    pub fn since_mark(&mut self, target: &str) -> Result<Vec<SinceMark>, MarkError> {
        let mut out = Vec::new();
        for (name, id) in self.marked_instances(target)? {
            let Some((mark, baseline)) = self
                .instances
                .get(&name)
                .and_then(|i| i.marked.as_ref())
                .filter(|(mark, _)| mark.process == id)
            else {
                continue;
            };
            let table = match self.probe.fd_table(id.pid) {
                Ok(table) if table.id == id => table,
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::NoSuchProcess => continue,
                Err(e) => return Err(Self::probe_error(target, id.pid, &e)),
            };
            let survivors = baseline.survivors(&table, unix_millis(SystemTime::now()));
            out.push(SinceMark { mark: mark.clone(), baseline: BaselineReason::Marked, survivors });
        }
        if out.is_empty() {
            return Err(MarkError::NoMark { target: target.to_owned() });
        }
        Ok(out)
    }

    /// Reads the config again. A bad file keeps the config in force and is
    /// reported, once per distinct error, as a `config_error` event.
    fn reload(&mut self, forced: bool) {
        let Some(path) = self.config_file.clone() else { return };
        let stamp = file_stamp(&path);
        if !forced && stamp == self.config_stamp {
            return;
        }
        self.config_stamp = stamp;
        let now = unix_millis(SystemTime::now());
        let loaded = self.options.config.load_or_default();
        match loaded {
            Ok(config) => {
                self.config = config;
                self.config_error = None;
                self.next_due.clear();
                self.port_memos.clear();
                self.table_read_at = None;
                tracing::info!("configuration reloaded from {}", path.display());
                let event = self.event(
                    now,
                    "leakwatch",
                    None,
                    EventKind::ConfigReloaded,
                    Severity::Ok,
                    format!("configuration reloaded from {}", path.display()),
                );
                self.pending_events.push(event);
            }
            Err(error) => {
                let message = error.to_string();
                if self.config_error.as_deref() == Some(message.as_str()) {
                    return;
                }
                tracing::warn!("keeping the last good configuration: {message}");
                self.config_error = Some(message.clone());
                let event = self.event(
                    now,
                    "leakwatch",
                    None,
                    EventKind::ConfigError,
                    Severity::Warning,
                    format!("{message} (keeping the last good configuration)"),
                );
                self.pending_events.push(event);
            }
        }
    }

    fn event(
        &self,
        at: UnixMillis,
        target: &str,
        pid: Option<u32>,
        kind: EventKind,
        severity: Severity,
        message: String,
    ) -> Event {
        Event {
            at,
            target: target.to_owned(),
            pid,
            kind,
            rule: None,
            severity,
            value: None,
            message,
        }
    }

    /// How long a target's descriptors read by kind are reused while its count
    /// stands still (10 s unless set). `Duration::ZERO` reads every table on every
    /// tick: what the benchmark's worst case measures.
    pub fn reuse_fd_kinds_for(&mut self, age: Duration) {
        self.fd_kinds_max_age = age;
    }

    /// One poll of every due target. Never fails: what cannot be read is shown as
    /// such in the status and the events.
    pub fn tick(&mut self) -> Arc<Status> {
        #[cfg(test)]
        if self.fail_ticks > 0 {
            self.fail_ticks -= 1;
            panic!("a tick that cannot go on (test fault)");
        }
        let now = unix_millis(SystemTime::now());
        self.tick += 1;
        self.reload(false);
        let mut events = std::mem::take(&mut self.pending_events);
        let scanned = self.refresh_table(now);

        let mut seen: Vec<String> = Vec::new();
        let mut batch: Vec<(SeriesId, Sample)> = Vec::new();
        let targets: Vec<Target> = self.config.watch.clone();
        if targets.is_empty() {
            self.poll_automatic(now, &mut seen, &mut events, &mut batch);
        } else {
            for target in &targets {
                self.poll_target(target, now, &mut seen, &mut events, &mut batch);
            }
        }
        self.mark_watched_orphans();
        if scanned {
            self.evaluate_orphan_rules(now, &mut events);
        }
        self.run_autopilot(scanned, now, &mut events);
        self.forget_unseen(&seen, now);
        self.write_history(&batch, &events, now);
        self.notify(&events, now);
        for event in &events {
            if self.recent_events.len() == RECENT_EVENTS {
                self.recent_events.pop_front();
            }
            self.recent_events.push_back(event.clone());
        }
        Arc::new(self.status(now))
    }

    /// Reads the whole process table when it is due (see [`FULL_SCAN_EVERY`]),
    /// and with it finds the orphans; returns whether it did.
    fn refresh_table(&mut self, now: UnixMillis) -> bool {
        if self.table_read_at.is_some_and(|at| at.elapsed() < FULL_SCAN_EVERY) {
            return false;
        }
        match self.probe.processes() {
            Ok(table) => {
                self.table = table;
                self.table_read_at = Some(Instant::now());
                self.close_stale_series();
                if self.config.watch.is_empty() {
                    self.automatic_pids = self.top_descriptor_holders();
                }
                self.scan_orphans(now);
                true
            }
            Err(error) => {
                tracing::warn!("reading the process table: {error}");
                false
            }
        }
    }

    /// Ends the series a previous run left open whose process is gone: it died
    /// while no engine watched, and its series ends at its last sample rather
    /// than staying open-ended. Series of processes still running are continued.
    fn close_stale_series(&mut self) {
        if self.stale_series_closed {
            return;
        }
        self.stale_series_closed = true;
        let Some(store) = &self.store else { return };
        let alive: std::collections::HashSet<ProcessId> = self.table.iter().map(|p| p.id).collect();
        match store.end_series_of_dead_processes(|id| alive.contains(&id)) {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                "ended {n} series of processes that exited while Leakwatch was not running"
            ),
            Err(error) => tracing::warn!("{error}"),
        }
    }

    /// Updates the lineage and idle times from the table just read, then finds
    /// the orphan trees: the current user's, or everyone's when the config allows
    /// acting on other users' processes.
    fn scan_orphans(&mut self, now: UnixMillis) {
        self.lineage.record(&self.table, now);
        self.idle.observe(&self.table, now);
        #[cfg(unix)]
        let only_uid = (!self.config.allow_other_users).then(leakwatch_probe::current_uid);
        #[cfg(not(unix))]
        let only_uid = None;
        let probe = &self.probe;
        self.orphans = find_orphans(
            &self.table,
            &self.lineage,
            &self.idle,
            &self.config.orphans.patterns,
            only_uid,
            |pid| probe.fd_count(pid).ok().map(|n| n as u64),
            now,
        );
    }

    /// Feeds `[orphans.rules]` (`orphans.count`, `orphans.rss`) the last full
    /// scan's trees, as the pseudo-target `orphans`.
    fn evaluate_orphan_rules(&mut self, now: UnixMillis, events: &mut Vec<Event>) {
        let rules = self.config.orphans.rules.clone();
        let keys: Vec<String> = rules.iter().map(|r| r.metric.key()).collect();
        self.rule_states.retain(|(instance, key), _| instance != ORPHANS || keys.contains(key));
        let observation = Observation {
            orphan_count: Some(self.orphans.len() as u64),
            orphan_rss: Some(self.orphans.iter().map(|t| t.total_rss_bytes).sum()),
            ..Observation::default()
        };
        self.orphan_rules = self.evaluate_rules(
            ORPHANS,
            None,
            &rules,
            &observation,
            &Trend::default(),
            None,
            now,
            events,
        );
    }

    /// Collects finished automatic actions and starts due ones: restarts of
    /// targets at their `auto_restart.on` severity, reaping of idle orphan trees.
    fn run_autopilot(&mut self, scanned: bool, now: UnixMillis, events: &mut Vec<Event>) {
        self.autopilot.collect(self.store.as_ref(), now, events);
        for target in self.config.watch.iter().filter(|t| t.auto_restart.is_some()) {
            let severity = self
                .instances
                .values()
                .filter(|i| i.target == target.name)
                .filter_map(|i| i.status.as_ref())
                .map(|s| s.severity)
                .max()
                .unwrap_or(Severity::Ok);
            let diagnosis = self
                .instances
                .values()
                .filter(|i| i.target == target.name)
                .find_map(|i| i.diagnosis.line());
            self.autopilot.note_diagnosis(&target.name, diagnosis);
            self.autopilot.consider_restart(&self.config, target, severity, now, events);
        }
        if scanned {
            let roots = self.orphans_to_reap();
            self.autopilot.reap(&self.config, roots, now, events);
        }
    }

    /// Flags the orphan trees that hold a configured target's process (after
    /// this tick's polls, so the first tick already knows), which select-all,
    /// the tray's clean-up and the reaper then leave alone.
    fn mark_watched_orphans(&mut self) {
        let configured: Vec<&str> = self.config.watch.iter().map(|t| t.name.as_str()).collect();
        let watched: Vec<(&str, ProcessId)> = self
            .instances
            .values()
            .filter(|i| configured.contains(&i.target.as_str()))
            .filter_map(|i| Some((i.target.as_str(), i.process.as_ref()?.id)))
            .collect();
        for tree in &mut self.orphans {
            tree.mark_watched(watched.iter().copied());
        }
    }

    /// Waits for automatic actions still running: call before dropping the engine.
    pub fn finish(&mut self) {
        self.autopilot.finish();
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

    /// The current user's processes holding the most descriptors.
    fn top_descriptor_holders(&self) -> Vec<u32> {
        #[cfg(unix)]
        let me = leakwatch_probe::current_uid();
        #[cfg(not(unix))]
        let me = 0;
        let own = std::process::id();
        let mut counts: Vec<(usize, u32)> = self
            .table
            .iter()
            .filter(|p| p.uid == me && !p.is_kernel_thread && p.id.pid != own)
            .filter_map(|p| Some((self.probe.fd_count(p.id.pid).ok()?, p.id.pid)))
            .collect();
        counts.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        counts.into_iter().take(AUTOMATIC_TARGETS).map(|(_, pid)| pid).collect()
    }

    fn poll_automatic(
        &mut self,
        now: UnixMillis,
        seen: &mut Vec<String>,
        events: &mut Vec<Event>,
        batch: &mut Vec<(SeriesId, Sample)>,
    ) {
        let rules = self.config.auto_rules();
        let window = self.config.defaults.window;
        for pid in self.automatic_pids.clone() {
            let Ok(process) = self.probe.process(pid) else { continue };
            if matches!(process.state, ProcessState::Zombie | ProcessState::Dead) {
                continue;
            }
            let name = format!("{}[{pid}]", process.name);
            let target = TargetView {
                name: name.clone(),
                instance: name.clone(),
                configured: None,
                pid: Some(pid),
                restart: Err("not a watched target: Watch it to set up a restart".to_owned()),
                selector: "automatic: top descriptor holder".to_owned(),
                window,
                fd_limit: self.config.defaults.fd_limit,
            };
            self.poll_process(&target, &process, &rules, now, events, batch);
            seen.push(name);
        }
    }

    fn poll_target(
        &mut self,
        target: &Target,
        now: UnixMillis,
        seen: &mut Vec<String>,
        events: &mut Vec<Event>,
        batch: &mut Vec<(SeriesId, Sample)>,
    ) {
        let interval = self.options.interval.unwrap_or_else(|| self.config.interval(target));
        let due = self.next_due.get(&target.name).copied().unwrap_or(0);
        if now < due {
            // Not due: keep its instances as they are.
            seen.extend(
                self.instances
                    .iter()
                    .filter(|(_, i)| i.target == target.name)
                    .map(|(name, _)| name.clone()),
            );
            return;
        }
        // Half an interval of slack keeps a target on the loop's beat.
        let interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        self.next_due.insert(target.name.clone(), now + interval_ms / 2);
        let rules = self.config.effective_rules(target);
        let memo = self.port_memos.entry(target.name.clone()).or_default();
        let located = locate(&target.selector, &self.table, &self.probe, memo);
        let selector = target.selector.to_string();
        let window = self.config.window(target);
        let fd_limit = self.config.fd_limit(target);
        let restart = if target.restart.is_some() {
            Ok(())
        } else {
            Err("no [watch.restart] for this target: set up a restart first".to_owned())
        };
        let view = |instance: &str, pid: Option<u32>| TargetView {
            name: target.name.clone(),
            instance: instance.to_owned(),
            configured: Some(target.name.clone()),
            pid,
            restart: restart.clone(),
            selector: selector.clone(),
            window,
            fd_limit,
        };
        let pids = match located {
            Ok(pids) => pids,
            // A read that did not finish says nothing about the process: the
            // row says so, and neither the `down` rule nor a restart acts on it.
            Err(reason @ NotFound::PidfileTimedOut(_)) => {
                self.target_unknown(&view(&target.name, None), &reason);
                seen.push(target.name.clone());
                return;
            }
            Err(reason) => {
                self.target_down(&view(&target.name, None), &reason, &rules, now, events);
                seen.push(target.name.clone());
                return;
            }
        };
        let several = pids.len() > 1;
        let mut any = false;
        for pid in pids {
            let process = match self.probe.process(pid) {
                // A zombie has exited: it holds no descriptors and serves nothing,
                // so it is down, not up with an empty table.
                Ok(process)
                    if matches!(process.state, ProcessState::Zombie | ProcessState::Dead) =>
                {
                    continue;
                }
                Ok(process) => process,
                Err(e) if e.kind() == ErrorKind::NoSuchProcess => continue,
                Err(e) => {
                    tracing::debug!("{}: {e}", target.name);
                    continue;
                }
            };
            let instance =
                if several { format!("{}[{pid}]", target.name) } else { target.name.clone() };
            let view = view(&instance, several.then_some(pid));
            self.poll_process(&view, &process, &rules, now, events, batch);
            seen.push(instance.clone());
            any = true;
        }
        if !any {
            self.target_down(&view(&target.name, None), &NotFound::NoMatch, &rules, now, events);
            seen.push(target.name.clone());
        }
    }

    /// Samples one process of a target, and evaluates its rules.
    fn poll_process(
        &mut self,
        target: &TargetView,
        process: &ProcessInfo,
        rules: &[crate::config::RuleSpec],
        now: UnixMillis,
        events: &mut Vec<Event>,
        batch: &mut Vec<(SeriesId, Sample)>,
    ) {
        let pid = process.id.pid;
        let instance_name = target.instance.clone();
        self.ensure_series(target, process, now, events);
        let summary = match self.fd_summary(&instance_name, process) {
            Ok(Some(summary)) => summary,
            // The pid belongs to another process now: the next tick sees it.
            Ok(None) => return,
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                tracing::debug!("{instance_name}: {e}");
                let reason = unreadable_reason(process);
                let mut status = self.bare_status(target, TargetState::PermissionDenied(reason));
                if let Some(instance) = self.instances.get_mut(&instance_name) {
                    let since = *instance.down_since.get_or_insert(now);
                    status.down_since = Some(since);
                    instance.status = Some(status);
                }
                return;
            }
            Err(_) => return,
        };
        let limit = self.effective_limit(&instance_name, pid, target.fd_limit);
        let descendants = ProcessTree::new(&self.table)
            .subtree(pid)
            .map_or(0, |nodes| u32::try_from(nodes.len().saturating_sub(1)).unwrap_or(u32::MAX));
        let sample = Sample {
            at: now,
            total: summary.total as u64,
            kinds: summary.kinds.iter().map(|(kind, n)| (*kind, *n as u64)).collect(),
            limit: limit.and_then(|l| l.soft),
            rss_bytes: process.rss_bytes,
            cpu_seconds: process.cpu_time.map(|d| d.as_secs_f64()),
            threads: process.threads,
            descendants,
        };
        let Some(instance) = self.instances.get_mut(&instance_name) else { return };
        instance.history.set_window(target.window);
        instance.history.push(&sample);
        if instance.first.is_none() {
            instance.first = Some(sample.clone());
        }
        if let Some((_, Some(series_id))) = &instance.series {
            batch.push((*series_id, sample.clone()));
        }
        let trend = instance.history.trend(now);
        let observation = Observation {
            sample: Some(&sample),
            summary: Some(summary.as_ref()),
            trend: Some(&trend),
            ..Observation::default()
        };
        let rule_statuses = self.evaluate_rules(
            &instance_name,
            Some(pid),
            rules,
            &observation,
            &trend,
            sample.limit,
            now,
            events,
        );
        let Some(instance) = self.instances.get_mut(&instance_name) else { return };
        instance.down_since = None;
        let reading = reading_of(&sample, &trend);
        let mut severity = rule_statuses.iter().map(|r| r.severity).max().unwrap_or(Severity::Ok);
        if reading == Reading::AtLimit {
            // Calls that open a descriptor fail now, whatever the rules say.
            severity = Severity::Critical;
        }
        let grew = instance
            .first
            .as_ref()
            .map(|first| {
                what_grew(first, &sample)
                    .into_iter()
                    .map(|g| KindGrowth { kind: g.kind, first: g.first, now: g.now })
                    .collect()
            })
            .unwrap_or_default();
        let history = instance.history.sparkline();
        instance.status = Some(TargetStatus {
            name: instance_name.clone(),
            target: target.configured.clone(),
            instance: target.pid,
            restartable: target.restart.is_ok(),
            restart_unavailable: target.restart.clone().err(),
            limit_unknown: limit.is_none(),
            top_kind: TopKind::pick(&sample.kinds, &trend.kinds_per_hour),
            selector: target.selector.clone(),
            state: TargetState::Up,
            process: instance.process.clone(),
            severity,
            rules: rule_statuses,
            sample: Some(sample),
            limit,
            slope_per_hour: trend.total_per_hour,
            kind_slopes_per_hour: trend.kinds_per_hour.clone(),
            eta_seconds: trend.eta.map(|d| d.as_secs_f64()),
            top_paths: summary.paths.iter().take(10).cloned().collect(),
            grew,
            history,
            diagnosis: instance.diagnosis.line(),
            signatures: instance.diagnosis.signatures(),
            reading,
            down_since: None,
        });
    }

    /// `process`'s descriptors by kind: read afresh, or the last read while the
    /// count is unchanged and younger than [`FD_KINDS_MAX_AGE`]. `None` when the
    /// pid now belongs to another process.
    fn fd_summary(
        &mut self,
        instance_name: &str,
        process: &ProcessInfo,
    ) -> Result<Option<Arc<FdSummary>>, leakwatch_probe::Error> {
        let pid = process.id.pid;
        // Compared with the count taken before the last read by kind, not with
        // what that read listed: the count includes descriptors a syscall has
        // reserved but not installed yet (a thread blocked in accept(2) holds one).
        let count = self.probe.fd_count(pid)?;
        let reusable =
            self.instances.get(instance_name).and_then(|i| i.kinds.as_ref()).filter(|k| {
                k.id == process.id && k.count == count && k.at.elapsed() < self.fd_kinds_max_age
            });
        if let Some(kinds) = reusable {
            // The count was of whoever holds the pid now.
            return Ok(
                (self.probe.identity(pid)? == process.id).then(|| Arc::clone(&kinds.summary))
            );
        }
        let table = self.probe.fd_kinds(pid)?;
        if table.id != process.id {
            return Ok(None);
        }
        let summary = Arc::new(FdSummary::from_fds(&table.fds));
        if let Some(instance) = self.instances.get_mut(instance_name) {
            // Survivors since the series' first read: a read by kind already
            // holds every identity, so this costs a set lookup per descriptor.
            let now = unix_millis(SystemTime::now());
            match &instance.baseline {
                Some(baseline) => {
                    let survivors = baseline.survivors(&table, now);
                    instance.diagnosis =
                        diagnose(&Evidence { survivors: Some(&survivors), ..Evidence::default() });
                }
                None => {
                    instance.baseline =
                        Some(Baseline::new(&table, now, BaselineReason::SeriesStart));
                }
            }
            instance.kinds = Some(KindsRead {
                id: process.id,
                count,
                at: Instant::now(),
                summary: Arc::clone(&summary),
            });
        }
        Ok(Some(summary))
    }

    /// The limit for percentages and the ETA (DESIGN.md, "File descriptor kinds"),
    /// see [`resolve_limit`]; `None` when unknown. Read once per series.
    fn effective_limit(
        &mut self,
        instance: &str,
        pid: u32,
        configured: Option<u64>,
    ) -> Option<FdLimit> {
        if let Some(instance) = self.instances.get(instance).filter(|i| i.limit_read) {
            return instance.limit;
        }
        let limit = resolve_limit(self.probe.fd_limit(pid).ok(), configured);
        if let Some(instance) = self.instances.get_mut(instance) {
            instance.limit = limit;
            instance.limit_read = true;
        }
        limit
    }

    /// Starts a new series when the instance's process identity changed (a
    /// restart, or a new process on the port).
    fn ensure_series(
        &mut self,
        target: &TargetView,
        process: &ProcessInfo,
        now: UnixMillis,
        events: &mut Vec<Event>,
    ) {
        let instance = self
            .instances
            .entry(target.instance.to_owned())
            .or_insert_with(|| Instance::new(&target.name));
        if instance.series.as_ref().is_some_and(|(key, _)| key.process == process.id) {
            return;
        }
        let previous = instance.series.take();
        if let (Some((_, Some(old))), Some(store)) = (&previous, &self.store)
            && let Err(e) = store.end_series(*old, now)
        {
            tracing::warn!("{e}");
        }
        let key = SeriesKey { target: target.instance.to_owned(), process: process.id };
        let series_id = self.store.as_ref().and_then(|store| {
            store
                .begin_series(&key, &process.name, &process.argv, now)
                .map_err(|e| tracing::warn!("{e}"))
                .ok()
        });
        instance.series = Some((key, series_id));
        instance.history.clear();
        instance.first = None;
        if let (Some(series_id), Some(store)) = (series_id, &self.store) {
            seed_window(instance, store, series_id, target.window, now);
        }
        instance.limit = None;
        instance.limit_read = false;
        instance.baseline = None;
        instance.diagnosis = Diagnosis::default();
        instance.marked = None;
        instance.process = Some(ProcessSummary {
            id: process.id,
            name: process.name.clone(),
            argv: process.argv.to_vec(),
            started_at: unix_millis(process.started_at),
        });
        let message = match previous {
            Some((old, _)) => format!(
                "{}: now pid {} (was pid {}): a new series starts",
                target.instance, process.id.pid, old.process.pid
            ),
            None => {
                format!("{}: watching pid {} ({})", target.instance, process.id.pid, process.name)
            }
        };
        events.push(Event {
            at: now,
            target: target.instance.to_owned(),
            pid: Some(process.id.pid),
            kind: EventKind::SeriesStarted,
            rule: None,
            severity: Severity::Ok,
            value: None,
            message,
        });
    }

    /// A target whose process cannot be told now (its pidfile read timed out):
    /// its series and rule states are kept as they were, for the read may
    /// answer next tick, and its row says why at severity ok, so that nothing
    /// automatic (a `down` rule, a restart) acts on what is not known.
    fn target_unknown(&mut self, target: &TargetView, reason: &NotFound) {
        let mut status = self.bare_status(target, TargetState::Unknown(reason.to_string()));
        status.severity = Severity::Ok;
        let instance = self
            .instances
            .entry(target.name.to_owned())
            .or_insert_with(|| Instance::new(&target.name));
        instance.status = Some(status);
    }

    /// A target with no process: its series end and its `down` rule is fed.
    fn target_down(
        &mut self,
        target: &TargetView,
        reason: &NotFound,
        rules: &[crate::config::RuleSpec],
        now: UnixMillis,
        events: &mut Vec<Event>,
    ) {
        let gone: Vec<String> = self
            .instances
            .iter()
            .filter(|(name, i)| i.target == target.name && name.as_str() != target.name)
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            self.end_instance(&name, now);
        }
        self.end_series_of(&target.name, now);
        let observation = Observation::default();
        let rule_statuses = self.evaluate_rules(
            &target.name,
            None,
            rules,
            &observation,
            &Trend::default(),
            None,
            now,
            events,
        );
        let mut status = self.bare_status(target, TargetState::Down(reason.to_string()));
        // A watched server that is not running is what the user must hear
        // about first, whatever its `down` rule's sample count.
        status.severity = Severity::Critical;
        status.rules = rule_statuses;
        let instance = self
            .instances
            .entry(target.name.to_owned())
            .or_insert_with(|| Instance::new(&target.name));
        status.down_since = Some(*instance.down_since.get_or_insert(now));
        instance.status = Some(status);
    }

    fn bare_status(&self, target: &TargetView, state: TargetState) -> TargetStatus {
        TargetStatus {
            name: target.instance.to_owned(),
            target: target.configured.clone(),
            instance: target.pid,
            restartable: target.restart.is_ok(),
            restart_unavailable: target.restart.clone().err(),
            limit_unknown: false,
            top_kind: None,
            selector: target.selector.clone(),
            state,
            process: self.instances.get(&target.instance).and_then(|i| i.process.clone()),
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

    #[allow(clippy::too_many_arguments)]
    fn evaluate_rules(
        &mut self,
        instance: &str,
        pid: Option<u32>,
        rules: &[crate::config::RuleSpec],
        observation: &Observation<'_>,
        trend: &Trend,
        limit: Option<u64>,
        now: UnixMillis,
        events: &mut Vec<Event>,
    ) -> Vec<RuleStatus> {
        let mut statuses = Vec::with_capacity(rules.len());
        for spec in rules {
            let key = spec.metric.key();
            if holds_while_measuring(&spec.metric, trend) {
                // No slope yet (a new series): neither a recovery nor a
                // worsening, so the rule keeps the level it had.
                let state = self.rule_states.entry((instance.to_owned(), key.clone())).or_default();
                statuses.push(RuleStatus { metric: key, severity: state.level(), value: None });
                continue;
            }
            let value = measure(&spec.metric, observation);
            let state = self.rule_states.entry((instance.to_owned(), key.clone())).or_default();
            if let Some(outcome) = state.evaluate(spec, value, limit, now) {
                // A kind rule speaks of that kind's growth, not the total's: a
                // kind left out of the fit did not change (its slope is zero).
                let slope_per_hour = match &spec.metric {
                    crate::config::Metric::Kind(kind) => trend
                        .total_per_hour
                        .map(|_| trend.kinds_per_hour.get(kind).copied().unwrap_or(0.0)),
                    _ => trend.total_per_hour,
                };
                let context = MessageContext {
                    target: instance,
                    metric: &spec.metric,
                    value: outcome.value,
                    slope_per_hour,
                    eta: trend.eta,
                    limit,
                };
                let message = outcome_message(&context, &outcome);
                let mut event = Event {
                    at: now,
                    target: instance.to_owned(),
                    pid,
                    kind: outcome.kind,
                    rule: Some(key.clone()),
                    severity: outcome.severity,
                    value: outcome.value.is_finite().then_some(outcome.value),
                    message,
                };
                if !outcome.notify {
                    // Logged, but a flap within the cooldown does not pop up again.
                    event.message.push_str(" (within cooldown: not notified)");
                }
                events.push(event);
            }
            statuses.push(RuleStatus {
                metric: key,
                severity: state.level(),
                value: value.map(crate::rules::MetricValue::as_f64).filter(|v| v.is_finite()),
            });
        }
        statuses
    }

    fn end_series_of(&mut self, instance: &str, now: UnixMillis) {
        let Some(instance) = self.instances.get_mut(instance) else { return };
        if let (Some((_, Some(id))), Some(store)) = (instance.series.take(), &self.store)
            && let Err(e) = store.end_series(id, now)
        {
            tracing::warn!("{e}");
        }
        instance.history.clear();
        instance.first = None;
        instance.limit = None;
        instance.limit_read = false;
    }

    fn end_instance(&mut self, name: &str, now: UnixMillis) {
        self.end_series_of(name, now);
        self.instances.remove(name);
        self.rule_states.retain(|(instance, _), _| instance != name);
    }

    /// Drops instances no longer watched (a process that exited from a
    /// multi-process target, a target removed from the config), so memory follows
    /// what is watched now.
    fn forget_unseen(&mut self, seen: &[String], now: UnixMillis) {
        let unseen: Vec<String> =
            self.instances.keys().filter(|name| !seen.contains(name)).cloned().collect();
        for name in unseen {
            self.end_instance(&name, now);
        }
        let targets: Vec<&str> = self.config.watch.iter().map(|t| t.name.as_str()).collect();
        self.next_due.retain(|name, _| targets.contains(&name.as_str()));
        self.port_memos.retain(|name, _| targets.contains(&name.as_str()));
    }

    fn write_history(&mut self, batch: &[(SeriesId, Sample)], events: &[Event], now: UnixMillis) {
        let Some(store) = &self.store else { return };
        let mut result = store.record_samples(batch);
        for event in events {
            result = result.and_then(|()| store.record_event(event));
        }
        let prune_due = self.last_prune.is_none_or(|at| {
            now.saturating_sub(at) >= u64::try_from(PRUNE_EVERY.as_millis()).unwrap_or(0)
        });
        if result.is_ok() && prune_due {
            self.last_prune = Some(now);
            result = store.prune(now).map(drop);
        }
        match result {
            Ok(()) => {
                if self.store_throttle.cleared() {
                    tracing::info!("history is being written again");
                    self.history_error = None;
                }
            }
            Err(error) => {
                // A full disk fails every tick: say it once, then now and then.
                if let Some(held_back) = self.store_throttle.occurred() {
                    if held_back == 0 {
                        tracing::warn!("{error}");
                    } else {
                        tracing::warn!("{error} (still failing: {held_back} more failed writes)");
                    }
                }
                self.history_error = Some(format!("history is not being written: {error}"));
                if error.is_corruption() {
                    self.reopen_store();
                }
            }
        }
    }

    /// A database that went bad while running is moved aside and replaced, and the
    /// open series start afresh in the new one.
    fn reopen_store(&mut self) {
        let Some(path) = self.options.store_path.clone() else { return };
        self.store = None;
        match Store::open(&path) {
            Ok(opened) => {
                if let Some(message) = opened.message() {
                    tracing::warn!("{message}");
                }
                self.store = Some(opened.store);
                for instance in self.instances.values_mut() {
                    instance.series = None;
                }
            }
            Err(error) => {
                tracing::error!("history disabled: {error}");
                self.history_error = Some(format!("running without history: {error}"));
            }
        }
    }

    fn notify(&mut self, events: &[Event], now: UnixMillis) {
        if !self.config.notify.enabled || self.paused_until.is_some_and(|until| now < until) {
            return;
        }
        for event in events {
            let notify = matches!(
                event.kind,
                EventKind::Raised
                    | EventKind::Escalated
                    | EventKind::Reminded
                    | EventKind::Cleared
                    | EventKind::Action
            ) && !event.message.ends_with("(within cooldown: not notified)");
            if !notify {
                continue;
            }
            // A rule about a target says what is leaking, when that is known.
            let diagnosis = (event.kind != EventKind::Cleared)
                .then(|| self.instances.get(&event.target).and_then(|i| i.diagnosis.line()))
                .flatten();
            let notification = Notification {
                title: format!("Leakwatch: {}", event.target),
                body: match diagnosis {
                    Some(line) => format!("{}\n{line}", event.message),
                    None => event.message.clone(),
                },
                target: Some(event.target.clone()),
                severity: event.severity,
            };
            // A notifier is outside code (D-Bus, an executor of its own) that has
            // panicked under fd exhaustion; its failure must not take the tick.
            let shown = catch_quietly(|| self.options.notifier.notify(&notification))
                .unwrap_or_else(|panic| {
                    Err(crate::notifier::NotifyError(format!("the notifier panicked: {panic}")))
                });
            if let Err(error) = shown {
                // No notification service (a headless server): log, do not fail.
                if self.notify_failures == 0 {
                    tracing::warn!("{error}; notifications will be logged only");
                }
                self.notify_failures += 1;
                tracing::info!("notification: {}", notification.body);
            }
        }
    }

    fn status(&mut self, now: UnixMillis) -> Status {
        let order: Vec<&str> = self.config.watch.iter().map(|t| t.name.as_str()).collect();
        let mut targets: Vec<TargetStatus> =
            self.instances.values().filter_map(|i| i.status.clone()).collect();
        if self.config.watch.is_empty() {
            // Automatic mode: the heaviest holders first.
            targets.sort_by_key(|t| {
                (std::cmp::Reverse(t.sample.as_ref().map_or(0, |s| s.total)), t.name.clone())
            });
        } else {
            targets.sort_by_key(|t| {
                let target = self.instances.get(&t.name).map_or("", |i| i.target.as_str());
                (order.iter().position(|n| *n == target).unwrap_or(usize::MAX), t.name.clone())
            });
        }
        // Most urgent first; the orders above break ties (a stable sort).
        targets.sort_by(TargetStatus::urgency_cmp);
        Status {
            at: now,
            tick: self.tick,
            targets,
            config: ConfigStatus {
                path: self
                    .config_file
                    .as_deref()
                    .filter(|p| p.exists())
                    .map(|p| p.display().to_string()),
                error: self.config_error.clone(),
                automatic: self.config.watch.is_empty(),
            },
            problems: self.problems.clone(),
            own: self.own_usage(),
            recent_events: self.recent_events.iter().cloned().collect(),
            restarts: self.autopilot.restarts().clone(),
            alerts_paused_until: self.paused_until.filter(|until| *until > now),
            orphans: self.orphans.clone(),
            orphan_rules: self.orphan_rules.clone(),
            history_error: self.history_error.clone(),
            engine: self.lock.as_ref().map(|lock| lock.owner().clone()),
        }
    }

    fn own_usage(&mut self) -> OwnUsage {
        let pid = std::process::id();
        let own = self.probe.process(pid).ok();
        OwnUsage {
            pid,
            fds: self.probe.fd_count(pid).ok().map(|n| n as u64),
            rss_bytes: own.as_ref().and_then(|p| p.rss_bytes),
            cpu_seconds: own.as_ref().and_then(|p| p.cpu_time).map(|d| d.as_secs_f64()),
            threads: own.and_then(|p| p.threads),
        }
    }

    /// Runs the engine on the current tokio runtime until [`EngineHandle::shutdown`].
    pub fn spawn(mut self) -> EngineHandle {
        let (status_tx, status_rx) = watch::channel(Arc::new(Status::default()));
        let (events_tx, _) = broadcast::channel(256);
        let (command_tx, mut command_rx) = mpsc::unbounded_channel::<Command>();
        let (shutdown_tx, mut shutdown_rx) = watch::channel(false);
        let (listen_tx, listen_rx) = watch::channel(self.config.metrics.listen);
        let (failure_tx, failure_rx) = watch::channel(None::<String>);
        let events = events_tx.clone();
        // The lock owner serves the local API, so other faces attach to it.
        let api = self.lock.as_ref().map(|lock| crate::api::socket_path(lock.dir()));
        let api = api.and_then(|socket| match crate::api::SameUserListener::bind(&socket) {
            Ok(listener) => {
                let engine = crate::api::Engine {
                    status: status_rx.clone(),
                    events: events_tx.clone(),
                    commands: command_tx.clone(),
                    store: self.options.store_path.clone(),
                };
                Some((socket, tokio::spawn(crate::api::serve(listener, engine))))
            }
            Err(error) => {
                tracing::warn!("local API: cannot listen on {}: {error}", socket.display());
                None
            }
        });
        let task = tokio::spawn(async move {
            for note in self.take_notes() {
                tracing::warn!("{note}");
            }
            let mut period = self.base_interval();
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
            let mut engine = Some(self);
            let mut pending: Vec<Command> = Vec::new();
            let mut in_flight: Option<tokio::task::JoinHandle<(Engine, TickResult)>> = None;
            let mut last_event_at: UnixMillis = 0;
            let mut failed_in_a_row: u32 = 0;
            let mut failure_log = Throttle::new(TICK_FAILURE_LOG_EVERY);
            loop {
                tokio::select! {
                    _ = interval.tick() => {
                        let Some(mut current) = engine.take() else {
                            tracing::warn!("the previous tick is still running: skipping this one");
                            continue;
                        };
                        for command in pending.drain(..) {
                            current.apply(command);
                        }
                        in_flight = Some(tokio::task::spawn_blocking(move || {
                            // A tick that panics loses that tick, not the engine:
                            // its state is plain data, and the next tick reads
                            // everything afresh. Out of descriptors, a tick would
                            // read every target as gone (and feed `down` rules and
                            // automatic restarts with that): it fails instead.
                            let status = match descriptor_exhaustion() {
                                Some(why) => Err(why),
                                None => catch_quietly(|| current.tick()),
                            };
                            (current, status)
                        }));
                    }
                    finished = async {
                        match in_flight.as_mut() {
                            Some(handle) => handle.await,
                            None => std::future::pending().await,
                        }
                    } => {
                        in_flight = None;
                        let (current, status) = match finished {
                            Ok((current, Ok(status))) => {
                                failed_in_a_row = 0;
                                if failure_log.cleared() {
                                    tracing::info!("engine ticks succeed again");
                                }
                                (current, status)
                            }
                            Ok((current, Err(message))) => {
                                failed_in_a_row += 1;
                                if let Some(held_back) = failure_log.occurred() {
                                    tracing::error!(
                                        "an engine tick failed: {message} ({failed_in_a_row} in a \
                                         row{})",
                                        if held_back > 0 {
                                            format!(", {held_back} not logged")
                                        } else {
                                            String::new()
                                        }
                                    );
                                }
                                if failed_in_a_row >= GIVE_UP_AFTER_FAILED_TICKS {
                                    let reason = format!(
                                        "the engine stopped: {failed_in_a_row} ticks in a row \
                                         failed, the last with: {message}"
                                    );
                                    tracing::error!("{reason}");
                                    let _ = failure_tx.send(Some(reason));
                                    engine = Some(current);
                                    break;
                                }
                                engine = Some(current);
                                continue;
                            }
                            Err(error) => {
                                // The blocking task itself could not run (the
                                // runtime is shutting down, or no thread could be
                                // started): the engine's state is gone with it.
                                let reason = format!("the engine stopped: its tick could not run: {error}");
                                tracing::error!("{reason}");
                                let _ = failure_tx.send(Some(reason));
                                break;
                            }
                        };
                        for event in status.recent_events.iter().filter(|e| e.at > last_event_at) {
                            let _ = events.send(event.clone());
                        }
                        // The newest, not the last: a reload's event is logged first
                        // but stamped after the tick's start, and taking the last one's
                        // time would send it again on every tick that follows.
                        last_event_at =
                            status.recent_events.iter().map(|e| e.at).fold(last_event_at, u64::max);
                        let _ = status_tx.send(status);
                        let listen = current.config().metrics.listen;
                        listen_tx.send_if_modified(|old| std::mem::replace(old, listen) != listen);
                        let wanted = current.base_interval();
                        if wanted != period {
                            period = wanted;
                            interval = tokio::time::interval(period);
                            interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
                        }
                        // Someone waits for these: answer now, not a period later.
                        let mut current = current;
                        let (awaited, later): (Vec<Command>, Vec<Command>) =
                            pending.drain(..).partition(Command::awaited);
                        pending = later;
                        for command in awaited {
                            current.apply(command);
                        }
                        engine = Some(current);
                    }
                    command = command_rx.recv() => match command {
                        Some(command) => {
                            if command.ticks_now() {
                                // A tick in flight keeps running; the next one is
                                // due at once instead of a whole period later.
                                interval.reset_immediately();
                            }
                            match engine.as_mut() {
                                Some(current) => current.apply(command),
                                None => pending.push(command),
                            }
                        }
                        None => break,
                    },
                    _ = shutdown_rx.changed() => break,
                }
            }
            // The socket goes while the lock is still held, so no later owner's is removed.
            if let Some((socket, server)) = api {
                server.abort();
                let _ = std::fs::remove_file(socket);
            }
            // Let a running tick finish so its samples reach the store.
            if let Some(handle) = in_flight.take()
                && let Ok(Ok((current, _))) =
                    tokio::time::timeout(Duration::from_secs(10), handle).await
            {
                engine = Some(current);
            }
            // A restart in progress is seen through, so no server is left half-started.
            if let Some(mut current) = engine.take() {
                let finishing = tokio::task::spawn_blocking(move || current.finish());
                let _ = tokio::time::timeout(Duration::from_secs(60), finishing).await;
            }
        });
        EngineHandle {
            status: status_rx,
            events: events_tx,
            commands: command_tx,
            shutdown: shutdown_tx,
            metrics_listen: listen_rx,
            failure: failure_rx,
            owner: watch::channel(None).1,
            task,
        }
    }
}

/// A target as one poll sees it: its config name, the instance (name with `[pid]`
/// when several processes match), and what the poll needs of its config.
#[derive(Debug)]
struct TargetView {
    name: String,
    instance: String,
    /// The `[[watch]]` name; `None` in automatic mode.
    configured: Option<String>,
    /// The pid when it is part of the row's identity (several matches, automatic).
    pid: Option<u32>,
    /// Whether a restart is possible, else why not.
    restart: Result<(), String>,
    selector: String,
    window: Duration,
    fd_limit: Option<u64>,
}

/// The faces' handle on a running engine.
#[derive(Debug)]
pub struct EngineHandle {
    status: watch::Receiver<Arc<Status>>,
    events: broadcast::Sender<Event>,
    commands: mpsc::UnboundedSender<Command>,
    shutdown: watch::Sender<bool>,
    metrics_listen: watch::Receiver<Option<std::net::SocketAddr>>,
    failure: watch::Receiver<Option<String>>,
    /// The engine this handle follows, when another owns the data directory.
    owner: watch::Receiver<Option<crate::owner::Owner>>,
    task: tokio::task::JoinHandle<()>,
}

impl EngineHandle {
    /// The engine whose state this handle shows when it is another process's
    /// (the daemon's, say): `None` while it runs its own engine (or none yet).
    /// Changes when it attaches and when it takes over.
    pub fn attached_to(&self) -> watch::Receiver<Option<crate::owner::Owner>> {
        self.owner.clone()
    }

    /// The latest status, updated after every tick.
    pub fn status(&self) -> watch::Receiver<Arc<Status>> {
        self.status.clone()
    }

    /// Events as they happen.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// The config's `[metrics] listen`, changed when a reload changes it, so the
    /// face serving `/metrics` can move there.
    pub fn metrics_listen(&self) -> watch::Receiver<Option<std::net::SocketAddr>> {
        self.metrics_listen.clone()
    }

    /// Sends a command; it is applied before the next tick.
    pub fn send(&self, command: Command) {
        let _ = self.commands.send(command);
    }

    /// Becomes `Some(why)` when the engine stopped by itself because it cannot go
    /// on ([`GIVE_UP_AFTER_FAILED_TICKS`]). A face should then exit non-zero, so
    /// that launchd or systemd restarts it, rather than live on without an engine.
    pub fn failure(&self) -> watch::Receiver<Option<String>> {
        self.failure.clone()
    }

    /// Stops the loop, waiting for a running tick to be written.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }

    /// Runs the engine `open` returns on the current tokio runtime, calling it
    /// again every `retry` while it fails: the menubar app must come up whatever
    /// the machine's state. Meanwhile the status says why nothing is watched (a
    /// [`Problem`] named after what failed), and commands other than shutdown are dropped
    /// (the next attempt reads the config afresh anyway).
    ///
    /// While another engine owns the data directory ([`EngineError::Locked`]),
    /// the handle attaches to it instead ([`crate::attach`]): its statuses and
    /// events are this handle's, commands go to it through the local API, and
    /// [`EngineHandle::attached_to`] names it. When it goes away, `open` is
    /// called at once and this handle's own engine takes over.
    pub fn spawn_retrying<F>(open: F, retry: Duration) -> EngineHandle
    where
        F: Fn() -> Result<Engine, EngineError> + Send + Sync + 'static,
    {
        let (status_tx, status_rx) = watch::channel(Arc::new(Status::default()));
        let (events_tx, _) = broadcast::channel(256);
        let (command_tx, mut command_rx) = mpsc::unbounded_channel::<Command>();
        let (shutdown_tx, mut shutdown_rx) = watch::channel(false);
        let (listen_tx, listen_rx) = watch::channel(None);
        let (failure_tx, failure_rx) = watch::channel(None::<String>);
        let (owner_tx, owner_rx) = watch::channel(None::<crate::owner::Owner>);
        let events = events_tx.clone();
        let open = Arc::new(open);
        let task = tokio::spawn(async move {
            let engine = loop {
                let attempt = Arc::clone(&open);
                let (what, error) = match tokio::task::spawn_blocking(move || attempt()).await {
                    Ok(Ok(engine)) => {
                        owner_tx.send_replace(None);
                        break engine;
                    }
                    Ok(Err(EngineError::Locked(LockError::Held { dir, owner }))) => {
                        let out = crate::attach::Outputs {
                            status: &status_tx,
                            events: &events,
                            owner: &owner_tx,
                        };
                        let followed = crate::attach::follow_owner(
                            &dir,
                            owner,
                            &out,
                            &mut command_rx,
                            &mut shutdown_rx,
                        )
                        .await;
                        match followed {
                            crate::attach::Detached::Shutdown => return,
                            crate::attach::Detached::Retry => continue,
                        }
                    }
                    Ok(Err(error)) => (error.what(), error.to_string()),
                    Err(panicked) => {
                        ("engine", format!("the engine panicked while starting: {panicked}"))
                    }
                };
                tracing::error!("the engine could not start: {error}");
                let status = Status {
                    at: unix_millis(SystemTime::now()),
                    problems: vec![Problem {
                        what: what.to_owned(),
                        message: format!("watching nothing: {error}"),
                        fix: format!(
                            "Leakwatch retries every {}; see `leakwatch doctor`",
                            humantime::format_duration(retry)
                        ),
                    }],
                    ..Status::default()
                };
                let _ = status_tx.send(Arc::new(status));
                let sleep = tokio::time::sleep(retry);
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        () = &mut sleep => break,
                        _ = shutdown_rx.changed() => return,
                        command = command_rx.recv() => if command.is_none() { return },
                    }
                }
            };
            let inner = engine.spawn();
            let mut statuses = inner.status();
            let mut inner_events = inner.events();
            let mut inner_listen = inner.metrics_listen();
            let _ = listen_tx.send(*inner_listen.borrow_and_update());
            let mut inner_failure = inner.failure();
            loop {
                tokio::select! {
                    changed = inner_failure.changed() => {
                        if changed.is_err() { break }
                        let _ = failure_tx.send(inner_failure.borrow_and_update().clone());
                    }
                    changed = inner_listen.changed() => {
                        if changed.is_err() { break }
                        let _ = listen_tx.send(*inner_listen.borrow_and_update());
                    }
                    changed = statuses.changed() => {
                        if changed.is_err() { break }
                        let status = statuses.borrow_and_update().clone();
                        let _ = status_tx.send(status);
                    }
                    event = inner_events.recv() => match event {
                        Ok(event) => { let _ = events.send(event); }
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                    command = command_rx.recv() => match command {
                        Some(command) => inner.send(command),
                        None => break,
                    },
                    _ = shutdown_rx.changed() => break,
                }
            }
            inner.shutdown().await;
        });
        EngineHandle {
            status: status_rx,
            events: events_tx,
            commands: command_tx,
            shutdown: shutdown_tx,
            metrics_listen: listen_rx,
            failure: failure_rx,
            owner: owner_rx,
            task,
        }
    }
}

/// Fills a new instance's window from the store's samples of `series` inside
/// `window`: a series continued after the app or daemon restarts (the same
/// process, still running) has its slope at the first tick, not a window later.
fn seed_window(
    instance: &mut Instance,
    store: &Store,
    series: SeriesId,
    window: Duration,
    now: UnixMillis,
) {
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    let samples = match store.samples(series, now.saturating_sub(window_ms)) {
        Ok(samples) => samples,
        Err(error) => {
            tracing::warn!("seeding the trend from history: {error}");
            return;
        }
    };
    instance.history.set_window(window);
    for sample in samples.iter().filter(|s| s.at <= now) {
        instance.history.push(sample);
    }
    instance.first = samples.into_iter().next();
}

/// Where a sample stands: [`Reading::AtLimit`] when the table is full,
/// [`Reading::Measuring`] until the window holds a slope.
fn reading_of(sample: &Sample, trend: &Trend) -> Reading {
    if sample.limit.is_some_and(|limit| limit > 0 && sample.total >= limit) {
        Reading::AtLimit
    } else if trend.total_per_hour.is_none() {
        Reading::Measuring
    } else {
        Reading::Measured
    }
}

/// Whether a rule on `metric` keeps its level this tick: a slope or an ETA
/// with no slope to read (a new series, a target down) is unknown, not good
/// news, and a restart is not a recovery.
fn holds_while_measuring(metric: &crate::config::Metric, trend: &Trend) -> bool {
    matches!(metric, crate::config::Metric::Slope | crate::config::Metric::Eta)
        && trend.total_per_hour.is_none()
}

/// Why a process that exists cannot be read, in words ("owned by another
/// user, cannot be read"), rather than the OS error twice over.
fn unreadable_reason(process: &ProcessInfo) -> String {
    #[cfg(unix)]
    let other = process.uid != leakwatch_probe::current_uid();
    #[cfg(not(unix))]
    let other = true;
    if other {
        format!("owned by another user (uid {}), cannot be read", process.uid)
    } else {
        "its descriptors cannot be read (permission denied)".to_owned()
    }
}

/// The limit percentages and the ETA are measured against: the process's own
/// where the OS tells it, else the target's configured `fd_limit`, else unknown
/// (`None`). A platform default (launchd's 256 on macOS, for a process whose own
/// limit cannot be read) is not the process's: Node, Go, the JVM and Chromium
/// raise their own far above it, so rules measured against it would call every
/// big holder critical. Unknown leaves percentage thresholds and the ETA silent,
/// while absolute thresholds and the slope still apply.
pub fn resolve_limit(probed: Option<FdLimit>, configured: Option<u64>) -> Option<FdLimit> {
    let own =
        probed.filter(|l| matches!(l.source, LimitSource::ProcLimits | LimitSource::Getrlimit));
    own.or_else(|| {
        configured.map(|soft| FdLimit {
            soft: Some(soft),
            hard: None,
            source: LimitSource::Configured,
        })
    })
}

/// A tick's status, or what its panic said.
type TickResult = Result<Arc<Status>, String>;

thread_local! {
    /// Set while [`catch_quietly`] runs: a panic then is logged by the engine,
    /// throttled, instead of by the default hook on every tick.
    static CATCHING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Where the last panic caught quietly on this thread happened.
    static CAUGHT_AT: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f`, turning a panic into its message (with where it happened). The
/// default panic hook would print every one, a stack of identical lines per
/// tick when a tick fails for good; the engine logs them itself, throttled.
fn catch_quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CATCHING.with(std::cell::Cell::get) {
                let at = info.location().map(|l| format!("{}:{}", l.file(), l.line()));
                CAUGHT_AT.with(|cell| *cell.borrow_mut() = at);
            } else {
                previous(info);
            }
        }));
    });
    let was = CATCHING.with(|cell| cell.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CATCHING.with(|cell| cell.set(was));
    result.map_err(|panic| {
        let message = panic_message(panic.as_ref());
        match CAUGHT_AT.with(|cell| cell.borrow_mut().take()) {
            Some(at) => format!("{message} (at {at})"),
            None => message,
        }
    })
}

/// The message of a caught panic (a `&str` or `String` payload, as `panic!` makes).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Why this process cannot open a descriptor now (its limit reached, or the
/// system's), or `None` if it can. Checked before every tick by opening one:
/// under exhaustion every pidfile, `/proc` and socket read of the tick would
/// fail, and the tick would take its targets for gone.
pub fn descriptor_exhaustion() -> Option<String> {
    descriptor_exhaustion_of(std::fs::File::open(NULL_DEVICE).map(drop))
}

#[cfg(unix)]
const NULL_DEVICE: &str = "/dev/null";
#[cfg(not(unix))]
const NULL_DEVICE: &str = "NUL";

/// [`descriptor_exhaustion`]'s verdict on one attempt to open a descriptor:
/// only EMFILE and ENFILE mean exhaustion.
fn descriptor_exhaustion_of(opened: std::io::Result<()>) -> Option<String> {
    let error = opened.err()?;
    #[cfg(unix)]
    let exhausted = error.raw_os_error().is_some_and(|code| {
        code == nix::errno::Errno::EMFILE as i32 || code == nix::errno::Errno::ENFILE as i32
    });
    #[cfg(not(unix))]
    let exhausted = false;
    exhausted
        .then(|| format!("the process is out of file descriptors (opening {NULL_DEVICE}: {error})"))
}

/// The file's modification time and length: a cheap "did it change" stamp.
fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notifier::NotifyError;

    /// A notifier whose reactor cannot start, as notify-rust's did when the
    /// process was out of descriptors: it panics.
    #[derive(Debug, Default)]
    struct PanickingNotifier {
        calls: std::sync::atomic::AtomicU64,
    }

    impl Notifier for PanickingNotifier {
        fn notify(&self, _: &Notification) -> Result<(), NotifyError> {
            self.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            panic!("cannot initialize I/O event notification: Too many open files (os error 24)");
        }
    }

    fn limit(soft: u64, source: LimitSource) -> FdLimit {
        FdLimit { soft: Some(soft), hard: None, source }
    }

    fn sample_of(total: u64, limit: Option<u64>) -> Sample {
        Sample {
            at: 0,
            total,
            kinds: BTreeMap::new(),
            limit,
            rss_bytes: None,
            cpu_seconds: None,
            threads: None,
            descendants: 0,
        }
    }

    #[test]
    fn no_slope_is_measuring_a_slope_is_measured_a_full_table_is_at_limit() {
        let none = Trend::default();
        let sloped = Trend { total_per_hour: Some(0.0), ..Trend::default() };
        assert_eq!(reading_of(&sample_of(10, Some(1024)), &none), Reading::Measuring);
        assert_eq!(reading_of(&sample_of(10, Some(1024)), &sloped), Reading::Measured);
        assert_eq!(reading_of(&sample_of(1024, Some(1024)), &none), Reading::AtLimit);
        assert_eq!(reading_of(&sample_of(1024, Some(1024)), &sloped), Reading::AtLimit);
        assert_eq!(reading_of(&sample_of(1024, None), &sloped), Reading::Measured);
    }

    #[test]
    fn slope_and_eta_rules_hold_while_there_is_no_slope() {
        use crate::config::Metric;
        let none = Trend::default();
        let sloped = Trend { total_per_hour: Some(5.0), ..Trend::default() };
        assert!(holds_while_measuring(&Metric::Slope, &none));
        assert!(holds_while_measuring(&Metric::Eta, &none));
        assert!(!holds_while_measuring(&Metric::Fds, &none));
        assert!(!holds_while_measuring(&Metric::Slope, &sloped));
        assert!(!holds_while_measuring(&Metric::Eta, &sloped));
    }

    #[test]
    fn an_unreadable_limit_is_unknown_not_the_platform_default() {
        // What the macOS probe answers for another process: launchd's default.
        let assumed = Some(limit(256, LimitSource::LaunchdDefault));
        assert_eq!(resolve_limit(assumed, None), None);
        assert_eq!(resolve_limit(None, None), None);
    }

    #[test]
    fn a_configured_fd_limit_stands_in_for_an_unknown_one() {
        let assumed = Some(limit(256, LimitSource::LaunchdDefault));
        assert_eq!(
            resolve_limit(assumed, Some(10_240)),
            Some(limit(10_240, LimitSource::Configured))
        );
    }

    #[test]
    fn the_process_own_limit_wins_over_a_configured_one() {
        let own = Some(limit(65_536, LimitSource::ProcLimits));
        assert_eq!(resolve_limit(own, Some(1024)), own);
        let own = Some(limit(4096, LimitSource::Getrlimit));
        assert_eq!(resolve_limit(own, None), own);
    }

    /// An engine in `dir` watching one target whose pidfile names no process, so
    /// its `down` rule raises (and notifies) within a few ticks.
    fn down_target_engine(dir: &Path, notifier: Arc<dyn Notifier>) -> Engine {
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[notify]\nenabled = true\n\n[[watch]]\nname = \"gone\"\npidfile = '{}'\n",
                dir.join("missing.pid").display()
            ),
        )
        .expect("config");
        Engine::new(EngineOptions {
            config: ConfigSource::Named(config),
            store_path: Some(dir.join("data/history.sqlite3")),
            notifier,
            interval: Some(Duration::from_millis(20)),
        })
        .expect("engine")
    }

    /// Waits (generously) until the status satisfies `done`.
    async fn status_until(
        status: &mut watch::Receiver<Arc<Status>>,
        done: impl Fn(&Status) -> bool,
    ) -> Arc<Status> {
        tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let current = status.borrow_and_update().clone();
                if done(&current) {
                    return current;
                }
                status.changed().await.expect("the engine stopped");
            }
        })
        .await
        .expect("status within 60 s")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_notifier_never_stops_the_engine() {
        let dir = tempfile::tempdir().expect("tempdir");
        let notifier = Arc::new(PanickingNotifier::default());
        let handle = down_target_engine(dir.path(), notifier.clone()).spawn();
        let mut status = handle.status();
        // The `down` rule raising (not the row, which is critical at once).
        let raised = status_until(&mut status, |s| {
            s.targets.iter().any(|t| t.rules.iter().any(|r| r.severity > Severity::Ok))
        })
        .await;
        // The notification that panicked was the raise's; ticks go on after it.
        assert!(notifier.calls.load(std::sync::atomic::Ordering::Relaxed) >= 1);
        let later = status_until(&mut status, |s| s.tick >= raised.tick + 5).await;
        assert!(later.targets.iter().any(|t| t.name == "gone"));
        assert_eq!(*handle.failure().borrow(), None);
        handle.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_tick_is_survived_and_the_next_one_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut engine = down_target_engine(dir.path(), Arc::new(crate::notifier::NullNotifier));
        engine.fail_ticks = 3;
        let handle = engine.spawn();
        let mut status = handle.status();
        let ticked = status_until(&mut status, |s| s.tick >= 3).await;
        assert!(ticked.targets.iter().any(|t| t.name == "gone"));
        assert_eq!(*handle.failure().borrow(), None);
        handle.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ticks_that_keep_failing_stop_the_engine_and_say_why() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut engine = down_target_engine(dir.path(), Arc::new(crate::notifier::NullNotifier));
        engine.fail_ticks = u32::MAX;
        let handle = engine.spawn();
        let mut failure = handle.failure();
        let reason = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                if let Some(reason) = failure.borrow_and_update().clone() {
                    return reason;
                }
                failure.changed().await.expect("the engine ended without saying why");
            }
        })
        .await
        .expect("the engine gave up within 60 s");
        assert!(
            reason.contains(&format!("{GIVE_UP_AFTER_FAILED_TICKS} ticks in a row failed"))
                && reason.contains("test fault"),
            "{reason}"
        );
        // The status channel closes with it: a face waiting on it is not left hanging.
        let mut status = handle.status();
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            while status.changed().await.is_ok() {}
        })
        .await;
        assert!(closed.is_ok(), "the status channel stayed open");
        handle.shutdown().await;
    }

    /// Regression (issue 10): a pidfile read that timed out (a hung mount) was
    /// taken for the target being down, which fed the `down` rule and automatic
    /// restarts. It is unknown: shown on the row, acted on by nothing.
    #[test]
    fn timed_out_pidfile_read_is_unknown_never_down_nor_restarted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.toml");
        // `.hung`: the crate's test reader never returns from it.
        let pidfile = dir.path().join("app.pid.hung");
        std::fs::write(
            &config,
            format!(
                "[notify]\nenabled = false\n\n[[watch]]\nname = \"stuck\"\npidfile = '{}'\n\n\
                 [watch.rules]\ndown = {{ critical = true, samples = 1 }}\n\n\
                 [watch.restart]\ncommand = [\"true\"]\n\n[watch.auto_restart]\non = \"warning\"\n",
                pidfile.display()
            ),
        )
        .expect("config");
        let mut engine = Engine::new(EngineOptions {
            config: ConfigSource::Named(config),
            store_path: None,
            notifier: Arc::new(crate::notifier::NullNotifier),
            interval: Some(Duration::from_millis(20)),
        })
        .expect("engine");
        let mut events = Vec::new();
        let mut status = engine.tick();
        for _ in 0..5 {
            events.extend(status.recent_events.iter().cloned());
            std::thread::sleep(Duration::from_millis(30));
            status = engine.tick();
        }
        engine.finish();
        let row = status.targets.iter().find(|t| t.name == "stuck").expect("a row for it");
        let TargetState::Unknown(why) = &row.state else {
            panic!("not unknown: {:?}", row.state);
        };
        assert!(why.contains("timed out") && why.contains("app.pid.hung"), "{why}");
        assert_eq!(row.severity, Severity::Ok);
        assert!(
            events.iter().all(|e| e.rule.as_deref() != Some("down")),
            "the down rule was fed: {events:#?}"
        );
        assert!(status.restarts.get("stuck").is_none_or(|n| *n == 0), "{:?}", status.restarts);
        assert!(
            !events.iter().any(|e| e.message.contains("restart")),
            "a restart followed: {events:#?}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn descriptor_exhaustion_fails_the_tick_only_on_emfile_or_enfile() {
        assert_eq!(descriptor_exhaustion(), None, "this test process has descriptors left");
        let emfile = descriptor_exhaustion_of(Err(std::io::Error::from_raw_os_error(
            nix::errno::Errno::EMFILE as i32,
        )))
        .expect("EMFILE is exhaustion");
        assert!(emfile.contains("out of file descriptors"), "{emfile}");
        assert!(emfile.contains("os error"), "{emfile}");
        assert!(
            descriptor_exhaustion_of(Err(std::io::Error::from_raw_os_error(
                nix::errno::Errno::ENFILE as i32
            )))
            .is_some()
        );
        let other = std::io::Error::from_raw_os_error(nix::errno::Errno::ENOENT as i32);
        assert_eq!(descriptor_exhaustion_of(Err(other)), None);
        assert_eq!(descriptor_exhaustion_of(Ok(())), None);
    }

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
