//! Password reset: `POST /v1/password-reset` `{"login"}` sends a 6-digit code to
//! the login (email or SMS through the notifier) and always answers 202 with the
//! same body, whether or not the login exists; `POST /v1/password-reset/confirm`
//! `{"login", "code", "new_password"}` sets the new password.
//!
//! The code is stored only as SHA-256(account ‖ code) in the account's state,
//! expires after the policy's `code_ttl_s` (10 minutes), is good once, and dies
//! after `code_attempts` (5) wrong answers. A correct answer sets the password,
//! unlocks a locked account and logs every session out (one engine record), and
//! the user is told by a `password_changed` message. Sessions are checked with the
//! account's actor on every request (no gateway-side token cache), so revoked
//! tokens stop working at once.
//!
//! A login gets at most `RESET_REQUESTS_MAX` codes per 10 minutes: beyond that the
//! request still answers 202 but sends nothing, so nobody can flood a person's
//! phone.
//!
//! Confirming: every failure — a wrong, used or expired code, or a login that
//! doesn't exist — answers the same 401 `CHALLENGE_FAILED`, so the route tells
//! nothing about which logins exist. The code is checked (by the engine, which
//! counts a wrong one durably per account across codes) *before* the new password
//! is hashed, so guessing costs no argon2 work. After `reset_failures_max` (10)
//! failures within `failures_window_s` (24 h) every confirmation for the login is
//! refused with 429 `RATE_LIMITED` and `retry_after_s`, even with the right code,
//! and an alert is raised; unknown logins hit the same limit (in memory).

use actix_web::{post, web, HttpResponse};
use okpay_engine::{Command, EngineError, Rejection};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::crypto::{code_hash, six_digit_code};
use crate::error::{ApiError, ApiResult, Problem};
use crate::notifier::OutboxMessage;
use crate::routes::account::{check_password, login_key};
use crate::routes::sessions::account_of_login;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    /// The email or phone the account logs in with.
    #[schema(example = "li.wei@example.com")]
    pub login: String,
}

#[derive(Serialize, ToSchema)]
pub struct ResetAccepted {
    /// Always `accepted`.
    pub status: String,
    pub message: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirm {
    pub login: String,
    /// The 6-digit code that was sent.
    #[schema(example = "123456")]
    pub code: String,
    /// 8–128 characters.
    pub new_password: String,
}

/// The channel a login's messages go by.
fn channel_of(login: &str) -> &'static str {
    if login.contains('@') {
        "email"
    } else {
        "sms"
    }
}

/// Sends a reset code if the login exists (always 202).
#[utoipa::path(post, path = "/v1/password-reset", tag = "sessions", request_body = ResetRequest,
    responses(
        (status = 202, body = ResetAccepted, description = "Always, whether or not the login exists"),
        (status = 400, body = Problem, description = "VALIDATION_FAILED (malformed body)"),
        (status = 503, body = Problem, description = "MAINTENANCE / UNAVAILABLE (no SMTP or SMS gateway configured for the login's channel; `detail` names the setting)"),
    ))]
#[post("/v1/password-reset")]
pub async fn start(
    state: web::Data<AppState>,
    body: web::Json<ResetRequest>,
) -> ApiResult<HttpResponse> {
    state.maintenance.check()?;
    let accepted = HttpResponse::Accepted().json(ResetAccepted {
        status: "accepted".into(),
        message: "If this login exists, a code is on its way. It expires in 10 minutes.".into(),
    });
    let Some(login) = login_key(&body.login) else {
        return Ok(accepted);
    };
    // No code goes into the void: without a way to deliver it, 503 naming the
    // setting (the same for every login of this kind, so it tells nothing).
    crate::notifier::require(
        state.notifier.as_ref(),
        channel_of(&login),
        "Password reset by this channel",
    )?;
    // Counted whether or not the login exists, so the limit tells nothing either.
    if state.limits.reset_requests.blocked(&login).await?.is_some() {
        tracing::info!("password reset: too many codes requested for one login; none sent");
        return Ok(accepted);
    }
    state.limits.reset_requests.record(&login).await;
    // Storage trouble or an unknown login both end in the same 202: a reset the
    // user does not receive is retried by the user, and an error here would tell
    // an attacker which logins exist.
    let Ok(Some(account)) = account_of_login(&state, &login).await else {
        return Ok(accepted);
    };
    let code = six_digit_code();
    let started = state
        .engine
        .execute(
            account,
            Command::StartPasswordReset {
                code_hash: code_hash(account, &code),
            },
        )
        .await;
    match started {
        Ok(_) => {
            let minutes = state.engine.policy().security.code_ttl_s / 60;
            // The code is durable; a failed read only costs the language.
            let locale = state
                .engine
                .read(account, |s, _, _| s.locale)
                .await
                .unwrap_or_default();
            state.notifier.send(OutboxMessage {
                to: login.clone(),
                channel: channel_of(&login).into(),
                kind: "password_reset".into(),
                body: format!(
                    "Your OKPay password reset code is {code}. It expires in {minutes} minutes. If you did not ask for it, ignore this message."
                ),
                code: Some(code),
                locale: locale.code().into(),
                at: state.now(),
            });
            tracing::info!(account = %account, "password reset code sent");
        }
        Err(e) => tracing::info!(account = %account, error = %e, "password reset not started"),
    }
    Ok(accepted)
}

