//! The functional core: plain-data account state, commands, events, and the two
//! pure functions that carry every business rule, [`decide`] and [`apply`].

pub mod apply;
pub mod audit;
pub mod command;
pub mod decide;
pub mod destination;
pub mod event;
pub mod fraud;
pub mod history;
pub mod invariants;
pub mod locale;
pub mod notification;
pub mod ops;
pub mod protocol;
pub mod rejection;
pub mod security;
pub mod state;
pub mod view;
pub mod window;

pub use apply::apply;
pub use command::{Command, DepositMethod, Profile, WithdrawalMethod};
pub use decide::decide;
pub use destination::PayoutDestination;
pub use event::{Event, EventBody};
pub use locale::Locale;
pub use rejection::Rejection;
pub use state::{AccountState, AccountStatus};
#[cfg(test)]
mod tests;
