//! Websocket delivery latency: how long after a sender is told "done" (its 201)
//! the recipient's open `/v1/stream` shows the money (`transaction.updated` with
//! the same transfer `id`, direction `in`).
//!
//! The first `--ws-subscribers` accounts each keep a socket open for the whole
//! run. A transfer to one of them is tracked by id in a bounded map. The two events
//! race: the server notifies the recipient once the credit is durable, which can
//! be before the sender's response has crossed the wire, so whichever arrives
//! first leaves a mark and the second one completes the pair. A frame that beats
//! its 201 counts as 0 ms (and is counted as `early`): from the user's point of
//! view the recipient already had it. Marks older than [`STALE_AFTER`] are dropped
//! (a transfer whose 201 was lost to a timeout has a frame but never an ack); acks
//! still unmatched at the end are `missing` deliveries.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::json_text::Text;
use crate::stats::{latency_histogram, record};
use crate::target::LoopbackUrl;

/// Most transfer ids tracked at once; beyond it new ones are not tracked (and
/// counted as `untracked`), so a server that never delivers cannot grow the map.
const PENDING_MAX: usize = 200_000;

/// A mark older than this is dropped by [`DeliveryTracker::prune`].
pub const STALE_AFTER: Duration = Duration::from_secs(30);

/// How often a subscriber whose socket closed may reconnect in one run.
const RECONNECTS_MAX: u32 = 5;

/// Socket handshake bound.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

enum Mark {
    /// The sender's 201 arrived at this instant; the frame hasn't yet.
    Acked(Instant),
    /// The frame arrived first, at this instant.
    Seen(Instant),
}

struct Inner {
    pending: HashMap<String, Mark>,
    latency: Histogram<u64>,
    delivered: u64,
    early: u64,
    untracked: u64,
    stale_acks: u64,
}

/// The ws delivery figures for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct WsStats {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    /// Pairs (201, frame) matched.
    pub delivered: u64,
    /// Frames that arrived before their 201 (counted as 0 ms).
    pub early: u64,
    /// Acks to a subscriber whose frame never came.
    pub missing: u64,
    /// Acks not tracked because the pending map was full.
    pub untracked: u64,
    pub subscribers: usize,
    pub reconnects: u64,
    pub frames: u64,
}

/// Matches 201s with frames by transfer id.
pub struct DeliveryTracker {
    /// Accounts `0..subscribers` have a socket.
    subscribers: usize,
    inner: Mutex<Inner>,
    frames: AtomicU64,
    reconnects: AtomicU64,
}

impl std::fmt::Debug for DeliveryTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryTracker")
            .field("subscribers", &self.subscribers)
            .finish()
    }
}

