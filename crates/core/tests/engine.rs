//! The watch engine against real processes (`lw-helper`), ticked by hand the way the
//! CLI, the daemon and the app drive it. Ticks run on a [`Clock`] the tests move
//! ([`Engine::tick_at`]): a leak is so many descriptors opened per tick of so
//! much simulated time, so rates, windows, samples and reuse ages are exact and
//! nothing sleeps but the one test of what runs on the real clock (a port's owner
//! re-verified). Each test proves one promise of DESIGN.md:
//!
//! - a steady leak is measured: the Theil–Sen slope (total and per kind) is within
//!   10 % of the rate the helper really leaks at, and the ETA is the limit's distance
//!   divided by that slope;
//! - a rule beyond its threshold raises one event and one notification, not one per
//!   tick, and clears once when the leak is closed;
//! - a restart (a new pid in the pidfile) starts a new series, and the target being
//!   down in between raises and clears the built-in `down` rule; a zombie counts as
//!   down, not as a process with no descriptors;
//! - a bad config on reload is reported once, naming file, line and key, while the
//!   last good config keeps watching; fixing the file reloads it;
//! - with no targets configured the engine watches the user's top descriptor
//!   holders, never itself;
//! - the async loop (`Engine::spawn`) publishes statuses, broadcasts each event
//!   once, stops promptly and leaves its samples in the store;
//! - a `port` target follows a launcher that double-forks to the grandchild that
//!   holds the port.
//!
//! Every helper is SIGKILLed with its process group (and any double-forked pid) when
//! its `Helper` drops, so a failing test leaves nothing behind.
#![cfg(target_os = "linux")]
// The helpers below unwrap too: in a test, a panic is the failure report we want.
#![allow(clippy::unwrap_used)]

use leakwatch_core::engine::{Command, Engine, EngineOptions};
use leakwatch_core::model::{Event, EventKind, Severity, UnixMillis, unix_millis};
use leakwatch_core::notifier::CapturingNotifier;
use leakwatch_core::status::{Reading, Status, TargetState, TargetStatus};
use leakwatch_core::store::Store;
use leakwatch_probe::{FdKind, Probe};
use leakwatch_test_helper::{Helper, wait_until};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tempfile::TempDir;

/// A config file, a store and a capturing notifier in a fresh temporary directory.
struct Fixture {
    dir: TempDir,
    notifier: Arc<CapturingNotifier>,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture { dir: TempDir::new().unwrap(), notifier: Arc::new(CapturingNotifier::default()) }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    fn store_path(&self) -> PathBuf {
        self.dir.path().join("history.db")
    }

    /// Replaces the config file atomically, as editors do: a running engine never
    /// reads half a file.
    fn write_config(&self, text: &str) {
        let tmp = self.dir.path().join("config.toml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.config_path()).unwrap();
    }

    /// Writes `pid` to `NAME.pid` atomically (a reader never sees half a file);
    /// returns the path.
    fn write_pidfile(&self, name: &str, pid: u32) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.pid"));
        let tmp = self.dir.path().join(format!("{name}.pid.tmp"));
        std::fs::write(&tmp, format!("{pid}\n")).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        path
    }

    fn engine(&self, interval: Option<Duration>) -> Engine {
        Engine::new(EngineOptions {
            config: leakwatch_core::ConfigSource::Named(self.config_path()),
            store_path: Some(self.store_path()),
            notifier: self.notifier.clone(),
            interval,
        })
        .unwrap()
    }

    /// The event log of `target` as the engine wrote it to the store.
    fn events(&self, target: &str) -> Vec<Event> {
        Store::open_read_only(&self.store_path()).unwrap().events(Some(target), 0).unwrap()
    }
}

/// One `[[watch]]` table found by a pidfile, polled every 100 ms, with extra lines.
fn pidfile_target(name: &str, pidfile: &Path, extra: &str) -> String {
    format!(
        "[[watch]]\nname = \"{name}\"\npidfile = '{}'\ninterval = \"100ms\"\n{extra}",
        pidfile.display()
    )
}

/// The status row called `name`.
#[track_caller]
fn row<'a>(status: &'a Status, name: &str) -> &'a TargetStatus {
    status
        .targets
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no target {name} in {:#?}", status.targets))
}

/// Descriptors `pid` has open, read from /proc as Leakwatch would not: the truth.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

/// The state letter of `pid` in /proc/PID/stat (`R`, `S`, `Z`, ...).
fn proc_state(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].split_whitespace().next().map(str::to_owned)
}

/// The tests' clock for [`Engine::tick_at`]. It starts at the real time (so
/// the store's retention keeps what the tests write) and moves only when a test
/// moves it.
struct Clock(UnixMillis);

impl Clock {
    fn new() -> Clock {
        Clock(unix_millis(SystemTime::now()))
    }

    fn now(&self) -> UnixMillis {
        self.0
    }

    /// Moves the clock on by `by`, then ticks `engine` at the new time.
    fn tick(&mut self, engine: &mut Engine, by: Duration) -> Arc<Status> {
        self.0 += u64::try_from(by.as_millis()).unwrap();
        engine.tick_at(self.0)
    }
}

/// Ticks `engine` every `every` of the clock until `done` holds for a status, at
/// most `limit` ticks; returns that status.
#[track_caller]
fn tick_until(
    engine: &mut Engine,
    clock: &mut Clock,
    every: Duration,
    limit: usize,
    mut done: impl FnMut(&Status) -> bool,
) -> Arc<Status> {
    for _ in 0..limit {
        let status = clock.tick(engine, every);
        if done(&status) {
            return status;
        }
    }
    panic!("condition not reached within {limit} ticks");
}

/// Ticks `n` times (at least once), `every` of the clock apart; returns the
/// last status.
fn tick_n(engine: &mut Engine, clock: &mut Clock, every: Duration, n: usize) -> Arc<Status> {
    let mut last = clock.tick(engine, every);
    for _ in 1..n {
        last = clock.tick(engine, every);
    }
    last
}

