//! Named operators, their roles and the audit trail; the case tools (lookup,
//! case view, status actions, KYC images, alert handling), over real HTTP.

use serde_json::{json, Value};

use crate::helpers::{assert_problem, jpeg_b64, TestApp, ADMIN};

/// Creates an operator through the API; returns its token.
async fn operator(app: &TestApp, name: &str, role: &str) -> String {
    let r = app
        .admin_post("/v1/admin/operators", json!({"name": name, "role": role}))
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["role"], role);
    let token = body["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("okop_"), "{token}");
    token
}

async fn audit(app: &TestApp, query: &str) -> Vec<Value> {
    let r = app.admin_get(&format!("/v1/admin/audit{query}")).await;
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["items"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn roles_decide_what_an_operator_may_do_and_every_action_is_audited() {
    let app = TestApp::spawn().await;
    let viewer = operator(&app, "vic", "viewer").await;
    let reviewer = operator(&app, "rita", "reviewer").await;
    let risk = operator(&app, "rick", "risk").await;
    // Names are unique and checked; only admins create operators.
    let r = app
        .admin_post(
            "/v1/admin/operators",
            json!({"name": "vic", "role": "admin"}),
        )
        .await;
    assert_problem(r, 409, "ALREADY_EXISTS").await;
    let r = app
        .admin_post(
            "/v1/admin/operators",
            json!({"name": "no spaces", "role": "viewer"}),
        )
        .await;
    assert_problem(r, 400, "VALIDATION_FAILED").await;
    let r = app
        .post(
            "/v1/admin/operators",
            &risk,
            json!({"name": "x", "role": "admin"}),
        )
        .await;
    assert_problem(r, 403, "FORBIDDEN").await;
    // Who am I.
    let me: Value = app
        .get("/v1/admin/me", &reviewer)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me, json!({"name": "rita", "role": "reviewer"}));
    let r = app.get("/v1/admin/me", "okop_not-a-real-token").await;
    assert_problem(r, 401, "UNAUTHENTICATED").await;

    let (id, _) = app.user("roles@example.com").await;
    let path = format!("/v1/admin/accounts/{id}");
    // Everyone reads.
    for t in [&viewer, &reviewer, &risk] {
        assert_eq!(app.get(&path, t).await.status(), 200);
        assert_eq!(app.get("/v1/admin/ledger", t).await.status(), 200);
        assert_eq!(app.get("/v1/admin/kyc", t).await.status(), 200);
    }
    // Only risk (and admin) freeze; only reviewers (and admin) decide KYC.
    let freeze = format!("{path}/freeze");
    for t in [&viewer, &reviewer] {
        let r = app.post(&freeze, t, json!({"reason": "x"})).await;
        assert_problem(r, 403, "FORBIDDEN").await;
    }
    let r = app
        .post(&freeze, &risk, json!({"reason": "Chargeback #1"}))
        .await;
    assert_eq!(r.status(), 200);
    let approve = format!("/v1/admin/kyc/{id}/approve");
    for t in [&viewer, &risk] {
        assert_problem(app.post(&approve, t, json!({})).await, 403, "FORBIDDEN").await;
    }
    assert_eq!(app.post(&approve, &reviewer, json!({})).await.status(), 200);
    // The outbox and maintenance are the admin role's.
    for t in [&viewer, &reviewer, &risk] {
        assert_problem(app.get("/v1/admin/outbox", t).await, 403, "FORBIDDEN").await;
        let r = app
            .put("/v1/admin/maintenance", t, json!({"enabled": true}))
            .await;
        assert_problem(r, 403, "FORBIDDEN").await;
    }
    // The trail: newest first, who, what, which account, why.
    let all = audit(&app, "").await;
    let actions: Vec<&str> = all.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "kyc.approve",
            "account.freeze",
            "operator.add",
            "operator.add",
            "operator.add"
        ],
        "{all:?}"
    );
    assert_eq!(all[1]["operator"], "rick");
    assert_eq!(all[1]["role"], "risk");
    assert_eq!(all[1]["account_id"], id.as_str());
    assert_eq!(all[1]["reason"], "Chargeback #1");
    assert_eq!(all[4]["operator"], "admin");
    assert!(all[0]["id"].as_str().unwrap().starts_with("aud_"));
    // Filters and paging.
    assert_eq!(audit(&app, "?operator=rick").await.len(), 1);
    assert_eq!(audit(&app, &format!("?account_id={id}")).await.len(), 2);
    assert_eq!(audit(&app, "?action=operator.").await.len(), 3);
    let page: Value = app
        .admin_get("/v1/admin/audit?limit=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let next = page["next"].as_str().unwrap();
    let rest = audit(&app, &format!("?after={next}")).await;
    assert_eq!(rest.len(), 3);
    assert_eq!(rest[0]["id"], all[2]["id"]);
    assert_problem(
        app.admin_get("/v1/admin/audit?limit=0").await,
        400,
        "VALIDATION_FAILED",
    )
    .await;
    // Append-only: nothing deletes or rewrites an entry.
    let r = app.delete("/v1/admin/audit", ADMIN).await;
    assert!(r.status().is_client_error(), "{}", r.status());
    // Operators are listed without their tokens.
    let list: Value = app
        .admin_get("/v1/admin/operators")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 3);
    assert!(!list.to_string().contains("okop_"));
}