impl DeliveryTracker {
    pub fn new(subscribers: usize) -> DeliveryTracker {
        DeliveryTracker {
            subscribers,
            inner: Mutex::new(Inner {
                pending: HashMap::new(),
                latency: latency_histogram(),
                delivered: 0,
                early: 0,
                untracked: 0,
                stale_acks: 0,
            }),
            frames: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Nothing in here panics while holding the lock; tolerate poisoning anyway.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether account `index` has a socket open.
    pub fn is_subscribed(&self, index: usize) -> bool {
        index < self.subscribers
    }

    /// The sender's 201 for transfer `id` arrived at `at`.
    pub fn acked(&self, id: &str, at: Instant) {
        let mut g = self.lock();
        match g.pending.remove(id) {
            Some(Mark::Seen(_)) => {
                record(&mut g.latency, Duration::ZERO);
                g.delivered += 1;
                g.early += 1;
            }
            Some(Mark::Acked(earlier)) => {
                // Ids are unique per transfer; keep the first ack.
                g.pending.insert(id.to_owned(), Mark::Acked(earlier));
            }
            None if g.pending.len() >= PENDING_MAX => g.untracked += 1,
            None => {
                g.pending.insert(id.to_owned(), Mark::Acked(at));
            }
        }
    }

    /// The recipient's frame for transfer `id` arrived at `at`.
    pub fn frame(&self, id: &str, at: Instant) {
        let mut g = self.lock();
        match g.pending.remove(id) {
            Some(Mark::Acked(acked)) => {
                record(&mut g.latency, at.saturating_duration_since(acked));
                g.delivered += 1;
            }
            Some(Mark::Seen(first)) => {
                // A replay after a reconnect: the first arrival counts.
                g.pending.insert(id.to_owned(), Mark::Seen(first));
            }
            None if g.pending.len() < PENDING_MAX => {
                g.pending.insert(id.to_owned(), Mark::Seen(at));
            }
            None => {}
        }
    }

    /// Drops marks older than `STALE_AFTER` (acks among them are missing).
    pub fn prune(&self, now: Instant) {
        let mut g = self.lock();
        let mut stale_acks = 0;
        g.pending.retain(|_, mark| {
            let (at, is_ack) = match mark {
                Mark::Acked(t) => (*t, true),
                Mark::Seen(t) => (*t, false),
            };
            let keep = now.saturating_duration_since(at) < STALE_AFTER;
            if !keep && is_ack {
                stale_acks += 1;
            }
            keep
        });
        g.stale_acks += stale_acks;
    }

    /// Acks still waiting for their frame.
    pub fn waiting(&self) -> usize {
        self.lock()
            .pending
            .values()
            .filter(|m| matches!(m, Mark::Acked(_)))
            .count()
    }

    pub fn stats(&self) -> WsStats {
        let g = self.lock();
        let ms = |us: u64| us as f64 / 1000.0;
        let q = |p: f64| {
            if g.latency.is_empty() {
                0.0
            } else {
                ms(g.latency.value_at_quantile(p))
            }
        };
        WsStats {
            p50: q(0.50),
            p99: q(0.99),
            max: if g.latency.is_empty() {
                0.0
            } else {
                ms(g.latency.max())
            },
            delivered: g.delivered,
            early: g.early,
            missing: g.stale_acks
                + g.pending
                    .values()
                    .filter(|m| matches!(m, Mark::Acked(_)))
                    .count() as u64,
            untracked: g.untracked,
            subscribers: self.subscribers,
            reconnects: self.reconnects.load(Ordering::Relaxed),
            frames: self.frames.load(Ordering::Relaxed),
        }
    }
}

/// What the harness reads from a frame: its `seq` (to resume after) and, for a
/// recipient's `transaction.updated` of a transfer, the transfer's id. Parsed
/// once, into borrowed fields, skipping everything else: with hundreds of
/// subscribers the harness reads a frame for most transfers, on the same cores
/// as the server it measures.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FrameInfo {
    pub seq: Option<u64>,
    pub incoming_transfer: Option<String>,
}

/// [`FrameInfo`] with the id borrowed from the frame when it can be.
#[derive(Debug, Default, PartialEq, Eq)]
struct FrameRef<'a> {
    seq: Option<u64>,
    incoming_transfer: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct FrameHead<'a> {
    #[serde(default)]
    seq: Option<u64>,
    #[serde(rename = "type", borrow, default)]
    kind: Option<Text<'a>>,
    #[serde(borrow, default)]
    data: Option<FrameData<'a>>,
}

/// The fields of a `transaction.updated` frame's `data` the harness needs; any
/// other frame's `data` is read the same way and its missing fields are `None`.
#[derive(Deserialize)]
struct FrameData<'a> {
    #[serde(borrow, default)]
    id: Option<Text<'a>>,
    #[serde(rename = "type", borrow, default)]
    kind: Option<Text<'a>>,
    #[serde(borrow, default)]
    direction: Option<Text<'a>>,
}

