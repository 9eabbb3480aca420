//! Hot checks answer from what is durable without queueing behind the account's
//! pending writes: a session check and a recipient's existence are answered at
//! once while the account has a write in flight, yet nothing that is not durable
//! yet (an opening in flight) is ever reported. A store that holds appends until
//! released stands in for a slow group commit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use okpay_engine::codec::{ShardId, ShardLayout};
use okpay_engine::domain::command::{DepositMethod, NewSession, Profile};
use okpay_engine::ids::{AccountId, IdempotencyKey};
use okpay_engine::money::{Amount, Currency};
use okpay_engine::store::memory::MemoryStore;
use okpay_engine::store::shard_log::memory::MemoryShardLog;
use okpay_engine::store::shard_log::{ShardAppend, ShardHead, ShardLog, StoredFrame};
use okpay_engine::store::{
    AppendResult, HistoryRow, JournalAppend, Loaded, Snapshot, Store, StoreError, StoreFuture,
};
use okpay_engine::time::Timestamp;
use okpay_engine::{Command, Engine, EngineConfig, Outcome};

/// The memory store, except that its shard log's appends wait while `held`.
struct HeldStore {
    inner: MemoryStore,
    held: Arc<AtomicBool>,
    log: Arc<HeldLog>,
}

impl Default for HeldStore {
    fn default() -> Self {
        let held = Arc::new(AtomicBool::new(false));
        HeldStore {
            inner: MemoryStore::new(),
            held: held.clone(),
            log: Arc::new(HeldLog {
                inner: Arc::new(MemoryShardLog::new()),
                held,
            }),
        }
    }
}

struct HeldLog {
    inner: Arc<MemoryShardLog>,
    held: Arc<AtomicBool>,
}

impl ShardLog for HeldLog {
    fn init_layout(&self, proposed: ShardLayout) -> StoreFuture<'_, ShardLayout> {
        self.inner.init_layout(proposed)
    }
    fn append(&self, batch: Vec<ShardAppend>) -> StoreFuture<'_, Vec<Result<(), StoreError>>> {
        Box::pin(async move {
            // Bounded: a test that forgets to release still ends (in ~20 s).
            for _ in 0..4000 {
                if !self.held.load(Ordering::SeqCst) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            self.inner.append(batch).await
        })
    }
    fn head(&self, shard: ShardId) -> StoreFuture<'_, ShardHead> {
        self.inner.head(shard)
    }
    fn read(&self, shard: ShardId, after: u64, limit: usize) -> StoreFuture<'_, Vec<StoredFrame>> {
        self.inner.read(shard, after, limit)
    }
    fn checkpoint(
        &self,
        shard: ShardId,
        lsn: u64,
        states: Vec<(AccountId, Vec<u8>)>,
    ) -> StoreFuture<'_, ()> {
        self.inner.checkpoint(shard, lsn, states)
    }
    fn load_account(&self, shard: ShardId, account: AccountId) -> StoreFuture<'_, Option<Vec<u8>>> {
        self.inner.load_account(shard, account)
    }
    fn accounts(&self, shard: ShardId) -> StoreFuture<'_, Vec<AccountId>> {
        self.inner.accounts(shard)
    }
    fn backend_name(&self) -> &'static str {
        "held"
    }
}

