//! The transaction history: paging without duplicates, newest first, the type
//! filter, and bad queries; and the OpenAPI document listing the money routes.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::helpers::{assert_problem, TestApp};

#[tokio::test]
async fn history_pages_newest_first_without_duplicates() {
    let app = TestApp::spawn().await;
    let (_, a) = app.user("h.a@example.com").await;
    app.user("h.b@example.com").await;
    let mut deposits = Vec::new();
    for i in 1..=7 {
        let d = app.deposit(&a, &format!("{i}.00")).await;
        deposits.push(d["id"].as_str().unwrap().to_owned());
    }
    for i in 0..2 {
        let r = app
            .post_idem(
                "/v1/transfers",
                &a,
                &format!("t{i}"),
                json!({"to": "h.b@example.com", "amount": "1.00", "currency": "CNY"}),
            )
            .await;
        assert_eq!(r.status(), 201);
    }
    // 9 rows, 3 per page: 3 full pages (the cursor of the last may lead to an empty one).
    let all = app.all_transactions(&a, 3).await;
    assert_eq!(all.len(), 9);
    let ids: HashSet<&str> = all.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 9, "no duplicates");
    let times: Vec<&str> = all
        .iter()
        .map(|t| t["created_at"].as_str().unwrap())
        .collect();
    let parsed: Vec<chrono::DateTime<chrono::Utc>> =
        times.iter().map(|t| t.parse().unwrap()).collect();
    assert!(parsed.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    // Oldest last: the first deposit.
    assert_eq!(all[8]["id"], deposits[0].as_str());
    let first = &all[8];
    assert_eq!(first["amount"], "1.00");
    assert_eq!(first["fee"], "0.00");
    assert_eq!(first["currency"], "CNY");
    assert_eq!(first["status"], "completed");
    assert_eq!(first["counterparty"], Value::Null);
    assert_eq!(first["memo"], Value::Null);

    // The type filter, also across pages.
    let r = app.get("/v1/transactions?type=deposit&limit=4", &a).await;
    let page: Value = r.json().await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 4);
    let cursor = page["next_cursor"].as_str().unwrap();
    let r = app
        .get(
            &format!("/v1/transactions?type=deposit&limit=4&cursor={cursor}"),
            &a,
        )
        .await;
    let page: Value = r.json().await.unwrap();
    let rest = page["items"].as_array().unwrap();
    assert_eq!(rest.len(), 3);
    assert!(rest.iter().all(|t| t["type"] == "deposit"));
    let r = app.get("/v1/transactions?type=transfer", &a).await;
    let page: Value = r.json().await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["next_cursor"], Value::Null);
    let r = app.get("/v1/transactions?type=withdrawal", &a).await;
    let page: Value = r.json().await.unwrap();
    assert!(page["items"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn bad_history_queries_are_400() {
    let app = TestApp::spawn().await;
    let (_, a) = app.user("h.bad@example.com").await;
    for q in [
        "limit=0",
        "limit=201",
        "limit=abc",
        "limit=-1",
        "type=refund",
        "cursor=%25%25%25",
    ] {
        let r = app.get(&format!("/v1/transactions?{q}"), &a).await;
        assert_problem(r, 400, "VALIDATION_FAILED").await;
    }
    let r = app.get("/v1/transactions?limit=200", &a).await;
    assert_eq!(r.status(), 200);
    let r = app
        .client
        .get(app.url("/v1/transactions"))
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "UNAUTHENTICATED").await;
}

#[tokio::test]
async fn the_openapi_document_lists_the_money_routes() {
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
    for path in [
        "/v1/deposits",
        "/v1/withdrawals",
        "/v1/withdrawals/{id}",
        "/v1/transfers",
        "/v1/transactions",
        "/v1/contacts",
        "/v1/contacts/{id}",
        "/v1/admin/kyc/{account_id}/approve",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    for schema in [
        "DepositRequest",
        "WithdrawalResponse",
        "TransferRequest",
        "TransactionPage",
        "ContactResponse",
        "Problem",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "{schema} missing"
        );
    }
    let params = doc["paths"]["/v1/transfers"]["post"]["parameters"].to_string();
    assert!(params.contains("Idempotency-Key"), "{params}");
}
