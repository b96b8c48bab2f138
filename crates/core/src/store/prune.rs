//! Keeping the file bounded: the retention in force, downsampling and expiry, and
//! giving freed pages back to the file system.

use super::*;

impl Store {
    /// Bytes on disk: the database file plus its WAL (0 where a file is missing).
    /// For an in-memory store, the size of its pages.
    pub fn size_bytes(&self) -> u64 {
        match &self.path {
            Some(path) => [path.clone(), with_suffix(path, "-wal")]
                .iter()
                .filter_map(|p| fs::metadata(p).ok())
                .map(|m| m.len())
                .sum(),
            None => {
                let conn = self.lock();
                let pages: i64 =
                    conn.pragma_query_value(None, "page_count", |r| r.get(0)).unwrap_or(0);
                let size: i64 =
                    conn.pragma_query_value(None, "page_size", |r| r.get(0)).unwrap_or(0);
                from_db(pages.saturating_mul(size))
            }
        }
    }

    /// The retention [`Store::prune`] applies.
    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// Applies the [`Retention`] as of `now`: downsamples, expires, deletes empty
    /// ended series, then gives freed pages back to the file system. Meant to run
    /// every hour or so; each run only has the newly aged rows to merge.
    ///
    /// Downsampling keeps, per series and bucket, the one sample with the highest
    /// `total` (the latest of equals). The peak is the leak signal — the limit is
    /// hit at a peak, not at an average — and keeping a real sample, rather than
    /// averaging, keeps its per-kind counts, RSS and limit consistent with it.
    pub fn prune(&self, now: UnixMillis) -> Result<PruneReport, StoreError> {
        let retention = self.retention;
        let mut report = PruneReport { bytes_before: self.size_bytes(), ..PruneReport::default() };
        // Cutoffs are aligned to their bucket so a bucket is never split between a
        // merged and an unmerged part.
        let aligned = |age: Duration, bucket: u64| {
            let age = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
            now.saturating_sub(age) / bucket * bucket
        };
        let minute_cutoff = to_db(aligned(retention.full_resolution, MINUTE_MS));
        let hour_cutoff = to_db(aligned(retention.minute_resolution, HOUR_MS));
        let keep_cutoff = to_db(aligned(retention.keep, 1));

        self.run("pruning history", |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let ids: Vec<i64> = tx
                .prepare("SELECT id FROM series")?
                .query_map([], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            // Per series, so that every statement is a range scan of the
            // (series_id, at) index rather than a scan of the whole table.
            for id in ids {
                report.samples_expired += count(tx.execute(
                    "DELETE FROM samples WHERE series_id = ?1 AND at < ?2",
                    params![id, keep_cutoff],
                )?);
                report.downsampled_to_hours += downsample(&tx, id, RES_HOUR, HOUR_MS, hour_cutoff)?;
                report.downsampled_to_minutes +=
                    downsample(&tx, id, RES_MINUTE, MINUTE_MS, minute_cutoff)?;
            }
            report.events_expired +=
                count(tx.execute("DELETE FROM events WHERE at < ?1", [keep_cutoff])?);
            report.snapshots_expired +=
                count(tx.execute("DELETE FROM snapshots WHERE at < ?1", [keep_cutoff])?);
            report.snapshots_expired += count(tx.execute(
                "DELETE FROM snapshots WHERE id IN (
                     SELECT id FROM (
                         SELECT id, row_number() OVER (
                             PARTITION BY target ORDER BY at DESC, id DESC) AS n
                         FROM snapshots)
                     WHERE n > ?1)",
                [i64::from(retention.snapshots_per_target)],
            )?);
            // An open series with no samples is normally one the engine just
            // began; only one that old is certainly abandoned (leakwatch was
            // stopped, never to see that process again).
            report.series_deleted += count(tx.execute(
                "DELETE FROM series
                 WHERE NOT EXISTS (SELECT 1 FROM samples WHERE series_id = series.id)
                   AND (ended_at IS NOT NULL OR started_at < ?1)",
                [keep_cutoff],
            )?);
            tx.commit()?;
            // Outside the transaction: return free pages to the file system, and
            // checkpoint without waiting for readers so the WAL can shrink to
            // `journal_size_limit`.
            incremental_vacuum(conn)?;
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
            Ok(())
        })?;
        report.bytes_after = self.size_bytes();
        Ok(report)
    }
}

/// Gives every free page back to the file system. `incremental_vacuum` frees one
/// page per step of its statement (each step returns a row), so it must be
/// stepped to the end: `execute_batch` steps it once, freeing one page an hour.
fn incremental_vacuum(conn: &Connection) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare("PRAGMA incremental_vacuum")?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    Ok(())
}

/// Merges, in one series, the samples older than `cutoff` and finer than
/// `resolution` into one per `bucket_ms` (the highest total). Returns the number
/// of rows merged away.
fn downsample(
    conn: &Connection,
    series: i64,
    resolution: i64,
    bucket_ms: u64,
    cutoff: i64,
) -> rusqlite::Result<u64> {
    let bucket = to_db(bucket_ms);
    let merged = conn.execute(
        "DELETE FROM samples WHERE rowid IN (
             SELECT rowid FROM (
                 SELECT rowid, row_number() OVER (
                     PARTITION BY at / ?2 ORDER BY total DESC, at DESC, rowid DESC) AS n
                 FROM samples
                 WHERE series_id = ?1 AND resolution < ?3 AND at < ?4)
             WHERE n > 1)",
        params![series, bucket, resolution, cutoff],
    )?;
    conn.execute(
        "UPDATE samples SET resolution = ?2 WHERE series_id = ?1 AND resolution < ?2 AND at < ?3",
        params![series, resolution, cutoff],
    )?;
    Ok(count(merged))
}
