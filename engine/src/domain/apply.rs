//! `apply`: folds one event into the state. Total (never fails) and deterministic:
//! replaying a journal reproduces the state exactly, notifications and their `seq`
//! included. The ledger's invariants are not asserted here: `decide` checks every
//! money event against them before it exists (`invariants`, in release builds
//! too), and `apply` must replay any journal, old ones included.

use rust_decimal::Decimal;

use crate::domain::event::{Event, EventBody};
use crate::domain::fraud::FraudRule;
use crate::domain::notification::{Direction, Notification, NotificationKind, TxStatus};
use crate::domain::security;
use crate::domain::security::SecurityChange;
use crate::domain::state::{
    AccountState, AccountStatus, AlertRecord, Contact, CreditMark, IdempotencyEntry,
    NewRecipientMark, OpRecord, OutgoingMark, Session, TransferStatus, WithdrawalStatus,
    ALERTS_RETAINED, LEGACY_DEBIT_LSN, MAX_KNOWN_RECIPIENTS, MAX_SESSIONS, NOTIFICATIONS_RETAINED,
};
use crate::ids::{OpId, OpKind};
use crate::money::{Amount, Currency};
use crate::time::Timestamp;

/// Applies `event` to `state`.
pub fn apply(state: &mut AccountState, event: &Event) {
    let at = event.at;
    if let Some(op) = event.body.minted_op() {
        state.next_op = state.next_op.max(op + 1);
    }
    match &event.body {
        EventBody::Opened {
            profile,
            password_hash,
        } => {
            state.opened = true;
            state.opened_at = Some(at);
            state.profile = profile.clone();
            state.password_hash = password_hash.clone();
        }
        EventBody::Deposited {
            op,
            request,
            amount,
            fee,
            method,
            card,
        } => {
            let book = state.book_mut(amount.currency());
            book.available += amount.value() - fee;
            book.deposited += amount.value();
            book.fees += *fee;
            state.ops.insert(
                *op,
                OpRecord::Deposit {
                    amount: *amount,
                    fee: *fee,
                    method: *method,
                    card: card.clone(),
                    at,
                },
            );
            remember(state, request, *op, at);
            // Net of the fee: what actually became spendable.
            state.recent_deposits.push_back(OutgoingMark {
                at,
                amount: amount.value() - fee,
            });
            notify_balance(state, amount.currency(), at);
            notify_tx(
                state,
                *op,
                OpKind::Deposit,
                TxStatus::Completed,
                *amount,
                *fee,
                Direction::In,
                None,
                at,
            );
        }
        EventBody::WithdrawalRequested {
            op,
            request,
            amount,
            fee,
            method,
            destination,
        } => {
            let book = state.book_mut(amount.currency());
            book.available -= amount.value();
            book.held += amount.value();
            state.ops.insert(
                *op,
                OpRecord::Withdrawal {
                    amount: *amount,
                    fee: *fee,
                    method: *method,
                    destination: destination.clone(),
                    status: WithdrawalStatus::Processing,
                    at,
                    updated: at,
                },
            );
            remember(state, request, *op, at);
            mark_outgoing(state, *amount, at);
            security::challenges::mark_unchallenged(state, request, *amount, at);
            notify_balance(state, amount.currency(), at);
            notify_tx(
                state,
                *op,
                OpKind::Withdrawal,
                TxStatus::Processing,
                *amount,
                *fee,
                Direction::Out,
                None,
                at,
            );
        }
        EventBody::WithdrawalSettled { op } => {
            let Some((amount, fee)) = close_withdrawal(state, *op, WithdrawalStatus::Completed, at)
            else {
                return;
            };
            let book = state.book_mut(amount.currency());
            book.held -= amount.value();
            book.fees += fee;
            book.paid_out += amount.value() - fee;
            notify_balance(state, amount.currency(), at);
            notify_tx(
                state,
                *op,
                OpKind::Withdrawal,
                TxStatus::Completed,
                amount,
                fee,
                Direction::Out,
                None,
                at,
            );
        }
        EventBody::WithdrawalFailed { op, reason } => {
            let status = WithdrawalStatus::Failed {
                reason: reason.clone(),
            };
            let Some((amount, fee)) = close_withdrawal(state, *op, status, at) else {
                return;
            };
            let book = state.book_mut(amount.currency());
            book.held -= amount.value();
            book.available += amount.value();
            notify_balance(state, amount.currency(), at);
            notify_tx(
                state,
                *op,
                OpKind::Withdrawal,
                TxStatus::Failed,
                amount,
                fee,
                Direction::Out,
                None,
                at,
            );
        }
        EventBody::TransferDebited {
            op,
            request,
            to,
            amount,
            fee,
            memo,
            new_recipient,
        } => {
            let book = state.book_mut(amount.currency());
            book.available -= amount.value() + fee;
            book.in_flight_out += amount.value() + fee;
            state.ops.insert(
                *op,
                OpRecord::Transfer {
                    to: *to,
                    amount: *amount,
                    fee: *fee,
                    memo: memo.clone(),
                    status: TransferStatus::InFlight,
                    at,
                    updated: at,
                },
            );
            remember(state, request, *op, at);
            mark_outgoing(state, *amount, at);
            security::challenges::mark_unchallenged(state, request, *amount, at);
            if *new_recipient {
                // Bounded: past the cap a first payment keeps counting as one to
                // a new recipient (the fraud rules' safe side).
                if state.known_recipients.len() < MAX_KNOWN_RECIPIENTS {
                    state.known_recipients.insert(*to);
                }
                state
                    .new_recipients
                    .push_back(NewRecipientMark { at, to: *to });
            }
            notify_balance(state, amount.currency(), at);
        }
        EventBody::TransferCredited {
            transfer,
            from,
            amount,
            ..
        }
        | EventBody::CreditAccepted {
            transfer,
            from,
            amount,
            ..
        } => {
            let debit_lsn = match &event.body {
                EventBody::CreditAccepted { debit_lsn, .. } => *debit_lsn,
                _ => LEGACY_DEBIT_LSN,
            };
            state.credited.insert(
                *transfer,
                CreditMark {
                    at,
                    debit_lsn,
                    refused: None,
                },
            );
            state.book_mut(amount.currency()).available += amount.value();
            notify_balance(state, amount.currency(), at);
            notify(
                state,
                at,
                NotificationKind::TransactionUpdated {
                    id: *transfer,
                    kind: OpKind::Transfer,
                    status: TxStatus::Completed,
                    amount: amount.value(),
                    fee: Decimal::ZERO,
                    currency: amount.currency(),
                    direction: Direction::In,
                    counterparty: Some(*from),
                },
            );
        }
        EventBody::TransferCompleted { op } => {
            let Some((to, amount, fee)) = close_transfer(state, *op, TransferStatus::Completed, at)
            else {
                return;
            };
            let book = state.book_mut(amount.currency());
            book.in_flight_out -= amount.value() + fee;
            book.fees += fee;
            notify_tx(
                state,
                *op,
                OpKind::Transfer,
                TxStatus::Completed,
                amount,
                fee,
                Direction::Out,
                Some(to),
                at,
            );
        }
        EventBody::TransferReversed { op, reason } => {
            let Some((to, amount, fee)) =
                close_transfer(state, *op, TransferStatus::Reversed(*reason), at)
            else {
                return;
            };
            let book = state.book_mut(amount.currency());
            book.in_flight_out -= amount.value() + fee;
            book.available += amount.value() + fee;
            notify_balance(state, amount.currency(), at);
            notify_tx(
                state,
                *op,
                OpKind::Transfer,
                TxStatus::Reversed,
                amount,
                fee,
                Direction::Out,
                Some(to),
                at,
            );
        }
        EventBody::StatusChanged { from, to, reason } => {
            if legacy_lockout_status(state, *from, *to) {
                return;
            }
            state.status = *to;
            state.status_reason = Some(reason.clone());
            if *from == AccountStatus::Frozen && *to == AccountStatus::Active {
                // An operator reviewed the account: the fan-out window starts afresh,
                // or the next new recipient would freeze it again at once.
                state.new_recipients.clear();
            }
            notify(
                state,
                at,
                NotificationKind::StatusChanged {
                    from: *from,
                    to: *to,
                    reason: reason.clone(),
                },
            );
        }
        EventBody::KycTierChanged { to, .. } => {
            // Told to the user by the review's `kyc.updated`, which follows.
            state.kyc_tier = *to;
        }
        EventBody::AlertRaised {
            op,
            rule,
            severity,
            action,
            message,
        } => {
            if matches!(rule, FraudRule::VelocityCount | FraudRule::VelocitySum) {
                state.raised.velocity = true;
            }
            security::login_fraud::apply_alert(state, *rule);
            state.alerts.push_back(AlertRecord {
                n: *op,
                rule: *rule,
                severity: *severity,
                action: *action,
                message: message.clone(),
                at,
            });
            while state.alerts.len() > ALERTS_RETAINED {
                state.alerts.pop_front();
            }
            let id = OpId {
                account: state.id,
                n: *op,
            };
            notify(
                state,
                at,
                NotificationKind::AlertRaised {
                    id,
                    rule: *rule,
                    severity: *severity,
                    message: message.clone(),
                    action: *action,
                },
            );
        }
        EventBody::SessionCreated {
            op,
            session,
            new_device,
        } => {
            security::login_fraud::apply_session(state, at, session);
            let id = OpId {
                account: state.id,
                n: *op,
            };
            notify(
                state,
                at,
                NotificationKind::SessionCreated {
                    session: id,
                    device_id: session.device_id.clone(),
                    country: session.country.clone(),
                    new_device: *new_device,
                },
            );
            state.sessions.push(Session {
                n: *op,
                token_hash: session.token_hash,
                device_id: session.device_id.clone(),
                device_name: session.device_name.clone(),
                country: session.country.clone(),
                created_at: at,
                expires_at: session.expires_at,
            });
            if state.sessions.len() > MAX_SESSIONS {
                state.sessions.remove(0);
            }
        }
        EventBody::SessionRevoked { n } => state.sessions.retain(|s| s.n != *n),
        EventBody::SessionsRevoked { except } => {
            state.sessions.retain(|s| Some(s.n) == *except);
        }
        EventBody::ContactAdded { op, alias, account } => state.contacts.push(Contact {
            n: *op,
            alias: alias.clone(),
            account: *account,
        }),
        EventBody::ContactRemoved { n } => state.contacts.retain(|c| c.n != *n),
        EventBody::LoginFailed { locked_until } => {
            security::lockout::apply_login_failed(state, at, *locked_until)
        }
        EventBody::ResetStarted { code } => security::reset::apply_started(state, code),
        EventBody::ResetAttemptFailed => security::reset::apply_attempt_failed(state, at),
        EventBody::PasswordChanged { password_hash } => {
            security::reset::apply_password_changed(state, password_hash);
            notify_security(state, at, SecurityChange::PasswordChanged);
        }
        EventBody::TotpBegun { secret } => security::totp::apply_begun(state, at, secret),
        EventBody::TotpEnabled { step } => security::totp::apply_enabled(state, *step),
        EventBody::ChallengeCreated { challenge } => {
            security::challenges::apply_created(state, challenge)
        }
        EventBody::ChallengeAttemptFailed { n } => {
            security::challenges::apply_attempt_failed(state, at, *n)
        }
        EventBody::ChallengeConsumed { n, totp_step } => {
            security::challenges::apply_consumed(state, *n, *totp_step)
        }
        EventBody::KycSubmitted { submission } => {
            security::kyc::apply_submitted(state, at, submission);
            notify_kyc(state, at);
        }
        EventBody::KycReviewed { approved, reason } => {
            security::kyc::apply_reviewed(state, *approved, reason);
            notify_kyc(state, at);
        }
        EventBody::Refused { .. } => {}
        EventBody::CreditRefused {
            transfer,
            reason,
            debit_lsn,
            ..
        } => {
            state.credited.insert(
                *transfer,
                CreditMark {
                    at,
                    debit_lsn: *debit_lsn,
                    refused: Some(*reason),
                },
            );
        }
        EventBody::SecurityCodeSent { code } => security::totp::apply_code_sent(state, code),
        EventBody::SecurityProofFailed => security::totp::apply_proof_failed(state, at),
        EventBody::SecurityProofPassed { proof } => {
            if let Some(change) = security::totp::apply_proof_passed(state, *proof) {
                notify_security(state, at, change);
            }
        }
        EventBody::TotpActivated { step, recovery } => {
            if let Some(change) = security::totp::apply_activated(state, *step, recovery) {
                notify_security(state, at, change);
            }
        }
        EventBody::TotpRemoved { by_operator, .. } => {
            let change = security::totp::apply_removed(state, *by_operator);
            notify_security(state, at, change);
        }
        EventBody::RecoveryCodesRegenerated { hashes } => {
            security::totp::apply_recovery_regenerated(state, hashes);
            notify_security(state, at, SecurityChange::RecoveryCodesRegenerated);
        }
        EventBody::LocaleSet { locale } => state.locale = *locale,
    }
}

