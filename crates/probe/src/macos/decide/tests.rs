//! The macOS backend's decisions against a fake of its raw calls that answers as
//! XNU does (see the module doc of `decide` for where each rule comes from).

use super::*;
use crate::{CachedDetails, ErrorKind, ProcessId};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

// More errno values of XNU's <sys/errno.h> that only the fake answers with.
const EIO: Errno = 5;
const ENOMEM: Errno = 12;
const EINVAL: Errno = 22;

const ME: u32 = 501;
const ROOT: u32 = 0;

#[derive(Debug, Clone)]
struct FakeProc {
    entry: ProcEntry,
    /// What KERN_PROCARGS2 answers when XNU's own checks pass.
    args: SysResult<Vec<u8>>,
    path: Option<String>,
    fds: Vec<(FdEntry, SysResult<FdDescription>)>,
    /// How many descriptors the PROC_PIDLISTFDS hint undercounts by: the table
    /// grew between the hint and the listing.
    fd_hint_short_by: usize,
}

/// The raw calls as XNU answers them for a caller of uid `caller`.
#[derive(Debug)]
struct Fake {
    caller: u32,
    procs: RefCell<BTreeMap<i32, FakeProc>>,
    /// Every call made, by name, for tests that check what was (not) asked.
    calls: RefCell<Vec<String>>,
    /// How many processes `proc_listallpids(NULL, 0)` undercounts by.
    pid_hint_short_by: usize,
}

impl Fake {
    fn new(caller: u32) -> Self {
        Self {
            caller,
            procs: RefCell::new(BTreeMap::new()),
            calls: RefCell::new(Vec::new()),
            pid_hint_short_by: 0,
        }
    }

    fn with(self, pid: i32, proc: FakeProc) -> Self {
        self.procs.borrow_mut().insert(pid, proc);
        self
    }

    fn get(&self, pid: i32) -> Option<FakeProc> {
        self.procs.borrow().get(&pid).cloned()
    }

    fn log(&self, call: &str, pid: i32) {
        self.calls.borrow_mut().push(format!("{call}({pid})"));
    }

    /// `proc_security_policy(.., CHECK_SAME_USER)`: root, or the same uid.
    fn may_inspect(&self, proc: &FakeProc) -> bool {
        self.caller == ROOT || self.caller == proc.entry.uid
    }
}

fn zombie(proc: &FakeProc) -> bool {
    proc.entry.status == SZOMB
}

impl MacSys for Fake {
    fn open() -> Result<Self> {
        Err(Error::unsupported("the fake is built by its tests"))
    }

    fn timebase(&self) -> SysResult<(u32, u32)> {
        Ok((125, 3))
    }

    fn sysctl_int(&self, name: KernInt) -> SysResult<i64> {
        Ok(match name {
            KernInt::ArgMax => 1 << 20,
            KernInt::MaxFiles => 122_880,
            KernInt::MaxFilesPerProc => 61_440,
        })
    }

    fn pid_count_hint(&self) -> SysResult<usize> {
        Ok(self.procs.borrow().len().saturating_sub(self.pid_hint_short_by))
    }

    fn list_all_pids(&self, capacity: usize) -> SysResult<Vec<i32>> {
        Ok(self.procs.borrow().keys().copied().take(capacity).collect())
    }

    fn bsd_info(&self, pid: i32, zombies_too: bool) -> SysResult<ProcEntry> {
        self.log(if zombies_too { "bsd_info_zombies_too" } else { "bsd_info" }, pid);
        let proc = self.get(pid).ok_or(ESRCH)?;
        // proc_find skips zombies; only findzomb (arg != 0) looks among them.
        if zombie(&proc) && !zombies_too {
            return Err(ESRCH);
        }
        if !self.may_inspect(&proc) {
            return Err(EPERM);
        }
        Ok(proc.entry)
    }

    fn kinfo_proc(&self, pid: i32) -> SysResult<Option<ProcEntry>> {
        self.log("kinfo_proc", pid);
        // Live and zombie processes, no permission check, no p_name.
        Ok(self.get(pid).map(|proc| ProcEntry { name: String::new(), ..proc.entry }))
    }

    fn task_info(&self, pid: i32) -> SysResult<TaskInfo> {
        self.log("task_info", pid);
        let proc = self.get(pid).filter(|proc| !zombie(proc)).ok_or(ESRCH)?;
        if !self.may_inspect(&proc) {
            return Err(EPERM);
        }
        Ok(TaskInfo { resident_bytes: 40 << 20, cpu_ticks: 24_000_000, threads: 7 })
    }

