//! Shared state of the websocket streams: how many connections are open (bounded
//! in total, per account and per client IP, with a share of the total kept for
//! operators so a flood of user sockets can't lock the risk console out) and the
//! channel that pushes `system.status` to every connection. The
//! per-connection machinery lives in `crate::ws`; the handlers in
//! `crate::routes::stream`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use serde::Serialize;
use tokio::sync::broadcast;
use utoipa::ToSchema;

/// Gauge: websocket connections open now (user and admin streams).
pub const METRIC_CONNECTIONS: &str = "okpay_ws_connections";
/// Counter: frames handed to sockets (events, system frames, pongs, errors), by
/// `stream` (`account` or `admin`).
pub const METRIC_FRAMES_SENT: &str = "okpay_ws_frames_sent_total";
/// Counter: connections closed because the client did not read fast enough (its
/// queue filled, its engine subscription lagged, or a send stalled), by `stream`.
pub const METRIC_SLOW_CONSUMERS: &str = "okpay_ws_slow_consumers_total";

/// Whether the system is in maintenance, as pushed to every socket.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq, ToSchema)]
pub struct SystemStatus {
    pub maintenance: bool,
    pub message: Option<String>,
}

/// At most this many streams of one account at once (a user's devices and tabs).
pub const MAX_PER_ACCOUNT: usize = 8;
/// At most this many user streams from one client address at once, by default
/// (`[server] ws_max_per_ip`).
pub const MAX_PER_IP: usize = 64;

/// Counters and channels shared by all websocket connections.
pub struct Streams {
    /// Shared with every [`ConnectionSlot`], which outlives the request that took it
    /// (the connection's task runs after the handler has returned).
    connections: Arc<AtomicUsize>,
    /// Open user streams per account (`acc_…`) and per client address (`ip:…`);
    /// an entry leaves with its last stream, so the map is bounded by the streams.
    keyed: Arc<Mutex<HashMap<String, usize>>>,
    pub max_connections: usize,
    /// User streams from one client address at most.
    max_per_ip: usize,
    pub system: broadcast::Sender<SystemStatus>,
}

/// Why no slot was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The server's bound (for users: less the operators' reserve).
    Full,
    /// The account's or the address's own bound.
    TooManyForClient,
}

impl Streams {
    /// Streams bounded by `max_connections` in total and [`MAX_PER_IP`] per address.
    pub fn new(max_connections: usize) -> Self {
        Streams::with_per_ip(max_connections, MAX_PER_IP)
    }

    /// Streams bounded by `max_connections` in total and `max_per_ip` per address.
    pub fn with_per_ip(max_connections: usize, max_per_ip: usize) -> Self {
        Streams {
            connections: Arc::new(AtomicUsize::new(0)),
            keyed: Arc::new(Mutex::new(HashMap::new())),
            max_connections,
            max_per_ip: max_per_ip.max(1),
            system: broadcast::channel(16).0,
        }
    }

    /// Slots kept for operators' streams: a twentieth of the total, at least one
    /// (none when the bound is a single stream).
    pub fn operator_reserve(&self) -> usize {
        if self.max_connections < 2 {
            return 0;
        }
        (self.max_connections / 20).max(1)
    }

    /// Takes an operator's connection slot (the whole bound), or `None` when full.
    pub fn open(&self) -> Option<ConnectionSlot> {
        self.take(self.max_connections, Vec::new())
    }

    /// Takes a user's slot for `account` from `ip`: within the total less the
    /// operators' reserve, [`MAX_PER_ACCOUNT`] and the per-address bound.
    pub fn open_user(&self, account: &str, ip: &str) -> Result<ConnectionSlot, Refusal> {
        let keys = vec![
            (format!("acc:{account}"), MAX_PER_ACCOUNT),
            (format!("ip:{ip}"), self.max_per_ip),
        ];
        {
            let mut keyed = self.keyed.lock();
            if keys
                .iter()
                .any(|(k, max)| keyed.get(k).copied().unwrap_or(0) >= *max)
            {
                return Err(Refusal::TooManyForClient);
            }
            for (k, _) in &keys {
                *keyed.entry(k.clone()).or_insert(0) += 1;
            }
        }
        let keys: Vec<String> = keys.into_iter().map(|(k, _)| k).collect();
        let limit = self.max_connections - self.operator_reserve();
        match self.take(limit, keys.clone()) {
            Some(slot) => Ok(slot),
            None => {
                release(&self.keyed, &keys);
                Err(Refusal::Full)
            }
        }
    }

