//! One test per business rule of `decide`/`apply`, written against the policy
//! defaults of API.md: every `Rejection` variant `decide` can return, the order in
//! which checks apply where it matters, fees and their rounding, limits and their
//! UTC-day window, the fraud rules (velocity edge-triggering, fan-out freezing,
//! step-up), the saga's steps and their idempotence, and what `apply` leaves in the
//! books and the notification stream. Expected values are computed by hand in the
//! comments next to them.

use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::json;

use super::*;
use crate::domain::command::{Command, DepositMethod, WithdrawalMethod};
use crate::domain::decide;
use crate::domain::event::{Event, EventBody};
use crate::domain::fraud::{FraudAction, FraudRule};
use crate::domain::notification::NotificationKind;
use crate::domain::rejection::Rejection;
use crate::domain::state::{
    AccountState, AccountStatus, Book, TransferStatus, WithdrawalStatus, NOTIFICATIONS_RETAINED,
};
use crate::ids::{AccountId, OpId, OpKind};
use crate::policy::Policy;
use crate::time::Timestamp;

fn p() -> Policy {
    Policy::default()
}

fn book(s: &AccountState) -> &Book {
    s.book(cny()).expect("the account has a CNY book")
}

/// The operation number minted by a decision that started one operation.
fn minted(events: &[Event]) -> u64 {
    let ops: Vec<u64> = events.iter().filter_map(|e| e.body.minted_op()).collect();
    assert_eq!(ops.len(), 1, "expected exactly one minted op in {events:?}");
    ops[0]
}

fn op_id(s: &AccountState, n: u64) -> OpId {
    OpId { account: s.id, n }
}

fn at(ms: i64) -> Timestamp {
    T0.plus_ms(ms)
}

fn set_status(to: AccountStatus) -> Command {
    Command::SetStatus {
        to,
        reason: "test".into(),
    }
}

/// Sends a debit of `value` from `src` to `dst` and drives the saga to completion.
fn full_transfer(
    src: &mut AccountState,
    dst: &mut AccountState,
    k: &str,
    value: Decimal,
    now: Timestamp,
) -> OpId {
    let debit = run(&p(), src, &transfer(k, dst.id.0, value), now).unwrap();
    let id = op_id(src, minted(&debit));
    let credit = Command::Credit {
        transfer: id,
        from: src.id,
        amount: cny_amount(value),
        memo: None,
        debit_lsn: 1,
    };
    assert_eq!(run(&p(), dst, &credit, now).unwrap().len(), 1);
    let done = run(&p(), src, &Command::CompleteTransfer { transfer: id }, now).unwrap();
    assert_eq!(done.len(), 1);
    id
}

// ---------------------------------------------------------------- existence

#[test]
fn open_creates_the_account_once() {
    let mut s = AccountState::new(AccountId(1));
    let events = run(
        &p(),
        &mut s,
        &Command::Open {
            password_hash: String::new(),
            profile: Default::default(),
        },
        T0,
    )
    .unwrap();
    assert!(matches!(events[..], [Event { at, body: EventBody::Opened { .. } }] if at == T0));
    assert!(s.opened);
    assert_eq!(s.opened_at, Some(T0));
    assert_eq!(s.status, AccountStatus::Active);
    let again = Command::Open {
        password_hash: String::new(),
        profile: Default::default(),
    };
    assert_eq!(decide(&p(), &s, &again, T0), Err(Rejection::AlreadyExists));
}

#[test]
fn commands_to_an_unopened_account_are_not_found() {
    let s = AccountState::new(AccountId(1));
    let cmds = [
        deposit("k", dec!(10), DepositMethod::BankCard),
        withdraw("k", dec!(10), WithdrawalMethod::BankCard),
        transfer("k", 2, dec!(10)),
        set_status(AccountStatus::Frozen),
        Command::SetKycTier { tier: 1 },
        Command::CompleteTransfer {
            transfer: op_id(&s, 1),
        },
    ];
    for cmd in &cmds {
        assert_eq!(
            decide(&p(), &s, cmd, T0),
            Err(Rejection::AccountNotFound),
            "{cmd:?}"
        );
    }
}

#[test]
fn credit_to_an_unopened_account_is_recipient_not_found() {
    let s = AccountState::new(AccountId(2));
    let credit = Command::Credit {
        transfer: OpId {
            account: AccountId(1),
            n: 1,
        },
        from: AccountId(1),
        amount: cny_amount(dec!(5)),
        memo: None,
        debit_lsn: 1,
    };
    assert_eq!(
        decide(&p(), &s, &credit, T0),
        Err(Rejection::RecipientNotFound)
    );
}

// ---------------------------------------------------------------- idempotency

#[test]
fn same_key_same_command_replays_without_effect() {
    let mut s = opened(1, T0);
    let cmd = deposit("dep-1", dec!(100), DepositMethod::BankCard);
    assert_eq!(run(&p(), &mut s, &cmd, T0).unwrap().len(), 1);
    let before = s.clone();
    assert_eq!(run(&p(), &mut s, &cmd, at(5 * MINUTE_MS)), Ok(vec![]));
    assert_eq!(s, before);
    assert_eq!(book(&s).available, dec!(100));
}

#[test]
fn same_key_different_amount_or_recipient_is_a_conflict() {
    let mut s = funded(1, 0, dec!(300), T0);
    // Deposit key reused with another amount, or another method.
    run(
        &p(),
        &mut s,
        &deposit("d", dec!(10), DepositMethod::BankCard),
        T0,
    )
    .unwrap();
    for other in [
        deposit("d", dec!(11), DepositMethod::BankCard),
        deposit("d", dec!(10), DepositMethod::CreditCard),
    ] {
        assert_eq!(
            decide(&p(), &s, &other, T0),
            Err(Rejection::IdempotencyConflict)
        );
    }
    // Transfer key reused with another amount, another recipient, another memo, or
    // for another kind of command altogether.
    run(&p(), &mut s, &transfer("t", 2, dec!(20)), T0).unwrap();
    let mut other_memo = transfer("t", 2, dec!(20));
    if let Command::Transfer { memo, .. } = &mut other_memo {
        *memo = Some("lunch".into());
    }
    for other in [
        transfer("t", 2, dec!(21)),
        transfer("t", 3, dec!(20)),
        other_memo,
        deposit("t", dec!(20), DepositMethod::BankCard),
    ] {
        assert_eq!(
            decide(&p(), &s, &other, T0),
            Err(Rejection::IdempotencyConflict),
            "{other:?}"
        );
    }
    // Step-up is not part of the request: a confirmed retry is a replay.
    assert_eq!(
        decide(&p(), &s, &verified(transfer("t", 2, dec!(20))), T0),
        Ok(vec![])
    );
}

#[test]
fn a_key_past_its_retention_is_new() {
    let mut s = opened(1, T0);
    let cmd = deposit("d", dec!(10), DepositMethod::BankCard);
    run(&p(), &mut s, &cmd, T0).unwrap();
    let retention_ms = i64::from(p().idempotency_retention_s) * 1000;
    assert_eq!(retention_ms, DAY_MS);
    // Still remembered one millisecond before the retention ends...
    assert_eq!(decide(&p(), &s, &cmd, at(retention_ms - 1)), Ok(vec![]));
    let conflicting = deposit("d", dec!(12), DepositMethod::BankCard);
    assert_eq!(
        decide(&p(), &s, &conflicting, at(retention_ms - 1)),
        Err(Rejection::IdempotencyConflict)
    );
    // ...and a new request once it has passed, conflicting body or not.
    let events = run(&p(), &mut s, &cmd, at(retention_ms)).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(book(&s).available, dec!(20));
    assert_eq!(s.idempotency[&key("d")].at, at(retention_ms));
}

#[test]
fn a_refused_request_does_not_burn_its_key() {
    let mut s = funded(1, 1, dec!(5000), T0);
    let cmd = transfer("big", 2, dec!(1000));
    assert_eq!(
        run(&p(), &mut s, &cmd, T0),
        Err(Rejection::ChallengeRequired)
    );
    assert!(!s.idempotency.contains_key(&key("big")));
    // After step-up the same key executes; the unverified retry then replays.
    assert_eq!(
        run(&p(), &mut s, &verified(cmd.clone()), T0).unwrap().len(),
        1
    );
    assert_eq!(decide(&p(), &s, &cmd, T0), Ok(vec![]));
    assert_eq!(book(&s).available, dec!(4000));
}

// ---------------------------------------------------------------- transfers: who may send

