//! The dev-mode outbox for operators and tests: `GET /v1/admin/outbox?to=`
//! lists the messages the notifier "sent" (codes included), newest first. Without
//! `--dev` there is no outbox and the route answers 404.
//!
//! Stop-gap: the admin routes module (`admin.rs`, built in parallel) owns this
//! route in the end; when both are merged, keep one registration.

use actix_web::{get, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::Admin;
use crate::error::{ApiError, ApiResult, Problem};
use crate::notifier::OutboxMessage;
use crate::state::AppState;

#[derive(Deserialize, IntoParams)]
pub struct OutboxQuery {
    /// Only messages to this email or phone.
    pub to: Option<String>,
    /// At most this many (default 100, at most 1,000).
    pub limit: Option<usize>,
}

#[derive(Serialize, ToSchema)]
pub struct OutboxList {
    pub items: Vec<OutboxMessage>,
}

/// Messages sent in dev mode, newest first.
#[utoipa::path(get, path = "/v1/admin/outbox", tag = "admin", security(("admin" = [])),
    params(OutboxQuery),
    responses((status = 200, body = OutboxList), (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 404, body = Problem, description = "NOT_FOUND: not in dev mode")))]
#[get("/v1/admin/outbox")]
pub async fn outbox(
    state: web::Data<AppState>,
    _admin: Admin,
    query: web::Query<OutboxQuery>,
) -> ApiResult<HttpResponse> {
    let outbox = state
        .outbox
        .as_ref()
        .ok_or_else(|| ApiError::not_found("outbox (dev mode only)"))?;
    let limit = query.limit.unwrap_or(100).clamp(1, 1_000);
    let items = outbox.list(query.to.as_deref(), limit);
    Ok(HttpResponse::Ok().json(OutboxList { items }))
}

#[derive(OpenApi)]
#[openapi(paths(outbox), components(schemas(OutboxList, OutboxMessage)))]
pub struct Api;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(outbox);
}
