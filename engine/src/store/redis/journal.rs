//! The per-account journals of the actor runtime (read for moving them into
//! shard logs): the append (one script for a whole batch on standalone Redis,
//! one per record on a Cluster), the load of a snapshot with its journal, the
//! snapshots that trim it, and the list of accounts. See the module's notes
//! for the layout and why the journal is a stream.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use ::redis::Value;

use super::conn::{from_value, reply_error, Call, Retry};
use super::keys::{history_keys, journal_key, seq_key, snapshot_key, ACCOUNTS_KEY};
use super::scripts::{APPEND, APPEND_BATCH, LOAD, SAVE_SNAPSHOT};
use super::RedisStore;
use crate::ids::AccountId;
use crate::store::{
    AppendResult, JournalAppend, Loaded, Record, Snapshot, StoreError, StoreFuture,
};

impl RedisStore {
    /// Number of journal records currently kept for `account` (after trimming); for
    /// tests and operators checking that snapshots really trim.
    pub async fn journal_len(&self, account: AccountId) -> Result<usize, StoreError> {
        let mut cmd = ::redis::cmd("XLEN");
        cmd.arg(journal_key(account));
        let reply = self.exec_one(Call::Plain(cmd), Retry::Safe).await?;
        from_value(reply)
    }

    /// The standalone-Redis append: the accounts seen for the first time (seq 1) are
    /// listed, then the whole batch is one [`APPEND_BATCH_LUA`] call, in one pipeline.
    ///
    /// [`APPEND_BATCH_LUA`]: super::scripts::APPEND_BATCH
    pub(super) fn append_as_one_script(
        &self,
        batch: &[JournalAppend],
    ) -> StoreFuture<'_, Vec<AppendResult>> {
        let records: Vec<(AccountId, u64)> = batch.iter().map(|r| (r.account, r.seq)).collect();
        let mut calls = Vec::with_capacity(2);
        // An account's first record lists it; later records don't need to (ZADD is
        // idempotent, so a re-sent first record listing it again is harmless).
        let new_accounts: Vec<String> = batch
            .iter()
            .filter(|r| r.seq == 1)
            .map(|r| r.account.to_string())
            .collect();
        if !new_accounts.is_empty() {
            let mut cmd = ::redis::cmd("ZADD");
            cmd.arg(ACCOUNTS_KEY);
            for a in &new_accounts {
                cmd.arg(0).arg(a);
            }
            calls.push(Call::Plain(cmd));
        }
        let mut keys: Vec<String> = Vec::with_capacity(batch.len() * 4);
        for rec in batch {
            let (history, history_keys) = history_keys(rec.account);
            keys.push(journal_key(rec.account));
            keys.push(seq_key(rec.account));
            keys.push(history);
            keys.push(history_keys);
        }
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let mut cmd = APPEND_BATCH.call(&key_refs);
        for rec in batch {
            cmd.arg(rec.seq)
                .arg(format!("{}-1", rec.seq))
                .arg(rec.payload.as_slice())
                .arg(rec.history.len());
            for row in &rec.history {
                cmd.arg(row.key.as_str()).arg(row.payload.as_slice());
            }
        }
        calls.push(Call::Script(&APPEND_BATCH, cmd));
        let listed = !new_accounts.is_empty();
        Box::pin(async move {
            if records.is_empty() {
                return Ok(Vec::new());
            }
            let mut replies = self.exec(calls, Retry::Never).await?;
            let appended = replies
                .pop()
                .ok_or_else(|| StoreError::Unavailable("redis sent no reply".into()))?;
            if listed {
                // The first records' accounts could not be listed: report the whole
                // batch as unknown, the callers retry (and list them then).
                if let Some(r) = replies.first() {
                    reply_error(r)?;
                }
            }
            let expected: Vec<u64> = from_value(appended)?;
            if expected.len() != records.len() {
                return Err(StoreError::Corrupt(
                    "the batch append script answered for a different number of records".into(),
                ));
            }
            Ok(records
                .iter()
                .zip(expected)
                .map(|(&(account, got), expected)| {
                    if expected == 0 {
                        Ok(())
                    } else {
                        Err(StoreError::SequenceConflict {
                            account,
                            expected,
                            got,
                        })
                    }
                })
                .collect())
        })
    }

    /// The append on a Redis Cluster (or when asked for one slot per script): one
    /// pipeline of one [`APPEND_LUA`] call per record, after one `ZADD
    /// okpay:accounts` per distinct account.
    ///
    /// [`APPEND_LUA`]: super::scripts::APPEND
    pub(super) fn append_per_record(
        &self,
        batch: &[JournalAppend],
    ) -> StoreFuture<'_, Vec<AppendResult>> {
        // Each distinct account once, in order of first appearance, with its position
        // among the leading ZADD commands.
        let mut listed_at: HashMap<AccountId, usize> = HashMap::new();
        let mut calls = Vec::with_capacity(batch.len() + 1);
        for rec in batch {
            if let Entry::Vacant(slot) = listed_at.entry(rec.account) {
                slot.insert(calls.len());
                let mut cmd = ::redis::cmd("ZADD");
                cmd.arg(ACCOUNTS_KEY).arg(0).arg(rec.account.to_string());
                calls.push(Call::Plain(cmd));
            }
        }
        for rec in batch {
            let (journal, seq) = (journal_key(rec.account), seq_key(rec.account));
            let (history, history_keys) = history_keys(rec.account);
            let mut cmd = APPEND.call(&[&journal, &seq, &history, &history_keys]);
            cmd.arg(rec.seq)
                .arg(format!("{}-1", rec.seq))
                .arg(rec.payload.as_slice());
            for row in &rec.history {
                cmd.arg(row.key.as_str()).arg(row.payload.as_slice());
            }
            calls.push(Call::Script(&APPEND, cmd));
        }
        // Only what is needed to read the replies; the payloads already sit in `calls`.
        let records: Vec<(AccountId, u64)> = batch.iter().map(|r| (r.account, r.seq)).collect();
        Box::pin(async move {
            if records.is_empty() {
                return Ok(Vec::new());
            }
            let replies = self.exec(calls, Retry::Never).await?;
            let (listed, appended) = replies.split_at(listed_at.len());
            let results = records
                .iter()
                .zip(appended)
                .map(|(&(account, got), reply)| {
                    // If the account could not be added to the account set, report its
                    // records as unknown even if they landed: the caller retries, sees
                    // a conflict, reloads, and that retry lists the account.
                    if let Some(&i) = listed_at.get(&account) {
                        reply_error(&listed[i])?;
                    }
                    let (appended, expected): (i64, u64) = from_value(reply.clone())?;
                    if appended == 1 {
                        Ok(())
                    } else {
                        Err(StoreError::SequenceConflict {
                            account,
                            expected,
                            got,
                        })
                    }
                })
                .collect();
            Ok(results)
        })
    }

    /// The body of [`Store::load`]: the snapshot and the journal after it, in one
    /// script call.
    ///
    /// [`Store::load`]: crate::store::Store::load
    pub(super) fn load_journal(&self, account: AccountId) -> StoreFuture<'_, Loaded> {
        Box::pin(async move {
            let (snapshot, journal) = (snapshot_key(account), journal_key(account));
            let call = Call::Script(&LOAD, LOAD.call(&[&snapshot, &journal]));
            let reply = self.exec_one(call, Retry::Safe).await?;
            decode_loaded(reply)
        })
    }

    /// The body of [`Store::save_snapshot`]: lists the account, stores the snapshot
    /// and trims the journal up to it.
    ///
    /// [`Store::save_snapshot`]: crate::store::Store::save_snapshot
    pub(super) fn save_journal_snapshot(
        &self,
        account: AccountId,
        snapshot: Snapshot,
    ) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut listed = ::redis::cmd("ZADD");
            listed.arg(ACCOUNTS_KEY).arg(0).arg(account.to_string());
            let (snap, journal, seq) = (
                snapshot_key(account),
                journal_key(account),
                seq_key(account),
            );
            let mut save = SAVE_SNAPSHOT.call(&[&snap, &journal, &seq]);
            save.arg(snapshot.seq)
                .arg(snapshot.payload.as_slice())
                .arg(format!("{}-0", snapshot.seq.saturating_add(1)));
            let calls = vec![Call::Plain(listed), Call::Script(&SAVE_SNAPSHOT, save)];
            // Safe to retry: storing the same snapshot twice is a no-op the second time.
            for reply in self.exec(calls, Retry::Safe).await? {
                reply_error(&reply)?;
            }
            Ok(())
        })
    }

    /// The body of [`Store::list_accounts`]: a page of `okpay:accounts` in id order.
    ///
    /// [`Store::list_accounts`]: crate::store::Store::list_accounts
    pub(super) fn accounts_page(
        &self,
        after: Option<AccountId>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<AccountId>> {
        Box::pin(async move {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let mut cmd = ::redis::cmd("ZRANGEBYLEX");
            cmd.arg(ACCOUNTS_KEY)
                .arg(after.map_or("-".to_owned(), |a| format!("({a}")))
                .arg("+")
                .arg("LIMIT")
                .arg(0)
                .arg(limit);
            let ids: Vec<String> = from_value(self.exec_one(Call::Plain(cmd), Retry::Safe).await?)?;
            ids.iter()
                .map(|id| {
                    id.parse()
                        .map_err(|_| StoreError::Corrupt(format!("bad account id {id:?}")))
                })
                .collect()
        })
    }
}

