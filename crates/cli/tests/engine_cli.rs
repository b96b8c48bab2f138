//! The engine's faces end to end: `config`, `watch`, `daemon` (with metrics and
//! SIGTERM), `history` and `doctor`, run as a user would run them, against a
//! helper process that leaks descriptors on command.
#![cfg(target_os = "linux")]
// Helpers shared by the tests unwrap too: a panic is the failure report we want.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Scratch, http_get};
use leakwatch_test_helper::Helper;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(Iterator::count).unwrap_or(0)
}

#[test]
fn config_check_names_file_line_and_key() {
    let scratch = Scratch::new("check");
    let path = scratch.write_config(
        "[defaults]\ninterval = \"2s\"\n\n[[watch]]\nname = \"web\"\nport = 8787\ninterval = \"2x\"\n",
    );
    let out = scratch.run(&["config", "check", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let message = stderr(&out);
    assert!(message.contains(&format!("{}:7:", path.display())), "{message}");
    assert!(message.contains("watch[0].interval"), "{message}");
    assert!(message.contains("2x"), "{message}");
}

#[test]
fn config_init_writes_a_valid_example_and_will_not_clobber() {
    let scratch = Scratch::new("init");
    let out = scratch.run(&["config", "init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = scratch.run(&["config", "check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
    let again = scratch.run(&["config", "init"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("--force"));
    let path = scratch.run(&["config", "path"]);
    assert_eq!(
        String::from_utf8_lossy(&path.stdout).trim(),
        scratch.path("config.toml").display().to_string()
    );
}

#[test]
fn config_and_history_files_are_owner_only_and_loose_ones_are_fixed() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let scratch = Scratch::new("modes");
    let config = scratch.path("etc/leakwatch/config.toml");
    let out = scratch.run(&["config", "init", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(config.parent().unwrap()), 0o700);
    assert_eq!(mode(&config), 0o600);
    // Rewriting a world-readable config makes it private.
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = scratch.run(&["config", "init", "--force", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&config), 0o600);

    // A data directory and history from before, readable by everyone.
    let data = scratch.path("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The config this scratch names (a named config must exist): automatic mode.
    std::fs::write(scratch.path("config.toml"), "# no targets: automatic mode\n").unwrap();
    let out = scratch.run(&["watch", "--once", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(
        message.contains(&format!("{} was readable by other users (mode 0755)", data.display())),
        "{message}"
    );
    let db = data.join("history.sqlite3");
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&db), 0o600);
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = scratch.run(&["watch", "--once", "--json"]);
    assert!(stderr(&out).contains("(mode 0644)"), "{}", stderr(&out));
    assert_eq!(mode(&db), 0o600);
    let out = scratch.run(&["watch", "--once", "--json"]);
    assert!(!stderr(&out).contains("readable by other users"), "{}", stderr(&out));
}

/// A config watching `helper` through a pidfile, with a short window so a slope is
/// fitted within seconds.
fn leak_config(scratch: &Scratch, helper: &Helper, extra: &str) -> PathBuf {
    let pidfile = scratch.path("helper.pid");
    std::fs::write(&pidfile, helper.pid().to_string()).unwrap();
    scratch.write_config(&format!(
        "[notify]\nenabled = false\n\n[[watch]]\nname = \"leaky\"\npidfile = \"{}\"\nwindow = \"4s\"\n{extra}",
        pidfile.display()
    ))
}

#[test]
fn watch_json_reports_the_leak_slope_and_eta() {
    let scratch = Scratch::new("watch");
    let mut helper = Helper::spawn().unwrap();
    leak_config(&scratch, &helper, "");
    helper.ok("leak epoll 50");
    let started = Instant::now();
    let before = fd_count(helper.pid());
    let out =
        scratch.run(&["watch", "--json", "--samples", "40", "--interval", "150ms", "--no-store"]);
    let elapsed = started.elapsed().as_secs_f64();
    let after = fd_count(helper.pid());
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 40);
    let last = &lines[39]["targets"][0];
    assert_eq!(last["name"], "leaky");
    assert_eq!(last["state"], "up");
    let true_rate = (after - before) as f64 / elapsed * 3600.0;
    let slope = last["slope_per_hour"].as_f64().unwrap();
    assert!((slope - true_rate).abs() / true_rate < 0.10, "slope {slope}/h, true {true_rate}/h");
    let epoll_slope = last["kind_slopes_per_hour"]["epoll"].as_f64().unwrap();
    assert!((epoll_slope - true_rate).abs() / true_rate < 0.10, "epoll {epoll_slope}/h");
    let total = last["sample"]["total"].as_f64().unwrap();
    let limit = last["sample"]["limit"].as_f64().unwrap();
    let eta = last["eta_seconds"].as_f64().unwrap();
    let expected = (limit - total) / slope * 3600.0;
    assert!((eta - expected).abs() / expected < 0.05, "eta {eta}s, expected {expected}s");
}

#[test]
fn watch_piped_prints_plain_lines_and_raises_once() {
    let scratch = Scratch::new("lines");
    let mut helper = Helper::spawn().unwrap();
    leak_config(&scratch, &helper, "[watch.rules]\nepoll = { warn = 10, samples = 2 }\n");
    helper.ok("open epoll 15");
    let out = scratch.run(&["watch", "--samples", "8", "--interval", "100ms", "--no-store"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<&str> = text.lines().filter(|l| l.contains(" leaky pid=")).collect();
    assert_eq!(rows.len(), 8, "{text}");
    assert!(rows[7].contains(&format!("pid={}", helper.pid())), "{text}");
    assert!(rows[7].contains("top=epoll:15"), "{text}");
    let raised: Vec<&str> = text.lines().filter(|l| l.contains(" event raised leaky: ")).collect();
    assert_eq!(raised.len(), 1, "{text}");
    assert!(raised[0].contains("epoll"), "{text}");
}

#[test]
fn daemon_serves_metrics_records_history_and_stops_on_sigterm() {
    let scratch = Scratch::new("daemon");
    let mut helper = Helper::spawn().unwrap();
    helper.ok("open eventfd 12");
    leak_config(&scratch, &helper, "interval = \"200ms\"\n");
    let config = std::fs::read_to_string(scratch.path("config.toml")).unwrap();

    let mut metrics = String::new();
    let (mut daemon, _) = common::daemon_serving_metrics(
        &scratch,
        &[],
        |port| format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n{config}"),
        |port| {
            metrics = http_get(port, "/metrics").unwrap_or_default();
            metrics.contains("leakwatch_fds{target=\"leaky\",kind=\"eventfd\"} 12")
        },
    );
    assert!(metrics.starts_with("HTTP/1.1 200 OK"));
    assert!(metrics.contains("leakwatch_target_up{target=\"leaky\"} 1"));
    assert!(metrics.contains("# EOF"));

    // A few more ticks at 200 ms, so there is a history to read back.
    std::thread::sleep(Duration::from_millis(1000));
    let stopped_at = Instant::now();
    let sent = Command::new("kill").args(["-TERM", &daemon.pid().to_string()]).status().unwrap();
    assert!(sent.success());
    let status = loop {
        if let Some(status) = daemon.child.try_wait().unwrap() {
            break status;
        }
        // Generous (issue 13: 10 s flaked on a loaded machine): a daemon that
        // ignores SIGTERM never stops, so any bound proves it.
        assert!(stopped_at.elapsed() < Duration::from_secs(60), "daemon ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "daemon exited with {status}");
    // Read by another thread, to the end now that the daemon is gone.
    assert!(daemon.wait_for_log("SIGTERM: stopping"), "{}", daemon.log());
    let log = daemon.log();
    assert!(log.contains("leaky: watching pid"), "{log}");

    let out = scratch.run(&["history", "leaky", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let history: Value = serde_json::from_slice(&out.stdout).unwrap();
    let series = history["series"].as_array().unwrap();
    assert_eq!(series.len(), 1);
    assert_eq!(series[0]["process"]["pid"], helper.pid());
    let samples = series[0]["samples"].as_array().unwrap();
    assert!(samples.len() >= 2, "{samples:?}");
    assert_eq!(samples.last().unwrap()["kinds"]["eventfd"], 12);
    let kinds: Vec<&str> =
        history["events"].as_array().unwrap().iter().filter_map(|e| e["kind"].as_str()).collect();
    assert!(kinds.contains(&"series_started"), "{kinds:?}");

    let table = scratch.run(&["history", "leaky"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains(&format!("pid {}", helper.pid())));
    let unknown = scratch.run(&["history", "nope"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(stderr(&unknown).contains("recorded targets: leaky"), "{}", stderr(&unknown));
}

#[test]
fn daemon_keeps_last_good_config_on_bad_reload() {
    let scratch = Scratch::new("reload");
    let helper = Helper::spawn().unwrap();
    let good = leak_config(&scratch, &helper, "interval = \"200ms\"\n");
    let good_text = std::fs::read_to_string(&good).unwrap();
    let mut daemon = scratch.command(&["daemon"]).stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(daemon.stderr.take().unwrap()).lines();
    let mut wait_for = |needle: &str| {
        for line in lines.by_ref() {
            let line = line.unwrap();
            if line.contains(needle) {
                return line;
            }
        }
        panic!("daemon log ended before {needle:?}");
    };
    wait_for("leaky: watching pid");
    std::fs::write(&good, format!("{good_text}bogus = 1\n")).unwrap();
    let error = wait_for("keeping the last good configuration");
    assert!(error.contains(&format!("{}:", good.display())), "{error}");
    assert!(error.contains("bogus"), "{error}");
    std::fs::write(&good, &good_text).unwrap();
    wait_for("configuration reloaded");
    daemon.kill().unwrap();
    daemon.wait().unwrap();
}

/// Polls `path` until its text contains `needle`, for up to a minute.
fn wait_for_text(path: &std::path::Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(Instant::now() < deadline, "no {needle:?} within a minute in:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn daemon_on_a_full_disk_warns_once_and_keeps_running() {
    let scratch = Scratch::new("fulldisk");
    let helper = Helper::spawn().unwrap();
    leak_config(&scratch, &helper, "interval = \"100ms\"\n");
    let log = scratch.path("daemon.log");
    // RLIMIT_FSIZE stands in for a full disk: once the history's WAL would pass
    // 256 KiB, every write fails (EFBIG, with SIGXFSZ ignored), tick after tick.
    let mut daemon = Command::new("sh")
        .args(["-c", "trap '' XFSZ; exec prlimit --fsize=262144 -- \"$0\" daemon"])
        .arg(env!("CARGO_BIN_EXE_leakwatch"))
        .env("LEAKWATCH_CONFIG", scratch.path("config.toml"))
        .env("LEAKWATCH_DATA_DIR", scratch.path("data"))
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_for_text(&log, "history database");
    // Another 30 ticks or so of failing writes.
    std::thread::sleep(Duration::from_secs(3));
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon died on a full disk");
    let text = std::fs::read_to_string(&log).unwrap();
    let warnings = text.lines().filter(|l| l.contains("history database")).count();
    assert_eq!(warnings, 1, "one warning, not one per tick:\n{text}");
    assert!(text.contains("leaky: watching pid"), "{text}");
    daemon.kill().unwrap();
    daemon.wait().unwrap();
}

#[test]
fn daemon_with_an_unwritable_data_directory_runs_without_history() {
    let scratch = Scratch::new("rodata");
    let helper = Helper::spawn().unwrap();
    leak_config(&scratch, &helper, "interval = \"100ms\"\n");
    // A data directory that cannot be created: under a regular file. (Root, as
    // CI runs, may write a 0555 directory; nobody creates one under a file.)
    std::fs::write(scratch.path("file"), b"").unwrap();
    let log = scratch.path("daemon.log");
    let mut daemon = scratch
        .command(&["daemon"])
        .env("LEAKWATCH_DATA_DIR", scratch.path("file/data"))
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let text = wait_for_text(&log, "leaky: watching pid");
    assert!(text.contains("running without history"), "{text}");
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon stopped");
    daemon.kill().unwrap();
    daemon.wait().unwrap();
}

#[test]
fn watch_samples_zero_is_refused() {
    let scratch = Scratch::new("samples0");
    let out = scratch.run(&["watch", "--samples", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--samples"), "{}", stderr(&out));
}

#[test]
fn doctor_flags_a_damaged_history() {
    let scratch = Scratch::new("doctorcorrupt");
    std::fs::create_dir_all(scratch.path("data")).unwrap();
    std::fs::write(scratch.path("data/history.sqlite3"), b"not a database, at all\n".repeat(300))
        .unwrap();
    let out = scratch.run(&["doctor", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let problem = report["store"]["problem"].as_str().unwrap_or_default().to_owned();
    assert!(problem.contains("not a database"), "{report}");
    let text = String::from_utf8(scratch.run(&["doctor"]).stdout).unwrap();
    assert!(text.contains("DAMAGED"), "{text}");

    // A sound one is not flagged.
    std::fs::remove_file(scratch.path("data/history.sqlite3")).unwrap();
    std::fs::write(scratch.path("config.toml"), "# no targets: automatic mode\n").unwrap();
    assert!(scratch.run(&["watch", "--once", "--json"]).status.success());
    let out = scratch.run(&["doctor", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["store"]["problem"], Value::Null, "{report}");
}

#[test]
fn doctor_shows_limits_and_their_sources() {
    let scratch = Scratch::new("doctor");
    let out = scratch.run(&["doctor", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["own_limit"]["source"], "proc_limits");
    let names: Vec<&str> = report["system_limits"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["source"].as_str())
        .collect();
    assert!(names.contains(&"/proc/sys/fs/file-max"), "{names:?}");
    assert_eq!(report["config"]["exists"], false);
    assert_eq!(report["config"]["path"], scratch.path("config.toml").display().to_string());
    scratch.write_config("[[watch]]\nname = \"x\"\nport = 0\n");
    let text = String::from_utf8(scratch.run(&["doctor"]).stdout).unwrap();
    assert!(text.contains("INVALID"), "{text}");
}
