//! [`Coord`] on Redis (standalone or Cluster): what every `okpay` node on one
//! Redis shares.
//!
//! # Keys
//!
//! Each key has its own hash tag, so every command and script touches one slot
//! and works unchanged on a Redis Cluster:
//!
//! | key                         | type   | content                                          |
//! |-----------------------------|--------|--------------------------------------------------|
//! | `okpay:rl:{<scope>:<key>}`  | zset   | hit times (ms, Redis's clock), expiring with the window |
//! | `okpay:lock:{<name>}`       | string | the holder's token, `SET NX PX`                  |
//! | `okpay:kv:{<name>}`         | string | a shared value                                   |
//! | `okpay:feed:{<name>}`       | stream | entries (field `e`), `MAXLEN` the kept count     |
//!
//! Times are Redis's (`TIME` inside the window script), so nodes whose clocks
//! disagree still count one window.
//!
//! # The bus
//!
//! Classic pub/sub on channels `okpay:bus:<topic>`, one `PSUBSCRIBE okpay:bus:*`
//! per process on a connection of its own. On a Redis Cluster a classic
//! `PUBLISH` reaches subscribers on every node of the cluster, so the one
//! subscription made to the URL's node hears every node's messages. Each
//! message starts with the publishing process's random instance id, so a
//! process skips its own. When the subscription connection drops, it is made
//! again (every 0.5 s until Redis answers) and subscribers get
//! [`BusEvent::Reset`]: what was published meanwhile is lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use ::redis::{Client, Value};
use futures::StreamExt as _;
use parking_lot::Mutex;
use tokio::sync::broadcast;

use super::{check_key, BusEvent, Coord, Membership, Window, BUS_CAPACITY, MAX_MESSAGE_BYTES};
use crate::codec::ShardId;
use crate::store::redis::{from_value, reply_error, Call, LuaScript, RedisStore, Retry};
use crate::store::{StoreError, StoreFuture};

/// The membership set of [`crate::cluster::leases`].
const NODES_KEY: &str = "okpay:{cluster}:nodes";

/// The scripts: KEYS, ARGV and replies are in each file's header.
static NODES: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(include_str!("lua/nodes.lua")));
static WINDOW: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(include_str!("lua/window.lua")));
static UNLOCK: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(include_str!("lua/unlock.lua")));

const BUS_PATTERN: &str = "okpay:bus:*";
const BUS_PREFIX: &str = "okpay:bus:";

/// The Redis coordination state of one process.
pub struct RedisCoord {
    store: Arc<RedisStore>,
    /// For the subscription connection (pub/sub needs a connection of its own).
    client: Client,
    /// Marks this process's messages, so it skips them.
    instance: String,
    bus: broadcast::Sender<BusEvent>,
    /// Set when the subscription task runs.
    listening: Mutex<bool>,
    closed: Arc<AtomicBool>,
}

impl RedisCoord {
    /// Coordination over `store`'s connection; `url` is the one `store` was
    /// opened with (the subscription connects there).
    pub fn new(store: Arc<RedisStore>, url: &str) -> Result<Self, StoreError> {
        let client = Client::open(url)
            .map_err(|e| StoreError::Unavailable(format!("bad redis url: {e}")))?;
        Ok(RedisCoord {
            store,
            client,
            instance: format!("{:016x}", rand::random::<u64>()),
            bus: broadcast::channel(BUS_CAPACITY).0,
            listening: Mutex::new(false),
            closed: Arc::new(AtomicBool::new(false)),
        })
    }

    async fn one(&self, call: Call, retry: Retry) -> Result<Value, StoreError> {
        self.store.exec_one(call, retry).await
    }

    fn window(
        &self,
        scope: &str,
        key: &str,
        limit: Window,
        hit: bool,
    ) -> StoreFuture<'_, Option<Duration>> {
        let checked = check_key("scope", scope).and_then(|()| check_key("key", key));
        let redis_key = format!("okpay:rl:{{{scope}:{key}}}");
        Box::pin(async move {
            checked?;
            let mut cmd = WINDOW.call(&[&redis_key]);
            cmd.arg(limit.window.as_millis().max(1) as u64)
                .arg(limit.max.max(1))
                .arg(if hit { "1" } else { "0" })
                .arg(format!("{:016x}", rand::random::<u64>()));
            // A hit is never resent (it would count twice); a check may be.
            let retry = if hit { Retry::Never } else { Retry::Safe };
            let wait: i64 = from_value(self.one(Call::Script(&WINDOW, cmd), retry).await?)?;
            Ok((wait >= 0).then(|| Duration::from_millis(wait as u64)))
        })
    }

    /// Starts the subscription task (once), on the current tokio runtime.
    fn listen(&self) {
        let mut listening = self.listening.lock();
        if *listening {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("coordination bus: no runtime to listen on");
            return;
        };
        *listening = true;
        let (client, bus, instance, closed) = (
            self.client.clone(),
            self.bus.clone(),
            self.instance.clone(),
            self.closed.clone(),
        );
        runtime.spawn(listen(client, bus, instance, closed));
    }
}

