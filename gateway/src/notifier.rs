//! The notifier: how codes and messages reach people (SMS, email). In dev mode an
//! outbox keeps them in memory, readable by admins (`GET /v1/admin/outbox`), so
//! tests and local runs can read codes. The outbox is bounded (oldest messages
//! dropped first). Outside dev mode a channel without a configured adapter is
//! [`Notifier::missing`]: routes that must deliver a code answer 503 instead of
//! pretending to send it.

use std::collections::VecDeque;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use okpay_engine::domain::Locale;
use parking_lot::Mutex;
use serde::Serialize;
use utoipa::ToSchema;

/// One message sent to a person.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OutboxMessage {
    /// The email address or phone number.
    pub to: String,
    /// `sms` or `email`.
    pub channel: String,
    /// What the message is for (`password_reset`, `challenge`, `notice`...).
    pub kind: String,
    /// The one-time code it carries, if any.
    pub code: Option<String>,
    /// The language it is written in (`zh-CN` or `en`): the account's locale.
    pub locale: String,
    pub body: String,
    pub at: DateTime<Utc>,
}

/// Where messages go.
pub trait Notifier: Send + Sync + 'static {
    fn send(&self, message: OutboxMessage);

    /// The setting missing for delivering on `channel` (`email` or `sms`), or
    /// `None` when messages on it are delivered.
    fn missing(&self, channel: &str) -> Option<&'static str> {
        let _ = channel;
        None
    }
}

/// Messages kept in memory for dev mode.
#[derive(Default)]
pub struct Outbox {
    messages: Mutex<VecDeque<OutboxMessage>>,
}

/// How many messages the dev outbox keeps.
const OUTBOX_CAPACITY: usize = 10_000;

impl Outbox {
    /// Messages to `to` (all when `None`), newest first, at most `limit`.
    pub fn list(&self, to: Option<&str>, limit: usize) -> Vec<OutboxMessage> {
        self.messages
            .lock()
            .iter()
            .rev()
            .filter(|m| to.is_none_or(|t| m.to.eq_ignore_ascii_case(t)))
            .take(limit)
            .cloned()
            .collect()
    }
}

impl Notifier for Outbox {
    fn send(&self, message: OutboxMessage) {
        let mut q = self.messages.lock();
        if q.len() >= OUTBOX_CAPACITY {
            q.pop_front();
        }
        q.push_back(message);
    }
}

/// `503 UNAVAILABLE` when a code cannot be delivered on `channel`.
pub fn require(
    notifier: &dyn Notifier,
    channel: &str,
    feature: &str,
) -> Result<(), crate::error::ApiError> {
    match notifier.missing(channel) {
        Some(setting) => Err(crate::integrations::not_configured(feature, setting)),
        None => Ok(()),
    }
}

/// The notifier the server runs with: real delivery (SMTP, SMS) for each
/// configured channel through the durable outbox (`integrations::deliveries`),
/// plus, in dev mode, the in-memory outbox that lets tests read codes. Outside
/// dev mode an unconfigured channel is [`Notifier::missing`].
pub struct Notifications {
    pub dev_outbox: Option<Arc<Outbox>>,
    pub deliveries: Arc<crate::integrations::deliveries::Deliveries>,
    /// Codes' lifetime, for the templates.
    pub minutes: u64,
}

impl Notifier for Notifications {
    fn send(&self, message: OutboxMessage) {
        if let Some(outbox) = &self.dev_outbox {
            outbox.send(message.clone());
        }
        if !self.deliveries.delivers(&message.channel) {
            if self.dev_outbox.is_none() {
                tracing::warn!(kind = %message.kind, channel = %message.channel, "no adapter for this channel; message dropped");
            }
            return;
        }
        let rendered = crate::integrations::templates::render(
            Locale::parse(&message.locale).unwrap_or_default(),
            &message.kind,
            message.code.as_deref(),
            self.minutes,
            &message.body,
        );
        let deliveries = self.deliveries.clone();
        // The caller already has the engine's acknowledgement of what caused the
        // message; the queue write follows at once (see `deliveries` for the
        // guarantees).
        tokio::spawn(async move {
            deliveries
                .enqueue(
                    &message.channel,
                    &message.to,
                    &message.kind,
                    rendered.subject,
                    rendered.body,
                )
                .await;
        });
    }

    fn missing(&self, channel: &str) -> Option<&'static str> {
        if self.dev_outbox.is_some() || self.deliveries.delivers(channel) {
            None
        } else {
            Some(crate::integrations::channel_setting(channel))
        }
    }
}