    fn take(&self, limit: usize, keys: Vec<String>) -> Option<ConnectionSlot> {
        let prev = self.connections.fetch_add(1, Ordering::AcqRel);
        if prev >= limit {
            self.connections.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        metrics::gauge!(METRIC_CONNECTIONS).set((prev + 1) as f64);
        Some(ConnectionSlot {
            connections: self.connections.clone(),
            keyed: self.keyed.clone(),
            keys,
        })
    }

    pub fn open_connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }
}

/// A held connection slot; released on drop (when the connection's task ends).
pub struct ConnectionSlot {
    connections: Arc<AtomicUsize>,
    keyed: Arc<Mutex<HashMap<String, usize>>>,
    keys: Vec<String>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let now = self.connections.fetch_sub(1, Ordering::AcqRel) - 1;
        metrics::gauge!(METRIC_CONNECTIONS).set(now as f64);
        release(&self.keyed, &self.keys);
    }
}

/// Gives back one stream of each of `keys`; an entry at zero is removed.
fn release(keyed: &Mutex<HashMap<String, usize>>, keys: &[String]) {
    let mut keyed = keyed.lock();
    for k in keys {
        if let Some(n) = keyed.get_mut(k) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                keyed.remove(k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_released_on_drop() {
        let streams = Streams::new(2);
        let a = streams.open().unwrap();
        let _b = streams.open().unwrap();
        assert!(streams.open().is_none());
        assert_eq!(streams.open_connections(), 2);
        drop(a);
        assert_eq!(streams.open_connections(), 1);
        assert!(streams.open().is_some());
    }

    #[test]
    fn users_are_bounded_per_account_and_ip_and_leave_operators_a_reserve() {
        let streams = Streams::new(40);
        assert_eq!(streams.operator_reserve(), 2);
        let mut held: Vec<ConnectionSlot> = (0..MAX_PER_ACCOUNT)
            .map(|_| streams.open_user("acc_1", "10.0.0.1").unwrap())
            .collect();
        assert_eq!(
            streams.open_user("acc_1", "10.0.0.2").err(),
            Some(Refusal::TooManyForClient)
        );
        held.pop();
        held.push(streams.open_user("acc_1", "10.0.0.2").unwrap());
        // Other accounts fill the rest but the operators' reserve.
        let mut n = 2;
        while let Ok(s) = streams.open_user(&format!("acc_{n}"), &format!("10.1.0.{n}")) {
            held.push(s);
            n += 1;
        }
        assert_eq!(streams.open_connections(), 38);
        assert_eq!(
            streams.open_user("acc_x", "10.2.0.1").err(),
            Some(Refusal::Full)
        );
        let ops: Vec<_> = (0..2).map(|_| streams.open().unwrap()).collect();
        assert!(streams.open().is_none());
        drop(ops);
        drop(held);
        assert_eq!(streams.open_connections(), 0);
        assert!(
            streams.keyed.lock().is_empty(),
            "no entry outlives its streams"
        );
    }

    #[test]
    fn the_per_address_bound_is_configurable() {
        let default = Streams::new(1_000);
        let held: Vec<ConnectionSlot> = (0..MAX_PER_IP)
            .map(|n| default.open_user(&format!("acc_{n}"), "127.0.0.1").unwrap())
            .collect();
        assert_eq!(
            default.open_user("acc_x", "127.0.0.1").err(),
            Some(Refusal::TooManyForClient)
        );
        drop(held);
        let raised = Streams::with_per_ip(1_000, 300);
        let held: Vec<ConnectionSlot> = (0..300)
            .map(|n| raised.open_user(&format!("acc_{n}"), "127.0.0.1").unwrap())
            .collect();
        assert_eq!(
            raised.open_user("acc_x", "127.0.0.1").err(),
            Some(Refusal::TooManyForClient)
        );
        drop(held);
    }
}
