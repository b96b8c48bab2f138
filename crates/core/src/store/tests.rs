//! The store's tests: round trips, pruning, recovery from damage, and durability
//! against SIGKILL, on real files.

use super::schema::SCHEMA_VERSION;
use super::*;
use crate::model::{EventKind, Severity};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

const DAY_MS: u64 = 24 * HOUR_MS;
/// 2024-01-01T00:00:00Z: aligned to minutes and hours, as the bucket checks
/// below assume.
const T0: UnixMillis = 1_704_067_200_000;

fn key(target: &str, pid: u32, start: u64) -> SeriesKey {
    SeriesKey {
        target: target.to_owned(),
        process: ProcessId { pid, start_time: StartTime(start) },
    }
}

fn sample(at: UnixMillis, total: u64) -> Sample {
    let mut kinds = BTreeMap::new();
    kinds.insert(FdKind::Kqueue, total / 2);
    kinds.insert(FdKind::Unix, total - total / 2);
    Sample {
        at,
        total,
        kinds,
        limit: Some(256),
        rss_bytes: Some(512 << 20),
        cpu_seconds: Some(1.5),
        threads: Some(8),
        descendants: 2,
    }
}

fn open(path: &Path) -> Store {
    let opened = Store::open(path).expect("open");
    assert_eq!(opened.moved_aside, None, "{:?}", opened.reason);
    opened.store
}

fn sample_rows(store: &Store, resolution: i64) -> i64 {
    store
        .lock()
        .query_row("SELECT count(*) FROM samples WHERE resolution = ?1", [resolution], |r| r.get(0))
        .expect("count")
}

#[test]
fn round_trip_of_series_samples_events_and_snapshots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nested/dir/history.db");
    let store = open(&path);
    assert_eq!(store.path(), Some(path.as_path()));

    let argv = vec!["node".to_owned(), "server.js".to_owned()];
    let id = store.begin_series(&key("copilot", 4242, 99), "node", &argv, T0).expect("begin");
    let mut samples = vec![sample(T0, 10), sample(T0 + 2000, 12)];
    samples[1].limit = None;
    samples[1].rss_bytes = None;
    samples[1].cpu_seconds = None;
    samples[1].threads = None;
    store.record_sample(id, &samples[0]).expect("record");
    store.record_samples(&[(id, samples[1].clone())]).expect("record");
    assert_eq!(store.samples(id, 0).expect("samples"), samples);
    assert_eq!(store.samples(id, T0 + 1).expect("samples"), samples[1..]);
    store.end_series(id, T0 + 5000).expect("end");

    let event = Event {
        at: T0 + 3000,
        target: "copilot".to_owned(),
        pid: Some(4242),
        kind: EventKind::SeriesStarted,
        rule: Some("kqueue".to_owned()),
        severity: Severity::Critical,
        value: Some(812.0),
        message: "copilot: 812 kqueues".to_owned(),
    };
    let other = Event {
        target: "mcp".to_owned(),
        pid: None,
        rule: None,
        value: None,
        kind: EventKind::ConfigError,
        severity: Severity::Warning,
        ..event.clone()
    };
    store.record_event(&event).expect("event");
    store.record_event(&other).expect("event");
    let snapshot = Snapshot {
        at: T0 + 4000,
        target: "copilot".to_owned(),
        process: ProcessId { pid: 4242, start_time: StartTime(u64::MAX - 1) },
        reason: "restart: fds above 90%".to_owned(),
        body: serde_json::json!({ "fds": [{ "fd": 3, "kind": "kqueue" }], "rss_bytes": 1 }),
    };
    store.record_snapshot(&snapshot).expect("snapshot");
    drop(store);

    // Everything is read back after a reopen, from disk.
    let store = open(&path);
    assert_eq!(store.targets().expect("targets"), ["copilot", "mcp"]);
    let series = store.series("copilot").expect("series");
    assert_eq!(
        series,
        [SeriesInfo {
            id,
            target: "copilot".to_owned(),
            process: key("copilot", 4242, 99).process,
            name: "node".to_owned(),
            argv,
            started_at: T0,
            ended_at: Some(T0 + 5000),
        }]
    );
    assert_eq!(store.samples(id, 0).expect("samples"), samples);
    assert_eq!(store.events(Some("copilot"), 0).expect("events"), std::slice::from_ref(&event));
    assert_eq!(store.events(None, 0).expect("events"), [event.clone(), other]);
    assert!(store.events(None, T0 + 3001).expect("events").is_empty());
    assert_eq!(
        store.snapshots(Some("copilot"), 0).expect("snapshots"),
        std::slice::from_ref(&snapshot)
    );
    assert_eq!(store.snapshots(None, 0).expect("snapshots"), [snapshot]);
    assert!(store.snapshots(Some("mcp"), 0).expect("snapshots").is_empty());
    assert!(store.size_bytes() > 0);

    // Created for incremental vacuum, in WAL mode.
    let conn = store.lock();
    let auto_vacuum: i64 =
        conn.pragma_query_value(None, "auto_vacuum", |r| r.get(0)).expect("pragma");
    let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).expect("pragma");
    assert_eq!((auto_vacuum, mode.as_str()), (2, "wal"));
}

