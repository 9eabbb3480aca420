//! Notices to account owners, through the real SMTP server process the tests
//! start: a login from a new device, the KYC result, a freeze and its lifting,
//! a large withdrawal and a password change each send one mail, in the
//! account's language, and a restart of the server (same Redis store) derives
//! none of them again.

use std::time::Duration;

use okpay_gateway::config::{DeliverySettings, Integrations, Settings};
use okpay_testsupport::redis_server::RedisServer;
use serde_json::{json, Value};

use crate::helpers::{jpeg_b64, TestApp};
use crate::stand_ins::{HttpStandIn, SmtpSink};

const OWNER: &str = "owner@example.com";
/// How long a mail or an empty outbox may take to come.
const PATIENCE: Duration = Duration::from_secs(20);

/// Dev mode (test card processor and payouts, readable codes) with real email
/// and SMS delivery, on the Redis at `redis`.
fn settings(s: &mut Settings, smtp_port: u16, sms_url: &str, redis: &str) {
    s.redis_url = Some(redis.to_owned());
    s.integrations = Integrations {
        locale: Some("en".into()),
        smtp: Some(
            toml::from_str(&format!(
                "host = \"127.0.0.1\"\nport = {smtp_port}\nsecurity = \"none\"\nfrom = \"OKPay <no-reply@okpay.test>\""
            ))
            .unwrap(),
        ),
        sms: Some(toml::from_str(&format!("url = \"{sms_url}\"\ntoken = \"t\"")).unwrap()),
        delivery: DeliverySettings {
            backoff_ms: 100,
            ..DeliverySettings::default()
        },
        ..Integrations::default()
    };
}

