//! SIGTERM behaviours that Leakwatch's SIGTERM → grace → SIGKILL escalation is tested
//! against: a process that dies at once (the default), one that ignores SIGTERM,
//! one that proves it got SIGTERM by leaving a marker file and exiting 0 (optionally
//! after a clean-up that takes a while: `term-delay`), and one that outlives every
//! SIGTERM but logs when each came (`term-log`), so a test can check the
//! escalation's steps rather than its total time.
//!
//! The marker and the log are written from inside the signal handler with only
//! async-signal-safe calls (`open`, `write`, `close`, `rename`, `clock_gettime`,
//! `_exit`) on data prepared before the handler was installed, so it works whatever
//! the other threads are doing.

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU64, Ordering};

/// What the SIGTERM handler writes, prepared ahead so the handler only copies bytes.
struct Marker {
    tmp: CString,
    path: CString,
    content: Vec<u8>,
}

/// The marker of the last `term-marker` command. Each one is leaked on purpose: the
/// handler may be reading the previous one while a new one is installed.
static MARKER: AtomicPtr<Marker> = AtomicPtr::new(ptr::null_mut());

/// How long the `term-marker` handler works (sleeps) before it writes the marker
/// and exits: a process whose clean-up takes time. Set by `term-delay MS`.
static DELAY_MS: AtomicU64 = AtomicU64::new(0);

/// The descriptor `term-log` appends to (-1: none).
static LOG_FD: AtomicI32 = AtomicI32::new(-1);

/// `term-log`'s handler: appends `term <CLOCK_MONOTONIC in ns>` and returns.
extern "C" fn on_sigterm_log(_signal: libc::c_int) {
    // A handler must leave errno as it found it: the interrupted code may read it.
    let saved = nix::errno::Errno::last_raw();
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime is async-signal-safe and writes only the struct we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let nanos = u64::try_from(now.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(now.tv_nsec).unwrap_or(0));
    let mut line = [0u8; 32];
    let len = log_line(nanos, &mut line);
    let fd = LOG_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: write is async-signal-safe; the buffer is valid for `len` bytes.
        unsafe { libc::write(fd, line.as_ptr().cast(), len) };
    }
    nix::errno::Errno::set_raw(saved);
}

/// Writes `term <nanos>\n` into `out` without allocating (a signal handler may
/// not), returning its length.
fn log_line(nanos: u64, out: &mut [u8; 32]) -> usize {
    let mut digits = [0u8; 20];
    let mut n = nanos;
    let mut count = 0;
    loop {
        digits[count] = b'0' + (n % 10) as u8;
        count += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out[..5].copy_from_slice(b"term ");
    for i in 0..count {
        out[5 + i] = digits[count - 1 - i];
    }
    out[5 + count] = b'\n';
    6 + count
}

extern "C" fn on_sigterm(_signal: libc::c_int) {
    let delay = DELAY_MS.load(Ordering::SeqCst);
    if delay > 0 {
        let nap = libc::timespec {
            tv_sec: libc::time_t::try_from(delay / 1000).unwrap_or(libc::time_t::MAX),
            tv_nsec: libc::c_long::try_from(delay % 1000 * 1_000_000).unwrap_or(0),
        };
        // SAFETY: nanosleep is async-signal-safe and only reads the struct we pass;
        // an early wake-up by another signal just shortens the clean-up.
        unsafe { libc::nanosleep(&nap, ptr::null_mut()) };
    }
    let marker = MARKER.load(Ordering::SeqCst);
    if !marker.is_null() {
        // SAFETY: MARKER only ever holds pointers from `Box::leak`, never freed.
        let m = unsafe { &*marker };
        // SAFETY: open/write/close/rename are async-signal-safe; the strings are
        // NUL-terminated and the buffer is valid for its length, all for the life of
        // the process.
        unsafe {
            let fd = libc::open(
                m.tmp.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                0o644 as libc::c_uint,
            );
            if fd >= 0 {
                libc::write(fd, m.content.as_ptr().cast(), m.content.len());
                libc::close(fd);
                libc::rename(m.tmp.as_ptr(), m.path.as_ptr());
            }
        }
    }
    // SAFETY: _exit is async-signal-safe and ends the process without running any
    // user-space code that could deadlock.
    unsafe { libc::_exit(0) }
}

fn set(handler: SigHandler) -> Result<(), String> {
    let action = SigAction::new(handler, SaFlags::SA_RESTART, SigSet::empty());
    // SAFETY: the handlers we install are SIG_DFL, SIG_IGN, `on_sigterm` or
    // `on_sigterm_log`, which only make async-signal-safe calls.
    unsafe { sigaction(Signal::SIGTERM, &action) }.map(drop).map_err(|e| format!("sigaction: {e}"))
}

/// SIGTERM back to its default. Run at startup: SIG_IGN is inherited across
/// fork and exec, and each helper's reaction should be only what it was told.
pub(crate) fn default_term() -> Result<(), String> {
    set(SigHandler::SigDfl)
}

/// `ignore-term`.
pub(crate) fn ignore_term() -> Result<(), String> {
    set(SigHandler::SigIgn)
}

/// `term-marker PATH`: on SIGTERM write `terminated <pid>` to PATH and exit 0.
pub(crate) fn term_marker(path: &Path) -> Result<(), String> {
    let pid = std::process::id();
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{pid}"));
    let cstr = |bytes: &[u8]| CString::new(bytes).map_err(|_| "path contains NUL".to_owned());
    let marker = Marker {
        tmp: cstr(tmp.as_bytes())?,
        path: cstr(path.as_os_str().as_bytes())?,
        content: format!("terminated {pid}\n").into_bytes(),
    };
    MARKER.store(Box::leak(Box::new(marker)), Ordering::SeqCst);
    set(SigHandler::Handler(on_sigterm))
}

/// `term-log PATH`: on each SIGTERM append `term <ns>` (CLOCK_MONOTONIC, the clock
/// of Rust's `Instant` on Linux and macOS) to PATH, and keep running.
pub(crate) fn term_log(path: &Path) -> Result<(), String> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    // Kept open for the life of the process (the handler may be writing to the
    // previous one while a new one is set: that one is leaked too).
    LOG_FD.store(std::os::fd::IntoRawFd::into_raw_fd(file), Ordering::SeqCst);
    set(SigHandler::Handler(on_sigterm_log))
}

/// `term-delay MS`: the `term-marker` handler first works for MS milliseconds.
pub(crate) fn term_delay(ms: u64) {
    DELAY_MS.store(ms, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_lines_carry_the_whole_number() {
        let mut out = [0u8; 32];
        let len = super::log_line(0, &mut out);
        assert_eq!(&out[..len], b"term 0\n");
        let len = super::log_line(u64::MAX, &mut out);
        assert_eq!(&out[..len], format!("term {}\n", u64::MAX).as_bytes());
    }
}
