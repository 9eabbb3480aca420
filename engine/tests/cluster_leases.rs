//! Shard leases and membership (`okpay_engine::cluster`) against a real Redis,
//! standalone and a three-master Cluster: a single node takes every shard and
//! its fenced log still conforms; two nodes split the shards evenly; a node whose
//! lease expired (a pause, simulated by not ticking it) has its append refused by
//! the append script (and its late checkpoint and history rows by theirs),
//! steps down, and the other node took the shard within the lease time; a
//! refusal aimed at an earlier lease of a shard the node holds again leaves
//! the newer lease alone.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use okpay_engine::cluster::{FencedShardLog, LeaseConfig, Leases, NodeId};
use okpay_engine::codec::{ShardId, ShardLayout};
use okpay_engine::ids::AccountId;
use okpay_engine::store::redis::RedisStore;
use okpay_engine::store::shard_log::redis::RedisShardLog;
use okpay_engine::store::shard_log::{conformance, ShardAppend, ShardLog};
use okpay_engine::store::{HistoryRow, Store, StoreError};
use okpay_testsupport::redis_cluster::RedisCluster;
use support::redis_server::RedisServer;

const SHARDS: u16 = 64;

/// Short leases so the tests wait little; ticks well inside them.
fn config() -> LeaseConfig {
    LeaseConfig {
        ttl: Duration::from_millis(1500),
        renew_every: Duration::from_millis(300),
        margin: Duration::from_millis(200),
    }
}

async fn node(url: &str, name: &str) -> Arc<Leases> {
    let redis = RedisStore::connect(url).await.expect("connect");
    Arc::new(Leases::new(
        redis,
        NodeId::parse(name).unwrap(),
        ShardLayout::new(SHARDS).unwrap(),
        config(),
    ))
}

fn shards(leases: &Leases) -> BTreeSet<ShardId> {
    leases.held().into_iter().map(|(s, _)| s).collect()
}

/// Ticks every node (releasing at once what a node is asked to hand over, as a
/// runtime would after its final checkpoint) until no tick changes anything.
async fn settle(nodes: &[&Arc<Leases>]) {
    // Two quiet rounds in a row: in the first, a node may only just have
    // registered, which the others see in the next.
    let mut quiet = 0;
    for _ in 0..10 {
        let mut changed = false;
        for n in nodes {
            let tick = n.tick().await.expect("tick");
            for &shard in &tick.to_release {
                n.release(shard).await.expect("release");
            }
            changed |=
                !(tick.acquired.is_empty() && tick.lost.is_empty() && tick.to_release.is_empty());
        }
        quiet = if changed { 0 } else { quiet + 1 };
        if quiet == 2 {
            return;
        }
    }
    panic!("leases did not settle within 10 rounds");
}

fn frame(shard: ShardId, lsn: u64) -> ShardAppend {
    conformance::frame(shard.0, lsn, b"x")
}

