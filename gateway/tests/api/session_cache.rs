//! The session cache seen from outside: a session used once is served from the
//! cache afterwards, yet every way of revoking it refuses it on the very next
//! request, and a cached session of a frozen account still cannot move money.

use serde_json::{json, Value};

use crate::helpers::{assert_problem, TestApp, ADMIN};

/// Cache hits so far (process-wide: other tests' servers count too, so only an
/// increase is meaningful).
async fn hits(app: &TestApp) -> f64 {
    app.metric("okpay_session_cache_total{result=\"hit\"}")
        .await
}

/// Uses `token` twice (the second time from the cache) and asserts it works.
async fn warm(app: &TestApp, token: &str) {
    let before = hits(app).await;
    for _ in 0..2 {
        let r = app.get("/v1/account", token).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    assert!(
        hits(app).await > before,
        "the second request was a cache hit"
    );
}

async fn refused(app: &TestApp, token: &str) {
    assert_problem(app.get("/v1/account", token).await, 401, "UNAUTHENTICATED").await;
}

async fn session_id(app: &TestApp, token: &str) -> String {
    let list: Value = app.get("/v1/sessions", token).await.json().await.unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["current"] == true)
        .unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn every_revocation_refuses_a_cached_session_at_once() {
    let app = TestApp::spawn().await;
    let email = "cache-revoke@example.com";
    let (id, first) = app.user(email).await;
    let second = app.login(email).await;
    let third = app.login(email).await;
    let fourth = app.login(email).await;
    for t in [&first, &second, &third, &fourth] {
        warm(&app, t).await;
    }

    // Log out the calling session.
    let r = app.delete("/v1/sessions/current", &first).await;
    assert_eq!(r.status(), 204);
    refused(&app, &first).await;

    // Log out another session by id.
    let third_id = session_id(&app, &third).await;
    warm(&app, &third).await;
    let r = app
        .delete(&format!("/v1/sessions/{third_id}"), &second)
        .await;
    assert_eq!(r.status(), 204);
    refused(&app, &third).await;

    // Log out everywhere else: the fourth goes, the caller stays.
    warm(&app, &fourth).await;
    assert_eq!(app.delete("/v1/sessions", &second).await.status(), 204);
    refused(&app, &fourth).await;
    warm(&app, &second).await;

    // An operator logs the account out everywhere.
    let r = app
        .post(
            &format!("/v1/admin/accounts/{id}/revoke-sessions"),
            ADMIN,
            json!({"reason": "stolen phone"}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    refused(&app, &second).await;

    // A password reset revokes every session.
    let fifth = app.login(email).await;
    warm(&app, &fifth).await;
    let r = app
        .client
        .post(app.url("/v1/password-reset"))
        .json(&json!({ "login": email }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let code = app.last_code(email, "password_reset").await;
    let r = app
        .client
        .post(app.url("/v1/password-reset/confirm"))
        .json(&json!({"login": email, "code": code, "new_password": "new password 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    refused(&app, &fifth).await;

    // An operator closes the (empty) account.
    let r = app
        .client
        .post(app.url("/v1/sessions"))
        .json(&json!({"login": email, "password": "new password 1", "device_id": "d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let sixth = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    warm(&app, &sixth).await;
    let r = app
        .post(
            &format!("/v1/admin/accounts/{id}/close"),
            ADMIN,
            json!({"reason": "asked by the user"}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    refused(&app, &sixth).await;
}

#[tokio::test]
async fn a_cached_session_of_a_frozen_account_cannot_move_money() {
    let app = TestApp::spawn().await;
    let (alice, a) = app.user("cache-frozen@example.com").await;
    app.register("cache-payee@example.com").await;
    app.deposit(&a, "100.00").await;
    warm(&app, &a).await;
    app.freeze(&alice, "suspicious").await;
    // Straight after the freeze, with the session still cached: the engine refuses.
    let r = app
        .post_idem(
            "/v1/transfers",
            &a,
            "frozen-1",
            json!({"to": "cache-payee@example.com", "amount": "10.00", "currency": "CNY"}),
        )
        .await;
    assert_problem(r, 403, "ACCOUNT_FROZEN").await;
    // A frozen user may still log in and read, to see why.
    let me: Value = app.get("/v1/account", &a).await.json().await.unwrap();
    assert_eq!(me["status"], "frozen");
    assert_eq!(app.balance(&a).await.0, "100.00");
}

#[tokio::test]
async fn a_session_expires_by_the_engine_clock_even_when_cached() {
    use std::sync::Arc;

    use okpay_engine::time::{Clock as _, ManualClock, SystemClock, Timestamp};

    // A fixed instant, on a whole second, so the API's rendering is predictable.
    let start = Timestamp(SystemClock.now().millis() / 1000 * 1000);
    let clock = ManualClock::new(start);
    let injected = clock.clone();
    let app = TestApp::spawn_with(move |s| {
        s.clock = okpay_gateway::clock::ClockSetting(Arc::new(injected));
        s.session_ttl = std::time::Duration::from_secs(3600);
    })
    .await;
    app.register("cache-clock@example.com").await;
    let r = app
        .client
        .post(app.url("/v1/sessions"))
        .json(&json!({"login": "cache-clock@example.com", "password": "correct horse", "device_id": "d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let login: Value = r.json().await.unwrap();
    // The expiry is the engine's now plus the TTL, not the wall clock's.
    let expires: chrono::DateTime<chrono::Utc> =
        login["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(expires.timestamp_millis(), start.millis() + 3_600_000);
    let token = login["token"].as_str().unwrap().to_owned();
    warm(&app, &token).await;
    clock.advance_ms(3_600_000 - 1);
    assert_eq!(app.get("/v1/account", &token).await.status(), 200);
    clock.advance_ms(1);
    refused(&app, &token).await;
}

#[tokio::test]
async fn a_login_that_pushes_the_oldest_session_out_refuses_it_at_once() {
    // The engine keeps the newest 32 sessions of an account (MAX_SESSIONS).
    const MAX_SESSIONS: usize = 32;
    let app = TestApp::spawn().await;
    let (_, oldest) = app.user("cache-many@example.com").await;
    warm(&app, &oldest).await;
    for _ in 1..MAX_SESSIONS {
        app.login("cache-many@example.com").await;
    }
    // Still one of the newest 32, and still served from the cache.
    warm(&app, &oldest).await;
    let newest = app.login("cache-many@example.com").await;
    refused(&app, &oldest).await;
    warm(&app, &newest).await;
}
