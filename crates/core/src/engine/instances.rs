//! What the engine keeps per watched process between ticks: its series in the
//! store, its recent samples (the trend's window), its limit, its descriptors
//! by kind and their baseline, and its last row.

use super::{Engine, age};
use crate::diagnose::{Baseline, BaselineReason, Diagnosis, Evidence, Mark, diagnose};
use crate::model::{Event, EventKind, Sample, SeriesKey, Severity, UnixMillis, unix_millis};
use crate::status::{ProcessSummary, TargetStatus};
use crate::store::{SeriesId, Store};
use crate::summary::FdSummary;
use crate::window::SampleWindow;
use leakwatch_probe::{FdLimit, LimitSource, ProcessId, ProcessInfo};
use std::sync::Arc;
use std::time::Duration;

/// One watched process (or one target that is down).
#[derive(Debug)]
pub(super) struct Instance {
    pub(super) target: String,
    pub(super) process: Option<ProcessSummary>,
    pub(super) series: Option<(SeriesKey, Option<SeriesId>)>,
    /// Recent samples, folded into a bounded number of buckets: the trend and the
    /// sparkline. The full history lives in the store.
    pub(super) history: SampleWindow,
    pub(super) first: Option<Sample>,
    pub(super) limit: Option<FdLimit>,
    /// Whether `limit` was resolved for this series (`None` then means unknown).
    pub(super) limit_read: bool,
    pub(super) status: Option<TargetStatus>,
    /// The last descriptor table read by kind, for [`FD_KINDS_MAX_AGE`].
    pub(super) kinds: Option<KindsRead>,
    /// The descriptors open at the series' first read by kind: what survives
    /// since is what the diagnosis reads.
    pub(super) baseline: Option<Baseline>,
    /// The diagnosis of the last read by kind.
    pub(super) diagnosis: Diagnosis,
    /// When this run first found the target down or unreadable (see
    /// [`TargetStatus::down_since`]).
    pub(super) down_since: Option<UnixMillis>,
    /// The baseline the user marked on this process, if any.
    pub(super) marked: Option<(Mark, Baseline)>,
}

/// A process's descriptors summarised by kind, when, and the count
/// ([`Probe::fd_count`]) taken right before.
#[derive(Debug)]
pub(super) struct KindsRead {
    pub(super) id: ProcessId,
    pub(super) count: usize,
    pub(super) at: UnixMillis,
    pub(super) summary: Arc<FdSummary>,
}

impl Instance {
    /// A process of `target` not sampled yet (or a target that is down).
    pub(super) fn new(target: &str) -> Self {
        Self {
            target: target.to_owned(),
            process: None,
            series: None,
            history: SampleWindow::default(),
            first: None,
            limit: None,
            limit_read: false,
            status: None,
            kinds: None,
            baseline: None,
            diagnosis: Diagnosis::default(),
            down_since: None,
            marked: None,
        }
    }
}

/// A target as one poll sees it: its config name, the instance (name with `[pid]`
/// when several processes match), and what the poll needs of its config.
#[derive(Debug)]
pub(super) struct TargetView {
    pub(super) name: String,
    pub(super) instance: String,
    /// The `[[watch]]` name; `None` in automatic mode.
    pub(super) configured: Option<String>,
    /// The pid when it is part of the row's identity (several matches, automatic).
    pub(super) pid: Option<u32>,
    /// Whether a restart is possible, else why not.
    pub(super) restart: Result<(), String>,
    pub(super) selector: String,
    pub(super) window: Duration,
    pub(super) fd_limit: Option<u64>,
}

