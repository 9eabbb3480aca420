//! Engine notices that reach people and integrators: an account's status change
//! (frozen, restricted, active again) is told to its owner on their channel and
//! sent to webhook endpoints as `account.status_changed`; every fraud alert goes
//! out as `alert.raised`. Fed by the engine's operator stream, which carries
//! exactly these two kinds.

use std::sync::Arc;

use okpay_engine::domain::notification::NotificationKind;
use okpay_engine::ids::OpKind;
use okpay_engine::runtime::hub::AdminNotice;
use okpay_engine::Engine;
use tokio::sync::broadcast;

use super::deliveries::Deliveries;
use crate::notifier::{Notifier, OutboxMessage};
use crate::step_up::code_destination;

/// Runs until the engine's operator stream closes.
pub async fn feed(
    mut notices: broadcast::Receiver<AdminNotice>,
    engine: Engine,
    notifier: Arc<dyn Notifier>,
    deliveries: Arc<Deliveries>,
) {
    loop {
        let notice = match notices.recv().await {
            Ok(n) => n,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    skipped = n,
                    "notice feed lagged; some notices and webhook events were not sent"
                );
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let account = notice.account;
        if let NotificationKind::StatusChanged { from, to, reason } = &notice.notification.kind {
            deliveries
                .publish(
                    "account.status_changed",
                    serde_json::json!({"account": account.to_string(), "from": from.name(),
                        "to": to.name(), "reason": reason}),
                )
                .await;
            let destination = engine
                .read(account, |s, _, _| {
                    // Email first for a notice; the phone when there is no email.
                    s.profile
                        .email
                        .clone()
                        .map(|e| (e, "email"))
                        .or_else(|| code_destination(s))
                })
                .await;
            if let Ok(Some((to_address, channel))) = destination {
                notifier.send(OutboxMessage {
                    to: to_address,
                    channel: channel.into(),
                    kind: "account_status".into(),
                    code: None,
                    body: format!("Your OKPay account is now {}: {reason}", to.name()),
                    at: crate::clock::now(&engine),
                });
            }
        }
        if let NotificationKind::AlertRaised {
            id,
            rule,
            severity,
            message,
            action,
        } = &notice.notification.kind
        {
            deliveries
                .publish(
                    "alert.raised",
                    serde_json::json!({"account": account.to_string(), "id": id.display(OpKind::Alert),
                        "rule": rule.name(), "severity": severity.name(),
                        "message": message, "action": action.name()}),
                )
                .await;
        }
    }
}