/// [`tick_until`] with `helper` told `command` before each tick: a leak of so
/// many descriptors per tick.
#[track_caller]
fn leak_until(
    engine: &mut Engine,
    clock: &mut Clock,
    helper: &mut Helper,
    command: &str,
    limit: usize,
    mut done: impl FnMut(&Status) -> bool,
) -> Arc<Status> {
    for _ in 0..limit {
        helper.ok(command);
        let status = clock.tick(engine, TICK);
        if done(&status) {
            return status;
        }
    }
    panic!("condition not reached within {limit} ticks of {command}");
}

fn count_events(events: &[Event], kind: EventKind, rule: Option<&str>) -> usize {
    events.iter().filter(|e| e.kind == kind && e.rule.as_deref() == rule).count()
}

const TICK: Duration = Duration::from_millis(100);

#[test]
fn a_steady_leak_is_measured_within_ten_percent() {
    let fx = Fixture::new();
    let mut helper = Helper::spawn().unwrap();
    let pid = helper.pid();
    let pidfile = fx.write_pidfile("leaky", pid);
    // window/4 = 1 s is the fit's minimum span, so 6 s of ticks give a slope.
    fx.write_config(&pidfile_target("leaky", &pidfile, "window = \"4s\"\n"));
    let mut engine = fx.engine(None);
    let mut clock = Clock::new();
    let first = clock.tick(&mut engine, TICK);
    assert_eq!(row(&first, "leaky").state, TargetState::Up);

    // One epoll per 100 ms tick: 36,000/h, the rate `leak epoll 100` leaked at
    // in real time.
    let (start, start_fds) = (clock.now(), open_fds(pid));
    let mut status = first;
    for _ in 0..60 {
        helper.ok("open epoll 1");
        status = clock.tick(&mut engine, TICK);
    }
    let elapsed = Duration::from_millis(clock.now() - start);
    let end_fds = open_fds(pid);

    let leaked = end_fds - start_fds;
    assert_eq!(leaked, 60, "the helper opened {leaked} epolls");
    let true_per_hour = leaked as f64 / elapsed.as_secs_f64() * 3600.0;
    let target = row(&status, "leaky");
    eprintln!(
        "true rate {true_per_hour:.0}/h ({leaked} epolls in {elapsed:?}); slope {:?}/h, epoll \
         {:?}/h, ETA {:?} s",
        target.slope_per_hour,
        target.kind_slopes_per_hour.get(&FdKind::Epoll),
        target.eta_seconds
    );
    let within = |what: &str, measured: f64| {
        let error = (measured - true_per_hour).abs() / true_per_hour;
        assert!(
            error <= 0.10,
            "{what}: {measured:.0}/h against a true {true_per_hour:.0}/h ({leaked} epolls in \
             {elapsed:?}): off by {:.1} %",
            error * 100.0
        );
    };
    within("total slope", target.slope_per_hour.expect("a total slope"));
    within(
        "epoll slope",
        *target.kind_slopes_per_hour.get(&FdKind::Epoll).expect("an epoll slope"),
    );

    // The ETA is the distance to the soft limit at the total slope, when within the
    // 30 days the trend reports.
    let sample = target.sample.as_ref().expect("a sample");
    let limit = sample.limit.expect("/proc/PID/limits gives the soft limit");
    let slope = target.slope_per_hour.unwrap_or_default();
    let expected = limit.saturating_sub(sample.total) as f64 / slope * 3600.0;
    if expected <= 30.0 * 24.0 * 3600.0 {
        let eta = target.eta_seconds.expect("an ETA");
        assert!(
            (eta - expected).abs() <= expected * 0.01 + 1.0,
            "ETA {eta:.0} s, expected (limit {limit} - total {}) / {slope:.0}/h = {expected:.0} s",
            sample.total
        );
    } else {
        assert_eq!(target.eta_seconds, None, "an ETA beyond 30 days is not reported");
    }
}

#[test]
fn a_rule_raises_once_and_clears_once() {
    let fx = Fixture::new();
    let mut helper = Helper::spawn().unwrap();
    let pidfile = fx.write_pidfile("alerting", helper.pid());
    let rules = "[watch.rules]\nepoll = { warn = 20, samples = 2 }\nfds = false\neta = false\n";
    fx.write_config(&pidfile_target("alerting", &pidfile, rules));
    let mut engine = fx.engine(None);
    let mut clock = Clock::new();
    clock.tick(&mut engine, TICK);

    let epoll_level = |status: &Status| {
        row(status, "alerting").rules.iter().find(|r| r.metric == "epoll").unwrap().severity
    };
    let mut leaking = |engine: &mut Engine, clock: &mut Clock| {
        helper.ok("open epoll 5");
        clock.tick(engine, TICK)
    };
    let mut raised = None;
    for _ in 0..100 {
        let status = leaking(&mut engine, &mut clock);
        if epoll_level(&status) == Severity::Warning {
            raised = Some(status);
            break;
        }
    }
    assert!(raised.is_some(), "the epoll rule never raised");
    // Many more ticks beyond the threshold, still leaking: no more events.
    let mut status = raised.unwrap();
    for _ in 0..20 {
        status = leaking(&mut engine, &mut clock);
    }
    let sample = row(&status, "alerting").sample.clone().unwrap();
    assert!(sample.kind(FdKind::Epoll) >= 40, "{sample:?}");
    assert_eq!(epoll_level(&status), Severity::Warning);

    let events = fx.events("alerting");
    assert_eq!(count_events(&events, EventKind::Raised, Some("epoll")), 1, "{events:#?}");
    let sent = fx.notifier.sent();
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert!(sent[0].body.contains("epoll"), "{sent:#?}");
    assert_eq!(sent[0].severity, Severity::Warning);
    assert_eq!(sent[0].subject, Some(leakwatch_core::model::Subject::target("alerting")));

    helper.ok("close epoll all");
    tick_until(&mut engine, &mut clock, TICK, 100, |s| epoll_level(s) == Severity::Ok);
    let status = tick_n(&mut engine, &mut clock, TICK, 10);
    assert_eq!(epoll_level(&status), Severity::Ok);
    assert_eq!(row(&status, "alerting").sample.as_ref().unwrap().kind(FdKind::Epoll), 0);

    let events = fx.events("alerting");
    assert_eq!(count_events(&events, EventKind::Raised, Some("epoll")), 1, "{events:#?}");
    assert_eq!(count_events(&events, EventKind::Cleared, Some("epoll")), 1, "{events:#?}");
    // Nothing else fired: one series, one raise, one clear.
    assert_eq!(events.len(), 3, "{events:#?}");
    let sent = fx.notifier.sent();
    assert_eq!(sent.len(), 2, "the clear of a notified raise is notified: {sent:#?}");
    assert_eq!(sent[1].severity, Severity::Ok);
}

