//! lw-helper checked against an independent reading of the OS: every descriptor it
//! says it opened is looked up in /proc/<pid>/fd, every process it says it started is
//! looked up in /proc/<pid>/stat. Linux only, since that is where /proc is.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

use leakwatch_test_helper::{Helper, wait_until};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

const SECOND: Duration = Duration::from_secs(1);

/// The link text of every open descriptor of `pid`.
fn links(pid: u32) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|l| l.to_string_lossy().into_owned())
        .collect()
}

fn count_prefix(pid: u32, prefix: &str) -> usize {
    links(pid).iter().filter(|l| l.starts_with(prefix)).count()
}

fn count_exact(pid: u32, text: &str) -> usize {
    links(pid).iter().filter(|l| *l == text).count()
}

/// Socket inodes of `pid`.
fn socket_inodes(pid: u32) -> Vec<String> {
    links(pid)
        .iter()
        .filter_map(|l| l.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_owned))
        .collect()
}

/// Inodes listed in /proc/<pid>/net/<table> (unix: last-but-one column; tcp/udp: col 10).
fn net_inodes(pid: u32, table: &str) -> Vec<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap();
    let column = if table == "unix" { 6 } else { 9 };
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(column).map(str::to_owned))
        .collect()
}

/// How many of `pid`'s sockets are in /proc/<pid>/net/<table>.
fn sockets_in(pid: u32, table: &str) -> usize {
    let known = net_inodes(pid, table);
    socket_inodes(pid).iter().filter(|i| known.contains(i)).count()
}

#[derive(Debug, Clone, Copy)]
struct Stat {
    state: char,
    ppid: u32,
    pgrp: u32,
    session: u32,
}

fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest: Vec<&str> = text[text.rfind(')')? + 2..].split_whitespace().collect();
    Some(Stat {
        state: rest[0].chars().next()?,
        ppid: rest[1].parse().ok()?,
        pgrp: rest[2].parse().ok()?,
        session: rest[3].parse().ok()?,
    })
}

fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|s| s.state != 'Z' && s.state != 'X')
}

/// Gone, or a zombie waiting for init (this sandbox's init reaps slowly).
fn dead(pid: u32) -> bool {
    !alive(pid)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lw-helper-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(5 * SECOND)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply
}

fn sigterm() -> i32 {
    nix::sys::signal::Signal::SIGTERM as i32
}

#[test]
fn starts_and_says_its_pid() {
    let mut h = Helper::spawn().unwrap();
    assert_eq!(h.ok("pid"), [h.pid().to_string()]);
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", h.pid())).unwrap();
    assert_eq!(comm.trim(), "lw-helper");
    assert_eq!(h.cmd("frobnicate").unwrap_err(), "unknown command `frobnicate` (try help)");
    assert_eq!(h.cmd("open kqueue 1").unwrap_err(), "unsupported on this OS");
    assert!(h.cmd("two\nlines").is_err());
}

#[test]
fn anon_inode_kinds_show_in_proc() {
    let mut h = Helper::spawn().unwrap();
    let pid = h.pid();
    for (kind, link) in [
        ("epoll", "anon_inode:[eventpoll]"),
        ("eventfd", "anon_inode:[eventfd]"),
        ("timerfd", "anon_inode:[timerfd]"),
        ("signalfd", "anon_inode:[signalfd]"),
        ("inotify", "anon_inode:inotify"),
    ] {
        let before = count_exact(pid, link);
        assert_eq!(h.ok(&format!("open {kind} 3")), ["3"], "{kind}");
        assert_eq!(count_exact(pid, link), before + 3, "{kind}");
        assert_eq!(h.ok(&format!("close {kind} 2")), ["2"], "{kind}");
        assert_eq!(count_exact(pid, link), before + 1, "{kind}");
        let count = h.ok("count");
        assert!(count.contains(&format!("{kind}=1")), "{kind}: {count:?}");
    }
}