    fn getsid(&self, pid: i32) -> SysResult<u32> {
        let proc = self.get(pid).filter(|proc| !zombie(proc)).ok_or(ESRCH)?;
        Ok(proc.entry.pgid)
    }

    fn signal_check(&self, pid: i32) -> SysResult<()> {
        let proc = self.get(pid).ok_or(ESRCH)?;
        if self.caller != ROOT && self.caller != proc.entry.uid { Err(EPERM) } else { Ok(()) }
    }

    fn procargs2(&self, pid: i32, _size: usize) -> SysResult<Vec<u8>> {
        self.log("procargs2", pid);
        let proc = self.get(pid).ok_or(EINVAL)?;
        if zombie(&proc) || (self.caller != ROOT && self.caller != proc.entry.uid) {
            return Err(EINVAL);
        }
        proc.args
    }

    fn pid_path(&self, pid: i32) -> Option<String> {
        self.get(pid).filter(|proc| !zombie(proc)).and_then(|proc| proc.path)
    }

    fn fd_list_hint(&self, pid: i32) -> SysResult<usize> {
        let proc = self.get(pid).filter(|proc| !zombie(proc)).ok_or(ESRCH)?;
        if !self.may_inspect(&proc) {
            return Err(EPERM);
        }
        Ok(proc.fds.len().saturating_sub(proc.fd_hint_short_by))
    }

    fn list_fds(&self, pid: i32, capacity: usize) -> SysResult<Vec<FdEntry>> {
        self.log("list_fds", pid);
        let proc = self.get(pid).filter(|proc| !zombie(proc)).ok_or(ESRCH)?;
        if !self.may_inspect(&proc) {
            return Err(EPERM);
        }
        if proc.fds.is_empty() {
            return Err(NO_ANSWER);
        }
        Ok(proc.fds.iter().map(|(entry, _)| *entry).take(capacity).collect())
    }

    fn describe_fd(&self, pid: i32, fd: i32, _fd_type: FdType) -> SysResult<FdDescription> {
        self.log("describe_fd", pid);
        let proc = self.get(pid).filter(|proc| !zombie(proc)).ok_or(ESRCH)?;
        proc.fds.iter().find(|(entry, _)| entry.fd == fd).map_or(Err(EBADF), |(_, d)| d.clone())
    }

    fn own_nofile_limit(&self) -> SysResult<(Option<u64>, Option<u64>)> {
        Ok((Some(256), None))
    }

    fn launchctl_limit_maxfiles(&self) -> Option<String> {
        Some("\tmaxfiles    256            unlimited      \n".to_owned())
    }
}

fn procargs(argv: &[&str]) -> Vec<u8> {
    let mut buf = i32::try_from(argv.len()).unwrap().to_ne_bytes().to_vec();
    buf.extend_from_slice(b"/usr/local/bin/node\0\0\0");
    for arg in argv {
        buf.extend_from_slice(arg.as_bytes());
        buf.push(0);
    }
    buf.extend_from_slice(b"HOME=/Users/me\0");
    buf
}

fn proc(uid: u32, ppid: u32, pgid: u32, comm: &str) -> FakeProc {
    FakeProc {
        entry: ProcEntry {
            status: SRUN,
            ppid,
            pgid,
            uid,
            comm: comm.chars().take(MAXCOMLEN).collect(),
            name: comm.to_owned(),
            start_sec: 1_764_000_000,
            start_usec: u64::from(pgid) * 7,
        },
        args: Ok(procargs(&[comm, "--serve"])),
        path: Some(format!("/usr/local/bin/{comm}")),
        fds: Vec::new(),
        fd_hint_short_by: 0,
    }
}

/// A Mac: launchd, root's `login` leading a session, the user's shell and server
/// under it, and a root daemon.
fn a_mac(caller: u32) -> Fake {
    Fake::new(caller)
        .with(1, proc(ROOT, 0, 1, "launchd"))
        .with(400, proc(ROOT, 1, 400, "login"))
        .with(401, proc(ME, 400, 401, "zsh"))
        .with(500, proc(ME, 401, 500, "node"))
        .with(90, proc(ROOT, 1, 90, "postgres"))
}

