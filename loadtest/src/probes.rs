//! Per-transfer costs outside the harness and the entry server, over the load
//! phase only (issue 11's figures for several nodes): the CPU of other
//! processes (`--node-pid`: the other `okpay` nodes, `redis-server`), the work
//! of the servers' Redis (`--redis-info`: its `INFO` counters — commands,
//! commands including those run inside scripts, network bytes in and out, AOF
//! bytes), and the cross-node hops counted on each node's `/metrics`
//! (`--metrics-url`: every `okpay_remote_*` series, summed over the nodes).
//!
//! Each is read just before the load starts and just after it ends, so the
//! set-up (registrations, deposits) is not counted; the totals are divided by
//! the acknowledged transfers. A probe that can't be read is left out and
//! named in the report's notes, never fatal: these are figures, not checks.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::cpu::process_cpu;

/// What to read around the load (all optional).
#[derive(Debug, Clone, Default)]
pub struct Probes {
    pub pids: Vec<u32>,
    pub redis: Option<String>,
    pub metrics: Vec<String>,
}

/// The counters read at one instant.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    cpu: Vec<(u32, Option<Duration>)>,
    redis: Option<BTreeMap<&'static str, f64>>,
    metrics: BTreeMap<String, f64>,
    problems: Vec<String>,
}

/// Per acknowledged transfer, over the load phase.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Costs {
    /// CPU µs per transfer of each `--node-pid` (key: the pid).
    pub cpu_us: BTreeMap<String, f64>,
    /// Redis counters per transfer: `commands` (top-level), `calls`
    /// (`INFO commandstats`, which counts commands run inside scripts too),
    /// `net_in_bytes`, `net_out_bytes`, `aof_bytes` (growth of the AOF).
    pub redis: BTreeMap<String, f64>,
    /// Every `okpay_remote_*` series of the nodes' `/metrics`, summed over
    /// the nodes, per transfer.
    pub remote: BTreeMap<String, f64>,
    /// Probes that could not be read.
    pub problems: Vec<String>,
}

impl Probes {
    pub fn is_empty(&self) -> bool {
        self.pids.is_empty() && self.redis.is_none() && self.metrics.is_empty()
    }

    pub async fn snapshot(&self, client: &reqwest::Client) -> Snapshot {
        let mut s = Snapshot {
            cpu: self
                .pids
                .iter()
                .map(|&p| (p, process_cpu(Some(p))))
                .collect(),
            ..Snapshot::default()
        };
        if let Some(url) = &self.redis {
            match redis_info(url).await {
                Ok(info) => s.redis = Some(info),
                Err(e) => s.problems.push(format!("redis INFO at {url}: {e}")),
            }
        }
        for url in &self.metrics {
            match metrics(client, url).await {
                Ok(series) => {
                    for (name, value) in series {
                        *s.metrics.entry(name).or_default() += value;
                    }
                }
                Err(e) => s.problems.push(format!("metrics at {url}: {e}")),
            }
        }
        s
    }
}

impl Snapshot {
    /// What happened between `self` and `later`, per transfer of `acked`.
    pub fn per_transfer(&self, later: &Snapshot, acked: u64) -> Costs {
        let mut costs = Costs {
            problems: self.problems.clone(),
            ..Costs::default()
        };
        costs.problems.extend(later.problems.iter().cloned());
        if acked == 0 {
            return costs;
        }
        let n = acked as f64;
        for ((pid, a), (_, b)) in self.cpu.iter().zip(&later.cpu) {
            match (a, b) {
                (Some(a), Some(b)) => {
                    let spent = b.saturating_sub(*a);
                    costs
                        .cpu_us
                        .insert(pid.to_string(), spent.as_secs_f64() * 1e6 / n);
                }
                _ => costs.problems.push(format!("cpu of pid {pid} unreadable")),
            }
        }
        if let (Some(a), Some(b)) = (&self.redis, &later.redis) {
            for (name, after) in b {
                let before = a.get(name).copied().unwrap_or(0.0);
                costs.redis.insert((*name).to_owned(), (after - before) / n);
            }
        }
        for (name, after) in &later.metrics {
            let before = self.metrics.get(name).copied().unwrap_or(0.0);
            costs.remote.insert(name.clone(), (after - before) / n);
        }
        costs
    }
}

/// The Redis counters of one `INFO all`.
async fn redis_info(url: &str) -> anyhow::Result<BTreeMap<&'static str, f64>> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let text: String = redis::cmd("INFO").arg("all").query_async(&mut conn).await?;
    Ok(parse_info(&text))
}

fn parse_info(text: &str) -> BTreeMap<&'static str, f64> {
    let mut out = BTreeMap::new();
    let mut calls = 0.0;
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once(':') else {
            continue;
        };
        let named = match key {
            "total_commands_processed" => Some("commands"),
            "total_net_input_bytes" => Some("net_in_bytes"),
            "total_net_output_bytes" => Some("net_out_bytes"),
            "aof_current_size" => Some("aof_bytes"),
            _ => None,
        };
        if let (Some(name), Ok(v)) = (named, value.parse::<f64>()) {
            out.insert(name, v);
        }
        if key.starts_with("cmdstat_") {
            let n = value
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))
                .and_then(|v| v.parse::<f64>().ok());
            calls += n.unwrap_or(0.0);
        }
    }
    out.insert("calls", calls);
    out
}

/// The `okpay_remote_*` series of one `/metrics` page, by name and labels.
async fn metrics(client: &reqwest::Client, url: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let text = client
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(parse_metrics(&text))
}

fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| l.starts_with("okpay_remote_"))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse::<f64>().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_counters_and_script_calls_are_read() {
        let info = "# Stats\r\ntotal_commands_processed:100\r\ntotal_net_input_bytes:2000\r\n\
                    total_net_output_bytes:300\r\naof_current_size:4096\r\n# Commandstats\r\n\
                    cmdstat_xadd:calls=7,usec=1,usec_per_call=0.1\r\ncmdstat_eval:calls=3,usec=2\r\n";
        let parsed = parse_info(info);
        assert_eq!(parsed["commands"], 100.0);
        assert_eq!(parsed["net_in_bytes"], 2000.0);
        assert_eq!(parsed["net_out_bytes"], 300.0);
        assert_eq!(parsed["aof_bytes"], 4096.0);
        assert_eq!(parsed["calls"], 10.0);
    }

    #[test]
    fn remote_series_are_read_and_divided_per_transfer() {
        let page = "# TYPE okpay_remote_requests_total counter\n\
                    okpay_remote_requests_total{kind=\"execute\"} 40\n\
                    okpay_remote_served_total 10\nokpay_other 5\n";
        let before = Snapshot::default();
        let after = Snapshot {
            metrics: parse_metrics(page),
            ..Snapshot::default()
        };
        let costs = before.per_transfer(&after, 20);
        assert_eq!(
            costs.remote["okpay_remote_requests_total{kind=\"execute\"}"],
            2.0
        );
        assert_eq!(costs.remote["okpay_remote_served_total"], 0.5);
        assert_eq!(costs.remote.len(), 2);
    }
}
