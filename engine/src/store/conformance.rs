//! The [`Store`] contract as executable checks, shared by every backend's tests.
//!
//! Each backend (memory, embedded, Redis) must behave identically, and the simplest
//! way to keep that true is one suite run against all of them. The checks live in the
//! library (not under `#[cfg(test)]`) so integration tests and future backends in
//! other crates can call them with any `&dyn Store`.
//!
//! Every check uses fresh random account ids and index names, so checks can share one
//! store (even a long-lived Redis) without seeing each other's data. Each returns
//! `Err(description)` on the first broken promise; [`run_all`] runs them all and panics
//! with every failure, named by backend and check.

use std::collections::BTreeSet;

use super::{HistoryRow, JournalAppend, Loaded, Snapshot, Store, StoreError};
use crate::ids::AccountId;

/// The result of one conformance check: `Err` says what was wrong.
pub type Check = Result<(), String>;

/// Fails the check with a message when `cond` is false.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// Fails the check when the two values differ, showing both.
macro_rules! ensure_eq {
    ($left:expr, $right:expr, $($fmt:tt)+) => {{
        let (left, right) = (&$left, &$right);
        if left != right {
            return Err(format!("{}: got {:?}, want {:?}", format!($($fmt)+), left, right));
        }
    }};
}

/// Runs every check against `store` and panics listing each failed one.
pub async fn run_all(store: &dyn Store) {
    let checks: Vec<(&str, Check)> = vec![
        (
            "empty_account_loads_nothing",
            empty_account_loads_nothing(store).await,
        ),
        (
            "append_then_load_in_order",
            append_then_load_in_order(store).await,
        ),
        (
            "conflicts_refused_per_record",
            conflicts_refused_per_record(store).await,
        ),
        (
            "snapshot_trims_and_ignores_older",
            snapshot_trims_and_ignores_older(store).await,
        ),
        (
            "snapshot_ahead_of_journal",
            snapshot_ahead_of_journal(store).await,
        ),
        (
            "list_accounts_pages_in_id_order",
            list_accounts_pages_in_id_order(store).await,
        ),
        (
            "claim_index_has_one_winner",
            claim_index_has_one_winner(store).await,
        ),
        ("index_get_delete_scan", index_get_delete_scan(store).await),
        (
            "large_payloads_round_trip",
            large_payloads_round_trip(store).await,
        ),
        (
            "history_newest_first_with_upserts",
            history_newest_first_with_upserts(store).await,
        ),
        (
            "history_of_refused_records_not_written",
            history_of_refused_records_not_written(store).await,
        ),
        (
            "history_pages_exclusive_and_complete",
            history_pages_exclusive_and_complete(store).await,
        ),
        (
            "history_survives_snapshot_trim",
            history_survives_snapshot_trim(store).await,
        ),
        (
            "history_of_unknown_account_is_empty",
            history_of_unknown_account_is_empty(store).await,
        ),
        (
            "put_history_upserts_pages_and_merges_journal_rows",
            put_history_upserts_pages_and_merges_journal_rows(store).await,
        ),
        (
            "put_history_engine_rows_page_from_any_cursor",
            put_history_engine_rows_page_from_any_cursor(store).await,
        ),
        (
            "history_past_retention_left_out",
            history_past_retention_left_out(store).await,
        ),
        (
            "history_sweep_drops_whole_old_buckets",
            history_sweep_drops_whole_old_buckets(store).await,
        ),
        // Last: its sweeps drop every bucket below 230 (the checks above
        // keep their rows elsewhere or are done with them).
        (
            "history_retention_matches_a_model",
            history_retention_matches_a_model(store).await,
        ),
        (
            "history_dense_writes_match_a_model",
            history_dense_writes_match_a_model(store).await,
        ),
    ];
    let failures: Vec<String> = checks
        .into_iter()
        .filter_map(|(name, result)| result.err().map(|e| format!("  {name}: {e}")))
        .collect();
    assert!(
        failures.is_empty(),
        "{} store broke its contract:\n{}",
        store.backend_name(),
        failures.join("\n")
    );
}

/// Turns a store error into a check failure naming the step.
fn step<T>(what: &str, result: Result<T, StoreError>) -> Result<T, String> {
    result.map_err(|e| format!("{what} failed: {e}"))
}

/// A payload that names its account and seq, so a misplaced record is visible.
fn payload(account: AccountId, seq: u64) -> Vec<u8> {
    format!("{account}#{seq}").into_bytes()
}

fn rec(account: AccountId, seq: u64) -> JournalAppend {
    JournalAppend {
        account,
        seq,
        payload: payload(account, seq),
        history: Vec::new(),
    }
}

/// Appends `batch` and requires every record to be accepted.
async fn append_all(store: &dyn Store, batch: Vec<JournalAppend>) -> Check {
    let results = step("append", store.append(&batch).await)?;
    ensure_eq!(results.len(), batch.len(), "append result count");
    for (rec, result) in batch.iter().zip(results) {
        ensure!(
            result.is_ok(),
            "append of {} seq {} refused: {result:?}",
            rec.account,
            rec.seq
        );
    }
    Ok(())
}

/// The seqs of the records in `loaded`, with their payloads checked.
fn seqs_checked(account: AccountId, loaded: &Loaded) -> Result<Vec<u64>, String> {
    for r in &loaded.records {
        ensure_eq!(
            r.payload,
            payload(account, r.seq),
            "payload of {account} seq {}",
            r.seq
        );
    }
    Ok(loaded.records.iter().map(|r| r.seq).collect())
}

/// A fresh index name, so concurrent runs against one store never share an index.
fn fresh_index(tag: &str) -> String {
    format!("conformance_{tag}_{:016x}", rand::random::<u64>())
}

/// An account nobody wrote to loads as nothing, with last seq 0.
pub async fn empty_account_loads_nothing(store: &dyn Store) -> Check {
    let loaded = step("load", store.load(AccountId::random()).await)?;
    ensure_eq!(loaded, Loaded::default(), "load of an unknown account");
    ensure_eq!(loaded.last_seq(), 0, "last seq of an unknown account");
    Ok(())
}

/// Records come back in seq order, across batches, with batches mixing accounts.
pub async fn append_then_load_in_order(store: &dyn Store) -> Check {
    let (a, b) = (AccountId::random(), AccountId::random());
    // One batch interleaving two accounts, as the group-commit writer produces.
    append_all(
        store,
        vec![rec(a, 1), rec(b, 1), rec(a, 2), rec(a, 3), rec(b, 2)],
    )
    .await?;
    append_all(store, vec![rec(a, 4), rec(b, 3)]).await?;
    let la = step("load a", store.load(a).await)?;
    let lb = step("load b", store.load(b).await)?;
    ensure_eq!(seqs_checked(a, &la)?, vec![1, 2, 3, 4], "seqs of a");
    ensure_eq!(seqs_checked(b, &lb)?, vec![1, 2, 3], "seqs of b");
    ensure!(la.snapshot.is_none(), "a has a snapshot nobody saved");
    ensure_eq!(la.last_seq(), 4, "last seq of a");
    Ok(())
}

