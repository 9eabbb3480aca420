//! Signed callbacks from the payment processors.
//!
//! `POST /v1/callbacks/processor` reports a pending card charge
//! (`{"type": "charge.succeeded" | "charge.failed", "charge_id", "reference"}`),
//! driving the deposit's stored intent (`integrations::charges`).
//!
//! `POST /v1/callbacks/payouts` reports a payout's outcome
//! (`{"type": "payout.completed" | "payout.failed", "payout_id": "wd_…",
//! "reason"?}`). Every callback carries Standard Webhooks headers signed with the
//! processor's `callback_secret` (`integrations::signature`); an unsigned,
//! mis-signed or stale one is refused with 401 and changes nothing. Callbacks are
//! replay-safe twice over: a `webhook-id` already seen is acknowledged without
//! effect, and the effect itself is idempotent in the engine (a settled
//! withdrawal cannot settle again), so a duplicate never pays or refunds twice.
//!
//! The checks run in an order that never lets an outsider reach a 5xx: missing
//! signature headers are a 401 before anything else; then the secret (without
//! one, outside `--dev`, the route is unconfigured: 503 naming the setting, which
//! a processor retries); then the signature (401); then the body (400). In `--dev`
//! without a configured secret, [`DEV_CALLBACK_SECRET`] stands in, so callbacks can
//! be tried (and fuzzed) against a dev server.

use actix_web::{post, web, HttpRequest, HttpResponse};
use okpay_engine::ids::{OpId, OpKind};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::error::{ApiError, ApiResult, ErrorCode, Problem};
use crate::integrations::signature::{self, SignatureError};
use crate::integrations::{self as integ, charges, payouts};
use crate::payments::{Charge, ChargeStatus};
use crate::state::AppState;

/// Webhook ids already handled (key: `<source>:<webhook-id>`).
pub const SEEN_INDEX: &str = "callback_seen";

/// The callback secret of a `--dev` server whose processor has none configured.
/// It is public (it is in the source), which is why only `--dev` uses it.
pub const DEV_CALLBACK_SECRET: &str = "whsec_ZGV2LWNhbGxiYWNrLXNlY3JldA==";

