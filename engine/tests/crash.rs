//! Crash tests: the engine under concurrent transfers is killed with SIGKILL at
//! random moments, on the embedded store and on Redis, and must never lose or repeat
//! anything it acknowledged; Redis itself is killed and restarted under load; and
//! every account rebuilt from a real backend equals the live actor's state.
//!
//! # Killing the engine (one child process per run)
//!
//! A crash of the engine's process can only be tested from outside it, so the
//! parent test re-executes this very test binary as a child that runs only the
//! `crash_child` test (which does nothing unless `OKPAY_CRASH_CHILD` is set). Each
//! child opens the store, verifies everything earlier children attempted (see
//! `support::crash_workload::verify`), prints `VERIFIED ok`, then `READY`, and sends
//! random transfers from many tasks, printing `ATTEMPT <key> <from> <to> <cents>`
//! before each request and `ACK <key> <op> <at>` after the engine answered. The
//! parent kills it with SIGKILL a random moment after `READY` (every fifth run at a
//! random moment after start, so crashes also land in recovery and verification),
//! appends its protocol lines to the history file the next child reads, and starts
//! the next child; a last child only verifies. Lines written to a pipe before the
//! kill stay readable after it, so the parent's history is exactly what each child
//! attempted and what it was told. Only one process opens the redb file at a time:
//! the parent never opens it, and the kernel releases the child's lock on its death.
//!
//! On Redis the server outlives the children (it is a separate process), and every
//! fourth run also kills the server with SIGKILL and restarts it from its AOF, as a
//! whole machine going down would.
//!
//! What a SIGKILL can't show: data the store handed to the OS but never fsync'd
//! survives a killed process (the page cache belongs to the kernel), so these tests
//! catch acknowledgements given before a write, not a missing fsync; only pulling
//! the power would. (They do catch redb commits made with `Durability::None`, which
//! redb keeps out of the file until a durable commit.)
//!
//! Set `OKPAY_CRASH_SEED` to replay the kill timings of a failed run (the thread
//! schedule is not replayable, so a failure may need a few tries).

#[allow(dead_code)] // the Redis harness's pause/resume are for other test binaries
mod support;

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use okpay_engine::store::embedded::EmbeddedStore;
use okpay_engine::store::redis::RedisStore;
use okpay_engine::store::redis_config::RedisOptions;
use okpay_engine::store::Store;
use okpay_engine::{Engine, EngineError, Outcome};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::crash_workload::{self as workload, Ack, Attempt, History};
use support::redis_server::RedisServer;

/// Set (to anything) in a child's environment: `crash_child` runs only then.
const CHILD_ENV: &str = "OKPAY_CRASH_CHILD";
/// `embedded:<dir>` or `redis:<url>`.
const STORE_ENV: &str = "OKPAY_CRASH_STORE";
/// The run number, which prefixes the child's idempotency keys so they are fresh.
const RUN_ENV: &str = "OKPAY_CRASH_RUN";
/// The file holding every earlier child's `ATTEMPT` and `ACK` lines.
const HISTORY_ENV: &str = "OKPAY_CRASH_HISTORY";
/// Set in the last child: verify, then exit without load.
const VERIFY_ONLY_ENV: &str = "OKPAY_CRASH_VERIFY_ONLY";

/// Crashes under load per campaign (after `READY`); early kills come on top.
const LOAD_KILLS: usize = 30;
/// The kill under load lands this many milliseconds after `READY`.
const KILL_AFTER_READY_MS: std::ops::Range<u64> = 50..800;
/// Every this many runs, the kill lands at a random moment after start instead of
/// after `READY`: in start-up, recovery, verification or load.
const ANYWHERE_KILL_EVERY: usize = 5;
/// Every this many runs on Redis, the server is killed and restarted too.
const REDIS_KILL_EVERY: usize = 4;
/// Concurrent clients in a child (and in the in-process Redis test).
const WORKERS: usize = 16;
/// A child that is never killed stops its load after this long and says so, so a
/// broken parent can't leave a process running forever.
const CHILD_MAX_LOAD: Duration = Duration::from_secs(60);
/// How long a child may take to verify its predecessors and become `READY`.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

// ---- the child ------------------------------------------------------------------

/// One protocol line on stdout, flushed at once: a line not yet written when the
/// SIGKILL lands is an attempt the parent never hears of, so `ATTEMPT` must be out
/// before the request is sent.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // unwrap: if the parent's pipe is gone nobody is listening; dying is right.
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

