//! The macOS backend's raw calls: libproc (`proc_listallpids`, `proc_pidinfo`,
//! `proc_pidfdinfo`, `proc_pidpath`, declared in `<libproc.h>` with the
//! structures of `<sys/proc_info.h>`), `sysctl(3)` (`<sys/sysctl.h>`), getsid(2),
//! kill(2), getrlimit(2) and `launchctl limit`. Each answers what the kernel
//! answered, errno included; what to make of it is decided in `decide.rs`, which
//! is unit-tested on Linux against a fake. This file is only type-checked and
//! linted off a Mac (`cargo xtask macos-check`).
//!
//! The `libproc` crate supplies the descriptor and socket structures and
//! `proc_pidpath`. Its `pidinfo`/`pidfdinfo` wrappers report failures as text, and
//! a process that exited must be told from one we may not read (libproc answers
//! the latter with zero bytes), so those two calls go through `libc` directly, with
//! errno cleared first so that "zero bytes, no error" can be recognised.
//!
//! Like every backend it only asks the kernel: no file a target holds is opened.
//! (The kernel's answer for a vnode descriptor does include a `vn_stat` it makes
//! itself, `fill_vnodeinfo` in `bsd/kern/proc_info.c`, as it does for `lsof`; the
//! plain `PROC_PIDFDVNODEINFO` flavor makes the same `vn_stat`, so asking without
//! the path would save nothing.)

use super::decide::{
    Errno, FdDescription, FdEntry, FdType, KernInt, LAUNCHCTL, MacSys, NO_ANSWER, ProcEntry,
    SysResult, TaskInfo, pipe_object, socket_object, vnode_object,
};
use crate::{FdKind, Result};
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

/// `proc_pidfdinfo` flavors of `<sys/proc_info.h>` (`PROC_PIDFD*INFO`).
const PROC_PIDFDVNODEPATHINFO: c_int = PIDFDInfoFlavor::VNodePathInfo as c_int;
const PROC_PIDFDSOCKETINFO: c_int = PIDFDInfoFlavor::SocketInfo as c_int;
const PROC_PIDFDPSEMINFO: c_int = PIDFDInfoFlavor::PSEMInfo as c_int;
const PROC_PIDFDPSHMINFO: c_int = PIDFDInfoFlavor::PSHMInfo as c_int;
const PROC_PIDFDPIPEINFO: c_int = PIDFDInfoFlavor::PipeInfo as c_int;

/// `enum vtype` of `<sys/vnode.h>`, as in `vnode_info.vi_type`.
const VDIR: c_int = 2;
const VBLK: c_int = 3;
const VCHR: c_int = 4;

/// `in_sockinfo.insi_vflag` bits of `<sys/proc_info.h>`.
const INI_IPV6: u8 = 0x2;

/// `MAXPATHLEN` of `<sys/param.h>`: the size of the name in `pshm_info`/`psem_info`.
const MAXPATHLEN: usize = 1024;

/// The raw calls, made for real.
#[derive(Debug)]
pub(crate) struct Libproc;

impl MacSys for Libproc {
    fn open() -> Result<Self> {
        Ok(Self)
    }

    fn timebase(&self) -> SysResult<(u32, u32)> {
        let mut timebase = MachTimebaseInfo { numer: 0, denom: 0 };
        // SAFETY: mach_timebase_info(3) (<mach/mach_time.h>) writes one
        // mach_timebase_info_data_t to the pointer it is given, which is `timebase`.
        let status = unsafe { mach_timebase_info(&raw mut timebase) };
        if status != 0 {
            return Err(status);
        }
        Ok((timebase.numer, timebase.denom))
    }

    fn sysctl_int(&self, name: KernInt) -> SysResult<i64> {
        let mib = match name {
            KernInt::ArgMax => libc::KERN_ARGMAX,
            KernInt::MaxFiles => libc::KERN_MAXFILES,
            KernInt::MaxFilesPerProc => libc::KERN_MAXFILESPERPROC,
        };
        sysctl_int([libc::CTL_KERN, mib]).map(i64::from)
    }

