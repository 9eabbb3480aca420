//! The shared private-`redis-server` harness (see the `okpay-testsupport` crate),
//! started by the durable benchmarks with AOF and `appendfsync always`.

pub use okpay_testsupport::redis_server::*;
