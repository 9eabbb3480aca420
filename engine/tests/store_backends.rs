//! Runs the store conformance suite against every backend (memory, embedded, Redis)
//! and checks what only real backends can: data surviving a reopen, a SIGKILL of
//! Redis, operations failing fast while Redis is down and recovering when it is back,
//! and the start-up durability check.
//!
//! Each Redis test starts its own `redis-server` (see `support::redis_server`), so the
//! tests run in parallel without sharing keys.

mod support;

use std::time::{Duration, Instant};

use okpay_engine::ids::AccountId;
use okpay_engine::store::conformance;
use okpay_engine::store::embedded::EmbeddedStore;
use okpay_engine::store::memory::MemoryStore;
use okpay_engine::store::redis::RedisStore;
use okpay_engine::store::redis_config::{DurabilityProblem, RedisOptions};
use okpay_engine::store::{HistoryRow, JournalAppend, Snapshot, Store, StoreError};
use support::redis_server::RedisServer;

fn rec(account: AccountId, seq: u64, payload: &str) -> JournalAppend {
    JournalAppend {
        account,
        seq,
        payload: payload.as_bytes().to_vec(),
        history: Vec::new(),
    }
}

/// A record carrying one history row `key → "<payload>-row"`.
fn rec_with_row(account: AccountId, seq: u64, payload: &str, key: &str) -> JournalAppend {
    JournalAppend {
        history: vec![HistoryRow {
            key: key.to_owned(),
            payload: format!("{payload}-row").into_bytes(),
            replaces: false,
        }],
        ..rec(account, seq, payload)
    }
}

/// The keys and payloads of `account`'s whole history, newest first, as strings.
async fn history(store: &dyn Store, account: AccountId) -> Vec<(String, String)> {
    let rows = store
        .history(
            okpay_engine::codec::shard_of(account, 64),
            account,
            None,
            100,
        )
        .await
        .expect("history");
    rows.into_iter()
        .map(|r| (r.key, String::from_utf8_lossy(&r.payload).into_owned()))
        .collect()
}

fn row_text(key: &str, payload: &str) -> (String, String) {
    (key.to_owned(), payload.to_owned())
}

/// Appends `batch` and asserts every record was accepted.
async fn append_ok(store: &dyn Store, batch: &[JournalAppend]) {
    let results = store.append(batch).await.expect("append");
    assert!(
        results.iter().all(Result::is_ok),
        "append refused: {results:?}"
    );
}

/// The payloads of `account`'s records after its snapshot, as strings.
async fn payloads(store: &dyn Store, account: AccountId) -> Vec<String> {
    let loaded = store.load(account).await.expect("load");
    loaded
        .records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
        .collect()
}

