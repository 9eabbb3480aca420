//! Withdrawals: KYC gate, held funds, settlement and failure through the dev
//! payout processor, replays after settlement, and lookups.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, TestApp};

fn out(amount: &str, method: &str, destination: &str) -> Value {
    json!({"amount": amount, "currency": "CNY", "method": method, "destination": destination})
}

/// Polls the withdrawal until it leaves `processing`; returns its final body.
async fn settled(app: &TestApp, token: &str, id: &str) -> Value {
    for _ in 0..100 {
        let r = app.get(&format!("/v1/withdrawals/{id}"), token).await;
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        if body["status"] != "processing" {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("withdrawal {id} never settled");
}

#[tokio::test]
async fn withdrawals_need_kyc() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user("w.kyc@example.com").await;
    app.deposit(&token, "100.00").await;
    let r = app
        .post_idem(
            "/v1/withdrawals",
            &token,
            "w",
            out("10.00", "bank_card", "6222020000000000"),
        )
        .await;
    let p = assert_problem(r, 403, "KYC_REQUIRED").await;
    assert!(p["hint"].as_str().is_some());
}

#[tokio::test]
async fn a_withdrawal_holds_then_settles_and_replays_show_the_first_answer() {
    let app = TestApp::spawn().await;
    let (id, token) = app.user("w.ok@example.com").await;
    app.approve_kyc(&id).await;
    app.deposit(&token, "1000.00").await;
    let body = out("200.00", "third_party", "alipay:w.ok@example.com");
    let r = app
        .post_idem("/v1/withdrawals", &token, "w1", body.clone())
        .await;
    assert_eq!(r.status(), 202);
    let bytes = r.bytes().await.unwrap();
    let w: Value = serde_json::from_slice(&bytes).unwrap();
    let wd = w["id"].as_str().unwrap().to_owned();
    assert!(wd.starts_with("wd_"));
    assert_eq!(w["status"], "processing");
    // Third party: 0.5% with a 0.50 minimum.
    assert_eq!(
        (&w["amount"], &w["fee"], &w["payout"]),
        (&json!("200.00"), &json!("1.00"), &json!("199.00"))
    );
    assert_eq!(w["currency"], "CNY");
    let expected: DateTime<Utc> = w["expected_by"].as_str().unwrap().parse().unwrap();
    let ahead = expected - Utc::now();
    assert!(
        ahead > chrono::Duration::hours(20) && ahead < chrono::Duration::days(4),
        "{ahead}"
    );
    // Held while the payout runs (the 100 ms delay leaves time to see it).
    let (available, held) = app.balance(&token).await;
    assert_eq!(available, "800.00");
    assert!(held == "200.00" || held == "0.00");

    let done = settled(&app, &token, &wd).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["expected_by"], w["expected_by"]);
    assert_eq!(app.balance(&token).await, ("800.00".into(), "0.00".into()));

    // The replay answers exactly what the first request answered.
    let again = app
        .post_idem("/v1/withdrawals", &token, "w1", body.clone())
        .await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.bytes().await.unwrap(), bytes);
    let mut changed = body.clone();
    changed["destination"] = json!("alipay:someone.else@example.com");
    let r = app
        .post_idem("/v1/withdrawals", &token, "w1", changed)
        .await;
    assert_problem(r, 409, "IDEMPOTENCY_CONFLICT").await;
    let mut changed = body;
    changed["method"] = json!("bank_card");
    let r = app
        .post_idem("/v1/withdrawals", &token, "w1", changed)
        .await;
    assert_problem(r, 409, "IDEMPOTENCY_CONFLICT").await;

    // Bank card: 0.1% with a 1.00 minimum.
    let r = app
        .post_idem(
            "/v1/withdrawals",
            &token,
            "w2",
            out("100.00", "bank_card", "6222020000000000"),
        )
        .await;
    let w: Value = r.json().await.unwrap();
    assert_eq!((&w["fee"], &w["payout"]), (&json!("1.00"), &json!("99.00")));
    settled(&app, &token, w["id"].as_str().unwrap()).await;
    assert_eq!(app.balance(&token).await.0, "700.00");
    let history = app.all_transactions(&token, 50).await;
    let wds: Vec<&Value> = history
        .iter()
        .filter(|t| t["type"] == "withdrawal")
        .collect();
    assert_eq!(wds.len(), 2);
    assert!(wds
        .iter()
        .all(|t| t["status"] == "completed" && t["direction"] == "out"));
}

