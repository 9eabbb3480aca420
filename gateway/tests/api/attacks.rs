//! The attacks of issue 9 ("close the money-losing holes found in review"), each
//! tried against the real server as an attacker would, and each refused now. Every
//! test here succeeded in moving money or getting around a protection on the code
//! the review looked at.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{assert_problem, rand_key, TestApp};

const PW: &str = "correct horse";

async fn status(app: &TestApp, token: &str) -> String {
    let body: Value = app.get("/v1/account", token).await.json().await.unwrap();
    body["status"].as_str().unwrap().to_owned()
}

/// Freeze → 5 wrong passwords → the existing session withdraws and transfers.
/// The lockout used to replace the freeze with `locked` (which may send money),
/// and the lockout's end or a password reset then made the account `active`.
#[tokio::test]
async fn a_lockout_does_not_lift_a_freeze() {
    let app = TestApp::spawn_with(|s| {
        s.policy.security.lockout_s = 1;
        s.login_failures_per_login = 100;
    })
    .await;
    let (victim, token) = app.user("frozen@example.com").await;
    let (other, _) = app.user("other@example.com").await;
    app.approve_kyc(&victim).await;
    app.deposit(&token, "500.00").await;
    app.freeze(&victim, "suspected takeover").await;
    for _ in 0..5 {
        let r = app
            .try_login("frozen@example.com", "wrong pass", "d1", None)
            .await;
        assert!([401, 423].contains(&r.status().as_u16()));
    }
    let r = app.try_login("frozen@example.com", PW, "d1", None).await;
    assert_problem(r, 423, "ACCOUNT_LOCKED").await;
    assert_eq!(status(&app, &token).await, "frozen");
    let spend = |k: String| {
        let app = &app;
        let token = token.clone();
        let other = other.clone();
        async move {
            let w = app
                .post_idem(
                    "/v1/withdrawals",
                    &token,
                    &format!("w{k}"),
                    json!({"amount": "100.00", "currency": "CNY", "method": "third_party", "destination": "wallet-1"}),
                )
                .await;
            assert_problem(w, 403, "ACCOUNT_FROZEN").await;
            let t = app
                .post_idem(
                    "/v1/transfers",
                    &token,
                    &format!("t{k}"),
                    json!({"to": other, "amount": "100.00", "currency": "CNY"}),
                )
                .await;
            assert_problem(t, 403, "ACCOUNT_FROZEN").await;
        }
    };
    spend(rand_key()).await;
    // The lockout ends: a good login works, and the account is still frozen.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let token = app.login("frozen@example.com").await;
    assert_eq!(status(&app, &token).await, "frozen");
    // A password reset does not lift it either.
    let r = app
        .client
        .post(app.url("/v1/password-reset"))
        .json(&json!({"login": "frozen@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let code = app.last_code("frozen@example.com", "password_reset").await;
    let r = app
        .client
        .post(app.url("/v1/password-reset/confirm"))
        .json(&json!({"login": "frozen@example.com", "code": code, "new_password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let token = app.login("frozen@example.com").await;
    assert_eq!(status(&app, &token).await, "frozen");
    let w = app
        .post_idem(
            "/v1/withdrawals",
            &token,
            &rand_key(),
            json!({"amount": "100.00", "currency": "CNY", "method": "third_party", "destination": "wallet-1"}),
        )
        .await;
    assert_problem(w, 403, "ACCOUNT_FROZEN").await;
    assert_eq!(app.balance(&token).await.0, "500.00");
}
