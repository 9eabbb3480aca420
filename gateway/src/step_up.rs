//! Step-up 2FA for transfers and withdrawals at or above the threshold.
//!
//! When the engine refuses an operation with `ChallengeRequired`, the route hands
//! the very command it sent to [`require`]: the engine records a challenge
//! guarding that command (keyed by the request's `Idempotency-Key`), and the
//! client gets `202 {"status": "challenge_required", "challenge": {...}}`. The
//! challenge is answered with an SMS code (sent through the notifier to the phone,
//! or to the email when the account has no phone) or, once the user enrolled one,
//! with a TOTP code. `POST /v1/challenges/{id}/confirm` then runs the command
//! exactly once (`routes/challenges.rs`).
//!
//! A retry of the original POST (same key, same body) finds the live challenge and
//! answers the same 202 without sending another code. Two racing first requests
//! may both draw a code, but the engine keeps one challenge; only the request whose
//! code hash the engine kept sends its code, so the user never gets a code that
//! does not work.

use actix_web::HttpResponse;
use chrono::{DateTime, Utc};
use okpay_engine::domain::security::{Challenge, ChallengeMethod};
use okpay_engine::domain::AccountState;
use okpay_engine::ids::{AccountId, IdempotencyKey, OpId, OpKind};
use okpay_engine::{Command, Outcome};
use serde::Serialize;
use utoipa::ToSchema;

use crate::crypto::{code_hash, six_digit_code};
use crate::error::{ApiError, ApiResult};
use crate::notifier::OutboxMessage;
use crate::routes::extract::{money, time};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct ChallengeInfo {
    /// A `chl_` id: confirm with `POST /v1/challenges/{id}/confirm`.
    pub id: String,
    /// `sms` (a code was sent) or `totp` (use the authenticator app).
    pub method: String,
    pub expires_at: DateTime<Utc>,
}

/// The 202 answer of an operation that needs a second factor.
#[derive(Serialize, ToSchema)]
pub struct ChallengeRequired {
    /// Always `challenge_required`.
    pub status: String,
    pub challenge: ChallengeInfo,
}

impl ChallengeRequired {
    fn of(account: AccountId, c: &Challenge) -> Self {
        ChallengeRequired {
            status: "challenge_required".into(),
            challenge: ChallengeInfo {
                id: OpId { account, n: c.n }.display(OpKind::Challenge),
                method: c.method.name().into(),
                expires_at: time(c.expires_at),
            },
        }
    }
}

/// Where a person gets codes: SMS to the phone if there is one, else email.
pub fn code_destination(state: &AccountState) -> Option<(String, &'static str)> {
    match (&state.profile.phone, &state.profile.email) {
        (Some(p), _) => Some((p.clone(), "sms")),
        (None, Some(e)) => Some((e.clone(), "email")),
        (None, None) => None,
    }
}

/// What the code confirms, for the message (so a user who did not start it sees
/// what someone is trying to do).
fn describe(command: &Command) -> String {
    match command {
        Command::Transfer { amount, .. } => format!(
            "a transfer of {} {}",
            money(amount.value(), amount.currency()),
            amount.currency().code()
        ),
        Command::Withdraw { amount, .. } => format!(
            "a withdrawal of {} {}",
            money(amount.value(), amount.currency()),
            amount.currency().code()
        ),
        _ => "an operation".into(),
    }
}

/// Guards `command` (refused with `ChallengeRequired`) with a challenge and
/// answers 202.
pub async fn require(
    state: &AppState,
    account: AccountId,
    key: IdempotencyKey,
    command: Command,
) -> ApiResult<HttpResponse> {
    // A retry of the same request is the engine's business: `CreateChallenge` then
    // answers the live challenge (or IDEMPOTENCY_CONFLICT for a changed body), and
    // the fresh code drawn here is simply not the one it kept, so it is not sent.
    let (totp, channel) = state
        .engine
        .read(account, |s, _, _| {
            (
                s.security.totp.as_ref().is_some_and(|t| t.enabled),
                code_destination(s).map(|(_, channel)| channel),
            )
        })
        .await?;
    // A code that cannot be delivered must not guard money: 503 naming the setting.
    if let (false, Some(channel)) = (totp, channel) {
        crate::notifier::require(
            state.notifier.as_ref(),
            channel,
            "Step-up confirmation by code",
        )?;
    }
    let (method, code) = if totp {
        (ChallengeMethod::Totp, None)
    } else {
        (ChallengeMethod::Sms, Some(six_digit_code()))
    };
    let hash = code.as_deref().map(|c| code_hash(account, c));
    let outcome = state
        .engine
        .execute(
            account,
            Command::CreateChallenge {
                key,
                command: Box::new(command.clone()),
                method,
                code_hash: hash,
            },
        )
        .await?;
    let Outcome::Created(id) = outcome else {
        return Err(ApiError::unavailable());
    };
    let (challenge, destination, locale) = state
        .engine
        .read(account, move |s, _, _| {
            let challenge = s.challenges.iter().find(|c| c.n == id.n).cloned();
            (challenge, code_destination(s), s.locale)
        })
        .await?;
    let challenge = challenge.ok_or_else(ApiError::unavailable)?;
    if let (Some(code), true) = (
        code,
        challenge.code_hash.is_some() && challenge.code_hash == hash,
    ) {
        match destination {
            Some((to, channel)) => state.notifier.send(OutboxMessage {
                to,
                channel: channel.into(),
                kind: "challenge".into(),
                body: format!(
                    "Your OKPay code is {code}. It confirms {}. It expires in {} minutes. Never share it.",
                    describe(&command),
                    state.engine.policy().security.code_ttl_s / 60
                ),
                code: Some(code),
                locale: locale.code().into(),
                at: state.now(),
            }),
            None => tracing::warn!(account = %account, "no phone or email to send a challenge code to"),
        }
    }
    tracing::info!(account = %account, method = challenge.method.name(), "step-up challenge issued");
    Ok(HttpResponse::Accepted().json(ChallengeRequired::of(account, &challenge)))
}
