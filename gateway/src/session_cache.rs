//! The session cache: sessions the engine has already validated, so that
//! authenticating a request costs no store lookup and no actor round trip.
//!
//! A hit needs the claimed `(account, session n)` to be cached with the same token
//! hash, the session's own expiry (by the engine's clock) still ahead, the cache's
//! backstop TTL not passed, and no revocation of the account since the entry was
//! filled. Revocation is tracked by *generations* rather than by deleting entries:
//! every account maps to one of [`STRIPES`] counters; [`SessionCache::evict`] bumps
//! the account's counter, and an entry filled under an older value never answers
//! again. That closes the race a plain delete has (a fill that read the session
//! from the engine just before the revocation inserting it just after): the
//! generation is read *before* the engine is asked, so such a fill is stale at
//! birth. Bumping a stripe also drops the entries of the few other accounts that
//! share it; they pay one engine round trip on their next request, nothing more.
//!
//! Who evicts: every gateway path that revokes sessions calls
//! [`SessionCache::evict`] after the engine applied the revocation and before it
//! answers (log out, log out elsewhere, password reset, an operator's revoke or
//! close, a login that pushed the oldest session out), so the revoked token is
//! refused from the next request on. Status changes the engine makes on its own
//! (a fraud rule freezing an account) arrive on the operators' stream and evict
//! too ([`feed`]). The TTL bounds what a revocation this process never hears of
//! can leave behind. Money never depends on the cache: the engine checks the
//! account's status on every command.
//!
//! Several nodes on one Redis: an eviction is also published on the coordination
//! bus (topic `sessions`, the account id), and every other node's [`listen`]
//! evicts the account from its own cache, so a session revoked through node A is
//! refused by node B from B's next request on (pub/sub latency, no Redis round
//! trip per request). The bus is at most once: when a node's subscription was
//! lost, it forgets its whole cache ([`BusEvent::Reset`]), and the TTL still
//! bounds anything else. On the memory and embedded stores the bus is a no-op.
//!
//! Open websockets: a socket [`watch`](SessionCache::watch)es its account, and
//! every eviction of that account (made here or heard on the bus, and every
//! `evict_all`) wakes it to check its token at once, so a socket whose session
//! was revoked on any node closes within the bus's latency instead of at its
//! next heartbeat (which still checks, for what the bus lost).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use okpay_engine::coord::{BusEvent, Coord};
use okpay_engine::domain::notification::NotificationKind;
use okpay_engine::ids::AccountId;
use okpay_engine::runtime::hub::AdminNotice;
use okpay_engine::time::Timestamp;
use rustc_hash::FxHashMap;
use tokio::sync::{broadcast, watch};

/// Revocation counters. A power of two well above the number of revocations in
/// flight at once, so an eviction rarely drops a bystander's entry; 128 KiB.
const STRIPES: usize = 16_384;

/// Sessions cached at most; beyond it the cache forgets the least useful (S3-FIFO).
/// About 100 bytes each, so the bound is ~10 MiB whatever the number of accounts.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// How long a validated session is trusted without asking the engine again: the
/// backstop for revocations this process is not told about.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);

#[derive(Clone, Copy)]
struct Entry {
    token_hash: [u8; 32],
    /// The session's own end, on the engine's clock.
    expires_at: Timestamp,
    /// The revocation counter of the account's stripe when the entry was filled.
    generation: u64,
    /// End of the backstop TTL (monotonic: the cache's own bookkeeping, not time
    /// the business sees).
    trusted_until: Instant,
}

/// A ticket taken before asking the engine; [`SessionCache::insert`] files the
/// answer under it, so a revocation in between makes the entry void.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    generation: u64,
}

/// The bus topic of evictions (payload: the account id, 8 bytes big-endian).
pub const TOPIC: &str = "sessions";

/// The cache. Shared by every worker through `AppState`.
pub struct SessionCache {
    entries: quick_cache::sync::Cache<(AccountId, u64), Entry>,
    generations: Box<[AtomicU64]>,
    ttl: Duration,
    /// Where evictions are told to the other nodes (none: this process only).
    bus: Option<Arc<dyn Coord>>,
    /// Accounts with open sockets, woken on each eviction (see the module doc).
    watchers: parking_lot::Mutex<Watchers>,
}

/// Per watched account, the channel its sockets hold receivers of. Entries
/// whose sockets all closed are pruned whenever the map doubled since the last
/// prune, so it stays within twice the accounts with open sockets (plus 1,024).
struct Watchers {
    by_account: FxHashMap<AccountId, watch::Sender<()>>,
    prune_at: usize,
}

impl Default for Watchers {
    fn default() -> Self {
        Watchers {
            by_account: FxHashMap::default(),
            prune_at: 1024,
        }
    }
}

