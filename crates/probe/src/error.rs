//! Typed probe errors. Callers branch on [`ErrorKind`]: a process that is gone is
//! skipped, a permission problem is shown as such, anything else is a real fault.

use std::fmt;
use std::io;

/// What went wrong, for callers to branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The process does not exist, or exited (or was replaced) while being read.
    NoSuchProcess,
    /// The process exists but this user may not inspect it. On macOS libproc
    /// answers such requests with zero bytes; that is reported here, not as "gone".
    PermissionDenied,
    /// This platform, or this kernel, does not offer the information.
    Unsupported,
    /// Any other operating-system error.
    Io,
}

/// A probe error: its kind, the pid it concerns (if any) and what was being read.
#[derive(Debug, thiserror::Error)]
pub struct Error {
    kind: ErrorKind,
    pid: Option<u32>,
    what: String,
    /// The OS error. Display prints it, so it is not also the error's `source()`:
    /// a chain printed with its causes (`{:#}`) would repeat it.
    cause: Option<io::Error>,
}

/// The probe's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The pid the error concerns, when it concerns one.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    pub(crate) fn no_such_process(pid: u32) -> Self {
        Self { kind: ErrorKind::NoSuchProcess, pid: Some(pid), what: String::new(), cause: None }
    }

    #[cfg_attr(target_os = "linux", allow(dead_code))]
    pub(crate) fn permission_denied(pid: u32, what: impl Into<String>) -> Self {
        Self { kind: ErrorKind::PermissionDenied, pid: Some(pid), what: what.into(), cause: None }
    }

    pub(crate) fn unsupported(what: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Unsupported, pid: None, what: what.into(), cause: None }
    }

    /// Classifies an OS error met while reading `what` about `pid`: ENOENT and ESRCH
    /// mean the process is gone, EACCES and EPERM that it is not ours to read.
    pub(crate) fn from_io(pid: Option<u32>, what: impl Into<String>, source: io::Error) -> Self {
        let kind = match (source.kind(), source.raw_os_error()) {
            (io::ErrorKind::NotFound, _) => ErrorKind::NoSuchProcess,
            (_, Some(code)) if code == libc_esrch() => ErrorKind::NoSuchProcess,
            (io::ErrorKind::PermissionDenied, _) => ErrorKind::PermissionDenied,
            _ => ErrorKind::Io,
        };
        if kind == ErrorKind::NoSuchProcess && pid.is_some() {
            return Self { kind, pid, what: what.into(), cause: None };
        }
        Self { kind, pid, what: what.into(), cause: Some(source) }
    }

    /// A malformed answer from the OS (a `/proc` file we could not parse, say).
    pub(crate) fn malformed(pid: Option<u32>, what: impl Into<String>) -> Self {
        let what = what.into();
        let source =
            io::Error::new(io::ErrorKind::InvalidData, format!("unexpected format of {what}"));
        Self { kind: ErrorKind::Io, pid, what, cause: Some(source) }
    }
}

/// ESRCH is 3 on every Unix Leakwatch supports; spelled out so this module needs no
/// libc binding of its own.
const fn libc_esrch() -> i32 {
    3
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let subject = match self.pid {
            Some(pid) => format!("pid {pid}"),
            None => "process table".to_owned(),
        };
        match self.kind {
            ErrorKind::NoSuchProcess => write!(f, "{subject}: no such process"),
            ErrorKind::PermissionDenied => {
                write!(f, "{subject}: permission denied reading {}", self.what)?;
                if let Some(source) = &self.cause {
                    write!(f, " ({source})")?;
                }
                Ok(())
            }
            ErrorKind::Unsupported => write!(f, "not supported on this system: {}", self.what),
            ErrorKind::Io => match &self.cause {
                Some(source) => write!(f, "{subject}: reading {}: {source}", self.what),
                None => write!(f, "{subject}: reading {}", self.what),
            },
        }
    }
}
