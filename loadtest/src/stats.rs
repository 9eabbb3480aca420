//! What the load phase records: the latency of every acknowledged transfer (an
//! HdrHistogram in microseconds, so p99.9 is exact to 3 significant digits without
//! keeping samples), errors by label, a per-second series for the plot, and a
//! bounded uniform sample of acknowledged transfers for the end-of-run history
//! check (reservoir sampling: every acked transfer has the same chance to be
//! checked, whatever the run's length, in a fixed amount of memory).
//!
//! One mutex guards it all. A completion holds it for a histogram increment and a
//! map update, well under a microsecond, and a 2-core machine completes a few
//! thousand transfers a second, so the lock is never where the time goes.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// The largest latency the histograms hold exactly (one hour, in µs); anything
/// slower is recorded as this.
const LATENCY_MAX_US: u64 = 3_600_000_000;

/// The per-second series stops growing after this many points (a day), so a very
/// long run cannot grow it without bound.
const SERIES_MAX_POINTS: usize = 86_400;

/// A latency histogram in microseconds, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    // unwrap: constant, valid bounds (low 1 ≥ 1, high ≥ 2 × low, sigfig 3 ≤ 5).
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).unwrap()
}

/// Records `latency` into `h`, clamped to the histogram's range.
pub fn record(h: &mut Histogram<u64>, latency: Duration) {
    let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    h.saturating_record(us.clamp(1, LATENCY_MAX_US));
}

/// Percentiles of a histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencyMs {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl LatencyMs {
    pub fn of(h: &Histogram<u64>) -> LatencyMs {
        if h.is_empty() {
            return LatencyMs::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        LatencyMs {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// One second of the run, for the latency-over-time plot.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SecondPoint {
    /// Seconds since the load started (the second in which requests completed).
    pub t_s: u64,
    pub acked: u64,
    pub errors: u64,
    /// `None` when nothing was acknowledged in that second.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// An acknowledged transfer kept for the end-of-run checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampledTransfer {
    pub from: usize,
    pub to: usize,
    pub amount_minor: i64,
    pub key: String,
    /// The server's transfer id (the baseline has none: its key).
    pub id: String,
}

/// Everything `Recorder` guards.
struct Inner {
    latency: Histogram<u64>,
    acked: u64,
    fees_minor: i64,
    errors: BTreeMap<String, u64>,
    first_error: BTreeMap<String, String>,
    last_completion: Option<Instant>,
    /// The second being filled and its histogram; earlier seconds are in `series`.
    second: u64,
    second_latency: Histogram<u64>,
    second_errors: u64,
    series: Vec<SecondPoint>,
    /// Latency of the transfers intended after the warm-up.
    steady_latency: Histogram<u64>,
    sample: Vec<SampledTransfer>,
    sample_capacity: usize,
    rng: StdRng,
}

/// The load phase's measurements.
pub struct Recorder {
    start: Instant,
    /// Transfers intended from here on count in the steady-state histogram.
    steady_from: Instant,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("start", &self.start)
            .finish()
    }
}

/// A copy of the counters for the progress bar.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub acked: u64,
    pub errors: u64,
}

/// The final figures.
#[derive(Debug, Clone)]
pub struct Summary {
    pub latency: Histogram<u64>,
    /// The same, of the transfers intended after the warm-up (see
    /// [`Recorder::with_warmup`]).
    pub steady_latency: Histogram<u64>,
    pub acked: u64,
    pub fees_minor: i64,
    pub errors: BTreeMap<String, u64>,
    /// One example message per error label, to tell a user what went wrong.
    pub first_error: BTreeMap<String, String>,
    pub series: Vec<SecondPoint>,
    pub sample: Vec<SampledTransfer>,
    /// From the load's start to the last completion.
    pub elapsed: Duration,
    /// CPU per acknowledged transfer during the load (set by the load phase).
    pub cpu: crate::cpu::CpuPerTransfer,
    /// Costs read by the probes around the load (set by the load phase).
    pub costs: Option<crate::probes::Costs>,
}

