//! Sessions: log in (`POST /v1/sessions`), list, log out one, log out everywhere
//! else. An unknown login costs the same argon2 verification as a wrong password
//! and gets the same answer, so neither message nor timing tells which it was.
//!
//! Login protection, in order:
//! 1. Failed-attempt limits per client IP and per login (`rate_limit.rs`):
//!    429 `RATE_LIMITED` with `retry_after_s` once either saw too many *failures*
//!    in the window (defaults 20 per IP, 10 per login, 5 minutes). The IP is the
//!    TCP peer, or behind `--trusted-proxies` the right-most untrusted
//!    `X-Forwarded-For` hop (`client_ip.rs`); a header from any other peer is
//!    ignored, since a client could forge it. Unknown logins lock like known ones.
//! 2. The account lockout (engine): 5 consecutive wrong passwords lock login for
//!    15 minutes; while locked, 423 `ACCOUNT_LOCKED` with `retry_after_s` before
//!    any password is checked; the attempt that locks answers 423 too. A success
//!    resets the count; a password reset unlocks at once.
//! 3. A login on a device the account never used pushes `session.created` with
//!    `new_device: true` to the other sessions and raises a `new_device` alert; a
//!    login from another country too soon after the last one raises an alert and
//!    restricts the account (engine rules).

use actix_web::{delete, get, post, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use okpay_engine::domain::command::NewSession;
use okpay_engine::domain::state::MAX_SESSIONS;
use okpay_engine::ids::{AccountId, OpId, OpKind};
use okpay_engine::{Command, EngineError, Outcome, Rejection};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{self, Auth};
use crate::error::{ApiError, ApiResult, ErrorCode, Problem};
use crate::routes::account::{login_key, LOGIN_INDEX};
use crate::routes::extract::time;
use crate::state::AppState;

/// The store index from token hashes to accounts (the global session index).
pub const SESSION_INDEX: &str = "session";

/// The value of a token's entry in [`SESSION_INDEX`]: its account, a space, and
/// when the session expires (Unix ms), so the retention sweep drops expired
/// entries without asking the account. Entries written before hold the account
/// alone (the sweep asks the account about those).
pub fn index_value(account: AccountId, expires_at: DateTime<Utc>) -> String {
    format!("{account} {}", expires_at.timestamp_millis())
}

/// The account an entry of [`SESSION_INDEX`] names.
pub fn indexed_account(value: &str) -> &str {
    value.split(' ').next().unwrap_or_default()
}

/// When the session of an entry of [`SESSION_INDEX`] expires (Unix ms); `None`
/// for entries written before expiries were indexed.
pub fn indexed_expiry_ms(value: &str) -> Option<i64> {
    value.split_once(' ').and_then(|(_, ms)| ms.parse().ok())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// An email or an E.164 phone number.
    pub login: String,
    pub password: String,
    /// A stable id of the device (the app generates it once).
    pub device_id: String,
    pub device_name: Option<String>,
    /// ISO 3166 alpha-2 of the client's location as seen by the edge.
    pub country: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct LoginResponse {
    /// The bearer token. Shown once; only its hash is stored.
    pub token: String,
    pub session_id: String,
    pub account_id: String,
    pub expires_at: DateTime<Utc>,
}

fn bounded(field: &str, value: Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if v.chars().count() > max => Err(ApiError::validation(format!(
            "{field} must have at most {max} characters."
        ))),
        other => Ok(other),
    }
}

/// Looks a login up in the `login` index.
pub async fn account_of_login(
    state: &AppState,
    login: &str,
) -> Result<Option<AccountId>, ApiError> {
    let Some(key) = login_key(login) else {
        return Ok(None);
    };
    let found = state
        .store()
        .get_index(LOGIN_INDEX, &key)
        .await
        .map_err(|_| ApiError::unavailable())?;
    Ok(found.and_then(|v| v.parse().ok()))
}

/// Logs in.
#[utoipa::path(post, path = "/v1/sessions", tag = "sessions", request_body = LoginRequest,
    responses(
        (status = 201, body = LoginResponse),
        (status = 400, body = Problem, description = "VALIDATION_FAILED"),
        (status = 401, body = Problem, description = "INVALID_CREDENTIALS"),
        (status = 423, body = Problem, description = "ACCOUNT_LOCKED: too many failed logins; retry_after_s"),
        (status = 429, body = Problem, description = "RATE_LIMITED: too many failed logins from this IP or for this login; retry_after_s"),
        (status = 503, body = Problem, description = "MAINTENANCE / OVERLOADED / UNAVAILABLE"),
    ))]
