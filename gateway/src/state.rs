//! The application state every handler reaches through `web::Data<AppState>`.

use std::sync::Arc;

use okpay_engine::store::Store;
use okpay_engine::Engine;

use crate::config::Settings;
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
    pub streams: Streams,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}

impl AppState {
    pub fn store(&self) -> &Arc<dyn Store> {
        self.engine.store()
    }
}
