//! The transaction history: `GET /v1/transactions` (the caller's deposits,
//! withdrawals and transfers in both directions, newest first, a page at a time,
//! filtered by date range, type, status, direction and counterparty) and
//! `GET /v1/transactions/{id}`.
//!
//! Rows come from the engine's history, which the store writes atomically with
//! each journal record, so every durable operation is listed exactly once per
//! side (a transfer's status update rewrites its row rather than adding one). Row
//! keys start with the creation time in hex milliseconds, so `to` becomes the
//! starting cursor and `from` the point where the scan stops. The other filters
//! are applied while scanning, and one request scans a bounded number of rows: a
//! page may come back short with a `next_cursor`, and the client goes on from it.
//! The cursor is the engine's position in hex: clients must treat it as opaque; a
//! cursor that doesn't decode is a 400.
//!
//! Each row names its counterparty by display name and, when the caller saved the
//! account as a contact, by the contact's alias.

use std::collections::HashMap;

use actix_web::{get, web, HttpResponse};
use chrono::{DateTime, Utc};
use okpay_engine::domain::history::TxRecord;
use okpay_engine::domain::notification::{Direction, TxStatus};
use okpay_engine::ids::{AccountId, OpId, OpKind};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorCode, Problem};
use crate::routes::extract::{money, time};
use crate::state::AppState;

/// The page size when the client names none.
const LIMIT_DEFAULT: u32 = 50;
/// The largest page.
const LIMIT_MAX: u32 = 200;
/// Engine history calls one request may make (each reads at most a page, or 2,000
/// rows when filtering by type): what bounds a filtered page's work.
const CALLS_MAX: usize = 10;
/// Rows `GET /v1/transactions/{id}` looks through before answering 404.
const LOOKUP_ROWS_MAX: usize = 10_000;

/// `transfer`, `deposit` or `withdrawal`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TxType {
    Transfer,
    Deposit,
    Withdrawal,
}

impl TxType {
    fn kind(self) -> OpKind {
        match self {
            TxType::Transfer => OpKind::Transfer,
            TxType::Deposit => OpKind::Deposit,
            TxType::Withdrawal => OpKind::Withdrawal,
        }
    }
}

/// Where a transaction stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TxState {
    Processing,
    Completed,
    Failed,
    Reversed,
}

impl TxState {
    fn of(s: TxStatus) -> TxState {
        match s {
            TxStatus::Processing => TxState::Processing,
            TxStatus::Completed => TxState::Completed,
            TxStatus::Failed => TxState::Failed,
            TxStatus::Reversed => TxState::Reversed,
        }
    }
}

/// `in` (money to the caller) or `out`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TxDirection {
    In,
    Out,
}

impl TxDirection {
    fn of(d: Direction) -> TxDirection {
        match d {
            Direction::In => TxDirection::In,
            Direction::Out => TxDirection::Out,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TransactionsQuery {
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^([0-9a-f]{2}){1,256}$")]
    pub cursor: Option<String>,
    /// Only this type; all when absent.
    #[serde(rename = "type")]
    #[param(rename = "type", inline)]
    pub kind: Option<TxType>,
    /// Only this status.
    #[param(inline)]
    pub status: Option<TxState>,
    /// Only this direction.
    #[param(inline)]
    pub direction: Option<TxDirection>,
    /// Only transfers with this account (`acc_` id).
    #[param(pattern = "^acc_[0-9a-f]{16}$", example = "acc_0123456789abcdef")]
    pub counterparty: Option<String>,
    /// Only transactions created at or after this instant (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Only transactions created at or before this instant (RFC 3339).
    pub to: Option<DateTime<Utc>>,
}

/// The other side of a transfer.
#[derive(Serialize, ToSchema)]
pub struct Counterparty {
    #[schema(example = "acc_0123456789abcdef")]
    pub account_id: String,
    /// The name the other user registered with (null if it can't be read now).
    pub display_name: Option<String>,
    /// The caller's alias for this account, if it is one of their contacts.
    pub alias: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "id": "tx_0123456789abcdef0000000000000003",
    "type": "transfer",
    "direction": "out",
    "amount": "25.00",
    "fee": "0.00",
    "currency": "CNY",
    "status": "completed",
    "counterparty": "acc_fedcba9876543210",
    "counterparty_detail": {"account_id": "acc_fedcba9876543210", "display_name": "Wang Fang", "alias": "Mum"},
    "memo": "lunch",
    "created_at": "2026-11-29T08:00:00Z"
}))]
pub struct TransactionItem {
    /// `tx_…`, `dep_…` or `wd_…`.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: TxType,
    /// Seen from the caller.
    pub direction: TxDirection,
    pub amount: String,
    pub fee: String,
    pub currency: String,
    pub status: TxState,
    /// The other account of a transfer (`acc_` id); null for deposits and withdrawals.
    pub counterparty: Option<String>,
    /// The other side of a transfer by name and alias; null for deposits and withdrawals.
    pub counterparty_detail: Option<Counterparty>,
    pub memo: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct TransactionPage {
    pub items: Vec<TransactionItem>,
    /// Pass as `cursor` for the next (older) page; null at the end.
    pub next_cursor: Option<String>,
}

/// The kind of a history row (rows are only ever money operations).
fn tx_type(kind: OpKind) -> TxType {
    match kind {
        OpKind::Deposit => TxType::Deposit,
        OpKind::Withdrawal => TxType::Withdrawal,
        OpKind::Transfer
        | OpKind::Alert
        | OpKind::Session
        | OpKind::Contact
        | OpKind::Challenge => TxType::Transfer,
    }
}

/// Names of counterparties: display names and the caller's aliases.
#[derive(Default)]
struct Names {
    display: HashMap<AccountId, String>,
    alias: HashMap<AccountId, String>,
}

impl Names {
    /// Reads the names of every counterparty in `rows`: the caller's contacts in
    /// one read, each distinct counterparty's display name in one read each (a
    /// page has at most 200 rows). A name that can't be read now is left out
    /// rather than failing the page.
    async fn of(state: &AppState, caller: AccountId, rows: &[TxRecord]) -> ApiResult<Names> {
        let mut others: Vec<AccountId> = rows.iter().filter_map(|r| r.counterparty).collect();
        others.sort_unstable_by_key(|a| a.0);
        others.dedup();
        if others.is_empty() {
            return Ok(Names::default());
        }
        let alias = state
            .engine
            .read(caller, |s, _, _| {
                s.contacts
                    .iter()
                    .map(|c| (c.account, c.alias.clone()))
                    .collect::<HashMap<_, _>>()
            })
            .await?;
        let reads = others.iter().map(|a| {
            let a = *a;
            async move {
                let name = state
                    .engine
                    .read(a, |s, _, _| {
                        s.opened.then(|| s.profile.display_name.clone())
                    })
                    .await;
                (a, name.ok().flatten())
            }
        });
        let display = futures::future::join_all(reads)
            .await
            .into_iter()
            .filter_map(|(a, n)| n.map(|n| (a, n)))
            .collect();
        Ok(Names { display, alias })
    }

