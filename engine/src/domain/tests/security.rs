//! Account security rules: lockout and its expiry, the failed-login burst alert,
//! new-device and two-countries alerts, password-reset codes, step-up challenges
//! (SMS and TOTP, exactly once, attempts, expiry, replay), the deposit-then-quick-
//! withdrawal hold, and the KYC submit/review cycle.

use rust_decimal_macros::dec;

use super::*;
use crate::domain::command::NewSession;
use crate::domain::event::EventBody;
use crate::domain::fraud::FraudRule;
use crate::domain::security::{ChallengeMethod, ChallengeProof, IdType, KycStatus, KycSubmission};
use crate::domain::state::AccountStatus;

fn p() -> Policy {
    Policy::default()
}

fn login(device: &str, country: Option<&str>) -> Command {
    Command::CreateSession(NewSession {
        token_hash: [1; 32],
        device_id: device.into(),
        device_name: None,
        country: country.map(str::to_owned),
        expires_at: T0.plus_ms(30 * DAY_MS),
    })
}

fn alerts(events: &[Event]) -> Vec<FraudRule> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::AlertRaised { rule, .. } => Some(*rule),
            _ => None,
        })
        .collect()
}

#[test]
fn five_failures_lock_login_for_fifteen_minutes_then_the_lock_ends() {
    let mut s = opened(1, T0);
    for i in 0..4 {
        run(&p(), &mut s, &Command::LoginFailed, T0.plus_ms(i)).unwrap();
        assert_eq!(s.security.locked_until, None);
    }
    let events = run(&p(), &mut s, &Command::LoginFailed, T0.plus_ms(10)).unwrap();
    assert!(
        !events
            .iter()
            .any(|e| matches!(e.body, EventBody::StatusChanged { .. })),
        "a lockout is not a status"
    );
    assert_eq!(s.status, AccountStatus::Active);
    assert_eq!(
        s.security.locked_until,
        Some(T0.plus_ms(10 + 15 * MINUTE_MS))
    );
    // Locked: even the right password is refused, and failures are not counted.
    assert_eq!(
        run(&p(), &mut s, &login("d", None), T0.plus_ms(MINUTE_MS)),
        Err(Rejection::AccountLocked)
    );
    assert_eq!(
        run(&p(), &mut s, &Command::LoginFailed, T0.plus_ms(MINUTE_MS)),
        Err(Rejection::AccountLocked)
    );
    // After 15 minutes the next login succeeds; no status changes on the way.
    let events = run(&p(), &mut s, &login("d", None), T0.plus_ms(16 * MINUTE_MS)).unwrap();
    assert!(matches!(events[0].body, EventBody::SessionCreated { .. }));
    assert_eq!(s.status, AccountStatus::Active);
    assert_eq!(s.security.failed_logins, 0);
    assert_eq!(s.security.locked_until, None);
}

#[test]
fn after_a_lockout_ends_the_count_starts_afresh() {
    let mut s = opened(1, T0);
    for _ in 0..5 {
        run(&p(), &mut s, &Command::LoginFailed, T0).unwrap();
    }
    let later = T0.plus_ms(16 * MINUTE_MS);
    run(&p(), &mut s, &Command::LoginFailed, later).unwrap();
    assert_eq!(s.security.failed_logins, 1);
    assert_eq!(
        s.security.locked_until, None,
        "one failure does not re-lock"
    );
}

/// The attack of issue 9: freeze → 5 wrong passwords → the frozen account's
/// existing session sent money (the lockout replaced the freeze), and the lockout's
/// end or a password reset made it `active`.
#[test]
fn a_lockout_never_lifts_a_freeze_restriction_or_closure() {
    for status in [
        AccountStatus::Frozen,
        AccountStatus::Restricted,
        AccountStatus::Closed,
    ] {
        let mut s = funded(1, 1, dec!(0), T0);
        run(
            &p(),
            &mut s,
            &Command::SetStatus {
                to: status,
                reason: "operator".into(),
            },
            T0,
        )
        .unwrap();
        for _ in 0..5 {
            run(&p(), &mut s, &Command::LoginFailed, T0).unwrap();
        }
        assert_eq!(s.status, status);
        assert!(s.security.locked_until.is_some());
        let later = T0.plus_ms(16 * MINUTE_MS);
        let _ = run(&p(), &mut s, &login("d", None), later);
        assert_eq!(s.status, status, "the lockout's end");
        if status != AccountStatus::Closed {
            run(
                &p(),
                &mut s,
                &Command::StartPasswordReset { code_hash: [7; 32] },
                later,
            )
            .unwrap();
            run(
                &p(),
                &mut s,
                &Command::ConfirmPasswordReset {
                    code_hash: [7; 32],
                    password_hash: "new".into(),
                },
                later,
            )
            .unwrap();
            assert_eq!(s.status, status, "a password reset");
        }
    }
}

