//! The OKPay load-test harness, as a library: [`run`] takes a [`Config`] and
//! returns a [`Report`]; the `loadtest` binary is a thin command line around it
//! and the smoke test calls it against an in-process server.
//!
//! A run against the API has four phases: set-up through the public API
//! (`setup.rs`: register, log in, KYC when needed, fund), websocket subscribers
//! (`ws.rs`), the load (`load.rs`, open or closed loop, measured in `stats.rs`;
//! its transfers go over the lean HTTP/1.1 client of `transfers.rs` and
//! `http1.rs`, everything else over reqwest in `client.rs`), and the end checks
//! (`checks.rs`). `--baseline redis-lua` runs the same load
//! shape against a Redis Lua script instead (`baseline.rs`). Traffic only goes to
//! loopback addresses (`target.rs`).

pub mod api_target;
pub mod baseline;
pub mod checks;
pub mod client;
pub mod cpu;
pub mod http1;
pub mod json_text;
pub mod load;
pub mod money;
pub mod plot;
pub mod probes;
pub mod report;
pub mod schedule;
pub mod setup;
pub mod stats;
pub mod target;
pub mod transfers;
pub mod ws;
pub mod zipf;

use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::api_target::ApiTarget;
use crate::baseline::LuaTarget;
use crate::checks::CheckResults;
use crate::client::Api;
use crate::report::Params;
pub use crate::report::Report;
pub use crate::schedule::Rate;
use crate::setup::{KycMode, SetupPlan};
use crate::stats::{LatencyMs, Recorder, Summary};
use crate::ws::{DeliveryTracker, WsStats};

/// Funding per account when none is given: at least this much.
const FUND_MINOR_MIN: i64 = 100_000;

/// Funding per account when none is given: at most this much.
const FUND_MINOR_MAX: i64 = 1_000_000_000;

/// The closed loop's throughput is unknown before the run; funding assumes at
/// most this many transfers per second (the engine on a small machine does less).
const ASSUMED_MAX_TPS: f64 = 5_000.0;

/// How long after the load the harness waits for websocket frames still due.
const WS_GRACE: Duration = Duration::from_secs(3);

/// Every setting of a run. [`Config::new`] has the command line's defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// The API's base URL (loopback only).
    pub url: String,
    pub admin_token: String,
    pub accounts: usize,
    pub duration: Duration,
    pub rate: Rate,
    pub connections: usize,
    pub ws_subscribers: usize,
    /// Zipf exponent of the recipients (0: uniform).
    pub zipf: f64,
    pub seed: u64,
    /// Deposited into each account; `None`: enough for the run's expected
    /// outflow twice over (see [`auto_fund_minor`]).
    pub fund_per_account_minor: Option<i64>,
    pub kyc: KycMode,
    pub request_timeout: Duration,
    /// How long in-flight requests may finish after `duration`.
    pub drain: Duration,
    /// The start of the load left out of the steady-state latency (reported
    /// beside the whole run's).
    pub warmup: Duration,
    /// Acked transfers checked in both histories at the end, at most.
    pub check_sample: usize,
    /// Set-up calls in flight at once (each one hashes a password on the server).
    pub setup_parallel: usize,
    /// Draw progress bars on stderr.
    pub progress: bool,
    /// Run the Redis Lua baseline at this Redis URL instead of the API.
    pub redis_baseline: Option<String>,
    /// The server's process id on this machine, to report its CPU per transfer.
    pub server_pid: Option<u32>,
    /// Other processes, the servers' Redis and nodes' metrics read around the
    /// load (see [`probes`]).
    pub probes: probes::Probes,
}

impl Config {
    pub fn new(url: impl Into<String>, admin_token: impl Into<String>) -> Config {
        Config {
            url: url.into(),
            admin_token: admin_token.into(),
            accounts: 1000,
            duration: Duration::from_secs(30),
            rate: Rate::Max,
            connections: 64,
            ws_subscribers: 200,
            zipf: 1.0,
            seed: 1,
            fund_per_account_minor: None,
            kyc: KycMode::Auto,
            request_timeout: Duration::from_secs(10),
            drain: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            check_sample: 200,
            setup_parallel: 8,
            progress: true,
            redis_baseline: None,
            server_pid: None,
            probes: probes::Probes::default(),
        }
    }
}

