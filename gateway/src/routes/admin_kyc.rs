//! Operators' KYC review. For now only the approval
//! (`POST /v1/admin/kyc/{account_id}/approve`), which raises the account to tier 1
//! (higher limits, withdrawals allowed). The review queue, rejection with a
//! reason and the user's `kyc.updated` event come with the KYC submission flow;
//! they extend this module.

use actix_web::{post, web, HttpResponse};
use okpay_engine::Command;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::auth::Admin;
use crate::error::{ApiError, ApiResult, Problem};
use crate::routes::account::KycSummary;
use crate::routes::extract::account_id;
use crate::state::AppState;

/// The tier an approved identity gets.
const APPROVED_TIER: u8 = 1;

#[derive(Serialize, ToSchema)]
pub struct KycDecision {
    pub account_id: String,
    pub kyc: KycSummary,
}

/// Approves an account's identity (tier 1).
#[utoipa::path(post, path = "/v1/admin/kyc/{account_id}/approve", tag = "admin", security(("admin" = [])),
    params(("account_id" = String, Path, description = "An `acc_` id")),
    responses(
        (status = 200, body = KycDecision),
        (status = 401, body = Problem, description = "UNAUTHENTICATED: no or wrong admin token"),
        (status = 404, body = Problem, description = "NOT_FOUND"),
        (status = 503, body = Problem, description = "MAINTENANCE / OVERLOADED / UNAVAILABLE"),
    ))]
#[post("/v1/admin/kyc/{account_id}/approve")]
pub async fn approve(
    state: web::Data<AppState>,
    _admin: Admin,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    state.maintenance.check()?;
    let account = account_id(&path)?;
    state
        .engine
        .execute(
            account,
            Command::SetKycTier {
                tier: APPROVED_TIER,
            },
        )
        .await
        .map_err(|e| match e {
            okpay_engine::EngineError::Rejected(_) => ApiError::not_found("account"),
            other => other.into(),
        })?;
    tracing::info!(account = %account, "KYC approved");
    Ok(HttpResponse::Ok().json(KycDecision {
        account_id: account.to_string(),
        kyc: KycSummary {
            status: "approved".into(),
            tier: APPROVED_TIER,
            reason: None,
        },
    }))
}

#[derive(OpenApi)]
#[openapi(
    paths(approve),
    components(schemas(KycDecision)),
    tags((name = "admin", description = "Operators (admin token)"))
)]
pub struct Api;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(approve);
}
