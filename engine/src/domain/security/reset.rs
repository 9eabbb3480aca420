//! Password reset codes: a fresh code replaces any earlier one, lives `code_ttl_s`,
//! and dies after `code_attempts` wrong answers. The right code sets the password,
//! ends a login lockout and logs every session out; it never changes the account's
//! status (a frozen account stays frozen).

use serde::{Deserialize, Serialize};

use crate::domain::event::{Event, EventBody};
use crate::domain::rejection::Rejection;
use crate::domain::security::{constant_time_eq, ev, lockout};
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

/// Answers a password reset: the right code sets the password, ends a lockout and
/// logs every session out. The status is left alone.
pub fn decide_confirm_reset(
    state: &AccountState,
    code_hash: [u8; 32],
    password_hash: &str,
    now: Timestamp,
) -> Result<Vec<Event>, Rejection> {
    let Some(code) = &state.security.reset else {
        return Err(Rejection::ChallengeExpired);
    };
    if code.expires_at <= now || code.attempts_left == 0 {
        return Err(Rejection::ChallengeExpired);
    }
    if !constant_time_eq(&code.code_hash, &code_hash) {
        return Ok(vec![
            ev(now, EventBody::ResetAttemptFailed),
            ev(
                now,
                EventBody::Refused {
                    rejection: Rejection::ChallengeFailed,
                },
            ),
        ]);
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

pub fn apply_started(state: &mut AccountState, code: &PendingCode) {
    state.security.reset = Some(code.clone());
}

pub fn apply_attempt_failed(state: &mut AccountState) {
    let sec = &mut state.security;
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
