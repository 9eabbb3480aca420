//! A shard's life on one executor in cluster mode (`--node-id`): hosted once
//! this node holds its lease, dropped at once when the lease is lost, handed
//! over (drained, checkpointed, dropped) when another node should own it.
//!
//! The lease driver (`crate::cluster::node`) sends [`Msg::Host`],
//! [`Msg::Unhost`] and [`Msg::Release`]; an append or a history row write
//! refused for its epoch ([`StoreError::LeaseLost`]) drops the shard here
//! without waiting for the driver, since the storage already said another node
//! owns it. A shard is hosted under the epoch its lease had when it was taken,
//! and its row writes carry that epoch. Messages for a
//! shard this executor does not host are answered with a retryable
//! `Unavailable` (a saga credit with "ask again", so the transfer goes on once
//! the shard is served somewhere).

use std::collections::VecDeque;

use tokio::sync::oneshot;

use super::{fail_or_retry, Entry, Executor, Msg, Phase, Shard};
use crate::cluster::remote::NOT_SERVED;
use crate::codec::ShardId;
use crate::ids::AccountId;
use crate::runtime::EngineError;
use crate::store::{HistoryRow, StoreError};

impl Shard {
    /// A shard about to be recovered from its checkpoint and log.
    pub(super) fn recovering() -> Shard {
        Shard {
            accounts: Default::default(),
            phase: Phase::Recovering(VecDeque::new()),
            generation: 0,
            next_lsn: 1,
            durable_lsn: 0,
            rows_lsn: 0,
            checkpoint_lsn: 0,
            sealed_records: 0,
            checkpoint_records: 0,
            checkpointing: false,
            hold_checkpoint_until: 0,
            releasing: None,
            epoch: None,
            debits: Default::default(),
        }
    }
}

impl Executor {
    /// This node took `shard`'s lease: recover it (checkpoint, then the log
    /// tail, as at start-up) and serve it; its messages wait meanwhile. A shard
    /// still in memory (a lease taken again after a step-down) is recovered
    /// afresh, since the log may have moved on under another owner.
    pub(super) fn host(&mut self, shard: ShardId) {
        if self.shards.contains_key(&shard) {
            self.drop_shard(shard, "the shard is recovered again");
        }
        // The epoch of this hosting fences its history rows: rows of an earlier
        // hosting never go out under it (`drop_shard` forgets them).
        let epoch = self.shared.leases.as_ref().map(|l| l.epoch(shard));
        if epoch == Some(None) {
            // Lost (or untrusted) already: the lease driver unhosts it next.
            tracing::warn!(%shard, "shard lease lost before the shard was hosted");
            return;
        }
        let mut hosted = Shard::recovering();
        hosted.epoch = epoch.flatten();
        self.shards.insert(shard, hosted);
        self.start_recovery(shard);
        self.set_hosted(shard, true);
    }

    /// The lease on `shard` is gone (expired and taken, or refused): drop it at
    /// once; its waiting clients get a retryable `Unavailable`.
    pub(super) fn unhost(&mut self, shard: ShardId, why: &str) {
        if self.shards.contains_key(&shard) {
            tracing::warn!(%shard, why, "shard dropped");
            self.drop_shard(shard, why);
        }
    }

    /// An append of `shard` was refused for its epoch: this node steps down
    /// (the lease driver may take the shard again later, under a new epoch).
    pub(super) fn lease_lost(&mut self, shard: ShardId) {
        let epoch = self.shards.get(&shard).and_then(|s| s.epoch);
        if let (Some(leases), Some(epoch)) = (&self.shared.leases, epoch) {
            leases.step_down(shard, epoch);
        }
        self.unhost(shard, "an append was refused for its lease epoch");
    }

    /// Cluster mode: the lease epoch of each shard of `rows`, which fences their
    /// write (the rows are refused unless it is still the shard's current
    /// epoch). Rows of a shard not hosted under an epoch are dropped here: the
    /// shard's next host replays their frames and writes them. One node: none.
    pub(super) fn row_epochs(
        &self,
        rows: &mut Vec<(ShardId, AccountId, HistoryRow)>,
    ) -> Vec<(ShardId, u64)> {
        if self.shared.leases.is_none() {
            return Vec::new();
        }
        let mut epochs: Vec<(ShardId, u64)> = Vec::new();
        let mut unfenced: Vec<ShardId> = Vec::new();
        for (shard, _, _) in rows.iter() {
            if epochs.iter().any(|(s, _)| s == shard) || unfenced.contains(shard) {
                continue;
            }
            match self.shards.get(shard).and_then(|s| s.epoch) {
                Some(epoch) => epochs.push((*shard, epoch)),
                None => unfenced.push(*shard),
            }
        }
        if !unfenced.is_empty() {
            tracing::warn!(shards = ?unfenced, "history rows of shards not hosted dropped");
            rows.retain(|(s, _, _)| !unfenced.contains(s));
        }
        epochs
    }