/// Journals written before the lockout became its own fact recorded it as a
/// status change to and from `Locked`. Replayed today, such a change leaves the
/// status alone (the lockout itself is in `LoginFailed`), so an old lockout can't
/// have replaced a freeze either; only an account whose snapshot still says
/// `Locked` leaves that status through the unlock. Other changes out of `Locked`
/// (a freeze, a fraud hold) still apply. Returns whether `from → to` is skipped.
fn legacy_lockout_status(state: &AccountState, from: AccountStatus, to: AccountStatus) -> bool {
    let locking = to == AccountStatus::Locked;
    let unlocking = from == AccountStatus::Locked
        && to == AccountStatus::Active
        && state.status != AccountStatus::Locked;
    locking || unlocking
}

fn remember(
    state: &mut AccountState,
    request: &crate::domain::event::RequestRef,
    op: u64,
    at: Timestamp,
) {
    state.idempotency.insert(
        request.key.clone(),
        IdempotencyEntry {
            fingerprint: request.fingerprint,
            op,
            at,
        },
    );
}

/// Records an outgoing operation for the velocity window and the daily limit; an
/// operation that passed the velocity rule means its condition is false again.
fn mark_outgoing(state: &mut AccountState, amount: Amount, at: Timestamp) {
    state.outgoing.push(OutgoingMark {
        at,
        amount: amount.value(),
    });
    state.raised.velocity = false;
    adjust_daily(state, amount.currency(), amount.value(), at);
}

