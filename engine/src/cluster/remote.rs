//! Requests between nodes (cluster mode): any node accepts any request, and a
//! request for an account whose shard another node owns goes through Redis.
//!
//! # Keys
//!
//! | key                          | type   | content                                   |
//! |------------------------------|--------|-------------------------------------------|
//! | `okpay:{s007}:inbox`         | stream | requests for shard 7's owner (bounded)    |
//! | `okpay:{s007}:pos`           | hash   | field `inbox`: the last entry answered    |
//! | `okpay:{s007}:started`       | hash   | once-only entries started, not answered   |
//! | `okpay:{node:<id>}:replies`  | list   | replies for node `<id>` (expire if unread)|
//! | `okpay:{node:<id>}:wake`     | list   | shard numbers with new inbox entries      |
//!
//! The inbox shares the shard's hash tag, so a request waits in the shard's
//! slot whoever owns it: when the owner dies, the next owner answers what it
//! left (the inbox position is advanced, fenced by the owner's epoch, only
//! after the replies' effects are durable; the client's idempotency key makes
//! the replay of a command it already ran harmless). A node's two lists share
//! its own tag, so one `BLPOP` waits for both.
//!
//! # Commands without an idempotency key
//!
//! An operator's freeze, a KYC review, a login's new session... carry no key,
//! so running one again would not return its first outcome: it would act
//! twice (or answer a rejection for what was done). Such entries are run at
//! most once: before running them, the owner records their ids in the shard's
//! `started` hash (a script fenced by its epoch, durable before any of them
//! runs); the acknowledgement removes them. A next owner that finds an entry
//! still unanswered and marked started does not run it again: it answers
//! `Unavailable` with "outcome unknown", as a single node does when a
//! command's write timed out (the operator looks before sending it again).
//! Entries the old owner refused unrun (a hand-over) are unmarked before it
//! stops. Keyed commands (transfers, deposits, withdrawals) and saga steps
//! (deduplicated by transfer id) are replayed as before; reads are rerun.
//!
//! # Flow
//!
//! Asker: [`Remote::call`] puts an [`Envelope`] in the shard's inbox (a script
//! that refuses past [`INBOX_MAX`] entries and returns the lease holder),
//! pushes the shard number on the holder's wake list, and waits (bounded by
//! [`REMOTE_TIMEOUT`]) for the reply its reader task matches by id. Owner: a
//! consumer task per hosted shard reads the inbox after its position, runs the
//! requests on the local executors, pushes the replies, then acknowledges.
//! Reads cross nodes as the account's state (encoded as in a checkpoint): the
//! asker runs its read closure on it, so every `Engine::read` works remotely.
//! Saga messages for shards owned elsewhere go the same way, one inbox entry
//! per destination shard for everything one flush collected; a credit whose
//! answer never came is asked again (the destination deduplicates).

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use ::redis::Value;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use rustc_hash::{FxHashMap, FxHashSet};
use tokio::sync::{mpsc, oneshot, Notify};

use super::{Leases, NodeId};
use crate::codec::remote::{Answer, Envelope, Reply, Request};
use crate::codec::{ShardId, ShardLayout};
use crate::domain::Command;
use crate::runtime::executor::{Msg, Peers, ReadFn};
use crate::runtime::saga::{CreditAnswer, CreditOutcome, CreditRequest};
use crate::runtime::EngineError;
use crate::store::redis::{from_value, Call, LuaScript, RedisStore, Retry};
use crate::store::StoreError;

static PUSH: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(include_str!("lua/inbox_push.lua")));
static ACK: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(include_str!("lua/inbox_ack.lua")));
static MARK: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(include_str!("lua/inbox_mark.lua")));

