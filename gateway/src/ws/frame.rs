//! The JSON of the websocket streams, both ways: the frames the server pushes
//! (events, `system.status`, `pong`, errors, gaps) and the messages clients send
//! (`ping`, `resume`). Kept apart from the connection loop so the wire format can
//! be read, and unit-tested, in one place.
//!
//! Frame shapes:
//! - account event: `{"seq", "type", "at", "data"}`; `seq` increases per account;
//! - admin event: `{"type", "account_id", "seq", "at", "data"}`;
//! - `system.status`: `{"type", "at", "data": {"maintenance", "message"}}` — no
//!   `seq`, because it belongs to no account's sequence and must not move a
//!   client's resume point;
//! - `stream.gap`: `{"type", "at", "data": {"after_seq", "first_seq"}}` — events
//!   after the requested seq are no longer retained; refetch state (`GET /v1/account`);
//! - `pong`: `{"type": "pong"}`; `error`: `{"type": "error", "data": {"code", "detail"}}`.

use chrono::{DateTime, SecondsFormat, Utc};
use okpay_engine::domain::notification::Notification;
use okpay_engine::ids::AccountId;
use serde::Serialize;
use serde_json::{json, Value};

use crate::error::ErrorCode;
use crate::routes::extract::time;
use crate::stream::SystemStatus;

/// Largest message a client may send (one frame, or continuations together).
/// Client messages are tiny (`ping`, `resume`); anything this big is abuse.
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 64 * 1024;

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An account event frame, serialized straight to text (one per event per
/// socket, the stream's hot path) rather than built as a `Value` tree first.
/// Fields in the order a `json!` object writes them (sorted), so the text is
/// byte for byte what it was.
#[derive(Serialize)]
struct EventFrame<'a> {
    at: String,
    data: Value,
    seq: u64,
    #[serde(rename = "type")]
    kind: &'a str,
}

/// One account event, as pushed on `GET /v1/stream`.
pub fn event(n: &Notification) -> String {
    let frame = EventFrame {
        at: rfc3339(time(n.at)),
        data: n.kind.data_json(),
        seq: n.seq,
        kind: n.kind.type_name(),
    };
    // unwrap: a struct of strings, a number and a `Value` always serializes.
    serde_json::to_string(&frame).unwrap()
}

/// One event of any account, as pushed on `GET /v1/admin/stream`.
pub fn admin_event(account: AccountId, n: &Notification) -> String {
    json!({
        "type": n.kind.type_name(),
        "account_id": account.to_string(),
        "seq": n.seq,
        "at": rfc3339(time(n.at)),
        "data": n.kind.data_json(),
    })
    .to_string()
}

/// Maintenance switched on or off.
pub fn system_status(status: &SystemStatus, at: DateTime<Utc>) -> String {
    json!({
        "type": "system.status",
        "at": rfc3339(at),
        "data": status,
    })
    .to_string()
}

/// The replay could not start right after `after_seq`: the events from there up
/// to `first_seq` (exclusive) were no longer retained.
pub fn gap(after_seq: u64, first_seq: Option<u64>, at: DateTime<Utc>) -> String {
    json!({
        "type": "stream.gap",
        "at": rfc3339(at),
        "data": {"after_seq": after_seq, "first_seq": first_seq},
    })
    .to_string()
}

/// The answer to a client's `{"type": "ping"}`.
pub fn pong() -> String {
    json!({"type": "pong"}).to_string()
}

/// A client message the server understood as JSON but cannot act on; the socket
/// stays open (clients may be newer than the server).
pub fn error(code: ErrorCode, detail: &str) -> String {
    json!({"type": "error", "data": {"code": code.as_str(), "detail": detail}}).to_string()
}

/// What a client may send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// `{"type": "ping"}`: answered with `{"type": "pong"}`.
    Ping,
    /// `{"type": "resume", "after_seq": N}`: replay retained events after N.
    Resume { after_seq: u64 },
}

/// Why a client's text could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadMessage {
    /// Not JSON at all: the client does not speak this protocol; close the socket.
    NotJson,
    /// JSON, but not a message this server knows (unknown `type`, missing or
    /// malformed fields): answer with an `error` frame and keep going.
    Unsupported(String),
}

