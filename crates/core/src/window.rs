//! A watched process's recent history in memory, in bounded space and time.
//!
//! The engine used to keep every sample of the last hour (or of the trend window,
//! if longer) per process and refit the trend over all of them on every tick: at
//! a 100 ms interval that is 36 000 samples (≈12 MB) per target, and a tick's
//! cost grew with uptime until the window filled. Here samples are folded, as
//! they arrive, into two sets of time buckets whose count does not depend on the
//! interval or on how long the engine has run:
//!
//! - **Fit buckets**, [`FIT_BUCKETS`] over the trend window. Each keeps an evenly
//!   spaced subsample of at most [`PER_BUCKET`] of its samples (every one at
//!   first, then every second, every fourth... as more arrive) and the least and
//!   greatest count of every kind it saw. The trend is Theil–Sen over the
//!   closed buckets' medians, as [`crate::trend`] fits over slices of raw
//!   samples: the medians absorb bursts before the fit sees them. A closed
//!   bucket never changes, so the fit is made when one closes or leaves the
//!   window and kept; a tick only reads it, in the same time with the window
//!   empty or full. (A fit on every tick cost 2 µs with one bucket and 62 µs
//!   with the window full.)
//! - **Sparkline buckets**, [`SPARKLINE_POINTS`] over the last hour, each the
//!   peak total it saw (a leak shows at its peaks, and the store downsamples to
//!   peaks too).
//!
//! So per-process memory is a constant (under 128 KiB, which the tests measure)
//! and so is the trend's cost per tick: a
//! sample folded in, the kept fit read, and a refit once per bucket width.
//!
//! The price: the window's oldest bucket may reach up to 1/[`FIT_BUCKETS`] of
//! the window further back than the window, the newest samples join the slope
//! up to 1/[`FIT_BUCKETS`] of the window late (the latest sample still sets the
//! ETA's count), and the median of a bucket with more than [`PER_BUCKET`]
//! samples is that of its subsample.

use crate::model::{Sample, UnixMillis};
use crate::trend::{MAX_ETA, MIN_FIT_SPAN, Trend, median, theil_sen};
use leakwatch_probe::FdKind;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// Buckets over the trend window: the points the fit is made of.
pub const FIT_BUCKETS: usize = crate::trend::MAX_FIT_POINTS;
/// Samples kept per fit bucket, evenly spaced. Even, so that halving keeps the
/// spacing even.
pub const PER_BUCKET: usize = 16;
/// Points of the sparkline (the status's `history`).
pub const SPARKLINE_POINTS: usize = 120;
/// What the sparkline spans.
pub const SPARKLINE_SPAN: Duration = Duration::from_secs(3600);

const KINDS: usize = FdKind::ALL.len();
const MILLIS_PER_HOUR: f64 = 3_600_000.0;

/// One kept sample: its time, total, and every kind's count (indexed by
/// `FdKind as usize`; counts past `u32::MAX` saturate).
#[derive(Debug, Clone, Copy)]
struct Point {
    at: UnixMillis,
    total: u64,
    kinds: [u32; KINDS],
}

impl Point {
    fn of(sample: &Sample) -> Self {
        let mut kinds = [0u32; KINDS];
        for (kind, count) in &sample.kinds {
            if let Some(slot) = kinds.get_mut(*kind as usize) {
                *slot = u32::try_from(*count).unwrap_or(u32::MAX);
            }
        }
        Self { at: sample.at, total: sample.total, kinds }
    }
}

#[derive(Debug, Clone)]
struct FitBucket {
    /// `at / width` of its samples.
    index: u64,
    /// Samples that fell in it, kept or not.
    seen: u64,
    /// Every `stride`-th sample is kept.
    stride: u64,
    first_at: UnixMillis,
    last_at: UnixMillis,
    kept: Vec<Point>,
    kind_min: [u32; KINDS],
    kind_max: [u32; KINDS],
}

impl FitBucket {
    fn new(index: u64, point: &Point) -> Self {
        let mut kept = Vec::with_capacity(PER_BUCKET);
        kept.push(*point);
        Self {
            index,
            seen: 1,
            stride: 1,
            first_at: point.at,
            last_at: point.at,
            kept,
            kind_min: point.kinds,
            kind_max: point.kinds,
        }
    }

