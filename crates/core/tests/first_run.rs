//! The engine as a new user meets it: an empty home directory with no config
//! file, a config with a typo, a history that cannot be opened, a probe that
//! fails. The app starts the engine with [`Engine::new_lenient_as`] and
//! [`EngineHandle::spawn_retrying`]; none of these may stop it. The CLI's
//! [`Engine::new`] stays strict: a file the user named and that is missing is an
//! error there (issue 10, item 18). No test writes a config before the engine
//! starts unless the broken file is what it tests.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

use leakwatch_core::ConfigSource;
use leakwatch_core::engine::{Engine, EngineError, EngineHandle, EngineOptions};
use leakwatch_core::model::{Severity, unix_millis};
use leakwatch_core::notifier::NullNotifier;
use leakwatch_core::owner::Face;
use leakwatch_core::status::{Affected, Status};
use leakwatch_core::store::StoreError;
use leakwatch_test_helper::wait_until;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};
use tempfile::TempDir;

/// An empty home directory, laid out as the platform's would be, with nothing in it.
struct EmptyHome {
    dir: TempDir,
}

impl EmptyHome {
    fn new() -> Self {
        Self { dir: TempDir::new().unwrap() }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join(".config/leakwatch/config.toml")
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join(".local/share/leakwatch/history.sqlite3")
    }

    fn options(&self, config: ConfigSource) -> EngineOptions {
        EngineOptions {
            config,
            store_path: Some(self.store()),
            notifier: Arc::new(NullNotifier),
            interval: Some(Duration::from_millis(100)),
        }
    }
}

#[test]
fn an_empty_home_starts_in_automatic_mode() {
    let home = EmptyHome::new();
    assert!(!home.config().exists());
    let options = home.options(ConfigSource::Default(Some(home.config())));
    // Both constructors: the CLI's `watch` on a fresh machine runs too.
    let mut strict = Engine::new(options.clone()).unwrap();
    let status = strict.tick();
    assert!(status.config.automatic);
    assert_eq!(status.config.error, None);
    assert_eq!(status.config.path, None, "no file exists yet");
    assert!(status.problems.is_empty(), "{:?}", status.problems);
    drop(strict);
    let mut lenient = Engine::new_lenient_as(options, Face::Other).unwrap();
    let status = lenient.tick();
    assert!(status.config.automatic);
    assert_eq!(status.worst(), Severity::Ok);
}

#[test]
fn a_missing_named_config_stops_the_cli_engine_with_its_path() {
    let home = EmptyHome::new();
    let named = home.dir.path().join("typo.toml");
    let error = Engine::new(home.options(ConfigSource::Named(named.clone()))).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("typo.toml"), "{text}");
    assert!(text.contains("no such file"), "{text}");
}

#[test]
fn a_missing_named_config_leaves_the_lenient_engine_running_and_warning() {
    let home = EmptyHome::new();
    let named = home.dir.path().join("typo.toml");
    let mut engine =
        Engine::new_lenient_as(home.options(ConfigSource::Named(named)), Face::Other).unwrap();
    let status = engine.tick();
    let error = status.config.error.clone().unwrap();
    assert!(error.contains("typo.toml"), "{error}");
    assert!(status.config.automatic, "the built-in defaults are in force");
    assert_eq!(status.worst(), Severity::Warning);
}

#[test]
fn a_broken_config_runs_on_defaults_names_line_and_key_and_reloads_when_fixed() {
    let home = EmptyHome::new();
    std::fs::create_dir_all(home.config().parent().unwrap()).unwrap();
    std::fs::write(home.config(), "# mine\n[defaults]\ninterval = \"2x\"\n").unwrap();
    let mut engine = Engine::new_lenient_as(
        home.options(ConfigSource::Default(Some(home.config()))),
        Face::Other,
    )
    .unwrap();
    let status = engine.tick();
    let error = status.config.error.clone().unwrap();
    assert!(error.contains("config.toml:3:"), "file and line: {error}");
    assert!(error.contains("defaults.interval"), "key: {error}");
    assert_eq!(status.worst(), Severity::Warning, "the tray warns");
    // Issue 13: the defaults it watches on are no config in force.
    assert!(engine.config_in_force().is_none());
    assert!(
        status.recent_events.iter().any(|e| e.message.contains("built-in defaults")),
        "{:?}",
        status.recent_events
    );
    // Fixed on disk (another length, so the stamp changes): the next tick reloads.
    std::fs::write(home.config(), "# mine\n[defaults]\ninterval = \"2s\"\n\n").unwrap();
    let mut fixed = None;
    assert!(wait_until(Duration::from_secs(10), || {
        let status = engine.tick();
        let done = status.config.error.is_none();
        fixed = Some(status);
        done
    }));
    assert_eq!(fixed.unwrap().worst(), Severity::Ok);
    let in_force = engine.config_in_force().expect("the fixed file is in force");
    assert_eq!(in_force.defaults.interval, Duration::from_secs(2));
}

