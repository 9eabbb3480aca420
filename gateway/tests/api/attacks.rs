//! The attacks of issue 9 ("close the money-losing holes found in review"), each
//! tried against the real server as an attacker would, and each refused now. Every
//! test here succeeded in moving money or getting around a protection on the code
//! the review looked at.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{assert_problem, contains, rand_key, stored_bytes, TestApp};

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

async fn reset_confirm(app: &TestApp, login: &str, code: &str) -> reqwest::Response {
    app.client
        .post(app.url("/v1/password-reset/confirm"))
        .json(&json!({"login": login, "code": code, "new_password": "a new password"}))
        .send()
        .await
        .unwrap()
}

async fn reset_start(app: &TestApp, login: &str) {
    let r = app
        .client
        .post(app.url("/v1/password-reset"))
        .json(&json!({ "login": login }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
}

fn wrong(code: &str) -> &'static str {
    if code == "000000" {
        "111111"
    } else {
        "000000"
    }
}

/// Guessing reset codes across codes: each new code used to bring 5 fresh
/// attempts. Now 10 wrong answers in 24 h block every confirmation, even the
/// right code, with 429 and an alert.
#[tokio::test]
async fn reset_codes_cant_be_guessed_across_codes() {
    let app = TestApp::spawn().await;
    let (victim, _) = app.user("guess@example.com").await;
    for round in 0..3 {
        reset_start(&app, "guess@example.com").await;
        let code = app.last_code("guess@example.com", "password_reset").await;
        for _ in 0..if round < 2 { 4 } else { 2 } {
            let r = reset_confirm(&app, "guess@example.com", wrong(&code)).await;
            assert_problem(r, 401, "CHALLENGE_FAILED").await;
        }
    }
    reset_start(&app, "guess@example.com").await;
    let code = app.last_code("guess@example.com", "password_reset").await;
    let r = reset_confirm(&app, "guess@example.com", &code).await;
    let body = assert_problem(r, 429, "RATE_LIMITED").await;
    assert!(body["retry_after_s"].as_u64().unwrap() > 3600);
    assert_eq!(
        app.admin_alerts_for(&victim, "reset_code_guessing").await,
        1
    );
    // The password did not change.
    app.login("guess@example.com").await;
}

/// Every failed reset confirmation answers the same, known login or not, with or
/// without a pending code (a 410 for an expired code used to reveal the login).
#[tokio::test]
async fn reset_confirm_answers_tell_nothing_about_logins() {
    let app = TestApp::spawn().await;
    app.register("known@example.com").await;
    let mut bodies = Vec::new();
    for login in ["known@example.com", "nobody@example.com"] {
        let r = reset_confirm(&app, login, "123456").await;
        bodies.push(assert_problem(r, 401, "CHALLENGE_FAILED").await);
    }
    assert_eq!(bodies[0], bodies[1]);
    // After 10 failures both are blocked alike.
    for login in ["known@example.com", "nobody@example.com"] {
        for _ in 0..9 {
            let r = reset_confirm(&app, login, "123456").await;
            assert_problem(r, 401, "CHALLENGE_FAILED").await;
        }
        let r = reset_confirm(&app, login, "123456").await;
        assert_problem(r, 429, "RATE_LIMITED").await;
    }
}

/// Unknown logins lock like known ones: the same 423 with `retry_after_s` after 5
/// failures (a 401 forever used to tell the login does not exist).
#[tokio::test]
async fn unknown_logins_lock_like_known_ones() {
    let app = TestApp::spawn_with(|s| s.login_failures_per_login = 100).await;
    app.register("real@example.com").await;
    for login in ["real@example.com", "ghost@example.com"] {
        for _ in 0..4 {
            let r = app.try_login(login, "wrong pass", "d1", None).await;
            assert_problem(r, 401, "INVALID_CREDENTIALS").await;
        }
        let r = app.try_login(login, "wrong pass", "d1", None).await;
        let body = assert_problem(r, 423, "ACCOUNT_LOCKED").await;
        assert!(body["retry_after_s"].as_u64().unwrap() > 800);
        let r = app.try_login(login, "wrong pass", "d1", None).await;
        assert_problem(r, 423, "ACCOUNT_LOCKED").await;
    }
}

/// Guessing step-up codes across challenges: each challenge brought 5 attempts.
/// Now the 10th wrong code within 24 h freezes the account and raises an alert.
#[tokio::test]
async fn step_up_codes_cant_be_guessed_across_challenges() {
    let app = TestApp::spawn().await;
    let (thief_view, token) = app.user("stolen@example.com").await;
    let (_, _) = app.user("mule@example.com").await;
    app.approve_kyc(&thief_view).await;
    app.deposit(&token, "5000.00").await;
    let mut wrongs = 0;
    for c in 0..4 {
        let r = app
            .post_idem(
                "/v1/transfers",
                &token,
                &format!("big{c}"),
                json!({"to": "mule@example.com", "amount": "1500.00", "currency": "CNY"}),
            )
            .await;
        if wrongs >= 10 {
            assert_problem(r, 403, "ACCOUNT_FROZEN").await;
            break;
        }
        assert_eq!(r.status(), 202);
        let id = r.json::<Value>().await.unwrap()["challenge"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let code = app.last_code("stolen@example.com", "challenge").await;
        for _ in 0..4 {
            if wrongs == 10 {
                break;
            }
            let r = app
                .post(
                    &format!("/v1/challenges/{id}/confirm"),
                    &token,
                    json!({"code": wrong(&code)}),
                )
                .await;
            assert_problem(r, 401, "CHALLENGE_FAILED").await;
            wrongs += 1;
        }
    }
    assert_eq!(wrongs, 10);
    assert_eq!(status(&app, &token).await, "frozen");
    assert_eq!(
        app.admin_alerts_for(&thief_view, "step_up_code_guessing")
            .await,
        1
    );
    assert_eq!(app.balance(&token).await.0, "5000.00");
}

/// Splitting a large payment into amounts under the step-up threshold: once the
/// day's unchallenged outgoing money would reach 1,000.00, a challenge is needed.
#[tokio::test]
async fn split_payments_need_step_up_once_the_days_sum_reaches_the_threshold() {
    let app = TestApp::spawn().await;
    let (id, token) = app.user("split@example.com").await;
    let (_, _) = app.user("payee@example.com").await;
    app.approve_kyc(&id).await;
    app.deposit(&token, "5000.00").await;
    for i in 0..3 {
        let r = app
            .post_idem(
                "/v1/transfers",
                &token,
                &format!("s{i}"),
                json!({"to": "payee@example.com", "amount": "300.00", "currency": "CNY"}),
            )
            .await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }
    let r = app
        .post_idem(
            "/v1/transfers",
            &token,
            "s3",
            json!({"to": "payee@example.com", "amount": "100.00", "currency": "CNY"}),
        )
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(
        r.json::<Value>().await.unwrap()["status"],
        "challenge_required"
    );
    let r = app
        .post_idem(
            "/v1/withdrawals",
            &token,
            "w1",
            json!({"amount": "100.00", "currency": "CNY", "method": "third_party", "destination": "wallet-1"}),
        )
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(
        r.json::<Value>().await.unwrap()["status"],
        "challenge_required"
    );
    assert_eq!(app.balance(&token).await.0, "4100.00");
}

/// 200 registrations at once: every one is answered (201, or 503 OVERLOADED with
/// Retry-After beyond the hashing bound), none hangs or fails otherwise.
#[tokio::test]
async fn a_registration_flood_is_bounded_and_answered() {
    // The real binary in its own process, so its peak memory is its own (the test
    // process runs many servers at once).
    let data = tempfile::tempdir().unwrap();
    let port = crate::binary::free_port();
    let mut server = crate::binary::start_with(data.path(), port, &["--hash-concurrency", "2"]);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    crate::binary::wait_ready(&client, &base).await;
    let sends = (0..200).map(|i| {
        client
            .post(format!("{base}/v1/accounts"))
            .json(&json!({"email": format!("flood{i}@example.com"), "password": PW, "display_name": "f"}))
            .send()
    });
    let answers = futures::future::join_all(sends).await;
    let mut created = 0;
    let mut overloaded = 0;
    for r in answers {
        let r = r.unwrap();
        match r.status().as_u16() {
            201 => created += 1,
            503 => {
                assert!(r.headers().contains_key("retry-after"));
                assert_problem(r, 503, "OVERLOADED").await;
                overloaded += 1;
            }
            other => panic!("unexpected {other}: {}", r.text().await.unwrap()),
        }
    }
    assert_eq!(created + overloaded, 200);
    assert!(created > 0);
    // The server's peak resident memory stays far from what 200 parallel hashes
    // (19 MiB each, 3.8 GiB) would take.
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.id())).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    crate::binary::terminate(&mut server);
    assert!(peak_kib < 512 * 1024, "peak RSS {peak_kib} KiB");
}

