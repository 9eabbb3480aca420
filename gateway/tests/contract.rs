//! The OpenAPI document against the real server, checked by an off-the-shelf
//! fuzzer: schemathesis (pinned, installed by this test into a venv under the
//! target directory) runs every check and every phase (examples, coverage,
//! fuzzing, stateful) against a real `okpay --dev` started on port 0, once with a
//! user's session token and once with the admin token, with a fixed seed and a
//! bounded number of examples per operation, and must report zero failures.
//!
//! Every documented operation is fuzzed except the two websocket routes
//! (`/v1/stream`, `/v1/admin/stream`): they answer only a websocket upgrade, which
//! schemathesis cannot speak (any plain GET is refused by design);
//! `tests/api/stream.rs` covers them. Two operations would spoil the rest of a run,
//! so they run on their own, last:
//! - `DELETE /v1/sessions/current` (logout) ends the session it is called with:
//!   the user run leaves it out and a third run fuzzes it with a fresh session of
//!   its own (after its first call, the answers are the documented 401s);
//! - `PUT /v1/admin/maintenance` with the admin token switches the whole server
//!   into maintenance (writes answer 503): the admin run leaves it out and a
//!   fourth, final run fuzzes the maintenance path alone. (The user run keeps it:
//!   a user's token gets 403 and changes nothing.)
//!
//! The processors' callbacks are fuzzed like the rest: the dev server checks them
//! against the public dev secret, which the fuzzer does not know, so every call is
//! a 401 (or 400/413 before it), never a 5xx. The webhook endpoints the fuzzer
//! registers get the events that follow; so that their made-up hosts are never
//! looked up or reached, the server's outgoing HTTP goes through a proxy address on
//! loopback where nothing listens (the deliveries fail and wait for a retry, in the
//! background, without changing any answer).
//!
//! `tests/contract/schemathesis.toml` lists the only setting changed: business
//! refusals (410, 422, 423) of schema-valid requests are not counted as
//! "schema-valid request rejected"; a 400 for such a request still is.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The schemathesis release this test pins (and its hypothesis).
const SCHEMATHESIS: &str = "schemathesis==4.32.5";
const HYPOTHESIS: &str = "hypothesis==6.170.17";
/// Test cases per operation and phase: bounds the run's time.
const MAX_EXAMPLES: &str = "12";
const SEED: &str = "20261129";
const ADMIN_TOKEN: &str = "contract-admin-token";

/// Runs `cmd`, panicking with its output when it fails.
fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A venv with the pinned schemathesis, created once under the target directory
/// (installing python3-venv with apt-get first if the machine lacks it).
fn schemathesis() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("schemathesis-venv");
    let bin = venv.join("bin").join("schemathesis");
    let stamp = venv.join("okpay-pinned");
    let pinned = format!("{SCHEMATHESIS} {HYPOTHESIS}");
    if bin.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(pinned.as_str()) {
        return bin;
    }
    let created = Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success());
    if !created {
        run(
            Command::new("apt-get").args([
                "-o",
                "DPkg::Lock::Timeout=600",
                "install",
                "-y",
                "python3-venv",
                "python3-pip",
            ]),
            "apt-get install python3-venv",
        );
        run(
            Command::new("python3")
                .args(["-m", "venv", "--clear"])
                .arg(&venv),
            "python3 -m venv",
        );
    }
    run(
        Command::new(venv.join("bin").join("pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            SCHEMATHESIS,
            HYPOTHESIS,
        ]),
        "pip install schemathesis",
    );
    std::fs::write(&stamp, &pinned).unwrap();
    bin
}

/// A running `okpay --dev` on a port the OS chose; killed on drop.
struct Server {
    child: Child,
    base: String,
    _data: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start() -> Server {
        let data = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_okpay"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--dev",
                "--log-json",
                "--log",
                "info",
            ])
            .arg("--data-dir")
            .arg(data.path())
            .arg("--admin-token")
            .arg(ADMIN_TOKEN)
            // Payouts settle quickly so withdrawals reach their end states.
            .args(["--payout-delay-ms", "50"])
            // Outgoing HTTP (webhooks to fuzzed URLs) stays on loopback, refused.
            .env("HTTP_PROXY", "http://127.0.0.1:9")
            .env("HTTPS_PROXY", "http://127.0.0.1:9")
            .env("ALL_PROXY", "http://127.0.0.1:9")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start okpay");
        // The log line `okpay listening` carries the address bound.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !sent {
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        if v["fields"]["message"] == "okpay listening" {
                            let _ =
                                tx.send(v["fields"]["address"].as_str().unwrap_or("").to_owned());
                            sent = true;
                        }
                    }
                }
                // Keep draining so the server never blocks on a full pipe.
            }
        });
        let address = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("okpay logged its address");
        Server {
            child,
            base: format!("http://{address}"),
            _data: data,
        }
    }
}