#[test]
fn a_restart_splits_the_series_and_down_raises_and_clears() {
    let fx = Fixture::new();
    let mut first = Helper::spawn().unwrap();
    let pidfile = fx.write_pidfile("server", first.pid());
    fx.write_config(&pidfile_target("server", &pidfile, ""));
    let mut engine = fx.engine(None);
    let mut clock = Clock::new();
    let status = tick_n(&mut engine, &mut clock, TICK, 3);
    let watched = row(&status, "server").process.clone().unwrap();
    assert_eq!(watched.id.pid, first.pid());

    // Down: the pidfile names a dead process. `down` (critical, 2 samples) raises.
    first.kill();
    let status = tick_until(&mut engine, &mut clock, TICK, 50, |s| {
        row(s, "server").rules.iter().any(|r| r.metric == "down" && r.severity > Severity::Ok)
    });
    let target = row(&status, "server");
    assert!(matches!(target.state, TargetState::Down(_)), "{:?}", target.state);
    assert_eq!(target.severity, Severity::Critical);
    tick_n(&mut engine, &mut clock, TICK, 3);
    let events = fx.events("server");
    assert_eq!(count_events(&events, EventKind::Raised, Some("down")), 1, "{events:#?}");

    // Up again as a new process: a new series, and `down` clears.
    let mut second = Helper::spawn().unwrap();
    fx.write_pidfile("server", second.pid());
    let status = tick_until(&mut engine, &mut clock, TICK, 50, |s| {
        row(s, "server").rules.iter().any(|r| r.metric == "down" && r.severity == Severity::Ok)
    });
    let target = row(&status, "server");
    assert_eq!(target.state, TargetState::Up);
    assert_eq!(target.process.as_ref().unwrap().id.pid, second.pid());

    let events = fx.events("server");
    let started: Vec<&Event> =
        events.iter().filter(|e| e.kind == EventKind::SeriesStarted).collect();
    assert_eq!(started.len(), 2, "{events:#?}");
    assert_eq!(started[1].pid, Some(second.pid()));
    assert!(started[1].message.contains(&second.pid().to_string()), "{started:#?}");
    assert_eq!(count_events(&events, EventKind::Cleared, Some("down")), 1, "{events:#?}");
    let cleared = events.iter().find(|e| e.kind == EventKind::Cleared).unwrap();
    assert!(cleared.message.contains("running again"), "{cleared:#?}");

    let store = Store::open_read_only(&fx.store_path()).unwrap();
    let series = store.series("server").unwrap();
    assert_eq!(series.len(), 2, "{series:#?}");
    assert_eq!(series[0].process, watched.id);
    assert!(series[0].ended_at.is_some(), "{series:#?}");
    assert_eq!(series[1].process.pid, second.pid());
    assert_eq!(series[1].ended_at, None);
    assert!(!store.samples(series[0].id, 0).unwrap().is_empty());
    assert!(!store.samples(series[1].id, 0).unwrap().is_empty());

    // A restart with no downtime seen: the new series names the old pid too.
    let third = Helper::spawn().unwrap();
    fx.write_pidfile("server", third.pid());
    second.kill();
    tick_n(&mut engine, &mut clock, TICK, 2);
    let events = fx.events("server");
    let restarted = events.iter().rfind(|e| e.kind == EventKind::SeriesStarted).unwrap();
    assert_eq!(restarted.pid, Some(third.pid()));
    assert!(
        restarted.message.contains(&format!("now pid {} (was pid {})", third.pid(), second.pid())),
        "{restarted:#?}"
    );
    let series = store.series("server").unwrap();
    assert_eq!(series.len(), 3, "{series:#?}");
    assert!(series[1].ended_at.is_some() && series[2].ended_at.is_none(), "{series:#?}");
    assert_eq!(count_events(&events, EventKind::Raised, Some("down")), 1, "{events:#?}");
}

#[test]
fn a_zombie_target_is_down() {
    let fx = Fixture::new();
    let helper = Helper::spawn().unwrap();
    let pid = helper.pid();
    let pidfile = fx.write_pidfile("undead", pid);
    fx.write_config(&pidfile_target("undead", &pidfile, ""));
    let mut engine = fx.engine(None);
    let mut clock = Clock::new();
    let status = tick_n(&mut engine, &mut clock, TICK, 2);
    assert_eq!(row(&status, "undead").state, TargetState::Up);

    // SIGKILL without reaping: the helper stays a zombie, as under a parent that does
    // not wait. A zombie serves nothing; it must not show as up with no descriptors.
    helper.signal(9).unwrap();
    assert!(wait_until(Duration::from_secs(10), || proc_state(pid).as_deref() == Some("Z")));
    let status = tick_until(&mut engine, &mut clock, TICK, 50, |s| {
        row(s, "undead").rules.iter().any(|r| r.metric == "down" && r.severity > Severity::Ok)
    });
    assert!(matches!(row(&status, "undead").state, TargetState::Down(_)));
    assert_eq!(proc_state(pid).as_deref(), Some("Z"), "still a zombie while down");
    let store = Store::open_read_only(&fx.store_path()).unwrap();
    let series = store.series("undead").unwrap();
    assert!(series.iter().all(|s| s.ended_at.is_some()), "{series:#?}");
    drop(helper);
}