#[test]
fn unknown_kind_names_count_as_other() {
    let kinds = kinds_from_json(r#"{"kqueue":3,"quantum_fd":2,"other":1}"#).expect("kinds");
    assert_eq!(kinds, BTreeMap::from([(FdKind::Kqueue, 3), (FdKind::Other, 3)]));
}

#[test]
fn reopened_store_continues_the_open_series_and_a_new_process_starts_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("history.db");
    let store = open(&path);
    let first = store.begin_series(&key("api", 100, 7), "api", &[], T0).expect("begin");
    store.record_sample(first, &sample(T0, 1)).expect("record");
    drop(store);

    // Leakwatch restarted, the process did not: same series.
    let store = open(&path);
    let again = store.begin_series(&key("api", 100, 7), "api", &[], T0 + 60_000).expect("begin");
    assert_eq!(again, first);
    store.record_sample(again, &sample(T0 + 60_000, 2)).expect("record");
    assert_eq!(store.samples(first, 0).expect("samples").len(), 2);

    // The pid was reused by a new process (another start time), or the target
    // was restarted with a new pid: new series each.
    let reused = store.begin_series(&key("api", 100, 8), "api", &[], T0 + 70_000).expect("begin");
    let restarted =
        store.begin_series(&key("api", 101, 8), "api", &[], T0 + 80_000).expect("begin");
    assert_ne!(reused, first);
    assert_ne!(restarted, reused);
    // The same process under another target is another series too.
    let other = store.begin_series(&key("web", 100, 7), "api", &[], T0).expect("begin");
    assert_ne!(other, first);

    // Once ended, the identity does not reopen its old series.
    store.end_series(first, T0 + 90_000).expect("end");
    let after_end =
        store.begin_series(&key("api", 100, 7), "api", &[], T0 + 95_000).expect("begin");
    assert_ne!(after_end, first);
    let series = store.series("api").expect("series");
    assert_eq!(series.len(), 4);
    assert_eq!(series[0].ended_at, Some(T0 + 90_000));
    assert!(series[1..].iter().all(|s| s.ended_at.is_none()));
}

/// The highest total per bucket, latest of equals: what prune must keep.
fn expected_peaks(samples: &[Sample], bucket: u64) -> BTreeMap<u64, (u64, UnixMillis)> {
    let mut peaks: BTreeMap<u64, (u64, UnixMillis)> = BTreeMap::new();
    for s in samples {
        let peak = peaks.entry(s.at / bucket).or_insert((s.total, s.at));
        if (s.total, s.at) >= *peak {
            *peak = (s.total, s.at);
        }
    }
    peaks
}

