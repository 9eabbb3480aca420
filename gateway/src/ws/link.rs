//! One websocket connection's plumbing, shared by the account and admin streams:
//! the bounded outgoing queue, the heartbeat, reading client messages, and
//! closing with a code and a reason.
//!
//! The connection's task never awaits a socket write inside its loop body. Frames
//! go into a queue of at most `ws_queue` entries; the loop's `select!` has a branch
//! that waits until the socket can take the head of the queue (`Sink::poll_ready`,
//! which is cancel-safe: losing the race to another branch loses no frame). So a
//! client that stops reading cannot stall heartbeats or client messages, and it
//! is disconnected — never buffered without bound — when:
//! - the queue is full when a frame must be added (the client fell `ws_queue`
//!   frames behind, on top of what the socket and the kernel already hold);
//! - the head of the queue could not be written for a whole heartbeat interval;
//! - the engine's broadcast subscription reports `Lagged` (the loop fell more than
//!   the channel's capacity behind; see `okpay_engine::runtime::hub`).
//!
//! All three count in `okpay_ws_slow_consumers_total` and close with 1013 (try
//! again later): the client should reconnect with `?after_seq=` its last seq.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use actix_web::web::Bytes;
use actix_ws::{
    AggregatedMessage, CloseCode, CloseReason, Closed, Message, ProtocolError, Session,
};
use futures::Sink;
use tokio::time::Instant;

use crate::error::ErrorCode;
use crate::stream::{METRIC_FRAMES_SENT, METRIC_SLOW_CONSUMERS};
use crate::ws::frame::{self, BadMessage, ClientMessage};

/// How long closing may wait for room in the socket before the connection is
/// simply dropped (which closes it too, without a close frame).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// A frame waiting for the socket.
enum Outgoing {
    /// An account event: dropped from the queue when the client resumes, since
    /// the replay sends it again.
    Event(String),
    /// Anything else (system status, pong, errors, gap notices).
    Text(String),
    Ping,
    Pong(Bytes),
}

/// Why a connection ends.
#[derive(Debug)]
pub enum Ending {
    /// The client sent a close frame (echoed back, as RFC 6455 asks).
    ClientClosed(Option<CloseReason>),
    /// The connection is gone (the client's TCP closed, or our session did).
    Gone,
    /// The server closes with this code and reason.
    Close(CloseCode, String),
    /// The client does not read fast enough (see the module doc).
    SlowConsumer(&'static str),
}

/// The socket side of one connection.
pub struct Link {
    session: Session,
    queue: VecDeque<Outgoing>,
    /// `ws_queue`: frames that may wait for the socket.
    capacity: usize,
    /// When the current head of the queue became the head (or the queue was
    /// last written from): the send-stall clock.
    head_since: Instant,
    /// When the client was last heard from (any frame).
    last_heard: Instant,
    heartbeat: Duration,
    /// `account` or `admin`, the metrics label.
    stream: &'static str,
    /// Frames sent on this stream kind, looked up once per connection rather
    /// than per frame (a label given as a variable makes the `counter!` macro
    /// build and hash a new key on each call).
    frames_sent: metrics::Counter,
}

impl Link {
    pub fn new(
        session: Session,
        capacity: usize,
        heartbeat: Duration,
        stream: &'static str,
    ) -> Link {
        let now = Instant::now();
        Link {
            session,
            queue: VecDeque::new(),
            capacity: capacity.max(1),
            head_since: now,
            last_heard: now,
            heartbeat,
            stream,
            frames_sent: metrics::counter!(METRIC_FRAMES_SENT, "stream" => stream),
        }
    }

    /// Whether frames wait for the socket.
    pub fn pending(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Whether one more frame fits in the queue.
    pub fn has_room(&self) -> bool {
        self.queue.len() < self.capacity
    }

    /// When a stalled head of the queue makes the client a slow consumer.
    pub fn stall_deadline(&self) -> Instant {
        self.head_since + self.heartbeat
    }

    /// Resolves when the socket can take one frame. Cancel-safe.
    pub async fn ready(&mut self) -> Result<(), Closed> {
        poll_fn(|cx| Pin::new(&mut self.session).poll_ready(cx)).await
    }

    /// Hands queued frames to the socket for as long as it takes them without
    /// waiting. Frames handed over together leave in one write (actix-ws encodes
    /// everything its channel holds into one buffer), and the connection's loop
    /// goes round once per burst instead of twice per frame (each round builds
    /// and registers every branch of its `select!` anew). A socket that has no
    /// room keeps the rest queued for [`Link::ready`].
    pub async fn send_ready(&mut self) -> Result<(), Ending> {
        poll_fn(|cx| {
            while !self.queue.is_empty() {
                match Pin::new(&mut self.session).poll_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        if let Err(ending) = self.send_head() {
                            return Poll::Ready(Err(ending));
                        }
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(Err(Ending::Gone)),
                    Poll::Pending => break,
                }
            }
            Poll::Ready(Ok(()))
        })
        .await
    }