#[test]
fn a_success_resets_the_consecutive_count() {
    let mut s = opened(1, T0);
    for _ in 0..4 {
        run(&p(), &mut s, &Command::LoginFailed, T0).unwrap();
    }
    run(&p(), &mut s, &login("d", None), T0).unwrap();
    for _ in 0..4 {
        run(&p(), &mut s, &Command::LoginFailed, T0).unwrap();
    }
    assert_eq!(
        s.status,
        AccountStatus::Active,
        "4 + 4 failures with a success between"
    );
}

#[test]
fn a_burst_of_failures_raises_one_alert() {
    let mut policy = p();
    policy.security.lockout_failures = 100;
    let mut s = opened(1, T0);
    let mut raised = Vec::new();
    for i in 0..15 {
        let events = run(&policy, &mut s, &Command::LoginFailed, T0.plus_ms(i * 1000)).unwrap();
        raised.extend(alerts(&events));
    }
    assert_eq!(raised, vec![FraudRule::FailedLoginBurst], "edge-triggered");
}

#[test]
fn a_new_device_raises_an_alert_but_the_first_login_does_not() {
    let mut s = opened(1, T0);
    let first = run(&p(), &mut s, &login("phone", None), T0).unwrap();
    assert!(alerts(&first).is_empty());
    assert!(matches!(
        first[0].body,
        EventBody::SessionCreated {
            new_device: true,
            ..
        }
    ));
    let again = run(&p(), &mut s, &login("phone", None), T0).unwrap();
    assert!(matches!(
        again[0].body,
        EventBody::SessionCreated {
            new_device: false,
            ..
        }
    ));
    let other = run(&p(), &mut s, &login("laptop", None), T0).unwrap();
    assert_eq!(alerts(&other), vec![FraudRule::NewDevice]);
    let n = s.notifications.back().unwrap();
    assert_eq!(n.kind.type_name(), "alert.raised");
    let session = s
        .notifications
        .iter()
        .rev()
        .find(|n| n.kind.type_name() == "session.created")
        .unwrap();
    assert_eq!(session.kind.data_json()["new_device"], true);
}

#[test]
fn two_countries_too_close_hold_the_account_for_review() {
    let mut s = opened(1, T0);
    run(&p(), &mut s, &login("d", Some("CN")), T0).unwrap();
    let later = T0.plus_ms(30 * MINUTE_MS);
    let events = run(&p(), &mut s, &login("d", Some("US")), later).unwrap();
    assert_eq!(alerts(&events), vec![FraudRule::ImpossibleTravel]);
    assert_eq!(s.status, AccountStatus::Restricted);
    // Far enough apart in time: fine.
    let mut t = opened(2, T0);
    run(&p(), &mut t, &login("d", Some("CN")), T0).unwrap();
    let events = run(
        &p(),
        &mut t,
        &login("d", Some("US")),
        T0.plus_ms(2 * HOUR_MS),
    )
    .unwrap();
    assert!(alerts(&events).is_empty());
    assert_eq!(t.status, AccountStatus::Active);
}

