//! Operators settle or fail a payout by hand when the processor cannot report it
//! (`POST /v1/admin/withdrawals/{id}/settle|fail` with a reason). Failing releases
//! the held funds. Takes the `risk` duty. Each action is audited: the engine
//! records the settlement or failure on the account, and the operator, the action
//! and the reason go to the operators' audit trail (`operator_audit`).

use actix_web::{post, web, HttpResponse};
use okpay_engine::ids::{OpId, OpKind};
use okpay_engine::{Outcome, Rejection};
use serde::Deserialize;
use utoipa::{OpenApi, ToSchema};

use crate::auth::Admin;
use crate::error::{rejection, ApiError, ApiResult, Problem};
use crate::integrations::payouts;
use crate::operator_audit;
use crate::operators::Duty;
use crate::routes::withdrawals::WithdrawalResponse;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ManualPayout {
    /// Why (1–500 characters); for `fail`, shown to the user.
    pub reason: String,
}

async fn act(
    state: &AppState,
    admin: &Admin,
    path: &str,
    body: ManualPayout,
    completed: bool,
) -> ApiResult<HttpResponse> {
    admin.require(Duty::RiskAction)?;
    // Counted before trimming, as the document's maxLength counts.
    let too_long = body.reason.chars().count() > 500;
    let reason = body.reason.trim().to_owned();
    if reason.is_empty() || too_long {
        return Err(ApiError::validation(
            "reason must have 1 to 500 characters.",
        ));
    }
    let id =
        OpId::parse(path, OpKind::Withdrawal).map_err(|_| ApiError::not_found("withdrawal"))?;
    let action = if completed { "settle" } else { "fail" };
    let changed = payouts::report(
        &state.engine,
        &state.deliveries,
        id,
        completed,
        Some(reason.clone()),
    )
    .await?;
    if !changed {
        return match state.engine.operation(id).await? {
            Some(Outcome::Withdrawal(_)) => Err(rejection(Rejection::OperationClosed)
                .with_hint("The withdrawal is already completed or failed.")),
            _ => Err(ApiError::not_found("withdrawal")),
        };
    }
    operator_audit::record_done(
        state,
        admin,
        &format!("withdrawal.{action}"),
        Some(id.account),
        Some(&reason),
        Some(path.to_owned()),
    )
    .await;
    tracing::info!(withdrawal = %path, action, reason = %reason, "operator {action}d a payout by hand");
    match state.engine.operation(id).await? {
        Some(Outcome::Withdrawal(view)) => {
            Ok(HttpResponse::Ok().json(WithdrawalResponse::of(&view, false)))
        }
        _ => Err(ApiError::not_found("withdrawal")),
    }
}

/// Marks a processing withdrawal as paid out.
#[utoipa::path(post, path = "/v1/admin/withdrawals/{id}/settle", tag = "admin", security(("admin" = [])),
    params(("id" = String, Path, description = "A `wd_` id")),
    request_body = ManualPayout,
    responses(
        (status = 200, body = WithdrawalResponse),
        (status = 400, body = Problem, description = "VALIDATION_FAILED: reason"),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 403, body = Problem, description = "FORBIDDEN: the operator's role lacks the risk duty"),
        (status = 404, body = Problem, description = "NOT_FOUND"),
        (status = 409, body = Problem, description = "OPERATION_CLOSED: already completed or failed"),
    ))]
#[post("/v1/admin/withdrawals/{id}/settle")]
pub async fn settle(
    admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<ManualPayout>,
) -> ApiResult<HttpResponse> {
    act(&state, &admin, &path, body.into_inner(), true).await
}

/// Fails a processing withdrawal; the held funds return to the user.
#[utoipa::path(post, path = "/v1/admin/withdrawals/{id}/fail", tag = "admin", security(("admin" = [])),
    params(("id" = String, Path, description = "A `wd_` id")),
    request_body = ManualPayout,
    responses(
        (status = 200, body = WithdrawalResponse),
        (status = 400, body = Problem, description = "VALIDATION_FAILED: reason"),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 403, body = Problem, description = "FORBIDDEN: the operator's role lacks the risk duty"),
        (status = 404, body = Problem, description = "NOT_FOUND"),
        (status = 409, body = Problem, description = "OPERATION_CLOSED: already completed or failed"),
    ))]
#[post("/v1/admin/withdrawals/{id}/fail")]
pub async fn fail(
    admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<ManualPayout>,
) -> ApiResult<HttpResponse> {
    act(&state, &admin, &path, body.into_inner(), false).await
}

#[derive(OpenApi)]
#[openapi(paths(settle, fail), components(schemas(ManualPayout)))]
pub struct Api;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(settle).service(fail);
}
