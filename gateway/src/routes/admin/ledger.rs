//! The ledger audit for operators: every currency's money in, out, held and in
//! flight, and whether it balances.

use std::collections::BTreeMap;

use actix_web::{get, web, HttpResponse};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::auth::Admin;
use crate::error::{ApiResult, Problem};
use crate::routes::extract::money;
use crate::state::AppState;

/// One currency's audit figures, in the currency's decimals.
#[derive(Serialize, ToSchema)]
pub struct CurrencyAudit {
    /// Money that came in through deposits (net of nothing).
    pub deposited: String,
    pub fees: String,
    /// Money that left through settled withdrawals.
    pub paid_out: String,
    /// Every account's available + held.
    pub balances: String,
    /// Transfers and withdrawals under way.
    pub in_flight: String,
}

#[derive(Serialize, ToSchema)]
pub struct LedgerAudit {
    /// Every configured currency (and any other one that holds money).
    pub currencies: BTreeMap<String, CurrencyAudit>,
    /// Whether `deposited = balances + in_flight + fees + paid_out` holds in every
    /// currency. Exact at rest; while money moves, a transfer may be seen on
    /// neither or both sides for an instant.
    pub balanced: bool,
}

/// The ledger audit over every account.
#[utoipa::path(get, path = "/v1/admin/ledger", tag = "admin", security(("admin" = [])),
    responses(
        (status = 200, body = LedgerAudit),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 503, body = Problem, description = "UNAVAILABLE"),
    ))]
#[get("/v1/admin/ledger")]
pub async fn ledger(_admin: Admin, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let audit = state.engine.audit().await?;
    let policy = state.engine.policy();
    let mut ledger = audit.currencies;
    // Configured currencies appear even before any money moved in them.
    for c in policy
        .currencies
        .iter()
        .filter_map(|c| policy.currency(&c.code).ok())
    {
        ledger.entry(c).or_default();
    }
    let currencies = ledger
        .iter()
        .map(|(c, l)| {
            (
                c.code().to_owned(),
                CurrencyAudit {
                    deposited: money(l.deposited, *c),
                    fees: money(l.fees, *c),
                    paid_out: money(l.paid_out, *c),
                    balances: money(l.balances, *c),
                    in_flight: money(l.in_flight, *c),
                },
            )
        })
        .collect();
    let balanced = ledger.values().all(|l| l.balanced());
    if !balanced {
        tracing::error!("the ledger audit is NOT balanced");
    }
    Ok(HttpResponse::Ok().json(LedgerAudit {
        currencies,
        balanced,
    }))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(ledger);
}

/// The OpenAPI part of the ledger route.
#[derive(OpenApi)]
#[openapi(
    paths(ledger),
    components(schemas(CurrencyAudit, LedgerAudit)),
    tags((name = "admin", description = "Operators' routes (admin token)")),
)]
pub struct Api;
