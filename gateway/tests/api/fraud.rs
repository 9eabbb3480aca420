//! Live fraud monitoring as users and operators see it: each rule fires once
//! (edge-triggered), shows in `GET /v1/alerts` and `GET /v1/admin/alerts`, and
//! the account's status follows with a reason.

use serde_json::{json, Value};

use crate::helpers::{assert_problem, TestApp};

fn rules(alerts: &[Value], rule: &str) -> usize {
    alerts.iter().filter(|a| a["rule"] == rule).count()
}

#[tokio::test]
async fn velocity_blocks_the_21st_quick_transfer_with_one_alert() {
    let app = TestApp::spawn().await;
    let (id, a) = app.user("fast@example.com").await;
    app.user("bob@example.com").await;
    app.deposit(&a, "100.00").await;
    let send = json!({"to": "bob@example.com", "amount": "1.00", "currency": "CNY"});
    for i in 0..20 {
        let r = app
            .post_idem("/v1/transfers", &a, &format!("v{i}"), send.clone())
            .await;
        assert_eq!(r.status(), 201);
    }
    for i in 20..23 {
        let r = app
            .post_idem("/v1/transfers", &a, &format!("v{i}"), send.clone())
            .await;
        let body = assert_problem(r, 429, "VELOCITY_BLOCKED").await;
        assert!(body["retry_after_s"].as_u64().is_some());
    }
    let alerts = app.alerts(&a).await;
    assert_eq!(rules(&alerts, "velocity_count"), 1, "{alerts:?}");
    let alert = &alerts[0];
    assert!(alert["id"].as_str().unwrap().starts_with("alr_"));
    assert!(alert["at"].as_str().is_some());
    assert_eq!(app.admin_alerts_for(&id, "velocity_count").await, 1);
    assert_eq!(app.balance(&a).await.0, "80.00");
}

#[tokio::test]
async fn fan_out_freezes_and_the_frozen_user_can_log_in_and_read_but_not_send() {
    // Three new recipients in the window instead of eleven keeps the test quick;
    // the rule is the same.
    let app = TestApp::spawn_with(|s| s.policy.fraud.fan_out_max_new_recipients = 2).await;
    let (id, a) = app.user("fan@example.com").await;
    for i in 0..3 {
        app.register(&format!("r{i}@example.com")).await;
    }
    app.deposit(&a, "100.00").await;
    for i in 0..2 {
        let body = json!({"to": format!("r{i}@example.com"), "amount": "1.00", "currency": "CNY"});
        assert_eq!(
            app.post_idem("/v1/transfers", &a, &format!("f{i}"), body)
                .await
                .status(),
            201
        );
    }
    let body = json!({"to": "r2@example.com", "amount": "1.00", "currency": "CNY"});
    let r = app.post_idem("/v1/transfers", &a, "f2", body).await;
    let p = assert_problem(r, 403, "ACCOUNT_FROZEN").await;
    assert!(p["hint"].as_str().is_some_and(|h| !h.is_empty()));
    assert!(p["detail"].as_str().unwrap().contains("Reason:"), "{p}");
    let alerts = app.alerts(&a).await;
    assert_eq!(rules(&alerts, "fan_out"), 1, "{alerts:?}");
    assert_eq!(app.admin_alerts_for(&id, "fan_out").await, 1);
    // Frozen: login and reading still work; money does not leave.
    let t2 = app.login("fan@example.com").await;
    let acc: Value = app.get("/v1/account", &t2).await.json().await.unwrap();
    assert_eq!(acc["status"], "frozen");
    assert!(acc["status_reason"].as_str().is_some());
    let body = json!({"to": "r0@example.com", "amount": "1.00", "currency": "CNY"});
    let r = app.post_idem("/v1/transfers", &t2, "f3", body).await;
    assert_problem(r, 403, "ACCOUNT_FROZEN").await;
    assert_eq!(rules(&app.alerts(&a).await, "fan_out"), 1);
}