    fn add(&mut self, point: &Point) {
        for ((lo, hi), n) in self.kind_min.iter_mut().zip(&mut self.kind_max).zip(&point.kinds) {
            *lo = (*lo).min(*n);
            *hi = (*hi).max(*n);
        }
        self.first_at = self.first_at.min(point.at);
        self.last_at = self.last_at.max(point.at);
        let seq = self.seen;
        self.seen += 1;
        if !seq.is_multiple_of(self.stride) {
            return;
        }
        if self.kept.len() >= PER_BUCKET {
            // Kept are the multiples of `stride`; keep the multiples of twice it.
            let mut position = 0;
            self.kept.retain(|_| {
                position += 1;
                position % 2 == 1
            });
            self.stride *= 2;
            if !seq.is_multiple_of(self.stride) {
                return;
            }
        }
        self.kept.push(*point);
    }

    /// The median time of the kept samples (kept in arrival order, which is time
    /// order but for a clock step).
    fn median_at(&self, scratch: &mut Vec<f64>) -> Option<f64> {
        scratch.clear();
        scratch.extend(self.kept.iter().map(|p| p.at as f64));
        median(scratch)
    }

    fn median_of(&self, value: impl Fn(&Point) -> u64, scratch: &mut Vec<f64>) -> Option<f64> {
        scratch.clear();
        scratch.extend(self.kept.iter().map(|p| value(p) as f64));
        median(scratch)
    }
}

/// The bounded history of one process; see the module documentation.
#[derive(Debug, Clone, Default)]
pub struct SampleWindow {
    window: Duration,
    /// Width of a fit bucket, `window / FIT_BUCKETS` (at least 1 ms).
    width: u64,
    fit: VecDeque<FitBucket>,
    /// The fit over the closed buckets (all but the newest), refitted only when
    /// a bucket closes or leaves the window.
    closed: ClosedFit,
    /// Each sparkline bucket's peak `(time, total)`, oldest first: already the
    /// shape [`SampleWindow::sparkline`] returns, so that drawing it is a copy.
    spark: VecDeque<(UnixMillis, u64)>,
    /// The sparkline bucket the newest peak stands for (a sample from before it,
    /// after the clock stepped back, joins it rather than reopening history).
    spark_newest: u64,
    last: Option<Sample>,
}

/// The slopes fitted over a run of closed fit buckets. A closed bucket never
/// changes (samples join only the newest), so neither does this until the run
/// does: a tick reads it in constant time, however full the window is.
#[derive(Debug, Clone, Default, PartialEq)]
struct ClosedFit {
    /// The `index` of the run's first and last bucket; `None` before any closed.
    run: Option<(u64, u64)>,
    /// Samples the run's buckets saw.
    seen: u64,
    /// Slope of the total, per hour; `None` if it could not be fitted.
    total: Option<f64>,
    /// Slope per kind, for kinds whose count changed in the run.
    kinds: BTreeMap<FdKind, f64>,
}

impl ClosedFit {
    /// Theil–Sen over the bucket medians of `run` (oldest first), per kind too.
    /// `x` is hours since the run's first sample: small numbers, whatever the
    /// epoch, so the slopes lose no precision to the clock's magnitude.
    fn of(run: &[&FitBucket]) -> Self {
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            return Self::default();
        };
        let origin = first.first_at as f64;
        let mut scratch = Vec::with_capacity(PER_BUCKET);
        let hours: Vec<Option<f64>> = run
            .iter()
            .map(|b| b.median_at(&mut scratch).map(|at| (at - origin) / MILLIS_PER_HOUR))
            .collect();
        let mut fit = |value: &dyn Fn(&Point) -> u64| {
            let points: Vec<(f64, f64)> = run
                .iter()
                .zip(&hours)
                .filter_map(|(b, hour)| Some(((*hour)?, b.median_of(value, &mut scratch)?)))
                .collect();
            theil_sen(&points).map(|fit| fit.slope)
        };
        let total = fit(&|p: &Point| p.total);
        let mut kinds = BTreeMap::new();
        if total.is_some() {
            for (i, kind) in FdKind::ALL.into_iter().enumerate() {
                let lo = run.iter().map(|b| b.kind_min[i]).min().unwrap_or(0);
                let hi = run.iter().map(|b| b.kind_max[i]).max().unwrap_or(0);
                if lo == hi {
                    continue;
                }
                if let Some(slope) = fit(&|p: &Point| u64::from(p.kinds[i])) {
                    kinds.insert(kind, slope);
                }
            }
        }
        Self {
            run: Some((first.index, last.index)),
            seen: run.iter().map(|b| b.seen).sum(),
            total,
            kinds,
        }
    }
}

