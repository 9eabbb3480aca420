//! `decide`: the business rules. Given the account's state, a command and `now`,
//! it returns the events to persist or the rejection. It never mutates, reads a
//! clock, or does I/O, so every rule is a plain unit test.
//!
//! Checks run in a fixed precedence: existence, idempotency, self-transfer,
//! status, tier limits, funds, fraud rules (velocity, fan-out), step-up. A command
//! whose refusal has side effects (an alert, a freeze) returns those events followed
//! by [`EventBody::Refused`].

use rust_decimal::Decimal;

use crate::domain::command::{Command, DepositMethod, WithdrawalMethod};
use crate::domain::event::{Event, EventBody, RequestRef};
use crate::domain::fraud::{self, FraudRule, Verdict};
use crate::domain::rejection::Rejection;
use crate::domain::security;
use crate::domain::state::{
    AccountState, AccountStatus, CreditMark, OpRecord, TransferStatus, WithdrawalStatus,
};
use crate::ids::IdempotencyKey;
use crate::money::Amount;
use crate::policy::Policy;
use crate::time::Timestamp;

/// Decides what `cmd` does to `state` at `now` under `policy`.
/// `Ok(vec![])` means "already done": an idempotent replay or a no-op.
///
/// Events that move money are checked against the ledger's invariants before
/// they are handed back ([`crate::domain::invariants`]): a decision that would
/// break one is replaced by the fail-stop (alert, freeze, `LedgerInvariant`), in
/// release builds too.
pub fn decide(
    policy: &Policy,
    state: &AccountState,
    cmd: &Command,
    now: Timestamp,
) -> Result<Vec<Event>, Rejection> {
    let events = decide_rules(policy, state, cmd, now)?;
    Ok(crate::domain::invariants::guard(state, events, now))
}

