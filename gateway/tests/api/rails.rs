//! Payment rails against stand-in processors on loopback: card deposits charged
//! with the deposit's idempotency key, pending bank deposits credited by a signed
//! callback exactly once, a charge the engine refuses refunded, a crash between
//! charge and credit recovered without loss, and payouts settled or failed by the
//! processor's callback or by an operator.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use okpay_gateway::config::{Integrations, ProcessorSettings, Redacted, Settings};
use okpay_gateway::integrations::signature;
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, TestApp, ADMIN, CARD};
use crate::stand_ins::{HttpStandIn, Received};

const SECRET: &str = "whsec_c2VjcmV0LXNoYXJlZC13aXRoLXRoZS1wcm9jZXNzb3I=";
const KEY: &str = "2222222222222222222222222222222222222222222222222222222222222222";

fn processor(url: &str) -> ProcessorSettings {
    toml::from_str(&format!(
        "url = \"{url}\"\napi_key = \"sk_test\"\ncallback_secret = \"{SECRET}\""
    ))
    .unwrap()
}

/// Without --dev, with the processor and payouts at the stand-ins.
fn rails(s: &mut Settings, cards_url: &str, payouts_url: &str) {
    s.dev = false;
    s.kyc_key = Some(Redacted(KEY.into()));
    s.integrations = Integrations {
        processor: Some(processor(cards_url)),
        payouts: Some(processor(payouts_url)),
        ..Integrations::default()
    };
}

/// A card processor: one charge per Idempotency-Key (a repeat answers the first),
/// bank cards pending, credit cards succeeded; refunds accepted.
fn card_processor() -> (HttpStandIn, Arc<Mutex<HashMap<String, String>>>) {
    let charges: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let seen = charges.clone();
    let stand_in = HttpStandIn::start(move |r: &Received, _| {
        if r.path.starts_with("/reports/") {
            // No report here: `reconciliation.rs` tests the comparison.
            return (404, "{}".into());
        }
        if r.path == "/refunds" {
            return (200, "{\"status\":\"refunded\"}".into());
        }
        let body: Value = serde_json::from_str(&r.body).unwrap();
        let key = r.header("idempotency-key").unwrap().to_owned();
        let mut charges = seen.lock();
        let n = charges.len();
        let id = charges
            .entry(key)
            .or_insert_with(|| format!("ch_{n}"))
            .clone();
        let status = if body["method"] == "bank_card" {
            "pending"
        } else {
            "succeeded"
        };
        (200, json!({"id": id, "status": status}).to_string())
    });
    (stand_in, charges)
}