/// A gap or a duplicate refuses that record only, writes nothing for it, and the
/// other records of the batch still land.
pub async fn conflicts_refused_per_record(store: &dyn Store) -> Check {
    let (a, b, c) = (
        AccountId::random(),
        AccountId::random(),
        AccountId::random(),
    );
    append_all(store, vec![rec(a, 1), rec(a, 2), rec(a, 3)]).await?;

    let rogue = |account, seq| JournalAppend {
        account,
        seq,
        payload: b"must not be stored".to_vec(),
        history: Vec::new(),
    };
    let batch = vec![
        rogue(a, 3), // duplicate of a stored record
        rec(b, 1),   // fine
        rogue(a, 5), // gap after 3
        rogue(c, 2), // gap on a new account
        rec(b, 2),   // fine, follows the record accepted earlier in this batch
    ];
    let results = step("append", store.append(&batch).await)?;
    let conflict = |account, expected, got| {
        Err(StoreError::SequenceConflict {
            account,
            expected,
            got,
        })
    };
    ensure_eq!(
        results,
        vec![
            conflict(a, 4, 3),
            Ok(()),
            conflict(a, 4, 5),
            conflict(c, 1, 2),
            Ok(())
        ],
        "per-record results"
    );

    // Refused records left no trace: the next expected seq of `a` is still 4.
    append_all(store, vec![rec(a, 4), rec(a, 5)]).await?;
    let la = step("load a", store.load(a).await)?;
    ensure_eq!(seqs_checked(a, &la)?, vec![1, 2, 3, 4, 5], "seqs of a");
    let lb = step("load b", store.load(b).await)?;
    ensure_eq!(seqs_checked(b, &lb)?, vec![1, 2], "seqs of b");
    let lc = step("load c", store.load(c).await)?;
    ensure!(
        lc.records.is_empty(),
        "refused record of c was stored: {lc:?}"
    );
    Ok(())
}

/// A snapshot hides the records it covers, keeps later ones, and an older snapshot
/// never replaces it. Appends continue after the last record, not the snapshot.
pub async fn snapshot_trims_and_ignores_older(store: &dyn Store) -> Check {
    let a = AccountId::random();
    append_all(store, (1..=6).map(|s| rec(a, s)).collect()).await?;
    let snap4 = Snapshot {
        seq: 4,
        payload: b"state after 4".to_vec(),
    };
    step(
        "save snapshot 4",
        store.save_snapshot(a, snap4.clone()).await,
    )?;
    let loaded = step("load", store.load(a).await)?;
    ensure_eq!(loaded.snapshot, Some(snap4.clone()), "snapshot after save");
    ensure_eq!(
        seqs_checked(a, &loaded)?,
        vec![5, 6],
        "records after snapshot 4"
    );

    let snap2 = Snapshot {
        seq: 2,
        payload: b"stale state after 2".to_vec(),
    };
    step("save snapshot 2", store.save_snapshot(a, snap2).await)?;
    let loaded = step("load", store.load(a).await)?;
    ensure_eq!(loaded.snapshot, Some(snap4), "snapshot after an older save");
    ensure_eq!(
        seqs_checked(a, &loaded)?,
        vec![5, 6],
        "records after older save"
    );

    // The journal goes on from 6, whatever the snapshot covers.
    let results = step("append dup", store.append(&[rec(a, 6)]).await)?;
    ensure_eq!(
        results,
        vec![Err(StoreError::SequenceConflict {
            account: a,
            expected: 7,
            got: 6
        })],
        "append of seq 6 after trim"
    );
    append_all(store, vec![rec(a, 7)]).await?;

    // A snapshot of everything leaves no records but keeps the seq going.
    let snap7 = Snapshot {
        seq: 7,
        payload: b"state after 7".to_vec(),
    };
    step(
        "save snapshot 7",
        store.save_snapshot(a, snap7.clone()).await,
    )?;
    let loaded = step("load", store.load(a).await)?;
    ensure_eq!(loaded.snapshot, Some(snap7), "snapshot 7");
    ensure!(
        loaded.records.is_empty(),
        "records left after snapshot 7: {loaded:?}"
    );
    ensure_eq!(loaded.last_seq(), 7, "last seq after full trim");
    append_all(store, vec![rec(a, 8)]).await?;
    let loaded = step("load", store.load(a).await)?;
    ensure_eq!(
        seqs_checked(a, &loaded)?,
        vec![8],
        "records after snapshot 7"
    );
    Ok(())
}

/// A snapshot ahead of the journal (or of an account with no journal) moves the
/// expected next seq past it, and makes the account listed.
pub async fn snapshot_ahead_of_journal(store: &dyn Store) -> Check {
    let a = AccountId::random();
    let snap = Snapshot {
        seq: 3,
        payload: b"imported state".to_vec(),
    };
    step("save snapshot", store.save_snapshot(a, snap.clone()).await)?;
    let loaded = step("load", store.load(a).await)?;
    ensure_eq!(loaded.snapshot, Some(snap), "snapshot of a fresh account");
    ensure_eq!(loaded.last_seq(), 3, "last seq");
    let results = step("append", store.append(&[rec(a, 1), rec(a, 4)]).await)?;
    ensure_eq!(
        results,
        vec![
            Err(StoreError::SequenceConflict {
                account: a,
                expected: 4,
                got: 1
            }),
            Ok(())
        ],
        "appends after a snapshot-only account"
    );
    let listed = step(
        "list accounts",
        store
            .list_accounts(Some(AccountId(a.0.wrapping_sub(1))), 1)
            .await,
    )?;
    // `a - 1` can't be an account of its own here except by a 2^-64 chance.
    ensure_eq!(
        listed,
        vec![a],
        "listing from just before a snapshot-only account"
    );
    Ok(())
}

/// Paging through `list_accounts` visits accounts in strictly increasing id order,
/// honours `after` and `limit`, and finds every account written.
pub async fn list_accounts_pages_in_id_order(store: &dyn Store) -> Check {
    let mine: BTreeSet<AccountId> = (0..7).map(|_| AccountId::random()).collect();
    append_all(store, mine.iter().map(|a| rec(*a, 1)).collect()).await?;

    let empty = step("list with limit 0", store.list_accounts(None, 0).await)?;
    ensure!(empty.is_empty(), "limit 0 returned {empty:?}");

    let page_size = 3;
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = step("list accounts", store.list_accounts(after, page_size).await)?;
        ensure!(page.len() <= page_size, "page of {} > limit", page.len());
        let Some(last) = page.last().copied() else {
            break;
        };
        for id in &page {
            // Strictly increasing across pages also proves the loop terminates.
            ensure!(
                seen.last().is_none_or(|prev| prev < id),
                "{id} listed after {:?}: not in id order",
                seen.last()
            );
            seen.push(*id);
        }
        after = Some(last);
    }
    let seen: BTreeSet<AccountId> = seen.into_iter().collect();
    let missing: Vec<_> = mine.difference(&seen).collect();
    ensure!(missing.is_empty(), "accounts never listed: {missing:?}");

    // `after` is exclusive: starting after the smallest of mine skips exactly it.
    let first = *mine.first().ok_or("no accounts")?;
    let page = step("list after", store.list_accounts(Some(first), 1).await)?;
    ensure!(
        page.first().is_some_and(|id| *id > first),
        "list after {first} returned {page:?}"
    );
    Ok(())
}

/// Of 32 concurrent claims of one key, exactly one wins and its value is stored.
pub async fn claim_index_has_one_winner(store: &dyn Store) -> Check {
    let index = fresh_index("claim");
    let values: Vec<String> = (0..32).map(|i| format!("acc_claimant_{i}")).collect();
    let claims = values
        .iter()
        .map(|v| store.claim_index(&index, "alice@example.com", v));
    let results = futures::future::join_all(claims).await;
    let mut winners = Vec::new();
    for (value, result) in values.iter().zip(results) {
        if step("claim", result)? {
            winners.push(value.clone());
        }
    }
    ensure_eq!(winners.len(), 1, "number of winners ({winners:?})");
    let stored = step("get", store.get_index(&index, "alice@example.com").await)?;
    ensure_eq!(stored, Some(winners[0].clone()), "stored value");
    let again = step(
        "claim again",
        store.claim_index(&index, "alice@example.com", "x").await,
    )?;
    ensure!(!again, "a taken key was claimed again");
    Ok(())
}

