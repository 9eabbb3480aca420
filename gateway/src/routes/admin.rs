//! Operators' routes (`Authorization: Bearer <admin token>`; without a configured
//! token every one answers 401): look at an account, freeze and unfreeze it, read
//! the dev outbox, audit the ledger, switch maintenance. The operators' websocket
//! is in `routes::stream`.
//!
//! Admin routes are not blocked by maintenance: operators must be able to freeze
//! an account, or end maintenance, while it is on.

use std::collections::BTreeMap;

use actix_web::{get, post, put, web, HttpResponse};
use okpay_engine::domain::state::AccountStatus;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::Admin;
use crate::error::{ApiError, ApiResult, Problem};
use crate::notifier::OutboxMessage;
use crate::routes::account::{load_account, AccountResponse};
use crate::routes::extract::{account_id, money};
use crate::state::AppState;
use crate::stream::SystemStatus;

/// Longest reason an operator may give (it is stored in the account's journal and
/// shown to the user).
const MAX_REASON_CHARS: usize = 500;
/// Longest maintenance message (pushed to every socket).
const MAX_MESSAGE_CHARS: usize = 500;
/// Outbox messages returned when no `limit` is given, and at most.
const OUTBOX_LIMIT_DEFAULT: usize = 100;
const OUTBOX_LIMIT_MAX: usize = 1000;

/// Any account, as its owner sees it (status and its reason, KYC tier, limits,
/// balances).
#[utoipa::path(get, path = "/v1/admin/accounts/{id}", tag = "admin", security(("admin" = [])),
    params(("id" = String, Path, description = "An `acc_` id")),
    responses(
        (status = 200, body = AccountResponse),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 404, body = Problem, description = "NOT_FOUND"),
    ))]
#[get("/v1/admin/accounts/{id}")]
pub async fn get_account(
    _admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = account_id(&path)?;
    Ok(HttpResponse::Ok().json(load_account(&state, id).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusChangeRequest {
    /// Why (1–500 characters); recorded, pushed in `account.status_changed` and
    /// shown to the user.
    #[schema(example = "Chargeback investigation #4411")]
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct StatusChanged {
    pub account_id: String,
    /// The account's status now: `frozen` after a freeze; after an unfreeze,
    /// `active` (or the unchanged status of an account that was not frozen).
    pub status: String,
    pub reason: String,
}

fn reason(body: StatusChangeRequest) -> Result<String, ApiError> {
    let reason = body.reason.trim().to_owned();
    let n = reason.chars().count();
    if n == 0 || n > MAX_REASON_CHARS {
        return Err(ApiError::validation(format!(
            "reason must have 1 to {MAX_REASON_CHARS} characters."
        )));
    }
    Ok(reason)
}

/// Freezes an account: no outgoing money; login still works so the user sees why.
/// Pushes `account.status_changed` to the account's sockets and the admin stream.
/// Freezing a frozen account changes nothing.
#[utoipa::path(post, path = "/v1/admin/accounts/{id}/freeze", tag = "admin", security(("admin" = [])),
    params(("id" = String, Path, description = "An `acc_` id")),
    request_body = StatusChangeRequest,
    responses(
        (status = 200, body = StatusChanged),
        (status = 400, body = Problem, description = "VALIDATION_FAILED"),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 403, body = Problem, description = "ACCOUNT_CLOSED"),
        (status = 404, body = Problem, description = "NOT_FOUND"),
    ))]
#[post("/v1/admin/accounts/{id}/freeze")]
pub async fn freeze(
    _admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<StatusChangeRequest>,
) -> ApiResult<HttpResponse> {
    let id = account_id(&path)?;
    let reason = reason(body.into_inner())?;
    state.engine.freeze(id, reason.clone()).await?;
    tracing::info!(account = %id, "account frozen by an operator");
    Ok(HttpResponse::Ok().json(StatusChanged {
        account_id: id.to_string(),
        status: AccountStatus::Frozen.name().into(),
        reason,
    }))
}

/// Unfreezes a frozen account (back to `active`); pushes `account.status_changed`.
/// An account that is not frozen is left as it is (a restricted account stays
/// restricted: lifting a restriction is another decision) and its status returned.
#[utoipa::path(post, path = "/v1/admin/accounts/{id}/unfreeze", tag = "admin", security(("admin" = [])),
    params(("id" = String, Path, description = "An `acc_` id")),
    request_body = StatusChangeRequest,
    responses(
        (status = 200, body = StatusChanged),
        (status = 400, body = Problem, description = "VALIDATION_FAILED"),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 404, body = Problem, description = "NOT_FOUND"),
    ))]
