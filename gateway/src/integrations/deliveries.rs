//! The durable outbox of deliveries (emails and SMS) and the worker that sends
//! them.
//!
//! A message is written to the store's `delivery_queue` index (encrypted with the
//! PII key: it may carry a one-time code) right after the engine recorded what
//! caused it, and the index entry is removed only once the relay or gateway
//! accepted it, so a crash or restart never loses a queued message: the worker
//! resumes from the index. A crash between a send and its removal sends that one
//! message again (at least once); the id is stable so a relay that dedupes by
//! `Message-ID`-like ids can drop it. Failed attempts are retried with exponential
//! backoff (`backoff_ms` doubling, capped at 10 minutes; each failed attempt is
//! recorded in the store, so a restart resumes the count and the wait); after
//! `max_attempts`, or
//! on a permanent refusal (a malformed address, a 4xx from the SMS gateway), the
//! message moves to the `delivery_dead` index, which operators list at
//! `GET /v1/admin/deliveries?state=dead`.
//!
//! Each recipient gets at most `per_recipient_per_hour` messages an hour (SMS
//! pumping: an attacker asking for codes to premium numbers); beyond it messages
//! are dropped with a warning and counted. The count is in the coordination
//! state, so it holds across the nodes sharing one Redis.
//!
//! Several nodes on one Redis each run a worker over the one queue: a worker
//! takes a message's lock in the coordination state (`delivery:<id>`, 10 s)
//! and checks it is still queued before sending, so two nodes never send one
//! message at once, nor one already sent and removed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use okpay_engine::coord::{Coord, Window};
use okpay_engine::store::Store;
use okpay_engine::time::Clock;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::sms::SmsGateway;
use super::smtp::Mailer;
use super::webhooks::{Webhooks, LOG_INDEX};
use super::DeliveryError;
use crate::config::DeliverySettings;
use crate::crypto::{Field, Owner, PiiCipher};

/// Messages waiting to be delivered (key: the delivery id).
pub const QUEUE_INDEX: &str = "delivery_queue";
/// Messages given up on.
pub const DEAD_INDEX: &str = "delivery_dead";
/// Failed attempts, one entry each: `<delivery id>:<attempt, 3 digits>` → when the
/// next attempt is due (Unix ms). Written once per failure and never updated in
/// place (the store's indexes have no update), so a restart resumes a message's
/// series of attempts and its backoff where they were.
pub const ATTEMPTS_INDEX: &str = "delivery_attempts";

/// How many queued messages one sweep looks at, and sends at once.
const SWEEP_PAGE: usize = 200;
const CONCURRENCY: usize = 8;
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// Recipients tracked by the rate limiter before old entries are swept.
/// The coordination scope of per-recipient message counts.
const RECIPIENT_SCOPE: &str = "delivery-recipient";
/// How long a node's send lock on one message lasts if never freed (its node
/// stopped mid-send): short, since others wait that long to send it. A send
/// slower than this may go out twice, which at-least-once allows.
const SEND_LOCK_TTL: Duration = Duration::from_secs(10);

/// One message, as stored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    /// A `dlv_` id.
    pub id: String,
    /// `email`, `sms` or `webhook`.
    pub channel: String,
    /// The address, phone number or webhook endpoint id.
    pub to: String,
    /// What it is for (`password_reset`, `challenge`, ...).
    pub kind: String,
    /// The email subject (empty for SMS; for a webhook, its `webhook-id`).
    pub subject: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    /// Attempts made (in dead letters).
    #[serde(default)]
    pub attempts: u32,
    /// The last error (in dead letters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Where messages go out: mail and SMS when configured, webhooks always.
pub struct Channels {
    pub mailer: Option<Mailer>,
    pub sms: Option<SmsGateway>,
    pub webhooks: Arc<Webhooks>,
}

