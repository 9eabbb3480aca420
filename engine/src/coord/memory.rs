//! [`Coord`] in one process: the memory and embedded stores serve exactly one
//! `okpay` node, so shared state is this process's state and the bus has nobody
//! to reach.
//!
//! Everything is bounded: each window scope keeps at most [`MAX_KEYS`] keys (when
//! full, keys whose window passed go first, then the tenth idle the longest, so a
//! flood of distinct client keys cannot grow it), each key at most `max` times;
//! at most [`MAX_KEYS`] locks are held at once (beyond, a retryable
//! `Unavailable`); feeds keep their newest `keep` entries; values are few, named
//! by code.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::broadcast;

use super::{check_key, BusEvent, Coord, Membership, Window};
use crate::store::{StoreError, StoreFuture};

/// Keys per window scope, and locks held at once, at most.
pub const MAX_KEYS: usize = 100_000;

/// Values (`put`) and feeds at most: their names come from code, so this is
/// only a guard against a bug.
const MAX_NAMES: usize = 1_000;

type Times = VecDeque<Instant>;

/// The in-process coordination state.
pub struct LocalCoord {
    windows: Mutex<HashMap<String, HashMap<String, Times>>>,
    locks: Mutex<HashMap<String, (u64, Instant)>>,
    values: Mutex<HashMap<String, String>>,
    feeds: Mutex<HashMap<String, VecDeque<Vec<u8>>>>,
    /// Never sent on: kept so receivers stay open (and silent).
    bus: broadcast::Sender<BusEvent>,
    max_keys: usize,
}

impl Default for LocalCoord {
    fn default() -> Self {
        Self::with_max_keys(MAX_KEYS)
    }
}

impl LocalCoord {
    pub fn new() -> Self {
        Self::default()
    }

    /// With a smaller bound on keys per scope and locks (tests).
    pub fn with_max_keys(max_keys: usize) -> Self {
        LocalCoord {
            windows: Mutex::new(HashMap::new()),
            locks: Mutex::new(HashMap::new()),
            values: Mutex::new(HashMap::new()),
            feeds: Mutex::new(HashMap::new()),
            bus: broadcast::channel(1).0,
            max_keys: max_keys.max(1),
        }
    }

    /// Keys held by `scope` (tests check the bound).
    pub fn window_keys(&self, scope: &str) -> usize {
        self.windows.lock().get(scope).map_or(0, HashMap::len)
    }

    fn blocked_now(times: &mut Times, limit: Window, now: Instant) -> Option<Duration> {
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= limit.window)
        {
            times.pop_front();
        }
        (times.len() >= limit.max.max(1) as usize).then(|| {
            // The oldest hit leaving the window frees one attempt.
            let oldest = times[0];
            limit
                .window
                .saturating_sub(now.duration_since(oldest))
                .max(Duration::from_millis(1))
        })
    }

    fn window(&self, scope: &str, key: &str, limit: Window, hit: bool) -> Option<Duration> {
        let now = Instant::now();
        let mut scopes = self.windows.lock();
        if !hit {
            let keys = scopes.get_mut(scope)?;
            let times = keys.get_mut(key)?;
            let blocked = Self::blocked_now(times, limit, now);
            if times.is_empty() {
                keys.remove(key);
            }
            return blocked;
        }
        if scopes.len() >= MAX_NAMES && !scopes.contains_key(scope) {
            scopes.clear();
        }
        let keys = scopes.entry(scope.to_owned()).or_default();
        if !keys.contains_key(key) && keys.len() >= self.max_keys {
            evict(keys, limit.window, now);
        }
        let times = keys.entry(key.to_owned()).or_default();
        times.push_back(now);
        while times.len() > limit.max.max(1) as usize {
            times.pop_front();
        }
        Self::blocked_now(times, limit, now)
    }
}

/// Frees room in a full scope: keys whose window passed, then the tenth idle
/// the longest.
fn evict(keys: &mut HashMap<String, Times>, window: Duration, now: Instant) {
    keys.retain(|_, t| t.back().is_some_and(|l| now.duration_since(*l) < window));
    if keys.is_empty() {
        return;
    }
    let mut last: Vec<Instant> = keys.values().filter_map(|t| t.back().copied()).collect();
    if last.is_empty() {
        return;
    }
    last.sort_unstable();
    let cut = last[(last.len() / 10).min(last.len() - 1)];
    keys.retain(|_, t| t.back().is_some_and(|l| *l > cut));
}

fn ready<'a, T: Send + 'a>(value: Result<T, StoreError>) -> StoreFuture<'a, T> {
    Box::pin(std::future::ready(value))
}