#[post("/v1/admin/accounts/{id}/unfreeze")]
pub async fn unfreeze(
    _admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<StatusChangeRequest>,
) -> ApiResult<HttpResponse> {
    let id = account_id(&path)?;
    let reason = reason(body.into_inner())?;
    // Check-then-act is not atomic, but only operators change this status, and the
    // worst race (a concurrent freeze) leaves the account active, as asked.
    let status = state.engine.view(id).await?.status;
    let status = if status == AccountStatus::Frozen {
        state.engine.unfreeze(id, reason.clone()).await?;
        tracing::info!(account = %id, "account unfrozen by an operator");
        AccountStatus::Active
    } else {
        status
    };
    Ok(HttpResponse::Ok().json(StatusChanged {
        account_id: id.to_string(),
        status: status.name().into(),
        reason,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OutboxQuery {
    /// Only messages to this email or phone.
    pub to: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

#[derive(Serialize, ToSchema)]
pub struct OutboxList {
    /// Newest first.
    pub items: Vec<OutboxMessage>,
}

/// The dev-mode outbox: codes and messages sent to people, newest first. 404 when
/// the server is not in dev mode.
#[utoipa::path(get, path = "/v1/admin/outbox", tag = "admin", security(("admin" = [])),
    params(OutboxQuery),
    responses(
        (status = 200, body = OutboxList),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 404, body = Problem, description = "NOT_FOUND: not in dev mode"),
    ))]
#[get("/v1/admin/outbox")]
pub async fn outbox(
    _admin: Admin,
    state: web::Data<AppState>,
    query: web::Query<OutboxQuery>,
) -> ApiResult<HttpResponse> {
    let outbox = state
        .outbox
        .as_ref()
        .ok_or_else(|| ApiError::not_found("outbox (the server is not in dev mode)"))?;
    let limit = query
        .limit
        .unwrap_or(OUTBOX_LIMIT_DEFAULT)
        .clamp(1, OUTBOX_LIMIT_MAX);
    let items = outbox.list(query.to.as_deref().map(str::trim), limit);
    Ok(HttpResponse::Ok().json(OutboxList { items }))
}

/// One currency's audit figures, in the currency's decimals.
#[derive(Serialize, ToSchema)]
pub struct CurrencyAudit {
    /// Money that came in through deposits (net of nothing).
    pub deposited: String,
    pub fees: String,
    /// Money that left through settled withdrawals.
    pub paid_out: String,
    /// Every account's available + held.
    pub balances: String,
    /// Transfers and withdrawals under way.
    pub in_flight: String,
}

#[derive(Serialize, ToSchema)]
pub struct LedgerAudit {
    /// Every configured currency (and any other one that holds money).
    pub currencies: BTreeMap<String, CurrencyAudit>,
    /// Whether `deposited = balances + in_flight + fees + paid_out` holds in every
    /// currency. Exact at rest; while money moves, a transfer may be seen on
    /// neither or both sides for an instant.
    pub balanced: bool,
}

/// The ledger audit over every account.
#[utoipa::path(get, path = "/v1/admin/ledger", tag = "admin", security(("admin" = [])),
    responses(
        (status = 200, body = LedgerAudit),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 503, body = Problem, description = "UNAVAILABLE"),
    ))]
#[get("/v1/admin/ledger")]
pub async fn ledger(_admin: Admin, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let audit = state.engine.audit().await?;
    let policy = state.engine.policy();
    let mut ledger = audit.currencies;
    // Configured currencies appear even before any money moved in them.
    for c in policy
        .currencies
        .iter()
        .filter_map(|c| policy.currency(&c.code).ok())
    {
        ledger.entry(c).or_default();
    }
    let currencies = ledger
        .iter()
        .map(|(c, l)| {
            (
                c.code().to_owned(),
                CurrencyAudit {
                    deposited: money(l.deposited, *c),
                    fees: money(l.fees, *c),
                    paid_out: money(l.paid_out, *c),
                    balances: money(l.balances, *c),
                    in_flight: money(l.in_flight, *c),
                },
            )
        })
        .collect();
    let balanced = ledger.values().all(|l| l.balanced());
    if !balanced {
        tracing::error!("the ledger audit is NOT balanced");
    }
    Ok(HttpResponse::Ok().json(LedgerAudit {
        currencies,
        balanced,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceRequest {
    pub enabled: bool,
    /// Shown to users (at most 500 characters).
    #[schema(example = "Upgrading the ledger; back at 02:30 UTC.")]
    pub message: Option<String>,
}

/// Switches maintenance on or off: while on, every money-moving and
/// account-changing request answers 503 `MAINTENANCE`; reads still work. Pushes
/// `system.status` to every socket.
#[utoipa::path(put, path = "/v1/admin/maintenance", tag = "admin", security(("admin" = [])),
    request_body = MaintenanceRequest,
    responses(
        (status = 200, body = SystemStatus),
        (status = 400, body = Problem, description = "VALIDATION_FAILED"),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
    ))]
#[put("/v1/admin/maintenance")]
pub async fn maintenance(
    _admin: Admin,
    state: web::Data<AppState>,
    body: web::Json<MaintenanceRequest>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let message = body
        .message
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty());
    if message
        .as_ref()
        .is_some_and(|m| m.chars().count() > MAX_MESSAGE_CHARS)
    {
        return Err(ApiError::validation(format!(
            "message must have at most {MAX_MESSAGE_CHARS} characters."
        )));
    }
    let status = state.maintenance.set(body.enabled, message);
    tracing::warn!(
        maintenance = status.maintenance,
        "maintenance switched by an operator"
    );
    Ok(HttpResponse::Ok().json(status))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(get_account)
        .service(freeze)
        .service(unfreeze)
        .service(outbox)
        .service(ledger)
        .service(maintenance);
}

/// The OpenAPI part of the admin routes.
#[derive(OpenApi)]
#[openapi(
    paths(get_account, freeze, unfreeze, outbox, ledger, maintenance),
    components(schemas(StatusChangeRequest, StatusChanged, OutboxList, OutboxMessage, CurrencyAudit, LedgerAudit, MaintenanceRequest, SystemStatus)),
    tags((name = "admin", description = "Operators' routes (admin token)")),
)]
pub struct Api;