/// get, delete and paged scans in key order, with indexes kept apart by name.
pub async fn index_get_delete_scan(store: &dyn Store) -> Check {
    let index = fresh_index("scan");
    // A second index whose name extends the first: its keys must never leak into a
    // scan of the first (a prefix-range bug would show here).
    let other = format!("{index}x");
    let keys = ["m", "b", "z", "a", "k", "é", "c", "ab", "y", "0"];
    for k in keys {
        let won = step(
            "claim",
            store.claim_index(&index, k, &format!("v-{k}")).await,
        )?;
        ensure!(won, "fresh key {k} not claimed");
    }
    step(
        "claim other",
        store.claim_index(&other, "b0", "other").await,
    )?;

    ensure_eq!(
        step("get", store.get_index(&index, "k").await)?,
        Some("v-k".to_owned()),
        "get k"
    );
    ensure_eq!(
        step("get missing", store.get_index(&index, "nope").await)?,
        None,
        "get of a missing key"
    );

    let mut want: Vec<&str> = keys.to_vec();
    want.sort_unstable(); // byte order, as the trait promises
    let mut got = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = step("scan", store.scan_index(&index, after.as_deref(), 4).await)?;
        ensure!(page.len() <= 4, "scan page of {} > limit", page.len());
        let Some((last, _)) = page.last().cloned() else {
            break;
        };
        for (k, v) in page {
            ensure_eq!(v, format!("v-{k}"), "value of {k}");
            got.push(k);
        }
        ensure!(got.len() <= want.len(), "scan did not terminate: {got:?}");
        after = Some(last);
    }
    ensure_eq!(got, want, "scanned keys");

    let from_k = step("scan after k", store.scan_index(&index, Some("k"), 2).await)?;
    let from_k: Vec<&str> = from_k.iter().map(|(k, _)| k.as_str()).collect();
    ensure_eq!(from_k, vec!["m", "y"], "scan after k, limit 2");
    let none = step("scan limit 0", store.scan_index(&index, None, 0).await)?;
    ensure!(none.is_empty(), "scan with limit 0 returned {none:?}");

    step("delete", store.delete_index(&index, "k").await)?;
    step("delete absent", store.delete_index(&index, "never").await)?;
    ensure_eq!(
        step("get deleted", store.get_index(&index, "k").await)?,
        None,
        "get after delete"
    );
    let after_delete = step(
        "scan after delete",
        store.scan_index(&index, Some("c"), 10).await,
    )?;
    ensure!(
        after_delete.iter().all(|(k, _)| k != "k"),
        "deleted key still scanned: {after_delete:?}"
    );
    let reclaimed = step("reclaim", store.claim_index(&index, "k", "v2").await)?;
    ensure!(reclaimed, "a deleted key could not be claimed again");

    let unknown = step(
        "scan unknown",
        store.scan_index(&fresh_index("none"), None, 10).await,
    )?;
    ensure!(unknown.is_empty(), "unknown index scanned {unknown:?}");
    Ok(())
}

/// 1 MiB records and snapshots, with every byte value, come back intact.
pub async fn large_payloads_round_trip(store: &dyn Store) -> Check {
    let a = AccountId::random();
    let big: Vec<u8> = (0..1024 * 1024)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let batch = vec![
        JournalAppend {
            account: a,
            seq: 1,
            payload: big.clone(),
            history: Vec::new(),
        },
        JournalAppend {
            account: a,
            seq: 2,
            payload: Vec::new(),
            history: Vec::new(),
        },
    ];
    let results = step("append", store.append(&batch).await)?;
    ensure!(
        results.iter().all(Result::is_ok),
        "large append refused: {results:?}"
    );
    let loaded = step("load", store.load(a).await)?;
    ensure_eq!(loaded.records.len(), 2, "record count");
    ensure!(
        loaded.records[0].payload == big,
        "1 MiB record changed on the way"
    );
    ensure!(
        loaded.records[1].payload.is_empty(),
        "empty record not empty"
    );

    let mut snap_payload = big;
    snap_payload.reverse();
    let snap = Snapshot {
        seq: 1,
        payload: snap_payload,
    };
    step("save snapshot", store.save_snapshot(a, snap.clone()).await)?;
    let loaded = step("load", store.load(a).await)?;
    ensure!(
        loaded.snapshot == Some(snap),
        "1 MiB snapshot changed on the way"
    );
    ensure_eq!(
        loaded.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![2],
        "records after snapshot"
    );
    Ok(())
}

/// The shard of `account` in the default layout (stores keep rows by shard).
fn sh(account: AccountId) -> crate::codec::ShardId {
    crate::codec::shard_of(account, crate::codec::DEFAULT_SHARDS)
}

/// `rows` of `account`, as `put_history` takes them.
fn of(
    account: AccountId,
    rows: &[HistoryRow],
) -> Vec<(crate::codec::ShardId, AccountId, HistoryRow)> {
    rows.iter()
        .map(|r| (sh(account), account, r.clone()))
        .collect()
}

/// A history row key as the engine builds them: 16 hex digits of time, then an op id.
fn history_key(ms: u64, op: &str) -> String {
    format!("{ms:016x}{op}")
}

/// A history row whose payload names its account and a version, so a row of another
/// account, or a stale version of an upserted row, is visible. Versions after
/// `v1` are written as replacing the earlier one, as the runtime marks them.
fn row(account: AccountId, key: &str, version: &str) -> HistoryRow {
    HistoryRow {
        key: key.to_owned(),
        payload: format!("{account}/{key}/{version}").into_bytes(),
        replaces: version != "v1",
    }
}

/// A record carrying `rows`.
fn rec_with(account: AccountId, seq: u64, rows: Vec<HistoryRow>) -> JournalAppend {
    JournalAppend {
        history: rows,
        ..rec(account, seq)
    }
}

/// `(key, payload as text)` of each row, for readable failure messages.
/// `account`'s history read one row per page, each page from the last row's
/// key, at most `pages` pages.
async fn pages_of_one(
    store: &dyn Store,
    account: AccountId,
    pages: usize,
) -> Result<Vec<HistoryRow>, String> {
    let mut seen = Vec::new();
    let mut before: Option<String> = None;
    for _ in 0..pages {
        let page = step(
            "history page",
            store
                .history(sh(account), account, before.as_deref(), 1)
                .await,
        )?;
        let Some(last) = page.last() else { break };
        before = Some(last.key.clone());
        seen.extend(page);
    }
    Ok(seen)
}

/// What a read should list after `rows` were written and then `finals` (later
/// versions of some of them): each row's latest version, newest first, read
/// back without the write-side `replaces` mark.
fn latest_newest_first(rows: &[HistoryRow], finals: &[HistoryRow]) -> Vec<HistoryRow> {
    let mut out: Vec<HistoryRow> = rows
        .iter()
        .map(|r| finals.iter().find(|f| f.key == r.key).unwrap_or(r).clone())
        .map(|r| HistoryRow {
            replaces: false,
            ..r
        })
        .collect();
    out.sort_by(|x, y| y.key.cmp(&x.key));
    out
}

fn rows_text(rows: &[HistoryRow]) -> Vec<(String, String)> {
    rows.iter()
        .map(|r| {
            (
                r.key.clone(),
                String::from_utf8_lossy(&r.payload).into_owned(),
            )
        })
        .collect()
}

