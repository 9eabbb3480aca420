//! Account security as account state, one module per concern, each with its
//! `decide_*` and `apply_*`: [`lockout`] (failed logins lock login, never the
//! account's status), [`login_fraud`] (sessions and the login rules), [`reset`]
//! (password-reset codes), [`totp`] (the second factor), [`challenges`] (step-up)
//! and [`kyc`] (identity verification). `apply` dispatches each event to its
//! module by an exhaustive match, so a new event can't go unhandled.
//!
//! Secrets never enter the state in clear: codes as SHA-256 hashes (computed by the
//! gateway), the TOTP secret and KYC personal data as ciphertext (the gateway holds
//! the key). The engine compares and counts; it never sees a code.

pub mod challenges;
pub mod kyc;
pub mod lockout;
pub mod login_fraud;
pub mod reset;
pub mod totp;

use std::collections::VecDeque;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::domain::event::{Event, EventBody};
use crate::domain::fraud::{FraudAction, FraudRule, Severity};
use crate::domain::state::AccountState;
use crate::domain::window::{Mark, Window};
use crate::money::{Amount, Currency};
use crate::policy::Policy;
use crate::time::Timestamp;

pub use challenges::{
    decide_confirm_challenge, decide_create_challenge, live_challenge_for, with_step_up, Challenge,
    ChallengeMethod, ChallengeProof,
};
pub use kyc::{decide_review_kyc, decide_submit_kyc, IdType, Kyc, KycStatus, KycSubmission};
pub use lockout::decide_login_failed;
pub use login_fraud::decide_session;
pub use reset::{decide_confirm_reset, decide_start_reset, PendingCode};
pub use totp::{PassedProof, PendingTotp, SecurityChange, TotpState};

/// Where the account's login security stands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Security {
    /// Consecutive failed logins since the last success or lockout end.
    pub failed_logins: u32,
    /// Login is refused until then (a fact of its own: never an account status).
    pub locked_until: Option<Timestamp>,
    /// Failed logins in the recent window (the burst rule).
    pub recent_failures: VecDeque<Timestamp>,
    pub failed_burst_raised: bool,
    // The rarely set parts are boxed: an idle account pays 8 bytes for each
    // instead of its whole size (serde encodes a box as its contents, so stored
    // states read the same).
    pub reset: Option<Box<PendingCode>>,
    pub totp: Option<Box<TotpState>>,
    /// Devices that logged in before (bounded, most recent last).
    pub known_devices: VecDeque<String>,
    /// When and from where the last login came.
    pub last_login: Option<Box<(Timestamp, Option<String>)>>,
    /// Failed password-reset confirmations (across codes) in the failure window.
    pub reset_failures: VecDeque<Timestamp>,
    /// Failed step-up confirmations (across challenges) in the failure window.
    pub step_up_failures: VecDeque<Timestamp>,
    /// Outgoing money that left without step-up, for the split-payment rule.
    pub unchallenged_out: Window<UnchallengedMark>,
    /// A begun TOTP enrolment waiting for its first code (the active factor, if
    /// any, stays in force meanwhile).
    pub totp_pending: Option<Box<PendingTotp>>,
    /// SHA-256 hashes of the unused recovery codes (each works once for TOTP).
    pub recovery_codes: Vec<[u8; 32]>,
    /// The SMS/email code proving a security change while TOTP is off.
    pub change_code: Option<Box<PendingCode>>,
}

/// One outgoing operation that passed without step-up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnchallengedMark {
    pub at: Timestamp,
    pub amount: Amount,
}

impl Mark for UnchallengedMark {
    /// Summed per currency.
    type Key = Currency;
    fn at(&self) -> Timestamp {
        self.at
    }
    fn set_at(&mut self, at: Timestamp) {
        self.at = at;
    }
    fn key(&self) -> Currency {
        self.amount.currency()
    }
    fn amount(&self) -> Decimal {
        self.amount.value()
    }
}

/// How many of `marks` are later than `window_s` before `now`.
pub(crate) fn in_window(marks: &VecDeque<Timestamp>, window_s: u32, now: Timestamp) -> usize {
    let since = now.millis() - i64::from(window_s) * 1000;
    marks.iter().filter(|t| t.millis() > since).count()
}

/// Milliseconds until the oldest of `marks` in the window leaves it, so that fewer
/// than `max` remain (`None`: already fewer).
pub fn window_retry_after_ms(
    marks: &VecDeque<Timestamp>,
    max: u32,
    window_s: u32,
    now: Timestamp,
) -> Option<i64> {
    let since = now.millis() - i64::from(window_s) * 1000;
    let recent: Vec<&Timestamp> = marks.iter().filter(|t| t.millis() > since).collect();
    let excess = recent.len().checked_sub(max as usize)?;
    // The (excess+1)-th oldest must leave for the count to drop below `max`.
    recent
        .get(excess)
        .map(|t| (t.millis() + i64::from(window_s) * 1000 - now.millis()).max(1))
}

/// At most this many remembered devices.
pub const MAX_DEVICES: usize = 32;
/// At most this many live challenges.
pub const MAX_CHALLENGES: usize = 16;

pub(crate) fn ev(at: Timestamp, body: EventBody) -> Event {
    Event { at, body }
}

/// An alert numbered after `offset` other new operations of the same decision.
pub(crate) fn alert(
    state: &AccountState,
    offset: u64,
    rule: FraudRule,
    severity: Severity,
    action: FraudAction,
    message: String,
    now: Timestamp,
) -> Event {
    ev(
        now,
        EventBody::AlertRaised {
            op: state.next_op + offset,
            rule,
            severity,
            action,
            message,
        },
    )
}

/// Compares two hashes without an early exit.
pub fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Forgets what no rule looks at any more (called by `compact`).
pub fn compact_security(state: &mut AccountState, now: Timestamp, policy: &Policy) {
    let window_start = now.millis() - i64::from(policy.security.failed_login_window_s) * 1000;
    let sec = &mut state.security;
    while sec
        .recent_failures
        .front()
        .is_some_and(|t| t.millis() <= window_start)
    {
        sec.recent_failures.pop_front();
    }
    if sec.reset.as_ref().is_some_and(|r| r.expires_at <= now) {
        sec.reset = None;
    }
    // `change_code` is kept past its expiry (one value): an expired code answers
    // `ChallengeExpired`, a missing one counts as a wrong proof.
    if sec
        .totp_pending
        .as_ref()
        .is_some_and(|p| p.expires_at <= now)
    {
        sec.totp_pending = None;
    }
    let failures_start = now.millis() - i64::from(policy.security.failures_window_s) * 1000;
    for marks in [&mut sec.reset_failures, &mut sec.step_up_failures] {
        while marks.front().is_some_and(|t| t.millis() <= failures_start) {
            marks.pop_front();
        }
    }
    let unchallenged_start = now.millis() - i64::from(policy.fraud.unchallenged_window_s) * 1000;
    sec.unchallenged_out.drop_until(unchallenged_start);
    let keep_since = now.millis() - i64::from(policy.idempotency_retention_s) * 1000;
    state
        .challenges
        .retain(|c| c.created_at.millis() > keep_since);
}
