//! TOTP (the authenticator app) and its recovery codes. Every change takes the
//! password *and* a proof on the factor the account already has, so a stolen
//! session token can't give itself a second factor and then confirm transfers:
//!
//! - `POST /v1/account/totp/code` `{"password"}`: while TOTP is off, sends a
//!   6-digit security code by SMS (email without a phone); with TOTP on, nothing
//!   is sent (the app's code is the proof);
//! - `POST /v1/account/totp` `{"password", "code", "replace"}`: draws a secret
//!   and shows it once (base32 and an `otpauth://` URI); it is *pending*, and an
//!   active factor stays in force until the new one is confirmed. With TOTP on,
//!   only `replace: true` with the current TOTP code (or a recovery code) works;
//!   otherwise 409;
//! - `POST /v1/account/totp/confirm` `{"code"}` (a code of the new app): TOTP is
//!   on, and the answer shows 10 one-time recovery codes, once;
//! - `POST /v1/account/totp/remove` and `POST /v1/account/totp/recovery-codes`
//!   `{"password", "code"}`: remove TOTP, or replace the recovery codes.
//!
//! The password is verified through the bounded argon2 pool; a wrong one counts
//! as a failed login (the lockout applies, 423 while locked). The engine checks
//! the code: wrong codes count with step-up failures (the account is frozen at
//! the bound). Every change notifies: a `security.changed` frame on every live
//! websocket and a `security_changed` notice (email, else SMS), both from the
//! engine's durable notification.
//!
//! The secret is stored encrypted (AES-256-GCM, `crypto.rs`); recovery codes as
//! SHA-256 hashes bound to the account.

use actix_web::{post, web, HttpResponse};
use chrono::{DateTime, Utc};
use okpay_engine::domain::security::{ChallengeProof, SecurityChange};
use okpay_engine::ids::AccountId;
use okpay_engine::{Command, EngineError, Rejection};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::auth::Auth;
use crate::crypto::{code_hash, six_digit_code, Field, Owner};
use crate::error::{ApiError, ApiResult, ErrorCode, Problem};
use crate::notifier::OutboxMessage;
use crate::otp;
use crate::routes::extract::time;
use crate::state::AppState;

/// Longest password accepted for re-authentication (as at registration: argon2
/// input is bounded before any work).
const MAX_PASSWORD_CHARS: usize = 256;

#[derive(Serialize, ToSchema)]
pub struct TotpEnrolment {
    /// The shared secret, base32 (RFC 4648, no padding). Shown once.
    pub secret: String,
    /// `otpauth://totp/...` for QR codes.
    pub otpauth_uri: String,
}

