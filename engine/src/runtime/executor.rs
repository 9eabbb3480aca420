//! An executor: one thread (an actix system) hosting a share of the shards and
//! every resident account actor of those shards.
//!
//! The loop: take a batch of messages from the bounded inbox (and the saga
//! messages of the other executors), run each one on its account at once —
//! decide, apply, append the record to the open batch — and keep going while the
//! previous batch is written. A batch holds one frame per shard it touched and
//! is written in one store call (one round trip, one fsync), then the history
//! rows of its records; when both are durable, its effects run in order:
//! replies, notifications, the next saga steps. Nothing is answered before the
//! records it depends on are durable, and a read answers only from state whose
//! records are durable.
//!
//! Per account: its state, its journal position, what is durable, and the
//! clients waiting for its transfers. An account that is not in memory is
//! loaded from its checkpointed state while its messages wait in its own queue
//! (bounded); an account idle and fully checkpointed leaves memory.
//!
//! When a shard's write fails, its in-memory state may be ahead of the store, so
//! the shard is dropped from memory (its waiting clients get `Unavailable`) and
//! recovered from its checkpoint and log, as at start-up; its messages wait
//! meanwhile.

use std::any::Any;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use rustc_hash::FxHashMap;
use tokio::sync::{broadcast, mpsc, oneshot};

mod hosting;
mod rows;

use self::rows::{BatchRow, Rows};
use super::recovery::{self, RecoveredShard};
use super::saga::{self, CreditAnswer, CreditOutcome, CreditRequest, OpenDebits, SourceStep};
use super::{EngineError, Shared};
use crate::codec::{checkpoint, BatchFrame, LogRecord, ShardId};
use crate::domain::history::history_rows;
use crate::domain::notification::Notification;
use crate::domain::protocol::{self, Reply as DomainReply, SagaStep};
use crate::domain::view::{AuditShare, Outcome};
use crate::domain::{AccountState, Command, Rejection};
use crate::ids::AccountId;
use crate::policy::Policy;
use crate::store::shard_log::{ShardAppend, ShardLog};
use crate::store::StoreError;
use crate::time::Timestamp;

pub(crate) type Reply<T> = oneshot::Sender<Result<T, EngineError>>;

/// A read-only projection run on an account's state: state, policy and `now`
/// in, any value out.
pub(crate) type ReadFn =
    Arc<dyn Fn(&AccountState, &Policy, Timestamp) -> Box<dyn Any + Send> + Send + Sync>;

/// A projection that also says whether its answer holds in the durable state
/// too (then it is sent at once, before the account's pending writes).
pub(crate) type ReadNowFn = Arc<
    dyn Fn(&AccountState, &Policy, Timestamp, Durable) -> (Box<dyn Any + Send>, bool) + Send + Sync,
>;

/// What is known durable of an account, for reads that answer without waiting:
/// the state after its last durable record has `opened` and `next_op` as here.
/// Both only grow, so "opened" and "operation `n < next_op` exists" seen here
/// hold in every state a crash could bring back.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Durable {
    pub opened: bool,
    pub next_op: u64,
}

impl Durable {
    fn of(state: &AccountState) -> Self {
        Durable {
            opened: state.opened,
            next_op: state.next_op,
        }
    }
}

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

/// An account's audit shares of one shard, and which accounts they cover.
pub(crate) type AuditPart = (Vec<AuditShare>, Vec<AccountId>);

/// What an executor is asked.
pub(crate) enum Msg {
    Execute {
        account: AccountId,
        cmd: Command,
        reply: Reply<Outcome>,
    },
    Read {
        account: AccountId,
        f: ReadFn,
        reply: Reply<Box<dyn Any + Send>>,
    },
    ReadNow {
        account: AccountId,
        f: ReadNowFn,
        reply: Reply<Box<dyn Any + Send>>,
    },
    Subscribe {
        account: AccountId,
        after: Option<u64>,
        reply: Reply<Subscription>,
    },
    /// Answered once the history rows of every record of the account applied so
    /// far are written (so a history read sees every acknowledged operation).
    Rows {
        account: AccountId,
        reply: Reply<()>,
    },
    /// Saga, at the destination.
    Credit(CreditRequest),
    /// Saga, at the source.
    Answer(CreditAnswer),
    /// Saga messages of one executor's loop turn for another — the credits its
    /// durable batches start and the answers to credits it decided — as one
    /// message (one channel operation and one wake-up, however many).
    Bundle(Vec<Msg>),
    /// The audit shares of the accounts of `shard` held in memory.
    Audit {
        shard: ShardId,
        reply: Reply<AuditPart>,
    },
    /// Checkpoint every shard now and let every idle account leave memory.
    Passivate,
    /// Answered once every shard of the executor is recovered.
    Ready { reply: oneshot::Sender<()> },
    /// Cluster mode: this node took `shard`'s lease; recover and serve it.
    Host { shard: ShardId },
    /// Cluster mode: the lease on `shard` is lost; drop it from memory at once.
    Unhost { shard: ShardId },
    /// Cluster mode: hand `shard` over: stop taking its commands, let its
    /// batches finish, checkpoint it, drop it; answered `true` once done.
    Release {
        shard: ShardId,
        reply: oneshot::Sender<bool>,
    },
}

/// Where a message goes.
enum Target {
    Account(AccountId),
    Shard(ShardId),
    Executor,
}

impl Msg {
    fn target(&self) -> Target {
        match self {
            Msg::Execute { account, .. }
            | Msg::Read { account, .. }
            | Msg::ReadNow { account, .. }
            | Msg::Subscribe { account, .. }
            | Msg::Rows { account, .. } => Target::Account(*account),
            Msg::Credit(req) => Target::Account(req.to),
            Msg::Answer(ans) => Target::Account(ans.transfer.account),
            Msg::Audit { shard, .. } => Target::Shard(*shard),
            Msg::Passivate
            | Msg::Ready { .. }
            | Msg::Host { .. }
            | Msg::Unhost { .. }
            | Msg::Release { .. }
            | Msg::Bundle(_) => Target::Executor,
        }
    }

    /// Whether the message comes from a client (and so may be refused at a
    /// bound); saga messages must always be taken.
    fn is_client(&self) -> bool {
        !matches!(
            self,
            Msg::Credit(_)
                | Msg::Answer(_)
                | Msg::Bundle(_)
                | Msg::Host { .. }
                | Msg::Unhost { .. }
                | Msg::Release { .. }
        )
    }
}

/// An account in memory.
struct Slot {
    state: AccountState,
    /// The journal position of the last record applied in memory.
    seq: u64,
    /// The journal position of the last durable record.
    durable_seq: u64,
    durable: Durable,
    published_seq: u64,
    /// The first frame since the account's last checkpoint that changed it
    /// (0: its checkpointed state is current).
    dirty_lsn: u64,
    /// The batch holding the account's last record.
    last_batch: u64,
    /// Clients waiting for transfer `n` to be final.
    waiters: Vec<(u64, Reply<Outcome>)>,
    /// Executor tick of the last message.
    last_used: u64,
}

impl Slot {
    fn new(seq: u64, state: AccountState, dirty_lsn: u64) -> Box<Slot> {
        Box::new(Slot {
            durable: Durable::of(&state),
            published_seq: state.notification_seq,
            state,
            seq,
            durable_seq: seq,
            dirty_lsn,
            last_batch: 0,
            waiters: Vec::new(),
            last_used: 0,
        })
    }

    fn pending(&self) -> bool {
        self.seq > self.durable_seq
    }

    fn has_open_transfers(&self) -> bool {
        self.state.open_transfers().next().is_some()
    }
}

enum Entry {
    /// Being read from the checkpoint; its messages wait here, in order.
    Loading(VecDeque<Msg>),
    Ready(Box<Slot>),
}

enum Phase {
    /// Being recovered; its messages wait here, in order.
    Recovering(VecDeque<Msg>),
    Ready,
}

struct Shard {
    accounts: FxHashMap<AccountId, Entry>,
    phase: Phase,
    /// Bumped on every recovery, so results of loads started before it are
    /// recognised and dropped.
    generation: u64,
    /// The lsn the next sealed frame gets.
    next_lsn: u64,
    durable_lsn: u64,
    /// Every frame up to this lsn is durable and so are its history rows: the
    /// furthest a checkpoint (which trims the log that rebuilds rows) may go.
    rows_lsn: u64,
    checkpoint_lsn: u64,
    /// Records sealed into this shard's frames, ever, and their count when the
    /// last checkpoint started: the log grown since is their difference.
    sealed_records: u64,
    checkpoint_records: u64,
    checkpointing: bool,
    /// No checkpoint before this batch is durable (it rewrites the history rows
    /// of frames replayed by recovery, which a checkpoint would trim).
    hold_checkpoint_until: u64,
    /// Cluster mode: the shard is being handed over; answered once it is
    /// drained and checkpointed (see `hosting`).
    releasing: Option<oneshot::Sender<bool>>,
    /// Cluster mode: the lease epoch this shard is hosted under, which fences
    /// the writes of its history rows (see `hosting`). `None` on one node.
    epoch: Option<u64>,
    /// Transfers debited here and not yet settled, by debit position: the
    /// shard's watermark (see `saga`).
    debits: OpenDebits,
}

impl Shard {
    /// The shard's watermark now (see `saga`).
    fn watermark(&self) -> u64 {
        self.debits.watermark(self.durable_lsn)
    }
}

