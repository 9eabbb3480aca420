//! Integrations: outside `--dev` the test adapters are never used. A card
//! deposit, a withdrawal (payout) or a code delivery (password reset, step-up)
//! without its configured real adapter answers `503 UNAVAILABLE` naming the
//! missing setting, records nothing, and the server lists what is missing at
//! start-up.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use okpay_testsupport::redis_server::RedisServer;
use serde_json::json;

use okpay_gateway::config::{DeliverySettings, Integrations, Settings};
use okpay_gateway::integrations::signature;

use crate::helpers::{assert_problem, TestApp, ADMIN, CARD};
use crate::stand_ins::{HttpStandIn, SmtpSink};

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

/// The six-digit code in a message.
fn code_in(text: &str) -> String {
    let digits: Vec<char> = text.chars().collect();
    digits
        .windows(6)
        .find(|w| w.iter().all(char::is_ascii_digit))
        .map(|w| w.iter().collect())
        .unwrap_or_else(|| panic!("no code in {text:?}"))
}

/// Settings for real delivery: SMTP to `smtp_port` (no TLS), SMS to `sms_url`
/// with basic auth, quick retries.
fn with_delivery(s: &mut Settings, smtp_port: u16, sms_url: &str) {
    s.dev = false;
    s.kyc_key = Some(okpay_gateway::config::Redacted(KEY.into()));
    s.integrations = Integrations {
        smtp: Some(
            toml::from_str(&format!(
                "host = \"127.0.0.1\"\nport = {smtp_port}\nsecurity = \"none\"\nfrom = \"OKPay <no-reply@okpay.test>\""
            ))
            .unwrap(),
        ),
        sms: Some(
            toml::from_str(&format!(
                "url = \"{sms_url}\"\nusername = \"AC123\"\ntoken = \"sms-secret\"\nfrom = \"OKPay\""
            ))
            .unwrap(),
        ),
        delivery: DeliverySettings {
            backoff_ms: 100,
            ..DeliverySettings::default()
        },
        ..Integrations::default()
    };
}

