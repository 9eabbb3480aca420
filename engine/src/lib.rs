//! OKPay's transaction engine: the money domain as pure functions, one actor per
//! account to serialize each account's changes, and a durable journal with group
//! commit. It knows nothing of HTTP; the gateway drives it through [`Engine`].

pub mod ids;
pub mod store;
