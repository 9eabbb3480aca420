//! The application state every handler reaches through `web::Data<AppState>`.

use std::sync::Arc;

use okpay_engine::store::Store;
use okpay_engine::Engine;

use crate::alert_log::AlertLog;
use crate::config::Settings;
use crate::crypto::PiiCipher;
use crate::maintenance::Maintenance;
use crate::notifier::{Notifier, Outbox};
use crate::passwords::PasswordHasher;
use crate::payments::{CardProcessor, PayoutProcessor};
use crate::rate_limit::LoginLimits;
use crate::stream::Streams;

/// Shared by all workers; cloning the `web::Data` is an `Arc` clone.
pub struct AppState {
    pub engine: Engine,
    /// Slots for KYC uploads being read (`routes/kyc.rs`): each holds up to 14 MiB.
    pub kyc_uploads: Arc<tokio::sync::Semaphore>,
    pub settings: Arc<Settings>,
    pub passwords: PasswordHasher,
    /// The dev-mode outbox (codes and messages readable by admins), when `--dev`.
    pub outbox: Option<Arc<Outbox>>,
    pub notifier: Arc<dyn Notifier>,
    /// The card processor; `None` when not configured (deposits answer 503).
    pub cards: Option<Arc<dyn CardProcessor>>,
    /// The payout processor; `None` when not configured (withdrawals answer 503).
    pub payouts: Option<Arc<dyn PayoutProcessor>>,
    pub streams: Streams,
    pub maintenance: Maintenance,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// AES-256-GCM for personal data at rest (KYC data, TOTP secrets).
    pub pii: PiiCipher,
    /// Failed-login limits and the password-reset request limit.
    pub limits: LoginLimits,
    /// Recent alerts across accounts, for operators.
    pub alerts: Arc<AlertLog>,
    /// The durable outbox of emails and SMS.
    pub deliveries: Arc<crate::integrations::deliveries::Deliveries>,
    /// Sessions already validated by the engine (see `session_cache`); every path
    /// that revokes a session evicts its account here before answering.
    pub sessions: Arc<crate::session_cache::SessionCache>,
    /// Accounts that exist, for the recipient check (see `open_accounts`).
    pub accounts: Arc<crate::open_accounts::OpenAccounts>,
    /// What every node on one store shares (rate limits, locks, the bus); this
    /// process's own on the memory and embedded stores.
    pub coord: Arc<dyn okpay_engine::coord::Coord>,
    /// This node's name (in `GET /v1/admin/cluster` and the metrics' `node` label).
    pub node: String,
}

impl AppState {
    pub fn store(&self) -> &Arc<dyn Store> {
        self.engine.store()
    }

    /// Now, by the engine's clock (the only clock the gateway reads).
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        crate::clock::now(&self.engine)
    }
}
