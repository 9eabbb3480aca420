//! Login lockout: consecutive wrong passwords lock *login* for a while.
//!
//! The lockout is its own fact (`Security::locked_until`), never an account status:
//! it only stops logins, and it never touches `status`. An operator's freeze, a
//! fraud restriction or a closure therefore survives any number of failed logins,
//! the lockout's end and a password reset (an earlier design made the lockout a
//! status that replaced the freeze, and its end turned the account `active`).

use crate::domain::event::{Event, EventBody};
use crate::domain::rejection::Rejection;
use crate::domain::security::{ev, login_fraud};
use crate::domain::state::AccountState;
use crate::policy::Policy;
use crate::time::Timestamp;

/// Whether login is locked at `now`.
pub fn is_locked(state: &AccountState, now: Timestamp) -> bool {
    state.security.locked_until.is_some_and(|until| until > now)
}

/// Whether a lockout existed and has run out by `now` (the count starts afresh).
fn lock_ended(state: &AccountState, now: Timestamp) -> bool {
    state
        .security
        .locked_until
        .is_some_and(|until| until <= now)
}

/// A wrong password: counted; the `lockout_failures`-th in a row locks login for
/// `lockout_s`. Refused (not counted) while locked.
pub fn decide_login_failed(
    policy: &Policy,
    state: &AccountState,
    now: Timestamp,
) -> Result<Vec<Event>, Rejection> {
    if is_locked(state, now) {
        return Err(Rejection::AccountLocked);
    }
    let s = &policy.security;
    let failures = if lock_ended(state, now) {
        1
    } else {
        state.security.failed_logins + 1
    };
    let locked_until =
        (failures >= s.lockout_failures).then(|| now.plus_ms(i64::from(s.lockout_s) * 1000));
    let mut events = vec![ev(now, EventBody::LoginFailed { locked_until })];
    events.extend(login_fraud::failed_login_burst(policy, state, now));
    Ok(events)
}

/// Folds a failed login: an ended lockout is forgotten first (the count restarts).
pub fn apply_login_failed(
    state: &mut AccountState,
    at: Timestamp,
    locked_until: Option<Timestamp>,
) {
    let sec = &mut state.security;
    if sec.locked_until.is_some_and(|until| until <= at) {
        sec.failed_logins = 0;
        sec.locked_until = None;
    }
    sec.failed_logins += 1;
    sec.recent_failures.push_back(at);
    if locked_until.is_some() {
        sec.locked_until = locked_until;
    }
}

/// A login or a password change ends any lockout and the consecutive count.
pub fn clear(state: &mut AccountState) {
    state.security.failed_logins = 0;
    state.security.locked_until = None;
}