impl SampleWindow {
    /// An empty history for a trend window of `window`.
    pub fn new(window: Duration) -> Self {
        let mut history = Self::default();
        history.set_window(window);
        history
    }

    /// Changes the trend window (a config reload). The fit buckets of another
    /// width cannot be re-cut, so the fit starts over; the sparkline is kept.
    pub fn set_window(&mut self, window: Duration) {
        if window == self.window && self.width > 0 {
            return;
        }
        self.window = window;
        let millis = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        self.width = (millis / FIT_BUCKETS as u64).max(1);
        self.fit.clear();
        self.closed = ClosedFit::default();
    }

    /// Forgets everything (a new process for the target).
    pub fn clear(&mut self) {
        self.fit.clear();
        self.closed = ClosedFit::default();
        self.spark.clear();
        self.last = None;
    }

    /// The latest sample.
    pub fn last(&self) -> Option<&Sample> {
        self.last.as_ref()
    }

    /// Folds in a sample. Constant time (amortised), whatever came before.
    pub fn push(&mut self, sample: &Sample) {
        let point = Point::of(sample);
        // `max(1)`: a default history, never given a window, still works.
        let index = sample.at / self.width.max(1);
        match self.fit.back_mut() {
            // A sample from before the newest bucket (the clock stepped back)
            // joins the newest bucket rather than reopening history.
            Some(bucket) if bucket.index >= index => bucket.add(&point),
            _ => self.fit.push_back(FitBucket::new(index, &point)),
        }
        let window = u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX);
        let start = sample.at.saturating_sub(window);
        while self.fit.front().is_some_and(|b| b.last_at < start)
            || self.fit.len() > FIT_BUCKETS + 1
        {
            self.fit.pop_front();
        }
        self.refit_closed();