#[test]
fn pipes_and_sockets_show_in_proc() {
    let mut h = Helper::spawn().unwrap();
    let pid = h.pid();
    let pipes = count_prefix(pid, "pipe:[");
    assert_eq!(h.ok("open pipe 2"), ["4"]);
    assert_eq!(count_prefix(pid, "pipe:["), pipes + 4);

    let unix = sockets_in(pid, "unix");
    assert_eq!(h.ok("open unix 2"), ["4"]);
    assert_eq!(sockets_in(pid, "unix"), unix + 4);

    let dir = scratch("sockets");
    let sock = dir.join("listen.sock");
    assert_eq!(h.ok(&format!("open unix-listen {}", sock.display())), ["1"]);
    assert_eq!(sockets_in(pid, "unix"), unix + 5);
    assert!(sock.exists());
    assert_eq!(h.ok("close unix-listen"), ["1"]);
    assert!(!sock.exists(), "the socket file goes with the socket");

    let tcp = sockets_in(pid, "tcp");
    assert_eq!(h.ok("open tcp-listen 2"), ["2"]);
    assert_eq!(sockets_in(pid, "tcp"), tcp + 2);
    assert_eq!(h.ok("open tcp-conn 3"), ["7", "listener=1", "client=3", "accepted=3"]);
    assert_eq!(h.ok("open tcp-conn 1"), ["2", "listener=0", "client=1", "accepted=1"]);
    assert_eq!(sockets_in(pid, "tcp"), tcp + 2 + 9);

    let udp = sockets_in(pid, "udp");
    assert_eq!(h.ok("open udp 2"), ["2"]);
    assert_eq!(sockets_in(pid, "udp"), udp + 2);

    let count = h.ok("count");
    for want in ["pipe=4", "unix=4", "unix-listen=0", "tcp-listen=2", "tcp-conn=9", "udp=2"] {
        assert!(count.iter().any(|w| w == want), "{want} not in {count:?}");
    }
    assert_eq!(h.ok("close tcp-conn all"), ["9"]);
    assert_eq!(sockets_in(pid, "tcp"), tcp + 2);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn files_dirs_devices_and_shm_show_in_proc() {
    let mut h = Helper::spawn().unwrap();
    let pid = h.pid();
    let dir = scratch("files");
    let file = dir.join("held file.txt");
    let sub = dir.join("sub");
    assert_eq!(h.ok(&format!("open file {} 3", file.display())), ["3"]);
    assert!(file.is_file(), "created when missing");
    assert_eq!(count_exact(pid, &file.display().to_string()), 3);
    assert_eq!(h.ok(&format!("open dir {} 2", sub.display())), ["2"]);
    assert_eq!(count_exact(pid, &sub.display().to_string()), 2);

    let null = count_exact(pid, "/dev/null");
    assert_eq!(h.ok("open device 2"), ["2"]);
    assert_eq!(count_exact(pid, "/dev/null"), null + 2);

    assert_eq!(h.ok("open shm 2"), ["2"]);
    let shm: Vec<String> =
        links(pid).into_iter().filter(|l| l.starts_with("/dev/shm/lw-helper-")).collect();
    assert_eq!(shm.len(), 2, "{shm:?}");
    assert!(shm.iter().all(|l| !l.contains("(deleted)") && Path::new(l).exists()));
    assert_eq!(h.ok("close shm all"), ["2"]);
    assert!(shm.iter().all(|l| !Path::new(l).exists()), "removed on close");

    assert_eq!(h.ok("close file 3"), ["3"]);
    assert_eq!(count_exact(pid, &file.display().to_string()), 0);
    assert_eq!(h.ok("close file 1"), ["0"]);
    std::fs::remove_dir_all(dir).unwrap();
}

/// The helper's "Max open files" soft and hard limits, as /proc prints them.
fn open_files_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let nums: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    (nums[0].to_owned(), nums[1].to_owned())
}

#[test]
fn raises_its_descriptor_limit_to_the_hard_one() {
    let h = Helper::spawn().unwrap();
    let (soft, hard) = open_files_limits(h.pid());
    assert_eq!(soft, hard, "soft limit raised to the hard one");
}

/// Issue 13: this was the tail of the test above and returned early (passing)
/// when the limit was too low, so a machine that could not run it reported it as
/// passed. Now it is ignored with its prerequisite, which `cargo xtask ci`
/// checks (a hard limit of at least 10,200: the helper raises its soft limit to
/// it) before running it.
#[test]
#[ignore = "needs a descriptor limit of at least 10,200 (`ulimit -Hn`)"]
fn holds_ten_thousand_descriptors() {
    let mut h = Helper::spawn().unwrap();
    let pid = h.pid();
    let (soft, _) = open_files_limits(pid);
    // Under `--include-ignored` on a machine without the prerequisite: fail, and
    // say why, rather than fail on an `open` part-way.
    assert!(
        soft == "unlimited" || soft.parse::<u64>().is_ok_and(|soft| soft >= 10_200),
        "the helper's descriptor limit is {soft}, below 10,200"
    );
    assert_eq!(h.ok("open pipe 4000"), ["8000"]);
    assert_eq!(h.ok("open eventfd 2000"), ["2000"]);
    assert!(links(pid).len() >= 10_000);
    assert_eq!(h.ok("close pipe all"), ["8000"]);
    assert!(links(pid).len() < 2_100);
}

