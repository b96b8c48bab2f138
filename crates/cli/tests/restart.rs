//! `leakwatch restart` and `leakwatch clean-orphans` against real processes: a
//! server started by a launcher that double-forks and exits (the `bootstrap.py`
//! report in the seeds) is restarted through its port, leaving exactly one
//! healthy server and a forensic snapshot; an orphaned tree is cleaned up.
#![cfg(target_os = "linux")]
// Helpers shared by the tests unwrap too: a panic is the failure report we want.
#![allow(clippy::unwrap_used)]

mod common;

use common::Scratch;
use leakwatch_core::actions::locate::listens_on;
use leakwatch_probe::Probe;
use leakwatch_test_helper::{Helper, helper_binary, wait_until};
use serde_json::Value;

use std::process::Command;
use std::time::Duration;

/// SIGKILLs every pid it was given when dropped, so no server outlives a test.
#[derive(Default)]
struct Reaper(Vec<u32>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
    }
}

/// The first server, started the way bootstrap.py does it (a launcher that
/// double-forks and exits), on a port the kernel picks, and that port. Bound
/// from the start, so no parallel test can take it between choosing and
/// binding (issue 13); the config naming it is written afterwards.
fn first_server(launcher: &mut Helper) -> (u32, u16) {
    let reply = launcher.ok("double-fork tcp-listen 0");
    (reply[0].parse().unwrap(), reply[1].parse().unwrap())
}

/// Pids holding a listening socket on `port`.
fn listeners(port: u16) -> Vec<u32> {
    let mut probe = Probe::new().unwrap();
    let table = probe.processes().unwrap();
    table.iter().map(|p| p.id.pid).filter(|pid| listens_on(&probe, *pid, port)).collect()
}

#[test]
fn restart_follows_a_double_forking_launcher_to_one_healthy_server() {
    let scratch = Scratch::new("restart");
    let mut reaper = Reaper::default();
    let mut launcher = Helper::spawn().unwrap();
    let (first, port) = first_server(&mut launcher);
    reaper.0.push(first);
    let helper = helper_binary();
    std::fs::write(
        scratch.path("config.toml"),
        format!(
            "[[watch]]\nname = \"webui\"\nport = {port}\n\n[watch.restart]\ncommand = [{:?}, \
             \"--exec\", \"double-fork tcp-listen {port}\"]\nhealth = \
             \"http://127.0.0.1:{port}/health\"\nhealth_timeout = \"20s\"\ngrace = \"1s\"\n",
            helper.display().to_string()
        ),
    )
    .unwrap();
    assert_eq!(listeners(port), vec![first]);

    let dry = scratch.run(&["restart", "webui", "--dry-run"]);
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    let plan = String::from_utf8_lossy(&dry.stdout);
    assert!(plan.contains(&first.to_string()) && plan.contains("SIGTERM"), "{plan}");
    assert_eq!(listeners(port), vec![first], "a dry run changes nothing");

    let refused = scratch.run(&["restart", "webui"]);
    assert_eq!(refused.status.code(), Some(1), "no --yes and no terminal: refuse");
    assert_eq!(listeners(port), vec![first]);

    let out = scratch.run(&["restart", "webui", "--yes", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let report = &json["report"];
    assert_eq!(report["strategy"], "command");
    assert_eq!(report["previous"]["pid"], first);
    assert_eq!(report["snapshot_saved"], true);
    let stopped = report["stopped"]["processes"].as_array().unwrap();
    assert!(stopped.iter().any(|p| p["pid"] == first && p["outcome"] == "exited_after_term"));
    let new_pid = report["new_pid"].as_u64().unwrap() as u32;
    reaper.0.push(new_pid);
    assert_ne!(new_pid, first);
    assert!(report["healthy_after"].as_f64().unwrap() > 0.0);

    // Exactly one server on the port, and it answers.
    assert!(
        wait_until(Duration::from_secs(5), || listeners(port) == vec![new_pid]),
        "{:?}",
        listeners(port)
    );
    let health = leakwatch_core::config::Health::Http(format!("http://127.0.0.1:{port}/health"));
    assert_eq!(leakwatch_core::actions::restart::probe_health(&health), Ok(()));

    // The evidence outlived the process.
    let history = scratch.run(&["history", "webui", "--json"]);
    assert!(history.status.success(), "{}", String::from_utf8_lossy(&history.stderr));
    let history: Value = serde_json::from_slice(&history.stdout).unwrap();
    let snapshot = &history["snapshots"][0];
    assert_eq!(snapshot["process"]["pid"], first);
    assert!(snapshot["reason"].as_str().unwrap().contains("manual restart"));
    assert_eq!(snapshot["body"]["fds"]["kinds"]["tcp"], 1);
}

#[test]
fn clean_orphans_removes_a_tree_left_by_a_sigkilled_parent() {
    let scratch = Scratch::new("clean");
    std::fs::write(scratch.path("config.toml"), "protect = [\"^sshd$\"]\n").unwrap();
    let mut reaper = Reaper::default();
    let mut parent = Helper::spawn().unwrap();
    // A unique path in the children's command lines tells them from any other
    // orphaned lw-helper (the restart test's server is one too).
    let marker = scratch.path(&format!("orphan-marker-{}", std::process::id()));
    let marker = marker.display().to_string();
    let children = parent.pids(&format!("spawn 2 open file {marker} 1"));
    reaper.0.extend(&children);
    parent.kill();
    assert!(wait_until(Duration::from_secs(5), || {
        children.iter().all(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat[stat.rfind(')').unwrap() + 2..].split(' ').nth(1) == Some("1")
            })
        })
    }));

    let listed = scratch.run(&["orphans", "--json"]);
    let trees: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let roots: Vec<u64> =
        trees.as_array().unwrap().iter().map(|t| t["root"]["pid"].as_u64().unwrap()).collect();
    for child in &children {
        assert!(roots.contains(&u64::from(*child)), "{child} not in {roots:?}");
    }

    let dry = scratch.run(&["clean-orphans", "--match", &marker, "--dry-run", "--json"]);
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    assert!(children.iter().all(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists()));
    let planned: Vec<u64> =
        serde_json::from_slice::<Value>(&dry.stdout).unwrap()["plan"]["processes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["pid"].as_u64().unwrap())
            .collect();
    assert_eq!(planned.len(), 2, "only the marked trees: {planned:?}");

    let out =
        scratch.run(&["clean-orphans", "--match", &marker, "--yes", "--grace", "500ms", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let outcomes = json["report"]["processes"].as_array().unwrap();
    for child in &children {
        let outcome = outcomes.iter().find(|p| p["pid"] == *child).unwrap();
        assert_eq!(outcome["outcome"], "exited_after_term", "{outcome}");
    }
    // Gone, or a zombie init has not reaped yet.
    assert!(wait_until(Duration::from_secs(10), || {
        children.iter().all(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |stat| stat[stat.rfind(')').unwrap() + 2..].starts_with('Z'))
        })
    }));
}