#[test]
fn a_reset_code_is_single_use_limited_and_expires() {
    let mut s = opened(1, T0);
    run(&p(), &mut s, &login("d", None), T0).unwrap();
    for _ in 0..5 {
        run(&p(), &mut s, &Command::LoginFailed, T0).unwrap();
    }
    assert!(s.security.locked_until.is_some());
    run(
        &p(),
        &mut s,
        &Command::StartPasswordReset { code_hash: [7; 32] },
        T0,
    )
    .unwrap();
    let confirm = |h: u8| Command::ConfirmPasswordReset {
        code_hash: [h; 32],
        password_hash: "new".into(),
    };
    let wrong = run(&p(), &mut s, &confirm(8), T0).unwrap();
    assert!(matches!(
        wrong.last().unwrap().body,
        EventBody::Refused {
            rejection: Rejection::ChallengeFailed
        }
    ));
    run(&p(), &mut s, &confirm(7), T0).unwrap();
    assert_eq!(s.password_hash, "new");
    assert!(s.sessions.is_empty(), "every session revoked");
    assert_eq!(s.security.locked_until, None, "unlocked");
    assert_eq!(s.status, AccountStatus::Active);
    // Used, expired, out of attempts: the same refusal as a wrong code.
    assert!(matches!(
        run(&p(), &mut s, &confirm(7), T0)
            .unwrap()
            .last()
            .unwrap()
            .body,
        EventBody::Refused {
            rejection: Rejection::ChallengeFailed
        }
    ));
    // Expiry.
    run(
        &p(),
        &mut s,
        &Command::StartPasswordReset { code_hash: [9; 32] },
        T0,
    )
    .unwrap();
    assert!(refused_as_failed(run(
        &p(),
        &mut s,
        &confirm(9),
        T0.plus_ms(10 * MINUTE_MS)
    )));
    // Five wrong answers kill it.
    run(
        &p(),
        &mut s,
        &Command::StartPasswordReset { code_hash: [3; 32] },
        T0,
    )
    .unwrap();
    for _ in 0..5 {
        run(&p(), &mut s, &confirm(4), T0).unwrap();
    }
    assert!(refused_as_failed(run(&p(), &mut s, &confirm(3), T0)));
}

/// Whether a reset confirmation failed with the one answer for every failure.
fn refused_as_failed(got: Result<Vec<Event>, Rejection>) -> bool {
    got.is_ok_and(|e| {
        matches!(
            e.last().map(|e| &e.body),
            Some(EventBody::Refused {
                rejection: Rejection::ChallengeFailed
            })
        )
    })
}

fn challenge_for(s: &mut AccountState, k: &str, cmd: Command, method: ChallengeMethod) -> u64 {
    let events = run(
        &p(),
        s,
        &Command::CreateChallenge {
            key: key(k),
            command: Box::new(cmd),
            method,
            code_hash: (method == ChallengeMethod::Sms).then_some([5; 32]),
        },
        T0,
    )
    .unwrap();
    events[0].body.minted_op().unwrap()
}

#[test]
fn a_passed_challenge_runs_its_operation_exactly_once() {
    let mut s = funded(1, 1, dec!(5000), T0);
    let big = transfer("t", 2, dec!(1500));
    assert_eq!(
        decide(&p(), &s, &big, T0),
        Err(Rejection::ChallengeRequired)
    );
    let n = challenge_for(&mut s, "t", big.clone(), ChallengeMethod::Sms);
    // The same request again finds the same challenge; a changed one conflicts.
    let same = Command::CreateChallenge {
        key: key("t"),
        command: Box::new(big.clone()),
        method: ChallengeMethod::Sms,
        code_hash: Some([6; 32]),
    };
    assert_eq!(decide(&p(), &s, &same, T0), Ok(vec![]));
    let changed = Command::CreateChallenge {
        key: key("t"),
        command: Box::new(transfer("t", 2, dec!(1600))),
        method: ChallengeMethod::Sms,
        code_hash: Some([6; 32]),
    };
    assert_eq!(
        decide(&p(), &s, &changed, T0),
        Err(Rejection::IdempotencyConflict)
    );
    let confirm = |h: u8| Command::ConfirmChallenge {
        n,
        proof: ChallengeProof::Code([h; 32]),
    };
    let wrong = run(&p(), &mut s, &confirm(1), T0).unwrap();
    assert!(matches!(
        wrong.last().unwrap().body,
        EventBody::Refused {
            rejection: Rejection::ChallengeFailed
        }
    ));
    let ok = run(&p(), &mut s, &confirm(5), T0).unwrap();
    assert!(ok
        .iter()
        .any(|e| matches!(e.body, EventBody::TransferDebited { .. })));
    assert_eq!(s.available(cny()), dec!(3500));
    // A second confirmation (a race, a retry) runs nothing.
    assert_eq!(run(&p(), &mut s, &confirm(5), T0), Ok(vec![]));
    assert_eq!(s.available(cny()), dec!(3500));
}

