//! The recipient check: an id nobody registered is refused with 404 before any
//! money moves, and an account that exists is found (after a restart too: see
//! `binary.rs`, where the set of open accounts is read back from the store).

use serde_json::json;

use crate::helpers::{assert_problem, TestApp};

pub fn send(to: &str, amount: &str) -> serde_json::Value {
    json!({"to": to, "amount": amount, "currency": "CNY"})
}

#[tokio::test]
async fn unknown_ids_are_404_and_registered_accounts_are_found() {
    let app = TestApp::spawn().await;
    let (_, a) = app.user("rcpt-alice@example.com").await;
    app.deposit(&a, "100.00").await;
    // Registered after start-up: found.
    let bob = app.register("rcpt-bob@example.com").await;
    let r = app
        .post_idem("/v1/transfers", &a, "k1", send(&bob, "1.00"))
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    // Well-formed ids that nobody registered.
    for (i, id) in ["acc_00000000000000a1", "acc_7fffffffffffffff"]
        .iter()
        .enumerate()
    {
        let r = app
            .post_idem("/v1/transfers", &a, &format!("u{i}"), send(id, "1.00"))
            .await;
        assert_problem(r, 404, "RECIPIENT_NOT_FOUND").await;
    }
    assert_eq!(app.balance(&a).await.0, "99.00");
}