#[test]
fn transfer_to_oneself_is_refused() {
    let s = funded(1, 0, dec!(100), T0);
    assert_eq!(
        decide(&p(), &s, &transfer("t", 1, dec!(10)), T0),
        Err(Rejection::SameAccount)
    );
    let credit = Command::Credit {
        transfer: op_id(&s, 9),
        from: s.id,
        amount: cny_amount(dec!(1)),
        memo: None,
        debit_lsn: 1,
    };
    assert_eq!(
        credit_refusal(&p(), &s, &credit),
        Some(Rejection::SameAccount)
    );
}

/// The rejection `credit` is refused with on `s` at T0: recorded in a
/// `CreditRefused` event (so a duplicate is refused alike), or without a record
/// for an account that does not exist. `None` when it is credited.
fn credit_refusal(policy: &Policy, s: &AccountState, credit: &Command) -> Option<Rejection> {
    match decide(policy, s, credit, T0) {
        Err(r) => Some(r),
        Ok(events) => match events.as_slice() {
            [Event {
                body: EventBody::CreditRefused { reason, .. },
                ..
            }] => Some(*reason),
            [Event {
                body: EventBody::CreditAccepted { .. },
                ..
            }] => None,
            other => panic!("a credit decided {other:?}"),
        },
    }
}

#[test]
fn status_refuses_outgoing_money_from_frozen_and_restricted() {
    let cases = [
        (AccountStatus::Frozen, Some(Rejection::AccountFrozen)),
        (
            AccountStatus::Restricted,
            Some(Rejection::AccountRestricted),
        ),
        (AccountStatus::Active, None),
    ];
    for (status, expected) in cases {
        let mut s = funded(1, 1, dec!(100), T0);
        run(&p(), &mut s, &set_status(status), T0).unwrap();
        assert_eq!(s.status, status);
        for cmd in [
            transfer("t", 2, dec!(10)),
            withdraw("w", dec!(10), WithdrawalMethod::ThirdParty),
        ] {
            let got = decide(&p(), &s, &cmd, T0);
            match expected {
                Some(r) => assert_eq!(got, Err(r), "{status:?} {cmd:?}"),
                None => assert_eq!(got.map(|e| e.len()), Ok(1), "{status:?} {cmd:?}"),
            }
        }
        // Every status except Closed may still receive.
        let deposit = deposit("d", dec!(1), DepositMethod::BankCard);
        assert_eq!(decide(&p(), &s, &deposit, T0).map(|e| e.len()), Ok(1));
    }
}

#[test]
fn a_closed_account_neither_sends_nor_receives() {
    let mut s = opened(1, T0);
    run(&p(), &mut s, &Command::SetKycTier { tier: 1 }, T0).unwrap();
    run(&p(), &mut s, &set_status(AccountStatus::Closed), T0).unwrap();
    for cmd in [
        transfer("t", 2, dec!(10)),
        withdraw("w", dec!(10), WithdrawalMethod::BankCard),
        deposit("d", dec!(10), DepositMethod::BankCard),
    ] {
        assert_eq!(
            decide(&p(), &s, &cmd, T0),
            Err(Rejection::AccountClosed),
            "{cmd:?}"
        );
    }
    let credit = Command::Credit {
        transfer: OpId {
            account: AccountId(2),
            n: 1,
        },
        from: AccountId(2),
        amount: cny_amount(dec!(1)),
        memo: None,
        debit_lsn: 1,
    };
    assert_eq!(
        credit_refusal(&p(), &s, &credit),
        Some(Rejection::RecipientUnavailable)
    );
}

#[test]
fn tier_zero_withdrawals_need_kyc() {
    let mut s = funded(1, 0, dec!(100), T0);
    let w = withdraw("w", dec!(10), WithdrawalMethod::BankCard);
    assert_eq!(decide(&p(), &s, &w, T0), Err(Rejection::KycRequired));
    run(&p(), &mut s, &Command::SetKycTier { tier: 1 }, T0).unwrap();
    assert_eq!(decide(&p(), &s, &w, T0).map(|e| e.len()), Ok(1));
}

// ---------------------------------------------------------------- limits

#[test]
fn tier_zero_single_and_daily_limits() {
    let mut s = funded(1, 0, dec!(2000), T0);
    assert_eq!(
        decide(&lp(), &s, &transfer("a", 2, dec!(500.01)), T0),
        Err(Rejection::LimitExceeded)
    );
    run(&lp(), &mut s, &transfer("b", 2, dec!(500)), T0).unwrap();
    run(&lp(), &mut s, &transfer("c", 2, dec!(499.99)), at(1000)).unwrap();
    // 999.99 used today: one more cent reaches 1,000.00 exactly, two cents exceed it.
    assert_eq!(
        decide(&lp(), &s, &transfer("d", 2, dec!(0.02)), at(2000)),
        Err(Rejection::LimitExceeded)
    );
    run(&lp(), &mut s, &transfer("e", 2, dec!(0.01)), at(2000)).unwrap();
    assert_eq!(s.daily.used_on(T0.utc_day(), cny()), dec!(1000));
}

#[test]
fn tier_one_single_and_daily_limits() {
    let mut s = funded(1, 1, dec!(300000), T0);
    assert_eq!(
        decide(&lp(), &s, &verified(transfer("a", 2, dec!(50000.01))), T0),
        Err(Rejection::LimitExceeded)
    );
    // A minute apart: the velocity-by-sum rule (100,000 a minute) is not what
    // this test is about.
    for i in 0..4 {
        let cmd = verified(transfer(&format!("t{i}"), 2, dec!(50000)));
        run(&lp(), &mut s, &cmd, at(i * 61_000)).unwrap();
    }
    // 200,000.00 used: the daily maximum is reached exactly.
    assert_eq!(
        decide(&lp(), &s, &transfer("x", 2, dec!(0.01)), at(305000)),
        Err(Rejection::LimitExceeded)
    );
    // Withdrawals count towards the same daily limit.
    assert_eq!(
        decide(
            &lp(),
            &s,
            &withdraw("w", dec!(10), WithdrawalMethod::BankCard),
            at(305000)
        ),
        Err(Rejection::LimitExceeded)
    );
}

#[test]
fn the_daily_window_resets_at_utc_midnight() {
    let mut s = funded(1, 0, dec!(3000), T0);
    run(&lp(), &mut s, &transfer("a", 2, dec!(500)), T0).unwrap();
    run(&lp(), &mut s, &transfer("b", 2, dec!(500)), at(1000)).unwrap();
    let midnight = T0.next_utc_midnight();
    assert_eq!(midnight.millis() - T0.millis(), 14 * HOUR_MS);
    let last_ms = Timestamp(midnight.millis() - 1);
    assert_eq!(
        decide(&lp(), &s, &transfer("c", 2, dec!(0.01)), last_ms),
        Err(Rejection::LimitExceeded)
    );
    // At 00:00:00.000 UTC the new day has its full limit.
    run(&lp(), &mut s, &transfer("c", 2, dec!(500)), midnight).unwrap();
    run(
        &lp(),
        &mut s,
        &transfer("d", 2, dec!(500)),
        midnight.plus_ms(1000),
    )
    .unwrap();
    assert_eq!(
        decide(
            &lp(),
            &s,
            &transfer("e", 2, dec!(0.01)),
            midnight.plus_ms(2000)
        ),
        Err(Rejection::LimitExceeded)
    );
}

#[test]
fn a_reversed_transfer_gives_back_its_daily_usage_on_the_same_day_only() {
    let mut s = funded(1, 0, dec!(3000), T0);
    run(&lp(), &mut s, &transfer("a", 2, dec!(500)), T0).unwrap();
    let second = run(&lp(), &mut s, &transfer("b", 3, dec!(500)), T0).unwrap();
    assert_eq!(
        decide(&lp(), &s, &transfer("c", 2, dec!(1)), T0),
        Err(Rejection::LimitExceeded)
    );
    let reverse = Command::ReverseTransfer {
        transfer: op_id(&s, minted(&second)),
        reason: Rejection::RecipientNotFound,
    };
    run(&lp(), &mut s, &reverse, at(1000)).unwrap();
    assert_eq!(s.daily.used_on(T0.utc_day(), cny()), dec!(500));
    run(&lp(), &mut s, &transfer("c", 2, dec!(500)), at(2000)).unwrap();

    // A transfer debited yesterday and reversed today does not lower today's usage.
    let day2 = T0.next_utc_midnight();
    let mut y = funded(5, 0, dec!(3000), T0);
    let debit = run(&lp(), &mut y, &transfer("y", 2, dec!(300)), T0).unwrap();
    run(&lp(), &mut y, &transfer("z", 2, dec!(200)), day2).unwrap();
    let rev = Command::ReverseTransfer {
        transfer: op_id(&y, minted(&debit)),
        reason: Rejection::RecipientUnavailable,
    };
    run(&lp(), &mut y, &rev, day2.plus_ms(1000)).unwrap();
    assert_eq!(y.daily.used_on(day2.utc_day(), cny()), dec!(200));
}

