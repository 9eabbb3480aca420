//! Account security as account state: login failures and lockout, password-reset
//! codes, TOTP enrolment, step-up challenges, KYC submissions, and the
//! login-related fraud rules (failed-login burst, new device, two countries too
//! close in time). Like the rest of the core: plain data, `decide_*` functions that
//! return events, and `apply_*` that fold them.
//!
//! Secrets never enter the state in clear: codes as SHA-256 hashes (computed by the
//! gateway), the TOTP secret and KYC personal data as ciphertext (the gateway holds
//! the key). The engine compares and counts; it never sees a code.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::domain::command::{Command, NewSession};
use crate::domain::event::{Event, EventBody};
use crate::domain::fraud::{FraudAction, FraudRule, Severity};
use crate::domain::rejection::Rejection;
use crate::domain::state::{AccountState, AccountStatus};
use crate::ids::IdempotencyKey;
use crate::policy::Policy;
use crate::time::Timestamp;

/// A one-time code waiting to be used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCode {
    pub code_hash: [u8; 32],
    pub expires_at: Timestamp,
    pub attempts_left: u32,
}

/// TOTP enrolment: the encrypted secret, whether confirmed, and the last time step
/// accepted (a code is accepted once per step: replays are refused).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpState {
    pub secret: Vec<u8>,
    pub enabled: bool,
    pub last_step: u64,
}

/// Where the account's login security stands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Security {
    /// Consecutive failed logins since the last success or unlock.
    pub failed_logins: u32,
    pub locked_until: Option<Timestamp>,
    /// Failed logins in the recent window (the burst rule).
    pub recent_failures: VecDeque<Timestamp>,
    pub failed_burst_raised: bool,
    pub reset: Option<PendingCode>,
    pub totp: Option<TotpState>,
    /// Devices that logged in before (bounded, most recent last).
    pub known_devices: VecDeque<String>,
    /// When and from where the last login came.
    pub last_login: Option<(Timestamp, Option<String>)>,
}

/// At most this many remembered devices.
pub const MAX_DEVICES: usize = 32;
/// At most this many live challenges.
pub const MAX_CHALLENGES: usize = 16;

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

/// The kinds of identity document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IdType {
    NationalId,
    Passport,
    DriverLicense,
}

/// Where the identity verification is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KycStatus {
    #[default]
    None,
    Pending,
    Approved,
    Rejected,
}

impl KycStatus {
    pub fn name(self) -> &'static str {
        match self {
            KycStatus::None => "none",
            KycStatus::Pending => "pending",
            KycStatus::Approved => "approved",
            KycStatus::Rejected => "rejected",
        }
    }
}

/// A KYC submission; personal data encrypted by the gateway.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KycSubmission {
    pub full_name: Vec<u8>,
    pub id_type: IdType,
    pub id_number: Vec<u8>,
    /// The ID number with all but the last 4 characters masked.
    pub id_number_masked: String,
    /// Where the encrypted document images are stored.
    pub documents: Vec<String>,
}

/// The account's KYC record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kyc {
    pub status: KycStatus,
    pub submission: Option<KycSubmission>,
    pub reason: Option<String>,
    pub submitted_at: Option<Timestamp>,
}

fn ev(at: Timestamp, body: EventBody) -> Event {
    Event { at, body }
}

