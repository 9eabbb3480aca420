//! The shard log in memory, for tests: the same rules as the durable backends,
//! nothing survives the process.

use std::collections::{BTreeMap, HashMap};

use parking_lot::Mutex;

use super::{check_checkpoint, check_fence, ShardAppend, ShardHead, ShardLog, StoredFrame};
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
}

impl MemoryShardLog {
    pub fn new() -> Self {
        Self::default()
    }
}

impl ShardLog for MemoryShardLog {
    fn init_layout(&self, proposed: ShardLayout) -> StoreFuture<'_, ShardLayout> {
        let mut inner = self.inner.lock();
        let layout = *inner.layout.get_or_insert(proposed);
        Box::pin(async move { Ok(layout) })
    }

    fn append(&self, batch: Vec<ShardAppend>) -> StoreFuture<'_, Vec<Result<(), StoreError>>> {
        let mut inner = self.inner.lock();
        let results = batch
            .into_iter()
            .map(|a| {
                let shard = inner.shards.entry(a.shard).or_default();
                check_fence(a.shard, shard.head.head, a.lsn)?;
                shard.frames.insert(a.lsn, a.frame);
                shard.head.head = a.lsn;
                Ok(())
            })
            .collect();
        Box::pin(async move { Ok(results) })
    }

    fn head(&self, shard: ShardId) -> StoreFuture<'_, ShardHead> {
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
        let state = self
            .inner
            .lock()
            .shards
            .get(&shard)
            .and_then(|s| s.states.get(&account).cloned());
        Box::pin(async move { Ok(state) })
    }

    fn backend_name(&self) -> &'static str {
        "memory"
    }
}
