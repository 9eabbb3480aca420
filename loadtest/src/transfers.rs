//! The load's one call, `POST /v1/transfers`, over plain HTTP/1.1 keep-alive
//! connections (`http1.rs`) kept in a small pool: one request at a time per
//! connection, at most as many connections as requests in flight.
//!
//! Why not the [`crate::client::Api`] (reqwest) used for everything else: the
//! harness shares the machine's cores with the server it measures, so its own
//! CPU per transfer lowers the figure it reports. reqwest's general client
//! re-parses the URL, runs each request through its redirect and retry layers
//! and a keyed pool, and copies headers between maps; even hyper's own client
//! connection hands every request to a separate connection task through a
//! channel and wakes the sender back with the answer. Here the task that sends a
//! transfer writes its bytes and reads the answer itself. Everything that does
//! not change per request (the request line, the `Host` and `Content-Type`
//! headers, each user's `Authorization` header) is laid out once as bytes; per
//! request only the idempotency key, the length and the JSON body are written,
//! into buffers each connection keeps. The server sees the request hyper sent
//! before: the same method, path, headers and body.
//!
//! Failures are labelled as [`crate::client`] labels them: the problem's `code`,
//! `HTTP_<status>`, or `CONNECT` / `TRANSPORT` when no answer arrived (the
//! per-request timeout, `TIMEOUT`, is the load phase's, see `load.rs`).

use std::io::Write as _;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

use crate::client::{CallError, TransferAck, User};
use crate::http1::Connection;
use crate::json_text::Text;
use crate::money::{parse_minor, write_minor, CURRENCY};
use crate::target::LoopbackUrl;

/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The fields of a 201 transfer answer the harness reads.
#[derive(Deserialize)]
struct TransferAnswer<'a> {
    #[serde(borrow)]
    id: Text<'a>,
    #[serde(borrow, default)]
    fee: Option<Text<'a>>,
}

/// A connection with the buffers its requests are written into.
#[derive(Debug)]
struct Lane {
    conn: Connection,
    request: Vec<u8>,
    body: Vec<u8>,
}

/// Sends transfers as the run's users.
#[derive(Debug)]
pub struct Transfers {
    /// `host:port` to connect to.
    address: String,
    /// `POST <path> HTTP/1.1`, `host` and `content-type`, each with its CRLF.
    head: Vec<u8>,
    /// The JSON body between the amount's digits and the recipient:
    /// `","currency":"CNY","to":`.
    body_middle: Vec<u8>,
    /// `authorization: Bearer <token>` and its CRLF, of each user by index.
    authorization: Vec<Vec<u8>>,
    /// Connections with no request in flight. Bounded by the requests in flight
    /// at once (a connection is only put back after its answer), and capped.
    idle: Mutex<Vec<Lane>>,
    idle_max: usize,
}

