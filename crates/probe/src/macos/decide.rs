//! The macOS backend's decisions, apart from its raw calls: which call to make,
//! what each errno means, when to fall back to `sysctl KERN_PROC_PID`, when a
//! buffer came back full and must grow, what is "unknown" rather than an error.
//!
//! Nothing here calls the OS: every question goes through [`MacSys`], which
//! `sys.rs` implements with libproc and `sysctl(3)` on macOS. This module is
//! compiled on every OS so that its tests run on Linux against a fake that
//! answers as XNU does (errors included); the raw calls themselves are only
//! type-checked there (`cargo xtask macos-check`).
//!
//! What XNU answers, as read in its source (macOS 15):
//! - `proc_pidinfo(PROC_PIDTBSDINFO)` (`bsd/kern/proc_info.c`, `proc_pidinfo`)
//!   looks a pid up with `proc_find`, which skips zombies, unless `arg` is
//!   non-zero (`findzomb`); it then applies `proc_security_policy` with
//!   `CHECK_SAME_USER`: another uid's process answers EPERM unless we are root.
//!   `PROC_PIDTASKINFO` and `PROC_PIDLISTFDS` do the same (zombies: ESRCH).
//!   `PROC_PIDPATHINFO` is `NO_CHECK_SAME_USER`: anyone's executable path.
//! - `sysctl {CTL_KERN, KERN_PROC, KERN_PROC_PID, pid}` (`bsd/kern/kern_sysctl.c`,
//!   `sysctl_prochandle`) iterates live and zombie processes with no permission
//!   check and answers zero bytes (no error) for a pid that does not exist. Its
//!   `p_starttime` is the `p_start` that `PROC_PIDTBSDINFO` reports too.
//! - `sysctl KERN_PROCARGS2` (`sysctl_procargsx`) answers EINVAL for a missing
//!   pid, another uid's process or one without a task (a zombie), ENOMEM when
//!   the kernel cannot allocate its copy, EIO when copying the target's stack
//!   fails: a live process of our own can answer EIO.

use crate::backend::{Backend, ProcessDetails, RawProcess};
use crate::{
    Error, Fd, FdKind, FdLimit, LimitSource, ProcessState, Result, ServiceJob, StartTime,
    SystemLimit,
};
use std::io;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An errno as the raw call met it.
pub(crate) type Errno = i32;
/// A raw call's answer: the value, or the errno it failed with.
pub(crate) type SysResult<T> = std::result::Result<T, Errno>;

// errno values of XNU's <sys/errno.h> (the same numbers as Linux's for these).
pub(crate) const EPERM: Errno = 1;
pub(crate) const ESRCH: Errno = 3;
pub(crate) const EBADF: Errno = 9;
pub(crate) const EACCES: Errno = 13;
/// libproc's other way of refusing: zero bytes (or a short answer) and no errno.
pub(crate) const NO_ANSWER: Errno = 0;

// `p_stat` values of <sys/proc.h>, as in `pbi_status` and `kp_proc.p_stat`.
pub(crate) const SIDL: u32 = 1;
pub(crate) const SRUN: u32 = 2;
pub(crate) const SSLEEP: u32 = 3;
pub(crate) const SSTOP: u32 = 4;
pub(crate) const SZOMB: u32 = 5;

/// `MAXCOMLEN` of <sys/param.h>: `p_comm` keeps at most this many bytes of a name.
const MAXCOMLEN: usize = 16;

/// One process as `proc_bsdinfo` or `kinfo_proc` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcEntry {
    /// `p_stat`: [`SIDL`] .. [`SZOMB`].
    pub(crate) status: u32,
    pub(crate) ppid: u32,
    pub(crate) pgid: u32,
    /// The effective uid.
    pub(crate) uid: u32,
    /// `p_comm`: at most [`MAXCOMLEN`] bytes.
    pub(crate) comm: String,
    /// `p_name` (`pbi_name`, up to 2 × MAXCOMLEN bytes); empty from `kinfo_proc`.
    pub(crate) name: String,
    pub(crate) start_sec: u64,
    pub(crate) start_usec: u64,
}

