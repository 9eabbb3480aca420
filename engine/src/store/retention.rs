//! History retention: the time buckets of history rows and the retention cutoff,
//! one definition for every backend.
//!
//! A row whose key time (the 16 hex digits of ms it starts with) is before the
//! cutoff (`now - Policy::history_retention_days`) is past retention: reads given
//! the cutoff ([`super::Store::history_since`]) leave it out, as a plain lower
//! bound on keys (`<16 hex of the cutoff>`, so it costs nothing and needs no
//! decoding). Physically, rows are dropped a whole **bucket** at a time by
//! [`super::Store::drop_history_before`], never row by row: a bucket is
//! [`BUCKET_MS`] (7 days) of key time, `ms / BUCKET_MS`, and it goes once it lies
//! entirely before the cutoff. Every version of one row has the same key, hence
//! the same time and the same bucket, so a replaced row never straddles two.
//!
//! The bucket width is part of the stored contract (Redis key names and the
//! embedded tables carry bucket numbers): changing it needs a new layout.
//! Only keys of the engine's shape (`codec::row`: time, kind, op id; every row
//! the engine writes) have a bucket; a row with any other key has none and is
//! never dropped (reads still leave it out when it sorts before the cutoff).
//! Seven days keep a bucket small enough that at most a week of rows outlives
//! the retention on disk, and few enough (about 365 in the default 7 years) that
//! a page walking buckets newest to oldest, or a sweep, stays cheap.

use crate::codec::row::key_ms;
use crate::time::Timestamp;

/// The width of a history bucket: 7 days of key time.
pub const BUCKET_MS: u64 = 7 * 86_400_000;

/// What one call of [`super::Store::drop_history_before`] dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistorySweep {
    /// Buckets dropped (on Redis, one per shard and bucket).
    pub buckets: u64,
    /// Rows they held (every stored version counted).
    pub rows: u64,
    /// Whether buckets entirely before the cutoff remain (the call's bound was
    /// reached): call again.
    pub more: bool,
}

/// The bucket of a row key, or `None` for a key not of the engine's shape.
pub fn bucket_of(key: &str) -> Option<u64> {
    key_ms(key).map(|ms| ms / BUCKET_MS)
}

/// The first bucket not entirely before `cutoff_ms`: every bucket below it holds
/// only rows past retention, and may be dropped.
pub fn first_kept_bucket(cutoff_ms: i64) -> u64 {
    u64::try_from(cutoff_ms).map_or(0, |ms| ms / BUCKET_MS)
}

/// The newest bucket that may hold a key below `before` (`None`: any bucket).
/// A key below `before` has a time at most that of `before`'s first 16 hex
/// digits; when `before` does not start with 16 lower-case hex digits, no
/// bucket can be ruled out.
pub fn last_bucket_before(before: Option<&str>) -> Option<u64> {
    let ms = crate::codec::row::hex16(before?.as_bytes().get(..16)?)?;
    Some(ms / BUCKET_MS)
}

/// The smallest row key kept at `cutoff_ms` (rows with smaller keys are past
/// retention), or `None` when nothing is (a cutoff at or before the epoch).
pub fn first_kept_key(cutoff_ms: Option<i64>) -> Option<String> {
    let ms = u64::try_from(cutoff_ms?).ok().filter(|&ms| ms > 0)?;
    let mut key = String::with_capacity(16);
    crate::ids::push_hex16(&mut key, ms);
    Some(key)
}

/// The smallest row key of `bucket`'s time (its first millisecond's 16 hex
/// digits): every key of the bucket is at or above it, every key of an older
/// bucket below (a page that stops at a bucket goes on from here).
pub fn first_key_of_bucket(bucket: u64) -> String {
    let mut key = String::with_capacity(16);
    crate::ids::push_hex16(&mut key, bucket.saturating_mul(BUCKET_MS));
    key
}

/// A page of at most `limit` rows (newest first) read while a bucket walk
/// stopped at `resume` ([`first_key_of_bucket`] of the last bucket read) with
/// older buckets unread: the rows below `resume` (from layouts or tables
/// without buckets) are left for the next page, which reads those buckets, so
/// pages stay in key order; the cursor goes with the page only if it is short
/// (a full page goes on from its last row).
pub fn cut_at_resume(
    mut page: Vec<crate::store::HistoryRow>,
    resume: Option<String>,
    limit: usize,
) -> (Vec<crate::store::HistoryRow>, Option<String>) {
    let Some(resume) = resume else {
        return (page, None);
    };
    page.retain(|row| row.key >= resume);
    if page.len() == limit {
        (page, None)
    } else {
        (page, Some(resume))
    }
}

/// The retention cutoff at `now` for a retention of `days`.
pub fn cutoff_ms(now: Timestamp, days: u32) -> i64 {
    now.millis().saturating_sub(i64::from(days) * 86_400_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buckets_first_key_is_between_its_keys_and_the_older_buckets() {
        let key = |ms: u64| format!("{ms:016x}tx_{:016x}{:016x}", 7u64, 1u64);
        let first = first_key_of_bucket(3);
        assert_eq!(first, format!("{:016x}", 3 * BUCKET_MS));
        assert!(key(3 * BUCKET_MS) > first && key(4 * BUCKET_MS - 1) > first);
        assert!(key(3 * BUCKET_MS - 1) < first);
        assert_eq!(bucket_of(&key(3 * BUCKET_MS)), Some(3));
    }

    #[test]
    fn buckets_are_weeks_of_the_keys_time() {
        // Stored contract: Redis key names and embedded tables carry these numbers.
        assert_eq!(BUCKET_MS, 604_800_000);
        let key = |ms: u64| format!("{ms:016x}tx_{:016x}{:016x}", 7u64, 1u64);
        assert_eq!(bucket_of(&key(0)), Some(0));
        assert_eq!(bucket_of(&key(604_799_999)), Some(0));
        assert_eq!(bucket_of(&key(604_800_000)), Some(1));
        assert_eq!(bucket_of(&key(1_800_000_000_000)), Some(2976));
        // Keys of other shapes have no bucket.
        assert_eq!(bucket_of("0000000000000001t1"), None);
        assert_eq!(bucket_of("k1"), None);
    }

    #[test]
    fn cutoffs() {
        assert_eq!(first_kept_bucket(-5), 0);
        assert_eq!(first_kept_bucket(604_800_000 * 3 - 1), 2);
        assert_eq!(first_kept_bucket(604_800_000 * 3), 3);
        assert_eq!(first_kept_key(None), None);
        assert_eq!(first_kept_key(Some(0)), None);
        assert_eq!(first_kept_key(Some(-1)), None);
        assert_eq!(
            first_kept_key(Some(255)).as_deref(),
            Some("00000000000000ff")
        );
        assert_eq!(cutoff_ms(Timestamp(86_400_000 * 10), 3), 86_400_000 * 7);
        let at = |ms: u64| format!("{ms:016x}");
        assert_eq!(last_bucket_before(None), None);
        assert_eq!(last_bucket_before(Some(&at(BUCKET_MS * 2))), Some(2));
        assert_eq!(
            last_bucket_before(Some(&format!("{}tx_", at(BUCKET_MS - 1)))),
            Some(0)
        );
        assert_eq!(last_bucket_before(Some("0")), None);
        assert_eq!(last_bucket_before(Some("~")), None);
        assert_eq!(last_bucket_before(Some("+000000000000001")), None);
        assert_eq!(last_bucket_before(Some("000000000000000A")), None);
    }
}
