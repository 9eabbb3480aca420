//! Several `okpay` nodes on one Redis behave as one service for what is not in
//! the engine (issue 11): two real servers on one private `redis-server` share
//! the login limits, maintenance mode, the operators' alert feed and session
//! evictions; `GET /v1/admin/cluster` and the per-node metrics.
//!
//! The second node only reads what the first one writes through the engine
//! (until requests are routed to a shard's owner, two engines must not both
//! write one account).

use std::sync::Arc;
use std::time::Duration;

use okpay_engine::coord::redis::RedisCoord;
use okpay_engine::coord::Coord;
use okpay_engine::ids::AccountId;
use okpay_engine::store::redis::RedisStore;
use okpay_engine::time::Timestamp;
use okpay_gateway::session_cache::{self, SessionCache};
use okpay_testsupport::redis_server::RedisServer;
use serde_json::Value;

use crate::helpers::{assert_problem, TestApp, ADMIN};
use crate::ws_client::{Frame, WsClient};

async fn node(url: &str, per_login: u32) -> TestApp {
    let url = url.to_owned();
    TestApp::spawn_with(move |s| {
        s.redis_url = Some(url);
        s.login_failures_per_login = per_login;
        s.policy.security.failed_login_burst = 3;
        s.policy.security.lockout_failures = 100;
    })
    .await
}

