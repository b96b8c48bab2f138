//! `leakwatch config add | remove` as a user runs them, round-tripped through
//! `leakwatch config check`, and what a config file that someone named but that
//! is missing does to every command that reads it (issue 10, item 18).
#![allow(clippy::unwrap_used)]

mod common;

use common::Scratch;
use serde_json::Value;

use std::process::Output;

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

const MINE: &str = "# my comment, keep it\n[defaults]\ninterval = \"5s\" # slower\n";

#[test]
fn config_add_and_remove_round_trip_through_config_check() {
    let s = Scratch::new("config-edit");
    std::fs::write(s.config(), MINE).unwrap();
    let locators: [&[&str]; 6] = [
        &["--port", "4321"],
        &["--pidfile", "/run/web.pid"],
        &["--process", "^copilot$"],
        &["--argv", "node .*server\\.js"],
        &["--launchd", "dev.example.web"],
        &["--systemd", "web.service"],
    ];
    for (i, locator) in locators.iter().enumerate() {
        let name = format!("t{i}");
        let mut args = vec!["config", "add", name.as_str()];
        args.extend_from_slice(locator);
        let out = s.run(&args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        let check = s.run(&["config", "check"]);
        assert!(check.status.success(), "{}", text(&check));
        assert!(text(&check).contains(&name), "{}", text(&check));
    }
    let edited = std::fs::read_to_string(s.config()).unwrap();
    assert!(edited.starts_with(MINE), "comments and layout kept: {edited}");

    for i in 0..locators.len() {
        let out = s.run(&["--json", "config", "remove", &format!("t{i}")]);
        assert!(out.status.success(), "{}", text(&out));
        let json: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(json["message"].as_str().unwrap().contains(&format!("removed t{i}")), "{json}");
    }
    let back = std::fs::read_to_string(s.config()).unwrap();
    assert_eq!(back.trim_end(), MINE.trim_end());
}

#[test]
fn config_add_creates_the_file_writes_fd_limit_and_says_so_in_json() {
    let s = Scratch::new("config-edit");
    let nested = s.path("sub/config.toml");
    let nested = nested.to_str().unwrap();
    let out = s.run(&[
        "--json",
        "config",
        "add",
        "web",
        "--port",
        "8787",
        "--fd-limit",
        "10240",
        "--config",
        nested,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["path"], nested);
    assert_eq!(json["exists"], true);
    assert!(json["message"].as_str().unwrap().contains("port 8787"), "{json}");
    let written = std::fs::read_to_string(nested).unwrap();
    assert!(written.contains("fd_limit = 10240"), "{written}");
    let check = s.run(&["config", "check", nested]);
    assert!(check.status.success(), "{}", text(&check));
}

#[test]
fn config_add_refuses_duplicates_bad_regexes_and_two_locators_leaving_the_file() {
    let s = Scratch::new("config-edit");
    std::fs::write(s.config(), MINE).unwrap();
    assert!(s.run(&["config", "add", "web", "--port", "1"]).status.success());
    let before = std::fs::read_to_string(s.config()).unwrap();

    let dup = s.run(&["config", "add", "web", "--port", "2"]);
    assert_eq!(dup.status.code(), Some(1));
    assert!(text(&dup).contains("exists already"), "{}", text(&dup));

    let bad = s.run(&["config", "add", "re", "--process", "("]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad).contains("watch[1].process"), "key named: {}", text(&bad));

    let two = s.run(&["config", "add", "x", "--port", "3", "--process", "y"]);
    assert!(!two.status.success());
    let none = s.run(&["config", "add", "x"]);
    assert!(!none.status.success());

    let gone = s.run(&["config", "remove", "nope"]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(text(&gone).contains("no target named `nope`"), "{}", text(&gone));

    assert_eq!(std::fs::read_to_string(s.config()).unwrap(), before, "file untouched");
}

#[test]
fn a_missing_leakwatch_config_file_is_an_error_for_watch_and_daemon_too() {
    let s = Scratch::new("config-edit");
    assert!(!s.config().exists());
    for args in [
        &["watch", "--once", "--no-store"][..],
        &["daemon", "--no-store"][..],
        &["kill-tree", "--dry-run", "1"][..],
    ] {
        let out = s.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        let message = text(&out);
        assert!(message.contains("config.toml"), "{args:?}: {message}");
        assert!(message.contains("no such file"), "{args:?}: {message}");
    }
}

/// Issue 13: while the file is broken the daemon runs on its last good config,
/// and a user needs to see which: `config in-force` prints the text the daemon
/// runs on, says the file no longer matches it, and exits 3 without an engine.
#[test]
fn config_in_force_shows_the_daemons_last_good_config_while_the_file_is_broken() {
    let scratch = Scratch::new("in-force");
    let none = scratch.run(&["config", "in-force"]);
    assert_eq!(none.status.code(), Some(3), "{}", text(&none));
    assert!(text(&none).contains("no engine running"), "{}", text(&none));

    let good = format!("{MINE}\n[[watch]]\nname = \"web\"\nport = 1\n");
    scratch.write_config(&good);
    let daemon = scratch.daemon();
    let answered = leakwatch_test_helper::wait_until(std::time::Duration::from_secs(60), || {
        scratch.run(&["config", "in-force"]).status.success()
    });
    assert!(answered, "the daemon never answered: {}", daemon.log());
    let same = scratch.run(&["config", "in-force"]);
    assert!(text(&same).contains("the file says the same"), "{}", text(&same));

    scratch.write_config("[[watch]\nname = ");
    let out = scratch.run(&["config", "in-force"]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains(&good), "the last good text, whole: {shown}");
    assert!(shown.contains("the file has changed since the engine read it"), "{shown}");
    let json: Value =
        serde_json::from_slice(&scratch.run(&["--json", "config", "in-force"]).stdout).unwrap();
    assert_eq!(json["text"], good.as_str(), "{json}");
    assert_eq!(json["file_matches"], false, "{json}");
    assert_eq!(json["path"], scratch.config().display().to_string(), "{json}");
}
