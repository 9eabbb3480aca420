//! Test support shared by the engine's and the gateway's test suites and by the
//! benchmarks: a private `redis-server` per test on a free loopback port, so Redis
//! is tested against the real thing without tests sharing keys, and a private
//! three-master Redis Cluster for the cluster-safe storage.

pub mod redis_cluster;
pub mod redis_server;
