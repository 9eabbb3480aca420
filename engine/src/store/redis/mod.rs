//! The Redis [`Store`]: production and multi-node storage, one journal per account.
//!
//! # Files
//!
//! The backend is split by concern. This file holds the key layout below, the
//! store's handle ([`RedisStore`]) and its [`Store`] impl, which calls into:
//!
//! - `conn.rs`: the connection, its round trips and retries (`Call`,
//!   `Retry`), the decoding of replies, the durability check;
//! - `scripts.rs`: `LuaScript` and the handles of the store's scripts, whose
//!   source is in `lua/*.lua`;
//! - `keys.rs`: every key name of the table below;
//! - `journal.rs`: the per-account journals (append, load, snapshots) and the
//!   account list;
//! - `indexes.rs`: the indexes (claim, get, delete, scan);
//! - `history.rs`: the history rows (their five layouts, writes, pages by the
//!   bucket walk, the retention drop).
//!
//! # Key layout
//!
//! Everything about one account lives under one hash tag, so every multi-key script
//! touches a single slot and the layout works unchanged on Redis Cluster (every
//! name below is built in `keys.rs`):
//!
//! | key                              | type   | content                                       |
//! |----------------------------------|--------|-----------------------------------------------|
//! | `okpay:{acc_<hex>}:journal`      | stream | one entry per record, id `<seq>-1`, field `p` = payload |
//! | `okpay:{acc_<hex>}:seq`          | string | last stored seq (survives trimming)           |
//! | `okpay:{acc_<hex>}:snapshot`     | hash   | `seq`, `payload`                              |
//! | `okpay:{acc_<hex>}:history`      | hash   | history row key → payload (never trimmed)     |
//! | `okpay:{acc_<hex>}:history:keys` | zset   | the same row keys, all score 0, for ordered pages |
//! | `okpay:{sNNN}:hist:<bucket>`     | zset   | history rows of shard NNN's accounts whose key time is in `<bucket>` (decimal, 7 days each: `store::retention`) (layout 5), all score 0: compact members `<account: 8 bytes BE><binary key><body>` (`codec::row`); written fenced by the lease epoch in `okpay:{sNNN}:pos`; dropped whole once past retention |
//! | `okpay:{sNNN}:hist:buckets`      | zset   | the buckets of the shard holding layout-5 rows: member and score the bucket number |
//! | `okpay:{sNNN}:hist`              | zset   | layout 4 of the same rows (the members of layout 5, in one set): read, no longer written, never swept |
//! | `okpay:{sNNN}:rowset`            | zset   | layout 3 of the same rows, all score 0: `<account: 8 bytes BE><row key>\0<row>`; still written for keys that are not of the engine's shape, read for all |
//! | `okpay:{sNNN}:rows`, `…:rows:keys` | hash, zset | the previous layout of the same rows (`<account>:<row key>` → row; the fields), read, no longer written |
//! | `okpay:accounts`                 | zset   | account ids, all score 0                      |
//! | `okpay:idx:{<name>}`             | hash   | index key → value                             |
//! | `okpay:idx:{<name>}:keys`        | zset   | the same keys, all score 0, for ordered scans |
//!
//! The journal is a **stream** rather than a list or a sorted set because the stream
//! id carries the seq natively: `XADD` with an explicit id refuses an id that does
//! not grow (a second guard behind the Lua seq check), `XTRIM MINID` trims exactly
//! "everything up to the snapshot", and `XRANGE`/`XREAD` can later tail a journal by
//! seq for cross-node consumers. A list would need index arithmetic to trim, and a
//! sorted set would need the seq folded into each member to keep members unique.
//!
//! Account ids and index keys are listed from sorted sets with all scores 0 through
//! `ZRANGEBYLEX`, which orders by bytes: ids are fixed-width lower-case hex, so byte
//! order is numeric order, and index keys come out in the byte order the trait
//! promises. Pages cost O(log n + limit), however big the set grows. History rows
//! use the same pair of a hash and a score-0 sorted set, read backwards with
//! `ZREVRANGEBYLEX` from `(<before>` (exclusive) or `+`: row keys start with the
//! time, so byte order is time order. Snapshots trim only the journal stream.
//!
//! # History retention
//!
//! Rows of layout 5 sit in one sorted set per shard and time bucket
//! (`store::retention`), so the rows past retention go a whole set at a time: the
//! sweep reads the oldest buckets of each shard's index that lie entirely before
//! the cutoff, then `drop_buckets.lua` `UNLINK`s their sets (freed off Redis's main
//! thread) if the index still lists them there: two round trips, at most one
//! command per shard in each. A page walks the shard's buckets newest first in one
//! call of `hist_page.lua`, from the bucket of `before` down to the cutoff's, until
//! the page is full; the index lets it skip the weeks without rows. Every script
//! declares in `KEYS` each key it touches, as Redis requires (and all the keys of
//! one call carry the shard's hash tag: one slot on a Cluster). The sweep declares
//! the sets it read from the index. A page declares the sets of the 53 weeks from
//! that of `before` down (without one, from the current week) and reads those the
//! index lists; when the walk reaches a week it did not declare (a shard without
//! rows every week), the script names the buckets the walk may read and a second
//! call declares them. A read without a bound on the walk goes on by such calls, 53
//! buckets at most each. Rows of the older layouts (4, 3, 2 and the account's own
//! keys) are still read and merged (a newer layout's version of a row wins) and
//! left out of reads past retention like the rest, but are never swept: moving them
//! into buckets would read every row once, and all of them are past retention
//! within seven years of this layout; an operator may delete those keys then. Rows
//! whose key is not of the engine's shape stay in layout 3 (no bucket).
//!
//! # Append: one pipeline, one round trip
//!
//! On standalone Redis (the default) a whole batch is one `EVALSHA` of
//! [`APPEND_BATCH_LUA`], preceded in the same pipeline by one `ZADD okpay:accounts`
//! listing the accounts whose first record (seq 1) is in the batch. The script checks
//! each record's seq and appends the record and its history rows, or skips it and
//! reports the expected seq. A script is executed atomically and Redis, with
//! `appendfsync always`, fsyncs the AOF once before replying: that is the group
//! commit — one round trip and one fsync per batch, and little per-record overhead
//! (a plain pipeline of many commands is read by Redis in 16 KB chunks and fsync'd
//! after each chunk, which measured about 20 fsyncs for a 1,000-record batch).
//!
//! With [`RedisOptions::cluster`] set (it is set by itself when the URL's node
//! answers `INFO cluster` with `cluster_enabled:1`; see [`super::redis_cluster`]
//! for how commands are routed there), a batch spans many slots, which one script
//! may not touch on Redis Cluster; the batch is then one pipeline of one call of
//! [`APPEND_LUA`] per record (each touching one account's slot), preceded by one
//! `ZADD okpay:accounts` per distinct account. The rows travel in the record's own
//! script call in both modes, so they are written if and only if the record is.
//! Scripts are invoked by hash; after a Redis restart the script cache is empty, so
//! the calls answered `NOSCRIPT` (which ran nothing) are loaded and retried.
//!
//! # Failures
//!
//! The connection is one multiplexed connection shared by all callers, replaced when
//! it fails: any I/O error or timeout drops it and the next operation reconnects, so
//! the store recovers by itself when Redis comes back. Connecting and every round
//! trip are bounded by [`RedisOptions`] (2 s by default), so while Redis is down
//! operations fail fast with [`StoreError::Unavailable`]. Reads and idempotent writes
//! (snapshot, index delete) retry once on a fresh connection when the old one turns
//! out dead; appends and claims never retry, because a retried append that had in
//! fact landed would be reported as a conflict, and a retried claim as lost.
//!
//! Seqs are compared as Lua numbers (doubles) inside the scripts, exact up to 2^53,
//! far beyond any journal's length.
//!
//! [`APPEND_LUA`]: scripts::APPEND
//! [`APPEND_BATCH_LUA`]: scripts::APPEND_BATCH

