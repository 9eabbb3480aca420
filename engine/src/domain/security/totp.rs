//! TOTP: the second factor, its recovery codes, and the proof every change of
//! them takes.
//!
//! A stolen session must not be able to give itself a second factor (it could
//! then confirm any transfer), so enrolling, replacing or removing TOTP and
//! regenerating recovery codes each take a proof on the factor the account
//! *already* has: a code sent by SMS/email while TOTP is off, the current TOTP
//! code (or a recovery code) once it is on. The gateway re-checks the password
//! first (argon2 lives there); the engine checks the proof, so no route and no
//! race gets around it. Wrong proofs count towards the same per-account step-up
//! failure bound as challenges (freeze and alert at the bound).
//!
//! Enrolment is two steps: `BeginTotp` (with the proof) parks the new secret as
//! *pending*, leaving any active factor in force; `ConfirmTotp` with a code from
//! the new app makes it active, with fresh recovery codes. Recovery codes are
//! stored as hashes, each usable once in place of a TOTP code. An operator can
//! reset TOTP (clears the factor and the codes), audited by the gateway.

use serde::{Deserialize, Serialize};

use crate::domain::event::{Event, EventBody};
use crate::domain::rejection::Rejection;
use crate::domain::security::{challenges, constant_time_eq, ev, PendingCode};
use crate::domain::state::{AccountState, AccountStatus};
use crate::policy::Policy;
use crate::time::Timestamp;

/// How many recovery codes an enrolment (or a regeneration) hands out.
pub const RECOVERY_CODES: usize = 10;
/// How long a begun enrolment waits for its first code.
pub const PENDING_TOTP_TTL_MS: i64 = 15 * 60 * 1000;

/// The active TOTP factor: the encrypted secret, whether confirmed (always true
/// since pending enrolments have their own field; old snapshots may hold an
/// unconfirmed one, which counts as no factor), and the last time step accepted
/// (a code is accepted once per step: replays are refused).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpState {
    pub secret: Vec<u8>,
    pub enabled: bool,
    pub last_step: u64,
}

/// A begun enrolment: the new (encrypted) secret until its first code confirms it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingTotp {
    pub secret: Vec<u8>,
    pub expires_at: Timestamp,
}

/// A proof that passed, as recorded (so it can't be used again).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PassedProof {
    /// The SMS/email security code (consumed).
    Code,
    /// A TOTP code of this time step.
    TotpStep(u64),
    /// This recovery code (its hash; removed from the account).
    Recovery([u8; 32]),
}

/// What changed in the account's security, for the `security.changed` frame and
/// the notices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecurityChange {
    TotpEnabled,
    TotpReplaced,
    TotpRemoved,
    /// An operator reset TOTP.
    TotpReset,
    RecoveryCodesRegenerated,
    RecoveryCodeUsed,
    PasswordChanged,
}

impl SecurityChange {
    pub fn name(self) -> &'static str {
        match self {
            SecurityChange::TotpEnabled => "totp_enabled",
            SecurityChange::TotpReplaced => "totp_replaced",
            SecurityChange::TotpRemoved => "totp_removed",
            SecurityChange::TotpReset => "totp_reset",
            SecurityChange::RecoveryCodesRegenerated => "recovery_codes_regenerated",
            SecurityChange::RecoveryCodeUsed => "recovery_code_used",
            SecurityChange::PasswordChanged => "password_changed",
        }
    }

    /// A sentence for the user's notice.
    pub fn sentence(self) -> &'static str {
        match self {
            SecurityChange::TotpEnabled => "An authenticator app was set up on your account.",
            SecurityChange::TotpReplaced => {
                "The authenticator app of your account was replaced by a new one."
            }
            SecurityChange::TotpRemoved => "The authenticator app was removed from your account.",
            SecurityChange::TotpReset => {
                "Support reset the authenticator app of your account at your request."
            }
            SecurityChange::RecoveryCodesRegenerated => {
                "New recovery codes were made for your account; the old ones no longer work."
            }
            SecurityChange::RecoveryCodeUsed => "A recovery code of your account was used.",
            SecurityChange::PasswordChanged => "The password of your account was changed.",
        }
    }
}

/// Whether a confirmed TOTP factor is enrolled.
pub fn enabled(state: &AccountState) -> bool {
    state.security.totp.as_ref().is_some_and(|t| t.enabled)
}

/// Whether `hash` is one of the account's unused recovery codes.
pub fn has_recovery_code(state: &AccountState, hash: &[u8; 32]) -> bool {
    // Every code is compared (no early exit), so timing tells nothing.
    state
        .security
        .recovery_codes
        .iter()
        .fold(false, |found, c| constant_time_eq(c, hash) | found)
}

