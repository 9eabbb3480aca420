//! Withdrawals: `POST /v1/withdrawals` holds the money and hands the payout to
//! the payout processor; `GET /v1/withdrawals/{id}` shows where it is.
//!
//! A payout is started at most once per withdrawal: after the engine recorded the
//! withdrawal, the gateway claims its id in the store's `payout_pending` index
//! (atomically, value = destination) and submits only when the claim is new. The
//! index entry is what a restarted server resumes from, and it is written before
//! the submit. A retry that finds the withdrawal still processing but unclaimed
//! (the first request died between the engine and the claim) claims and submits
//! it, so held funds are never stranded.
//!
//! The destination is personal data: it is sealed (AES-GCM, bound to the account
//! and the field) before it enters the engine, so the journal, snapshots and the
//! index hold only ciphertext and a masked form (`**** 1234`); only the payout
//! request sees it in clear. Answers show the masked form.
//!
//! The POST always answers what the first request answered: `202` with status
//! `processing`, rebuilt from the engine's record of the withdrawal, even when a
//! replay comes after it settled (the GET shows that). `expected_by` is derived
//! from the creation time, so it is the same on every replay: a third-party
//! wallet settles in 1 business day, a bank card in 3; Saturdays and Sundays are
//! skipped (no holiday calendar yet), at the time of day of the request, in UTC.

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Datelike, Utc, Weekday};
use okpay_engine::domain::command::WithdrawalMethod;
use okpay_engine::domain::state::WithdrawalStatus;
use okpay_engine::domain::view::WithdrawalView;
use okpay_engine::ids::{OpId, OpKind};
use okpay_engine::{Command, EngineError, Outcome, Rejection};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, Problem};
use crate::payments::PAYOUT_PENDING_INDEX;
use crate::routes::extract::{amount, idempotency_key, money, time};
use crate::state::AppState;
use crate::step_up::{self, ChallengeRequired};

/// Where a withdrawal is paid out.
#[derive(Deserialize, Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum WithdrawalMethodBody {
    BankCard,
    ThirdParty,
}

