//! The end-of-run checks against the OKPay API, each a yes/no in the report (any
//! "no" makes the binary exit non-zero):
//!
//! - **history_exact_once**: every sampled acknowledged transfer is listed exactly
//!   once in the sender's history (direction `out`) and exactly once in the
//!   recipient's (`in`). The sample is the recorder's uniform reservoir (at most
//!   `--check-sample`); each involved account's transfer history is paged through
//!   once, in full, with a bound on pages.
//! - **ledger_balanced**: `GET /v1/admin/ledger` says `balanced: true`.
//! - **conserved**: the run's accounts together hold what was deposited into them,
//!   net of deposit fees and of the transfer fees the 201s reported. Transfers
//!   that timed out on the client may still be finishing inside the server, so a
//!   mismatch is re-read a few times before it counts.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt as _;
use serde::Serialize;

use crate::client::{Api, User};
use crate::money::format_minor;
use crate::stats::SampledTransfer;

/// Pages of 200 read per account at most (a million transfers).
const HISTORY_PAGES_MAX: usize = 5_000;

/// Re-reads of the balances before a mismatch counts.
const CONSERVATION_ATTEMPTS: usize = 10;

/// Parallel reads during the checks.
const PARALLEL: usize = 16;

/// The three checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Checks {
    pub history_exact_once: bool,
    pub ledger_balanced: bool,
    pub conserved: bool,
}

impl Checks {
    pub fn all_passed(&self) -> bool {
        self.history_exact_once && self.ledger_balanced && self.conserved
    }
}

/// What the checks found, with a sentence for each failure.
#[derive(Debug, Clone, Default)]
pub struct CheckResults {
    pub checks: Checks,
    pub notes: Vec<String>,
    /// The run's accounts' balances summed, in minor units.
    pub balances_minor: i64,
    pub history_sampled: usize,
}

/// How often each sampled id was seen, per direction.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    out: u32,
    inbound: u32,
}

/// One account's scan: sampled ids seen, or why the history could not be read.
type Scan = Result<HashMap<String, Seen>, String>;

/// Pages through one account's transfer history, counting the ids of `wanted`.
async fn scan(api: &Api, user: &User, wanted: &HashSet<String>) -> Scan {
    let mut seen: HashMap<String, Seen> = HashMap::new();
    let mut cursor: Option<String> = None;
    for _ in 0..HISTORY_PAGES_MAX {
        let page = api
            .transfers_page(&user.token, cursor.as_deref())
            .await
            .map_err(|e| format!("GET /v1/transactions as {}: {e}", user.account_id))?;
        for item in page.items.iter().filter(|i| wanted.contains(&i.id)) {
            let s = seen.entry(item.id.clone()).or_default();
            match item.direction.as_str() {
                "out" => s.out += 1,
                "in" => s.inbound += 1,
                _ => {}
            }
        }
        match page.next_cursor {
            Some(c) if !page.items.is_empty() => cursor = Some(c),
            _ => return Ok(seen),
        }
    }
    Err(format!(
        "{}: history longer than {HISTORY_PAGES_MAX} pages, not verified",
        user.account_id
    ))
}

/// History check over `sample`.
async fn history(
    api: &Api,
    users: &[User],
    sample: &[SampledTransfer],
    notes: &mut Vec<String>,
) -> bool {
    let mut by_account: BTreeMap<usize, HashSet<String>> = BTreeMap::new();
    for t in sample {
        by_account.entry(t.from).or_default().insert(t.id.clone());
        by_account.entry(t.to).or_default().insert(t.id.clone());
    }
    let scans: Vec<(usize, Scan)> = futures::stream::iter(by_account.iter())
        .map(
            |(&account, wanted)| async move { (account, scan(api, &users[account], wanted).await) },
        )
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let mut found: HashMap<usize, HashMap<String, Seen>> = HashMap::new();
    let mut ok = true;
    for (account, result) in scans {
        match result {
            Ok(seen) => {
                found.insert(account, seen);
            }
            Err(e) => {
                notes.push(e);
                ok = false;
            }
        }
    }
    let mut bad = 0usize;
    for t in sample {
        let (Some(sender), Some(recipient)) = (found.get(&t.from), found.get(&t.to)) else {
            continue; // already failed above
        };
        let out = sender.get(&t.id).copied().unwrap_or_default();
        let inbound = recipient.get(&t.id).copied().unwrap_or_default();
        if out.out != 1 || out.inbound != 0 || inbound.inbound != 1 || inbound.out != 0 {
            bad += 1;
            if bad <= 5 {
                notes.push(format!(
                    "transfer {} ({} → {}): sender lists it out×{} in×{}, recipient in×{} out×{} (want 1/0 and 1/0)",
                    t.id, users[t.from].account_id, users[t.to].account_id,
                    out.out, out.inbound, inbound.inbound, inbound.out
                ));
            }
        }
    }
    if bad > 0 {
        notes.push(format!(
            "{bad} of {} sampled transfers not listed exactly once on each side",
            sample.len()
        ));
    }
    ok && bad == 0
}

/// The sum of every user's balance, or why it could not be read.
async fn balances(api: &Api, users: &[User]) -> Result<i64, String> {
    let read: Vec<Result<i64, String>> = futures::stream::iter(users)
        .map(|u| async move {
            api.balance_minor(&u.token)
                .await
                .map_err(|e| format!("GET /v1/account as {}: {e}", u.account_id))
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    read.into_iter().sum()
}

/// Runs the three checks.
pub async fn run(
    api: &Api,
    users: &[User],
    sample: &[SampledTransfer],
    funded_minor: i64,
    fees_minor: i64,
) -> CheckResults {
    let mut r = CheckResults {
        history_sampled: sample.len(),
        ..CheckResults::default()
    };

    // Conservation first: it waits for in-flight transfers to settle, which the
    // history check then benefits from too.
    let expected = funded_minor - fees_minor;
    for attempt in 0..CONSERVATION_ATTEMPTS {
        match balances(api, users).await {
            Ok(sum) => {
                r.balances_minor = sum;
                if sum == expected {
                    r.checks.conserved = true;
                    break;
                }
            }
            Err(e) => {
                if attempt + 1 == CONSERVATION_ATTEMPTS {
                    r.notes.push(e);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if !r.checks.conserved {
        r.notes.push(format!(
            "balances sum to {}, expected {} (deposited net {} − transfer fees {})",
            format_minor(r.balances_minor),
            format_minor(expected),
            format_minor(funded_minor),
            format_minor(fees_minor)
        ));
    }

    r.checks.history_exact_once = history(api, users, sample, &mut r.notes).await;

    match api.ledger().await {
        Ok(v) => {
            r.checks.ledger_balanced =
                v.get("balanced").and_then(serde_json::Value::as_bool) == Some(true);
            if !r.checks.ledger_balanced {
                r.notes
                    .push(format!("GET /v1/admin/ledger is not balanced: {v}"));
            }
        }
        Err(e) => r.notes.push(format!(
            "GET /v1/admin/ledger failed ({e}); the ledger could not be verified"
        )),
    }
    r
}
