//! Graceful restarts (DESIGN.md, "Restart"): the fix for a server that leaks.
//!
//! A supervised server is restarted by its supervisor (`launchctl kickstart -k`,
//! `systemctl --user restart`), or the supervisor fights back. A `command` target
//! is restarted by Leakwatch itself: stop the tree with the one kill-tree routine,
//! wait until the port is free, start the command detached in a session of its
//! own (so it outlives us and our terminal), and wait until it is healthy. Before
//! any of that, a forensic snapshot of the process goes to the store, so the
//! evidence of the leak outlives the process. Automatic restarts pass through a
//! [`CircuitBreaker`], so a server that leaks on start-up is not restarted in a loop.

use crate::config::{Health, Restart, Selector, Target};
use crate::kill::{self, Guard, KillReport};
use crate::locate::{PortMemo, locate};
use crate::model::{UnixMillis, unix_millis};
use crate::store::Snapshot;
use crate::summary::FdSummary;
use crate::tree::ProcessTree;
use leakwatch_probe::{Probe, ProcessId};
use serde::Serialize;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// How many descriptors a forensic snapshot lists one by one (the summary counts
/// them all): enough to see a leak's shape, bounded so a snapshot stays small.
const SNAPSHOT_FD_LIST: usize = 2000;

/// Why a restart did not happen or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum RestartError {
    #[error("target `{0}` has no `restart` in the config: add one of launchd, systemd or command")]
    NotConfigured(String),
    #[error("{target}: {message}")]
    Stop { target: String, message: String },
    #[error("{target}: port {port} still in use {waited:?} after stopping it")]
    PortBusy { target: String, port: u16, waited: Duration },
    #[error("{target}: could not start {program}: {source}")]
    Spawn {
        target: String,
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{target}: {source}")]
    Service {
        target: String,
        #[source]
        source: crate::service::ServiceError,
    },
    #[error("{target}: not healthy after {waited:?}: {last}")]
    Unhealthy { target: String, waited: Duration, last: String },
}

/// What a restart did, for the CLI, the app and the event log.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct RestartReport {
    pub target: String,
    /// `launchd`, `systemd` or `command`.
    pub strategy: &'static str,
    /// The process that was replaced, if one was running.
    pub previous: Option<ProcessId>,
    /// How the old tree was stopped (`command` restarts only).
    pub stopped: Option<KillReport>,
    /// The pid Leakwatch started (`command` restarts; a launcher may have exited).
    pub spawned_pid: Option<u32>,
    /// The target's process afterwards, as its selector finds it.
    pub new_pid: Option<u32>,
    /// From the start of the restart until the health check passed.
    #[serde(with = "secs")]
    #[cfg_attr(feature = "ts", ts(type = "number | null"))]
    pub healthy_after: Option<Duration>,
    /// Whether a forensic snapshot was written before acting.
    pub snapshot_saved: bool,
}

/// The plan shown before a restart: what will happen, in words.
pub fn describe(
    target: &Target,
    previous: Option<ProcessId>,
    plan: Option<&kill::KillPlan>,
) -> String {
    let who = previous.map_or_else(|| "(not running)".to_owned(), |p| format!("pid {}", p.pid));
    match &target.restart {
        None => format!("{}: no restart configured", target.name),
        Some(Restart::Launchd(label)) => format!(
            "{} {who}: launchd restarts job {label} (`launchctl kickstart -k gui/UID/{label}`)",
            target.name
        ),
        Some(Restart::Systemd(unit)) => format!(
            "{} {who}: systemd restarts {unit} (`systemctl --user restart {unit}`)",
            target.name
        ),
        Some(Restart::Command { argv, cwd, health, health_timeout, .. }) => {
            let mut text = match plan {
                Some(plan) => plan.describe(),
                None => format!("{}: nothing running to stop", target.name),
            };
            text.push_str(&format!("\nthen start: {}", shell_words(argv)));
            if let Some(cwd) = cwd {
                text.push_str(&format!(" (in {})", cwd.display()));
            }
            let check = health
                .as_ref()
                .map(health_text)
                .or_else(|| port_of(&target.selector).map(|p| format!("port {p} accepting")));
            if let Some(check) = check {
                text.push_str(&format!("\nand wait up to {health_timeout:?} for {check}"));
            }
            text
        }
    }
}

