//! The shell around the pure core: per-core executors that host the shards and
//! their account actors, the transfer saga between them, recovery from a shard's
//! checkpoint and log, and the notification hub.
//!
//! - [`executor`]: one thread per core (an actix system) hosting the shards
//!   `s` with `s % executors == index`. Each account is an actor in the sense of
//!   the design: its own state and its own FIFO, one command at a time, in
//!   arrival order; but it costs no task, mailbox or allocation of its own.
//!   Commands arrive in batches over one bounded channel per executor, are
//!   decided and applied at once, and their records join the open batch; a batch
//!   is one frame per touched shard, written in one store call, and its replies
//!   and notifications are released when it is durable.
//! - [`saga`]: the transfer state machine and the messages it sends between
//!   executors.
//! - [`recovery`]: loading a shard (checkpoint, then the log after it) and single
//!   accounts, off the executor's thread of control.

pub(crate) mod executor;
pub mod hub;
pub mod migrate;
pub mod recovery;
pub mod relay;
pub use recovery::rebuild;
pub(crate) mod saga;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::codec::ShardLayout;
use crate::domain::Rejection;
use crate::policy::Policy;
use crate::store::shard_log::ShardLog;
use crate::store::Store;
use crate::time::Clock;

/// Why the engine could not answer with a business outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum EngineError {
    /// The business rules refused the command (maps to the API's 4xx codes).
    #[error("rejected: {}", .0.code())]
    Rejected(Rejection),
    /// A bound was hit (an executor's inbox, an account's queue); nothing
    /// happened. Retry shortly.
    #[error("overloaded: retry shortly")]
    Overloaded,
    /// Storage failed; the command was not acknowledged. Retry with the same
    /// idempotency key: the outcome is then reported exactly once.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

impl EngineError {
    /// Whether retrying the same request later may succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, EngineError::Rejected(_))
    }
}

/// Tuning of the runtime.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Executor threads; shards are spread over them (`shard % executors`).
    pub executors: usize,
    /// Shards of a new deployment (an existing one keeps its stored number).
    pub shards: u16,
    /// Commands that may wait in one executor's inbox before callers get
    /// `Overloaded`.
    pub inbox_capacity: usize,
    /// Commands that may wait for one account (while it loads, or while its
    /// shard recovers) before callers get `Overloaded`.
    pub mailbox_capacity: usize,
    /// The most records in one batch; past it the executor stops taking commands
    /// until the batch in flight is durable.
    pub max_batch: usize,
    /// An account idle this long (and fully checkpointed) leaves memory.
    pub idle_after: Duration,
    /// How often states are compacted and idle accounts leave memory.
    pub tick: Duration,
    /// A shard is checkpointed once this many records follow its checkpoint (or
    /// when it goes quiet). Each checkpoint re-encodes the shard's dirty accounts,
    /// so rarer is cheaper; recovery replays at most this many records a shard.
    /// The default, 32,768, bounds a restart's replay to ~2.1 million records
    /// over 64 shards: ready in 2.6 s (Redis) and 3.0 s (embedded) on the
    /// reference machine, against the 5 s target. At 16,384 checkpoints took
    /// 29% of the executors' time in the durable bench.
    pub checkpoint_every: u64,
    /// Threads each executor may run blocking store work on (the embedded store's
    /// fsyncs and redb transactions). Few, so the same threads — and their
    /// allocator heaps — serve every batch: with tokio's default (512) the work
    /// spread over dozens of threads, each faulting in fresh memory, and the
    /// embedded store ran at 11,000–14,000 transfers/s instead of 17,000–34,000
    /// (`transfers` example, 50,000 transfers, same machine, alternated).
    pub blocking_threads: usize,
    /// Several nodes on one Redis (`--node-id`): this engine hosts only the
    /// shards it holds a lease for. `None`: one node, every shard local.
    pub cluster: Option<crate::cluster::ClusterConfig>,
    /// How long the history row of an open operation may wait for its final
    /// version before it is written anyway.
    pub rows_hold: RowsHold,
    /// Credit a transfer between two shards of one executor in its debit's own
    /// batch, when the log writes a batch whole or not at all
    /// ([`crate::store::shard_log::ShardLog::atomic_append`]), and record the
    /// source's debit and completion (or reversal) as one record beside it:
    /// the transfer is settled in one batch and two records instead of two
    /// batches and three. Off: the credit waits for its debit to be durable,
    /// as between executors.
    pub early_credits: bool,
    /// The events format this node writes into log records (it reads both):
    /// format 2 by default; format 1 while older nodes that read only it share
    /// the store (a rolling upgrade), see [`crate::codec::events`].
    pub events_format: crate::codec::events::EventsFormat,
    /// How this node compresses log frames and checkpointed states (it reads
    /// both): zstd by default; LZ4 while older nodes that read only it share
    /// the store (a rolling upgrade), see [`crate::codec::compress`].
    pub compression: crate::codec::Compression,
}

