//! Views: what callers get back. Outcomes of commands are computed from the state
//! (not stored separately), so an idempotent replay reports the operation as it is
//! now, e.g. a withdrawal that has since settled.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::domain::command::{DepositMethod, Profile, WithdrawalMethod};
use crate::domain::destination::PayoutDestination;
use crate::domain::locale::Locale;
use crate::domain::state::{
    AccountState, AccountStatus, Book, OpRecord, TransferStatus, WithdrawalStatus,
};
use crate::ids::{AccountId, OpId};
use crate::money::{Amount, Currency};
use crate::time::Timestamp;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositView {
    pub id: OpId,
    pub amount: Amount,
    pub fee: Decimal,
    pub net: Decimal,
    pub method: DepositMethod,
    pub card: String,
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawalView {
    pub id: OpId,
    pub amount: Amount,
    pub fee: Decimal,
    pub payout: Decimal,
    pub method: WithdrawalMethod,
    /// Sealed unless recorded before destinations were; show only `masked()`.
    pub destination: PayoutDestination,
    pub status: WithdrawalStatus,
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferView {
    pub id: OpId,
    pub from: AccountId,
    pub to: AccountId,
    pub amount: Amount,
    pub fee: Decimal,
    pub memo: Option<String>,
    pub status: TransferStatus,
    pub at: Timestamp,
}

/// The result of a command that succeeded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Opened {
        account: AccountId,
    },
    Deposit(DepositView),
    Withdrawal(WithdrawalView),
    Transfer(TransferView),
    /// A saga credit applied (or already applied).
    Credited,
    /// Something with an id was created (a session, a contact).
    Created(OpId),
    /// Anything else that succeeded (status change, settlement...).
    Done,
}

/// The view of operation `n` of `state`, if it is still remembered.
pub fn op_view(state: &AccountState, n: u64) -> Option<Outcome> {
    let id = OpId {
        account: state.id,
        n,
    };
    Some(match state.ops.get(&n)? {
        OpRecord::Deposit {
            amount,
            fee,
            method,
            card,
            at,
        } => Outcome::Deposit(DepositView {
            id,
            amount: *amount,
            fee: *fee,
            net: amount.value() - fee,
            method: *method,
            card: card.clone(),
            at: *at,
        }),
        OpRecord::Withdrawal {
            amount,
            fee,
            method,
            destination,
            status,
            at,
            ..
        } => Outcome::Withdrawal(WithdrawalView {
            id,
            amount: *amount,
            fee: *fee,
            payout: amount.value() - fee,
            method: *method,
            destination: destination.clone(),
            status: status.clone(),
            at: *at,
        }),
        OpRecord::Transfer {
            to,
            amount,
            fee,
            memo,
            status,
            at,
            ..
        } => Outcome::Transfer(TransferView {
            id,
            from: state.id,
            to: *to,
            amount: *amount,
            fee: *fee,
            memo: memo.clone(),
            status: *status,
            at: *at,
        }),
    })
}

/// One currency's balance as users see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BalanceView {
    pub currency: Currency,
    pub available: Decimal,
    pub held: Decimal,
}

/// A read-only copy of what `GET /v1/account` and operators need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountView {
    pub id: AccountId,
    pub profile: Profile,
    pub status: AccountStatus,
    pub status_reason: Option<String>,
    pub kyc_tier: u8,
    pub balances: Vec<BalanceView>,
    /// Outgoing money today (UTC), per currency.
    pub daily_out_used: Vec<(Currency, Decimal)>,
    pub opened_at: Option<Timestamp>,
    /// The seq of the newest notification.
    pub notification_seq: u64,
    /// The language of the owner's messages.
    pub locale: Locale,
}

impl AccountView {
    pub fn of(state: &AccountState, now: Timestamp) -> Self {
        let day = now.utc_day();
        AccountView {
            id: state.id,
            profile: state.profile.clone(),
            status: state.status,
            status_reason: state.status_reason.clone(),
            kyc_tier: state.kyc_tier,
            balances: state
                .books
                .iter()
                .map(|b| BalanceView {
                    currency: b.currency,
                    available: b.available,
                    held: b.held,
                })
                .collect(),
            daily_out_used: state
                .books
                .iter()
                .map(|b| (b.currency, state.daily.used_on(day, b.currency)))
                .collect(),
            opened_at: state.opened_at,
            notification_seq: state.notification_seq,
            locale: state.locale,
        }
    }
}

/// One account's share of the ledger audit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditShare {
    pub account: AccountId,
    pub books: Vec<Book>,
    /// Outgoing transfers in flight: id, destination, amount, fee.
    pub in_flight: Vec<(OpId, AccountId, Amount, Decimal)>,
    /// Every incoming transfer id still remembered as credited (not refused).
    pub credited: Vec<OpId>,
}

impl AuditShare {
    pub fn of(state: &AccountState) -> Self {
        AuditShare {
            account: state.id,
            books: state.books.clone(),
            in_flight: state
                .open_transfers()
                .filter_map(|(n, op)| match op {
                    OpRecord::Transfer {
                        to, amount, fee, ..
                    } => Some((
                        OpId {
                            account: state.id,
                            n,
                        },
                        *to,
                        *amount,
                        *fee,
                    )),
                    _ => None,
                })
                .collect(),
            credited: state
                .credited
                .iter()
                .filter(|(_, mark)| mark.accepted())
                .map(|(id, _)| *id)
                .collect(),
        }
    }
}
