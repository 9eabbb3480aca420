//! API errors as RFC 9457 problem details (`application/problem+json`) with the
//! contract's `code`, a human `detail`, a `hint` on what to do next and, where a
//! retry time is known, `retry_after_s` (also sent as `Retry-After`). Every engine
//! rejection maps to its code here, and only here.

use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use okpay_engine::{EngineError, Rejection};
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the problem type (`https://okpay.dev/problems/<code>`).
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The machine-readable error code (see API.md "Error codes").
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u64>,
}

/// An error answered to a client.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub hint: Option<String>,
    pub retry_after_s: Option<u64>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            detail: detail.into(),
            hint: None,
            retry_after_s: None,
        }
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
        ApiError::new(StatusCode::BAD_REQUEST, "VALIDATION_FAILED", detail)
            .with_hint("Fix the request as the detail says and send it again.")
    }

    pub fn unauthenticated() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Missing, invalid, expired or revoked token.",
        )
        .with_hint("Log in again to get a new token.")
    }

    pub fn invalid_credentials() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "INVALID_CREDENTIALS",
            "The login or the password is wrong.",
        )
        .with_hint("Check both, or reset your password.")
    }

    pub fn forbidden() -> Self {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "You are not allowed to do this.",
        )
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("No such {what}."),
        )
    }

    pub fn overloaded() -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "OVERLOADED",
            "The service is at capacity; nothing was done.",
        )
        .with_hint("Retry shortly with the same Idempotency-Key.")
        .retry_after(1)
    }

    pub fn unavailable() -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "Storage is unavailable; the request was not acknowledged.",
        )
        .with_hint("Retry shortly with the same Idempotency-Key: it will be applied exactly once.")
        .retry_after(1)
    }

    pub fn payload_too_large(limit: usize) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("The body is larger than {limit} bytes."),
        )
    }
}

/// The status and user-facing hint of each rejection.
pub fn rejection(r: Rejection) -> ApiError {
    use Rejection::*;
    let status = match r {
        AccountNotFound | UnknownOperation | RecipientNotFound => StatusCode::NOT_FOUND,
        AlreadyExists | IdempotencyConflict | OperationClosed | AccountNotEmpty => {
            StatusCode::CONFLICT
        }
        AccountClosed | AccountFrozen | AccountRestricted | KycRequired => StatusCode::FORBIDDEN,
        SameAccount | LimitExceeded | AmountTooSmall | InsufficientFunds | RecipientUnavailable => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        VelocityBlocked => StatusCode::TOO_MANY_REQUESTS,
        ChallengeRequired => StatusCode::FORBIDDEN,
        AccountLocked => StatusCode::LOCKED,
        ChallengeFailed => StatusCode::UNAUTHORIZED,
        ChallengeExpired => StatusCode::GONE,
    };
    let hint = match r {
        AccountFrozen => Some("Contact support and quote your account id to have it reviewed."),
        AccountRestricted => Some("Complete the requested review or contact support."),
        AccountClosed => Some("Open a new account to continue."),
        KycRequired => Some("Verify your identity (POST /v1/kyc) to unlock this operation."),
        LimitExceeded => Some("Send a smaller amount, wait until the daily limit resets at 00:00 UTC, or verify your identity for higher limits."),
        InsufficientFunds => Some("Deposit money first or send a smaller amount."),
        VelocityBlocked => Some("Wait a minute before sending again."),
        IdempotencyConflict => Some("Use a new Idempotency-Key for a new request."),
        RecipientNotFound => Some("Check the recipient's account id, email or phone."),
        RecipientUnavailable => Some("The recipient cannot receive money now; the transfer was reversed."),
        AmountTooSmall => Some("Send an amount larger than the fee."),
        AccountLocked => Some("Wait until the lock ends, or reset your password to unlock at once."),
        ChallengeFailed => Some("Check the code and try again."),
        ChallengeExpired => Some("Start again to get a new code."),
        _ => None,
    };
    let mut e = ApiError::new(status, r.code(), r.message());
    e.hint = hint.map(str::to_owned);
    if r == VelocityBlocked {
        e.retry_after_s = Some(60);
    }
    e
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Rejected(r) => rejection(r),
            EngineError::Overloaded => ApiError::overloaded(),
            EngineError::Unavailable(_) | EngineError::Moved => ApiError::unavailable(),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let problem = Problem {
            type_uri: format!(
                "https://okpay.dev/problems/{}",
                self.code.to_ascii_lowercase().replace('_', "-")
            ),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.to_owned(),
            hint: self.hint.clone(),
            retry_after_s: self.retry_after_s,
        };
        let mut resp = HttpResponse::build(self.status)
            .content_type("application/problem+json")
            .json(problem);
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
