//! The task behind one `GET /v1/stream` connection: one `select!` over the
//! socket's readiness, the client's messages, the account's engine subscription,
//! `system.status` pushes and the heartbeat (the chat-actorless pattern).
//!
//! Ordering and exactly-once: the engine's subscription is a backlog (retained
//! events after the requested seq) followed by a receiver of everything published
//! later, with no overlap. The backlog is drained into the queue as room allows,
//! and the receiver is read only once the backlog is empty, so events go out in
//! `seq` order. `last_seq` (the highest seq queued) drops anything already sent.
//! A `resume` re-subscribes from the client's seq and drops queued, unsent events
//! (the replay carries them), so the client sees each event after its seq once.
//!
//! Gaps: on several nodes, notifications of accounts owned elsewhere arrive
//! relayed through Redis, which may lose some (see `okpay_engine::runtime::relay`).
//! Once the feed knows the seq it stands at, a live event whose seq skips ahead
//! makes it subscribe again after the last queued seq (the account's retained
//! notifications fill the gap, as for a client's `resume`, without dropping what
//! is queued); on one node seqs never skip and this costs a comparison.
//!
//! Revoked or expired sessions: the token is checked again whenever the session
//! cache evicts the account (a revocation through this node or, heard on the
//! bus, through any other) and on every heartbeat, and the socket is closed with
//! 1008 once it no longer authenticates. A revocation therefore closes the socket
//! within the bus's latency; the heartbeat bounds what the bus lost (and expiry)
//! to one interval.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use actix_ws::{AggregatedMessageStream, CloseCode};
use okpay_engine::domain::notification::Notification;
use okpay_engine::Subscription;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::broadcast::Receiver;
use tokio::time::{interval_at, sleep_until, Instant, MissedTickBehavior};

use crate::auth::{self, Auth};
use crate::error::ErrorCode;
use crate::state::AppState;
use crate::stream::ConnectionSlot;
use crate::ws::frame::{self, ClientMessage};
use crate::ws::link::{Ending, Link};

/// How long a `resume` or a heartbeat's token check may wait for the account's
/// actor before the connection carries on without it.
const ENGINE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the connection needs, taken at the handshake.
pub struct AccountConnection {
    pub state: web::Data<AppState>,
    pub auth: Auth,
    /// The token the connection was opened with, re-checked every heartbeat.
    pub token: String,
    /// Changes on each eviction of the account's sessions (taken before the
    /// handshake's token check).
    pub revoked: tokio::sync::watch::Receiver<()>,
    /// The seq the client asked to start after (`?after_seq=`), if any.
    pub after_seq: Option<u64>,
    pub subscription: Subscription,
    pub link: Link,
    pub messages: AggregatedMessageStream,
    /// Released when the task ends.
    pub slot: ConnectionSlot,
}

/// The engine side of the connection: what is left to replay, the live receiver,
/// and the last seq queued.
struct Feed {
    backlog: VecDeque<Notification>,
    receiver: Receiver<Arc<Notification>>,
    last_seq: u64,
    /// Whether `last_seq` is where the account's stream stands (a start after a
    /// given seq, or any event queued since): only then is a skip a gap.
    anchored: bool,
}

impl Feed {
    /// Takes over a fresh subscription made after `after_seq`; tells the client
    /// when events it asked for are no longer retained.
    fn start(
        state: &AppState,
        link: &mut Link,
        sub: Subscription,
        after_seq: Option<u64>,
    ) -> Result<Feed, Ending> {
        if sub.gap {
            let after = after_seq.unwrap_or(0);
            link.push_text(frame::gap(
                after,
                sub.backlog.first().map(|n| n.seq),
                state.now(),
            ))?;
        }
        Ok(Feed {
            backlog: sub.backlog.into(),
            receiver: sub.receiver,
            last_seq: after_seq.unwrap_or(0),
            anchored: after_seq.is_some(),
        })
    }

    /// Whether a live `n` skips seqs after what was queued (see the module doc).
    fn skips(&self, n: &Notification) -> bool {
        self.anchored && n.seq > self.last_seq + 1
    }