/// The error a node's executors answer for a shard they do not serve; the
/// facade then asks the owner instead.
pub(crate) const NOT_SERVED: &str = "the account's shard is not served by this node";
/// Entries one shard's inbox may hold before askers get `Overloaded`.
pub const INBOX_MAX: usize = 10_000;
/// Requests one node may have waiting for other nodes before `Overloaded`.
pub const PENDING_MAX: usize = 10_000;
/// How long an asker waits for a reply: longer than a takeover (lease time
/// plus a tick), so a request whose owner died is answered by the next owner.
pub const REMOTE_TIMEOUT: Duration = Duration::from_secs(8);
/// Entries a consumer takes from an inbox at once.
const TAKE: usize = 256;
/// Entries one shard's consumer runs at once.
const INFLIGHT_MAX: usize = 4096;
/// A credit sent to another node is asked again after this long without an
/// answer (lost with a dying node, or refused at a full inbox).
const CREDIT_AGAIN: Duration = Duration::from_secs(3);
/// Unread replies (their asker died) expire.
const REPLIES_TTL_S: u64 = 60;

fn inbox_key(shard: ShardId) -> String {
    format!("okpay:{{{}}}:inbox", shard.tag())
}

fn lease_key(shard: ShardId) -> String {
    format!("okpay:{{{}}}:lease", shard.tag())
}

fn pos_key(shard: ShardId) -> String {
    format!("okpay:{{{}}}:pos", shard.tag())
}

fn started_key(shard: ShardId) -> String {
    format!("okpay:{{{}}}:started", shard.tag())
}

fn replies_key(node: &str) -> String {
    format!("okpay:{{node:{node}}}:replies")
}

fn wake_key(node: &str) -> String {
    format!("okpay:{{node:{node}}}:wake")
}

fn unavailable(e: impl std::fmt::Display) -> EngineError {
    EngineError::Unavailable(e.to_string())
}

/// Counters of cross-node traffic (for `/metrics` and the figures).
#[derive(Debug, Default)]
pub struct RemoteStats {
    /// Requests this node sent to other nodes' shards.
    pub sent: AtomicU64,
    /// Requests this node answered for other nodes.
    pub served: AtomicU64,
    /// Saga entries (credits and answers of one flush for one shard) sent.
    pub saga_entries: AtomicU64,
    /// Requests that got no reply in time.
    pub timeouts: AtomicU64,
}

/// One node's end of the cross-node traffic.
pub(crate) struct Remote {
    node: NodeId,
    redis: RedisStore,
    layout: ShardLayout,
    leases: Arc<Leases>,
    next_id: AtomicU64,
    pending: parking_lot::Mutex<FxHashMap<u64, oneshot::Sender<Result<Answer, EngineError>>>>,
    /// Per shard: served by this node's executors (set and cleared by them).
    hosted: Vec<AtomicBool>,
    /// Per shard: a consumer task is running.
    consuming: Vec<AtomicBool>,
    wakes: Vec<Notify>,
    saga: mpsc::UnboundedSender<Msg>,
    peers: OnceLock<Peers>,
    executors: usize,
    pub stats: RemoteStats,
}

impl Remote {
    /// Sets up the node's end; [`start`](Self::start) runs its tasks once the
    /// executors exist.
    pub(crate) fn new(
        redis: RedisStore,
        leases: Arc<Leases>,
        layout: ShardLayout,
        executors: usize,
    ) -> (Arc<Remote>, mpsc::UnboundedReceiver<Msg>) {
        let (saga, outbound) = mpsc::unbounded_channel();
        let shards = usize::from(layout.shards);
        let remote = Arc::new(Remote {
            node: leases.node().clone(),
            redis,
            layout,
            leases,
            // Ids only need to be unique among this node's pending requests; a
            // random start keeps a restarted node from matching a reply meant
            // for its previous run.
            next_id: AtomicU64::new(rand::random::<u64>() >> 1),
            pending: parking_lot::Mutex::new(FxHashMap::default()),
            hosted: (0..shards).map(|_| AtomicBool::new(false)).collect(),
            consuming: (0..shards).map(|_| AtomicBool::new(false)).collect(),
            wakes: (0..shards).map(|_| Notify::new()).collect(),
            saga,
            peers: OnceLock::new(),
            executors: executors.max(1),
            stats: RemoteStats::default(),
        });
        (remote, outbound)
    }

    /// Whether this node's executors serve `shard` and its lease is still
    /// trusted: a node that was paused past its lease must not answer from
    /// memory another owner may have moved past (until its lease driver drops
    /// the shard, requests go to the shard's inbox).
    pub(crate) fn hosts(&self, shard: ShardId) -> bool {
        self.hosted
            .get(usize::from(shard.0))
            .is_some_and(|h| h.load(Ordering::Acquire))
            && self.leases.epoch(shard).is_some()
    }

