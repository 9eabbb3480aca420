//! The operators' list of fraud alerts across accounts (`GET /v1/admin/alerts`).
//!
//! Each account keeps its own recent alerts (engine state, `GET /v1/alerts`); the
//! cross-account list is fed by the engine's admin channel from start-up: every
//! `alert.raised` goes into a bounded feed of the newest ones (the fast path; in
//! the coordination state, so in this process on the memory and embedded stores
//! and in Redis otherwise, where every node's alerts land in the one feed and an
//! operator on any node sees the alerts raised on any node) and into the store
//! index `alerts` under
//! `<inverted ms, 16 hex>/<alr_ id>` with the alert as JSON, so a key-order scan
//! is newest first and the list survives restarts. Writing the index is a claim,
//! so an alert delivered twice is stored once.
//!
//! The index is bounded by count (`[server] alerts_kept`, default 10,000): the
//! oldest entries beyond it are deleted at start-up and then after every tenth of
//! that many new alerts, so it never holds more than about 1.1 × the bound.
//! Nothing is lost for an account: each keeps its own recent alerts.
//!
//! The admin channel is a bounded broadcast: if this task ever lags (thousands of
//! alerts at once) the skipped alerts are missing from this list (they remain in
//! each account's own list) and a warning with the count is logged. Only the
//! node that raised an alert (the account's owner) feeds it: notices relayed
//! from other nodes are skipped, so each alert is listed once.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use okpay_engine::coord::Coord;
use okpay_engine::domain::notification::NotificationKind;
use okpay_engine::ids::OpKind;
use okpay_engine::runtime::hub::AdminNotice;
use okpay_engine::store::Store;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use utoipa::ToSchema;

use crate::routes::extract::time;

/// The store index of alerts across accounts.
pub const ALERTS_INDEX: &str = "alerts";
/// Alerts kept in the fast feed.
const RING_CAPACITY: usize = 1_000;
/// The coordination feed of the newest alerts.
const FEED: &str = "alerts";
/// The most alerts one request lists.
pub const LIST_MAX: usize = 500;
/// Index entries read per page while trimming.
const TRIM_PAGE: usize = 500;

/// One alert as operators see it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AdminAlert {
    /// An `alr_` id.
    pub id: String,
    pub account_id: String,
    pub rule: String,
    /// `low`, `medium` or `high`.
    pub severity: String,
    pub message: String,
    /// What the rule did: `allow`, `challenge`, `hold_for_review`, `block`, `freeze`.
    pub action: String,
    pub at: DateTime<Utc>,
}

/// The feed of the newest alerts (shared by every node on one store).
pub struct AlertLog {
    coord: Arc<dyn Coord>,
}

impl AlertLog {
    pub fn new(coord: Arc<dyn Coord>) -> Self {
        AlertLog { coord }
    }

    async fn push(&self, alert: &AdminAlert) {
        let Ok(json) = serde_json::to_vec(alert) else {
            return;
        };
        if let Err(e) = self.coord.feed_push(FEED, json, RING_CAPACITY).await {
            tracing::warn!(error = %e, alert = %alert.id, "an alert missed the newest-alerts feed");
        }
    }

    /// The newest `limit` alerts, newest first: from the feed when it holds
    /// enough of them, else from the durable index; from the feed again if the
    /// index is unavailable.
    pub async fn list(&self, store: &Arc<dyn Store>, limit: usize) -> Vec<AdminAlert> {
        let limit = limit.clamp(1, LIST_MAX);
        let from_feed = match self.coord.feed_newest(FEED, limit).await {
            Ok(entries) => entries
                .into_iter()
                .filter_map(|e| serde_json::from_slice(&e).ok())
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "newest-alerts feed unavailable");
                Vec::new()
            }
        };
        if from_feed.len() >= limit {
            return from_feed;
        }
        match store.scan_index(ALERTS_INDEX, None, limit).await {
            Ok(rows) => rows
                .into_iter()
                .filter_map(|(_, v)| serde_json::from_str(&v).ok())
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "alert index unavailable; listing the newest-alerts feed");
                from_feed
            }
        }
    }
}

/// The index key of an alert: newest sorts first.
fn index_key(alert: &AdminAlert) -> String {
    let ms = u64::try_from(alert.at.timestamp_millis()).unwrap_or(0);
    format!("{:016x}/{}", u64::MAX - ms, alert.id)
}