#[test]
fn prune_downsamples_expires_and_bounds_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir.path().join("history.db"));
    let id = store.begin_series(&key("leaky", 1, 1), "leaky", &[], T0).expect("begin");
    // Two days of 2-s samples: a slow leak with noise, so each bucket's peak
    // sits somewhere in the middle and totals repeat across buckets.
    let samples: Vec<Sample> =
        (0..86_400u64).map(|i| sample(T0 + i * 2000, 100 + i / 500 + (i * 7919) % 97)).collect();
    let batch: Vec<_> = samples.iter().map(|s| (id, s.clone())).collect();
    store.record_samples(&batch).expect("record");
    let quiet = store.begin_series(&key("quiet", 2, 2), "quiet", &[], T0).expect("begin");
    store.end_series(quiet, T0 + 1000).expect("end");
    let event = |at| Event {
        at,
        target: "leaky".to_owned(),
        pid: Some(1),
        kind: EventKind::Raised,
        rule: None,
        severity: Severity::Warning,
        value: None,
        message: String::new(),
    };
    store.record_event(&event(T0)).expect("event");
    store.record_event(&event(T0 + 95 * DAY_MS)).expect("event");
    for n in 0..60 {
        let snapshot = Snapshot {
            at: T0 + 95 * DAY_MS + n,
            target: "leaky".to_owned(),
            process: ProcessId { pid: 1, start_time: StartTime(1) },
            reason: format!("restart {n}"),
            body: serde_json::Value::Null,
        };
        store.record_snapshot(&snapshot).expect("snapshot");
    }

    // Two days in: the first day goes to one sample per minute.
    let report = store.prune(T0 + 2 * DAY_MS).expect("prune");
    assert_eq!(sample_rows(&store, RES_RAW), 43_200);
    assert_eq!(sample_rows(&store, RES_MINUTE), 1440);
    assert_eq!(report.downsampled_to_minutes, 43_200 - 1440);
    assert_eq!(report.series_deleted, 1, "the ended series without samples");
    // Only the newest snapshots per target are kept.
    assert_eq!(report.snapshots_expired, 10);
    assert!(report.bytes_before > 0);
    let kept = store.samples(id, 0).expect("samples");
    let (old, recent) = kept.split_at(1440);
    assert_eq!(recent, &samples[43_200..]);
    let peaks = expected_peaks(&samples[..43_200], MINUTE_MS);
    let got: BTreeMap<_, _> = old.iter().map(|s| (s.at / MINUTE_MS, (s.total, s.at))).collect();
    assert_eq!(got, peaks);
    // The kept samples are whole: kinds and all.
    assert!(old.iter().all(|s| *s == samples[usize::try_from((s.at - T0) / 2000).expect("index")]));

    // Ten days in: everything is older than a day, all of it older than a
    // week goes to one per hour, the hour peaks being the overall peaks.
    let report = store.prune(T0 + 10 * DAY_MS).expect("prune");
    assert_eq!(sample_rows(&store, RES_RAW), 0);
    assert_eq!(sample_rows(&store, RES_MINUTE), 0);
    assert_eq!(sample_rows(&store, RES_HOUR), 48);
    assert_eq!(report.downsampled_to_hours, 1440 + 43_200 - 48);
    let got: BTreeMap<_, _> = store
        .samples(id, 0)
        .expect("samples")
        .iter()
        .map(|s| (s.at / HOUR_MS, (s.total, s.at)))
        .collect();
    assert_eq!(got, expected_peaks(&samples, HOUR_MS));

    // A prune at the same time again has nothing to do.
    let report = store.prune(T0 + 10 * DAY_MS).expect("prune");
    assert_eq!(
        report.downsampled_to_hours + report.downsampled_to_minutes + report.samples_expired,
        0
    );

    // Past 90 days: old samples, events and snapshots go, and with its samples
    // gone so does the series, once it has ended.
    store.end_series(id, T0 + 2 * DAY_MS).expect("end");
    let report = store.prune(T0 + 92 * DAY_MS).expect("prune");
    assert_eq!(report.samples_expired, 48);
    assert_eq!(report.events_expired, 1);
    assert_eq!(report.series_deleted, 1);
    assert!(store.series("leaky").expect("series").is_empty());
    assert_eq!(store.events(None, 0).expect("events").len(), 1);
    assert_eq!(report.snapshots_expired, 0);
    let snapshots = store.snapshots(Some("leaky"), 0).expect("snapshots");
    assert_eq!(snapshots.len(), 50);
    assert_eq!(snapshots[0].reason, "restart 10");
    // Earlier prunes gave their freed pages back already (see
    // prune_gives_every_freed_page_back_and_the_file_shrinks); this one frees
    // at most a few, and the file never grows.
    assert!(
        report.bytes_after <= report.bytes_before,
        "{} -> {}",
        report.bytes_before,
        report.bytes_after
    );
}

