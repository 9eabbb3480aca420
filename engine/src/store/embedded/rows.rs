//! The embedded store's history rows, written in two steps so that a batch of
//! rows costs a few pages instead of a page per row.
//!
//! The `history` table is keyed by `(account, row key)`, so one account's rows
//! are contiguous and a page newest-first is one range scan. But a batch's rows
//! belong to as many accounts as it has rows, and redb copies every leaf a write
//! transaction touches (copy on write, 4 KiB each): written straight there, a
//! batch of rows cost about one page per row. So rows first land in
//! `history_recent`, one value per write (a *blob*: every row of one
//! `put_history` or journal append, under an increasing seq, so the table only
//! ever grows at its end), and are kept in memory per account. When the recent
//! rows pass a bound, the accounts of the oldest blobs move all of their recent
//! rows to `history` in one transaction: an account's rows sit side by side, so
//! several of them share a leaf, and the blobs that no longer hold a recent row
//! are deleted in that same transaction. Reads merge the two: the recent
//! version of a row wins over the one in `history`.
//!
//! Blobs are deleted only from the oldest one on: a kept blob may hold an old
//! version of a row whose newer version is in a later blob, and reopening
//! replays every kept blob in seq order (the newer version wins), so the later
//! blob must outlive it. A row moved to `history` whose blob is still kept is
//! replayed at open and moved again later, which writes the same bytes.
//!
//! Rows move to the table of their time bucket (`store::retention`: 7 days of
//! key time), `history_b<bucket>` (decimal), keyed and valued as `history`, so
//! that the rows past retention go a whole table at a time ([`Recent::sweep`]:
//! `delete_table` frees its pages, no row is visited). Only rows whose key has
//! the engine's shape have a bucket; the others, and every row written before
//! buckets existed, are in `history`, read, and never swept. A sweep also
//! records in `history_meta` (`swept_below`) the first bucket it kept: rows of
//! older buckets still in blobs are forgotten then, skipped when blobs are
//! replayed at open, and so are rows written into those buckets later (their
//! time is past retention).
//!
//! Blob format (version 1, the first byte): a varint row count, then for each
//! row the account (`u64`, little-endian), the key and the payload, each a
//! varint length and the bytes. A blob of another version is refused at open
//! (`Corrupt`), never misread.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

use redb::{
    Database, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle,
    UntypedTableHandle, WriteTransaction,
};

use super::{db_err, HISTORY};
use crate::codec::wire::{put_varint, Reader};
use crate::store::retention::{bucket_of, HistorySweep};
use crate::store::{HistoryRow, StoreError};

/// Rows not yet in `history`, one value per write, by an increasing seq.
pub(super) const RECENT: TableDefinition<u64, &[u8]> = TableDefinition::new("history_recent");

/// Settings of the history rows: `swept_below`, the first bucket the last
/// sweep kept (0 or absent: none swept).
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("history_meta");
const SWEPT_BELOW: &str = "swept_below";

/// What the names of the bucket tables start with.
const BUCKET_TABLE: &str = "history_b";

/// The name of the table of `bucket`'s rows.
pub(super) fn bucket_table_name(bucket: u64) -> String {
    format!("{BUCKET_TABLE}{bucket}")
}

/// The table of one bucket's rows: `(account, row key)` → payload, as `history`.
pub(super) fn bucket_table(name: &str) -> TableDefinition<'_, (u64, &'static str), &'static [u8]> {
    TableDefinition::new(name)
}

/// The buckets of the tables named, ascending (other tables are ignored; a
/// name that only looks like one, such as a zero-padded number, too).
pub(super) fn buckets_of(tables: impl Iterator<Item = UntypedTableHandle>) -> Vec<u64> {
    let mut buckets: Vec<u64> = tables
        .filter_map(|t| {
            let bucket: u64 = t.name().strip_prefix(BUCKET_TABLE)?.parse().ok()?;
            (bucket_table_name(bucket) == t.name()).then_some(bucket)
        })
        .collect();
    buckets.sort_unstable();
    buckets
}

/// The blob format this code writes (and the only one it reads).
const BLOB_VERSION: u8 = 1;

