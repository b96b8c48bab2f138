//! The probe against real processes: a helper opens descriptors of every kind and
//! the probe's answers are checked against `/proc` read independently here.
#![cfg(target_os = "linux")]
// Helpers shared by the tests unwrap too: a panic is the failure report we want.
#![allow(clippy::unwrap_used)]

use leakwatch_probe::{ErrorKind, FdKind, LimitSource, Probe};
use leakwatch_test_helper::Helper;
use std::collections::BTreeMap;
use std::path::Path;

/// Reads `/proc/PID/fd` with std alone: fd number → link text.
fn independent_fd_links(pid: u32) -> BTreeMap<i32, String> {
    let mut links = BTreeMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let entry = entry.unwrap();
        let fd: i32 = entry.file_name().to_str().unwrap().parse().unwrap();
        if let Ok(target) = std::fs::read_link(entry.path()) {
            links.insert(fd, target.to_string_lossy().into_owned());
        }
    }
    links
}

fn kind_counts(probe: &Probe, pid: u32) -> BTreeMap<FdKind, usize> {
    let mut counts = BTreeMap::new();
    for fd in probe.fd_table(pid).unwrap().fds {
        *counts.entry(fd.kind).or_insert(0) += 1;
    }
    counts
}

#[test]
fn every_kind_is_classified_exactly() {
    let dir = tempdir("every-kind");
    let mut helper = Helper::spawn().unwrap();
    let pid = helper.pid();
    let probe = Probe::new().unwrap();
    let before = kind_counts(&probe, pid);

    let db = dir.join("state.db");
    let opened: &[(&str, FdKind, usize)] = &[
        (&format!("open file {} 3", db.display()), FdKind::File, 3),
        (&format!("open file {}-wal 2", db.display()), FdKind::File, 2),
        (&format!("open dir {} 2", dir.display()), FdKind::Dir, 2),
        ("open device 2", FdKind::Device, 2),
        ("open pipe 3", FdKind::Pipe, 6),
        ("open unix 2", FdKind::Unix, 4),
        ("open tcp-listen 2", FdKind::Tcp, 2),
        ("open udp 1", FdKind::Udp, 1),
        ("open epoll 5", FdKind::Epoll, 5),
        ("open eventfd 2", FdKind::Eventfd, 2),
        ("open timerfd 1", FdKind::Timerfd, 1),
        ("open signalfd 1", FdKind::Signalfd, 1),
        ("open inotify 1", FdKind::Inotify, 1),
        ("open shm 1", FdKind::Shm, 1),
    ];
    let mut expected = before.clone();
    for (command, kind, count) in opened {
        helper.cmd(command).unwrap_or_else(|e| panic!("{command}: {e}"));
        *expected.entry(*kind).or_insert(0) += count;
    }

    let table = probe.fd_table(pid).unwrap();
    let links = independent_fd_links(pid);
    // The engine's cheaper read classifies every descriptor the same way.
    let cheap = probe.fd_kinds(pid).unwrap();
    let kinds =
        |fds: &[leakwatch_probe::Fd]| fds.iter().map(|fd| (fd.fd, fd.kind)).collect::<Vec<_>>();
    assert_eq!(kinds(&cheap.fds), kinds(&table.fds));
    assert!(cheap.fds.iter().all(|fd| fd.endpoint.is_none()));
    assert_eq!(table.fds.len(), links.len(), "total against /proc/{pid}/fd");
    assert_eq!(kind_counts(&probe, pid), expected);
    assert_eq!(probe.fd_count(pid).unwrap(), links.len());

    for fd in &table.fds {
        let link = &links[&fd.fd];
        let prefix_ok = match fd.kind {
            FdKind::Epoll => link == "anon_inode:[eventpoll]",
            FdKind::Eventfd => link == "anon_inode:[eventfd]",
            FdKind::Timerfd => link == "anon_inode:[timerfd]",
            FdKind::Signalfd => link == "anon_inode:[signalfd]",
            FdKind::Inotify => link == "anon_inode:inotify",
            FdKind::Pipe => link.starts_with("pipe:["),
            FdKind::Unix | FdKind::Tcp | FdKind::Udp | FdKind::Socket => {
                link.starts_with("socket:[")
            }
            FdKind::Shm => link.starts_with("/dev/shm/"),
            FdKind::Device => link.starts_with("/dev/"),
            FdKind::File | FdKind::Dir => {
                fd.path.as_deref() == Some(link.as_str())
                    && (fd.kind == FdKind::Dir) == Path::new(link).is_dir()
            }
            _ => true,
        };
        assert!(prefix_ok, "fd {} classified {:?} but links to {link}", fd.fd, fd.kind);
        if fd.kind == FdKind::Tcp {
            let endpoint = fd.endpoint.as_deref().unwrap_or_default();
            assert!(endpoint.starts_with("127.0.0.1:"), "{endpoint}");
            assert!(endpoint.ends_with("(LISTEN)"), "{endpoint}");
        }
    }
    let wal = format!("{}-wal", db.display());
    let wal_count = table.fds.iter().filter(|fd| fd.path.as_deref() == Some(&wal)).count();
    assert_eq!(wal_count, 2);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn connected_tcp_sockets_show_both_ends() {
    let mut helper = Helper::spawn().unwrap();
    helper.cmd("open tcp-conn 2").unwrap();
    let table = Probe::new().unwrap().fd_table(helper.pid()).unwrap();
    let established: Vec<_> = table
        .fds
        .iter()
        .filter(|fd| fd.kind == FdKind::Tcp)
        .filter_map(|fd| fd.endpoint.as_deref())
        .filter(|e| e.contains(" -> ") && e.ends_with("(ESTABLISHED)"))
        .collect();
    assert_eq!(established.len(), 4, "two client and two accepted ends: {established:?}");
}

#[test]
fn closing_descriptors_is_seen() {
    let mut helper = Helper::spawn().unwrap();
    let probe = Probe::new().unwrap();
    helper.cmd("open epoll 10").unwrap();
    let with = probe.fd_count(helper.pid()).unwrap();
    helper.cmd("close epoll 4").unwrap();
    assert_eq!(probe.fd_count(helper.pid()).unwrap(), with - 4);
    assert_eq!(kind_counts(&probe, helper.pid())[&FdKind::Epoll], 6);
}

#[test]
fn limit_matches_proc_limits() {
    let helper = Helper::spawn().unwrap();
    let limit = Probe::new().unwrap().fd_limit(helper.pid()).unwrap();
    let text = std::fs::read_to_string(format!("/proc/{}/limits", helper.pid())).unwrap();
    let row: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .collect();
    let parse = |s: &str| {
        if s == "unlimited" { None } else { Some(s.parse::<u64>().unwrap()) }
    };
    assert_eq!(limit.soft, parse(row[3]));
    assert_eq!(limit.hard, parse(row[4]));
    assert_eq!(limit.source, LimitSource::ProcLimits);
}

#[test]
fn process_table_has_the_helper_with_identity_and_argv() {
    let helper = Helper::spawn().unwrap();
    let mut probe = Probe::new().unwrap();
    let table = probe.processes().unwrap();
    let me = table.iter().find(|p| p.id.pid == helper.pid()).expect("helper listed");
    assert_eq!(me.ppid, std::process::id());
    assert_eq!(me.name, "lw-helper");
    assert!(me.argv[0].ends_with("lw-helper"), "{:?}", me.argv);
    assert!(me.exe.as_deref().unwrap_or_default().ends_with("lw-helper"));
    assert!(me.rss_bytes.unwrap() > 0);
    assert!(!me.is_kernel_thread);
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", helper.pid())).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let start: u64 = after_name.split(' ').nth(19).unwrap().parse().unwrap();
    assert_eq!(me.id.start_time.0, start);
    assert_eq!(probe.identity(helper.pid()).unwrap(), me.id);
    // Pids in ascending order, each once.
    assert!(table.windows(2).all(|w| w[0].id.pid < w[1].id.pid));
}

#[test]
fn a_vanished_process_is_no_such_process() {
    let mut helper = Helper::spawn().unwrap();
    let pid = helper.pid();
    helper.kill();
    let mut probe = Probe::new().unwrap();
    assert_eq!(probe.process(pid).unwrap_err().kind(), ErrorKind::NoSuchProcess);
    assert_eq!(probe.fd_table(pid).unwrap_err().kind(), ErrorKind::NoSuchProcess);
    assert_eq!(probe.fd_count(pid).unwrap_err().kind(), ErrorKind::NoSuchProcess);
    assert_eq!(probe.identity(pid).unwrap_err().kind(), ErrorKind::NoSuchProcess);
    assert!(probe.processes().unwrap().iter().all(|p| p.id.pid != pid));
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("leakwatch-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_listeners_inode_leads_to_its_owner() {
    let mut helper = Helper::spawn().unwrap();
    let port: u16 = helper.ok("serve-http 0")[0].parse().unwrap();
    let probe = Probe::new().unwrap();
    let inodes = probe.listening_inodes(port).unwrap();
    assert_eq!(inodes.len(), 1, "{inodes:?}");
    assert!(probe.socket_inodes(helper.pid()).unwrap().contains(&inodes[0]));
    assert!(!probe.socket_inodes(std::process::id()).unwrap().contains(&inodes[0]));
    helper.kill();
    assert!(probe.listening_inodes(port).unwrap().is_empty());
}

#[test]
fn fd_objects_are_the_inodes_of_the_links() {
    let mut helper = Helper::spawn().unwrap();
    let pid = helper.pid();
    helper.cmd("open pipe 2").unwrap();
    helper.cmd("open unix 1").unwrap();
    helper.cmd("open epoll 1").unwrap();
    let probe = Probe::new().unwrap();
    for table in [probe.fd_kinds(pid).unwrap(), probe.fd_table(pid).unwrap()] {
        assert_eq!(table.objects.len(), table.fds.len());
        let links = independent_fd_links(pid);
        let mut pipe_objects = BTreeMap::<u64, usize>::new();
        for (index, fd) in table.fds.iter().enumerate() {
            let link = &links[&fd.fd];
            let expected = ["pipe:[", "socket:["]
                .iter()
                .find_map(|p| link.strip_prefix(p))
                .map(|rest| rest.trim_end_matches(']').parse::<u64>().unwrap());
            assert_eq!(table.object(index), expected, "fd {} ({link})", fd.fd);
            if fd.kind == FdKind::Pipe {
                *pipe_objects.entry(table.object(index).unwrap()).or_default() += 1;
            }
        }
        // Both ends of one pipe are one object: the two pipes opened are held whole
        // (the helper's stdio pipes, one end each, are not).
        assert_eq!(pipe_objects.values().filter(|ends| **ends == 2).count(), 2);
    }
}

/// A real process's service job agrees with its cgroup read independently: a
/// `*.service` in a systemd slice when a service manager runs it (a machine
/// with systemd), none in a container or a login session.
#[test]
fn service_job_agrees_with_the_cgroup() {
    let helper = Helper::spawn().unwrap();
    let probe = Probe::new().unwrap();
    let job = probe.service_job(helper.pid()).unwrap();
    let cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", helper.pid())).unwrap();
    match &job {
        Some(leakwatch_probe::ServiceJob::Systemd(unit)) => {
            assert!(cgroup.contains(&format!("/{unit}")), "{unit} not in {cgroup}");
            assert!(cgroup.contains(".slice/"), "{cgroup}");
        }
        other => {
            assert_eq!(other, &None);
            let in_a_service = cgroup.lines().any(|l| {
                (l.starts_with("0::/system.slice/") || l.contains("user@"))
                    && l.split('/').any(|c| {
                        c.ends_with(".service") && !c.starts_with("user@") && !c.starts_with("run-")
                    })
            });
            assert!(!in_a_service, "a service's process got no unit: {cgroup}");
        }
    }
    // A pid that is gone is an error, not "no service".
    drop(helper);
    let gone = probe.service_job(u32::MAX >> 2).unwrap_err();
    assert_eq!(gone.kind(), ErrorKind::NoSuchProcess);
}
