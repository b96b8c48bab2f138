//! One tick: read the process table when due, locate and sample every due
//! target (or the top holders in automatic mode), and hand the samples and
//! events to the rules, the autopilot, the store and the notifier.

use super::instances::{Instance, TargetView};
use super::status::reading_of;
use super::{AUTOMATIC_TARGETS, Engine, FULL_SCAN_EVERY, RECENT_EVENTS, age};
use crate::actions::locate::{NotFound, locate};
use crate::config::Target;
use crate::model::{Event, Sample, Severity, UnixMillis, unix_millis};
use crate::orphans::find_orphans;
use crate::rules::Observation;
use crate::status::{KindGrowth, Reading, Status, TargetState, TargetStatus, TopKind};
use crate::store::SeriesId;
use crate::tree::ProcessTree;
use crate::trend::{Trend, what_grew};
use leakwatch_probe::{ErrorKind, ProcessId, ProcessInfo, ProcessState};
use std::sync::Arc;
use std::time::SystemTime;

impl Engine {
    /// One poll of every due target. Never fails: what cannot be read is shown as
    /// such in the status and the events.
    pub fn tick(&mut self) -> Arc<Status> {
        self.tick_at(unix_millis(SystemTime::now()))
    }

    /// [`Engine::tick`] at `now` (the wall clock, in milliseconds). Every time the
    /// engine measures (the trend's window, rule samples, hysteresis and
    /// cooldowns, the circuit breaker, idle orphans, when the table is read
    /// again, how long a read by kind is reused) is on this clock, so a test
    /// drives hours of a target's life in as many ticks, without sleeping. Ticks
    /// are expected in order; a clock set back is taken as time passed.
    pub fn tick_at(&mut self, now: UnixMillis) -> Arc<Status> {
        #[cfg(test)]
        if self.fail_ticks > 0 {
            self.fail_ticks -= 1;
            panic!("a tick that cannot go on (test fault)");
        }
        self.tick += 1;
        self.reload(false, now);
        let mut events = std::mem::take(&mut self.pending_events);
        let scanned = self.refresh_table(now);

        let mut seen: Vec<String> = Vec::new();
        let mut batch: Vec<(SeriesId, Sample)> = Vec::new();
        let targets: Vec<Target> = self.config.watch.clone();
        if targets.is_empty() {
            self.poll_automatic(now, &mut seen, &mut events, &mut batch);
        } else {
            for target in &targets {
                self.poll_target(target, now, &mut seen, &mut events, &mut batch);
            }
        }
        self.mark_watched_orphans();
        if scanned {
            self.evaluate_orphan_rules(now, &mut events);
        }
        self.run_autopilot(scanned, now, &mut events);
        self.forget_unseen(&seen, now);
        self.write_history(&batch, &events, now);
        self.notify(&events, now);
        for event in &events {
            if self.recent_events.len() == RECENT_EVENTS {
                self.recent_events.pop_front();
            }
            self.recent_events.push_back(event.clone());
        }
        Arc::new(self.status(now))
    }

    /// Reads the whole process table when it is due (see [`FULL_SCAN_EVERY`]),
    /// and with it finds the orphans; returns whether it did.
    pub(super) fn refresh_table(&mut self, now: UnixMillis) -> bool {
        if self.table_read_at.is_some_and(|at| age(at, now).is_some_and(|a| a < FULL_SCAN_EVERY)) {
            return false;
        }
        match self.probe.processes() {
            Ok(table) => {
                self.table = table;
                self.table_read_at = Some(now);
                self.close_stale_series();
                if self.config.watch.is_empty() {
                    self.automatic_pids = self.top_descriptor_holders();
                }
                self.scan_orphans(now);
                true
            }
            Err(error) => {
                tracing::warn!("reading the process table: {error}");
                false
            }
        }
    }