/// When the recent rows pass either bound they are moved to `history` until
/// they are back under three quarters of it. More rows kept means more rows
/// per account per move (fewer pages per row) but more memory: about 300 bytes
/// a row with the map around it, so about 20 MiB at the default row bound (the
/// byte bound caps it when rows are larger).
#[derive(Debug, Clone, Copy)]
pub struct RowBounds {
    pub rows: usize,
    /// Bytes of keys and payloads.
    pub bytes: usize,
}

impl Default for RowBounds {
    fn default() -> Self {
        RowBounds {
            rows: 65_536,
            bytes: 16 * 1024 * 1024,
        }
    }
}

/// One row to store: `(account, key, payload)`.
pub(super) type NewRow = (u64, String, Vec<u8>);

/// Encodes the rows of one write as a blob.
pub(super) fn encode(rows: &[NewRow]) -> Vec<u8> {
    let size: usize = rows.iter().map(|r| 8 + 4 + r.1.len() + r.2.len()).sum();
    let mut buf = Vec::with_capacity(1 + 5 + size);
    buf.push(BLOB_VERSION);
    put_varint(&mut buf, rows.len() as u64);
    for (account, key, payload) in rows {
        buf.extend_from_slice(&account.to_le_bytes());
        put_varint(&mut buf, key.len() as u64);
        buf.extend_from_slice(key.as_bytes());
        put_varint(&mut buf, payload.len() as u64);
        buf.extend_from_slice(payload);
    }
    buf
}

/// Decodes a blob; anything but a whole blob of a known version is `Corrupt`.
pub(super) fn decode(blob: &[u8]) -> Result<Vec<NewRow>, StoreError> {
    let corrupt = |what: String| StoreError::Corrupt(format!("history blob: {what}"));
    let mut r = Reader::new(blob);
    let version = r.u8().map_err(|e| corrupt(e.to_string()))?;
    if version != BLOB_VERSION {
        return Err(corrupt(format!("unknown version {version}")));
    }
    let field = |r: &mut Reader<'_>| -> Result<Vec<u8>, StoreError> {
        let len = r.varint().map_err(|e| corrupt(e.to_string()))?;
        let len = usize::try_from(len).map_err(|_| corrupt("length over usize".into()))?;
        Ok(r.take(len).map_err(|e| corrupt(e.to_string()))?.to_vec())
    };
    let count = r.varint().map_err(|e| corrupt(e.to_string()))?;
    // Each row takes at least 10 bytes: a count beyond that is not a blob (and
    // must not size an allocation).
    if count > (r.remaining() / 10) as u64 {
        return Err(corrupt(format!("{count} rows in {} bytes", blob.len())));
    }
    let mut rows = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let account = r.u64().map_err(|e| corrupt(e.to_string()))?;
        let key = String::from_utf8(field(&mut r)?).map_err(|e| corrupt(e.to_string()))?;
        let payload = field(&mut r)?;
        rows.push((account, key, payload));
    }
    if r.remaining() != 0 {
        return Err(corrupt(format!("{} bytes after the rows", r.remaining())));
    }
    Ok(rows)
}

/// A row moving to its table: `(account, key, payload)`.
type MovedRow<'a> = (u64, &'a str, &'a [u8]);

/// One account's recent rows: row key → (the blob of its newest version, payload).
type AccountRows = BTreeMap<String, (u64, Vec<u8>)>;

/// A blob still in `history_recent`.
struct Blob {
    /// Rows in [`Recent::rows`] whose newest version is this blob's.
    live: usize,
    /// Rows it holds, live or not.
    rows: usize,
    /// The accounts of its rows (to move them when it is the oldest).
    accounts: Vec<u64>,
}

/// The recent rows in memory: what `history_recent` holds, newest version of
/// each row, minus the rows already moved to `history`.
pub(super) struct Recent {
    rows: HashMap<u64, AccountRows>,
    blobs: BTreeMap<u64, Blob>,
    next_seq: u64,
    len: usize,
    bytes: usize,
    /// Rows in the kept blobs, live or not: a later version of a row does not
    /// make the recent rows more, but the table longer, so this is bounded too.
    stored: usize,
    bounds: RowBounds,
    /// Set when memory could not be brought back in line with the file after a
    /// failed write: every later call fails until the store is opened again.
    poisoned: Option<String>,
    /// Rows of buckets below this one are past retention and swept: never
    /// kept here (see the module's notes).
    swept_below: u64,
}