impl Recorder {
    /// A recorder for a load that starts at `start`, keeping a sample of at most
    /// `sample_capacity` acked transfers chosen with a `seed`ed RNG.
    pub fn new(start: Instant, sample_capacity: usize, seed: u64) -> Recorder {
        Recorder {
            start,
            steady_from: start,
            inner: Mutex::new(Inner {
                latency: latency_histogram(),
                acked: 0,
                fees_minor: 0,
                errors: BTreeMap::new(),
                first_error: BTreeMap::new(),
                last_completion: None,
                second: 0,
                second_latency: latency_histogram(),
                second_errors: 0,
                series: Vec::new(),
                steady_latency: latency_histogram(),
                sample: Vec::with_capacity(sample_capacity),
                sample_capacity,
                rng: StdRng::seed_from_u64(seed ^ 0x5EED_5A3F),
            }),
        }
    }

    /// Leaves the transfers intended within `warmup` of the start out of the
    /// steady-state histogram ([`Summary::steady_latency`]; they stay in every
    /// other figure). The first second of a run at full rate pays for what the
    /// set-up left behind and for cold state (first transfers of each account,
    /// fresh memory), as a benchmark's warm-up iterations do (criterion runs
    /// 3 s of them before measuring); both figures are reported.
    pub fn with_warmup(mut self, warmup: Duration) -> Recorder {
        self.steady_from = self.start + warmup;
        self
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock can only come from a bug in this file;
        // the counters are still consistent, so keep going with them.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A transfer acknowledged at `done`, intended to start at `intended`.
    pub fn acked(&self, intended: Instant, done: Instant, fee_minor: i64, t: SampledTransfer) {
        let mut g = self.lock();
        g.roll(self.start, done);
        let latency = done.saturating_duration_since(intended);
        record(&mut g.latency, latency);
        record(&mut g.second_latency, latency);
        if intended >= self.steady_from {
            record(&mut g.steady_latency, latency);
        }
        g.acked += 1;
        g.fees_minor += fee_minor;
        // Reservoir sampling (Algorithm R): the n-th acked transfer replaces a
        // random kept one with probability capacity / n.
        let n = g.acked;
        if g.sample.len() < g.sample_capacity {
            g.sample.push(t);
        } else if g.sample_capacity > 0 {
            let slot = g.rng.gen_range(0..n);
            if let Ok(slot) = usize::try_from(slot) {
                if slot < g.sample_capacity {
                    g.sample[slot] = t;
                }
            }
        }
    }

    /// A transfer that failed at `done` with `label` (`detail` kept once per label).
    pub fn failed(&self, done: Instant, label: &str, detail: &str) {
        let mut g = self.lock();
        g.roll(self.start, done);
        g.second_errors += 1;
        *g.errors.entry(label.to_owned()).or_default() += 1;
        if !g.first_error.contains_key(label) {
            let short: String = detail.chars().take(300).collect();
            g.first_error.insert(label.to_owned(), short);
        }
    }

    pub fn progress(&self) -> Progress {
        let g = self.lock();
        Progress {
            acked: g.acked,
            errors: g.errors.values().sum(),
        }
    }

    /// The final figures (closing the last second).
    pub fn finish(&self) -> Summary {
        let mut g = self.lock();
        g.close_second();
        let elapsed = g
            .last_completion
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(self.start));
        Summary {
            latency: g.latency.clone(),
            steady_latency: g.steady_latency.clone(),
            acked: g.acked,
            fees_minor: g.fees_minor,
            errors: g.errors.clone(),
            first_error: g.first_error.clone(),
            series: g.series.clone(),
            sample: g.sample.clone(),
            elapsed,
            cpu: crate::cpu::CpuPerTransfer::default(),
            costs: None,
        }
    }
}

impl Inner {
    /// Moves the per-second window forward to the second of `done`, closing the
    /// seconds in between (empty ones included, so the plot's x axis is honest).
    fn roll(&mut self, start: Instant, done: Instant) {
        self.last_completion = Some(self.last_completion.map_or(done, |t| t.max(done)));
        let second = done.saturating_duration_since(start).as_secs();
        // Completions race to the lock, so one from the previous second may come
        // after the window moved: it counts in the current second.
        while self.second < second && self.series.len() < SERIES_MAX_POINTS {
            self.close_second();
            self.second += 1;
        }
    }

