//! An in-memory [`Store`] for unit tests and benchmarks of the engine alone.
//!
//! It keeps exactly the contract of the durable backends (sequence checks, trim on
//! snapshot, atomic index claims, history buckets dropped whole) so engine tests
//! exercise the same rules; it just forgets everything when dropped. It can also
//! be told to fail, to test how the engine behaves when storage is down.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use super::{
    AppendResult, HistoryRow, JournalAppend, Loaded, Record, Snapshot, Store, StoreError,
    StoreFuture,
};
use crate::ids::AccountId;

#[derive(Default)]
struct AccountData {
    snapshot: Option<Snapshot>,
    journal: Vec<Record>,
    history: Rows,
}

/// An account's history rows, sorted by key. Keys start with the row's creation
/// time, so a new row almost always sorts last and is appended (one comparison);
/// a map cost a tree walk of string comparisons and a node allocation per row,
/// a tenth of the engine's CPU on this store.
#[derive(Default)]
struct Rows(Vec<(String, Vec<u8>)>);

impl Rows {
    /// Inserts the row `key`, or replaces its payload when it exists (then
    /// returns `true`).
    fn upsert(&mut self, key: String, payload: Vec<u8>) -> bool {
        if self.0.last().is_none_or(|(last, _)| *last < key) {
            self.0.push((key, payload));
            return false;
        }
        match self.0.binary_search_by(|(k, _)| k.as_str().cmp(&key)) {
            Ok(i) => {
                self.0[i].1 = payload;
                true
            }
            Err(i) => {
                self.0.insert(i, (key, payload));
                false
            }
        }
    }

    /// Up to `limit` rows with keys before `before` (all when `None`) and at or
    /// after `from` (all when `None`), newest first.
    fn newest_before(
        &self,
        from: Option<&str>,
        before: Option<&str>,
        limit: usize,
    ) -> Vec<HistoryRow> {
        let end = before.map_or(self.0.len(), |b| {
            self.0.partition_point(|(k, _)| k.as_str() < b)
        });
        let start = from.map_or(0, |f| self.0.partition_point(|(k, _)| k.as_str() < f));
        self.0[start.min(end)..end]
            .iter()
            .rev()
            .take(limit)
            .map(|(k, v)| HistoryRow {
                key: k.clone(),
                payload: v.clone(),
                replaces: false,
            })
            .collect()
    }
}

impl AccountData {
    fn last_seq(&self) -> u64 {
        self.journal
            .last()
            .map(|r| r.seq)
            .or(self.snapshot.as_ref().map(|s| s.seq))
            .unwrap_or(0)
    }
}

/// Account shards: the arbiters append concurrently without fighting over one lock.
const SHARDS: usize = 64;

/// The in-memory store. `parking_lot::Mutex`es (not async ones) because no lock is
/// held across an await: every operation completes before its future is returned.
pub struct MemoryStore {
    accounts: Vec<Mutex<BTreeMap<AccountId, AccountData>>>,
    indexes: Mutex<HashMap<String, BTreeMap<String, String>>>,
    failing: std::sync::Arc<AtomicBool>,
    log: std::sync::Arc<super::shard_log::memory::MemoryShardLog>,
    /// History rows written, and how many of them were written over a stored
    /// row of the same key (what a durable backend pays for twice).
    rows_written: AtomicU64,
    rows_rewritten: AtomicU64,
    /// The time buckets that hold rows ([`super::retention`]), so a sweep
    /// drops whole buckets as the durable backends do.
    buckets: Mutex<BTreeSet<u64>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        let failing = std::sync::Arc::new(AtomicBool::default());
        MemoryStore {
            accounts: (0..SHARDS).map(|_| Mutex::new(BTreeMap::new())).collect(),
            indexes: Mutex::default(),
            failing: failing.clone(),
            log: std::sync::Arc::new(super::shard_log::memory::MemoryShardLog::with_failing(
                failing,
            )),
            rows_written: AtomicU64::new(0),
            rows_rewritten: AtomicU64::new(0),
            buckets: Mutex::default(),
        }
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Remembers the buckets of `rows` (before writing them, so a sweep that
    /// runs meanwhile at worst keeps a bucket it could have dropped).
    fn note_buckets<'a>(&self, rows: impl Iterator<Item = &'a HistoryRow>) {
        let mut buckets = None;
        for b in rows.filter_map(|row| super::retention::bucket_of(&row.key)) {
            buckets.get_or_insert_with(|| self.buckets.lock()).insert(b);
        }
    }

