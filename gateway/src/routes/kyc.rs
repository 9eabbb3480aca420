//! Identity verification by the user: `POST /v1/kyc` submits name, ID and
//! document images; `GET /v1/kyc` shows where the review is. Operators review in
//! `admin/kyc.rs`.
//!
//! Personal data is encrypted before it leaves the gateway (AES-256-GCM with the
//! configured key, `crypto.rs`): the full name and the ID number go into the
//! engine's submission as ciphertext, next to the masked number (`****` + last 4)
//! that is all anyone sees afterwards. Document images are checked (JPEG or PNG by
//! their first bytes, at most 5 MiB each after base64 decoding), encrypted, and
//! stored in the store index `kyc_docs` under `<account>/<front|back>/<ms hex>`
//! (base64 ciphertext); the submission holds those keys. The submission is queued
//! for operators in the index `kyc_pending` under `<ms hex>/<account>` (oldest
//! first), written before the engine records it so no accepted submission can be
//! missing from the queue; entries whose account is not pending are skipped by the
//! queue and removed on review.
//!
//! This route alone accepts bodies up to 14 MiB (two 5 MiB images in base64);
//! every other route keeps the server's limit. Before a byte of the body is read,
//! the account's KYC state is checked (pending or approved: 409 at once) and an
//! upload slot taken: at most `--kyc-uploads` bodies are read at once, beyond
//! that 503 `OVERLOADED` with `Retry-After`, so big bodies can't pile up in memory.

use actix_web::{web, HttpResponse};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use okpay_engine::domain::security::{IdType, KycStatus, KycSubmission};
use okpay_engine::{Command, EngineError, Rejection};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::auth::Auth;
use crate::crypto::{Field, Owner};
use crate::error::{ApiError, ApiResult, ErrorCode, Problem};
use crate::routes::extract;
use crate::state::AppState;

/// The store index of encrypted document images.
pub const KYC_DOCS_INDEX: &str = "kyc_docs";
/// The store index of submissions waiting for review.
pub const KYC_PENDING_INDEX: &str = "kyc_pending";
/// The largest document image, decoded.
pub const DOCUMENT_MAX_BYTES: usize = 5 * 1024 * 1024;
/// The body limit of `POST /v1/kyc`: two images in base64 plus the fields.
pub const KYC_BODY_MAX_BYTES: usize = 14 * 1024 * 1024;

/// The kinds of identity document, as the API spells them.
#[derive(Deserialize, Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum IdTypeBody {
    NationalId,
    Passport,
    DriverLicense,
}

impl From<IdTypeBody> for IdType {
    fn from(t: IdTypeBody) -> Self {
        match t {
            IdTypeBody::NationalId => IdType::NationalId,
            IdTypeBody::Passport => IdType::Passport,
            IdTypeBody::DriverLicense => IdType::DriverLicense,
        }
    }
}

