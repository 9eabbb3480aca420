//! History rows of open operations held back (see `runtime::executor::rows`):
//! a transfer's debit row waits for its completion so that one version of the
//! row is written, not two; a row open too long is written anyway; a history
//! read sees a held row at once; and a held row lost with the process comes
//! back from the log, exactly once, even when a checkpoint holds the account's
//! state past its record.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use okpay_engine::domain::command::{DepositMethod, Profile, WithdrawalMethod};
use okpay_engine::domain::history::TxRecord;
use okpay_engine::domain::notification::TxStatus;
use okpay_engine::ids::{AccountId, IdempotencyKey, OpKind};
use okpay_engine::money::Amount;
use okpay_engine::runtime::RowsHold;
use okpay_engine::store::memory::MemoryStore;
use okpay_engine::store::Store as _;
use okpay_engine::{Engine, EngineConfig, Outcome, RuntimeConfig};

async fn engine_with(store: Arc<MemoryStore>, runtime: RuntimeConfig) -> Engine {
    Engine::start(
        EngineConfig {
            runtime,
            ..EngineConfig::default()
        },
        store,
    )
    .await
    .unwrap()
}

/// Bounds no test run reaches: only the operation's end lets its row go.
fn hold_forever() -> RowsHold {
    RowsHold {
        batches: u64::MAX,
        max_age: Duration::from_secs(3600),
        max_rows: 1 << 20,
    }
}

fn cny(s: &str) -> Amount {
    Amount::parse(s, okpay_engine::money::Currency::new("CNY", 2).unwrap()).unwrap()
}

fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::parse(s).unwrap()
}

async fn open(engine: &Engine, name: &str) -> AccountId {
    engine
        .open_account(Profile {
            display_name: name.into(),
            ..Profile::default()
        })
        .await
        .unwrap()
}

/// The rows of `account` in the store itself (no wait for the engine's rows).
async fn stored(store: &MemoryStore, engine: &Engine, account: AccountId) -> Vec<TxRecord> {
    store
        .history(engine.layout().shard_of(account), account, None, 1000)
        .await
        .unwrap()
        .iter()
        .map(|r| TxRecord::decode(&r.payload).unwrap())
        .collect()
}

/// Waits (bounded) until the stored rows of `account` satisfy `done`.
async fn until_stored(
    store: &MemoryStore,
    engine: &Engine,
    account: AccountId,
    what: &str,
    done: impl Fn(&[TxRecord]) -> bool,
) -> Vec<TxRecord> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let rows = stored(store, engine, account).await;
        if done(&rows) {
            return rows;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never stored: {what}; rows: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A funded account with a withdrawal processing, and the withdrawal's id.
async fn withdrawal_open(engine: &Engine) -> (AccountId, okpay_engine::ids::OpId) {
    let alice = open(engine, "alice").await;
    engine.set_kyc_tier(alice, 1).await.unwrap();
    engine
        .deposit(alice, key("d"), cny("500"), DepositMethod::BankCard)
        .await
        .unwrap();
    let w = engine
        .withdraw(
            alice,
            key("w"),
            cny("200"),
            WithdrawalMethod::BankCard,
            "6222".into(),
            false,
        )
        .await
        .unwrap();
    let Outcome::Withdrawal(w) = w else {
        panic!("{w:?}")
    };
    (alice, w.id)
}

fn withdrawals(rows: &[TxRecord]) -> Vec<TxStatus> {
    rows.iter()
        .filter(|r| r.kind == OpKind::Withdrawal)
        .map(|r| r.status)
        .collect()
}

/// The debit's row is held while the credit runs on the other executor (where
/// the source's executor goes idle: without holding, its rows went then) and
/// replaced in memory by the completion's: every row is written once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_writes_its_row_once_when_it_completes_within_the_bound() {
    let store = Arc::new(MemoryStore::new());
    let runtime = RuntimeConfig {
        executors: 2,
        rows_hold: hold_forever(),
        ..RuntimeConfig::default()
    };
    let engine = engine_with(store.clone(), runtime).await;
    let executor = |id: AccountId| engine.layout().shard_of(id).0 % 2;
    let alice = open(&engine, "alice").await;
    let mut bob = open(&engine, "bob").await;
    while executor(bob) == executor(alice) {
        bob = open(&engine, "bob").await;
    }
    engine
        .deposit(alice, key("d"), cny("100"), DepositMethod::BankCard)
        .await
        .unwrap();
    const TRANSFERS: usize = 20;
    for i in 0..TRANSFERS {
        let t = engine
            .transfer(alice, key(&format!("t{i}")), bob, cny("1"), None, false)
            .await
            .unwrap();
        assert!(matches!(t, Outcome::Transfer(_)), "{t:?}");
    }
    let rows = until_stored(&store, &engine, alice, "the completed transfers", |rows| {
        rows.iter()
            .filter(|r| r.kind == OpKind::Transfer && r.status == TxStatus::Completed)
            .count()
            == TRANSFERS
    })
    .await;
    assert_eq!(
        rows.len(),
        TRANSFERS + 1,
        "the deposit and each transfer once"
    );
    let (written, rewritten) = store.rows_written();
    assert_eq!(
        rewritten, 0,
        "no row written over an earlier version ({written} rows written)"
    );
    let stats = engine.stats();
    assert!(stats.rows_held.load(Ordering::Relaxed) >= 1);
    assert_eq!(stats.rows_held_written_open.load(Ordering::Relaxed), 0);
    let (statement, _) = engine.history(alice, None, 100, None).await.unwrap();
    assert_eq!(statement, rows, "the engine reads what is stored");
}

