//! One engine per data directory. Two engines on one history would store every
//! sample and event twice and notify and auto-restart twice, so the engine that
//! starts first takes an exclusive `flock` on `engine.lock` in the data directory
//! and holds it for its lifetime; the kernel releases it when the process dies,
//! however it dies, so a crash never leaves a stale lock behind. The owner writes
//! who it is (pid, face, since when) into the file, so a second engine can name
//! the one it defers to, and `doctor` can say who owns the directory.

use crate::model::{UnixMillis, unix_millis};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The lock file's name in the data directory.
pub const LOCK_FILE: &str = "engine.lock";

/// The local API's socket's name in the data directory ([`crate::api`]).
pub const SOCKET_FILE: &str = "engine.sock";

/// The socket of the engine owning `dir`.
pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join(SOCKET_FILE)
}

/// Which of Leakwatch's programs runs an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Face {
    /// `leakwatch daemon`.
    Daemon,
    /// `leakwatch watch`.
    Watch,
    /// The menubar app.
    App,
    /// Anything else that embeds the engine (tests, the benchmark), or a face
    /// this version does not know.
    #[serde(other)]
    Other,
}

impl std::fmt::Display for Face {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Face::Daemon => "leakwatch daemon",
            Face::Watch => "leakwatch watch",
            Face::App => "the Leakwatch app",
            Face::Other => "a Leakwatch engine",
        })
    }
}

/// Who owns a data directory, as its lock file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Owner {
    pub pid: u32,
    pub face: Face,
    /// When the owner took the lock (Unix ms).
    pub since: UnixMillis,
    /// Where it serves the local API ([`crate::api`]), once its engine runs.
    #[serde(default)]
    pub socket: Option<PathBuf>,
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let since = SystemTime::UNIX_EPOCH + Duration::from_millis(self.since);
        write!(
            f,
            "{} (pid {}, since {})",
            self.face,
            self.pid,
            humantime::format_rfc3339_seconds(since)
        )
    }
}

/// Why a data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another engine holds the lock. `owner` is `None` when its lock file could
    /// not be read (it may be writing it at this very moment).
    #[error(
        "another engine already owns the data directory {}: {} (lock {}); \
         stop it first, or pass --no-store to run without history",
        dir.display(),
        owner.as_ref().map_or_else(|| "owner unknown".to_owned(), Owner::to_string),
        dir.join(LOCK_FILE).display()
    )]
    Held { dir: PathBuf, owner: Option<Owner> },
    #[error("cannot lock the data directory {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

/// The exclusive lock on a data directory, held until dropped (or the process
/// dies).
#[derive(Debug)]
pub struct DataDirLock {
    /// Kept open: the lock lives as long as this descriptor.
    file: Flock<File>,
    dir: PathBuf,
    owner: Owner,
}

impl DataDirLock {
    /// Takes the lock on `dir` (created 0700 if missing) for `face`, without
    /// waiting, and writes the owner into the lock file.
    pub fn acquire(dir: &Path, face: Face) -> Result<Self, LockError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io { path: path.clone(), source };
        create_private_dir(dir).map_err(io)?;
        // Not truncated on open: until the lock is ours, the file is the owner's.
        // std opens with O_CLOEXEC, so a restarted server never inherits the lock.
        let file = open_lock_file(&path).map_err(io)?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                return Err(LockError::Held { dir: dir.to_owned(), owner: read_owner(dir) });
            }
            Err((_, errno)) => return Err(io(std::io::Error::from(errno))),
        };
        let owner = Owner {
            pid: std::process::id(),
            face,
            since: unix_millis(SystemTime::now()),
            socket: Some(socket_path(dir)),
        };
        let text = serde_json::to_string(&owner).map_err(|e| io(std::io::Error::other(e)))?;
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.write_all(b"\n").map_err(io)?;
        Ok(Self { file, dir: dir.to_owned(), owner })
    }

    /// The locked directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Who this lock says owns the directory (this process).
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// The lock file's descriptor, for tests that check it is held.
    pub fn file(&self) -> &File {
        &self.file
    }
}

/// Who owns `dir` according to its lock file, if it names anyone. The file
/// outlives its owner (only the lock dies with it), so this is only the owner
/// while the lock is held: [`DataDirLock::acquire`] is the test of that.
pub fn read_owner(dir: &Path) -> Option<Owner> {
    // A new owner truncates, then writes: read again briefly if caught between.
    for _ in 0..5 {
        let mut text = String::new();
        let read =
            File::open(dir.join(LOCK_FILE)).and_then(|f| f.take(4096).read_to_string(&mut text));
        if read.is_err() {
            return None;
        }
        if let Ok(owner) = serde_json::from_str(&text) {
            return Some(owner);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn open_lock_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_on_one_data_dir_is_refused_naming_the_owner() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path(), Face::Daemon).unwrap();
        let Err(error) = DataDirLock::acquire(dir.path(), Face::Watch) else {
            panic!("a second lock on one data directory was granted")
        };
        let LockError::Held { owner: Some(owner), .. } = &error else { panic!("{error}") };
        assert_eq!(owner, first.owner());
        let message = error.to_string();
        assert!(message.contains("leakwatch daemon"), "{message}");
        assert!(message.contains(&format!("pid {}", std::process::id())), "{message}");
        assert!(message.contains("since "), "{message}");
        drop(first);
        let second = DataDirLock::acquire(dir.path(), Face::Watch).unwrap();
        assert_eq!(read_owner(dir.path()).unwrap().face, Face::Watch);
        drop(second);
    }

    #[test]
    fn lock_file_and_new_data_dir_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("data");
        let _lock = DataDirLock::acquire(&dir, Face::Other).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(LOCK_FILE)), 0o600);
    }

    #[test]
    fn unknown_face_in_lock_file_reads_as_other() {
        let owner: Owner =
            serde_json::from_str(r#"{"pid":7,"face":"future_face","since":0}"#).unwrap();
        assert_eq!(owner.face, Face::Other);
    }
}
