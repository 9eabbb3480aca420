//! Connections to the outside world that move money or reach people: the card
//! processor, the payout processor, SMTP and the SMS gateway, configured in the
//! `[integrations]` section of the config file (secrets also by env var).
//!
//! Outside `--dev` the built-in test adapters (the test card processor, the test
//! payout processor and the in-memory outbox that keeps codes) are never used: a
//! feature whose real adapter is not configured answers `503 UNAVAILABLE` with a
//! `detail` naming the missing setting, and the server lists every missing one at
//! start-up. In `--dev` a configured real adapter still wins over the test one.

pub mod cards;
pub mod charges;
pub mod deliveries;
pub mod events;
pub mod notices;
pub mod payouts;
pub mod reconcile;
pub mod reports;
pub mod retention;
pub mod signature;
pub mod sms;
pub mod smtp;
pub mod templates;
pub mod webhooks;

use crate::config::Settings;
use crate::error::{ApiError, ErrorCode};

/// The setting that enables card deposits.
pub const PROCESSOR_SETTING: &str = "[integrations.processor] url (OKPAY_PROCESSOR_URL)";
/// The setting that enables withdrawals (payouts).
pub const PAYOUTS_SETTING: &str = "[integrations.payouts] url (OKPAY_PAYOUTS_URL)";
/// The setting that enables email delivery.
pub const SMTP_SETTING: &str = "[integrations.smtp] host (OKPAY_SMTP_HOST)";
/// The setting that enables SMS delivery.
pub const SMS_SETTING: &str = "[integrations.sms] url (OKPAY_SMS_URL)";

/// `503 UNAVAILABLE` for a feature whose adapter is not configured.
pub fn not_configured(feature: &str, setting: &str) -> ApiError {
    ApiError::new(
        ErrorCode::Unavailable,
        format!("{feature} is unavailable: the server has no {setting} configured."),
    )
    .with_hint("Nothing was done. Try again later; the operator must configure this integration.")
}

/// The setting a code or message on `channel` (`email` or `sms`) needs.
pub fn channel_setting(channel: &str) -> &'static str {
    if channel == "email" {
        SMTP_SETTING
    } else {
        SMS_SETTING
    }
}

/// Every feature left unavailable by missing settings, as (feature, setting),
/// for the start-up log. Empty in `--dev`, where test adapters stand in.
pub fn missing(settings: &Settings) -> Vec<(&'static str, &'static str)> {
    if settings.dev {
        return Vec::new();
    }
    let i = &settings.integrations;
    let mut out = Vec::new();
    if i.processor.is_none() {
        out.push(("card deposits", PROCESSOR_SETTING));
    }
    if i.payouts.is_none() {
        out.push(("withdrawals (payouts)", PAYOUTS_SETTING));
    }
    if i.smtp.is_none() {
        out.push((
            "email delivery (reset and step-up codes by email)",
            SMTP_SETTING,
        ));
    }
    if i.sms.is_none() {
        out.push(("SMS delivery (reset and step-up codes by SMS)", SMS_SETTING));
    }
    out
}

/// Logs every feature that will answer 503 for lack of configuration.
pub fn log_missing(settings: &Settings) {
    for (feature, setting) in missing(settings) {
        tracing::warn!(
            feature,
            setting,
            "!!! {feature} unavailable (503 UNAVAILABLE): set {setting}; test adapters are used only with --dev"
        );
    }
}

/// Why a message was not delivered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeliveryError {
    /// Worth another attempt later (timeouts, 5xx, 429, connection errors).
    #[error("{0}")]
    Retry(String),
    /// Retrying will not help (a refused address, a 4xx).
    #[error("{0}")]
    Permanent(String),
}
