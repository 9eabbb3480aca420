//! Restart after `kill -9` with many accounts in the store (`cargo bench -p
//! benches --bench restart`): how long a fresh process takes to serve again, and
//! what the accounts cost in memory. Not a criterion benchmark: it measures one
//! restart per store and prints one stable line each:
//!
//! `restart: store=embedded accounts=1000000 settle_s=… tail_deposits=… ready_ms=… engine_start_ms=… first_read_ms=… first_write_ms=… fill_s=… rss_fill_mib=… resident_bytes_per_account=… rss_ready_mib=…`
//!
//! The bench runs itself as a child process twice per store. The *filler* opens
//! `RESTART_ACCOUNTS` accounts (default 1,000,000) through the engine, as fast as
//! group commit takes them, and reports once every open is acknowledged (so
//! durable); the parent then kills it with SIGKILL, without any shutdown, leaving
//! whatever the filler had not checkpointed to recovery. The *server* starts an
//! engine on the same store, reads one of the filled accounts and deposits into
//! it; `ready_ms` runs from the parent spawning it to that deposit's
//! acknowledgement, process start-up included. `resident_bytes_per_account` is the
//! filler's RSS growth over its accounts, all of them still resident and idle.
//! `RESTART_SETTLE_S` keeps the filler alive and quiet that many seconds before
//! the kill (so its shards get checkpointed; default 0: the whole fill is the
//! log tail the restart replays). `RESTART_TAIL_DEPOSITS` then deposits into
//! that many distinct accounts before the kill: a tail over accounts with older
//! history, each read from its checkpoint by recovery. `RESTART_STORES` picks the stores (default `embedded,redis`; Redis is a private
//! `redis-server` with `appendfsync always`).

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use benches::redis_server::RedisServer;
use benches::{amount, key, load_policy, rss_mib};
use futures::StreamExt;
use okpay_engine::domain::command::{DepositMethod, Profile};
use okpay_engine::ids::AccountId;
use okpay_engine::store::embedded::EmbeddedStore;
use okpay_engine::store::redis::RedisStore;
use okpay_engine::store::Store;
use okpay_engine::{Engine, EngineConfig};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Opens in flight at once while filling.
const FILL_CONCURRENCY: usize = 4096;
/// The longest a fill may take before the bench gives up on it.
const FILL_TIMEOUT: Duration = Duration::from_secs(1200);
/// The longest a restart may take before the bench gives up on it.
const READY_TIMEOUT: Duration = Duration::from_secs(300);

/// The `i`-th account of the run: a fixed, well-spread, non-zero id, so the
/// server process knows the filler's ids without being told them.
fn account(i: u64) -> AccountId {
    // splitmix64
    let mut z = i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    AccountId((z ^ (z >> 31)).max(1))
}

/// `embedded:<dir>` or `redis:<url>`.
async fn open_store(spec: &str) -> Arc<dyn Store> {
    match spec.split_once(':') {
        Some(("embedded", dir)) => {
            Arc::new(EmbeddedStore::open(std::path::Path::new(dir)).expect("open the store"))
        }
        Some(("redis", url)) => Arc::new(RedisStore::connect(url).await.expect("connect")),
        _ => panic!("unknown store {spec}"),
    }
}

