//! Hostile and careless input at the command line (issue 10): durations that
//! would overflow the clock, intervals that would spin, closed pipes, protected
//! orphans, odd pidfiles, terminal escapes in argv, and configs far too big. Each
//! test is named after what it guards.
#![cfg(target_os = "linux")]
// A panic is the failure report we want.
#![allow(clippy::unwrap_used)]

mod common;

use common::Scratch;
use leakwatch_test_helper::{Helper, wait_until};
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').and_then(|i| s[i + 2..].chars().next()))
        .is_some_and(|state| state != 'Z' && state != 'X')
}

/// Regression (issue 10, item 8): `--grace 300000000000y` panicked with an
/// instant overflow after SIGTERM was already sent.
#[test]
fn a_huge_grace_is_a_usage_error_before_any_signal() {
    let scratch = Scratch::automatic("hardening");
    let mut h = Helper::spawn().unwrap();
    let child = h.pids("spawn 1")[0];
    for grace in ["300000000000y", "366days", "1000000000000000000000s"] {
        let out = scratch.run(&["kill-tree", "--yes", "--grace", grace, &child.to_string()]);
        assert_eq!(out.status.code(), Some(2), "{grace}: {}", stderr(&out));
        let message = stderr(&out);
        assert!(message.contains("--grace"), "{message}");
        assert!(!message.contains("panicked"), "{message}");
        assert!(alive(child), "{grace}: the child was signalled");
    }
    let out = scratch.run(&["kill-tree", "--yes", "--grace", "300000000000y", "1"]);
    assert!(stderr(&out).contains("at most 365 days"), "{}", stderr(&out));
}