impl From<WithdrawalMethodBody> for WithdrawalMethod {
    fn from(m: WithdrawalMethodBody) -> Self {
        match m {
            WithdrawalMethodBody::BankCard => WithdrawalMethod::BankCard,
            WithdrawalMethodBody::ThirdParty => WithdrawalMethod::ThirdParty,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawalRequest {
    #[schema(example = "200.00")]
    pub amount: String,
    #[schema(example = "CNY")]
    pub currency: String,
    pub method: WithdrawalMethodBody,
    /// The bank card or wallet account to pay out to (1–128 characters).
    #[schema(example = "alipay:li.wei@example.com")]
    pub destination: String,
}

#[derive(Serialize, ToSchema)]
pub struct WithdrawalResponse {
    /// A `wd_` id.
    pub id: String,
    /// `processing`, `completed` or `failed` (the held funds were returned).
    pub status: String,
    pub amount: String,
    /// Bank card 0.1% (min 1.00), third party 0.5% (min 0.50) by default.
    pub fee: String,
    /// `amount - fee`: what reaches the destination.
    pub payout: String,
    pub currency: String,
    /// Where it is paid out, masked (`**** 1234`, `alipay:l***@example.com`).
    #[schema(example = "**** 1234")]
    pub destination_masked: String,
    /// The settlement date: 1 business day for third-party wallets, 3 for bank cards.
    pub expected_by: DateTime<Utc>,
    /// Why the payout failed (only when `failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `created` plus `days` business days (Saturdays and Sundays don't count).
pub fn add_business_days(created: DateTime<Utc>, days: u32) -> DateTime<Utc> {
    let mut at = created;
    let mut left = days;
    while left > 0 {
        at += chrono::Duration::days(1);
        if !matches!(at.weekday(), Weekday::Sat | Weekday::Sun) {
            left -= 1;
        }
    }
    at
}

/// The settlement date of a withdrawal by `method` requested at `created`.
pub fn expected_by(created: DateTime<Utc>, method: WithdrawalMethod) -> DateTime<Utc> {
    let days = match method {
        WithdrawalMethod::ThirdParty => 1,
        WithdrawalMethod::BankCard => 3,
    };
    add_business_days(created, days)
}

impl WithdrawalResponse {
    /// The response for `v`; `as_first` shows it as the POST first reported it.
    pub fn of(v: &WithdrawalView, as_first: bool) -> Self {
        let c = v.amount.currency();
        let (status, reason) = match (&v.status, as_first) {
            (_, true) | (WithdrawalStatus::Processing, _) => ("processing", None),
            (WithdrawalStatus::Completed, false) => ("completed", None),
            (WithdrawalStatus::Failed { reason }, false) => ("failed", Some(reason.clone())),
        };
        let created = time(v.at);
        WithdrawalResponse {
            id: v.id.display(OpKind::Withdrawal),
            status: status.into(),
            amount: money(v.amount.value(), c),
            fee: money(v.fee, c),
            payout: money(v.payout, c),
            currency: c.code().into(),
            destination_masked: v.destination.masked(),
            expected_by: expected_by(created, v.method),
            reason,
        }
    }
}

/// Checks a payout destination: 1–128 characters, no control characters.
fn destination(text: &str) -> Result<String, ApiError> {
    let d = text.trim();
    if d.is_empty() || d.chars().count() > 128 || d.chars().any(char::is_control) {
        return Err(ApiError::validation(
            "destination must have 1 to 128 printable characters.",
        ));
    }
    Ok(d.to_owned())
}

/// Withdraws money to a bank card or a third-party wallet.
#[utoipa::path(post, path = "/v1/withdrawals", tag = "payments", security(("bearer" = [])),
    request_body = WithdrawalRequest,
    params(("Idempotency-Key" = String, Header, description = "1–255 visible ASCII characters; the same key and body answer the first response again")),
    responses(
        (status = 202, body = WithdrawalResponse, description = "Held; the payout is processing. Or, for 1,000.00 or more, a `ChallengeRequired` body: confirm with POST /v1/challenges/{id}/confirm"),
        (status = 400, body = Problem, description = "VALIDATION_FAILED"),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 403, body = Problem, description = "KYC_REQUIRED / ACCOUNT_FROZEN / ACCOUNT_RESTRICTED / ACCOUNT_CLOSED"),
        (status = 409, body = Problem, description = "IDEMPOTENCY_CONFLICT"),
        (status = 422, body = Problem, description = "INSUFFICIENT_FUNDS / LIMIT_EXCEEDED / AMOUNT_TOO_SMALL"),
        (status = 429, body = Problem, description = "VELOCITY_BLOCKED"),
        (status = 503, body = Problem, description = "MAINTENANCE / OVERLOADED / UNAVAILABLE (also: no payout processor configured; `detail` names the setting)"),
    ))]
#[post("/v1/withdrawals")]
pub async fn withdraw(
    state: web::Data<AppState>,
    auth: Auth,
    req: HttpRequest,
    body: web::Json<WithdrawalRequest>,
) -> ApiResult<HttpResponse> {
    state.maintenance.check()?;
    if state.payouts.is_none() {
        return Err(crate::integrations::not_configured(
            "Withdrawals",
            crate::integrations::PAYOUTS_SETTING,
        ));
    }
    let key = idempotency_key(&req)?;
    let body = body.into_inner();
    let amount = amount(state.engine.policy(), &body.amount, &body.currency)?;
    let destination = crate::payments::seal_destination(
        &state.pii,
        auth.account,
        &destination(&body.destination)?,
    );
    let command = Command::Withdraw {
        key: key.clone(),
        amount,
        method: body.method.into(),
        destination,
        step_up_verified: false,
    };
    let outcome = match state.engine.execute(auth.account, command.clone()).await {
        Err(EngineError::Rejected(Rejection::ChallengeRequired)) => {
            return step_up::require(&state, auth.account, key, command).await;
        }
        Err(e) => return Err(crate::routes::account::explain(&state, auth.account, e).await),
        Ok(outcome) => outcome,
    };
    let Outcome::Withdrawal(view) = outcome else {
        return Err(ApiError::unavailable());
    };
    accepted(&state, &view).await
}

/// Starts the payout of a recorded withdrawal (at most once, see the module doc)
/// and answers 202 as the first response did. Shared with challenge confirmation.
pub async fn accepted(state: &AppState, view: &WithdrawalView) -> ApiResult<HttpResponse> {
    // A large withdrawal is a notice (`integrations::notices`).
    state.deliveries.kick(view.id.account);
    if view.status == WithdrawalStatus::Processing {
        let id = view.id.display(OpKind::Withdrawal);
        // The index keeps the masked form only; the payout opens the sealed one.
        let claimed = state
            .store()
            .claim_index(PAYOUT_PENDING_INDEX, &id, &view.destination.masked())
            .await
            // The withdrawal is recorded but its payout not started: the client's
            // retry with the same key claims and submits it.
            .map_err(|_| ApiError::unavailable())?;
        match (&state.payouts, claimed) {
            (Some(payouts), true) => {
                match crate::payments::open_destination(
                    &state.pii,
                    view.id.account,
                    &view.destination,
                ) {
                    Some(clear) => payouts.submit(view.id, clear),
                    // Stays claimed: a restart with the right key resumes it.
                    None => {
                        tracing::error!(withdrawal = %id, "the destination does not decrypt with the configured key; payout left pending")
                    }
                }
            }
            // Only after a restart without the payout setting: the claim stays in the
            // index and the payout starts when the processor is configured again.
            (None, true) => {
                tracing::warn!(withdrawal = %id, "no payout processor configured; payout left pending")
            }
            (_, false) => {}
        }
    }
    Ok(HttpResponse::Accepted().json(WithdrawalResponse::of(view, true)))
}

/// One of the caller's withdrawals as it is now.
#[utoipa::path(get, path = "/v1/withdrawals/{id}", tag = "payments", security(("bearer" = [])),
    params(("id" = String, Path, description = "A `wd_` id")),
    responses(
        (status = 200, body = WithdrawalResponse),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 404, body = Problem, description = "NOT_FOUND (unknown, someone else's, or finished more than the retention ago)"),
    ))]
