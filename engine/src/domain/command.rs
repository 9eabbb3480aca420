//! Commands: what a caller (or the transfer saga) asks one account to do.
//!
//! Values here are already parsed and valid (`Amount`, `AccountId`, ...): the
//! gateway parses at the edge, the core only applies business rules.

use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

use crate::domain::destination::PayoutDestination;
use crate::domain::locale::Locale;
use crate::domain::rejection::Rejection;
use crate::domain::security::{ChallengeMethod, ChallengeProof, KycSubmission};
use crate::domain::state::AccountStatus;
use crate::ids::{AccountId, IdempotencyKey, OpId, TransferId};
use crate::money::Amount;

/// How money comes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DepositMethod {
    BankCard,
    CreditCard,
}

/// How money goes out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WithdrawalMethod {
    BankCard,
    ThirdParty,
}

/// The account's owner as registered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Profile {
    pub display_name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
}

/// A command addressed to one account.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Command {
    /// Creates the account. `password_hash` is a PHC string (argon2id), computed by
    /// the caller off the actor's thread.
    Open {
        profile: Profile,
        password_hash: String,
    },
    /// Money in from a card; completes at once (the processor already accepted it).
    Deposit {
        key: IdempotencyKey,
        amount: Amount,
        method: DepositMethod,
        /// The masked card (`**** 1234`), part of what makes two requests the same.
        card: String,
    },
    /// Holds `amount` until the payout processor settles or fails it.
    Withdraw {
        key: IdempotencyKey,
        amount: Amount,
        method: WithdrawalMethod,
        /// Sealed by the gateway; hashed by its keyed fingerprint.
        destination: PayoutDestination,
        /// The caller already passed step-up 2FA for this operation.
        step_up_verified: bool,
    },
    /// The payout processor paid the withdrawal out.
    SettleWithdrawal { id: OpId },
    /// The payout failed: the held funds return to `available`.
    FailWithdrawal { id: OpId, reason: String },
    /// Saga step 1 at the source: debit and record the transfer in flight.
    Transfer {
        key: IdempotencyKey,
        to: AccountId,
        amount: Amount,
        memo: Option<String>,
        step_up_verified: bool,
    },
    /// Saga step 2 at the destination, deduplicated by transfer id.
    Credit {
        transfer: TransferId,
        from: AccountId,
        amount: Amount,
        memo: Option<String>,
        /// The debit's position in the source shard's log (see `CreditMark`).
        debit_lsn: u64,
    },
    /// Saga step 3 at the source: the destination credited.
    CompleteTransfer { transfer: TransferId },
    /// Saga step 3 at the source: the destination refused; give the money back.
    ReverseTransfer {
        transfer: TransferId,
        reason: Rejection,
    },
    /// Operator or fraud action: freeze, unfreeze, restrict, close.
    SetStatus { to: AccountStatus, reason: String },
    /// KYC review outcome.
    SetKycTier { tier: u8 },
    /// A login succeeded: remember the session (its token only as a SHA-256 hash).
    CreateSession(NewSession),
    /// Log one session out.
    RevokeSession { n: u64 },
    /// Log out every session but `except`.
    RevokeSessions { except: Option<u64> },
    /// Save a contact.
    AddContact { alias: String, account: AccountId },
    /// Forget a contact.
    RemoveContact { n: u64 },
    /// A login attempt with a wrong password.
    LoginFailed,
    /// Start a password reset with a code (its SHA-256).
    StartPasswordReset { code_hash: [u8; 32] },
    /// Finish a password reset: the code's hash and the new password's PHC hash.
    ConfirmPasswordReset {
        code_hash: [u8; 32],
        password_hash: String,
    },
    /// Start TOTP enrolment (or replacement: `replace`) with an encrypted secret,
    /// behind a proof on the factor the account has (the gateway checked the
    /// password first).
    BeginTotp {
        secret: Vec<u8>,
        proof: ChallengeProof,
        replace: bool,
    },
    /// Confirm TOTP enrolment: the time step the new app's code matched (`None`:
    /// no match) and the hashes of the recovery codes to hand out.
    ConfirmTotp {
        step: Option<u64>,
        recovery: Vec<[u8; 32]>,
    },
    /// Guard `command` (a transfer or withdrawal that needs step-up) with a challenge.
    CreateChallenge {
        key: IdempotencyKey,
        command: Box<Command>,
        method: ChallengeMethod,
        code_hash: Option<[u8; 32]>,
    },
    /// Answer challenge `n`.
    ConfirmChallenge { n: u64, proof: ChallengeProof },
    /// Submit identity data for review.
    SubmitKyc(KycSubmission),
    /// An operator's KYC review.
    ReviewKyc {
        approve: bool,
        reason: Option<String>,
    },
    /// Check a password-reset code before the new password is hashed: a wrong
    /// code is counted (durably, across codes) without costing an argon2 hash;
    /// the right one changes nothing (`ConfirmPasswordReset` then uses it).
    CheckResetCode { code_hash: [u8; 32] },
    /// A code (its SHA-256) sent by SMS/email to prove a security change while TOTP
    /// is off.
    RequestSecurityCode { code_hash: [u8; 32] },
    /// Remove TOTP behind a proof (the current code or a recovery code).
    RemoveTotp { proof: ChallengeProof },
    /// Replace the recovery codes (their hashes) behind a proof.
    RegenerateRecoveryCodes {
        hashes: Vec<[u8; 32]>,
        proof: ChallengeProof,
    },
    /// An operator clears TOTP and the recovery codes (audited by the gateway).
    ResetTotp { reason: String },
    /// The owner chooses the language of their messages.
    SetLocale { locale: Locale },
}