mod conn;
mod history;
mod indexes;
mod journal;
mod keys;
mod scripts;

use std::sync::atomic::AtomicU64;

use ::redis::Client;

use super::redis_cluster::{info_says_cluster, ClusterLink};
use super::redis_config::RedisOptions;
use super::{
    AppendResult, HistoryRow, JournalAppend, Loaded, Snapshot, Store, StoreError, StoreFuture,
};
use crate::codec::ShardId;
use crate::ids::AccountId;

pub(crate) use conn::{from_value, reply_error, Call, Retry};
pub(crate) use scripts::LuaScript;

use conn::Cached;
use history::WALK_MAX;

/// The Redis-backed store.
pub struct RedisStore {
    client: Client,
    options: RedisOptions,
    /// A tokio mutex (not a blocking one) because connecting happens while holding it:
    /// callers arriving while a reconnect is under way wait for it instead of racing
    /// to open connections of their own.
    conn: tokio::sync::Mutex<Option<Cached>>,
    next_conn_id: AtomicU64,
    /// The shard log on its own connection (so frames never queue behind index
    /// and history traffic), made on first use.
    log: parking_lot::Mutex<Option<std::sync::Arc<super::shard_log::redis::RedisShardLog>>>,
    /// Set when the server is a Redis Cluster: every command then goes through it
    /// (the standalone connection above stays unused).
    cluster: Option<std::sync::Arc<ClusterLink>>,
}

