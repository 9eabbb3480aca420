//! Reconciliation of the payment rails against the ledger
//! (`GET /v1/admin/reconciliation?date=YYYY-MM-DD`, default today, UTC): the
//! processors' own reports of the day compared with the ledger, what is still
//! open between OKPay and its processors, and where the two disagree. The
//! ledger's own totals are `GET /v1/admin/ledger`.
//!
//! - The processors' side: the card processor's and the payout processor's
//!   settlement reports of the day, fetched over HTTP (`integrations::reports`;
//!   in `--dev` the test stand-ins' own). A processor that is not configured, or
//!   whose report cannot be read, is listed in `sources` with why (`missing`,
//!   `unavailable`) and its side is not compared; the answer is still 200.
//! - The ledger's side: every account's deposits and withdrawals of the day, read
//!   from the accounts (only when a report was read: without one there is
//!   nothing to compare them with), plus the deposits and payouts of other days
//!   that a report names. `integrations::reconcile` lists the mismatches.
//! - Open deposits: every stored intent (`integrations::charges`) is a charge the
//!   ledger has not settled yet: `pending` at the processor (bank transfers), or
//!   charged and not yet credited or refunded (the start-up sweep and the client's
//!   retry finish those). An intent that does not read back is a mismatch.
//! - Open payouts: every withdrawal in the `payout_pending` index was submitted to
//!   the payout processor and not yet reported; one the ledger already shows as
//!   completed or failed is a mismatch (the report and the index disagree).
//!
//! Intents written before they carried a creation time are listed on every day.
//! Bounded: at most 1000 open items of each kind and [`LOOKUPS_MAX`] lookups of
//! other days are read; the reports themselves are bounded by `reports`. The
//! scan of the accounts is as long as the number of accounts (like the ledger
//! audit): an operator's daily request, not a client's.

use std::collections::HashSet;

use actix_web::{get, web, HttpResponse};
use chrono::{DateTime, NaiveDate, Utc};
use okpay_engine::domain::state::{AccountState, OpRecord, WithdrawalStatus};
use okpay_engine::ids::{AccountId, OpId, OpKind};
use okpay_engine::Outcome;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::Admin;
use crate::error::{ApiError, ApiResult, Problem};
use crate::integrations::charges::{Intent, INTENT_INDEX};
use crate::integrations::reconcile::{self, LedgerDeposit, LedgerPayout, Mismatch};
use crate::integrations::reports::{ChargeReport, PayoutReport};
use crate::integrations::{PAYOUTS_SETTING, PROCESSOR_SETTING};
use crate::operators::Duty;
use crate::payments::PAYOUT_PENDING_INDEX;
use crate::routes::extract::{money, time};
use crate::state::AppState;

/// Open items of each kind read at most.
const LIMIT: usize = 1000;
/// Report items of other days looked up in the ledger at most (per report).
const LOOKUPS_MAX: usize = 1000;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReconciliationQuery {
    /// `YYYY-MM-DD` (UTC); default today.
    pub date: Option<String>,
}

/// A deposit charged (or being charged) and not yet settled in the ledger.
#[derive(Serialize, ToSchema)]
pub struct OpenDeposit {
    /// `<account>:<Idempotency-Key>`, the processor's reference.
    pub reference: String,
    pub amount: String,
    pub currency: String,
    pub method: String,
    pub created_at: Option<DateTime<Utc>>,
}

/// A payout submitted and not yet reported by the processor.
#[derive(Serialize, ToSchema)]
pub struct OpenPayout {
    /// A `wd_` id.
    pub id: String,
    pub payout: String,
    pub currency: String,
    /// `processing`, `completed`, `failed` or `unknown`: the ledger's view.
    pub ledger_status: String,
    pub created_at: DateTime<Utc>,
}

/// One processor's report of the day, and whether it was compared.
#[derive(Serialize, ToSchema)]
pub struct ReportSource {
    /// `processor` (card charges) or `payouts`.
    pub source: String,
    /// `ok` (read and compared), `missing` (no processor configured: nothing
    /// compared) or `unavailable` (the report could not be read: nothing compared).
    pub status: String,
    /// What was read, or why not (naming the missing setting).
    pub detail: String,
    /// Items in the report, when read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<usize>,
}

