//! Operators' KYC review: the queue (`GET /v1/admin/kyc?status=pending`), approval
//! (`POST /v1/admin/kyc/{account_id}/approve`: tier 1, higher limits at once) and
//! rejection with a reason the user sees (`.../reject` `{"reason"}`; the user may
//! then submit again). Each review pushes `kyc.updated` to the user's sockets (the
//! engine's notification) and removes the submission from the queue. A rejection
//! (or a request to resubmit) deletes the submission's document images.
//!
//! Decisions need the `reviewer` or `admin` role and go to the operator audit
//! trail; so does each view of a document image
//! (`GET /v1/admin/kyc/{account_id}/documents/{index}`, decrypted), and a request
//! to resubmit (`.../request-resubmission`).
//!
//! The queue shows the full name decrypted for the operator (who needs it to
//! compare with the document) and the ID number masked; the number itself is never
//! shown by the API.
//!
//! Approving an account with no pending submission: in dev mode it raises the
//! account to tier 1 directly (the load-test harness and local setups approve
//! accounts that never submitted documents); outside dev mode it is refused with
//! 409 `OPERATION_CLOSED`, because a production approval must review something.

use actix_web::{get, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use okpay_engine::domain::security::KycStatus;
use okpay_engine::ids::AccountId;
use okpay_engine::{Command, EngineError, Rejection};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::auth::Admin;
use crate::crypto::{Field, Owner};
use crate::error::{ApiError, ApiResult, Problem};
use crate::operator_audit;
use crate::operators::Duty;
use crate::routes::account::{kyc_summary, KycSummary};
use crate::routes::admin::accounts::checked_reason;
use crate::routes::extract::{account_id, time};
use crate::routes::kyc::{id_type_name, pending_key, KYC_DOCS_INDEX, KYC_PENDING_INDEX};
use crate::state::AppState;

/// The tier an approved identity gets.
const APPROVED_TIER: u8 = 1;

#[derive(Serialize, ToSchema)]
pub struct KycDecision {
    pub account_id: String,
    pub kyc: KycSummary,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectRequest {
    /// Shown to the user (1–500 characters), e.g. what to fix before resubmitting.
    #[schema(example = "The photo of the document is blurred.")]
    pub reason: String,
}

#[derive(Deserialize, IntoParams)]
pub struct QueueQuery {
    /// Only `pending` (the default) is supported.
    pub status: Option<String>,
    /// At most this many (default 100, at most 500), oldest first.
    pub limit: Option<usize>,
}

#[derive(Serialize, ToSchema)]
pub struct KycQueueItem {
    pub account_id: String,
    /// Decrypted for the reviewing operator.
    pub full_name: Option<String>,
    /// `national_id`, `passport` or `driver_license`.
    pub id_type: String,
    pub id_number_masked: String,
    /// How many document images were submitted.
    pub documents: usize,
    pub submitted_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct KycQueue {
    pub items: Vec<KycQueueItem>,
}

fn not_pending() -> ApiError {
    crate::error::rejection(Rejection::OperationClosed)
        .with_hint("The account has no submission waiting for review.")
}

/// Runs a review command; maps "no such account" to 404.
async fn review(state: &AppState, account: AccountId, cmd: Command) -> ApiResult<()> {
    state
        .engine
        .execute(account, cmd)
        .await
        .map_err(|e| match e {
            EngineError::Rejected(Rejection::AccountNotFound) => ApiError::not_found("account"),
            EngineError::Rejected(Rejection::OperationClosed) => not_pending(),
            other => other.into(),
        })?;
    // The result is told to the owner (`integrations::notices`).
    state.deliveries.kick(account);
    Ok(())
}

/// The decision as the account now shows it.
async fn decision(state: &AppState, account: AccountId) -> ApiResult<HttpResponse> {
    let kyc = state.engine.read(account, |s, _, _| kyc_summary(s)).await?;
    Ok(HttpResponse::Ok().json(KycDecision {
        account_id: account.to_string(),
        kyc,
    }))
}

/// What a review needs to know of the account before deciding.
struct ReviewState {
    status: KycStatus,
    /// The submission's key in the review queue.
    pending_key: Option<String>,
    /// The store keys of the submission's document images.
    documents: Vec<String>,
}

/// The account's KYC status and queue key; 404 for an account never opened.
async fn review_state(state: &AppState, account: AccountId) -> ApiResult<ReviewState> {
    state
        .engine
        .read(account, |s, _, _| {
            s.opened.then(|| ReviewState {
                status: s.kyc.status,
                pending_key: s.kyc.submission.as_deref().and_then(pending_key),
                documents: s
                    .kyc
                    .submission
                    .as_ref()
                    .map(|sub| sub.documents.clone())
                    .unwrap_or_default(),
            })
        })
        .await?
        .ok_or_else(|| ApiError::not_found("account"))
}

/// Removes the account's submission from the review queue.
async fn dequeue(state: &AppState, key: Option<String>) {
    if let Some(key) = key {
        if let Err(e) = state.store().delete_index(KYC_PENDING_INDEX, &key).await {
            // Harmless: the queue skips accounts that are no longer pending.
            tracing::warn!(error = %e, "could not remove a reviewed KYC submission from the queue");
        }
    }
}

/// Approves an account's identity (tier 1).
#[utoipa::path(post, path = "/v1/admin/kyc/{account_id}/approve", tag = "admin", security(("admin" = [])),
    params(("account_id" = String, Path, description = "An `acc_` id")),
    responses(
        (status = 200, body = KycDecision),
        (status = 401, body = Problem, description = "UNAUTHENTICATED: no or wrong admin token"),
        (status = 403, body = Problem, description = "FORBIDDEN: the role may not"),
        (status = 404, body = Problem, description = "NOT_FOUND"),
        (status = 409, body = Problem, description = "OPERATION_CLOSED: nothing pending (outside dev mode)"),
        (status = 503, body = Problem, description = "MAINTENANCE / OVERLOADED / UNAVAILABLE"),
    ))]
#[post("/v1/admin/kyc/{account_id}/approve")]
pub async fn approve(
    state: web::Data<AppState>,
    admin: Admin,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    admin.require(Duty::ReviewKyc)?;
    state.maintenance.check()?;
    let account = account_id(&path)?;
    let current = review_state(&state, account).await?;
    if current.status == KycStatus::Pending {
        review(
            &state,
            account,
            Command::ReviewKyc {
                approve: true,
                reason: None,
            },
        )
        .await?;
        dequeue(&state, current.pending_key).await;
    } else if state.settings.dev {
        review(
            &state,
            account,
            Command::SetKycTier {
                tier: APPROVED_TIER,
            },
        )
        .await?;
    } else {
        return Err(not_pending());
    }
    tracing::info!(account = %account, operator = %admin.name, "KYC approved");
    operator_audit::record_done(&state, &admin, "kyc.approve", Some(account), None, None).await;
    decision(&state, account).await
}

/// Rejects an account's pending submission with a reason the user sees.
#[utoipa::path(post, path = "/v1/admin/kyc/{account_id}/reject", tag = "admin", security(("admin" = [])),
    params(("account_id" = String, Path, description = "An `acc_` id")),
    request_body = RejectRequest,
    responses(
        (status = 200, body = KycDecision),
        (status = 400, body = Problem, description = "VALIDATION_FAILED: reason missing or too long"),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 404, body = Problem, description = "NOT_FOUND"),
        (status = 409, body = Problem, description = "OPERATION_CLOSED: nothing pending"),
        (status = 503, body = Problem, description = "MAINTENANCE / OVERLOADED / UNAVAILABLE"),
    ))]
