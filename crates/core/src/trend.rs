//! Leak slope and time to the limit: how fast a target's descriptors grow, per
//! kind and in total, and when at that pace it hits its FD limit.
//!
//! The fit is Theil–Sen (the median of pairwise slopes) because FD counts are
//! spiky: a burst of requests opens a hundred sockets for a second, and a
//! least-squares line would chase it. Theil–Sen ignores up to ~29% of wild points.
//!
//! Cost matters: the engine must stay under 0.1% of a core at a 2 s interval with
//! five targets, and a 30-minute window at 2 s is 900 samples, whose 400 000
//! pairwise slopes would be far too many to take every tick. So a window is first
//! reduced to at most [`MAX_FIT_POINTS`] points, one per equal slice of time,
//! each the median time and median value of the samples in its slice. The
//! medians also absorb the spikes before the fit sees them. A fit is then at most
//! 1 770 slopes, and only kinds whose count changed in the window are fitted.

use crate::model::{Sample, UnixMillis};
use leakwatch_probe::FdKind;
use serde::{Serialize, Serializer};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::time::Duration;

/// A window is reduced to at most this many points before fitting.
pub const MAX_FIT_POINTS: usize = 60;
/// No slope is fitted over less history than this (or a quarter of the window,
/// if the window is shorter than four minutes): the first seconds of a
/// (re)started process are its start-up burst, not a leak, and an ETA projected
/// from them would raise a false alarm on every restart.
pub const MIN_FIT_SPAN: Duration = Duration::from_secs(60);
/// ETAs further out than this are not reported: a window of minutes says
/// nothing about next month, and a slope that small is noise.
pub const MAX_ETA: Duration = Duration::from_secs(30 * 24 * 3600);

const MILLIS_PER_HOUR: f64 = 3_600_000.0;

/// A straight line `y = slope · x + intercept`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Fit {
    pub slope: f64,
    pub intercept: f64,
}

impl Fit {
    /// The line's value at `x`.
    pub fn at(&self, x: f64) -> f64 {
        self.slope * x + self.intercept
    }
}

/// Theil–Sen: the median of the slopes between every pair of points, and the
/// median of `y - slope · x` as intercept. `None` without two distinct finite `x`.
/// Quadratic in the number of points: reduce long series first.
pub fn theil_sen(points: &[(f64, f64)]) -> Option<Fit> {
    let points: Vec<(f64, f64)> =
        points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
    let mut slopes = Vec::with_capacity(points.len() * points.len().saturating_sub(1) / 2);
    for (i, (x1, y1)) in points.iter().enumerate() {
        for (x2, y2) in &points[i + 1..] {
            if x2 != x1 {
                slopes.push((y2 - y1) / (x2 - x1));
            }
        }
    }
    let slope = median(&mut slopes)?;
    let mut offsets: Vec<f64> = points.iter().map(|(x, y)| y - slope * x).collect();
    let intercept = median(&mut offsets)?;
    Some(Fit { slope, intercept })
}

/// The median, reordering `values`; the mean of the middle two for an even count.
pub(crate) fn median(values: &mut [f64]) -> Option<f64> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mid = n / 2;
    let (lower, upper, _) = values.select_nth_unstable_by(mid, f64::total_cmp);
    let upper = *upper;
    if n % 2 == 1 {
        return Some(upper);
    }
    let below = lower.iter().copied().max_by(f64::total_cmp)?;
    Some((below + upper) / 2.0)
}

/// Growth of one target over a window.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Trend {
    /// Slope of all descriptors, per hour; `None` with too little history
    /// (under [`MIN_FIT_SPAN`], or fewer than two samples).
    pub total_per_hour: Option<f64>,
    /// Slope per kind, per hour, for kinds whose count changed in the window;
    /// the others did not grow and are left out.
    pub kinds_per_hour: BTreeMap<FdKind, f64>,
    /// Time until the FD limit at the total slope, from the last sample: only when
    /// the total grows (by at least one descriptor over the history fitted), the
    /// limit is known, and it is within [`MAX_ETA`]. Zero when already at it.
    #[serde(serialize_with = "seconds")]
    pub eta: Option<Duration>,
    /// Samples inside the window.
    pub points: usize,
}

