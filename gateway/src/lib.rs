//! The OKPay gateway: the HTTP API v1, the websocket streams, the OpenAPI document
//! and `/metrics`, over the engine. [`run`] serves on a listener until a shutdown
//! signal; the `okpay` binary is a few lines around it, and the black-box tests
//! start it on port 0.

pub mod alert_log;
pub mod allocator;
pub mod auth;
pub mod client_ip;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod error;
pub mod idempotency;
pub mod integrations;
pub mod jobs;
pub mod maintenance;
pub mod notifier;
pub mod open_accounts;
pub mod openapi;
pub mod operator_audit;
pub mod operators;
pub mod otp;
pub mod passwords;
pub mod payments;
pub mod rate_limit;
pub mod routes;
pub mod session_cache;
pub mod state;
pub mod step_up;
pub mod stream;
pub mod telemetry;
pub mod webapp;
pub mod ws;

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use anyhow::Context as _;
use okpay_engine::coord::memory::LocalCoord;
use okpay_engine::coord::redis::RedisCoord;
use okpay_engine::coord::Coord;
use okpay_engine::store::embedded::EmbeddedStore;
use okpay_engine::store::redis::RedisStore;
use okpay_engine::store::Store;
use okpay_engine::{Engine, EngineConfig};

use crate::alert_log::AlertLog;
use crate::config::Settings;
use crate::crypto::PiiCipher;
use crate::maintenance::Maintenance;
use crate::notifier::{Notifications, Notifier, Outbox};
use crate::passwords::PasswordHasher;
use crate::payments::{CardProcessor, DevCards, DevPayouts, PayoutProcessor};
use crate::rate_limit::LoginLimits;
use crate::state::AppState;
use crate::stream::Streams;

/// How long the start-up resubmission of pending payouts is claimed for: nodes
/// started within it (a deployment's rollout) resubmit once between them.
const PAYOUTS_RESUME_PERIOD: Duration = Duration::from_secs(60);
/// The same for the start-up pass of notices over every account.
const NOTICES_START_UP_PERIOD: Duration = Duration::from_secs(60);

/// Opens the configured store: Redis when a URL is given (a standalone server or
/// any node of a Redis Cluster, told apart by the store itself; checking the
/// durability settings of every master), the embedded store in the data directory
/// otherwise.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    Ok(open_store_and_coord(settings).await?.0)
}

/// [`open_store`], and the coordination state beside it (see
/// [`okpay_engine::coord`]): on Redis, shared by every node on that Redis;
/// otherwise this process's own.
pub async fn open_store_and_coord(
    settings: &Settings,
) -> anyhow::Result<(Arc<dyn Store>, Arc<dyn Coord>)> {
    match &settings.redis_url {
        Some(url) => {
            let options = okpay_engine::store::redis_config::RedisOptions {
                wait: settings.redis_wait,
                history_groups: settings.history_groups,
                ..Default::default()
            };
            let store = RedisStore::connect_with(url, options)
                .await
                .with_context(|| "connecting to Redis".to_string())?;
            if store.is_cluster() {
                tracing::info!("the Redis URL names a Redis Cluster node: using the whole cluster");
            }
            // On a cluster, every master is checked (each holds a share of the shards).
            let report = store.check_durability().await;
            if !report.is_ok() {
                let problems = report.to_string();
                if settings.strict_durability {
                    anyhow::bail!(
                        "Redis is not configured for durability and --strict-durability is set: {problems}"
                    );
                }
                tracing::warn!(
                    "!!! Redis is NOT configured for durability: acknowledged money may be lost on a crash. Set appendonly yes, appendfsync always, maxmemory-policy noeviction. {problems}"
                );
            }
            let store = Arc::new(store);
            let coord = RedisCoord::new(store.clone(), url)
                .with_context(|| "connecting to Redis".to_string())?;
            Ok((store, Arc::new(coord)))
        }
        None => {
            std::fs::create_dir_all(&settings.data_dir)
                .with_context(|| format!("creating {}", settings.data_dir.display()))?;
            let store = EmbeddedStore::open(&settings.data_dir)
                .with_context(|| format!("opening the store in {}", settings.data_dir.display()))?;
            Ok((Arc::new(store), Arc::new(LocalCoord::new())))
        }
    }
}

