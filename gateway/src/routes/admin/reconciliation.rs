//! Reconciliation of the payment rails against the ledger
//! (`GET /v1/admin/reconciliation?date=YYYY-MM-DD`, default today, UTC): what is
//! still open between OKPay and its processors for that day, and where the two
//! disagree. The ledger's own totals are `GET /v1/admin/ledger`.
//!
//! - Deposits: every stored intent (`integrations::charges`) is a charge the
//!   ledger has not settled yet: `pending` at the processor (bank transfers), or
//!   charged and not yet credited or refunded (the start-up sweep and the client's
//!   retry finish those). An intent that does not read back is a mismatch.
//! - Payouts: every withdrawal in the `payout_pending` index was submitted to the
//!   payout processor and not yet reported; one the ledger already shows as
//!   completed or failed is a mismatch (the report and the index disagree).
//!
//! Intents written before they carried a creation time are listed on every day.
//! Bounded: at most 1000 items of each kind are read.

use actix_web::{get, web, HttpResponse};
use chrono::{DateTime, NaiveDate, Utc};
use okpay_engine::domain::state::WithdrawalStatus;
use okpay_engine::ids::{OpId, OpKind};
use okpay_engine::Outcome;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::Admin;
use crate::error::{ApiError, ApiResult, Problem};
use crate::integrations::charges::{Intent, INTENT_INDEX};
use crate::operators::Duty;
use crate::payments::PAYOUT_PENDING_INDEX;
use crate::routes::extract::{money, time};
use crate::state::AppState;

/// Items of each kind read at most.
const LIMIT: usize = 1000;

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

/// Where the processors' side and the ledger disagree.
#[derive(Serialize, ToSchema)]
pub struct Mismatch {
    /// `payout_closed_in_ledger` or `unreadable_deposit_intent`.
    pub kind: String,
    pub id: String,
    pub detail: String,
}

#[derive(Serialize, ToSchema)]
pub struct Reconciliation {
    pub date: String,
    pub open_deposits: Vec<OpenDeposit>,
    pub open_payouts: Vec<OpenPayout>,
    pub mismatches: Vec<Mismatch>,
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
    for (reference, text) in intents {
        let Ok(intent) = serde_json::from_str::<Intent>(&text) else {
            mismatches.push(Mismatch {
                kind: "unreadable_deposit_intent".into(),
                id: reference,
                detail: "The stored deposit intent does not read back.".into(),
            });
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
    for (key, _) in pending {
        let Ok(id) = OpId::parse(&key, OpKind::Withdrawal) else {
            continue;
        };
        let Some(Outcome::Withdrawal(view)) = state.engine.operation(id).await? else {
            mismatches.push(Mismatch {
                kind: "payout_unknown_to_ledger".into(),
                id: key,
                detail: "A payout is pending for a withdrawal the ledger no longer shows.".into(),
            });
            continue;
        };
        let created = time(view.at);
        if created.date_naive() != date {
            continue;
        }
        let status = match &view.status {
            WithdrawalStatus::Processing => "processing",
            WithdrawalStatus::Completed => "completed",
            WithdrawalStatus::Failed { .. } => "failed",
        };
        if status != "processing" {
            mismatches.push(Mismatch {
                kind: "payout_closed_in_ledger".into(),
                id: key.clone(),
                detail: format!(
                    "The ledger shows the withdrawal {status}, but its payout is still pending."
                ),
            });
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
    Ok(HttpResponse::Ok().json(Reconciliation {
        date: date.format("%Y-%m-%d").to_string(),
        open_deposits,
        open_payouts,
        mismatches,
    }))
}

#[derive(OpenApi)]
#[openapi(
    paths(reconciliation),
    components(schemas(Reconciliation, OpenDeposit, OpenPayout, Mismatch))
)]
pub struct Api;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(reconciliation);
}
