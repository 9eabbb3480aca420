//! Crash test of the embedded store's history rows, 30 runs: a writer calls
//! `put_history` in a loop (rows of several accounts per call, later versions
//! of earlier rows among them) with bounds so small that rows move from
//! `history_recent` to `history` every few calls, and is SIGKILLed at a varying
//! moment. After each kill the store is reopened and every account's pages must
//! read the newest acknowledged version of each of its rows (or the version of
//! the one call in flight at the kill, which may have committed), nothing else.
//!
//! The writer runs in a child process (this test binary again, running only
//! `child_writer`), so the kill is a real one: no destructor, a commit possibly
//! cut in the middle. A process kill leaves the page cache intact, so this
//! checks that the blobs, the moves and the deletions commit together and that
//! reopening replays the kept blobs right, not the `fsync` itself (redb's).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use okpay_engine::codec::ShardId;
use okpay_engine::ids::AccountId;
use okpay_engine::store::embedded::{EmbeddedStore, RowBounds};
use okpay_engine::store::{HistoryRow, Store};

const RUNS: u64 = 30;
const ACCOUNTS: u64 = 16;
/// Keys per account: small, so that later calls write later versions of rows.
const KEYS: u64 = 6;
const ROWS_PER_CALL: u64 = 4;
/// The child writer stops by itself after this many calls (every loop bounded).
const MAX_CALLS: u64 = 5_000;
/// Tells a child process where to write (and that it is the child).
const CHILD_DIR: &str = "OKPAY_ROWS_CRASH_CHILD_DIR";
/// The child's first call number.
const CHILD_FIRST: &str = "OKPAY_ROWS_CRASH_FIRST_CALL";

/// Small bounds: rows move to `history` every dozen calls or so.
fn bounds() -> RowBounds {
    RowBounds {
        rows: 48,
        bytes: 1 << 20,
    }
}

/// The rows of call `n`: `ROWS_PER_CALL` rows of accounts and keys picked by a
/// hash of `n` (no row named twice in one call), so that calls share accounts
/// in shifting patterns and later calls write later versions of rows.
fn rows_of_call(n: u64) -> Vec<(u64, String, String)> {
    let mut rows: Vec<(u64, String, String)> = Vec::new();
    let mut x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for r in 0.. {
        if rows.len() as u64 == ROWS_PER_CALL {
            break;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let account = 1 + x % ACCOUNTS;
        let key = format!("{:016x}op", (x >> 32) % KEYS);
        if rows.iter().all(|(a, k, _)| (*a, k) != (account, &key)) {
            rows.push((account, key, format!("call {n} row {r}")));
        }
    }
    rows
}

/// The child side: does nothing unless started by the test below.
#[test]
fn child_writer() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let first: u64 = std::env::var(CHILD_FIRST)
        .expect("first call")
        .parse()
        .expect("a number");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store =
            EmbeddedStore::open_with(std::path::Path::new(&dir), bounds()).expect("child open");
        for n in first..first + MAX_CALLS {
            let rows = rows_of_call(n)
                .into_iter()
                .map(|(account, key, payload)| {
                    let row = HistoryRow {
                        key,
                        payload: payload.into_bytes(),
                        replaces: true,
                    };
                    (ShardId(0), AccountId(account), row)
                })
                .collect();
            if store.put_history(rows, Vec::new()).await.is_err() {
                return;
            }
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "ack {n}");
            let _ = out.flush();
        }
    });
}

/// Every row of `account`, newest first, read in pages of 7 as the API does.
async fn all_rows(store: &EmbeddedStore, account: u64) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let page = store
            .history(ShardId(0), AccountId(account), before.as_deref(), 7)
            .await
            .expect("history");
        out.extend(page.iter().map(|r| {
            let payload = String::from_utf8(r.payload.clone()).expect("utf-8");
            (r.key.clone(), payload)
        }));
        match page.last() {
            Some(last) if page.len() == 7 => before = Some(last.key.clone()),
            _ => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_history_rows_survive_sigkill_of_the_writer() {
    if std::env::var(CHILD_DIR).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    // The newest version of each (account, key) the store holds for sure.
    let mut model: BTreeMap<(u64, String), String> = BTreeMap::new();
    let mut first = 0;
    for run in 0..RUNS {
        let mut child = Command::new(&exe)
            .args(["--exact", "child_writer", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_FIRST, first.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the writer");
        let stdout = child.stdout.take().expect("piped stdout");
        // Kill after a varying number of acknowledged calls.
        let kill_after = 10 + (run * 37) % 200;
        let mut lines = BufReader::new(stdout).lines();
        let mut last_acked: Option<u64> = None;
        let mut ack = |line: &str| {
            // The harness may print its own words before the first line.
            let ack = line.find("ack ").map(|at| &line[at + 4..]);
            if let Some(n) = ack.and_then(|n| n.trim().parse().ok()) {
                last_acked = Some(n);
            }
        };
        let mut seen = 0;
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            ack(&line);
            seen += 1;
            if seen >= kill_after {
                break;
            }
        }
        child.kill().expect("SIGKILL the writer");
        // Lines already printed were acknowledged before the kill: count them too.
        for line in lines.map_while(Result::ok) {
            ack(&line);
        }
        child.wait().expect("reap the writer");

        // Calls up to the last acknowledged one are in the model; the next
        // one may have committed or not.
        let in_flight = last_acked.map_or(first, |n| n + 1);
        for n in first..in_flight {
            for (account, key, payload) in rows_of_call(n) {
                model.insert((account, key), payload);
            }
        }
        let maybe: BTreeMap<(u64, String), String> = rows_of_call(in_flight)
            .into_iter()
            .map(|(account, key, payload)| ((account, key), payload))
            .collect();

        let store = EmbeddedStore::open_with(dir.path(), bounds()).expect("reopen after SIGKILL");
        let mut committed: Option<bool> = None;
        for account in 1..=ACCOUNTS {
            let got = all_rows(&store, account).await;
            let want: Vec<(String, String)> = model
                .range((account, String::new())..(account + 1, String::new()))
                .rev()
                .map(|((_, k), v)| (k.clone(), v.clone()))
                .collect();
            let mut with_in_flight: BTreeMap<(u64, String), String> = model
                .range((account, String::new())..(account + 1, String::new()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (k, v) in maybe.iter().filter(|((a, _), _)| *a == account) {
                with_in_flight.insert(k.clone(), v.clone());
            }
            let want_in_flight: Vec<(String, String)> = with_in_flight
                .into_iter()
                .rev()
                .map(|((_, k), v)| (k, v))
                .collect();
            // The call in flight committed whole or not at all, for every account.
            let this = if got == want && got == want_in_flight {
                None
            } else if got == want {
                Some(false)
            } else if got == want_in_flight {
                Some(true)
            } else {
                panic!(
                    "run {run}: account {account} after SIGKILL (last acked call \
                     {last_acked:?}):\n got {got:?}\nwant {want:?}\n  or {want_in_flight:?}"
                );
            };
            if let (Some(a), Some(b)) = (committed, this) {
                assert_eq!(a, b, "run {run}: call {in_flight} committed in part");
            }
            committed = committed.or(this);
        }
        if committed == Some(true) {
            model.extend(maybe);
        }
        drop(store);
        first = in_flight + 1;
    }
}
