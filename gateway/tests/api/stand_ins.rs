//! Real servers on loopback standing in for the outside world in the integration
//! tests: an SMTP server process (`tests/support/smtp_sink.py`, Python standard
//! library) and an HTTP server recording every request it gets (the SMS gateway,
//! the card processor, the payout processor, a webhook receiver), answering with
//! a status the test chooses per request.

use std::io::BufRead as _;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use parking_lot::Mutex;
use serde_json::Value;

/// The SMTP server process; every message it received, decoded.
pub struct SmtpSink {
    pub port: u16,
    child: Child,
    mails: Arc<Mutex<Vec<Value>>>,
}

impl SmtpSink {
    pub fn start() -> SmtpSink {
        Self::start_on(0)
    }

    /// On `port` (0: a free one).
    pub fn start_on(port: u16) -> SmtpSink {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/smtp_sink.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the SMTP sink");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let port: u16 = lines.next().unwrap().unwrap().trim().parse().unwrap();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let sink = mails.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().push(serde_json::from_str(&line).unwrap());
            }
        });
        SmtpSink { port, child, mails }
    }

    pub fn mails(&self) -> Vec<Value> {
        self.mails.lock().clone()
    }

    /// Waits (up to 20 s) for a mail to `to`; returns the newest.
    pub async fn wait_for(&self, to: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(m) = self.mails().into_iter().rev().find(|m| m["to"][0] == to) {
                return m;
            }
            assert!(Instant::now() < deadline, "no mail to {to} arrived");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request an [`HttpStandIn`] received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The status it was answered.
    pub status: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Responder = dyn Fn(&Received, usize) -> (u16, String) + Send + Sync;

/// An HTTP server that records requests and answers `respond(request, n)`, where
/// `n` counts earlier requests to the same path.
pub struct HttpStandIn {
    pub base: String,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Option<actix_web::dev::ServerHandle>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpStandIn {
    pub fn start(
        respond: impl Fn(&Received, usize) -> (u16, String) + Send + Sync + 'static,
    ) -> HttpStandIn {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let respond: Arc<Responder> = Arc::new(respond);
        let (tx, rx) = std::sync::mpsc::channel();
        let log = received.clone();
        let thread = std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    let log = log.clone();
                    let respond = respond.clone();
                    App::new().default_service(web::to(
                        move |req: HttpRequest, body: web::Bytes| {
                            let log = log.clone();
                            let respond = respond.clone();
                            async move {
                                let mut r = Received {
                                    method: req.method().to_string(),
                                    path: req.uri().to_string(),
                                    headers: req
                                        .headers()
                                        .iter()
                                        .map(|(n, v)| {
                                            (n.to_string(), v.to_str().unwrap_or("").to_owned())
                                        })
                                        .collect(),
                                    body: String::from_utf8_lossy(&body).into_owned(),
                                    status: 0,
                                };
                                let n = log.lock().iter().filter(|x| x.path == r.path).count();
                                let (status, reply) = respond(&r, n);
                                r.status = status;
                                log.lock().push(r);
                                HttpResponse::build(
                                    actix_web::http::StatusCode::from_u16(status).unwrap(),
                                )
                                .content_type("application/json")
                                .body(reply)
                            }
                        },
                    ))
                })
                .workers(1)
                .listen(listener)
                .unwrap()
                .run();
                tx.send(server.handle()).unwrap();
                let _ = server.await;
            });
        });
        let handle = rx.recv().unwrap();
        HttpStandIn {
            base,
            received,
            stop: Some(handle),
            thread: Some(thread),
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().clone()
    }

    /// Waits (up to 20 s) until `n` requests satisfy `pred`; returns them.
    pub async fn wait_for(&self, n: usize, pred: impl Fn(&Received) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got: Vec<Received> = self.received().into_iter().filter(|r| pred(r)).collect();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} requests arrived: {:?}",
                got.len(),
                self.received()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for HttpStandIn {
    fn drop(&mut self) {
        if let Some(h) = self.stop.take() {
            drop(h.stop(false));
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
