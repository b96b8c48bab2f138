//! Building the [`Status`] the faces render from the engine's state.

use super::Engine;
use super::instances::TargetView;
use crate::model::{Sample, UnixMillis};
use crate::status::{ConfigStatus, OwnUsage, Reading, Status, TargetState, TargetStatus};
use crate::trend::Trend;

impl Engine {
    pub(super) fn bare_status(&self, target: &TargetView, state: TargetState) -> TargetStatus {
        TargetStatus {
            target: target.configured.clone(),
            instance: target.pid,
            restartable: target.restart.is_ok(),
            restart_unavailable: target.restart.clone().err(),
            process: self.instances.get(&target.instance).and_then(|i| i.process.clone()),
            ..TargetStatus::unsampled(target.instance.as_str(), target.selector.as_str(), state)
        }
    }

    pub(super) fn status(&mut self, now: UnixMillis) -> Status {
        let order: Vec<&str> = self.config.watch.iter().map(|t| t.name.as_str()).collect();
        let mut targets: Vec<TargetStatus> =
            self.instances.values().filter_map(|i| i.status.clone()).collect();
        if self.config.watch.is_empty() {
            // Automatic mode: the heaviest holders first.
            targets.sort_by_key(|t| {
                (std::cmp::Reverse(t.sample.as_ref().map_or(0, |s| s.total)), t.name.clone())
            });
        } else {
            targets.sort_by_key(|t| {
                let target = self.instances.get(&t.name).map_or("", |i| i.target.as_str());
                (order.iter().position(|n| *n == target).unwrap_or(usize::MAX), t.name.clone())
            });
        }
        // Most urgent first; the orders above break ties (a stable sort).
        targets.sort_by(TargetStatus::urgency_cmp);
        Status {
            at: now,
            tick: self.tick,
            targets,
            config: ConfigStatus {
                path: self
                    .config_file
                    .as_deref()
                    .filter(|p| p.exists())
                    .map(|p| p.display().to_string()),
                error: self.config_error.clone(),
                automatic: self.config.watch.is_empty(),
            },
            problems: self.problems.clone(),
            own: self.own_usage(),
            recent_events: self.recent_events.iter().cloned().collect(),
            restarts: self.autopilot.restarts().clone(),
            alerts_paused_until: self.paused_until.filter(|until| *until > now),
            orphans: self.orphans.clone(),
            orphan_rules: self.orphan_rules.clone(),
            history_error: self.history_error.clone(),
            engine: self.lock.as_ref().map(|lock| lock.owner().clone()),
        }
    }

    pub(super) fn own_usage(&mut self) -> OwnUsage {
        let pid = std::process::id();
        let own = self.probe.process(pid).ok();
        OwnUsage {
            pid,
            fds: self.probe.fd_count(pid).ok().map(|n| n as u64),
            rss_bytes: own.as_ref().and_then(|p| p.rss_bytes),
            cpu_seconds: own.as_ref().and_then(|p| p.cpu_time).map(|d| d.as_secs_f64()),
            threads: own.and_then(|p| p.threads),
        }
    }
}

/// Where a sample stands: [`Reading::AtLimit`] when the table is full,
/// [`Reading::Measuring`] until the window holds a slope.
pub(super) fn reading_of(sample: &Sample, trend: &Trend) -> Reading {
    if sample.limit.is_some_and(|limit| limit > 0 && sample.total >= limit) {
        Reading::AtLimit
    } else if trend.total_per_hour.is_none() {
        Reading::Measuring
    } else {
        Reading::Measured
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn sample_of(total: u64, limit: Option<u64>) -> Sample {
        Sample {
            at: 0,
            total,
            kinds: BTreeMap::new(),
            limit,
            rss_bytes: None,
            cpu_seconds: None,
            threads: None,
            descendants: 0,
        }
    }

    #[test]
    fn no_slope_is_measuring_a_slope_is_measured_a_full_table_is_at_limit() {
        let none = Trend::default();
        let sloped = Trend { total_per_hour: Some(0.0), ..Trend::default() };
        assert_eq!(reading_of(&sample_of(10, Some(1024)), &none), Reading::Measuring);
        assert_eq!(reading_of(&sample_of(10, Some(1024)), &sloped), Reading::Measured);
        assert_eq!(reading_of(&sample_of(1024, Some(1024)), &none), Reading::AtLimit);
        assert_eq!(reading_of(&sample_of(1024, Some(1024)), &sloped), Reading::AtLimit);
        assert_eq!(reading_of(&sample_of(1024, None), &sloped), Reading::Measured);
    }
}
