//! Rule evaluation with hysteresis: when a metric crosses a threshold, when it is
//! reported, when it is reported again, and when it clears.
//!
//! It is a pure state machine (time is passed in) because alerting is where a
//! watchdog earns or loses trust: one spike must not page anyone, a value hovering
//! at the threshold must not flap, and a leak that stays must be recalled, but not
//! every two seconds. DESIGN.md ("Trend and rules"): a rule fires only after N
//! consecutive samples beyond its threshold, clears only below a lower threshold,
//! and re-notifies no sooner than its cooldown.
//!
//! Also here: [`measure`] reads a rule's metric from one tick's observations, and
//! [`message`] turns a value into text a person can act on.

use crate::config::{Direction, Metric, RuleSpec};
use crate::model::{EventKind, Sample, Severity, UnixMillis, human_duration};
use crate::summary::FdSummary;
use crate::trend::Trend;
// The number formats moved to the foundation (`units`); re-exported so the
// faces' `rules::human_bytes` keeps working.
pub use crate::units::{human_bytes, per_hour};
use leakwatch_probe::{FdClass, FdKind};
use std::time::Duration;

/// Where a rule clears by default, as a fraction of its lowest threshold (for
/// metrics where higher is worse).
pub const DEFAULT_CLEAR_FRACTION: f64 = 0.9;
/// Where an ETA rule clears by default, as a multiple of its longest threshold.
pub const DEFAULT_ETA_CLEAR_FACTOR: f64 = 1.5;

/// One tick's value of a rule's metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetricValue {
    /// Descriptors, or orphan trees.
    Count(u64),
    Bytes(u64),
    /// Descriptors per hour.
    PerHour(f64),
    /// Projected time until the FD limit.
    Eta(Duration),
    /// Whether the target is down.
    Down(bool),
}

impl MetricValue {
    /// The value in the unit thresholds resolve to ([`Threshold::resolve`](crate::config::Threshold::resolve)):
    /// descriptors, bytes, per hour, seconds, 1 for down.
    pub fn as_f64(self) -> f64 {
        match self {
            MetricValue::Count(n) | MetricValue::Bytes(n) => n as f64,
            MetricValue::PerHour(r) => r,
            MetricValue::Eta(d) => d.as_secs_f64(),
            MetricValue::Down(down) => f64::from(u8::from(down)),
        }
    }
}

/// What happened to a rule on one tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuleOutcome {
    /// Raised, Escalated, Reminded or Cleared.
    pub kind: EventKind,
    /// The level after this tick (Ok for Cleared).
    pub severity: Severity,
    /// The metric's value ([`MetricValue::as_f64`]); `f64::INFINITY` for an ETA
    /// that cleared because there is no projection any more (not growing).
    pub value: f64,
    /// The threshold crossed (the clear threshold for Cleared), resolved.
    pub threshold: f64,
    /// Whether to notify a person; `false` for a re-raise inside the cooldown
    /// after a clear (still logged, not pushed).
    pub notify: bool,
}

/// The state of one rule of one target, across ticks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleState {
    level: Level,
    /// Consecutive samples at or beyond warn (or critical, which is beyond warn).
    warn_run: u32,
    /// Consecutive samples at or beyond critical.
    critical_run: u32,
    /// Consecutive samples short of critical.
    below_critical_run: u32,
    /// Consecutive samples past the clear threshold.
    clear_run: u32,
    last_notified: Option<UnixMillis>,
    cleared_at: Option<UnixMillis>,
    deescalated_at: Option<UnixMillis>,
    /// Whether anything of the current episode (raise to clear) was notified: a
    /// clear is notified only if its raise was, so a silent flap stays silent.
    episode_notified: bool,
}

/// `Severity` has no `Default`; the state's level starts at Ok.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Level {
    #[default]
    Ok,
    Warning,
    Critical,
}

impl Level {
    const fn severity(self) -> Severity {
        match self {
            Level::Ok => Severity::Ok,
            Level::Warning => Severity::Warning,
            Level::Critical => Severity::Critical,
        }
    }
}

/// A rule's thresholds resolved for one tick.
#[derive(Debug, Clone, Copy)]
struct Resolved {
    direction: Direction,
    warn: Option<f64>,
    critical: Option<f64>,
    clear: Option<f64>,
}

impl Resolved {
    fn of(spec: &RuleSpec, limit: Option<u64>) -> Self {
        let direction = spec.metric.direction();
        let warn = spec.warn.as_ref().and_then(|t| t.resolve(limit));
        let critical = spec.critical.as_ref().and_then(|t| t.resolve(limit));
        let clear = spec
            .clear
            .as_ref()
            .and_then(|t| t.resolve(limit))
            .or_else(|| default_clear(direction, warn, critical));
        Self { direction, warn, critical, clear }
    }

