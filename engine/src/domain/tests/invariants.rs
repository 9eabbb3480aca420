//! The ledger invariants hold in release builds: a decision that would make a
//! balance, a hold or money in flight negative, or close an operation that is not
//! open, is refused (`LEDGER_INVARIANT`), raises an alert and freezes the account,
//! and nothing of it is applied. Pinned on corrupted states (the only way a
//! correct `decide` can get there) and by a property over random corruptions.

use proptest::prelude::*;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

use super::*;
use crate::domain::event::EventBody;
use crate::domain::fraud::FraudRule;
use crate::domain::invariants;
use crate::domain::state::{AccountStatus, OpRecord, TransferStatus, WithdrawalStatus};
use crate::ids::{OpId, TransferId};

fn p() -> Policy {
    Policy::default()
}

/// A tier-1 account with 1,000.00 and a withdrawal of 400.00 processing.
fn with_open_withdrawal() -> (AccountState, u64) {
    let mut s = funded(1, 1, dec!(1000), T0);
    run(
        &p(),
        &mut s,
        &withdraw("w", dec!(400), WithdrawalMethod::BankCard),
        T0,
    )
    .unwrap();
    let n = *s.ops.keys().last().unwrap();
    (s, n)
}

fn settle(n: u64) -> Command {
    Command::SettleWithdrawal {
        id: OpId {
            account: AccountId(1),
            n,
        },
    }
}

#[test]
fn a_settlement_that_would_make_the_hold_negative_fails_stop() {
    let (mut s, n) = with_open_withdrawal();
    // Corrupted: the hold is gone (a bug elsewhere, a bad restore).
    s.books[0].held = Decimal::ZERO;
    let before = s.books.clone();
    let events = run(&p(), &mut s, &settle(n), T0).unwrap();
    assert!(matches!(
        events.last().unwrap().body,
        EventBody::Refused {
            rejection: Rejection::LedgerInvariant
        }
    ));
    assert_eq!(s.books, before, "nothing moved");
    assert_eq!(s.status, AccountStatus::Frozen);
    assert!(s
        .alerts
        .iter()
        .any(|a| a.rule == FraudRule::LedgerInvariant));
    assert!(matches!(
        s.ops.get(&n),
        Some(OpRecord::Withdrawal {
            status: WithdrawalStatus::Processing,
            ..
        })
    ));
    // Frozen: the next attempt is refused by the status, still without moving money.
    assert_eq!(
        decide(
            &p(),
            &s,
            &withdraw("w9", dec!(10), WithdrawalMethod::BankCard),
            T0
        ),
        Err(Rejection::AccountFrozen)
    );
}

fn with_open_withdrawal_corrupted() -> AccountState {
    let (mut s, _) = with_open_withdrawal();
    s.books[0].held = Decimal::ZERO;
    s
}

#[test]
fn closing_an_operation_that_is_not_open_fails_stop() {
    let (s, n) = with_open_withdrawal();
    let events = vec![Event {
        at: T0,
        body: EventBody::TransferCompleted { op: n },
    }];
    assert!(invariants::check_events(&s, &events).is_err());
    let events = vec![Event {
        at: T0,
        body: EventBody::WithdrawalSettled { op: n + 100 },
    }];
    assert!(invariants::check_events(&s, &events).is_err());
    let fine = vec![Event {
        at: T0,
        body: EventBody::WithdrawalSettled { op: n },
    }];
    assert!(invariants::check_events(&s, &fine).is_ok());
}

#[test]
fn a_refusal_on_a_closed_account_does_not_reopen_it() {
    let mut s = with_open_withdrawal_corrupted();
    s.status = AccountStatus::Closed;
    let (_, n) = with_open_withdrawal();
    let events = decide(&p(), &s, &settle(n), T0).unwrap();
    assert!(!events
        .iter()
        .any(|e| matches!(e.body, EventBody::StatusChanged { .. })));
}

/// A corruption of one book field of an account with a withdrawal and a transfer
/// open.
#[derive(Debug, Clone)]
enum Corruption {
    Available(i64),
    Held(i64),
    InFlight(i64),
}