    pub(crate) fn set_hosted(&self, shard: ShardId, hosted: bool) {
        if let Some(h) = self.hosted.get(usize::from(shard.0)) {
            h.store(hosted, Ordering::Release);
        }
        if hosted {
            self.wake(shard);
        }
    }

    /// A saga message for a shard served elsewhere (from an executor).
    pub(crate) fn send_saga(&self, msg: Msg) {
        // An error only means the remote thread stopped: the engine is going
        // away, and recovery drives every transfer again.
        let _ = self.saga.send(msg);
    }

    fn wake(&self, shard: ShardId) {
        if let Some(n) = self.wakes.get(usize::from(shard.0)) {
            n.notify_one();
        }
    }

    fn executor_of(&self, shard: ShardId) -> usize {
        usize::from(shard.0) % self.executors
    }

    fn to_executor(&self, shard: ShardId, msg: Msg) {
        if let Some(peers) = self.peers.get() {
            let _ = peers[self.executor_of(shard)].send(msg);
        }
    }

    // ---- asking ---------------------------------------------------------------

    /// Sends `request` to the owner of `shard` and waits for its answer.
    pub(crate) async fn call(
        &self,
        shard: ShardId,
        request: Request,
    ) -> Result<Answer, EngineError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let kind = request_kind(&request);
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.pending.lock();
            if pending.len() >= PENDING_MAX {
                metrics::counter!("okpay_remote_refused_total", "why" => "pending").increment(1);
                return Err(EngineError::Overloaded);
            }
            pending.insert(id, tx);
        }
        let envelope = Envelope {
            id,
            reply_to: self.node.as_str().to_owned(),
            request,
        };
        let sent = match envelope.encode() {
            Ok(bytes) => self.push(shard, bytes).await,
            Err(e) => Err(unavailable(e)),
        };
        if let Err(e) = sent {
            self.pending.lock().remove(&id);
            return Err(e);
        }
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("okpay_remote_requests_total", "kind" => kind).increment(1);
        match tokio::time::timeout(REMOTE_TIMEOUT, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(unavailable("the remote reader stopped")),
            Err(_) => {
                self.pending.lock().remove(&id);
                self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                Err(unavailable(
                    "no answer from the shard's owner in time; retry with the same idempotency key",
                ))
            }
        }
    }

    /// Adds an encoded request to `shard`'s inbox and wakes its owner.
    async fn push(&self, shard: ShardId, bytes: Vec<u8>) -> Result<(), EngineError> {
        let mut cmd = PUSH.call(&[&inbox_key(shard), &lease_key(shard)]);
        cmd.arg(INBOX_MAX).arg(bytes);
        // Not resent: a resent XADD that had landed would be a second request
        // (harmless with idempotency keys, but not ours to decide).
        let reply = self
            .redis
            .exec(vec![Call::Script(&PUSH, cmd)], Retry::Never)
            .await
            .map_err(unavailable)?
            .pop()
            .ok_or_else(|| unavailable("redis sent no reply"))?;
        let (added, holder): (i64, String) = from_value(reply).map_err(unavailable)?;
        let owner = holder.split_once(' ').map(|(node, _)| node.to_owned());
        if let Some(owner) = &owner {
            if owner == self.node.as_str() {
                self.wake(shard);
            } else {
                let key = wake_key(owner);
                let mut push = ::redis::cmd("LPUSH");
                push.arg(&key).arg(shard.0);
                let mut trim = ::redis::cmd("LTRIM");
                trim.arg(&key).arg(0).arg(1023);
                // A lost wake costs latency only: the owner polls too.
                let _ = self
                    .redis
                    .exec(vec![Call::Plain(push), Call::Plain(trim)], Retry::Safe)
                    .await;
            }
        }
        if added == 1 {
            Ok(())
        } else {
            metrics::counter!("okpay_remote_refused_total", "why" => "inbox").increment(1);
            Err(EngineError::Overloaded)
        }
    }

    // ---- the node's tasks -----------------------------------------------------

    /// Runs the node's tasks on a thread of their own: the reader of replies
    /// and wakes, the saga sender, and the inbox consumers of hosted shards.
    pub(crate) fn start(
        self: &Arc<Self>,
        peers: Peers,
        outbound: mpsc::UnboundedReceiver<Msg>,
        stop: oneshot::Receiver<()>,
    ) -> std::io::Result<()> {
        let _ = self.peers.set(peers);
        let me = self.clone();
        std::thread::Builder::new()
            .name("okpay-remote".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, "the remote thread could not start");
                        return;
                    }
                };
                runtime.block_on(async move {
                    let reader = tokio::spawn(me.clone().read_loop());
                    let sender = tokio::spawn(me.clone().saga_loop(outbound));
                    let consumers = tokio::spawn(me.clone().consumers());
                    let _ = stop.await;
                    reader.abort();
                    sender.abort();
                    consumers.abort();
                });
            })?;
        Ok(())
    }

    /// Waits for this node's replies and wakes (one `BLPOP` on both lists, on
    /// a connection of its own), then drains both lists.
    async fn read_loop(self: Arc<Self>) {
        let replies = replies_key(self.node.as_str());
        let wakes = wake_key(self.node.as_str());
        let blocking = loop {
            match self.redis.detached().await {
                Ok(r) => break r,
                Err(e) => {
                    tracing::warn!(error = %e, "remote reader: no connection yet");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        };
        loop {
            let mut blpop = ::redis::cmd("BLPOP");
            blpop.arg(&replies).arg(&wakes).arg(1);
            let popped = blocking.exec(vec![Call::Plain(blpop)], Retry::Safe).await;
            let first: Option<(String, Vec<u8>)> = match popped
                .and_then(|mut v| {
                    v.pop()
                        .ok_or_else(|| StoreError::Unavailable("no reply".into()))
                })
                .and_then(from_value)
            {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(error = %e, "remote reader: BLPOP failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Some((key, value)) = first else { continue };
            self.take(key == replies, &value);
            // Drain what else is there in one round trip.
            let mut more_replies = ::redis::cmd("LPOP");
            more_replies.arg(&replies).arg(TAKE);
            let mut more_wakes = ::redis::cmd("LPOP");
            more_wakes.arg(&wakes).arg(TAKE);
            if let Ok(values) = self
                .redis
                .exec(
                    vec![Call::Plain(more_replies), Call::Plain(more_wakes)],
                    Retry::Never,
                )
                .await
            {
                for (i, v) in values.into_iter().enumerate() {
                    let items: Option<Vec<Vec<u8>>> = from_value(v).unwrap_or(None);
                    for item in items.unwrap_or_default() {
                        self.take(i == 0, &item);
                    }
                }
            }
        }
    }

    fn take(&self, is_reply: bool, value: &[u8]) {
        if !is_reply {
            if let Some(shard) = std::str::from_utf8(value)
                .ok()
                .and_then(|s| s.parse::<u16>().ok())
            {
                self.wake(ShardId(shard));
            }
            return;
        }
        match Reply::decode(value) {
            Ok(reply) => {
                if let Some(waiter) = self.pending.lock().remove(&reply.id) {
                    let _ = waiter.send(reply.result);
                }
            }
            Err(e) => tracing::warn!(error = %e, "an undecodable reply was dropped"),
        }
    }

    /// Sends the saga messages executors handed over, one inbox entry per
    /// destination shard per flush.
    async fn saga_loop(self: Arc<Self>, mut outbound: mpsc::UnboundedReceiver<Msg>) {
        let mut taken = Vec::with_capacity(1024);
        loop {
            if outbound.recv_many(&mut taken, 1024).await == 0 {
                return;
            }
            let mut by_shard: BTreeMap<ShardId, (Vec<CreditRequest>, Vec<CreditAnswer>)> =
                BTreeMap::new();
            for msg in taken.drain(..) {
                match msg {
                    Msg::Credit(req) => by_shard
                        .entry(self.layout.shard_of(req.to))
                        .or_default()
                        .0
                        .push(req),
                    Msg::Answer(ans) => by_shard
                        .entry(self.layout.shard_of(ans.transfer.account))
                        .or_default()
                        .1
                        .push(ans),
                    // Only saga messages come this way.
                    _ => {}
                }
            }
            let sends = by_shard.into_iter().map(|(shard, (credits, answers))| {
                let me = self.clone();
                async move {
                    let envelope = Envelope {
                        id: 0,
                        reply_to: String::new(),
                        request: Request::Saga {
                            credits: credits.clone(),
                            answers,
                        },
                    };
                    let sent = match envelope.encode() {
                        Ok(bytes) => me.push(shard, bytes).await,
                        Err(e) => Err(unavailable(e)),
                    };
                    me.stats.saga_entries.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("okpay_remote_requests_total", "kind" => "saga").increment(1);
                    // Sent or not, a credit without an answer is asked again: at
                    // once when refused, later when its answer may have been lost.
                    let delay = if sent.is_ok() {
                        CREDIT_AGAIN
                    } else {
                        Duration::from_millis(100)
                    };
                    if !credits.is_empty() {
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            for credit in credits {
                                let source = me.layout.shard_of(credit.transfer.account);
                                me.to_executor(
                                    source,
                                    Msg::Answer(credit.answer(CreditOutcome::Retry)),
                                );
                            }
                        });
                    }
                }
            });
            futures::future::join_all(sends).await;
        }
    }

    /// Starts a consumer for every hosted shard without one.
    async fn consumers(self: Arc<Self>) {
        loop {
            for s in 0..self.layout.shards {
                let shard = ShardId(s);
                let i = usize::from(s);
                if self.hosts(shard) && !self.consuming[i].swap(true, Ordering::AcqRel) {
                    let me = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) = me.consume(shard).await {
                            tracing::warn!(%shard, error = %e, "inbox consumer stopped");
                        }
                        me.consuming[i].store(false, Ordering::Release);
                    });
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Answers `shard`'s inbox while this node serves the shard. Entries run
    /// concurrently (a transfer waits for its credit's answer, which arrives
    /// in this same inbox, so nothing may wait behind it); each reply goes out
    /// as soon as it is ready, and the inbox position advances over the
    /// answered prefix only.
    async fn consume(&self, shard: ShardId) -> Result<(), StoreError> {
        type Served<'a> = Pin<Box<dyn Future<Output = (String, Option<Served1>)> + Send + 'a>>;
        let mut get = ::redis::cmd("HGET");
        get.arg(pos_key(shard)).arg("inbox");
        let pos: Option<String> = from_value(self.one(Call::Plain(get), Retry::Safe).await?)?;
        let mut read_pos = pos.unwrap_or_else(|| "0-0".to_owned());
        // Once-only entries started before this consumer (by a previous owner,
        // or by this node before its consumer restarted): never run again.
        let mut keys = ::redis::cmd("HKEYS");
        keys.arg(started_key(shard));
        let started: FxHashSet<String> =
            from_value::<Vec<String>>(self.one(Call::Plain(keys), Retry::Safe).await?)?
                .into_iter()
                .collect();
        // Once-only entries this consumer marked, not yet answered.
        let mut marked: FxHashSet<String> = FxHashSet::default();
        // Entries read, oldest first, and whether each is answered.
        let mut order: VecDeque<(String, bool)> = VecDeque::new();
        let mut running: FuturesUnordered<Served<'_>> = FuturesUnordered::new();
        let mut want_read = true;
        let wake = &self.wakes[usize::from(shard.0)];
        loop {
            let epoch = match self.leases.epoch(shard) {
                Some(epoch) if self.hosts(shard) => epoch,
                _ => {
                    // Handed over or lost: once-only entries the executors
                    // refused unrun are unmarked, so the next owner runs them.
                    self.unmark_unrun(shard, &mut running, &mut marked).await;
                    return Ok(());
                }
            };
            if want_read && order.len() < INFLIGHT_MAX {
                let mut range = ::redis::cmd("XRANGE");
                range
                    .arg(inbox_key(shard))
                    .arg(format!("({read_pos}"))
                    .arg("+")
                    .arg("COUNT")
                    .arg(TAKE);
                let entries = decode_entries(self.one(Call::Plain(range), Retry::Safe).await?)?;
                want_read = entries.len() == TAKE;
                let mut launch = Vec::with_capacity(entries.len());
                let mut to_mark = Vec::new();
                for (id, bytes) in entries {
                    read_pos.clone_from(&id);
                    order.push_back((id.clone(), false));
                    let envelope = match Envelope::decode(&bytes) {
                        Ok(e) => e,
                        Err(e) => {
                            tracing::warn!(error = %e, "an undecodable inbox entry was dropped");
                            running.push(Box::pin(std::future::ready((id, None))));
                            continue;
                        }
                    };
                    if once_only(&envelope.request) {
                        if started.contains(&id) {
                            metrics::counter!("okpay_remote_unknown_total").increment(1);
                            let to = (envelope.reply_to, envelope.id);
                            let unknown: Result<Answer, EngineError> =
                                Err(unavailable(OUTCOME_UNKNOWN));
                            running.push(Box::pin(std::future::ready((id, Some((to, unknown))))));
                            continue;
                        }
                        to_mark.push(id.clone());
                    }
                    launch.push((id, envelope));
                }
                if !to_mark.is_empty() {
                    let mut mark = MARK.call(&[&pos_key(shard), &started_key(shard)]);
                    mark.arg(epoch);
                    for id in &to_mark {
                        mark.arg(id);
                    }
                    // Not resent blindly: a lost reply leaves the marks, which
                    // only makes these entries "unknown" to a next owner.
                    let recorded: i64 =
                        from_value(self.one(Call::Script(&MARK, mark), Retry::Never).await?)?;
                    if recorded != 1 {
                        return Ok(()); // another node owns the shard now
                    }
                    marked.extend(to_mark);
                }
                for (id, envelope) in launch {
                    running.push(Box::pin(async move { (id, self.serve(envelope).await) }));
                }
            }
            let mut done = Vec::new();
            tokio::select! {
                biased;
                Some(first) = running.next(), if !running.is_empty() => {
                    done.push(first);
                    while let Some(Some(more)) = running.next().now_or_never() {
                        done.push(more);
                    }
                }
                _ = wake.notified() => want_read = true,
                _ = tokio::time::sleep(Duration::from_millis(250)) => want_read = true,
            }
            if done.is_empty() {
                continue;
            }
            let mut calls = Vec::new();
            let mut not_served = false;
            let mut unrun = Vec::new();
            for (id, served) in done {
                match served {
                    Some((_, Err(EngineError::Unavailable(e)))) if e == NOT_SERVED => {
                        not_served = true;
                        if marked.remove(&id) {
                            unrun.push(id);
                        }
                        continue; // left for the next owner
                    }
                    Some(((to, rid), result)) if !to.is_empty() => {
                        let key = replies_key(&to);
                        let mut push = ::redis::cmd("RPUSH");
                        push.arg(&key).arg(Reply { id: rid, result }.encode());
                        let mut expire = ::redis::cmd("EXPIRE");
                        expire.arg(&key).arg(REPLIES_TTL_S);
                        calls.push(Call::Plain(push));
                        calls.push(Call::Plain(expire));
                    }
                    Some(_) | None => {}
                }
                if let Some(entry) = order.iter_mut().find(|(e, _)| *e == id) {
                    entry.1 = true;
                }
            }
            if !calls.is_empty() {
                self.redis.exec(calls, Retry::Never).await?;
            }
            if not_served {
                // Dropped meanwhile: the next owner answers what is not acked,
                // and runs the once-only entries refused here unrun (unmarked
                // best-effort: a mark left makes one "unknown", never a rerun).
                if !unrun.is_empty() {
                    let mut unmark = ::redis::cmd("HDEL");
                    unmark.arg(started_key(shard)).arg(&unrun);
                    let _ = self.one(Call::Plain(unmark), Retry::Safe).await;
                }
                self.unmark_unrun(shard, &mut running, &mut marked).await;
                return Ok(());
            }
            let mut answered = Vec::new();
            while order.front().is_some_and(|(_, done)| *done) {
                if let Some((id, _)) = order.pop_front() {
                    answered.push(id);
                }
            }
            if let Some(last) = answered.last() {
                let mut ack = ACK.call(&[&inbox_key(shard), &pos_key(shard), &started_key(shard)]);
                ack.arg(epoch).arg(last);
                for id in &answered {
                    ack.arg(id);
                }
                let acked: i64 = from_value(self.one(Call::Script(&ACK, ack), Retry::Safe).await?)?;
                if acked != 1 {
                    return Ok(()); // another node owns the shard now
                }
                for id in &answered {
                    marked.remove(id);
                }
                self.stats
                    .served
                    .fetch_add(answered.len() as u64, Ordering::Relaxed);
                metrics::counter!("okpay_remote_served_total").increment(answered.len() as u64);
            }
        }
    }

    /// Waits (at most a second) for the entries still running when the shard
    /// left this node, and unmarks the once-only ones the executors refused
    /// unrun (best-effort: a mark left makes one "unknown", never a rerun).
    async fn unmark_unrun<F>(
        &self,
        shard: ShardId,
        running: &mut FuturesUnordered<F>,
        marked: &mut FxHashSet<String>,
    ) where
        F: Future<Output = (String, Option<Served1>)>,
    {
        if marked.is_empty() {
            return;
        }
        let mut unrun = Vec::new();
        let deadline = tokio::time::sleep(Duration::from_secs(1));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                next = running.next() => match next {
                    Some((id, Some((_, Err(EngineError::Unavailable(e))))))
                        if e == NOT_SERVED && marked.remove(&id) =>
                    {
                        unrun.push(id);
                    }
                    Some(_) => {}
                    None => break,
                },
                () = &mut deadline => break,
            }
        }
        if !unrun.is_empty() {
            let mut unmark = ::redis::cmd("HDEL");
            unmark.arg(started_key(shard)).arg(&unrun);
            let _ = self.one(Call::Plain(unmark), Retry::Safe).await;
        }
    }

    /// Runs one inbox entry on the local executors; `None` when there is
    /// nothing to answer (saga messages).
    async fn serve(&self, envelope: Envelope) -> Option<Served1> {
        let to = (envelope.reply_to, envelope.id);
        let result = match envelope.request {
            Request::Execute { account, cmd } => {
                let (tx, rx) = oneshot::channel();
                let shard = self.layout.shard_of(account);
                self.to_executor(
                    shard,
                    Msg::Execute {
                        account,
                        cmd,
                        reply: tx,
                    },
                );
                answer(rx).await.map(Answer::Outcome)
            }
            Request::State { account } => {
                let (tx, rx) = oneshot::channel();
                let f: ReadFn = Arc::new(|state, _, _| {
                    Box::new(crate::codec::state::encode_state(state))
                        as Box<dyn std::any::Any + Send>
                });
                self.to_executor(
                    self.layout.shard_of(account),
                    Msg::Read {
                        account,
                        f,
                        reply: tx,
                    },
                );
                answer(rx).await.and_then(|out| {
                    out.downcast::<Vec<u8>>()
                        .map(|bytes| Answer::State(*bytes))
                        .map_err(|_| unavailable("a read answered the wrong type"))
                })
            }
            Request::Rows { account } => {
                let (tx, rx) = oneshot::channel();
                self.to_executor(
                    self.layout.shard_of(account),
                    Msg::Rows { account, reply: tx },
                );
                answer(rx).await.map(|()| Answer::Done)
            }
            Request::Audit { shard } => {
                let (tx, rx) = oneshot::channel();
                self.to_executor(shard, Msg::Audit { shard, reply: tx });
                answer(rx)
                    .await
                    .map(|(shares, ids)| Answer::Audit(shares, ids))
            }
            Request::Saga { credits, answers } => {
                for credit in credits {
                    self.to_executor(self.layout.shard_of(credit.to), Msg::Credit(credit));
                }
                for ans in answers {
                    self.to_executor(self.layout.shard_of(ans.transfer.account), Msg::Answer(ans));
                }
                return None;
            }
        };
        Some((to, result))
    }

    async fn one(&self, call: Call, retry: Retry) -> Result<Value, StoreError> {
        self.redis
            .exec(vec![call], retry)
            .await?
            .pop()
            .ok_or_else(|| StoreError::Unavailable("redis sent no reply".into()))
    }
}

