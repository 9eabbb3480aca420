//! API errors as RFC 9457 problem details (`application/problem+json`) with the
//! contract's `code`, a human `detail`, a `hint` on what to do next and, where a
//! retry time is known, `retry_after_s` (also sent as `Retry-After`).
//!
//! [`ErrorCode`] is the one table of the contract's error codes: each code's HTTP
//! status, title, `type` URI and default hint live in [`error_codes!`] below and
//! nowhere else. Routes name codes by variant (never by string), engine rejections
//! map to codes in [`ErrorCode::of`] (an exhaustive match, so a new rejection does
//! not compile until it has a code), and the OpenAPI document lists the table.

use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use okpay_engine::{EngineError, Rejection};
use serde::{Serialize, Serializer};
use utoipa::ToSchema;

/// The base of every problem `type` URI: `<base><code in kebab case>`.
pub const PROBLEM_TYPE_BASE: &str = "https://okpay.dev/problems/";

/// Defines [`ErrorCode`] and its table from one list, so a code cannot exist
/// without its status, title and hint.
macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = ($code:literal, $status:ident, $title:literal, $hint:expr) ),+ $(,)?) => {
        /// Every machine-readable error code of the API (`Problem.code`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )+
        }

        impl ErrorCode {
            /// Every code, in table order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),+];

            /// The code as clients see it (`SCREAMING_SNAKE_CASE`).
            pub const fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)+ }
            }

            /// The HTTP status this code is always answered with.
            pub const fn status(self) -> StatusCode {
                match self { $(ErrorCode::$variant => StatusCode::$status,)+ }
            }

            /// A short, human summary of the problem type (`Problem.title`).
            pub const fn title(self) -> &'static str {
                match self { $(ErrorCode::$variant => $title,)+ }
            }

            /// What the client can do about it, unless the answer says more.
            pub const fn hint(self) -> Option<&'static str> {
                match self { $(ErrorCode::$variant => $hint,)+ }
            }
        }
    };
}