#[test]
fn a_failed_withdrawal_gives_back_its_daily_usage() {
    let mut s = funded(1, 1, dec!(250000), T0);
    let mut ids = Vec::new();
    // A minute apart: the velocity-by-sum rule (100,000 a minute) is not what
    // this test is about.
    for i in 0..4 {
        let cmd = verified(withdraw(
            &format!("w{i}"),
            dec!(50000),
            WithdrawalMethod::BankCard,
        ));
        ids.push(minted(&run(&lp(), &mut s, &cmd, at(i * 61_000)).unwrap()));
    }
    assert_eq!(
        decide(
            &lp(),
            &s,
            &withdraw("x", dec!(0.01), WithdrawalMethod::BankCard),
            at(305000)
        ),
        Err(Rejection::LimitExceeded)
    );
    let fail = Command::FailWithdrawal {
        id: op_id(&s, ids[0]),
        reason: "card expired".into(),
    };
    run(&lp(), &mut s, &fail, at(366000)).unwrap();
    assert_eq!(s.daily.used_on(T0.utc_day(), cny()), dec!(150000));
    // A settled one keeps counting.
    let settle = Command::SettleWithdrawal {
        id: op_id(&s, ids[1]),
    };
    run(&lp(), &mut s, &settle, at(427000)).unwrap();
    assert_eq!(s.daily.used_on(T0.utc_day(), cny()), dec!(150000));
    let again = verified(withdraw("w9", dec!(50000), WithdrawalMethod::BankCard));
    // A minute later, past the velocity-by-sum window.
    assert_eq!(
        run(&lp(), &mut s, &again, at(4148000)).map(|e| e.len()),
        Ok(1)
    );
}

#[test]
fn balance_cap_refuses_deposits_with_limit_and_credits_with_recipient_unavailable() {
    let mut policy = p();
    policy.tier0.balance_max = Some(dec!(100));
    let mut s = opened(2, T0);
    run(
        &policy,
        &mut s,
        &deposit("a", dec!(80), DepositMethod::BankCard),
        T0,
    )
    .unwrap();
    assert_eq!(
        decide(
            &policy,
            &s,
            &deposit("b", dec!(20.01), DepositMethod::BankCard),
            T0
        ),
        Err(Rejection::LimitExceeded)
    );
    // The cap is on what lands: 20.51 by credit card nets 20.51 - 0.51 = 20.00.
    assert_eq!(
        decide(
            &policy,
            &s,
            &deposit("c", dec!(20.51), DepositMethod::CreditCard),
            T0
        )
        .map(|e| e.len()),
        Ok(1)
    );
    let credit = |value| Command::Credit {
        transfer: OpId {
            account: AccountId(1),
            n: 7,
        },
        from: AccountId(1),
        amount: cny_amount(value),
        memo: None,
        debit_lsn: 1,
    };
    assert_eq!(
        credit_refusal(&policy, &s, &credit(dec!(20.01))),
        Some(Rejection::RecipientUnavailable)
    );
    run(&policy, &mut s, &credit(dec!(20)), T0).unwrap();
    assert_eq!(book(&s).total(), dec!(100));
}

// ---------------------------------------------------------------- funds and fees

#[test]
fn insufficient_funds_counts_the_fee() {
    let mut policy = p();
    policy.transfer_fee = crate::money::FeeRule {
        percent: dec!(1),
        min: dec!(0),
    };
    let mut s = funded(1, 0, dec!(100), T0);
    // 100 + 1% = 101.00 > 100.00
    assert_eq!(
        decide(&policy, &s, &transfer("a", 2, dec!(100)), T0),
        Err(Rejection::InsufficientFunds)
    );
    // 99 + 0.99 = 99.99 <= 100.00
    let debit = run(&policy, &mut s, &transfer("b", 2, dec!(99)), T0).unwrap();
    assert!(matches!(
        &debit[0].body,
        EventBody::TransferDebited { fee, .. } if *fee == dec!(0.99)
    ));
    assert_eq!(book(&s).available, dec!(0.01));
    assert_eq!(book(&s).in_flight_out, dec!(99.99));
    // Completing earns the fee on the sender's book.
    let id = op_id(&s, minted(&debit));
    run(
        &policy,
        &mut s,
        &Command::CompleteTransfer { transfer: id },
        T0,
    )
    .unwrap();
    assert_eq!(book(&s).fees, dec!(0.99));
    assert_eq!(book(&s).in_flight_out, dec!(0));

    let mut w = funded(3, 1, dec!(100), T0);
    assert_eq!(
        decide(
            &p(),
            &w,
            &withdraw("w", dec!(100.01), WithdrawalMethod::BankCard),
            T0
        ),
        Err(Rejection::InsufficientFunds)
    );
    // A withdrawal's fee comes out of the amount: all of it can be withdrawn.
    let all = withdraw("w", dec!(100), WithdrawalMethod::BankCard);
    run(&p(), &mut w, &all, T0).unwrap();
    assert_eq!((book(&w).available, book(&w).held), (dec!(0), dec!(100)));
    assert_eq!(
        decide(&p(), &w, &transfer("t", 2, dec!(0.01)), T0),
        Err(Rejection::InsufficientFunds)
    );
}

#[test]
fn deposit_fees_by_method_round_half_up() {
    // (amount, method, fee): credit card 2.5 %, bank card free.
    let cases = [
        (dec!(100), DepositMethod::CreditCard, dec!(2.50)),
        (dec!(10.10), DepositMethod::CreditCard, dec!(0.25)), // 0.2525
        (dec!(10.30), DepositMethod::CreditCard, dec!(0.26)), // 0.2575
        (dec!(0.20), DepositMethod::CreditCard, dec!(0.01)),  // 0.005 -> up
        (dec!(0.19), DepositMethod::CreditCard, dec!(0.01)),  // 0.00475: at least 1 fen
        (dec!(1234.56), DepositMethod::BankCard, dec!(0)),
    ];
    for (value, method, fee) in cases {
        let mut s = opened(1, T0);
        let events = run(&p(), &mut s, &deposit("d", value, method), T0).unwrap();
        match &events[..] {
            [Event {
                body:
                    EventBody::Deposited {
                        fee: got, amount, ..
                    },
                ..
            }] => {
                assert_eq!(*got, fee, "{value} {method:?}");
                assert_eq!(amount.value(), value);
            }
            other => panic!("{other:?}"),
        }
        let b = book(&s);
        assert_eq!(b.available, value - fee);
        assert_eq!(b.deposited, value);
        assert_eq!(b.fees, fee);
        assert_eq!(b.held, dec!(0));
    }
}