#[post("/v1/sessions")]
pub async fn create_session(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<LoginRequest>,
) -> ApiResult<HttpResponse> {
    state.maintenance.check()?;
    let body = body.into_inner();
    let ip = crate::client_ip::of(&req, &state.settings.trusted_proxies);
    let login_limit_key = login_key(&body.login).unwrap_or_else(|| body.login.to_lowercase());
    let blocked = match state.limits.per_ip.blocked(&ip).await? {
        Some(wait) => Some(wait),
        None => state.limits.per_login.blocked(&login_limit_key).await?,
    };
    if let Some(wait) = blocked {
        tracing::info!("login refused: too many failed attempts");
        return Err(rate_limited(wait));
    }
    if body.device_id.is_empty() || body.device_id.chars().count() > 128 {
        return Err(ApiError::validation(
            "device_id must have 1 to 128 characters.",
        ));
    }
    let device_name = bounded("device_name", body.device_name, 128)?;
    let country = bounded("country", body.country, 2)?.map(|c| c.to_ascii_uppercase());
    if body.password.len() > 1024 {
        return Err(ApiError::invalid_credentials());
    }
    let account = account_of_login(&state, &body.login).await?;
    if account.is_none() {
        if let Some(wait) = state
            .limits
            .unknown_logins
            .blocked(&login_limit_key)
            .await?
        {
            return Err(locked(wait));
        }
    }
    let hash = match account {
        Some(id) => {
            let (until, hash) = state
                .engine
                .read(id, |s, _, _| {
                    (s.security.locked_until, s.password_hash.clone())
                })
                .await?;
            if let Some(wait) = locked_for(&state, until) {
                return Err(locked(wait));
            }
            Some(hash).filter(|h| !h.is_empty())
        }
        None => None,
    };
    let ok = state.passwords.verify(body.password, hash).await?;
    let (true, Some(account)) = (ok, account) else {
        tracing::info!("login failed");
        state.limits.per_ip.record(&ip).await;
        state.limits.per_login.record(&login_limit_key).await;
        let Some(id) = account else {
            // An unknown login locks like a known one (the same 423 after as many
            // failures, for as long), so the answers tell nothing.
            if let Some(wait) = state.limits.unknown_logins.record(&login_limit_key).await {
                return Err(locked(wait));
            }
            return Err(ApiError::invalid_credentials());
        };
        match state.engine.execute(id, Command::LoginFailed).await {
            Ok(_) => {
                if let Some(wait) = locked_for(&state, lock_end(&state, id).await?) {
                    return Err(locked(wait));
                }
            }
            Err(EngineError::Rejected(Rejection::AccountLocked)) => {
                let until = lock_end(&state, id).await?;
                return Err(locked(locked_for(&state, until).unwrap_or(1)));
            }
            Err(e) => return Err(e.into()),
        }
        return Err(ApiError::invalid_credentials());
    };
    let minted = auth::mint();
    let expires = chrono::Duration::from_std(state.settings.session_ttl)
        .unwrap_or_else(|_| chrono::Duration::days(30));
    let expires_at = state.now() + expires;
    let session = NewSession {
        token_hash: minted.hash,
        device_id: body.device_id,
        device_name,
        country,
        expires_at: crate::clock::to_engine(expires_at),
    };
    let created = state
        .engine
        .execute(account, Command::CreateSession(session))
        .await;
    // An account keeps at most `MAX_SESSIONS`: a login at the cap pushed the
    // oldest out, which is a revocation like any other. Below it nothing was
    // revoked, and evicting anyway dropped the cached sessions of the account
    // and of every account sharing its stripe (about one bystander per eight
    // logins among 2,000 cached accounts). A push-out leaves the account at the
    // cap, and a logout that lowers it in between evicts by itself; an unknown
    // outcome or count evicts.
    let at_cap = match &created {
        Ok(_) => state
            .engine
            .read(account, |s, _, _| s.sessions.len() >= MAX_SESSIONS)
            .await
            .unwrap_or(true),
        Err(_) => true,
    };
    if at_cap {
        state.sessions.evict(account);
    }
    let outcome = match created {
        // Locked between the check above and now (another client's failures).
        Err(EngineError::Rejected(Rejection::AccountLocked)) => {
            let until = lock_end(&state, account).await?;
            return Err(locked(locked_for(&state, until).unwrap_or(1)));
        }
        other => other?,
    };
    // A login from a new device is a notice (`integrations::notices`).
    state.deliveries.kick(account);
    let Outcome::Created(id) = outcome else {
        return Err(ApiError::unavailable());
    };
    // The global token index, claimed atomically (a collision of 256-bit random
    // tokens would be refused rather than shared). Every request checks it first,
    // so a session missing from it is unusable: answer 503 rather than a token.
    let claimed = state
        .store()
        .claim_index(
            SESSION_INDEX,
            &auth::hash_hex(&minted.hash),
            &index_value(account, expires_at),
        )
        .await;
    if !matches!(claimed, Ok(true)) {
        return Err(ApiError::unavailable());
    }
    // The token's first request is served from the session cache, as every
    // later one is: the fill a first request would make (the index is known
    // claimed, so only the engine's word is needed), with its ticket taken
    // before the engine is asked, so a revocation applied after that answer
    // voids it (see `session_cache`). Without it, every login's first request
    // waited for a store read of the index, behind whatever the store was
    // writing.
    let ticket = state.sessions.ticket(account);
    if let Ok(session) = state.engine.authenticate(account, id.n, minted.hash).await {
        state
            .sessions
            .insert(ticket, account, id.n, minted.hash, session.expires_at);
    }
    tracing::info!(account = %account, session = %id.display(OpKind::Session), "logged in");
    Ok(HttpResponse::Created().json(LoginResponse {
        token: auth::token_string(account, id.n, &minted.secret),
        session_id: id.display(OpKind::Session),
        account_id: account.to_string(),
        expires_at,
    }))
}