#[derive(Serialize, ToSchema)]
pub struct RecoveryCodes {
    /// One-time codes (`XXXX-XXXX-XXXX-XXXX`), each usable once in place of a TOTP
    /// code. Shown once: only their hashes are kept.
    pub recovery_codes: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpConfirm {
    /// The current 6-digit code of the new authenticator app.
    #[schema(example = "123456")]
    pub code: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reauth {
    /// The account's password.
    #[schema(example = "correct horse")]
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpChange {
    /// The account's password.
    #[schema(example = "correct horse")]
    pub password: String,
    /// The proof on the factor the account has: the security code sent by SMS or
    /// email while TOTP is off; the current TOTP code (or a recovery code) once on.
    #[schema(example = "123456")]
    pub code: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpBegin {
    #[schema(example = "correct horse")]
    pub password: String,
    /// As in `TotpChange`.
    #[schema(example = "123456")]
    pub code: String,
    /// Replace the active authenticator app (TOTP on); without it, 409.
    #[serde(default)]
    pub replace: bool,
}

#[derive(Serialize, ToSchema)]
pub struct SecurityCodeSent {
    /// `sms` or `email` (a code was sent), or `totp` (use the app; nothing sent).
    pub method: String,
    /// When the sent code expires (absent for `totp`).
    pub expires_at: Option<DateTime<Utc>>,
}

/// What the routes need to know of the account, read in one projection.
pub(crate) struct Factor {
    password_hash: String,
    locked_until: Option<okpay_engine::time::Timestamp>,
    /// The encrypted secret of the active factor (TOTP on).
    totp_secret: Option<Vec<u8>>,
}

async fn factor(state: &AppState, account: AccountId) -> ApiResult<Factor> {
    let f = state
        .engine
        .read(account, |s, _, _| {
            s.opened.then(|| Factor {
                password_hash: s.password_hash.clone(),
                locked_until: s.security.locked_until,
                totp_secret: s
                    .security
                    .totp
                    .as_ref()
                    .filter(|t| t.enabled)
                    .map(|t| t.secret.clone()),
            })
        })
        .await?;
    f.ok_or_else(ApiError::unauthenticated)
}

/// Re-authentication: the password again, through the bounded hashing pool. A
/// wrong password counts as a failed login (so a stolen session can't guess it
/// without the lockout); while locked, 423 whatever the password.
pub(crate) async fn reauthenticate(
    state: &AppState,
    account: AccountId,
    password: String,
) -> ApiResult<Factor> {
    if password.chars().count() > MAX_PASSWORD_CHARS {
        return Err(ApiError::invalid_credentials());
    }
    let f = factor(state, account).await?;
    if let Some(wait) = crate::routes::sessions::locked_for(state, f.locked_until) {
        return Err(crate::routes::sessions::locked(wait));
    }
    if state
        .passwords
        .verify(password, Some(f.password_hash.clone()))
        .await?
    {
        return Ok(f);
    }
    match state.engine.execute(account, Command::LoginFailed).await {
        Ok(_) | Err(EngineError::Rejected(Rejection::AccountLocked)) => {}
        Err(e) => return Err(e.into()),
    }
    Err(ApiError::invalid_credentials())
}

/// The proof a typed `code` makes for an account whose factor is `f`.
fn proof_of(state: &AppState, account: AccountId, f: &Factor, code: &str) -> ChallengeProof {
    match &f.totp_secret {
        None => ChallengeProof::Code(code_hash(account, code)),
        Some(sealed) => totp_or_recovery(state, account, sealed, code),
    }
}

/// A code typed where TOTP is asked: the step it matches, else a recovery code's
/// hash, else `Wrong`.
pub(crate) fn totp_or_recovery(
    state: &AppState,
    account: AccountId,
    sealed_secret: &[u8],
    code: &str,
) -> ChallengeProof {
    let now_s = u64::try_from(state.engine.clock().now().millis() / 1000).unwrap_or(0);
    let step = state
        .pii
        .open(Field::TotpSecret, Owner::Account(account), sealed_secret)
        .ok()
        .and_then(|s| otp::matching_step(&s, code, now_s));
    match (step, otp::normalize_recovery_code(code)) {
        (Some(step), _) => ChallengeProof::TotpStep(step),
        (None, Some(recovery)) => ChallengeProof::Recovery(code_hash(account, &recovery)),
        (None, None) => ChallengeProof::Wrong,
    }
}

/// Fresh recovery codes and their hashes.
fn recovery_codes(account: AccountId) -> (Vec<String>, Vec<[u8; 32]>) {
    let codes: Vec<String> = (0..okpay_engine::domain::security::totp::RECOVERY_CODES)
        .map(|_| otp::new_recovery_code())
        .collect();
    let hashes = codes
        .iter()
        .filter_map(|c| otp::normalize_recovery_code(c))
        .map(|c| code_hash(account, &c))
        .collect();
    (codes, hashes)
}

/// The answer to an engine refusal of a security change.
fn refused(e: EngineError, what: &str) -> ApiError {
    match e {
        EngineError::Rejected(Rejection::UnknownOperation) => ApiError::not_found(what),
        EngineError::Rejected(Rejection::AlreadyExists) => ApiError::new(
            ErrorCode::AlreadyExists,
            "TOTP is already on for this account.",
        )
        .with_hint(
            "To move it to a new device, send replace: true with a code of the current app.",
        ),
        other => other.into(),
    }
}

/// Tells the user about a security change: the websocket frame comes from the
/// engine's notification; the notice (email, else SMS) is derived from the same
/// durable notification by `integrations::notices`, which this kicks.
pub(crate) async fn notify_security_change(
    state: &AppState,
    account: AccountId,
    change: SecurityChange,
) {
    tracing::info!(%account, change = change.name(), "security changed");
    state.deliveries.kick(account);
}

/// Sends the security code for a TOTP change (TOTP off), after the password.
#[utoipa::path(post, path = "/v1/account/totp/code", tag = "accounts", security(("bearer" = [])),
    request_body = Reauth,
    responses(
        (status = 202, body = SecurityCodeSent),
        (status = 400, body = Problem, description = "VALIDATION_FAILED"),
        (status = 401, body = Problem, description = "INVALID_CREDENTIALS: wrong password / UNAUTHENTICATED"),
        (status = 403, body = Problem, description = "ACCOUNT_CLOSED"),
        (status = 423, body = Problem, description = "ACCOUNT_LOCKED: too many wrong passwords; retry_after_s"),
        (status = 503, body = Problem, description = "MAINTENANCE / OVERLOADED / UNAVAILABLE (no delivery configured)"),
    ))]
#[post("/v1/account/totp/code")]
pub async fn request_code(
    state: web::Data<AppState>,
    auth: Auth,
    body: web::Json<Reauth>,
) -> ApiResult<HttpResponse> {
    state.maintenance.check()?;
    let f = reauthenticate(&state, auth.account, body.into_inner().password).await?;
    if f.totp_secret.is_some() {
        return Ok(HttpResponse::Accepted().json(SecurityCodeSent {
            method: "totp".into(),
            expires_at: None,
        }));
    }
    let (destination, locale) = state
        .engine
        .read(auth.account, |s, _, _| {
            (crate::step_up::code_destination(s), s.locale)
        })
        .await?;
    let Some((to, channel)) = destination else {
        return Err(ApiError::unavailable());
    };
    crate::notifier::require(state.notifier.as_ref(), channel, "Security codes")?;
    let code = six_digit_code();
    state
        .engine
        .execute(
            auth.account,
            Command::RequestSecurityCode {
                code_hash: code_hash(auth.account, &code),
            },
        )
        .await?;
    let ttl = state.engine.policy().security.code_ttl_s;
    state.notifier.send(OutboxMessage {
        to,
        channel: channel.into(),
        kind: "security_code".into(),
        body: format!(
            "Your OKPay security code is {code}. It confirms a change of your authenticator app and expires in {} minutes. Never share it.",
            ttl / 60
        ),
        code: Some(code),
        locale: locale.code().into(),
        at: state.now(),
    });
    let expires = state.engine.clock().now().plus_ms(i64::from(ttl) * 1000);
    Ok(HttpResponse::Accepted().json(SecurityCodeSent {
        method: channel.into(),
        expires_at: Some(time(expires)),
    }))
}

/// Starts TOTP enrolment (or replacement) behind the password and a code.
#[utoipa::path(post, path = "/v1/account/totp", tag = "accounts", security(("bearer" = [])),
    request_body = TotpBegin,
    responses(
        (status = 200, body = TotpEnrolment),
        (status = 400, body = Problem, description = "VALIDATION_FAILED"),
        (status = 401, body = Problem, description = "INVALID_CREDENTIALS: wrong password / CHALLENGE_FAILED: wrong code / UNAUTHENTICATED"),
        (status = 403, body = Problem, description = "ACCOUNT_CLOSED"),
        (status = 409, body = Problem, description = "ALREADY_EXISTS: TOTP is already on (send replace: true)"),
        (status = 410, body = Problem, description = "CHALLENGE_EXPIRED: the security code expired"),
        (status = 423, body = Problem, description = "ACCOUNT_LOCKED; retry_after_s"),
        (status = 503, body = Problem, description = "MAINTENANCE / OVERLOADED / UNAVAILABLE"),
    ))]
