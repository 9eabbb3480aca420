//! The run's result: one [`Report`], written as JSON with `--report` and printed
//! as a summary table. The JSON is the machine-readable record of a run (CI or a
//! notebook compares runs with it), so its top-level names are stable:
//! `throughput_tps`, `latency_ms`, `ws_delivery_ms` (absent for the baseline),
//! `acked`, `errors`, `checks`, and `params` (what was asked for).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use crate::checks::Checks;
use crate::cpu::CpuPerTransfer;
use crate::stats::{LatencyMs, SecondPoint};
use crate::ws::WsStats;

/// What the run was asked to do.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Params {
    /// `okpay` or `redis-lua`.
    pub target: String,
    /// The API's URL, or the baseline's Redis URL.
    pub url: String,
    pub accounts: usize,
    pub duration_s: f64,
    /// Transfers per second, or `max` (closed loop).
    pub rate: String,
    pub connections: usize,
    pub ws_subscribers: usize,
    pub zipf: f64,
    pub seed: u64,
    /// Deposited into each account, e.g. `"1000.00"`.
    pub fund_per_account: String,
    pub kyc_approved: bool,
    pub request_timeout_s: f64,
    /// The start of the load left out of `steady_latency_ms`.
    pub warmup_s: f64,
    /// The baseline's Redis `appendfsync` (`always` = as durable as the engine).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_appendfsync: Option<String>,
}

/// The whole result of a run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub params: Params,
    /// Acknowledged transfers per second of load (start to last answer).
    pub throughput_tps: f64,
    pub acked: u64,
    /// Failed transfers by problem code / `HTTP_<status>` / transport label.
    pub errors: BTreeMap<String, u64>,
    pub errors_total: u64,
    /// Latency of acknowledged transfers (open loop: from the intended start).
    pub latency_ms: LatencyMs,
    /// The same, of the transfers intended after the first `params.warmup_s`
    /// (absent when there were none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steady_latency_ms: Option<LatencyMs>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ws_delivery_ms: Option<WsStats>,
    /// CPU per acknowledged transfer during the load: the harness's own, and the
    /// server's with `--server-pid` (null when unknown).
    pub cpu_us_per_transfer: CpuPerTransfer,
    /// With `--node-pid`, `--redis-info` or `--metrics-url`: per transfer, the
    /// other processes' CPU, the Redis work and the cross-node hops.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub costs: Option<crate::probes::Costs>,
    pub checks: Checks,
    /// Sum deposited (net of deposit fees) into the run's accounts.
    pub funded: String,
    /// Sum of the run's accounts' balances at the end.
    pub balances: String,
    /// Transfer fees the acknowledgements reported.
    pub transfer_fees: String,
    pub history_sampled: usize,
    pub elapsed_s: f64,
    /// Why a check failed, set-up warnings, one example per error label.
    pub notes: Vec<String>,
    /// Per second: acked, errors, p50 and p99 (the plot's data).
    pub series: Vec<SecondPoint>,
}

impl Report {
    /// Whether every end check passed.
    pub fn passed(&self) -> bool {
        self.checks.all_passed()
    }