    fn shard(&self, account: AccountId) -> &Mutex<BTreeMap<AccountId, AccountData>> {
        &self.accounts[(account.0 % SHARDS as u64) as usize]
    }

    /// Control over the answers to the shard log's appends (see
    /// [`AppendReplies`](super::shard_log::memory::AppendReplies)).
    pub fn appends(&self) -> &super::shard_log::memory::AppendReplies {
        self.log.replies()
    }

    /// History rows written so far, and how many of them replaced a stored row
    /// of the same key.
    pub fn rows_written(&self) -> (u64, u64) {
        (
            self.rows_written.load(Ordering::Relaxed),
            self.rows_rewritten.load(Ordering::Relaxed),
        )
    }

    /// While `true`, every operation fails with [`StoreError::Unavailable`].
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("memory store told to fail".into()))
        } else {
            Ok(())
        }
    }

    /// Number of journal records currently kept for `account` (after trimming).
    pub fn journal_len(&self, account: AccountId) -> usize {
        self.shard(account)
            .lock()
            .get(&account)
            .map_or(0, |a| a.journal.len())
    }
}

impl Store for MemoryStore {
    fn append(&self, batch: &[JournalAppend]) -> StoreFuture<'_, Vec<AppendResult>> {
        let result = self.check().map(|()| {
            self.note_buckets(batch.iter().flat_map(|rec| &rec.history));
            batch
                .iter()
                .map(|rec| {
                    let mut accounts = self.shard(rec.account).lock();
                    let data = accounts.entry(rec.account).or_default();
                    let expected = data.last_seq() + 1;
                    if rec.seq != expected {
                        return Err(StoreError::SequenceConflict {
                            account: rec.account,
                            expected,
                            got: rec.seq,
                        });
                    }
                    data.journal.push(Record {
                        seq: rec.seq,
                        payload: rec.payload.clone(),
                    });
                    for row in &rec.history {
                        data.history.upsert(row.key.clone(), row.payload.clone());
                    }
                    Ok(())
                })
                .collect()
        });
        Box::pin(std::future::ready(result))
    }

    fn load(&self, account: AccountId) -> StoreFuture<'_, Loaded> {
        let result = self.check().map(|()| {
            let accounts = self.shard(account).lock();
            accounts
                .get(&account)
                .map(|a| Loaded {
                    snapshot: a.snapshot.clone(),
                    records: a.journal.clone(),
                })
                .unwrap_or_default()
        });
        Box::pin(std::future::ready(result))
    }

    fn save_snapshot(&self, account: AccountId, snapshot: Snapshot) -> StoreFuture<'_, ()> {
        let result = self.check().map(|()| {
            let mut accounts = self.shard(account).lock();
            let data = accounts.entry(account).or_default();
            if data
                .snapshot
                .as_ref()
                .is_some_and(|s| s.seq >= snapshot.seq)
            {
                return;
            }
            let seq = snapshot.seq;
            data.snapshot = Some(snapshot);
            data.journal.retain(|r| r.seq > seq);
        });
        Box::pin(std::future::ready(result))
    }

    fn list_accounts(
        &self,
        after: Option<AccountId>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<AccountId>> {
        let result = self.check().map(|()| {
            let start = after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
            let mut ids: Vec<AccountId> = self
                .accounts
                .iter()
                .flat_map(|shard| {
                    shard
                        .lock()
                        .range((start, std::ops::Bound::Unbounded))
                        .take(limit)
                        .map(|(id, _)| *id)
                        .collect::<Vec<_>>()
                })
                .collect();
            ids.sort();
            ids.truncate(limit);
            ids
        });
        Box::pin(std::future::ready(result))
    }

    fn claim_index(&self, index: &str, key: &str, value: &str) -> StoreFuture<'_, bool> {
        let result = self.check().map(|()| {
            let mut indexes = self.indexes.lock();
            let map = indexes.entry(index.to_owned()).or_default();
            if map.contains_key(key) {
                false
            } else {
                map.insert(key.to_owned(), value.to_owned());
                true
            }
        });
        Box::pin(std::future::ready(result))
    }

    fn get_index(&self, index: &str, key: &str) -> StoreFuture<'_, Option<String>> {
        let result = self.check().map(|()| {
            self.indexes
                .lock()
                .get(index)
                .and_then(|m| m.get(key).cloned())
        });
        Box::pin(std::future::ready(result))
    }

    fn delete_index(&self, index: &str, key: &str) -> StoreFuture<'_, ()> {
        let result = self.check().map(|()| {
            if let Some(m) = self.indexes.lock().get_mut(index) {
                m.remove(key);
            }
        });
        Box::pin(std::future::ready(result))
    }

    fn scan_index(
        &self,
        index: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<(String, String)>> {
        let result = self.check().map(|()| {
            let indexes = self.indexes.lock();
            let Some(map) = indexes.get(index) else {
                return Vec::new();
            };
            let start = after.map_or(std::ops::Bound::Unbounded, |a| {
                std::ops::Bound::Excluded(a.to_owned())
            });
            map.range((start, std::ops::Bound::Unbounded))
                .take(limit)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        });
        Box::pin(std::future::ready(result))
    }

    fn history_since(
        &self,
        _shard: crate::codec::ShardId,
        account: AccountId,
        cutoff_ms: Option<i64>,
        before: Option<&str>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<HistoryRow>> {
        let from = super::retention::first_kept_key(cutoff_ms);
        let result = self.check().map(|()| {
            let accounts = self.shard(account).lock();
            let Some(data) = accounts.get(&account) else {
                return Vec::new();
            };
            data.history.newest_before(from.as_deref(), before, limit)
        });
        Box::pin(std::future::ready(result))
    }

    fn put_history(
        &self,
        rows: Vec<(crate::codec::ShardId, AccountId, HistoryRow)>,
        _epochs: Vec<(crate::codec::ShardId, u64)>,
    ) -> StoreFuture<'_, Vec<StoreError>> {
        // One node only (no leases): nothing to fence.
        let result = self.check().map(|()| {
            self.note_buckets(rows.iter().map(|(_, _, row)| row));
            for (_, account, row) in rows {
                let rewritten = self
                    .shard(account)
                    .lock()
                    .entry(account)
                    .or_default()
                    .history
                    .upsert(row.key, row.payload);
                self.rows_written.fetch_add(1, Ordering::Relaxed);
                self.rows_rewritten
                    .fetch_add(u64::from(rewritten), Ordering::Relaxed);
            }
            Vec::new()
        });
        Box::pin(async move { result })
    }

    fn drop_history_before(
        &self,
        _shards: Vec<crate::codec::ShardId>,
        cutoff_ms: i64,
        max_buckets: usize,
    ) -> StoreFuture<'_, super::retention::HistorySweep> {
        use super::retention::{bucket_of, first_kept_bucket, HistorySweep};
        let result = self.check().map(|()| {
            let first_kept = first_kept_bucket(cutoff_ms);
            let mut buckets = self.buckets.lock();
            let old: BTreeSet<u64> = buckets
                .range(..first_kept)
                .take(max_buckets)
                .copied()
                .collect();
            let mut rows = 0;
            if !old.is_empty() {
                for shard in &self.accounts {
                    for data in shard.lock().values_mut() {
                        let before = data.history.0.len();
                        data.history
                            .0
                            .retain(|(key, _)| bucket_of(key).is_none_or(|b| !old.contains(&b)));
                        rows += (before - data.history.0.len()) as u64;
                    }
                }
            }
            for b in &old {
                buckets.remove(b);
            }
            HistorySweep {
                buckets: old.len() as u64,
                rows,
                more: buckets.range(..first_kept).next().is_some(),
            }
        });
        Box::pin(std::future::ready(result))
    }

    fn shard_log(&self) -> StoreFuture<'_, std::sync::Arc<dyn super::shard_log::ShardLog>> {
        let log: std::sync::Arc<dyn super::shard_log::ShardLog> = self.log.clone();
        Box::pin(async move { Ok(log) })
    }

    fn backend_name(&self) -> &'static str {
        "memory"
    }
}