    fn beyond(&self, value: f64, threshold: Option<f64>) -> bool {
        threshold.is_some_and(|t| match self.direction {
            Direction::Above => value >= t,
            Direction::Below => value <= t,
        })
    }

    fn past_clear(&self, value: f64) -> bool {
        self.clear.is_some_and(|c| match self.direction {
            Direction::Above => value <= c,
            Direction::Below => value >= c,
        })
    }
}

/// 90% of the lowest threshold where higher is worse; 1.5× the longest where lower
/// is worse (the ETA). For `down` (thresholds of 1) that is 0.9: cleared when up.
fn default_clear(direction: Direction, warn: Option<f64>, critical: Option<f64>) -> Option<f64> {
    let thresholds = warn.into_iter().chain(critical);
    match direction {
        Direction::Above => thresholds.reduce(f64::min).map(|t| t * DEFAULT_CLEAR_FRACTION),
        Direction::Below => thresholds.reduce(f64::max).map(|t| t * DEFAULT_ETA_CLEAR_FACTOR),
    }
}

/// The clear threshold in force for `spec` at `limit`: the configured one, else
/// the default (90% of the lowest threshold; 1.5× the longest ETA).
pub fn clear_threshold(spec: &RuleSpec, limit: Option<u64>) -> Option<f64> {
    Resolved::of(spec, limit).clear
}

impl RuleState {
    /// A rule at Ok with no history.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current level.
    pub fn level(&self) -> Severity {
        self.level.severity()
    }

    /// When this rule last notified a person.
    pub fn last_notified(&self) -> Option<UnixMillis> {
        self.last_notified
    }

    /// Feeds one tick.
    ///
    /// Thresholds are resolved against `limit` (a percentage is `p × limit / 100`;
    /// without a limit a percentage threshold is unknown this tick and cannot be
    /// crossed). A `None` input (the metric is unknown this tick) never counts as
    /// beyond a threshold, so it breaks a run of samples towards raising. Towards
    /// clearing it depends on the metric: for `eta`, no ETA means nothing is
    /// heading for the limit (not growing, or no limit known), which is the
    /// all-clear, so it counts as past the clear threshold; for every other metric
    /// unknown is not evidence of recovery, so it breaks a run towards clearing too
    /// and a raised rule holds its level.
    ///
    /// Returns what happened, if anything was worth an event: Raised (after
    /// `samples` consecutive samples beyond warn, or straight to critical after as
    /// many beyond critical), Escalated (warning to critical, after `samples`
    /// beyond critical), Reminded (still beyond the current level's threshold, at
    /// most once per cooldown), Cleared (after `samples` past the clear
    /// threshold). Critical falls back to warning silently, after `samples` short
    /// of critical but not yet cleared.
    pub fn evaluate(
        &mut self,
        spec: &RuleSpec,
        input: Option<MetricValue>,
        limit: Option<u64>,
        now: UnixMillis,
    ) -> Option<RuleOutcome> {
        let thresholds = Resolved::of(spec, limit);
        let value = input.map(MetricValue::as_f64);
        // Unknown is good news only for the ETA (nothing heading for the limit).
        let unknown_is_safe = spec.metric == Metric::Eta;
        let (at_warn, at_critical, short_of_critical, past_clear) = match value {
            Some(v) => (
                thresholds.beyond(v, thresholds.warn) || thresholds.beyond(v, thresholds.critical),
                thresholds.beyond(v, thresholds.critical),
                !thresholds.beyond(v, thresholds.critical),
                thresholds.past_clear(v),
            ),
            None => (false, false, unknown_is_safe, unknown_is_safe),
        };
        let bump = |run: u32, hit: bool| if hit { run.saturating_add(1) } else { 0 };
        self.warn_run = bump(self.warn_run, at_warn);
        self.critical_run = bump(self.critical_run, at_critical);
        self.below_critical_run = bump(self.below_critical_run, short_of_critical);
        self.clear_run = bump(self.clear_run, past_clear);

        let samples = spec.samples.max(1);
        let cooldown = u64::try_from(spec.cooldown.as_millis()).unwrap_or(u64::MAX);
        let elapsed =
            |since: Option<UnixMillis>| since.is_none_or(|t| now.saturating_sub(t) >= cooldown);
        // An ETA can clear with no value at all: report it as infinitely far.
        let shown = value.unwrap_or(f64::INFINITY);

        let outcome = match self.level {
            Level::Ok => {
                let to = if self.critical_run >= samples && thresholds.critical.is_some() {
                    Some((Level::Critical, thresholds.critical))
                } else if self.warn_run >= samples && thresholds.warn.is_some() {
                    Some((Level::Warning, thresholds.warn))
                } else {
                    None
                };
                to.map(|(level, threshold)| {
                    self.level = level;
                    self.episode_notified = false;
                    RuleOutcome {
                        kind: EventKind::Raised,
                        severity: level.severity(),
                        value: shown,
                        threshold: threshold.unwrap_or(f64::NAN),
                        notify: elapsed(self.cleared_at),
                    }
                })
            }
            Level::Warning => {
                if self.critical_run >= samples && thresholds.critical.is_some() {
                    self.level = Level::Critical;
                    Some(RuleOutcome {
                        kind: EventKind::Escalated,
                        severity: Severity::Critical,
                        value: shown,
                        threshold: thresholds.critical.unwrap_or(f64::NAN),
                        notify: elapsed(self.deescalated_at),
                    })
                } else if self.clear_run >= samples {
                    Some(self.clear(&thresholds, shown, now))
                } else if at_warn && elapsed(self.last_notified) {
                    Some(RuleOutcome {
                        kind: EventKind::Reminded,
                        severity: Severity::Warning,
                        value: shown,
                        threshold: thresholds.warn.or(thresholds.critical).unwrap_or(f64::NAN),
                        notify: true,
                    })
                } else {
                    None
                }
            }
            Level::Critical => {
                if self.clear_run >= samples {
                    Some(self.clear(&thresholds, shown, now))
                } else if self.below_critical_run >= samples && thresholds.warn.is_some() {
                    // Better but not well: back to warning without a notification.
                    self.level = Level::Warning;
                    self.deescalated_at = Some(now);
                    None
                } else if at_critical && elapsed(self.last_notified) {
                    Some(RuleOutcome {
                        kind: EventKind::Reminded,
                        severity: Severity::Critical,
                        value: shown,
                        threshold: thresholds.critical.unwrap_or(f64::NAN),
                        notify: true,
                    })
                } else {
                    None
                }
            }
        };
        if let Some(outcome) = &outcome
            && outcome.notify
        {
            self.last_notified = Some(now);
            self.episode_notified = true;
        }
        outcome
    }