#[test]
fn a_bad_config_is_reported_once_and_the_last_good_one_keeps_watching() {
    let fx = Fixture::new();
    let helper = Helper::spawn().unwrap();
    let pidfile = fx.write_pidfile("steady", helper.pid());
    let good = pidfile_target("steady", &pidfile, "");
    fx.write_config(&good);
    let mut engine = fx.engine(None);
    let mut clock = Clock::new();
    let status = tick_n(&mut engine, &mut clock, TICK, 2);
    assert_eq!(status.config.error, None);
    let before = row(&status, "steady").sample.clone().unwrap();

    // Line 4 is `interval`; the bad file also renames the target, which must not
    // take effect.
    let bad = good.replace("\"100ms\"", "\"2x\"").replace("steady", "renamed");
    assert!(bad.lines().nth(3).unwrap().starts_with("interval = \"2x\""), "{bad}");
    fx.write_config(&bad);
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(clock.tick(&mut engine, TICK));
    }
    let config_file = fx.config_path().display().to_string();
    for status in &statuses {
        let error = status.config.error.as_deref().expect("the error is shown");
        assert!(error.contains(&format!("{config_file}:4:")), "{error}");
        assert!(error.contains("watch[0].interval"), "{error}");
        assert!(error.contains("\"2x\""), "{error}");
        let target = row(status, "steady");
        assert_eq!(target.state, TargetState::Up);
        assert!(status.targets.iter().all(|t| t.name != "renamed"));
    }
    let after = row(statuses.last().unwrap(), "steady").sample.clone().unwrap();
    assert!(after.at > before.at, "still sampled under the old config");
    let events = fx.events("leakwatch");
    assert_eq!(count_events(&events, EventKind::ConfigError, None), 1, "{events:#?}");
    let error = events.iter().find(|e| e.kind == EventKind::ConfigError).unwrap();
    assert!(error.message.contains("watch[0].interval"), "{error:#?}");

    // Fixed (with a second target this time): reloaded once, error gone.
    fx.write_config(&format!("{good}\n{}", pidfile_target("second", &pidfile, "")));
    let status = clock.tick(&mut engine, TICK);
    assert_eq!(status.config.error, None);
    assert_eq!(row(&status, "second").state, TargetState::Up);
    tick_n(&mut engine, &mut clock, TICK, 3);
    let events = fx.events("leakwatch");
    assert_eq!(count_events(&events, EventKind::ConfigError, None), 1, "{events:#?}");
    assert_eq!(count_events(&events, EventKind::ConfigReloaded, None), 1, "{events:#?}");
}

#[test]
fn automatic_mode_watches_the_top_descriptor_holders_but_not_itself() {
    let fx = Fixture::new();
    // issue 12: automatic mode leaves out Leakwatch's own processes and their
    // descendants, and this test process runs the engine: the holder to list is
    // detached (not our child), and a child of ours holding more is left out.
    let helper = Detached::spawn("open eventfd 500", 500);
    let mut child = Helper::spawn().unwrap();
    child.ok("open eventfd 600");
    fx.write_config("");
    let mut engine = fx.engine(None);
    let mut clock = Clock::new();
    let status = clock.tick(&mut engine, TICK);
    assert!(status.config.automatic);
    let name = format!("lw-helper[{}]", helper.pid());
    let target = row(&status, &name);
    assert_eq!(target.state, TargetState::Up);
    assert_eq!(target.process.as_ref().unwrap().id.pid, helper.pid());
    let sample = target.sample.as_ref().unwrap();
    assert!(sample.kind(FdKind::Eventfd) >= 500, "{sample:?}");
    assert!(status.targets.len() <= 10, "{} targets", status.targets.len());
    let own = std::process::id();
    for target in &status.targets {
        assert_ne!(target.process.as_ref().map(|p| p.id.pid), Some(own), "{target:#?}");
        assert!(!target.name.ends_with(&format!("[{own}]")), "{}", target.name);
        assert_ne!(target.process.as_ref().map(|p| p.id.pid), Some(child.pid()), "{target:#?}");
    }
}

/// An lw-helper that is not a descendant of this process: started by a shell
/// that exits at once, so it is reparented (to init or a subreaper above us).
/// `command` runs at its start (it is ready once it holds `fds` descriptors);
/// dropping it SIGKILLs it.
struct Detached(u32);

impl Detached {
    fn spawn(command: &str, fds: usize) -> Detached {
        let helper = leakwatch_test_helper::helper_binary();
        let script = format!(
            "'{}' --stay --exec '{command}' </dev/null >/dev/null 2>&1 & echo $!",
            helper.display()
        );
        let out = std::process::Command::new("sh").args(["-c", &script]).output().unwrap();
        let pid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let detached = Detached(pid);
        let dir = Path::new("/proc").join(pid.to_string()).join("fd");
        let ready = wait_until(Duration::from_secs(20), || {
            std::fs::read_dir(&dir).is_ok_and(|d| d.count() >= fds)
        });
        assert!(ready, "the detached helper {pid} did not run `{command}`");
        detached
    }