/// POSTs a signed callback (`id` is the webhook-id).
async fn callback(
    app: &TestApp,
    path: &str,
    id: &str,
    body: &Value,
    secret: &str,
) -> reqwest::Response {
    let body = body.to_string();
    let ts = chrono::Utc::now().timestamp();
    app.client
        .post(app.url(path))
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header(
            "webhook-signature",
            signature::sign(secret, id, ts, body.as_bytes()),
        )
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn deposit(
    app: &TestApp,
    token: &str,
    key: &str,
    amount: &str,
    method: &str,
) -> reqwest::Response {
    app.post_idem(
        "/v1/deposits",
        token,
        key,
        json!({"amount": amount, "currency": "CNY", "method": method, "card_number": CARD}),
    )
    .await
}

#[tokio::test]
async fn card_deposits_charge_once_pending_ones_settle_by_signed_callback_and_refused_ones_are_refunded(
) {
    let (cards, charges) = card_processor();
    let payouts = HttpStandIn::start(|_, _| (200, "{\"status\":\"processing\"}".into()));
    let app = TestApp::spawn_with(|s| {
        rails(s, &cards.base, &payouts.base);
        s.policy.tier0.balance_max = Some(rust_decimal::Decimal::from(1000));
    })
    .await;
    let (account, token) = app.user("cards@example.com").await;

    // A credit card settles at once; the charge carries the deposit's key.
    let r = deposit(&app, &token, "k1", "100.00", "credit_card").await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let first: Value = r.json().await.unwrap();
    assert_eq!(first["status"], "completed");
    assert_eq!(first["net"], "97.50");
    let got = cards.received();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].header("idempotency-key"),
        Some(format!("{account}:k1").as_str())
    );
    assert_eq!(got[0].header("authorization"), Some("Bearer sk_test"));
    let sent: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(sent["card_number"], "4111111111111111");
    assert_eq!(sent["amount"], "100.00");
    // A replay answers the first deposit and charges nothing.
    let r = deposit(&app, &token, "k1", "100.00", "credit_card").await;
    assert_eq!(r.status(), 201);
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(cards.received().len(), 1);

    // A bank card is pending until the processor's callback.
    let r = deposit(&app, &token, "k2", "200.00", "bank_card").await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let pending: Value = r.json().await.unwrap();
    assert_eq!(pending["status"], "pending");
    let expected: chrono::DateTime<chrono::Utc> =
        pending["expected_at"].as_str().unwrap().parse().unwrap();
    assert!(expected > chrono::Utc::now() + chrono::Duration::hours(12));
    assert_eq!(app.balance(&token).await.0, "97.50");
    let report: Value = app
        .admin_get("/v1/admin/reconciliation")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        report["open_deposits"][0]["reference"],
        format!("{account}:k2").as_str(),
        "{report}"
    );
    assert_eq!(report["open_deposits"][0]["amount"], "200.00");
    let charge_id = charges.lock()[&format!("{account}:k2")].clone();
    let report = json!({"type": "charge.succeeded", "charge_id": charge_id, "reference": format!("{account}:k2")});
    // Unsigned, wrongly signed or stale: refused, nothing credited.
    let r = app
        .client
        .post(app.url("/v1/callbacks/processor"))
        .json(&report)
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "UNAUTHENTICATED").await;
    let r = callback(
        &app,
        "/v1/callbacks/processor",
        "msg_1",
        &report,
        "whsec_d3Jvbmc=",
    )
    .await;
    assert_problem(r, 401, "UNAUTHENTICATED").await;
    assert_eq!(app.balance(&token).await.0, "97.50");
    // Signed: credited once, however often it is repeated.
    let r = callback(&app, "/v1/callbacks/processor", "msg_1", &report, SECRET).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "applied");
    for id in ["msg_1", "msg_2"] {
        let r = callback(&app, "/v1/callbacks/processor", id, &report, SECRET).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap()["status"], "duplicate");
    }
    assert_eq!(app.balance(&token).await.0, "297.50");
    // The client's retry of the settled deposit answers it, with no new charge.
    let charged = cards.received().len();
    let r = deposit(&app, &token, "k2", "200.00", "bank_card").await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    assert_eq!(cards.received().len(), charged);

    // A pending deposit that the balance cap (1,000.00) refuses when it settles,
    // because a credit card deposit came first: the charge is refunded.
    let r = deposit(&app, &token, "k3", "600.00", "bank_card").await;
    assert_eq!(r.status(), 202);
    let r = deposit(&app, &token, "k4", "600.00", "credit_card").await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let balance = app.balance(&token).await.0;
    let charge_id = charges.lock()[&format!("{account}:k3")].clone();
    let report = json!({"type": "charge.succeeded", "charge_id": charge_id, "reference": format!("{account}:k3")});
    let r = callback(&app, "/v1/callbacks/processor", "msg_3", &report, SECRET).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let refunds: Vec<Received> = cards
        .received()
        .into_iter()
        .filter(|r| r.path == "/refunds")
        .collect();
    assert_eq!(refunds.len(), 1);
    let refund: Value = serde_json::from_str(&refunds[0].body).unwrap();
    assert_eq!(refund["charge_id"], charge_id.as_str());
    assert_eq!(app.balance(&token).await.0, balance, "nothing credited");
}