fn backend(fake: Fake) -> Mac<Fake> {
    Mac::with(fake).unwrap()
}

fn scan_all(mac: &Mac<Fake>) -> Result<Vec<crate::ProcessInfo>> {
    let mut cache: HashMap<ProcessId, CachedDetails> = HashMap::new();
    crate::scan(mac, &mut cache)
}

#[test]
fn other_users_processes_are_kept_from_kinfo_proc_with_unknowns_unknown() {
    let mac = backend(a_mac(ME));
    let rows = scan_all(&mac).unwrap();
    let pids: Vec<u32> = rows.iter().map(|row| row.id.pid).collect();
    // Root's launchd, login and postgres are listed, not dropped on EPERM.
    assert_eq!(pids, vec![1, 90, 400, 401, 500]);
    let postgres = rows.iter().find(|row| row.id.pid == 90).unwrap();
    assert_eq!((postgres.ppid, postgres.pgid, postgres.uid), (1, 90, ROOT));
    assert_eq!(postgres.name, "postgres");
    assert_eq!(postgres.state, ProcessState::Running);
    // What only the owner may read is unknown, not zero.
    assert_eq!((postgres.rss_bytes, postgres.cpu_time, postgres.threads), (None, None, None));
    // KERN_PROCARGS2 refuses another uid (EINVAL): argv unknown, path still known.
    assert!(postgres.argv.is_empty());
    assert_eq!(postgres.exe.as_deref(), Some("/usr/local/bin/postgres"));
    // The user's own processes are read in full.
    let node = rows.iter().find(|row| row.id.pid == 500).unwrap();
    assert_eq!(node.rss_bytes, Some(40 << 20));
    assert_eq!(node.cpu_time, Some(Duration::from_secs(1)));
    assert_eq!(&*node.argv, ["node".to_owned(), "--serve".to_owned()]);
}

#[test]
fn root_owned_session_leader_is_alive_so_its_session_is_not_orphaned() {
    let mac = backend(a_mac(ME));
    let rows = scan_all(&mac).unwrap();
    let zsh = rows.iter().find(|row| row.id.pid == 401).unwrap();
    // zsh's parent, root's `login`, is in the table: a live parent, not a dead one.
    let login = rows.iter().find(|row| row.id.pid == zsh.ppid).unwrap();
    assert_eq!((login.name.as_str(), login.uid), ("login", ROOT));
}

#[test]
fn identity_of_another_users_process_is_the_kinfo_proc_start_time() {
    let fake = a_mac(ME);
    let expected = fake.get(90).unwrap().entry;
    let mac = backend(fake);
    let start = mac.start_time(90).unwrap();
    assert_eq!(start, StartTime(expected.start_sec * 1_000_000 + expected.start_usec));
    assert_eq!(mac.process(90).unwrap().start_time, start);
    // Root reads the same moment through PROC_PIDTBSDINFO.
    let as_root = backend(mac_as(ROOT));
    assert_eq!(as_root.start_time(90).unwrap(), start);
    assert!(as_root.sys.calls.borrow().iter().all(|call| !call.starts_with("kinfo_proc")));
}

fn mac_as(caller: u32) -> Fake {
    a_mac(caller)
}

#[test]
fn another_users_descriptor_table_is_permission_denied_not_gone() {
    let mac = backend(a_mac(ME));
    let error = mac.fd_table(90, false).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::PermissionDenied);
    assert_eq!(mac.fd_count(90).unwrap_err().kind(), ErrorKind::PermissionDenied);
}

#[test]
fn unreadable_argv_eio_or_enomem_is_argv_unknown_and_the_scan_goes_on() {
    for errno in [EIO, ENOMEM] {
        let mut broken = proc(ME, 401, 600, "python3.12");
        broken.args = Err(errno);
        let mac = backend(a_mac(ME).with(600, broken));
        let details = mac.details(600).unwrap();
        assert!(details.argv.is_empty(), "errno {errno}");
        assert_eq!(details.exe.as_deref(), Some("/usr/local/bin/python3.12"));
        let rows = scan_all(&mac).unwrap();
        assert_eq!(rows.len(), 6, "errno {errno}: every process listed");
        let row = rows.iter().find(|row| row.id.pid == 600).unwrap();
        assert!(row.argv.is_empty());
        assert_eq!(row.rss_bytes, Some(40 << 20));
    }
}

