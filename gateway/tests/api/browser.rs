//! End-to-end in a real browser: headless Chromium driven over WebDriver
//! (Debian's `chromium` and `chromium-driver`, installed with apt-get when
//! missing) against a real `okpay` on port 0 in dev mode. Two users and an
//! operator each have their own browser session, as three people would:
//!
//! - Alice registers in the wallet, adds money (the fee is reviewed before she
//!   confirms), adds Bob as a contact and sends him money; Bob's open page shows
//!   the new balance without reloading.
//! - The operator's console shows a fraud alert (Alice's login on a new device)
//!   the moment it is raised; the operator reviews Alice's KYC submission with
//!   its image and approves it, and Alice's open page shows her new limits.
//! - Alice's large transfer asks for the step-up code (read from the dev outbox)
//!   and goes through once she types it.
//!
//! - The interactive API docs at `/docs/` (Swagger UI, served from the binary)
//!   load the server's own document and list every operation in it.
//!
//! With `OKPAY_SCREENSHOTS=<dir>` the main pages are saved there as PNG files
//! (that is how `docs/screenshots/` is made).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::helpers::{TestApp, ADMIN};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long a condition on a page may take to become true.
const PATIENCE: Duration = Duration::from_secs(20);

/// Installs Chromium and its driver when missing (as testsupport does for Redis),
/// and a Chinese font when screenshots are asked for (the assertions read the
/// DOM, so they do not need one). Both browser tests call it and run in
/// parallel, so the install runs once per process (two `apt-get`s at once make
/// the second fail on dpkg's lock), and apt waits for a lock another process holds.
fn ensure_browser() {
    static INSTALLED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    INSTALLED.get_or_init(install_browser);
}

fn install_browser() {
    let mut packages = Vec::new();
    if !Path::new(CHROMIUM).is_file() || !Path::new(CHROMEDRIVER).is_file() {
        packages.extend(["chromium", "chromium-driver"]);
    }
    if std::env::var_os("OKPAY_SCREENSHOTS").is_some()
        && !Path::new("/usr/share/fonts/truetype/wqy").is_dir()
    {
        packages.push("fonts-wqy-microhei");
    }
    if packages.is_empty() {
        return;
    }
    let install = || {
        Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=600", "install", "-y"])
            .args(&packages)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        let updated = Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=600", "update"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            updated && install(),
            "could not install {packages:?} with apt-get"
        );
    }
}