    /// Hands the head of the queue to the socket; call after [`Link::ready`].
    pub fn send_head(&mut self) -> Result<(), Ending> {
        let Some(out) = self.queue.pop_front() else {
            return Ok(());
        };
        let counted = !matches!(out, Outgoing::Ping | Outgoing::Pong(_));
        let message = match out {
            Outgoing::Event(text) | Outgoing::Text(text) => Message::Text(text.into()),
            Outgoing::Ping => Message::Ping(Bytes::new()),
            Outgoing::Pong(bytes) => Message::Pong(bytes),
        };
        Pin::new(&mut self.session)
            .start_send(message)
            .map_err(|_| Ending::Gone)?;
        if counted {
            self.frames_sent.increment(1);
        }
        self.head_since = Instant::now();
        Ok(())
    }

    fn push(&mut self, out: Outgoing) -> Result<(), Ending> {
        if !self.has_room() {
            return Err(Ending::SlowConsumer("the client fell too far behind"));
        }
        if self.queue.is_empty() {
            self.head_since = Instant::now();
        }
        self.queue.push_back(out);
        Ok(())
    }

    /// Queues an account event (see [`Link::drop_events`]).
    pub fn push_event(&mut self, text: String) -> Result<(), Ending> {
        self.push(Outgoing::Event(text))
    }

    /// Queues any other text frame.
    pub fn push_text(&mut self, text: String) -> Result<(), Ending> {
        self.push(Outgoing::Text(text))
    }

    /// Forgets queued events that were not written yet (a resume replays them).
    pub fn drop_events(&mut self) {
        self.queue.retain(|o| !matches!(o, Outgoing::Event(_)));
    }

    /// A heartbeat tick: closes a client that has been silent for two intervals
    /// (it does not answer pings, so it is gone or not reading), else pings it.
    pub fn on_tick(&mut self) -> Result<(), Ending> {
        if self.last_heard.elapsed() > self.heartbeat * 2 {
            return Err(Ending::Close(
                CloseCode::Policy,
                "heartbeat timeout: no pong for two intervals".into(),
            ));
        }
        self.push(Outgoing::Ping)
    }

    /// Handles what the client sent: control frames here, protocol violations as
    /// an [`Ending`]; returns the client's message when the loop must act on it
    /// (`ping` is answered here).
    pub fn on_inbound(
        &mut self,
        msg: Option<Result<AggregatedMessage, ProtocolError>>,
    ) -> Result<Option<ClientMessage>, Ending> {
        let msg = match msg {
            None => return Err(Ending::Gone),
            Some(Ok(m)) => m,
            Some(Err(ProtocolError::Overflow)) => {
                return Err(Ending::Close(
                    CloseCode::Size,
                    format!(
                        "frame larger than {} bytes",
                        frame::MAX_CLIENT_MESSAGE_BYTES
                    ),
                ))
            }
            // Text that is not UTF-8.
            Some(Err(ProtocolError::Io(e))) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(Ending::Close(
                    CloseCode::Invalid,
                    "text is not UTF-8".into(),
                ))
            }
            // Continuations adding up to more than the limit (actix-ws reports them
            // as an `Other` I/O error; a broken connection looks the same, and then
            // the close frame is simply never read).
            Some(Err(ProtocolError::Io(_))) => {
                return Err(Ending::Close(
                    CloseCode::Size,
                    format!(
                        "message larger than {} bytes",
                        frame::MAX_CLIENT_MESSAGE_BYTES
                    ),
                ))
            }
            Some(Err(e)) => return Err(Ending::Close(CloseCode::Protocol, e.to_string())),
        };
        self.last_heard = Instant::now();
        match msg {
            AggregatedMessage::Ping(bytes) => self.push(Outgoing::Pong(bytes)).map(|_| None),
            AggregatedMessage::Pong(_) => Ok(None),
            AggregatedMessage::Close(reason) => Err(Ending::ClientClosed(reason)),
            AggregatedMessage::Binary(_) => Err(Ending::Close(
                CloseCode::Unsupported,
                "binary frames are not supported; send JSON text".into(),
            )),
            AggregatedMessage::Text(text) => match frame::parse_client(&text) {
                Ok(ClientMessage::Ping) => self.push_text(frame::pong()).map(|_| None),
                Ok(other) => Ok(Some(other)),
                Err(BadMessage::NotJson) => Err(Ending::Close(
                    CloseCode::Unsupported,
                    "messages must be JSON text".into(),
                )),
                Err(BadMessage::Unsupported(detail)) => self
                    .push_text(frame::error(ErrorCode::UnsupportedMessage, &detail))
                    .map(|_| None),
            },
        }
    }

    /// Ends the connection: counts a slow consumer, and sends a close frame
    /// (bounded in time: a client that does not read may never make room for it).
    pub async fn finish(self, ending: Ending) {
        let reason = match ending {
            Ending::Gone => None,
            Ending::ClientClosed(reason) => reason,
            Ending::Close(code, description) => Some(CloseReason {
                code,
                description: Some(description),
            }),
            Ending::SlowConsumer(why) => {
                metrics::counter!(METRIC_SLOW_CONSUMERS, "stream" => self.stream).increment(1);
                tracing::info!(
                    stream = self.stream,
                    why,
                    "disconnecting a slow websocket consumer"
                );
                Some(CloseReason {
                    code: CloseCode::Again,
                    description: Some(format!("slow consumer ({why}); reconnect with after_seq")),
                })
            }
        };
        // Dropping the session (on timeout, or after the close) ends the response
        // body, which closes the connection.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.session.close(reason)).await;
    }
}