#[test]
fn garbled_procargs_answer_is_argv_unknown() {
    let mut garbled = proc(ME, 401, 600, "deno");
    garbled.args = Ok(vec![1, 0]);
    let mac = backend(a_mac(ME).with(600, garbled));
    assert!(mac.details(600).unwrap().argv.is_empty());
}

#[test]
fn argv_of_a_process_that_exited_is_no_such_process() {
    let mac = backend(a_mac(ME));
    assert_eq!(mac.details(4242).unwrap_err().kind(), ErrorKind::NoSuchProcess);
}

#[test]
fn zombies_are_seen_as_zombies() {
    let mut dead = proc(ME, 500, 500, "node");
    dead.entry.status = SZOMB;
    let mac = backend(a_mac(ME).with(700, dead));
    let row = mac.process(700).unwrap();
    assert_eq!(row.state, ProcessState::Zombie);
    assert_eq!(row.ppid, 500);
    // No task, no session and no descriptor table left: unknown and empty.
    assert_eq!((row.rss_bytes, row.sid), (None, 0));
    assert!(mac.fd_table(700, false).unwrap().is_empty());
    assert!(mac.details(700).unwrap().argv.is_empty());
    let calls = mac.sys.calls.borrow();
    assert!(calls.contains(&"bsd_info_zombies_too(700)".to_owned()), "{calls:?}");
    assert!(!calls.contains(&"task_info(700)".to_owned()), "{calls:?}");
    drop(calls);
    assert!(scan_all(&mac).unwrap().iter().any(|row| row.id.pid == 700));
}

#[test]
fn another_users_zombie_is_seen_through_kinfo_proc() {
    let mut dead = proc(ROOT, 1, 800, "cupsd");
    dead.entry.status = SZOMB;
    let mac = backend(a_mac(ME).with(800, dead));
    assert_eq!(mac.process(800).unwrap().state, ProcessState::Zombie);
}

#[test]
fn process_gone_between_listing_and_reading_is_left_out() {
    let mac = backend(a_mac(ME));
    assert_eq!(mac.process(4242).unwrap_err().kind(), ErrorKind::NoSuchProcess);
    assert_eq!(mac.start_time(4242).unwrap_err().kind(), ErrorKind::NoSuchProcess);
    assert_eq!(mac.fd_table(4242, true).unwrap_err().kind(), ErrorKind::NoSuchProcess);
}

fn vnode(fd: i32, path: &str) -> (FdEntry, SysResult<FdDescription>) {
    (
        FdEntry { fd, fd_type: FdType::Vnode },
        Ok(FdDescription {
            kind: FdKind::File,
            path: Some(path.to_owned()),
            endpoint: None,
            object: None,
        }),
    )
}

#[test]
fn descriptor_table_that_grew_after_the_hint_is_listed_whole() {
    let mut server = proc(ME, 401, 900, "node");
    server.fds = (0..300).map(|fd| (FdEntry { fd, fd_type: FdType::Kqueue }, Err(EBADF))).collect();
    server.fd_hint_short_by = 250;
    let mac = backend(a_mac(ME).with(900, server));
    let fds = mac.fd_table(900, false).unwrap();
    assert_eq!(fds.len(), 300);
    assert!(fds.iter().all(|fd| fd.kind == FdKind::Kqueue));
    assert_eq!(mac.fd_count(900).unwrap(), 300);
    // Kinds the listing already gives are not asked about again.
    assert!(mac.sys.calls.borrow().iter().all(|call| !call.starts_with("describe_fd")));
}

#[test]
fn descriptors_closed_refused_or_described_are_sorted_out() {
    let mut server = proc(ME, 401, 900, "node");
    server.fds = vec![
        vnode(3, "/Users/me/state.db"),
        // Closed between the listing and the question.
        (FdEntry { fd: 4, fd_type: FdType::Vnode }, Err(EBADF)),
        // Refused or short: kept, undescribed.
        (FdEntry { fd: 5, fd_type: FdType::Socket }, Err(NO_ANSWER)),
        (FdEntry { fd: 6, fd_type: FdType::Pipe }, Err(NO_ANSWER)),
    ];
    let mac = backend(a_mac(ME).with(900, server));
    let fds = mac.fd_table(900, false).unwrap();
    let summary: Vec<(i32, FdKind, Option<&str>)> =
        fds.iter().map(|fd| (fd.fd, fd.kind, fd.path.as_deref())).collect();
    assert_eq!(
        summary,
        vec![
            (3, FdKind::File, Some("/Users/me/state.db")),
            (5, FdKind::Socket, None),
            (6, FdKind::Pipe, None),
        ]
    );
}