/// What `PROC_PIDTASKINFO` gives us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TaskInfo {
    pub(crate) resident_bytes: u64,
    /// User plus system time, in Mach absolute-time units.
    pub(crate) cpu_ticks: u64,
    pub(crate) threads: i32,
}

/// `PROX_FDTYPE_*` of <sys/proc_info.h>, as far as the kinds go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FdType {
    Vnode,
    Socket,
    Pshm,
    Psem,
    Pipe,
    Kqueue,
    Fsevents,
    /// ATALK, NETPOLICY, CHANNEL, NEXUS and whatever comes next.
    Other,
}

impl FdType {
    /// The kind of a descriptor of this type that the kernel would not describe.
    fn plain_kind(self) -> FdKind {
        match self {
            FdType::Vnode => FdKind::File,
            FdType::Socket => FdKind::Socket,
            FdType::Pshm => FdKind::Shm,
            FdType::Psem => FdKind::Sem,
            FdType::Pipe => FdKind::Pipe,
            FdType::Kqueue => FdKind::Kqueue,
            FdType::Fsevents => FdKind::Fsevents,
            FdType::Other => FdKind::Other,
        }
    }

    /// Whether `proc_pidfdinfo` can say more than the type does. A pipe's
    /// answer is its identity (`pipe_handle`). A kqueue's is not asked for:
    /// `fill_kqueueinfo` (XNU `bsd/kern/kern_event.c`) gives its state and event
    /// count, no handle, so a kqueue is told apart by number and kind only.
    fn describable(self) -> bool {
        matches!(self, FdType::Vnode | FdType::Socket | FdType::Pshm | FdType::Psem | FdType::Pipe)
    }
}

/// One entry of `PROC_PIDLISTFDS` (`struct proc_fdinfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FdEntry {
    pub(crate) fd: i32,
    pub(crate) fd_type: FdType,
}

/// What `proc_pidfdinfo` told about one descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FdDescription {
    pub(crate) kind: FdKind,
    pub(crate) path: Option<String>,
    pub(crate) endpoint: Option<String>,
    /// What it refers to (see [`crate::FdTable::objects`]): [`vnode_object`],
    /// [`socket_object`], [`pipe_object`].
    pub(crate) object: Option<u64>,
}

/// A vnode's identity from the `vinfo_stat` XNU's `fill_vnodeinfo` makes
/// (`vn_stat`): its inode on its device. All zeros (the stat failed, and the
/// kernel left the zeroed buffer) is no identity.
pub(crate) fn vnode_object(dev: u32, ino: u64) -> Option<u64> {
    (ino != 0).then(|| ino ^ (u64::from(dev) << 40).rotate_left(7))
}

/// A socket's identity: `soi_so`, the kernel's (permuted, `VM_KERNEL_ADDRPERM`)
/// address of the socket, which `fill_socketinfo` gives for every family; 0 is
/// none.
pub(crate) fn socket_object(so: u64) -> Option<u64> {
    (so != 0).then_some(so)
}

/// A pipe's identity: each end has its own handle (`pipe_handle`, the permuted
/// address of its `struct pipe`) and names the other (`pipe_peerhandle`); the
/// lower of the two stands for the pipe, so both ends share one object, as
/// both ends' `pipe:[inode]` do on Linux. A closed peer (0) leaves the end's own.
pub(crate) fn pipe_object(handle: u64, peer: u64) -> Option<u64> {
    match (handle, peer) {
        (0, 0) => None,
        (0, one) | (one, 0) => Some(one),
        (a, b) => Some(a.min(b)),
    }
}

/// The integer sysctls the backend reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KernInt {
    ArgMax,
    MaxFiles,
    MaxFilesPerProc,
}

impl KernInt {
    fn name(self) -> &'static str {
        match self {
            KernInt::ArgMax => "kern.argmax",
            KernInt::MaxFiles => "kern.maxfiles",
            KernInt::MaxFilesPerProc => "kern.maxfilesperproc",
        }
    }
}

