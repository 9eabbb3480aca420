//! `AccountActor`: the one writer of one account. It only sequences: receive,
//! decide, persist, apply, reply, notify. All rules are in `domain`.
//!
//! Pipelining: the actor applies a command's events to its in-memory state as soon
//! as they are handed to the journal writer, so the next command is decided without
//! waiting for storage; but every reply and every notification waits until the
//! records it depends on are durable. If an append fails, the in-memory state may be
//! ahead of storage, so the actor answers `Unavailable` to everything pending and
//! stops; the next request activates a fresh actor from durable state.
//!
//! Transfers run as a saga from the source actor: after the debit is durable it asks
//! the destination to credit (deduplicated there by transfer id), then records
//! completion or reversal and only then answers the client. On activation the actor
//! drives again every transfer it finds in flight.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::{broadcast, oneshot};

use super::{EngineError, Shared};
use crate::domain::history::history_rows;
use crate::domain::notification::Notification;
use crate::domain::state::{AccountState, OpRecord, TransferStatus};
use crate::domain::view::{op_view, Outcome};
use crate::domain::{apply, decide, Command, Event, EventBody};
use crate::engine::Engine;
use crate::ids::{AccountId, OpId};
use crate::store::{JournalAppend, Loaded, Snapshot, StoreError};
use crate::time::Timestamp;

pub(crate) type Reply<T> = oneshot::Sender<Result<T, EngineError>>;

/// A live subscription to an account's notifications.
pub struct Subscription {
    /// Retained notifications after the requested seq, oldest first.
    pub backlog: Vec<Notification>,
    /// Everything published after the backlog.
    pub receiver: broadcast::Receiver<Arc<Notification>>,
    /// True when notifications between the requested seq and the backlog were no
    /// longer retained: the client should refetch state.
    pub gap: bool,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("backlog", &self.backlog.len())
            .field("gap", &self.gap)
            .finish()
    }
}

/// What callers ask an account actor.
pub(crate) enum Request {
    Execute {
        cmd: Command,
        reply: Reply<Outcome>,
    },
    /// Runs a read-only projection of the state inside the actor and answers its
    /// result once everything it may have seen is durable. Every query (the view,
    /// an operation, a session check, the audit share...) is one of these, so a
    /// caller copies out only what it needs, never the whole state.
    Read {
        f: ReadFn,
        reply: Reply<Box<dyn Any + Send>>,
    },
    Subscribe {
        after: Option<u64>,
        reply: Reply<Subscription>,
    },
    /// A projection that may be answered at once, without waiting for the
    /// account's pending writes, when it says its answer holds in the durable
    /// state too (see [`Durable`]); otherwise answered like `Read`.
    ReadNow {
        f: ReadNowFn,
        reply: Reply<Box<dyn Any + Send>>,
    },
}

/// What is known durable of an account, for reads that answer without waiting:
/// the state after the last durable record has `opened` and `next_op` as here.
/// Both only grow, so "opened" and "operation `n < next_op` exists" seen here hold
/// in every state a crash could bring back.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Durable {
    pub opened: bool,
    pub next_op: u64,
}

/// A projection run by the actor that also says whether its answer may be sent
/// before the account's pending writes are durable (`true` only when the answer
/// holds in the durable state as well).
pub(crate) type ReadNowFn = Arc<
    dyn Fn(&AccountState, &crate::policy::Policy, Timestamp, Durable) -> (Box<dyn Any + Send>, bool)
        + Send
        + Sync,
>;

/// A read-only projection run by the actor: state, policy and `now` in, any value
/// out. `Arc` so the engine can send it again when the actor retires meanwhile.
pub(crate) type ReadFn = Arc<
    dyn Fn(&AccountState, &crate::policy::Policy, Timestamp) -> Box<dyn Any + Send> + Send + Sync,
>;

impl Message for Request {
    type Result = ();
}