impl Drop for RedisCoord {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Release);
    }
}

/// Keeps one pattern subscription open and forwards other processes' messages
/// until the coordination state is dropped.
async fn listen(
    client: Client,
    bus: broadcast::Sender<BusEvent>,
    instance: String,
    closed: Arc<AtomicBool>,
) {
    let mut first = true;
    while !closed.load(Ordering::Acquire) {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.psubscribe(BUS_PATTERN).await?;
            Ok::<_, ::redis::RedisError>(pubsub)
        };
        let pubsub = match tokio::time::timeout(Duration::from_secs(2), subscribed).await {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "coordination bus: cannot subscribe; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(_) => {
                tracing::warn!("coordination bus: subscribing timed out; retrying");
                continue;
            }
        };
        if !first {
            // Whatever was published while the subscription was down is lost.
            let _ = bus.send(BusEvent::Reset);
        }
        first = false;
        let mut messages = pubsub.into_on_message();
        let mut check = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                msg = messages.next() => {
                    let Some(msg) = msg else { break };
                    let channel = msg.get_channel_name();
                    let Some(topic) = channel.strip_prefix(BUS_PREFIX) else { continue };
                    let payload = msg.get_payload_bytes();
                    if payload.len() < 16 || &payload[..16] == instance.as_bytes() {
                        continue;
                    }
                    let _ = bus.send(BusEvent::Message {
                        topic: topic.to_owned(),
                        payload: Arc::from(&payload[16..]),
                    });
                }
                _ = check.tick() => {
                    if closed.load(Ordering::Acquire) {
                        return;
                    }
                }
            }
        }
        tracing::warn!("coordination bus: subscription lost; subscribing again");
        let _ = bus.send(BusEvent::Reset);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Entries of an `XREVRANGE` reply (`[[id, [field, value]], ...]`): the values.
fn feed_entries(reply: Value) -> Result<Vec<Vec<u8>>, StoreError> {
    let corrupt = || StoreError::Corrupt("a feed entry is malformed".into());
    let Value::Array(entries) = reply else {
        return Err(corrupt());
    };
    entries
        .into_iter()
        .map(|entry| {
            let Value::Array(mut parts) = entry else {
                return Err(corrupt());
            };
            let Some(Value::Array(mut fields)) = parts.pop() else {
                return Err(corrupt());
            };
            match fields.pop() {
                Some(Value::BulkString(bytes)) => Ok(bytes),
                _ => Err(corrupt()),
            }
        })
        .collect()
}