fn corruption() -> impl Strategy<Value = Corruption> {
    prop_oneof![
        (-50_000i64..200_000).prop_map(Corruption::Available),
        (-50_000i64..80_000).prop_map(Corruption::Held),
        (-50_000i64..80_000).prop_map(Corruption::InFlight),
    ]
}

proptest! {
    /// Whatever the books were corrupted to, no command leaves a negative
    /// balance, hold or in-flight amount behind: it is either applied with the
    /// invariants intact, or refused with `LEDGER_INVARIANT` and the account frozen.
    #[test]
    fn no_command_continues_past_a_broken_invariant(
        c in corruption(),
        which in 0usize..6,
    ) {
        let mut s = funded(1, 1, dec!(2000), T0);
        run(&p(), &mut s, &withdraw("w", dec!(400), WithdrawalMethod::BankCard), T0).unwrap();
        let w = *s.ops.keys().last().unwrap();
        run(&p(), &mut s, &transfer("t", 2, dec!(300)), T0).unwrap();
        let t = *s.ops.keys().last().unwrap();
        assert!(matches!(s.ops.get(&t), Some(OpRecord::Transfer { status: TransferStatus::InFlight, .. })));
        let b = &mut s.books[0];
        match c {
            Corruption::Available(v) => b.available = Decimal::new(v, 2),
            Corruption::Held(v) => b.held = Decimal::new(v, 2),
            Corruption::InFlight(v) => b.in_flight_out = Decimal::new(v, 2),
        }
        let tid = TransferId { account: AccountId(1), n: t };
        let cmd = match which {
            0 => settle(w),
            1 => Command::FailWithdrawal { id: OpId { account: AccountId(1), n: w }, reason: "x".into() },
            2 => Command::CompleteTransfer { transfer: tid },
            3 => Command::ReverseTransfer { transfer: tid, reason: Rejection::RecipientUnavailable },
            4 => withdraw("w2", dec!(100), WithdrawalMethod::BankCard),
            _ => transfer("t2", 2, dec!(100)),
        };
        let before = s.books.clone();
        let Ok(events) = decide(&p(), &s, &cmd, T0) else {
            return Ok(());
        };
        for e in &events {
            apply(&mut s, e);
        }
        let fail_stop = matches!(
            events.last().map(|e| &e.body),
            Some(EventBody::Refused { rejection: Rejection::LedgerInvariant })
        );
        if fail_stop {
            prop_assert_eq!(&s.books, &before, "nothing moved");
            prop_assert_eq!(s.status, AccountStatus::Frozen);
        } else if s.books != before {
            // Money moved: never into a broken ledger.
            prop_assert!(invariants::check_books(&s).is_ok(), "{:?}", s.books);
        }
    }
}

#[test]
fn a_reset_scratch_state_is_a_fresh_one() {
    // The invariant check reuses one scratch state per thread: after a reset it
    // must hold nothing of the account it checked before.
    let (mut s, _) = with_open_withdrawal();
    run(&p(), &mut s, &transfer("t", 2, dec!(10)), T0).unwrap();
    assert_ne!(s, AccountState::new(AccountId(9)));
    s.reset_to(AccountId(9));
    assert_eq!(s, AccountState::new(AccountId(9)));
}

#[test]
fn checks_in_a_row_do_not_leak_into_each_other() {
    // A settlement checked on one thread right after another account's: the
    // second must see its own books only.
    let (a, n) = with_open_withdrawal();
    let (mut b, m) = with_open_withdrawal();
    b.books[0].held = Decimal::ZERO;
    let settle_a = invariants::check_events(&a, &[settle_event(n)]);
    let settle_b = invariants::check_events(&b, &[settle_event(m)]);
    assert_eq!(settle_a, Ok(()));
    assert!(settle_b.is_err(), "{settle_b:?}");
    assert_eq!(invariants::check_events(&a, &[settle_event(n)]), Ok(()));
}

fn settle_event(op: u64) -> crate::domain::Event {
    crate::domain::Event {
        at: T0,
        body: EventBody::WithdrawalSettled { op },
    }
}
