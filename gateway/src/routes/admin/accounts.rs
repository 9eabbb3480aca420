//! Operators' account routes: find an account by email, phone or id; see its
//! whole case (profile, status history, balances, transactions, sessions,
//! alerts, KYC history); and the status actions, each with a reason and recorded
//! in the audit trail: freeze, unfreeze, lift a restriction, close (empty
//! accounts only), revoke every session, reset TOTP (a user who lost their app).

use actix_web::{get, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use okpay_engine::domain::state::AccountStatus;
use okpay_engine::ids::{AccountId, OpId, OpKind};
use okpay_engine::Command;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::Admin;
use crate::crypto::{Field, Owner};
use crate::error::{ApiError, ApiResult, Problem};
use crate::operator_audit::{self, AuditEntry, Filter};
use crate::operators::Duty;
use crate::routes::account::{load_account, AccountResponse};
use crate::routes::extract::{account_id, money, time};
use crate::routes::kyc::id_type_name;
use crate::routes::sessions::account_of_login;
use crate::state::AppState;

/// Longest reason an operator may give (it is stored in the account's journal and
/// shown to the user).
pub(crate) const MAX_REASON_CHARS: usize = 500;
/// Transactions shown in a case (the newest; the user's own list pages further).
const CASE_TRANSACTIONS: usize = 50;
/// Audit entries shown in a case's status and KYC histories.
const CASE_HISTORY: usize = 50;

/// Any account, as its owner sees it (status and its reason, KYC tier, limits,
/// balances).
#[utoipa::path(get, path = "/v1/admin/accounts/{id}", tag = "admin", security(("admin" = [])),
    params(("id" = String, Path, description = "An `acc_` id")),
    responses(
        (status = 200, body = AccountResponse),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 404, body = Problem, description = "NOT_FOUND"),
    ))]