/// The child's entry point; an ordinary (empty) test unless started by a campaign.
#[test]
fn crash_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"));
    let store = var(STORE_ENV);
    let run: usize = var(RUN_ENV).parse().expect("run number");
    let history = std::fs::read_to_string(var(HISTORY_ENV)).expect("read history");
    let verify_only = std::env::var_os(VERIFY_ONLY_ENV).is_some();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // libtest has printed `test crash_child ... ` without a newline; end that line so
    // the first protocol line starts a line of its own.
    say("");
    rt.block_on(child_main(&store, run, &history, verify_only));
}

async fn child_main(store_spec: &str, run: usize, history: &str, verify_only: bool) {
    let history = match History::parse(history) {
        Ok(history) => history,
        Err(reason) => return say(&format!("VERIFY FAILED history: {reason}")),
    };
    let store: Arc<dyn Store> = match store_spec.split_once(':') {
        Some(("embedded", dir)) => {
            Arc::new(EmbeddedStore::open(Path::new(dir)).expect("open embedded store"))
        }
        Some(("redis", url)) => Arc::new(RedisStore::connect(url).await.expect("connect redis")),
        _ => panic!("bad {STORE_ENV}: {store_spec}"),
    };
    let engine = Engine::start(workload::engine_config(), store.clone())
        .await
        .expect("the engine starts");
    match workload::verify(&engine, &*store, &history).await {
        Ok(v) => say(&format!(
            "VERIFIED ok attempts={} acked={} in_flight_at_recovery={}",
            v.attempts, v.acked, v.in_flight_at_recovery
        )),
        Err(reason) => {
            // One line, so the parent reports the whole reason.
            say(&format!("VERIFY FAILED {}", reason.replace('\n', " | ")));
            return;
        }
    }
    if verify_only {
        return;
    }
    say("READY");
    for w in 0..WORKERS {
        tokio::spawn(child_worker(engine.clone(), run, w));
    }
    tokio::time::sleep(CHILD_MAX_LOAD).await;
    say("LOAD TIMEOUT");
}

