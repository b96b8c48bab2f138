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

use crate::actions::kill::{self, Guard, KillReport};
use crate::actions::locate::{NotFound, PortMemo, listens_on, locate};
use crate::config::{Health, Restart, Selector, Target};
use crate::model::{UnixMillis, unix_millis};
use crate::store::Snapshot;
use crate::summary::FdSummary;
use crate::tree::ProcessTree;
use leakwatch_probe::{Probe, ProcessId};
use serde::{Deserialize, Serialize};
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
    /// Whether the old process runs could not be told (its pidfile could not
    /// be read in time): a `command` restart would start a second copy beside
    /// one that may still run, so it starts nothing.
    #[error("{target}: cannot tell whether it is running ({why}); nothing was stopped or started")]
    Unknown { target: String, why: String },
    #[error("{target}: port {port} still in use {waited:?} after stopping it")]
    PortBusy { target: String, port: u16, waited: Duration },
    #[error(
        "{target}: refusing to restart: `{program}` is not found on PATH {searched}; nothing \
         was stopped. Use a full path in `command`, or give the target \
         `env = {{ PATH = \"...\" }}`"
    )]
    ProgramNotFound { target: String, program: String, searched: String },
    // Causes are in the messages and not also `source()`s, so that a chain
    // printed with its causes (`{:#}`) names each once.
    #[error("{target}: could not start {program}: {cause}")]
    Spawn { target: String, program: String, cause: std::io::Error },
    #[error("{target}: {cause}")]
    Service { target: String, cause: crate::actions::service::ServiceError },
    #[error("{target}: not healthy after {waited:?}: {last}")]
    Unhealthy { target: String, waited: Duration, last: String },
}

/// How a target is restarted: by its supervisor, or by Leakwatch running its
/// command. In JSON `"launchd"`, `"systemd"` or `"command"`, as the config keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// `launchctl kickstart -k`.
    Launchd,
    /// `systemctl --user restart`.
    Systemd,
    /// Leakwatch stops the tree and starts the configured command.
    Command,
}

impl Strategy {
    /// The strategy a `[watch.restart]` section configures.
    pub const fn of(restart: &Restart) -> Strategy {
        match restart {
            Restart::Launchd(_) => Strategy::Launchd,
            Restart::Systemd(_) => Strategy::Systemd,
            Restart::Command { .. } => Strategy::Command,
        }
    }

    /// The name, as in JSON and the config.
    pub const fn name(self) -> &'static str {
        match self {
            Strategy::Launchd => "launchd",
            Strategy::Systemd => "systemd",
            Strategy::Command => "command",
        }
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a restart did, for the CLI, the app and the event log.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct RestartReport {
    pub target: String,
    pub strategy: Strategy,
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

/// Whether a target's process runs now, as its selector tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Running(ProcessId),
    NotRunning,
    /// It cannot be told now, and why: the pidfile could not be read in time
    /// (a hung mount), or the process table could not be read. Never taken
    /// for "not running": a restart would start a second copy beside one that
    /// may still run.
    Unknown(String),
}

impl Found {
    /// The running process, if one is known to run.
    pub const fn process(&self) -> Option<ProcessId> {
        match self {
            Found::Running(id) => Some(*id),
            Found::NotRunning | Found::Unknown(_) => None,
        }
    }
}

/// The plan shown before a restart: what will happen, in words.
pub fn describe(target: &Target, previous: &Found, plan: Option<&kill::KillPlan>) -> String {
    let who = match previous {
        Found::Running(p) => format!("pid {}", p.pid),
        Found::NotRunning => "(not running)".to_owned(),
        Found::Unknown(why) => format!("(whether it runs is unknown: {why})"),
    };
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
        Some(Restart::Command { argv, cwd, health_timeout, .. }) => {
            let mut text = match (plan, previous) {
                (Some(plan), _) => plan.describe(),
                // What `restart` does then: refuse, rather than start a copy
                // beside one that may run (and say so before it is asked).
                (None, Found::Unknown(why)) => {
                    return format!(
                        "{}: cannot tell whether it is running ({why}); a restart now would \
                         stop nothing and start nothing: try again once it can be told",
                        target.name
                    );
                }
                (None, _) => format!("{}: nothing running to stop", target.name),
            };
            text.push_str(&format!("\nthen start: {}", shell_words(argv)));
            if let Some(cwd) = cwd {
                text.push_str(&format!(" (in {})", cwd.display()));
            }
            if let Some(check) = health_check(target) {
                text.push_str(&format!("\nand wait up to {health_timeout:?} for {check}"));
            }
            text
        }
    }
}