/// The raw calls: each answers what the kernel answered, errno included, and
/// decides nothing. Pids are the kernel's `pid_t`.
pub(crate) trait MacSys {
    /// Whatever the real implementation needs to start; a fake is built directly.
    fn open() -> Result<Self>
    where
        Self: Sized;
    /// `mach_timebase_info`: (numer, denom).
    fn timebase(&self) -> SysResult<(u32, u32)>;
    fn sysctl_int(&self, name: KernInt) -> SysResult<i64>;
    /// `proc_listallpids(NULL, 0)`: about how many pids there are.
    fn pid_count_hint(&self) -> SysResult<usize>;
    /// `proc_listallpids` with room for `capacity` pids: the pids written.
    fn list_all_pids(&self, capacity: usize) -> SysResult<Vec<i32>>;
    /// `proc_pidinfo(PROC_PIDTBSDINFO)`, with `arg` 1 when `zombies_too`.
    fn bsd_info(&self, pid: i32, zombies_too: bool) -> SysResult<ProcEntry>;
    /// `sysctl KERN_PROC_PID`: `None` for zero bytes (no such pid).
    fn kinfo_proc(&self, pid: i32) -> SysResult<Option<ProcEntry>>;
    /// `proc_pidinfo(PROC_PIDTASKINFO)`.
    fn task_info(&self, pid: i32) -> SysResult<TaskInfo>;
    /// getsid(2).
    fn getsid(&self, pid: i32) -> SysResult<u32>;
    /// kill(2) with signal 0: sends nothing, checks existence and permission.
    fn signal_check(&self, pid: i32) -> SysResult<()>;
    /// `sysctl KERN_PROCARGS2` into a buffer of `size` bytes: the bytes written.
    fn procargs2(&self, pid: i32, size: usize) -> SysResult<Vec<u8>>;
    /// `proc_pidpath`, `None` when refused or empty.
    fn pid_path(&self, pid: i32) -> Option<String>;
    /// `proc_pidinfo(PROC_PIDLISTFDS, NULL, 0)`: entries a listing may need.
    fn fd_list_hint(&self, pid: i32) -> SysResult<usize>;
    /// `proc_pidinfo(PROC_PIDLISTFDS)` with room for `capacity` entries.
    fn list_fds(&self, pid: i32, capacity: usize) -> SysResult<Vec<FdEntry>>;
    /// `proc_pidfdinfo` with the flavor for `fd_type`; a short answer is
    /// `Err(NO_ANSWER)`.
    fn describe_fd(&self, pid: i32, fd: i32, fd_type: FdType) -> SysResult<FdDescription>;
    /// getrlimit(2) `RLIMIT_NOFILE` of this process: (soft, hard), `None` for
    /// `RLIM_INFINITY`.
    fn own_nofile_limit(&self) -> SysResult<(Option<u64>, Option<u64>)>;
    /// What `launchctl limit maxfiles` printed, if it ran and succeeded.
    fn launchctl_limit_maxfiles(&self) -> Option<String>;
}

/// How many vnode descriptors of one table the every-tick read describes (see
/// `fd_table`): enough for a server's files and a leak's first hundreds, so the
/// top paths are seen; a table of thousands of files costs no more.
pub(crate) const VNODE_DESCRIPTIONS: usize = 512;

/// Where `launchctl` lives on every macOS; named in limit sources.
pub(crate) const LAUNCHCTL: &str = "/bin/launchctl";

/// The macOS backend over any [`MacSys`].
#[derive(Debug)]
pub(crate) struct Mac<S> {
    sys: S,
    /// Converts the Mach absolute-time units of the task's CPU times to
    /// nanoseconds (1/1 on Intel, 125/3 on Apple Silicon).
    timebase: Timebase,
    /// `kern.argmax`: the most a `KERN_PROCARGS2` answer can hold.
    arg_max: usize,
    /// The launchd default descriptor limit, asked of `launchctl` once.
    launchd_limit: OnceLock<Option<FdLimit>>,
}

/// `mach_timebase_info_data_t`, checked non-zero.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timebase {
    numer: u32,
    denom: u32,
}

