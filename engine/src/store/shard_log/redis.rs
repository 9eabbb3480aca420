//! The shard log on Redis. Keys of shard 7 share the hash tag `{s007}`, so a
//! shard is one Redis Cluster slot and can move to another node whole:
//!
//! - `okpay:{s007}:log` — a stream, one entry `<lsn>-1` per batch frame;
//! - `okpay:{s007}:pos` — a hash: `head` (last lsn appended), `ckpt` (checkpoint lsn);
//! - `okpay:{s007}:state` — a hash: 8-byte little-endian account id → its state as
//!   of the checkpoint.
//!
//! An append checks and advances each shard's head: on standalone Redis one
//! script call for all the frames of a batch ([`append_batch.lua`](lua/append_batch.lua)),
//! on a Cluster one call per shard ([`append.lua`](lua/append.lua)) in one
//! pipeline; either way one round trip and (with `appendfsync always`) one fsync. Connections, timeouts and `NOSCRIPT` reloads are the Redis store's
//! ([`RedisStore`]), shared rather than duplicated.

use std::sync::LazyLock;

use ::redis::Value;

use super::{ShardAppend, ShardHead, ShardLog, StoredFrame};
use crate::codec::{ShardId, ShardLayout};
use crate::ids::AccountId;
use crate::store::redis::{from_value, reply_error, Call, LuaScript, RedisStore, Retry};
use crate::store::{StoreError, StoreFuture};

static APPEND: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(include_str!("lua/append.lua")));
static APPEND_BATCH: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(include_str!("lua/append_batch.lua")));
static CHECKPOINT: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(include_str!("lua/checkpoint.lua")));

/// Where the shard layout is stored (one key for the deployment).
const LAYOUT_KEY: &str = "okpay:layout";

struct Keys {
    log: String,
    pos: String,
    state: String,
}

fn keys(shard: ShardId) -> Keys {
    let tag = shard.tag();
    Keys {
        log: format!("okpay:{{{tag}}}:log"),
        pos: positions_key(shard),
        state: format!("okpay:{{{tag}}}:state"),
    }
}

/// The shard's positions hash (`head`, `ckpt`, `epoch`). The history row
/// script reads its `epoch` too (same hash tag), to fence row writes.
pub(crate) fn positions_key(shard: ShardId) -> String {
    format!("okpay:{{{}}}:pos", shard.tag())
}

/// The [`ShardLog`] on Redis.
pub struct RedisShardLog {
    redis: RedisStore,
}

impl RedisShardLog {
    /// Connects to `url` (see [`RedisStore::connect`]).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Ok(RedisShardLog {
            redis: RedisStore::connect(url).await?,
        })
    }

    /// Uses an existing connection.
    pub fn over(redis: RedisStore) -> Self {
        RedisShardLog { redis }
    }

    /// [`ShardLog::append`] by lease holders (see [`crate::cluster`]): each frame
    /// carries its writer's epoch for the shard, and the script refuses it with
    /// [`StoreError::LeaseLost`] unless that is the shard's current epoch, besides
    /// the usual head check.
    pub async fn append_at_epochs(
        &self,
        batch: Vec<(ShardAppend, u64)>,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        self.append_frames(
            batch.into_iter().map(|(a, e)| (a, Some(e))).collect(),
            false,
        )
        .await
    }

    /// Appends frames, each fenced by its shard's head (and by its writer's
    /// epoch when given). On standalone Redis all of them are one script call
    /// ([`append_batch.lua`](lua/append_batch.lua)); on a Cluster one call per
    /// shard ([`append.lua`](lua/append.lua)), since a script touches one slot.
    /// `whole`: on standalone Redis, a refused frame refuses the whole call
    /// (nothing written; see [`ShardLog::atomic_append`]).
    async fn append_frames(
        &self,
        batch: Vec<(ShardAppend, Option<u64>)>,
        whole: bool,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let sent: Vec<(ShardId, u64, Option<u64>)> =
            batch.iter().map(|(a, e)| (a.shard, a.lsn, *e)).collect();
        let calls = if self.redis.one_slot_per_script() {
            batch
                .into_iter()
                .map(|(a, epoch)| {
                    let k = keys(a.shard);
                    let mut cmd = APPEND.call(&[&k.log, &k.pos]);
                    cmd.arg(a.lsn).arg(a.frame);
                    if let Some(e) = epoch {
                        cmd.arg(e);
                    }
                    Call::Script(&APPEND, cmd)
                })
                .collect()
        } else {
            let names: Vec<String> = batch
                .iter()
                .flat_map(|(a, _)| {
                    let k = keys(a.shard);
                    [k.log, k.pos]
                })
                .collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let mut cmd = APPEND_BATCH.call(&names);
            for (a, epoch) in batch {
                cmd.arg(a.lsn).arg(a.frame);
                match epoch {
                    Some(e) => cmd.arg(e),
                    None => cmd.arg(""),
                };
            }
            if whole {
                cmd.arg("whole");
            }
            vec![Call::Script(&APPEND_BATCH, cmd)]
        };
        // Never resent: a frame that landed would then be refused as fenced.
        let replies = self.redis.exec_replicated(calls, Retry::Never).await?;
        let statuses: Vec<Vec<i64>> = if self.redis.one_slot_per_script() {
            replies
                .into_iter()
                .map(from_value)
                .collect::<Result<_, _>>()?
        } else {
            let flat: Vec<i64> = from_value(
                replies
                    .into_iter()
                    .next()
                    .ok_or_else(|| corrupt("the append script"))?,
            )?;
            flat.chunks(2).map(<[i64]>::to_vec).collect()
        };
        if statuses.len() != sent.len() {
            return Err(corrupt("the append script (count)"));
        }
        Ok(sent
            .into_iter()
            .zip(statuses)
            .map(|((shard, lsn, held), v)| fenced_status(&v, shard, lsn, held, "the append script"))
            .collect())
    }

    /// [`ShardLog::checkpoint`], fenced by the writer's lease epoch when given:
    /// refused with [`StoreError::LeaseLost`] unless it is the shard's current
    /// epoch, so a stale owner can't overwrite a newer owner's checkpoint.
    pub async fn checkpoint_at(
        &self,
        shard: ShardId,
        lsn: u64,
        states: Vec<(AccountId, Vec<u8>)>,
        epoch: Option<u64>,
    ) -> Result<(), StoreError> {
        let k = keys(shard);
        let mut cmd = CHECKPOINT.call(&[&k.log, &k.pos, &k.state]);
        cmd.arg(lsn);
        match epoch {
            Some(e) => cmd.arg(e),
            None => cmd.arg(""),
        };
        for (account, state) in states {
            cmd.arg(&account.0.to_le_bytes()[..]).arg(state);
        }
        // Safe to resend: a second run finds the position already covered.
        let reply = self
            .one(Call::Script(&CHECKPOINT, cmd), Retry::Safe)
            .await?;
        let v: Vec<i64> = from_value(reply)?;
        fenced_status(&v, shard, lsn, epoch, "the checkpoint script")
    }

    async fn one(&self, call: Call, retry: Retry) -> Result<Value, StoreError> {
        self.redis.exec_one(call, retry).await
    }
}