impl Request {
    fn fail(self, err: EngineError) {
        match self {
            Request::Execute { reply, .. } => drop(reply.send(Err(err))),
            Request::Read { reply, .. } => drop(reply.send(Err(err))),
            Request::Subscribe { reply, .. } => drop(reply.send(Err(err))),
            Request::ReadNow { reply, .. } => drop(reply.send(Err(err))),
        }
    }
}

/// Work that may only happen once a record is durable. Called with `Some(err)`
/// instead when the record failed.
type Deferred =
    Box<dyn FnOnce(&mut AccountActor, &mut Context<AccountActor>, Option<&EngineError>)>;

/// A record handed to the journal writer and not yet confirmed.
struct PendingRecord {
    seq: u64,
    /// Notifications up to this seq become publishable with this record.
    notification_seq: u64,
    /// What is durable once this record is.
    marks: Durable,
    then: Vec<Deferred>,
}

pub(crate) struct AccountActor {
    id: AccountId,
    shared: Arc<Shared>,
    queued: Arc<AtomicUsize>,
    generation: u64,
    state: AccountState,
    /// Seq of the last record applied in memory (possibly not durable yet).
    version: u64,
    /// Seq of the last record confirmed durable.
    durable: u64,
    /// `opened` and `next_op` of the state after the last durable record.
    durable_marks: Durable,
    snapshot_seq: u64,
    snapshot_in_progress: bool,
    published_seq: u64,
    pending: VecDeque<PendingRecord>,
    /// Clients waiting for a transfer (by operation number) to complete or reverse.
    transfer_waiters: HashMap<u64, Vec<Reply<Outcome>>>,
    last_activity: Instant,
    /// Credits sent to destinations (or waiting to be retried) and not yet answered.
    credits_in_progress: usize,
    loaded: bool,
    /// Set once the actor must not serve any more: retiring (passivation) or failed.
    closed: Option<EngineError>,
}

impl AccountActor {
    pub fn new(
        id: AccountId,
        shared: Arc<Shared>,
        queued: Arc<AtomicUsize>,
        generation: u64,
    ) -> Self {
        AccountActor {
            id,
            shared,
            queued,
            generation,
            state: AccountState::new(id),
            version: 0,
            durable: 0,
            durable_marks: Durable {
                opened: false,
                next_op: 0,
            },
            snapshot_seq: 0,
            snapshot_in_progress: false,
            published_seq: 0,
            pending: VecDeque::new(),
            transfer_waiters: HashMap::new(),
            last_activity: Instant::now(),
            credits_in_progress: 0,
            loaded: false,
            closed: None,
        }
    }

    fn engine(&self) -> Engine {
        Engine::from_shared(self.shared.clone())
    }

    // ---- activation -------------------------------------------------------------

    fn on_loaded(&mut self, loaded: Result<Loaded, StoreError>, ctx: &mut Context<Self>) {
        let rebuilt = loaded.and_then(|l| rebuild(self.id, &l).map(|s| (s, l)));
        match rebuilt {
            Ok((state, loaded)) => {
                self.state = state;
                self.version = loaded.last_seq();
                self.durable = self.version;
                self.durable_marks = Durable {
                    opened: self.state.opened,
                    next_op: self.state.next_op,
                };
                self.snapshot_seq = loaded.snapshot.as_ref().map_or(0, |s| s.seq);
                self.published_seq = self.state.notification_seq;
                self.state
                    .compact(self.shared.clock.now(), &self.shared.policy);
                self.loaded = true;
                let open: Vec<u64> = self.state.open_transfers().map(|(n, _)| n).collect();
                for n in open {
                    self.start_credit(n, 0, ctx);
                }
                let tick = self.shared.config.tick;
                ctx.run_interval(tick, |act, ctx| act.tick(ctx));
            }
            Err(err) => {
                tracing::warn!(account = %self.id, error = %err, "activation failed");
                // Answer what is queued with a retryable error, and leave the directory
                // so the next request tries a fresh activation.
                self.close(EngineError::Unavailable(err.to_string()), ctx);
            }
        }
    }

