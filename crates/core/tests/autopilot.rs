//! Automatic restarts against real processes: a target stuck at critical is
//! restarted by the engine with a forensic snapshot each time, and the circuit
//! breaker trips on the restart that would exceed `max` within `per`, says so
//! once, and restarts nothing more until `per` has passed on the engine's clock
//! ([`Engine::tick_at`]: an hour is one step of it, not an hour of the test). A
//! restart still running when the engine stops leaves its snapshot too.
#![cfg(target_os = "linux")]
// Helpers shared by the tests unwrap too: a panic is the failure report we want.
#![allow(clippy::unwrap_used)]

use leakwatch_core::engine::{Engine, EngineOptions};
use leakwatch_core::model::{EventKind, Severity, unix_millis};
use leakwatch_core::notifier::CapturingNotifier;
use leakwatch_core::store::Store;
use leakwatch_test_helper::helper_binary;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Kills whatever pid the pidfile names last, and every pid seen, on drop.
struct Cleanup(PathBuf, Vec<u32>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let last = std::fs::read_to_string(&self.0).ok().and_then(|t| t.trim().parse().ok());
        for pid in self.1.iter().copied().chain(last) {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
    }
}

/// A server holding five epolls, started as its own restart command starts it
/// (`exec` keeps the shell's pid, so the pidfile names the server itself), and an
/// engine that restarts it automatically once it is critical (three epolls).
/// Fields drop in order: the engine, then the processes, then the directory.
struct AutoRestart {
    engine: Engine,
    cleanup: Cleanup,
    first: Child,
    pidfile: PathBuf,
    store_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl AutoRestart {
    /// `server_flags` are more lw-helper flags; `grace` and `max` go to
    /// `[watch.restart]` and `[watch.auto_restart]`.
    fn start(server_flags: &str, grace: &str, max: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("server.pid");
        let start = format!(
            "echo $$ > {}; exec {} --stay --exec 'open epoll 5'{server_flags}",
            pidfile.display(),
            helper_binary().display()
        );
        let first = Command::new("sh").args(["-c", &start]).stdin(Stdio::null()).spawn().unwrap();
        let cleanup = Cleanup(pidfile.clone(), vec![first.id()]);
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[notify]\nenabled = false\n\n[[watch]]\nname = \"leaky\"\npidfile = \"{}\"\n\n\
                 [watch.rules]\nfds = false\neta = false\nepoll = {{ critical = 3, samples = 1 }}\n\n\
                 [watch.restart]\ncommand = [\"sh\", \"-c\", {start:?}]\ngrace = \"{grace}\"\n\
                 health_timeout = \"5s\"\n\n[watch.auto_restart]\non = \"critical\"\nmax = {max}\n\
                 per = \"1h\"\n",
                pidfile.display()
            ),
        )
        .unwrap();
        let store_path = dir.path().join("history.sqlite3");
        let engine = Engine::new(EngineOptions {
            config: leakwatch_core::ConfigSource::Named(config),
            store_path: Some(store_path.clone()),
            notifier: Arc::new(CapturingNotifier::default()),
            interval: Some(Duration::from_millis(100)),
        })
        .unwrap();
        AutoRestart { engine, cleanup, first, pidfile, store_path, _dir: dir }
    }
}