/// What a next owner answers for a once-only entry a previous owner started.
pub(crate) const OUTCOME_UNKNOWN: &str = "the shard's owner changed while this command ran: its outcome is unknown; check before sending it again";

/// Whether running `request` twice could act twice: a command that does not
/// replay safely ([`Command::replays_safely`]); reads and saga entries are
/// never once-only.
fn once_only(request: &Request) -> bool {
    matches!(request, Request::Execute { cmd, .. } if !cmd.replays_safely())
}

/// The `kind` label of `okpay_remote_requests_total` (`saga` for saga entries).
fn request_kind(request: &Request) -> &'static str {
    match request {
        Request::Execute { .. } => "execute",
        Request::State { .. } => "state",
        Request::Rows { .. } => "rows",
        Request::Audit { .. } => "audit",
        Request::Saga { .. } => "saga",
    }
}

/// One entry's reply: `(asker, request id)` and the result.
type Served1 = ((String, u64), Result<Answer, EngineError>);

async fn answer<T>(rx: oneshot::Receiver<Result<T, EngineError>>) -> Result<T, EngineError> {
    rx.await
        .unwrap_or_else(|_| Err(unavailable("the engine has stopped")))
}

/// `(id, request bytes)` of an `XRANGE` reply of `r <bytes>` entries.
fn decode_entries(reply: Value) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    type Entry = (String, Vec<(String, Vec<u8>)>);
    let entries: Vec<Entry> = from_value(reply)?;
    Ok(entries
        .into_iter()
        .filter_map(|(id, fields)| {
            let bytes = fields.into_iter().find(|(f, _)| f == "r")?.1;
            Some((id, bytes))
        })
        .collect())
}

