//! The property behind issue 9's critical finding: no sequence of failed logins,
//! successful logins, password resets (right and wrong codes) and passing time
//! makes a frozen, restricted or closed account able to send money, or changes its
//! status at all. Every step is decided and applied like the actor does, and after
//! every step transfers and withdrawals (with and without step-up passed) are tried.

use proptest::prelude::*;
use rust_decimal_macros::dec;

use super::*;
use crate::domain::command::NewSession;
use crate::domain::event::EventBody;
use crate::domain::state::AccountStatus;

#[derive(Clone, Debug)]
enum Step {
    WrongPassword,
    Login { device: u8 },
    StartReset { code: u8 },
    ConfirmReset { code: u8 },
    Advance { ms: i64 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => Just(Step::WrongPassword),
        2 => (0u8..3).prop_map(|device| Step::Login { device }),
        2 => (0u8..3).prop_map(|code| Step::StartReset { code }),
        3 => (0u8..3).prop_map(|code| Step::ConfirmReset { code }),
        3 => prop_oneof![
            Just(1i64),
            1i64..=120_000,
            Just(15 * MINUTE_MS),
            Just(16 * MINUTE_MS),
            Just(DAY_MS + 1),
        ]
        .prop_map(|ms| Step::Advance { ms }),
    ]
}

fn blocked_status() -> impl Strategy<Value = AccountStatus> {
    prop_oneof![
        Just(AccountStatus::Frozen),
        Just(AccountStatus::Restricted),
        Just(AccountStatus::Closed),
    ]
}

fn command(step: &Step, now: Timestamp) -> Option<Command> {
    Some(match step {
        Step::WrongPassword => Command::LoginFailed,
        Step::Login { device } => Command::CreateSession(NewSession {
            token_hash: [*device; 32],
            device_id: format!("device-{device}"),
            device_name: None,
            country: None,
            expires_at: now.plus_ms(DAY_MS),
        }),
        Step::StartReset { code } => Command::StartPasswordReset {
            code_hash: [*code; 32],
        },
        Step::ConfirmReset { code } => Command::ConfirmPasswordReset {
            code_hash: [*code; 32],
            password_hash: format!("reset-{code}"),
        },
        Step::Advance { .. } => return None,
    })
}

/// Every outgoing operation the account could try, step-up passed or not.
fn outgoing() -> Vec<Command> {
    vec![
        transfer("t", 2, dec!(10)),
        verified(transfer("tv", 2, dec!(1500))),
        withdraw("w", dec!(10), WithdrawalMethod::ThirdParty),
        verified(withdraw("wv", dec!(1500), WithdrawalMethod::BankCard)),
    ]
}

fn moves_money(events: &[Event]) -> bool {
    events.iter().any(|e| {
        matches!(
            e.body,
            EventBody::TransferDebited { .. } | EventBody::WithdrawalRequested { .. }
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn no_login_reset_or_time_lets_a_blocked_account_send_money(
        status in blocked_status(),
        steps in proptest::collection::vec(step(), 1..60),
    ) {
        let policy = Policy::default();
        // A closed account must be empty; the others hold money to send.
        let funds = if status == AccountStatus::Closed { dec!(0) } else { dec!(5000) };
        let mut s = funded(1, 1, funds, T0);
        let set = Command::SetStatus { to: status, reason: "operator".into() };
        run(&policy, &mut s, &set, T0).unwrap();
        let mut now = T0;
        for step in &steps {
            match (step, command(step, now)) {
                (Step::Advance { ms }, _) => now = now.plus_ms(*ms),
                (_, Some(cmd)) => {
                    let _ = run(&policy, &mut s, &cmd, now);
                }
                (_, None) => unreachable!("only Advance has no command"),
            }
            prop_assert_eq!(s.status, status, "after {:?}", step);
            for cmd in outgoing() {
                let got = decide(&policy, &s, &cmd, now);
                prop_assert!(
                    !got.as_ref().is_ok_and(|e| moves_money(e)),
                    "{:?} sent money after {:?}: {:?}", status, step, got
                );
            }
        }
    }
}