    pub fn to_json(&self) -> String {
        // unwrap: a Report is plain data (strings, numbers, maps with string keys);
        // serializing it cannot fail.
        serde_json::to_string_pretty(self).unwrap()
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, self.to_json()).with_context(|| format!("writing {}", path.display()))
    }

    /// The human summary.
    pub fn table(&self) -> String {
        let p = &self.params;
        let l = &self.latency_ms;
        let mut s = String::new();
        let mut row = |k: &str, v: String| {
            let _ = writeln!(s, "  {k:<22} {v}");
        };
        row("target", format!("{} ({})", p.target, p.url));
        row(
            "shape",
            format!(
                "{} accounts, rate {}, {} connections, zipf {}, {:.1} s, seed {}",
                p.accounts, p.rate, p.connections, p.zipf, p.duration_s, p.seed
            ),
        );
        row(
            "acked",
            format!("{} in {:.1} s", self.acked, self.elapsed_s),
        );
        row(
            "throughput",
            format!("{:.1} transfers/s", self.throughput_tps),
        );
        row(
            "latency ms",
            format!(
                "p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
                l.p50, l.p90, l.p99, l.p999, l.max
            ),
        );
        if let Some(l) = &self.steady_latency_ms {
            row(
                "after warm-up ms",
                format!(
                    "p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  (the first {:.1} s left out)",
                    l.p50, l.p90, l.p99, l.p999, l.max, p.warmup_s
                ),
            );
        }
        if let Some(ws) = &self.ws_delivery_ms {
            row(
                "ws delivery ms",
                format!(
                    "p50 {:.2}  p99 {:.2}  max {:.2}  ({} delivered, {} early, {} missing, {} subscribers)",
                    ws.p50, ws.p99, ws.max, ws.delivered, ws.early, ws.missing, ws.subscribers
                ),
            );
        }
        let cpu = |us: Option<f64>| us.map_or_else(|| "?".to_owned(), |us| format!("{us:.0}"));
        row(
            "cpu µs/transfer",
            format!(
                "harness {}  server {}",
                cpu(self.cpu_us_per_transfer.client_us),
                cpu(self.cpu_us_per_transfer.server_us)
            ),
        );
        if let Some(costs) = &self.costs {
            let list = |m: &BTreeMap<String, f64>| {
                m.iter()
                    .map(|(k, v)| format!("{k} {v:.1}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            row("other cpu µs/transfer", list(&costs.cpu_us));
            row("redis per transfer", list(&costs.redis));
            row("hops per transfer", list(&costs.remote));
            for problem in &costs.problems {
                row("probe", problem.clone());
            }
        }
        let errors = if self.errors.is_empty() {
            "none".to_owned()
        } else {
            self.errors
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        row("errors", errors);
        row(
            "money",
            format!(
                "funded {} ({} per account{}), balances {}, transfer fees {}",
                self.funded,
                p.fund_per_account,
                if p.kyc_approved { ", KYC tier 1" } else { "" },
                self.balances,
                self.transfer_fees
            ),
        );
        let mark = |b: bool| if b { "ok" } else { "FAILED" };
        row(
            "checks",
            format!(
                "history exactly once {} ({} sampled), ledger balanced {}, conserved {}",
                mark(self.checks.history_exact_once),
                self.history_sampled,
                mark(self.checks.ledger_balanced),
                mark(self.checks.conserved)
            ),
        );
        for n in &self.notes {
            let _ = writeln!(s, "  note: {n}");
        }
        s
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample_report() -> Report {
        Report {
            params: Params {
                target: "okpay".into(),
                url: "http://127.0.0.1:8080".into(),
                accounts: 10,
                duration_s: 3.0,
                rate: "max".into(),
                connections: 4,
                ws_subscribers: 2,
                zipf: 1.0,
                seed: 7,
                fund_per_account: "1000.00".into(),
                kyc_approved: false,
                request_timeout_s: 10.0,
                warmup_s: 1.0,
                redis_appendfsync: None,
            },
            throughput_tps: 123.4,
            acked: 370,
            errors: BTreeMap::from([("INSUFFICIENT_FUNDS".to_owned(), 2)]),
            errors_total: 2,
            latency_ms: LatencyMs {
                p50: 1.0,
                p90: 2.0,
                p99: 3.0,
                p999: 4.0,
                max: 5.0,
                mean: 1.2,
            },
            steady_latency_ms: Some(LatencyMs {
                p50: 0.9,
                p90: 1.5,
                p99: 2.5,
                p999: 3.5,
                max: 4.0,
                mean: 1.0,
            }),
            ws_delivery_ms: Some(WsStats::default()),
            cpu_us_per_transfer: CpuPerTransfer::default(),
            costs: None,
            checks: Checks {
                history_exact_once: true,
                ledger_balanced: true,
                conserved: true,
            },
            funded: "10000.00".into(),
            balances: "10000.00".into(),
            transfer_fees: "0.00".into(),
            history_sampled: 200,
            elapsed_s: 3.01,
            notes: vec![],
            series: vec![SecondPoint {
                t_s: 0,
                acked: 100,
                errors: 0,
                p50_ms: Some(1.0),
                p99_ms: Some(3.0),
            }],
        }
    }

    #[test]
    fn the_json_has_the_documented_shape() {
        let v: serde_json::Value = serde_json::from_str(&sample_report().to_json()).unwrap();
        assert!(v["throughput_tps"].is_f64());
        assert!(v["acked"].is_u64());
        for p in ["p50", "p90", "p99", "p999", "max"] {
            assert!(v["latency_ms"][p].is_f64(), "latency_ms.{p}");
            assert!(v["steady_latency_ms"][p].is_f64(), "steady_latency_ms.{p}");
        }
        assert_eq!(v["params"]["warmup_s"], 1.0);
        for p in ["p50", "p99"] {
            assert!(v["ws_delivery_ms"][p].is_f64(), "ws_delivery_ms.{p}");
        }
        assert_eq!(v["errors"]["INSUFFICIENT_FUNDS"], 2);
        for c in ["history_exact_once", "ledger_balanced", "conserved"] {
            assert!(v["checks"][c].is_boolean(), "checks.{c}");
        }
        for p in [
            "url",
            "accounts",
            "duration_s",
            "rate",
            "connections",
            "ws_subscribers",
            "zipf",
            "seed",
        ] {
            assert!(!v["params"][p].is_null(), "params.{p}");
        }
        assert!(v["params"].get("redis_appendfsync").is_none());
        assert_eq!(v["series"][0]["p99_ms"], 3.0);
    }

    #[test]
    fn the_baseline_has_no_ws_fields_and_failures_show() {
        let mut r = sample_report();
        r.ws_delivery_ms = None;
        r.checks.conserved = false;
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert!(v.get("ws_delivery_ms").is_none());
        assert!(!r.passed());
        assert!(r.table().contains("conserved FAILED"));
        assert!(sample_report().passed());
    }

    #[test]
    fn the_table_shows_the_steady_state_line_only_when_measured() {
        let table = sample_report().table();
        assert!(
            table.contains("after warm-up ms       p50 0.90  p90 1.50  p99 2.50")
                && table.contains("(the first 1.0 s left out)"),
            "{table}"
        );
        let mut r = sample_report();
        r.steady_latency_ms = None;
        assert!(!r.table().contains("after warm-up"));
    }
}
