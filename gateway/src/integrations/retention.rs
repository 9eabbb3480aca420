//! Keeps three ever-growing indexes bounded by time: the log of webhook messages
//! kept for replays (`webhook_log`, [`LOG_RETENTION`]), the set of processor
//! callback ids already handled (`callback_seen`, [`SEEN_RETENTION`]), and the
//! global session index (`session`), whose entries of expired sessions go (the
//! account refuses those tokens anyway; nothing ever reads the entry again). A
//! task trims them at start-up and then every [`TRIM_EVERY`].
//!
//! A session entry says when its session expires; an entry written before that
//! was indexed names only the account, so the sweep asks the account whether
//! the token is still one of its live sessions (once: such entries are either
//! dropped or live out their last 30 days).
//!
//! Forgetting a seen callback id is safe once no message with that id can pass
//! the signature check again: a signed timestamp more than five minutes from now
//! is refused (`signature::TOLERANCE_S`), so after a day the id is only a
//! memory. The webhook log is what `POST /v1/admin/webhooks/{id}/replay` sends
//! again; messages older than the retention are no longer replayed.
//!
//! The same task drops the history rows past `history_retention_days` (policy),
//! whole time buckets at a time (`okpay_engine::store::retention`), at the
//! engine clock's time.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use okpay_engine::coord::Coord;
use okpay_engine::ids::AccountId;
use okpay_engine::store::retention::HistorySweep;
use okpay_engine::store::Store;
use okpay_engine::{Engine, EngineError, Rejection};

use super::webhooks::LOG_INDEX;
use crate::routes::callbacks::SEEN_INDEX;
use crate::routes::sessions::SESSION_INDEX;

