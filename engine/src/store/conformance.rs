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

use super::{JournalAppend, Loaded, Snapshot, Store, StoreError};
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
        },
        JournalAppend {
            account: a,
            seq: 2,
            payload: Vec::new(),
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
