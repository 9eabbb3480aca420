//! Engines in cluster mode (`RuntimeConfig::cluster`, the server's `--node-id`)
//! on one real redis-server: an engine hosts only the shards it holds a lease
//! for; a second node joining takes half of them over (each handed over after a
//! final checkpoint, none lost); a node leaving hands its shards back; at every
//! settled point each shard is owned by exactly one node, and the money is
//! where it was.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use okpay_engine::codec::ShardId;
use okpay_engine::domain::command::{DepositMethod, Profile};
use okpay_engine::ids::AccountId;
use okpay_engine::{Engine, EngineError};
use rust_decimal::Decimal;
use support::cluster_nodes::{cny, held, key, node};
use support::redis_server::RedisServer;

const SHARDS: u16 = 8;

/// Waits (bounded) until the nodes' leases cover every shard exactly once,
/// with the given counts per node.
async fn wait_owned(nodes: &[&Engine], counts: &[usize]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let sets: Vec<BTreeSet<ShardId>> = nodes.iter().map(|n| held(n)).collect();
        let total: usize = sets.iter().map(BTreeSet::len).sum();
        let union: BTreeSet<ShardId> = sets.iter().flatten().copied().collect();
        let sizes: Vec<usize> = sets.iter().map(BTreeSet::len).collect();
        if total == usize::from(SHARDS) && union.len() == total && sizes == counts {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "shards not settled: {sizes:?} (want {counts:?}), {total} leases over {} shards",
            union.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The owner among `nodes` of `account`'s shard.
fn owner<'a>(nodes: &[&'a Engine], account: AccountId) -> &'a Engine {
    let shard = nodes[0].layout().shard_of(account);
    nodes
        .iter()
        .find(|n| held(n).contains(&shard))
        .copied()
        .expect("every shard has an owner")
}