#[test]
fn series_of_processes_that_died_unwatched_end_at_their_last_sample() {
    let store = Store::open_in_memory().expect("open");
    let dead = store.begin_series(&key("t", 10, 1), "t", &[], T0).expect("begin");
    store.record_sample(dead, &sample(T0 + 5000, 3)).expect("record");
    store.record_sample(dead, &sample(T0 + 9000, 4)).expect("record");
    let dead_empty = store.begin_series(&key("u", 11, 1), "u", &[], T0 + 100).expect("begin");
    let living = store.begin_series(&key("t", 12, 7), "t", &[], T0).expect("begin");
    let ended = store.begin_series(&key("v", 13, 1), "v", &[], T0).expect("begin");
    store.end_series(ended, T0 + 1).expect("end");

    let alive = |id: ProcessId| id == ProcessId { pid: 12, start_time: StartTime(7) };
    assert_eq!(store.end_series_of_dead_processes(alive).expect("end dead"), 2);
    let ended_at = |target: &str, id: SeriesId| {
        store.series(target).expect("series").into_iter().find(|s| s.id == id).expect("s").ended_at
    };
    assert_eq!(ended_at("t", dead), Some(T0 + 9000));
    assert_eq!(ended_at("u", dead_empty), Some(T0 + 100));
    assert_eq!(ended_at("t", living), None, "a running process's series goes on");
    assert_eq!(ended_at("v", ended), Some(T0 + 1), "an ended series is left alone");
    assert_eq!(store.end_series_of_dead_processes(alive).expect("again"), 0);
}

#[test]
fn prune_gives_every_freed_page_back_and_the_file_shrinks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("history.db");
    let store = open(&path);
    let id = store.begin_series(&key("t", 1, 1), "t", &[], T0).expect("begin");
    let batch: Vec<_> = (0..40_000).map(|i| (id, sample(T0 + i * 2000, i))).collect();
    store.record_samples(&batch).expect("record");
    drop(store); // checkpoints the WAL into the file
    let before = fs::metadata(&path).expect("metadata").len();

    let store = open(&path);
    // 100 days later every sample has expired: thousands of pages are freed.
    store.prune(T0 + 100 * DAY_MS).expect("prune");
    let free: i64 = store
        .lock()
        .pragma_query_value(None, "freelist_count", |r| r.get(0))
        .expect("freelist_count");
    assert_eq!(free, 0, "pages left on the free list");
    drop(store);
    let after = fs::metadata(&path).expect("metadata").len();
    assert!(after * 10 < before, "the file did not shrink: {before} -> {after} bytes");
}

/// Bytes that are certainly not SQLite, as a stray write or a wrong path gives.
fn garbage() -> Vec<u8> {
    b"this is not a database, just some bytes\n".repeat(200)
}

fn assert_moved_aside_and_recovers(path: &Path, original: &[u8]) {
    let opened = Store::open(path).expect("open corrupt");
    let moved = opened.moved_aside.clone().expect("moved aside");
    let message = opened.message().expect("message");
    assert!(message.contains(&moved.display().to_string()), "{message}");
    let name = moved.file_name().expect("name").to_string_lossy().into_owned();
    assert!(name.starts_with("history.db.corrupt-"), "{name}");
    assert_eq!(fs::read(&moved).expect("moved file"), original, "moved as it was");

    // The new store works...
    let store = opened.store;
    let id = store.begin_series(&key("t", 1, 1), "t", &[], T0).expect("begin");
    store.record_sample(id, &sample(T0, 3)).expect("record");
    drop(store);
    // ...and the next open moves nothing: no crash loop.
    let store = open(path);
    assert_eq!(store.samples(id, 0).expect("samples").len(), 1);
}

