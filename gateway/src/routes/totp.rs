//! TOTP enrolment: `POST /v1/account/totp` draws a secret and shows it once
//! (base32 and an `otpauth://` URI for the authenticator app);
//! `POST /v1/account/totp/confirm` `{"code"}` proves the app has it and turns
//! TOTP on. From then on, step-up challenges use TOTP instead of SMS.
//!
//! The secret is stored encrypted (AES-256-GCM, `crypto.rs`) in the account's
//! state. Enrolling again while TOTP is on is refused (409): replacing the secret
//! would switch the second factor off until confirmed, which a stolen session must
//! not be able to do. Removing or rotating an active enrolment is an operator task
//! for now.

use actix_web::{post, web, HttpResponse};
use okpay_engine::{Command, EngineError, Rejection};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorCode, Problem};
use crate::otp;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct TotpEnrolment {
    /// The shared secret, base32 (RFC 4648, no padding). Shown once.
    pub secret: String,
    /// `otpauth://totp/...` for QR codes.
    pub otpauth_uri: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpConfirm {
    /// The current 6-digit code of the authenticator app.
    #[schema(example = "123456")]
    pub code: String,
}

/// Starts TOTP enrolment.
#[utoipa::path(post, path = "/v1/account/totp", tag = "accounts", security(("bearer" = [])),
    responses(
        (status = 200, body = TotpEnrolment),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 409, body = Problem, description = "ALREADY_EXISTS: TOTP is already on"),
        (status = 503, body = Problem, description = "MAINTENANCE / OVERLOADED / UNAVAILABLE"),
    ))]
#[post("/v1/account/totp")]
pub async fn begin(state: web::Data<AppState>, auth: Auth) -> ApiResult<HttpResponse> {
    state.maintenance.check()?;
    let account = state.engine.state(auth.account).await?;
    if account.security.totp.as_ref().is_some_and(|t| t.enabled) {
        return Err(ApiError::new(
            ErrorCode::AlreadyExists,
            "TOTP is already on for this account.",
        )
        .with_hint(
            "Keep using your authenticator app; contact support to move it to a new device.",
        ));
    }
    let secret = otp::new_secret();
    state
        .engine
        .execute(
            auth.account,
            Command::BeginTotp {
                secret: state.pii.encrypt(&secret),
            },
        )
        .await?;
    let label = account
        .profile
        .email
        .clone()
        .or(account.profile.phone.clone())
        .unwrap_or_else(|| auth.account.to_string());
    Ok(HttpResponse::Ok().json(TotpEnrolment {
        secret: otp::base32(&secret),
        otpauth_uri: otp::otpauth_uri(&secret, &label),
    }))
}

/// Confirms TOTP enrolment with a current code.
#[utoipa::path(post, path = "/v1/account/totp/confirm", tag = "accounts", security(("bearer" = [])),
    request_body = TotpConfirm,
    responses(
        (status = 204, description = "TOTP is on"),
        (status = 401, body = Problem, description = "CHALLENGE_FAILED: wrong or reused code / UNAUTHENTICATED"),
        (status = 404, body = Problem, description = "NOT_FOUND: no enrolment started"),
        (status = 503, body = Problem, description = "MAINTENANCE / OVERLOADED / UNAVAILABLE"),
    ))]
#[post("/v1/account/totp/confirm")]
pub async fn confirm(
    state: web::Data<AppState>,
    auth: Auth,
    body: web::Json<TotpConfirm>,
) -> ApiResult<HttpResponse> {
    state.maintenance.check()?;
    let account = state.engine.state(auth.account).await?;
    let Some(totp) = &account.security.totp else {
        return Err(ApiError::not_found("TOTP enrolment"));
    };
    let secret = state
        .pii
        .decrypt(&totp.secret)
        .map_err(|_| ApiError::unavailable())?;
    let now_s = u64::try_from(state.engine.clock().now().millis() / 1000).unwrap_or(0);
    let step = otp::matching_step(&secret, &body.code, now_s);
    state
        .engine
        .execute(auth.account, Command::ConfirmTotp { step })
        .await
        .map_err(|e| match e {
            EngineError::Rejected(Rejection::UnknownOperation) => {
                ApiError::not_found("TOTP enrolment")
            }
            other => other.into(),
        })?;
    tracing::info!(account = %auth.account, "TOTP enabled");
    Ok(HttpResponse::NoContent().finish())
}

#[derive(OpenApi)]
#[openapi(paths(begin, confirm), components(schemas(TotpEnrolment, TotpConfirm)))]
pub struct Api;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(begin).service(confirm);
}
