//! Smoke test: the harness against the real server, started in-process on port 0
//! (its own actix System thread and temporary embedded store, as the gateway's
//! black-box tests do) with the load-test policy file. A short closed-loop run
//! with a few websocket subscribers must acknowledge transfers and pass every end
//! check: each sampled transfer listed once on both sides, the ledger balanced,
//! and the money conserved.

use std::net::TcpListener;
use std::time::Duration;

use okpay_gateway::config::{FileConfig, Settings};
use okpay_loadtest::{Config, Rate};

const ADMIN: &str = "smoke-admin-token";

/// A running server; stopped and joined on drop.
struct Server {
    url: String,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/okpay-loadtest.toml"))
                .unwrap();
        let file: FileConfig = toml::from_str(&text).unwrap();
        let settings = Settings {
            data_dir: dir.path().join("data"),
            admin_token: Some(ADMIN.into()),
            dev: true,
            workers: 2,
            ..Settings::resolve(Default::default(), file)
        };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            actix_rt::System::new()
                .block_on(okpay_gateway::run(listener, settings, async move {
                    let _ = stopped.await;
                }))
                .unwrap();
        });
        Server {
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        for _ in 0..400 {
            if let Ok(r) = client.get(format!("{}/healthz", self.url)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the server did not start");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_run_acks_transfers_and_passes_every_check() {
    let server = Server::start();
    server.wait_ready().await;

    let mut config = Config::new(server.url.clone(), ADMIN);
    config.accounts = 20;
    config.duration = Duration::from_secs(3);
    config.rate = Rate::Max;
    config.connections = 8;
    config.ws_subscribers = 4;
    config.zipf = 1.0;
    config.seed = 42;
    config.progress = false;
    config.check_sample = 50;
    config.drain = Duration::from_secs(10);
    let report = okpay_loadtest::run(config)
        .await
        .expect("the run was set up");

    println!("{}", report.table());
    assert!(report.acked > 0, "no transfer was acknowledged");
    assert!(report.checks.conserved, "{:#?}", report.notes);
    assert!(report.checks.history_exact_once, "{:#?}", report.notes);
    assert!(report.checks.ledger_balanced, "{:#?}", report.notes);
    let ws = report.ws_delivery_ms.expect("websocket figures");
    assert!(
        ws.delivered > 0,
        "no websocket delivery was matched: {ws:?}"
    );
    assert_eq!(ws.missing, 0, "{ws:?}");
    // Money errors would mean the policy file or the funding is wrong.
    for code in [
        "INSUFFICIENT_FUNDS",
        "LIMIT_EXCEEDED",
        "VELOCITY_BLOCKED",
        "ACCOUNT_FROZEN",
    ] {
        assert!(
            !report.errors.contains_key(code),
            "{code}: {:?}",
            report.errors
        );
    }
}
