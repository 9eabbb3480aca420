//! Durable-path benchmarks (`cargo bench -p benches --bench durable`), each against a
//! real `redis-server` that the bench starts on 127.0.0.1 with `appendonly yes` and
//! `appendfsync always` and kills when done:
//!
//! - durable transfers per second through the engine on the Redis store (10,000
//!   funded accounts, random pairs, 4,096 concurrent callers), with the group-commit
//!   batch sizes;
//! - the same transfers done the way a team would without the engine — one Lua
//!   script per transfer via `EVALSHA` ([`benches::lua_baseline`]) — at the same
//!   concurrency over several multiplexed connections, and the ratio of the two;
//! - the same engine workload on the embedded store (redb, fsync'd, in a temp dir);
//! - the latency of the first request to a passivated account whose durable form is
//!   a snapshot followed by 100 journal records (p50/p99 from an HDR histogram).
//!
//! - the storage path of the sharded engine alone: transfer-shaped frames appended
//!   to the per-shard logs ([`okpay_engine::store::shard_log`]) on Redis and on
//!   disk, with the AOF bytes and Redis commands each transfer costs.
//!
//! Each group ends in one stable line to compare run to run: `durable: …` and
//! `shardlog: …` (`grep -E '^(durable|shardlog):'`). The `durable:` line's
//! `*_steady` figures count one checkpoint per shard every `checkpoint_every`
//! records instead of the checkpoints that fell in the measured phase.
//!
//! Criterion prints its own per-iteration estimates; the figures the design targets
//! (transfers/s, engine/baseline ratio, activation p99) are printed after each group
//! from the bench's own counters, so they do not depend on criterion's warm-up
//! choices. Every load loop is bounded in count, and every batch in time
//! ([`BATCH_TIME_LIMIT`]), so a stuck store fails the run instead of hanging it.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use benches::lua_baseline::{BaselineOutcome, LuaBank};
use benches::redis_server::RedisServer;
use benches::{amount, funded_accounts, key, load_policy};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use futures::StreamExt;
use okpay_engine::codec::{BatchFrame, LogRecord, RecordKind, ShardId, ShardLayout};
use okpay_engine::ids::AccountId;
use okpay_engine::store::embedded::EmbeddedStore;
use okpay_engine::store::redis::RedisStore;
use okpay_engine::store::shard_log::embedded::EmbeddedShardLog;
use okpay_engine::store::shard_log::redis::RedisShardLog;
use okpay_engine::store::shard_log::{ShardAppend, ShardLog};
use okpay_engine::store::Store;
use okpay_engine::RuntimeStats;
use okpay_engine::{Engine, EngineConfig, RuntimeConfig};
use rand::Rng;
use tokio::runtime::Runtime;

/// The allocator the `okpay` server uses (and its settings: [`benches::keep_freed_memory`]).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Funded accounts the transfers run between.
const ACCOUNTS: usize = 10_000;
/// Transfers in flight at once (callers waiting for their answer).
const CONCURRENCY: usize = 4096;
/// Transfers per criterion iteration: about a second of durable traffic.
const TRANSFERS_PER_ITERATION: u64 = 20_000;
/// Multiplexed connections the Lua baseline spreads its callers over.
const BASELINE_CONNECTIONS: usize = 8;
/// Each account's funds, in CNY (and the same amount in minor units for the baseline).
const FUNDS_CNY: i64 = 1_000_000;
/// Upper bound on one batch of operations; beyond it the store is considered stuck.
const BATCH_TIME_LIMIT: Duration = Duration::from_secs(120);

/// The driver's runtime: two workers, like the machine (and the memory bench).
fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn pick_pair(accounts: &[AccountId]) -> (AccountId, AccountId) {
    let mut rng = rand::thread_rng();
    let a = rng.gen_range(0..accounts.len());
    let mut b = rng.gen_range(0..accounts.len() - 1);
    if b >= a {
        b += 1;
    }
    (accounts[a], accounts[b])
}

