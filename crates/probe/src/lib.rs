//! `leakwatch-probe` is the only part of Leakwatch that asks the operating system
//! about processes. Everything above it (trend, rules, orphans, the CLI and the app)
//! works on the plain data this crate returns, so it can be tested with made-up
//! snapshots and so the per-OS code stays small and in one place.
//!
//! One public API, [`Probe`], is backed by one module per OS, chosen at compile
//! time: `linux` reads `/proc`, `macos` uses libproc and `sysctl`, and every other
//! target gets a backend whose every call fails with [`ErrorKind::Unsupported`].
//!
//! Two rules hold for every backend:
//! - a process that exits while it is being read is [`ErrorKind::NoSuchProcess`],
//!   never a panic and never a half-filled record;
//! - the probe never `open`s or `stat`s the files a target holds itself. (On macOS
//!   the kernel's description of a vnode descriptor includes a `vn_stat` it makes,
//!   as for `lsof`; the every-tick read asks for a bounded number of those.)

mod backend;
mod error;
mod model;

#[cfg(target_os = "linux")]
mod linux;
// Compiled for tests everywhere: its decisions are unit-tested on Linux against a
// fake of the raw calls (see macos.rs).
#[cfg(any(test, target_os = "macos"))]
mod macos;
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
mod unsupported;

#[cfg(target_os = "linux")]
use linux::Os;
#[cfg(target_os = "macos")]
use macos::Os;
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
use unsupported::Os;

pub use error::{Error, ErrorKind, Result};
pub use model::{
    Fd, FdClass, FdKind, FdLimit, FdTable, LimitSource, ProcessId, ProcessInfo, ProcessState,
    ServiceJob, StartTime, SystemLimit,
};

use backend::{Backend, ProcessDetails};
use std::collections::HashMap;
use std::sync::Arc;

/// A handle on the operating system's process information.
///
/// It is cheap to create, but keep one around: it caches each process's argv and
/// executable path per identity, which on macOS costs a `KERN_PROCARGS2` sysctl per
/// process. The cache holds only identities seen alive by the last full scan, so it
/// cannot grow without bound.
#[derive(Debug)]
pub struct Probe {
    os: Os,
    details: HashMap<ProcessId, CachedDetails>,
}

/// Argv and executable of one identity, remembered with the name they were read
/// under: `execve` keeps the pid and start time but changes the name, and a changed
/// name makes us read them again.
#[derive(Debug, Clone)]
struct CachedDetails {
    name: Arc<str>,
    argv: Arc<[String]>,
    exe: Option<Arc<str>>,
}

impl Probe {
    /// Opens the probe. Fails only where the platform's process interface itself is
    /// missing (no `/proc` mounted, or an unsupported OS).
    pub fn new() -> Result<Self> {
        Ok(Self { os: Os::new()?, details: HashMap::new() })
    }

    /// Every process the caller may see, in pid order. Processes that exit during
    /// the scan are left out, and so is one that cannot be read at all; ones whose
    /// details are restricted keep what could be read (see the `Option` fields of
    /// [`ProcessInfo`]; an unknown argv is empty). Fails only when the process
    /// table itself cannot be listed.
    pub fn processes(&mut self) -> Result<Vec<ProcessInfo>> {
        scan(&self.os, &mut self.details)
    }

    /// One process by pid.
    pub fn process(&mut self, pid: u32) -> Result<ProcessInfo> {
        read_process(&self.os, &mut self.details, pid)
    }

    /// The identity of the process that has `pid` now: the cheapest read that tells
    /// a process from a later one that reused its pid. Call it right before acting on
    /// a pid.
    pub fn identity(&self, pid: u32) -> Result<ProcessId> {
        Ok(ProcessId { pid, start_time: self.os.start_time(pid)? })
    }

    /// Every open descriptor of `pid`, classified by [`FdKind`].
    pub fn fd_table(&self, pid: u32) -> Result<FdTable> {
        self.read_fd_table(pid, true)
    }

    /// Like [`Probe::fd_table`] but without socket endpoints: every descriptor's
    /// kind and path, at a fraction of the cost where naming endpoints is dear
    /// (on Linux, `/proc/PID/net/tcp` walks the kernel's whole TCP hash table on
    /// every read, some milliseconds however few sockets there are). What the
    /// engine reads every tick. On macOS only the first 512 file descriptors get
    /// their paths (and `dir`/`device` kinds) here; the rest count as `file`.
    pub fn fd_kinds(&self, pid: u32) -> Result<FdTable> {
        self.read_fd_table(pid, false)
    }

    fn read_fd_table(&self, pid: u32, endpoints: bool) -> Result<FdTable> {
        let start_time = self.os.start_time(pid)?;
        let mut fds = self.os.fd_table_with_objects(pid, endpoints)?;
        fds.sort_unstable_by_key(|(fd, _)| fd.fd);
        // A pid reused while we read would give us another process's table.
        if self.os.start_time(pid)? != start_time {
            return Err(Error::no_such_process(pid));
        }
        let (fds, objects) = fds.into_iter().unzip();
        Ok(FdTable { id: ProcessId { pid, start_time }, fds, objects })
    }

