//! The Redis [`Store`]: production and multi-node storage, one journal per account.
//!
//! # Key layout
//!
//! Everything about one account lives under one hash tag, so every multi-key script
//! touches a single slot and the layout works unchanged on Redis Cluster:
//!
//! | key                              | type   | content                                       |
//! |----------------------------------|--------|-----------------------------------------------|
//! | `okpay:{acc_<hex>}:journal`      | stream | one entry per record, id `<seq>-1`, field `p` = payload |
//! | `okpay:{acc_<hex>}:seq`          | string | last stored seq (survives trimming)           |
//! | `okpay:{acc_<hex>}:snapshot`     | hash   | `seq`, `payload`                              |
//! | `okpay:{acc_<hex>}:history`      | hash   | history row key → payload (never trimmed)     |
//! | `okpay:{acc_<hex>}:history:keys` | zset   | the same row keys, all score 0, for ordered pages |
//! | `okpay:{sNNN}:hist:<bucket>`     | zset   | history rows of shard NNN's accounts whose key time is in `<bucket>` (decimal, 7 days each: `store::retention`) (layout 5), all score 0: compact members `<account: 8 bytes BE><binary key><body>` (`codec::row`); written fenced by the lease epoch in `okpay:{sNNN}:pos`; dropped whole once past retention |
//! | `okpay:{sNNN}:hist:buckets`      | zset   | the buckets of the shard holding layout-5 rows: member and score the bucket number |
//! | `okpay:{sNNN}:hist`              | zset   | layout 4 of the same rows (the members of layout 5, in one set): read, no longer written, never swept |
//! | `okpay:{sNNN}:rowset`            | zset   | layout 3 of the same rows, all score 0: `<account: 8 bytes BE><row key>\0<row>`; still written for keys that are not of the engine's shape, read for all |
//! | `okpay:{sNNN}:rows`, `…:rows:keys` | hash, zset | the previous layout of the same rows (`<account>:<row key>` → row; the fields), read, no longer written |
//! | `okpay:accounts`                 | zset   | account ids, all score 0                      |
//! | `okpay:idx:{<name>}`             | hash   | index key → value                             |
//! | `okpay:idx:{<name>}:keys`        | zset   | the same keys, all score 0, for ordered scans |
//!
//! The journal is a **stream** rather than a list or a sorted set because the stream
//! id carries the seq natively: `XADD` with an explicit id refuses an id that does
//! not grow (a second guard behind the Lua seq check), `XTRIM MINID` trims exactly
//! "everything up to the snapshot", and `XRANGE`/`XREAD` can later tail a journal by
//! seq for cross-node consumers. A list would need index arithmetic to trim, and a
//! sorted set would need the seq folded into each member to keep members unique.
//!
//! Account ids and index keys are listed from sorted sets with all scores 0 through
//! `ZRANGEBYLEX`, which orders by bytes: ids are fixed-width lower-case hex, so byte
//! order is numeric order, and index keys come out in the byte order the trait
//! promises. Pages cost O(log n + limit), however big the set grows. History rows
//! use the same pair of a hash and a score-0 sorted set, read backwards with
//! `ZREVRANGEBYLEX` from `(<before>` (exclusive) or `+`: row keys start with the
//! time, so byte order is time order. Snapshots trim only the journal stream.
//!
//! # History retention
//!
//! Rows of layout 5 sit in one sorted set per shard and time bucket
//! (`store::retention`), so the rows past retention go a whole set at a time: the
//! sweep reads the oldest buckets of each shard's index that lie entirely before
//! the cutoff, then `drop_buckets.lua` `UNLINK`s their sets (freed off Redis's main
//! thread) if the index still lists them there: two round trips, at most one
//! command per shard in each. A page walks the shard's buckets newest first in one
//! call of `hist_page.lua`, from the bucket of `before` down to the cutoff's, until
//! the page is full; the index lets it skip the weeks without rows. Every script
//! declares in `KEYS` each key it touches, as Redis requires (and all the keys of
//! one call carry the shard's hash tag: one slot on a Cluster). The sweep declares
//! the sets it read from the index. A page declares the sets of the 53 weeks from
//! that of `before` down (without one, from the current week) and reads those the
//! index lists; when the walk reaches a week it did not declare (a shard without
//! rows every week), the script names the buckets the walk may read and a second
//! call declares them. A read without a bound on the walk goes on by such calls, 53
//! buckets at most each. Rows of the older layouts (4, 3, 2 and the account's own
//! keys) are still read and merged (a newer layout's version of a row wins) and
//! left out of reads past retention like the rest, but are never swept: moving them
//! into buckets would read every row once, and all of them are past retention
//! within seven years of this layout; an operator may delete those keys then. Rows
//! whose key is not of the engine's shape stay in layout 3 (no bucket).
//!
//! # Append: one pipeline, one round trip
//!
//! On standalone Redis (the default) a whole batch is one `EVALSHA` of
//! [`APPEND_BATCH_LUA`], preceded in the same pipeline by one `ZADD okpay:accounts`
//! listing the accounts whose first record (seq 1) is in the batch. The script checks
//! each record's seq and appends the record and its history rows, or skips it and
//! reports the expected seq. A script is executed atomically and Redis, with
//! `appendfsync always`, fsyncs the AOF once before replying: that is the group
//! commit — one round trip and one fsync per batch, and little per-record overhead
//! (a plain pipeline of many commands is read by Redis in 16 KB chunks and fsync'd
//! after each chunk, which measured about 20 fsyncs for a 1,000-record batch).
//!
//! With [`RedisOptions::cluster`] set (it is set by itself when the URL's node
//! answers `INFO cluster` with `cluster_enabled:1`; see [`super::redis_cluster`]
//! for how commands are routed there), a batch spans many slots, which one script
//! may not touch on Redis Cluster; the batch is then one pipeline of one call of
//! [`APPEND_LUA`] per record (each touching one account's slot), preceded by one
//! `ZADD okpay:accounts` per distinct account. The rows travel in the record's own
//! script call in both modes, so they are written if and only if the record is.
//! Scripts are invoked by hash; after a Redis restart the script cache is empty, so
//! the calls answered `NOSCRIPT` (which ran nothing) are loaded and retried.
//!
//! # Failures
//!
//! The connection is one multiplexed connection shared by all callers, replaced when
//! it fails: any I/O error or timeout drops it and the next operation reconnects, so
//! the store recovers by itself when Redis comes back. Connecting and every round
//! trip are bounded by [`RedisOptions`] (2 s by default), so while Redis is down
//! operations fail fast with [`StoreError::Unavailable`]. Reads and idempotent writes
//! (snapshot, index delete) retry once on a fresh connection when the old one turns
//! out dead; appends and claims never retry, because a retried append that had in
//! fact landed would be reported as a conflict, and a retried claim as lost.
//!
//! Seqs are compared as Lua numbers (doubles) inside the scripts, exact up to 2^53,
//! far beyond any journal's length.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

use ::redis::aio::{ConnectionLike, MultiplexedConnection};
use ::redis::{AsyncConnectionConfig, Client, Cmd, Pipeline, RedisError, Script, Value};

use super::redis_cluster::{info_says_cluster, ClusterLink};
use super::redis_config::{DurabilityProblem, DurabilityReport, RedisOptions, REQUIRED_SETTINGS};
use super::{
    AppendResult, HistoryRow, JournalAppend, Loaded, Record, Snapshot, Store, StoreError,
    StoreFuture,
};
use crate::codec::{self, ShardId};
use crate::ids::AccountId;

/// The set of every account with a journal record or snapshot.
const ACCOUNTS_KEY: &str = "okpay:accounts";

/// Appends one journal record with its history rows if its seq follows the last stored
/// one (the per-account journals of the actor runtime, read for moving them into shard
/// logs). KEYS, ARGV and replies: `lua/append_journal.lua`.
const APPEND_LUA: &str = include_str!("lua/append_journal.lua");

/// The same for a whole batch in one call (standalone Redis only). KEYS, ARGV and
/// replies: `lua/append_journal_batch.lua`.
const APPEND_BATCH_LUA: &str = include_str!("lua/append_journal_batch.lua");

/// Stores a snapshot unless a newer or equal one is stored, then trims the journal up
/// to it. KEYS, ARGV and replies: `lua/save_snapshot.lua`.
const SAVE_SNAPSHOT_LUA: &str = include_str!("lua/save_snapshot.lua");

/// Reads a snapshot and its journal in one atomic step. KEYS, ARGV and replies:
/// `lua/load_journal.lua`.
const LOAD_LUA: &str = include_str!("lua/load_journal.lua");

/// Claims an index key unless taken, keeping the ordered key set in step. KEYS, ARGV
/// and replies: `lua/claim_index.lua`.
const CLAIM_INDEX_LUA: &str = include_str!("lua/claim_index.lua");

/// Removes an index key from the hash and the ordered key set. KEYS, ARGV and replies:
/// `lua/delete_index.lua`.
const DELETE_INDEX_LUA: &str = include_str!("lua/delete_index.lua");

/// One page of an index in key order, keys and values in one atomic step. KEYS, ARGV
/// and replies: `lua/scan_index.lua`.
const SCAN_INDEX_LUA: &str = include_str!("lua/scan_index.lua");

/// A Lua script with its SHA1, which `EVALSHA` names it by. (`redis::Script` computes
/// the hash but keeps the source private, and `SCRIPT LOAD` needs the source.)
pub(crate) struct LuaScript {
    source: &'static str,
    hash: String,
}

impl LuaScript {
    pub(crate) fn new(source: &'static str) -> Self {
        Self {
            source,
            hash: Script::new(source).get_hash().to_owned(),
        }
    }

