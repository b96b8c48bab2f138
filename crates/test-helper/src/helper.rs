//! [`Helper`], the test's handle on one `lw-helper` process, and [`wait_until`].
//!
//! A test must never leave processes behind, whatever it did to the helper. So the
//! helper is started as the leader of its own process group (which every child and
//! tree member it spawns joins), and dropping the handle SIGKILLs that group, SIGKILLs
//! any double-forked grandchild it reported (those left the group with `setsid`), and
//! reaps the helper.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// How long [`Helper::cmd`] waits for a reply unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `lw-helper`, killed and reaped on drop.
#[derive(Debug)]
pub struct Helper {
    child: Child,
    pid: u32,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    timeout: Duration,
    /// Pids outside the helper's process group to SIGKILL on drop, with their start
    /// time where the OS tells it, so a recycled pid is never hit.
    extra: Vec<(u32, Option<u64>)>,
    reaped: bool,
}

impl Helper {
    /// Starts `lw-helper` with no arguments and waits for its `ready` line.
    pub fn spawn() -> io::Result<Helper> {
        Helper::spawn_with(&[])
    }

    /// Starts `lw-helper ARGS...` (e.g. `["--exec", "open pipe 3"]`) and waits for its
    /// `ready` line. Its stderr goes to the test's stderr.
    pub fn spawn_with(args: &[&str]) -> io::Result<Helper> {
        let bin = crate::try_helper_binary()?;
        let mut child = Command::new(&bin)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("spawn {}: {e}", bin.display())))?;
        let pid = child.id();
        let stdin = child.stdin.take();
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other("lw-helper has no stdout pipe"));
        };
        // A reader thread turns stdout into a channel so every read can time out.
        let (tx, lines) = mpsc::channel();
        thread::Builder::new().name(format!("lw-helper-{pid}")).spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        })?;
        let mut helper = Helper {
            child,
            pid,
            stdin,
            lines,
            timeout: DEFAULT_TIMEOUT,
            extra: Vec::new(),
            reaped: false,
        };
        loop {
            match helper.lines.recv_timeout(helper.timeout) {
                Ok(line) if line.starts_with("ready") => return Ok(helper),
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "lw-helper did not get ready in time",
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = helper.wait_timeout(Duration::from_secs(5));
                    return Err(io::Error::other(format!(
                        "lw-helper exited before ready ({})",
                        status.map_or_else(|| "still running".to_owned(), |s| s.to_string())
                    )));
                }
            }
        }
    }

    /// The helper's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// How long [`cmd`](Self::cmd) waits for a reply (default [`DEFAULT_TIMEOUT`]).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Sends one command line; returns the words after `ok`, or the message after
    /// `err` (or why there was no reply). Pids reported by `double-fork` are
    /// remembered and SIGKILLed on drop.
    pub fn cmd(&mut self, line: &str) -> Result<Vec<String>, String> {
        if line.contains(['\n', '\r']) {
            return Err("a command is one line".to_owned());
        }
        let stdin = self.stdin.as_mut().ok_or("stdin is closed")?;
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("helper {} is gone: {e}", self.pid))?;
        let reply = match self.lines.recv_timeout(self.timeout) {
            Ok(reply) => reply,
            Err(RecvTimeoutError::Timeout) => {
                return Err(format!("no reply to `{line}` within {:?}", self.timeout));
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(format!("helper {} exited without replying", self.pid));
            }
        };
        let words = if reply == "ok" {
            Vec::new()
        } else if let Some(data) = reply.strip_prefix("ok ") {
            data.split_whitespace().map(str::to_owned).collect()
        } else if let Some(msg) = reply.strip_prefix("err") {
            return Err(msg.trim().to_owned());
        } else {
            return Err(format!("unexpected reply: {reply}"));
        };
        if line.split_whitespace().next() == Some("double-fork")
            && let Some(pid) = words.first().and_then(|w| w.parse().ok())
        {
            self.track_pid(pid);
        }
        Ok(words)
    }

    /// [`cmd`](Self::cmd) for tests: panics with the helper's error message.
    #[track_caller]
    pub fn ok(&mut self, line: &str) -> Vec<String> {
        match self.cmd(line) {
            Ok(words) => words,
            Err(e) => panic!("lw-helper `{line}`: {e}"),
        }
    }

    /// [`ok`](Self::ok), then every word parsed as a pid (for `spawn`, `tree`).
    #[track_caller]
    pub fn pids(&mut self, line: &str) -> Vec<u32> {
        self.ok(line).iter().filter_map(|w| w.parse().ok()).collect()
    }

    /// Adds a pid that drop must SIGKILL too (one outside the helper's process group,
    /// e.g. double-forked by a child).
    pub fn track_pid(&mut self, pid: u32) {
        self.extra.push((pid, start_time(pid)));
    }

    /// Closes the helper's stdin: unless it runs with `--stay` (or was told `detach`)
    /// it exits 0.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Sends `signal` (a libc signal number) to the helper alone.
    pub fn signal(&self, signal: i32) -> io::Result<()> {
        let signal = Signal::try_from(signal).map_err(io::Error::from)?;
        kill(pid_of(self.pid), signal).map_err(io::Error::from)
    }

    /// SIGKILLs the helper alone and reaps it, leaving its children and tree (now
    /// orphans) running: that is how orphan tests make orphans. Drop still kills them.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reaped = true;
    }

    /// Has the helper exited? Reaps it if so.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        let status = self.child.try_wait()?;
        self.reaped |= status.is_some();
        Ok(status)
    }

    /// Waits up to `timeout` for the helper to exit (reaping it).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut status = None;
        wait_until(timeout, || {
            status = self.try_wait().ok().flatten();
            status.is_some()
        });
        status
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // Kill the group while the helper is not yet reaped, so its pid (the group's
        // id) cannot have been reused. After `kill()` it can only be reused once every
        // member is gone, and then killpg finds nobody.
        let _ = killpg(pid_of(self.pid), Signal::SIGKILL);
        for &(pid, started) in &self.extra {
            if started.is_none() || start_time(pid) == started {
                let _ = kill(pid_of(pid), Signal::SIGKILL);
            }
        }
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        crate::shm::sweep_stale();
    }
}

fn pid_of(pid: u32) -> Pid {
    Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX))
}

/// The process's start time in clock ticks since boot (Linux), to tell a pid's
/// current owner from an earlier one.
#[cfg(target_os = "linux")]
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22; fields after the command name (which may hold spaces) start at 3.
    let after_comm = &stat[stat.rfind(')')? + 2..];
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(not(target_os = "linux"))]
fn start_time(_pid: u32) -> Option<u64> {
    None
}

/// Polls `f` every 10 ms until it returns true (→ true) or `timeout` passes (→ false).
/// `f` is always called at least once, and once more at the deadline.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        thread::sleep((deadline - now).min(Duration::from_millis(10)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_until_polls_then_gives_up() {
        let mut calls = 0;
        assert!(wait_until(Duration::from_secs(1), || {
            calls += 1;
            calls == 3
        }));
        assert_eq!(calls, 3);
        let start = Instant::now();
        assert!(!wait_until(Duration::from_millis(50), || false));
        assert!(start.elapsed() >= Duration::from_millis(50));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn start_time_of_self() {
        assert!(start_time(std::process::id()).is_some());
        assert_eq!(start_time(u32::MAX), None);
    }
}