impl Timebase {
    fn duration(self, ticks: u64) -> Duration {
        let nanos = u128::from(ticks) * u128::from(self.numer) / u128::from(self.denom);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

impl<S: MacSys> Backend for Mac<S> {
    fn new() -> Result<Self> {
        Self::with(S::open()?)
    }

    fn pids(&self) -> Result<Vec<u32>> {
        let failed = |errno| Error::from_io(None, "proc_listallpids", os_error(errno));
        let hint = self.sys.pid_count_hint().map_err(failed)?;
        let mut capacity = hint.saturating_add(64);
        loop {
            let listed = self.sys.list_all_pids(capacity).map_err(failed)?;
            // A full buffer may have cut the list short: processes were forked
            // since the hint. Ask again with more room.
            if listed.len() < capacity {
                let mut pids: Vec<u32> =
                    listed.into_iter().filter_map(|pid| u32::try_from(pid).ok()).collect();
                pids.sort_unstable();
                pids.dedup();
                return Ok(pids);
            }
            capacity = grow(capacity, None, "proc_listallpids")?;
        }
    }

    fn process(&self, pid: u32) -> Result<RawProcess> {
        let c_pid = c_pid(pid)?;
        let (entry, source) = self.entry(pid, c_pid)?;
        let zombie = entry.status == SZOMB;
        // A zombie has no task left to describe; and whoever may not read the BSD
        // info may not read the task info either (the same CHECK_SAME_USER).
        let task = if zombie || source == Source::Kinfo { None } else { self.task(pid, c_pid)? };
        let sid = self.session_id(pid, c_pid, zombie)?;
        let (start_time, started_at) = start_of(&entry);
        let name = self.full_name(c_pid, &entry);
        Ok(RawProcess {
            start_time,
            started_at,
            ppid: entry.ppid,
            pgid: entry.pgid,
            sid,
            uid: entry.uid,
            state: process_state(entry.status),
            name,
            rss_bytes: task.map(|task| task.resident_bytes),
            cpu_time: task.map(|task| self.timebase.duration(task.cpu_ticks)),
            threads: task.and_then(|task| u32::try_from(task.threads).ok()),
            // pid 0 is kernel_task, the only process that is the kernel itself.
            is_kernel_thread: pid == 0,
        })
    }

    fn details(&self, pid: u32) -> Result<ProcessDetails> {
        let c_pid = c_pid(pid)?;
        let exe = self.sys.pid_path(c_pid).filter(|path| !path.is_empty());
        match self.sys.procargs2(c_pid, self.arg_max) {
            Ok(buf) => match parse_procargs2(&buf) {
                Some((exec_path, argv)) => Ok(ProcessDetails { argv, exe: exe.or(exec_path) }),
                // An answer we cannot read is an unknown argv, not a failed scan.
                None => Ok(ProcessDetails { argv: Vec::new(), exe }),
            },
            // EINVAL: another user's arguments (private) or a zombie's (none left);
            // EIO/ENOMEM: the kernel could not copy them. All mean "argv unknown"
            // for a process that is still there.
            Err(_) if self.exists(c_pid) => Ok(ProcessDetails { argv: Vec::new(), exe }),
            Err(_) => Err(Error::no_such_process(pid)),
        }
    }

    fn service_job(&self, pid: u32) -> Result<Option<ServiceJob>> {
        let c_pid = c_pid(pid)?;
        match self.sys.procargs2(c_pid, self.arg_max) {
            Ok(buf) => Ok(launchd_label(&procargs2_env(&buf)).map(ServiceJob::Launchd)),
            // Another user's environment is private (EINVAL): not known, not an error.
            Err(_) if self.exists(c_pid) => Ok(None),
            Err(_) => Err(Error::no_such_process(pid)),
        }
    }

    fn start_time(&self, pid: u32) -> Result<StartTime> {
        let c_pid = c_pid(pid)?;
        self.entry(pid, c_pid).map(|(entry, _)| start_of(&entry).0)
    }

    // proc_pidfdinfo names endpoints in the same call that gives the kind.
    // Without `endpoints` (the engine's every-tick read) at most
    // VNODE_DESCRIPTIONS vnodes are described: each description makes the kernel
    // `vn_stat` the file (`fill_vnodeinfo`), which costs per descriptor and can
    // block on a dead network mount; the rest count as `file`, without a path.
    fn fd_table(&self, pid: u32, endpoints: bool) -> Result<Vec<Fd>> {
        Ok(self.fd_table_with_objects(pid, endpoints)?.into_iter().map(|(fd, _)| fd).collect())
    }

    fn fd_table_with_objects(&self, pid: u32, endpoints: bool) -> Result<Vec<(Fd, Option<u64>)>> {
        let c_pid = c_pid(pid)?;
        let entries = self.list_fds(pid, c_pid)?;
        let mut fds = Vec::with_capacity(entries.len());
        let mut vnodes_left = if endpoints { usize::MAX } else { VNODE_DESCRIPTIONS };
        for FdEntry { fd, fd_type } in entries {
            let plain = Fd { fd, kind: fd_type.plain_kind(), path: None, endpoint: None };
            if !fd_type.describable() {
                fds.push((plain, None));
                continue;
            }
            if fd_type == FdType::Vnode {
                if vnodes_left == 0 {
                    fds.push((plain, None));
                    continue;
                }
                vnodes_left -= 1;
            }
            match self.sys.describe_fd(c_pid, fd, fd_type) {
                Ok(FdDescription { kind, path, endpoint, object }) => {
                    fds.push((Fd { fd, kind, path, endpoint }, object));
                }
                Err(ESRCH) => return Err(Error::no_such_process(pid)),
                // Closed between the listing and this question: not open now.
                Err(EBADF) => {}
                // Anything else (a refusal, a short answer, or a descriptor of
                // another type now behind the same number) keeps the descriptor
                // as listed, undescribed: a table never loses one that may be open.
                Err(_) => fds.push((plain, None)),
            }
        }
        Ok(fds)
    }

    fn fd_count(&self, pid: u32) -> Result<usize> {
        self.list_fds(pid, c_pid(pid)?).map(|entries| entries.len())
    }

    fn fd_limit(&self, pid: u32) -> Result<FdLimit> {
        if pid == std::process::id() {
            let (soft, hard) = self
                .sys
                .own_nofile_limit()
                .map_err(|errno| Error::from_io(Some(pid), "RLIMIT_NOFILE", os_error(errno)))?;
            return Ok(FdLimit { soft, hard, source: LimitSource::Getrlimit });
        }
        // Another process's rlimit cannot be read on macOS (DESIGN.md); say that it
        // is gone if it is, else give launchd's default.
        self.start_time(pid)?;
        self.launchd_limit().ok_or_else(|| {
            Error::unsupported(format!(
                "descriptor limit of pid {pid}: `{LAUNCHCTL} limit maxfiles` gave no answer"
            ))
        })
    }

    fn system_limits(&self) -> Vec<SystemLimit> {
        let mut limits = Vec::new();
        if let Some(launchd) = self.launchd_limit() {
            let source = format!("{LAUNCHCTL} limit maxfiles");
            limits.push(SystemLimit {
                name: "launchd default, soft (what launchd jobs start with)".to_owned(),
                value: launchd.soft,
                source: source.clone(),
            });
            limits.push(SystemLimit {
                name: "launchd default, hard".to_owned(),
                value: launchd.hard,
                source,
            });
        }
        for (name, which) in [
            ("open files, system-wide", KernInt::MaxFiles),
            ("highest per-process limit", KernInt::MaxFilesPerProc),
        ] {
            if let Ok(value) = self.sys.sysctl_int(which) {
                let what = which.name();
                limits.push(SystemLimit {
                    name: format!("{name} ({what})"),
                    value: u64::try_from(value).ok(),
                    source: format!("sysctl {what}"),
                });
            }
        }
        limits
    }
}

/// Which call described a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// `PROC_PIDTBSDINFO`: ours (or we are root), task info readable too.
    Bsd,
    /// `KERN_PROC_PID`: another user's, readable by anyone, fewer details.
    Kinfo,
}

impl<S: MacSys> Mac<S> {
    /// The backend over `sys`, after reading what every call needs.
    pub(crate) fn with(sys: S) -> Result<Self> {
        let (numer, denom) = sys
            .timebase()
            .map_err(|errno| Error::from_io(None, "mach_timebase_info", os_error(errno)))?;
        if numer == 0 || denom == 0 {
            return Err(Error::malformed(None, "mach_timebase_info"));
        }
        let arg_max = sys
            .sysctl_int(KernInt::ArgMax)
            .map_err(|errno| Error::from_io(None, KernInt::ArgMax.name(), os_error(errno)))?;
        let arg_max = usize::try_from(arg_max)
            .ok()
            .filter(|&max| max > 0)
            .ok_or_else(|| Error::malformed(None, KernInt::ArgMax.name()))?;
        Ok(Self {
            sys,
            timebase: Timebase { numer, denom },
            arg_max,
            launchd_limit: OnceLock::new(),
        })
    }

