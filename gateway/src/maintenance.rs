//! Maintenance mode: while on, every money-moving and account-changing request
//! answers `503 MAINTENANCE`; reads keep working. Turning it on or off pushes
//! `system.status` to every connected websocket.

use parking_lot::RwLock;
use tokio::sync::broadcast;

use crate::error::{ApiError, ErrorCode};
use crate::stream::SystemStatus;

/// The current maintenance state.
pub struct Maintenance {
    status: RwLock<SystemStatus>,
    push: broadcast::Sender<SystemStatus>,
}

impl Maintenance {
    pub fn new(push: broadcast::Sender<SystemStatus>) -> Self {
        Maintenance {
            status: RwLock::new(SystemStatus {
                maintenance: false,
                message: None,
            }),
            push,
        }
    }

    pub fn status(&self) -> SystemStatus {
        self.status.read().clone()
    }

    /// Switches maintenance on or off and tells every socket.
    pub fn set(&self, maintenance: bool, message: Option<String>) -> SystemStatus {
        let status = SystemStatus {
            maintenance,
            message,
        };
        *self.status.write() = status.clone();
        let _ = self.push.send(status.clone());
        status
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
