//! The dev-mode outbox for operators: codes and messages sent to people.

use actix_web::{get, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::Admin;
use crate::error::{ApiError, ApiResult, Problem};
use crate::notifier::OutboxMessage;
use crate::state::AppState;

/// Outbox messages returned when no `limit` is given, and at most.
const OUTBOX_LIMIT_DEFAULT: usize = 100;
const OUTBOX_LIMIT_MAX: usize = 1000;

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
        (status = 403, body = Problem, description = "FORBIDDEN: not the admin role"),
        (status = 404, body = Problem, description = "NOT_FOUND: not in dev mode"),
    ))]
#[get("/v1/admin/outbox")]
pub async fn outbox(
    admin: Admin,
    state: web::Data<AppState>,
    query: web::Query<OutboxQuery>,
) -> ApiResult<HttpResponse> {
    // Codes sent to people: for the `admin` role only.
    admin.require(crate::operators::Duty::Administer)?;
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

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(outbox);
}

/// The OpenAPI part of the outbox route.
#[derive(OpenApi)]
#[openapi(
    paths(outbox),
    components(schemas(OutboxList, OutboxMessage)),
    tags((name = "admin", description = "Operators' routes (admin token)")),
)]
pub struct Api;
