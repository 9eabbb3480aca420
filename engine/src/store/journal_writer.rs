//! Group commit: one writer batches the journal appends of every actor into one
//! store call (one Redis pipeline, one fsync'd transaction), so actors never wait on
//! storage one by one and throughput comes from batching, not from skipping
//! durability.
//!
//! The queue in front of the writer is bounded: when it is full `submit` fails at
//! once with [`WriterFull`] and the actor answers `Overloaded` (503), rather than
//! queueing without bound. One batch is in flight at a time; while it is being
//! written the next one accumulates. That keeps each account's records in order
//! across batches, which the store's sequence check relies on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::{AppendResult, JournalAppend, Store, StoreError};

/// The writer's queue is full; retry later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("journal queue full")]
pub struct WriterFull;

struct Pending {
    record: JournalAppend,
    done: oneshot::Sender<AppendResult>,
}

/// Counters of the writer, readable at any time (for `/metrics` and benches).
#[derive(Debug, Default)]
pub struct WriterStats {
    pub batches: AtomicU64,
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub max_batch: AtomicU64,
    pub failed_batches: AtomicU64,
}

impl WriterStats {
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

/// A handle to the journal writer. Cloning is cheap.
#[derive(Clone)]
pub struct JournalWriter {
    tx: mpsc::Sender<Pending>,
    stats: Arc<WriterStats>,
}

impl JournalWriter {
    /// Starts the writer on its own thread (a current-thread tokio runtime), so it
    /// keeps flushing whatever runtime the callers live on.
    pub fn start(store: Arc<dyn Store>, queue_capacity: usize, max_batch: usize) -> Self {
        let (tx, rx) = mpsc::channel(queue_capacity.max(1));
        let stats = Arc::new(WriterStats::default());
        let thread_stats = stats.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            // unwrap: building a current-thread runtime only fails if the OS refuses
            // timers/IO drivers, and the engine cannot run at all then.
            .unwrap();
        std::thread::Builder::new()
            .name("okpay-journal".into())
            .spawn(move || runtime.block_on(run(store, rx, max_batch.max(1), thread_stats)))
            // unwrap: failing to spawn the writer thread at start-up is fatal.
            .unwrap();
        JournalWriter { tx, stats }
    }

    /// Queues one record. The receiver resolves when its batch is durable (or failed).
    pub fn submit(
        &self,
        record: JournalAppend,
    ) -> Result<oneshot::Receiver<AppendResult>, WriterFull> {
        let (done, rx) = oneshot::channel();
        self.tx
            .try_send(Pending { record, done })
            .map_err(|_| WriterFull)?;
        Ok(rx)
    }

    pub fn stats(&self) -> &Arc<WriterStats> {
        &self.stats
    }

    /// Records waiting in the queue right now.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

async fn run(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<Pending>,
    max_batch: usize,
    stats: Arc<WriterStats>,
) {
    let mut records = Vec::with_capacity(max_batch);
    let mut waiters = Vec::with_capacity(max_batch);
    while let Some(first) = rx.recv().await {
        records.push(first.record);
        waiters.push(first.done);
        while records.len() < max_batch {
            match rx.try_recv() {
                Ok(p) => {
                    records.push(p.record);
                    waiters.push(p.done);
                }
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let bytes: usize = records.iter().map(|r| r.payload.len()).sum();
        let outcome = store.append(&records).await;
        let n = records.len() as u64;
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.records.fetch_add(n, Ordering::Relaxed);
        stats.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        stats.max_batch.fetch_max(n, Ordering::Relaxed);
        metrics::histogram!("okpay_journal_batch_size").record(n as f64);
        metrics::histogram!("okpay_journal_flush_seconds").record(started.elapsed().as_secs_f64());
        match outcome {
            Ok(results) if results.len() == waiters.len() => {
                for (done, result) in waiters.drain(..).zip(results) {
                    let _ = done.send(result);
                }
            }
            Ok(_) => {
                stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                let err = StoreError::Corrupt("store returned a wrong number of results".into());
                for done in waiters.drain(..) {
                    let _ = done.send(Err(err.clone()));
                }
            }
            Err(err) => {
                stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %err, records = n, "journal batch failed");
                for done in waiters.drain(..) {
                    let _ = done.send(Err(err.clone()));
                }
            }
        }
        records.clear();
    }
}
