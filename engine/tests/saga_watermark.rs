//! The saga's dedupe by watermark, end to end on the in-memory store: a
//! transfer whose credit is durable at the destination while its source never
//! heard back stays deduplicated however long it stays in flight (here a year,
//! far past the seven days credits were once remembered for), and once its
//! source has settled it the destination forgets it (in memory at once, in the
//! store at the account's next checkpoint) — so what destinations remember
//! stays bounded without any age rule.
//!
//! The stored situation is what a crash between the credit and the completion
//! leaves behind, written with the engine's own codec and decisions: a frame in
//! the source shard debiting the transfer, a frame in the destination shard
//! crediting it (with the debit's position). A fresh engine, a year later,
//! recovers both shards and drives the transfer on.

use std::sync::Arc;
use std::time::Duration;

use okpay_engine::codec::{BatchFrame, LogRecord, RecordKind, ShardLayout};
use okpay_engine::domain::command::{DepositMethod, Profile};
use okpay_engine::domain::event::encode_events;
use okpay_engine::domain::protocol::handle;
use okpay_engine::domain::state::TransferStatus;
use okpay_engine::domain::AccountState;
use okpay_engine::ids::{AccountId, IdempotencyKey, OpId};
use okpay_engine::money::{Amount, Currency};
use okpay_engine::policy::Policy;
use okpay_engine::store::memory::MemoryStore;
use okpay_engine::store::shard_log::ShardAppend;
use okpay_engine::store::Store;
use okpay_engine::time::{ManualClock, Timestamp};
use okpay_engine::{Command, Engine, EngineConfig, RuntimeConfig};
use rust_decimal_macros::dec;

const DAY_MS: i64 = 86_400_000;

fn cny(s: &str) -> Amount {
    Amount::parse(s, Currency::new("CNY", 2).unwrap()).unwrap()
}

/// Runs `cmd` on `state` as the engine would and returns its record's payload.
fn record(state: &mut AccountState, cmd: Command, now: Timestamp) -> Vec<u8> {
    let decision = handle(&Policy::default(), state, &cmd, now);
    assert!(!decision.events.is_empty(), "{cmd:?}: {:?}", decision.reply);
    encode_events(&decision.events)
}

fn frame(layout: ShardLayout, lsn: u64, account: AccountId, payloads: Vec<Vec<u8>>) -> ShardAppend {
    let shard = layout.shard_of(account);
    let records = payloads
        .into_iter()
        .enumerate()
        .map(|(i, payload)| LogRecord {
            kind: RecordKind::Events,
            account,
            seq: i as u64 + 1,
            payload,
        })
        .collect();
    let frame = BatchFrame {
        shard,
        lsn,
        records,
    }
    .encode()
    .unwrap();
    ShardAppend {
        shard,
        lsn,
        frame,
        epoch: None,
    }
}

/// Two accounts on different shards.
fn two_accounts(layout: ShardLayout) -> (AccountId, AccountId) {
    let alice = AccountId(0x0a11_ce00);
    let bob = (1u64..)
        .map(|i| AccountId(0x0b0b_0000 + i))
        .find(|b| layout.shard_of(*b) != layout.shard_of(alice))
        .unwrap();
    (alice, bob)
}

/// Stores what a crash after the credit and before the completion leaves:
/// returns the two accounts and the transfer.
async fn crashed_between_credit_and_completion(
    store: &MemoryStore,
    at: Timestamp,
) -> (AccountId, AccountId, OpId) {
    let log = store.shard_log().await.unwrap();
    let layout = log.init_layout(ShardLayout::default()).await.unwrap();
    let (alice_id, bob_id) = two_accounts(layout);
    let open = |name: &str| Command::Open {
        profile: Profile {
            display_name: name.into(),
            ..Profile::default()
        },
        password_hash: String::new(),
    };
    let mut alice = AccountState::new(alice_id);
    let mut bob = AccountState::new(bob_id);
    let source = vec![
        record(&mut alice, open("alice"), at),
        record(
            &mut alice,
            Command::Deposit {
                key: IdempotencyKey::parse("d").unwrap(),
                amount: cny("100"),
                method: DepositMethod::BankCard,
                card: String::new(),
            },
            at,
        ),
        record(
            &mut alice,
            Command::Transfer {
                key: IdempotencyKey::parse("t").unwrap(),
                to: bob_id,
                amount: cny("40"),
                memo: None,
                step_up_verified: false,
            },
            at,
        ),
    ];
    let transfer = OpId {
        account: alice_id,
        n: alice.next_op - 1,
    };
    // The source's frame 1 debited it; the destination credited it with that.
    let destination = vec![
        record(&mut bob, open("bob"), at),
        record(
            &mut bob,
            Command::Credit {
                transfer,
                from: alice_id,
                amount: cny("40"),
                memo: None,
                debit_lsn: 1,
            },
            at,
        ),
    ];
    for r in log
        .append(vec![
            frame(layout, 1, alice_id, source),
            frame(layout, 1, bob_id, destination),
        ])
        .await
        .unwrap()
    {
        r.unwrap();
    }
    (alice_id, bob_id, transfer)
}

