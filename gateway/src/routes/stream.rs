//! The websocket streams' handshakes: `GET /v1/stream` (one account's events) and
//! `GET /v1/admin/stream` (alerts and status changes of every account).
//!
//! Everything that can be refused is refused before the upgrade, as a plain
//! problem+json answer: a missing or bad token (401), no free connection slot or
//! an engine too busy to subscribe (503), a request that is not a websocket
//! handshake (400). Only then is the connection upgraded and handed to its own
//! task (`crate::ws::account` / `crate::ws::admin`).

use actix_web::{get, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::{IntoParams, OpenApi};

use crate::auth;
use crate::error::{ApiError, ApiResult, Problem};
use crate::state::AppState;
use crate::stream::ConnectionSlot;
use crate::ws::account::{self, AccountConnection};
use crate::ws::admin::{self, AdminConnection};
use crate::ws::frame::MAX_CLIENT_MESSAGE_BYTES;
use crate::ws::link::Link;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// The session token, for clients that cannot set headers (browsers). The
    /// `Authorization` header wins when both are given.
    pub token: Option<String>,
    /// Replay the retained events after this seq before going live (at least the
    /// account's last 256 events are retained).
    pub after_seq: Option<u64>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AdminStreamQuery {
    /// The admin token, for consoles that cannot set headers.
    pub token: Option<String>,
}

/// The bearer token from the header, else from `?token=`.
fn presented_token(req: &HttpRequest, query: Option<&str>) -> Option<String> {
    auth::bearer(req)
        .or(query)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

/// An operator's slot (the operators' reserve included).
fn slot(state: &AppState) -> Result<ConnectionSlot, ApiError> {
    state.streams.open().ok_or_else(|| {
        ApiError::overloaded().with_hint("Too many open streams; reconnect shortly.")
    })
}

/// A user's slot: 429 `RATE_LIMITED` past the account's or the address's own
/// bound, 503 `OVERLOADED` when the server is full for users.
fn user_slot(
    state: &AppState,
    req: &HttpRequest,
    account: okpay_engine::ids::AccountId,
) -> Result<ConnectionSlot, ApiError> {
    let ip = crate::client_ip::of(req, &state.settings.trusted_proxies);
    state
        .streams
        .open_user(&account.to_string(), &ip)
        .map_err(|refusal| match refusal {
            crate::stream::Refusal::Full => {
                ApiError::overloaded().with_hint("Too many open streams; reconnect shortly.")
            }
            crate::stream::Refusal::TooManyForClient => ApiError::new(
                crate::error::ErrorCode::RateLimited,
                "Too many open streams for this account or from this address.",
            )
            .with_hint("Close a stream you no longer use, then reconnect.")
            .retry_after(5),
        })
}

/// The upgrade: the 101 response, the session and the client's messages (at most
/// 64 KiB each, whether in one frame or in continuations).
fn upgrade(
    req: &HttpRequest,
    body: web::Payload,
) -> Result<
    (
        HttpResponse,
        actix_ws::Session,
        actix_ws::AggregatedMessageStream,
    ),
    ApiError,
> {
    let (response, session, messages) = actix_ws::handle(req, body).map_err(|_| {
        ApiError::validation("This endpoint speaks websocket only.")
            .with_hint("Open it with a websocket client (GET with Upgrade: websocket).")
    })?;
    let messages = messages
        .max_frame_size(MAX_CLIENT_MESSAGE_BYTES)
        .aggregate_continuations()
        .max_continuation_size(MAX_CLIENT_MESSAGE_BYTES);
    Ok((response, session, messages))
}

/// The account's live events (websocket).
///
/// Authenticated at the handshake with `Authorization: Bearer <session token>` or
/// `?token=`; a bad token gets 401 before any upgrade. The server then pushes one
/// JSON text frame per event, in `seq` order:
/// `{"seq": 42, "type": "balance.updated", "at": "<RFC 3339>", "data": {...}}`.
/// Types: `balance.updated` `{currency, available, held}`, `transaction.updated`
/// `{id, type, status, amount, fee, currency, direction, counterparty}`,
/// `alert.raised` `{id, rule, severity, message, action}`, `account.status_changed`
/// `{from, to, reason}`, `session.created` `{session_id, device_id, country,
/// new_device}`, `kyc.updated` `{status, tier, reason}`, `security.changed`
/// `{change, message, totp_enabled, recovery_codes_left}` (the password, the
/// authenticator app or the recovery codes changed: `totp_enabled`,
/// `totp_replaced`, `totp_removed`, `totp_reset`, `recovery_codes_regenerated`,
/// `recovery_code_used`, `password_changed`). Every socket of the account receives
/// every event.
///
/// Server frames without `seq` (they are not account events and never move the
/// resume point): `system.status` `{maintenance, message}` when maintenance is
/// switched (and on connect while it is on); `stream.gap` `{after_seq, first_seq}`
/// when events after the requested seq are no longer retained (refetch
/// `GET /v1/account`); `pong`; `error` `{code, detail}` for a JSON message the
/// server does not understand (the socket stays open).
///
/// Client messages: `{"type": "ping"}` → `{"type": "pong"}`;
/// `{"type": "resume", "after_seq": N}` replays the retained events after N, then
/// continues live with no duplicate and no gap (`?after_seq=N` does the same on
/// connect).
///
/// Close codes: 1009 for a message over 64 KiB; 1003 for non-JSON text or binary
/// frames; 1008 when the client misses two heartbeat pings or its session is
/// revoked or expires (checked every heartbeat); 1013 for a slow consumer (it
/// fell `ws_queue` frames behind, or a send stalled for a heartbeat interval) —
/// reconnect with `?after_seq=` the last seq received.
#[utoipa::path(get, path = "/v1/stream", tag = "stream", params(StreamQuery),
    security(("bearer" = [])),
    responses(
        (status = 101, description = "Switching to the websocket protocol; frames as described above."),
        (status = 400, body = Problem, description = "VALIDATION_FAILED: not a websocket handshake, or a malformed after_seq"),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 429, body = Problem, description = "RATE_LIMITED: too many open streams of this account (8) or from this address (64 by default, `ws_max_per_ip`); retry_after_s"),
        (status = 503, body = Problem, description = "OVERLOADED: too many open streams (a twentieth of the bound is kept for operators)"),
    ))]