/// Enough for each account to send its share of the run twice over, at the
/// largest amount: `2 × transfers/accounts × 5.00`, within fixed bounds.
pub fn auto_fund_minor(rate: Rate, duration: Duration, accounts: usize) -> i64 {
    let tps = match rate {
        Rate::PerSecond(r) => r,
        Rate::Max => ASSUMED_MAX_TPS,
    };
    let per_account = tps * duration.as_secs_f64() / accounts.max(1) as f64;
    let minor = (2.0 * per_account * load::AMOUNT_MINOR_MAX as f64).ceil();
    // Rounded up to whole major units, for readable deposits.
    let minor = (minor as i64).clamp(FUND_MINOR_MIN, FUND_MINOR_MAX);
    (minor + 99) / 100 * 100
}

/// Runs the whole test and returns its report (whose `checks` say whether it
/// passed). Errors are set-up failures: nothing could be measured.
pub async fn run(config: Config) -> anyhow::Result<Report> {
    anyhow::ensure!(config.accounts >= 2, "--accounts must be at least 2");
    anyhow::ensure!(
        config.accounts <= 1_000_000,
        "--accounts must be at most 1000000"
    );
    anyhow::ensure!(
        (1..=10_000).contains(&config.connections),
        "--connections must be 1..=10000"
    );
    let fund_minor = config
        .fund_per_account_minor
        .unwrap_or_else(|| auto_fund_minor(config.rate, config.duration, config.accounts));
    anyhow::ensure!(fund_minor > 0, "funding per account must be positive");
    // The run tag makes e-mails and idempotency keys unique across runs on the
    // same server; it is random even for a fixed --seed, which only fixes traffic.
    let run_tag = format!("lt{:08x}", rand::random::<u32>());
    match config.redis_baseline.clone() {
        Some(redis) => run_baseline(&config, &redis, fund_minor, &run_tag).await,
        None => run_api(&config, fund_minor, &run_tag).await,
    }
}

fn bar(config: &Config, template: &str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    if !config.progress {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

/// Shows the load's progress until `stop` flips.
fn progress_ticker(
    bar: ProgressBar,
    recorder: Arc<Recorder>,
    duration: Duration,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    bar.set_length(duration.as_secs().max(1));
    let handle = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = stopped.changed() => break,
                _ = tick.tick() => {
                    let elapsed = recorder.start().elapsed();
                    let p = recorder.progress();
                    bar.set_position(elapsed.as_secs().min(duration.as_secs()));
                    let tps = p.acked as f64 / elapsed.as_secs_f64().max(1e-3);
                    bar.set_message(format!("acked {} ({tps:.0}/s), errors {}", p.acked, p.errors));
                }
            }
        }
        bar.finish_and_clear();
    });
    (stop, handle)
}

/// Drives the load with a progress bar; returns the recorder's summary.
async fn load_phase<T: load::TransferTarget>(
    config: &Config,
    target: Arc<T>,
    workload: Arc<load::Workload>,
    on_tick: impl Fn(Instant) + Send + 'static,
) -> Summary {
    let recorder = Arc::new(
        Recorder::new(Instant::now(), config.check_sample, config.seed).with_warmup(config.warmup),
    );
    let (stop, ticker) = progress_ticker(
        bar(config, "{spinner} load [{bar:40}] {pos}/{len} s {msg}"),
        recorder.clone(),
        config.duration,
    );
    // Periodic housekeeping (stale websocket marks) while the load runs.
    let (stop_housekeeping, mut housekeeping_stopped) = tokio::sync::watch::channel(false);
    let housekeeping = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = housekeeping_stopped.changed() => break,
                _ = tick.tick() => on_tick(Instant::now()),
            }
        }
    });
    let shape = load::LoadShape {
        rate: config.rate,
        duration: config.duration,
        connections: config.connections,
        request_timeout: config.request_timeout,
        drain: config.drain,
        seed: config.seed,
    };
    let probe_client = reqwest::Client::new();
    let probes_before = if config.probes.is_empty() {
        None
    } else {
        Some(config.probes.snapshot(&probe_client).await)
    };
    let cpu_before = cpu::Mark::now(config.server_pid);
    load::drive(target, workload, shape, recorder.clone()).await;
    let cpu_after = cpu::Mark::now(config.server_pid);
    let probes_after = match probes_before {
        Some(_) => Some(config.probes.snapshot(&probe_client).await),
        None => None,
    };
    let _ = stop.send(true);
    let _ = stop_housekeeping.send(true);
    let _ = ticker.await;
    let _ = housekeeping.await;
    let mut summary = recorder.finish();
    summary.cpu = cpu_before.per_transfer(&cpu_after, summary.acked);
    if let (Some(before), Some(after)) = (probes_before, probes_after) {
        summary.costs = Some(before.per_transfer(&after, summary.acked));
    }
    summary
}