    fn pid(&self) -> u32 {
        self.0
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").args(["-9", &self.0.to_string()]).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spawned_loop_publishes_statuses_and_stops_promptly() {
    let fx = Fixture::new();
    let helper = Helper::spawn().unwrap();
    let pidfile = fx.write_pidfile("looped", helper.pid());
    fx.write_config(&pidfile_target("looped", &pidfile, ""));
    let engine = fx.engine(Some(TICK));
    let handle = engine.spawn();
    let mut statuses = handle.status();
    let mut events = handle.events();

    let mut up_ticks = Vec::new();
    let mut status = statuses.borrow().clone();
    while up_ticks.len() < 5 {
        tokio::time::timeout(Duration::from_secs(10), statuses.changed())
            .await
            .expect("a status within 10 s")
            .unwrap();
        status = statuses.borrow_and_update().clone();
        if status.targets.iter().any(|t| t.name == "looped" && t.state == TargetState::Up) {
            up_ticks.push(status.tick);
        }
    }
    assert!(up_ticks.windows(2).all(|w| w[0] < w[1]), "{up_ticks:?}");
    // The first tick may have run before `events()` subscribed: its event is in the
    // status's recent events either way.
    let started = status.recent_events.iter().find(|e| e.kind == EventKind::SeriesStarted);
    assert_eq!(started.and_then(|e| e.pid), Some(helper.pid()), "{:#?}", status.recent_events);

    // A reload that adds a target: each event is broadcast once, also when the
    // reload's event is stamped a millisecond after the tick's own events.
    let text = std::fs::read_to_string(fx.config_path()).unwrap();
    fx.write_config(&format!("{text}\n{}", pidfile_target("added", &pidfile, "")));
    loop {
        tokio::time::timeout(Duration::from_secs(10), statuses.changed())
            .await
            .expect("a status within 10 s")
            .unwrap();
        let status = statuses.borrow_and_update().clone();
        if status.targets.iter().any(|t| t.name == "added") {
            break;
        }
    }
    for _ in 0..3 {
        tokio::time::timeout(Duration::from_secs(10), statuses.changed()).await.unwrap().unwrap();
    }
    let mut received = Vec::new();
    while let Ok(tick) = events.try_recv() {
        received.extend(tick.iter().cloned());
    }
    let mut kinds: Vec<(EventKind, String)> =
        received.iter().map(|e| (e.kind, e.subject.to_string())).collect();
    // The first tick's event, if it came after the subscription.
    if kinds.first() == Some(&(EventKind::SeriesStarted, "looped".to_owned())) {
        kinds.remove(0);
    }
    assert_eq!(
        kinds,
        [
            (EventKind::ConfigReloaded, "leakwatch".to_owned()),
            (EventKind::SeriesStarted, "added".to_owned())
        ],
        "{received:#?}"
    );

    // A hang guard, not a speed test: a loaded machine may take its time.
    tokio::time::timeout(Duration::from_secs(60), handle.shutdown())
        .await
        .expect("shutdown within 60 s");

    let store = Store::open_read_only(&fx.store_path()).unwrap();
    let series = store.series("looped").unwrap();
    assert_eq!(series.len(), 1, "{series:#?}");
    let samples = store.samples(series[0].id, 0).unwrap();
    assert!(samples.len() >= up_ticks.len(), "{} samples for {up_ticks:?}", samples.len());
}

#[test]
fn a_port_target_follows_a_double_forking_launcher() {
    let fx = Fixture::new();
    let mut launcher = Helper::spawn().unwrap();
    let reply = launcher.ok("double-fork tcp-listen 0");
    let grandchild: u32 = reply[0].parse().unwrap();
    let port: u16 = reply[1].parse().unwrap();
    assert_ne!(port, 0);
    fx.write_config(&format!(
        "[[watch]]\nname = \"daemon\"\nport = {port}\ninterval = \"100ms\"\n"
    ));
    let mut engine = fx.engine(None);
    let mut clock = Clock::new();
    let status = tick_n(&mut engine, &mut clock, TICK, 2);
    let target = row(&status, "daemon");
    assert_eq!(target.state, TargetState::Up, "{target:#?}");
    let process = target.process.as_ref().unwrap();
    assert_eq!(process.id.pid, grandchild);
    assert_ne!(process.id.pid, launcher.pid());
    assert!(target.sample.as_ref().unwrap().kind(FdKind::Tcp) >= 1);
}

#[test]
fn a_port_owner_that_stops_listening_is_let_go_within_the_verify_time() {
    let fx = Fixture::new();
    let mut server = Helper::spawn().unwrap();
    server.ok("open tcp-listen 1");
    let table = Probe::new().unwrap().fd_table(server.pid()).unwrap();
    let port = table
        .fds
        .iter()
        .filter_map(|fd| fd.endpoint.as_deref())
        .find_map(leakwatch_core::actions::locate::listening_port)
        .unwrap_or_else(|| panic!("no listener in {table:#?}"));
    fx.write_config(&format!(
        "[[watch]]\nname = \"server\"\nport = {port}\ninterval = \"100ms\"\n"
    ));
    let mut engine = fx.engine(None);
    let status = engine.tick();
    assert_eq!(row(&status, "server").state, TargetState::Up);
    // The process lives on without its listener: it no longer owns the port. Between
    // checks (10 s apart) an unchanged identity is trusted; before the fix for this
    // test, every trusted tick also postponed the next check, so none ever came.
    server.ok("close tcp-listen 1");
    // The owner of a port is re-verified on the real clock (the port memo of
    // `actions::locate`), so this test ticks in real time. Ticks at least 500 ms
    // apart must see it within 30: a loaded machine only spaces them further.
    let mut ticks = 0;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        ticks += 1;
        if matches!(row(&engine.tick(), "server").state, TargetState::Down(_)) {
            break;
        }
        assert!(ticks < 30, "still up after {ticks} ticks 500 ms apart");
    }
}

