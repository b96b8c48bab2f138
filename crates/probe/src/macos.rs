//! The macOS backend. macOS has no `/proc`: what `ps`, `lsof` and Activity Monitor
//! show comes from libproc (`proc_listallpids`, `proc_pidinfo`, `proc_pidfdinfo`,
//! `proc_pidpath`, declared in `<libproc.h>` with the structures of
//! `<sys/proc_info.h>`) and from `sysctl(3)`. This module is the one place those
//! calls are made and their answers turned into the probe's plain data.
//!
//! The `libproc` crate supplies the descriptor and socket structures and
//! `proc_pidpath`. Its `pidinfo`/`pidfdinfo` wrappers report failures as text, and
//! a process that exited must be told from one we may not read (libproc answers
//! the latter with zero bytes), so those two calls go through `libc` directly, with
//! errno cleared first so that "zero bytes, no error" can be recognised.
//!
//! Like every backend it only asks the kernel: no file a target holds is opened.
//! (The kernel's answer for a vnode descriptor does include a `stat` it makes
//! itself, as it does for `lsof`.)

use crate::backend::{Backend, ProcessDetails, RawProcess};
use crate::{
    Error, ErrorKind, Fd, FdKind, FdLimit, LimitSource, ProcessState, Result, StartTime,
    SystemLimit,
};
use libc::{c_char, c_int, c_void};
use libproc::file_info::{PIDFDInfoFlavor, ProcFDType};
use libproc::net_info::{
    InSIAddr, InSockInfo, ProcFileInfo, SocketFDInfo, SocketInfo, SocketInfoKind, TcpSIState,
    UnSockInfo,
};
use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::ptr;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `proc_pidfdinfo` flavors of `<sys/proc_info.h>` (`PROC_PIDFD*INFO`).
const PROC_PIDFDVNODEPATHINFO: c_int = PIDFDInfoFlavor::VNodePathInfo as c_int;
const PROC_PIDFDSOCKETINFO: c_int = PIDFDInfoFlavor::SocketInfo as c_int;
const PROC_PIDFDPSEMINFO: c_int = PIDFDInfoFlavor::PSEMInfo as c_int;
const PROC_PIDFDPSHMINFO: c_int = PIDFDInfoFlavor::PSHMInfo as c_int;

/// `enum vtype` of `<sys/vnode.h>`, as in `vnode_info.vi_type`.
const VDIR: c_int = 2;
const VBLK: c_int = 3;
const VCHR: c_int = 4;

/// `in_sockinfo.insi_vflag` bits of `<sys/proc_info.h>`.
const INI_IPV6: u8 = 0x2;

/// `MAXPATHLEN` of `<sys/param.h>`: the size of the name in `pshm_info`/`psem_info`.
const MAXPATHLEN: usize = 1024;

/// `launchctl` lives here on every macOS; a full path keeps `PATH` out of it.
const LAUNCHCTL: &str = "/bin/launchctl";

#[derive(Debug)]
pub(crate) struct Os {
    /// Converts the Mach absolute-time units of `pti_total_user`/`pti_total_system`
    /// to nanoseconds (1/1 on Intel, 125/3 on Apple Silicon).
    timebase: MachTimebaseInfo,
    /// `kern.argmax`: the most a `KERN_PROCARGS2` answer can hold.
    arg_max: usize,
    /// The launchd default descriptor limit, asked of `launchctl` once.
    launchd_limit: OnceLock<Option<FdLimit>>,
}

impl Backend for Os {
    fn new() -> Result<Self> {
        let mut timebase = MachTimebaseInfo { numer: 0, denom: 0 };
        // SAFETY: mach_timebase_info(3) (<mach/mach_time.h>) writes one
        // mach_timebase_info_data_t to the pointer it is given, which is `timebase`.
        let status = unsafe { mach_timebase_info(&raw mut timebase) };
        if status != 0 || timebase.numer == 0 || timebase.denom == 0 {
            return Err(Error::malformed(None, "mach_timebase_info"));
        }
        let arg_max = sysctl_int([libc::CTL_KERN, libc::KERN_ARGMAX], "kern.argmax")?;
        let arg_max =
            usize::try_from(arg_max).map_err(|_| Error::malformed(None, "kern.argmax"))?;
        Ok(Self { timebase, arg_max, launchd_limit: OnceLock::new() })
    }