    fn item(&self, r: &TxRecord) -> TransactionItem {
        TransactionItem {
            id: r.public_id(),
            kind: tx_type(r.kind),
            direction: TxDirection::of(r.direction),
            amount: money(r.amount, r.currency),
            fee: money(r.fee, r.currency),
            currency: r.currency.code().into(),
            status: TxState::of(r.status),
            counterparty: r.counterparty.map(|a| a.to_string()),
            counterparty_detail: r.counterparty.map(|a| Counterparty {
                account_id: a.to_string(),
                display_name: self.display.get(&a).cloned(),
                alias: self.alias.get(&a).cloned(),
            }),
            memo: r.memo.clone(),
            created_at: time(r.created_at),
        }
    }
}

/// A validated query.
pub struct Filter {
    pub limit: usize,
    pub cursor: Option<String>,
    pub kind: Option<OpKind>,
    pub status: Option<TxState>,
    pub direction: Option<TxDirection>,
    pub counterparty: Option<AccountId>,
    pub from_ms: Option<i64>,
}

impl Filter {
    fn keeps(&self, r: &TxRecord) -> bool {
        self.kind.is_none_or(|k| k == r.kind)
            && self.status.is_none_or(|s| s == TxState::of(r.status))
            && self
                .direction
                .is_none_or(|d| d == TxDirection::of(r.direction))
            && self.counterparty.is_none_or(|c| r.counterparty == Some(c))
    }
}

/// The engine cursor that starts a newest-first scan just after instant `ms`
/// (row keys start with the creation time as 16 hex digits).
fn cursor_after(ms: i64) -> String {
    format!("{:016x}", ms.saturating_add(1).max(0))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.is_empty() || !text.len().is_multiple_of(2) || text.len() > 512 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Checks the query and turns it into a [`Filter`].
fn parse(q: TransactionsQuery) -> Result<Filter, ApiError> {
    let limit = q.limit.unwrap_or(LIMIT_DEFAULT);
    if !(1..=LIMIT_MAX).contains(&limit) {
        return Err(ApiError::validation(format!(
            "limit must be between 1 and {LIMIT_MAX}."
        )));
    }
    let mut cursor = q
        .cursor
        .map(|c| {
            unhex(&c)
                .map(|raw| String::from_utf8_lossy(&raw).into_owned())
                .ok_or_else(|| ApiError::validation("The cursor is not one this API gave out."))
        })
        .transpose()?;
    let counterparty = q
        .counterparty
        .map(|c| {
            c.parse::<AccountId>()
                .map_err(|_| ApiError::validation("counterparty must be an acc_ id."))
        })
        .transpose()?;
    if let (Some(from), Some(to)) = (q.from, q.to) {
        if from > to {
            return Err(ApiError::new(
                ErrorCode::InvalidPeriod,
                "from must not be after to.",
            ));
        }
    }
    if let Some(to) = q.to {
        let start = cursor_after(to.timestamp_millis());
        // The later of the two bounds is no bound: keep the tighter (smaller) one.
        if cursor.as_ref().is_none_or(|c| start < *c) {
            cursor = Some(start);
        }
    }
    Ok(Filter {
        limit: limit as usize,
        cursor,
        kind: q.kind.map(TxType::kind),
        status: q.status,
        direction: q.direction,
        counterparty,
        from_ms: q.from.map(|f| f.timestamp_millis()),
    })
}

/// One page of rows matching `f`, newest first, and the cursor of the next page.
pub async fn scan(
    state: &AppState,
    account: AccountId,
    f: &Filter,
) -> ApiResult<(Vec<TxRecord>, Option<String>)> {
    let mut out = Vec::new();
    let mut cursor = f.cursor.clone();
    for _ in 0..CALLS_MAX {
        let want = f.limit - out.len();
        let (rows, next) = state
            .engine
            .history(account, cursor.clone(), want, f.kind)
            .await?;
        for r in rows {
            if f.from_ms.is_some_and(|from| r.created_at.millis() < from) {
                // Older than the range: nothing further back matches.
                return Ok((out, None));
            }
            if f.keeps(&r) {
                out.push(r);
            }
        }
        cursor = next;
        if cursor.is_none() || out.len() >= f.limit {
            break;
        }
    }
    Ok((out, cursor))
}

/// The caller's transactions, newest first.
#[utoipa::path(get, path = "/v1/transactions", tag = "transactions", security(("bearer" = [])),
    params(TransactionsQuery),
    responses(
        (status = 200, body = TransactionPage),
        (status = 400, body = Problem, description = "A bad limit, type, status, direction, counterparty, date or cursor."),
        (status = 422, body = Problem, description = "from is after to."),
    ))]