/// Parses a client's text frame.
pub fn parse_client(text: &str) -> Result<ClientMessage, BadMessage> {
    let value: Value = serde_json::from_str(text).map_err(|_| BadMessage::NotJson)?;
    match value.get("type").and_then(Value::as_str) {
        Some("ping") => Ok(ClientMessage::Ping),
        Some("resume") => value
            .get("after_seq")
            .and_then(Value::as_u64)
            .map(|after_seq| ClientMessage::Resume { after_seq })
            .ok_or_else(|| {
                BadMessage::Unsupported(
                    "resume needs after_seq, a non-negative integer.".to_owned(),
                )
            }),
        Some(other) => Err(BadMessage::Unsupported(format!(
            "Unknown message type {:?}; send ping or resume.",
            other.chars().take(64).collect::<String>()
        ))),
        None => Err(BadMessage::Unsupported(
            "Messages are JSON objects with a \"type\" (ping or resume).".to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;
    use okpay_engine::domain::notification::NotificationKind;
    use okpay_engine::domain::state::AccountStatus;
    use okpay_engine::time::Timestamp;

    fn status_changed(seq: u64) -> Notification {
        Notification {
            seq,
            at: Timestamp(1_700_000_000_123),
            kind: NotificationKind::StatusChanged {
                from: AccountStatus::Active,
                to: AccountStatus::Frozen,
                reason: "review".into(),
            },
        }
    }

    #[test]
    fn event_frames_follow_the_contract() {
        let v: Value = serde_json::from_str(&event(&status_changed(42))).unwrap();
        assert_eq!(v["seq"], 42);
        assert_eq!(v["type"], "account.status_changed");
        assert_eq!(v["at"], "2023-11-14T22:13:20.123Z");
        assert_eq!(
            v["data"],
            json!({"from": "active", "to": "frozen", "reason": "review"})
        );
        let a: Value =
            serde_json::from_str(&admin_event(AccountId(255), &status_changed(7))).unwrap();
        assert_eq!(a["account_id"], "acc_00000000000000ff");
        assert_eq!(a["seq"], 7);
        assert_eq!(a["type"], "account.status_changed");
    }

    #[test]
    fn event_frames_are_the_text_a_json_object_would_give() {
        let n = status_changed(42);
        let as_object = json!({
            "seq": n.seq,
            "type": n.kind.type_name(),
            "at": rfc3339(time(n.at)),
            "data": n.kind.data_json(),
        })
        .to_string();
        assert_eq!(event(&n), as_object);
    }

    #[test]
    fn system_frames_carry_no_seq() {
        let at = Utc.timestamp_millis_opt(1_764_408_600_000).unwrap();
        let v: Value = serde_json::from_str(&system_status(
            &SystemStatus {
                maintenance: true,
                message: Some("upgrade".into()),
            },
            at,
        ))
        .unwrap();
        assert_eq!(v["at"], "2025-11-29T09:30:00.000Z");
        assert_eq!(v["type"], "system.status");
        assert!(v.get("seq").is_none());
        assert_eq!(
            v["data"],
            json!({"maintenance": true, "message": "upgrade"})
        );
    }

    #[test]
    fn client_messages_parse_or_say_why_not() {
        assert_eq!(parse_client(r#"{"type":"ping"}"#), Ok(ClientMessage::Ping));
        assert_eq!(
            parse_client(r#"{"type":"resume","after_seq":12}"#),
            Ok(ClientMessage::Resume { after_seq: 12 })
        );
        assert_eq!(parse_client("hello"), Err(BadMessage::NotJson));
        assert_eq!(parse_client(""), Err(BadMessage::NotJson));
        for unsupported in [
            r#"{"type":"resume"}"#,
            r#"{"type":"resume","after_seq":-1}"#,
            r#"{"type":"subscribe"}"#,
            r#"[1,2]"#,
            r#"42"#,
        ] {
            assert!(
                matches!(parse_client(unsupported), Err(BadMessage::Unsupported(_))),
                "{unsupported}"
            );
        }
    }
}
