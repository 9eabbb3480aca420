//! Authentication: opaque session tokens, the admin token and operators' tokens.
//!
//! A session token is `okp_` + base64url(account id ‖ session number ‖ 32 random
//! bytes). The account id routes the check to the account's actor without a global
//! lookup; only the SHA-256 of the token is stored (in the account's sessions and in
//! the global `session` index), so a leaked database holds no usable token. The
//! random part alone is 256 bits. A token is looked up in the global index before
//! its account is touched: unknown tokens are refused without activating anything.

use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::sync::LazyLock;

use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, FromRequest, HttpRequest};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use futures::future::{Either, LocalBoxFuture};
use metrics::Counter;
use okpay_engine::ids::{AccountId, OpId, OpKind};
use okpay_engine::{EngineError, Rejection};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::operators::{self, Duty, Role};
use crate::state::AppState;

const PREFIX: &str = "okp_";

/// A freshly minted token: give `token` to the client, store `hash`.
pub struct MintedToken {
    pub secret: [u8; 32],
    pub hash: [u8; 32],
}

/// Draws the random part of a new session token.
pub fn mint() -> MintedToken {
    let secret: [u8; 32] = rand::random();
    MintedToken {
        secret,
        hash: Sha256::digest(secret).into(),
    }
}

/// The token string for session `n` of `account` with `secret`.
pub fn token_string(account: AccountId, n: u64, secret: &[u8; 32]) -> String {
    let mut raw = Vec::with_capacity(48);
    raw.extend_from_slice(&account.0.to_be_bytes());
    raw.extend_from_slice(&n.to_be_bytes());
    raw.extend_from_slice(secret);
    format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(raw))
}

/// What a presented token claims: account, session number, and the hash to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenClaim {
    pub account: AccountId,
    pub n: u64,
    pub hash: [u8; 32],
}

/// Parses a token without checking it.
pub fn parse_token(token: &str) -> Option<TokenClaim> {
    // Decoded on the stack: every authenticated request comes through here.
    // Anything that does not decode to exactly 48 bytes is refused (longer input
    // does not fit the buffer).
    let mut raw = [0u8; 48];
    let len = URL_SAFE_NO_PAD
        .decode_slice(token.strip_prefix(PREFIX)?, &mut raw)
        .ok()?;
    if len != raw.len() {
        return None;
    }
    let account = AccountId(u64::from_be_bytes(raw[0..8].try_into().ok()?));
    let n = u64::from_be_bytes(raw[8..16].try_into().ok()?);
    Some(TokenClaim {
        account,
        n,
        hash: Sha256::digest(&raw[16..48]).into(),
    })
}