/// The queue, its worker and the adapters it sends through.
pub struct Deliveries {
    store: Arc<dyn Store>,
    cipher: PiiCipher,
    mailer: Option<Mailer>,
    sms: Option<SmsGateway>,
    pub webhooks: Arc<Webhooks>,
    settings: DeliverySettings,
    /// Attempts and the time of the next one, per queued id: a cache of
    /// [`ATTEMPTS_INDEX`], loaded for a queued id the first time a sweep sees it.
    retries: Mutex<HashMap<String, (u32, Instant)>>,
    /// Per-recipient counts and send locks, shared by the nodes on one store.
    coord: Arc<dyn Coord>,
    wake: tokio::sync::Notify,
    /// Accounts to look at for notices (`notices`); bounded.
    kicks: tokio::sync::mpsc::Sender<okpay_engine::ids::AccountId>,
    /// The other end, taken once by the notices task.
    kicked: Mutex<Option<tokio::sync::mpsc::Receiver<okpay_engine::ids::AccountId>>>,
    /// The engine's clock: creation times, message ids and retry due times.
    clock: Arc<dyn Clock>,
}

impl Deliveries {
    pub fn new(
        store: Arc<dyn Store>,
        cipher: PiiCipher,
        Channels {
            mailer,
            sms,
            webhooks,
        }: Channels,
        settings: DeliverySettings,
        coord: Arc<dyn Coord>,
        clock: Arc<dyn Clock>,
    ) -> Arc<Deliveries> {
        let (kicks, kicked) = tokio::sync::mpsc::channel(super::notices::KICK_QUEUE);
        Arc::new(Deliveries {
            store,
            cipher,
            mailer,
            sms,
            webhooks,
            settings,
            retries: Mutex::new(HashMap::new()),
            coord,
            wake: tokio::sync::Notify::new(),
            kicks,
            kicked: Mutex::new(Some(kicked)),
            clock,
        })
    }

    /// Now, by the engine's clock.
    fn now(&self) -> DateTime<Utc> {
        crate::clock::to_chrono(self.clock.now())
    }

    /// Asks for a notices pass over `account` (after a command that may have
    /// caused a notice). Never waits: when too many accounts wait already, the
    /// kick is dropped and the notice is derived by the account's next pass.
    pub fn kick(&self, account: okpay_engine::ids::AccountId) {
        if self.kicks.try_send(account).is_err() {
            tracing::warn!(%account, "notice queue full; the account's next pass derives its notices");
        }
    }

    /// The receiving end of [`Self::kick`], for the notices task (once).
    pub fn take_kicks(&self) -> Option<tokio::sync::mpsc::Receiver<okpay_engine::ids::AccountId>> {
        self.kicked.lock().take()
    }

    /// Wakes the worker.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Writes a message under a given id (no rate limit: a notice is caused by
    /// the account's own events). Writing an id already queued changes nothing.
    pub async fn queue_with_id(
        &self,
        id: &str,
        channel: &str,
        to: &str,
        kind: &str,
        subject: String,
        body: String,
    ) -> anyhow::Result<()> {
        let delivery = Delivery {
            id: id.to_owned(),
            channel: channel.to_owned(),
            to: to.to_owned(),
            kind: kind.to_owned(),
            subject,
            body,
            created_at: self.now(),
            attempts: 0,
            last_error: None,
        };
        self.store
            .claim_index(QUEUE_INDEX, id, &self.seal(&delivery))
            .await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Whether messages on `channel` can be delivered.
    pub fn delivers(&self, channel: &str) -> bool {
        match channel {
            "email" => self.mailer.is_some(),
            "sms" => self.sms.is_some(),
            "webhook" => true,
            _ => false,
        }
    }

    /// Queues `event` with `data` for every webhook endpoint that wants it, and
    /// logs each message for replays.
    pub async fn publish(&self, event: &str, data: serde_json::Value) {
        let targets = self.webhooks.targets(event);
        if targets.is_empty() {
            return;
        }
        let now = self.now();
        let body = serde_json::json!({"type": event, "timestamp": now, "data": data}).to_string();
        for endpoint in targets {
            let msg_id = format!(
                "msg_{:013}{:016x}",
                now.timestamp_millis(),
                rand::random::<u64>()
            );
            let log_key = format!("{endpoint}:{msg_id}");
            let sealed = STANDARD.encode(self.cipher.seal(
                Field::WebhookMessage,
                Owner::Record(&log_key),
                body.as_bytes(),
            ));
            if let Err(e) = self.store.claim_index(LOG_INDEX, &log_key, &sealed).await {
                tracing::warn!(error = %e, "could not log a webhook message");
            }
            self.queue("webhook", &endpoint, event, msg_id, body.clone())
                .await;
        }
    }

    /// Queues again every logged message of `endpoint` (oldest first, at most
    /// `limit`), with its original `webhook-id`. Returns how many.
    pub async fn replay(&self, endpoint: &str, limit: usize) -> anyhow::Result<usize> {
        let prefix = format!("{endpoint}:");
        let page = self
            .store
            .scan_index(LOG_INDEX, Some(&prefix), limit)
            .await?;
        let mut n = 0;
        for (key, sealed) in page {
            let Some(msg_id) = key.strip_prefix(&prefix) else {
                break;
            };
            let Some(body) = STANDARD.decode(&sealed).ok().and_then(|b| {
                self.cipher
                    .open_text(Field::WebhookMessage, Owner::Record(&key), &b)
            }) else {
                continue;
            };
            let event = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["type"].as_str().map(str::to_owned))
                .unwrap_or_default();
            self.queue("webhook", endpoint, &event, msg_id.to_owned(), body)
                .await;
            n += 1;
        }
        Ok(n)
    }