/// Rows written with records come back newest first (whatever order they were
/// written in), `limit` cuts the newest page, an upsert replaces the payload without
/// moving the row, and neighbouring accounts (ids one apart, same row keys) never
/// see each other's rows.
pub async fn history_newest_first_with_upserts(store: &dyn Store) -> Check {
    let a = AccountId::random();
    // Adjacent ids catch a range scan that runs past the account's own rows in either
    // direction.
    let (below, above) = (
        AccountId(a.0.wrapping_sub(1)),
        AccountId(a.0.wrapping_add(1)),
    );
    let (k1, k2, k3) = (
        history_key(1_000, "t1"),
        history_key(2_000, "t2"),
        history_key(3_000, "t3"),
    );
    // Rows out of key order, spread over records, in a batch shared with neighbours
    // who use the very same keys.
    append_all(
        store,
        vec![
            rec_with(below, 1, vec![row(below, &k1, "v1"), row(below, &k3, "v1")]),
            rec_with(a, 1, vec![row(a, &k3, "v1"), row(a, &k1, "v1")]),
            rec_with(above, 1, vec![row(above, &k2, "v1")]),
            rec_with(a, 2, vec![row(a, &k2, "v1")]),
        ],
    )
    .await?;
    let want = vec![row(a, &k3, "v1"), row(a, &k2, "v1"), row(a, &k1, "v1")];
    let got = step("history", store.history(sh(a), a, None, 10).await)?;
    ensure_eq!(rows_text(&got), rows_text(&want), "history of a");
    let newest = step("history limit 2", store.history(sh(a), a, None, 2).await)?;
    ensure_eq!(
        rows_text(&newest),
        rows_text(&want[..2]),
        "newest 2 rows of a"
    );
    let none = step("history limit 0", store.history(sh(a), a, None, 0).await)?;
    ensure!(none.is_empty(), "limit 0 returned {none:?}");
    let got = step(
        "history below",
        store.history(sh(below), below, None, 10).await,
    )?;
    ensure_eq!(
        rows_text(&got),
        rows_text(&[row(below, &k3, "v1"), row(below, &k1, "v1")]),
        "history of the account just below a"
    );
    let got = step(
        "history above",
        store.history(sh(above), above, None, 10).await,
    )?;
    ensure_eq!(
        rows_text(&got),
        rows_text(&[row(above, &k2, "v1")]),
        "history of the account just above a"
    );

    // The oldest row completes: same key, new payload, same place.
    append_all(store, vec![rec_with(a, 3, vec![row(a, &k1, "v2")])]).await?;
    let got = step(
        "history after upsert",
        store.history(sh(a), a, None, 10).await,
    )?;
    ensure_eq!(
        rows_text(&got),
        rows_text(&[row(a, &k3, "v1"), row(a, &k2, "v1"), row(a, &k1, "v2")]),
        "history of a after upserting its oldest row"
    );
    Ok(())
}

/// A record refused for its seq writes none of its rows (neither new keys nor
/// overwrites of existing ones), while the accepted records of the batch do.
pub async fn history_of_refused_records_not_written(store: &dyn Store) -> Check {
    let (a, c) = (AccountId::random(), AccountId::random());
    let (k1, k2) = (history_key(1_000, "t1"), history_key(2_000, "t2"));
    append_all(
        store,
        vec![
            rec_with(a, 1, vec![row(a, &k1, "v1")]),
            rec_with(a, 2, vec![row(a, &k2, "v1")]),
        ],
    )
    .await?;

    // The refused rows sort newest, so a leaked one would head the page.
    let leaked = history_key(u64::MAX, "leak");
    let batch = vec![
        rec_with(a, 2, vec![row(a, &leaked, "dup"), row(a, &k1, "dup")]), // duplicate
        rec_with(a, 4, vec![row(a, &leaked, "gap"), row(a, &k2, "gap")]), // gap after 2
        rec_with(c, 2, vec![row(c, &leaked, "gap")]),                     // gap, new account
        rec_with(a, 3, vec![row(a, &k2, "v2")]),                          // fine
    ];
    let results = step("append", store.append(&batch).await)?;
    let oks: Vec<bool> = results.iter().map(Result::is_ok).collect();
    ensure_eq!(oks, vec![false, false, false, true], "which records landed");

    let got = step("history of a", store.history(sh(a), a, None, 10).await)?;
    ensure_eq!(
        rows_text(&got),
        rows_text(&[row(a, &k2, "v2"), row(a, &k1, "v1")]),
        "history of a after refused records"
    );
    let got = step("history of c", store.history(sh(c), c, None, 10).await)?;
    ensure!(got.is_empty(), "refused record of c left rows: {got:?}");
    Ok(())
}

/// Walking pages with `before` = the last key of the previous page visits every row
/// exactly once, newest first; `before` is exclusive, also when it is no row's key,
/// or a prefix of another key.
pub async fn history_pages_exclusive_and_complete(store: &dyn Store) -> Check {
    let a = AccountId::random();
    // 23 rows over 5 records; several rows share a millisecond, and "t1" is a prefix
    // of "t1x", so the exclusive bound must compare whole keys.
    let mut keys: Vec<String> = Vec::new();
    for ms in [5_u64, 1, 4, 2, 3, 9, 7, 8] {
        for op in ["t1", "t1x", "u"] {
            if keys.len() < 23 {
                keys.push(history_key(1_700_000_000_000 + ms, op));
            }
        }
    }
    let batch: Vec<JournalAppend> = keys
        .chunks(5)
        .zip(1..)
        .map(|(chunk, seq)| rec_with(a, seq, chunk.iter().map(|k| row(a, k, "v1")).collect()))
        .collect();
    append_all(store, batch).await?;

    let mut want = keys.clone();
    want.sort_unstable();
    want.reverse();
    let page_size = 4;
    let mut seen: Vec<String> = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let page = step(
            "history page",
            store.history(sh(a), a, before.as_deref(), page_size).await,
        )?;
        ensure!(page.len() <= page_size, "page of {} > limit", page.len());
        let Some(last) = page.last().map(|r| r.key.clone()) else {
            break;
        };
        for r in page {
            // Strictly decreasing across pages: no duplicates, and the walk ends.
            ensure!(
                seen.last().is_none_or(|prev| *prev > r.key),
                "{} paged after {:?}: not newest first",
                r.key,
                seen.last()
            );
            ensure_eq!(
                r.payload,
                row(a, &r.key, "v1").payload,
                "payload of {}",
                r.key
            );
            seen.push(r.key);
        }
        before = Some(last);
    }
    ensure_eq!(seen, want, "keys visited by the page walk");

    // Exclusive at an existing key: the row itself is not on the page.
    let at = &want[5];
    let page = step(
        "history before a key",
        store.history(sh(a), a, Some(at), 2).await,
    )?;
    let page: Vec<&str> = page.iter().map(|r| r.key.as_str()).collect();
    ensure_eq!(
        page,
        vec![want[6].as_str(), want[7].as_str()],
        "before {at}"
    );
    // A bound between keys: "…t1w" sorts after "…t1" and before "…t1x".
    let between = history_key(1_700_000_000_005, "t1w");
    let page = step(
        "history before a gap",
        store.history(sh(a), a, Some(&between), 100).await,
    )?;
    let page: Vec<&str> = page.iter().map(|r| r.key.as_str()).collect();
    let below: Vec<&str> = want
        .iter()
        .map(String::as_str)
        .filter(|k| *k < between.as_str())
        .collect();
    ensure_eq!(page, below, "before {between}");
    // Nothing lies before the oldest row, nor before the empty key.
    let oldest = want.last().ok_or("no rows")?;
    let none = step(
        "history before oldest",
        store.history(sh(a), a, Some(oldest), 10).await,
    )?;
    ensure!(none.is_empty(), "rows before the oldest: {none:?}");
    let none = step(
        "history before \"\"",
        store.history(sh(a), a, Some(""), 10).await,
    )?;
    ensure!(none.is_empty(), "rows before the empty key: {none:?}");
    Ok(())
}