/// The API name of an ID type.
pub fn id_type_name(t: IdType) -> &'static str {
    match t {
        IdType::NationalId => "national_id",
        IdType::Passport => "passport",
        IdType::DriverLicense => "driver_license",
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KycRequest {
    #[schema(example = "Li Wei")]
    pub full_name: String,
    pub id_type: IdTypeBody,
    #[schema(example = "110101199003077777")]
    pub id_number: String,
    /// The document's front: a JPEG or PNG, base64, at most 5 MiB decoded.
    pub document_front: String,
    /// The back, when the document has one.
    pub document_back: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct KycSubmitted {
    /// `pending`: waiting for an operator.
    pub status: String,
}

#[derive(Serialize, ToSchema)]
pub struct KycStatusResponse {
    /// `none`, `pending`, `approved` or `rejected`.
    pub status: String,
    pub tier: u8,
    /// Why the submission was rejected (shown to the user).
    pub reason: Option<String>,
    /// The ID number as `****` + its last 4 characters.
    pub id_number_masked: Option<String>,
}

/// `****` and the last 4 characters.
pub fn mask(id_number: &str) -> String {
    let chars: Vec<char> = id_number.chars().collect();
    let tail: String = chars[chars.len().saturating_sub(4)..].iter().collect();
    format!("****{tail}")
}

/// Decodes and checks one document image: base64, at most 5 MiB, JPEG or PNG.
pub fn document(field: &str, text: &str) -> Result<Vec<u8>, ApiError> {
    // Refuse before decoding what could never fit (4 base64 chars per 3 bytes).
    if text.len() > DOCUMENT_MAX_BYTES.div_ceil(3) * 4 + 4 {
        return Err(ApiError::validation(format!(
            "{field} is larger than 5 MiB."
        )));
    }
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|_| ApiError::validation(format!("{field} must be base64.")))?;
    if bytes.len() > DOCUMENT_MAX_BYTES {
        return Err(ApiError::validation(format!(
            "{field} is larger than 5 MiB."
        )));
    }
    let jpeg = bytes.starts_with(&[0xFF, 0xD8, 0xFF]);
    let png = bytes.starts_with(&[0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]);
    if !jpeg && !png {
        return Err(ApiError::validation(format!(
            "{field} must be a JPEG or PNG image."
        )));
    }
    Ok(bytes)
}

fn full_name(text: &str) -> Result<String, ApiError> {
    let n = text.trim();
    if n.is_empty() || n.chars().count() > 128 || n.chars().any(char::is_control) {
        return Err(ApiError::validation(
            "full_name must have 1 to 128 printable characters.",
        ));
    }
    Ok(n.to_owned())
}

fn id_number(text: &str) -> Result<String, ApiError> {
    let n: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let ok =
        (5..=32).contains(&n.len()) && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !ok {
        return Err(ApiError::validation(
            "id_number must have 5 to 32 letters, digits or dashes.",
        ));
    }
    Ok(n.to_ascii_uppercase())
}

/// Submits identity data for review.
#[utoipa::path(post, path = "/v1/kyc", tag = "kyc", security(("bearer" = [])),
    request_body = KycRequest,
    responses(
        (status = 202, body = KycSubmitted),
        (status = 400, body = Problem, description = "VALIDATION_FAILED: a field, or a document that is not a JPEG/PNG or is over 5 MiB"),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 409, body = Problem, description = "ALREADY_EXISTS: a submission is pending or approved"),
        (status = 413, body = Problem, description = "PAYLOAD_TOO_LARGE: body over 14 MiB"),
        (status = 503, body = Problem, description = "MAINTENANCE / OVERLOADED / UNAVAILABLE"),
    ))]
pub async fn submit(
    state: web::Data<AppState>,
    auth: Auth,
    req: actix_web::HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    state.maintenance.check()?;
    let already = || {
        ApiError::new(
            ErrorCode::AlreadyExists,
            "Your identity is already verified or under review.",
        )
        .with_hint("Wait for the review; GET /v1/kyc shows where it is.")
    };
    // Cheap checks first: nothing of a 14 MiB body is read for an account that
    // can't submit, nor beyond the upload slots.
    let status = state
        .engine
        .read(auth.account, |s, _, _| s.kyc.status)
        .await?;
    if matches!(status, KycStatus::Pending | KycStatus::Approved) {
        return Err(already());
    }
    let Ok(_slot) = state.kyc_uploads.clone().try_acquire_owned() else {
        metrics::counter!("okpay_kyc_uploads_overloaded_total").increment(1);
        return Err(ApiError::overloaded());
    };
    let body = read_body(&req, payload).await?;
    let name = full_name(&body.full_name)?;
    let number = id_number(&body.id_number)?;
    let front = document("document_front", &body.document_front)?;
    let back = body
        .document_back
        .as_deref()
        .map(|b| document("document_back", b))
        .transpose()?;
    let ms = state.engine.clock().now().millis().max(0);
    let store = state.store().clone();
    let mut keys = Vec::new();
    for (side, image) in std::iter::once(("front", front)).chain(back.map(|b| ("back", b))) {
        let key = format!("{}/{side}/{ms:016x}", auth.account);
        let sealed = STANDARD.encode(state.pii.seal(
            Field::KycDocument,
            Owner::Account(auth.account),
            &image,
        ));
        // Encrypting a 5 MiB image is a few milliseconds; the store write is I/O.
        if let Err(e) = store.claim_index(KYC_DOCS_INDEX, &key, &sealed).await {
            tracing::warn!(error = %e, "could not store a KYC document");
            cleanup(&state, &keys, None).await;
            return Err(ApiError::unavailable());
        }
        keys.push(key);
    }
    let pending_key = format!("{ms:016x}/{}", auth.account);
    if store
        .claim_index(KYC_PENDING_INDEX, &pending_key, &auth.account.to_string())
        .await
        .is_err()
    {
        cleanup(&state, &keys, None).await;
        return Err(ApiError::unavailable());
    }
    let submission = KycSubmission {
        full_name: state.pii.seal(
            Field::KycFullName,
            Owner::Account(auth.account),
            name.as_bytes(),
        ),
        id_type: body.id_type.into(),
        id_number: state.pii.seal(
            Field::KycIdNumber,
            Owner::Account(auth.account),
            number.as_bytes(),
        ),
        id_number_masked: mask(&number),
        documents: keys.clone(),
    };
    if let Err(e) = state
        .engine
        .execute(auth.account, Command::SubmitKyc(submission))
        .await
    {
        cleanup(&state, &keys, Some(&pending_key)).await;
        return Err(match e {
            EngineError::Rejected(Rejection::AlreadyExists) => already(),
            other => other.into(),
        });
    }
    tracing::info!(account = %auth.account, "KYC submitted");
    Ok(HttpResponse::Accepted().json(KycSubmitted {
        status: "pending".into(),
    }))
}

