//! Coordination between the `okpay` processes that share one store: what must
//! hold across nodes but is not money (issue 11, "no per-process truth").
//!
//! The engine's [`Store`](crate::store::Store) holds durable facts; this holds the
//! short-lived, shared ones every node must agree on: failure counters for rate
//! limits, short locks, small shared values (maintenance mode), a bounded feed
//! (the operators' newest alerts) and a fan-out bus (a session revoked here must
//! be forgotten by every node's session cache; notifications published by a
//! shard's owner must reach subscribers on every node).
//!
//! Two implementations with one contract (checked by [`conformance`]):
//!
//! - [`memory::LocalCoord`] for the memory and embedded stores: one process is the
//!   whole deployment, so everything is in-process and the bus is a no-op (there
//!   is nobody else to tell), costing nothing on the hot path;
//! - [`redis::RedisCoord`] on Redis, standalone or Cluster: every key is under its
//!   own hash tag so each command touches one slot; the bus is Redis pub/sub.
//!
//! What is *not* guaranteed: the bus is at most once (a node whose subscription
//! dropped misses what was published meanwhile). Subscribers therefore get a
//! [`BusEvent::Reset`] after any such loss and must fall back to something safe
//! (the session cache forgets everything; maintenance mode is read again;
//! websocket subscribers fill gaps from the account's stored notifications).

pub mod conformance;
pub mod memory;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use crate::store::StoreFuture;

/// Longest key or name a caller may pass (callers hash client input first).
pub const MAX_KEY_BYTES: usize = 128;

/// Longest message the bus carries; a longer one is refused (the caller splits).
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Messages a subscriber may fall behind before it is told [`BusEvent::Reset`].
pub const BUS_CAPACITY: usize = 8192;

/// A sliding-window limit: at most `max` hits per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub max: u32,
    pub window: Duration,
}

/// What a bus subscriber receives.
#[derive(Debug, Clone)]
pub enum BusEvent {
    /// A message another node published on `topic`.
    Message { topic: String, payload: Arc<[u8]> },
    /// Messages may have been lost (the subscription was re-established, or this
    /// receiver fell behind): state fed by the bus must be refreshed.
    Reset,
}

/// Shared, short-lived coordination state (see the module doc). Scopes, names
/// and topics are chosen by code; keys may come from clients and are at most
/// [`MAX_KEY_BYTES`] (callers hash anything longer or sensitive).
pub trait Coord: Send + Sync + 'static {
    /// `Some(wait)` when `key` of `scope` had `limit.max` hits within the window:
    /// `wait` is the time until the oldest of them leaves the window.
    fn window_blocked(
        &self,
        scope: &str,
        key: &str,
        limit: Window,
    ) -> StoreFuture<'_, Option<Duration>>;

    /// Records one hit of `key`, then answers as [`window_blocked`](Self::window_blocked).
    fn window_hit(
        &self,
        scope: &str,
        key: &str,
        limit: Window,
    ) -> StoreFuture<'_, Option<Duration>>;

    /// Takes the lock `name` for `token` unless someone holds it; it frees itself
    /// after `ttl` (a crashed holder never blocks forever). `true` when taken.
    fn try_lock(&self, name: &str, token: u64, ttl: Duration) -> StoreFuture<'_, bool>;

    /// Frees the lock `name` if `token` still holds it.
    fn unlock(&self, name: &str, token: u64) -> StoreFuture<'_, ()>;

    /// Sets the shared value `name` (a few bytes: a switch, a small JSON).
    fn put(&self, name: &str, value: &str) -> StoreFuture<'_, ()>;

    /// Reads the shared value `name`.
    fn get(&self, name: &str) -> StoreFuture<'_, Option<String>>;

    /// Appends `entry` to the feed `name`, keeping its newest `keep` entries.
    fn feed_push(&self, name: &str, entry: Vec<u8>, keep: usize) -> StoreFuture<'_, ()>;

    /// The newest `limit` entries of the feed `name`, newest first.
    fn feed_newest(&self, name: &str, limit: usize) -> StoreFuture<'_, Vec<Vec<u8>>>;

    /// Sends `payload` on `topic` to every *other* node's subscribers (at most
    /// once; see the module doc). A no-op when this process is the deployment.
    fn publish(&self, topic: &str, payload: Vec<u8>) -> StoreFuture<'_, ()>;

    /// Messages other nodes publish from now on, on every topic.
    fn subscribe(&self) -> broadcast::Receiver<BusEvent>;

    /// Whether other processes share this state (false: in-process only).
    fn is_shared(&self) -> bool;

    /// The nodes registered in the shared state and the shard leases (see
    /// [`crate::cluster`]) of a layout of `shards` shards; `None` when this
    /// process is the deployment (it owns every shard).
    fn membership(&self, shards: u16) -> StoreFuture<'_, Option<Membership>>;
}

/// What the shared state says of the nodes and their shards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    /// Registered nodes and the milliseconds until their registration expires
    /// (negative: expired, not yet swept), by Redis's clock.
    pub nodes: Vec<(String, i64)>,
    /// Per shard (in order): the lease holder, if any, and the shard's epoch.
    pub shards: Vec<(Option<String>, u64)>,
}

/// Checks a caller-given key or name against [`MAX_KEY_BYTES`].
pub(crate) fn check_key(what: &str, key: &str) -> Result<(), crate::store::StoreError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(crate::store::StoreError::Corrupt(format!(
            "coordination {what} must have 1 to {MAX_KEY_BYTES} bytes"
        )));
    }
    Ok(())
}
