//! Sending one signal to one pid: through a pidfd on Linux where the kernel has
//! them, kill(2) elsewhere.

use super::outcome::Sig;

/// The process is gone (its pid is free).
#[derive(Debug)]
pub(super) struct Gone;

/// How a send went.
#[derive(Debug)]
pub(super) enum Sent {
    Ok,
    Gone,
    Failed(String),
}

/// A way to signal one pid, opened before the identity re-check.
#[derive(Debug)]
pub(super) struct Handle {
    #[cfg(target_os = "linux")]
    pidfd: Option<rustix::fd::OwnedFd>,
}

#[cfg(target_os = "linux")]
impl Handle {
    pub(super) fn open(pid: u32) -> Result<Handle, Gone> {
        use rustix::io::Errno;
        use rustix::process::{Pid, PidfdFlags, pidfd_open};
        use std::sync::atomic::{AtomicBool, Ordering};

        /// Set once the kernel said it has no pidfd_open (before Linux 5.3).
        static NO_PIDFD: AtomicBool = AtomicBool::new(false);

        let Some(raw) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
            return Err(Gone);
        };
        if NO_PIDFD.load(Ordering::Relaxed) {
            return Ok(Handle { pidfd: None });
        }
        match pidfd_open(raw, PidfdFlags::empty()) {
            Ok(fd) => Ok(Handle { pidfd: Some(fd) }),
            Err(Errno::SRCH) => Err(Gone),
            Err(Errno::NOSYS) => {
                NO_PIDFD.store(true, Ordering::Relaxed);
                Ok(Handle { pidfd: None })
            }
            // Out of descriptors, or a sandbox that forbids it: kill(2) right
            // after the re-check, as on macOS.
            Err(_) => Ok(Handle { pidfd: None }),
        }
    }

    /// Whether this handle pins the process (a pidfd), rather than naming
    /// its pid.
    pub(super) fn is_pidfd(&self) -> bool {
        self.pidfd.is_some()
    }

    /// Whether the pinned process has exited (a pidfd turns readable then,
    /// zombie or reaped); `None` without a pidfd or if it cannot be asked.
    pub(super) fn exited(&self) -> Option<bool> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::os::fd::AsFd;

        let pidfd = self.pidfd.as_ref()?;
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(n) => Some(n > 0),
            Err(_) => None,
        }
    }

    pub(super) fn send(&self, pid: u32, sig: Sig) -> Sent {
        use rustix::io::Errno;
        use rustix::process::{Signal, pidfd_send_signal};

        let Some(pidfd) = &self.pidfd else { return kill(pid, sig) };
        let signal = match sig {
            Sig::Term => Signal::TERM,
            Sig::Stop => Signal::STOP,
            Sig::Cont => Signal::CONT,
            Sig::Kill => Signal::KILL,
        };
        match pidfd_send_signal(pidfd, signal) {
            Ok(()) => Sent::Ok,
            Err(Errno::SRCH) => Sent::Gone,
            Err(Errno::PERM) => Sent::Failed("permission denied".to_owned()),
            // No pidfd_send_signal (Linux 5.1+ has it, so this is a sandbox):
            // the identity was checked a moment ago.
            Err(Errno::NOSYS) => kill(pid, sig),
            Err(e) => Sent::Failed(e.to_string()),
        }
    }
}

#[cfg(all(unix, not(target_os = "linux")))]
impl Handle {
    pub(super) fn open(pid: u32) -> Result<Handle, Gone> {
        match i32::try_from(pid) {
            Ok(_) => Ok(Handle {}),
            Err(_) => Err(Gone),
        }
    }

    pub(super) fn is_pidfd(&self) -> bool {
        false
    }

    pub(super) fn exited(&self) -> Option<bool> {
        None
    }

    pub(super) fn send(&self, pid: u32, sig: Sig) -> Sent {
        kill(pid, sig)
    }
}

/// kill(2), for a pid whose start time was checked right before.
#[cfg(unix)]
fn kill(pid: u32, sig: Sig) -> Sent {
    use nix::errno::Errno;
    use nix::sys::signal::Signal;
    use nix::unistd::Pid;

    // Never 0 or negative: those address process groups.
    let Some(raw) = i32::try_from(pid).ok().filter(|&p| p > 0) else { return Sent::Gone };
    let signal = match sig {
        Sig::Term => Signal::SIGTERM,
        Sig::Stop => Signal::SIGSTOP,
        Sig::Cont => Signal::SIGCONT,
        Sig::Kill => Signal::SIGKILL,
    };
    match nix::sys::signal::kill(Pid::from_raw(raw), signal) {
        Ok(()) => Sent::Ok,
        Err(Errno::ESRCH) => Sent::Gone,
        Err(Errno::EPERM) => Sent::Failed("permission denied".to_owned()),
        Err(e) => Sent::Failed(e.desc().to_owned()),
    }
}

#[cfg(not(unix))]
impl Handle {
    pub(super) fn open(_pid: u32) -> Result<Handle, Gone> {
        Ok(Handle {})
    }

    pub(super) fn is_pidfd(&self) -> bool {
        false
    }

    pub(super) fn exited(&self) -> Option<bool> {
        None
    }

    pub(super) fn send(&self, _pid: u32, _sig: Sig) -> Sent {
        Sent::Failed("signals are not supported on this OS".to_owned())
    }
}