    /// Counts a message to `to`; false when the recipient had its hour's share.
    /// Shared state that does not answer lets the message through (logged): a
    /// code the user waits for matters more than one message over the limit.
    async fn allow(&self, to: &str) -> bool {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(to.to_ascii_lowercase().as_bytes());
        let key: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let limit = Window {
            max: self.settings.per_recipient_per_hour.max(1),
            window: Duration::from_secs(3600),
        };
        match self
            .coord
            .window_blocked(RECIPIENT_SCOPE, &key, limit)
            .await
        {
            Ok(Some(_)) => return false,
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "per-recipient count unreadable"),
        }
        if let Err(e) = self.coord.window_hit(RECIPIENT_SCOPE, &key, limit).await {
            tracing::warn!(error = %e, "a message was not counted for its recipient");
        }
        true
    }

    /// Writes a message to the durable queue and wakes the worker. Returns once
    /// the store has it (or failed to take it, logged).
    pub async fn enqueue(
        &self,
        channel: &str,
        to: &str,
        kind: &str,
        subject: String,
        body: String,
    ) {
        if !self.allow(to).await {
            metrics::counter!("okpay_deliveries_total", "channel" => channel.to_owned(), "result" => "rate_limited").increment(1);
            tracing::warn!(
                channel,
                kind,
                "per-recipient message limit reached; message dropped"
            );
            return;
        }
        self.queue(channel, to, kind, subject, body).await;
    }

    /// Writes one message to the queue and wakes the worker (no rate limit).
    async fn queue(&self, channel: &str, to: &str, kind: &str, subject: String, body: String) {
        let now = self.now();
        let id = format!(
            "dlv_{:013}{:016x}",
            now.timestamp_millis(),
            rand::random::<u64>()
        );
        let delivery = Delivery {
            id: id.clone(),
            channel: channel.to_owned(),
            to: to.to_owned(),
            kind: kind.to_owned(),
            subject,
            body,
            created_at: now,
            attempts: 0,
            last_error: None,
        };
        match self
            .store
            .claim_index(QUEUE_INDEX, &id, &self.seal(&delivery))
            .await
        {
            Ok(_) => {
                // A new id has no attempts to load.
                self.retries.lock().insert(id, (0, Instant::now()));
                self.wake.notify_one();
            }
            Err(e) => {
                tracing::error!(delivery = %id, kind, error = %e, "could not queue a message")
            }
        }
    }

    fn seal(&self, d: &Delivery) -> String {
        // unwrap: a struct of strings always serializes.
        STANDARD.encode(self.cipher.seal(
            Field::Delivery,
            Owner::Record(&d.id),
            &serde_json::to_vec(d).unwrap(),
        ))
    }

    /// The message stored under `id`.
    fn open(&self, id: &str, text: &str) -> Option<Delivery> {
        let sealed = STANDARD.decode(text).ok()?;
        let plain = self
            .cipher
            .open(Field::Delivery, Owner::Record(id), &sealed)
            .ok()?;
        serde_json::from_slice(&plain).ok()
    }

    /// Runs the worker until the process ends: a sweep on every wake-up, and at
    /// least once a second for retries that came due.
    pub async fn run(self: Arc<Self>) {
        loop {
            if let Err(e) = self.sweep().await {
                tracing::warn!(error = %e, "delivery sweep failed");
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// One pass over the queue: sends every message that is due.
    pub async fn sweep(&self) -> anyhow::Result<()> {
        let mut after: Option<String> = None;
        loop {
            let page = self
                .store
                .scan_index(QUEUE_INDEX, after.as_deref(), SWEEP_PAGE)
                .await?;
            let unknown: Vec<String> = {
                let retries = self.retries.lock();
                page.iter()
                    .filter(|(id, _)| !retries.contains_key(id))
                    .map(|(id, _)| id.clone())
                    .collect()
            };
            for id in unknown {
                let known = self.load_attempts(&id).await?;
                self.retries.lock().insert(id, known);
            }
            let now = Instant::now();
            let due: Vec<(String, String)> = {
                let retries = self.retries.lock();
                page.iter()
                    .filter(|(id, _)| retries.get(id).is_none_or(|(_, at)| *at <= now))
                    .cloned()
                    .collect()
            };
            futures::stream::iter(due)
                .for_each_concurrent(CONCURRENCY, |(id, sealed)| async move {
                    self.attempt(&id, &sealed).await;
                })
                .await;
            if page.len() < SWEEP_PAGE {
                return Ok(());
            }
            after = page.last().map(|(k, _)| k.clone());
        }
    }

    /// A message's failed attempts and when the next is due, from the store.
    async fn load_attempts(&self, id: &str) -> anyhow::Result<(u32, Instant)> {
        let prefix = format!("{id}:");
        let limit = self.settings.max_attempts as usize + 1;
        let page = self
            .store
            .scan_index(ATTEMPTS_INDEX, Some(&prefix), limit)
            .await?;
        let mine: Vec<&(String, String)> = page
            .iter()
            .take_while(|(k, _)| k.starts_with(&prefix))
            .collect();
        let attempts = u32::try_from(mine.len()).unwrap_or(u32::MAX);
        let due_ms: i64 = mine.last().and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
        let wait_ms = due_ms.saturating_sub(self.clock.now().millis()).max(0);
        let wait = Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0)).min(MAX_BACKOFF);
        Ok((attempts, Instant::now() + wait))
    }

    /// Forgets a finished message's attempts (best effort: leftovers name a
    /// delivery id that is never queued again).
    async fn clear_attempts(&self, id: &str, attempts: u32) {
        for n in 1..=attempts {
            let _ = self
                .store
                .delete_index(ATTEMPTS_INDEX, &format!("{id}:{n:03}"))
                .await;
        }
        self.retries.lock().remove(id);
    }

    /// [`attempt_locked`](Self::attempt_locked) under the message's send lock
    /// when other nodes share the queue (see the module doc).
    async fn attempt(&self, id: &str, sealed: &str) {
        if !self.coord.is_shared() {
            return self.attempt_locked(id, sealed).await;
        }
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(id.as_bytes());
        let name: String = std::iter::once("delivery:".to_owned())
            .chain(digest.iter().map(|b| format!("{b:02x}")))
            .collect();
        let token: u64 = rand::random();
        match self.coord.try_lock(&name, token, SEND_LOCK_TTL).await {
            Ok(true) => {}
            // Another node is sending it, or the lock can't be had: a later sweep.
            Ok(false) | Err(_) => return,
        }
        // Still queued? Another node may have sent and removed it since this
        // sweep read the page.
        if let Ok(Some(_)) = self.store.get_index(QUEUE_INDEX, id).await {
            self.attempt_locked(id, sealed).await;
        }
        let _ = self.coord.unlock(&name, token).await;
    }

    async fn attempt_locked(&self, id: &str, sealed: &str) {
        // A notice is sent only once its derivation is logged (see `notices`).
        if let Some(key) = super::notices::log_key_of(id) {
            match self.store.get_index(super::notices::LOG_INDEX, &key).await {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return,
            }
        }
        let Some(mut d) = self.open(id, sealed) else {
            // Another key wrote it (or it is damaged): nothing can send it.
            tracing::error!(delivery = %id, "queued message does not decrypt; moved to dead letters");
            let _ = self.store.claim_index(DEAD_INDEX, id, sealed).await;
            let _ = self.store.delete_index(QUEUE_INDEX, id).await;
            return;
        };
        let result = match (d.channel.as_str(), &self.mailer, &self.sms) {
            ("email", Some(m), _) => m.send(&d.to, &d.subject, &d.body).await,
            ("sms", _, Some(s)) => s.send(&d.to, &d.body).await,
            ("webhook", _, _) => self.webhooks.send(&d.to, &d.subject, &d.body).await,
            // The adapter was configured when it was queued, not now: keep it until
            // it is configured again.
            _ => Err(DeliveryError::Retry(format!(
                "no {} adapter configured",
                d.channel
            ))),
        };
        let attempts = self.retries.lock().get(id).map_or(0, |(n, _)| *n) + 1;
        let channel = d.channel.clone();
        match result {
            Ok(()) => {
                metrics::counter!("okpay_deliveries_total", "channel" => channel, "result" => "sent").increment(1);
                if let Err(e) = self.store.delete_index(QUEUE_INDEX, id).await {
                    tracing::warn!(delivery = %id, error = %e, "sent, but could not remove it from the queue");
                }
                self.clear_attempts(id, attempts - 1).await;
                tracing::info!(delivery = %id, kind = %d.kind, attempts, "message delivered");
            }
            Err(e) => {
                let permanent = matches!(e, DeliveryError::Permanent(_));
                if permanent || attempts >= self.settings.max_attempts {
                    metrics::counter!("okpay_deliveries_total", "channel" => channel, "result" => "dead").increment(1);
                    tracing::warn!(delivery = %id, kind = %d.kind, attempts, error = %e, "message given up; moved to dead letters");
                    d.attempts = attempts;
                    d.last_error = Some(e.to_string());
                    // Dead letter first, then out of the queue: a crash between the
                    // two leaves it in both, never in neither.
                    if self
                        .store
                        .claim_index(DEAD_INDEX, id, &self.seal(&d))
                        .await
                        .is_ok()
                        && self.store.delete_index(QUEUE_INDEX, id).await.is_ok()
                    {
                        self.clear_attempts(id, attempts - 1).await;
                    }
                } else {
                    metrics::counter!("okpay_deliveries_total", "channel" => channel, "result" => "retry").increment(1);
                    let backoff = Duration::from_millis(self.settings.backoff_ms)
                        .saturating_mul(1 << (attempts - 1).min(20))
                        .min(MAX_BACKOFF);
                    tracing::info!(delivery = %id, kind = %d.kind, attempts, error = %e, retry_in_ms = backoff.as_millis() as u64, "delivery failed; will retry");
                    let due_ms = self.clock.now().millis()
                        + i64::try_from(backoff.as_millis()).unwrap_or(i64::MAX);
                    // Durable first: a restart resumes from this count.
                    if let Err(e) = self
                        .store
                        .claim_index(
                            ATTEMPTS_INDEX,
                            &format!("{id}:{attempts:03}"),
                            &due_ms.to_string(),
                        )
                        .await
                    {
                        tracing::warn!(delivery = %id, error = %e, "attempt count not stored; a restart may retry it more often");
                    }
                    self.retries
                        .lock()
                        .insert(id.to_owned(), (attempts, Instant::now() + backoff));
                }
            }
        }
    }

    /// Queued (`dead == false`) or dead messages, oldest first, at most `limit`,
    /// with one-time codes masked (operators never see codes).
    pub async fn list(&self, dead: bool, limit: usize) -> anyhow::Result<Vec<Delivery>> {
        let index = if dead { DEAD_INDEX } else { QUEUE_INDEX };
        let page = self.store.scan_index(index, None, limit).await?;
        Ok(page
            .iter()
            .filter_map(|(id, sealed)| self.open(id, sealed))
            .map(|mut d| {
                d.body = mask_codes(&d.body);
                d
            })
            .collect())
    }
}

/// Replaces every run of 4 or more digits by asterisks.
pub fn mask_codes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    for c in text.chars().chain(std::iter::once('\0')) {
        if c.is_ascii_digit() {
            run.push(c);
            continue;
        }
        if run.len() >= 4 {
            out.extend(std::iter::repeat_n('*', run.len()));
        } else {
            out.push_str(&run);
        }
        run.clear();
        if c != '\0' {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_masked_for_operators() {
        assert_eq!(
            mask_codes("Your code is 123456. It expires in 10 minutes."),
            "Your code is ******. It expires in 10 minutes."
        );
        assert_eq!(
            mask_codes("验证码 987654，10 分钟"),
            "验证码 ******，10 分钟"
        );
    }
}
