//! Parsing at the edge: JSON/path/query error handlers that answer problem+json,
//! the `Idempotency-Key` header, amounts with their currency, and formatting of
//! money and times for responses.

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::header::HeaderName;
use actix_web::{web, HttpRequest};
use chrono::{DateTime, Utc};
use okpay_engine::ids::{AccountId, IdempotencyKey};
use okpay_engine::money::{format_money, Amount, Currency, MoneyError};
use okpay_engine::policy::Policy;
use okpay_engine::time::Timestamp;
use rust_decimal::Decimal;

use crate::error::ApiError;

/// JSON bodies: bounded size, and every parse failure as a 400/413 problem.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(move |err, _req| {
            let api = match &err {
                JsonPayloadError::Overflow { .. }
                | JsonPayloadError::OverflowKnownLength { .. } => {
                    ApiError::payload_too_large(limit)
                }
                JsonPayloadError::ContentType => {
                    ApiError::validation("Send the body as application/json.")
                }
                JsonPayloadError::Deserialize(e) => {
                    ApiError::validation(format!("Malformed JSON body: {e}"))
                }
                other => ApiError::validation(format!("Unreadable body: {other}")),
            };
            api.into()
        })
}

/// Path parameters: a malformed one is a 404 (no such resource).
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default()
        .error_handler(|_err: PathError, _req| ApiError::not_found("resource").into())
}

/// Query strings: a malformed one is a 400.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err: QueryPayloadError, _req| {
        ApiError::validation(format!("Malformed query string: {err}")).into()
    })
}

/// The `Idempotency-Key` header (1–255 visible ASCII characters), required on every
/// POST that moves money.
pub fn idempotency_key(req: &HttpRequest) -> Result<IdempotencyKey, ApiError> {
    // A constant name: looked up by a `&str`, the header name would be parsed
    // and lowercased into a fresh allocation on every request.
    const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
    let value = req
        .headers()
        .get(IDEMPOTENCY_KEY)
        .ok_or_else(|| ApiError::validation("The Idempotency-Key header is required."))?;
    let text = value
        .to_str()
        .map_err(|_| ApiError::validation("The Idempotency-Key header must be ASCII."))?;
    IdempotencyKey::parse(text).map_err(|_| {
        ApiError::validation("The Idempotency-Key must be 1-255 visible ASCII characters.")
    })
}

/// Parses `amount` in `currency` under the policy's currencies.
pub fn amount(policy: &Policy, amount: &str, currency: &str) -> Result<Amount, ApiError> {
    let currency = policy
        .currency(currency)
        .map_err(|_| ApiError::validation(format!("Unsupported currency {currency:?}.")))?;
    Amount::parse(amount, currency).map_err(|e| match e {
        MoneyError::TooManyDecimals { currency, scale } => ApiError::validation(format!(
            "{currency} amounts have at most {scale} decimal places."
        )),
        MoneyError::NotPositive => ApiError::validation("The amount must be greater than zero."),
        MoneyError::TooLarge => ApiError::validation("The amount is too large."),
        _ => ApiError::validation("The amount must be a decimal string such as \"12.50\"."),
    })
}

/// A money value as the API writes it: a string with the currency's decimals.
pub fn money(value: Decimal, currency: Currency) -> String {
    format_money(value, currency)
}

/// An engine timestamp as RFC 3339 UTC.
pub fn time(t: Timestamp) -> DateTime<Utc> {
    crate::clock::to_chrono(t)
}

/// Parses an `acc_…` id from a path or body.
pub fn account_id(text: &str) -> Result<AccountId, ApiError> {
    text.parse().map_err(|_| ApiError::not_found("account"))
}