    /// How many descriptors `pid` has open, by the cheapest means the OS offers.
    /// On Linux 6.2+ (`st_size` of `/proc/PID/fd`) this includes descriptors that a
    /// syscall in progress has reserved and not installed yet (a thread blocked in
    /// accept(2) holds one): they count against the limit, but the table does not
    /// list them, so the count may exceed [`Probe::fd_table`]'s length by a few.
    pub fn fd_count(&self, pid: u32) -> Result<usize> {
        self.os.fd_count(pid)
    }

    /// The descriptor limit of `pid` and where it was learned.
    pub fn fd_limit(&self, pid: u32) -> Result<FdLimit> {
        self.os.fd_limit(pid)
    }

    /// The inodes of the TCP sockets listening on `port` (Linux; elsewhere
    /// [`ErrorKind::Unsupported`]). With [`Probe::socket_inodes`] it finds a port's
    /// owner the way `ss -p` does, without naming every socket's endpoints.
    pub fn listening_inodes(&self, port: u16) -> Result<Vec<u64>> {
        self.os.listening_inodes(port)
    }

    /// The inodes of the sockets `pid` holds (Linux; elsewhere Unsupported).
    pub fn socket_inodes(&self, pid: u32) -> Result<Vec<u64>> {
        self.os.socket_inodes(pid)
    }

    /// The service manager job that runs `pid`, when one does: its systemd
    /// service unit on Linux (from `/proc/PID/cgroup`), its launchd label on
    /// macOS (the `XPC_SERVICE_NAME` launchd puts in a job's environment,
    /// readable for our own user's processes). `None` when no service manager
    /// runs it, or it cannot be told (another user's process on macOS).
    pub fn service_job(&self, pid: u32) -> Result<Option<ServiceJob>> {
        self.os.service_job(pid)
    }

    /// The system-wide descriptor limits and where each comes from (file-max and
    /// nr_open on Linux; launchd's maxfiles and the kern.* sysctls on macOS).
    pub fn system_limits(&self) -> Vec<SystemLimit> {
        self.os.system_limits()
    }
}

/// Every process `os` lists, in pid order, with argv and executable from `cache`
/// where the identity was seen before. Processes that exit during the scan are
/// left out, and so is one that cannot be read at all (not even an identity): a
/// per-process error never fails the whole scan, which would stop orphans,
/// locators, kill plans and restarts for every target.
fn scan<B: Backend>(
    os: &B,
    cache: &mut HashMap<ProcessId, CachedDetails>,
) -> Result<Vec<ProcessInfo>> {
    let pids = os.pids()?;
    let mut out = Vec::with_capacity(pids.len());
    for pid in pids {
        if let Ok(info) = read_process(os, cache, pid) {
            out.push(info);
        }
    }
    // Forget identities that are gone, so the cache tracks the live table only.
    let live: std::collections::HashSet<ProcessId> = out.iter().map(|p| p.id).collect();
    cache.retain(|id, _| live.contains(id));
    Ok(out)
}

fn read_process<B: Backend>(
    os: &B,
    cache: &mut HashMap<ProcessId, CachedDetails>,
    pid: u32,
) -> Result<ProcessInfo> {
    let raw = os.process(pid)?;
    let id = ProcessId { pid, start_time: raw.start_time };
    let details = match cache.get(&id) {
        Some(cached) if *cached.name == *raw.name => cached.clone(),
        _ => {
            let ProcessDetails { argv, exe } = match os.details(pid) {
                Ok(details) => details,
                Err(e) if e.kind() == ErrorKind::NoSuchProcess => return Err(e),
                // Another user's argv may be private, or the kernel could not copy
                // it: "argv unknown", and the rest of the row stands.
                Err(_) => ProcessDetails::default(),
            };
            let cached = CachedDetails {
                name: Arc::from(raw.name.as_str()),
                argv: argv.into(),
                exe: exe.map(Arc::from),
            };
            cache.insert(id, cached.clone());
            cached
        }
    };
    Ok(ProcessInfo {
        id,
        ppid: raw.ppid,
        pgid: raw.pgid,
        sid: raw.sid,
        uid: raw.uid,
        state: raw.state,
        name: raw.name,
        exe: details.exe.map(|e| e.to_string()),
        argv: details.argv,
        rss_bytes: raw.rss_bytes,
        cpu_time: raw.cpu_time,
        threads: raw.threads,
        started_at: raw.started_at,
        is_kernel_thread: raw.is_kernel_thread,
    })
}

/// The real user id of the calling process: "my processes" in listings.
#[cfg(unix)]
pub fn current_uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// This process's own pid.
pub fn current_pid() -> u32 {
    std::process::id()
}
