//! Deposits (`POST /v1/deposits`): money in from a bank card or a credit card.
//!
//! The card is charged before the engine records the deposit, because a deposit
//! the processor declined must leave no trace. The request runs under its
//! (account, key) lock and first asks the engine, with a dry run of the pure
//! `decide` over the account's state, what the command would do: a replay (the key
//! is known with the same fingerprint) is not charged, a conflict or any other
//! refusal is answered before charging. A new request goes through
//! `integrations::charges`: the intent is stored, the card charged with the
//! reference `<account>:<key>` as the processor's idempotency key (so a retry never
//! charges twice), the deposit credited, or refunded if the engine refuses it. A
//! processor that settles later (bank transfers) answers `pending`: the response
//! is `202` with `expected_at`, and the processor's signed callback credits it.
//! Card numbers never reach a log or the engine (which sees `**** 1234`); the
//! stored intent holds them encrypted until the deposit is settled.

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
use crate::idempotency::{ChargeLock, CHARGES, KEY_LOCKS};
use crate::integrations::charges::{self, Driven};
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
    /// `completed`: the processor accepted the charge and the balance grew.
    pub status: String,
    pub amount: String,
    /// Credit card 2.5%, bank card 0% by default, rounded half-up.
    pub fee: String,
    /// `amount - fee`: what the balance grew by.
    pub net: String,
    pub currency: String,
    pub created_at: DateTime<Utc>,
    /// When the money is on the balance (for a completed deposit: when it was).
    pub expected_at: DateTime<Utc>,
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
            expected_at: time(v.at),
        }
    }
}

fn declined(reason: String) -> ApiError {
    ApiError::new(
        ErrorCode::PaymentDeclined,
        format!("The card processor declined the payment: {reason}"),
    )
}

