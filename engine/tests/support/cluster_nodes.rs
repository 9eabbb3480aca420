//! Nodes of a several-node deployment for the cluster tests (`cluster_hosting`,
//! `cluster_rows`): an engine on a real Redis with short leases, which shards it
//! holds, and the small value helpers those tests share.

// Each test crate that includes the support module uses part of this.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use okpay_engine::cluster::{ClusterConfig, LeaseConfig, NodeId};
use okpay_engine::codec::ShardId;
use okpay_engine::ids::IdempotencyKey;
use okpay_engine::money::{Amount, Currency};
use okpay_engine::store::redis::RedisStore;
use okpay_engine::store::Store;
use okpay_engine::{Engine, EngineConfig, RuntimeConfig};

pub fn cny(s: &str) -> Amount {
    Amount::parse(s, Currency::new("CNY", 2).unwrap()).unwrap()
}

pub fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::parse(s).unwrap()
}

/// A node named `name` on the Redis at `url`, with `shards` shards.
pub async fn node(url: &str, name: &str, shards: u16) -> Engine {
    let store: Arc<dyn Store> = Arc::new(RedisStore::connect(url).await.expect("connect"));
    let mut cluster = ClusterConfig::new(NodeId::parse(name).unwrap());
    // Short leases so the test waits little.
    cluster.leases = LeaseConfig {
        ttl: Duration::from_millis(1500),
        renew_every: Duration::from_millis(300),
        margin: Duration::from_millis(200),
    };
    Engine::start(
        EngineConfig {
            runtime: RuntimeConfig {
                shards,
                executors: 2,
                cluster: Some(cluster),
                ..RuntimeConfig::default()
            },
            ..EngineConfig::default()
        },
        store,
    )
    .await
    .expect("start engine")
}

/// The shards `engine` holds now.
pub fn held(engine: &Engine) -> BTreeSet<ShardId> {
    engine.held_shards().into_iter().map(|(s, _)| s).collect()
}
