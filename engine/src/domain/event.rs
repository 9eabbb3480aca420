//! Events: the facts `decide` produces and `apply` folds into the state. They are
//! the journal's content, so they carry everything needed to replay them without
//! the policy or a clock (fees already computed, ids already minted).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::domain::command::{DepositMethod, NewSession, Profile, WithdrawalMethod};
use crate::domain::destination::PayoutDestination;
use crate::domain::fraud::{FraudAction, FraudRule, Severity};
use crate::domain::locale::Locale;
use crate::domain::rejection::Rejection;
use crate::domain::security::{Challenge, KycSubmission, PassedProof, PendingCode};
use crate::domain::state::AccountStatus;
use crate::ids::{AccountId, IdempotencyKey, TransferId};
use crate::money::Amount;
use crate::time::Timestamp;

/// One fact about one account, at one instant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub at: Timestamp,
    pub body: EventBody,
}

/// Which client request an event answers, so a retry finds the first outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRef {
    pub key: IdempotencyKey,
    pub fingerprint: u64,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventBody {
    Opened {
        profile: Profile,
        password_hash: String,
    },
    Deposited {
        op: u64,
        request: RequestRef,
        amount: Amount,
        fee: Decimal,
        method: DepositMethod,
        /// The masked card.
        card: String,
    },
    WithdrawalRequested {
        op: u64,
        request: RequestRef,
        amount: Amount,
        fee: Decimal,
        method: WithdrawalMethod,
        destination: PayoutDestination,
    },
    WithdrawalSettled {
        op: u64,
    },
    WithdrawalFailed {
        op: u64,
        reason: String,
    },
    /// Saga step 1: `amount + fee` left `available`; the transfer is in flight.
    TransferDebited {
        op: u64,
        request: RequestRef,
        to: AccountId,
        amount: Amount,
        fee: Decimal,
        memo: Option<String>,
        /// First money ever sent to `to` (fan-out rule).
        new_recipient: bool,
    },
    /// Saga step 2, at the destination, as written before credits carried their
    /// debit's position (read, never written now: see [`EventBody::CreditAccepted`]).
    TransferCredited {
        transfer: TransferId,
        from: AccountId,
        amount: Amount,
        memo: Option<String>,
    },
    /// Saga step 3: the destination has the money; the fee is earned.
    TransferCompleted {
        op: u64,
    },
    /// Saga step 3: the destination refused; `amount + fee` is back in `available`.
    TransferReversed {
        op: u64,
        reason: Rejection,
    },
    StatusChanged {
        from: AccountStatus,
        to: AccountStatus,
        reason: String,
    },
    KycTierChanged {
        from: u8,
        to: u8,
    },
    /// A fraud rule's condition became true (edge-triggered: raised once).
    AlertRaised {
        op: u64,
        rule: FraudRule,
        severity: Severity,
        action: FraudAction,
        message: String,
    },
    SessionCreated {
        op: u64,
        session: NewSession,
        /// The device never logged in to this account before.
        new_device: bool,
    },
    /// A wrong password; `locked_until` when this failure locks the account.
    LoginFailed {
        locked_until: Option<Timestamp>,
    },
    ResetStarted {
        code: PendingCode,
    },
    ResetAttemptFailed,
    PasswordChanged {
        password_hash: String,
    },
    TotpBegun {
        secret: Vec<u8>,
    },
    TotpEnabled {
        step: u64,
    },
    ChallengeCreated {
        challenge: Challenge,
    },
    ChallengeAttemptFailed {
        n: u64,
    },
    /// The challenge was passed; the guarded operation's events follow.
    ChallengeConsumed {
        n: u64,
        totp_step: Option<u64>,
    },
    KycSubmitted {
        submission: KycSubmission,
    },
    KycReviewed {
        approved: bool,
        reason: Option<String>,
    },
    SessionRevoked {
        n: u64,
    },
    /// Every session but `except` logged out.
    SessionsRevoked {
        except: Option<u64>,
    },
    ContactAdded {
        op: u64,
        alias: String,
        account: AccountId,
    },
    ContactRemoved {
        n: u64,
    },
    /// The command was refused after side effects that must persist (an alert, a
    /// freeze); the caller gets this rejection once those are durable.
    Refused {
        rejection: Rejection,
    },
    // New variants go below, never between: the stored enum index is positional.
    /// A security code (SMS/email) was sent for a change while TOTP is off.
    SecurityCodeSent {
        code: PendingCode,
    },
    /// A wrong proof for a security change (counted with step-up failures).
    SecurityProofFailed,
    /// A proof passed and is used up (a TOTP step, a recovery code, the code).
    SecurityProofPassed {
        proof: PassedProof,
    },
    /// The pending TOTP secret is now the active factor, with these recovery
    /// code hashes.
    TotpActivated {
        step: u64,
        recovery: Vec<[u8; 32]>,
    },
    /// TOTP and the recovery codes cleared, by the user or by an operator.
    TotpRemoved {
        by_operator: bool,
        reason: Option<String>,
    },
    RecoveryCodesRegenerated {
        hashes: Vec<[u8; 32]>,
    },
    /// The owner chose the language of their messages.
    LocaleSet {
        locale: Locale,
    },
    /// Saga step 2, at the destination: the money is here. `debit_lsn` is the
    /// position of the debit's frame in the source shard's log, by which the
    /// destination forgets the transfer once its source has settled it.
    CreditAccepted {
        transfer: TransferId,
        from: AccountId,
        amount: Amount,
        memo: Option<String>,
        debit_lsn: u64,
    },
    /// Saga step 2, at the destination: refused, and remembered like an accepted
    /// credit so that a duplicate request gets the same refusal.
    CreditRefused {
        transfer: TransferId,
        from: AccountId,
        reason: Rejection,
        debit_lsn: u64,
    },
}

impl EventBody {
    /// Whether this event mints a new operation number (`op` field).
    pub fn minted_op(&self) -> Option<u64> {
        match self {
            EventBody::Deposited { op, .. }
            | EventBody::WithdrawalRequested { op, .. }
            | EventBody::TransferDebited { op, .. }
            | EventBody::AlertRaised { op, .. }
            | EventBody::SessionCreated { op, .. }
            | EventBody::ChallengeCreated {
                challenge: Challenge { n: op, .. },
            }
            | EventBody::ContactAdded { op, .. } => Some(*op),
            _ => None,
        }
    }
}

/// Encodes the events of one command as one journal record.
pub fn encode_events(events: &[Event]) -> Vec<u8> {
    // unwrap: postcard only fails on writer errors, and a Vec writer never fails.
    // Sized for a typical record up front: growing from empty reallocated it
    // four or five times (a transfer's records are 60-150 bytes).
    postcard::to_extend(events, Vec::with_capacity(160)).unwrap()
}

/// Decodes a journal record.
pub fn decode_events(bytes: &[u8]) -> Result<Vec<Event>, postcard::Error> {
    postcard::from_bytes(bytes)
}
