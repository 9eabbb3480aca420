//! TOTP changes behind a proof on the factor the account already has: enrolment
//! needs the SMS/email code, replacement and removal the current TOTP code (or a
//! recovery code), "already enrolled" is refused by the engine itself, recovery
//! codes work once, wrong proofs count towards the step-up freeze, an operator
//! reset clears everything, and every change notifies (`security.changed`).

use rust_decimal_macros::dec;

use super::*;
use crate::domain::event::EventBody;
use crate::domain::notification::NotificationKind;
use crate::domain::security::{ChallengeMethod, ChallengeProof, SecurityChange};
use crate::domain::state::AccountStatus;

fn p() -> Policy {
    Policy::default()
}

fn begin(proof: ChallengeProof, replace: bool) -> Command {
    Command::BeginTotp {
        secret: vec![7, 7, 7],
        proof,
        replace,
    }
}

fn refused_with(events: &[Event]) -> Option<Rejection> {
    match events.last().map(|e| &e.body) {
        Some(EventBody::Refused { rejection }) => Some(*rejection),
        _ => None,
    }
}

fn last_change(s: &AccountState) -> Option<SecurityChange> {
    s.notifications.iter().rev().find_map(|n| match n.kind {
        NotificationKind::SecurityChanged { change, .. } => Some(change),
        _ => None,
    })
}

#[test]
fn enrolment_needs_the_code_sent_to_the_existing_factor() {
    let mut s = opened(1, T0);
    // No code requested: nothing to prove with; counted as a wrong proof.
    let events = run(
        &p(),
        &mut s,
        &begin(ChallengeProof::Code([9; 32]), false),
        T0,
    )
    .unwrap();
    assert_eq!(refused_with(&events), Some(Rejection::ChallengeFailed));
    assert!(s.security.totp_pending.is_none());
    assert_eq!(s.security.step_up_failures.len(), 1);
    run(
        &p(),
        &mut s,
        &Command::RequestSecurityCode { code_hash: [9; 32] },
        T0,
    )
    .unwrap();
    // A wrong code, and a TOTP step (no factor to check it against), fail.
    for proof in [ChallengeProof::Code([8; 32]), ChallengeProof::TotpStep(5)] {
        let events = run(&p(), &mut s, &begin(proof, false), T0).unwrap();
        assert_eq!(refused_with(&events), Some(Rejection::ChallengeFailed));
    }
    assert!(s.security.totp_pending.is_none());
    // The right code: the enrolment is pending, not active.
    run(
        &p(),
        &mut s,
        &begin(ChallengeProof::Code([9; 32]), false),
        T0,
    )
    .unwrap();
    assert!(s.security.totp_pending.is_some());
    assert!(!crate::domain::security::totp::enabled(&s));
    // The code is used up.
    let events = run(
        &p(),
        &mut s,
        &begin(ChallengeProof::Code([9; 32]), false),
        T0,
    )
    .unwrap();
    assert_eq!(refused_with(&events), Some(Rejection::ChallengeFailed));
    let confirm = Command::ConfirmTotp {
        step: Some(50),
        recovery: vec![[1; 32], [2; 32]],
    };
    run(&p(), &mut s, &confirm, T0).unwrap();
    assert!(crate::domain::security::totp::enabled(&s));
    assert_eq!(s.security.recovery_codes.len(), 2);
    assert_eq!(last_change(&s), Some(SecurityChange::TotpEnabled));
}

#[test]
fn an_expired_security_code_answers_expired() {
    let mut s = opened(1, T0);
    run(
        &p(),
        &mut s,
        &Command::RequestSecurityCode { code_hash: [9; 32] },
        T0,
    )
    .unwrap();
    let later = T0.plus_ms(11 * MINUTE_MS);
    assert_eq!(
        decide(
            &p(),
            &s,
            &begin(ChallengeProof::Code([9; 32]), false),
            later
        ),
        Err(Rejection::ChallengeExpired)
    );
}

