//! Engine notices that reach integrators: an account's status change (frozen,
//! restricted, active again) is sent to webhook endpoints as
//! `account.status_changed` and prompts a notices pass over the account (the
//! owner's email or SMS is derived there, from the durable notification: see
//! `notices`); every fraud alert goes out as `alert.raised`. Fed by the engine's
//! operator stream, which carries exactly these two kinds.

use std::sync::Arc;

use okpay_engine::domain::notification::NotificationKind;
use okpay_engine::ids::OpKind;
use okpay_engine::runtime::hub::AdminNotice;
use tokio::sync::broadcast;

use super::deliveries::Deliveries;

/// Runs until the engine's operator stream closes.
pub async fn feed(mut notices: broadcast::Receiver<AdminNotice>, deliveries: Arc<Deliveries>) {
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
        if notice.relayed {
            // Another node's shard raised it: that node sends its notices.
            continue;
        }
        let account = notice.account;
        if let NotificationKind::StatusChanged { from, to, reason } = &notice.notification.kind {
            deliveries
                .publish(
                    "account.status_changed",
                    serde_json::json!({"account": account.to_string(), "from": from.name(),
                        "to": to.name(), "reason": reason}),
                )
                .await;
            // The owner's notice is derived from the account's durable
            // notifications (`notices`); this stream is only the prompt.
            deliveries.kick(account);
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
