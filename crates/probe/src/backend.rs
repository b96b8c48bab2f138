//! The contract every per-OS module fulfils. [`crate::Probe`] adds what is the same
//! everywhere (caching, identity checks, ordering) on top, so each backend holds
//! only the calls that differ between operating systems.

use crate::{Fd, FdLimit, ProcessState, Result, ServiceJob, StartTime, SystemLimit};
use std::time::{Duration, SystemTime};

/// What one cheap read of a process gives: everything but argv and the executable.
#[derive(Debug, Clone)]
pub(crate) struct RawProcess {
    pub(crate) start_time: StartTime,
    pub(crate) started_at: SystemTime,
    pub(crate) ppid: u32,
    pub(crate) pgid: u32,
    pub(crate) sid: u32,
    pub(crate) uid: u32,
    pub(crate) state: ProcessState,
    pub(crate) name: String,
    pub(crate) rss_bytes: Option<u64>,
    pub(crate) cpu_time: Option<Duration>,
    pub(crate) threads: Option<u32>,
    pub(crate) is_kernel_thread: bool,
}

/// What is read once per identity and cached.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProcessDetails {
    pub(crate) argv: Vec<String>,
    pub(crate) exe: Option<String>,
}

pub(crate) trait Backend: Sized {
    fn new() -> Result<Self>;
    /// Every pid visible now, ascending.
    fn pids(&self) -> Result<Vec<u32>>;
    fn process(&self, pid: u32) -> Result<RawProcess>;
    fn details(&self, pid: u32) -> Result<ProcessDetails>;
    fn start_time(&self, pid: u32) -> Result<StartTime>;
    /// The descriptors of `pid`; with `endpoints` false a backend may skip the
    /// work of naming socket endpoints (kinds and paths are always given).
    fn fd_table(&self, pid: u32, endpoints: bool) -> Result<Vec<Fd>>;
    /// Like `fd_table`, with what each descriptor refers to where the backend
    /// knows it at no extra cost (see [`crate::FdTable::objects`]).
    fn fd_table_with_objects(&self, pid: u32, endpoints: bool) -> Result<Vec<(Fd, Option<u64>)>> {
        Ok(self.fd_table(pid, endpoints)?.into_iter().map(|fd| (fd, None)).collect())
    }
    fn fd_count(&self, pid: u32) -> Result<usize>;
    fn fd_limit(&self, pid: u32) -> Result<FdLimit>;
    /// What could be read of the system-wide limits; unreadable ones are left out.
    fn system_limits(&self) -> Vec<SystemLimit>;
    /// The service manager job running `pid`; `None` where none does or the
    /// OS cannot tell.
    fn service_job(&self, _pid: u32) -> Result<Option<ServiceJob>> {
        Ok(None)
    }
    /// Socket inodes listening on TCP `port` in our network namespace.
    fn listening_inodes(&self, _port: u16) -> Result<Vec<u64>> {
        Err(crate::Error::unsupported("socket inodes"))
    }
    /// The socket inodes `pid` holds.
    fn socket_inodes(&self, _pid: u32) -> Result<Vec<u64>> {
        Err(crate::Error::unsupported("socket inodes"))
    }
}
