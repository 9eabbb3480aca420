//! Operators' account routes: look at any account, freeze and unfreeze it.

use actix_web::{get, post, web, HttpResponse};
use okpay_engine::domain::state::AccountStatus;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::auth::Admin;
use crate::error::{ApiError, ApiResult, Problem};
use crate::routes::account::{load_account, AccountResponse};
use crate::routes::extract::account_id;
use crate::state::AppState;

/// Longest reason an operator may give (it is stored in the account's journal and
/// shown to the user).
pub(crate) const MAX_REASON_CHARS: usize = 500;

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

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(get_account).service(freeze).service(unfreeze);
}

/// The OpenAPI part of the account routes.
#[derive(OpenApi)]
#[openapi(
    paths(get_account, freeze, unfreeze),
    components(schemas(StatusChangeRequest, StatusChanged)),
    tags((name = "admin", description = "Operators' routes (admin token)")),
)]
pub struct Api;