impl Coord for LocalCoord {
    fn window_blocked(
        &self,
        scope: &str,
        key: &str,
        limit: Window,
    ) -> StoreFuture<'_, Option<Duration>> {
        ready(check_key("key", key).map(|()| self.window(scope, key, limit, false)))
    }

    fn window_hit(
        &self,
        scope: &str,
        key: &str,
        limit: Window,
    ) -> StoreFuture<'_, Option<Duration>> {
        ready(check_key("key", key).map(|()| self.window(scope, key, limit, true)))
    }

    fn try_lock(&self, name: &str, token: u64, ttl: Duration) -> StoreFuture<'_, bool> {
        let taken = check_key("lock name", name).and_then(|()| {
            let now = Instant::now();
            let mut locks = self.locks.lock();
            if let Some((_, until)) = locks.get(name) {
                if *until > now {
                    return Ok(false);
                }
            }
            if locks.len() >= self.max_keys {
                locks.retain(|_, (_, until)| *until > now);
                if locks.len() >= self.max_keys {
                    return Err(StoreError::Unavailable("too many locks held".into()));
                }
            }
            locks.insert(name.to_owned(), (token, now + ttl));
            Ok(true)
        });
        ready(taken)
    }

    fn unlock(&self, name: &str, token: u64) -> StoreFuture<'_, ()> {
        let mut locks = self.locks.lock();
        if locks.get(name).is_some_and(|(t, _)| *t == token) {
            locks.remove(name);
        }
        ready(Ok(()))
    }

    fn put(&self, name: &str, value: &str) -> StoreFuture<'_, ()> {
        let done = check_key("value name", name).and_then(|()| {
            let mut values = self.values.lock();
            if values.len() >= MAX_NAMES && !values.contains_key(name) {
                return Err(StoreError::Unavailable("too many shared values".into()));
            }
            values.insert(name.to_owned(), value.to_owned());
            Ok(())
        });
        ready(done)
    }

    fn get(&self, name: &str) -> StoreFuture<'_, Option<String>> {
        ready(Ok(self.values.lock().get(name).cloned()))
    }

    fn feed_push(&self, name: &str, entry: Vec<u8>, keep: usize) -> StoreFuture<'_, ()> {
        let done = check_key("feed name", name).and_then(|()| {
            let mut feeds = self.feeds.lock();
            if feeds.len() >= MAX_NAMES && !feeds.contains_key(name) {
                return Err(StoreError::Unavailable("too many feeds".into()));
            }
            let feed = feeds.entry(name.to_owned()).or_default();
            feed.push_back(entry);
            while feed.len() > keep.max(1) {
                feed.pop_front();
            }
            Ok(())
        });
        ready(done)
    }

    fn feed_newest(&self, name: &str, limit: usize) -> StoreFuture<'_, Vec<Vec<u8>>> {
        let newest = self
            .feeds
            .lock()
            .get(name)
            .map(|f| f.iter().rev().take(limit).cloned().collect())
            .unwrap_or_default();
        ready(Ok(newest))
    }

    fn publish(&self, _topic: &str, _payload: Vec<u8>) -> StoreFuture<'_, ()> {
        // One process is the whole deployment: whoever publishes already did the
        // local part itself.
        ready(Ok(()))
    }

    fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.bus.subscribe()
    }

    fn is_shared(&self) -> bool {
        false
    }

    fn membership(&self, _shards: u16) -> StoreFuture<'_, Option<Membership>> {
        ready(Ok(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        super::super::conformance::run_all(&LocalCoord::new()).await;
    }

    #[tokio::test]
    async fn a_flood_of_keys_stays_bounded() {
        let coord = LocalCoord::with_max_keys(50);
        let limit = Window {
            max: 2,
            window: Duration::from_secs(60),
        };
        for i in 0..1_000 {
            coord
                .window_hit("s", &format!("k{i}"), limit)
                .await
                .unwrap();
            assert!(coord.window_keys("s") <= 50);
        }
        // The newest key survived the evictions.
        assert!(coord
            .window_hit("s", "k999", limit)
            .await
            .unwrap()
            .is_some());
    }

    #[tokio::test]
    async fn too_many_locks_is_a_retryable_error() {
        let coord = LocalCoord::with_max_keys(3);
        for i in 0..3 {
            assert!(coord
                .try_lock(&format!("l{i}"), 1, Duration::from_secs(60))
                .await
                .unwrap());
        }
        assert!(matches!(
            coord.try_lock("l9", 1, Duration::from_secs(60)).await,
            Err(StoreError::Unavailable(_))
        ));
        coord.unlock("l0", 1).await.unwrap();
        assert!(coord
            .try_lock("l9", 1, Duration::from_secs(60))
            .await
            .unwrap());
    }
}
