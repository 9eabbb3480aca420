//! The load phase's transfer client (`transfers.rs` over `http1.rs`) against real
//! HTTP servers on 127.0.0.1:0 started by each test: an actix-web server (what
//! the gateway runs) that checks the request's headers and JSON body and answers
//! 201s, problem+json errors, non-JSON errors, chunked bodies and
//! `Connection: close`; and a scripted TCP server for what a well-behaved server
//! never does (closing mid-request, never answering, odd but legal framing).
//! Each test asserts the labels the report counts (`code`) and how many
//! connections the server saw, never how long anything took.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use okpay_loadtest::api_target::ApiTarget;
use okpay_loadtest::client::User;
use okpay_loadtest::http1::Connection;
use okpay_loadtest::load::{self, LoadShape, Workload};
use okpay_loadtest::stats::Recorder;
use okpay_loadtest::target::LoopbackUrl;
use okpay_loadtest::transfers::Transfers;
use okpay_loadtest::Rate;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

fn users() -> Vec<User> {
    (0..2)
        .map(|i| User {
            account_id: format!("acc_{i}"),
            token: format!("tok{i}"),
        })
        .collect()
}

fn transfers(url: &str) -> Transfers {
    let base = LoopbackUrl::parse(url, &["http"]).unwrap();
    Transfers::new(&base, &users(), 4).unwrap()
}

// ---- an actix-web server ----------------------------------------------------

#[derive(serde::Deserialize)]
struct Body {
    amount: String,
    currency: String,
    to: String,
}

fn problem(status: u16, code: &str, detail: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .content_type("application/problem+json")
        .body(serde_json::json!({"status": status, "code": code, "detail": detail}).to_string())
}

/// `POST /v1/transfers`: refuses what the real server would refuse (no bearer,
/// no key, not JSON), then answers by recipient. A 201's id spells out what the
/// server saw, for the test to compare.
async fn transfer(req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (Some(auth), Some(key)) = (header("authorization"), header("idempotency-key")) else {
        return problem(401, "UNAUTHENTICATED", "bearer and key required");
    };
    if header("content-type").as_deref() != Some("application/json") {
        return problem(415, "UNSUPPORTED_MEDIA_TYPE", "json only");
    }
    let body: Body = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return problem(400, "VALIDATION_FAILED", &e.to_string()),
    };
    let id = format!(
        "tx|{auth}|{key}|{}|{}|{}",
        body.amount, body.currency, body.to
    );
    let created = serde_json::json!({"id": id, "status": "completed", "fee": "0.02"}).to_string();
    match body.to.as_str() {
        "acc_poor" => problem(422, "INSUFFICIENT_FUNDS", "not enough money"),
        "acc_html" => HttpResponse::BadGateway()
            .content_type("text/html")
            .body("<html>bad gateway</html>"),
        "acc_chunked" => {
            let (a, b) = created.split_at(created.len() / 2);
            let parts = [a.to_owned(), b.to_owned()]
                .map(|p| Ok::<_, actix_web::Error>(web::Bytes::from(p)));
            HttpResponse::Created()
                .content_type("application/json")
                .streaming(futures::stream::iter(parts))
        }
        "acc_last" => HttpResponse::Created()
            .content_type("application/json")
            .force_close()
            .body(created),
        _ => HttpResponse::Created()
            .content_type("application/json")
            .body(created),
    }
}

/// An actix-web server in its own thread; stopped on drop.
struct ActixServer {
    url: String,
    connections: Arc<AtomicUsize>,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ActixServer {
    fn start() -> ActixServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let server =
                    HttpServer::new(|| App::new().route("/v1/transfers", web::post().to(transfer)))
                        .workers(1)
                        .on_connect(move |_, _| {
                            counted.fetch_add(1, Ordering::SeqCst);
                        })
                        .listen(listener)
                        .unwrap()
                        .run();
                tx.send(server.handle()).unwrap();
                let _ = server.await;
            });
        });
        ActixServer {
            url,
            connections,
            handle: rx.recv().unwrap(),
            thread: Some(thread),
        }
    }
}

