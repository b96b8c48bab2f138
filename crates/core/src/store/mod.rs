//! The engine's memory: sample history per target series, the event log and the
//! forensic snapshots taken before restarts, in one SQLite file in the platform's
//! data directory.
//!
//! It exists so that what leakwatch saw outlives both the watched process and
//! leakwatch itself: the trend needs hours of samples to fit a slope, `leakwatch
//! history` reads the same numbers the daemon recorded, and the FD table of a
//! process that was restarted is the evidence of its leak.
//!
//! Three promises shape the code:
//! - **Durability against SIGKILL.** The engine writes one transaction per tick
//!   ([`Store::record_samples`]) into a WAL-mode database; a committed transaction
//!   is in the operating system's hands, so killing the engine loses at most the
//!   tick in flight, never half of one.
//! - **No crash loop.** A database that is not SQLite, fails `quick_check`, or has a
//!   schema this build cannot migrate is moved aside (`<name>.corrupt-<unix secs>`,
//!   with its `-wal` and `-shm`) and a fresh one is started; [`Opened`] tells the
//!   caller so it can say what happened.
//! - **Bounded size.** [`Store::prune`] keeps full resolution for a day, one sample
//!   per minute for a week, one per hour up to 90 days, and nothing older
//!   ([`Retention`]); the file is created with `auto_vacuum=INCREMENTAL` so freed
//!   pages are given back to the file system.

//!
//! Layout: this file holds the types and the connection helpers; `schema`
//! creates, migrates, checks and opens the database, `write` records what the
//! engine sees, `read` answers the faces, `prune` keeps the file bounded.

mod prune;
mod read;
mod schema;
mod write;

use schema::is_corruption_code;

use crate::model::{Event, Sample, SeriesKey, UnixMillis};
use leakwatch_probe::{FdKind, ProcessId, StartTime};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a reader or writer waits for the other's lock before giving up: a
/// `leakwatch history` reading while the daemon commits a tick, or the other way
/// round. Ticks are milliseconds of work, so a few seconds is generous.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The WAL file is truncated back to this size after a checkpoint, so one large
/// transaction (a prune) does not leave a large WAL behind for good.
const JOURNAL_SIZE_LIMIT: i64 = 8 * 1024 * 1024;

/// Sample resolutions, as stored in `samples.resolution`.
const RES_RAW: i64 = 0;

const RES_MINUTE: i64 = 1;

const RES_HOUR: i64 = 2;

const MINUTE_MS: u64 = 60_000;

const HOUR_MS: u64 = 3_600_000;

/// What was being done when a store operation failed.
type Doing = &'static str;

/// A store failure: what was being done, on which database file, and why.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    // Each message includes its cause, so the cause is not also the error's
    // `source()`: printed with its chain (`{:#}`) it would be said twice.
    /// SQLite refused (I/O error, disk full, lock timeout, corruption found late).
    #[error("history database {}: {doing}: {cause}", path.display())]
    Sqlite { path: PathBuf, doing: Doing, cause: rusqlite::Error },
    /// A JSON column (argv, kinds, snapshot body) could not be written or read.
    #[error("history database {}: {doing}: malformed JSON: {cause}", path.display())]
    Json { path: PathBuf, doing: Doing, cause: serde_json::Error },
    /// A file-system operation around the database failed; `path` is the file or
    /// directory concerned.
    #[error("history database: {doing} {}: {cause}", path.display())]
    Io { path: PathBuf, doing: Doing, cause: io::Error },
    /// The database is damaged. [`Store::open`] moves such a file aside instead of
    /// returning this; it reaches callers of [`Store::open_read_only`], and of a
    /// freshly created database that is damaged at once (a failing disk).
    #[error("history database {} is corrupt: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    /// The schema version is not the one this build reads; only a read-only open
    /// reports this (a writable open migrates, or moves a newer database aside).
    #[error(
        "history database {} has schema version {found}, this Leakwatch reads version {expected}",
        path.display()
    )]
    Schema { path: PathBuf, found: i64, expected: i64 },
}