#[get("/v1/transactions")]
pub async fn list(
    state: web::Data<AppState>,
    auth: Auth,
    query: web::Query<TransactionsQuery>,
) -> ApiResult<HttpResponse> {
    let filter = parse(query.into_inner())?;
    let (rows, next) = scan(&state, auth.account, &filter).await?;
    let names = Names::of(&state, auth.account, &rows).await?;
    Ok(HttpResponse::Ok().json(TransactionPage {
        items: rows.iter().map(|r| names.item(r)).collect(),
        next_cursor: next.map(|c| hex(c.as_bytes())),
    }))
}

/// Parses a `tx_…`, `dep_…` or `wd_…` id.
fn tx_id(text: &str) -> Option<(OpId, OpKind)> {
    [OpKind::Transfer, OpKind::Deposit, OpKind::Withdrawal]
        .into_iter()
        .find_map(|k| OpId::parse(text, k).ok().map(|id| (id, k)))
}

/// One of the caller's transactions.
#[utoipa::path(get, path = "/v1/transactions/{id}", tag = "transactions", security(("bearer" = [])),
    params(("id" = String, Path, description = "A `tx_`, `dep_` or `wd_` id from the history",
        pattern = "^(tx|dep|wd)_[0-9a-f]{32}$", example = "tx_0123456789abcdef0000000000000003")),
    responses(
        (status = 200, body = TransactionItem),
        (status = 404, body = Problem, description = "Not one of the caller's transactions (or older than the newest 10,000)."),
    ))]
#[get("/v1/transactions/{id}")]
pub async fn one(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let (id, kind) = tx_id(&path).ok_or_else(|| ApiError::not_found("transaction"))?;
    let mut cursor = None;
    let mut seen = 0;
    // Bounded: a row beyond the newest LOOKUP_ROWS_MAX is not looked for.
    while seen < LOOKUP_ROWS_MAX {
        let (rows, next) = state
            .engine
            .history(auth.account, cursor, LIMIT_MAX as usize, Some(kind))
            .await?;
        seen += rows.len().max(1);
        if let Some(r) = rows.into_iter().find(|r| r.id == id && r.kind == kind) {
            let names = Names::of(&state, auth.account, std::slice::from_ref(&r)).await?;
            return Ok(HttpResponse::Ok().json(names.item(&r)));
        }
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    Err(ApiError::not_found("transaction"))
}

#[derive(OpenApi)]
#[openapi(
    paths(list, one),
    components(schemas(
        TransactionPage,
        TransactionItem,
        Counterparty,
        TxType,
        TxState,
        TxDirection
    )),
    tags((name = "transactions", description = "The transaction history and statements"))
)]
pub struct Api;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list).service(one);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_through_hex_and_garbage_is_refused() {
        let key = "0000019ad1c20000tx_0123";
        assert_eq!(unhex(&hex(key.as_bytes())).unwrap(), key.as_bytes());
        for bad in ["", "0", "zz", "%%%", &"00".repeat(257)] {
            assert!(unhex(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn to_starts_just_after_its_millisecond() {
        let at = 0x19a_d1c2_0000_i64;
        let row_at = format!("{at:016x}tx_0123456789abcdef0000000000000001");
        let row_after = format!("{:016x}tx_0123456789abcdef0000000000000002", at + 1);
        let c = cursor_after(at);
        assert!(row_at < c, "a row at `to` is listed");
        assert!(row_after > c, "a row after `to` is not");
    }
}