        let spark_width = spark_width();
        let index = sample.at / spark_width;
        match self.spark.back_mut() {
            Some(peak) if self.spark_newest >= index => {
                if sample.total >= peak.1 {
                    *peak = (sample.at, sample.total);
                }
            }
            _ => {
                self.spark.push_back((sample.at, sample.total));
                self.spark_newest = index;
            }
        }
        let since = sample.at.saturating_sub(span_millis()) / spark_width;
        while self.spark.front().is_some_and(|p| p.0 / spark_width < since)
            || self.spark.len() > SPARKLINE_POINTS
        {
            self.spark.pop_front();
        }
        self.last = Some(sample.clone());
    }

    /// Refits [`ClosedFit`] if the closed buckets are not the run it was fitted
    /// over: once per bucket closed or evicted, not per sample.
    fn refit_closed(&mut self) {
        let closed = self.fit.len().saturating_sub(1);
        let run = self.fit.front().zip(self.fit.get(closed.wrapping_sub(1)));
        let run = run.filter(|_| closed > 0).map(|(first, last)| (first.index, last.index));
        if run != self.closed.run {
            let buckets: Vec<&FitBucket> = self.fit.iter().take(closed).collect();
            self.closed = ClosedFit::of(&buckets);
        }
    }

    /// The trend at `now`: Theil–Sen over the medians of the closed fit buckets
    /// in the window (at most [`FIT_BUCKETS`]), as [`Trend::from_samples`] fits
    /// over slices of raw samples. The newest bucket, still filling, joins the
    /// fit when it closes (a bucket is 1/[`FIT_BUCKETS`] of the window), so
    /// that the fit is made once per bucket rather than on every tick. `points`
    /// counts the samples the buckets in the window saw, the newest included;
    /// the ETA is from the latest sample.
    pub fn trend(&self, now: UnixMillis) -> Trend {
        self.trend_with(now, false)
    }

    fn trend_with(&self, now: UnixMillis, refit: bool) -> Trend {
        let min_span = MIN_FIT_SPAN.min(self.window / 4);
        let window = u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX);
        let start = now.saturating_sub(window);
        let in_window = |b: &FitBucket| b.last_at >= start && b.first_at <= now;
        let newest = self.fit.back().filter(|b| in_window(b));
        // The closed buckets in the window are a run: those pushed out of it
        // are at the front, any from after `now` (a clock step) at the back.
        // Buckets are in time order, so if the first and the last closed one
        // are in the window, all are: the usual case (`now` is the latest
        // sample's time), answered without walking the buckets.
        let closed = self.fit.len().saturating_sub(1);
        let ends_in = closed > 0
            && self.fit.front().is_some_and(in_window)
            && self.fit.get(closed - 1).is_some_and(in_window);
        let (lo, hi) = if ends_in {
            (0, closed)
        } else {
            let lo = self.fit.iter().take(closed).position(in_window).unwrap_or(closed);
            (lo, self.fit.iter().take(closed).rposition(in_window).map_or(lo, |i| i + 1))
        };
        let run_ids = self.fit.get(lo).zip(self.fit.get(hi.wrapping_sub(1)));
        let run_ids = run_ids.filter(|_| hi > lo).map(|(a, b)| (a.index, b.index));
        let refitted;
        let fitted = if !refit && run_ids == self.closed.run {
            &self.closed
        } else {
            let run: Vec<&FitBucket> = self.fit.range(lo..hi).filter(|b| in_window(b)).collect();
            refitted = ClosedFit::of(&run);
            &refitted
        };
        let seen = fitted.seen + newest.map_or(0, |b| b.seen);
        let mut trend =
            Trend { points: usize::try_from(seen).unwrap_or(usize::MAX), ..Trend::default() };
        let (Some(first), Some(last_closed), Some(last)) =
            (self.fit.get(lo).filter(|_| hi > lo), self.fit.get(hi.wrapping_sub(1)), &self.last)
        else {
            return trend;
        };
        let span = last_closed.last_at.saturating_sub(first.first_at.max(start));
        if span < u64::try_from(min_span.as_millis()).unwrap_or(u64::MAX) {
            return trend;
        }
        let Some(total) = fitted.total else {
            return trend;
        };
        trend.total_per_hour = Some(total);
        trend.kinds_per_hour = fitted.kinds.clone();

        let span_hours = span as f64 / MILLIS_PER_HOUR;
        // Growth of under one descriptor over the whole fit is noise in an integer count.
        let growing = total > 0.0 && total * span_hours >= 1.0;
        if let Some(limit) = last.limit.filter(|l| *l > 0)
            && growing
        {
            let remaining = limit.saturating_sub(last.total) as f64;
            trend.eta = Duration::try_from_secs_f64(remaining / total * 3600.0)
                .ok()
                .filter(|eta| *eta <= MAX_ETA);
        }
        trend
    }

    /// The trend as [`SampleWindow::trend`] finds it, refitted from the buckets
    /// on this call: what the kept fit must always equal.
    #[cfg(test)]
    fn trend_refitted(&self, now: UnixMillis) -> Trend {
        self.trend_with(now, true)
    }

    /// At most [`SPARKLINE_POINTS`] + 1 `(time, total)` points of the last hour:
    /// each bucket's peak, then the latest sample.
    pub fn sparkline(&self) -> Vec<(UnixMillis, u64)> {
        let Some(last) = &self.last else { return Vec::new() };
        let since = last.at.saturating_sub(span_millis());
        // Only the oldest bucket can hold peaks from before the span: skip
        // them, then copy the rest whole.
        let skip = self.spark.iter().take_while(|p| p.0 < since).count();
        let (older, newer) = self.spark.as_slices();
        let mut points = Vec::with_capacity(self.spark.len() + 1 - skip);
        points.extend_from_slice(older.get(skip..).unwrap_or_default());
        points.extend_from_slice(newer.get(skip.saturating_sub(older.len())..).unwrap_or_default());
        if points.last().map(|p| p.0) != Some(last.at) {
            points.push((last.at, last.total));
        }
        points
    }

    /// Bytes this history holds, heap included: what the memory bound is about
    /// (the tests hold it to that bound).
    #[cfg(test)]
    fn memory_bytes(&self) -> usize {
        let last = self.last.as_ref().map_or(0, |s| {
            std::mem::size_of::<Sample>()
                + s.kinds.len() * (std::mem::size_of::<(FdKind, u64)>() + 16)
        });
        std::mem::size_of::<Self>()
            + self.fit.capacity() * std::mem::size_of::<FitBucket>()
            + self
                .fit
                .iter()
                .map(|b| b.kept.capacity() * std::mem::size_of::<Point>())
                .sum::<usize>()
            + self.spark.capacity() * std::mem::size_of::<(UnixMillis, u64)>()
            + self.closed.kinds.len() * (std::mem::size_of::<(FdKind, f64)>() + 16)
            + last
    }

    /// The fit buckets held (at most [`FIT_BUCKETS`] + 1).
    #[cfg(test)]
    fn fit_buckets(&self) -> usize {
        self.fit.len()
    }
}