#[test]
fn process_exiting_while_its_descriptors_are_described_is_gone() {
    let mut server = proc(ME, 401, 900, "node");
    server.fds = vec![(FdEntry { fd: 3, fd_type: FdType::Vnode }, Err(ESRCH))];
    let mac = backend(a_mac(ME).with(900, server));
    assert_eq!(mac.fd_table(900, false).unwrap_err().kind(), ErrorKind::NoSuchProcess);
}

#[test]
fn process_without_descriptors_has_an_empty_table() {
    let mac = backend(a_mac(ME));
    assert!(mac.fd_table(500, true).unwrap().is_empty());
}

#[test]
fn names_longer_than_p_comm_are_read_whole() {
    // p_comm keeps 16 bytes; PROC_PIDTBSDINFO's p_name keeps 32.
    let long = "com.docker.backend-helper";
    let mut helper = proc(ME, 1, 950, long);
    helper.entry.name = long.chars().take(2 * MAXCOMLEN).collect();
    let mac = backend(a_mac(ME).with(950, helper.clone()));
    assert_eq!(mac.process(950).unwrap().name, long);
    // p_name had room for it all: the executable's path is not asked for.
    helper.path = None;
    let mac = backend(a_mac(ME).with(950, helper.clone()));
    assert_eq!(mac.process(950).unwrap().name, long);
    helper.path = Some(format!("/usr/local/bin/{long}"));
    // Another user's: only p_comm, completed from the executable's file name.
    helper.entry.uid = ROOT;
    let mac = backend(a_mac(ME).with(950, helper));
    assert_eq!(mac.process(950).unwrap().name, long);
}

#[test]
fn a_cut_name_is_not_replaced_by_an_unrelated_executable_name() {
    let mut runner = proc(ROOT, 1, 960, "python3.12-script-runner");
    runner.path = Some("/opt/homebrew/bin/python3.12".to_owned());
    let mac = backend(a_mac(ME).with(960, runner));
    assert_eq!(mac.process(960).unwrap().name, "python3.12-scrip");
}

#[test]
fn descriptor_limit_sources() {
    let mac = backend(a_mac(ME));
    let own = mac.fd_limit(std::process::id()).unwrap();
    assert_eq!((own.soft, own.hard, own.source), (Some(256), None, LimitSource::Getrlimit));
    // Another process's limit: launchd's default, an unlimited hard limit bounded
    // by kern.maxfilesperproc.
    let other = mac.fd_limit(500).unwrap();
    assert_eq!((other.soft, other.hard), (Some(256), Some(61_440)));
    assert_eq!(other.source, LimitSource::LaunchdDefault);
    assert_eq!(mac.fd_limit(4242).unwrap_err().kind(), ErrorKind::NoSuchProcess);
    let names: Vec<String> = mac.system_limits().into_iter().map(|limit| limit.source).collect();
    assert!(names.contains(&"sysctl kern.maxfiles".to_owned()), "{names:?}");
}

#[test]
fn pid_listing_that_fills_its_buffer_is_asked_again() {
    let mut fake = Fake::new(ME);
    for pid in 1..=2000 {
        fake = fake.with(pid, proc(ME, 1, u32::try_from(pid).unwrap(), "worker"));
    }
    // Forked since the hint: the first listing fills its buffer.
    fake.pid_hint_short_by = 1900;
    let mac = backend(fake);
    assert_eq!(mac.pids().unwrap().len(), 2000);
}

#[test]
fn procargs2_gives_exec_path_and_exactly_argc_arguments() {
    let mut buf = 3i32.to_ne_bytes().to_vec();
    buf.extend_from_slice(b"/usr/bin/python3\0\0\0\0python3\0-m\0\0PATH=/usr/bin\0");
    let (exec_path, argv) = parse_procargs2(&buf).unwrap();
    assert_eq!(exec_path.as_deref(), Some("/usr/bin/python3"));
    // The empty third argument is kept; the environment is not read.
    assert_eq!(argv, vec!["python3".to_owned(), "-m".to_owned(), String::new()]);
}

