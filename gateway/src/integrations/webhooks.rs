//! Outgoing webhooks for integrators, per the Standard Webhooks spec.
//!
//! Operators register endpoints (`POST /v1/admin/webhooks` with a URL and the
//! event types wanted); each gets its own `whsec_` secret, shown once. Every event
//! of a wanted type is queued for each endpoint in the durable outbox
//! (`deliveries`, channel `webhook`) and POSTed as `{"type", "timestamp", "data"}`
//! with `webhook-id`, `webhook-timestamp` and `webhook-signature` (HMAC-SHA256,
//! `integrations::signature`); anything but a 2xx is retried with backoff, up to
//! the dead letters. Every message sent is kept in the `webhook_log` index, so
//! `POST /v1/admin/webhooks/{id}/replay` sends an endpoint's messages again with
//! their original `webhook-id` (receivers dedupe by it).
//!
//! Event types: `deposit.completed`, `deposit.pending`, `deposit.failed`,
//! `deposit.refunded`, `withdrawal.completed`, `withdrawal.failed`,
//! `account.status_changed`, `alert.raised`.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use okpay_engine::store::Store;
use okpay_engine::time::Clock;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

use super::signature;
use super::DeliveryError;
use crate::crypto::{Field, Owner, PiiCipher};

/// Registered endpoints (key: `whk_` id).
pub const ENDPOINTS_INDEX: &str = "webhook_endpoints";
/// Messages sent, for replays (key: `<endpoint>:<webhook-id>`).
pub const LOG_INDEX: &str = "webhook_log";
/// The event types an endpoint may ask for.
pub const EVENT_TYPES: &[&str] = &[
    "deposit.completed",
    "deposit.pending",
    "deposit.failed",
    "deposit.refunded",
    "withdrawal.completed",
    "withdrawal.failed",
    "account.status_changed",
    "alert.raised",
];
/// Endpoints at most (each event fans out to every one).
pub const MAX_ENDPOINTS: usize = 100;

/// An endpoint as stored (the secret encrypted with the PII key).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    id: String,
    url: String,
    events: Vec<String>,
    secret: String,
    created_at: DateTime<Utc>,
}

/// An endpoint as operators see it (never the secret).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Endpoint {
    /// A `whk_` id.
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub created_at: DateTime<Utc>,
}

/// The registry of endpoints and the HTTP client that calls them.
pub struct Webhooks {
    store: Arc<dyn Store>,
    cipher: PiiCipher,
    client: reqwest::Client,
    endpoints: RwLock<Vec<(Endpoint, String)>>,
    /// The engine's clock: registration times and signature timestamps.
    clock: Arc<dyn Clock>,
}