async fn post(client: &reqwest::Client, url: String, token: Option<&str>, body: Value) -> Value {
    let mut req = client.post(url).json(&body);
    if let Some(t) = token {
        req = req
            .bearer_auth(t)
            .header("Idempotency-Key", format!("setup-{}", rand_key()));
    }
    let r = req.send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    r.json().await.unwrap()
}

fn rand_key() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A new session of `email`; returns its token.
async fn login(server: &Server, email: &str) -> String {
    let login = post(
        &reqwest::Client::new(),
        format!("{}/v1/sessions", server.base),
        None,
        json!({"login": email, "password": "correct horse", "device_id": "contract"}),
    )
    .await;
    login["token"].as_str().unwrap().to_owned()
}

/// Registers a user with money and a recipient, and returns the user's token.
async fn user(server: &Server) -> String {
    let client = reqwest::Client::new();
    let base = &server.base;
    for email in ["li.wei@example.com", "wang.fang@example.com"] {
        post(
            &client,
            format!("{base}/v1/accounts"),
            None,
            json!({"email": email, "password": "correct horse", "display_name": "Li Wei"}),
        )
        .await;
    }
    let login = post(
        &client,
        format!("{base}/v1/sessions"),
        None,
        json!({"login": "li.wei@example.com", "password": "correct horse", "device_id": "contract"}),
    )
    .await;
    let token = login["token"].as_str().unwrap().to_owned();
    post(
        &client,
        format!("{base}/v1/deposits"),
        Some(&token),
        json!({"amount": "500.00", "currency": "CNY", "method": "bank_card", "card_number": "4111111111111111"}),
    )
    .await;
    token
}

/// The websocket routes: never fuzzed (see the module doc).
const WEBSOCKETS: &str = "^/v1/(admin/)?stream$";

/// Runs schemathesis with `token` over the operations `filters` select; returns
/// (success, output).
fn fuzz(bin: &Path, server: &Server, token: &str, label: &str, filters: &[&str]) -> (bool, String) {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/contract/schemathesis.toml");
    let report = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("schemathesis-{label}"));
    let out = Command::new(bin)
        .arg("--config-file")
        .arg(&config)
        .arg("--no-color")
        .arg("run")
        .arg(format!("{}/openapi.json", server.base))
        .args(["--checks", "all"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--seed", SEED])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--workers", "1"])
        .args(["--generation-database", "none"])
        .args(["--request-timeout", "30"])
        // One regex per kind of filter: schemathesis keeps only the last of each.
        .args(["--exclude-path-regex", WEBSOCKETS])
        .args(filters)
        .arg("--header")
        .arg(format!("Authorization: Bearer {token}"))
        .arg("--report-dir")
        .arg(&report)
        .env("HYPOTHESIS_STORAGE_DIRECTORY", report.join("hypothesis"))
        // Its working files go under the target directory, not the crate.
        .current_dir({
            std::fs::create_dir_all(&report).unwrap();
            &report
        })
        .output()
        .expect("run schemathesis");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_failure_with_a_user_token_or_the_admin_token() {
    let started = Instant::now();
    let bin = tokio::task::spawn_blocking(schemathesis).await.unwrap();
    let server = tokio::task::spawn_blocking(Server::start).await.unwrap();
    let token = user(&server).await;
    let server = std::sync::Arc::new(server);
    let mut failures = Vec::new();
    // In this order: the last two runs end a session and switch maintenance on.
    let runs: [(&str, Option<String>, &[&str]); 4] = [
        ("user", Some(token), &["--exclude-operation-id", "logout"]),
        (
            "admin",
            Some(ADMIN_TOKEN.to_owned()),
            &["--exclude-path", "/v1/admin/maintenance"],
        ),
        ("logout", None, &["--include-operation-id", "logout"]),
        (
            "maintenance",
            Some(ADMIN_TOKEN.to_owned()),
            &["--include-path", "/v1/admin/maintenance"],
        ),
    ];
    for (label, token, filters) in runs {
        let token = match token {
            Some(t) => t,
            None => login(&server, "wang.fang@example.com").await,
        };
        let (bin, server2) = (bin.clone(), server.clone());
        let (ok, text) =
            tokio::task::spawn_blocking(move || fuzz(&bin, &server2, &token, label, filters))
                .await
                .unwrap();
        let summary: String = text
            .lines()
            .skip_while(|l| !l.contains("SUMMARY"))
            .collect::<Vec<_>>()
            .join("\n");
        eprintln!("schemathesis ({label}):\n{summary}");
        if !ok {
            failures.push(format!("--- with the {label} token ---\n{text}"));
        }
    }
    eprintln!("schemathesis took {:?}", started.elapsed());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