/// Seconds until the account's login lockout ends, if it is locked now.
/// When the account's login lockout ends, if it is locked.
pub(crate) async fn lock_end(
    state: &AppState,
    account: AccountId,
) -> Result<Option<okpay_engine::time::Timestamp>, ApiError> {
    Ok(state
        .engine
        .read(account, |s, _, _| s.security.locked_until)
        .await?)
}

/// Seconds until a lockout ending at `until` is over (`None`: not locked).
pub(crate) fn locked_for(
    state: &AppState,
    until: Option<okpay_engine::time::Timestamp>,
) -> Option<u64> {
    let now = state.engine.clock().now().millis();
    let until = until?.millis();
    (until > now).then(|| {
        u64::try_from((until - now + 999) / 1000)
            .unwrap_or(1)
            .max(1)
    })
}

/// 423 `ACCOUNT_LOCKED` with the time left.
pub(crate) fn locked(retry_after_s: u64) -> ApiError {
    crate::error::rejection(Rejection::AccountLocked)
        .with_hint(format!(
            "Try again in {} minute(s), or reset your password (POST /v1/password-reset) to unlock at once.",
            retry_after_s.div_ceil(60)
        ))
        .retry_after(retry_after_s)
}

/// 429 `RATE_LIMITED` for too many failed logins.
fn rate_limited(retry_after_s: u64) -> ApiError {
    ApiError::new(
        ErrorCode::RateLimited,
        "Too many failed login attempts from here or for this login.",
    )
    .retry_after(retry_after_s)
}

#[derive(Serialize, ToSchema)]
pub struct SessionItem {
    pub session_id: String,
    pub device_id: String,
    pub device_name: Option<String>,
    pub country: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Whether this is the session making the request.
    pub current: bool,
}

#[derive(Serialize, ToSchema)]
pub struct SessionList {
    pub items: Vec<SessionItem>,
}

/// The account's live sessions.
#[utoipa::path(get, path = "/v1/sessions", tag = "sessions", security(("bearer" = [])),
    responses((status = 200, body = SessionList), (status = 401, body = Problem, description = "UNAUTHENTICATED")))]
