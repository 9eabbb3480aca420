//! A [`Store`] wrapper that can stop snapshots from being written, so a benchmark
//! can build accounts whose durable form is "a snapshot followed by N journal
//! records" and measure activation from exactly that.
//!
//! The engine snapshots every account on passivation, so with an ordinary store a
//! passivated account always loads from a snapshot with nothing after it. With the
//! gate closed, `save_snapshot` answers `Ok` without writing: the actor believes its
//! snapshot is stored and retires, and the store keeps the older snapshot plus every
//! record after it. Closing the gate loses no data (records are never trimmed
//! without a stored snapshot covering them), it only makes the next activation
//! replay more. Everything else is forwarded untouched.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use okpay_engine::ids::AccountId;
use okpay_engine::store::{AppendResult, JournalAppend, Loaded, Snapshot, Store, StoreFuture};

/// Forwards to `inner`, dropping snapshots while the gate is closed.
pub struct SnapshotGate {
    inner: Arc<dyn Store>,
    /// Whether `save_snapshot` reaches `inner`.
    open: AtomicBool,
    /// Snapshots dropped while closed (to check the gate really was exercised).
    dropped: AtomicU64,
}

impl std::fmt::Debug for SnapshotGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotGate")
            .field("backend", &self.inner.backend_name())
            .field("open", &self.open.load(Ordering::Relaxed))
            .finish()
    }
}

impl SnapshotGate {
    /// A gate over `inner`, open (snapshots pass) at first.
    pub fn new(inner: Arc<dyn Store>) -> SnapshotGate {
        SnapshotGate {
            inner,
            open: AtomicBool::new(true),
            dropped: AtomicU64::new(0),
        }
    }

    /// Lets snapshots through (`true`) or drops them (`false`).
    pub fn set_open(&self, open: bool) {
        self.open.store(open, Ordering::SeqCst);
    }

    /// Snapshots dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Store for SnapshotGate {
    fn append(&self, batch: &[JournalAppend]) -> StoreFuture<'_, Vec<AppendResult>> {
        self.inner.append(batch)
    }

    fn load(&self, account: AccountId) -> StoreFuture<'_, Loaded> {
        self.inner.load(account)
    }

    fn save_snapshot(&self, account: AccountId, snapshot: Snapshot) -> StoreFuture<'_, ()> {
        if self.open.load(Ordering::SeqCst) {
            self.inner.save_snapshot(account, snapshot)
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            Box::pin(async { Ok(()) })
        }
    }

    fn list_accounts(
        &self,
        after: Option<AccountId>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<AccountId>> {
        self.inner.list_accounts(after, limit)
    }

    fn claim_index(&self, index: &str, key: &str, value: &str) -> StoreFuture<'_, bool> {
        self.inner.claim_index(index, key, value)
    }

    fn get_index(&self, index: &str, key: &str) -> StoreFuture<'_, Option<String>> {
        self.inner.get_index(index, key)
    }

    fn delete_index(&self, index: &str, key: &str) -> StoreFuture<'_, ()> {
        self.inner.delete_index(index, key)
    }

    fn scan_index(
        &self,
        index: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<(String, String)>> {
        self.inner.scan_index(index, after, limit)
    }

    fn history(
        &self,
        account: AccountId,
        before: Option<&str>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<okpay_engine::store::HistoryRow>> {
        self.inner.history(account, before, limit)
    }

    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
}
