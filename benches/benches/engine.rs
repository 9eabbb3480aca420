//! Engine benchmarks on the in-memory store (`cargo bench -p benches --bench engine`):
//! transfers per second through the actors (10,000 accounts, many concurrent
//! callers, recipients uniform and Zipf(1.0)), the cost of `decide` + `apply` for one transfer, and the
//! memory of an activated idle account (measured with a counting allocator and
//! printed, since criterion measures time only). The figures end in one stable
//! line, `engine: memory_tps=… zipf_tps=… idle_account_bytes=…`.

#![allow(unsafe_code)] // the counting allocator below only forwards to mimalloc.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use benches::{amount, funded_accounts, key, load_policy, process_cpu, start_engine};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use futures::StreamExt;
use okpay_engine::domain::command::{Command, DepositMethod, Profile};
use okpay_engine::domain::{apply, decide, AccountState};
use okpay_engine::ids::AccountId;
use okpay_engine::store::memory::MemoryStore;
use okpay_engine::time::Timestamp;
use rand::Rng;

/// Counts live heap bytes (to measure memory per account) on top of mimalloc, the
/// allocator the `okpay` server uses.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        mimalloc::MiMalloc.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        mimalloc::MiMalloc.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        mimalloc::MiMalloc.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const ACCOUNTS: usize = 10_000;
const CONCURRENCY: usize = 4096;

/// How a transfer's recipient is drawn.
#[derive(Clone, Copy)]
enum Recipients {
    Uniform,
    /// Zipf(1.0) over the accounts: a few accounts receive most transfers (the
    /// merchant-heavy shape), which piles commands onto a few accounts' queues.
    Zipf,
}

/// The cumulative weights of Zipf(1.0) over `n` ranks (rank k weighs 1/k).
fn zipf_cdf(n: usize) -> Vec<f64> {
    let mut acc = 0.0;
    let mut cdf: Vec<f64> = (1..=n)
        .map(|k| {
            acc += 1.0 / k as f64;
            acc
        })
        .collect();
    for c in &mut cdf {
        *c /= acc;
    }
    cdf
}

/// A source drawn uniformly and a different recipient drawn by `recipients`.
fn pick(accounts: &[AccountId], recipients: Recipients, cdf: &[f64]) -> (AccountId, AccountId) {
    match recipients {
        Recipients::Uniform => pick_pair(accounts),
        Recipients::Zipf => {
            let mut rng = rand::thread_rng();
            let u: f64 = rng.gen();
            let to = cdf.partition_point(|&c| c < u).min(accounts.len() - 1);
            let mut from = rng.gen_range(0..accounts.len() - 1);
            if from >= to {
                from += 1;
            }
            (accounts[from], accounts[to])
        }
    }
}

/// Transfers per second of each measured iteration, for the stable line.
static MEMORY_TPS: medians::Medians = medians::Medians::new();

/// Per-benchmark samples; a std mutex is plenty for a few dozen of them.
mod medians {
    use std::sync::Mutex;

    pub struct Medians(Mutex<Vec<(&'static str, f64)>>);

    impl Medians {
        pub const fn new() -> Self {
            Medians(Mutex::new(Vec::new()))
        }
        pub fn record(&self, what: &'static str, v: f64) {
            self.0.lock().unwrap().push((what, v));
        }
        pub fn median(&self, what: &str) -> f64 {
            let mut v: Vec<f64> = self
                .0
                .lock()
                .unwrap()
                .iter()
                .filter(|(w, _)| *w == what)
                .map(|(_, v)| *v)
                .collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(0.0)
        }
    }
}

/// Heap bytes per activated idle account, measured by [`memory_per_idle_account`].
static IDLE_ACCOUNT_BYTES: AtomicIsize = AtomicIsize::new(0);

fn transfers_through_actors(c: &mut Criterion) {
    benches::keep_freed_memory();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let engine = rt.block_on(start_engine(Arc::new(MemoryStore::new())));
    let accounts = rt.block_on(funded_accounts(&engine, ACCOUNTS, "1000000"));
    let accounts = Arc::new(accounts);
    let cdf = Arc::new(zipf_cdf(ACCOUNTS));
    let mut group = c.benchmark_group("engine");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    const BATCH: u64 = 50_000;
    group.throughput(Throughput::Elements(BATCH));
    let mut round = 0u64;
    for (name, recipients) in [
        ("transfers_memory_store_10k_accounts", Recipients::Uniform),
        ("transfers_memory_store_10k_accounts_zipf", Recipients::Zipf),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    round += 1;
                    let engine = engine.clone();
                    let accounts = accounts.clone();
                    let cdf = cdf.clone();
                    let r = round;
                    let cpu = process_cpu();
                    let live = LIVE.load(Ordering::Relaxed);
                    let elapsed = rt.block_on(async move {
                        let start = Instant::now();
                        let ok = futures::stream::iter(0..BATCH)
                            .map(|i| {
                                let engine = engine.clone();
                                let (from, to) = pick(&accounts, recipients, &cdf);
                                async move {
                                    engine
                                        .transfer(
                                            from,
                                            key(format!("b{r}-{i}")),
                                            to,
                                            amount("0.01"),
                                            None,
                                            false,
                                        )
                                        .await
                                        .is_ok()
                                }
                            })
                            .buffer_unordered(CONCURRENCY)
                            .filter(|ok| futures::future::ready(*ok))
                            .count()
                            .await;
                        assert_eq!(ok as u64, BATCH, "every transfer succeeds");
                        start.elapsed()
                    });
                    MEMORY_TPS.record(name, BATCH as f64 / elapsed.as_secs_f64());
                    let cpu_us = (process_cpu() - cpu).as_secs_f64() * 1e6 / BATCH as f64;
                    MEMORY_TPS.record(cpu_key(name), cpu_us);
                    let grown = LIVE.load(Ordering::Relaxed) - live;
                    MEMORY_TPS.record(retained_key(name), grown as f64 / BATCH as f64);
                    total += elapsed;
                }
                total
            })
        });
    }
    group.finish();
    let stats = engine.stats();
    println!(
        "group commit: {} batches, mean {:.1} records/batch, max {}",
        stats.batches.load(Ordering::Relaxed),
        stats.mean_batch(),
        stats.max_batch.load(Ordering::Relaxed)
    );
    // The one stable line to compare run to run (grep '^engine:').
    println!(
        "engine: memory_tps={:.0} zipf_tps={:.0} cpu_us_per_transfer={:.1} zipf_cpu_us_per_transfer={:.1} retained_bytes_per_transfer={:.0} idle_account_bytes={}",
        MEMORY_TPS.median("transfers_memory_store_10k_accounts"),
        MEMORY_TPS.median("transfers_memory_store_10k_accounts_zipf"),
        MEMORY_TPS.median(cpu_key("transfers_memory_store_10k_accounts")),
        MEMORY_TPS.median(cpu_key("transfers_memory_store_10k_accounts_zipf")),
        MEMORY_TPS.median(retained_key("transfers_memory_store_10k_accounts")),
        IDLE_ACCOUNT_BYTES.load(Ordering::Relaxed)
    );
    let ledger = rt.block_on(engine.audit()).unwrap();
    assert!(ledger.balanced(), "ledger balanced after the benchmark");
}

