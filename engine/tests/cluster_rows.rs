//! A deposed node's late history row write, on one real redis-server with two
//! engines in cluster mode. Node A reaches Redis through a loopback proxy the
//! test can freeze: the moment A sends a history row write (a transfer's row
//! while it is still processing), every byte from A is held — A is partitioned
//! away, as a long GC pause or SIGSTOP would do, with its write already on the
//! wire. A's leases expire, node B takes its shards, replays the log and
//! completes the transfer. Then the proxy lets A's held bytes through: the late
//! row write reaches Redis after B's. It must be refused by its stale lease
//! epoch, and the history must show the transfer once, completed.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use okpay_engine::cluster::{ClusterConfig, LeaseConfig, NodeId};
use okpay_engine::codec::ShardId;
use okpay_engine::domain::command::{DepositMethod, Profile};
use okpay_engine::domain::history::TxRecord;
use okpay_engine::domain::notification::TxStatus;
use okpay_engine::ids::{AccountId, IdempotencyKey, OpId, OpKind};
use okpay_engine::money::{Amount, Currency};
use okpay_engine::store::redis::RedisStore;
use okpay_engine::store::Store;
use okpay_engine::{Engine, EngineConfig, Outcome, RuntimeConfig};
use support::redis_server::RedisServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const SHARDS: u16 = 8;

/// What the proxy freezes on: a command naming a shard's row set.
const ROW_WRITE: &[u8] = b":rowset";

/// The longest the test waits for any one thing.
const PATIENCE: Duration = Duration::from_secs(20);

/// A loopback TCP proxy in front of Redis that, once armed, freezes on the
/// first client bytes naming a row set: those bytes and everything any client
/// sends after them are held (not lost) until [`Proxy::thaw`]. Replies from
/// Redis always pass.
struct Proxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
}

struct ProxyState {
    armed: AtomicBool,
    frozen: watch::Sender<bool>,
    /// Client bytes held while frozen.
    held: AtomicUsize,
    /// Bytes Redis sent back since the thaw.
    replies: Mutex<Vec<u8>>,
    thawed: AtomicBool,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ProxyState {
            armed: AtomicBool::new(false),
            frozen: watch::channel(false).0,
            held: AtomicUsize::new(0),
            replies: Mutex::new(Vec::new()),
            thawed: AtomicBool::new(false),
        });
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                tokio::spawn(pump(client, server, shared.clone()));
            }
        });
        Proxy { addr, state }
    }

    fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    fn arm(&self) {
        self.state.armed.store(true, Ordering::SeqCst);
    }

    fn frozen(&self) -> bool {
        *self.state.frozen.borrow()
    }

    fn thaw(&self) {
        self.state.thawed.store(true, Ordering::SeqCst);
        self.state.frozen.send_replace(false);
    }
}

/// Copies one connection both ways, holding client bytes while frozen.
async fn pump(client: TcpStream, server: TcpStream, state: Arc<ProxyState>) {
    let (mut client_r, mut client_w) = client.into_split();
    let (mut server_r, mut server_w) = server.into_split();
    let replies = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n @ 1..) = server_r.read(&mut buf).await {
                if state.thawed.load(Ordering::SeqCst) {
                    let mut replies = state.replies.lock().unwrap();
                    if replies.len() < 1 << 20 {
                        replies.extend_from_slice(&buf[..n]);
                    }
                }
                if client_w.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        })
    };
    let mut frozen = state.frozen.subscribe();
    let mut buf = vec![0u8; 64 * 1024];
    // The end of the previous read, so a name split over two reads is found.
    let mut tail: Vec<u8> = Vec::new();
    while let Ok(n @ 1..) = client_r.read(&mut buf).await {
        let seen = [&tail[..], &buf[..n]].concat();
        if state.armed.load(Ordering::SeqCst)
            && seen.windows(ROW_WRITE.len()).any(|w| w == ROW_WRITE)
        {
            state.armed.store(false, Ordering::SeqCst);
            state.frozen.send_replace(true);
        }
        tail = seen[seen.len().saturating_sub(ROW_WRITE.len())..].to_vec();
        if *frozen.borrow_and_update() {
            state.held.fetch_add(n, Ordering::SeqCst);
            // Held, not dropped: delivered late, once thawed.
            let _ = frozen.wait_for(|f| !f).await;
        }
        if server_w.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    // The client went away (a timeout gave the connection up): what it sent
    // is delivered; Redis gets a moment to run it before the connection closes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    replies.abort();
}

fn cny(s: &str) -> Amount {
    Amount::parse(s, Currency::new("CNY", 2).unwrap()).unwrap()
}

fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::parse(s).unwrap()
}

async fn node(url: &str, name: &str) -> Engine {
    let store: Arc<dyn Store> = Arc::new(RedisStore::connect(url).await.expect("connect"));
    let mut cluster = ClusterConfig::new(NodeId::parse(name).unwrap());
    // Short leases so the test waits little.
    cluster.leases = LeaseConfig {
        ttl: Duration::from_millis(1500),
        renew_every: Duration::from_millis(300),
        margin: Duration::from_millis(200),
    };
    Engine::start(
        EngineConfig {
            runtime: RuntimeConfig {
                shards: SHARDS,
                executors: 2,
                cluster: Some(cluster),
                ..RuntimeConfig::default()
            },
            ..EngineConfig::default()
        },
        store,
    )
    .await
    .expect("start engine")
}