#[test]
fn a_descriptor_swapped_for_another_kind_shows_within_the_reuse_age() {
    let fx = Fixture::new();
    let mut h = Helper::spawn().unwrap();
    h.ok("open epoll 2");
    let pidfile = fx.dir.path().join("swap.pid");
    std::fs::write(&pidfile, h.pid().to_string()).unwrap();
    fx.write_config(&pidfile_target("swap", &pidfile, ""));
    let mut engine = fx.engine(Some(TICK));
    let mut clock = Clock::new();
    let status = tick_n(&mut engine, &mut clock, TICK, 2);
    let before = row(&status, "swap").sample.clone().unwrap();
    assert_eq!(before.kind(FdKind::Epoll), 2);
    // A count that moves is read by kind at once...
    h.ok("open eventfd 1");
    let status = clock.tick(&mut engine, TICK);
    let sample = row(&status, "swap").sample.clone().unwrap();
    assert_eq!((sample.total, sample.kind(FdKind::Eventfd)), (before.total + 1, 1));
    // ...one swapped at the same count (the engine reuses the last read by kind
    // while the count stands still) within 10 s.
    h.ok("close epoll 1");
    h.ok("open timerfd 1");
    let read_at = clock.now();
    let status = tick_until(&mut engine, &mut clock, Duration::from_secs(1), 40, |s| {
        row(s, "swap").sample.as_ref().is_some_and(|x| x.kind(FdKind::Timerfd) == 1)
    });
    let sample = row(&status, "swap").sample.clone().unwrap();
    assert_eq!((sample.total, sample.kind(FdKind::Epoll)), (before.total + 1, 1));
    let after = Duration::from_millis(clock.now() - read_at);
    assert!(after <= Duration::from_secs(10), "shown {after:?} after the last read by kind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rescan_polls_at_once_rather_than_on_the_beat() {
    let fx = Fixture::new();
    let mut helper = Helper::spawn().unwrap();
    let pidfile = fx.write_pidfile("rescanned", helper.pid());
    // A beat far longer than the test: only a rescan can bring a second poll.
    fx.write_config(&pidfile_target("rescanned", &pidfile, "").replace("100ms", "10m"));
    let handle = fx.engine(None).spawn();
    let mut statuses = handle.status();
    let first = loop {
        tokio::time::timeout(Duration::from_secs(10), statuses.changed()).await.unwrap().unwrap();
        let status = statuses.borrow_and_update().clone();
        if let Some(sample) = status.targets.iter().find_map(|t| t.sample.clone()) {
            break sample;
        }
    };
    // What an action does: the process changes, then the app asks for a rescan.
    helper.ok("open pipe 5");
    handle.send(Command::Rescan);
    // The beat is 10 minutes: a status within one can only be the rescan's (a
    // generous bound, so a loaded machine does not fail it).
    let sample = loop {
        tokio::time::timeout(Duration::from_secs(60), statuses.changed())
            .await
            .expect("a status within 60 s of the rescan")
            .unwrap();
        let status = statuses.borrow_and_update().clone();
        if let Some(sample) = status.targets.iter().find_map(|t| t.sample.clone())
            && sample.total != first.total
        {
            break sample;
        }
    };
    assert_eq!(sample.total, first.total + 10);
    handle.shutdown().await;
}

#[test]
fn a_leaking_target_row_and_notification_carry_the_diagnosis() {
    let fx = Fixture::new();
    let mut helper = Helper::spawn().unwrap();
    let pidfile = fx.write_pidfile("watchers", helper.pid());
    let rules = "[watch.rules]\ninotify = { warn = 12, samples = 2 }\nfds = false\neta = false\n";
    fx.write_config(&pidfile_target("watchers", &pidfile, rules));
    let mut engine = fx.engine(None);
    let mut clock = Clock::new();
    // The first read is the series' baseline: nothing survives yet.
    let status = clock.tick(&mut engine, TICK);
    assert_eq!(row(&status, "watchers").diagnosis, None);
    // Churn only: opened and closed between reads, never a survivor.
    for _ in 0..5 {
        helper.ok("open inotify 20");
        helper.ok("close inotify all");
        clock.tick(&mut engine, TICK);
    }
    let status = clock.tick(&mut engine, TICK);
    assert_eq!(row(&status, "watchers").diagnosis, None, "churn is not a leak");

    let status = leak_until(&mut engine, &mut clock, &mut helper, "open inotify 1", 200, |s| {
        row(s, "watchers")
            .rules
            .iter()
            .any(|r| r.metric == "inotify" && r.severity == Severity::Warning)
            && row(s, "watchers").diagnosis.is_some()
    });
    let target = row(&status, "watchers");
    assert!(
        target.diagnosis.as_deref().unwrap().starts_with("file watchers never removed"),
        "{target:?}"
    );
    assert_eq!(target.signatures, vec![leakwatch_core::diagnose::Signature::WatchersNotRemoved]);
    #[cfg(feature = "metrics")]
    {
        let metrics = leakwatch_core::metrics::render(&status);
        assert!(
            metrics.contains(
                "leakwatch_leak_signature_info{target=\"watchers\",signature=\"watchers_not_removed\"} 1"
            ),
            "{metrics}"
        );
    }
    // Five survivors name the shape, twelve raise the rule: the raise says it.
    let sent = fx.notifier.sent();
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert!(sent[0].body.contains("\nfile watchers never removed: "), "{sent:#?}");
}

/// The first tick after a restart of the app or the daemon, with the same
/// process still running, would show "—" for a whole window if the trend began
/// afresh: the store holds the series, and the window is seeded from it.
#[test]
fn a_restarted_engine_shows_the_slope_within_two_ticks_from_history() {
    let fx = Fixture::new();
    let mut helper = Helper::spawn().unwrap();
    let pidfile = fx.write_pidfile("leaky", helper.pid());
    fx.write_config(&pidfile_target("leaky", &pidfile, "window = \"4s\"\n"));
    let mut engine = fx.engine(None);
    let mut clock = Clock::new();
    let first = clock.tick(&mut engine, TICK);
    assert_eq!(row(&first, "leaky").reading, Reading::Measuring, "no slope yet: measuring");
    assert_eq!(row(&first, "leaky").slope_per_hour, None);

    leak_until(&mut engine, &mut clock, &mut helper, "open epoll 2", 200, |s| {
        row(s, "leaky").reading == Reading::Measured
            && row(s, "leaky").slope_per_hour.is_some_and(|v| v > 0.0)
    });
    drop(engine);

    // The same clock goes on: the new engine starts where the old one stopped.
    let mut engine = fx.engine(None);
    let mut status = clock.tick(&mut engine, TICK);
    if row(&status, "leaky").reading != Reading::Measured {
        status = clock.tick(&mut engine, TICK);
    }
    let target = row(&status, "leaky");
    assert_eq!(target.reading, Reading::Measured, "{target:#?}");
    assert!(target.slope_per_hour.is_some_and(|v| v > 0.0), "{target:#?}");
    let series = Store::open_read_only(&fx.store_path()).unwrap().series("leaky").unwrap();
    assert_eq!(series.len(), 1, "the same process continues its series: {series:#?}");
}

/// A restart starts a new series with no slope yet: the ETA rule raised on the
/// old process neither clears ("back to normal, descriptors no longer
/// growing") nor raises again while the new series is measuring.
#[test]
fn a_restart_is_not_a_recovery() {
    let fx = Fixture::new();
    let mut first = Helper::spawn().unwrap();
    let pidfile = fx.write_pidfile("server", first.pid());
    let rules = "window = \"8s\"\n[watch.rules]\neta = { warn = \"30d\", samples = 1 }\n\
                 fds = false\nslope = false\ndown = false\n";
    fx.write_config(&pidfile_target("server", &pidfile, rules));
    let mut engine = fx.engine(None);
    let mut clock = Clock::new();
    clock.tick(&mut engine, TICK);
    let eta_level = |status: &Status| {
        row(status, "server").rules.iter().find(|r| r.metric == "eta").unwrap().severity
    };
    leak_until(&mut engine, &mut clock, &mut first, "open epoll 5", 300, |s| {
        eta_level(s) == Severity::Warning
    });

    let second = Helper::spawn().unwrap();
    fx.write_pidfile("server", second.pid());
    first.kill();
    let mut status = tick_until(&mut engine, &mut clock, TICK, 50, |s| {
        row(s, "server").process.as_ref().is_some_and(|p| p.id.pid == second.pid())
    });
    // Every tick of the new series that has no slope yet keeps the warning,
    // and no "back to normal" is logged up to the last of them.
    let mut last_measuring = None;
    for _ in 0..5 {
        if row(&status, "server").reading != Reading::Measuring {
            break;
        }
        assert_eq!(eta_level(&status), Severity::Warning, "held while measuring");
        last_measuring = Some(status.at);
        status = clock.tick(&mut engine, TICK);
    }
    let last_measuring = last_measuring.expect("the new series starts measuring");
    let events: Vec<Event> =
        fx.events("server").into_iter().filter(|e| e.at <= last_measuring).collect();
    assert_eq!(count_events(&events, EventKind::Cleared, Some("eta")), 0, "{events:#?}");
    assert_eq!(count_events(&events, EventKind::Raised, Some("eta")), 1, "{events:#?}");
}

/// A full descriptor table is its own state, critical whatever the rules say.
#[test]
fn a_full_descriptor_table_is_at_limit_and_critical() {
    let fx = Fixture::new();
    let mut helper = Helper::spawn().unwrap();
    let pid = helper.pid();
    let soft = open_fds(pid) + 4;
    helper.ok(&format!("nofile {soft}"));
    helper.ok("open epoll 4");
    assert_eq!(open_fds(pid), soft);
    let pidfile = fx.write_pidfile("full", pid);
    let rules = "[watch.rules]\nfds = false\neta = false\n";
    fx.write_config(&pidfile_target("full", &pidfile, rules));
    let mut engine = fx.engine(None);
    let mut clock = Clock::new();
    let status = clock.tick(&mut engine, TICK);
    let target = row(&status, "full");
    assert_eq!(target.reading, Reading::AtLimit, "{target:#?}");
    assert_eq!(target.severity, Severity::Critical);

    helper.ok("close epoll 2");
    let status = tick_n(&mut engine, &mut clock, TICK, 2);
    assert_ne!(row(&status, "full").reading, Reading::AtLimit);
}

/// A down target is critical at once, says why in words and since when, and
/// comes first: rows are ordered by urgency, not by the config's order.
#[test]
fn a_down_target_is_critical_says_why_and_rows_come_by_urgency() {
    let fx = Fixture::new();
    let helper = Helper::spawn().unwrap();
    let up = fx.write_pidfile("calm", helper.pid());
    let mut dead = Helper::spawn().unwrap();
    let dead_pid = dead.pid();
    dead.kill();
    assert!(wait_until(Duration::from_secs(10), || proc_state(dead_pid).is_none()));
    let stale = fx.write_pidfile("gone", dead_pid);
    fx.write_config(&format!(
        "{}\n{}",
        pidfile_target("calm", &up, ""),
        pidfile_target("gone", &stale, "")
    ));
    let mut engine = fx.engine(None);
    let mut clock = Clock::new();
    let status = clock.tick(&mut engine, TICK);
    let names: Vec<&str> = status.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["gone", "calm"], "the down target first");
    let gone = row(&status, "gone");
    assert_eq!(gone.severity, Severity::Critical);
    assert_eq!(status.worst(), Severity::Critical);
    let TargetState::Down(reason) = &gone.state else { panic!("{:?}", gone.state) };
    assert_eq!(reason, &format!("pidfile {} names pid {dead_pid}, not running", stale.display()));
    let since = gone.down_since.expect("down since");
    let later = tick_n(&mut engine, &mut clock, TICK, 2);
    assert_eq!(row(&later, "gone").down_since, Some(since), "since the first tick it was down");
    assert_eq!(row(&later, "calm").down_since, None);
}