#[test]
fn withdrawal_fees_by_method_with_minimum_and_payout() {
    // (amount, method, fee)
    let cases = [
        (dec!(5000), WithdrawalMethod::BankCard, dec!(5.00)), // 0.1 %
        (dec!(100), WithdrawalMethod::BankCard, dec!(1.00)),  // 0.10 -> min 1.00
        (dec!(1.01), WithdrawalMethod::BankCard, dec!(1.00)), // payout 0.01
        (dec!(1235), WithdrawalMethod::BankCard, dec!(1.24)), // 1.235 -> up
        (dec!(1234.5), WithdrawalMethod::BankCard, dec!(1.23)), // 1.2345
        (dec!(200), WithdrawalMethod::ThirdParty, dec!(1.00)), // 0.5 %
        (dec!(50), WithdrawalMethod::ThirdParty, dec!(0.50)), // 0.25 -> min 0.50
        (dec!(101), WithdrawalMethod::ThirdParty, dec!(0.51)), // 0.505 -> up
        (dec!(100.9), WithdrawalMethod::ThirdParty, dec!(0.50)), // 0.5045
    ];
    for (value, method, fee) in cases {
        let mut s = funded(1, 1, dec!(10000), T0);
        let cmd = verified(withdraw("w", value, method));
        let events = run(&p(), &mut s, &cmd, T0).unwrap();
        let n = minted(&events);
        match &events[0].body {
            EventBody::WithdrawalRequested { fee: got, .. } => {
                assert_eq!(*got, fee, "{value} {method:?}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(book(&s).available, dec!(10000) - value);
        assert_eq!(book(&s).held, value);
        match crate::domain::view::op_view(&s, n) {
            Some(crate::domain::view::Outcome::Withdrawal(v)) => {
                assert_eq!((v.fee, v.payout), (fee, value - fee))
            }
            other => panic!("{other:?}"),
        }
        let settle = Command::SettleWithdrawal { id: op_id(&s, n) };
        run(&p(), &mut s, &settle, T0).unwrap();
        let b = book(&s);
        assert_eq!(b.held, dec!(0));
        assert_eq!(b.fees, fee);
        assert_eq!(b.paid_out, value - fee);
    }
}

#[test]
fn withdrawals_that_do_not_cover_their_fee_are_too_small() {
    let s = funded(1, 1, dec!(100), T0);
    for value in [dec!(0.50), dec!(1.00)] {
        assert_eq!(
            decide(
                &p(),
                &s,
                &withdraw("w", value, WithdrawalMethod::BankCard),
                T0
            ),
            Err(Rejection::AmountTooSmall),
            "{value}"
        );
    }
    // Third party's minimum is 0.50: 0.50 is too small, 0.51 pays out 0.01.
    assert_eq!(
        decide(
            &p(),
            &s,
            &withdraw("w", dec!(0.50), WithdrawalMethod::ThirdParty),
            T0
        ),
        Err(Rejection::AmountTooSmall)
    );
    assert!(decide(
        &p(),
        &s,
        &withdraw("w", dec!(0.51), WithdrawalMethod::ThirdParty),
        T0
    )
    .is_ok());
    // Deposits too, under a policy with a minimum deposit fee.
    let mut policy = p();
    policy.deposit_fees.bank_card.min = dec!(2);
    assert_eq!(
        decide(
            &policy,
            &s,
            &deposit("d", dec!(2), DepositMethod::BankCard),
            T0
        ),
        Err(Rejection::AmountTooSmall)
    );
}

// ---------------------------------------------------------------- fraud: step-up

#[test]
fn step_up_is_required_from_one_thousand() {
    let s = funded(1, 1, dec!(5000), T0);
    for cmd in [
        transfer("t", 2, dec!(1000)),
        withdraw("w", dec!(1000), WithdrawalMethod::BankCard),
    ] {
        assert_eq!(
            decide(&p(), &s, &cmd, T0),
            Err(Rejection::ChallengeRequired)
        );
        assert_eq!(
            decide(&p(), &s, &verified(cmd.clone()), T0).map(|e| e.len()),
            Ok(1)
        );
    }
    for cmd in [
        transfer("t", 2, dec!(999.99)),
        withdraw("w", dec!(999.99), WithdrawalMethod::BankCard),
    ] {
        assert_eq!(decide(&p(), &s, &cmd, T0).map(|e| e.len()), Ok(1));
    }
}

// ---------------------------------------------------------------- fraud: velocity

fn velocity_alerts(s: &AccountState) -> usize {
    s.notifications
        .iter()
        .filter(|n| {
            matches!(
                n.kind,
                NotificationKind::AlertRaised {
                    rule: FraudRule::VelocityCount | FraudRule::VelocitySum,
                    ..
                }
            )
        })
        .count()
}

#[test]
fn velocity_blocks_the_twenty_first_op_and_alerts_once_per_edge() {
    let mut s = funded(1, 1, dec!(1000), T0);
    // 20 outgoing ops in 19 s, transfers and withdrawals mixed.
    for i in 0..20 {
        let cmd = if i % 4 == 3 {
            withdraw(&format!("w{i}"), dec!(2), WithdrawalMethod::ThirdParty)
        } else {
            transfer(&format!("t{i}"), 2, dec!(1))
        };
        assert_eq!(
            run(&p(), &mut s, &cmd, at(i * SECOND_MS)).map(|e| e.len()),
            Ok(1),
            "op {i}"
        );
    }
    let available = book(&s).available;
    let next_op = s.next_op;
    // The 21st: one alert, and the refusal after it.
    let events = run(&p(), &mut s, &transfer("x", 2, dec!(1)), at(20 * SECOND_MS)).unwrap();
    match &events[..] {
        [Event {
            body:
                EventBody::AlertRaised {
                    op,
                    rule: FraudRule::VelocityCount,
                    action: FraudAction::Block,
                    ..
                },
            ..
        }, Event {
            body:
                EventBody::Refused {
                    rejection: Rejection::VelocityBlocked,
                },
            ..
        }] => assert_eq!(*op, next_op),
        other => panic!("{other:?}"),
    }
    assert!(s.raised.velocity);
    assert_eq!(velocity_alerts(&s), 1);
    assert_eq!(book(&s).available, available, "no money moved");
    assert!(!s.idempotency.contains_key(&key("x")));
    // Still true: refused without a second alert, withdrawals included.
    for cmd in [
        transfer("x", 2, dec!(1)),
        withdraw("y", dec!(2), WithdrawalMethod::ThirdParty),
    ] {
        assert_eq!(
            run(&p(), &mut s, &cmd, at(21 * SECOND_MS)),
            Err(Rejection::VelocityBlocked)
        );
    }
    // The op at T0 leaves the 60 s window at T0 + 60 s: one passes again, which
    // clears the edge...
    assert_eq!(
        run(&p(), &mut s, &transfer("x", 2, dec!(1)), at(60 * SECOND_MS)).map(|e| e.len()),
        Ok(1)
    );
    assert!(!s.raised.velocity);
    // ...so the next time the condition holds (ops at 1..19 s and 60 s = 20) it
    // alerts again.
    let events = run(&p(), &mut s, &transfer("z", 2, dec!(1)), at(60 * SECOND_MS)).unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(velocity_alerts(&s), 2);
}

#[test]
fn velocity_by_sum_when_configured() {
    let mut policy = p();
    policy.fraud.velocity_max_sum = Some(dec!(100));
    let mut s = funded(1, 1, dec!(1000), T0);
    run(&policy, &mut s, &transfer("a", 2, dec!(60)), T0).unwrap();
    run(&policy, &mut s, &transfer("b", 2, dec!(40)), at(1000)).unwrap();
    // 100 already within the window: another cent is above the maximum.
    let events = run(&policy, &mut s, &transfer("c", 2, dec!(0.01)), at(2000)).unwrap();
    assert!(matches!(
        &events[..],
        [
            Event {
                body: EventBody::AlertRaised {
                    rule: FraudRule::VelocitySum,
                    ..
                },
                ..
            },
            Event {
                body: EventBody::Refused {
                    rejection: Rejection::VelocityBlocked
                },
                ..
            }
        ]
    ));
    assert_eq!(
        run(&policy, &mut s, &transfer("c", 2, dec!(0.01)), at(3000)),
        Err(Rejection::VelocityBlocked)
    );
    // Without the by-sum rule the same state passes.
    assert_eq!(
        decide(&p(), &s, &transfer("c", 2, dec!(0.01)), at(3000)).map(|e| e.len()),
        Ok(1)
    );
    // Once the first leaves the window 60 more fit again.
    assert_eq!(
        run(&policy, &mut s, &transfer("d", 2, dec!(60)), at(60_000)).map(|e| e.len()),
        Ok(1)
    );
}

/// Issue 9: the by-sum rule is on by default and fires before the daily limit:
/// two of the verified tier's largest single transfers within a minute pass, a
/// third (still within the 200,000 daily limit) is blocked.
#[test]
fn velocity_by_sum_is_on_by_default_and_fires_before_the_daily_limit() {
    let policy = p();
    assert_eq!(policy.fraud.velocity_max_sum, Some(dec!(100000)));
    let mut s = funded(1, 1, dec!(200000), T0);
    run(
        &policy,
        &mut s,
        &verified(transfer("a", 2, dec!(50000))),
        T0,
    )
    .unwrap();
    run(
        &policy,
        &mut s,
        &verified(transfer("b", 2, dec!(50000))),
        at(1000),
    )
    .unwrap();
    let events = run(
        &policy,
        &mut s,
        &verified(transfer("c", 2, dec!(50000))),
        at(2000),
    )
    .unwrap();
    assert!(
        events.iter().any(|e| matches!(
            e.body,
            EventBody::Refused {
                rejection: Rejection::VelocityBlocked
            }
        )),
        "{events:?}"
    );
    assert_eq!(velocity_alerts(&s), 1);
}

// ---------------------------------------------------------------- fraud: fan-out

#[test]
fn fan_out_freezes_on_the_eleventh_new_recipient() {
    let mut s = funded(1, 1, dec!(1000), T0);
    for i in 0..10u64 {
        run(
            &p(),
            &mut s,
            &transfer(&format!("t{i}"), 100 + i, dec!(1)),
            at(i as i64 * 5000),
        )
        .unwrap();
    }
    // A recipient already paid is not new and does not count.
    run(&p(), &mut s, &transfer("known", 100, dec!(1)), at(50_000)).unwrap();
    let available = book(&s).available;
    let next_op = s.next_op;
    let seq = s.notification_seq;
    let events = run(&p(), &mut s, &transfer("new", 200, dec!(1)), at(55_000)).unwrap();
    match &events[..] {
        [Event {
            body:
                EventBody::AlertRaised {
                    op,
                    rule: FraudRule::FanOut,
                    action: FraudAction::Freeze,
                    ..
                },
            ..
        }, Event {
            body:
                EventBody::StatusChanged {
                    from: AccountStatus::Active,
                    to: AccountStatus::Frozen,
                    ..
                },
            ..
        }, Event {
            body:
                EventBody::Refused {
                    rejection: Rejection::AccountFrozen,
                },
            ..
        }] => assert_eq!(*op, next_op),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.status, AccountStatus::Frozen);
    assert_eq!(book(&s).available, available);
    assert!(!s.known_recipients.contains(&AccountId(200)));
    let kinds: Vec<&str> = s
        .notifications_after(seq)
        .map(|n| n.kind.type_name())
        .collect();
    assert_eq!(kinds, ["alert.raised", "account.status_changed"]);
    // Frozen: even known recipients are refused now.
    assert_eq!(
        decide(&p(), &s, &transfer("k2", 100, dec!(1)), at(56_000)),
        Err(Rejection::AccountFrozen)
    );
    // After review the window starts afresh: ten new ones pass, the 11th freezes.
    run(&p(), &mut s, &set_status(AccountStatus::Active), at(60_000)).unwrap();
    for i in 0..10u64 {
        let t = at(120_000 + i as i64 * 5000);
        run(
            &p(),
            &mut s,
            &transfer(&format!("u{i}"), 300 + i, dec!(1)),
            t,
        )
        .unwrap();
    }
    let events = run(&p(), &mut s, &transfer("v", 400, dec!(1)), at(180_000)).unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(s.status, AccountStatus::Frozen);
}

#[test]
fn fan_out_counts_only_new_recipients_within_ten_minutes() {
    let mut s = funded(1, 1, dec!(1000), T0);
    for i in 0..10u64 {
        run(
            &p(),
            &mut s,
            &transfer(&format!("t{i}"), 100 + i, dec!(1)),
            at(i as i64 * 5000),
        )
        .unwrap();
    }
    // The first new recipient (at T0) leaves the 600 s window at T0 + 600 s.
    assert_eq!(
        decide(&p(), &s, &transfer("a", 200, dec!(1)), at(600_000 - 1)).map(|e| e.len()),
        Ok(3)
    );
    assert_eq!(
        decide(&p(), &s, &transfer("a", 200, dec!(1)), at(600_000)).map(|e| e.len()),
        Ok(1)
    );
}

// ---------------------------------------------------------------- the saga

#[test]
fn a_transfer_saga_moves_money_exactly_once() {
    let mut a = funded(1, 0, dec!(100), T0);
    let mut b = opened(2, T0);
    let debit = run(&p(), &mut a, &transfer("t", 2, dec!(30)), T0).unwrap();
    let id = op_id(&a, minted(&debit));
    assert!(matches!(
        &debit[0].body,
        EventBody::TransferDebited {
            new_recipient: true,
            ..
        }
    ));
    assert_eq!(
        (book(&a).available, book(&a).in_flight_out),
        (dec!(70), dec!(30))
    );
    let credit = Command::Credit {
        transfer: id,
        from: a.id,
        amount: cny_amount(dec!(30)),
        memo: None,
        debit_lsn: 1,
    };
    assert_eq!(run(&p(), &mut b, &credit, T0).unwrap().len(), 1);
    // A re-drive of the credit is deduplicated by transfer id.
    assert_eq!(run(&p(), &mut b, &credit, at(1000)), Ok(vec![]));
    assert_eq!(book(&b).available, dec!(30));
    assert!(b.credited.contains_key(&id));
    let complete = Command::CompleteTransfer { transfer: id };
    assert_eq!(run(&p(), &mut a, &complete, T0).unwrap().len(), 1);
    assert_eq!(
        (book(&a).available, book(&a).in_flight_out),
        (dec!(70), dec!(0))
    );
    assert!(matches!(
        a.ops[&id.n],
        crate::domain::state::OpRecord::Transfer {
            status: TransferStatus::Completed,
            ..
        }
    ));
    // Completing again is a no-op; reversing a completed one is refused.
    assert_eq!(run(&p(), &mut a, &complete, T0), Ok(vec![]));
    let reverse = Command::ReverseTransfer {
        transfer: id,
        reason: Rejection::RecipientUnavailable,
    };
    assert_eq!(
        decide(&p(), &a, &reverse, T0),
        Err(Rejection::OperationClosed)
    );
    // Paying a known recipient is not new.
    let again = run(&p(), &mut a, &transfer("t2", 2, dec!(1)), T0).unwrap();
    assert!(matches!(
        &again[0].body,
        EventBody::TransferDebited {
            new_recipient: false,
            ..
        }
    ));
}

#[test]
fn a_refused_credit_reverses_the_transfer() {
    let mut a = funded(1, 0, dec!(100), T0);
    let mut closed = opened(2, T0);
    run(&p(), &mut closed, &set_status(AccountStatus::Closed), T0).unwrap();
    let debit = run(&p(), &mut a, &transfer("t", 2, dec!(40)), T0).unwrap();
    let id = op_id(&a, minted(&debit));
    let credit = Command::Credit {
        transfer: id,
        from: a.id,
        amount: cny_amount(dec!(40)),
        memo: None,
        debit_lsn: 1,
    };
    let refusal = credit_refusal(&p(), &closed, &credit).unwrap();
    assert_eq!(refusal, Rejection::RecipientUnavailable);
    // The refusal is remembered: a duplicate of the request (the source asking
    // again after a lost answer) is refused alike, without a second record.
    let events = run(&p(), &mut closed, &credit, T0).unwrap();
    assert!(matches!(
        events.as_slice(),
        [Event {
            body: EventBody::CreditRefused { .. },
            ..
        }]
    ));
    assert_eq!(
        decide(&p(), &closed, &credit, at(1000)),
        Err(Rejection::RecipientUnavailable)
    );
    assert!(!closed.credited[&id].accepted());
    assert!(
        crate::domain::view::AuditShare::of(&closed)
            .credited
            .is_empty(),
        "no money arrived"
    );
    let reverse = Command::ReverseTransfer {
        transfer: id,
        reason: refusal,
    };
    run(&p(), &mut a, &reverse, at(1000)).unwrap();
    assert_eq!(
        (book(&a).available, book(&a).in_flight_out),
        (dec!(100), dec!(0))
    );
    assert!(matches!(
        a.ops[&id.n],
        crate::domain::state::OpRecord::Transfer {
            status: TransferStatus::Reversed(Rejection::RecipientUnavailable),
            ..
        }
    ));
    assert_eq!(run(&p(), &mut a, &reverse, at(2000)), Ok(vec![]));
    assert_eq!(
        decide(&p(), &a, &Command::CompleteTransfer { transfer: id }, T0),
        Err(Rejection::OperationClosed)
    );
}

#[test]
fn saga_steps_for_unknown_operations_are_refused() {
    let mut a = funded(1, 1, dec!(100), T0);
    let w = run(
        &p(),
        &mut a,
        &withdraw("w", dec!(10), WithdrawalMethod::BankCard),
        T0,
    )
    .unwrap();
    let wd = minted(&w);
    let foreign = OpId {
        account: AccountId(9),
        n: wd,
    };
    let cmds = [
        Command::CompleteTransfer {
            transfer: op_id(&a, 999),
        },
        Command::ReverseTransfer {
            transfer: op_id(&a, 999),
            reason: Rejection::RecipientNotFound,
        },
        // A withdrawal's number is not a transfer.
        Command::CompleteTransfer {
            transfer: op_id(&a, wd),
        },
        Command::SettleWithdrawal { id: op_id(&a, 999) },
        Command::FailWithdrawal {
            id: op_id(&a, 999),
            reason: "x".into(),
        },
        // The right number on another account's id.
        Command::SettleWithdrawal { id: foreign },
        Command::FailWithdrawal {
            id: foreign,
            reason: "x".into(),
        },
    ];
    for cmd in &cmds {
        assert_eq!(
            decide(&p(), &a, cmd, T0),
            Err(Rejection::UnknownOperation),
            "{cmd:?}"
        );
    }
}

#[test]
fn withdrawals_settle_or_fail_once() {
    let mut a = funded(1, 1, dec!(100), T0);
    let w1 = minted(
        &run(
            &p(),
            &mut a,
            &withdraw("w1", dec!(40), WithdrawalMethod::BankCard),
            T0,
        )
        .unwrap(),
    );
    let w2 = minted(
        &run(
            &p(),
            &mut a,
            &withdraw("w2", dec!(50), WithdrawalMethod::ThirdParty),
            T0,
        )
        .unwrap(),
    );
    assert_eq!((book(&a).available, book(&a).held), (dec!(10), dec!(90)));
    let settle1 = Command::SettleWithdrawal { id: op_id(&a, w1) };
    let fail1 = Command::FailWithdrawal {
        id: op_id(&a, w1),
        reason: "bank said no".into(),
    };
    let settle2 = Command::SettleWithdrawal { id: op_id(&a, w2) };
    let fail2 = Command::FailWithdrawal {
        id: op_id(&a, w2),
        reason: "wallet closed".into(),
    };
    run(&p(), &mut a, &settle1, at(1000)).unwrap();
    // 40 paid out less its 1.00 minimum fee.
    assert_eq!(
        (book(&a).held, book(&a).paid_out, book(&a).fees),
        (dec!(50), dec!(39), dec!(1))
    );
    assert_eq!(run(&p(), &mut a, &settle1, at(2000)), Ok(vec![]));
    assert_eq!(
        decide(&p(), &a, &fail1, T0),
        Err(Rejection::OperationClosed)
    );
    run(&p(), &mut a, &fail2, at(3000)).unwrap();
    assert_eq!(
        (book(&a).available, book(&a).held, book(&a).fees),
        (dec!(60), dec!(0), dec!(1)),
        "a failed payout returns the held funds, and no fee"
    );
    assert_eq!(run(&p(), &mut a, &fail2, at(4000)), Ok(vec![]));
    assert_eq!(
        decide(&p(), &a, &settle2, T0),
        Err(Rejection::OperationClosed)
    );
    match crate::domain::view::op_view(&a, w2) {
        Some(crate::domain::view::Outcome::Withdrawal(v)) => assert_eq!(
            v.status,
            WithdrawalStatus::Failed {
                reason: "wallet closed".into()
            }
        ),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------- status and KYC

#[test]
fn closing_needs_an_empty_account_and_is_terminal() {
    let mut a = funded(1, 0, dec!(10), T0);
    let close = set_status(AccountStatus::Closed);
    assert_eq!(
        decide(&p(), &a, &close, T0),
        Err(Rejection::AccountNotEmpty)
    );
    // All money in flight: books are zero but an operation is open.
    let debit = run(&p(), &mut a, &transfer("t", 2, dec!(10)), T0).unwrap();
    assert_eq!(book(&a).total(), dec!(0));
    assert_eq!(
        decide(&p(), &a, &close, T0),
        Err(Rejection::AccountNotEmpty)
    );
    let complete = Command::CompleteTransfer {
        transfer: op_id(&a, minted(&debit)),
    };
    run(&p(), &mut a, &complete, T0).unwrap();
    let events = run(&p(), &mut a, &close, T0).unwrap();
    assert!(matches!(
        &events[..],
        [Event {
            body: EventBody::StatusChanged {
                from: AccountStatus::Active,
                to: AccountStatus::Closed,
                ..
            },
            ..
        }]
    ));
    for to in [
        AccountStatus::Active,
        AccountStatus::Frozen,
        AccountStatus::Closed,
    ] {
        assert_eq!(
            decide(&p(), &a, &set_status(to), T0),
            Err(Rejection::AccountClosed)
        );
    }
}

#[test]
fn status_changes_are_events_with_notifications() {
    let mut a = opened(1, T0);
    assert_eq!(
        run(&p(), &mut a, &set_status(AccountStatus::Active), T0),
        Ok(vec![])
    );
    run(&p(), &mut a, &set_status(AccountStatus::Restricted), T0).unwrap();
    assert_eq!(a.status, AccountStatus::Restricted);
    assert_eq!(a.status_reason.as_deref(), Some("test"));
    let n = a.notifications.back().unwrap();
    assert_eq!(n.kind.type_name(), "account.status_changed");
    assert_eq!(
        n.kind.data_json(),
        json!({"from": "active", "to": "restricted", "reason": "test"})
    );
}

#[test]
fn kyc_tier_changes_the_limits() {
    let mut a = funded(1, 0, dec!(2000), T0);
    assert_eq!(
        run(&p(), &mut a, &Command::SetKycTier { tier: 0 }, T0),
        Ok(vec![])
    );
    assert_eq!(
        decide(&p(), &a, &transfer("t", 2, dec!(600)), T0),
        Err(Rejection::LimitExceeded)
    );
    let events = run(&p(), &mut a, &Command::SetKycTier { tier: 1 }, T0).unwrap();
    assert!(matches!(
        events[..],
        [Event {
            body: EventBody::KycTierChanged { from: 0, to: 1 },
            ..
        }]
    ));
    assert_eq!(a.kyc_tier, 1);
    assert_eq!(
        decide(&p(), &a, &transfer("t", 2, dec!(600)), T0).map(|e| e.len()),
        Ok(1)
    );
    // And back down: the tier-0 limits apply again.
    run(&p(), &mut a, &Command::SetKycTier { tier: 0 }, T0).unwrap();
    assert_eq!(
        decide(&p(), &a, &transfer("t", 2, dec!(600)), T0),
        Err(Rejection::LimitExceeded)
    );
}

// ---------------------------------------------------------------- apply: notifications

#[test]
fn notifications_carry_the_api_fields_and_increasing_seq() {
    let mut a = opened(1, T0);
    let mut b = opened(2, T0);
    assert_eq!(a.notification_seq, 0, "opening is not user-visible");
    run(&p(), &mut a, &Command::SetKycTier { tier: 1 }, T0).unwrap();
    let dep = run(
        &p(),
        &mut a,
        &deposit("d", dec!(100), DepositMethod::CreditCard),
        T0,
    )
    .unwrap();
    let dep_id = op_id(&a, minted(&dep)).display(OpKind::Deposit);
    let got: Vec<_> = a
        .notifications
        .iter()
        .map(|n| (n.seq, n.kind.type_name(), n.kind.data_json()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                1,
                "balance.updated",
                json!({"currency": "CNY", "available": "97.50", "held": "0.00"})
            ),
            (
                2,
                "transaction.updated",
                json!({"id": dep_id, "type": "deposit", "status": "completed",
                       "amount": "100.00", "fee": "2.50", "currency": "CNY",
                       "direction": "in", "counterparty": null})
            ),
        ]
    );

    let w = run(
        &p(),
        &mut a,
        &withdraw("w", dec!(50), WithdrawalMethod::ThirdParty),
        at(1000),
    )
    .unwrap();
    let wd = op_id(&a, minted(&w));
    let last = a.notifications.back().unwrap();
    assert_eq!(last.seq, 4);
    assert_eq!(
        last.kind.data_json(),
        json!({"id": wd.display(OpKind::Withdrawal), "type": "withdrawal",
               "status": "processing", "amount": "50.00", "fee": "0.50",
               "currency": "CNY", "direction": "out", "counterparty": null})
    );
    assert_eq!(
        a.notifications[2].kind.data_json(),
        json!({"currency": "CNY", "available": "47.50", "held": "50.00"})
    );

    let tx = full_transfer(&mut a, &mut b, "t", dec!(7.5), at(2000));
    // a: balance.updated on debit, transaction.updated on completion.
    let tail: Vec<_> = a
        .notifications_after(4)
        .map(|n| (n.seq, n.kind.type_name()))
        .collect();
    assert_eq!(tail, [(5, "balance.updated"), (6, "transaction.updated")]);
    assert_eq!(
        a.notifications.back().unwrap().kind.data_json(),
        json!({"id": tx.display(OpKind::Transfer), "type": "transfer",
               "status": "completed", "amount": "7.50", "fee": "0.00",
               "currency": "CNY", "direction": "out",
               "counterparty": b.id.to_string()})
    );
    // b: its own seq, the credit seen from the receiving side.
    let b_got: Vec<_> = b
        .notifications
        .iter()
        .map(|n| (n.seq, n.kind.data_json()))
        .collect();
    assert_eq!(
        b_got,
        vec![
            (
                1,
                json!({"currency": "CNY", "available": "7.50", "held": "0.00"})
            ),
            (
                2,
                json!({"id": tx.display(OpKind::Transfer), "type": "transfer",
                       "status": "completed", "amount": "7.50", "fee": "0.00",
                       "currency": "CNY", "direction": "in",
                       "counterparty": a.id.to_string()})
            ),
        ]
    );
    let seqs: Vec<u64> = a.notifications.iter().map(|n| n.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
}

#[test]
fn at_most_256_notifications_are_retained() {
    let mut a = opened(1, T0);
    for i in 0..200 {
        let cmd = deposit(&format!("d{i}"), dec!(1), DepositMethod::BankCard);
        run(&p(), &mut a, &cmd, at(i)).unwrap();
    }
    // Two notifications per deposit.
    assert_eq!(a.notification_seq, 400);
    assert_eq!(a.notifications.len(), NOTIFICATIONS_RETAINED);
    assert_eq!(a.notifications.front().unwrap().seq, 400 - 256 + 1);
    assert_eq!(a.notifications.back().unwrap().seq, 400);
    assert_eq!(a.notifications_after(390).count(), 10);
    assert_eq!(a.notifications_after(0).count(), 256);
}

#[test]
fn a_usd_book_is_separate_from_cny() {
    let mut a = opened(1, T0);
    let usd_dep = Command::Deposit {
        card: String::new(),
        key: key("u"),
        amount: crate::money::Amount::new(dec!(10), usd()).unwrap(),
        method: DepositMethod::BankCard,
    };
    run(&p(), &mut a, &usd_dep, T0).unwrap();
    assert_eq!(a.available(usd()), dec!(10));
    assert_eq!(a.available(cny()), dec!(0));
    assert_eq!(
        decide(&p(), &a, &transfer("t", 2, dec!(1)), T0),
        Err(Rejection::InsufficientFunds)
    );
}

// ---------------------------------------------------------------- compaction

/// The defaults with a tier-1 daily limit of 60,000, so a busy account can sit
/// right under it.
/// The default policy without step-up (a challenge threshold out of reach), for
/// tests of the limits: the split-payment rule would otherwise ask for step-up
/// once a day's small operations reach 1,000.00, before the limits they check.
fn lp() -> Policy {
    let mut policy = p();
    policy.fraud.challenge_over = dec!(100000000);
    policy
}

fn compaction_policy() -> Policy {
    let mut policy = lp();
    policy.tier1.daily_out_max = dec!(60000);
    policy
}

/// Commands whose decision reads a part of the state `compact` trims.
fn rule_probes(a: &AccountState) -> Vec<Command> {
    vec![
        // Idempotency keys (replay, conflict, or new once forgotten).
        deposit("d0", dec!(10), DepositMethod::BankCard),
        deposit("d0", dec!(11), DepositMethod::BankCard),
        // Velocity (the 21st op), fan-out (the 11th new recipient), daily usage.
        transfer("probe-t", 2, dec!(1)),
        transfer("probe-new", 999, dec!(1)),
        verified(transfer("probe-big", 100, dec!(10000))),
        withdraw("probe-w", dec!(5), WithdrawalMethod::BankCard),
        // Credit dedupe.
        Command::Credit {
            transfer: OpId {
                account: AccountId(2),
                n: 2,
            },
            from: AccountId(2),
            amount: cny_amount(dec!(0.01)),
            memo: None,
            debit_lsn: 1,
        },
        set_status(AccountStatus::Closed),
        Command::SetKycTier { tier: a.kyc_tier },
    ]
}

/// Saga re-drives of operations that finished at the very start.
fn re_drive_probes(old_transfer: OpId, old_withdrawal: OpId) -> Vec<Command> {
    vec![
        Command::CompleteTransfer {
            transfer: old_transfer,
        },
        Command::ReverseTransfer {
            transfer: old_transfer,
            reason: Rejection::RecipientUnavailable,
        },
        Command::SettleWithdrawal { id: old_withdrawal },
        Command::FailWithdrawal {
            id: old_withdrawal,
            reason: "late".into(),
        },
    ]
}

/// An account with activity in every compacted collection, each at its rule's
/// edge (20 outgoing ops in 2 s, 10 new recipients, 50,019 of 60,000 used today),
/// and the ids of a completed transfer and a settled withdrawal.
fn busy_account() -> (AccountState, OpId, OpId) {
    let pc = compaction_policy();
    let mut a = funded(1, 1, dec!(100000), T0);
    let mut b = funded(2, 0, dec!(1), T0);
    run(
        &pc,
        &mut a,
        &deposit("d0", dec!(10), DepositMethod::BankCard),
        T0,
    )
    .unwrap();
    let w = run(
        &pc,
        &mut a,
        &verified(withdraw("w", dec!(50000), WithdrawalMethod::BankCard)),
        T0,
    )
    .unwrap();
    let wd = op_id(&a, minted(&w));
    run(&pc, &mut a, &Command::SettleWithdrawal { id: wd }, T0).unwrap();
    let mut first = None;
    for i in 0..19u64 {
        // 10 new recipients, then repeats.
        let to = if i < 10 { 100 + i } else { 100 };
        let now = at(100 + i as i64 * 100);
        let debit = run(&pc, &mut a, &transfer(&format!("t{i}"), to, dec!(1)), now).unwrap();
        let id = op_id(&a, minted(&debit));
        run(
            &pc,
            &mut a,
            &Command::CompleteTransfer { transfer: id },
            now,
        )
        .unwrap();
        first.get_or_insert(id);
    }
    assert_eq!(a.outgoing.len(), 20);
    assert_eq!(a.daily.used_on(T0.utc_day(), cny()), dec!(50019));
    let tid = full_transfer(&mut b, &mut a, "in", dec!(0.01), T0);
    assert!(a.credited.contains_key(&tid));
    (a, first.unwrap(), wd)
}

#[test]
fn compaction_forgets_old_data() {
    let (mut a, _, _) = busy_account();
    // The funding deposit (an hour before T0) is already past the quick-withdrawal
    // window at T0; start from there.
    a.compact(at(0), &p());
    let mut c = a.clone();
    c.compact(at(5000), &p());
    assert_eq!(c, a, "nothing is old yet");
    c.compact(at(MINUTE_MS + 5000), &p());
    assert!(
        c.outgoing.is_empty(),
        "outgoing marks go with the velocity window"
    );
    assert_eq!(
        c.new_recipients, a.new_recipients,
        "new recipients stay for the fan-out window"
    );
    c.compact(at(10 * MINUTE_MS + 5000), &p());
    assert!(c.outgoing.is_empty());
    assert!(c.new_recipients.is_empty());
    assert_eq!(c.idempotency.len(), a.idempotency.len());
    // Next day: keys, closed ops and the daily usage go; credited ids stay,
    // whatever their age, until their source has settled them.
    c.compact(at(DAY_MS + 5000), &p());
    assert!(c.idempotency.is_empty());
    assert!(c.ops.is_empty());
    assert_eq!(c.daily.used_on(at(DAY_MS + 5000).utc_day(), cny()), dec!(0));
    assert_eq!(c.credited.len(), 1);
    c.compact(at(300 * DAY_MS), &p());
    assert_eq!(c.credited.len(), 1, "never forgotten by age");
    let debit_lsn = c.credited.values().next().unwrap().debit_lsn;
    assert_eq!(
        c.prune_settled(|_| debit_lsn),
        0,
        "its debit is not settled"
    );
    assert_eq!(c.prune_settled(|_| debit_lsn + 1), 1);
    assert!(c.credited.is_empty());
    // Money and history of the account are untouched.
    assert_eq!(c.books, a.books);
    assert_eq!(c.notifications, a.notifications);
    assert_eq!(c.known_recipients, a.known_recipients);
}

/// Instants inside every window, and at and around each boundary: the fraud
/// windows, UTC midnight, key retention (24 h) and credit dedupe (7 days).
fn compaction_instants(up_to_ms: i64) -> Vec<Timestamp> {
    let mut v = vec![at(3000), at(3001), at(30_000)];
    let midnight_ms = T0.next_utc_midnight().millis() - T0.millis();
    for edge in [
        60 * SECOND_MS,
        10 * MINUTE_MS,
        midnight_ms,
        DAY_MS,
        7 * DAY_MS,
    ] {
        v.extend([at(edge - 1), at(edge), at(edge + 1), at(edge + 3000)]);
    }
    v.retain(|t| t.millis() - T0.millis() < up_to_ms);
    v
}

fn assert_compaction_keeps_decisions(cmds: &[Command], instants: &[Timestamp]) -> usize {
    let (a, _, _) = busy_account();
    let policy = compaction_policy();
    let mut compared = 0;
    for &now in instants {
        let mut c = a.clone();
        c.compact(now, &policy);
        for cmd in cmds {
            assert_eq!(
                decide(&policy, &c, cmd, now),
                decide(&policy, &a, cmd, now),
                "{cmd:?} at +{} ms",
                now.millis() - T0.millis()
            );
            compared += 1;
        }
    }
    compared
}

#[test]
fn compaction_changes_no_decision_of_live_rules() {
    let (a, _, _) = busy_account();
    // Up to the credit-dedupe retention: past it see the ignored test below.
    let instants = compaction_instants(7 * DAY_MS);
    assert_eq!(instants.len(), 20);
    assert_compaction_keeps_decisions(&rule_probes(&a), &instants);
}

#[test]
fn compaction_keeps_finished_operations_during_key_retention() {
    let (_, tx, wd) = busy_account();
    // Within 24 h of finishing (they finished between T0 and T0 + 1.9 s).
    let instants = compaction_instants(DAY_MS);
    assert_compaction_keeps_decisions(&re_drive_probes(tx, wd), &instants);
}

#[test]
fn compaction_changes_no_decision_of_late_saga_re_drives() {
    let (a, tx, wd) = busy_account();
    let now = at(DAY_MS + 5000);
    let mut c = a.clone();
    c.compact(now, &p());
    // Past the retention a finished operation is forgotten by `decide` itself, live
    // or compacted alike: a very late duplicate settlement is refused, not applied.
    for cmd in [
        Command::CompleteTransfer { transfer: tx },
        Command::SettleWithdrawal { id: wd },
    ] {
        assert_eq!(
            decide(&p(), &a, &cmd, now),
            Err(Rejection::UnknownOperation)
        );
        assert_eq!(
            decide(&p(), &c, &cmd, now),
            Err(Rejection::UnknownOperation),
            "{cmd:?}"
        );
    }
    // The same, across every instant past the retention; and a credit re-driven
    // 7 days after it was applied is deduplicated by the live state forever but
    // applied a second time by a compacted one.
    let mut probes = re_drive_probes(tx, wd);
    probes.extend(rule_probes(&a));
    assert_compaction_keeps_decisions(&probes, &compaction_instants(i64::MAX));
}

// ---------------------------------------------------------------- codes

#[test]
fn rejections_map_to_the_api_error_codes() {
    // The codes API.md lists, by the rejection that produces them.
    let api = [
        (Rejection::AccountNotFound, "NOT_FOUND"),
        (Rejection::UnknownOperation, "NOT_FOUND"),
        (Rejection::RecipientNotFound, "RECIPIENT_NOT_FOUND"),
        (Rejection::AlreadyExists, "ALREADY_EXISTS"),
        (Rejection::IdempotencyConflict, "IDEMPOTENCY_CONFLICT"),
        (Rejection::SameAccount, "SAME_ACCOUNT"),
        (Rejection::AccountFrozen, "ACCOUNT_FROZEN"),
        (Rejection::AccountRestricted, "ACCOUNT_RESTRICTED"),
        (Rejection::KycRequired, "KYC_REQUIRED"),
        (Rejection::LimitExceeded, "LIMIT_EXCEEDED"),
        (Rejection::InsufficientFunds, "INSUFFICIENT_FUNDS"),
        (Rejection::VelocityBlocked, "VELOCITY_BLOCKED"),
        (Rejection::RecipientUnavailable, "RECIPIENT_UNAVAILABLE"),
    ];
    for (rejection, code) in api {
        assert_eq!(rejection.code(), code);
        assert!(rejection.message().ends_with('.'), "{rejection:?}");
    }
}

#[test]
fn remembered_recipients_are_bounded() {
    // The set of paid recipients is keyed by what clients send: past its cap a
    // first payment still counts as one to a new recipient, and nothing grows.
    use crate::domain::state::MAX_KNOWN_RECIPIENTS;
    let mut s = funded(1, 1, dec!(1000), T0);
    s.known_recipients
        .extend((0..MAX_KNOWN_RECIPIENTS as u64).map(|i| AccountId(1_000_000 + i)));
    let events = run(&p(), &mut s, &transfer("cap", 2, dec!(1)), T0).unwrap();
    assert!(events.iter().any(|e| matches!(
        e.body,
        EventBody::TransferDebited {
            new_recipient: true,
            ..
        }
    )));
    assert_eq!(s.known_recipients.len(), MAX_KNOWN_RECIPIENTS);
    assert!(!s.known_recipients.contains(&AccountId(2)));
}

#[test]
fn legacy_credits_go_by_age_and_marked_ones_only_below_their_watermark() {
    use crate::domain::state::{CreditMark, LEGACY_DEBIT_LSN};
    let mut s = opened(2, T0);
    let legacy = OpId {
        account: AccountId(1),
        n: 1,
    };
    let marked = OpId {
        account: AccountId(3),
        n: 1,
    };
    // As a state of format 2 reads: a credit recorded before debit positions.
    s.credited.insert(
        legacy,
        CreditMark {
            at: T0,
            debit_lsn: LEGACY_DEBIT_LSN,
            refused: None,
        },
    );
    s.credited.insert(
        marked,
        CreditMark {
            at: T0,
            debit_lsn: 5,
            refused: None,
        },
    );
    let again = |t: OpId| Command::Credit {
        transfer: t,
        from: t.account,
        amount: cny_amount(dec!(1)),
        memo: None,
        debit_lsn: 5,
    };
    assert_eq!(decide(&p(), &s, &again(legacy), at(1000)), Ok(vec![]));
    assert_eq!(decide(&p(), &s, &again(marked), at(1000)), Ok(vec![]));
    // A watermark never forgets a legacy entry; one at the debit keeps it too.
    assert_eq!(s.prune_settled(|_| 5), 0);
    let mut pruned = s.clone();
    assert_eq!(pruned.prune_settled(|_| u64::MAX - 1), 1);
    assert!(pruned.credited.contains_key(&legacy));
    // Age forgets only the legacy entry, after the retention it was recorded
    // under; a decision on it past that is the same compacted or not.
    let late = at(7 * DAY_MS + 1);
    let before = decide(&p(), &s, &again(legacy), late);
    s.compact(late, &p());
    assert!(!s.credited.contains_key(&legacy));
    assert!(s.credited.contains_key(&marked));
    assert_eq!(decide(&p(), &s, &again(legacy), late), before);
}

// ---------------------------------------------------------------- history rows

/// A transfer debited and settled in one record (the executor's early
/// settlement) writes its source row once, as a first version with the final
/// status; the same events in two records write the row twice, the second
/// replacing the first.
#[test]
fn a_transfer_debited_and_settled_in_one_record_writes_one_first_version_row() {
    use crate::domain::history::{history_rows, TxRecord};
    use crate::domain::notification::TxStatus;
    for reversed in [false, true] {
        let mut src = funded(1, 1, dec!(100), T0);
        let dst = opened(2, T0);
        let mut events = run(&p(), &mut src, &transfer("k", dst.id.0, dec!(30)), T0).unwrap();
        let id = op_id(&src, minted(&events));
        let first = history_rows(&src, &events);
        assert_eq!(first.len(), 1);
        assert!(!first[0].replaces);
        let settle = if reversed {
            Command::ReverseTransfer {
                transfer: id,
                reason: Rejection::RecipientNotFound,
            }
        } else {
            Command::CompleteTransfer { transfer: id }
        };
        let second = run(&p(), &mut src, &settle, T0).unwrap();
        let later = history_rows(&src, &second);
        assert_eq!(later.len(), 1);
        assert!(later[0].replaces, "a later record's final status replaces");
        events.extend(second);
        let rows = history_rows(&src, &events);
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert!(!rows[0].replaces, "nothing was written before it");
        assert_eq!(rows[0].key, first[0].key);
        assert_eq!(rows[0].payload, later[0].payload);
        let status = TxRecord::decode(&rows[0].payload).unwrap().status;
        let expected = if reversed {
            TxStatus::Reversed
        } else {
            TxStatus::Completed
        };
        assert_eq!(status, expected);
    }
}