#[test]
fn leak_grows_until_stopped() {
    let mut h = Helper::spawn().unwrap();
    let pid = h.pid();
    let link = "anon_inode:[eventfd]";
    h.ok("leak eventfd 5");
    assert!(wait_until(5 * SECOND, || count_exact(pid, link) >= 10));
    let held: usize = h.ok("stop-leak")[0].parse().unwrap();
    assert!(held >= 10);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(count_exact(pid, link), held, "no growth after stop-leak");
    let count = h.ok("count");
    assert!(count.contains(&format!("eventfd={held}")), "{count:?}");
    assert!(count.contains(&format!("leaked={held}")), "{count:?}");
    assert!(count.contains(&"leaking=0".to_owned()), "{count:?}");
    assert_eq!(h.ok("close-leaked"), [held.to_string()]);
    assert_eq!(count_exact(pid, link), 0);

    let dir = scratch("leak");
    let file = dir.join("leaky");
    h.ok(&format!("leak file:{} 2", file.display()));
    h.ok("leak pipe 2");
    assert!(wait_until(5 * SECOND, || {
        count_exact(pid, &file.display().to_string()) >= 3 && count_prefix(pid, "pipe:[") >= 8
    }));
    assert_eq!(h.ok("count").iter().filter(|w| *w == "leaking=2").count(), 1);
    h.ok("stop-leak");
    h.ok("close-leaked");
    assert_eq!(count_exact(pid, &file.display().to_string()), 0);
    assert!(h.cmd("leak unix-listen 5").is_err());
    assert!(h.cmd("leak kqueue 5").is_err());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn tree_has_the_right_shape_and_outlives_its_root() {
    let mut h = Helper::spawn().unwrap();
    let root = h.pid();
    let pids = h.pids("tree 2 2");
    assert_eq!(pids.len(), 6, "{pids:?}");
    let stats: Vec<Stat> = pids.iter().map(|&p| stat(p).unwrap()).collect();
    let children: Vec<u32> =
        pids.iter().zip(&stats).filter(|(_, s)| s.ppid == root).map(|(&p, _)| p).collect();
    assert_eq!(children.len(), 2, "{stats:?}");
    for &c in &children {
        let grandchildren = stats.iter().filter(|s| s.ppid == c).count();
        assert_eq!(grandchildren, 2, "children of {c}: {stats:?}");
    }
    assert!(stats.iter().all(|s| s.pgrp == root), "one process group: {stats:?}");
    // Pre-order: each child is followed by its own children.
    assert_eq!(stat(pids[1]).unwrap().ppid, pids[0]);
    assert_eq!(stat(pids[2]).unwrap().ppid, pids[0]);

    h.kill();
    std::thread::sleep(Duration::from_millis(300));
    for &p in &pids {
        assert!(alive(p), "{p} died with its parent");
    }
    for &c in &children {
        assert_ne!(stat(c).unwrap().ppid, root, "{c} is now an orphan");
    }
    drop(h);
    assert!(wait_until(5 * SECOND, || pids.iter().all(|&p| dead(p))));
}

#[test]
fn tree_members_can_ignore_sigterm() {
    let mut h = Helper::spawn().unwrap();
    let pids = h.pids("tree 1 2 ignore-term");
    assert_eq!(pids.len(), 2);
    for &p in pids.iter().chain([h.pid()].iter()) {
        let status = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap();
        let ign = status.lines().find_map(|l| l.strip_prefix("SigIgn:")).unwrap();
        let mask = u64::from_str_radix(ign.trim(), 16).unwrap();
        assert_ne!(mask & (1 << (sigterm() - 1)), 0, "{p} ignores SIGTERM");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(pids.iter().all(|&p| alive(p)));
    assert_eq!(h.ok("pid"), [h.pid().to_string()]);
}

#[test]
fn spawned_children_run_their_startup_commands() {
    let mut h = Helper::spawn().unwrap();
    let pids = h.pids("spawn 2 open eventfd 3 ; open timerfd 1");
    assert_eq!(pids.len(), 2);
    for &p in &pids {
        assert_eq!(stat(p).unwrap().ppid, h.pid());
        assert_eq!(count_exact(p, "anon_inode:[eventfd]"), 3);
        assert_eq!(count_exact(p, "anon_inode:[timerfd]"), 1);
        // None of the parent's descriptors leaked into the child.
        assert_eq!(count_exact(p, "anon_inode:[eventpoll]"), 0);
    }
    assert!(h.cmd("spawn 1 open bogus 1").is_err());
}

#[test]
fn double_fork_escapes_and_serves_http() {
    let mut h = Helper::spawn().unwrap();
    let reply = h.ok("double-fork tcp-listen 0");
    let pid: u32 = reply[0].parse().unwrap();
    let port: u16 = reply[1].parse().unwrap();
    assert_ne!(port, 0);
    let s = stat(pid).unwrap();
    assert_ne!(s.ppid, h.pid(), "the grandchild is not the helper's child");
    let helper_session = stat(h.pid()).unwrap().session;
    assert_ne!(s.session, helper_session, "it left the helper's session");
    assert_ne!(s.session, pid, "the middle process, not it, leads the new session");
    assert_eq!(s.pgrp, s.session);
    let reply = http_get(port, "/health");
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
    assert!(reply.ends_with("\r\n\r\nok"), "{reply}");

    let quiet = h.ok("double-fork");
    assert_eq!(quiet[1], "0");
    let quiet: u32 = quiet[0].parse().unwrap();
    drop(h);
    assert!(wait_until(5 * SECOND, || dead(pid) && dead(quiet)));
}

#[test]
fn serve_http_answers_every_request() {
    let mut h = Helper::spawn().unwrap();
    let port: u16 = h.ok("serve-http")[0].parse().unwrap();
    for path in ["/", "/health", "/anything"] {
        assert!(http_get(port, path).starts_with("HTTP/1.1 200 OK"));
    }
    assert!(h.ok("count").contains(&"http=1".to_owned()));
}

#[test]
fn term_marker_is_written_on_sigterm() {
    let dir = scratch("marker");
    let marker = dir.join("marker");
    let mut h = Helper::spawn().unwrap();
    h.ok(&format!("term-marker {}", marker.display()));
    assert!(!marker.exists(), "written only on SIGTERM");
    h.signal(sigterm()).unwrap();
    let status = h.wait_timeout(5 * SECOND).unwrap();
    assert_eq!(status.code(), Some(0));
    let text = std::fs::read_to_string(&marker).unwrap();
    assert_eq!(text, format!("terminated {}\n", h.pid()));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn ignore_term_survives_sigterm() {
    let mut h = Helper::spawn().unwrap();
    h.ok("ignore-term");
    h.signal(sigterm()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(h.try_wait().unwrap().is_none());
    assert_eq!(h.ok("pid"), [h.pid().to_string()]);
}

#[test]
fn default_sigterm_kills() {
    let mut h = Helper::spawn().unwrap();
    h.signal(sigterm()).unwrap();
    let status = h.wait_timeout(5 * SECOND).unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(sigterm()));
}

#[test]
fn stdin_eof_exits_unless_told_to_stay() {
    let mut h = Helper::spawn().unwrap();
    h.close_stdin();
    assert_eq!(h.wait_timeout(5 * SECOND).unwrap().code(), Some(0));

    let mut stay = Helper::spawn_with(&["--stay"]).unwrap();
    stay.close_stdin();
    std::thread::sleep(Duration::from_millis(200));
    assert!(stay.try_wait().unwrap().is_none());

    let mut detached = Helper::spawn().unwrap();
    detached.ok("detach");
    detached.close_stdin();
    std::thread::sleep(Duration::from_millis(200));
    assert!(detached.try_wait().unwrap().is_none());
}

#[test]
fn exit_with_a_code() {
    let mut h = Helper::spawn().unwrap();
    h.ok("open shm 1");
    assert_eq!(h.ok("exit 3"), Vec::<String>::new());
    assert_eq!(h.wait_timeout(5 * SECOND).unwrap().code(), Some(3));
}

#[test]
fn startup_commands_and_ready_file() {
    let dir = scratch("ready");
    let ready = dir.join("ready");
    let ready_arg = ready.display().to_string();
    let h = Helper::spawn_with(&[
        "--exec",
        "open eventfd 2",
        "--exec",
        "open pipe 1",
        "--ready-file",
        &ready_arg,
    ])
    .unwrap();
    assert_eq!(std::fs::read_to_string(&ready).unwrap(), "ready\n");
    assert_eq!(count_exact(h.pid(), "anon_inode:[eventfd]"), 2);
    drop(h);

    let err = Helper::spawn_with(&["--exec", "open bogus 1"]).unwrap_err();
    assert!(err.to_string().contains("exited before ready"), "{err}");
    assert!(Helper::spawn_with(&["--bogus"]).is_err());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn drop_leaves_no_process() {
    let mut h = Helper::spawn().unwrap();
    let helper = h.pid();
    let mut pids = h.pids("spawn 2");
    pids.extend(h.pids("tree 2 1 ignore-term"));
    let daemon: u32 = h.ok("double-fork")[0].parse().unwrap();
    pids.push(daemon);
    assert!(pids.iter().all(|&p| alive(p)));
    drop(h);
    assert!(!Path::new(&format!("/proc/{helper}")).exists(), "the helper is reaped");
    assert!(
        wait_until(5 * SECOND, || pids.iter().all(|&p| dead(p))),
        "left behind: {:?}",
        pids.iter().filter(|&&p| alive(p)).collect::<Vec<_>>()
    );
}
