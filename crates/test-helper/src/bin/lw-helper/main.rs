//! `lw-helper`: a real process that Leakwatch's integration tests and benchmarks steer
//! over a line protocol to hold descriptors of every kind, leak them steadily, build
//! process trees that outlive their parent, double-fork, serve HTTP, and react to
//! SIGTERM in chosen ways. Tests then look at it the way Leakwatch looks at a user's
//! server, and check what they see against what they asked for.
//!
//! ```text
//! lw-helper [--stay] [--exec CMD]... [--ready-file PATH]
//! ```
//!
//! Each `--exec` command runs before `ready`, silently; if one fails the helper prints
//! why on stderr and exits 2. `--stay` makes stdin EOF not end the helper.
//! `--ready-file PATH` writes `ready` to PATH (atomically) once started.
//! Then it prints `ready <pid>` and reads commands on stdin, one per line, answering
//! each with exactly one line: `ok [DATA...]` or `err MESSAGE`. See `help` below and
//! the crate's README section in `lib.rs` for the command list.

mod fds;
mod http;
mod leak;
mod procs;
mod signals;

use anyhow::{Context, bail};
use fds::{Kind, Table};
use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

const HELP: &str = "open KIND [PATH] [N] | close KIND [N|all] | count | \
    no-cloexec | leak KIND[:PATH] EVERY_MS | stop-leak | close-leaked | ignore-term | term-marker PATH | \
    term-delay MS | term-log PATH | \
    spawn N [CMD [; CMD]...] | tree DEPTH WIDTH [ignore-term] | \
    fork-every MS [MAX] [ignore-term] | double-fork [tcp-listen PORT] | \
    serve-http [PORT] | pid | nofile SOFT_LIMIT | exit [CODE] | sleep-forever | detach | help";

/// The command line.
#[derive(Debug, Default)]
struct Args {
    stay: bool,
    echo_exec: bool,
    execs: Vec<String>,
    ready_file: Option<PathBuf>,
    double_fork_middle: Option<String>,
}

fn parse_args(mut args: impl Iterator<Item = OsString>) -> anyhow::Result<Args> {
    let mut out = Args::default();
    let value = |args: &mut dyn Iterator<Item = OsString>, flag: &str| {
        args.next().with_context(|| format!("{flag} needs a value"))
    };
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--stay") => out.stay = true,
            Some("--echo-exec") => out.echo_exec = true,
            Some("--exec") => {
                let cmd = value(&mut args, "--exec")?;
                let cmd = cmd.into_string().ok().context("--exec needs UTF-8 text")?;
                out.execs.push(cmd);
            }
            Some("--ready-file") => {
                out.ready_file = Some(PathBuf::from(value(&mut args, "--ready-file")?));
            }
            Some(procs::DOUBLE_FORK_MIDDLE) => {
                let port = value(&mut args, procs::DOUBLE_FORK_MIDDLE)?;
                out.double_fork_middle = Some(port.to_string_lossy().into_owned());
            }
            Some("-h" | "--help") => {
                println!("usage: lw-helper [--stay] [--exec CMD]... [--ready-file PATH]");
                println!("commands on stdin: {HELP}");
                std::process::exit(0);
            }
            _ => bail!("unknown argument {arg:?} (try --help)"),
        }
    }
    Ok(out)
}

/// What the main loop does after answering a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    Continue,
    Exit(i32),
    Detach,
}

/// Everything the helper holds.
#[derive(Debug, Default)]
struct State {
    table: Table,
    leaks: leak::Leaks,
    children: procs::Children,
    http_listeners: usize,
}