error_codes! {
    /// Malformed body, field, amount, currency, header or query.
    ValidationFailed = ("VALIDATION_FAILED", BAD_REQUEST, "Validation failed", Some("Fix the request as the detail says and send it again.")),
    /// A websocket message the server understood as JSON but cannot act on.
    UnsupportedMessage = ("UNSUPPORTED_MESSAGE", BAD_REQUEST, "Unsupported message", Some("Send one of the documented client messages (ping, resume).")),
    /// Missing, invalid, expired or revoked token.
    Unauthenticated = ("UNAUTHENTICATED", UNAUTHORIZED, "Not authenticated", Some("Log in again to get a new token.")),
    /// Wrong login or password (the same answer for an unknown login).
    InvalidCredentials = ("INVALID_CREDENTIALS", UNAUTHORIZED, "Invalid credentials", Some("Check both, or reset your password.")),
    /// A wrong or reused one-time code (2FA, password reset).
    ChallengeFailed = ("CHALLENGE_FAILED", UNAUTHORIZED, "Code rejected", Some("Check the code and try again.")),
    /// Authenticated but not allowed (e.g. a user's token on an operator route).
    Forbidden = ("FORBIDDEN", FORBIDDEN, "Forbidden", None),
    /// The account is closed: nothing in, nothing out.
    AccountClosed = ("ACCOUNT_CLOSED", FORBIDDEN, "Account closed", Some("Open a new account to continue.")),
    /// Outgoing money from a frozen account.
    AccountFrozen = ("ACCOUNT_FROZEN", FORBIDDEN, "Account frozen", Some("Contact support and quote your account id to have it reviewed.")),
    /// Outgoing money from a restricted account.
    AccountRestricted = ("ACCOUNT_RESTRICTED", FORBIDDEN, "Account restricted", Some("Complete the requested review or contact support.")),
    /// The operation needs a verified identity.
    KycRequired = ("KYC_REQUIRED", FORBIDDEN, "Identity verification required", Some("Verify your identity (POST /v1/kyc) to unlock this operation.")),
    /// The operation needs a second factor first.
    ChallengeRequired = ("CHALLENGE_REQUIRED", FORBIDDEN, "Second factor required", Some("Confirm the challenge (POST /v1/challenges/{id}/confirm).")),
    /// Unknown resource (or a malformed id in the path).
    NotFound = ("NOT_FOUND", NOT_FOUND, "Not found", None),
    /// The recipient of a transfer or contact does not exist.
    RecipientNotFound = ("RECIPIENT_NOT_FOUND", NOT_FOUND, "Recipient not found", Some("Check the recipient's account id, email or phone.")),
    /// A known path called with a method it does not serve (`Allow` lists those it does).
    MethodNotAllowed = ("METHOD_NOT_ALLOWED", METHOD_NOT_ALLOWED, "Method not allowed", Some("Use one of the methods in the Allow header.")),
    /// The thing already exists (login registered, contact added, KYC submitted, TOTP on).
    AlreadyExists = ("ALREADY_EXISTS", CONFLICT, "Already exists", None),
    /// The Idempotency-Key was used before with a different request.
    IdempotencyConflict = ("IDEMPOTENCY_CONFLICT", CONFLICT, "Idempotency key reused", Some("Use a new Idempotency-Key for a new request.")),
    /// The operation is already finished.
    OperationClosed = ("OPERATION_CLOSED", CONFLICT, "Operation closed", None),
    /// Closing an account that still holds money or has operations open.
    AccountNotEmpty = ("ACCOUNT_NOT_EMPTY", CONFLICT, "Account not empty", Some("Withdraw the balance and wait for open operations to finish first.")),
    /// A challenge or code past its expiry or out of attempts.
    ChallengeExpired = ("CHALLENGE_EXPIRED", GONE, "Code expired", Some("Start again to get a new code.")),
    /// The body is larger than the server accepts.
    PayloadTooLarge = ("PAYLOAD_TOO_LARGE", PAYLOAD_TOO_LARGE, "Payload too large", Some("Send a smaller body.")),
    /// Available balance too low.
    InsufficientFunds = ("INSUFFICIENT_FUNDS", UNPROCESSABLE_ENTITY, "Insufficient funds", Some("Deposit money first or send a smaller amount.")),
    /// Single or daily limit of the account's tier, or its balance cap.
    LimitExceeded = ("LIMIT_EXCEEDED", UNPROCESSABLE_ENTITY, "Limit exceeded", Some("Send a smaller amount, wait until the daily limit resets at 00:00 UTC, or verify your identity for higher limits.")),
    /// The amount does not even cover the fee.
    AmountTooSmall = ("AMOUNT_TOO_SMALL", UNPROCESSABLE_ENTITY, "Amount too small", Some("Send an amount larger than the fee.")),
    /// The recipient cannot receive (closed, over its cap).
    RecipientUnavailable = ("RECIPIENT_UNAVAILABLE", UNPROCESSABLE_ENTITY, "Recipient unavailable", Some("The recipient cannot receive money now; the transfer was reversed.")),
    /// A transfer to oneself.
    SameAccount = ("SAME_ACCOUNT", UNPROCESSABLE_ENTITY, "Same account", Some("Send to another account.")),
    /// A statement would read more operations than one request may.
    StatementTooLarge = ("STATEMENT_TOO_LARGE", UNPROCESSABLE_ENTITY, "Statement too large", Some("Ask operator support for an export of this account.")),
    /// A date range that ends before it starts, or is longer than allowed.
    InvalidPeriod = ("INVALID_PERIOD", UNPROCESSABLE_ENTITY, "Invalid period", Some("Send a from that is not after to, within the longest period allowed.")),
    /// The card number is well formed but fails its checksum (Luhn).
    CardInvalid = ("CARD_INVALID", UNPROCESSABLE_ENTITY, "Card number invalid", Some("Check the card number and send it again.")),
    /// A method (`bank_card`, `third_party`, …) the operation does not take.
    MethodNotSupported = ("METHOD_NOT_SUPPORTED", UNPROCESSABLE_ENTITY, "Method not supported", Some("Use a method this operation supports (the detail lists them).")),
    /// The card processor declined the deposit.
    PaymentDeclined = ("PAYMENT_DECLINED", UNPROCESSABLE_ENTITY, "Payment declined", Some("Use another card or contact your bank.")),
    /// Too many failed logins; `retry_after_s` says for how long.
    AccountLocked = ("ACCOUNT_LOCKED", LOCKED, "Account locked", Some("Wait until the lock ends, or reset your password to unlock at once.")),
    /// Too many requests (e.g. failed logins from one client).
    RateLimited = ("RATE_LIMITED", TOO_MANY_REQUESTS, "Rate limited", Some("Wait before trying again, or reset your password.")),
    /// Blocked by a velocity rule.
    VelocityBlocked = ("VELOCITY_BLOCKED", TOO_MANY_REQUESTS, "Velocity limit", Some("Wait a minute before sending again.")),
    /// The system is in maintenance; reading still works.
    Maintenance = ("MAINTENANCE", SERVICE_UNAVAILABLE, "Maintenance", Some("Reading still works; try again later.")),
    /// A bound was hit; nothing was done.
    Overloaded = ("OVERLOADED", SERVICE_UNAVAILABLE, "Overloaded", Some("Retry shortly with the same Idempotency-Key.")),
    /// A decision would have broken a ledger invariant: nothing was done, the
    /// account is frozen for review and an alert raised (a bug, never the client's).
    LedgerInvariant = ("LEDGER_INVARIANT", INTERNAL_SERVER_ERROR, "Ledger check failed", Some("Nothing was done. The account is held for review; contact support.")),
    /// Storage is unavailable; the request was not acknowledged.
    Unavailable = ("UNAVAILABLE", SERVICE_UNAVAILABLE, "Unavailable", Some("Retry shortly with the same Idempotency-Key: it will be applied exactly once.")),
}