    /// An `EVALSHA` of this script on `keys`; the caller adds the `ARGV` arguments.
    pub(crate) fn call(&'static self, keys: &[&str]) -> Cmd {
        let mut cmd = ::redis::cmd("EVALSHA");
        cmd.arg(&self.hash).arg(keys.len()).arg(keys);
        cmd
    }

    /// The same call as an `EVAL` carrying the source (see [`super::redis_cluster`]
    /// for why a cluster gets these): `evalsha` is a command made by [`call`](Self::call).
    fn as_eval(&self, evalsha: &Cmd) -> Cmd {
        let mut cmd = ::redis::cmd("EVAL");
        cmd.arg(self.source);
        for arg in evalsha.args_iter().skip(2) {
            if let ::redis::Arg::Simple(bytes) = arg {
                cmd.arg(bytes);
            }
        }
        cmd
    }
}

static APPEND: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(APPEND_LUA));
static APPEND_BATCH: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(APPEND_BATCH_LUA));
static SAVE_SNAPSHOT: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(SAVE_SNAPSHOT_LUA));
static LOAD: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(LOAD_LUA));
static CLAIM_INDEX: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(CLAIM_INDEX_LUA));
static DELETE_INDEX: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(DELETE_INDEX_LUA));
static SCAN_INDEX: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(SCAN_INDEX_LUA));
static ROWS: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(include_str!("lua/rows.lua")));
static PUT_ROWSET: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(include_str!("lua/put_rowset.lua")));
static HIST_PAGE: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(include_str!("lua/hist_page.lua")));
static DROP_BUCKETS: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(include_str!("lua/drop_buckets.lua")));

fn journal_key(account: AccountId) -> String {
    format!("okpay:{{{account}}}:journal")
}

fn seq_key(account: AccountId) -> String {
    format!("okpay:{{{account}}}:seq")
}

fn snapshot_key(account: AccountId) -> String {
    format!("okpay:{{{account}}}:snapshot")
}

/// The account's history hash and ordered row key set, under the account's hash tag
/// so the append script can write them with the journal on one Cluster slot.
fn history_keys(account: AccountId) -> (String, String) {
    (
        format!("okpay:{{{account}}}:history"),
        format!("okpay:{{{account}}}:history:keys"),
    )
}

/// A shard's history rows: one hash (field `<account>:<row key>` → row) and its
/// fields in a lexically ordered set, both under the shard's hash tag, so a
/// shard's rows move with it and a batch writes them in one call per shard.
fn rows_keys(shard: ShardId) -> (String, String) {
    let tag = shard.tag();
    (
        format!("okpay:{{{tag}}}:rows"),
        format!("okpay:{{{tag}}}:rows:keys"),
    )
}

/// How many of a shard's week buckets one page of history walks at most (a
/// year's): each is a range lookup in Redis (~1.3 µs with the script's loop),
/// so an account with few rows costs ~70 µs a page however long the retention;
/// its older rows are the next pages'. Also how many bucket sets one call of
/// hist_page.lua declares at most (a read without a bound goes on by such calls).
const WALK_MAX: u64 = 53;

/// How many times a page asks again when hist_page.lua names bucket sets the
/// call did not declare: once is the rule (the guess missed, the second call
/// declares what the index listed); more only while new buckets keep appearing
/// in the walked weeks between the two calls.
const WALK_CALLS_MAX: u32 = 4;

/// One walk of a shard's layout-5 buckets by hist_page.lua: the buckets from
/// `high` down to `low` (`None`: unbounded), at most `walk` of them, each read
/// between the member bounds `upper` and `lower`.
struct BucketWalk {
    shard: ShardId,
    high: Option<u64>,
    low: Option<u64>,
    upper: Vec<u8>,
    lower: Vec<u8>,
    walk: u64,
}

/// What one call of hist_page.lua answered.
enum WalkReply {
    /// Members, newest first, and the last bucket walked when the page is short
    /// with older buckets unread.
    Page {
        members: Vec<Vec<u8>>,
        resume: Option<u64>,
    },
    /// The walk reached a set the call did not declare: the buckets it may read.
    Need(Vec<u64>),
}

impl BucketWalk {
    /// The buckets a call declares when nothing better is known: the `walk`
    /// weeks (at most [`WALK_MAX`]) from `high` down (none below `low`). From a page's first key they
    /// are the walk's buckets when the shard has rows every week (a busy
    /// shard); without one, `high` is the current week's next (rows are written
    /// at their time, so at most a clock's skew later). A miss costs one more
    /// call (hist_page.lua's `need`), never a wrong page.
    fn guess(&self) -> Vec<u64> {
        let top = self.high.unwrap_or_else(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            (now / super::retention::BUCKET_MS).saturating_add(1)
        });
        let bottom = self
            .low
            .unwrap_or(0)
            .max(top.saturating_sub(self.walk.clamp(1, WALK_MAX) - 1));
        (bottom..=top).rev().collect()
    }

    /// A call of hist_page.lua declaring the sets of `buckets`, for at most
    /// `limit` members.
    fn call(&self, limit: usize, buckets: &[u64]) -> Cmd {
        let index = hist_index_key(self.shard);
        let mut keys = Vec::with_capacity(buckets.len() + 1);
        keys.push(index);
        keys.extend(buckets.iter().map(|&b| hist_bucket_key(self.shard, b)));
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let mut cmd = HIST_PAGE.call(&keys);
        cmd.arg(self.high.map_or("+inf".into(), |b| b.to_string()))
            .arg(self.low.map_or("-inf".into(), |b| b.to_string()))
            .arg(&self.upper)
            .arg(&self.lower)
            // A count Lua prints as an integer (below 10^14).
            .arg(limit.min(1 << 40))
            .arg(self.walk.clamp(1, 1 << 40));
        for b in buckets {
            cmd.arg(*b);
        }
        cmd
    }
}

/// A bucket number as the index and hist_page.lua name it (decimal).
fn bucket_number(reply: &[u8]) -> Result<u64, StoreError> {
    std::str::from_utf8(reply)
        .ok()
        .filter(|b| !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit()))
        .and_then(|b| b.parse().ok())
        .ok_or_else(|| StoreError::Corrupt("a history bucket number is not a number".into()))
}

/// Decodes a reply of hist_page.lua.
fn walk_reply(reply: Value) -> Result<WalkReply, StoreError> {
    let mut reply: Vec<Vec<u8>> = from_value(reply)?;
    if reply.is_empty() {
        return Err(StoreError::Corrupt("hist_page.lua answered nothing".into()));
    }
    let head = reply.remove(0);
    if head == b"need" {
        let buckets = reply
            .iter()
            .map(|b| bucket_number(b))
            .collect::<Result<_, _>>()?;
        return Ok(WalkReply::Need(buckets));
    }
    let resume = if head.is_empty() {
        None
    } else {
        Some(bucket_number(&head)?)
    };
    Ok(WalkReply::Page {
        members: reply,
        resume,
    })
}

/// A shard's history rows since layout 3: one score-0 sorted set whose members
/// are `<account: 8 bytes big-endian><row key>\0<row>`, under the shard's hash
/// tag. One `ZADD` member per row instead of a hash field and a sorted-set member
/// each carrying the 73-byte text `<account>:<row key>` (layout 2, [`rows_keys`],
/// still read): about 95 fewer AOF bytes per row. Row keys are ASCII and never
/// hold a zero byte, so the first zero after the account ends the key.
fn rowset_key(shard: ShardId) -> String {
    format!("okpay:{{{}}}:rowset", shard.tag())
}

/// A shard's history rows in layout 4: one score-0 sorted set of compact
/// members (`codec::row`: account, binary key, compact body), about 40 bytes
/// for a transfer's row where layout 3 took 113. Rows whose key does not have
/// the engine's shape stay in layout 3 ([`rowset_key`]). Read, no longer
/// written (layout 5, [`hist_bucket_key`], has the same members by bucket).
fn hist_key(shard: ShardId) -> String {
    format!("okpay:{{{}}}:hist", shard.tag())
}

/// What the names of a shard's layout-5 bucket sets start with.
fn hist_bucket_prefix(shard: ShardId) -> String {
    format!("okpay:{{{}}}:hist:", shard.tag())
}

/// A shard's history rows since layout 5: the members of layout 4, one sorted
/// set per time bucket (`store::retention`: 7 days of key time), so rows past
/// retention go a whole set at a time. Under the shard's hash tag like the
/// rest, so a shard is still one Cluster slot.
fn hist_bucket_key(shard: ShardId, bucket: u64) -> String {
    format!("{}{bucket}", hist_bucket_prefix(shard))
}

/// The buckets of a shard that hold layout-5 rows: a sorted set whose members
/// are the bucket numbers and whose scores are the same numbers, so pages
/// walk only the buckets that exist and the sweep finds the oldest at once.
fn hist_index_key(shard: ShardId) -> String {
    format!("okpay:{{{}}}:hist:buckets", shard.tag())
}

/// One member of a history row set as `put_history` writes it.
struct Member {
    /// The part shared by every version of the row (a replacing row's earlier
    /// versions are the members starting with it).
    prefix: Vec<u8>,
    /// The rest: the layout-5 body, or the layout-3 row.
    rest: Vec<u8>,
    replaces: bool,
}

/// A shard's rows of one `put_history` call by where they go: layout 5 by
/// bucket for rows whose key has the engine's shape, layout 3 for the others;
/// in call order within each, so replacing rows first when sorted so.
#[derive(Default)]
struct ShardRows {
    layout3: Vec<Member>,
    buckets: std::collections::BTreeMap<u64, Vec<Member>>,
}

