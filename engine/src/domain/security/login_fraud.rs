//! The login-related fraud rules and the session they guard: a burst of failed
//! logins raises one alert; a successful login creates the session, alerts on a
//! device never seen before, and holds the account for review when two logins come
//! from different countries too close in time.

use crate::domain::command::NewSession;
use crate::domain::event::{Event, EventBody};
use crate::domain::fraud::{FraudAction, FraudRule, Severity};
use crate::domain::rejection::Rejection;
use crate::domain::security::{alert, ev, lockout, MAX_DEVICES};
use crate::domain::state::{AccountState, AccountStatus};
use crate::policy::Policy;
use crate::time::Timestamp;

/// The failed-login burst alert, if this failure makes the window's count reach the
/// threshold and the alert is not raised yet (edge-triggered).
pub fn failed_login_burst(policy: &Policy, state: &AccountState, now: Timestamp) -> Option<Event> {
    let s = &policy.security;
    let window_start = now.millis() - i64::from(s.failed_login_window_s) * 1000;
    let recent = state
        .security
        .recent_failures
        .iter()
        .filter(|t| t.millis() > window_start)
        .count() as u32
        + 1;
    (recent >= s.failed_login_burst && !state.security.failed_burst_raised).then(|| {
        alert(
            state,
            0,
            FraudRule::FailedLoginBurst,
            Severity::Medium,
            FraudAction::Block,
            format!(
                "{recent} failed logins within {} minutes.",
                s.failed_login_window_s / 60
            ),
            now,
        )
    })
}

/// A successful login: the session, and what the login-related rules make of it.
pub fn decide_session(
    policy: &Policy,
    state: &AccountState,
    session: &NewSession,
    now: Timestamp,
) -> Result<Vec<Event>, Rejection> {
    if lockout::is_locked(state, now) {
        return Err(Rejection::AccountLocked);
    }
    if state.status == AccountStatus::Closed {
        return Err(Rejection::AccountClosed);
    }
    let s = &policy.security;
    let known = &state.security.known_devices;
    let new_device = !known.iter().any(|d| *d == session.device_id);
    let mut events = vec![ev(
        now,
        EventBody::SessionCreated {
            op: state.next_op,
            session: session.clone(),
            new_device,
        },
    )];
    let mut minted = 1;
    if new_device && !known.is_empty() && s.new_device_alert {
        events.push(alert(
            state,
            minted,
            FraudRule::NewDevice,
            Severity::Low,
            FraudAction::Allow,
            "A login from a device never used on this account.".into(),
            now,
        ));
        minted += 1;
    }
    let last = state.security.last_login.as_deref();
    let travel = match (last, &session.country) {
        (Some((at, Some(before))), Some(country)) => {
            before != country
                && now.millis() - at.millis() < i64::from(s.impossible_travel_s) * 1000
        }
        _ => false,
    };
    if travel {
        events.push(alert(
            state,
            minted,
            FraudRule::ImpossibleTravel,
            Severity::High,
            FraudAction::HoldForReview,
            "Logins from two countries too close in time.".into(),
            now,
        ));
        // Only an active account is held: a frozen or restricted one stays as the
        // operator (or an earlier rule) left it.
        if state.status.is_active() {
            events.push(ev(
                now,
                EventBody::StatusChanged {
                    from: state.status,
                    to: AccountStatus::Restricted,
                    reason: "Held for review: logins from two countries too close in time. Contact support to lift it.".into(),
                },
            ));
        }
    }
    Ok(events)
}

/// Folds a new session into the login security (devices, last login, counts).
pub fn apply_session(state: &mut AccountState, at: Timestamp, session: &NewSession) {
    lockout::clear(state);
    let sec = &mut state.security;
    sec.failed_burst_raised = false;
    sec.known_devices.retain(|d| *d != session.device_id);
    sec.known_devices.push_back(session.device_id.clone());
    while sec.known_devices.len() > MAX_DEVICES {
        sec.known_devices.pop_front();
    }
    sec.last_login = Some(Box::new((at, session.country.clone())));
}

/// Folds an alert of a login rule (edge-triggered flags).
pub fn apply_alert(state: &mut AccountState, rule: FraudRule) {
    match rule {
        FraudRule::FailedLoginBurst => state.security.failed_burst_raised = true,
        FraudRule::SingleAmount
        | FraudRule::VelocityCount
        | FraudRule::VelocitySum
        | FraudRule::FanOut
        | FraudRule::QuickWithdrawal
        | FraudRule::NewDevice
        | FraudRule::ImpossibleTravel
        | FraudRule::ResetCodeGuessing
        | FraudRule::StepUpCodeGuessing
        | FraudRule::LedgerInvariant => {}
    }
}