/// What a `command` restart of `target` waits for once the command is started,
/// in words ("http://127.0.0.1:8787/health answering 2xx", "port 8787
/// accepting"): the configured `health`, else the port the target is found by.
/// `None` when it waits for nothing, or when its supervisor restarts it.
pub fn health_check(target: &Target) -> Option<String> {
    match &target.restart {
        Some(Restart::Command { health, .. }) => health
            .as_ref()
            .map(health_text)
            .or_else(|| port_of(&target.selector).map(|p| format!("port {p} accepting"))),
        _ => None,
    }
}

/// Whether a restart of `target` starts a command and then cannot tell whether
/// it came back up: no `health`, and no port to wait for. The restart dialog
/// warns about it (issue 12).
pub fn lacks_health_check(target: &Target) -> bool {
    matches!(target.restart, Some(Restart::Command { .. })) && health_check(target).is_none()
}

/// Restarts `target` now. `reason` and `diagnosis` (the engine's one-line
/// diagnosis of the target, if it has one) go into the forensic snapshot;
/// `snapshot` receives it (to be written to the store) before anything is
/// signalled. Manual restarts (CLI, app) and automatic ones all come here, so
/// every snapshot before a restart carries the same evidence.
pub fn restart(
    probe: &mut Probe,
    target: &Target,
    guard: &Guard,
    reason: &str,
    diagnosis: Option<&str>,
    snapshot: &mut dyn FnMut(Snapshot),
) -> Result<(RestartReport, Option<Child>), RestartError> {
    let started = Instant::now();
    let restart =
        target.restart.as_ref().ok_or_else(|| RestartError::NotConfigured(target.name.clone()))?;
    let found = find_process(probe, target);
    if let (Restart::Command { .. }, Found::Unknown(why)) = (restart, &found) {
        return Err(RestartError::Unknown { target: target.name.clone(), why: why.clone() });
    }
    let previous = found.process();
    let mut report = RestartReport {
        target: target.name.clone(),
        strategy: Strategy::of(restart),
        previous,
        stopped: None,
        spawned_pid: None,
        new_pid: None,
        healthy_after: None,
        snapshot_saved: false,
    };
    if let Some(previous) = previous
        && let Some(body) = forensic_snapshot(probe, previous, reason, diagnosis)
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
            crate::actions::service::launchd_restart(label, uid)
                .map_err(|e| RestartError::Service { target: target.name.clone(), cause: e })?;
        }
        Restart::Systemd(unit) => {
            crate::actions::service::systemd_restart(unit)
                .map_err(|e| RestartError::Service { target: target.name.clone(), cause: e })?;
        }
        Restart::Command { argv, cwd, env, log, grace, .. } => {
            // Before anything is stopped: a program that cannot be found would
            // leave the target down (launchd gives the app and the LaunchAgent
            // PATH=/usr/bin:/bin:/usr/sbin:/sbin, without npm, node, uv or brew's).
            let launch = resolve_launch(argv, cwd.as_deref(), env, login_shell_path).map_err(
                |searched| RestartError::ProgramNotFound {
                    target: target.name.clone(),
                    program: argv.first().cloned().unwrap_or_default(),
                    searched,
                },
            )?;
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
                    probe,
                    &target.name,
                    port,
                    grace.saturating_mul(2).saturating_add(Duration::from_secs(5)),
                )?;
            }
            let spawned = spawn_detached(&launch, argv, cwd.as_deref(), env, log.as_deref())
                .map_err(|source| RestartError::Spawn {
                    target: target.name.clone(),
                    program: argv.first().cloned().unwrap_or_default(),
                    cause: source,
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
        Restart::Command { health: Some(health), .. } => Some(Check::Configured(health.clone())),
        _ => port_of(&target.selector).map(Check::Port),
    };
    wait_healthy(&target.name, check.as_ref(), timeout, &mut child)?;
    report.healthy_after = Some(started.elapsed());
    report.new_pid = find_process(probe, target).process().map(|p| p.pid);
    Ok((report, child))
}

