//! What faces read back: targets with history, their series, samples, events
//! and snapshots.

use super::*;

impl Store {
    /// Every target with any history (series, events or snapshots), sorted.
    pub fn targets(&self) -> Result<Vec<String>, StoreError> {
        self.run("listing targets", |conn| {
            let mut stmt = conn.prepare(
                "SELECT target FROM series UNION SELECT target FROM events
                 UNION SELECT target FROM snapshots ORDER BY 1",
            )?;
            let rows = stmt.query_map([], |row| row.get(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// The series of a target, oldest first.
    pub fn series(&self, target: &str) -> Result<Vec<SeriesInfo>, StoreError> {
        self.run("reading series", |conn| {
            let mut stmt = conn.prepare(
                "SELECT id, target, pid, start_time, name, argv, started_at, ended_at
                 FROM series WHERE target = ?1 ORDER BY started_at, id",
            )?;
            let rows = stmt.query_map([target], |row| {
                Ok((
                    SeriesInfo {
                        id: SeriesId(row.get(0)?),
                        target: row.get(1)?,
                        process: ProcessId {
                            pid: pid_from_db(row.get(2)?),
                            start_time: start_time_from_db(row.get(3)?),
                        },
                        name: row.get(4)?,
                        argv: Vec::new(),
                        started_at: from_db(row.get(6)?),
                        ended_at: row.get::<_, Option<i64>>(7)?.map(from_db),
                    },
                    row.get::<_, String>(5)?,
                ))
            })?;
            let mut series = Vec::new();
            for row in rows {
                let (mut info, argv) = row?;
                info.argv = serde_json::from_str(&argv)?;
                series.push(info);
            }
            Ok(series)
        })
    }

    /// The samples of a series taken at or after `since`, oldest first. Older
    /// stretches come at the coarser resolution [`Store::prune`] left them in.
    pub fn samples(&self, series: SeriesId, since: UnixMillis) -> Result<Vec<Sample>, StoreError> {
        self.run("reading samples", |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT at, total, fd_limit, rss_bytes, cpu_seconds, threads, descendants, kinds
                 FROM samples WHERE series_id = ?1 AND at >= ?2 ORDER BY at, rowid",
            )?;
            let rows = stmt.query_map(params![series.0, to_db(since)], |row| {
                Ok((
                    Sample {
                        at: from_db(row.get(0)?),
                        total: from_db(row.get(1)?),
                        kinds: BTreeMap::new(),
                        limit: row.get::<_, Option<i64>>(2)?.map(from_db),
                        rss_bytes: row.get::<_, Option<i64>>(3)?.map(from_db),
                        cpu_seconds: row.get(4)?,
                        threads: row
                            .get::<_, Option<i64>>(5)?
                            .map(|t| u32::try_from(t).unwrap_or(u32::MAX)),
                        descendants: u32::try_from(row.get::<_, i64>(6)?).unwrap_or(u32::MAX),
                    },
                    row.get::<_, String>(7)?,
                ))
            })?;
            let mut samples = Vec::new();
            for row in rows {
                let (mut sample, kinds) = row?;
                sample.kinds = kinds_from_json(&kinds)?;
                samples.push(sample);
            }
            Ok(samples)
        })
    }

    /// Events at or after `since`, of one target or of all, oldest first.
    pub fn events(
        &self,
        target: Option<&str>,
        since: UnixMillis,
    ) -> Result<Vec<Event>, StoreError> {
        self.run("reading events", |conn| {
            // One statement for both cases, as `snapshots` does: NULL means any target.
            let mut stmt = conn.prepare(
                "SELECT at, target, pid, kind, rule, severity, value, message FROM events
                 WHERE (?1 IS NULL OR target = ?1) AND at >= ?2 ORDER BY at, id",
            )?;
            let rows = stmt.query_map(params![target, to_db(since)], raw_event)?;
            let mut events = Vec::new();
            for row in rows {
                let (kind, severity, mut event) = row?;
                event.kind = enum_from_name(kind)?;
                event.severity = enum_from_name(severity)?;
                events.push(event);
            }
            Ok(events)
        })
    }

    /// Snapshots at or after `since`, of one target or of all, oldest first.
    pub fn snapshots(
        &self,
        target: Option<&str>,
        since: UnixMillis,
    ) -> Result<Vec<Snapshot>, StoreError> {
        self.run("reading snapshots", |conn| {
            let mut stmt = conn.prepare(
                "SELECT at, target, pid, start_time, reason, body FROM snapshots
                 WHERE (?1 IS NULL OR target = ?1) AND at >= ?2 ORDER BY at, id",
            )?;
            let rows = stmt.query_map(params![target, to_db(since)], |row| {
                Ok((
                    from_db(row.get(0)?),
                    row.get::<_, String>(1)?,
                    ProcessId {
                        pid: pid_from_db(row.get(2)?),
                        start_time: start_time_from_db(row.get(3)?),
                    },
                    row.get::<_, String>(4)?,
                    row.get::<_, String>(5)?,
                ))
            })?;
            let mut snapshots = Vec::new();
            for row in rows {
                let (at, target, process, reason, body) = row?;
                snapshots.push(Snapshot {
                    at,
                    target,
                    process,
                    reason,
                    body: serde_json::from_str(&body)?,
                });
            }
            Ok(snapshots)
        })
    }
}

/// One row of `events`, with its kind and severity still as text.
type RawEvent = (String, String, Event);

fn raw_event(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawEvent> {
    Ok((
        row.get(3)?,
        row.get(5)?,
        Event {
            at: from_db(row.get(0)?),
            target: row.get(1)?,
            pid: row.get::<_, Option<i64>>(2)?.map(pid_from_db),
            // Placeholders, replaced by the parsed text columns.
            kind: crate::model::EventKind::Action,
            rule: row.get(4)?,
            severity: crate::model::Severity::Ok,
            value: row.get(6)?,
            message: row.get(7)?,
        },
    ))
}
