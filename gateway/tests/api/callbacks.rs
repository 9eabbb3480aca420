//! The processors' callback routes refuse what an outsider can send with a 4xx
//! problem+json and never a 5xx: no signature or a wrong or stale one is 401
//! `UNAUTHENTICATED`, a correctly signed but malformed body is 400
//! `VALIDATION_FAILED`. Only an unconfigured server outside `--dev` answers 503,
//! naming the missing setting (and only once the call is signed).

use okpay_gateway::integrations::signature;
use okpay_gateway::routes::callbacks::DEV_CALLBACK_SECRET;

use crate::helpers::{assert_problem, TestApp};

const ROUTES: [&str; 2] = ["/v1/callbacks/processor", "/v1/callbacks/payouts"];
const KEY: &str = "3333333333333333333333333333333333333333333333333333333333333333";

/// POSTs `body` with the three Standard Webhooks headers, signed with `secret`
/// at `ts` (Unix seconds).
async fn signed(app: &TestApp, path: &str, body: &str, secret: &str, ts: i64) -> reqwest::Response {
    let id = format!("msg_{}", crate::helpers::rand_key());
    app.client
        .post(app.url(path))
        .header("webhook-id", &id)
        .header("webhook-timestamp", ts.to_string())
        .header(
            "webhook-signature",
            signature::sign(secret, &id, ts, body.as_bytes()),
        )
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn unsigned_mis_signed_stale_or_malformed_callbacks_get_4xx_problems() {
    let app = TestApp::spawn().await;
    let now = chrono::Utc::now().timestamp();
    for path in ROUTES {
        // No headers at all, whatever the body.
        for body in ["", "{}", "not json", "{\"type\":\"payout.completed\"}"] {
            let r = app
                .client
                .post(app.url(path))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_problem(r, 401, "UNAUTHENTICATED").await;
        }
        // Headers present but not a signature the server accepts.
        let r = app
            .client
            .post(app.url(path))
            .header("webhook-id", "x")
            .header("webhook-timestamp", "not-a-number")
            .header("webhook-signature", "v1,AAAA")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_problem(r, 401, "UNAUTHENTICATED").await;
        let r = signed(&app, path, "{}", "whsec_d3Jvbmc=", now).await;
        assert_problem(r, 401, "UNAUTHENTICATED").await;
        let r = signed(&app, path, "{}", DEV_CALLBACK_SECRET, now - 3600).await;
        assert_problem(r, 401, "UNAUTHENTICATED").await;
        // Correctly signed (the dev secret) but malformed: 400.
        for body in [
            "not json",
            "[]",
            "{}",
            "{\"type\":\"something.else\",\"payout_id\":\"wd_x\",\"charge_id\":\"c\",\"reference\":\"r\"}",
        ] {
            let r = signed(&app, path, body, DEV_CALLBACK_SECRET, now).await;
            assert_problem(r, 400, "VALIDATION_FAILED").await;
        }
    }
    let r = signed(
        &app,
        "/v1/callbacks/payouts",
        "{\"type\":\"payout.completed\",\"payout_id\":\"not-a-withdrawal\"}",
        DEV_CALLBACK_SECRET,
        now,
    )
    .await;
    assert_problem(r, 400, "VALIDATION_FAILED").await;
    // A well-formed report of a charge the server never made is acknowledged
    // without effect, not an error.
    let r = signed(
        &app,
        "/v1/callbacks/processor",
        "{\"type\":\"charge.succeeded\",\"charge_id\":\"ch_x\",\"reference\":\"acc_0000000000000000:nope\"}",
        DEV_CALLBACK_SECRET,
        now,
    )
    .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

#[tokio::test]
async fn without_dev_and_without_a_secret_a_signed_callback_gets_503_naming_the_setting() {
    let app = TestApp::spawn_with(|s| {
        s.dev = false;
        s.kyc_key = Some(okpay_gateway::config::Redacted(KEY.into()));
    })
    .await;
    let now = chrono::Utc::now().timestamp();
    for (path, setting) in [
        (ROUTES[0], "OKPAY_PROCESSOR_CALLBACK_SECRET"),
        (ROUTES[1], "OKPAY_PAYOUTS_CALLBACK_SECRET"),
    ] {
        // Unsigned is still refused as such.
        let r = app
            .client
            .post(app.url(path))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_problem(r, 401, "UNAUTHENTICATED").await;
        // The dev secret means nothing outside --dev.
        let r = signed(&app, path, "{}", DEV_CALLBACK_SECRET, now).await;
        let body = assert_problem(r, 503, "UNAVAILABLE").await;
        assert!(body["detail"].as_str().unwrap().contains(setting), "{body}");
    }
}
