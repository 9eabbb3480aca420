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
use okpay_engine::domain::notification::{Direction, Notification, NotificationKind};
use okpay_engine::ids::{push_hex16, AccountId, OpKind};
use okpay_engine::time::Timestamp;
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

/// Appends an event's time as [`rfc3339`] writes it. The events of one durable
/// batch share their time, and every socket of a worker writes the same events,
/// so the last text is kept per worker thread and reused while the time is the
/// same (formatting a date is most of a frame's cost otherwise).
fn push_event_time(out: &mut String, at: Timestamp) {
    thread_local! {
        static LAST: std::cell::RefCell<(Timestamp, String)> =
            const { std::cell::RefCell::new((Timestamp(i64::MIN), String::new())) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != at || last.1.is_empty() {
            *last = (at, rfc3339(time(at)));
        }
        out.push_str(&last.1);
    });
}

/// The frame of any other event kind (rare): its `data` as the engine's
/// `data_json` builds it. Fields in the order a `json!` object writes them
/// (sorted), so the text is byte for byte what it was.
#[derive(Serialize)]
struct OtherFrame<'a> {
    at: String,
    data: Value,
    seq: u64,
    #[serde(rename = "type")]
    kind: &'a str,
}

/// One account event, as pushed on `GET /v1/stream`.
///
/// The two kinds every transfer raises on both sides (`transaction.updated`,
/// `balance.updated`) are the stream's hot path (one frame per event per
/// socket): they are written field by field into one buffer, in the sorted
/// order of the object [`NotificationKind::data_json`] builds, so the text is
/// the same without the intermediate tree or a string per field. Every value
/// written unescaped is known safe: ids are hex, amounts decimal digits,
/// currency codes three ASCII capitals, the rest fixed names. A test compares
/// the two for every shape.
pub fn event(n: &Notification) -> String {
    transfer_event(n).unwrap_or_else(|| {
        let frame = OtherFrame {
            at: rfc3339(time(n.at)),
            data: n.kind.data_json(),
            seq: n.seq,
            kind: n.kind.type_name(),
        };
        // unwrap: a struct of strings, numbers and a `Value` always serializes.
        serde_json::to_string(&frame).unwrap()
    })
}

/// [`event`] for the two kinds written by hand; `None` for any other.
fn transfer_event(n: &Notification) -> Option<String> {
    use std::fmt::Write as _;
    let start = || {
        let mut out = String::with_capacity(320);
        out.push_str("{\"at\":\"");
        push_event_time(&mut out, n.at);
        out
    };
    // unwrap (every `write!` below): writing to a String cannot fail.
    match &n.kind {
        NotificationKind::TransactionUpdated {
            id,
            kind,
            status,
            amount,
            fee,
            currency,
            direction,
            counterparty,
        } => {
            let scale = currency.scale();
            let (mut amount, mut fee) = (*amount, *fee);
            amount.rescale(scale);
            fee.rescale(scale);
            let mut out = start();
            write!(
                out,
                "\",\"data\":{{\"amount\":\"{amount}\",\"counterparty\":"
            )
            .unwrap();
            match counterparty {
                Some(a) => {
                    out.push_str("\"acc_");
                    push_hex16(&mut out, a.0);
                    out.push('"');
                }
                None => out.push_str("null"),
            }
            write!(
                out,
                ",\"currency\":\"{}\",\"direction\":\"{}\",\"fee\":\"{fee}\",\"id\":\"",
                currency.code(),
                match direction {
                    Direction::In => "in",
                    Direction::Out => "out",
                },
            )
            .unwrap();
            id.write_display(*kind, &mut out);
            write!(
                out,
                "\",\"status\":\"{}\",\"type\":\"{}\"}},\"seq\":{},\"type\":\"{}\"}}",
                status.name(),
                match kind {
                    OpKind::Deposit => "deposit",
                    OpKind::Withdrawal => "withdrawal",
                    _ => "transfer",
                },
                n.seq,
                n.kind.type_name(),
            )
            .unwrap();
            Some(out)
        }
        NotificationKind::BalanceUpdated {
            currency,
            available,
            held,
        } => {
            let scale = currency.scale();
            let (mut available, mut held) = (*available, *held);
            available.rescale(scale);
            held.rescale(scale);
            let mut out = start();
            write!(
                out,
                "\",\"data\":{{\"available\":\"{available}\",\"currency\":\"{}\",\"held\":\"{held}\"}},\"seq\":{},\"type\":\"{}\"}}",
                currency.code(),
                n.seq,
                n.kind.type_name(),
            )
            .unwrap();
            Some(out)
        }
        // Rare kinds: the engine's own `data_json`.
        _ => None,
    }
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
    use okpay_engine::domain::notification::TxStatus;
    use okpay_engine::domain::state::AccountStatus;
    use okpay_engine::ids::OpId;
    use okpay_engine::money::Currency;
    use okpay_engine::time::Timestamp;
    use rust_decimal::Decimal;

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

    /// The frame as a `json!` object writes it, from the engine's `data_json`:
    /// what [`event`] must give byte for byte.
    fn as_object(n: &Notification) -> String {
        json!({
            "seq": n.seq,
            "type": n.kind.type_name(),
            "at": rfc3339(time(n.at)),
            "data": n.kind.data_json(),
        })
        .to_string()
    }

    #[test]
    fn event_frames_are_the_text_a_json_object_would_give() {
        let n = status_changed(42);
        assert_eq!(event(&n), as_object(&n));
    }

    #[test]
    fn transaction_and_balance_frames_are_the_text_a_json_object_would_give() {
        let cny = Currency::new("CNY", 2).unwrap();
        let jpy = Currency::new("JPY", 0).unwrap();
        let mut kinds = vec![];
        for (currency, amount) in [(cny, Decimal::new(12345, 2)), (jpy, Decimal::new(7, 0))] {
            kinds.push(NotificationKind::BalanceUpdated {
                currency,
                available: amount,
                held: Decimal::ZERO,
            });
            for op in [
                OpKind::Transfer,
                OpKind::Deposit,
                OpKind::Withdrawal,
                OpKind::Session,
            ] {
                for status in [
                    TxStatus::Processing,
                    TxStatus::Completed,
                    TxStatus::Failed,
                    TxStatus::Reversed,
                ] {
                    for (direction, counterparty) in [
                        (Direction::In, Some(AccountId(0xabc))),
                        (Direction::Out, None),
                    ] {
                        kinds.push(NotificationKind::TransactionUpdated {
                            id: OpId {
                                account: AccountId(u64::MAX),
                                n: 17,
                            },
                            kind: op,
                            status,
                            amount,
                            fee: Decimal::new(1, 1),
                            currency,
                            direction,
                            counterparty,
                        });
                    }
                }
            }
        }
        for (seq, kind) in kinds.into_iter().enumerate() {
            let n = Notification {
                seq: seq as u64,
                at: Timestamp(1_700_000_000_123),
                kind,
            };
            assert_eq!(event(&n), as_object(&n), "{n:?}");
        }
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