/// Snapshots trim the journal, never the history; rows stay upsertable afterwards.
pub async fn history_survives_snapshot_trim(store: &dyn Store) -> Check {
    let a = AccountId::random();
    let keys: Vec<String> = (1..=4).map(|ms| history_key(ms, "t")).collect();
    append_all(
        store,
        keys.iter()
            .zip(1..)
            .map(|(k, seq)| rec_with(a, seq, vec![row(a, k, "v1")]))
            .collect(),
    )
    .await?;
    let snap = Snapshot {
        seq: 4,
        payload: b"state after 4".to_vec(),
    };
    step("save snapshot 4", store.save_snapshot(a, snap).await)?;
    let loaded = step("load", store.load(a).await)?;
    ensure!(
        loaded.records.is_empty(),
        "journal not trimmed by snapshot 4: {loaded:?}"
    );
    let want: Vec<HistoryRow> = keys.iter().rev().map(|k| row(a, k, "v1")).collect();
    let got = step(
        "history after trim",
        store.history(sh(a), a, None, 10).await,
    )?;
    ensure_eq!(
        rows_text(&got),
        rows_text(&want),
        "history after snapshot trim"
    );

    // The row written by the trimmed record 1 can still be upserted.
    append_all(store, vec![rec_with(a, 5, vec![row(a, &keys[0], "v2")])]).await?;
    let got = step(
        "history after upsert",
        store.history(sh(a), a, None, 10).await,
    )?;
    let mut want = want;
    want[3] = row(a, &keys[0], "v2");
    ensure_eq!(
        rows_text(&got),
        rows_text(&want),
        "history after upsert past a trim"
    );
    Ok(())
}

/// An account nobody wrote to has no history, with or without `before`; nor has an
/// account whose records carried no rows.
pub async fn history_of_unknown_account_is_empty(store: &dyn Store) -> Check {
    let unknown = AccountId::random();
    let none = step(
        "history",
        store.history(sh(unknown), unknown, None, 10).await,
    )?;
    ensure!(none.is_empty(), "unknown account has history {none:?}");
    let none = step(
        "history before",
        store.history(sh(unknown), unknown, Some("z"), 10).await,
    )?;
    ensure!(none.is_empty(), "unknown account has history {none:?}");
    let quiet = AccountId::random();
    append_all(store, vec![rec(quiet, 1)]).await?;
    let none = step(
        "history of quiet",
        store.history(sh(quiet), quiet, None, 10).await,
    )?;
    ensure!(none.is_empty(), "account without rows has history {none:?}");
    Ok(())
}

/// Rows written by `put_history` (the runtime's path) read back newest first per
/// account, neighbours in the same shard and in other shards apart; an upsert
/// replaces a row in place, pages are exclusive; and rows written with journal
/// records (by stores before shard logs) read together with them, the newer
/// write of a key winning.
pub async fn put_history_upserts_pages_and_merges_journal_rows(store: &dyn Store) -> Check {
    let a = AccountId::random();
    // A neighbour in a's shard (a shard's rows share keys) and one in another.
    let same = loop {
        let b = AccountId::random();
        if sh(b) == sh(a) && b != a {
            break b;
        }
    };
    let other = loop {
        let b = AccountId::random();
        if sh(b) != sh(a) {
            break b;
        }
    };
    let (k1, k2, k3, k4) = (
        history_key(1_000, "t1"),
        history_key(2_000, "t2"),
        history_key(3_000, "t3"),
        history_key(4_000, "t4"),
    );
    // k1 and k2 of a come with journal records (the old path).
    append_all(
        store,
        vec![rec_with(a, 1, vec![row(a, &k1, "v1"), row(a, &k2, "v1")])],
    )
    .await?;
    let put = |rows: Vec<(AccountId, HistoryRow)>| {
        let rows = rows.into_iter().map(|(x, r)| (sh(x), x, r)).collect();
        async move {
            // Not fenced (no epochs): nothing is refused.
            let refused = store.put_history(rows, Vec::new()).await?;
            match refused.into_iter().next() {
                Some(err) => Err(err),
                None => Ok(()),
            }
        }
    };
    step(
        "put_history",
        put(vec![
            (a, row(a, &k3, "v1")),
            (same, row(same, &k2, "v1")),
            (other, row(other, &k4, "v1")),
            (a, row(a, &k4, "v1")),
            // A newer version of a journal row.
            (a, row(a, &k2, "v2")),
        ])
        .await,
    )?;
    let want = vec![
        row(a, &k4, "v1"),
        row(a, &k3, "v1"),
        row(a, &k2, "v2"),
        row(a, &k1, "v1"),
    ];
    let got = step("history", store.history(sh(a), a, None, 10).await)?;
    ensure_eq!(rows_text(&got), rows_text(&want), "history of a");
    let got = step(
        "history same",
        store.history(sh(same), same, None, 10).await,
    )?;
    ensure_eq!(
        rows_text(&got),
        rows_text(&[row(same, &k2, "v1")]),
        "history of a's shard neighbour"
    );
    let got = step(
        "history other",
        store.history(sh(other), other, None, 10).await,
    )?;
    ensure_eq!(
        rows_text(&got),
        rows_text(&[row(other, &k4, "v1")]),
        "history of an account of another shard"
    );
    // Pages of 1: exclusive and complete.
    let seen = pages_of_one(store, a, 6).await?;
    ensure_eq!(rows_text(&seen), rows_text(&want), "pages of 1 row");
    // Upsert in place.
    step("upsert", put(vec![(a, row(a, &k3, "v2"))]).await)?;
    let got = step(
        "history after upsert",
        store.history(sh(a), a, None, 2).await,
    )?;
    ensure_eq!(
        rows_text(&got),
        rows_text(&[row(a, &k4, "v1"), row(a, &k3, "v2")]),
        "newest 2 rows after an upsert"
    );
    Ok(())
}

