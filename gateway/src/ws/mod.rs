//! The websocket streams' connections: the wire format (`frame`), one
//! connection's plumbing shared by both streams (`link`: bounded queue, heartbeat,
//! close codes), and the task behind each stream (`account`, `admin`). The HTTP
//! side — authentication at the handshake, the upgrade, OpenAPI — is in
//! `crate::routes::stream`; shared counters and the `system.status` channel are in
//! `crate::stream`.

pub mod account;
pub mod admin;
pub mod frame;
pub mod link;