impl StoreError {
    /// Whether the error means the database file is damaged, so that reopening
    /// with [`Store::open`] (which moves it aside) is the way out.
    pub fn is_corruption(&self) -> bool {
        match self {
            StoreError::Corrupt { .. } => true,
            StoreError::Sqlite { cause, .. } => is_corruption_code(cause),
            _ => false,
        }
    }
}

/// The id of one series (one process identity of one target) in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SeriesId(pub i64);

impl fmt::Display for SeriesId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One stored series: a target as matched by one process, from when it was first
/// seen until it ended (`None` while it is still being watched).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesInfo {
    pub id: SeriesId,
    pub target: String,
    pub process: ProcessId,
    pub name: String,
    pub argv: Vec<String>,
    pub started_at: UnixMillis,
    pub ended_at: Option<UnixMillis>,
}

/// A forensic snapshot: what a process looked like (FD table, tree, RSS — the
/// `body` is whatever the engine captured) just before leakwatch acted on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub at: UnixMillis,
    pub target: String,
    pub process: ProcessId,
    /// Why it was taken: "restart: fds above 90% of limit", say.
    pub reason: String,
    pub body: serde_json::Value,
}

/// How long history is kept, and at which resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Samples younger than this are kept as recorded (default 24 h).
    pub full_resolution: Duration,
    /// Older samples are kept one per minute until this age (default 7 days), then
    /// one per hour.
    pub minute_resolution: Duration,
    /// Samples, events and snapshots older than this are deleted (default 90 days).
    pub keep: Duration,
    /// At most this many snapshots are kept per target, newest first (default 50):
    /// a target in a restart loop must not fill the disk with FD tables.
    pub snapshots_per_target: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            full_resolution: Duration::from_secs(24 * 3600),
            minute_resolution: Duration::from_secs(7 * 24 * 3600),
            keep: Duration::from_secs(90 * 24 * 3600),
            snapshots_per_target: 50,
        }
    }
}

/// What one [`Store::prune`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneReport {
    /// Samples merged away into minute buckets.
    pub downsampled_to_minutes: u64,
    /// Samples merged away into hour buckets.
    pub downsampled_to_hours: u64,
    /// Samples older than [`Retention::keep`] deleted.
    pub samples_expired: u64,
    pub events_expired: u64,
    /// Snapshots deleted for age or beyond [`Retention::snapshots_per_target`].
    pub snapshots_expired: u64,
    /// Series deleted because they had ended (or expired) with no samples left.
    pub series_deleted: u64,
    /// [`Store::size_bytes`] before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// The result of [`Store::open`].
#[derive(Debug)]
pub struct Opened {
    pub store: Store,
    /// Where the previous, unusable database was moved, when it was.
    pub moved_aside: Option<PathBuf>,
    /// Why it was unusable ("file is not a database", the `quick_check` report, a
    /// newer schema), when it was moved aside.
    pub reason: Option<String>,
    /// The data directory or database files that other users could read, now
    /// tightened to owner-only: one sentence each, to log.
    pub permissions_fixed: Vec<String>,
}

impl Opened {
    /// The sentence to log when the database was moved aside, `None` otherwise.
    pub fn message(&self) -> Option<String> {
        let moved = self.moved_aside.as_ref()?;
        let path = self.store.path().map_or_else(String::new, |p| p.display().to_string());
        let reason = self.reason.as_deref().unwrap_or("unusable");
        Some(format!(
            "the history database {path} could not be used ({reason}); it was moved to {} \
             and a new, empty history was started",
            moved.display()
        ))
    }
}

/// The history store. Every method is synchronous; the engine calls them from a
/// blocking thread. One connection behind a mutex, so a `Store` can be shared
/// (`Arc<Store>`) between the tick loop and whoever answers queries.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
    path: Option<PathBuf>,
    retention: Retention,
}