    /// Queues `n` unless it was already queued.
    fn queue(&mut self, link: &mut Link, n: &Notification) -> Result<(), Ending> {
        if n.seq <= self.last_seq {
            return Ok(());
        }
        self.last_seq = n.seq;
        self.anchored = true;
        link.push_event(frame::event(n))
    }

    /// Moves replayed events into the queue while it has room (the backlog can be
    /// larger than `ws_queue`; it is already in memory, bounded by the engine's
    /// retention).
    fn refill(&mut self, link: &mut Link) -> Result<(), Ending> {
        while link.has_room() {
            let Some(n) = self.backlog.pop_front() else {
                break;
            };
            self.queue(link, &n)?;
        }
        Ok(())
    }
}

/// Runs the connection until it ends; never panics on client input.
pub async fn run(conn: AccountConnection) {
    let AccountConnection {
        state,
        auth,
        token,
        revoked,
        after_seq,
        subscription,
        mut link,
        mut messages,
        slot,
    } = conn;
    let account = auth.account;
    tracing::debug!(%account, ?after_seq, "account stream opened");
    let ending = serve(
        &state,
        &auth,
        (&token, revoked),
        after_seq,
        subscription,
        &mut link,
        &mut messages,
    )
    .await;
    tracing::debug!(%account, ?ending, "account stream closed");
    link.finish(ending).await;
    drop(slot);
}

/// `session`: the token the socket was opened with, and its account's
/// evictions (see the module doc).
async fn serve(
    state: &AppState,
    auth: &Auth,
    session: (&str, tokio::sync::watch::Receiver<()>),
    after_seq: Option<u64>,
    subscription: Subscription,
    link: &mut Link,
    messages: &mut AggregatedMessageStream,
) -> Ending {
    let (token, mut revoked) = session;
    // False once the cache dropped the channel (never while this holds it).
    let mut watching = true;
    let heartbeat = state.settings.ws_heartbeat;
    let mut ticker = interval_at(Instant::now() + heartbeat, heartbeat);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut system = state.streams.system.subscribe();
    let mut feed = match Feed::start(state, link, subscription, after_seq) {
        Ok(feed) => feed,
        Err(ending) => return ending,
    };
    // A client connecting during maintenance learns it at once.
    let status = state.maintenance.status();
    if status.maintenance {
        if let Err(ending) = link.push_text(frame::system_status(&status, state.now())) {
            return ending;
        }
    }
    loop {
        if let Err(ending) = feed.refill(link) {
            return ending;
        }
        // What the engine published meanwhile is taken now, and everything queued
        // goes to the socket as far as it has room: a burst of events costs one
        // round of the loop and leaves in one write.
        if let Err(ending) = drain_live(state, auth, link, &mut feed).await {
            return ending;
        }
        if let Err(ending) = link.send_ready().await {
            return ending;
        }
        let pending = link.pending();
        let stall_deadline = link.stall_deadline();
        let live = feed.backlog.is_empty();
        let step = tokio::select! {
            // Writing first: a connection drains before it takes more in.
            biased;
            ready = link.ready(), if pending => match ready {
                Ok(()) => link.send_head(),
                Err(_) => Err(Ending::Gone),
            },
            () = sleep_until(stall_deadline), if pending => {
                Err(Ending::SlowConsumer("a send stalled for a heartbeat interval"))
            }
            msg = messages.recv() => match link.on_inbound(msg) {
                Ok(Some(ClientMessage::Resume { after_seq })) => {
                    resume(state, auth, after_seq, link, &mut feed).await
                }
                Ok(Some(ClientMessage::Ping) | None) => Ok(()),
                Err(ending) => Err(ending),
            },
            n = feed.receiver.recv(), if live => match n {
                Ok(n) if feed.skips(&n) => fill_gap(state, auth, link, &mut feed, &n).await,
                Ok(n) => feed.queue(link, &n),
                Err(RecvError::Lagged(_)) => {
                    Err(Ending::SlowConsumer("the engine's stream lagged"))
                }
                // The hub keeps a sender while anyone subscribes; this is a shutdown.
                Err(RecvError::Closed) => Err(Ending::Close(CloseCode::Away, "stream ended".into())),
            },
            s = system.recv() => match s {
                Ok(status) => link.push_text(frame::system_status(&status, state.now())),
                // Missed toggles: the current status is what matters.
                Err(RecvError::Lagged(_)) => {
                    link.push_text(frame::system_status(&state.maintenance.status(), state.now()))
                }
                Err(RecvError::Closed) => Ok(()),
            },
            changed = revoked.changed(), if watching => match changed {
                Ok(()) => still_authenticated(state, token).await,
                Err(_) => {
                    watching = false;
                    Ok(())
                }
            },
            _ = ticker.tick() => match link.on_tick() {
                Ok(()) => still_authenticated(state, token).await,
                Err(ending) => Err(ending),
            },
        };
        if let Err(ending) = step {
            return ending;
        }
    }
}