    /// Ends the series a previous run left open whose process is gone: it died
    /// while no engine watched, and its series ends at its last sample rather
    /// than staying open-ended. Series of processes still running are continued.
    pub(super) fn close_stale_series(&mut self) {
        if self.stale_series_closed {
            return;
        }
        self.stale_series_closed = true;
        let Some(store) = &self.store else { return };
        let alive: std::collections::HashSet<ProcessId> = self.table.iter().map(|p| p.id).collect();
        match store.end_series_of_dead_processes(|id| alive.contains(&id)) {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                "ended {n} series of processes that exited while Leakwatch was not running"
            ),
            Err(error) => tracing::warn!("{error}"),
        }
    }

    /// Updates the lineage and idle times from the table just read, then finds
    /// the orphan trees: the current user's, or everyone's when the config allows
    /// acting on other users' processes.
    pub(super) fn scan_orphans(&mut self, now: UnixMillis) {
        self.lineage.record(&self.table, now);
        self.idle.observe(&self.table, now);
        #[cfg(unix)]
        let only_uid = (!self.config.allow_other_users).then(leakwatch_probe::current_uid);
        #[cfg(not(unix))]
        let only_uid = None;
        let probe = &self.probe;
        self.orphans = find_orphans(
            &self.table,
            &self.lineage,
            &self.idle,
            &self.config.orphans.patterns,
            only_uid,
            |pid| probe.fd_count(pid).ok().map(|n| n as u64),
            now,
        );
    }

    /// Flags the orphan trees that hold a configured target's process (after
    /// this tick's polls, so the first tick already knows), which select-all,
    /// the tray's clean-up and the reaper then leave alone.
    pub(super) fn mark_watched_orphans(&mut self) {
        let configured: Vec<&str> = self.config.watch.iter().map(|t| t.name.as_str()).collect();
        let watched: Vec<(&str, ProcessId)> = self
            .instances
            .values()
            .filter(|i| configured.contains(&i.target.as_str()))
            .filter_map(|i| Some((i.target.as_str(), i.process.as_ref()?.id)))
            .collect();
        for tree in &mut self.orphans {
            tree.mark_watched(watched.iter().copied());
        }
    }

    /// The current user's processes holding the most descriptors.
    pub(super) fn top_descriptor_holders(&self) -> Vec<u32> {
        #[cfg(unix)]
        let me = leakwatch_probe::current_uid();
        #[cfg(not(unix))]
        let me = 0;
        let own = std::process::id();
        let mut counts: Vec<(usize, u32)> = self
            .table
            .iter()
            .filter(|p| p.uid == me && !p.is_kernel_thread && p.id.pid != own)
            .filter_map(|p| Some((self.probe.fd_count(p.id.pid).ok()?, p.id.pid)))
            .collect();
        counts.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        counts.into_iter().take(AUTOMATIC_TARGETS).map(|(_, pid)| pid).collect()
    }

    pub(super) fn poll_automatic(
        &mut self,
        now: UnixMillis,
        seen: &mut Vec<String>,
        events: &mut Vec<Event>,
        batch: &mut Vec<(SeriesId, Sample)>,
    ) {
        let rules = self.config.auto_rules();
        let window = self.config.defaults.window;
        for pid in self.automatic_pids.clone() {
            let Ok(process) = self.probe.process(pid) else { continue };
            if matches!(process.state, ProcessState::Zombie | ProcessState::Dead) {
                continue;
            }
            let name = format!("{}[{pid}]", process.name);
            let target = TargetView {
                name: name.clone(),
                instance: name.clone(),
                configured: None,
                pid: Some(pid),
                restart: Err("not a watched target: Watch it to set up a restart".to_owned()),
                selector: "automatic: top descriptor holder".to_owned(),
                window,
                fd_limit: self.config.defaults.fd_limit,
            };
            self.poll_process(&target, &process, &rules, now, events, batch);
            seen.push(name);
        }
    }

    pub(super) fn poll_target(
        &mut self,
        target: &Target,
        now: UnixMillis,
        seen: &mut Vec<String>,
        events: &mut Vec<Event>,
        batch: &mut Vec<(SeriesId, Sample)>,
    ) {
        let interval = self.options.interval.unwrap_or_else(|| self.config.interval(target));
        let due = self.next_due.get(&target.name).copied().unwrap_or(0);
        if now < due {
            // Not due: keep its instances as they are.
            seen.extend(
                self.instances
                    .iter()
                    .filter(|(_, i)| i.target == target.name)
                    .map(|(name, _)| name.clone()),
            );
            return;
        }
        // Half an interval of slack keeps a target on the loop's beat.
        let interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        self.next_due.insert(target.name.clone(), now + interval_ms / 2);
        let rules = self.config.effective_rules(target);
        let memo = self.port_memos.entry(target.name.clone()).or_default();
        let located = locate(&target.selector, &self.table, &self.probe, memo);
        let selector = target.selector.to_string();
        let window = self.config.window(target);
        let fd_limit = self.config.fd_limit(target);
        let restart = if target.restart.is_some() {
            Ok(())
        } else {
            Err("no [watch.restart] for this target: set up a restart first".to_owned())
        };
        let view = |instance: &str, pid: Option<u32>| TargetView {
            name: target.name.clone(),
            instance: instance.to_owned(),
            configured: Some(target.name.clone()),
            pid,
            restart: restart.clone(),
            selector: selector.clone(),
            window,
            fd_limit,
        };
        let pids = match located {
            Ok(pids) => pids,
            // A read that did not finish says nothing about the process: the
            // row says so, and neither the `down` rule nor a restart acts on it.
            Err(reason @ NotFound::PidfileTimedOut(_)) => {
                self.target_unknown(&view(&target.name, None), &reason);
                seen.push(target.name.clone());
                return;
            }
            Err(reason) => {
                self.target_down(&view(&target.name, None), &reason, &rules, now, events);
                seen.push(target.name.clone());
                return;
            }
        };
        let several = pids.len() > 1;
        let mut any = false;
        for pid in pids {
            let process = match self.probe.process(pid) {
                // A zombie has exited: it holds no descriptors and serves nothing,
                // so it is down, not up with an empty table.
                Ok(process)
                    if matches!(process.state, ProcessState::Zombie | ProcessState::Dead) =>
                {
                    continue;
                }
                Ok(process) => process,
                Err(e) if e.kind() == ErrorKind::NoSuchProcess => continue,
                Err(e) => {
                    tracing::debug!("{}: {e}", target.name);
                    continue;
                }
            };
            let instance =
                if several { format!("{}[{pid}]", target.name) } else { target.name.clone() };
            let view = view(&instance, several.then_some(pid));
            self.poll_process(&view, &process, &rules, now, events, batch);
            seen.push(instance.clone());
            any = true;
        }
        if !any {
            self.target_down(&view(&target.name, None), &NotFound::NoMatch, &rules, now, events);
            seen.push(target.name.clone());
        }
    }

    /// Samples one process of a target, and evaluates its rules.
    pub(super) fn poll_process(
        &mut self,
        target: &TargetView,
        process: &ProcessInfo,
        rules: &[crate::config::RuleSpec],
        now: UnixMillis,
        events: &mut Vec<Event>,
        batch: &mut Vec<(SeriesId, Sample)>,
    ) {
        let pid = process.id.pid;
        let instance_name = target.instance.clone();
        self.ensure_series(target, process, now, events);
        let summary = match self.fd_summary(&instance_name, process, now) {
            Ok(Some(summary)) => summary,
            // The pid belongs to another process now: the next tick sees it.
            Ok(None) => return,
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                tracing::debug!("{instance_name}: {e}");
                let reason = unreadable_reason(process);
                let mut status = self.bare_status(target, TargetState::PermissionDenied(reason));
                if let Some(instance) = self.instances.get_mut(&instance_name) {
                    let since = *instance.down_since.get_or_insert(now);
                    status.down_since = Some(since);
                    instance.status = Some(status);
                }
                return;
            }
            Err(_) => return,
        };
        let limit = self.effective_limit(&instance_name, pid, target.fd_limit);
        let descendants = ProcessTree::new(&self.table)
            .subtree(pid)
            .map_or(0, |nodes| u32::try_from(nodes.len().saturating_sub(1)).unwrap_or(u32::MAX));
        let sample = Sample {
            at: now,
            total: summary.total as u64,
            kinds: summary.kinds.iter().map(|(kind, n)| (*kind, *n as u64)).collect(),
            limit: limit.and_then(|l| l.soft),
            rss_bytes: process.rss_bytes,
            cpu_seconds: process.cpu_time.map(|d| d.as_secs_f64()),
            threads: process.threads,
            descendants,
        };
        let Some(instance) = self.instances.get_mut(&instance_name) else { return };
        instance.history.set_window(target.window);
        instance.history.push(&sample);
        if instance.first.is_none() {
            instance.first = Some(sample.clone());
        }
        if let Some((_, Some(series_id))) = &instance.series {
            batch.push((*series_id, sample.clone()));
        }
        let trend = instance.history.trend(now);
        let observation = Observation {
            sample: Some(&sample),
            summary: Some(summary.as_ref()),
            trend: Some(&trend),
            ..Observation::default()
        };
        let rule_statuses = self.evaluate_rules(
            &instance_name,
            Some(pid),
            rules,
            &observation,
            &trend,
            sample.limit,
            now,
            events,
        );
        let Some(instance) = self.instances.get_mut(&instance_name) else { return };
        instance.down_since = None;
        let reading = reading_of(&sample, &trend);
        let mut severity = rule_statuses.iter().map(|r| r.severity).max().unwrap_or(Severity::Ok);
        if reading == Reading::AtLimit {
            // Calls that open a descriptor fail now, whatever the rules say.
            severity = Severity::Critical;
        }
        let grew = instance
            .first
            .as_ref()
            .map(|first| {
                what_grew(first, &sample)
                    .into_iter()
                    .map(|g| KindGrowth { kind: g.kind, first: g.first, now: g.now })
                    .collect()
            })
            .unwrap_or_default();
        let history = instance.history.sparkline();
        instance.status = Some(TargetStatus {
            name: instance_name.clone(),
            target: target.configured.clone(),
            instance: target.pid,
            restartable: target.restart.is_ok(),
            restart_unavailable: target.restart.clone().err(),
            limit_unknown: limit.is_none(),
            top_kind: TopKind::pick(&sample.kinds, &trend.kinds_per_hour),
            selector: target.selector.clone(),
            state: TargetState::Up,
            process: instance.process.clone(),
            severity,
            rules: rule_statuses,
            sample: Some(sample),
            limit,
            slope_per_hour: trend.total_per_hour,
            kind_slopes_per_hour: trend.kinds_per_hour.clone(),
            eta_seconds: trend.eta.map(|d| d.as_secs_f64()),
            top_paths: summary.paths.iter().take(10).cloned().collect(),
            grew,
            history,
            diagnosis: instance.diagnosis.line(),
            signatures: instance.diagnosis.signatures(),
            reading,
            down_since: None,
        });
    }

    /// A target whose process cannot be told now (its pidfile read timed out):
    /// its series and rule states are kept as they were, for the read may
    /// answer next tick, and its row says why at severity ok, so that nothing
    /// automatic (a `down` rule, a restart) acts on what is not known.
    pub(super) fn target_unknown(&mut self, target: &TargetView, reason: &NotFound) {
        let mut status = self.bare_status(target, TargetState::Unknown(reason.to_string()));
        status.severity = Severity::Ok;
        let instance = self
            .instances
            .entry(target.name.to_owned())
            .or_insert_with(|| Instance::new(&target.name));
        instance.status = Some(status);
    }

    /// A target with no process: its series end and its `down` rule is fed.
    pub(super) fn target_down(
        &mut self,
        target: &TargetView,
        reason: &NotFound,
        rules: &[crate::config::RuleSpec],
        now: UnixMillis,
        events: &mut Vec<Event>,
    ) {
        let gone: Vec<String> = self
            .instances
            .iter()
            .filter(|(name, i)| i.target == target.name && name.as_str() != target.name)
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            self.end_instance(&name, now);
        }
        self.end_series_of(&target.name, now);
        let observation = Observation::default();
        let rule_statuses = self.evaluate_rules(
            &target.name,
            None,
            rules,
            &observation,
            &Trend::default(),
            None,
            now,
            events,
        );
        let mut status = self.bare_status(target, TargetState::Down(reason.to_string()));
        // A watched server that is not running is what the user must hear
        // about first, whatever its `down` rule's sample count.
        status.severity = Severity::Critical;
        status.rules = rule_statuses;
        let instance = self
            .instances
            .entry(target.name.to_owned())
            .or_insert_with(|| Instance::new(&target.name));
        status.down_since = Some(*instance.down_since.get_or_insert(now));
        instance.status = Some(status);
    }
}