/// Deposits money from a card.
#[utoipa::path(post, path = "/v1/deposits", tag = "payments", security(("bearer" = [])),
    request_body = DepositRequest,
    params(("Idempotency-Key" = String, Header, description = "1–255 visible ASCII characters; the same key and body answer the first response again")),
    responses(
        (status = 201, body = DepositResponse),
        (status = 202, body = DepositPending, description = "The processor accepted the charge and settles it later (bank transfers)"),
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
    // The shape is validation (400); a well-formed number failing its checksum is
    // a 422, since no schema can express Luhn.
    let digits: String = body
        .card_number
        .chars()
        .filter(|c| *c != ' ' && *c != '-')
        .collect();
    if !(12..=19).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::validation(
            "The card number must have 12 to 19 digits.",
        ));
    }
    let card = CardNumber::parse(&digits).ok_or_else(|| {
        ApiError::new(
            ErrorCode::CardInvalid,
            "The card number is not valid (it must be 12-19 digits passing the Luhn check).",
        )
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
    // Across nodes too (a no-op on a single node).
    let _across_nodes = ChargeLock::take(&state.coord, auth.account, &key).await?;
    // What the engine would make of the command, decided in the actor without
    // recording anything: `Ok(true)` for a replay of an earlier deposit.
    let probe = cmd.clone();
    let replay = state
        .engine
        .read(auth.account, move |account, policy, now| {
            decide(policy, account, &probe, now).map(|events| events.is_empty())
        })
        .await?;
    match replay {
        Err(r) => return Err(rejection(r)),
        // A replay: the engine answers the first deposit; nothing is charged. Another
        // card with the same last four digits is a different request.
        Ok(true) => {
            let charged = CHARGES
                .get(auth.account, &key)
                .filter(|m| m.fingerprint == fingerprint);
            if charged.is_some_and(|m| m.card != digest) {
                return Err(rejection(okpay_engine::Rejection::IdempotencyConflict));
            }
            let outcome = state.engine.execute(auth.account, cmd).await?;
            let Outcome::Deposit(view) = outcome else {
                return Err(ApiError::unavailable());
            };
            return Ok(HttpResponse::Created().json(DepositResponse::of(&view)));
        }
        Ok(false) => {}
    }
    // New to the engine: charge (or find the charge of an earlier attempt).
    let method: DepositMethod = body.method.into();
    let fresh = charges::intent(
        &state.pii,
        auth.account,
        &key,
        amount,
        method,
        &card,
        state.now(),
    );
    let intent = match charges::load(&state.engine, &fresh.reference()).await {
        Ok(Some(earlier)) => {
            let same_card = charges_card(&state, &earlier).is_some_and(|c| c == card);
            if earlier.amount != fresh.amount
                || earlier.currency != fresh.currency
                || earlier.method != fresh.method
                || !same_card
            {
                return Err(rejection(okpay_engine::Rejection::IdempotencyConflict));
            }
            earlier
        }
        Ok(None) => {
            charges::record(&state.engine, &fresh)
                .await
                .map_err(|_| ApiError::unavailable())?;
            fresh
        }
        Err(_) => return Err(ApiError::unavailable()),
    };
    match charges::drive(
        &state.engine,
        &cards,
        &state.pii,
        &intent,
        None,
        &state.deliveries,
    )
    .await
    {
        Ok(Driven::Credited(view)) => {
            CHARGES.record(auth.account, &key, fingerprint, digest);
            Ok(HttpResponse::Created().json(DepositResponse::of(&view)))
        }
        Ok(Driven::Pending(_)) => {
            let policy = state.engine.policy();
            let rule = match method {
                DepositMethod::BankCard => policy.deposit_fees.bank_card,
                DepositMethod::CreditCard => policy.deposit_fees.credit_card,
            };
            let fee = rule.fee(amount);
            let c = amount.currency();
            Ok(HttpResponse::Accepted().json(DepositPending {
                status: "pending".into(),
                reference: intent.reference(),
                amount: money(amount.value(), c),
                fee: money(fee, c),
                net: money(amount.value() - fee, c),
                currency: c.code().into(),
                expected_at: expected_at(&state, method, state.now()),
            }))
        }
        Ok(Driven::Declined(reason)) => {
            tracing::info!(account = %auth.account, card = %card.masked(), "deposit declined");
            Err(declined(reason))
        }
        Ok(Driven::Refunded(r)) => Err(rejection(r).with_hint(
            "The card was charged and the charge refunded: the deposit would break a limit.",
        )),
        Err(e) => {
            tracing::warn!(account = %auth.account, error = %e, "deposit not settled yet; the retry or the start-up sweep finishes it");
            Err(ApiError::unavailable())
        }
    }
}

/// The card of a stored intent.
fn charges_card(state: &AppState, intent: &charges::Intent) -> Option<CardNumber> {
    use base64::Engine as _;
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(&intent.card)
        .ok()?;
    let account = intent.account.parse().ok()?;
    CardNumber::parse(&state.pii.open_text(
        crate::crypto::Field::DepositCard,
        crate::crypto::Owner::Account(account),
        &sealed,
    )?)
}

/// When a deposit by `method` made at `at` is expected on the balance: credit
/// cards at once, bank cards after `[integrations.processor] bank_card_days`
/// business days (default 1).
pub fn expected_at(state: &AppState, method: DepositMethod, at: DateTime<Utc>) -> DateTime<Utc> {
    match method {
        DepositMethod::CreditCard => at,
        DepositMethod::BankCard => crate::routes::withdrawals::add_business_days(
            at,
            state
                .settings
                .integrations
                .processor
                .as_ref()
                .and_then(|p| p.bank_card_days)
                .unwrap_or(1),
        ),
    }
}

/// A deposit the processor accepted and settles later.
#[derive(Serialize, ToSchema)]
pub struct DepositPending {
    /// Always `pending`: the balance grows when the processor reports the charge.
    pub status: String,
    /// The charge reference (`<account>:<Idempotency-Key>`).
    pub reference: String,
    pub amount: String,
    pub fee: String,
    pub net: String,
    pub currency: String,
    /// When the money is expected on the balance.
    pub expected_at: DateTime<Utc>,
}

#[derive(OpenApi)]
#[openapi(
    paths(deposit),
    components(schemas(DepositRequest, DepositResponse, DepositPending, DepositMethodBody)),
    tags((name = "payments", description = "Deposits, withdrawals and transfers"))
)]
pub struct Api;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(deposit);
}