#[test]
fn already_enrolled_is_refused_by_the_engine_whatever_the_proof() {
    let mut s = opened(1, T0);
    enrol_totp(&mut s, 100, &[1], T0);
    for proof in [
        ChallengeProof::TotpStep(101),
        ChallengeProof::Recovery([1; 32]),
        ChallengeProof::Code([9; 32]),
    ] {
        assert_eq!(
            decide(&p(), &s, &begin(proof, false), T0),
            Err(Rejection::AlreadyExists)
        );
    }
    // An SMS code can't even be requested once TOTP is on.
    assert_eq!(
        decide(
            &p(),
            &s,
            &Command::RequestSecurityCode { code_hash: [9; 32] },
            T0
        ),
        Err(Rejection::ChallengeFailed)
    );
}

#[test]
fn replacing_needs_the_current_totp_and_keeps_it_until_the_new_one_is_confirmed() {
    let mut s = opened(1, T0);
    enrol_totp(&mut s, 100, &[1], T0);
    let old_secret = s.security.totp.as_ref().unwrap().secret.clone();
    // An SMS-style code, a replayed step and an unknown recovery code all fail.
    for proof in [
        ChallengeProof::Code([9; 32]),
        ChallengeProof::TotpStep(100),
        ChallengeProof::Recovery([3; 32]),
        ChallengeProof::Wrong,
    ] {
        let events = run(&p(), &mut s, &begin(proof, true), T0).unwrap();
        assert_eq!(refused_with(&events), Some(Rejection::ChallengeFailed));
    }
    assert!(s.security.totp_pending.is_none());
    run(
        &p(),
        &mut s,
        &begin(ChallengeProof::TotpStep(101), true),
        T0,
    )
    .unwrap();
    assert_eq!(s.security.totp.as_ref().unwrap().secret, old_secret);
    assert!(crate::domain::security::totp::enabled(&s));
    let confirm = Command::ConfirmTotp {
        step: Some(7),
        recovery: vec![[4; 32]],
    };
    run(&p(), &mut s, &confirm, T0).unwrap();
    assert_eq!(s.security.totp.as_ref().unwrap().secret, vec![7, 7, 7]);
    assert_eq!(s.security.recovery_codes, vec![[4; 32]]);
    assert_eq!(last_change(&s), Some(SecurityChange::TotpReplaced));
}

#[test]
fn a_recovery_code_works_once_in_place_of_a_totp_code() {
    let mut s = funded(1, 1, dec!(9000), T0);
    enrol_totp(&mut s, 100, &[1, 2], T0);
    let c = Command::CreateChallenge {
        key: key("t1"),
        command: Box::new(Command::Transfer {
            key: key("t1"),
            to: AccountId(2),
            amount: cny_amount(dec!(1500)),
            memo: None,
            step_up_verified: false,
        }),
        method: ChallengeMethod::Totp,
        code_hash: None,
    };
    run(&p(), &mut s, &c, T0).unwrap();
    let n = s.challenges.last().unwrap().n;
    let use_code = Command::ConfirmChallenge {
        n,
        proof: ChallengeProof::Recovery([1; 32]),
    };
    let events = run(&p(), &mut s, &use_code, T0).unwrap();
    assert!(events
        .iter()
        .any(|e| matches!(e.body, EventBody::TransferDebited { .. })));
    assert_eq!(s.security.recovery_codes, vec![[2; 32]]);
    assert_eq!(last_change(&s), Some(SecurityChange::RecoveryCodeUsed));
    // Used: it no longer removes TOTP; the other one does.
    let events = run(
        &p(),
        &mut s,
        &Command::RemoveTotp {
            proof: ChallengeProof::Recovery([1; 32]),
        },
        T0,
    )
    .unwrap();
    assert_eq!(refused_with(&events), Some(Rejection::ChallengeFailed));
    assert!(crate::domain::security::totp::enabled(&s));
    run(
        &p(),
        &mut s,
        &Command::RemoveTotp {
            proof: ChallengeProof::Recovery([2; 32]),
        },
        T0,
    )
    .unwrap();
    assert!(s.security.totp.is_none());
    assert!(s.security.recovery_codes.is_empty());
    assert_eq!(last_change(&s), Some(SecurityChange::TotpRemoved));
    // Nothing left to remove.
    assert_eq!(
        decide(
            &p(),
            &s,
            &Command::RemoveTotp {
                proof: ChallengeProof::TotpStep(200)
            },
            T0
        ),
        Err(Rejection::UnknownOperation)
    );
}

