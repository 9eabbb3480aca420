//! Group commit: appends are batched so that actors never wait on storage one by
//! one and throughput comes from batching, not from skipping durability.
//!
//! Each arbiter thread (which hosts a share of the account actors) has its own
//! writer task. An actor's `submit` only pushes the record onto its thread's
//! buffer; the writer task runs after the actors that are ready on that thread have
//! had their turn, and hands the whole buffer to the store as one batch (one Redis
//! pipeline, one fsync'd redb transaction). While a batch is being written the next
//! one accumulates. Keeping the writer on the actors' own thread costs no thread
//! hop per record, and since an account lives on one arbiter and each arbiter has
//! one batch in flight, each account's records reach the store in order — which the
//! store's sequence check relies on. Several arbiters keep several batches in
//! flight, which Redis folds into one fsync per event-loop turn anyway.
//!
//! The buffer is bounded: when it is full `submit` fails at once with
//! [`WriterFull`] and the actor answers `Overloaded` (503) instead of queueing
//! without bound.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use super::{AppendResult, JournalAppend, Store, StoreError};

/// The writer's buffer is full; retry later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("journal queue full")]
pub struct WriterFull;

struct Pending {
    record: JournalAppend,
    done: oneshot::Sender<AppendResult>,
}

/// Counters of the writers, readable at any time (for `/metrics` and benches).
#[derive(Debug, Default)]
pub struct WriterStats {
    pub batches: AtomicU64,
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub max_batch: AtomicU64,
    pub failed_batches: AtomicU64,
    /// Records submitted and not yet written, over all arbiters.
    pub queued: AtomicUsize,
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

/// The engine-wide handle; each arbiter thread lazily gets its own writer task.
#[derive(Clone)]
pub struct JournalWriter {
    store: Arc<dyn Store>,
    stats: Arc<WriterStats>,
    capacity_per_thread: usize,
    max_batch: usize,
}

thread_local! {
    /// The writer of the current arbiter thread (one engine per arbiter thread).
    static LOCAL: RefCell<Option<Rc<LocalWriter>>> = const { RefCell::new(None) };
}

impl JournalWriter {
    /// `capacity_per_thread` bounds each arbiter's buffer; `max_batch` bounds one
    /// store call.
    pub fn new(store: Arc<dyn Store>, capacity_per_thread: usize, max_batch: usize) -> Self {
        JournalWriter {
            store,
            stats: Arc::new(WriterStats::default()),
            capacity_per_thread: capacity_per_thread.max(1),
            max_batch: max_batch.max(1),
        }
    }

    /// Queues one record on the calling arbiter's writer. The receiver resolves
    /// when its batch is durable (or failed). Must be called on an actix arbiter
    /// (a tokio `LocalSet`), which is where every account actor runs.
    pub fn submit(
        &self,
        record: JournalAppend,
    ) -> Result<oneshot::Receiver<AppendResult>, WriterFull> {
        let local = LOCAL.with(|l| {
            l.borrow_mut()
                .get_or_insert_with(|| {
                    Rc::new(LocalWriter {
                        store: self.store.clone(),
                        stats: self.stats.clone(),
                        buf: RefCell::new(Vec::new()),
                        scheduled: Cell::new(false),
                        capacity: self.capacity_per_thread,
                        max_batch: self.max_batch,
                    })
                })
                .clone()
        });
        local.submit(record)
    }

    pub fn stats(&self) -> &Arc<WriterStats> {
        &self.stats
    }

    /// Whether the calling arbiter's writer can take one more record now.
    pub fn has_room(&self) -> bool {
        LOCAL.with(|l| {
            l.borrow()
                .as_ref()
                .is_none_or(|w| w.buf.borrow().len() < w.capacity)
        })
    }

    /// Records waiting to be written right now.
    pub fn queued(&self) -> usize {
        self.stats.queued.load(Ordering::Relaxed)
    }
}

struct LocalWriter {
    store: Arc<dyn Store>,
    stats: Arc<WriterStats>,
    buf: RefCell<Vec<Pending>>,
    /// Whether the flush task is running (it exits when the buffer is empty).
    scheduled: Cell<bool>,
    capacity: usize,
    max_batch: usize,
}

impl LocalWriter {
    fn submit(
        self: &Rc<Self>,
        record: JournalAppend,
    ) -> Result<oneshot::Receiver<AppendResult>, WriterFull> {
        let mut buf = self.buf.borrow_mut();
        if buf.len() >= self.capacity {
            return Err(WriterFull);
        }
        let (done, rx) = oneshot::channel();
        buf.push(Pending { record, done });
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        if !self.scheduled.replace(true) {
            let me = self.clone();
            actix_rt::spawn(async move { me.flush_loop().await });
        }
        Ok(rx)
    }

    async fn flush_loop(self: Rc<Self>) {
        let mut records = Vec::new();
        let mut waiters = Vec::new();
        loop {
            // Let every actor already woken on this thread run first, so their
            // records join this batch.
            tokio::task::yield_now().await;
            {
                let mut buf = self.buf.borrow_mut();
                let n = buf.len().min(self.max_batch);
                for p in buf.drain(..n) {
                    records.push(p.record);
                    waiters.push(p.done);
                }
            }
            if records.is_empty() {
                self.scheduled.set(false);
                return;
            }
            self.write(&mut records, &mut waiters).await;
        }
    }

    async fn write(
        &self,
        records: &mut Vec<JournalAppend>,
        waiters: &mut Vec<oneshot::Sender<AppendResult>>,
    ) {
        let started = Instant::now();
        let n = records.len() as u64;
        let bytes: usize = records.iter().map(|r| r.payload.len()).sum();
        let outcome = self.store.append(records).await;
        let stats = &self.stats;
        stats.queued.fetch_sub(n as usize, Ordering::Relaxed);
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
            other => {
                stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                let err = match other {
                    Err(e) => e,
                    Ok(_) => StoreError::Corrupt("store returned a wrong number of results".into()),
                };
                tracing::warn!(error = %err, records = n, "journal batch failed");
                for done in waiters.drain(..) {
                    let _ = done.send(Err(err.clone()));
                }
            }
        }
        records.clear();
    }
}