impl RedisStore {
    /// Connects to `url` (`redis://host:port/db`) with default timeouts, and checks
    /// that Redis answers, so a wrong URL fails at start-up rather than at the first
    /// payment.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, RedisOptions::default()).await
    }

    /// [`connect`](Self::connect) with explicit timeouts.
    pub async fn connect_with(url: &str, options: RedisOptions) -> Result<Self, StoreError> {
        let client = Client::open(url)
            .map_err(|e| StoreError::Unavailable(format!("bad redis url: {e}")))?;
        let mut store = Self {
            client,
            options,
            conn: tokio::sync::Mutex::new(None),
            next_conn_id: AtomicU64::new(0),
            log: parking_lot::Mutex::new(None),
            cluster: None,
        };
        // A cluster node answers for its own slots only, so the store must know
        // before its first keyed command which of the two it talks to.
        let mut info = ::redis::cmd("INFO");
        info.arg("cluster");
        let info = store.exec_one(Call::Plain(info), Retry::Safe).await?;
        let info: String = from_value(info)?;
        if info_says_cluster(&info) {
            let link = ClusterLink::connect(store.client.clone(), &store.options).await?;
            store.cluster = Some(std::sync::Arc::new(link));
            store.options.cluster = true;
            *store.conn.get_mut() = None;
        }
        let pong = store
            .exec(vec![Call::Plain(::redis::cmd("PING"))], Retry::Safe)
            .await?;
        reply_error(&pong[0])?;
        Ok(store)
    }

    /// Another handle on the same server with its own standalone connection
    /// (made on first use), so its commands never queue behind this one's; a
    /// cluster connection, which multiplexes per master already, is shared.
    pub fn sibling(&self) -> RedisStore {
        RedisStore {
            client: self.client.clone(),
            options: self.options,
            conn: tokio::sync::Mutex::new(None),
            next_conn_id: AtomicU64::new(0),
            log: parking_lot::Mutex::new(None),
            cluster: self.cluster.clone(),
        }
    }

    /// Another handle with connections of its own even on a cluster, for
    /// blocking commands (`BLPOP`) that must not hold up anyone else's.
    pub async fn detached(&self) -> Result<RedisStore, StoreError> {
        let mut store = self.sibling();
        if self.cluster.is_some() {
            let link = ClusterLink::connect(self.client.clone(), &self.options).await?;
            store.cluster = Some(std::sync::Arc::new(link));
        }
        Ok(store)
    }

    /// The shard log on its own connection (one per store, made on first use).
    pub fn redis_shard_log(&self) -> std::sync::Arc<super::shard_log::redis::RedisShardLog> {
        self.log
            .lock()
            .get_or_insert_with(|| {
                std::sync::Arc::new(super::shard_log::redis::RedisShardLog::over(self.sibling()))
            })
            .clone()
    }

    /// True when the store talks to a Redis Cluster (detected at connect).
    pub fn is_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    /// True when each script must stay within one Cluster slot
    /// ([`RedisOptions::cluster`]: set on a Cluster, or asked for).
    pub(crate) fn one_slot_per_script(&self) -> bool {
        self.options.cluster
    }
}