#[post("/v1/account/totp")]
pub async fn begin(
    state: web::Data<AppState>,
    auth: Auth,
    body: web::Json<TotpBegin>,
) -> ApiResult<HttpResponse> {
    state.maintenance.check()?;
    let body = body.into_inner();
    let f = reauthenticate(&state, auth.account, body.password).await?;
    let proof = proof_of(&state, auth.account, &f, &body.code);
    let secret = otp::new_secret();
    state
        .engine
        .execute(
            auth.account,
            Command::BeginTotp {
                secret: state
                    .pii
                    .seal(Field::TotpSecret, Owner::Account(auth.account), &secret),
                proof,
                replace: body.replace,
            },
        )
        .await
        .map_err(|e| refused(e, "TOTP enrolment"))?;
    let label = state
        .engine
        .read(auth.account, |s, _, _| {
            s.profile.email.clone().or(s.profile.phone.clone())
        })
        .await?
        .unwrap_or_else(|| auth.account.to_string());
    Ok(HttpResponse::Ok().json(TotpEnrolment {
        secret: otp::base32(&secret),
        otpauth_uri: otp::otpauth_uri(&secret, &label),
    }))
}

/// Confirms TOTP enrolment with a code of the new app; shows the recovery codes.
#[utoipa::path(post, path = "/v1/account/totp/confirm", tag = "accounts", security(("bearer" = [])),
    request_body = TotpConfirm,
    responses(
        (status = 200, body = RecoveryCodes, description = "TOTP is on; the recovery codes, shown once"),
        (status = 400, body = Problem, description = "VALIDATION_FAILED"),
        (status = 401, body = Problem, description = "CHALLENGE_FAILED: wrong or reused code / UNAUTHENTICATED"),
        (status = 404, body = Problem, description = "NOT_FOUND: no enrolment started (or it expired)"),
        (status = 503, body = Problem, description = "MAINTENANCE / OVERLOADED / UNAVAILABLE"),
    ))]
