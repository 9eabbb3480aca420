//! One node's membership and shard leases, kept in Redis (standalone or Cluster).
//!
//! # Keys
//!
//! | key                      | type   | content                                         |
//! |--------------------------|--------|-------------------------------------------------|
//! | `okpay:{cluster}:nodes`  | zset   | node id → registration expiry (server ms)       |
//! | `okpay:{s007}:lease`     | string | `<node> <epoch>`, expiring after the lease time |
//! | `okpay:{s007}:pos`       | hash   | field `epoch`: the shard's fencing epoch        |
//!
//! The lease and the epoch share the shard's hash tag with its log, so a lease
//! script and the append script each touch one slot, and the epoch the append
//! script compares with is the one the lease scripts advance.
//!
//! # The protocol
//!
//! [`Leases::tick`] (every [`LeaseConfig::renew_every`]) registers the node,
//! reads the live nodes, renews the leases it holds, computes the shards it should
//! own ([`super::assignment`]), and takes those that are free. Taking a lease
//! (`SET`-like, only when no one holds it) advances the shard's epoch, and every
//! append of the holder carries that epoch ([`super::FencedShardLog`]), so once a
//! new owner took a shard, appends of the old one are refused by the append
//! script itself — however long the old one was paused.
//!
//! A node trusts a lease only until `sent + ttl − margin`, measured on its own
//! monotonic clock from the moment it *sent* the acquire or renew command (Redis
//! starts the expiry later, when it runs the command); past that it appends
//! nothing to the shard even before Redis tells it so. Shards it holds but
//! should not (a node joined) are reported in [`Tick::to_release`]: the runtime
//! finishes their batches, writes a final checkpoint and calls
//! [`Leases::release`], which also advances the epoch. A node that stops ticking
//! (crash, pause) loses its registration and its leases after the lease time,
//! and the next tick of the others takes its shards.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use ::redis::Value;

use super::assignment::shards_of;
use super::NodeId;
use crate::codec::{ShardId, ShardLayout};
use crate::store::redis::{from_value, Call, LuaScript, RedisStore, Retry};
use crate::store::StoreError;

static HEARTBEAT: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(include_str!("lua/heartbeat.lua")));
static ACQUIRE: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(include_str!("lua/acquire.lua")));
static RENEW: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(include_str!("lua/renew.lua")));
static RELEASE: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(include_str!("lua/release.lua")));

/// The membership sorted set (its own hash tag: one slot, read whole each tick).
const NODES_KEY: &str = "okpay:{cluster}:nodes";

fn lease_key(shard: ShardId) -> String {
    format!("okpay:{{{}}}:lease", shard.tag())
}

/// The shard's positions hash, shared with the shard log (see
/// `store::shard_log::redis`): its field `epoch` is what the append script checks.
fn pos_key(shard: ShardId) -> String {
    format!("okpay:{{{}}}:pos", shard.tag())
}

/// Timing of membership and leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseConfig {
    /// How long a lease (and a node's registration) lasts without renewal: the
    /// longest a crashed node's shards stay unserved, plus one tick.
    pub ttl: Duration,
    /// How often [`Leases::tick`] should run; a few ticks fit in one `ttl`, so a
    /// slow or lost renewal is survived.
    pub renew_every: Duration,
    /// Taken off `ttl` when deciding locally whether a lease still holds: room
    /// for the two clocks (this process's and Redis's) to run at slightly
    /// different speeds, and for a tick that runs late.
    pub margin: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        // 3 s + one 1 s tick: a crashed node's shards serve again within about
        // 4 s (issue 11's target is ≤ 5 s), while a renewal may fail twice in a
        // row without losing a lease.
        Self {
            ttl: Duration::from_secs(3),
            renew_every: Duration::from_secs(1),
            margin: Duration::from_millis(300),
        }
    }
}

/// A lease this node holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    epoch: u64,
    /// Past this instant the lease is not trusted locally (see the module doc).
    valid_until: Instant,
}

/// What one [`Leases::tick`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tick {
    /// The live nodes (sorted), this one included.
    pub live: Vec<NodeId>,
    /// Shards this node took, with their new epoch: the runtime recovers them
    /// from their checkpoint and log, then serves them.
    pub acquired: Vec<(ShardId, u64)>,
    /// Shards whose lease this node lost (expired and taken, or refused): the
    /// runtime drops them from memory at once, answering waiting clients
    /// `Unavailable`.
    pub lost: Vec<ShardId>,
    /// Shards this node holds but another should own: the runtime stops taking
    /// commands for them, lets their batches finish, writes a final checkpoint,
    /// then calls [`Leases::release`].
    pub to_release: Vec<ShardId>,
}

