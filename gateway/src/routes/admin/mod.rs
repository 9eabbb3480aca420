//! Operators' routes, one file per resource (`Authorization: Bearer <token>` of
//! a named operator or the bootstrap admin token; see `crate::operators` for the
//! roles, and `crate::operator_audit` for the trail every action writes). The operators'
//! websocket is in `routes::stream`.
//!
//! Admin routes are not blocked by maintenance: operators must be able to freeze
//! an account, or end maintenance, while it is on.

pub mod accounts;
pub mod alerts;
pub mod audit;
pub mod cluster;
pub mod deliveries;
pub mod kyc;
pub mod ledger;
pub mod maintenance;
pub mod operators;
pub mod outbox;
pub mod reconciliation;
pub mod webhooks;
pub mod withdrawals;

use actix_web::web;

/// Registers every operator route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    accounts::configure(cfg);
    outbox::configure(cfg);
    ledger::configure(cfg);
    maintenance::configure(cfg);
    kyc::configure(cfg);
    operators::configure(cfg);
    audit::configure(cfg);
    cluster::configure(cfg);
    alerts::configure(cfg);
    deliveries::configure(cfg);
    withdrawals::configure(cfg);
    webhooks::configure(cfg);
    reconciliation::configure(cfg);
}

/// The OpenAPI docs of the operator routes (each resource adds its `Api` here).
pub fn docs() -> Vec<utoipa::openapi::OpenApi> {
    use utoipa::OpenApi as _;
    vec![
        accounts::Api::openapi(),
        outbox::Api::openapi(),
        ledger::Api::openapi(),
        maintenance::Api::openapi(),
        kyc::Api::openapi(),
        operators::Api::openapi(),
        audit::Api::openapi(),
        cluster::Api::openapi(),
        alerts::Api::openapi(),
        deliveries::Api::openapi(),
        withdrawals::Api::openapi(),
        webhooks::Api::openapi(),
        reconciliation::Api::openapi(),
    ]
}
