//! OKPay's transaction engine: the money domain as pure functions, one actor per
//! account to serialize each account's changes, and a durable journal with group
//! commit. It knows nothing of HTTP; the gateway drives it through [`Engine`].

pub mod domain;
pub mod ids;
pub mod money;
pub mod policy;
pub mod store;
pub mod time;
