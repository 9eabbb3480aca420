//! Several okpay nodes on one Redis (standalone or Cluster): membership, shard
//! leases with fencing epochs, and an even spread of shards over the live nodes
//! (issue 11). With `--node-id` the engine hosts only the shards it holds a
//! lease for ([`node`] drives the leases and the executors' shard lifecycle).
//!
//! Redis is the only coordinator — no consensus of our own. Each node registers
//! with a heartbeat; each shard is owned by at most one node through a lease that
//! carries a fencing epoch, advanced whenever the lease changes hands; and the
//! shard log's append script refuses a frame whose epoch is not the shard's
//! current one. A node that was paused past its lease (GC, SIGSTOP, a partition)
//! therefore cannot append once another node took its shard, even if it has not
//! noticed yet: the storage, not the node's own clock, has the last word.
//!
//! - [`assignment`]: which live node should own which shard (pure, even, stable);
//! - [`leases`]: one node's registration and leases ([`Leases::tick`]);
//! - [`FencedShardLog`]: a [`ShardLog`] that appends and checkpoints with the
//!   epochs the node holds and steps down from a shard refused for its epoch;
//! - `node`: the lease driver thread of a running engine;
//! - [`remote`]: requests and saga messages for shards other nodes serve.

pub mod assignment;
pub mod leases;
pub(crate) mod node;
pub mod remote;

use std::fmt;
use std::sync::Arc;

pub use leases::{LeaseConfig, Leases, Tick};

use crate::codec::{ShardId, ShardLayout};
use crate::ids::AccountId;
use crate::store::shard_log::redis::RedisShardLog;
use crate::store::shard_log::{ShardAppend, ShardHead, ShardLog, StoredFrame};
use crate::store::{StoreError, StoreFuture};

/// Cluster mode of one engine (`--node-id`): who it is and the timing of its
/// leases and of requests it sends to other nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    pub node: NodeId,
    pub leases: LeaseConfig,
}

impl ClusterConfig {
    pub fn new(node: NodeId) -> Self {
        ClusterConfig {
            node,
            leases: LeaseConfig::default(),
        }
    }
}

/// A node's name (`--node-id`): 1 to 64 characters of `[A-Za-z0-9._-]`, so it
/// can sit in a Redis value separated by a space and in a log line unquoted.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(String);

/// Why a node id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a node id is 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-'")]
pub struct BadNodeId;

impl NodeId {
    pub fn parse(s: &str) -> Result<Self, BadNodeId> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(NodeId(s.to_owned()))
        } else {
            Err(BadNodeId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The shard log as one lease-holding node sees it: appends carry the epoch
/// of the hosting that sealed them ([`ShardAppend::epoch`], else the node's
/// epoch for the shard) and are refused ([`StoreError::LeaseLost`], `held`
/// that epoch) without a round trip when the node does not trust a lease on the
/// shard under that epoch; a refusal by the append script makes the node step
/// down from the shard, unless it holds the shard again under a newer epoch.
/// Checkpoints of a shard not held are refused locally too. Reads are not
/// fenced: any node may read any shard.
pub struct FencedShardLog {
    log: Arc<RedisShardLog>,
    leases: Arc<Leases>,
}

impl FencedShardLog {
    pub fn new(log: Arc<RedisShardLog>, leases: Arc<Leases>) -> Self {
        Self { log, leases }
    }

    pub fn leases(&self) -> &Arc<Leases> {
        &self.leases
    }

    /// A local refusal: `held` is the epoch the write was meant for (0 when
    /// the node holds no trusted lease on the shard at all), `current` the
    /// one the node trusts now (0: none).
    fn not_held(&self, shard: ShardId, held: u64) -> StoreError {
        StoreError::LeaseLost {
            shard: shard.0,
            held,
            current: self.leases.epoch(shard).unwrap_or(0),
        }
    }
}

impl ShardLog for FencedShardLog {
    fn init_layout(&self, proposed: ShardLayout) -> StoreFuture<'_, ShardLayout> {
        self.log.init_layout(proposed)
    }

    fn append(&self, batch: Vec<ShardAppend>) -> StoreFuture<'_, Vec<Result<(), StoreError>>> {
        Box::pin(async move {
            // Frames of shards held go to Redis with their epoch; the others are
            // answered here, in their place in the batch.
            let mut results: Vec<Option<Result<(), StoreError>>> = Vec::with_capacity(batch.len());
            let mut sent = Vec::with_capacity(batch.len());
            let mut positions = Vec::with_capacity(batch.len());
            for (i, append) in batch.into_iter().enumerate() {
                let trusted = self.leases.epoch(append.shard);
                match (append.epoch, trusted) {
                    (None, Some(epoch)) => {
                        positions.push(i);
                        sent.push((append, epoch));
                        results.push(None);
                    }
                    (Some(sealed), Some(epoch)) if sealed == epoch => {
                        positions.push(i);
                        sent.push((append, epoch));
                        results.push(None);
                    }
                    (sealed, _) => {
                        let held = sealed.unwrap_or(0);
                        results.push(Some(Err(self.not_held(append.shard, held))))
                    }
                }
            }
            if !sent.is_empty() {
                let shards: Vec<(ShardId, u64)> = sent.iter().map(|(a, e)| (a.shard, *e)).collect();
                let answered = self.log.append_at_epochs(sent).await?;
                for ((i, (shard, epoch)), result) in positions.into_iter().zip(shards).zip(answered)
                {
                    if matches!(result, Err(StoreError::LeaseLost { .. })) {
                        self.leases.step_down(shard, epoch);
                    }
                    results[i] = Some(result);
                }
            }
            Ok(results
                .into_iter()
                .map(|r| r.unwrap_or_else(|| Err(StoreError::Unavailable("no reply".into()))))
                .collect())
        })
    }

    fn head(&self, shard: ShardId) -> StoreFuture<'_, ShardHead> {
        self.log.head(shard)
    }

    fn read(&self, shard: ShardId, after: u64, limit: usize) -> StoreFuture<'_, Vec<StoredFrame>> {
        self.log.read(shard, after, limit)
    }

    fn checkpoint(
        &self,
        shard: ShardId,
        lsn: u64,
        states: Vec<(AccountId, Vec<u8>)>,
    ) -> StoreFuture<'_, ()> {
        let Some(epoch) = self.leases.epoch(shard) else {
            let err = self.not_held(shard, 0);
            return Box::pin(async move { Err(err) });
        };
        Box::pin(async move {
            let result = self
                .log
                .checkpoint_at(shard, lsn, states, Some(epoch))
                .await;
            if matches!(result, Err(StoreError::LeaseLost { .. })) {
                self.leases.step_down(shard, epoch);
            }
            result
        })
    }

    fn load_account(&self, shard: ShardId, account: AccountId) -> StoreFuture<'_, Option<Vec<u8>>> {
        self.log.load_account(shard, account)
    }

    fn load_accounts<'a>(
        &'a self,
        shard: ShardId,
        accounts: &'a [AccountId],
    ) -> StoreFuture<'a, Vec<Option<Vec<u8>>>> {
        self.log.load_accounts(shard, accounts)
    }

    fn accounts(&self, shard: ShardId) -> StoreFuture<'_, Vec<AccountId>> {
        self.log.accounts(shard)
    }

    fn backend_name(&self) -> &'static str {
        self.log.backend_name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_short_and_plain() {
        assert!(NodeId::parse("okpay-1.eu_west").is_ok());
        assert!(NodeId::parse("").is_err());
        assert!(NodeId::parse("a b").is_err());
        assert!(NodeId::parse(&"x".repeat(65)).is_err());
    }
}
