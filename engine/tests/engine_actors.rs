//! The runtime end to end on the in-memory store: loading accounts, the transfer
//! saga, idempotency, idle accounts leaving memory and coming back from their
//! checkpoints, recovery by a fresh engine, bounded inboxes, notifications, and a
//! single load under concurrent first requests.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use okpay_engine::domain::command::{DepositMethod, Profile, WithdrawalMethod};
use okpay_engine::domain::notification::NotificationKind;
use okpay_engine::domain::state::{AccountStatus, TransferStatus};
use okpay_engine::ids::{AccountId, IdempotencyKey};
use okpay_engine::money::Amount;
use okpay_engine::store::memory::MemoryStore;
use okpay_engine::{Command, Engine, EngineConfig, EngineError, Outcome, Rejection, RuntimeConfig};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

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

async fn engine() -> (Engine, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    (
        engine_with(store.clone(), RuntimeConfig::default()).await,
        store,
    )
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

/// Alice with 100.00 CNY from a bank card, and Bob with nothing.
async fn funded_pair(engine: &Engine) -> (AccountId, AccountId) {
    let alice = open(engine, "alice").await;
    let bob = open(engine, "bob").await;
    engine
        .deposit(alice, key("d"), cny("100"), DepositMethod::BankCard)
        .await
        .unwrap();
    (alice, bob)
}

async fn available(engine: &Engine, id: AccountId) -> Decimal {
    engine
        .view(id)
        .await
        .unwrap()
        .balances
        .iter()
        .find(|b| b.currency.code() == "CNY")
        .map_or(Decimal::ZERO, |b| b.available)
}

#[tokio::test]
async fn deposit_transfer_and_balances() {
    let (engine, _) = engine().await;
    let alice = open(&engine, "alice").await;
    let bob = open(&engine, "bob").await;
    let dep = engine
        .deposit(alice, key("d1"), cny("100.00"), DepositMethod::CreditCard)
        .await
        .unwrap();
    let Outcome::Deposit(dep) = dep else {
        panic!("{dep:?}")
    };
    assert_eq!(dep.fee, dec!(2.50));
    assert_eq!(dep.net, dec!(97.50));
    let out = engine
        .transfer(
            alice,
            key("t1"),
            bob,
            cny("40.00"),
            Some("lunch".into()),
            false,
        )
        .await
        .unwrap();
    let Outcome::Transfer(t) = out else {
        panic!("{out:?}")
    };
    assert_eq!(t.status, TransferStatus::Completed);
    assert_eq!(available(&engine, alice).await, dec!(57.50));
    assert_eq!(available(&engine, bob).await, dec!(40.00));
    let ledger = engine.audit().await.unwrap();
    assert!(ledger.balanced(), "{ledger:?}");
}

#[tokio::test]
async fn idempotent_transfer_applies_once_and_conflicts_on_change() {
    let (engine, _) = engine().await;
    let (alice, bob) = funded_pair(&engine).await;
    let calls = (0..8).map(|_| engine.transfer(alice, key("same"), bob, cny("10"), None, false));
    let results = futures::future::join_all(calls).await;
    let ids: Vec<_> = results
        .into_iter()
        .map(|r| match r.unwrap() {
            Outcome::Transfer(t) => t.id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "one transfer for one key"
    );
    assert_eq!(available(&engine, alice).await, dec!(90));
    assert_eq!(available(&engine, bob).await, dec!(10));
    let conflict = engine
        .transfer(alice, key("same"), bob, cny("11"), None, false)
        .await;
    assert_eq!(
        conflict,
        Err(EngineError::Rejected(Rejection::IdempotencyConflict))
    );
}

#[tokio::test]
async fn refused_credit_reverses_the_transfer() {
    let (engine, _) = engine().await;
    let alice = open(&engine, "alice").await;
    engine
        .deposit(alice, key("d"), cny("100"), DepositMethod::BankCard)
        .await
        .unwrap();
    let nobody = AccountId::random();
    let r = engine
        .transfer(alice, key("t"), nobody, cny("30"), None, false)
        .await;
    assert_eq!(r, Err(EngineError::Rejected(Rejection::RecipientNotFound)));
    assert_eq!(available(&engine, alice).await, dec!(100));
    // The replay of the same request reports the same refusal.
    let again = engine
        .transfer(alice, key("t"), nobody, cny("30"), None, false)
        .await;
    assert_eq!(again, r);
    assert!(engine.audit().await.unwrap().balanced());
}

/// The attack: a caller of the engine's command API asks for a saga step
/// directly — a credit nobody debited (minting money), or the reversal of a
/// transfer whose credit landed (paying it twice). Each is refused and moves
/// nothing.
#[tokio::test]
async fn saga_steps_are_refused_from_callers() {
    let (engine, _) = engine().await;
    let (alice, bob) = funded_pair(&engine).await;
    engine
        .transfer(alice, key("t"), bob, cny("30"), None, false)
        .await
        .unwrap();
    // The transfer is alice's second operation (the deposit was her first).
    let transfer = okpay_engine::ids::OpId {
        account: alice,
        n: 2,
    };
    let refused = Err(EngineError::Rejected(Rejection::UnknownOperation));
    let steps = [
        (
            bob,
            Command::Credit {
                transfer: okpay_engine::ids::OpId {
                    account: alice,
                    n: 99,
                },
                from: alice,
                amount: cny("1000"),
                memo: None,
                debit_lsn: u64::MAX,
            },
        ),
        (
            alice,
            Command::ReverseTransfer {
                transfer,
                reason: Rejection::RecipientNotFound,
            },
        ),
        (alice, Command::CompleteTransfer { transfer }),
    ];
    for (account, cmd) in steps {
        assert_eq!(
            engine.execute(account, cmd.clone()).await,
            refused,
            "{cmd:?}"
        );
    }
    assert_eq!(available(&engine, alice).await, dec!(70));
    assert_eq!(available(&engine, bob).await, dec!(30));
    assert!(engine.audit().await.unwrap().balanced());
}

#[tokio::test]
async fn withdrawal_holds_then_settles_or_releases() {
    let (engine, _) = engine().await;
    let alice = open(&engine, "alice").await;
    engine.set_kyc_tier(alice, 1).await.unwrap();
    engine
        .deposit(alice, key("d"), cny("500"), DepositMethod::BankCard)
        .await
        .unwrap();
    let w = engine
        .withdraw(
            alice,
            key("w1"),
            cny("200"),
            WithdrawalMethod::BankCard,
            "6222".into(),
            false,
        )
        .await
        .unwrap();
    let Outcome::Withdrawal(w) = w else { panic!() };
    assert_eq!(w.fee, dec!(1.00));
    assert_eq!(w.payout, dec!(199.00));
    let v = engine.view(alice).await.unwrap();
    assert_eq!(v.balances[0].available, dec!(300));
    assert_eq!(v.balances[0].held, dec!(200));
    engine.settle_withdrawal(w.id).await.unwrap();
    let v = engine.view(alice).await.unwrap();
    assert_eq!(v.balances[0].held, dec!(0));
    let w2 = engine
        .withdraw(
            alice,
            key("w2"),
            cny("100"),
            WithdrawalMethod::ThirdParty,
            "fail-x".into(),
            false,
        )
        .await
        .unwrap();
    let Outcome::Withdrawal(w2) = w2 else {
        panic!()
    };
    engine
        .fail_withdrawal(w2.id, "bank refused".into())
        .await
        .unwrap();
    assert_eq!(available(&engine, alice).await, dec!(300));
    let ledger = engine.audit().await.unwrap();
    assert!(ledger.balanced(), "{ledger:?}");
    let c = ledger.currencies.values().next().unwrap();
    assert_eq!(c.paid_out, dec!(199.00));
    assert_eq!(c.fees, dec!(1.00));
}

#[tokio::test]
async fn idle_accounts_leave_memory_and_come_back_from_their_checkpoints() {
    let store = Arc::new(MemoryStore::new());
    let runtime = RuntimeConfig {
        idle_after: Duration::from_millis(50),
        tick: Duration::from_millis(20),
        checkpoint_every: 3,
        ..RuntimeConfig::default()
    };
    let engine = engine_with(store.clone(), runtime).await;
    let alice = open(&engine, "alice").await;
    let bob = open(&engine, "bob").await;
    for i in 0..10 {
        engine
            .deposit(
                alice,
                key(&format!("d{i}")),
                cny("10"),
                DepositMethod::BankCard,
            )
            .await
            .unwrap();
    }
    engine
        .transfer(alice, key("t"), bob, cny("25"), None, false)
        .await
        .unwrap();
    let before = engine.view(alice).await.unwrap();
    // Wait until both accounts are checkpointed and leave memory by themselves.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while engine.active_actors() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(engine.active_actors(), 0, "idle accounts leave memory");
    assert!(
        engine
            .stats()
            .checkpoints
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0,
        "checkpoints were written"
    );
    let after = engine.view(alice).await.unwrap();
    assert_eq!(before, after, "loaded back from its checkpoint");
    // A fresh engine over the same store sees the same state.
    drop(engine);
    let engine2 = engine_with(store, RuntimeConfig::default()).await;
    assert_eq!(engine2.view(alice).await.unwrap(), before);
    assert_eq!(available(&engine2, bob).await, dec!(25));
}

#[tokio::test]
async fn a_fresh_engine_recovers_from_the_log_alone() {
    // No checkpoint ever: everything comes back by replaying the shards' logs.
    let store = Arc::new(MemoryStore::new());
    let runtime = RuntimeConfig {
        checkpoint_every: u64::MAX,
        idle_after: Duration::from_secs(3600),
        ..RuntimeConfig::default()
    };
    let engine = engine_with(store.clone(), runtime.clone()).await;
    let (alice, bob) = funded_pair(&engine).await;
    engine
        .transfer(alice, key("t"), bob, cny("40"), None, false)
        .await
        .unwrap();
    let (a, b) = (
        engine.state(alice).await.unwrap(),
        engine.state(bob).await.unwrap(),
    );
    drop(engine);
    let engine2 = engine_with(store, runtime).await;
    assert_eq!(engine2.state(alice).await.unwrap(), a);
    assert_eq!(engine2.state(bob).await.unwrap(), b);
    assert_eq!(available(&engine2, bob).await, dec!(40));
    // The replayed idempotency record still answers the same transfer.
    let again = engine2
        .transfer(alice, key("t"), bob, cny("40"), None, false)
        .await
        .unwrap();
    assert!(matches!(again, Outcome::Transfer(_)), "{again:?}");
    assert_eq!(available(&engine2, alice).await, dec!(60));
}

#[tokio::test]
async fn concurrent_first_requests_load_an_account_once() {
    let (engine, _) = engine().await;
    let id = open(&engine, "hot").await;
    assert!(engine.passivate_all(Duration::from_secs(5)).await);
    assert_eq!(engine.active_actors(), 0);
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let engine = engine.clone();
            tokio::spawn(async move {
                engine
                    .deposit(id, key(&format!("k{i}")), cny("1"), DepositMethod::BankCard)
                    .await
                    .unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        engine.active_actors(),
        1,
        "one resident copy of the account"
    );
    assert_eq!(available(&engine, id).await, dec!(64));
}

#[tokio::test]
async fn a_full_mailbox_answers_overloaded() {
    let store = Arc::new(MemoryStore::new());
    let runtime = RuntimeConfig {
        inbox_capacity: 4,
        executors: 1,
        ..RuntimeConfig::default()
    };
    let engine = engine_with(store, runtime).await;
    let id = open(&engine, "busy").await;
    let calls = (0..500)
        .map(|i| engine.deposit(id, key(&format!("k{i}")), cny("1"), DepositMethod::BankCard));
    let results = futures::future::join_all(calls).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let overloaded = results
        .iter()
        .filter(|r| matches!(r, Err(EngineError::Overloaded)))
        .count();
    assert_eq!(ok + overloaded, 500, "only successes and Overloaded");
    assert!(overloaded > 0, "the bound was hit");
    assert_eq!(available(&engine, id).await, Decimal::from(ok as i64));
}

#[tokio::test]
async fn storage_failure_answers_unavailable_and_loses_nothing_acknowledged() {
    let (engine, store) = engine().await;
    let id = open(&engine, "a").await;
    engine
        .deposit(id, key("ok"), cny("5"), DepositMethod::BankCard)
        .await
        .unwrap();
    store.set_failing(true);
    let r = engine
        .deposit(id, key("lost"), cny("7"), DepositMethod::BankCard)
        .await;
    assert!(matches!(r, Err(EngineError::Unavailable(_))), "{r:?}");
    store.set_failing(false);
    assert_eq!(available(&engine, id).await, dec!(5));
    // The retry with the same key now succeeds exactly once.
    engine
        .deposit(id, key("lost"), cny("7"), DepositMethod::BankCard)
        .await
        .unwrap();
    engine
        .deposit(id, key("lost"), cny("7"), DepositMethod::BankCard)
        .await
        .unwrap();
    assert_eq!(available(&engine, id).await, dec!(12));
}

/// The log applies a write and its answer is lost, so the engine cannot know
/// whether it landed: the caller gets `Unavailable`, the shard is recovered
/// from the log (where the deposit is), and the retry with the same key
/// answers the deposit once — applied exactly once, never twice or lost.
#[tokio::test]
async fn a_write_whose_answer_is_lost_is_applied_once() {
    let (engine, store) = engine().await;
    let a = open(&engine, "a").await;
    store.appends().lose_next(1);
    let r = engine
        .deposit(a, key("1"), cny("5"), DepositMethod::BankCard)
        .await;
    assert!(matches!(r, Err(EngineError::Unavailable(_))), "{r:?}");
    for _ in 0..2 {
        engine
            .deposit(a, key("1"), cny("5"), DepositMethod::BankCard)
            .await
            .unwrap();
    }
    assert_eq!(available(&engine, a).await, dec!(5));
    assert!(engine.audit().await.unwrap().balanced());
}

#[tokio::test]
async fn subscribers_get_durable_notifications_and_can_resume() {
    let (engine, _) = engine().await;
    let alice = open(&engine, "alice").await;
    let bob = open(&engine, "bob").await;
    let mut sub = engine.subscribe(bob, None).await.unwrap();
    assert!(sub.backlog.is_empty());
    engine
        .deposit(alice, key("d"), cny("50"), DepositMethod::BankCard)
        .await
        .unwrap();
    engine
        .transfer(alice, key("t"), bob, cny("20"), None, false)
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(2), sub.receiver.recv())
        .await
        .unwrap()
        .unwrap();
    let second = tokio::time::timeout(Duration::from_secs(2), sub.receiver.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        first.kind,
        NotificationKind::BalanceUpdated { .. }
    ));
    assert!(matches!(
        second.kind,
        NotificationKind::TransactionUpdated { .. }
    ));
    assert_eq!(second.seq, first.seq + 1);
    // Resume after the first: the second is replayed from the retained backlog.
    let resumed = engine.subscribe(bob, Some(first.seq)).await.unwrap();
    assert_eq!(resumed.backlog.len(), 1);
    assert_eq!(resumed.backlog[0].seq, second.seq);
}

#[tokio::test]
async fn history_lists_each_operation_once_newest_first() {
    use okpay_engine::domain::notification::{Direction, TxStatus};
    use okpay_engine::ids::OpKind;
    let (engine, _) = engine().await;
    let alice = open(&engine, "alice").await;
    let bob = open(&engine, "bob").await;
    engine
        .deposit(alice, key("d"), cny("100"), DepositMethod::CreditCard)
        .await
        .unwrap();
    for i in 0..3 {
        engine
            .transfer(
                alice,
                key(&format!("t{i}")),
                bob,
                cny("10"),
                Some(format!("m{i}")),
                false,
            )
            .await
            .unwrap();
    }
    // A replay does not add a row.
    engine
        .transfer(alice, key("t0"), bob, cny("10"), Some("m0".into()), false)
        .await
        .unwrap();
    let (rows, next) = engine.history(alice, None, 50, None).await.unwrap();
    assert_eq!(next, None);
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert_eq!(rows[3].kind, OpKind::Deposit);
    assert_eq!(rows[3].fee, dec!(2.50));
    assert!(rows[..3].iter().all(|r| r.kind == OpKind::Transfer
        && r.status == TxStatus::Completed
        && r.direction == Direction::Out));
    assert_eq!(rows[0].memo.as_deref(), Some("m2"), "newest first");
    // Paging two by two walks the same rows.
    let (page1, cursor) = engine.history(alice, None, 2, None).await.unwrap();
    let (page2, _) = engine.history(alice, cursor, 2, None).await.unwrap();
    assert_eq!([page1, page2].concat(), rows);
    // Filtering by type.
    let (deposits, _) = engine
        .history(alice, None, 50, Some(OpKind::Deposit))
        .await
        .unwrap();
    assert_eq!(deposits.len(), 1);
    // The recipient sees the incoming transfers with the same ids.
    let (incoming, _) = engine.history(bob, None, 50, None).await.unwrap();
    assert_eq!(incoming.len(), 3);
    assert!(incoming
        .iter()
        .all(|r| r.direction == Direction::In && r.counterparty == Some(alice)));
    let mut out_ids: Vec<_> = rows[..3].iter().map(|r| r.id).collect();
    let mut in_ids: Vec<_> = incoming.iter().map(|r| r.id).collect();
    out_ids.sort();
    in_ids.sort();
    assert_eq!(out_ids, in_ids);
}

/// Accounts written by the actor runtime (one journal per account) are moved
/// into the shard logs on the first start, once, and keep their money.
#[tokio::test]
async fn accounts_of_the_old_per_account_journals_are_moved_into_the_shard_logs() {
    use okpay_engine::domain::event::{encode_events, Event, EventBody, RequestRef};
    use okpay_engine::store::{JournalAppend, Store};
    use okpay_engine::time::Timestamp;

    let store = Arc::new(MemoryStore::new());
    let old = AccountId::random();
    let at = Timestamp(1_700_000_000_000);
    let events = vec![
        Event {
            at,
            body: EventBody::Opened {
                profile: Profile {
                    display_name: "old".into(),
                    ..Profile::default()
                },
                password_hash: String::new(),
            },
        },
        Event {
            at,
            body: EventBody::Deposited {
                op: 1,
                request: RequestRef {
                    key: key("old-deposit"),
                    fingerprint: 1,
                },
                amount: cny("12.34"),
                fee: Decimal::ZERO,
                method: DepositMethod::BankCard,
                card: String::new(),
            },
        },
    ];
    let written = store
        .append(&[JournalAppend {
            account: old,
            seq: 1,
            payload: encode_events(&events),
            history: Vec::new(),
        }])
        .await
        .unwrap();
    assert_eq!(written, vec![Ok(())]);

    let engine = engine_with(store.clone(), RuntimeConfig::default()).await;
    assert_eq!(available(&engine, old).await, dec!(12.34));
    engine
        .deposit(old, key("new-deposit"), cny("1"), DepositMethod::BankCard)
        .await
        .unwrap();
    drop(engine);
    // The second start does not move the old journal again over newer state.
    let engine = engine_with(store, RuntimeConfig::default()).await;
    assert_eq!(available(&engine, old).await, dec!(13.34));
    assert!(engine.audit().await.unwrap().balanced());
}

/// Rows follow the log: when a write fails, what was decided on the lost state
/// and still waits in the open batch is taken back with its history rows, so a
/// statement never shows an operation that was not acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_leaves_no_history_row_of_what_it_took_back() {
    use okpay_engine::ids::OpKind;
    let (engine, store) = engine().await;
    let id = open(&engine, "a").await;
    // Deposits keep arriving while the store fails, so some are decided into the
    // open batch while a failing write is in flight. A loaded machine may let
    // the failing windows pass without a write in them: then again, bounded.
    let (mut acked, mut sent) = (0, 0);
    for attempt in 0..5 {
        let mut tasks = Vec::new();
        for i in 0..600u32 {
            match i {
                150 | 350 => store.set_failing(true),
                250 | 450 => store.set_failing(false),
                _ => {}
            }
            let engine = engine.clone();
            tasks.push(tokio::spawn(async move {
                engine
                    .deposit(
                        id,
                        key(&format!("d{attempt}-{i}")),
                        cny("1"),
                        DepositMethod::BankCard,
                    )
                    .await
                    .is_ok()
            }));
            if i % 8 == 0 {
                tokio::time::sleep(Duration::from_micros(300)).await;
            }
        }
        store.set_failing(false);
        sent += tasks.len();
        for t in tasks {
            acked += usize::from(t.await.unwrap());
        }
        if acked < sent {
            break;
        }
    }
    assert!(
        acked > 0 && acked < sent,
        "some deposits failed: {acked} of {sent}"
    );
    // The shard recovers; then the statement holds exactly the acknowledged ones.
    let mut view = engine.view(id).await;
    for _ in 0..100 {
        if view.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        view = engine.view(id).await;
    }
    view.unwrap();
    let mut rows = Vec::new();
    let mut cursor = None;
    loop {
        let (page, next) = engine
            .history(id, cursor, 200, Some(OpKind::Deposit))
            .await
            .unwrap();
        rows.extend(page);
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(available(&engine, id).await, Decimal::from(acked));
    assert_eq!(rows.len(), acked, "one row per acknowledged deposit");
}

/// Rows wait a few batches before they are written, so a transfer's debit row
/// (status processing) is usually replaced in memory by its completion's row:
/// fewer rows reach the store, the statement still lists every transfer once as
/// completed, and with nobody reading, the rows still reach the store once the
/// log goes idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debit_rows_replaced_by_their_completion_and_written_when_idle() {
    use okpay_engine::store::Store as _;
    let (engine, store) = engine().await;
    let payers: Vec<AccountId> = futures::future::join_all((0..20).map(|i| {
        let engine = engine.clone();
        async move { open(&engine, &format!("payer{i}")).await }
    }))
    .await;
    let payee = open(&engine, "payee").await;
    for (i, p) in payers.iter().enumerate() {
        engine
            .deposit(
                *p,
                key(&format!("f{i}")),
                cny("100"),
                DepositMethod::BankCard,
            )
            .await
            .unwrap();
    }
    // A debit's row waits a few batches for its completion's; on a loaded
    // machine the log may go idle between the two (then rows go at once), so a
    // burst is sent again, a bounded number of times, until one was replaced.
    let mut rounds = 0;
    while rounds < 5 {
        let transfers = futures::future::join_all(payers.iter().flat_map(|&p| {
            let engine = engine.clone();
            (0..10).map(move |j| {
                let engine = engine.clone();
                async move {
                    engine
                        .transfer(
                            p,
                            key(&format!("t{rounds}-{j}")),
                            payee,
                            cny("1"),
                            None,
                            false,
                        )
                        .await
                        .unwrap()
                }
            })
        }))
        .await;
        assert_eq!(transfers.len(), 200);
        rounds += 1;
        let superseded = engine
            .stats()
            .rows_superseded
            .load(std::sync::atomic::Ordering::Relaxed);
        if superseded > 0 {
            break;
        }
    }
    assert!(
        engine
            .stats()
            .rows_superseded
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0,
        "no debit row was replaced by its completion in {rounds} bursts"
    );
    let sent = 200 * rounds;
    // Nobody has read a statement: once the log is idle the rows are in the
    // store, read here directly, without the engine's wait for them.
    let layout = engine.layout();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let stored = |rows: &[okpay_engine::store::HistoryRow]| {
        rows.iter()
            .filter_map(|r| okpay_engine::domain::history::TxRecord::decode(&r.payload).ok())
            .filter(|r| r.kind == okpay_engine::ids::OpKind::Transfer)
            .map(|r| (r.public_id(), r.status))
            .collect::<Vec<_>>()
    };
    loop {
        let rows = store
            .history(layout.shard_of(payee), payee, None, 1100)
            .await
            .unwrap();
        if stored(&rows).len() == sent {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rows never written without a reader: {} of {sent}",
            stored(&rows).len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Each payer's statement: its 10 transfers a burst, once each, completed.
    for p in &payers {
        let (rows, _) = engine.history(*p, None, 100, None).await.unwrap();
        let mut ids: Vec<String> = rows
            .iter()
            .filter(|r| r.kind == okpay_engine::ids::OpKind::Transfer)
            .map(|r| {
                assert_eq!(
                    r.status,
                    okpay_engine::domain::notification::TxStatus::Completed,
                    "{r:?}"
                );
                r.public_id()
            })
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 10 * rounds, "{rows:?}");
    }
}

/// An engine on one executor over a memory store, early credits on or off,
/// and [`funded_pair`]'s Alice and Bob.
async fn one_executor_pair(
    early_credits: bool,
) -> (Engine, Arc<MemoryStore>, AccountId, AccountId) {
    let store = Arc::new(MemoryStore::new());
    let runtime = RuntimeConfig {
        executors: 1,
        early_credits,
        ..RuntimeConfig::default()
    };
    let engine = engine_with(store.clone(), runtime).await;
    let (alice, bob) = funded_pair(&engine).await;
    (engine, store, alice, bob)
}

/// Once a transfer's writes are done: its appends and the records written
/// since `records`, after checking the balances and that the audit balances
/// with nothing in flight.
async fn settled(
    engine: &Engine,
    store: &MemoryStore,
    records: u64,
    balances: [(AccountId, Decimal); 2],
) -> (usize, u64) {
    tokio::time::sleep(Duration::from_millis(200)).await;
    let written = engine.stats().records.load(Ordering::Relaxed) - records;
    for (id, want) in balances {
        assert_eq!(available(engine, id).await, want);
    }
    let ledger = engine.audit().await.unwrap();
    assert!(ledger.balanced(), "{ledger:?}");
    let c = ledger.currencies.values().next().unwrap();
    assert_eq!(c.in_flight, dec!(0), "{ledger:?}");
    (store.appends().calls().len(), written)
}

/// A transfer between two shards of one executor: with early credits (the
/// memory log lands each append whole) the credit is decided into its debit's
/// own append, and the debit and its completion are one record: one append and
/// two records in all, nothing left in flight; without, three appends (debit,
/// then credit, then completion) and three records. Either way the money moves
/// once and the audit balances.
#[tokio::test]
async fn a_credit_rides_in_its_debits_batch_on_a_log_that_lands_whole() {
    let mut appends = Vec::new();
    for early_credits in [true, false] {
        let (engine, store, alice, bob) = one_executor_pair(early_credits).await;
        store.appends().record_calls();
        let records = engine.stats().records.load(Ordering::Relaxed);
        engine
            .transfer(alice, key("t"), bob, cny("40"), None, false)
            .await
            .unwrap();
        // Without early credits the completion is written after the answer.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.appends().calls().len() < if early_credits { 1 } else { 3 }
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        appends.push(
            settled(
                &engine,
                &store,
                records,
                [(alice, dec!(60)), (bob, dec!(40))],
            )
            .await,
        );
    }
    assert_eq!(
        appends,
        [(1, 2), (3, 3)],
        "(appends, records) per transfer, early credits on / off"
    );
}

/// A transfer the destination refuses (here: a closed account) is reversed at
/// the source and the client told why, its money back, nothing in flight. With
/// early credits the refusal is decided in the debit's own append, and the
/// debit and its reversal are one record: one append, two records (the
/// destination's refusal, the source's); without, three of each.
#[tokio::test]
async fn a_refused_credit_reverses_its_debit_in_the_same_record() {
    let mut appends = Vec::new();
    for early_credits in [true, false] {
        let (engine, store, alice, bob) = one_executor_pair(early_credits).await;
        engine
            .set_status(bob, AccountStatus::Closed, "test".into())
            .await
            .unwrap();
        store.appends().record_calls();
        let records = engine.stats().records.load(Ordering::Relaxed);
        let refused = engine
            .transfer(alice, key("t"), bob, cny("40"), None, false)
            .await;
        assert!(
            matches!(
                refused,
                Err(EngineError::Rejected(Rejection::RecipientUnavailable))
            ),
            "{refused:?}"
        );
        // The same key answers the same refusal.
        let again = engine
            .transfer(alice, key("t"), bob, cny("40"), None, false)
            .await;
        assert!(
            matches!(
                again,
                Err(EngineError::Rejected(Rejection::RecipientUnavailable))
            ),
            "{again:?}"
        );
        appends.push(
            settled(
                &engine,
                &store,
                records,
                [(alice, dec!(100)), (bob, dec!(0))],
            )
            .await,
        );
    }
    assert_eq!(
        appends,
        [(1, 2), (3, 3)],
        "(appends, records) per refused transfer, early credits on / off"
    );
}

/// A failed append takes back a credit decided with its debit: neither lands,
/// the client is told to retry, and the retry moves the money once.
#[tokio::test]
async fn a_failed_append_takes_back_a_credit_decided_with_its_debit() {
    let store = Arc::new(MemoryStore::new());
    let runtime = RuntimeConfig {
        executors: 1,
        ..RuntimeConfig::default()
    };
    let engine = engine_with(store.clone(), runtime).await;
    let (alice, bob) = funded_pair(&engine).await;
    store.set_failing(true);
    let failed = engine
        .transfer(alice, key("t"), bob, cny("40"), None, false)
        .await;
    assert!(
        matches!(failed, Err(EngineError::Unavailable(_))),
        "{failed:?}"
    );
    store.set_failing(false);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let retried = loop {
        match engine
            .transfer(alice, key("t"), bob, cny("40"), None, false)
            .await
        {
            Err(EngineError::Unavailable(_)) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => break other,
        }
    };
    assert!(retried.is_ok(), "{retried:?}");
    assert_eq!(available(&engine, alice).await, dec!(60));
    assert_eq!(available(&engine, bob).await, dec!(40));
    let ledger = engine.audit().await.unwrap();
    assert!(ledger.balanced(), "{ledger:?}");
}

/// A rolling upgrade across the events formats: a node pinned to format 1
/// writes kind-1 records, the next start (format 2, the default) replays them
/// and writes kind-3 records after them into the same logs, and a start after
/// that replays the mixed log to the same balances, idempotency and history.
#[tokio::test]
async fn a_log_of_both_events_formats_replays() {
    use okpay_engine::codec::events::EventsFormat;
    use okpay_engine::codec::{BatchFrame, RecordKind, ShardId, DEFAULT_SHARDS};
    use okpay_engine::store::Store;

    // No checkpoint in between: every start replays the whole log.
    let runtime = |events_format| RuntimeConfig {
        events_format,
        checkpoint_every: u64::MAX,
        ..RuntimeConfig::default()
    };
    let store = Arc::new(MemoryStore::new());
    let engine = engine_with(store.clone(), runtime(EventsFormat::V1)).await;
    let (alice, bob) = funded_pair(&engine).await;
    let first = engine
        .transfer(alice, key("t1"), bob, cny("30"), Some("old".into()), false)
        .await
        .unwrap();
    drop(engine);

    let engine = engine_with(store.clone(), runtime(EventsFormat::V2)).await;
    assert_eq!(available(&engine, alice).await, dec!(70.00));
    assert_eq!(available(&engine, bob).await, dec!(30.00));
    engine
        .transfer(
            bob,
            key("t2"),
            alice,
            cny("12.50"),
            Some("new".into()),
            false,
        )
        .await
        .unwrap();
    drop(engine);

    // Both kinds are in the logs, and each decodes.
    let log = store.shard_log().await.unwrap();
    let mut kinds = std::collections::BTreeSet::new();
    for shard in 0..DEFAULT_SHARDS {
        for stored in log.read(ShardId(shard), 0, usize::MAX).await.unwrap() {
            for record in BatchFrame::decode(&stored.frame).unwrap().records {
                let events =
                    okpay_engine::codec::events::decode_record(record.kind, &record.payload);
                assert!(events.unwrap().is_some_and(|e| !e.is_empty()));
                kinds.insert(record.kind.tag());
            }
        }
    }
    assert_eq!(
        kinds,
        [RecordKind::Events.tag(), RecordKind::EventsV2.tag()].into()
    );

    let engine = engine_with(store, RuntimeConfig::default()).await;
    assert_eq!(available(&engine, alice).await, dec!(82.50));
    assert_eq!(available(&engine, bob).await, dec!(17.50));
    // The transfer written in format 1 is still found by its key.
    let again = engine
        .transfer(alice, key("t1"), bob, cny("30"), Some("old".into()), false)
        .await
        .unwrap();
    assert_eq!(again, first);
    assert!(engine.audit().await.unwrap().balanced());
}

/// The frame compression tags and checkpoint entry versions the store holds for
/// `accounts` now: what a node pinned to LZ4 and one on zstd wrote.
async fn compressions_stored(
    store: &MemoryStore,
    accounts: &[AccountId],
) -> (
    std::collections::BTreeSet<u8>,
    std::collections::BTreeSet<u8>,
) {
    use okpay_engine::codec::frame::HEADER_LEN;
    use okpay_engine::codec::{shard_of, ShardId, DEFAULT_SHARDS};
    use okpay_engine::store::Store;
    let log = store.shard_log().await.unwrap();
    let mut frames = std::collections::BTreeSet::new();
    for shard in 0..DEFAULT_SHARDS {
        for stored in log.read(ShardId(shard), 0, usize::MAX).await.unwrap() {
            frames.insert(stored.frame[HEADER_LEN]);
        }
    }
    let mut entries = std::collections::BTreeSet::new();
    for &a in accounts {
        if let Some(bytes) = log
            .load_account(shard_of(a, DEFAULT_SHARDS), a)
            .await
            .unwrap()
        {
            entries.insert(bytes[0]);
        }
    }
    (frames, entries)
}

/// A transfer with a memo that repeats, so its frame is worth compressing.
async fn send(engine: &Engine, from: AccountId, k: &str, to: AccountId, amount: &str) {
    let memo = Some("rent for the flat, ".repeat(6));
    let t = engine.transfer(from, key(k), to, cny(amount), memo, false);
    t.await.unwrap_or_else(|e| panic!("transfer {k}: {e:?}"));
}

#[tokio::test]
async fn a_log_and_checkpoints_of_both_compressions_replay() {
    use okpay_engine::codec::Compression;
    // `every`: records between checkpoints (`u64::MAX`: none, the log stays).
    let runtime = |compression, every| RuntimeConfig {
        compression,
        checkpoint_every: every,
        ..RuntimeConfig::default()
    };
    // Waits until `accounts` have checkpoint entries of exactly `versions`.
    let entries = |store: Arc<MemoryStore>, accounts: Vec<AccountId>, versions: Vec<u8>| async move {
        let mut seen = Default::default();
        for _ in 0..400 {
            seen = compressions_stored(&store, &accounts).await.1;
            if seen == versions.iter().copied().collect() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(seen, versions.into_iter().collect(), "checkpoint versions");
    };
    let store = Arc::new(MemoryStore::new());

    // A node pinned to LZ4 writes LZ4 frames (tag 1); then one on zstd (tag 2).
    let engine = engine_with(store.clone(), runtime(Compression::Lz4, u64::MAX)).await;
    let (alice, bob) = funded_pair(&engine).await;
    for i in 0..4 {
        send(&engine, alice, &format!("a{i}"), bob, "1").await;
    }
    // (Frames too small to shrink, the opens', are stored raw: tag 0.)
    let frames = compressions_stored(&store, &[]).await.0;
    assert!(frames.contains(&1) && !frames.contains(&2), "{frames:?}");
    drop(engine);
    let engine = engine_with(store.clone(), runtime(Compression::Zstd, u64::MAX)).await;
    for i in 0..4 {
        send(&engine, bob, &format!("b{i}"), alice, "0.50").await;
    }
    let frames = compressions_stored(&store, &[]).await.0;
    assert!(frames.contains(&1) && frames.contains(&2), "{frames:?}");
    drop(engine);

    // Checkpoints: both accounts by the LZ4 node (entry version 2), then alice
    // alone by a zstd node (version 3), so the store holds one of each.
    let engine = engine_with(store.clone(), runtime(Compression::Lz4, 4)).await;
    assert_eq!(available(&engine, alice).await, dec!(98.00));
    assert_eq!(available(&engine, bob).await, dec!(2.00));
    send(&engine, alice, "c", bob, "1").await;
    entries(store.clone(), vec![alice, bob], vec![2]).await;
    drop(engine);
    let engine = engine_with(store.clone(), runtime(Compression::Zstd, 4)).await;
    let carol = open(&engine, "carol").await;
    send(&engine, alice, "to-carol", carol, "1").await;
    entries(store.clone(), vec![alice], vec![3]).await;
    entries(store.clone(), vec![bob], vec![2]).await;
    drop(engine);

    // A node on the default reads all of it back the same.
    let engine = engine_with(store, RuntimeConfig::default()).await;
    assert_eq!(available(&engine, alice).await, dec!(96.00));
    assert_eq!(available(&engine, bob).await, dec!(3.00));
    assert_eq!(available(&engine, carol).await, dec!(1.00));
    // A transfer written in an LZ4 frame is still found by its key.
    send(&engine, alice, "a3", bob, "1").await;
    assert_eq!(
        available(&engine, alice).await,
        dec!(96.00),
        "replayed, not applied"
    );
}