/// A fenced script's `{1, _}` (done), `{0, head}` (fenced by position),
/// `{2, epoch}` (fenced by epoch: `held` was the writer's) or `{3, head}` (not
/// written: another frame of a whole-or-nothing append was refused). The history row
/// script answers the same way.
pub(crate) fn fenced_status(
    v: &[i64],
    shard: ShardId,
    lsn: u64,
    held: Option<u64>,
    what: &str,
) -> Result<(), StoreError> {
    match v {
        [1, _] => Ok(()),
        [0, head] if *head >= 0 => Err(StoreError::Fenced {
            shard: shard.0,
            head: *head as u64,
            got: lsn,
        }),
        [2, current] if *current >= 0 => Err(StoreError::LeaseLost {
            shard: shard.0,
            held: held.unwrap_or(0),
            current: *current as u64,
        }),
        [3, _] => Err(super::not_written(shard, lsn)),
        _ => Err(corrupt(what)),
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("unexpected redis reply to {what}"))
}

fn stream_lsn(id: &[u8]) -> Result<u64, StoreError> {
    std::str::from_utf8(id)
        .ok()
        .and_then(|s| s.split('-').next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| corrupt("XRANGE (entry id)"))
}

fn bytes_of(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// Decodes an `XRANGE` reply of `f <frame>` entries.
fn decode_frames(reply: Value) -> Result<Vec<StoredFrame>, StoreError> {
    reply_error(&reply)?;
    let Value::Array(entries) = reply else {
        return Err(corrupt("XRANGE"));
    };
    entries
        .iter()
        .map(|entry| {
            let Value::Array(parts) = entry else {
                return Err(corrupt("XRANGE (entry)"));
            };
            let (Some(id), Some(Value::Array(fields))) = (parts.first(), parts.get(1)) else {
                return Err(corrupt("XRANGE (entry shape)"));
            };
            let lsn = stream_lsn(bytes_of(id).ok_or_else(|| corrupt("XRANGE (id)"))?)?;
            let frame = fields
                .get(1)
                .and_then(bytes_of)
                .ok_or_else(|| corrupt("XRANGE (field)"))?
                .to_vec();
            Ok(StoredFrame { lsn, frame })
        })
        .collect()
}

impl ShardLog for RedisShardLog {
    fn init_layout(&self, proposed: ShardLayout) -> StoreFuture<'_, ShardLayout> {
        Box::pin(async move {
            let mut set = ::redis::cmd("SET");
            set.arg(LAYOUT_KEY).arg(proposed.encode()).arg("NX");
            let mut get = ::redis::cmd("GET");
            get.arg(LAYOUT_KEY);
            let replies = self
                .redis
                .exec(vec![Call::Plain(set), Call::Plain(get)], Retry::Safe)
                .await?;
            let stored: Vec<u8> =
                from_value(replies.into_iter().nth(1).ok_or_else(|| corrupt("GET"))?)?;
            ShardLayout::decode(&stored)
                .map_err(|e| StoreError::Corrupt(format!("stored shard layout: {e}")))
        })
    }

    fn append(&self, batch: Vec<ShardAppend>) -> StoreFuture<'_, Vec<Result<(), StoreError>>> {
        Box::pin(self.append_frames(batch.into_iter().map(|a| (a, None)).collect(), true))
    }

    fn head(&self, shard: ShardId) -> StoreFuture<'_, ShardHead> {
        Box::pin(async move {
            let mut cmd = ::redis::cmd("HMGET");
            cmd.arg(keys(shard).pos).arg("head").arg("ckpt");
            let reply = self.one(Call::Plain(cmd), Retry::Safe).await?;
            let v: Vec<Option<u64>> = from_value(reply)?;
            match v.as_slice() {
                [head, ckpt] => Ok(ShardHead {
                    head: head.unwrap_or(0),
                    checkpoint: ckpt.unwrap_or(0),
                }),
                _ => Err(corrupt("HMGET")),
            }
        })
    }

    fn read(&self, shard: ShardId, after: u64, limit: usize) -> StoreFuture<'_, Vec<StoredFrame>> {
        Box::pin(async move {
            let mut cmd = ::redis::cmd("XRANGE");
            cmd.arg(keys(shard).log)
                .arg(format!("{}-0", after + 1))
                .arg("+")
                .arg("COUNT")
                .arg(limit.max(1));
            decode_frames(self.one(Call::Plain(cmd), Retry::Safe).await?)
        })
    }

    fn checkpoint(
        &self,
        shard: ShardId,
        lsn: u64,
        states: Vec<(AccountId, Vec<u8>)>,
    ) -> StoreFuture<'_, ()> {
        Box::pin(self.checkpoint_at(shard, lsn, states, None))
    }

    fn load_account(&self, shard: ShardId, account: AccountId) -> StoreFuture<'_, Option<Vec<u8>>> {
        Box::pin(async move {
            let mut cmd = ::redis::cmd("HGET");
            cmd.arg(keys(shard).state).arg(&account.0.to_le_bytes()[..]);
            from_value(self.one(Call::Plain(cmd), Retry::Safe).await?)
        })
    }

    fn load_accounts<'a>(
        &'a self,
        shard: ShardId,
        accounts: &'a [AccountId],
    ) -> StoreFuture<'a, Vec<Option<Vec<u8>>>> {
        Box::pin(async move {
            if accounts.is_empty() {
                return Ok(Vec::new());
            }
            let mut cmd = ::redis::cmd("HMGET");
            cmd.arg(keys(shard).state);
            for account in accounts {
                cmd.arg(&account.0.to_le_bytes()[..]);
            }
            let states: Vec<Option<Vec<u8>>> =
                from_value(self.one(Call::Plain(cmd), Retry::Safe).await?)?;
            if states.len() != accounts.len() {
                return Err(StoreError::Corrupt(format!(
                    "{shard}: {} states for {} accounts",
                    states.len(),
                    accounts.len()
                )));
            }
            Ok(states)
        })
    }

    fn accounts(&self, shard: ShardId) -> StoreFuture<'_, Vec<AccountId>> {
        Box::pin(async move {
            let mut cmd = ::redis::cmd("HKEYS");
            cmd.arg(keys(shard).state);
            let raw: Vec<Vec<u8>> = from_value(self.one(Call::Plain(cmd), Retry::Safe).await?)?;
            let mut ids = raw
                .iter()
                .map(|k| {
                    <[u8; 8]>::try_from(k.as_slice())
                        .map(|b| AccountId(u64::from_le_bytes(b)))
                        .map_err(|_| StoreError::Corrupt(format!("state key of {shard}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            ids.sort_unstable();
            Ok(ids)
        })
    }

    fn backend_name(&self) -> &'static str {
        "redis"
    }

    /// Standalone Redis: one script call per append, which refuses all its
    /// frames when one is fenced, and which the AOF keeps as one MULTI/EXEC
    /// (a torn one is dropped whole on load). A Cluster: one call per shard.
    fn atomic_append(&self) -> bool {
        !self.redis.one_slot_per_script()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_shard_hash_tag() {
        let k = keys(ShardId(7));
        assert_eq!(k.log, "okpay:{s007}:log");
        assert_eq!(k.pos, "okpay:{s007}:pos");
        assert_eq!(k.state, "okpay:{s007}:state");
    }
}