/// Builds the application state: store, engine, processors, notifier.
pub async fn build_state(settings: Settings) -> anyhow::Result<AppState> {
    settings.integrations.default_locale()?;
    let (store, coord) = open_store_and_coord(&settings).await?;
    let engine = Engine::start(
        EngineConfig {
            policy: settings.policy.clone(),
            runtime: settings.runtime.clone(),
            clock: settings.clock.0.clone(),
        },
        store,
    )
    .await
    .context("starting the engine")?;
    // Test adapters only with --dev (see `integrations`); without them and without
    // a configured adapter, the feature answers 503 naming the setting.
    integrations::log_missing(&settings);
    let outbox = settings.dev.then(|| Arc::new(Outbox::default()));
    let pii = PiiCipher::new(&resolve_pii_key(&settings)?);
    let integrations = &settings.integrations;
    let mailer = integrations
        .smtp
        .as_ref()
        .map(integrations::smtp::Mailer::new)
        .transpose()?;
    let sms = integrations
        .sms
        .as_ref()
        .map(integrations::sms::SmsGateway::new)
        .transpose()?;
    let webhooks = Arc::new(integrations::webhooks::Webhooks::new(
        engine.store().clone(),
        pii.clone(),
        engine.clock().clone(),
    )?);
    let deliveries = integrations::deliveries::Deliveries::new(
        engine.store().clone(),
        pii.clone(),
        integrations::deliveries::Channels {
            mailer,
            sms,
            webhooks,
        },
        integrations.delivery.clone(),
        coord.clone(),
        engine.clock().clone(),
    );
    let notifier: Arc<dyn Notifier> = Arc::new(Notifications {
        dev_outbox: outbox.clone(),
        deliveries: deliveries.clone(),
        minutes: u64::from(settings.policy.security.code_ttl_s / 60),
    });
    let cards: Option<Arc<dyn CardProcessor>> = match &settings.integrations.processor {
        Some(p) => Some(Arc::new(integrations::cards::HttpCards::new(p)?)),
        None => settings
            .dev
            .then(|| Arc::new(DevCards::new(engine.clone())) as Arc<dyn CardProcessor>),
    };
    let payouts: Option<Arc<dyn PayoutProcessor>> = match &settings.integrations.payouts {
        Some(p) => Some(integrations::payouts::HttpPayouts::new(
            engine.clone(),
            deliveries.clone(),
            p,
        )?),
        None => settings.dev.then(|| {
            DevPayouts::new(engine.clone(), settings.payout_delay) as Arc<dyn PayoutProcessor>
        }),
    };
    let streams = Streams::with_per_ip(settings.ws_max_connections, settings.ws_max_per_ip);
    let maintenance = Maintenance::new(streams.system.clone(), coord.clone());
    let limits = LoginLimits::new(
        coord.clone(),
        settings.login_failures_per_ip,
        settings.login_failures_per_login,
        settings.login_failure_window,
    )
    .with_lockout(
        settings.policy.security.lockout_failures,
        std::time::Duration::from_secs(u64::from(settings.policy.security.lockout_s)),
    )
    .with_reset_confirms(
        settings.policy.security.reset_failures_max,
        std::time::Duration::from_secs(u64::from(settings.policy.security.failures_window_s)),
    );
    let kyc_uploads = Arc::new(tokio::sync::Semaphore::new(settings.kyc_uploads));
    let node = node_name(&settings);
    Ok(AppState {
        engine,
        passwords: PasswordHasher::with_concurrency(settings.hash_concurrency),
        outbox,
        notifier,
        cards,
        payouts,
        streams,
        maintenance,
        metrics: telemetry::prometheus(),
        settings: Arc::new(settings),
        pii,
        limits,
        alerts: Arc::new(AlertLog::new(coord.clone())),
        deliveries,
        kyc_uploads,
        sessions: Arc::new(session_cache::SessionCache::default().shared_through(coord.clone())),
        coord,
        node,
        accounts: Arc::new(open_accounts::OpenAccounts::default()),
    })
}