/// Restarts `target` now. `reason` goes into the forensic snapshot; `snapshot`
/// receives it (to be written to the store) before anything is signalled.
pub fn restart(
    probe: &mut Probe,
    target: &Target,
    guard: &Guard,
    reason: &str,
    snapshot: &mut dyn FnMut(Snapshot),
) -> Result<(RestartReport, Option<Child>), RestartError> {
    let started = Instant::now();
    let restart =
        target.restart.as_ref().ok_or_else(|| RestartError::NotConfigured(target.name.clone()))?;
    let previous = current_process(probe, target);
    let mut report = RestartReport {
        target: target.name.clone(),
        strategy: match restart {
            Restart::Launchd(_) => "launchd",
            Restart::Systemd(_) => "systemd",
            Restart::Command { .. } => "command",
        },
        previous,
        stopped: None,
        spawned_pid: None,
        new_pid: None,
        healthy_after: None,
        snapshot_saved: false,
    };
    if let Some(previous) = previous
        && let Some(body) = forensic_snapshot(probe, previous, reason)
    {
        snapshot(Snapshot {
            at: unix_millis(SystemTime::now()),
            target: target.name.clone(),
            process: previous,
            reason: reason.to_owned(),
            body,
        });
        report.snapshot_saved = true;
    }
    let mut child = None;
    match restart {
        Restart::Launchd(label) => {
            #[cfg(unix)]
            let uid = leakwatch_probe::current_uid();
            #[cfg(not(unix))]
            let uid = 0;
            crate::service::launchd_restart(label, uid)
                .map_err(|e| RestartError::Service { target: target.name.clone(), source: e })?;
        }
        Restart::Systemd(unit) => {
            crate::service::systemd_restart(unit)
                .map_err(|e| RestartError::Service { target: target.name.clone(), source: e })?;
        }
        Restart::Command { argv, cwd, env, log, grace, .. } => {
            if let Some(previous) = previous {
                let plan = kill::plan_ids(probe, &[previous], *grace, guard).map_err(|e| {
                    RestartError::Stop { target: target.name.clone(), message: e.to_string() }
                })?;
                let stopped = kill::execute(probe, &plan, guard);
                if !stopped.all_gone() {
                    return Err(RestartError::Stop {
                        target: target.name.clone(),
                        message: "some processes of the old tree survived; not starting another"
                            .to_owned(),
                    });
                }
                report.stopped = Some(stopped);
            }
            if let Some(port) = port_of(&target.selector).or_else(|| target_health_port(restart)) {
                wait_port_free(
                    &target.name,
                    port,
                    grace.saturating_mul(2).saturating_add(Duration::from_secs(5)),
                )?;
            }
            let spawned =
                spawn_detached(argv, cwd.as_deref(), env, log.as_deref()).map_err(|source| {
                    RestartError::Spawn {
                        target: target.name.clone(),
                        program: argv.first().cloned().unwrap_or_default(),
                        source,
                    }
                })?;
            report.spawned_pid = Some(spawned.id());
            child = Some(spawned);
        }
    }
    let timeout = match restart {
        Restart::Command { health_timeout, .. } => *health_timeout,
        _ => crate::config::DEFAULT_HEALTH_TIMEOUT,
    };
    let check = match restart {
        Restart::Command { health: Some(health), .. } => Some(health.clone()),
        _ => port_of(&target.selector)
            .map(|port| Health::Tcp(SocketAddr::from(([127, 0, 0, 1], port)))),
    };
    wait_healthy(&target.name, check.as_ref(), timeout, &mut child)?;
    report.healthy_after = Some(started.elapsed());
    report.new_pid = current_process(probe, target).map(|p| p.pid);
    Ok((report, child))
}

/// The process the target's selector finds now (the lowest pid when several do).
pub fn current_process(probe: &mut Probe, target: &Target) -> Option<ProcessId> {
    let table = probe.processes().ok()?;
    let pids = locate(&target.selector, &table, probe, &mut PortMemo::default()).ok()?;
    pids.first().and_then(|pid| probe.identity(*pid).ok())
}

