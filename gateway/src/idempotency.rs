//! The gateway's share of client idempotency. The engine owns the durable part:
//! every `Idempotency-Key` lives in the account's state with a fingerprint of the
//! command, so "same key, same request" replays the first operation and "same key,
//! different request" is `IDEMPOTENCY_CONFLICT`. Responses are rebuilt from the
//! engine's view of that operation as it was first reported (see each route), so a
//! replay answers the same status and the same bytes without storing responses.
//!
//! What the engine cannot see is the outside world a deposit touches before the
//! command runs: the card charge. Two things here keep a charge to once per key:
//!
//! - [`KeyLocks`] serializes requests that carry the same account and key, so two
//!   racing identical deposits cannot both find the key new and both charge. It is
//!   per process; when several nodes share one Redis, [`ChargeLock`] adds a lock
//!   in the coordination state (`SET NX PX`, freed by its holder or after
//!   [`CHARGE_LOCK_TTL`] if the holder died), so two nodes never charge for one
//!   key at once either. The in-process lock comes first, so requests of one node
//!   queue locally and only one of them polls Redis.
//! - [`Charges`] remembers, per account and key, that a card was charged and a
//!   salted digest of the full card number. It lets a retry after a failed engine
//!   command (storage outage) skip a second charge, and lets a replay with another
//!   card that shares the last four digits (all the engine's fingerprint sees) be
//!   refused as a conflict. It lives only in memory, on purpose: a digest of a card
//!   number is brute-forceable, so it is never written to the store. After a
//!   restart, or on another node, the masked card is all that is compared, which
//!   errs on the safe side (the first response again, never a second charge by a
//!   replay the engine knows).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use okpay_engine::coord::Coord;
use okpay_engine::ids::{AccountId, IdempotencyKey};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::payments::CardNumber;

/// How long a node's charge lock lasts if it is never freed (its node died
/// mid-deposit): longer than a charge and a credit take.
pub const CHARGE_LOCK_TTL: Duration = Duration::from_secs(60);
/// How long a request waits for another node's charge with the same key before
/// answering 503 (retry later: the first one's outcome is replayed then).
pub const CHARGE_LOCK_WAIT: Duration = Duration::from_secs(15);

/// Holds the shared charge lock of one (account, key) until dropped.
pub struct ChargeLock {
    coord: Arc<dyn Coord>,
    name: String,
    token: u64,
}

impl ChargeLock {
    /// Takes the cross-node lock of `account`'s `key`, waiting up to
    /// [`CHARGE_LOCK_WAIT`]; `None` when `coord` is this process's own (the
    /// in-process [`KeyLocks`] is the whole story then).
    pub async fn take(
        coord: &Arc<dyn Coord>,
        account: AccountId,
        key: &IdempotencyKey,
    ) -> Result<Option<ChargeLock>, ApiError> {
        if !coord.is_shared() {
            return Ok(None);
        }
        // Hashed: the key is client input of any length.
        let digest = Sha256::digest(format!("{account}:{}", key.as_str()).as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let name = format!("charge:{hex}");
        let token: u64 = rand::random();
        let deadline = Instant::now() + CHARGE_LOCK_WAIT;
        let mut pause = Duration::from_millis(10);
        loop {
            let taken = coord
                .try_lock(&name, token, CHARGE_LOCK_TTL)
                .await
                .map_err(|_| ApiError::unavailable())?;
            if taken {
                return Ok(Some(ChargeLock {
                    coord: coord.clone(),
                    name,
                    token,
                }));
            }
            if Instant::now() >= deadline {
                return Err(ApiError::overloaded().with_hint(
                    "Another request with this Idempotency-Key is still being processed; retry it shortly.",
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }
}

impl Drop for ChargeLock {
    fn drop(&mut self) {
        let (coord, name, token) = (
            self.coord.clone(),
            std::mem::take(&mut self.name),
            self.token,
        );
        // Freed off the request's path; if this never runs, the TTL frees it.
        tokio::spawn(async move {
            if let Err(e) = coord.unlock(&name, token).await {
                tracing::warn!(error = %e, "a charge lock was not freed; it expires by itself");
            }
        });
    }
}

/// An account's idempotency key: the scope of a client key.
type Slot = (AccountId, IdempotencyKey);

/// One slot's lock and how many requests hold or wait for it (the entry goes
/// when that drops to zero, so the table only holds keys in use).
type SlotLock = (Arc<tokio::sync::Mutex<()>>, usize);

/// Per-(account, key) async locks, created on demand and dropped when unused.
#[derive(Default)]
pub struct KeyLocks {
    /// A `parking_lot` mutex, not a tokio one: it is held only to look an entry up
    /// or count its users, never across an await.
    slots: Mutex<HashMap<Slot, SlotLock>>,
}

/// Holds one (account, key) slot until dropped.
pub struct KeyGuard<'a> {
    _held: tokio::sync::OwnedMutexGuard<()>,
    _user: SlotUser<'a>,
}

/// One request's use of a slot, counted from before it waits, so a request
/// cancelled while waiting (a client that hung up) still gives its count back.
struct SlotUser<'a> {
    locks: &'a KeyLocks,
    slot: Slot,
}

impl KeyLocks {
    /// Waits until no other request with `account` and `key` is running.
    pub async fn lock(&self, account: AccountId, key: &IdempotencyKey) -> KeyGuard<'_> {
        let slot = (account, key.clone());
        let mutex = {
            let mut slots = self.slots.lock();
            let entry = slots
                .entry(slot.clone())
                .or_insert_with(|| (Arc::new(tokio::sync::Mutex::new(())), 0));
            entry.1 += 1;
            entry.0.clone()
        };
        let user = SlotUser { locks: self, slot };
        KeyGuard {
            _held: mutex.lock_owned().await,
            _user: user,
        }
    }
}

impl Drop for SlotUser<'_> {
    fn drop(&mut self) {
        let mut slots = self.locks.slots.lock();
        if let Some(entry) = slots.get_mut(&self.slot) {
            entry.1 -= 1;
            if entry.1 == 0 {
                slots.remove(&self.slot);
            }
        }
    }
}

/// The process-wide lock table. A static rather than a field of `AppState`
/// because route modules can't add state; keys include the random account id, so
/// several servers in one test process never share a slot.
pub static KEY_LOCKS: LazyLock<KeyLocks> = LazyLock::new(KeyLocks::default);

/// A card charged for one deposit request.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ChargeMark {
    /// The engine fingerprint of the deposit command charged for.
    pub fingerprint: u64,
    /// A salted SHA-256 of the full card number (salt random per process).
    pub card: [u8; 32],
    at: Instant,
}