/// What a new session is, as the gateway saw the login.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NewSession {
    pub token_hash: [u8; 32],
    pub device_id: String,
    pub device_name: Option<String>,
    pub country: Option<String>,
    pub expires_at: crate::time::Timestamp,
}

impl Command {
    /// Whether this is a step of the transfer saga (credit, completion,
    /// reversal). Only the runtime's saga runs these, from a debit it holds in
    /// flight: a caller asking for one directly would credit money nobody
    /// debited, or give back a transfer whose credit still lands.
    pub fn is_saga_step(&self) -> bool {
        matches!(
            self,
            Command::Credit { .. }
                | Command::CompleteTransfer { .. }
                | Command::ReverseTransfer { .. }
        )
    }

    /// The client idempotency key, for commands that carry one.
    pub fn idempotency_key(&self) -> Option<&IdempotencyKey> {
        match self {
            Command::Deposit { key, .. }
            | Command::Withdraw { key, .. }
            | Command::Transfer { key, .. } => Some(key),
            _ => None,
        }
    }

    /// Whether running this command a second time is harmless: keyed commands
    /// replay their first outcome, saga steps are deduplicated by transfer id,
    /// and a payout's settlement or failure, once final, answers success again.
    /// Anything else may act twice — even a status change, which asked for the
    /// current status is a no-op: replayed after a later change, it would undo
    /// that change. A new command is therefore not replay-safe until listed here.
    pub fn replays_safely(&self) -> bool {
        matches!(
            self,
            Command::Deposit { .. }
                | Command::Withdraw { .. }
                | Command::Transfer { .. }
                | Command::Credit { .. }
                | Command::CompleteTransfer { .. }
                | Command::ReverseTransfer { .. }
                | Command::SettleWithdrawal { .. }
                | Command::FailWithdrawal { .. }
        )
    }

    /// A stable fingerprint of what the command asks, without its key and without
    /// whether step-up was passed (a confirmed retry is the same request). FNV-1a over
    /// the derived `Hash`, stable across processes (unlike `RandomState`).
    pub fn fingerprint(&self) -> u64 {
        let mut h = Fnv1a::default();
        match self {
            Command::Deposit {
                amount,
                method,
                card,
                ..
            } => (0u8, amount, method, card).hash(&mut h),
            Command::Withdraw {
                amount,
                method,
                destination,
                ..
            } => (1u8, amount, method, destination).hash(&mut h),
            Command::Transfer {
                to, amount, memo, ..
            } => (2u8, to, amount, memo).hash(&mut h),
            other => other.hash(&mut h),
        }
        h.finish()
    }
}

/// 64-bit FNV-1a: tiny, stable and good enough to tell requests apart.
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}
