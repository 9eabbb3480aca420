//! The Redis store's link to a Redis Cluster: detecting one, routing each command
//! to the master that owns its slot, and reading every master's durability
//! settings.
//!
//! The store is given one URL. If that node answers `INFO cluster` with
//! `cluster_enabled:1`, the store talks to the whole cluster through redis-rs's
//! async cluster connection (which learns the slot map with `CLUSTER SLOTS`,
//! follows `MOVED`/`ASK` and reconnects), and otherwise to the single server as
//! before; no flag tells the two apart.
//!
//! Three rules keep every command on one slot, so a cluster never answers
//! `CROSSSLOT` and a multi-key script stays atomic:
//!
//! - every key one script or multi-key command touches shares one hash tag (an
//!   account's `{acc_…}`, a shard's `{s007}`, an index's `{name}`);
//! - the store's callers send batches that span slots (a shard-log append with
//!   frames of many shards, a snapshot with its account-set `ZADD`, history rows of
//!   many accounts): [`ClusterLink::round_trip`] splits such a pipeline into one
//!   sub-pipeline per slot, sends those concurrently, and puts the replies back in
//!   the caller's order;
//! - the standalone batch script that appends records of many accounts in one call
//!   is never used on a cluster (the store switches to one call per record).
//!
//! Scripts travel as `EVAL` with their source rather than `EVALSHA`: the cluster
//! connection turns any error reply inside a pipeline into an error for the whole
//! pipeline, so a `NOSCRIPT` could not be retried for just the refused calls
//! without re-running calls that did land (an append re-run is refused as fenced
//! and its success lost). A few hundred bytes of source per call buy that
//! guarantee; Redis caches the compiled script by its hash either way.
//!
//! Two cluster connections: one that retries (redirections, reconnects) for reads
//! and idempotent writes, and one that never resends, for appends and claims,
//! whose first attempt may have landed. After a failover the latter fails once
//! with `Unavailable` (nothing was run on the wrong node) and the slot map is
//! refreshed for the next call.

use std::collections::HashMap;
use std::time::Duration;

use ::redis::aio::ConnectionLike;
use ::redis::cluster::ClusterClientBuilder;
use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use ::redis::{Client, Cmd, ConnectionAddr, Pipeline, Value};

use super::redis::Retry;
use super::redis_config::RedisOptions;
use super::StoreError;

/// True when the server in `reply` (an `INFO cluster` answer) runs in cluster mode.
pub(crate) fn info_says_cluster(reply: &str) -> bool {
    reply.lines().any(|line| line.trim() == "cluster_enabled:1")
}

/// The connections to one Redis Cluster.
pub(crate) struct ClusterLink {
    /// Follows redirections and reconnects: for reads and idempotent writes.
    retrying: ClusterConnection,
    /// Never resends a command: for appends and claims.
    once: ClusterConnection,
    /// The URL's connection settings (password, TLS), reused to reach each master
    /// directly for `CONFIG GET`.
    seed: Client,
    response_timeout: Duration,
}

impl ClusterLink {
    /// Connects to the cluster that `seed` (one of its nodes) belongs to.
    pub(crate) async fn connect(seed: Client, options: &RedisOptions) -> Result<Self, StoreError> {
        let builder = |retries: u32| {
            ClusterClientBuilder::new(vec![seed.get_connection_info().clone()])
                .connection_timeout(options.connect_timeout)
                .response_timeout(options.response_timeout)
                .retries(retries)
                // Redirections and reconnects retry quickly; the caller's response
                // timeout bounds the whole call anyway.
                .min_retry_wait(10)
                .max_retry_wait(200)
                .build()
                .map_err(|e| StoreError::Unavailable(format!("redis cluster client: {e}")))
        };
        let connect = |client: ::redis::cluster::ClusterClient| async move {
            tokio::time::timeout(options.connect_timeout * 2, client.get_async_connection())
                .await
                .map_err(|_| StoreError::Unavailable("redis cluster: connect timed out".into()))?
                .map_err(|e| StoreError::Unavailable(format!("redis cluster connect: {e}")))
        };
        let retrying = connect(builder(4)?).await?;
        let once = connect(builder(0)?).await?;
        Ok(Self {
            retrying,
            once,
            seed,
            response_timeout: options.response_timeout,
        })
    }