impl Default for SessionCache {
    fn default() -> Self {
        SessionCache::new(DEFAULT_CAPACITY, DEFAULT_TTL)
    }
}

impl std::fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCache")
            .field("len", &self.entries.len())
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl SessionCache {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        SessionCache {
            entries: quick_cache::sync::Cache::new(capacity.max(1)),
            generations: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            ttl,
            bus: None,
            watchers: parking_lot::Mutex::new(Watchers::default()),
        }
    }

    /// A receiver that changes on each eviction of `account` (take it before
    /// the socket's last token check, so no eviction falls in between).
    pub fn watch(&self, account: AccountId) -> watch::Receiver<()> {
        let mut w = self.watchers.lock();
        if w.by_account.len() >= w.prune_at {
            w.by_account.retain(|_, s| s.receiver_count() > 0);
            w.prune_at = (w.by_account.len() * 2).max(1024);
        }
        w.by_account
            .entry(account)
            .or_insert_with(|| watch::channel(()).0)
            .subscribe()
    }

    /// Wakes the sockets of `account` (all of them when `None`).
    fn wake_sockets(&self, account: Option<AccountId>) {
        let w = self.watchers.lock();
        match account {
            Some(account) => {
                if let Some(sender) = w.by_account.get(&account) {
                    // No receiver left: nothing to wake (pruned later).
                    let _ = sender.send(());
                }
            }
            None => {
                for sender in w.by_account.values() {
                    let _ = sender.send(());
                }
            }
        }
    }

    /// Tells every other node sharing `coord` of each eviction (see the module
    /// doc); nothing changes when `coord` is this process's own.
    pub fn shared_through(mut self, coord: Arc<dyn Coord>) -> Self {
        self.bus = coord.is_shared().then_some(coord);
        self
    }

    fn stripe(&self, account: AccountId) -> &AtomicU64 {
        // Account ids are spread (random or sequential); the low bits suffice.
        &self.generations[(account.0 as usize) % STRIPES]
    }

    /// Whether session `n` of `account` with `token_hash` is known live at `now`.
    pub fn check(&self, account: AccountId, n: u64, token_hash: &[u8; 32], now: Timestamp) -> bool {
        let Some(entry) = self.entries.get(&(account, n)) else {
            return false;
        };
        entry.generation == self.stripe(account).load(Ordering::Acquire)
            && entry.expires_at > now
            && Instant::now() < entry.trusted_until
            && same(&entry.token_hash, token_hash)
    }

    /// Take before asking the engine about a session of `account`.
    pub fn ticket(&self, account: AccountId) -> Ticket {
        Ticket {
            generation: self.stripe(account).load(Ordering::Acquire),
        }
    }

    /// Files what the engine said: session `n` of `account` is live until
    /// `expires_at`. Void if `account` was evicted since `ticket` was taken.
    pub fn insert(
        &self,
        ticket: Ticket,
        account: AccountId,
        n: u64,
        token_hash: [u8; 32],
        expires_at: Timestamp,
    ) {
        self.entries.insert(
            (account, n),
            Entry {
                token_hash,
                expires_at,
                generation: ticket.generation,
                trusted_until: Instant::now() + self.ttl,
            },
        );
    }

    /// Forgets every cached session of `account` (and of the accounts sharing its
    /// stripe). Call after the engine applied a revocation, before answering.
    pub fn evict(&self, account: AccountId) {
        self.stripe(account).fetch_add(1, Ordering::AcqRel);
        self.wake_sockets(Some(account));
        if let Some(bus) = self.bus.clone() {
            // Off the request's path: the other nodes hear of it within the bus's
            // latency; a lost message is what the TTL is for.
            tokio::spawn(async move {
                if let Err(e) = bus.publish(TOPIC, account.0.to_be_bytes().to_vec()).await {
                    metrics::counter!("okpay_session_evictions_unpublished_total").increment(1);
                    tracing::warn!(error = %e, "a session eviction was not told to the other nodes");
                }
            });
        }
    }

    /// An eviction another node told of: local only, never published again.
    fn evict_here(&self, account: AccountId) {
        self.stripe(account).fetch_add(1, Ordering::AcqRel);
        self.wake_sockets(Some(account));
    }

    /// Forgets everything (the operators' stream lagged: some status change may
    /// have been missed).
    pub fn evict_all(&self) {
        for g in self.generations.iter() {
            g.fetch_add(1, Ordering::AcqRel);
        }
        self.entries.clear();
        self.wake_sockets(None);
    }
}

