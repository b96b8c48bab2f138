//! The macOS backend. macOS has no `/proc`: what `ps`, `lsof` and Activity Monitor
//! show comes from libproc and from `sysctl(3)`.
//!
//! It is split in two so that what matters can be tested without a Mac:
//! `decide` holds every decision (fallbacks on EPERM, EIO, ENOMEM and ESRCH,
//! zombies, growing tables, limit sources) over a small trait of raw calls,
//! `MacSys`, and is compiled and unit-tested on every OS against a fake that
//! answers as XNU does; `sys` makes those raw calls with libproc and `sysctl` and
//! exists only on macOS.

mod decide;
#[cfg(target_os = "macos")]
mod sys;

/// The backend `Probe` uses on macOS.
#[cfg(target_os = "macos")]
pub(crate) type Os = decide::Mac<sys::Libproc>;