impl Transfers {
    /// For the users of a run against `base`, with up to `connections` requests
    /// in flight.
    pub fn new(base: &LoopbackUrl, users: &[User], connections: usize) -> anyhow::Result<Self> {
        let url = reqwest::Url::parse(base.as_str()).context("the base URL")?;
        let host = url.host_str().context("the base URL has no host")?;
        let port = url
            .port_or_known_default()
            .context("the base URL has no port")?;
        // A host as the URL writes it: IPv6 keeps its brackets in both forms.
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        };
        let path = format!("{}/v1/transfers", url.path().trim_end_matches('/'));
        anyhow::ensure!(
            path.bytes().all(|b| b.is_ascii_graphic()),
            "the base URL's path {path:?} is not a request target"
        );
        anyhow::ensure!(
            is_header_value(authority.as_bytes()),
            "the base URL's host {authority:?} is not a header value"
        );
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {authority}\r\ncontent-type: application/json\r\n"
        )
        .into_bytes();
        let authorization = users
            .iter()
            .map(|u| {
                let line = format!("authorization: Bearer {}\r\n", u.token);
                anyhow::ensure!(
                    is_header_value(u.token.as_bytes()),
                    "a session token that is not a header value"
                );
                Ok(line.into_bytes())
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut body_middle = br#"","currency":"#.to_vec();
        serde_json::to_writer(&mut body_middle, CURRENCY).context("the currency")?;
        body_middle.extend_from_slice(br#","to":"#);
        Ok(Transfers {
            address: format!("{host}:{port}"),
            head,
            body_middle,
            authorization,
            idle: Mutex::new(Vec::with_capacity(connections)),
            idle_max: connections.max(1),
        })
    }

    /// Opens up to `n` connections (at most the pool's cap) and leaves them
    /// idle, so that the load's first requests find them ready, as a client
    /// fleet's keep-alive connections are: otherwise the first second's
    /// requests pay the TCP handshakes and the server's accepts of every
    /// connection the rate needs. Returns how many are idle.
    pub async fn open(&self, n: usize) -> Result<usize, CallError> {
        let n = n.min(self.idle_max);
        let opened = futures::future::join_all((0..n).map(|_| self.connect())).await;
        let mut idle = self.idle();
        for lane in opened {
            if idle.len() < self.idle_max {
                idle.push(lane?);
            }
        }
        Ok(idle.len())
    }

    /// An idle connection that is still open, or a new one.
    async fn lane(&self) -> Result<Lane, CallError> {
        loop {
            let Some(lane) = self.idle().pop() else {
                break;
            };
            // Closed by the server (or not reusable) while idle: drop it, try the next.
            if lane.conn.reusable() {
                return Ok(lane);
            }
        }
        self.connect().await
    }

    /// A new connection.
    async fn connect(&self) -> Result<Lane, CallError> {
        let connect = |detail: String| CallError {
            status: None,
            code: "CONNECT".into(),
            detail,
        };
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(&self.address))
            .await
            .map_err(|_| connect("connect timed out".into()))?
            .map_err(|e| connect(e.to_string()))?;
        Ok(Lane {
            conn,
            request: Vec::with_capacity(512),
            body: Vec::with_capacity(128),
        })
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Lane>> {
        // Nothing panics while holding it; tolerate poisoning anyway.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn put_back(&self, lane: Lane) {
        let mut idle = self.idle();
        if idle.len() < self.idle_max {
            idle.push(lane);
        }
    }

    /// The JSON body `{"amount":"1.23","currency":"CNY","to":"<to>"}`, into
    /// `body`: what serde_json writes for a struct of those three strings (a test
    /// holds them equal), without formatting the amount into a string or walking
    /// a serializer.
    fn write_body(
        &self,
        body: &mut Vec<u8>,
        to: &str,
        amount_minor: i64,
    ) -> serde_json::Result<()> {
        body.clear();
        body.extend_from_slice(br#"{"amount":""#);
        write_minor(body, amount_minor);
        body.extend_from_slice(&self.body_middle);
        serde_json::to_writer(&mut *body, to)?;
        body.push(b'}');
        Ok(())
    }

    /// `POST /v1/transfers` as user `from` to account `to` → the transfer id and
    /// fee when answered 201.
    pub async fn send(
        &self,
        from: usize,
        to: &str,
        amount_minor: i64,
        key: &str,
    ) -> Result<TransferAck, CallError> {
        let bad_request = |detail: String| CallError {
            status: None,
            code: "BAD_REQUEST".into(),
            detail,
        };
        let authorization = self
            .authorization
            .get(from)
            .ok_or_else(|| bad_request(format!("no user {from}")))?;
        if !is_header_value(key.as_bytes()) {
            return Err(bad_request(format!(
                "idempotency key {key:?} is not a header value"
            )));
        }
        let mut lane = self.lane().await?;
        let Lane {
            conn,
            request,
            body,
        } = &mut lane;
        self.write_body(body, to, amount_minor)
            .map_err(|e| bad_request(e.to_string()))?;
        request.clear();
        request.extend_from_slice(&self.head);
        request.extend_from_slice(authorization);
        request.extend_from_slice(b"idempotency-key: ");
        request.extend_from_slice(key.as_bytes());
        // Writing into a Vec cannot fail.
        let _ = write!(request, "\r\ncontent-length: {}\r\n\r\n", body.len());
        request.extend_from_slice(body);
        // A connection whose request failed (or timed out: this future dropped)
        // is dropped with it, never put back.
        let answer = conn.round_trip(request).await.map_err(|e| CallError {
            status: None,
            code: "TRANSPORT".into(),
            detail: e.to_string(),
        })?;
        let result = if answer.status != 201 {
            Err(CallError::from_answer(answer.status, answer.body))
        } else {
            match serde_json::from_slice::<TransferAnswer<'_>>(answer.body) {
                Ok(a) => Ok(TransferAck {
                    id: a.id.0.into_owned(),
                    fee_minor: a
                        .fee
                        .and_then(|f| parse_minor(f.as_str()).ok())
                        .unwrap_or(0),
                }),
                Err(e) => Err(CallError {
                    status: Some(201),
                    code: "BAD_RESPONSE".into(),
                    detail: e.to_string(),
                }),
            }
        };
        self.put_back(lane);
        result
    }
}

/// Whether `bytes` may stand in a header value as they are: visible ASCII,
/// spaces and tabs (what the `http` crate accepts, minus obs-text).
fn is_header_value(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::format_minor;

    /// The body as the harness used to serialize it.
    #[derive(serde::Serialize)]
    struct TransferBody<'a> {
        amount: &'a str,
        currency: &'a str,
        to: &'a str,
    }

    #[test]
    fn bodies_are_what_serde_json_writes() {
        let base = LoopbackUrl::parse("http://127.0.0.1:8080", &["http"]).unwrap();
        let t = Transfers::new(&base, &[], 1).unwrap();
        let mut body = Vec::new();
        for (minor, to) in [
            (1, "acc_01J0000000000000000000000"),
            (500, "acc_x"),
            (123_456, "a\"b\\c\u{1}\u{e9}"),
            (-7, ""),
        ] {
            t.write_body(&mut body, to, minor).unwrap();
            let expected = serde_json::to_vec(&TransferBody {
                amount: &format_minor(minor),
                currency: CURRENCY,
                to,
            })
            .unwrap();
            assert_eq!(
                String::from_utf8_lossy(&body),
                String::from_utf8_lossy(&expected)
            );
        }
    }

    #[test]
    fn requests_carry_the_headers_hyper_sent() {
        let base = LoopbackUrl::parse("http://127.0.0.1:8080/api/", &["http"]).unwrap();
        let users = [User {
            account_id: "acc_1".into(),
            token: "tok".into(),
        }];
        let t = Transfers::new(&base, &users, 1).unwrap();
        assert_eq!(t.address, "127.0.0.1:8080");
        assert_eq!(
            String::from_utf8_lossy(&t.head),
            "POST /api/v1/transfers HTTP/1.1\r\nhost: 127.0.0.1:8080\r\ncontent-type: application/json\r\n"
        );
        assert_eq!(t.authorization[0], b"authorization: Bearer tok\r\n");
    }

    /// `open` leaves that many connections idle, accepted by a real listener
    /// before any request, never more than the pool's cap; a refused connect
    /// is an error.
    #[tokio::test]
    async fn the_pool_is_opened_before_the_load() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok(Ok((conn, _))) =
                tokio::time::timeout(Duration::from_millis(500), listener.accept()).await
            {
                held.push(conn);
            }
            held.len()
        });
        let base = LoopbackUrl::parse(&format!("http://127.0.0.1:{port}/"), &["http"]).unwrap();
        let t = Transfers::new(&base, &[], 8).unwrap();
        assert_eq!(t.open(20).await.unwrap(), 8, "capped at the pool's size");
        assert_eq!(t.idle().len(), 8);
        assert_eq!(accepted.await.unwrap(), 8);

        // Nothing listens on the port any more.
        let t = Transfers::new(&base, &[], 2).unwrap();
        assert_eq!(t.open(2).await.unwrap_err().code, "CONNECT");
    }
}