#[get("/v1/admin/accounts/{id}")]
pub async fn get_account(
    _admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = account_id(&path)?;
    Ok(HttpResponse::Ok().json(load_account(&state, id).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FindQuery {
    /// An email, a phone number (E.164) or an `acc_` id.
    pub q: String,
}

#[derive(Serialize, ToSchema)]
pub struct FoundAccount {
    pub account_id: String,
    pub display_name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub status: String,
}

#[derive(Serialize, ToSchema)]
pub struct FoundAccounts {
    /// Zero or one account (logins and ids are unique).
    pub items: Vec<FoundAccount>,
}

/// Finds an account by email, phone or id.
#[utoipa::path(get, path = "/v1/admin/accounts", tag = "admin", security(("admin" = [])),
    params(FindQuery),
    responses(
        (status = 200, body = FoundAccounts),
        (status = 400, body = Problem, description = "VALIDATION_FAILED: empty query"),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
    ))]
#[get("/v1/admin/accounts")]
pub async fn find(
    _admin: Admin,
    state: web::Data<AppState>,
    query: web::Query<FindQuery>,
) -> ApiResult<HttpResponse> {
    let q = query.q.trim();
    if q.is_empty() || q.chars().count() > 320 {
        return Err(ApiError::validation(
            "q must be an email, a phone number or an acc_ id.",
        ));
    }
    let id = match q.parse::<AccountId>() {
        Ok(id) => Some(id),
        Err(_) => account_of_login(&state, q).await?,
    };
    let mut items = Vec::new();
    if let Some(id) = id {
        match load_account(&state, id).await {
            Ok(a) => items.push(FoundAccount {
                account_id: a.account_id,
                display_name: a.display_name,
                email: a.email,
                phone: a.phone,
                status: a.status,
            }),
            Err(e) if matches!(e.code, crate::error::ErrorCode::NotFound) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(HttpResponse::Ok().json(FoundAccounts { items }))
}

#[derive(Serialize, ToSchema)]
pub struct CaseSession {
    pub session_id: String,
    pub device_id: String,
    pub device_name: Option<String>,
    pub country: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct CaseAlert {
    pub id: String,
    pub rule: String,
    pub severity: String,
    pub message: String,
    pub action: String,
    pub at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct CaseTransaction {
    pub id: String,
    /// `transfer`, `deposit` or `withdrawal`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `in` or `out`.
    pub direction: String,
    pub amount: String,
    pub fee: String,
    pub currency: String,
    pub status: String,
    pub counterparty: Option<String>,
    pub memo: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct CaseKyc {
    /// `none`, `pending`, `approved` or `rejected`.
    pub status: String,
    pub tier: u8,
    pub reason: Option<String>,
    pub submitted_at: Option<DateTime<Utc>>,
    /// Decrypted for the operator.
    pub full_name: Option<String>,
    pub id_type: Option<String>,
    pub id_number_masked: Option<String>,
    /// How many document images the latest submission has
    /// (`GET /v1/admin/kyc/{account_id}/documents/{index}`).
    pub documents: usize,
}

#[derive(Serialize, ToSchema)]
pub struct Case {
    pub account: AccountResponse,
    pub opened_at: Option<DateTime<Utc>>,
    pub sessions: Vec<CaseSession>,
    /// Newest first.
    pub alerts: Vec<CaseAlert>,
    /// The newest transactions, newest first.
    pub transactions: Vec<CaseTransaction>,
    pub kyc: CaseKyc,
    /// Operators' status actions on the account, newest first (the current status
    /// and its reason are in `account`).
    pub status_history: Vec<AuditEntry>,
    /// Operators' KYC decisions and document views, newest first.
    pub kyc_history: Vec<AuditEntry>,
}

/// What a case reads inside the account's actor.
struct CaseParts {
    opened_at: Option<DateTime<Utc>>,
    sessions: Vec<CaseSession>,
    alerts: Vec<CaseAlert>,
    kyc: CaseKyc,
    full_name_sealed: Option<Vec<u8>>,
}

/// An account's whole case for an operator.
#[utoipa::path(get, path = "/v1/admin/accounts/{id}/case", tag = "admin", security(("admin" = [])),
    params(("id" = String, Path, description = "An `acc_` id")),
    responses(
        (status = 200, body = Case),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 404, body = Problem, description = "NOT_FOUND"),
        (status = 503, body = Problem, description = "UNAVAILABLE"),
    ))]
#[get("/v1/admin/accounts/{id}/case")]
pub async fn case(
    _admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = account_id(&path)?;
    let account = load_account(&state, id).await?;
    let parts = state
        .engine
        .read(id, move |a, _, now| {
            let sub = a.kyc.submission.as_ref();
            CaseParts {
                opened_at: a.opened_at.map(time),
                sessions: a
                    .sessions
                    .iter()
                    .rev()
                    .filter(|s| s.expires_at > now)
                    .map(|s| CaseSession {
                        session_id: OpId {
                            account: id,
                            n: s.n,
                        }
                        .display(OpKind::Session),
                        device_id: s.device_id.clone(),
                        device_name: s.device_name.clone(),
                        country: s.country.clone(),
                        created_at: time(s.created_at),
                        expires_at: time(s.expires_at),
                    })
                    .collect(),
                alerts: a
                    .alerts
                    .iter()
                    .rev()
                    .map(|r| CaseAlert {
                        id: OpId {
                            account: id,
                            n: r.n,
                        }
                        .display(OpKind::Alert),
                        rule: r.rule.name().into(),
                        severity: r.severity.name().into(),
                        message: r.message.clone(),
                        action: r.action.name().into(),
                        at: time(r.at),
                    })
                    .collect(),
                kyc: CaseKyc {
                    status: String::new(),
                    tier: a.kyc_tier,
                    reason: a.kyc.reason.clone(),
                    submitted_at: a.kyc.submitted_at.map(time),
                    full_name: None,
                    id_type: sub.map(|s| id_type_name(s.id_type).to_owned()),
                    id_number_masked: sub.map(|s| s.id_number_masked.clone()),
                    documents: sub.map_or(0, |s| s.documents.len()),
                },
                full_name_sealed: sub.map(|s| s.full_name.clone()),
            }
        })
        .await?;
    let mut kyc = parts.kyc;
    kyc.status = account.kyc.status.clone();
    kyc.full_name = parts.full_name_sealed.and_then(|sealed| {
        state
            .pii
            .open_text(Field::KycFullName, Owner::Account(id), &sealed)
    });
    let (rows, _) = state
        .engine
        .history(id, None, CASE_TRANSACTIONS, None)
        .await?;
    let transactions = rows
        .iter()
        .map(|r| CaseTransaction {
            id: r.public_id(),
            kind: match r.kind {
                OpKind::Deposit => "deposit",
                OpKind::Withdrawal => "withdrawal",
                OpKind::Transfer => "transfer",
                _ => "other",
            }
            .into(),
            direction: match r.direction {
                okpay_engine::domain::notification::Direction::In => "in",
                okpay_engine::domain::notification::Direction::Out => "out",
            }
            .into(),
            amount: money(r.amount, r.currency),
            fee: money(r.fee, r.currency),
            currency: r.currency.code().into(),
            status: r.status.name().into(),
            counterparty: r.counterparty.map(|a| a.to_string()),
            memo: r.memo.clone(),
            created_at: time(r.created_at),
        })
        .collect();
    let acc = id.to_string();
    let history = |prefix: &'static str| Filter {
        account: Some(&acc),
        operator: None,
        action_prefix: Some(prefix),
    };
    let (status_history, _) =
        operator_audit::list(&state, None, CASE_HISTORY, &history("account.")).await?;
    let (kyc_history, _) =
        operator_audit::list(&state, None, CASE_HISTORY, &history("kyc.")).await?;
    Ok(HttpResponse::Ok().json(Case {
        account,
        opened_at: parts.opened_at,
        sessions: parts.sessions,
        alerts: parts.alerts,
        transactions,
        kyc,
        status_history,
        kyc_history,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusChangeRequest {
    /// Why (1–500 characters); recorded, pushed in `account.status_changed` and
    /// shown to the user.
    #[schema(example = "Chargeback investigation #4411")]
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct StatusChanged {
    pub account_id: String,
    /// The account's status now: `frozen` after a freeze; after an unfreeze,
    /// `active` (or the unchanged status of an account that was not frozen).
    pub status: String,
    pub reason: String,
}

/// The reason of an operator action, trimmed and checked.
pub(crate) fn checked_reason(reason: &str) -> Result<String, ApiError> {
    let reason = reason.trim().to_owned();
    let n = reason.chars().count();
    if n == 0 || n > MAX_REASON_CHARS {
        return Err(ApiError::validation(format!(
            "reason must have 1 to {MAX_REASON_CHARS} characters."
        )));
    }
    Ok(reason)
}

fn changed(id: AccountId, status: AccountStatus, reason: String) -> HttpResponse {
    HttpResponse::Ok().json(StatusChanged {
        account_id: id.to_string(),
        status: status.name().into(),
        reason,
    })
}

/// Freezes an account: no outgoing money; login still works so the user sees why.
/// Pushes `account.status_changed` to the account's sockets and the admin stream.
/// Freezing a frozen account changes nothing. Role `risk` or `admin`.
#[utoipa::path(post, path = "/v1/admin/accounts/{id}/freeze", tag = "admin", security(("admin" = [])),
    params(("id" = String, Path, description = "An `acc_` id")),
    request_body = StatusChangeRequest,
    responses(
        (status = 200, body = StatusChanged),
        (status = 400, body = Problem, description = "VALIDATION_FAILED"),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 403, body = Problem, description = "ACCOUNT_CLOSED / FORBIDDEN: the role may not"),
        (status = 404, body = Problem, description = "NOT_FOUND"),
    ))]
#[post("/v1/admin/accounts/{id}/freeze")]
pub async fn freeze(
    admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<StatusChangeRequest>,
) -> ApiResult<HttpResponse> {
    admin.require(Duty::RiskAction)?;
    let id = account_id(&path)?;
    let reason = checked_reason(&body.reason)?;
    state.engine.freeze(id, reason.clone()).await?;
    tracing::info!(account = %id, operator = %admin.name, "account frozen by an operator");
    operator_audit::record_done(
        &state,
        &admin,
        "account.freeze",
        Some(id),
        Some(&reason),
        Some("frozen".into()),
    )
    .await;
    Ok(changed(id, AccountStatus::Frozen, reason))
}

/// Moves an account from `from` to `active`, if it is in `from`; returns the
/// status it has now.
async fn back_to_active(
    state: &AppState,
    admin: &Admin,
    id: AccountId,
    from: AccountStatus,
    action: &str,
    reason: &str,
) -> ApiResult<AccountStatus> {
    // Check-then-act is not atomic, but only operators change these statuses, and
    // the worst race (a concurrent freeze) leaves the account active, as asked.
    let status = state.engine.view(id).await?.status;
    if status != from {
        return Ok(status);
    }
    state
        .engine
        .set_status(id, AccountStatus::Active, reason.to_owned())
        .await?;
    tracing::info!(account = %id, operator = %admin.name, action, "account back to active");
    operator_audit::record_done(
        state,
        admin,
        action,
        Some(id),
        Some(reason),
        Some("active".into()),
    )
    .await;
    Ok(AccountStatus::Active)
}

/// Unfreezes a frozen account (back to `active`); pushes `account.status_changed`.
/// An account that is not frozen is left as it is (a restricted account stays
/// restricted: lifting a restriction is another decision) and its status returned.
/// Role `risk` or `admin`.
#[utoipa::path(post, path = "/v1/admin/accounts/{id}/unfreeze", tag = "admin", security(("admin" = [])),
    params(("id" = String, Path, description = "An `acc_` id")),
    request_body = StatusChangeRequest,
    responses(
        (status = 200, body = StatusChanged),
        (status = 400, body = Problem, description = "VALIDATION_FAILED"),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 403, body = Problem, description = "FORBIDDEN: the role may not"),
        (status = 404, body = Problem, description = "NOT_FOUND"),
    ))]
#[post("/v1/admin/accounts/{id}/unfreeze")]
pub async fn unfreeze(
    admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<StatusChangeRequest>,
) -> ApiResult<HttpResponse> {
    admin.require(Duty::RiskAction)?;
    let id = account_id(&path)?;
    let reason = checked_reason(&body.reason)?;
    let status = back_to_active(
        &state,
        &admin,
        id,
        AccountStatus::Frozen,
        "account.unfreeze",
        &reason,
    )
    .await?;
    Ok(changed(id, status, reason))
}

/// Lifts a restriction (e.g. one the impossible-travel rule set): a `restricted`
/// account goes back to `active`; any other status is left as it is and returned.
/// Role `risk` or `admin`.
#[utoipa::path(post, path = "/v1/admin/accounts/{id}/lift-restriction", tag = "admin", security(("admin" = [])),
    params(("id" = String, Path, description = "An `acc_` id")),
    request_body = StatusChangeRequest,
    responses(
        (status = 200, body = StatusChanged),
        (status = 400, body = Problem, description = "VALIDATION_FAILED"),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 403, body = Problem, description = "FORBIDDEN: the role may not"),
        (status = 404, body = Problem, description = "NOT_FOUND"),
    ))]