/// Work done when a batch is durable (or failed), in order.
enum Effect {
    /// The account's record `seq` is durable.
    Durable {
        account: AccountId,
        seq: u64,
        notification_seq: u64,
        marks: Durable,
    },
    Answer(Answer),
    /// Transfer `n` of `account` is debited durably at `debit_lsn`: ask for its
    /// credit.
    StartCredit {
        account: AccountId,
        n: u64,
        debit_lsn: u64,
    },
    /// Transfer `n` of `account` is final, durably: answer its waiters, and it
    /// no longer holds its shard's watermark back.
    Finished {
        account: AccountId,
        n: u64,
    },
    /// At the destination: the credit's outcome is durable; tell the source.
    Credit(CreditAnswer),
}

enum Answer {
    Outcome(Reply<Outcome>, Result<Outcome, EngineError>),
    Any(Reply<Box<dyn Any + Send>>, Box<dyn Any + Send>),
}

impl Answer {
    fn send(self) {
        match self {
            Answer::Outcome(reply, result) => drop(reply.send(result)),
            Answer::Any(reply, out) => drop(reply.send(Ok(out))),
        }
    }

    fn fail(self, err: EngineError) {
        match self {
            Answer::Outcome(reply, _) => drop(reply.send(Err(err))),
            Answer::Any(reply, _) => drop(reply.send(Err(err))),
        }
    }
}

/// One batch: one frame per shard it touched, the history rows of its records,
/// and what to do once it is durable.
struct Batch {
    id: u64,
    frames: Vec<(ShardId, Vec<LogRecord>)>,
    /// Filled when sealed: the encoded frames and their positions.
    appends: Vec<ShardAppend>,
    /// Filled when sealed: the shards with a frame here, less those dropped
    /// since (lease lost, failed): the answer for a shard not listed belongs
    /// to a hosting that is gone, and must not touch a newer one.
    hosted: Vec<ShardId>,
    history: Vec<BatchRow>,
    /// Shards whose recovery put rows in `history`.
    history_shards: Vec<ShardId>,
    effects: Vec<(ShardId, Effect)>,
    /// (source, destination) shards of the credits decided in this batch with
    /// their debits ([`Executor::credit_early`]): the destination's frame must
    /// never land without the source's.
    coupled: Vec<(ShardId, ShardId)>,
    records: usize,
}

impl Batch {
    fn new(id: u64) -> Self {
        Batch {
            id,
            frames: Vec::new(),
            appends: Vec::new(),
            hosted: Vec::new(),
            history: Vec::new(),
            history_shards: Vec::new(),
            effects: Vec::new(),
            coupled: Vec::new(),
            records: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.records == 0 && self.history.is_empty() && self.effects.is_empty()
    }

    /// This batch's buffers, emptied, for batch `id`.
    fn reuse(mut self, id: u64) -> Self {
        self.id = id;
        self.frames.clear();
        self.appends.clear();
        self.hosted.clear();
        self.history.clear();
        self.history_shards.clear();
        self.effects.clear();
        self.coupled.clear();
        self.records = 0;
        self
    }

    fn push(&mut self, shard: ShardId, record: LogRecord) {
        self.records += 1;
        // A batch touches few shards; a linear scan from the back beats a map.
        match self.frames.iter_mut().rev().find(|(s, _)| *s == shard) {
            Some((_, records)) => records.push(record),
            None => self.frames.push((shard, vec![record])),
        }
    }
}

/// The outcome of writing one batch.
struct Written {
    /// Per frame written: its shard and outcome. `Err` for all when the whole
    /// call failed.
    results: Vec<(ShardId, u64, Result<(), StoreError>)>,
    bytes: usize,
}

type WriteFuture = Pin<Box<dyn Future<Output = Written>>>;

struct RowsWritten {
    batch: u64,
    /// The write's number (see [`Rows::wait`]).
    write: u64,
    positions: Vec<(ShardId, u64)>,
    /// The shards refused for their lease epoch ([`StoreError::LeaseLost`]).
    result: Result<Vec<StoreError>, StoreError>,
}

type RowsFuture = Pin<Box<dyn Future<Output = RowsWritten>>>;

/// Background work whose result comes back to the loop.
enum Task {
    Loaded {
        shard: ShardId,
        generation: u64,
        account: AccountId,
        result: Result<Option<(u64, Box<AccountState>)>, StoreError>,
    },
    Recovered {
        shard: ShardId,
        result: Result<RecoveredShard, StoreError>,
    },
    RecoverAgain(ShardId),
    Checkpointed {
        shard: ShardId,
        generation: u64,
        lsn: u64,
        written: Vec<(AccountId, u64)>,
        /// Bytes of the account states written.
        bytes: usize,
        result: Result<(), StoreError>,
    },
    AskAgain {
        account: AccountId,
        n: u64,
        attempt: u32,
    },
}

type TaskFuture = Pin<Box<dyn Future<Output = Task>>>;

/// The most messages taken from a channel at once.
const TAKE: usize = 1024;
/// How often checkpoints are considered.
const HOUSEKEEPING: Duration = Duration::from_millis(100);
/// How many batches the history rows of a durable batch may wait for later rows
/// of the same operations (see [`Executor::write_rows`]). A transfer completes
/// two or three batches after its debit; rows of operations still open when
/// the window closes are held back longer (see [`rows`] and
/// [`super::RowsHold`]).
const ROWS_WINDOW: u64 = 6;
/// While the store gathers rows for a time (`Store::rows_gather`), how many
/// full batches of them may wait: 8 × 8,192 rows is 0.3 s of the durable
/// bench's ~120,000 rows a second (16 MB at most).
const ROWS_GATHERED_BATCHES: usize = 8;
/// A shard whose log has any frame past its checkpoint is checkpointed once no
/// frame was added for this many housekeeping rounds (it went quiet)...
const CHECKPOINT_QUIET_ROUNDS: u64 = 20;
/// ...or, when it never reaches `checkpoint_every`, after this many rounds.
const CHECKPOINT_MAX_ROUNDS: u64 = 600;

/// The executor's channels to every executor (itself included), for saga
/// messages: unbounded, because a saga step must never be refused; their number
/// is bounded by the transfers admitted through the bounded inboxes.
pub(crate) type Peers = Arc<Vec<mpsc::UnboundedSender<Msg>>>;

pub(crate) struct Executor {
    index: usize,
    shared: Arc<Shared>,
    log: Arc<dyn ShardLog>,
    shards: FxHashMap<ShardId, Shard>,
    inbox: mpsc::Receiver<Msg>,
    saga_inbox: mpsc::UnboundedReceiver<Msg>,
    peers: Peers,
    /// Messages for this executor produced by itself (saga steps between its
    /// shards, messages released by a load or a recovery), run before new ones.
    local: VecDeque<Msg>,
    /// Saga messages for other executors, sent once per loop turn.
    outbound: Vec<Vec<Msg>>,
    /// Sealed batches, oldest first; the front one is being written when
    /// `writing` is set.
    sealed: VecDeque<Batch>,
    open: Batch,
    writing: Option<WriteFuture>,
    durable_batch: u64,
    rows: Rows,
    /// Written batches, emptied, whose buffers the next batches reuse.
    spare: Vec<Batch>,
    tasks: FuturesUnordered<TaskFuture>,
    ready_waiters: Vec<oneshot::Sender<()>>,
    rounds: u64,
    last_tick: Instant,
    rounds_since_checkpoint: FxHashMap<ShardId, (u64, u64, u64)>,
    /// Whether a transfer between two shards of this executor is credited in
    /// its debit's own batch: only on a log whose appends land whole
    /// ([`ShardLog::atomic_append`]), on one node.
    early_credits: bool,
    /// Transfers just debited whose destination is on this executor, their
    /// record held until the credit is decided ([`Executor::settle_early`]).
    early_pending: Vec<EarlyDebit>,
}

/// A transfer just debited (its events applied to the source's state, not yet
/// recorded) whose destination is on the same executor: its credit is decided
/// at once, and the debit and its completion (or reversal) become one record.
struct EarlyDebit {
    request: CreditRequest,
    events: Vec<crate::domain::Event>,
    reply: Option<Reply<Outcome>>,
}

impl Executor {
    pub(crate) fn new(
        index: usize,
        shared: Arc<Shared>,
        inbox: mpsc::Receiver<Msg>,
        saga_inbox: mpsc::UnboundedReceiver<Msg>,
        peers: Peers,
    ) -> Self {
        let log = shared.log.clone();
        let executors = shared.config.executors.max(1);
        let early_credits =
            shared.config.early_credits && shared.config.cluster.is_none() && log.atomic_append();
        // Cluster mode: no shard until the lease driver hands one over.
        let shards = shared
            .layout
            .all()
            .filter(|s| shared.config.cluster.is_none() && shared.executor_of_shard(*s) == index)
            .map(|id| (id, Shard::recovering()))
            .collect();
        Executor {
            index,
            shared,
            log,
            shards,
            inbox,
            saga_inbox,
            peers,
            local: VecDeque::new(),
            outbound: (0..executors).map(|_| Vec::new()).collect(),
            sealed: VecDeque::new(),
            open: Batch::new(1),
            writing: None,
            durable_batch: 0,
            rows: Rows::default(),
            spare: Vec::new(),
            tasks: FuturesUnordered::new(),
            ready_waiters: Vec::new(),
            rounds: 0,
            last_tick: Instant::now(),
            rounds_since_checkpoint: FxHashMap::default(),
            early_credits,
            early_pending: Vec::new(),
        }
    }

