//! The actor shell around the pure core: one actix actor per account, a directory
//! that activates them on demand, the notification hub, and the shared context
//! they all reach through.

pub(crate) mod actor;
pub use actor::rebuild;
pub(crate) mod directory;
pub mod hub;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use crate::domain::Rejection;
use crate::policy::Policy;
use crate::store::journal_writer::JournalWriter;
use crate::store::Store;
use crate::time::Clock;

/// Why the engine could not answer with a business outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The business rules refused the command (maps to the API's 4xx codes).
    #[error("rejected: {}", .0.code())]
    Rejected(Rejection),
    /// A bound was hit (mailbox, journal queue); nothing happened. Retry shortly.
    #[error("overloaded: retry shortly")]
    Overloaded,
    /// Storage failed; the command was not acknowledged. Retry with the same
    /// idempotency key: the outcome is then reported exactly once.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Internal: the actor was passivating; the engine retries on a fresh one.
    #[error("account actor moved")]
    Moved,
}

impl EngineError {
    /// Whether retrying the same request later may succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, EngineError::Rejected(_))
    }
}

/// Tuning of the actor runtime.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Arbiters (threads) that host actors; accounts are spread over them by id.
    pub arbiters: usize,
    /// Messages that may wait in one account's mailbox before callers get
    /// `Overloaded`.
    pub mailbox_capacity: usize,
    /// Records that may wait for one arbiter's journal writer before `Overloaded`.
    pub journal_queue: usize,
    /// The most records in one group commit.
    pub max_batch: usize,
    /// An actor idle this long is passivated (snapshot, then stop).
    pub idle_after: Duration,
    /// How often an actor checks whether it is idle (and compacts its state).
    pub tick: Duration,
    /// A snapshot is written after this many journal records.
    pub snapshot_every: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            arbiters: std::thread::available_parallelism().map_or(2, |n| n.get()),
            mailbox_capacity: 1024,
            journal_queue: 65_536,
            max_batch: 4096,
            idle_after: Duration::from_secs(60),
            tick: Duration::from_secs(10),
            snapshot_every: 256,
        }
    }
}

/// What every actor and the facade share.
pub(crate) struct Shared {
    pub policy: Policy,
    pub store: Arc<dyn Store>,
    pub writer: JournalWriter,
    pub hub: hub::Hub,
    pub clock: Arc<dyn Clock>,
    pub directory: directory::Directory,
    pub config: RuntimeConfig,
    /// Live actors, for metrics and the memory benchmark.
    pub active: AtomicUsize,
}
