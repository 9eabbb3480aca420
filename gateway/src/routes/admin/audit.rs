//! The operators' audit trail over the API (`GET /v1/admin/audit`), newest first,
//! filtered by account, operator or action. See [`crate::operator_audit`].

use actix_web::{get, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::Admin;
use crate::error::{ApiError, ApiResult, Problem};
use crate::operator_audit::{self, AuditEntry, Filter};
use crate::state::AppState;

const LIMIT_DEFAULT: usize = 100;
const LIMIT_MAX: usize = 500;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only actions on this `acc_` account.
    pub account_id: Option<String>,
    /// Only this operator's actions.
    pub operator: Option<String>,
    /// Only actions starting with this, e.g. `kyc.` or `account.freeze`.
    pub action: Option<String>,
    /// The `next` of the previous page.
    pub after: Option<String>,
    /// 1–500, default 100.
    pub limit: Option<usize>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    /// Pass as `after` for older entries; null at the end.
    pub next: Option<String>,
}

/// The audit trail of operator actions, newest first. Any operator may read it.
#[utoipa::path(get, path = "/v1/admin/audit", tag = "admin", security(("admin" = [])),
    params(AuditQuery),
    responses(
        (status = 200, body = AuditPage),
        (status = 400, body = Problem, description = "VALIDATION_FAILED: limit or after"),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 503, body = Problem, description = "UNAVAILABLE"),
    ))]
#[get("/v1/admin/audit")]
pub async fn audit(
    _admin: Admin,
    state: web::Data<AppState>,
    query: web::Query<AuditQuery>,
) -> ApiResult<HttpResponse> {
    let limit = query.limit.unwrap_or(LIMIT_DEFAULT);
    if !(1..=LIMIT_MAX).contains(&limit) {
        return Err(ApiError::validation(format!(
            "limit must be between 1 and {LIMIT_MAX}."
        )));
    }
    let filter = Filter {
        account: query.account_id.as_deref().map(str::trim),
        operator: query.operator.as_deref().map(str::trim),
        action_prefix: query.action.as_deref().map(str::trim),
    };
    let (items, next) =
        operator_audit::list(&state, query.after.as_deref(), limit, &filter).await?;
    Ok(HttpResponse::Ok().json(AuditPage { items, next }))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(audit);
}

/// The OpenAPI part of the audit route.
#[derive(OpenApi)]
#[openapi(
    paths(audit),
    components(schemas(AuditPage, AuditEntry)),
    tags((name = "admin", description = "Operators' routes (operator or admin token)")),
)]
pub struct Api;