/// Reads a frame's seq and incoming transfer id (see [`FrameInfo`]).
pub fn frame_info(frame: &str) -> FrameInfo {
    let r = frame_ref(frame);
    FrameInfo {
        seq: r.seq,
        incoming_transfer: r.incoming_transfer.map(Cow::into_owned),
    }
}

fn frame_ref(frame: &str) -> FrameRef<'_> {
    let Ok(head) = serde_json::from_str::<FrameHead<'_>>(frame) else {
        // Not JSON, or a frame of another shape (some `data` with an `id` that is
        // not a string): at most its seq matters, read the slow way.
        let seq = serde_json::from_str::<Value>(frame)
            .ok()
            .and_then(|v| v.get("seq")?.as_u64());
        return FrameRef {
            seq,
            incoming_transfer: None,
        };
    };
    let is = |t: &Option<Text<'_>>, want: &str| t.as_ref().map(Text::as_str) == Some(want);
    let incoming_transfer = head
        .data
        .filter(|_| is(&head.kind, "transaction.updated"))
        // Each side of a transfer gets its own frame; only the recipient's counts.
        .filter(|d| is(&d.direction, "in"))
        .filter(|d| d.kind.is_none() || is(&d.kind, "transfer"))
        .and_then(|d| d.id)
        .map(|t| t.0);
    FrameRef {
        seq: head.seq,
        incoming_transfer,
    }
}

/// The id of an incoming transfer's `transaction.updated` frame, if it is one.
pub fn incoming_transfer_id(frame: &str) -> Option<String> {
    frame_info(frame).incoming_transfer
}

/// The open sockets; dropping `stop` (or sending on it) ends them.
#[derive(Debug)]
pub struct Subscribers {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Subscribers {
    /// Closes every socket and waits (bounded) for the readers to end.
    pub async fn close(mut self) {
        let _ = self.stop.send(true);
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(5), all)
            .await
            .is_err()
        {
            self.tasks.abort_all();
        }
    }
}

fn stream_url(base: &LoopbackUrl, token: &str, after_seq: Option<u64>) -> anyhow::Result<String> {
    let mut url = reqwest::Url::parse(&base.websocket("/v1/stream"))?;
    url.query_pairs_mut().append_pair("token", token);
    if let Some(seq) = after_seq {
        url.query_pairs_mut()
            .append_pair("after_seq", &seq.to_string());
    }
    Ok(url.into())
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str) -> anyhow::Result<Socket> {
    let (socket, _) = tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(url))
        .await
        .context("websocket handshake timed out")?
        .context("websocket handshake")?;
    Ok(socket)
}

/// Opens one socket per token (at most `parallel` handshakes at a time) and
/// starts a reader for each. Fails if any socket cannot be opened: a run whose
/// subscribers are not all listening would report misleading delivery figures.
pub async fn subscribe(
    base: &LoopbackUrl,
    tokens: &[String],
    tracker: Arc<DeliveryTracker>,
    parallel: usize,
) -> anyhow::Result<Subscribers> {
    let opened: Vec<anyhow::Result<(String, Socket)>> =
        futures::stream::iter(tokens.iter().cloned())
            .map(|token| async move {
                let socket = connect(&stream_url(base, &token, None)?).await?;
                Ok((token, socket))
            })
            .buffer_unordered(parallel.max(1))
            .collect()
            .await;
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for result in opened {
        let (token, socket) = result.context("opening a /v1/stream subscriber")?;
        tasks.spawn(read(
            base.clone(),
            token,
            socket,
            tracker.clone(),
            stopped.clone(),
        ));
    }
    Ok(Subscribers { stop, tasks })
}