impl Engine {
    /// `process`'s descriptors by kind: read afresh, or the last read while the
    /// count is unchanged and younger than [`FD_KINDS_MAX_AGE`]. `None` when the
    /// pid now belongs to another process.
    pub(super) fn fd_summary(
        &mut self,
        instance_name: &str,
        process: &ProcessInfo,
        now: UnixMillis,
    ) -> Result<Option<Arc<FdSummary>>, leakwatch_probe::Error> {
        let pid = process.id.pid;
        // Compared with the count taken before the last read by kind, not with
        // what that read listed: the count includes descriptors a syscall has
        // reserved but not installed yet (a thread blocked in accept(2) holds one).
        let count = self.probe.fd_count(pid)?;
        let reusable =
            self.instances.get(instance_name).and_then(|i| i.kinds.as_ref()).filter(|k| {
                k.id == process.id
                    && k.count == count
                    && age(k.at, now).is_some_and(|a| a < self.fd_kinds_max_age)
            });
        if let Some(kinds) = reusable {
            // The count was of whoever holds the pid now.
            return Ok(
                (self.probe.identity(pid)? == process.id).then(|| Arc::clone(&kinds.summary))
            );
        }
        let table = self.probe.fd_kinds(pid)?;
        if table.id != process.id {
            return Ok(None);
        }
        let summary = Arc::new(FdSummary::from_fds(&table.fds));
        if let Some(instance) = self.instances.get_mut(instance_name) {
            // Survivors since the series' first read: a read by kind already
            // holds every identity, so this costs a set lookup per descriptor.
            match &instance.baseline {
                Some(baseline) => {
                    let survivors = baseline.survivors(&table, now);
                    instance.diagnosis =
                        diagnose(&Evidence { survivors: Some(&survivors), ..Evidence::default() });
                }
                None => {
                    instance.baseline =
                        Some(Baseline::new(&table, now, BaselineReason::SeriesStart));
                }
            }
            instance.kinds =
                Some(KindsRead { id: process.id, count, at: now, summary: Arc::clone(&summary) });
        }
        Ok(Some(summary))
    }

    /// The limit for percentages and the ETA (DESIGN.md, "File descriptor kinds"),
    /// see [`resolve_limit`]; `None` when unknown. Read once per series.
    pub(super) fn effective_limit(
        &mut self,
        instance: &str,
        pid: u32,
        configured: Option<u64>,
    ) -> Option<FdLimit> {
        if let Some(instance) = self.instances.get(instance).filter(|i| i.limit_read) {
            return instance.limit;
        }
        let limit = resolve_limit(self.probe.fd_limit(pid).ok(), configured);
        if let Some(instance) = self.instances.get_mut(instance) {
            instance.limit = limit;
            instance.limit_read = true;
        }
        limit
    }

    /// Starts a new series when the instance's process identity changed (a
    /// restart, or a new process on the port).
    pub(super) fn ensure_series(
        &mut self,
        target: &TargetView,
        process: &ProcessInfo,
        now: UnixMillis,
        events: &mut Vec<Event>,
    ) {
        let instance = self
            .instances
            .entry(target.instance.to_owned())
            .or_insert_with(|| Instance::new(&target.name));
        if instance.series.as_ref().is_some_and(|(key, _)| key.process == process.id) {
            return;
        }
        let previous = instance.series.take();
        if let (Some((_, Some(old))), Some(store)) = (&previous, &self.store)
            && let Err(e) = store.end_series(*old, now)
        {
            tracing::warn!("{e}");
        }
        let key = SeriesKey { target: target.instance.to_owned(), process: process.id };
        let series_id = self.store.as_ref().and_then(|store| {
            store
                .begin_series(&key, &process.name, &process.argv, now)
                .map_err(|e| tracing::warn!("{e}"))
                .ok()
        });
        instance.series = Some((key, series_id));
        instance.history.clear();
        instance.first = None;
        if let (Some(series_id), Some(store)) = (series_id, &self.store) {
            seed_window(instance, store, series_id, target.window, now);
        }
        instance.limit = None;
        instance.limit_read = false;
        instance.baseline = None;
        instance.diagnosis = Diagnosis::default();
        instance.marked = None;
        instance.process = Some(ProcessSummary {
            id: process.id,
            name: process.name.clone(),
            argv: process.argv.to_vec(),
            started_at: unix_millis(process.started_at),
        });
        let message = match previous {
            Some((old, _)) => format!(
                "{}: now pid {} (was pid {}): a new series starts",
                target.instance, process.id.pid, old.process.pid
            ),
            None => {
                format!("{}: watching pid {} ({})", target.instance, process.id.pid, process.name)
            }
        };
        events.push(Event {
            at: now,
            target: target.instance.to_owned(),
            pid: Some(process.id.pid),
            kind: EventKind::SeriesStarted,
            rule: None,
            severity: Severity::Ok,
            value: None,
            message,
        });
    }