#[derive(Serialize, ToSchema)]
pub struct Reconciliation {
    pub date: String,
    pub open_deposits: Vec<OpenDeposit>,
    pub open_payouts: Vec<OpenPayout>,
    /// Every disagreement found, from the reports and from OKPay's own records.
    pub mismatches: Vec<Mismatch>,
    /// The processors' reports: each read and compared, or why not.
    pub sources: Vec<ReportSource>,
    /// The ledger's deposits and withdrawals of the day (counted only when a
    /// report was read).
    pub ledger_deposits: usize,
    pub ledger_withdrawals: usize,
}

/// Open deposits and payouts of a day versus the ledger, with mismatches.
#[utoipa::path(get, path = "/v1/admin/reconciliation", tag = "admin", security(("admin" = [])),
    params(ReconciliationQuery),
    responses(
        (status = 200, body = Reconciliation),
        (status = 400, body = Problem, description = "VALIDATION_FAILED: date"),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 403, body = Problem, description = "FORBIDDEN"),
        (status = 503, body = Problem, description = "UNAVAILABLE"),
    ))]
#[get("/v1/admin/reconciliation")]
pub async fn reconciliation(
    admin: Admin,
    state: web::Data<AppState>,
    query: web::Query<ReconciliationQuery>,
) -> ApiResult<HttpResponse> {
    admin.require(Duty::Read)?;
    let date = match query.date.as_deref() {
        Some(d) => NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .map_err(|_| ApiError::validation("date must be YYYY-MM-DD."))?,
        None => state.now().date_naive(),
    };
    let store = state.store();
    let mut mismatches = Vec::new();
    let intents = store
        .scan_index(INTENT_INDEX, None, LIMIT)
        .await
        .map_err(|_| ApiError::unavailable())?;
    let mut open_deposits = Vec::new();
    let stored_intents = intents;
    let mut intents: HashSet<String> = HashSet::new();
    for (reference, text) in stored_intents {
        intents.insert(reference.clone());
        let Ok(intent) = serde_json::from_str::<Intent>(&text) else {
            mismatches.push(Mismatch::own(
                "unreadable_deposit_intent",
                reference,
                "The stored deposit intent does not read back.".into(),
            ));
            continue;
        };
        if intent.created_at.is_some_and(|at| at.date_naive() != date) {
            continue;
        }
        open_deposits.push(OpenDeposit {
            reference,
            amount: intent.amount,
            currency: intent.currency,
            method: intent.method,
            created_at: intent.created_at,
        });
    }
    let pending = store
        .scan_index(PAYOUT_PENDING_INDEX, None, LIMIT)
        .await
        .map_err(|_| ApiError::unavailable())?;
    let mut open_payouts = Vec::new();
    let pending_ids: HashSet<String> = pending.iter().map(|(k, _)| k.clone()).collect();
    for (key, _) in pending {
        let Ok(id) = OpId::parse(&key, OpKind::Withdrawal) else {
            continue;
        };
        let Some(Outcome::Withdrawal(view)) = state.engine.operation(id).await? else {
            mismatches.push(Mismatch::own(
                "payout_unknown_to_ledger",
                key,
                "A payout is pending for a withdrawal the ledger no longer shows.".into(),
            ));
            continue;
        };
        let created = time(view.at);
        if created.date_naive() != date {
            continue;
        }
        let status = status_name(&view.status);
        if status != "processing" {
            mismatches.push(Mismatch::own(
                "payout_closed_in_ledger",
                key.clone(),
                format!(
                    "The ledger shows the withdrawal {status}, but its payout is still pending."
                ),
            ));
        }
        let c = view.amount.currency();
        open_payouts.push(OpenPayout {
            id: key,
            payout: money(view.payout, c),
            currency: c.code().into(),
            ledger_status: status.into(),
            created_at: created,
        });
    }
    let (charges, charges_source) = match &state.cards {
        None => (None, missing("processor", PROCESSOR_SETTING)),
        Some(cards) => read_report("processor", cards.settlement_report(date).await),
    };
    let (payouts, payouts_source) = match &state.payouts {
        None => (None, missing("payouts", PAYOUTS_SETTING)),
        Some(p) => read_report("payouts", p.settlement_report(date).await),
    };
    let (mut ledger_deposits, mut ledger_withdrawals) = (0, 0);
    if charges.is_some() || payouts.is_some() {
        let (deposits, withdrawals) = ledger_of_day(&state, date).await?;
        (ledger_deposits, ledger_withdrawals) = (deposits.len(), withdrawals.len());
        if let Some(report) = &charges {
            let elsewhere = deposits_elsewhere(&state, report, &deposits).await?;
            mismatches.extend(reconcile::deposits(report, &deposits, &elsewhere, &intents));
        }
        if let Some(report) = &payouts {
            let elsewhere = payouts_elsewhere(&state, report, &withdrawals).await?;
            mismatches.extend(reconcile::payouts(
                report,
                &withdrawals,
                &elsewhere,
                &pending_ids,
            ));
        }
    }
    Ok(HttpResponse::Ok().json(Reconciliation {
        date: date.format("%Y-%m-%d").to_string(),
        open_deposits,
        open_payouts,
        mismatches,
        sources: vec![charges_source, payouts_source],
        ledger_deposits,
        ledger_withdrawals,
    }))
}

