//! `--baseline redis-lua`: the same workload straight against Redis, one Lua
//! script per transfer (claim the idempotency key with `SET NX`, check the
//! balance, debit, credit). The script is the benches' [`LuaBank`], so the
//! criterion baseline and this one measure the same thing. On a Redis with
//! `appendfsync always` each reply comes after the AOF fsync, i.e. as durable as
//! the engine's acknowledgements; the report says whether that was the case.
//!
//! Its checks mirror the API's as far as a bare script can: `conserved` (the
//! balances sum to what was funded), `history_exact_once` (replaying each sampled
//! transfer's key is answered "duplicate" and moves nothing: the key was kept
//! exactly once), and `ledger_balanced`, which for a store with no separate
//! ledger is the same sum as `conserved`.

use anyhow::Context as _;
use benches::lua_baseline::{BaselineOutcome, LuaBank};
use okpay_engine::ids::AccountId;

use crate::checks::CheckResults;
use crate::load::{TransferOutcome, TransferSpec, TransferTarget};
use crate::money::format_minor;
use crate::stats::SampledTransfer;

/// Multiplexed Redis connections at most: each pipelines every caller using it,
/// so a handful saturate one single-threaded Redis.
const CONNECTIONS_MAX: usize = 8;

/// The baseline's population: fresh random account ids, so a run never touches
/// keys of an earlier run (or of an OKPay server sharing the Redis).
#[derive(Debug)]
pub struct LuaTarget {
    bank: LuaBank,
    accounts: Vec<AccountId>,
}

/// What the set-up found out about the Redis.
#[derive(Debug, Clone)]
pub struct RedisInfo {
    /// `CONFIG GET appendfsync`, e.g. `always`.
    pub appendfsync: String,
}

impl LuaTarget {
    /// Connects, loads the script and funds `accounts` accounts with `fund_minor`.
    pub async fn setup(
        url: &str,
        connections: usize,
        accounts: usize,
        fund_minor: i64,
    ) -> anyhow::Result<(LuaTarget, RedisInfo)> {
        let bank = LuaBank::connect(url, connections.clamp(1, CONNECTIONS_MAX))
            .await
            .with_context(|| format!("connecting to Redis at {url}"))?;
        let ids: Vec<AccountId> = (0..accounts).map(|_| AccountId::random()).collect();
        bank.fund(&ids, fund_minor)
            .await
            .context("funding the baseline accounts")?;
        let info = RedisInfo {
            appendfsync: appendfsync(url)
                .await
                .unwrap_or_else(|e| format!("unknown ({e})")),
        };
        Ok((
            LuaTarget {
                bank,
                accounts: ids,
            },
            info,
        ))
    }

    /// The checks (see the module docs).
    pub async fn check(&self, sample: &[SampledTransfer], funded_minor: i64) -> CheckResults {
        let mut r = CheckResults {
            history_sampled: sample.len(),
            ..CheckResults::default()
        };
        match self.bank.total(&self.accounts).await {
            Ok(total) => {
                r.balances_minor = total;
                r.checks.conserved = total == funded_minor;
                if !r.checks.conserved {
                    r.notes.push(format!(
                        "balances sum to {}, funded {}",
                        format_minor(total),
                        format_minor(funded_minor)
                    ));
                }
            }
            Err(e) => r.notes.push(format!("reading balances: {e}")),
        }
        r.checks.ledger_balanced = r.checks.conserved;
        let mut duplicates = 0;
        for t in sample {
            let replay = self
                .bank
                .transfer(
                    self.accounts[t.from],
                    self.accounts[t.to],
                    t.amount_minor,
                    &t.key,
                )
                .await;
            match replay {
                Ok(BaselineOutcome::Duplicate) => duplicates += 1,
                other => r.notes.push(format!(
                    "replaying key {}: {other:?} (want Duplicate)",
                    t.key
                )),
            }
        }
        r.checks.history_exact_once = duplicates == sample.len();
        r
    }
}

async fn appendfsync(url: &str) -> anyhow::Result<String> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let pair: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendfsync")
        .query_async(&mut conn)
        .await?;
    Ok(pair.get(1).cloned().unwrap_or_default())
}

impl TransferTarget for LuaTarget {
    async fn transfer(&self, spec: &TransferSpec) -> TransferOutcome {
        let (from, to) = (self.accounts[spec.from], self.accounts[spec.to]);
        match self
            .bank
            .transfer(from, to, spec.amount_minor, &spec.key)
            .await
        {
            Ok(BaselineOutcome::Transferred { .. }) => TransferOutcome::Acked {
                id: spec.key.clone(),
                fee_minor: 0,
            },
            Ok(BaselineOutcome::Duplicate) => TransferOutcome::Failed {
                code: "DUPLICATE_KEY".into(),
                detail: format!("key {} already used", spec.key),
            },
            Ok(BaselineOutcome::InsufficientFunds { balance }) => TransferOutcome::Failed {
                code: "INSUFFICIENT_FUNDS".into(),
                detail: format!("balance {}", format_minor(balance)),
            },
            Err(e) => TransferOutcome::Failed {
                code: if e.is_timeout() {
                    "TIMEOUT"
                } else {
                    "REDIS_ERROR"
                }
                .into(),
                detail: e.to_string(),
            },
        }
    }
}