impl ShardRows {
    fn of(rows: &[(AccountId, &HistoryRow)]) -> ShardRows {
        let mut out = ShardRows::default();
        for (account, row) in rows {
            let encoded = codec::row::encode_member(*account, &row.key, &row.payload);
            match (encoded, super::retention::bucket_of(&row.key)) {
                (Some((prefix, rest)), Some(bucket)) => {
                    out.buckets.entry(bucket).or_default().push(Member {
                        prefix,
                        rest,
                        replaces: row.replaces,
                    })
                }
                _ => out.layout3.push(Member {
                    prefix: rowset_prefix(*account, &row.key),
                    rest: row.payload.clone(),
                    replaces: row.replaces,
                }),
            }
        }
        out
    }
}

/// Layout-4 members of `account` (newest first) as rows; of two members of one
/// key (a late write of a deposed node), the first listed.
fn hist_rows(members: Vec<Vec<u8>>, account: AccountId) -> Result<Vec<HistoryRow>, StoreError> {
    let mut rows: Vec<HistoryRow> = members
        .into_iter()
        .map(|m| {
            let (key, payload) = codec::row::decode_member(account, &m).map_err(|e| {
                StoreError::Corrupt(format!("a history row of {account} is malformed: {e}"))
            })?;
            Ok(HistoryRow {
                key,
                payload,
                replaces: false,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    rows.dedup_by(|later, first| later.key == first.key);
    Ok(rows)
}

/// `<account bytes><row key>`: what a row's members in the row set start with.
fn rowset_prefix(account: AccountId, key: &str) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(8 + key.len() + 1);
    prefix.extend_from_slice(&account.0.to_be_bytes());
    prefix.extend_from_slice(key.as_bytes());
    prefix
}

/// Row-set members of `account` (newest first) as rows. Two members of one
/// row key read as one row: the first listed. Row writes are fenced by the
/// writer's lease epoch now, but a late write of a node that had lost its
/// shard could leave two before they were, and such rows stay stored.
fn rowset_rows(members: Vec<Vec<u8>>, account: AccountId) -> Result<Vec<HistoryRow>, StoreError> {
    let corrupt = || StoreError::Corrupt(format!("a history row of {account} is malformed"));
    let mut rows: Vec<HistoryRow> = members
        .into_iter()
        .map(|m| {
            let rest = m
                .strip_prefix(&account.0.to_be_bytes())
                .ok_or_else(corrupt)?;
            let end = rest.iter().position(|&b| b == 0).ok_or_else(corrupt)?;
            let key = std::str::from_utf8(&rest[..end]).map_err(|_| corrupt())?;
            Ok(HistoryRow {
                key: key.to_owned(),
                payload: rest[end + 1..].to_vec(),
                replaces: false,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    rows.dedup_by(|later, first| later.key == first.key);
    Ok(rows)
}

/// Merges two pages of rows, each newest first (descending key), into the newest
/// `limit`; of two rows with one key, `newer`'s is kept (a row written by the
/// shard path after one written with a journal record is its later version).
fn merge_rows(newer: Vec<HistoryRow>, older: Vec<HistoryRow>, limit: usize) -> Vec<HistoryRow> {
    let mut out = Vec::with_capacity(limit.min(newer.len() + older.len()));
    let (mut a, mut b) = (newer.into_iter().peekable(), older.into_iter().peekable());
    while out.len() < limit {
        let (take_a, same) = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => (x.key >= y.key, x.key == y.key),
            (Some(_), None) => (true, false),
            (None, Some(_)) => (false, false),
            (None, None) => break,
        };
        if same {
            b.next();
        }
        // unwrap: the peeked side has a row.
        out.push(if take_a { a.next() } else { b.next() }.unwrap());
    }
    out
}

/// A flat `{key, payload, ...}` script reply as rows, keys stripped of `prefix`.
fn rows_of(
    flat: Vec<Vec<u8>>,
    prefix: &str,
    account: AccountId,
) -> Result<Vec<HistoryRow>, StoreError> {
    let mut rows = Vec::with_capacity(flat.len() / 2);
    let mut flat = flat.into_iter();
    while let (Some(key), Some(payload)) = (flat.next(), flat.next()) {
        let key = String::from_utf8(key)
            .ok()
            .and_then(|k| k.strip_prefix(prefix).map(str::to_owned))
            .ok_or_else(|| StoreError::Corrupt(format!("history key of {account} is malformed")))?;
        rows.push(HistoryRow {
            key,
            payload,
            replaces: false,
        });
    }
    Ok(rows)
}

/// The index's hash and ordered key set. Both start with the same `{name` prefix, so
/// whatever the name contains they share a hash tag and a Cluster slot.
fn index_keys(index: &str) -> (String, String) {
    (
        format!("okpay:idx:{{{index}}}"),
        format!("okpay:idx:{{{index}}}:keys"),
    )
}

/// One command of a round trip: plain, or a script called by hash (which may have
/// to be loaded and resent, so the script travels with the command).
pub(crate) enum Call {
    Plain(Cmd),
    Script(&'static LuaScript, Cmd),
}

/// Whether a failed round trip may be sent again on a fresh connection.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads and idempotent writes: a second attempt can't do harm.
    Safe,
    /// Appends and claims: a first attempt may have landed, so the caller must learn
    /// that the outcome is unknown.
    Never,
}

/// The live connection and a number identifying it, so that a caller whose request
/// failed drops only the connection it used, never a newer one another caller made.
struct Cached {
    id: u64,
    conn: MultiplexedConnection,
}

/// The Redis-backed store.
pub struct RedisStore {
    client: Client,
    options: RedisOptions,
    /// A tokio mutex (not a blocking one) because connecting happens while holding it:
    /// callers arriving while a reconnect is under way wait for it instead of racing
    /// to open connections of their own.
    conn: tokio::sync::Mutex<Option<Cached>>,
    next_conn_id: AtomicU64,
    /// The shard log on its own connection (so frames never queue behind index
    /// and history traffic), made on first use.
    log: parking_lot::Mutex<Option<std::sync::Arc<super::shard_log::redis::RedisShardLog>>>,
    /// Set when the server is a Redis Cluster: every command then goes through it
    /// (the standalone connection above stays unused).
    cluster: Option<std::sync::Arc<ClusterLink>>,
}

impl RedisStore {
    /// Connects to `url` (`redis://host:port/db`) with default timeouts, and checks
    /// that Redis answers, so a wrong URL fails at start-up rather than at the first
    /// payment.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, RedisOptions::default()).await
    }

    /// [`connect`](Self::connect) with explicit timeouts.
    pub async fn connect_with(url: &str, options: RedisOptions) -> Result<Self, StoreError> {
        let client = Client::open(url)
            .map_err(|e| StoreError::Unavailable(format!("bad redis url: {e}")))?;
        let mut store = Self {
            client,
            options,
            conn: tokio::sync::Mutex::new(None),
            next_conn_id: AtomicU64::new(0),
            log: parking_lot::Mutex::new(None),
            cluster: None,
        };
        // A cluster node answers for its own slots only, so the store must know
        // before its first keyed command which of the two it talks to.
        let mut info = ::redis::cmd("INFO");
        info.arg("cluster");
        let info = store.exec_one(Call::Plain(info), Retry::Safe).await?;
        let info: String = from_value(info)?;
        if info_says_cluster(&info) {
            let link = ClusterLink::connect(store.client.clone(), &store.options).await?;
            store.cluster = Some(std::sync::Arc::new(link));
            store.options.cluster = true;
            *store.conn.get_mut() = None;
        }
        let pong = store
            .exec(vec![Call::Plain(::redis::cmd("PING"))], Retry::Safe)
            .await?;
        reply_error(&pong[0])?;
        Ok(store)
    }

    /// Another handle on the same server with its own standalone connection
    /// (made on first use), so its commands never queue behind this one's; a
    /// cluster connection, which multiplexes per master already, is shared.
    pub fn sibling(&self) -> RedisStore {
        RedisStore {
            client: self.client.clone(),
            options: self.options,
            conn: tokio::sync::Mutex::new(None),
            next_conn_id: AtomicU64::new(0),
            log: parking_lot::Mutex::new(None),
            cluster: self.cluster.clone(),
        }
    }

    /// Another handle with connections of its own even on a cluster, for
    /// blocking commands (`BLPOP`) that must not hold up anyone else's.
    pub async fn detached(&self) -> Result<RedisStore, StoreError> {
        let mut store = self.sibling();
        if self.cluster.is_some() {
            let link = ClusterLink::connect(self.client.clone(), &self.options).await?;
            store.cluster = Some(std::sync::Arc::new(link));
        }
        Ok(store)
    }

    /// The shard log on its own connection (one per store, made on first use).
    pub fn redis_shard_log(&self) -> std::sync::Arc<super::shard_log::redis::RedisShardLog> {
        self.log
            .lock()
            .get_or_insert_with(|| {
                std::sync::Arc::new(super::shard_log::redis::RedisShardLog::over(self.sibling()))
            })
            .clone()
    }

    /// True when the store talks to a Redis Cluster (detected at connect).
    pub fn is_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    /// True when each script must stay within one Cluster slot
    /// ([`RedisOptions::cluster`]: set on a Cluster, or asked for).
    pub(crate) fn one_slot_per_script(&self) -> bool {
        self.options.cluster
    }

    /// Reads the server settings durability depends on; on a cluster, those of
    /// every master, each problem naming its master. Never fails: a setting that
    /// can't be read is itself reported as a problem.
    pub async fn check_durability(&self) -> DurabilityReport {
        let Some(link) = &self.cluster else {
            return self.check_durability_of_this_server().await;
        };
        let masters = match link.masters().await {
            Ok(masters) if !masters.is_empty() => masters,
            Ok(_) => {
                return DurabilityReport {
                    problems: vec![DurabilityProblem::Unreadable {
                        setting: "cluster nodes",
                        why: "no master serves slots".into(),
                    }],
                }
            }
            Err(e) => {
                return DurabilityReport {
                    problems: vec![DurabilityProblem::Unreadable {
                        setting: "cluster nodes",
                        why: e.to_string(),
                    }],
                }
            }
        };
        let mut problems = Vec::new();
        for master in masters {
            let report = match link.client_for(&master) {
                Ok(client) => {
                    let direct = RedisStore {
                        client,
                        options: RedisOptions {
                            cluster: false,
                            ..self.options
                        },
                        conn: tokio::sync::Mutex::new(None),
                        next_conn_id: AtomicU64::new(0),
                        log: parking_lot::Mutex::new(None),
                        cluster: None,
                    };
                    direct.check_durability_of_this_server().await
                }
                Err(e) => DurabilityReport {
                    problems: vec![DurabilityProblem::Unreadable {
                        setting: "appendfsync",
                        why: e.to_string(),
                    }],
                },
            };
            problems.extend(
                report
                    .problems
                    .into_iter()
                    .map(|p| DurabilityProblem::OnNode {
                        node: master.clone(),
                        problem: Box::new(p),
                    }),
            );
        }
        DurabilityReport { problems }
    }

    async fn check_durability_of_this_server(&self) -> DurabilityReport {
        let calls = REQUIRED_SETTINGS
            .iter()
            .map(|s| {
                let mut cmd = ::redis::cmd("CONFIG");
                cmd.arg("GET").arg(s.name);
                Call::Plain(cmd)
            })
            .collect();
        let read = match self.exec(calls, Retry::Safe).await {
            Ok(replies) => {
                let mut replies = replies.into_iter();
                std::array::from_fn(|_| match replies.next() {
                    Some(reply) => config_value(reply),
                    None => Err("missing reply".to_owned()),
                })
            }
            Err(e) => std::array::from_fn(|_| Err(e.to_string())),
        };
        DurabilityReport::evaluate(read)
    }

    /// Number of journal records currently kept for `account` (after trimming); for
    /// tests and operators checking that snapshots really trim.
    pub async fn journal_len(&self, account: AccountId) -> Result<usize, StoreError> {
        let mut cmd = ::redis::cmd("XLEN");
        cmd.arg(journal_key(account));
        let reply = self.exec_one(Call::Plain(cmd), Retry::Safe).await?;
        from_value(reply)
    }

    /// The shared connection, opening one if there is none.
    async fn connection(&self) -> Result<(u64, MultiplexedConnection), StoreError> {
        let mut slot = self.conn.lock().await;
        if let Some(cached) = slot.as_ref() {
            return Ok((cached.id, cached.conn.clone()));
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(self.options.connect_timeout)
            .set_response_timeout(self.options.response_timeout);
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| unavailable("connect", &e))?;
        let id = self.next_conn_id.fetch_add(1, Ordering::Relaxed);
        *slot = Some(Cached {
            id,
            conn: conn.clone(),
        });
        Ok((id, conn))
    }

    /// Forgets connection `id` after it failed, so the next operation reconnects.
    async fn discard(&self, id: u64) {
        let mut slot = self.conn.lock().await;
        if slot.as_ref().is_some_and(|c| c.id == id) {
            *slot = None;
        }
    }

    /// Sends `pipe` in one round trip and returns one reply per command, Redis errors
    /// included as [`Value::ServerError`] so each command's outcome stays separate.
    async fn round_trip(&self, pipe: &Pipeline, retry: Retry) -> Result<Vec<Value>, StoreError> {
        let count = pipe.cmd_iter().count();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (id, mut conn) = self.connection().await?;
            // Bounded twice: by the connection's response timeout and by this one,
            // which also covers a request stuck waiting to be written.
            let sent = tokio::time::timeout(
                self.options.response_timeout,
                conn.req_packed_commands(pipe, 0, count),
            )
            .await;
            let err = match sent {
                Ok(Ok(replies)) => return Ok(replies),
                Ok(Err(e)) => e,
                Err(_) => {
                    self.discard(id).await;
                    return Err(StoreError::Unavailable(format!(
                        "redis did not answer within {:?}",
                        self.options.response_timeout
                    )));
                }
            };
            // Whatever went wrong at the connection level, the connection is suspect
            // (it may be closed or out of step with its replies): replace it.
            self.discard(id).await;
            // Only a connection found dead is worth a second try; a timeout already
            // spent the caller's time budget, and a hung Redis would hang again.
            let dead_connection =
                (err.is_io_error() || err.is_connection_dropped()) && !err.is_timeout();
            if retry == Retry::Safe && dead_connection && attempt < 2 {
                continue;
            }
            return Err(unavailable("request", &err));
        }
    }

    /// Runs `calls` in one pipeline. Script calls answered `NOSCRIPT` ran nothing; their
    /// scripts are loaded and just those calls are sent again.
    pub(crate) async fn exec(
        &self,
        calls: Vec<Call>,
        retry: Retry,
    ) -> Result<Vec<Value>, StoreError> {
        if let Some(link) = &self.cluster {
            let cmds = calls
                .into_iter()
                .map(|call| match call {
                    Call::Plain(cmd) => cmd,
                    Call::Script(script, cmd) => script.as_eval(&cmd),
                })
                .collect();
            return link.round_trip(cmds, retry).await;
        }
        // Commands move into the pipeline (payloads may be megabytes); only the rare
        // NOSCRIPT resend below copies any of them.
        let mut pipe = Pipeline::with_capacity(calls.len());
        let mut scripts = Vec::with_capacity(calls.len());
        for call in calls {
            let (script, cmd) = match call {
                Call::Plain(cmd) => (None, cmd),
                Call::Script(script, cmd) => (Some(script), cmd),
            };
            scripts.push(script);
            pipe.add_command(cmd);
        }
        let mut replies = self.round_trip(&pipe, retry).await?;
        expect_replies(&replies, scripts.len())?;

        let missing: Vec<usize> = (0..replies.len())
            .filter(|&i| is_noscript(&replies[i]))
            .collect();
        if missing.is_empty() {
            return Ok(replies);
        }
        // Load each missing script once, then resend the refused calls in their
        // original order, so records of one account still arrive in seq order.
        let mut load = Pipeline::new();
        let mut loaded: Vec<&str> = Vec::new();
        for script in missing.iter().filter_map(|&i| scripts[i]) {
            if !loaded.contains(&script.hash.as_str()) {
                loaded.push(&script.hash);
                load.cmd("SCRIPT").arg("LOAD").arg(script.source);
            }
        }
        for reply in self.round_trip(&load, Retry::Safe).await? {
            reply_error(&reply)?;
        }
        let cmds: Vec<&Cmd> = pipe.cmd_iter().collect();
        let mut again = Pipeline::with_capacity(missing.len());
        for &i in &missing {
            again.add_command(cmds[i].clone());
        }
        let retried = self.round_trip(&again, retry).await?;
        expect_replies(&retried, missing.len())?;
        for (i, reply) in missing.into_iter().zip(retried) {
            replies[i] = reply;
        }
        Ok(replies)
    }

    /// [`exec`](Self::exec), then, when [`RedisOptions::wait`] is set, `WAIT`
    /// until the configured replicas of every master written to acknowledged
    /// these writes; fewer within the timeout is `Unavailable` (the writes'
    /// outcome is then unknown to the caller, as with a lost reply).
    pub(crate) async fn exec_replicated(
        &self,
        calls: Vec<Call>,
        retry: Retry,
    ) -> Result<Vec<Value>, StoreError> {
        let Some(wait) = self.options.wait else {
            return self.exec(calls, retry).await;
        };
        let mut wait_cmd = ::redis::cmd("WAIT");
        wait_cmd
            .arg(wait.replicas)
            .arg(wait.timeout.as_millis().max(1) as u64);
        let (replies, acked) = if let Some(link) = &self.cluster {
            let cmds = calls
                .into_iter()
                .map(|call| match call {
                    Call::Plain(cmd) => cmd,
                    Call::Script(script, cmd) => script.as_eval(&cmd),
                })
                .collect();
            link.round_trip_then(cmds, retry, wait_cmd, wait.timeout)
                .await?
        } else {
            // The same connection as the writes: WAIT covers everything it sent.
            let replies = self.exec(calls, retry).await?;
            let acked = self.exec(vec![Call::Plain(wait_cmd)], Retry::Never).await?;
            (replies, acked)
        };
        for reply in acked {
            reply_error(&reply)?;
            let n: u64 = from_value(reply)?;
            if n < u64::from(wait.replicas) {
                metrics::counter!("okpay_redis_wait_short_total").increment(1);
                return Err(StoreError::Unavailable(format!(
                    "only {n} of {} replicas acknowledged within {:?}",
                    wait.replicas, wait.timeout
                )));
            }
        }
        Ok(replies)
    }

    /// The rows of [`Store::put_history`] on standalone Redis with no leases
    /// (nothing to fence): plain commands in one `MULTI`/`EXEC`, per shard and
    /// row set (layout 3, each bucket of layout 5) one `ZREMRANGEBYLEX` per
    /// replacing row (its earlier versions) and one `ZADD` of all its members,
    /// then one `ZADD` of the buckets to the shard's index: the same data
    /// `put_rowset.lua` writes (a test compares the two). Without the
    /// script Redis copies no argument into Lua and builds no member there: the
    /// rows' share of Redis's time per call drops by about half (measured in
    /// docs/PERFORMANCE.md), and the transaction still lands whole or not at all,
    /// so a reader never sees a row between its removal and its new version.
    fn put_history_plain(
        &self,
        by_shard: std::collections::BTreeMap<ShardId, Vec<(AccountId, &HistoryRow)>>,
    ) -> StoreFuture<'_, Vec<StoreError>> {
        let mut calls = vec![Call::Plain(::redis::cmd("MULTI"))];
        for (shard, rows) in by_shard {
            let split = ShardRows::of(&rows);
            // Per set: each replacing row's earlier versions go, then one ZADD
            // of every member (the order put_rowset.lua writes in).
            let mut put = |set: String, members: &[Member], layout3: bool| {
                if members.is_empty() {
                    return;
                }
                let mut adds = ::redis::cmd("ZADD");
                adds.arg(&set);
                for m in members {
                    if m.replaces {
                        let (low, high) = if layout3 {
                            (
                                [&b"["[..], &m.prefix, &[0]].concat(),
                                [&b"("[..], &m.prefix, &[1]].concat(),
                            )
                        } else {
                            (
                                [&b"["[..], &m.prefix].concat(),
                                [&b"["[..], &m.prefix, &[0xff]].concat(),
                            )
                        };
                        let mut remove = ::redis::cmd("ZREMRANGEBYLEX");
                        remove.arg(&set).arg(low).arg(high);
                        calls.push(Call::Plain(remove));
                    }
                    let sep: &[u8] = if layout3 { &[0] } else { &[] };
                    adds.arg(0).arg([&m.prefix[..], sep, &m.rest].concat());
                }
                calls.push(Call::Plain(adds));
            };
            put(rowset_key(shard), &split.layout3, true);
            for (bucket, members) in &split.buckets {
                put(hist_bucket_key(shard, *bucket), members, false);
            }
            if !split.buckets.is_empty() {
                let mut index = ::redis::cmd("ZADD");
                index.arg(hist_index_key(shard));
                for bucket in split.buckets.keys() {
                    index.arg(*bucket).arg(*bucket);
                }
                calls.push(Call::Plain(index));
            }
        }
        calls.push(Call::Plain(::redis::cmd("EXEC")));
        Box::pin(async move {
            if calls.len() == 2 {
                return Ok(Vec::new());
            }
            let sent = calls.len();
            // Upserts: resending after a lost reply writes the same rows again.
            let mut replies = self.exec(calls, Retry::Safe).await?;
            expect_replies(&replies, sent)?;
            for reply in &replies[..sent - 1] {
                reply_error(reply)?;
            }
            // unwrap: `expect_replies` checked there is one reply per command.
            match replies.pop().unwrap() {
                Value::Array(results) => {
                    for reply in &results {
                        reply_error(reply)?;
                    }
                    Ok(Vec::new())
                }
                other => Err(StoreError::Unavailable(format!(
                    "redis did not run the history rows' transaction: {other:?}"
                ))),
            }
        })
    }

    /// One page of [`Store::history_since`], walking at most `walk` of the
    /// shard's week buckets (layout 5) when given: then a short page may come
    /// with where to go on from (the first key of the last bucket walked), and
    /// it holds no row below that key from any layout, so that the pages
    /// stay in descending key order. Without `walk`, layout 5 is read by
    /// successive walks of [`WALK_MAX`] buckets until the page is full or the
    /// buckets end (the first in the pipeline of the other layouts' reads).
    fn history_walk(
        &self,
        shard: ShardId,
        account: AccountId,
        cutoff_ms: Option<i64>,
        before: Option<&str>,
        limit: usize,
        walk: Option<u64>,
    ) -> StoreFuture<'_, (Vec<HistoryRow>, Option<String>)> {
        // Redis reads LIMIT as a signed 64-bit count, so "everything" must not
        // overflow it.
        let count = limit.min(i64::MAX as usize);
        // Rows past retention are below the first kept key in every layout.
        let from = super::retention::first_kept_key(cutoff_ms);
        let from = from.as_deref().unwrap_or("");
        // The shard's rows of this account: fields `<account>:<key>`, all below
        // `<account>;` (';' follows ':'). `(` makes a bound exclusive.
        let prefix = format!("{account}:");
        let (hash, keys) = rows_keys(shard);
        let mut rows = ROWS.call(&[&hash, &keys]);
        rows.arg(match before {
            Some(b) => format!("({prefix}{b}"),
            None => format!("({account};"),
        })
        .arg(format!("[{prefix}{from}"))
        .arg(count);
        // Rows written with journal records, before shard logs, in the account's keys.
        let (hash, keys) = history_keys(account);
        let mut legacy = ROWS.call(&[&hash, &keys]);
        legacy
            .arg(before.map_or("+".to_owned(), |b| format!("({b}")))
            .arg(if from.is_empty() {
                "-".to_owned()
            } else {
                format!("[{from}")
            })
            .arg(count);
        // Layout 3: the row set, between `[<account bytes><from>` and `(<account
        // bytes><before>` (a member with key `before` is longer, so above it) or
        // `[<account bytes>\xff` (row keys are ASCII, below 0x80).
        let mut lower = b"[".to_vec();
        lower.extend_from_slice(&account.0.to_be_bytes());
        let upper = match before {
            Some(b) => [&b"("[..], &rowset_prefix(account, b)].concat(),
            None => [&lower[..], b"\xff"].concat(),
        };
        let mut rowset = ::redis::cmd("ZREVRANGEBYLEX");
        rowset
            .arg(rowset_key(shard))
            .arg(upper)
            .arg([&lower[..], from.as_bytes()].concat())
            .arg("LIMIT")
            .arg(0)
            .arg(count);
        // Layout 4: below the first encoded key at or after `before`
        // (exclusive: its members are longer), or below the next account; at
        // or above the first encoded key at or after `from` (none: nothing).
        let upper = match before.map(|b| codec::row::ceiling_prefix(account, b)) {
            Some(Some(prefix)) => [&b"("[..], &prefix].concat(),
            _ => match account.0.checked_add(1) {
                Some(next) => [&b"("[..], &next.to_be_bytes()[..]].concat(),
                None => b"+".to_vec(),
            },
        };
        let lower = if from.is_empty() {
            lower
        } else {
            match codec::row::ceiling_prefix(account, from) {
                Some(prefix) => [&b"["[..], &prefix].concat(),
                None => b"+".to_vec(),
            }
        };
        // Layout 5: the same bounds in each bucket, walked from the bucket of
        // `before` down to the cutoff's (one script call, however many, unless
        // its guess of the sets to declare missed; an unbounded read goes on
        // by bounded calls).
        let bucket_walk = BucketWalk {
            shard,
            high: super::retention::last_bucket_before(before),
            low: cutoff_ms.map(super::retention::first_kept_bucket),
            upper: upper.clone(),
            lower: lower.clone(),
            walk: walk.unwrap_or(WALK_MAX).max(1),
        };
        let buckets = bucket_walk.call(count, &bucket_walk.guess());
        let mut hist = ::redis::cmd("ZREVRANGEBYLEX");
        hist.arg(hist_key(shard))
            .arg(upper)
            .arg(lower)
            .arg("LIMIT")
            .arg(0)
            .arg(count);
        let calls = vec![
            Call::Script(&HIST_PAGE, buckets),
            Call::Plain(hist),
            Call::Plain(rowset),
            Call::Script(&ROWS, rows),
            Call::Script(&ROWS, legacy),
        ];
        Box::pin(async move {
            if limit == 0 {
                return Ok((Vec::new(), None));
            }
            let mut replies = self.exec(calls, Retry::Safe).await?.into_iter();
            let (Some(buckets), Some(hist), Some(rowset), Some(rows), Some(legacy)) = (
                replies.next(),
                replies.next(),
                replies.next(),
                replies.next(),
                replies.next(),
            ) else {
                return Err(StoreError::Unavailable("redis sent too few replies".into()));
            };
            reply_error(&buckets)?;
            reply_error(&hist)?;
            reply_error(&rowset)?;
            reply_error(&rows)?;
            reply_error(&legacy)?;
            let (buckets, resume) = self
                .walk_buckets(bucket_walk, buckets, count, walk.is_some())
                .await?;
            let resume = resume.map(super::retention::first_key_of_bucket);
            let buckets = hist_rows(buckets, account)?;
            let hist = hist_rows(from_value(hist)?, account)?;
            let rowset = rowset_rows(from_value(rowset)?, account)?;
            let rows = rows_of(from_value(rows)?, &prefix, account)?;
            let legacy = rows_of(from_value(legacy)?, "", account)?;
            // Newest layout first: a row rewritten since an upgrade has its
            // current version there and its old one in an older layout.
            let written = merge_rows(buckets, hist, limit);
            let written = merge_rows(written, rowset, limit);
            let written = merge_rows(written, rows, limit);
            let page = merge_rows(written, legacy, limit);
            // Rows of the other layouts below an unread bucket wait for the
            // page that reads it.
            Ok(super::retention::cut_at_resume(page, resume, limit))
        })
    }

    /// The members of a layout-5 walk whose first call answered `first`, and the
    /// last bucket walked when the page is short with older buckets unread.
    /// A `need` answer is asked again declaring the sets named (a few times at
    /// most: see [`WALK_CALLS_MAX`]); unless `bounded`, a walk stopped by its
    /// bound goes on below its last bucket until `limit` members or the end,
    /// each call declaring at most [`WALK_MAX`] sets.
    async fn walk_buckets(
        &self,
        mut walk: BucketWalk,
        first: Value,
        limit: usize,
        bounded: bool,
    ) -> Result<(Vec<Vec<u8>>, Option<u64>), StoreError> {
        let mut members = Vec::new();
        let mut reply = walk_reply(first)?;
        let mut calls = 1;
        loop {
            let declare = match reply {
                WalkReply::Need(buckets) => {
                    if calls >= WALK_CALLS_MAX {
                        return Err(StoreError::Unavailable(format!(
                            "the history buckets of {} kept changing during a page",
                            walk.shard.tag()
                        )));
                    }
                    buckets
                }
                WalkReply::Page {
                    members: got,
                    resume,
                } => {
                    members.extend(got);
                    match resume {
                        Some(last) if !bounded && members.len() < limit && last > 0 => {
                            walk.high = Some(last - 1);
                            calls = 0;
                            walk.guess()
                        }
                        Some(_) if !bounded => return Ok((members, None)),
                        resume => return Ok((members, resume)),
                    }
                }
            };
            calls += 1;
            let left = limit.saturating_sub(members.len());
            let call = Call::Script(&HIST_PAGE, walk.call(left, &declare));
            reply = walk_reply(self.exec_one(call, Retry::Safe).await?)?;
        }
    }

    /// Runs one call and turns a Redis error reply into `Unavailable`.
    /// The standalone-Redis append: the accounts seen for the first time (seq 1) are
    /// listed, then the whole batch is one [`APPEND_BATCH_LUA`] call, in one pipeline.
    fn append_as_one_script(&self, batch: &[JournalAppend]) -> StoreFuture<'_, Vec<AppendResult>> {
        let records: Vec<(AccountId, u64)> = batch.iter().map(|r| (r.account, r.seq)).collect();
        let mut calls = Vec::with_capacity(2);
        // An account's first record lists it; later records don't need to (ZADD is
        // idempotent, so a re-sent first record listing it again is harmless).
        let new_accounts: Vec<String> = batch
            .iter()
            .filter(|r| r.seq == 1)
            .map(|r| r.account.to_string())
            .collect();
        if !new_accounts.is_empty() {
            let mut cmd = ::redis::cmd("ZADD");
            cmd.arg(ACCOUNTS_KEY);
            for a in &new_accounts {
                cmd.arg(0).arg(a);
            }
            calls.push(Call::Plain(cmd));
        }
        let mut keys: Vec<String> = Vec::with_capacity(batch.len() * 4);
        for rec in batch {
            let (history, history_keys) = history_keys(rec.account);
            keys.push(journal_key(rec.account));
            keys.push(seq_key(rec.account));
            keys.push(history);
            keys.push(history_keys);
        }
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let mut cmd = APPEND_BATCH.call(&key_refs);
        for rec in batch {
            cmd.arg(rec.seq)
                .arg(format!("{}-1", rec.seq))
                .arg(rec.payload.as_slice())
                .arg(rec.history.len());
            for row in &rec.history {
                cmd.arg(row.key.as_str()).arg(row.payload.as_slice());
            }
        }
        calls.push(Call::Script(&APPEND_BATCH, cmd));
        let listed = !new_accounts.is_empty();
        Box::pin(async move {
            if records.is_empty() {
                return Ok(Vec::new());
            }
            let mut replies = self.exec(calls, Retry::Never).await?;
            let appended = replies
                .pop()
                .ok_or_else(|| StoreError::Unavailable("redis sent no reply".into()))?;
            if listed {
                // The first records' accounts could not be listed: report the whole
                // batch as unknown, the callers retry (and list them then).
                if let Some(r) = replies.first() {
                    reply_error(r)?;
                }
            }
            let expected: Vec<u64> = from_value(appended)?;
            if expected.len() != records.len() {
                return Err(StoreError::Corrupt(
                    "the batch append script answered for a different number of records".into(),
                ));
            }
            Ok(records
                .iter()
                .zip(expected)
                .map(|(&(account, got), expected)| {
                    if expected == 0 {
                        Ok(())
                    } else {
                        Err(StoreError::SequenceConflict {
                            account,
                            expected,
                            got,
                        })
                    }
                })
                .collect())
        })
    }

    pub(crate) async fn exec_one(&self, call: Call, retry: Retry) -> Result<Value, StoreError> {
        let reply = self
            .exec(vec![call], retry)
            .await?
            .pop()
            .ok_or_else(|| StoreError::Unavailable("redis sent no reply".into()))?;
        reply_error(&reply)?;
        Ok(reply)
    }
}

/// A pipeline answered with the wrong number of replies is out of step: nothing in it
/// can be trusted to belong to the command it is matched with.
fn expect_replies(replies: &[Value], sent: usize) -> Result<(), StoreError> {
    if replies.len() == sent {
        Ok(())
    } else {
        Err(StoreError::Unavailable(format!(
            "redis sent {} replies to {sent} commands",
            replies.len()
        )))
    }
}

fn is_noscript(reply: &Value) -> bool {
    matches!(reply, Value::ServerError(e) if e.code() == "NOSCRIPT")
}

fn unavailable(what: &str, e: &RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis {what}: {e}"))
}

/// A Redis error reply (out of memory, loading, script error...) as `Unavailable`:
/// the command didn't do what was asked, and trying later may work.
pub(crate) fn reply_error(reply: &Value) -> Result<(), StoreError> {
    match reply {
        Value::ServerError(e) => Err(StoreError::Unavailable(format!(
            "redis replied {}: {}",
            e.code(),
            e.details().unwrap_or("")
        ))),
        _ => Ok(()),
    }
}

/// Decodes a reply into `T`; a reply of the wrong shape means the data or the
/// scripts are not what this code wrote.
pub(crate) fn from_value<T: ::redis::FromRedisValue>(reply: Value) -> Result<T, StoreError> {
    reply_error(&reply)?;
    ::redis::from_owned_redis_value(reply)
        .map_err(|e| StoreError::Corrupt(format!("unexpected redis reply: {e}")))
}

/// The value in a `CONFIG GET <name>` reply (`[name, value]`, or a map in RESP3).
fn config_value(reply: Value) -> Result<String, String> {
    if let Value::ServerError(e) = &reply {
        return Err(format!("{} {}", e.code(), e.details().unwrap_or("")));
    }
    let pairs: Vec<(String, String)> = match reply {
        Value::Map(map) => ::redis::from_owned_redis_value(Value::Map(map)),
        other => ::redis::from_owned_redis_value::<Vec<String>>(other).map(|flat| {
            flat.chunks_exact(2)
                .map(|c| (c[0].clone(), c[1].clone()))
                .collect()
        }),
    }
    .map_err(|e| format!("unexpected reply: {e}"))?;
    pairs
        .into_iter()
        .next()
        .map(|(_, value)| value)
        .ok_or_else(|| "setting not known to this server".to_owned())
}

/// The seq encoded in a journal stream id `<seq>-1`.
fn seq_of_stream_id(id: &str) -> Result<u64, StoreError> {
    id.split_once('-')
        .and_then(|(seq, _)| seq.parse().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("bad journal entry id {id:?}")))
}

