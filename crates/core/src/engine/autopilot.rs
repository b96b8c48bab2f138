//! The engine's automatic actions: restarting a target whose rules reached its
//! `auto_restart.on` severity, through a [`CircuitBreaker`], and reaping orphan
//! trees idle longer than `[orphans] idle_reap_after`. Both are opt-in.
//!
//! An action takes seconds (a grace period, a health check), so each runs on a
//! thread of its own and the engine collects the result on a later tick: a tick
//! never waits for one, and a target is never acted on twice at once.

use crate::actions::kill::{self, Guard, KillReport, OutcomeKind};
use crate::actions::restart::{self, CircuitBreaker, RestartReport};
use crate::config::{Config, Target};
use crate::model::{Event, EventKind, Severity, UnixMillis};
use crate::store::{Snapshot, Store};
use leakwatch_probe::{Probe, ProcessId};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::Child;
use std::thread::JoinHandle;

/// What a finished action thread hands back.
#[derive(Debug)]
enum Done {
    Restart { target: String, result: Result<RestartReport, String>, snapshots: Vec<Snapshot> },
    Reap { roots: Vec<ProcessId>, result: Result<KillReport, String> },
}

/// Automatic actions in flight and their bookkeeping.
#[derive(Debug, Default)]
pub struct Autopilot {
    breakers: HashMap<String, CircuitBreaker>,
    /// Targets whose breaker is open (reported once until it closes).
    tripped: HashSet<String>,
    in_flight: HashMap<String, JoinHandle<(Done, Option<Child>)>>,
    /// Servers started by restarts, reaped when they exit so none stays a zombie.
    children: Vec<Child>,
    /// Restarts performed, per target, since the engine started.
    restarts: BTreeMap<String, u64>,
    /// Orphan roots handed to a reaper, so a tree is not reaped twice.
    reaping: HashSet<ProcessId>,
    /// The engine's latest diagnosis per target, written into the forensic
    /// snapshot of an automatic restart so the evidence says what leaked.
    diagnoses: HashMap<String, String>,
}

/// The in-flight key of the reaper (targets are keyed by their name).
const REAPER: &str = "\u{0}orphan-reaper";

impl Autopilot {
    /// Remembers `target`'s latest one-line diagnosis (or forgets it).
    pub fn note_diagnosis(&mut self, target: &str, line: Option<String>) {
        match line {
            Some(line) => {
                self.diagnoses.insert(target.to_owned(), line);
            }
            None => {
                self.diagnoses.remove(target);
            }
        }
    }

    /// Restarts performed so far, per target.
    pub fn restarts(&self) -> &BTreeMap<String, u64> {
        &self.restarts
    }

    /// Collects finished actions as events, writing their forensic snapshots to
    /// `store`, and reaps servers started earlier that have exited.
    pub fn collect(&mut self, store: Option<&Store>, now: UnixMillis, events: &mut Vec<Event>) {
        self.children.retain_mut(|child| matches!(child.try_wait(), Ok(None)));
        let finished: Vec<String> = self
            .in_flight
            .iter()
            .filter(|(_, handle)| handle.is_finished())
            .map(|(key, _)| key.clone())
            .collect();
        for key in finished {
            let Some(handle) = self.in_flight.remove(&key) else { continue };
            self.settle(&key, handle.join(), store, now, events);
        }
    }

    /// Turns an action's end into events and bookkeeping: a restart's forensic
    /// snapshots go to `store`, a server it started is reaped when it exits.
    fn settle(
        &mut self,
        key: &str,
        joined: std::thread::Result<(Done, Option<Child>)>,
        store: Option<&Store>,
        now: UnixMillis,
        events: &mut Vec<Event>,
    ) {
        let Ok((done, child)) = joined else {
            events.push(action_event(
                now,
                key,
                Severity::Critical,
                "an automatic action panicked".into(),
            ));
            return;
        };
        self.children.extend(child);
        match done {
            Done::Restart { target, result, snapshots } => {
                if let Some(store) = store {
                    for snapshot in &snapshots {
                        if let Err(e) = store.record_snapshot(snapshot) {
                            tracing::warn!("{e}");
                        }
                    }
                }
                let event = match result {
                    Ok(report) => {
                        *self.restarts.entry(target.clone()).or_insert(0) += 1;
                        let message = format!(
                            "{target}: restarted automatically via {}: {}{}",
                            report.strategy,
                            report.new_pid.map_or_else(
                                || "new pid unknown".into(),
                                |p| format!("now pid {p}")
                            ),
                            report.healthy_after.map_or_else(String::new, |d| {
                                format!(", healthy after {:.1} s", d.as_secs_f64())
                            }),
                        );
                        action_event(now, &target, Severity::Warning, message)
                    }
                    Err(error) => action_event(
                        now,
                        &target,
                        Severity::Critical,
                        format!("{target}: automatic restart failed: {error}"),
                    ),
                };
                events.push(event);
            }
            Done::Reap { roots, result } => {
                for root in &roots {
                    self.reaping.remove(root);
                }
                let message = match result {
                    Ok(report) => {
                        let protected = report.with_outcome(OutcomeKind::Protected).len();
                        format!(
                            "orphans: reaped {} idle tree(s), {} process(es): {}{}",
                            roots.len(),
                            report.processes.len() - protected,
                            if report.processes.iter().all(|p| {
                                p.outcome.is_gone() || p.outcome.kind() == OutcomeKind::Protected
                            }) {
                                "all gone"
                            } else {
                                "some survived"
                            },
                            match protected {
                                0 => String::new(),
                                n => format!("; {n} protected process(es) left alone"),
                            }
                        )
                    }
                    Err(error) => format!("orphans: reaping idle trees failed: {error}"),
                };
                events.push(action_event(now, super::ORPHANS, Severity::Warning, message));
            }
        }
    }