/// Rows as the engine writes them (keys `<16 hex ms><public op id>`, payloads
/// `TxRecord`s, which a backend may store in a compact form) come back byte for
/// byte, beside rows of other key shapes and raw payloads under engine-shaped
/// keys; upserts replace, neighbours (ids one apart, same keys) stay apart, and
/// pages of one row are exclusive and complete from every kind of cursor: a
/// row's key, a time alone (what the API's `to` filter sends), and text no row
/// key has.
pub async fn put_history_engine_rows_page_from_any_cursor(store: &dyn Store) -> Check {
    use crate::domain::history::TxRecord;
    use crate::domain::notification::{Direction, TxStatus};
    use crate::ids::{OpId, OpKind};
    use crate::money::Currency;
    use crate::time::Timestamp;
    use rust_decimal::Decimal;

    let a = AccountId::random();
    let (below, above) = (
        AccountId(a.0.wrapping_sub(1)),
        AccountId(a.0.wrapping_add(1)),
    );
    let cny = Currency::new("CNY", 2).expect("CNY");
    let record =
        |ms: i64, kind: OpKind, op: OpId, direction: Direction, status: TxStatus| TxRecord {
            id: op,
            kind,
            direction,
            amount: Decimal::new(ms % 1000 + 1, 2),
            fee: Decimal::new(0, 2),
            currency: cny,
            status,
            counterparty: match (kind, direction) {
                (OpKind::Transfer, Direction::Out) => Some(AccountId(op.n ^ 0x55)),
                (OpKind::Transfer, Direction::In) => Some(op.account),
                _ => None,
            },
            memo: op.n.is_multiple_of(2).then(|| format!("memo {ms}")),
            created_at: Timestamp(ms),
            updated_at: Timestamp(ms + 7),
        };
    let key_of = |r: &TxRecord| {
        let mut key = String::new();
        crate::ids::push_hex16(&mut key, r.created_at.millis() as u64);
        r.id.write_display(r.kind, &mut key);
        key
    };
    let as_row = |r: &TxRecord, replaces: bool| HistoryRow {
        key: key_of(r),
        payload: r.encode(),
        replaces,
    };
    let own = |n| OpId { account: a, n };
    let from = |n| OpId {
        account: AccountId(a.0 ^ 0xff00),
        n,
    };
    let t = 1_800_000_000_000;
    // Same-millisecond rows of every kind, incoming and outgoing, ids that
    // sort across kinds and numbers of different lengths.
    let records = [
        record(
            t,
            OpKind::Deposit,
            own(1),
            Direction::In,
            TxStatus::Completed,
        ),
        record(
            t,
            OpKind::Transfer,
            own(2),
            Direction::Out,
            TxStatus::Processing,
        ),
        record(
            t,
            OpKind::Transfer,
            from(0x1_0000),
            Direction::In,
            TxStatus::Completed,
        ),
        record(
            t,
            OpKind::Withdrawal,
            own(3),
            Direction::Out,
            TxStatus::Processing,
        ),
        record(
            t + 1,
            OpKind::Transfer,
            own(0x100),
            Direction::Out,
            TxStatus::Completed,
        ),
        record(
            t + 2,
            OpKind::Transfer,
            from(4),
            Direction::In,
            TxStatus::Completed,
        ),
    ];
    let mut rows: Vec<HistoryRow> = records.iter().map(|r| as_row(r, false)).collect();
    // An engine-shaped key with a payload that is not its record, and a key of
    // another shape that sorts among them.
    rows.push(HistoryRow {
        key: key_of(&records[4]).replace("tx_", "dep_"),
        payload: b"raw payload".to_vec(),
        replaces: false,
    });
    rows.push(HistoryRow {
        key: format!("{:016x}zz", t + 1),
        payload: b"odd key".to_vec(),
        replaces: false,
    });
    let mut put = of(a, &rows);
    for n in [below, above] {
        put.push((sh(n), n, rows[1].clone()));
        put.push((sh(n), n, rows[5].clone()));
    }
    step("put_history", store.put_history(put, Vec::new()).await)?;
    // Two rows reach their final status.
    let mut done = records[1].clone();
    done.status = TxStatus::Completed;
    done.updated_at = Timestamp(t + 50);
    let mut failed = records[3].clone();
    failed.status = TxStatus::Failed;
    let finals = [as_row(&done, true), as_row(&failed, true)];
    step(
        "put_history finals",
        store.put_history(of(a, &finals), Vec::new()).await,
    )?;
    let want = latest_newest_first(&rows, &finals);
    let got = step("history", store.history(sh(a), a, None, 20).await)?;
    ensure_eq!(rows_text(&got), rows_text(&want), "history of a");
    ensure!(got == want, "payloads come back byte for byte");
    for n in [below, above] {
        let got = step("history neighbour", store.history(sh(n), n, None, 20).await)?;
        ensure_eq!(got.len(), 2, "rows of a neighbour");
    }
    // Pages of one row, from a row's key each time.
    let seen = pages_of_one(store, a, want.len() + 1).await?;
    ensure_eq!(rows_text(&seen), rows_text(&want), "pages of 1 row");
    // Any text as a cursor: what comes back is every row below it, in order.
    let mut cursors: Vec<String> = vec![
        format!("{:016x}", t + 1),
        format!("{:016x}", t + 2),
        format!("{:016x}", t),
        format!("{:016x}tx_", t),
        format!("{:016x}u", t),
        format!("{:016x}e", t + 1),
        format!("{:016x}~", t),
        "0".to_owned(),
        "~".to_owned(),
    ];
    for r in &want {
        cursors.push(format!("{}0", r.key));
        cursors.push(r.key[..r.key.len() - 1].to_owned());
    }
    for cursor in cursors {
        let expect: Vec<HistoryRow> = want
            .iter()
            .filter(|r| r.key.as_str() < cursor.as_str())
            .cloned()
            .collect();
        let got = step(
            "history from a cursor",
            store.history(sh(a), a, Some(&cursor), 20).await,
        )?;
        ensure_eq!(
            rows_text(&got),
            rows_text(&expect),
            "rows before cursor {cursor:?}"
        );
    }
    Ok(())
}

/// An engine-shaped row key (`codec::row`: time, kind, op id), which has a
/// time bucket (`store::retention`).
fn engine_key(ms: u64, account: AccountId, n: u64) -> String {
    format!("{ms:016x}tx_{:016x}{n:016x}", account.0)
}

/// `account`'s rows kept at `cutoff_ms`, read in pages of `size` by
/// [`Store::history_since`], each from the last key of the page before, until
/// a short page; at most 400 pages.
async fn pages_since(
    store: &dyn Store,
    account: AccountId,
    cutoff_ms: Option<i64>,
    size: usize,
) -> Result<Vec<HistoryRow>, String> {
    pages_read(store, account, cutoff_ms, size, false).await
}

/// [`pages_since`], or with `walked` by [`Store::history_page`]: then a short
/// page with a cursor goes on from the cursor.
async fn pages_read(
    store: &dyn Store,
    account: AccountId,
    cutoff_ms: Option<i64>,
    size: usize,
    walked: bool,
) -> Result<Vec<HistoryRow>, String> {
    let mut seen: Vec<HistoryRow> = Vec::new();
    let mut before: Option<String> = None;
    for _ in 0..400 {
        let (shard, before_key) = (sh(account), before.as_deref());
        let (page, resume) = if walked {
            step(
                "history_page",
                store
                    .history_page(shard, account, cutoff_ms, before_key, size)
                    .await,
            )?
        } else {
            let page = store
                .history_since(shard, account, cutoff_ms, before_key, size)
                .await;
            (step("history_since page", page)?, None)
        };
        ensure!(
            page.len() <= size,
            "a page of {} rows, limit {size}",
            page.len()
        );
        let last = page
            .last()
            .map(|r| r.key.clone())
            .filter(|_| page.len() == size);
        seen.extend(page);
        before = match (resume, last) {
            (Some(cursor), _) => Some(cursor),
            (None, Some(last)) => Some(last),
            (None, None) => break,
        };
    }
    Ok(seen)
}

/// Rows of several accounts as they should read: each row's latest payload.
#[derive(Default)]
struct RowsModel(std::collections::BTreeMap<(u64, String), Vec<u8>>);

impl RowsModel {
    /// A row of `account` at `key` as `put_history` takes it, its payload
    /// naming the write; replacing when the model has the key already.
    fn write(
        &mut self,
        account: AccountId,
        key: String,
        write: usize,
    ) -> (crate::codec::ShardId, AccountId, HistoryRow) {
        let payload = format!("{account}/{key}/{write}").into_bytes();
        let replaces = self
            .0
            .insert((account.0, key.clone()), payload.clone())
            .is_some();
        let row = HistoryRow {
            key,
            payload,
            replaces,
        };
        (sh(account), account, row)
    }

