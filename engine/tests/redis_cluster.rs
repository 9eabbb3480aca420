//! The Redis store on a real three-master Redis Cluster (started by the test, see
//! `okpay_testsupport::redis_cluster`): the store detects the cluster from one
//! node's URL, passes both conformance suites (account store and shard log) there,
//! checks every master's durability settings, and carries an engine doing
//! cross-shard transfers whose balances survive an engine restart and a SIGKILL of
//! a master.

mod support;

use std::sync::Arc;
use std::time::Duration;

use okpay_engine::domain::command::{DepositMethod, Profile};
use okpay_engine::ids::{AccountId, IdempotencyKey};
use okpay_engine::money::{Amount, Currency};
use okpay_engine::store::redis::RedisStore;
use okpay_engine::store::redis_config::DurabilityProblem;
use okpay_engine::store::shard_log::redis::RedisShardLog;
use okpay_engine::store::{conformance, shard_log, Store};
use okpay_engine::{Engine, EngineConfig, RuntimeConfig};
use okpay_testsupport::redis_cluster::RedisCluster;
use rust_decimal::Decimal;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_detects_a_cluster_from_any_node_and_a_standalone_server_as_such() {
    let cluster = RedisCluster::start();
    for i in 0..cluster.len() {
        let store = RedisStore::connect(&cluster.node_url(i))
            .await
            .expect("connect");
        assert!(store.is_cluster(), "node {i} not detected as a cluster");
    }
    let server = support::redis_server::RedisServer::start();
    let store = RedisStore::connect(&server.url()).await.expect("connect");
    assert!(!store.is_cluster());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_store_conforms_on_a_cluster() {
    let cluster = RedisCluster::start();
    let store = RedisStore::connect(&cluster.url()).await.expect("connect");
    conformance::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_shard_log_conforms_on_a_cluster() {
    let cluster = RedisCluster::start();
    let log = RedisShardLog::connect(&cluster.node_url(1))
        .await
        .expect("connect");
    shard_log::conformance::run_all(&log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durability_is_checked_on_every_master() {
    let proper = RedisCluster::start();
    let store = RedisStore::connect(&proper.url()).await.expect("connect");
    let report = store.check_durability().await;
    assert!(report.is_ok(), "{report}");

    let careless = RedisCluster::start_with_everysec();
    let store = RedisStore::connect(&careless.url()).await.expect("connect");
    let report = store.check_durability().await;
    assert_eq!(report.problems.len(), 3, "one per master: {report}");
    for problem in &report.problems {
        let DurabilityProblem::OnNode { problem, .. } = problem else {
            panic!("not attributed to a master: {problem}");
        };
        assert_eq!(
            **problem,
            DurabilityProblem::Wrong {
                setting: "appendfsync",
                want: "always",
                got: "everysec".to_owned()
            }
        );
    }
    assert!(report.to_string().contains("127.0.0.1:"), "{report}");
}

fn cny(s: &str) -> Amount {
    Amount::parse(s, Currency::new("CNY", 2).unwrap()).unwrap()
}

fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::parse(s).unwrap()
}

async fn start_engine(url: &str) -> Engine {
    let store: Arc<dyn Store> = Arc::new(RedisStore::connect(url).await.expect("connect"));
    Engine::start(
        EngineConfig {
            runtime: RuntimeConfig {
                // Checkpoints (and their log trims) happen during the test too.
                checkpoint_every: 4,
                ..RuntimeConfig::default()
            },
            ..EngineConfig::default()
        },
        store,
    )
    .await
    .expect("start engine")
}

async fn balances(engine: &Engine, accounts: &[AccountId]) -> Vec<Decimal> {
    let mut out = Vec::new();
    for &id in accounts {
        let view = engine.view(id).await.expect("view");
        out.push(
            view.balances
                .iter()
                .find(|b| b.currency.code() == "CNY")
                .map_or(Decimal::ZERO, |b| b.available),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_engine_on_a_cluster_moves_money_across_shards_and_recovers_it() {
    const ACCOUNTS: usize = 12;
    const ROUNDS: usize = 5;
    let mut cluster = RedisCluster::start();
    let engine = start_engine(&cluster.url()).await;
    let mut accounts = Vec::new();
    for i in 0..ACCOUNTS {
        let id = engine
            .open_account(Profile {
                display_name: format!("a{i}"),
                ..Profile::default()
            })
            .await
            .expect("open");
        engine
            .deposit(
                id,
                key(&format!("d{i}")),
                cny("100"),
                DepositMethod::BankCard,
            )
            .await
            .expect("deposit");
        accounts.push(id);
    }
    let layout = engine.layout();
    let shards: std::collections::HashSet<_> =
        accounts.iter().map(|&a| layout.shard_of(a)).collect();
    assert!(shards.len() > 4, "accounts spread over shards: {shards:?}");

    // Every account pays the next one (a ring, so mostly across shards and
    // executors), all rounds' transfers in flight at once.
    let mut transfers = Vec::new();
    for round in 0..ROUNDS {
        for i in 0..ACCOUNTS {
            let (from, to) = (accounts[i], accounts[(i + 1) % ACCOUNTS]);
            let engine = &engine;
            transfers.push(async move {
                engine
                    .transfer(
                        from,
                        key(&format!("t{round}-{i}")),
                        to,
                        cny("3"),
                        None,
                        false,
                    )
                    .await
            });
        }
    }
    for outcome in futures::future::join_all(transfers).await {
        outcome.expect("transfer");
    }
    let ledger = engine.audit().await.expect("audit");
    assert!(ledger.balanced(), "{ledger:?}");
    let before = balances(&engine, &accounts).await;
    // A ring of equal transfers leaves every balance where it started.
    assert!(
        before.iter().all(|b| *b == Decimal::from(100)),
        "{before:?}"
    );
    let total: Decimal = before.iter().sum();
    drop(engine);

    // A master dies and comes back from its AOF; a new engine finds the same money.
    cluster.restart(1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let engine = start_engine(&cluster.node_url(2)).await;
    assert_eq!(balances(&engine, &accounts).await, before);
    let ledger = engine.audit().await.expect("audit after restart");
    assert!(ledger.balanced(), "{ledger:?}");
    // The recovered engine keeps working: one more transfer, money conserved.
    engine
        .transfer(
            accounts[0],
            key("after"),
            accounts[7],
            cny("10"),
            None,
            false,
        )
        .await
        .expect("transfer after restart");
    let after: Decimal = balances(&engine, &accounts).await.iter().sum();
    assert_eq!(after, total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_fails_appends_fast_and_they_resume_when_it_is_back() {
    use okpay_engine::codec::ShardId;
    use std::time::Instant;

    const SHARDS: u16 = 16;
    let mut cluster = RedisCluster::start();
    let store = RedisStore::connect(&cluster.url()).await.expect("connect");
    let log = store.shard_log().await.expect("shard log");
    let batch = |lsn: u64| {
        (0..SHARDS)
            .map(|s| shard_log::conformance::frame(s, lsn, b"x"))
            .collect::<Vec<_>>()
    };
    // Frames of 16 shards, so on every master.
    let results = log.append(batch(1)).await.expect("append");
    assert!(results.iter().all(Result::is_ok), "{results:?}");

    cluster.kill9(0);
    let started = Instant::now();
    let outcome = log.append(batch(2)).await;
    // Bounded by the response timeout (2 s) plus reconnect attempts, not hung.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        outcome.is_err(),
        "an append on a dead master succeeded: {outcome:?}"
    );

    cluster.restart(0);
    // The outcome of lsn 2 is unknown for shards of the dead master (none
    // landed there); each shard now continues from its own head.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut next = Vec::new();
        for s in 0..SHARDS {
            match log.head(ShardId(s)).await {
                Ok(head) => next.push(shard_log::conformance::frame(s, head.head + 1, b"y")),
                Err(_) => break,
            }
        }
        if next.len() == usize::from(SHARDS) {
            if let Ok(results) = log.append(next).await {
                if results.iter().all(Result::is_ok) {
                    break;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "appends did not resume after the master came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Nothing acknowledged before the kill was lost.
    for s in 0..SHARDS {
        let frames = log.read(ShardId(s), 0, 10).await.expect("read");
        assert_eq!(frames[0].lsn, 1, "shard {s}");
        assert!(frames.len() >= 2, "shard {s}: {frames:?}");
    }
}