#[post("/v1/admin/accounts/{id}/lift-restriction")]
pub async fn lift_restriction(
    admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<StatusChangeRequest>,
) -> ApiResult<HttpResponse> {
    admin.require(Duty::RiskAction)?;
    let id = account_id(&path)?;
    let reason = checked_reason(&body.reason)?;
    let status = back_to_active(
        &state,
        &admin,
        id,
        AccountStatus::Restricted,
        "account.lift_restriction",
        &reason,
    )
    .await?;
    Ok(changed(id, status, reason))
}

/// Closes an empty account for good (nothing in, nothing out) and revokes its
/// sessions. An account holding any money, held or available, or with money in
/// flight, is refused with 409 `OPERATION_CLOSED`. Role `risk` or `admin`.
#[utoipa::path(post, path = "/v1/admin/accounts/{id}/close", tag = "admin", security(("admin" = [])),
    params(("id" = String, Path, description = "An `acc_` id")),
    request_body = StatusChangeRequest,
    responses(
        (status = 200, body = StatusChanged),
        (status = 400, body = Problem, description = "VALIDATION_FAILED"),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 403, body = Problem, description = "FORBIDDEN: the role may not"),
        (status = 404, body = Problem, description = "NOT_FOUND"),
        (status = 409, body = Problem, description = "OPERATION_CLOSED: the account is not empty"),
    ))]