/// Runs operations `0..n` with [`CONCURRENCY`] in flight and returns the elapsed
/// time. Every operation must succeed (`true`), and the batch must finish within
/// [`BATCH_TIME_LIMIT`].
fn run_batch<F, Fut>(rt: &Runtime, what: &str, n: u64, op: F) -> Duration
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = bool>,
{
    rt.block_on(async {
        let start = Instant::now();
        let all = futures::stream::iter(0..n)
            .map(&op)
            .buffer_unordered(CONCURRENCY)
            .filter(|ok| futures::future::ready(*ok))
            .count();
        let ok = tokio::time::timeout(BATCH_TIME_LIMIT, all)
            .await
            .unwrap_or_else(|_| panic!("{what}: {n} operations took over {BATCH_TIME_LIMIT:?}"));
        assert_eq!(ok as u64, n, "{what}: every operation succeeds");
        start.elapsed()
    })
}

/// A figure of the `durable:` line with `places` decimals, or `n/a` when a
/// phase it needs was not run (criterion filtered to one phase leaves a zero
/// denominator, which would print `inf` or `NaN`).
fn shown(x: f64, places: usize) -> String {
    if x.is_finite() {
        format!("{x:.places$}")
    } else {
        "n/a".into()
    }
}

/// Transfers per second of each measured iteration.
#[derive(Default)]
struct Rates(Vec<f64>);

impl Rates {
    fn record(&mut self, n: u64, elapsed: Duration) {
        self.0.push(n as f64 / elapsed.as_secs_f64());
    }

    fn median(&self) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    }

    fn min_max(&self) -> (f64, f64) {
        let min = self.0.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.0.iter().copied().fold(0.0, f64::max);
        (min, max)
    }

    fn describe(&self) -> String {
        let (min, max) = self.min_max();
        format!(
            "{:.0} transfers/s (median of {} iterations of {}; min {:.0}, max {:.0})",
            self.median(),
            self.0.len(),
            TRANSFERS_PER_ITERATION,
            min,
            max
        )
    }
}

/// `DURABLE_CHECKPOINT_EVERY=N`: checkpoint a shard every N log records instead
/// of the default (what rarer checkpoints save).
fn checkpoint_every() -> u64 {
    std::env::var("DURABLE_CHECKPOINT_EVERY")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(RuntimeConfig::default().checkpoint_every, |n| n.max(1))
}

/// Checkpoint bytes per transfer at steady state: each shard writes one
/// checkpoint (of `bytes / checkpoints` on average in the phase) every
/// `checkpoint_every` of its records, whatever number of cycles happened to
/// fall inside the measured phase (the per-transfer figure measured swings
/// with that). `None` when the phase held no checkpoint.
fn steady_checkpoint_bytes(phase: CommitCounters, transfers: u64) -> Option<f64> {
    if phase.checkpoints == 0 || transfers == 0 {
        return None;
    }
    let per_checkpoint = phase.checkpoint_bytes as f64 / phase.checkpoints as f64;
    let records_per_transfer = phase.records as f64 / transfers as f64;
    Some(per_checkpoint * records_per_transfer / checkpoint_every() as f64)
}

/// The group-commit counters at one moment, to report one phase's batches only.
#[derive(Clone, Copy)]
struct CommitCounters {
    batches: u64,
    records: u64,
    /// Bytes of the frames written.
    frame_bytes: u64,
    /// Shard checkpoints written, and the bytes of the account states in them.
    checkpoints: u64,
    checkpoint_bytes: u64,
    /// History rows replaced in memory before they were written.
    rows_superseded: u64,
}

impl CommitCounters {
    fn read(stats: &RuntimeStats) -> Self {
        CommitCounters {
            batches: stats.batches.load(Ordering::Relaxed),
            records: stats.records.load(Ordering::Relaxed),
            frame_bytes: stats.bytes.load(Ordering::Relaxed),
            checkpoints: stats.checkpoints.load(Ordering::Relaxed),
            checkpoint_bytes: stats.checkpoint_bytes.load(Ordering::Relaxed),
            rows_superseded: stats.rows_superseded.load(Ordering::Relaxed),
        }
    }

