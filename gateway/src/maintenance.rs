//! Maintenance mode: while on, every money-moving and account-changing request
//! answers `503 MAINTENANCE`; reads keep working. Turning it on or off pushes
//! `system.status` to every connected websocket.
//!
//! The switch is shared by every node on one store: it is written to the
//! coordination state (value `maintenance`, JSON) and announced on the bus, and
//! each node keeps a copy in memory, so the check on every request reads no
//! Redis. Another node's switch reaches this one through [`Maintenance::listen`]
//! (bus latency), which also reads the value again whenever the bus may have
//! lost messages and every [`RELOAD_EVERY`] as a backstop.

use std::sync::Arc;
use std::time::Duration;

use okpay_engine::coord::{BusEvent, Coord};
use parking_lot::RwLock;
use tokio::sync::broadcast;

use crate::error::{ApiError, ErrorCode};
use crate::stream::SystemStatus;

/// The shared value and the bus topic.
const NAME: &str = "maintenance";

/// How often a node reads the switch again even without news (a lost message
/// is corrected within this).
pub const RELOAD_EVERY: Duration = Duration::from_secs(5);

/// The current maintenance state.
pub struct Maintenance {
    status: RwLock<SystemStatus>,
    push: broadcast::Sender<SystemStatus>,
    coord: Arc<dyn Coord>,
}

impl Maintenance {
    pub fn new(push: broadcast::Sender<SystemStatus>, coord: Arc<dyn Coord>) -> Self {
        Maintenance {
            status: RwLock::new(SystemStatus {
                maintenance: false,
                message: None,
            }),
            push,
            coord,
        }
    }

    pub fn status(&self) -> SystemStatus {
        self.status.read().clone()
    }

    /// Takes `status` as the current one, telling this node's sockets if it
    /// changed anything.
    fn apply(&self, status: SystemStatus) {
        {
            let mut current = self.status.write();
            if *current == status {
                return;
            }
            *current = status.clone();
        }
        let _ = self.push.send(status);
    }

    /// Switches maintenance on or off on every node and tells every socket.
    /// 503 when the shared state can't be written (nothing changed then).
    pub async fn set(
        &self,
        maintenance: bool,
        message: Option<String>,
    ) -> Result<SystemStatus, ApiError> {
        let status = SystemStatus {
            maintenance,
            message,
        };
        // unwrap: a struct of a bool and an optional string always serializes.
        let json = serde_json::to_string(&status).unwrap();
        self.coord.put(NAME, &json).await.map_err(|e| {
            tracing::warn!(error = %e, "maintenance switch not stored");
            ApiError::unavailable()
        })?;
        self.apply(status.clone());
        if let Err(e) = self.coord.publish(NAME, json.into_bytes()).await {
            // The others read it within RELOAD_EVERY anyway.
            tracing::warn!(error = %e, "maintenance switch not announced to the other nodes");
        }
        Ok(status)
    }

    /// Reads the shared switch (at start-up, and when news may have been lost).
    pub async fn reload(&self) {
        match self.coord.get(NAME).await {
            Ok(Some(json)) => match serde_json::from_str(&json) {
                Ok(status) => self.apply(status),
                Err(e) => tracing::warn!(error = %e, "the stored maintenance switch is malformed"),
            },
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "maintenance switch unreadable"),
        }
    }

    /// Follows the other nodes' switches until the bus closes (see the module doc).
    pub async fn listen(&self, mut bus: broadcast::Receiver<BusEvent>) {
        self.reload().await;
        if !self.coord.is_shared() {
            return;
        }
        let mut reload = tokio::time::interval(RELOAD_EVERY);
        loop {
            tokio::select! {
                event = bus.recv() => match event {
                    Ok(BusEvent::Message { topic, payload }) if topic == NAME => {
                        match serde_json::from_slice(&payload) {
                            Ok(status) => self.apply(status),
                            Err(e) => tracing::warn!(error = %e, "a malformed maintenance switch on the bus"),
                        }
                    }
                    Ok(BusEvent::Message { .. }) => {}
                    Ok(BusEvent::Reset) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        self.reload().await;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = reload.tick() => self.reload().await,
            }
        }
    }

    /// Fails with `503 MAINTENANCE` while maintenance is on (call first in every
    /// handler that changes anything).
    pub fn check(&self) -> Result<(), ApiError> {
        let s = self.status.read();
        if s.maintenance {
            let detail = s
                .message
                .clone()
                .unwrap_or_else(|| "The service is in maintenance.".into());
            return Err(ApiError::new(ErrorCode::Maintenance, detail).retry_after(60));
        }
        Ok(())
    }
}
