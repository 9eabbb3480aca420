//! Shared state of the websocket streams: how many connections are open (bounded)
//! and the channel that pushes `system.status` to every connection. The
//! per-connection machinery lives in `crate::ws`; the handlers in
//! `crate::routes::stream`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

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
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct SystemStatus {
    pub maintenance: bool,
    pub message: Option<String>,
}

/// Counters and channels shared by all websocket connections.
pub struct Streams {
    /// Shared with every [`ConnectionSlot`], which outlives the request that took it
    /// (the connection's task runs after the handler has returned).
    connections: Arc<AtomicUsize>,
    pub max_connections: usize,
    pub system: broadcast::Sender<SystemStatus>,
}

impl Streams {
    pub fn new(max_connections: usize) -> Self {
        Streams {
            connections: Arc::new(AtomicUsize::new(0)),
            max_connections,
            system: broadcast::channel(16).0,
        }
    }

    /// Takes a connection slot, or `None` when the bound is reached.
    pub fn open(&self) -> Option<ConnectionSlot> {
        let prev = self.connections.fetch_add(1, Ordering::AcqRel);
        if prev >= self.max_connections {
            self.connections.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        metrics::gauge!(METRIC_CONNECTIONS).set((prev + 1) as f64);
        Some(ConnectionSlot {
            connections: self.connections.clone(),
        })
    }

    pub fn open_connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }
}

/// A held connection slot; released on drop (when the connection's task ends).
pub struct ConnectionSlot {
    connections: Arc<AtomicUsize>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let now = self.connections.fetch_sub(1, Ordering::AcqRel) - 1;
        metrics::gauge!(METRIC_CONNECTIONS).set(now as f64);
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
}