#[test]
fn regenerating_recovery_codes_needs_the_proof_and_replaces_them_all() {
    let mut s = opened(1, T0);
    enrol_totp(&mut s, 100, &[1, 2], T0);
    let regen = |proof| Command::RegenerateRecoveryCodes {
        hashes: vec![[5; 32], [6; 32]],
        proof,
    };
    let events = run(&p(), &mut s, &regen(ChallengeProof::Wrong), T0).unwrap();
    assert_eq!(refused_with(&events), Some(Rejection::ChallengeFailed));
    assert_eq!(s.security.recovery_codes, vec![[1; 32], [2; 32]]);
    run(&p(), &mut s, &regen(ChallengeProof::TotpStep(101)), T0).unwrap();
    assert_eq!(s.security.recovery_codes, vec![[5; 32], [6; 32]]);
    assert_eq!(
        last_change(&s),
        Some(SecurityChange::RecoveryCodesRegenerated)
    );
}

#[test]
fn wrong_proofs_count_towards_the_step_up_freeze() {
    let mut s = opened(1, T0);
    enrol_totp(&mut s, 100, &[], T0);
    for i in 0..10 {
        let events = run(
            &p(),
            &mut s,
            &Command::RemoveTotp {
                proof: ChallengeProof::Wrong,
            },
            T0.plus_ms(i),
        )
        .unwrap();
        assert_eq!(refused_with(&events), Some(Rejection::ChallengeFailed));
    }
    assert_eq!(s.status, AccountStatus::Frozen);
    assert!(s
        .alerts
        .iter()
        .any(|a| a.rule == crate::domain::fraud::FraudRule::StepUpCodeGuessing));
    assert!(crate::domain::security::totp::enabled(&s));
}

#[test]
fn an_operator_reset_clears_totp_pending_and_recovery_codes() {
    let mut s = opened(1, T0);
    enrol_totp(&mut s, 100, &[1, 2], T0);
    run(
        &p(),
        &mut s,
        &begin(ChallengeProof::TotpStep(101), true),
        T0,
    )
    .unwrap();
    let reset = Command::ResetTotp {
        reason: "lost phone, ticket 7".into(),
    };
    run(&p(), &mut s, &reset, T0).unwrap();
    assert!(s.security.totp.is_none());
    assert!(s.security.totp_pending.is_none());
    assert!(s.security.recovery_codes.is_empty());
    assert_eq!(last_change(&s), Some(SecurityChange::TotpReset));
    // Again: nothing to clear.
    assert_eq!(decide(&p(), &s, &reset, T0), Ok(Vec::new()));
}

#[test]
fn a_pending_enrolment_expires() {
    let mut s = opened(1, T0);
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
        &begin(ChallengeProof::Code([9; 32]), false),
        T0,
    )
    .unwrap();
    let confirm = Command::ConfirmTotp {
        step: Some(1),
        recovery: Vec::new(),
    };
    assert_eq!(
        decide(&p(), &s, &confirm, T0.plus_ms(16 * MINUTE_MS)),
        Err(Rejection::UnknownOperation)
    );
}

#[test]
fn a_password_change_notifies_security_changed() {
    let mut s = opened(1, T0);
    run(
        &p(),
        &mut s,
        &Command::StartPasswordReset { code_hash: [3; 32] },
        T0,
    )
    .unwrap();
    run(
        &p(),
        &mut s,
        &Command::ConfirmPasswordReset {
            code_hash: [3; 32],
            password_hash: "new".into(),
        },
        T0,
    )
    .unwrap();
    assert_eq!(last_change(&s), Some(SecurityChange::PasswordChanged));
}
