//! The application state every handler reaches through `web::Data<AppState>`.

use std::sync::Arc;

use okpay_engine::store::Store;
use okpay_engine::Engine;

use crate::config::Settings;
use crate::maintenance::Maintenance;
use crate::notifier::{Notifier, Outbox};
use crate::passwords::PasswordHasher;
use crate::payments::{CardProcessor, PayoutProcessor};
use crate::stream::Streams;

/// Shared by all workers; cloning the `web::Data` is an `Arc` clone.
pub struct AppState {
    pub engine: Engine,
    pub settings: Arc<Settings>,
    pub passwords: PasswordHasher,
    /// The dev-mode outbox (codes and messages readable by admins), when `--dev`.
    pub outbox: Option<Arc<Outbox>>,
    pub notifier: Arc<dyn Notifier>,
    pub cards: Arc<dyn CardProcessor>,
    pub payouts: Arc<dyn PayoutProcessor>,
    /// The dev payout processor (the only one so far), for resuming at start-up.
    pub payouts_dev: Arc<crate::payments::DevPayouts>,
    pub streams: Streams,
    pub maintenance: Maintenance,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}

impl AppState {
    pub fn store(&self) -> &Arc<dyn Store> {
        self.engine.store()
    }
}