#[get("/v1/withdrawals/{id}")]
pub async fn get_withdrawal(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = OpId::parse(&path, OpKind::Withdrawal)
        .ok()
        .filter(|id| id.account == auth.account)
        .ok_or_else(|| ApiError::not_found("withdrawal"))?;
    match state.engine.operation(id).await? {
        Some(Outcome::Withdrawal(view)) => {
            Ok(HttpResponse::Ok().json(WithdrawalResponse::of(&view, false)))
        }
        _ => Err(ApiError::not_found("withdrawal")),
    }
}

#[derive(OpenApi)]
#[openapi(
    paths(withdraw, get_withdrawal),
    components(schemas(
        WithdrawalRequest,
        WithdrawalResponse,
        WithdrawalMethodBody,
        ChallengeRequired
    ))
)]
pub struct Api;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(withdraw).service(get_withdrawal);
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn settlement_skips_weekends() {
        // 2024-05-03 is a Friday.
        let friday = Utc.with_ymd_and_hms(2024, 5, 3, 10, 0, 0).unwrap();
        let monday = Utc.with_ymd_and_hms(2024, 5, 6, 10, 0, 0).unwrap();
        let wednesday = Utc.with_ymd_and_hms(2024, 5, 8, 10, 0, 0).unwrap();
        assert_eq!(expected_by(friday, WithdrawalMethod::ThirdParty), monday);
        assert_eq!(expected_by(friday, WithdrawalMethod::BankCard), wednesday);
        let saturday = Utc.with_ymd_and_hms(2024, 5, 4, 10, 0, 0).unwrap();
        assert_eq!(expected_by(saturday, WithdrawalMethod::ThirdParty), monday);
        let tuesday = Utc.with_ymd_and_hms(2024, 5, 7, 10, 0, 0).unwrap();
        assert_eq!(expected_by(monday, WithdrawalMethod::ThirdParty), tuesday);
    }
}
