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

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use okpay_engine::codec::ShardId;
use okpay_engine::domain::command::{DepositMethod, Profile};
use okpay_engine::domain::history::TxRecord;
use okpay_engine::domain::notification::TxStatus;
use okpay_engine::ids::{AccountId, OpId, OpKind};
use okpay_engine::{Engine, Outcome};
use support::cluster_nodes::{cny, held, key, node};
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

/// Row-set members of `account` in `shard`'s row sets (layout 3 and the
/// compact layouts 4 and 5), counted per row key (a row's copies in group
/// members under its key and " (in a group)"): what is stored, before reads
/// merge two members of one key.
async fn members_per_key(url: &str, shard: ShardId, account: AccountId) -> BTreeMap<String, usize> {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let prefix = account.0.to_be_bytes();
    let members: Vec<Vec<u8>> = redis::cmd("ZRANGEBYLEX")
        .arg(format!("okpay:{{{}}}:rowset", shard.tag()))
        .arg([&b"["[..], &prefix].concat())
        .arg([&b"["[..], &prefix, b"\xff"].concat())
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut keys = BTreeMap::new();
    for m in members {
        let end = m[8..]
            .iter()
            .position(|&b| b == 0)
            .expect("a zero ends the key");
        *keys
            .entry(String::from_utf8_lossy(&m[8..8 + end]).into_owned())
            .or_insert(0) += 1;
    }
    let upper = match account.0.checked_add(1) {
        Some(next) => [&b"("[..], &next.to_be_bytes()].concat(),
        None => b"+".to_vec(),
    };
    // Layout 4 and the layout-5 sets of every bucket (`store::retention`).
    let buckets: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("okpay:{{{}}}:hist:buckets", shard.tag()))
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut compact: Vec<Vec<u8>> = Vec::new();
    let sets = std::iter::once(format!("okpay:{{{}}}:hist", shard.tag())).chain(
        buckets
            .iter()
            .map(|b| format!("okpay:{{{}}}:hist:{b}", shard.tag())),
    );
    for set in sets {
        let found: Vec<Vec<u8>> = redis::cmd("ZRANGEBYLEX")
            .arg(set)
            .arg([&b"["[..], &prefix].concat())
            .arg(&upper)
            .query_async(&mut conn)
            .await
            .unwrap();
        compact.extend(found);
    }
    // A group member (rows first written together) counts apart: a later
    // version of one of its rows is a single member over it, by design.
    for m in compact {
        let rows = okpay_engine::codec::row::decode_members(account, &m).expect("a compact row");
        for row in rows {
            let key = if row.grouped {
                format!("{} (in a group)", row.key)
            } else {
                row.key
            };
            *keys.entry(key).or_insert(0) += 1;
        }
    }
    keys
}

/// Two nodes on one redis-server, A behind the freezable proxy, B direct,
/// each holding half the shards.
struct Pair {
    redis: RedisServer,
    proxy: Proxy,
    a: Engine,
    b: Engine,
}

impl Pair {
    async fn start() -> Pair {
        let redis = RedisServer::start();
        let upstream: SocketAddr = redis
            .url()
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .parse()
            .expect("a loopback address");
        let proxy = Proxy::start(upstream).await;
        let a = node(&proxy.url(), "node-a", SHARDS).await;
        let b = node(&redis.url(), "node-b", SHARDS).await;
        let half = usize::from(SHARDS) / 2;
        wait_until("an even split", || {
            let (sa, sb) = (held(&a), held(&b));
            sa.len() == half && sb.len() == half && sa.is_disjoint(&sb)
        })
        .await;
        Pair { redis, proxy, a, b }
    }

    /// Waits until A sent a row write (the proxy armed before froze on it),
    /// then until B took every shard, A's leases having expired.
    async fn a_cut_off_at_its_row_write(&self) {
        wait_until("A's row write", || self.proxy.frozen()).await;
        wait_until("B takes A's shards", || {
            held(&self.b).len() == usize::from(SHARDS)
        })
        .await;
        assert!(self.proxy.state.held.load(Ordering::SeqCst) > 0);
    }