/// Checks the proof of a security change on the factor the account has. `Ok`:
/// the event that consumes it. `Err(Ok(events))`: a counted failure to record
/// (ending in a `Refused`); `Err(Err(r))`: refused without a trace (an expired
/// code).
fn check_proof(
    policy: &Policy,
    state: &AccountState,
    proof: crate::domain::security::ChallengeProof,
    now: Timestamp,
) -> Result<Event, Result<Vec<Event>, Rejection>> {
    use crate::domain::security::ChallengeProof;
    let passed = if enabled(state) {
        match proof {
            ChallengeProof::TotpStep(step) => state
                .security
                .totp
                .as_ref()
                .is_some_and(|t| step > t.last_step)
                .then_some(PassedProof::TotpStep(step)),
            ChallengeProof::Recovery(h) => {
                has_recovery_code(state, &h).then_some(PassedProof::Recovery(h))
            }
            // An SMS code never stands in for an enrolled TOTP.
            ChallengeProof::Code(_) | ChallengeProof::Wrong => None,
        }
    } else {
        match (&state.security.change_code, proof) {
            (Some(code), _) if code.expires_at <= now || code.attempts_left == 0 => {
                return Err(Err(Rejection::ChallengeExpired));
            }
            (Some(code), ChallengeProof::Code(h)) => {
                constant_time_eq(&code.code_hash, &h).then_some(PassedProof::Code)
            }
            _ => None,
        }
    };
    match passed {
        Some(p) => Ok(ev(now, EventBody::SecurityProofPassed { proof: p })),
        None => Err(Ok(challenges::step_up_failure(
            policy,
            state,
            now,
            EventBody::SecurityProofFailed,
        ))),
    }
}

/// The events of a change behind a proof: the proof's consumption and `then`,
/// or the failure.
fn behind_proof(
    policy: &Policy,
    state: &AccountState,
    proof: crate::domain::security::ChallengeProof,
    now: Timestamp,
    then: Vec<Event>,
) -> Result<Vec<Event>, Rejection> {
    if state.status == AccountStatus::Closed {
        return Err(Rejection::AccountClosed);
    }
    match check_proof(policy, state, proof, now) {
        Ok(passed) => {
            let mut events = vec![passed];
            events.extend(then);
            Ok(events)
        }
        Err(failure) => failure,
    }
}

/// Sends a security code (SMS/email) for a change while TOTP is off; a fresh code
/// replaces an earlier one. With TOTP on, the code of the app is the proof, so no
/// code is sent (an SMS code can't stand in for it).
pub fn decide_request_code(
    policy: &Policy,
    state: &AccountState,
    code_hash: [u8; 32],
    now: Timestamp,
) -> Result<Vec<Event>, Rejection> {
    if state.status == AccountStatus::Closed {
        return Err(Rejection::AccountClosed);
    }
    if enabled(state) {
        return Err(Rejection::ChallengeFailed);
    }
    Ok(vec![ev(
        now,
        EventBody::SecurityCodeSent {
            code: PendingCode {
                code_hash,
                expires_at: now.plus_ms(i64::from(policy.security.code_ttl_s) * 1000),
                attempts_left: policy.security.code_attempts,
            },
        },
    )])
}

/// Begins enrolment (or replacement, `replace`) with an (encrypted) secret behind
/// a proof. TOTP already on and not replacing: `AlreadyExists`, whatever the proof.
pub fn decide_begin_totp(
    policy: &Policy,
    state: &AccountState,
    secret: &[u8],
    proof: crate::domain::security::ChallengeProof,
    replace: bool,
    now: Timestamp,
) -> Result<Vec<Event>, Rejection> {
    if enabled(state) && !replace {
        return Err(Rejection::AlreadyExists);
    }
    behind_proof(
        policy,
        state,
        proof,
        now,
        vec![ev(
            now,
            EventBody::TotpBegun {
                secret: secret.to_vec(),
            },
        )],
    )
}

/// Confirms a begun enrolment with a code of the new secret that the gateway
/// matched to `step`; it becomes the active factor with `recovery` as its codes.
pub fn decide_confirm_totp(
    state: &AccountState,
    step: Option<u64>,
    recovery: &[[u8; 32]],
    now: Timestamp,
) -> Result<Vec<Event>, Rejection> {
    let Some(_pending) = state
        .security
        .totp_pending
        .as_ref()
        .filter(|p| p.expires_at > now)
    else {
        return Err(Rejection::UnknownOperation);
    };
    match step {
        Some(step) => Ok(vec![ev(
            now,
            EventBody::TotpActivated {
                step,
                recovery: recovery.to_vec(),
            },
        )]),
        None => Err(Rejection::ChallengeFailed),
    }
}

/// Removes TOTP behind a proof (the current code or a recovery code).
pub fn decide_remove_totp(
    policy: &Policy,
    state: &AccountState,
    proof: crate::domain::security::ChallengeProof,
    now: Timestamp,
) -> Result<Vec<Event>, Rejection> {
    if !enabled(state) {
        return Err(Rejection::UnknownOperation);
    }
    behind_proof(
        policy,
        state,
        proof,
        now,
        vec![ev(
            now,
            EventBody::TotpRemoved {
                by_operator: false,
                reason: None,
            },
        )],
    )
}