/// One subscriber: reads frames until told to stop; reconnects (resuming after
/// the last seq seen) a bounded number of times if the server closes the socket.
async fn read(
    base: LoopbackUrl,
    token: String,
    mut socket: Socket,
    tracker: Arc<DeliveryTracker>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_seq: Option<u64> = None;
    for attempt in 0..=RECONNECTS_MAX {
        if attempt > 0 {
            tracker.reconnects.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(200)).await;
            let Ok(url) = stream_url(&base, &token, last_seq) else {
                return;
            };
            match connect(&url).await {
                Ok(s) => socket = s,
                Err(_) => continue,
            }
        }
        {
            // One wait for the stop signal per connection, not one per frame.
            let stopped = stop.changed();
            tokio::pin!(stopped);
            loop {
                tokio::select! {
                    _ = &mut stopped => {
                        let _ = socket.close(None).await;
                        return;
                    }
                    msg = socket.next() => match msg {
                        Some(Ok(Message::Text(text))) => {
                            let at = Instant::now();
                            tracker.frames.fetch_add(1, Ordering::Relaxed);
                            let info = frame_ref(&text);
                            if let Some(seq) = info.seq {
                                last_seq = Some(last_seq.map_or(seq, |l| l.max(seq)));
                            }
                            if let Some(id) = info.incoming_transfer {
                                tracker.frame(&id, at);
                            }
                        }
                        // Pings are answered by tungstenite itself while we read.
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => break,
                    }
                }
            }
        }
        if *stop.borrow() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_acks_pair_up_in_either_order() {
        let t = DeliveryTracker::new(2);
        let t0 = Instant::now();
        t.acked("tx_1", t0);
        t.frame("tx_1", t0 + Duration::from_millis(40));
        t.frame("tx_2", t0);
        t.acked("tx_2", t0 + Duration::from_millis(5));
        t.acked("tx_3", t0);
        let s = t.stats();
        assert_eq!((s.delivered, s.early, s.missing), (2, 1, 1));
        assert!((s.max - 40.0).abs() < 0.1, "{s:?}");
        assert!(t.is_subscribed(1) && !t.is_subscribed(2));
        // Stale marks go; the stale ack stays counted as missing.
        t.prune(t0 + STALE_AFTER + Duration::from_secs(1));
        assert_eq!(t.waiting(), 0);
        assert_eq!(t.stats().missing, 1);
    }

    #[test]
    fn only_incoming_transfer_updates_count() {
        let frame = |ty: &str, dir: &str| {
            format!(
                r#"{{"seq":3,"type":"{ty}","at":"2024-01-01T00:00:00Z","data":{{"id":"tx_9","type":"transfer","direction":"{dir}"}}}}"#
            )
        };
        assert_eq!(
            incoming_transfer_id(&frame("transaction.updated", "in")).as_deref(),
            Some("tx_9")
        );
        assert_eq!(
            incoming_transfer_id(&frame("transaction.updated", "out")),
            None
        );
        assert_eq!(incoming_transfer_id(&frame("balance.updated", "in")), None);
        assert_eq!(incoming_transfer_id("not json"), None);
        // Escaped text is read too (borrowed where it can be, owned where not).
        assert_eq!(
            incoming_transfer_id(
                r#"{"seq":4,"type":"transaction.updated","data":{"id":"tx_\u0031","direction":"in"}}"#
            )
            .as_deref(),
            Some("tx_1")
        );
    }

    #[test]
    fn every_frame_gives_its_seq() {
        let info = frame_info(
            r#"{"at":"2024-01-01T00:00:00Z","data":{"id":"tx_9","type":"transfer","direction":"in","amount":"1.00"},"seq":12,"type":"transaction.updated"}"#,
        );
        assert_eq!(info.seq, Some(12));
        assert_eq!(info.incoming_transfer.as_deref(), Some("tx_9"));
        // A frame whose data has an `id` of another type still gives its seq.
        let odd = frame_info(r#"{"seq":13,"type":"x.y","data":{"id":7}}"#);
        assert_eq!(
            odd,
            FrameInfo {
                seq: Some(13),
                incoming_transfer: None
            }
        );
        assert_eq!(
            frame_info(r#"{"type":"system.status","data":{"maintenance":false}}"#),
            FrameInfo::default()
        );
    }
}