async fn single_node_takes_every_shard_and_its_log_conforms(url: &str) {
    let leases = node(url, "solo").await;
    settle(&[&leases]).await;
    assert_eq!(shards(&leases).len(), usize::from(SHARDS));
    let log = Arc::new(RedisShardLog::connect(url).await.expect("connect log"));
    let fenced = FencedShardLog::new(log, leases.clone());
    // The conformance suite writes shards below 100; take a layout that has them.
    let wide = Arc::new(Leases::new(
        RedisStore::connect(url).await.expect("connect"),
        NodeId::parse("wide").unwrap(),
        ShardLayout::new(128).unwrap(),
        config(),
    ));
    leases.leave().await.expect("leave");
    settle(&[&wide]).await;
    assert_eq!(shards(&wide).len(), 128);
    let fenced_wide = FencedShardLog::new(
        Arc::new(RedisShardLog::connect(url).await.expect("connect log")),
        wide.clone(),
    );
    // Renew while the suite runs, as the node's ticker would.
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(config().renew_every).await;
            wide.tick().await.expect("tick");
        }
    });
    conformance::run_all(&fenced_wide).await;
    ticker.abort();
    // The node that left appends nothing any more.
    let refused = fenced
        .append(vec![frame(ShardId(3), 1)])
        .await
        .expect("append");
    assert!(
        matches!(refused[0], Err(StoreError::LeaseLost { .. })),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_takes_every_shard_standalone() {
    let server = RedisServer::start();
    single_node_takes_every_shard_and_its_log_conforms(&server.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_takes_every_shard_on_a_cluster() {
    let cluster = RedisCluster::start();
    single_node_takes_every_shard_and_its_log_conforms(&cluster.url()).await;
}

/// A node that lost a shard's lease and took it again (under a newer epoch)
/// may still get answers for writes its earlier hosting sent: those are
/// refused for the old epoch, and must not make the node step down from the
/// newer lease it now serves.
async fn a_refusal_for_an_earlier_lease_leaves_the_newer_one(url: &str) {
    let leases = node(url, "again").await;
    settle(&[&leases]).await;
    let shard = ShardId(3);
    let first = leases.epoch(shard).expect("held");
    // Given up (as after a lost lease) and taken again at the next tick.
    assert!(leases.release(shard).await.expect("release"));
    let tick = leases.tick().await.expect("tick");
    let again = leases.epoch(shard).expect("taken again");
    assert!(
        tick.acquired.contains(&(shard, again)) && again > first,
        "{tick:?}: {first} then {again}"
    );
    let log = FencedShardLog::new(
        Arc::new(RedisShardLog::connect(url).await.expect("connect log")),
        leases.clone(),
    );
    // A frame the first hosting sealed is refused for its own epoch, without
    // a round trip and without touching the newer lease.
    let late = ShardAppend {
        epoch: Some(first),
        ..frame(shard, 1)
    };
    let r = log.append(vec![late]).await.expect("append");
    assert!(
        matches!(r[0], Err(StoreError::LeaseLost { held, current, .. }) if held == first && current == again),
        "{r:?}"
    );
    assert_eq!(
        leases.epoch(shard),
        Some(again),
        "stepped down from the newer lease"
    );
    // The append script's refusal of the first epoch (a write sent before the
    // lease moved, answered after): stepping down from that epoch leaves the
    // newer one, stepping down from the newer one does not.
    leases.step_down(shard, first);
    assert_eq!(leases.epoch(shard), Some(again));
    // The newer hosting appends, under its epoch given or implied.
    let now = ShardAppend {
        epoch: Some(again),
        ..frame(shard, 1)
    };
    let r = log.append(vec![now]).await.expect("append");
    assert!(r[0].is_ok(), "{r:?}");
    let r = log.append(vec![frame(shard, 2)]).await.expect("append");
    assert!(r[0].is_ok(), "{r:?}");
    leases.step_down(shard, again);
    assert_eq!(leases.epoch(shard), None);
    let r = log.append(vec![frame(shard, 3)]).await.expect("append");
    assert!(
        matches!(
            r[0],
            Err(StoreError::LeaseLost {
                held: 0,
                current: 0,
                ..
            })
        ),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_for_an_earlier_lease_leaves_the_newer_one_standalone() {
    let server = RedisServer::start();
    a_refusal_for_an_earlier_lease_leaves_the_newer_one(&server.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_for_an_earlier_lease_leaves_the_newer_one_on_a_cluster() {
    let cluster = RedisCluster::start();
    a_refusal_for_an_earlier_lease_leaves_the_newer_one(&cluster.url()).await;
}

async fn two_nodes_split_and_a_paused_one_is_fenced(url: &str) {
    let a = node(url, "node-a").await;
    let b = node(url, "node-b").await;
    // A alone takes everything; B joins and gets half, handed over by A.
    settle(&[&a]).await;
    assert_eq!(shards(&a).len(), usize::from(SHARDS));
    let first_epochs: Vec<(ShardId, u64)> = a.held();
    settle(&[&a, &b]).await;
    let (sa, sb) = (shards(&a), shards(&b));
    assert_eq!((sa.len(), sb.len()), (32, 32), "an even split");
    assert!(sa.is_disjoint(&sb));
    let moved = *sb.iter().next().unwrap();
    let old = first_epochs.iter().find(|(s, _)| *s == moved).unwrap().1;
    let (holder, epoch) = b.holder(moved).await.unwrap().expect("held");
    assert_eq!(holder.as_str(), "node-b");
    assert!(
        epoch > old,
        "a moved shard's epoch advances: {old} → {epoch}"
    );

    // Both append to their own shards through their fenced logs.
    let log_a = FencedShardLog::new(
        Arc::new(RedisShardLog::connect(url).await.unwrap()),
        a.clone(),
    );
    let log_b = FencedShardLog::new(
        Arc::new(RedisShardLog::connect(url).await.unwrap()),
        b.clone(),
    );
    let victim = *sa.iter().next().unwrap();
    let r = log_a.append(vec![frame(victim, 1)]).await.unwrap();
    assert!(r[0].is_ok(), "{r:?}");
    let r = log_b.append(vec![frame(victim, 2)]).await.unwrap();
    assert!(
        matches!(r[0], Err(StoreError::LeaseLost { .. })),
        "a node appends only to shards it holds: {r:?}"
    );
    let a_epoch = a.epoch(victim).expect("A holds its shard");

    // A pauses (stops ticking). Within the lease time, B takes every shard.
    let paused_at = Instant::now();
    let deadline = paused_at + config().ttl * 3;
    loop {
        let tick = b.tick().await.expect("tick");
        assert!(tick.lost.is_empty(), "{tick:?}");
        if shards(&b).len() == usize::from(SHARDS) {
            break;
        }
        assert!(Instant::now() < deadline, "B did not take A's shards");
        tokio::time::sleep(config().renew_every).await;
    }
    let took = paused_at.elapsed();
    eprintln!(
        "takeover of a paused node's shards after {took:?} (lease {:?})",
        config().ttl
    );
    // The lease time plus one tick, and a second of slack for a loaded machine.
    assert!(
        took <= config().ttl + config().renew_every + Duration::from_secs(1),
        "takeover after {took:?}, lease {:?}",
        config().ttl
    );

    // A wakes up and, not having noticed, appends with the epoch it held: the
    // append script refuses it.
    let raw = RedisShardLog::connect(url).await.unwrap();
    let r = raw
        .append_at_epochs(vec![(frame(victim, 2), a_epoch)])
        .await
        .unwrap();
    assert!(
        matches!(r[0], Err(StoreError::LeaseLost { held, current, .. }) if held == a_epoch && current > a_epoch),
        "{r:?}"
    );
    // Nor can it overwrite the new owner's checkpoint with an older state.
    let r = raw
        .checkpoint_at(
            victim,
            1,
            vec![(AccountId(7), b"stale".to_vec())],
            Some(a_epoch),
        )
        .await;
    assert!(
        matches!(r, Err(StoreError::LeaseLost { held, current, .. }) if held == a_epoch && current > a_epoch),
        "{r:?}"
    );
    assert_eq!(raw.load_account(victim, AccountId(7)).await.unwrap(), None);
    assert_eq!(raw.head(victim).await.unwrap().checkpoint, 0);
    // Nor write history rows over the new owner's: a late row of A (a transfer
    // still processing) is refused, the whole of its shard's call, while rows
    // of another shard in the same store call land.
    let store = RedisStore::connect(url).await.unwrap();
    let b_epoch = b.epoch(victim).expect("B holds A's shard now");
    let other = *sb.iter().next().unwrap();
    let other_epoch = b.epoch(other).expect("B holds its own shard");
    let (mine, theirs) = (AccountId(7), AccountId(8));
    let row = |account: AccountId, payload: &str, replaces: bool| HistoryRow {
        key: format!("0000000000000001tx_{account}"),
        payload: payload.as_bytes().to_vec(),
        replaces,
    };
    let refused = store
        .put_history(
            vec![(victim, mine, row(mine, "completed", true))],
            vec![(victim, b_epoch)],
        )
        .await
        .unwrap();
    assert!(refused.is_empty(), "{refused:?}");
    let refused = store
        .put_history(
            vec![
                (victim, mine, row(mine, "processing", true)),
                (victim, mine, row(theirs, "stale", false)),
                (other, theirs, row(theirs, "fresh", false)),
            ],
            vec![(victim, a_epoch), (other, other_epoch)],
        )
        .await
        .unwrap();
    assert!(
        matches!(&refused[..], [StoreError::LeaseLost { shard, held, current }]
            if *shard == victim.0 && *held == a_epoch && *current == b_epoch),
        "{refused:?}"
    );
    let rows = |shard, account| {
        let store = &store;
        async move {
            store
                .history(shard, account, None, 10)
                .await
                .unwrap()
                .into_iter()
                .map(|r| String::from_utf8(r.payload).unwrap())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(rows(victim, mine).await, ["completed"]);
    assert_eq!(rows(other, theirs).await, ["fresh"]);
    // Unfenced rows (one node, no leases) are written as before.
    let refused = store
        .put_history(vec![(other, theirs, row(theirs, "newer", true))], vec![])
        .await
        .unwrap();
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(rows(other, theirs).await, ["newer"]);
    // Its fenced log refuses too (locally: the lease is past its trusted time).
    let r = log_a.append(vec![frame(victim, 2)]).await.unwrap();
    assert!(matches!(r[0], Err(StoreError::LeaseLost { .. })), "{r:?}");
    // The new owner appends after A's frame.
    let r = log_b.append(vec![frame(victim, 2)]).await.unwrap();
    assert!(r[0].is_ok(), "{r:?}");
    // A's next tick finds its leases lost and steps down from every shard.
    let tick = a.tick().await.expect("tick");
    assert_eq!(tick.lost.len(), 32, "{tick:?}");
    assert!(a.epoch(victim).is_none());
    // Then the two settle to an even split again.
    settle(&[&a, &b]).await;
    assert_eq!((shards(&a).len(), shards(&b).len()), (32, 32));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_split_and_a_paused_one_is_fenced_standalone() {
    let server = RedisServer::start();
    two_nodes_split_and_a_paused_one_is_fenced(&server.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_split_and_a_paused_one_is_fenced_on_a_cluster() {
    let cluster = RedisCluster::start();
    two_nodes_split_and_a_paused_one_is_fenced(&cluster.url()).await;
}
