//! The Linux backend: everything comes from `/proc` (proc(5)).
//!
//! Reads are relative to one directory descriptor on `/proc`, through `rustix`
//! (safe wrappers over the raw syscalls), so a scan costs a handful of syscalls per
//! process and no path resolution from `/`. The one call that follows a target's
//! descriptor to its file, telling a directory from a file, is a `statx` with
//! `AT_STATX_DONT_SYNC` that asks for the file type only, which every filesystem
//! answers from its inode cache: a hung NFS or FUSE mount cannot block us.

use crate::backend::{Backend, ProcessDetails, RawProcess};
use crate::{
    Error, ErrorKind, Fd, FdKind, FdLimit, LimitSource, ProcessState, Result, ServiceJob,
    StartTime, SystemLimit,
};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, StatxFlags};
use std::collections::HashMap;
use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The kernel's `PF_KTHREAD` task flag (include/linux/sched.h), field 9 of stat.
const PF_KTHREAD: u64 = 0x0020_0000;

#[derive(Debug)]
pub(crate) struct Os {
    proc: OwnedFd,
    clock_ticks_per_second: u64,
    page_size: u64,
    /// `btime` of /proc/stat: start times are ticks after this moment.
    boot_time: SystemTime,
    /// Socket kinds by inode: a socket's protocol never changes, so each is
    /// asked once (see [`socket_kind`]). Bounded by [`SOCKET_KINDS_MAX`].
    socket_kinds: std::sync::Mutex<HashMap<u64, FdKind>>,
}

/// More remembered socket kinds than this and the memory starts afresh: far more
/// than a watchdog's targets hold, and it keeps the cache from growing forever.
const SOCKET_KINDS_MAX: usize = 65_536;

impl Backend for Os {
    fn new() -> Result<Self> {
        let proc = rustix::fs::open(
            "/proc",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::from_io(None, "/proc", e.into()))?;
        let stat = read_file(&proc, "stat").map_err(|e| Error::from_io(None, "/proc/stat", e))?;
        let boot_secs = parse_btime(&stat).ok_or_else(|| Error::malformed(None, "/proc/stat"))?;
        Ok(Self {
            proc,
            clock_ticks_per_second: rustix::param::clock_ticks_per_second().max(1),
            page_size: rustix::param::page_size() as u64,
            boot_time: UNIX_EPOCH + Duration::from_secs(boot_secs),
            socket_kinds: std::sync::Mutex::new(HashMap::new()),
        })
    }

    fn pids(&self) -> Result<Vec<u32>> {
        let fd = rustix::fs::openat(
            &self.proc,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::from_io(None, "/proc", e.into()))?;
        let dir = Dir::new(fd).map_err(|e| Error::from_io(None, "/proc", e.into()))?;
        let mut pids = Vec::with_capacity(512);
        for entry in dir {
            let entry = entry.map_err(|e| Error::from_io(None, "/proc", e.into()))?;
            if let Some(pid) = parse_decimal::<u32>(entry.file_name().to_bytes()) {
                pids.push(pid);
            }
        }
        pids.sort_unstable();
        Ok(pids)
    }

    fn process(&self, pid: u32) -> Result<RawProcess> {
        let stat = self.read_pid_file(pid, "stat")?;
        let stat = parse_stat(&stat).ok_or_else(|| Error::malformed(Some(pid), "stat"))?;
        // The owner of /proc/PID is the process's effective uid (proc(5)).
        let uid = rustix::fs::statx(&self.proc, pid.to_string(), AtFlags::empty(), StatxFlags::UID)
            .map_err(|e| Error::from_io(Some(pid), "owner", e.into()))?
            .stx_uid;
        Ok(RawProcess {
            start_time: StartTime(stat.start_ticks),
            started_at: self.boot_time
                + Duration::from_millis(stat.start_ticks * 1000 / self.clock_ticks_per_second),
            ppid: stat.ppid,
            pgid: stat.pgid,
            sid: stat.sid,
            uid,
            state: stat.state,
            name: stat.name,
            rss_bytes: Some(stat.rss_pages * self.page_size),
            cpu_time: Some(Duration::from_millis(
                (stat.utime + stat.stime) * 1000 / self.clock_ticks_per_second,
            )),
            threads: Some(stat.threads),
            is_kernel_thread: stat.flags & PF_KTHREAD != 0,
        })
    }

    fn details(&self, pid: u32) -> Result<ProcessDetails> {
        let cmdline = self.read_pid_file(pid, "cmdline")?;
        let argv = cmdline
            .split(|&b| b == 0)
            .filter(|arg| !arg.is_empty())
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect();
        let mut buf = [0u8; 4096];
        // Kernel threads have no executable, other users' processes hide it: both
        // are an absent exe, not an error.
        let exe = rustix::fs::readlinkat_raw(&self.proc, format!("{pid}/exe"), &mut buf)
            .ok()
            .map(|len| String::from_utf8_lossy(&buf[..len]).into_owned());
        Ok(ProcessDetails { argv, exe })
    }

