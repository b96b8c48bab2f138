//! The database's schema and its migrations, and opening a database: the
//! connection settings, the integrity check, and moving a damaged file aside so
//! the engine never crash-loops on it.

use super::*;

/// The schema version this build writes (`PRAGMA user_version`). [`MIGRATIONS`]
/// takes a database from any older version to this one.
pub(super) const SCHEMA_VERSION: i64 = 1;

/// `MIGRATIONS[n]` takes the schema from version `n` to `n + 1`; each runs in one
/// transaction together with the `user_version` bump, so a migration interrupted
/// by a kill is simply run again.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [
    // Version 1. Integer times are UnixMillis. `start_time` is the probe's
    // StartTime bit for bit (it is only ever compared for equality).
    "CREATE TABLE series (
        id          INTEGER PRIMARY KEY,
        target      TEXT    NOT NULL,
        pid         INTEGER NOT NULL,
        start_time  INTEGER NOT NULL,
        name        TEXT    NOT NULL,
        argv        TEXT    NOT NULL,   -- JSON array of strings
        started_at  INTEGER NOT NULL,
        ended_at    INTEGER NULL
    );
    CREATE INDEX series_identity ON series (target, pid, start_time);

    CREATE TABLE samples (
        series_id   INTEGER NOT NULL REFERENCES series (id) ON DELETE CASCADE,
        at          INTEGER NOT NULL,
        resolution  INTEGER NOT NULL DEFAULT 0,  -- 0 raw, 1 minute, 2 hour
        total       INTEGER NOT NULL,
        fd_limit    INTEGER,
        rss_bytes   INTEGER,
        cpu_seconds REAL,
        threads     INTEGER,
        descendants INTEGER NOT NULL DEFAULT 0,
        kinds       TEXT    NOT NULL DEFAULT '{}'  -- JSON object kind -> count
    );
    CREATE INDEX samples_series_at ON samples (series_id, at);

    CREATE TABLE events (
        id       INTEGER PRIMARY KEY,
        at       INTEGER NOT NULL,
        target   TEXT    NOT NULL,
        pid      INTEGER,
        kind     TEXT    NOT NULL,
        rule     TEXT,
        severity TEXT    NOT NULL,
        value    REAL,
        message  TEXT    NOT NULL
    );
    CREATE INDEX events_target_at ON events (target, at);
    -- `events(None, since)` and retention read by time alone.
    CREATE INDEX events_at ON events (at);

    CREATE TABLE snapshots (
        id         INTEGER PRIMARY KEY,
        at         INTEGER NOT NULL,
        target     TEXT    NOT NULL,
        pid        INTEGER NOT NULL,
        start_time INTEGER NOT NULL,
        reason     TEXT    NOT NULL,
        body       TEXT    NOT NULL   -- JSON
    );
    CREATE INDEX snapshots_target_at ON snapshots (target, at);",
];