fn seconds<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

impl Trend {
    /// The trend of the samples taken within `window` before `now` (samples
    /// outside it are ignored, and so are any after `now`). Samples need not be
    /// sorted. The limit is the last sample's.
    pub fn from_samples(samples: &[Sample], window: Duration, now: UnixMillis) -> Trend {
        let min_span = MIN_FIT_SPAN.min(window / 4);
        let window = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        let start = now.saturating_sub(window);
        let mut series: Vec<&Sample> =
            samples.iter().filter(|s| s.at >= start && s.at <= now).collect();
        if !series.is_sorted_by_key(|s| s.at) {
            series.sort_by_key(|s| s.at);
        }
        let mut trend = Trend { points: series.len(), ..Trend::default() };
        let (Some(first), Some(last)) = (series.first(), series.last()) else {
            return trend;
        };
        let span = last.at - first.at;
        if span < u64::try_from(min_span.as_millis()).unwrap_or(u64::MAX) {
            return trend;
        }
        let buckets = Buckets::new(&series, now);
        let Some(total) = buckets.fit(&series, |s| s.total) else {
            return trend;
        };
        trend.total_per_hour = Some(total.slope);

        for kind in changed_kinds(&series) {
            if let Some(fit) = buckets.fit(&series, |s| s.kind(kind)) {
                trend.kinds_per_hour.insert(kind, fit.slope);
            }
        }

        let span_hours = span as f64 / MILLIS_PER_HOUR;
        // Growth of under one descriptor over the whole fit is noise in an integer count.
        let growing = total.slope > 0.0 && total.slope * span_hours >= 1.0;
        if let Some(limit) = last.limit.filter(|l| *l > 0)
            && growing
        {
            let remaining = limit.saturating_sub(last.total) as f64;
            trend.eta = Duration::try_from_secs_f64(remaining / total.slope * 3600.0)
                .ok()
                .filter(|eta| *eta <= MAX_ETA);
        }
        trend
    }
}

/// The kinds whose count is not the same in every sample (an absent kind counts
/// as zero). One pass over each sample's map: a set built per tick from 900
/// samples cost more than all the fits together.
fn changed_kinds(series: &[&Sample]) -> Vec<FdKind> {
    const KINDS: usize = FdKind::ALL.len();
    let mut present = [0usize; KINDS];
    let mut min = [u64::MAX; KINDS];
    let mut max = [0u64; KINDS];
    for sample in series {
        for (kind, count) in &sample.kinds {
            // FdKind::ALL is in declaration order, so the discriminant is the index.
            let i = *kind as usize;
            if let (Some(p), Some(lo), Some(hi)) =
                (present.get_mut(i), min.get_mut(i), max.get_mut(i))
            {
                *p += 1;
                *lo = (*lo).min(*count);
                *hi = (*hi).max(*count);
            }
        }
    }
    FdKind::ALL
        .into_iter()
        .enumerate()
        .filter(|(i, _)| {
            let missing_somewhere = present[*i] < series.len();
            present[*i] > 0 && (min[*i] != max[*i] || (missing_somewhere && max[*i] > 0))
        })
        .map(|(_, kind)| kind)
        .collect()
}

/// Equal slices of time over a sorted series, at most [`MAX_FIT_POINTS`], each
/// with its median time in hours before `now`.
struct Buckets {
    ranges: Vec<Range<usize>>,
    hours: Vec<f64>,
}