impl State {
    fn run(&mut self, line: &str) -> (Result<String, String>, Then) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some((&cmd, args)) = words.split_first() else {
            return (Err("empty command".to_owned()), Then::Continue);
        };
        match cmd {
            "exit" => match args.first().map(|c| c.parse::<i32>()) {
                None => (Ok(String::new()), Then::Exit(0)),
                Some(Ok(code)) => (Ok(String::new()), Then::Exit(code)),
                Some(Err(_)) => (Err("bad exit code".to_owned()), Then::Continue),
            },
            "sleep-forever" | "detach" => (Ok(String::new()), Then::Detach),
            _ => (self.command(cmd, args), Then::Continue),
        }
    }

    fn command(&mut self, cmd: &str, args: &[&str]) -> Result<String, String> {
        match cmd {
            "open" => self.open(args),
            "close" => {
                let (kind, rest) = kind_arg(args)?;
                let n = match rest {
                    [] => Some(1),
                    ["all"] => None,
                    [n] => Some(number(n)?),
                    _ => return Err("usage: close KIND [N|all]".to_owned()),
                };
                Ok(self.table.close(kind, n).to_string())
            }
            "count" => Ok(self.count()),
            "no-cloexec" => self.table.clear_cloexec().map(|n| n.to_string()),
            "leak" => {
                let [spec @ .., every] = args else {
                    return Err("usage: leak KIND[:PATH] EVERY_MS".to_owned());
                };
                if spec.is_empty() {
                    return Err("usage: leak KIND[:PATH] EVERY_MS".to_owned());
                }
                let spec = spec.join(" ");
                let (word, path) = match spec.split_once(':') {
                    Some((w, p)) => (w, Some(PathBuf::from(p))),
                    None => (spec.as_str(), None),
                };
                let every = number(every)?;
                if every == 0 {
                    return Err("EVERY_MS must be at least 1".to_owned());
                }
                let every = Duration::from_millis(u64::try_from(every).unwrap_or(u64::MAX));
                self.leaks.start(Kind::parse(word)?, path, every)?;
                Ok(String::new())
            }
            "stop-leak" => Ok(self.leaks.stop().to_string()),
            "close-leaked" => Ok(self.leaks.close_all().to_string()),
            "ignore-term" => signals::ignore_term().map(|()| String::new()),
            "term-marker" => {
                if args.is_empty() {
                    return Err("usage: term-marker PATH".to_owned());
                }
                let path = std::path::absolute(args.join(" ")).map_err(|e| e.to_string())?;
                signals::term_marker(&path).map(|()| String::new())
            }
            "term-log" => {
                if args.is_empty() {
                    return Err("usage: term-log PATH".to_owned());
                }
                let path = std::path::absolute(args.join(" ")).map_err(|e| e.to_string())?;
                signals::term_log(&path).map(|()| String::new())
            }
            "term-delay" => match args {
                [ms] => {
                    signals::term_delay(u64::try_from(number(ms)?).unwrap_or(u64::MAX));
                    Ok(String::new())
                }
                _ => Err("usage: term-delay MS".to_owned()),
            },
            "spawn" => {
                let Some((n, rest)) = args.split_first() else {
                    return Err("usage: spawn N [CMD [; CMD]...]".to_owned());
                };
                let execs: Vec<String> = rest
                    .join(" ")
                    .split(';')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect();
                let pids = self.children.spawn(number(n)?, &execs)?;
                Ok(join_pids(&pids))
            }
            "tree" => {
                let (depth, width, ignore) = match args {
                    [d, w] => (d, w, false),
                    [d, w, "ignore-term"] => (d, w, true),
                    _ => return Err("usage: tree DEPTH WIDTH [ignore-term]".to_owned()),
                };
                let (depth, width) = (number(depth)?, number(width)?);
                let total: usize = (1..=depth).map(|d| width.saturating_pow(d as u32)).sum();
                if total > 2000 {
                    return Err(format!("a tree of {total} processes is too big"));
                }
                if ignore {
                    signals::ignore_term()?;
                }
                let pids = self.children.tree(depth, width, ignore)?;
                Ok(join_pids(&pids))
            }
            "fork-every" => {
                let usage = || "usage: fork-every MS [MAX] [ignore-term]".to_owned();
                let (ignore, args) = match args {
                    [rest @ .., "ignore-term"] => (true, rest),
                    rest => (false, rest),
                };
                let (every, max) = match args {
                    [ms] => (number(ms)?, 200),
                    [ms, max] => (number(ms)?, number(max)?),
                    _ => return Err(usage()),
                };
                if every == 0 {
                    return Err("MS must be at least 1".to_owned());
                }
                let every = Duration::from_millis(u64::try_from(every).unwrap_or(u64::MAX));
                procs::fork_every(every, max, ignore)?;
                Ok(String::new())
            }
            "double-fork" => {
                let port = match args {
                    [] => None,
                    ["tcp-listen"] => Some(0),
                    ["tcp-listen", p] => Some(p.parse::<u16>().map_err(|_| "bad port")?),
                    _ => return Err("usage: double-fork [tcp-listen PORT]".to_owned()),
                };
                let (pid, port) = procs::double_fork(port)?;
                Ok(format!("{pid} {port}"))
            }
            "serve-http" => {
                let port = match args {
                    [] => 0,
                    [p] => p.parse::<u16>().map_err(|_| "bad port")?,
                    _ => return Err("usage: serve-http [PORT]".to_owned()),
                };
                let port = http::serve(http::bind(port)?)?;
                self.http_listeners += 1;
                Ok(port.to_string())
            }
            "pid" => Ok(std::process::id().to_string()),
            "nofile" => match args {
                [n] => set_nofile(number(n)?),
                _ => Err("usage: nofile SOFT_LIMIT".to_owned()),
            },
            "help" => Ok(HELP.to_owned()),
            _ => Err(format!("unknown command `{cmd}` (try help)")),
        }
    }

    /// `open KIND [PATH] [N]`.
    fn open(&mut self, args: &[&str]) -> Result<String, String> {
        let (kind, rest) = kind_arg(args)?;
        let (path, n) = if kind.takes_path() {
            let (path, n) = match rest {
                [] => return Err(format!("usage: open {} PATH [N]", kind.word())),
                [path @ .., n] if !path.is_empty() && n.parse::<usize>().is_ok() => {
                    (path.join(" "), number(n)?)
                }
                path => (path.join(" "), 1),
            };
            if kind == Kind::UnixListen && n != 1 {
                return Err("unix-listen opens one socket per PATH".to_owned());
            }
            (Some(PathBuf::from(path)), n)
        } else {
            match rest {
                [] => (None, 1),
                [n] => (None, number(n)?),
                _ => return Err(format!("usage: open {} [N]", kind.word())),
            }
        };
        let added = self.table.open(kind, path.as_deref(), n)?;
        if kind == Kind::TcpConn {
            Ok(format!(
                "{} listener={} client={} accepted={}",
                added.fds, added.listener, added.pairs, added.pairs
            ))
        } else {
            Ok(added.fds.to_string())
        }
    }

    /// `count`: `KIND=N` for every kind this OS has (leaked ones included), then
    /// `leaked=`, `leaking=` (running leakers), `leak-errors=`, `http=` (listeners of
    /// serve-http) and `total=`.
    fn count(&self) -> String {
        let mut out = Vec::new();
        let mut total = 0;
        for kind in Kind::ALL.into_iter().filter(|k| k.supported()) {
            let n = self.table.count(kind) + self.leaks.count(Some(kind));
            total += n;
            out.push(format!("{}={n}", kind.word()));
        }
        total += self.http_listeners;
        out.push(format!("leaked={}", self.leaks.held()));
        out.push(format!("leaking={}", self.leaks.running()));
        out.push(format!("leak-errors={}", self.leaks.errors()));
        out.push(format!("http={}", self.http_listeners));
        out.push(format!("total={total}"));
        out.join(" ")
    }

    /// Closes everything, removing the files of named shm objects and unix sockets.
    fn clean_up(&mut self) {
        self.leaks.stop();
        self.leaks.close_all();
        self.table.clear();
    }
}