#[post("/v1/account/totp/confirm")]
pub async fn confirm(
    state: web::Data<AppState>,
    auth: Auth,
    body: web::Json<TotpConfirm>,
) -> ApiResult<HttpResponse> {
    state.maintenance.check()?;
    let (pending, replacing) = state
        .engine
        .read(auth.account, |s, _, _| {
            (
                s.security.totp_pending.as_ref().map(|p| p.secret.clone()),
                okpay_engine::domain::security::totp::enabled(s),
            )
        })
        .await?;
    let pending = pending.ok_or_else(|| ApiError::not_found("TOTP enrolment"))?;
    let secret = state
        .pii
        .open(Field::TotpSecret, Owner::Account(auth.account), &pending)
        .map_err(|_| ApiError::unavailable())?;
    let now_s = u64::try_from(state.engine.clock().now().millis() / 1000).unwrap_or(0);
    let step = otp::matching_step(&secret, &body.code, now_s);
    let (codes, hashes) = recovery_codes(auth.account);
    state
        .engine
        .execute(
            auth.account,
            Command::ConfirmTotp {
                step,
                recovery: hashes,
            },
        )
        .await
        .map_err(|e| refused(e, "TOTP enrolment"))?;
    tracing::info!(account = %auth.account, replacing, "TOTP enabled");
    let change = if replacing {
        SecurityChange::TotpReplaced
    } else {
        SecurityChange::TotpEnabled
    };
    notify_security_change(&state, auth.account, change).await;
    Ok(HttpResponse::Ok().json(RecoveryCodes {
        recovery_codes: codes,
    }))
}