/// Hex SHA-256 of a token's secret: the key of the global `session` index.
pub fn hash_hex(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bearer token of a request, if any.
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// An authenticated user: their account and session.
#[derive(Debug, Clone, Copy)]
pub struct Auth {
    pub account: AccountId,
    /// The session's number in the account (`ses_` id).
    pub session: u64,
}

impl Auth {
    pub fn session_id(&self) -> String {
        OpId {
            account: self.account,
            n: self.session,
        }
        .display(OpKind::Session)
    }
}

/// Checks a token: first in the session cache (a session the engine validated
/// lately and nobody revoked since, see [`crate::session_cache`]), else in the
/// global session index (so a forged token naming a random account id never
/// reaches, let alone activates, an account actor), then with the account's actor
/// (revocation and expiry live there), filling the cache.
pub async fn check_token(state: &AppState, token: &str) -> Result<Auth, ApiError> {
    match check_cached(state, token) {
        Checked::Done(result) => result,
        Checked::Ask(claim) => check_with_engine(state, claim).await,
    }
}

/// What the synchronous part of a token check found.
enum Checked {
    /// The answer: a malformed token's refusal, or a cached session.
    Done(Result<Auth, ApiError>),
    /// Not cached: the index and the engine must be asked.
    Ask(TokenClaim),
}

/// Session cache hits and misses, looked up once: the `counter!` macro hashes
/// its key into the registry on every call, and this runs on every request.
/// Taken on the first check, after the server installed its recorder.
static CACHE_HITS: LazyLock<(Counter, Counter)> = LazyLock::new(|| {
    (
        metrics::counter!("okpay_session_cache_total", "result" => "hit"),
        metrics::counter!("okpay_session_cache_total", "result" => "miss"),
    )
});

/// The part of [`check_token`] that needs no waiting: parsing and the cache.
fn check_cached(state: &AppState, token: &str) -> Checked {
    let Some(claim) = parse_token(token) else {
        return Checked::Done(Err(ApiError::unauthenticated()));
    };
    let now = state.engine.clock().now();
    if state
        .sessions
        .check(claim.account, claim.n, &claim.hash, now)
    {
        CACHE_HITS.0.increment(1);
        return Checked::Done(Ok(Auth {
            account: claim.account,
            session: claim.n,
        }));
    }
    CACHE_HITS.1.increment(1);
    Checked::Ask(claim)
}

/// The rest of [`check_token`] for a token the cache does not hold.
async fn check_with_engine(state: &AppState, claim: TokenClaim) -> Result<Auth, ApiError> {
    let auth = Auth {
        account: claim.account,
        session: claim.n,
    };
    // Taken before the engine is asked: a revocation after this voids the fill.
    let ticket = state.sessions.ticket(claim.account);
    let indexed = state
        .store()
        .get_index(
            crate::routes::sessions::SESSION_INDEX,
            &hash_hex(&claim.hash),
        )
        .await
        .map_err(|_| ApiError::unavailable())?;
    let indexed = indexed
        .as_deref()
        .map(crate::routes::sessions::indexed_account);
    if indexed != Some(claim.account.to_string().as_str()) {
        return Err(ApiError::unauthenticated());
    }
    match state
        .engine
        .authenticate(claim.account, claim.n, claim.hash)
        .await
    {
        Ok(session) => {
            state.sessions.insert(
                ticket,
                claim.account,
                claim.n,
                claim.hash,
                session.expires_at,
            );
            Ok(auth)
        }
        Err(EngineError::Rejected(Rejection::UnknownOperation | Rejection::AccountNotFound)) => {
            Err(ApiError::unauthenticated())
        }
        Err(e) => Err(e.into()),
    }
}

impl FromRequest for Auth {
    type Error = ApiError;
    /// Ready at once for a cached session (most requests: no future boxed, no
    /// token copied); boxed when the engine must be asked.
    type Future = Either<
        Ready<Result<Self, Self::Error>>,
        LocalBoxFuture<'static, Result<Self, Self::Error>>,
    >;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let (Some(state), Some(token)) = (req.app_data::<web::Data<AppState>>(), bearer(req))
        else {
            return Either::Left(ready(Err(ApiError::unauthenticated())));
        };
        match check_cached(state, token) {
            Checked::Done(result) => Either::Left(ready(result)),
            Checked::Ask(claim) => {
                let state = state.clone();
                Either::Right(Box::pin(
                    async move { check_with_engine(&state, claim).await },
                ))
            }
        }
    }
}

/// An authenticated operator: a named one (`okop_` token, see
/// [`crate::operators`]) or the bootstrap `--admin-token` (named `admin`, role
/// `admin`). Handlers check the duty with [`Admin::require`].
#[derive(Debug, Clone)]
pub struct Admin {
    pub name: String,
    pub role: Role,
}

impl Admin {
    /// 403 FORBIDDEN unless the operator's role includes `duty`.
    pub fn require(&self, duty: Duty) -> Result<(), ApiError> {
        if self.role.may(duty) {
            Ok(())
        } else {
            Err(ApiError::forbidden().with_hint(format!(
                "The {} role may not do this; ask an operator with the right role.",
                self.role.name()
            )))
        }
    }
}

/// Compares the presented admin token with the configured one in constant time.
pub fn is_admin(state: &AppState, presented: &str) -> bool {
    let Some(expected) = state.settings.admin_token.as_deref() else {
        return false;
    };
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// The operator holding `token`: the bootstrap token, or a named operator's.
pub async fn operator(state: &AppState, token: &str) -> Result<Option<Admin>, ApiError> {
    if is_admin(state, token) {
        return Ok(Some(Admin {
            name: operators::BOOTSTRAP_NAME.into(),
            role: Role::Admin,
        }));
    }
    let found = operators::lookup(state.store(), token)
        .await
        .map_err(|_| ApiError::unavailable())?;
    Ok(found.map(|r| Admin {
        name: r.name,
        role: r.role,
    }))
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = bearer(req).map(str::to_owned);
        Box::pin(async move {
            let (Some(state), Some(token)) = (state, token) else {
                return Err(ApiError::unauthenticated());
            };
            if let Some(op) = operator(&state, &token).await? {
                return Ok(op);
            }
            // A user's session token on an admin route: authenticated as somebody,
            // just not allowed (403), rather than unknown (401).
            if parse_token(&token).is_some() {
                Err(ApiError::forbidden())
            } else {
                Err(ApiError::unauthenticated())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let m = mint();
        let t = token_string(AccountId(42), 7, &m.secret);
        let c = parse_token(&t).unwrap();
        assert_eq!(c.account, AccountId(42));
        assert_eq!(c.n, 7);
        assert_eq!(c.hash, m.hash);
        assert!(parse_token("okp_abc").is_none());
        assert!(parse_token(&t[1..]).is_none());
        assert!(parse_token(&format!("{t}AA")).is_none());
    }

    #[test]
    fn two_mints_differ() {
        assert_ne!(mint().secret, mint().secret);
    }
}