impl Store {
    /// Opens (creating it and its directory if need be) the database at `path`,
    /// migrating its schema. A damaged or unmigratable file is moved aside and a
    /// new database created; [`Opened::moved_aside`] says so. Only errors that a
    /// new file would not cure (permissions, a full disk) are returned.
    pub fn open(path: &Path) -> Result<Opened, StoreError> {
        let mut permissions_fixed = Vec::new();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            permissions_fixed.extend(crate::private::create_dir(dir).map_err(|source| {
                StoreError::Io {
                    path: dir.to_path_buf(),
                    doing: "creating the data directory",
                    cause: source,
                }
            })?);
        }
        // The history holds argv and descriptor paths: owner-only, like the
        // directory. SQLite gives the `-wal` and `-shm` the database's mode.
        for file in [path.to_path_buf(), with_suffix(path, "-wal"), with_suffix(path, "-shm")] {
            permissions_fixed.extend(crate::private::secure_file(&file).map_err(|source| {
                StoreError::Io { path: file.clone(), doing: "making private", cause: source }
            })?);
        }
        match Self::try_open(path) {
            Ok(store) => Ok(Opened { store, moved_aside: None, reason: None, permissions_fixed }),
            Err(OpenFailure::Error(e)) => Err(e),
            Err(OpenFailure::Unusable(reason)) => {
                let moved = move_aside(path)?;
                // One attempt only: if a brand-new file is unusable too, the disk
                // is the problem, and retrying would be the crash loop we avoid.
                let store = Self::try_open(path).map_err(|failure| match failure {
                    OpenFailure::Error(e) => e,
                    OpenFailure::Unusable(reason) => {
                        StoreError::Corrupt { path: path.to_path_buf(), reason }
                    }
                })?;
                Ok(Opened {
                    store,
                    moved_aside: Some(moved),
                    reason: Some(reason),
                    permissions_fixed,
                })
            }
        }
    }

    /// Opens an existing database for reading only, alongside a daemon that writes
    /// it: for `leakwatch history` and `doctor`. It never migrates, checks or moves
    /// anything — that is the writer's business — so a reader cannot pull the file
    /// from under the daemon.
    ///
    /// History on read-only media (a backup disk, a read-only mount of another
    /// machine's data) cannot get the `-shm` a WAL reader needs; it is then opened
    /// `immutable`, which reads the file as it stands, with no locks and no WAL.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        match Self::open_reader(path, false) {
            Err(error) if !error.is_corruption() && !matches!(error, StoreError::Schema { .. }) => {
                // Only a file that is there but cannot be shared for reading is
                // retried; with nothing to read, the first error says so best.
                if path.is_file() {
                    Self::open_reader(path, true).map_err(|_| error)
                } else {
                    Err(error)
                }
            }
            other => other,
        }
    }

    fn open_reader(path: &Path, immutable: bool) -> Result<Store, StoreError> {
        let at = |doing: Doing| move |e: rusqlite::Error| Fault::from(e).into_error(path, doing);
        let conn = if immutable {
            let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI;
            Connection::open_with_flags(immutable_uri(path), flags).map_err(at("opening"))?
        } else {
            // Read-write without CREATE: a missing file is an error, and SQLite
            // may still create the `-shm` index a WAL reader needs; `query_only`
            // then forbids writes.
            let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI;
            Connection::open_with_flags(path, flags).map_err(at("opening"))?
        };
        conn.busy_timeout(BUSY_TIMEOUT).map_err(at("setting the busy timeout"))?;
        conn.pragma_update(None, "query_only", true)
            .map_err(at("making the connection read-only"))?;
        let version: i64 =
            conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(|e| {
                if is_corruption_code(&e) {
                    StoreError::Corrupt { path: path.to_path_buf(), reason: e.to_string() }
                } else {
                    at("reading the schema version")(e)
                }
            })?;
        if version != SCHEMA_VERSION {
            return Err(StoreError::Schema {
                path: path.to_path_buf(),
                found: version,
                expected: SCHEMA_VERSION,
            });
        }
        Ok(Store {
            conn: Mutex::new(conn),
            path: Some(path.to_path_buf()),
            retention: Retention::default(),
        })
    }

    /// A store in memory, for tests.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let path = Path::new(":memory:");
        let mut conn =
            Connection::open_in_memory().map_err(|e| Fault::from(e).into_error(path, "opening"))?;
        configure(&conn).map_err(|e| Fault::from(e).into_error(path, "configuring"))?;
        match migrate(&mut conn) {
            Ok(()) => {}
            Err(OpenFailure::Error(e)) => return Err(e),
            Err(OpenFailure::Unusable(reason)) => {
                return Err(StoreError::Corrupt { path: path.to_path_buf(), reason });
            }
        }
        Ok(Store { conn: Mutex::new(conn), path: None, retention: Retention::default() })
    }

    /// One attempt at opening `path` read-write: connect, check, configure, migrate.
    fn try_open(path: &Path) -> Result<Store, OpenFailure> {
        // Classify every SQLite error met on the way: corruption codes mean the
        // file is unusable, anything else is a plain error.
        let classify = |doing: Doing| {
            move |e: rusqlite::Error| {
                if is_corruption_code(&e) {
                    OpenFailure::Unusable(e.to_string())
                } else {
                    OpenFailure::Error(Fault::from(e).into_error(path, doing))
                }
            }
        };
        // Born 0600 rather than SQLite's 0644: see `crate::private`.
        crate::private::touch(path).map_err(|source| {
            OpenFailure::Error(StoreError::Io {
                path: path.to_path_buf(),
                doing: "creating",
                cause: source,
            })
        })?;
        let mut conn = Connection::open(path).map_err(classify("opening"))?;
        // Until the file has passed the checks, closing the connection must not
        // checkpoint a WAL into it (and then delete the WAL): a file about to be
        // moved aside is evidence, and is moved as it was found.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
            .map_err(classify("configuring"))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(classify("setting the busy timeout"))?;

        // `quick_check` reads every page (O(size), well under a second for a
        // pruned database) but not the index contents. The first statement that
        // touches the file is also where "file is not a database" shows.
        let problems = quick_check(&conn).map_err(classify("checking integrity"))?;
        if !problems.is_empty() {
            return Err(OpenFailure::Unusable(format!(
                "integrity check failed: {}",
                problems.join("; ")
            )));
        }

        configure(&conn).map_err(classify("configuring"))?;
        migrate(&mut conn)?;
        // A good database: let the last close checkpoint and remove the WAL again.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, false)
            .map_err(classify("configuring"))?;
        Ok(Store {
            conn: Mutex::new(conn),
            path: Some(path.to_path_buf()),
            retention: Retention::default(),
        })
    }

    /// What SQLite's `quick_check` finds wrong with the database: nothing when
    /// it is sound. For `doctor`; reads every page.
    pub fn integrity_problems(&self) -> Result<Vec<String>, StoreError> {
        self.run("checking integrity", |conn| Ok(quick_check(conn)?))
    }
}