#[test]
fn garbage_file_is_moved_aside_with_its_wal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("history.db");
    fs::write(&path, garbage()).expect("write");
    fs::write(with_suffix(&path, "-wal"), b"stale wal").expect("write");
    fs::write(with_suffix(&path, "-shm"), b"stale shm").expect("write");
    let moved = Store::open(&path).expect("open").moved_aside.expect("moved aside");
    assert_eq!(fs::read(&moved).expect("db"), garbage());
    assert_eq!(fs::read(with_suffix(&moved, "-wal")).expect("wal"), b"stale wal");
    // The -shm (a rebuildable index of the WAL) is moved along, whatever
    // SQLite wrote into it while looking.
    assert!(with_suffix(&moved, "-shm").exists());

    // Corrupt again (within the same second, most likely): the first file's
    // evidence is not overwritten.
    fs::write(&path, garbage()).expect("write");
    assert_moved_aside_and_recovers(&path, &garbage());
    fs::write(&path, garbage()).expect("write");
    assert!(Store::open(&path).expect("open").moved_aside.is_some());
    let mut aside: Vec<_> = fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| {
            name.contains(".corrupt-") && !name.ends_with("-wal") && !name.ends_with("-shm")
        })
        .collect();
    aside.sort();
    assert_eq!(aside.len(), 3, "{aside:?}");
    for name in &aside {
        assert!(fs::read(dir.path().join(name)).expect("read") == garbage(), "{name}");
    }
}

#[test]
fn truncated_database_is_moved_aside() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("history.db");
    let store = open(&path);
    let id = store.begin_series(&key("t", 1, 1), "t", &[], T0).expect("begin");
    let batch: Vec<_> = (0..5000).map(|i| (id, sample(T0 + i * 2000, i))).collect();
    store.record_samples(&batch).expect("record");
    drop(store); // the last connection checkpoints and removes the WAL
    assert!(!with_suffix(&path, "-wal").exists());

    let bytes = fs::read(&path).expect("read");
    let truncated = &bytes[..bytes.len() / 2];
    fs::write(&path, truncated).expect("truncate");
    assert_moved_aside_and_recovers(&path, truncated);
}

#[test]
fn damaged_page_fails_the_integrity_check_and_is_moved_aside() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("history.db");
    let store = open(&path);
    let id = store.begin_series(&key("t", 1, 1), "t", &[], T0).expect("begin");
    let batch: Vec<_> = (0..5000).map(|i| (id, sample(T0 + i * 2000, i))).collect();
    store.record_samples(&batch).expect("record");
    drop(store);

    // Scribble over the cell pointers of a page in the middle: the file is
    // still SQLite, only the integrity check can tell.
    let mut bytes = fs::read(&path).expect("read");
    let page = 4096 * (bytes.len() / 4096 / 2);
    bytes[page + 8..page + 72].fill(0xff);
    fs::write(&path, &bytes).expect("write");
    let opened = Store::open(&path).expect("open");
    assert!(opened.moved_aside.is_some());
    let reason = opened.reason.clone().unwrap_or_default();
    assert!(reason.starts_with("integrity check failed: "), "{reason}");
    assert!(!reason.contains('\n'), "{reason}");
    drop(opened);
    assert!(open(&path).targets().expect("targets").is_empty());
}

#[test]
fn newer_or_foreign_schema_is_moved_aside() {
    let dir = tempfile::tempdir().expect("tempdir");
    let newer = dir.path().join("history.db");
    drop(open(&newer));
    Connection::open(&newer)
        .and_then(|c| c.pragma_update(None, "user_version", SCHEMA_VERSION + 1))
        .expect("bump version");
    let opened = Store::open(&newer).expect("open");
    assert!(opened.moved_aside.is_some());
    assert!(opened.reason.as_deref().unwrap_or("").contains("newer"), "{:?}", opened.reason);

    let foreign = dir.path().join("other/history.db");
    fs::create_dir_all(foreign.parent().expect("parent")).expect("mkdir");
    Connection::open(&foreign)
        .and_then(|c| c.execute_batch("CREATE TABLE notes (body TEXT)"))
        .expect("foreign db");
    let opened = Store::open(&foreign).expect("open");
    assert!(opened.moved_aside.is_some(), "a database that is not ours is not migrated");
}

