//! Contacts: save by email, phone or account id; list; delete; refusals; and
//! paying a deleted contact.

use serde_json::{json, Value};

use crate::helpers::{assert_problem, TestApp, ADMIN};

#[tokio::test]
async fn save_list_and_delete_contacts() {
    let app = TestApp::spawn().await;
    let (_, a) = app.user("c.a@example.com").await;
    let b = app
        .register_with_phone("c.b@example.com", "+8613700001111")
        .await;
    let (c, _) = app.user("c.c@example.com").await;
    let d = app
        .register_with_phone("c.d@example.com", "+8613700002222")
        .await;
    app.deposit(&a, "10.00").await;

    let mut saved = Vec::new();
    for (alias, login, account) in [
        ("Bee", "c.b@example.com".to_owned(), &b),
        ("Sea", c.clone(), &c),
        ("Dee", "+86 137 0000 2222".to_owned(), &d),
    ] {
        let r = app
            .post(
                "/v1/contacts",
                &a,
                json!({"alias": alias, "login_or_account": login}),
            )
            .await;
        assert_eq!(r.status(), 201);
        let body: Value = r.json().await.unwrap();
        assert!(body["id"].as_str().unwrap().starts_with("ct_"));
        assert_eq!(body["alias"], alias);
        assert_eq!(body["account_id"], account.as_str());
        saved.push(body);
    }
    let list: Value = app.get("/v1/contacts", &a).await.json().await.unwrap();
    assert_eq!(list["items"], Value::Array(saved.clone()));

    let bee = saved[0]["id"].as_str().unwrap();
    let r = app.delete(&format!("/v1/contacts/{bee}"), &a).await;
    assert_eq!(r.status(), 204);
    let r = app.delete(&format!("/v1/contacts/{bee}"), &a).await;
    assert_problem(r, 404, "NOT_FOUND").await;
    let list: Value = app.get("/v1/contacts", &a).await.json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    // A deleted contact can't be paid.
    let r = app
        .post_idem(
            "/v1/transfers",
            &a,
            "to-bee",
            json!({"to": format!("contact:{bee}"), "amount": "1.00", "currency": "CNY"}),
        )
        .await;
    assert_problem(r, 404, "RECIPIENT_NOT_FOUND").await;
    // Someone else can't delete or pay my contacts.
    let sea = saved[1]["id"].as_str().unwrap();
    let (_, e) = app.user("c.e@example.com").await;
    let r = app.delete(&format!("/v1/contacts/{sea}"), &e).await;
    assert_problem(r, 404, "NOT_FOUND").await;
    let r = app
        .post_idem(
            "/v1/transfers",
            &e,
            "to-sea",
            json!({"to": format!("contact:{sea}"), "amount": "1.00", "currency": "CNY"}),
        )
        .await;
    assert_problem(r, 404, "RECIPIENT_NOT_FOUND").await;
    let r = app.delete("/v1/contacts/ct_garbage", &a).await;
    assert_problem(r, 404, "NOT_FOUND").await;
}

#[tokio::test]
async fn contact_refusals() {
    let app = TestApp::spawn().await;
    let (me, a) = app.user("c.me@example.com").await;
    app.user("c.friend@example.com").await;
    let r = app
        .post(
            "/v1/contacts",
            &a,
            json!({"alias": "F", "login_or_account": "c.friend@example.com"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let cases = [
        (
            json!({"alias": "F2", "login_or_account": "C.Friend@example.com"}),
            409,
            "ALREADY_EXISTS",
        ),
        (
            json!({"alias": "Me", "login_or_account": me}),
            422,
            "SAME_ACCOUNT",
        ),
        (
            json!({"alias": "X", "login_or_account": "nobody@example.com"}),
            404,
            "RECIPIENT_NOT_FOUND",
        ),
        (
            json!({"alias": "X", "login_or_account": "acc_00000000000000aa"}),
            404,
            "RECIPIENT_NOT_FOUND",
        ),
        (
            json!({"alias": "", "login_or_account": "c.friend@example.com"}),
            400,
            "VALIDATION_FAILED",
        ),
        (
            json!({"alias": "a".repeat(65), "login_or_account": "c.friend@example.com"}),
            400,
            "VALIDATION_FAILED",
        ),
        (json!({"alias": "X"}), 400, "VALIDATION_FAILED"),
    ];
    for (body, status, code) in cases {
        let r = app.post("/v1/contacts", &a, body).await;
        assert_problem(r, status, code).await;
    }
}

#[tokio::test]
async fn kyc_approval_is_for_operators_only() {
    let app = TestApp::spawn().await;
    let (id, token) = app.user("c.kyc@example.com").await;
    let r = app
        .post(&format!("/v1/admin/kyc/{id}/approve"), &token, json!({}))
        .await;
    // A user's session is authenticated, but not an operator's.
    assert_problem(r, 403, "FORBIDDEN").await;
    let r = app
        .client
        .post(app.url("/v1/admin/kyc/acc_00000000000000bb/approve"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "NOT_FOUND").await;
    app.approve_kyc(&id).await;
    let account: Value = app.get("/v1/account", &token).await.json().await.unwrap();
    assert_eq!(account["kyc"]["tier"], 1);
    assert_eq!(account["limits"]["single_max"], "50000.00");
}
