//! Statements and history search: `GET /v1/statements` (CSV and PDF) whose totals
//! reconcile with the account's balance, the history filters (date range, type,
//! status, direction, counterparty) with counterparty names and aliases,
//! `GET /v1/transactions/{id}`, 405 with `Allow` and the docs at `/docs`.

use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, TestApp};

/// The CSV's (opening, closing, sum of `net`) for CNY.
fn csv_totals(csv: &str) -> (Decimal, Decimal, Decimal, usize) {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (kind, currency, net, balance) = (col("type"), col("currency"), col("net"), col("balance"));
    let (mut opening, mut closing, mut sum, mut n) = (None, None, Decimal::ZERO, 0);
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        if f[currency] != "CNY" {
            continue;
        }
        match f[kind] {
            "opening" => opening = Some(f[balance].parse().unwrap()),
            "closing" => closing = Some(f[balance].parse().unwrap()),
            _ => {
                sum += f[net].parse::<Decimal>().unwrap();
                n += 1;
            }
        }
    }
    (opening.unwrap(), closing.unwrap(), sum, n)
}

#[tokio::test]
async fn a_statement_reconciles_with_the_balance_in_csv_and_pdf() {
    let app = TestApp::spawn().await;
    let (_, a) = app.user("st.a@example.com").await;
    let (_, b) = app.user("st.b@example.com").await;
    app.deposit(&a, "100.00").await;
    app.deposit(&b, "40.00").await;
    let r = app
        .post_idem(
            "/v1/transfers",
            &a,
            "st-1",
            json!({"to": "st.b@example.com", "amount": "30.50", "currency": "CNY", "memo": "rent, march"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = app
        .post_idem(
            "/v1/transfers",
            &b,
            "st-2",
            json!({"to": "st.a@example.com", "amount": "5.25", "currency": "CNY"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let today = chrono::Utc::now().date_naive();
    let (available, _) = app.balance(&a).await;
    let available: Decimal = available.parse().unwrap();

    let r = app
        .get(
            &format!("/v1/statements?from={today}&to={today}&format=csv"),
            &a,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = r.text().await.unwrap();
    let (opening, closing, sum, n) = csv_totals(&csv);
    assert_eq!(n, 3, "{csv}");
    assert_eq!(opening, Decimal::ZERO);
    assert_eq!(closing, opening + sum, "closing = opening + lines");
    assert_eq!(
        closing, available,
        "the statement closes on the balance:\n{csv}"
    );
    assert!(csv.contains("\"rent, march\""), "memo quoted: {csv}");

    // A period after today: opening and closing both equal today's closing.
    let later = today + chrono::Days::new(3);
    let r = app
        .get(&format!("/v1/statements?from={later}&to={later}"), &a)
        .await;
    let (opening, closing, _, n) = csv_totals(&r.text().await.unwrap());
    assert_eq!((opening, closing, n), (available, available, 0));

    let r = app
        .get(
            &format!("/v1/statements?from={today}&to={today}&format=pdf"),
            &a,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/pdf");
    let pdf = r.bytes().await.unwrap();
    assert!(pdf.starts_with(b"%PDF-"));
    let text = String::from_utf8_lossy(&pdf);
    assert!(
        text.contains(&format!("Closing balance: {available:.2} CNY")),
        "{text}"
    );
    assert!(text.contains("Opening balance: 0.00 CNY"));

    for q in [
        "from=2026-13-01&to=2026-12-01",
        "to=2026-01-01",
        "from=2026-01-01&to=2026-01-02&format=xls",
    ] {
        let r = app.get(&format!("/v1/statements?{q}"), &a).await;
        assert_problem(r, 400, "VALIDATION_FAILED").await;
    }
    for q in [
        "from=2026-02-01&to=2026-01-01",
        "from=2024-01-01&to=2026-01-01",
    ] {
        let r = app.get(&format!("/v1/statements?{q}"), &a).await;
        assert_problem(r, 422, "INVALID_PERIOD").await;
    }
}

#[tokio::test]
async fn history_filters_name_counterparties_and_find_one_transaction() {
    let app = TestApp::spawn().await;
    let (_, a) = app.user("f.a@example.com").await;
    let (b_id, b) = app.user("f.b@example.com").await;
    let (c_id, _) = app.user("f.c@example.com").await;
    app.deposit(&a, "100.00").await;
    let r = app
        .post(
            "/v1/contacts",
            &a,
            json!({"alias": "Bee", "login_or_account": "f.b@example.com"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let mut sent = Vec::new();
    for (i, to) in ["f.b@example.com", "f.c@example.com", "f.b@example.com"]
        .iter()
        .enumerate()
    {
        let r = app
            .post_idem(
                "/v1/transfers",
                &a,
                &format!("f-{i}"),
                json!({"to": to, "amount": "1.00", "currency": "CNY"}),
            )
            .await;
        assert_eq!(r.status(), 201);
        sent.push(
            r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    app.deposit(&b, "10.00").await;
    let r = app
        .post_idem(
            "/v1/transfers",
            &b,
            "f-back",
            json!({"to": "f.a@example.com", "amount": "2.00", "currency": "CNY"}),
        )
        .await;
    assert_eq!(r.status(), 201);

    let items = |v: Value| v["items"].as_array().unwrap().clone();
    let page: Value = app
        .get(&format!("/v1/transactions?counterparty={b_id}"), &a)
        .await
        .json()
        .await
        .unwrap();
    let got = items(page);
    assert_eq!(got.len(), 3, "two out, one in");
    for t in &got {
        assert_eq!(t["counterparty"], b_id.as_str());
        assert_eq!(t["counterparty_detail"]["alias"], "Bee");
        assert_eq!(t["counterparty_detail"]["display_name"], "f.b@example.com");
    }
    let got = items(
        app.get(
            &format!("/v1/transactions?counterparty={b_id}&direction=in"),
            &a,
        )
        .await
        .json()
        .await
        .unwrap(),
    );
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["direction"], "in");
    let got = items(
        app.get(
            "/v1/transactions?type=transfer&direction=out&status=completed",
            &a,
        )
        .await
        .json()
        .await
        .unwrap(),
    );
    assert_eq!(got.len(), 3);
    let c_row = got
        .iter()
        .find(|t| t["counterparty"] == c_id.as_str())
        .unwrap();
    assert_eq!(
        c_row["counterparty_detail"]["alias"],
        Value::Null,
        "not a contact"
    );
    let got = items(
        app.get("/v1/transactions?status=reversed", &a)
            .await
            .json()
            .await
            .unwrap(),
    );
    assert!(got.is_empty());

    // Date range: everything up to now, nothing from the future, nothing before.
    let all = app.all_transactions(&a, 50).await;
    assert_eq!(all.len(), 5);
    let oldest = all.last().unwrap()["created_at"]
        .as_str()
        .unwrap()
        .to_owned();
    let q = |s: &str| s.replace(':', "%3A").replace('+', "%2B");
    let got = items(
        app.get(&format!("/v1/transactions?to={}", q(&oldest)), &a)
            .await
            .json()
            .await
            .unwrap(),
    );
    assert_eq!(got.len(), 1, "only the first deposit is at or before it");
    let got = items(
        app.get(
            &format!("/v1/transactions?from={}&type=deposit", q(&oldest)),
            &a,
        )
        .await
        .json()
        .await
        .unwrap(),
    );
    assert_eq!(got.len(), 1);
    let got = items(
        app.get("/v1/transactions?from=2100-01-01T00%3A00%3A00Z", &a)
            .await
            .json()
            .await
            .unwrap(),
    );
    assert!(got.is_empty());
    let r = app
        .get(
            "/v1/transactions?from=2026-02-01T00%3A00%3A00Z&to=2026-01-01T00%3A00%3A00Z",
            &a,
        )
        .await;
    assert_problem(r, 422, "INVALID_PERIOD").await;
    for q in [
        "direction=sideways",
        "status=lost",
        "counterparty=bob",
        "from=yesterday",
    ] {
        let r = app.get(&format!("/v1/transactions?{q}"), &a).await;
        assert_problem(r, 400, "VALIDATION_FAILED").await;
    }

    // One transaction by id, for both sides; someone else's is a 404.
    let r = app.get(&format!("/v1/transactions/{}", sent[0]), &a).await;
    assert_eq!(r.status(), 200);
    let one: Value = r.json().await.unwrap();
    assert_eq!(one["id"], sent[0].as_str());
    assert_eq!(one["direction"], "out");
    assert_eq!(one["counterparty_detail"]["alias"], "Bee");
    let r = app.get(&format!("/v1/transactions/{}", sent[0]), &b).await;
    assert_eq!(r.json::<Value>().await.unwrap()["direction"], "in");
    let (_, stranger) = app.user("f.d@example.com").await;
    let r = app
        .get(&format!("/v1/transactions/{}", sent[0]), &stranger)
        .await;
    assert_problem(r, 404, "NOT_FOUND").await;
    let r = app.get("/v1/transactions/nope", &a).await;
    assert_problem(r, 404, "NOT_FOUND").await;
}

#[tokio::test]
async fn undeclared_methods_are_405_with_allow_and_docs_are_served() {
    let app = TestApp::spawn().await;
    let r = app
        .client
        .delete(app.url("/v1/transactions"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["allow"], "GET");
    assert_problem(r, 405, "METHOD_NOT_ALLOWED").await;
    let r = app
        .client
        .put(app.url("/v1/withdrawals/wd_0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["allow"], "GET");
    assert_problem(r, 405, "METHOD_NOT_ALLOWED").await;
    let r = app
        .client
        .patch(app.url("/v1/sessions"))
        .send()
        .await
        .unwrap();
    let allow = r.headers()["allow"].to_str().unwrap().to_owned();
    for m in ["GET", "POST", "DELETE"] {
        assert!(allow.contains(m), "{allow}");
    }
    let r = app
        .client
        .get(app.url("/v1/no-such-thing"))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "NOT_FOUND").await;

    // Swagger UI from the binary, pointed at this server's document.
    let r = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("swagger-ui"));
    let r = app
        .client
        .get(app.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("/openapi.json"));
}
