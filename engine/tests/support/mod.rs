//! Test support shared by integration tests.

pub mod cluster_nodes;
pub mod crash_workload;
pub mod redis_server;