impl Store for RedisStore {
    fn append(&self, batch: &[JournalAppend]) -> StoreFuture<'_, Vec<AppendResult>> {
        if !self.options.cluster {
            return self.append_as_one_script(batch);
        }
        self.append_per_record(batch)
    }

    fn load(&self, account: AccountId) -> StoreFuture<'_, Loaded> {
        self.load_journal(account)
    }

    fn save_snapshot(&self, account: AccountId, snapshot: Snapshot) -> StoreFuture<'_, ()> {
        self.save_journal_snapshot(account, snapshot)
    }

    fn list_accounts(
        &self,
        after: Option<AccountId>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<AccountId>> {
        self.accounts_page(after, limit)
    }

    fn claim_index(&self, index: &str, key: &str, value: &str) -> StoreFuture<'_, bool> {
        self.index_claim(index, key, value)
    }

    fn get_index(&self, index: &str, key: &str) -> StoreFuture<'_, Option<String>> {
        self.index_get(index, key)
    }

    fn delete_index(&self, index: &str, key: &str) -> StoreFuture<'_, ()> {
        self.index_delete(index, key)
    }

    fn scan_index(
        &self,
        index: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<(String, String)>> {
        self.index_scan(index, after, limit)
    }

    fn history_since(
        &self,
        shard: ShardId,
        account: AccountId,
        cutoff_ms: Option<i64>,
        before: Option<&str>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<HistoryRow>> {
        let page = self.history_walk(shard, account, cutoff_ms, before, limit, None);
        Box::pin(async move {
            // A walk that ends inside a group slot gives a short page and the
            // slot's start: go on below it (each start is below the last).
            let (mut page, mut resume) = page.await?;
            while let Some(key) = resume.filter(|_| page.len() < limit) {
                let more = self.history_walk(
                    shard,
                    account,
                    cutoff_ms,
                    Some(&key),
                    limit - page.len(),
                    None,
                );
                let (more, next) = more.await?;
                page.extend(more);
                resume = next;
            }
            Ok(page)
        })
    }

    fn history_page(
        &self,
        shard: ShardId,
        account: AccountId,
        cutoff_ms: Option<i64>,
        before: Option<&str>,
        limit: usize,
    ) -> StoreFuture<'_, (Vec<HistoryRow>, Option<String>)> {
        self.history_walk(shard, account, cutoff_ms, before, limit, Some(WALK_MAX))
    }

    fn put_history(
        &self,
        rows: Vec<(ShardId, AccountId, HistoryRow)>,
        epochs: Vec<(ShardId, u64)>,
    ) -> StoreFuture<'_, Vec<StoreError>> {
        self.put_history_rows(rows, epochs)
    }

    fn drop_history_before(
        &self,
        shards: Vec<ShardId>,
        cutoff_ms: i64,
        max_buckets: usize,
    ) -> StoreFuture<'_, super::retention::HistorySweep> {
        self.drop_buckets_before(shards, cutoff_ms, max_buckets)
    }

    fn shard_log(&self) -> StoreFuture<'_, std::sync::Arc<dyn super::shard_log::ShardLog>> {
        let log = self.redis_shard_log();
        Box::pin(async move { Ok(log as std::sync::Arc<dyn super::shard_log::ShardLog>) })
    }

    fn rows_gather(&self) -> std::time::Duration {
        if self.options.history_groups {
            super::ROWS_GATHER
        } else {
            std::time::Duration::ZERO
        }
    }

    fn backend_name(&self) -> &'static str {
        "redis"
    }

    fn as_redis(&self) -> Option<&RedisStore> {
        Some(self)
    }
}