/// The business rules themselves (see [`decide`]).
fn decide_rules(
    policy: &Policy,
    state: &AccountState,
    cmd: &Command,
    now: Timestamp,
) -> Result<Vec<Event>, Rejection> {
    let ev = |body| Event { at: now, body };
    if let Command::Open {
        profile,
        password_hash,
    } = cmd
    {
        return if state.opened {
            Err(Rejection::AlreadyExists)
        } else {
            Ok(vec![ev(EventBody::Opened {
                profile: profile.clone(),
                password_hash: password_hash.clone(),
            })])
        };
    }
    if !state.opened {
        return Err(match cmd {
            Command::Credit { .. } => Rejection::RecipientNotFound,
            _ => Rejection::AccountNotFound,
        });
    }
    if let Some(key) = cmd.idempotency_key() {
        match replay(policy, state, key, cmd.fingerprint(), now) {
            Some(Ok(())) => return Ok(Vec::new()),
            Some(Err(r)) => return Err(r),
            None => {}
        }
    }
    let request = |key: &IdempotencyKey| RequestRef {
        key: key.clone(),
        fingerprint: cmd.fingerprint(),
    };
    match cmd {
        Command::Open { .. } => unreachable!("handled above"),
        Command::Deposit {
            key,
            amount,
            method,
            card,
        } => {
            if state.status == AccountStatus::Closed {
                return Err(Rejection::AccountClosed);
            }
            let rule = match method {
                DepositMethod::BankCard => policy.deposit_fees.bank_card,
                DepositMethod::CreditCard => policy.deposit_fees.credit_card,
            };
            let fee = rule.fee(*amount);
            if fee >= amount.value() {
                return Err(Rejection::AmountTooSmall);
            }
            if !fits_cap(policy, state, *amount, amount.value() - fee) {
                return Err(Rejection::LimitExceeded);
            }
            Ok(vec![ev(EventBody::Deposited {
                op: state.next_op,
                request: request(key),
                amount: *amount,
                fee,
                method: *method,
                card: card.clone(),
            })])
        }
        Command::Withdraw {
            key,
            amount,
            method,
            destination,
            step_up_verified,
        } => {
            if let Some(r) = state.status.outgoing_refusal() {
                return Err(r);
            }
            if !policy.tier(state.kyc_tier).withdrawals {
                return Err(Rejection::KycRequired);
            }
            check_limits(policy, state, *amount, now)?;
            let rule = match method {
                WithdrawalMethod::BankCard => policy.withdrawal_fees.bank_card,
                WithdrawalMethod::ThirdParty => policy.withdrawal_fees.third_party,
            };
            let fee = rule.fee(*amount);
            if fee >= amount.value() {
                return Err(Rejection::AmountTooSmall);
            }
            if state.available(amount.currency()) < amount.value() {
                return Err(Rejection::InsufficientFunds);
            }
            if let Some(verdict) = fraud::velocity(&policy.fraud, state, *amount, now) {
                return blocked(state, verdict, now);
            }
            if let Some(verdict) = fraud::quick_withdrawal(&policy.security, state, *amount, now) {
                return Ok(vec![
                    alert(state, verdict, now, 0),
                    ev(EventBody::StatusChanged {
                        from: state.status,
                        to: AccountStatus::Restricted,
                        reason: "Held for review: most of a recent deposit is being withdrawn. Contact support to lift it.".into(),
                    }),
                    ev(EventBody::Refused {
                        rejection: Rejection::AccountRestricted,
                    }),
                ]);
            }
            if fraud::needs_step_up(&policy.fraud, state, *amount, *step_up_verified, now) {
                return Err(Rejection::ChallengeRequired);
            }
            Ok(vec![ev(EventBody::WithdrawalRequested {
                op: state.next_op,
                request: request(key),
                amount: *amount,
                fee,
                method: *method,
                destination: destination.clone(),
            })])
        }
        Command::SettleWithdrawal { id } => {
            match withdrawal_status(policy, state, id.n, id.account, now)? {
                WithdrawalStatus::Processing => {
                    Ok(vec![ev(EventBody::WithdrawalSettled { op: id.n })])
                }
                WithdrawalStatus::Completed => Ok(Vec::new()),
                WithdrawalStatus::Failed { .. } => Err(Rejection::OperationClosed),
            }
        }
        Command::FailWithdrawal { id, reason } => {
            match withdrawal_status(policy, state, id.n, id.account, now)? {
                WithdrawalStatus::Processing => Ok(vec![ev(EventBody::WithdrawalFailed {
                    op: id.n,
                    reason: reason.clone(),
                })]),
                WithdrawalStatus::Failed { .. } => Ok(Vec::new()),
                WithdrawalStatus::Completed => Err(Rejection::OperationClosed),
            }
        }
        Command::Transfer {
            key,
            to,
            amount,
            memo,
            step_up_verified,
        } => {
            if *to == state.id {
                return Err(Rejection::SameAccount);
            }
            if let Some(r) = state.status.outgoing_refusal() {
                return Err(r);
            }
            check_limits(policy, state, *amount, now)?;
            let fee = policy.transfer_fee.fee(*amount);
            if state.available(amount.currency()) < amount.value() + fee {
                return Err(Rejection::InsufficientFunds);
            }
            if let Some(verdict) = fraud::velocity(&policy.fraud, state, *amount, now) {
                return blocked(state, verdict, now);
            }
            if let Some(verdict) = fraud::fan_out(&policy.fraud, state, *to, now) {
                return Ok(vec![
                    alert(state, verdict, now, 0),
                    ev(EventBody::StatusChanged {
                        from: state.status,
                        to: AccountStatus::Frozen,
                        reason: "Frozen by fraud monitoring: money sent to many new recipients in a short time.".into(),
                    }),
                    ev(EventBody::Refused {
                        rejection: Rejection::AccountFrozen,
                    }),
                ]);
            }
            if fraud::needs_step_up(&policy.fraud, state, *amount, *step_up_verified, now) {
                return Err(Rejection::ChallengeRequired);
            }
            Ok(vec![ev(EventBody::TransferDebited {
                op: state.next_op,
                request: request(key),
                to: *to,
                amount: *amount,
                fee,
                memo: memo.clone(),
                new_recipient: !state.known_recipients.contains(to),
            })])
        }
        Command::Credit {
            transfer,
            from,
            amount,
            memo,
            debit_lsn,
        } => {
            // Decided once: a duplicate (the source asking again after a crash or
            // a lost answer) gets the first decision. Entries are forgotten only
            // once the source has settled the transfer (`prune_settled`) — and
            // the legacy ones by age, when the source no longer re-drives them.
            let dedupe_since = now.millis() - i64::from(policy.credit_dedupe_retention_s) * 1000;
            match state.credited.get(transfer) {
                Some(mark) if mark.legacy() && mark.at.millis() <= dedupe_since => {}
                Some(CreditMark {
                    refused: Some(reason),
                    ..
                }) => return Err(*reason),
                Some(_) => return Ok(Vec::new()),
                None => {}
            }
            let refused = if *from == state.id {
                Some(Rejection::SameAccount)
            } else if state.status == AccountStatus::Closed
                || !fits_cap(policy, state, *amount, amount.value())
            {
                Some(Rejection::RecipientUnavailable)
            } else {
                None
            };
            Ok(vec![ev(match refused {
                Some(reason) => EventBody::CreditRefused {
                    transfer: *transfer,
                    from: *from,
                    reason,
                    debit_lsn: *debit_lsn,
                },
                None => EventBody::CreditAccepted {
                    transfer: *transfer,
                    from: *from,
                    amount: *amount,
                    memo: memo.clone(),
                    debit_lsn: *debit_lsn,
                },
            })])
        }
        Command::CompleteTransfer { transfer } => {
            match transfer_status(policy, state, transfer.n, transfer.account, now)? {
                TransferStatus::InFlight => {
                    Ok(vec![ev(EventBody::TransferCompleted { op: transfer.n })])
                }
                TransferStatus::Completed => Ok(Vec::new()),
                TransferStatus::Reversed(_) => Err(Rejection::OperationClosed),
            }
        }
        Command::ReverseTransfer { transfer, reason } => {
            match transfer_status(policy, state, transfer.n, transfer.account, now)? {
                TransferStatus::InFlight => Ok(vec![ev(EventBody::TransferReversed {
                    op: transfer.n,
                    reason: *reason,
                })]),
                TransferStatus::Reversed(_) => Ok(Vec::new()),
                TransferStatus::Completed => Err(Rejection::OperationClosed),
            }
        }
        Command::SetStatus { to, reason } => {
            if state.status == AccountStatus::Closed {
                return Err(Rejection::AccountClosed);
            }
            // `Locked` is no status any more (the lockout is `locked_until`):
            // asking for it changes nothing.
            if *to == state.status || *to == AccountStatus::Locked {
                return Ok(Vec::new());
            }
            if *to == AccountStatus::Closed {
                let empty = state.books.iter().all(|b| b.total().is_zero())
                    && !state.ops.values().any(OpRecord::is_open);
                if !empty {
                    return Err(Rejection::AccountNotEmpty);
                }
            }
            Ok(vec![ev(EventBody::StatusChanged {
                from: state.status,
                to: *to,
                reason: reason.clone(),
            })])
        }
        Command::CreateSession(session) => security::decide_session(policy, state, session, now),
        Command::LoginFailed => security::decide_login_failed(policy, state, now),
        Command::StartPasswordReset { code_hash } => {
            security::decide_start_reset(policy, state, *code_hash, now)
        }
        Command::ConfirmPasswordReset {
            code_hash,
            password_hash,
        } => security::decide_confirm_reset(policy, state, *code_hash, password_hash, now),
        Command::CheckResetCode { code_hash } => {
            security::reset::decide_check_code(policy, state, *code_hash, now)
        }
        Command::BeginTotp {
            secret,
            proof,
            replace,
        } => security::totp::decide_begin_totp(policy, state, secret, *proof, *replace, now),
        Command::ConfirmTotp { step, recovery } => {
            security::totp::decide_confirm_totp(state, *step, recovery, now)
        }
        Command::RequestSecurityCode { code_hash } => {
            security::totp::decide_request_code(policy, state, *code_hash, now)
        }
        Command::RemoveTotp { proof } => {
            security::totp::decide_remove_totp(policy, state, *proof, now)
        }
        Command::RegenerateRecoveryCodes { hashes, proof } => {
            security::totp::decide_regenerate_recovery(policy, state, hashes, *proof, now)
        }
        Command::ResetTotp { reason } => security::totp::decide_reset_totp(state, reason, now),
        Command::CreateChallenge {
            key,
            command,
            method,
            code_hash,
        } => {
            security::decide_create_challenge(policy, state, key, command, *method, *code_hash, now)
        }
        Command::ConfirmChallenge { n, proof } => {
            security::decide_confirm_challenge(policy, state, *n, *proof, now)
        }
        Command::SubmitKyc(submission) => security::decide_submit_kyc(state, submission, now),
        Command::ReviewKyc { approve, reason } => {
            security::decide_review_kyc(state, *approve, reason.clone(), now)
        }
        Command::RevokeSession { n } => {
            if state.sessions.iter().any(|s| s.n == *n) {
                Ok(vec![ev(EventBody::SessionRevoked { n: *n })])
            } else {
                Err(Rejection::UnknownOperation)
            }
        }
        Command::RevokeSessions { except } => {
            if state.sessions.iter().any(|s| Some(s.n) != *except) {
                Ok(vec![ev(EventBody::SessionsRevoked { except: *except })])
            } else {
                Ok(Vec::new())
            }
        }
        Command::AddContact { alias, account } => {
            if *account == state.id {
                return Err(Rejection::SameAccount);
            }
            if state.contacts.iter().any(|c| c.account == *account) {
                return Err(Rejection::AlreadyExists);
            }
            if state.contacts.len() >= crate::domain::state::MAX_CONTACTS {
                return Err(Rejection::LimitExceeded);
            }
            Ok(vec![ev(EventBody::ContactAdded {
                op: state.next_op,
                alias: alias.clone(),
                account: *account,
            })])
        }
        Command::RemoveContact { n } => {
            if state.contacts.iter().any(|c| c.n == *n) {
                Ok(vec![ev(EventBody::ContactRemoved { n: *n })])
            } else {
                Err(Rejection::UnknownOperation)
            }
        }
        Command::SetLocale { locale } => {
            if *locale == state.locale {
                Ok(Vec::new())
            } else {
                Ok(vec![ev(EventBody::LocaleSet { locale: *locale })])
            }
        }
        Command::SetKycTier { tier } => {
            if *tier == state.kyc_tier {
                Ok(Vec::new())
            } else {
                Ok(vec![ev(EventBody::KycTierChanged {
                    from: state.kyc_tier,
                    to: *tier,
                })])
            }
        }
    }
}

