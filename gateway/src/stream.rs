//! Shared state of the websocket streams: how many connections are open (bounded)
//! and the channel that pushes `system.status` to every connection.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;
use tokio::sync::broadcast;
use utoipa::ToSchema;

/// Whether the system is in maintenance, as pushed to every socket.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct SystemStatus {
    pub maintenance: bool,
    pub message: Option<String>,
}

/// Counters and channels shared by all websocket connections.
pub struct Streams {
    connections: AtomicUsize,
    pub max_connections: usize,
    pub system: broadcast::Sender<SystemStatus>,
}

impl Streams {
    pub fn new(max_connections: usize) -> Self {
        Streams {
            connections: AtomicUsize::new(0),
            max_connections,
            system: broadcast::channel(16).0,
        }
    }

    /// Takes a connection slot, or `None` when the bound is reached.
    pub fn open(&self) -> Option<ConnectionSlot<'_>> {
        let prev = self.connections.fetch_add(1, Ordering::AcqRel);
        if prev >= self.max_connections {
            self.connections.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        metrics::gauge!("okpay_ws_connections").set((prev + 1) as f64);
        Some(ConnectionSlot { streams: self })
    }

    pub fn open_connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }
}

/// A held connection slot; released on drop.
pub struct ConnectionSlot<'a> {
    streams: &'a Streams,
}

impl Drop for ConnectionSlot<'_> {
    fn drop(&mut self) {
        let now = self.streams.connections.fetch_sub(1, Ordering::AcqRel) - 1;
        metrics::gauge!("okpay_ws_connections").set(now as f64);
    }
}
