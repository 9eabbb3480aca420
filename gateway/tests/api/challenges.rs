//! Step-up 2FA: a challenge instead of a large transfer or withdrawal, confirmed
//! by an SMS code (dev outbox) or a TOTP code, running the operation exactly once.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use totp_rs::{Algorithm, Secret, TOTP};

use crate::helpers::{assert_problem, TestApp};

fn send(to: &str, amount: &str) -> Value {
    json!({"to": to, "amount": amount, "currency": "CNY"})
}

async fn confirm(app: &TestApp, token: &str, id: &str, code: &str) -> reqwest::Response {
    app.post(
        &format!("/v1/challenges/{id}/confirm"),
        token,
        json!({ "code": code }),
    )
    .await
}

/// A tier-1 user with 3,000.00: (account id, token).
async fn rich_user(app: &TestApp, email: &str) -> (String, String) {
    let (id, token) = app.user(email).await;
    app.approve_kyc(&id).await;
    app.deposit(&token, "3000.00").await;
    (id, token)
}

fn other_code(code: &str) -> &'static str {
    if code == "000000" {
        "111111"
    } else {
        "000000"
    }
}

#[tokio::test]
async fn an_sms_challenge_runs_the_transfer_once_under_concurrent_confirms() {
    let app = TestApp::spawn().await;
    let (_, a) = rich_user(&app, "alice@example.com").await;
    let (_, b) = app.user("bob@example.com").await;
    let r = app
        .post_idem(
            "/v1/transfers",
            &a,
            "big",
            send("bob@example.com", "1500.00"),
        )
        .await;
    assert_eq!(r.status(), 202);
    let first: Value = r.json().await.unwrap();
    assert_eq!(first["status"], "challenge_required");
    assert_eq!(first["challenge"]["method"], "sms");
    let id = first["challenge"]["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("chl_"));
    // A retry of the same request: the same challenge, no second code.
    let r = app
        .post_idem(
            "/v1/transfers",
            &a,
            "big",
            send("bob@example.com", "1500.00"),
        )
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<Value>().await.unwrap(), first);
    let msgs = app.outbox("alice@example.com").await;
    assert_eq!(msgs.iter().filter(|m| m["kind"] == "challenge").count(), 1);
    let code = app.last_code("alice@example.com", "challenge").await;
    // Nothing moved yet.
    assert_eq!(app.balance(&a).await.0, "3000.00");
    let r = confirm(&app, &a, &id, other_code(&code)).await;
    assert_problem(r, 401, "CHALLENGE_FAILED").await;
    // Eight racing confirmations: one transfer, every answer the same 201.
    let answers = futures::future::join_all((0..8).map(|_| confirm(&app, &a, &id, &code))).await;
    let mut ids = std::collections::HashSet::new();
    for r in answers {
        assert_eq!(r.status(), 201);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["status"], "completed");
        assert_eq!(body["amount"], "1500.00");
        ids.insert(body["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(app.balance(&a).await.0, "1500.00");
    assert_eq!(app.balance(&b).await.0, "1500.00");
    // Later: a confirmation and the original request both answer the transfer.
    let r = confirm(&app, &a, &id, &code).await;
    assert_eq!(r.status(), 201);
    let r = app
        .post_idem(
            "/v1/transfers",
            &a,
            "big",
            send("bob@example.com", "1500.00"),
        )
        .await;
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert!(ids.contains(body["id"].as_str().unwrap()));
    assert_eq!(app.balance(&a).await.0, "1500.00");
    // Someone else's challenge is not found.
    let r = confirm(&app, &b, &id, &code).await;
    assert_problem(r, 404, "NOT_FOUND").await;
}

#[tokio::test]
async fn five_wrong_codes_or_expiry_kill_a_challenge_and_withdrawals_confirm_to_202() {
    let app = TestApp::spawn().await;
    let (_, a) = rich_user(&app, "alice@example.com").await;
    app.user("bob@example.com").await;
    let r = app
        .post_idem(
            "/v1/transfers",
            &a,
            "k1",
            send("bob@example.com", "1000.00"),
        )
        .await;
    let id = r.json::<Value>().await.unwrap()["challenge"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = app.last_code("alice@example.com", "challenge").await;
    for _ in 0..5 {
        let r = confirm(&app, &a, &id, other_code(&code)).await;
        assert_problem(r, 401, "CHALLENGE_FAILED").await;
    }
    let r = confirm(&app, &a, &id, &code).await;
    assert_problem(r, 410, "CHALLENGE_EXPIRED").await;
    assert_eq!(app.balance(&a).await.0, "3000.00");

    // A withdrawal's challenge answers the withdrawal's own 202.
    let body = json!({"amount": "1000.00", "currency": "CNY", "method": "bank_card", "destination": "6222"});
    let r = app.post_idem("/v1/withdrawals", &a, "w1", body).await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["challenge"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = app.last_code("alice@example.com", "challenge").await;
    let r = confirm(&app, &a, &id, &code).await;
    assert_eq!(r.status(), 202);
    let w: Value = r.json().await.unwrap();
    assert_eq!(w["status"], "processing");
    assert!(w["id"].as_str().unwrap().starts_with("wd_"));
    assert_eq!(app.balance(&a).await, ("2000.00".into(), "1000.00".into()));

    let app = TestApp::spawn_with(|s| s.policy.security.code_ttl_s = 1).await;
    let (_, a) = rich_user(&app, "carol@example.com").await;
    app.user("dave@example.com").await;
    let r = app
        .post_idem(
            "/v1/transfers",
            &a,
            "k",
            send("dave@example.com", "1000.00"),
        )
        .await;
    let id = r.json::<Value>().await.unwrap()["challenge"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = app.last_code("carol@example.com", "challenge").await;
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let r = confirm(&app, &a, &id, &code).await;
    assert_problem(r, 410, "CHALLENGE_EXPIRED").await;
}

fn totp_code(secret: &str, step: u64) -> String {
    let bytes = Secret::Encoded(secret.to_owned()).to_bytes().unwrap();
    TOTP::new_unchecked(Algorithm::SHA1, 6, 1, 30, bytes).generate(step * 30)
}

fn current_step() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 30
}

#[tokio::test]
async fn totp_enrolment_then_challenges_by_totp_and_no_code_twice() {
    let app = TestApp::spawn().await;
    let (_, a) = rich_user(&app, "alice@example.com").await;
    app.user("bob@example.com").await;
    let r = app
        .post(
            "/v1/account/totp/code",
            &a,
            json!({"password": "correct horse"}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let code = app.last_code("alice@example.com", "security_code").await;
    let r = app
        .post(
            "/v1/account/totp",
            &a,
            json!({"password": "correct horse", "code": code}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let enrol: Value = r.json().await.unwrap();
    let secret = enrol["secret"].as_str().unwrap().to_owned();
    assert!(enrol["otpauth_uri"].as_str().unwrap().contains(&secret));
    let body: Value = app.get("/v1/account", &a).await.json().await.unwrap();
    assert_eq!(body["totp_enabled"], false);
    let step = current_step();
    let r = app
        .post("/v1/account/totp/confirm", &a, json!({"code": "00000x"}))
        .await;
    assert_problem(r, 401, "CHALLENGE_FAILED").await;
    let r = app
        .post(
            "/v1/account/totp/confirm",
            &a,
            json!({"code": totp_code(&secret, step)}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = app.get("/v1/account", &a).await.json().await.unwrap();
    assert_eq!(body["totp_enabled"], true);
    // Enrolling again while on is refused.
    let r = app
        .post(
            "/v1/account/totp",
            &a,
            json!({"password": "correct horse", "code": code}),
        )
        .await;
    assert_problem(r, 409, "ALREADY_EXISTS").await;

    let r = app
        .post_idem(
            "/v1/transfers",
            &a,
            "t1",
            send("bob@example.com", "1000.00"),
        )
        .await;
    let c: Value = r.json().await.unwrap();
    assert_eq!(c["challenge"]["method"], "totp");
    let id = c["challenge"]["id"].as_str().unwrap().to_owned();
    // The code already used for enrolment is not accepted again.
    let r = confirm(&app, &a, &id, &totp_code(&secret, step)).await;
    assert_problem(r, 401, "CHALLENGE_FAILED").await;
    let next = totp_code(&secret, step + 1);
    let r = confirm(&app, &a, &id, &next).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    assert_eq!(app.balance(&a).await.0, "2000.00");
    // A second challenge: the same code (same step) is a replay.
    let r = app
        .post_idem(
            "/v1/transfers",
            &a,
            "t2",
            send("bob@example.com", "1000.00"),
        )
        .await;
    let id2 = r.json::<Value>().await.unwrap()["challenge"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = confirm(&app, &a, &id2, &next).await;
    assert_problem(r, 401, "CHALLENGE_FAILED").await;
    assert_eq!(app.balance(&a).await.0, "2000.00");
    // No SMS was ever sent for TOTP challenges.
    let msgs = app.outbox("alice@example.com").await;
    assert!(msgs.iter().all(|m| m["kind"] != "challenge"));
}
