//! Tests of the functional core as a whole: `rules` pins every business rule and
//! every `Rejection` that `decide` can produce, one scenario per test, with `now`
//! injected; `properties` drives a small world of accounts through random command
//! sequences (transfer sagas included) and checks the money invariants after every
//! step. This module holds the few helpers both share, so a scenario reads as the
//! rule it checks rather than as set-up.

mod identity;
mod invariants;
mod properties;
mod rules;
mod security;
mod status_properties;
mod totp;

use rust_decimal::Decimal;

use crate::domain::command::{Command, DepositMethod, Profile, WithdrawalMethod};
use crate::domain::event::Event;
use crate::domain::rejection::Rejection;
use crate::domain::state::AccountState;
use crate::domain::{apply, decide};
use crate::ids::{AccountId, IdempotencyKey};
use crate::money::{Amount, Currency};
use crate::policy::Policy;
use crate::time::Timestamp;

/// 2024-03-01T10:00:00Z: a fixed instant, so day boundaries are known (14 h to
/// the next UTC midnight).
pub(crate) const T0: Timestamp = Timestamp(1_709_287_200_000);

pub(crate) const SECOND_MS: i64 = 1_000;
pub(crate) const MINUTE_MS: i64 = 60 * SECOND_MS;
pub(crate) const HOUR_MS: i64 = 60 * MINUTE_MS;
pub(crate) const DAY_MS: i64 = 24 * HOUR_MS;

pub(crate) fn cny() -> Currency {
    Currency::new("CNY", 2).unwrap()
}

pub(crate) fn usd() -> Currency {
    Currency::new("USD", 2).unwrap()
}

/// An amount of CNY.
pub(crate) fn cny_amount(value: Decimal) -> Amount {
    Amount::new(value, cny()).unwrap()
}

pub(crate) fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::parse(s).unwrap()
}

/// Decides, then applies what was decided: what the actor does minus persistence.
pub(crate) fn run(
    policy: &Policy,
    state: &mut AccountState,
    cmd: &Command,
    now: Timestamp,
) -> Result<Vec<Event>, Rejection> {
    let events = decide(policy, state, cmd, now)?;
    for e in &events {
        apply(state, e);
    }
    Ok(events)
}

/// An opened, empty account.
pub(crate) fn opened(id: u64, now: Timestamp) -> AccountState {
    let mut s = AccountState::new(AccountId(id));
    let open = Command::Open {
        password_hash: String::new(),
        profile: Profile {
            display_name: format!("user {id}"),
            email: Some(format!("u{id}@example.com")),
            phone: None,
        },
    };
    run(&Policy::default(), &mut s, &open, now).unwrap();
    s
}

/// An opened account of `tier` holding `available` CNY from a fee-free deposit.
pub(crate) fn funded(id: u64, tier: u8, available: Decimal, now: Timestamp) -> AccountState {
    let policy = Policy::default();
    let mut s = opened(id, now);
    if tier != 0 {
        run(&policy, &mut s, &Command::SetKycTier { tier }, now).unwrap();
    }
    if available > Decimal::ZERO {
        let dep = Command::Deposit {
            card: String::new(),
            key: key("funding"),
            amount: cny_amount(available),
            method: DepositMethod::BankCard,
        };
        // An hour earlier: funding is old money, so the deposit-then-quick-withdrawal
        // rule stays out of tests about other rules.
        run(&policy, &mut s, &dep, now.plus_ms(-HOUR_MS)).unwrap();
    }
    s
}

pub(crate) fn deposit(k: &str, value: Decimal, method: DepositMethod) -> Command {
    Command::Deposit {
        card: String::new(),
        key: key(k),
        amount: cny_amount(value),
        method,
    }
}

pub(crate) fn withdraw(k: &str, value: Decimal, method: WithdrawalMethod) -> Command {
    Command::Withdraw {
        key: key(k),
        amount: cny_amount(value),
        method,
        destination: "6222020000000000".into(),
        step_up_verified: false,
    }
}

pub(crate) fn transfer(k: &str, to: u64, value: Decimal) -> Command {
    Command::Transfer {
        key: key(k),
        to: AccountId(to),
        amount: cny_amount(value),
        memo: None,
        step_up_verified: false,
    }
}

/// Marks a withdrawal or transfer command as having passed step-up 2FA.
pub(crate) fn verified(mut cmd: Command) -> Command {
    match &mut cmd {
        Command::Withdraw {
            step_up_verified, ..
        }
        | Command::Transfer {
            step_up_verified, ..
        } => *step_up_verified = true,
        other => panic!("no step-up on {other:?}"),
    }
    cmd
}

/// Enrols TOTP the way the gateway does (a security code, the secret behind it,
/// then a first code of step `step`), with recovery codes `[r; 32]` for `r` in
/// `recovery`.
pub(crate) fn enrol_totp(state: &mut AccountState, step: u64, recovery: &[u8], now: Timestamp) {
    use crate::domain::security::ChallengeProof;
    let policy = Policy::default();
    let code = Command::RequestSecurityCode { code_hash: [9; 32] };
    run(&policy, state, &code, now).unwrap();
    let begin = Command::BeginTotp {
        secret: vec![1, 2, 3],
        proof: ChallengeProof::Code([9; 32]),
        replace: false,
    };
    run(&policy, state, &begin, now).unwrap();
    let confirm = Command::ConfirmTotp {
        step: Some(step),
        recovery: recovery.iter().map(|r| [*r; 32]).collect(),
    };
    run(&policy, state, &confirm, now).unwrap();
}