    pub(super) fn end_series_of(&mut self, instance: &str, now: UnixMillis) {
        let Some(instance) = self.instances.get_mut(instance) else { return };
        if let (Some((_, Some(id))), Some(store)) = (instance.series.take(), &self.store)
            && let Err(e) = store.end_series(id, now)
        {
            tracing::warn!("{e}");
        }
        instance.history.clear();
        instance.first = None;
        instance.limit = None;
        instance.limit_read = false;
    }

    pub(super) fn end_instance(&mut self, name: &str, now: UnixMillis) {
        self.end_series_of(name, now);
        self.instances.remove(name);
        self.rule_states.retain(|(instance, _), _| instance != name);
    }

    /// Drops instances no longer watched (a process that exited from a
    /// multi-process target, a target removed from the config), so memory follows
    /// what is watched now.
    pub(super) fn forget_unseen(&mut self, seen: &[String], now: UnixMillis) {
        let unseen: Vec<String> =
            self.instances.keys().filter(|name| !seen.contains(name)).cloned().collect();
        for name in unseen {
            self.end_instance(&name, now);
        }
        let targets: Vec<&str> = self.config.watch.iter().map(|t| t.name.as_str()).collect();
        self.next_due.retain(|name, _| targets.contains(&name.as_str()));
        self.port_memos.retain(|name, _| targets.contains(&name.as_str()));
    }
}

/// Fills a new instance's window from the store's samples of `series` inside
/// `window`: a series continued after the app or daemon restarts (the same
/// process, still running) has its slope at the first tick, not a window later.
pub(super) fn seed_window(
    instance: &mut Instance,
    store: &Store,
    series: SeriesId,
    window: Duration,
    now: UnixMillis,
) {
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    let samples = match store.samples(series, now.saturating_sub(window_ms)) {
        Ok(samples) => samples,
        Err(error) => {
            tracing::warn!("seeding the trend from history: {error}");
            return;
        }
    };
    instance.history.set_window(window);
    for sample in samples.iter().filter(|s| s.at <= now) {
        instance.history.push(sample);
    }
    instance.first = samples.into_iter().next();
}

/// The limit percentages and the ETA are measured against: the process's own
/// where the OS tells it, else the target's configured `fd_limit`, else unknown
/// (`None`). A platform default (launchd's 256 on macOS, for a process whose own
/// limit cannot be read) is not the process's: Node, Go, the JVM and Chromium
/// raise their own far above it, so rules measured against it would call every
/// big holder critical. Unknown leaves percentage thresholds and the ETA silent,
/// while absolute thresholds and the slope still apply.
pub fn resolve_limit(probed: Option<FdLimit>, configured: Option<u64>) -> Option<FdLimit> {
    let own =
        probed.filter(|l| matches!(l.source, LimitSource::ProcLimits | LimitSource::Getrlimit));
    own.or_else(|| {
        configured.map(|soft| FdLimit {
            soft: Some(soft),
            hard: None,
            source: LimitSource::Configured,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use leakwatch_probe::LimitSource;

    fn limit(soft: u64, source: LimitSource) -> FdLimit {
        FdLimit { soft: Some(soft), hard: None, source }
    }

    #[test]
    fn an_unreadable_limit_is_unknown_not_the_platform_default() {
        // What the macOS probe answers for another process: launchd's default.
        let assumed = Some(limit(256, LimitSource::LaunchdDefault));
        assert_eq!(resolve_limit(assumed, None), None);
        assert_eq!(resolve_limit(None, None), None);
    }

    #[test]
    fn a_configured_fd_limit_stands_in_for_an_unknown_one() {
        let assumed = Some(limit(256, LimitSource::LaunchdDefault));
        assert_eq!(
            resolve_limit(assumed, Some(10_240)),
            Some(limit(10_240, LimitSource::Configured))
        );
    }

    #[test]
    fn the_process_own_limit_wins_over_a_configured_one() {
        let own = Some(limit(65_536, LimitSource::ProcLimits));
        assert_eq!(resolve_limit(own, Some(1024)), own);
        let own = Some(limit(4096, LimitSource::Getrlimit));
        assert_eq!(resolve_limit(own, None), own);
    }
}