fn alert(
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

/// If the lockout has run out, the event that unlocks the account.
fn unlock_if_expired(state: &AccountState, now: Timestamp) -> Option<Event> {
    let expired = state
        .security
        .locked_until
        .is_some_and(|until| until <= now);
    (expired && state.status == AccountStatus::Locked).then(|| {
        ev(
            now,
            EventBody::StatusChanged {
                from: AccountStatus::Locked,
                to: AccountStatus::Active,
                reason: "The login lockout ended.".into(),
            },
        )
    })
}

fn is_locked(state: &AccountState, now: Timestamp) -> bool {
    state.security.locked_until.is_some_and(|until| until > now)
}

/// A wrong password.
pub fn decide_login_failed(
    policy: &Policy,
    state: &AccountState,
    now: Timestamp,
) -> Result<Vec<Event>, Rejection> {
    if is_locked(state, now) {
        return Err(Rejection::AccountLocked);
    }
    let s = &policy.security;
    let mut events: Vec<Event> = unlock_if_expired(state, now).into_iter().collect();
    let failures = if events.is_empty() {
        state.security.failed_logins + 1
    } else {
        1
    };
    let window_start = now.millis() - i64::from(s.failed_login_window_s) * 1000;
    let recent = state
        .security
        .recent_failures
        .iter()
        .filter(|t| t.millis() > window_start)
        .count() as u32
        + 1;
    let locks = failures >= s.lockout_failures;
    let locked_until = locks.then(|| now.plus_ms(i64::from(s.lockout_s) * 1000));
    events.push(ev(now, EventBody::LoginFailed { locked_until }));
    if recent >= s.failed_login_burst && !state.security.failed_burst_raised {
        events.push(alert(
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
        ));
    }
    if locks && state.status != AccountStatus::Locked {
        events.push(ev(
            now,
            EventBody::StatusChanged {
                from: state.status,
                to: AccountStatus::Locked,
                reason: format!(
                    "{} failed logins in a row: login is locked for {} minutes.",
                    failures,
                    s.lockout_s / 60
                ),
            },
        ));
    }
    Ok(events)
}

/// A successful login: the session, and what the login-related rules make of it.
pub fn decide_session(
    policy: &Policy,
    state: &AccountState,
    session: &NewSession,
    now: Timestamp,
) -> Result<Vec<Event>, Rejection> {
    if is_locked(state, now) {
        return Err(Rejection::AccountLocked);
    }
    if state.status == AccountStatus::Closed {
        return Err(Rejection::AccountClosed);
    }
    let s = &policy.security;
    let mut events: Vec<Event> = unlock_if_expired(state, now).into_iter().collect();
    let known = &state.security.known_devices;
    let new_device = !known.iter().any(|d| *d == session.device_id);
    events.push(ev(
        now,
        EventBody::SessionCreated {
            op: state.next_op,
            session: session.clone(),
            new_device,
        },
    ));
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
    let travel = match (&state.security.last_login, &session.country) {
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
        let from = if events
            .iter()
            .any(|e| matches!(e.body, EventBody::StatusChanged { .. }))
        {
            AccountStatus::Active
        } else {
            state.status
        };
        if from == AccountStatus::Active {
            events.push(ev(
                now,
                EventBody::StatusChanged {
                    from,
                    to: AccountStatus::Restricted,
                    reason: "Held for review: logins from two countries too close in time. Contact support to lift it.".into(),
                },
            ));
        }
    }
    Ok(events)
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

/// Answers a password reset: the right code sets the password, unlocks the account
/// and logs every session out.
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
    let mut events = vec![
        ev(
            now,
            EventBody::PasswordChanged {
                password_hash: password_hash.to_owned(),
            },
        ),
        ev(now, EventBody::SessionsRevoked { except: None }),
    ];
    if state.status == AccountStatus::Locked {
        events.push(ev(
            now,
            EventBody::StatusChanged {
                from: AccountStatus::Locked,
                to: AccountStatus::Active,
                reason: "The password was reset.".into(),
            },
        ));
    }
    Ok(events)
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
    if method == ChallengeMethod::Totp && !state.security.totp.as_ref().is_some_and(|t| t.enabled) {
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
        _ => false,
    };
    if !passed {
        return Ok(vec![
            ev(now, EventBody::ChallengeAttemptFailed { n }),
            ev(
                now,
                EventBody::Refused {
                    rejection: Rejection::ChallengeFailed,
                },
            ),
        ]);
    }
    let totp_step = match proof {
        ChallengeProof::TotpStep(s) => Some(s),
        _ => None,
    };
    let mut events = vec![ev(now, EventBody::ChallengeConsumed { n, totp_step })];
    let verified = with_step_up(&c.command);
    match crate::domain::decide(policy, state, &verified, now) {
        Ok(more) => events.extend(more),
        Err(rejection) => events.push(ev(now, EventBody::Refused { rejection })),
    }
    Ok(events)
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

/// A KYC submission: allowed when none is pending or approved.
pub fn decide_submit_kyc(
    state: &AccountState,
    submission: &KycSubmission,
    now: Timestamp,
) -> Result<Vec<Event>, Rejection> {
    match state.kyc.status {
        KycStatus::Pending | KycStatus::Approved => Err(Rejection::AlreadyExists),
        KycStatus::None | KycStatus::Rejected => Ok(vec![ev(
            now,
            EventBody::KycSubmitted {
                submission: submission.clone(),
            },
        )]),
    }
}

/// The operator's review: approval raises the tier at once.
pub fn decide_review_kyc(
    state: &AccountState,
    approve: bool,
    reason: Option<String>,
    now: Timestamp,
) -> Result<Vec<Event>, Rejection> {
    if state.kyc.status != KycStatus::Pending {
        return Err(Rejection::OperationClosed);
    }
    let mut events = Vec::new();
    // The tier first, so the review's `kyc.updated` shows the new tier.
    if approve && state.kyc_tier < 1 {
        events.push(ev(
            now,
            EventBody::KycTierChanged {
                from: state.kyc_tier,
                to: 1,
            },
        ));
    }
    events.push(ev(
        now,
        EventBody::KycReviewed {
            approved: approve,
            reason,
        },
    ));
    Ok(events)
}

/// Compares two hashes without an early exit.
pub fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Folds the security events into the state (called by `apply`).
pub fn apply_security(state: &mut AccountState, event: &Event) {
    let at = event.at;
    let sec = &mut state.security;
    match &event.body {
        EventBody::LoginFailed { locked_until } => {
            sec.failed_logins += 1;
            sec.recent_failures.push_back(at);
            if locked_until.is_some() {
                sec.locked_until = *locked_until;
            }
        }
        EventBody::SessionCreated { session, .. } => {
            sec.failed_logins = 0;
            sec.failed_burst_raised = false;
            sec.known_devices.retain(|d| *d != session.device_id);
            sec.known_devices.push_back(session.device_id.clone());
            while sec.known_devices.len() > MAX_DEVICES {
                sec.known_devices.pop_front();
            }
            sec.last_login = Some((at, session.country.clone()));
        }
        EventBody::StatusChanged {
            from: AccountStatus::Locked,
            ..
        } => {
            sec.failed_logins = 0;
            sec.locked_until = None;
        }
        EventBody::AlertRaised {
            rule: FraudRule::FailedLoginBurst,
            ..
        } => sec.failed_burst_raised = true,
        EventBody::ResetStarted { code } => sec.reset = Some(code.clone()),
        EventBody::ResetAttemptFailed => {
            if let Some(code) = &mut sec.reset {
                code.attempts_left = code.attempts_left.saturating_sub(1);
                if code.attempts_left == 0 {
                    sec.reset = None;
                }
            }
        }
        EventBody::PasswordChanged { password_hash } => {
            sec.reset = None;
            sec.failed_logins = 0;
            sec.locked_until = None;
            state.password_hash = password_hash.clone();
        }
        EventBody::TotpBegun { secret } => {
            sec.totp = Some(TotpState {
                secret: secret.clone(),
                enabled: false,
                last_step: 0,
            });
        }
        EventBody::TotpEnabled { step } => {
            if let Some(t) = &mut sec.totp {
                t.enabled = true;
                t.last_step = *step;
            }
        }
        EventBody::ChallengeCreated { challenge } => {
            state.challenges.push(challenge.clone());
        }
        EventBody::ChallengeAttemptFailed { n } => {
            if let Some(c) = state.challenges.iter_mut().find(|c| c.n == *n) {
                c.attempts_left = c.attempts_left.saturating_sub(1);
            }
        }
        EventBody::ChallengeConsumed { n, totp_step } => {
            if let Some(c) = state.challenges.iter_mut().find(|c| c.n == *n) {
                c.consumed = true;
            }
            if let (Some(step), Some(t)) = (totp_step, &mut state.security.totp) {
                t.last_step = t.last_step.max(*step);
            }
        }
        EventBody::KycSubmitted { submission } => {
            state.kyc = Kyc {
                status: KycStatus::Pending,
                submission: Some(submission.clone()),
                reason: None,
                submitted_at: Some(at),
            };
        }
        EventBody::KycReviewed { approved, reason } => {
            state.kyc.status = if *approved {
                KycStatus::Approved
            } else {
                KycStatus::Rejected
            };
            state.kyc.reason = reason.clone();
        }
        _ => {}
    }
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
    let keep_since = now.millis() - i64::from(policy.idempotency_retention_s) * 1000;
    state
        .challenges
        .retain(|c| c.created_at.millis() > keep_since);
}
