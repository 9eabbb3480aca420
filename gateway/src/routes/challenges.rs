//! Answering a step-up challenge: `POST /v1/challenges/{id}/confirm` `{"code"}`.
//!
//! The gateway turns the code into a proof the engine can check without seeing
//! it: for SMS, the code's hash; for TOTP, the time step the code matches (within
//! ±1 step of now), else the hash of a recovery code (each works once), or
//! `Wrong`. The engine consumes the challenge and runs the
//! guarded operation in one record, so however many confirmations race, the
//! operation happens once; every successful confirmation (and any later one)
//! answers the operation's response exactly as its own route would: 201 and the
//! transfer, or 202 and the withdrawal.
//!
//! Wrong code: 401 `CHALLENGE_FAILED` (the attempt is counted). Out of attempts or
//! past its expiry: 410 `CHALLENGE_EXPIRED`; the client starts the operation again
//! (the same request with the same key gets a fresh challenge).

use actix_web::{post, web, HttpResponse};
use okpay_engine::domain::security::{ChallengeMethod, ChallengeProof};
use okpay_engine::ids::{OpId, OpKind};
use okpay_engine::{EngineError, Outcome, Rejection};
use serde::Deserialize;
use utoipa::{OpenApi, ToSchema};

use crate::auth::Auth;
use crate::crypto::code_hash;
use crate::error::{ApiError, ApiResult, Problem};
use crate::routes::transfers::TransferResponse;
use crate::routes::withdrawals::{self, WithdrawalResponse};
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {
    /// The 6-digit code from the SMS or the authenticator app.
    #[schema(example = "123456")]
    pub code: String,
}

/// Confirms a challenge and runs the operation it guards (once).
#[utoipa::path(post, path = "/v1/challenges/{id}/confirm", tag = "payments", security(("bearer" = [])),
    params(("id" = String, Path, description = "A `chl_` id")),
    request_body = ConfirmRequest,
    responses(
        (status = 201, body = TransferResponse, description = "The guarded transfer ran"),
        (status = 202, body = WithdrawalResponse, description = "The guarded withdrawal ran"),
        (status = 401, body = Problem, description = "CHALLENGE_FAILED: wrong or reused code / UNAUTHENTICATED"),
        (status = 404, body = Problem, description = "NOT_FOUND"),
        (status = 410, body = Problem, description = "CHALLENGE_EXPIRED: expired or out of attempts"),
        (status = 422, body = Problem, description = "The operation itself was refused (e.g. INSUFFICIENT_FUNDS)"),
        (status = 503, body = Problem, description = "MAINTENANCE / OVERLOADED / UNAVAILABLE"),
    ))]
#[post("/v1/challenges/{id}/confirm")]
pub async fn confirm(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
    body: web::Json<ConfirmRequest>,
) -> ApiResult<HttpResponse> {
    state.maintenance.check()?;
    let id = OpId::parse(&path, OpKind::Challenge)
        .ok()
        .filter(|id| id.account == auth.account)
        .ok_or_else(|| ApiError::not_found("challenge"))?;
    let found = state
        .engine
        .read(auth.account, move |s, _, _| {
            let method = s.challenges.iter().find(|c| c.n == id.n).map(|c| c.method);
            let secret = s
                .security
                .totp
                .as_ref()
                .filter(|t| t.enabled)
                .map(|t| t.secret.clone());
            method.map(|m| (m, secret))
        })
        .await?;
    let (method, secret) = found.ok_or_else(|| ApiError::not_found("challenge"))?;
    let code = body.into_inner().code;
    let proof = match (method, secret) {
        (ChallengeMethod::Sms, _) => ChallengeProof::Code(code_hash(auth.account, &code)),
        (ChallengeMethod::Totp, Some(sealed)) => {
            crate::routes::totp::totp_or_recovery(&state, auth.account, &sealed, &code)
        }
        (ChallengeMethod::Totp, None) => ChallengeProof::Wrong,
    };
    let outcome = state
        .engine
        .execute(
            auth.account,
            okpay_engine::Command::ConfirmChallenge { n: id.n, proof },
        )
        .await;
    let outcome = match outcome {
        Ok(o) => o,
        Err(EngineError::Rejected(Rejection::UnknownOperation)) => {
            return Err(ApiError::not_found("challenge"))
        }
        Err(e) => return Err(crate::routes::account::explain(&state, auth.account, e).await),
    };
    match outcome {
        Outcome::Transfer(view) => Ok(HttpResponse::Created().json(TransferResponse::of(&view))),
        Outcome::Withdrawal(view) => withdrawals::accepted(&state, &view).await,
        // Consumed, but the operation it released was refused (the refusal was the
        // answer to the confirmation that consumed it): nothing to show any more.
        _ => Err(crate::error::rejection(Rejection::ChallengeExpired)
            .with_hint("This challenge was already used; send the operation again.")),
    }
}

#[derive(OpenApi)]
#[openapi(paths(confirm), components(schemas(ConfirmRequest)))]
pub struct Api;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(confirm);
}