#[post("/v1/admin/kyc/{account_id}/reject")]
pub async fn reject(
    state: web::Data<AppState>,
    admin: Admin,
    path: web::Path<String>,
    body: web::Json<RejectRequest>,
) -> ApiResult<HttpResponse> {
    turn_down(&state, &admin, &path, &body.reason, "kyc.reject").await
}

/// Asks the user to submit again (e.g. a photo is unreadable): the submission
/// is turned down with the reason the user sees, and the user may resubmit at
/// once. Recorded as `kyc.resubmission_requested`, apart from outright
/// rejections. Role `reviewer` or `admin`.
#[utoipa::path(post, path = "/v1/admin/kyc/{account_id}/request-resubmission", tag = "admin", security(("admin" = [])),
    params(("account_id" = String, Path, description = "An `acc_` id")),
    request_body = RejectRequest,
    responses(
        (status = 200, body = KycDecision),
        (status = 400, body = Problem, description = "VALIDATION_FAILED: reason missing or too long"),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 403, body = Problem, description = "FORBIDDEN: the role may not"),
        (status = 404, body = Problem, description = "NOT_FOUND"),
        (status = 409, body = Problem, description = "OPERATION_CLOSED: nothing pending"),
        (status = 503, body = Problem, description = "MAINTENANCE / OVERLOADED / UNAVAILABLE"),
    ))]
