//! Operators' routes: the admin token, looking at and freezing accounts, the dev
//! outbox, the ledger audit, and switching maintenance.

use serde_json::{json, Value};

use crate::helpers::{assert_problem, TestApp, ADMIN};
use crate::ws_client::{refusal, WsClient};

/// Every admin route, as (method, path, body).
fn routes(id: &str) -> Vec<(&'static str, String, Value)> {
    vec![
        ("GET", format!("/v1/admin/accounts/{id}"), Value::Null),
        (
            "POST",
            format!("/v1/admin/accounts/{id}/freeze"),
            json!({"reason": "x"}),
        ),
        (
            "POST",
            format!("/v1/admin/accounts/{id}/unfreeze"),
            json!({"reason": "x"}),
        ),
        ("GET", "/v1/admin/outbox".into(), Value::Null),
        ("GET", "/v1/admin/ledger".into(), Value::Null),
        (
            "PUT",
            "/v1/admin/maintenance".into(),
            json!({"enabled": true, "message": null}),
        ),
    ]
}

async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    body: &Value,
    token: Option<&str>,
) -> reqwest::Response {
    let mut req = match method {
        "GET" => app.client.get(app.url(path)),
        "POST" => app.client.post(app.url(path)).json(body),
        _ => app.client.put(app.url(path)).json(body),
    };
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn admin_routes_need_the_admin_token() {
    let app = TestApp::spawn().await;
    let (id, user_token) = app.user("adm-auth@example.com").await;
    for (method, path, body) in routes(&id) {
        for token in [None, Some("wrong")] {
            let r = call(&app, method, &path, &body, token).await;
            assert_problem(r, 401, "UNAUTHENTICATED").await;
        }
        // A user's own session is authenticated but not allowed here.
        let r = call(&app, method, &path, &body, Some(user_token.as_str())).await;
        assert_problem(r, 403, "FORBIDDEN").await;
        let r = call(&app, method, &path, &body, Some(ADMIN)).await;
        assert_eq!(r.status(), 200, "{method} {path}");
    }
    app.maintenance(false, None).await;
    // The admin stream too, before the upgrade.
    for path in ["/v1/admin/stream", "/v1/admin/stream?token=wrong"] {
        let e = WsClient::try_connect(&app, path, None).await.err().unwrap();
        assert_eq!(refusal(e).0, 401);
    }
    WsClient::try_connect(&app, &format!("/v1/admin/stream?token={ADMIN}"), None)
        .await
        .unwrap()
        .assert_quiet()
        .await;
}

#[tokio::test]
async fn without_a_configured_admin_token_admin_routes_are_401() {
    let app = TestApp::spawn_with(|s| s.admin_token = None).await;
    let id = app.register("adm-none@example.com").await;
    for (method, path, body) in routes(&id) {
        for token in [None, Some(ADMIN), Some("")] {
            let r = call(&app, method, &path, &body, token).await;
            assert_problem(r, 401, "UNAUTHENTICATED").await;
        }
    }
    let e = WsClient::try_connect(&app, "/v1/admin/stream", Some(ADMIN))
        .await
        .err()
        .unwrap();
    assert_eq!(refusal(e).0, 401);
}

#[tokio::test]
async fn freeze_and_unfreeze_change_the_status_with_a_reason() {
    let app = TestApp::spawn().await;
    let (id, token) = app.user("adm-freeze@example.com").await;
    let view: Value = app
        .get(&format!("/v1/admin/accounts/{id}"), ADMIN)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["account_id"], id.as_str());
    assert_eq!(view["status"], "active");
    assert_eq!(view["kyc"]["tier"], 0);
    assert!(view["balances"].as_array().is_some_and(|b| !b.is_empty()));
    let r = app
        .post(
            &format!("/v1/admin/accounts/{id}/freeze"),
            ADMIN,
            json!({"reason": "  card testing  "}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"account_id": id, "status": "frozen", "reason": "card testing"})
    );
    // Both views say so, with the reason.
    for (path, t) in [
        (format!("/v1/admin/accounts/{id}"), ADMIN),
        ("/v1/account".into(), token.as_str()),
    ] {
        let v: Value = app.get(&path, t).await.json().await.unwrap();
        assert_eq!(v["status"], "frozen", "{path}");
        assert_eq!(v["status_reason"], "card testing", "{path}");
    }
    let r = app
        .post(
            &format!("/v1/admin/accounts/{id}/unfreeze"),
            ADMIN,
            json!({"reason": "cleared"}),
        )
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "active");
    let v: Value = app.get("/v1/account", &token).await.json().await.unwrap();
    assert_eq!(v["status"], "active");
    // Unfreezing an active account changes nothing.
    let r = app
        .post(
            &format!("/v1/admin/accounts/{id}/unfreeze"),
            ADMIN,
            json!({"reason": "again"}),
        )
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "active");
}