#[get("/v1/sessions")]
pub async fn list(state: web::Data<AppState>, auth: Auth) -> ApiResult<HttpResponse> {
    // Only the live sessions leave the actor, judged by the engine's clock.
    let sessions = state
        .engine
        .read(auth.account, |account, _, now| {
            account
                .sessions
                .iter()
                .filter(|s| s.expires_at > now)
                .cloned()
                .collect::<Vec<_>>()
        })
        .await?;
    let items = sessions
        .iter()
        .rev()
        .map(|s| SessionItem {
            session_id: OpId {
                account: auth.account,
                n: s.n,
            }
            .display(OpKind::Session),
            device_id: s.device_id.clone(),
            device_name: s.device_name.clone(),
            country: s.country.clone(),
            created_at: time(s.created_at),
            expires_at: time(s.expires_at),
            current: s.n == auth.session,
        })
        .collect();
    Ok(HttpResponse::Ok().json(SessionList { items }))
}

/// The token hashes of the account's sessions that `revoked` selects (read before
/// they are revoked, so their index entries can be dropped afterwards).
pub async fn token_hashes(
    state: &AppState,
    account: AccountId,
    revoked: impl Fn(u64) -> bool + Send + Sync + 'static,
) -> Vec<[u8; 32]> {
    state
        .engine
        .read(account, move |s, _, _| {
            s.sessions
                .iter()
                .filter(|x| revoked(x.n))
                .map(|x| x.token_hash)
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default()
}

/// Drops revoked sessions from the global index, so it doesn't grow with every
/// login ever made (best effort: an entry left behind only costs space, since the
/// account's actor refuses the revoked session anyway).
pub async fn forget_tokens(state: &AppState, hashes: Vec<[u8; 32]>) {
    for h in hashes {
        let _ = state
            .store()
            .delete_index(SESSION_INDEX, &auth::hash_hex(&h))
            .await;
    }
}

async fn revoke(state: &AppState, account: AccountId, n: u64) -> ApiResult<HttpResponse> {
    let hashes = token_hashes(state, account, move |x| x == n).await;
    let revoked = state
        .engine
        .execute(account, Command::RevokeSession { n })
        .await;
    // Before answering, so the revoked token is refused from the next request on.
    state.sessions.evict(account);
    revoked.map_err(|e| match e {
        okpay_engine::EngineError::Rejected(_) => ApiError::not_found("session"),
        other => other.into(),
    })?;
    forget_tokens(state, hashes).await;
    Ok(HttpResponse::NoContent().finish())
}

/// Logs the calling session out.
#[utoipa::path(delete, path = "/v1/sessions/current", tag = "sessions", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem, description = "UNAUTHENTICATED")))]
#[delete("/v1/sessions/current")]
pub async fn logout(state: web::Data<AppState>, auth: Auth) -> ApiResult<HttpResponse> {
    revoke(&state, auth.account, auth.session).await
}

/// Logs one of the account's sessions out.
#[utoipa::path(delete, path = "/v1/sessions/{id}", tag = "sessions", security(("bearer" = [])),
    params(("id" = String, Path, description = "A `ses_` id")),
    responses((status = 204), (status = 401, body = Problem, description = "UNAUTHENTICATED"), (status = 404, body = Problem, description = "NOT_FOUND")))]
#[delete("/v1/sessions/{id}")]
pub async fn revoke_one(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = OpId::parse(&path, OpKind::Session).map_err(|_| ApiError::not_found("session"))?;
    if id.account != auth.account {
        return Err(ApiError::not_found("session"));
    }
    revoke(&state, auth.account, id.n).await
}

/// Logs out everywhere else (keeps the calling session).
#[utoipa::path(delete, path = "/v1/sessions", tag = "sessions", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem, description = "UNAUTHENTICATED")))]
#[delete("/v1/sessions")]
pub async fn revoke_others(state: web::Data<AppState>, auth: Auth) -> ApiResult<HttpResponse> {
    let keep = auth.session;
    let hashes = token_hashes(&state, auth.account, move |x| x != keep).await;
    let revoked = state
        .engine
        .execute(
            auth.account,
            Command::RevokeSessions {
                except: Some(auth.session),
            },
        )
        .await;
    state.sessions.evict(auth.account);
    revoked?;
    forget_tokens(&state, hashes).await;
    Ok(HttpResponse::NoContent().finish())
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    // `current` before `{id}`: actix matches in registration order.
    cfg.service(create_session)
        .service(list)
        .service(logout)
        .service(revoke_one)
        .service(revoke_others);
}