/// Sends transfers one after another with fresh keys; a retryable error is retried
/// with the same key (as a client would), so each attempt ends with an outcome
/// unless the kill comes first.
async fn child_worker(engine: Engine, run: usize, worker: usize) {
    let mut rng = StdRng::from_entropy();
    for n in 0u64.. {
        let attempt = Attempt::random(format!("r{run}-w{worker}-{n}"), &mut rng);
        say(&attempt.line());
        loop {
            match attempt.send(&engine).await {
                Ok(Outcome::Transfer(view)) => {
                    say(&Ack::of(&view).line(&attempt.key));
                    break;
                }
                Ok(other) => {
                    say(&format!("WRONG {} {other:?}", attempt.key));
                    break;
                }
                Err(EngineError::Rejected(r)) => {
                    say(&format!("WRONG {} refused {}", attempt.key, r.code()));
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }
}

// ---- the parent -----------------------------------------------------------------

/// A running child with its stdout read line by line on a thread, so the child never
/// blocks on a full pipe and the parent can wait for `READY` with a timeout.
struct ChildRun {
    child: Child,
    lines: mpsc::Receiver<String>,
    reader: std::thread::JoinHandle<()>,
    stderr_path: PathBuf,
    seen: Vec<String>,
}

impl ChildRun {
    fn spawn(work: &Path, store_spec: &str, run: usize, verify_only: bool) -> ChildRun {
        let stderr_path = work.join(format!("child-{run}.stderr"));
        let mut cmd = Command::new(std::env::current_exe().expect("current exe"));
        cmd.args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1")
            .env(STORE_ENV, store_spec)
            .env(RUN_ENV, run.to_string())
            .env(HISTORY_ENV, work.join("history.txt"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr_path).expect("child stderr file"));
        if verify_only {
            cmd.env(VERIFY_ONLY_ENV, "1");
        }
        let mut child = cmd.spawn().expect("spawn child");
        // unwrap: stdout was piped above.
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        ChildRun {
            child,
            lines,
            reader,
            stderr_path,
            seen: Vec::new(),
        }
    }

    /// Collects lines until one starts with `prefix`; `false` on timeout or when the
    /// child closed its stdout first.
    fn wait_for(&mut self, prefix: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.starts_with(prefix);
                    self.seen.push(line);
                    if found {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
    }

    fn exited(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_some()
    }

    /// What went wrong, for a panic message: the child's last lines and its stderr.
    fn diagnose(&self, what: &str) -> String {
        if let Some(failed) = self.seen.iter().find(|l| l.starts_with("VERIFY FAILED")) {
            return failed.clone();
        }
        let tail: Vec<&String> = self.seen.iter().rev().take(5).collect();
        let stderr = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        format!("{what}; last lines {tail:?}; stderr:\n{stderr}")
    }

    /// SIGKILLs the child (a no-op if it is already gone) and returns every line it
    /// wrote, including those still in the pipe.
    fn kill9(mut self) -> Vec<String> {
        // `Child::kill` sends SIGKILL on Unix.
        let _ = self.child.kill();
        self.child.wait().expect("reap child");
        self.finish()
    }

    /// Waits for the child to exit by itself within `timeout`.
    fn wait_exit(mut self, timeout: Duration) -> (bool, Vec<String>) {
        let deadline = Instant::now() + timeout;
        let ok = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status.success();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                self.child.wait().expect("reap child");
                break false;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stderr = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let mut lines = self.finish();
        if !ok {
            lines.push(format!("CHILD EXIT FAILED stderr: {stderr}"));
        }
        (ok, lines)
    }

    fn finish(mut self) -> Vec<String> {
        // unwrap: the reader thread only reads and sends.
        self.reader.join().unwrap();
        self.seen.extend(self.lines.try_iter());
        self.seen
    }
}

/// Where the campaign's store lives. The parent never opens it.
enum Backend {
    Embedded(tempfile::TempDir),
    Redis(RedisServer),
}

impl Backend {
    fn spec(&self) -> String {
        match self {
            Backend::Embedded(dir) => format!("embedded:{}", dir.path().display()),
            Backend::Redis(server) => format!("redis:{}", server.url()),
        }
    }
}

/// Counts for the report.
#[derive(Debug, Default)]
struct Campaign {
    runs: usize,
    load_kills: usize,
    early_kills: usize,
    redis_restarts: usize,
    attempts: usize,
    acks: usize,
    /// Attempts without an `ACK` when their child died: settled by later verification.
    unacked: usize,
    in_flight_at_recovery: usize,
}

/// Fails on any line that reports a wrong answer or a failed verification; sums
/// what the verification found.
fn check_lines(lines: &[String], run: usize, campaign: &mut Campaign) {
    for line in lines {
        let bad = [
            "VERIFY FAILED",
            "WRONG",
            "LOAD TIMEOUT",
            "CHILD EXIT FAILED",
        ];
        if bad.iter().any(|b| line.starts_with(b)) {
            panic!("run {run}: {line}");
        }
        if let Some(rest) = line.strip_prefix("VERIFIED ok ") {
            let found = rest
                .split_whitespace()
                .find_map(|w| w.strip_prefix("in_flight_at_recovery="))
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0);
            campaign.in_flight_at_recovery += found;
        }
    }
    let ready = lines.iter().position(|l| l == "READY");
    let verified = lines.iter().position(|l| l.starts_with("VERIFIED ok"));
    if let Some(ready) = ready {
        assert!(
            verified.is_some_and(|v| v < ready),
            "run {run}: READY without VERIFIED ok"
        );
    }
}

/// Appends a run's protocol lines to the history the next child verifies.
fn append_history(work: &Path, lines: &[String], campaign: &mut Campaign) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(work.join("history.txt"))
        .expect("open history");
    let (mut attempts, mut acks) = (0, 0);
    for line in lines {
        if line.starts_with("ATTEMPT ") {
            attempts += 1;
        } else if line.starts_with("ACK ") {
            acks += 1;
        } else {
            continue;
        }
        writeln!(file, "{line}").expect("write history");
    }
    campaign.attempts += attempts;
    campaign.acks += acks;
    campaign.unacked += attempts - acks;
}

fn campaign_seed() -> u64 {
    std::env::var("OKPAY_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random)
}

/// Runs children against `backend` until [`LOAD_KILLS`] of them died under load,
/// then a last child that only verifies.
fn crash_campaign(mut backend: Backend) -> Campaign {
    let started = Instant::now();
    let seed = campaign_seed();
    eprintln!(
        "crash campaign on {}: OKPAY_CRASH_SEED={seed}",
        backend.spec()
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let work = tempfile::tempdir().expect("work dir");
    File::create(work.path().join("history.txt")).expect("create history");
    let mut campaign = Campaign::default();
    // How long the last child took from spawn to `READY`.
    let mut ready_ms = 500;
    while campaign.load_kills < LOAD_KILLS {
        campaign.runs += 1;
        let run = campaign.runs;
        let spawned = Instant::now();
        let mut child = ChildRun::spawn(work.path(), &backend.spec(), run, false);
        if run % ANYWHERE_KILL_EVERY == 0 {
            // Up to a little after the last child became ready, so most of these
            // kills land in start-up, recovery or verification.
            let upto = ready_ms + 100;
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..=upto)));
        } else {
            if !child.wait_for("READY", READY_TIMEOUT) {
                let why = child.diagnose("no READY");
                child.kill9();
                panic!("run {run}: {why}");
            }
            ready_ms = spawned.elapsed().as_millis() as u64;
            std::thread::sleep(Duration::from_millis(rng.gen_range(KILL_AFTER_READY_MS)));
        }
        if child.exited() {
            let why = child.diagnose("the child exited before it was killed");
            panic!("run {run}: {why}");
        }
        let lines = child.kill9();
        check_lines(&lines, run, &mut campaign);
        if lines.iter().any(|l| l == "READY") {
            campaign.load_kills += 1;
        } else {
            campaign.early_kills += 1;
        }
        append_history(work.path(), &lines, &mut campaign);
        if let Backend::Redis(server) = &mut backend {
            if run % REDIS_KILL_EVERY == 0 {
                // Replaying the AOF must bring back everything acknowledged.
                server.restart();
                campaign.redis_restarts += 1;
            }
        }
    }
    let last = ChildRun::spawn(work.path(), &backend.spec(), campaign.runs + 1, true);
    let (exited_ok, lines) = last.wait_exit(READY_TIMEOUT);
    check_lines(&lines, campaign.runs + 1, &mut campaign);
    assert!(
        exited_ok && lines.iter().any(|l| l.starts_with("VERIFIED ok")),
        "final verification did not pass: {lines:?}"
    );
    // A campaign whose children never got a transfer through proves nothing.
    assert!(
        campaign.acks >= 10 * LOAD_KILLS,
        "too little load: {campaign:?}"
    );
    eprintln!(
        "crash campaign on {} passed in {:?}: {campaign:?}",
        backend.spec(),
        started.elapsed()
    );
    campaign
}

#[test]
fn embedded_engine_killed_under_load_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().expect("store dir");
    crash_campaign(Backend::Embedded(dir));
}

