//! KYC: submission checks, encryption at rest, the operators' queue, rejection
//! with a reason, resubmission, approval raising the limits at once.

use base64::Engine as _;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, contains, jpeg_b64, stored_bytes, TestApp, ADMIN};

fn submission(doc: &str) -> Value {
    json!({"full_name": "Zhang Xiaoming", "id_type": "national_id",
           "id_number": "11010119900307663X", "document_front": doc, "document_back": jpeg_b64()})
}

#[tokio::test]
async fn documents_are_checked_by_bytes_and_size_and_only_this_route_takes_big_bodies() {
    let app = TestApp::spawn().await;
    let (_, t) = app.user("kyc.bad@example.com").await;
    let gif = base64::engine::general_purpose::STANDARD.encode(b"GIF89a\x01\x00\x01\x00");
    let r = app.post("/v1/kyc", &t, submission(&gif)).await;
    assert_problem(r, 400, "VALIDATION_FAILED").await;
    let mut big = vec![0xFF, 0xD8, 0xFF];
    big.resize(5 * 1024 * 1024 + 1, 7);
    let big = base64::engine::general_purpose::STANDARD.encode(&big);
    let r = app.post("/v1/kyc", &t, submission(&big)).await;
    assert_problem(r, 400, "VALIDATION_FAILED").await;
    let r = app
        .post("/v1/kyc", &t, json!({"full_name": "X", "id_type": "visa", "id_number": "12345", "document_front": jpeg_b64()}))
        .await;
    assert_problem(r, 400, "VALIDATION_FAILED").await;
    // Other routes keep the small body limit.
    let r = app
        .post_idem(
            "/v1/transfers",
            &t,
            "k",
            json!({"to": "x", "amount": "1", "currency": "CNY", "memo": "m".repeat(200_000)}),
        )
        .await;
    assert_eq!(r.status(), 413);
    let body: Value = app.get("/v1/kyc", &t).await.json().await.unwrap();
    assert_eq!(body["status"], "none");
}

#[tokio::test]
async fn reject_with_reason_then_resubmit_then_approve_raises_limits_at_once() {
    let app = TestApp::spawn().await;
    let (id, t) = app.user("kyc@example.com").await;
    app.user("bob@example.com").await;
    app.deposit(&t, "500.00").await;
    app.deposit(&t, "500.00").await;
    app.deposit(&t, "500.00").await;
    app.deposit(&t, "500.00").await;
    // Tier 0: 1,500.00 is over the single limit.
    let send = json!({"to": "bob@example.com", "amount": "1500.00", "currency": "CNY"});
    let r = app.post_idem("/v1/transfers", &t, "t0", send.clone()).await;
    assert_problem(r, 422, "LIMIT_EXCEEDED").await;

    let mut ws = crate::ws_client::WsClient::connect(&app, "/v1/stream", &t).await;
    ws.assert_quiet().await;
    let r = app.post("/v1/kyc", &t, submission(&jpeg_b64())).await;
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "pending");
    let pushed = ws.event().await;
    assert_eq!(pushed["type"], "kyc.updated", "{pushed}");
    assert_eq!(pushed["data"]["status"], "pending");
    let body: Value = app.get("/v1/kyc", &t).await.json().await.unwrap();
    assert_eq!(body["status"], "pending");
    assert_eq!(body["id_number_masked"], "****663X");
    let r = app.post("/v1/kyc", &t, submission(&jpeg_b64())).await;
    assert_problem(r, 409, "ALREADY_EXISTS").await;
    // Personal data is not stored in clear.
    let bytes = stored_bytes(app._dir.path());
    assert!(!bytes.is_empty());
    assert!(!contains(&bytes, b"11010119900307663X"));
    assert!(!contains(&bytes, b"Zhang Xiaoming"));

    // The operators' queue shows it, name decrypted, number masked.
    let r = app.get("/v1/admin/kyc?status=pending", &t).await;
    assert_eq!(r.status(), 403, "a user's session is not an operator's");
    let q: Value = app
        .get("/v1/admin/kyc?status=pending", ADMIN)
        .await
        .json()
        .await
        .unwrap();
    let items = q["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{q}");
    assert_eq!(items[0]["account_id"], id.as_str());
    assert_eq!(items[0]["full_name"], "Zhang Xiaoming");
    assert_eq!(items[0]["id_type"], "national_id");
    assert_eq!(items[0]["id_number_masked"], "****663X");
    assert_eq!(items[0]["documents"], 2);
    assert!(items[0]["submitted_at"].as_str().is_some());

    let r = app
        .admin_post(
            &format!("/v1/admin/kyc/{id}/reject"),
            json!({"reason": "The photo is blurred."}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let pushed = ws.event().await;
    assert_eq!(pushed["type"], "kyc.updated", "{pushed}");
    assert_eq!(
        pushed["data"],
        json!({"status": "rejected", "tier": 0, "reason": "The photo is blurred."})
    );
    let body: Value = app.get("/v1/kyc", &t).await.json().await.unwrap();
    assert_eq!(body["status"], "rejected");
    assert_eq!(body["reason"], "The photo is blurred.");
    let acc: Value = app.get("/v1/account", &t).await.json().await.unwrap();
    assert_eq!(acc["kyc"]["status"], "rejected");
    assert_eq!(acc["kyc"]["reason"], "The photo is blurred.");
    let q: Value = app.get("/v1/admin/kyc", ADMIN).await.json().await.unwrap();
    assert!(q["items"].as_array().unwrap().is_empty(), "{q}");
    // Rejecting again: nothing pending.
    let r = app
        .admin_post(
            &format!("/v1/admin/kyc/{id}/reject"),
            json!({"reason": "again"}),
        )
        .await;
    assert_eq!(r.status(), 409);

    let r = app.post("/v1/kyc", &t, submission(&jpeg_b64())).await;
    assert_eq!(r.status(), 202);
    let q: Value = app.get("/v1/admin/kyc", ADMIN).await.json().await.unwrap();
    assert_eq!(q["items"].as_array().unwrap().len(), 1);
    app.approve_kyc(&id).await;
    // Resubmitted (pending), then approved with the new tier.
    assert_eq!(ws.event().await["data"]["status"], "pending");
    let pushed = ws.event().await;
    assert_eq!(
        pushed["data"],
        json!({"status": "approved", "tier": 1, "reason": null}),
        "{pushed}"
    );
    let acc: Value = app.get("/v1/account", &t).await.json().await.unwrap();
    assert_eq!(acc["kyc"]["status"], "approved");
    assert_eq!(acc["kyc"]["tier"], 1);
    assert!(acc["kyc"]["reason"].is_null());
    let q: Value = app.get("/v1/admin/kyc", ADMIN).await.json().await.unwrap();
    assert!(q["items"].as_array().unwrap().is_empty());

    // Tier 1 at once: the same 1,500.00 now only needs the second factor.
    let r = app.post_idem("/v1/transfers", &t, "t1", send).await;
    assert_eq!(r.status(), 202);
    let c: Value = r.json().await.unwrap();
    let code = app.last_code("kyc@example.com", "challenge").await;
    let chl = c["challenge"]["id"].as_str().unwrap();
    let r = app
        .post(
            &format!("/v1/challenges/{chl}/confirm"),
            &t,
            json!({ "code": code }),
        )
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(app.balance(&t).await.0, "500.00");
}
