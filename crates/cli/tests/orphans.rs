//! `leakwatch orphans` against real orphans: a helper builds a process tree and is
//! SIGKILLed alone, as the copilot runtime is in seed 001, leaving its two children
//! (each with two children of its own) reparented with their group leader gone.
//! The command must list exactly those two subtrees, with the memory and
//! descriptors /proc reports, and forget them once they are dead (zombies
//! included: this machine's init reaps slowly).
//!
//! Orphans outlive their parent by design, so each test kills every pid it made
//! in a drop guard (checking start times, so a recycled pid is never hit), on top
//! of the helper's own process-group kill: nothing outlives a failed assertion.
#![cfg(target_os = "linux")]
// A panic is the failure report we want.
#![allow(clippy::unwrap_used)]

use leakwatch_test_helper::{Helper, wait_until};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// An empty config of our own, so the user's `[orphans] match` plays no part.
fn config() -> PathBuf {
    let path = std::env::temp_dir().join(format!("leakwatch-orphans-{}.toml", std::process::id()));
    std::fs::write(&path, "").unwrap();
    path
}

fn leakwatch_with(args: &[&str], config: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_leakwatch"))
        .args(args)
        .env("LEAKWATCH_CONFIG", config)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn leakwatch(args: &[&str]) -> Output {
    leakwatch_with(args, &config())
}

fn orphans_json() -> Vec<Value> {
    let out = leakwatch(&["orphans", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    json.as_array().unwrap().clone()
}

/// Fields of /proc/PID/stat from field 3 (state) on: field N is at N - 3.
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

fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|s| s[0] != "Z" && s[0] != "X")
}

/// Resident memory as /proc/PID/stat field 24 counts it (pages), in bytes.
fn stat_rss_bytes(pid: u32) -> u64 {
    stat(pid).unwrap()[21].parse::<u64>().unwrap() * page_size()
}

/// The kernel's page size, from our own first mapping (no libc needed).
fn page_size() -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let line = smaps.lines().find(|l| l.starts_with("KernelPageSize:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// Resident memory as /proc/PID/status says it. Newer kernels sum the per-CPU
/// counters exactly here but not in stat, so it can differ from field 24 by a
/// few pages per CPU.
fn vm_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count() as u64
}

/// SIGKILLs every pid it holds when dropped (or asked), each only while it is
/// still the process that was recorded.
struct KillOnDrop(Vec<(u32, u64)>);

impl KillOnDrop {
    fn new(pids: &[u32]) -> KillOnDrop {
        KillOnDrop(pids.iter().filter_map(|&pid| Some((pid, start_time(pid)?))).collect())
    }

    fn kill_all(&self) {
        let pids: Vec<String> = self
            .0
            .iter()
            .filter(|&&(pid, started)| start_time(pid) == Some(started) && alive(pid))
            .map(|(pid, _)| pid.to_string())
            .collect();
        if !pids.is_empty() {
            let _ = Command::new("kill").arg("-KILL").args(&pids).stderr(Stdio::null()).status();
        }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.kill_all();
    }
}

fn as_pid(value: &Value) -> u32 {
    u32::try_from(value.as_u64().unwrap()).unwrap()
}

// Issue 13: ignored with its reason where it used to print "skipped" and pass;
// CI runs it where orphans go to pid 1 (xtask/src/suite.rs checks).
#[test]
#[ignore = "needs orphans to go to pid 1 (or to `systemd --user`), not another subreaper"]
fn a_sigkilled_parent_leaves_two_orphan_subtrees() {
    let mut helper = Helper::spawn().unwrap();
    let all = helper.pids("tree 2 2");
    assert_eq!(all.len(), 6, "{all:?}");
    let guard = KillOnDrop::new(&all);
    let leader = helper.pid();
    let roots: BTreeSet<u32> = all.iter().copied().filter(|&p| ppid(p) == Some(leader)).collect();
    assert_eq!(roots.len(), 2);

    helper.kill();
    assert!(wait_until(Duration::from_secs(10), || roots.iter().all(|&p| ppid(p) != Some(leader))));
    // Where orphans go: pid 1 unless an ancestor is a subreaper. A one-shot has no
    // lineage, so it can only tell `systemd --user` (a known subreaper) from an
    // original parent; anywhere else the engine's lineage is needed (and tested
    // in leakwatch-core's tests/orphans.rs).
    let new_parent = ppid(*roots.first().unwrap()).unwrap();
    if new_parent != 1 {
        let cmdline = std::fs::read(format!("/proc/{new_parent}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        assert!(
            cmdline.contains("systemd") && cmdline.contains("--user"),
            "the orphans went to subreaper {new_parent} ({cmdline}), not to pid 1"
        );
    }

    // Memory is compared with /proc's: take the listing while it holds still (a
    // helper that just started may still be touching pages).
    let truth = || all.iter().map(|&p| (p, stat_rss_bytes(p))).collect::<Vec<_>>();
    let mut trees = Vec::new();
    let settled = wait_until(Duration::from_secs(20), || {
        let before = truth();
        trees = orphans_json();
        std::thread::sleep(Duration::from_millis(100));
        before == truth()
    });
    assert!(settled, "the helpers' memory never held still");
    let ours: Vec<&Value> =
        trees.iter().filter(|t| all.contains(&as_pid(&t["root"]["pid"]))).collect();
    let listed: BTreeSet<u32> = ours.iter().map(|t| as_pid(&t["root"]["pid"])).collect();
    assert_eq!(listed, roots, "the helper's children, not its grandchildren, are the roots");
    for tree in &ours {
        let root = as_pid(&tree["root"]["pid"]);
        assert_eq!(tree["root"]["start_time"].as_u64(), start_time(root));
        assert_eq!(tree["reason"], "leader_gone", "{tree:#}");
        assert!(tree["label"].as_str().unwrap().contains("lw-helper"));
        let members = tree["members"].as_array().unwrap();
        let mut expected: BTreeSet<u32> =
            all.iter().copied().filter(|&p| ppid(p) == Some(root)).collect();
        assert_eq!(expected.len(), 2);
        expected.insert(root);
        let got: BTreeSet<u32> = members.iter().map(|m| as_pid(&m["pid"])).collect();
        assert_eq!(got, expected);
        assert_eq!(members.len(), 3);
        assert_eq!(as_pid(&members[0]["pid"]), root);
        assert_eq!(members[0]["depth"], 0);
        assert_eq!(members[0]["ppid"], new_parent);
        assert!(members[1..].iter().all(|m| m["depth"] == 1 && m["ppid"] == root));

        let rss: u64 = members.iter().map(|m| m["rss_bytes"].as_u64().unwrap()).sum();
        assert_eq!(tree["total_rss_bytes"], rss);
        let truth: u64 = expected.iter().map(|&p| stat_rss_bytes(p)).sum();
        assert_eq!(rss, truth, "{tree:#}");
        let status: u64 = expected.iter().map(|&p| vm_rss_bytes(p)).sum();
        assert!(rss.abs_diff(status) <= status / 10, "{rss} vs VmRSS {status}");
        let fds: u64 = expected.iter().map(|&p| open_fds(p)).sum();
        assert_eq!(tree["total_fds"], fds);
        let age = tree["age_seconds"].as_f64().unwrap();
        assert!((0.0..600.0).contains(&age), "{age}");
        assert!(tree["idle_seconds"].is_null(), "a one-shot has no idle history");
        assert!(tree["idle_now"].is_boolean());
    }

    let text = leakwatch(&["orphans"]);
    let text = String::from_utf8(text.stdout).unwrap();
    for root in &roots {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{root} ")))
            .unwrap_or_else(|| panic!("no row for {root} in\n{text}"));
        assert!(line.contains("leader gone") && line.contains(" 3 "), "{line}");
    }

    // Dead (zombies included) means gone from the list.
    guard.kill_all();
    assert!(wait_until(Duration::from_secs(10), || !all.iter().any(|&p| alive(p))));
    let trees = orphans_json();
    assert!(
        trees.iter().all(|t| {
            let members = t["members"].as_array().unwrap();
            !members.iter().any(|m| all.contains(&as_pid(&m["pid"])))
        }),
        "{trees:#?}"
    );
}

#[test]
fn a_bad_config_warns_and_a_bad_pattern_fails() {
    let path =
        std::env::temp_dir().join(format!("leakwatch-orphans-bad-{}.toml", std::process::id()));
    std::fs::write(&path, "[orphans]\nmatch = \"uvx\"\n").unwrap();
    let out = leakwatch_with(&["orphans", "--json", "--match", "uvx"], &path);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("orphans.match") && stderr.contains("warning"), "{stderr}");
    assert!(serde_json::from_slice::<Value>(&out.stdout).unwrap().is_array());
    std::fs::remove_file(&path).ok();

    let out = leakwatch(&["orphans", "--match", "(uvx"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid regex"));
}
