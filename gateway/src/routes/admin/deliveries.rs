//! The operators' view of the durable outbox of emails and SMS:
//! `GET /v1/admin/deliveries?state=queued|dead` lists messages waiting for a
//! retry or given up on (dead letters), with one-time codes masked.

use actix_web::{get, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::Admin;
use crate::error::{ApiError, ApiResult, Problem};
use crate::integrations::deliveries::Delivery;
use crate::operators::Duty;
use crate::state::AppState;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// `queued` (default) or `dead`.
    pub state: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryList {
    /// Oldest first; codes in bodies are masked.
    pub items: Vec<Delivery>,
}

/// Emails and SMS waiting for delivery, or given up on.
#[utoipa::path(get, path = "/v1/admin/deliveries", tag = "admin", security(("admin" = [])),
    params(DeliveriesQuery),
    responses(
        (status = 200, body = DeliveryList),
        (status = 400, body = Problem, description = "VALIDATION_FAILED: unknown state"),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 503, body = Problem, description = "UNAVAILABLE"),
    ))]
#[get("/v1/admin/deliveries")]
pub async fn list(
    admin: Admin,
    state: web::Data<AppState>,
    query: web::Query<DeliveriesQuery>,
) -> ApiResult<HttpResponse> {
    admin.require(Duty::Read)?;
    let dead = match query.state.as_deref().unwrap_or("queued") {
        "queued" => false,
        "dead" => true,
        _ => return Err(ApiError::validation("state must be `queued` or `dead`.")),
    };
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let items = state
        .deliveries
        .list(dead, limit)
        .await
        .map_err(|_| ApiError::unavailable())?;
    Ok(HttpResponse::Ok().json(DeliveryList { items }))
}

#[derive(OpenApi)]
#[openapi(paths(list), components(schemas(DeliveryList, Delivery)))]
pub struct Api;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list);
}
