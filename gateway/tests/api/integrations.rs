//! Integrations: outside `--dev` the test adapters are never used. A card
//! deposit, a withdrawal (payout) or a code delivery (password reset, step-up)
//! without its configured real adapter answers `503 UNAVAILABLE` naming the
//! missing setting, records nothing, and the server lists what is missing at
//! start-up.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use okpay_testsupport::redis_server::RedisServer;
use serde_json::json;

use crate::helpers::{assert_problem, TestApp, ADMIN, CARD};

/// The dev PII key, so data written in dev mode reads back without `--dev`.
const KEY: &str = "1111111111111111111111111111111111111111111111111111111111111111";

#[tokio::test]
async fn without_dev_and_without_adapters_money_and_codes_answer_503_naming_the_setting() {
    // Redis, so that a second server sees the first one's data.
    let redis = RedisServer::start();
    let url = redis.url();
    // A funded, verified user, made with the dev adapters.
    {
        let url = url.clone();
        let app = TestApp::spawn_with(move |s| {
            s.redis_url = Some(url);
            s.kyc_key = Some(okpay_gateway::config::Redacted(KEY.into()));
        })
        .await;
        let id = app
            .register_with_phone("prod@example.com", "+8613800000001")
            .await;
        let token = app.login("prod@example.com").await;
        app.approve_kyc(&id).await;
        app.deposit(&token, "3000.00").await;
        app.register("payee@example.com").await;
    }
    // The same data without --dev and without [integrations].
    let app = TestApp::spawn_with(move |s| {
        s.redis_url = Some(url);
        s.kyc_key = Some(okpay_gateway::config::Redacted(KEY.into()));
        s.dev = false;
    })
    .await;
    let token = app.login("prod@example.com").await;

    // The test card processor would accept this card: it must not be used.
    let r = app
        .post_idem(
            "/v1/deposits",
            &token,
            "dep-prod",
            json!({"amount": "10.00", "currency": "CNY", "method": "credit_card", "card_number": CARD}),
        )
        .await;
    let body = assert_problem(r, 503, "UNAVAILABLE").await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("[integrations.processor] url"),
        "{body}"
    );

    // The test payout processor would "settle" this: nothing is held either.
    let r = app
        .post_idem(
            "/v1/withdrawals",
            &token,
            "wd-prod",
            json!({"amount": "100.00", "currency": "CNY", "method": "third_party", "destination": "alipay:prod@example.com"}),
        )
        .await;
    let body = assert_problem(r, 503, "UNAVAILABLE").await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("[integrations.payouts] url"),
        "{body}"
    );
    assert_eq!(
        app.balance(&token).await,
        ("3000.00".to_owned(), "0.00".to_owned())
    );

    // Reset codes: by email without SMTP, by SMS without an SMS gateway, whether
    // or not the login exists (so the answer tells nothing about it).
    for (login, setting) in [
        ("prod@example.com", "[integrations.smtp] host"),
        ("nobody@example.com", "[integrations.smtp] host"),
        ("+8613800000001", "[integrations.sms] url"),
    ] {
        let r = app
            .client
            .post(app.url("/v1/password-reset"))
            .json(&json!({ "login": login }))
            .send()
            .await
            .unwrap();
        let body = assert_problem(r, 503, "UNAVAILABLE").await;
        assert!(body["detail"].as_str().unwrap().contains(setting), "{body}");
    }

    // A large transfer needs an SMS code that cannot be sent: 503, no challenge,
    // no money moved.
    let r = app
        .post_idem(
            "/v1/transfers",
            &token,
            "big-prod",
            json!({"to": "payee@example.com", "amount": "1500.00", "currency": "CNY"}),
        )
        .await;
    let body = assert_problem(r, 503, "UNAVAILABLE").await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("[integrations.sms] url"),
        "{body}"
    );
    assert_eq!(app.balance(&token).await.0, "3000.00");
    // Small transfers need no adapter and still work.
    let r = app
        .post_idem(
            "/v1/transfers",
            &token,
            "small-prod",
            json!({"to": "payee@example.com", "amount": "15.00", "currency": "CNY"}),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    // And the dev outbox does not exist.
    let r = app.get("/v1/admin/outbox", ADMIN).await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn the_binary_lists_every_missing_integration_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = dir.path().join("okpay.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_okpay"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env_remove("OKPAY_DEV")
        .env("OKPAY_KYC_KEY", KEY)
        .env("OKPAY_LOG", "info")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("start okpay");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
        {
            if r.status().is_success() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "okpay did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    for setting in [
        "[integrations.processor] url",
        "[integrations.payouts] url",
        "[integrations.smtp] host",
        "[integrations.sms] url",
    ] {
        assert!(text.contains(setting), "{setting} not logged in:\n{text}");
    }
}