/// 429 `RATE_LIMITED`: too many wrong codes for this login.
fn too_many(retry_after_s: u64) -> ApiError {
    crate::error::rejection(Rejection::TooManyAttempts)
        .with_hint("Too many wrong codes for this login: password reset is blocked for a while. Contact support if this was not you.")
        .retry_after(retry_after_s)
}

/// 401 `CHALLENGE_FAILED`: the one answer to every failed confirmation.
fn failed() -> ApiError {
    crate::error::rejection(Rejection::ChallengeFailed)
        .with_hint("Check the code, or request a new one; codes expire after 10 minutes.")
}

/// Sets a new password with the code; every session is logged out.
#[utoipa::path(post, path = "/v1/password-reset/confirm", tag = "sessions", request_body = ResetConfirm,
    responses(
        (status = 204, description = "The password was changed, the account unlocked, every session revoked"),
        (status = 400, body = Problem, description = "VALIDATION_FAILED (password policy)"),
        (status = 401, body = Problem, description = "CHALLENGE_FAILED: wrong, used or expired code, or no code for this login (one answer for all)"),
        (status = 429, body = Problem, description = "RATE_LIMITED: too many wrong codes for this login within 24 h (even the right code is refused); retry_after_s"),
        (status = 503, body = Problem, description = "MAINTENANCE / OVERLOADED / UNAVAILABLE"),
    ))]
#[post("/v1/password-reset/confirm")]
pub async fn confirm(
    state: web::Data<AppState>,
    body: web::Json<ResetConfirm>,
) -> ApiResult<HttpResponse> {
    state.maintenance.check()?;
    let body = body.into_inner();
    check_password(&body.new_password)?;
    let login = login_key(&body.login).unwrap_or_else(|| body.login.trim().to_lowercase());
    let account = match login_key(&body.login) {
        Some(key) => account_of_login(&state, &key).await?,
        None => None,
    };
    let Some(account) = account else {
        // An unknown login fails like a known one, and runs into the same limit.
        let unknown = &state.limits.reset_confirms_unknown;
        if let Some(wait) = unknown.blocked(&login).await? {
            return Err(too_many(wait));
        }
        unknown.record(&login).await;
        return Err(failed());
    };
    let code = code_hash(account, &body.code);
    // The code first (counted durably when wrong), so a wrong code costs no hash.
    let refused = |e: EngineError| async {
        match e {
            EngineError::Rejected(Rejection::ChallengeFailed | Rejection::ChallengeExpired) => {
                failed()
            }
            EngineError::Rejected(Rejection::TooManyAttempts) => {
                let policy = state.engine.policy().clone();
                let now = state.engine.clock().now();
                let wait = state
                    .engine
                    .read(account, move |s, _, _| {
                        okpay_engine::domain::security::reset::retry_after_ms(&policy, s, now)
                    })
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or(1000);
                too_many(u64::try_from(wait.div_euclid(1000) + 1).unwrap_or(1))
            }
            other => other.into(),
        }
    };
    if let Err(e) = state
        .engine
        .execute(account, Command::CheckResetCode { code_hash: code })
        .await
    {
        return Err(refused(e).await);
    }
    let password_hash = state.passwords.hash(body.new_password).await?;
    let sessions = crate::routes::sessions::token_hashes(&state, account, |_| true).await;
    let reset = state
        .engine
        .execute(
            account,
            Command::ConfirmPasswordReset {
                code_hash: code,
                password_hash,
            },
        )
        .await;
    // Every session is revoked: none may answer from the cache any more (evicted
    // even on an error, since the reset may have been applied before it).
    state.sessions.evict(account);
    if let Err(e) = reset {
        return Err(refused(e).await);
    }
    crate::routes::sessions::forget_tokens(&state, sessions).await;
    // The `password_changed` notice comes from the engine's durable notification
    // of the change (`integrations::notices`).
    state.deliveries.kick(account);
    tracing::info!(account = %account, "password reset; all sessions revoked");
    Ok(HttpResponse::NoContent().finish())
}

#[derive(OpenApi)]
#[openapi(
    paths(start, confirm),
    components(schemas(ResetRequest, ResetAccepted, ResetConfirm))
)]
pub struct Api;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(start).service(confirm);
}