    fn start_time(&self, pid: u32) -> Result<StartTime> {
        let stat = self.read_pid_file(pid, "stat")?;
        parse_stat(&stat)
            .map(|stat| StartTime(stat.start_ticks))
            .ok_or_else(|| Error::malformed(Some(pid), "stat"))
    }

    fn fd_table(&self, pid: u32, endpoints: bool) -> Result<Vec<Fd>> {
        Ok(self.fd_table_with_objects(pid, endpoints)?.into_iter().map(|(fd, _)| fd).collect())
    }

    fn fd_table_with_objects(&self, pid: u32, endpoints: bool) -> Result<Vec<(Fd, Option<u64>)>> {
        let fd_dir = self.open_fd_dir(pid)?;
        let dir_fd = fd_dir.as_fd();
        let mut dir = Dir::read_from(dir_fd).map_err(|e| fd_dir_error(pid, e))?;
        let mut fds = Vec::new();
        let mut objects = Vec::new();
        let mut sockets: HashMap<u64, Vec<usize>> = HashMap::new();
        let mut path_kinds: HashMap<String, FdKind> = HashMap::new();
        let mut link = [0u8; 4096];
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(|e| fd_dir_error(pid, e))?;
            let name = entry.file_name();
            let Some(fd) = parse_decimal::<i32>(name.to_bytes()) else {
                continue;
            };
            let len = match rustix::fs::readlinkat_raw(dir_fd, name, &mut link) {
                Ok(len) => len,
                // Closed between readdir and readlink: it is simply not open any more.
                Err(rustix::io::Errno::NOENT) => continue,
                Err(e) => return Err(fd_dir_error(pid, e)),
            };
            let link = &link[..len];
            objects.push(link_inode(link));
            let entry = match classify_link(link) {
                Link::Kind(kind) => Fd { fd, kind, path: None, endpoint: None },
                Link::Socket(inode) if endpoints => {
                    sockets.entry(inode).or_default().push(fds.len());
                    Fd { fd, kind: FdKind::Socket, path: None, endpoint: None }
                }
                Link::Socket(inode) => Fd {
                    fd,
                    kind: self.cached_socket_kind(pid, name, inode),
                    path: None,
                    endpoint: None,
                },
                Link::Path { kind, path } => {
                    // A leak is many descriptors on one path: ask its type once.
                    let kind = match kind {
                        Some(kind) => kind,
                        None => match path_kinds.get(&path) {
                            Some(kind) => *kind,
                            None => {
                                let kind = file_or_dir(dir_fd, name);
                                path_kinds.insert(path.clone(), kind);
                                kind
                            }
                        },
                    };
                    Fd { fd, kind, path: Some(path), endpoint: None }
                }
            };
            fds.push(entry);
        }
        if !sockets.is_empty() {
            self.resolve_sockets(pid, &mut fds, sockets)?;
        }
        Ok(fds.into_iter().zip(objects).collect())
    }

    fn fd_count(&self, pid: u32) -> Result<usize> {
        // Since Linux 6.2, the size of /proc/PID/fd is its number of entries,
        // answered without listing them. Older kernels report 0: count by hand.
        let stat =
            rustix::fs::statx(&self.proc, format!("{pid}/fd"), AtFlags::empty(), StatxFlags::SIZE)
                .map_err(|e| fd_dir_error(pid, e))?;
        if stat.stx_size > 0 {
            return usize::try_from(stat.stx_size).map_err(|_| Error::malformed(Some(pid), "fd"));
        }
        let fd_dir = self.open_fd_dir(pid)?;
        let dir = Dir::new(fd_dir).map_err(|e| fd_dir_error(pid, e))?;
        let mut count = 0;
        for entry in dir {
            let entry = entry.map_err(|e| fd_dir_error(pid, e))?;
            if entry.file_name().to_bytes() != b"." && entry.file_name().to_bytes() != b".." {
                count += 1;
            }
        }
        Ok(count)
    }

    fn fd_limit(&self, pid: u32) -> Result<FdLimit> {
        let limits = self.read_pid_file(pid, "limits")?;
        let (soft, hard) =
            parse_open_files_limit(&limits).ok_or_else(|| Error::malformed(Some(pid), "limits"))?;
        Ok(FdLimit { soft, hard, source: LimitSource::ProcLimits })
    }

    fn service_job(&self, pid: u32) -> Result<Option<ServiceJob>> {
        let cgroup = self.read_pid_file(pid, "cgroup")?;
        Ok(systemd_unit_of_cgroup(&String::from_utf8_lossy(&cgroup)).map(ServiceJob::Systemd))
    }

    fn listening_inodes(&self, port: u16) -> Result<Vec<u64>> {
        let mut inodes = Vec::new();
        for table in [SocketTable::Tcp, SocketTable::Tcp6] {
            let text = match read_file(&self.proc, table.file()) {
                Ok(text) => text,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::from_io(None, table.file(), e)),
            };
            inodes.extend(table.listening_on(&text, port));
        }
        Ok(inodes)
    }

    fn socket_inodes(&self, pid: u32) -> Result<Vec<u64>> {
        let fd_dir = self.open_fd_dir(pid)?;
        let dir_fd = fd_dir.as_fd();
        let mut dir = Dir::read_from(dir_fd).map_err(|e| fd_dir_error(pid, e))?;
        let mut inodes = Vec::new();
        let mut link = [0u8; 64];
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(|e| fd_dir_error(pid, e))?;
            let name = entry.file_name();
            if parse_decimal::<i32>(name.to_bytes()).is_none() {
                continue;
            }
            let Ok(len) = rustix::fs::readlinkat_raw(dir_fd, name, &mut link) else { continue };
            if let Link::Socket(inode) = classify_link(&link[..len.min(link.len())]) {
                inodes.push(inode);
            }
        }
        Ok(inodes)
    }

    fn system_limits(&self) -> Vec<SystemLimit> {
        let mut limits = Vec::new();
        let mut read_number = |name: &str, file: &str, nth: usize| {
            let Ok(text) = read_file(&self.proc, file) else { return };
            let value = String::from_utf8_lossy(&text)
                .split_ascii_whitespace()
                .nth(nth)
                .and_then(|v| v.parse::<u64>().ok());
            if let Some(value) = value {
                let value = (value != u64::MAX && value != i64::MAX as u64).then_some(value);
                limits.push(SystemLimit {
                    name: name.to_owned(),
                    value,
                    source: format!("/proc/{file}"),
                });
            }
        };
        read_number("open files, system-wide (fs.file-max)", "sys/fs/file-max", 0);
        read_number("open files now, system-wide (fs.file-nr)", "sys/fs/file-nr", 0);
        read_number("highest per-process limit (fs.nr_open)", "sys/fs/nr_open", 0);
        limits
    }
}