#[cfg(unix)]
#[test]
fn history_files_are_owner_only_and_loose_ones_are_fixed_at_open() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| fs::metadata(p).expect("metadata").permissions().mode() & 0o7777;
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("data/leakwatch");
    let path = dir.join("history.sqlite3");
    let opened = Store::open(&path).expect("open");
    assert!(opened.permissions_fixed.is_empty(), "{:?}", opened.permissions_fixed);
    let store = opened.store;
    let id = store.begin_series(&key("t", 1, 1), "t", &[], T0).expect("begin");
    store.record_sample(id, &sample(T0, 3)).expect("record");
    assert_eq!(mode(&dir), 0o700);
    for file in [path.clone(), with_suffix(&path, "-wal"), with_suffix(&path, "-shm")] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    drop(store);

    // A database from before: world-readable files in a 0755 directory.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    fs::write(with_suffix(&path, "-shm"), b"").expect("shm");
    fs::set_permissions(with_suffix(&path, "-shm"), fs::Permissions::from_mode(0o666))
        .expect("chmod");
    let opened = Store::open(&path).expect("reopen");
    assert_eq!(opened.permissions_fixed.len(), 3, "{:?}", opened.permissions_fixed);
    assert!(opened.permissions_fixed[0].contains(&dir.display().to_string()));
    assert!(opened.permissions_fixed[1].contains("mode 0644"));
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&with_suffix(&path, "-shm")), 0o600);
    assert_eq!(opened.store.samples(id, 0).expect("samples").len(), 1);
}

#[test]
fn not_a_directory_is_an_error_not_a_move() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("file");
    fs::write(&file, b"x").expect("write");
    let err = Store::open(&file.join("history.db")).expect_err("cannot create under a file");
    assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains(&file.display().to_string()), "{err}");
    assert_eq!(fs::read(&file).expect("read"), b"x");
}

#[test]
fn read_only_store_reads_while_the_writer_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("history.db");
    assert!(Store::open_read_only(&path).is_err(), "no database yet");
    let writer = open(&path);
    let id = writer.begin_series(&key("t", 1, 1), "t", &[], T0).expect("begin");
    writer.record_sample(id, &sample(T0, 1)).expect("record");

    let reader = Store::open_read_only(&path).expect("open read-only");
    assert_eq!(reader.samples(id, 0).expect("samples").len(), 1);
    writer.record_sample(id, &sample(T0 + 1, 2)).expect("record");
    assert_eq!(reader.samples(id, 0).expect("samples").len(), 2);
    let err = reader.record_sample(id, &sample(T0 + 2, 3)).expect_err("read-only");
    assert!(err.to_string().contains("recording samples"), "{err}");
    assert!(reader.size_bytes() > 0);

    // With the writer gone (and its WAL checkpointed away), a reader still
    // opens the file.
    drop((writer, reader));
    let reader = Store::open_read_only(&path).expect("open read-only");
    assert_eq!(reader.samples(id, 0).expect("samples").len(), 2);

    // A reader reports a schema it does not know rather than touching it.
    Connection::open(&path)
        .and_then(|c| c.pragma_update(None, "user_version", SCHEMA_VERSION + 1))
        .expect("bump version");
    let err = Store::open_read_only(&path).expect_err("newer schema");
    assert!(matches!(err, StoreError::Schema { found: 2, expected: 1, .. }), "{err:?}");
}

#[test]
fn in_memory_store_works() {
    let store = Store::open_in_memory().expect("open");
    assert_eq!(store.path(), None);
    let id = store.begin_series(&key("t", 1, 1), "t", &[], T0).expect("begin");
    store.record_sample(id, &sample(T0, 1)).expect("record");
    assert_eq!(store.samples(id, 0).expect("samples").len(), 1);
    assert!(store.size_bytes() > 0);
    assert!(store.prune(T0).is_ok());
}

/// Set (to the database path) in the child process of the read-only media test.
const READ_ONLY_ENV: &str = "LEAKWATCH_STORE_READ_ONLY_READER";

/// The child of `history_on_read_only_media_can_be_read`, run in a mount
/// namespace where the database's directory is mounted read-only.
#[test]
#[ignore = "the reader process of history_on_read_only_media_can_be_read"]
fn read_only_media_reader_child() {
    let Some(path) = std::env::var_os(READ_ONLY_ENV) else {
        return;
    };
    let path = Path::new(&path);
    let err = fs::write(path.with_file_name("probe"), b"x").expect_err("not read-only");
    assert_eq!(err.raw_os_error(), Some(libc_erofs()), "{err}");
    let store = Store::open_read_only(path).expect("open on read-only media");
    let series = store.series("t").expect("series");
    println!("samples {}", store.samples(series[0].id, 0).expect("samples").len());
}

