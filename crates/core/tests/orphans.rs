//! The engine's orphan tracking against real processes (`lw-helper`): the lineage
//! journal it keeps on every full scan must turn "these processes were the
//! helper's children" into "their parent died" once the helper is SIGKILLed (the
//! evidence a one-shot `leakwatch orphans` lacks), `[orphans.rules]` must raise an
//! event and a notification for the pseudo-target `orphans`, and with
//! `idle_reap_after` set the idle trees must be offered for reaping (and nothing
//! when it is not set).
//!
//! The engine reads the whole process table every 10 s; the tests force a full
//! scan with `Command::Reload`, which re-reads the config and rescans at once.
//! Orphans outlive their parent by design, so every pid the test makes is
//! SIGKILLed by a drop guard (and by the helper's process-group kill).
#![cfg(target_os = "linux")]
// A panic is the failure report we want.
#![allow(clippy::unwrap_used)]

use leakwatch_core::engine::{Command, Engine, EngineOptions};
use leakwatch_core::model::{EventKind, Severity, Subject, UnixMillis, unix_millis};
use leakwatch_core::notifier::CapturingNotifier;
use leakwatch_core::orphans::OrphanReason;
use leakwatch_core::status::Status;
use leakwatch_test_helper::{Helper, wait_until};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tempfile::TempDir;

/// Fields of /proc/PID/stat from field 3 (state) on.
fn stat(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(text[text.rfind(')')? + 2..].split_whitespace().map(str::to_owned).collect())
}

fn ppid(pid: u32) -> Option<u32> {
    stat(pid)?[1].parse().ok()
}

fn start_time(pid: u32) -> Option<u64> {
    stat(pid)?[19].parse().ok()
}

