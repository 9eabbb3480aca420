//! Ledger invariants, checked in release builds too: before `decide` hands back
//! events that move money, their effect on the account's books (and on the
//! operations they close) is worked out, and the result must keep every
//! balance, hold and in-flight amount non-negative, and close only operations
//! that are open. When a decision would break that (a bug, or a corrupted state),
//! the account fails stop instead of continuing silently: the command is refused
//! with [`Rejection::LedgerInvariant`], a `ledger_invariant` alert is raised and
//! the account is frozen for an operator to look at.
//!
//! The check lives in the domain (a pure function `decide` calls) so it holds on
//! any runtime; `apply` stays total so old journals always replay.
//!
//! In release builds the effect is computed on a copy of the books alone
//! ([`check_ledger`]: each money event's arithmetic as `apply` does it), since
//! running all of `apply` on a scratch state for every money command was a
//! tenth of the engine's CPU per transfer. Debug builds (every test) also run
//! the events through `apply` itself on a scratch state and assert that both
//! reach the same verdict and the same books, so the two can't drift apart.

use rust_decimal::Decimal;

#[cfg(debug_assertions)]
use crate::domain::apply::apply;
use crate::domain::event::{Event, EventBody};
use crate::domain::fraud::{FraudAction, FraudRule, Severity};
use crate::domain::rejection::Rejection;
use crate::domain::state::{
    AccountState, AccountStatus, Book, OpRecord, TransferStatus, WithdrawalStatus,
};
use crate::money::{Amount, Currency};
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
    books_hold(&state.books)
}

/// [`check_books`] on the books alone.
fn books_hold(books: &[Book]) -> Result<(), String> {
    for b in books {
        let fields = [
            ("available", b.available),
            ("held", b.held),
            ("in_flight_out", b.in_flight_out),
            ("deposited", b.deposited),
            ("fees", b.fees),
            ("paid_out", b.paid_out),
        ];
        for (name, value) in fields {
            // As `value < 0` (a negative zero is zero), without a comparison
            // that aligns scales: this runs for every money command.
            if value.is_sign_negative() && !value.is_zero() {
                return Err(format!("{name} of {} would be {value}", b.currency.code()));
            }
        }
    }
    Ok(())
}

/// The operation an event closes must be open, of the right kind.
#[cfg(debug_assertions)]
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

/// Works out what `events` do to the books (and to the operations they
/// close) and checks the invariants after each. Cheap: the books are copied
/// into a buffer kept per thread, and only for money events.
pub fn check_events(state: &AccountState, events: &[Event]) -> Result<(), String> {
    if !events.iter().any(|e| moves_money(&e.body)) {
        return Ok(());
    }
    LEDGER.with_borrow_mut(|ledger| {
        let verdict = check_ledger(ledger, state, events);
        #[cfg(debug_assertions)]
        {
            // The same check through `apply` itself: the books' arithmetic
            // above must be apply's exactly.
            let (by_apply, books) = check_by_apply(state, events);
            assert_eq!(verdict, by_apply, "the ledger check and apply disagree");
            if verdict.is_ok() {
                assert_eq!(ledger.books, books, "the ledger check and apply disagree");
            }
        }
        verdict
    })
}

/// The books and the operations of one check, kept per thread so a check
/// allocates nothing once they have grown to an account's size.
#[derive(Default)]
struct Ledger {
    books: Vec<Book>,
    /// Operations the events opened or closed so far, newest state last.
    ops: Vec<(u64, LedgerOp)>,
}

/// What the check needs of an operation.
#[derive(Clone, Copy)]
struct LedgerOp {
    kind: OpKindOf,
    amount: Amount,
    fee: Decimal,
    open: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum OpKindOf {
    Deposit,
    Withdrawal,
    Transfer,
}

impl LedgerOp {
    fn of(record: &OpRecord) -> Self {
        match record {
            OpRecord::Deposit { amount, fee, .. } => LedgerOp {
                kind: OpKindOf::Deposit,
                amount: *amount,
                fee: *fee,
                open: false,
            },
            OpRecord::Withdrawal {
                amount,
                fee,
                status,
                ..
            } => LedgerOp {
                kind: OpKindOf::Withdrawal,
                amount: *amount,
                fee: *fee,
                open: *status == WithdrawalStatus::Processing,
            },
            OpRecord::Transfer {
                amount,
                fee,
                status,
                ..
            } => LedgerOp {
                kind: OpKindOf::Transfer,
                amount: *amount,
                fee: *fee,
                open: *status == TransferStatus::InFlight,
            },
        }
    }
}

thread_local! {
    static LEDGER: std::cell::RefCell<Ledger> = std::cell::RefCell::new(Ledger::default());
}

impl Ledger {
    /// The book of `currency`, created empty on first use (as `book_mut`).
    fn book(&mut self, currency: Currency) -> &mut Book {
        crate::domain::state::book_in(&mut self.books, currency)
    }

