//! One log per shard: the storage shape of the sharded engine (issue 10).
//!
//! A shard's durable form is a log of batch frames ([`crate::codec::BatchFrame`],
//! one per executor batch that touched the shard) plus an incremental checkpoint:
//! the encoded states of accounts, each written as of some log position, and the
//! shard's checkpoint position. Recovery loads the checkpoint position, replays the
//! frames after it, and loads an account's checkpointed state only when a frame or
//! a request needs that account — so start-up reads the log tail, never every
//! account.
//!
//! Guarantees every backend gives (checked by [`conformance`] on memory, embedded
//! and Redis):
//!
//! - the shard layout (number of shards) is stored with the data on first start and
//!   read back afterwards: [`ShardLog::init_layout`] never changes it;
//! - `append` is durable when it resolves `Ok`, and **fenced**: a frame whose `lsn`
//!   is not exactly the shard's head + 1 is refused with [`StoreError::Fenced`] and
//!   not written, so a stale writer (an old process, a second node) can never
//!   interleave with the live one; the head only advances by appends;
//! - one `append` call carries the frames of several shards and costs one round
//!   trip (Redis: one pipeline of one script call per shard, so one fsync of the
//!   AOF and Cluster-compatible keys; embedded: one `fdatasync` per shard file
//!   written, all issued together); each shard's outcome is separate;
//! - `checkpoint(shard, lsn, states)` writes the states, then advances the shard's
//!   checkpoint position to `lsn`, then trims frames with `lsn' <= lsn`; an older
//!   position than the stored one writes nothing. The caller promises that every
//!   account changed by frames up to `lsn` has its state (as of `lsn` or later) in
//!   this or an earlier checkpoint — the runtime tracks dirty accounts for that.
//! - `read(shard, after, limit)` returns frames with `lsn > max(after, checkpoint)`
//!   that are still kept, in order.

pub mod conformance;
pub mod embedded;
pub mod memory;
pub mod redis;

use crate::codec::{ShardId, ShardLayout};
use crate::ids::AccountId;
use crate::store::{StoreError, StoreFuture};

/// One shard's frame for an `append` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardAppend {
    pub shard: ShardId,
    /// The frame's position: must be the shard's head + 1.
    pub lsn: u64,
    /// The encoded [`crate::codec::BatchFrame`] (opaque to the store).
    pub frame: Vec<u8>,
    /// Cluster mode: the lease epoch of the shard's hosting that sealed the
    /// frame, so that a frame of an earlier hosting is refused for that
    /// hosting's epoch, never written under (or stepping down) a newer one.
    /// `None` on one node, where logs are not fenced by epoch; fenced logs then
    /// use the epoch the node holds when the frame is sent.
    pub epoch: Option<u64>,
}

/// A stored frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredFrame {
    pub lsn: u64,
    pub frame: Vec<u8>,
}

/// A shard's durable positions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardHead {
    /// The last appended frame (0: none).
    pub head: u64,
    /// Frames up to here are covered by the checkpoint (and may be trimmed).
    pub checkpoint: u64,
}

/// The per-shard log store. Implementations: [`memory::MemoryShardLog`] (tests),
/// [`embedded::EmbeddedShardLog`] (segment files + redb) and
/// [`redis::RedisShardLog`].
pub trait ShardLog: Send + Sync + 'static {
    /// The layout stored with the data; stores `proposed` if there is none yet.
    fn init_layout(&self, proposed: ShardLayout) -> StoreFuture<'_, ShardLayout>;

    /// Appends each frame durably and fenced (see the module doc). The outer error
    /// means the outcome of the whole call is unknown; otherwise one result per
    /// entry, in order. At most one entry per shard per call.
    fn append(&self, batch: Vec<ShardAppend>) -> StoreFuture<'_, Vec<Result<(), StoreError>>>;

    /// The shard's head and checkpoint positions.
    fn head(&self, shard: ShardId) -> StoreFuture<'_, ShardHead>;

    /// Kept frames with `lsn > after`, in order, at most `limit`.
    fn read(&self, shard: ShardId, after: u64, limit: usize) -> StoreFuture<'_, Vec<StoredFrame>>;

    /// Writes `states` (accounts of `shard`), advances the checkpoint to `lsn`
    /// (which must not be past the head), then trims frames up to `lsn`.
    fn checkpoint(
        &self,
        shard: ShardId,
        lsn: u64,
        states: Vec<(AccountId, Vec<u8>)>,
    ) -> StoreFuture<'_, ()>;

    /// The checkpointed state of `account` (which lives in `shard`), if any.
    fn load_account(&self, shard: ShardId, account: AccountId) -> StoreFuture<'_, Option<Vec<u8>>>;

    /// The checkpointed states of `accounts` (all of `shard`), in their order.
    /// Recovery reads every account its log tail names this way: a backend that
    /// can answer many in one call (Redis: one `HMGET`) should.
    fn load_accounts<'a>(
        &'a self,
        shard: ShardId,
        accounts: &'a [AccountId],
    ) -> StoreFuture<'a, Vec<Option<Vec<u8>>>> {
        Box::pin(async move {
            let loads = accounts.iter().map(|&a| self.load_account(shard, a));
            futures::future::join_all(loads).await.into_iter().collect()
        })
    }

    /// Every account of `shard` with a checkpointed state (the audit walks them).
    fn accounts(&self, shard: ShardId) -> StoreFuture<'_, Vec<AccountId>>;

    /// A short name for logs and metrics.
    fn backend_name(&self) -> &'static str;

    /// Whether an `append` call lands whole or not at all: when one frame is
    /// refused (fenced), the others are answered [`StoreError::Unavailable`]
    /// and nothing is written, and a crash never keeps part of a call. The
    /// runtime then lets a transfer's credit ride in its debit's batch. False
    /// unless a backend says so.
    fn atomic_append(&self) -> bool {
        false
    }
}

/// The answer, in an append that lands whole or not at all, for a frame not
/// written because another frame of the same call was refused.
pub(crate) fn not_written(shard: ShardId, lsn: u64) -> StoreError {
    StoreError::Unavailable(format!(
        "frame {lsn} of shard {} not written: another frame of its append was refused",
        shard.0
    ))
}

/// The fencing rule every backend applies, in one place.
pub(crate) fn check_fence(shard: ShardId, head: u64, lsn: u64) -> Result<(), StoreError> {
    if lsn == head + 1 {
        Ok(())
    } else {
        Err(StoreError::Fenced {
            shard: shard.0,
            head,
            got: lsn,
        })
    }
}

/// The rule for a checkpoint position, in one place: `Ok(false)` when it is not
/// newer than the stored one (nothing to do).
pub(crate) fn check_checkpoint(
    shard: ShardId,
    now: ShardHead,
    lsn: u64,
) -> Result<bool, StoreError> {
    if lsn > now.head {
        return Err(StoreError::Fenced {
            shard: shard.0,
            head: now.head,
            got: lsn,
        });
    }
    Ok(lsn > now.checkpoint)
}