/// The operators' view of an admin notice, when it is an alert.
fn alert_of(notice: &AdminNotice) -> Option<AdminAlert> {
    let NotificationKind::AlertRaised {
        id,
        rule,
        severity,
        message,
        action,
    } = &notice.notification.kind
    else {
        return None;
    };
    Some(AdminAlert {
        id: id.display(OpKind::Alert),
        account_id: notice.account.to_string(),
        rule: rule.name().into(),
        severity: severity.name().into(),
        message: message.clone(),
        action: action.name().into(),
        at: time(notice.notification.at),
    })
}

/// Deletes every entry of the alerts index beyond the newest `keep` (keys sort
/// newest first); returns how many went.
pub async fn trim(store: &Arc<dyn Store>, keep: usize) -> anyhow::Result<usize> {
    let mut seen = 0;
    let mut removed = 0;
    let mut after: Option<String> = None;
    loop {
        let page = store
            .scan_index(ALERTS_INDEX, after.as_deref(), TRIM_PAGE)
            .await?;
        for (key, _) in &page {
            seen += 1;
            if seen > keep {
                store.delete_index(ALERTS_INDEX, key).await?;
                removed += 1;
            }
        }
        if page.len() < TRIM_PAGE {
            return Ok(removed);
        }
        after = page.last().map(|(k, _)| k.clone());
    }
}

async fn trim_logged(store: &Arc<dyn Store>, keep: usize) {
    match trim(store, keep).await {
        Ok(n) if n > 0 => tracing::info!(
            removed = n,
            keep,
            "oldest alerts trimmed from the admin index"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "alert index not trimmed"),
    }
}

/// Feeds `log` and the store index from the admin channel until it closes,
/// keeping the index to about `keep` entries (see the module doc).
pub async fn feed(
    mut notices: broadcast::Receiver<AdminNotice>,
    log: Arc<AlertLog>,
    store: Arc<dyn Store>,
    keep: usize,
) {
    trim_logged(&store, keep).await;
    let trim_every = (keep / 10).max(1);
    let mut since_trim = 0;
    loop {
        match notices.recv().await {
            Ok(notice) => {
                if notice.relayed {
                    // Its owner node feeds it (once).
                    continue;
                }
                let Some(alert) = alert_of(&notice) else {
                    continue;
                };
                log.push(&alert).await;
                let value = match serde_json::to_string(&alert) {
                    Ok(v) => v,
                    Err(_) => continue,
                };
                if let Err(e) = store
                    .claim_index(ALERTS_INDEX, &index_key(&alert), &value)
                    .await
                {
                    tracing::warn!(error = %e, alert = %alert.id, "could not store an alert in the admin index");
                }
                since_trim += 1;
                if since_trim >= trim_every {
                    since_trim = 0;
                    trim_logged(&store, keep).await;
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    skipped = n,
                    "admin alert feed lagged; alerts missing from the admin list"
                );
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use okpay_engine::store::memory::MemoryStore;

    fn alert(n: i64) -> AdminAlert {
        AdminAlert {
            id: format!("alr_{n:04}"),
            account_id: "acc_0000000000000001".into(),
            rule: "velocity".into(),
            severity: "high".into(),
            message: String::new(),
            action: "block".into(),
            at: DateTime::from_timestamp_millis(1_800_000_000_000 + n).unwrap(),
        }
    }

    #[tokio::test]
    async fn the_index_keeps_the_newest_and_trims_the_oldest() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        for n in 0..1_205 {
            let a = alert(n);
            store
                .claim_index(
                    ALERTS_INDEX,
                    &index_key(&a),
                    &serde_json::to_string(&a).unwrap(),
                )
                .await
                .unwrap();
        }
        assert_eq!(trim(&store, 1_000).await.unwrap(), 205);
        let left = store.scan_index(ALERTS_INDEX, None, 5_000).await.unwrap();
        assert_eq!(left.len(), 1_000);
        let newest: AdminAlert = serde_json::from_str(&left[0].1).unwrap();
        let oldest: AdminAlert = serde_json::from_str(&left[999].1).unwrap();
        assert_eq!(newest.id, "alr_1204");
        assert_eq!(oldest.id, "alr_0205");
        assert_eq!(
            trim(&store, 1_000).await.unwrap(),
            0,
            "nothing beyond the bound"
        );
    }
}