    /// The process's entry: `PROC_PIDTBSDINFO` (zombies included), or for a
    /// process it refuses (another user's), `KERN_PROC_PID`, which anyone may read
    /// and which gives the same start time, so identities agree.
    fn entry(&self, pid: u32, c_pid: i32) -> Result<(ProcEntry, Source)> {
        let refused = match self.sys.bsd_info(c_pid, true) {
            Ok(entry) => return Ok((entry, Source::Bsd)),
            // With zombies asked for, ESRCH means neither live nor zombie.
            Err(ESRCH) => return Err(Error::no_such_process(pid)),
            Err(errno) => errno,
        };
        match self.sys.kinfo_proc(c_pid) {
            Ok(Some(entry)) => Ok((entry, Source::Kinfo)),
            Ok(None) => Err(Error::no_such_process(pid)),
            Err(_) => Err(self.failure(pid, c_pid, "process info", refused)),
        }
    }

    /// `PROC_PIDTASKINFO`: memory, CPU and threads; `None` when refused.
    fn task(&self, pid: u32, c_pid: i32) -> Result<Option<TaskInfo>> {
        match self.sys.task_info(c_pid) {
            Ok(task) => Ok(Some(task)),
            // Exited since the BSD info was read, or became a zombie (no task left).
            Err(ESRCH) if !self.exists(c_pid) => Err(Error::no_such_process(pid)),
            Err(_) => Ok(None),
        }
    }

