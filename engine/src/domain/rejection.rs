//! The one enum of business outcomes that refuse a command, ordered roughly by
//! the precedence in which `decide` checks them. Each variant maps to exactly one
//! public error code of the API; HTTP statuses live in the gateway.

use serde::{Deserialize, Serialize};

/// Why `decide` refused a command. Nothing happened to the account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Rejection {
    /// The account does not exist (was never opened).
    AccountNotFound,
    /// The account was already opened.
    AlreadyExists,
    /// The idempotency key was used before with a different command.
    IdempotencyConflict,
    /// Sending to oneself.
    SameAccount,
    /// The account is closed: nothing in, nothing out.
    AccountClosed,
    /// Frozen (fraud or operator): no outgoing money.
    AccountFrozen,
    /// Restricted (e.g. pending review): may receive, may not send.
    AccountRestricted,
    /// The operation needs a verified identity (tier 1).
    KycRequired,
    /// Single or daily limit of the account's tier, or its balance cap.
    LimitExceeded,
    /// The amount does not even cover the fee.
    AmountTooSmall,
    /// Available balance too low.
    InsufficientFunds,
    /// Blocked by the velocity rule.
    VelocityBlocked,
    /// The operation needs step-up 2FA first (fraud verdict: challenge).
    ChallengeRequired,
    /// The destination account does not exist.
    RecipientNotFound,
    /// The destination can't receive (closed, over its cap).
    RecipientUnavailable,
    /// Closing an account that still holds money or has operations open.
    AccountNotEmpty,
    /// Too many failed logins: locked until a time (the state says when).
    AccountLocked,
    /// A wrong or reused one-time code (2FA, password reset).
    ChallengeFailed,
    /// A code or challenge past its expiry or out of attempts.
    ChallengeExpired,
    /// No such operation (e.g. settling an unknown withdrawal).
    UnknownOperation,
    /// The operation is no longer in a state that allows this (e.g. settled twice
    /// with a different outcome).
    OperationClosed,
    /// Too many failed confirmations of one-time codes for this account within
    /// the policy's window (`failures_window_s`): refused whatever the code.
    TooManyAttempts,
    /// The command would have broken a ledger invariant (a negative balance, hold
    /// or amount in flight, or closing an operation that is not open): nothing was
    /// done, an alert was raised and the account is frozen for review.
    LedgerInvariant,
}

impl Rejection {
    /// The public error code (`shared/design/API.md`).
    pub fn code(self) -> &'static str {
        match self {
            Rejection::AccountNotFound => "NOT_FOUND",
            Rejection::AlreadyExists => "ALREADY_EXISTS",
            Rejection::IdempotencyConflict => "IDEMPOTENCY_CONFLICT",
            Rejection::SameAccount => "SAME_ACCOUNT",
            Rejection::AccountClosed => "ACCOUNT_CLOSED",
            Rejection::AccountFrozen => "ACCOUNT_FROZEN",
            Rejection::AccountRestricted => "ACCOUNT_RESTRICTED",
            Rejection::KycRequired => "KYC_REQUIRED",
            Rejection::LimitExceeded => "LIMIT_EXCEEDED",
            Rejection::AmountTooSmall => "AMOUNT_TOO_SMALL",
            Rejection::InsufficientFunds => "INSUFFICIENT_FUNDS",
            Rejection::VelocityBlocked => "VELOCITY_BLOCKED",
            Rejection::ChallengeRequired => "CHALLENGE_REQUIRED",
            Rejection::RecipientNotFound => "RECIPIENT_NOT_FOUND",
            Rejection::RecipientUnavailable => "RECIPIENT_UNAVAILABLE",
            Rejection::AccountNotEmpty => "ACCOUNT_NOT_EMPTY",
            Rejection::AccountLocked => "ACCOUNT_LOCKED",
            Rejection::ChallengeFailed => "CHALLENGE_FAILED",
            Rejection::ChallengeExpired => "CHALLENGE_EXPIRED",
            Rejection::UnknownOperation => "NOT_FOUND",
            Rejection::OperationClosed => "OPERATION_CLOSED",
            Rejection::TooManyAttempts => "RATE_LIMITED",
            Rejection::LedgerInvariant => "LEDGER_INVARIANT",
        }
    }

    /// A sentence for the user.
    pub fn message(self) -> &'static str {
        match self {
            Rejection::AccountNotFound => "The account does not exist.",
            Rejection::AlreadyExists => "The account already exists.",
            Rejection::IdempotencyConflict => {
                "This Idempotency-Key was already used for a different request."
            }
            Rejection::SameAccount => "You can't send money to your own account.",
            Rejection::AccountClosed => "The account is closed.",
            Rejection::AccountFrozen => "The account is frozen: no money can leave it.",
            Rejection::AccountRestricted => {
                "The account is restricted: it can receive money but not send it."
            }
            Rejection::KycRequired => "This operation needs a verified identity.",
            Rejection::LimitExceeded => "The amount exceeds a limit of your account.",
            Rejection::AmountTooSmall => "The amount does not cover the fee.",
            Rejection::InsufficientFunds => "The available balance is too low.",
            Rejection::VelocityBlocked => "Too many outgoing operations in a short time.",
            Rejection::ChallengeRequired => "This operation needs a second factor.",
            Rejection::RecipientNotFound => "The recipient does not exist.",
            Rejection::RecipientUnavailable => "The recipient cannot receive this payment.",
            Rejection::AccountNotEmpty => "The account still holds money or open operations.",
            Rejection::AccountLocked => {
                "Too many failed logins: the account is locked for a while."
            }
            Rejection::ChallengeFailed => "The code is wrong or was already used.",
            Rejection::ChallengeExpired => "The code has expired or had too many wrong attempts.",
            Rejection::UnknownOperation => "No such operation.",
            Rejection::OperationClosed => "The operation is already finished.",
            Rejection::TooManyAttempts => "Too many wrong codes for this account.",
            Rejection::LedgerInvariant => {
                "An internal ledger check failed: nothing was done and the account is held for review."
            }
        }
    }
}