/// `Some(Ok)`: the same request was already executed; `Some(Err)`: the key was used
/// for another request; `None`: a new key (or one past its retention).
fn replay(
    policy: &Policy,
    state: &AccountState,
    key: &IdempotencyKey,
    fingerprint: u64,
    now: Timestamp,
) -> Option<Result<(), Rejection>> {
    let entry = state.idempotency.get(key)?;
    let retained_since = now.millis() - i64::from(policy.idempotency_retention_s) * 1000;
    if entry.at.millis() <= retained_since {
        return None;
    }
    Some(if entry.fingerprint == fingerprint {
        Ok(())
    } else {
        Err(Rejection::IdempotencyConflict)
    })
}

/// Single and daily limits of the account's tier for an outgoing `amount`.
fn check_limits(
    policy: &Policy,
    state: &AccountState,
    amount: Amount,
    now: Timestamp,
) -> Result<(), Rejection> {
    let tier = policy.tier(state.kyc_tier);
    if amount.value() > tier.single_max {
        return Err(Rejection::LimitExceeded);
    }
    let used = state.daily.used_on(now.utc_day(), amount.currency());
    if used + amount.value() > tier.daily_out_max {
        return Err(Rejection::LimitExceeded);
    }
    Ok(())
}

/// Whether receiving `incoming` keeps the account under its tier's balance cap.
fn fits_cap(policy: &Policy, state: &AccountState, amount: Amount, incoming: Decimal) -> bool {
    match policy.tier(state.kyc_tier).balance_max {
        None => true,
        Some(max) => {
            let total = state
                .book(amount.currency())
                .map_or(Decimal::ZERO, |b| b.total());
            total + incoming <= max
        }
    }
}