fn held(engine: &Engine) -> BTreeSet<ShardId> {
    engine.held_shards().into_iter().map(|(s, _)| s).collect()
}

/// Waits (bounded) until `cond` holds.
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An account opened on `via`, on one of `shards`, funded with 100.
async fn account_on(via: &Engine, shards: &BTreeSet<ShardId>, name: &str) -> AccountId {
    let id = loop {
        let id = AccountId::random();
        if shards.contains(&via.layout().shard_of(id)) {
            break id;
        }
    };
    via.open_account_with_id(
        id,
        Profile {
            display_name: name.into(),
            ..Profile::default()
        },
    )
    .await
    .expect("open");
    via.deposit(
        id,
        key(&format!("d-{name}")),
        cny("100"),
        DepositMethod::BankCard,
    )
    .await
    .expect("deposit");
    id
}

/// The history rows of transfer `id` in `account`'s history, read via
/// `engine`; retried while the shard moves (reads answer `Unavailable` then).
async fn rows_of(engine: &Engine, account: AccountId, id: OpId) -> Vec<TxRecord> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match engine.history(account, None, 200, None).await {
            Ok((rows, _)) => return rows.into_iter().filter(|r| r.id == id).collect(),
            Err(e) => {
                assert!(Instant::now() < deadline, "history unreadable: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deposed_nodes_late_row_write_is_refused() {
    let redis = RedisServer::start();
    let upstream: SocketAddr = redis
        .url()
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .parse()
        .expect("a loopback address");
    let proxy = Proxy::start(upstream).await;
    let a = node(&proxy.url(), "node-a").await;
    let b = node(&redis.url(), "node-b").await;
    let half = usize::from(SHARDS) / 2;
    wait_until("an even split", || {
        let (sa, sb) = (held(&a), held(&b));
        sa.len() == half && sb.len() == half && sa.is_disjoint(&sb)
    })
    .await;

    // The sender on A's shards, the recipient on B's: the credit crosses
    // through Redis, so A writes the transfer's row (processing) before it
    // hears of the credit.
    let from = account_on(&a, &held(&a), "from").await;
    let to = account_on(&b, &held(&b), "to").await;
    // Every row so far is written (a history read waits for them).
    a.history(from, None, 10, None).await.expect("history");

    proxy.arm();
    let transfer = tokio::spawn({
        let a = a.clone();
        async move {
            a.transfer(from, key("late"), to, cny("10"), None, false)
                .await
        }
    });
    wait_until("A's row write", || proxy.frozen()).await;

    // A is cut off with its row write on the wire. B takes every shard once
    // A's leases expired, replays A's log and completes the transfer.
    wait_until("B takes A's shards", || {
        held(&b).len() == usize::from(SHARDS)
    })
    .await;
    let deadline = Instant::now() + PATIENCE;
    let id = loop {
        let (rows, _) = b.history(from, None, 200, None).await.unwrap_or_default();
        let done = rows
            .iter()
            .find(|r| r.kind == OpKind::Transfer && r.status == TxStatus::Completed);
        if let Some(r) = done {
            break r.id;
        }
        assert!(
            Instant::now() < deadline,
            "B did not complete the transfer: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(proxy.state.held.load(Ordering::SeqCst) > 0);

    // A's held bytes reach Redis now, after B's rows; Redis's replies to them
    // come back through the proxy (in order, so replies to later commands
    // mean the held ones ran). A keeps talking, so give it a second more.
    proxy.thaw();
    wait_until("Redis answered A's late bytes", || {
        !proxy.state.replies.lock().unwrap().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The late write was refused by its epoch ({2, current epoch})...
    let replies = proxy.state.replies.lock().unwrap().clone();
    let refusal = b"*2\r\n:2\r\n:";
    // ...and the history shows the transfer once, completed, on both sides,
    // read via either node.
    for via in [&b, &a] {
        let rows = rows_of(via, from, id).await;
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0].status, TxStatus::Completed, "{rows:?}");
        let credit = rows_of(via, to, id).await;
        assert_eq!(credit.len(), 1, "{credit:?}");
        assert_eq!(credit[0].status, TxStatus::Completed, "{credit:?}");
    }
    assert!(
        replies.windows(refusal.len()).any(|w| w == refusal),
        "no refusal among Redis's replies to A's late bytes"
    );

    // The transfer A started is answered one way or the other (A was cut off:
    // a retryable error is fine; a replay of its key tells the outcome).
    let _ = tokio::time::timeout(PATIENCE, transfer).await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        // Shards may be moving back to A meanwhile: retried until served.
        let replay = b
            .transfer(from, key("late"), to, cny("10"), None, false)
            .await;
        let ledger = b.audit().await;
        match (replay, ledger) {
            (Ok(Outcome::Transfer(_)), Ok(ledger)) => {
                assert!(ledger.balanced(), "{ledger:?}");
                break;
            }
            other => {
                assert!(Instant::now() < deadline, "{other:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
