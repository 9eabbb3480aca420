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
pub mod extract;
pub mod health;
pub mod kyc;
pub mod password_reset;
pub mod quotes;
pub mod recipient;
pub mod sessions;
pub mod stream;
pub mod totp;
pub mod transactions;
pub mod transfers;
pub mod withdrawals;

use actix_web::web;

/// Registers all routes on an `App`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    health::configure(cfg);
    account::configure(cfg);
    sessions::configure(cfg);
    stream::configure(cfg);
    admin::configure(cfg);
    deposits::configure(cfg);
    withdrawals::configure(cfg);
    transfers::configure(cfg);
    transactions::configure(cfg);
    contacts::configure(cfg);
    password_reset::configure(cfg);
    challenges::configure(cfg);
    totp::configure(cfg);
    kyc::configure(cfg);
    alerts::configure(cfg);
    callbacks::configure(cfg);
    quotes::configure(cfg);
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

/// Any unknown route: a problem+json 404.
pub async fn not_found() -> Result<actix_web::HttpResponse, crate::error::ApiError> {
    Err(crate::error::ApiError::not_found("route"))
}
