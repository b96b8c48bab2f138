//! The `leakwatch` binary end to end: its JSON against a helper process whose
//! descriptors and children the test controls, and its errors for bad input.
#![cfg(target_os = "linux")]
// Helpers shared by the tests unwrap too: a panic is the failure report we want.
#![allow(clippy::unwrap_used)]

use leakwatch_test_helper::Helper;
use serde_json::Value;
use std::process::{Command, Output};

fn leakwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_leakwatch")).args(args).output().unwrap()
}

fn leakwatch_json(args: &[&str]) -> Value {
    let out = leakwatch(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn fds_json_counts_kinds_and_groups_sqlite_files() {
    let dir = std::env::temp_dir().join(format!("leakwatch-cli-fds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("state.db");
    let mut helper = Helper::spawn().unwrap();
    helper.cmd(&format!("open file {} 48", db.display())).unwrap();
    helper.cmd(&format!("open file {}-wal 46", db.display())).unwrap();
    helper.cmd(&format!("open file {}-shm 46", db.display())).unwrap();
    helper.cmd("open epoll 7").unwrap();
    let pid = helper.pid().to_string();

    let json = leakwatch_json(&["fds", &pid, "--json"]);
    let on_disk = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    assert_eq!(json["pid"], helper.pid());
    assert_eq!(json["name"], "lw-helper");
    assert_eq!(json["total"], on_disk);
    assert_eq!(json["kinds"]["epoll"], 7);
    assert!(json["start_time"].as_u64().unwrap() > 0);
    assert_eq!(json["limit"]["source"], "proc_limits");
    let top = &json["paths"][0];
    assert_eq!(top["path"], db.display().to_string());
    assert_eq!(top["count"], 48);
    assert_eq!(top["companions"][0]["suffix"], "-wal");
    assert_eq!(top["companions"][0]["count"], 46);
    assert_eq!(top["companions"][1]["suffix"], "-shm");
    assert!(json.get("fds").is_none(), "fds only with --list");

    let listed = leakwatch_json(&["fds", &pid, "--json", "--list"]);
    assert_eq!(listed["fds"].as_array().unwrap().len(), on_disk);

    let text = leakwatch(&["fds", &pid]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("state.db ×48, -wal ×46, -shm ×46"), "{text}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn tree_json_lists_every_descendant() {
    let mut helper = Helper::spawn().unwrap();
    let mut children: Vec<u64> =
        helper.cmd("tree 2 2").unwrap().iter().map(|p| p.parse().unwrap()).collect();
    let json = leakwatch_json(&["tree", &helper.pid().to_string(), "--json"]);
    let processes = json["processes"].as_array().unwrap();
    assert_eq!(processes[0]["pid"], helper.pid());
    assert_eq!(processes[0]["depth"], 0);
    let mut listed: Vec<u64> = processes[1..].iter().map(|p| p["pid"].as_u64().unwrap()).collect();
    listed.sort_unstable();
    children.sort_unstable();
    assert_eq!(listed, children);
    let deepest = processes.iter().map(|p| p["depth"].as_u64().unwrap()).max();
    assert_eq!(deepest, Some(2));
    let rss: u64 = processes.iter().map(|p| p["rss_bytes"].as_u64().unwrap()).sum();
    assert_eq!(json["total_rss_bytes"], rss);
}

#[test]
fn ps_sorts_by_descriptors_and_limits_rows() {
    let mut helper = Helper::spawn().unwrap();
    helper.cmd("open eventfd 3000").unwrap();
    let json = leakwatch_json(&["ps", "--json", "--sort", "fds", "--limit", "5"]);
    let rows = json.as_array().unwrap();
    assert!(rows.len() <= 5);
    let fds: Vec<u64> = rows.iter().map(|r| r["fds"].as_u64().unwrap_or(0)).collect();
    assert!(fds.windows(2).all(|w| w[0] >= w[1]), "{fds:?}");
    let row = rows.iter().find(|r| r["pid"] == helper.pid()).expect("helper among the top 5");
    assert!(row["fds"].as_u64().unwrap() >= 3000);
    assert!(row["fd_limit"]["soft"].as_u64().unwrap() >= 3000);
    assert!(row["argv"][0].as_str().unwrap().ends_with("lw-helper"));
}

#[test]
fn unknown_pid_is_one_clear_line_and_exit_1() {
    let out = leakwatch(&["fds", "4194304"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "leakwatch: pid 4194304: no such process\n");
    let out = leakwatch(&["tree", "4194304", "--json"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn bad_arguments_exit_2() {
    let out = leakwatch(&["fds", "not-a-pid"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value 'not-a-pid'"));
    assert_eq!(leakwatch(&["ps", "--sort", "size"]).status.code(), Some(2));
}
