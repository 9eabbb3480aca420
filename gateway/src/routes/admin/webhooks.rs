//! Operators manage webhook endpoints for integrators: register one with the
//! event types it wants (its signing secret is answered once), list, remove, and
//! replay an endpoint's messages (`integrations::webhooks`).

use actix_web::{delete, get, post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::auth::Admin;
use crate::error::{ApiError, ApiResult, ErrorCode, Problem};
use crate::integrations::webhooks::{valid_url, Endpoint, RegisterError, EVENT_TYPES};
use crate::operator_audit;
use crate::operators::Duty;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEndpoint {
    /// Where events are POSTed (http or https).
    pub url: String,
    /// Event types wanted (see the README's Integrations section).
    pub events: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedEndpoint {
    #[serde(flatten)]
    pub endpoint: Endpoint,
    /// The `whsec_` signing secret: shown only now.
    pub secret: String,
}

#[derive(Serialize, ToSchema)]
pub struct EndpointList {
    pub items: Vec<Endpoint>,
}

#[derive(Serialize, ToSchema)]
pub struct Replayed {
    /// Messages queued again.
    pub queued: usize,
}

/// Registers a webhook endpoint.
#[utoipa::path(post, path = "/v1/admin/webhooks", tag = "admin", security(("admin" = [])),
    request_body = NewEndpoint,
    responses(
        (status = 201, body = CreatedEndpoint),
        (status = 400, body = Problem, description = "VALIDATION_FAILED: url or unknown event type"),
        (status = 422, body = Problem, description = "LIMIT_EXCEEDED: as many endpoints as allowed are registered"),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 503, body = Problem, description = "UNAVAILABLE"),
    ))]
#[post("/v1/admin/webhooks")]
pub async fn create(
    admin: Admin,
    state: web::Data<AppState>,
    body: web::Json<NewEndpoint>,
) -> ApiResult<HttpResponse> {
    admin.require(Duty::Administer)?;
    let body = body.into_inner();
    if !valid_url(&body.url) {
        return Err(ApiError::validation("url must be an http or https URL."));
    }
    if body.events.is_empty() || body.events.len() > EVENT_TYPES.len() {
        return Err(ApiError::validation(
            "events must list 1 or more event types.",
        ));
    }
    if let Some(bad) = body
        .events
        .iter()
        .find(|e| !EVENT_TYPES.contains(&e.as_str()))
    {
        return Err(ApiError::validation(format!(
            "unknown event type {bad:?}; known: {}",
            EVENT_TYPES.join(", ")
        )));
    }
    let (endpoint, secret) = state
        .deliveries
        .webhooks
        .register(body.url, body.events)
        .await
        .map_err(|e| match e {
            RegisterError::Full => ApiError::new(ErrorCode::LimitExceeded, e.to_string())
                .with_hint("Delete an endpoint you no longer use first."),
            RegisterError::Storage(_) => {
                tracing::warn!(error = %e, "webhook endpoint not stored");
                ApiError::unavailable()
            }
        })?;
    tracing::info!(endpoint = %endpoint.id, url = %endpoint.url, "webhook endpoint registered");
    operator_audit::record_done(
        &state,
        &admin,
        "webhook.add",
        None,
        None,
        Some(format!("{} {}", endpoint.id, endpoint.url)),
    )
    .await;
    Ok(HttpResponse::Created().json(CreatedEndpoint { endpoint, secret }))
}

/// The registered endpoints (without secrets).
#[utoipa::path(get, path = "/v1/admin/webhooks", tag = "admin", security(("admin" = [])),
    responses(
        (status = 200, body = EndpointList),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
    ))]
#[get("/v1/admin/webhooks")]
pub async fn list(admin: Admin, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    admin.require(Duty::Read)?;
    Ok(HttpResponse::Ok().json(EndpointList {
        items: state.deliveries.webhooks.list(),
    }))
}

/// Removes an endpoint; nothing more is sent to it.
#[utoipa::path(delete, path = "/v1/admin/webhooks/{id}", tag = "admin", security(("admin" = [])),
    params(("id" = String, Path, description = "A `whk_` id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 404, body = Problem, description = "NOT_FOUND"),
    ))]
#[delete("/v1/admin/webhooks/{id}")]
pub async fn remove(
    admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    admin.require(Duty::Administer)?;
    match state.deliveries.webhooks.remove(&path).await {
        Ok(true) => {
            operator_audit::record_done(
                &state,
                &admin,
                "webhook.remove",
                None,
                None,
                Some(path.clone()),
            )
            .await;
            Ok(HttpResponse::NoContent().finish())
        }
        Ok(false) => Err(ApiError::not_found("webhook endpoint")),
        Err(_) => Err(ApiError::unavailable()),
    }
}

/// Sends an endpoint's messages again (oldest first, up to 1000), each with its
/// original `webhook-id`.
#[utoipa::path(post, path = "/v1/admin/webhooks/{id}/replay", tag = "admin", security(("admin" = [])),
    params(("id" = String, Path, description = "A `whk_` id")),
    responses(
        (status = 202, body = Replayed),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 404, body = Problem, description = "NOT_FOUND"),
        (status = 503, body = Problem, description = "UNAVAILABLE"),
    ))]
#[post("/v1/admin/webhooks/{id}/replay")]
pub async fn replay(
    admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    admin.require(Duty::Administer)?;
    if !state.deliveries.webhooks.exists(&path) {
        return Err(ApiError::not_found("webhook endpoint"));
    }
    let queued = state
        .deliveries
        .replay(&path, 1000)
        .await
        .map_err(|_| ApiError::unavailable())?;
    tracing::info!(endpoint = %path, queued, "webhook messages replayed");
    operator_audit::record_done(
        &state,
        &admin,
        "webhook.replay",
        None,
        None,
        Some(format!("{} ({queued} messages)", path.as_str())),
    )
    .await;
    Ok(HttpResponse::Accepted().json(Replayed { queued }))
}

#[derive(OpenApi)]
#[openapi(
    paths(create, list, remove, replay),
    components(schemas(NewEndpoint, CreatedEndpoint, EndpointList, Endpoint, Replayed))
)]
pub struct Api;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(create)
        .service(list)
        .service(remove)
        .service(replay);
}
