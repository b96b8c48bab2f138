//! The backend for platforms Leakwatch has no process interface for: every call
//! says so, so the rest of the workspace still builds and fails politely.

use crate::backend::{Backend, ProcessDetails, RawProcess};
use crate::{Error, Fd, FdLimit, Result, StartTime, SystemLimit};

#[derive(Debug)]
pub(crate) struct Os;

impl Backend for Os {
    fn new() -> Result<Self> {
        Err(Error::unsupported("process inspection on this operating system"))
    }
    fn pids(&self) -> Result<Vec<u32>> {
        Err(Error::unsupported("process table"))
    }
    fn process(&self, _pid: u32) -> Result<RawProcess> {
        Err(Error::unsupported("process information"))
    }
    fn details(&self, _pid: u32) -> Result<ProcessDetails> {
        Err(Error::unsupported("process arguments"))
    }
    fn start_time(&self, _pid: u32) -> Result<StartTime> {
        Err(Error::unsupported("process start time"))
    }
    fn fd_table(&self, _pid: u32, _endpoints: bool) -> Result<Vec<Fd>> {
        Err(Error::unsupported("descriptor table"))
    }
    fn fd_count(&self, _pid: u32) -> Result<usize> {
        Err(Error::unsupported("descriptor count"))
    }
    fn fd_limit(&self, _pid: u32) -> Result<FdLimit> {
        Err(Error::unsupported("descriptor limit"))
    }
    fn system_limits(&self) -> Vec<SystemLimit> {
        Vec::new()
    }
}
