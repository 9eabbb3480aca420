//! Limits on *failed* login attempts against credential stuffing: per client IP
//! and per login, a sliding window of failure times. Only failures are recorded,
//! so a user who types the right password is never slowed down, however often
//! they log in. The account lockout (engine) protects one known account; these
//! limits also cover unknown logins and spraying one password over many accounts.
//!
//! The windows live in the coordination state ([`okpay_engine::coord`]): in this
//! process on the memory and embedded stores, in Redis otherwise, so every node
//! on one Redis counts one window (a failure through node A counts on node B).
//! Keys are the SHA-256 of the client's IP or login, so they are bounded (and no
//! login is written to Redis in clear); the in-process state bounds the keys of
//! each limiter (evicting expired, then idle, keys), Redis expires each key with
//! its window. Storage that does not answer refuses the attempt with 503 (a limit
//! that fails open would be no limit while Redis is away).

use std::sync::Arc;
use std::time::Duration;

use okpay_engine::coord::{Coord, Window};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// The SHA-256 of `key`, as hex: bounded, and no client input in clear.
fn hashed(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whole seconds to wait, at least one.
fn seconds(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

/// A sliding-window counter of failures per key, shared by every node.
pub struct FailureLimiter {
    scope: &'static str,
    limit: Window,
    coord: Arc<dyn Coord>,
}

impl FailureLimiter {
    pub fn new(coord: Arc<dyn Coord>, scope: &'static str, max: u32, window: Duration) -> Self {
        FailureLimiter {
            scope,
            limit: Window {
                max: max.max(1),
                window,
            },
            coord,
        }
    }

    /// `Some(seconds until a retry may succeed)` when `key` already failed
    /// `max` times within the window; 503 when the state can't be read.
    pub async fn blocked(&self, key: &str) -> Result<Option<u64>, ApiError> {
        let wait = self
            .coord
            .window_blocked(self.scope, &hashed(key), self.limit)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, scope = self.scope, "rate limit unreadable");
                ApiError::unavailable()
            })?;
        Ok(wait.map(seconds))
    }

    /// Records one failure of `key`, and answers as [`blocked`](Self::blocked)
    /// after it. A failure that can't be recorded is logged, not fatal: the
    /// attempt it belongs to has already failed.
    pub async fn record(&self, key: &str) -> Option<u64> {
        match self
            .coord
            .window_hit(self.scope, &hashed(key), self.limit)
            .await
        {
            Ok(wait) => wait.map(seconds),
            Err(e) => {
                tracing::warn!(error = %e, scope = self.scope, "a failure was not counted");
                None
            }
        }
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
    coord: Arc<dyn Coord>,
}

/// Password-reset codes sent per login within [`RESET_WINDOW`].
pub const RESET_REQUESTS_MAX: u32 = 5;
pub const RESET_WINDOW: Duration = Duration::from_secs(600);

impl LoginLimits {
    pub fn new(coord: Arc<dyn Coord>, per_ip: u32, per_login: u32, window: Duration) -> Self {
        let limiter = |scope, max, window| FailureLimiter::new(coord.clone(), scope, max, window);
        LoginLimits {
            per_ip: limiter("login-ip", per_ip, window),
            per_login: limiter("login", per_login, window),
            reset_requests: limiter("reset-request", RESET_REQUESTS_MAX, RESET_WINDOW),
            reset_confirms_unknown: limiter(
                "reset-confirm-unknown",
                10,
                Duration::from_secs(86_400),
            ),
            unknown_logins: limiter("login-unknown", 5, Duration::from_secs(900)),
            coord,
        }
    }

    /// The unknown-login reset-confirmation limit, matched to the engine's policy.
    pub fn with_reset_confirms(mut self, max: u32, window: Duration) -> Self {
        self.reset_confirms_unknown =
            FailureLimiter::new(self.coord.clone(), "reset-confirm-unknown", max, window);
        self
    }

    /// The unknown-login lockout, matched to the engine's lockout policy.
    pub fn with_lockout(mut self, failures: u32, lockout: Duration) -> Self {
        self.unknown_logins =
            FailureLimiter::new(self.coord.clone(), "login-unknown", failures, lockout);
        self
    }
}

#[cfg(test)]
mod tests {
    use okpay_engine::coord::memory::LocalCoord;

    use super::*;

    #[tokio::test]
    async fn blocks_after_the_threshold_and_frees_after_the_window() {
        let l = FailureLimiter::new(
            Arc::new(LocalCoord::new()),
            "t",
            3,
            Duration::from_millis(300),
        );
        assert!(l.blocked("ip").await.unwrap().is_none());
        for _ in 0..2 {
            assert!(l.record("ip").await.is_none());
        }
        assert!(l.blocked("ip").await.unwrap().is_none());
        assert_eq!(l.record("ip").await, Some(1));
        assert!(l.blocked("ip").await.unwrap().is_some());
        assert!(l.blocked("other").await.unwrap().is_none());
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(l.blocked("ip").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn long_keys_are_stored_hashed_and_stay_apart() {
        let l = FailureLimiter::new(Arc::new(LocalCoord::new()), "t", 1, Duration::from_secs(60));
        let long = "x".repeat(10_000);
        l.record(&long).await;
        assert!(l.blocked(&long).await.unwrap().is_some());
        assert!(l.blocked(&"x".repeat(9_999)).await.unwrap().is_none());
    }
}
