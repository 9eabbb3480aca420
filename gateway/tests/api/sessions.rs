//! Login, the session list, logging out one session or everywhere else.

use serde_json::{json, Value};

use crate::helpers::{assert_problem, TestApp};

#[tokio::test]
async fn wrong_password_and_unknown_login_get_the_same_answer() {
    let app = TestApp::spawn().await;
    app.register("a@example.com").await;
    for login in ["a@example.com", "nobody@example.com"] {
        let r = app
            .client
            .post(app.url("/v1/sessions"))
            .json(&json!({"login": login, "password": "wrong password", "device_id": "d"}))
            .send()
            .await
            .unwrap();
        let body = assert_problem(r, 401, "INVALID_CREDENTIALS").await;
        assert_eq!(body["detail"], "The login or the password is wrong.");
    }
}

#[tokio::test]
async fn tokens_work_until_their_session_is_revoked() {
    let app = TestApp::spawn().await;
    let id = app.register("b@example.com").await;
    let first = app.login("b@example.com").await;
    let second = app.login("b@example.com").await;
    let third = app.login("B@Example.com").await;
    let r = app.get("/v1/sessions", &second).await;
    let list: Value = r.json().await.unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items.iter().filter(|i| i["current"] == true).count(), 1);
    // Log the first out by id from the second.
    let first_id = app
        .get("/v1/sessions", &first)
        .await
        .json::<Value>()
        .await
        .unwrap()["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["current"] == true)
        .unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.delete(&format!("/v1/sessions/{first_id}"), &second)
            .await
            .status(),
        204
    );
    assert_problem(app.get("/v1/account", &first).await, 401, "UNAUTHENTICATED").await;
    // Log out everywhere else: the third goes, the second stays.
    assert_eq!(app.delete("/v1/sessions", &second).await.status(), 204);
    assert_problem(app.get("/v1/account", &third).await, 401, "UNAUTHENTICATED").await;
    let me: Value = app.get("/v1/account", &second).await.json().await.unwrap();
    assert_eq!(me["account_id"], id.as_str());
    // Log out the current one.
    assert_eq!(
        app.delete("/v1/sessions/current", &second).await.status(),
        204
    );
    assert_problem(
        app.get("/v1/account", &second).await,
        401,
        "UNAUTHENTICATED",
    )
    .await;
}

#[tokio::test]
async fn garbage_and_missing_tokens_are_401() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user("c@example.com").await;
    for bad in ["", "garbage", "okp_AAAA", &token[..token.len() - 2]] {
        assert_problem(app.get("/v1/account", bad).await, 401, "UNAUTHENTICATED").await;
    }
    let r = app.client.get(app.url("/v1/account")).send().await.unwrap();
    assert_problem(r, 401, "UNAUTHENTICATED").await;
    // Another account's session id is not found.
    let r = app
        .delete("/v1/sessions/ses_00000000000000010000000000000001", &token)
        .await;
    assert_problem(r, 404, "NOT_FOUND").await;
}
