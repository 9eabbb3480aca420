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
//! durable before its debit — except that between two shards of one executor,
//! on a log whose appends land whole, the whole saga runs at once (the
//! executor's `settle_early`): the credit is decided into the batch the debit
//! joins, and the source records its debit and its completion (or, refused,
//! its reversal) as **one record** beside it. Durable together or not at all,
//! that transfer is never in flight: no request, no answer, no second record
//! at the source, and the client is answered when that one batch lands.
//! The destination records its decision (credited or
//! refused) by transfer id and answers a duplicate with it, so asking again
//! after a crash or a lost answer is always safe. The source re-asks every
//! transfer it finds in flight when its shard is recovered, however old.
//!
//! # Forgetting: a watermark per source shard, not an age
//!
//! Each request carries its debit's position in the source shard's log
//! (`debit_lsn`) and the source shard's **watermark** (`settled_below`): the
//! position below which every transfer that shard debited has its completion or
//! reversal durable, so that no request for it is ever sent again. A transfer
//! keeps the watermark at or below its own `debit_lsn` until it is settled.
//! The destination keeps the highest watermark it has seen per source shard
//! (shared by a node's executors, persisted in the shard's checkpoint), drops a
//! request below it unanswered (a stale duplicate, e.g. an inbox entry replayed
//! after a hand-over), and forgets its remembered decisions below it when it
//! checkpoints or compacts the account. So nothing is forgotten while its
//! source may still ask, and nothing is kept after.
//!
//! Between shards of one executor these are plain values handed along in the
//! executor's own queue; between executors, one message carries every request
//! (or answer) produced by one durable batch.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::codec::ShardId;

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
    /// The debit's position in the source shard's log.
    pub debit_lsn: u64,
    /// The source shard's watermark when this was sent (see the module doc).
    pub settled_below: u64,
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
    /// The request for transfer `n` of `state`, if it is still in flight, its
    /// debit at `debit_lsn` of a shard whose watermark is `settled_below`.
    pub fn of(
        state: &AccountState,
        n: u64,
        attempt: u32,
        (debit_lsn, settled_below): (u64, u64),
    ) -> Option<CreditRequest> {
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
                debit_lsn,
                settled_below,
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
            debit_lsn: self.debit_lsn,
        }
    }
}

/// Whether transfer `n` of `state` is in flight (debited, neither completed nor
/// reversed).
pub(crate) fn in_flight(state: &AccountState, n: u64) -> bool {
    matches!(
        state.ops.get(&n),
        Some(OpRecord::Transfer {
            status: TransferStatus::InFlight,
            ..
        })
    )
}

/// The source's side of the watermark: the transfers of one shard that are
/// debited durably and not yet settled durably, by debit position.
#[derive(Debug, Default)]
pub(crate) struct OpenDebits {
    by_transfer: FxHashMap<(AccountId, u64), u64>,
    /// How many open transfers each debit position holds.
    positions: BTreeMap<u64, u32>,
}

impl OpenDebits {
    /// Transfer `n` of `account` is debited durably at `debit_lsn` (again:
    /// the first position stays).
    pub fn open(&mut self, account: AccountId, n: u64, debit_lsn: u64) {
        if let std::collections::hash_map::Entry::Vacant(e) = self.by_transfer.entry((account, n)) {
            e.insert(debit_lsn);
            *self.positions.entry(debit_lsn).or_default() += 1;
        }
    }

    /// Transfer `n` of `account` is completed or reversed durably.
    pub fn settle(&mut self, account: AccountId, n: u64) {
        let Some(lsn) = self.by_transfer.remove(&(account, n)) else {
            return;
        };
        if let std::collections::btree_map::Entry::Occupied(mut e) = self.positions.entry(lsn) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }

    /// Where transfer `n` of `account` was debited, if it is open.
    pub fn debit_lsn(&self, account: AccountId, n: u64) -> Option<u64> {
        self.by_transfer.get(&(account, n)).copied()
    }

    /// The shard's watermark with every frame up to `durable_lsn` durable: no
    /// open transfer's debit lies below it, and every frame after the durable
    /// ones lies at or above it. Legacy positions (unknown, `u64::MAX`) never
    /// hold it back: their credits are recorded as legacy, forgotten by age.
    pub fn watermark(&self, durable_lsn: u64) -> u64 {
        let open = self.positions.keys().next().copied().unwrap_or(u64::MAX);
        open.min(durable_lsn.saturating_add(1))
    }

    /// Every open transfer: account, number, debit position (for checkpoints).
    pub fn all(&self) -> Vec<(AccountId, u64, u64)> {
        let mut all: Vec<_> = self
            .by_transfer
            .iter()
            .map(|(&(a, n), &lsn)| (a, n, lsn))
            .collect();
        all.sort_unstable();
        all
    }

    pub fn clear(&mut self) {
        self.by_transfer.clear();
        self.positions.clear();
    }
}

/// The destination's side: the highest watermark known per source shard, shared
/// by a node's executors (an executor hosting the source raises it as its
/// transfers settle; requests from other nodes raise it with what they carry;
/// recovery raises it with what the shard's checkpoint recorded). Watermarks
/// only rise, so reading a stale one only forgets later, never too early.
#[derive(Debug)]
pub(crate) struct Watermarks(Vec<AtomicU64>);

impl Watermarks {
    pub fn new(shards: u16) -> Self {
        Watermarks((0..shards).map(|_| AtomicU64::new(0)).collect())
    }

    /// The watermark of `source` (0 for a shard number out of range).
    pub fn get(&self, source: ShardId) -> u64 {
        self.0
            .get(usize::from(source.0))
            .map_or(0, |w| w.load(Ordering::Acquire))
    }

    /// Raises the watermark of `source` to `below` (never lowers it).
    pub fn raise(&self, source: ShardId, below: u64) {
        if let Some(w) = self.0.get(usize::from(source.0)) {
            // Read first: most requests carry a watermark already known, and a
            // read leaves the cache line shared between executors.
            if w.load(Ordering::Acquire) < below {
                w.fetch_max(below, Ordering::AcqRel);
            }
        }
    }

    /// Every known (non-zero) watermark, for a checkpoint.
    pub fn known(&self) -> Vec<(ShardId, u64)> {
        self.0
            .iter()
            .enumerate()
            .filter_map(|(i, w)| {
                let below = w.load(Ordering::Acquire);
                // unwrap-free: built from a u16 count.
                (below > 0).then(|| (ShardId(u16::try_from(i).unwrap_or(u16::MAX)), below))
            })
            .collect()
    }
}

/// The destination's answer for its decision on a credit (given once the
/// decision, or the earlier identical one, is durable).
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