#[test]
fn five_wrong_answers_or_expiry_kill_a_challenge() {
    let mut s = funded(1, 1, dec!(5000), T0);
    let n = challenge_for(
        &mut s,
        "w",
        transfer("w", 2, dec!(1500)),
        ChallengeMethod::Sms,
    );
    for _ in 0..5 {
        run(
            &p(),
            &mut s,
            &Command::ConfirmChallenge {
                n,
                proof: ChallengeProof::Code([0; 32]),
            },
            T0,
        )
        .unwrap();
    }
    let right = Command::ConfirmChallenge {
        n,
        proof: ChallengeProof::Code([5; 32]),
    };
    assert_eq!(
        run(&p(), &mut s, &right, T0),
        Err(Rejection::ChallengeExpired)
    );
    let m = challenge_for(
        &mut s,
        "x",
        transfer("x", 2, dec!(1500)),
        ChallengeMethod::Sms,
    );
    let right = Command::ConfirmChallenge {
        n: m,
        proof: ChallengeProof::Code([5; 32]),
    };
    assert_eq!(
        run(&p(), &mut s, &right, T0.plus_ms(10 * MINUTE_MS)),
        Err(Rejection::ChallengeExpired)
    );
    assert_eq!(s.available(cny()), dec!(5000), "nothing moved");
}

#[test]
fn a_totp_step_is_accepted_once() {
    let mut s = funded(1, 1, dec!(9000), T0);
    run(
        &p(),
        &mut s,
        &Command::RequestSecurityCode { code_hash: [9; 32] },
        T0,
    )
    .unwrap();
    run(
        &p(),
        &mut s,
        &Command::BeginTotp {
            secret: vec![1, 2, 3],
            proof: ChallengeProof::Code([9; 32]),
            replace: false,
        },
        T0,
    )
    .unwrap();
    let no_match = Command::ConfirmTotp {
        step: None,
        recovery: Vec::new(),
    };
    assert_eq!(
        run(&p(), &mut s, &no_match, T0),
        Err(Rejection::ChallengeFailed)
    );
    let confirm = Command::ConfirmTotp {
        step: Some(100),
        recovery: Vec::new(),
    };
    run(&p(), &mut s, &confirm, T0).unwrap();
    assert!(s.security.totp.as_ref().unwrap().enabled);
    let a = challenge_for(
        &mut s,
        "a",
        transfer("a", 2, dec!(1500)),
        ChallengeMethod::Totp,
    );
    // The step used to enrol can't be used again.
    let replay = Command::ConfirmChallenge {
        n: a,
        proof: ChallengeProof::TotpStep(100),
    };
    let events = run(&p(), &mut s, &replay, T0).unwrap();
    assert!(matches!(
        events.last().unwrap().body,
        EventBody::Refused { .. }
    ));
    let fresh = Command::ConfirmChallenge {
        n: a,
        proof: ChallengeProof::TotpStep(101),
    };
    run(&p(), &mut s, &fresh, T0).unwrap();
    let b = challenge_for(
        &mut s,
        "b",
        transfer("b", 2, dec!(1500)),
        ChallengeMethod::Totp,
    );
    let again = Command::ConfirmChallenge {
        n: b,
        proof: ChallengeProof::TotpStep(101),
    };
    let events = run(&p(), &mut s, &again, T0).unwrap();
    assert!(
        matches!(events.last().unwrap().body, EventBody::Refused { .. }),
        "a code is accepted once per step"
    );
}

#[test]
fn withdrawing_most_of_a_fresh_deposit_holds_the_account() {
    let mut s = funded(1, 1, dec!(0), T0);
    run(
        &p(),
        &mut s,
        &deposit("d", dec!(800), DepositMethod::CreditCard),
        T0,
    )
    .unwrap();
    let events = run(
        &p(),
        &mut s,
        &withdraw("w", dec!(700), WithdrawalMethod::BankCard),
        T0.plus_ms(5 * MINUTE_MS),
    )
    .unwrap();
    assert_eq!(alerts(&events), vec![FraudRule::QuickWithdrawal]);
    assert!(matches!(
        events.last().unwrap().body,
        EventBody::Refused {
            rejection: Rejection::AccountRestricted
        }
    ));
    assert_eq!(s.status, AccountStatus::Restricted);
    // After the window the same withdrawal is fine.
    let mut t = funded(2, 1, dec!(0), T0);
    run(
        &p(),
        &mut t,
        &deposit("d", dec!(800), DepositMethod::CreditCard),
        T0,
    )
    .unwrap();
    let later = T0.plus_ms(31 * MINUTE_MS);
    run(
        &p(),
        &mut t,
        &withdraw("w", dec!(700), WithdrawalMethod::BankCard),
        later,
    )
    .unwrap();
}