    /// Stops serving: removes the directory entry and stops the actor. Requests
    /// still queued are dropped; their callers see a closed reply channel and retry.
    fn close(&mut self, reason: EngineError, ctx: &mut Context<Self>) {
        if self.closed.is_some() {
            return;
        }
        self.closed = Some(reason.clone());
        for p in std::mem::take(&mut self.pending) {
            for d in p.then {
                d(self, ctx, Some(&reason));
            }
        }
        for (_, waiters) in self.transfer_waiters.drain() {
            for w in waiters {
                let _ = w.send(Err(reason.clone()));
            }
        }
        self.shared.directory.remove(self.id, self.generation);
        ctx.stop();
    }

    // ---- commands ---------------------------------------------------------------

    /// Runs `cmd`. `reply` is `None` for the saga's own steps.
    fn execute(&mut self, cmd: Command, reply: Option<Reply<Outcome>>, ctx: &mut Context<Self>) {
        let now = self.shared.clock.now();
        let events = match decide(&self.shared.policy, &self.state, &cmd, now) {
            Ok(events) => events,
            Err(rejection) => {
                if reply.is_none() {
                    tracing::error!(account = %self.id, ?cmd, ?rejection, "saga step refused");
                }
                if matches!(cmd, Command::Transfer { .. }) {
                    metrics::counter!("okpay_transfers_total", "outcome" => "rejected", "code" => rejection.code()).increment(1);
                }
                self.answer(reply, Err(EngineError::Rejected(rejection)));
                return;
            }
        };
        if events.is_empty() {
            // Already done (idempotent replay, duplicate credit, no-op change).
            let replayed_transfer = self
                .replayed_op(&cmd)
                .filter(|n| matches!(self.state.ops.get(n), Some(OpRecord::Transfer { .. })));
            if let (Some(n), true) = (replayed_transfer, reply.is_some()) {
                // unwrap: checked by the pattern above.
                let r = reply.unwrap();
                match self.state.ops.get(&n).map(|op| (n, op)) {
                    Some((
                        n,
                        OpRecord::Transfer {
                            status: TransferStatus::InFlight,
                            ..
                        },
                    )) => self.transfer_waiters.entry(n).or_default().push(r),
                    Some((n, _)) => {
                        let result = transfer_result(&self.state, n);
                        self.answer(Some(r), result);
                    }
                    None => self.answer(
                        Some(r),
                        Err(EngineError::Unavailable("idempotency record lost".into())),
                    ),
                }
                return;
            }
            let outcome = self.outcome_of(&cmd, None);
            self.answer(reply, Ok(outcome));
            return;
        }
        // Check for room before applying anything: the writer is this thread's own,
        // so nothing else can take the room between this check and the submit.
        if !self.shared.writer.has_room() {
            metrics::counter!("okpay_journal_queue_full_total").increment(1);
            match reply {
                Some(r) => drop(r.send(Err(EngineError::Overloaded))),
                // A saga step must happen eventually: try again shortly.
                None => {
                    ctx.run_later(Duration::from_millis(5), move |act, ctx| {
                        if act.closed.is_none() {
                            act.execute(cmd, None, ctx);
                        }
                    });
                }
            }
            return;
        }
        for e in &events {
            apply(&mut self.state, e);
        }
        let seq = self.version + 1;
        let record = JournalAppend {
            account: self.id,
            seq,
            payload: crate::domain::event::encode_events(&events),
            history: history_rows(&self.state, &events),
        };
        let durable = match self.shared.writer.submit(record) {
            Ok(rx) => rx,
            Err(_) => {
                // Unreachable after `has_room`; if it ever happens the state is ahead
                // of storage, so start over from durable state.
                self.answer(reply, Err(EngineError::Overloaded));
                self.close(EngineError::Overloaded, ctx);
                return;
            }
        };
        self.version = seq;
        self.pending.push_back(PendingRecord {
            seq,
            notification_seq: self.state.notification_seq,
            marks: Durable {
                opened: self.state.opened,
                next_op: self.state.next_op,
            },
            then: Vec::new(),
        });
        ctx.spawn(durable.into_actor(self).map(move |res, act, ctx| {
            let res = res
                .unwrap_or_else(|_| Err(StoreError::Unavailable("journal writer stopped".into())));
            act.on_durable(seq, res, ctx)
        }));

        if let Some(EventBody::Refused { rejection }) = events.last().map(|e| &e.body) {
            self.answer(reply, Err(EngineError::Rejected(*rejection)));
            return;
        }
        let debited = events.iter().find_map(|e| match e.body {
            EventBody::TransferDebited { op, .. } => Some(op),
            _ => None,
        });
        if let Some(n) = debited {
            // A transfer (direct, or released by a passed challenge): answer once it
            // completed or reversed; start the credit once the debit is durable.
            if let Some(r) = reply {
                self.transfer_waiters.entry(n).or_default().push(r);
            }
            self.defer(
                Box::new(move |act, ctx, err| {
                    if err.is_none() {
                        act.start_credit(n, 0, ctx);
                    }
                }),
                ctx,
            );
            return;
        }
        match &cmd {
            Command::CompleteTransfer { transfer } | Command::ReverseTransfer { transfer, .. } => {
                let n = transfer.n;
                self.defer(
                    Box::new(move |act, _ctx, err| {
                        if err.is_none() {
                            act.finish_transfer(n);
                        }
                    }),
                    ctx,
                );
                self.answer(reply, Ok(Outcome::Done));
            }
            _ => {
                let outcome = self.outcome_of(&cmd, Some(&events));
                self.answer(reply, Ok(outcome));
            }
        }
    }