/// The subjects of the mails to the owner, in arrival order.
fn subjects(smtp: &SmtpSink) -> Vec<String> {
    smtp.mails()
        .into_iter()
        .filter(|m| m["to"][0] == OWNER)
        .map(|m| m["subject"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Waits until a mail with `subject` has arrived; returns its body.
async fn mail(smtp: &SmtpSink, subject: &str) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(m) = smtp
            .mails()
            .into_iter()
            .find(|m| m["to"][0] == OWNER && m["subject"] == subject)
        {
            return m["body"].as_str().unwrap().to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no mail {subject:?}; got {:?}",
            subjects(smtp)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `n` mails with `subject` have arrived.
async fn wait_count(smtp: &SmtpSink, subject: &str, n: usize) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let got = subjects(smtp);
        if got.iter().filter(|s| *s == subject).count() >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} mails {subject:?} never arrived; got {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the server's outbox holds no message (every one was accepted by
/// the relay or the SMS gateway, and removed).
async fn queue_drained(app: &TestApp) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let queued: Value = app
            .admin_get("/v1/admin/deliveries?state=queued")
            .await
            .json()
            .await
            .unwrap();
        if queued["items"].as_array().is_some_and(|a| a.is_empty()) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the outbox never emptied: {queued}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const NEW_DEVICE: &str = "New login to your OKPay account";
const KYC: &str = "Your identity is verified";
const FROZEN: &str = "Your OKPay account is frozen";
const ACTIVE: &str = "Your OKPay account is active again";
const LARGE: &str = "A large OKPay withdrawal was started";
const PASSWORD: &str = "Your OKPay password was changed";

#[tokio::test]
async fn each_notice_is_mailed_once_and_a_restart_sends_none_again() {
    let redis = RedisServer::start();
    let url = redis.url();
    let smtp = SmtpSink::start();
    let sms = HttpStandIn::start(|_, _| (201, "{}".into()));
    let (port, sms_url) = (smtp.port, format!("{}/sms", sms.base));
    let (u, s) = (url.clone(), sms_url.clone());
    let app = TestApp::spawn_with(move |x| settings(x, port, &s, &u)).await;
    let (id, token) = app.user(OWNER).await;

    // The first device is no news; a second one is.
    let r = app
        .try_login(OWNER, "correct horse", "pixel-9", Some("CN"))
        .await;
    assert_eq!(r.status(), 201);
    let body = mail(&smtp, NEW_DEVICE).await;
    assert!(body.contains("pixel-9") && body.contains("CN"), "{body}");

    // A submission reviewed by an operator.
    let r = app
        .post(
            "/v1/kyc",
            &token,
            json!({"full_name": "Owner", "id_type": "national_id", "id_number": "110101199003077777",
                   "document_front": jpeg_b64()}),
        )
        .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    app.approve_kyc(&id).await;
    mail(&smtp, KYC).await;

    app.freeze(&id, "Card testing suspected").await;
    let body = mail(&smtp, FROZEN).await;
    assert!(body.contains("Card testing suspected"), "{body}");
    app.unfreeze(&id, "Cleared by review").await;
    let body = mail(&smtp, ACTIVE).await;
    assert!(body.contains("Cleared by review"), "{body}");

    // A withdrawal at the step-up threshold is "large": told once confirmed.
    app.deposit(&token, "1500.00").await;
    let r = app
        .post_idem(
            "/v1/withdrawals",
            &token,
            "large",
            json!({"amount": "1000.00", "currency": "CNY", "method": "bank_card", "destination": "6222"}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.unwrap();
    let challenge = body["challenge"]["id"].as_str().unwrap().to_owned();
    let code = app.last_code(OWNER, "challenge").await;
    let r = app
        .post(
            &format!("/v1/challenges/{challenge}/confirm"),
            &token,
            json!({ "code": code }),
        )
        .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let body = mail(&smtp, LARGE).await;
    assert!(body.contains("1000.00") && body.contains("wd_"), "{body}");

    let r = app
        .client
        .post(app.url("/v1/password-reset"))
        .json(&json!({ "login": OWNER }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let code = app.last_code(OWNER, "password_reset").await;
    let r = app
        .client
        .post(app.url("/v1/password-reset/confirm"))
        .json(&json!({"login": OWNER, "code": code, "new_password": "correct horse"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    mail(&smtp, PASSWORD).await;

    let notices = [NEW_DEVICE, KYC, FROZEN, ACTIVE, LARGE, PASSWORD];
    let count = |subjects: &[String], s: &str| subjects.iter().filter(|x| *x == s).count();
    let before = subjects(&smtp);
    for s in notices {
        assert_eq!(count(&before, s), 1, "{s}: {before:?}");
    }

    // The server stops only once its outbox is empty. The sink shows a mail as
    // soon as it has read it, before it answers the server, and the server
    // removes a message from the queue only after that answer: a stop in between
    // leaves the message queued, and the next server sends it again once the
    // stopped one's send lock on it expires (10 s; delivery is at least once, see
    // `integrations::deliveries`). That is not what this test is about, and it
    // used to show up only when a loaded machine stretched the wait below past
    // the lock's expiry.
    queue_drained(&app).await;
    // A new server on the same store: its start-up pass finds every notice
    // already derived and sends none again; new events still get theirs.
    drop(app);
    let app = TestApp::spawn_with(move |x| settings(x, port, &sms_url, &url)).await;
    let r = app
        .try_login(OWNER, "correct horse", "tablet-3", None)
        .await;
    assert_eq!(r.status(), 201);
    wait_count(&smtp, NEW_DEVICE, 2).await;
    // Whatever the new server derived or found queued has been sent once its
    // outbox is empty (the notices task handles the login's kick only after its
    // start-up pass). One more notice, queued after that and arriving after
    // everything sent before it (the sink reports mails in order), shows that
    // every mail the new server sent is counted below.
    queue_drained(&app).await;
    let r = app
        .try_login(OWNER, "correct horse", "laptop-4", None)
        .await;
    assert_eq!(r.status(), 201);
    wait_count(&smtp, NEW_DEVICE, 3).await;
    let after = subjects(&smtp);
    assert_eq!(count(&after, NEW_DEVICE), 3, "{after:?}");
    for s in [KYC, FROZEN, ACTIVE, LARGE, PASSWORD] {
        assert_eq!(count(&after, s), 1, "{s}: {after:?}");
    }
}