    /// getsid(2). XNU's getsid uses `proc_find`, so a zombie has none; it may also
    /// be refused: both give 0 ("unknown") rather than no record.
    fn session_id(&self, pid: u32, c_pid: i32, zombie: bool) -> Result<u32> {
        if c_pid == 0 {
            // kernel_task has no session, and getsid(0) would answer our own.
            return Ok(0);
        }
        match self.sys.getsid(c_pid) {
            Ok(sid) => Ok(sid),
            Err(ESRCH) if !zombie && !self.exists(c_pid) => Err(Error::no_such_process(pid)),
            Err(_) => Ok(0),
        }
    }

    /// The process's name as long as it can be read: `p_name` (32 bytes) where
    /// `PROC_PIDTBSDINFO` gave it, else `p_comm` (16); a name that may have been
    /// cut is completed from the executable's file name when that begins with it.
    fn full_name(&self, c_pid: i32, entry: &ProcEntry) -> String {
        // p_comm holds MAXCOMLEN bytes, p_name (`char[2 * MAXCOMLEN]`) one less
        // than twice that: only a name that fills its field may have been cut.
        let (name, room) = if entry.name.is_empty() {
            (&entry.comm, MAXCOMLEN)
        } else {
            (&entry.name, 2 * MAXCOMLEN - 1)
        };
        if name.len() < room {
            return name.clone();
        }
        let file_name = self.sys.pid_path(c_pid).and_then(|path| {
            path.rsplit('/').next().filter(|file| !file.is_empty()).map(str::to_owned)
        });
        match file_name {
            Some(file) if file.len() > name.len() && file.starts_with(name.as_str()) => file,
            _ => name.clone(),
        }
    }