impl Store for HeldStore {
    fn append(&self, batch: &[JournalAppend]) -> StoreFuture<'_, Vec<AppendResult>> {
        self.inner.append(batch)
    }
    fn put_history(
        &self,
        rows: Vec<(ShardId, AccountId, HistoryRow)>,
        epochs: Vec<(ShardId, u64)>,
    ) -> StoreFuture<'_, Vec<okpay_engine::store::StoreError>> {
        self.inner.put_history(rows, epochs)
    }
    fn shard_log(&self) -> StoreFuture<'_, Arc<dyn ShardLog>> {
        let log: Arc<dyn ShardLog> = self.log.clone();
        Box::pin(async move { Ok(log) })
    }
    fn load(&self, account: AccountId) -> StoreFuture<'_, Loaded> {
        self.inner.load(account)
    }
    fn save_snapshot(&self, account: AccountId, snapshot: Snapshot) -> StoreFuture<'_, ()> {
        self.inner.save_snapshot(account, snapshot)
    }
    fn list_accounts(
        &self,
        after: Option<AccountId>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<AccountId>> {
        self.inner.list_accounts(after, limit)
    }
    fn claim_index(&self, index: &str, key: &str, value: &str) -> StoreFuture<'_, bool> {
        self.inner.claim_index(index, key, value)
    }
    fn get_index(&self, index: &str, key: &str) -> StoreFuture<'_, Option<String>> {
        self.inner.get_index(index, key)
    }
    fn delete_index(&self, index: &str, key: &str) -> StoreFuture<'_, ()> {
        self.inner.delete_index(index, key)
    }
    fn scan_index(
        &self,
        index: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<(String, String)>> {
        self.inner.scan_index(index, after, limit)
    }
    fn history_since(
        &self,
        shard: ShardId,
        account: AccountId,
        cutoff_ms: Option<i64>,
        before: Option<&str>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<HistoryRow>> {
        self.inner
            .history_since(shard, account, cutoff_ms, before, limit)
    }
    fn drop_history_before(
        &self,
        shards: Vec<ShardId>,
        cutoff_ms: i64,
        max_buckets: usize,
    ) -> StoreFuture<'_, okpay_engine::store::retention::HistorySweep> {
        self.inner
            .drop_history_before(shards, cutoff_ms, max_buckets)
    }
    fn backend_name(&self) -> &'static str {
        "held"
    }
}

const SHORT: Duration = Duration::from_millis(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_and_recipient_checks_do_not_wait_for_pending_writes() {
    let store = Arc::new(HeldStore::default());
    let engine = Engine::start(EngineConfig::default(), store.clone())
        .await
        .unwrap();
    let a = engine.open_account(Profile::default()).await.unwrap();
    let token_hash = [7u8; 32];
    let created = engine
        .execute(
            a,
            Command::CreateSession(NewSession {
                token_hash,
                device_id: "device".into(),
                device_name: None,
                country: None,
                expires_at: Timestamp(i64::MAX / 2),
            }),
        )
        .await
        .unwrap();
    let Outcome::Created(session) = created else {
        panic!("a session is created: {created:?}");
    };

    // A write to `a` in flight, held by the store.
    store.held.store(true, Ordering::SeqCst);
    let cny = Currency::new("CNY", 2).unwrap();
    let pending = {
        let engine = engine.clone();
        tokio::spawn(async move {
            engine
                .deposit(
                    a,
                    IdempotencyKey::parse("held-deposit").unwrap(),
                    Amount::parse("1.00", cny).unwrap(),
                    DepositMethod::BankCard,
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;

    // An ordinary read waits for the pending write (what the checks used to do).
    assert!(
        tokio::time::timeout(SHORT, engine.view(a)).await.is_err(),
        "a view waits for the account's pending write"
    );
    let auth = tokio::time::timeout(SHORT, engine.authenticate(a, session.n, token_hash))
        .await
        .expect("the session check answers without waiting");
    assert_eq!(auth.unwrap().n, session.n);
    let exists = tokio::time::timeout(SHORT, engine.account_exists(a))
        .await
        .expect("the recipient check answers without waiting");
    assert_eq!(exists, Ok(true));

    // An account whose opening is still in flight is not reported as existing
    // until the opening is durable.
    let b = AccountId::random();
    let opening = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.open_account_with_id(b, Profile::default()).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        tokio::time::timeout(SHORT, engine.account_exists(b))
            .await
            .is_err(),
        "an opening in flight is not reported"
    );

    store.held.store(false, Ordering::SeqCst);
    assert!(
        engine.authenticate(a, session.n, [8u8; 32]).await.is_err(),
        "a wrong token is refused"
    );
    pending.await.unwrap().expect("the held deposit completes");
    opening.await.unwrap().expect("the held opening completes");
    assert_eq!(engine.account_exists(b).await, Ok(true));
    assert_eq!(
        engine.account_exists(AccountId::random()).await,
        Ok(false),
        "an unknown account does not exist"
    );
}
