//! The embedded [`Store`]: one `redb` file in a data directory, the default backend
//! when no Redis URL is given, so `okpay` runs on a fresh machine with nothing else
//! installed.
//!
//! It gives the same guarantees as the Redis backend. Every mutating operation is one
//! redb write transaction committed with [`Durability::Immediate`] (redb fsyncs before
//! `commit` returns), so a resolved `append` survives a crash, and a whole group-commit
//! batch costs one fsync. redb is a blocking library, so every transaction runs on
//! tokio's blocking pool ([`tokio::task::spawn_blocking`]) and never stalls the async
//! workers that drive the actors.
//!
//! Tables:
//!
//! | table       | key                   | value                 |
//! |-------------|-----------------------|-----------------------|
//! | `journal`   | `(account, seq)`      | payload bytes         |
//! | `snapshots` | `account`             | `(seq, payload)`      |
//! | `accounts`  | `account`             | last stored seq       |
//! | `indexes`   | `(index name, key)`   | value                 |
//! | `history_b<bucket>` | `(account, row key)` | payload bytes: rows of one 7-day bucket ([`rows`], `store::retention`) |
//! | `history`   | `(account, row key)`  | payload bytes: rows without a bucket, and all rows stored before buckets (read, never swept) |
//! | `history_recent` | blob seq         | rows of one write ([`rows`]) |
//! | `history_meta` | `"swept_below"`    | the first bucket the last sweep kept |
//!
//! `accounts` is both the set behind [`Store::list_accounts`] and the source of the
//! expected next seq, so the sequence check is one point read instead of a range scan
//! over the journal (which may have been trimmed empty by a snapshot).
//!
//! The history is in tables of its own rather than part of the journal because the
//! two live differently: the journal is trimmed at every snapshot, the history is
//! kept for its retention, then dropped a bucket table at a time.
//! Tuple keys compare element by element, so one account's rows are contiguous and
//! ordered by key bytes, and a page newest-first is one reverse range scan. Rows
//! reach `history` through `history_recent` (see [`rows`]): written straight into
//! `history`, a batch's rows cost about one copied 4 KiB page each.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use redb::{Database, Durability, ReadableTable, TableDefinition, WriteTransaction};

use super::{
    AppendResult, HistoryRow, JournalAppend, Loaded, Record, Snapshot, Store, StoreError,
    StoreFuture,
};
use crate::ids::AccountId;

mod rows;

pub use rows::RowBounds;

/// The page cache of the redb file (redb's default is 1 GiB).
const CACHE_BYTES: usize = 64 * 1024 * 1024;
const JOURNAL: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("journal");
const SNAPSHOTS: TableDefinition<u64, (u64, &[u8])> = TableDefinition::new("snapshots");
const ACCOUNTS: TableDefinition<u64, u64> = TableDefinition::new("accounts");
const INDEXES: TableDefinition<(&str, &str), &str> = TableDefinition::new("indexes");
const HISTORY: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("history");

/// The file inside the data directory. One file holds every table so one commit
/// (one fsync) covers a batch that touches the journal, the account set and the history.
const DB_FILE: &str = "okpay.redb";

/// The redb-backed store. `Database` is `Send + Sync`; it sits in an `Arc` because each
/// operation moves a handle into a blocking task that may outlive the borrow of `self`.
pub struct EmbeddedStore {
    db: Arc<Database>,
    /// Bounds the blocking threads in use at once. redb runs one write transaction
    /// at a time anyway; without a bound, a burst (every actor snapshotting at
    /// shutdown) would park hundreds of blocking-pool threads on redb's writer lock,
    /// each with its own allocator heap: gigabytes for nothing. Waiting here is an
    /// async wait that holds no thread.
    permits: Arc<tokio::sync::Semaphore>,
    dir: std::path::PathBuf,
    /// The shard log beside the database, opened on first use (opening it twice
    /// would fail on its file lock).
    log: parking_lot::Mutex<Option<Arc<super::shard_log::embedded::EmbeddedShardLog>>>,
    /// The history rows not yet moved to `history`. Held from staging a write
    /// through its commit, so a reader (which copies from here first, then
    /// opens its read transaction) sees every row in one place or the other.
    recent: Arc<parking_lot::Mutex<rows::Recent>>,
}

/// Where the shard log lives, under the store's directory.
const SHARD_LOG_DIR: &str = "shards";