#[tokio::test]
async fn freeze_needs_a_reason_and_an_existing_account() {
    let app = TestApp::spawn().await;
    let id = app.register("adm-reason@example.com").await;
    let path = format!("/v1/admin/accounts/{id}/freeze");
    for body in [
        json!({}),
        json!({"reason": ""}),
        json!({"reason": "   "}),
        json!({"reason": "x".repeat(501)}),
        json!({"reason": 42}),
    ] {
        assert_problem(app.post(&path, ADMIN, body).await, 400, "VALIDATION_FAILED").await;
    }
    // 500 characters are fine.
    let r = app
        .post(&path, ADMIN, json!({"reason": "x".repeat(500)}))
        .await;
    assert_eq!(r.status(), 200);
    for unknown in ["acc_00000000000000ff", "nonsense"] {
        let r = app
            .post(
                &format!("/v1/admin/accounts/{unknown}/freeze"),
                ADMIN,
                json!({"reason": "x"}),
            )
            .await;
        assert_problem(r, 404, "NOT_FOUND").await;
        let r = app
            .get(&format!("/v1/admin/accounts/{unknown}"), ADMIN)
            .await;
        assert_problem(r, 404, "NOT_FOUND").await;
    }
}

#[tokio::test]
async fn the_ledger_is_balanced_on_a_fresh_server() {
    let app = TestApp::spawn().await;
    app.register("adm-ledger@example.com").await;
    let ledger: Value = app
        .get("/v1/admin/ledger", ADMIN)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ledger["balanced"], true, "{ledger}");
    for c in ["CNY", "USD"] {
        assert_eq!(
            ledger["currencies"][c],
            json!({"deposited": "0.00", "fees": "0.00", "paid_out": "0.00", "balances": "0.00", "in_flight": "0.00"}),
            "{ledger}"
        );
    }
}

#[tokio::test]
async fn the_outbox_is_there_in_dev_mode_only() {
    let app = TestApp::spawn().await;
    let r = app
        .get("/v1/admin/outbox?to=nobody@example.com", ADMIN)
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"items": []}));
    let prod = TestApp::spawn_with(|s| s.dev = false).await;
    assert_problem(prod.get("/v1/admin/outbox", ADMIN).await, 404, "NOT_FOUND").await;
}

#[tokio::test]
async fn maintenance_switches_and_validates() {
    let app = TestApp::spawn().await;
    let r = app
        .put(
            "/v1/admin/maintenance",
            ADMIN,
            json!({"enabled": true, "message": "back soon"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"maintenance": true, "message": "back soon"})
    );
    // Operators still work during maintenance.
    let id = {
        app.maintenance(false, None).await;
        let id = app.register("adm-maint@example.com").await;
        app.maintenance(true, None).await;
        id
    };
    app.freeze(&id, "during maintenance").await;
    for body in [
        json!({}),
        json!({"enabled": "yes"}),
        json!({"enabled": true, "message": "m".repeat(501)}),
    ] {
        assert_problem(
            app.put("/v1/admin/maintenance", ADMIN, body).await,
            400,
            "VALIDATION_FAILED",
        )
        .await;
    }
    app.maintenance(false, None).await;
    let status: Value = app
        .client
        .get(app.url("/v1/system/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status, json!({"maintenance": false, "message": null}));
}

#[tokio::test]
async fn the_openapi_document_describes_the_streams_and_admin_routes() {
    let app = TestApp::spawn().await;
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = &doc["paths"];
    for (path, method) in [
        ("/v1/stream", "get"),
        ("/v1/admin/stream", "get"),
        ("/v1/admin/accounts/{id}", "get"),
        ("/v1/admin/accounts/{id}/freeze", "post"),
        ("/v1/admin/accounts/{id}/unfreeze", "post"),
        ("/v1/admin/outbox", "get"),
        ("/v1/admin/ledger", "get"),
        ("/v1/admin/maintenance", "put"),
    ] {
        let op = &paths[path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        assert!(
            op["responses"]["401"].is_object(),
            "{method} {path}: no 401"
        );
    }
    let stream = &paths["/v1/stream"]["get"];
    assert!(stream["responses"]["101"].is_object());
    let text = stream.to_string();
    for word in ["seq", "resume", "system.status", "1009", "after_seq"] {
        assert!(
            text.contains(word),
            "the stream's doc does not mention {word}"
        );
    }
    // The core routes are still there.
    assert!(paths["/v1/accounts"]["post"].is_object());
}