/// Where the CPU microseconds per transfer of benchmark `name` are recorded.
fn cpu_key(name: &str) -> &'static str {
    if name.ends_with("zipf") {
        "cpu_zipf"
    } else {
        "cpu_uniform"
    }
}

/// Where the heap bytes each transfer of benchmark `name` left live are
/// recorded: what the states, the store and the executors kept, the fresh
/// memory the kernel zeroes for it included.
fn retained_key(name: &str) -> &'static str {
    if name.ends_with("zipf") {
        "retained_zipf"
    } else {
        "retained_uniform"
    }
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

fn decide_apply_one_transfer(c: &mut Criterion) {
    let policy = load_policy();
    let now = Timestamp(1_700_000_000_000);
    let id = AccountId(1);
    let mut state = AccountState::new(id);
    let open = decide(
        &policy,
        &state,
        &Command::Open {
            password_hash: String::new(),
            profile: Profile::default(),
        },
        now,
    )
    .unwrap();
    open.iter().for_each(|e| apply(&mut state, e));
    let dep = Command::Deposit {
        card: String::new(),
        key: key("fund".into()),
        amount: amount("1000000"),
        method: DepositMethod::BankCard,
    };
    decide(&policy, &state, &dep, now)
        .unwrap()
        .iter()
        .for_each(|e| apply(&mut state, e));
    let cmds: Vec<Command> = (0..1024)
        .map(|i| Command::Transfer {
            key: key(format!("t{i}")),
            to: AccountId(2 + i % 16),
            amount: amount("1.00"),
            memo: None,
            step_up_verified: false,
        })
        .collect();
    let mut i = 0usize;
    c.bench_function("decide_apply_one_transfer", |b| {
        b.iter_batched_ref(
            || state.clone(),
            |s| {
                let cmd = &cmds[i % cmds.len()];
                i += 1;
                let events = decide(&policy, s, cmd, now).unwrap();
                for e in &events {
                    apply(s, e);
                }
                events.len()
            },
            BatchSize::LargeInput,
        )
    });
}

fn memory_per_idle_account(_c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = Arc::new(MemoryStore::new());
    let engine = rt.block_on(start_engine(store.clone()));
    const N: usize = 10_000;
    let ids: Vec<AccountId> = (0..N).map(|_| AccountId::random()).collect();
    // Open the accounts, then passivate them all so only the store holds them.
    rt.block_on(async {
        futures::stream::iter(ids.iter().copied())
            .map(|id| {
                let engine = engine.clone();
                async move {
                    engine
                        .open_account_with_id(id, Profile::default())
                        .await
                        .unwrap()
                }
            })
            .buffer_unordered(256)
            .collect::<Vec<_>>()
            .await;
        assert!(engine.passivate_all(Duration::from_secs(30)).await);
    });
    std::thread::sleep(Duration::from_millis(200));
    let before = LIVE.load(Ordering::SeqCst);
    rt.block_on(async {
        futures::stream::iter(ids.iter().copied())
            .map(|id| {
                let engine = engine.clone();
                async move { engine.view(id).await.unwrap() }
            })
            .buffer_unordered(256)
            .collect::<Vec<_>>()
            .await;
    });
    std::thread::sleep(Duration::from_millis(200));
    let after = LIVE.load(Ordering::SeqCst);
    assert_eq!(engine.active_actors(), N);
    IDLE_ACCOUNT_BYTES.store((after - before) / N as isize, Ordering::Relaxed);
    println!(
        "memory per activated idle account: {} bytes ({} accounts, heap delta {} bytes)",
        (after - before) / N as isize,
        N,
        after - before
    );
}

criterion_group!(
    benches,
    decide_apply_one_transfer,
    memory_per_idle_account,
    transfers_through_actors
);
criterion_main!(benches);