/// A chromedriver process on a free loopback port, ended on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    async fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        // Owned by the guard from here: ended and reaped on every path.
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = http.get(format!("{}/status", driver.url)).send().await {
                if r.status().is_success() {
                    return driver;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("chromedriver did not start");
    }

    /// A new browser with its own fresh profile, phone-sized.
    async fn browser(&self, profile: &Path) -> Client {
        let mut caps = serde_json::map::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=412,915",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let conn = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(conn)
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `script` (which returns a value) in the page.
async fn js(c: &Client, script: &str, args: Vec<Value>) -> Value {
    c.execute(script, args).await.expect("script")
}

/// The text of the first element matching `css`, or null.
async fn text(c: &Client, css: &str) -> Value {
    js(
        c,
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
        vec![json!(css)],
    )
    .await
}

/// Waits until `check` holds for the text of `css`; panics with what it saw.
async fn wait_text(c: &Client, css: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut last = Value::Null;
    while tokio::time::Instant::now() < deadline {
        last = text(c, css).await;
        if let Some(t) = last.as_str() {
            if check(t) {
                return t.to_owned();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: {css} never matched; last text {last}");
}

/// Waits until `css` matches a visible element.
async fn wait_visible(c: &Client, css: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
        let v = js(
            c,
            "const e = document.querySelector(arguments[0]); return !!e && e.offsetParent !== null;",
            vec![json!(css)],
        )
        .await;
        if v == json!(true) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{css} never became visible");
}

async fn fill(c: &Client, css: &str, value: &str) {
    let e = c.find(Locator::Css(css)).await.expect(css);
    e.clear().await.expect("clear");
    e.send_keys(value).await.expect("type");
}

async fn click(c: &Client, css: &str) {
    wait_visible(c, css).await;
    js(
        c,
        "document.querySelector(arguments[0]).scrollIntoView({block: 'center'}); return 1;",
        vec![json!(css)],
    )
    .await;
    // A page that re-renders (a websocket update) may replace the element between
    // finding and clicking it: find it again, a bounded number of times.
    for attempt in 0.. {
        let clicked = c.find(Locator::Css(css)).await.expect(css).click().await;
        match clicked {
            Ok(_) => return,
            Err(fantoccini::error::CmdError::Standard(e))
                if e.error == fantoccini::error::ErrorStatus::StaleElementReference
                    && attempt < 5 =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("click {css}: {e:?}"),
        }
    }
}

async fn select(c: &Client, css: &str, value: &str) {
    c.find(Locator::Css(css))
        .await
        .expect(css)
        .select_by_value(value)
        .await
        .expect("select");
}

/// Saves a screenshot when `OKPAY_SCREENSHOTS` names a directory.
async fn shot(c: &Client, name: &str) {
    let Some(dir) = std::env::var_os("OKPAY_SCREENSHOTS") else {
        return;
    };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// Logs in on the wallet page.
async fn log_in(c: &Client, login: &str) {
    fill(c, "#login-login", login).await;
    fill(c, "#login-password", "correct horse").await;
    click(c, "#login-submit").await;
    wait_visible(c, "#balances").await;
    wait_text(c, "#conn", "the wallet's websocket", |t| t == "Live").await;
}

/// Waits until `check` holds for what `script` returns; panics with what it saw.
async fn wait_for(c: &Client, script: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let v = js(c, script, vec![]).await;
        if check(&v) {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: last {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The ids of the rows of the wallet's history table.
const HISTORY_ROWS: &str =
    "return [...document.querySelectorAll('#history tr')].map(r => r.dataset.id);";

/// Wraps the page's `fetch` so that answers to unfiltered history requests
/// (`/v1/transactions` without `type=`) wait until `okpayTest.release()`, which
/// returns how many it released; `okpayTest.settled` counts released answers
/// the page has finished with (raised in a later task, after the microtasks in
/// which the page reads the answer and renders it or drops it).
const HOLD_UNFILTERED_HISTORY: &str = r#"
const real = window.fetch.bind(window);
const t = window.okpayTest = { held: [], released: 0, settled: 0, real };
t.release = () => {
  const held = t.held.splice(0);
  t.released += held.length;
  held.forEach(go => go());
  return held.length;
};
window.fetch = (url, opts) => {
  const answer = real(url, opts);
  const u = String(url);
  if (!u.startsWith('/v1/transactions') || u.includes('type=')) return answer;
  return new Promise((resolve, reject) => t.held.push(() => answer.then(r => {
    const json = r.json.bind(r);
    r.json = () => json().finally(() => setTimeout(() => { t.settled += 1; }, 0));
    resolve(r);
  }, reject)));
};
return 1;
"#;

/// Answers the page's next history request that has no cursor with an empty
/// page and a cursor above every row (`"ffffffffffffffff"`, hex-encoded), as
/// the server answers an account whose rows are more than a year of weeks
/// back; every other request goes to the server unchanged (past the hold of
/// [`HOLD_UNFILTERED_HISTORY`]).
const SHORT_FIRST_HISTORY_PAGE: &str = r#"
const t = window.okpayTest;
const inner = window.fetch;
t.emptyServed = false;
window.fetch = (url, opts) => {
  const u = String(url);
  if (!u.startsWith('/v1/transactions')) return inner(url, opts);
  if (!u.includes('cursor=') && !t.emptyServed) {
    t.emptyServed = true;
    const body = JSON.stringify({ items: [], next_cursor: '66'.repeat(16) });
    return Promise.resolve(new Response(body, {
      status: 200, headers: { 'Content-Type': 'application/json' } }));
  }
  return t.real(url, opts);
};
return 1;
"#;

/// The CNY balance shown on the wallet's home tab.
async fn cny(c: &Client) -> Value {
    text(c, "#bal-CNY").await
}

#[tokio::test]
async fn the_wallet_and_the_console_work_end_to_end_in_a_real_browser() {
    ensure_browser();
    let app = TestApp::spawn().await;
    let driver = Driver::start().await;
    let profiles = tempfile::tempdir().unwrap();
    let alice = driver.browser(&profiles.path().join("alice")).await;
    let bob = driver.browser(&profiles.path().join("bob")).await;
    let ops = driver.browser(&profiles.path().join("ops")).await;

    // Alice registers and logs in in the wallet.
    alice.goto(&app.url("/")).await.unwrap();
    js(
        &alice,
        "localStorage.setItem('okpay.lang', 'en'); return 1;",
        vec![],
    )
    .await;
    alice.refresh().await.unwrap();
    fill(&alice, "#reg-name", "Alice").await;
    fill(&alice, "#reg-email", "alice@example.com").await;
    fill(&alice, "#reg-phone", "+8613800000001").await;
    fill(&alice, "#reg-password", "correct horse").await;
    click(&alice, "#reg-submit").await;
    wait_text(&alice, "#reg-msg", "registration", |t| {
        t.contains("Account created")
    })
    .await;
    log_in(&alice, "alice@example.com").await;
    let limit_before = wait_text(&alice, "#limit-single", "tier-0 limit", |t| !t.is_empty()).await;
    assert_eq!(limit_before, "500.00");

    // Bob has an account and his wallet open.
    app.register("bob@example.com").await;
    bob.goto(&app.url("/")).await.unwrap();
    js(
        &bob,
        "localStorage.setItem('okpay.lang', 'en'); return 1;",
        vec![],
    )
    .await;
    bob.refresh().await.unwrap();
    log_in(&bob, "bob@example.com").await;
    let start = cny(&bob).await;
    assert!(
        matches!(start.as_str(), None | Some("0.00")),
        "Bob starts with nothing: {start}"
    );

    // Alice adds money: she reviews the fee and arrival before confirming.
    click(&alice, "[data-tab=add]").await;
    fill(&alice, "#dep-amount", "2000.00").await;
    fill(&alice, "#dep-card", "4111 1111 1111 1111").await;
    click(&alice, "#dep-review").await;
    wait_visible(&alice, "#dep-confirm").await;
    let review = text(&alice, "#dep-quote-text").await;
    assert!(review.as_str().is_some_and(|t| !t.is_empty()), "{review}");
    shot(&alice, "wallet-deposit-review").await;
    click(&alice, "#dep-confirm").await;
    wait_text(&alice, "#dep-msg", "deposit receipt", |t| {
        t.contains("Added")
    })
    .await;
    click(&alice, "[data-tab=home]").await;
    wait_text(&alice, "#bal-CNY", "Alice's balance", |t| t == "2000.00").await;

    // Two taps to a contact: add Bob once, then tap Bob and Send.
    click(&alice, "[data-tab=send]").await;
    fill(&alice, "#contact-alias", "Bob").await;
    fill(&alice, "#contact-login", "bob@example.com").await;
    click(&alice, "#contact-add").await;
    wait_visible(&alice, "#contacts button.contact").await;
    click(&alice, "#contacts button.contact").await;
    fill(&alice, "#send-amount", "50.00").await;
    shot(&alice, "wallet-send").await;
    click(&alice, "#send-submit").await;
    wait_text(&alice, "#send-msg", "transfer", |t| {
        t.contains("Sent 50.00 CNY")
    })
    .await;
    // Bob's page, never reloaded, shows the money.
    wait_text(&bob, "#bal-CNY", "Bob's live balance", |t| t == "50.00").await;
    wait_text(&bob, "#toasts", "Bob's notice", |t| {
        t.contains("Received 50.00")
    })
    .await;
    shot(&bob, "wallet-home-live").await;

    // The operator signs in to the console with a named operator's token.
    let r = app
        .admin_post(
            "/v1/admin/operators",
            json!({"name": "olivia", "role": "admin"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let op_token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    ops.goto(&app.url("/console")).await.unwrap();
    js(
        &ops,
        "localStorage.setItem('okpay.lang', 'en'); return 1;",
        vec![],
    )
    .await;
    ops.refresh().await.unwrap();
    fill(&ops, "#op-token", &op_token).await;
    click(&ops, "#op-login").await;
    wait_text(&ops, "#who", "operator name", |t| t.contains("olivia")).await;
    wait_text(&ops, "#conn", "the console's websocket", |t| t == "Live").await;

    // A fraud alert appears in the console as it is raised: Alice logs in from
    // a new device.
    let alice_id: Value = app
        .admin_get("/v1/admin/accounts?q=alice%40example.com")
        .await
        .json()
        .await
        .unwrap();
    let alice_id = alice_id["items"][0]["account_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .try_login("alice@example.com", "correct horse", "phone-2", None)
        .await;
    assert_eq!(r.status(), 201);
    let alert_css = format!("#alerts li.alert[data-account='{alice_id}'][data-rule='new_device']");
    wait_visible(&ops, &alert_css).await;
    shot(&ops, "console-alerts").await;

    // Alice submits her identity documents with a photo.
    let photo = profiles.path().join("passport.png");
    std::fs::write(&photo, id_card_png()).unwrap();
    click(&alice, "[data-tab=verify]").await;
    fill(&alice, "#kyc-name", "Alice Wang").await;
    select(&alice, "#kyc-idtype", "passport").await;
    fill(&alice, "#kyc-idnumber", "E12345678").await;
    alice
        .find(Locator::Css("#kyc-front"))
        .await
        .unwrap()
        .send_keys(&photo.display().to_string())
        .await
        .unwrap();
    click(&alice, "#kyc-submit").await;
    wait_text(&alice, "#kyc-status", "KYC pending", |t| {
        t == "Under review"
    })
    .await;
    click(&alice, "[data-tab=home]").await;

    // The operator reviews it with its image and approves it.
    click(&ops, "[data-tab=kyc]").await;
    let row = format!("#kyc-queue li[data-account='{alice_id}'] button.review");
    click(&ops, &row).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let loaded = js(
            &ops,
            "const i = document.querySelector('#kyc-images img'); return !!i && i.complete && i.naturalWidth > 0;",
            vec![],
        )
        .await;
        if loaded == json!(true) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the document image never showed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shot(&ops, "console-kyc-review").await;
    click(&ops, "#kyc-approve").await;
    wait_text(&ops, "#kyc-msg", "approval", |t| t.contains("Approved")).await;
    // Alice's open page shows the new limits.
    wait_text(&alice, "#limit-single", "Alice's new limit", |t| {
        t == "50000.00"
    })
    .await;
    wait_text(&alice, "#kyc-tier", "Alice's tier", |t| t == "1").await;
    shot(&alice, "wallet-home").await;

    // A large transfer asks for the code; the right code sends it.
    click(&alice, "[data-tab=send]").await;
    click(&alice, "#contacts button.contact").await;
    fill(&alice, "#send-amount", "1000.00").await;
    click(&alice, "#send-submit").await;
    wait_visible(&alice, "#stepup-code").await;
    shot(&alice, "wallet-step-up").await;
    let code = app.last_code("+8613800000001", "challenge").await;
    fill(&alice, "#stepup-code", &code).await;
    click(&alice, "#stepup-submit").await;
    wait_text(&alice, "#send-msg", "large transfer", |t| {
        t.contains("Sent 1000.00 CNY")
    })
    .await;
    wait_text(&bob, "#bal-CNY", "Bob's live balance", |t| t == "1050.00").await;

    // Verified, Alice withdraws to her bank card: the receipt names the card
    // masked, never in clear.
    click(&alice, "[data-tab=withdraw]").await;
    fill(&alice, "#wd-amount", "100.00").await;
    select(&alice, "#wd-method", "bank_card").await;
    fill(&alice, "#wd-destination", "6222 0200 1234 5678").await;
    click(&alice, "#wd-review").await;
    wait_visible(&alice, "#wd-confirm").await;
    click(&alice, "#wd-confirm").await;
    let receipt = wait_text(&alice, "#wd-msg", "withdrawal receipt", |t| {
        t.contains("under way")
    })
    .await;
    assert!(receipt.contains("**** 5678"), "{receipt}");
    assert!(!receipt.contains("1234 5678"), "{receipt}");
    click(&alice, "[data-tab=home]").await;

    // The case view: the operator finds Alice by phone.
    click(&ops, "[data-tab=lookup]").await;
    fill(&ops, "#lookup-q", "+8613800000001").await;
    click(&ops, "#lookup-go").await;
    wait_text(&ops, "#case-profile [data-field=id]", "case view", |t| {
        t == alice_id
    })
    .await;
    wait_text(&ops, "#case-kyc-history", "KYC history", |t| {
        t.contains("kyc.approve")
    })
    .await;
    shot(&ops, "console-case").await;

    // Alice lost her phone: the operator resets her authenticator app (audited).
    fill(&ops, "#action-reason", "lost phone, identity checked").await;
    click(&ops, "[data-action='totp/reset']").await;
    wait_text(&ops, "#action-msg", "TOTP reset", |t| {
        t.contains("authenticator app")
    })
    .await;

    // Both apps speak Chinese.
    click(&alice, "[data-tab=home]").await;
    click(&alice, "#lang").await;
    wait_text(&alice, "[data-tab=home]", "Chinese", |t| t == "首页").await;
    shot(&alice, "wallet-home-zh").await;

    // History with a filter, while the answer to the tab's own (unfiltered)
    // request is slow: it arrives after the filter's and must not be shown.
    // The page's `fetch` holds the unfiltered answers back until released.
    js(&alice, HOLD_UNFILTERED_HISTORY, vec![]).await;
    click(&alice, "[data-tab=history]").await;
    select(&alice, "#hist-type", "deposit").await;
    let only_the_deposit = |rows: &Value| {
        let rows = rows.as_array().unwrap();
        rows.len() == 1 && rows[0].as_str().is_some_and(|id| id.starts_with("dep_"))
    };
    let rows = wait_for(&alice, HISTORY_ROWS, "history filter", only_the_deposit).await;
    let held = js(&alice, "return window.okpayTest.release();", vec![]).await;
    assert!(
        held.as_u64().is_some_and(|n| n >= 1),
        "the tab's unfiltered request was not held: {held}"
    );
    // Every released answer has been handed to the page and the page is done
    // with it (the count is raised in a task after the page's own handling).
    wait_for(
        &alice,
        "return window.okpayTest.settled === window.okpayTest.released;",
        "released history answers handled",
        |v| *v == json!(true),
    )
    .await;
    let after = js(&alice, HISTORY_ROWS, vec![]).await;
    assert_eq!(
        after, rows,
        "a superseded answer changed the filtered history"
    );

    // A first page that comes back empty with a cursor (the server reads about
    // a year of weeks a request) is followed by the page itself: the rows show
    // without a click, and no "nothing yet" note.
    js(&alice, SHORT_FIRST_HISTORY_PAGE, vec![]).await;
    select(&alice, "#hist-type", "").await;
    let rows = wait_for(
        &alice,
        HISTORY_ROWS,
        "history after an empty first page",
        |rows| !rows.as_array().unwrap().is_empty(),
    )
    .await;
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .any(|id| id.as_str().is_some_and(|id| id.starts_with("dep_"))),
        "{rows}"
    );
    assert_eq!(
        js(&alice, "return window.okpayTest.emptyServed;", vec![]).await,
        json!(true),
        "the empty first page was not served"
    );
    assert_eq!(
        js(
            &alice,
            "return document.getElementById('history-empty').classList.contains('hidden');",
            vec![]
        )
        .await,
        json!(true),
        "the empty note shows beside the rows"
    );

    // The operator's actions are in the audit trail, with their name.
    let trail: Value = app
        .get("/v1/admin/audit", ADMIN)
        .await
        .json()
        .await
        .unwrap();
    let mine: Vec<&str> = trail["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["operator"] == "olivia")
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        mine,
        ["account.reset_totp", "kyc.approve", "kyc.document_viewed"],
        "{trail}"
    );

    for c in [alice, bob, ops] {
        c.close().await.unwrap();
    }
}

/// Swagger UI at `/docs/` renders in a real browser: its scripts load (nothing
/// from the network, nothing the page's policy blocks), it fetches the server's
/// `/openapi.json`, and it lists exactly the operations that document declares.
#[tokio::test]
async fn the_api_docs_render_in_a_real_browser_and_list_every_operation() {
    ensure_browser();
    let app = TestApp::spawn().await;
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut expected: Vec<String> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            expected.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    expected.sort();
    assert!(expected.len() > 50, "{expected:?}");
    let driver = Driver::start().await;
    let profiles = tempfile::tempdir().unwrap();
    let c = driver.browser(&profiles.path().join("docs")).await;
    c.goto(&app.url("/docs/")).await.unwrap();
    wait_text(
        &c,
        ".swagger-ui .info .title",
        "the document's title",
        |t| t.contains(doc["info"]["title"].as_str().unwrap()),
    )
    .await;
    // Operations render tag by tag; wait until they are all there.
    let listed = |c: Client| async move {
        let v = js(
            &c,
            "return Array.from(document.querySelectorAll('.swagger-ui .opblock')).map(o =>                o.querySelector('.opblock-summary-method').textContent.trim() + ' ' +                o.querySelector('.opblock-summary-path').getAttribute('data-path'));",
            vec![],
        )
        .await;
        let mut ops: Vec<String> = serde_json::from_value(v).unwrap();
        ops.sort();
        ops
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut ops = listed(c.clone()).await;
    while ops != expected && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        ops = listed(c.clone()).await;
    }
    assert_eq!(
        ops, expected,
        "Swagger UI lists what /openapi.json declares"
    );
    shot(&c, "docs").await;
    c.close().await.unwrap();
}

/// Both apps and their assets come from the binary, with a content security
/// policy that runs no inline script; the QR drawing is bounded.
#[tokio::test]
async fn the_apps_are_served_by_the_server_itself() {
    let app = TestApp::spawn().await;
    for (path, marker) in [("/", "wallet.js"), ("/console", "console.js")] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("default-src 'self'") && !csp.contains("script-src 'unsafe-inline'"));
        assert!(r.text().await.unwrap().contains(marker));
    }
    for asset in [
        "app.css",
        "common.js",
        "strings.js",
        "wallet.js",
        "console.js",
    ] {
        let r = app
            .client
            .get(app.url(&format!("/assets/{asset}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{asset}");
    }
    let r = app
        .client
        .get(app.url("/assets/../Cargo.toml"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = app
        .client
        .post(app.url("/web/qr"))
        .json(&json!({"text": "otpauth://totp/OKPay:a?secret=JBSWY3DPEHPK3PXP"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("<svg"));
    let r = app
        .client
        .post(app.url("/web/qr"))
        .json(&json!({"text": "x".repeat(513)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

/// A small real PNG (an "ID card": a blue band over grey, 160×100), made by hand:
/// stored (uncompressed) deflate blocks, so no image crate is needed.
fn id_card_png() -> Vec<u8> {
    let (w, h) = (160u32, 100u32);
    let mut raw = Vec::new();
    for y in 0..h {
        raw.push(0); // filter: none
        for x in 0..w {
            let px: [u8; 3] = if y < 24 {
                [20, 90, 200]
            } else if (12..52).contains(&x) && (36..88).contains(&y) {
                [150, 150, 160]
            } else if x > 60 && y % 12 < 3 {
                [80, 80, 80]
            } else {
                [235, 235, 230]
            };
            raw.extend_from_slice(&px);
        }
    }
    let mut z = vec![0x78, 0x01];
    for (i, chunk) in raw.chunks(65_535).enumerate() {
        let last = (i + 1) * 65_535 >= raw.len();
        z.push(u8::from(last));
        let n = chunk.len() as u16;
        z.extend_from_slice(&n.to_le_bytes());
        z.extend_from_slice(&(!n).to_le_bytes());
        z.extend_from_slice(chunk);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in &raw {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut png = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    for (kind, data) in [(b"IHDR", ihdr), (b"IDAT", z), (b"IEND", Vec::new())] {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(&data);
        png.extend_from_slice(&body);
        png.extend_from_slice(&crc32(&body).to_be_bytes());
    }
    png
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