/// Why a first attempt to open failed: a damaged file (move it aside) or anything
/// else (report it; moving a file aside over a permission problem would lose
/// history for nothing).
enum OpenFailure {
    Unusable(String),
    Error(StoreError),
}

/// An error inside an operation, before it is given its context.
enum Fault {
    Sqlite(rusqlite::Error),
    Json(serde_json::Error),
}

impl From<rusqlite::Error> for Fault {
    fn from(e: rusqlite::Error) -> Self {
        Fault::Sqlite(e)
    }
}

impl From<serde_json::Error> for Fault {
    fn from(e: serde_json::Error) -> Self {
        Fault::Json(e)
    }
}

impl Fault {
    fn into_error(self, path: &Path, doing: Doing) -> StoreError {
        let path = path.to_path_buf();
        match self {
            Fault::Sqlite(cause) => StoreError::Sqlite { path, doing, cause },
            Fault::Json(cause) => StoreError::Json { path, doing, cause },
        }
    }
}

impl Store {
    /// The database file; `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock was held cannot leave a half-done write: an
        // unfinished rusqlite transaction rolls back when dropped.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the connection and gives any failure its context.
    fn run<T>(
        &self,
        doing: Doing,
        f: impl FnOnce(&mut Connection) -> Result<T, Fault>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        f(&mut conn).map_err(|fault| {
            fault.into_error(self.path.as_deref().unwrap_or(Path::new(":memory:")), doing)
        })
    }
}

/// The serde name of a unit enum variant (`EventKind::SeriesStarted` →
/// `series_started`), so the database holds the same names as the JSON output.
fn enum_name<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    match serde_json::to_value(value)? {
        serde_json::Value::String(name) => Ok(name),
        other => Ok(other.to_string()),
    }
}

fn enum_from_name<T: DeserializeOwned>(name: String) -> Result<T, serde_json::Error> {
    serde_json::from_value(serde_json::Value::String(name))
}

/// Parses a `kinds` column. A kind name this build does not know (written by a
/// newer one) is counted as `other`, so the kinds still add up to the total.
fn kinds_from_json(json: &str) -> Result<BTreeMap<FdKind, u64>, serde_json::Error> {
    let raw: BTreeMap<String, u64> = serde_json::from_str(json)?;
    let mut kinds = BTreeMap::new();
    for (name, n) in raw {
        *kinds.entry(FdKind::from_name(&name).unwrap_or(FdKind::Other)).or_insert(0) += n;
    }
    Ok(kinds)
}

/// SQLite integers are signed; counts and times beyond `i64::MAX` do not occur,
/// and saturating keeps a freak value from failing a whole tick's transaction.
fn to_db(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn from_db(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn pid_from_db(value: i64) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

/// A start time is an identity, compared for equality only: stored bit for bit so
/// that every `u64` round-trips.
fn start_time_to_db(start: StartTime) -> i64 {
    i64::from_ne_bytes(start.0.to_ne_bytes())
}

fn start_time_from_db(value: i64) -> StartTime {
    StartTime(u64::from_ne_bytes(value.to_ne_bytes()))
}

fn count(rows: usize) -> u64 {
    u64::try_from(rows).unwrap_or(u64::MAX)
}

/// A `file:` URI opening `path` read-only and `immutable` (see
/// [`Store::open_read_only`]), every byte outside the unreserved set
/// percent-encoded so that `?`, `#` or `%` in a path cannot be read as URI syntax.
fn immutable_uri(path: &Path) -> String {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut uri = String::from("file:");
    for byte in path.as_os_str().as_encoded_bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'.' | b'_' | b'~' | b'-' => {
                uri.push(char::from(*byte));
            }
            _ => uri.push_str(&format!("%{byte:02X}")),
        }
    }
    uri.push_str("?mode=ro&immutable=1");
    uri
}

/// `path` with `suffix` appended to its file name (`x.db` → `x.db-wal`).
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests;