    /// `account`'s rows newest first, as [`rows_text`] lists them.
    fn newest_first(&self, account: AccountId) -> Vec<(String, String)> {
        self.0
            .range((account.0, String::new())..(account.0 + 1, String::new()))
            .rev()
            .map(|((_, k), v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
            .collect()
    }
}

/// Rows whose time is before the retention cutoff are left out of reads given
/// it (engine-shaped keys and any other, through both write paths), whether a
/// bucket holds rows on both sides of the cutoff or not; pages across bucket
/// boundaries stay newest first, exclusive and complete; a row replaced within
/// its bucket reads once, in its latest version; reads without a cutoff still
/// see everything stored.
pub async fn history_past_retention_left_out(store: &dyn Store) -> Check {
    use super::retention::BUCKET_MS;
    let a = AccountId::random();
    let next = AccountId(a.0.wrapping_add(1));
    // Buckets 4000..4004 (the 2040s): no other check writes there.
    let first = 4000 * BUCKET_MS;
    let times: Vec<u64> = (0..5)
        .flat_map(|b| [0, BUCKET_MS / 2, BUCKET_MS - 1].map(|t| first + b * BUCKET_MS + t))
        .collect();
    let mut rows: Vec<HistoryRow> = times
        .iter()
        .enumerate()
        .map(|(n, &ms)| row(a, &engine_key(ms, a, n as u64 + 1), "v1"))
        .collect();
    // A key of another shape in the cut bucket, below and above the cutoff.
    let cutoff = first + BUCKET_MS + BUCKET_MS / 3;
    rows.push(row(a, &history_key(cutoff - 1, "odd"), "v1"));
    rows.push(row(a, &history_key(cutoff, "odd"), "v1"));
    // Half through the journal, half through put_history; a neighbour (one id
    // apart, same keys) in the same calls.
    let (journal, put) = rows.split_at(rows.len() / 2);
    append_all(store, vec![rec_with(a, 1, journal.to_vec())]).await?;
    let mut puts = of(a, put);
    puts.extend(of(next, &rows));
    step("put_history", store.put_history(puts, Vec::new()).await)?;
    // Two rows get a later version, one on each side of the cutoff.
    let replaced = [rows[4].clone(), rows[8].clone()];
    let finals: Vec<HistoryRow> = replaced.iter().map(|r| row(a, &r.key, "v2")).collect();
    step(
        "put_history finals",
        store.put_history(of(a, &finals), Vec::new()).await,
    )?;
    let all = latest_newest_first(&rows, &finals);
    let cutoff_key = format!("{cutoff:016x}");
    let kept: Vec<HistoryRow> = all
        .iter()
        .filter(|r| r.key >= cutoff_key)
        .cloned()
        .collect();
    ensure!(
        kept.len() > 3 && kept.len() < all.len() - 3,
        "the cutoff should cut the rows: {} of {}",
        kept.len(),
        all.len()
    );
    let cutoff = Some(cutoff as i64);
    for size in [1, 2, 3, 7, 100] {
        let got = pages_since(store, a, cutoff, size).await?;
        ensure_eq!(
            rows_text(&got),
            rows_text(&kept),
            "pages of {size} at the cutoff"
        );
        let got = pages_since(store, a, None, size).await?;
        ensure_eq!(
            rows_text(&got),
            rows_text(&all),
            "pages of {size} without a cutoff"
        );
    }
    // From a cursor in every bucket, and from one below the cutoff.
    for cursor in [
        format!("{:016x}", first + 4 * BUCKET_MS),
        format!("{:016x}", first + 2 * BUCKET_MS + 1),
        kept[kept.len() - 1].key.clone(),
        format!("{:016x}", first + BUCKET_MS),
        all[all.len() - 1].key.clone(),
    ] {
        let want: Vec<HistoryRow> = kept
            .iter()
            .filter(|r| r.key < cursor)
            .take(4)
            .cloned()
            .collect();
        let got = step(
            "history_since from a cursor",
            store
                .history_since(sh(a), a, cutoff, Some(&cursor), 4)
                .await,
        )?;
        ensure_eq!(
            rows_text(&got),
            rows_text(&want),
            "kept rows before {cursor:?}"
        );
    }
    // A cutoff at or before the epoch keeps everything.
    let got = step(
        "history_since at the epoch",
        store.history_since(sh(a), a, Some(0), None, 100).await,
    )?;
    ensure_eq!(rows_text(&got), rows_text(&all), "rows at a cutoff of 0");
    let got = step(
        "history_since of the neighbour",
        store.history_since(sh(next), next, cutoff, None, 100).await,
    )?;
    ensure_eq!(got.len(), kept.len(), "the neighbour's kept rows");
    Ok(())
}

/// The sweep drops, whole, the buckets entirely before the cutoff (rows of
/// every account and shard, a replaced row
/// counted once), a bounded number per call, and keeps the bucket the cutoff
/// falls in (even its rows before the cutoff) and every newer one, and rows
/// whose key has no bucket; sweeping again drops nothing.
pub async fn history_sweep_drops_whole_old_buckets(store: &dyn Store) -> Check {
    use super::retention::BUCKET_MS;
    let a = AccountId::random();
    // Another account, most likely of another shard.
    let b = AccountId::random();
    // Buckets 100..104 (1971-72): the only check writing engine rows there,
    // and the sweep drops buckets of every account, so nothing else may.
    let week = |n: u64, at: u64| 100 * BUCKET_MS + n * BUCKET_MS + at;
    let times = [
        week(0, 5),
        week(0, BUCKET_MS - 1),
        week(1, 0),
        week(1, BUCKET_MS / 2),
        week(2, 1),
        week(2, BUCKET_MS / 2 + 1),
        week(3, 7),
        week(4, 0),
    ];
    let rows: Vec<HistoryRow> = times
        .iter()
        .enumerate()
        .map(|(n, &ms)| row(a, &engine_key(ms, a, n as u64 + 1), "v1"))
        .collect();
    let odd = row(a, &history_key(week(0, 9), "odd"), "v1");
    // Through put_history only: rows written with journal records (the path
    // before shard logs) are not bucketed on Redis (the contract lets a sweep
    // keep them).
    let mut puts: Vec<_> = rows
        .iter()
        .chain([&odd])
        .map(|r| (sh(a), a, r.clone()))
        .collect();
    puts.push((sh(b), b, row(b, &engine_key(week(0, 3), b, 1), "v1")));
    puts.push((sh(b), b, row(b, &engine_key(week(3, 3), b, 2), "v1")));
    step("put_history", store.put_history(puts, Vec::new()).await)?;
    // A row of a dropped bucket and one of a kept bucket get later versions.
    let finals = [row(a, &rows[3].key, "v2"), row(a, &rows[6].key, "v2")];
    step(
        "put_history finals",
        store.put_history(of(a, &finals), Vec::new()).await,
    )?;
    // The cutoff falls inside bucket 102: buckets 100 and 101 go.
    let cutoff = week(2, BUCKET_MS / 2) as i64;
    let shards: Vec<crate::codec::ShardId> = (0..crate::codec::DEFAULT_SHARDS)
        .map(crate::codec::ShardId)
        .collect();
    let mut swept = super::retention::HistorySweep::default();
    let mut calls = 0;
    loop {
        let once = step(
            "drop_history_before",
            store.drop_history_before(shards.clone(), cutoff, 1).await,
        )?;
        calls += 1;
        ensure!(
            once.buckets <= 64,
            "{} buckets dropped at 1 a shard",
            once.buckets
        );
        swept.buckets += once.buckets;
        swept.rows += once.rows;
        if !once.more {
            break;
        }
        ensure!(calls < 10, "the sweep still has more after {calls} calls");
    }
    ensure!(
        calls >= 2,
        "two buckets of one shard went in one call of at most one"
    );
    // a's rows 0..4 (the replaced one once) and b's first row; a backend may
    // hold two versions of the replaced row until it moves (embedded).
    ensure!(
        (5..=6).contains(&swept.rows),
        "{} rows dropped, want 5 (or 6 with two versions of one)",
        swept.rows
    );
    // Buckets 100 and 101, counted once per shard on Redis (b's 100 apart).
    ensure!(
        (2..=3).contains(&swept.buckets),
        "{} buckets dropped, want 2 (or 3 on Redis)",
        swept.buckets
    );
    let mut want: Vec<HistoryRow> = rows[4..]
        .iter()
        .map(|r| finals.iter().find(|f| f.key == r.key).unwrap_or(r).clone())
        .chain([odd])
        .map(|r| HistoryRow {
            replaces: false,
            ..r
        })
        .collect();
    want.sort_by(|x, y| y.key.cmp(&x.key));
    let got = pages_since(store, a, None, 2).await?;
    ensure_eq!(
        rows_text(&got),
        rows_text(&want),
        "rows left after the sweep"
    );
    let got = step("history of b", store.history(sh(b), b, None, 10).await)?;
    ensure_eq!(got.len(), 1, "b's rows left after the sweep");
    // Again: nothing is left to drop.
    let again = step(
        "drop_history_before again",
        store.drop_history_before(shards, cutoff, 16).await,
    )?;
    ensure_eq!(
        again,
        super::retention::HistorySweep::default(),
        "a second sweep"
    );
    let got = pages_since(store, a, None, 3).await?;
    ensure_eq!(
        rows_text(&got),
        rows_text(&want),
        "rows left after a second sweep"
    );
    Ok(())
}

/// Random writes (new rows, later versions, three accounts) and sweeps at
/// cutoffs moving forward, in buckets 220..230: after every step, each
/// account's pages (without a cutoff, and at a random one) read what a map of
/// the newest versions says, minus the buckets swept. Rows are written only
/// into buckets not swept yet (a late row into a swept one may go either way).
pub async fn history_retention_matches_a_model(store: &dyn Store) -> Check {
    use super::retention::{first_kept_bucket, BUCKET_MS};
    use rand::{Rng, SeedableRng};
    let seed = rand::random::<u64>();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let accounts = [
        AccountId::random(),
        AccountId::random(),
        AccountId::random(),
    ];
    let shards: Vec<crate::codec::ShardId> = (0..crate::codec::DEFAULT_SHARDS)
        .map(crate::codec::ShardId)
        .collect();
    let (first, end) = (220u64, 230u64);
    let mut swept_below = first;
    let mut model = RowsModel::default();
    for step_no in 0..40 {
        if rng.gen_ratio(1, 5) && swept_below < end {
            let cutoff = rng.gen_range(swept_below * BUCKET_MS..end * BUCKET_MS) as i64;
            let max = rng.gen_range(1..4);
            for call in 0.. {
                let swept = step(
                    "drop_history_before",
                    store.drop_history_before(shards.clone(), cutoff, max).await,
                )?;
                if !swept.more {
                    break;
                }
                ensure!(call < 40, "seed {seed}: the sweep never ends");
            }
            let kept = first_kept_bucket(cutoff).max(swept_below);
            model
                .0
                .retain(|(_, key), _| super::retention::bucket_of(key).is_none_or(|b| b >= kept));
            swept_below = kept;
        } else if swept_below < end {
            let mut rows = Vec::new();
            let mut named = BTreeSet::new();
            for _ in 0..rng.gen_range(1..6) {
                let account = accounts[rng.gen_range(0..accounts.len())];
                let ms = rng.gen_range(swept_below * BUCKET_MS..end * BUCKET_MS);
                // Few op numbers per week, so later versions happen.
                let n = rng.gen_range(0..4);
                let ms = ms - ms % BUCKET_MS + n * 1000;
                let key = engine_key(ms, account, n);
                if !named.insert((account, key.clone())) {
                    continue;
                }
                rows.push(model.write(account, key, step_no));
            }
            step("put_history", store.put_history(rows, Vec::new()).await)?;
        }
        for account in accounts {
            let want = model.newest_first(account);
            let got = pages_since(store, account, None, 3).await?;
            ensure_eq!(
                rows_text(&got),
                want,
                "seed {seed}, step {step_no}: rows of {account}"
            );
            let cutoff = rng.gen_range(first * BUCKET_MS..end * BUCKET_MS);
            let cutoff_key = format!("{cutoff:016x}");
            let kept: Vec<(String, String)> =
                want.into_iter().filter(|(k, _)| *k >= cutoff_key).collect();
            let got = pages_since(store, account, Some(cutoff as i64), 2).await?;
            ensure_eq!(
                rows_text(&got),
                kept,
                "seed {seed}, step {step_no}: rows of {account} at cutoff {cutoff}"
            );
        }
    }
    Ok(())
}

/// Many rows of few accounts within a few seconds, written over many calls
/// (on Redis, rows of one account and 10 s slot in one call go as one group
/// member; later versions as single members over them), read back in pages
/// of every size from 1, through both page reads and from cursors and
/// cutoffs inside and at the edges of those slots: always each row's latest
/// version, newest first, every row once.
pub async fn history_dense_writes_match_a_model(store: &dyn Store) -> Check {
    history_dense_writes_by_turns(&[store], store).await
}

/// [`history_dense_writes_match_a_model`] with the writes made by `writers`
/// in turn (e.g. stores of two builds, or settings, on one backend) and the
/// reads by `reader`.
pub async fn history_dense_writes_by_turns(writers: &[&dyn Store], store: &dyn Store) -> Check {
    use rand::{Rng, SeedableRng};
    let seed = rand::random::<u64>();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let accounts = [AccountId::random(), AccountId::random()];
    // Three 10 s slots and the edges between them.
    let base = crate::codec::row::slot_start(1_800_000_000_000) + 5_000;
    let mut model = RowsModel::default();
    // At most ~80 rows an account: `pages_since` reads 100 pages at most.
    for call in 0..20 {
        let mut rows = Vec::new();
        let mut named = BTreeSet::new();
        for _ in 0..rng.gen_range(1..9) {
            let account = accounts[rng.gen_range(0..accounts.len())];
            let ms = base + rng.gen_range(0..25_000);
            let key = engine_key(ms, account, rng.gen_range(0..3));
            // A known key again: a later version (at most one per call, as
            // the runtime writes them).
            let key = match model.0.keys().nth(rng.gen_range(0..model.0.len().max(1))) {
                Some((a, k)) if *a == account.0 && rng.gen_ratio(1, 3) => k.clone(),
                _ => key,
            };
            if !named.insert((account, key.clone())) {
                continue;
            }
            rows.push(model.write(account, key, call));
        }
        let writer = writers[call % writers.len()];
        step("put_history", writer.put_history(rows, Vec::new()).await)?;
        if call % 5 != 4 {
            continue;
        }
        for account in accounts {
            let want = model.newest_first(account);
            for size in [1, 2, 3, 5, 100] {
                let got = pages_since(store, account, None, size).await?;
                ensure_eq!(
                    rows_text(&got),
                    want,
                    "seed {seed}, call {call}: rows of {account} in pages of {size}"
                );
                let got = pages_read(store, account, None, size, true).await?;
                ensure_eq!(
                    rows_text(&got),
                    want,
                    "seed {seed}, call {call}: rows of {account} walked in pages of {size}"
                );
            }
            for ms in [base + 5_000, base + 5_001, base + 12_345, base + 4_999] {
                let cursor = format!("{ms:016x}");
                let below: Vec<(String, String)> =
                    want.iter().filter(|(k, _)| *k < cursor).cloned().collect();
                let got = step(
                    "history from a cursor",
                    store.history(sh(account), account, Some(&cursor), 3).await,
                )?;
                ensure_eq!(
                    rows_text(&got),
                    below.iter().take(3).cloned().collect::<Vec<_>>(),
                    "seed {seed}: rows of {account} before {cursor}"
                );
                let kept: Vec<(String, String)> =
                    want.iter().filter(|(k, _)| *k >= cursor).cloned().collect();
                let got = pages_since(store, account, Some(ms as i64), 2).await?;
                ensure_eq!(
                    rows_text(&got),
                    kept,
                    "seed {seed}: rows of {account} at cutoff {ms}"
                );
            }
        }
    }
    Ok(())
}