#[post("/v1/admin/accounts/{id}/close")]
pub async fn close(
    admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<StatusChangeRequest>,
) -> ApiResult<HttpResponse> {
    admin.require(Duty::RiskAction)?;
    let id = account_id(&path)?;
    let reason = checked_reason(&body.reason)?;
    let (opened, empty, status) = state
        .engine
        .read(id, |a, _, _| {
            let empty = a
                .books
                .iter()
                .all(|b| b.available.is_zero() && b.held.is_zero() && b.in_flight_out.is_zero());
            (a.opened, empty, a.status)
        })
        .await?;
    if !opened {
        return Err(ApiError::not_found("account"));
    }
    if status == AccountStatus::Closed {
        return Ok(changed(id, status, reason));
    }
    if !empty {
        return Err(
            crate::error::rejection(okpay_engine::Rejection::OperationClosed)
                .with_hint("Only an empty account can be closed: the user must withdraw first."),
        );
    }
    state
        .engine
        .set_status(id, AccountStatus::Closed, reason.clone())
        .await?;
    let revoked = state
        .engine
        .execute(id, Command::RevokeSessions { except: None })
        .await;
    state.sessions.evict(id);
    revoked?;
    tracing::info!(account = %id, operator = %admin.name, "account closed by an operator");
    operator_audit::record_done(
        &state,
        &admin,
        "account.close",
        Some(id),
        Some(&reason),
        Some("closed".into()),
    )
    .await;
    Ok(changed(id, AccountStatus::Closed, reason))
}

