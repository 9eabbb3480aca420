//! Limits on *failed* login attempts against credential stuffing: per client IP
//! and per login, a sliding window of failure times. Only failures are recorded,
//! so a user who types the right password is never slowed down, however often
//! they log in. The account lockout (engine) protects one known account; these
//! limits also cover unknown logins and spraying one password over many accounts.
//!
//! Memory is bounded: at most `max_keys` keys, each holding at most `max_failures`
//! times. When the table is full, keys whose window has passed are dropped first,
//! then the keys idle the longest, so a flood of distinct IPs cannot grow it.
//! The limits are per process (exact on one node; a multi-node deployment would
//! move them to Redis with the same keys). Keys are bounded too: a key longer than
//! [`MAX_KEY_BYTES`] (a very long login) is stored as its SHA-256.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sha2::{Digest, Sha256};

/// Keys longer than this are stored hashed, so a key costs at most ~64 bytes.
pub const MAX_KEY_BYTES: usize = 64;

/// `key` itself when short, else `sha256:` and its hex digest (same length always).
fn bounded_key(key: &str) -> std::borrow::Cow<'_, str> {
    if key.len() <= MAX_KEY_BYTES {
        return std::borrow::Cow::Borrowed(key);
    }
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    std::borrow::Cow::Owned(format!("sha256:{hex}"))
}

/// A sliding-window counter of failures per key.
pub struct FailureLimiter {
    max_failures: usize,
    window: Duration,
    max_keys: usize,
    /// A `parking_lot` mutex: held for a lookup, never across an await.
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl FailureLimiter {
    pub fn new(max_failures: u32, window: Duration, max_keys: usize) -> Self {
        FailureLimiter {
            max_failures: max_failures.max(1) as usize,
            window,
            max_keys: max_keys.max(1),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(seconds until a retry may succeed)` when `key` already failed
    /// `max_failures` times within the window.
    pub fn blocked(&self, key: &str) -> Option<u64> {
        let key = bounded_key(key);
        let key = key.as_ref();
        let now = Instant::now();
        let mut map = self.failures.lock();
        let times = map.get_mut(key)?;
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
        if times.is_empty() {
            map.remove(key);
            return None;
        }
        (times.len() >= self.max_failures).then(|| {
            // The oldest failure leaving the window frees one attempt.
            let oldest = times[0];
            let left = self.window.saturating_sub(now.duration_since(oldest));
            left.as_secs().max(1)
        })
    }

    /// Records one failure of `key`.
    pub fn record(&self, key: &str) {
        let key = bounded_key(key);
        let key = key.as_ref();
        let now = Instant::now();
        let mut map = self.failures.lock();
        if !map.contains_key(key) && map.len() >= self.max_keys {
            self.evict(&mut map, now);
        }
        let times = map.entry(key.to_owned()).or_default();
        times.push_back(now);
        while times.len() > self.max_failures {
            times.pop_front();
        }
    }

    /// Frees room: expired keys first, then the tenth idle the longest.
    fn evict(&self, map: &mut HashMap<String, VecDeque<Instant>>, now: Instant) {
        map.retain(|_, t| {
            t.back()
                .is_some_and(|l| now.duration_since(*l) < self.window)
        });
        if map.len() < self.max_keys {
            return;
        }
        let mut last: Vec<Instant> = map.values().filter_map(|t| t.back().copied()).collect();
        last.sort_unstable();
        let cut = last[(last.len() / 10).min(last.len() - 1)];
        map.retain(|_, t| t.back().is_some_and(|l| *l > cut));
    }

    pub fn len(&self) -> usize {
        self.failures.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The login limits, and the one on password-reset requests per login (so nobody
/// can flood a person with reset codes; over it, requests still answer 202 but
/// send nothing).
pub struct LoginLimits {
    pub per_ip: FailureLimiter,
    pub per_login: FailureLimiter,
    pub reset_requests: FailureLimiter,
    /// Failed reset confirmations for logins that don't exist: the engine counts
    /// those of real accounts durably; this makes unknown logins answer the same
    /// 429 after as many failures, so the limit tells nothing either.
    pub reset_confirms_unknown: FailureLimiter,
    /// Failed logins for logins that don't exist, mirroring the engine's lockout
    /// (`lockout_failures` within `lockout_s` → 423 for `lockout_s`).
    pub unknown_logins: FailureLimiter,
}

/// Password-reset codes sent per login within [`RESET_WINDOW`].
pub const RESET_REQUESTS_MAX: u32 = 5;
pub const RESET_WINDOW: Duration = Duration::from_secs(600);

/// Keys kept per limiter at most.
const MAX_KEYS: usize = 100_000;

impl LoginLimits {
    pub fn new(per_ip: u32, per_login: u32, window: Duration) -> Self {
        LoginLimits {
            per_ip: FailureLimiter::new(per_ip, window, MAX_KEYS),
            per_login: FailureLimiter::new(per_login, window, MAX_KEYS),
            reset_requests: FailureLimiter::new(RESET_REQUESTS_MAX, RESET_WINDOW, MAX_KEYS),
            reset_confirms_unknown: FailureLimiter::new(10, Duration::from_secs(86_400), MAX_KEYS),
            unknown_logins: FailureLimiter::new(5, Duration::from_secs(900), MAX_KEYS),
        }
    }

    /// The unknown-login reset-confirmation limit, matched to the engine's policy.
    pub fn with_reset_confirms(mut self, max: u32, window: Duration) -> Self {
        self.reset_confirms_unknown = FailureLimiter::new(max, window, MAX_KEYS);
        self
    }

    /// The unknown-login lockout, matched to the engine's lockout policy.
    pub fn with_lockout(mut self, failures: u32, lockout: Duration) -> Self {
        self.unknown_logins = FailureLimiter::new(failures, lockout, MAX_KEYS);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_threshold_and_frees_after_the_window() {
        let l = FailureLimiter::new(3, Duration::from_millis(200), 10);
        assert!(l.blocked("ip").is_none());
        for _ in 0..2 {
            l.record("ip");
        }
        assert!(l.blocked("ip").is_none());
        l.record("ip");
        assert!(l.blocked("ip").is_some());
        assert!(l.blocked("other").is_none());
        std::thread::sleep(Duration::from_millis(250));
        assert!(l.blocked("ip").is_none());
        assert!(l.is_empty());
    }

    #[test]
    fn long_keys_are_stored_hashed() {
        let l = FailureLimiter::new(1, Duration::from_secs(60), 10);
        let long = "x".repeat(10_000);
        l.record(&long);
        assert!(l.blocked(&long).is_some());
        assert!(l.blocked(&"x".repeat(9_999)).is_none());
        let stored: usize = l.failures.lock().keys().map(String::len).sum();
        assert!(stored <= MAX_KEY_BYTES + 8, "{stored}");
    }

    #[test]
    fn the_table_stays_bounded() {
        let l = FailureLimiter::new(2, Duration::from_secs(60), 50);
        for i in 0..1_000 {
            l.record(&format!("k{i}"));
            assert!(l.len() <= 50);
        }
        // The newest key survived the evictions.
        l.record("k999");
        assert!(l.blocked("k999").is_some());
    }
}