impl Recent {
    /// No recent row yet.
    fn empty(bounds: RowBounds) -> Recent {
        Recent {
            rows: HashMap::new(),
            blobs: BTreeMap::new(),
            next_seq: 1,
            len: 0,
            bytes: 0,
            stored: 0,
            bounds,
            poisoned: None,
            swept_below: 0,
        }
    }

    /// Reads `history_recent` back: every kept blob in seq order, the newest
    /// version of each row winning.
    pub(super) fn load(db: &Database, bounds: RowBounds) -> Result<Recent, StoreError> {
        let mut recent = Recent::empty(bounds);
        let txn = db.begin_read().map_err(db_err)?;
        let meta = txn.open_table(META).map_err(db_err)?;
        recent.swept_below = meta
            .get(SWEPT_BELOW)
            .map_err(db_err)?
            .map_or(0, |v| v.value());
        let table = txn.open_table(RECENT).map_err(db_err)?;
        for entry in table.iter().map_err(db_err)? {
            let (seq, blob) = entry.map_err(db_err)?;
            let seq = seq.value();
            recent.add(seq, decode(blob.value())?);
            recent.next_seq = seq + 1;
        }
        Ok(recent)
    }

    /// Makes memory follow a write transaction's `result`: when it failed (its
    /// outcome unknown), the recent rows are read back from the file, keeping
    /// the seqs already handed out; when even that fails, they are poisoned.
    fn follow<T>(&mut self, db: &Database, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(e) = &result {
            let next_seq = self.next_seq;
            match Recent::load(db, self.bounds) {
                Ok(reloaded) => {
                    *self = reloaded;
                    self.next_seq = self.next_seq.max(next_seq);
                }
                Err(reload) => self.poisoned = Some(format!("{e}; reading back: {reload}")),
            }
        }
        result
    }

    fn check(&self) -> Result<(), StoreError> {
        match &self.poisoned {
            Some(why) => Err(StoreError::Unavailable(format!(
                "history rows failed earlier: {why}"
            ))),
            None => Ok(()),
        }
    }

    /// Adds the rows of blob `seq` (a later version of a row replaces the
    /// earlier one, whichever blob that was in).
    fn add(&mut self, seq: u64, rows: Vec<NewRow>) {
        let mut accounts: Vec<u64> = rows.iter().map(|r| r.0).collect();
        accounts.sort_unstable();
        accounts.dedup();
        self.stored += rows.len();
        self.blobs.insert(
            seq,
            Blob {
                live: 0,
                rows: rows.len(),
                accounts,
            },
        );
        for (account, key, payload) in rows {
            if bucket_of(&key).is_some_and(|b| b < self.swept_below) {
                // Past retention and its bucket swept: stored in the blob,
                // never kept.
                continue;
            }
            self.bytes += key.len() + payload.len();
            let key_len = key.len();
            let old = self
                .rows
                .entry(account)
                .or_default()
                .insert(key, (seq, payload));
            match old {
                Some((old_seq, old_payload)) => {
                    self.bytes -= key_len + old_payload.len();
                    self.release(old_seq);
                }
                None => self.len += 1,
            }
            // unwrap: inserted above.
            self.blobs.get_mut(&seq).unwrap().live += 1;
        }
    }

    fn release(&mut self, seq: u64) {
        if let Some(blob) = self.blobs.get_mut(&seq) {
            blob.live -= 1;
        }
    }

    /// Whether the recent rows (or the kept blobs' rows, `stored`) are over
    /// `quarters` quarters of the bounds (kept blobs may hold twice the rows).
    fn over(&self, quarters: usize, stored: usize) -> bool {
        self.len > self.bounds.rows / 4 * quarters
            || self.bytes > self.bounds.bytes / 4 * quarters
            || stored > self.bounds.rows / 2 * quarters
    }

    /// The number of recent rows.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Once over the bounds, takes every recent row of the oldest blobs'
    /// accounts until three quarters of the bounds remain, by account.
    fn take_oldest(&mut self) -> Vec<(u64, AccountRows)> {
        let mut out = Vec::new();
        if !self.over(4, self.stored) {
            return out;
        }
        // Taken from the oldest on, so every blob taken so far is left empty
        // and goes (`take_dead`): the rows they hold leave `stored` with them.
        let mut stored = self.stored;
        let seqs: Vec<u64> = self.blobs.keys().copied().collect();
        for seq in seqs {
            if !self.over(3, stored) {
                break;
            }
            let accounts = match self.blobs.get_mut(&seq) {
                Some(blob) => {
                    stored -= blob.rows;
                    std::mem::take(&mut blob.accounts)
                }
                None => continue,
            };
            for account in accounts {
                let Some(rows) = self.rows.remove(&account) else {
                    continue;
                };
                for (key, (seq, payload)) in &rows {
                    self.len -= 1;
                    self.bytes -= key.len() + payload.len();
                    self.release(*seq);
                }
                out.push((account, rows));
            }
        }
        out.sort_unstable_by_key(|(account, _)| *account);
        out
    }

