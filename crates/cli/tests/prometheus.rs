//! Leakwatch against a real Prometheus (Debian's `prometheus` package, which also
//! provides `promtool`; `cargo xtask ci` installs it): the packaged alert rules
//! pass their `promtool` unit tests, and Prometheus scrapes a real daemon and
//! answers `leakwatch_fds` through its HTTP API. Loopback addresses only.
#![cfg(target_os = "linux")]
// Helpers shared by the tests unwrap too: a panic is the failure report we want.
#![allow(clippy::unwrap_used)]

use leakwatch_test_helper::{Helper, wait_until};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/prometheus")
}

/// A Debian binary the test needs, or a failure that says how to get it.
fn debian_tool(name: &str) -> PathBuf {
    let path = Path::new("/usr/bin").join(name);
    assert!(
        path.exists(),
        "{name} is missing: install Debian's `prometheus` package (`cargo xtask ci` does)"
    );
    path
}

#[test]
fn alert_rules_fire_on_a_leak_and_stay_silent_on_a_flat_series() {
    let out = Command::new(debian_tool("promtool"))
        .args(["test", "rules", "leakwatch.rules.test.yml"])
        .current_dir(packaging())
        .output()
        .unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool test rules failed:\n{text}");
    assert!(text.contains("SUCCESS"), "{text}");
    // Every alert of the rules file has a test.
    let rules = std::fs::read_to_string(packaging().join("leakwatch.rules.yml")).unwrap();
    let tests = std::fs::read_to_string(packaging().join("leakwatch.rules.test.yml")).unwrap();
    for line in rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        assert!(tests.contains(&format!("alertname: {line}")), "no promtool test for {line}");
    }
}

/// Kills and reaps a child when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

#[test]
fn prometheus_scrapes_a_real_daemon_and_answers_leakwatch_fds() {
    let prometheus = debian_tool("prometheus");
    let scratch = tempfile::tempdir().unwrap();
    let mut helper = Helper::spawn().unwrap();
    helper.ok("open eventfd 7");
    let pidfile = scratch.path().join("helper.pid");
    std::fs::write(&pidfile, helper.pid().to_string()).unwrap();
    let (metrics_port, prometheus_port) = (free_port(), free_port());
    std::fs::write(
        scratch.path().join("config.toml"),
        format!(
            "[notify]\nenabled = false\n\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\n\
             [[watch]]\nname = \"leaky\"\npidfile = \"{}\"\ninterval = \"200ms\"\n",
            pidfile.display()
        ),
    )
    .unwrap();
    let _daemon = Reaped(
        Command::new(env!("CARGO_BIN_EXE_leakwatch"))
            .arg("daemon")
            .env("LEAKWATCH_CONFIG", scratch.path().join("config.toml"))
            .env("LEAKWATCH_DATA_DIR", scratch.path().join("data"))
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::fs::write(
        scratch.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: leakwatch\n    static_configs:\n      \
             - targets: [\"127.0.0.1:{metrics_port}\"]\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(scratch.path().join("prometheus.log")).unwrap();
    let _prometheus = Reaped(
        Command::new(prometheus)
            .arg(format!("--config.file={}", scratch.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", scratch.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    // leakwatch_fds{kind="eventfd"}, URL-encoded.
    let query = "/api/v1/query?query=leakwatch_fds%7Bkind%3D%22eventfd%22%7D";
    let mut answer = String::new();
    let found = wait_until(Duration::from_secs(120), || {
        answer = http_get(prometheus_port, query).unwrap_or_default();
        answer.contains("\"target\":\"leaky\"") && answer.contains("\"7\"]")
    });
    let prometheus_log =
        std::fs::read_to_string(scratch.path().join("prometheus.log")).unwrap_or_default();
    assert!(found, "Prometheus never answered leakwatch_fds:\n{answer}\n{prometheus_log}");
    assert!(answer.contains("\"job\":\"leakwatch\""), "{answer}");
    // The scrape itself was healthy.
    let up = http_get(prometheus_port, "/api/v1/query?query=up%7Bjob%3D%22leakwatch%22%7D")
        .unwrap_or_default();
    assert!(up.contains("\"1\"]"), "{up}");
}
