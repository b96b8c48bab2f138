//! Names for the shared-memory objects `lw-helper` opens (`open shm`), and the sweep
//! that removes those a SIGKILLed helper could not remove itself. Shared between the
//! binary (which creates them) and [`crate::Helper`] (which sweeps after its drop).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// File names under /dev/shm start with this, then `<pid>-<n>`.
pub const PREFIX: &str = "lw-helper-";

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A fresh /dev/shm path for this process (Linux).
pub fn new_path() -> PathBuf {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    PathBuf::from(format!("/dev/shm/{PREFIX}{}-{n}", std::process::id()))
}

/// A fresh POSIX shm name for this process (macOS: at most 31 bytes).
pub fn new_posix_name() -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("/lwh-{}-{n}", std::process::id())
}

/// Removes /dev/shm files of helpers that no longer run. Best effort, never fails.
pub fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir("/dev/shm") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !PathBuf::from(format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
