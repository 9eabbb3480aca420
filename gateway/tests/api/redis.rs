//! The server on Redis instead of the embedded store: the same user story against a
//! private `redis-server`, data that outlives a server restart, and the start-up
//! durability check (`--strict-durability` refuses a careless Redis, standalone or
//! any master of a Redis Cluster).

use okpay_gateway::config::Settings;
use okpay_testsupport::redis_cluster::RedisCluster;
use okpay_testsupport::redis_server::RedisServer;
use serde_json::{json, Value};

use crate::helpers::TestApp;

#[tokio::test]
async fn the_money_story_runs_on_redis_and_survives_a_restart() {
    let redis = RedisServer::start();
    money_story_across_a_restart(redis.url(), redis.url()).await;
}

#[tokio::test]
async fn the_money_story_runs_on_a_redis_cluster_and_survives_a_restart() {
    // Started against one node, restarted against another: either finds the cluster.
    let cluster = RedisCluster::start();
    money_story_across_a_restart(cluster.node_url(0), cluster.node_url(2)).await;
}

/// Deposit and transfer on a server over `url`, then a new server over `again`
/// (the same data) finds logins, balances and history, and recognizes a replay.
async fn money_story_across_a_restart(url: String, again: String) {
    let (alice_id, bob_id, tx_id);
    {
        let app = TestApp::spawn_with(|s| s.redis_url = Some(url.clone())).await;
        let (a, a_token) = app.user("alice@example.com").await;
        let (b, _) = app.user("bob@example.com").await;
        let r = app
            .post_idem(
                "/v1/deposits",
                &a_token,
                "dep-1",
                json!({"amount": "100.00", "currency": "CNY", "method": "bank_card", "card_number": "4111111111111111"}),
            )
            .await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let r = app
            .post_idem(
                "/v1/transfers",
                &a_token,
                "tx-1",
                json!({"to": "bob@example.com", "amount": "30.00", "currency": "CNY"}),
            )
            .await;
        assert_eq!(r.status(), 201);
        let body: Value = r.json().await.unwrap();
        (alice_id, bob_id, tx_id) = (a, b, body["id"].as_str().unwrap().to_owned());
    }
    // A new server process over the same Redis: logins, balances and history are there.
    let app = TestApp::spawn_with(|s| s.redis_url = Some(again.clone())).await;
    let token = app.login("bob@example.com").await;
    let me: Value = app.get("/v1/account", &token).await.json().await.unwrap();
    assert_eq!(me["account_id"], bob_id.as_str());
    assert_eq!(me["balances"][0]["available"], "30.00");
    let history: Value = app
        .get("/v1/transactions", &token)
        .await
        .json()
        .await
        .unwrap();
    let items = history["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], tx_id.as_str());
    assert_eq!(items[0]["counterparty"], alice_id.as_str());
    // Replaying the transfer after the restart is still recognized.
    let alice = app.login("alice@example.com").await;
    let r = app
        .post_idem(
            "/v1/transfers",
            &alice,
            "tx-1",
            json!({"to": "bob@example.com", "amount": "30.00", "currency": "CNY"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<Value>().await.unwrap()["id"], tx_id.as_str());
    let me: Value = app.get("/v1/account", &token).await.json().await.unwrap();
    assert_eq!(me["balances"][0]["available"], "30.00", "applied once");
}

/// A fresh login's token is served from the session cache from its first
/// request: with Redis frozen right after the login, that request still
/// answers from the engine's memory (a token the cache did not hold would need
/// the store's token index first, and wait for Redis).
#[tokio::test]
async fn a_fresh_login_is_served_from_the_session_cache_from_its_first_request() {
    let redis = RedisServer::start();
    let app = TestApp::spawn_with(|s| s.redis_url = Some(redis.url())).await;
    app.register("fresh@example.com").await;
    let token = app.login("fresh@example.com").await;
    redis.pause();
    let first = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        app.get("/v1/account", &token),
    )
    .await;
    redis.resume();
    let first = first.expect("the first request waited for Redis");
    assert_eq!(first.status(), 200, "{}", first.text().await.unwrap());
    // Revoked, it is refused at once, as any cached session is.
    let r = app.delete("/v1/sessions/current", &token).await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    crate::helpers::assert_problem(app.get("/v1/account", &token).await, 401, "UNAUTHENTICATED")
        .await;
}

#[tokio::test]
async fn strict_durability_refuses_a_redis_without_aof() {
    let careless = RedisServer::start_without_aof();
    let settings = Settings {
        redis_url: Some(careless.url()),
        strict_durability: true,
        ..Settings::default()
    };
    let err = match okpay_gateway::open_store(&settings).await {
        Ok(_) => panic!("a Redis without appendonly was accepted under --strict-durability"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("durability"), "{err}");
    // Without the flag it starts (with a loud warning).
    let settings = Settings {
        strict_durability: false,
        ..settings
    };
    assert!(okpay_gateway::open_store(&settings).await.is_ok());
    // A proper Redis passes the check even when strict.
    let proper = RedisServer::start();
    let settings = Settings {
        redis_url: Some(proper.url()),
        strict_durability: true,
        ..Settings::default()
    };
    assert!(okpay_gateway::open_store(&settings).await.is_ok());
}

#[tokio::test]
async fn strict_durability_checks_every_master_of_a_cluster() {
    // The URL names one node; the store finds the cluster and all three masters.
    let careless = RedisCluster::start_with_everysec();
    let settings = Settings {
        redis_url: Some(careless.node_url(2)),
        strict_durability: true,
        ..Settings::default()
    };
    let err = match okpay_gateway::open_store(&settings).await {
        Ok(_) => {
            panic!("a cluster with appendfsync everysec was accepted under --strict-durability")
        }
        Err(e) => e.to_string(),
    };
    assert!(err.contains("everysec"), "{err}");
    let proper = RedisCluster::start();
    let settings = Settings {
        redis_url: Some(proper.node_url(1)),
        strict_durability: true,
        ..Settings::default()
    };
    assert!(okpay_gateway::open_store(&settings).await.is_ok());
}