    fn clear(&mut self, thresholds: &Resolved, value: f64, now: UnixMillis) -> RuleOutcome {
        self.level = Level::Ok;
        self.cleared_at = Some(now);
        self.deescalated_at = None;
        let notify = self.episode_notified;
        self.episode_notified = false;
        RuleOutcome {
            kind: EventKind::Cleared,
            severity: Severity::Ok,
            value,
            threshold: thresholds.clear.unwrap_or(f64::NAN),
            notify,
        }
    }
}

/// What one tick saw of a target (or of the orphans), for [`measure`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Observation<'a> {
    /// The target's sample; `None` when its process could not be found (down).
    pub sample: Option<&'a Sample>,
    /// Its descriptor table, counted; needed by `path:` rules.
    pub summary: Option<&'a FdSummary>,
    /// Its trend; needed by `slope` and `eta` rules.
    pub trend: Option<&'a Trend>,
    /// Orphan trees and their total RSS, for `[orphans.rules]`.
    pub orphan_count: Option<u64>,
    pub orphan_rss: Option<u64>,
}

/// The value of `metric` in `observation`; `None` when it is unknown this tick
/// (the target is down, RSS is hidden by the OS, no trend yet, no ETA because not
/// growing, no summary for a path rule).
pub fn measure(metric: &Metric, observation: &Observation<'_>) -> Option<MetricValue> {
    let sample = observation.sample;
    match metric {
        Metric::Fds => sample.map(|s| MetricValue::Count(s.total)),
        Metric::Kind(kind) => sample.map(|s| MetricValue::Count(s.kind(*kind))),
        Metric::Class(class) => sample.map(|s| MetricValue::Count(s.class(*class))),
        Metric::Path(glob) => {
            sample?;
            let summary = observation.summary?;
            let mut count = 0usize;
            for group in &summary.paths {
                if glob.is_match(&group.path) {
                    count += group.count;
                }
                for companion in &group.companions {
                    if glob.is_match(&format!("{}{}", group.path, companion.suffix)) {
                        count += companion.count;
                    }
                }
            }
            Some(MetricValue::Count(count as u64))
        }
        Metric::Rss => sample.and_then(|s| s.rss_bytes).map(MetricValue::Bytes),
        Metric::Slope => {
            sample?;
            observation.trend?.total_per_hour.map(MetricValue::PerHour)
        }
        Metric::Eta => {
            sample?;
            observation.trend?.eta.map(MetricValue::Eta)
        }
        Metric::Down => Some(MetricValue::Down(sample.is_none())),
        Metric::OrphanCount => observation.orphan_count.map(MetricValue::Count),
        Metric::OrphanRss => observation.orphan_rss.map(MetricValue::Bytes),
    }
}

