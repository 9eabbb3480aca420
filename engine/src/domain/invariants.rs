//! Ledger invariants, checked in release builds too: before `decide` hands back
//! events that move money, they are applied to a scratch copy of the account's
//! books (and of the operations they close), and the result must keep every
//! balance, hold and in-flight amount non-negative, and close only operations
//! that are open. When a decision would break that (a bug, or a corrupted state),
//! the account fails stop instead of continuing silently: the command is refused
//! with [`Rejection::LedgerInvariant`], a `ledger_invariant` alert is raised and
//! the account is frozen for an operator to look at.
//!
//! The check lives in the domain (a pure function `decide` calls) so it holds on
//! any runtime; `apply` stays total so old journals always replay.

use rust_decimal::Decimal;

use crate::domain::apply::apply;
use crate::domain::event::{Event, EventBody};
use crate::domain::fraud::{FraudAction, FraudRule, Severity};
use crate::domain::rejection::Rejection;
use crate::domain::state::{
    AccountState, AccountStatus, OpRecord, TransferStatus, WithdrawalStatus,
};
use crate::time::Timestamp;

/// Whether `body` moves money (only those are checked).
fn moves_money(body: &EventBody) -> bool {
    matches!(
        body,
        EventBody::Deposited { .. }
            | EventBody::WithdrawalRequested { .. }
            | EventBody::WithdrawalSettled { .. }
            | EventBody::WithdrawalFailed { .. }
            | EventBody::TransferDebited { .. }
            | EventBody::TransferCredited { .. }
            | EventBody::CreditAccepted { .. }
            | EventBody::TransferCompleted { .. }
            | EventBody::TransferReversed { .. }
    )
}

/// The books' invariants on a state: nothing negative.
pub fn check_books(state: &AccountState) -> Result<(), String> {
    for b in &state.books {
        let fields = [
            ("available", b.available),
            ("held", b.held),
            ("in_flight_out", b.in_flight_out),
            ("deposited", b.deposited),
            ("fees", b.fees),
            ("paid_out", b.paid_out),
        ];
        for (name, value) in fields {
            if value < Decimal::ZERO {
                return Err(format!("{name} of {} would be {value}", b.currency.code()));
            }
        }
    }
    Ok(())
}

/// The operation an event closes must be open, of the right kind.
fn closes_open_op(scratch: &AccountState, body: &EventBody) -> Result<(), String> {
    let (op, withdrawal) = match body {
        EventBody::WithdrawalSettled { op } | EventBody::WithdrawalFailed { op, .. } => (op, true),
        EventBody::TransferCompleted { op } | EventBody::TransferReversed { op, .. } => (op, false),
        _ => return Ok(()),
    };
    let open = match scratch.ops.get(op) {
        Some(OpRecord::Withdrawal { status, .. }) => {
            withdrawal && *status == WithdrawalStatus::Processing
        }
        Some(OpRecord::Transfer { status, .. }) => {
            !withdrawal && *status == TransferStatus::InFlight
        }
        Some(OpRecord::Deposit { .. }) | None => false,
    };
    if open {
        Ok(())
    } else {
        Err(format!("operation {op} is not an open one it could close"))
    }
}

/// Applies `events` to a scratch copy of what they touch (the books and the
/// operations they close) and checks the invariants after each. Cheap: nothing
/// but the books and those operations is copied, and only for money events.
pub fn check_events(state: &AccountState, events: &[Event]) -> Result<(), String> {
    if !events.iter().any(|e| moves_money(&e.body)) {
        return Ok(());
    }
    // One scratch state per thread, emptied (its allocations kept) before each
    // check: a fresh one cost a dozen allocations per money command.
    SCRATCH.with_borrow_mut(|scratch| {
        scratch.reset_to(state.id);
        check_on(scratch, state, events)
    })
}

thread_local! {
    static SCRATCH: std::cell::RefCell<AccountState> =
        std::cell::RefCell::new(AccountState::new(crate::ids::AccountId(0)));
}

/// [`check_events`] on an empty `scratch` state.
fn check_on(
    scratch: &mut AccountState,
    state: &AccountState,
    events: &[Event],
) -> Result<(), String> {
    scratch.opened = state.opened;
    scratch.next_op = state.next_op;
    scratch.books.extend_from_slice(&state.books);
    for e in events {
        if let EventBody::WithdrawalSettled { op }
        | EventBody::WithdrawalFailed { op, .. }
        | EventBody::TransferCompleted { op }
        | EventBody::TransferReversed { op, .. } = &e.body
        {
            if let Some(record) = state.ops.get(op) {
                scratch.ops.entry(*op).or_insert_with(|| record.clone());
            }
        }
    }
    for e in events {
        if !moves_money(&e.body) {
            continue;
        }
        closes_open_op(scratch, &e.body)?;
        apply(scratch, e);
        check_books(scratch)?;
    }
    Ok(())
}

/// `events` if they keep the ledger's invariants; otherwise the fail-stop: an
/// alert, a freeze (unless frozen or closed already) and the refusal.
pub fn guard(state: &AccountState, events: Vec<Event>, now: Timestamp) -> Vec<Event> {
    let Err(broken) = check_events(state, &events) else {
        return events;
    };
    let mut refusal = vec![Event {
        at: now,
        body: EventBody::AlertRaised {
            op: state.next_op,
            rule: FraudRule::LedgerInvariant,
            severity: Severity::High,
            action: FraudAction::Freeze,
            message: format!("Ledger check failed, nothing was done: {broken}."),
        },
    }];
    if matches!(
        state.status,
        AccountStatus::Active | AccountStatus::Locked | AccountStatus::Restricted
    ) {
        refusal.push(Event {
            at: now,
            body: EventBody::StatusChanged {
                from: state.status,
                to: AccountStatus::Frozen,
                reason: "Held for review: an internal ledger check failed. Nothing was done; contact support.".into(),
            },
        });
    }
    refusal.push(Event {
        at: now,
        body: EventBody::Refused {
            rejection: Rejection::LedgerInvariant,
        },
    });
    refusal
}