/// Bounds on holding back the history row of an operation still open (a
/// transfer debited and not yet completed or reversed, a withdrawal
/// processing) so that its final version is usually the only one written. A
/// row is held only while all three allow; a history read of the account lets
/// its rows go at once. Held rows keep their shard's checkpoints below their
/// frames, so a crash loses none (recovery writes them from the log).
#[derive(Clone, Debug)]
pub struct RowsHold {
    /// Batches of its executor since the row's own batch was durable. A local
    /// transfer completes 2-4 batches after its debit; 24 is four rows windows.
    pub batches: u64,
    /// Time since the row's batch was durable, checked every housekeeping
    /// round (100 ms): what a reader of the store itself, or an executor gone
    /// idle, waits at most. A credit on another executor or node takes
    /// milliseconds, a withdrawal's settlement may take days. In the durable
    /// bench (Redis, 4,096 callers) a batch of ~1,300 records takes 20-30 ms:
    /// 24 batches are ~0.6 s, and 1 s leaves room for a loaded machine's stalls.
    pub max_age: Duration,
    /// Rows held per executor; past it the oldest go. Bounds the memory and
    /// how far checkpoints may fall behind with many transfers open.
    pub max_rows: usize,
}

impl Default for RowsHold {
    fn default() -> Self {
        RowsHold {
            batches: 24,
            max_age: Duration::from_secs(1),
            max_rows: 16_384,
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            executors: std::thread::available_parallelism().map_or(2, |n| n.get()),
            shards: crate::codec::DEFAULT_SHARDS,
            inbox_capacity: 65_536,
            mailbox_capacity: 1024,
            max_batch: 8192,
            idle_after: Duration::from_secs(60),
            tick: Duration::from_secs(10),
            checkpoint_every: 32_768,
            blocking_threads: 2,
            cluster: None,
            rows_hold: RowsHold::default(),
            early_credits: true,
            events_format: crate::codec::events::EventsFormat::default(),
            compression: crate::codec::Compression::default(),
        }
    }
}

/// Counters of the runtime, readable at any time (for `/metrics` and benches).
#[derive(Debug, Default)]
pub struct RuntimeStats {
    /// Batches written (one store call each, one frame per touched shard).
    pub batches: AtomicU64,
    /// Records in those batches.
    pub records: AtomicU64,
    /// Bytes of the frames written.
    pub bytes: AtomicU64,
    /// The most records in one batch so far.
    pub max_batch: AtomicU64,
    /// Batches whose write failed (their shards were recovered).
    pub failed_batches: AtomicU64,
    /// Records decided and not yet durable, over all executors.
    pub queued: AtomicUsize,
    /// Accounts held in memory, over all executors.
    pub resident: AtomicUsize,
    /// Checkpoints written.
    pub checkpoints: AtomicU64,
    /// Bytes of the account states those checkpoints wrote.
    pub checkpoint_bytes: AtomicU64,
    /// History rows replaced in memory by a later row of the same operation
    /// before they were written (a transfer's debit row by its completion's).
    pub rows_superseded: AtomicU64,
    /// History rows of open operations held back when their window closed
    /// (each counted once).
    pub rows_held: AtomicU64,
    /// Held rows written while their operation was still open: a bound (age,
    /// batches, count) or a history read let them go.
    pub rows_held_written_open: AtomicU64,
    /// Transfers found in flight when shards were recovered (driven on since).
    pub recovered_in_flight: AtomicU64,
}

impl RuntimeStats {
    /// Mean records per batch so far.
    pub fn mean_batch(&self) -> f64 {
        let b = self.batches.load(Ordering::Relaxed);
        if b == 0 {
            0.0
        } else {
            self.records.load(Ordering::Relaxed) as f64 / b as f64
        }
    }
}

/// What every executor and the facade share (never the executors' inboxes:
/// executors stop when the last [`Engine`](crate::Engine) handle is dropped).
pub(crate) struct Shared {
    pub policy: Policy,
    pub store: Arc<dyn Store>,
    pub log: Arc<dyn ShardLog>,
    pub layout: ShardLayout,
    pub hub: hub::Hub,
    pub clock: Arc<dyn Clock>,
    pub config: RuntimeConfig,
    pub stats: Arc<RuntimeStats>,
    /// Cluster mode: this node's leases (the log is fenced by them).
    pub leases: Option<Arc<crate::cluster::Leases>>,
    /// Cluster mode: requests and saga messages for shards served elsewhere.
    pub remote: Option<Arc<crate::cluster::remote::Remote>>,
    /// The highest watermark known per source shard (see `saga`).
    pub watermarks: saga::Watermarks,
}

impl Shared {
    /// The executor hosting `account`.
    pub fn executor_of(&self, account: crate::ids::AccountId) -> usize {
        self.executor_of_shard(self.layout.shard_of(account))
    }

    pub fn executor_of_shard(&self, shard: crate::codec::ShardId) -> usize {
        usize::from(shard.0) % self.config.executors.max(1)
    }
}
