//! Handling fraud alerts: an operator acknowledges an alert (someone is on it)
//! and resolves it with a note. Each step is kept once, in the store index
//! `alert_handling` under `<alr_ id>/acknowledged` and `<alr_ id>/resolved`
//! (claimed, so the first operator's step stands and a repeat changes nothing),
//! and recorded in the audit trail. The list of alerts is `GET /v1/admin/alerts`.

use actix_web::{get, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use okpay_engine::ids::{OpId, OpKind};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::auth::Admin;
use crate::error::{ApiError, ApiResult, Problem};
use crate::operator_audit;
use crate::operators::Duty;
use crate::state::AppState;

/// The store index of alert handling steps.
pub const ALERT_HANDLING_INDEX: &str = "alert_handling";
const MAX_NOTE_CHARS: usize = 500;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HandlingStep {
    pub operator: String,
    pub at: DateTime<Utc>,
    pub note: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AlertHandling {
    pub alert_id: String,
    pub account_id: String,
    pub acknowledged: Option<HandlingStep>,
    pub resolved: Option<HandlingStep>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct HandlingRequest {
    /// Optional when acknowledging; required (1–500 characters) when resolving.
    pub note: Option<String>,
}

/// The alert's id, checked to name an alert the account has.
async fn alert(state: &AppState, id: &str) -> ApiResult<OpId> {
    let op = OpId::parse(id.trim(), OpKind::Alert).map_err(|_| ApiError::not_found("alert"))?;
    let known = state
        .engine
        .read(op.account, move |a, _, _| {
            a.opened && a.alerts.iter().any(|r| r.n == op.n)
        })
        .await
        .unwrap_or(false);
    if !known {
        return Err(ApiError::not_found("alert"));
    }
    Ok(op)
}

async fn step(state: &AppState, id: &str, which: &str) -> ApiResult<Option<HandlingStep>> {
    let v = state
        .store()
        .get_index(ALERT_HANDLING_INDEX, &format!("{id}/{which}"))
        .await
        .map_err(|_| ApiError::unavailable())?;
    Ok(v.and_then(|v| serde_json::from_str(&v).ok()))
}

async fn handling(state: &AppState, op: OpId) -> ApiResult<AlertHandling> {
    let id = op.display(OpKind::Alert);
    Ok(AlertHandling {
        acknowledged: step(state, &id, "acknowledged").await?,
        resolved: step(state, &id, "resolved").await?,
        account_id: op.account.to_string(),
        alert_id: id,
    })
}

/// Where an alert's handling stands.
#[utoipa::path(get, path = "/v1/admin/alerts/{id}", tag = "admin", security(("admin" = [])),
    params(("id" = String, Path, description = "An `alr_` id")),
    responses(
        (status = 200, body = AlertHandling),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 404, body = Problem, description = "NOT_FOUND"),
    ))]
#[get("/v1/admin/alerts/{id}")]
pub async fn get_handling(
    _admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let op = alert(&state, &path).await?;
    Ok(HttpResponse::Ok().json(handling(&state, op).await?))
}

async fn take_step(
    state: &AppState,
    admin: &Admin,
    id: &str,
    which: &str,
    note: Option<String>,
) -> ApiResult<HttpResponse> {
    admin.require(Duty::RiskAction)?;
    let op = alert(state, id).await?;
    let note = note.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    if note
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS)
    {
        return Err(ApiError::validation(format!(
            "note must have at most {MAX_NOTE_CHARS} characters."
        )));
    }
    if which == "resolved" && note.is_none() {
        return Err(ApiError::validation(
            "note is required to resolve an alert (what was found, what was done).",
        ));
    }
    let alert_id = op.display(OpKind::Alert);
    let record = HandlingStep {
        operator: admin.name.clone(),
        at: state.now(),
        note: note.clone(),
    };
    // unwrap: a struct of strings and a date always serializes.
    let value = serde_json::to_string(&record).unwrap();
    let claimed = state
        .store()
        .claim_index(ALERT_HANDLING_INDEX, &format!("{alert_id}/{which}"), &value)
        .await
        .map_err(|_| ApiError::unavailable())?;
    if claimed {
        operator_audit::record_done(
            state,
            admin,
            &format!("alert.{which}"),
            Some(op.account),
            note.as_deref(),
            Some(alert_id),
        )
        .await;
    }
    Ok(HttpResponse::Ok().json(handling(state, op).await?))
}

/// Acknowledges an alert (someone is looking at it). Role `risk` or `admin`.
#[utoipa::path(post, path = "/v1/admin/alerts/{id}/acknowledge", tag = "admin", security(("admin" = [])),
    params(("id" = String, Path, description = "An `alr_` id")),
    request_body = HandlingRequest,
    responses(
        (status = 200, body = AlertHandling),
        (status = 400, body = Problem, description = "VALIDATION_FAILED: note too long"),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 403, body = Problem, description = "FORBIDDEN: the role may not"),
        (status = 404, body = Problem, description = "NOT_FOUND"),
    ))]
#[post("/v1/admin/alerts/{id}/acknowledge")]
pub async fn acknowledge(
    admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Option<web::Json<HandlingRequest>>,
) -> ApiResult<HttpResponse> {
    let note = body.and_then(|b| b.into_inner().note);
    take_step(&state, &admin, &path, "acknowledged", note).await
}

/// Resolves an alert with a note. Role `risk` or `admin`.
#[utoipa::path(post, path = "/v1/admin/alerts/{id}/resolve", tag = "admin", security(("admin" = [])),
    params(("id" = String, Path, description = "An `alr_` id")),
    request_body = HandlingRequest,
    responses(
        (status = 200, body = AlertHandling),
        (status = 400, body = Problem, description = "VALIDATION_FAILED: note missing or too long"),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 403, body = Problem, description = "FORBIDDEN: the role may not"),
        (status = 404, body = Problem, description = "NOT_FOUND"),
    ))]
#[post("/v1/admin/alerts/{id}/resolve")]
pub async fn resolve(
    admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<HandlingRequest>,
) -> ApiResult<HttpResponse> {
    take_step(&state, &admin, &path, "resolved", body.into_inner().note).await
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(get_handling)
        .service(acknowledge)
        .service(resolve);
}

/// The OpenAPI part of the alert handling routes.
#[derive(OpenApi)]
#[openapi(
    paths(get_handling, acknowledge, resolve),
    components(schemas(AlertHandling, HandlingStep, HandlingRequest)),
    tags((name = "admin", description = "Operators' routes (operator or admin token)")),
)]
pub struct Api;
