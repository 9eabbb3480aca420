//! Deposits (`POST /v1/deposits`): money in from a bank card or a credit card.
//!
//! The card is charged before the engine records the deposit, because a deposit
//! the processor declined must leave no trace. So that a retry never charges
//! twice, the request runs under its (account, key) lock and first asks the
//! engine, with a dry run of the pure `decide` over the account's state, what the
//! command would do: a replay (the key is known with the same fingerprint) is not
//! charged, a conflict or any other refusal is answered before charging, and only
//! a new request is charged. A charge whose engine command then failed (storage
//! outage) is remembered in memory, so the client's retry is not charged again
//! (see `idempotency.rs`). Card numbers never reach a log or the store: the engine
//! sees the masked `**** 1234`.

use actix_web::{post, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use okpay_engine::domain::command::DepositMethod;
use okpay_engine::domain::decide;
use okpay_engine::domain::view::DepositView;
use okpay_engine::ids::OpKind;
use okpay_engine::{Command, Outcome};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::auth::Auth;
use crate::error::{rejection, ApiError, ApiResult, ErrorCode, Problem};
use crate::idempotency::{CHARGES, KEY_LOCKS};
use crate::payments::CardNumber;
use crate::routes::extract::{amount, idempotency_key, money, time};
use crate::state::AppState;

/// How a deposit is paid.
#[derive(Deserialize, Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum DepositMethodBody {
    BankCard,
    CreditCard,
}

impl From<DepositMethodBody> for DepositMethod {
    fn from(m: DepositMethodBody) -> Self {
        match m {
            DepositMethodBody::BankCard => DepositMethod::BankCard,
            DepositMethodBody::CreditCard => DepositMethod::CreditCard,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DepositRequest {
    /// A decimal string with at most the currency's decimals.
    #[schema(example = "100.00")]
    pub amount: String,
    #[schema(example = "CNY")]
    pub currency: String,
    pub method: DepositMethodBody,
    /// 12–19 digits (spaces and dashes allowed) passing the Luhn check.
    #[schema(example = "4111 1111 1111 1111")]
    pub card_number: String,
}

#[derive(Serialize, ToSchema)]
pub struct DepositResponse {
    /// A `dep_` id.
    pub id: String,
    /// Always `completed`: the processor accepted the charge.
    pub status: String,
    pub amount: String,
    /// Credit card 2.5%, bank card 0% by default, rounded half-up.
    pub fee: String,
    /// `amount - fee`: what the balance grew by.
    pub net: String,
    pub currency: String,
    pub created_at: DateTime<Utc>,
}

impl DepositResponse {
    fn of(v: &DepositView) -> Self {
        let c = v.amount.currency();
        DepositResponse {
            id: v.id.display(OpKind::Deposit),
            status: "completed".into(),
            amount: money(v.amount.value(), c),
            fee: money(v.fee, c),
            net: money(v.net, c),
            currency: c.code().into(),
            created_at: time(v.at),
        }
    }
}

fn declined() -> ApiError {
    ApiError::new(
        ErrorCode::PaymentDeclined,
        "The card processor declined the payment.",
    )
}

/// Deposits money from a card.
#[utoipa::path(post, path = "/v1/deposits", tag = "payments", security(("bearer" = [])),
    request_body = DepositRequest,
    params(("Idempotency-Key" = String, Header, description = "1–255 visible ASCII characters; the same key and body answer the first response again")),
    responses(
        (status = 201, body = DepositResponse),
        (status = 400, body = Problem, description = "VALIDATION_FAILED: body, amount, currency, card number (Luhn) or Idempotency-Key"),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 403, body = Problem, description = "ACCOUNT_CLOSED"),
        (status = 409, body = Problem, description = "IDEMPOTENCY_CONFLICT"),
        (status = 422, body = Problem, description = "PAYMENT_DECLINED / AMOUNT_TOO_SMALL / LIMIT_EXCEEDED (balance cap)"),
        (status = 503, body = Problem, description = "MAINTENANCE / OVERLOADED / UNAVAILABLE (also: no card processor configured; `detail` names the setting)"),
    ))]
#[post("/v1/deposits")]
pub async fn deposit(
    state: web::Data<AppState>,
    auth: Auth,
    req: HttpRequest,
    body: web::Json<DepositRequest>,
) -> ApiResult<HttpResponse> {
    state.maintenance.check()?;
    let cards = state.cards.clone().ok_or_else(|| {
        crate::integrations::not_configured("Card deposits", crate::integrations::PROCESSOR_SETTING)
    })?;
    let key = idempotency_key(&req)?;
    let body = body.into_inner();
    let amount = amount(state.engine.policy(), &body.amount, &body.currency)?;
    let card = CardNumber::parse(&body.card_number).ok_or_else(|| {
        ApiError::validation("The card number is not valid (it must pass the Luhn check).")
    })?;
    let cmd = Command::Deposit {
        key: key.clone(),
        amount,
        method: body.method.into(),
        card: card.masked(),
    };
    let fingerprint = cmd.fingerprint();
    let digest = CHARGES.digest(&card);

    let _serialized = KEY_LOCKS.lock(auth.account, &key).await;
    // What the engine would make of the command, decided in the actor without
    // recording anything: `Ok(true)` for a replay of an earlier deposit.
    let probe = cmd.clone();
    let replay = state
        .engine
        .read(auth.account, move |account, policy, now| {
            decide(policy, account, &probe, now).map(|events| events.is_empty())
        })
        .await?;
    let charged = CHARGES
        .get(auth.account, &key)
        .filter(|m| m.fingerprint == fingerprint);
    match replay {
        Err(r) => return Err(rejection(r)),
        // A replay: the engine answers the first deposit; nothing is charged. Another
        // card with the same last four digits is a different request.
        Ok(true) => {
            if charged.is_some_and(|m| m.card != digest) {
                return Err(rejection(okpay_engine::Rejection::IdempotencyConflict));
            }
        }
        // New: charge, unless this very request was charged and then not recorded.
        Ok(false) => {
            if charged.is_none_or(|m| m.card != digest) {
                cards
                    .charge(&card, amount)
                    .await
                    .map_err(|_| {
                        tracing::info!(account = %auth.account, card = %card.masked(), "deposit declined");
                        declined()
                    })?;
                CHARGES.record(auth.account, &key, fingerprint, digest);
            }
        }
    }
    let outcome = state.engine.execute(auth.account, cmd).await?;
    let Outcome::Deposit(view) = outcome else {
        return Err(ApiError::unavailable());
    };
    Ok(HttpResponse::Created().json(DepositResponse::of(&view)))
}

#[derive(OpenApi)]
#[openapi(
    paths(deposit),
    components(schemas(DepositRequest, DepositResponse, DepositMethodBody)),
    tags((name = "payments", description = "Deposits, withdrawals and transfers"))
)]
pub struct Api;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(deposit);
}
