//! The history rows in Redis: the members of each layout and their decoding
//! (layout 5 by week bucket, 4, 3, 2 and the account's own keys, merged newest
//! layout first), the writes (`put_rowset.lua`, or plain commands in one
//! transaction when nothing is fenced), the pages (the walk of a shard's
//! buckets by `hist_page.lua`) and the retention drop of whole buckets
//! (`drop_buckets.lua`). See the module's notes for the layouts and retention.

use ::redis::{Cmd, Value};

use super::conn::{expect_replies, from_value, reply_error, Call, Retry};
use super::keys::{hist_bucket_key, hist_index_key, hist_key, history_keys, rows_keys, rowset_key};
use super::scripts::{DROP_BUCKETS, HIST_PAGE, PUT_ROWSET, ROWS};
use super::RedisStore;
use crate::codec::{self, ShardId};
use crate::ids::AccountId;
use crate::store::{retention, shard_log, HistoryRow, StoreError, StoreFuture};

/// How many of a shard's week buckets one page of history walks at most (a
/// year's): each is a range lookup in Redis (~1.3 µs with the script's loop),
/// so an account with few rows costs ~70 µs a page however long the retention;
/// its older rows are the next pages'. Also how many bucket sets one call of
/// hist_page.lua declares at most (a read without a bound goes on by such calls).
pub(super) const WALK_MAX: u64 = 53;

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
            (now / retention::BUCKET_MS).saturating_add(1)
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
            .arg(self.walk.clamp(1, 1 << 40))
            .arg(codec::row::GROUP_SLOT_MS);
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

/// One member of a history row set as `put_history` writes it.
struct Member {
    /// The part shared by every version of the row (a replacing row's earlier
    /// versions are the members starting with it).
    prefix: Vec<u8>,
    /// The rest: the layout-5 body, or the layout-3 row.
    rest: Vec<u8>,
    replaces: bool,
}

/// A `put_history` call's rows by shard.
type RowsByShard<'a> = std::collections::BTreeMap<ShardId, Vec<(AccountId, &'a HistoryRow)>>;

/// A `put_history` call's rows as commands, ready to send.
enum RowsWrite {
    /// Plain commands, one `MULTI`/`EXEC` per shard (`execs`: where each
    /// `EXEC` is).
    Plain { calls: Vec<Call>, execs: Vec<usize> },
    /// put_rowset.lua per shard, with the epoch each was sent under.
    Fenced {
        calls: Vec<Call>,
        sent: Vec<(ShardId, Option<u64>)>,
    },
}

/// Rows a write encodes on a blocking thread from this many on (fewer cost
/// less than the thread hop: a reader's write of an account's rows).
const ROWS_OFF_THREAD: usize = 512;

/// A shard's rows of one `put_history` call by where they go: layout 5 by
/// bucket for rows whose key has the engine's shape, layout 3 for the others;
/// in call order within each, so replacing rows first when sorted so.
#[derive(Default)]
struct ShardRows {
    layout3: Vec<Member>,
    buckets: std::collections::BTreeMap<u64, Vec<Member>>,
}

impl ShardRows {
    /// `group`: rows written for the first time go as one group member per
    /// account and [`codec::row::GROUP_SLOT_MS`] slot when there are several
    /// (see `codec/row.rs`); a later version of a row (`replaces`) is always a
    /// single member.
    fn of(rows: &[(AccountId, &HistoryRow)], group: bool) -> ShardRows {
        let mut out = ShardRows::default();
        // (account, slot) -> the first-version rows of that slot, by key.
        let mut groups: std::collections::BTreeMap<(AccountId, u64), Vec<&HistoryRow>> =
            Default::default();
        for (account, row) in rows {
            if group && !row.replaces {
                if let Some(ms) = codec::row::key_ms(&row.key) {
                    let slot = codec::row::slot_start(ms);
                    groups.entry((*account, slot)).or_default().push(row);
                    continue;
                }
            }
            out.single(*account, row);
        }
        for ((account, _), mut rows) in groups {
            rows.sort_by(|a, b| a.key.cmp(&b.key));
            let grouped = (rows.len() > 1)
                .then(|| {
                    let pairs: Vec<(&str, &[u8])> = rows
                        .iter()
                        .map(|r| (r.key.as_str(), r.payload.as_slice()))
                        .collect();
                    codec::row::encode_group(account, &pairs)
                })
                .flatten();
            match (grouped, retention::bucket_of(&rows[0].key)) {
                (Some((prefix, rest)), Some(bucket)) => {
                    out.buckets.entry(bucket).or_default().push(Member {
                        prefix,
                        rest,
                        replaces: false,
                    })
                }
                // One row, or keys a group can't hold (a key twice): singles.
                _ => rows.into_iter().for_each(|row| out.single(account, row)),
            }
        }
        out
    }

