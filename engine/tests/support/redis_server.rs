//! The shared private-`redis-server` harness (see the `okpay-testsupport` crate).

pub use okpay_testsupport::redis_server::*;
