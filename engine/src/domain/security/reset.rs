//! Password reset codes: a fresh code replaces any earlier one, lives `code_ttl_s`,
//! and dies after `code_attempts` wrong answers. Wrong answers are also counted
//! per account across codes (each new code would otherwise bring fresh attempts):
//! after `reset_failures_max` within `failures_window_s` every confirmation is
//! refused and an alert is raised. The right code sets the password,
//! ends a login lockout and logs every session out; it never changes the account's
//! status (a frozen account stays frozen).

use serde::{Deserialize, Serialize};

use crate::domain::event::{Event, EventBody};
use crate::domain::fraud::{FraudAction, FraudRule, Severity};
use crate::domain::rejection::Rejection;
use crate::domain::security::{
    alert, constant_time_eq, ev, in_window, lockout, window_retry_after_ms,
};
use crate::domain::state::{AccountState, AccountStatus};
use crate::policy::Policy;
use crate::time::Timestamp;

/// A one-time code waiting to be used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCode {
    pub code_hash: [u8; 32],
    pub expires_at: Timestamp,
    pub attempts_left: u32,
}

/// Starts a password reset with a fresh code (replacing any earlier one).
pub fn decide_start_reset(
    policy: &Policy,
    state: &AccountState,
    code_hash: [u8; 32],
    now: Timestamp,
) -> Result<Vec<Event>, Rejection> {
    if state.status == AccountStatus::Closed {
        return Err(Rejection::AccountClosed);
    }
    Ok(vec![ev(
        now,
        EventBody::ResetStarted {
            code: PendingCode {
                code_hash,
                expires_at: now.plus_ms(i64::from(policy.security.code_ttl_s) * 1000),
                attempts_left: policy.security.code_attempts,
            },
        },
    )])
}

/// Checks a reset code. `Ok(None)`: the right code of a live reset. `Ok(Some)`:
/// a failure to record (counted per account across codes, the alert on reaching
/// `reset_failures_max`, then the refusal). Every failure answers the same
/// `ChallengeFailed`, whether the code was wrong, used, expired or never sent, so
/// the answer tells nothing. Past `reset_failures_max` failures in the window every
/// confirmation is refused with `TooManyAttempts`, even the right code.
fn check(
    policy: &Policy,
    state: &AccountState,
    code_hash: [u8; 32],
    now: Timestamp,
) -> Result<Option<Vec<Event>>, Rejection> {
    let s = &policy.security;
    let failures = in_window(&state.security.reset_failures, s.failures_window_s, now);
    if failures >= s.reset_failures_max as usize {
        return Err(Rejection::TooManyAttempts);
    }
    let right = state.security.reset.as_ref().is_some_and(|code| {
        code.expires_at > now
            && code.attempts_left > 0
            && constant_time_eq(&code.code_hash, &code_hash)
    });
    if right {
        return Ok(None);
    }
    let mut events = Vec::new();
    if failures + 1 == s.reset_failures_max as usize {
        events.push(alert(
            state,
            0,
            FraudRule::ResetCodeGuessing,
            Severity::High,
            FraudAction::Block,
            format!(
                "{} wrong password-reset codes within {} hours: password reset is blocked.",
                s.reset_failures_max,
                s.failures_window_s / 3600
            ),
            now,
        ));
    }
    events.push(ev(now, EventBody::ResetAttemptFailed));
    events.push(ev(
        now,
        EventBody::Refused {
            rejection: Rejection::ChallengeFailed,
        },
    ));
    Ok(Some(events))
}

/// Checks a reset code before the gateway hashes the new password, so a wrong code
/// costs no argon2 hash. The right code changes nothing.
pub fn decide_check_code(
    policy: &Policy,
    state: &AccountState,
    code_hash: [u8; 32],
    now: Timestamp,
) -> Result<Vec<Event>, Rejection> {
    Ok(check(policy, state, code_hash, now)?.unwrap_or_default())
}

/// Answers a password reset: the right code sets the password, ends a lockout and
/// logs every session out. The status is left alone.
pub fn decide_confirm_reset(
    policy: &Policy,
    state: &AccountState,
    code_hash: [u8; 32],
    password_hash: &str,
    now: Timestamp,
) -> Result<Vec<Event>, Rejection> {
    if let Some(failure) = check(policy, state, code_hash, now)? {
        return Ok(failure);
    }
    Ok(vec![
        ev(
            now,
            EventBody::PasswordChanged {
                password_hash: password_hash.to_owned(),
            },
        ),
        ev(now, EventBody::SessionsRevoked { except: None }),
    ])
}

/// Milliseconds until password-reset confirmations are accepted again, if they
/// are refused now (`TooManyAttempts`).
pub fn retry_after_ms(policy: &Policy, state: &AccountState, now: Timestamp) -> Option<i64> {
    let s = &policy.security;
    window_retry_after_ms(
        &state.security.reset_failures,
        s.reset_failures_max,
        s.failures_window_s,
        now,
    )
}

pub fn apply_started(state: &mut AccountState, code: &PendingCode) {
    state.security.reset = Some(Box::new(code.clone()));
}

pub fn apply_attempt_failed(state: &mut AccountState, at: Timestamp) {
    let sec = &mut state.security;
    sec.reset_failures.push_back(at);
    if let Some(code) = &mut sec.reset {
        code.attempts_left = code.attempts_left.saturating_sub(1);
        if code.attempts_left == 0 {
            sec.reset = None;
        }
    }
}

pub fn apply_password_changed(state: &mut AccountState, password_hash: &str) {
    state.security.reset = None;
    lockout::clear(state);
    state.password_hash = password_hash.to_owned();
}