/// Settings of every read-write connection. `auto_vacuum` only takes effect on a
/// database without tables, i.e. at creation, so it comes before the migration.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    // The answer is the mode in force: "wal", or "memory" for an in-memory
    // database. A file system that cannot do WAL keeps the rollback journal,
    // which is just as safe against a kill, only slower with readers around.
    let _mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    // In WAL mode NORMAL is durable against the process being killed (a commit
    // is written to the WAL before it returns); only a power loss or kernel
    // panic can lose the last commits, and then the database is still intact.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
    Ok(())
}

/// Brings the schema to [`SCHEMA_VERSION`]. A newer version (written by a newer
/// Leakwatch) or a foreign database (tables, but no version) is unusable.
fn migrate(conn: &mut Connection) -> Result<(), OpenFailure> {
    let path = conn.path().map_or_else(|| PathBuf::from(":memory:"), PathBuf::from);
    let fail = |doing: Doing| {
        let path = path.clone();
        move |e: rusqlite::Error| {
            if is_corruption_code(&e) {
                OpenFailure::Unusable(e.to_string())
            } else {
                OpenFailure::Error(Fault::from(e).into_error(&path, doing))
            }
        }
    };
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(fail("reading the schema version"))?;
    if version > SCHEMA_VERSION {
        return Err(OpenFailure::Unusable(format!(
            "schema version {version} was written by a newer Leakwatch; this one knows up to {SCHEMA_VERSION}"
        )));
    }
    if version == 0 {
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
            .map_err(fail("reading the schema"))?;
        if tables > 0 {
            return Err(OpenFailure::Unusable(
                "it holds tables but no Leakwatch schema version: not a Leakwatch database"
                    .to_owned(),
            ));
        }
    }
    let start = usize::try_from(version).unwrap_or(0);
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(start) {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail("migrating the schema"))?;
        tx.execute_batch(sql).map_err(fail("migrating the schema"))?;
        let to = i64::try_from(from + 1).unwrap_or(SCHEMA_VERSION);
        tx.pragma_update(None, "user_version", to).map_err(fail("migrating the schema"))?;
        tx.commit().map_err(fail("migrating the schema"))?;
    }
    Ok(())
}

/// At most this many `quick_check` complaints are reported: enough to tell what
/// kind of damage it is, short enough for one log line.
const QUICK_CHECK_MAX: usize = 3;

/// Runs `PRAGMA quick_check`; returns its complaints (none when it says "ok").
fn quick_check(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    // SQLite may pack several complaints into one row, one per line, under a
    // "*** in database main ***" heading.
    let report: Vec<String> = conn
        .prepare("PRAGMA quick_check")?
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    let mut problems: Vec<String> = report
        .iter()
        .flat_map(|row| row.lines())
        .map(str::trim)
        .filter(|line| *line != "ok" && !line.is_empty() && !line.starts_with("***"))
        .map(str::to_owned)
        .collect();
    if problems.len() > QUICK_CHECK_MAX {
        let more = problems.len() - QUICK_CHECK_MAX;
        problems.truncate(QUICK_CHECK_MAX);
        problems.push(format!("and {more} more"));
    }
    Ok(problems)
}

/// Renames the unusable database at `path`, and its `-wal` and `-shm`, to
/// `<name>.corrupt-<unix secs>` (plus `-wal`/`-shm`, so the three stay a set that
/// SQLite can still open for forensics). Returns the new path of the database.
fn move_aside(path: &Path) -> Result<PathBuf, StoreError> {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let base = with_suffix(path, &format!(".corrupt-{secs}"));
    // Two failures within a second must not overwrite the first one's evidence.
    let mut target = base.clone();
    let mut n = 1;
    while target.exists() {
        target = with_suffix(&base, &format!("-{n}"));
        n += 1;
    }
    fs::rename(path, &target).map_err(|source| StoreError::Io {
        path: path.to_path_buf(),
        doing: "moving the unusable database aside",
        cause: source,
    })?;
    for companion in ["-wal", "-shm"] {
        let from = with_suffix(path, companion);
        match fs::rename(&from, with_suffix(&target, companion)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(StoreError::Io {
                    path: from,
                    doing: "moving the unusable database aside",
                    cause: source,
                });
            }
        }
    }
    Ok(target)
}

/// Whether SQLite's answer means the file is damaged or not a database at all.
pub(super) fn is_corruption_code(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}