impl Webhooks {
    pub fn new(
        store: Arc<dyn Store>,
        cipher: PiiCipher,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Webhooks> {
        Ok(Webhooks {
            store,
            cipher,
            clock,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            endpoints: RwLock::new(Vec::new()),
        })
    }

    fn open(&self, s: Stored) -> Option<(Endpoint, String)> {
        let secret = self.cipher.open_text(
            Field::WebhookSecret,
            Owner::Record(&s.id),
            &STANDARD.decode(&s.secret).ok()?,
        )?;
        Some((
            Endpoint {
                id: s.id,
                url: s.url,
                events: s.events,
                created_at: s.created_at,
            },
            secret,
        ))
    }

    /// Reads the registered endpoints (at start-up).
    pub async fn load(&self) -> anyhow::Result<usize> {
        let page = self
            .store
            .scan_index(ENDPOINTS_INDEX, None, MAX_ENDPOINTS)
            .await?;
        let all: Vec<(Endpoint, String)> = page
            .into_iter()
            .filter_map(|(_, text)| serde_json::from_str::<Stored>(&text).ok())
            .filter_map(|s| self.open(s))
            .collect();
        let n = all.len();
        *self.endpoints.write() = all;
        Ok(n)
    }

    /// Registers an endpoint; returns it and its secret (shown once).
    pub async fn register(
        &self,
        url: String,
        events: Vec<String>,
    ) -> Result<(Endpoint, String), RegisterError> {
        if self.endpoints.read().len() >= MAX_ENDPOINTS {
            return Err(RegisterError::Full);
        }
        let secret = format!("whsec_{}", STANDARD.encode(rand::random::<[u8; 24]>()));
        let now = crate::clock::to_chrono(self.clock.now());
        let id = format!("whk_{:016x}", rand::random::<u64>());
        let stored = Stored {
            id: id.clone(),
            url: url.clone(),
            events: events.clone(),
            secret: STANDARD.encode(self.cipher.seal(
                Field::WebhookSecret,
                Owner::Record(&id),
                secret.as_bytes(),
            )),
            created_at: now,
        };
        // unwrap: a struct of strings always serializes.
        let text = serde_json::to_string(&stored).unwrap();
        self.store
            .claim_index(ENDPOINTS_INDEX, &id, &text)
            .await
            .map_err(|e| RegisterError::Storage(e.to_string()))?;
        let endpoint = Endpoint {
            id,
            url,
            events,
            created_at: now,
        };
        self.endpoints
            .write()
            .push((endpoint.clone(), secret.clone()));
        Ok((endpoint, secret))
    }

    /// Removes an endpoint; false when unknown.
    pub async fn remove(&self, id: &str) -> Result<bool, String> {
        if !self.endpoints.read().iter().any(|(e, _)| e.id == id) {
            return Ok(false);
        }
        self.store
            .delete_index(ENDPOINTS_INDEX, id)
            .await
            .map_err(|e| e.to_string())?;
        self.endpoints.write().retain(|(e, _)| e.id != id);
        Ok(true)
    }

    pub fn list(&self) -> Vec<Endpoint> {
        self.endpoints
            .read()
            .iter()
            .map(|(e, _)| e.clone())
            .collect()
    }

    pub fn exists(&self, id: &str) -> bool {
        self.endpoints.read().iter().any(|(e, _)| e.id == id)
    }

    /// The endpoints that want `event`.
    pub fn targets(&self, event: &str) -> Vec<String> {
        self.endpoints
            .read()
            .iter()
            .filter(|(e, _)| e.events.iter().any(|t| t == event))
            .map(|(e, _)| e.id.clone())
            .collect()
    }

    /// POSTs one signed message to an endpoint.
    pub async fn send(
        &self,
        endpoint: &str,
        msg_id: &str,
        body: &str,
    ) -> Result<(), DeliveryError> {
        let Some((url, secret)) = self
            .endpoints
            .read()
            .iter()
            .find(|(e, _)| e.id == endpoint)
            .map(|(e, s)| (e.url.clone(), s.clone()))
        else {
            return Err(DeliveryError::Permanent("the endpoint was removed".into()));
        };
        let ts = self.clock.now().millis().div_euclid(1000);
        let response = self
            .client
            .post(&url)
            .header("content-type", "application/json")
            .header("webhook-id", msg_id)
            .header("webhook-timestamp", ts.to_string())
            .header(
                "webhook-signature",
                signature::sign(&secret, msg_id, ts, body.as_bytes()),
            )
            .body(body.to_owned())
            .send()
            .await
            .map_err(|e| DeliveryError::Retry(format!("webhook endpoint: {e}")))?;
        if response.status().is_success() {
            Ok(())
        } else {
            // Every non-2xx is retried: a receiver's outage must not lose events.
            Err(DeliveryError::Retry(format!(
                "webhook endpoint answered {}",
                response.status()
            )))
        }
    }
}

/// Whether `url` is an http(s) URL.
/// An `http(s)://` URL of printable ASCII without spaces, at most
/// [`MAX_URL_LEN`] characters: exactly the OpenAPI document's pattern, so a client
/// can check it before sending.
pub fn valid_url(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() <= MAX_URL_LEN
        && url.bytes().all(|b| b.is_ascii_graphic())
}

/// The longest endpoint URL accepted.
pub const MAX_URL_LEN: usize = 2000;

/// Why an endpoint was not registered.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("at most {MAX_ENDPOINTS} endpoints may be registered")]
    Full,
    #[error("storage: {0}")]
    Storage(String),
}