/// Adds `delta` to the daily outgoing usage of the UTC day of `at`.
fn adjust_daily(state: &mut AccountState, currency: Currency, delta: Decimal, at: Timestamp) {
    let day = at.utc_day();
    if state.daily.day != day {
        state.daily.day = day;
        state.daily.used.clear();
    }
    match state.daily.used.iter_mut().find(|(c, _)| *c == currency) {
        Some((_, used)) => *used = (*used + delta).max(Decimal::ZERO),
        None if delta > Decimal::ZERO => state.daily.used.push((currency, delta)),
        None => {}
    }
}

fn close_withdrawal(
    state: &mut AccountState,
    op: u64,
    new_status: WithdrawalStatus,
    at: Timestamp,
) -> Option<(Amount, Decimal)> {
    let restore_day = matches!(new_status, WithdrawalStatus::Failed { .. });
    let Some(OpRecord::Withdrawal {
        amount,
        fee,
        status,
        updated,
        at: started,
        ..
    }) = state.ops.get_mut(&op)
    else {
        // Never decided (`invariants` refuses closing what is not open); an old
        // journal's stray close changes nothing.
        return None;
    };
    *status = new_status;
    *updated = at;
    let (amount, fee, started) = (*amount, *fee, *started);
    if restore_day && started.utc_day() == at.utc_day() {
        adjust_daily(state, amount.currency(), -amount.value(), at);
    }
    Some((amount, fee))
}