impl ErrorCode {
    /// The problem `type` URI of this code.
    pub fn type_uri(self) -> String {
        format!(
            "{PROBLEM_TYPE_BASE}{}",
            self.as_str().to_ascii_lowercase().replace('_', "-")
        )
    }

    /// The code of an engine rejection. Exhaustive on purpose: a new rejection
    /// must be given its public code here before the gateway compiles.
    pub const fn of(r: Rejection) -> ErrorCode {
        match r {
            Rejection::AccountNotFound => ErrorCode::NotFound,
            Rejection::AlreadyExists => ErrorCode::AlreadyExists,
            Rejection::IdempotencyConflict => ErrorCode::IdempotencyConflict,
            Rejection::SameAccount => ErrorCode::SameAccount,
            Rejection::AccountClosed => ErrorCode::AccountClosed,
            Rejection::AccountFrozen => ErrorCode::AccountFrozen,
            Rejection::AccountRestricted => ErrorCode::AccountRestricted,
            Rejection::KycRequired => ErrorCode::KycRequired,
            Rejection::LimitExceeded => ErrorCode::LimitExceeded,
            Rejection::AmountTooSmall => ErrorCode::AmountTooSmall,
            Rejection::InsufficientFunds => ErrorCode::InsufficientFunds,
            Rejection::VelocityBlocked => ErrorCode::VelocityBlocked,
            Rejection::ChallengeRequired => ErrorCode::ChallengeRequired,
            Rejection::RecipientNotFound => ErrorCode::RecipientNotFound,
            Rejection::RecipientUnavailable => ErrorCode::RecipientUnavailable,
            Rejection::AccountNotEmpty => ErrorCode::AccountNotEmpty,
            Rejection::AccountLocked => ErrorCode::AccountLocked,
            Rejection::ChallengeFailed => ErrorCode::ChallengeFailed,
            Rejection::ChallengeExpired => ErrorCode::ChallengeExpired,
            Rejection::UnknownOperation => ErrorCode::NotFound,
            Rejection::OperationClosed => ErrorCode::OperationClosed,
            Rejection::TooManyAttempts => ErrorCode::RateLimited,
            Rejection::LedgerInvariant => ErrorCode::LedgerInvariant,
        }
    }

    /// A markdown table of every code (status, title, hint) for the OpenAPI
    /// document and the docs.
    pub fn table() -> String {
        let mut out = String::from("| code | status | title | hint |\n|---|---|---|---|\n");
        for c in ErrorCode::ALL {
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                c.as_str(),
                c.status().as_u16(),
                c.title(),
                c.hint().unwrap_or("")
            ));
        }
        out
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::String))
            .enum_values(Some(ErrorCode::ALL.iter().map(|c| c.as_str())))
            .description(Some(format!(
                "The machine-readable error code. Each code always comes with the same status.\n\n{}",
                ErrorCode::table()
            )))
            .into()
    }
}

impl ToSchema for ErrorCode {}

/// The body of every error response (RFC 9457 problem details).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "https://okpay.dev/problems/insufficient-funds",
    "title": "Insufficient funds",
    "status": 422,
    "detail": "The available balance is too low.",
    "code": "INSUFFICIENT_FUNDS",
    "hint": "Deposit money first or send a smaller amount."
}))]
pub struct Problem {
    /// A URI naming the problem type (`https://okpay.dev/problems/<code in kebab case>`).
    #[serde(rename = "type")]
    pub type_uri: String,
    /// The code's title (the same for every occurrence of the code).
    pub title: String,
    /// The HTTP status, repeated.
    pub status: u16,
    /// What went wrong this time, for a person.
    pub detail: String,
    pub code: ErrorCode,
    /// What to do next.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Seconds to wait before retrying (also in `Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u64>,
}