#[tokio::test]
async fn new_device_and_two_countries_alert_and_restrict() {
    let app = TestApp::spawn().await;
    let (id, _) = app.user("travel@example.com").await;
    // The helper logged in on "test-device"; a second device raises new_device.
    let r = app
        .try_login("travel@example.com", "correct horse", "phone-2", Some("CN"))
        .await;
    assert_eq!(r.status(), 201);
    let t: Value = r.json().await.unwrap();
    let t = t["token"].as_str().unwrap().to_owned();
    let alerts = app.alerts(&t).await;
    assert_eq!(rules(&alerts, "new_device"), 1, "{alerts:?}");
    assert_eq!(app.admin_alerts_for(&id, "new_device").await, 1);
    // A known device: no new alert.
    let r = app
        .try_login("travel@example.com", "correct horse", "phone-2", Some("CN"))
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(rules(&app.alerts(&t).await, "new_device"), 1);
    // Minutes later from another country: held for review.
    let r = app
        .try_login("travel@example.com", "correct horse", "phone-2", Some("US"))
        .await;
    assert_eq!(r.status(), 201);
    let alerts = app.alerts(&t).await;
    assert_eq!(rules(&alerts, "two_countries_too_close"), 1, "{alerts:?}");
    assert_eq!(
        app.admin_alerts_for(&id, "two_countries_too_close").await,
        1
    );
    let acc: Value = app.get("/v1/account", &t).await.json().await.unwrap();
    assert_eq!(acc["status"], "restricted");
    app.deposit(&t, "10.00").await;
    app.register("bob@example.com").await;
    let body = json!({"to": "bob@example.com", "amount": "1.00", "currency": "CNY"});
    let r = app.post_idem("/v1/transfers", &t, "x", body).await;
    let p = assert_problem(r, 403, "ACCOUNT_RESTRICTED").await;
    assert!(p["hint"].as_str().is_some());
}

#[tokio::test]
async fn a_quick_withdrawal_of_a_deposit_is_held_for_review() {
    let app = TestApp::spawn().await;
    let (id, t) = app.user("quick@example.com").await;
    app.approve_kyc(&id).await;
    app.deposit(&t, "500.00").await;
    let body = json!({"amount": "450.00", "currency": "CNY", "method": "bank_card", "destination": "6222"});
    let r = app.post_idem("/v1/withdrawals", &t, "w", body).await;
    assert_problem(r, 403, "ACCOUNT_RESTRICTED").await;
    let alerts = app.alerts(&t).await;
    assert_eq!(
        rules(&alerts, "deposit_then_quick_withdrawal"),
        1,
        "{alerts:?}"
    );
    assert_eq!(
        app.admin_alerts_for(&id, "deposit_then_quick_withdrawal")
            .await,
        1
    );
    assert_eq!(app.balance(&t).await, ("500.00".into(), "0.00".into()));
}

#[tokio::test]
async fn a_burst_of_failed_logins_raises_one_alert() {
    let app = TestApp::spawn_with(|s| {
        s.policy.security.failed_login_burst = 3;
        s.policy.security.lockout_failures = 100;
    })
    .await;
    let (id, t) = app.user("burst@example.com").await;
    for _ in 0..5 {
        let r = app
            .try_login("burst@example.com", "wrong pass", "d", None)
            .await;
        assert_problem(r, 401, "INVALID_CREDENTIALS").await;
    }
    let alerts = app.alerts(&t).await;
    assert_eq!(rules(&alerts, "failed_login_burst"), 1, "{alerts:?}");
    assert_eq!(app.admin_alerts_for(&id, "failed_login_burst").await, 1);
}

#[tokio::test]
async fn a_new_device_login_is_pushed_to_the_other_sessions_and_operators() {
    use crate::ws_client::WsClient;
    let app = TestApp::spawn().await;
    let (id, t) = app.user("live@example.com").await;
    let mut ws = WsClient::connect(&app, "/v1/stream", &t).await;
    let mut admin = WsClient::connect(&app, "/v1/admin/stream", crate::helpers::ADMIN).await;
    ws.assert_quiet().await;
    admin.assert_quiet().await;
    let r = app
        .try_login("live@example.com", "correct horse", "tablet-7", Some("CN"))
        .await;
    assert_eq!(r.status(), 201);
    let session_id = r.json::<Value>().await.unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let events = [ws.event().await, ws.event().await];
    let created = events
        .iter()
        .find(|e| e["type"] == "session.created")
        .expect("session.created");
    assert_eq!(created["data"]["new_device"], true, "{created}");
    assert_eq!(created["data"]["device_id"], "tablet-7");
    assert_eq!(created["data"]["session_id"], session_id.as_str());
    let alert = events
        .iter()
        .find(|e| e["type"] == "alert.raised")
        .expect("alert.raised");
    assert_eq!(alert["data"]["rule"], "new_device", "{alert}");
    assert!(alert["data"]["id"].as_str().unwrap().starts_with("alr_"));
    let seen = admin.json().await;
    assert_eq!(seen["type"], "alert.raised", "{seen}");
    assert_eq!(seen["account_id"], id.as_str());
    assert_eq!(seen["data"], alert["data"]);
    // The same device again: session.created with new_device false, no alert.
    assert_eq!(
        app.try_login("live@example.com", "correct horse", "tablet-7", Some("CN"))
            .await
            .status(),
        201
    );
    let again = ws.event().await;
    assert_eq!(again["type"], "session.created");
    assert_eq!(again["data"]["new_device"], false);
    ws.assert_quiet().await;
}