impl Drop for ActixServer {
    fn drop(&mut self) {
        futures::executor::block_on(self.handle.stop(false));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[tokio::test]
async fn answers_are_read_and_errors_labelled_like_the_report_counts_them() {
    let server = ActixServer::start();
    let t = transfers(&server.url);

    let ack = t.send(0, "acc_ok", 123, "run-1").await.unwrap();
    assert_eq!(ack.id, "tx|Bearer tok0|run-1|1.23|CNY|acc_ok");
    assert_eq!(ack.fee_minor, 2);
    // Another user, the same connection: each user's own bearer.
    let ack = t.send(1, "acc_ok", 5, "run-2").await.unwrap();
    assert_eq!(ack.id, "tx|Bearer tok1|run-2|0.05|CNY|acc_ok");

    let e = t.send(1, "acc_poor", 5, "run-3").await.unwrap_err();
    assert_eq!(
        (e.status, e.code.as_str()),
        (Some(422), "INSUFFICIENT_FUNDS")
    );
    assert_eq!(e.detail, "not enough money");
    let e = t.send(0, "acc_html", 5, "run-4").await.unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (Some(502), "HTTP_502"));

    let ack = t.send(0, "acc_chunked", 500, "run-5").await.unwrap();
    assert_eq!(ack.id, "tx|Bearer tok0|run-5|5.00|CNY|acc_chunked");

    // A JSON-special recipient is escaped, as serde_json escapes it.
    let odd = "acc_\"q\"\\x";
    let ack = t.send(0, odd, 1, "run-6").await.unwrap();
    assert_eq!(ack.id, format!("tx|Bearer tok0|run-6|0.01|CNY|{odd}"));

    // Everything so far went over one keep-alive connection.
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);

    // The server closes after this answer (`Connection: close`): the next
    // request opens a new connection and succeeds.
    t.send(0, "acc_last", 1, "run-7").await.unwrap();
    t.send(0, "acc_ok", 1, "run-8").await.unwrap();
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);

    // Refused before anything is sent.
    let e = t.send(2, "acc_ok", 1, "run-9").await.unwrap_err();
    assert_eq!(e.code, "BAD_REQUEST");
    let e = t.send(0, "acc_ok", 1, "run\r\nx: y").await.unwrap_err();
    assert_eq!(e.code, "BAD_REQUEST");
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn concurrent_requests_each_get_their_own_connection_and_answer() {
    let server = ActixServer::start();
    let t = Arc::new(transfers(&server.url));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..16 {
        let t = t.clone();
        tasks.spawn(async move {
            let key = format!("c-{i}");
            let ack = t.send(i % 2, "acc_ok", 1, &key).await.unwrap();
            assert_eq!(
                ack.id,
                format!("tx|Bearer tok{}|{key}|0.01|CNY|acc_ok", i % 2)
            );
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    // At most one connection per request in flight.
    let opened = server.connections.load(Ordering::SeqCst);
    assert!((1..=16).contains(&opened), "{opened}");
}

#[test]
fn only_loopback_urls_with_header_safe_tokens_are_accepted() {
    let base = LoopbackUrl::parse("http://127.0.0.1:1", &["http"]).unwrap();
    let bad = [User {
        account_id: "acc_0".into(),
        token: "tok\r\nx: y".into(),
    }];
    assert!(Transfers::new(&base, &bad, 1).is_err());
    assert!(Transfers::new(&base, &users(), 1).is_ok());
}

// ---- a scripted TCP server ------------------------------------------------

/// What the scripted server does with one request.
#[derive(Clone)]
enum Reply {
    /// Writes these pieces (one write each), then keeps the connection.
    Send(Vec<Vec<u8>>),
    /// Writes these pieces, then closes the connection.
    SendAndClose(Vec<Vec<u8>>),
    /// Closes the connection without answering.
    Close,
    /// Keeps the connection open and never answers.
    Hang,
}

/// A scripted server: `script(connection, request)` says how to answer the
/// `request`-th request of the `connection`-th connection (both from 0).
struct Scripted {
    url: String,
    connections: Arc<AtomicUsize>,
    /// One message per connection the server closed.
    closed: tokio::sync::mpsc::UnboundedReceiver<usize>,
}

async fn scripted(script: fn(usize, usize) -> Reply) -> Scripted {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let (closed_tx, closed) = tokio::sync::mpsc::unbounded_channel();
    let counted = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let n = counted.fetch_add(1, Ordering::SeqCst);
            let closed_tx = closed_tx.clone();
            tokio::spawn(async move {
                serve(socket, n, script).await;
                let _ = closed_tx.send(n);
            });
        }
    });
    Scripted {
        url,
        connections,
        closed,
    }
}