fn kind_arg<'a>(args: &'a [&'a str]) -> Result<(Kind, &'a [&'a str]), String> {
    let Some((word, rest)) = args.split_first() else {
        return Err("missing KIND".to_owned());
    };
    let kind = Kind::parse(word)?;
    if !kind.supported() {
        return Err(fds::UNSUPPORTED.to_owned());
    }
    Ok((kind, rest))
}

fn number(word: &str) -> Result<usize, String> {
    word.parse::<usize>().map_err(|_| format!("`{word}` is not a count"))
}

fn join_pids(pids: &[u32]) -> String {
    pids.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")
}

/// Formats a reply as its one line.
fn reply_line(reply: &Result<String, String>) -> String {
    let one_line = |s: &str| s.replace(['\n', '\r'], " ");
    match reply {
        Ok(data) if data.is_empty() => "ok".to_owned(),
        Ok(data) => format!("ok {}", one_line(data)),
        Err(msg) => format!("err {}", one_line(msg)),
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Never returns; the process lives until it is killed (threads keep working).
pub(crate) fn sleep_forever() -> ! {
    loop {
        std::thread::park();
    }
}

/// Raises the soft RLIMIT_NOFILE as far as the hard limit allows, so a test can hold
/// 10,000+ descriptors. macOS refuses RLIM_INFINITY (and values above
/// kern.maxfilesperproc) as a soft limit, hence the descending fallbacks.
fn raise_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes into the struct we pass, which lives on our stack.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    let hard = lim.rlim_max;
    for want in [hard, 1 << 20, 245_760, 65_536, 24_576, 10_240] {
        if want <= lim.rlim_cur || want > hard {
            continue;
        }
        let new = libc::rlimit { rlim_cur: want, rlim_max: hard };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } == 0 {
            return;
        }
    }
}

fn write_ready_file(path: &Path) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    std::fs::write(&tmp, "ready\n")?;
    std::fs::rename(&tmp, path)
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args_os().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("lw-helper: {e:#}");
            return ExitCode::from(2);
        }
    };
    if let Some(port) = &args.double_fork_middle {
        procs::double_fork_middle(port);
    }
    raise_fd_limit();
    if let Err(e) = signals::default_term() {
        eprintln!("lw-helper: {e}");
    }
    leakwatch_test_helper::shm::sweep_stale();

    let mut state = State::default();
    let mut stay = args.stay;
    let mut detached = false;
    for cmd in &args.execs {
        let (reply, then) = state.run(cmd);
        if args.echo_exec {
            say(&format!("exec {}", reply_line(&reply)));
        }
        if let Err(e) = &reply {
            eprintln!("lw-helper: startup command `{cmd}` failed: {e}");
            state.clean_up();
            return ExitCode::from(2);
        }
        match then {
            Then::Continue => {}
            Then::Exit(code) => {
                state.clean_up();
                std::process::exit(code);
            }
            Then::Detach => {
                stay = true;
                detached = true;
            }
        }
    }
    if let Some(path) = &args.ready_file
        && let Err(e) = write_ready_file(path)
    {
        eprintln!("lw-helper: writing {}: {e}", path.display());
        state.clean_up();
        return ExitCode::from(2);
    }
    say(&format!("ready {}", std::process::id()));
    if detached {
        sleep_forever();
    }

    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match input.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf);
        let (reply, then) = state.run(line.trim());
        say(&reply_line(&reply));
        match then {
            Then::Continue => {}
            Then::Exit(code) => {
                state.clean_up();
                std::process::exit(code);
            }
            Then::Detach => sleep_forever(),
        }
    }
    if stay {
        sleep_forever();
    }
    state.clean_up();
    ExitCode::SUCCESS
}