#[test]
fn an_unopenable_history_leaves_the_engine_running_without_one() {
    let home = EmptyHome::new();
    // The data directory's place is taken by a file: it cannot be created.
    std::fs::create_dir_all(home.dir.path().join(".local/share")).unwrap();
    std::fs::write(home.dir.path().join(".local/share/leakwatch"), "not a directory").unwrap();
    let options = home.options(ConfigSource::Default(Some(home.config())));
    // Neither the CLI's engine nor the app's stops over it (issue 10, item 18:
    // a read-only data directory must not stop the daemon): both run without
    // history and say so.
    for mut engine in [
        Engine::new(options.clone()).unwrap(),
        Engine::new_lenient_as(options, Face::Other).unwrap(),
    ] {
        let status = engine.tick();
        assert_eq!(status.problems.len(), 1, "{:?}", status.problems);
        assert_eq!(status.problems[0].what, Affected::History);
        assert!(status.problems[0].message.contains("leakwatch"), "{:?}", status.problems[0]);
        assert!(!status.problems[0].fix.is_empty());
        assert!(status.history_error.is_some());
        assert_eq!(status.worst(), Severity::Warning);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_that_cannot_start_is_retried_and_says_why_meanwhile() {
    let home = EmptyHome::new();
    let options = home.options(ConfigSource::Default(Some(home.config())));
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&attempts);
    // A start failing twice (a data directory still being mounted), then not.
    let handle = EngineHandle::spawn_retrying(
        move || {
            if counted.fetch_add(1, Ordering::SeqCst) < 2 {
                return Err(EngineError::Store(StoreError::Io {
                    path: PathBuf::from("/Volumes/data"),
                    doing: "creating the data directory",
                    cause: std::io::Error::other("not mounted yet"),
                }));
            }
            Engine::new_lenient_as(options.clone(), Face::Other)
        },
        Duration::from_millis(200),
    );
    let mut statuses = handle.status();
    let failing = wait_for(&mut statuses, |s| !s.problems.is_empty()).await;
    assert_eq!(failing.problems[0].what, Affected::History);
    assert!(failing.problems[0].message.contains("not mounted yet"), "{:?}", failing.problems);
    assert_eq!(failing.worst(), Severity::Warning);
    let running = wait_for(&mut statuses, |s| s.tick > 0 && s.problems.is_empty()).await;
    assert!(running.config.automatic);
    assert!(attempts.load(Ordering::SeqCst) >= 3);
    handle.shutdown().await;
}

async fn wait_for(
    statuses: &mut tokio::sync::watch::Receiver<Arc<Status>>,
    mut check: impl FnMut(&Status) -> bool,
) -> Arc<Status> {
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let status = statuses.borrow_and_update().clone();
            if check(&status) {
                return status;
            }
            statuses.changed().await.unwrap();
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("no such status: {:#?}", statuses.borrow().problems))
}

/// The process `pid` as the probe reads it.
fn process(probe: &mut leakwatch_probe::Probe, pid: u32) -> leakwatch_probe::ProcessInfo {
    probe.process(pid).unwrap()
}

