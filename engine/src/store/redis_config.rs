//! What the Redis backend needs from its server and its connection: timeouts, and
//! the server settings without which "durable" would be a lie.
//!
//! The journal's promise (nothing acknowledged before it is durable) only holds on a
//! Redis that writes every command to its append-only file and fsyncs it before
//! replying (`appendonly yes` + `appendfsync always`), and that never evicts keys to
//! make room (`maxmemory-policy noeviction`), since an evicted journal is lost money.
//! [`DurabilityReport`] lists every way a server falls short; the gateway warns loudly,
//! or refuses to start with `--strict-durability`. The evaluation is a pure function of
//! the settings read, so it is unit-tested here without a server.

use std::fmt;
use std::time::Duration;

/// Connection settings of a [`RedisStore`](super::redis::RedisStore).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisOptions {
    /// Upper bound on establishing a connection. Bounded so that, while Redis is down
    /// or unreachable, callers get `Unavailable` quickly instead of hanging.
    pub connect_timeout: Duration,
    /// Upper bound on one round trip (a whole append pipeline included). A reply this
    /// late makes the outcome unknown (`Unavailable`), and the connection is replaced.
    pub response_timeout: Duration,
    /// Run against Redis Cluster: every script touches only one account's slot, so a
    /// batch is sent as one script call per record. Set by the store itself when
    /// the server turns out to be a cluster node; setting it on a standalone
    /// server only changes the script shape (which tests use). Off (standalone Redis), a whole
    /// batch is one script call: one round trip, one AOF fsync, and far less
    /// per-record work for Redis.
    pub cluster: bool,
    /// After each shard-log append, `WAIT` for this many replicas of every master
    /// written to (see [`ReplicaWait`]); `None` (the default): no wait.
    pub wait: Option<ReplicaWait>,
    /// Write history rows of one account and 10 s slot as one group member
    /// (`codec/row.rs`; on by default). Builds before groups can't read them:
    /// during a rolling upgrade from one, keep it off (`[engine]
    /// history_groups = false`) until every node runs a build that reads
    /// groups. Every build since reads both.
    pub history_groups: bool,
}

/// `WAIT <replicas> <timeout>` after shard-log appends, so an acknowledged
/// batch is on that many replicas of its master before any client hears of it:
/// a failover that promotes one of them keeps it. Fewer replicas within the
/// timeout fail the append as `Unavailable` (its outcome unknown: clients
/// retry with their idempotency key). With asynchronous replication this
/// narrows, not closes, the window (a promoted replica that had not acknowledged
/// can still win); see the README's Redis Cluster section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaWait {
    pub replicas: u32,
    pub timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        // 2 s: far above a healthy fsync'd round trip (milliseconds), short enough
        // that a request stuck behind a dead Redis fails while its client still waits.
        Self {
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(2),
            cluster: false,
            wait: None,
            history_groups: true,
        }
    }
}

/// One setting the server must have for the journal to be durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequiredSetting {
    pub name: &'static str,
    pub want: &'static str,
}

/// Every setting checked, with the value it must have.
pub const REQUIRED_SETTINGS: [RequiredSetting; 3] = [
    RequiredSetting {
        name: "appendonly",
        want: "yes",
    },
    RequiredSetting {
        name: "appendfsync",
        want: "always",
    },
    RequiredSetting {
        name: "maxmemory-policy",
        want: "noeviction",
    },
];

/// Why one setting fails the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurabilityProblem {
    /// The server has the setting, with the wrong value.
    Wrong {
        setting: &'static str,
        want: &'static str,
        got: String,
    },
    /// The value could not be read (CONFIG disabled or renamed, Redis down, ...), so
    /// durability can't be verified; treated as a problem, never as fine.
    Unreadable { setting: &'static str, why: String },
    /// A problem of one master of a Redis Cluster (`host:port`): every master
    /// must be durable, since each holds a share of the shards.
    OnNode {
        node: String,
        problem: Box<DurabilityProblem>,
    },
}

impl fmt::Display for DurabilityProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurabilityProblem::Wrong { setting, want, got } => {
                write!(f, "{setting} is `{got}`, must be `{want}`")
            }
            DurabilityProblem::Unreadable { setting, why } => {
                write!(f, "{setting} could not be read ({why})")
            }
            DurabilityProblem::OnNode { node, problem } => write!(f, "{node}: {problem}"),
        }
    }
}

/// The outcome of checking a server's durability settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DurabilityReport {
    /// Empty when the server is configured for durable journaling.
    pub problems: Vec<DurabilityProblem>,
}

impl DurabilityReport {
    /// Builds the report from what was read for each of [`REQUIRED_SETTINGS`], in
    /// that order: the value, or why it could not be read.
    pub fn evaluate(read: [Result<String, String>; 3]) -> Self {
        let problems = REQUIRED_SETTINGS
            .iter()
            .zip(read)
            .filter_map(|(req, value)| match value {
                // Redis answers CONFIG GET in lower case, but be lenient on case.
                Ok(got) if got.eq_ignore_ascii_case(req.want) => None,
                Ok(got) => Some(DurabilityProblem::Wrong {
                    setting: req.name,
                    want: req.want,
                    got,
                }),
                Err(why) => Some(DurabilityProblem::Unreadable {
                    setting: req.name,
                    why,
                }),
            })
            .collect();
        Self { problems }
    }

    /// True when every required setting has the required value.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for DurabilityReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_ok() {
            return write!(f, "redis durability settings ok");
        }
        write!(f, "redis is not durable: ")?;
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proper_settings_are_ok() {
        let report = DurabilityReport::evaluate([
            Ok("yes".into()),
            Ok("always".into()),
            Ok("noeviction".into()),
        ]);
        assert!(report.is_ok(), "{report}");
    }

    #[test]
    fn every_wrong_or_unreadable_setting_is_listed() {
        let report = DurabilityReport::evaluate([
            Ok("no".into()),
            Ok("everysec".into()),
            Err("unknown command CONFIG".into()),
        ]);
        assert!(!report.is_ok());
        assert_eq!(
            report.problems,
            vec![
                DurabilityProblem::Wrong {
                    setting: "appendonly",
                    want: "yes",
                    got: "no".into()
                },
                DurabilityProblem::Wrong {
                    setting: "appendfsync",
                    want: "always",
                    got: "everysec".into()
                },
                DurabilityProblem::Unreadable {
                    setting: "maxmemory-policy",
                    why: "unknown command CONFIG".into()
                },
            ]
        );
        let text = report.to_string();
        assert!(text.contains("appendonly is `no`, must be `yes`"), "{text}");
    }
}