    /// `PROC_PIDLISTFDS`: every open descriptor and its type. The first answer is
    /// only a hint (the table may grow before the listing): a listing that fills
    /// its buffer is retried with a larger one.
    fn list_fds(&self, pid: u32, c_pid: i32) -> Result<Vec<FdEntry>> {
        const WHAT: &str = "descriptor list";
        let hint = match self.sys.fd_list_hint(c_pid) {
            Ok(hint) => hint,
            // A zombie exists but has no descriptor table left.
            Err(ESRCH) if self.exists(c_pid) => return Ok(Vec::new()),
            Err(errno) => return Err(self.failure(pid, c_pid, WHAT, errno)),
        };
        let mut capacity = hint.saturating_add(16);
        loop {
            let listed = match self.sys.list_fds(c_pid, capacity) {
                Ok(listed) => listed,
                // Zero bytes and no error after a hint that was not refused: the
                // process has no descriptors open.
                Err(NO_ANSWER) => return Ok(Vec::new()),
                Err(errno) => return Err(self.failure(pid, c_pid, WHAT, errno)),
            };
            if listed.len() < capacity {
                return Ok(listed);
            }
            capacity = grow(capacity, Some(pid), WHAT)?;
        }
    }

    /// Whether `pid` exists now, zombies included (EPERM: it exists, but is not
    /// ours to signal).
    fn exists(&self, c_pid: i32) -> bool {
        if c_pid == 0 {
            // kernel_task; kill(0, _) would mean our own process group.
            return true;
        }
        matches!(self.sys.signal_check(c_pid), Ok(()) | Err(EPERM))
    }

    /// A failed call about `pid`, typed: gone, not ours, or other.
    fn failure(&self, pid: u32, c_pid: i32, what: &str, errno: Errno) -> Error {
        if errno == ESRCH || !self.exists(c_pid) {
            return Error::no_such_process(pid);
        }
        match errno {
            NO_ANSWER | EPERM | EACCES => Error::permission_denied(pid, what),
            _ => Error::from_io(Some(pid), what, os_error(errno)),
        }
    }

