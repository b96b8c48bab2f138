//! What the engine writes each tick: series begun and ended, samples (one
//! transaction per tick), events and forensic snapshots.

use super::*;

impl Store {
    /// Starts the series of `key` at `at`, or returns the one already open for the
    /// same key. So a restart of leakwatch continues the series of a process that
    /// kept running, while a new process for the target (a new pid or start time)
    /// gets a new series. Other open series of the target are left alone: a target
    /// may match several processes; the engine ends the ones that are gone.
    pub fn begin_series(
        &self,
        key: &SeriesKey,
        name: &str,
        argv: &[String],
        at: UnixMillis,
    ) -> Result<SeriesId, StoreError> {
        self.run("starting a series", |conn| {
            let argv = serde_json::to_string(argv)?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let pid = i64::from(key.process.pid);
            let start_time = start_time_to_db(key.process.start_time);
            let open: Option<i64> = tx
                .query_row(
                    "SELECT id FROM series
                     WHERE target = ?1 AND pid = ?2 AND start_time = ?3 AND ended_at IS NULL
                     ORDER BY id DESC LIMIT 1",
                    params![key.target, pid, start_time],
                    |row| row.get(0),
                )
                .optional()?;
            let id = match open {
                Some(id) => id,
                None => {
                    tx.execute(
                        "INSERT INTO series (target, pid, start_time, name, argv, started_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![key.target, pid, start_time, name, argv, to_db(at)],
                    )?;
                    tx.last_insert_rowid()
                }
            };
            tx.commit()?;
            Ok(SeriesId(id))
        })
    }

    /// Marks a series ended (its process is gone). Ending an ended or unknown
    /// series does nothing.
    pub fn end_series(&self, id: SeriesId, at: UnixMillis) -> Result<(), StoreError> {
        self.run("ending a series", |conn| {
            conn.execute(
                "UPDATE series SET ended_at = ?2 WHERE id = ?1 AND ended_at IS NULL",
                params![id.0, to_db(at)],
            )?;
            Ok(())
        })
    }

    /// Ends every open series whose process `alive` says is gone, at its last
    /// sample (or its start, if it has none): the process exited while no engine
    /// watched it, some time after that sample. Returns how many were ended.
    pub fn end_series_of_dead_processes(
        &self,
        alive: impl Fn(ProcessId) -> bool,
    ) -> Result<u64, StoreError> {
        self.run("ending the series of exited processes", |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let open: Vec<(i64, i64, i64)> = tx
                .prepare("SELECT id, pid, start_time FROM series WHERE ended_at IS NULL")?
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
                .collect::<Result<_, _>>()?;
            let mut ended = 0;
            for (id, pid, start_time) in open {
                let process =
                    ProcessId { pid: pid_from_db(pid), start_time: start_time_from_db(start_time) };
                if alive(process) {
                    continue;
                }
                ended += count(tx.execute(
                    "UPDATE series SET ended_at = COALESCE(
                         (SELECT max(at) FROM samples WHERE series_id = ?1), started_at)
                     WHERE id = ?1 AND ended_at IS NULL",
                    [id],
                )?);
            }
            tx.commit()?;
            Ok(ended)
        })
    }

    /// Records one sample (the tests' shorthand for [`Store::record_samples`]).
    #[cfg(test)]
    pub(crate) fn record_sample(&self, id: SeriesId, sample: &Sample) -> Result<(), StoreError> {
        self.insert_samples(&mut std::iter::once((id, sample)))
    }

    /// Records one tick's samples in one transaction: after a kill, a tick is
    /// either all there or not at all.
    pub fn record_samples(&self, samples: &[(SeriesId, Sample)]) -> Result<(), StoreError> {
        if samples.is_empty() {
            return Ok(());
        }
        self.insert_samples(&mut samples.iter().map(|(id, sample)| (*id, sample)))
    }

    fn insert_samples(
        &self,
        samples: &mut dyn Iterator<Item = (SeriesId, &Sample)>,
    ) -> Result<(), StoreError> {
        self.run("recording samples", |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO samples (series_id, at, resolution, total, fd_limit, rss_bytes,
                                          cpu_seconds, threads, descendants, kinds)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )?;
                for (id, s) in samples {
                    let kinds = serde_json::to_string(&s.kinds)?;
                    insert.execute(params![
                        id.0,
                        to_db(s.at),
                        RES_RAW,
                        to_db(s.total),
                        s.limit.map(to_db),
                        s.rss_bytes.map(to_db),
                        s.cpu_seconds,
                        s.threads.map(i64::from),
                        i64::from(s.descendants),
                        kinds,
                    ])?;
                }
            }
            // synchronous=NORMAL: the commit reaches the WAL file (the OS page
            // cache) before this returns, so a SIGKILL right after loses nothing;
            // the WAL is fsynced only at checkpoints, so a power loss can lose the
            // last few commits, never corrupt the file.
            tx.commit()?;
            Ok(())
        })
    }

    /// Appends an event to the log.
    pub fn record_event(&self, event: &Event) -> Result<(), StoreError> {
        self.run("recording an event", |conn| {
            conn.prepare_cached(
                "INSERT INTO events
                     (at, target, pid, kind, rule, severity, value, message, subject, notified)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                to_db(event.at),
                event.subject.to_string(),
                event.pid.map(i64::from),
                enum_name(&event.kind)?,
                event.rule,
                event.severity.name(),
                event.value,
                event.message,
                serde_json::to_string(&event.subject)?,
                event.notified,
            ])?;
            Ok(())
        })
    }

    /// Stores a forensic snapshot.
    pub fn record_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.run("recording a snapshot", |conn| {
            let body = serde_json::to_string(&snapshot.body)?;
            conn.execute(
                "INSERT INTO snapshots (at, target, pid, start_time, reason, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    to_db(snapshot.at),
                    snapshot.target,
                    i64::from(snapshot.process.pid),
                    start_time_to_db(snapshot.process.start_time),
                    snapshot.reason,
                    body,
                ],
            )?;
            Ok(())
        })
    }
}