    /// Lets A's held bytes reach Redis (after whatever B wrote meanwhile) and
    /// waits until Redis answered them; returns whether one of the answers
    /// was a fenced script's refusal by epoch (`{2, current epoch}`).
    async fn a_delivered_late(&self) -> bool {
        // Redis answers one connection in order, so replies to later commands
        // mean the held ones ran; A keeps talking, so give it a second more.
        self.proxy.thaw();
        wait_until("Redis answered A's late bytes", || {
            !self.proxy.state.replies.lock().unwrap().is_empty()
        })
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let replies = self.proxy.state.replies.lock().unwrap();
        let refusal = b"*2\r\n:2\r\n:";
        replies.windows(refusal.len()).any(|w| w == refusal)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deposed_nodes_late_row_write_is_refused() {
    let pair = Pair::start().await;
    let (a, b) = (&pair.a, &pair.b);

    // The sender on A's shards, the recipient on B's: the credit crosses
    // through Redis, so A writes the transfer's row (processing) before it
    // hears of the credit.
    let from = account_on(a, &held(a), "from").await;
    let to = account_on(b, &held(b), "to").await;
    // Every row so far is written (a history read waits for them).
    a.history(from, None, 10, None).await.expect("history");

    pair.proxy.arm();
    let transfer = tokio::spawn({
        let a = a.clone();
        async move {
            a.transfer(from, key("late"), to, cny("10"), None, false)
                .await
        }
    });
    // A is cut off with its row write on the wire. B replays A's log and
    // completes the transfer.
    pair.a_cut_off_at_its_row_write().await;
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

    // A's row write reaches Redis now, after B's rows.
    let refused = pair.a_delivered_late().await;
    // The history shows the transfer once, completed, on both sides, read via
    // either node; and one row-set member stands for each row.
    for via in [b, a] {
        let rows = rows_of(via, from, id).await;
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0].status, TxStatus::Completed, "{rows:?}");
        let credit = rows_of(via, to, id).await;
        assert_eq!(credit.len(), 1, "{credit:?}");
        assert_eq!(credit[0].status, TxStatus::Completed, "{credit:?}");
    }
    for account in [from, to] {
        let shard = a.layout().shard_of(account);
        let keys = members_per_key(&pair.redis.url(), shard, account).await;
        assert!(keys.values().all(|&n| n == 1), "{account}: {keys:?}");
    }
    assert!(refused, "A's late row write was not refused by its epoch");

    // The transfer A started is answered one way or the other (A was cut off:
    // a retryable error is fine); a replay of its key tells the outcome.
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

/// Refused rows are not lost: a deposit acknowledged by A, whose row write
/// reached Redis only after B took its shard over (and was refused), is in the
/// history, written by B when it replayed the deposit's frame — which it finds
/// after the checkpoint because A's checkpoints never pass a frame whose rows
/// are not written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rows_a_deposed_node_could_not_write_are_written_by_the_next_owner() {
    let pair = Pair::start().await;
    let (a, b) = (&pair.a, &pair.b);
    let account = account_on(a, &held(a), "saver").await;
    a.history(account, None, 10, None).await.expect("history");

    pair.proxy.arm();
    let deposit = tokio::spawn({
        let a = a.clone();
        async move {
            a.deposit(
                account,
                key("late-deposit"),
                cny("5"),
                DepositMethod::BankCard,
            )
            .await
        }
    });
    pair.a_cut_off_at_its_row_write().await;
    // Acknowledged: the frame was durable before its row write went out.
    let outcome = tokio::time::timeout(PATIENCE, deposit)
        .await
        .expect("the deposit is answered")
        .expect("deposit task");
    let Ok(Outcome::Deposit(receipt)) = outcome else {
        panic!("the deposit was not acknowledged: {outcome:?}");
    };
    assert!(
        pair.a_delivered_late().await,
        "A's row write was not refused"
    );

    let deadline = Instant::now() + PATIENCE;
    loop {
        let rows = match b.history(account, None, 200, None).await {
            Ok((rows, _)) => rows,
            Err(_) => Vec::new(),
        };
        let deposits: Vec<&TxRecord> = rows.iter().filter(|r| r.id == receipt.id).collect();
        if let [row] = &deposits[..] {
            assert_eq!(row.status, TxStatus::Completed, "{row:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the acknowledged deposit is not in the history: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
