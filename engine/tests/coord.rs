//! The coordination state (`okpay_engine::coord`) on a real Redis, standalone
//! and a three-master Cluster: the single-node contract, and two handles (two
//! nodes) sharing counters, locks, values and feeds and hearing each other's
//! messages on the bus.

mod support;

use std::sync::Arc;

use okpay_engine::coord::conformance;
use okpay_engine::coord::redis::RedisCoord;
use okpay_engine::store::redis::RedisStore;
use okpay_testsupport::redis_cluster::RedisCluster;
use support::redis_server::RedisServer;

async fn coord(url: &str) -> RedisCoord {
    let store = Arc::new(RedisStore::connect(url).await.expect("connect"));
    RedisCoord::new(store, url).expect("coord")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_coordination_conforms_and_is_shared_between_nodes() {
    let redis = RedisServer::start();
    let a = coord(&redis.url()).await;
    let b = coord(&redis.url()).await;
    conformance::run_all(&a).await;
    conformance::shared_between(&a, &b).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_coordination_conforms_on_a_cluster() {
    let cluster = RedisCluster::start();
    // Two nodes that know the cluster by different members.
    let a = coord(&cluster.node_url(0)).await;
    let b = coord(&cluster.node_url(2)).await;
    conformance::run_all(&a).await;
    conformance::shared_between(&a, &b).await.unwrap();
}