    /// Runs until every engine handle is dropped.
    pub(crate) async fn run(mut self) {
        let ids: Vec<ShardId> = self.shards.keys().copied().collect();
        for id in ids {
            self.start_recovery(id);
        }
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut taken = Vec::with_capacity(TAKE);
        let mut saga_taken = Vec::with_capacity(TAKE);
        loop {
            while let Some(msg) = self.local.pop_front() {
                self.dispatch(msg);
            }
            self.send_outbound();
            self.pump();
            let accepting = self.accepting();
            tokio::select! {
                biased;
                written = async { self.writing.as_mut().expect("checked by the guard").await },
                    if self.writing.is_some() =>
                {
                    self.writing = None;
                    self.on_written(written);
                }
                written = async { self.rows.writing.as_mut().expect("checked by the guard").await },
                    if self.rows.writing.is_some() =>
                {
                    self.rows.writing = None;
                    self.on_rows_written(written);
                }
                Some(task) = self.tasks.next(), if !self.tasks.is_empty() => self.on_task(task),
                n = self.saga_inbox.recv_many(&mut saga_taken, TAKE) => {
                    if n == 0 {
                        return; // every peer is gone: the engine stopped
                    }
                    for msg in saga_taken.drain(..) {
                        self.dispatch(msg);
                    }
                }
                n = self.inbox.recv_many(&mut taken, TAKE), if accepting => {
                    if n == 0 {
                        return; // every engine handle is gone
                    }
                    for msg in taken.drain(..) {
                        self.dispatch(msg);
                    }
                }
                _ = housekeeping.tick() => self.housekeeping(),
            }
        }
    }

    /// Whether new client messages may be taken: not while a full open batch
    /// waits behind a full pipeline.
    fn accepting(&self) -> bool {
        self.open.records < self.shared.config.max_batch || self.sealed.len() < 2
    }

    // ---- routing ----------------------------------------------------------------

    fn dispatch(&mut self, msg: Msg) {
        match msg.target() {
            Target::Executor => self.on_executor_msg(msg),
            Target::Shard(shard) => {
                let Some(s) = self
                    .shards
                    .get_mut(&shard)
                    .filter(|s| s.releasing.is_none())
                else {
                    return self.not_hosted(msg);
                };
                if let Phase::Recovering(queue) = &mut s.phase {
                    return queue.push_back(msg);
                }
                if let Msg::Audit { reply, .. } = msg {
                    let mut shares = Vec::new();
                    let mut ids = Vec::new();
                    for (id, entry) in &s.accounts {
                        if let Entry::Ready(slot) = entry {
                            ids.push(*id);
                            if slot.state.opened {
                                shares.push(AuditShare::of(&slot.state));
                            }
                        }
                    }
                    let _ = reply.send(Ok((shares, ids)));
                }
            }
            Target::Account(account) => self.deliver(account, msg),
        }
    }

    fn deliver(&mut self, account: AccountId, msg: Msg) {
        let shard_id = self.shared.layout.shard_of(account);
        let owner = self.shared.executor_of_shard(shard_id);
        if owner != self.index {
            return self.outbound[owner].push(msg);
        }
        let capacity = self.shared.config.mailbox_capacity;
        let Some(shard) = self
            .shards
            .get_mut(&shard_id)
            .filter(|s| s.releasing.is_none())
        else {
            return self.not_hosted(msg);
        };
        if let Phase::Recovering(queue) = &mut shard.phase {
            if msg.is_client() && queue.len() >= capacity * 8 {
                metrics::counter!("okpay_mailbox_full_total").increment(1);
                return fail(msg, EngineError::Overloaded);
            }
            return queue.push_back(msg);
        }
        if let Msg::Rows { reply, .. } = msg {
            return self.wait_rows(shard_id, account, reply);
        }
        match shard.accounts.get_mut(&account) {
            Some(Entry::Ready(_)) => {}
            Some(Entry::Loading(queue)) => {
                if msg.is_client() && queue.len() >= capacity {
                    metrics::counter!("okpay_mailbox_full_total").increment(1);
                    return fail(msg, EngineError::Overloaded);
                }
                return queue.push_back(msg);
            }
            None => {
                shard
                    .accounts
                    .insert(account, Entry::Loading(VecDeque::from([msg])));
                let (log, generation) = (self.log.clone(), shard.generation);
                self.tasks.push(Box::pin(async move {
                    let result = recovery::load_account(log, shard_id, account)
                        .await
                        .map(|loaded| loaded.map(|(seq, state)| (seq, Box::new(state))));
                    Task::Loaded {
                        shard: shard_id,
                        generation,
                        account,
                        result,
                    }
                }));
                return;
            }
        }
        let next_lsn = shard.next_lsn;
        let Some(Entry::Ready(slot)) = shard.accounts.get_mut(&account) else {
            unreachable!("checked above");
        };
        slot.last_used = self.rounds;
        let early = self.early_credits.then_some(&mut self.early_pending);
        ctx!(self, shard_id, next_lsn, early).run(slot, msg);
        while let Some(debit) = self.early_pending.pop() {
            self.settle_early(shard_id, debit);
        }
    }

    /// Records a transfer debited on a shard of this executor whose
    /// destination is on it too ([`EarlyDebit`]): its credit is decided now
    /// ([`Executor::credit_early`]), and the source's debit and its completion
    /// (or its reversal, when the destination refused) are recorded as one
    /// record in the same open batch as the credit. The log writes that batch
    /// whole or not at all, so the transfer is settled exactly when it is
    /// durable: nothing is in flight, no message goes back to the source, and
    /// the client is answered once that batch lands. When the credit can't be
    /// decided now (its account not in memory, its shard not serving), the
    /// debit is recorded alone and its credit asked once it is durable.
    fn settle_early(&mut self, shard_id: ShardId, debit: EarlyDebit) {
        let outcome = self.credit_early(&debit.request);
        let Some(shard) = self.shards.get_mut(&shard_id) else {
            unreachable!("the source's shard was serving a moment ago");
        };
        let next_lsn = shard.next_lsn;
        let Some(Entry::Ready(slot)) = shard.accounts.get_mut(&debit.request.transfer.account)
        else {
            unreachable!("the source was in memory a moment ago");
        };
        ctx!(self, shard_id, next_lsn, None).settle(slot, debit, outcome);
    }

    /// Decides the credit of a transfer just debited on a shard of this
    /// executor into the open batch its debit will join, when its destination
    /// account is in memory and its shard serving: the log writes that batch
    /// whole or not at all, so the credit is durable exactly when its debit is,
    /// never before. Returns the destination's decision, or `None` when it was
    /// not asked: then the credit is asked once the debit is durable, as
    /// between executors (deciding it in a later batch could make it durable
    /// without its debit).
    fn credit_early(&mut self, request: &CreditRequest) -> Option<CreditOutcome> {
        let shard_id = self.shared.layout.shard_of(request.to);
        if self.shared.executor_of_shard(shard_id) != self.index {
            return None;
        }
        let shard = self
            .shards
            .get_mut(&shard_id)
            .filter(|s| s.releasing.is_none() && matches!(s.phase, Phase::Ready))?;
        let next_lsn = shard.next_lsn;
        let Some(Entry::Ready(slot)) = shard.accounts.get_mut(&request.to) else {
            return None;
        };
        slot.last_used = self.rounds;
        let source = self.shared.layout.shard_of(request.transfer.account);
        let outcome = ctx!(self, shard_id, next_lsn, None).credit(slot, request, true)?;
        if source != shard_id {
            self.open.coupled.push((source, shard_id));
        }
        Some(outcome)
    }

    fn on_executor_msg(&mut self, msg: Msg) {
        match msg {
            Msg::Passivate => {
                // Rows held back would keep checkpoints below their frames.
                self.rows.release_all();
                let ids: Vec<ShardId> = self.shards.keys().copied().collect();
                for id in ids {
                    self.evict(id, true);
                    self.checkpoint(id, true);
                }
            }
            Msg::Ready { reply } => {
                if self.all_ready() {
                    let _ = reply.send(());
                } else {
                    self.ready_waiters.push(reply);
                }
            }
            Msg::Host { shard } => self.host(shard),
            Msg::Unhost { shard } => self.unhost(shard, "the shard's lease was lost"),
            Msg::Release { shard, reply } => self.release(shard, reply),
            Msg::Bundle(msgs) => {
                for msg in msgs {
                    self.dispatch(msg);
                }
            }
            other => fail(other, EngineError::Unavailable("misrouted message".into())),
        }
    }

    fn all_ready(&self) -> bool {
        self.shards
            .values()
            .all(|s| matches!(s.phase, Phase::Ready))
    }

    fn send_outbound(&mut self) {
        for (e, msgs) in self.outbound.iter_mut().enumerate() {
            let msg = match msgs.len() {
                0 => continue,
                // unwrap: one is there.
                1 => msgs.pop().expect("one message"),
                // The bundle's buffer is freed by the receiving thread; the next
                // one starts at this one's size rather than growing again from
                // empty (each doubling of a buffer that large took fresh pages).
                n => Msg::Bundle(std::mem::replace(msgs, Vec::with_capacity(n))),
            };
            // An error only means that executor stopped: the engine is going
            // away, and recovery drives every transfer again on the next start.
            let _ = self.peers[e].send(msg);
        }
    }

    // ---- the write pipeline -----------------------------------------------------