#[test]
fn watch_proposes_the_listening_port_and_shows_what_it_matches() {
    use leakwatch_core::config_edit::Locator;
    use leakwatch_core::proposal::propose_locator;
    let mut launcher = leakwatch_test_helper::Helper::spawn().unwrap();
    let reply = launcher.ok("double-fork tcp-listen 0");
    let server: u32 = reply[0].parse().unwrap();
    let port: u16 = reply[1].parse().unwrap();
    launcher.track_pid(server);
    let mut probe = leakwatch_probe::Probe::new().unwrap();
    let table = probe.processes().unwrap();
    let server_info = process(&mut probe, server);
    let proposal = propose_locator(&probe, &table, &server_info);
    assert_eq!(proposal.locator, Locator::Port(port), "{proposal:?}");
    assert!(!proposal.last_resort);
    assert_eq!(proposal.matches, [server]);
    assert_eq!(proposal.name, "lw-helper");
}

#[test]
fn watch_proposes_an_argv_pattern_for_a_process_without_a_port() {
    use leakwatch_core::config_edit::Locator;
    use leakwatch_core::proposal::propose_locator;
    let helper = leakwatch_test_helper::Helper::spawn().unwrap();
    let mut probe = leakwatch_probe::Probe::new().unwrap();
    let table = probe.processes().unwrap();
    let info = process(&mut probe, helper.pid());
    let proposal = propose_locator(&probe, &table, &info);
    let Locator::Argv(pattern) = &proposal.locator else {
        panic!("not an argv pattern: {proposal:?}");
    };
    assert!(pattern.starts_with('^') && pattern.contains("lw"), "{pattern}");
    assert!(!proposal.last_resort);
    assert!(proposal.matches.contains(&helper.pid()), "{proposal:?}");
}

/// The severity the built-in `eta` rule (warn under 6 h, critical under 1 h)
/// gives a time to the limit.
fn eta_severity(eta_seconds: f64) -> Severity {
    if eta_seconds < 3600.0 {
        Severity::Critical
    } else if eta_seconds < 6.0 * 3600.0 {
        Severity::Warning
    } else {
        Severity::Ok
    }
}

#[test]
fn a_row_showing_a_near_limit_is_coloured_by_it_once_the_rule_samples_are_in() {
    // A leak of 7,200 epolls an hour (two a second of the engine's clock,
    // `Engine::tick_at`, so the 5-minute window fills without waiting for it):
    // against the helper's own limit (raised to the hard limit, 20,000 on the CI
    // machine) that is a limit in under 3 h.
    let mut helper = leakwatch_test_helper::Helper::spawn().unwrap();
    let home = EmptyHome::new();
    let pidfile = home.dir.path().join("leaky.pid");
    std::fs::write(&pidfile, helper.pid().to_string()).unwrap();
    std::fs::create_dir_all(home.config().parent().unwrap()).unwrap();
    std::fs::write(
        home.config(),
        format!(
            "[defaults]\nwindow = \"5m\"\n\n[[watch]]\nname = \"leaky\"\npidfile = '{}'\n\
             interval = \"250ms\"\n[watch.rules]\nfds = false\n",
            pidfile.display()
        ),
    )
    .unwrap();
    let mut engine = Engine::new(home.options(ConfigSource::Default(Some(home.config())))).unwrap();
    // The rule needs `samples` (2) ticks past its threshold after the ETA first
    // shows: count the ticks since it did.
    let mut with_eta = 0;
    let mut last = None;
    let mut now = unix_millis(SystemTime::now());
    for _ in 0..600 {
        helper.ok("open epoll 2");
        now += 1000;
        let status = engine.tick_at(now);
        let row = status.targets.iter().find(|t| t.target.as_deref() == Some("leaky")).cloned();
        let shown = row.as_ref().and_then(|r| r.eta_seconds);
        with_eta = if shown.is_some() { with_eta + 1 } else { 0 };
        last = row;
        if with_eta >= 4 {
            break;
        }
    }
    let row = last.unwrap();
    assert!(with_eta >= 4, "no ETA within 10 min of the engine's clock: {row:#?}");
    let eta = row.eta_seconds.unwrap();
    let expected = eta_severity(eta);
    let rule = row.rules.iter().find(|r| r.metric == "eta").unwrap();
    assert_eq!(rule.severity, expected, "eta {eta:.0} s: {row:#?}");
    assert_eq!(row.severity, expected, "the row's colour is its text's: {row:#?}");
    let top = row.top_kind.as_ref().unwrap();
    assert_eq!(top.kind, leakwatch_probe::FdKind::Epoll, "{top:?}");
    assert!(top.slope_per_hour.is_some_and(|s| s > 3600.0), "{top:?}");
}