/// Width of a sparkline bucket: [`SPARKLINE_SPAN`] cut so that the buckets of
/// one span, partial ones at both ends included, are [`SPARKLINE_POINTS`].
fn spark_width() -> u64 {
    span_millis() / (SPARKLINE_POINTS as u64 - 1)
}

fn span_millis() -> u64 {
    u64::try_from(SPARKLINE_SPAN.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixMillis = 1_700_000_000_000;
    const WINDOW: Duration = Duration::from_secs(30 * 60);

    use crate::test_noise::Noise;

    fn sample(at: UnixMillis, kqueues: u64, pipes: u64, unix: u64) -> Sample {
        Sample {
            at,
            total: kqueues + pipes + unix,
            kinds: BTreeMap::from([
                (FdKind::Kqueue, kqueues),
                (FdKind::Pipe, pipes),
                (FdKind::Unix, unix),
            ]),
            limit: Some(4096),
            rss_bytes: None,
            cpu_seconds: None,
            threads: None,
            descendants: 0,
        }
    }

    /// `hours` of samples every `every_ms` up to `end`: kqueues leaking at
    /// `kqueue_rate` per hour and pipes at `pipe_rate`, both with noise and a tenth
    /// of the kqueue readings wild; 40 unix sockets that never change.
    fn leaking(
        end: UnixMillis,
        hours: f64,
        every_ms: u64,
        kqueue_rate: f64,
        pipe_rate: f64,
        seed: u64,
    ) -> Vec<Sample> {
        let mut noise = Noise(seed);
        let count = (hours * 3_600_000.0 / every_ms as f64) as u64;
        (0..count)
            .map(|i| {
                let at = end - (count - 1 - i) * every_ms;
                let h = (at as f64 - end as f64) / 3_600_000.0;
                let mut kq = 500.0 + kqueue_rate * h + 2.0 * noise.gaussian();
                if noise.uniform() < 0.10 {
                    kq = if noise.uniform() < 0.5 {
                        kq + 200.0 + 800.0 * noise.uniform()
                    } else {
                        kq * 0.1
                    };
                }
                let pipes = 300.0 + pipe_rate * h + noise.gaussian();
                sample(at, kq.round().max(0.0) as u64, pipes.round().max(0.0) as u64, 40)
            })
            .collect()
    }

    fn window_of(samples: &[Sample]) -> SampleWindow {
        let mut history = SampleWindow::new(WINDOW);
        for s in samples {
            history.push(s);
        }
        history
    }

    fn assert_near(got: f64, want: f64, what: &str) {
        assert!((got - want).abs() <= want.abs() * 0.03 + 0.5, "{what}: {got}, want {want}");
    }

    #[test]
    fn bucketed_fit_finds_the_slope_and_the_per_kind_slopes() {
        // At 2 s and at 100 ms: the same leak, 900 or 18 000 samples in the window.
        for (every_ms, seed) in [(2000, 1), (2000, 42), (100, 7), (100, 1234)] {
            let samples = leaking(NOW, 1.0, every_ms, 96.0, 30.0, seed);
            let trend = window_of(&samples).trend(NOW);
            let what = format!("every {every_ms} ms, seed {seed}");
            assert_near(trend.total_per_hour.expect("total"), 126.0, &what);
            assert_near(trend.kinds_per_hour[&FdKind::Kqueue], 96.0, &what);
            assert_near(trend.kinds_per_hour[&FdKind::Pipe], 30.0, &what);
            // Unix sockets did not change: left out.
            assert_eq!(
                trend.kinds_per_hour.keys().copied().collect::<Vec<_>>(),
                [FdKind::Kqueue, FdKind::Pipe],
                "{what}"
            );
            let eta = trend.eta.expect("eta").as_secs_f64() / 3600.0;
            let last = samples.last().expect("last");
            let want = (4096 - last.total) as f64 / trend.total_per_hour.expect("total");
            assert!((eta - want).abs() < 1e-6, "{what}: {eta} vs {want}");
            // Only the window's half hour (and at most one bucket more) counts.
            let in_window = 1_800_000 / every_ms;
            let points = trend.points as u64;
            assert!(points >= in_window && points <= in_window * 62 / 60, "{what}: {points}");
        }
    }

    #[test]
    fn bucketed_fit_agrees_with_the_fit_over_raw_samples() {
        for seed in [3, 5, 8] {
            let samples = leaking(NOW, 0.5, 2000, 60.0, 0.0, seed);
            let raw = Trend::from_samples(&samples, WINDOW, NOW);
            let bucketed = window_of(&samples).trend(NOW);
            let (raw, bucketed) =
                (raw.total_per_hour.expect("raw"), bucketed.total_per_hour.expect("b"));
            assert!((raw - bucketed).abs() < 3.0, "seed {seed}: raw {raw}, bucketed {bucketed}");
        }
    }

    #[test]
    fn flat_and_short_histories_give_no_alarm() {
        let flat = leaking(NOW, 1.0, 500, 0.0, 0.0, 11);
        let trend = window_of(&flat).trend(NOW);
        assert!(trend.total_per_hour.expect("slope").abs() < 2.0, "{trend:?}");
        assert_eq!(trend.eta, None);
        // A start-up burst in the first seconds of a process: no slope yet.
        let burst: Vec<Sample> =
            (0..10).map(|i| sample(NOW - 18_000 + i * 2000, 10 + i * 20, 0, 5)).collect();
        let trend = window_of(&burst).trend(NOW);
        assert_eq!(trend.total_per_hour, None);
        assert_eq!(SampleWindow::new(WINDOW).trend(NOW), Trend::default());
    }

    #[test]
    fn a_steep_past_outside_the_window_is_forgotten() {
        let mut samples = leaking(NOW - 1_900_000, 2.0, 2000, 500.0, 0.0, 4);
        samples.extend((0..900).map(|i| sample(NOW - 1_798_000 + i * 2000, 900, 300, 40)));
        let trend = window_of(&samples).trend(NOW);
        assert!(trend.total_per_hour.expect("slope").abs() < 1.0, "{trend:?}");
        assert!(!trend.kinds_per_hour.contains_key(&FdKind::Pipe));
    }

    #[test]
    fn memory_and_buckets_stay_bounded_however_long_and_fast_it_samples() {
        // Ten hours at 100 ms: 360 000 samples through one window.
        let mut history = SampleWindow::new(WINDOW);
        let mut noise = Noise(9);
        let mut after_first_hour = 0;
        let mut biggest = 0;
        for i in 0..360_000u64 {
            let at = NOW + i * 100;
            let kq = 100 + i / 1000 + (noise.uniform() * 5.0) as u64;
            history.push(&sample(at, kq, 3, 40));
            if i == 36_000 {
                after_first_hour = history.memory_bytes();
            }
            biggest = biggest.max(history.memory_bytes());
        }
        assert!(history.fit_buckets() <= FIT_BUCKETS + 1, "{}", history.fit_buckets());
        assert!(history.fit.iter().all(|b| b.kept.len() <= PER_BUCKET));
        assert!(history.spark.len() <= SPARKLINE_POINTS);
        // The same bound after one hour as after ten; and small.
        assert!(biggest <= after_first_hour + 4096, "{after_first_hour} -> {biggest}");
        assert!(biggest < 128 * 1024, "{biggest} bytes");
        let trend = history.trend(NOW + 359_999 * 100);
        // One more descriptor every 1000 samples, 100 s: 36 an hour.
        assert_near(trend.total_per_hour.expect("slope"), 36.0, "10 h at 100 ms");
    }

    #[test]
    fn kept_fit_equals_a_refit_on_every_tick_through_eviction_and_window_changes() {
        // 70 minutes through a 10-minute window (buckets of 10 s), sampled
        // every 700 ms: noisy, spiky, leaking by fits and starts, with a pause
        // longer than the window (the whole fit evicted) and a changed window.
        let window = Duration::from_secs(600);
        let mut history = SampleWindow::new(window);
        let mut noise = Noise(77);
        let mut at = NOW;
        let mut checked = 0;
        let mut refits = 0;
        for i in 0..6000u64 {
            at += if i == 2500 { 900_000 } else { 700 };
            if i == 4500 {
                history.set_window(window / 2);
            }
            let rate = if (i / 800) % 2 == 0 { 0.05 } else { 0.0 };
            let mut kq = 200.0 + rate * i as f64 + 3.0 * noise.gaussian();
            if noise.uniform() < 0.08 {
                kq += 400.0 * noise.uniform();
            }
            let pipes = 50 + (noise.uniform() * 3.0) as u64;
            let before = history.closed.run;
            history.push(&sample(at, kq.max(0.0) as u64, pipes, 40 + i / 1500));
            refits += usize::from(history.closed.run != before);
            let kept = history.trend(at);
            let refit = history.trend_refitted(at);
            assert_eq!(kept, refit, "sample {i}");
            checked += usize::from(kept.total_per_hour.is_some());
            // Later than the last sample, some buckets fall out of the window.
            if i % 7 == 0 {
                let later = at + 200_000;
                assert_eq!(history.trend(later), history.trend_refitted(later), "sample {i}");
            }
        }
        assert!(checked > 4000, "only {checked} samples had a slope");
        // Refitted when a bucket closes or leaves the window (about 14 samples
        // each), not per sample.
        assert!(refits * 5 < 6000, "{refits} refits");
    }

    #[test]
    fn sparkline_is_bounded_ends_at_the_last_sample_and_keeps_peaks() {
        let mut history = SampleWindow::new(WINDOW);
        for i in 0..2000u64 {
            // One spike of 5000 in an otherwise steady climb.
            let total = if i == 1900 { 5000 } else { i };
            history.push(&sample(i * 2000, total, 0, 0));
        }
        let points = history.sparkline();
        assert!(points.len() <= SPARKLINE_POINTS + 1, "{}", points.len());
        assert_eq!(points.last(), Some(&(1999 * 2000, 1999)));
        assert!(points.first().is_some_and(|p| p.0 >= 1999 * 2000 - 3_600_000));
        assert!(points.contains(&(1900 * 2000, 5000)), "the spike is a peak");
        assert!(points.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn a_changed_window_starts_the_fit_over_and_clear_forgets() {
        let samples = leaking(NOW, 1.0, 2000, 96.0, 0.0, 2);
        let mut history = window_of(&samples);
        history.set_window(WINDOW);
        assert!(history.trend(NOW).total_per_hour.is_some(), "same window: kept");
        history.set_window(WINDOW * 2);
        assert_eq!(history.trend(NOW).total_per_hour, None);
        assert!(!history.sparkline().is_empty());
        history.clear();
        assert!(history.sparkline().is_empty());
        assert!(history.last().is_none());
        // One never given a window still takes samples.
        let mut bare = SampleWindow::default();
        bare.push(&sample(NOW, 1, 2, 3));
        assert_eq!(bare.sparkline(), [(NOW, 6)]);
    }
}
