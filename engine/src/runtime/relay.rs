//! Notifications across nodes: what one node's shards publish reaches
//! websocket subscribers and operators connected to every other node on the
//! same Redis.
//!
//! Each node runs two tasks ([`crate::Engine::relay_notifications`]):
//!
//! - **out**: takes what the hub hands over (only notifications of shards this
//!   node runs, each batch already durable) and publishes it on the
//!   coordination bus, topic [`TOPIC`], up to [`BATCH_MAX`] accounts per
//!   message, in the order the hub handed them over (one task, one connection:
//!   per account, `seq` order holds);
//! - **in**: delivers what other nodes published into this node's hub
//!   ([`super::hub::Hub::publish_relayed`]), where local subscribers (and operators) get it.
//!
//! A subscriber on a node that does not host the account's shard (cluster
//! mode) gets its receiver from this node's hub at once, then its backlog from
//! what the store holds of the account ([`subscribe_elsewhere`]: the shard's
//! checkpoint and log tail, replayed, so only durable notifications), so
//! nothing published after the read is missed; what both carry is dropped by
//! the subscriber's `seq` check.
//!
//! The bus is at most once, and the out queue is bounded ([`QUEUE`]; when full,
//! notifications are dropped and counted): a subscriber then sees a `seq` gap,
//! and the gateway's websocket fills it from the account's retained
//! notifications (the same read as a client's `resume`). On the memory and
//! embedded stores nothing of this runs.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

use super::hub::Outgoing;
use super::{EngineError, Shared};
use crate::coord::{BusEvent, Coord, MAX_MESSAGE_BYTES};
use crate::domain::notification::Notification;
use crate::ids::AccountId;
use crate::runtime::executor::Subscription;
use crate::store::StoreError;

/// The bus topic of notifications.
pub const TOPIC: &str = "notes";
/// Accounts' notification batches waiting to be published, at most.
pub const QUEUE: usize = 16_384;
/// Accounts per bus message, at most.
pub const BATCH_MAX: usize = 256;

#[derive(Serialize, Deserialize)]
struct Item {
    account: u64,
    notifications: Vec<Notification>,
}

/// Publishes this node's notifications for the other nodes until the hub's
/// queue closes.
pub(crate) async fn outbound(mut queue: mpsc::Receiver<Outgoing>, coord: Arc<dyn Coord>) {
    let mut batch = Vec::with_capacity(BATCH_MAX);
    while queue.recv_many(&mut batch, BATCH_MAX).await > 0 {
        let items: Vec<Item> = batch
            .drain(..)
            .map(|o| Item {
                account: o.account.0,
                notifications: o.notifications,
            })
            .collect();
        let payload = match serde_json::to_vec(&items) {
            Ok(p) if p.len() <= MAX_MESSAGE_BYTES => p,
            Ok(_) | Err(_) => {
                metrics::counter!("okpay_relay_dropped_total").increment(items.len() as u64);
                tracing::warn!(
                    accounts = items.len(),
                    "notifications too large to relay; subscribers elsewhere will fill the gap"
                );
                continue;
            }
        };
        if let Err(e) = coord.publish(TOPIC, payload).await {
            metrics::counter!("okpay_relay_dropped_total").increment(items.len() as u64);
            tracing::warn!(error = %e, "notifications not relayed to the other nodes");
        }
    }
}

/// Delivers the other nodes' notifications into `hub` until the bus closes.
pub(crate) async fn inbound(mut bus: broadcast::Receiver<BusEvent>, hub: Arc<HubRef>) {
    loop {
        match bus.recv().await {
            Ok(BusEvent::Message { topic, payload }) if topic == TOPIC => {
                match serde_json::from_slice::<Vec<Item>>(&payload) {
                    Ok(items) => {
                        // The engine stopped: nobody to deliver to.
                        let Some(shared) = hub.0.upgrade() else {
                            return;
                        };
                        for item in items {
                            shared
                                .hub
                                .publish_relayed(AccountId(item.account), &item.notifications);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "a malformed relayed notification"),
                }
            }
            // Lost messages show as seq gaps, which subscribers fill themselves.
            Ok(BusEvent::Message { .. } | BusEvent::Reset)
            | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// The hub, reached through the engine's shared state without keeping the
/// engine alive.
pub(crate) struct HubRef(pub(crate) std::sync::Weak<super::Shared>);

/// [`crate::Engine::subscribe`] for an account whose shard another node hosts
/// (see the module doc). Costs a read of the shard's log tail (at most
/// `checkpoint_every` records), so only subscriptions (a websocket opening, a
/// gap being filled) pay it.
pub(crate) async fn subscribe_elsewhere(
    shared: &Arc<Shared>,
    account: AccountId,
    after: Option<u64>,
) -> Result<Subscription, EngineError> {
    let receiver = shared.hub.subscribe(account);
    let shard = shared.layout.shard_of(account);
    let unavailable = |e: StoreError| EngineError::Unavailable(e.to_string());
    // A checkpoint running meanwhile may trim frames between the reads: retry.
    let mut state = None;
    for attempt in 0..5 {
        match super::recovery::recover_shard(shared.log.clone(), shard).await {
            Ok(mut recovered) => {
                state = match recovered.accounts.remove(&account) {
                    Some(r) => Some(r.state),
                    None => super::recovery::load_account(shared.log.clone(), shard, account)
                        .await
                        .map_err(unavailable)?
                        .map(|(_, s)| s),
                };
                break;
            }
            Err(StoreError::Corrupt(_)) if attempt < 4 => continue,
            Err(e) => return Err(unavailable(e)),
        }
    }
    let Some(state) = state.filter(|s| s.opened) else {
        return Err(EngineError::Rejected(crate::Rejection::AccountNotFound));
    };
    let published = state.notification_seq;
    let after = after.unwrap_or(published);
    let backlog: Vec<Notification> = state.notifications_after(after).cloned().collect();
    let first = backlog.first().map_or(published + 1, |n| n.seq);
    Ok(Subscription {
        gap: after < published && first > after + 1,
        backlog,
        receiver,
    })
}
