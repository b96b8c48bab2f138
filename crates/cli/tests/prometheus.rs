//! Leakwatch against a real Prometheus (Debian's `prometheus` package, which also
//! provides `promtool`; `cargo xtask ci` installs it): the packaged alert rules
//! pass their `promtool` unit tests, and Prometheus scrapes a real daemon and
//! answers `leakwatch_fds` through its HTTP API. Loopback addresses only.
#![cfg(target_os = "linux")]
// Helpers shared by the tests unwrap too: a panic is the failure report we want.
#![allow(clippy::unwrap_used)]

mod common;

use common::{PORT_ATTEMPTS, Scratch, daemon_serving_metrics, free_port, http_get, listens};
use leakwatch_test_helper::{Helper, wait_until};
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

/// Prometheus serving its API on a port of its own, and that port. Race-free
/// as [`common::daemon_serving_metrics`]: a port taken by another process
/// between [`free_port`] and Prometheus's bind makes it exit saying so, and it
/// is started again on another port. Its log goes to `log`.
fn prometheus_on_a_port_of_its_own(prometheus: &Path, dir: &Path, log: &Path) -> (Reaped, u16) {
    let mut logs = String::new();
    for _ in 0..PORT_ATTEMPTS {
        let port = free_port();
        let mut child = Reaped(
            Command::new(prometheus)
                .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
                .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(log).unwrap())
                .spawn()
                .unwrap(),
        );
        let mut exited = false;
        let settled = wait_until(Duration::from_secs(120), || {
            exited = child.0.try_wait().unwrap().is_some();
            exited
                || (listens(child.0.id(), port)
                    && http_get(port, "/-/ready").is_some_and(|r| r.starts_with("HTTP/1.1 200")))
        });
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if settled && !exited {
            return (child, port);
        }
        assert!(
            exited && text.contains("address already in use"),
            "Prometheus never got ready on port {port}:\n{text}"
        );
        logs.push_str(&text);
    }
    panic!("no free port for Prometheus in {PORT_ATTEMPTS} attempts:\n{logs}");
}

#[test]
fn prometheus_scrapes_a_real_daemon_and_answers_leakwatch_fds() {
    let prometheus = debian_tool("prometheus");
    let scratch = Scratch::new("prometheus");
    let mut helper = Helper::spawn().unwrap();
    helper.ok("open eventfd 7");
    let pidfile = scratch.path("helper.pid");
    std::fs::write(&pidfile, helper.pid().to_string()).unwrap();
    let (_daemon, metrics_port) = daemon_serving_metrics(
        &scratch,
        &[],
        |port| {
            format!(
                "[notify]\nenabled = false\n\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n\
                 [[watch]]\nname = \"leaky\"\npidfile = \"{}\"\ninterval = \"200ms\"\n",
                pidfile.display()
            )
        },
        |port| http_get(port, "/metrics").is_some_and(|r| r.contains("# EOF")),
    );
    std::fs::write(
        scratch.path("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: leakwatch\n    static_configs:\n      \
             - targets: [\"127.0.0.1:{metrics_port}\"]\n"
        ),
    )
    .unwrap();
    let log = scratch.path("prometheus.log");
    let (_prometheus, prometheus_port) =
        prometheus_on_a_port_of_its_own(&prometheus, scratch.dir(), &log);
    // leakwatch_fds{kind="eventfd"}, URL-encoded.
    let query = "/api/v1/query?query=leakwatch_fds%7Bkind%3D%22eventfd%22%7D";
    let mut answer = String::new();
    let found = wait_until(Duration::from_secs(120), || {
        answer = http_get(prometheus_port, query).unwrap_or_default();
        answer.contains("\"target\":\"leaky\"") && answer.contains("\"7\"]")
    });
    let prometheus_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(found, "Prometheus never answered leakwatch_fds:\n{answer}\n{prometheus_log}");
    assert!(answer.contains("\"job\":\"leakwatch\""), "{answer}");
    // The scrape itself was healthy.
    let up = http_get(prometheus_port, "/api/v1/query?query=up%7Bjob%3D%22leakwatch%22%7D")
        .unwrap_or_default();
    assert!(up.contains("\"1\"]"), "{up}");
}