/// Why a process that exists cannot be read, in words ("owned by another
/// user, cannot be read"), rather than the OS error twice over.
fn unreadable_reason(process: &ProcessInfo) -> String {
    #[cfg(unix)]
    let other = process.uid != leakwatch_probe::current_uid();
    #[cfg(not(unix))]
    let other = true;
    if other {
        format!("owned by another user (uid {}), cannot be read", process.uid)
    } else {
        "its descriptors cannot be read (permission denied)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::source::ConfigSource;
    use crate::engine::EngineOptions;
    use std::time::Duration;

    /// Regression (issue 10): a pidfile read that timed out (a hung mount) was
    /// taken for the target being down, which fed the `down` rule and automatic
    /// restarts. It is unknown: shown on the row, acted on by nothing.
    #[test]
    fn timed_out_pidfile_read_is_unknown_never_down_nor_restarted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.toml");
        // `.hung`: the crate's test reader never returns from it.
        let pidfile = dir.path().join("app.pid.hung");
        std::fs::write(
            &config,
            format!(
                "[notify]\nenabled = false\n\n[[watch]]\nname = \"stuck\"\npidfile = '{}'\n\n\
                 [watch.rules]\ndown = {{ critical = true, samples = 1 }}\n\n\
                 [watch.restart]\ncommand = [\"true\"]\n\n[watch.auto_restart]\non = \"warning\"\n",
                pidfile.display()
            ),
        )
        .expect("config");
        let mut engine = Engine::new(EngineOptions {
            config: ConfigSource::Named(config),
            store_path: None,
            notifier: Arc::new(crate::notifier::NullNotifier),
            interval: Some(Duration::from_millis(20)),
        })
        .expect("engine");
        let mut events = Vec::new();
        let mut now = unix_millis(SystemTime::now());
        let mut status = engine.tick_at(now);
        for _ in 0..5 {
            events.extend(status.recent_events.iter().cloned());
            // Past the 20 ms interval: every tick reads the pidfile again.
            now += 30;
            status = engine.tick_at(now);
        }
        engine.finish();
        let row = status.targets.iter().find(|t| t.name == "stuck").expect("a row for it");
        let TargetState::Unknown(why) = &row.state else {
            panic!("not unknown: {:?}", row.state);
        };
        assert!(why.contains("timed out") && why.contains("app.pid.hung"), "{why}");
        assert_eq!(row.severity, Severity::Ok);
        assert!(
            events.iter().all(|e| e.rule.as_deref() != Some("down")),
            "the down rule was fed: {events:#?}"
        );
        assert!(status.restarts.get("stuck").is_none_or(|n| *n == 0), "{:?}", status.restarts);
        assert!(
            !events.iter().any(|e| e.message.contains("restart")),
            "a restart followed: {events:#?}"
        );
    }
}
