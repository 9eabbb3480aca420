//! The set of accounts that exist, so that checking a recipient costs no actor
//! round trip, and an id nobody registered is refused without activating (and
//! keeping in memory) an actor for it.
//!
//! Filled in the background at start-up from the store's account list, page by
//! page (start-up does not wait for it), and by every registration on this
//! process. Until the list has been read to its end, or once the set reached its
//! bound, it is *incomplete*: a miss then asks the engine, as before. Once
//! complete, a miss is an answer: every account this deployment opens is opened by
//! `register` here, and inserted before it is opened, so no existing account is
//! ever missing. (Several gateways over one store, issue 9, would need the others'
//! registrations too; until then the bound and the fallback keep it safe.)
//! A false "exists" is harmless: the engine refuses the credit and the transfer
//! is reversed, exactly as without the set.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use okpay_engine::ids::AccountId;
use okpay_engine::Engine;
use parking_lot::RwLock;
use rustc_hash::FxHashSet;

/// Ids held at most: about 16 bytes each in the set, so at most ~64 MiB. Past it
/// the set stops growing and misses ask the engine.
pub const DEFAULT_MAX_IDS: usize = 4_000_000;

pub struct OpenAccounts {
    ids: RwLock<FxHashSet<u64>>,
    /// Set once the store's list was read to its end without hitting the bound.
    complete: AtomicBool,
    /// Set when an insert found the set full: a miss can no longer be trusted.
    overflowed: AtomicBool,
    max_ids: usize,
}

impl std::fmt::Debug for OpenAccounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAccounts")
            .field("len", &self.ids.read().len())
            .field("complete", &self.is_complete())
            .finish()
    }
}

impl Default for OpenAccounts {
    fn default() -> Self {
        OpenAccounts::new(DEFAULT_MAX_IDS)
    }
}

/// What the set knows about an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    Exists,
    Absent,
    /// The set can't tell: ask the engine.
    Unsure,
}

impl OpenAccounts {
    pub fn new(max_ids: usize) -> Self {
        OpenAccounts {
            ids: RwLock::new(FxHashSet::default()),
            complete: AtomicBool::new(false),
            overflowed: AtomicBool::new(false),
            max_ids,
        }
    }

    fn is_complete(&self) -> bool {
        self.complete.load(Ordering::Acquire) && !self.overflowed.load(Ordering::Acquire)
    }

    /// Records that `account` exists (or is about to).
    pub fn insert(&self, account: AccountId) {
        let mut ids = self.ids.write();
        if ids.len() >= self.max_ids && !ids.contains(&account.0) {
            self.overflowed.store(true, Ordering::Release);
            return;
        }
        ids.insert(account.0);
    }

    pub fn lookup(&self, account: AccountId) -> Known {
        if self.ids.read().contains(&account.0) {
            Known::Exists
        } else if self.is_complete() {
            Known::Absent
        } else {
            Known::Unsure
        }
    }

    /// Whether `account` exists: from the set when it knows, else from the engine
    /// (remembering a yes).
    pub async fn exists(
        &self,
        engine: &Engine,
        account: AccountId,
    ) -> Result<bool, okpay_engine::EngineError> {
        match self.lookup(account) {
            Known::Exists => Ok(true),
            Known::Absent => Ok(false),
            Known::Unsure => {
                let exists = engine.account_exists(account).await?;
                if exists {
                    self.insert(account);
                }
                Ok(exists)
            }
        }
    }

    /// Reads every stored account into the set, then marks it complete. Run once,
    /// in the background, at start-up; on a store error the set stays incomplete
    /// (misses keep asking the engine) and the error is logged.
    pub async fn load(self: Arc<Self>, engine: Engine) {
        if engine.node_id().is_some() {
            // Several nodes: accounts registered through another node never
            // reach this set, so it is never complete (misses ask the engine).
            return;
        }
        for shard in engine.layout().all() {
            let page = match engine.accounts_in_shard(shard).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "could not list the accounts; recipients are checked with the engine");
                    return;
                }
            };
            for id in &page {
                self.insert(*id);
            }
            if self.overflowed.load(Ordering::Acquire) {
                tracing::warn!(max = self.max_ids, "more accounts than the recipient set holds; recipients beyond it are checked with the engine");
                return;
            }
        }
        self.complete.store(true, Ordering::Release);
        tracing::info!(accounts = self.ids.read().len(), "recipient set loaded");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use okpay_engine::store::memory::MemoryStore;
    use okpay_engine::store::Store;

    #[test]
    fn unsure_until_complete_then_a_miss_is_absent() {
        let set = OpenAccounts::default();
        set.insert(AccountId(1));
        assert_eq!(set.lookup(AccountId(1)), Known::Exists);
        assert_eq!(set.lookup(AccountId(2)), Known::Unsure);
        set.complete.store(true, Ordering::Release);
        assert_eq!(set.lookup(AccountId(2)), Known::Absent);
        assert_eq!(set.lookup(AccountId(1)), Known::Exists);
    }

    #[test]
    fn the_set_is_bounded_and_a_full_set_stops_answering_absent() {
        let set = OpenAccounts::new(3);
        set.complete.store(true, Ordering::Release);
        for i in 0..10 {
            set.insert(AccountId(i));
        }
        assert_eq!(set.ids.read().len(), 3);
        assert_eq!(set.lookup(AccountId(9)), Known::Unsure);
    }

    #[tokio::test]
    async fn load_reads_every_stored_account() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let engine = Engine::start(Default::default(), store.clone())
            .await
            .unwrap();
        let mut opened = Vec::new();
        for i in 0..3 {
            let profile = okpay_engine::domain::command::Profile {
                display_name: format!("u{i}"),
                email: None,
                phone: None,
            };
            opened.push(engine.open_account(profile).await.unwrap());
        }
        let set = Arc::new(OpenAccounts::default());
        set.clone().load(engine.clone()).await;
        for id in opened {
            assert_eq!(set.lookup(id), Known::Exists);
        }
        assert_eq!(set.lookup(AccountId(u64::MAX)), Known::Absent);
        // An unknown id is refused without activating an actor for it.
        let before = engine.active_actors();
        assert!(!set.exists(&engine, AccountId(u64::MAX)).await.unwrap());
        assert_eq!(engine.active_actors(), before);
    }

    #[tokio::test]
    async fn an_incomplete_set_asks_the_engine_and_remembers_a_yes() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let engine = Engine::start(Default::default(), store).await.unwrap();
        let profile = okpay_engine::domain::command::Profile {
            display_name: "u".into(),
            email: None,
            phone: None,
        };
        let id = engine.open_account(profile).await.unwrap();
        let set = OpenAccounts::default();
        assert_eq!(set.lookup(id), Known::Unsure);
        assert!(set.exists(&engine, id).await.unwrap());
        assert_eq!(set.lookup(id), Known::Exists);
        assert!(!set.exists(&engine, AccountId(u64::MAX)).await.unwrap());
    }
}