    fn close_second(&mut self) {
        let h = &self.second_latency;
        let pct = |q: f64| (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1000.0);
        let point = SecondPoint {
            t_s: self.second,
            acked: h.len(),
            errors: self.second_errors,
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
        };
        if self.series.len() < SERIES_MAX_POINTS {
            self.series.push(point);
        }
        self.second_latency.reset();
        self.second_errors = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(i: usize) -> SampledTransfer {
        SampledTransfer {
            from: i,
            to: i + 1,
            amount_minor: 1,
            key: format!("k{i}"),
            id: format!("tx_{i}"),
        }
    }

    #[test]
    fn latency_is_measured_from_the_intended_start() {
        let start = Instant::now();
        let r = Recorder::new(start, 10, 1);
        // Intended at +0, answered at +250 ms: 250 ms even if it was sent late.
        r.acked(start, start + Duration::from_millis(250), 0, t(0));
        r.acked(start, start + Duration::from_millis(1_500), 0, t(1));
        r.failed(start + Duration::from_millis(1_600), "TIMEOUT", "slow");
        r.failed(start + Duration::from_millis(1_700), "TIMEOUT", "slower");
        let s = r.finish();
        assert_eq!(s.acked, 2);
        assert_eq!(s.errors["TIMEOUT"], 2);
        assert_eq!(s.first_error["TIMEOUT"], "slow");
        let l = LatencyMs::of(&s.latency);
        assert!((l.p50 - 250.0).abs() < 1.0, "{l:?}");
        assert!((l.max - 1500.0).abs() < 2.0, "{l:?}");
        // Two seconds of series: one ack in each, errors in the second.
        assert_eq!(s.series.len(), 2);
        assert_eq!((s.series[0].acked, s.series[0].errors), (1, 0));
        assert_eq!((s.series[1].acked, s.series[1].errors), (1, 2));
        assert_eq!(s.elapsed, Duration::from_millis(1_700));
    }

    #[test]
    fn the_steady_histogram_leaves_out_what_was_intended_within_the_warmup() {
        let start = Instant::now();
        let r = Recorder::new(start, 10, 1).with_warmup(Duration::from_secs(1));
        // Intended in the warm-up (slow), at its end and after it (fast).
        r.acked(start, start + Duration::from_millis(900), 0, t(0));
        let end = start + Duration::from_secs(1);
        r.acked(end, end + Duration::from_millis(4), 0, t(1));
        r.acked(
            end + Duration::from_millis(10),
            end + Duration::from_millis(16),
            0,
            t(2),
        );
        let s = r.finish();
        assert_eq!(
            (s.acked, s.latency.len(), s.steady_latency.len()),
            (3, 3, 2)
        );
        assert!((LatencyMs::of(&s.latency).max - 900.0).abs() < 1.0);
        let steady = LatencyMs::of(&s.steady_latency);
        assert!((steady.max - 6.0).abs() < 0.1, "{steady:?}");
        assert!((steady.p50 - 4.0).abs() < 0.1, "{steady:?}");
        // Without a warm-up both histograms hold every transfer.
        let r = Recorder::new(start, 10, 1);
        r.acked(start, start + Duration::from_millis(900), 0, t(0));
        assert_eq!(r.finish().steady_latency.len(), 1);
    }

    #[test]
    fn the_sample_is_bounded_and_uniform_enough() {
        let start = Instant::now();
        let r = Recorder::new(start, 100, 9);
        for i in 0..10_000 {
            r.acked(start, start, 0, t(i));
        }
        let s = r.finish();
        assert_eq!(s.sample.len(), 100);
        // Roughly half the kept transfers come from the second half of the run.
        let late = s.sample.iter().filter(|x| x.from >= 5_000).count();
        assert!((30..70).contains(&late), "{late}");
    }
}