async fn start_engine(spec: &str) -> Engine {
    Engine::start(
        EngineConfig {
            policy: load_policy(),
            ..EngineConfig::default()
        },
        open_store(spec).await,
    )
    .await
    .expect("the engine starts")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// The filler: opens `n` accounts, says so, and waits to be killed.
fn fill(spec: &str, n: u64) {
    let rt = runtime();
    let engine = rt.block_on(start_engine(spec));
    let rss_before = rss_mib();
    let started = Instant::now();
    rt.block_on(async {
        let mut opened = 0u64;
        let mut opens = futures::stream::iter(0..n)
            .map(|i| {
                let engine = engine.clone();
                async move {
                    engine
                        .open_account_with_id(account(i), Profile::default())
                        .await
                        .expect("open")
                }
            })
            .buffer_unordered(FILL_CONCURRENCY);
        while opens.next().await.is_some() {
            opened += 1;
            if opened.is_multiple_of(200_000) {
                eprintln!(
                    "  {opened} opened in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
            }
        }
    });
    let rss = rss_mib();
    let fill_s = started.elapsed().as_secs_f64();
    // With `RESTART_SETTLE_S`, the filler goes quiet that long before it may be
    // killed, so its shards are checkpointed and the restart replays no tail.
    let settle = std::env::var("RESTART_SETTLE_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    std::thread::sleep(Duration::from_secs(settle));
    // With `RESTART_TAIL_DEPOSITS`, that many accounts then get a deposit each
    // (distinct accounts, after the settle): a log tail over accounts with older
    // history, which recovery must read from their checkpoints before replaying.
    let tail: u64 = std::env::var("RESTART_TAIL_DEPOSITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
        .min(n);
    rt.block_on(async {
        futures::stream::iter(0..tail)
            .map(|i| {
                let engine = engine.clone();
                async move {
                    engine
                        .deposit(
                            account(i),
                            key(format!("tail-{i}")),
                            amount("1.00"),
                            DepositMethod::BankCard,
                        )
                        .await
                        .expect("a tail deposit")
                }
            })
            .buffer_unordered(FILL_CONCURRENCY)
            .for_each(|_| async {})
            .await;
    });
    println!(
        "filled settle_s={settle} tail_deposits={tail} fill_s={fill_s:.1} rss_fill_mib={rss:.0} resident_bytes_per_account={:.0} resident={}",
        (rss - rss_before) * 1024.0 * 1024.0 / n as f64,
        engine.active_actors()
    );
    // Killed here by the parent, with everything acknowledged and nothing shut down.
    std::thread::sleep(FILL_TIMEOUT);
}

/// The restarted server: starts, serves one read and one write, reports, exits.
fn serve(spec: &str, n: u64) {
    let started = Instant::now();
    let rt = runtime();
    let engine = rt.block_on(start_engine(spec));
    let engine_start = started.elapsed();
    let id = account(n / 2);
    let view = rt
        .block_on(engine.view(id))
        .expect("a filled account reads");
    assert_eq!(view.id, id, "the account is there after the restart");
    let first_read = started.elapsed();
    rt.block_on(engine.deposit(
        id,
        key("restart-deposit".into()),
        amount("1.00"),
        DepositMethod::BankCard,
    ))
    .expect("a deposit after the restart");
    let first_write = started.elapsed();
    println!(
        "ready engine_start_ms={} first_read_ms={} first_write_ms={} rss_ready_mib={:.0} resident={}",
        engine_start.as_millis(),
        first_read.as_millis(),
        first_write.as_millis(),
        rss_mib(),
        engine.active_actors()
    );
    // No shutdown: what matters was measured.
    std::process::exit(0);
}

/// `key=value` pairs of a child's report line.
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or("?")
}

/// Spawns this bench as a child in `mode`.
fn spawn(mode: &str, spec: &str, n: u64) -> Child {
    Command::new(std::env::current_exe().expect("the bench's own path"))
        .args(["--restart-child", mode, spec, &n.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn a child")
}

/// The first stdout line of `child` starting with `prefix`, read on a thread so a
/// hung child is bounded by `timeout` (then killed).
fn wait_line(child: &mut Child, prefix: &'static str, timeout: Duration) -> String {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with(prefix) {
                let _ = tx.send(line);
                return;
            }
        }
    });
    match rx.recv_timeout(timeout) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            panic!("the child did not report `{prefix}` within {timeout:?}");
        }
    }
}

fn measure(store: &str, spec: &str, n: u64) {
    eprintln!("{store}: filling {n} accounts");
    let mut filler = spawn("fill", spec, n);
    let filled = wait_line(&mut filler, "filled", FILL_TIMEOUT);
    // SIGKILL: no checkpoint, no flush, no goodbye.
    filler.kill().expect("kill -9 the filler");
    let _ = filler.wait();
    eprintln!("{store}: killed after `{filled}`; restarting");
    let spawned = Instant::now();
    let mut server = spawn("serve", spec, n);
    let ready = wait_line(&mut server, "ready", READY_TIMEOUT);
    let ready_ms = spawned.elapsed().as_millis();
    let _ = server.wait();
    println!(
        "restart: store={store} accounts={n} settle_s={} tail_deposits={} ready_ms={ready_ms} engine_start_ms={} first_read_ms={} first_write_ms={} fill_s={} rss_fill_mib={} resident_bytes_per_account={} rss_ready_mib={}",
        field(&filled, "settle_s"),
        field(&filled, "tail_deposits"),
        field(&ready, "engine_start_ms"),
        field(&ready, "first_read_ms"),
        field(&ready, "first_write_ms"),
        field(&filled, "fill_s"),
        field(&filled, "rss_fill_mib"),
        field(&filled, "resident_bytes_per_account"),
        field(&ready, "rss_ready_mib"),
    );
}

fn main() {
    benches::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--restart-child") {
        let (mode, spec, n) = (&args[at + 1], &args[at + 2], &args[at + 3]);
        // unwrap: the parent passes a number.
        let n: u64 = n.parse().unwrap();
        match mode.as_str() {
            "fill" => fill(spec, n),
            _ => serve(spec, n),
        }
        return;
    }
    // `cargo test --benches` runs bench targets with `--bench` absent: skip there.
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    let n: u64 = std::env::var("RESTART_ACCOUNTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let stores = std::env::var("RESTART_STORES").unwrap_or_else(|_| "embedded,redis".into());
    for store in stores.split(',').map(str::trim) {
        match store {
            "embedded" => {
                let dir = tempfile::tempdir().expect("a temp dir");
                measure(store, &format!("embedded:{}", dir.path().display()), n);
            }
            "redis" => {
                let redis = RedisServer::start();
                measure(store, &format!("redis:{}", redis.url()), n);
            }
            other => eprintln!("unknown store {other} (embedded, redis)"),
        }
    }
}
