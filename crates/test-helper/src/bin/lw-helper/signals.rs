//! SIGTERM behaviours that Leakwatch's SIGTERM → grace → SIGKILL escalation is tested
//! against: a process that dies at once (the default), one that ignores SIGTERM, and
//! one that proves it got SIGTERM by leaving a marker file and exiting 0 (optionally
//! after a clean-up that takes a while: `term-delay`).
//!
//! The marker is written from inside the signal handler with only async-signal-safe
//! calls (`open`, `write`, `close`, `rename`, `_exit`) on data prepared before the
//! handler was installed, so it works whatever the other threads are doing.

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

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
    // SAFETY: the handlers we install are SIG_DFL, SIG_IGN or `on_sigterm`, which only
    // makes async-signal-safe calls.
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

/// `term-delay MS`: the `term-marker` handler first works for MS milliseconds.
pub(crate) fn term_delay(ms: u64) {
    DELAY_MS.store(ms, Ordering::SeqCst);
}