#[tokio::test]
async fn a_failed_payout_returns_the_money() {
    let app = TestApp::spawn().await;
    let (id, token) = app.user("w.fail@example.com").await;
    app.approve_kyc(&id).await;
    app.deposit(&token, "300.00").await;
    let r = app
        .post_idem(
            "/v1/withdrawals",
            &token,
            "f",
            out("100.00", "bank_card", "fail-6222"),
        )
        .await;
    assert_eq!(r.status(), 202);
    let w: Value = r.json().await.unwrap();
    let done = settled(&app, &token, w["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "failed");
    assert!(done["reason"].as_str().is_some());
    assert_eq!(app.balance(&token).await, ("300.00".into(), "0.00".into()));
    let history = app.all_transactions(&token, 50).await;
    assert_eq!(history[0]["status"], "failed");
}

#[tokio::test]
async fn withdrawal_refusals_and_lookups() {
    let app = TestApp::spawn().await;
    let (id, token) = app.user("w.err@example.com").await;
    let (_, other) = app.user("w.other@example.com").await;
    app.approve_kyc(&id).await;
    app.deposit(&token, "1500.00").await;
    // 1,000.00 or more asks for a second factor instead of refusing.
    let r = app
        .post_idem(
            "/v1/withdrawals",
            &token,
            "big",
            out("1000.00", "bank_card", "6222"),
        )
        .await;
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "challenge_required", "{body}");
    let cases = [
        (
            out("1600.00", "bank_card", "6222"),
            422,
            "INSUFFICIENT_FUNDS",
        ),
        (out("60000.00", "bank_card", "6222"), 422, "LIMIT_EXCEEDED"),
        (out("10.00", "wire", "6222"), 400, "VALIDATION_FAILED"),
        (out("10.00", "bank_card", ""), 400, "VALIDATION_FAILED"),
        (
            out("10.00", "bank_card", &"d".repeat(129)),
            400,
            "VALIDATION_FAILED",
        ),
        (out("10.005", "bank_card", "6222"), 400, "VALIDATION_FAILED"),
    ];
    for (i, (body, status, code)) in cases.into_iter().enumerate() {
        let r = app
            .post_idem("/v1/withdrawals", &token, &format!("bad-{i}"), body)
            .await;
        assert_problem(r, status, code).await;
    }
    let r = app
        .post("/v1/withdrawals", &token, out("10.00", "bank_card", "6222"))
        .await;
    assert_problem(r, 400, "VALIDATION_FAILED").await;
    let r = app
        .post_idem(
            "/v1/withdrawals",
            &token,
            "ok",
            out("10.00", "bank_card", "6222"),
        )
        .await;
    let w: Value = r.json().await.unwrap();
    let wd = w["id"].as_str().unwrap();
    // Someone else's withdrawal, a malformed id, an unknown one: all 404.
    let r = app.get(&format!("/v1/withdrawals/{wd}"), &other).await;
    assert_problem(r, 404, "NOT_FOUND").await;
    let r = app.get("/v1/withdrawals/wd_nope", &token).await;
    assert_problem(r, 404, "NOT_FOUND").await;
    let unknown = format!("{}ff", &wd[..wd.len() - 2]);
    let r = app.get(&format!("/v1/withdrawals/{unknown}"), &token).await;
    assert_problem(r, 404, "NOT_FOUND").await;
    settled(&app, &token, wd).await;
}

#[tokio::test]
async fn racing_identical_withdrawals_pay_out_once() {
    let app = TestApp::spawn().await;
    let (id, token) = app.user("w.race@example.com").await;
    app.approve_kyc(&id).await;
    app.deposit(&token, "500.00").await;
    let body = out("100.00", "third_party", "wallet-1");
    let sends = (0..6).map(|_| app.post_idem("/v1/withdrawals", &token, "race", body.clone()));
    let mut bodies = Vec::new();
    for r in futures::future::join_all(sends).await {
        assert_eq!(r.status(), 202);
        bodies.push(r.bytes().await.unwrap());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    let w: Value = serde_json::from_slice(&bodies[0]).unwrap();
    settled(&app, &token, w["id"].as_str().unwrap()).await;
    assert_eq!(app.balance(&token).await, ("400.00".into(), "0.00".into()));
    let history = app.all_transactions(&token, 50).await;
    assert_eq!(
        history.iter().filter(|t| t["type"] == "withdrawal").count(),
        1
    );
}