/// Lowers this process's soft descriptor limit, so a test can fill its table
/// (an "at limit" server) with a few descriptors rather than thousands.
fn set_nofile(soft: usize) -> Result<String, String> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(format!("getrlimit: {}", std::io::Error::last_os_error()));
    }
    limit.rlim_cur = libc::rlim_t::try_from(soft).map_err(|_| "limit too large".to_owned())?;
    // SAFETY: setrlimit only reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(format!("setrlimit: {}", std::io::Error::last_os_error()));
    }
    Ok(soft.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(state: &mut State, line: &str) -> String {
        reply_line(&state.run(line).0)
    }

    #[test]
    fn replies_are_one_line() {
        let mut s = State::default();
        assert_eq!(run(&mut s, ""), "err empty command");
        assert!(run(&mut s, "frobnicate").starts_with("err unknown command"));
        assert_eq!(run(&mut s, "open pipe 2"), "ok 4");
        assert_eq!(run(&mut s, "close pipe 3"), "ok 3");
        assert!(run(&mut s, "count").contains(" pipe=1 "));
        assert!(run(&mut s, "open frob 1").starts_with("err unknown kind"));
        assert_eq!(run(&mut s, "open unix-listen"), "err usage: open unix-listen PATH [N]");
        s.clean_up();
    }

    #[test]
    fn fork_every_checks_its_arguments() {
        let mut s = State::default();
        assert_eq!(run(&mut s, "fork-every"), "err usage: fork-every MS [MAX] [ignore-term]");
        assert_eq!(run(&mut s, "fork-every 0 1"), "err MS must be at least 1");
        assert!(run(&mut s, "fork-every 10 5000").contains("above the limit"));
        assert!(run(&mut s, "fork-every 10 1 2 3").starts_with("err usage"));
    }

    #[test]
    fn os_specific_kinds() {
        let mut s = State::default();
        let (epoll, kqueue) = (run(&mut s, "open epoll 1"), run(&mut s, "open kqueue 1"));
        if cfg!(target_os = "linux") {
            assert_eq!(epoll, "ok 1");
            assert_eq!(kqueue, "err unsupported on this OS");
        } else if cfg!(target_os = "macos") {
            assert_eq!(epoll, "err unsupported on this OS");
            assert_eq!(kqueue, "ok 1");
        }
    }

    #[test]
    fn file_paths_may_contain_spaces() {
        let dir = std::env::temp_dir().join(format!("lw-helper-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = State::default();
        let path = dir.join("a b");
        assert_eq!(run(&mut s, &format!("open file {} 2", path.display())), "ok 2");
        assert!(path.exists());
        assert_eq!(run(&mut s, &format!("open file {}", path.display())), "ok 1");
        s.clean_up();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cli_args() {
        let a = parse_args(
            ["--stay", "--exec", "open pipe 1", "--ready-file", "/tmp/x"]
                .into_iter()
                .map(OsString::from),
        )
        .unwrap();
        assert!(a.stay);
        assert_eq!(a.execs, ["open pipe 1"]);
        assert_eq!(a.ready_file, Some(PathBuf::from("/tmp/x")));
        assert!(parse_args([OsString::from("--bogus")].into_iter()).is_err());
        assert!(parse_args([OsString::from("--exec")].into_iter()).is_err());
    }
}