/// Blocking transactions running at once (one writer plus readers).
const BLOCKING_PERMITS: usize = 4;

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`, creating the directory if needed.
    ///
    /// This runs blocking file I/O; call it at start-up, not from a hot async path.
    /// redb locks the file, so a second `open` of the same directory while this store
    /// is alive fails instead of letting two writers corrupt each other.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, RowBounds::default())
    }

    /// [`EmbeddedStore::open`] with the bounds of the recent history rows
    /// (tests use tiny ones so that rows move to `history` all the time).
    pub fn open_with(dir: &Path, bounds: RowBounds) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create data dir {}: {e}", dir.display()))
        })?;
        // redb caches 1 GiB by default; the engine keeps hot state in its actors, so
        // a modest page cache serves loads and keeps the server's footprint bounded.
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(dir.join(DB_FILE))
            .map_err(db_err)?;
        // Create every table up front: a read transaction can't open a table that has
        // never been written, and loads of unknown accounts must simply return nothing.
        let txn = begin_write(&db)?;
        txn.open_table(JOURNAL).map_err(db_err)?;
        txn.open_table(SNAPSHOTS).map_err(db_err)?;
        txn.open_table(ACCOUNTS).map_err(db_err)?;
        txn.open_table(INDEXES).map_err(db_err)?;
        txn.open_table(HISTORY).map_err(db_err)?;
        txn.open_table(rows::RECENT).map_err(db_err)?;
        txn.open_table(rows::META).map_err(db_err)?;
        txn.commit().map_err(db_err)?;
        let recent = rows::Recent::load(&db, bounds)?;
        Ok(Self {
            db: Arc::new(db),
            permits: Arc::new(tokio::sync::Semaphore::new(BLOCKING_PERMITS)),
            dir: dir.to_path_buf(),
            log: parking_lot::Mutex::new(None),
            recent: Arc::new(parking_lot::Mutex::new(recent)),
        })
    }

    /// Number of journal records currently kept for `account` (after trimming); for
    /// tests and operators checking that snapshots really trim.
    pub async fn journal_len(&self, account: AccountId) -> Result<usize, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let journal = txn.open_table(JOURNAL).map_err(db_err)?;
            let mut n = 0;
            for entry in journal
                .range((account.0, 0)..=(account.0, u64::MAX))
                .map_err(db_err)?
            {
                entry.map_err(db_err)?;
                n += 1;
            }
            Ok(n)
        })
        .await
    }

    /// Runs `work` on the blocking pool with a handle to the database.
    async fn blocking<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        self.blocking_rows(move |db, _| work(db)).await
    }

    /// [`Self::blocking`] with the recent history rows too.
    async fn blocking_rows<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database, &parking_lot::Mutex<rows::Recent>) -> Result<T, StoreError>
            + Send
            + 'static,
    {
        let db = Arc::clone(&self.db);
        let recent = Arc::clone(&self.recent);
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unavailable("embedded store closed".into()))?;
        tokio::task::spawn_blocking(move || {
            let result = work(&db, &recent);
            drop(permit);
            result
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("embedded store task failed: {e}")))?
    }

    /// One page of [`Store::history_since`], reading at most `walk` bucket
    /// tables when given (as the Redis store does: [`Store::history_page`]):
    /// then a short page may come with where to go on from, and holds no row
    /// below that key.
    fn history_walk(
        &self,
        account: AccountId,
        cutoff_ms: Option<i64>,
        before: Option<&str>,
        limit: usize,
        walk: Option<usize>,
    ) -> StoreFuture<'_, (Vec<HistoryRow>, Option<String>)> {
        let before = before.map(str::to_owned);
        let from = super::retention::first_kept_key(cutoff_ms);
        Box::pin(self.blocking_rows(move |db, recent| {
            if let (Some(f), Some(b)) = (&from, &before) {
                if f >= b {
                    return Ok((Vec::new(), None));
                }
            }
            // Recent rows first, then the read transaction: a row moving to
            // `history` meanwhile is committed there before it leaves memory,
            // so it is in one of the two (see `recent`).
            let newer = recent
                .lock()
                .page(account.0, from.as_deref(), before.as_deref(), limit)?;
            let txn = db.begin_read().map_err(db_err)?;
            // Rows of `newer` may be stored below too (an earlier version, or
            // the same one): read as many more as could be hidden by them.
            let want = limit.saturating_add(newer.len());
            let from = from.as_deref().unwrap_or("");
            let start = Bound::Included((account.0, from));
            // Without `before`, the account's rows end where the next account's begin
            // (`""` is the smallest key); the last possible account has no next one.
            let end = match (before.as_deref(), account.0.checked_add(1)) {
                (Some(b), _) => Bound::Excluded((account.0, b)),
                (None, Some(next)) => Bound::Excluded((next, "")),
                (None, None) => Bound::Unbounded,
            };
            // The bucket tables that may hold a page row, newest first, until
            // `want` rows: buckets are disjoint ranges of key time.
            let top = super::retention::last_bucket_before(before.as_deref()).unwrap_or(u64::MAX);
            let low = cutoff_ms.map_or(0, super::retention::first_kept_bucket);
            let buckets = rows::buckets_of(txn.list_tables().map_err(db_err)?);
            let mut bucketed = Vec::new();
            let (mut walked, mut last, mut resume) = (0, None, None);
            for bucket in buckets
                .into_iter()
                .rev()
                .filter(|b| (low..=top).contains(b))
            {
                if bucketed.len() >= want {
                    break;
                }
                if let (Some(walk), Some(last)) = (walk, last) {
                    if walked == walk {
                        // An older bucket is left: the page goes on from the
                        // first key of the last one read.
                        resume = Some(super::retention::first_key_of_bucket(last));
                        break;
                    }
                }
                walked += 1;
                last = Some(bucket);
                let name = rows::bucket_table_name(bucket);
                let table = txn.open_table(rows::bucket_table(&name)).map_err(db_err)?;
                for entry in table
                    .range::<(u64, &str)>((start, end))
                    .map_err(db_err)?
                    .rev()
                    .take(want - bucketed.len())
                {
                    let (k, v) = entry.map_err(db_err)?;
                    bucketed.push(HistoryRow {
                        key: k.value().1.to_owned(),
                        payload: v.value().to_vec(),
                        replaces: false,
                    });
                }
            }
            // `history`: rows without a bucket, and those stored before buckets.
            let history = txn.open_table(HISTORY).map_err(db_err)?;
            let mut unbucketed = Vec::new();
            for entry in history
                .range::<(u64, &str)>((start, end))
                .map_err(db_err)?
                .rev()
                .take(want)
            {
                let (k, v) = entry.map_err(db_err)?;
                unbucketed.push(HistoryRow {
                    key: k.value().1.to_owned(),
                    payload: v.value().to_vec(),
                    replaces: false,
                });
            }
            let older = merge_newest_first(bucketed, unbucketed, want);
            let page = merge_newest_first(newer, older, limit);
            // Rows of `recent` and `history` below an unread bucket wait for
            // the page that reads it.
            Ok(super::retention::cut_at_resume(page, resume, limit))
        }))
    }
}

/// Starts a write transaction that fsyncs on commit. `Immediate` is redb's default;
/// it is set explicitly because the whole "durable before acknowledged" promise rests
/// on it and a future default change must not weaken it silently.
pub(crate) fn begin_write(db: &Database) -> Result<WriteTransaction, StoreError> {
    let mut txn = db.begin_write().map_err(db_err)?;
    txn.set_durability(Durability::Immediate);
    Ok(txn)
}

/// Maps any redb error: corruption is reported as such (retrying won't help), every
/// other failure (I/O, lock, ...) as `Unavailable`, the outcome of the write unknown.
pub(crate) fn db_err(e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::Corrupted(msg) => StoreError::Corrupt(format!("redb: {msg}")),
        other => StoreError::Unavailable(format!("redb: {other}")),
    }
}

/// Merges two pages of one account's rows, each newest first (descending key),
/// into one of at most `limit` rows; of a key in both, `newer`'s row is kept.
fn merge_newest_first(
    newer: Vec<HistoryRow>,
    older: Vec<HistoryRow>,
    limit: usize,
) -> Vec<HistoryRow> {
    let mut out = Vec::with_capacity(limit.min(newer.len() + older.len()));
    let (mut newer, mut older) = (newer.into_iter().peekable(), older.into_iter().peekable());
    while out.len() < limit {
        let row = match (newer.peek(), older.peek()) {
            (Some(n), Some(o)) if n.key == o.key => {
                older.next();
                newer.next()
            }
            (Some(n), Some(o)) if n.key > o.key => newer.next(),
            (Some(_), Some(_)) | (None, Some(_)) => older.next(),
            (Some(_), None) => newer.next(),
            (None, None) => None,
        };
        match row {
            Some(row) => out.push(row),
            None => break,
        }
    }
    out
}

/// The last stored seq of `account` (0 when unknown), read inside a write transaction.
fn last_seq(
    accounts: &impl ReadableTable<u64, u64>,
    account: AccountId,
) -> Result<u64, StoreError> {
    Ok(accounts
        .get(account.0)
        .map_err(db_err)?
        .map_or(0, |v| v.value()))
}

/// How many bucket tables one page of history reads at most (a year's; see
/// [`Store::history_page`]).
const WALK_MAX: usize = 53;

impl Store for EmbeddedStore {
    fn append(&self, batch: &[JournalAppend]) -> StoreFuture<'_, Vec<AppendResult>> {
        let batch = batch.to_vec();
        Box::pin(self.blocking_rows(move |db, recent| {
            let txn = begin_write(db)?;
            let mut results = Vec::with_capacity(batch.len());
            let mut rows = Vec::new();
            {
                let mut journal = txn.open_table(JOURNAL).map_err(db_err)?;
                let mut accounts = txn.open_table(ACCOUNTS).map_err(db_err)?;
                for rec in batch {
                    // The check reads what earlier records of this same batch wrote, so
                    // a batch holding seqs 4, 5, 6 of one account is accepted whole.
                    let expected = last_seq(&accounts, rec.account)? + 1;
                    if rec.seq != expected {
                        results.push(Err(StoreError::SequenceConflict {
                            account: rec.account,
                            expected,
                            got: rec.seq,
                        }));
                        continue;
                    }
                    journal
                        .insert((rec.account.0, rec.seq), rec.payload.as_slice())
                        .map_err(db_err)?;
                    accounts.insert(rec.account.0, rec.seq).map_err(db_err)?;
                    // Only past the seq check, and in the same transaction: a record's
                    // rows land exactly when the record does. A later version of a
                    // row replaces the earlier one: the upsert a completing transfer
                    // needs.
                    rows.extend(
                        rec.history
                            .into_iter()
                            .map(|row| (rec.account.0, row.key, row.payload)),
                    );
                    results.push(Ok(()));
                }
            }
            // One commit, one fsync for the whole batch. If it fails the outer error
            // says so and none of the per-record `Ok`s above is reported.
            recent.lock().commit(db, txn, rows)?;
            Ok(results)
        }))
    }

    fn load(&self, account: AccountId) -> StoreFuture<'_, Loaded> {
        Box::pin(self.blocking(move |db| {
            // One read transaction: a consistent view, so a concurrent snapshot+trim
            // can't make us miss records or see them twice.
            let txn = db.begin_read().map_err(db_err)?;
            let snapshots = txn.open_table(SNAPSHOTS).map_err(db_err)?;
            let journal = txn.open_table(JOURNAL).map_err(db_err)?;
            let snapshot = snapshots.get(account.0).map_err(db_err)?.map(|v| {
                let (seq, payload) = v.value();
                Snapshot {
                    seq,
                    payload: payload.to_vec(),
                }
            });
            let after = snapshot.as_ref().map_or(0, |s| s.seq);
            let mut records = Vec::new();
            let range = (
                Bound::Excluded((account.0, after)),
                Bound::Included((account.0, u64::MAX)),
            );
            for entry in journal.range(range).map_err(db_err)? {
                let (key, value) = entry.map_err(db_err)?;
                records.push(Record {
                    seq: key.value().1,
                    payload: value.value().to_vec(),
                });
            }
            Ok(Loaded { snapshot, records })
        }))
    }

    fn save_snapshot(&self, account: AccountId, snapshot: Snapshot) -> StoreFuture<'_, ()> {
        Box::pin(self.blocking(move |db| {
            let txn = begin_write(db)?;
            let newer = {
                let mut snapshots = txn.open_table(SNAPSHOTS).map_err(db_err)?;
                let current = snapshots
                    .get(account.0)
                    .map_err(db_err)?
                    .map(|v| v.value().0);
                // An older (or equal) snapshot never replaces a newer one.
                let newer = current.is_none_or(|seq| seq < snapshot.seq);
                if newer {
                    snapshots
                        .insert(account.0, (snapshot.seq, snapshot.payload.as_slice()))
                        .map_err(db_err)?;

                    // Trimming in the same transaction as the snapshot write: records
                    // disappear only if the snapshot covering them is committed too.
                    let mut journal = txn.open_table(JOURNAL).map_err(db_err)?;
                    journal
                        .retain_in((account.0, 0)..=(account.0, snapshot.seq), |_, _| false)
                        .map_err(db_err)?;

                    // The history table is left alone on purpose: it is the record
                    // users page through, and it outlives the journal.

                    // A snapshot ahead of the journal moves the expected next seq with
                    // it, as in the memory store (last seq = max(journal, snapshot)).
                    let mut accounts = txn.open_table(ACCOUNTS).map_err(db_err)?;
                    let last = last_seq(&accounts, account)?;
                    accounts
                        .insert(account.0, last.max(snapshot.seq))
                        .map_err(db_err)?;
                }
                newer
            };
            if newer {
                txn.commit().map_err(db_err)?;
            } else {
                txn.abort().map_err(db_err)?;
            }
            Ok(())
        }))
    }

    fn list_accounts(
        &self,
        after: Option<AccountId>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<AccountId>> {
        Box::pin(self.blocking(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let accounts = txn.open_table(ACCOUNTS).map_err(db_err)?;
            let start = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.0));
            let mut out = Vec::new();
            for entry in accounts
                .range::<u64>((start, Bound::Unbounded))
                .map_err(db_err)?
                .take(limit)
            {
                let (key, _) = entry.map_err(db_err)?;
                out.push(AccountId(key.value()));
            }
            Ok(out)
        }))
    }

    fn claim_index(&self, index: &str, key: &str, value: &str) -> StoreFuture<'_, bool> {
        let (index, key, value) = (index.to_owned(), key.to_owned(), value.to_owned());
        Box::pin(self.blocking(move |db| {
            // redb runs one write transaction at a time, so the check and the insert
            // can't interleave with another claim: exactly one claimant wins.
            let txn = begin_write(db)?;
            let claimed = {
                let mut indexes = txn.open_table(INDEXES).map_err(db_err)?;
                let taken = indexes
                    .get((index.as_str(), key.as_str()))
                    .map_err(db_err)?
                    .is_some();
                if !taken {
                    indexes
                        .insert((index.as_str(), key.as_str()), value.as_str())
                        .map_err(db_err)?;
                }
                !taken
            };
            if claimed {
                txn.commit().map_err(db_err)?;
            } else {
                txn.abort().map_err(db_err)?;
            }
            Ok(claimed)
        }))
    }

    fn get_index(&self, index: &str, key: &str) -> StoreFuture<'_, Option<String>> {
        let (index, key) = (index.to_owned(), key.to_owned());
        Box::pin(self.blocking(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let indexes = txn.open_table(INDEXES).map_err(db_err)?;
            let value = indexes
                .get((index.as_str(), key.as_str()))
                .map_err(db_err)?
                .map(|v| v.value().to_owned());
            Ok(value)
        }))
    }

    fn delete_index(&self, index: &str, key: &str) -> StoreFuture<'_, ()> {
        let (index, key) = (index.to_owned(), key.to_owned());
        Box::pin(self.blocking(move |db| {
            let txn = begin_write(db)?;
            {
                let mut indexes = txn.open_table(INDEXES).map_err(db_err)?;
                indexes
                    .remove((index.as_str(), key.as_str()))
                    .map_err(db_err)?;
            }
            txn.commit().map_err(db_err)?;
            Ok(())
        }))
    }

    fn scan_index(
        &self,
        index: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<(String, String)>> {
        let (index, after) = (index.to_owned(), after.map(str::to_owned));
        Box::pin(self.blocking(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let indexes = txn.open_table(INDEXES).map_err(db_err)?;
            // Keys are (index, key) tuples compared element by element, so one index's
            // entries are contiguous and ordered by key bytes; stop at the first entry
            // of the next index.
            let start = match after.as_deref() {
                Some(a) => Bound::Excluded((index.as_str(), a)),
                None => Bound::Included((index.as_str(), "")),
            };
            let mut out = Vec::new();
            for entry in indexes
                .range::<(&str, &str)>((start, Bound::Unbounded))
                .map_err(db_err)?
            {
                if out.len() >= limit {
                    break;
                }
                let (k, v) = entry.map_err(db_err)?;
                let (name, key) = k.value();
                if name != index {
                    break;
                }
                out.push((key.to_owned(), v.value().to_owned()));
            }
            Ok(out)
        }))
    }

    fn history_since(
        &self,
        _shard: crate::codec::ShardId,
        account: AccountId,
        cutoff_ms: Option<i64>,
        before: Option<&str>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<HistoryRow>> {
        let page = self.history_walk(account, cutoff_ms, before, limit, None);
        Box::pin(async move { Ok(page.await?.0) })
    }

    fn history_page(
        &self,
        _shard: crate::codec::ShardId,
        account: AccountId,
        cutoff_ms: Option<i64>,
        before: Option<&str>,
        limit: usize,
    ) -> StoreFuture<'_, (Vec<HistoryRow>, Option<String>)> {
        self.history_walk(account, cutoff_ms, before, limit, Some(WALK_MAX))
    }

    fn put_history(
        &self,
        rows: Vec<(crate::codec::ShardId, AccountId, HistoryRow)>,
        _epochs: Vec<(crate::codec::ShardId, u64)>,
    ) -> StoreFuture<'_, Vec<StoreError>> {
        // One node only (no leases): nothing to fence.
        Box::pin(self.blocking_rows(move |db, recent| {
            if rows.is_empty() {
                return Ok(Vec::new());
            }
            let rows = rows
                .into_iter()
                .map(|(_, account, row)| (account.0, row.key, row.payload))
                .collect();
            let txn = begin_write(db)?;
            recent.lock().commit(db, txn, rows)?;
            Ok(Vec::new())
        }))
    }

    fn drop_history_before(
        &self,
        _shards: Vec<crate::codec::ShardId>,
        cutoff_ms: i64,
        max_buckets: usize,
    ) -> StoreFuture<'_, super::retention::HistorySweep> {
        // One node, every shard's rows in the same bucket tables.
        let first_kept = super::retention::first_kept_bucket(cutoff_ms);
        Box::pin(self.blocking_rows(move |db, recent| {
            let txn = begin_write(db)?;
            recent.lock().sweep(db, txn, first_kept, max_buckets)
        }))
    }

    fn shard_log(&self) -> StoreFuture<'_, Arc<dyn super::shard_log::ShardLog>> {
        let result = (|| {
            let mut slot = self.log.lock();
            if let Some(log) = slot.as_ref() {
                return Ok(log.clone() as Arc<dyn super::shard_log::ShardLog>);
            }
            let log = Arc::new(super::shard_log::embedded::EmbeddedShardLog::open(
                &self.dir.join(SHARD_LOG_DIR),
            )?);
            *slot = Some(log.clone());
            Ok(log as Arc<dyn super::shard_log::ShardLog>)
        })();
        Box::pin(async move { result })
    }

    fn rows_gather(&self) -> std::time::Duration {
        // Each rows write is a redb commit: one `fsync` of the database
        // beside the shard logs' own.
        super::ROWS_GATHER
    }

    fn backend_name(&self) -> &'static str {
        "embedded"
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use redb::ReadableTableMetadata;

    use super::*;
    use crate::codec::ShardId;

    /// Bounds so small that nearly every write moves rows to `history`.
    const TINY: RowBounds = RowBounds {
        rows: 3,
        bytes: 1 << 20,
    };

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conforms_while_rows_move_all_the_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open_with(dir.path(), TINY).expect("open");
        crate::store::conformance::run_all(&store).await;
    }

    fn row(key: &str, payload: &str, replaces: bool) -> HistoryRow {
        HistoryRow {
            key: key.to_owned(),
            payload: payload.as_bytes().to_vec(),
            replaces,
        }
    }

    /// Every row of `account`, read page by page (pages of 3) as the API does.
    async fn all_rows(store: &EmbeddedStore, account: AccountId) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut before: Option<String> = None;
        loop {
            let page = store
                .history(ShardId(0), account, before.as_deref(), 3)
                .await
                .expect("history");
            out.extend(page.iter().map(|r| {
                (
                    r.key.clone(),
                    String::from_utf8_lossy(&r.payload).into_owned(),
                )
            }));
            match page.last() {
                Some(last) if page.len() == 3 => before = Some(last.key.clone()),
                _ => return out,
            }
        }
    }

    /// Random writes (new rows and later versions of earlier ones, several
    /// accounts, through `put_history` and `append`), with rows moving to
    /// `history` at tiny bounds and the store reopened now and then: every
    /// account's pages always read what a map of the newest versions says.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn history_matches_a_model_across_moves_and_reopens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let accounts: Vec<AccountId> = (1..=8).map(AccountId).collect();
        let mut model: BTreeMap<(u64, String), String> = BTreeMap::new();
        let mut seqs: BTreeMap<u64, u64> = BTreeMap::new();
        let mut rng = StdRng::seed_from_u64(10);
        for bounds in [
            TINY,
            RowBounds {
                rows: 8,
                bytes: 200,
            },
        ] {
            let mut store = EmbeddedStore::open_with(dir.path(), bounds).expect("open");
            for step in 0..200 {
                if rng.gen_ratio(1, 4) {
                    drop(store);
                    store = EmbeddedStore::open_with(dir.path(), bounds).expect("reopen");
                }
                let mut rows = Vec::new();
                let mut named = std::collections::HashSet::new();
                for _ in 0..rng.gen_range(1..6) {
                    let account = accounts[rng.gen_range(0..accounts.len())];
                    let key = format!("{:016x}k", rng.gen_range(0..6u64));
                    if !named.insert((account, key.clone())) {
                        continue;
                    }
                    let replaces = model.contains_key(&(account.0, key.clone()));
                    let payload = format!("{}-{step}", account.0);
                    model.insert((account.0, key.clone()), payload.clone());
                    rows.push((account, row(&key, &payload, replaces)));
                }
                if rng.gen_bool(0.5) {
                    let refused = store
                        .put_history(
                            rows.into_iter().map(|(a, r)| (ShardId(0), a, r)).collect(),
                            Vec::new(),
                        )
                        .await
                        .expect("put_history");
                    assert!(refused.is_empty());
                } else {
                    // Through the journal: one record per account.
                    let mut by_account: BTreeMap<AccountId, Vec<HistoryRow>> = BTreeMap::new();
                    for (a, r) in rows {
                        by_account.entry(a).or_default().push(r);
                    }
                    let batch: Vec<JournalAppend> = by_account
                        .into_iter()
                        .map(|(account, history)| {
                            let seq = seqs.entry(account.0).or_insert(0);
                            *seq += 1;
                            JournalAppend {
                                account,
                                seq: *seq,
                                payload: b"r".to_vec(),
                                history,
                            }
                        })
                        .collect();
                    let results = store.append(&batch).await.expect("append");
                    assert!(results.iter().all(Result::is_ok), "{results:?}");
                }
                for &account in &accounts {
                    let want: Vec<(String, String)> = model
                        .range((account.0, String::new())..(account.0 + 1, String::new()))
                        .rev()
                        .map(|((_, k), v)| (k.clone(), v.clone()))
                        .collect();
                    assert_eq!(
                        all_rows(&store, account).await,
                        want,
                        "{account} at step {step}"
                    );
                }
                let recent = store.recent.lock();
                assert!(
                    recent.len() <= bounds.rows,
                    "{} recent rows kept, bound {}",
                    recent.len(),
                    bounds.rows
                );
            }
            // The recent table stays bounded too (its blobs go oldest first).
            let txn = store.db.begin_read().expect("read");
            let blobs = txn
                .open_table(rows::RECENT)
                .expect("table")
                .len()
                .expect("len");
            assert!(blobs <= 2 * bounds.rows as u64, "{blobs} blobs kept");
        }
    }

    /// A data directory written before `history_recent` existed (rows only in
    /// `history`) reads as it did, and its rows take later versions.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rows_of_the_old_layout_are_read_and_upserted() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            // The layout of the previous version: every table but `history_recent`.
            let db = Database::create(dir.path().join(DB_FILE)).expect("create");
            let txn = db.begin_write().expect("write");
            {
                let mut history = txn.open_table(HISTORY).expect("history");
                for (key, payload) in [("k1", "old-1"), ("k2", "old-2"), ("k3", "old-3")] {
                    history
                        .insert((7, key), payload.as_bytes())
                        .expect("insert");
                }
                history
                    .insert((8, "k1"), b"other".as_slice())
                    .expect("insert");
                txn.open_table(JOURNAL).expect("journal");
                txn.open_table(SNAPSHOTS).expect("snapshots");
                txn.open_table(ACCOUNTS).expect("accounts");
                txn.open_table(INDEXES).expect("indexes");
            }
            txn.commit().expect("commit");
        }
        let store = EmbeddedStore::open_with(dir.path(), TINY).expect("open");
        let text = |rows: &[(&str, &str)]| -> Vec<(String, String)> {
            rows.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            all_rows(&store, AccountId(7)).await,
            text(&[("k3", "old-3"), ("k2", "old-2"), ("k1", "old-1")])
        );
        store
            .put_history(
                vec![
                    (ShardId(0), AccountId(7), row("k2", "new-2", true)),
                    (ShardId(0), AccountId(7), row("k4", "new-4", false)),
                ],
                Vec::new(),
            )
            .await
            .expect("put");
        let want = text(&[
            ("k4", "new-4"),
            ("k3", "old-3"),
            ("k2", "new-2"),
            ("k1", "old-1"),
        ]);
        assert_eq!(all_rows(&store, AccountId(7)).await, want);
        assert_eq!(
            all_rows(&store, AccountId(8)).await,
            text(&[("k1", "other")])
        );
        drop(store);
        let store = EmbeddedStore::open(dir.path()).expect("reopen");
        assert_eq!(all_rows(&store, AccountId(7)).await, want);
    }

    /// Engine rows of a file written before buckets (in `history`) stay
    /// readable and are superseded by later versions in bucket tables; a sweep
    /// drops bucket tables and the recent rows of swept buckets, never
    /// `history`; what it dropped stays gone across reopens (blobs replayed
    /// skip it), and so does a row written later into a swept bucket.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn history_pages_read_at_most_a_year_of_bucket_tables_and_stay_in_order() {
        // As on Redis (engine/tests/store_backends.rs): an account with few
        // rows among many weeks gets a short page with where to go on from,
        // and no row (pre-bucket `history`, recent rows) below that point.
        use crate::store::retention::{first_key_of_bucket, BUCKET_MS};
        let dir = tempfile::tempdir().expect("tempdir");
        let (mine, other) = (AccountId(0x51), AccountId(0x52));
        let key =
            |account: AccountId, ms: u64, n: u64| format!("{ms:016x}tx_{:016x}{n:016x}", account.0);
        let (old, older) = (key(mine, 950 * BUCKET_MS, 4), key(mine, 920 * BUCKET_MS, 6));
        {
            // Rows stored before buckets: weeks 950 and 920.
            let db = Database::create(dir.path().join(DB_FILE)).expect("create");
            let txn = db.begin_write().expect("write");
            {
                let mut history = txn.open_table(HISTORY).expect("history");
                for k in [&old, &older] {
                    history
                        .insert((mine.0, k.as_str()), &b"pre"[..])
                        .expect("insert");
                }
                txn.open_table(rows::RECENT).expect("recent");
            }
            txn.commit().expect("commit");
        }
        let store = EmbeddedStore::open_with(dir.path(), TINY).expect("open");
        let others = (901..1_000)
            .map(|week| row(&key(other, week * BUCKET_MS, week), "other", false))
            .collect();
        put(&store, other, others).await;
        let newest = [3, 2, 1].map(|n| key(mine, 1_000 * BUCKET_MS + n, n));
        let oldest = key(mine, 900 * BUCKET_MS + 5, 5);
        let mine_rows = newest
            .iter()
            .chain([&oldest])
            .map(|k| row(k, "mine", false))
            .collect();
        put(&store, mine, mine_rows).await;
        // More rows of another account, so that mine leave the recent rows.
        for n in 0..8 {
            put(
                &store,
                other,
                vec![row(&key(other, 1_001 * BUCKET_MS + n, n), "x", false)],
            )
            .await;
        }
        let keys = |rows: &[HistoryRow]| rows.iter().map(|r| r.key.clone()).collect::<Vec<_>>();
        let (page, next) = store
            .history_page(ShardId(0), mine, None, None, 10)
            .await
            .expect("page 1");
        let mut want: Vec<String> = newest.to_vec();
        want.push(old.clone());
        assert_eq!(keys(&page), want);
        // Weeks 1,001 down to 949 were read (53 tables).
        assert_eq!(next, Some(first_key_of_bucket(949)));
        let (page, next) = store
            .history_page(ShardId(0), mine, None, next.as_deref(), 10)
            .await
            .expect("page 2");
        assert_eq!(keys(&page), [older.clone(), oldest.clone()]);
        assert_eq!(next, None);
        // The unbounded read lists all of it at once.
        let all = store
            .history_since(ShardId(0), mine, None, None, 10)
            .await
            .expect("all");
        want.extend([older, oldest]);
        assert_eq!(keys(&all), want);
    }

    async fn put(store: &EmbeddedStore, account: AccountId, rows: Vec<HistoryRow>) {
        let rows = rows.into_iter().map(|r| (ShardId(0), account, r)).collect();
        let refused = store.put_history(rows, Vec::new()).await.expect("put");
        assert!(refused.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sweeps_drop_bucket_tables_and_recent_rows_for_good() {
        use crate::store::retention::BUCKET_MS;
        let dir = tempfile::tempdir().expect("tempdir");
        let a = AccountId(7);
        let key =
            |bucket: u64, n: u64| format!("{:016x}tx_{:016x}{n:016x}", bucket * BUCKET_MS + n, a.0);
        {
            // The previous layout: no bucket tables, no `history_meta`.
            let db = Database::create(dir.path().join(DB_FILE)).expect("create");
            let txn = db.begin_write().expect("write");
            {
                let mut history = txn.open_table(HISTORY).expect("history");
                for (k, p) in [(key(100, 1), "old-100"), (key(200, 1), "old-200")] {
                    history
                        .insert((a.0, k.as_str()), p.as_bytes())
                        .expect("insert");
                }
                txn.open_table(rows::RECENT).expect("recent");
            }
            txn.commit().expect("commit");
        }
        let keys =
            |rows: Vec<(String, String)>| rows.into_iter().map(|(_, p)| p).collect::<Vec<_>>();
        // Bounds so tiny that most rows move to their bucket tables at once.
        let store = EmbeddedStore::open_with(dir.path(), TINY).expect("open");
        put(
            &store,
            a,
            vec![
                row(&key(100, 2), "new-100", false),
                row(&key(150, 1), "new-150", false),
                row(&key(200, 1), "newer-200", true),
                row(&key(210, 1), "new-210", false),
                row(&key(150, 2), "new-150b", false),
            ],
        )
        .await;
        put(&store, a, vec![row(&key(220, 1), "new-220", false)]).await;
        assert_eq!(
            keys(all_rows(&store, a).await),
            [
                "new-220",
                "new-210",
                "newer-200",
                "new-150b",
                "new-150",
                "new-100",
                "old-100"
            ]
        );
        let tables = |store: &EmbeddedStore| {
            let txn = store.db.begin_read().expect("read");
            rows::buckets_of(txn.list_tables().expect("tables"))
        };
        assert!(tables(&store).contains(&150), "{:?}", tables(&store));
        // Cutoff inside bucket 180: buckets 100 and 150 go, one per call.
        let cutoff = (180 * BUCKET_MS + 5) as i64;
        let first = store
            .drop_history_before(Vec::new(), cutoff, 1)
            .await
            .expect("sweep");
        assert_eq!((first.buckets, first.more), (1, true));
        let second = store
            .drop_history_before(Vec::new(), cutoff, 1)
            .await
            .expect("sweep");
        assert_eq!((second.buckets, second.more), (1, false));
        assert_eq!(first.rows + second.rows, 3);
        assert!(
            tables(&store).iter().all(|&b| b >= 180),
            "{:?}",
            tables(&store)
        );
        let want = ["new-220", "new-210", "newer-200", "old-100"];
        assert_eq!(keys(all_rows(&store, a).await), want);
        // A row written into a swept bucket now is past retention: dropped.
        put(&store, a, vec![row(&key(150, 3), "late-150", false)]).await;
        assert_eq!(keys(all_rows(&store, a).await), want);
        drop(store);
        // Reopened with the default bounds (every blob replayed): still gone.
        let store = EmbeddedStore::open(dir.path()).expect("reopen");
        assert_eq!(keys(all_rows(&store, a).await), want);
        let again = store
            .drop_history_before(Vec::new(), cutoff, 16)
            .await
            .expect("sweep");
        assert_eq!(again, crate::store::retention::HistorySweep::default());
    }

    #[test]
    fn merge_keeps_the_newer_version_of_a_key() {
        let rows = |keys: &[(&str, &str)]| -> Vec<HistoryRow> {
            keys.iter().map(|(k, p)| row(k, p, false)).collect()
        };
        let merged = merge_newest_first(
            rows(&[("d", "new"), ("b", "new")]),
            rows(&[("c", "old"), ("b", "old"), ("a", "old")]),
            10,
        );
        assert_eq!(
            merged,
            rows(&[("d", "new"), ("c", "old"), ("b", "new"), ("a", "old")])
        );
        let merged = merge_newest_first(
            rows(&[("d", "new"), ("b", "new")]),
            rows(&[("c", "old"), ("b", "old"), ("a", "old")]),
            3,
        );
        assert_eq!(merged, rows(&[("d", "new"), ("c", "old"), ("b", "new")]));
        assert!(merge_newest_first(rows(&[("a", "x")]), Vec::new(), 0).is_empty());
    }
}