#[test]
fn redis_engine_killed_under_load_loses_and_repeats_nothing() {
    crash_campaign(Backend::Redis(RedisServer::start()));
}

// ---- Redis killed under an in-process engine ---------------------------------------

/// Before the kill, while Redis is down, after the restart.
const UP: u8 = 0;
const DOWN: u8 = 1;
const RESTARTED: u8 = 2;

/// What the clients of the in-process Redis test saw.
#[derive(Default)]
struct ClientLog {
    attempts: Vec<Attempt>,
    acks: Vec<(String, Ack)>,
    /// Answers that a storage outage must never produce: refusals, odd outcomes.
    wrong: Vec<String>,
    /// Retryable errors by phase.
    retryable: [usize; 3],
    /// Acknowledgements by phase.
    acked: [usize; 3],
}

/// Sends transfers with fresh keys until `stop`; every answer is logged, nothing is
/// retried here (the test retries everything afterwards, with the same keys).
async fn logging_client(
    engine: Engine,
    worker: usize,
    phase: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<ClientLog>>,
) {
    let mut rng = StdRng::from_entropy();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let attempt = Attempt::random(format!("w{worker}-{n}"), &mut rng);
        log.lock().attempts.push(attempt.clone());
        let answer = attempt.send(&engine).await;
        let now = usize::from(phase.load(Ordering::Relaxed));
        // The lock is released before any await (it is a blocking mutex).
        let retryable = {
            let mut log = log.lock();
            match answer {
                Ok(Outcome::Transfer(view)) => {
                    log.acks.push((attempt.key.clone(), Ack::of(&view)));
                    log.acked[now] += 1;
                    false
                }
                Ok(other) => {
                    log.wrong.push(format!("{}: {other:?}", attempt.key));
                    false
                }
                Err(EngineError::Rejected(r)) => {
                    log.wrong
                        .push(format!("{}: refused {}", attempt.key, r.code()));
                    false
                }
                Err(_) => {
                    log.retryable[now] += 1;
                    true
                }
            }
        };
        if retryable {
            // Back off a little so an outage doesn't mint thousands of keys.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_under_load_loses_no_acknowledged_transfer() {
    let mut server = RedisServer::start();
    // Short timeouts keep the outage cheap; correctness must not depend on them.
    let options = RedisOptions {
        connect_timeout: Duration::from_millis(300),
        response_timeout: Duration::from_secs(1),
        ..RedisOptions::default()
    };
    let store = Arc::new(
        RedisStore::connect_with(&server.url(), options)
            .await
            .expect("connect"),
    );
    let engine = Engine::start(workload::engine_config(), store.clone())
        .await
        .expect("the engine starts");
    workload::open_and_fund(&engine).await.expect("fund");

    let seed = campaign_seed();
    eprintln!("redis kill test: OKPAY_CRASH_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let phase = Arc::new(AtomicU8::new(UP));
    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(ClientLog::default()));
    let clients: Vec<_> = (0..WORKERS)
        .map(|w| {
            tokio::spawn(logging_client(
                engine.clone(),
                w,
                phase.clone(),
                stop.clone(),
                log.clone(),
            ))
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(rng.gen_range(300..900))).await;
    // The phase changes first, so no error caused by the kill is counted as "up".
    phase.store(DOWN, Ordering::Relaxed);
    tokio::task::block_in_place(|| server.kill9());
    tokio::time::sleep(Duration::from_millis(rng.gen_range(300..900))).await;
    tokio::task::block_in_place(|| server.restart());
    phase.store(RESTARTED, Ordering::Relaxed);

    // The engine must come back by itself: new transfers succeed without a restart.
    let deadline = Instant::now() + Duration::from_secs(30);
    while log.lock().acked[usize::from(RESTARTED)] < 200 {
        assert!(
            Instant::now() < deadline,
            "the engine did not recover after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client task");
    }

    let log = std::mem::take(&mut *log.lock());
    assert!(log.wrong.is_empty(), "wrong answers: {:?}", log.wrong);
    assert!(
        log.acked[usize::from(UP)] > 0 && log.retryable[usize::from(DOWN)] > 0,
        "the outage was not observed: acked {:?}, retryable {:?}",
        log.acked,
        log.retryable
    );
    // Everything attempted, retried with its key until it has an outcome: an
    // acknowledged transfer must come back as itself; each applies exactly once.
    let history = History {
        attempts: log.attempts,
        acks: log.acks.into_iter().collect(),
    };
    let verified = workload::verify(&engine, &*store, &history)
        .await
        .unwrap_or_else(|e| panic!("after the Redis crash: {e}"));
    eprintln!(
        "redis kill test: {verified:?}; acked by phase {:?}, retryable errors by phase {:?}",
        log.acked, log.retryable
    );
}

// ---- recovery equivalence on the real backends --------------------------------------

/// Drives `transfers` random transfers through an engine on `store` (64 at a time),
/// then checks that every account rebuilt from the store equals the live state, both
/// before and after passivating every actor (which writes snapshots and reactivates
/// from them).
async fn rebuild_equals_live_after_load(store: Arc<dyn Store>, transfers: usize) {
    use futures::StreamExt;
    let engine = Engine::start(workload::engine_config(), store.clone())
        .await
        .expect("the engine starts");
    workload::open_and_fund(&engine).await.expect("fund");
    let mut rng = StdRng::from_entropy();
    let attempts: Vec<Attempt> = (0..transfers)
        .map(|i| Attempt::random(format!("eq-{i}"), &mut rng))
        .collect();
    let settled: Vec<_> = futures::stream::iter(&attempts)
        .map(|a| workload::settle(&engine, a))
        .buffer_unordered(64)
        .collect()
        .await;
    for s in settled {
        s.expect("transfer");
    }
    workload::check_balances(&engine, &attempts)
        .await
        .expect("balances");
    workload::check_rebuild_equals_live(&engine, &*store, 1..=workload::ACCOUNTS)
        .await
        .expect("rebuilt under load");
    assert!(
        engine.passivate_all(Duration::from_secs(20)).await,
        "actors did not passivate"
    );
    workload::check_rebuild_equals_live(&engine, &*store, 1..=workload::ACCOUNTS)
        .await
        .expect("rebuilt after passivation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_rebuild_equals_live_state() {
    let dir = tempfile::tempdir().expect("store dir");
    let store = EmbeddedStore::open(dir.path()).expect("open");
    rebuild_equals_live_after_load(Arc::new(store), 1500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_rebuild_equals_live_state() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url()).await.expect("connect");
    rebuild_equals_live_after_load(Arc::new(store), 1500).await;
}