/// Decodes the reply of [`LOAD_LUA`].
fn decode_loaded(reply: Value) -> Result<Loaded, StoreError> {
    type Entry = (String, Vec<(String, Vec<u8>)>);
    let (snap_seq, snap_payload, entries): (Option<u64>, Option<Vec<u8>>, Vec<Entry>) =
        from_value(reply)?;
    let snapshot = match (snap_seq, snap_payload) {
        (Some(seq), Some(payload)) => Some(Snapshot { seq, payload }),
        (None, None) => None,
        _ => return Err(StoreError::Corrupt("half-written snapshot hash".into())),
    };
    let after = snapshot.as_ref().map_or(0, |s| s.seq);
    let mut records = Vec::with_capacity(entries.len());
    for (id, fields) in entries {
        let seq = seq_of_stream_id(&id)?;
        let payload = fields
            .into_iter()
            .find(|(name, _)| name == "p")
            .map(|(_, payload)| payload)
            .ok_or_else(|| StoreError::Corrupt(format!("journal entry {id} has no payload")))?;
        // The trim runs atomically with the snapshot write, so nothing at or below
        // the snapshot should remain; filtering anyway keeps `load`'s promise even if
        // a record was written by hand.
        if seq > after {
            records.push(Record { seq, payload });
        }
    }
    Ok(Loaded { snapshot, records })
}

