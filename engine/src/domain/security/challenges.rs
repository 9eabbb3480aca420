//! Step-up challenges: a transfer or withdrawal that needs a second factor is
//! parked in a challenge (SMS code or TOTP); passing it runs the operation exactly
//! once, in the same record as the challenge's consumption. Wrong answers are
//! counted per account across challenges: too many within a day freeze it.

use serde::{Deserialize, Serialize};

use crate::domain::command::Command;
use crate::domain::event::{Event, EventBody, RequestRef};
use crate::domain::fraud::{FraudAction, FraudRule, Severity};
use crate::domain::rejection::Rejection;
use crate::domain::security::{
    alert, constant_time_eq, ev, in_window, totp, UnchallengedMark, MAX_CHALLENGES,
};
use crate::domain::state::{AccountState, AccountStatus};
use crate::ids::IdempotencyKey;
use crate::money::Amount;
use crate::policy::Policy;
use crate::time::Timestamp;

/// How a challenge is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChallengeMethod {
    Sms,
    Totp,
}

impl ChallengeMethod {
    pub fn name(self) -> &'static str {
        match self {
            ChallengeMethod::Sms => "sms",
            ChallengeMethod::Totp => "totp",
        }
    }
}

/// What the user answered to a challenge, as the gateway checked it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChallengeProof {
    /// The SHA-256 of the SMS code typed.
    Code([u8; 32]),
    /// A TOTP code that matched this time step.
    TotpStep(u64),
    /// A TOTP code that matched no acceptable step.
    Wrong,
    /// The SHA-256 of a recovery code typed in place of a TOTP code.
    Recovery([u8; 32]),
}

/// A step-up challenge guarding one operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    pub n: u64,
    /// The guarded request's key and fingerprint: a retry of it finds this challenge.
    pub key: IdempotencyKey,
    pub fingerprint: u64,
    /// The operation to run once the challenge is passed.
    pub command: Command,
    pub method: ChallengeMethod,
    pub code_hash: Option<[u8; 32]>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub attempts_left: u32,
    /// Passed: the operation ran (its outcome is found by `key`).
    pub consumed: bool,
}

/// Creates a challenge guarding `command` (or finds the live one for the same
/// request: `Ok(vec![])`).
#[allow(clippy::too_many_arguments)]
pub fn decide_create_challenge(
    policy: &Policy,
    state: &AccountState,
    key: &IdempotencyKey,
    command: &Command,
    method: ChallengeMethod,
    code_hash: Option<[u8; 32]>,
    now: Timestamp,
) -> Result<Vec<Event>, Rejection> {
    let fingerprint = command.fingerprint();
    if let Some(c) = live_challenge_for(state, key, now) {
        return if c.fingerprint == fingerprint {
            Ok(Vec::new())
        } else {
            Err(Rejection::IdempotencyConflict)
        };
    }
    let live = state
        .challenges
        .iter()
        .filter(|c| !c.consumed && c.expires_at > now)
        .count();
    if live >= MAX_CHALLENGES {
        return Err(Rejection::LimitExceeded);
    }
    // The challenge is on the factor the account has: TOTP once enrolled (an SMS
    // code must not stand in for it), SMS otherwise.
    if (method == ChallengeMethod::Totp) != totp::enabled(state) {
        return Err(Rejection::ChallengeFailed);
    }
    Ok(vec![ev(
        now,
        EventBody::ChallengeCreated {
            challenge: Challenge {
                n: state.next_op,
                key: key.clone(),
                fingerprint,
                command: command.clone(),
                method,
                code_hash,
                created_at: now,
                expires_at: now.plus_ms(i64::from(policy.security.code_ttl_s) * 1000),
                attempts_left: policy.security.code_attempts,
                consumed: false,
            },
        },
    )])
}

/// The live (unexpired, unconsumed) challenge guarding the request with `key`.
pub fn live_challenge_for<'a>(
    state: &'a AccountState,
    key: &IdempotencyKey,
    now: Timestamp,
) -> Option<&'a Challenge> {
    state
        .challenges
        .iter()
        .rev()
        .find(|c| c.key == *key && !c.consumed && c.expires_at > now && c.attempts_left > 0)
}