/// New recovery codes behind a proof; the old ones stop working.
pub fn decide_regenerate_recovery(
    policy: &Policy,
    state: &AccountState,
    hashes: &[[u8; 32]],
    proof: crate::domain::security::ChallengeProof,
    now: Timestamp,
) -> Result<Vec<Event>, Rejection> {
    if !enabled(state) {
        return Err(Rejection::UnknownOperation);
    }
    behind_proof(
        policy,
        state,
        proof,
        now,
        vec![ev(
            now,
            EventBody::RecoveryCodesRegenerated {
                hashes: hashes.to_vec(),
            },
        )],
    )
}

/// An operator's reset: TOTP, a pending enrolment and the recovery codes are
/// cleared (the user enrols again with an SMS/email code). Nothing to clear: no-op.
pub fn decide_reset_totp(
    state: &AccountState,
    reason: &str,
    now: Timestamp,
) -> Result<Vec<Event>, Rejection> {
    let sec = &state.security;
    if sec.totp.is_none() && sec.totp_pending.is_none() && sec.recovery_codes.is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec![ev(
        now,
        EventBody::TotpRemoved {
            by_operator: true,
            reason: Some(reason.to_owned()),
        },
    )])
}

/// A begun enrolment: parked as pending; the active factor stays in force.
pub fn apply_begun(state: &mut AccountState, at: Timestamp, secret: &[u8]) {
    state.security.totp_pending = Some(Box::new(PendingTotp {
        secret: secret.to_vec(),
        expires_at: at.plus_ms(PENDING_TOTP_TTL_MS),
    }));
}

/// Legacy `TotpEnabled` (journals before recovery codes): the pending secret (or,
/// from an old snapshot, the unconfirmed one) becomes active.
pub fn apply_enabled(state: &mut AccountState, step: u64) {
    let sec = &mut state.security;
    if let Some(p) = sec.totp_pending.take() {
        sec.totp = Some(Box::new(TotpState {
            secret: p.secret,
            enabled: true,
            last_step: step,
        }));
    } else if let Some(t) = &mut sec.totp {
        t.enabled = true;
        t.last_step = step;
    }
}

/// The pending secret becomes the active factor with fresh recovery codes.
/// Returns what changed (`None` when nothing was pending: nothing changes).
pub fn apply_activated(
    state: &mut AccountState,
    step: u64,
    recovery: &[[u8; 32]],
) -> Option<SecurityChange> {
    let sec = &mut state.security;
    let p = sec.totp_pending.take()?;
    let replaced = sec.totp.as_ref().is_some_and(|t| t.enabled);
    sec.totp = Some(Box::new(TotpState {
        secret: p.secret,
        enabled: true,
        last_step: step,
    }));
    sec.recovery_codes = recovery.to_vec();
    Some(if replaced {
        SecurityChange::TotpReplaced
    } else {
        SecurityChange::TotpEnabled
    })
}

pub fn apply_removed(state: &mut AccountState, by_operator: bool) -> SecurityChange {
    let sec = &mut state.security;
    sec.totp = None;
    sec.totp_pending = None;
    sec.recovery_codes.clear();
    if by_operator {
        SecurityChange::TotpReset
    } else {
        SecurityChange::TotpRemoved
    }
}

pub fn apply_recovery_regenerated(state: &mut AccountState, hashes: &[[u8; 32]]) {
    state.security.recovery_codes = hashes.to_vec();
}

pub fn apply_code_sent(state: &mut AccountState, code: &PendingCode) {
    state.security.change_code = Some(Box::new(code.clone()));
}

/// A wrong proof: counted per account (with challenges) and on the code.
pub fn apply_proof_failed(state: &mut AccountState, at: Timestamp) {
    let sec = &mut state.security;
    sec.step_up_failures.push_back(at);
    if let Some(code) = &mut sec.change_code {
        code.attempts_left = code.attempts_left.saturating_sub(1);
    }
}

/// A passed proof is used up. Returns `RecoveryCodeUsed` when it was one.
pub fn apply_proof_passed(state: &mut AccountState, proof: PassedProof) -> Option<SecurityChange> {
    let sec = &mut state.security;
    match proof {
        PassedProof::Code => {
            sec.change_code = None;
            None
        }
        PassedProof::TotpStep(step) => {
            if let Some(t) = &mut sec.totp {
                t.last_step = t.last_step.max(step);
            }
            None
        }
        PassedProof::Recovery(h) => {
            sec.recovery_codes.retain(|c| *c != h);
            Some(SecurityChange::RecoveryCodeUsed)
        }
    }
}
