//! The transfer saga as an explicit state machine, and the messages it sends.
//!
//! ```text
//!  source                               destination
//!  Transfer → TransferDebited (durable)
//!     └── CreditRequest ───────────────→ Credit → TransferCredited (durable)
//!                                          or refused (no record)
//!     ┌── CreditAnswer ←─────────────────┘
//!  Credited → CompleteTransfer   (client answered at once: both sides durable)
//!  Refused  → ReverseTransfer    (client answered when the reversal is durable)
//!  Retry    → ask again later    (storage trouble at the destination)
//! ```
//!
//! The debit is durable before any credit is asked, so a credit never becomes
//! durable before its debit. The destination deduplicates credits by transfer id,
//! so asking again after a crash or a lost answer is always safe. The source
//! re-asks every transfer it finds in flight when its shard is recovered.
//!
//! Between shards of one executor these are plain values handed along in the
//! executor's own queue; between executors, one message carries every request
//! (or answer) produced by one durable batch.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::protocol::{Decision, Reply};
use crate::domain::state::{AccountState, OpRecord, TransferStatus};
use crate::domain::{Command, Rejection};
use crate::ids::{AccountId, OpId};
use crate::money::Amount;

/// The source asks the destination to credit a transfer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct CreditRequest {
    pub transfer: OpId,
    pub to: AccountId,
    pub amount: Amount,
    pub memo: Option<String>,
    /// How many times it was asked before (for the source's back-off).
    pub attempt: u32,
}

/// The destination's answer to a [`CreditRequest`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct CreditAnswer {
    pub transfer: OpId,
    pub outcome: CreditOutcome,
    /// The request's `attempt`, echoed.
    pub attempt: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum CreditOutcome {
    /// The credit is durable at the destination (now or earlier).
    Credited,
    /// The destination refused it: the source reverses the transfer.
    Refused(Rejection),
    /// The destination could not decide now (storage trouble): ask again.
    Retry,
}

/// What the source does next with an answer.
#[derive(Debug, PartialEq)]
pub(crate) enum SourceStep {
    /// Record the completion (no reply: the client was answered already).
    Complete(Command),
    /// Record the reversal; its waiters are answered once it is durable.
    Reverse(Command),
    /// Ask again after this delay.
    AskAgain(Duration),
}

impl CreditRequest {
    /// The request for transfer `n` of `state`, if it is still in flight.
    pub fn of(state: &AccountState, n: u64, attempt: u32) -> Option<CreditRequest> {
        match state.ops.get(&n) {
            Some(OpRecord::Transfer {
                to,
                amount,
                memo,
                status: TransferStatus::InFlight,
                ..
            }) => Some(CreditRequest {
                transfer: OpId {
                    account: state.id,
                    n,
                },
                to: *to,
                amount: *amount,
                memo: memo.clone(),
                attempt,
            }),
            _ => None,
        }
    }

    /// The answer to this request.
    pub fn answer(&self, outcome: CreditOutcome) -> CreditAnswer {
        CreditAnswer {
            transfer: self.transfer,
            outcome,
            attempt: self.attempt,
        }
    }

    /// The command the destination runs.
    pub fn command(&self) -> Command {
        Command::Credit {
            transfer: self.transfer,
            from: self.transfer.account,
            amount: self.amount,
            memo: self.memo.clone(),
        }
    }
}

/// The destination's answer for its decision on a credit, if it can be given
/// without waiting for durability: a refusal without side effects. Otherwise the
/// answer is `Credited` (or the refusal) once the account's records are durable.
pub(crate) fn credit_outcome(decision: &Decision) -> CreditOutcome {
    match decision.reply {
        Reply::Rejected(r) => CreditOutcome::Refused(r),
        Reply::Outcome(_) | Reply::Transfer(_) => CreditOutcome::Credited,
    }
}

/// The source's next step for `outcome` of transfer `transfer`, `attempt` being
/// how many times it was asked again already.
pub(crate) fn next_step(transfer: OpId, outcome: CreditOutcome, attempt: u32) -> SourceStep {
    match outcome {
        CreditOutcome::Credited => SourceStep::Complete(Command::CompleteTransfer { transfer }),
        CreditOutcome::Refused(reason) => {
            SourceStep::Reverse(Command::ReverseTransfer { transfer, reason })
        }
        // Back off up to a second between attempts; the money stays in flight
        // (and counted by the audit at the source) meanwhile.
        CreditOutcome::Retry => {
            SourceStep::AskAgain(Duration::from_millis((5u64 << attempt.min(8)).min(1000)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op() -> OpId {
        OpId {
            account: AccountId(1),
            n: 3,
        }
    }

    #[test]
    fn answers_map_to_the_next_step() {
        assert_eq!(
            next_step(op(), CreditOutcome::Credited, 0),
            SourceStep::Complete(Command::CompleteTransfer { transfer: op() })
        );
        assert_eq!(
            next_step(
                op(),
                CreditOutcome::Refused(Rejection::RecipientNotFound),
                0
            ),
            SourceStep::Reverse(Command::ReverseTransfer {
                transfer: op(),
                reason: Rejection::RecipientNotFound
            })
        );
        assert_eq!(
            next_step(op(), CreditOutcome::Retry, 0),
            SourceStep::AskAgain(Duration::from_millis(5))
        );
        assert_eq!(
            next_step(op(), CreditOutcome::Retry, 30),
            SourceStep::AskAgain(Duration::from_millis(1000))
        );
    }
}