    fn pid_count_hint(&self) -> SysResult<usize> {
        // SAFETY: proc_listallpids (<libproc.h>) with a NULL buffer and size 0 writes
        // nothing and answers how many pids a full listing would need.
        let hint = unsafe { libc::proc_listallpids(ptr::null_mut(), 0) };
        if hint <= 0 {
            return Err(errno());
        }
        Ok(usize::try_from(hint).unwrap_or(0))
    }

    fn list_all_pids(&self, capacity: usize) -> SysResult<Vec<i32>> {
        let mut buf: Vec<c_int> = vec![0; capacity];
        let bytes = byte_len::<c_int>(capacity)?;
        // SAFETY: proc_listallpids (<libproc.h>) writes at most `bytes` bytes of
        // pid_t to the buffer, which `buf` provides, and returns how many pids it
        // wrote.
        let written = unsafe { libc::proc_listallpids(buf.as_mut_ptr().cast(), bytes) };
        if written <= 0 {
            return Err(errno());
        }
        buf.truncate(usize::try_from(written).unwrap_or(0));
        Ok(buf)
    }

    fn bsd_info(&self, pid: i32, zombies_too: bool) -> SysResult<ProcEntry> {
        // A non-zero `arg` makes proc_pidinfo look among zombies too (`findzomb` in
        // bsd/kern/proc_info.c); with 0 a zombie answers ESRCH.
        let bsd: libc::proc_bsdinfo =
            pid_info(pid, libc::PROC_PIDTBSDINFO, u64::from(zombies_too))?;
        Ok(ProcEntry {
            status: bsd.pbi_status,
            ppid: bsd.pbi_ppid,
            pgid: bsd.pbi_pgid,
            uid: bsd.pbi_uid,
            comm: c_chars(&bsd.pbi_comm).unwrap_or_default(),
            name: c_chars(&bsd.pbi_name).unwrap_or_default(),
            start_sec: bsd.pbi_start_tvsec,
            start_usec: bsd.pbi_start_tvusec,
        })
    }

    fn kinfo_proc(&self, pid: i32) -> SysResult<Option<ProcEntry>> {
        let mut mib = [libc::CTL_KERN, libc::KERN_PROC, libc::KERN_PROC_PID, pid];
        let mut info = KinfoProc::zeroed();
        let mut len = mem::size_of::<KinfoProc>();
        // SAFETY: sysctl(3): `mib` holds the 4 names it is told of; `info` is
        // writable for `len` bytes, the size of struct kinfo_proc (<sys/sysctl.h>),
        // and the kernel writes at most `len` bytes and stores the count in `len`;
        // `KinfoProc: Plain`, so any bytes written make a valid value. No new value
        // is passed.
        let status = unsafe {
            libc::sysctl(
                mib.as_mut_ptr(),
                4,
                (&raw mut info).cast::<c_void>(),
                &raw mut len,
                ptr::null_mut(),
                0,
            )
        };
        if status != 0 {
            return Err(errno());
        }
        // sysctl_prochandle (bsd/kern/kern_sysctl.c) answers zero bytes, no error,
        // for a pid that is neither live nor a zombie.
        if len < mem::size_of::<KinfoProc>() {
            return Ok(None);
        }
        let start = info.p_starttime;
        Ok(Some(ProcEntry {
            status: u32::from(u8::from_ne_bytes(info.p_stat.to_ne_bytes())),
            ppid: u32::try_from(info.e_ppid).unwrap_or(0),
            pgid: u32::try_from(info.e_pgid).unwrap_or(0),
            uid: info.cr_uid,
            comm: c_chars(&info.p_comm).unwrap_or_default(),
            name: String::new(),
            start_sec: u64::try_from(start.tv_sec).unwrap_or(0),
            start_usec: u64::try_from(start.tv_usec).unwrap_or(0),
        }))
    }

