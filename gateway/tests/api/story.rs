//! The whole user story over the wire: register, log in, deposit, transfer, and
//! both parties' websockets receive `balance.updated` and `transaction.updated`,
//! the history shows the transfer once on each side; then a concurrent burst of
//! transfers leaves the ledger audit balanced.

use serde_json::{json, Value};

use crate::helpers::{TestApp, ADMIN};
use crate::ws_client::WsClient;

/// The next events until one of `kind` arrives.
async fn until(ws: &mut WsClient, kind: &str) -> Value {
    for _ in 0..20 {
        let e = ws.event().await;
        if e["type"] == kind {
            return e;
        }
    }
    panic!("no {kind} event");
}

#[tokio::test]
async fn a_transfer_reaches_both_sockets_and_both_histories_once() {
    let app = TestApp::spawn().await;
    let (alice, alice_token) = app.user("alice@example.com").await;
    let (bob, bob_token) = app.user("bob@example.com").await;
    let mut alice_ws = WsClient::connect(&app, "/v1/stream", &alice_token).await;
    let mut bob_ws = WsClient::connect(&app, "/v1/stream", &bob_token).await;
    app.deposit(&alice_token, "200.00").await;
    let deposit_balance = until(&mut alice_ws, "balance.updated").await;
    assert_eq!(deposit_balance["data"]["available"], "200.00");
    let r = app
        .post_idem(
            "/v1/transfers",
            &alice_token,
            "story-1",
            json!({"to": bob, "amount": "75.50", "currency": "CNY", "memo": "rent"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let transfer: Value = r.json().await.unwrap();
    let id = transfer["id"].as_str().unwrap().to_owned();
    assert_eq!(transfer["status"], "completed");

    let b = until(&mut alice_ws, "balance.updated").await;
    assert_eq!(
        b["data"],
        json!({"currency": "CNY", "available": "124.50", "held": "0.00"})
    );
    let t = until(&mut alice_ws, "transaction.updated").await;
    assert_eq!(t["data"]["id"], id.as_str());
    assert_eq!(t["data"]["direction"], "out");
    assert_eq!(t["data"]["status"], "completed");
    assert_eq!(t["data"]["counterparty"], bob.as_str());

    let b = until(&mut bob_ws, "balance.updated").await;
    assert_eq!(b["data"]["available"], "75.50");
    let t = until(&mut bob_ws, "transaction.updated").await;
    assert_eq!(t["data"]["id"], id.as_str());
    assert_eq!(t["data"]["direction"], "in");
    assert_eq!(t["data"]["counterparty"], alice.as_str());
    assert!(t["seq"].as_u64().unwrap() > b["seq"].as_u64().unwrap());

    for (token, direction) in [(&alice_token, "out"), (&bob_token, "in")] {
        let rows = app.all_transactions(token, 50).await;
        let matching: Vec<_> = rows.iter().filter(|r| r["id"] == id.as_str()).collect();
        assert_eq!(matching.len(), 1, "{rows:?}");
        assert_eq!(matching[0]["direction"], direction);
        assert_eq!(matching[0]["memo"], "rent");
        assert_eq!(matching[0]["amount"], "75.50");
    }
}

#[tokio::test]
async fn the_ledger_balances_after_a_concurrent_burst() {
    let app = TestApp::spawn().await;
    let mut users = Vec::new();
    for i in 0..6 {
        let (id, token) = app.user(&format!("u{i}@example.com")).await;
        app.deposit(&token, "300.00").await;
        users.push((id, token));
    }
    let app = &app;
    let users = &users;
    let sends = (0..60).map(|i| {
        let (_, token) = &users[i % users.len()];
        let (to, _) = &users[(i * 7 + 1) % users.len()];
        let body = json!({"to": to, "amount": "3.33", "currency": "CNY"});
        let key = format!("burst-{i}");
        async move {
            app.post_idem("/v1/transfers", token, &key, body)
                .await
                .status()
                .as_u16()
        }
    });
    let statuses = futures::future::join_all(sends).await;
    assert!(
        statuses.iter().all(|s| [201, 422, 429].contains(s)),
        "{statuses:?}"
    );
    assert!(statuses.iter().filter(|s| **s == 201).count() >= 30);
    let ledger: Value = app
        .client
        .get(app.url("/v1/admin/ledger"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ledger["balanced"], true, "{ledger}");
    assert_eq!(ledger["currencies"]["CNY"]["deposited"], "1800.00");
    assert_eq!(ledger["currencies"]["CNY"]["balances"], "1800.00");
    assert_eq!(ledger["currencies"]["CNY"]["in_flight"], "0.00");
}
