//! Time as the gateway tells it: always the engine's injected clock, never the
//! wall clock directly, so that session and code expiries, KYC timestamps and
//! every `at` the API shows agree with the instants the engine decided by, and a
//! test that moves a [`ManualClock`](okpay_engine::time::ManualClock) moves the
//! whole server. [`ClockSetting`] is how a test (or a simulation) injects one.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use okpay_engine::time::{Clock, SystemClock, Timestamp};
use okpay_engine::Engine;

/// The engine's `now` as a chrono instant.
pub fn now(engine: &Engine) -> DateTime<Utc> {
    to_chrono(engine.clock().now())
}

/// An engine instant as a chrono one. Out of chrono's range (±262,000 years)
/// only for corrupt data; clamped rather than failing a response.
pub fn to_chrono(t: Timestamp) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(t.millis())
        .single()
        .unwrap_or(if t.millis() < 0 {
            DateTime::<Utc>::MIN_UTC
        } else {
            DateTime::<Utc>::MAX_UTC
        })
}

/// A chrono instant as an engine one.
pub fn to_engine(t: DateTime<Utc>) -> Timestamp {
    Timestamp(t.timestamp_millis())
}

/// The clock the engine is started with: the wall clock unless a test injects
/// another. A setting (not a flag), so it can't be chosen from outside.
#[derive(Clone)]
pub struct ClockSetting(pub Arc<dyn Clock>);

impl Default for ClockSetting {
    fn default() -> Self {
        ClockSetting(Arc::new(SystemClock))
    }
}

impl std::fmt::Debug for ClockSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClockSetting(now = {:?})", self.0.now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_round_trip_and_extremes_clamp() {
        let t = Timestamp(1_764_408_600_123);
        assert_eq!(to_engine(to_chrono(t)), t);
        assert_eq!(to_chrono(Timestamp(i64::MAX)), DateTime::<Utc>::MAX_UTC);
        assert_eq!(to_chrono(Timestamp(i64::MIN)), DateTime::<Utc>::MIN_UTC);
    }
}
