//! The Redis store's connection: one multiplexed connection shared by all
//! callers and replaced when it fails, the round trips over it (a pipeline of
//! [`Call`]s, scripts loaded and resent after `NOSCRIPT`, retried once on a
//! fresh connection when [`Retry::Safe`]), the `WAIT` for replicas, the
//! decoding of replies and errors, and the check of the server's durability
//! settings. Kept apart from what the store stores: every other file of the
//! backend talks to Redis only through [`RedisStore::exec`] and its variants.

use std::sync::atomic::{AtomicU64, Ordering};

use ::redis::aio::{ConnectionLike, MultiplexedConnection};
use ::redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisError, Value};

use super::scripts::LuaScript;
use super::RedisStore;
use crate::store::redis_config::{
    DurabilityProblem, DurabilityReport, RedisOptions, REQUIRED_SETTINGS,
};
use crate::store::StoreError;

/// One command of a round trip: plain, or a script called by hash (which may have
/// to be loaded and resent, so the script travels with the command).
pub(crate) enum Call {
    Plain(Cmd),
    Script(&'static LuaScript, Cmd),
}

/// `calls` as a Redis Cluster link sends them: scripts as `EVAL` with their
/// source (see `redis_cluster` for why).
fn for_cluster(calls: Vec<Call>) -> Vec<Cmd> {
    calls
        .into_iter()
        .map(|call| match call {
            Call::Plain(cmd) => cmd,
            Call::Script(script, cmd) => script.as_eval(&cmd),
        })
        .collect()
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
pub(super) struct Cached {
    id: u64,
    conn: MultiplexedConnection,
}

impl RedisStore {
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
            let cmds = for_cluster(calls);
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
            let cmds = for_cluster(calls);
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

    /// Runs one call and turns a Redis error reply into `Unavailable`.
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
pub(super) fn expect_replies(replies: &[Value], sent: usize) -> Result<(), StoreError> {
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
