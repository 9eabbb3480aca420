//! The shard log in memory, for tests: the same rules as the durable backends,
//! nothing survives the process.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{
    check_checkpoint, check_fence, not_written, ShardAppend, ShardHead, ShardLog, StoredFrame,
};
use crate::codec::{ShardId, ShardLayout};
use crate::ids::AccountId;
use crate::store::{StoreError, StoreFuture};

#[derive(Default)]
struct Shard {
    head: ShardHead,
    frames: BTreeMap<u64, Vec<u8>>,
    states: HashMap<AccountId, Vec<u8>>,
}

#[derive(Default)]
struct Inner {
    layout: Option<ShardLayout>,
    shards: HashMap<ShardId, Shard>,
}

/// An in-memory [`ShardLog`].
#[derive(Default)]
pub struct MemoryShardLog {
    inner: Mutex<Inner>,
    /// Shared with the [`MemoryStore`](crate::store::memory::MemoryStore) that owns
    /// this log: while set, every operation fails.
    failing: Arc<AtomicBool>,
    replies: AppendReplies,
}

/// Tests' control over the answers to appends, to stand for a server that
/// applied an append and whose answer was lost.
#[derive(Default)]
pub struct AppendReplies {
    lose: AtomicUsize,
    /// While recording: the shards of each append call that landed, in order.
    calls: Mutex<Option<Vec<Vec<ShardId>>>>,
}

impl AppendReplies {
    /// The next `n` appends are applied, then answered with an error (the
    /// caller cannot know they landed).
    pub fn lose_next(&self, n: usize) {
        self.lose.store(n, Ordering::SeqCst);
    }

    /// From now on, remembers the shards of every append call that lands (a
    /// test's view of which frames were written together).
    pub fn record_calls(&self) {
        *self.calls.lock() = Some(Vec::new());
    }

    /// The shards of each append call landed since [`Self::record_calls`].
    pub fn calls(&self) -> Vec<Vec<ShardId>> {
        self.calls.lock().clone().unwrap_or_default()
    }
}

impl MemoryShardLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// A log that fails whenever `failing` is set.
    pub fn with_failing(failing: Arc<AtomicBool>) -> Self {
        MemoryShardLog {
            inner: Mutex::default(),
            failing,
            replies: AppendReplies::default(),
        }
    }

    /// See [`AppendReplies`].
    pub fn replies(&self) -> &AppendReplies {
        &self.replies
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("memory log told to fail".into()))
        } else {
            Ok(())
        }
    }
}

impl ShardLog for MemoryShardLog {
    fn init_layout(&self, proposed: ShardLayout) -> StoreFuture<'_, ShardLayout> {
        let mut inner = self.inner.lock();
        let layout = *inner.layout.get_or_insert(proposed);
        Box::pin(async move { Ok(layout) })
    }

    fn append(&self, batch: Vec<ShardAppend>) -> StoreFuture<'_, Vec<Result<(), StoreError>>> {
        if let Err(e) = self.check() {
            return Box::pin(async move { Err(e) });
        }
        let mut inner = self.inner.lock();
        // Whole or not at all (see `atomic_append`): every fence first.
        let fences: Vec<Result<(), StoreError>> = batch
            .iter()
            .map(|a| {
                let head = inner.shards.get(&a.shard).map_or(0, |s| s.head.head);
                check_fence(a.shard, head, a.lsn)
            })
            .collect();
        if fences.iter().any(Result::is_err) {
            let results = batch
                .iter()
                .zip(fences)
                .map(|(a, fence)| fence.and(Err(not_written(a.shard, a.lsn))))
                .collect();
            return Box::pin(async move { Ok(results) });
        }
        if let Some(calls) = self.replies.calls.lock().as_mut() {
            calls.push(batch.iter().map(|a| a.shard).collect());
        }
        let results = batch
            .into_iter()
            .map(|a| {
                let shard = inner.shards.entry(a.shard).or_default();
                check_fence(a.shard, shard.head.head, a.lsn)?;
                // Kept until a checkpoint passes it: without the room the
                // encoder reserved for the uncompressed records, which was
                // twice to three times the frame.
                let mut frame = a.frame;
                frame.shrink_to_fit();
                shard.frames.insert(a.lsn, frame);
                shard.head.head = a.lsn;
                Ok(())
            })
            .collect();
        drop(inner);
        let lost = self
            .replies
            .lose
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        Box::pin(async move {
            if lost {
                return Err(StoreError::Unavailable("the answer was lost".into()));
            }
            Ok(results)
        })
    }

    fn head(&self, shard: ShardId) -> StoreFuture<'_, ShardHead> {
        if let Err(e) = self.check() {
            return Box::pin(async move { Err(e) });
        }
        let head = self
            .inner
            .lock()
            .shards
            .get(&shard)
            .map(|s| s.head)
            .unwrap_or_default();
        Box::pin(async move { Ok(head) })
    }

    fn read(&self, shard: ShardId, after: u64, limit: usize) -> StoreFuture<'_, Vec<StoredFrame>> {
        if let Err(e) = self.check() {
            return Box::pin(async move { Err(e) });
        }
        let frames = self
            .inner
            .lock()
            .shards
            .get(&shard)
            .map_or_else(Vec::new, |s| {
                s.frames
                    .range(after + 1..)
                    .take(limit)
                    .map(|(&lsn, f)| StoredFrame {
                        lsn,
                        frame: f.clone(),
                    })
                    .collect()
            });
        Box::pin(async move { Ok(frames) })
    }

    fn checkpoint(
        &self,
        shard: ShardId,
        lsn: u64,
        states: Vec<(AccountId, Vec<u8>)>,
    ) -> StoreFuture<'_, ()> {
        let result = (|| {
            self.check()?;
            let mut inner = self.inner.lock();
            let s = inner.shards.entry(shard).or_default();
            if !check_checkpoint(shard, s.head, lsn)? {
                return Ok(());
            }
            s.states.extend(states);
            s.head.checkpoint = lsn;
            s.frames = s.frames.split_off(&(lsn + 1));
            Ok(())
        })();
        Box::pin(async move { result })
    }

    fn load_account(&self, shard: ShardId, account: AccountId) -> StoreFuture<'_, Option<Vec<u8>>> {
        if let Err(e) = self.check() {
            return Box::pin(async move { Err(e) });
        }
        let state = self
            .inner
            .lock()
            .shards
            .get(&shard)
            .and_then(|s| s.states.get(&account).cloned());
        Box::pin(async move { Ok(state) })
    }

    fn accounts(&self, shard: ShardId) -> StoreFuture<'_, Vec<AccountId>> {
        let mut ids: Vec<AccountId> = self
            .inner
            .lock()
            .shards
            .get(&shard)
            .map_or_else(Vec::new, |s| s.states.keys().copied().collect());
        ids.sort_unstable();
        Box::pin(async move { Ok(ids) })
    }

    fn backend_name(&self) -> &'static str {
        "memory"
    }

    fn atomic_append(&self) -> bool {
        true
    }
}
