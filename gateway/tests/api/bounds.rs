//! Bounds of issue 9's medium findings, against the real server: a KYC upload is
//! refused on the account's state before its (up to 14 MiB) body is read, KYC
//! bodies are read by at most `--kyc-uploads` requests at once (503 `OVERLOADED`
//! beyond), and invented HTTP methods can't grow the metrics' labels.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt as _;

use crate::helpers::{assert_problem, jpeg_b64, TestApp};

fn submission() -> Value {
    json!({"full_name": "Li Lei", "id_type": "passport", "id_number": "E12345678",
           "document_front": jpeg_b64()})
}

#[tokio::test]
async fn kyc_state_is_checked_before_the_body_is_read() {
    let app = TestApp::spawn().await;
    let (_, t) = app.user("kyc-first@example.com").await;
    let r = app.post("/v1/kyc", &t, submission()).await;
    assert_eq!(r.status(), 202);
    // A pending submission: a second body (here 2 MiB of junk that would take a
    // parse to refuse) is answered 409 without being read.
    let junk = "x".repeat(2 * 1024 * 1024);
    let r = app
        .client
        .post(app.url("/v1/kyc"))
        .bearer_auth(&t)
        .header("Content-Type", "application/json")
        .body(junk)
        .send()
        .await
        .unwrap();
    assert_problem(r, 409, "ALREADY_EXISTS").await;
}

#[tokio::test]
async fn kyc_uploads_are_bounded_and_the_excess_is_told_to_retry() {
    let app = TestApp::spawn_with(|s| s.kyc_uploads = 1).await;
    let (_, slow) = app.user("kyc-slow@example.com").await;
    let (_, other) = app.user("kyc-other@example.com").await;
    // A slow client: headers and the first byte of a long body, then nothing.
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut held = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/kyc HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {slow}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{{"
    );
    held.write_all(head.as_bytes()).await.unwrap();
    held.flush().await.unwrap();
    // The slow upload holds the only slot: the next is refused at once. (Until
    // the server has seen the slow request's headers, an upload still passes; a
    // fresh user then tries again.)
    let mut refused = None;
    for i in 0..20 {
        let (_, other) = app.user(&format!("kyc-early{i}@example.com")).await;
        let r = app.post("/v1/kyc", &other, submission()).await;
        if r.status() == 503 {
            refused = Some(r);
            break;
        }
        assert_eq!(r.status(), 202);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = refused.unwrap();
    assert!(r.headers().contains_key("retry-after"));
    assert_problem(r, 503, "OVERLOADED").await;
    // The slow client goes away: the slot is free again.
    drop(held);
    let mut status = 0;
    for _ in 0..100 {
        status = app
            .post("/v1/kyc", &other, submission())
            .await
            .status()
            .as_u16();
        if status != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 202);
}

#[tokio::test]
async fn invented_http_methods_share_one_metrics_label() {
    let app = TestApp::spawn().await;
    for m in ["BREW", "WHEN", "PROPFIND"] {
        let method = reqwest::Method::from_bytes(m.as_bytes()).unwrap();
        let r = app
            .client
            .request(method, app.url("/v1/account"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{m}: {}", r.status());
    }
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("method=\"other\""), "{text}");
    for m in ["BREW", "WHEN", "PROPFIND"] {
        assert!(!text.contains(m), "{m} became a label");
    }
}
#[tokio::test]
async fn a_rejected_submissions_documents_are_deleted() {
    let app = TestApp::spawn().await;
    let (id, t) = app.user("kyc-rejected@example.com").await;
    let r = app.post("/v1/kyc", &t, submission()).await;
    assert_eq!(r.status(), 202);
    let doc = format!("/v1/admin/kyc/{id}/documents/0");
    assert_eq!(app.admin_get(&doc).await.status(), 200);
    let r = app
        .admin_post(
            &format!("/v1/admin/kyc/{id}/reject"),
            json!({"reason": "The photo is blurred."}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_problem(app.admin_get(&doc).await, 404, "NOT_FOUND").await;
    // The user may submit again, with new documents.
    let r = app.post("/v1/kyc", &t, submission()).await;
    assert_eq!(r.status(), 202);
    assert_eq!(app.admin_get(&doc).await.status(), 200);
}

#[tokio::test]
async fn websocket_slots_are_bounded_per_account_and_operators_keep_a_reserve() {
    use crate::ws_client::{refusal, WsClient};
    let app = TestApp::spawn_with(|s| s.ws_max_connections = 20).await;
    let (_, t) = app.user("ws-many@example.com").await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(WsClient::connect(&app, "/v1/stream", &t).await);
    }
    let e = WsClient::try_connect(&app, "/v1/stream", Some(&t))
        .await
        .err()
        .expect("a ninth stream of one account");
    let (status, body) = refusal(e);
    assert_eq!((status, body["code"].as_str()), (429, Some("RATE_LIMITED")));
    // Other accounts fill the server up to the operators' reserve (1 of 20).
    let mut others = Vec::new();
    for i in 0..3 {
        let (_, o) = app.user(&format!("ws-other{i}@example.com")).await;
        others.push(o);
    }
    'fill: for o in &others {
        for _ in 0..8 {
            match WsClient::try_connect(&app, "/v1/stream", Some(o)).await {
                Ok(c) => held.push(c),
                Err(e) => {
                    let (status, body) = refusal(e);
                    assert_eq!((status, body["code"].as_str()), (503, Some("OVERLOADED")));
                    break 'fill;
                }
            }
        }
    }
    assert_eq!(held.len(), 19, "20 slots less the operators' one");
    // The risk console still gets in.
    let mut ops = WsClient::connect(&app, "/v1/admin/stream", crate::helpers::ADMIN).await;
    ops.inner.close(None).await.unwrap();
    // A closed stream frees its slot for the account again.
    let mut first = held.remove(0);
    first.inner.close(None).await.unwrap();
    drop(first);
    let mut back = None;
    for _ in 0..100 {
        if let Ok(c) = WsClient::try_connect(&app, "/v1/stream", Some(&t)).await {
            back = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back.is_some(), "the slot came back");
}

/// A registration whose client hangs up mid-request must not leave its login
/// claimed without an account: it either becomes an account (the login works)
/// or the login is free to register again.
#[tokio::test]
async fn a_registration_cancelled_mid_request_keeps_no_login_claim() {
    // Polling logs in with a login that may not exist yet: no lockout meanwhile.
    let app = TestApp::spawn_with(|s| {
        s.policy.security.lockout_failures = 1_000;
        s.login_failures_per_login = 1_000;
        s.login_failures_per_ip = 1_000;
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    for i in 0..3 {
        let email = format!("gone{i}@example.com");
        let body = json!({"email": email, "password": "correct horse", "display_name": "Gone"})
            .to_string();
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let req = format!(
            "POST /v1/accounts HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        c.write_all(req.as_bytes()).await.unwrap();
        c.flush().await.unwrap();
        // Hang up at different points of the request (hashing, claiming, opening).
        tokio::time::sleep(Duration::from_millis(50 * i)).await;
        drop(c);
        let mut usable = false;
        for _ in 0..100 {
            let login = app.try_login(&email, "correct horse", "d", None).await;
            if login.status() == 201 {
                usable = true;
                break;
            }
            let again = app
                .client
                .post(app.url("/v1/accounts"))
                .json(
                    &json!({"email": email, "password": "correct horse", "display_name": "Again"}),
                )
                .send()
                .await
                .unwrap();
            if again.status() == 201 {
                usable = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(usable, "{email} is claimed by no account");
    }
}