/// The evidence before acting: the descriptor table (summarised, and listed up to
/// [`SNAPSHOT_FD_LIST`]), the process tree with memory, and why.
pub fn forensic_snapshot(
    probe: &mut Probe,
    id: ProcessId,
    reason: &str,
) -> Option<serde_json::Value> {
    let process = probe.process(id.pid).ok().filter(|p| p.id == id)?;
    let table = probe.fd_table(id.pid).ok().filter(|t| t.id == id)?;
    let summary = FdSummary::from_fds(&table.fds);
    let limit = probe.fd_limit(id.pid).ok();
    let processes = probe.processes().unwrap_or_default();
    let tree: Vec<serde_json::Value> = ProcessTree::new(&processes)
        .subtree(id.pid)
        .unwrap_or_default()
        .iter()
        .map(|node| {
            serde_json::json!({
                "pid": node.process.id.pid,
                "ppid": node.process.ppid,
                "depth": node.depth,
                "name": node.process.name,
                "argv": node.process.argv,
                "rss_bytes": node.process.rss_bytes,
            })
        })
        .collect();
    Some(serde_json::json!({
        "reason": reason,
        "process": {
            "pid": id.pid,
            "start_time": id.start_time,
            "name": process.name,
            "argv": process.argv,
            "rss_bytes": process.rss_bytes,
            "cpu_seconds": process.cpu_time.map(|d| d.as_secs_f64()),
            "threads": process.threads,
        },
        "limit": limit,
        "fds": summary,
        "fd_list": table.fds.iter().take(SNAPSHOT_FD_LIST).collect::<Vec<_>>(),
        "fd_list_truncated": table.fds.len() > SNAPSHOT_FD_LIST,
        "tree": tree,
    }))
}

/// Starts `argv` in a new session (setsid), stdin from /dev/null and output
/// appended to `log` (or discarded), so it outlives Leakwatch and its terminal.
fn spawn_detached(
    argv: &[String],
    cwd: Option<&std::path::Path>,
    env: &std::collections::BTreeMap<String, String>,
    log: Option<&std::path::Path>,
) -> std::io::Result<Child> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command"))?;
    let mut command = Command::new(program);
    command.args(args).envs(env).stdin(Stdio::null());
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    match log {
        Some(path) => {
            let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
            command.stdout(file.try_clone()?).stderr(file);
        }
        None => {
            command.stdout(Stdio::null()).stderr(Stdio::null());
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: the closure runs in the forked child before exec and only calls
        // setsid(2), which is async-signal-safe (signal-safety(7)).
        unsafe {
            command.pre_exec(|| nix::unistd::setsid().map(drop).map_err(std::io::Error::from));
        }
    }
    command.spawn()
}