/// What a message is about.
#[derive(Debug, Clone, Copy)]
pub struct MessageContext<'a> {
    /// The target's name (`orphans` for orphan rules).
    pub target: &'a str,
    pub metric: &'a Metric,
    /// The metric's value ([`MetricValue::as_f64`]).
    pub value: f64,
    /// The growth of what the metric counts, per hour (the kind's slope for a kind
    /// rule, the total's otherwise).
    pub slope_per_hour: Option<f64>,
    /// Projected time until the FD limit.
    pub eta: Option<Duration>,
    pub limit: Option<u64>,
}

/// Text a person can act on: "copilot: 812 kqueues, +96/h, limit in 2 h 40 min".
pub fn message(ctx: &MessageContext<'_>) -> String {
    let count = |v: f64| v.max(0.0).round() as u64;
    let what = match ctx.metric {
        Metric::Fds => {
            let n = count(ctx.value);
            let mut text = plural(n, "descriptor", "descriptors");
            if let Some(limit) = ctx.limit.filter(|l| *l > 0) {
                text.push_str(&format!(" ({:.0}% of {limit})", n as f64 * 100.0 / limit as f64));
            }
            text
        }
        Metric::Kind(kind) => {
            let (one, many) = kind_nouns(*kind);
            plural(count(ctx.value), one, many)
        }
        Metric::Class(class) => {
            let (one, many) = class_nouns(*class);
            plural(count(ctx.value), one, many)
        }
        Metric::Path(glob) => format!(
            "{} on {}",
            plural(count(ctx.value), "descriptor", "descriptors"),
            glob.as_str()
        ),
        Metric::Rss => format!("RSS {}", human_bytes(count(ctx.value))),
        Metric::Slope => format!("descriptors growing {}", per_hour(ctx.value)),
        Metric::Eta => {
            let eta = ctx.eta.or_else(|| Duration::try_from_secs_f64(ctx.value).ok());
            let at = ctx.limit.map_or(String::new(), |l| format!(" ({l})"));
            match eta {
                Some(eta) => format!("descriptor limit{at} in {}", human_duration(eta)),
                None => format!("descriptor limit{at} not in sight"),
            }
        }
        Metric::Down => {
            if ctx.value >= 0.5 {
                "not running".to_owned()
            } else {
                "running".to_owned()
            }
        }
        Metric::OrphanCount => {
            plural(count(ctx.value), "orphaned process tree", "orphaned process trees")
        }
        Metric::OrphanRss => {
            format!("orphaned processes hold RSS {}", human_bytes(count(ctx.value)))
        }
    };
    let mut parts = vec![what];
    let growth_applies = !matches!(
        ctx.metric,
        Metric::Rss | Metric::Down | Metric::OrphanCount | Metric::OrphanRss | Metric::Slope
    );
    if growth_applies && let Some(slope) = ctx.slope_per_hour.filter(|s| s.abs() >= 0.05) {
        parts.push(per_hour(slope));
    }
    if !matches!(
        ctx.metric,
        Metric::Eta | Metric::Down | Metric::OrphanCount | Metric::OrphanRss | Metric::Rss
    ) && let Some(eta) = ctx.eta
    {
        parts.push(format!("limit in {}", human_duration(eta)));
    }
    format!("{}: {}", ctx.target, parts.join(", "))
}