impl Os {
    fn cached_socket_kind(&self, pid: u32, fd_name: &std::ffi::CStr, inode: u64) -> FdKind {
        let Ok(mut known) = self.socket_kinds.lock() else { return socket_kind(pid, fd_name) };
        if let Some(kind) = known.get(&inode) {
            return *kind;
        }
        let kind = socket_kind(pid, fd_name);
        if known.len() >= SOCKET_KINDS_MAX {
            known.clear();
        }
        // Only a definite answer is remembered: a failed read may succeed next time.
        if kind != FdKind::Socket {
            known.insert(inode, kind);
        }
        kind
    }

    fn read_pid_file(&self, pid: u32, file: &str) -> Result<Vec<u8>> {
        read_file(&self.proc, &format!("{pid}/{file}"))
            .map_err(|e| Error::from_io(Some(pid), file.to_owned(), e))
    }

    fn open_fd_dir(&self, pid: u32) -> Result<OwnedFd> {
        rustix::fs::openat(
            &self.proc,
            format!("{pid}/fd"),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| fd_dir_error(pid, e))
    }

    /// Turns `socket:[inode]` entries into unix/tcp/udp with endpoints by looking
    /// their inodes up in the process's network namespace tables, reading only as
    /// many tables as it takes to resolve them all.
    fn resolve_sockets(
        &self,
        pid: u32,
        fds: &mut [Fd],
        mut pending: HashMap<u64, Vec<usize>>,
    ) -> Result<()> {
        for table in SocketTable::ALL {
            if pending.is_empty() {
                break;
            }
            let text = match self.read_pid_file(pid, table.file()) {
                Ok(text) => text,
                // A kernel without IPv6 has no tcp6: skip that table.
                Err(e) if e.kind() == ErrorKind::NoSuchProcess => {
                    if self.start_time(pid).is_err() {
                        return Err(e);
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            for (inode, kind, endpoint) in table.parse_where(&text, |i| pending.contains_key(&i)) {
                if let Some(indexes) = pending.remove(&inode) {
                    for index in indexes {
                        fds[index].kind = kind;
                        fds[index].endpoint.clone_from(&endpoint);
                    }
                }
            }
        }
        Ok(())
    }
}

fn fd_dir_error(pid: u32, e: rustix::io::Errno) -> Error {
    Error::from_io(Some(pid), "fd", e.into())
}

/// Reads a whole (small, procfs) file relative to `dir`.
fn read_file(dir: &OwnedFd, path: &str) -> io::Result<Vec<u8>> {
    let fd = rustix::fs::openat(dir, path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    let mut buf = Vec::with_capacity(1024);
    loop {
        if buf.capacity() - buf.len() < 512 {
            buf.reserve(buf.capacity());
        }
        let read = rustix::io::read(&fd, rustix::buffer::spare_capacity(&mut buf))?;
        if read == 0 {
            return Ok(buf);
        }
    }
}

/// A socket's kind from its protocol name, which the kernel gives as the
/// `system.sockprotoname` attribute of the descriptor (socket(7) sockfs: `TCP`,
/// `TCPv6`, `UDP`, `UNIX-STREAM`, `NETLINK`...): one getxattr, where the net
/// tables cost milliseconds.
fn socket_kind(pid: u32, fd_name: &std::ffi::CStr) -> FdKind {
    let mut path = format!("/proc/{pid}/fd/").into_bytes();
    path.extend_from_slice(fd_name.to_bytes());
    let mut name = [0u8; 32];
    let Ok(len) = rustix::fs::getxattr(path.as_slice(), "system.sockprotoname", &mut name) else {
        return FdKind::Socket;
    };
    let name = name[..len].strip_suffix(b"\0").unwrap_or(&name[..len]);
    match name {
        n if n.starts_with(b"UNIX") => FdKind::Unix,
        n if n.starts_with(b"TCP") || n.starts_with(b"MPTCP") => FdKind::Tcp,
        n if n.starts_with(b"UDP") => FdKind::Udp,
        _ => FdKind::Socket,
    }
}

/// Tells a directory from any other file by the descriptor's magic link, asking
/// for the type alone without syncing: see the module documentation.
fn file_or_dir(fd_dir: rustix::fd::BorrowedFd<'_>, name: &std::ffi::CStr) -> FdKind {
    match rustix::fs::statx(fd_dir, name, AtFlags::STATX_DONT_SYNC, StatxFlags::TYPE) {
        Ok(stat) if FileType::from_raw_mode(stat.stx_mode.into()) == FileType::Directory => {
            FdKind::Dir
        }
        _ => FdKind::File,
    }
}

/// The systemd service unit a process runs in, from `/proc/PID/cgroup`
/// (cgroups(7): one `hierarchy-ID:controllers:path` line per hierarchy; the
/// unified one is `0::path`, systemd's own v1 one `N:name=systemd:path`).
/// systemd puts each service's processes in a cgroup named after the unit:
/// `/system.slice/nginx.service`, or under the user manager
/// `/user.slice/user-1000.slice/user@1000.service/app.slice/web.service`
/// (systemd.unit(5), "the cgroup hierarchy"). Not a service: a login
/// session or an app scope (`*.scope`), the user manager itself
/// (`user@UID.service`), and transient `systemd-run` units (`run-*.service`),
/// which no longer exist once stopped and so would not find the process
/// again after a restart.
fn systemd_unit_of_cgroup(text: &str) -> Option<String> {
    let path = text
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            matches!(controllers, "" | "name=systemd").then_some((controllers, path))
        })
        // The unified hierarchy where there is one; systemd's v1 tree otherwise.
        .min_by_key(|(controllers, _)| !controllers.is_empty())
        .map(|(_, path)| path)?;
    let components: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if !matches!(components.first(), Some(&("system.slice" | "user.slice"))) {
        return None;
    }
    let unit = components.iter().rev().find(|c| c.ends_with(".service"))?;
    let manager = unit
        .strip_prefix("user@")
        .and_then(|rest| rest.strip_suffix(".service"))
        .is_some_and(|uid| uid.bytes().all(|b| b.is_ascii_digit()));
    if manager || unit.starts_with("run-") || unit.len() <= ".service".len() {
        return None;
    }
    Some((*unit).to_owned())
}

fn parse_decimal<T: std::str::FromStr>(bytes: &[u8]) -> Option<T> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

fn parse_btime(stat: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(stat).ok()?;
    text.lines().find_map(|line| line.strip_prefix("btime ")?.trim().parse().ok())
}

/// The fields of `/proc/PID/stat` Leakwatch uses.
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    name: String,
    state: ProcessState,
    ppid: u32,
    pgid: u32,
    sid: u32,
    flags: u64,
    utime: u64,
    stime: u64,
    threads: u32,
    start_ticks: u64,
    rss_pages: u64,
}

/// Parses `/proc/PID/stat` (proc_pid_stat(5)). The name sits in parentheses and
/// may itself hold spaces and parentheses, so the fields are counted from the
/// last `)`.
fn parse_stat(bytes: &[u8]) -> Option<Stat> {
    let open = bytes.iter().position(|&b| b == b'(')?;
    let close = bytes.iter().rposition(|&b| b == b')')?;
    let name = String::from_utf8_lossy(bytes.get(open + 1..close)?).into_owned();
    let rest = std::str::from_utf8(bytes.get(close + 1..)?).ok()?;
    // fields[0] is field 3 (state) of the man page.
    let fields: Vec<&str> = rest.split_ascii_whitespace().take(22).collect();
    let field = |n: usize| fields.get(n - 3).copied();
    let number = |n: usize| field(n)?.parse::<u64>().ok();
    let small = |n: usize| field(n)?.parse::<u32>().ok();
    Some(Stat {
        name,
        state: parse_state(field(3)?),
        ppid: small(4)?,
        pgid: small(5)?,
        sid: small(6)?,
        flags: number(9)?,
        utime: number(14)?,
        stime: number(15)?,
        threads: small(20)?,
        start_ticks: number(22)?,
        rss_pages: number(24)?,
    })
}

fn parse_state(code: &str) -> ProcessState {
    match code {
        "R" => ProcessState::Running,
        "S" => ProcessState::Sleeping,
        "D" => ProcessState::DiskSleep,
        "T" => ProcessState::Stopped,
        "t" => ProcessState::Traced,
        "Z" => ProcessState::Zombie,
        "X" | "x" => ProcessState::Dead,
        "I" => ProcessState::Idle,
        _ => ProcessState::Unknown,
    }
}

/// Parses the "Max open files" row of `/proc/PID/limits`; `None` is unlimited.
#[allow(clippy::type_complexity)]
fn parse_open_files_limit(bytes: &[u8]) -> Option<(Option<u64>, Option<u64>)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let row = text.lines().find_map(|line| line.strip_prefix("Max open files"))?;
    let mut columns = row.split_ascii_whitespace();
    let mut value = || -> Option<Option<u64>> {
        match columns.next()? {
            "unlimited" => Some(None),
            number => number.parse().ok().map(Some),
        }
    };
    Some((value()?, value()?))
}

