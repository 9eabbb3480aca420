//! A login leaves the cached sessions of its account (and of the accounts
//! sharing its revocation stripe) alone unless it pushed a session out. Its own
//! test binary: the cache's hit and miss counters are process-wide, so in the
//! `api` binary every other test's requests would move them too; here they count
//! this test's requests alone.

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;

use helpers::TestApp;
use okpay_engine::domain::state::MAX_SESSIONS;

/// `okpay_session_cache_total{result}` as the server reports it.
async fn cache_count(app: &TestApp, result: &str) -> f64 {
    app.metric(&format!("okpay_session_cache_total{{result=\"{result}\"}}"))
        .await
}

async fn account_ok(app: &TestApp, token: &str) {
    let r = app.get("/v1/account", token).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

#[tokio::test]
async fn a_login_below_the_session_cap_keeps_other_cached_sessions_cached() {
    let app = TestApp::spawn().await;
    let email = "cache-logins@example.com";
    let (_, first) = app.user(email).await;
    let (_, bystander) = app.user("cache-bystander@example.com").await;
    account_ok(&app, &first).await;
    account_ok(&app, &bystander).await;

    // Logins of the same account, all below the cap: the first session and the
    // other account's stay cached (with the eviction at every login, the first
    // session's next request was a miss).
    let misses = cache_count(&app, "miss").await;
    let hits = cache_count(&app, "hit").await;
    for _ in 2..MAX_SESSIONS {
        app.login(email).await;
        account_ok(&app, &first).await;
        account_ok(&app, &bystander).await;
    }
    assert_eq!(
        cache_count(&app, "miss").await,
        misses,
        "no login below the cap made a cached session miss"
    );
    assert_eq!(
        cache_count(&app, "hit").await - hits,
        2.0 * (MAX_SESSIONS - 2) as f64,
        "every request after a login was a hit"
    );

    // The last session below the cap fills it: nothing pushed out yet. The
    // next login pushes the first out, and it is refused at once, from the cache.
    app.login(email).await;
    account_ok(&app, &first).await;
    app.login(email).await;
    helpers::assert_problem(app.get("/v1/account", &first).await, 401, "UNAUTHENTICATED").await;
}