/// Queues the live events already published, while the queue has room and the
/// backlog is empty (the same handling as the loop's receiving branch, without
/// waiting; a full queue leaves the rest to that branch, after the socket had its
/// chance to take frames).
async fn drain_live(
    state: &AppState,
    auth: &Auth,
    link: &mut Link,
    feed: &mut Feed,
) -> Result<(), Ending> {
    while feed.backlog.is_empty() && link.has_room() {
        match feed.receiver.try_recv() {
            Ok(n) if feed.skips(&n) => fill_gap(state, auth, link, feed, &n).await?,
            Ok(n) => feed.queue(link, &n)?,
            Err(TryRecvError::Empty) => break,
            Err(TryRecvError::Lagged(_)) => {
                return Err(Ending::SlowConsumer("the engine's stream lagged"))
            }
            Err(TryRecvError::Closed) => {
                return Err(Ending::Close(CloseCode::Away, "stream ended".into()))
            }
        }
    }
    Ok(())
}

/// Re-subscribes after the client's seq: queued, unsent events are dropped (the
/// replay carries them) and the old receiver is replaced, so nothing is sent twice
/// and nothing published meanwhile is missed.
async fn resume(
    state: &AppState,
    auth: &Auth,
    after_seq: u64,
    link: &mut Link,
    feed: &mut Feed,
) -> Result<(), Ending> {
    let sub = tokio::time::timeout(
        ENGINE_TIMEOUT,
        state.engine.subscribe(auth.account, Some(after_seq)),
    )
    .await;
    match sub {
        Ok(Ok(sub)) => {
            link.drop_events();
            *feed = Feed::start(state, link, sub, Some(after_seq))?;
            Ok(())
        }
        // The live feed carries on; the client may try again.
        Ok(Err(_)) | Err(_) => link.push_text(frame::error(
            ErrorCode::Overloaded,
            "The resume could not be served now; send it again shortly.",
        )),
    }
}

/// Subscribes again after the last queued seq, keeping what is queued, so the
/// account's retained notifications fill a gap in the live feed; if that can't
/// be served now, `n` is queued as it is (the client can still `resume`).
async fn fill_gap(
    state: &AppState,
    auth: &Auth,
    link: &mut Link,
    feed: &mut Feed,
    n: &Notification,
) -> Result<(), Ending> {
    let after = feed.last_seq;
    let sub = tokio::time::timeout(
        ENGINE_TIMEOUT,
        state.engine.subscribe(auth.account, Some(after)),
    )
    .await;
    match sub {
        Ok(Ok(sub)) => {
            *feed = Feed::start(state, link, sub, Some(after))?;
            Ok(())
        }
        Ok(Err(_)) | Err(_) => feed.queue(link, n),
    }
}

/// Closes the socket once its session no longer authenticates (revoked, expired,
/// password reset). An engine that is busy or unavailable is not the client's
/// fault: the check is skipped until the next tick.
async fn still_authenticated(state: &AppState, token: &str) -> Result<(), Ending> {
    match tokio::time::timeout(ENGINE_TIMEOUT, auth::check_token(state, token)).await {
        Ok(Err(e)) if e.status() == actix_web::http::StatusCode::UNAUTHORIZED => Err(
            Ending::Close(CloseCode::Policy, "session revoked or expired".into()),
        ),
        _ => Ok(()),
    }
}