/// What the text of a `/proc/PID/fd/N` link says about the descriptor.
#[derive(Debug, PartialEq, Eq)]
enum Link {
    Kind(FdKind),
    /// `socket:[inode]`, to be looked up in the net tables.
    Socket(u64),
    /// A path; `kind` is `None` when only the file type can tell file from dir.
    Path {
        kind: Option<FdKind>,
        path: String,
    },
}

/// Classifies a descriptor by its link text alone (DESIGN.md, "File descriptor
/// kinds", Linux column).
fn classify_link(link: &[u8]) -> Link {
    if let Some(rest) = link.strip_prefix(b"socket:[") {
        return match rest.strip_suffix(b"]").and_then(parse_decimal) {
            Some(inode) => Link::Socket(inode),
            None => Link::Kind(FdKind::Socket),
        };
    }
    if link.starts_with(b"pipe:[") {
        return Link::Kind(FdKind::Pipe);
    }
    // Since Linux 6.9 pidfds live on their own pidfs and read as `pidfd:[ino]`.
    if link.starts_with(b"pidfd:") {
        return Link::Kind(FdKind::Pidfd);
    }
    if let Some(anon) = link.strip_prefix(b"anon_inode:") {
        let anon = anon.strip_prefix(b"[").and_then(|a| a.strip_suffix(b"]")).unwrap_or(anon);
        let kind = match anon {
            b"eventpoll" => FdKind::Epoll,
            b"eventfd" => FdKind::Eventfd,
            b"timerfd" => FdKind::Timerfd,
            b"signalfd" => FdKind::Signalfd,
            b"inotify" => FdKind::Inotify,
            b"pidfd" => FdKind::Pidfd,
            _ => FdKind::Other,
        };
        return Link::Kind(kind);
    }
    if !link.starts_with(b"/") {
        return Link::Kind(FdKind::Other);
    }
    let path = String::from_utf8_lossy(link).into_owned();
    let kind = if link.starts_with(b"/dev/shm/") {
        Some(FdKind::Shm)
    } else if link.starts_with(b"/dev/") {
        Some(FdKind::Device)
    } else {
        None
    };
    Link::Path { kind, path }
}