    /// What the counters grew by since `before`: one phase's figures.
    fn since(before: CommitCounters, stats: &RuntimeStats) -> Self {
        let now = Self::read(stats);
        CommitCounters {
            batches: now.batches - before.batches,
            records: now.records - before.records,
            frame_bytes: now.frame_bytes - before.frame_bytes,
            checkpoints: now.checkpoints - before.checkpoints,
            checkpoint_bytes: now.checkpoint_bytes - before.checkpoint_bytes,
            rows_superseded: now.rows_superseded - before.rows_superseded,
        }
    }

    fn describe_since(before: CommitCounters, stats: &RuntimeStats) -> String {
        let CommitCounters {
            batches, records, ..
        } = Self::since(before, stats);
        format!(
            "{batches} batches, {records} records, mean {:.1} records/batch, max {} (max over the whole run)",
            records as f64 / batches.max(1) as f64,
            stats.max_batch.load(Ordering::Relaxed)
        )
    }
}

/// One transfer of 0.01 CNY through the engine; `true` when it completed.
async fn engine_transfer(engine: &Engine, accounts: &[AccountId], tag: &str, i: u64) -> bool {
    let (from, to) = pick_pair(accounts);
    engine
        .transfer(
            from,
            key(format!("{tag}-{i}")),
            to,
            amount("0.01"),
            None,
            false,
        )
        .await
        .map_err(|e| eprintln!("engine transfer failed: {e}"))
        .is_ok()
}

/// An engine over `store` with funded accounts, ready for the transfer benchmark.
///
/// Its actors never passivate during the run (idle for an hour first): an engine
/// waiting for its turn must not snapshot 10,000 accounts while another is measured.
fn funded_engine(rt: &Runtime, store: Arc<dyn Store>) -> (Engine, Arc<Vec<AccountId>>) {
    let engine = Engine::start(
        EngineConfig {
            policy: load_policy(),
            runtime: RuntimeConfig {
                idle_after: Duration::from_secs(3600),
                // `DURABLE_EXECUTORS=1`: the server's default on 2 cores (half
                // the cores); without it, the engine library's (one per core).
                executors: std::env::var("DURABLE_EXECUTORS")
                    .ok()
                    .and_then(|v| v.parse::<usize>().ok())
                    .map_or(RuntimeConfig::default().executors, |n| n.max(1)),
                checkpoint_every: checkpoint_every(),
                ..RuntimeConfig::default()
            },
            ..EngineConfig::default()
        },
        store,
    );
    let engine = rt.block_on(engine).expect("the engine starts");
    let started = Instant::now();
    let accounts = rt.block_on(funded_accounts(&engine, ACCOUNTS, &FUNDS_CNY.to_string()));
    println!(
        "{}: opened and funded {ACCOUNTS} accounts in {:.1} s",
        engine.store().backend_name(),
        started.elapsed().as_secs_f64()
    );
    (engine, Arc::new(accounts))
}