/// This node's name: its `--node-id` in cluster mode, else the host name, else
/// `local`.
fn node_name(settings: &Settings) -> String {
    match &settings.node_id {
        Some(id) => id.to_string(),
        None => std::env::var("HOSTNAME")
            .ok()
            .filter(|n| okpay_engine::cluster::NodeId::parse(n).is_ok())
            .unwrap_or_else(|| "local".into()),
    }
}

/// The key for personal data at rest: the configured one (`--kyc-key` /
/// `OKPAY_KYC_KEY` / `[server] kyc_key`); unset in dev mode, a fixed dev key;
/// unset otherwise, a random key created once in `<data-dir>/pii.key` (mode 0600)
/// and reused, with a loud warning: production must configure the key (in a secret
/// store, not next to the data), and every node must use the same one. A key that
/// does not parse stops the server rather than writing data no one can read.
pub fn resolve_pii_key(settings: &Settings) -> anyhow::Result<[u8; 32]> {
    if let Some(text) = &settings.kyc_key {
        return crypto::parse_key(&text.0).map_err(|e| anyhow::anyhow!("invalid kyc_key: {e}"));
    }
    if settings.dev {
        tracing::warn!("no kyc_key configured: dev mode uses a fixed, public dev key");
        return Ok(crypto::DEV_KEY);
    }
    let path = settings.data_dir.join("pii.key");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return crypto::parse_key(&text)
            .map_err(|e| anyhow::anyhow!("invalid key in {}: {e}", path.display()));
    }
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating {}", settings.data_dir.display()))?;
    let key: [u8; 32] = rand::random();
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    write_private(&path, &hex).with_context(|| format!("writing {}", path.display()))?;
    tracing::warn!(
        path = %path.display(),
        "!!! no kyc_key configured: generated a key for personal data next to the data. Set OKPAY_KYC_KEY in production."
    );
    Ok(key)
}

/// Writes a file readable by its owner only (where the platform has modes).
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)?.write_all(text.as_bytes())
}

/// Sets the kernel's accept queue of `listener` to `backlog` connections (a
/// second `listen` on a listening socket only changes its backlog). `std`'s
/// `TcpListener::bind` leaves 128: a burst of more new connections than that,
/// e.g. 256 load-test connections and 200 websockets opened together, had
/// connection attempts dropped and retried by the client a second later.
pub fn widen_backlog(listener: &TcpListener, backlog: u32) -> std::io::Result<()> {
    socket2::SockRef::from(listener).listen(backlog.min(i32::MAX as u32) as i32)
}

