//! The directory: which actor serves which account, activating actors on demand.
//!
//! At most one live actor per account: activation happens under the lock of the
//! account's shard, so concurrent first requests find the same actor. A retiring
//! actor removes its own entry (checked by generation, so it can never remove its
//! successor). Mailboxes are bounded here, not by actix: actix's `try_send` lets
//! every fresh `Addr` clone queue one message past capacity, so each entry carries
//! its own counter of queued requests, checked before every send.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use actix::{Actor, Addr, ArbiterHandle};
use parking_lot::Mutex;
use rustc_hash::FxHashMap as HashMap;

use super::actor::{AccountActor, Request};
use super::{EngineError, Shared};
use crate::ids::AccountId;

const SHARDS: usize = 64;

/// One live actor's address and its mailbox counter.
#[derive(Clone)]
pub(crate) struct Handle {
    addr: Addr<AccountActor>,
    queued: Arc<AtomicUsize>,
    pub generation: u64,
}

impl Handle {
    pub fn addr(&self) -> &Addr<AccountActor> {
        &self.addr
    }

    /// Queues `request` unless the mailbox is at its bound.
    pub fn deliver(&self, request: Request, capacity: usize) -> Result<(), EngineError> {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= capacity {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            metrics::counter!("okpay_mailbox_full_total").increment(1);
            return Err(EngineError::Overloaded);
        }
        // `do_send` never parks; if the actor has stopped the request is dropped, its
        // reply channel closes, and the caller retries on a fresh actor.
        self.addr.do_send(request);
        Ok(())
    }
}

pub(crate) struct Directory {
    shards: Vec<Mutex<HashMap<AccountId, Handle>>>,
    arbiters: Vec<ArbiterHandle>,
    next_generation: AtomicU64,
}

impl Directory {
    pub fn new(arbiters: Vec<ArbiterHandle>) -> Self {
        assert!(
            !arbiters.is_empty(),
            "the directory needs at least one arbiter"
        );
        Directory {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::default()))
                .collect(),
            arbiters,
            next_generation: AtomicU64::new(1),
        }
    }

    fn shard(&self, account: AccountId) -> &Mutex<HashMap<AccountId, Handle>> {
        &self.shards[(account.0 >> 7) as usize % SHARDS]
    }

    /// Delivers `request` to the live actor of `account` (activating one if there
    /// is none) and returns that actor's generation. Done under the shard lock, so
    /// no `Addr` is cloned per request (actix allocates on every clone).
    pub fn deliver(
        &self,
        shared: &Arc<Shared>,
        account: AccountId,
        request: Request,
    ) -> Result<u64, EngineError> {
        let capacity = shared.config.mailbox_capacity;
        let mut shard = self.shard(account).lock();
        if let Some(h) = shard.get(&account) {
            if h.addr.connected() {
                h.deliver(request, capacity)?;
                return Ok(h.generation);
            }
        }
        let h = Self::activate(&self.arbiters, &self.next_generation, shared, account);
        h.deliver(request, capacity)?;
        let generation = h.generation;
        shard.insert(account, h);
        Ok(generation)
    }

    /// The live actor of `account`, activated if there is none.
    pub fn handle(&self, shared: &Arc<Shared>, account: AccountId) -> Handle {
        let mut shard = self.shard(account).lock();
        if let Some(h) = shard.get(&account) {
            if h.addr.connected() {
                return h.clone();
            }
        }
        let h = Self::activate(&self.arbiters, &self.next_generation, shared, account);
        shard.insert(account, h.clone());
        h
    }

    fn activate(
        arbiters: &[ArbiterHandle],
        next_generation: &AtomicU64,
        shared: &Arc<Shared>,
        account: AccountId,
    ) -> Handle {
        let queued = Arc::new(AtomicUsize::new(0));
        let generation = next_generation.fetch_add(1, Ordering::Relaxed);
        let arbiter = &arbiters[account.0 as usize % arbiters.len()];
        let (s, q) = (shared.clone(), queued.clone());
        let addr = AccountActor::start_in_arbiter(arbiter, move |_ctx| {
            AccountActor::new(account, s, q, generation)
        });
        Handle {
            addr,
            queued,
            generation,
        }
    }

    /// Removes the entry of `account` if it still belongs to `generation`.
    pub fn remove(&self, account: AccountId, generation: u64) {
        let mut shard = self.shard(account).lock();
        if shard
            .get(&account)
            .is_some_and(|h| h.generation == generation)
        {
            shard.remove(&account);
        }
    }

    /// Entries in the directory (activated, not yet retired actors).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Every account with a live actor.
    pub fn accounts(&self) -> Vec<AccountId> {
        self.shards
            .iter()
            .flat_map(|s| s.lock().keys().copied().collect::<Vec<_>>())
            .collect()
    }

    /// The generation of the live actor of `account`, if any (for tests).
    pub fn generation_of(&self, account: AccountId) -> Option<u64> {
        self.shard(account)
            .lock()
            .get(&account)
            .map(|h| h.generation)
    }
}
