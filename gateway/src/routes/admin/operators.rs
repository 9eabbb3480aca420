//! Named operators over the API: who am I (`GET /v1/admin/me`), the list, and
//! creating one (role `admin`; the token is in the response once, as with
//! `okpay operator add`).

use actix_web::{get, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::auth::Admin;
use crate::error::{ApiError, ApiResult, Problem};
use crate::operator_audit;
use crate::operators::{self, AddError, Duty, OperatorRecord, Role};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct Me {
    pub name: String,
    pub role: Role,
}

/// The operator making the request (the console shows what its role allows).
#[utoipa::path(get, path = "/v1/admin/me", tag = "admin", security(("admin" = [])),
    responses(
        (status = 200, body = Me),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
    ))]
#[get("/v1/admin/me")]
pub async fn me(admin: Admin) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(Me {
        name: admin.name,
        role: admin.role,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct OperatorList {
    pub items: Vec<OperatorRecord>,
}

/// Every named operator, by name (never their tokens). Role `admin`.
#[utoipa::path(get, path = "/v1/admin/operators", tag = "admin", security(("admin" = [])),
    responses(
        (status = 200, body = OperatorList),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 403, body = Problem, description = "FORBIDDEN: not the admin role"),
    ))]
#[get("/v1/admin/operators")]
pub async fn list(admin: Admin, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    admin.require(Duty::Administer)?;
    let items = operators::list(state.store())
        .await
        .map_err(|_| ApiError::unavailable())?;
    Ok(HttpResponse::Ok().json(OperatorList { items }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOperator {
    /// 1–64 letters, digits, dots, dashes or underscores; unique.
    #[schema(example = "ana.lee")]
    pub name: String,
    pub role: Role,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedOperator {
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    /// Shown this once; only its hash is stored.
    pub token: String,
}

/// Creates a named operator and returns its token once. Role `admin`.
#[utoipa::path(post, path = "/v1/admin/operators", tag = "admin", security(("admin" = [])),
    request_body = NewOperator,
    responses(
        (status = 201, body = CreatedOperator),
        (status = 400, body = Problem, description = "VALIDATION_FAILED: the name"),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 403, body = Problem, description = "FORBIDDEN: not the admin role"),
        (status = 409, body = Problem, description = "ALREADY_EXISTS: the name is taken"),
        (status = 503, body = Problem, description = "UNAVAILABLE"),
    ))]
#[post("/v1/admin/operators")]
pub async fn create(
    admin: Admin,
    state: web::Data<AppState>,
    body: web::Json<NewOperator>,
) -> ApiResult<HttpResponse> {
    admin.require(Duty::Administer)?;
    let body = body.into_inner();
    let (record, token) = operators::add(
        state.store(),
        body.name.trim(),
        body.role,
        &admin.name,
        state.now(),
    )
    .await
    .map_err(|e| match e {
        AddError::BadName => ApiError::validation(e.to_string()),
        AddError::Taken => ApiError::new(
            crate::error::ErrorCode::AlreadyExists,
            "An operator with this name exists.",
        ),
        AddError::Store(_) => ApiError::unavailable(),
    })?;
    operator_audit::record_done(
        &state,
        &admin,
        "operator.add",
        None,
        None,
        Some(format!("{} ({})", record.name, record.role.name())),
    )
    .await;
    Ok(HttpResponse::Created().json(CreatedOperator {
        name: record.name,
        role: record.role,
        created_at: record.created_at,
        token,
    }))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(me).service(list).service(create);
}

/// The OpenAPI part of the operator routes.
#[derive(OpenApi)]
#[openapi(
    paths(me, list, create),
    components(schemas(Me, OperatorList, OperatorRecord, NewOperator, CreatedOperator, Role)),
    tags((name = "admin", description = "Operators' routes (operator or admin token)")),
)]
pub struct Api;
