//! TOTP enrolment: an encrypted secret, active once a code from it is confirmed;
//! a code is accepted once per time step (replays are refused).

use serde::{Deserialize, Serialize};

use crate::domain::event::{Event, EventBody};
use crate::domain::rejection::Rejection;
use crate::domain::security::ev;
use crate::domain::state::AccountState;
use crate::time::Timestamp;

/// TOTP enrolment: the encrypted secret, whether confirmed, and the last time step
/// accepted (a code is accepted once per step: replays are refused).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpState {
    pub secret: Vec<u8>,
    pub enabled: bool,
    pub last_step: u64,
}

/// Starts TOTP enrolment with an (encrypted) secret; not active until confirmed.
pub fn decide_begin_totp(secret: &[u8], now: Timestamp) -> Result<Vec<Event>, Rejection> {
    Ok(vec![ev(
        now,
        EventBody::TotpBegun {
            secret: secret.to_vec(),
        },
    )])
}

/// Confirms TOTP enrolment with a code the gateway matched to `step`.
pub fn decide_confirm_totp(
    state: &AccountState,
    step: Option<u64>,
    now: Timestamp,
) -> Result<Vec<Event>, Rejection> {
    let Some(totp) = &state.security.totp else {
        return Err(Rejection::UnknownOperation);
    };
    match step {
        Some(step) if step > totp.last_step => Ok(vec![ev(now, EventBody::TotpEnabled { step })]),
        _ => Err(Rejection::ChallengeFailed),
    }
}

pub fn apply_begun(state: &mut AccountState, secret: &[u8]) {
    state.security.totp = Some(TotpState {
        secret: secret.to_vec(),
        enabled: false,
        last_step: 0,
    });
}

pub fn apply_enabled(state: &mut AccountState, step: u64) {
    if let Some(t) = &mut state.security.totp {
        t.enabled = true;
        t.last_step = step;
    }
}

/// Whether a confirmed TOTP factor is enrolled.
pub fn enabled(state: &AccountState) -> bool {
    state.security.totp.as_ref().is_some_and(|t| t.enabled)
}