fn durable_transfers(c: &mut Criterion) {
    benches::keep_freed_memory();
    let rt = runtime();

    // The engine on Redis, its own server.
    let engine_redis = RedisServer::start();
    // `DURABLE_REDIS_RESPONSE_S` lengthens the store's response timeout (2 s) on
    // a machine so loaded that Redis itself stalls past it (measuring bytes).
    let mut options = okpay_engine::store::redis_config::RedisOptions::default();
    if let Some(s) = std::env::var("DURABLE_REDIS_RESPONSE_S")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        options.response_timeout = Duration::from_secs(s);
    }
    let redis_store = rt
        .block_on(RedisStore::connect_with(&engine_redis.url(), options))
        .expect("connect the engine's redis store");
    let durability = rt.block_on(redis_store.check_durability());
    assert!(durability.is_ok(), "{durability}");
    println!("engine redis at {}: {durability}", engine_redis.url());
    let (engine, engine_accounts) = funded_engine(&rt, Arc::new(redis_store));

    // The Lua baseline, on a server of its own with the same settings, so neither
    // side's keys or AOF weigh on the other.
    let baseline_redis = RedisServer::start();
    let bank = rt
        .block_on(LuaBank::connect(
            &baseline_redis.url(),
            BASELINE_CONNECTIONS,
        ))
        .expect("connect the baseline");
    let bank_accounts: Arc<Vec<AccountId>> =
        Arc::new((0..ACCOUNTS).map(|_| AccountId::random()).collect());
    let funds_minor = FUNDS_CNY * 100;
    rt.block_on(bank.fund(&bank_accounts, funds_minor))
        .expect("fund the baseline");

    // The engine on the embedded store.
    let embedded_dir = tempfile::tempdir().expect("tempdir for redb");
    let embedded_store = EmbeddedStore::open(embedded_dir.path()).expect("open redb");
    let (engine_embedded, embedded_accounts) = funded_engine(&rt, Arc::new(embedded_store));

    let mut group = c.benchmark_group("durable");
    group.sample_size(10);
    // One iteration is ~a second of traffic: flat sampling runs ~10 of them instead
    // of the 55 that linear sampling needs at minimum.
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(TRANSFERS_PER_ITERATION));

    let redis_before = CommitCounters::read(engine.stats());
    let engine_aof_files = aof_files(&rt, &engine_redis.url());
    let engine_aof_before = engine_redis.aof_bytes();
    let engine_cmds_before = data_commands(&rt, &engine_redis.url());
    let mut engine_done = 0u64;
    let mut engine_rates = Rates::default();
    let mut round = 0u64;
    group.bench_function("transfers_redis_engine_10k_accounts", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                round += 1;
                let tag = format!("r{round}");
                let elapsed = run_batch(&rt, "engine on redis", TRANSFERS_PER_ITERATION, |i| {
                    engine_transfer(&engine, &engine_accounts, &tag, i)
                });
                engine_rates.record(TRANSFERS_PER_ITERATION, elapsed);
                engine_done += TRANSFERS_PER_ITERATION;
                total += elapsed;
            }
            total
        })
    });

    let engine_aof = (engine_redis.aof_bytes() - engine_aof_before) as f64 / engine_done as f64;
    dump_aof_since(&engine_aof_files, "engine");
    // What the engine handed Redis per transfer: log frames and checkpointed
    // states (the rest of the AOF is history rows and the protocol around them).
    let phase = CommitCounters::since(redis_before, engine.stats());
    let per_transfer = |n: u64| n as f64 / engine_done as f64;
    let frame_bytes = per_transfer(phase.frame_bytes);
    let checkpoint_bytes = per_transfer(phase.checkpoint_bytes);
    let rows_superseded = per_transfer(phase.rows_superseded);
    let steady_checkpoint = steady_checkpoint_bytes(phase, engine_done);
    // The AOF with the phase's checkpoints replaced by the steady-state share.
    let engine_aof_steady = steady_checkpoint.map(|c| engine_aof - checkpoint_bytes + c);
    let engine_cmds =
        (data_commands(&rt, &engine_redis.url()) - engine_cmds_before) as f64 / engine_done as f64;
    let baseline_aof_files = aof_files(&rt, &baseline_redis.url());
    let baseline_aof_before = baseline_redis.aof_bytes();
    let baseline_cmds_before = data_commands(&rt, &baseline_redis.url());
    let mut baseline_done = 0u64;
    let mut baseline_rates = Rates::default();
    let mut round = 0u64;
    group.bench_function("transfers_redis_lua_baseline_10k_accounts", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                round += 1;
                let elapsed = run_batch(&rt, "lua baseline", TRANSFERS_PER_ITERATION, |i| {
                    let bank = &bank;
                    let (from, to) = pick_pair(&bank_accounts);
                    async move {
                        matches!(
                            bank.transfer(from, to, 1, &format!("b{round}-{i}")).await,
                            Ok(BaselineOutcome::Transferred { .. })
                        )
                    }
                });
                baseline_rates.record(TRANSFERS_PER_ITERATION, elapsed);
                baseline_done += TRANSFERS_PER_ITERATION;
                total += elapsed;
            }
            total
        })
    });

    let baseline_aof =
        (baseline_redis.aof_bytes() - baseline_aof_before) as f64 / baseline_done as f64;
    dump_aof_since(&baseline_aof_files, "baseline");
    let baseline_cmds = (data_commands(&rt, &baseline_redis.url()) - baseline_cmds_before) as f64
        / baseline_done as f64;
    let embedded_before = CommitCounters::read(engine_embedded.stats());
    let mut embedded_rates = Rates::default();
    let mut round = 0u64;
    group.bench_function("transfers_embedded_engine_10k_accounts", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                round += 1;
                let tag = format!("e{round}");
                let elapsed = run_batch(&rt, "engine on embedded", TRANSFERS_PER_ITERATION, |i| {
                    engine_transfer(&engine_embedded, &embedded_accounts, &tag, i)
                });
                embedded_rates.record(TRANSFERS_PER_ITERATION, elapsed);
                total += elapsed;
            }
            total
        })
    });
    group.finish();

    println!(
        "durable transfers, {ACCOUNTS} accounts, random pairs, {CONCURRENCY} concurrent callers:"
    );
    println!("  engine on redis:        {}", engine_rates.describe());
    println!(
        "    group commit: {}",
        CommitCounters::describe_since(redis_before, engine.stats())
    );
    println!(
        "  lua baseline (EVALSHA, {BASELINE_CONNECTIONS} multiplexed connections): {}",
        baseline_rates.describe()
    );
    println!(
        "  engine / baseline:      {}x (target >= 4x)",
        shown(engine_rates.median() / baseline_rates.median(), 2)
    );
    println!("  engine on embedded:     {}", embedded_rates.describe());
    println!(
        "    group commit: {}",
        CommitCounters::describe_since(embedded_before, engine_embedded.stats())
    );
    println!(
        "  AOF written: engine {:.1} MiB, baseline {:.1} MiB",
        engine_redis.aof_bytes() as f64 / (1 << 20) as f64,
        baseline_redis.aof_bytes() as f64 / (1 << 20) as f64
    );
    // The one stable line to compare run to run (grep '^durable:').
    println!(
        "durable: engine_redis_tps={} lua_tps={} ratio={} aof_bytes_per_transfer={} frame_bytes_per_transfer={} checkpoint_bytes_per_transfer={} rows_superseded_per_transfer={} lua_aof_bytes_per_transfer={} aof_ratio={} redis_cmds_per_transfer={} lua_redis_cmds_per_transfer={} embedded_tps={} embedded_ratio={} checkpoint_bytes_per_transfer_steady={} aof_ratio_steady={}",
        shown(engine_rates.median(), 0),
        shown(baseline_rates.median(), 0),
        shown(engine_rates.median() / baseline_rates.median(), 2),
        shown(engine_aof, 0),
        shown(frame_bytes, 0),
        shown(checkpoint_bytes, 0),
        shown(rows_superseded, 2),
        shown(baseline_aof, 0),
        shown(engine_aof / baseline_aof, 2),
        shown(engine_cmds, 1),
        shown(baseline_cmds, 1),
        shown(embedded_rates.median(), 0),
        shown(embedded_rates.median() / engine_rates.median(), 2),
        shown(steady_checkpoint.unwrap_or(f64::NAN), 0),
        shown(engine_aof_steady.map_or(f64::NAN, |a| a / baseline_aof), 2),
    );
    shard_log_writes(&rt, SHARD_LOG_PAYLOAD_BYTES);

    // Whatever the figures, no money may have been made or lost on either side.
    let ledger = rt.block_on(engine.audit()).expect("audit on redis");
    assert!(
        ledger.balanced(),
        "engine ledger balanced after the benchmark"
    );
    let ledger = rt.block_on(engine_embedded.audit()).expect("audit on redb");
    assert!(
        ledger.balanced(),
        "embedded ledger balanced after the benchmark"
    );
    let total = rt
        .block_on(bank.total(&bank_accounts))
        .expect("baseline total");
    assert_eq!(
        total,
        funds_minor * ACCOUNTS as i64,
        "baseline conserves money"
    );

    // The engines' actor threads stay parked for the rest of the process; their
    // servers go now (the stores' reconnect attempts would only fail quietly).
    drop(engine_redis);
    drop(baseline_redis);
}