async fn start(store: Arc<MemoryStore>, clock: &ManualClock) -> Engine {
    Engine::start(
        EngineConfig {
            clock: Arc::new(clock.clone()),
            runtime: RuntimeConfig {
                // Idle accounts stay: the test reads what they remember.
                idle_after: Duration::from_secs(3600),
                ..RuntimeConfig::default()
            },
            ..EngineConfig::default()
        },
        store,
    )
    .await
    .unwrap()
}

async fn available(engine: &Engine, id: AccountId) -> rust_decimal::Decimal {
    engine
        .read(id, |s, _, _| s.available(Currency::new("CNY", 2).unwrap()))
        .await
        .unwrap()
}

async fn remembers(engine: &Engine, id: AccountId, transfer: OpId) -> bool {
    engine
        .read(id, move |s, _, _| s.credited.contains_key(&transfer))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_in_flight_for_a_year_is_credited_once_then_forgotten() {
    let start_at = Timestamp(1_764_000_000_000);
    let store = Arc::new(MemoryStore::new());
    let (alice, bob, transfer) = crashed_between_credit_and_completion(&store, start_at).await;

    // A year later the node comes back: the source re-drives the transfer.
    let clock = ManualClock::new(Timestamp(start_at.0 + 365 * DAY_MS));
    let engine = start(store.clone(), &clock).await;
    assert_eq!(engine.recover_in_flight().await.unwrap(), 1);
    let mut status = TransferStatus::InFlight;
    for _ in 0..200 {
        status = engine
            .read(alice, move |s, _, _| match s.ops.get(&transfer.n) {
                Some(okpay_engine::domain::state::OpRecord::Transfer { status, .. }) => *status,
                other => panic!("{other:?}"),
            })
            .await
            .unwrap();
        if status != TransferStatus::InFlight {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, TransferStatus::Completed);
    // Credited once: the destination still knew the transfer a year on.
    assert_eq!(available(&engine, bob).await, dec!(40));
    assert_eq!(available(&engine, alice).await, dec!(60));
    let ledger = engine.audit().await.unwrap();
    assert!(ledger.balanced(), "{ledger:?}");

    // Settled at the source once the completion's frame is durable (which
    // lifts the source shard's watermark past the debit): then forgotten by the
    // destination in memory, and in the store when its account is next
    // checkpointed (here after a deposit changes it).
    assert!(remembers(&engine, bob, transfer).await);
    let mut forgotten = false;
    for i in 0..100 {
        engine
            .deposit(
                bob,
                IdempotencyKey::parse(&format!("change-{i}")).unwrap(),
                cny("1"),
                DepositMethod::BankCard,
            )
            .await
            .unwrap();
        assert!(engine.passivate_all(Duration::from_secs(5)).await);
        if !remembers(&engine, bob, transfer).await {
            forgotten = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(forgotten, "the destination never forgot a settled transfer");
    // Written: one more change and checkpoint, after the forgetting.
    engine
        .deposit(
            bob,
            IdempotencyKey::parse("after").unwrap(),
            cny("1"),
            DepositMethod::BankCard,
        )
        .await
        .unwrap();
    assert!(engine.passivate_all(Duration::from_secs(5)).await);
    let bob_now = available(&engine, bob).await;
    drop(engine);

    // A restart reads the forgetting back from the checkpoint, and money is
    // where it was.
    let engine = start(store, &clock).await;
    engine.recover_in_flight().await.unwrap();
    assert!(!remembers(&engine, bob, transfer).await);
    assert_eq!(available(&engine, bob).await, bob_now);
    let ledger = engine.audit().await.unwrap();
    assert!(ledger.balanced(), "{ledger:?}");
}
