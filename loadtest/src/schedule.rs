//! The open-loop schedule, and the parsers for `--rate` and `--duration`.
//!
//! Open loop means requests are sent when the schedule says, not when the previous
//! answer came back: transfer `i` is *intended* to start at `start + i / rate`. Its
//! latency is measured from that intended instant, not from when the harness got
//! round to sending it. If the server stalls for a second, the requests that should
//! have gone out during that second queue up in the harness and each one reports
//! the time it really waited, instead of the stall being hidden as one slow sample
//! (coordinated omission; Gil Tene's term). The schedule is finite: it holds
//! exactly `floor(rate × duration)` requests, all intended before the deadline.

use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// `--rate`: a fixed number of transfers per second (open loop), or `max`
/// (closed loop: each worker sends its next transfer as soon as the last one is
/// answered).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    PerSecond(f64),
    Max,
}

impl FromStr for Rate {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Rate> {
        if s.eq_ignore_ascii_case("max") {
            return Ok(Rate::Max);
        }
        let r: f64 = s
            .parse()
            .with_context(|| format!("--rate {s:?}: a number of transfers/s or `max`"))?;
        if !(r.is_finite() && r > 0.0 && r <= 1_000_000.0) {
            bail!("--rate {s:?}: must be in (0, 1000000] or `max`");
        }
        Ok(Rate::PerSecond(r))
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rate::PerSecond(r) => write!(f, "{r}"),
            Rate::Max => f.write_str("max"),
        }
    }
}

/// Parses `30s`, `2m`, `1h`, `500ms`, `1m30s` or a bare number of seconds.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return seconds(s, secs);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    // Each round consumes one `<number><unit>` pair; a duration string has at most
    // a handful, so the bound only stops a pathological input.
    for _ in 0..8 {
        if rest.is_empty() {
            break;
        }
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(digits);
        let units = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(units);
        let value: f64 = number
            .parse()
            .with_context(|| format!("duration {s:?}: expected e.g. 30s, 2m, 500ms"))?;
        let factor = match unit {
            "ms" => 0.001,
            "s" | "sec" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            _ => bail!("duration {s:?}: unknown unit {unit:?} (ms, s, m, h)"),
        };
        total += seconds(s, value * factor)?;
        rest = next;
    }
    if !rest.is_empty() {
        bail!("duration {s:?}: too many parts");
    }
    if total.is_zero() {
        bail!("duration {s:?} must be positive");
    }
    Ok(total)
}

fn seconds(input: &str, secs: f64) -> anyhow::Result<Duration> {
    if !(secs.is_finite() && secs > 0.0 && secs <= 7.0 * 86_400.0) {
        bail!("duration {input:?} must be positive and at most a week");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The intended start instants of an open-loop run.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    start: Instant,
    rate: f64,
    count: u64,
}

impl Schedule {
    /// `floor(rate × duration)` requests evenly spaced from `start`.
    pub fn new(start: Instant, rate: f64, duration: Duration) -> Schedule {
        assert!(rate > 0.0 && rate.is_finite(), "rate must be positive");
        let count = (rate * duration.as_secs_f64()).floor() as u64;
        Schedule { start, rate, count }
    }

    /// How many requests the schedule holds.
    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// When request `i` should start. Computed from `i` rather than accumulated, so
    /// rounding never drifts over a long run.
    pub fn intended(&self, i: u64) -> Instant {
        self.start + Duration::from_secs_f64(i as f64 / self.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intended_times_are_evenly_spaced_from_the_start() {
        let start = Instant::now();
        let s = Schedule::new(start, 200.0, Duration::from_secs(3));
        assert_eq!(s.len(), 600);
        assert_eq!(s.intended(0), start);
        assert_eq!(s.intended(1) - start, Duration::from_millis(5));
        assert_eq!(s.intended(200) - start, Duration::from_secs(1));
        // The last request is intended strictly before the deadline.
        assert!(s.intended(s.len() - 1) < start + Duration::from_secs(3));
        // No drift after many requests.
        let long = Schedule::new(start, 3.0, Duration::from_secs(100_000));
        let at = long.intended(299_999) - start;
        assert!((at.as_secs_f64() - 99_999.666_666).abs() < 1e-3, "{at:?}");
    }

    #[test]
    fn fractional_rates_round_down() {
        let s = Schedule::new(Instant::now(), 0.5, Duration::from_secs(5));
        assert_eq!(s.len(), 2);
        assert!(Schedule::new(Instant::now(), 0.1, Duration::from_secs(1)).is_empty());
    }

    #[test]
    fn rates_parse() {
        assert_eq!("max".parse::<Rate>().unwrap(), Rate::Max);
        assert_eq!("MAX".parse::<Rate>().unwrap(), Rate::Max);
        assert_eq!("250".parse::<Rate>().unwrap(), Rate::PerSecond(250.0));
        assert_eq!("0.5".parse::<Rate>().unwrap(), Rate::PerSecond(0.5));
        for bad in ["0", "-1", "fast", "inf", "NaN", "1e9"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("2.5s").unwrap(), Duration::from_millis(2500));
        for bad in ["", "0s", "-3s", "10x", "s", "1000d", "9999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