/// A payout processor's report.
#[derive(Deserialize, ToSchema)]
pub struct PayoutCallback {
    /// `payout.completed` or `payout.failed`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The `wd_` id sent with the payout.
    pub payout_id: String,
    /// Why it failed (shown to the user).
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CallbackAck {
    /// `applied`, or `duplicate` when this callback (or its effect) was already
    /// handled.
    pub status: String,
}

/// Refuses a request without the three Standard Webhooks headers (401), before
/// anything else is looked at.
pub fn require_signature_headers(req: &HttpRequest) -> Result<(), ApiError> {
    let present = ["webhook-id", "webhook-timestamp", "webhook-signature"]
        .iter()
        .all(|name| req.headers().get(*name).is_some());
    if present {
        Ok(())
    } else {
        Err(signature_refused(SignatureError::Missing))
    }
}

/// The secret that signs one processor's callbacks: the configured one, the dev
/// one in `--dev`, or 503 naming the setting.
fn callback_secret(
    state: &AppState,
    configured: Option<&crate::config::Redacted>,
    feature: &str,
    setting: &str,
) -> ApiResult<String> {
    match configured {
        Some(secret) => Ok(secret.0.clone()),
        None if state.settings.dev => Ok(DEV_CALLBACK_SECRET.to_owned()),
        None => Err(integ::not_configured(feature, setting)),
    }
}

fn signature_refused(e: SignatureError) -> ApiError {
    tracing::warn!(error = %e, "callback refused: bad signature");
    ApiError::new(
        ErrorCode::Unauthenticated,
        match e {
            SignatureError::Missing => {
                "The callback is not signed (webhook-id, webhook-timestamp, webhook-signature)."
            }
            SignatureError::Stale => {
                "The callback's webhook-timestamp is more than 5 minutes from now."
            }
            SignatureError::Mismatch => "The callback's signature does not match.",
        },
    )
}

/// Checks the Standard Webhooks headers of `req` against `secret`.
/// `now` is the engine's clock (a test that moves it moves the tolerance window).
pub fn verify(
    req: &HttpRequest,
    secret: &str,
    body: &[u8],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<String, ApiError> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let id = header("webhook-id");
    signature::verify(
        secret,
        id,
        header("webhook-timestamp"),
        header("webhook-signature"),
        body,
        now.timestamp(),
    )
    .map_err(signature_refused)?;
    // unwrap: verify refuses a missing id.
    Ok(id.unwrap().to_owned())
}

/// Claims a webhook id; false when it was handled before.
pub async fn first_time(state: &AppState, source: &str, id: &str) -> ApiResult<bool> {
    let key = format!("{source}:{}", id.chars().take(200).collect::<String>());
    state
        .store()
        .claim_index(SEEN_INDEX, &key, &state.now().to_rfc3339())
        .await
        .map_err(|_| ApiError::unavailable())
}

/// Forgets a webhook id whose effect could not be applied, so the processor's
/// retry applies it.
pub async fn forget(state: &AppState, source: &str, id: &str) {
    let key = format!("{source}:{}", id.chars().take(200).collect::<String>());
    let _ = state.store().delete_index(SEEN_INDEX, &key).await;
}

/// The payout processor reports a payout's outcome.
#[utoipa::path(post, path = "/v1/callbacks/payouts", tag = "callbacks",
    request_body = PayoutCallback,
    params(
        ("webhook-id" = String, Header, description = "Unique per message; a repeated id is acknowledged without effect"),
        ("webhook-timestamp" = String, Header, description = "Unix seconds; at most 5 minutes from now"),
        ("webhook-signature" = String, Header, description = "`v1,<base64 HMAC-SHA256 of id.timestamp.body>` under the payout callback secret"),
    ),
    responses(
        (status = 200, body = CallbackAck),
        (status = 400, body = Problem, description = "VALIDATION_FAILED: unknown type or payout id"),
        (status = 401, body = Problem, description = "UNAUTHENTICATED: missing, stale or wrong signature"),
        (status = 503, body = Problem, description = "UNAVAILABLE: no payout callback secret configured, or storage"),
    ))]
#[post("/v1/callbacks/payouts")]
pub async fn payout_callback(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    require_signature_headers(&req)?;
    let secret = callback_secret(
        &state,
        state
            .settings
            .integrations
            .payouts
            .as_ref()
            .and_then(|p| p.callback_secret.as_ref()),
        "Payout callbacks",
        "[integrations.payouts] callback_secret (OKPAY_PAYOUTS_CALLBACK_SECRET)",
    )?;
    let webhook_id = verify(&req, &secret, &body, state.now())?;
    let callback: PayoutCallback = serde_json::from_slice(&body)
        .map_err(|e| ApiError::validation(format!("The body is not a payout callback: {e}")))?;
    let completed = match callback.kind.as_str() {
        "payout.completed" => true,
        "payout.failed" => false,
        _ => {
            return Err(ApiError::validation(
                "type must be payout.completed or payout.failed.",
            ))
        }
    };
    let id = OpId::parse(&callback.payout_id, OpKind::Withdrawal)
        .map_err(|_| ApiError::validation("payout_id is not a withdrawal id."))?;
    if !first_time(&state, "payouts", &webhook_id).await? {
        return Ok(HttpResponse::Ok().json(CallbackAck {
            status: "duplicate".into(),
        }));
    }
    match payouts::report(
        &state.engine,
        &state.deliveries,
        id,
        completed,
        callback.reason,
    )
    .await
    {
        Ok(changed) => Ok(HttpResponse::Ok().json(CallbackAck {
            status: if changed { "applied" } else { "duplicate" }.into(),
        })),
        Err(e) => {
            forget(&state, "payouts", &webhook_id).await;
            Err(e.into())
        }
    }
}