impl Buckets {
    fn new(series: &[&Sample], now: UnixMillis) -> Self {
        let n = series.len();
        let ranges: Vec<Range<usize>> = match (series.first(), series.last()) {
            (Some(first), Some(last)) if n > MAX_FIT_POINTS => {
                let width = (last.at - first.at) as f64 / MAX_FIT_POINTS as f64;
                let slice = |s: &Sample| {
                    (((s.at - first.at) as f64 / width) as usize).min(MAX_FIT_POINTS - 1)
                };
                let mut ranges = Vec::with_capacity(MAX_FIT_POINTS);
                let mut begin = 0;
                for i in 1..=n {
                    if i == n || slice(series[i]) != slice(series[begin]) {
                        ranges.push(begin..i);
                        begin = i;
                    }
                }
                ranges
            }
            _ => (0..n).map(|i| i..i + 1).collect(),
        };
        let hours = ranges
            .iter()
            .map(|r| {
                // Sorted: the median time is the middle one (or the middle two).
                let mid = r.start + (r.len() - 1) / 2;
                let at = if r.len() % 2 == 0 {
                    (series[mid].at as f64 + series[mid + 1].at as f64) / 2.0
                } else {
                    series[mid].at as f64
                };
                (at - now as f64) / MILLIS_PER_HOUR
            })
            .collect();
        Self { ranges, hours }
    }

    /// Theil–Sen over the bucket medians of `value`.
    fn fit(&self, series: &[&Sample], value: impl Fn(&Sample) -> u64) -> Option<Fit> {
        let mut scratch = Vec::new();
        let points: Vec<(f64, f64)> = self
            .ranges
            .iter()
            .zip(&self.hours)
            .filter_map(|(range, hour)| {
                scratch.clear();
                scratch.extend(series[range.clone()].iter().map(|s| value(s) as f64));
                median(&mut scratch).map(|y| (*hour, y))
            })
            .collect();
        theil_sen(&points)
    }
}

/// How much one kind grew between two samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Growth {
    pub kind: FdKind,
    /// Count in the first sample.
    pub first: u64,
    /// Count in the last sample.
    pub now: u64,
    /// `now - first`, always positive.
    pub delta: u64,
}

