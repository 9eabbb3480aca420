//! Deposits: fees, card checks, declines, and idempotent replays that never charge
//! or credit twice.

use serde_json::{json, Value};

use crate::helpers::{assert_problem, TestApp, CARD};

fn body(amount: &str, method: &str, card: &str) -> Value {
    json!({"amount": amount, "currency": "CNY", "method": method, "card_number": card})
}

#[tokio::test]
async fn deposits_charge_the_policy_fees_rounded_half_up() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user("dep.fees@example.com").await;
    let r = app
        .post_idem(
            "/v1/deposits",
            &token,
            "d1",
            body("100.00", "credit_card", CARD),
        )
        .await;
    assert_eq!(r.status(), 201);
    let d: Value = r.json().await.unwrap();
    assert!(d["id"].as_str().unwrap().starts_with("dep_"), "{d}");
    assert_eq!(d["status"], "completed");
    assert_eq!(
        (&d["amount"], &d["fee"], &d["net"], &d["currency"]),
        (
            &json!("100.00"),
            &json!("2.50"),
            &json!("97.50"),
            &json!("CNY")
        )
    );
    assert!(d["created_at"].as_str().unwrap().ends_with('Z'));
    // 2.5% of 10.20 is 0.255: half-up to 0.26. 2.5% of 10.10 is 0.2525: 0.25.
    for (key, amount, fee, net) in [
        ("d2", "10.20", "0.26", "9.94"),
        ("d3", "10.1", "0.25", "9.85"),
    ] {
        let r = app
            .post_idem(
                "/v1/deposits",
                &token,
                key,
                body(amount, "credit_card", CARD),
            )
            .await;
        let d: Value = r.json().await.unwrap();
        assert_eq!((&d["fee"], &d["net"]), (&json!(fee), &json!(net)), "{d}");
    }
    // Bank cards are free.
    let r = app
        .post_idem("/v1/deposits", &token, "d4", body("50", "bank_card", CARD))
        .await;
    let d: Value = r.json().await.unwrap();
    assert_eq!(
        (&d["amount"], &d["fee"], &d["net"]),
        (&json!("50.00"), &json!("0.00"), &json!("50.00"))
    );
    assert_eq!(
        app.balance(&token).await,
        ("167.29".to_owned(), "0.00".to_owned())
    );
}

#[tokio::test]
async fn bad_deposits_are_400_and_declines_422_with_nothing_recorded() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user("dep.bad@example.com").await;
    // No Idempotency-Key.
    let r = app
        .post("/v1/deposits", &token, body("10.00", "bank_card", CARD))
        .await;
    assert_problem(r, 400, "VALIDATION_FAILED").await;
    // A key that is too long.
    let r = app
        .post_idem(
            "/v1/deposits",
            &token,
            &"k".repeat(256),
            body("10.00", "bank_card", CARD),
        )
        .await;
    assert_problem(r, 400, "VALIDATION_FAILED").await;
    let cases = [
        body("abc", "bank_card", CARD),
        body("0", "bank_card", CARD),
        body("-5.00", "bank_card", CARD),
        body("1.234", "bank_card", CARD),
        json!({"amount": "10.00", "currency": "XYZ", "method": "bank_card", "card_number": CARD}),
        json!({"amount": 10, "currency": "CNY", "method": "bank_card", "card_number": CARD}),
        body("10.00", "cash", CARD),
        body("10.00", "bank_card", "42"),
        json!({"amount": "10.00", "currency": "CNY", "method": "bank_card"}),
    ];
    for (i, case) in cases.into_iter().enumerate() {
        let r = app
            .post_idem("/v1/deposits", &token, &format!("bad-{i}"), case)
            .await;
        assert_problem(r, 400, "VALIDATION_FAILED").await;
    }
    // Well formed but failing the Luhn check (last digit off by one): 422, since
    // no schema can express the checksum.
    let r = app
        .post_idem(
            "/v1/deposits",
            &token,
            "bad-luhn",
            body("10.00", "bank_card", "4111111111111112"),
        )
        .await;
    assert_problem(r, 422, "CARD_INVALID").await;
    let r = app
        .post_idem(
            "/v1/deposits",
            &token,
            "declined",
            body("10.00", "bank_card", "4000 0000 0000 0002"),
        )
        .await;
    assert_problem(r, 422, "PAYMENT_DECLINED").await;
    // Unauthenticated.
    let r = app
        .client
        .post(app.url("/v1/deposits"))
        .header("Idempotency-Key", "x")
        .json(&body("10.00", "bank_card", CARD))
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "UNAUTHENTICATED").await;
    assert_eq!(app.balance(&token).await.0, "0.00");
    assert!(app.all_transactions(&token, 50).await.is_empty());
    // A refused request is not remembered: the key works with a good card.
    let r = app
        .post_idem(
            "/v1/deposits",
            &token,
            "declined",
            body("10.00", "bank_card", CARD),
        )
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(app.balance(&token).await.0, "10.00");
}

#[tokio::test]
async fn a_replay_answers_the_same_bytes_and_a_changed_body_conflicts() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user("dep.replay@example.com").await;
    let first = app
        .post_idem(
            "/v1/deposits",
            &token,
            "same",
            body("20.00", "credit_card", CARD),
        )
        .await;
    let status = first.status();
    let bytes = first.bytes().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let again = app
        .post_idem(
            "/v1/deposits",
            &token,
            "same",
            body("20.00", "credit_card", CARD),
        )
        .await;
    assert_eq!(again.status(), status);
    assert_eq!(again.bytes().await.unwrap(), bytes);
    // Spaces in the card number don't make it another card.
    let again = app
        .post_idem(
            "/v1/deposits",
            &token,
            "same",
            body("20.00", "credit_card", "4111111111111111"),
        )
        .await;
    assert_eq!(again.bytes().await.unwrap(), bytes);
    for changed in [
        body("21.00", "credit_card", CARD),
        body("20.00", "bank_card", CARD),
        // Another card with the same last four digits.
        body("20.00", "credit_card", "4000000000061111"),
        body("20.00", "credit_card", "4242424242424242"),
        json!({"amount": "20.00", "currency": "USD", "method": "credit_card", "card_number": CARD}),
    ] {
        let r = app.post_idem("/v1/deposits", &token, "same", changed).await;
        assert_problem(r, 409, "IDEMPOTENCY_CONFLICT").await;
    }
    assert_eq!(app.balance(&token).await.0, "19.50");
}

#[tokio::test]
async fn racing_identical_deposits_credit_once() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user("dep.race@example.com").await;
    let sends = (0..8).map(|_| {
        app.post_idem(
            "/v1/deposits",
            &token,
            "race",
            body("30.00", "bank_card", CARD),
        )
    });
    let responses = futures::future::join_all(sends).await;
    let mut bodies = Vec::new();
    for r in responses {
        assert_eq!(r.status(), 201);
        bodies.push(r.bytes().await.unwrap());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(app.balance(&token).await.0, "30.00");
    assert_eq!(app.all_transactions(&token, 50).await.len(), 1);
}
