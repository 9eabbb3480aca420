//! Transaction history rows: what `GET /v1/transactions` lists. They are derived
//! from events (a pure function of the state after the events and the events
//! themselves) and written by the store atomically with the journal record, so a
//! durable operation always has its row, and the row survives journal trimming.
//! A row's key starts with its creation time in hex milliseconds, so keys sort by
//! time; an update (a transfer completing) rewrites the same key.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::domain::event::{Event, EventBody};
use crate::domain::notification::{Direction, TxStatus};
use crate::domain::state::{AccountState, OpRecord, TransferStatus, WithdrawalStatus};
use crate::ids::{AccountId, OpId, OpKind};
use crate::money::Currency;
use crate::store::HistoryRow;
use crate::time::Timestamp;

/// One line of an account's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxRecord {
    pub id: OpId,
    pub kind: OpKind,
    pub direction: Direction,
    pub amount: Decimal,
    pub fee: Decimal,
    pub currency: Currency,
    pub status: TxStatus,
    pub counterparty: Option<AccountId>,
    pub memo: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl TxRecord {
    /// The public id (`tx_…`, `dep_…`, `wd_…`).
    pub fn public_id(&self) -> String {
        self.id.display(self.kind)
    }

    fn key(&self) -> String {
        // `{:016x}` of the creation time, then the public id.
        let mut key = String::with_capacity(52);
        crate::ids::push_hex16(&mut key, self.created_at.millis().max(0) as u64);
        self.id.write_display(self.kind, &mut key);
        key
    }

    pub fn encode(&self) -> Vec<u8> {
        // unwrap: postcard into a Vec cannot fail for plain data. Sized for a
        // typical row (60-90 bytes) so it is allocated once, not grown.
        postcard::to_extend(self, Vec::with_capacity(96)).unwrap()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

/// The history rows that `events` create or update, given the state after them.
pub fn history_rows(state: &AccountState, events: &[Event]) -> Vec<HistoryRow> {
    let mut rows: Vec<HistoryRow> = Vec::new();
    for (i, event) in events.iter().enumerate() {
        // The row of an own operation is read from the state after all the
        // events, so a later event of the same operation writes the same row:
        // build it once, there (a transfer debited and completed in one
        // record). It replaces an earlier version when its status is final
        // and no earlier event here started the operation (wrote a first
        // version that never reached the store).
        let own = own_op_of(&event.body);
        let same_op = |e: &Event| own.is_some() && own_op_of(&e.body) == own;
        if events[i + 1..].iter().any(same_op) {
            continue;
        }
        let replaces =
            is_final(&event.body) && !events[..i].iter().any(|e| same_op(e) && !is_final(&e.body));
        let record = match (own, &event.body) {
            (Some(op), _) => own_op(state, op, event.at),
            (
                None,
                EventBody::TransferCredited {
                    transfer,
                    from,
                    amount,
                    memo,
                }
                | EventBody::CreditAccepted {
                    transfer,
                    from,
                    amount,
                    memo,
                    ..
                },
            ) => Some(TxRecord {
                id: *transfer,
                kind: OpKind::Transfer,
                direction: Direction::In,
                amount: amount.value(),
                fee: Decimal::new(0, amount.currency().scale()),
                currency: amount.currency(),
                status: TxStatus::Completed,
                counterparty: Some(*from),
                memo: memo.clone(),
                created_at: event.at,
                updated_at: event.at,
            }),
            _ => None,
        };
        if let Some(r) = record {
            let key = r.key();
            // A later event of the same command supersedes an earlier row.
            rows.retain(|row| row.key != key);
            rows.push(HistoryRow {
                key,
                payload: r.encode(),
                replaces,
            });
        }
    }
    rows
}

/// Whether `body` gives its operation a final status, which rewrites the row
/// its start wrote.
fn is_final(body: &EventBody) -> bool {
    matches!(
        body,
        EventBody::WithdrawalSettled { .. }
            | EventBody::WithdrawalFailed { .. }
            | EventBody::TransferCompleted { .. }
            | EventBody::TransferReversed { .. }
    )
}

/// The own operation whose row `body` writes, if any.
fn own_op_of(body: &EventBody) -> Option<u64> {
    match body {
        EventBody::Deposited { op, .. }
        | EventBody::WithdrawalRequested { op, .. }
        | EventBody::WithdrawalSettled { op }
        | EventBody::WithdrawalFailed { op, .. }
        | EventBody::TransferDebited { op, .. }
        | EventBody::TransferCompleted { op }
        | EventBody::TransferReversed { op, .. } => Some(*op),
        _ => None,
    }
}

/// The row of this account's own operation `n` as it stands in `state`.
fn own_op(state: &AccountState, n: u64, at: Timestamp) -> Option<TxRecord> {
    let id = OpId {
        account: state.id,
        n,
    };
    Some(match state.ops.get(&n)? {
        OpRecord::Deposit {
            amount,
            fee,
            at: created,
            ..
        } => TxRecord {
            id,
            kind: OpKind::Deposit,
            direction: Direction::In,
            amount: amount.value(),
            fee: *fee,
            currency: amount.currency(),
            status: TxStatus::Completed,
            counterparty: None,
            memo: None,
            created_at: *created,
            updated_at: at,
        },
        OpRecord::Withdrawal {
            amount,
            fee,
            status,
            at: created,
            ..
        } => TxRecord {
            id,
            kind: OpKind::Withdrawal,
            direction: Direction::Out,
            amount: amount.value(),
            fee: *fee,
            currency: amount.currency(),
            status: match status {
                WithdrawalStatus::Processing => TxStatus::Processing,
                WithdrawalStatus::Completed => TxStatus::Completed,
                WithdrawalStatus::Failed { .. } => TxStatus::Failed,
            },
            counterparty: None,
            memo: None,
            created_at: *created,
            updated_at: at,
        },
        OpRecord::Transfer {
            to,
            amount,
            fee,
            memo,
            status,
            at: created,
            ..
        } => TxRecord {
            id,
            kind: OpKind::Transfer,
            direction: Direction::Out,
            amount: amount.value(),
            fee: *fee,
            currency: amount.currency(),
            status: match status {
                TransferStatus::InFlight => TxStatus::Processing,
                TransferStatus::Completed => TxStatus::Completed,
                TransferStatus::Reversed(_) => TxStatus::Reversed,
            },
            counterparty: Some(*to),
            memo: memo.clone(),
            created_at: *created,
            updated_at: at,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_keys_are_hex_time_then_public_id_as_stored_before() {
        // Stored rows sort by this key: its text must never change.
        for (millis, kind) in [(0, OpKind::Deposit), (1_700_000_000_123, OpKind::Transfer)] {
            let r = TxRecord {
                id: OpId {
                    account: AccountId(0xfeed),
                    n: 3,
                },
                kind,
                direction: Direction::Out,
                amount: Decimal::ONE,
                fee: Decimal::ZERO,
                currency: Currency::new("CNY", 2).unwrap(),
                status: TxStatus::Completed,
                counterparty: None,
                memo: None,
                created_at: Timestamp(millis),
                updated_at: Timestamp(millis),
            };
            assert_eq!(r.key(), format!("{:016x}{}", millis, r.public_id()));
        }
    }
}