impl Store for RedisStore {
    fn append(&self, batch: &[JournalAppend]) -> StoreFuture<'_, Vec<AppendResult>> {
        if !self.options.cluster {
            return self.append_as_one_script(batch);
        }
        // Each distinct account once, in order of first appearance, with its position
        // among the leading ZADD commands.
        let mut listed_at: HashMap<AccountId, usize> = HashMap::new();
        let mut calls = Vec::with_capacity(batch.len() + 1);
        for rec in batch {
            if let Entry::Vacant(slot) = listed_at.entry(rec.account) {
                slot.insert(calls.len());
                let mut cmd = ::redis::cmd("ZADD");
                cmd.arg(ACCOUNTS_KEY).arg(0).arg(rec.account.to_string());
                calls.push(Call::Plain(cmd));
            }
        }
        for rec in batch {
            let (journal, seq) = (journal_key(rec.account), seq_key(rec.account));
            let (history, history_keys) = history_keys(rec.account);
            let mut cmd = APPEND.call(&[&journal, &seq, &history, &history_keys]);
            cmd.arg(rec.seq)
                .arg(format!("{}-1", rec.seq))
                .arg(rec.payload.as_slice());
            for row in &rec.history {
                cmd.arg(row.key.as_str()).arg(row.payload.as_slice());
            }
            calls.push(Call::Script(&APPEND, cmd));
        }
        // Only what is needed to read the replies; the payloads already sit in `calls`.
        let records: Vec<(AccountId, u64)> = batch.iter().map(|r| (r.account, r.seq)).collect();
        Box::pin(async move {
            if records.is_empty() {
                return Ok(Vec::new());
            }
            let replies = self.exec(calls, Retry::Never).await?;
            let (listed, appended) = replies.split_at(listed_at.len());
            let results = records
                .iter()
                .zip(appended)
                .map(|(&(account, got), reply)| {
                    // If the account could not be added to the account set, report its
                    // records as unknown even if they landed: the caller retries, sees
                    // a conflict, reloads, and that retry lists the account.
                    if let Some(&i) = listed_at.get(&account) {
                        reply_error(&listed[i])?;
                    }
                    let (appended, expected): (i64, u64) = from_value(reply.clone())?;
                    if appended == 1 {
                        Ok(())
                    } else {
                        Err(StoreError::SequenceConflict {
                            account,
                            expected,
                            got,
                        })
                    }
                })
                .collect();
            Ok(results)
        })
    }

    fn load(&self, account: AccountId) -> StoreFuture<'_, Loaded> {
        Box::pin(async move {
            let (snapshot, journal) = (snapshot_key(account), journal_key(account));
            let call = Call::Script(&LOAD, LOAD.call(&[&snapshot, &journal]));
            let reply = self.exec_one(call, Retry::Safe).await?;
            decode_loaded(reply)
        })
    }

    fn save_snapshot(&self, account: AccountId, snapshot: Snapshot) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut listed = ::redis::cmd("ZADD");
            listed.arg(ACCOUNTS_KEY).arg(0).arg(account.to_string());
            let (snap, journal, seq) = (
                snapshot_key(account),
                journal_key(account),
                seq_key(account),
            );
            let mut save = SAVE_SNAPSHOT.call(&[&snap, &journal, &seq]);
            save.arg(snapshot.seq)
                .arg(snapshot.payload.as_slice())
                .arg(format!("{}-0", snapshot.seq.saturating_add(1)));
            let calls = vec![Call::Plain(listed), Call::Script(&SAVE_SNAPSHOT, save)];
            // Safe to retry: storing the same snapshot twice is a no-op the second time.
            for reply in self.exec(calls, Retry::Safe).await? {
                reply_error(&reply)?;
            }
            Ok(())
        })
    }

    fn list_accounts(
        &self,
        after: Option<AccountId>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<AccountId>> {
        Box::pin(async move {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let mut cmd = ::redis::cmd("ZRANGEBYLEX");
            cmd.arg(ACCOUNTS_KEY)
                .arg(after.map_or("-".to_owned(), |a| format!("({a}")))
                .arg("+")
                .arg("LIMIT")
                .arg(0)
                .arg(limit);
            let ids: Vec<String> = from_value(self.exec_one(Call::Plain(cmd), Retry::Safe).await?)?;
            ids.iter()
                .map(|id| {
                    id.parse()
                        .map_err(|_| StoreError::Corrupt(format!("bad account id {id:?}")))
                })
                .collect()
        })
    }

    fn claim_index(&self, index: &str, key: &str, value: &str) -> StoreFuture<'_, bool> {
        let (hash, keys) = index_keys(index);
        let mut cmd = CLAIM_INDEX.call(&[&hash, &keys]);
        cmd.arg(key).arg(value);
        let call = Call::Script(&CLAIM_INDEX, cmd);
        Box::pin(async move {
            let claimed: i64 = from_value(self.exec_one(call, Retry::Never).await?)?;
            Ok(claimed == 1)
        })
    }

    fn get_index(&self, index: &str, key: &str) -> StoreFuture<'_, Option<String>> {
        let (hash, _) = index_keys(index);
        let mut cmd = ::redis::cmd("HGET");
        cmd.arg(hash).arg(key);
        Box::pin(async move { from_value(self.exec_one(Call::Plain(cmd), Retry::Safe).await?) })
    }

    fn delete_index(&self, index: &str, key: &str) -> StoreFuture<'_, ()> {
        let (hash, keys) = index_keys(index);
        let mut cmd = DELETE_INDEX.call(&[&hash, &keys]);
        cmd.arg(key);
        let call = Call::Script(&DELETE_INDEX, cmd);
        Box::pin(async move {
            self.exec_one(call, Retry::Safe).await?;
            Ok(())
        })
    }

    fn scan_index(
        &self,
        index: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<(String, String)>> {
        let (hash, keys) = index_keys(index);
        let mut cmd = SCAN_INDEX.call(&[&hash, &keys]);
        cmd.arg(after.map_or("-".to_owned(), |k| format!("({k}")))
            .arg(limit);
        let call = Call::Script(&SCAN_INDEX, cmd);
        Box::pin(async move {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let flat: Vec<String> = from_value(self.exec_one(call, Retry::Safe).await?)?;
            Ok(flat
                .chunks_exact(2)
                .map(|kv| (kv[0].clone(), kv[1].clone()))
                .collect())
        })
    }

    fn history_since(
        &self,
        shard: ShardId,
        account: AccountId,
        cutoff_ms: Option<i64>,
        before: Option<&str>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<HistoryRow>> {
        let page = self.history_walk(shard, account, cutoff_ms, before, limit, None);
        Box::pin(async move { Ok(page.await?.0) })
    }

    fn history_page(
        &self,
        shard: ShardId,
        account: AccountId,
        cutoff_ms: Option<i64>,
        before: Option<&str>,
        limit: usize,
    ) -> StoreFuture<'_, (Vec<HistoryRow>, Option<String>)> {
        self.history_walk(shard, account, cutoff_ms, before, limit, Some(WALK_MAX))
    }

    fn put_history(
        &self,
        rows: Vec<(ShardId, AccountId, HistoryRow)>,
        epochs: Vec<(ShardId, u64)>,
    ) -> StoreFuture<'_, Vec<StoreError>> {
        // One call per shard (a shard's keys share a slot, and one command with
        // many arguments costs Redis one fsync): the writer's epoch (or ''),
        // the count of replacing rows and of rows of layout 3, then of layout 5
        // per bucket, then the rows of layout 3 and of each bucket, replacing
        // rows first in each (put_rowset.lua).
        let mut by_shard: std::collections::BTreeMap<ShardId, Vec<_>> = Default::default();
        for (shard, account, row) in &rows {
            by_shard.entry(*shard).or_default().push((*account, row));
        }
        if self.cluster.is_none() && epochs.is_empty() {
            return self.put_history_plain(by_shard);
        }
        let epoch_of = |shard: ShardId| epochs.iter().find(|(s, _)| *s == shard).map(|e| e.1);
        let sent: Vec<(ShardId, Option<u64>)> =
            by_shard.keys().map(|&s| (s, epoch_of(s))).collect();
        let calls: Vec<Call> = by_shard
            .into_iter()
            .zip(&sent)
            .map(|((shard, mut rows), (_, epoch))| {
                rows.sort_by_key(|(_, row)| !row.replaces);
                let split = ShardRows::of(&rows);
                let mut keys = vec![
                    rowset_key(shard),
                    super::shard_log::redis::positions_key(shard),
                    hist_index_key(shard),
                ];
                keys.extend(split.buckets.keys().map(|&b| hist_bucket_key(shard, b)));
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                let mut cmd = PUT_ROWSET.call(&keys);
                match epoch {
                    Some(e) => cmd.arg(*e),
                    None => cmd.arg(""),
                };
                let replacing = |ms: &[Member]| ms.iter().filter(|m| m.replaces).count();
                cmd.arg(replacing(&split.layout3))
                    .arg(split.layout3.len())
                    .arg(split.buckets.len());
                for (bucket, members) in &split.buckets {
                    cmd.arg(*bucket).arg(replacing(members)).arg(members.len());
                }
                for m in split.layout3.iter().chain(split.buckets.values().flatten()) {
                    cmd.arg(m.prefix.as_slice()).arg(m.rest.as_slice());
                }
                Call::Script(&PUT_ROWSET, cmd)
            })
            .collect();
        Box::pin(async move {
            if calls.is_empty() {
                return Ok(Vec::new());
            }
            // Upserts: resending after a lost reply writes the same rows again
            // (or is refused again, the epoch having moved on).
            let replies = self.exec(calls, Retry::Safe).await?;
            expect_replies(&replies, sent.len())?;
            let mut refused = Vec::new();
            for ((shard, held), reply) in sent.into_iter().zip(replies) {
                let status = from_value::<Vec<i64>>(reply)?;
                match super::shard_log::redis::fenced_status(
                    &status,
                    shard,
                    0,
                    held,
                    "the row set script",
                ) {
                    Ok(()) => {}
                    Err(lost @ StoreError::LeaseLost { .. }) => refused.push(lost),
                    Err(other) => return Err(other),
                }
            }
            Ok(refused)
        })
    }

    fn drop_history_before(
        &self,
        shards: Vec<ShardId>,
        cutoff_ms: i64,
        max_buckets: usize,
    ) -> StoreFuture<'_, super::retention::HistorySweep> {
        // Two round trips: the oldest buckets of every shard's index below the
        // cutoff, then one drop_buckets.lua call per shard that has some,
        // declaring those buckets' sets (one slot per shard). Only layout 5 is
        // bucketed: rows of older layouts stay (read-only, see the module's
        // notes), and reads leave them out past retention.
        let first_kept = super::retention::first_kept_bucket(cutoff_ms);
        let max = max_buckets.min(1 << 40);
        let reads: Vec<Call> = shards
            .iter()
            .map(|&shard| {
                let mut cmd = ::redis::cmd("ZRANGEBYSCORE");
                cmd.arg(hist_index_key(shard))
                    .arg("-inf")
                    .arg(format!("({first_kept}"))
                    .arg("LIMIT")
                    .arg(0)
                    .arg(max);
                Call::Plain(cmd)
            })
            .collect();
        Box::pin(async move {
            let mut swept = super::retention::HistorySweep::default();
            if reads.is_empty() || max_buckets == 0 {
                return Ok(swept);
            }
            let replies = self.exec(reads, Retry::Safe).await?;
            expect_replies(&replies, shards.len())?;
            let mut drops = Vec::new();
            for (&shard, reply) in shards.iter().zip(replies) {
                let old: Vec<Vec<u8>> = from_value(reply)?;
                if old.is_empty() {
                    continue;
                }
                let buckets = old
                    .iter()
                    .map(|b| bucket_number(b))
                    .collect::<Result<Vec<u64>, _>>()?;
                let mut keys = vec![hist_index_key(shard)];
                keys.extend(buckets.iter().map(|&b| hist_bucket_key(shard, b)));
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                let mut cmd = DROP_BUCKETS.call(&keys);
                cmd.arg(first_kept);
                for b in &old {
                    cmd.arg(b.as_slice());
                }
                drops.push(Call::Script(&DROP_BUCKETS, cmd));
            }
            if drops.is_empty() {
                return Ok(swept);
            }
            // Safe to resend: a bucket dropped is no longer in the index, and
            // the script drops only what still is.
            let sent = drops.len();
            let replies = self.exec(drops, Retry::Safe).await?;
            expect_replies(&replies, sent)?;
            for reply in replies {
                let (buckets, rows, left): (u64, u64, u64) = from_value(reply)?;
                swept.buckets += buckets;
                swept.rows += rows;
                swept.more |= left > 0;
            }
            Ok(swept)
        })
    }

    fn shard_log(&self) -> StoreFuture<'_, std::sync::Arc<dyn super::shard_log::ShardLog>> {
        let log = self.redis_shard_log();
        Box::pin(async move { Ok(log as std::sync::Arc<dyn super::shard_log::ShardLog>) })
    }

    fn backend_name(&self) -> &'static str {
        "redis"
    }

    fn as_redis(&self) -> Option<&RedisStore> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_5_key_names_are_golden() {
        // Stored contract: data written under these names must be found again.
        assert_eq!(hist_bucket_key(ShardId(7), 2976), "okpay:{s007}:hist:2976");
        assert_eq!(hist_bucket_prefix(ShardId(7)), "okpay:{s007}:hist:");
        assert_eq!(hist_index_key(ShardId(7)), "okpay:{s007}:hist:buckets");
        assert_eq!(hist_bucket_key(ShardId(1023), 0), "okpay:{s1023}:hist:0");
        // The layout-4 set and the index never collide with a bucket's name.
        assert_ne!(hist_key(ShardId(7)), hist_bucket_key(ShardId(7), 0));
    }

    #[test]
    fn a_page_declares_at_most_a_walk_of_weeks_within_its_bounds() {
        let walk = |high: Option<u64>, low: Option<u64>, walk: u64| BucketWalk {
            shard: ShardId(7),
            high,
            low,
            upper: b"+".to_vec(),
            lower: b"-".to_vec(),
            walk,
        };
        let guess = walk(Some(100), None, WALK_MAX).guess();
        assert_eq!(guess.len(), 53);
        assert_eq!((guess[0], guess[52]), (100, 48));
        assert_eq!(
            walk(Some(100), Some(90), WALK_MAX).guess(),
            (90..=100).rev().collect::<Vec<_>>()
        );
        assert_eq!(walk(Some(3), None, WALK_MAX).guess(), [3, 2, 1, 0]);
        assert!(walk(Some(3), Some(4), WALK_MAX).guess().is_empty());
        assert_eq!(walk(Some(3), None, 0).guess(), [3]);
        assert_eq!(walk(Some(100), None, u64::MAX).guess().len(), 53);
        // Without a first key: the weeks up to the current one's next.
        let now = walk(None, None, WALK_MAX).guess();
        assert_eq!(now.len(), 53);
        // Every declared set is named with its bucket, in the same order, and
        // in the index's Cluster slot.
        let cmd = walk(Some(5), Some(4), 2).call(10, &[5, 4]);
        let args: Vec<Vec<u8>> = cmd
            .args_iter()
            .filter_map(|a| match a {
                ::redis::Arg::Simple(b) => Some(b.to_vec()),
                _ => None,
            })
            .collect();
        let text: Vec<String> = args[2..]
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        assert_eq!(
            text,
            [
                "3",
                "okpay:{s007}:hist:buckets",
                "okpay:{s007}:hist:5",
                "okpay:{s007}:hist:4",
                "5",
                "4",
                "+",
                "-",
                "10",
                "2",
                "5",
                "4"
            ]
        );
        let slot = ::redis::cluster_routing::get_slot(&args[3]);
        for key in &args[4..6] {
            assert_eq!(::redis::cluster_routing::get_slot(key), slot);
        }
    }

    #[test]
    fn hist_page_replies_are_read_or_refused() {
        let reply = |words: &[&str]| {
            Value::Array(
                words
                    .iter()
                    .map(|w| Value::BulkString(w.as_bytes().to_vec()))
                    .collect(),
            )
        };
        match walk_reply(reply(&["", "m1", "m2"])) {
            Ok(WalkReply::Page { members, resume }) => {
                assert_eq!(members, [b"m1".to_vec(), b"m2".to_vec()]);
                assert_eq!(resume, None);
            }
            _ => panic!("a page"),
        }
        match walk_reply(reply(&["948"])) {
            Ok(WalkReply::Page { members, resume }) => {
                assert!(members.is_empty());
                assert_eq!(resume, Some(948));
            }
            _ => panic!("a short page"),
        }
        match walk_reply(reply(&["need", "12", "10"])) {
            Ok(WalkReply::Need(buckets)) => assert_eq!(buckets, [12, 10]),
            _ => panic!("a need"),
        }
        for bad in [&[][..], &["x1"], &["need", "-1"], &["need", ""], &["+5"]] {
            assert!(
                matches!(walk_reply(reply(bad)), Err(StoreError::Corrupt(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn rows_split_into_layout_5_by_bucket_and_layout_3() {
        use crate::store::retention::BUCKET_MS;
        let account = AccountId(9);
        let engine_key = |ms: u64, n: u64| format!("{ms:016x}tx_{:016x}{n:016x}", 9u64);
        let row = |key: String, replaces: bool| HistoryRow {
            key,
            payload: b"p".to_vec(),
            replaces,
        };
        let rows = [
            row(engine_key(3 * BUCKET_MS - 1, 1), false),
            row(engine_key(3 * BUCKET_MS, 2), true),
            row("0000000000000001odd".into(), false),
            row(engine_key(2 * BUCKET_MS, 3), false),
        ];
        let refs: Vec<(AccountId, &HistoryRow)> = rows.iter().map(|r| (account, r)).collect();
        let split = ShardRows::of(&refs);
        assert_eq!(split.layout3.len(), 1);
        assert_eq!(split.buckets.keys().copied().collect::<Vec<_>>(), [2, 3]);
        assert_eq!(split.buckets[&2].len(), 2);
        assert!(split.buckets[&3][0].replaces);
        let (prefix, body) = codec::row::encode_member(account, &rows[1].key, b"p").unwrap();
        assert_eq!(
            (&split.buckets[&3][0].prefix, &split.buckets[&3][0].rest),
            (&prefix, &body)
        );
    }

    #[test]
    fn rowset_members_are_account_bytes_key_zero_row() {
        // Stored bytes: this layout must keep reading what it wrote.
        let account = AccountId(0x0102_0304_0506_0708);
        assert_eq!(
            rowset_prefix(account, "00ab"),
            [1, 2, 3, 4, 5, 6, 7, 8, b'0', b'0', b'a', b'b']
        );
        assert_eq!(rowset_key(ShardId(7)), "okpay:{s007}:rowset");
        let member = [&rowset_prefix(account, "00ab")[..], b"\0row\0bytes"].concat();
        assert_eq!(
            rowset_rows(vec![member], account).unwrap(),
            vec![HistoryRow {
                key: "00ab".into(),
                payload: b"row\0bytes".to_vec(),
                replaces: false,
            }]
        );
        let other = [&rowset_prefix(AccountId(9), "00ab")[..], b"\0row"].concat();
        assert!(rowset_rows(vec![other], account).is_err());
        let no_end = rowset_prefix(account, "00ab");
        assert!(rowset_rows(vec![no_end], account).is_err());
        // Two versions of one row read as one.
        let twice = vec![
            [&rowset_prefix(account, "00ac")[..], b"\0v2"].concat(),
            [&rowset_prefix(account, "00ac")[..], b"\0v1"].concat(),
            [&rowset_prefix(account, "00ab")[..], b"\0v1"].concat(),
        ];
        let rows = rowset_rows(twice, account).unwrap();
        assert_eq!(
            rows.iter()
                .map(|r| (r.key.as_str(), &r.payload[..]))
                .collect::<Vec<_>>(),
            vec![("00ac", &b"v2"[..]), ("00ab", &b"v1"[..])]
        );
    }
}