#[test]
fn kyc_submit_reject_resubmit_approve() {
    let mut s = opened(1, T0);
    let sub = KycSubmission {
        full_name: vec![1],
        id_type: IdType::Passport,
        id_number: vec![2],
        id_number_masked: "****1234".into(),
        documents: vec!["doc".into()],
    };
    run(&p(), &mut s, &Command::SubmitKyc(sub.clone()), T0).unwrap();
    assert_eq!(s.kyc.status, KycStatus::Pending);
    assert_eq!(
        run(&p(), &mut s, &Command::SubmitKyc(sub.clone()), T0),
        Err(Rejection::AlreadyExists)
    );
    run(
        &p(),
        &mut s,
        &Command::ReviewKyc {
            approve: false,
            reason: Some("blurry".into()),
        },
        T0,
    )
    .unwrap();
    assert_eq!(s.kyc.status, KycStatus::Rejected);
    assert_eq!(s.kyc.reason.as_deref(), Some("blurry"));
    assert_eq!(s.kyc_tier, 0);
    run(&p(), &mut s, &Command::SubmitKyc(sub), T0).unwrap();
    run(
        &p(),
        &mut s,
        &Command::ReviewKyc {
            approve: true,
            reason: None,
        },
        T0,
    )
    .unwrap();
    assert_eq!(s.kyc.status, KycStatus::Approved);
    assert_eq!(s.kyc_tier, 1);
    let last = s.notifications.back().unwrap();
    assert_eq!(last.kind.type_name(), "kyc.updated");
    assert_eq!(last.kind.data_json()["tier"], 1);
    assert_eq!(last.kind.data_json()["status"], "approved");
    assert_eq!(
        run(
            &p(),
            &mut s,
            &Command::ReviewKyc {
                approve: true,
                reason: None
            },
            T0
        ),
        Err(Rejection::OperationClosed)
    );
}

/// A journal written when the lockout was a status (freeze, then lock, then the
/// lock's end to `active`) replays to a frozen account today.
#[test]
fn an_old_journals_lockout_status_changes_leave_a_freeze_alone() {
    let mut s = funded(1, 1, dec!(100), T0);
    let change = |from, to| Event {
        at: T0,
        body: EventBody::StatusChanged {
            from,
            to,
            reason: "old".into(),
        },
    };
    for e in [
        change(AccountStatus::Active, AccountStatus::Frozen),
        change(AccountStatus::Frozen, AccountStatus::Locked),
        change(AccountStatus::Locked, AccountStatus::Active),
    ] {
        apply(&mut s, &e);
    }
    assert_eq!(s.status, AccountStatus::Frozen);
    // An operator's freeze of an account an old snapshot left `Locked` applies.
    let mut t = funded(2, 1, dec!(100), T0);
    t.status = AccountStatus::Locked;
    apply(
        &mut t,
        &change(AccountStatus::Locked, AccountStatus::Frozen),
    );
    assert_eq!(t.status, AccountStatus::Frozen);
}

#[test]
fn wrong_reset_codes_count_across_codes_and_block_even_the_right_one() {
    let mut s = opened(1, T0);
    let check = |h: u8| Command::CheckResetCode { code_hash: [h; 32] };
    let mut raised = Vec::new();
    // Each new code would bring 5 fresh attempts: 10 failures over 3 codes.
    for i in 0..10u8 {
        if i % 4 == 0 {
            let start = Command::StartPasswordReset {
                code_hash: [100 + i; 32],
            };
            run(&p(), &mut s, &start, T0).unwrap();
        }
        let events = run(&p(), &mut s, &check(1), T0).unwrap();
        raised.extend(alerts(&events));
        assert!(matches!(
            events.last().unwrap().body,
            EventBody::Refused {
                rejection: Rejection::ChallengeFailed
            }
        ));
    }
    assert_eq!(raised, vec![FraudRule::ResetCodeGuessing]);
    run(
        &p(),
        &mut s,
        &Command::StartPasswordReset { code_hash: [7; 32] },
        T0,
    )
    .unwrap();
    let right = Command::ConfirmPasswordReset {
        code_hash: [7; 32],
        password_hash: "new".into(),
    };
    assert_eq!(
        run(&p(), &mut s, &right, T0),
        Err(Rejection::TooManyAttempts)
    );
    assert_eq!(
        crate::domain::security::reset::retry_after_ms(&p(), &s, T0),
        Some(DAY_MS)
    );
    // A day later the window has passed.
    let later = T0.plus_ms(DAY_MS + 1);
    run(
        &p(),
        &mut s,
        &Command::StartPasswordReset { code_hash: [7; 32] },
        later,
    )
    .unwrap();
    run(&p(), &mut s, &right, later).unwrap();
    assert_eq!(s.password_hash, "new");
}

