//! A small websocket client over `tokio-tungstenite` for the stream tests: connect
//! with a token in the header or the query, send JSON or raw frames, and read the
//! next meaningful frame (control frames are skipped) with a deadline, so a test
//! that waits for something that never comes fails instead of hanging.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::TestApp;

/// How long a test waits for a frame it expects.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// What the server did next.
#[derive(Debug)]
pub enum Frame {
    Json(Value),
    /// A close frame: code and reason.
    Close(Option<(u16, String)>),
    /// The connection ended without a close frame (or with an I/O error).
    Ended,
}

pub struct WsClient<S = MaybeTlsStream<TcpStream>> {
    pub inner: WebSocketStream<S>,
}

/// A TCP connection whose writes can be switched off after the handshake: a
/// websocket client on it reads every frame but never answers one (tungstenite
/// answers each ping it reads by itself, so a client that reads is never silent
/// otherwise).
pub struct Muted {
    tcp: TcpStream,
    muted: Arc<AtomicBool>,
}

impl AsyncRead for Muted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Muted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.muted.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.muted.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// The handshake request for `path` (e.g. `/v1/stream?after_seq=3`), with the
/// token as a bearer header when given.
pub fn request(
    app: &TestApp,
    path: &str,
    header_token: Option<&str>,
) -> tungstenite::handshake::client::Request {
    let url = app.url(path).replacen("http://", "ws://", 1);
    let mut req = url.into_client_request().unwrap();
    if let Some(t) = header_token {
        req.headers_mut()
            .insert("Authorization", format!("Bearer {t}").parse().unwrap());
    }
    req
}

impl WsClient {
    /// Connects, or returns the handshake's error (an HTTP answer for a refusal).
    pub async fn try_connect(
        app: &TestApp,
        path: &str,
        header_token: Option<&str>,
    ) -> Result<WsClient, tungstenite::Error> {
        let (inner, _) = tokio_tungstenite::connect_async(request(app, path, header_token)).await?;
        Ok(WsClient { inner })
    }

    /// Connects with the token in the `Authorization` header.
    pub async fn connect(app: &TestApp, path: &str, token: &str) -> WsClient {
        Self::try_connect(app, path, Some(token))
            .await
            .expect("websocket handshake")
    }

    /// Connects with the token in the header, then never sends anything again:
    /// the client reads what the server sends, and answers none of its pings.
    pub async fn connect_silent(app: &TestApp, path: &str, token: &str) -> WsClient<Muted> {
        let addr = app.base.trim_start_matches("http://");
        let muted = Arc::new(AtomicBool::new(false));
        let tcp = Muted {
            tcp: TcpStream::connect(addr).await.unwrap(),
            muted: muted.clone(),
        };
        let (inner, _) = tokio_tungstenite::client_async(request(app, path, Some(token)), tcp)
            .await
            .expect("websocket handshake");
        muted.store(true, Ordering::Relaxed);
        WsClient { inner }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsClient<S> {
    pub async fn send_json(&mut self, v: Value) {
        self.inner.send(Message::Text(v.to_string())).await.unwrap();
    }

    /// The next text, close or end, skipping pings and pongs; `None` on timeout.
    pub async fn next_within(&mut self, within: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let next = tokio::time::timeout_at(deadline, self.inner.next())
                .await
                .ok()?;
            return Some(match next {
                Some(Ok(Message::Text(t))) => Frame::Json(serde_json::from_str(&t).unwrap()),
                Some(Ok(Message::Close(c))) => {
                    Frame::Close(c.map(|c| (u16::from(c.code), c.reason.into_owned())))
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Binary(b))) => panic!("unexpected binary frame {b:?}"),
                Some(Err(_)) | None => Frame::Ended,
            });
        }
    }

    /// The next JSON frame; panics on anything else.
    pub async fn json(&mut self) -> Value {
        match self.next_within(PATIENCE).await {
            Some(Frame::Json(v)) => v,
            other => panic!("expected a JSON frame, got {other:?}"),
        }
    }

    /// The next frame that is an event (has a `seq`), skipping system frames.
    pub async fn event(&mut self) -> Value {
        loop {
            let v = self.json().await;
            if v.get("seq").is_some() {
                return v;
            }
        }
    }

    /// Asserts nothing is pending: a ping's pong is the very next frame.
    pub async fn assert_quiet(&mut self) {
        self.send_json(json!({"type": "ping"})).await;
        let next = self.json().await;
        assert_eq!(
            next,
            json!({"type": "pong"}),
            "expected nothing before the pong"
        );
    }

    /// Reads until `n` pings of the server's heartbeat have arrived (answering
    /// each, as any client that reads does); panics on anything else.
    pub async fn pings(&mut self, n: usize) {
        for _ in 0..n {
            let next = tokio::time::timeout(PATIENCE, self.inner.next()).await;
            match next {
                Ok(Some(Ok(Message::Ping(_)))) => {}
                other => panic!("expected a ping, got {other:?}"),
            }
        }
    }

    /// Reads until the server closes; returns the close code (`None` when the
    /// connection ended without a close frame). Panics if it stays open.
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            match self.next_within(PATIENCE).await {
                Some(Frame::Json(_)) => continue,
                Some(Frame::Close(c)) => return c.map(|(code, _)| code),
                Some(Frame::Ended) => return None,
                None => panic!("the server did not close the socket"),
            }
        }
    }
}

/// The HTTP status and body of a refused handshake.
pub fn refusal(e: tungstenite::Error) -> (u16, Value) {
    match e {
        tungstenite::Error::Http(resp) => {
            let ctype = resp
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            assert!(ctype.starts_with("application/problem+json"), "{ctype}");
            let body = resp.body().as_deref().unwrap_or_default();
            (
                resp.status().as_u16(),
                serde_json::from_slice(body).unwrap(),
            )
        }
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
}