fn wait_port_free(target: &str, port: u16, limit: Duration) -> Result<(), RestartError> {
    let started = Instant::now();
    loop {
        // std sets SO_REUSEADDR on Unix listeners, so TIME_WAIT does not count as busy.
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if started.elapsed() >= limit {
            return Err(RestartError::PortBusy { target: target.to_owned(), port, waited: limit });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `check` until it passes. Without a check, the spawned process staying
/// alive for a second is the best evidence there is.
fn wait_healthy(
    target: &str,
    check: Option<&Health>,
    timeout: Duration,
    child: &mut Option<Child>,
) -> Result<(), RestartError> {
    let started = Instant::now();
    let Some(check) = check else {
        std::thread::sleep(Duration::from_secs(1).min(timeout));
        return Ok(());
    };
    loop {
        let mut last = match probe_health(check) {
            Ok(()) => return Ok(()),
            Err(reason) => reason,
        };
        // A launcher that failed outright will not become healthy: say why sooner.
        if let Some(spawned) = child.as_mut()
            && let Ok(Some(status)) = spawned.try_wait()
            && !status.success()
        {
            last = format!("{last}; the started command exited with {status}");
        }
        if started.elapsed() >= timeout {
            return Err(RestartError::Unhealthy {
                target: target.to_owned(),
                waited: timeout,
                last,
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One health probe: a TCP connect, or an HTTP GET answered with 2xx.
pub fn probe_health(check: &Health) -> Result<(), String> {
    let connect_timeout = Duration::from_secs(2);
    match check {
        Health::Tcp(address) => TcpStream::connect_timeout(address, connect_timeout)
            .map(drop)
            .map_err(|e| format!("{address}: {e}")),
        Health::Http(url) => {
            let (host, port, path) =
                parse_http_url(url).ok_or_else(|| format!("{url}: not an http:// URL"))?;
            let address = (host.as_str(), port)
                .to_socket_addrs()
                .map_err(|e| format!("{url}: {e}"))?
                .next()
                .ok_or_else(|| format!("{url}: no address"))?;
            let mut stream = TcpStream::connect_timeout(&address, connect_timeout)
                .map_err(|e| format!("{url}: {e}"))?;
            stream.set_read_timeout(Some(connect_timeout)).map_err(|e| e.to_string())?;
            write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                .map_err(|e| format!("{url}: {e}"))?;
            // Read until the status line is complete (a server may send it in pieces).
            let mut head = Vec::with_capacity(64);
            let mut buf = [0u8; 64];
            while !head.contains(&b'\n') && head.len() < 1024 {
                let read = stream.read(&mut buf).map_err(|e| format!("{url}: {e}"))?;
                if read == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..read]);
            }
            let status_line = String::from_utf8_lossy(&head);
            let code = status_line.split_whitespace().nth(1).unwrap_or("");
            if code.starts_with('2') && code.len() == 3 {
                Ok(())
            } else {
                Err(format!("{url}: answered {:?}", status_line.lines().next().unwrap_or("")))
            }
        }
    }
}

/// `http://host[:port][/path]` → (host, port, path). Health endpoints are local
/// and plain HTTP; anything else is refused rather than half-supported.
fn parse_http_url(url: &str) -> Option<(String, u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_owned()),
        None => (rest, "/".to_owned()),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
            (host.trim_start_matches('[').trim_end_matches(']').to_owned(), port.parse().ok()?)
        }
        _ => (authority.to_owned(), 80),
    };
    (!host.is_empty()).then_some((host, port, path))
}

fn port_of(selector: &Selector) -> Option<u16> {
    match selector {
        Selector::Port(port) => Some(*port),
        _ => None,
    }
}

fn target_health_port(restart: &Restart) -> Option<u16> {
    match restart {
        Restart::Command { health: Some(Health::Tcp(address)), .. } => Some(address.port()),
        Restart::Command { health: Some(Health::Http(url)), .. } => {
            parse_http_url(url).map(|(_, port, _)| port)
        }
        _ => None,
    }
}

fn health_text(health: &Health) -> String {
    match health {
        Health::Http(url) => format!("{url} to answer 2xx"),
        Health::Tcp(address) => format!("{address} accepting"),
    }
}

fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| if a.contains(' ') || a.is_empty() { format!("{a:?}") } else { a.clone() })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Automatic restarts allowed per window (`auto_restart = { max, per }`): once
/// `max` restarts fall within `per`, it trips and refuses until the oldest ages out.
#[derive(Debug, Default)]
pub struct CircuitBreaker {
    restarts: VecDeque<UnixMillis>,
}

impl CircuitBreaker {
    /// Whether one more restart is allowed at `now`; if so, it is counted.
    pub fn try_acquire(&mut self, now: UnixMillis, max: u32, per: Duration) -> bool {
        let window = u64::try_from(per.as_millis()).unwrap_or(u64::MAX);
        while self.restarts.front().is_some_and(|at| at.saturating_add(window) <= now) {
            self.restarts.pop_front();
        }
        if self.restarts.len() >= max as usize {
            return false;
        }
        self.restarts.push_back(now);
        true
    }

    /// Restarts counted in the current window.
    pub fn count(&self) -> usize {
        self.restarts.len()
    }
}

mod secs {
    use serde::Serializer;
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_f64(d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_trips_on_the_extra_restart_and_recovers() {
        let mut breaker = CircuitBreaker::default();
        let hour = Duration::from_secs(3600);
        assert!(breaker.try_acquire(0, 3, hour));
        assert!(breaker.try_acquire(1_000, 3, hour));
        assert!(breaker.try_acquire(2_000, 3, hour));
        assert!(!breaker.try_acquire(3_000, 3, hour), "the 4th within the hour trips");
        assert_eq!(breaker.count(), 3);
        assert!(breaker.try_acquire(3_600_000, 3, hour), "the first aged out");
    }

    #[test]
    fn http_urls() {
        assert_eq!(
            parse_http_url("http://127.0.0.1:8787/health"),
            Some(("127.0.0.1".into(), 8787, "/health".into()))
        );
        assert_eq!(parse_http_url("http://localhost"), Some(("localhost".into(), 80, "/".into())));
        assert_eq!(parse_http_url("http://[::1]:9/x"), Some(("::1".into(), 9, "/x".into())));
        assert_eq!(parse_http_url("https://example.com/"), None);
    }

    #[test]
    fn health_probe_tells_2xx_from_others() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            for answer in ["HTTP/1.1 200 OK\r\n\r\n", "HTTP/1.1 503 Busy\r\n\r\n"] {
                let (mut stream, _) = listener.accept().unwrap();
                // Read the whole request first: closing with unread data resets.
                let mut request = Vec::new();
                let mut buf = [0u8; 512];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let read = stream.read(&mut buf).unwrap();
                    if read == 0 {
                        break;
                    }
                    request.extend_from_slice(&buf[..read]);
                }
                stream.write_all(answer.as_bytes()).unwrap();
            }
        });
        let check = Health::Http(format!("http://127.0.0.1:{port}/health"));
        assert_eq!(probe_health(&check), Ok(()));
        assert!(probe_health(&check).unwrap_err().contains("503"));
        server.join().unwrap();
    }
}
