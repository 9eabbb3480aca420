//! Fraud alerts: `GET /v1/alerts` lists the caller's recent alerts (kept in the
//! account's state, at most 100, newest first); `GET /v1/admin/alerts?limit=`
//! lists recent alerts across accounts for operators (`alert_log.rs`). Both are
//! also pushed live: `alert.raised` on the account's sockets and on
//! `/v1/admin/stream`.

use actix_web::{get, web, HttpResponse};
use chrono::{DateTime, Utc};
use okpay_engine::ids::{OpId, OpKind};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::alert_log::{AdminAlert, LIST_MAX};
use crate::auth::{Admin, Auth};
use crate::error::{ApiResult, Problem};
use crate::routes::extract::time;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct AlertItem {
    /// An `alr_` id.
    pub id: String,
    /// `velocity_count`, `fan_out`, `new_device`, `two_countries_too_close`,
    /// `deposit_then_quick_withdrawal`, `failed_login_burst`, ...
    pub rule: String,
    /// `low`, `medium` or `high`.
    pub severity: String,
    pub message: String,
    /// What the rule did: `allow`, `challenge`, `hold_for_review`, `block`, `freeze`.
    pub action: String,
    pub at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct AlertList {
    pub items: Vec<AlertItem>,
}

#[derive(Serialize, ToSchema)]
pub struct AdminAlertList {
    pub items: Vec<AdminAlert>,
}

#[derive(Deserialize, IntoParams)]
pub struct AdminAlertsQuery {
    /// At most this many, newest first (default 100, at most 500).
    pub limit: Option<usize>,
}

/// The caller's recent alerts, newest first.
#[utoipa::path(get, path = "/v1/alerts", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, body = AlertList), (status = 401, body = Problem, description = "UNAUTHENTICATED")))]
#[get("/v1/alerts")]
pub async fn list(state: web::Data<AppState>, auth: Auth) -> ApiResult<HttpResponse> {
    let alerts = state
        .engine
        .read(auth.account, |account, _, _| account.alerts.clone())
        .await?;
    let items = alerts
        .iter()
        .rev()
        .map(|a| AlertItem {
            id: OpId {
                account: auth.account,
                n: a.n,
            }
            .display(OpKind::Alert),
            rule: a.rule.name().into(),
            severity: a.severity.name().into(),
            message: a.message.clone(),
            action: a.action.name().into(),
            at: time(a.at),
        })
        .collect();
    Ok(HttpResponse::Ok().json(AlertList { items }))
}

/// Recent alerts across accounts, newest first.
#[utoipa::path(get, path = "/v1/admin/alerts", tag = "admin", security(("admin" = [])),
    params(AdminAlertsQuery),
    responses((status = 200, body = AdminAlertList), (status = 401, body = Problem, description = "UNAUTHENTICATED")))]
#[get("/v1/admin/alerts")]
pub async fn admin_list(
    state: web::Data<AppState>,
    _admin: Admin,
    query: web::Query<AdminAlertsQuery>,
) -> ApiResult<HttpResponse> {
    let limit = query.limit.unwrap_or(100).clamp(1, LIST_MAX);
    let items = state.alerts.list(state.store(), limit).await;
    Ok(HttpResponse::Ok().json(AdminAlertList { items }))
}

#[derive(OpenApi)]
#[openapi(
    paths(list, admin_list),
    components(schemas(AlertItem, AlertList, AdminAlert, AdminAlertList))
)]
pub struct Api;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list).service(admin_list);
}