/// The inode a `pipe:[ino]`, `socket:[ino]` or `pidfd:[ino]` link names: the
/// kernel object itself, the same in every process that holds it. Anonymous
/// inodes (`anon_inode:[eventpoll]`) share one inode and paths have none in the
/// link: `None`.
fn link_inode(link: &[u8]) -> Option<u64> {
    let open = link.iter().position(|&b| b == b'[')?;
    let prefix = &link[..open];
    if !matches!(prefix, b"pipe:" | b"socket:" | b"pidfd:") {
        return None;
    }
    link[open + 1..].strip_suffix(b"]").and_then(parse_decimal)
}

/// The per-namespace socket tables of `/proc/PID/net`, most common first.
#[derive(Debug, Clone, Copy)]
enum SocketTable {
    Unix,
    Tcp,
    Tcp6,
    Udp,
    Udp6,
}

impl SocketTable {
    const ALL: [SocketTable; 5] = [
        SocketTable::Unix,
        SocketTable::Tcp,
        SocketTable::Tcp6,
        SocketTable::Udp,
        SocketTable::Udp6,
    ];

    fn file(self) -> &'static str {
        match self {
            SocketTable::Unix => "net/unix",
            SocketTable::Tcp => "net/tcp",
            SocketTable::Tcp6 => "net/tcp6",
            SocketTable::Udp => "net/udp",
            SocketTable::Udp6 => "net/udp6",
        }
    }

    /// `(inode, kind, endpoint)` for every row of the table.
    #[cfg(test)]
    fn parse(self, bytes: &[u8]) -> Vec<(u64, FdKind, Option<String>)> {
        self.parse_where(bytes, |_| true)
    }

    /// `(inode, kind, endpoint)` for the rows whose inode is `wanted`. The
    /// tables list every socket of the network namespace (thousands of unix
    /// sockets on a desktop), and only the inode is read of the others: naming
    /// every row's endpoint cost more than reading the process's whole
    /// descriptor table.
    fn parse_where(
        self,
        bytes: &[u8],
        mut wanted: impl FnMut(u64) -> bool,
    ) -> Vec<(u64, FdKind, Option<String>)> {
        let text = String::from_utf8_lossy(bytes);
        let rows = text.lines().skip(1);
        match self {
            // Num RefCount Protocol Flags Type St Inode [Path]  (unix(7))
            SocketTable::Unix => rows
                .filter_map(|row| {
                    let mut columns = row.split_ascii_whitespace().skip(6);
                    let inode = columns.next()?.parse().ok().filter(|inode| wanted(*inode))?;
                    let path = columns.next().map(str::to_owned);
                    Some((inode, FdKind::Unix, path))
                })
                .collect(),
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode  (proc_net_tcp(5))
            SocketTable::Tcp | SocketTable::Tcp6 | SocketTable::Udp | SocketTable::Udp6 => {
                let kind = match self {
                    SocketTable::Tcp | SocketTable::Tcp6 => FdKind::Tcp,
                    _ => FdKind::Udp,
                };
                rows.filter_map(|row| {
                    let mut columns = [""; 10];
                    let mut words = row.split_ascii_whitespace();
                    for column in &mut columns {
                        *column = words.next()?;
                    }
                    let inode = columns[9].parse().ok().filter(|inode| wanted(*inode))?;
                    let local = parse_inet_address(columns[1])?;
                    let remote = parse_inet_address(columns[2])?;
                    let state = u8::from_str_radix(columns[3], 16).ok()?;
                    Some((inode, kind, Some(inet_endpoint(kind, &local, &remote, state))))
                })
                .collect()
            }
        }
    }

    /// The inodes of the sockets listening on `port` (TCP tables), read
    /// without naming any row's endpoint.
    fn listening_on(self, bytes: &[u8], port: u16) -> Vec<u64> {
        const LISTEN: u8 = 10;
        let text = String::from_utf8_lossy(bytes);
        text.lines()
            .skip(1)
            .filter_map(|row| {
                let mut words = row.split_ascii_whitespace();
                let local = words.nth(1)?;
                let state = u8::from_str_radix(words.nth(1)?, 16).ok()?;
                let (_, local_port) = local.split_once(':')?;
                let listening = state == LISTEN && u16::from_str_radix(local_port, 16) == Ok(port);
                listening.then(|| words.nth(5)?.parse().ok())?
            })
            .collect()
    }
}

