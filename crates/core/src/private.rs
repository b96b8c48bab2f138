//! Owner-only files and directories.
//!
//! The history holds descriptor paths and argv of the user's processes (tokens in
//! command lines, key files in paths): things the kernel hides from other users,
//! which a 0755 directory and a 0644 database would hand back to them. So every
//! directory Leakwatch creates for its data or config is 0700, every file it
//! writes there (the database and its `-wal`/`-shm`, the config `config init`
//! writes, a restart's `log`) is 0600, and ones found looser are tightened, with
//! a message saying so for the caller to log.
//!
//! Elsewhere than on Unix there are no mode bits; the functions create and open
//! plainly and never report anything tightened.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

/// The mode of directories Leakwatch keeps its data or config in.
pub const DIR_MODE: u32 = 0o700;
/// The mode of files Leakwatch writes there.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) with [`DIR_MODE`]. Parents that already
/// exist are left alone (they are the user's, `~/.config` say); `dir` itself, if
/// it exists with group or other bits, is tightened and a message returned.
pub fn create_dir(dir: &Path) -> io::Result<Option<String>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        let existed = dir.is_dir();
        fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)?;
        if existed {
            return tighten(dir, DIR_MODE);
        }
        // The umask may have taken bits away, never added any: 0700 or less.
        Ok(None)
    }
    #[cfg(not(unix))]
    {
        fs::create_dir_all(dir)?;
        Ok(None)
    }
}

/// Tightens an existing `path` to [`FILE_MODE`] when it has group or other bits;
/// a missing file is no error. Returns the message to log when it changed it.
pub fn secure_file(path: &Path) -> io::Result<Option<String>> {
    match tighten(path, FILE_MODE) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        other => other,
    }
}

/// Opens `path` for appending, creating it [`FILE_MODE`] if missing.
pub fn open_append(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(FILE_MODE);
    }
    options.open(path)
}

/// Creates `path` empty with [`FILE_MODE`] if it does not exist; an existing
/// file is left as it is. Used before SQLite opens a database so the file (and
/// the `-wal`/`-shm` SQLite gives the same mode) is born private.
pub fn touch(path: &Path) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(FILE_MODE);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes `contents` to `path` (replacing it) with [`FILE_MODE`], tightening a
/// file that was looser. Through a temporary file and a rename, so a reader never
/// sees half a file.
pub fn write(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    let tmp = std::path::PathBuf::from(name);
    let _ = fs::remove_file(&tmp);
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(FILE_MODE);
    }
    let result = options.open(&tmp).and_then(|mut file| {
        io::Write::write_all(&mut file, contents)?;
        file.sync_all()
    });
    let result = result.and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(unix)]
fn tighten(path: &Path, mode: u32) -> io::Result<Option<String>> {
    use std::os::unix::fs::PermissionsExt;
    // symlink_metadata: a symlink's own mode means nothing, and following it to
    // chmod a file elsewhere is not ours to do.
    let meta = fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(None);
    }
    let was = meta.permissions().mode() & 0o7777;
    if was & 0o077 == 0 {
        return Ok(None);
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    Ok(Some(format!(
        "{} was readable by other users (mode {was:04o}); it is now {mode:04o}",
        path.display()
    )))
}

#[cfg(not(unix))]
fn tighten(path: &Path, _mode: u32) -> io::Result<Option<String>> {
    fs::symlink_metadata(path).map(|_| None)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o7777
    }

    #[test]
    fn created_directories_are_owner_only_and_loose_ones_are_tightened() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("a/leakwatch");
        assert_eq!(create_dir(&dir).expect("create"), None);
        assert_eq!(mode(&dir), DIR_MODE);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        let message = create_dir(&dir).expect("create").expect("tightened");
        assert!(message.contains("0755") && message.contains("0700"), "{message}");
        assert_eq!(mode(&dir), DIR_MODE);
        assert_eq!(create_dir(&dir).expect("create"), None, "already private");
    }

    #[test]
    fn written_and_appended_files_are_owner_only() {
        let root = tempfile::tempdir().expect("tempdir");
        let file = root.path().join("config.toml");
        fs::write(&file, b"old").expect("write");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).expect("chmod");
        write(&file, b"new").expect("write");
        assert_eq!(fs::read(&file).expect("read"), b"new");
        assert_eq!(mode(&file), FILE_MODE);

        let log = root.path().join("restart.log");
        drop(open_append(&log).expect("open"));
        assert_eq!(mode(&log), FILE_MODE);

        let db = root.path().join("history.sqlite3");
        touch(&db).expect("touch");
        assert_eq!(mode(&db), FILE_MODE);
        fs::set_permissions(&db, fs::Permissions::from_mode(0o664)).expect("chmod");
        assert!(secure_file(&db).expect("secure").is_some());
        assert_eq!(mode(&db), FILE_MODE);
        assert_eq!(secure_file(&root.path().join("missing")).expect("missing"), None);
    }
}