    /// Operation `op` as the events so far left it.
    fn op(&self, state: &AccountState, op: u64) -> Option<LedgerOp> {
        match self.ops.iter().rev().find(|(n, _)| *n == op) {
            Some((_, o)) => Some(*o),
            None => state.ops.get(&op).map(LedgerOp::of),
        }
    }

    /// Closes `op`, which must be an open one of `kind`; its amount and fee.
    fn close(
        &mut self,
        state: &AccountState,
        op: u64,
        kind: OpKindOf,
    ) -> Result<(Amount, Decimal), String> {
        match self.op(state, op) {
            Some(o) if o.kind == kind && o.open => {
                self.ops.push((op, LedgerOp { open: false, ..o }));
                Ok((o.amount, o.fee))
            }
            _ => Err(format!("operation {op} is not an open one it could close")),
        }
    }

    /// One money event's effect, as `apply` computes it.
    fn apply(&mut self, state: &AccountState, body: &EventBody) -> Result<(), String> {
        let opened = |kind, amount: &Amount, fee: &Decimal, open| LedgerOp {
            kind,
            amount: *amount,
            fee: *fee,
            open,
        };
        match body {
            EventBody::Deposited {
                op, amount, fee, ..
            } => {
                let book = self.book(amount.currency());
                book.available += amount.value() - fee;
                book.deposited += amount.value();
                book.fees += *fee;
                self.ops
                    .push((*op, opened(OpKindOf::Deposit, amount, fee, false)));
            }
            EventBody::WithdrawalRequested {
                op, amount, fee, ..
            } => {
                let book = self.book(amount.currency());
                book.available -= amount.value();
                book.held += amount.value();
                self.ops
                    .push((*op, opened(OpKindOf::Withdrawal, amount, fee, true)));
            }
            EventBody::WithdrawalSettled { op } => {
                let (amount, fee) = self.close(state, *op, OpKindOf::Withdrawal)?;
                let book = self.book(amount.currency());
                book.held -= amount.value();
                book.fees += fee;
                book.paid_out += amount.value() - fee;
            }
            EventBody::WithdrawalFailed { op, .. } => {
                let (amount, _) = self.close(state, *op, OpKindOf::Withdrawal)?;
                let book = self.book(amount.currency());
                book.held -= amount.value();
                book.available += amount.value();
            }
            EventBody::TransferDebited {
                op, amount, fee, ..
            } => {
                let book = self.book(amount.currency());
                book.available -= amount.value() + fee;
                book.in_flight_out += amount.value() + fee;
                self.ops
                    .push((*op, opened(OpKindOf::Transfer, amount, fee, true)));
            }
            EventBody::TransferCredited { amount, .. }
            | EventBody::CreditAccepted { amount, .. } => {
                self.book(amount.currency()).available += amount.value();
            }
            EventBody::TransferCompleted { op } => {
                let (amount, fee) = self.close(state, *op, OpKindOf::Transfer)?;
                let book = self.book(amount.currency());
                book.in_flight_out -= amount.value() + fee;
                book.fees += fee;
            }
            EventBody::TransferReversed { op, .. } => {
                let (amount, fee) = self.close(state, *op, OpKindOf::Transfer)?;
                let book = self.book(amount.currency());
                book.in_flight_out -= amount.value() + fee;
                book.available += amount.value() + fee;
            }
            other => debug_assert!(!moves_money(other), "a money event the check skips"),
        }
        Ok(())
    }
}

/// [`check_events`] on the books alone, in `ledger` (emptied first).
fn check_ledger(ledger: &mut Ledger, state: &AccountState, events: &[Event]) -> Result<(), String> {
    ledger.books.clear();
    ledger.ops.clear();
    ledger.books.extend_from_slice(&state.books);
    for e in events {
        if !moves_money(&e.body) {
            continue;
        }
        ledger.apply(state, &e.body)?;
        books_hold(&ledger.books)?;
    }
    Ok(())
}

/// The check through `apply`: `events` applied to a scratch copy of what they
/// touch (the books and the operations they close), the invariants checked
/// after each; the verdict and the scratch's books.
#[cfg(debug_assertions)]
fn check_by_apply(state: &AccountState, events: &[Event]) -> (Result<(), String>, Vec<Book>) {
    SCRATCH.with_borrow_mut(|scratch| {
        scratch.reset_to(state.id);
        let verdict = check_on(scratch, state, events);
        (verdict, scratch.books.clone())
    })
}

#[cfg(debug_assertions)]
thread_local! {
    /// One scratch state per thread, emptied (its allocations kept) before each check.
    static SCRATCH: std::cell::RefCell<AccountState> =
        std::cell::RefCell::new(AccountState::new(crate::ids::AccountId(0)));
}

/// [`check_by_apply`] on an empty `scratch` state.
#[cfg(debug_assertions)]
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
                if !scratch.ops.contains_key(op) {
                    scratch.ops.insert(*op, record.clone());
                }
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