/// How long webhook messages stay replayable.
pub const LOG_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long a handled callback id is remembered (far beyond the signature's
/// five-minute window).
pub const SEEN_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// How often the indexes are trimmed.
pub const TRIM_EVERY: Duration = Duration::from_secs(3600);
/// Entries read per page while trimming.
const PAGE: usize = 500;
/// History buckets dropped per store call (per shard on Redis), and calls per
/// run: a backlog beyond that (a first run over years of rows) goes next hour.
const HISTORY_BUCKETS_PER_CALL: usize = 16;
const HISTORY_CALLS_MAX: usize = 64;

/// Trims the indexes now, then every [`TRIM_EVERY`], until the process ends;
/// with several nodes, only the node that claims the hour trims (`crate::jobs`).
pub async fn run(engine: Engine, coord: Arc<dyn Coord>) {
    loop {
        // The claim lasts a little less than the pause, so the next hour's
        // trim is not refused by this one's claim.
        if !crate::jobs::claim(&coord, "retention", TRIM_EVERY - TRIM_EVERY / 12).await {
            tokio::time::sleep(TRIM_EVERY).await;
            continue;
        }
        let now = crate::clock::now(&engine);
        let store = engine.store().clone();
        match trim_log(&store, now, LOG_RETENTION).await {
            Ok(n) if n > 0 => tracing::info!(removed = n, "old webhook messages trimmed"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "webhook log not trimmed"),
        }
        match trim_seen(&store, now, SEEN_RETENTION).await {
            Ok(n) if n > 0 => tracing::info!(removed = n, "old callback ids trimmed"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "callback ids not trimmed"),
        }
        match drop_old_history(&engine, now).await {
            Ok(swept) if swept.buckets > 0 => tracing::info!(
                buckets = swept.buckets,
                rows = swept.rows,
                more = swept.more,
                "history rows past retention dropped"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "old history rows not dropped"),
        }
        match trim_sessions(&engine, now).await {
            Ok(n) if n > 0 => {
                tracing::info!(removed = n, "expired sessions' index entries trimmed")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "session index not trimmed"),
        }
        tokio::time::sleep(TRIM_EVERY).await;
    }
}

/// Removes the entries of `index` for which `old` holds; returns how many.
async fn trim(
    store: &Arc<dyn Store>,
    index: &str,
    old: impl Fn(&str, &str) -> bool,
) -> anyhow::Result<usize> {
    let mut removed = 0;
    let mut after: Option<String> = None;
    loop {
        let page = store.scan_index(index, after.as_deref(), PAGE).await?;
        for (key, value) in &page {
            if old(key, value) {
                store.delete_index(index, key).await?;
                removed += 1;
            }
        }
        if page.len() < PAGE {
            return Ok(removed);
        }
        after = page.last().map(|(k, _)| k.clone());
    }
}

fn cutoff(now: DateTime<Utc>, keep: Duration) -> i64 {
    now.timestamp_millis() - i64::try_from(keep.as_millis()).unwrap_or(i64::MAX)
}

/// Webhook messages older than `keep` (their `msg_<Unix ms>…` id tells when).
pub async fn trim_log(
    store: &Arc<dyn Store>,
    now: DateTime<Utc>,
    keep: Duration,
) -> anyhow::Result<usize> {
    let before = cutoff(now, keep);
    trim(store, LOG_INDEX, |key, _| {
        key.rsplit_once(":msg_")
            .and_then(|(_, id)| id.get(..13))
            .and_then(|ms| ms.parse::<i64>().ok())
            // An entry that does not say when is kept (and logged nowhere: it
            // is not ours to judge).
            .is_some_and(|ms| ms < before)
    })
    .await
}

/// Drops the history buckets entirely past the retention at `now`.
pub async fn drop_old_history(engine: &Engine, now: DateTime<Utc>) -> anyhow::Result<HistorySweep> {
    let cutoff = engine
        .policy()
        .history_cutoff_ms(crate::clock::to_engine(now));
    let shards: Vec<_> = engine.layout().all().collect();
    let mut total = HistorySweep::default();
    for _ in 0..HISTORY_CALLS_MAX {
        let swept = engine
            .store()
            .drop_history_before(shards.clone(), cutoff, HISTORY_BUCKETS_PER_CALL)
            .await?;
        total.buckets += swept.buckets;
        total.rows += swept.rows;
        total.more = swept.more;
        if !swept.more {
            break;
        }
    }
    Ok(total)
}

/// Whether the session index entry `key` (the token hash in hex) → `value` is
/// dead at `now`: expired, or (entries without an expiry) no longer a live
/// session of its account.
async fn session_dead(engine: &Engine, key: &str, value: &str, now: DateTime<Utc>) -> bool {
    if let Some(ms) = crate::routes::sessions::indexed_expiry_ms(value) {
        return ms <= now.timestamp_millis();
    }
    let Ok(account) = crate::routes::sessions::indexed_account(value).parse::<AccountId>() else {
        // Not an entry this code wrote: keep it.
        return false;
    };
    let key = key.to_owned();
    let now = crate::clock::to_engine(now);
    match engine
        .read(account, move |s, _, _| {
            s.sessions
                .iter()
                .any(|x| crate::auth::hash_hex(&x.token_hash) == key && x.expires_at > now)
        })
        .await
    {
        Ok(live) => !live,
        Err(EngineError::Rejected(Rejection::AccountNotFound)) => true,
        // Unknown now (storage trouble): decided at the next sweep.
        Err(_) => false,
    }
}

/// Drops the session index entries of expired (or otherwise gone) sessions.
pub async fn trim_sessions(engine: &Engine, now: DateTime<Utc>) -> anyhow::Result<usize> {
    let store = engine.store().clone();
    let mut removed = 0;
    let mut after: Option<String> = None;
    loop {
        let page = store
            .scan_index(SESSION_INDEX, after.as_deref(), PAGE)
            .await?;
        for (key, value) in &page {
            if session_dead(engine, key, value, now).await {
                store.delete_index(SESSION_INDEX, key).await?;
                removed += 1;
            }
        }
        if page.len() < PAGE {
            return Ok(removed);
        }
        after = page.last().map(|(k, _)| k.clone());
    }
}

/// Callback ids handled more than `keep` ago (the value is when).
pub async fn trim_seen(
    store: &Arc<dyn Store>,
    now: DateTime<Utc>,
    keep: Duration,
) -> anyhow::Result<usize> {
    let before = cutoff(now, keep);
    trim(store, SEEN_INDEX, |_, value| {
        DateTime::parse_from_rfc3339(value).is_ok_and(|at| at.timestamp_millis() < before)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use okpay_engine::store::memory::MemoryStore;

    #[tokio::test]
    async fn old_entries_go_and_recent_ones_stay() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let now: DateTime<Utc> = "2026-11-29T12:00:00Z".parse().unwrap();
        let day = chrono::Duration::days(1);
        let ms = |t: DateTime<Utc>| t.timestamp_millis();
        for (key, at) in [
            ("whk_1:msg_", now - day * 8),
            ("whk_1:msg_", now - day * 6),
            ("whk_2:msg_", now - day * 30),
            ("whk_2:msg_", now),
        ] {
            let key = format!("{key}{:013}{:016x}", ms(at), ms(at));
            store.claim_index(LOG_INDEX, &key, "sealed").await.unwrap();
        }
        store
            .claim_index(LOG_INDEX, "whk_3:odd", "sealed")
            .await
            .unwrap();
        for (key, at) in [
            ("processor:a", now - day * 2),
            ("processor:b", now - chrono::Duration::hours(1)),
            ("payouts:c", now - day * 40),
        ] {
            store
                .claim_index(SEEN_INDEX, key, &at.to_rfc3339())
                .await
                .unwrap();
        }
        assert_eq!(trim_log(&store, now, LOG_RETENTION).await.unwrap(), 2);
        assert_eq!(trim_seen(&store, now, SEEN_RETENTION).await.unwrap(), 2);
        let log: Vec<String> = store
            .scan_index(LOG_INDEX, None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(log.len(), 3, "{log:?}");
        assert!(log.iter().any(|k| k == "whk_3:odd"));
        let seen: Vec<String> = store
            .scan_index(SEEN_INDEX, None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(seen, ["processor:b"]);
        // Trimming again removes nothing.
        assert_eq!(trim_log(&store, now, LOG_RETENTION).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn history_past_retention_goes_whole_weeks_at_the_engine_clock() {
        use okpay_engine::store::retention::BUCKET_MS;
        use okpay_engine::store::HistoryRow;
        use okpay_engine::time::{ManualClock, Timestamp};
        use okpay_engine::EngineConfig;

        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        // Day 1000 of the epoch, a retention of 10 days.
        let clock = ManualClock::new(Timestamp(1000 * 86_400_000));
        let policy = okpay_engine::policy::Policy {
            history_retention_days: 10,
            ..Default::default()
        };
        let engine = Engine::start(
            EngineConfig {
                policy,
                clock: Arc::new(clock.clone()),
                ..EngineConfig::default()
            },
            store.clone(),
        )
        .await
        .unwrap();
        let account = AccountId(7);
        let shard = engine.layout().shard_of(account);
        let key = |day: u64| format!("{:016x}tx_{:016x}{:016x}", day * 86_400_000, 7, day);
        let rows = [960, 975, 985, 988, 999]
            .map(|day| {
                (
                    shard,
                    account,
                    HistoryRow {
                        key: key(day),
                        payload: b"row".to_vec(),
                        replaces: false,
                    },
                )
            })
            .to_vec();
        store.put_history(rows, Vec::new()).await.unwrap();
        // The cutoff is day 990, in bucket 990 * 86_400_000 / BUCKET_MS = 141
        // (days 987..994): buckets 137 (day 960), 139 (975) and 140 (985) go;
        // day 988 is before the cutoff but goes only with its week, after day
        // 994 (reads leave it out meanwhile).
        assert_eq!(990 * 86_400_000 / BUCKET_MS, 141);
        let now = crate::clock::now(&engine);
        let swept = drop_old_history(&engine, now).await.unwrap();
        assert_eq!((swept.buckets, swept.rows, swept.more), (3, 3, false));
        let left: Vec<String> = store
            .history(shard, account, None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.key)
            .collect();
        assert_eq!(left, [key(999), key(988)]);
        // Again: nothing left to drop.
        let swept = drop_old_history(&engine, now).await.unwrap();
        assert_eq!(swept, HistorySweep::default());
    }
}
