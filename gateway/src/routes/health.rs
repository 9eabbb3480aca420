//! Liveness, system status, Prometheus metrics and the OpenAPI document.

use actix_web::{get, web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;
use crate::stream::SystemStatus;

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200, body = Health)))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// Whether the system is in maintenance.
#[utoipa::path(get, path = "/v1/system/status", tag = "system", responses((status = 200, body = SystemStatus)))]
#[get("/v1/system/status")]
pub async fn system_status(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.maintenance.status())
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "system", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
#[get("/metrics")]
pub async fn metrics_text(state: web::Data<AppState>) -> HttpResponse {
    let engine = &state.engine;
    metrics::gauge!("okpay_active_actors").set(engine.active_actors() as f64);
    metrics::gauge!("okpay_journal_queued_records").set(engine.journal_queued() as f64);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}

/// This API's OpenAPI 3 document.
#[get("/openapi.json")]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(crate::openapi::document())
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(healthz)
        .service(system_status)
        .service(metrics_text)
        .service(openapi);
}