    /// `row` as a single member: layout 5 in its bucket when its key has the
    /// engine's shape, else layout 3.
    fn single(&mut self, account: AccountId, row: &HistoryRow) {
        let encoded = codec::row::encode_member(account, &row.key, &row.payload);
        match (encoded, retention::bucket_of(&row.key)) {
            (Some((prefix, rest)), Some(bucket)) => {
                self.buckets.entry(bucket).or_default().push(Member {
                    prefix,
                    rest,
                    replaces: row.replaces,
                })
            }
            _ => self.layout3.push(Member {
                prefix: rowset_prefix(account, &row.key),
                rest: row.payload.clone(),
                replaces: row.replaces,
            }),
        }
    }
}

/// Layout-5 and layout-4 members of `account` (newest first; groups among
/// them) as rows between `from` (inclusive) and `before` (exclusive), newest
/// first. Of two versions of one key, a single member's wins over a group's
/// (groups hold first versions only), else the first listed (a late write of
/// a deposed node).
fn hist_rows(
    members: Vec<Vec<u8>>,
    account: AccountId,
    before: Option<&str>,
    from: &str,
) -> Result<Vec<HistoryRow>, StoreError> {
    let mut rows = Vec::with_capacity(members.len());
    for m in &members {
        let decoded = codec::row::decode_members(account, m).map_err(|e| {
            StoreError::Corrupt(format!("a history row of {account} is malformed: {e}"))
        })?;
        rows.extend(
            decoded
                .into_iter()
                .filter(|r| before.is_none_or(|b| r.key.as_str() < b) && r.key.as_str() >= from),
        );
    }
    // Stable: of one key, single members first, then as listed.
    rows.sort_by(|a, b| b.key.cmp(&a.key).then(a.grouped.cmp(&b.grouped)));
    rows.dedup_by(|later, first| later.key == first.key);
    Ok(rows
        .into_iter()
        .map(|r| HistoryRow {
            key: r.key,
            payload: r.payload,
            replaces: false,
        })
        .collect())
}

