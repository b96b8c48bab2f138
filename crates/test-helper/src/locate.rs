//! Finding the `lw-helper` binary from another crate's tests.
//!
//! Cargo gives `CARGO_BIN_EXE_lw-helper` only to this crate's own tests, and a
//! dev-dependency on this crate builds its library, not its binary. So we look where
//! Cargo puts binaries, next to the running test executable (tests live in
//! `<target>/[<triple>/]<profile>/deps/`, binaries in `<target>/[<triple>/]<profile>/`),
//! and when the binary is missing or older than this crate's sources we build it with
//! the same cargo, target directory, profile and target triple. The location comes
//! from the test executable's own path, so `CARGO_TARGET_DIR` and `--target-dir` just
//! work. `LW_HELPER_BIN` overrides all of this.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

/// Environment variable naming an `lw-helper` binary to use as is.
pub const OVERRIDE_ENV: &str = "LW_HELPER_BIN";

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

fn bin_name() -> String {
    format!("lw-helper{}", std::env::consts::EXE_SUFFIX)
}

/// Where Cargo put the running executable.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layout {
    target_dir: PathBuf,
    triple: Option<OsString>,
    profile_dir: OsString,
}

impl Layout {
    fn bin_dir(&self) -> PathBuf {
        let mut dir = self.target_dir.clone();
        if let Some(t) = &self.triple {
            dir.push(t);
        }
        dir.push(&self.profile_dir);
        dir
    }

    /// Reads `<target>/[<triple>/]<profile>/[deps|examples/]<exe>`. The target
    /// directory is recognised by the CACHEDIR.TAG Cargo writes into it.
    fn of_exe(exe: &Path) -> Option<Layout> {
        let mut dir = exe.parent()?;
        if matches!(dir.file_name()?.to_str(), Some("deps" | "examples")) {
            dir = dir.parent()?;
        }
        let profile_dir = dir.file_name()?.to_owned();
        let above = dir.parent()?;
        let is_target = |p: &Path| p.join("CACHEDIR.TAG").is_file();
        let looks_like_triple =
            above.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.matches('-').count() >= 2);
        if looks_like_triple && above.parent().is_some_and(is_target) {
            return Some(Layout {
                target_dir: above.parent()?.to_path_buf(),
                triple: Some(above.file_name()?.to_owned()),
                profile_dir,
            });
        }
        if is_target(above) {
            return Some(Layout { target_dir: above.to_path_buf(), triple: None, profile_dir });
        }
        None
    }

    /// No recognisable layout: `CARGO_TARGET_DIR` or the workspace's `target/`, dev
    /// profile.
    fn fallback() -> Layout {
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(MANIFEST_DIR).join("../../target"));
        Layout { target_dir, triple: None, profile_dir: "debug".into() }
    }

    fn build(&self) -> io::Result<()> {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
        let mut cmd = Command::new(cargo);
        cmd.arg("build")
            .arg("--manifest-path")
            .arg(Path::new(MANIFEST_DIR).join("Cargo.toml"))
            .args(["-p", "leakwatch-test-helper", "--bin", "lw-helper"])
            .arg("--target-dir")
            .arg(&self.target_dir);
        match self.profile_dir.to_str() {
            Some("debug") => {}
            Some("release") => {
                cmd.arg("--release");
            }
            _ => {
                cmd.arg("--profile").arg(&self.profile_dir);
            }
        }
        if let Some(t) = &self.triple {
            cmd.arg("--target").arg(t);
        }
        eprintln!("leakwatch-test-helper: building lw-helper into {}", self.bin_dir().display());
        let status = cmd.status()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!("`{cmd:?}` failed: {status}")))
        }
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    path.metadata().and_then(|m| m.modified()).ok()
}

/// The newest modification time among this crate's manifest and sources, when they
/// are still on disk (they may not be, for a test binary run elsewhere).
fn newest_source() -> Option<SystemTime> {
    fn walk(dir: &Path, newest: &mut Option<SystemTime>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, newest);
            } else if let Some(t) = modified(&path) {
                *newest = (*newest).max(Some(t));
            }
        }
    }
    let root = Path::new(MANIFEST_DIR);
    let mut newest = modified(&root.join("Cargo.toml"));
    walk(&root.join("src"), &mut newest);
    newest
}

fn is_fresh(bin: &Path) -> bool {
    match (modified(bin), newest_source()) {
        (Some(bin), Some(src)) => bin >= src,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

fn locate() -> io::Result<PathBuf> {
    for var in [OVERRIDE_ENV, "CARGO_BIN_EXE_lw-helper"] {
        if let Some(p) = std::env::var_os(var).map(PathBuf::from)
            && p.is_file()
        {
            return Ok(p);
        }
    }
    let layout = std::env::current_exe()
        .ok()
        .and_then(|exe| Layout::of_exe(&exe))
        .unwrap_or_else(Layout::fallback);
    let bin = layout.bin_dir().join(bin_name());
    if bin.is_file() && is_fresh(&bin) {
        return Ok(bin);
    }
    match layout.build() {
        Ok(()) if bin.is_file() => Ok(bin),
        Ok(()) => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("built lw-helper but found no {}", bin.display()),
        )),
        // A binary that may be stale beats none (no cargo where the tests run).
        Err(e) if bin.is_file() => {
            eprintln!("leakwatch-test-helper: using {} as is: {e}", bin.display());
            Ok(bin)
        }
        Err(e) => Err(e),
    }
}

/// Like [`helper_binary`](crate::helper_binary), but says why it failed.
pub fn try_helper_binary() -> io::Result<PathBuf> {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FOUND
        .get_or_init(|| locate().map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| io::Error::new(io::ErrorKind::NotFound, format!("lw-helper: {e}")))
}

/// The path of the `lw-helper` binary, building it first if it is missing or stale.
/// If it cannot be found or built, returns where it should be (and says why on
/// stderr), so that spawning it fails with a clear "not found".
pub fn helper_binary() -> PathBuf {
    try_helper_binary().unwrap_or_else(|e| {
        eprintln!("leakwatch-test-helper: {e}");
        std::env::current_exe()
            .ok()
            .and_then(|exe| Layout::of_exe(&exe))
            .unwrap_or_else(Layout::fallback)
            .bin_dir()
            .join(bin_name())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts() {
        let root = std::env::temp_dir().join(format!("lw-locate-{}", std::process::id()));
        let target = root.join("tgt");
        std::fs::create_dir_all(target.join("aarch64-apple-darwin/release/deps")).unwrap();
        std::fs::write(target.join("CACHEDIR.TAG"), "").unwrap();

        let plain = Layout::of_exe(&target.join("debug/deps/probe-abc123")).unwrap();
        assert_eq!(plain.target_dir, target);
        assert_eq!(plain.triple, None);
        assert_eq!(plain.bin_dir(), target.join("debug"));

        let cross = Layout::of_exe(&target.join("aarch64-apple-darwin/release/deps/x-1")).unwrap();
        assert_eq!(cross.target_dir, target);
        assert_eq!(cross.triple, Some("aarch64-apple-darwin".into()));
        assert_eq!(cross.bin_dir(), target.join("aarch64-apple-darwin/release"));

        let custom = Layout::of_exe(&target.join("bench-prof/examples/e")).unwrap();
        assert_eq!(custom.profile_dir, "bench-prof");

        assert_eq!(Layout::of_exe(&root.join("elsewhere/bin/x")), None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