/// Whether the target's process runs now (the lowest pid when several do), or
/// that it cannot be told.
pub fn find_process(probe: &mut Probe, target: &Target) -> Found {
    let table = match probe.processes() {
        Ok(table) => table,
        Err(e) => return Found::Unknown(format!("the process table could not be read: {e}")),
    };
    match locate(&target.selector, &table, probe, &mut PortMemo::default()) {
        Ok(pids) => pids
            .first()
            .and_then(|pid| probe.identity(*pid).ok())
            .map_or(Found::NotRunning, Found::Running),
        Err(NotFound::PidfileTimedOut(path)) => {
            Found::Unknown(format!("its pidfile {path} could not be read in time; a hung mount?"))
        }
        Err(_) => Found::NotRunning,
    }
}

/// The evidence before acting: the descriptor table (summarised, and listed up to
/// [`SNAPSHOT_FD_LIST`]), the process tree with memory, why, and what the
/// engine made of the leak (`diagnosis`, left out when it has none).
pub fn forensic_snapshot(
    probe: &mut Probe,
    id: ProcessId,
    reason: &str,
    diagnosis: Option<&str>,
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
    let mut body = serde_json::json!({
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
    });
    if let (Some(line), Some(fields)) = (diagnosis, body.as_object_mut()) {
        fields.insert("diagnosis".to_owned(), line.into());
    }
    Some(body)
}