/// The message for an outcome: the state for raise, escalation and reminder;
/// "back to normal" for a clear.
pub fn outcome_message(ctx: &MessageContext<'_>, outcome: &RuleOutcome) -> String {
    match outcome.kind {
        EventKind::Cleared if *ctx.metric == Metric::Down => {
            format!("{}: running again", ctx.target)
        }
        EventKind::Cleared if *ctx.metric == Metric::Eta && !outcome.value.is_finite() => {
            format!("{}: back to normal, descriptors no longer growing", ctx.target)
        }
        EventKind::Cleared => {
            let state = message(ctx);
            let detail = state.split_once(": ").map_or(state.as_str(), |(_, d)| d);
            format!("{}: back to normal, {detail}", ctx.target)
        }
        _ => message(ctx),
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// How a person names descriptors of a kind, one and many.
pub fn kind_nouns(kind: FdKind) -> (&'static str, &'static str) {
    match kind {
        FdKind::Kqueue => ("kqueue", "kqueues"),
        FdKind::Epoll => ("epoll instance", "epoll instances"),
        FdKind::Eventfd => ("eventfd", "eventfds"),
        FdKind::Timerfd => ("timerfd", "timerfds"),
        FdKind::Signalfd => ("signalfd", "signalfds"),
        FdKind::Inotify => ("inotify instance", "inotify instances"),
        FdKind::Fsevents => ("fsevents stream", "fsevents streams"),
        FdKind::Pidfd => ("pidfd", "pidfds"),
        FdKind::Unix => ("unix socket", "unix sockets"),
        FdKind::Tcp => ("TCP socket", "TCP sockets"),
        FdKind::Udp => ("UDP socket", "UDP sockets"),
        FdKind::Socket => ("other socket", "other sockets"),
        FdKind::File => ("open file", "open files"),
        FdKind::Dir => ("open directory", "open directories"),
        FdKind::Device => ("open device", "open devices"),
        FdKind::Shm => ("shared-memory object", "shared-memory objects"),
        FdKind::Sem => ("semaphore", "semaphores"),
        FdKind::Pipe => ("pipe", "pipes"),
        FdKind::Other => ("other descriptor", "other descriptors"),
    }
}

/// How a person names descriptors of a class, one and many.
pub fn class_nouns(class: FdClass) -> (&'static str, &'static str) {
    match class {
        FdClass::EventLoops => ("event-loop descriptor", "event-loop descriptors"),
        FdClass::Sockets => ("socket", "sockets"),
        FdClass::Files => ("file descriptor", "file descriptors"),
        FdClass::Pipes => ("pipe", "pipes"),
        FdClass::Other => ("other descriptor", "other descriptors"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PathGlob, Threshold};
    use leakwatch_probe::FdKind;
    use std::collections::BTreeMap;

    const SEC: UnixMillis = 1000;
    const MIN: UnixMillis = 60 * SEC;

    fn spec(metric: Metric, warn: Option<Threshold>, critical: Option<Threshold>) -> RuleSpec {
        RuleSpec::new(metric, warn, critical)
    }

    fn counts() -> RuleSpec {
        spec(
            Metric::Kind(FdKind::Kqueue),
            Some(Threshold::Count(500.0)),
            Some(Threshold::Count(900.0)),
        )
    }

    /// Feeds `values` two seconds apart from `start`; returns the outcomes by tick.
    fn feed(
        state: &mut RuleState,
        spec: &RuleSpec,
        start: UnixMillis,
        values: &[u64],
    ) -> Vec<(usize, RuleOutcome)> {
        values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                state
                    .evaluate(spec, Some(MetricValue::Count(*v)), None, start + i as u64 * 2 * SEC)
                    .map(|o| (i, o))
            })
            .collect()
    }

    fn kinds(outcomes: &[(usize, RuleOutcome)]) -> Vec<(usize, EventKind, Severity)> {
        outcomes.iter().map(|(i, o)| (*i, o.kind, o.severity)).collect()
    }

    #[test]
    fn one_spike_does_not_raise() {
        let (mut state, spec) = (RuleState::new(), counts());
        let out = feed(&mut state, &spec, 0, &[100, 950, 100, 600, 100, 950, 100]);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(state.level(), Severity::Ok);
        // Two in a row do.
        let out = feed(&mut state, &spec, MIN, &[600, 600]);
        assert_eq!(kinds(&out), [(1, EventKind::Raised, Severity::Warning)]);
        assert_eq!(out[0].1.threshold, 500.0);
        assert!(out[0].1.notify);
    }

    #[test]
    fn samples_setting_is_honoured() {
        let mut spec = counts();
        spec.samples = 4;
        let mut state = RuleState::new();
        let out = feed(&mut state, &spec, 0, &[600, 600, 600, 100, 600, 600, 600, 600]);
        assert_eq!(kinds(&out), [(7, EventKind::Raised, Severity::Warning)]);
    }

    #[test]
    fn straight_to_critical() {
        let (mut state, spec) = (RuleState::new(), counts());
        let out = feed(&mut state, &spec, 0, &[1000, 1000]);
        assert_eq!(kinds(&out), [(1, EventKind::Raised, Severity::Critical)]);
        assert_eq!(out[0].1.threshold, 900.0);
    }

    #[test]
    fn hysteresis_does_not_flap() {
        let (mut state, spec) = (RuleState::new(), counts());
        // Default clear: 90% of 500 = 450.
        assert_eq!(clear_threshold(&spec, None), Some(450.0));
        let mut values = vec![600, 600];
        for _ in 0..50 {
            values.extend([460, 510]);
        }
        let out = feed(&mut state, &spec, 0, &values);
        assert_eq!(kinds(&out), [(1, EventKind::Raised, Severity::Warning)]);
        assert_eq!(state.level(), Severity::Warning);
        // Oscillating between clear and warn without a raise does not raise either.
        let mut fresh = RuleState::new();
        let out = feed(&mut fresh, &spec, 0, &[460, 510, 460, 510, 460, 510]);
        assert!(out.is_empty());
    }

    #[test]
    fn clears_after_samples_below_clear() {
        let (mut state, spec) = (RuleState::new(), counts());
        let out = feed(&mut state, &spec, 0, &[600, 600, 440, 460, 440, 440]);
        assert_eq!(
            kinds(&out),
            [(1, EventKind::Raised, Severity::Warning), (5, EventKind::Cleared, Severity::Ok)]
        );
        let cleared = out[1].1;
        assert_eq!(cleared.threshold, 450.0);
        assert_eq!(cleared.value, 440.0);
        assert!(cleared.notify);
        assert_eq!(state.level(), Severity::Ok);
    }

    #[test]
    fn explicit_clear_is_used() {
        let mut spec = counts();
        spec.clear = Some(Threshold::Count(300.0));
        let mut state = RuleState::new();
        let out = feed(&mut state, &spec, 0, &[600, 600, 400, 400, 400, 299, 299]);
        assert_eq!(
            kinds(&out),
            [(1, EventKind::Raised, Severity::Warning), (6, EventKind::Cleared, Severity::Ok)]
        );
    }

    #[test]
    fn escalates_warning_to_critical_and_falls_back_silently() {
        let (mut state, spec) = (RuleState::new(), counts());
        let out = feed(&mut state, &spec, 0, &[600, 600, 950, 600, 950, 950, 700, 700, 700]);
        assert_eq!(
            kinds(&out),
            [
                (1, EventKind::Raised, Severity::Warning),
                (5, EventKind::Escalated, Severity::Critical),
            ]
        );
        assert!(out[1].1.notify);
        // Two samples under critical (but above clear): back to warning, no event.
        assert_eq!(state.level(), Severity::Warning);
        // Re-escalating right after falling back is logged but not pushed.
        let out = feed(&mut state, &spec, 20 * SEC, &[950, 950]);
        assert_eq!(kinds(&out), [(1, EventKind::Escalated, Severity::Critical)]);
        assert!(!out[0].1.notify);
    }

    #[test]
    fn reminders_respect_cooldown() {
        let (mut state, spec) = (RuleState::new(), counts());
        // A sample every 2 s, above warn, for 100 minutes.
        let values = vec![600; 3000];
        let out = feed(&mut state, &spec, 0, &values);
        let raised_at = out[0].0;
        let reminders: Vec<usize> =
            out.iter().filter(|(_, o)| o.kind == EventKind::Reminded).map(|(i, _)| *i).collect();
        // 100 minutes, cooldown 30 minutes: reminders at 30, 60, 90 minutes after.
        assert_eq!(reminders.len(), 3, "{reminders:?}");
        let mut last = raised_at;
        for at in reminders {
            assert!((at - last) as u64 * 2 * SEC >= 30 * MIN);
            last = at;
        }
        assert!(out.iter().all(|(_, o)| o.notify));
    }

    #[test]
    fn reraise_within_cooldown_is_silent() {
        let (mut state, spec) = (RuleState::new(), counts());
        let out = feed(&mut state, &spec, 0, &[600, 600, 100, 100, 600, 600, 100, 100]);
        assert_eq!(
            out.iter().map(|(_, o)| (o.kind, o.notify)).collect::<Vec<_>>(),
            [
                (EventKind::Raised, true),
                (EventKind::Cleared, true),
                (EventKind::Raised, false),
                // A clear of a silent raise stays silent too.
                (EventKind::Cleared, false),
            ]
        );
        // After the cooldown, a raise notifies again.
        let out = feed(&mut state, &spec, 40 * MIN, &[600, 600]);
        assert!(out[0].1.notify);
    }

    #[test]
    fn eta_fires_when_below() {
        let eta = spec(
            Metric::Eta,
            Some(Threshold::Duration(Duration::from_secs(6 * 3600))),
            Some(Threshold::Duration(Duration::from_secs(3600))),
        );
        let hours = |h: f64| Some(MetricValue::Eta(Duration::from_secs_f64(h * 3600.0)));
        let mut state = RuleState::new();
        let mut out = Vec::new();
        let inputs = [
            hours(20.0),
            hours(5.0),
            hours(5.0),
            hours(0.5),
            hours(0.5),
            hours(8.0),
            hours(8.0),
            None,
            None,
        ];
        for (i, input) in inputs.into_iter().enumerate() {
            if let Some(o) = state.evaluate(&eta, input, Some(1024), i as u64 * 2 * SEC) {
                out.push((i, o));
            }
        }
        assert_eq!(
            kinds(&out),
            [
                (2, EventKind::Raised, Severity::Warning),
                (4, EventKind::Escalated, Severity::Critical),
                // 8 h is past warn but short of the clear (9 h): falls back to
                // warning silently; no ETA at all (not growing) clears.
                (8, EventKind::Cleared, Severity::Ok),
            ]
        );
        assert_eq!(out[0].1.threshold, 6.0 * 3600.0);
        assert_eq!(out[2].1.threshold, 9.0 * 3600.0);
        assert_eq!(out[2].1.value, f64::INFINITY);
    }

    #[test]
    fn unknown_values_neither_raise_nor_clear_counts() {
        let (mut state, spec) = (RuleState::new(), counts());
        assert!(state.evaluate(&spec, Some(MetricValue::Count(600)), None, 0).is_none());
        assert!(state.evaluate(&spec, None, None, 2 * SEC).is_none());
        assert!(state.evaluate(&spec, Some(MetricValue::Count(600)), None, 4 * SEC).is_none());
        assert!(state.evaluate(&spec, Some(MetricValue::Count(600)), None, 6 * SEC).is_some());
        for i in 0..10 {
            assert!(state.evaluate(&spec, None, None, 8 * SEC + i * SEC).is_none());
        }
        assert_eq!(state.level(), Severity::Warning);
    }

    #[test]
    fn percent_thresholds_need_a_limit() {
        let fds = spec(Metric::Fds, Some(Threshold::Percent(80.0)), Some(Threshold::Percent(95.0)));
        let mut state = RuleState::new();
        // 250 of 256 is 97.7%: critical.
        assert!(state.evaluate(&fds, Some(MetricValue::Count(250)), Some(256), 0).is_none());
        let raised = state.evaluate(&fds, Some(MetricValue::Count(250)), Some(256), 2 * SEC);
        let raised = raised.unwrap();
        assert_eq!((raised.kind, raised.severity), (EventKind::Raised, Severity::Critical));
        assert!((raised.threshold - 243.2).abs() < 1e-9);
        // Without a limit the same count is never beyond a percentage.
        let mut blind = RuleState::new();
        for i in 0..10 {
            assert!(
                blind
                    .evaluate(&fds, Some(MetricValue::Count(250_000)), None, i * 2 * SEC)
                    .is_none()
            );
        }
        assert_eq!(blind.level(), Severity::Ok);
        // A mixed rule still fires on its absolute threshold without a limit.
        let mixed =
            spec(Metric::Fds, Some(Threshold::Count(100.0)), Some(Threshold::Percent(95.0)));
        let mut state = RuleState::new();
        state.evaluate(&mixed, Some(MetricValue::Count(200)), None, 0);
        let out = state.evaluate(&mixed, Some(MetricValue::Count(200)), None, 2 * SEC).unwrap();
        assert_eq!(out.severity, Severity::Warning);
    }

    #[test]
    fn down_raises_and_clears_when_up() {
        let down = spec(Metric::Down, None, Some(Threshold::Flag(true)));
        let mut state = RuleState::new();
        let seq = [true, true, true, false, false];
        let out: Vec<_> = seq
            .iter()
            .enumerate()
            .filter_map(|(i, d)| {
                state
                    .evaluate(&down, Some(MetricValue::Down(*d)), None, i as u64 * SEC)
                    .map(|o| (i, o))
            })
            .collect();
        assert_eq!(
            kinds(&out),
            [(1, EventKind::Raised, Severity::Critical), (4, EventKind::Cleared, Severity::Ok)]
        );
        let off = spec(Metric::Down, None, Some(Threshold::Flag(false)));
        let mut state = RuleState::new();
        for i in 0..5 {
            assert!(state.evaluate(&off, Some(MetricValue::Down(true)), None, i * SEC).is_none());
        }
    }

    fn sample(total: u64, kqueues: u64) -> Sample {
        Sample {
            at: 0,
            total,
            kinds: BTreeMap::from([(FdKind::Kqueue, kqueues), (FdKind::Unix, total - kqueues)]),
            limit: Some(1024),
            rss_bytes: Some(3 << 30),
            cpu_seconds: None,
            threads: None,
            descendants: 0,
        }
    }

    #[test]
    fn measures_metrics_from_an_observation() {
        let s = sample(900, 812);
        let fds = vec![
            leakwatch_probe::Fd {
                fd: 3,
                kind: FdKind::File,
                path: Some("/srv/state.db".into()),
                endpoint: None,
            },
            leakwatch_probe::Fd {
                fd: 4,
                kind: FdKind::File,
                path: Some("/srv/state.db".into()),
                endpoint: None,
            },
            leakwatch_probe::Fd {
                fd: 5,
                kind: FdKind::File,
                path: Some("/srv/state.db-wal".into()),
                endpoint: None,
            },
            leakwatch_probe::Fd {
                fd: 6,
                kind: FdKind::File,
                path: Some("/srv/log".into()),
                endpoint: None,
            },
        ];
        let summary = FdSummary::from_fds(&fds);
        let obs =
            Observation { sample: Some(&s), summary: Some(&summary), ..Observation::default() };
        assert_eq!(measure(&Metric::Fds, &obs), Some(MetricValue::Count(900)));
        assert_eq!(measure(&Metric::Kind(FdKind::Kqueue), &obs), Some(MetricValue::Count(812)));
        assert_eq!(measure(&Metric::Class(FdClass::Sockets), &obs), Some(MetricValue::Count(88)));
        let glob = Metric::Path(PathGlob::new("*state.db*").unwrap());
        assert_eq!(measure(&glob, &obs), Some(MetricValue::Count(3)));
        assert_eq!(measure(&Metric::Rss, &obs), Some(MetricValue::Bytes(3 << 30)));
        assert_eq!(measure(&Metric::Down, &obs), Some(MetricValue::Down(false)));
        assert_eq!(measure(&Metric::Eta, &obs), None);
        let down = Observation::default();
        assert_eq!(measure(&Metric::Down, &down), Some(MetricValue::Down(true)));
        assert_eq!(measure(&Metric::Fds, &down), None);
    }

    #[test]
    fn messages_read_well() {
        let kqueue = Metric::Kind(FdKind::Kqueue);
        let ctx = MessageContext {
            target: "copilot",
            metric: &kqueue,
            value: 812.0,
            slope_per_hour: Some(96.0),
            eta: Some(Duration::from_secs(9600)),
            limit: Some(1024),
        };
        assert_eq!(message(&ctx), "copilot: 812 kqueues, +96/h, limit in 2 h 40 min");
        let glob = Metric::Path(PathGlob::new("*state.db*").unwrap());
        let ctx =
            MessageContext { metric: &glob, value: 40.0, slope_per_hour: None, eta: None, ..ctx };
        assert_eq!(message(&ctx), "copilot: 40 descriptors on *state.db*");
        let ctx = MessageContext { metric: &Metric::Rss, value: 2.1 * (1u64 << 30) as f64, ..ctx };
        assert_eq!(message(&ctx), "copilot: RSS 2.1 GiB");
        let ctx =
            MessageContext { metric: &Metric::Fds, value: 823.0, slope_per_hour: Some(1.6), ..ctx };
        assert_eq!(message(&ctx), "copilot: 823 descriptors (80% of 1024), +1.6/h");
        let ctx = MessageContext {
            metric: &Metric::Eta,
            value: 3600.0,
            eta: Some(Duration::from_secs(3600)),
            ..ctx
        };
        assert_eq!(message(&ctx), "copilot: descriptor limit (1024) in 1 h, +1.6/h");
        let one = Metric::Kind(FdKind::Epoll);
        let ctx =
            MessageContext { metric: &one, value: 1.0, slope_per_hour: None, eta: None, ..ctx };
        assert_eq!(message(&ctx), "copilot: 1 epoll instance");
        let ctx = MessageContext { metric: &Metric::Down, value: 1.0, ..ctx };
        assert_eq!(message(&ctx), "copilot: not running");
        let cleared = RuleOutcome {
            kind: EventKind::Cleared,
            severity: Severity::Ok,
            value: 0.0,
            threshold: 0.9,
            notify: true,
        };
        assert_eq!(
            outcome_message(&MessageContext { value: 0.0, ..ctx }, &cleared),
            "copilot: running again"
        );
        let ctx = MessageContext { metric: &kqueue, value: 120.0, ..ctx };
        assert_eq!(outcome_message(&ctx, &cleared), "copilot: back to normal, 120 kqueues");
        let ctx =
            MessageContext { target: "orphans", metric: &Metric::OrphanCount, value: 11.0, ..ctx };
        assert_eq!(message(&ctx), "orphans: 11 orphaned process trees");
    }
}
