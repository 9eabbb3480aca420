//! Quotes before confirming: `GET /v1/quotes?operation=deposit|withdrawal|transfer
//! &method=…&amount=…&currency=…` answers the fee, what arrives and when, from
//! the same policy rules and settlement calendar the operation itself uses, so a
//! quote and the operation that follows it show the same figures.

use actix_web::{get, web, HttpResponse};
use chrono::{DateTime, Utc};
use okpay_engine::domain::command::{DepositMethod, WithdrawalMethod};
use okpay_engine::Rejection;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::Auth;
use crate::error::{rejection, ApiError, ApiResult, ErrorCode, Problem};
use crate::routes::extract::{amount, money};
use crate::state::AppState;

/// Every method of any operation (the document's enum).
const METHODS: [&str; 4] = ["bank_card", "credit_card", "third_party", "wallet"];

/// A method the operation does not take. A 422, not a 400: each value is valid on
/// its own (the document lists every method), only the pair is not, and OpenAPI
/// can't tie two query parameters together.
fn unsupported(message: &str) -> ApiError {
    ApiError::new(ErrorCode::MethodNotSupported, message)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QuoteQuery {
    /// `deposit`, `withdrawal` or `transfer`.
    pub operation: String,
    /// Deposits: `bank_card` or `credit_card`; withdrawals: `bank_card` or
    /// `third_party`; transfers: none (or `wallet`).
    pub method: Option<String>,
    /// A decimal string with at most the currency's decimals.
    pub amount: String,
    pub currency: String,
}

#[derive(Serialize, ToSchema)]
pub struct Quote {
    pub operation: String,
    pub method: String,
    pub amount: String,
    pub fee: String,
    /// What arrives: on the balance (deposit), at the destination (withdrawal,
    /// `amount - fee`) or with the recipient (transfer, `amount`; the sender pays
    /// `amount + fee`).
    pub net: String,
    pub currency: String,
    /// When it arrives.
    pub expected_at: DateTime<Utc>,
}

/// The fee, the net amount and the arrival time of an operation.
#[utoipa::path(get, path = "/v1/quotes", tag = "payments", security(("bearer" = [])),
    params(QuoteQuery),
    responses(
        (status = 200, body = Quote),
        (status = 400, body = Problem, description = "VALIDATION_FAILED: operation, method, amount or currency"),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 422, body = Problem, description = "AMOUNT_TOO_SMALL: the fee would take it all; METHOD_NOT_SUPPORTED: a method the operation does not take"),
    ))]
#[get("/v1/quotes")]
pub async fn quote(
    state: web::Data<AppState>,
    _auth: Auth,
    query: web::Query<QuoteQuery>,
) -> ApiResult<HttpResponse> {
    let policy = state.engine.policy();
    let value = amount(policy, &query.amount, &query.currency)?;
    let c = value.currency();
    let now = state.now();
    // An unknown method is malformed (400); a known one the operation does not
    // take is a 422 (see `unsupported`).
    let method = match query.method.as_deref() {
        None => "",
        Some(m) if METHODS.contains(&m) => m,
        Some(_) => {
            return Err(ApiError::validation(format!(
                "method must be one of {}.",
                METHODS.join(", ")
            )))
        }
    };
    let (method, fee, net, expected_at) = match query.operation.as_str() {
        "deposit" => {
            let m = match method {
                "bank_card" => DepositMethod::BankCard,
                "credit_card" => DepositMethod::CreditCard,
                _ => {
                    return Err(unsupported(
                        "method must be bank_card or credit_card for a deposit.",
                    ))
                }
            };
            let rule = match m {
                DepositMethod::BankCard => policy.deposit_fees.bank_card,
                DepositMethod::CreditCard => policy.deposit_fees.credit_card,
            };
            let fee = rule.fee(value);
            let at = crate::routes::deposits::expected_at(&state, m, now);
            (method, fee, value.value() - fee, at)
        }
        "withdrawal" => {
            let m = match method {
                "bank_card" => WithdrawalMethod::BankCard,
                "third_party" => WithdrawalMethod::ThirdParty,
                _ => {
                    return Err(unsupported(
                        "method must be bank_card or third_party for a withdrawal.",
                    ))
                }
            };
            let rule = match m {
                WithdrawalMethod::BankCard => policy.withdrawal_fees.bank_card,
                WithdrawalMethod::ThirdParty => policy.withdrawal_fees.third_party,
            };
            let fee = rule.fee(value);
            if fee >= value.value() {
                return Err(rejection(Rejection::AmountTooSmall));
            }
            let at = crate::routes::withdrawals::expected_by(now, m);
            (method, fee, value.value() - fee, at)
        }
        "transfer" => {
            if !matches!(method, "" | "wallet") {
                return Err(unsupported("a transfer has no method (or `wallet`)."));
            }
            let fee = policy.transfer_fee.fee(value);
            ("wallet", fee, value.value(), now)
        }
        _ => {
            return Err(ApiError::validation(
                "operation must be deposit, withdrawal or transfer.",
            ))
        }
    };
    Ok(HttpResponse::Ok().json(Quote {
        operation: query.operation.clone(),
        method: method.into(),
        amount: money(value.value(), c),
        fee: money(fee, c),
        net: money(net, c),
        currency: c.code().into(),
        expected_at,
    }))
}

#[derive(OpenApi)]
#[openapi(paths(quote), components(schemas(Quote)))]
pub struct Api;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(quote);
}
