//! OKPay's transaction engine: the money domain as pure functions, one actor per
//! account to serialize each account's changes, and a durable journal with group
//! commit. It knows nothing of HTTP; the gateway drives it through [`Engine`].

pub mod cluster;
pub mod codec;
pub mod coord;
pub mod domain;
pub mod engine;
pub mod ids;
pub mod money;
pub mod policy;
pub mod runtime;
pub mod store;
pub mod time;

pub use domain::view::Outcome;
pub use domain::{Command, Rejection};
pub use engine::{Engine, EngineConfig, Subscription};
pub use runtime::{EngineError, RuntimeConfig, RuntimeStats};