/// One node's view and handle of membership and shard leases.
pub struct Leases {
    redis: RedisStore,
    node: NodeId,
    layout: ShardLayout,
    config: LeaseConfig,
    /// A blocking mutex: never held across an await, only to read or update the map.
    held: parking_lot::Mutex<BTreeMap<ShardId, Held>>,
}

impl Leases {
    /// Sets up `node`'s leases over `redis` (its own connection: lease renewals
    /// must not queue behind batches). Nothing is registered before the first
    /// [`tick`](Self::tick).
    pub fn new(redis: RedisStore, node: NodeId, layout: ShardLayout, config: LeaseConfig) -> Self {
        Self {
            redis,
            node,
            layout,
            config,
            held: parking_lot::Mutex::new(BTreeMap::new()),
        }
    }

    pub fn node(&self) -> &NodeId {
        &self.node
    }

    pub fn config(&self) -> LeaseConfig {
        self.config
    }

    /// The epoch to append to `shard` with, while this node's lease on it is
    /// still trusted; `None` when the node must not write to the shard.
    pub fn epoch(&self, shard: ShardId) -> Option<u64> {
        let held = self.held.lock();
        held.get(&shard)
            .filter(|h| Instant::now() < h.valid_until)
            .map(|h| h.epoch)
    }

    /// The shards this node holds, with their epochs (trusted or not yet renewed).
    pub fn held(&self) -> Vec<(ShardId, u64)> {
        self.held
            .lock()
            .iter()
            .map(|(s, h)| (*s, h.epoch))
            .collect()
    }

    /// Forgets `shard` whatever its epoch: the lease driver's own step down from
    /// a lease it no longer trusts.
    pub fn forget(&self, shard: ShardId) {
        self.held.lock().remove(&shard);
    }

    /// Forgets `shard` at once, after a write of it under `epoch` was refused
    /// for that epoch: another node owns it now. A refusal aimed at an earlier
    /// lease of a shard this node holds again since, under a newer epoch,
    /// changes nothing (that write belonged to a hosting already gone).
    pub fn step_down(&self, shard: ShardId, epoch: u64) {
        let mut held = self.held.lock();
        if held.get(&shard).is_some_and(|h| h.epoch == epoch) {
            held.remove(&shard);
        }
    }

    /// One round of the protocol (see the module doc). On an error (Redis
    /// unreachable) nothing is renewed; leases stay trusted until their local
    /// expiry, after which [`epoch`](Self::epoch) refuses them.
    pub async fn tick(&self) -> Result<Tick, StoreError> {
        let ttl_ms = self.ttl_ms();
        let live = self.heartbeat(self.node.as_str(), ttl_ms).await?;
        let mut tick = Tick {
            live,
            ..Tick::default()
        };

        // Renew everything held, in one call.
        let held: Vec<(ShardId, u64)> = self.held();
        if !held.is_empty() {
            let sent = Instant::now();
            let calls = held
                .iter()
                .map(|&(shard, epoch)| {
                    let mut cmd = RENEW.call(&[&lease_key(shard), &pos_key(shard)]);
                    cmd.arg(self.node.as_str()).arg(epoch).arg(ttl_ms);
                    Call::Script(&RENEW, cmd)
                })
                .collect();
            let replies = self.redis.exec(calls, Retry::Safe).await?;
            let mut map = self.held.lock();
            for (&(shard, epoch), reply) in held.iter().zip(replies) {
                let renewed: i64 = from_value(reply)?;
                if renewed == 1 {
                    if let Some(h) = map.get_mut(&shard).filter(|h| h.epoch == epoch) {
                        h.valid_until = self.valid_until(sent);
                    }
                } else {
                    map.remove(&shard);
                    tick.lost.push(shard);
                }
            }
        }

        // Release what should move, take what should come.
        let mine = shards_of(self.layout.shards, &tick.live, &self.node);
        let holding: Vec<ShardId> = self.held().into_iter().map(|(s, _)| s).collect();
        tick.to_release = holding
            .iter()
            .copied()
            .filter(|s| !mine.contains(s))
            .collect();
        let wanted: Vec<ShardId> = mine.into_iter().filter(|s| !holding.contains(s)).collect();
        if !wanted.is_empty() {
            let sent = Instant::now();
            let calls = wanted
                .iter()
                .map(|&shard| {
                    let mut cmd = ACQUIRE.call(&[&lease_key(shard), &pos_key(shard)]);
                    cmd.arg(self.node.as_str()).arg(ttl_ms);
                    Call::Script(&ACQUIRE, cmd)
                })
                .collect();
            // Not resent: a retried acquire that had landed would see this node's
            // own lease and take it again under a further epoch, harmless but
            // wasteful; a failed call is simply tried at the next tick.
            let replies = self.redis.exec(calls, Retry::Never).await?;
            let mut map = self.held.lock();
            for (&shard, reply) in wanted.iter().zip(replies) {
                let (taken, epoch) = decode_acquire(reply)?;
                if taken {
                    map.insert(
                        shard,
                        Held {
                            epoch,
                            valid_until: self.valid_until(sent),
                        },
                    );
                    tick.acquired.push((shard, epoch));
                }
            }
        }
        Ok(tick)
    }