/// Answers challenge `n`. Passed: the guarded operation is decided with step-up
/// verified, in the same record as the challenge's consumption, so it runs exactly
/// once however many confirmations race. A consumed challenge answers `Ok(vec![])`
/// (the operation's outcome is found by its key).
pub fn decide_confirm_challenge(
    policy: &Policy,
    state: &AccountState,
    n: u64,
    proof: ChallengeProof,
    now: Timestamp,
) -> Result<Vec<Event>, Rejection> {
    // Remembered for the idempotency retention, like operations (and `compact`).
    let keep_since = now.millis() - i64::from(policy.idempotency_retention_s) * 1000;
    let Some(c) = state
        .challenges
        .iter()
        .find(|c| c.n == n && c.created_at.millis() > keep_since)
    else {
        return Err(Rejection::UnknownOperation);
    };
    if c.consumed {
        return Ok(Vec::new());
    }
    if c.expires_at <= now || c.attempts_left == 0 {
        return Err(Rejection::ChallengeExpired);
    }
    let passed = match (c.method, proof) {
        (ChallengeMethod::Sms, ChallengeProof::Code(h)) => c
            .code_hash
            .is_some_and(|expected| constant_time_eq(&expected, &h)),
        (ChallengeMethod::Totp, ChallengeProof::TotpStep(step)) => state
            .security
            .totp
            .as_ref()
            .is_some_and(|t| t.enabled && step > t.last_step),
        (ChallengeMethod::Totp, ChallengeProof::Recovery(h)) => {
            totp::enabled(state) && totp::has_recovery_code(state, &h)
        }
        _ => false,
    };
    if !passed {
        return Ok(step_up_failure(
            policy,
            state,
            now,
            EventBody::ChallengeAttemptFailed { n },
        ));
    }
    let totp_step = match proof {
        ChallengeProof::TotpStep(s) => Some(s),
        ChallengeProof::Code(_) | ChallengeProof::Wrong | ChallengeProof::Recovery(_) => None,
    };
    let mut events = vec![ev(now, EventBody::ChallengeConsumed { n, totp_step })];
    if let ChallengeProof::Recovery(h) = proof {
        // Used up in the same record as the consumption: it works once.
        events.push(ev(
            now,
            EventBody::SecurityProofPassed {
                proof: totp::PassedProof::Recovery(h),
            },
        ));
    }
    let verified = with_step_up(&c.command);
    match crate::domain::decide(policy, state, &verified, now) {
        Ok(more) => events.extend(more),
        Err(rejection) => events.push(ev(now, EventBody::Refused { rejection })),
    }
    Ok(events)
}

/// A wrong step-up answer (`failure`: to a challenge, or to a security change's
/// proof): counted per account across challenges and changes; the
/// `step_up_failures_max`-th within `failures_window_s` freezes the account
/// (someone holds a session and is guessing codes) and raises an alert.
pub(crate) fn step_up_failure(
    policy: &Policy,
    state: &AccountState,
    now: Timestamp,
    failure: EventBody,
) -> Vec<Event> {
    let s = &policy.security;
    let failures = in_window(&state.security.step_up_failures, s.failures_window_s, now) + 1;
    let mut events = Vec::new();
    if failures == s.step_up_failures_max as usize {
        events.push(alert(
            state,
            0,
            FraudRule::StepUpCodeGuessing,
            Severity::High,
            FraudAction::Freeze,
            format!(
                "{} wrong step-up codes within {} hours.",
                s.step_up_failures_max,
                s.failures_window_s / 3600
            ),
            now,
        ));
        // Only an active account is frozen: a restricted one already sends nothing
        // and keeps the hold an operator must lift.
        if state.status.is_active() {
            events.push(ev(
                now,
                EventBody::StatusChanged {
                    from: state.status,
                    to: AccountStatus::Frozen,
                    reason: "Frozen by fraud monitoring: too many wrong confirmation codes. Contact support to lift it.".into(),
                },
            ));
        }
    }
    events.push(ev(now, failure));
    events.push(ev(
        now,
        EventBody::Refused {
            rejection: Rejection::ChallengeFailed,
        },
    ));
    events
}

/// The same command, marked as having passed step-up.
pub fn with_step_up(command: &Command) -> Command {
    let mut c = command.clone();
    if let Command::Transfer {
        step_up_verified, ..
    }
    | Command::Withdraw {
        step_up_verified, ..
    } = &mut c
    {
        *step_up_verified = true;
    }
    c
}

/// Records an outgoing operation for the split-payment rule unless it ran through
/// a passed challenge: the challenge guarding its request was consumed just before,
/// in the same record.
pub fn mark_unchallenged(
    state: &mut AccountState,
    request: &RequestRef,
    amount: Amount,
    at: Timestamp,
) {
    let challenged = state
        .challenges
        .iter()
        .any(|c| c.consumed && c.key == request.key);
    if !challenged {
        state
            .security
            .unchallenged_out
            .push(UnchallengedMark { at, amount });
    }
}

pub fn apply_created(state: &mut AccountState, challenge: &Challenge) {
    state.challenges.push(challenge.clone());
}

pub fn apply_attempt_failed(state: &mut AccountState, at: Timestamp, n: u64) {
    state.security.step_up_failures.push_back(at);
    if let Some(c) = state.challenges.iter_mut().find(|c| c.n == n) {
        c.attempts_left = c.attempts_left.saturating_sub(1);
    }
}

pub fn apply_consumed(state: &mut AccountState, n: u64, totp_step: Option<u64>) {
    if let Some(c) = state.challenges.iter_mut().find(|c| c.n == n) {
        c.consumed = true;
    }
    if let (Some(step), Some(t)) = (totp_step, &mut state.security.totp) {
        t.last_step = t.last_step.max(step);
    }
}