    /// Starts an automatic restart of `target` if its configured trigger is met,
    /// nothing is in flight for it, and its circuit breaker allows one.
    pub fn consider_restart(
        &mut self,
        config: &Config,
        target: &Target,
        severity: Severity,
        now: UnixMillis,
        events: &mut Vec<Event>,
    ) {
        let (Some(auto), Some(_)) = (target.auto_restart, target.restart.as_ref()) else { return };
        if severity < auto.on
            || severity == Severity::Ok
            || self.in_flight.contains_key(&target.name)
        {
            return;
        }
        let breaker = self.breakers.entry(target.name.clone()).or_default();
        if !breaker.try_acquire(now, auto.max, auto.per) {
            if self.tripped.insert(target.name.clone()) {
                events.push(action_event(
                    now,
                    &target.name,
                    Severity::Critical,
                    format!(
                        "{}: circuit breaker open: {} automatic restarts within {}; not \
                         restarting again until the window passes (restart it by hand)",
                        target.name,
                        auto.max,
                        crate::model::human_duration(auto.per)
                    ),
                ));
            }
            return;
        }
        self.tripped.remove(&target.name);
        let target = target.clone();
        let guard = Guard::from_config(config);
        let reason = format!("automatic restart: {} reached {}", target.name, severity.name());
        events.push(action_event(
            now,
            &target.name,
            Severity::Warning,
            format!("{} ({}/{} in the window)", reason, breaker.count(), auto.max),
        ));
        let key = target.name.clone();
        let diagnosis = self.diagnoses.get(&target.name).cloned();
        let handle = std::thread::spawn(move || {
            let mut snapshots = Vec::new();
            let outcome = Probe::new().map_err(|e| e.to_string()).and_then(|mut probe| {
                restart::restart(
                    &mut probe,
                    &target,
                    &guard,
                    &reason,
                    diagnosis.as_deref(),
                    &mut |s| snapshots.push(s),
                )
                .map_err(|e| e.to_string())
            });
            let (result, child) = match outcome {
                Ok((report, child)) => (Ok(report), child),
                Err(error) => (Err(error), None),
            };
            (Done::Restart { target: target.name.clone(), result, snapshots }, child)
        });
        self.in_flight.insert(key, handle);
    }

    /// Hands orphan trees to a reaper thread (kill-tree), unless one is running.
    pub fn reap(
        &mut self,
        config: &Config,
        roots: Vec<ProcessId>,
        now: UnixMillis,
        events: &mut Vec<Event>,
    ) {
        let roots: Vec<ProcessId> =
            roots.into_iter().filter(|r| !self.reaping.contains(r)).collect();
        if roots.is_empty() || self.in_flight.contains_key(REAPER) {
            return;
        }
        self.reaping.extend(roots.iter().copied());
        events.push(action_event(
            now,
            super::ORPHANS,
            Severity::Warning,
            format!("orphans: reaping {} tree(s) idle longer than idle_reap_after", roots.len()),
        ));
        let guard = Guard::from_config(config);
        let handle = std::thread::spawn(move || {
            let result = Probe::new().map_err(|e| e.to_string()).and_then(|mut probe| {
                // A protected tree is left alone, not a reason to reap none.
                let plan =
                    kill::plan_trees(&mut probe, &roots, crate::config::DEFAULT_GRACE, &guard)
                        .map_err(|e| e.to_string())?;
                Ok(kill::execute(&mut probe, &plan, &guard))
            });
            (Done::Reap { roots, result }, None)
        });
        self.in_flight.insert(REAPER.to_owned(), handle);
    }

    /// Waits for actions still running (the engine is stopping) and settles them
    /// as [`Autopilot::collect`] does: the forensic snapshots of a restart still
    /// in flight are the evidence of what leaked, and outlive the engine too.
    pub fn finish(&mut self, store: Option<&Store>, now: UnixMillis, events: &mut Vec<Event>) {
        let in_flight: Vec<_> = self.in_flight.drain().collect();
        for (key, handle) in in_flight {
            self.settle(&key, handle.join(), store, now, events);
        }
    }
}

fn action_event(at: UnixMillis, target: &str, severity: Severity, message: String) -> Event {
    Event {
        at,
        target: target.to_owned(),
        pid: None,
        kind: EventKind::Action,
        rule: None,
        severity,
        value: None,
        message,
    }
}