    /// Row writes refused for their lease epoch: as after a refused append,
    /// another node owns the shard and this one steps down. Nothing is lost: no
    /// checkpoint passed the rows' frames, so the new owner replays them and
    /// writes their rows. A refusal aimed at an earlier hosting of a shard
    /// hosted again since (under a newer epoch) changes nothing. Returns the
    /// refused shards.
    pub(super) fn rows_refused(&mut self, refused: Vec<StoreError>) -> Vec<ShardId> {
        let mut shards = Vec::with_capacity(refused.len());
        for err in refused {
            let StoreError::LeaseLost { shard, held, .. } = err else {
                tracing::error!(error = %err, "a row write refused for no lease epoch");
                continue;
            };
            let shard = ShardId(shard);
            shards.push(shard);
            if self.shards.get(&shard).and_then(|s| s.epoch) == Some(held) {
                if let Some(leases) = &self.shared.leases {
                    leases.step_down(shard, held);
                }
                self.unhost(shard, "a history row write was refused for its lease epoch");
            }
        }
        shards
    }

    /// Starts handing `shard` over: from now on its messages are refused
    /// (retryable), and once its batches are durable, their rows written and a
    /// final checkpoint taken, it leaves memory and `reply` gets `true`.
    pub(super) fn release(&mut self, shard: ShardId, reply: oneshot::Sender<bool>) {
        self.set_hosted(shard, false);
        let Some(s) = self.shards.get_mut(&shard) else {
            let _ = reply.send(true); // not hosted: nothing to hand over
            return;
        };
        // Messages that waited for a recovery are refused like new ones.
        if let Phase::Recovering(queue) = &mut s.phase {
            let waiting = std::mem::take(queue);
            s.releasing = Some(reply);
            for msg in waiting {
                self.not_hosted(msg);
            }
        } else {
            s.releasing = Some(reply);
        }
        self.progress_releases();
    }

    /// Moves every shard being handed over one step on: checkpoint once drained,
    /// drop once checkpointed.
    pub(super) fn progress_releases(&mut self) {
        let releasing: Vec<ShardId> = self
            .shards
            .iter()
            .filter(|(_, s)| s.releasing.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in releasing {
            // Its rows held back go: a hand-over waits for every row written.
            self.rows.release_shard(id);
            let in_pipeline = self.open.frames.iter().any(|(s, _)| *s == id)
                || self.sealed.iter().any(|b| {
                    b.appends.iter().any(|a| a.shard == id)
                        || b.frames.iter().any(|(s, _)| *s == id)
                });
            let Some(s) = self.shards.get(&id) else {
                continue;
            };
            let drained = matches!(s.phase, Phase::Ready)
                && !in_pipeline
                && s.durable_lsn + 1 == s.next_lsn
                && s.rows_lsn >= s.durable_lsn
                && !s.checkpointing
                && self.rows.written_batch >= s.hold_checkpoint_until;
            if !drained {
                continue;
            }
            if s.checkpoint_lsn < s.durable_lsn {
                self.checkpoint(id, true);
                continue;
            }
            let reply = self.shards.get_mut(&id).and_then(|s| s.releasing.take());
            self.drop_shard(id, "the shard moved to another node");
            if let Some(reply) = reply {
                let _ = reply.send(true);
            }
        }
    }

    /// Answers a message for a shard this executor does not serve (never had,
    /// dropped, or being handed over): retryable for clients, "ask again" for a
    /// saga credit, dropped for a saga answer (the source's owner re-asks).
    pub(super) fn not_hosted(&mut self, msg: Msg) {
        if let Some(remote) = &self.shared.remote {
            let shard = match &msg {
                Msg::Credit(req) => Some(self.shared.layout.shard_of(req.to)),
                Msg::Answer(ans) => Some(self.shared.layout.shard_of(ans.transfer.account)),
                _ => None,
            };
            // Saga messages for a shard served elsewhere travel through its
            // inbox; one being handed over from here is asked again later.
            if shard.is_some_and(|s| !self.shards.contains_key(&s)) {
                return remote.send_saga(msg);
            }
        }
        let err = EngineError::Unavailable(NOT_SERVED.into());
        fail_or_retry(msg, &err, &mut self.local);
    }

    fn set_hosted(&self, shard: ShardId, hosted: bool) {
        if let Some(remote) = &self.shared.remote {
            remote.set_hosted(shard, hosted);
        }
    }

    /// Removes `shard` from memory with everything decided on it and not yet
    /// durable; clients waiting on it get `Unavailable`.
    fn drop_shard(&mut self, shard_id: ShardId, why: &str) {
        self.set_hosted(shard_id, false);
        let Some(shard) = self.shards.remove(&shard_id) else {
            return;
        };
        let err = EngineError::Unavailable(format!("{why}; retry"));
        let mut resident = 0;
        for (_, entry) in shard.accounts {
            match entry {
                Entry::Ready(slot) => {
                    resident += 1;
                    for (_, w) in slot.waiters {
                        let _ = w.send(Err(err.clone()));
                    }
                }
                Entry::Loading(queue) => {
                    for msg in queue {
                        fail_or_retry(msg, &err, &mut self.local);
                    }
                }
            }
        }
        if let Phase::Recovering(queue) = shard.phase {
            for msg in queue {
                fail_or_retry(msg, &err, &mut self.local);
            }
        }
        if let Some(reply) = shard.releasing {
            let _ = reply.send(false);
        }
        self.forget_undurable(shard_id, resident, &err);
        self.rows.forget_shard(shard_id);
        self.rounds_since_checkpoint.remove(&shard_id);
        // `Ready` waiters wait only for hosted shards.
        if self.all_ready() {
            for w in self.ready_waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }
}