    /// Forgets the oldest blobs that hold no recent row any more (only from the
    /// oldest on, see the module's note) and returns their seqs.
    fn take_dead(&mut self) -> Vec<u64> {
        let mut dead = Vec::new();
        while let Some(entry) = self.blobs.first_entry() {
            if entry.get().live > 0 {
                break;
            }
            dead.push(*entry.key());
            self.stored -= entry.remove().rows;
        }
        dead
    }

    /// The recent rows of `account` with keys below `before`, newest first, at
    /// most `limit`.
    pub(super) fn page(
        &self,
        account: u64,
        from: Option<&str>,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<HistoryRow>, StoreError> {
        self.check()?;
        let Some(rows) = self.rows.get(&account) else {
            return Ok(Vec::new());
        };
        let start = from.map_or(Bound::Unbounded, Bound::Included);
        let end = before.map_or(Bound::Unbounded, Bound::Excluded);
        if let (Some(from), Some(before)) = (from, before) {
            if from >= before {
                return Ok(Vec::new());
            }
        }
        Ok(rows
            .range::<str, _>((start, end))
            .rev()
            .take(limit)
            .map(|(key, (_, payload))| HistoryRow {
                key: key.clone(),
                payload: payload.clone(),
                replaces: false,
            })
            .collect())
    }

    /// Writes `rows` as one blob inside `txn`, moves the oldest rows to
    /// `history` when over the bounds, deletes the blobs left empty, and
    /// commits. Memory follows the transaction; if anything fails, memory is
    /// read back from the file (what the failed commit left there), so it never
    /// claims rows that are not stored nor forgets rows that are.
    pub(super) fn commit(
        &mut self,
        db: &Database,
        txn: WriteTransaction,
        rows: Vec<NewRow>,
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return txn.commit().map_err(db_err);
        }
        self.check()?;
        // Taken before the commit: a seq is never used twice, even when the
        // commit's outcome is unknown.
        let seq = self.next_seq;
        self.next_seq += 1;
        let result = self
            .stage(&txn, seq, rows)
            .and_then(|()| txn.commit().map_err(db_err));
        self.follow(db, result)
    }

    /// Drops whole the oldest bucket tables below `first_kept`, at most
    /// `max_buckets`, forgets the recent rows of the buckets so swept (and
    /// the blobs left empty), records how far the sweep went, and commits;
    /// memory follows the transaction as in [`Recent::commit`].
    pub(super) fn sweep(
        &mut self,
        db: &Database,
        txn: WriteTransaction,
        first_kept: u64,
        max_buckets: usize,
    ) -> Result<HistorySweep, StoreError> {
        self.check()?;
        let result = self
            .stage_sweep(&txn, first_kept, max_buckets)
            .and_then(|swept| txn.commit().map_err(db_err).map(|()| swept));
        self.follow(db, result)
    }

    fn stage_sweep(
        &mut self,
        txn: &WriteTransaction,
        first_kept: u64,
        max_buckets: usize,
    ) -> Result<HistorySweep, StoreError> {
        // The buckets before the cutoff: with a table, or with rows still in
        // blobs only (counted and bounded alike).
        let tables: BTreeSet<u64> = buckets_of(txn.list_tables().map_err(db_err)?)
            .into_iter()
            .filter(|&b| b < first_kept)
            .collect();
        let mut old = tables.clone();
        old.extend(
            self.rows
                .values()
                .flat_map(|rows| rows.keys())
                .filter_map(|key| bucket_of(key))
                .filter(|&b| b < first_kept),
        );
        let old: Vec<u64> = old.into_iter().collect();
        let dropped = &old[..old.len().min(max_buckets)];
        let mut swept = HistorySweep {
            buckets: dropped.len() as u64,
            rows: 0,
            more: old.len() > dropped.len(),
        };
        for bucket in dropped.iter().filter(|b| tables.contains(b)) {
            let name = bucket_table_name(*bucket);
            let table = bucket_table(&name);
            swept.rows += txn
                .open_table(table)
                .map_err(db_err)?
                .len()
                .map_err(db_err)?;
            txn.delete_table(table).map_err(db_err)?;
        }
        // Swept up to the first bucket still stored before the cutoff, or to
        // the cutoff's own when none is left.
        let below = match old.get(dropped.len()) {
            Some(&next) => next,
            None => first_kept,
        };
        if below > self.swept_below {
            self.swept_below = below;
            txn.open_table(META)
                .map_err(db_err)?
                .insert(SWEPT_BELOW, below)
                .map_err(db_err)?;
            swept.rows += self.forget_swept();
            let dead = self.take_dead();
            let mut recent = txn.open_table(RECENT).map_err(db_err)?;
            for seq in dead {
                recent.remove(seq).map_err(db_err)?;
            }
        }
        Ok(swept)
    }