/// Writes `text` into the FIFO at `path` once a reader has it open (a writer
/// that opens without blocking fails until then); false if none came in 60 s.
fn feed_fifo(path: &Path, text: &str) -> bool {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    wait_until(Duration::from_secs(60), || {
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(path);
        opened.is_ok_and(|mut fifo| fifo.write_all(text.as_bytes()).is_ok())
    })
}

/// Lets whoever still waits to read the FIFO go (with an empty file), so that a
/// failing test ends rather than hangs on a thread blocked in open(2).
struct Unblock(PathBuf);

impl Drop for Unblock {
    fn drop(&mut self) {
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(&self.0);
    }
}

/// Regression (issue 13): `Command::Reload` read and parsed the config on the
/// engine's own task (and a changed file, inside a tick), so a config that
/// blocks when read (a FIFO nobody writes, a file on a hung mount) stopped the
/// loop: no tick, no status, no command. The config is read on a blocking
/// thread, and what it says is applied between ticks once read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_of_a_config_that_blocks_never_stalls_the_ticks() {
    let fx = Fixture::new();
    let helper = Helper::spawn().unwrap();
    let pidfile = fx.write_pidfile("steady", helper.pid());
    let good = pidfile_target("steady", &pidfile, "");
    fx.write_config(&good);
    let handle = fx.engine(Some(TICK)).spawn();
    let mut statuses = handle.status();
    let mut status_until = async |done: &dyn Fn(&Status) -> bool| {
        tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let status = statuses.borrow_and_update().clone();
                if done(&status) {
                    return status;
                }
                statuses.changed().await.unwrap();
            }
        })
        .await
    };
    let up = status_until(&|s| s.targets.iter().any(|t| t.name == "steady")).await;
    let up = up.expect("the target watched within 60 s");

    // The config file becomes a FIFO that nobody writes: opening it blocks.
    let fifo = fx.dir.path().join("config.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR)
        .unwrap();
    let _unblock = Unblock(fifo.clone());
    let link = fx.dir.path().join("config.toml.link");
    std::fs::hard_link(&fifo, &link).unwrap();
    std::fs::rename(&link, fx.config_path()).unwrap();
    handle.send(Command::Reload);
    let ticking = status_until(&|s| s.tick >= up.tick + 5).await;
    let ticking = ticking.expect("ticks stopped while the config could not be read");
    assert!(ticking.targets.iter().any(|t| t.name == "steady" && t.state == TargetState::Up));

    // Once the file can be read (fixed, with a second target), the reload
    // that waited for it goes through.
    let fixed = format!("{good}\n{}", pidfile_target("added", &pidfile, ""));
    fx.write_config(&fixed);
    assert!(feed_fifo(&fifo, &fixed), "nobody was reading the config");
    let added = status_until(&|s| s.targets.iter().any(|t| t.name == "added")).await;
    let added = added.expect("the reload applied within 60 s");
    assert_eq!(added.config.error, None);
    tokio::time::timeout(Duration::from_secs(60), handle.shutdown())
        .await
        .expect("shutdown within 60 s");
}