/// The kinds that grew from `first` to `last`, most growth first (ties in kind
/// order); kinds that held or shrank are left out.
pub fn what_grew(first: &Sample, last: &Sample) -> Vec<Growth> {
    let kinds: BTreeSet<FdKind> = first.kinds.keys().chain(last.kinds.keys()).copied().collect();
    let mut grown: Vec<Growth> = kinds
        .into_iter()
        .filter_map(|kind| {
            let (before, after) = (first.kind(kind), last.kind(kind));
            (after > before).then(|| Growth {
                kind,
                first: before,
                now: after,
                delta: after - before,
            })
        })
        .collect();
    grown.sort_by(|a, b| b.delta.cmp(&a.delta).then(a.kind.cmp(&b.kind)));
    grown
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixMillis = 1_700_000_000_000;
    const WINDOW: Duration = Duration::from_secs(30 * 60);

    use crate::test_noise::Noise;

    fn sample(at: UnixMillis, kqueues: u64, unix: u64, limit: Option<u64>) -> Sample {
        Sample {
            at,
            total: kqueues + unix,
            kinds: BTreeMap::from([(FdKind::Kqueue, kqueues), (FdKind::Unix, unix)]),
            limit,
            rss_bytes: None,
            cpu_seconds: None,
            threads: None,
            descendants: 0,
        }
    }

    /// A sample every 2 s over the window: kqueues `base + rate·t` with noise of
    /// standard deviation `sigma`, a tenth of them wild, and 40 unix sockets.
    fn leaking(
        rate_per_hour: f64,
        base: f64,
        sigma: f64,
        outliers: bool,
        seed: u64,
    ) -> Vec<Sample> {
        let mut noise = Noise(seed);
        let count = 900;
        (0..count)
            .map(|i| {
                let at = NOW - (count - 1 - i) * 2000;
                let hours = (at as f64 - (NOW - 1_800_000) as f64) / 3_600_000.0;
                let mut value = base + rate_per_hour * hours + sigma * noise.gaussian();
                if outliers && noise.uniform() < 0.10 {
                    // Bursts of hundreds, or a read that came back nearly empty.
                    value = if noise.uniform() < 0.5 {
                        value + 200.0 + 800.0 * noise.uniform()
                    } else {
                        value * noise.uniform() * 0.2
                    };
                }
                sample(at, value.round().max(0.0) as u64, 40, Some(1024))
            })
            .collect()
    }

    #[test]
    fn theil_sen_fits_a_line_and_ignores_an_outlier() {
        let mut points: Vec<(f64, f64)> =
            (0..10).map(|i| (f64::from(i), 3.0 * f64::from(i) + 7.0)).collect();
        let fit = theil_sen(&points).unwrap();
        assert!((fit.slope - 3.0).abs() < 1e-12 && (fit.intercept - 7.0).abs() < 1e-12);
        points[4].1 = 10_000.0;
        let fit = theil_sen(&points).unwrap();
        assert!((fit.slope - 3.0).abs() < 1e-12, "{fit:?}");
        assert!((fit.at(20.0) - 67.0).abs() < 1e-9);
        assert_eq!(theil_sen(&[(1.0, 2.0), (1.0, 5.0)]), None);
        assert_eq!(theil_sen(&[(1.0, 2.0)]), None);
        assert_eq!(theil_sen(&[]), None);
        assert!(theil_sen(&[(0.0, 0.0), (f64::NAN, 1.0), (1.0, 2.0)]).is_some());
    }

    #[test]
    fn median_odd_and_even() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }

    #[test]
    fn known_slope_through_noise_and_outliers() {
        for seed in [1, 7, 42, 1234, 99_999] {
            let samples = leaking(96.0, 100.0, 2.0, true, seed);
            let trend = Trend::from_samples(&samples, WINDOW, NOW);
            assert_eq!(trend.points, 900);
            let slope = trend.total_per_hour.unwrap();
            assert!((slope - 96.0).abs() < 96.0 * 0.02, "seed {seed}: {slope}");
            let kqueue = trend.kinds_per_hour[&FdKind::Kqueue];
            assert!((kqueue - 96.0).abs() < 96.0 * 0.02, "seed {seed}: {kqueue}");
            // Unix sockets did not change: left out.
            assert_eq!(trend.kinds_per_hour.keys().collect::<Vec<_>>(), [&FdKind::Kqueue]);
        }
    }

    #[test]
    fn eta_is_remaining_over_slope() {
        let samples = leaking(96.0, 100.0, 2.0, true, 3);
        let trend = Trend::from_samples(&samples, WINDOW, NOW);
        let last = samples.last().unwrap();
        let slope = trend.total_per_hour.unwrap();
        let expected = (1024 - last.total) as f64 / slope * 3600.0;
        let eta = trend.eta.unwrap().as_secs_f64();
        assert!((eta - expected).abs() < 1e-6, "{eta} vs {expected}");
        // About (1024 - 188) / 96 h.
        assert!((eta / 3600.0 - 8.7).abs() < 0.3, "{}", eta / 3600.0);
    }

    #[test]
    fn no_eta_without_a_limit_or_at_the_limit() {
        let mut samples = leaking(96.0, 100.0, 0.0, false, 3);
        for s in &mut samples {
            s.limit = None;
        }
        let trend = Trend::from_samples(&samples, WINDOW, NOW);
        assert!(trend.total_per_hour.is_some());
        assert_eq!(trend.eta, None);
        for s in &mut samples {
            s.limit = Some(100);
        }
        let trend = Trend::from_samples(&samples, WINDOW, NOW);
        assert_eq!(trend.eta, Some(Duration::ZERO));
    }

    #[test]
    fn flat_series_has_no_slope_and_no_eta() {
        let samples = leaking(0.0, 300.0, 0.0, true, 5);
        let trend = Trend::from_samples(&samples, WINDOW, NOW);
        assert_eq!(trend.total_per_hour, Some(0.0));
        assert_eq!(trend.eta, None);
        for seed in [11, 12, 13] {
            let samples = leaking(0.0, 300.0, 2.0, true, seed);
            let trend = Trend::from_samples(&samples, WINDOW, NOW);
            let slope = trend.total_per_hour.unwrap();
            assert!(slope.abs() < 2.0, "seed {seed}: {slope}");
            assert_eq!(trend.eta, None, "seed {seed}: {slope}");
        }
    }

    #[test]
    fn samples_outside_the_window_are_ignored() {
        // Two hours of a steep leak, then the last 30 minutes flat.
        let mut samples: Vec<Sample> = (0..240)
            .map(|i| sample(NOW - 9_000_000 + i * 30_000, i * 10, 40, Some(4096)))
            .collect();
        samples.extend((0..60).map(|i| sample(NOW - 1_770_000 + i * 30_000, 500, 40, Some(4096))));
        // And some from the future, which must not count either.
        samples.push(sample(NOW + 60_000, 4000, 40, Some(4096)));
        samples.reverse();
        let trend = Trend::from_samples(&samples, WINDOW, NOW);
        assert_eq!(trend.points, 60);
        assert_eq!(trend.total_per_hour, Some(0.0));
        assert!(trend.kinds_per_hour.is_empty());
        assert_eq!(trend.eta, None);
    }

    #[test]
    fn too_little_history_gives_no_slope() {
        // A start-up burst in the first seconds of a process.
        let samples: Vec<Sample> =
            (0..10).map(|i| sample(NOW - 18_000 + i * 2000, 10 + i * 20, 5, Some(256))).collect();
        let trend = Trend::from_samples(&samples, WINDOW, NOW);
        assert_eq!(trend.points, 10);
        assert_eq!(trend.total_per_hour, None);
        assert_eq!(trend.eta, None);
        assert_eq!(Trend::from_samples(&[], WINDOW, NOW), Trend::default());
    }

    #[test]
    fn windows_are_reduced_to_sixty_points() {
        let samples = leaking(96.0, 100.0, 2.0, false, 9);
        let series: Vec<&Sample> = samples.iter().collect();
        let buckets = Buckets::new(&series, NOW);
        assert_eq!(buckets.ranges.len(), MAX_FIT_POINTS);
        assert_eq!(buckets.ranges.iter().map(|r| r.len()).sum::<usize>(), 900);
        assert!(buckets.hours.windows(2).all(|w| w[0] < w[1]));
        let few: Vec<&Sample> = series[..30].to_vec();
        assert_eq!(Buckets::new(&few, NOW).ranges.len(), 30);
    }

    #[test]
    fn changed_kinds_treats_absent_as_zero() {
        assert!(FdKind::ALL.iter().enumerate().all(|(i, k)| *k as usize == i));
        let a = sample(0, 5, 40, None);
        let mut b = sample(1, 5, 40, None);
        b.kinds.insert(FdKind::Pipe, 2);
        b.kinds.insert(FdKind::Tcp, 0);
        assert_eq!(changed_kinds(&[&a, &b]), [FdKind::Pipe]);
        assert!(changed_kinds(&[&a, &a]).is_empty());
    }

    #[test]
    fn what_grew_orders_by_delta() {
        let mut first = sample(0, 100, 40, None);
        first.kinds.insert(FdKind::Pipe, 10);
        let mut last = sample(1, 191, 38, None);
        last.kinds.insert(FdKind::Tcp, 5);
        last.kinds.insert(FdKind::Pipe, 15);
        let grew = what_grew(&first, &last);
        assert_eq!(
            grew,
            [
                Growth { kind: FdKind::Kqueue, first: 100, now: 191, delta: 91 },
                Growth { kind: FdKind::Tcp, first: 0, now: 5, delta: 5 },
                Growth { kind: FdKind::Pipe, first: 10, now: 15, delta: 5 },
            ]
        );
    }

    #[test]
    fn trend_json_has_eta_in_seconds() {
        let trend = Trend {
            total_per_hour: Some(96.0),
            kinds_per_hour: BTreeMap::from([(FdKind::Kqueue, 96.0)]),
            eta: Some(Duration::from_secs(9600)),
            points: 900,
        };
        let json = serde_json::to_value(&trend).unwrap();
        assert_eq!(json["eta"], 9600.0);
        assert_eq!(json["kinds_per_hour"]["kqueue"], 96.0);
    }
}