#[get("/v1/stream")]
pub async fn account_stream(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    query: web::Query<StreamQuery>,
) -> ApiResult<HttpResponse> {
    let query = query.into_inner();
    let token =
        presented_token(&req, query.token.as_deref()).ok_or_else(ApiError::unauthenticated)?;
    // Evictions are watched from before the token check, so a revocation
    // after it wakes the socket (the account is the one the token claims; a
    // token that fails the check never gets a socket).
    let claimed = auth::parse_token(&token).map(|c| (c.account, state.sessions.watch(c.account)));
    let who = auth::check_token(&state, &token).await?;
    let revoked = match claimed {
        Some((account, revoked)) if account == who.account => revoked,
        _ => state.sessions.watch(who.account),
    };
    let slot = user_slot(&state, &req, who.account)?;
    let subscription = state.engine.subscribe(who.account, query.after_seq).await?;
    let (response, session, messages) = upgrade(&req, body)?;
    let link = Link::new(
        session,
        state.settings.ws_queue,
        state.settings.ws_heartbeat,
        "account",
    );
    actix_web::rt::spawn(account::run(AccountConnection {
        state: state.clone(),
        auth: who,
        token,
        revoked,
        after_seq: query.after_seq,
        subscription,
        link,
        messages,
        slot,
    }));
    Ok(response)
}

/// Alerts and status changes of every account (websocket, operators).
///
/// Authenticated at the handshake with the admin token (`Authorization: Bearer` or
/// `?token=`); 401 before any upgrade otherwise. Pushes every `alert.raised` and
/// `account.status_changed`:
/// `{"type": "...", "account_id": "acc_…", "seq": N, "at": "<RFC 3339>", "data": {...}}`
/// (`seq` is the account's). Live only: `resume` is answered with an `error`
/// frame. `system.status`, `pong`, heartbeat and close codes as on `/v1/stream`.
#[utoipa::path(get, path = "/v1/admin/stream", tag = "admin", params(AdminStreamQuery),
    security(("admin" = [])),
    responses(
        (status = 101, description = "Switching to the websocket protocol; frames as described above."),
        (status = 400, body = Problem, description = "VALIDATION_FAILED: not a websocket handshake"),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 503, body = Problem, description = "OVERLOADED: too many open streams"),
    ))]
#[get("/v1/admin/stream")]
pub async fn admin_stream(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    query: web::Query<AdminStreamQuery>,
) -> ApiResult<HttpResponse> {
    let token =
        presented_token(&req, query.token.as_deref()).ok_or_else(ApiError::unauthenticated)?;
    // Any operator may watch (every role may read).
    if auth::operator(&state, &token).await?.is_none() {
        return Err(ApiError::unauthenticated());
    }
    let slot = slot(&state)?;
    let notices = state.engine.subscribe_admin();
    let (response, session, messages) = upgrade(&req, body)?;
    let link = Link::new(
        session,
        state.settings.ws_queue,
        state.settings.ws_heartbeat,
        "admin",
    );
    actix_web::rt::spawn(admin::run(AdminConnection {
        state: state.clone(),
        notices,
        link,
        messages,
        slot,
    }));
    Ok(response)
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(account_stream).service(admin_stream);
}

/// The OpenAPI part of the streams.
#[derive(OpenApi)]
#[openapi(
    paths(account_stream, admin_stream),
    tags((name = "stream", description = "The live event stream (websocket)")),
)]
pub struct Api;