    fn pids(&self) -> Result<Vec<u32>> {
        let failed = || Error::from_io(None, "proc_listallpids", io::Error::last_os_error());
        // SAFETY: proc_listallpids (<libproc.h>) with a NULL buffer and size 0 writes
        // nothing and answers how many pids a full listing would need.
        let hint = unsafe { libc::proc_listallpids(ptr::null_mut(), 0) };
        if hint <= 0 {
            return Err(failed());
        }
        let mut capacity = usize::try_from(hint).unwrap_or(0) + 64;
        loop {
            let mut buf: Vec<c_int> = vec![0; capacity];
            let bytes = byte_len::<c_int>(capacity, None, "proc_listallpids")?;
            // SAFETY: proc_listallpids (<libproc.h>) writes at most `bytes` bytes of
            // pid_t to the buffer, which `buf` provides, and returns how many it wrote.
            let written = unsafe { libc::proc_listallpids(buf.as_mut_ptr().cast(), bytes) };
            if written <= 0 {
                return Err(failed());
            }
            let written = usize::try_from(written).unwrap_or(0);
            // A full buffer may have cut the list short: processes were forked
            // since the hint. Ask again with more room.
            if written < capacity {
                buf.truncate(written);
                let mut pids: Vec<u32> =
                    buf.into_iter().filter_map(|pid| u32::try_from(pid).ok()).collect();
                pids.sort_unstable();
                pids.dedup();
                return Ok(pids);
            }
            capacity = grow(capacity, None, "proc_listallpids")?;
        }
    }

    fn process(&self, pid: u32) -> Result<RawProcess> {
        let c_pid = c_pid(pid)?;
        let bsd = bsd_info(pid)?;
        let zombie = bsd.pbi_status == libc::SZOMB;
        // A zombie has no task left to describe.
        let task = if zombie { None } else { task_info(pid, c_pid)? };
        let sid = session_id(pid, c_pid, zombie)?;
        let (start_time, started_at) = start_of(&bsd);
        Ok(RawProcess {
            start_time,
            started_at,
            ppid: bsd.pbi_ppid,
            pgid: bsd.pbi_pgid,
            sid,
            uid: bsd.pbi_uid,
            state: process_state(bsd.pbi_status),
            name: c_chars(&bsd.pbi_comm).unwrap_or_default(),
            rss_bytes: task.map(|task| task.pti_resident_size),
            cpu_time: task.map(|task| {
                self.timebase.duration(task.pti_total_user.saturating_add(task.pti_total_system))
            }),
            threads: task.and_then(|task| u32::try_from(task.pti_threadnum).ok()),
            // pid 0 is kernel_task, the only process that is the kernel itself.
            is_kernel_thread: pid == 0,
        })
    }

    fn details(&self, pid: u32) -> Result<ProcessDetails> {
        let exe = libproc::proc_pid::pidpath(c_pid(pid)?).ok().filter(|path| !path.is_empty());
        match self.procargs(pid) {
            Ok((exec_path, argv)) => Ok(ProcessDetails { argv, exe: exe.or(exec_path) }),
            // Another user's arguments are private, its executable path is not.
            Err(e) if e.kind() == ErrorKind::PermissionDenied && exe.is_some() => {
                Ok(ProcessDetails { argv: Vec::new(), exe })
            }
            Err(e) => Err(e),
        }
    }

    fn start_time(&self, pid: u32) -> Result<StartTime> {
        bsd_info(pid).map(|bsd| start_of(&bsd).0)
    }

    // proc_pidfdinfo names endpoints in the same call that gives the kind.
    fn fd_table(&self, pid: u32, _endpoints: bool) -> Result<Vec<Fd>> {
        let c_pid = c_pid(pid)?;
        let entries = list_fds(pid, c_pid)?;
        let mut fds = Vec::with_capacity(entries.len());
        for entry in entries {
            let fd = entry.proc_fd;
            let plain = |kind| Some(Fd { fd, kind, path: None, endpoint: None });
            let described = match ProcFDType::from(entry.proc_fdtype) {
                ProcFDType::VNode => {
                    match fd_info::<VnodeFdInfoWithPath>(pid, c_pid, fd, PROC_PIDFDVNODEPATHINFO)? {
                        Detail::Got(info) => Some(vnode_fd(fd, &info)),
                        Detail::Closed => None,
                        Detail::Unavailable => plain(FdKind::File),
                    }
                }
                ProcFDType::Socket => {
                    match fd_info::<SocketFDInfo>(pid, c_pid, fd, PROC_PIDFDSOCKETINFO)? {
                        Detail::Got(info) => Some(socket_fd(fd, &info.psi)),
                        Detail::Closed => None,
                        Detail::Unavailable => plain(FdKind::Socket),
                    }
                }
                ProcFDType::PSHM => {
                    match fd_info::<PshmFdInfo>(pid, c_pid, fd, PROC_PIDFDPSHMINFO)? {
                        Detail::Got(info) => Some(Fd {
                            fd,
                            kind: FdKind::Shm,
                            path: c_chars(&info.pshminfo.pshm_name),
                            endpoint: None,
                        }),
                        Detail::Closed => None,
                        Detail::Unavailable => plain(FdKind::Shm),
                    }
                }
                ProcFDType::PSEM => {
                    match fd_info::<PsemFdInfo>(pid, c_pid, fd, PROC_PIDFDPSEMINFO)? {
                        Detail::Got(info) => Some(Fd {
                            fd,
                            kind: FdKind::Sem,
                            path: c_chars(&info.pseminfo.psem_name),
                            endpoint: None,
                        }),
                        Detail::Closed => None,
                        Detail::Unavailable => plain(FdKind::Sem),
                    }
                }
                ProcFDType::Pipe => plain(FdKind::Pipe),
                ProcFDType::KQueue => plain(FdKind::Kqueue),
                ProcFDType::FSEvents => plain(FdKind::Fsevents),
                // ATALK, NETPOLICY, CHANNEL, NEXUS and whatever comes next.
                _ => plain(FdKind::Other),
            };
            fds.extend(described);
        }
        Ok(fds)
    }

