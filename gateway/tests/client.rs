//! The typed client example (`examples/typed_client.rs`) checked against the
//! server's OpenAPI document (each type's fields are the schema's properties, and
//! every required property is one the client knows) and used against a real
//! server: register, log in, deposit, transfer, read the history, and read a
//! refusal as a `Problem` with its code.

#[path = "../examples/typed_client.rs"]
mod typed_client;

use std::net::TcpListener;

use okpay_gateway::config::Settings;
use typed_client::*;

/// Starts the server in this process on a free port, as `tests/api` does.
fn spawn() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let data = tempfile::tempdir().unwrap().keep();
    std::thread::spawn(move || {
        let settings = Settings {
            data_dir: data,
            dev: true,
            ..Settings::default()
        };
        actix_rt::System::new()
            .block_on(okpay_gateway::run(
                listener,
                settings,
                std::future::pending(),
            ))
            .unwrap();
    });
    base
}

#[tokio::test]
async fn the_typed_client_matches_the_document_and_works() {
    let base = spawn();
    let http = reqwest::Client::new();
    let mut doc = None;
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{base}/openapi.json")).send().await {
            doc = Some(r.json::<serde_json::Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let doc = doc.expect("server up");
    for (name, fields) in SCHEMAS {
        let schema = &doc["components"]["schemas"][name];
        let props = schema["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{name} is not in the document"));
        for f in *fields {
            assert!(props.contains_key(*f), "{name}.{f} is not in the document");
        }
        for r in schema["required"].as_array().into_iter().flatten() {
            let r = r.as_str().unwrap();
            assert!(
                fields.contains(&r) || !name.ends_with("Request"),
                "{name}.{r} is required by the document but unknown to the client"
            );
        }
    }

    let mut client = Client::new(&base);
    for email in ["tc.a@example.com", "tc.b@example.com"] {
        client
            .register(&RegisterRequest {
                email: email.into(),
                password: "correct horse".into(),
                display_name: email.into(),
            })
            .await
            .unwrap();
    }
    let me = client
        .login(&LoginRequest {
            login: "tc.a@example.com".into(),
            password: "correct horse".into(),
            device_id: "test".into(),
        })
        .await
        .unwrap();
    let d = client
        .deposit(
            "tc-dep",
            &DepositRequest {
                amount: "50.00".into(),
                currency: "CNY".into(),
                method: "bank_card".into(),
                card_number: "4111111111111111".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(d.net, "50.00");
    let t = client
        .transfer(
            "tc-tx",
            &TransferRequest {
                to: "tc.b@example.com".into(),
                amount: "20.00".into(),
                currency: "CNY".into(),
                memo: Some("books".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(t.from, me.account_id);
    let page = client.transactions("type=transfer").await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].memo.as_deref(), Some("books"));
    assert_eq!(
        page.items[0]
            .counterparty_detail
            .as_ref()
            .unwrap()
            .display_name
            .as_deref(),
        Some("tc.b@example.com")
    );
    let refused = client
        .transfer(
            "tc-tx-2",
            &TransferRequest {
                to: "tc.b@example.com".into(),
                amount: "40.00".into(),
                currency: "CNY".into(),
                memo: None,
            },
        )
        .await;
    match refused {
        Err(Error::Problem(p)) => {
            assert_eq!((p.status, p.code.as_str()), (422, "INSUFFICIENT_FUNDS"));
        }
        other => panic!("expected a problem, got {other:?}"),
    }
}
