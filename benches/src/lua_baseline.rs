//! The baseline a team would build instead of the engine: balances as integers in
//! Redis and one Lua script per transfer, invoked with `EVALSHA`, that atomically
//! claims the idempotency key (`SET NX`), checks the balance, debits and credits.
//! Durable in the same way as the engine's journal (`appendfsync always`: Redis
//! fsyncs its AOF before replying), so comparing the two measures what the engine's
//! actors and group commit buy, not a difference in durability.
//!
//! What the baseline does *not* do, and the engine does: limits and fraud rules,
//! transfer history, notifications, a saga that can reverse. It is the cheapest
//! correct way to move money durably through Redis, i.e. the bar to beat.
//!
//! Concurrency comes from several multiplexed connections used round-robin: each
//! one pipelines the requests of every caller that uses it, so thousands of callers
//! in flight reach Redis as a few busy sockets, as they would through a pool.
//! Keys are `bank:{<account>}:balance` and `bank:{<account>}:idem:<key>`; a transfer
//! touches two accounts' slots, which is fine on one server (the baseline does not
//! claim to run on Redis Cluster).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use okpay_engine::ids::AccountId;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisResult, Script};

/// How long the baseline remembers an idempotency key (as the engine: 24 h).
pub const IDEMPOTENCY_TTL_S: u64 = 24 * 60 * 60;

/// KEYS: source balance, destination balance, the source's idempotency key.
/// ARGV: amount in minor units, the result to remember under the key, its TTL.
///
/// Returns `{1, new source balance}` when transferred, `{2, 0}` when the key was
/// already used (nothing changed), `{0, balance}` for insufficient funds (nothing
/// changed; the key is released, as the engine does not remember rejections). The
/// script runs atomically, so the claim and its release are never seen by anyone.
const TRANSFER_LUA: &str = r"
local amount = tonumber(ARGV[1])
if not redis.call('SET', KEYS[3], ARGV[2], 'NX', 'EX', ARGV[3]) then
  return {2, 0}
end
local balance = tonumber(redis.call('GET', KEYS[1]) or '0')
if balance < amount then
  redis.call('DEL', KEYS[3])
  return {0, balance}
end
redis.call('DECRBY', KEYS[1], amount)
redis.call('INCRBY', KEYS[2], amount)
return {1, balance - amount}
";

/// What one baseline transfer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaselineOutcome {
    /// Moved; the source's balance afterwards.
    Transferred { balance_after: i64 },
    /// The idempotency key was already used; nothing moved.
    Duplicate,
    /// The source had less than the amount; nothing moved.
    InsufficientFunds { balance: i64 },
}

/// A Redis-backed bank of integer balances, moved by one Lua script per transfer.
pub struct LuaBank {
    connections: Vec<MultiplexedConnection>,
    /// Round-robin cursor over `connections`.
    next: AtomicUsize,
    transfer: Script,
}

impl std::fmt::Debug for LuaBank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LuaBank")
            .field("connections", &self.connections.len())
            .finish()
    }
}

fn balance_key(account: AccountId) -> String {
    format!("bank:{{{account}}}:balance")
}

fn idempotency_key(account: AccountId, key: &str) -> String {
    format!("bank:{{{account}}}:idem:{key}")
}

impl LuaBank {
    /// Opens `connections` multiplexed connections to `url` and loads the script, so
    /// the measured calls are all plain `EVALSHA` hits.
    pub async fn connect(url: &str, connections: usize) -> RedisResult<LuaBank> {
        let client = Client::open(url)?;
        // The same bounds as the engine's Redis store, so neither side can hang.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(2));
        let mut opened = Vec::with_capacity(connections.max(1));
        for _ in 0..connections.max(1) {
            opened.push(
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?,
            );
        }
        let transfer = Script::new(TRANSFER_LUA);
        transfer.prepare_invoke().load_async(&mut opened[0]).await?;
        Ok(LuaBank {
            connections: opened,
            next: AtomicUsize::new(0),
            transfer,
        })
    }

    fn connection(&self) -> MultiplexedConnection {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        self.connections[i].clone()
    }

    /// Sets every account's balance to `minor_units`, in pipelines of bounded size.
    pub async fn fund(&self, accounts: &[AccountId], minor_units: i64) -> RedisResult<()> {
        const CHUNK: usize = 1000;
        let mut conn = self.connection();
        for chunk in accounts.chunks(CHUNK) {
            let mut pipe = redis::pipe();
            for &account in chunk {
                pipe.set(balance_key(account), minor_units).ignore();
            }
            pipe.exec_async(&mut conn).await?;
        }
        Ok(())
    }

    /// The sum of every account's balance (to check that no money was made or lost).
    pub async fn total(&self, accounts: &[AccountId]) -> RedisResult<i64> {
        const CHUNK: usize = 1000;
        let mut conn = self.connection();
        let mut sum = 0i64;
        for chunk in accounts.chunks(CHUNK) {
            let keys: Vec<String> = chunk.iter().map(|&a| balance_key(a)).collect();
            let balances: Vec<Option<i64>> =
                redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
            sum += balances.into_iter().flatten().sum::<i64>();
        }
        Ok(sum)
    }

    /// Moves `minor_units` from `from` to `to` once per idempotency `key`, durably
    /// (the reply comes after Redis fsync'd the script's writes).
    pub async fn transfer(
        &self,
        from: AccountId,
        to: AccountId,
        minor_units: i64,
        key: &str,
    ) -> RedisResult<BaselineOutcome> {
        let mut conn = self.connection();
        let (code, balance): (i64, i64) = self
            .transfer
            .key(balance_key(from))
            .key(balance_key(to))
            .key(idempotency_key(from, key))
            .arg(minor_units)
            .arg(format!("{to}:{minor_units}"))
            .arg(IDEMPOTENCY_TTL_S)
            .invoke_async(&mut conn)
            .await?;
        Ok(match code {
            1 => BaselineOutcome::Transferred {
                balance_after: balance,
            },
            2 => BaselineOutcome::Duplicate,
            _ => BaselineOutcome::InsufficientFunds { balance },
        })
    }
}
