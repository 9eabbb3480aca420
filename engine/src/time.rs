//! Time as the engine sees it: milliseconds since the Unix epoch, always injected.
//!
//! The pure core never reads a clock; the actor asks a [`Clock`] and passes `now`
//! down, so rules are testable at any instant and a simulation can drive time.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A UTC instant in milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Timestamp(pub i64);

const DAY_MS: i64 = 86_400_000;

impl Timestamp {
    pub fn millis(self) -> i64 {
        self.0
    }

    /// This instant plus `ms` milliseconds.
    pub fn plus_ms(self, ms: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms))
    }

    /// The UTC calendar day number (days since the epoch) of this instant; daily
    /// limits reset at 00:00 UTC.
    pub fn utc_day(self) -> i64 {
        self.0.div_euclid(DAY_MS)
    }

    /// The first instant of the next UTC day, when daily limits reset.
    pub fn next_utc_midnight(self) -> Timestamp {
        Timestamp((self.utc_day() + 1) * DAY_MS)
    }
}

/// Where the engine gets `now` from.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(since.as_millis() as i64)
    }
}

/// A clock that only moves when told to: for tests of windows, expiries and lockouts.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        ManualClock(Arc::new(AtomicI64::new(start.0)))
    }

    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn set(&self, t: Timestamp) {
        self.0.store(t.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}
