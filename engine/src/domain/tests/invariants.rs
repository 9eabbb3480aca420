//! The ledger invariants hold in release builds: a decision that would make a
//! balance, a hold or money in flight negative, or close an operation that is not
//! open, is refused (`LEDGER_INVARIANT`), raises an alert and freezes the account,
//! and nothing of it is applied. Pinned on corrupted states (the only way a
//! correct `decide` can get there) and by a property over random corruptions.

use proptest::prelude::*;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

use super::*;
use crate::domain::event::{EventBody, RequestRef};
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

#[test]
fn the_books_check_agrees_with_apply_on_every_money_event() {
    // Release builds work the books out without `apply`; debug builds (this
    // test) also run every check through `apply` and assert the same verdict
    // and the same books. Here each money event kind, alone and in shapes
    // `decide` never produces, with the verdict each must get.
    let mut s = funded(1, 1, dec!(2000), T0);
    run(
        &p(),
        &mut s,
        &withdraw("w", dec!(400), WithdrawalMethod::BankCard),
        T0,
    )
    .unwrap();
    let w = *s.ops.keys().last().unwrap();
    run(&p(), &mut s, &transfer("t", 2, dec!(300)), T0).unwrap();
    let t = *s.ops.keys().last().unwrap();
    let deposit = *s.ops.keys().next().unwrap();
    let at = |body| Event { at: T0, body };
    let request = RequestRef {
        key: key("r"),
        fingerprint: 7,
    };
    let next = s.next_op;
    let debit = |op, value| {
        at(EventBody::TransferDebited {
            op,
            request: request.clone(),
            to: AccountId(2),
            amount: cny_amount(value),
            fee: Decimal::ZERO,
            memo: None,
            new_recipient: false,
        })
    };
    let cases: Vec<(Vec<Event>, bool)> = vec![
        (
            vec![at(EventBody::Deposited {
                op: next,
                request: request.clone(),
                amount: cny_amount(dec!(50)),
                fee: dec!(0.50),
                method: DepositMethod::BankCard,
                card: "4111".into(),
            })],
            true,
        ),
        (
            vec![at(EventBody::WithdrawalRequested {
                op: next,
                request: request.clone(),
                amount: cny_amount(dec!(5000)),
                fee: dec!(1),
                method: WithdrawalMethod::BankCard,
                destination: s_destination(&s, w),
            })],
            false,
        ),
        (vec![at(EventBody::WithdrawalSettled { op: w })], true),
        (
            vec![at(EventBody::WithdrawalFailed {
                op: w,
                reason: "x".into(),
            })],
            true,
        ),
        // Settled twice in one decision: the second closes nothing open.
        (
            vec![
                at(EventBody::WithdrawalSettled { op: w }),
                at(EventBody::WithdrawalSettled { op: w }),
            ],
            false,
        ),
        (vec![debit(next, dec!(100))], true),
        (vec![debit(next, dec!(99999))], false),
        // Debited and completed in one decision: the completion closes the
        // operation the debit opened.
        (
            vec![
                debit(next, dec!(100)),
                at(EventBody::TransferCompleted { op: next }),
            ],
            true,
        ),
        (vec![at(EventBody::TransferCompleted { op: t })], true),
        (
            vec![at(EventBody::TransferReversed {
                op: t,
                reason: Rejection::RecipientUnavailable,
            })],
            true,
        ),
        (vec![at(EventBody::TransferCompleted { op: w })], false),
        (
            vec![at(EventBody::TransferCompleted { op: deposit })],
            false,
        ),
        // A credit in a currency the account has no book of yet.
        (
            vec![at(EventBody::TransferCredited {
                transfer: TransferId {
                    account: AccountId(3),
                    n: 1,
                },
                from: AccountId(3),
                amount: Amount::new(dec!(1.25), usd()).unwrap(),
                memo: None,
            })],
            true,
        ),
        (
            vec![at(EventBody::CreditAccepted {
                transfer: TransferId {
                    account: AccountId(3),
                    n: 2,
                },
                from: AccountId(3),
                amount: cny_amount(dec!(3)),
                memo: None,
                debit_lsn: 9,
            })],
            true,
        ),
    ];
    for (events, holds) in cases {
        let verdict = invariants::check_events(&s, &events);
        assert_eq!(verdict.is_ok(), holds, "{events:?}: {verdict:?}");
    }
}

/// The payout destination of withdrawal `n` of `s`.
fn s_destination(s: &AccountState, n: u64) -> crate::domain::PayoutDestination {
    match s.ops.get(&n) {
        Some(OpRecord::Withdrawal { destination, .. }) => destination.clone(),
        other => panic!("not a withdrawal: {other:?}"),
    }
}