async fn reset(app: &TestApp, login: &str) {
    let r = app
        .client
        .post(app.url("/v1/password-reset"))
        .json(&json!({ "login": login }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
}

async fn confirm_reset(app: &TestApp, login: &str, code: &str) -> u16 {
    app.client
        .post(app.url("/v1/password-reset/confirm"))
        .json(&json!({"login": login, "code": code, "new_password": "correct horse"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn reset_codes_arrive_by_smtp_and_by_sms_with_a_retry_after_a_500() {
    let smtp = SmtpSink::start();
    // The SMS gateway fails the first request with a 500, then accepts.
    let sms = HttpStandIn::start(|_, n| {
        if n == 0 {
            (500, "{\"error\":\"try later\"}".into())
        } else {
            (201, "{\"sid\":\"SM1\"}".into())
        }
    });
    let sms_url = format!("{}/2010-04-01/Accounts/AC123/Messages.json", sms.base);
    let app = TestApp::spawn_with(|s| with_delivery(s, smtp.port, &sms_url)).await;
    app.register_with_phone("mail@example.com", "+8613800000002")
        .await;

    // By email: the recipient, the (Chinese, the default locale) subject, and a
    // code that really resets the password.
    reset(&app, "mail@example.com").await;
    let mail = smtp.wait_for("mail@example.com").await;
    assert_eq!(mail["from"], "no-reply@okpay.test");
    assert_eq!(mail["subject"], "OKPay 密码重置验证码");
    let code = code_in(mail["body"].as_str().unwrap());
    assert_eq!(confirm_reset(&app, "mail@example.com", &code).await, 204);

    // By SMS: retried after the 500, form-encoded with basic auth.
    reset(&app, "+8613800000002").await;
    let got = sms.wait_for(2, |r| r.method == "POST").await;
    assert_eq!(got[0].status, 500);
    assert_eq!(got[1].status, 201);
    assert_eq!(got[0].body, got[1].body, "the same message is retried");
    let form: Vec<(String, String)> = url_form(&got[1].body);
    let field = |k: &str| form.iter().find(|(n, _)| n == k).unwrap().1.clone();
    assert_eq!(field("To"), "+8613800000002");
    assert_eq!(field("From"), "OKPay");
    assert_eq!(
        got[1].header("authorization"),
        Some(format!("Basic {}", b64("AC123:sms-secret")).as_str())
    );
    let code = code_in(&field("Body"));
    assert_eq!(confirm_reset(&app, "+8613800000002", &code).await, 204);
    // Delivered messages leave the queue (the password-changed notices too); none
    // is dead.
    for state in ["queued", "dead"] {
        let mut left = usize::MAX;
        for _ in 0..200 {
            let r = app
                .get(&format!("/v1/admin/deliveries?state={state}"), ADMIN)
                .await;
            assert_eq!(r.status(), 200);
            let body: serde_json::Value = r.json().await.unwrap();
            left = body["items"].as_array().unwrap().len();
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(left, 0, "{state}");
    }
    // The SMS with the code went out once after its retry: no duplicate.
    let with_code = sms
        .received()
        .iter()
        .filter(|r| {
            r.status == 201
                && url_form(&r.body)
                    .iter()
                    .any(|(k, v)| k == "Body" && v.contains(&code))
        })
        .count();
    assert_eq!(with_code, 1);
    // One reset mail (the second code went by SMS), and one password-changed
    // mail per reset: both resets changed the one account's password, and its
    // notices go to its email. Wait for all three, then a little longer, so a
    // duplicate would be seen.
    let subjects = || -> Vec<String> {
        smtp.mails()
            .iter()
            .filter(|m| m["to"][0] == "mail@example.com")
            .map(|m| m["subject"].as_str().unwrap().to_owned())
            .collect()
    };
    for _ in 0..200 {
        if subjects().len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut got = subjects();
    got.sort();
    let mut want = [
        "OKPay 密码重置验证码",
        "OKPay 密码已修改",
        "OKPay 密码已修改",
    ];
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test]
async fn a_refused_number_is_a_dead_letter_with_its_code_masked_and_recipients_are_rate_limited() {
    let smtp = SmtpSink::start();
    let sms = HttpStandIn::start(|_, _| (400, "{\"error\":\"invalid number\"}".into()));
    let sms_url = format!("{}/sms", sms.base);
    let app = TestApp::spawn_with(|s| {
        with_delivery(s, smtp.port, &sms_url);
        s.integrations.delivery.per_recipient_per_hour = 2;
    })
    .await;
    app.register_with_phone("dead@example.com", "+8613800000003")
        .await;
    reset(&app, "+8613800000003").await;
    sms.wait_for(1, |_| true).await;
    let mut dead = serde_json::Value::Null;
    for _ in 0..100 {
        let r = app.get("/v1/admin/deliveries?state=dead", ADMIN).await;
        dead = r.json().await.unwrap();
        if !dead["items"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let item = &dead["items"][0];
    assert_eq!(item["to"], "+8613800000003");
    assert_eq!(item["kind"], "password_reset");
    assert_eq!(item["attempts"], 1, "a 4xx is not retried");
    assert!(item["last_error"].as_str().unwrap().contains("400"));
    assert!(item["body"].as_str().unwrap().contains("******"), "{item}");
    assert_eq!(sms.received().len(), 1);

    // Two mails an hour per recipient here: the third request sends nothing.
    for _ in 0..3 {
        reset(&app, "dead@example.com").await;
    }
    smtp.wait_for("dead@example.com").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let to_them = smtp
        .mails()
        .iter()
        .filter(|m| m["to"][0] == "dead@example.com")
        .count();
    assert_eq!(to_them, 2);
}

/// The attempt count survives a restart: `max_attempts` is a bound on attempts
/// in all, not per server process.
#[tokio::test]
async fn retry_counts_are_durable_across_a_restart() {
    let redis = RedisServer::start();
    let url = redis.url();
    let smtp = SmtpSink::start();
    let sms = HttpStandIn::start(|_, _| (500, "{\"error\":\"down\"}".into()));
    let sms_url = format!("{}/sms", sms.base);
    let port = smtp.port;
    let tweak = move |s: &mut Settings, sms_url: &str, url: &str| {
        with_delivery(s, port, sms_url);
        s.redis_url = Some(url.to_owned());
        s.integrations.delivery.max_attempts = 2;
        s.integrations.delivery.backoff_ms = 2000;
    };
    {
        let (u, s) = (url.clone(), sms_url.clone());
        let app = TestApp::spawn_with(move |x| tweak(x, &s, &u)).await;
        app.register_with_phone("retry@example.com", "+8613800000009")
            .await;
        reset(&app, "+8613800000009").await;
        // The first attempt fails; the server stops before the second is due.
        sms.wait_for(1, |_| true).await;
    }
    let app = TestApp::spawn_with(move |x| tweak(x, &sms_url, &url)).await;
    let mut dead = serde_json::Value::Null;
    for _ in 0..200 {
        let r = app.get("/v1/admin/deliveries?state=dead", ADMIN).await;
        dead = r.json().await.unwrap();
        if !dead["items"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(dead["items"][0]["attempts"], 2, "{dead}");
    // One attempt per server: two in all, not 1 + 2.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sms.received().len(), 2);
}

#[tokio::test]
async fn a_message_queued_while_smtp_is_down_is_sent_after_a_restart() {
    let redis = RedisServer::start();
    let url = redis.url();
    // SMTP on a port where nothing listens yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sms = HttpStandIn::start(|_, _| (200, "{}".into()));
    let sms_url = format!("{}/sms", sms.base);
    {
        let (url, sms_url) = (url.clone(), sms_url.clone());
        let app = TestApp::spawn_with(move |s| {
            with_delivery(s, port, &sms_url);
            s.redis_url = Some(url);
        })
        .await;
        app.register("down@example.com").await;
        reset(&app, "down@example.com").await;
        let mut queued = 0;
        for _ in 0..100 {
            let body: serde_json::Value = app
                .get("/v1/admin/deliveries?state=queued", ADMIN)
                .await
                .json()
                .await
                .unwrap();
            queued = body["items"].as_array().unwrap().len();
            if queued == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(queued, 1, "the mail waits in the queue");
    }
    // The server is gone; SMTP comes up; a new server sends what was queued.
    let smtp = SmtpSink::start_on(port);
    let app = TestApp::spawn_with(move |s| {
        with_delivery(s, port, &sms_url);
        s.redis_url = Some(url);
    })
    .await;
    let mail = smtp.wait_for("down@example.com").await;
    let code = code_in(mail["body"].as_str().unwrap());
    assert_eq!(confirm_reset(&app, "down@example.com", &code).await, 204);
}

fn url_form(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.replace('+', " ").into_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn webhooks_are_signed_retried_after_a_500_and_replayed_with_their_ids() {
    // The receiver fails its first request, then accepts.
    let receiver = HttpStandIn::start(|_, n| {
        if n == 0 {
            (500, "{}".into())
        } else {
            (204, String::new())
        }
    });
    let app = TestApp::spawn_with(|s| s.integrations.delivery.backoff_ms = 100).await;
    let url = format!("{}/hooks", receiver.base);
    for bad in [
        json!({"url": "ftp://x", "events": ["deposit.completed"]}),
        json!({"url": url, "events": ["deposit.eaten"]}),
        json!({"url": url, "events": []}),
    ] {
        assert_problem(
            app.admin_post("/v1/admin/webhooks", bad).await,
            400,
            "VALIDATION_FAILED",
        )
        .await;
    }
    let r = app
        .admin_post(
            "/v1/admin/webhooks",
            json!({"url": url, "events": ["deposit.completed", "account.status_changed"]}),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let created: serde_json::Value = r.json().await.unwrap();
    let endpoint = created["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let listed: serde_json::Value = app
        .admin_get("/v1/admin/webhooks")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"][0]["id"], endpoint.as_str());
    assert!(
        !listed.to_string().contains(&secret),
        "the secret is shown once"
    );

    let (account, token) = app.user("hooks@example.com").await;
    app.deposit(&token, "100.00").await;
    let got = receiver.wait_for(2, |_| true).await;
    assert_eq!((got[0].status, got[1].status), (500, 204));
    let id = got[0].header("webhook-id").unwrap().to_owned();
    assert_eq!(
        got[1].header("webhook-id"),
        Some(id.as_str()),
        "a retry keeps its id"
    );
    for r in &got {
        // The receiver's check, as the README shows it.
        signature::verify(
            &secret,
            r.header("webhook-id"),
            r.header("webhook-timestamp"),
            r.header("webhook-signature"),
            r.body.as_bytes(),
            chrono::Utc::now().timestamp(),
        )
        .unwrap();
    }
    let event: serde_json::Value = serde_json::from_str(&got[1].body).unwrap();
    assert_eq!(event["type"], "deposit.completed");
    assert_eq!(event["data"]["account"], account.as_str());
    assert_eq!(event["data"]["amount"], "100.00");

    // A freeze: the owner is told, and the endpoint gets the event.
    app.freeze(&account, "Suspicious activity").await;
    let got = receiver
        .wait_for(1, |r| r.body.contains("account.status_changed"))
        .await;
    let event: serde_json::Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(event["data"]["to"], "frozen");
    assert_eq!(event["data"]["reason"], "Suspicious activity");
    // The owner's notice is derived from the durable change, in the background.
    let mut notices = Vec::new();
    for _ in 0..100 {
        notices = app.outbox("hooks@example.com").await;
        if notices.iter().any(|m| m["kind"] == "account_frozen") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        notices.iter().any(|m| m["kind"] == "account_frozen"),
        "{notices:?}"
    );

    // Replay: both messages again, with their original ids.
    let r = app
        .admin_post(&format!("/v1/admin/webhooks/{endpoint}/replay"), json!({}))
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["queued"], 2);
    let all = receiver.wait_for(5, |_| true).await;
    let replayed: Vec<&str> = all[3..]
        .iter()
        .filter_map(|r| r.header("webhook-id"))
        .collect();
    assert!(replayed.contains(&id.as_str()), "{replayed:?}");

    // Removed: nothing more is sent.
    let r = app
        .client
        .delete(app.url(&format!("/v1/admin/webhooks/{endpoint}")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let before = receiver.received().len();
    let (_, other) = app.user("after@example.com").await;
    app.deposit(&other, "5.00").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.received().len(), before);
    let r = app
        .admin_post(&format!("/v1/admin/webhooks/{endpoint}/replay"), json!({}))
        .await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn webhooks_and_callbacks_tell_time_by_the_engine_clock() {
    use okpay_engine::time::{Clock as _, ManualClock, SystemClock, Timestamp};
    use okpay_gateway::routes::callbacks::DEV_CALLBACK_SECRET;

    // Two days behind the wall clock, on a whole second: far outside the
    // callbacks' tolerance, so a wall-clock read anywhere shows.
    let start = Timestamp((SystemClock.now().millis() / 1000 - 2 * 86_400) * 1000);
    let secs = start.millis() / 1000;
    let injected = ManualClock::new(start);
    let receiver = HttpStandIn::start(|_, _| (204, String::new()));
    let app = TestApp::spawn_with(move |s| {
        s.clock = okpay_gateway::clock::ClockSetting(std::sync::Arc::new(injected));
    })
    .await;
    let r = app
        .admin_post(
            "/v1/admin/webhooks",
            json!({"url": format!("{}/hooks", receiver.base), "events": ["deposit.completed"]}),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let created: serde_json::Value = r.json().await.unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    let at: chrono::DateTime<chrono::Utc> =
        created["created_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        at.timestamp_millis(),
        start.millis(),
        "registered at engine time"
    );

    // The webhook of a deposit is stamped and signed at engine time.
    let (_, token) = app.user("hooks-clock@example.com").await;
    app.deposit(&token, "10.00").await;
    let got = receiver.wait_for(1, |_| true).await;
    assert_eq!(
        got[0].header("webhook-timestamp"),
        Some(secs.to_string().as_str())
    );
    signature::verify(
        &secret,
        got[0].header("webhook-id"),
        got[0].header("webhook-timestamp"),
        got[0].header("webhook-signature"),
        got[0].body.as_bytes(),
        secs,
    )
    .unwrap();
    let event: serde_json::Value = serde_json::from_str(&got[0].body).unwrap();
    let stamped: chrono::DateTime<chrono::Utc> =
        event["timestamp"].as_str().unwrap().parse().unwrap();
    assert_eq!(stamped.timestamp(), secs);

    // A processor callback is checked against engine time: signed at it, it is
    // accepted; signed at the wall clock's now, it is stale.
    let body = "{\"type\":\"charge.succeeded\",\"charge_id\":\"ch_x\",\"reference\":\"acc_0000000000000000:nope\"}";
    let wall = SystemClock.now().millis() / 1000;
    for (ts, status) in [(secs, 200), (wall, 401)] {
        let id = format!("msg_clock_{ts}");
        let r = app
            .client
            .post(app.url("/v1/callbacks/processor"))
            .header("webhook-id", &id)
            .header("webhook-timestamp", ts.to_string())
            .header(
                "webhook-signature",
                signature::sign(DEV_CALLBACK_SECRET, &id, ts, body.as_bytes()),
            )
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            status,
            "signed at {ts}: {}",
            r.text().await.unwrap()
        );
    }
}