/// The operation `n` if this account still remembers it: open operations always,
/// finished ones for `idempotency_retention_s` after their last change (the same
/// horizon `compact` uses, so compaction never changes a decision).
fn remembered_op<'a>(
    policy: &Policy,
    state: &'a AccountState,
    n: u64,
    account: crate::ids::AccountId,
    now: Timestamp,
) -> Option<&'a OpRecord> {
    let since = now.millis() - i64::from(policy.idempotency_retention_s) * 1000;
    state
        .ops
        .get(&n)
        .filter(|op| account == state.id && (op.is_open() || op.last_change().millis() > since))
}

fn withdrawal_status(
    policy: &Policy,
    state: &AccountState,
    n: u64,
    account: crate::ids::AccountId,
    now: Timestamp,
) -> Result<WithdrawalStatus, Rejection> {
    match remembered_op(policy, state, n, account, now) {
        Some(OpRecord::Withdrawal { status, .. }) => Ok(status.clone()),
        _ => Err(Rejection::UnknownOperation),
    }
}

fn transfer_status(
    policy: &Policy,
    state: &AccountState,
    n: u64,
    account: crate::ids::AccountId,
    now: Timestamp,
) -> Result<TransferStatus, Rejection> {
    match remembered_op(policy, state, n, account, now) {
        Some(OpRecord::Transfer { status, .. }) => Ok(*status),
        _ => Err(Rejection::UnknownOperation),
    }
}

/// An alert event for `verdict`, numbered after `offset` other new operations of
/// the same decision.
fn alert(state: &AccountState, verdict: Verdict, now: Timestamp, offset: u64) -> Event {
    Event {
        at: now,
        body: EventBody::AlertRaised {
            op: state.next_op + offset,
            rule: verdict.rule,
            severity: verdict.severity,
            action: verdict.action,
            message: verdict.message,
        },
    }
}

/// A velocity block: an alert the first time the condition holds, and the refusal.
fn blocked(
    state: &AccountState,
    verdict: Verdict,
    now: Timestamp,
) -> Result<Vec<Event>, Rejection> {
    debug_assert!(matches!(
        verdict.rule,
        FraudRule::VelocityCount | FraudRule::VelocitySum
    ));
    if state.raised.velocity {
        return Err(Rejection::VelocityBlocked);
    }
    Ok(vec![
        alert(state, verdict, now, 0),
        Event {
            at: now,
            body: EventBody::Refused {
                rejection: Rejection::VelocityBlocked,
            },
        },
    ])
}
