//! Test support shared by integration tests.

pub mod redis_server;
pub mod crash_workload;