    /// The operation a replayed request refers to: its idempotency key's operation,
    /// for a challenge confirmation the guarded request's.
    fn replayed_op(&self, cmd: &Command) -> Option<u64> {
        let key = match cmd {
            Command::ConfirmChallenge { n, .. } => {
                &self.state.challenges.iter().find(|c| c.n == *n)?.key
            }
            other => other.idempotency_key()?,
        };
        self.state.idempotency.get(key).map(|e| e.op)
    }

    /// What a successful command reports, read from the current state.
    fn outcome_of(&self, cmd: &Command, events: Option<&[Event]>) -> Outcome {
        let minted = events.and_then(|es| es.iter().find_map(|e| e.body.minted_op()));
        let op = minted.or_else(|| {
            cmd.idempotency_key()
                .and_then(|k| self.state.idempotency.get(k))
                .map(|e| e.op)
        });
        match cmd {
            Command::Open { .. } => Outcome::Opened { account: self.id },
            Command::Credit { .. } => Outcome::Credited,
            Command::CreateSession(_) | Command::AddContact { .. } => match minted {
                Some(n) => Outcome::Created(OpId {
                    account: self.id,
                    n,
                }),
                None => Outcome::Done,
            },
            Command::Deposit { .. } | Command::Withdraw { .. } | Command::Transfer { .. } => op
                .and_then(|n| op_view(&self.state, n))
                .unwrap_or(Outcome::Done),
            Command::ConfirmChallenge { .. } => minted
                .or_else(|| self.replayed_op(cmd))
                .and_then(|n| op_view(&self.state, n))
                .unwrap_or(Outcome::Done),
            Command::CreateChallenge { key, .. } => {
                let now = self.shared.clock.now();
                let n = minted.or_else(|| {
                    crate::domain::security::live_challenge_for(&self.state, key, now).map(|c| c.n)
                });
                match n {
                    Some(n) => Outcome::Created(OpId {
                        account: self.id,
                        n,
                    }),
                    None => Outcome::Done,
                }
            }
            _ => Outcome::Done,
        }
    }