#[tokio::test]
async fn memory_store_conforms() {
    conformance::run_all(&MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_store_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path()).expect("open embedded store");
    conformance::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_store_conforms() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url()).await.expect("connect");
    conformance::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_store_in_cluster_mode_conforms() {
    // One script call per record (what Redis Cluster needs) instead of one per batch.
    let server = RedisServer::start();
    let options = okpay_engine::store::redis_config::RedisOptions {
        cluster: true,
        ..Default::default()
    };
    let store = RedisStore::connect_with(&server.url(), options)
        .await
        .expect("connect");
    conformance::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_store_with_history_groups_pinned_off_conforms_and_mixes() {
    // `[engine] history_groups = false` (a rolling upgrade): every row a
    // single member, as builds before groups write them.
    let server = RedisServer::start();
    let pinned = RedisOptions {
        history_groups: false,
        ..Default::default()
    };
    let singles = RedisStore::connect_with(&server.url(), pinned)
        .await
        .expect("connect");
    conformance::run_all(&singles).await;
    // Rows written by turns with and without groups (the pin lifted node by
    // node) read the same through either.
    let groups = RedisStore::connect(&server.url()).await.expect("connect");
    let writers: [&dyn Store; 2] = [&singles, &groups];
    for reader in writers {
        if let Err(e) = conformance::history_dense_writes_by_turns(&writers, reader).await {
            panic!("{e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_really_trim_the_journal() {
    // `load` hides trimmed records either way; this checks they are gone from storage.
    let dir = tempfile::tempdir().expect("tempdir");
    let embedded = EmbeddedStore::open(dir.path()).expect("open embedded store");
    let server = RedisServer::start();
    let redis = RedisStore::connect(&server.url()).await.expect("connect");

    let a = AccountId::random();
    let batch: Vec<_> = (1..=5).map(|s| rec(a, s, "r")).collect();
    let snap = Snapshot {
        seq: 3,
        payload: b"s".to_vec(),
    };
    append_ok(&embedded, &batch).await;
    append_ok(&redis, &batch).await;
    assert_eq!(embedded.journal_len(a).await, Ok(5));
    assert_eq!(redis.journal_len(a).await, Ok(5));
    embedded
        .save_snapshot(a, snap.clone())
        .await
        .expect("snapshot");
    redis.save_snapshot(a, snap).await.expect("snapshot");
    assert_eq!(
        embedded.journal_len(a).await,
        Ok(2),
        "embedded kept trimmed records"
    );
    assert_eq!(
        redis.journal_len(a).await,
        Ok(2),
        "redis kept trimmed records"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_data_survives_close_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (AccountId::random(), AccountId::random());
    {
        let store = EmbeddedStore::open(dir.path()).expect("open");
        append_ok(
            &store,
            &[
                rec_with_row(a, 1, "a1", "k1"),
                rec_with_row(a, 2, "a2", "k2"),
                rec(b, 1, "b1"),
            ],
        )
        .await;
        store
            .save_snapshot(
                b,
                Snapshot {
                    seq: 1,
                    payload: b"b-state".to_vec(),
                },
            )
            .await
            .expect("snapshot");
        assert!(store
            .claim_index("login", "a@x", "acc_a")
            .await
            .expect("claim"));
    }
    let store = EmbeddedStore::open(dir.path()).expect("reopen");
    assert_eq!(payloads(&store, a).await, ["a1", "a2"]);
    assert_eq!(
        history(&store, a).await,
        [row_text("k2", "a2-row"), row_text("k1", "a1-row")]
    );
    let lb = store.load(b).await.expect("load b");
    assert_eq!(lb.snapshot.map(|s| s.payload), Some(b"b-state".to_vec()));
    assert!(lb.records.is_empty());
    assert_eq!(
        store.get_index("login", "a@x").await.expect("get"),
        Some("acc_a".to_owned())
    );
    // The seq check continues where the old process stopped.
    let results = store.append(&[rec(a, 2, "dup"), rec(a, 3, "a3")]).await;
    assert_eq!(
        results.expect("append"),
        vec![
            Err(StoreError::SequenceConflict {
                account: a,
                expected: 3,
                got: 2
            }),
            Ok(())
        ]
    );
    let mut listed = store.list_accounts(None, 10).await.expect("list");
    listed.sort();
    let mut want = vec![a, b];
    want.sort();
    assert_eq!(listed, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_data_survives_kill9_and_restart() {
    let mut server = RedisServer::start();
    let store = RedisStore::connect(&server.url()).await.expect("connect");
    let a = AccountId::random();
    append_ok(
        &store,
        &[
            rec_with_row(a, 1, "a1", "k1"),
            rec(a, 2, "a2"),
            rec_with_row(a, 3, "a3", "k3"),
        ],
    )
    .await;
    store
        .save_snapshot(
            a,
            Snapshot {
                seq: 1,
                payload: b"after-1".to_vec(),
            },
        )
        .await
        .expect("snapshot");
    assert!(store
        .claim_index("login", "a@x", "acc_a")
        .await
        .expect("claim"));

    // Acknowledged means fsync'd: SIGKILL gives Redis no chance to flush anything more.
    server.kill9();
    server.restart();

    // A fresh client, so nothing could come from the old connection or script cache.
    let store = RedisStore::connect(&server.url()).await.expect("reconnect");
    let loaded = store.load(a).await.expect("load");
    assert_eq!(
        loaded.snapshot.map(|s| s.payload),
        Some(b"after-1".to_vec())
    );
    assert_eq!(payloads(&store, a).await, ["a2", "a3"]);
    // The row of record 1 outlives both the trim and the kill.
    assert_eq!(
        history(&store, a).await,
        [row_text("k3", "a3-row"), row_text("k1", "a1-row")]
    );
    assert_eq!(
        store.get_index("login", "a@x").await.expect("get"),
        Some("acc_a".to_owned())
    );
    assert_eq!(store.list_accounts(None, 10).await.expect("list"), vec![a]);
    // Scripts are gone from the restarted server's cache: appends must reload them.
    append_ok(&store, &[rec_with_row(a, 4, "a4", "k4")]).await;
    assert_eq!(payloads(&store, a).await, ["a2", "a3", "a4"]);
    assert_eq!(history(&store, a).await[0], row_text("k4", "a4-row"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_fails_fast_while_down_and_recovers() {
    let mut server = RedisServer::start();
    let store = RedisStore::connect(&server.url()).await.expect("connect");
    let a = AccountId::random();
    append_ok(&store, &[rec(a, 1, "a1")]).await;

    server.kill9();
    let started = Instant::now();
    let append = store.append(&[rec(a, 2, "a2")]).await;
    assert!(
        matches!(append, Err(StoreError::Unavailable(_))),
        "append while down: {append:?}"
    );
    let load = store.load(a).await;
    assert!(
        matches!(load, Err(StoreError::Unavailable(_))),
        "load while down: {load:?}"
    );
    let claim = store.claim_index("login", "k", "v").await;
    assert!(
        matches!(claim, Err(StoreError::Unavailable(_))),
        "claim while down: {claim:?}"
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(5),
        "three operations against a dead redis took {elapsed:?}"
    );

    server.restart();
    // Same store object: it must reconnect by itself.
    assert_eq!(payloads(&store, a).await, ["a1"]);
    append_ok(&store, &[rec(a, 2, "a2")]).await;
    assert_eq!(payloads(&store, a).await, ["a1", "a2"]);
    assert!(store.claim_index("login", "k", "v").await.expect("claim"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_times_out_on_a_hung_server_and_recovers() {
    let mut server = RedisServer::start();
    let timeout = Duration::from_millis(300);
    let options = RedisOptions {
        connect_timeout: timeout,
        response_timeout: timeout,
        ..RedisOptions::default()
    };
    let store = RedisStore::connect_with(&server.url(), options)
        .await
        .expect("connect");
    let a = AccountId::random();
    append_ok(&store, &[rec(a, 1, "a1")]).await;

    server.pause();
    let started = Instant::now();
    let append = store.append(&[rec(a, 2, "a2")]).await;
    assert!(
        matches!(append, Err(StoreError::Unavailable(_))),
        "append to a hung redis: {append:?}"
    );
    let load = store.load(a).await;
    assert!(
        matches!(load, Err(StoreError::Unavailable(_))),
        "load from a hung redis: {load:?}"
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed < timeout * 6,
        "two operations against a hung redis took {elapsed:?}"
    );
    server.resume();

    // The append's outcome was unknown; the seq check makes retrying it safe: it is
    // either applied now or refused as already there, never stored twice.
    let retried = store.append(&[rec(a, 2, "a2")]).await.expect("retry");
    assert!(
        retried[0].is_ok()
            || retried[0]
                == Err(StoreError::SequenceConflict {
                    account: a,
                    expected: 3,
                    got: 2
                }),
        "retried append: {retried:?}"
    );
    assert_eq!(payloads(&store, a).await, ["a1", "a2"]);
    // Keep the server alive (and killed on drop) until here.
    server.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durability_check_flags_a_careless_redis() {
    let proper = RedisServer::start();
    let store = RedisStore::connect(&proper.url()).await.expect("connect");
    let report = store.check_durability().await;
    assert!(report.is_ok(), "{report}");

    let careless = RedisServer::start_without_aof();
    let store = RedisStore::connect(&careless.url()).await.expect("connect");
    let report = store.check_durability().await;
    assert!(!report.is_ok());
    assert_eq!(
        report.problems,
        vec![
            DurabilityProblem::Wrong {
                setting: "appendonly",
                want: "yes",
                got: "no".to_owned()
            },
            DurabilityProblem::Wrong {
                setting: "appendfsync",
                want: "always",
                got: "everysec".to_owned()
            },
        ],
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_history_rows_of_the_previous_layout_stay_readable_and_are_superseded() {
    // Rows written by the previous layout (a shard hash `<account>:<key>` → row
    // plus a score-0 sorted set of those fields) are read along with the row
    // set, and a row rewritten since (a transfer completing) shows its new
    // version only.
    use okpay_engine::codec::ShardId;
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url()).await.expect("connect");
    let (shard, account) = (ShardId(7), AccountId(0x00ff_0000_0000_0001));
    let old = [("k1", "old-1"), ("k2", "old-2"), ("k4", "old-4")];
    let client = redis::Client::open(server.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    for (key, row) in old {
        let field = format!("{account}:{key}");
        let _: () = redis::pipe()
            .hset("okpay:{s007}:rows", &field, row)
            .zadd("okpay:{s007}:rows:keys", &field, 0)
            .query_async(&mut conn)
            .await
            .expect("write the previous layout");
    }
    // Rows `new-…` are first versions in the row set; `newer-…` rewrites one, and
    // says so as the runtime does for a final status.
    let row = |key: &str, payload: &str| {
        (
            shard,
            account,
            HistoryRow {
                key: key.into(),
                payload: payload.into(),
                replaces: !payload.starts_with("new-"),
            },
        )
    };
    store
        .put_history(vec![row("k2", "new-2"), row("k3", "new-3")], Vec::new())
        .await
        .expect("put rows");
    // Another account of the shard, whose id shares leading bytes: not listed.
    store
        .put_history(
            vec![(
                shard,
                AccountId(0x00ff_0000_0000_0002),
                HistoryRow {
                    key: "k5".into(),
                    payload: b"other".to_vec(),
                    replaces: false,
                },
            )],
            Vec::new(),
        )
        .await
        .expect("put rows");
    let page = |before: Option<&'static str>, limit: usize| {
        let store = &store;
        async move {
            store
                .history(shard, account, before, limit)
                .await
                .expect("history")
                .into_iter()
                .map(|r| (r.key, String::from_utf8(r.payload).unwrap()))
                .collect::<Vec<_>>()
        }
    };
    let all = page(None, 10).await;
    let expect = |v: &[(&str, &str)]| {
        v.iter()
            .map(|(k, p)| (k.to_string(), p.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        all,
        expect(&[
            ("k4", "old-4"),
            ("k3", "new-3"),
            ("k2", "new-2"),
            ("k1", "old-1")
        ])
    );
    assert_eq!(
        page(None, 2).await,
        expect(&[("k4", "old-4"), ("k3", "new-3")])
    );
    assert_eq!(
        page(Some("k3"), 2).await,
        expect(&[("k2", "new-2"), ("k1", "old-1")])
    );
    // Rewriting a row of the row set replaces it there too.
    store
        .put_history(vec![row("k3", "newer-3")], Vec::new())
        .await
        .expect("put rows");
    assert_eq!(page(Some("k4"), 1).await, expect(&[("k3", "newer-3")]));
    let members: usize = redis::cmd("ZCARD")
        .arg("okpay:{s007}:rowset")
        .query_async(&mut conn)
        .await
        .expect("zcard");
    assert_eq!(
        members, 3,
        "one member per row: k2, k3 and the other account's k5"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_recovery_rewrites_a_stale_row_instead_of_adding_one() {
    // The debit's row of a transfer (processing) was stored, then the transfer
    // completed and the engine died before the completion's row was written.
    // Recovery replays both records: the account's history must list the
    // transfer once, completed — the replayed rows replace what is stored.
    use okpay_engine::domain::command::{DepositMethod, Profile};
    use okpay_engine::domain::history::TxRecord;
    use okpay_engine::domain::notification::TxStatus;
    use okpay_engine::ids::IdempotencyKey;
    use okpay_engine::money::{Amount, Currency};
    use okpay_engine::{Engine, EngineConfig};
    use std::sync::Arc;
    let server = RedisServer::start();
    let start = || async {
        let store = RedisStore::connect(&server.url()).await.expect("connect");
        Engine::start(EngineConfig::default(), Arc::new(store))
            .await
            .expect("engine starts")
    };
    let cny = |s: &str| Amount::parse(s, Currency::new("CNY", 2).unwrap()).unwrap();
    let key = |s: &str| IdempotencyKey::parse(s).unwrap();
    let engine = start().await;
    let alice = engine.open_account(Profile::default()).await.unwrap();
    let bob = engine.open_account(Profile::default()).await.unwrap();
    engine
        .deposit(alice, key("d"), cny("100"), DepositMethod::BankCard)
        .await
        .unwrap();
    engine
        .transfer(alice, key("t"), bob, cny("10"), None, false)
        .await
        .unwrap();
    // Reading the history waits for its rows: the completed row is stored.
    let (rows, _) = engine.history(alice, None, 10, None).await.unwrap();
    let done = rows
        .iter()
        .find(|r| r.counterparty == Some(bob))
        .expect("the transfer's row")
        .clone();
    assert_eq!(done.status, TxStatus::Completed);
    let shard = engine.layout().shard_of(alice);
    drop(engine);
    // Stand in the processing row next to it, as if the completion's row had
    // never been written.
    let stale = TxRecord {
        status: TxStatus::Processing,
        updated_at: done.created_at,
        ..done.clone()
    };
    let stored = store_rows(&server, shard, alice).await;
    let (key, _) = stored
        .iter()
        .find(|(k, p)| TxRecord::decode(p).is_ok_and(|r| r.id == done.id) && !k.is_empty())
        .expect("the completed row in the row set");
    // Engine rows live in the compact row sets of their time bucket (layout 5,
    // `codec::row`, `store::retention`).
    let (prefix, body) = okpay_engine::codec::row::encode_member(alice, key, &stale.encode())
        .expect("an engine row key");
    let bucket = okpay_engine::store::retention::bucket_of(key).expect("a bucket");
    let set = format!("okpay:{{{}}}:hist:{bucket}", shard.tag());
    let member = [prefix, body].concat();
    let client = redis::Client::open(server.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let _: () = redis::cmd("ZADD")
        .arg(&set)
        .arg(0)
        .arg(&member)
        .query_async(&mut conn)
        .await
        .expect("zadd");
    // Whether the stale member is in the week's set (the completed row may
    // share a member with the deposit's: rows of one write go as a group).
    let stored = |conn: redis::aio::MultiplexedConnection, member: Vec<u8>| {
        let set = set.clone();
        async move {
            let mut conn = conn;
            let score: Option<f64> = redis::cmd("ZSCORE")
                .arg(set)
                .arg(member)
                .query_async(&mut conn)
                .await
                .expect("zscore");
            score.is_some()
        }
    };
    assert!(stored(conn.clone(), member.clone()).await);
    // Restart: recovery replays the tail (no checkpoint was taken) and
    // rewrites its rows.
    let engine = start().await;
    let (after, _) = engine.history(alice, None, 10, None).await.unwrap();
    let transfers: Vec<&TxRecord> = after.iter().filter(|r| r.id == done.id).collect();
    assert_eq!(transfers.len(), 1, "{after:?}");
    assert_eq!(transfers[0].status, TxStatus::Completed);
    // And the stale member is gone, not merely hidden when read.
    assert!(!stored(conn.clone(), member).await);
}

/// `(row key, row)` of every member of `account` in `shard`'s row set.
async fn store_rows(
    server: &RedisServer,
    shard: okpay_engine::codec::ShardId,
    account: AccountId,
) -> Vec<(String, Vec<u8>)> {
    let store = RedisStore::connect(&server.url()).await.expect("connect");
    store
        .history(shard, account, None, 100)
        .await
        .expect("history")
        .into_iter()
        .map(|r| (r.key, r.payload))
        .collect()
}

/// An engine-shaped row key (`codec::row`) at `ms`, which has a time bucket.
fn engine_key(ms: u64, account: AccountId, n: u64) -> String {
    format!("{ms:016x}tx_{:016x}{n:016x}", account.0)
}

/// A row of `account` in `shard` as `put_history` takes it: an engine-shaped
/// key at `ms` for operation `n`, the payload `label` as text.
fn shard_row(
    shard: okpay_engine::codec::ShardId,
    account: AccountId,
    ms: u64,
    n: u64,
    label: u64,
) -> (okpay_engine::codec::ShardId, AccountId, HistoryRow) {
    let row = HistoryRow {
        key: engine_key(ms, account, n),
        payload: format!("{label}").into_bytes(),
        replaces: false,
    };
    (shard, account, row)
}

/// Every `okpay:*` sorted set of a server and its members with scores, by key.
async fn sorted_sets(url: &str) -> std::collections::BTreeMap<String, Vec<(Vec<u8>, f64)>> {
    let client = redis::Client::open(url).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("okpay:*")
        .query_async(&mut conn)
        .await
        .expect("keys");
    let mut out = std::collections::BTreeMap::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("type");
        if kind != "zset" {
            continue;
        }
        let members: Vec<(Vec<u8>, f64)> = redis::cmd("ZRANGE")
            .arg(&key)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .expect("zrange");
        out.insert(key, members);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_plain_and_script_paths_write_the_same_rows() {
    // Rows written without a script (one node, no leases: MULTI/EXEC) and by
    // put_rowset.lua (leases or a Cluster) must be the same data: the same
    // bucket sets, index and layout-3 set, member for member.
    use okpay_engine::codec::ShardId;
    use okpay_engine::store::retention::BUCKET_MS;
    let (plain_server, script_server) = (RedisServer::start(), RedisServer::start());
    let plain = RedisStore::connect(&plain_server.url())
        .await
        .expect("connect");
    let script = RedisStore::connect_with(
        &script_server.url(),
        RedisOptions {
            cluster: true,
            ..Default::default()
        },
    )
    .await
    .expect("connect");
    let (a, b) = (AccountId(0x0a), AccountId(0x0b));
    let row = |shard: u16, account: AccountId, key: String, payload: &str, replaces: bool| {
        (
            ShardId(shard),
            account,
            HistoryRow {
                key,
                payload: payload.as_bytes().to_vec(),
                replaces,
            },
        )
    };
    let first = vec![
        row(3, a, engine_key(500 * BUCKET_MS + 1, a, 1), "a1", false),
        row(3, a, engine_key(500 * BUCKET_MS + 2, a, 2), "a2", false),
        row(3, a, engine_key(501 * BUCKET_MS, a, 3), "a3", false),
        row(3, a, "0000000000000001odd".into(), "odd", false),
        row(5, b, engine_key(501 * BUCKET_MS + 9, b, 1), "b1", false),
    ];
    let second = vec![
        row(
            3,
            a,
            engine_key(500 * BUCKET_MS + 2, a, 2),
            "a2 final",
            true,
        ),
        row(3, a, "0000000000000001odd".into(), "odd final", true),
        row(
            5,
            b,
            engine_key(501 * BUCKET_MS + 9, b, 1),
            "b1 final",
            true,
        ),
        row(5, b, engine_key(502 * BUCKET_MS, b, 2), "b2", false),
    ];
    for store in [&plain, &script] {
        for rows in [first.clone(), second.clone()] {
            let refused = store.put_history(rows, Vec::new()).await.expect("put");
            assert!(refused.is_empty());
        }
    }
    let (written, scripted) = (
        sorted_sets(&plain_server.url()).await,
        sorted_sets(&script_server.url()).await,
    );
    assert_eq!(written, scripted);
    let names: Vec<&str> = written.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "okpay:{s003}:hist:500",
            "okpay:{s003}:hist:501",
            "okpay:{s003}:hist:buckets",
            "okpay:{s003}:rowset",
            "okpay:{s005}:hist:501",
            "okpay:{s005}:hist:502",
            "okpay:{s005}:hist:buckets",
        ]
    );
    // One member per row, the replaced ones included once.
    assert_eq!(written["okpay:{s003}:hist:500"].len(), 2);
    assert_eq!(written["okpay:{s005}:hist:501"].len(), 1);
    assert_eq!(written["okpay:{s003}:rowset"].len(), 1);
    assert_eq!(
        written["okpay:{s005}:hist:buckets"],
        [(b"501".to_vec(), 501.0), (b"502".to_vec(), 502.0)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_rows_of_layout_4_stay_readable_are_superseded_and_never_swept() {
    // Rows stored in layout 4 (one compact set per shard, before buckets) are
    // read with the bucketed ones; a later version written since wins; past
    // retention they are left out of reads like any row; the sweep drops only
    // bucket sets and leaves layout 4 as it is.
    use okpay_engine::codec::ShardId;
    use okpay_engine::store::retention::BUCKET_MS;
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url()).await.expect("connect");
    let (shard, account) = (ShardId(7), AccountId(0x00ff_0000_0000_0001));
    let keys = [
        engine_key(2000 * BUCKET_MS + 5, account, 1),
        engine_key(3000 * BUCKET_MS + 5, account, 2),
        engine_key(3001 * BUCKET_MS + 5, account, 3),
    ];
    let client = redis::Client::open(server.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    for (i, key) in keys.iter().enumerate() {
        let (prefix, body) =
            okpay_engine::codec::row::encode_member(account, key, format!("old-{i}").as_bytes())
                .expect("an engine key");
        let _: () = redis::cmd("ZADD")
            .arg("okpay:{s007}:hist")
            .arg(0)
            .arg([prefix, body].concat())
            .query_async(&mut conn)
            .await
            .expect("write layout 4");
    }
    let read = |cutoff: Option<i64>| {
        let store = &store;
        async move {
            store
                .history_since(shard, account, cutoff, None, 10)
                .await
                .expect("history")
                .into_iter()
                .map(|r| (r.key, String::from_utf8(r.payload).unwrap()))
                .collect::<Vec<_>>()
        }
    };
    let text = |rows: &[(usize, &str)]| -> Vec<(String, String)> {
        rows.iter()
            .map(|(i, p)| (keys[*i].clone(), p.to_string()))
            .collect()
    };
    assert_eq!(
        read(None).await,
        text(&[(2, "old-2"), (1, "old-1"), (0, "old-0")])
    );
    // The middle row reaches its final version: written to its bucket.
    let put = store
        .put_history(
            vec![(
                shard,
                account,
                HistoryRow {
                    key: keys[1].clone(),
                    payload: b"new-1".to_vec(),
                    replaces: true,
                },
            )],
            Vec::new(),
        )
        .await
        .expect("put");
    assert!(put.is_empty());
    assert_eq!(
        read(None).await,
        text(&[(2, "old-2"), (1, "new-1"), (0, "old-0")])
    );
    // Past retention (cutoff in bucket 2500): the oldest is left out.
    let cutoff = Some((2500 * BUCKET_MS) as i64);
    assert_eq!(read(cutoff).await, text(&[(2, "old-2"), (1, "new-1")]));
    // The sweep at the start of bucket 3001 drops the bucket of the new
    // version, and nothing of layout 4.
    let swept = store
        .drop_history_before(vec![shard], (3001 * BUCKET_MS) as i64, 16)
        .await
        .expect("sweep");
    assert_eq!((swept.buckets, swept.rows, swept.more), (1, 1, false));
    let layout4: usize = redis::cmd("ZCARD")
        .arg("okpay:{s007}:hist")
        .query_async(&mut conn)
        .await
        .expect("zcard");
    assert_eq!(layout4, 3);
    let exists: usize = redis::cmd("EXISTS")
        .arg("okpay:{s007}:hist:3000")
        .query_async(&mut conn)
        .await
        .expect("exists");
    assert_eq!(exists, 0, "the bucket set is gone");
    // Read at that cutoff, only the row of the kept week is left.
    assert_eq!(
        read(Some((3001 * BUCKET_MS) as i64)).await,
        text(&[(2, "old-2")])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_history_leaves_out_rows_past_retention_at_its_clock() {
    // The engine reads the statement with the cutoff of its own clock: a row
    // is listed until its operation is `history_retention_days` old, then not,
    // though still stored until its week is swept.
    use okpay_engine::domain::command::{DepositMethod, Profile};
    use okpay_engine::ids::IdempotencyKey;
    use okpay_engine::money::{Amount, Currency};
    use okpay_engine::time::{ManualClock, Timestamp};
    use okpay_engine::{Engine, EngineConfig};
    use std::sync::Arc;
    const DAY_MS: i64 = 86_400_000;
    let store = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(Timestamp(20_000 * DAY_MS));
    let engine = Engine::start(
        EngineConfig {
            policy: okpay_engine::policy::Policy {
                history_retention_days: 3,
                ..Default::default()
            },
            clock: Arc::new(clock.clone()),
            ..Default::default()
        },
        store.clone(),
    )
    .await
    .expect("engine starts");
    let cny = |s: &str| Amount::parse(s, Currency::new("CNY", 2).unwrap()).unwrap();
    let alice = engine.open_account(Profile::default()).await.unwrap();
    let deposit = |key: &'static str| {
        let engine = engine.clone();
        async move {
            engine
                .deposit(
                    alice,
                    IdempotencyKey::parse(key).unwrap(),
                    cny("10"),
                    DepositMethod::BankCard,
                )
                .await
                .unwrap()
        }
    };
    deposit("first").await;
    clock.advance_ms(2 * DAY_MS);
    deposit("second").await;
    let (rows, _) = engine.history(alice, None, 10, None).await.unwrap();
    assert_eq!(rows.len(), 2);
    // The first is 3 days and 1 ms old: past retention.
    clock.advance_ms(DAY_MS + 1);
    let (rows, _) = engine.history(alice, None, 10, None).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].created_at, Timestamp(20_002 * DAY_MS));
    // Still stored: only a sweep drops it, with its week.
    let stored = store
        .history(engine.layout().shard_of(alice), alice, None, 10)
        .await
        .unwrap();
    assert_eq!(stored.len(), 2);
    clock.advance_ms(2 * DAY_MS);
    let (rows, _) = engine.history(alice, None, 10, None).await.unwrap();
    assert!(rows.is_empty(), "{rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_history_pages_walk_at_most_a_year_of_weeks_and_stay_in_order() {
    // An account with few rows among a shard's many weeks: a page reads at most
    // 53 week buckets, comes back short with where to go on from, and never
    // lists a row of an older layout that sits below the weeks not yet read.
    use okpay_engine::codec::{row, ShardId};
    use okpay_engine::store::retention::BUCKET_MS;
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url()).await.expect("connect");
    let shard = ShardId(9);
    let (mine, other) = (AccountId(0x51), AccountId(0x52));
    let put = |account: AccountId, ms: u64, n: u64| shard_row(shard, account, ms, n, ms);
    // Mine: three rows in week 1,000, one in week 900. Another account of the
    // shard has a row in every week from 901 to 999, so the index lists them.
    let mut rows = vec![
        put(mine, 1_000 * BUCKET_MS + 3, 3),
        put(mine, 1_000 * BUCKET_MS + 2, 2),
        put(mine, 1_000 * BUCKET_MS + 1, 1),
        put(mine, 900 * BUCKET_MS + 5, 5),
    ];
    rows.extend((901..1_000).map(|week| put(other, week * BUCKET_MS, week)));
    let refused = store.put_history(rows, Vec::new()).await.expect("put");
    assert!(refused.is_empty());
    // And two rows of mine stored before buckets (layout 4), in weeks 950 and
    // 920: the first among the weeks page 1 reads, the second below them.
    let old_key = engine_key(950 * BUCKET_MS, mine, 4);
    let older_key = engine_key(920 * BUCKET_MS, mine, 6);
    let client = redis::Client::open(server.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    for key in [&old_key, &older_key] {
        let (prefix, body) = row::encode_member(mine, key, b"layout 4").expect("engine key");
        let _: i64 = redis::cmd("ZADD")
            .arg("okpay:{s009}:hist")
            .arg(0)
            .arg([prefix, body].concat())
            .query_async(&mut conn)
            .await
            .expect("plant a layout-4 row");
    }

    let keys = |rows: &[HistoryRow]| rows.iter().map(|r| r.key.clone()).collect::<Vec<_>>();
    // Page 1: weeks 1,000 down to 948 (53 of them): my three rows of week
    // 1,000, and the layout-4 row of week 950 (within the weeks read), not the
    // one of week 920 (below them: page 2 lists it, in its place).
    let (page, next) = store
        .history_page(shard, mine, None, None, 10)
        .await
        .expect("page 1");
    assert_eq!(
        keys(&page),
        [
            engine_key(1_000 * BUCKET_MS + 3, mine, 3),
            engine_key(1_000 * BUCKET_MS + 2, mine, 2),
            engine_key(1_000 * BUCKET_MS + 1, mine, 1),
            old_key.clone(),
        ]
    );
    let mut first_of_week_948 = String::new();
    okpay_engine::ids::push_hex16(&mut first_of_week_948, 948 * BUCKET_MS);
    assert_eq!(next.as_deref(), Some(first_of_week_948.as_str()));
    // Page 2 goes on below week 948 and reaches the row of week 900: the walk
    // ends there (no older week), so no cursor.
    let (page, next) = store
        .history_page(shard, mine, None, next.as_deref(), 10)
        .await
        .expect("page 2");
    assert_eq!(
        keys(&page),
        [older_key.clone(), engine_key(900 * BUCKET_MS + 5, mine, 5)]
    );
    assert_eq!(next, None);
    // A full page needs no cursor from the walk: the last row's key goes on.
    let (page, next) = store
        .history_page(shard, mine, None, None, 2)
        .await
        .expect("full page");
    assert_eq!(page.len(), 2);
    assert_eq!(next, None);
    // The unbounded read lists everything in one call, in order.
    let all = store
        .history_since(shard, mine, None, None, 10)
        .await
        .expect("all");
    assert_eq!(
        keys(&all),
        [
            engine_key(1_000 * BUCKET_MS + 3, mine, 3),
            engine_key(1_000 * BUCKET_MS + 2, mine, 2),
            engine_key(1_000 * BUCKET_MS + 1, mine, 1),
            old_key,
            older_key,
            engine_key(900 * BUCKET_MS + 5, mine, 5),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_history_on_redis_pages_through_a_sparse_accounts_weeks() {
    // End to end: an account with a deposit now and one 60 weeks ago, in a
    // shard busy every week in between. The first page stops after a year of
    // weeks with a cursor; the cursor's page lists the old deposit.
    use okpay_engine::domain::command::{DepositMethod, Profile};
    use okpay_engine::ids::IdempotencyKey;
    use okpay_engine::money::{Amount, Currency};
    use okpay_engine::time::{ManualClock, Timestamp};
    use okpay_engine::{Engine, EngineConfig};
    use std::sync::Arc;
    const WEEK_MS: i64 = 7 * 86_400_000;
    let server = RedisServer::start();
    let store = Arc::new(RedisStore::connect(&server.url()).await.expect("connect"));
    let clock = ManualClock::new(Timestamp(2_900 * WEEK_MS));
    let engine = Engine::start(
        EngineConfig {
            clock: Arc::new(clock.clone()),
            ..Default::default()
        },
        store.clone(),
    )
    .await
    .expect("engine starts");
    let cny = |s: &str| Amount::parse(s, Currency::new("CNY", 2).unwrap()).unwrap();
    let alice = engine.open_account(Profile::default()).await.unwrap();
    let shard = engine.layout().shard_of(alice);
    let mut bob = engine.open_account(Profile::default()).await.unwrap();
    while engine.layout().shard_of(bob) != shard {
        bob = engine.open_account(Profile::default()).await.unwrap();
    }
    let deposit = |account, key: String| {
        let engine = engine.clone();
        async move {
            engine
                .deposit(
                    account,
                    IdempotencyKey::parse(&key).unwrap(),
                    cny("1"),
                    DepositMethod::BankCard,
                )
                .await
                .unwrap()
        }
    };
    deposit(alice, "alice-old".into()).await;
    for week in 1..=60 {
        clock.advance_ms(WEEK_MS);
        deposit(bob, format!("bob-{week}")).await;
    }
    deposit(alice, "alice-new".into()).await;

    let (rows, cursor) = engine.history(alice, None, 10, None).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].created_at, Timestamp(2_960 * WEEK_MS));
    assert!(cursor.is_some(), "a short page with older weeks unread");
    let (rows, cursor) = engine.history(alice, cursor, 10, None).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].created_at, Timestamp(2_900 * WEEK_MS));
    assert_eq!(cursor, None);
}

/// One command as `MONITOR` shows it: whether a script ran it, and its words.
struct Monitored {
    by_script: bool,
    words: Vec<Vec<u8>>,
}

/// The words of a `MONITOR` line (`+<time> [<db> <client>] "word" "word" ...`,
/// each word quoted with `\"`, `\\`, `\n`, `\r`, `\t`, `\a`, `\b` and `\xHH`
/// escapes), or `None` for a line of another shape.
fn monitor_line(line: &str) -> Option<Monitored> {
    let rest = line.strip_prefix('+')?;
    let open = rest.find('[')?;
    let close = open + rest[open..].find(']')?;
    let by_script = rest[open + 1..close].ends_with(" lua");
    let mut words = Vec::new();
    let mut bytes = rest[close + 1..].bytes().peekable();
    while let Some(b) = bytes.next() {
        if b != b'"' {
            continue;
        }
        let mut word = Vec::new();
        loop {
            match bytes.next()? {
                b'"' => break,
                b'\\' => match bytes.next()? {
                    b'n' => word.push(b'\n'),
                    b'r' => word.push(b'\r'),
                    b't' => word.push(b'\t'),
                    b'a' => word.push(7),
                    b'b' => word.push(8),
                    b'x' => {
                        let hex = [bytes.next()?, bytes.next()?];
                        word.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
                    }
                    other => word.push(other),
                },
                other => word.push(other),
            }
        }
        words.push(word);
    }
    Some(Monitored { by_script, words })
}

/// Watches `url`'s server with `MONITOR` until it sees `PING <marker>`: the
/// commands seen, in order. Returns once the monitor is registered.
fn monitor(url: &str, marker: &'static str) -> std::thread::JoinHandle<Vec<Monitored>> {
    use std::io::{BufRead, BufReader, Write};
    let addr = url
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    let mut stream = std::net::TcpStream::connect(addr).expect("monitor connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    stream.write_all(b"MONITOR\r\n").expect("MONITOR");
    let mut reader = BufReader::new(stream);
    let mut ok = String::new();
    reader.read_line(&mut ok).expect("MONITOR answered");
    assert_eq!(ok.trim_end(), "+OK");
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        loop {
            let mut line = String::new();
            let read = reader.read_line(&mut line).expect("monitor line");
            assert!(read > 0, "the monitor connection closed");
            let Some(cmd) = monitor_line(line.trim_end()) else {
                continue;
            };
            let end = !cmd.by_script
                && cmd.words.len() == 2
                && cmd.words[0].eq_ignore_ascii_case(b"ping")
                && cmd.words[1] == marker.as_bytes();
            if end {
                return seen;
            }
            seen.push(cmd);
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_history_scripts_touch_only_the_keys_they_declare() {
    // Every command a script runs (MONITOR shows them with their EVALSHA) must
    // name only keys of that call's KEYS: pages bounded and not, with the
    // declared guess right (one call) and wrong (a second call), and the sweep.
    use okpay_engine::codec::ShardId;
    use okpay_engine::store::retention::BUCKET_MS;
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url()).await.expect("connect");
    let shard = ShardId(11);
    let (mine, other) = (AccountId(0x61), AccountId(0x62));
    let put = |account: AccountId, week: u64, n: u64| {
        shard_row(shard, account, week * BUCKET_MS + n, n, week)
    };
    // Another account has a row every other week from 2,000 to 2,098 and
    // every week from 2,100 to 2,240 (191 buckets); mine one in weeks 2,000,
    // 2,100 and 2,240.
    let mut rows: Vec<_> = (0..50).map(|i| put(other, 2_000 + 2 * i, 1)).collect();
    rows.extend((2_100..=2_240).map(|week| put(other, week, 1)));
    rows.extend([2_000, 2_100, 2_240].map(|week| put(mine, week, 2)));
    assert!(store
        .put_history(rows, Vec::new())
        .await
        .expect("put")
        .is_empty());
    let client = redis::Client::open(server.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    // Loaded ahead, so that no call is refused (NOSCRIPT) and sent again.
    for source in [
        include_str!("../src/store/redis/lua/hist_page.lua"),
        include_str!("../src/store/redis/lua/drop_buckets.lua"),
        include_str!("../src/store/redis/lua/rows.lua"),
    ] {
        let _: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(source)
            .query_async(&mut conn)
            .await
            .expect("script load");
    }
    let step = {
        let conn = conn.clone();
        move |name: &'static str| {
            let mut conn = conn.clone();
            async move {
                let _: String = redis::cmd("PING")
                    .arg(name)
                    .query_async(&mut conn)
                    .await
                    .expect("marker");
            }
        }
    };

    let watch = monitor(&server.url(), "end");
    let weeks = |rows: &[HistoryRow]| {
        rows.iter()
            .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
            .collect::<Vec<_>>()
    };
    // Without `before` the guess (the weeks before now) misses these old
    // weeks; from page 1's cursor it holds the 53 busy weeks page 2 reads; page
    // 3 reaches the sparse weeks below it.
    let (page, next) = store
        .history_page(shard, mine, None, None, 10)
        .await
        .expect("page 1");
    assert_eq!(weeks(&page), ["2240"]);
    step("page 2").await;
    let (page, next) = store
        .history_page(shard, mine, None, next.as_deref(), 10)
        .await
        .expect("page 2");
    assert!(page.is_empty());
    step("page 3").await;
    let (page, _) = store
        .history_page(shard, mine, None, next.as_deref(), 10)
        .await
        .expect("page 3");
    assert_eq!(weeks(&page), ["2100"]);
    step("since").await;
    // Unbounded: all 191 buckets, by calls declaring at most 53 sets each.
    let all = store
        .history_since(shard, mine, None, None, 10)
        .await
        .expect("since");
    assert_eq!(weeks(&all), ["2240", "2100", "2000"]);
    step("sweep").await;
    // The sweep: the 25 buckets before week 2,050, 20 at most a call.
    let cutoff = (2_050 * BUCKET_MS) as i64;
    let swept = store
        .drop_history_before(vec![shard], cutoff, 20)
        .await
        .expect("sweep");
    assert_eq!((swept.buckets, swept.rows, swept.more), (20, 21, true));
    let swept = store
        .drop_history_before(vec![shard], cutoff, 20)
        .await
        .expect("sweep");
    assert_eq!((swept.buckets, swept.rows, swept.more), (5, 5, false));
    step("end").await;
    let seen = tokio::task::spawn_blocking(move || watch.join().expect("monitor"))
        .await
        .expect("join");

    let page_script = redis::Script::new(include_str!("../src/store/redis/lua/hist_page.lua"));
    let page_sha = page_script.get_hash().as_bytes();
    let is_call = |cmd: &Monitored| {
        !cmd.by_script
            && (cmd.words[0].eq_ignore_ascii_case(b"evalsha")
                || cmd.words[0].eq_ignore_ascii_case(b"eval"))
    };
    // Each script call's declared keys and the commands it ran. MONITOR lists
    // a script's commands right after its EVALSHA (Redis 7) or right before
    // it: the first of them tells which (every call here runs commands, and
    // none is refused as NOSCRIPT).
    let calls_first = seen
        .iter()
        .find(|c| c.by_script || is_call(c))
        .is_none_or(|c| !c.by_script);
    let mut calls: Vec<(Vec<Vec<u8>>, Vec<&Monitored>)> = Vec::new();
    let mut pending: Vec<&Monitored> = Vec::new();
    let mut in_call = false;
    let (mut page_calls, mut steps) = (0, Vec::new());
    for cmd in &seen {
        if cmd.by_script {
            if calls_first {
                assert!(in_call, "a script's command right after its call");
                calls.last_mut().expect("a call").1.push(cmd);
            } else {
                pending.push(cmd);
            }
            continue;
        }
        assert!(
            pending.is_empty(),
            "a script's commands right before its call"
        );
        in_call = is_call(cmd);
        if in_call {
            page_calls += usize::from(cmd.words[1] == page_sha);
            let count: usize = std::str::from_utf8(&cmd.words[2])
                .expect("numkeys")
                .parse()
                .expect("numkeys");
            calls.push((
                cmd.words[3..3 + count].to_vec(),
                std::mem::take(&mut pending),
            ));
        } else if cmd.words[0].eq_ignore_ascii_case(b"ping") {
            steps.push(std::mem::take(&mut page_calls));
        }
    }
    let (mut bucket_reads, mut unlinks) = (0, 0);
    for (declared, commands) in &calls {
        assert!(!commands.is_empty(), "a script call ran no command");
        for cmd in commands {
            let mut getkeys = redis::cmd("COMMAND");
            getkeys.arg("GETKEYS");
            for word in &cmd.words {
                getkeys.arg(word.as_slice());
            }
            let keys: Vec<Vec<u8>> = getkeys.query_async(&mut conn).await.expect("getkeys");
            for key in &keys {
                let text = String::from_utf8_lossy(key);
                assert!(
                    declared.contains(key),
                    "{} touched the undeclared key {text}",
                    String::from_utf8_lossy(&cmd.words[0])
                );
                if text.starts_with("okpay:{s011}:hist:2") {
                    bucket_reads += 1;
                }
            }
            unlinks += usize::from(cmd.words[0].eq_ignore_ascii_case(b"unlink"));
        }
    }
    // hist_page.lua calls per page: a guess that missed costs a second call,
    // a busy shard's page from a cursor is one (in the page's one round trip).
    assert_eq!(steps[..3], [2, 1, 2], "hist_page.lua calls per page");
    assert!(steps[3] >= 4, "{} calls for 191 buckets", steps[3]);
    // The check saw the scripts at work: the reads of bucket sets and the sweep.
    assert!(bucket_reads > 191, "{bucket_reads} bucket set reads seen");
    assert_eq!(unlinks, 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sweep_script_drops_only_declared_buckets_still_listed_before_the_cutoff() {
    // drop_buckets.lua re-checks what its caller read a round trip earlier:
    // a declared bucket another node dropped (gone from the index) or one at
    // or after the cutoff stays; the others go, set and index entry.
    let server = RedisServer::start();
    let client = redis::Client::open(server.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let index = "okpay:{s001}:hist:buckets";
    for (bucket, listed) in [(10, true), (11, false), (12, true), (20, true)] {
        let set = format!("okpay:{{s001}}:hist:{bucket}");
        let _: i64 = redis::cmd("ZADD")
            .arg(&set)
            .arg(0)
            .arg("a")
            .arg(0)
            .arg("b")
            .query_async(&mut conn)
            .await
            .expect("plant a set");
        if listed {
            let _: i64 = redis::cmd("ZADD")
                .arg(index)
                .arg(bucket)
                .arg(bucket)
                .query_async(&mut conn)
                .await
                .expect("list it");
        }
    }
    let script = redis::Script::new(include_str!("../src/store/redis/lua/drop_buckets.lua"));
    let (dropped, rows, left): (u64, u64, u64) = script
        .key(index)
        .key("okpay:{s001}:hist:10")
        .key("okpay:{s001}:hist:11")
        .key("okpay:{s001}:hist:20")
        .arg(15)
        .arg(10)
        .arg(11)
        .arg(20)
        .invoke_async(&mut conn)
        .await
        .expect("drop");
    assert_eq!((dropped, rows, left), (1, 2, 1));
    let exists = |key: &'static str| {
        let mut conn = conn.clone();
        async move {
            redis::cmd("EXISTS")
                .arg(key)
                .query_async::<i64>(&mut conn)
                .await
                .expect("exists")
        }
    };
    assert_eq!(exists("okpay:{s001}:hist:10").await, 0);
    assert_eq!(exists("okpay:{s001}:hist:11").await, 1);
    assert_eq!(exists("okpay:{s001}:hist:12").await, 1);
    assert_eq!(exists("okpay:{s001}:hist:20").await, 1);
    let listed: Vec<String> = redis::cmd("ZRANGE")
        .arg(index)
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .expect("index");
    assert_eq!(listed, ["12", "20"]);
}
