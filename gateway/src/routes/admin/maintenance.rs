//! The maintenance switch for operators.

use actix_web::{put, web, HttpResponse};
use serde::Deserialize;
use utoipa::{OpenApi, ToSchema};

use crate::auth::Admin;
use crate::error::{ApiError, ApiResult, Problem};
use crate::state::AppState;
use crate::stream::SystemStatus;

/// Longest maintenance message (pushed to every socket).
const MAX_MESSAGE_CHARS: usize = 500;

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
        (status = 403, body = Problem, description = "FORBIDDEN: not the admin role"),
    ))]
#[put("/v1/admin/maintenance")]
pub async fn maintenance(
    admin: Admin,
    state: web::Data<AppState>,
    body: web::Json<MaintenanceRequest>,
) -> ApiResult<HttpResponse> {
    admin.require(crate::operators::Duty::Administer)?;
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
    let status = state.maintenance.set(body.enabled, message.clone()).await?;
    crate::operator_audit::record_done(
        &state,
        &admin,
        if body.enabled {
            "maintenance.on"
        } else {
            "maintenance.off"
        },
        None,
        message.as_deref(),
        None,
    )
    .await;
    tracing::warn!(
        maintenance = status.maintenance,
        "maintenance switched by an operator"
    );
    Ok(HttpResponse::Ok().json(status))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(maintenance);
}

/// The OpenAPI part of the maintenance route.
#[derive(OpenApi)]
#[openapi(
    paths(maintenance),
    components(schemas(MaintenanceRequest, SystemStatus)),
    tags((name = "admin", description = "Operators' routes (admin token)")),
)]
pub struct Api;
