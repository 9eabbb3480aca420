//! Shared set-up for the criterion benchmarks: a policy that lets a few thousand
//! accounts carry heavy load (fraud rules stay on, with raised thresholds), and a
//! funded population of accounts.

pub mod lua_baseline;
pub mod redis_server;

use std::sync::Arc;

use okpay_engine::domain::command::{DepositMethod, Profile};
use okpay_engine::ids::{AccountId, IdempotencyKey};
use okpay_engine::money::{Amount, Currency};
use okpay_engine::policy::Policy;
use okpay_engine::store::Store;
use okpay_engine::{Engine, EngineConfig, RuntimeConfig};
use rust_decimal::Decimal;

/// The default policy with load-test thresholds: velocity, fan-out and daily limits
/// raised so random traffic between many accounts is not blocked, every rule still
/// evaluated on every operation.
pub fn load_policy() -> Policy {
    let mut p = Policy::default();
    p.tier0.daily_out_max = Decimal::from(1_000_000_000i64);
    p.tier0.single_max = Decimal::from(1_000_000i64);
    p.fraud.velocity_max_ops = 1_000_000;
    p.fraud.fan_out_max_new_recipients = 1_000_000;
    p.fraud.challenge_over = Decimal::from(1_000_000i64);
    p
}

pub fn cny() -> Currency {
    Currency::new("CNY", 2).unwrap()
}

pub fn amount(s: &str) -> Amount {
    Amount::parse(s, cny()).unwrap()
}

pub fn key(s: String) -> IdempotencyKey {
    IdempotencyKey::parse(&s).unwrap()
}

/// Starts an engine with the load policy over `store`.
pub async fn start_engine(store: Arc<dyn Store>) -> Engine {
    start_engine_with(store, RuntimeConfig::default()).await
}

/// [`start_engine`] with another runtime configuration.
pub async fn start_engine_with(store: Arc<dyn Store>, runtime: RuntimeConfig) -> Engine {
    Engine::start(
        EngineConfig {
            policy: load_policy(),
            runtime,
            ..EngineConfig::default()
        },
        store,
    )
    .await
    .expect("the engine starts")
}

/// Opens `n` accounts and deposits `funds` CNY into each.
pub async fn funded_accounts(engine: &Engine, n: usize, funds: &str) -> Vec<AccountId> {
    use futures::StreamExt;
    let ids: Vec<AccountId> = (0..n).map(|_| AccountId::random()).collect();
    futures::stream::iter(ids.iter().copied())
        .map(|id| {
            let engine = engine.clone();
            let funds = amount(funds);
            async move {
                engine
                    .open_account_with_id(id, Profile::default())
                    .await
                    .unwrap();
                engine
                    .deposit(
                        id,
                        key(format!("fund-{id}")),
                        funds,
                        DepositMethod::BankCard,
                    )
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(256)
        .collect::<Vec<_>>()
        .await;
    ids
}

/// The resident set size of this process, in MiB.
pub fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU time this process has used so far (all threads, user + system), from
/// `/proc/self/stat` in clock ticks of 10 ms. On a shared, noisy machine the CPU a
/// run costs per operation is steadier than its throughput.
pub fn process_cpu() -> std::time::Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which ends with the last ')'): utime and
    // stime are the 12th and 13th of them.
    let ticks: u64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|f| f.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    std::time::Duration::from_millis(ticks * 10)
}

/// The `okpay` server's allocator settings ([`okpay_gateway::allocator`]).
pub use okpay_gateway::allocator::keep_freed_memory;
