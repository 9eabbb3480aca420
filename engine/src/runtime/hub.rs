//! The notification hub: per-account broadcast streams and the operators' stream.
//!
//! Actors publish here only after the events behind a notification are durable.
//! Broadcast channels are bounded and never block the sender: a subscriber that
//! falls more than the channel's capacity behind sees `Lagged` and must resume
//! from its last `seq` (the gateway disconnects it), so a slow client can never
//! slow an actor or grow memory without bound.
//!
//! Several nodes on one Redis ([`super::relay`]): once a relay is installed,
//! every notification this node's shards publish is also handed to it (a
//! bounded queue, never blocking the executor; a full queue drops and counts),
//! and notifications other nodes' shards published arrive through
//! [`Hub::publish_relayed`], reaching this node's subscribers and operators
//! alike, marked [`AdminNotice::relayed`] so side effects (webhooks, notices,
//! the alert feed) run once, on the owner. A single node installs no relay and
//! pays nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use rustc_hash::FxHashMap as HashMap;
use tokio::sync::{broadcast, mpsc};

use crate::domain::notification::{Notification, NotificationKind};
use crate::ids::AccountId;

/// Capacity of each account's broadcast channel.
pub const ACCOUNT_STREAM_CAPACITY: usize = 256;
/// Capacity of the operators' stream.
pub const ADMIN_STREAM_CAPACITY: usize = 4096;
const SHARDS: usize = 64;

/// A notification for the operators' console: which account, and what.
#[derive(Clone, Debug)]
pub struct AdminNotice {
    pub account: AccountId,
    pub notification: Arc<Notification>,
    /// Published by another node's shard and relayed here: its owner already
    /// ran the side effects (webhooks, user notices, the alert feed).
    pub relayed: bool,
}

/// Notifications of one account, in `seq` order, for other nodes.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub account: AccountId,
    pub notifications: Vec<Notification>,
}

type Senders = HashMap<AccountId, broadcast::Sender<Arc<Notification>>>;

/// Where notifications fan out to subscribers.
pub struct Hub {
    shards: Vec<Mutex<Senders>>,
    /// Channels per shard, readable without the lock: publishing for an account
    /// nobody watches (the common case under load) takes no lock at all.
    channels: Vec<AtomicUsize>,
    admin: broadcast::Sender<AdminNotice>,
    /// Where this node's notifications go for the other nodes (see the module doc).
    relay: OnceLock<mpsc::Sender<Outgoing>>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::default()))
                .collect(),
            channels: (0..SHARDS).map(|_| AtomicUsize::new(0)).collect(),
            admin: broadcast::channel(ADMIN_STREAM_CAPACITY).0,
            relay: OnceLock::new(),
        }
    }
}

impl Hub {
    fn shard(&self, account: AccountId) -> &Mutex<Senders> {
        &self.shards[(account.0 as usize) % SHARDS]
    }

    fn channels(&self, account: AccountId) -> &AtomicUsize {
        &self.channels[(account.0 as usize) % SHARDS]
    }

    /// A receiver of every notification published for `account` from now on.
    pub fn subscribe(&self, account: AccountId) -> broadcast::Receiver<Arc<Notification>> {
        let mut shard = self.shard(account).lock();
        let sender = shard.entry(account).or_insert_with(|| {
            self.channels(account).fetch_add(1, Ordering::Release);
            broadcast::channel(ACCOUNT_STREAM_CAPACITY).0
        });
        sender.subscribe()
    }

    /// A receiver of alerts and status changes of every account.
    pub fn subscribe_admin(&self) -> broadcast::Receiver<AdminNotice> {
        self.admin.subscribe()
    }

    /// Hands every notification published from now on to `relay` too; `false`
    /// if a relay was installed already.
    pub fn set_relay(&self, relay: mpsc::Sender<Outgoing>) -> bool {
        self.relay.set(relay).is_ok()
    }

    /// Publishes durable notifications of `account`, oldest first.
    pub fn publish<'a>(
        &self,
        account: AccountId,
        notifications: impl Iterator<Item = &'a Notification>,
    ) {
        let Some(relay) = self.relay.get() else {
            return self.deliver(account, notifications, false);
        };
        let notifications: Vec<Notification> = notifications.cloned().collect();
        self.deliver(account, notifications.iter(), false);
        if notifications.is_empty() {
            return;
        }
        if relay
            .try_send(Outgoing {
                account,
                notifications,
            })
            .is_err()
        {
            // Subscribers elsewhere see a seq gap and fill it from the account.
            metrics::counter!("okpay_relay_dropped_total").increment(1);
        }
    }

    /// Delivers notifications another node published (see the module doc).
    pub fn publish_relayed(&self, account: AccountId, notifications: &[Notification]) {
        self.deliver(account, notifications.iter(), true);
    }

    fn deliver<'a>(
        &self,
        account: AccountId,
        notifications: impl Iterator<Item = &'a Notification>,
        relayed: bool,
    ) {
        if self.channels(account).load(Ordering::Acquire) == 0 {
            // Nobody watches any account of this shard: only operators may care.
            for n in notifications {
                if matches!(
                    n.kind,
                    NotificationKind::AlertRaised { .. } | NotificationKind::StatusChanged { .. }
                ) {
                    let _ = self.admin.send(AdminNotice {
                        account,
                        notification: Arc::new(n.clone()),
                        relayed,
                    });
                }
            }
            return;
        }
        let mut shard = self.shard(account).lock();
        let sender = shard.get(&account);
        let mut any_receiver = false;
        for n in notifications {
            let for_admin = matches!(
                n.kind,
                NotificationKind::AlertRaised { .. } | NotificationKind::StatusChanged { .. }
            );
            let has_receivers = sender.is_some_and(|s| s.receiver_count() > 0);
            if !has_receivers && !for_admin {
                continue;
            }
            let n = Arc::new(n.clone());
            if let Some(s) = sender {
                // An error only means nobody listens any more.
                any_receiver |= s.send(n.clone()).is_ok();
            }
            if for_admin {
                let _ = self.admin.send(AdminNotice {
                    account,
                    notification: n,
                    relayed,
                });
            }
        }
        if sender.is_some_and(|s| s.receiver_count() == 0) && !any_receiver {
            shard.remove(&account);
            self.channels(account).fetch_sub(1, Ordering::Release);
        }
    }

    /// Accounts with at least one live subscriber channel.
    pub fn subscribed_accounts(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}