/// The AOF files of the server at `url` and their sizes now (`CONFIG GET dir`
/// and `appenddirname`), so that what a phase appended can be dumped.
fn aof_files(rt: &Runtime, url: &str) -> Vec<(std::path::PathBuf, u64)> {
    let (dir, sub): (Vec<String>, Vec<String>) = rt.block_on(async {
        let client = redis::Client::open(url).expect("redis url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect for CONFIG GET");
        let dir = redis::cmd("CONFIG")
            .arg("GET")
            .arg("dir")
            .query_async(&mut conn)
            .await
            .expect("CONFIG GET dir");
        let sub = redis::cmd("CONFIG")
            .arg("GET")
            .arg("appenddirname")
            .query_async(&mut conn)
            .await
            .expect("CONFIG GET appenddirname");
        (dir, sub)
    });
    let path = std::path::Path::new(&dir[1]).join(&sub[1]);
    let mut files: Vec<_> = std::fs::read_dir(&path)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().contains(".aof"))
                .map(|e| (e.path(), e.metadata().map_or(0, |m| m.len())))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// With `DURABLE_AOF_DUMP=<dir>` set, writes what the AOF files listed in
/// `before` (and any new ones beside them) grew by since into `<dir>/<name>.aof`,
/// for a breakdown by command and key (`benches/aof_breakdown.py`).
fn dump_aof_since(before: &[(std::path::PathBuf, u64)], name: &str) {
    let Ok(out_dir) = std::env::var("DURABLE_AOF_DUMP") else {
        return;
    };
    let Some(dir) = before.first().and_then(|(p, _)| p.parent()) else {
        return;
    };
    let mut now: Vec<_> = std::fs::read_dir(dir)
        .expect("read the aof dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.to_string_lossy().contains(".aof") && !p.to_string_lossy().ends_with(".manifest")
        })
        .collect();
    now.sort();
    let mut out = Vec::new();
    for path in now {
        let from = before
            .iter()
            .find(|(p, _)| *p == path)
            .map_or(0, |(_, len)| *len) as usize;
        let bytes = std::fs::read(&path).expect("read an aof file");
        out.extend_from_slice(&bytes[from.min(bytes.len())..]);
    }
    std::fs::create_dir_all(&out_dir).expect("create the dump dir");
    let target = std::path::Path::new(&out_dir).join(format!("{name}.aof"));
    std::fs::write(&target, out).expect("write the aof dump");
    println!("{name}: AOF dump at {}", target.display());
}

