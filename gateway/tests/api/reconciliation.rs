//! The daily reconciliation against the processors' own settlement reports,
//! served by HTTP stand-ins on loopback: a deliberately mismatched report lists
//! each kind of mismatch once (missing on either side, amount and state
//! differences), a report that agrees lists none, an unconfigured processor or an
//! unreadable report is named in `sources` with a 200, and the `--dev` test
//! processors' own reports agree with the ledger.

use std::sync::Arc;

use okpay_gateway::config::{Integrations, ProcessorSettings, Settings};
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::helpers::{TestApp, CARD};
use crate::stand_ins::{HttpStandIn, Received};

fn processor(url: &str) -> ProcessorSettings {
    toml::from_str(&format!("url = \"{url}\"\napi_key = \"sk_test\"")).unwrap()
}

/// Without --dev, with both processors at the stand-ins.
fn rails(s: &mut Settings, cards_url: &str, payouts_url: &str) {
    s.dev = false;
    s.policy.tier0.withdrawals = true;
    s.integrations = Integrations {
        processor: Some(processor(cards_url)),
        payouts: Some(processor(payouts_url)),
        ..Integrations::default()
    };
}

/// A processor stand-in: POSTs answer `post`, the report answers what `report`
/// holds at the time.
fn stand_in(post: &'static str, report: Arc<Mutex<String>>) -> HttpStandIn {
    HttpStandIn::start(move |r: &Received, n| {
        if r.path.starts_with("/reports/settlements") {
            (200, report.lock().clone())
        } else if post.contains("{n}") {
            (200, post.replace("{n}", &n.to_string()))
        } else {
            (200, post.to_owned())
        }
    })
}