    /// Forgets the recent rows of buckets below `swept_below`; returns how many.
    fn forget_swept(&mut self) -> u64 {
        let below = self.swept_below;
        let mut released = Vec::new();
        let mut forgotten = 0;
        for rows in self.rows.values_mut() {
            rows.retain(|key, (seq, payload)| {
                let keep = bucket_of(key).is_none_or(|b| b >= below);
                if !keep {
                    released.push((*seq, key.len() + payload.len()));
                }
                keep
            });
        }
        self.rows.retain(|_, rows| !rows.is_empty());
        for (seq, bytes) in released {
            self.len -= 1;
            self.bytes -= bytes;
            self.release(seq);
            forgotten += 1;
        }
        forgotten
    }

    fn stage(
        &mut self,
        txn: &WriteTransaction,
        seq: u64,
        rows: Vec<NewRow>,
    ) -> Result<(), StoreError> {
        let mut recent = txn.open_table(RECENT).map_err(db_err)?;
        recent
            .insert(seq, encode(&rows).as_slice())
            .map_err(db_err)?;
        self.add(seq, rows);
        let moved = self.take_oldest();
        if !moved.is_empty() {
            // Each row to its bucket's table (`history` for keys without one),
            // tables opened once each.
            let mut by_bucket: BTreeMap<Option<u64>, Vec<MovedRow<'_>>> = BTreeMap::new();
            for (account, rows) in &moved {
                for (key, (_, payload)) in rows {
                    by_bucket.entry(bucket_of(key)).or_default().push((
                        *account,
                        key.as_str(),
                        payload.as_slice(),
                    ));
                }
            }
            for (bucket, rows) in by_bucket {
                let name = bucket.map(bucket_table_name);
                let mut table = match &name {
                    Some(name) => txn.open_table(bucket_table(name)),
                    None => txn.open_table(HISTORY),
                }
                .map_err(db_err)?;
                for (account, key, payload) in rows {
                    table.insert((account, key), payload).map_err(db_err)?;
                }
            }
        }
        for dead in self.take_dead() {
            recent.remove(dead).map_err(db_err)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of a version 1 blob: if this test fails, blobs already on disk
    /// would be misread (bump the version and read the old one instead).
    #[test]
    fn blob_bytes_are_golden() {
        let rows = vec![
            (1, "k".to_owned(), b"p".to_vec()),
            (0x0102_0304_0506_0708, String::new(), Vec::new()),
        ];
        let golden: &[u8] = &[
            1, 2, // version, rows
            1, 0, 0, 0, 0, 0, 0, 0, 1, b'k', 1, b'p', // account 1, "k", "p"
            8, 7, 6, 5, 4, 3, 2, 1, 0, 0, // account 0x0102…, "", ""
        ];
        assert_eq!(encode(&rows), golden);
        assert_eq!(decode(golden).unwrap(), rows);
    }

    /// Bucket tables: if this fails, rows already stored in bucket tables
    /// would no longer be found (or swept).
    #[test]
    fn bucket_table_names_are_golden() {
        assert_eq!(bucket_table_name(2976), "history_b2976");
        assert_eq!(bucket_table_name(0), "history_b0");
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .unwrap();
        let txn = db.begin_write().unwrap();
        for name in [
            "history_b12",
            "history_b3",
            "history_b007",
            "history_bx",
            "history_b",
            "history",
            "history_recent",
        ] {
            let mut table = txn.open_table(bucket_table(name)).unwrap();
            table.insert((1, "k"), b"p".as_slice()).unwrap();
        }
        assert_eq!(buckets_of(txn.list_tables().unwrap()), [3, 12]);
    }

    #[test]
    fn blobs_of_other_versions_or_torn_are_refused() {
        let good = encode(&[(7, "key".to_owned(), b"payload".to_vec())]);
        let mut other = good.clone();
        other[0] = 2;
        assert!(matches!(decode(&other), Err(StoreError::Corrupt(_))));
        for cut in 0..good.len() {
            assert!(
                matches!(decode(&good[..cut]), Err(StoreError::Corrupt(_))),
                "a blob cut at {cut} was read"
            );
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(matches!(decode(&longer), Err(StoreError::Corrupt(_))));
        // A count no blob of this size could hold allocates nothing.
        assert!(matches!(
            decode(&[1, 0xff, 0xff, 0xff, 0xff, 0x0f]),
            Err(StoreError::Corrupt(_))
        ));
        let mut bad_utf8 = encode(&[(7, "k".to_owned(), Vec::new())]);
        bad_utf8[11] = 0xff;
        assert!(matches!(decode(&bad_utf8), Err(StoreError::Corrupt(_))));
    }

    fn empty(rows: usize) -> Recent {
        Recent::empty(RowBounds {
            rows,
            bytes: usize::MAX,
        })
    }

    fn row(account: u64, key: &str, payload: &str) -> NewRow {
        (account, key.to_owned(), payload.as_bytes().to_vec())
    }

    #[test]
    fn oldest_blobs_move_whole_accounts_and_go_oldest_first() {
        let mut recent = empty(4);
        recent.add(1, vec![row(1, "a", "1a"), row(2, "a", "2a")]);
        recent.add(2, vec![row(3, "a", "3a"), row(1, "b", "1b")]);
        assert!(recent.take_oldest().is_empty(), "4 rows are not over 4");
        assert!(recent.take_dead().is_empty());
        // A later version of (1, "a") leaves blob 1 with one live row (2, "a").
        recent.add(3, vec![row(1, "a", "1a'")]);
        assert_eq!(recent.blobs[&1].live, 1);
        recent.add(4, vec![row(4, "a", "4a")]);
        // 5 rows, over 4: blob 1's accounts (1 and 2) move with every recent
        // row of theirs, newer blobs' included; 2 rows are left (≤ 3).
        let moved = recent.take_oldest();
        let moved: Vec<(u64, String, Vec<u8>)> = moved
            .into_iter()
            .flat_map(|(a, rows)| rows.into_iter().map(move |(k, (_, p))| (a, k, p)))
            .collect();
        assert_eq!(
            moved,
            vec![row(1, "a", "1a'"), row(1, "b", "1b"), row(2, "a", "2a")]
        );
        assert_eq!((recent.len, recent.bytes), (2, 6));
        // Blob 1 is empty and the oldest: it goes. Blob 3 is empty too (its
        // row moved) but stays behind blob 2, which still holds (3, "a").
        assert_eq!(recent.take_dead(), vec![1]);
        assert_eq!(recent.blobs.keys().copied().collect::<Vec<_>>(), [2, 3, 4]);
        let page = recent.page(1, None, None, 10).unwrap();
        assert!(page.is_empty(), "moved rows still in memory: {page:?}");
        let page = recent.page(3, None, None, 10).unwrap();
        assert_eq!(page.len(), 1);
    }

    #[test]
    fn pages_are_newest_first_below_before() {
        let mut recent = empty(100);
        recent.add(
            1,
            vec![
                row(1, "a", "1"),
                row(1, "c", "3"),
                row(1, "b", "2"),
                row(2, "z", "9"),
            ],
        );
        let keys = |rows: Vec<HistoryRow>| rows.into_iter().map(|r| r.key).collect::<Vec<_>>();
        assert_eq!(
            keys(recent.page(1, None, None, 10).unwrap()),
            ["c", "b", "a"]
        );
        assert_eq!(keys(recent.page(1, None, Some("c"), 1).unwrap()), ["b"]);
        assert_eq!(
            keys(recent.page(1, None, Some("a"), 10).unwrap()),
            Vec::<String>::new()
        );
        assert!(recent.page(3, None, None, 10).unwrap().is_empty());
    }
}
