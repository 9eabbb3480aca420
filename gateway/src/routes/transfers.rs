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

use actix_web::http::header::{HeaderValue, CONTENT_TYPE};
use actix_web::http::Method;
use actix_web::{guard, web, HttpRequest, HttpResponse};
use chrono::{DateTime, SecondsFormat, Utc};
use okpay_engine::domain::view::TransferView;
use okpay_engine::ids::{push_hex16, OpKind};
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

/// The 201 body of a transfer: the text `serde_json` writes for
/// [`TransferResponse::of`] (a test compares them), written straight into one
/// buffer. This is the hot route's answer: the struct costs a string per field
/// and a content type parsed from a MIME value per response.
pub fn created_body(v: &TransferView) -> String {
    use std::fmt::Write as _;
    let c = v.amount.currency();
    let mut out = String::with_capacity(224);
    out.push_str("{\"id\":\"");
    v.id.write_display(OpKind::Transfer, &mut out);
    out.push_str("\",\"status\":\"completed\",\"from\":\"acc_");
    push_hex16(&mut out, v.from.0);
    out.push_str("\",\"to\":\"acc_");
    push_hex16(&mut out, v.to.0);
    // Decimals and a currency code (three ASCII capitals) need no escaping.
    let mut amount = v.amount.value();
    amount.rescale(c.scale());
    let mut fee = v.fee;
    fee.rescale(c.scale());
    // unwrap: writing to a String cannot fail.
    write!(
        out,
        "\",\"amount\":\"{amount}\",\"fee\":\"{fee}\",\"currency\":\"{}\",\"created_at\":\"{}\"}}",
        c.code(),
        time(v.at).to_rfc3339_opts(SecondsFormat::AutoSi, true)
    )
    .unwrap();
    out
}

/// The 201 answer of a transfer (see [`created_body`]).
pub fn created(v: &TransferView) -> HttpResponse {
    HttpResponse::Created()
        .insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")))
        .body(created_body(v))
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
    Ok(created(&view))
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

/// Registers the route. Not with `#[post]`: its method guard records the
/// methods tried in the request's extensions (a `Vec` and a map entry per
/// request, for actix's own 405, which this app does not use: unmatched methods
/// reach `routes::not_found`, which answers 405 from the API document). A plain
/// method comparison routes the same requests without allocating.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/transfers")
            .name("transfer")
            .guard(guard::fn_guard(|ctx| ctx.head().method == Method::POST))
            .to(transfer),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use okpay_engine::domain::state::TransferStatus;
    use okpay_engine::ids::{AccountId, OpId};
    use okpay_engine::money::{Amount, Currency};
    use okpay_engine::time::Timestamp;
    use rust_decimal::Decimal;

    #[test]
    fn the_created_body_is_the_text_the_response_struct_gives() {
        let cny = Currency::new("CNY", 2).unwrap();
        let jpy = Currency::new("JPY", 0).unwrap();
        for (amount, fee, at) in [
            (
                Amount::new(Decimal::new(1250, 2), cny).unwrap(),
                Decimal::ZERO,
                1_764_404_000_000,
            ),
            (
                Amount::new(Decimal::new(5, 0), cny).unwrap(),
                Decimal::new(15, 2),
                1_764_404_000_212,
            ),
            (
                Amount::new(Decimal::new(7000, 0), jpy).unwrap(),
                Decimal::new(70, 0),
                1_764_404_000_020,
            ),
            (
                Amount::new(Decimal::new(1, 2), cny).unwrap(),
                Decimal::new(1, 1),
                0,
            ),
        ] {
            let v = TransferView {
                id: OpId {
                    account: AccountId(u64::MAX),
                    n: 17,
                },
                from: AccountId(0xabc),
                to: AccountId(0x0123_4567_89ab_cdef),
                amount,
                fee,
                memo: None,
                status: TransferStatus::Completed,
                at: Timestamp(at),
            };
            assert_eq!(
                created_body(&v),
                serde_json::to_string(&TransferResponse::of(&v)).unwrap()
            );
        }
    }
}