async fn balance(engine: &Engine, id: AccountId) -> Result<Decimal, EngineError> {
    // A shard just taken over is recovering: its requests wait for it.
    let view = engine.view(id).await?;
    Ok(view
        .balances
        .iter()
        .find(|b| b.currency.code() == "CNY")
        .map_or(Decimal::ZERO, |b| b.available))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shards_move_between_nodes_without_losing_money() {
    let redis = RedisServer::start();
    let a = node(&redis.url(), "node-a", SHARDS).await;
    wait_owned(&[&a], &[usize::from(SHARDS)]).await;

    // Accounts on every shard, each with money; transfers within each shard.
    let mut accounts = Vec::new();
    for i in 0..24 {
        let id = a
            .open_account(Profile {
                display_name: format!("a{i}"),
                ..Profile::default()
            })
            .await
            .expect("open");
        a.deposit(
            id,
            key(&format!("d{i}")),
            cny("100"),
            DepositMethod::BankCard,
        )
        .await
        .expect("deposit");
        accounts.push(id);
    }
    let layout = a.layout();
    for (i, &from) in accounts.iter().enumerate() {
        let to = accounts
            .iter()
            .copied()
            .find(|&t| t != from && layout.shard_of(t) == layout.shard_of(from));
        if let Some(to) = to {
            a.transfer(from, key(&format!("t{i}")), to, cny("7"), None, false)
                .await
                .expect("transfer");
        }
    }
    let mut before = Vec::new();
    for &id in &accounts {
        before.push(balance(&a, id).await.expect("balance"));
    }

    // A second node joins: half the shards move to it, each handed over.
    let b = node(&redis.url(), "node-b", SHARDS).await;
    let half = usize::from(SHARDS) / 2;
    wait_owned(&[&a, &b], &[half, half]).await;
    for (i, &id) in accounts.iter().enumerate() {
        let shard = layout.shard_of(id);
        let (mine, other) = if held(&a).contains(&shard) {
            (&a, &b)
        } else {
            (&b, &a)
        };
        assert_eq!(balance(mine, id).await.expect("owner answers"), before[i]);
        // The other node asks the owner through Redis.
        assert_eq!(balance(other, id).await.expect("routed"), before[i]);
    }
    // Money keeps moving on the new owners.
    for (i, &from) in accounts.iter().enumerate() {
        let to = accounts
            .iter()
            .copied()
            .find(|&t| t != from && layout.shard_of(t) == layout.shard_of(from));
        if let Some(to) = to {
            owner(&[&a, &b], from)
                .transfer(from, key(&format!("u{i}")), to, cny("3"), None, false)
                .await
                .expect("transfer on the owner");
        }
    }

    // Transfers between accounts of different nodes, sent to either node:
    // commands and credits cross through the shards' inboxes.
    let nodes = [&a, &b];
    let mut sent = 0;
    for (i, &from) in accounts.iter().enumerate() {
        let to = accounts[(i + 5) % accounts.len()];
        if held(&a).contains(&layout.shard_of(from)) == held(&a).contains(&layout.shard_of(to)) {
            continue;
        }
        nodes[i % 2]
            .transfer(from, key(&format!("x{i}")), to, cny("2"), None, false)
            .await
            .expect("cross-node transfer");
        // A replay through the other node is answered from the first run.
        let again = nodes[(i + 1) % 2]
            .transfer(from, key(&format!("x{i}")), to, cny("2"), None, false)
            .await
            .expect("replayed transfer");
        assert!(
            matches!(again, okpay_engine::Outcome::Transfer(_)),
            "{again:?}"
        );
        sent += 1;
    }
    assert!(sent >= 4, "only {sent} cross-node transfers");
    // The audit, asked of either node, sees every shard.
    for n in nodes {
        let ledger = n.audit().await.expect("audit across nodes");
        assert!(ledger.balanced(), "{ledger:?}");
    }
    let stats = a.remote_stats().expect("cluster mode");
    assert!(stats.sent.load(std::sync::atomic::Ordering::Relaxed) > 0);

    // Node a leaves: b takes every shard at once (released, not expired).
    let left = Instant::now();
    a.leave().await;
    wait_owned(&[&a, &b], &[0, usize::from(SHARDS)]).await;
    assert!(
        left.elapsed() < Duration::from_millis(1500),
        "a graceful leave should not wait for the lease time: {:?}",
        left.elapsed()
    );
    let mut total = Decimal::ZERO;
    for &id in &accounts {
        let bal = balance(&b, id).await.expect("b serves every shard");
        assert!(bal >= Decimal::ZERO);
        total += bal;
    }
    // Fees left the balances; nothing else did.
    let ledger = b.audit().await.expect("audit");
    assert!(ledger.balanced(), "{ledger:?}");
    let cny = ledger.currencies.values().next().expect("CNY moved");
    assert_eq!(cny.deposited, Decimal::from(100 * accounts.len() as i64));
    assert_eq!(cny.in_flight, Decimal::ZERO);
    assert_eq!(total + cny.fees, cny.deposited, "{ledger:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_node_loses_its_shards_to_the_others_after_the_lease_time() {
    let redis = RedisServer::start();
    let a = node(&redis.url(), "node-a", SHARDS).await;
    let b = node(&redis.url(), "node-b", SHARDS).await;
    let half = usize::from(SHARDS) / 2;
    wait_owned(&[&a, &b], &[half, half]).await;
    let account = AccountId::random();
    owner(&[&a, &b], account)
        .open_account_with_id(account, Profile::default())
        .await
        .expect("open on the owner");
    owner(&[&a, &b], account)
        .deposit(account, key("d"), cny("50"), DepositMethod::BankCard)
        .await
        .expect("deposit");
    // Node a stops without leaving (its engine dropped: leases given up as
    // they are, its registration removed); b serves everything.
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(10);
    while held(&b).len() < usize::from(SHARDS) {
        assert!(Instant::now() < deadline, "b did not take a's shards");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        balance(&b, account).await.expect("b serves it"),
        Decimal::from(50)
    );
}

/// A command without an idempotency key that a dead owner had started (marked
/// in the shard's `started` hash, not yet answered) is not run again by the
/// next owner: it is answered "outcome unknown" and dropped; an entry the dead
/// owner had only read is run. Staged by hand in the inbox while no node hosts
/// the shard (the dying owner's crash between the run and the answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_keyless_command_a_dead_owner_started_is_not_run_again() {
    use okpay_engine::cluster::remote::staging;
    use okpay_engine::domain::state::AccountStatus;
    use okpay_engine::Command;

    let redis = RedisServer::start();
    let a = node(&redis.url(), "node-a", SHARDS).await;
    wait_owned(&[&a], &[usize::from(SHARDS)]).await;
    let account = a.open_account(Profile::default()).await.expect("open");
    let shard = a.layout().shard_of(account);
    a.leave().await;
    drop(a);

    let (inbox, started) = staging::keys(shard);
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let freeze = staging::command_entry(
        account,
        Command::SetStatus {
            to: AccountStatus::Frozen,
            reason: "started by the dead owner".into(),
        },
    );
    let tier = staging::command_entry(account, Command::SetKycTier { tier: 2 });
    let started_id: String = redis::cmd("XADD")
        .arg(&inbox)
        .arg("*")
        .arg("r")
        .arg(freeze)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg(&inbox)
        .arg("*")
        .arg("r")
        .arg(tier)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: i64 = redis::cmd("HSET")
        .arg(&started)
        .arg(&started_id)
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();

    let b = node(&redis.url(), "node-b", SHARDS).await;
    wait_owned(&[&b], &[usize::from(SHARDS)]).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left: i64 = redis::cmd("XLEN")
            .arg(&inbox)
            .query_async(&mut conn)
            .await
            .unwrap();
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{left} inbox entries unanswered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let view = b.view(account).await.expect("b serves it");
    assert_eq!(
        view.status,
        AccountStatus::Active,
        "the started freeze ran again"
    );
    assert_eq!(view.kyc_tier, 2, "the entry only read was not run");
    let marks: i64 = redis::cmd("HLEN")
        .arg(&started)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(marks, 0, "answered entries keep no mark");
}
