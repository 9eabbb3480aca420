//! Memory footprint at scale (`cargo bench -p benches --bench footprint`): 100,000
//! registered accounts on the embedded store, 10,000 of them active (funded and
//! trading), and the process's resident memory (VmRSS) printed at each stage.
//! Not a criterion benchmark: it measures bytes, once, and prints them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use benches::{amount, key, load_policy, rss_mib};
use futures::StreamExt;
use okpay_engine::domain::command::{DepositMethod, Profile};
use okpay_engine::ids::AccountId;
use okpay_engine::store::embedded::EmbeddedStore;
use okpay_engine::{Engine, EngineConfig};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const REGISTERED: usize = 100_000;
const ACTIVE: usize = 10_000;

fn main() {
    // `cargo test --benches` runs bench targets with `--bench` absent: skip there.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    benches::keep_freed_memory();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let engine = Engine::start(
        EngineConfig {
            policy: load_policy(),
            ..EngineConfig::default()
        },
        store,
    );
    let engine = rt.block_on(engine).expect("the engine starts");
    println!("start: RSS {:.0} MiB", rss_mib());
    let ids: Vec<AccountId> = (0..REGISTERED).map(|_| AccountId::random()).collect();
    let started = Instant::now();
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
            .buffer_unordered(1024)
            .collect::<Vec<_>>()
            .await;
    });
    println!(
        "{REGISTERED} accounts opened in {:.1} s: RSS {:.0} MiB, {} actors live",
        started.elapsed().as_secs_f64(),
        rss_mib(),
        engine.active_actors()
    );
    rt.block_on(engine.passivate_all(Duration::from_secs(120)));
    println!(
        "all passivated: RSS {:.0} MiB, {} actors live",
        rss_mib(),
        engine.active_actors()
    );
    let active = &ids[..ACTIVE];
    rt.block_on(async {
        futures::stream::iter(active.iter().copied().enumerate())
            .map(|(i, id)| {
                let engine = engine.clone();
                let to = active[(i + 1) % ACTIVE];
                async move {
                    engine
                        .deposit(
                            id,
                            key(format!("f{i}")),
                            amount("1000"),
                            DepositMethod::BankCard,
                        )
                        .await
                        .unwrap();
                    for t in 0..5 {
                        engine
                            .transfer(
                                id,
                                key(format!("t{i}-{t}")),
                                to,
                                amount("1.00"),
                                None,
                                false,
                            )
                            .await
                            .unwrap();
                    }
                }
            })
            .buffer_unordered(512)
            .collect::<Vec<_>>()
            .await;
    });
    println!(
        "{ACTIVE} active (a deposit and 5 transfers each): RSS {:.0} MiB, {} actors live",
        rss_mib(),
        engine.active_actors()
    );
    let ledger = rt.block_on(engine.audit()).unwrap();
    assert!(ledger.balanced());
    println!(
        "audit over {REGISTERED} accounts balanced: RSS {:.0} MiB",
        rss_mib()
    );
}
