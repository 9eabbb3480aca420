//! The task behind one `GET /v1/admin/stream` connection: every `alert.raised` and
//! `account.status_changed` of every account, for the risk-operations console.
//!
//! Same shape as the account stream (one `select!` over socket readiness, client
//! messages, the engine's operators' stream, `system.status` and the heartbeat),
//! minus replay: the operators' stream is live only — nothing is retained across
//! accounts — so `resume` is answered with an `error` frame, and a console that
//! falls behind is disconnected and should reload its lists over HTTP.

use actix_web::web;
use actix_ws::{AggregatedMessageStream, CloseCode};
use okpay_engine::runtime::hub::AdminNotice;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;
use tokio::time::{interval_at, sleep_until, Instant, MissedTickBehavior};

use crate::error::ErrorCode;
use crate::state::AppState;
use crate::stream::ConnectionSlot;
use crate::ws::frame::{self, ClientMessage};
use crate::ws::link::{Ending, Link};

/// What the connection needs, taken at the handshake.
pub struct AdminConnection {
    pub state: web::Data<AppState>,
    pub notices: Receiver<AdminNotice>,
    pub link: Link,
    pub messages: AggregatedMessageStream,
    /// Released when the task ends.
    pub slot: ConnectionSlot,
}

/// Runs the connection until it ends.
pub async fn run(conn: AdminConnection) {
    let AdminConnection {
        state,
        notices,
        mut link,
        mut messages,
        slot,
    } = conn;
    tracing::debug!("admin stream opened");
    let ending = serve(&state, notices, &mut link, &mut messages).await;
    tracing::debug!(?ending, "admin stream closed");
    link.finish(ending).await;
    drop(slot);
}

async fn serve(
    state: &AppState,
    mut notices: Receiver<AdminNotice>,
    link: &mut Link,
    messages: &mut AggregatedMessageStream,
) -> Ending {
    let heartbeat = state.settings.ws_heartbeat;
    let mut ticker = interval_at(Instant::now() + heartbeat, heartbeat);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut system = state.streams.system.subscribe();
    let status = state.maintenance.status();
    if status.maintenance {
        if let Err(ending) = link.push_text(frame::system_status(&status, state.now())) {
            return ending;
        }
    }
    loop {
        let pending = link.pending();
        let stall_deadline = link.stall_deadline();
        let step = tokio::select! {
            biased;
            ready = link.ready(), if pending => match ready {
                Ok(()) => link.send_head(),
                Err(_) => Err(Ending::Gone),
            },
            () = sleep_until(stall_deadline), if pending => {
                Err(Ending::SlowConsumer("a send stalled for a heartbeat interval"))
            }
            msg = messages.recv() => match link.on_inbound(msg) {
                Ok(Some(ClientMessage::Resume { .. })) => link.push_text(frame::error(
                    ErrorCode::UnsupportedMessage,
                    "The admin stream is live only; reload lists over HTTP instead of resuming.",
                )),
                Ok(Some(ClientMessage::Ping) | None) => Ok(()),
                Err(ending) => Err(ending),
            },
            n = notices.recv() => match n {
                Ok(n) => link.push_text(frame::admin_event(n.account, &n.notification)),
                Err(RecvError::Lagged(_)) => {
                    Err(Ending::SlowConsumer("the operators' stream lagged"))
                }
                Err(RecvError::Closed) => Err(Ending::Close(CloseCode::Away, "stream ended".into())),
            },
            s = system.recv() => match s {
                Ok(status) => link.push_text(frame::system_status(&status, state.now())),
                Err(RecvError::Lagged(_)) => {
                    link.push_text(frame::system_status(&state.maintenance.status(), state.now()))
                }
                Err(RecvError::Closed) => Ok(()),
            },
            _ = ticker.tick() => link.on_tick(),
        };
        if let Err(ending) = step {
            return ending;
        }
    }
}
