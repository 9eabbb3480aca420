//! Every route of API.md, grouped by resource, wired in [`configure`]. Request
//! bodies are parsed into typed values at the edge (`extract`); handlers then only
//! call the engine and shape responses.

pub mod account;
pub mod admin;
pub mod alerts;
pub mod callbacks;
pub mod challenges;
pub mod contacts;
pub mod deposits;
pub mod docs;
pub mod extract;
pub mod health;
pub mod kyc;
pub mod password_reset;
pub mod quotes;
pub mod recipient;
pub mod sessions;
pub mod statements;
pub mod stream;
pub mod totp;
pub mod transactions;
pub mod transfers;
pub mod withdrawals;

use actix_web::web;

/// Registers all routes on an `App`.
///
/// Order matters for speed, not meaning (no two patterns match the same path
/// and method): actix tries the routes one by one, in this order, and each
/// pattern with a `{param}` costs a regex match. The hottest route (a transfer)
/// goes first, and the operators' routes (a third of the patterns, most with
/// parameters) last, so a user's request runs few or none of their regexes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    transfers::configure(cfg);
    health::configure(cfg);
    account::configure(cfg);
    sessions::configure(cfg);
    stream::configure(cfg);
    deposits::configure(cfg);
    withdrawals::configure(cfg);
    transactions::configure(cfg);
    statements::configure(cfg);
    docs::configure(cfg);
    contacts::configure(cfg);
    password_reset::configure(cfg);
    challenges::configure(cfg);
    totp::configure(cfg);
    kyc::configure(cfg);
    alerts::configure(cfg);
    callbacks::configure(cfg);
    quotes::configure(cfg);
    admin::configure(cfg);
}

/// The OpenAPI docs of route modules beyond the core ones (each module that adds
/// routes adds its `Api::openapi()` here).
pub fn extra_docs() -> Vec<utoipa::openapi::OpenApi> {
    use utoipa::OpenApi as _;
    let mut docs = vec![
        stream::Api::openapi(),
        deposits::Api::openapi(),
        withdrawals::Api::openapi(),
        transfers::Api::openapi(),
        transactions::Api::openapi(),
        statements::Api::openapi(),
        contacts::Api::openapi(),
        password_reset::Api::openapi(),
        challenges::Api::openapi(),
        totp::Api::openapi(),
        kyc::Api::openapi(),
        alerts::Api::openapi(),
        callbacks::Api::openapi(),
        quotes::Api::openapi(),
    ];
    docs.extend(admin::docs());
    docs.push(crate::webapp::Api::openapi());
    docs
}

/// Any request no route took: 405 with `Allow` when the path is a documented one
/// (the method is not), a problem+json 404 otherwise.
pub async fn not_found(req: actix_web::HttpRequest) -> actix_web::HttpResponse {
    use crate::error::{ApiError, ErrorCode};
    use actix_web::ResponseError as _;
    match crate::openapi::allowed(req.path()) {
        Some(methods) => {
            let allow = methods.join(", ");
            let mut resp = ApiError::new(
                ErrorCode::MethodNotAllowed,
                format!(
                    "{} is not served on this path; it serves {allow}.",
                    req.method()
                ),
            )
            .error_response();
            if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&allow) {
                resp.headers_mut().insert(actix_web::http::header::ALLOW, v);
            }
            resp
        }
        None => ApiError::not_found("route").error_response(),
    }
}
