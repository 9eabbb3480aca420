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

/// An account's history rows, sorted by key, packed: every key and payload
/// lies back to back in one buffer and the sorted index holds where. Keys
/// start with the row's creation time, so a new row almost always sorts last
/// and is appended (one comparison). A row used to be a `(String, Vec<u8>)`:
/// two allocations (the payload with twice its length of capacity) and a
/// 48-byte slot, about 220 bytes for a row of about 100, all of it fresh
/// memory on a store that only grows.
#[derive(Default)]
struct Rows {
    /// Keys and payloads: row `r`'s key is `bytes[r.at..r.at + r.key_len]`,
    /// its payload follows. A replaced or dropped row stays until
    /// [`Rows::compact_if_mostly_dead`] rewrites the buffer.
    bytes: Vec<u8>,
    /// One entry per row, sorted by key.
    index: Vec<RowAt>,
    /// Bytes of `bytes` that no entry points at any more.
    dead: usize,
}

/// Where a row lies in [`Rows::bytes`].
#[derive(Clone, Copy)]
struct RowAt {
    at: usize,
    key_len: u32,
    payload_len: u32,
}

impl RowAt {
    fn len(self) -> usize {
        self.key_len as usize + self.payload_len as usize
    }
}

impl Rows {
    /// Row `row`'s key as bytes: compared as such, since UTF-8 sorts as its
    /// bytes do.
    fn key_bytes(&self, row: RowAt) -> &[u8] {
        &self.bytes[row.at..row.at + row.key_len as usize]
    }

    fn key(&self, row: RowAt) -> &str {
        // unwrap: only whole `&str`s are ever pushed as keys, and an index
        // entry spans exactly one.
        std::str::from_utf8(self.key_bytes(row)).expect("a stored key is UTF-8")
    }

    fn payload(&self, row: RowAt) -> &[u8] {
        &self.bytes[row.at + row.key_len as usize..row.at + row.len()]
    }

    /// Appends `key` and `payload` to the buffer and says where.
    fn push_bytes(&mut self, key: &str, payload: &[u8]) -> RowAt {
        let at = self.bytes.len();
        self.bytes.extend_from_slice(key.as_bytes());
        self.bytes.extend_from_slice(payload);
        // unwrap: the engine builds rows of a few hundred bytes at most (and
        // these are in memory already); 4 GiB is far out of reach.
        RowAt {
            at,
            key_len: u32::try_from(key.len()).expect("a row key under 4 GiB"),
            payload_len: u32::try_from(payload.len()).expect("a row under 4 GiB"),
        }
    }

    /// Inserts the row `key`, or replaces its payload when it exists (then
    /// returns `true`).
    fn upsert(&mut self, key: &str, payload: &[u8]) -> bool {
        let key_bytes = key.as_bytes();
        if self
            .index
            .last()
            .is_none_or(|&last| self.key_bytes(last) < key_bytes)
        {
            let row = self.push_bytes(key, payload);
            self.index.push(row);
            return false;
        }
        match self
            .index
            .binary_search_by(|&r| self.key_bytes(r).cmp(key_bytes))
        {
            Ok(i) => {
                self.dead += self.index[i].len();
                self.index[i] = self.push_bytes(key, payload);
                self.compact_if_mostly_dead();
                true
            }
            Err(i) => {
                let row = self.push_bytes(key, payload);
                self.index.insert(i, row);
                false
            }
        }
    }

    /// Keeps the rows whose keys `keep` says yes to; returns how many went.
    fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) -> usize {
        let before = self.index.len();
        let mut index = std::mem::take(&mut self.index);
        index.retain(|&r| {
            let kept = keep(self.key(r));
            if !kept {
                self.dead += r.len();
            }
            kept
        });
        self.index = index;
        self.compact_if_mostly_dead();
        before - self.index.len()
    }

    /// Rewrites the buffer without the dead bytes once they are more than
    /// half of it, so replaced and dropped rows do not pile up.
    fn compact_if_mostly_dead(&mut self) {
        if self.dead * 2 <= self.bytes.len() {
            return;
        }
        let mut bytes = Vec::with_capacity(self.bytes.len() - self.dead);
        for row in &mut self.index {
            let at = bytes.len();
            bytes.extend_from_slice(&self.bytes[row.at..row.at + row.len()]);
            row.at = at;
        }
        self.bytes = bytes;
        self.dead = 0;
    }

    /// Up to `limit` rows with keys before `before` (all when `None`) and at or
    /// after `from` (all when `None`), newest first.
    fn newest_before(
        &self,
        from: Option<&str>,
        before: Option<&str>,
        limit: usize,
    ) -> Vec<HistoryRow> {
        let end = before.map_or(self.index.len(), |b| {
            self.index
                .partition_point(|&r| self.key_bytes(r) < b.as_bytes())
        });
        let start = from.map_or(0, |f| {
            self.index
                .partition_point(|&r| self.key_bytes(r) < f.as_bytes())
        });
        self.index[start.min(end)..end]
            .iter()
            .rev()
            .take(limit)
            .map(|&r| HistoryRow {
                key: self.key(r).to_owned(),
                payload: self.payload(r).to_vec(),
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
                        data.history.upsert(&row.key, &row.payload);
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
                    .upsert(&row.key, &row.payload);
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
                        rows += data
                            .history
                            .retain(|key| bucket_of(key).is_none_or(|b| !old.contains(&b)))
                            as u64;
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::Rows;

    /// What a step does to the rows.
    #[derive(Debug, Clone)]
    enum Step {
        Upsert(String, Vec<u8>),
        /// Drops the rows whose key starts with this character.
        DropStartingWith(char),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => ("[a-e][a-e0-9]{0,3}", proptest::collection::vec(any::<u8>(), 0..12))
                .prop_map(|(k, v)| Step::Upsert(k, v)),
            1 => proptest::char::range('a', 'e').prop_map(Step::DropStartingWith),
        ]
    }

    proptest! {
        /// The packed rows answer as a sorted map of keys to payloads does,
        /// through replacements, drops and the compactions they set off.
        #[test]
        fn packed_rows_behave_as_a_sorted_map(steps in proptest::collection::vec(step(), 0..80)) {
            let (mut rows, mut model) = (Rows::default(), BTreeMap::<String, Vec<u8>>::new());
            for step in steps {
                match step {
                    Step::Upsert(key, payload) => {
                        let replaced = rows.upsert(&key, &payload);
                        prop_assert_eq!(replaced, model.insert(key, payload).is_some());
                    }
                    Step::DropStartingWith(c) => {
                        let dropped = rows.retain(|key| !key.starts_with(c));
                        let before = model.len();
                        model.retain(|key, _| !key.starts_with(c));
                        prop_assert_eq!(dropped, before - model.len());
                    }
                }
                prop_assert!(rows.dead * 2 <= rows.bytes.len(), "compacted once mostly dead");
                let all: Vec<_> = rows
                    .newest_before(None, None, usize::MAX)
                    .into_iter()
                    .map(|row| (row.key, row.payload))
                    .collect();
                let expected: Vec<_> = model.iter().rev().map(|(k, v)| (k.clone(), v.clone())).collect();
                prop_assert_eq!(all, expected);
                let page: Vec<_> = rows
                    .newest_before(Some("b"), Some("d"), 3)
                    .into_iter()
                    .map(|row| row.key)
                    .collect();
                let expected: Vec<_> = model.range("b".to_owned().."d".to_owned()).rev().take(3).map(|(k, _)| k.clone()).collect();
                prop_assert_eq!(page, expected);
            }
        }
    }
}