/// SIGKILLs the pids it holds on drop, each only while it is still the process
/// that was recorded (same start time).
struct KillOnDrop(Vec<(u32, u64)>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let pids: Vec<String> = self
            .0
            .iter()
            .filter(|&&(pid, started)| start_time(pid) == Some(started))
            .map(|(pid, _)| pid.to_string())
            .collect();
        if !pids.is_empty() {
            let _ = std::process::Command::new("kill")
                .arg("-KILL")
                .args(&pids)
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// A full scan at `now` on the engine's clock (`Engine::tick_at`), not in 10 s.
fn scan(engine: &mut Engine, now: UnixMillis) -> Arc<Status> {
    engine.apply(Command::Reload);
    engine.tick_at(now)
}

#[test]
fn lineage_marks_parent_died_rules_fire_and_idle_trees_are_offered() {
    let dir = TempDir::new().unwrap();
    let config = dir.path().join("config.toml");
    // Reaping on, and every process protected. The engine reaps the whole
    // machine's idle orphan trees, not the test's: unprotected, this test took
    // down every idle orphan of the user running it (other tests' helpers, a
    // developer's own detached jobs). It checks what is offered; the guard
    // refuses the signals.
    let reaping = "protect = [\".*\"]\n[orphans]\nidle_reap_after = \"1s\"\n\
                   [orphans.rules]\ncount = { warn = 1, samples = 1 }\n";
    std::fs::write(&config, reaping).unwrap();
    let notifier = Arc::new(CapturingNotifier::default());
    let mut engine = Engine::new(EngineOptions {
        config: leakwatch_core::ConfigSource::Named(config.clone()),
        store_path: None,
        notifier: notifier.clone(),
        interval: None,
    })
    .unwrap();

    let mut helper = Helper::spawn().unwrap();
    let kids: BTreeSet<u32> = helper.pids("spawn 2").into_iter().collect();
    let _guard = KillOnDrop(kids.iter().filter_map(|&p| Some((p, start_time(p)?))).collect());
    let parent = helper.pid();
    // The engine's clock (issue 13: idle reaping is measured on it, so the test
    // steps it instead of sleeping 1.2 s of real time per scan).
    let mut now = unix_millis(SystemTime::now());

    // While the helper lives its children are not orphans, whatever their group.
    let status = engine.tick_at(now);
    assert!(status.orphans.iter().all(|t| !kids.contains(&t.root.pid)), "{:#?}", status.orphans);

    helper.kill();
    assert!(wait_until(Duration::from_secs(10), || kids.iter().all(|&p| ppid(p) != Some(parent))));
    now += 100;
    let status = scan(&mut engine, now);
    let ours: Vec<_> = status.orphans.iter().filter(|t| kids.contains(&t.root.pid)).collect();
    assert_eq!(ours.len(), 2, "{:#?}", status.orphans);
    for tree in &ours {
        // The lineage is better evidence than the gone group leader: it names
        // the parent that died.
        assert_eq!(tree.reason, OrphanReason::ParentDied);
        let original = tree.original_parent.as_ref().unwrap();
        assert_eq!(original.id.pid, parent);
        assert_eq!(original.name, "lw-helper");
        assert_eq!(tree.members.len(), 1);
        assert_eq!(tree.root.start_time.0, start_time(tree.root.pid).unwrap());
        assert!(tree.total_rss_bytes > 0 && tree.total_fds > 0);
        assert!(tree.idle_for.is_some(), "seen since the first tick");
    }

    // The count rule (warn at 1, one sample) raised once, for `orphans`.
    let count = status.orphan_rules.iter().find(|r| r.metric == "orphans.count").unwrap();
    assert_eq!(count.severity, Severity::Warning);
    assert!(count.value.unwrap() >= 2.0);
    assert!(status.worst() >= Severity::Warning);
    let raised = status
        .recent_events
        .iter()
        .find(|e| e.subject == Subject::Orphans && e.kind == EventKind::Raised)
        .unwrap_or_else(|| panic!("{:#?}", status.recent_events));
    assert_eq!(raised.rule.as_deref(), Some("orphans.count"));
    assert!(raised.message.contains("orphaned process tree"), "{}", raised.message);
    assert!(notifier.sent().iter().any(|n| n.title == "Leakwatch: orphans"));

    // Idle for a second (no CPU since the last scan): offered for reaping, and
    // not before. The clock steps 300 ms a scan; a child that still used CPU
    // just after its parent died is idle from that scan on, hence a few more.
    let mut offered = false;
    for _ in 0..20 {
        now += 300;
        scan(&mut engine, now);
        let roots: BTreeSet<u32> = engine.orphans_to_reap().iter().map(|id| id.pid).collect();
        for tree in engine.orphans().iter().filter(|t| kids.contains(&t.root.pid)) {
            let idle = tree.idle_for.unwrap();
            assert_eq!(
                roots.contains(&tree.root.pid),
                idle >= Duration::from_secs(1),
                "idle {idle:?} of 1 s, offered: {roots:?}"
            );
        }
        if kids.is_subset(&roots) {
            offered = true;
            break;
        }
    }
    assert!(offered, "{:#?}", engine.orphans());
    // The reaper thread reports; protected, nothing was signalled.
    let mut reaped = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while reaped.is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        now += 100;
        engine.tick_at(now);
        reaped = engine.take_events().into_iter().find(|e| {
            e.message.starts_with("orphans: reaped")
                || e.message.contains("reaping idle trees failed")
        });
    }
    let reaped = reaped.expect("the reaper never reported");
    assert!(reaped.message.contains("protected process(es) left alone"), "{}", reaped.message);
    for &kid in &kids {
        assert!(start_time(kid).is_some(), "orphan {kid} was signalled despite protect");
    }

    // Reaping is opt-in: without idle_reap_after nothing is offered.
    std::fs::write(&config, "[orphans]\n").unwrap();
    now += 1_200;
    scan(&mut engine, now);
    assert_eq!(engine.config().orphans.idle_reap_after, None);
    assert!(!engine.orphans().is_empty());
    assert!(engine.orphans_to_reap().is_empty());
}