#[tokio::test]
async fn login_failures_and_maintenance_hold_across_nodes() {
    let redis = RedisServer::start();
    let a = node(&redis.url(), 3).await;
    let b = node(&redis.url(), 3).await;
    // Two failures through A and one through B are three for the login.
    for app in [&a, &a, &b] {
        let r = app.try_login("ghost@example.com", "wrong", "d", None).await;
        assert_problem(r, 401, "INVALID_CREDENTIALS").await;
    }
    for app in [&b, &a] {
        let r = app.try_login("ghost@example.com", "wrong", "d", None).await;
        assert_problem(r, 429, "RATE_LIMITED").await;
    }
    // Another login is not affected.
    let r = b.try_login("other@example.com", "wrong", "d", None).await;
    assert_problem(r, 401, "INVALID_CREDENTIALS").await;

    // Maintenance switched on A stops writes on B, and switched off frees them.
    a.maintenance(true, Some("upgrading")).await;
    let mut seen = None;
    for _ in 0..150 {
        let r = b.try_login("other@example.com", "wrong", "d", None).await;
        if r.status() == 503 {
            seen = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let body = assert_problem(seen.expect("B never saw maintenance"), 503, "MAINTENANCE").await;
    assert_eq!(body["detail"], "upgrading");
    a.maintenance(false, None).await;
    let mut freed = false;
    for _ in 0..150 {
        let r = b.try_login("other@example.com", "wrong", "d", None).await;
        if r.status() == 401 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(freed, "maintenance switched off on A still applies on B");
    // A node started later reads the switch as it stands.
    a.maintenance(true, None).await;
    let c = node(&redis.url(), 3).await;
    let r = c.try_login("other@example.com", "wrong", "d", None).await;
    assert_problem(r, 503, "MAINTENANCE").await;
}

#[tokio::test]
async fn an_alert_raised_through_one_node_is_listed_once_on_the_other() {
    let redis = RedisServer::start();
    // B first: it never holds the account A writes.
    let b = node(&redis.url(), 10).await;
    let a = node(&redis.url(), 10).await;
    let (id, _) = a.user("burst@example.com").await;
    for _ in 0..4 {
        let r = a
            .try_login("burst@example.com", "wrong pass", "d", None)
            .await;
        assert_problem(r, 401, "INVALID_CREDENTIALS").await;
    }
    assert_eq!(a.admin_alerts_for(&id, "failed_login_burst").await, 1);
    assert_eq!(
        b.admin_alerts_for(&id, "failed_login_burst").await,
        1,
        "B's operators see A's alert, once"
    );
}

#[tokio::test]
async fn a_session_evicted_on_one_node_is_evicted_on_the_other() {
    let redis = RedisServer::start();
    let coord = |url: String| async move {
        let store = Arc::new(RedisStore::connect(&url).await.unwrap());
        Arc::new(RedisCoord::new(store, &url).unwrap()) as Arc<dyn Coord>
    };
    let (ca, cb) = (coord(redis.url()).await, coord(redis.url()).await);
    let a = Arc::new(SessionCache::default().shared_through(ca.clone()));
    let b = Arc::new(SessionCache::default().shared_through(cb.clone()));
    tokio::spawn(session_cache::listen(cb.subscribe(), b.clone()));
    let (account, hash, now) = (AccountId(42), [7u8; 32], Timestamp(1_000));
    let mut evicted = false;
    // B's subscription may still be being made: evict until B hears of it.
    for _ in 0..50 {
        b.insert(b.ticket(account), account, 1, hash, Timestamp(9_000));
        assert!(b.check(account, 1, &hash, now));
        a.evict(account);
        tokio::time::sleep(Duration::from_millis(50)).await;
        if !b.check(account, 1, &hash, now) {
            evicted = true;
            break;
        }
    }
    assert!(evicted, "B kept a session A evicted");
    // Another account's session on B is untouched.
    let other = AccountId(43);
    b.insert(b.ticket(other), other, 1, hash, Timestamp(9_000));
    a.evict(account);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(b.check(other, 1, &hash, now));
}

#[tokio::test]
async fn the_cluster_view_of_a_single_node_owns_every_shard() {
    let app = TestApp::spawn().await;
    let r = app.get("/v1/admin/cluster", "not-a-token").await;
    assert_problem(r, 401, "UNAUTHENTICATED").await;
    app.user("view@example.com").await;
    let r = app.get("/v1/admin/cluster", ADMIN).await;
    assert_eq!(r.status(), 200);
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["mode"], "single");
    let nodes = view["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0]["this_node"], true);
    let me = view["node"].as_str().unwrap();
    let shards = view["shards"].as_array().unwrap();
    assert!(!shards.is_empty());
    assert_eq!(nodes[0]["shards"], shards.len());
    assert!(shards.iter().all(|s| s["owner"] == me));
    let heads: u64 = shards.iter().map(|s| s["head"].as_u64().unwrap()).sum();
    assert!(heads > 0, "registering wrote frames");
    let lag: u64 = shards.iter().map(|s| s["lag"].as_u64().unwrap()).sum();
    assert_eq!(view["total_lag"], lag);
    assert!(app.metric("okpay_node_info").await >= 1.0);
}

#[tokio::test]
async fn the_cluster_view_on_redis_is_shared() {
    let redis = RedisServer::start();
    let app = node(&redis.url(), 10).await;
    let r = app.get("/v1/admin/cluster", ADMIN).await;
    assert_eq!(r.status(), 200);
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["mode"], "shared");
    assert!(!view["nodes"].as_array().unwrap().is_empty());
}

async fn cluster_node(url: &str, name: &str) -> TestApp {
    cluster_node_beating(url, name, Duration::from_millis(300)).await
}

/// A cluster-mode node whose sockets send a heartbeat (and re-check their
/// session on it) every `heartbeat`.
async fn cluster_node_beating(url: &str, name: &str, heartbeat: Duration) -> TestApp {
    use okpay_engine::cluster::{ClusterConfig, LeaseConfig, NodeId};
    let (url, name) = (url.to_owned(), name.to_owned());
    TestApp::spawn_with(move |s| {
        s.ws_heartbeat = heartbeat;
        s.redis_url = Some(url);
        let id = NodeId::parse(&name).unwrap();
        let mut cluster = ClusterConfig::new(id.clone());
        cluster.leases = LeaseConfig {
            ttl: Duration::from_millis(1500),
            renew_every: Duration::from_millis(300),
            margin: Duration::from_millis(200),
        };
        s.node_id = Some(id);
        s.runtime.shards = 8;
        s.runtime.cluster = Some(cluster);
    })
    .await
}

/// Waits (bounded) until two nodes split the 8 shards.
async fn split(a: &TestApp) {
    for _ in 0..150 {
        let view: Value = a
            .get("/v1/admin/cluster", ADMIN)
            .await
            .json()
            .await
            .unwrap();
        let nodes = view["nodes"].as_array().unwrap();
        if nodes.len() == 2 && nodes.iter().all(|n| n["shards"] == 4) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the two nodes never split the shards");
}

#[tokio::test]
async fn a_session_revoked_through_one_node_is_refused_by_the_other_and_its_socket_there_closes() {
    let redis = RedisServer::start();
    let a = cluster_node(&redis.url(), "node-a").await;
    // B's heartbeat is far off: its socket must close on the revocation
    // itself (heard on the bus), not at the next heartbeat's check.
    let b = cluster_node_beating(&redis.url(), "node-b", Duration::from_secs(60)).await;
    split(&a).await;
    let (id, token) = a.user("across@example.com").await;
    // B validates the session (and caches it), and serves its socket.
    assert_eq!(b.get("/v1/account", &token).await.status(), 200);
    let mut ws = WsClient::connect(&b, "/v1/stream", &token).await;
    ws.assert_quiet().await;
    // An event of the account made through A reaches the socket on B.
    a.freeze(&id, "checking").await;
    let v = ws.event().await;
    assert_eq!(v["type"], "account.status_changed", "{v}");
    assert_eq!(v["data"]["to"], "frozen", "{v}");
    a.unfreeze(&id, "checked").await;
    assert_eq!(ws.event().await["data"]["to"], "active");
    // Logged out through A: B refuses the token from its next request on.
    assert_eq!(a.delete("/v1/sessions/current", &token).await.status(), 204);
    let mut refused = false;
    for _ in 0..100 {
        if b.get("/v1/account", &token).await.status() == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "B still accepts a session revoked through A");
    match ws.next_within(Duration::from_secs(10)).await {
        Some(Frame::Close(Some((code, _)))) => assert_eq!(code, 1008),
        other => panic!("the socket on B stayed open: {other:?}"),
    }
}

#[tokio::test]
async fn the_cluster_view_shows_both_nodes_their_shards_and_epochs() {
    let redis = RedisServer::start();
    let a = cluster_node(&redis.url(), "node-a").await;
    let b = cluster_node(&redis.url(), "node-b").await;
    split(&a).await;
    let r = a.get("/v1/admin/cluster", ADMIN).await;
    assert_eq!(r.status(), 200);
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["node"], "node-a");
    assert_eq!(view["mode"], "shared");
    let nodes = view["nodes"].as_array().unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(names, ["node-a", "node-b"], "{view}");
    assert!(nodes.iter().all(|n| n["shards"] == 4), "{view}");
    assert!(nodes
        .iter()
        .all(|n| n["heartbeat_age_ms"].as_u64().unwrap() < 1_500));
    assert_eq!(nodes[0]["this_node"], true);
    let shards = view["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 8);
    assert!(
        shards.iter().all(|s| s["epoch"].as_u64().unwrap() > 0),
        "{view}"
    );
    // B says the same of who owns what.
    let from_b: Value = b
        .get("/v1/admin/cluster", ADMIN)
        .await
        .json()
        .await
        .unwrap();
    let owners = |v: &Value| -> Vec<Value> {
        v["shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["owner"].clone())
            .collect()
    };
    assert_eq!(owners(&view), owners(&from_b));
    assert_eq!(from_b["node"], "node-b");
}

#[tokio::test]
async fn a_charge_lock_taken_on_one_node_holds_off_the_other_until_freed() {
    use okpay_engine::ids::IdempotencyKey;
    use okpay_gateway::idempotency::ChargeLock;
    let redis = RedisServer::start();
    let coord = |url: String| async move {
        let store = Arc::new(RedisStore::connect(&url).await.unwrap());
        Arc::new(RedisCoord::new(store, &url).unwrap()) as Arc<dyn Coord>
    };
    let (ca, cb) = (coord(redis.url()).await, coord(redis.url()).await);
    let key = IdempotencyKey::parse("dep-1").unwrap();
    let held = ChargeLock::take(&ca, AccountId(9), &key)
        .await
        .unwrap()
        .expect("a shared lock");
    let waiting = tokio::spawn({
        let (cb, key) = (cb.clone(), key.clone());
        async move {
            ChargeLock::take(&cb, AccountId(9), &key)
                .await
                .map(|l| l.is_some())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "B charged while A held the key");
    // Another key or account is free meanwhile.
    assert!(ChargeLock::take(&cb, AccountId(10), &key)
        .await
        .unwrap()
        .is_some());
    drop(held);
    let got = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("B got the lock once A freed it")
        .unwrap();
    assert!(matches!(got, Ok(true)));
}

#[tokio::test]
async fn maintenance_switched_on_one_node_is_pushed_to_sockets_on_the_other() {
    let redis = RedisServer::start();
    let a = node(&redis.url(), 10).await;
    let (_, token) = a.user("pushed@example.com").await;
    // B starts after the account exists (it recovers it from the log) and
    // only reads it: it serves the socket.
    let b = node(&redis.url(), 10).await;
    let mut ws = WsClient::connect(&b, "/v1/stream", &token).await;
    ws.assert_quiet().await;
    a.maintenance(true, Some("moving racks")).await;
    let v = ws.json().await;
    assert_eq!(v["type"], "system.status", "{v}");
    assert_eq!(v["data"]["maintenance"], true, "{v}");
    a.maintenance(false, None).await;
    let v = ws.json().await;
    assert_eq!(v["data"]["maintenance"], false, "{v}");
}

/// A background job every node starts (the payout resubmission, the hourly
/// trims) runs on one node per period: the first to claim it; the others,
/// and the same node again, are refused until the period ends.
#[tokio::test]
async fn a_background_job_runs_on_one_node_per_period() {
    use okpay_gateway::jobs;
    let redis = RedisServer::start();
    let coord = |url: String| async move {
        let store = Arc::new(RedisStore::connect(&url).await.unwrap());
        Arc::new(RedisCoord::new(store, &url).unwrap()) as Arc<dyn Coord>
    };
    let (ca, cb) = (coord(redis.url()).await, coord(redis.url()).await);
    let period = Duration::from_secs(3);
    assert!(jobs::claim(&ca, "trim", period).await);
    assert!(
        !jobs::claim(&cb, "trim", period).await,
        "a second node ran it"
    );
    assert!(
        !jobs::claim(&ca, "trim", period).await,
        "run twice in one period"
    );
    assert!(
        jobs::claim(&cb, "resume", period).await,
        "jobs are independent"
    );
    tokio::time::sleep(period + Duration::from_millis(300)).await;
    assert!(
        jobs::claim(&cb, "trim", period).await,
        "the next period runs again"
    );
}
