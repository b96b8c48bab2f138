//! What the CLI's integration tests share: a scratch directory that the
//! `leakwatch` they run reads its config from and keeps its data in, the
//! daemon run on it, and that daemon serving `/metrics` on a port of its own.
//! One copy, so every test file points the binary at its scratch the same way
//! (and a new environment variable is added once), and the port race is
//! handled once.
// Each test file uses part of it.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)]

use leakwatch_test_helper::wait_until;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The `leakwatch` binary under test.
pub(crate) const LEAKWATCH: &str = env!("CARGO_BIN_EXE_leakwatch");

/// A scratch directory, removed on drop, with LEAKWATCH_CONFIG pointing at its
/// `config.toml` and LEAKWATCH_DATA_DIR at its `data`.
pub(crate) struct Scratch {
    dir: tempfile::TempDir,
    /// Without a `config.toml`, run in automatic mode (no config file named,
    /// and a home of its own) rather than with a named file that is missing.
    automatic: bool,
}

impl Scratch {
    /// A new scratch directory; `name` shows in its path, for a failing test's
    /// leftovers.
    pub(crate) fn new(name: &str) -> Self {
        let dir = tempfile::Builder::new().prefix(&format!("leakwatch-{name}-")).tempdir().unwrap();
        Self { dir, automatic: false }
    }

    /// A scratch directory whose commands run in automatic mode until a
    /// `config.toml` is written in it.
    pub(crate) fn automatic(name: &str) -> Self {
        Self { automatic: true, ..Self::new(name) }
    }

    /// The scratch directory itself.
    pub(crate) fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The config file `leakwatch` is pointed at.
    pub(crate) fn config(&self) -> PathBuf {
        self.path("config.toml")
    }

    /// The data directory `leakwatch` is pointed at.
    pub(crate) fn data(&self) -> PathBuf {
        self.path("data")
    }

    /// `program` with the scratch's environment, stdin closed, and no session
    /// bus (so no desktop notification escapes a test).
    pub(crate) fn command_of(&self, program: impl AsRef<OsStr>, args: &[&str]) -> Command {
        let mut command = Command::new(program);
        command
            .args(args)
            .env("LEAKWATCH_CONFIG", self.config())
            .env("LEAKWATCH_DATA_DIR", self.data())
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .stdin(Stdio::null());
        if self.automatic && !self.config().exists() {
            command
                .env_remove("LEAKWATCH_CONFIG")
                .env_remove("XDG_CONFIG_HOME")
                .env("HOME", self.path("home"));
        }
        command
    }

    /// `leakwatch ARGS` with the scratch's environment.
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        self.command_of(LEAKWATCH, args)
    }

    /// Runs `leakwatch ARGS` to its end, stdin closed.
    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    pub(crate) fn write_config(&self, text: &str) -> PathBuf {
        let path = self.config();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `leakwatch daemon`, its stderr collected as it is written.
    pub(crate) fn daemon(&self) -> Daemon {
        self.daemon_via(&[])
    }

    /// The daemon run through `wrapper` (e.g. `prlimit --nofile=N:N --`).
    pub(crate) fn daemon_via(&self, wrapper: &[&str]) -> Daemon {
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut args: Vec<&str> = rest.to_vec();
                args.extend([LEAKWATCH, "daemon"]);
                self.command_of(program, &args)
            }
            None => self.command(&["daemon"]),
        };
        let mut child = command.stderr(Stdio::piped()).spawn().unwrap();
        let log = collect_lines(child.stderr.take().unwrap());
        Daemon { child, log }
    }
}

/// What a child writes to `stream`, line by line as it is written, read by a
/// thread of its own (so a test can look while the child runs).
pub(crate) fn collect_lines(stream: impl std::io::Read + Send + 'static) -> Arc<Mutex<String>> {
    let log = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    log
}

/// A running `leakwatch daemon`, killed on drop.
pub(crate) struct Daemon {
    pub(crate) child: Child,
    log: Arc<Mutex<String>>,
}

impl Daemon {
    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits (generously) for `needle` in the log.
    pub(crate) fn wait_for_log(&self, needle: &str) -> bool {
        wait_until(Duration::from_secs(60), || self.log().contains(needle))
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A port nothing listens on now (bound once and released). Another process
/// (nextest runs tests in parallel processes) may take it before it is bound
/// again: use it only where a taken port is noticed and another one tried, as
/// [`daemon_serving_metrics`] does.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Attempts at a free port before a test gives up: each fails only when
/// another process took the port in the moment between finding it free and
/// binding it.
pub(crate) const PORT_ATTEMPTS: usize = 5;

/// `GET path` on 127.0.0.1:`port`, the whole response; `None` when nothing
/// answers (within a generous 20 s, for a loaded machine).
pub(crate) fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

/// Whether `pid` holds a socket listening on `port`: what a connect cannot
/// tell once another process may have bound the port.
pub(crate) fn listens(pid: u32, port: u16) -> bool {
    let probe = leakwatch_probe::Probe::new().unwrap();
    leakwatch_core::actions::locate::listens_on(&probe, pid, port)
}

/// The daemon, run through `wrapper` (e.g. `prlimit --nofile=N:N --`) with the
/// config `config(port)`, listening on a port of its own once `ready(port)`
/// holds (say, `/metrics` shows a target's count); and that port. `config`
/// must put `[metrics] listen` on 127.0.0.1:`port`.
///
/// Race-free (issue 13): when another process took the port between
/// [`free_port`] and the daemon's bind, the daemon exits saying it cannot
/// listen, and is started again on another port; a `ready` answered by
/// another process on the port does not count, only the daemon's own socket.
pub(crate) fn daemon_serving_metrics(
    scratch: &Scratch,
    wrapper: &[&str],
    config: impl Fn(u16) -> String,
    mut ready: impl FnMut(u16) -> bool,
) -> (Daemon, u16) {
    let mut logs = String::new();
    for _ in 0..PORT_ATTEMPTS {
        let port = free_port();
        scratch.write_config(&config(port));
        let mut daemon = scratch.daemon_via(wrapper);
        let mut exited = false;
        let settled = wait_until(Duration::from_secs(60), || {
            exited = daemon.child.try_wait().unwrap().is_some();
            exited || (listens(daemon.pid(), port) && ready(port))
        });
        if settled && !exited {
            return (daemon, port);
        }
        // The log is read to its end by another thread: wait for the line
        // that says why it exited.
        assert!(
            exited && daemon.wait_for_log("cannot listen on"),
            "the daemon never got ready on port {port}; /metrics answered:\n{}\nits log:\n{}",
            http_get(port, "/metrics").unwrap_or_default(),
            daemon.log()
        );
        logs.push_str(&daemon.log());
    }
    panic!("no free port in {PORT_ATTEMPTS} attempts:\n{logs}");
}