/// Regression (issue 10, item 8): a restart `grace` of the same size is refused
/// when the config is read, with where it is.
#[test]
fn a_huge_restart_grace_in_the_config_is_an_error_naming_the_key() {
    let scratch = Scratch::automatic("hardening");
    let path = scratch.write_config(
        "[[watch]]\nname = \"web\"\nport = 8787\n\n[watch.restart]\ncommand = [\"true\"]\n\
         grace = \"300000000000y\"\n",
    );
    let out = scratch.run(&["config", "check", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let message = stderr(&out);
    assert!(message.contains(&format!("{}:7:", path.display())), "{message}");
    assert!(message.contains("watch[0].restart.grace"), "{message}");
    assert!(message.contains("at most 365 days"), "{message}");
    // Restarting with it never starts either.
    let out = scratch.run(&["restart", "--yes", "web"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

/// Regression (issue 10, item 9): `--interval 0s` panicked in the engine thread
/// and exited 0; `1ns` spun at 147 % CPU.
#[test]
fn watch_interval_below_the_config_minimum_is_a_usage_error() {
    let scratch = Scratch::automatic("hardening");
    for interval in ["0s", "1ns", "99ms"] {
        let out = scratch.run(&["watch", "--once", "--no-notify", "--interval", interval]);
        assert_eq!(out.status.code(), Some(2), "{interval}: {}", stderr(&out));
        let message = stderr(&out);
        assert!(message.contains("at least 100ms"), "{message}");
        assert!(!message.contains("panicked"), "{message}");
    }
}

/// Regression (issue 10, item 10): `watch | head -1` never exited.
#[test]
fn watch_ends_when_its_stdout_is_closed() {
    let scratch = Scratch::automatic("hardening");
    let mut watch = scratch
        .command(&["watch", "--no-notify", "--interval", "100ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(watch.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(!line.is_empty());
    drop(out);
    let mut status = None;
    wait_until(Duration::from_secs(60), || {
        status = watch.try_wait().unwrap();
        status.is_some()
    });
    let Some(status) = status else {
        watch.kill().unwrap();
        watch.wait().unwrap();
        panic!("watch kept running with its stdout closed");
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut watch.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{status}: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Regression (issue 10, item 10): `leakwatch daemon 2>&1 | head -3` panicked
/// once stderr broke.
#[test]
fn the_daemon_outlives_a_closed_stderr() {
    let scratch = Scratch::automatic("hardening");
    scratch.write_config("[notify]\nenabled = false\n");
    let mut daemon = scratch.command(&["daemon"]).stderr(Stdio::piped()).spawn().unwrap();
    let mut err = BufReader::new(daemon.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(!line.is_empty());
    drop(err);
    // Each SIGHUP logs a line, now into a closed pipe.
    for _ in 0..3 {
        Command::new("kill").args(["-HUP", &daemon.id().to_string()]).status().unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon died on a closed stderr");
    Command::new("kill").args(["-TERM", &daemon.id().to_string()]).status().unwrap();
    let mut status = None;
    wait_until(Duration::from_secs(60), || {
        status = daemon.try_wait().unwrap();
        status.is_some()
    });
    let Some(status) = status else {
        daemon.kill().unwrap();
        daemon.wait().unwrap();
        panic!("the daemon did not stop on SIGTERM");
    };
    assert!(status.success(), "{status}");
}

/// Regression (issue 10, item 3): another user's argv with `ESC]0;...BEL`
/// retitled the terminal, and one with a newline drew a fake row, in `tree`,
/// `ps` and the kill plan. Human output escapes them; JSON keeps the text.
#[test]
fn control_characters_in_argv_are_escaped_in_human_output() {
    let scratch = Scratch::automatic("hardening");
    scratch.write_config("");
    let evil = "x\u{1b}]0;pwned\u{7}\n  1  0 B  FAKE ROW\u{9b}";
    // `; :` keeps the shell from exec'ing `sleep`, so the shell (whose argv is
    // under test) stays; `sleep` is its child, and would outlive a kill of
    // the shell alone holding the test's stdout and stderr (nextest: LEAK).
    let child = Group::spawn(Command::new("sh").args(["-c", "sleep 600; :", evil]));
    let pid = child.0.id().to_string();
    assert!(wait_until(Duration::from_secs(30), || {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.ends_with(b"ROW\xc2\x9b\0"))
    }));
    for args in
        [&["tree", &pid][..], &["kill-tree", "--dry-run", &pid][..], &["ps", "--all-users"][..]]
    {
        let out = scratch.run(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{args:?}: {text:?}");
        assert!(!text.lines().any(|l| l.trim_start().starts_with("1  0 B  FAKE")), "{text}");
        if args[0] != "ps" {
            assert!(text.contains("x\\x1b]0;pwned\\x07\\n  1  0 B  FAKE ROW\\u{9b}"), "{text}");
        }
    }
    let out = scratch.run(&["--json", "tree", &pid]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json.to_string().contains("\\u001b]0;pwned\\u0007\\n"), "{json}");
}

/// A child started in a process group of its own with none of the test's
/// stdio, so that what it starts in turn holds no pipe of the test's either;
/// on drop (a failed assertion too) the whole group is SIGKILLed and the child
/// reaped.
struct Group(std::process::Child);

impl Group {
    fn spawn(command: &mut Command) -> Group {
        use std::os::unix::process::CommandExt;
        let child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Group(child)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.0.wait();
    }
}

/// Regression (issue 10, items 6 and 7): a FIFO as a pidfile blocked the tick
/// forever (and shutdown with it); `/dev/zero` was read until memory ran out;
/// a 3 MB pidfile was echoed whole into the status.
#[test]
fn odd_pidfiles_are_refused_at_once_and_quoted_briefly() {
    let scratch = Scratch::automatic("hardening");
    let fifo = scratch.path("fifo.pid");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let big = scratch.path("big.pid");
    std::fs::write(&big, "9".repeat(3 << 20)).unwrap();
    let junk = scratch.path("junk.pid");
    std::fs::write(&junk, format!("not-a-pid-{}", "z".repeat(50))).unwrap();
    let mut config = String::from("[notify]\nenabled = false\n");
    for (name, path) in [
        ("fifo", fifo.as_path()),
        ("zero", std::path::Path::new("/dev/zero")),
        ("big", &big),
        ("junk", &junk),
    ] {
        config.push_str(&format!(
            "\n[[watch]]\nname = \"{name}\"\npidfile = \"{}\"\n",
            path.display()
        ));
    }
    scratch.write_config(&config);
    let mut watch = scratch
        .command(&["--json", "watch", "--samples", "2", "--no-notify", "--interval", "100ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut status = None;
    wait_until(Duration::from_secs(60), || {
        status = watch.try_wait().unwrap();
        status.is_some()
    });
    if status.is_none() {
        watch.kill().unwrap();
        watch.wait().unwrap();
        panic!("watch hung on an odd pidfile");
    }
    let mut out = String::new();
    std::io::Read::read_to_string(&mut watch.stdout.take().unwrap(), &mut out).unwrap();
    assert!(status.unwrap().success(), "{out}");
    let last: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let reason = |name: &str| {
        let targets = last["targets"].as_array().unwrap();
        let t = targets.iter().find(|t| t["name"] == name).unwrap();
        t["reason"].as_str().unwrap_or_default().to_owned()
    };
    assert!(reason("fifo").contains("not a regular file"), "{}", reason("fifo"));
    assert!(reason("zero").contains("not a regular file"), "{}", reason("zero"));
    assert!(reason("big").contains("too long for a pidfile"), "{}", reason("big"));
    assert!(reason("big").len() < 300, "{}", reason("big"));
    let junk = reason("junk");
    assert!(junk.contains("not a pid: not-a-pid-zzzzzz..."), "{junk}");
    assert!(junk.len() < 300, "{junk}");
}

/// Regression (issue 10, item 16): `daemon install --config` with a newline in
/// the path wrote an injectable unit; LEAKWATCH_DATA_DIR was silently dropped.
#[test]
fn daemon_install_refuses_control_characters_and_carries_the_environment() {
    let scratch = Scratch::automatic("hardening");
    let units = scratch.path("units");
    let install = |config: &str| {
        scratch
            .command(&["daemon", "install", "--dry-run", "--config", config])
            .env("LEAKWATCH_CONFIG", scratch.path("config.toml"))
            .env("LEAKWATCH_SERVICE_DIR", &units)
            .output()
            .unwrap()
    };
    let out = install("/tmp/x.toml\nExecStartPre=/bin/touch /tmp/pwned");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("control character"), "{}", stderr(&out));
    assert!(!units.join("leakwatch.service").exists());

    let out = install("/tmp/my \"odd\" dir/c.toml");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(r#""--config" "/tmp/my \"odd\" dir/c.toml""#), "{text}");
    let data = scratch.path("data");
    assert!(
        text.contains(&format!("Environment=\"LEAKWATCH_DATA_DIR={}\"", data.display())),
        "{text}"
    );
    // --config wins over LEAKWATCH_CONFIG, which is then not carried.
    assert!(!text.contains("Environment=\"LEAKWATCH_CONFIG="), "{text}");
}