/// Compares two hashes without an early exit, as the engine does.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Evicts accounts whose status changes (frozen, closed, restricted...) as the
/// engine announces it on the operators' stream; runs until the engine stops.
pub async fn feed(mut notices: broadcast::Receiver<AdminNotice>, cache: Arc<SessionCache>) {
    loop {
        match notices.recv().await {
            Ok(notice) => match notice.notification.kind {
                NotificationKind::StatusChanged { .. } => cache.evict(notice.account),
                NotificationKind::BalanceUpdated { .. }
                | NotificationKind::TransactionUpdated { .. }
                | NotificationKind::AlertRaised { .. }
                | NotificationKind::SessionCreated { .. }
                | NotificationKind::KycUpdated { .. }
                | NotificationKind::SecurityChanged { .. } => {}
            },
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "session cache: operators' stream lagged; cache cleared"
                );
                cache.evict_all();
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Evicts what other nodes evicted (see the module doc); runs until the bus
/// closes.
pub async fn listen(mut bus: broadcast::Receiver<BusEvent>, cache: Arc<SessionCache>) {
    loop {
        match bus.recv().await {
            Ok(BusEvent::Message { topic, payload }) if topic == TOPIC => {
                match <[u8; 8]>::try_from(&payload[..]) {
                    Ok(id) => cache.evict_here(AccountId(u64::from_be_bytes(id))),
                    Err(_) => tracing::warn!("a malformed session eviction on the bus"),
                }
            }
            Ok(BusEvent::Message { .. }) => {}
            Ok(BusEvent::Reset) | Err(broadcast::error::RecvError::Lagged(_)) => {
                tracing::warn!("session cache: evictions may have been missed; cache cleared");
                cache.evict_all();
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: AccountId = AccountId(7);
    const H: [u8; 32] = [3; 32];
    const NOW: Timestamp = Timestamp(1_000);

    #[test]
    fn a_filled_session_answers_until_evicted() {
        let cache = SessionCache::default();
        assert!(!cache.check(A, 1, &H, NOW), "empty cache");
        cache.insert(cache.ticket(A), A, 1, H, Timestamp(2_000));
        assert!(cache.check(A, 1, &H, NOW));
        assert!(
            !cache.check(A, 1, &[4; 32], NOW),
            "another token for the same session"
        );
        assert!(!cache.check(A, 2, &H, NOW), "another session number");
        assert!(!cache.check(AccountId(8), 1, &H, NOW), "another account");
        cache.evict(A);
        assert!(!cache.check(A, 1, &H, NOW));
    }

    #[test]
    fn a_session_expires_by_the_given_clock() {
        let cache = SessionCache::default();
        cache.insert(cache.ticket(A), A, 1, H, Timestamp(2_000));
        assert!(cache.check(A, 1, &H, Timestamp(1_999)));
        assert!(!cache.check(A, 1, &H, Timestamp(2_000)));
    }

    #[test]
    fn a_fill_that_raced_a_revocation_is_void() {
        let cache = SessionCache::default();
        // The engine was asked before the revocation; its answer lands after.
        let ticket = cache.ticket(A);
        cache.evict(A);
        cache.insert(ticket, A, 1, H, Timestamp(2_000));
        assert!(!cache.check(A, 1, &H, NOW));
        // A fill after the revocation is good again.
        cache.insert(cache.ticket(A), A, 1, H, Timestamp(2_000));
        assert!(cache.check(A, 1, &H, NOW));
    }

    #[test]
    fn an_eviction_wakes_the_watchers_of_its_account_only() {
        let cache = SessionCache::default();
        let mut a = cache.watch(A);
        let a2 = cache.watch(A);
        let other = cache.watch(AccountId(8));
        cache.evict(A);
        assert!(a.has_changed().unwrap());
        assert!(a2.has_changed().unwrap());
        assert!(!other.has_changed().unwrap());
        a.mark_unchanged();
        cache.evict_all();
        assert!(a.has_changed().unwrap());
        assert!(other.has_changed().unwrap());
    }

    #[test]
    fn watchers_of_closed_sockets_are_pruned() {
        let cache = SessionCache::default();
        for i in 0..5_000 {
            drop(cache.watch(AccountId(i)));
        }
        let kept = cache.watch(A);
        assert!(cache.watchers.lock().by_account.len() <= 2 * 1024 + 1);
        cache.evict(A);
        assert!(kept.has_changed().unwrap());
    }

    #[test]
    fn the_backstop_ttl_ends_trust() {
        let cache = SessionCache::new(16, Duration::ZERO);
        cache.insert(cache.ticket(A), A, 1, H, Timestamp(2_000));
        assert!(!cache.check(A, 1, &H, NOW));
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = SessionCache::new(100, DEFAULT_TTL);
        for n in 0..10_000 {
            cache.insert(cache.ticket(A), A, n, H, Timestamp(2_000));
        }
        assert!(cache.entries.len() <= 100);
    }

    #[test]
    fn evict_all_forgets_everything() {
        let cache = SessionCache::default();
        cache.insert(cache.ticket(A), A, 1, H, Timestamp(2_000));
        cache.evict_all();
        assert!(!cache.check(A, 1, &H, NOW));
    }
}