impl Coord for RedisCoord {
    fn window_blocked(
        &self,
        scope: &str,
        key: &str,
        limit: Window,
    ) -> StoreFuture<'_, Option<Duration>> {
        self.window(scope, key, limit, false)
    }

    fn window_hit(
        &self,
        scope: &str,
        key: &str,
        limit: Window,
    ) -> StoreFuture<'_, Option<Duration>> {
        self.window(scope, key, limit, true)
    }

    fn try_lock(&self, name: &str, token: u64, ttl: Duration) -> StoreFuture<'_, bool> {
        let checked = check_key("lock name", name);
        let key = format!("okpay:lock:{{{name}}}");
        Box::pin(async move {
            checked?;
            let mut cmd = ::redis::cmd("SET");
            cmd.arg(&key)
                .arg(token)
                .arg("NX")
                .arg("PX")
                .arg(ttl.as_millis().max(1) as u64);
            // Never resent: a first attempt that took the lock would make the
            // second one fail, and the caller wait for its own lock.
            let reply = self.one(Call::Plain(cmd), Retry::Never).await?;
            Ok(!matches!(reply, Value::Nil))
        })
    }

    fn unlock(&self, name: &str, token: u64) -> StoreFuture<'_, ()> {
        let key = format!("okpay:lock:{{{name}}}");
        Box::pin(async move {
            let mut cmd = UNLOCK.call(&[&key]);
            cmd.arg(token);
            self.one(Call::Script(&UNLOCK, cmd), Retry::Safe).await?;
            Ok(())
        })
    }

    fn put(&self, name: &str, value: &str) -> StoreFuture<'_, ()> {
        let checked = check_key("value name", name);
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(format!("okpay:kv:{{{name}}}")).arg(value);
        Box::pin(async move {
            checked?;
            self.one(Call::Plain(cmd), Retry::Safe).await?;
            Ok(())
        })
    }

    fn get(&self, name: &str) -> StoreFuture<'_, Option<String>> {
        let mut cmd = ::redis::cmd("GET");
        cmd.arg(format!("okpay:kv:{{{name}}}"));
        Box::pin(async move { from_value(self.one(Call::Plain(cmd), Retry::Safe).await?) })
    }

    fn feed_push(&self, name: &str, entry: Vec<u8>, keep: usize) -> StoreFuture<'_, ()> {
        let checked = check_key("feed name", name);
        let mut cmd = ::redis::cmd("XADD");
        cmd.arg(format!("okpay:feed:{{{name}}}"))
            .arg("MAXLEN")
            .arg(keep.max(1))
            .arg("*")
            .arg("e")
            .arg(entry);
        Box::pin(async move {
            checked?;
            // Never resent: the entry would appear twice.
            self.one(Call::Plain(cmd), Retry::Never).await?;
            Ok(())
        })
    }

    fn feed_newest(&self, name: &str, limit: usize) -> StoreFuture<'_, Vec<Vec<u8>>> {
        let mut cmd = ::redis::cmd("XREVRANGE");
        cmd.arg(format!("okpay:feed:{{{name}}}"))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(limit.max(1));
        Box::pin(async move { feed_entries(self.one(Call::Plain(cmd), Retry::Safe).await?) })
    }

    fn publish(&self, topic: &str, payload: Vec<u8>) -> StoreFuture<'_, ()> {
        let checked = check_key("topic", topic).and_then(|()| {
            if payload.len() > MAX_MESSAGE_BYTES {
                Err(StoreError::Unavailable(format!(
                    "a bus message of {} bytes is over {MAX_MESSAGE_BYTES}",
                    payload.len()
                )))
            } else {
                Ok(())
            }
        });
        let mut message = Vec::with_capacity(16 + payload.len());
        message.extend_from_slice(self.instance.as_bytes());
        message.extend_from_slice(&payload);
        let mut cmd = ::redis::cmd("PUBLISH");
        cmd.arg(format!("{BUS_PREFIX}{topic}")).arg(message);
        Box::pin(async move {
            checked?;
            self.one(Call::Plain(cmd), Retry::Never).await?;
            Ok(())
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        let rx = self.bus.subscribe();
        self.listen();
        rx
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn membership(&self, shards: u16) -> StoreFuture<'_, Option<Membership>> {
        Box::pin(async move {
            let mut calls = vec![Call::Script(&NODES, NODES.call(&[NODES_KEY]))];
            for s in 0..shards {
                // The lease and the epoch, as `cluster::leases` keeps them.
                let tag = ShardId(s).tag();
                let mut get = ::redis::cmd("GET");
                get.arg(format!("okpay:{{{tag}}}:lease"));
                let mut epoch = ::redis::cmd("HGET");
                epoch.arg(format!("okpay:{{{tag}}}:pos")).arg("epoch");
                calls.push(Call::Plain(get));
                calls.push(Call::Plain(epoch));
            }
            let mut replies = self.store.exec(calls, Retry::Safe).await?.into_iter();
            let nodes = replies
                .next()
                .ok_or_else(|| StoreError::Unavailable("redis sent no reply".into()))?;
            reply_error(&nodes)?;
            let (now, listed): (i64, Vec<(String, i64)>) = from_value(nodes)?;
            let mut out = Membership {
                nodes: listed
                    .into_iter()
                    .map(|(node, expiry)| (node, expiry - now))
                    .collect(),
                shards: Vec::with_capacity(usize::from(shards)),
            };
            while let (Some(lease), Some(epoch)) = (replies.next(), replies.next()) {
                reply_error(&lease)?;
                reply_error(&epoch)?;
                let lease: Option<String> = from_value(lease)?;
                let epoch: Option<u64> = from_value(epoch)?;
                let owner = lease.and_then(|l| l.split(' ').next().map(str::to_owned));
                out.shards.push((owner, epoch.unwrap_or(0)));
            }
            Ok(Some(out))
        })
    }
}
