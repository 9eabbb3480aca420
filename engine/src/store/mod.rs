//! Durable storage behind the engine: per-account journals, snapshots and global indexes.
//!
//! The engine never talks to Redis or files directly; it talks to a [`Store`]. The
//! store deals in opaque bytes (the engine encodes events and snapshots itself), so
//! a backend knows nothing of money. Every backend must give the same guarantees:
//!
//! - `append` is durable when its future resolves `Ok` (fsync'd file, or Redis with
//!   `appendfsync always`), and applies each record at most once: a record whose
//!   `seq` is not exactly the account's last stored seq + 1 is refused with
//!   [`StoreError::SequenceConflict`] and not written.
//! - `load` returns the newest snapshot and every journal record after it, in order.
//! - `save_snapshot` trims journal records only up to the seq of a snapshot that is
//!   itself durable.
//! - index claims are atomic: of two concurrent claims of one key, exactly one wins.
//! - a record's history rows are upserted in the same transaction (or Lua call) as
//!   the record, so they are written if and only if it is; trimming never touches
//!   the history.
//! - history rows past retention are left out of reads given the cutoff, and go
//!   a whole time bucket at a time, only through `drop_history_before`
//!   ([`retention`] says how).
//!

pub mod conformance;
pub mod embedded;
pub mod memory;
pub mod redis;
pub mod redis_cluster;
pub mod redis_config;
pub mod retention;
pub mod shard_log;

use std::future::Future;
use std::pin::Pin;

use crate::codec::ShardId;
use crate::ids::AccountId;

/// A boxed future returned by store operations.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The backend can't be reached or failed; the outcome of a write is unknown.
    /// Retryable: callers answer 503 and nothing is acknowledged.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A record's seq did not follow the account's last stored seq; nothing was written.
    #[error("sequence conflict on {account}: expected seq {expected}, got {got}")]
    SequenceConflict {
        account: AccountId,
        expected: u64,
        got: u64,
    },
    /// A shard log append whose position is not the shard's head + 1 (a stale or
    /// concurrent writer); nothing was written.
    #[error("fenced: shard {shard} is at {head}, refused frame {got}")]
    Fenced { shard: u16, head: u64, got: u64 },
    /// A shard log append by a lease holder whose epoch is no longer the shard's
    /// current one (its lease expired and another node took the shard over, or
    /// it released the shard); nothing was written, and the writer must step down
    /// from the shard (see [`crate::cluster`]).
    #[error("lease lost: shard {shard} is at epoch {current}, the writer held {held}")]
    LeaseLost { shard: u16, held: u64, current: u64 },
    /// Stored bytes could not be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

/// One journal record to append: the encoded events of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalAppend {
    pub account: AccountId,
    /// The record's position in the account's journal, starting at 1.
    pub seq: u64,
    pub payload: Vec<u8>,
    /// Transaction-history rows to upsert atomically with this record (same
    /// transaction / same Lua call): written if and only if the record is.
    pub history: Vec<HistoryRow>,
}

/// One row of an account's transaction history. The journal is trimmed at
/// snapshots; the history is kept for the retention of the policy (then
/// dropped by time buckets, [`retention`]). Rows are upserted by key (a transfer's row is
/// rewritten when it completes), and keys sort by time (`<16 hex ms><op id>`), so
/// paging newest-first is a reverse range scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    pub key: String,
    pub payload: Vec<u8>,
    /// Written over an earlier version of the row (a transfer or withdrawal
    /// reaching its final status): a backend that keeps versions apart removes
    /// the earlier one (the Redis row set). Always `false` on rows read back.
    pub replaces: bool,
}

/// A stored journal record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub payload: Vec<u8>,
}

/// An encoded account state after the record `seq` (0 = before any record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub seq: u64,
    pub payload: Vec<u8>,
}

/// What activation reads: the newest snapshot and the records after it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    pub snapshot: Option<Snapshot>,
    /// Records with `seq > snapshot.seq` (or all of them), in increasing order.
    pub records: Vec<Record>,
}

impl Loaded {
    /// The seq of the last record (or snapshot) loaded; 0 for an unknown account.
    pub fn last_seq(&self) -> u64 {
        self.records
            .last()
            .map(|r| r.seq)
            .or(self.snapshot.as_ref().map(|s| s.seq))
            .unwrap_or(0)
    }
}

/// The outcome of one record within a batch append.
pub type AppendResult = Result<(), StoreError>;

/// How long the runtime gathers history rows before writing them on Redis
/// (with groups) and the embedded store ([`Store::rows_gather`]): at the load
/// test's rate (~20 rows a second per account) about 8 rows of an account per
/// write, one Redis group member where there were 8 (a third of Redis's time
/// per row and of the memory, docs/PERFORMANCE.md). A history read through
/// the engine never waits for it: a reader has the account's rows written at
/// once.
pub const ROWS_GATHER: std::time::Duration = std::time::Duration::from_millis(400);