/// The JSON body, read up to [`KYC_BODY_MAX_BYTES`] (413 beyond) and parsed.
async fn read_body(
    req: &actix_web::HttpRequest,
    mut payload: web::Payload,
) -> ApiResult<KycRequest> {
    use futures::StreamExt as _;
    let json = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return Err(ApiError::validation("Send the body as application/json."));
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::validation(format!("Unreadable body: {e}")))?;
        if body.len() + chunk.len() > KYC_BODY_MAX_BYTES {
            return Err(ApiError::payload_too_large(KYC_BODY_MAX_BYTES));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::validation(format!("Malformed JSON body: {e}")))
}

/// Removes what a failed submission stored.
async fn cleanup(state: &AppState, docs: &[String], pending: Option<&str>) {
    for key in docs {
        let _ = state.store().delete_index(KYC_DOCS_INDEX, key).await;
    }
    if let Some(key) = pending {
        let _ = state.store().delete_index(KYC_PENDING_INDEX, key).await;
    }
}

/// The `kyc_pending` key of a submission, derived from its first document's key
/// (`<account>/<side>/<ms hex>` → `<ms hex>/<account>`).
pub fn pending_key(submission: &KycSubmission) -> Option<String> {
    let first = submission.documents.first()?;
    let mut parts = first.split('/');
    let account = parts.next()?;
    let ms = parts.nth(1)?;
    Some(format!("{ms}/{account}"))
}

/// Where the caller's identity verification is.
#[utoipa::path(get, path = "/v1/kyc", tag = "kyc", security(("bearer" = [])),
    responses((status = 200, body = KycStatusResponse), (status = 401, body = Problem, description = "UNAUTHENTICATED")))]
pub async fn status(state: web::Data<AppState>, auth: Auth) -> ApiResult<HttpResponse> {
    let (summary, id_number_masked) = state
        .engine
        .read(auth.account, |s, _, _| {
            (
                crate::routes::account::kyc_summary(s),
                s.kyc
                    .submission
                    .as_ref()
                    .map(|sub| sub.id_number_masked.clone()),
            )
        })
        .await?;
    Ok(HttpResponse::Ok().json(KycStatusResponse {
        status: summary.status,
        tier: summary.tier,
        reason: summary.reason,
        id_number_masked,
    }))
}

#[derive(OpenApi)]
#[openapi(
    paths(submit, status),
    components(schemas(KycRequest, KycSubmitted, KycStatusResponse, IdTypeBody)),
    tags((name = "kyc", description = "Identity verification"))
)]
pub struct Api;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        // Named, as `#[get]` resources are, so metrics label it without work.
        web::resource("/v1/kyc")
            .name("kyc")
            .app_data(extract::json_config(KYC_BODY_MAX_BYTES))
            .route(web::post().to(submit))
            .route(web::get().to(status)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_checked_by_their_bytes_and_size() {
        let jpeg = STANDARD.encode([0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3]);
        assert!(document("f", &jpeg).is_ok());
        let png = STANDARD.encode([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0]);
        assert!(document("f", &png).is_ok());
        assert!(document("f", &STANDARD.encode(b"GIF89a....")).is_err());
        assert!(document("f", "not base64!").is_err());
        let mut big = vec![0xFF, 0xD8, 0xFF];
        big.resize(DOCUMENT_MAX_BYTES + 1, 0);
        assert!(document("f", &STANDARD.encode(&big)).is_err());
        big.truncate(DOCUMENT_MAX_BYTES);
        assert!(document("f", &STANDARD.encode(&big)).is_ok());
    }

    #[test]
    fn numbers_are_masked_to_the_last_four() {
        assert_eq!(mask("110101199003077777"), "****7777");
        assert_eq!(mask("AB12"), "****AB12");
        assert_eq!(id_number(" e123 456 7 ").unwrap(), "E1234567");
        assert!(id_number("12").is_err());
        assert!(id_number("12;--drop").is_err());
    }
}
