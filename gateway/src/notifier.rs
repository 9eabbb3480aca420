//! The notifier: how codes and messages reach people (SMS, email). In dev mode an
//! outbox keeps them in memory, readable by admins (`GET /v1/admin/outbox`), so
//! tests and local runs can read codes. The outbox is bounded (oldest messages
//! dropped first). Outside dev mode a channel without a configured adapter is
//! [`Notifier::missing`]: routes that must deliver a code answer 503 instead of
//! pretending to send it.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
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

/// Production without SMTP or SMS configured: every channel is missing, so no
/// code is ever "sent" into the void; notices that are not codes are dropped with
/// a log line (never their content).
#[derive(Default)]
pub struct NullNotifier;

impl Notifier for NullNotifier {
    fn send(&self, message: OutboxMessage) {
        tracing::warn!(kind = %message.kind, channel = %message.channel, "no notifier configured; message dropped");
    }

    fn missing(&self, channel: &str) -> Option<&'static str> {
        Some(crate::integrations::channel_setting(channel))
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