/// The card processor's report of a charge that was pending.
#[derive(Deserialize, ToSchema)]
pub struct ChargeCallback {
    /// `charge.succeeded` or `charge.failed`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The processor's charge id.
    pub charge_id: String,
    /// The reference sent with the charge (`<account>:<Idempotency-Key>`).
    pub reference: String,
    #[serde(default)]
    pub reason: Option<String>,
}

/// The card processor reports a pending charge's outcome: a success credits the
/// deposit (or refunds the charge if the engine refuses it), a failure drops it.
#[utoipa::path(post, path = "/v1/callbacks/processor", tag = "callbacks",
    request_body = ChargeCallback,
    params(
        ("webhook-id" = String, Header, description = "Unique per message; a repeated id is acknowledged without effect"),
        ("webhook-timestamp" = String, Header, description = "Unix seconds; at most 5 minutes from now"),
        ("webhook-signature" = String, Header, description = "`v1,<base64 HMAC-SHA256 of id.timestamp.body>` under the processor callback secret"),
    ),
    responses(
        (status = 200, body = CallbackAck),
        (status = 400, body = Problem, description = "VALIDATION_FAILED: unknown type"),
        (status = 401, body = Problem, description = "UNAUTHENTICATED: missing, stale or wrong signature"),
        (status = 503, body = Problem, description = "UNAVAILABLE: no processor (callback secret) configured, or storage"),
    ))]
#[post("/v1/callbacks/processor")]
pub async fn processor_callback(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    require_signature_headers(&req)?;
    const FEATURE: &str = "Processor callbacks";
    const SETTING: &str =
        "[integrations.processor] callback_secret (OKPAY_PROCESSOR_CALLBACK_SECRET)";
    let secret = callback_secret(
        &state,
        state
            .settings
            .integrations
            .processor
            .as_ref()
            .and_then(|p| p.callback_secret.as_ref()),
        FEATURE,
        SETTING,
    )?;
    let cards = state
        .cards
        .clone()
        .ok_or_else(|| integ::not_configured(FEATURE, SETTING))?;
    let webhook_id = verify(&req, &secret, &body, state.now())?;
    let callback: ChargeCallback = serde_json::from_slice(&body)
        .map_err(|e| ApiError::validation(format!("The body is not a charge callback: {e}")))?;
    let status = match callback.kind.as_str() {
        "charge.succeeded" => ChargeStatus::Succeeded,
        "charge.failed" => ChargeStatus::Declined(
            callback
                .reason
                .clone()
                .unwrap_or_else(|| "The processor declined the charge.".into()),
        ),
        _ => {
            return Err(ApiError::validation(
                "type must be charge.succeeded or charge.failed.",
            ))
        }
    };
    if !first_time(&state, "processor", &webhook_id).await? {
        return Ok(HttpResponse::Ok().json(CallbackAck {
            status: "duplicate".into(),
        }));
    }
    let intent = match charges::load(&state.engine, &callback.reference).await {
        Ok(Some(i)) => i,
        // Settled already (or never ours): nothing to do.
        Ok(None) => {
            return Ok(HttpResponse::Ok().json(CallbackAck {
                status: "duplicate".into(),
            }))
        }
        Err(_) => {
            forget(&state, "processor", &webhook_id).await;
            return Err(ApiError::unavailable());
        }
    };
    let known = Charge {
        id: callback.charge_id,
        status,
    };
    match charges::drive(
        &state.engine,
        &cards,
        &state.pii,
        &intent,
        Some(known),
        &state.deliveries,
    )
    .await
    {
        Ok(outcome) => {
            tracing::info!(reference = %callback.reference, ?outcome, "charge callback applied");
            Ok(HttpResponse::Ok().json(CallbackAck {
                status: "applied".into(),
            }))
        }
        Err(e) => {
            tracing::warn!(reference = %callback.reference, error = %e, "charge callback not applied; the processor retries");
            forget(&state, "processor", &webhook_id).await;
            Err(ApiError::unavailable())
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    paths(payout_callback, processor_callback),
    components(schemas(PayoutCallback, ChargeCallback, CallbackAck)),
    tags((name = "callbacks", description = "Signed callbacks from payment processors"))
)]
pub struct Api;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(payout_callback).service(processor_callback);
}