#[post("/v1/admin/kyc/{account_id}/request-resubmission")]
pub async fn request_resubmission(
    state: web::Data<AppState>,
    admin: Admin,
    path: web::Path<String>,
    body: web::Json<RejectRequest>,
) -> ApiResult<HttpResponse> {
    turn_down(
        &state,
        &admin,
        &path,
        &body.reason,
        "kyc.resubmission_requested",
    )
    .await
}

/// Rejects the pending submission with `reason`, recorded as `action`.
async fn turn_down(
    state: &AppState,
    admin: &Admin,
    path: &str,
    reason: &str,
    action: &str,
) -> ApiResult<HttpResponse> {
    admin.require(Duty::ReviewKyc)?;
    state.maintenance.check()?;
    let account = account_id(path)?;
    let reason = checked_reason(reason)?;
    let current = review_state(state, account).await?;
    review(
        state,
        account,
        Command::ReviewKyc {
            approve: false,
            reason: Some(reason.clone()),
        },
    )
    .await?;
    dequeue(state, current.pending_key).await;
    // A turned-down submission's images are personal data nobody needs any more
    // (the user sends new ones): deleted, so rejected documents don't pile up.
    for key in &current.documents {
        if let Err(e) = state.store().delete_index(KYC_DOCS_INDEX, key).await {
            tracing::warn!(error = %e, "could not delete a rejected KYC document");
        }
    }
    tracing::info!(account = %account, operator = %admin.name, action, "KYC turned down");
    operator_audit::record_done(state, admin, action, Some(account), Some(&reason), None).await;
    decision(state, account).await
}

/// One document image of the account's latest submission, decrypted (`image/jpeg`
/// or `image/png`; `index` 0 is the front). Every view is recorded in the audit
/// trail before the image is sent, and refused (503) if it cannot be. Role
/// `reviewer` or `admin`.
#[utoipa::path(get, path = "/v1/admin/kyc/{account_id}/documents/{index}", tag = "admin", security(("admin" = [])),
    params(
        ("account_id" = String, Path, description = "An `acc_` id"),
        ("index" = usize, Path, description = "0 for the front, 1 for the back"),
    ),
    responses(
        (status = 200, description = "The image", content_type = "image/jpeg"),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 403, body = Problem, description = "FORBIDDEN: the role may not"),
        (status = 404, body = Problem, description = "NOT_FOUND: no such account or document"),
        (status = 503, body = Problem, description = "UNAVAILABLE: the view could not be recorded"),
    ))]