/// An error answered to a client.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub detail: String,
    pub hint: Option<String>,
    pub retry_after_s: Option<u64>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status().as_u16(),
            self.code,
            self.detail
        )
    }
}

impl ApiError {
    /// An error with the code's default hint.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        ApiError {
            code,
            detail: detail.into(),
            hint: code.hint().map(str::to_owned),
            retry_after_s: None,
        }
    }

    /// The HTTP status (the code's).
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }

    pub fn validation(detail: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::ValidationFailed, detail)
    }

    pub fn unauthenticated() -> Self {
        ApiError::new(
            ErrorCode::Unauthenticated,
            "Missing, invalid, expired or revoked token.",
        )
    }

    pub fn invalid_credentials() -> Self {
        ApiError::new(
            ErrorCode::InvalidCredentials,
            "The login or the password is wrong.",
        )
    }

    pub fn forbidden() -> Self {
        ApiError::new(ErrorCode::Forbidden, "You are not allowed to do this.")
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::new(ErrorCode::NotFound, format!("No such {what}."))
    }

    pub fn overloaded() -> Self {
        ApiError::new(
            ErrorCode::Overloaded,
            "The service is at capacity; nothing was done.",
        )
        .retry_after(1)
    }

    pub fn unavailable() -> Self {
        ApiError::new(
            ErrorCode::Unavailable,
            "Storage is unavailable; the request was not acknowledged.",
        )
        .retry_after(1)
    }

    pub fn payload_too_large(limit: usize) -> Self {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("The body is larger than {limit} bytes."),
        )
    }

    /// The problem body of this error.
    pub fn problem(&self) -> Problem {
        Problem {
            type_uri: self.code.type_uri(),
            title: self.code.title().to_owned(),
            status: self.status().as_u16(),
            detail: self.detail.clone(),
            code: self.code,
            hint: self.hint.clone(),
            retry_after_s: self.retry_after_s,
        }
    }
}

/// The answer to an engine rejection: its code, the engine's sentence, the code's
/// hint (and a retry time where one is fixed).
pub fn rejection(r: Rejection) -> ApiError {
    let e = ApiError::new(ErrorCode::of(r), r.message());
    match r {
        Rejection::VelocityBlocked => e.retry_after(60),
        _ => e,
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Rejected(r) => rejection(r),
            EngineError::Overloaded => ApiError::overloaded(),
            EngineError::Unavailable(_) => ApiError::unavailable(),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status())
            .content_type("application/problem+json")
            .json(self.problem());
        if let Some(s) = self.retry_after_s {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                resp.headers_mut().insert(RETRY_AFTER, v);
            }
        }
        resp
    }
}

/// Shorthand for handler results.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_screaming_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert(c.as_str()), "duplicate code {c}");
            assert!(c
                .as_str()
                .chars()
                .all(|ch| ch.is_ascii_uppercase() || ch == '_'));
            assert!(c.status().is_client_error() || c.status().is_server_error());
        }
    }

    #[test]
    fn the_problem_body_carries_the_codes_table_entry() {
        let e = rejection(Rejection::InsufficientFunds);
        let body = serde_json::to_value(e.problem()).unwrap();
        assert_eq!(body["code"], "INSUFFICIENT_FUNDS");
        assert_eq!(body["status"], 422);
        assert_eq!(body["title"], "Insufficient funds");
        assert_eq!(
            body["type"],
            "https://okpay.dev/problems/insufficient-funds"
        );
        assert_eq!(body["hint"], ErrorCode::InsufficientFunds.hint().unwrap());
    }

    /// No source file outside this one writes a code as a string literal: routes
    /// name codes by `ErrorCode` variant, so the table stays the only owner.
    #[test]
    fn no_route_writes_a_literal_code() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut offenders = Vec::new();
        let mut stack = vec![src];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs") || path.ends_with("error.rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                // OpenAPI response descriptions are prose, not answers.
                for line in text.lines().filter(|l| !l.contains("description")) {
                    for c in ErrorCode::ALL {
                        if line.contains(&format!("\"{}\"", c.as_str())) {
                            offenders.push(format!("{}: {}", path.display(), c));
                        }
                    }
                }
            }
        }
        assert!(offenders.is_empty(), "literal codes: {offenders:?}");
    }
}