/// Data commands Redis has executed so far (`INFO commandstats`), counting the
/// commands scripts run and not the script calls, pings or INFO themselves: what
/// a transfer costs the server in work, whatever the way it is sent.
fn data_commands(rt: &Runtime, url: &str) -> u64 {
    const NOT_DATA: &[&str] = &[
        "evalsha",
        "eval",
        "script|load",
        "info",
        "ping",
        "config|get",
        "hello",
        "client|setinfo",
        "select",
        "command|docs",
        "command",
    ];
    let info: String = rt.block_on(async {
        let client = redis::Client::open(url).expect("redis url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect for INFO");
        redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut conn)
            .await
            .expect("INFO commandstats")
    });
    info.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            if NOT_DATA.contains(&name) {
                return None;
            }
            rest.split(',')
                .find_map(|kv| kv.strip_prefix("calls="))?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// Transfers per executor batch in the shard-log write benchmark (two sizes: a
/// lightly and a heavily loaded executor).
const SHARD_LOG_BATCHES: [u64; 2] = [128, 1024];
/// Transfers written per backend and batch size.
const SHARD_LOG_TRANSFERS: u64 = 60_000;

/// Writes the records of `n` transfers to `log` the way the sharded engine lays
/// them out: per executor batch, one frame per shard touched, holding each
/// transfer's debit and completion at the source's shard and its credit at the
/// destination's; one `append` call per executor batch, waited for before the
/// next (no overlap: a lower bound). Returns transfers per second.
fn shard_log_run(
    rt: &Runtime,
    log: &dyn ShardLog,
    accounts: &[AccountId],
    n: u64,
    per_batch: u64,
    payload_bytes: usize,
    lsns: &mut std::collections::HashMap<ShardId, u64>,
) -> f64 {
    let layout = rt
        .block_on(log.init_layout(ShardLayout::default()))
        .expect("layout");
    // Random bytes: frames are LZ4-compressed (format 2), and a repeated byte
    // would compress to nearly nothing. This measures the uncompressed path.
    let payload: Vec<u8> = (0..payload_bytes).map(|_| rand::random::<u8>()).collect();
    let mut seqs: std::collections::HashMap<AccountId, u64> = Default::default();
    let start = Instant::now();
    let mut done = 0;
    while done < n {
        let mut shards: std::collections::BTreeMap<ShardId, Vec<LogRecord>> = Default::default();
        for _ in 0..per_batch.min(n - done) {
            let (from, to) = pick_pair(accounts);
            for account in [from, to, from] {
                let seq = seqs.entry(account).or_default();
                *seq += 1;
                shards
                    .entry(layout.shard_of(account))
                    .or_default()
                    .push(LogRecord {
                        kind: RecordKind::Events,
                        account,
                        seq: *seq,
                        payload: payload.clone(),
                    });
            }
        }
        done += per_batch.min(n - done);
        let batch: Vec<ShardAppend> = shards
            .into_iter()
            .map(|(shard, records)| {
                let lsn = lsns.entry(shard).or_default();
                *lsn += 1;
                let frame = BatchFrame {
                    shard,
                    lsn: *lsn,
                    records,
                }
                .encode()
                .expect("encode");
                ShardAppend {
                    shard,
                    lsn: *lsn,
                    frame,
                    epoch: None,
                }
            })
            .collect();
        let results = rt
            .block_on(async { tokio::time::timeout(BATCH_TIME_LIMIT, log.append(batch)).await })
            .expect("shard log append within the time limit")
            .expect("shard log append");
        assert!(results.iter().all(Result::is_ok), "every frame accepted");
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// The mean payload of a transfer's log record (encoded events, before frame
/// compression), measured with format-1 frames; fixed so `shardlog:` lines
/// compare run to run.
const SHARD_LOG_PAYLOAD_BYTES: usize = 55;

/// The sharded engine's storage path alone (issue 10's one log per shard): what
/// the shard log sustains on Redis and on disk for transfer-shaped writes, with
/// records of `payload_bytes` random bytes.
fn shard_log_writes(rt: &Runtime, payload_bytes: usize) {
    let accounts: Vec<AccountId> = (0..ACCOUNTS).map(|_| AccountId::random()).collect();
    let server = RedisServer::start();
    let redis_log = rt
        .block_on(RedisShardLog::connect(&server.url()))
        .expect("connect the shard log");
    let dir = tempfile::tempdir().expect("tempdir for the shard log");
    let embedded_log = EmbeddedShardLog::open(dir.path()).expect("open the shard log");
    // Positions continue from one batch size to the next (same logs).
    let (mut redis_lsns, mut embedded_lsns) = (Default::default(), Default::default());
    for per_batch in SHARD_LOG_BATCHES {
        let aof_before = server.aof_bytes();
        let cmds_before = data_commands(rt, &server.url());
        let redis_tps = shard_log_run(
            rt,
            &redis_log,
            &accounts,
            SHARD_LOG_TRANSFERS,
            per_batch,
            payload_bytes,
            &mut redis_lsns,
        );
        let aof = (server.aof_bytes() - aof_before) as f64 / SHARD_LOG_TRANSFERS as f64;
        let cmds =
            (data_commands(rt, &server.url()) - cmds_before) as f64 / SHARD_LOG_TRANSFERS as f64;
        let embedded_tps = shard_log_run(
            rt,
            &embedded_log,
            &accounts,
            SHARD_LOG_TRANSFERS,
            per_batch,
            payload_bytes,
            &mut embedded_lsns,
        );
        // The stable line to compare run to run (grep '^shardlog:').
        println!(
            "shardlog: transfers_per_batch={per_batch} payload_bytes={payload_bytes} redis_tps={redis_tps:.0} aof_bytes_per_transfer={aof:.0} redis_cmds_per_transfer={cmds:.2} embedded_tps={embedded_tps:.0}"
        );
    }
    drop(server);
}

criterion_group!(benches, durable_transfers);
criterion_main!(benches);