/// Remembered charges, bounded in count and age.
pub struct Charges {
    salt: [u8; 32],
    marks: Mutex<HashMap<Slot, ChargeMark>>,
}

/// At most this many charges are remembered; past it the oldest hour goes first.
const CHARGES_MAX: usize = 100_000;
/// How long a charge is remembered: the engine's default key retention.
const CHARGE_RETENTION: Duration = Duration::from_secs(24 * 3600);

impl Charges {
    fn new() -> Self {
        Charges {
            salt: rand::random(),
            marks: Mutex::new(HashMap::new()),
        }
    }

    /// The salted digest of a card number.
    pub fn digest(&self, card: &CardNumber) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update(card.digits().as_bytes());
        h.finalize().into()
    }

    pub fn get(&self, account: AccountId, key: &IdempotencyKey) -> Option<ChargeMark> {
        self.marks
            .lock()
            .get(&(account, key.clone()))
            .copied()
            .filter(|m| m.at.elapsed() < CHARGE_RETENTION)
    }

    /// Records that `card` was charged for the request `fingerprint` under `key`.
    pub fn record(
        &self,
        account: AccountId,
        key: &IdempotencyKey,
        fingerprint: u64,
        card: [u8; 32],
    ) {
        let mut marks = self.marks.lock();
        if marks.len() >= CHARGES_MAX {
            marks.retain(|_, m| m.at.elapsed() < CHARGE_RETENTION);
            let mut horizon = CHARGE_RETENTION;
            while marks.len() >= CHARGES_MAX && horizon > Duration::ZERO {
                horizon = horizon.saturating_sub(Duration::from_secs(3600));
                marks.retain(|_, m| m.at.elapsed() < horizon);
            }
        }
        marks.insert(
            (account, key.clone()),
            ChargeMark {
                fingerprint,
                card,
                at: Instant::now(),
            },
        );
    }
}

/// The process-wide charge memory (a static for the same reason as [`KEY_LOCKS`]).
pub static CHARGES: LazyLock<Charges> = LazyLock::new(Charges::new);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn same_slot_is_serialized_and_slots_are_dropped() {
        let locks = KeyLocks::default();
        let key = IdempotencyKey::parse("k").unwrap();
        let a = locks.lock(AccountId(1), &key).await;
        // Another key or account is not blocked.
        let _b = locks.lock(AccountId(2), &key).await;
        let second = locks.lock(AccountId(1), &key);
        tokio::pin!(second);
        assert!(tokio::time::timeout(Duration::from_millis(20), &mut second)
            .await
            .is_err());
        drop(a);
        drop(second.await);
        // A waiter that gives up still frees its slot.
        let waiting = locks.lock(AccountId(2), &key);
        assert!(tokio::time::timeout(Duration::from_millis(20), waiting)
            .await
            .is_err());
        drop(_b);
        assert!(locks.slots.lock().is_empty());
    }

    #[test]
    fn charges_tell_cards_apart_without_storing_them() {
        let charges = Charges::new();
        let a = CardNumber::parse("4111111111111111").unwrap();
        let b = CardNumber::parse("4000000000061111").unwrap();
        assert_eq!(a.masked(), b.masked());
        assert_ne!(charges.digest(&a), charges.digest(&b));
        let key = IdempotencyKey::parse("k").unwrap();
        charges.record(AccountId(1), &key, 7, charges.digest(&a));
        let mark = charges.get(AccountId(1), &key).unwrap();
        assert_eq!((mark.fingerprint, mark.card), (7, charges.digest(&a)));
        assert!(charges.get(AccountId(2), &key).is_none());
    }
}
