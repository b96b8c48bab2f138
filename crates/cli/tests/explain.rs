//! `leakwatch explain` against real leakers: the test helper for the shapes it can
//! make, CPython for the ones that come from a runtime (asyncio loops, sqlite3
//! connections, Popen pipes). Each must be named, and a busy server that opens and
//! closes thousands of descriptors a minute must get no signature at all.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

mod common;

use common::{Scratch, stderr, stdout};
use leakwatch_test_helper::{Helper, wait_until};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("leakwatch-explain-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `leakwatch explain PID --json --observe 3s`, parsed.
fn explain(pid: u32) -> Value {
    let config =
        std::env::temp_dir().join(format!("leakwatch-explain-{}.toml", std::process::id()));
    std::fs::write(&config, "").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_leakwatch"))
        .args(["explain", &pid.to_string(), "--observe", "3s", "--json"])
        .env("LEAKWATCH_CONFIG", &config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn signatures(report: &Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["signature"].as_str().unwrap().to_owned())
        .collect()
}

/// The first finding must be `signature`, with evidence and a hint.
fn assert_named(report: &Value, signature: &str) {
    let found = signatures(report);
    assert_eq!(found.first().map(String::as_str), Some(signature), "{report:#}");
    let finding = &report["findings"][0];
    assert!(!finding["evidence"].as_array().unwrap().is_empty());
    assert!(!finding["hint"].as_str().unwrap().is_empty());
    assert!(report["diagnosis"].as_str().is_some(), "{report:#}");
}

/// A CPython leaker (tests/fixtures/leaker.py), killed on drop.
struct Python(Child);

impl Python {
    fn start(mode: &str, dir: &Path) -> Python {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/leaker.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args([mode, &dir.display().to_string()])
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("python3 runs the real asyncio and sqlite3 leakers");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        Python(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Python {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn explain_names_asyncio_event_loops_never_closed() {
    let python = Python::start("asyncio", &tempdir("asyncio"));
    let report = explain(python.pid());
    assert_named(&report, "event_loops_not_closed");
    assert_eq!(report["findings"][0]["confidence"], "high");
    assert!(report["diagnosis"].as_str().unwrap().contains("1 epoll + 2 unix sockets each"));
}

#[test]
fn explain_names_sqlite3_connections_never_closed() {
    let python = Python::start("sqlite", &tempdir("sqlite"));
    let report = explain(python.pid());
    assert_named(&report, "sqlite_connections_not_closed");
    assert!(report["diagnosis"].as_str().unwrap().contains("state.db ×"), "{report:#}");
}

#[test]
fn explain_names_popen_pipes_and_zombies() {
    let python = Python::start("subprocess", &tempdir("subprocess"));
    let report = explain(python.pid());
    assert_named(&report, "subprocess_pipes_not_closed");
    assert!(report["children"]["zombies"].as_u64().unwrap() > 0, "{report:#}");
}

#[test]
fn a_busy_server_that_closes_everything_gets_no_signature() {
    let dir = tempdir("busy");
    let python = Python::start("busy", &dir);
    let lines = || std::fs::read_to_string(dir.join("log.txt")).unwrap_or_default().lines().count();
    let before = lines();
    let report = explain(python.pid());
    // It really was busy: each request opens and closes a loop (3 fds), a SQLite
    // connection, a log file and a child's pipes, about ten descriptors.
    let requests = lines() - before;
    assert!(requests >= 30, "only {requests} requests while watched");
    assert_eq!(signatures(&report), Vec::<String>::new(), "{report:#}");
    assert!(report["diagnosis"].is_null());
}

fn helper_leaking(command: &str) -> Helper {
    let mut helper = Helper::spawn().unwrap();
    helper.ok(command);
    helper
}

#[test]
fn explain_names_pipes_created_and_never_closed() {
    let helper = helper_leaking("leak pipe 50");
    let report = explain(helper.pid());
    assert_named(&report, "subprocess_pipes_not_closed");
    assert!(report["survivors"]["pipe_pairs"].as_u64().unwrap() >= 5, "{report:#}");
}

#[test]
fn explain_names_close_wait_sockets() {
    let helper = helper_leaking("leak close-wait 50");
    let report = explain(helper.pid());
    assert_named(&report, "close_wait_sockets");
    assert!(report["survivors"]["close_wait"].as_u64().unwrap() >= 5);
}

#[test]
fn explain_names_watchers_never_removed() {
    let helper = helper_leaking("leak inotify 50");
    let report = explain(helper.pid());
    assert_named(&report, "watchers_not_removed");
}

#[test]
fn explain_names_one_path_reopened() {
    let dir = tempdir("reopen");
    let helper = helper_leaking(&format!("leak file:{}/app.log 50", dir.display()));
    let report = explain(helper.pid());
    assert_named(&report, "path_reopened");
    assert!(report["diagnosis"].as_str().unwrap().contains("app.log ×"));
}

#[test]
fn explain_reports_unknown_growth_as_unrecognised() {
    let helper = helper_leaking("leak timerfd 50");
    let report = explain(helper.pid());
    assert_eq!(signatures(&report), vec!["unrecognised"], "{report:#}");
    assert_eq!(report["findings"][0]["confidence"], "low");
    assert!(report["diagnosis"].as_str().unwrap().contains("timerfd"));
}

#[test]
fn explain_names_descriptors_inherited_by_children() {
    let mut helper = Helper::spawn().unwrap();
    helper.ok("open pipe 3");
    helper.ok("open unix 1");
    helper.ok("no-cloexec");
    let children = helper.pids("spawn 2");
    assert_eq!(children.len(), 2);
    let report = explain(helper.pid());
    assert!(signatures(&report).contains(&"inherited_by_children".to_owned()), "{report:#}");
    assert!(report["children"]["shared_objects"].as_u64().unwrap() >= 4);
    // The same parent with close-on-exec kept: none of those shared (the children
    // may hold one of the helper's own, below the threshold).
    let mut clean = Helper::spawn().unwrap();
    clean.ok("open pipe 3");
    clean.ok("open unix 1");
    clean.pids("spawn 2");
    let report = explain(clean.pid());
    assert!(report["children"]["shared_objects"].as_u64().unwrap() < 4, "{report:#}");
    assert!(!signatures(&report).contains(&"inherited_by_children".to_owned()));
}

fn ppid(pid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    text[text.rfind(')')? + 2..].split_whitespace().nth(1)?.parse().ok()
}

// Issue 13: this test printed "skipped" and passed where orphans go to a
// subreaper; it is ignored with its reason instead, and CI runs it where orphans
// go to pid 1 (xtask/src/suite.rs checks).
#[test]
#[ignore = "needs orphans to go to pid 1 (no subreaper above the tests)"]
fn explain_names_a_tree_left_by_a_sigkilled_parent() {
    let mut helper = Helper::spawn().unwrap();
    let all = helper.pids("tree 2 1");
    let leader = helper.pid();
    let root = all.iter().copied().find(|&p| ppid(p) == Some(leader)).unwrap();
    // The group is killed when the handle drops, with or without its leader.
    helper.kill();
    assert!(wait_until(Duration::from_secs(10), || ppid(root) != Some(leader)));
    assert_eq!(ppid(root), Some(1), "the orphan went to a subreaper, not init");
    let report = explain(root);
    assert!(signatures(&report).contains(&"orphaned_tree".to_owned()), "{report:#}");
    assert_eq!(report["orphan"]["leader_gone"], true);
}

#[test]
fn explain_finds_a_configured_target_by_name() {
    let dir = tempdir("target");
    let helper = helper_leaking("leak inotify 50");
    let pidfile = dir.join("agent.pid");
    std::fs::write(&pidfile, format!("{}\n", helper.pid())).unwrap();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!("[[watch]]\nname = \"agent\"\npidfile = '{}'\n", pidfile.display()),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_leakwatch"))
        .args(["explain", "agent", "--observe", "3s", "--json", "--config"])
        .arg(&config)
        .env("XDG_DATA_HOME", &dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["target"], "agent");
    assert_eq!(report["pid"], u64::from(helper.pid()));
    assert_named(&report, "watchers_not_removed");

    let missing = Command::new(env!("CARGO_BIN_EXE_leakwatch"))
        .args(["explain", "nosuch", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("no target `nosuch` in the config; configured: agent"), "{stderr}");
}

#[test]
fn explain_counts_survivors_since_the_marked_baseline_only() {
    let scratch = Scratch::new("explain-mark");
    let mut helper = Helper::spawn().unwrap();
    let pidfile = scratch.path("agent.pid");
    std::fs::write(&pidfile, format!("{}\n", helper.pid())).unwrap();
    scratch.write_config(&format!(
        "[notify]\nenabled = false\n\n[defaults]\ninterval = \"1s\"\n\n[[watch]]\nname = \
         \"agent\"\npidfile = '{}'\n",
        pidfile.display()
    ));
    // No engine runs yet: there is nothing to keep the mark, and it says so.
    let refused = scratch.run(&["explain", "agent", "--mark"]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("no engine is running"), "{}", stderr(&refused));

    let daemon = scratch.daemon();
    // A real leak before the mark: eventfds, opened and never closed.
    helper.ok("leak eventfd 20");
    assert!(wait_until(Duration::from_secs(30), || {
        helper.ok("count").iter().any(|w| {
            w.strip_prefix("eventfd=").and_then(|n| n.parse::<u32>().ok()).is_some_and(|n| n >= 5)
        })
    }));
    helper.ok("stop-leak");
    // The engine must be watching the process before it can mark it.
    let mut marks = Value::Null;
    assert!(
        wait_until(Duration::from_secs(60), || {
            let out = scratch.run(&["explain", "agent", "--mark", "--json"]);
            if out.status.success() {
                marks = serde_json::from_slice(&out.stdout).unwrap();
            }
            out.status.success()
        }),
        "never marked; daemon log:\n{}",
        daemon.log()
    );
    assert_eq!(marks[0]["process"]["pid"], u64::from(helper.pid()), "{marks:#}");
    // After the mark: 4 pipes (8 ends) and 3 timerfds.
    helper.ok("open pipe 4");
    helper.ok("open timerfd 3");

    let out = scratch.run(&["explain", "agent", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["baseline"], "marked", "{report:#}");
    assert_eq!(report["mark"], marks[0], "{report:#}");
    assert_eq!(report["survivors"]["since"], marks[0]["at"]);
    let kinds = &report["survivors"]["kinds"];
    assert_eq!(kinds["pipe"], 8, "{report:#}");
    assert_eq!(kinds["timerfd"], 3, "{report:#}");
    assert!(kinds.get("eventfd").is_none(), "opened before the mark: {report:#}");
    assert_eq!(report["survivors"]["total"], 11, "{report:#}");

    let human = scratch.run(&["explain", "agent"]);
    assert!(human.status.success(), "{}", stderr(&human));
    let text = stdout(&human);
    assert!(text.contains("baseline marked"), "{text}");
    assert!(text.contains("survivors (opened since the mark, still open): 11"), "{text}");
}
