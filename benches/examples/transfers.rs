//! A profiling driver, not a benchmark: runs a fixed number of transfers through
//! the engine on the in-memory store (10,000 funded accounts, 4,096 callers, the
//! engine bench's shape) and prints the process CPU time they took per transfer
//! and the size of the accounts' encoded states, as one line:
//! `transfers: n=… cpu_us_per_transfer=… state_bytes=… checkpoint_entry_bytes=…
//! notifications_bytes=…` (the checkpoint entry is the compressed state).
//! A fixed amount of work makes CPU time comparable between builds on a noisy
//! machine (wall time is not), and the process is short enough to run under
//! `perf record -g` (see the README's "Benchmarks" section):
//!
//! ```text
//! cargo run --release -p benches --example transfers -- 200000
//! cargo run --release -p benches --example transfers -- 50000 embedded
//! cargo run --release -p benches --example transfers -- 50000 embedded 512
//! ```
//!
//! The second argument picks the store: `memory` (the default) or `embedded`
//! (a temporary directory; its figure is bound by `fdatasync`, so the line also
//! gives the wall-clock rate, `tps`). A third argument sets the executors'
//! blocking threads (`RuntimeConfig::blocking_threads`, default 2).

use std::sync::Arc;

use benches::{amount, funded_accounts, key, process_cpu, start_engine};
use futures::StreamExt;
use okpay_engine::store::memory::MemoryStore;
use rand::Rng;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Accounts whose states are measured at the end.
const SAMPLED: usize = 200;

#[tokio::main(worker_threads = 2)]
async fn main() {
    benches::keep_freed_memory();
    let n: usize = match std::env::args().nth(1).map(|s| s.parse()) {
        None => 200_000,
        Some(Ok(n)) => n,
        Some(Err(e)) => panic!("the argument is a number of transfers: {e}"),
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store: Arc<dyn okpay_engine::store::Store> = match std::env::args().nth(2).as_deref() {
        None | Some("memory") => Arc::new(MemoryStore::new()),
        Some("embedded") => Arc::new(
            okpay_engine::store::embedded::EmbeddedStore::open(dir.path())
                .expect("open the embedded store"),
        ),
        Some(other) => panic!("the store is memory or embedded, not {other}"),
    };
    // A third argument sets the executors' blocking threads (the embedded
    // store's I/O), to compare with the default.
    let engine = match std::env::args().nth(3).map(|s| s.parse::<usize>()) {
        None => start_engine(store).await,
        Some(Ok(threads)) => {
            let runtime = okpay_engine::RuntimeConfig {
                blocking_threads: threads,
                ..okpay_engine::RuntimeConfig::default()
            };
            benches::start_engine_with(store, runtime).await
        }
        Some(Err(e)) => panic!("the third argument is a number of threads: {e}"),
    };
    let accounts = Arc::new(funded_accounts(&engine, 10_000, "1000000").await);
    let cpu = process_cpu();
    let started = std::time::Instant::now();
    let ok = futures::stream::iter(0..n)
        .map(|i| {
            let (engine, accounts) = (engine.clone(), accounts.clone());
            async move {
                let mut rng = rand::thread_rng();
                let from = rng.gen_range(0..accounts.len());
                let mut to = rng.gen_range(0..accounts.len() - 1);
                if to >= from {
                    to += 1;
                }
                engine
                    .transfer(
                        accounts[from],
                        key(format!("p-{i}")),
                        accounts[to],
                        amount("0.01"),
                        None,
                        false,
                    )
                    .await
                    .is_ok()
            }
        })
        .buffer_unordered(4096)
        .filter(|ok| futures::future::ready(*ok))
        .count()
        .await;
    assert_eq!(ok, n, "every transfer succeeds");
    let cpu_us = (process_cpu() - cpu).as_secs_f64() * 1e6 / n as f64;
    let tps = n as f64 / started.elapsed().as_secs_f64();
    let (mut state, mut notifications, mut entry) = (0usize, 0usize, 0usize);
    for id in accounts.iter().take(SAMPLED) {
        let s = engine.state(*id).await.expect("a funded account");
        state += okpay_engine::codec::state::encode_state(&s).len();
        entry += okpay_engine::codec::checkpoint::encode_account(0, &s).len();
        notifications += postcard::to_stdvec(&s.notifications).map_or(0, |v| v.len());
    }
    println!(
        "transfers: n={n} tps={tps:.0} cpu_us_per_transfer={cpu_us:.1} state_bytes={} checkpoint_entry_bytes={} notifications_bytes={}",
        state / SAMPLED,
        entry / SAMPLED,
        notifications / SAMPLED
    );
}