#[test]
fn a_missing_or_expired_reset_code_fails_like_a_wrong_one() {
    let mut s = opened(1, T0);
    let check = Command::CheckResetCode { code_hash: [1; 32] };
    let events = run(&p(), &mut s, &check, T0).unwrap();
    assert!(matches!(
        events.last().unwrap().body,
        EventBody::Refused {
            rejection: Rejection::ChallengeFailed
        }
    ));
    run(
        &p(),
        &mut s,
        &Command::StartPasswordReset { code_hash: [1; 32] },
        T0,
    )
    .unwrap();
    assert_eq!(run(&p(), &mut s, &check, T0), Ok(vec![]), "right: no-op");
    let events = run(&p(), &mut s, &check, T0.plus_ms(11 * MINUTE_MS)).unwrap();
    assert!(matches!(
        events.last().unwrap().body,
        EventBody::Refused {
            rejection: Rejection::ChallengeFailed
        }
    ));
}

#[test]
fn wrong_step_up_codes_across_challenges_freeze_the_account() {
    let mut s = funded(1, 1, dec!(50000), T0);
    let mut raised = Vec::new();
    for c in 0..4 {
        let n = challenge_for(
            &mut s,
            &format!("c{c}"),
            transfer(&format!("c{c}"), 2, dec!(1500)),
            ChallengeMethod::Sms,
        );
        for _ in 0..3 {
            if s.security.step_up_failures.len() == 10 {
                break;
            }
            let wrong = Command::ConfirmChallenge {
                n,
                proof: ChallengeProof::Code([0; 32]),
            };
            raised.extend(alerts(&run(&p(), &mut s, &wrong, T0).unwrap()));
        }
    }
    assert_eq!(raised, vec![FraudRule::StepUpCodeGuessing]);
    assert_eq!(s.status, AccountStatus::Frozen);
    assert_eq!(
        decide(&p(), &s, &verified(transfer("z", 2, dec!(1500))), T0),
        Err(Rejection::AccountFrozen)
    );
}

#[test]
fn split_payments_reaching_the_threshold_need_step_up() {
    let mut s = funded(1, 1, dec!(5000), T0);
    for i in 0..3 {
        run(&p(), &mut s, &transfer(&format!("s{i}"), 2, dec!(300)), T0).unwrap();
    }
    // 900 left without step-up today: 100 more would reach 1,000.
    assert_eq!(
        decide(&p(), &s, &transfer("s3", 2, dec!(100)), T0),
        Err(Rejection::ChallengeRequired)
    );
    assert_eq!(
        decide(
            &p(),
            &s,
            &withdraw("w", dec!(100), WithdrawalMethod::ThirdParty),
            T0
        ),
        Err(Rejection::ChallengeRequired)
    );
    run(&p(), &mut s, &transfer("s4", 2, dec!(99)), T0).unwrap();
    // Through a passed challenge: allowed, and not added to the unchallenged sum.
    let n = challenge_for(
        &mut s,
        "s5",
        transfer("s5", 2, dec!(500)),
        ChallengeMethod::Sms,
    );
    let pass = Command::ConfirmChallenge {
        n,
        proof: ChallengeProof::Code([5; 32]),
    };
    run(&p(), &mut s, &pass, T0).unwrap();
    assert_eq!(s.available(cny()), dec!(3501));
    assert_eq!(s.security.unchallenged_out.len(), 4);
    // Another currency has its own sum; a day later the window has passed.
    let later = T0.plus_ms(DAY_MS + 1);
    run(&p(), &mut s, &transfer("s6", 2, dec!(100)), later).unwrap();
}

#[test]
fn an_sms_challenge_cant_stand_in_for_an_enrolled_totp() {
    let mut s = funded(1, 1, dec!(5000), T0);
    enrol_totp(&mut s, 100, &[], T0);
    let sms = Command::CreateChallenge {
        key: key("t"),
        command: Box::new(transfer("t", 2, dec!(1500))),
        method: ChallengeMethod::Sms,
        code_hash: Some([5; 32]),
    };
    assert_eq!(decide(&p(), &s, &sms, T0), Err(Rejection::ChallengeFailed));
}