    fn task_info(&self, pid: i32) -> SysResult<TaskInfo> {
        let task: libc::proc_taskinfo = pid_info(pid, libc::PROC_PIDTASKINFO, 0)?;
        Ok(TaskInfo {
            resident_bytes: task.pti_resident_size,
            cpu_ticks: task.pti_total_user.saturating_add(task.pti_total_system),
            threads: task.pti_threadnum,
        })
    }

    fn getsid(&self, pid: i32) -> SysResult<u32> {
        // SAFETY: getsid(2) only reads the process table.
        let sid = unsafe { libc::getsid(pid) };
        u32::try_from(sid).map_err(|_| errno())
    }

    fn signal_check(&self, pid: i32) -> SysResult<()> {
        // SAFETY: kill(2) with signal 0 performs only the existence and permission
        // checks; no signal is delivered.
        if unsafe { libc::kill(pid, 0) } == 0 { Ok(()) } else { Err(errno()) }
    }

    fn procargs2(&self, pid: i32, size: usize) -> SysResult<Vec<u8>> {
        let mut mib = [libc::CTL_KERN, libc::KERN_PROCARGS2, pid];
        let mut buf = vec![0u8; size];
        let mut len = buf.len();
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
            return Err(errno());
        }
        buf.truncate(len);
        Ok(buf)
    }

    fn pid_path(&self, pid: i32) -> Option<String> {
        // proc_pidpath(3) (<libproc.h>): PROC_PIDPATHINFO, readable for any process.
        libproc::proc_pid::pidpath(pid).ok().filter(|path| !path.is_empty())
    }

    fn fd_list_hint(&self, pid: i32) -> SysResult<usize> {
        clear_errno();
        // SAFETY: proc_pidinfo (<libproc.h>) with PROC_PIDLISTFDS, a NULL buffer and
        // size 0 writes nothing and answers the bytes a listing may need.
        let hint = unsafe { libc::proc_pidinfo(pid, libc::PROC_PIDLISTFDS, 0, ptr::null_mut(), 0) };
        if hint <= 0 {
            return Err(errno());
        }
        Ok(usize::try_from(hint).unwrap_or(0) / mem::size_of::<libc::proc_fdinfo>())
    }

    fn list_fds(&self, pid: i32, capacity: usize) -> SysResult<Vec<FdEntry>> {
        let mut buf = vec![libc::proc_fdinfo { proc_fd: 0, proc_fdtype: 0 }; capacity];
        let bytes = byte_len::<libc::proc_fdinfo>(capacity)?;
        clear_errno();
        // SAFETY: proc_pidinfo (<libproc.h>) with PROC_PIDLISTFDS writes at most `bytes`
        // bytes of struct proc_fdinfo (<sys/proc_info.h>) to the buffer, which `buf`
        // provides, and returns how many bytes it wrote.
        let written = unsafe {
            libc::proc_pidinfo(pid, libc::PROC_PIDLISTFDS, 0, buf.as_mut_ptr().cast(), bytes)
        };
        if written <= 0 {
            return Err(errno());
        }
        let count = usize::try_from(written).unwrap_or(0) / mem::size_of::<libc::proc_fdinfo>();
        buf.truncate(count);
        Ok(buf
            .into_iter()
            .map(|entry| FdEntry { fd: entry.proc_fd, fd_type: fd_type(entry.proc_fdtype) })
            .collect())
    }

    fn describe_fd(&self, pid: i32, fd: i32, fd_type: FdType) -> SysResult<FdDescription> {
        match fd_type {
            FdType::Vnode => fd_info::<VnodeFdInfoWithPath>(pid, fd, PROC_PIDFDVNODEPATHINFO)
                .map(|info| vnode_fd(&info)),
            FdType::Socket => fd_info::<SocketFDInfo>(pid, fd, PROC_PIDFDSOCKETINFO)
                .map(|info| socket_fd(&info.psi)),
            FdType::Pshm => {
                fd_info::<PshmFdInfo>(pid, fd, PROC_PIDFDPSHMINFO).map(|info| FdDescription {
                    kind: FdKind::Shm,
                    path: c_chars(&info.pshminfo.pshm_name),
                    endpoint: None,
                    object: None,
                })
            }
            FdType::Psem => {
                fd_info::<PsemFdInfo>(pid, fd, PROC_PIDFDPSEMINFO).map(|info| FdDescription {
                    kind: FdKind::Sem,
                    path: c_chars(&info.pseminfo.psem_name),
                    endpoint: None,
                    object: None,
                })
            }
            // `fill_pipeinfo` (XNU bsd/kern/sys_pipe.c) may refuse under MACF
            // (`mac_pipe_check_stat`); the caller keeps the pipe undescribed then.
            FdType::Pipe => {
                fd_info::<PipeFdInfo>(pid, fd, PROC_PIDFDPIPEINFO).map(|info| FdDescription {
                    kind: FdKind::Pipe,
                    path: None,
                    endpoint: None,
                    object: pipe_object(info.pipeinfo.pipe_handle, info.pipeinfo.pipe_peerhandle),
                })
            }
            // Nothing more to ask about these.
            FdType::Kqueue | FdType::Fsevents | FdType::Other => Err(NO_ANSWER),
        }
    }

    fn own_nofile_limit(&self) -> SysResult<(Option<u64>, Option<u64>)> {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit(2) writes one struct rlimit to the pointer it is given,
        // which is `limit`.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
            return Err(errno());
        }
        let finite = |value: libc::rlim_t| (value != libc::RLIM_INFINITY).then_some(value);
        Ok((finite(limit.rlim_cur), finite(limit.rlim_max)))
    }

    fn launchctl_limit_maxfiles(&self) -> Option<String> {
        // launchctl(1): `limit maxfiles` prints launchd's soft and hard defaults.
        let output = Command::new(LAUNCHCTL).args(["limit", "maxfiles"]).output().ok()?;
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// `PROX_FDTYPE_*` of `<sys/proc_info.h>`.
fn fd_type(raw: u32) -> FdType {
    match ProcFDType::from(raw) {
        ProcFDType::VNode => FdType::Vnode,
        ProcFDType::Socket => FdType::Socket,
        ProcFDType::PSHM => FdType::Pshm,
        ProcFDType::PSEM => FdType::Psem,
        ProcFDType::Pipe => FdType::Pipe,
        ProcFDType::KQueue => FdType::Kqueue,
        ProcFDType::FSEvents => FdType::Fsevents,
        _ => FdType::Other,
    }
}

/// `mach_timebase_info_data_t` of `<mach/mach_time.h>`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct MachTimebaseInfo {
    numer: u32,
    denom: u32,
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

/// `struct pipe_info` of `<sys/proc_info.h>`.
#[repr(C)]
struct PipeInfo {
    pipe_stat: libc::vinfo_stat,
    pipe_handle: u64,
    pipe_peerhandle: u64,
    pipe_status: c_int,
    rfu_1: c_int,
}

/// `struct pipe_fdinfo` of `<sys/proc_info.h>` (`PROC_PIDFDPIPEINFO`).
#[repr(C)]
struct PipeFdInfo {
    pfi: ProcFileInfo,
    pipeinfo: PipeInfo,
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

/// `struct kinfo_proc` of `<sys/sysctl.h>` (`struct extern_proc` of `<sys/proc.h>`
/// then `struct eproc`), laid out for LP64 with every pointer as a `u64` and
/// only the fields we read named; the asserts below pin the size and offsets
/// (648 bytes, as `sizeof(struct kinfo_proc)` on 64-bit macOS).
#[repr(C)]
struct KinfoProc {
    /// `p_un.__p_starttime`, the `p_start` that PROC_PIDTBSDINFO reports too.
    p_starttime: libc::timeval,
    /// p_vmspace, p_sigacts.
    _pointers: [u64; 2],
    p_flag: c_int,
    p_stat: c_char,
    /// p_pid .. p_nice, as bytes (offsets 37 to 243).
    _extern_proc_middle: [u8; 206],
    p_comm: [c_char; 17],
    /// p_pgrp, p_addr, p_xstat, p_acflag, p_ru; e_paddr, e_sess; e_pcred (104
    /// bytes); e_ucred.cr_ref.
    _before_uid: [u8; 160],
    /// `kp_eproc.e_ucred.cr_uid`: the effective uid, as `pbi_uid`.
    cr_uid: u32,
    /// cr_ngroups, cr_groups; e_vm.
    _before_ppid: [u8; 136],
    e_ppid: i32,
    e_pgid: i32,
    /// e_jobc .. e_spare.
    _rest: [u8; 80],
}

const _: () = {
    assert!(mem::size_of::<KinfoProc>() == 648);
    assert!(mem::offset_of!(KinfoProc, p_stat) == 36);
    assert!(mem::offset_of!(KinfoProc, p_comm) == 243);
    assert!(mem::offset_of!(KinfoProc, cr_uid) == 420);
    assert!(mem::offset_of!(KinfoProc, e_ppid) == 560);
    assert!(mem::offset_of!(KinfoProc, e_pgid) == 564);
};

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
// SAFETY: struct pipe_fdinfo (<sys/proc_info.h>): integers only.
unsafe impl Plain for PipeFdInfo {}
// SAFETY: struct socket_fdinfo (<sys/proc_info.h>): integers, arrays, and unions of
// structs of integers and arrays (in_sockinfo, tcp_sockinfo, un_sockinfo, ...).
unsafe impl Plain for SocketFDInfo {}
// SAFETY: KinfoProc above: a timeval (integers), integers and byte arrays.
unsafe impl Plain for KinfoProc {}

fn errno() -> Errno {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Clears errno, so that a call answering 0 without setting it can be recognised.
fn clear_errno() {
    // SAFETY: __error() (<sys/errno.h>) returns the calling thread's errno location,
    // valid for as long as the thread lives.
    unsafe { *libc::__error() = 0 };
}

/// `size_of::<T>() * count` as the `c_int` byte count libproc takes.
fn byte_len<T>(count: usize) -> SysResult<c_int> {
    count
        .checked_mul(mem::size_of::<T>())
        .and_then(|bytes| c_int::try_from(bytes).ok())
        .ok_or(libc::EOVERFLOW)
}

/// `proc_pidinfo(pid, flavor, arg, &T, sizeof T)`: the whole `T`, or the errno the
/// call failed with ([`NO_ANSWER`] for zero bytes, or a short answer).
fn pid_info<T: Plain>(pid: c_int, flavor: c_int, arg: u64) -> SysResult<T> {
    let mut value = T::zeroed();
    let size = byte_len::<T>(1)?;
    clear_errno();
    // SAFETY: proc_pidinfo (<libproc.h>, flavors of <sys/proc_info.h>) writes at most
    // `size` bytes to the buffer, which is `value`, a `T` of exactly `size` bytes;
    // `T: Plain`, so whatever bytes it writes make a valid `T`.
    let written =
        unsafe { libc::proc_pidinfo(pid, flavor, arg, (&raw mut value).cast::<c_void>(), size) };
    if written == size {
        Ok(value)
    } else if written <= 0 {
        Err(errno())
    } else {
        Err(NO_ANSWER)
    }
}

/// `proc_pidfdinfo(pid, fd, flavor, &T, sizeof T)`: the whole `T`, or the errno
/// ([`NO_ANSWER`] for a short answer).
fn fd_info<T: Plain>(pid: c_int, fd: c_int, flavor: c_int) -> SysResult<T> {
    let mut value = T::zeroed();
    let size = byte_len::<T>(1)?;
    clear_errno();
    // SAFETY: proc_pidfdinfo (<libproc.h>, flavors of <sys/proc_info.h>) writes at most
    // `size` bytes to the buffer, which is `value`, a `T` of exactly `size` bytes;
    // `T: Plain`, so whatever bytes it writes make a valid `T`.
    let written =
        unsafe { libc::proc_pidfdinfo(pid, fd, flavor, (&raw mut value).cast::<c_void>(), size) };
    if written == size {
        Ok(value)
    } else if written > 0 {
        Err(NO_ANSWER)
    } else {
        Err(errno())
    }
}

/// A vnode descriptor: directory, device or (anything else) file, with its path
/// and, from the `vinfo_stat` `fill_vnodeinfo` (XNU bsd/kern/proc_info.c) makes,
/// its device and inode.
fn vnode_fd(info: &VnodeFdInfoWithPath) -> FdDescription {
    let kind = match info.pvip.vip_vi.vi_type {
        VDIR => FdKind::Dir,
        VCHR | VBLK => FdKind::Device,
        _ => FdKind::File,
    };
    let stat = &info.pvip.vip_vi.vi_stat;
    FdDescription {
        kind,
        path: c_chars(info.pvip.vip_path.as_flattened()),
        endpoint: None,
        object: vnode_object(stat.vst_dev, stat.vst_ino),
    }
}

/// A socket descriptor, classified by family and protocol (DESIGN.md), with
/// the kernel's socket handle `fill_socketinfo` (XNU bsd/kern/proc_info.c and
/// bsd/kern/socket_info.c) gives as `soi_so` for every family (`soi_pcb`, the
/// protocol block, is 0 for some, so the socket's own is the identity).
fn socket_fd(info: &SocketInfo) -> FdDescription {
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
    FdDescription { kind, path: None, endpoint, object: socket_object(info.soi_so) }
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
fn sysctl_int(mut mib: [c_int; 2]) -> SysResult<c_int> {
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
        return Err(errno());
    }
    if len != mem::size_of::<c_int>() {
        return Err(libc::EINVAL);
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LimitSource;
    use crate::backend::Backend;

    #[test]
    fn c_chars_stops_at_nul() {
        let raw: Vec<c_char> = b"state.db\0junk".iter().map(|&b| b as c_char).collect();
        assert_eq!(c_chars(&raw).as_deref(), Some("state.db"));
        assert_eq!(c_chars(&[0; 4]), None);
    }

    #[test]
    fn backend_reads_this_process() {
        let os = super::super::Os::new().unwrap();
        let pid = std::process::id();
        assert!(os.pids().unwrap().contains(&pid));
        let me = os.process(pid).unwrap();
        assert_eq!(me.ppid, std::os::unix::process::parent_id());
        assert!(me.rss_bytes.unwrap() > 0);
        assert_eq!(os.start_time(pid).unwrap(), me.start_time);
        // KERN_PROC_PID gives the same start time as PROC_PIDTBSDINFO.
        let kinfo = Libproc.kinfo_proc(i32::try_from(pid).unwrap()).unwrap().unwrap();
        assert_eq!((kinfo.start_sec, kinfo.start_usec, kinfo.ppid), {
            let bsd = Libproc.bsd_info(i32::try_from(pid).unwrap(), true).unwrap();
            (bsd.start_sec, bsd.start_usec, bsd.ppid)
        });
        let details = os.details(pid).unwrap();
        assert!(!details.argv.is_empty());
        let fds = os.fd_table(pid, true).unwrap();
        assert_eq!(fds.len(), os.fd_count(pid).unwrap());
        assert_eq!(os.fd_limit(pid).unwrap().source, LimitSource::Getrlimit);
    }
}