    /// Seals the open batch and starts writing when the pipeline has room.
    fn pump(&mut self) {
        let full = self.open.records >= self.shared.config.max_batch;
        let room = if self.writing.is_none() {
            self.sealed.is_empty()
        } else {
            full && self.sealed.len() < 2
        };
        if room && !self.open.is_empty() {
            self.seal();
        }
        self.write_rows();
        // Rows must keep up with the log: past two full batches of them waiting,
        // the next frames wait for the rows write (back-pressure, not a backlog).
        let rows_behind = self.rows.due_rows() >= 2 * self.rows_max();
        if self.writing.is_none() && !rows_behind {
            if let Some(front) = self.sealed.front_mut() {
                self.writing = Some(start_write(self.log.clone(), front));
            }
        }
    }

    fn seal(&mut self) {
        let next = self.open.id + 1;
        let fresh = match self.spare.pop() {
            Some(spare) => spare.reuse(next),
            None => Batch::new(next),
        };
        let mut batch = std::mem::replace(&mut self.open, fresh);
        let mut frames = std::mem::take(&mut batch.frames);
        for (shard_id, records) in frames.drain(..) {
            let Some(shard) = self.shards.get_mut(&shard_id) else {
                continue;
            };
            let lsn = shard.next_lsn;
            shard.next_lsn += 1;
            shard.sealed_records += records.len() as u64;
            let frame = BatchFrame {
                shard: shard_id,
                lsn,
                records,
            };
            // unwrap: a frame holds at most `max_batch` records of bounded size,
            // far from the 4 GiB a frame can describe.
            let bytes = frame
                .encode_as(self.shared.config.compression)
                .expect("a bounded batch encodes");
            batch.appends.push(ShardAppend {
                shard: shard_id,
                lsn,
                frame: bytes,
                epoch: shard.epoch,
            });
            batch.hosted.push(shard_id);
        }
        batch.frames = frames;
        self.shared
            .stats
            .queued
            .fetch_add(batch.records, Ordering::Relaxed);
        self.sealed.push_back(batch);
    }
}

/// Writes a sealed batch's frames in one log call (its history rows follow once
/// it is durable, see [`Rows`]).
fn start_write(log: Arc<dyn ShardLog>, batch: &mut Batch) -> WriteFuture {
    let appends = std::mem::take(&mut batch.appends);
    let positions: Vec<(ShardId, u64)> = appends.iter().map(|a| (a.shard, a.lsn)).collect();
    let bytes = appends.iter().map(|a| a.frame.len()).sum();
    Box::pin(async move {
        let results = if appends.is_empty() {
            Ok(Vec::new())
        } else {
            // The store's whole answer time for one batch (queueing at the store
            // and its fsync included): the floor of every command's latency.
            let started = Instant::now();
            let results = log.append(appends).await;
            metrics::histogram!("okpay_log_append_seconds").record(started.elapsed().as_secs_f64());
            results
        };
        let results: Vec<(ShardId, u64, Result<(), StoreError>)> = match results {
            Ok(per) if per.len() == positions.len() => positions
                .into_iter()
                .zip(per)
                .map(|((s, l), r)| (s, l, r))
                .collect(),
            other => {
                let err = match other {
                    Err(e) => e,
                    Ok(_) => StoreError::Corrupt("the log answered a wrong count".into()),
                };
                positions
                    .into_iter()
                    .map(|(s, l)| (s, l, Err(err.clone())))
                    .collect()
            }
        };
        Written { results, bytes }
    })
}

impl Executor {
    fn on_written(&mut self, written: Written) {
        // unwrap: `writing` is only set for the front sealed batch.
        let mut batch = self.sealed.pop_front().expect("a batch was being written");
        let stats = &self.shared.stats;
        stats.queued.fetch_sub(batch.records, Ordering::Relaxed);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats
            .records
            .fetch_add(batch.records as u64, Ordering::Relaxed);
        stats
            .bytes
            .fetch_add(written.bytes as u64, Ordering::Relaxed);
        stats
            .max_batch
            .fetch_max(batch.records as u64, Ordering::Relaxed);
        let mut failed: Vec<(ShardId, StoreError)> = Vec::new();
        let mut durable_shards = Vec::new();
        for (shard_id, lsn, result) in written.results {
            if !batch.hosted.contains(&shard_id) {
                // Dropped while this write was in flight (its clients were
                // answered then), and maybe hosted again since under a newer
                // lease: this answer is the old hosting's alone.
                continue;
            }
            match result {
                Ok(()) => {
                    if let Some(shard) = self.shards.get_mut(&shard_id) {
                        shard.durable_lsn = shard.durable_lsn.max(lsn);
                    }
                    durable_shards.push(shard_id);
                    self.rows.frame_durable(shard_id, lsn);
                }
                Err(e) => failed.push((shard_id, e)),
            }
        }
        if !failed.is_empty() {
            stats.failed_batches.fetch_add(1, Ordering::Relaxed);
        }
        self.durable_batch = batch.id;
        // The rows of frames that did not land must not be written: they would
        // describe operations that never happened (recovery writes the others).
        let now = Instant::now();
        if self.rows.pending_since == 0 {
            self.rows.pending_since = batch.id;
            self.rows.pending_since_at = Some(now);
        }
        let mut superseded = 0u64;
        for row in batch.history.drain(..) {
            if !failed.iter().any(|(f, _)| *f == row.shard) {
                superseded += u64::from(self.rows.push(row, batch.id, now));
            }
        }
        stats
            .rows_superseded
            .fetch_add(superseded, Ordering::Relaxed);
        for &s in &batch.history_shards {
            if !failed.iter().any(|(f, _)| *f == s) {
                self.rows.recovery_rows(s);
            }
        }
        self.rows.pending_batch = batch.id;
        let mut effects = std::mem::take(&mut batch.effects);
        for (shard, effect) in effects.drain(..) {
            match failed.iter().find(|(f, _)| *f == shard) {
                Some((_, err)) => {
                    self.fail_effect(effect, &EngineError::Unavailable(err.to_string()))
                }
                None => self.run_effect(shard, effect),
            }
        }
        batch.effects = effects;
        // Only now, with the transfers this batch debited opened by their
        // `StartCredit` above, may the watermarks pass the new frames.
        for shard_id in durable_shards {
            if let Some(shard) = self.shards.get(&shard_id) {
                self.shared.watermarks.raise(shard_id, shard.watermark());
            }
        }
        if self.spare.len() < 2 {
            self.spare.push(batch);
        }
        for (shard, err) in failed {
            if let StoreError::LeaseLost { .. } = err {
                // Another node owns the shard now: nothing to recover here.
                self.lease_lost(shard);
                continue;
            }
            tracing::warn!(%shard, error = %err, "shard write failed: recovering the shard");
            self.fail_shard(shard, EngineError::Unavailable(err.to_string()));
        }
        self.progress_releases();
    }

    /// Starts writing the pending history rows when no write of them is in
    /// flight and they are due; with no rows to write, their frames count as
    /// written at once.
    ///
    /// Rows wait a few batches ([`ROWS_WINDOW`]) before they are written, so
    /// that a transfer's row written at its debit is usually replaced in memory
    /// by its completion's row (one row written instead of two). They go at once
    /// when a history read waits for them, when the log is idle, or when a full
    /// batch of them is pending. A store that gathers rows for a time
    /// (`Store::rows_gather`: Redis writing groups) has them written once the
    /// first of them is that old, or [`ROWS_GATHERED_BATCHES`] batches of them
    /// are pending, or a reader waits. Rows of operations still open are held
    /// back past that, within [`super::RowsHold`] (see [`rows`]).
    fn write_rows(&mut self) {
        if self.rows.writing.is_some()
            || (self.rows.pending_batch == self.rows.written_batch && !self.rows.force)
        {
            return;
        }
        let gather = self.shared.store.rows_gather();
        let due = self.rows.due_rows() == 0
            || self.rows.force
            || self.rows.has_waiters()
            || self.rows.due_rows() >= self.rows_max()
            || if gather.is_zero() {
                self.rows.pending_batch - self.rows.pending_since >= ROWS_WINDOW
                    || (self.writing.is_none() && self.sealed.is_empty() && self.open.is_empty())
            } else {
                self.rows
                    .pending_since_at
                    .is_none_or(|at| at.elapsed() >= gather)
            };
        if !due {
            return;
        }
        let taken = self
            .rows
            .take(&self.shared.config.rows_hold, Instant::now());
        let stats = &self.shared.stats;
        stats
            .rows_held
            .fetch_add(taken.newly_held, Ordering::Relaxed);
        stats
            .rows_held_written_open
            .fetch_add(taken.written_open, Ordering::Relaxed);
        let mut rows = taken.rows;
        let epochs = self.row_epochs(&mut rows);
        let (positions, write) = (taken.positions, taken.write);
        let batch = self.rows.pending_batch;
        if rows.is_empty() {
            return self.on_rows_written(RowsWritten {
                batch,
                write,
                positions,
                result: Ok(Vec::new()),
            });
        }
        let store = self.shared.store.clone();
        self.rows.writing = Some(Box::pin(async move {
            let result = store.put_history(rows, epochs).await;
            RowsWritten {
                batch,
                write,
                positions,
                result,
            }
        }));
    }

    /// The most rows due that wait for their write: a batch's worth, or
    /// [`ROWS_GATHERED_BATCHES`] batches' while the store gathers rows for a
    /// time (`Store::rows_gather`). Twice as many hold the next frames back.
    fn rows_max(&self) -> usize {
        let batch = self.shared.config.max_batch;
        if self.shared.store.rows_gather().is_zero() {
            batch
        } else {
            batch.saturating_mul(ROWS_GATHERED_BATCHES)
        }
    }

