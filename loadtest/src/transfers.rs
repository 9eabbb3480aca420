//! The load's one call, `POST /v1/transfers`, over plain HTTP/1.1 connections
//! (hyper's connection API) kept in a small pool: one request at a time per
//! connection, at most as many connections as requests in flight.
//!
//! Why not the [`crate::client::Api`] (reqwest) used for everything else: the
//! harness shares the machine's cores with the server it measures, so its own
//! CPU per transfer lowers the figure it reports. reqwest's general client
//! re-parses the URL, runs each request through its redirect and retry layers
//! and a keyed pool, and copies headers between maps; profiled under load that
//! was about a third of the harness's CPU per transfer, none of it needed to send
//! one known request to one loopback address. Everything that does not change
//! per request (the path, the `Host` header, each user's `Authorization` header)
//! is built once here.
//!
//! Failures are labelled as [`crate::client`] labels them: the problem's `code`,
//! `HTTP_<status>`, or `CONNECT` / `TRANSPORT` when no answer arrived (the
//! per-request timeout is the load phase's, see `load.rs`).

use std::borrow::Cow;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};

use crate::client::{CallError, TransferAck, User};
use crate::money::{format_minor, parse_minor, CURRENCY};
use crate::target::LoopbackUrl;

/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The body of `POST /v1/transfers`.
#[derive(Serialize)]
struct TransferBody<'a> {
    amount: &'a str,
    currency: &'a str,
    to: &'a str,
}

/// The fields of a 201 transfer answer the harness reads.
#[derive(Deserialize)]
struct TransferAnswer<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow, default)]
    fee: Option<Cow<'a, str>>,
}

type Connection = SendRequest<Full<Bytes>>;

/// Sends transfers as the run's users.
#[derive(Debug)]
pub struct Transfers {
    /// `host:port` to connect to.
    address: String,
    /// The `Host` header.
    host: HeaderValue,
    /// The request path (the base URL's path, if any, then `/v1/transfers`).
    path: String,
    /// `Bearer <token>` of each user, by index.
    bearer: Vec<HeaderValue>,
    /// Connections with no request in flight. Bounded by the requests in flight
    /// at once (a connection is only put back after its answer), and capped.
    idle: Mutex<Vec<Connection>>,
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
        let bearer = users
            .iter()
            .map(|u| HeaderValue::try_from(format!("Bearer {}", u.token)))
            .collect::<Result<Vec<_>, _>>()
            .context("a session token that is not a header value")?;
        Ok(Transfers {
            address: format!("{host}:{port}"),
            host: HeaderValue::try_from(authority).context("the base URL's host")?,
            path: format!("{}/v1/transfers", url.path().trim_end_matches('/')),
            bearer,
            idle: Mutex::new(Vec::with_capacity(connections)),
            idle_max: connections.max(1),
        })
    }

    /// An idle connection that is still open, or a new one.
    async fn connection(&self) -> Result<Connection, CallError> {
        loop {
            let Some(mut conn) = self.idle().pop() else {
                break;
            };
            // Closed by the server (or broken) while idle: drop it, try the next.
            if conn.ready().await.is_ok() {
                return Ok(conn);
            }
        }
        let transport = |code: &str, detail: String| CallError {
            status: None,
            code: code.into(),
            detail,
        };
        let stream = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect(&self.address),
        )
        .await
        .map_err(|_| transport("CONNECT", "connect timed out".into()))?
        .map_err(|e| transport("CONNECT", e.to_string()))?;
        // Small requests, one at a time: Nagle would only delay them.
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| transport("CONNECT", e.to_string()))?;
        // Drives the connection; ends when the sender is dropped or the socket closes.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Connection>> {
        // Nothing panics while holding it; tolerate poisoning anyway.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn put_back(&self, conn: Connection) {
        let mut idle = self.idle();
        if idle.len() < self.idle_max {
            idle.push(conn);
        }
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
        let body = serde_json::to_vec(&TransferBody {
            amount: &format_minor(amount_minor),
            currency: CURRENCY,
            to,
        })
        .map_err(|e| bad_request(e.to_string()))?;
        let bearer = self
            .bearer
            .get(from)
            .ok_or_else(|| bad_request(format!("no user {from}")))?;
        let key = HeaderValue::try_from(key).map_err(|e| bad_request(e.to_string()))?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.path.as_str())
            .header(HOST, self.host.clone())
            .header(AUTHORIZATION, bearer.clone())
            .header("idempotency-key", key)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| bad_request(e.to_string()))?;
        let mut conn = self.connection().await?;
        let transport = |e: hyper::Error| CallError {
            status: None,
            code: "TRANSPORT".into(),
            detail: e.to_string(),
        };
        // A connection whose request failed is dropped, never put back.
        let response = conn.send_request(request).await.map_err(transport)?;
        let status = response.status();
        let answer = response
            .into_body()
            .collect()
            .await
            .map_err(transport)?
            .to_bytes();
        self.put_back(conn);
        if status != StatusCode::CREATED {
            return Err(CallError::from_answer(status.as_u16(), &answer));
        }
        let a: TransferAnswer<'_> = serde_json::from_slice(&answer).map_err(|e| CallError {
            status: Some(StatusCode::CREATED.as_u16()),
            code: "BAD_RESPONSE".into(),
            detail: e.to_string(),
        })?;
        Ok(TransferAck {
            id: a.id.into_owned(),
            fee_minor: a
                .fee
                .as_deref()
                .and_then(|f| parse_minor(f).ok())
                .unwrap_or(0),
        })
    }
}
