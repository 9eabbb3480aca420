//! `WAIT` after shard-log appends (`RedisOptions::wait`): an append is only
//! acknowledged once the configured replicas of its master have it. Against a
//! master without replicas, standalone and on a three-master Cluster, the
//! append answers `Unavailable` (outcome unknown) after the timeout rather than
//! acknowledging; without the option it is acknowledged as before.

mod support;

use std::time::Duration;

use okpay_engine::codec::{ShardId, ShardLayout};
use okpay_engine::store::redis::RedisStore;
use okpay_engine::store::redis_config::{RedisOptions, ReplicaWait};
use okpay_engine::store::shard_log::redis::RedisShardLog;
use okpay_engine::store::shard_log::{ShardAppend, ShardLog};
use okpay_engine::store::StoreError;
use okpay_testsupport::redis_cluster::RedisCluster;
use support::redis_server::RedisServer;

async fn log(url: &str, wait: Option<ReplicaWait>) -> RedisShardLog {
    let options = RedisOptions {
        wait,
        ..RedisOptions::default()
    };
    let log = RedisShardLog::over(
        RedisStore::connect_with(url, options)
            .await
            .expect("connect"),
    );
    log.init_layout(ShardLayout::new(8).unwrap())
        .await
        .expect("layout");
    log
}

async fn append_unreplicated(url: &str) {
    let waiting = log(
        url,
        Some(ReplicaWait {
            replicas: 1,
            timeout: Duration::from_millis(100),
        }),
    )
    .await;
    let frame = |shard: u16, lsn: u64| ShardAppend {
        shard: ShardId(shard),
        lsn,
        frame: vec![1, 2, 3],
        epoch: None,
    };
    match waiting.append(vec![frame(1, 1), frame(5, 1)]).await {
        Err(StoreError::Unavailable(why)) => assert!(why.contains("replicas"), "{why}"),
        other => panic!("acknowledged without a replica: {other:?}"),
    }
    // Without the option the next frames are acknowledged (the first ones did
    // land on the master: the outcome was unknown, not refused).
    let plain = log(url, None).await;
    let done = plain
        .append(vec![frame(1, 2), frame(5, 2)])
        .await
        .expect("append");
    assert!(done.iter().all(Result::is_ok), "{done:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_waits_for_replicas_on_a_standalone_master() {
    let redis = RedisServer::start();
    append_unreplicated(&redis.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_waits_for_replicas_on_every_master_of_a_cluster() {
    let cluster = RedisCluster::start();
    append_unreplicated(&cluster.url()).await;
}
