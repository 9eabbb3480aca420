//! Transfers: every way of naming a recipient, balances and history on both
//! sides, every refusal, and idempotency under replays and races.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::helpers::{assert_problem, TestApp};

fn send(to: &str, amount: &str) -> Value {
    json!({"to": to, "amount": amount, "currency": "CNY"})
}

#[tokio::test]
async fn send_by_email_phone_account_and_contact_then_both_histories_agree() {
    let app = TestApp::spawn().await;
    let (alice, a) = app.user("alice@example.com").await;
    let bob = app
        .register_with_phone("bob@example.com", "+8613800138000")
        .await;
    let b = app.login("bob@example.com").await;
    app.deposit(&a, "300.00").await;

    let r = app
        .post(
            "/v1/contacts",
            &a,
            json!({"alias": "Bob", "login_or_account": "bob@example.com"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let contact: Value = r.json().await.unwrap();

    let targets = [
        ("BOB@example.com".to_owned(), "10.00", Some("by email")),
        ("+86 138 0013 8000".to_owned(), "20.00", None),
        (bob.clone(), "30.00", Some("by id")),
        (
            format!("contact:{}", contact["id"].as_str().unwrap()),
            "40.00",
            None,
        ),
    ];
    let mut ids = Vec::new();
    for (i, (to, amount, memo)) in targets.iter().enumerate() {
        let mut body = send(to, amount);
        if let Some(m) = memo {
            body["memo"] = json!(m);
        }
        let r = app
            .post_idem("/v1/transfers", &a, &format!("t{i}"), body)
            .await;
        assert_eq!(r.status(), 201, "{to}");
        let t: Value = r.json().await.unwrap();
        assert!(t["id"].as_str().unwrap().starts_with("tx_"));
        assert_eq!(t["status"], "completed");
        assert_eq!(t["from"], alice.as_str());
        assert_eq!(t["to"], bob.as_str());
        assert_eq!(t["amount"], *amount);
        assert_eq!(t["fee"], "0.00");
        assert_eq!(t["currency"], "CNY");
        ids.push(t["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(app.balance(&a).await, ("200.00".into(), "0.00".into()));
    assert_eq!(app.balance(&b).await, ("100.00".into(), "0.00".into()));

    // Alice: four transfers out and the deposit, newest first, each once.
    let mine = app.all_transactions(&a, 2).await;
    assert_eq!(mine.len(), 5, "{mine:?}");
    assert_eq!(mine[4]["type"], "deposit");
    assert_eq!(mine[4]["direction"], "in");
    let outs: Vec<&Value> = mine.iter().filter(|t| t["type"] == "transfer").collect();
    assert_eq!(outs.len(), 4);
    for t in &outs {
        assert_eq!(t["direction"], "out");
        assert_eq!(t["counterparty"], bob.as_str());
        assert_eq!(t["status"], "completed");
    }
    let out_ids: Vec<&str> = outs.iter().map(|t| t["id"].as_str().unwrap()).collect();
    let expected: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    assert_eq!(out_ids, expected, "newest first");
    assert_eq!(mine[3]["memo"], "by email");
    assert_eq!(mine[2]["memo"], Value::Null);

    // Bob: the same four transfers, in.
    let theirs = app.all_transactions(&b, 3).await;
    assert_eq!(theirs.len(), 4);
    let their_ids: HashSet<&str> = theirs.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(their_ids, ids.iter().map(String::as_str).collect());
    for t in &theirs {
        assert_eq!(t["direction"], "in");
        assert_eq!(t["type"], "transfer");
        assert_eq!(t["counterparty"], alice.as_str());
    }
    assert_eq!(
        theirs.iter().find(|t| t["id"] == ids[2].as_str()).unwrap()["memo"],
        "by id"
    );
}

#[tokio::test]
async fn every_transfer_refusal_has_its_code() {
    let app = TestApp::spawn().await;
    let (alice, a) = app.user("alice@example.com").await;
    let (_, b) = app.user("bob@example.com").await;
    app.deposit(&a, "100.00").await;
    let cases = [
        (
            send("nobody@example.com", "1.00"),
            404,
            "RECIPIENT_NOT_FOUND",
        ),
        (
            send("acc_00000000000000ff", "1.00"),
            404,
            "RECIPIENT_NOT_FOUND",
        ),
        (send("acc_zz", "1.00"), 404, "RECIPIENT_NOT_FOUND"),
        (send("+8613911112222", "1.00"), 404, "RECIPIENT_NOT_FOUND"),
        (
            send("contact:ct_00000000000000010000000000000001", "1.00"),
            404,
            "RECIPIENT_NOT_FOUND",
        ),
        (send("alice@example.com", "1.00"), 422, "SAME_ACCOUNT"),
        (send(&alice, "1.00"), 422, "SAME_ACCOUNT"),
        (send("bob@example.com", "100.01"), 422, "INSUFFICIENT_FUNDS"),
        // Tier 0: at most 500.00 at once.
        (send("bob@example.com", "500.01"), 422, "LIMIT_EXCEEDED"),
        (send("bob@example.com", "0.00"), 400, "VALIDATION_FAILED"),
        (send("bob@example.com", "1.001"), 400, "VALIDATION_FAILED"),
        (send("bob@example.com", "1e3"), 400, "VALIDATION_FAILED"),
        (
            json!({"to": "bob@example.com", "amount": "1.00", "currency": "EUR"}),
            400,
            "VALIDATION_FAILED",
        ),
        (
            json!({"to": "bob@example.com", "amount": "1.00", "currency": "CNY", "memo": "m".repeat(141)}),
            400,
            "VALIDATION_FAILED",
        ),
        (
            json!({"to": "", "amount": "1.00", "currency": "CNY"}),
            400,
            "VALIDATION_FAILED",
        ),
    ];
    for (i, (body, status, code)) in cases.into_iter().enumerate() {
        let r = app
            .post_idem("/v1/transfers", &a, &format!("bad-{i}"), body)
            .await;
        assert_problem(r, status, code).await;
    }
    let r = app
        .post("/v1/transfers", &a, send("bob@example.com", "1.00"))
        .await;
    assert_problem(r, 400, "VALIDATION_FAILED").await;
    // 140 characters are fine.
    let r = app
        .post_idem(
            "/v1/transfers",
            &a,
            "memo-140",
            json!({"to": "bob@example.com", "amount": "1.00", "currency": "CNY", "memo": "m".repeat(140)}),
        )
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(app.balance(&a).await.0, "99.00");
    assert_eq!(app.balance(&b).await.0, "1.00");
    // Refusals left no trace: the deposit and the one transfer, nothing reversed.
    let history = app.all_transactions(&a, 50).await;
    assert_eq!(history.len(), 2, "{history:?}");
    assert!(history.iter().all(|t| t["status"] == "completed"));
}

#[tokio::test]
async fn large_transfers_need_step_up_after_kyc() {
    let app = TestApp::spawn().await;
    let (alice, a) = app.user("alice@example.com").await;
    app.user("bob@example.com").await;
    app.approve_kyc(&alice).await;
    app.deposit(&a, "2000.00").await;
    let r = app
        .post_idem(
            "/v1/transfers",
            &a,
            "big",
            send("bob@example.com", "1000.00"),
        )
        .await;
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "challenge_required", "{body}");
    assert!(body["challenge"]["id"]
        .as_str()
        .unwrap()
        .starts_with("chl_"));
    // Just under the threshold goes through (tier 1 allows it).
    let r = app
        .post_idem(
            "/v1/transfers",
            &a,
            "under",
            send("bob@example.com", "999.99"),
        )
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(app.balance(&a).await.0, "1000.01");
}

#[tokio::test]
async fn replays_are_byte_identical_and_changed_bodies_conflict() {
    let app = TestApp::spawn().await;
    let (_, a) = app.user("alice@example.com").await;
    let (bob, _) = app.user("bob@example.com").await;
    app.user("carol@example.com").await;
    app.deposit(&a, "100.00").await;
    let body = json!({"to": "bob@example.com", "amount": "5.00", "currency": "CNY", "memo": "tea"});
    let first = app.post_idem("/v1/transfers", &a, "k", body.clone()).await;
    assert_eq!(first.status(), 201);
    let bytes = first.bytes().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let again = app.post_idem("/v1/transfers", &a, "k", body.clone()).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.bytes().await.unwrap(), bytes);
    // The same recipient by account id is the same request.
    let mut by_id = body.clone();
    by_id["to"] = json!(bob);
    let again = app.post_idem("/v1/transfers", &a, "k", by_id).await;
    assert_eq!(again.bytes().await.unwrap(), bytes);
    for (field, value) in [
        ("amount", json!("5.01")),
        ("memo", json!("coffee")),
        ("memo", Value::Null),
        ("to", json!("carol@example.com")),
    ] {
        let mut changed = body.clone();
        changed[field] = value;
        let r = app.post_idem("/v1/transfers", &a, "k", changed).await;
        assert_problem(r, 409, "IDEMPOTENCY_CONFLICT").await;
    }
    assert_eq!(app.balance(&a).await.0, "95.00");
}

#[tokio::test]
async fn eight_racing_identical_transfers_make_one() {
    let app = TestApp::spawn().await;
    let (_, a) = app.user("alice@example.com").await;
    let (_, b) = app.user("bob@example.com").await;
    app.deposit(&a, "100.00").await;
    let body = send("bob@example.com", "7.00");
    let sends = (0..8).map(|_| app.post_idem("/v1/transfers", &a, "race", body.clone()));
    let responses = futures::future::join_all(sends).await;
    let mut bodies = Vec::new();
    for r in responses {
        assert_eq!(r.status(), 201);
        bodies.push(r.bytes().await.unwrap());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(app.balance(&a).await.0, "93.00");
    assert_eq!(app.balance(&b).await.0, "7.00");
    assert_eq!(app.all_transactions(&b, 50).await.len(), 1);
}