#[derive(Serialize, ToSchema)]
pub struct SessionsRevoked {
    pub account_id: String,
    /// Sessions that were live before.
    pub revoked: usize,
}

/// Logs the account out everywhere (every session revoked). Role `risk` or `admin`.
#[utoipa::path(post, path = "/v1/admin/accounts/{id}/revoke-sessions", tag = "admin", security(("admin" = [])),
    params(("id" = String, Path, description = "An `acc_` id")),
    request_body = StatusChangeRequest,
    responses(
        (status = 200, body = SessionsRevoked),
        (status = 400, body = Problem, description = "VALIDATION_FAILED"),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 403, body = Problem, description = "FORBIDDEN: the role may not"),
        (status = 404, body = Problem, description = "NOT_FOUND"),
    ))]
#[post("/v1/admin/accounts/{id}/revoke-sessions")]
pub async fn revoke_sessions(
    admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<StatusChangeRequest>,
) -> ApiResult<HttpResponse> {
    admin.require(Duty::RiskAction)?;
    let id = account_id(&path)?;
    let reason = checked_reason(&body.reason)?;
    let (opened, live) = state
        .engine
        .read(id, |a, _, _| (a.opened, a.sessions.len()))
        .await?;
    if !opened {
        return Err(ApiError::not_found("account"));
    }
    let revoked = state
        .engine
        .execute(id, Command::RevokeSessions { except: None })
        .await;
    state.sessions.evict(id);
    revoked?;
    operator_audit::record_done(
        &state,
        &admin,
        "account.revoke_sessions",
        Some(id),
        Some(&reason),
        Some(format!("{live} sessions")),
    )
    .await;
    Ok(HttpResponse::Ok().json(SessionsRevoked {
        account_id: id.to_string(),
        revoked: live,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct TotpResetDone {
    pub account_id: String,
    /// Whether there was anything to clear (TOTP, an enrolment, recovery codes).
    pub cleared: bool,
}

/// Resets the account's TOTP: the authenticator app, any begun enrolment and the
/// recovery codes are cleared, so step-up falls back to SMS/email codes and the
/// user can enrol again (with a code sent to their phone or email). For a user who
/// lost their device, after checking who they are. The user is told on every
/// channel and socket (`security.changed`). Role `risk` or `admin`; audited with
/// the reason.
#[utoipa::path(post, path = "/v1/admin/accounts/{id}/totp/reset", tag = "admin", security(("admin" = [])),
    params(("id" = String, Path, description = "An `acc_` id")),
    request_body = StatusChangeRequest,
    responses(
        (status = 200, body = TotpResetDone),
        (status = 400, body = Problem, description = "VALIDATION_FAILED"),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 403, body = Problem, description = "FORBIDDEN: the role may not"),
        (status = 404, body = Problem, description = "NOT_FOUND"),
    ))]
#[post("/v1/admin/accounts/{id}/totp/reset")]
pub async fn reset_totp(
    admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<StatusChangeRequest>,
) -> ApiResult<HttpResponse> {
    admin.require(Duty::RiskAction)?;
    let id = account_id(&path)?;
    let reason = checked_reason(&body.reason)?;
    let (opened, cleared) = state
        .engine
        .read(id, |a, _, _| {
            let sec = &a.security;
            let any =
                sec.totp.is_some() || sec.totp_pending.is_some() || !sec.recovery_codes.is_empty();
            (a.opened, any)
        })
        .await?;
    if !opened {
        return Err(ApiError::not_found("account"));
    }
    state
        .engine
        .execute(
            id,
            Command::ResetTotp {
                reason: reason.clone(),
            },
        )
        .await?;
    tracing::info!(account = %id, operator = %admin.name, cleared, "TOTP reset by an operator");
    operator_audit::record_done(
        &state,
        &admin,
        "account.reset_totp",
        Some(id),
        Some(&reason),
        Some(
            if cleared {
                "totp cleared"
            } else {
                "nothing to clear"
            }
            .into(),
        ),
    )
    .await;
    if cleared {
        crate::routes::totp::notify_security_change(
            &state,
            id,
            okpay_engine::domain::security::SecurityChange::TotpReset,
        )
        .await;
    }
    Ok(HttpResponse::Ok().json(TotpResetDone {
        account_id: id.to_string(),
        cleared,
    }))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(reset_totp)
        .service(find)
        .service(get_account)
        .service(case)
        .service(freeze)
        .service(unfreeze)
        .service(lift_restriction)
        .service(close)
        .service(revoke_sessions);
}

/// The OpenAPI part of the account routes.
#[derive(OpenApi)]
#[openapi(
    paths(find, get_account, case, freeze, unfreeze, lift_restriction, close, revoke_sessions, reset_totp),
    components(schemas(TotpResetDone, StatusChangeRequest, StatusChanged, FoundAccount, FoundAccounts, Case, CaseSession, CaseAlert, CaseTransaction, CaseKyc, AuditEntry, SessionsRevoked)),
    tags((name = "admin", description = "Operators' routes (operator or admin token)")),
)]
pub struct Api;