/// Starts `argv` (its program as `launch` resolved it) in a new session (setsid),
/// stdin from /dev/null and output appended to `log` (or discarded), so it
/// outlives Leakwatch and its terminal.
fn spawn_detached(
    launch: &Launch,
    argv: &[String],
    cwd: Option<&std::path::Path>,
    env: &std::collections::BTreeMap<String, String>,
    log: Option<&std::path::Path>,
) -> std::io::Result<Child> {
    let args = argv.get(1..).unwrap_or_default();
    let mut command = Command::new(&launch.program);
    // The PATH it was found with, so that what it starts in turn (`npm` runs
    // `node`) is found the same way; the target's own env still wins.
    command.env("PATH", &launch.path).args(args).envs(env).stdin(Stdio::null());
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    match log {
        Some(path) => {
            // The output of the user's service: owner-only, like the history.
            let file = crate::private::open_append(path)?;
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

/// Waits until nobody listens on `port`. Binding a test socket cannot tell: on
/// macOS a bind to 127.0.0.1 with SO_REUSEADDR succeeds while a wildcard listener
/// holds the port (`in_pcbbind` looks for an exact match), and a listener on
/// `::1` does not stop a bind on 127.0.0.1 anywhere.
fn wait_port_free(
    probe: &mut Probe,
    target: &str,
    port: u16,
    limit: Duration,
) -> Result<(), RestartError> {
    let started = Instant::now();
    loop {
        if !port_in_use(probe, port) {
            return Ok(());
        }
        if started.elapsed() >= limit {
            return Err(RestartError::PortBusy { target: target.to_owned(), port, waited: limit });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether anyone listens on TCP `port`: a loopback address (IPv4 or IPv6)
/// accepts connections on it, or the probe finds a listening socket on it (one
/// bound to another address only, say). A socket in TIME_WAIT does not count.
pub fn port_in_use(probe: &mut Probe, port: u16) -> bool {
    if probe_port(port).is_ok() {
        return true;
    }
    match probe.listening_inodes(port) {
        Ok(inodes) => !inodes.is_empty(),
        // No socket inodes here (macOS): ask each process we may read.
        Err(_) => probe.processes().is_ok_and(|table| {
            table.iter().any(|p| !p.is_kernel_thread && listens_on(probe, p.id.pid, port))
        }),
    }
}

/// The loopback addresses a local server may listen on: `localhost` is `::1`
/// first on macOS, and Node 17+ and Vite listen there only.
fn loopback(port: u16) -> [SocketAddr; 2] {
    [
        SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port)),
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
    ]
}

/// A port target's health: something accepts connections on `port` at
/// 127.0.0.1 or at ::1.
pub fn probe_port(port: u16) -> Result<(), String> {
    connect_any(&loopback(port), Duration::from_secs(2)).map(drop)
}

/// What a restart waits for.
#[derive(Debug, Clone)]
enum Check {
    /// The target's `health`.
    Configured(Health),
    /// A port target without one: the port accepting connections.
    Port(u16),
}

/// How a restart command is started: its program, found before anything was
/// stopped, and the PATH it was found on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub program: std::path::PathBuf,
    pub path: std::ffi::OsString,
}

/// Finds the program of `argv` as execvp(3) would, on the target's own
/// `env.PATH` if it sets one, else on this process's PATH followed by the user's
/// login-shell PATH (`login_path`, asked only when needed). Err: the PATH
/// searched, for the message.
pub fn resolve_launch(
    argv: &[String],
    cwd: Option<&std::path::Path>,
    env: &std::collections::BTreeMap<String, String>,
    login_path: impl FnOnce() -> Option<std::ffi::OsString>,
) -> Result<Launch, String> {
    let Some(program) = argv.first().filter(|p| !p.is_empty()) else {
        return Err("(an empty command has no program)".to_owned());
    };
    if let Some(path) = env.get("PATH") {
        let path = std::ffi::OsString::from(path);
        return resolve_program(program, cwd, &path)
            .map(|program| Launch { program, path: path.clone() })
            .ok_or_else(|| format!("{} (the target's env)", path.to_string_lossy()));
    }
    let own = std::env::var_os("PATH").unwrap_or_default();
    if let Some(found) = resolve_program(program, cwd, &own) {
        return Ok(Launch { program: found, path: own });
    }
    let mut dirs: Vec<std::path::PathBuf> = std::env::split_paths(&own).collect();
    if let Some(login) = login_path() {
        for dir in std::env::split_paths(&login) {
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
    }
    let path = std::env::join_paths(&dirs).unwrap_or(own);
    resolve_program(program, cwd, &path)
        .map(|program| Launch { program, path: path.clone() })
        .ok_or_else(|| format!("{} (Leakwatch's and the login shell's)", path.to_string_lossy()))
}

/// `program` as execvp(3) finds it: a name with a `/` is a path (relative to
/// `cwd`), anything else the first executable file of that name in `path`.
pub fn resolve_program(
    program: &str,
    cwd: Option<&std::path::Path>,
    path: &std::ffi::OsStr,
) -> Option<std::path::PathBuf> {
    if program.contains('/') {
        let candidate = match cwd {
            Some(cwd) => cwd.join(program),
            None => std::path::PathBuf::from(program),
        };
        return is_executable(&candidate).then_some(candidate);
    }
    std::env::split_paths(path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &std::path::Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

/// The user's login-shell PATH (`$SHELL -l -c 'printf %s "$PATH"'`), read once per
/// process: where Homebrew, nvm, uv and friends put their programs, which a
/// process started by launchd does not inherit.
fn login_shell_path() -> Option<std::ffi::OsString> {
    static PATH: std::sync::OnceLock<Option<std::ffi::OsString>> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let shell = std::env::var_os("SHELL")
            .or_else(|| cfg!(target_os = "macos").then(|| "/bin/zsh".into()))?;
        shell_path(std::path::Path::new(&shell), Duration::from_secs(5))
    })
    .clone()
}

/// What `shell -l -c 'printf %s "$PATH"'` prints, if it does so within `limit`
/// (a login script may wait for input or hang: it is killed then).
pub fn shell_path(shell: &std::path::Path, limit: Duration) -> Option<std::ffi::OsString> {
    let mut child = Command::new(shell)
        .args(["-l", "-c", "printf %s \"$PATH\""])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => break,
            Ok(None) if started.elapsed() < limit => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let mut out = Vec::new();
    child.stdout.take()?.read_to_end(&mut out).ok()?;
    let text = String::from_utf8(out).ok()?;
    let line = text.lines().last()?.trim();
    (!line.is_empty()).then(|| line.into())
}

/// Polls `check` until it passes. Without a check, the spawned process staying
/// alive for a second is the best evidence there is.
fn wait_healthy(
    target: &str,
    check: Option<&Check>,
    timeout: Duration,
    child: &mut Option<Child>,
) -> Result<(), RestartError> {
    let started = Instant::now();
    let Some(check) = check else {
        std::thread::sleep(Duration::from_secs(1).min(timeout));
        return Ok(());
    };
    loop {
        let outcome = match check {
            Check::Configured(health) => probe_health(health),
            Check::Port(port) => probe_port(*port),
        };
        let mut last = match outcome {
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
            // Every address the name resolves to, in order: `localhost` is ::1
            // first on macOS, and a server may listen on only one of them.
            let addresses: Vec<SocketAddr> = (host.as_str(), port)
                .to_socket_addrs()
                .map_err(|e| format!("{url}: {e}"))?
                .collect();
            let mut stream = connect_any(&addresses, connect_timeout)
                .map_err(|reason| format!("{url}: {reason}"))?;
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

/// A connection to the first of `addresses` that accepts one; else why none did.
fn connect_any(addresses: &[SocketAddr], timeout: Duration) -> Result<TcpStream, String> {
    let mut failures = Vec::with_capacity(addresses.len());
    for address in addresses {
        match TcpStream::connect_timeout(address, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => failures.push(format!("{address}: {e}")),
        }
    }
    if failures.is_empty() { Err("no address".to_owned()) } else { Err(failures.join("; ")) }
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
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &std::path::Path, name: &str, body: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn program_is_found_as_execvp_would_executables_only() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        let other = dir.path().join("other");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        // Not executable in the first directory, executable in the second.
        std::fs::write(bin.join("npm"), "not a program").unwrap();
        let npm = script(&other, "npm", "exit 0");
        let path = std::env::join_paths([&bin, &other]).unwrap();
        assert_eq!(resolve_program("npm", None, &path), Some(npm.clone()));
        assert_eq!(resolve_program("node", None, &path), None);
        // A name with a slash is a path, relative to the command's cwd.
        assert_eq!(resolve_program("./npm", Some(&other), &path), Some(other.join("./npm")));
        assert_eq!(resolve_program(npm.to_str().unwrap(), None, "".as_ref()), Some(npm));
        assert_eq!(resolve_program("./npm", Some(&bin), &path), None);
    }

    #[test]
    fn restart_program_missing_from_launchds_path_is_found_on_the_login_shells() {
        let dir = tempfile::tempdir().unwrap();
        let brew = dir.path().join("homebrew/bin");
        std::fs::create_dir_all(&brew).unwrap();
        let program = format!("lw-test-server-{}", std::process::id());
        let found = script(&brew, &program, "exit 0");
        let argv = vec![program.clone(), "start".to_owned()];
        let login = brew.clone().into_os_string();
        let launch = resolve_launch(&argv, None, &BTreeMap::new(), || Some(login)).unwrap();
        assert_eq!(launch.program, found);
        // The child gets a PATH that has it, so what it starts is found too.
        assert!(std::env::split_paths(&launch.path).any(|dir| dir == brew));
        // Neither PATH has it: refused, saying where it looked.
        let searched = resolve_launch(&argv, None, &BTreeMap::new(), || None).unwrap_err();
        assert!(searched.contains("login shell"), "{searched}");
    }

    #[test]
    fn restart_program_is_looked_for_on_the_targets_own_path_when_it_sets_one() {
        let dir = tempfile::tempdir().unwrap();
        let program = format!("lw-test-tool-{}", std::process::id());
        let found = script(dir.path(), &program, "exit 0");
        let env = BTreeMap::from([("PATH".to_owned(), dir.path().display().to_string())]);
        let asked = std::cell::Cell::new(false);
        let launch = resolve_launch(&[program], None, &env, || {
            asked.set(true);
            None
        })
        .unwrap();
        assert_eq!(launch.program, found);
        assert!(!asked.get(), "the login shell is not asked when the target says");
        let missing = resolve_launch(&["sh".to_owned()], None, &env, || None).unwrap_err();
        assert!(missing.contains("the target's env"), "{missing}");
    }

    #[test]
    fn login_shell_path_is_read_and_a_hung_shell_is_given_up() {
        let dir = tempfile::tempdir().unwrap();
        let shell = script(
            dir.path(),
            "fake-shell",
            "echo 'Last login: today'\necho '/opt/homebrew/bin:/usr/bin'",
        );
        assert_eq!(
            shell_path(&shell, Duration::from_secs(30)),
            Some("/opt/homebrew/bin:/usr/bin".into())
        );
        let hung = script(dir.path(), "hung-shell", "exec sleep 30");
        assert_eq!(shell_path(&hung, Duration::from_millis(300)), None);
        let failing = script(dir.path(), "failing-shell", "exit 1");
        assert_eq!(shell_path(&failing, Duration::from_secs(30)), None);
    }

    #[test]
    fn port_target_served_on_ipv6_loopback_only_is_healthy() {
        let server = std::net::TcpListener::bind("[::1]:0").unwrap();
        let port = server.local_addr().unwrap().port();
        assert_eq!(probe_port(port), Ok(()));
        drop(server);
        let error = probe_port(port).unwrap_err();
        assert!(error.contains("127.0.0.1") && error.contains("[::1]"), "{error}");
    }

    #[test]
    fn http_health_tries_every_address_not_only_the_first() {
        use socket2::{Domain, Socket, Type};
        // The IPv4 side of the port must refuse: it is held by a socket bound
        // but not listening (and without SO_REUSEADDR, so no other test can
        // bind it meanwhile and answer there: issue 13's port race). A port
        // whose IPv4 side is already taken is traded for another.
        let (server, port, _refusing) = (0..20)
            .find_map(|_| {
                let server = std::net::TcpListener::bind("[::1]:0").unwrap();
                let port = server.local_addr().unwrap().port();
                let v4 = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
                let address = SocketAddr::from(([127, 0, 0, 1], port));
                v4.bind(&address.into()).ok().map(|()| (server, port, v4))
            })
            .unwrap();
        // Two connections: the bare connect, then the health check's GET.
        let answer = std::thread::spawn(move || {
            for _ in 0..2 {
                let (mut conn, _) = server.accept().unwrap();
                // The whole request (or EOF) before answering: answering and
                // closing after a partial read made the client's write fail
                // with EPIPE now and then (a flaky "Broken pipe").
                let mut request = Vec::new();
                let mut buf = [0u8; 512];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            }
        });
        // As `localhost` resolves on macOS, but in the other order: the IPv4
        // address first, where nothing listens.
        let addresses = [
            SocketAddr::from(([127, 0, 0, 1], port)),
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
        ];
        let stream = connect_any(&addresses, Duration::from_secs(5)).unwrap();
        assert!(stream.peer_addr().unwrap().is_ipv6());
        drop(stream);
        // And through the health check itself, by the address literal.
        let health = Health::Http(format!("http://[::1]:{port}/health"));
        assert_eq!(probe_health(&health), Ok(()));
        answer.join().unwrap();
    }

    #[test]
    fn port_held_on_ipv6_only_is_not_free_although_ipv4_binds() {
        let mut probe = Probe::new().unwrap();
        let server = std::net::TcpListener::bind("[::1]:0").unwrap();
        let port = server.local_addr().unwrap().port();
        // What the old check did, and why it was wrong: this bind succeeds.
        let bound = std::net::TcpListener::bind(("127.0.0.1", port));
        assert!(bound.is_ok());
        drop(bound);
        assert!(port_in_use(&mut probe, port));
        drop(server);
        assert!(!port_in_use(&mut probe, port));
    }

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

    /// issue 12: the restart dialog read "no health check" out of the plan's
    /// words; the app now asks [`lacks_health_check`] and sends a typed flag.
    #[test]
    fn a_command_restart_without_health_or_port_lacks_a_health_check() {
        let config = crate::config::Config::parse(
            r#"
[[watch]]
name = "bare"
process = "bare-server"
restart = { command = ["bare-server"] }

[[watch]]
name = "checked"
process = "checked-server"
restart = { command = ["checked-server"], health = "http://127.0.0.1:8787/health" }

[[watch]]
name = "by-port"
port = 8788
restart = { command = ["by-port-server"] }

[[watch]]
name = "supervised"
process = "agent"
restart = { systemd = "agent.service" }

[[watch]]
name = "unrestartable"
process = "other"
"#,
            std::path::Path::new("test.toml"),
        )
        .unwrap();
        let lacks = |name: &str| lacks_health_check(config.target(name).unwrap());
        assert!(lacks("bare"));
        assert!(!lacks("checked"));
        assert!(!lacks("by-port"));
        assert!(!lacks("supervised"));
        assert!(!lacks("unrestartable"));
        let text = |name: &str| describe(config.target(name).unwrap(), &Found::NotRunning, None);
        assert!(!text("bare").contains("and wait up to"), "{}", text("bare"));
        assert!(text("by-port").contains("port 8788 accepting"), "{}", text("by-port"));
        assert_eq!(
            Strategy::of(config.target("supervised").unwrap().restart.as_ref().unwrap()),
            Strategy::Systemd
        );
    }

    /// Regression: a pidfile read that timed out (a hung mount) was taken for
    /// the target not running, so the restart plan said "nothing running to
    /// stop" and a `command` restart started a second copy beside one that may
    /// still run. The plan now says the state is unknown and the restart
    /// refuses, stopping and starting nothing.
    #[test]
    fn timed_out_pidfile_is_unknown_in_the_plan_and_the_restart_starts_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // `.hung`: the crate's test pidfile reader never returns from it.
        let pidfile = dir.path().join("app.pid.hung");
        let started = dir.path().join("started");
        let config = crate::config::Config::parse(
            &format!(
                "[[watch]]\nname = \"stuck\"\npidfile = '{}'\n\n[watch.restart]\n\
                 command = [\"touch\", '{}']\n",
                pidfile.display(),
                started.display()
            ),
            std::path::Path::new("test.toml"),
        )
        .unwrap();
        let target = config.target("stuck").unwrap();
        let mut probe = Probe::new().unwrap();
        let found = find_process(&mut probe, target);
        let Found::Unknown(why) = &found else { panic!("not unknown: {found:?}") };
        assert!(why.contains("could not be read in time") && why.contains("app.pid.hung"), "{why}");
        let text = describe(target, &found, None);
        assert!(!text.contains("nothing running"), "{text}");
        assert!(text.contains("cannot tell whether it is running"), "{text}");
        let mut snapshots = 0;
        let error =
            restart(&mut probe, target, &Guard::from_config(&config), "test", None, &mut |_| {
                snapshots += 1;
            })
            .unwrap_err();
        assert!(matches!(&error, RestartError::Unknown { target, .. } if target == "stuck"));
        assert!(error.to_string().contains("nothing was stopped or started"), "{error}");
        assert_eq!(snapshots, 0);
        assert!(!started.exists(), "the command was started");
    }
}