    /// Sends `result` once everything applied so far is durable.
    fn answer<T: Send + 'static>(
        &mut self,
        reply: Option<Reply<T>>,
        result: Result<T, EngineError>,
    ) {
        let Some(reply) = reply else { return };
        if self.pending.is_empty() {
            let _ = reply.send(result);
            return;
        }
        let deferred: Deferred = Box::new(move |_act, _ctx, err| {
            let _ = reply.send(match err {
                None => result,
                Some(e) => Err(e.clone()),
            });
        });
        // unwrap: checked non-empty above.
        self.pending.back_mut().unwrap().then.push(deferred);
    }

    /// Runs `work` once everything applied so far is durable.
    fn defer(&mut self, work: Deferred, ctx: &mut Context<Self>) {
        match self.pending.back_mut() {
            Some(p) => p.then.push(work),
            None => work(self, ctx, None),
        }
    }

    fn on_durable(&mut self, seq: u64, result: Result<(), StoreError>, ctx: &mut Context<Self>) {
        if self.closed.is_some() {
            return;
        }
        if let Err(err) = result {
            tracing::warn!(account = %self.id, seq, error = %err, "journal append failed");
            self.close(EngineError::Unavailable(err.to_string()), ctx);
            return;
        }
        self.durable = self.durable.max(seq);
        while self.pending.front().is_some_and(|p| p.seq <= self.durable) {
            // unwrap: checked by the loop condition.
            let p = self.pending.pop_front().unwrap();
            self.durable_marks = p.marks;
            self.publish_up_to(p.notification_seq);
            for d in p.then {
                d(self, ctx, None);
            }
        }
        if self.pending.is_empty()
            && !self.snapshot_in_progress
            && self.version - self.snapshot_seq >= self.shared.config.snapshot_every
        {
            self.save_snapshot(ctx, false);
        }
    }

    fn publish_up_to(&mut self, upto: u64) {
        if upto <= self.published_seq {
            return;
        }
        let from = self.published_seq;
        // The ring is ordered by seq: find the new ones from the back.
        let ring = &self.state.notifications;
        let newer = ring.iter().rev().take_while(|n| n.seq > from).count();
        self.shared.hub.publish(
            self.id,
            ring.iter()
                .skip(ring.len() - newer)
                .filter(|n| n.seq <= upto),
        );
        self.published_seq = upto;
    }

    // ---- the transfer saga -------------------------------------------------------

    /// Asks the destination to credit transfer `n` (again, after a crash or a
    /// transient failure: the destination deduplicates).
    fn start_credit(&mut self, n: u64, attempt: u32, ctx: &mut Context<Self>) {
        let Some(OpRecord::Transfer {
            to,
            amount,
            memo,
            status: TransferStatus::InFlight,
            at,
            ..
        }) = self.state.ops.get(&n)
        else {
            return;
        };
        // The destination remembers credited ids for `credit_dedupe_retention_s`.
        // Re-driving a transfer nearly that old could credit it twice, so it is left
        // in flight (still counted by the audit) for manual reconciliation instead.
        let horizon_ms = (i64::from(self.shared.policy.credit_dedupe_retention_s) - 86_400) * 1000;
        if self.shared.clock.now().millis() - at.millis() >= horizon_ms {
            metrics::counter!("okpay_transfers_stuck_total").increment(1);
            tracing::error!(account = %self.id, n, "transfer in flight too long: needs manual reconciliation");
            return;
        }
        let (to, cmd) = (
            *to,
            Command::Credit {
                transfer: OpId {
                    account: self.id,
                    n,
                },
                from: self.id,
                amount: *amount,
                memo: memo.clone(),
            },
        );
        let engine = self.engine();
        self.credits_in_progress += 1;
        ctx.spawn(
            async move { engine.execute(to, cmd).await }
                .into_actor(self)
                .map(move |res, act, ctx| act.on_credit_result(n, attempt, res, ctx)),
        );
    }

    fn on_credit_result(
        &mut self,
        n: u64,
        attempt: u32,
        result: Result<Outcome, EngineError>,
        ctx: &mut Context<Self>,
    ) {
        self.credits_in_progress -= 1;
        if self.closed.is_some() {
            return;
        }
        let transfer = OpId {
            account: self.id,
            n,
        };
        match result {
            Ok(_) => {
                self.execute(Command::CompleteTransfer { transfer }, None, ctx);
                // The debit and the credit are both durable, so the outcome is final:
                // after a crash the re-drive finds the credit deduplicated and completes.
                // The client need not wait for the completion record as well.
                self.answer_completed(n);
            }
            Err(EngineError::Rejected(reason)) => {
                metrics::counter!("okpay_transfers_total", "outcome" => "reversed", "code" => reason.code()).increment(1);
                self.execute(Command::ReverseTransfer { transfer, reason }, None, ctx)
            }
            Err(err) => {
                // Transient: the money stays in flight and we keep trying, backing off
                // up to a second between attempts.
                let delay = Duration::from_millis((5u64 << attempt.min(8)).min(1000));
                tracing::debug!(account = %self.id, n, attempt, error = %err, "credit retry");
                self.credits_in_progress += 1;
                ctx.run_later(delay, move |act, ctx| {
                    act.credits_in_progress -= 1;
                    act.start_credit(n, attempt + 1, ctx)
                });
            }
        }
    }

    /// Answers the clients waiting for transfer `n` as completed (its credit is
    /// durable at the destination).
    fn answer_completed(&mut self, n: u64) {
        metrics::counter!("okpay_transfers_total", "outcome" => "completed", "code" => "")
            .increment(1);
        let Some(waiters) = self.transfer_waiters.remove(&n) else {
            return;
        };
        let view = match op_view(&self.state, n) {
            Some(Outcome::Transfer(mut view)) => {
                view.status = TransferStatus::Completed;
                Ok(Outcome::Transfer(view))
            }
            _ => Err(EngineError::Unavailable(
                "transfer record not retained".into(),
            )),
        };
        for w in waiters {
            let _ = w.send(view.clone());
        }
    }

    /// Answers the clients waiting for transfer `n`, now completed or reversed.
    fn finish_transfer(&mut self, n: u64) {
        let Some(waiters) = self.transfer_waiters.remove(&n) else {
            return;
        };
        for w in waiters {
            let _ = w.send(transfer_result(&self.state, n));
        }
    }

    // ---- snapshots and passivation ----------------------------------------------

    fn save_snapshot(&mut self, ctx: &mut Context<Self>, then_retire: bool) {
        let snapshot = Snapshot {
            seq: self.version,
            // unwrap: postcard into a Vec cannot fail for plain data.
            payload: postcard::to_stdvec(&self.state).unwrap(),
        };
        let seq = snapshot.seq;
        let store = self.shared.store.clone();
        let id = self.id;
        self.snapshot_in_progress = true;
        let fut = async move { store.save_snapshot(id, snapshot).await }
            .into_actor(self)
            .map(move |res, act, ctx| {
                act.snapshot_in_progress = false;
                match res {
                    Ok(()) => {
                        act.snapshot_seq = act.snapshot_seq.max(seq);
                        if then_retire {
                            act.retire_if_idle(ctx);
                        }
                    }
                    Err(err) => tracing::warn!(account = %act.id, error = %err, "snapshot failed"),
                }
            });
        if then_retire {
            // Nothing else runs while the passivation snapshot is written, so the
            // snapshot is exactly the state that retires.
            ctx.wait(fut);
        } else {
            ctx.spawn(fut);
        }
    }

    fn is_idle(&self) -> bool {
        self.pending.is_empty()
            && self.transfer_waiters.is_empty()
            && self.credits_in_progress == 0
            && self.queued.load(Ordering::Acquire) == 0
            && self.last_activity.elapsed() >= self.shared.config.idle_after
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.closed.is_some() {
            return;
        }
        self.state
            .compact(self.shared.clock.now(), &self.shared.policy);
        if self.is_idle() && !self.snapshot_in_progress {
            if self.version > self.snapshot_seq && self.state.opened {
                self.save_snapshot(ctx, true);
            } else {
                self.retire_if_idle(ctx);
            }
        }
    }

    fn retire_if_idle(&mut self, ctx: &mut Context<Self>) {
        if self.is_idle() && self.closed.is_none() {
            self.close(EngineError::Moved, ctx);
        }
    }

    /// Stops at once after a snapshot, whatever the idle time (used at shutdown).
    fn passivate_now(&mut self, ctx: &mut Context<Self>) {
        self.last_activity = Instant::now() - self.shared.config.idle_after;
        self.tick(ctx);
    }
}

