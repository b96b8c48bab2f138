//! Process trees for the orphan and kill-tree tests: children and grandchildren that
//! outlive a SIGKILLed parent (they run with `--stay`, so their stdin closing does not
//! end them), and the double-forking daemon that breaks supervisors.
//!
//! Children are started by re-executing this very binary, never by `fork` alone: the
//! helper has threads, and after a bare `fork` of a threaded process only
//! async-signal-safe calls are allowed. The double fork therefore happens in a freshly
//! exec'd, still single-threaded middle process (see [`double_fork_middle`]).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

/// The hidden CLI flag that turns a fresh lw-helper into the middle of a double fork.
pub(crate) const DOUBLE_FORK_MIDDLE: &str = "--double-fork-middle";

/// Most children one `spawn` may start (a `tree` is limited in `main`).
const MAX_CHILDREN: usize = 2000;

/// The children this helper started. They are reaped by a background thread as they
/// die, so a killed child does not linger as a zombie while the helper lives. Their
/// stdin pipes stay open here (a child with `--stay` ignores them either way).
#[derive(Debug, Default)]
pub(crate) struct Children {
    list: Arc<Mutex<Vec<Child>>>,
    reaper_started: bool,
}

impl Children {
    fn keep(&mut self, child: Child) {
        self.list.lock().unwrap_or_else(PoisonError::into_inner).push(child);
        if !self.reaper_started {
            let list = Arc::clone(&self.list);
            let started = thread::Builder::new().name("reaper".to_owned()).spawn(move || {
                loop {
                    thread::sleep(Duration::from_millis(100));
                    let mut list = list.lock().unwrap_or_else(PoisonError::into_inner);
                    list.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
                }
            });
            self.reaper_started = started.is_ok();
        }
    }

    /// `spawn N [CMD [; CMD]...]`: N children with `--stay`, each running the given
    /// startup commands. Returns their pids once each has printed `ready`.
    pub(crate) fn spawn(&mut self, n: usize, execs: &[String]) -> Result<Vec<u32>, String> {
        if n > MAX_CHILDREN {
            return Err(format!("{n} children is above the limit of {MAX_CHILDREN}"));
        }
        let mut pids = Vec::with_capacity(n);
        for _ in 0..n {
            let (pid, _) = self.start(execs)?;
            pids.push(pid);
        }
        Ok(pids)
    }

    /// `tree DEPTH WIDTH [ignore-term]`: WIDTH children, each building a tree of
    /// DEPTH-1 below itself. Returns every descendant pid, each child followed by its
    /// own descendants.
    pub(crate) fn tree(
        &mut self,
        depth: usize,
        width: usize,
        ignore_term: bool,
    ) -> Result<Vec<u32>, String> {
        let mut execs = Vec::new();
        if ignore_term {
            execs.push("ignore-term".to_owned());
        }
        if depth > 1 {
            let suffix = if ignore_term { " ignore-term" } else { "" };
            execs.push(format!("tree {} {width}{suffix}", depth - 1));
        }
        let mut pids = Vec::new();
        if depth == 0 {
            return Ok(pids);
        }
        for _ in 0..width {
            let (pid, replies) = self.start(&execs)?;
            pids.push(pid);
            // The echoed reply of the child's own `tree` lists its descendants.
            for reply in replies {
                pids.extend(reply.split_whitespace().filter_map(|w| w.parse::<u32>().ok()));
            }
        }
        Ok(pids)
    }

    /// Starts one `lw-helper --stay --echo-exec --exec ...` child and waits for its
    /// `ready` line; returns its pid and the data of its echoed startup replies.
    fn start(&mut self, execs: &[String]) -> Result<(u32, Vec<String>), String> {
        let mut cmd = Command::new(self_exe());
        cmd.arg("--stay").arg("--echo-exec");
        for e in execs {
            cmd.arg("--exec").arg(e);
        }
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd.spawn().map_err(|e| format!("spawn child: {e}"))?;
        let pid = child.id();
        let Some(stdout) = child.stdout.take() else {
            self.keep(child);
            return Err("child has no stdout pipe".to_owned());
        };
        let mut replies = Vec::new();
        let mut lines = BufReader::new(stdout).lines();
        loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if line.starts_with("ready") {
                        break;
                    }
                    if let Some(data) = line.strip_prefix("exec ok") {
                        replies.push(data.trim().to_owned());
                    }
                }
                Some(Err(e)) => {
                    self.keep(child);
                    return Err(format!("reading child {pid}: {e}"));
                }
                None => {
                    let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                    return Err(format!("child {pid} exited before ready ({status})"));
                }
            }
        }
        // The child never writes again (it runs with --stay and gets no commands), so
        // the read end of its stdout can go.
        drop(lines);
        self.keep(child);
        Ok((pid, replies))
    }
}

