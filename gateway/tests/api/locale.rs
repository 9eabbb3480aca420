//! Each account's own language, through the real SMTP server process the test
//! starts: an account registered with `en` gets its mails in English, one
//! registered without a locale gets them in Chinese (codes and notices alike),
//! the owner changes it with `PATCH /v1/account/profile`, and a locale the server
//! has no templates for is refused with a problem, at registration and later.

use std::time::Duration;

use okpay_gateway::config::{DeliverySettings, Integrations, Settings};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, TestApp};
use crate::stand_ins::SmtpSink;

/// Dev mode with real email delivery and no server-wide locale.
fn settings(s: &mut Settings, smtp_port: u16) {
    s.integrations = Integrations {
        smtp: Some(
            toml::from_str(&format!(
                "host = \"127.0.0.1\"\nport = {smtp_port}\nsecurity = \"none\"\nfrom = \"OKPay <no-reply@okpay.test>\""
            ))
            .unwrap(),
        ),
        delivery: DeliverySettings {
            backoff_ms: 100,
            ..DeliverySettings::default()
        },
        ..Integrations::default()
    };
}

async fn register(app: &TestApp, email: &str, locale: Option<&str>) -> reqwest::Response {
    let mut body = json!({"email": email, "password": "correct horse", "display_name": email});
    if let Some(l) = locale {
        body["locale"] = json!(l);
    }
    app.client
        .post(app.url("/v1/accounts"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Waits for the `n`th mail (1-based) to `to` with `subject`; returns its body.
async fn mail(smtp: &SmtpSink, to: &str, subject: &str, n: usize) -> String {
    for _ in 0..400 {
        let got: Vec<Value> = smtp
            .mails()
            .into_iter()
            .filter(|m| m["to"][0] == to && m["subject"] == subject)
            .collect();
        if got.len() >= n {
            return got[n - 1]["body"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let subjects: Vec<Value> = smtp
        .mails()
        .into_iter()
        .filter(|m| m["to"][0] == to)
        .map(|m| m["subject"].clone())
        .collect();
    panic!("no mail {n} {subject:?} to {to}; got {subjects:?}");
}

async fn reset(app: &TestApp, login: &str) {
    let r = app
        .client
        .post(app.url("/v1/password-reset"))
        .json(&json!({"login": login}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
}

async fn patch(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.client
        .patch(app.url("/v1/account/profile"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

const ZH_RESET: &str = "OKPay 密码重置验证码";
const EN_RESET: &str = "Your OKPay password reset code";

#[tokio::test]
async fn mails_are_written_in_each_accounts_own_locale() {
    let smtp = SmtpSink::start();
    let port = smtp.port;
    let app = TestApp::spawn_with(move |s| settings(s, port)).await;
    let (zh, en) = ("zh@example.com", "en@example.com");

    // Registration takes the locale (any case) and says which one the account has.
    let r = register(&app, zh, None).await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<Value>().await.unwrap()["locale"], "zh-CN");
    let r = register(&app, en, Some("EN")).await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<Value>().await.unwrap()["locale"], "en");
    let bad = assert_problem(
        register(&app, "fr@example.com", Some("fr")).await,
        400,
        "VALIDATION_FAILED",
    )
    .await;
    assert!(bad["detail"].as_str().unwrap().contains("zh-CN or en"));
    // Refused before anything was claimed: the login is still free.
    assert_eq!(
        register(&app, "fr@example.com", Some("en")).await.status(),
        201
    );
    let zh_token = app.login(zh).await;
    let en_token = app.login(en).await;
    let account = |token: String| {
        let app = &app;
        async move {
            let r = app.get("/v1/account", &token).await;
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    assert_eq!(account(zh_token.clone()).await["locale"], "zh-CN");
    assert_eq!(account(en_token.clone()).await["locale"], "en");

    // A code: the same request, each account in its own language.
    reset(&app, zh).await;
    reset(&app, en).await;
    let zh_body = mail(&smtp, zh, ZH_RESET, 1).await;
    let code = app.last_code(zh, "password_reset").await;
    assert!(
        zh_body.contains(&code) && zh_body.contains("分钟"),
        "{zh_body}"
    );
    let en_body = mail(&smtp, en, EN_RESET, 1).await;
    let code = app.last_code(en, "password_reset").await;
    assert!(
        en_body.contains(&code) && en_body.contains("minutes"),
        "{en_body}"
    );
    let subjects = |to: &'static str| {
        smtp.mails()
            .into_iter()
            .filter(move |m| m["to"][0] == to)
            .map(|m| m["subject"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert!(!subjects(zh).iter().any(|s| s == EN_RESET));
    assert!(!subjects(en).iter().any(|s| s == ZH_RESET));

    // A notice (a login from a new device), derived from the engine's events.
    let r = app
        .client
        .post(app.url("/v1/sessions"))
        .json(&json!({"login": zh, "password": "correct horse", "device_id": "phone-2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let body = mail(&smtp, zh, "您的 OKPay 账户在新设备上登录", 1).await;
    assert!(body.contains("phone-2"), "{body}");

    // The owner switches to English: the next code comes in English.
    let r = patch(&app, &zh_token, json!({"locale": "en"})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["locale"], "en");
    assert_eq!(account(zh_token.clone()).await["locale"], "en");
    reset(&app, zh).await;
    let body = mail(&smtp, zh, EN_RESET, 1).await;
    assert!(body.contains(&app.last_code(zh, "password_reset").await));

    // Bad values are problems and change nothing; an empty body changes nothing.
    let bad = assert_problem(
        patch(&app, &zh_token, json!({"locale": "zh_CN"})).await,
        400,
        "VALIDATION_FAILED",
    )
    .await;
    assert!(bad["detail"].as_str().unwrap().contains("zh-CN or en"));
    assert_problem(
        patch(&app, &zh_token, json!({"locale": 7})).await,
        400,
        "VALIDATION_FAILED",
    )
    .await;
    assert_problem(
        patch(&app, &zh_token, json!({"display_name": "x"})).await,
        400,
        "VALIDATION_FAILED",
    )
    .await;
    let r = patch(&app, &zh_token, json!({})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["locale"], "en");
    let r = app
        .client
        .patch(app.url("/v1/account/profile"))
        .json(&json!({"locale": "en"}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "UNAUTHENTICATED").await;
    // And back to Chinese.
    let r = patch(&app, &zh_token, json!({"locale": "zh-CN"})).await;
    assert_eq!(r.json::<Value>().await.unwrap()["locale"], "zh-CN");
    reset(&app, zh).await;
    mail(&smtp, zh, ZH_RESET, 2).await;
}

#[tokio::test]
async fn a_server_wide_locale_that_has_no_templates_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Settings {
        data_dir: dir.path().join("data"),
        ..Settings::default()
    };
    s.integrations.locale = Some("fr".into());
    let e = okpay_gateway::build_state(s).await.err().unwrap();
    assert!(e.to_string().contains("integrations.locale"), "{e}");
}
