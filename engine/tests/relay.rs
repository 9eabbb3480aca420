//! Notifications across nodes (`okpay_engine::runtime::relay`): two engines on
//! one real Redis, each relaying through the coordination bus. What one node's
//! shard publishes reaches a subscriber on the other node, in `seq` order, and
//! operators there see it marked as relayed.

mod support;

use std::sync::Arc;
use std::time::Duration;

use okpay_engine::coord::redis::RedisCoord;
use okpay_engine::domain::command::{DepositMethod, Profile};
use okpay_engine::ids::IdempotencyKey;
use okpay_engine::money::{Amount, Currency};
use okpay_engine::store::redis::RedisStore;
use okpay_engine::store::Store;
use okpay_engine::{Engine, EngineConfig};
use support::redis_server::RedisServer;

fn cny(s: &str) -> Amount {
    Amount::parse(s, Currency::new("CNY", 2).unwrap()).unwrap()
}

async fn node(url: &str) -> Engine {
    let redis = Arc::new(RedisStore::connect(url).await.expect("connect"));
    let coord = Arc::new(RedisCoord::new(redis.clone(), url).expect("coord"));
    let store: Arc<dyn Store> = redis;
    let engine = Engine::start(EngineConfig::default(), store)
        .await
        .expect("start engine");
    engine.relay_notifications(coord);
    engine
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_published_on_one_node_reaches_a_subscriber_on_another() {
    let redis = RedisServer::start();
    let a = node(&redis.url()).await;
    let id = a
        .open_account(Profile {
            display_name: "relay".into(),
            ..Profile::default()
        })
        .await
        .expect("open");
    a.deposit(
        id,
        IdempotencyKey::parse("d0").unwrap(),
        cny("1.00"),
        DepositMethod::BankCard,
    )
    .await
    .expect("deposit");
    // The second node starts after: the account is in the log it recovers. It
    // only reads (it never writes the account, so the two never race for it).
    let b = node(&redis.url()).await;
    let sub = b.subscribe(id, Some(0)).await.expect("subscribe");
    let mut last = sub.backlog.last().map_or(0, |n| n.seq);
    let mut live = sub.receiver;
    let mut admin = b.subscribe_admin();
    // B's bus subscription may still be being made: deposit until one arrives.
    let mut first = None;
    for i in 1..=40 {
        a.deposit(
            id,
            IdempotencyKey::parse(&format!("d{i}")).unwrap(),
            cny("1.00"),
            DepositMethod::BankCard,
        )
        .await
        .expect("deposit");
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(250), live.recv()).await {
            first = Some(n);
            break;
        }
    }
    let first = first.expect("no notification of node A reached node B's subscriber");
    assert!(first.seq > last, "seq {} after {last}", first.seq);
    last = first.seq;
    // From now on every notification arrives, in order, without gaps.
    for i in 100..105 {
        a.deposit(
            id,
            IdempotencyKey::parse(&format!("d{i}")).unwrap(),
            cny("1.00"),
            DepositMethod::BankCard,
        )
        .await
        .expect("deposit");
    }
    let mut received = 0;
    while received < 5 {
        let n = tokio::time::timeout(Duration::from_secs(5), live.recv())
            .await
            .expect("a relayed notification")
            .expect("the live feed");
        assert_eq!(n.seq, last + 1, "seq order without gaps");
        last = n.seq;
        if matches!(
            n.kind,
            okpay_engine::domain::notification::NotificationKind::BalanceUpdated { .. }
        ) {
            received += 1;
        }
    }
    // Nothing relayed reached B's operators as B's own (no admin-kind notices
    // were raised by deposits; what B's operators see is relayed only).
    while let Ok(notice) = admin.try_recv() {
        assert!(notice.relayed);
    }
}

/// A cluster-mode node (`--node-id`) with short leases and its relay.
async fn cluster_node(url: &str, name: &str) -> Engine {
    use okpay_engine::cluster::{ClusterConfig, LeaseConfig, NodeId};
    let redis = Arc::new(RedisStore::connect(url).await.expect("connect"));
    let coord = Arc::new(RedisCoord::new(redis.clone(), url).expect("coord"));
    let store: Arc<dyn Store> = redis;
    let mut cluster = ClusterConfig::new(NodeId::parse(name).unwrap());
    cluster.leases = LeaseConfig {
        ttl: Duration::from_millis(1500),
        renew_every: Duration::from_millis(300),
        margin: Duration::from_millis(200),
    };
    let engine = Engine::start(
        EngineConfig {
            runtime: okpay_engine::RuntimeConfig {
                shards: 8,
                executors: 2,
                cluster: Some(cluster),
                ..okpay_engine::RuntimeConfig::default()
            },
            ..EngineConfig::default()
        },
        store,
    )
    .await
    .expect("start engine");
    engine.relay_notifications(coord);
    engine
}

fn hosts(engine: &Engine, id: okpay_engine::ids::AccountId) -> bool {
    let shard = engine.layout().shard_of(id);
    engine.held_shards().iter().any(|(s, _)| *s == shard)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cluster_mode_a_subscriber_on_a_node_not_hosting_the_account_gets_backlog_and_live_feed()
{
    let redis = RedisServer::start();
    let a = cluster_node(&redis.url(), "node-a").await;
    let b = cluster_node(&redis.url(), "node-b").await;
    // Wait (bounded) until the two split the shards.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while a.held_shards().len() + b.held_shards().len() != 8
        || a.held_shards().is_empty()
        || b.held_shards().is_empty()
    {
        assert!(std::time::Instant::now() < deadline, "shards never split");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // An account A hosts (and B does not).
    let id = loop {
        let id = okpay_engine::ids::AccountId::random();
        if hosts(&a, id) && !hosts(&b, id) {
            break id;
        }
    };
    a.open_account_with_id(
        id,
        Profile {
            display_name: "elsewhere".into(),
            ..Profile::default()
        },
    )
    .await
    .expect("open on its host");
    a.deposit(
        id,
        IdempotencyKey::parse("d0").unwrap(),
        cny("1.00"),
        DepositMethod::BankCard,
    )
    .await
    .expect("deposit");
    // B serves the subscription from the store, not from A.
    let sub = b.subscribe(id, Some(0)).await.expect("subscribe on B");
    assert!(!sub.backlog.is_empty(), "the backlog comes from the store");
    assert!(!sub.gap);
    let seqs: Vec<u64> = sub.backlog.iter().map(|n| n.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    let mut last = *seqs.last().unwrap();
    let mut live = sub.receiver;
    a.deposit(
        id,
        IdempotencyKey::parse("d1").unwrap(),
        cny("1.00"),
        DepositMethod::BankCard,
    )
    .await
    .expect("deposit");
    // What was published while B read the store may arrive twice (backlog and
    // live feed): the subscriber's seq check drops it, as the websocket does.
    let n = loop {
        let n = tokio::time::timeout(Duration::from_secs(5), live.recv())
            .await
            .expect("A's notification reached B's subscriber")
            .expect("the live feed");
        if n.seq > last {
            break n;
        }
    };
    assert_eq!(n.seq, last + 1, "the live feed continues the backlog");
    last = n.seq;
    assert!(last > 0);
    // An account nobody opened is not found, as on its host.
    let unknown = loop {
        let id = okpay_engine::ids::AccountId::random();
        if !hosts(&b, id) {
            break id;
        }
    };
    assert!(matches!(
        b.subscribe(unknown, None).await,
        Err(okpay_engine::EngineError::Rejected(
            okpay_engine::Rejection::AccountNotFound
        ))
    ));
    a.leave().await;
    b.leave().await;
}