async fn reconciliation(app: &TestApp) -> Value {
    let r = app.admin_get("/v1/admin/reconciliation").await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// (kind, id, source) of every mismatch, sorted.
fn mismatches(report: &Value) -> Vec<(String, String, String)> {
    let mut out: Vec<_> = report["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["kind"].as_str().unwrap().to_owned(),
                m["id"].as_str().unwrap().to_owned(),
                m["source"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

fn source<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == name)
        .unwrap_or_else(|| panic!("no source {name}: {report}"))
}

#[tokio::test]
async fn the_processors_reports_are_compared_with_the_ledger_line_by_line() {
    let cards_report: Arc<Mutex<String>> = Arc::default();
    let payouts_report: Arc<Mutex<String>> = Arc::default();
    let cards = stand_in(
        "{\"id\":\"ch_{n}\",\"status\":\"succeeded\"}",
        cards_report.clone(),
    );
    let payouts = stand_in("{\"status\":\"processing\"}", payouts_report.clone());
    let app = TestApp::spawn_with(|s| rails(s, &cards.base, &payouts.base)).await;
    let (account, token) = app.user("recon@example.com").await;

    let mut dep = std::collections::HashMap::new();
    for (key, amount) in [
        ("k1", "100.00"),
        ("k2", "50.00"),
        ("k3", "30.00"),
        ("k4", "20.00"),
    ] {
        let r = app
            .post_idem(
                "/v1/deposits",
                &token,
                key,
                json!({"amount": amount, "currency": "CNY", "method": "credit_card", "card_number": CARD}),
            )
            .await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let body: Value = r.json().await.unwrap();
        dep.insert(key, body["id"].as_str().unwrap().to_owned());
    }
    let mut wd = std::collections::HashMap::new();
    for key in ["w1", "w2", "w3"] {
        let r = app
            .post_idem(
                "/v1/withdrawals",
                &token,
                key,
                json!({"amount": "10.00", "currency": "CNY", "method": "third_party", "destination": "alipay:recon@example.com"}),
            )
            .await;
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["payout"], "9.50");
        wd.insert(key, body["id"].as_str().unwrap().to_owned());
    }
    payouts
        .wait_for(3, |r| r.path == "/payouts" && r.status == 200)
        .await;

    // Reports that disagree with the ledger in every way they can.
    let charge = |key: &str, amount: &str, status: &str| json!({"reference": format!("{account}:{key}"), "charge_id": "ch", "amount": amount, "currency": "CNY", "status": status});
    *cards_report.lock() = json!({"items": [
        charge("k1", "100.00", "succeeded"),
        charge("k2", "55.00", "succeeded"),
        charge("k3", "30.00", "refunded"),
        charge("ghost", "70.00", "succeeded"),
        charge("declined", "5.00", "failed"),
    ]})
    .to_string();
    let payout = |id: &str, amount: &str, status: &str| json!({"id": id, "amount": amount, "currency": "CNY", "status": status});
    *payouts_report.lock() = json!({"items": [
        payout(&wd["w1"], "9.50", "completed"),
        payout(&wd["w2"], "9.00", "processing"),
        payout("wd_ghost", "1.00", "completed"),
    ]})
    .to_string();
    let report = reconciliation(&app).await;
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let s = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
    let mut expected = vec![
        s("amount_differs", &dep["k2"], "processor"),
        s("state_differs", &dep["k3"], "processor"),
        s(
            "missing_in_ledger",
            &format!("{account}:ghost"),
            "processor",
        ),
        s("missing_at_processor", &dep["k4"], "processor"),
        s("state_differs", &wd["w1"], "payouts"),
        s("amount_differs", &wd["w2"], "payouts"),
        s("missing_in_ledger", "wd_ghost", "payouts"),
        s("missing_at_processor", &wd["w3"], "payouts"),
    ];
    expected.sort();
    assert_eq!(mismatches(&report), expected, "{report:#}");
    let k2 = report["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == dep["k2"].as_str())
        .unwrap();
    assert_eq!(k2["processor_amount"], "55.00 CNY");
    assert_eq!(k2["ledger_amount"], "50.00 CNY");
    assert_eq!(source(&report, "processor")["status"], "ok");
    assert_eq!(source(&report, "processor")["items"], 5);
    assert_eq!(source(&report, "payouts")["items"], 3);
    assert_eq!(report["ledger_deposits"], 4);
    assert_eq!(report["ledger_withdrawals"], 3);
    // Asked over HTTP for the day, with the API key.
    for stand_in in [&cards, &payouts] {
        let asked = stand_in
            .received()
            .into_iter()
            .find(|r| r.path.starts_with("/reports/"))
            .unwrap();
        assert_eq!(asked.method, "GET");
        assert_eq!(asked.path, format!("/reports/settlements?date={today}"));
        assert_eq!(asked.header("authorization"), Some("Bearer sk_test"));
    }

    // Reports that agree: nothing to list.
    *cards_report.lock() = json!({"items": [
        charge("k1", "100.00", "succeeded"),
        charge("k2", "50.00", "succeeded"),
        charge("k3", "30.00", "succeeded"),
        charge("k4", "20.00", "succeeded"),
        charge("declined", "5.00", "failed"),
    ]})
    .to_string();
    *payouts_report.lock() = json!({"items": [
        payout(&wd["w1"], "9.50", "processing"),
        payout(&wd["w2"], "9.50", "processing"),
        payout(&wd["w3"], "9.50", "processing"),
    ]})
    .to_string();
    let report = reconciliation(&app).await;
    assert_eq!(mismatches(&report), [], "{report:#}");

    // An unreadable report is named, the answer is still 200, nothing compared.
    *cards_report.lock() = "not json".into();
    let report = reconciliation(&app).await;
    let cards_source = source(&report, "processor");
    assert_eq!(cards_source["status"], "unavailable");
    assert!(cards_source["detail"]
        .as_str()
        .unwrap()
        .contains("could not be read"));
    assert_eq!(source(&report, "payouts")["status"], "ok");
    assert_eq!(mismatches(&report), []);
}

#[tokio::test]
async fn without_processors_the_report_sources_are_named_as_missing() {
    let app = TestApp::spawn_with(|s| s.dev = false).await;
    let report = reconciliation(&app).await;
    for (name, setting) in [
        ("processor", "OKPAY_PROCESSOR_URL"),
        ("payouts", "OKPAY_PAYOUTS_URL"),
    ] {
        let s = source(&report, name);
        assert_eq!(s["status"], "missing", "{report}");
        let detail = s["detail"].as_str().unwrap();
        assert!(
            detail.contains("No report source") && detail.contains(setting),
            "{detail}"
        );
    }
    assert_eq!(mismatches(&report), []);
}

#[tokio::test]
async fn the_dev_processors_reports_agree_with_the_ledger() {
    let app = TestApp::spawn_with(|s| s.policy.tier0.withdrawals = true).await;
    let (_, token) = app.user("devrecon@example.com").await;
    app.deposit(&token, "100.00").await;
    let r = app
        .post_idem(
            "/v1/withdrawals",
            &token,
            "w1",
            json!({"amount": "10.00", "currency": "CNY", "method": "third_party", "destination": "alipay:dev@example.com"}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..200 {
        let w: Value = app
            .get(&format!("/v1/withdrawals/{id}"), &token)
            .await
            .json()
            .await
            .unwrap();
        if w["status"] == "completed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The dev processor clears its pending entry just after the settlement.
    let mut report = reconciliation(&app).await;
    for _ in 0..100 {
        if report["open_payouts"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        report = reconciliation(&app).await;
    }
    assert_eq!(source(&report, "processor")["items"], 1, "{report}");
    assert_eq!(source(&report, "payouts")["items"], 1, "{report}");
    assert_eq!(report["ledger_deposits"], 1);
    assert_eq!(report["ledger_withdrawals"], 1);
    assert_eq!(mismatches(&report), [], "{report:#}");
}