#[test]
fn restart_whose_program_is_not_on_path_is_refused_before_anything_is_stopped() {
    let scratch = Scratch::new("restart-no-program");
    let mut reaper = Reaper::default();
    let mut launcher = Helper::spawn().unwrap();
    let (first, port) = first_server(&mut launcher);
    reaper.0.push(first);
    // As launchd starts the app and the daemon: a PATH without the program, and
    // a login shell that has nothing to add.
    std::fs::write(
        scratch.path("config.toml"),
        format!(
            "[[watch]]\nname = \"webui\"\nport = {port}\n\n[watch.restart]\ncommand = \
             [\"lw-no-such-server\", \"start\"]\ngrace = \"1s\"\n"
        ),
    )
    .unwrap();
    assert_eq!(listeners(port), vec![first]);

    let out = Command::new(env!("CARGO_BIN_EXE_leakwatch"))
        .args(["restart", "webui", "--yes"])
        .env("LEAKWATCH_CONFIG", scratch.path("config.toml"))
        .env("LEAKWATCH_DATA_DIR", scratch.path("data"))
        .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
        .env("SHELL", "/bin/false")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("`lw-no-such-server` is not found on PATH"), "{stderr}");
    assert!(stderr.contains("nothing was stopped"), "{stderr}");
    // The old server is untouched.
    assert_eq!(listeners(port), vec![first]);
}

#[test]
fn manual_restart_snapshot_includes_the_engines_diagnosis() {
    let scratch = Scratch::new("restart-diagnosis");
    let mut leaker = Helper::spawn().unwrap();
    let pidfile = scratch.path("leaky.pid");
    std::fs::write(&pidfile, format!("{}\n", leaker.pid())).unwrap();
    // The restart starts a helper that exits at once (its stdin is /dev/null):
    // what is under test is the snapshot taken before the old one is stopped.
    scratch.write_config(&format!(
        "[notify]\nenabled = false\n\n[defaults]\ninterval = \"1s\"\n\n[[watch]]\nname = \
         \"leaky\"\npidfile = '{}'\n\n[watch.restart]\ncommand = [{:?}]\ngrace = \"1s\"\n",
        pidfile.display(),
        helper_binary().display().to_string()
    ));
    let daemon = scratch.daemon();
    leaker.ok("leak inotify 20");
    // The engine names the leak on its status row.
    let mut line = String::new();
    assert!(
        wait_until(Duration::from_secs(90), || {
            let out = scratch.run(&["status", "--json"]);
            let Ok(status) = serde_json::from_slice::<Value>(&out.stdout) else { return false };
            match status["targets"][0]["diagnosis"].as_str() {
                Some(found) => {
                    line = found.to_owned();
                    true
                }
                None => false,
            }
        }),
        "no diagnosis; daemon log:\n{}",
        daemon.log()
    );
    assert!(line.contains("watchers"), "{line}");

    let out = scratch.run(&["restart", "leaky", "--yes", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["report"]["snapshot_saved"], true, "{json:#}");
    assert_eq!(json["report"]["previous"]["pid"], leaker.pid());

    let history = scratch.run(&["history", "leaky", "--json"]);
    assert!(history.status.success(), "{}", String::from_utf8_lossy(&history.stderr));
    let history: Value = serde_json::from_slice(&history.stdout).unwrap();
    let snapshot = &history["snapshots"][0];
    assert!(snapshot["reason"].as_str().unwrap().contains("manual restart"), "{snapshot:#}");
    // The engine's diagnosis as the restart found it (the leak kept growing).
    let recorded = snapshot["body"]["diagnosis"].as_str().unwrap_or_else(|| panic!("{snapshot:#}"));
    assert!(recorded.contains("watchers never removed"), "{recorded}");
}