fn close_transfer(
    state: &mut AccountState,
    op: u64,
    new_status: TransferStatus,
    at: Timestamp,
) -> Option<(crate::ids::AccountId, Amount, Decimal)> {
    let restore_day = matches!(new_status, TransferStatus::Reversed(_));
    let Some(OpRecord::Transfer {
        to,
        amount,
        fee,
        status,
        updated,
        at: started,
        ..
    }) = state.ops.get_mut(&op)
    else {
        // As for withdrawals: never decided; a stray close changes nothing.
        return None;
    };
    *status = new_status;
    *updated = at;
    let (to, amount, fee, started) = (*to, *amount, *fee, *started);
    if restore_day && started.utc_day() == at.utc_day() {
        adjust_daily(state, amount.currency(), -amount.value(), at);
    }
    Some((to, amount, fee))
}

fn notify(state: &mut AccountState, at: Timestamp, kind: NotificationKind) {
    state.notification_seq += 1;
    // Room first, then the push: pushing onto a full ring of 256 doubled its
    // buffer to 512 for good, only to drop the oldest right after.
    while state.notifications.len() >= NOTIFICATIONS_RETAINED {
        state.notifications.pop_front();
    }
    state.notifications.push_back(Notification {
        seq: state.notification_seq,
        at,
        kind,
    });
}

fn notify_security(state: &mut AccountState, at: Timestamp, change: SecurityChange) {
    let totp_enabled = security::totp::enabled(state);
    let left = u32::try_from(state.security.recovery_codes.len()).unwrap_or(u32::MAX);
    notify(
        state,
        at,
        NotificationKind::SecurityChanged {
            change,
            totp_enabled,
            recovery_codes_left: left,
        },
    );
}

fn notify_kyc(state: &mut AccountState, at: Timestamp) {
    notify(
        state,
        at,
        NotificationKind::KycUpdated {
            status: state.kyc.status,
            tier: state.kyc_tier,
            reason: state.kyc.reason.clone(),
        },
    );
}

fn notify_balance(state: &mut AccountState, currency: Currency, at: Timestamp) {
    let (available, held) = state
        .book(currency)
        .map_or((Decimal::ZERO, Decimal::ZERO), |b| (b.available, b.held));
    notify(
        state,
        at,
        NotificationKind::BalanceUpdated {
            currency,
            available,
            held,
        },
    );
}

#[allow(clippy::too_many_arguments)]
fn notify_tx(
    state: &mut AccountState,
    op: u64,
    kind: OpKind,
    status: TxStatus,
    amount: Amount,
    fee: Decimal,
    direction: Direction,
    counterparty: Option<crate::ids::AccountId>,
    at: Timestamp,
) {
    let id = OpId {
        account: state.id,
        n: op,
    };
    notify(
        state,
        at,
        NotificationKind::TransactionUpdated {
            id,
            kind,
            status,
            amount: amount.value(),
            fee,
            currency: amount.currency(),
            direction,
            counterparty,
        },
    );
}