    /// Sends `cmds` and returns one reply per command, in order. Commands are
    /// grouped by slot (keyless ones form a group of their own, sent to any node);
    /// each group is one pipeline, and the groups go out concurrently. A group
    /// that fails makes the outcome of the whole call unknown.
    pub(crate) async fn round_trip(
        &self,
        cmds: Vec<Cmd>,
        retry: Retry,
    ) -> Result<Vec<Value>, StoreError> {
        Ok(self.grouped(cmds, retry, None, Duration::ZERO).await?.0)
    }

    /// [`round_trip`](Self::round_trip) with `then` (a `WAIT`) appended to each
    /// slot's pipeline, so it runs on the master that took that slot's writes,
    /// on the same connection, after them. Returns the replies to `cmds` and one
    /// reply of `then` per slot written to. `extra` is added to the time allowed.
    pub(crate) async fn round_trip_then(
        &self,
        cmds: Vec<Cmd>,
        retry: Retry,
        then: Cmd,
        extra: Duration,
    ) -> Result<(Vec<Value>, Vec<Value>), StoreError> {
        self.grouped(cmds, retry, Some(then), extra).await
    }

    /// Both of the above: one pipeline per slot, `then` (if any) last in each.
    async fn grouped(
        &self,
        cmds: Vec<Cmd>,
        retry: Retry,
        then: Option<Cmd>,
        extra: Duration,
    ) -> Result<(Vec<Value>, Vec<Value>), StoreError> {
        let count = cmds.len();
        let mut groups: HashMap<Option<u16>, (Vec<usize>, Pipeline)> = HashMap::new();
        for (i, cmd) in cmds.into_iter().enumerate() {
            let (positions, pipe) = groups
                .entry(slot_of(&cmd))
                .or_insert_with(|| (Vec::new(), Pipeline::new()));
            positions.push(i);
            pipe.add_command(cmd);
        }
        let conn = match retry {
            Retry::Safe => &self.retrying,
            Retry::Never => &self.once,
        };
        let sends = groups.into_values().map(|(positions, mut pipe)| {
            let mut conn = conn.clone();
            let expected = positions.len() + usize::from(then.is_some());
            if let Some(then) = &then {
                pipe.add_command(then.clone());
            }
            let has_then = then.is_some();
            async move {
                let mut replies = conn
                    .req_packed_commands(&pipe, 0, expected)
                    .await
                    .map_err(|e| StoreError::Unavailable(format!("redis cluster: {e}")))?;
                let then_reply = if has_then { replies.pop() } else { None };
                Ok::<_, StoreError>((positions, replies, then_reply))
            }
        });
        let allowed = self.response_timeout + extra;
        let answered = tokio::time::timeout(allowed, futures::future::join_all(sends))
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!("redis cluster did not answer within {allowed:?}"))
            })?;
        let mut out: Vec<Option<Value>> = vec![None; count];
        let mut thens = Vec::new();
        for group in answered {
            let (positions, replies, then_reply) = group?;
            if replies.len() != positions.len() {
                return Err(StoreError::Unavailable(format!(
                    "redis cluster sent {} replies to {} commands",
                    replies.len(),
                    positions.len()
                )));
            }
            for (i, reply) in positions.into_iter().zip(replies) {
                out[i] = Some(reply);
            }
            if then.is_some() {
                thens.push(then_reply.unwrap_or(Value::Nil));
            }
        }
        let out = out
            .into_iter()
            .map(|reply| reply.ok_or_else(|| StoreError::Unavailable("redis sent no reply".into())))
            .collect::<Result<_, _>>()?;
        Ok((out, thens))
    }

    /// The `host:port` of every master that serves slots, from `CLUSTER NODES`.
    pub(crate) async fn masters(&self) -> Result<Vec<String>, StoreError> {
        let mut cmd = ::redis::cmd("CLUSTER");
        cmd.arg("NODES");
        let reply = self.round_trip(vec![cmd], Retry::Safe).await?;
        let text: String =
            super::redis::from_value(reply.into_iter().next().unwrap_or(Value::Nil))?;
        Ok(masters_of(&text))
    }

    /// A client for one master given as `host:port`, with the seed URL's settings.
    pub(crate) fn client_for(&self, master: &str) -> Result<Client, StoreError> {
        let (host, port) = master
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
            .ok_or_else(|| StoreError::Corrupt(format!("bad node address {master:?}")))?;
        let mut info = self.seed.get_connection_info().clone();
        info.addr = match info.addr {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host,
                port,
                insecure,
                tls_params,
            },
            _ => ConnectionAddr::Tcp(host, port),
        };
        Client::open(info).map_err(|e| StoreError::Unavailable(format!("redis client: {e}")))
    }
}