    fn fd_count(&self, pid: u32) -> Result<usize> {
        list_fds(pid, c_pid(pid)?).map(|entries| entries.len())
    }

    fn fd_limit(&self, pid: u32) -> Result<FdLimit> {
        if pid == std::process::id() {
            let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            // SAFETY: getrlimit(2) writes one struct rlimit to the pointer it is
            // given, which is `limit`.
            if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
                let e = io::Error::last_os_error();
                return Err(Error::from_io(Some(pid), "RLIMIT_NOFILE", e));
            }
            let finite = |value: libc::rlim_t| (value != libc::RLIM_INFINITY).then_some(value);
            return Ok(FdLimit {
                soft: finite(limit.rlim_cur),
                hard: finite(limit.rlim_max),
                source: LimitSource::Getrlimit,
            });
        }
        // Another process's rlimit cannot be read on macOS (DESIGN.md); say that it
        // is gone if it is, else give launchd's default.
        self.start_time(pid)?;
        (*self.launchd_limit.get_or_init(launchd_default_limit)).ok_or_else(|| {
            Error::unsupported(format!(
                "descriptor limit of pid {pid}: `{LAUNCHCTL} limit maxfiles` gave no answer"
            ))
        })
    }

    fn system_limits(&self) -> Vec<SystemLimit> {
        let mut limits = Vec::new();
        if let Some(launchd) = *self.launchd_limit.get_or_init(launchd_default_limit) {
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
        // sysctl(3): kern.maxfiles and kern.maxfilesperproc, <sys/sysctl.h>.
        for (name, mib, what) in [
            ("open files, system-wide", libc::KERN_MAXFILES, "kern.maxfiles"),
            ("highest per-process limit", libc::KERN_MAXFILESPERPROC, "kern.maxfilesperproc"),
        ] {
            if let Ok(value) = sysctl_int([libc::CTL_KERN, mib], what) {
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

impl Os {
    /// argv and the exec path from `KERN_PROCARGS2` (`<sys/sysctl.h>`).
    fn procargs(&self, pid: u32) -> Result<(Option<String>, Vec<String>)> {
        let mut mib = [libc::CTL_KERN, libc::KERN_PROCARGS2, c_pid(pid)?];
        let mut buf = vec![0u8; self.arg_max];
        let mut len = buf.len();
        clear_errno();
        // SAFETY: sysctl(3): `mib` holds the 3 names it is told of, `buf` is writable
        // for `len` bytes, the kernel writes at most `len` bytes and stores the count
        // written in `len`; no new value is passed.
        let status = unsafe {
            libc::sysctl(
                mib.as_mut_ptr(),
                3,
                buf.as_mut_ptr().cast::<c_void>(),
                &raw mut len,
                ptr::null_mut(),
                0,
            )
        };
        if status != 0 {
            // The kernel refuses another user's (or a zombie's) arguments with EINVAL.
            let errno = match errno() {
                libc::EINVAL => 0,
                errno => errno,
            };
            return Err(failure(pid, "arguments", errno));
        }
        buf.truncate(len);
        parse_procargs2(&buf).ok_or_else(|| Error::malformed(Some(pid), "KERN_PROCARGS2"))
    }
}

/// `mach_timebase_info_data_t` of `<mach/mach_time.h>`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct MachTimebaseInfo {
    numer: u32,
    denom: u32,
}

impl MachTimebaseInfo {
    fn duration(self, ticks: u64) -> Duration {
        let nanos = u128::from(ticks) * u128::from(self.numer) / u128::from(self.denom);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

// Declared here because `libc` marks its binding deprecated in favour of the
// `mach2` crate; this one function is all we need of Mach.
unsafe extern "C" {
    /// `kern_return_t mach_timebase_info(mach_timebase_info_t info)`, <mach/mach_time.h>.
    fn mach_timebase_info(info: *mut MachTimebaseInfo) -> c_int;
}

/// `struct vnode_fdinfowithpath` of `<sys/proc_info.h>` (`PROC_PIDFDVNODEPATHINFO`).
#[repr(C)]
struct VnodeFdInfoWithPath {
    pfi: ProcFileInfo,
    pvip: libc::vnode_info_path,
}

/// `struct pshm_info` of `<sys/proc_info.h>`.
#[repr(C)]
struct PshmInfo {
    pshm_stat: libc::vinfo_stat,
    pshm_mappaddr: u64,
    pshm_name: [c_char; MAXPATHLEN],
}

/// `struct pshm_fdinfo` of `<sys/proc_info.h>` (`PROC_PIDFDPSHMINFO`).
#[repr(C)]
struct PshmFdInfo {
    pfi: ProcFileInfo,
    pshminfo: PshmInfo,
}

/// `struct psem_info` of `<sys/proc_info.h>`.
#[repr(C)]
struct PsemInfo {
    psem_stat: libc::vinfo_stat,
    psem_name: [c_char; MAXPATHLEN],
}

/// `struct psem_fdinfo` of `<sys/proc_info.h>` (`PROC_PIDFDPSEMINFO`).
#[repr(C)]
struct PsemFdInfo {
    pfi: ProcFileInfo,
    pseminfo: PsemInfo,
}

/// C structures the kernel fills in: integers, arrays and unions of those only.
///
/// # Safety
///
/// Implement only for `#[repr(C)]` types for which every bit pattern, all zeros
/// included, is a valid value.
unsafe trait Plain: Sized {
    fn zeroed() -> Self {
        // SAFETY: by the trait's contract, all-zero bytes are a valid `Self`.
        unsafe { mem::zeroed() }
    }
}

// SAFETY: struct proc_bsdinfo (<sys/proc_info.h>): integers and char arrays.
unsafe impl Plain for libc::proc_bsdinfo {}
// SAFETY: struct proc_taskinfo (<sys/proc_info.h>): integers.
unsafe impl Plain for libc::proc_taskinfo {}
// SAFETY: struct vnode_fdinfowithpath (<sys/proc_info.h>): integers and char arrays.
unsafe impl Plain for VnodeFdInfoWithPath {}
// SAFETY: struct pshm_fdinfo (<sys/proc_info.h>): integers and char arrays.
unsafe impl Plain for PshmFdInfo {}
// SAFETY: struct psem_fdinfo (<sys/proc_info.h>): integers and char arrays.
unsafe impl Plain for PsemFdInfo {}
// SAFETY: struct socket_fdinfo (<sys/proc_info.h>): integers, arrays, and unions of
// structs of integers and arrays (in_sockinfo, tcp_sockinfo, un_sockinfo, ...).
unsafe impl Plain for SocketFDInfo {}

/// What `proc_pidfdinfo` told about one descriptor.
enum Detail<T> {
    Got(T),
    /// Closed between the listing and this question: not open now.
    Closed,
    /// Open, but the kernel would not describe it.
    Unavailable,
}

/// The pid as libproc wants it; no pid beyond `c_int` exists.
fn c_pid(pid: u32) -> Result<c_int> {
    c_int::try_from(pid).map_err(|_| Error::no_such_process(pid))
}

fn errno() -> c_int {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Clears errno, so that a call answering 0 without setting it can be recognised.
fn clear_errno() {
    // SAFETY: __error() (<sys/errno.h>) returns the calling thread's errno location,
    // valid for as long as the thread lives.
    unsafe { *libc::__error() = 0 };
}

/// Whether `pid` exists now, zombies included: kill(2) with signal 0 sends nothing
/// and only checks the pid (EPERM: it exists, but is not ours to signal).
fn exists(pid: u32) -> bool {
    let Ok(c_pid) = c_int::try_from(pid) else {
        return false;
    };
    if c_pid == 0 {
        // kernel_task; kill(0, _) would mean our own process group.
        return true;
    }
    // SAFETY: kill(2) with signal 0 performs only the existence and permission
    // checks; no signal is delivered.
    let status = unsafe { libc::kill(c_pid, 0) };
    status == 0 || errno() == libc::EPERM
}

/// A failed libproc or sysctl call about `pid`, typed: gone, not ours, or other.
/// `errno` 0 stands for an answer of zero bytes, libproc's way of refusing.
fn failure(pid: u32, what: &str, errno: c_int) -> Error {
    if errno == libc::ESRCH || !exists(pid) {
        return Error::no_such_process(pid);
    }
    match errno {
        0 | libc::EPERM | libc::EACCES => Error::permission_denied(pid, what),
        _ => Error::from_io(Some(pid), what, io::Error::from_raw_os_error(errno)),
    }
}

/// `size_of::<T>() * count` as the `c_int` byte count libproc takes.
fn byte_len<T>(count: usize, pid: Option<u32>, what: &str) -> Result<c_int> {
    count
        .checked_mul(mem::size_of::<T>())
        .and_then(|bytes| c_int::try_from(bytes).ok())
        .ok_or_else(|| Error::malformed(pid, what))
}

/// Doubles a buffer that came back full, within reason.
fn grow(capacity: usize, pid: Option<u32>, what: &str) -> Result<usize> {
    const MAX_ENTRIES: usize = 1 << 24;
    match capacity.checked_mul(2) {
        Some(bigger) if bigger <= MAX_ENTRIES => Ok(bigger),
        _ => Err(Error::malformed(pid, what)),
    }
}

/// `proc_pidinfo(pid, flavor, 0, &T, sizeof T)`: the whole `T`, or the errno the call
/// failed with (0 for an answer of zero bytes, or a short one).
fn pid_info<T: Plain>(c_pid: c_int, flavor: c_int) -> std::result::Result<T, c_int> {
    let mut value = T::zeroed();
    let size = c_int::try_from(mem::size_of::<T>()).map_err(|_| libc::EOVERFLOW)?;
    clear_errno();
    // SAFETY: proc_pidinfo (<libproc.h>, flavors of <sys/proc_info.h>) writes at most
    // `size` bytes to the buffer, which is `value`, a `T` of exactly `size` bytes;
    // `T: Plain`, so whatever bytes it writes make a valid `T`.
    let written =
        unsafe { libc::proc_pidinfo(c_pid, flavor, 0, (&raw mut value).cast::<c_void>(), size) };
    if written == size {
        Ok(value)
    } else if written <= 0 {
        Err(errno())
    } else {
        Err(0)
    }
}

/// `proc_pidfdinfo(pid, fd, flavor, &T, sizeof T)`, sorted into what the caller
/// does next: use it, skip a descriptor closed meanwhile, keep it undescribed, or
/// (as an error) give up on a process that exited.
fn fd_info<T: Plain>(pid: u32, c_pid: c_int, fd: c_int, flavor: c_int) -> Result<Detail<T>> {
    let mut value = T::zeroed();
    let size = byte_len::<T>(1, Some(pid), "proc_pidfdinfo")?;
    clear_errno();
    // SAFETY: proc_pidfdinfo (<libproc.h>, flavors of <sys/proc_info.h>) writes at most
    // `size` bytes to the buffer, which is `value`, a `T` of exactly `size` bytes;
    // `T: Plain`, so whatever bytes it writes make a valid `T`.
    let written =
        unsafe { libc::proc_pidfdinfo(c_pid, fd, flavor, (&raw mut value).cast::<c_void>(), size) };
    if written == size {
        return Ok(Detail::Got(value));
    }
    if written > 0 {
        return Ok(Detail::Unavailable);
    }
    match errno() {
        libc::ESRCH => Err(Error::no_such_process(pid)),
        libc::EBADF => Ok(Detail::Closed),
        // Anything else (a refusal, or a descriptor of another type now behind the
        // same number) keeps the descriptor as listed, undescribed: a table never
        // loses a descriptor that may be open.
        _ => Ok(Detail::Unavailable),
    }
}

/// `PROC_PIDTBSDINFO`: identity, parentage, owner, state and name.
fn bsd_info(pid: u32) -> Result<libc::proc_bsdinfo> {
    pid_info(c_pid(pid)?, libc::PROC_PIDTBSDINFO).map_err(|errno| failure(pid, "BSD info", errno))
}

/// `PROC_PIDTASKINFO`: memory, CPU and threads. Only the owner (or root) may read
/// it; for anyone else it is `None`, not an error.
fn task_info(pid: u32, c_pid: c_int) -> Result<Option<libc::proc_taskinfo>> {
    match pid_info(c_pid, libc::PROC_PIDTASKINFO) {
        Ok(task) => Ok(Some(task)),
        // Exited since the BSD info was read, or became a zombie (no task left).
        Err(libc::ESRCH) if !exists(pid) => Err(Error::no_such_process(pid)),
        Err(_) => Ok(None),
    }
}

/// getsid(2). macOS keeps no session id for zombies, and may refuse it for a
/// process outside our session; both give 0 ("unknown") rather than no record.
fn session_id(pid: u32, c_pid: c_int, zombie: bool) -> Result<u32> {
    if c_pid == 0 {
        // kernel_task has no session, and getsid(0) would answer our own.
        return Ok(0);
    }
    // SAFETY: getsid(2) only reads the process table.
    let sid = unsafe { libc::getsid(c_pid) };
    if let Ok(sid) = u32::try_from(sid) {
        return Ok(sid);
    }
    if errno() == libc::ESRCH && !zombie && !exists(pid) {
        return Err(Error::no_such_process(pid));
    }
    Ok(0)
}

/// The identity start time (µs since the epoch, `model::StartTime`) and the same
/// moment as a date.
fn start_of(bsd: &libc::proc_bsdinfo) -> (StartTime, SystemTime) {
    let (secs, micros) = (bsd.pbi_start_tvsec, bsd.pbi_start_tvusec);
    let start_time = StartTime(secs.saturating_mul(1_000_000).saturating_add(micros));
    let since_epoch = Duration::from_secs(secs).saturating_add(Duration::from_micros(micros));
    (start_time, UNIX_EPOCH.checked_add(since_epoch).unwrap_or(UNIX_EPOCH))
}

/// `pbi_status`, the `p_stat` of `<sys/proc.h>`. It is per process, not per thread:
/// a process whose threads all wait still reads SRUN (`ps` looks at threads).
fn process_state(status: u32) -> ProcessState {
    match status {
        // Being created by fork(2), not yet runnable.
        libc::SIDL => ProcessState::Idle,
        libc::SRUN => ProcessState::Running,
        libc::SSLEEP => ProcessState::Sleeping,
        libc::SSTOP => ProcessState::Stopped,
        libc::SZOMB => ProcessState::Zombie,
        _ => ProcessState::Unknown,
    }
}

/// `PROC_PIDLISTFDS`: every open descriptor and its `PROX_FDTYPE_*`. The first
/// answer is only a size hint (the descriptor table's length, not the count of
/// open ones): the count is what the listing call itself returns, and a listing
/// that fills its buffer is retried with a larger one.
fn list_fds(pid: u32, c_pid: c_int) -> Result<Vec<libc::proc_fdinfo>> {
    const WHAT: &str = "descriptor list";
    clear_errno();
    // SAFETY: proc_pidinfo (<libproc.h>) with PROC_PIDLISTFDS, a NULL buffer and size
    // 0 writes nothing and answers the bytes a listing may need.
    let hint = unsafe { libc::proc_pidinfo(c_pid, libc::PROC_PIDLISTFDS, 0, ptr::null_mut(), 0) };
    if hint <= 0 {
        return match errno() {
            // A zombie exists but has no descriptor table left.
            libc::ESRCH if exists(pid) => Ok(Vec::new()),
            errno => Err(failure(pid, WHAT, errno)),
        };
    }
    let entry_size = mem::size_of::<libc::proc_fdinfo>();
    let mut capacity = usize::try_from(hint).unwrap_or(0) / entry_size + 16;
    loop {
        let mut buf = vec![libc::proc_fdinfo { proc_fd: 0, proc_fdtype: 0 }; capacity];
        let bytes = byte_len::<libc::proc_fdinfo>(capacity, Some(pid), WHAT)?;
        clear_errno();
        // SAFETY: proc_pidinfo (<libproc.h>) with PROC_PIDLISTFDS writes at most `bytes`
        // bytes of struct proc_fdinfo (<sys/proc_info.h>) to the buffer, which `buf`
        // provides, and returns how many bytes it wrote.
        let written = unsafe {
            libc::proc_pidinfo(c_pid, libc::PROC_PIDLISTFDS, 0, buf.as_mut_ptr().cast(), bytes)
        };
        if written <= 0 {
            return match errno() {
                // Zero bytes and no error after a hint that was not refused: the
                // process has no descriptors open.
                0 => Ok(Vec::new()),
                errno => Err(failure(pid, WHAT, errno)),
            };
        }
        let count = usize::try_from(written).unwrap_or(0) / entry_size;
        if count < capacity {
            buf.truncate(count);
            return Ok(buf);
        }
        capacity = grow(capacity, Some(pid), WHAT)?;
    }
}

/// A vnode descriptor: directory, device or (anything else) file, with its path.
fn vnode_fd(fd: c_int, info: &VnodeFdInfoWithPath) -> Fd {
    let kind = match info.pvip.vip_vi.vi_type {
        VDIR => FdKind::Dir,
        VCHR | VBLK => FdKind::Device,
        _ => FdKind::File,
    };
    Fd { fd, kind, path: c_chars(info.pvip.vip_path.as_flattened()), endpoint: None }
}

/// A socket descriptor, classified by family and protocol (DESIGN.md).
fn socket_fd(fd: c_int, info: &SocketInfo) -> Fd {
    let (kind, endpoint) = match info.soi_family {
        libc::AF_UNIX if matches!(SocketInfoKind::from(info.soi_kind), SocketInfoKind::Un) => {
            // SAFETY: soi_kind SOCKINFO_UN says the kernel filled pri_un
            // (<sys/proc_info.h>); every member of the union is plain integers and
            // arrays, so reading any of them is sound.
            let un = unsafe { info.soi_proto.pri_un };
            (FdKind::Unix, unix_endpoint(&un))
        }
        libc::AF_UNIX => (FdKind::Unix, None),
        libc::AF_INET | libc::AF_INET6 => match info.soi_protocol {
            libc::IPPROTO_TCP => {
                let endpoint = matches!(SocketInfoKind::from(info.soi_kind), SocketInfoKind::Tcp)
                    .then(|| {
                        // SAFETY: soi_kind SOCKINFO_TCP says the kernel filled pri_tcp
                        // (<sys/proc_info.h>); every member of the union is plain
                        // integers and arrays, so reading any of them is sound.
                        let tcp = unsafe { info.soi_proto.pri_tcp };
                        let state = tcp_state_name(TcpSIState::from(tcp.tcpsi_state));
                        inet_endpoint(&tcp.tcpsi_ini, Some(state))
                    });
                (FdKind::Tcp, endpoint)
            }
            libc::IPPROTO_UDP => {
                let endpoint = matches!(SocketInfoKind::from(info.soi_kind), SocketInfoKind::In)
                    .then(|| {
                        // SAFETY: soi_kind SOCKINFO_IN says the kernel filled pri_in
                        // (<sys/proc_info.h>); every member of the union is plain
                        // integers and arrays, so reading any of them is sound.
                        let udp = unsafe { info.soi_proto.pri_in };
                        inet_endpoint(&udp, None)
                    });
                (FdKind::Udp, endpoint)
            }
            _ => (FdKind::Socket, None),
        },
        _ => (FdKind::Socket, None),
    };
    Fd { fd, kind, path: None, endpoint }
}

/// The bound path of a unix socket, else the path of the peer it is connected to.
fn unix_endpoint(un: &UnSockInfo) -> Option<String> {
    // SAFETY: both members of union unsi_addr/unsi_caddr (<sys/proc_info.h>) are
    // byte arrays of which `ua_sun` is the shorter, so reading it is sound.
    let (bound, peer) = unsafe { (un.unsi_addr.ua_sun, un.unsi_caddr.ua_sun) };
    c_chars(&bound.sun_path).or_else(|| c_chars(&peer.sun_path))
}

/// `local -> remote (STATE)` as the Linux backend writes it: an unconnected socket
/// (remote port 0) shows only its local address, UDP has no state.
fn inet_endpoint(ini: &InSockInfo, tcp_state: Option<&str>) -> String {
    let v6 = ini.insi_vflag & INI_IPV6 != 0;
    let local = inet_address(&ini.insi_laddr, ini.insi_lport, v6);
    let remote = inet_address(&ini.insi_faddr, ini.insi_fport, v6);
    let unconnected = ini.insi_fport == 0;
    match (tcp_state, unconnected) {
        (Some(state), true) => format!("{local} ({state})"),
        (Some(state), false) => format!("{local} -> {remote} ({state})"),
        (None, true) => local,
        (None, false) => format!("{local} -> {remote}"),
    }
}

/// `addr:port` or `[addr]:port`; IPv4-mapped IPv6 addresses are shown as IPv4. The
/// port is stored in network byte order in an `int` (`<sys/proc_info.h>`).
fn inet_address(addr: &InSIAddr, port: c_int, v6: bool) -> String {
    let port = u16::from_be(port as u16);
    if v6 {
        // SAFETY: both members of the address union (<sys/proc_info.h>) are 16 bytes of
        // plain integers; insi_vflag INI_IPV6 says ina_6 is the one filled.
        let ip = Ipv6Addr::from(unsafe { addr.ina_6 }.s6_addr);
        match ip.to_ipv4_mapped() {
            Some(v4) => format!("{v4}:{port}"),
            None => format!("[{ip}]:{port}"),
        }
    } else {
        // SAFETY: both members of the address union (<sys/proc_info.h>) are 16 bytes of
        // plain integers; for IPv4 the kernel fills ina_46.
        let s_addr = unsafe { addr.ina_46 }.i46a_addr4.s_addr;
        // s_addr holds the address in network byte order, i.e. its bytes in order.
        format!("{}:{port}", Ipv4Addr::from(s_addr.to_ne_bytes()))
    }
}

/// TCP states under the names the Linux backend uses, so outputs agree.
fn tcp_state_name(state: TcpSIState) -> &'static str {
    match state {
        TcpSIState::Closed => "CLOSE",
        TcpSIState::Listen => "LISTEN",
        TcpSIState::SynSent => "SYN_SENT",
        TcpSIState::SynReceived => "SYN_RECV",
        TcpSIState::Established => "ESTABLISHED",
        TcpSIState::CloseWait => "CLOSE_WAIT",
        TcpSIState::FinWait1 => "FIN_WAIT1",
        TcpSIState::Closing => "CLOSING",
        TcpSIState::LastAck => "LAST_ACK",
        TcpSIState::FinWait2 => "FIN_WAIT2",
        TcpSIState::TimeWait => "TIME_WAIT",
        TcpSIState::Reserved | TcpSIState::Unknown => "UNKNOWN",
    }
}

/// A NUL-terminated C string in a fixed array, as UTF-8 (lossily); `None` if empty.
fn c_chars(chars: &[c_char]) -> Option<String> {
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| u8::from_ne_bytes(c.to_ne_bytes()))
        .collect();
    (!bytes.is_empty()).then(|| String::from_utf8_lossy(&bytes).into_owned())
}

/// One integer sysctl, by its numeric name (sysctl(3)).
fn sysctl_int(mut mib: [c_int; 2], what: &str) -> Result<c_int> {
    let mut value: c_int = 0;
    let mut len = mem::size_of::<c_int>();
    // SAFETY: sysctl(3): `mib` holds the 2 names it is told of, `value` is writable
    // for `len` bytes, the kernel writes at most `len` bytes; no new value is passed.
    let status = unsafe {
        libc::sysctl(
            mib.as_mut_ptr(),
            2,
            (&raw mut value).cast::<c_void>(),
            &raw mut len,
            ptr::null_mut(),
            0,
        )
    };
    if status != 0 {
        return Err(Error::from_io(None, what, io::Error::last_os_error()));
    }
    if len != mem::size_of::<c_int>() {
        return Err(Error::malformed(None, what));
    }
    Ok(value)
}

/// Parses a `KERN_PROCARGS2` answer (`<sys/sysctl.h>`): `argc` as a native `int`,
/// the exec path and its NUL padding, then `argc` NUL-terminated arguments (the
/// environment that follows is not read). Returns the exec path and argv.
fn parse_procargs2(buf: &[u8]) -> Option<(Option<String>, Vec<String>)> {
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

/// launchd's default `maxfiles`, the limit a process started by launchd inherits.
/// An unlimited (or unreadable) hard limit is bounded by `kern.maxfilesperproc`.
fn launchd_default_limit() -> Option<FdLimit> {
    let output = Command::new(LAUNCHCTL).args(["limit", "maxfiles"]).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let (soft, hard) = parse_launchctl_limit(&String::from_utf8_lossy(&output.stdout))?;
    let hard = hard.or_else(|| {
        sysctl_int([libc::CTL_KERN, libc::KERN_MAXFILESPERPROC], "kern.maxfilesperproc")
            .ok()
            .and_then(|max| u64::try_from(max).ok())
    });
    Some(FdLimit { soft, hard, source: LimitSource::LaunchdDefault })
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
mod tests {
    use super::*;

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
    fn c_chars_stops_at_nul() {
        let raw: Vec<c_char> = b"state.db\0junk".iter().map(|&b| b as c_char).collect();
        assert_eq!(c_chars(&raw).as_deref(), Some("state.db"));
        assert_eq!(c_chars(&[0; 4]), None);
    }

    #[test]
    fn timebase_converts_mach_units() {
        let apple_silicon = MachTimebaseInfo { numer: 125, denom: 3 };
        assert_eq!(apple_silicon.duration(24_000_000), Duration::from_secs(1));
    }

    #[test]
    fn backend_reads_this_process() {
        let os = Os::new().unwrap();
        let pid = std::process::id();
        assert!(os.pids().unwrap().contains(&pid));
        let me = os.process(pid).unwrap();
        assert_eq!(me.ppid, std::os::unix::process::parent_id());
        assert!(me.rss_bytes.unwrap() > 0);
        assert_eq!(os.start_time(pid).unwrap(), me.start_time);
        let details = os.details(pid).unwrap();
        assert!(!details.argv.is_empty());
        let fds = os.fd_table(pid, true).unwrap();
        assert_eq!(fds.len(), os.fd_count(pid).unwrap());
        assert_eq!(os.fd_limit(pid).unwrap().source, LimitSource::Getrlimit);
    }
}