/// For tests that stage what a dead owner left in a shard's inbox: the keys
/// involved and an entry's bytes.
#[doc(hidden)]
pub mod staging {
    use super::*;
    use crate::ids::AccountId;

    /// `(inbox stream, started hash)` of `shard`.
    pub fn keys(shard: ShardId) -> (String, String) {
        (inbox_key(shard), started_key(shard))
    }

    /// The field `r` of an inbox entry asking the owner to run `cmd` on
    /// `account`, expecting no reply.
    pub fn command_entry(account: AccountId, cmd: Command) -> Vec<u8> {
        Envelope {
            id: 0,
            reply_to: String::new(),
            request: Request::Execute { account, cmd },
        }
        .encode()
        // unwrap: a command always encodes (postcard into a Vec).
        .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbox_keys_share_the_shard_tag_and_node_keys_the_node_tag() {
        assert_eq!(inbox_key(ShardId(7)), "okpay:{s007}:inbox");
        assert_eq!(pos_key(ShardId(7)), "okpay:{s007}:pos");
        assert_eq!(replies_key("n-1"), "okpay:{node:n-1}:replies");
        assert_eq!(wake_key("n-1"), "okpay:{node:n-1}:wake");
        assert_eq!(started_key(ShardId(7)), "okpay:{s007}:started");
    }

    #[test]
    fn only_commands_without_a_key_or_a_transfer_id_are_once_only() {
        use crate::domain::state::AccountStatus;
        use crate::ids::{AccountId, IdempotencyKey};
        let account = AccountId(1);
        let run = |cmd| Request::Execute { account, cmd };
        assert!(once_only(&run(Command::SetStatus {
            to: AccountStatus::Frozen,
            reason: "r".into()
        })));
        assert!(once_only(&run(Command::ReviewKyc {
            approve: true,
            reason: None
        })));
        assert!(!once_only(&run(Command::Transfer {
            key: IdempotencyKey::parse("k").unwrap(),
            to: AccountId(2),
            amount: crate::money::Amount::parse(
                "1",
                crate::money::Currency::new("CNY", 2).unwrap()
            )
            .unwrap(),
            memo: None,
            step_up_verified: false,
        })));
        assert!(!once_only(&run(Command::SettleWithdrawal {
            id: crate::ids::OpId { account, n: 3 }
        })));
        assert!(!once_only(&Request::State { account }));
        assert!(!once_only(&Request::Rows { account }));
    }
}