/// Hours of a rule's life in as many ticks of the engine's clock: a target held
/// beyond its threshold for two hours is raised once and reminded once per
/// cooldown (30 minutes), each reminder notified; closed, it clears once. The
/// same run in real time would take two hours.
#[test]
fn a_held_rule_reminds_once_per_cooldown_over_hours_of_the_engines_clock() {
    let fx = Fixture::new();
    let mut helper = Helper::spawn().unwrap();
    let pidfile = fx.write_pidfile("held", helper.pid());
    let rules = "[watch.rules]\nepoll = { warn = 3, samples = 2, cooldown = \"30m\" }\n\
                 fds = false\neta = false\nslope = false\n";
    fx.write_config(&pidfile_target("held", &pidfile, &format!("window = \"1h\"\n{rules}")));
    let mut engine = fx.engine(None);
    let mut clock = Clock::new();
    clock.tick(&mut engine, TICK);
    helper.ok("open epoll 5");
    let minute = Duration::from_secs(60);
    let raised = tick_n(&mut engine, &mut clock, minute, 2);
    let started = raised.at;
    // Two hours more, a tick a minute: 120 ticks.
    let held = tick_n(&mut engine, &mut clock, minute, 120);
    let epoll = |status: &Status| {
        row(status, "held").rules.iter().find(|r| r.metric == "epoll").unwrap().severity
    };
    assert_eq!(epoll(&held), Severity::Warning);
    helper.ok("close epoll all");
    let cleared = tick_n(&mut engine, &mut clock, minute, 3);
    assert_eq!(epoll(&cleared), Severity::Ok);

    let events = fx.events("held");
    assert_eq!(count_events(&events, EventKind::Raised, Some("epoll")), 1, "{events:#?}");
    let reminders: Vec<u64> =
        events.iter().filter(|e| e.kind == EventKind::Reminded).map(|e| e.at - started).collect();
    // Raised at the second tick beyond; reminders every 30 minutes after that,
    // within the two hours it was held: at 30, 60, 90 and 120 minutes.
    assert_eq!(reminders.len(), 4, "{reminders:?}");
    for pair in reminders.windows(2) {
        assert!(pair[1] - pair[0] >= 30 * 60_000, "closer than the cooldown: {reminders:?}");
    }
    assert_eq!(count_events(&events, EventKind::Cleared, Some("epoll")), 1, "{events:#?}");
    // Raise, four reminders, clear: each a notification.
    assert_eq!(fx.notifier.sent().len(), 6, "{:#?}", fx.notifier.sent());
}
