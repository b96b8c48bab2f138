//! Rule evaluation (per instance and for the orphans), the automatic actions
//! it triggers, and notifications.

use super::runner::catch_quietly;
use super::{Engine, ORPHANS};
use crate::model::{Event, EventKind, Severity, UnixMillis};
use crate::notifier::Notification;
use crate::rules::{MessageContext, Observation, measure, outcome_message};
use crate::status::RuleStatus;
use crate::trend::Trend;

impl Engine {
    /// Feeds `[orphans.rules]` (`orphans.count`, `orphans.rss`) the last full
    /// scan's trees, as the pseudo-target `orphans`.
    pub(super) fn evaluate_orphan_rules(&mut self, now: UnixMillis, events: &mut Vec<Event>) {
        let rules = self.config.orphans.rules.clone();
        let keys: Vec<String> = rules.iter().map(|r| r.metric.key()).collect();
        self.rule_states.retain(|(instance, key), _| instance != ORPHANS || keys.contains(key));
        let observation = Observation {
            orphan_count: Some(self.orphans.len() as u64),
            orphan_rss: Some(self.orphans.iter().map(|t| t.total_rss_bytes).sum()),
            ..Observation::default()
        };
        self.orphan_rules = self.evaluate_rules(
            ORPHANS,
            None,
            &rules,
            &observation,
            &Trend::default(),
            None,
            now,
            events,
        );
    }

    /// Collects finished automatic actions and starts due ones: restarts of
    /// targets at their `auto_restart.on` severity, reaping of idle orphan trees.
    pub(super) fn run_autopilot(
        &mut self,
        scanned: bool,
        now: UnixMillis,
        events: &mut Vec<Event>,
    ) {
        self.autopilot.collect(self.store.as_ref(), now, events);
        for target in self.config.watch.iter().filter(|t| t.auto_restart.is_some()) {
            let severity = self
                .instances
                .values()
                .filter(|i| i.target == target.name)
                .filter_map(|i| i.status.as_ref())
                .map(|s| s.severity)
                .max()
                .unwrap_or(Severity::Ok);
            let diagnosis = self
                .instances
                .values()
                .filter(|i| i.target == target.name)
                .find_map(|i| i.diagnosis.line());
            self.autopilot.note_diagnosis(&target.name, diagnosis);
            self.autopilot.consider_restart(&self.config, target, severity, now, events);
        }
        if scanned {
            let roots = self.orphans_to_reap();
            self.autopilot.reap(&self.config, roots, now, events);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn evaluate_rules(
        &mut self,
        instance: &str,
        pid: Option<u32>,
        rules: &[crate::config::RuleSpec],
        observation: &Observation<'_>,
        trend: &Trend,
        limit: Option<u64>,
        now: UnixMillis,
        events: &mut Vec<Event>,
    ) -> Vec<RuleStatus> {
        let mut statuses = Vec::with_capacity(rules.len());
        for spec in rules {
            let key = spec.metric.key();
            if holds_while_measuring(&spec.metric, trend) {
                // No slope yet (a new series): neither a recovery nor a
                // worsening, so the rule keeps the level it had.
                let state = self.rule_states.entry((instance.to_owned(), key.clone())).or_default();
                statuses.push(RuleStatus { metric: key, severity: state.level(), value: None });
                continue;
            }
            let value = measure(&spec.metric, observation);
            let state = self.rule_states.entry((instance.to_owned(), key.clone())).or_default();
            if let Some(outcome) = state.evaluate(spec, value, limit, now) {
                // A kind rule speaks of that kind's growth, not the total's: a
                // kind left out of the fit did not change (its slope is zero).
                let slope_per_hour = match &spec.metric {
                    crate::config::Metric::Kind(kind) => trend
                        .total_per_hour
                        .map(|_| trend.kinds_per_hour.get(kind).copied().unwrap_or(0.0)),
                    _ => trend.total_per_hour,
                };
                let context = MessageContext {
                    target: instance,
                    metric: &spec.metric,
                    value: outcome.value,
                    slope_per_hour,
                    eta: trend.eta,
                    limit,
                };
                let message = outcome_message(&context, &outcome);
                let mut event = Event {
                    at: now,
                    target: instance.to_owned(),
                    pid,
                    kind: outcome.kind,
                    rule: Some(key.clone()),
                    severity: outcome.severity,
                    value: outcome.value.is_finite().then_some(outcome.value),
                    message,
                };
                if !outcome.notify {
                    // Logged, but a flap within the cooldown does not pop up again.
                    event.message.push_str(" (within cooldown: not notified)");
                }
                events.push(event);
            }
            statuses.push(RuleStatus {
                metric: key,
                severity: state.level(),
                value: value.map(crate::rules::MetricValue::as_f64).filter(|v| v.is_finite()),
            });
        }
        statuses
    }

    pub(super) fn notify(&mut self, events: &[Event], now: UnixMillis) {
        if !self.config.notify.enabled || self.paused_until.is_some_and(|until| now < until) {
            return;
        }
        for event in events {
            let notify = matches!(
                event.kind,
                EventKind::Raised
                    | EventKind::Escalated
                    | EventKind::Reminded
                    | EventKind::Cleared
                    | EventKind::Action
            ) && !event.message.ends_with("(within cooldown: not notified)");
            if !notify {
                continue;
            }
            // A rule about a target says what is leaking, when that is known.
            let diagnosis = (event.kind != EventKind::Cleared)
                .then(|| self.instances.get(&event.target).and_then(|i| i.diagnosis.line()))
                .flatten();
            let notification = Notification {
                title: format!("Leakwatch: {}", event.target),
                body: match diagnosis {
                    Some(line) => format!("{}\n{line}", event.message),
                    None => event.message.clone(),
                },
                target: Some(event.target.clone()),
                severity: event.severity,
            };
            // A notifier is outside code (D-Bus, an executor of its own) that has
            // panicked under fd exhaustion; its failure must not take the tick.
            let shown = catch_quietly(|| self.options.notifier.notify(&notification))
                .unwrap_or_else(|panic| {
                    Err(crate::notifier::NotifyError(format!("the notifier panicked: {panic}")))
                });
            if let Err(error) = shown {
                // No notification service (a headless server): log, do not fail.
                if self.notify_failures == 0 {
                    tracing::warn!("{error}; notifications will be logged only");
                }
                self.notify_failures += 1;
                tracing::info!("notification: {}", notification.body);
            }
        }
    }
}

/// Whether a rule on `metric` keeps its level this tick: a slope or an ETA
/// with no slope to read (a new series, a target down) is unknown, not good
/// news, and a restart is not a recovery.
pub(super) fn holds_while_measuring(metric: &crate::config::Metric, trend: &Trend) -> bool {
    matches!(metric, crate::config::Metric::Slope | crate::config::Metric::Eta)
        && trend.total_per_hour.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_and_eta_rules_hold_while_there_is_no_slope() {
        use crate::config::Metric;
        let none = Trend::default();
        let sloped = Trend { total_per_hour: Some(5.0), ..Trend::default() };
        assert!(holds_while_measuring(&Metric::Slope, &none));
        assert!(holds_while_measuring(&Metric::Eta, &none));
        assert!(!holds_while_measuring(&Metric::Fds, &none));
        assert!(!holds_while_measuring(&Metric::Slope, &sloped));
        assert!(!holds_while_measuring(&Metric::Eta, &sloped));
    }
}