/// A source without a configured processor.
fn missing(source: &str, setting: &str) -> ReportSource {
    ReportSource {
        source: source.into(),
        status: "missing".into(),
        detail: format!(
            "No report source: the server has no {setting} configured, so this side is not compared."
        ),
        items: None,
    }
}

/// A fetched report and its source line.
fn read_report<T>(source: &str, report: Result<Vec<T>, String>) -> (Option<Vec<T>>, ReportSource) {
    match report {
        Ok(items) => {
            let n = items.len();
            (
                Some(items),
                ReportSource {
                    source: source.into(),
                    status: "ok".into(),
                    detail: format!(
                        "The processor's report lists {n} items; compared with the ledger."
                    ),
                    items: Some(n),
                },
            )
        }
        Err(e) => {
            tracing::warn!(source, error = %e, "settlement report not read");
            (
                None,
                ReportSource {
                    source: source.into(),
                    status: "unavailable".into(),
                    detail: format!(
                        "The processor's report could not be read ({e}), so this side is not compared. Try again later."
                    ),
                    items: None,
                },
            )
        }
    }
}

/// Every account's deposits and withdrawals made on `date`.
async fn ledger_of_day(
    state: &AppState,
    date: NaiveDate,
) -> ApiResult<(Vec<LedgerDeposit>, Vec<LedgerPayout>)> {
    let engine = &state.engine;
    let (mut deposits, mut withdrawals) = (Vec::new(), Vec::new());
    for shard in engine.layout().all() {
        for account in engine.accounts_in_shard(shard).await? {
            let (d, w) = engine
                .read(account, move |s, _, _| ops_of_day(s, date))
                .await?;
            deposits.extend(d);
            withdrawals.extend(w);
        }
    }
    Ok((deposits, withdrawals))
}

/// One account's deposits and withdrawals made on `date`.
fn ops_of_day(s: &AccountState, date: NaiveDate) -> (Vec<LedgerDeposit>, Vec<LedgerPayout>) {
    let (mut deposits, mut withdrawals) = (Vec::new(), Vec::new());
    if !s.opened {
        return (deposits, withdrawals);
    }
    let on_day = |at| time(at).date_naive() == date;
    for (n, op) in &s.ops {
        let id = OpId {
            account: s.id,
            n: *n,
        };
        match op {
            OpRecord::Deposit { amount, at, .. } if on_day(*at) => {
                deposits.push(ledger_deposit(
                    s,
                    id,
                    amount.value(),
                    amount.currency().code(),
                ));
            }
            OpRecord::Withdrawal {
                amount,
                fee,
                status,
                at,
                ..
            } if on_day(*at) => withdrawals.push(LedgerPayout {
                id: id.display(OpKind::Withdrawal),
                payout: amount.value() - fee,
                currency: amount.currency().code().into(),
                status: status_name(status),
            }),
            OpRecord::Deposit { .. } | OpRecord::Withdrawal { .. } | OpRecord::Transfer { .. } => {}
        }
    }
    (deposits, withdrawals)
}