/// The key a page of layout-5 members goes on from when it took `count`
/// members: the start of the group slot of its last (smallest) one. Every row
/// at or above it is in the page (a group's rows are all in its first row's
/// slot, and every member of that slot below the last one came with it, see
/// hist_page.lua); rows below it may be in members not read yet.
fn slot_cut(members: &[Vec<u8>], count: usize) -> Option<String> {
    if members.len() < count {
        return None;
    }
    let ms = codec::row::member_ms(members.last()?)?;
    let mut key = String::with_capacity(16);
    crate::ids::push_hex16(&mut key, codec::row::slot_start(ms));
    Some(key)
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

impl RedisStore {
    /// The rows of [`Store::put_history`] on standalone Redis with no leases
    /// (nothing to fence): plain commands in one `MULTI`/`EXEC` per shard (a
    /// transaction of every shard's rows would hold Redis for the whole
    /// gathered write, every shard log's append waiting behind it), per
    /// row set (layout 3, each bucket of layout 5) one `ZREMRANGEBYLEX` per
    /// replacing row (its earlier versions) and one `ZADD` of all its members,
    /// then one `ZADD` of the buckets to the shard's index: the same data
    /// `put_rowset.lua` writes (a test compares the two). Without the
    /// script Redis copies no argument into Lua and builds no member there: the
    /// rows' share of Redis's time per call drops by about half (measured in
    /// docs/PERFORMANCE.md), and the transaction still lands whole or not at all,
    /// so a reader never sees a row between its removal and its new version.
    ///
    /// [`Store::put_history`]: crate::store::Store::put_history
    fn plain_rows_write(by_shard: RowsByShard<'_>, groups: bool) -> RowsWrite {
        let mut calls = Vec::new();
        // Where each shard's EXEC is among the calls.
        let mut execs = Vec::new();
        for (shard, rows) in by_shard {
            let split = ShardRows::of(&rows, groups);
            calls.push(Call::Plain(::redis::cmd("MULTI")));
            let opened = calls.len();
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
                                // Single members only: a group that starts
                                // with this key (body tag 2) holds other rows.
                                [&b"["[..], &m.prefix].concat(),
                                [&b"("[..], &m.prefix, &[codec::row::BODY_GROUP]].concat(),
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
            if calls.len() == opened {
                calls.pop();
            } else {
                execs.push(calls.len());
                calls.push(Call::Plain(::redis::cmd("EXEC")));
            }
        }
        RowsWrite::Plain { calls, execs }
    }

    /// Sends a [`RowsWrite::Plain`]: one transaction per shard in one pipeline.
    async fn send_plain_rows(
        &self,
        calls: Vec<Call>,
        execs: Vec<usize>,
    ) -> Result<Vec<StoreError>, StoreError> {
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        let sent = calls.len();
        // Upserts: resending after a lost reply writes the same rows again.
        let replies = self.exec(calls, Retry::Safe).await?;
        expect_replies(&replies, sent)?;
        for reply in &replies {
            reply_error(reply)?;
        }
        for reply in execs.iter().map(|&i| &replies[i]) {
            match reply {
                Value::Array(results) => {
                    for reply in results {
                        reply_error(reply)?;
                    }
                }
                other => {
                    return Err(StoreError::Unavailable(format!(
                        "redis did not run a history rows transaction: {other:?}"
                    )))
                }
            }
        }
        Ok(Vec::new())
    }

    /// One page of [`Store::history_since`], walking at most `walk` of the
    /// shard's week buckets (layout 5) when given: then a short page may come
    /// with where to go on from (the first key of the last bucket walked), and
    /// it holds no row below that key from any layout, so that the pages
    /// stay in descending key order. Without `walk`, layout 5 is read by
    /// successive walks of [`WALK_MAX`] buckets until the page is full or the
    /// buckets end (the first in the pipeline of the other layouts' reads).
    ///
    /// [`Store::history_since`]: crate::store::Store::history_since
    pub(super) fn history_walk(
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
        let from = retention::first_kept_key(cutoff_ms);
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
        // Lowered to the start of its group slot: a group holding rows at or
        // above `from` may start below it (rows below `from` are dropped after
        // decoding).
        let lower = if from.is_empty() {
            lower
        } else {
            match codec::row::slot_floor_prefix(account, from) {
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
            high: retention::last_bucket_before(before),
            low: cutoff_ms.map(retention::first_kept_bucket),
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
        // The bounds rows are kept between after decoding (groups may reach
        // past them).
        let (before, from) = (before.map(str::to_owned), from.to_owned());
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
            // A full walk may end inside a group slot: its page goes down to
            // that slot's start (see `slot_cut`), a short walk to its last
            // bucket's.
            let resume = resume
                .map(retention::first_key_of_bucket)
                .or_else(|| slot_cut(&buckets, count));
            let buckets = hist_rows(buckets, account, before.as_deref(), &from)?;
            let hist = hist_rows(from_value(hist)?, account, before.as_deref(), &from)?;
            let rowset = rowset_rows(from_value(rowset)?, account)?;
            let rows = rows_of(from_value(rows)?, &prefix, account)?;
            let legacy = rows_of(from_value(legacy)?, "", account)?;
            // Newest layout first: a row rewritten since an upgrade has its
            // current version there and its old one in an older layout.
            let written = merge_rows(buckets, hist, limit);
            let written = merge_rows(written, rowset, limit);
            let written = merge_rows(written, rows, limit);
            let page = merge_rows(written, legacy, limit);
            // Rows of the other layouts below an unread bucket (or slot) wait
            // for the page that reads it.
            Ok(retention::cut_at_resume(page, resume, limit))
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
    /// The body of [`Store::put_history`]: on standalone Redis with no leases
    /// plain commands ([`plain_rows_write`](Self::plain_rows_write)), else one
    /// call of put_rowset.lua per shard. A write of many rows (the runtime
    /// gathers them for [`crate::store::ROWS_GATHER`]) is encoded on a blocking
    /// thread: milliseconds of work that would otherwise stall the caller's
    /// executor, and every transfer on it, at each write.
    ///
    /// [`Store::put_history`]: crate::store::Store::put_history
    pub(super) fn put_history_rows(
        &self,
        rows: Vec<(ShardId, AccountId, HistoryRow)>,
        epochs: Vec<(ShardId, u64)>,
    ) -> StoreFuture<'_, Vec<StoreError>> {
        let groups = self.options.history_groups;
        let plain = self.cluster.is_none() && epochs.is_empty();
        let many = rows.len() >= ROWS_OFF_THREAD;
        let build = move || {
            let mut by_shard: RowsByShard<'_> = Default::default();
            for (shard, account, row) in &rows {
                by_shard.entry(*shard).or_default().push((*account, row));
            }
            if plain {
                Self::plain_rows_write(by_shard, groups)
            } else {
                Self::fenced_rows_write(by_shard, &epochs, groups)
            }
        };
        Box::pin(async move {
            let write = if many {
                tokio::task::spawn_blocking(build).await.map_err(|e| {
                    StoreError::Unavailable(format!("encoding history rows failed: {e}"))
                })?
            } else {
                build()
            };
            match write {
                RowsWrite::Plain { calls, execs } => self.send_plain_rows(calls, execs).await,
                RowsWrite::Fenced { calls, sent } => self.send_fenced_rows(calls, sent).await,
            }
        })
    }

    /// One call of put_rowset.lua per shard (a shard's keys share a slot, and
    /// one command with many arguments costs Redis one fsync): the writer's
    /// epoch (or ''), the count of replacing rows and of rows of layout 3,
    /// then of layout 5 per bucket, then the rows of layout 3 and of each
    /// bucket, replacing rows first in each.
    fn fenced_rows_write(
        by_shard: RowsByShard<'_>,
        epochs: &[(ShardId, u64)],
        groups: bool,
    ) -> RowsWrite {
        let epoch_of = |shard: ShardId| epochs.iter().find(|(s, _)| *s == shard).map(|e| e.1);
        let sent: Vec<(ShardId, Option<u64>)> =
            by_shard.keys().map(|&s| (s, epoch_of(s))).collect();
        let calls: Vec<Call> = by_shard
            .into_iter()
            .zip(&sent)
            .map(|((shard, mut rows), (_, epoch))| {
                rows.sort_by_key(|(_, row)| !row.replaces);
                let split = ShardRows::of(&rows, groups);
                let mut keys = vec![
                    rowset_key(shard),
                    shard_log::redis::positions_key(shard),
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
        RowsWrite::Fenced { calls, sent }
    }

    /// Sends a [`RowsWrite::Fenced`]; answers the shards whose epoch had moved on.
    async fn send_fenced_rows(
        &self,
        calls: Vec<Call>,
        sent: Vec<(ShardId, Option<u64>)>,
    ) -> Result<Vec<StoreError>, StoreError> {
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
            match shard_log::redis::fenced_status(&status, shard, 0, held, "the row set script") {
                Ok(()) => {}
                Err(lost @ StoreError::LeaseLost { .. }) => refused.push(lost),
                Err(other) => return Err(other),
            }
        }
        Ok(refused)
    }

    /// The body of [`Store::drop_history_before`]: drops whole layout-5 buckets
    /// past retention.
    ///
    /// [`Store::drop_history_before`]: crate::store::Store::drop_history_before
    pub(super) fn drop_buckets_before(
        &self,
        shards: Vec<ShardId>,
        cutoff_ms: i64,
        max_buckets: usize,
    ) -> StoreFuture<'_, retention::HistorySweep> {
        // Two round trips: the oldest buckets of every shard's index below the
        // cutoff, then one drop_buckets.lua call per shard that has some,
        // declaring those buckets' sets (one slot per shard). Only layout 5 is
        // bucketed: rows of older layouts stay (read-only, see the module's
        // notes), and reads leave them out past retention.
        let first_kept = retention::first_kept_bucket(cutoff_ms);
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
            let mut swept = retention::HistorySweep::default();
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
                "10000",
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
        let split = ShardRows::of(&refs, false);
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
    fn first_versions_of_one_account_and_slot_go_as_one_group() {
        use codec::row::GROUP_SLOT_MS;
        let (a, b) = (AccountId(9), AccountId(10));
        let slot = 180_000 * GROUP_SLOT_MS;
        let key = |ms: u64, n: u64| format!("{ms:016x}tx_{:016x}{n:016x}", 9u64);
        let row = |key: String, replaces: bool| HistoryRow {
            key,
            payload: format!("p{replaces}").into_bytes(),
            replaces,
        };
        let rows = [
            (a, row(key(slot + 7, 2), false)),
            (a, row(key(slot + 1, 1), false)),
            (a, row(key(slot + 3, 3), true)),
            (b, row(key(slot + 2, 4), false)),
            (a, row(key(slot + GROUP_SLOT_MS, 5), false)),
            (a, row("0000000000000001odd".into(), false)),
        ];
        let refs: Vec<(AccountId, &HistoryRow)> = rows.iter().map(|(a, r)| (*a, r)).collect();
        let split = ShardRows::of(&refs, true);
        assert_eq!(
            split.layout3.len(),
            1,
            "keys of another shape stay in layout 3"
        );
        let bucket = retention::bucket_of(&rows[0].1.key).unwrap();
        assert_eq!(split.buckets.len(), 1);
        let members = &split.buckets[&bucket];
        // The replacing row, alone first (replacing rows are removed first);
        // then a's two rows of the slot as one group (ascending), b's row and
        // a's row of the next slot as singles.
        let member = |m: &Member| [&m.prefix[..], &m.rest[..]].concat();
        assert_eq!(members.len(), 4);
        assert!(members[0].replaces);
        let group = codec::row::encode_group(
            a,
            &[(&rows[1].1.key, b"pfalse"), (&rows[0].1.key, b"pfalse")],
        )
        .unwrap();
        let grouped: Vec<Vec<u8>> = members.iter().map(member).collect();
        assert!(grouped.contains(&[&group.0[..], &group.1[..]].concat()));
        for (account, r) in [&rows[3], &rows[4]] {
            let (p, body) = codec::row::encode_member(*account, &r.key, &r.payload).unwrap();
            assert!(grouped.contains(&[&p[..], &body[..]].concat()), "{}", r.key);
        }
        // Read back: the single (later) version wins over the group's copy;
        // rows outside the bounds are dropped.
        let later = HistoryRow {
            key: rows[0].1.key.clone(),
            payload: b"v2".to_vec(),
            replaces: true,
        };
        let (p, body) = codec::row::encode_member(a, &later.key, &later.payload).unwrap();
        let read = vec![
            [&p[..], &body[..]].concat(),
            [&group.0[..], &group.1[..]].concat(),
        ];
        let got = hist_rows(read.clone(), a, None, "").unwrap();
        let got: Vec<(&str, &[u8])> = got
            .iter()
            .map(|r| (r.key.as_str(), r.payload.as_slice()))
            .collect();
        assert_eq!(
            got,
            vec![
                (rows[0].1.key.as_str(), &b"v2"[..]),
                (rows[1].1.key.as_str(), b"pfalse")
            ]
        );
        let below = hist_rows(read.clone(), a, Some(&rows[0].1.key), "").unwrap();
        assert_eq!(below.len(), 1);
        assert_eq!(below[0].key, rows[1].1.key);
        let above = hist_rows(read, a, None, &rows[0].1.key).unwrap();
        assert_eq!(above.len(), 1);
        assert_eq!(above[0].payload, b"v2");
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