/// The slot of a keyed command (`None` for keyless ones: `PING`, `INFO`, ...).
/// Grouping is by slot rather than by redis-rs's `Route`, which also names a
/// replica preference that differs between reads and writes of one key: a `GET`
/// must not travel apart from the `SET` before it.
fn slot_of(cmd: &Cmd) -> Option<u16> {
    let keyed = matches!(
        RoutingInfo::for_routable(cmd),
        Some(RoutingInfo::SingleNode(
            SingleNodeRoutingInfo::SpecificNode(_)
        ))
    );
    if !keyed {
        return None;
    }
    let mut args = cmd.args_iter().map(|arg| match arg {
        ::redis::Arg::Simple(bytes) => bytes,
        ::redis::Arg::Cursor => &b""[..],
    });
    let name = args.next()?;
    // Scripts name their first key after the script and the key count; every
    // other command this store sends has its key first.
    let key = if name.eq_ignore_ascii_case(b"EVAL") || name.eq_ignore_ascii_case(b"EVALSHA") {
        args.nth(2)?
    } else {
        args.next()?
    };
    Some(::redis::cluster_routing::get_slot(key))
}

/// Masters with slots in a `CLUSTER NODES` answer: lines
/// `<id> <host:port@bus[,hostname]> <flags> <master-id> <ping> <pong> <epoch> <state> <slots…>`.
/// A master that is failed (`fail`) is still listed: its settings can't be read,
/// which the durability check must report rather than skip.
fn masters_of(nodes: &str) -> Vec<String> {
    let mut masters: Vec<String> = nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (addr, flags) = (fields.get(1)?, fields.get(2)?);
            let serves_slots = fields.len() > 8;
            if !flags.split(',').any(|f| f == "master") || !serves_slots {
                return None;
            }
            let addr = addr.split(['@', ',']).next()?;
            Some(addr.to_owned())
        })
        .collect();
    masters.sort();
    masters
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_mode_is_read_from_info() {
        let on = "# Cluster\r\ncluster_enabled:1\r\n";
        let off = "# Cluster\r\ncluster_enabled:0\r\n";
        assert!(info_says_cluster(on));
        assert!(!info_says_cluster(off));
        assert!(!info_says_cluster(""));
    }

    #[test]
    fn a_read_and_a_write_of_one_key_share_a_group() {
        let mut set = ::redis::cmd("SET");
        set.arg("okpay:layout").arg("x").arg("NX");
        let mut get = ::redis::cmd("GET");
        get.arg("okpay:layout");
        assert_eq!(slot_of(&set), slot_of(&get));
        assert!(slot_of(&set).is_some());
        let mut eval = ::redis::cmd("EVAL");
        eval.arg("return 1")
            .arg(2)
            .arg("okpay:{s007}:log")
            .arg("okpay:{s007}:pos");
        let mut hget = ::redis::cmd("HGET");
        hget.arg("okpay:{s007}:pos").arg("head");
        assert_eq!(slot_of(&eval), slot_of(&hget));
        assert_eq!(slot_of(&::redis::cmd("PING")), None);
    }

    #[test]
    fn masters_with_slots_are_listed_replicas_and_empty_masters_are_not() {
        let nodes = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7002@17002 master - 0 1 2 connected 5461-10922
c3 127.0.0.1:7003@17003,host-c master,fail - 0 1 3 connected 10923-16383
d4 127.0.0.1:7004@17004 slave a1 0 1 1 connected
e5 127.0.0.1:7005@17005 master - 0 1 5 connected
";
        assert_eq!(
            masters_of(nodes),
            vec!["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"]
        );
    }

    #[test]
    fn every_key_of_a_script_shares_the_slot_of_its_tag() {
        use ::redis::cluster_routing::get_slot;
        let shard = ["okpay:{s007}:log", "okpay:{s007}:pos", "okpay:{s007}:state"];
        let account = [
            "okpay:{acc_0123456789abcdef}:journal",
            "okpay:{acc_0123456789abcdef}:seq",
            "okpay:{acc_0123456789abcdef}:history:keys",
        ];
        let index = ["okpay:idx:{sessions}", "okpay:idx:{sessions}:keys"];
        for keys in [&shard[..], &account[..], &index[..]] {
            let slot = get_slot(keys[0].as_bytes());
            for k in keys {
                assert_eq!(get_slot(k.as_bytes()), slot, "{k}");
            }
        }
    }
}