/// Serves one connection until the script or the client closes it.
async fn serve(mut socket: TcpStream, connection: usize, script: fn(usize, usize) -> Reply) {
    let mut buf = Vec::new();
    for request in 0.. {
        if !read_request(&mut socket, &mut buf).await {
            return;
        }
        match script(connection, request) {
            Reply::Send(pieces) => {
                for p in pieces {
                    socket.write_all(&p).await.unwrap();
                    socket.flush().await.unwrap();
                }
            }
            Reply::SendAndClose(pieces) => {
                for p in pieces {
                    socket.write_all(&p).await.unwrap();
                    socket.flush().await.unwrap();
                }
                return;
            }
            Reply::Close => return,
            Reply::Hang => {
                let mut rest = [0u8; 64];
                while matches!(socket.read(&mut rest).await, Ok(n) if n > 0) {}
                return;
            }
        }
    }
}

/// Reads one request (head and `content-length` body) off `socket`, consuming
/// it from `buf`; false when the client closed the connection.
async fn read_request(socket: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    loop {
        if let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            let end = head_end + 4 + length;
            if buf.len() >= end {
                buf.drain(..end);
                return true;
            }
        }
        let mut chunk = [0u8; 4096];
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

const CREATED_BODY: &str = r#"{"id":"tx_1","status":"completed"}"#;

fn created() -> Vec<u8> {
    format!(
        "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{CREATED_BODY}",
        CREATED_BODY.len()
    )
    .into_bytes()
}

#[tokio::test]
async fn a_server_that_closes_mid_request_is_a_transport_error_and_the_next_request_reconnects() {
    let server = scripted(|connection, _| match connection {
        0 => Reply::Close,
        _ => Reply::Send(vec![created()]),
    })
    .await;
    let t = transfers(&server.url);
    let e = t.send(0, "acc_1", 1, "k-1").await.unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (None, "TRANSPORT"), "{e}");
    let ack = t.send(0, "acc_1", 1, "k-2").await.unwrap();
    assert_eq!(ack.id, "tx_1");
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_idle_connection_the_server_closed_is_not_reused() {
    let mut server = scripted(|_, _| Reply::SendAndClose(vec![created()])).await;
    let t = transfers(&server.url);
    t.send(0, "acc_1", 1, "k-1").await.unwrap();
    // The server has closed the connection (its FIN is queued at the client's
    // socket); the harness's runtime notices while the connection is idle.
    assert_eq!(server.closed.recv().await, Some(0));
    tokio::time::sleep(Duration::from_millis(20)).await;
    t.send(0, "acc_1", 1, "k-2").await.unwrap();
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error() {
    // Bind, learn the port, close: nothing listens there any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t = transfers(&format!("http://127.0.0.1:{port}"));
    let e = t.send(0, "acc_1", 1, "k").await.unwrap_err();
    assert_eq!(e.code, "CONNECT", "{e}");
}

#[tokio::test]
async fn no_answer_within_the_request_timeout_is_counted_as_a_timeout() {
    let server = scripted(|_, _| Reply::Hang).await;
    let base = LoopbackUrl::parse(&server.url, &["http"]).unwrap();
    let users = Arc::new(users());
    let target = Arc::new(ApiTarget {
        transfers: Transfers::new(&base, &users, 1).unwrap(),
        users: users.clone(),
        tracker: None,
    });
    let recorder = Arc::new(Recorder::new(Instant::now(), 10, 1));
    let shape = LoadShape {
        rate: Rate::Max,
        duration: Duration::from_millis(50),
        connections: 1,
        request_timeout: Duration::from_millis(200),
        drain: Duration::from_secs(30),
        seed: 1,
    };
    let workload = Arc::new(Workload::new(2, 0.0, "t".into()).unwrap());
    load::drive(target, workload, shape, recorder.clone()).await;
    let s = recorder.finish();
    assert_eq!(s.acked, 0);
    assert_eq!(s.errors.keys().collect::<Vec<_>>(), ["TIMEOUT"]);
    assert_eq!(s.errors["TIMEOUT"], 1);
}

#[tokio::test]
async fn framing_chunked_interim_split_and_until_close_answers() {
    let server = scripted(|connection, _| match connection {
        // A 100 Continue first, then a chunked body with an extension and a
        // trailer, cut at awkward places across writes.
        0 => Reply::Send(vec![
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ntransfer-encoding: chu".to_vec(),
            b"nked\r\n\r\n5;ext=1\r\n{\"id\"\r".to_vec(),
            b"\n1d\r\n:\"tx_c\",\"status\":\"completed\"}\r\n0\r\nx-trailer: 1\r\n".to_vec(),
            b"\r\n".to_vec(),
        ]),
        // HTTP/1.0 with neither a length nor chunks: the body ends at close.
        1 => Reply::SendAndClose(vec![
            b"HTTP/1.0 201 Created\r\n\r\n{\"id\":\"tx_".to_vec(),
            b"u\"}".to_vec(),
        ]),
        // A head split inside the status line, a body split from its head.
        _ => Reply::Send(vec![b"HTTP/1.1 2".to_vec(), created()[10..].to_vec()]),
    })
    .await;
    let address = server.url.trim_start_matches("http://").to_owned();
    let request = b"POST /v1/transfers HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}";

    let mut conn = Connection::connect(&address).await.unwrap();
    let answer = conn.round_trip(request).await.unwrap();
    assert_eq!(answer.status, 201);
    assert_eq!(answer.body, br#"{"id":"tx_c","status":"completed"}"#);
    assert!(conn.reusable());

    let mut conn = Connection::connect(&address).await.unwrap();
    let answer = conn.round_trip(request).await.unwrap();
    assert_eq!(
        (answer.status, answer.body),
        (201, &br#"{"id":"tx_u"}"#[..])
    );
    assert!(!conn.reusable());

    let mut conn = Connection::connect(&address).await.unwrap();
    for _ in 0..3 {
        let answer = conn.round_trip(request).await.unwrap();
        assert_eq!(answer.status, 201);
        assert_eq!(answer.body, CREATED_BODY.as_bytes());
        assert!(conn.reusable());
    }
}

#[tokio::test]
async fn a_malformed_answer_is_a_transport_error_and_the_connection_is_dropped() {
    let server = scripted(|connection, _| match connection {
        0 => Reply::Send(vec![b"HTTP/1.1 abc nonsense\r\n\r\n".to_vec()]),
        1 => Reply::Send(vec![
            b"HTTP/1.1 201 Created\r\ncontent-length: 1x\r\n\r\n".to_vec()
        ]),
        _ => Reply::Send(vec![created()]),
    })
    .await;
    let t = transfers(&server.url);
    for key in ["k-1", "k-2"] {
        let e = t.send(0, "acc_1", 1, key).await.unwrap_err();
        assert_eq!(e.code, "TRANSPORT", "{e}");
    }
    assert_eq!(t.send(0, "acc_1", 1, "k-3").await.unwrap().id, "tx_1");
    assert_eq!(server.connections.load(Ordering::SeqCst), 3);
}