/// A withdrawal may stay processing for days: its row is held only within
/// the bounds (here the defaults: 1 s), then written as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_open_past_the_bound_is_written_while_open() {
    let store = Arc::new(MemoryStore::new());
    let engine = engine_with(store.clone(), RuntimeConfig::default()).await;
    let (alice, w) = withdrawal_open(&engine).await;
    // Nobody reads the history: only the bound lets the row go.
    let rows = until_stored(
        &store,
        &engine,
        alice,
        "the processing withdrawal",
        |rows| !withdrawals(rows).is_empty(),
    )
    .await;
    assert_eq!(withdrawals(&rows), [TxStatus::Processing]);
    let stats = engine.stats();
    assert_eq!(stats.rows_held.load(Ordering::Relaxed), 1);
    assert_eq!(stats.rows_held_written_open.load(Ordering::Relaxed), 1);
    // Its final version is written over it, as before holding.
    engine.settle_withdrawal(w).await.unwrap();
    until_stored(&store, &engine, alice, "the settled withdrawal", |rows| {
        withdrawals(rows) == [TxStatus::Completed]
    })
    .await;
    assert_eq!(store.rows_written().1, 1, "the one row written twice");
}

/// A history read sees the rows of the account's acknowledged operations,
/// held ones included (they go with the write the read waits for).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_read_sees_a_held_row_at_once() {
    let store = Arc::new(MemoryStore::new());
    let runtime = RuntimeConfig {
        rows_hold: hold_forever(),
        ..RuntimeConfig::default()
    };
    let engine = engine_with(store.clone(), runtime).await;
    let (alice, _) = withdrawal_open(&engine).await;
    let (statement, _) = engine.history(alice, None, 10, None).await.unwrap();
    assert_eq!(withdrawals(&statement), [TxStatus::Processing]);
    assert_eq!(
        engine
            .stats()
            .rows_held_written_open
            .load(Ordering::Relaxed),
        1,
        "the read let the held row go"
    );
}

/// A held row's frame stays in the log (checkpoints stop right below it) and,
/// once the process is gone, recovery writes the row from it, once, although
/// the checkpoint holds the account's state past the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_row_lost_with_the_process_is_rebuilt_from_the_log() {
    let store = Arc::new(MemoryStore::new());
    let runtime = RuntimeConfig {
        executors: 1,
        shards: 1,
        checkpoint_every: 4,
        idle_after: Duration::from_secs(3600),
        rows_hold: hold_forever(),
        ..RuntimeConfig::default()
    };
    let engine = engine_with(store.clone(), runtime).await;
    let (alice, _) = withdrawal_open(&engine).await;
    let shard = engine.layout().shard_of(alice);
    let log = store.shard_log().await.unwrap();
    // Nothing else runs: the last frame is the withdrawal's.
    let withdrawal_lsn = log.head(shard).await.unwrap().head;
    // Records after it, in the same shard, until a checkpoint reaches as far
    // as it may.
    let bob = open(&engine, "bob").await;
    for i in 0..8 {
        engine
            .deposit(
                bob,
                key(&format!("b{i}")),
                cny("1"),
                DepositMethod::BankCard,
            )
            .await
            .unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let checkpoint = loop {
        let head = log.head(shard).await.unwrap();
        if head.checkpoint + 1 >= withdrawal_lsn {
            break head.checkpoint;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint up to the withdrawal's frame {withdrawal_lsn}: {head:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        checkpoint + 1,
        withdrawal_lsn,
        "the checkpoint stops right below the held row's frame"
    );
    assert!(
        withdrawals(&stored(&store, &engine, alice).await).is_empty(),
        "the withdrawal's row is held, not written"
    );
    assert_eq!(engine.stats().rows_held.load(Ordering::Relaxed), 1);
    // The process is lost: its held row with it.
    drop(engine);
    let engine = engine_with(store.clone(), RuntimeConfig::default()).await;
    let rows = until_stored(&store, &engine, alice, "the rebuilt withdrawal", |rows| {
        !withdrawals(rows).is_empty()
    })
    .await;
    assert_eq!(withdrawals(&rows), [TxStatus::Processing], "once");
    assert_eq!(rows.len(), 2, "the deposit and the withdrawal: {rows:?}");
    let (statement, _) = engine.history(alice, None, 10, None).await.unwrap();
    assert_eq!(statement, rows);
}