#[test]
fn procargs2_without_arguments_or_too_short() {
    let mut buf = 0i32.to_ne_bytes().to_vec();
    buf.extend_from_slice(b"/sbin/launchd\0");
    assert_eq!(parse_procargs2(&buf), Some((Some("/sbin/launchd".to_owned()), Vec::new())));
    assert_eq!(parse_procargs2(b"\x01\0"), None);
}

#[test]
fn launchctl_limit_columns() {
    let text = "\tmaxfiles    256            unlimited      \n";
    assert_eq!(parse_launchctl_limit(text), Some((Some(256), None)));
    assert_eq!(
        parse_launchctl_limit("\tmaxfiles    10240   10240\n"),
        Some((Some(10240), Some(10240)))
    );
    assert_eq!(parse_launchctl_limit("\tmaxproc    2000   4000\n"), None);
}

#[test]
fn timebase_converts_mach_units() {
    let apple_silicon = Timebase { numer: 125, denom: 3 };
    assert_eq!(apple_silicon.duration(24_000_000), Duration::from_secs(1));
}

#[test]
fn undescribed_descriptors_keep_the_kind_of_their_type() {
    // DESIGN.md's table: PROX_FDTYPE_* to kind, when nothing more is known.
    let kinds: Vec<FdKind> = [
        FdType::Vnode,
        FdType::Socket,
        FdType::Pshm,
        FdType::Psem,
        FdType::Pipe,
        FdType::Kqueue,
        FdType::Fsevents,
        FdType::Other,
    ]
    .into_iter()
    .map(FdType::plain_kind)
    .collect();
    assert_eq!(
        kinds,
        vec![
            FdKind::File,
            FdKind::Socket,
            FdKind::Shm,
            FdKind::Sem,
            FdKind::Pipe,
            FdKind::Kqueue,
            FdKind::Fsevents,
            FdKind::Other,
        ]
    );
}

#[test]
fn every_tick_read_describes_a_bounded_number_of_vnodes() {
    let mut server = proc(ME, 401, 900, "node");
    let total = i32::try_from(VNODE_DESCRIPTIONS).unwrap() + 100;
    server.fds = (0..total).map(|fd| vnode(fd, "/Volumes/nfs/state.db")).collect();
    let mac = backend(a_mac(ME).with(900, server));
    let described = |calls: &RefCell<Vec<String>>| {
        calls.borrow().iter().filter(|call| call.starts_with("describe_fd")).count()
    };
    let kinds = mac.fd_table(900, false).unwrap();
    assert_eq!(kinds.len(), VNODE_DESCRIPTIONS + 100, "every descriptor is counted");
    assert!(kinds.iter().all(|fd| fd.kind == FdKind::File));
    assert_eq!(kinds.iter().filter(|fd| fd.path.is_some()).count(), VNODE_DESCRIPTIONS);
    assert_eq!(described(&mac.sys.calls), VNODE_DESCRIPTIONS);
    // The full table (`leakwatch fds`, snapshots) describes them all.
    mac.sys.calls.borrow_mut().clear();
    let full = mac.fd_table(900, true).unwrap();
    assert!(full.iter().all(|fd| fd.path.is_some()));
    assert_eq!(described(&mac.sys.calls), VNODE_DESCRIPTIONS + 100);
}

/// A KERN_PROCARGS2 answer with this environment (and the "apple" strings XNU
/// puts after it, which are not environment variables).
fn procargs_with_env(argv: &[&str], env: &[&str]) -> Vec<u8> {
    let mut buf = i32::try_from(argv.len()).unwrap().to_ne_bytes().to_vec();
    buf.extend_from_slice(b"/usr/local/bin/node\0\0\0");
    for s in argv.iter().chain(env) {
        buf.extend_from_slice(s.as_bytes());
        buf.push(0);
    }
    buf.extend_from_slice(b"\0executable_path=/usr/local/bin/node\0ptr_munge=\0");
    buf
}