    fn on_rows_written(&mut self, written: RowsWritten) {
        self.rows.written_batch = written.batch;
        let result = match written.result {
            Ok(refused) => {
                let refused = self.rows_refused(refused);
                for (shard_id, lsn) in written.positions {
                    if refused.contains(&shard_id) {
                        continue;
                    }
                    if let Some(shard) = self.shards.get_mut(&shard_id) {
                        shard.rows_lsn = shard.rows_lsn.max(lsn);
                    }
                }
                if refused.is_empty() {
                    Ok(())
                } else {
                    // Readers waiting for those rows ask again (the new owner
                    // writes them when it replays the log).
                    Err(EngineError::Unavailable(
                        "history rows refused: the shard moved to another node".into(),
                    ))
                }
            }
            Err(err) => {
                // The frames are durable but their rows are not: recovery replays
                // the frames and writes the rows again.
                let err = EngineError::Unavailable(err.to_string());
                let mut shards: Vec<ShardId> = written.positions.iter().map(|p| p.0).collect();
                shards.sort_unstable();
                shards.dedup();
                for shard in shards {
                    tracing::warn!(%shard, error = %err, "history rows failed: recovering the shard");
                    self.fail_shard(shard, err.clone());
                }
                Err(err)
            }
        };
        self.rows.written(written.batch, written.write, &result);
    }

    /// A history read of `account` (of `shard`): answered once the rows of the
    /// account's records so far, and of its shard's recovery, are written (its
    /// rows held back too: they go with the next write).
    fn wait_rows(&mut self, shard_id: ShardId, account: AccountId, reply: Reply<()>) {
        let Some(shard) = self.shards.get(&shard_id) else {
            return drop(reply.send(Ok(())));
        };
        let last = match shard.accounts.get(&account) {
            Some(Entry::Ready(slot)) => slot.last_batch,
            // Not in memory, or being loaded from its checkpoint: every row of it
            // is written (a checkpoint never passes unwritten rows).
            Some(Entry::Loading(_)) | None => 0,
        };
        let needed = last.max(shard.hold_checkpoint_until);
        let write = self.rows.release_account(account).unwrap_or(0);
        self.rows.wait(needed, write, reply);
    }

    fn run_effect(&mut self, shard_id: ShardId, effect: Effect) {
        match effect {
            Effect::Answer(answer) => answer.send(),
            Effect::Durable {
                account,
                seq,
                notification_seq,
                marks,
            } => {
                let hub = &self.shared.hub;
                let Some(Entry::Ready(slot)) = self
                    .shards
                    .get_mut(&shard_id)
                    .and_then(|s| s.accounts.get_mut(&account))
                else {
                    return;
                };
                slot.durable_seq = slot.durable_seq.max(seq);
                slot.durable = marks;
                if notification_seq > slot.published_seq {
                    let from = slot.published_seq;
                    slot.published_seq = notification_seq;
                    let ring = &slot.state.notifications;
                    let newer = ring.iter().rev().take_while(|n| n.seq > from).count();
                    hub.publish(
                        account,
                        ring.iter()
                            .skip(ring.len() - newer)
                            .filter(|n| n.seq <= notification_seq),
                    );
                }
            }
            Effect::StartCredit {
                account,
                n,
                debit_lsn,
            } => {
                let Some(shard) = self.shards.get_mut(&shard_id) else {
                    return;
                };
                shard.debits.open(account, n, debit_lsn);
                // At most its own debit, being open (effects of one batch run
                // one by one: others it debited may not be opened yet).
                let settled_below = shard.watermark().min(debit_lsn);
                let request = self.slot_mut(shard_id, account).and_then(|slot| {
                    CreditRequest::of(&slot.state, n, 0, (debit_lsn, settled_below))
                });
                if let Some(request) = request {
                    let e = self.shared.executor_of(request.to);
                    self.route(e, Msg::Credit(request));
                }
            }
            Effect::Finished { account, n } => {
                // No watermark is published here: transfers debited in the same
                // batch may not be opened yet (see `on_written`).
                if let Some(shard) = self.shards.get_mut(&shard_id) {
                    shard.debits.settle(account, n);
                }
                if let Some(slot) = self.slot_mut(shard_id, account) {
                    finish_waiters(slot, n);
                }
            }
            Effect::Credit(answer) => {
                let e = self.shared.executor_of(answer.transfer.account);
                self.route(e, Msg::Answer(answer));
            }
        }
    }

    fn fail_effect(&mut self, effect: Effect, err: &EngineError) {
        match effect {
            Effect::Answer(answer) => answer.fail(err.clone()),
            Effect::Credit(answer) => {
                // The destination's record did not land: the source asks again.
                let e = self.shared.executor_of(answer.transfer.account);
                let retry = CreditAnswer {
                    outcome: CreditOutcome::Retry,
                    ..answer
                };
                self.route(e, Msg::Answer(retry));
            }
            // The shard is recovered: recovery publishes, re-drives and answers.
            Effect::Durable { .. } | Effect::StartCredit { .. } | Effect::Finished { .. } => {}
        }
    }

    fn route(&mut self, executor: usize, msg: Msg) {
        if executor == self.index {
            self.local.push_back(msg);
        } else {
            self.outbound[executor].push(msg);
        }
    }

    fn slot_mut(&mut self, shard: ShardId, account: AccountId) -> Option<&mut Slot> {
        match self.shards.get_mut(&shard)?.accounts.get_mut(&account)? {
            Entry::Ready(slot) => Some(slot),
            Entry::Loading(_) => None,
        }
    }

    // ---- failure and recovery ---------------------------------------------------

    /// Drops `shard` from memory and recovers it from the store: its state in
    /// memory may be ahead of what is durable.
    fn fail_shard(&mut self, shard_id: ShardId, err: EngineError) {
        let Some(shard) = self.shards.get_mut(&shard_id) else {
            return;
        };
        if matches!(shard.phase, Phase::Recovering(_)) {
            return;
        }
        shard.phase = Phase::Recovering(VecDeque::new());
        shard.generation += 1;
        // Its rows held back go now (their frames are durable); recovery writes
        // them again anyway, from the log, with what came after.
        self.rows.release_shard(shard_id);
        let mut resident = 0;
        for (_, entry) in shard.accounts.drain() {
            match entry {
                Entry::Ready(slot) => {
                    resident += 1;
                    for (_, w) in slot.waiters {
                        let _ = w.send(Err(err.clone()));
                    }
                }
                Entry::Loading(queue) => {
                    for msg in queue {
                        fail_or_retry(msg, &err, &mut self.local);
                    }
                }
            }
        }
        self.forget_undurable(shard_id, resident, &err);
        self.start_recovery(shard_id);
    }

    /// Takes back everything decided on `shard_id`'s lost in-memory state and
    /// not yet durable: its frames and history rows in the open and sealed
    /// batches (rows of frames that never land must not be written), and the
    /// effects waiting for them, which fail with `err`. `resident` accounts
    /// left memory.
    fn forget_undurable(&mut self, shard_id: ShardId, resident: usize, err: &EngineError) {
        self.shared
            .stats
            .resident
            .fetch_sub(resident, Ordering::Relaxed);
        let mut dropped = Vec::new();
        // Credits decided with a debit of this shard in a batch not yet sent
        // lose their debit: their shards go too (the batch in flight lands or
        // fails whole).
        let mut coupled = Vec::new();
        let in_flight = usize::from(self.writing.is_some());
        for batch in self.sealed.iter().skip(in_flight).chain([&self.open]) {
            for &(source, destination) in &batch.coupled {
                if source == shard_id && destination != shard_id && !coupled.contains(&destination)
                {
                    coupled.push(destination);
                }
            }
        }
        for batch in self
            .sealed
            .iter_mut()
            .chain(std::iter::once(&mut self.open))
        {
            batch.appends.retain(|a| a.shard != shard_id);
            batch.hosted.retain(|s| *s != shard_id);
            batch.frames.retain(|(s, _)| *s != shard_id);
            batch.history.retain(|r| r.shard != shard_id);
            batch.history_shards.retain(|s| *s != shard_id);
            let (mine, others): (Vec<_>, Vec<_>) =
                batch.effects.drain(..).partition(|(s, _)| *s == shard_id);
            batch.effects = others;
            dropped.extend(mine.into_iter().map(|(_, e)| e));
        }
        for effect in dropped {
            self.fail_effect(effect, err);
        }
        for destination in coupled {
            tracing::warn!(shard = %destination, source = %shard_id,
                "a shard's credits lost their debits: recovering it too");
            self.fail_shard(destination, err.clone());
        }
    }

    fn start_recovery(&mut self, shard_id: ShardId) {
        let log = self.log.clone();
        self.tasks.push(Box::pin(async move {
            let result = recovery::recover_shard(log, shard_id).await;
            Task::Recovered {
                shard: shard_id,
                result,
            }
        }));
    }