// ---- TOTP enrolment can't be used by a stolen session ----------------------------

fn totp_code(secret: &str, step: u64) -> String {
    use totp_rs::{Algorithm, Secret, TOTP};
    let bytes = Secret::Encoded(secret.to_owned()).to_bytes().unwrap();
    TOTP::new_unchecked(Algorithm::SHA1, 6, 1, 30, bytes).generate(step * 30)
}

fn current_step() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 30
}

async fn totp_enabled(app: &TestApp, token: &str) -> bool {
    let body: Value = app.get("/v1/account", token).await.json().await.unwrap();
    body["totp_enabled"].as_bool().unwrap()
}

/// The owner enrols TOTP the proper way (password, the code sent to their email,
/// a first code of the app): (secret, recovery codes).
async fn enrol(app: &TestApp, token: &str, email: &str) -> (String, Vec<String>) {
    let r = app
        .post("/v1/account/totp/code", token, json!({"password": PW}))
        .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let code = app.last_code(email, "security_code").await;
    let r = app
        .post(
            "/v1/account/totp",
            token,
            json!({"password": PW, "code": code}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let secret = r.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .post(
            "/v1/account/totp/confirm",
            token,
            json!({"code": totp_code(&secret, current_step())}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let codes: Vec<String> = r.json::<Value>().await.unwrap()["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    assert!(totp_enabled(app, token).await);
    (secret, codes)
}

/// A stolen session token enrolled its own TOTP (`POST /v1/account/totp` with an
/// empty body) and then confirmed every large transfer with it. Now the password
/// and the code sent to the owner's email are both needed, and a wrong password
/// counts towards the login lockout.
#[tokio::test]
async fn a_stolen_token_cant_enrol_its_own_totp() {
    let app = TestApp::spawn().await;
    let (_, stolen) = app.user("victim@example.com").await;
    // No password: refused before anything happens.
    let r = app.post("/v1/account/totp", &stolen, json!({})).await;
    assert_eq!(r.status(), 400);
    let r = app
        .post(
            "/v1/account/totp",
            &stolen,
            json!({"password": "guess", "code": "123456"}),
        )
        .await;
    assert_problem(r, 401, "INVALID_CREDENTIALS").await;
    let r = app
        .post(
            "/v1/account/totp/code",
            &stolen,
            json!({"password": "guess"}),
        )
        .await;
    assert_problem(r, 401, "INVALID_CREDENTIALS").await;
    // The password (phished, say) but not the owner's mailbox: the code the
    // attacker asks for goes to the owner, and guesses fail.
    let r = app
        .post("/v1/account/totp/code", &stolen, json!({"password": PW}))
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<Value>().await.unwrap()["method"], "email");
    let sent = app.last_code("victim@example.com", "security_code").await;
    let r = app
        .post(
            "/v1/account/totp",
            &stolen,
            json!({"password": PW, "code": wrong(&sent)}),
        )
        .await;
    assert_problem(r, 401, "CHALLENGE_FAILED").await;
    let r = app
        .post(
            "/v1/account/totp/confirm",
            &stolen,
            json!({"code": "123456"}),
        )
        .await;
    assert_problem(r, 404, "NOT_FOUND").await;
    assert!(!totp_enabled(&app, &stolen).await);
    // Wrong passwords here are failed logins: the fifth locks (423).
    for _ in 0..3 {
        let r = app
            .post(
                "/v1/account/totp/code",
                &stolen,
                json!({"password": "nope"}),
            )
            .await;
        assert_problem(r, 401, "INVALID_CREDENTIALS").await;
    }
    let r = app
        .post(
            "/v1/account/totp/code",
            &stolen,
            json!({"password": "nope"}),
        )
        .await;
    assert_problem(r, 423, "ACCOUNT_LOCKED").await;
}

/// With TOTP on, replacing or removing it takes the current app's code: the
/// password and an SMS/email code are not enough, and "already enrolled" is
/// refused by the engine (409) without `replace`.
#[tokio::test]
async fn an_enrolled_totp_cant_be_replaced_or_removed_without_it() {
    let app = TestApp::spawn().await;
    let (_, owner) = app.user("owner@example.com").await;
    let (secret, _) = enrol(&app, &owner, "owner@example.com").await;
    let stolen = app.login("owner@example.com").await;
    let mut ws = crate::ws_client::WsClient::connect(&app, "/v1/stream", &owner).await;
    // No code is sent any more: the app is the factor.
    let r = app
        .post("/v1/account/totp/code", &stolen, json!({"password": PW}))
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<Value>().await.unwrap()["method"], "totp");
    assert_eq!(
        app.outbox("owner@example.com")
            .await
            .iter()
            .filter(|m| m["kind"] == "security_code")
            .count(),
        1,
        "only the enrolment's code was ever sent"
    );
    let r = app
        .post(
            "/v1/account/totp",
            &stolen,
            json!({"password": PW, "code": "123456"}),
        )
        .await;
    assert_problem(r, 409, "ALREADY_EXISTS").await;
    for path in ["/v1/account/totp/remove", "/v1/account/totp/recovery-codes"] {
        let r = app
            .post(path, &stolen, json!({"password": PW, "code": "12345x"}))
            .await;
        assert_problem(r, 401, "CHALLENGE_FAILED").await;
    }
    let r = app
        .post(
            "/v1/account/totp",
            &stolen,
            json!({"password": PW, "code": "000000", "replace": true}),
        )
        .await;
    assert_problem(r, 401, "CHALLENGE_FAILED").await;
    assert!(totp_enabled(&app, &owner).await);
    // The owner, with the app, removes it; every session hears of it.
    let r = app
        .post(
            "/v1/account/totp/remove",
            &owner,
            json!({"password": PW, "code": totp_code(&secret, current_step() + 1)}),
        )
        .await;
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    assert!(!totp_enabled(&app, &owner).await);
    let frame = ws.event().await;
    assert_eq!(frame["type"], "security.changed", "{frame}");
    assert_eq!(frame["data"]["change"], "totp_removed");
    assert_eq!(frame["data"]["totp_enabled"], false);
    // The notice is derived from the durable notification, asynchronously, in
    // the account's language (the default, Chinese).
    let mut told = false;
    for _ in 0..100 {
        let msgs = app.outbox("owner@example.com").await;
        if msgs.iter().any(|m| {
            m["kind"] == "security_changed"
                && m["locale"] == "zh-CN"
                && m["body"]
                    .as_str()
                    .unwrap()
                    .contains("身份验证器应用已被移除")
        }) {
            told = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        told,
        "the owner got a security_changed notice of the removal"
    );
}

/// A recovery code stands in for a TOTP code once.
#[tokio::test]
async fn a_recovery_code_works_once() {
    let app = TestApp::spawn().await;
    let (id, owner) = app.user("rec@example.com").await;
    app.user("payee@example.com").await;
    app.approve_kyc(&id).await;
    app.deposit(&owner, "3000.00").await;
    let (_, codes) = enrol(&app, &owner, "rec@example.com").await;
    let send = json!({"to": "payee@example.com", "amount": "1000.00", "currency": "CNY"});
    let challenge = |key: &'static str| {
        let (app, owner, send) = (&app, &owner, send.clone());
        async move {
            let r = app.post_idem("/v1/transfers", owner, key, send).await;
            assert_eq!(r.status(), 202);
            let c: Value = r.json().await.unwrap();
            assert_eq!(c["challenge"]["method"], "totp");
            c["challenge"]["id"].as_str().unwrap().to_owned()
        }
    };
    let first = challenge("r1").await;
    let r = app
        .post(
            &format!("/v1/challenges/{first}/confirm"),
            &owner,
            json!({"code": codes[0].to_lowercase()}),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let second = challenge("r2").await;
    let r = app
        .post(
            &format!("/v1/challenges/{second}/confirm"),
            &owner,
            json!({"code": codes[0]}),
        )
        .await;
    assert_problem(r, 401, "CHALLENGE_FAILED").await;
    let r = app
        .post(
            &format!("/v1/challenges/{second}/confirm"),
            &owner,
            json!({"code": codes[1]}),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    assert_eq!(app.balance(&owner).await.0, "1000.00");
}

/// An operator's reset clears TOTP (step-up falls back to a code by email), and
/// the audit trail has it with the reason.
#[tokio::test]
async fn an_operator_totp_reset_clears_it_and_is_audited() {
    let app = TestApp::spawn().await;
    let (id, owner) = app.user("lost@example.com").await;
    enrol(&app, &owner, "lost@example.com").await;
    let path = format!("/v1/admin/accounts/{id}/totp/reset");
    let r = app.admin_post(&path, json!({"reason": ""})).await;
    assert_problem(r, 400, "VALIDATION_FAILED").await;
    let r = app
        .admin_post(
            &path,
            json!({"reason": "lost phone, identity checked, ticket 812"}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(r.json::<Value>().await.unwrap()["cleared"], true);
    assert!(!totp_enabled(&app, &owner).await);
    let r = app
        .admin_get(&format!(
            "/v1/admin/audit?account_id={id}&action=account.reset_totp"
        ))
        .await;
    assert_eq!(r.status(), 200);
    let items = r.json::<Value>().await.unwrap()["items"].clone();
    assert_eq!(items.as_array().unwrap().len(), 1, "{items}");
    assert_eq!(
        items[0]["reason"],
        "lost phone, identity checked, ticket 812"
    );
    // The user can enrol again with a code sent to their email.
    let r = app
        .post("/v1/account/totp/code", &owner, json!({"password": PW}))
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["method"], "email");
}

async fn withdrawn(app: &TestApp, token: &str, id: &str) -> Value {
    for _ in 0..100 {
        let body: Value = app
            .get(&format!("/v1/withdrawals/{id}"), token)
            .await
            .json()
            .await
            .unwrap();
        if body["status"] != "processing" {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("withdrawal {id} never settled");
}

/// Withdrawal destinations are personal data: a card number or a wallet account
/// used to be written in clear to the journal, the snapshots and the pending
/// payouts index. Now only ciphertext and the masked form are stored (and shown),
/// while the payout still gets the real destination (the dev processor fails
/// destinations starting with `fail`: it saw the clear text) and a replay with
/// another destination is still a conflict.
#[tokio::test]
async fn withdrawal_destinations_are_not_stored_in_clear() {
    let app = TestApp::spawn().await;
    let (id, token) = app.user("payee@example.com").await;
    app.approve_kyc(&id).await;
    app.deposit(&token, "900.00").await;
    let card = "6222020212345678";
    let wallet = "alipay:secret.payee@example.com";
    let failing = "failwallet:never.paid@example.com";
    let mut ids = Vec::new();
    for (key, method, dest, masked) in [
        ("c", "bank_card", card, "**** 5678"),
        ("w", "third_party", wallet, "alipay:s***@example.com"),
        ("f", "third_party", failing, "failwallet:n***@example.com"),
    ] {
        let body =
            json!({"amount": "100.00", "currency": "CNY", "method": method, "destination": dest});
        let r = app.post_idem("/v1/withdrawals", &token, key, body).await;
        assert_eq!(r.status(), 202);
        let w: Value = r.json().await.unwrap();
        assert_eq!(w["destination_masked"], masked, "{w}");
        ids.push(w["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        withdrawn(&app, &token, &ids[0]).await["status"],
        "completed"
    );
    assert_eq!(
        withdrawn(&app, &token, &ids[1]).await["status"],
        "completed"
    );
    let failed = withdrawn(&app, &token, &ids[2]).await;
    assert_eq!(
        failed["status"], "failed",
        "the payout saw the clear destination"
    );
    // Same key, another destination with the same masked form: a conflict.
    let other = json!({"amount": "100.00", "currency": "CNY", "method": "bank_card", "destination": "6222020299995678"});
    let r = app.post_idem("/v1/withdrawals", &token, "c", other).await;
    assert_problem(r, 409, "IDEMPOTENCY_CONFLICT").await;
    let same =
        json!({"amount": "100.00", "currency": "CNY", "method": "bank_card", "destination": card});
    let r = app.post_idem("/v1/withdrawals", &token, "c", same).await;
    assert_eq!(r.status(), 202, "a true replay is answered again");
    let bytes = stored_bytes(app._dir.path());
    assert!(!bytes.is_empty());
    for clear in [card, wallet, failing, "secret.payee", "212345678"] {
        assert!(
            !contains(&bytes, clear.as_bytes()),
            "{clear} is stored in clear"
        );
    }
    assert!(contains(&bytes, b"**** 5678"), "the masked form is kept");
}

/// The operators' alerts index grew with every alert ever raised. It keeps the
/// newest `alerts_kept` now (the list reads it while the in-memory ring holds
/// fewer than asked for); the accounts keep their own alerts regardless.
#[tokio::test]
async fn the_alerts_index_keeps_only_the_newest() {
    let app = TestApp::spawn_with(|s| s.alerts_kept = 3).await;
    let (id, token) = app.user("alerted@example.com").await;
    // Each login from a new device raises a `new_device` alert.
    for d in 0..5 {
        let r = app
            .try_login("alerted@example.com", PW, &format!("device-{d}"), None)
            .await;
        assert_eq!(r.status(), 201);
    }
    let own: Vec<Value> = app.alerts(&token).await;
    let own: Vec<Value> = own
        .into_iter()
        .filter(|a| a["rule"] == "new_device")
        .map(|a| a["id"].clone())
        .collect();
    assert_eq!(own.len(), 5, "the account keeps its own");
    let mut kept = Vec::new();
    for _ in 0..200 {
        let body: Value = app
            .admin_get("/v1/admin/alerts?limit=500")
            .await
            .json()
            .await
            .unwrap();
        kept = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["account_id"] == id.as_str())
            .map(|a| a["id"].clone())
            .collect();
        if kept == own[..3] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(kept, own[..3], "only the newest three are listed");
}

/// Every login added an entry to the global session index, and only a logout
/// removed it: expired sessions' entries stayed forever. The retention sweep
/// (at start-up, then hourly) drops them now.
#[tokio::test]
async fn expired_sessions_leave_the_session_index() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let data = data.clone();
        let app = TestApp::spawn_with(move |s| {
            s.data_dir = data;
            s.session_ttl = Duration::from_secs(1);
        })
        .await;
        app.user("short@example.com").await;
        let r = app.try_login("short@example.com", PW, "d2", None).await;
        assert_eq!(r.status(), 201);
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    }
    // A stopped server's last tasks (or the scan below) may hold the database
    // lock for a moment: wait until it is free before starting the next server.
    let unlocked = || async {
        for _ in 0..100 {
            if okpay_engine::store::embedded::EmbeddedStore::open(&data).is_ok() {
                tokio::time::sleep(Duration::from_millis(300)).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the store stayed locked");
    };
    let sessions = || async {
        // The stopped server's last tasks may hold the database for a moment.
        for _ in 0..100 {
            if let Ok(store) = okpay_engine::store::embedded::EmbeddedStore::open(&data) {
                return okpay_engine::store::Store::scan_index(&store, "session", None, 100)
                    .await
                    .unwrap();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the store stayed locked after the server stopped");
    };
    assert_eq!(sessions().await.len(), 2, "both logins are indexed");
    let mut left = Vec::new();
    // Each start sweeps; a stop right after start may cut a sweep short, so a few
    // starts (bounded) are allowed.
    for start in 0..10 {
        unlocked().await;
        {
            let data = data.clone();
            let app = TestApp::spawn_with(move |s| s.data_dir = data).await;
            if start == 0 {
                // A live session (30 days) stays.
                let token = app.login("short@example.com").await;
                assert_eq!(app.get("/v1/account", &token).await.status(), 200);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        left = sessions().await;
        if left.len() == 1 {
            break;
        }
    }
    assert_eq!(left.len(), 1, "only the live session stays: {left:?}");
}

async fn failed_login_from(app: &TestApp, login: &str, forwarded: &str) -> u16 {
    app.client
        .post(app.url("/v1/sessions"))
        .header("X-Forwarded-For", forwarded)
        .json(&json!({"login": login, "password": "wrong pass", "device_id": "d"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The per-IP login limit sees the client's address. A client talking to the
/// server directly can't escape it by writing `X-Forwarded-For`; behind a
/// trusted proxy the header's right-most untrusted hop is the client, so the
/// proxy's clients are limited one by one (not all together as the proxy).
#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let direct = TestApp::spawn_with(|s| {
        s.login_failures_per_ip = 3;
        s.login_failures_per_login = 100;
    })
    .await;
    for n in 0..3 {
        let status = failed_login_from(
            &direct,
            &format!("u{n}@example.com"),
            &format!("203.0.113.{n}"),
        )
        .await;
        assert_eq!(status, 401);
    }
    let status = failed_login_from(&direct, "u9@example.com", "198.51.100.9").await;
    assert_eq!(
        status, 429,
        "a made-up X-Forwarded-For does not reset the limit"
    );

    let proxied = TestApp::spawn_with(|s| {
        s.login_failures_per_ip = 3;
        s.login_failures_per_login = 100;
        s.trusted_proxies = okpay_gateway::client_ip::Cidr::parse_list("127.0.0.1/32");
    })
    .await;
    for n in 0..3 {
        let status = failed_login_from(&proxied, &format!("p{n}@example.com"), "203.0.113.7").await;
        assert_eq!(status, 401);
    }
    // What the client wrote left of the proxy's hop changes nothing.
    let status = failed_login_from(&proxied, "p8@example.com", "10.9.9.9, 203.0.113.7").await;
    assert_eq!(status, 429, "the client behind the proxy is limited");
    let status = failed_login_from(&proxied, "p9@example.com", "203.0.113.8").await;
    assert_eq!(status, 401, "another client of the same proxy is not");
}

/// A fee that rounds to nothing let many tiny operations pass free: 2.5% of
/// 0.10 by credit card is 0.0025, which used to round to 0.00.
#[tokio::test]
async fn a_tiny_operation_pays_at_least_one_minor_unit_of_fee() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user("tiny@example.com").await;
    let r = app
        .post_idem(
            "/v1/deposits",
            &token,
            "tiny",
            json!({"amount": "0.10", "currency": "CNY", "method": "credit_card", "card_number": crate::helpers::CARD}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let d: Value = r.json().await.unwrap();
    assert_eq!(
        (&d["fee"], &d["net"]),
        (&json!("0.01"), &json!("0.09")),
        "{d}"
    );
}