#[test]
fn a_launchd_job_is_named_by_the_label_in_its_environment() {
    let mut job = proc(ME, 1, 600, "node");
    job.args = Ok(procargs_with_env(
        &["node", "server.js"],
        &["HOME=/Users/me", "XPC_SERVICE_NAME=com.example.agent", "PATH=/usr/bin"],
    ));
    let mut shell_child = proc(ME, 401, 700, "node");
    shell_child.args = Ok(procargs_with_env(&["node"], &["XPC_SERVICE_NAME=0"]));
    let mut app = proc(ME, 1, 800, "Safari");
    app.args = Ok(procargs_with_env(
        &["/Applications/Safari.app/Contents/MacOS/Safari"],
        &["XPC_SERVICE_NAME=application.com.apple.Safari.1234.5678"],
    ));
    let mac = backend(a_mac(ME).with(600, job).with(700, shell_child).with(800, app));
    assert_eq!(
        mac.service_job(600).unwrap(),
        Some(ServiceJob::Launchd("com.example.agent".to_owned()))
    );
    // Outside any job, or a GUI app's per-launch instance: no label to propose.
    assert_eq!(mac.service_job(700).unwrap(), None);
    assert_eq!(mac.service_job(800).unwrap(), None);
    // No XPC_SERVICE_NAME at all (the fixture's plain environment).
    assert_eq!(mac.service_job(500).unwrap(), None);
}

#[test]
fn another_users_environment_is_unknown_and_a_gone_process_is_an_error() {
    let mut daemon = proc(ROOT, 1, 90, "postgres");
    daemon.args = Ok(procargs_with_env(&["postgres"], &["XPC_SERVICE_NAME=org.postgresql"]));
    let mac = backend(a_mac(ME).with(90, daemon));
    // KERN_PROCARGS2 answers EINVAL for another uid: not known, not an error.
    assert_eq!(mac.service_job(90).unwrap(), None);
    assert_eq!(mac.service_job(4242).unwrap_err().kind(), ErrorKind::NoSuchProcess);
    // Root reads it.
    let mut daemon = proc(ROOT, 1, 90, "postgres");
    daemon.args = Ok(procargs_with_env(&["postgres"], &["XPC_SERVICE_NAME=org.postgresql"]));
    let mac = backend(a_mac(ROOT).with(90, daemon));
    assert_eq!(mac.service_job(90).unwrap(), Some(ServiceJob::Launchd("org.postgresql".into())));
}

#[test]
fn procargs2_env_stops_before_the_apple_strings() {
    let buf = procargs_with_env(&["python3", "-m"], &["A=1", "B=2"]);
    assert_eq!(procargs2_env(&buf), vec!["A=1".to_owned(), "B=2".to_owned()]);
    assert!(procargs2_env(b"\x01\0").is_empty());
    assert!(procargs2_env(&[]).is_empty());
}

#[test]
fn descriptor_identity_is_what_libproc_gives_pipes_sharing_one() {
    let described = |fd, fd_type, kind, object| {
        (FdEntry { fd, fd_type }, Ok(FdDescription { kind, path: None, endpoint: None, object }))
    };
    let mut server = proc(ME, 401, 900, "node");
    // Both ends of one pipe name each other's handle.
    let pipe = pipe_object(0xfff0, 0xffe0);
    assert_eq!(pipe, pipe_object(0xffe0, 0xfff0));
    server.fds = vec![
        described(3, FdType::Vnode, FdKind::File, vnode_object(16_777_220, 4242)),
        described(4, FdType::Socket, FdKind::Unix, socket_object(0xabc0)),
        described(5, FdType::Pipe, FdKind::Pipe, pipe),
        described(6, FdType::Pipe, FdKind::Pipe, pipe_object(0xffe0, 0xfff0)),
        // A kqueue carries no handle, and is not asked about.
        (FdEntry { fd: 7, fd_type: FdType::Kqueue }, Err(EBADF)),
        // A pipe the kernel would not describe (MACF) stays, without identity.
        (FdEntry { fd: 8, fd_type: FdType::Pipe }, Err(EPERM)),
    ];
    let mac = backend(a_mac(ME).with(900, server));
    let table = mac.fd_table_with_objects(900, false).unwrap();
    let objects: Vec<Option<u64>> = table.iter().map(|(_, object)| *object).collect();
    assert_eq!(
        objects,
        vec![vnode_object(16_777_220, 4242), Some(0xabc0), Some(0xffe0), Some(0xffe0), None, None]
    );
    assert_eq!(table[5].0.kind, FdKind::Pipe);
    assert!(vnode_object(16_777_220, 4242).is_some());
    assert_ne!(vnode_object(1, 4242), vnode_object(2, 4242), "same inode, other device");
    assert_eq!(vnode_object(7, 0), None, "a zeroed stat is no identity");
    assert_eq!(socket_object(0), None);
    assert_eq!(pipe_object(0, 0), None);
    assert_eq!(pipe_object(0x10, 0), Some(0x10), "the peer closed");
}