#[tokio::test]
async fn payouts_go_to_the_processor_and_settle_or_fail_by_callback_or_by_an_operator() {
    let (cards, _) = card_processor();
    // The first payout request meets a 500 and is retried.
    let payouts = HttpStandIn::start(|_, n| {
        if n == 0 {
            (500, "{}".into())
        } else {
            (200, "{\"status\":\"processing\"}".into())
        }
    });
    let app = TestApp::spawn_with(|s| {
        rails(s, &cards.base, &payouts.base);
        // Withdrawals without KYC here: reviewing documents is another story.
        s.policy.tier0.withdrawals = true;
    })
    .await;
    let (_, token) = app.user("payout@example.com").await;
    assert_eq!(
        deposit(&app, &token, "d1", "900.00", "credit_card")
            .await
            .status(),
        201
    );
    let withdraw = |key: &'static str| {
        let app = &app;
        let token = token.clone();
        async move {
            let r = app
                .post_idem(
                    "/v1/withdrawals",
                    &token,
                    key,
                    json!({"amount": "100.00", "currency": "CNY", "method": "third_party", "destination": "alipay:payout@example.com"}),
                )
                .await;
            assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
            r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let w1 = withdraw("w1").await;
    let got = payouts.wait_for(2, |r| r.path == "/payouts").await;
    assert_eq!(got[0].status, 500);
    assert_eq!(got[1].status, 200);
    assert_eq!(got[1].header("idempotency-key"), Some(w1.as_str()));
    let sent: Value = serde_json::from_str(&got[1].body).unwrap();
    assert_eq!(
        sent["amount"], "99.50",
        "the payout is the amount less the fee"
    );
    assert_eq!(sent["destination"], "alipay:payout@example.com");
    let status = |id: String| {
        let app = &app;
        let token = token.clone();
        async move {
            let body: Value = app
                .get(&format!("/v1/withdrawals/{id}"), &token)
                .await
                .json()
                .await
                .unwrap();
            body
        }
    };
    assert_eq!(status(w1.clone()).await["status"], "processing");
    let report: Value = app
        .admin_get("/v1/admin/reconciliation")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["open_payouts"][0]["id"], w1.as_str(), "{report}");
    assert_eq!(report["open_payouts"][0]["ledger_status"], "processing");
    assert_eq!(report["mismatches"].as_array().unwrap().len(), 0);
    let r = app
        .admin_get("/v1/admin/reconciliation?date=2026-13-01")
        .await;
    assert_problem(r, 400, "VALIDATION_FAILED").await;
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let report: Value = app
        .admin_get(&format!("/v1/admin/reconciliation?date={yesterday}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        report["open_payouts"].as_array().unwrap().len(),
        0,
        "{report}"
    );

    // Completed by the processor's signed callback, exactly once.
    let report = json!({"type": "payout.completed", "payout_id": w1});
    let r = callback(&app, "/v1/callbacks/payouts", "p1", &report, SECRET).await;
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "applied");
    let r = callback(&app, "/v1/callbacks/payouts", "p2", &report, SECRET).await;
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "duplicate");
    assert_eq!(status(w1.clone()).await["status"], "completed");
    let report: Value = app
        .admin_get("/v1/admin/reconciliation")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        report["open_payouts"].as_array().unwrap().len(),
        0,
        "{report}"
    );

    // Failed by the processor: the held money comes back.
    let w2 = withdraw("w2").await;
    let report =
        json!({"type": "payout.failed", "payout_id": w2, "reason": "Account closed at the bank."});
    let r = callback(&app, "/v1/callbacks/payouts", "p3", &report, SECRET).await;
    assert_eq!(r.status(), 200);
    let body = status(w2.clone()).await;
    assert_eq!(body["status"], "failed");
    assert_eq!(body["reason"], "Account closed at the bank.");
    assert_eq!(app.balance(&token).await.1, "0.00", "nothing held");

    // An operator settles one by hand, with a reason; once.
    let w3 = withdraw("w3").await;
    let r = app
        .admin_post(
            &format!("/v1/admin/withdrawals/{w3}/settle"),
            json!({"reason": ""}),
        )
        .await;
    assert_problem(r, 400, "VALIDATION_FAILED").await;
    let r = app
        .post(
            &format!("/v1/admin/withdrawals/{w3}/settle"),
            &token,
            json!({"reason": "x"}),
        )
        .await;
    assert!(r.status() == 401 || r.status() == 403);
    let r = app
        .admin_post(
            &format!("/v1/admin/withdrawals/{w3}/settle"),
            json!({"reason": "Paid by hand: processor ticket 4711"}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "completed");
    let r = app
        .admin_post(
            &format!("/v1/admin/withdrawals/{w3}/fail"),
            json!({"reason": "late"}),
        )
        .await;
    assert_problem(r, 409, "OPERATION_CLOSED").await;
    let r = app
        .admin_post(
            "/v1/admin/withdrawals/wd_nope/settle",
            json!({"reason": "x"}),
        )
        .await;
    assert_eq!(r.status(), 404);
    let trail: Value = app
        .admin_get("/v1/admin/audit?action=withdrawal.")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(trail["items"][0]["action"], "withdrawal.settle", "{trail}");
    assert_eq!(
        trail["items"][0]["reason"],
        "Paid by hand: processor ticket 4711"
    );
    // 300 withdrawn in total, 100 of it returned: 200 gone, none held.
    assert_eq!(
        app.balance(&token).await,
        ("677.50".to_owned(), "0.00".to_owned())
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_binary(data: &std::path::Path, port: u16, cards: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_okpay"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data)
        .env_remove("OKPAY_DEV")
        .env("OKPAY_ADMIN_TOKEN", ADMIN)
        .env("OKPAY_KYC_KEY", KEY)
        .env("OKPAY_PROCESSOR_URL", cards)
        .env("OKPAY_PROCESSOR_API_KEY", "sk_test")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start okpay")
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("okpay did not become ready");
}

#[tokio::test]
async fn a_crash_between_charge_and_credit_is_recovered_without_loss_or_a_second_charge() {
    // The processor charges, then takes its time to answer: the server is killed
    // in that moment, after the money moved and before the credit.
    let charging = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = charging.clone();
    let charges: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let seen = charges.clone();
    let cards = HttpStandIn::start(move |r: &Received, _| {
        let key = r.header("idempotency-key").unwrap().to_owned();
        let first = {
            let mut charges = seen.lock();
            let n = charges.len();
            let new = !charges.contains_key(&key);
            charges.entry(key).or_insert_with(|| format!("ch_{n}"));
            new
        };
        if first {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(1500));
        }
        let id = seen.lock().values().next().cloned().unwrap();
        (200, json!({"id": id, "status": "succeeded"}).to_string())
    });
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let client = reqwest::Client::new();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = start_binary(&data, port, &cards.base);
    wait_ready(&client, &base).await;
    let r = client
        .post(format!("{base}/v1/accounts"))
        .json(&json!({"email": "crash@example.com", "password": "correct horse", "display_name": "Crash"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let login =
        json!({"login": "crash@example.com", "password": "correct horse", "device_id": "d"});
    let token: Value = client
        .post(format!("{base}/v1/sessions"))
        .json(&login)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    let body = json!({"amount": "100.00", "currency": "CNY", "method": "credit_card", "card_number": CARD});
    let request = client
        .post(format!("{base}/v1/deposits"))
        .bearer_auth(&token)
        .header("Idempotency-Key", "crash-1")
        .json(&body)
        .send();
    let in_flight = tokio::spawn(request);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !charging.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "the charge never reached the processor"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        in_flight.await.unwrap().is_err(),
        "the client got no answer"
    );

    // Restart: the start-up sweep finds the intent, asks the processor again with
    // the same key (no second charge) and credits the deposit once.
    let mut child = start_binary(&data, port, &cards.base);
    wait_ready(&client, &base).await;
    let token: Value = client
        .post(format!("{base}/v1/sessions"))
        .json(&login)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let me: Value = client
            .get(format!("{base}/v1/account"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if me["balances"][0]["available"] == "97.50" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not credited after the restart: {me}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The client's retry answers the credited deposit.
    let r = client
        .post(format!("{base}/v1/deposits"))
        .bearer_auth(&token)
        .header("Idempotency-Key", "crash-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(charges.lock().len(), 1, "one charge at the processor");
    let me: Value = client
        .get(format!("{base}/v1/account"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["balances"][0]["available"], "97.50", "credited once");
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn quotes_show_the_figures_the_operations_then_use() {
    let app = TestApp::spawn().await;
    let (account, token) = app.user("quote@example.com").await;
    app.approve_kyc(&account).await;
    let quote = |q: &'static str| {
        let app = &app;
        let token = token.clone();
        async move { app.get(&format!("/v1/quotes?{q}"), &token).await }
    };
    let r = quote("operation=deposit&method=credit_card&amount=100.00&currency=CNY").await;
    assert_eq!(r.status(), 200);
    let q: Value = r.json().await.unwrap();
    let d: Value = deposit(&app, &token, "q1", "100.00", "credit_card")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!((&q["fee"], &q["net"]), (&d["fee"], &d["net"]));
    assert_eq!(q["fee"], "2.50");

    let r = quote("operation=withdrawal&method=bank_card&amount=50.00&currency=CNY").await;
    let q: Value = r.json().await.unwrap();
    let r = app
        .post_idem(
            "/v1/withdrawals",
            &token,
            "q2",
            json!({"amount": "50.00", "currency": "CNY", "method": "bank_card", "destination": "6222020200112233"}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let w: Value = r.json().await.unwrap();
    assert_eq!((&q["fee"], &q["net"]), (&w["fee"], &w["payout"]));
    let quoted: chrono::DateTime<chrono::Utc> = q["expected_at"].as_str().unwrap().parse().unwrap();
    let actual: chrono::DateTime<chrono::Utc> = w["expected_by"].as_str().unwrap().parse().unwrap();
    assert!(
        (quoted - actual).num_seconds().abs() < 60,
        "{quoted} vs {actual}"
    );

    let q: Value = quote("operation=transfer&amount=10.00&currency=CNY")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (q["fee"].as_str(), q["net"].as_str()),
        (Some("0.00"), Some("10.00"))
    );

    for bad in [
        "operation=loan&amount=1&currency=CNY",
        "operation=deposit&method=cash&amount=1&currency=CNY",
        "operation=deposit&method=bank_card&amount=1.001&currency=CNY",
        "operation=deposit&method=bank_card&amount=1&currency=XXX",
    ] {
        assert_problem(quote(bad).await, 400, "VALIDATION_FAILED").await;
    }
    assert_problem(
        quote("operation=withdrawal&method=third_party&amount=0.50&currency=CNY").await,
        422,
        "AMOUNT_TOO_SMALL",
    )
    .await;
    // Each value valid, the pair not: a method the operation does not take.
    for pair in [
        "operation=deposit&method=third_party&amount=1&currency=CNY",
        "operation=withdrawal&method=credit_card&amount=1&currency=CNY",
        "operation=transfer&method=bank_card&amount=1&currency=CNY",
    ] {
        assert_problem(quote(pair).await, 422, "METHOD_NOT_SUPPORTED").await;
    }
    let r = app
        .client
        .get(app.url("/v1/quotes?operation=transfer&amount=1&currency=CNY"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