/// `fork-every MS [MAX] [ignore-term]`: from a background thread, starts one
/// `--stay` child every MS milliseconds, at most MAX of them (default 200), each
/// ignoring SIGTERM when asked. It answers at once; the children are not listed.
/// The kill-tree tests use it for a process that keeps forking while it is being
/// killed. Stops early if a child fails to start.
pub(crate) fn fork_every(every: Duration, max: usize, ignore_term: bool) -> Result<(), String> {
    if max > MAX_CHILDREN {
        return Err(format!("{max} children is above the limit of {MAX_CHILDREN}"));
    }
    let execs = if ignore_term { vec!["ignore-term".to_owned()] } else { Vec::new() };
    thread::Builder::new()
        .name("fork-every".to_owned())
        .spawn(move || {
            // Its own list and reaper: `Children` is not shared between threads.
            let mut children = Children::default();
            for _ in 0..max {
                if children.start(&execs).is_err() {
                    break;
                }
                thread::sleep(every);
            }
        })
        .map(drop)
        .map_err(|e| format!("thread: {e}"))
}

/// This binary, to re-execute. `current_exe` keeps the process name `lw-helper`; if
/// the file was replaced by a rebuild since we started, /proc/self/exe still works.
fn self_exe() -> PathBuf {
    match std::env::current_exe() {
        Ok(p) if p.exists() => p,
        _ if cfg!(target_os = "linux") => PathBuf::from("/proc/self/exe"),
        Ok(p) => p,
        Err(_) => PathBuf::from("lw-helper"),
    }
}

/// `double-fork [tcp-listen PORT]`: starts a middle process that calls `setsid`, forks
/// the grandchild and exits; the grandchild (optionally serving HTTP on
/// 127.0.0.1:PORT) sleeps forever with init, or the nearest subreaper, as its parent.
/// Returns the grandchild's pid and its port (0 when it does not listen).
pub(crate) fn double_fork(port: Option<u16>) -> Result<(u32, u16), String> {
    let port_arg = port.map_or_else(|| "none".to_owned(), |p| p.to_string());
    let mut middle = Command::new(self_exe())
        .arg(DOUBLE_FORK_MIDDLE)
        .arg(port_arg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("spawn middle process: {e}"))?;
    let mut line = String::new();
    let read = match middle.stdout.take() {
        Some(out) => BufReader::new(out).read_line(&mut line),
        None => Ok(0),
    };
    // The middle exits right after its fork; reap it so it is not a zombie.
    let status = middle.wait();
    if !matches!(read, Ok(n) if n > 0) {
        return Err(format!(
            "double fork failed (middle process: {})",
            status.map(|s| s.to_string()).unwrap_or_default()
        ));
    }
    let mut words = line.split_whitespace();
    let parsed = (
        words.next().and_then(|w| w.parse::<u32>().ok()),
        words.next().and_then(|w| w.parse::<u16>().ok()),
    );
    match parsed {
        (Some(pid), Some(port)) => Ok((pid, port)),
        (Some(pid), None) => Err(format!("grandchild {pid} failed to start: {}", line.trim())),
        _ => Err(format!("bad report from grandchild: {}", line.trim())),
    }
}

/// The middle process of `double-fork`, run from `main` before any thread exists.
/// `port_arg` is a port number or `none`. Never returns.
pub(crate) fn double_fork_middle(port_arg: &str) -> ! {
    use nix::unistd::{ForkResult, fork, setsid};

    let port = match port_arg {
        "none" => None,
        p => match p.parse::<u16>() {
            Ok(p) => Some(p),
            Err(_) => fail(&format!("bad port `{p}`")),
        },
    };
    if let Err(e) = setsid() {
        fail(&format!("setsid: {e}"));
    }
    // SAFETY: this process was exec'd moments ago and has started no thread, so it
    // is single-threaded and the child may do anything after the fork.
    match unsafe { fork() } {
        Err(e) => fail(&format!("fork: {e}")),
        Ok(ForkResult::Parent { .. }) => std::process::exit(0),
        Ok(ForkResult::Child) => grandchild(port),
    }
}

fn grandchild(port: Option<u16>) -> ! {
    let pid = std::process::id();
    let bound = match port {
        None => Ok(0),
        Some(p) => crate::http::bind(p).and_then(crate::http::serve),
    };
    match bound {
        Ok(port) => report(&format!("{pid} {port}")),
        Err(e) => fail(&format!("{pid} {e}")),
    }
    // Let go of the pipe to our grandparent, as a daemon would.
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stdin(&null);
    }
    crate::sleep_forever()
}

fn report(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn fail(msg: &str) -> ! {
    report(msg);
    eprintln!("lw-helper: double-fork: {msg}");
    std::process::exit(1)
}