async fn run_api(config: &Config, fund_minor: i64, run_tag: &str) -> anyhow::Result<Report> {
    let base = target::LoopbackUrl::parse(&config.url, &["http"])?;
    anyhow::ensure!(
        !config.admin_token.is_empty(),
        "--admin-token is required against the API (KYC approval and the ledger check)"
    );
    let api = Api::new(
        base.clone(),
        config.admin_token.clone(),
        config.connections,
        config.request_timeout,
    )?;
    let setup_bar = bar(config, "{spinner} set-up [{bar:40}] {pos}/{len} {msg}");
    let population = setup::populate(
        &api,
        SetupPlan {
            count: config.accounts,
            fund_minor,
            largest_transfer_minor: load::AMOUNT_MINOR_MAX,
            kyc: config.kyc,
            parallel: config.setup_parallel,
        },
        run_tag,
        &setup_bar,
    )
    .await?;
    setup_bar.finish_and_clear();
    let users = Arc::new(population.users.clone());

    let subscribers_n = config.ws_subscribers.min(config.accounts);
    let tracker = Arc::new(DeliveryTracker::new(subscribers_n));
    let subscribers = if subscribers_n > 0 {
        let tokens: Vec<String> = users[..subscribers_n]
            .iter()
            .map(|u| u.token.clone())
            .collect();
        let subs = ws::subscribe(&base, &tokens, tracker.clone(), 16).await?;
        // Let the server finish registering the subscriptions behind the
        // handshakes before the first transfer.
        tokio::time::sleep(Duration::from_millis(200)).await;
        Some(subs)
    } else {
        None
    };

    let workload = Arc::new(load::Workload::new(
        config.accounts,
        config.zipf,
        format!("{run_tag}-t"),
    )?);
    let transfers = transfers::Transfers::new(&base, &users, config.connections)?;
    // The load's connections are open before its clock starts (as a client
    // fleet's keep-alive connections are); the closed loop uses all of them,
    // the open loop as many as its requests in flight need.
    transfers
        .open(config.connections)
        .await
        .map_err(|e| anyhow::anyhow!("opening the load's connections: {}", e.detail))?;
    let target = Arc::new(ApiTarget {
        transfers,
        users: users.clone(),
        tracker: (subscribers_n > 0).then(|| tracker.clone()),
    });
    let prune = tracker.clone();
    let summary = load_phase(config, target, workload, move |now| prune.prune(now)).await;

    let ws_stats = match subscribers {
        Some(subs) => {
            let until = Instant::now() + WS_GRACE;
            while tracker.waiting() > 0 && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            subs.close().await;
            Some(tracker.stats())
        }
        None => None,
    };

    let checks = checks::run(
        &api,
        &users,
        &summary.sample,
        population.funded_minor,
        summary.fees_minor,
    )
    .await;

    let params = Params {
        target: "okpay".into(),
        url: base.as_str().to_owned(),
        accounts: config.accounts,
        duration_s: config.duration.as_secs_f64(),
        rate: config.rate.to_string(),
        connections: config.connections,
        ws_subscribers: subscribers_n,
        zipf: config.zipf,
        seed: config.seed,
        fund_per_account: money::format_minor(fund_minor),
        kyc_approved: population.kyc_approved,
        request_timeout_s: config.request_timeout.as_secs_f64(),
        warmup_s: config.warmup.as_secs_f64(),
        redis_appendfsync: None,
    };
    let mut notes = population.notes;
    if let Some(ws) = &ws_stats {
        if ws.missing > 0 {
            notes.push(format!(
                "{} acknowledged transfers to subscribers had no websocket frame within {:?} of the end",
                ws.missing, WS_GRACE
            ));
        }
    }
    Ok(report(
        params,
        summary,
        ws_stats,
        checks,
        population.funded_minor,
        notes,
    ))
}

async fn run_baseline(
    config: &Config,
    redis: &str,
    fund_minor: i64,
    run_tag: &str,
) -> anyhow::Result<Report> {
    let base = target::LoopbackUrl::parse(redis, &["redis"])?;
    let (lua, info) = LuaTarget::setup(
        base.as_str(),
        config.connections,
        config.accounts,
        fund_minor,
    )
    .await?;
    let lua = Arc::new(lua);
    let workload = Arc::new(load::Workload::new(
        config.accounts,
        config.zipf,
        format!("{run_tag}-b"),
    )?);
    let summary = load_phase(config, lua.clone(), workload, |_| {}).await;
    let funded_minor = fund_minor * config.accounts as i64;
    let checks = lua.check(&summary.sample, funded_minor).await;
    let mut notes = Vec::new();
    if info.appendfsync != "always" {
        notes.push(format!(
            "this Redis has appendfsync {:?}, not \"always\": its acknowledgements are not durable like the engine's",
            info.appendfsync
        ));
    }
    let params = Params {
        target: "redis-lua".into(),
        url: base.redacted(),
        accounts: config.accounts,
        duration_s: config.duration.as_secs_f64(),
        rate: config.rate.to_string(),
        connections: config.connections,
        ws_subscribers: 0,
        zipf: config.zipf,
        seed: config.seed,
        fund_per_account: money::format_minor(fund_minor),
        kyc_approved: false,
        request_timeout_s: config.request_timeout.as_secs_f64(),
        warmup_s: config.warmup.as_secs_f64(),
        redis_appendfsync: Some(info.appendfsync),
    };
    Ok(report(params, summary, None, checks, funded_minor, notes))
}