/// Serves the API on `listener` until `shutdown` resolves or SIGTERM/SIGINT
/// arrives; then stops accepting, drains requests in flight, and flushes the
/// journal (every account snapshots and stops). Must run inside an actix system.
pub async fn run(
    listener: TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()> + 'static,
) -> anyhow::Result<()> {
    let workers = settings.workers;
    let max_connections = settings.max_connections;
    widen_backlog(&listener, settings.listen_backlog)?;
    let json_limit = settings.max_json_body_bytes;
    let state = web::Data::new(build_state(settings).await?);
    let engine = state.engine.clone();
    // Every alert across accounts goes to the operators' list (memory + store
    // index); subscribed before serving so none raised by a request is missed.
    actix_rt::spawn(alert_log::feed(
        engine.subscribe_admin(),
        state.alerts.clone(),
        state.store().clone(),
        state.settings.alerts_kept,
    ));
    // Status changes the engine makes on its own (a fraud rule freezing an account)
    // evict the account's cached sessions; subscribed before serving.
    actix_rt::spawn(session_cache::feed(
        engine.subscribe_admin(),
        state.sessions.clone(),
    ));
    // Other nodes' evictions and maintenance switches (nothing arrives on a
    // single node); maintenance is read once before serving.
    actix_rt::spawn(session_cache::listen(
        state.coord.subscribe(),
        state.sessions.clone(),
    ));
    state.maintenance.reload().await;
    // Notifications to and from the other nodes' websockets, in cluster mode
    // only. A single node on Redis has a shared bus too (session evictions,
    // maintenance), but it hosts every shard and has no peer whose sockets
    // could want its notifications: relaying them anyway cost a JSON encoding
    // and a PUBLISH of every durable batch's notifications (~4% of the server's
    // CPU and a share of Redis's under load), only for Redis to send each
    // message back to its publisher, which drops it.
    if engine.node_id().is_some() {
        engine.relay_notifications(state.coord.clone());
    }
    {
        let state = state.clone();
        let bus = state.coord.subscribe();
        actix_rt::spawn(async move { state.maintenance.listen(bus).await });
    }
    // Per-node gauges (`node` label): this node, and the shards it owns (all of
    // them on a single node), updated every 5 s.
    metrics::gauge!("okpay_node_info", "node" => state.node.clone()).set(1.0);
    {
        let state = state.clone();
        actix_rt::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                // A single node hosts every shard; a cluster node those it leases.
                let owned = match state.engine.node_id() {
                    Some(_) => state.engine.held_shards().len(),
                    None => usize::from(state.engine.layout().shards),
                };
                metrics::gauge!("okpay_node_shards_owned", "node" => state.node.clone())
                    .set(owned as f64);
            }
        });
    }
    // The recipient set reads the stored accounts in the background: start-up does
    // not wait for it (misses ask the engine until it is complete).
    actix_rt::spawn(state.accounts.clone().load(state.engine.clone()));
    // Transfers a crash left in flight are driven to the end in the background, and
    // payouts that were pending are resubmitted.
    {
        let recovering = engine.clone();
        actix_rt::spawn(async move {
            match recovering.recover_in_flight().await {
                Ok(n) if n > 0 => {
                    tracing::info!(transfers = n, "re-driving transfers left in flight")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "recovery sweep failed"),
            }
        });
        // Deposits charged but not credited (or refunded) by an earlier run.
        if let Some(cards) = state.cards.clone() {
            let engine = engine.clone();
            let pii = state.pii.clone();
            let deliveries = state.deliveries.clone();
            let coord = state.coord.clone();
            actix_rt::spawn(async move {
                let n = integrations::charges::recover(&engine, &cards, &pii, &deliveries, &coord)
                    .await;
                if n > 0 {
                    tracing::info!(
                        deposits = n,
                        "recovered deposits left between charge and credit"
                    );
                }
            });
        }
        if let Some(payouts) = state.payouts.clone() {
            let engine = engine.clone();
            let pii = state.pii.clone();
            let coord = state.coord.clone();
            actix_rt::spawn(async move {
                // Nodes starting together resubmit once (see `jobs`); a node
                // starting later resubmits again, which the processor's
                // idempotency key makes harmless.
                if !jobs::claim(&coord, "payouts-resume", PAYOUTS_RESUME_PERIOD).await {
                    return;
                }
                match payments::resume_payouts(&engine, &pii, payouts.as_ref()).await {
                    Ok(n) if n > 0 => tracing::info!(payouts = n, "resumed pending payouts"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "could not resume pending payouts"),
                }
            });
        }
    }
    // The outbox worker: sends queued emails, SMS and webhooks, including those a
    // previous run left in the queue; webhook endpoints are read first.
    if let Err(e) = state.deliveries.webhooks.load().await {
        tracing::warn!(error = %e, "could not read the webhook endpoints");
    }
    actix_rt::spawn(state.deliveries.clone().run());
    // Account status changes and alerts become user notices and webhook events.
    actix_rt::spawn(integrations::events::feed(
        engine.subscribe_admin(),
        state.deliveries.clone(),
    ));
    // The webhook log and the seen callback ids stay bounded by time.
    actix_rt::spawn(integrations::retention::run(
        engine.clone(),
        state.coord.clone(),
    ));
    // Notices (KYC results, status changes, new-device logins, large withdrawals,
    // security changes) derived from the accounts' durable notifications.
    if let Some(kicks) = state.deliveries.take_kicks() {
        let notices = integrations::notices::Notices::new(
            engine.clone(),
            state.deliveries.clone(),
            state.outbox.clone(),
        );
        let coord = state.coord.clone();
        actix_rt::spawn(async move {
            let start_up = jobs::claim(&coord, "notices-start-up", NOTICES_START_UP_PERIOD).await;
            notices.run(kicks, start_up).await;
        });
    }
    let address = listener.local_addr()?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(routes::extract::json_config(json_limit))
            .app_data(routes::extract::path_config())
            .app_data(routes::extract::query_config())
            .wrap(from_fn(telemetry::track))
            .configure(routes::configure)
            .configure(crate::webapp::configure)
            .default_service(web::to(routes::not_found))
    })
    // No Nagle: websocket frames are small and frequent, and Nagle holding one back
    // until the client's delayed ACK adds ~40 ms to live delivery.
    .on_connect(|conn, _ext| {
        if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
            let _ = tcp.set_nodelay(true);
        }
    })
    .workers(workers)
    .max_connections(max_connections)
    .shutdown_timeout(10)
    .listen(listener)?
    .run();
    tracing::info!(%address, "okpay listening");
    let handle = server.handle();
    actix_rt::spawn(async move {
        shutdown.await;
        handle.stop(true).await;
    });
    server.await?;
    // Cluster mode: hand this node's shards over (drained, checkpointed,
    // released) so the other nodes serve them at once, not after the lease time.
    engine.leave().await;
    tracing::info!("draining: flushing the journal");
    if !engine.passivate_all(Duration::from_secs(10)).await {
        tracing::warn!("some accounts were still busy at shutdown");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pii_key_is_configured_dev_or_created_once_in_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Settings {
            data_dir: dir.path().join("data"),
            ..Settings::default()
        };
        let first = resolve_pii_key(&s).unwrap();
        assert_ne!(first, crypto::DEV_KEY);
        assert_eq!(
            resolve_pii_key(&s).unwrap(),
            first,
            "reused after a restart"
        );
        s.dev = true;
        s.data_dir = dir.path().join("other");
        assert_eq!(resolve_pii_key(&s).unwrap(), crypto::DEV_KEY);
        s.kyc_key = Some(config::Redacted("11".repeat(32)));
        assert_eq!(resolve_pii_key(&s).unwrap(), [0x11; 32]);
        s.kyc_key = Some(config::Redacted("short".into()));
        assert!(resolve_pii_key(&s).is_err());
    }

    #[test]
    fn a_widened_backlog_queues_a_burst_of_connections_nobody_has_accepted_yet() {
        // std's bind leaves 128: the 130th connection attempt of a burst would be
        // dropped (and retried by the client a second later). Nothing accepts
        // here, so every connection below waits in the kernel's queue.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        widen_backlog(&listener, 1024).unwrap();
        let addr = listener.local_addr().unwrap();
        let held: Vec<std::net::TcpStream> = (0..400)
            .map(|i| {
                std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(3))
                    .unwrap_or_else(|e| panic!("connection {i} of the burst not queued: {e}"))
            })
            .collect();
        assert_eq!(held.len(), 400);
    }
}