/// Removes TOTP behind the password and a TOTP (or recovery) code.
#[utoipa::path(post, path = "/v1/account/totp/remove", tag = "accounts", security(("bearer" = [])),
    request_body = TotpChange,
    responses(
        (status = 204, description = "TOTP is off; step-up uses SMS/email codes again"),
        (status = 400, body = Problem, description = "VALIDATION_FAILED"),
        (status = 401, body = Problem, description = "INVALID_CREDENTIALS / CHALLENGE_FAILED / UNAUTHENTICATED"),
        (status = 403, body = Problem, description = "ACCOUNT_CLOSED"),
        (status = 404, body = Problem, description = "NOT_FOUND: TOTP is not on"),
        (status = 423, body = Problem, description = "ACCOUNT_LOCKED; retry_after_s"),
        (status = 503, body = Problem, description = "MAINTENANCE / OVERLOADED / UNAVAILABLE"),
    ))]
#[post("/v1/account/totp/remove")]
pub async fn remove(
    state: web::Data<AppState>,
    auth: Auth,
    body: web::Json<TotpChange>,
) -> ApiResult<HttpResponse> {
    state.maintenance.check()?;
    let body = body.into_inner();
    let f = reauthenticate(&state, auth.account, body.password).await?;
    let proof = proof_of(&state, auth.account, &f, &body.code);
    state
        .engine
        .execute(auth.account, Command::RemoveTotp { proof })
        .await
        .map_err(|e| refused(e, "TOTP"))?;
    tracing::info!(account = %auth.account, "TOTP removed by the user");
    notify_security_change(&state, auth.account, SecurityChange::TotpRemoved).await;
    Ok(HttpResponse::NoContent().finish())
}

/// New recovery codes (the old ones stop working), behind the password and a
/// TOTP (or recovery) code.
#[utoipa::path(post, path = "/v1/account/totp/recovery-codes", tag = "accounts", security(("bearer" = [])),
    request_body = TotpChange,
    responses(
        (status = 200, body = RecoveryCodes, description = "The new codes, shown once"),
        (status = 400, body = Problem, description = "VALIDATION_FAILED"),
        (status = 401, body = Problem, description = "INVALID_CREDENTIALS / CHALLENGE_FAILED / UNAUTHENTICATED"),
        (status = 403, body = Problem, description = "ACCOUNT_CLOSED"),
        (status = 404, body = Problem, description = "NOT_FOUND: TOTP is not on"),
        (status = 423, body = Problem, description = "ACCOUNT_LOCKED; retry_after_s"),
        (status = 503, body = Problem, description = "MAINTENANCE / OVERLOADED / UNAVAILABLE"),
    ))]
#[post("/v1/account/totp/recovery-codes")]
pub async fn regenerate(
    state: web::Data<AppState>,
    auth: Auth,
    body: web::Json<TotpChange>,
) -> ApiResult<HttpResponse> {
    state.maintenance.check()?;
    let body = body.into_inner();
    let f = reauthenticate(&state, auth.account, body.password).await?;
    let proof = proof_of(&state, auth.account, &f, &body.code);
    let (codes, hashes) = recovery_codes(auth.account);
    state
        .engine
        .execute(
            auth.account,
            Command::RegenerateRecoveryCodes { hashes, proof },
        )
        .await
        .map_err(|e| refused(e, "TOTP"))?;
    notify_security_change(
        &state,
        auth.account,
        SecurityChange::RecoveryCodesRegenerated,
    )
    .await;
    Ok(HttpResponse::Ok().json(RecoveryCodes {
        recovery_codes: codes,
    }))
}

#[derive(OpenApi)]
#[openapi(
    paths(request_code, begin, confirm, remove, regenerate),
    components(schemas(
        TotpEnrolment,
        TotpConfirm,
        TotpBegin,
        TotpChange,
        Reauth,
        RecoveryCodes,
        SecurityCodeSent
    ))
)]
pub struct Api;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(request_code)
        .service(begin)
        .service(confirm)
        .service(remove)
        .service(regenerate);
}