/// A deposit of `s` as the reconciliation compares it, with its charge reference
/// while the account remembers the request's key.
fn ledger_deposit(
    s: &AccountState,
    id: OpId,
    amount: rust_decimal::Decimal,
    currency: &str,
) -> LedgerDeposit {
    let reference = s
        .idempotency
        .iter()
        .find(|(_, e)| e.op == id.n)
        .map(|(key, _)| format!("{}:{}", s.id, key.as_str()));
    LedgerDeposit {
        id: id.display(OpKind::Deposit),
        account: s.id.to_string(),
        reference,
        amount,
        currency: currency.into(),
    }
}

fn status_name(status: &WithdrawalStatus) -> &'static str {
    match status {
        WithdrawalStatus::Processing => "processing",
        WithdrawalStatus::Completed => "completed",
        WithdrawalStatus::Failed { .. } => "failed",
    }
}

/// The ledger's deposits, on other days, of the charges the report names that
/// the day's deposits don't have (a charge credited after midnight).
async fn deposits_elsewhere(
    state: &AppState,
    report: &[ChargeReport],
    day: &[LedgerDeposit],
) -> ApiResult<Vec<LedgerDeposit>> {
    let known: HashSet<&str> = day.iter().filter_map(|d| d.reference.as_deref()).collect();
    let mut out = Vec::new();
    let unknown = report
        .iter()
        .filter(|c| !known.contains(c.reference.as_str()))
        .take(LOOKUPS_MAX);
    for charge in unknown {
        let Some((account, key)) = charge.reference.split_once(':') else {
            continue;
        };
        let Ok(account) = account.parse::<AccountId>() else {
            continue;
        };
        let key = key.to_owned();
        let found = state
            .engine
            .read(account, move |s, _, _| {
                let n = s
                    .opened
                    .then(|| s.idempotency.iter().find(|(k, _)| k.as_str() == key))??
                    .1
                    .op;
                match s.ops.get(&n)? {
                    OpRecord::Deposit { amount, .. } => Some(ledger_deposit(
                        s,
                        OpId { account: s.id, n },
                        amount.value(),
                        amount.currency().code(),
                    )),
                    OpRecord::Withdrawal { .. } | OpRecord::Transfer { .. } => None,
                }
            })
            .await?;
        out.extend(found);
    }
    Ok(out)
}

/// The ledger's withdrawals, on other days, of the payouts the report names that
/// the day's withdrawals don't have.
async fn payouts_elsewhere(
    state: &AppState,
    report: &[PayoutReport],
    day: &[LedgerPayout],
) -> ApiResult<Vec<LedgerPayout>> {
    let known: HashSet<&str> = day.iter().map(|w| w.id.as_str()).collect();
    let mut out = Vec::new();
    let unknown = report
        .iter()
        .filter(|p| !known.contains(p.id.as_str()))
        .take(LOOKUPS_MAX);
    for payout in unknown {
        let Ok(id) = OpId::parse(&payout.id, OpKind::Withdrawal) else {
            continue;
        };
        if let Some(Outcome::Withdrawal(view)) = state.engine.operation(id).await? {
            out.push(LedgerPayout {
                id: payout.id.clone(),
                payout: view.payout,
                currency: view.amount.currency().code().into(),
                status: status_name(&view.status),
            });
        }
    }
    Ok(out)
}

#[derive(OpenApi)]
#[openapi(
    paths(reconciliation),
    components(schemas(Reconciliation, OpenDeposit, OpenPayout, Mismatch, ReportSource))
)]
pub struct Api;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(reconciliation);
}