/// The reply for transfer `n` once it is no longer in flight.
fn transfer_result(state: &AccountState, n: u64) -> Result<Outcome, EngineError> {
    match op_view(state, n) {
        Some(Outcome::Transfer(view)) => match view.status {
            TransferStatus::Reversed(reason) => Err(EngineError::Rejected(reason)),
            _ => Ok(Outcome::Transfer(view)),
        },
        _ => Err(EngineError::Unavailable(
            "transfer record not retained".into(),
        )),
    }
}

/// Rebuilds an account from its snapshot and the journal after it.
pub fn rebuild(id: AccountId, loaded: &Loaded) -> Result<AccountState, StoreError> {
    let mut state = match &loaded.snapshot {
        Some(s) => postcard::from_bytes::<AccountState>(&s.payload)
            .map_err(|e| StoreError::Corrupt(format!("snapshot of {id}: {e}")))?,
        None => AccountState::new(id),
    };
    for record in &loaded.records {
        let events = crate::domain::event::decode_events(&record.payload)
            .map_err(|e| StoreError::Corrupt(format!("record {} of {id}: {e}", record.seq)))?;
        for e in &events {
            apply(&mut state, e);
        }
    }
    Ok(state)
}

impl Actor for AccountActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.shared.active.fetch_add(1, Ordering::Relaxed);
        let store = self.shared.store.clone();
        let id = self.id;
        // `wait`: no request is handled before the state is loaded.
        ctx.wait(
            async move { store.load(id).await }
                .into_actor(self)
                .map(|res, act, ctx| act.on_loaded(res, ctx)),
        );
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.shared.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Internal: passivate now (shutdown, tests).
pub(crate) struct Passivate;

