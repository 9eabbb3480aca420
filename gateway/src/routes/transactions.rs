//! The transaction history (`GET /v1/transactions`): the caller's deposits,
//! withdrawals and transfers (both directions), newest first, a page at a time.
//!
//! Rows come from the engine's history, which the store writes atomically with
//! each journal record, so every durable operation is listed exactly once per
//! side (a transfer's status update rewrites its row rather than adding one). The
//! cursor is the engine's position wrapped in base64url: clients must treat it as
//! opaque, and a cursor that doesn't decode is a 400.

use actix_web::{get, web, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use okpay_engine::domain::history::TxRecord;
use okpay_engine::domain::notification::Direction;
use okpay_engine::ids::OpKind;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, Problem};
use crate::routes::extract::{money, time};
use crate::state::AppState;

/// The page size when the client names none.
const LIMIT_DEFAULT: u32 = 50;
/// The largest page.
const LIMIT_MAX: u32 = 200;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TransactionsQuery {
    /// 1–200, default 50.
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// `transfer`, `deposit` or `withdrawal`; all when absent.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TransactionItem {
    /// `tx_…`, `dep_…` or `wd_…`.
    pub id: String,
    /// `transfer`, `deposit` or `withdrawal`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `in` or `out`, seen from the caller.
    pub direction: String,
    pub amount: String,
    pub fee: String,
    pub currency: String,
    /// `processing`, `completed`, `failed` or `reversed`.
    pub status: String,
    /// The other account of a transfer; null for deposits and withdrawals.
    pub counterparty: Option<String>,
    pub memo: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct TransactionPage {
    pub items: Vec<TransactionItem>,
    /// Pass as `cursor` for the next (older) page; null at the end.
    pub next_cursor: Option<String>,
}

fn kind_name(kind: OpKind) -> &'static str {
    match kind {
        OpKind::Deposit => "deposit",
        OpKind::Withdrawal => "withdrawal",
        OpKind::Transfer => "transfer",
        // History rows are only ever money operations.
        _ => "other",
    }
}

fn item(r: &TxRecord) -> TransactionItem {
    TransactionItem {
        id: r.public_id(),
        kind: kind_name(r.kind).into(),
        direction: match r.direction {
            Direction::In => "in",
            Direction::Out => "out",
        }
        .into(),
        amount: money(r.amount, r.currency),
        fee: money(r.fee, r.currency),
        currency: r.currency.code().into(),
        status: r.status.name().into(),
        counterparty: r.counterparty.map(|a| a.to_string()),
        memo: r.memo.clone(),
        created_at: time(r.created_at),
    }
}

/// Parses the query into (limit, engine cursor, kind).
fn parse(q: TransactionsQuery) -> Result<(usize, Option<String>, Option<OpKind>), ApiError> {
    let limit = q.limit.unwrap_or(LIMIT_DEFAULT);
    if !(1..=LIMIT_MAX).contains(&limit) {
        return Err(ApiError::validation(format!(
            "limit must be between 1 and {LIMIT_MAX}."
        )));
    }
    let kind = match q.kind.as_deref() {
        None => None,
        Some("transfer") => Some(OpKind::Transfer),
        Some("deposit") => Some(OpKind::Deposit),
        Some("withdrawal") => Some(OpKind::Withdrawal),
        Some(_) => {
            return Err(ApiError::validation(
                "type must be transfer, deposit or withdrawal.",
            ))
        }
    };
    let cursor = q
        .cursor
        .map(|c| {
            URL_SAFE_NO_PAD
                .decode(c.as_bytes())
                .ok()
                .and_then(|raw| String::from_utf8(raw).ok())
                .filter(|s| !s.is_empty() && s.len() <= 256)
                .ok_or_else(|| ApiError::validation("The cursor is not one this API gave out."))
        })
        .transpose()?;
    Ok((limit as usize, cursor, kind))
}

/// The caller's transactions, newest first.
#[utoipa::path(get, path = "/v1/transactions", tag = "transactions", security(("bearer" = [])),
    params(TransactionsQuery),
    responses(
        (status = 200, body = TransactionPage),
        (status = 400, body = Problem, description = "VALIDATION_FAILED: limit, type or cursor"),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
    ))]
#[get("/v1/transactions")]
pub async fn list(
    state: web::Data<AppState>,
    auth: Auth,
    query: web::Query<TransactionsQuery>,
) -> ApiResult<HttpResponse> {
    let (limit, cursor, kind) = parse(query.into_inner())?;
    let (rows, next) = state
        .engine
        .history(auth.account, cursor, limit, kind)
        .await?;
    Ok(HttpResponse::Ok().json(TransactionPage {
        items: rows.iter().map(item).collect(),
        next_cursor: next.map(|c| URL_SAFE_NO_PAD.encode(c)),
    }))
}

#[derive(OpenApi)]
#[openapi(
    paths(list),
    components(schemas(TransactionPage, TransactionItem)),
    tags((name = "transactions", description = "The transaction history"))
)]
pub struct Api;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list);
}