/// The seq encoded in a journal stream id `<seq>-1`.
fn seq_of_stream_id(id: &str) -> Result<u64, StoreError> {
    id.split_once('-')
        .and_then(|(seq, _)| seq.parse().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("bad journal entry id {id:?}")))
}

/// Decodes the reply of [`LOAD_LUA`].
///
/// [`LOAD_LUA`]: super::scripts::LOAD
fn decode_loaded(reply: Value) -> Result<Loaded, StoreError> {
    type Entry = (String, Vec<(String, Vec<u8>)>);
    let (snap_seq, snap_payload, entries): (Option<u64>, Option<Vec<u8>>, Vec<Entry>) =
        from_value(reply)?;
    let snapshot = match (snap_seq, snap_payload) {
        (Some(seq), Some(payload)) => Some(Snapshot { seq, payload }),
        (None, None) => None,
        _ => return Err(StoreError::Corrupt("half-written snapshot hash".into())),
    };
    let after = snapshot.as_ref().map_or(0, |s| s.seq);
    let mut records = Vec::with_capacity(entries.len());
    for (id, fields) in entries {
        let seq = seq_of_stream_id(&id)?;
        let payload = fields
            .into_iter()
            .find(|(name, _)| name == "p")
            .map(|(_, payload)| payload)
            .ok_or_else(|| StoreError::Corrupt(format!("journal entry {id} has no payload")))?;
        // The trim runs atomically with the snapshot write, so nothing at or below
        // the snapshot should remain; filtering anyway keeps `load`'s promise even if
        // a record was written by hand.
        if seq > after {
            records.push(Record { seq, payload });
        }
    }
    Ok(Loaded { snapshot, records })
}
