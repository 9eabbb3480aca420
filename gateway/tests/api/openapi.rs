//! The OpenAPI document at `/openapi.json`: valid OpenAPI 3 (it parses back into
//! utoipa's model), and it lists every route of API.md with its responses.

use serde_json::Value;

use crate::helpers::TestApp;

/// Every route of `shared/design/API.md`.
const API_ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/v1/system/status"),
    ("post", "/v1/accounts"),
    ("post", "/v1/sessions"),
    ("post", "/v1/password-reset"),
    ("post", "/v1/password-reset/confirm"),
    ("get", "/v1/account"),
    ("patch", "/v1/account/profile"),
    ("get", "/v1/sessions"),
    ("delete", "/v1/sessions/current"),
    ("delete", "/v1/sessions/{id}"),
    ("delete", "/v1/sessions"),
    ("post", "/v1/account/totp"),
    ("post", "/v1/account/totp/confirm"),
    ("post", "/v1/kyc"),
    ("get", "/v1/kyc"),
    ("post", "/v1/deposits"),
    ("post", "/v1/withdrawals"),
    ("get", "/v1/withdrawals/{id}"),
    ("post", "/v1/transfers"),
    ("post", "/v1/challenges/{id}/confirm"),
    ("get", "/v1/transactions"),
    ("get", "/v1/transactions/{id}"),
    ("get", "/v1/statements"),
    ("get", "/v1/contacts"),
    ("post", "/v1/contacts"),
    ("delete", "/v1/contacts/{id}"),
    ("get", "/v1/alerts"),
    ("get", "/v1/admin/accounts/{id}"),
    ("post", "/v1/admin/accounts/{id}/freeze"),
    ("post", "/v1/admin/accounts/{id}/unfreeze"),
    ("get", "/v1/admin/kyc"),
    ("post", "/v1/admin/kyc/{account_id}/approve"),
    ("post", "/v1/admin/kyc/{account_id}/reject"),
    ("put", "/v1/admin/maintenance"),
    ("get", "/v1/admin/alerts"),
    ("get", "/v1/admin/outbox"),
    ("get", "/v1/admin/ledger"),
    ("get", "/v1/quotes"),
    ("post", "/v1/callbacks/processor"),
    ("post", "/v1/callbacks/payouts"),
    ("get", "/v1/admin/deliveries"),
    ("post", "/v1/admin/withdrawals/{id}/settle"),
    ("post", "/v1/admin/withdrawals/{id}/fail"),
    ("post", "/v1/admin/webhooks"),
    ("get", "/v1/admin/webhooks"),
    ("delete", "/v1/admin/webhooks/{id}"),
    ("post", "/v1/admin/webhooks/{id}/replay"),
    ("get", "/v1/admin/reconciliation"),
    ("get", "/v1/stream"),
    ("get", "/v1/admin/stream"),
    // Operators' case tools (issue 13).
    ("get", "/v1/admin/me"),
    ("get", "/v1/admin/operators"),
    ("post", "/v1/admin/operators"),
    ("get", "/v1/admin/audit"),
    ("get", "/v1/admin/accounts"),
    ("get", "/v1/admin/accounts/{id}/case"),
    ("post", "/v1/admin/accounts/{id}/lift-restriction"),
    ("post", "/v1/admin/accounts/{id}/close"),
    ("post", "/v1/admin/accounts/{id}/revoke-sessions"),
    ("get", "/v1/admin/kyc/{account_id}/documents/{index}"),
    ("post", "/v1/admin/kyc/{account_id}/request-resubmission"),
    ("get", "/v1/admin/alerts/{id}"),
    ("post", "/v1/admin/alerts/{id}/acknowledge"),
    ("post", "/v1/admin/alerts/{id}/resolve"),
    // The web apps.
    ("get", "/"),
    ("get", "/console"),
    ("get", "/assets/{file}"),
    ("post", "/web/qr"),
];

#[tokio::test]
async fn the_openapi_document_is_valid_and_lists_every_route() {
    let app = TestApp::spawn().await;
    let r = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    // It parses back into the OpenAPI model: well-formed, not just JSON.
    let model: utoipa::openapi::OpenApi = serde_json::from_str(&text).expect("valid OpenAPI");
    assert!(!model.paths.paths.is_empty());
    let mut missing = Vec::new();
    for (method, path) in API_ROUTES {
        match doc["paths"][path][method].as_object() {
            None => missing.push(format!("{} {path}", method.to_uppercase())),
            Some(op) => {
                let responses = op["responses"].as_object().expect("responses");
                assert!(
                    !responses.is_empty(),
                    "{method} {path} documents no response"
                );
            }
        }
    }
    assert!(
        missing.is_empty(),
        "routes missing from /openapi.json: {missing:?}"
    );
    // Errors are documented with the problem schema, as problem+json, on every
    // operation; the code table is listed.
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    let codes = doc["components"]["schemas"]["ErrorCode"]["enum"].to_string();
    for code in [
        "VALIDATION_FAILED",
        "INSUFFICIENT_FUNDS",
        "METHOD_NOT_ALLOWED",
        "OVERLOADED",
    ] {
        assert!(codes.contains(code), "{code} not listed");
    }
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (status, r) in op["responses"].as_object().unwrap() {
                if status.as_str() >= "400" {
                    assert!(
                        r["content"]["application/problem+json"]["schema"]["$ref"]
                            .as_str()
                            .is_some_and(|s| s.ends_with("/Problem")),
                        "{method} {path} {status} is not problem+json"
                    );
                    assert!(
                        r["content"]["application/json"].is_null(),
                        "{method} {path} {status} still says application/json"
                    );
                }
            }
            // Every operation that needs a token says which one.
            if path.starts_with("/v1/admin/") {
                assert_eq!(
                    op["security"][0]["admin"],
                    serde_json::json!([]),
                    "{method} {path}"
                );
            }
        }
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}
