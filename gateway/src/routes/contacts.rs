//! Contacts: the caller's saved recipients (`GET`, `POST /v1/contacts`,
//! `DELETE /v1/contacts/{id}`). A contact is an alias for an account, resolved
//! when it is saved (by account id, email or phone), so paying
//! `contact:<ct_ id>` later does not depend on the recipient keeping their login.
//! Contacts are account state in the engine (at most 500; one per account).

use actix_web::{delete, get, post, web, HttpResponse};
use okpay_engine::domain::state::Contact;
use okpay_engine::ids::{AccountId, OpId, OpKind};
use okpay_engine::{Command, EngineError, Outcome, Rejection};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorCode, Problem};
use crate::routes::recipient;
use crate::state::AppState;

/// The longest alias, in characters.
const ALIAS_MAX: usize = 64;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactRequest {
    /// 1–64 characters.
    #[schema(example = "Mum")]
    pub alias: String,
    /// An account id (`acc_…`), an email or an E.164 phone.
    #[schema(example = "wang.fang@example.com")]
    pub login_or_account: String,
}

#[derive(Serialize, ToSchema)]
pub struct ContactResponse {
    /// A `ct_` id; pay it with `"to": "contact:<id>"`.
    pub id: String,
    pub alias: String,
    pub account_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct ContactList {
    pub items: Vec<ContactResponse>,
}

fn contact_id(owner: AccountId, n: u64) -> String {
    OpId { account: owner, n }.display(OpKind::Contact)
}

fn response(owner: AccountId, c: &Contact) -> ContactResponse {
    ContactResponse {
        id: contact_id(owner, c.n),
        alias: c.alias.clone(),
        account_id: c.account.to_string(),
    }
}

/// The caller's contacts, oldest first.
#[utoipa::path(get, path = "/v1/contacts", tag = "contacts", security(("bearer" = [])),
    responses((status = 200, body = ContactList), (status = 401, body = Problem, description = "UNAUTHENTICATED")))]
#[get("/v1/contacts")]
pub async fn list(state: web::Data<AppState>, auth: Auth) -> ApiResult<HttpResponse> {
    let contacts = state
        .engine
        .read(auth.account, |account, _, _| account.contacts.clone())
        .await?;
    let items = contacts.iter().map(|c| response(auth.account, c)).collect();
    Ok(HttpResponse::Ok().json(ContactList { items }))
}

/// Saves a contact.
#[utoipa::path(post, path = "/v1/contacts", tag = "contacts", security(("bearer" = [])),
    request_body = ContactRequest,
    responses(
        (status = 201, body = ContactResponse),
        (status = 400, body = Problem, description = "VALIDATION_FAILED"),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 404, body = Problem, description = "RECIPIENT_NOT_FOUND"),
        (status = 409, body = Problem, description = "ALREADY_EXISTS: that account is already a contact"),
        (status = 422, body = Problem, description = "SAME_ACCOUNT / LIMIT_EXCEEDED (500 contacts)"),
        (status = 503, body = Problem, description = "MAINTENANCE / OVERLOADED / UNAVAILABLE"),
    ))]
#[post("/v1/contacts")]
pub async fn add(
    state: web::Data<AppState>,
    auth: Auth,
    body: web::Json<ContactRequest>,
) -> ApiResult<HttpResponse> {
    state.maintenance.check()?;
    let body = body.into_inner();
    let alias = body.alias.trim().to_owned();
    if alias.is_empty() || alias.chars().count() > ALIAS_MAX || alias.chars().any(char::is_control)
    {
        return Err(ApiError::validation(format!(
            "alias must have 1 to {ALIAS_MAX} printable characters."
        )));
    }
    let account = recipient::login_or_account(&state, &body.login_or_account).await?;
    let outcome = state
        .engine
        .execute(
            auth.account,
            Command::AddContact {
                alias: alias.clone(),
                account,
            },
        )
        .await
        .map_err(|e| match e {
            EngineError::Rejected(Rejection::AlreadyExists) => ApiError::new(
                ErrorCode::AlreadyExists,
                "That account is already one of your contacts.",
            ),
            other => other.into(),
        })?;
    let Outcome::Created(id) = outcome else {
        return Err(ApiError::unavailable());
    };
    Ok(HttpResponse::Created().json(ContactResponse {
        id: id.display(OpKind::Contact),
        alias,
        account_id: account.to_string(),
    }))
}

/// Forgets a contact.
#[utoipa::path(delete, path = "/v1/contacts/{id}", tag = "contacts", security(("bearer" = [])),
    params(("id" = String, Path, description = "A `ct_` id")),
    responses(
        (status = 204),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 404, body = Problem, description = "NOT_FOUND"),
        (status = 503, body = Problem, description = "MAINTENANCE / OVERLOADED / UNAVAILABLE"),
    ))]
#[delete("/v1/contacts/{id}")]
pub async fn remove(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    state.maintenance.check()?;
    let id = OpId::parse(&path, OpKind::Contact)
        .ok()
        .filter(|id| id.account == auth.account)
        .ok_or_else(|| ApiError::not_found("contact"))?;
    state
        .engine
        .execute(auth.account, Command::RemoveContact { n: id.n })
        .await
        .map_err(|e| match e {
            EngineError::Rejected(Rejection::UnknownOperation) => ApiError::not_found("contact"),
            other => other.into(),
        })?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(OpenApi)]
#[openapi(
    paths(list, add, remove),
    components(schemas(ContactRequest, ContactResponse, ContactList)),
    tags((name = "contacts", description = "Saved recipients"))
)]
pub struct Api;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list).service(add).service(remove);
}
