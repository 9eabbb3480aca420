//! The Redis Lua baseline end to end: a throwaway durable `redis-server` (the
//! benches' helper: own loopback port and directory, `appendfsync always`,
//! installed with apt if missing), a one-second closed-loop run, and its checks.

use std::time::Duration;

use benches::redis_server::RedisServer;
use okpay_loadtest::{Config, Rate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_baseline_moves_money_durably_and_passes_its_checks() {
    let redis = RedisServer::start();
    // The API URL is unused by the baseline but still has to be loopback.
    let mut config = Config::new("http://127.0.0.1:1", "");
    config.redis_baseline = Some(redis.url());
    config.accounts = 50;
    config.duration = Duration::from_secs(1);
    config.rate = Rate::Max;
    config.connections = 8;
    config.progress = false;
    config.check_sample = 20;
    let report = okpay_loadtest::run(config).await.expect("the baseline ran");
    println!("{}", report.table());
    assert!(report.acked > 0);
    assert!(report.passed(), "{:#?}", report.notes);
    assert!(report.ws_delivery_ms.is_none());
    assert_eq!(report.params.target, "redis-lua");
    assert_eq!(report.params.redis_appendfsync.as_deref(), Some("always"));
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}
