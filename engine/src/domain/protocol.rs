//! `handle`: one command against one account, as the runtime runs it — decide,
//! apply, and say what to answer and which saga step follows. The runtime never
//! looks inside events to guess a reply: everything it needs is in the
//! [`Decision`].

use crate::domain::command::Command;
use crate::domain::event::{Event, EventBody};
use crate::domain::rejection::Rejection;
use crate::domain::state::{AccountState, OpRecord, TransferStatus};
use crate::domain::view::{op_view, Outcome};
use crate::domain::{apply, decide};
use crate::ids::OpId;
use crate::policy::Policy;
use crate::time::Timestamp;

/// What the caller of a command is told, once the events (if any) are durable.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// The command's outcome.
    Outcome(Outcome),
    /// Refused (after durable side effects when `events` is not empty).
    Rejected(Rejection),
    /// A transfer of this account: answer when transfer `n` is final (completed
    /// or reversed); see [`transfer_reply`].
    Transfer(u64),
}

/// The saga step a command's events start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SagaStep {
    /// Transfer `n` was debited: once that is durable, ask the destination to credit.
    Debited(u64),
    /// Transfer `n` was completed or reversed at the source: answer its waiters.
    Finished(u64),
}

/// The result of [`handle`].
#[derive(Debug)]
pub struct Decision {
    /// Events already applied to the state; empty when nothing changed.
    pub events: Vec<Event>,
    pub reply: Reply,
    pub saga: Option<SagaStep>,
}

/// Decides `cmd` on `state` at `now`, applies the events to `state`, and says
/// what to answer. On a refusal without side effects `events` is empty and
/// `state` is unchanged.
pub fn handle(
    policy: &Policy,
    state: &mut AccountState,
    cmd: &Command,
    now: Timestamp,
) -> Decision {
    let events = match decide(policy, state, cmd, now) {
        Ok(events) => events,
        Err(rejection) => {
            return Decision {
                events: Vec::new(),
                reply: Reply::Rejected(rejection),
                saga: None,
            }
        }
    };
    if events.is_empty() {
        // Already done: an idempotent replay or a no-op change.
        let replayed_transfer = replayed_op(state, cmd)
            .filter(|n| matches!(state.ops.get(n), Some(OpRecord::Transfer { .. })));
        let reply = match replayed_transfer {
            Some(n) => Reply::Transfer(n),
            None => Reply::Outcome(outcome_of(state, cmd, &[], now)),
        };
        return Decision {
            events,
            reply,
            saga: None,
        };
    }
    for e in &events {
        apply(state, e);
    }
    if let Some(
        EventBody::Refused { rejection }
        | EventBody::CreditRefused {
            reason: rejection, ..
        },
    ) = events.last().map(|e| &e.body)
    {
        let reply = Reply::Rejected(*rejection);
        return Decision {
            events,
            reply,
            saga: None,
        };
    }
    let debited = events.iter().find_map(|e| match e.body {
        EventBody::TransferDebited { op, .. } => Some(op),
        _ => None,
    });
    if let Some(n) = debited {
        // A transfer (direct, or released by a passed challenge).
        return Decision {
            events,
            reply: Reply::Transfer(n),
            saga: Some(SagaStep::Debited(n)),
        };
    }
    let (reply, saga) = match cmd {
        Command::CompleteTransfer { transfer } | Command::ReverseTransfer { transfer, .. } => (
            Reply::Outcome(Outcome::Done),
            Some(SagaStep::Finished(transfer.n)),
        ),
        _ => (Reply::Outcome(outcome_of(state, cmd, &events, now)), None),
    };
    Decision {
        events,
        reply,
        saga,
    }
}

/// The answer for transfer `n` of `state`: `None` while it is in flight.
pub fn transfer_reply(state: &AccountState, n: u64) -> Option<Result<Outcome, Rejection>> {
    match state.ops.get(&n) {
        Some(OpRecord::Transfer {
            status: TransferStatus::InFlight,
            ..
        }) => None,
        _ => Some(transfer_result(state, n)),
    }
}