/// A durable store. Implementations: [`memory::MemoryStore`] (tests), the embedded
/// file store and Redis.
pub trait Store: Send + Sync + 'static {
    /// Appends every record of `batch` durably, in one round trip or transaction.
    /// The outer error means the whole batch's outcome is unknown; otherwise the
    /// result has one entry per record, in batch order. Records of one account
    /// appear in increasing seq order within a batch.
    fn append(&self, batch: &[JournalAppend]) -> StoreFuture<'_, Vec<AppendResult>>;

    /// Loads an account's newest snapshot and the journal after it.
    fn load(&self, account: AccountId) -> StoreFuture<'_, Loaded>;

    /// Stores a snapshot durably, then trims journal records with `seq <= snapshot.seq`.
    /// A snapshot older than the stored one is ignored.
    fn save_snapshot(&self, account: AccountId, snapshot: Snapshot) -> StoreFuture<'_, ()>;

    /// Every account that has at least one journal record or snapshot, in id order,
    /// starting after `after`, at most `limit`.
    fn list_accounts(
        &self,
        after: Option<AccountId>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<AccountId>>;

    /// Atomically sets `index[key] = value` unless the key exists. Returns `true` when
    /// this call claimed it, `false` when it was already taken (by anyone).
    fn claim_index(&self, index: &str, key: &str, value: &str) -> StoreFuture<'_, bool>;

    /// Reads `index[key]`.
    fn get_index(&self, index: &str, key: &str) -> StoreFuture<'_, Option<String>>;

    /// Removes `index[key]` (no error when absent).
    fn delete_index(&self, index: &str, key: &str) -> StoreFuture<'_, ()>;

    /// Lists `(key, value)` pairs of an index in key order, keys strictly after `after`,
    /// at most `limit`.
    fn scan_index(
        &self,
        index: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<(String, String)>>;

    /// History rows of `account` (of `shard`), newest first (descending key), with
    /// keys strictly less than `before` when given, at most `limit`; every row
    /// stored, whatever its age ([`Store::history_since`] with no cutoff).
    fn history(
        &self,
        shard: ShardId,
        account: AccountId,
        before: Option<&str>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<HistoryRow>> {
        self.history_since(shard, account, None, before, limit)
    }

    /// [`Store::history`] without the rows past retention at `cutoff_ms`: keys
    /// below [`retention::first_kept_key`] (rows whose time is before the
    /// cutoff) are left out, whether or not a sweep dropped them yet.
    fn history_since(
        &self,
        shard: ShardId,
        account: AccountId,
        cutoff_ms: Option<i64>,
        before: Option<&str>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<HistoryRow>>;

    /// One page of [`Store::history_since`] at a bounded cost: the rows, and
    /// when the page is short while older rows may exist, the key to go on
    /// from (pass it as the next page's `before`). The page holds every row
    /// between that key and `before` and none below it. The Redis and embedded
    /// stores read at most a year of week buckets a page (an account with few
    /// rows would otherwise cost one lookup per week kept); the memory store
    /// reads everything (`None`).
    fn history_page(
        &self,
        shard: ShardId,
        account: AccountId,
        cutoff_ms: Option<i64>,
        before: Option<&str>,
        limit: usize,
    ) -> StoreFuture<'_, (Vec<HistoryRow>, Option<String>)> {
        let page = self.history_since(shard, account, cutoff_ms, before, limit);
        Box::pin(async move { Ok((page.await?, None)) })
    }

    /// Drops, whole, the history buckets entirely before `cutoff_ms` (every row
    /// of them is past retention; [`retention`]), at most `max_buckets` of them
    /// (on Redis: per shard, of `shards`, where the rows live; other backends
    /// keep rows of all shards together and ignore it). Idempotent: a bucket
    /// already dropped is not there to drop again. Rows written later into a
    /// dropped bucket (a past-retention time) may be kept or not, and so may
    /// rows written with journal records ([`JournalAppend::history`], the
    /// path before shard logs, which Redis keeps in the account's own keys).
    fn drop_history_before(
        &self,
        shards: Vec<ShardId>,
        cutoff_ms: i64,
        max_buckets: usize,
    ) -> StoreFuture<'_, retention::HistorySweep>;

    /// Upserts history rows (each `(shard, account, row)`), durably when it
    /// resolves `Ok`. The runtime writes the rows of a batch after its frames are
    /// durable; recovery writes those of replayed frames again, so the upsert must
    /// be idempotent. A row may have a stored earlier version only when it says so
    /// ([`HistoryRow::replaces`]), and one call names a row key of an account at
    /// most once.
    ///
    /// `epochs` fences the rows of the shards it names, as the shard log fences
    /// appends ([`crate::cluster`]): a shard's rows are written only if its epoch
    /// there is the shard's current lease epoch; otherwise none of them are, and
    /// the shard is in the answer as a [`StoreError::LeaseLost`]. Rows of shards
    /// not named are not fenced (one node, no leases). Backends without leases
    /// (memory, embedded: one node only) refuse nothing.
    fn put_history(
        &self,
        rows: Vec<(ShardId, AccountId, HistoryRow)>,
        epochs: Vec<(ShardId, u64)>,
    ) -> StoreFuture<'_, Vec<StoreError>>;

    /// The shard log that lives beside this store (same backend, same place): one
    /// per store, the same one on every call.
    fn shard_log(&self) -> StoreFuture<'_, std::sync::Arc<dyn shard_log::ShardLog>>;

    /// A short name for logs and metrics (`memory`, `embedded`, `redis`).
    fn backend_name(&self) -> &'static str;

    /// How long the runtime gathers history rows of durable batches before
    /// it writes them (still within its bounds on rows pending): zero (the
    /// default, the memory store) writes them a few batches late. Redis with
    /// groups and the embedded store gather [`ROWS_GATHER`]: more rows of one
    /// account in one group member, one redb commit where there were dozens.
    fn rows_gather(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    /// The Redis store behind this one, if any: cluster mode (several nodes on
    /// one Redis) needs it for leases and fenced appends.
    fn as_redis(&self) -> Option<&redis::RedisStore> {
        None
    }
}