    fn launchd_limit(&self) -> Option<FdLimit> {
        *self.launchd_limit.get_or_init(|| {
            let (soft, hard) = parse_launchctl_limit(&self.sys.launchctl_limit_maxfiles()?)?;
            // An unlimited hard limit is bounded by kern.maxfilesperproc.
            let hard = hard.or_else(|| {
                self.sys
                    .sysctl_int(KernInt::MaxFilesPerProc)
                    .ok()
                    .and_then(|max| u64::try_from(max).ok())
            });
            Some(FdLimit { soft, hard, source: LimitSource::LaunchdDefault })
        })
    }
}

fn os_error(errno: Errno) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

/// The pid as the kernel's `pid_t`; no pid beyond it exists.
fn c_pid(pid: u32) -> Result<i32> {
    i32::try_from(pid).map_err(|_| Error::no_such_process(pid))
}

/// Doubles a buffer that came back full, within reason.
fn grow(capacity: usize, pid: Option<u32>, what: &str) -> Result<usize> {
    const MAX_ENTRIES: usize = 1 << 24;
    match capacity.checked_mul(2) {
        Some(bigger) if bigger <= MAX_ENTRIES => Ok(bigger),
        _ => Err(Error::malformed(pid, what)),
    }
}

/// The identity start time (µs since the epoch, `model::StartTime`) and the same
/// moment as a date.
fn start_of(entry: &ProcEntry) -> (StartTime, SystemTime) {
    let (secs, micros) = (entry.start_sec, entry.start_usec);
    let start_time = StartTime(secs.saturating_mul(1_000_000).saturating_add(micros));
    let since_epoch = Duration::from_secs(secs).saturating_add(Duration::from_micros(micros));
    (start_time, UNIX_EPOCH.checked_add(since_epoch).unwrap_or(UNIX_EPOCH))
}

/// `p_stat` of `<sys/proc.h>`. It is per process, not per thread: a process
/// whose threads all wait still reads SRUN (`ps` looks at threads).
fn process_state(status: u32) -> ProcessState {
    match status {
        // Being created by fork(2), not yet runnable.
        SIDL => ProcessState::Idle,
        SRUN => ProcessState::Running,
        SSLEEP => ProcessState::Sleeping,
        SSTOP => ProcessState::Stopped,
        SZOMB => ProcessState::Zombie,
        _ => ProcessState::Unknown,
    }
}

/// Parses a `KERN_PROCARGS2` answer (`<sys/sysctl.h>`): `argc` as a native `int`,
/// the exec path and its NUL padding, then `argc` NUL-terminated arguments (the
/// environment that follows is not read). Returns the exec path and argv.
pub(crate) fn parse_procargs2(buf: &[u8]) -> Option<(Option<String>, Vec<String>)> {
    let (argc, rest) = buf.split_first_chunk::<4>()?;
    let argc = usize::try_from(i32::from_ne_bytes(*argc)).ok()?;
    let path_end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    let exec_path = rest.get(..path_end)?;
    let after_path = rest.get(path_end..)?;
    let args_start = after_path.iter().position(|&b| b != 0).unwrap_or(after_path.len());
    let args = after_path.get(args_start..)?;
    let argv = if args.is_empty() {
        Vec::new()
    } else {
        args.split(|&b| b == 0)
            .take(argc)
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect()
    };
    let exec_path =
        (!exec_path.is_empty()).then(|| String::from_utf8_lossy(exec_path).into_owned());
    Some((exec_path, argv))
}

/// The environment part of a `KERN_PROCARGS2` answer: the strings after the
/// `argc` arguments, up to the first empty one. XNU lays a new image's strings
/// out as exec path, argv, envp, then the "apple" strings (`bsd/kern/kern_exec.c`,
/// `exec_copyout_strings`), and `sysctl_procargsx` copies that area as is.
pub(crate) fn procargs2_env(buf: &[u8]) -> Vec<String> {
    let Some((argc, rest)) = buf.split_first_chunk::<4>() else {
        return Vec::new();
    };
    let Ok(argc) = usize::try_from(i32::from_ne_bytes(*argc)) else {
        return Vec::new();
    };
    let path_end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    let after_path = rest.get(path_end..).unwrap_or_default();
    let args_start = after_path.iter().position(|&b| b != 0).unwrap_or(after_path.len());
    let strings = after_path.get(args_start..).unwrap_or_default();
    strings
        .split(|&b| b == 0)
        .skip(argc)
        .take_while(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// The label of the launchd job a process belongs to: launchd sets
/// `XPC_SERVICE_NAME=<label>` in the environment of every job it starts (its
/// children inherit it). Not a job's label: `0`, which launchd gives
/// processes outside any job (Terminal's shells), and `application.*`, the
/// per-launch instance launchd makes up for a GUI app, which is new at every
/// start and so would not find the app again.
pub(crate) fn launchd_label(env: &[String]) -> Option<String> {
    let label = env.iter().find_map(|var| var.strip_prefix("XPC_SERVICE_NAME="))?.trim();
    (!label.is_empty() && label != "0" && !label.starts_with("application."))
        .then(|| label.to_owned())
}

/// Parses `launchctl limit maxfiles` (`\tmaxfiles    256            unlimited`):
/// the soft and hard columns, `unlimited` as `None`.
fn parse_launchctl_limit(text: &str) -> Option<(Option<u64>, Option<u64>)> {
    let value = |column: &str| -> Option<Option<u64>> {
        if column == "unlimited" { Some(None) } else { column.parse().ok().map(Some) }
    };
    text.lines().find_map(|line| {
        let mut columns = line.split_whitespace();
        if columns.next()? != "maxfiles" {
            return None;
        }
        Some((value(columns.next()?)?, value(columns.next()?)?))
    })
}

#[cfg(test)]
mod tests;