/// The answer for transfer `n` once it is final. A transfer no longer retained
/// (past the idempotency window) reads as `UnknownOperation`.
fn transfer_result(state: &AccountState, n: u64) -> Result<Outcome, Rejection> {
    match op_view(state, n) {
        Some(Outcome::Transfer(view)) => match view.status {
            TransferStatus::Reversed(reason) => Err(reason),
            _ => Ok(Outcome::Transfer(view)),
        },
        _ => Err(Rejection::UnknownOperation),
    }
}

/// The outcome reported for transfer `n` whose credit is durable at the
/// destination: final, even before the source records the completion.
pub fn completed_transfer(state: &AccountState, n: u64) -> Option<Outcome> {
    match op_view(state, n) {
        Some(Outcome::Transfer(mut view)) => {
            view.status = TransferStatus::Completed;
            Some(Outcome::Transfer(view))
        }
        _ => None,
    }
}

/// The operation a replayed request refers to: its idempotency key's operation,
/// for a challenge confirmation the guarded request's.
fn replayed_op(state: &AccountState, cmd: &Command) -> Option<u64> {
    let key = match cmd {
        Command::ConfirmChallenge { n, .. } => &state.challenges.iter().find(|c| c.n == *n)?.key,
        other => other.idempotency_key()?,
    };
    state.idempotency.get(key).map(|e| e.op)
}

/// What a successful command reports, read from the state after `events`.
fn outcome_of(state: &AccountState, cmd: &Command, events: &[Event], now: Timestamp) -> Outcome {
    let account = state.id;
    let minted = events.iter().find_map(|e| e.body.minted_op());
    let op = minted.or_else(|| {
        cmd.idempotency_key()
            .and_then(|k| state.idempotency.get(k))
            .map(|e| e.op)
    });
    let created = |n: Option<u64>| match n {
        Some(n) => Outcome::Created(OpId { account, n }),
        None => Outcome::Done,
    };
    match cmd {
        Command::Open { .. } => Outcome::Opened { account },
        Command::Credit { .. } => Outcome::Credited,
        Command::CreateSession(_) | Command::AddContact { .. } => created(minted),
        Command::Deposit { .. } | Command::Withdraw { .. } | Command::Transfer { .. } => {
            op.and_then(|n| op_view(state, n)).unwrap_or(Outcome::Done)
        }
        Command::ConfirmChallenge { .. } => minted
            .or_else(|| replayed_op(state, cmd))
            .and_then(|n| op_view(state, n))
            .unwrap_or(Outcome::Done),
        Command::CreateChallenge { key, .. } => {
            created(minted.or_else(|| {
                crate::domain::security::live_challenge_for(state, key, now).map(|c| c.n)
            }))
        }
        Command::SettleWithdrawal { .. }
        | Command::FailWithdrawal { .. }
        | Command::CompleteTransfer { .. }
        | Command::ReverseTransfer { .. }
        | Command::SetStatus { .. }
        | Command::SetKycTier { .. }
        | Command::RevokeSession { .. }
        | Command::RevokeSessions { .. }
        | Command::RemoveContact { .. }
        | Command::LoginFailed
        | Command::StartPasswordReset { .. }
        | Command::ConfirmPasswordReset { .. }
        | Command::BeginTotp { .. }
        | Command::ConfirmTotp { .. }
        | Command::SubmitKyc(_)
        | Command::ReviewKyc { .. }
        | Command::CheckResetCode { .. }
        | Command::RequestSecurityCode { .. }
        | Command::RemoveTotp { .. }
        | Command::RegenerateRecoveryCodes { .. }
        | Command::ResetTotp { .. }
        | Command::SetLocale { .. } => Outcome::Done,
    }
}