fn report(
    params: Params,
    summary: Summary,
    ws: Option<WsStats>,
    checks: CheckResults,
    funded_minor: i64,
    mut notes: Vec<String>,
) -> Report {
    notes.extend(checks.notes);
    for (label, detail) in &summary.first_error {
        notes.push(format!("example {label}: {detail}"));
    }
    let elapsed_s = summary.elapsed.as_secs_f64();
    Report {
        params,
        throughput_tps: if elapsed_s > 0.0 {
            summary.acked as f64 / elapsed_s
        } else {
            0.0
        },
        acked: summary.acked,
        errors_total: summary.errors.values().sum(),
        errors: summary.errors,
        latency_ms: LatencyMs::of(&summary.latency),
        steady_latency_ms: (!summary.steady_latency.is_empty())
            .then(|| LatencyMs::of(&summary.steady_latency)),
        ws_delivery_ms: ws,
        cpu_us_per_transfer: summary.cpu,
        costs: summary.costs,
        checks: checks.checks,
        funded: money::format_minor(funded_minor),
        balances: money::format_minor(checks.balances_minor),
        transfer_fees: money::format_minor(summary.fees_minor),
        history_sampled: checks.history_sampled,
        elapsed_s,
        notes,
        series: summary.series,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automatic_funding_covers_the_run_within_bounds() {
        // 100/s for 60 s over 10 accounts: 600 transfers each, ≤ 5.00: 3,000.00, ×2.
        assert_eq!(
            auto_fund_minor(Rate::PerSecond(100.0), Duration::from_secs(60), 10),
            600_000
        );
        // A tiny run still gets the floor (1,000.00).
        assert_eq!(
            auto_fund_minor(Rate::PerSecond(1.0), Duration::from_secs(1), 1000),
            FUND_MINOR_MIN
        );
        assert_eq!(
            auto_fund_minor(Rate::Max, Duration::from_secs(7 * 86_400), 2),
            FUND_MINOR_MAX
        );
    }

    #[test]
    fn the_load_policy_file_is_one_the_server_accepts() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/okpay-loadtest.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let file: okpay_gateway::config::FileConfig = toml::from_str(&text).unwrap();
        let policy = file.policy.clone().expect("a [policy] section");
        policy.validate().unwrap();
        let defaults = okpay_engine::policy::Policy::default();
        // Raised so load is not mistaken for fraud...
        assert!(policy.fraud.velocity_max_ops >= 1_000_000);
        assert!(policy.fraud.fan_out_max_new_recipients >= 1_000_000);
        let big = rust_decimal::Decimal::from(1_000_000);
        assert!(policy.tier0.daily_out_max >= big && policy.tier1.daily_out_max >= big);
        // The split-payment rule sums a day of each sender's transfers: a fast
        // run would reach the default 1,000.00 in minutes and answer 202.
        assert!(policy.fraud.challenge_over >= big);
        // ...but the rules stay on, and the rest is the contract's defaults.
        assert!(
            policy.fraud.challenge_over > rust_decimal::Decimal::new(load::AMOUNT_MINOR_MAX, 2)
        );
        assert_eq!(policy.transfer_fee, defaults.transfer_fee);
        assert_eq!(policy.deposit_fees, defaults.deposit_fees);
        assert_eq!(policy.currencies, defaults.currencies);
        let settings = okpay_gateway::config::Settings::resolve(Default::default(), file);
        assert_eq!(settings.policy, policy);
    }

    #[tokio::test]
    async fn non_loopback_urls_are_refused_before_any_traffic() {
        let mut c = Config::new("http://192.0.2.1:8080", "t");
        c.progress = false;
        let e = run(c).await.unwrap_err().to_string();
        assert!(e.contains("not a loopback"), "{e}");
        let mut c = Config::new("http://127.0.0.1:1", "t");
        c.redis_baseline = Some("redis://192.0.2.1:6379/".into());
        let e = run(c).await.unwrap_err().to_string();
        assert!(e.contains("not a loopback"), "{e}");
    }
}