#[test]
fn critical_target_is_restarted_until_the_breaker_trips() {
    let mut fx = AutoRestart::start("", "500ms", 2);

    let mut events = Vec::new();
    // The restarts are real, so the test waits on them (a deadline, not a
    // measurement); the breaker's window runs on the engine's clock.
    let started = Instant::now();
    let mut now = unix_millis(SystemTime::now());
    while started.elapsed() < Duration::from_secs(40) {
        now += 100;
        let status = fx.engine.tick_at(now);
        // Issue 13: each tick's own events, all of them, rather than the
        // status's last few diffed by timestamp (which drops events raised in
        // the same millisecond as the last one seen, or beyond the few kept).
        events.extend(fx.engine.take_events());
        let current = std::fs::read_to_string(&fx.pidfile).ok().and_then(|t| t.trim().parse().ok());
        if let Some(pid) = current
            && !fx.cleanup.1.contains(&pid)
        {
            fx.cleanup.1.push(pid);
        }
        let tripped = events.iter().any(|e| e.message.contains("circuit breaker open"));
        if tripped && status.restarts.get("leaky") == Some(&2) {
            // Keep ticking a while: nothing more may be restarted.
            for _ in 0..20 {
                std::thread::sleep(Duration::from_millis(100));
                now += 100;
                fx.engine.tick_at(now);
                events.extend(fx.engine.take_events());
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = fx.engine.tick_at(now + 100);
    events.extend(fx.engine.take_events());
    let restarted: Vec<_> =
        events.iter().filter(|e| e.message.contains("restarted automatically")).collect();
    assert_eq!(restarted.len(), 2, "{events:#?}");
    let trips: Vec<_> =
        events.iter().filter(|e| e.message.contains("circuit breaker open")).collect();
    assert_eq!(trips.len(), 1, "reported once: {events:#?}");
    assert_eq!(trips[0].kind, EventKind::Action);
    assert_eq!(trips[0].severity, Severity::Critical);
    assert_eq!(status.restarts.get("leaky"), Some(&2));
    // Three servers in all (the first and two restarts), a new pid each time.
    assert_eq!(fx.cleanup.1.len(), 3, "{:?}", fx.cleanup.1);

    let store = Store::open_read_only(&fx.store_path).unwrap();
    let snapshots = store.snapshots(Some("leaky"), 0).unwrap();
    assert_eq!(snapshots.len(), 2);
    assert!(snapshots.iter().all(|s| s.reason.contains("automatic restart")));
    assert_eq!(snapshots[0].process.pid, fx.cleanup.1[0]);
    assert_eq!(snapshots[0].body["fds"]["kinds"]["epoll"], 5);

    // An hour later on the engine's clock the window has passed: the breaker
    // closes and the target, still critical, is restarted again.
    now += 3_600_000;
    let started = Instant::now();
    let mut again = false;
    while !again && started.elapsed() < Duration::from_secs(40) {
        now += 100;
        let status = fx.engine.tick_at(now);
        again = status.restarts.get("leaky").is_some_and(|n| *n >= 3);
        let current = std::fs::read_to_string(&fx.pidfile).ok().and_then(|t| t.trim().parse().ok());
        if let Some(pid) = current
            && !fx.cleanup.1.contains(&pid)
        {
            fx.cleanup.1.push(pid);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    fx.engine.finish();
    assert!(again, "not restarted again after the window passed");
    // The first server was ours: reap it (the engine reaped the ones it started).
    fx.first.wait().unwrap();
}

/// Regression (issue 13): `Autopilot::finish` waited for a restart still in
/// flight at shutdown and dropped what it returned, so the forensic snapshot
/// taken before stopping the server (the evidence of what leaked) was lost.
#[test]
fn a_restart_in_flight_at_shutdown_keeps_its_snapshot() {
    // A server that ignores SIGTERM: the restart waits out its grace (2 s)
    // before SIGKILL, so it is still running when the engine stops.
    let mut fx = AutoRestart::start(" --exec ignore-term", "2s", 1);
    // Wait until the server holds its epolls, then tick until the restart starts.
    assert!(leakwatch_test_helper::wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&fx.pidfile).is_ok_and(|t| !t.trim().is_empty())
    }));
    let mut now = unix_millis(SystemTime::now());
    let mut began = false;
    for _ in 0..50 {
        now += 100;
        let status = fx.engine.tick_at(now);
        began = fx.engine.take_events().iter().any(|e| e.message.starts_with("automatic restart:"));
        if began {
            // Not collected by a tick: only `finish` can save its outcome.
            assert_eq!(status.restarts.get("leaky"), None, "{:?}", status.restarts);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(began, "no automatic restart started");
    fx.engine.finish();
    let current: Option<u32> =
        std::fs::read_to_string(&fx.pidfile).ok().and_then(|t| t.trim().parse().ok());
    fx.cleanup.1.extend(current);
    drop(fx.engine);

    let store = Store::open_read_only(&fx.store_path).unwrap();
    let snapshots = store.snapshots(Some("leaky"), 0).unwrap();
    assert_eq!(snapshots.len(), 1, "the in-flight restart's snapshot was dropped");
    assert!(snapshots[0].reason.contains("automatic restart"), "{:?}", snapshots[0].reason);
    assert_eq!(snapshots[0].process.pid, fx.first.id());
    assert_eq!(snapshots[0].body["fds"]["kinds"]["epoll"], 5);
    let events = store.events(Some("leaky"), 0).unwrap();
    assert!(
        events.iter().any(|e| e.message.contains("restarted automatically")),
        "the outcome is logged: {events:#?}"
    );
    fx.first.wait().unwrap();
}