/// Renders `local -> remote (STATE)`, leaving out what an unconnected socket lacks.
fn inet_endpoint(kind: FdKind, local: &str, remote: &str, state: u8) -> String {
    let unconnected = remote.ends_with(":0");
    match (kind, unconnected) {
        (FdKind::Tcp, true) => format!("{local} ({})", tcp_state_name(state)),
        (FdKind::Tcp, false) => format!("{local} -> {remote} ({})", tcp_state_name(state)),
        (_, true) => local.to_owned(),
        (_, false) => format!("{local} -> {remote}"),
    }
}

/// TCP states as numbered in include/net/tcp_states.h.
fn tcp_state_name(state: u8) -> &'static str {
    match state {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        _ => "UNKNOWN",
    }
}

/// Parses `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6). The kernel
/// prints each 32-bit word of the address in host byte order.
fn parse_inet_address(text: &str) -> Option<String> {
    let (address, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = address.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    match address.len() {
        8 => Some(format!("{}:{port}", std::net::Ipv4Addr::from(word(0)?))),
        32 => {
            let mut octets = [0u8; 16];
            for i in 0..4 {
                octets[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            let ip = std::net::Ipv6Addr::from(octets);
            Some(match ip.to_ipv4_mapped() {
                Some(v4) => format!("{v4}:{port}"),
                None => format!("[{ip}]:{port}"),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_units_come_from_the_cgroup_of_a_service() {
        // As /proc/PID/cgroup reads on a cgroup v2 host (Debian 12, Fedora 40).
        assert_eq!(
            systemd_unit_of_cgroup("0::/system.slice/nginx.service\n").as_deref(),
            Some("nginx.service")
        );
        assert_eq!(
            systemd_unit_of_cgroup(
                "0::/user.slice/user-1000.slice/user@1000.service/app.slice/webui.service\n"
            )
            .as_deref(),
            Some("webui.service")
        );
        // A templated instance, and a service's own sub-cgroup.
        assert_eq!(
            systemd_unit_of_cgroup("0::/system.slice/system-getty.slice/getty@tty1.service\n")
                .as_deref(),
            Some("getty@tty1.service")
        );
        assert_eq!(
            systemd_unit_of_cgroup("0::/system.slice/docker.service/payload\n").as_deref(),
            Some("docker.service")
        );
        // A hybrid (v1) host: systemd's named hierarchy says it.
        let hybrid = "12:pids:/system.slice/cron.service\n\
                      1:name=systemd:/system.slice/cron.service\n";
        assert_eq!(systemd_unit_of_cgroup(hybrid).as_deref(), Some("cron.service"));
    }

    #[test]
    fn sessions_scopes_managers_and_transient_units_are_not_services() {
        for cgroup in [
            "0::/user.slice/user-1000.slice/session-3.scope\n",
            "0::/user.slice/user-1000.slice/user@1000.service/init.scope\n",
            "0::/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-firefox-4242.scope\n",
            "0::/user.slice/user-1000.slice/user@1000.service\n",
            "0::/system.slice/run-u42.service\n",
            "0::/init.scope\n",
            // A container: no systemd slices at all (this machine's answer).
            "9:name=systemd:/\n4:memory:/process_api/df48633e\n0::/\n",
            "0::/docker/3f2a9c/system.slice/x.service\n",
            "",
            "garbage",
        ] {
            assert_eq!(systemd_unit_of_cgroup(cgroup), None, "{cgroup}");
        }
    }

    #[test]
    fn stat_name_with_spaces_and_parens() {
        let line = b"4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 \
            5 0 123456 1000000 250 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let stat = parse_stat(line).unwrap();
        assert_eq!(stat.name, "my (odd) name");
        assert_eq!(stat.state, ProcessState::Sleeping);
        assert_eq!((stat.ppid, stat.pgid, stat.sid), (1, 4242, 4242));
        assert_eq!((stat.utime, stat.stime, stat.threads), (7, 3, 5));
        assert_eq!((stat.start_ticks, stat.rss_pages), (123456, 250));
        assert_eq!(stat.flags & PF_KTHREAD, 0);
    }

    #[test]
    fn truncated_stat_is_rejected_not_half_read() {
        assert_eq!(parse_stat(b"4242 (x) S 1 4242"), None);
        assert_eq!(parse_stat(b""), None);
    }

    #[test]
    fn links_are_classified_by_design_table() {
        let kind = |link: &[u8]| classify_link(link);
        assert_eq!(kind(b"anon_inode:[eventpoll]"), Link::Kind(FdKind::Epoll));
        assert_eq!(kind(b"anon_inode:[eventfd]"), Link::Kind(FdKind::Eventfd));
        assert_eq!(kind(b"anon_inode:[timerfd]"), Link::Kind(FdKind::Timerfd));
        assert_eq!(kind(b"anon_inode:[signalfd]"), Link::Kind(FdKind::Signalfd));
        assert_eq!(kind(b"anon_inode:inotify"), Link::Kind(FdKind::Inotify));
        assert_eq!(kind(b"anon_inode:[pidfd]"), Link::Kind(FdKind::Pidfd));
        assert_eq!(kind(b"pidfd:[1234]"), Link::Kind(FdKind::Pidfd));
        assert_eq!(kind(b"anon_inode:[io_uring]"), Link::Kind(FdKind::Other));
        assert_eq!(kind(b"pipe:[99]"), Link::Kind(FdKind::Pipe));
        assert_eq!(kind(b"socket:[12345]"), Link::Socket(12345));
        assert_eq!(kind(b"net:[4026531840]"), Link::Kind(FdKind::Other));
        assert_eq!(
            kind(b"/dev/null"),
            Link::Path { kind: Some(FdKind::Device), path: "/dev/null".into() }
        );
        assert_eq!(
            kind(b"/dev/shm/sem.x"),
            Link::Path { kind: Some(FdKind::Shm), path: "/dev/shm/sem.x".into() }
        );
        assert_eq!(
            kind(b"/srv/state.db-wal"),
            Link::Path { kind: None, path: "/srv/state.db-wal".into() }
        );
    }

    #[test]
    fn link_inodes_name_pipes_sockets_and_pidfds_only() {
        assert_eq!(link_inode(b"pipe:[4711]"), Some(4711));
        assert_eq!(link_inode(b"socket:[12345]"), Some(12345));
        assert_eq!(link_inode(b"pidfd:[77]"), Some(77));
        assert_eq!(link_inode(b"anon_inode:[eventpoll]"), None);
        assert_eq!(link_inode(b"/srv/[weird]"), None);
        assert_eq!(link_inode(b"pipe:[x]"), None);
    }

    #[test]
    fn limits_row_parses_numbers_and_unlimited() {
        let limits = b"Limit                     Soft Limit           Hard Limit           Units\n\
            Max open files            1024                 524288               files\n";
        assert_eq!(parse_open_files_limit(limits), Some((Some(1024), Some(524288))));
        let unlimited =
            b"Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_files_limit(unlimited), Some((None, None)));
        assert_eq!(parse_open_files_limit(b"Max processes 1 2 processes\n"), None);
    }

    #[test]
    fn inet_addresses_decode_host_order_words() {
        if cfg!(target_endian = "little") {
            assert_eq!(parse_inet_address("0100007F:1F90").as_deref(), Some("127.0.0.1:8080"));
            assert_eq!(
                parse_inet_address("00000000000000000000000001000000:0050").as_deref(),
                Some("[::1]:80")
            );
            assert_eq!(
                parse_inet_address("0000000000000000FFFF00000100007F:0016").as_deref(),
                Some("127.0.0.1:22")
            );
        }
        assert_eq!(parse_inet_address("zz:1"), None);
    }

    #[test]
    fn tcp_rows_become_endpoints() {
        let table = b"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 5555 1 0000000000000000 100 0 0 10 0\n";
        let rows = SocketTable::Tcp.parse(table);
        if cfg!(target_endian = "little") {
            assert_eq!(rows, vec![(5555, FdKind::Tcp, Some("127.0.0.1:8080 (LISTEN)".to_owned()))]);
        }
    }

    /// Only the rows asked for are named (the tables hold the whole namespace's
    /// sockets), and a port's listeners are found without naming any.
    #[test]
    fn socket_tables_name_only_the_wanted_rows_and_find_listeners_by_port() {
        let table = b"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
            \x20  0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 5555 1 0 100 0 0 10 0\n\
            \x20  1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 5556 1 0 100 0 0 10 0\n\
            \x20  2: 0100007F:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 5557 1 0 100 0 0 10 0\n";
        let mut asked = Vec::new();
        let rows = SocketTable::Tcp.parse_where(table, |inode| {
            asked.push(inode);
            inode == 5556
        });
        assert_eq!(asked, [5555, 5556, 5557]);
        assert_eq!(rows.iter().map(|row| row.0).collect::<Vec<_>>(), [5556]);
        if cfg!(target_endian = "little") {
            assert_eq!(
                rows[0].2.as_deref(),
                Some("127.0.0.1:8080 -> 127.0.0.1:50000 (ESTABLISHED)")
            );
        }
        // Port 0x1F90 = 8080: its listener, not the connection accepted on it.
        assert_eq!(SocketTable::Tcp.listening_on(table, 8080), [5555]);
        assert_eq!(SocketTable::Tcp.listening_on(table, 80), [5557]);
        assert!(SocketTable::Tcp.listening_on(table, 443).is_empty());
    }

    #[test]
    fn unix_rows_keep_bound_paths() {
        let table = b"Num       RefCount Protocol Flags    Type St Inode Path\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 777 /run/app.sock\n\
            0000000000000000: 00000003 00000000 00000000 0001 03 778\n";
        assert_eq!(
            SocketTable::Unix.parse(table),
            vec![(777, FdKind::Unix, Some("/run/app.sock".to_owned())), (778, FdKind::Unix, None)]
        );
    }
}