    fn on_recovered(&mut self, shard_id: ShardId, result: Result<RecoveredShard, StoreError>) {
        let recovered = match result {
            Ok(r) => r,
            Err(err) => {
                tracing::warn!(shard = %shard_id, error = %err, "shard recovery failed; retrying");
                // Clients are told now (retryable) rather than kept waiting for the
                // store to come back; saga steps wait, they must happen eventually.
                if let Some(Phase::Recovering(queue)) =
                    self.shards.get_mut(&shard_id).map(|s| &mut s.phase)
                {
                    let (clients, saga): (VecDeque<Msg>, VecDeque<Msg>) =
                        std::mem::take(queue).into_iter().partition(Msg::is_client);
                    *queue = saga;
                    let err = EngineError::Unavailable(err.to_string());
                    for msg in clients {
                        fail(msg, err.clone());
                    }
                }
                self.tasks.push(Box::pin(async move {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    Task::RecoverAgain(shard_id)
                }));
                return;
            }
        };
        let open_id = self.open.id;
        let Some(shard) = self.shards.get_mut(&shard_id) else {
            return;
        };
        let queue = match std::mem::replace(&mut shard.phase, Phase::Ready) {
            Phase::Recovering(queue) => queue,
            Phase::Ready => VecDeque::new(),
        };
        shard.next_lsn = recovered.head.head + 1;
        shard.durable_lsn = recovered.head.head;
        // Rows of the replayed frames are rewritten in the open batch, and
        // `hold_checkpoint_until` keeps checkpoints back until they are.
        shard.rows_lsn = recovered.head.head;
        shard.checkpoint_lsn = recovered.head.checkpoint;
        shard.checkpointing = false;
        for (id, r) in recovered.accounts {
            let slot = Slot::new(r.seq, r.state, r.dirty_lsn);
            shard.accounts.insert(id, Entry::Ready(slot));
        }
        // The watermarks this shard's checkpoint had forgotten credits by: a
        // request below them is a stale duplicate, here as before the restart.
        for &(source, below) in &recovered.settled {
            self.shared.watermarks.raise(source, below);
        }
        // Every transfer in flight holds the watermark before any request
        // carries one (a request's watermark must not pass a later one's debit).
        shard.debits.clear();
        for &(account, n, debit_lsn) in &recovered.debits {
            shard.debits.open(account, n, debit_lsn);
        }
        let in_flight = recovered.debits;
        let resident = shard.accounts.len();
        if !recovered.history.is_empty() {
            shard.hold_checkpoint_until = open_id;
            // Never held back: `hold_checkpoint_until` waits for them.
            self.open
                .history
                .extend(
                    recovered
                        .history
                        .into_iter()
                        .map(|(account, row)| BatchRow {
                            shard: shard_id,
                            account,
                            row,
                            open: false,
                        }),
                );
            self.open.history_shards.push(shard_id);
        }
        self.shared
            .stats
            .resident
            .fetch_add(resident, Ordering::Relaxed);
        self.shared
            .stats
            .recovered_in_flight
            .fetch_add(in_flight.len() as u64, Ordering::Relaxed);
        for (account, n, debit_lsn) in in_flight {
            self.run_effect(
                shard_id,
                Effect::StartCredit {
                    account,
                    n,
                    debit_lsn,
                },
            );
        }
        self.local.extend(queue);
        if self.all_ready() {
            for w in self.ready_waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }

    fn on_task(&mut self, task: Task) {
        match task {
            Task::Recovered { shard, result } => self.on_recovered(shard, result),
            Task::RecoverAgain(shard) => self.start_recovery(shard),
            Task::Loaded {
                shard,
                generation,
                account,
                result,
            } => self.on_loaded(shard, generation, account, result),
            Task::Checkpointed {
                shard,
                generation,
                lsn,
                written,
                bytes,
                result,
            } => self.on_checkpointed(shard, generation, lsn, written, bytes, result),
            Task::AskAgain {
                account,
                n,
                attempt,
            } => {
                let shard_id = self.shared.layout.shard_of(account);
                let Some(shard) = self.shards.get(&shard_id) else {
                    return; // dropped meanwhile: its next host drives it
                };
                // Open since its `StartCredit` (or its shard's recovery).
                let Some(debit_lsn) = shard.debits.debit_lsn(account, n) else {
                    return;
                };
                let positions = (debit_lsn, shard.watermark());
                let request = self
                    .slot_mut(shard_id, account)
                    .and_then(|slot| CreditRequest::of(&slot.state, n, attempt, positions));
                if let Some(request) = request {
                    let e = self.shared.executor_of(request.to);
                    self.route(e, Msg::Credit(request));
                }
            }
        }
    }

    fn on_loaded(
        &mut self,
        shard_id: ShardId,
        generation: u64,
        account: AccountId,
        result: Result<Option<(u64, Box<AccountState>)>, StoreError>,
    ) {
        let Some(shard) = self.shards.get_mut(&shard_id) else {
            return;
        };
        if shard.generation != generation || matches!(shard.phase, Phase::Recovering(_)) {
            return; // the shard was recovered meanwhile; its queue was handled
        }
        let Some(Entry::Loading(queue)) = shard.accounts.remove(&account) else {
            return;
        };
        match result {
            Ok(loaded) => {
                let (seq, state) =
                    loaded.map_or_else(|| (0, AccountState::new(account)), |(seq, s)| (seq, *s));
                shard
                    .accounts
                    .insert(account, Entry::Ready(Slot::new(seq, state, 0)));
                self.shared.stats.resident.fetch_add(1, Ordering::Relaxed);
                self.local.extend(queue);
            }
            Err(err) => {
                tracing::warn!(%account, error = %err, "loading an account failed");
                let err = EngineError::Unavailable(err.to_string());
                for msg in queue {
                    fail_or_retry(msg, &err, &mut self.local);
                }
            }
        }
    }

    // ---- checkpoints and memory -------------------------------------------------

    fn housekeeping(&mut self) {
        self.rounds += 1;
        // A held row goes once it is old enough, even when no batch comes.
        if self
            .rows
            .held_too_long(&self.shared.config.rows_hold, Instant::now())
        {
            self.rows.force = true;
        }
        self.progress_releases();
        let ids: Vec<ShardId> = self.shards.keys().copied().collect();
        for &id in &ids {
            self.checkpoint(id, false);
        }
        if self.last_tick.elapsed() >= self.shared.config.tick {
            self.last_tick = Instant::now();
            for &id in &ids {
                self.evict(id, false);
            }
        }
    }

    /// Checkpoints the quiet dirty accounts of `shard` when its log has grown
    /// (or has been idle a while, or `force`).
    fn checkpoint(&mut self, shard_id: ShardId, force: bool) {
        let (every, compression) = (
            self.shared.config.checkpoint_every,
            self.shared.config.compression,
        );
        let rows_batch = self.rows.written_batch;
        let Some(shard) = self.shards.get_mut(&shard_id) else {
            return;
        };
        if !matches!(shard.phase, Phase::Ready)
            || shard.checkpointing
            || rows_batch < shard.hold_checkpoint_until
            || shard.rows_lsn <= shard.checkpoint_lsn
        {
            return;
        }
        // (rounds since the last checkpoint, sealed records seen last round,
        // rounds since that count last changed)
        let (rounds, seen, quiet) = self
            .rounds_since_checkpoint
            .entry(shard_id)
            .or_insert((0, 0, 0));
        *rounds += 1;
        if *seen == shard.sealed_records {
            *quiet += 1;
        } else {
            (*seen, *quiet) = (shard.sealed_records, 0);
        }
        if !force
            && shard.sealed_records - shard.checkpoint_records < every
            && *quiet < CHECKPOINT_QUIET_ROUNDS
            && *rounds < CHECKPOINT_MAX_ROUNDS
        {
            return;
        }
        (*rounds, *quiet) = (0, 0);
        let started = Instant::now();
        let mut limit = shard.rows_lsn;
        let mut states = Vec::new();
        let mut written = Vec::new();
        let (watermarks, layout) = (&self.shared.watermarks, &self.shared.layout);
        for (id, entry) in &mut shard.accounts {
            let Entry::Ready(slot) = entry else { continue };
            if slot.dirty_lsn == 0 {
                continue;
            }
            if slot.pending() {
                // Its durable state is not the one in memory: leave it for the
                // next checkpoint, and keep the frames that changed it.
                limit = limit.min(slot.dirty_lsn - 1);
            } else {
                // Credits whose sources settled them go with this checkpoint;
                // the watermarks recorded below are at least the ones used.
                slot.state
                    .prune_settled(|from| watermarks.get(layout.shard_of(from)));
                states.push((
                    *id,
                    checkpoint::encode_account_as(slot.seq, &slot.state, compression),
                ));
                written.push((*id, slot.seq));
            }
        }
        // How long the executor stops deciding to encode a shard's states.
        metrics::histogram!("okpay_checkpoint_encode_seconds")
            .record(started.elapsed().as_secs_f64());
        if limit <= shard.checkpoint_lsn {
            return;
        }
        shard.checkpoint_records = shard.sealed_records;
        states.push((
            checkpoint::SHARD_ENTRY,
            checkpoint::encode_shard(&shard.debits.all(), &watermarks.known()),
        ));
        shard.checkpointing = true;
        let bytes: usize = states.iter().map(|(_, state)| state.len()).sum();
        let (log, generation) = (self.log.clone(), shard.generation);
        self.tasks.push(Box::pin(async move {
            let result = log.checkpoint(shard_id, limit, states).await;
            Task::Checkpointed {
                shard: shard_id,
                generation,
                lsn: limit,
                written,
                bytes,
                result,
            }
        }));
    }

    fn on_checkpointed(
        &mut self,
        shard_id: ShardId,
        generation: u64,
        lsn: u64,
        written: Vec<(AccountId, u64)>,
        bytes: usize,
        result: Result<(), StoreError>,
    ) {
        let Some(shard) = self.shards.get_mut(&shard_id) else {
            return;
        };
        if shard.generation != generation {
            return;
        }
        shard.checkpointing = false;
        if let Err(err) = result {
            tracing::warn!(shard = %shard_id, error = %err, "checkpoint failed; will retry");
            shard.checkpoint_records = 0;
            return;
        }
        self.shared
            .stats
            .checkpoints
            .fetch_add(1, Ordering::Relaxed);
        self.shared
            .stats
            .checkpoint_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        shard.checkpoint_lsn = shard.checkpoint_lsn.max(lsn);
        for (id, seq) in written {
            if let Some(Entry::Ready(slot)) = shard.accounts.get_mut(&id) {
                // Changed since it was encoded: its next change is in a frame after
                // this checkpoint, which is all recovery needs to know.
                slot.dirty_lsn = if slot.seq == seq { 0 } else { lsn + 1 };
            }
        }
    }

    /// Compacts resident states and lets idle, fully checkpointed accounts leave
    /// memory (`all`: whatever their idle time).
    fn evict(&mut self, shard_id: ShardId, all: bool) {
        let now = self.shared.clock.now();
        let idle_rounds =
            (self.shared.config.idle_after.as_millis() / HOUSEKEEPING.as_millis().max(1)) as u64;
        let rounds = self.rounds;
        let policy = &self.shared.policy;
        let (watermarks, layout) = (&self.shared.watermarks, &self.shared.layout);
        let Some(shard) = self.shards.get_mut(&shard_id) else {
            return;
        };
        if !matches!(shard.phase, Phase::Ready) {
            return;
        }
        let before = shard.accounts.len();
        shard.accounts.retain(|_, entry| {
            let Entry::Ready(slot) = entry else {
                return true;
            };
            if !slot.pending() {
                // Neither changes a decision, so neither makes the account dirty:
                // its checkpoint forgets alike whenever it is next written (an
                // idle account keeps at most what was unsettled at its last one).
                slot.state.compact(now, policy);
                slot.state
                    .prune_settled(|from| watermarks.get(layout.shard_of(from)));
            }
            let idle = all || rounds.saturating_sub(slot.last_used) >= idle_rounds;
            !idle
                || slot.pending()
                || slot.dirty_lsn != 0
                || !slot.waiters.is_empty()
                || slot.has_open_transfers()
        });
        let gone = before - shard.accounts.len();
        self.shared
            .stats
            .resident
            .fetch_sub(gone, Ordering::Relaxed);
    }
}

/// Answers a message that can't be served with `err`; a saga credit is answered
/// "ask again" instead, so the source keeps the transfer going.
fn fail_or_retry(msg: Msg, err: &EngineError, local: &mut VecDeque<Msg>) {
    match msg {
        Msg::Credit(req) => {
            // Routed back through the local queue: the loop sends it on.
            local.push_back(Msg::Answer(req.answer(CreditOutcome::Retry)));
        }
        other => fail(other, err.clone()),
    }
}

/// Answers a message with `err` (saga answers are dropped: the source's
/// recovery asks again).
fn fail(msg: Msg, err: EngineError) {
    match msg {
        Msg::Execute { reply, .. } => drop(reply.send(Err(err))),
        Msg::Read { reply, .. } | Msg::ReadNow { reply, .. } => drop(reply.send(Err(err))),
        Msg::Subscribe { reply, .. } => drop(reply.send(Err(err))),
        Msg::Rows { reply, .. } => drop(reply.send(Err(err))),
        Msg::Audit { reply, .. } => drop(reply.send(Err(err))),
        Msg::Release { reply, .. } => drop(reply.send(false)),
        Msg::Bundle(msgs) => {
            for msg in msgs {
                fail(msg, err.clone());
            }
        }
        Msg::Credit(_)
        | Msg::Answer(_)
        | Msg::Passivate
        | Msg::Ready { .. }
        | Msg::Host { .. }
        | Msg::Unhost { .. } => {}
    }
}

/// Counts a transfer settled by `cmd`, its completion or its reversal.
fn count_settled(cmd: &Command) {
    match cmd {
        Command::ReverseTransfer { reason, .. } => {
            metrics::counter!("okpay_transfers_total", "outcome" => "reversed", "code" => reason.code()).increment(1);
        }
        _ => metrics::counter!("okpay_transfers_total", "outcome" => "completed", "code" => "")
            .increment(1),
    }
}

/// Answers the clients waiting for transfer `n` of `slot`, now final.
fn finish_waiters(slot: &mut Slot, n: u64) {
    if slot.waiters.is_empty() {
        return;
    }
    let Some(result) = protocol::transfer_reply(&slot.state, n) else {
        return;
    };
    answer_waiters(slot, n, result.map_err(EngineError::Rejected));
}

/// Sends `result` to every client waiting for transfer `n` of `slot`.
fn answer_waiters(slot: &mut Slot, n: u64, result: Result<Outcome, EngineError>) {
    // In place: splitting the list into two new ones cost two allocations per
    // transfer.
    for (_, w) in slot.waiters.extract_if(.., |(m, _)| *m == n) {
        let _ = w.send(result.clone());
    }
}

/// Whether `events` (applied to `state`) start an operation that is still open
/// after them: a transfer debited and in flight, a withdrawal processing. A
/// later record writes its row's final version, so the row may be held back.
fn opens_operation(state: &AccountState, events: &[crate::domain::Event]) -> bool {
    use crate::domain::event::EventBody;
    use crate::domain::state::{OpRecord, WithdrawalStatus};
    events.iter().any(|e| match e.body {
        EventBody::TransferDebited { op, .. } => saga::in_flight(state, op),
        EventBody::WithdrawalRequested { op, .. } => matches!(
            state.ops.get(&op),
            Some(OpRecord::Withdrawal {
                status: WithdrawalStatus::Processing,
                ..
            })
        ),
        _ => false,
    })
}

/// The [`Ctx`] of an executor for a slot of `shard` (a macro, not a method:
/// the slot stays borrowed from the executor's shards meanwhile).
macro_rules! ctx {
    ($ex:ident, $shard:expr, $next_lsn:expr, $early:expr) => {
        Ctx {
            shared: &$ex.shared,
            open: &mut $ex.open,
            sealed: &mut $ex.sealed,
            durable_batch: $ex.durable_batch,
            local: &mut $ex.local,
            outbound: &mut $ex.outbound,
            tasks: &mut $ex.tasks,
            index: $ex.index,
            shard: $shard,
            next_lsn: $next_lsn,
            early: $early,
        }
    };
}
use ctx;

/// What running one message on one account needs of the executor (split out so
/// the account's slot and the executor's batches can be borrowed together).
struct Ctx<'a> {
    shared: &'a Shared,
    open: &'a mut Batch,
    sealed: &'a mut VecDeque<Batch>,
    durable_batch: u64,
    local: &'a mut VecDeque<Msg>,
    outbound: &'a mut Vec<Vec<Msg>>,
    tasks: &'a mut FuturesUnordered<TaskFuture>,
    index: usize,
    shard: ShardId,
    /// The lsn the open batch's frame of this shard will get.
    next_lsn: u64,
    /// Where transfers debited now go to be credited and settled at once
    /// ([`Executor::settle_early`]); `None` when they are not.
    early: Option<&'a mut Vec<EarlyDebit>>,
}

impl Ctx<'_> {
    fn run(&mut self, slot: &mut Slot, msg: Msg) {
        match msg {
            // Saga steps come only from the saga's own messages (`Msg::Credit`,
            // `Msg::Answer`), never from a caller: see `Command::is_saga_step`.
            Msg::Execute { cmd, reply, .. } if cmd.is_saga_step() => {
                let refused = Err(EngineError::Rejected(Rejection::UnknownOperation));
                self.answer(slot, Answer::Outcome(reply, refused));
            }
            Msg::Execute { cmd, reply, .. } => self.execute(slot, &cmd, Some(reply)),
            Msg::Read { f, reply, .. } => {
                let out = f(&slot.state, &self.shared.policy, self.shared.clock.now());
                self.answer(slot, Answer::Any(reply, out));
            }
            Msg::ReadNow { f, reply, .. } => {
                let now = self.shared.clock.now();
                let (out, at_once) = f(&slot.state, &self.shared.policy, now, slot.durable);
                if at_once {
                    let _ = reply.send(Ok(out));
                } else {
                    self.answer(slot, Answer::Any(reply, out));
                }
            }
            Msg::Subscribe {
                account,
                after,
                reply,
            } => {
                let receiver = self.shared.hub.subscribe(account);
                let published = slot.published_seq;
                let after = after.unwrap_or(published);
                let backlog: Vec<Notification> = slot
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
            Msg::Credit(request) => {
                self.credit(slot, &request, false);
            }
            Msg::Answer(answer) => self.on_answer(slot, answer),
            Msg::Audit { .. }
            | Msg::Bundle(_)
            | Msg::Passivate
            | Msg::Ready { .. }
            | Msg::Rows { .. }
            | Msg::Host { .. }
            | Msg::Unhost { .. }
            | Msg::Release { .. } => {
                unreachable!("not an account message")
            }
        }
    }

    /// Runs `cmd` on the account; `reply` is `None` for the saga's own steps.
    fn execute(&mut self, slot: &mut Slot, cmd: &Command, reply: Option<Reply<Outcome>>) {
        let now = self.shared.clock.now();
        let decision = protocol::handle(&self.shared.policy, &mut slot.state, cmd, now);
        if let DomainReply::Rejected(rejection) = decision.reply {
            if reply.is_none() {
                tracing::error!(account = %slot.state.id, ?cmd, ?rejection, "saga step refused");
            }
            if matches!(cmd, Command::Transfer { .. }) {
                metrics::counter!("okpay_transfers_total", "outcome" => "rejected", "code" => rejection.code()).increment(1);
            }
        }
        if let (Some(SagaStep::Debited(n)), Some(early)) =
            (decision.saga, self.early.as_deref_mut())
        {
            // Only for a destination on this executor: asked before the
            // request (and its memo) is built.
            let here = matches!(slot.state.ops.get(&n),
                Some(crate::domain::state::OpRecord::Transfer { to, .. })
                    if self.shared.executor_of(*to) == self.index);
            // No watermark: the destination raises it from the requests sent
            // once debits are durable.
            let request = here
                .then(|| CreditRequest::of(&slot.state, n, 0, (self.next_lsn, 0)))
                .flatten();
            if let Some(request) = request {
                early.push(EarlyDebit {
                    request,
                    events: decision.events,
                    reply,
                });
                return;
            }
        }
        if !decision.events.is_empty() {
            self.record(slot, &decision.events);
        }
        match (decision.reply, decision.saga) {
            (DomainReply::Transfer(n), saga) => {
                if let Some(SagaStep::Debited(n)) = saga {
                    self.start_credit(slot, n);
                }
                self.transfer_reply(slot, n, reply);
            }
            (DomainReply::Rejected(rejection), _) => {
                if let Some(r) = reply {
                    self.answer(
                        slot,
                        Answer::Outcome(r, Err(EngineError::Rejected(rejection))),
                    );
                }
            }
            (DomainReply::Outcome(outcome), saga) => {
                if let Some(SagaStep::Finished(n)) = saga {
                    self.effect(
                        slot,
                        Effect::Finished {
                            account: slot.state.id,
                            n,
                        },
                    );
                }
                if let Some(r) = reply {
                    self.answer(slot, Answer::Outcome(r, Ok(outcome)));
                }
            }
        }
    }

    /// Asks transfer `n`'s credit once its debit, just recorded, is durable.
    fn start_credit(&mut self, slot: &Slot, n: u64) {
        let (account, debit_lsn) = (slot.state.id, self.next_lsn);
        self.effect(
            slot,
            Effect::StartCredit {
                account,
                n,
                debit_lsn,
            },
        );
    }

    /// Answers `reply` about transfer `n` once it is final and durable.
    fn transfer_reply(&mut self, slot: &mut Slot, n: u64, reply: Option<Reply<Outcome>>) {
        if let Some(r) = reply {
            match protocol::transfer_reply(&slot.state, n) {
                None => slot.waiters.push((n, r)),
                Some(result) => self.answer(
                    slot,
                    Answer::Outcome(r, result.map_err(EngineError::Rejected)),
                ),
            }
        }
    }

    /// Records a transfer debited with its credit decided at once
    /// ([`Executor::settle_early`]): the debit and its completion, or its
    /// reversal when the destination refused, as one record; the debit alone
    /// when the credit was not decided (`None`), its credit asked once durable.
    fn settle(&mut self, slot: &mut Slot, debit: EarlyDebit, outcome: Option<CreditOutcome>) {
        let EarlyDebit {
            request,
            mut events,
            reply,
        } = debit;
        let n = request.transfer.n;
        let step = match outcome {
            Some(outcome @ (CreditOutcome::Credited | CreditOutcome::Refused(_))) => {
                saga::next_step(request.transfer, outcome, 0)
            }
            Some(CreditOutcome::Retry) | None => {
                self.record(slot, &events);
                self.start_credit(slot, n);
                return self.transfer_reply(slot, n, reply);
            }
        };
        let (SourceStep::Complete(cmd) | SourceStep::Reverse(cmd)) = step else {
            unreachable!("a credit decided now is credited or refused");
        };
        count_settled(&cmd);
        let now = self.shared.clock.now();
        let decision = protocol::handle(&self.shared.policy, &mut slot.state, &cmd, now);
        if let DomainReply::Rejected(rejection) = decision.reply {
            tracing::error!(account = %slot.state.id, ?cmd, ?rejection, "saga step refused");
        }
        events.extend(decision.events);
        self.record(slot, &events);
        self.transfer_reply(slot, n, reply);
    }

    /// Appends the record of `events` (already applied) to the open batch.
    fn record(&mut self, slot: &mut Slot, events: &[crate::domain::Event]) {
        let account = slot.state.id;
        slot.seq += 1;
        let seq = slot.seq;
        let (kind, payload) =
            crate::codec::events::encode_record(events, self.shared.config.events_format);
        self.open.push(
            self.shard,
            LogRecord {
                kind,
                account,
                seq,
                payload,
            },
        );
        let shard = self.shard;
        let open = opens_operation(&slot.state, events);
        // With several nodes, a node that lost its shard can't write rows late
        // (row writes are fenced by its lease epoch), so a row replaces only
        // when it says so, as on one node.
        self.open
            .history
            .extend(
                history_rows(&slot.state, events)
                    .into_iter()
                    .map(|row| BatchRow {
                        shard,
                        account,
                        open: open && !row.replaces,
                        row,
                    }),
            );
        slot.last_batch = self.open.id;
        if slot.dirty_lsn == 0 {
            slot.dirty_lsn = self.next_lsn;
        }
        self.open.effects.push((
            self.shard,
            Effect::Durable {
                account,
                seq,
                notification_seq: slot.state.notification_seq,
                marks: Durable::of(&slot.state),
            },
        ));
    }

    /// Runs `effect` once everything applied so far to the account is durable.
    fn effect(&mut self, slot: &Slot, effect: Effect) {
        if slot.last_batch <= self.durable_batch {
            return self.run_now(effect);
        }
        let batch = if slot.last_batch == self.open.id {
            &mut *self.open
        } else {
            match self.sealed.iter_mut().find(|b| b.id == slot.last_batch) {
                Some(b) => b,
                None => return self.run_now(effect),
            }
        };
        batch.effects.push((self.shard, effect));
    }

    /// An effect whose records are durable already.
    fn run_now(&mut self, effect: Effect) {
        match effect {
            Effect::Answer(answer) => answer.send(),
            Effect::Credit(answer) => {
                let e = self.shared.executor_of(answer.transfer.account);
                self.route(e, Msg::Answer(answer));
            }
            // Only ever attached to the batch of a fresh record.
            Effect::Durable { .. } | Effect::StartCredit { .. } | Effect::Finished { .. } => {
                debug_assert!(false, "a record's effect outside its batch");
            }
        }
    }

    fn answer(&mut self, slot: &Slot, answer: Answer) {
        self.effect(slot, Effect::Answer(answer));
    }

    fn route(&mut self, executor: usize, msg: Msg) {
        if executor == self.index {
            self.local.push_back(msg);
        } else {
            self.outbound[executor].push(msg);
        }
    }

    /// Saga, at the destination.
    /// `early`: decided in its debit's own open batch ([`Executor::credit_early`]).
    /// Returns the decision, `None` for a stale duplicate (dropped).
    fn credit(
        &mut self,
        slot: &mut Slot,
        request: &CreditRequest,
        early: bool,
    ) -> Option<CreditOutcome> {
        let source = self.shared.layout.shard_of(request.transfer.account);
        let watermarks = &self.shared.watermarks;
        watermarks.raise(source, request.settled_below);
        // Checked when it runs, not when it arrived: the state it would run on
        // forgot credits by a watermark no higher than the one read here.
        if request.debit_lsn < watermarks.get(source) {
            // Its source settled it: a stale duplicate (an inbox entry replayed
            // after a hand-over, a retry overtaken by its answer). Nobody waits
            // for an answer, and the decision may be forgotten: drop it.
            metrics::counter!("okpay_saga_stale_credits_total").increment(1);
            return None;
        }
        let now = self.shared.clock.now();
        let cmd = request.command();
        let decision = protocol::handle(&self.shared.policy, &mut slot.state, &cmd, now);
        let outcome = saga::credit_outcome(&decision);
        if !decision.events.is_empty() {
            self.record(slot, &decision.events);
        }
        if !early {
            // Answered once the credit (or an earlier identical one) is durable.
            self.effect(slot, Effect::Credit(request.answer(outcome)));
        }
        // Early, the source records its settlement beside it in this batch.
        Some(outcome)
    }

    /// Saga, at the source.
    fn on_answer(&mut self, slot: &mut Slot, answer: CreditAnswer) {
        let n = answer.transfer.n;
        if !saga::in_flight(&slot.state, n) {
            return; // already completed or reversed: a duplicate answer
        }
        match saga::next_step(answer.transfer, answer.outcome, answer.attempt) {
            SourceStep::Complete(cmd) => {
                count_settled(&cmd);
                // Both sides are durable: the outcome is final, so the clients are
                // answered now; after a crash the re-drive finds the credit
                // deduplicated and completes.
                let done = protocol::completed_transfer(&slot.state, n)
                    .ok_or_else(|| EngineError::Unavailable("transfer record not retained".into()));
                answer_waiters(slot, n, done);
                self.execute(slot, &cmd, None);
            }
            SourceStep::Reverse(cmd) => {
                count_settled(&cmd);
                self.execute(slot, &cmd, None);
            }
            SourceStep::AskAgain(delay) => {
                let (account, attempt) = (slot.state.id, answer.attempt + 1);
                self.tasks.push(Box::pin(async move {
                    tokio::time::sleep(delay).await;
                    Task::AskAgain {
                        account,
                        n,
                        attempt,
                    }
                }));
            }
        }
    }
}