impl Message for Passivate {
    type Result = ();
}

impl Handler<Passivate> for AccountActor {
    type Result = ();
    fn handle(&mut self, _msg: Passivate, ctx: &mut Self::Context) {
        if self.loaded {
            self.passivate_now(ctx);
        }
    }
}

impl Handler<Request> for AccountActor {
    type Result = ();

    fn handle(&mut self, request: Request, ctx: &mut Self::Context) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
        self.last_activity = Instant::now();
        if let Some(reason) = &self.closed {
            request.fail(reason.clone());
            return;
        }
        match request {
            Request::Execute { cmd, reply } => self.execute(cmd, Some(reply), ctx),
            Request::Read { f, reply } => {
                let out = f(&self.state, &self.shared.policy, self.shared.clock.now());
                self.answer(Some(reply), Ok(out));
            }
            Request::ReadNow { f, reply } => {
                let now = self.shared.clock.now();
                let (out, durable) = f(&self.state, &self.shared.policy, now, self.durable_marks);
                if durable {
                    let _ = reply.send(Ok(out));
                } else {
                    self.answer(Some(reply), Ok(out));
                }
            }
            Request::Subscribe { after, reply } => {
                let receiver = self.shared.hub.subscribe(self.id);
                let after = after.unwrap_or(self.published_seq);
                let published = self.published_seq;
                let backlog: Vec<Notification> = self
                    .state
                    .notifications_after(after)
                    .filter(|n| n.seq <= published)
                    .cloned()
                    .collect();
                let first = backlog.first().map_or(published + 1, |n| n.seq);
                let gap = after < published && first > after + 1;
                let _ = reply.send(Ok(Subscription {
                    backlog,
                    receiver,
                    gap,
                }));
            }
        }
    }
}
