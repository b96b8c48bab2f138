//! Prometheus/OpenMetrics text for fleets of machines, rendered from a [`Status`]
//! with `prometheus-client`. The metrics are a pure function of the latest status,
//! built at scrape time, so there is no second copy of the engine's state to keep
//! in step, and a target that disappears stops being exported at once.

use crate::model::Severity;
use crate::status::{Status, TargetState};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    target: String,
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    target: String,
    rule: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Counters the status does not carry (they outlive a tick): restarts per target,
/// orphan totals.
#[derive(Debug, Clone, Default)]
pub struct Extra {
    pub restarts: Vec<(String, u64)>,
    pub orphan_trees: u64,
    pub orphan_rss_bytes: u64,
}

/// Renders `status` as OpenMetrics text.
pub fn render(status: &Status, extra: &Extra) -> String {
    let mut registry = Registry::with_prefix("leakwatch");
    let up = Family::<TargetLabels, Gauge>::default();
    let fds = Family::<KindLabels, Gauge>::default();
    let total = Family::<TargetLabels, Gauge>::default();
    let limit = Family::<TargetLabels, Gauge>::default();
    let rss = Family::<TargetLabels, Gauge>::default();
    let slope = Family::<TargetLabels, FloatGauge>::default();
    let eta = Family::<TargetLabels, FloatGauge>::default();
    let rule = Family::<RuleLabels, Gauge>::default();
    let severity = Family::<TargetLabels, Gauge>::default();
    let restarts = Family::<TargetLabels, Gauge>::default();
    for target in &status.targets {
        let labels = TargetLabels { target: target.name.clone() };
        up.get_or_create(&labels).set(i64::from(target.state == TargetState::Up));
        severity.get_or_create(&labels).set(severity_value(target.severity));
        if let Some(sample) = &target.sample {
            total.get_or_create(&labels).set(saturating(sample.total));
            for (kind, count) in &sample.kinds {
                let labels = KindLabels { target: target.name.clone(), kind: kind.name().into() };
                fds.get_or_create(&labels).set(saturating(*count));
            }
            if let Some(bytes) = sample.rss_bytes {
                rss.get_or_create(&labels).set(saturating(bytes));
            }
        }
        if let Some(soft) = target.limit.and_then(|l| l.soft) {
            limit.get_or_create(&labels).set(saturating(soft));
        }
        if let Some(per_hour) = target.slope_per_hour {
            slope.get_or_create(&labels).set(per_hour);
        }
        if let Some(seconds) = target.eta_seconds {
            eta.get_or_create(&labels).set(seconds);
        }
        for state in &target.rules {
            let labels = RuleLabels { target: target.name.clone(), rule: state.metric.clone() };
            rule.get_or_create(&labels).set(severity_value(state.severity));
        }
    }
    for (target, count) in &extra.restarts {
        restarts.get_or_create(&TargetLabels { target: target.clone() }).set(saturating(*count));
    }
    let orphans = Gauge::<i64>::default();
    orphans.set(saturating(extra.orphan_trees));
    let orphan_rss = Gauge::<i64>::default();
    orphan_rss.set(saturating(extra.orphan_rss_bytes));
    let own_rss = Gauge::<i64>::default();
    own_rss.set(saturating(status.own.rss_bytes.unwrap_or(0)));
    let own_fds = Gauge::<i64>::default();
    own_fds.set(saturating(status.own.fds.unwrap_or(0)));

    registry.register("target_up", "1 when the target's process is found", up);
    registry.register("fds", "Open descriptors by canonical kind", fds);
    registry.register("fds_total", "All open descriptors", total);
    registry.register("fd_limit", "Soft descriptor limit", limit);
    registry.register("rss_bytes", "Resident memory of the target", rss);
    registry.register("fd_slope_per_hour", "Leak slope (Theil-Sen), descriptors per hour", slope);
    registry.register("fd_eta_seconds", "Projected seconds until the limit", eta);
    registry.register("rule_state", "Rule state: 0 ok, 1 warning, 2 critical", rule);
    registry.register("target_severity", "Worst rule state of the target", severity);
    registry.register("restarts", "Restarts Leakwatch performed", restarts);
    registry.register("orphan_trees", "Orphaned process trees", orphans);
    registry.register("orphan_rss_bytes", "Resident memory held by orphan trees", orphan_rss);
    registry.register("own_rss_bytes", "Leakwatch's own resident memory", own_rss);
    registry.register("own_fds", "Leakwatch's own open descriptors", own_fds);

    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    text
}

fn severity_value(severity: Severity) -> i64 {
    match severity {
        Severity::Ok => 0,
        Severity::Warning => 1,
        Severity::Critical => 2,
    }
}

fn saturating(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
