//! Transfers (`POST /v1/transfers`): money from the caller to another OKPay user.
//!
//! The recipient is resolved to an account first (`recipient.rs`); the engine then
//! runs the saga and answers once the destination credited, or with its refusal
//! once the transfer was reversed. Idempotency is the engine's: a replay of a
//! completed transfer gets the same operation back and is rendered identically
//! (the response is built only from the engine's record), a replay of one still in
//! flight waits for its end, and eight racing identical requests make one transfer.
//! The fingerprint covers the resolved recipient, the amount with its currency,
//! and the memo, so naming the same person by email one time and by account id
//! the next is the same request, while any other change is a conflict.
//!
//! Step-up: 1,000.00 or more (by default) answers `202 challenge_required`
//! (`step_up.rs`); confirming the challenge runs this very transfer once and
//! answers what this route would have (`routes/challenges.rs`).

use actix_web::{post, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use okpay_engine::domain::view::TransferView;
use okpay_engine::ids::OpKind;
use okpay_engine::{Command, EngineError, Outcome, Rejection};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, Problem};
use crate::routes::extract::{amount, idempotency_key, money, time};
use crate::routes::recipient;
use crate::state::AppState;
use crate::step_up::{self, ChallengeRequired};

/// The longest memo, in characters.
pub const MEMO_MAX: usize = 140;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    /// An account id (`acc_…`), an email, an E.164 phone, or `contact:<ct_ id>`.
    #[schema(example = "wang.fang@example.com")]
    pub to: String,
    #[schema(example = "25.00")]
    pub amount: String,
    #[schema(example = "CNY")]
    pub currency: String,
    /// Up to 140 characters, shown to both sides.
    #[schema(example = "dinner")]
    pub memo: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TransferResponse {
    /// A `tx_` id.
    pub id: String,
    /// `completed`: the recipient was credited.
    pub status: String,
    pub from: String,
    pub to: String,
    pub amount: String,
    /// Paid by the sender on top of the amount (0 by default).
    pub fee: String,
    pub currency: String,
    pub created_at: DateTime<Utc>,
}

impl TransferResponse {
    pub fn of(v: &TransferView) -> Self {
        let c = v.amount.currency();
        TransferResponse {
            id: v.id.display(OpKind::Transfer),
            status: "completed".into(),
            from: v.from.to_string(),
            to: v.to.to_string(),
            amount: money(v.amount.value(), c),
            fee: money(v.fee, c),
            currency: c.code().into(),
            created_at: time(v.at),
        }
    }
}

/// A memo as the engine keeps it: blank means none; bounded; no control characters.
fn memo(text: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(m) = text.map(|m| m.trim().to_owned()).filter(|m| !m.is_empty()) else {
        return Ok(None);
    };
    if m.chars().count() > MEMO_MAX || m.chars().any(char::is_control) {
        return Err(ApiError::validation(format!(
            "memo must have at most {MEMO_MAX} printable characters."
        )));
    }
    Ok(Some(m))
}

/// Sends money to another user.
#[utoipa::path(post, path = "/v1/transfers", tag = "payments", security(("bearer" = [])),
    request_body = TransferRequest,
    params(("Idempotency-Key" = String, Header, description = "1–255 visible ASCII characters; the same key and body answer the first response again")),
    responses(
        (status = 201, body = TransferResponse),
        (status = 202, body = ChallengeRequired, description = "1,000.00 or more: confirm with POST /v1/challenges/{id}/confirm"),
        (status = 400, body = Problem, description = "VALIDATION_FAILED"),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 403, body = Problem, description = "ACCOUNT_FROZEN / ACCOUNT_RESTRICTED / ACCOUNT_CLOSED"),
        (status = 404, body = Problem, description = "RECIPIENT_NOT_FOUND"),
        (status = 409, body = Problem, description = "IDEMPOTENCY_CONFLICT"),
        (status = 422, body = Problem, description = "SAME_ACCOUNT / INSUFFICIENT_FUNDS / LIMIT_EXCEEDED / RECIPIENT_UNAVAILABLE"),
        (status = 429, body = Problem, description = "VELOCITY_BLOCKED"),
        (status = 503, body = Problem, description = "MAINTENANCE / OVERLOADED / UNAVAILABLE"),
    ))]
#[post("/v1/transfers")]
pub async fn transfer(
    state: web::Data<AppState>,
    auth: Auth,
    req: HttpRequest,
    body: web::Json<TransferRequest>,
) -> ApiResult<HttpResponse> {
    state.maintenance.check()?;
    let key = idempotency_key(&req)?;
    let body = body.into_inner();
    let amount = amount(state.engine.policy(), &body.amount, &body.currency)?;
    let memo = memo(body.memo)?;
    let to = recipient::resolve(&state, auth.account, &body.to).await?;
    let command = Command::Transfer {
        key: key.clone(),
        to,
        amount,
        memo,
        step_up_verified: false,
    };
    let outcome = match state.engine.execute(auth.account, command.clone()).await {
        Err(EngineError::Rejected(Rejection::ChallengeRequired)) => {
            return step_up::require(&state, auth.account, key, command).await;
        }
        Err(e) => return Err(crate::routes::account::explain(&state, auth.account, e).await),
        Ok(outcome) => outcome,
    };
    let Outcome::Transfer(view) = outcome else {
        return Err(ApiError::unavailable());
    };
    Ok(HttpResponse::Created().json(TransferResponse::of(&view)))
}

#[derive(OpenApi)]
#[openapi(
    paths(transfer),
    components(schemas(
        TransferRequest,
        TransferResponse,
        ChallengeRequired,
        crate::step_up::ChallengeInfo
    ))
)]
pub struct Api;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(transfer);
}
