//! Registration and the account view.

use serde_json::{json, Value};

use crate::helpers::{assert_problem, TestApp};

#[tokio::test]
async fn register_then_view_the_empty_account() {
    let app = TestApp::spawn().await;
    let (id, token) = app.user("li.wei@example.com").await;
    let r = app.get("/v1/account", &token).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["account_id"], id.as_str());
    assert_eq!(body["email"], "li.wei@example.com");
    assert_eq!(body["status"], "active");
    assert_eq!(body["kyc"]["tier"], 0);
    assert_eq!(body["limits"]["single_max"], "500.00");
    assert_eq!(body["limits"]["daily_out_max"], "1000.00");
    assert_eq!(body["limits"]["challenge_over"], "1000.00");
    assert_eq!(
        body["balances"][0],
        json!({"currency": "CNY", "available": "0.00", "held": "0.00", "total": "0.00"})
    );
    assert_eq!(body["totp_enabled"], false);
}

#[tokio::test]
async fn the_logs_append_time_is_on_the_metrics_page() {
    // `okpay_log_append_seconds`: the store's answer time per batch, the floor
    // of every command's latency (the recorder is process-wide, so the count
    // only has to grow).
    let app = TestApp::spawn().await;
    let (_, token) = app.user("append.metric@example.com").await;
    let before = app.metric("okpay_log_append_seconds_count").await;
    app.deposit(&token, "25.00").await;
    let after = app.metric("okpay_log_append_seconds_count").await;
    assert!(after > before, "append count {before} -> {after}");
    assert!(app.metric("okpay_log_append_seconds_bucket").await >= after);
}

#[tokio::test]
async fn a_login_can_be_registered_once_even_when_racing() {
    // Enough hashing slots for all six at once: the race, not the bound, is tested.
    let app = TestApp::spawn_with(|s| s.hash_concurrency = 8).await;
    let body =
        json!({"email": "twice@example.com", "password": "correct horse", "display_name": "T"});
    let attempts = (0..6).map(|_| app.client.post(app.url("/v1/accounts")).json(&body).send());
    let results = futures::future::join_all(attempts).await;
    let statuses: Vec<u16> = results
        .iter()
        .map(|r| r.as_ref().unwrap().status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        5,
        "{statuses:?}"
    );
    // Different case is the same email.
    let r = app
        .client
        .post(app.url("/v1/accounts"))
        .json(&json!({"email": "TWICE@example.com", "password": "correct horse", "display_name": "T"}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 409, "ALREADY_EXISTS").await;
}

#[tokio::test]
async fn bad_registrations_are_400_never_5xx() {
    let app = TestApp::spawn().await;
    let cases = [
        json!({"email": "x@example.com", "password": "short", "display_name": "X"}),
        json!({"email": "not-an-email", "password": "correct horse", "display_name": "X"}),
        json!({"email": "x@example.com", "password": "correct horse", "display_name": ""}),
        json!({"email": "x@example.com", "phone": "12345", "password": "correct horse", "display_name": "X"}),
        json!({"email": 5, "password": "correct horse", "display_name": "X"}),
        json!({"email": "x@example.com", "password": "correct horse", "display_name": "X", "admin": true}),
    ];
    for body in cases {
        let r = app
            .client
            .post(app.url("/v1/accounts"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_problem(r, 400, "VALIDATION_FAILED").await;
    }
    let r = app
        .client
        .post(app.url("/v1/accounts"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "VALIDATION_FAILED").await;
    let huge = format!("{{\"email\": \"{}\"}}", "a".repeat(200_000));
    let r = app
        .client
        .post(app.url("/v1/accounts"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_problem(r, 413, "PAYLOAD_TOO_LARGE").await;
}

#[tokio::test]
async fn health_status_metrics_and_unknown_routes() {
    let app = TestApp::spawn().await;
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": "ok"}));
    let r = app
        .client
        .get(app.url("/v1/system/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"maintenance": false, "message": null})
    );
    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    let text = r.text().await.unwrap();
    assert!(text.contains("okpay_http_requests_total"), "{text}");
    let r = app.client.get(app.url("/v1/nope")).send().await.unwrap();
    assert_problem(r, 404, "NOT_FOUND").await;
}
