//! `TestApp`: a real server on port 0 with its own embedded store, and a few
//! request helpers so tests read as user stories.

use std::net::TcpListener;
use std::time::Duration;

use okpay_gateway::config::Settings;
use serde_json::{json, Value};

pub const ADMIN: &str = "test-admin-token";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestApp {
    /// Starts a server with test settings (dev mode, admin token, short payout
    /// delay), adjusted by `tweak`.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
        Self::spawn_on(TcpListener::bind("127.0.0.1:0").unwrap(), tweak).await
    }

    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Registers a user and returns the account id.
    pub async fn register(&self, email: &str) -> String {
        let r = self
            .client
            .post(self.url("/v1/accounts"))
            .json(&json!({"email": email, "password": "correct horse", "display_name": email}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        r.json::<Value>().await.unwrap()["account_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Logs in and returns the token.
    pub async fn login(&self, login: &str) -> String {
        let r = self
            .client
            .post(self.url("/v1/sessions"))
            .json(&json!({"login": login, "password": "correct horse", "device_id": "test-device"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        r.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Registers and logs in: (account id, token).
    pub async fn user(&self, email: &str) -> (String, String) {
        let id = self.register(email).await;
        let token = self.login(email).await;
        (id, token)
    }

    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// A POST with an Idempotency-Key.
    pub async fn post_idem(
        &self,
        path: &str,
        token: &str,
        key: &str,
        body: Value,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .delete(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Asserts a problem+json error with `status` and `code`; returns the body.
pub async fn assert_problem(r: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status().as_u16(), status);
    let ctype = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(
        ctype.starts_with("application/problem+json"),
        "content-type {ctype}"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status);
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    body
}

/// Admin and websocket-test helpers.
impl TestApp {
    pub async fn put(&self, path: &str, token: &str, body: Value) -> reqwest::Response {
        self.client
            .put(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Freezes `account` as an operator; asserts 200.
    pub async fn freeze(&self, account: &str, reason: &str) {
        let r = self
            .post(
                &format!("/v1/admin/accounts/{account}/freeze"),
                ADMIN,
                json!({"reason": reason}),
            )
            .await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    /// Unfreezes `account` as an operator; asserts 200.
    pub async fn unfreeze(&self, account: &str, reason: &str) {
        let r = self
            .post(
                &format!("/v1/admin/accounts/{account}/unfreeze"),
                ADMIN,
                json!({"reason": reason}),
            )
            .await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    /// Switches maintenance; asserts 200.
    pub async fn maintenance(&self, enabled: bool, message: Option<&str>) {
        let r = self
            .put(
                "/v1/admin/maintenance",
                ADMIN,
                json!({"enabled": enabled, "message": message}),
            )
            .await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    /// The sum of every series of a Prometheus metric (0 when absent). The
    /// recorder is process-wide, so this counts what all test servers did.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl TestApp {
    /// Starts a server with test settings (dev mode, admin token, short payout
    /// delay), adjusted by `tweak`, on a listener the test prepared (e.g. with a
    /// small send buffer, so a client that does not read is noticed quickly).
    pub async fn spawn_on(listener: TcpListener, tweak: impl FnOnce(&mut Settings)) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings {
            data_dir: dir.path().join("data"),
            admin_token: Some(ADMIN.into()),
            dev: true,
            payout_delay: Duration::from_millis(100),
            workers: 2,
            ..Settings::default()
        };
        tweak(&mut settings);
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            actix_rt::System::new()
                .block_on(okpay_gateway::run(listener, settings, async move {
                    let _ = stopped.await;
                }))
                .unwrap();
        });
        let app = TestApp {
            base: format!("http://127.0.0.1:{port}"),
            // Idle connections are dropped well before the server's keep-alive
            // (actix: 5 s) would close them. A test that computes for seconds
            // without awaiting (encoding a multi-megabyte body, in a debug build
            // on a loaded machine) blocks the thread on which the client's
            // connection task would read the server's close; its next request
            // then goes out on that closed connection and fails with a broken
            // pipe.
            client: reqwest::Client::builder()
                .pool_idle_timeout(Duration::from_secs(2))
                .build()
                .unwrap(),
            _dir: dir,
            stop: Some(stop),
            thread: Some(thread),
        };
        for _ in 0..200 {
            if let Ok(r) = app.client.get(app.url("/healthz")).send().await {
                if r.status().is_success() {
                    return app;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the server did not start");
    }
}

/// A card the dev processor accepts.
pub const CARD: &str = "4111 1111 1111 1111";

impl TestApp {
    /// Registers with an email and a phone; returns the account id.
    pub async fn register_with_phone(&self, email: &str, phone: &str) -> String {
        let r = self
            .client
            .post(self.url("/v1/accounts"))
            .json(&json!({"email": email, "phone": phone, "password": "correct horse", "display_name": email}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        r.json::<Value>().await.unwrap()["account_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Deposits `amount` CNY by bank card (no fee) with a fresh key; returns the body.
    pub async fn deposit(&self, token: &str, amount: &str) -> Value {
        let key = format!("dep-{}", rand_key());
        let r = self
            .post_idem(
                "/v1/deposits",
                token,
                &key,
                json!({"amount": amount, "currency": "CNY", "method": "bank_card", "card_number": CARD}),
            )
            .await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        r.json().await.unwrap()
    }

    /// Approves the account's KYC (tier 1) as an operator.
    pub async fn approve_kyc(&self, account_id: &str) {
        let r = self
            .client
            .post(self.url(&format!("/v1/admin/kyc/{account_id}/approve")))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    /// The CNY balance as (available, held) strings.
    pub async fn balance(&self, token: &str) -> (String, String) {
        let body: Value = self.get("/v1/account", token).await.json().await.unwrap();
        let cny = body["balances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["currency"] == "CNY")
            .unwrap()
            .clone();
        (
            cny["available"].as_str().unwrap().to_owned(),
            cny["held"].as_str().unwrap().to_owned(),
        )
    }

    /// Every transaction of the account, following cursors, `limit` per page.
    pub async fn all_transactions(&self, token: &str, limit: usize) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..100 {
            let path = match &cursor {
                Some(c) => format!("/v1/transactions?limit={limit}&cursor={c}"),
                None => format!("/v1/transactions?limit={limit}"),
            };
            let r = self.get(&path, token).await;
            assert_eq!(r.status(), 200);
            let page: Value = r.json().await.unwrap();
            let got = page["items"].as_array().unwrap();
            assert!(got.len() <= limit);
            items.extend(got.iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return items,
            }
        }
        panic!("history does not end");
    }
}

/// A random idempotency key.
pub fn rand_key() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl TestApp {
    /// A login attempt with any password, device and country.
    pub async fn try_login(
        &self,
        login: &str,
        password: &str,
        device: &str,
        country: Option<&str>,
    ) -> reqwest::Response {
        self.client
            .post(self.url("/v1/sessions"))
            .json(&json!({"login": login, "password": password, "device_id": device, "country": country}))
            .send()
            .await
            .unwrap()
    }

    pub async fn admin_get(&self, path: &str) -> reqwest::Response {
        self.get(path, ADMIN).await
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> reqwest::Response {
        self.post(path, ADMIN, body).await
    }

    /// The dev outbox's messages to `to`, newest first.
    pub async fn outbox(&self, to: &str) -> Vec<Value> {
        let r = self
            .client
            .get(self.url("/v1/admin/outbox"))
            .query(&[("to", to)])
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["items"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// The newest code of `kind` sent to `to`.
    pub async fn last_code(&self, to: &str, kind: &str) -> String {
        self.outbox(to)
            .await
            .into_iter()
            .find(|m| m["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} message to {to}"))["code"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The account's alerts (`GET /v1/alerts`), newest first.
    pub async fn alerts(&self, token: &str) -> Vec<Value> {
        let r = self.get("/v1/alerts", token).await;
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["items"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// Waits until the operators' alert list holds an alert of `rule` for
    /// `account` (the list is fed asynchronously); returns how many it holds.
    pub async fn admin_alerts_for(&self, account: &str, rule: &str) -> usize {
        let mut n = 0;
        for _ in 0..100 {
            let r = self.admin_get("/v1/admin/alerts?limit=500").await;
            assert_eq!(r.status(), 200);
            let body: Value = r.json().await.unwrap();
            n = body["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["account_id"] == account && a["rule"] == rule)
                .count();
            if n > 0 {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        n
    }
}

/// A tiny valid-looking JPEG (the magic bytes are what the server checks).
pub fn jpeg_b64() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode([0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J', b'F'])
}

/// Every byte stored under `dir`, concatenated.
pub fn stored_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(stored_bytes(&path));
        } else {
            out.extend(std::fs::read(&path).unwrap_or_default());
        }
    }
    out
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
