//! Black-box tests of the `okpay` server: each test starts the real server on a
//! free loopback port with its own data directory and talks to it over HTTP and
//! websockets, as clients do.

mod accounts;
mod admin;
mod attacks;
mod binary;
mod bounds;
mod browser;
mod callbacks;
mod challenges;
mod contacts;
mod deposits;
mod fraud;
mod integrations;
// Not every test module uses every helper.
#[allow(dead_code)]
mod helpers;
mod kyc;
mod locale;
mod nodes;
mod notices;
mod openapi;
mod operators;
mod rails;
mod recipients;
mod reconciliation;
mod redis;
mod security;
mod session_cache;
mod sessions;
mod stand_ins;
mod statements;
mod story;
mod stream;
mod transactions;
mod transfers;
mod withdrawals;
mod ws_client;