#[get("/v1/admin/kyc/{account_id}/documents/{index}")]
pub async fn document(
    state: web::Data<AppState>,
    admin: Admin,
    path: web::Path<(String, usize)>,
) -> ApiResult<HttpResponse> {
    admin.require(Duty::ReviewKyc)?;
    let (account, index) = path.into_inner();
    let account = account_id(&account)?;
    let key = state
        .engine
        .read(account, move |a, _, _| {
            a.kyc
                .submission
                .as_ref()
                .and_then(|s| s.documents.get(index).cloned())
        })
        .await?
        .ok_or_else(|| ApiError::not_found("document"))?;
    let sealed = state
        .store()
        .get_index(KYC_DOCS_INDEX, &key)
        .await
        .map_err(|_| ApiError::unavailable())?
        .ok_or_else(|| ApiError::not_found("document"))?;
    let image = STANDARD
        .decode(sealed.as_bytes())
        .ok()
        .and_then(|raw| {
            state
                .pii
                .open(Field::KycDocument, Owner::Account(account), &raw)
                .ok()
        })
        .ok_or_else(|| {
            tracing::error!(account = %account, "a KYC document does not decrypt with the configured key");
            ApiError::unavailable()
        })?;
    let side = key.split('/').nth(1).unwrap_or("front").to_owned();
    operator_audit::record(
        &state,
        &admin,
        "kyc.document_viewed",
        Some(account),
        None,
        Some(side),
    )
    .await?;
    let content_type = if image.starts_with(&[0x89, b'P', b'N', b'G']) {
        "image/png"
    } else {
        "image/jpeg"
    };
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("Cache-Control", "no-store"))
        .body(image))
}

/// The review queue, oldest submission first.
#[utoipa::path(get, path = "/v1/admin/kyc", tag = "admin", security(("admin" = [])),
    params(QueueQuery),
    responses(
        (status = 200, body = KycQueue),
        (status = 400, body = Problem, description = "VALIDATION_FAILED: unsupported status"),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
    ))]
#[get("/v1/admin/kyc")]
pub async fn queue(
    state: web::Data<AppState>,
    _admin: Admin,
    query: web::Query<QueueQuery>,
) -> ApiResult<HttpResponse> {
    if query.status.as_deref().is_some_and(|s| s != "pending") {
        return Err(ApiError::validation(
            "Only status=pending is supported: the queue holds submissions waiting for review.",
        ));
    }
    let limit = query.limit.unwrap_or(100).clamp(1, 500);
    let rows = state
        .store()
        .scan_index(KYC_PENDING_INDEX, None, limit)
        .await
        .map_err(|_| ApiError::unavailable())?;
    let mut items = Vec::with_capacity(rows.len());
    for (_, value) in rows {
        let Ok(account) = value.parse::<AccountId>() else {
            continue;
        };
        let pending = state
            .engine
            .read(account, |s, _, _| {
                // A submission still being recorded, or one reviewed meanwhile.
                let (KycStatus::Pending, Some(sub)) = (s.kyc.status, &s.kyc.submission) else {
                    return None;
                };
                Some((
                    sub.full_name.clone(),
                    sub.id_type,
                    sub.id_number_masked.clone(),
                    sub.documents.len(),
                    s.kyc.submitted_at,
                ))
            })
            .await?;
        let Some((full_name, id_type, id_number_masked, documents, submitted_at)) = pending else {
            continue;
        };
        items.push(KycQueueItem {
            account_id: account.to_string(),
            full_name: state
                .pii
                .open_text(Field::KycFullName, Owner::Account(account), &full_name),
            id_type: id_type_name(id_type).into(),
            id_number_masked,
            documents,
            submitted_at: submitted_at.map(time),
        });
    }
    Ok(HttpResponse::Ok().json(KycQueue { items }))
}

#[derive(OpenApi)]
#[openapi(
    paths(approve, reject, request_resubmission, document, queue),
    components(schemas(KycDecision, RejectRequest, KycQueue, KycQueueItem)),
    tags((name = "admin", description = "Operators (admin token)"))
)]
pub struct Api;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(queue)
        .service(approve)
        .service(reject)
        .service(request_resubmission)
        .service(document);
}