#[tokio::test]
async fn an_operator_finds_an_account_sees_its_case_and_acts_with_reasons() {
    let app = TestApp::spawn().await;
    let risk = operator(&app, "rick", "risk").await;
    let id = app
        .register_with_phone("case@example.com", "+8613800138000")
        .await;
    let t = app.login("case@example.com").await;
    app.deposit(&t, "50.00").await;
    // Found by email, phone and id; nothing for an unknown login.
    for q in ["case@example.com", "+8613800138000", id.as_str()] {
        let r: Value = app
            .get(&format!("/v1/admin/accounts?q={}", urlencode(q)), &risk)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(r["items"][0]["account_id"], id.as_str(), "{q}: {r}");
    }
    let r: Value = app
        .get("/v1/admin/accounts?q=nobody@example.com", &risk)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["items"].as_array().unwrap().len(), 0);
    // The case: balances, transactions, sessions.
    let case: Value = app
        .get(&format!("/v1/admin/accounts/{id}/case"), &risk)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(case["account"]["account_id"], id.as_str());
    assert_eq!(case["transactions"][0]["type"], "deposit");
    assert_eq!(case["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(case["kyc"]["status"], "none");
    // Reasons are required.
    let r = app
        .post(
            &format!("/v1/admin/accounts/{id}/freeze"),
            &risk,
            json!({"reason": " "}),
        )
        .await;
    assert_problem(r, 400, "VALIDATION_FAILED").await;
    // Freeze, then unfreeze; lifting a restriction leaves a frozen account alone.
    let act = |what: &str| format!("/v1/admin/accounts/{id}/{what}");
    let r: Value = app
        .post(&act("freeze"), &risk, json!({"reason": "Suspicious"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "frozen");
    let r: Value = app
        .post(&act("lift-restriction"), &risk, json!({"reason": "n/a"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "frozen");
    let r: Value = app
        .post(&act("unfreeze"), &risk, json!({"reason": "Cleared"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "active");
    // A non-empty account cannot be closed.
    let r = app
        .post(&act("close"), &risk, json!({"reason": "Asked to"}))
        .await;
    assert_problem(r, 409, "OPERATION_CLOSED").await;
    // Revoking sessions logs the user out.
    let r: Value = app
        .post(
            &act("revoke-sessions"),
            &risk,
            json!({"reason": "Phone stolen"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["revoked"], 1);
    assert_eq!(app.get("/v1/account", &t).await.status(), 401);
    // The status history shows the operators' actions, newest first.
    let case: Value = app
        .get(&format!("/v1/admin/accounts/{id}/case"), &risk)
        .await
        .json()
        .await
        .unwrap();
    let history: Vec<&str> = case["status_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        history,
        [
            "account.revoke_sessions",
            "account.unfreeze",
            "account.freeze"
        ]
    );
    // An empty account closes.
    let (empty, _) = app.user("empty@example.com").await;
    let r: Value = app
        .post(
            &format!("/v1/admin/accounts/{empty}/close"),
            &risk,
            json!({"reason": "Asked to"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "closed");
    let r = app
        .post(
            "/v1/admin/accounts/acc_nope/freeze",
            &risk,
            json!({"reason": "x"}),
        )
        .await;
    assert!(r.status() == 400 || r.status() == 404, "{}", r.status());
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace('@', "%40")
}

#[tokio::test]
async fn kyc_images_are_shown_decrypted_to_reviewers_and_each_view_is_audited() {
    let app = TestApp::spawn().await;
    let reviewer = operator(&app, "rita", "reviewer").await;
    let viewer = operator(&app, "vic", "viewer").await;
    let (id, t) = app.user("docs@example.com").await;
    let r = app
        .post(
            "/v1/kyc",
            &t,
            json!({"full_name": "Li Lei", "id_type": "passport", "id_number": "E12345678", "document_front": jpeg_b64()}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let doc = format!("/v1/admin/kyc/{id}/documents/0");
    assert_problem(app.get(&doc, &viewer).await, 403, "FORBIDDEN").await;
    let r = app.get(&doc, &reviewer).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    use base64::Engine as _;
    let expected = base64::engine::general_purpose::STANDARD
        .decode(jpeg_b64())
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().to_vec(), expected);
    let r = app
        .get(&format!("/v1/admin/kyc/{id}/documents/1"), &reviewer)
        .await;
    assert_problem(r, 404, "NOT_FOUND").await;
    // The case shows the decrypted name for comparison.
    let case: Value = app
        .get(&format!("/v1/admin/accounts/{id}/case"), &reviewer)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(case["kyc"]["full_name"], "Li Lei");
    assert_eq!(case["kyc"]["documents"], 1);
    // Asking for a resubmission: the user sees the reason and may submit again.
    let r: Value = app
        .post(
            &format!("/v1/admin/kyc/{id}/request-resubmission"),
            &reviewer,
            json!({"reason": "The photo is blurred."}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["kyc"]["status"], "rejected");
    let mine: Value = app.get("/v1/kyc", &t).await.json().await.unwrap();
    assert_eq!(mine["reason"], "The photo is blurred.");
    let trail = audit(&app, &format!("?account_id={id}")).await;
    let actions: Vec<&str> = trail
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["kyc.resubmission_requested", "kyc.document_viewed"]
    );
    assert_eq!(trail[1]["operator"], "rita");
    assert_eq!(trail[1]["detail"], "front");
}

#[tokio::test]
async fn alerts_are_acknowledged_then_resolved_with_a_note() {
    let app = TestApp::spawn().await;
    let risk = operator(&app, "rick", "risk").await;
    let viewer = operator(&app, "vic", "viewer").await;
    let (id, t) = app.user("alerted@example.com").await;
    let r = app
        .try_login("alerted@example.com", "correct horse", "phone-2", None)
        .await;
    assert_eq!(r.status(), 201);
    let alerts = app.alerts(&t).await;
    let alert = alerts[0]["id"].as_str().unwrap().to_owned();
    let path = |what: &str| format!("/v1/admin/alerts/{alert}{what}");
    let r = app.post(&path("/acknowledge"), &viewer, json!({})).await;
    assert_problem(r, 403, "FORBIDDEN").await;
    let r: Value = app
        .post(&path("/acknowledge"), &risk, json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["acknowledged"]["operator"], "rick");
    assert_eq!(r["account_id"], id.as_str());
    assert!(r["resolved"].is_null());
    let r = app.post(&path("/resolve"), &risk, json!({})).await;
    assert_problem(r, 400, "VALIDATION_FAILED").await;
    let r: Value = app
        .post(
            &path("/resolve"),
            &risk,
            json!({"note": "The user's new phone."}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["resolved"]["note"], "The user's new phone.");
    let r: Value = app.get(&path(""), &viewer).await.json().await.unwrap();
    assert_eq!(r["resolved"]["operator"], "rick");
    let r = app
        .get(
            "/v1/admin/alerts/alr_00000000000000000000000000000001",
            &viewer,
        )
        .await;
    assert_problem(r, 404, "NOT_FOUND").await;
    let trail = audit(&app, "?action=alert.").await;
    assert_eq!(trail.len(), 2);
}

/// `okpay operator add` prints a token once; only its hash is stored; the server
/// started on the same data then knows the operator.
#[tokio::test]
async fn the_cli_creates_an_operator_whose_token_the_server_accepts() {
    use std::process::Command;
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_okpay"))
        .args(["--data-dir"])
        .arg(dir.path())
        .args(["operator", "add", "ana", "--role", "risk"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("okop_"), "{token}");
    // A second operator of the same name is refused.
    let again = Command::new(env!("CARGO_BIN_EXE_okpay"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["operator", "add", "ana", "--role", "viewer"])
        .output()
        .unwrap();
    assert!(!again.status.success());
    // The token itself is nowhere in the data directory.
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "the token is stored in {}",
            entry.display()
        );
    }
    let data = dir.path().to_owned();
    let app = TestApp::spawn_with(move |s| s.data_dir = data).await;
    let me: Value = app.get("/v1/admin/me", &token).await.json().await.unwrap();
    assert_eq!(me, json!({"name": "ana", "role": "risk"}));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