    /// Gives `shard` up after its final checkpoint; the epoch advances, so this
    /// node can append nothing more to it. Returns false when the lease was
    /// already lost.
    pub async fn release(&self, shard: ShardId) -> Result<bool, StoreError> {
        let Some(epoch) = self.held.lock().remove(&shard).map(|h| h.epoch) else {
            return Ok(false);
        };
        let mut cmd = RELEASE.call(&[&lease_key(shard), &pos_key(shard)]);
        cmd.arg(self.node.as_str()).arg(epoch);
        let reply = self.one(Call::Script(&RELEASE, cmd)).await?;
        let released: i64 = from_value(reply)?;
        Ok(released == 1)
    }

    /// Leaves the cluster: releases every lease held (the runtime has drained and
    /// checkpointed them) and removes the registration, so the others take the
    /// shards at their next tick instead of after the lease time.
    pub async fn leave(&self) -> Result<(), StoreError> {
        for (shard, _) in self.held() {
            self.release(shard).await?;
        }
        let mut cmd = ::redis::cmd("ZREM");
        cmd.arg(NODES_KEY).arg(self.node.as_str());
        self.one(Call::Plain(cmd)).await?;
        Ok(())
    }

    /// The live nodes, without registering this one.
    pub async fn live_nodes(&self) -> Result<Vec<NodeId>, StoreError> {
        self.heartbeat("", 0).await
    }

    /// The current holder and epoch of `shard`'s lease, if any (for operators and
    /// tests: `<node> <epoch>`).
    pub async fn holder(&self, shard: ShardId) -> Result<Option<(NodeId, u64)>, StoreError> {
        let mut cmd = ::redis::cmd("GET");
        cmd.arg(lease_key(shard));
        let value: Option<String> = from_value(self.one(Call::Plain(cmd)).await?)?;
        value.map(|v| parse_holder(&v)).transpose()
    }

    async fn heartbeat(&self, node: &str, ttl_ms: u64) -> Result<Vec<NodeId>, StoreError> {
        let mut cmd = HEARTBEAT.call(&[NODES_KEY]);
        cmd.arg(node).arg(ttl_ms);
        let ids: Vec<String> = from_value(self.one(Call::Script(&HEARTBEAT, cmd)).await?)?;
        let mut live = ids
            .iter()
            .map(|id| {
                NodeId::parse(id)
                    .map_err(|_| StoreError::Corrupt(format!("bad node id {id:?} in {NODES_KEY}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        live.sort();
        Ok(live)
    }

    async fn one(&self, call: Call) -> Result<Value, StoreError> {
        self.redis
            .exec(vec![call], Retry::Safe)
            .await?
            .pop()
            .ok_or_else(|| StoreError::Unavailable("redis sent no reply".into()))
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.config.ttl.as_millis()).unwrap_or(u64::MAX)
    }

    fn valid_until(&self, sent: Instant) -> Instant {
        sent + self.config.ttl.saturating_sub(self.config.margin)
    }
}

/// `{1, epoch}` or `{0, "<node> <epoch>"}` from the acquire script.
fn decode_acquire(reply: Value) -> Result<(bool, u64), StoreError> {
    let (taken, value): (i64, Value) = from_value(reply)?;
    if taken == 1 {
        let epoch: u64 = from_value(value)?;
        Ok((true, epoch))
    } else {
        Ok((false, 0))
    }
}

fn parse_holder(value: &str) -> Result<(NodeId, u64), StoreError> {
    value
        .split_once(' ')
        .and_then(|(node, epoch)| Some((NodeId::parse(node).ok()?, epoch.parse().ok()?)))
        .ok_or_else(|| StoreError::Corrupt(format!("bad lease value {value:?}")))
}
