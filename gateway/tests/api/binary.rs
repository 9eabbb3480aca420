//! The `okpay` binary itself: flags and env vars as API.md lists them, a clean
//! exit on SIGTERM after draining, and data that survives the restart.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(data: &std::path::Path, port: u16) -> Child {
    start_with(data, port, &[])
}

/// Starts the binary in dev mode on `port` with `args` added.
pub(crate) fn start_with(data: &std::path::Path, port: u16, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_okpay"))
        .args(args)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data)
        .env("OKPAY_ADMIN_TOKEN", "bin-admin")
        .env("OKPAY_DEV", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start okpay")
}

pub(crate) async fn wait_ready(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("okpay did not become ready");
}

pub(crate) fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(exit) = child.try_wait().unwrap() {
            return exit;
        }
        assert!(Instant::now() < deadline, "okpay did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn the_binary_stops_cleanly_on_sigterm_and_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let client = reqwest::Client::new();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = start(&data, port);
    wait_ready(&client, &base).await;
    let r = client
        .post(format!("{base}/v1/accounts"))
        .json(&json!({"email": "bin@example.com", "password": "correct horse", "display_name": "Bin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let login = json!({"login": "bin@example.com", "password": "correct horse", "device_id": "d"});
    let token: Value = client
        .post(format!("{base}/v1/sessions"))
        .json(&login)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    let r = client
        .post(format!("{base}/v1/deposits"))
        .bearer_auth(&token)
        .header("Idempotency-Key", "bin-dep")
        .json(&json!({"amount": "12.34", "currency": "CNY", "method": "bank_card", "card_number": "4111111111111111"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let exit = terminate(&mut child);
    assert!(exit.success(), "exit status {exit:?}");

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = start(&data, port);
    wait_ready(&client, &base).await;
    let me: Value = client
        .get(format!("{base}/v1/account"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["balances"][0]["available"], "12.34", "{me}");
    assert!(terminate(&mut child).success());
}

#[tokio::test]
async fn accounts_of_an_earlier_run_are_found_as_recipients() {
    use crate::helpers::{assert_problem, TestApp};
    use crate::recipients::send;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let client = reqwest::Client::new();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = start(&data, port);
    wait_ready(&client, &base).await;
    let r = client
        .post(format!("{base}/v1/accounts"))
        .json(&json!({"email": "earlier@example.com", "password": "correct horse", "display_name": "E"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let earlier = r.json::<Value>().await.unwrap()["account_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(terminate(&mut child).success());
    // The same data, served again: at once (the set may still be loading, and a
    // miss asks the engine) and a moment later (the set is complete).
    let app = TestApp::spawn_with(move |s| s.data_dir = data).await;
    let (_, a) = app.user("later@example.com").await;
    app.deposit(&a, "10.00").await;
    for (i, pause_ms) in [0u64, 300].into_iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        let r = app
            .post_idem(
                "/v1/transfers",
                &a,
                &format!("r{i}"),
                send(&earlier, "1.00"),
            )
            .await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let r = app
            .post_idem(
                "/v1/transfers",
                &a,
                &format!("u{i}"),
                send("acc_00000000000000b2", "1.00"),
            )
            .await;
        assert_problem(r, 404, "RECIPIENT_NOT_FOUND").await;
    }
}