/// EROFS, without a libc dependency for one constant (Linux and macOS agree).
fn libc_erofs() -> i32 {
    30
}

#[cfg(target_os = "linux")]
#[test]
fn history_on_read_only_media_can_be_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    // URI syntax in the path must not be read as such.
    let media = dir.path().join("backup #1?");
    fs::create_dir(&media).expect("mkdir");
    let path = media.join("history.sqlite3");
    let store = open(&path);
    let id = store.begin_series(&key("t", 1, 1), "t", &[], T0).expect("begin");
    for i in 0..3 {
        store.record_sample(id, &sample(T0 + i, i)).expect("record");
    }
    drop(store);
    assert!(!with_suffix(&path, "-shm").exists());

    let module = module_path!().split_once("::").map_or(module_path!(), |(_, rest)| rest);
    let name = format!("{module}::read_only_media_reader_child");
    // A private mount namespace (as an unprivileged user namespace's root)
    // where the directory is bind-mounted onto itself read-only.
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
        .arg(
            "mount --bind \"$1\" \"$1\" && mount -o remount,ro,bind \"$1\" \"$1\" && \
                 exec \"$2\" --exact \"$3\" --nocapture --include-ignored",
        )
        .arg("sh")
        .arg(&media)
        .arg(std::env::current_exe().expect("current exe"))
        .arg(&name)
        .env(READ_ONLY_ENV, &path)
        .output()
        .expect("run unshare (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("samples 3"), "{stdout}\n{stderr}");
}

/// Set (to the database path) in the child process of the SIGKILL test.
const WRITER_ENV: &str = "LEAKWATCH_STORE_SIGKILL_WRITER";
/// Samples per tick in the SIGKILL test: a kill mid-commit must lose all of
/// a tick or none of it.
const TICK: u64 = 25;

/// The child of `sigkill_loses_at_most_the_tick_in_flight`: records a tick
/// every ~20 ms forever, printing the running count after each commit.
#[test]
#[ignore = "the writer process of sigkill_loses_at_most_the_tick_in_flight"]
fn sigkill_writer_child() {
    let Some(path) = std::env::var_os(WRITER_ENV) else {
        return;
    };
    let store = open(Path::new(&path));
    let id = store.begin_series(&key("t", 1, 1), "t", &[], T0).expect("begin");
    let mut stdout = io::stdout();
    for n in 0u64.. {
        let tick: Vec<_> = (0..TICK).map(|i| (id, sample(T0 + n * 1000 + i, n))).collect();
        store.record_samples(&tick).expect("record");
        writeln!(stdout, "committed {}", (n + 1) * TICK).expect("stdout");
        stdout.flush().expect("flush");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigkill_loses_at_most_the_tick_in_flight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("history.db");
    // The test's name as libtest knows it: the module path without the crate.
    let module = module_path!().split_once("::").map_or(module_path!(), |(_, rest)| rest);
    let name = format!("{module}::sigkill_writer_child");
    let mut child = Command::new(std::env::current_exe().expect("current exe"))
        .args(["--exact", &name, "--nocapture", "--include-ignored"])
        .env(WRITER_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn writer");
    let stdout = child.stdout.take().expect("stdout");
    let mut last = 0;
    let mut commits = 0;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read");
        if let Some(n) = line.strip_prefix("committed ") {
            last = n.parse::<u64>().expect("count");
            commits += 1;
            if commits == 15 {
                break;
            }
        }
    }
    // Child::kill is SIGKILL on Unix: no destructor, no checkpoint, no close.
    child.kill().expect("kill");
    let status = child.wait().expect("wait");
    assert_eq!(commits, 15, "the writer stopped early: {status}");
    assert!(with_suffix(&path, "-wal").exists(), "killed with its WAL in place");

    let store = open(&path);
    let series = store.series("t").expect("series");
    assert_eq!(series.len(), 1);
    let stored =
        u64::try_from(store.samples(series[0].id, 0).expect("samples").len()).expect("len");
    assert!(stored >= last, "stored {stored} < last committed {last}");
    assert_eq!(stored % TICK, 0, "a tick was half stored: {stored}");
}
