//! Several `okpay` processes (`--node-id`) on one real redis-server or on a
//! Redis Cluster of 3 masters, over loopback HTTP only: the shards are shared,
//! any node answers any request, and money survives a node killed with SIGKILL
//! under load, a Redis master killed with SIGKILL under load (restarted from
//! its AOF), and a node stopped with SIGSTOP past its lease (a stale owner),
//! which on waking can't append and steps down. At the end: every acknowledged transfer is in both
//! histories exactly once, no balance is negative, the money is all there, the
//! audit balances, and every shard has one owner among the live nodes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use okpay_engine::cluster::{LeaseConfig, Leases, NodeId};
use okpay_engine::codec::{ShardId, ShardLayout};
use okpay_engine::store::redis::RedisStore;
use okpay_testsupport::redis_cluster::RedisCluster;
use okpay_testsupport::redis_server::RedisServer;
use serde_json::{json, Value};

const ADMIN: &str = "cluster-admin";
const CARD: &str = "4111 1111 1111 1111";
const SHARDS: u16 = 8;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `okpay` process.
struct Node {
    name: String,
    port: u16,
    child: Option<Child>,
    log: PathBuf,
}

impl Node {
    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> String {
        self.child.as_ref().expect("running").id().to_string()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid())
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A stopped process would not die of SIGKILL until continued.
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(child.id().to_string())
                .status();
        }
        self.kill9();
    }
}

/// The Redis the nodes share: one server, or a Redis Cluster of 3 masters
/// (found from one master's URL, as `okpay` finds it).
enum Backing {
    Single(RedisServer),
    /// Behind a lock so a test can kill and restart a master while requests
    /// are in flight.
    Cluster(std::sync::Mutex<RedisCluster>),
}

impl Backing {
    fn url(&self) -> String {
        match self {
            Backing::Single(r) => r.url(),
            Backing::Cluster(c) => c.lock().unwrap().url(),
        }
    }
}

struct Nodes {
    redis: Backing,
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
    client: reqwest::Client,
}

impl Nodes {
    async fn start(n: usize) -> Nodes {
        Nodes::start_on(n, Backing::Single(RedisServer::start())).await
    }

    async fn start_on(n: usize, redis: Backing) -> Nodes {
        let dir = tempfile::tempdir().unwrap();
        // Small deployments: few shards, two executors; fraud limits out of the
        // way of a bank test that sends many small transfers.
        std::fs::write(
            dir.path().join("okpay.toml"),
            format!(
                "[engine]\nshards = {SHARDS}\nexecutors = 2\n\n[policy.fraud]\nchallenge_over = \"1000\"\nvelocity_max_ops = 100000\nvelocity_window_s = 60\nvelocity_max_sum = \"100000\"\nfan_out_max_new_recipients = 100000\nfan_out_window_s = 600\nunchallenged_window_s = 86400\n"
            ),
        )
        .unwrap();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(12))
            .build()
            .unwrap();
        let mut nodes = Nodes {
            redis,
            dir,
            nodes: Vec::new(),
            client,
        };
        for i in 0..n {
            let node = nodes.spawn(&format!("node-{i}"), free_port());
            nodes.nodes.push(node);
        }
        for i in 0..n {
            nodes.wait_ready(i).await;
        }
        nodes
    }

    fn spawn(&self, name: &str, port: u16) -> Node {
        let log = self.dir.path().join(format!("{name}-{port}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_okpay"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(self.dir.path().join(name))
            .arg("--redis")
            .arg(self.redis.url())
            .arg("--node-id")
            .arg(name)
            .arg("--config")
            .arg(self.dir.path().join("okpay.toml"))
            .env("OKPAY_ADMIN_TOKEN", ADMIN)
            .env("OKPAY_DEV", "1")
            .env("OKPAY_LOG", "info")
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("start okpay");
        Node {
            name: name.to_owned(),
            port,
            child: Some(child),
            log,
        }
    }

    async fn wait_ready(&self, i: usize) {
        let base = self.nodes[i].base();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(r) = self.client.get(format!("{base}/healthz")).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{} did not become ready", self.nodes[i].name);
    }

    fn bases(&self) -> Vec<String> {
        self.nodes.iter().map(Node::base).collect()
    }

    /// Registers and logs in through node `i`: (account id, token).
    async fn user(&self, i: usize, email: &str) -> (String, String) {
        let base = self.nodes[i % self.nodes.len()].base();
        let r = self
            .client
            .post(format!("{base}/v1/accounts"))
            .json(&json!({"email": email, "password": "correct horse", "display_name": email}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let id = r.json::<Value>().await.unwrap()["account_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = self
            .client
            .post(format!("{base}/v1/sessions"))
            .json(&json!({"login": email, "password": "correct horse", "device_id": "d"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let token = r.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned();
        (id, token)
    }

    /// A read through node `i`. A retryable 503 (a shard still being
    /// recovered after a failover) is asked again for up to 20 s, as the
    /// problem's `retry_after_s` tells a client to; anything else must be 200.
    async fn get(&self, i: usize, path: &str, token: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = self
                .client
                .get(format!("{}{path}", self.nodes[i].base()))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            if status == 503 && Instant::now() < deadline {
                eprintln!("{path} via node-{i}: 503, asked again");
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
            assert_eq!(status, 200, "{path}: {}", r.text().await.unwrap());
            return r.json().await.unwrap();
        }
    }

    /// The sum of node `i`'s `/metrics` samples named `name` (labels included
    /// in `name` select one series); 0 when there is none.
    async fn metric(&self, i: usize, name: &str) -> f64 {
        let url = format!("{}/metrics", self.nodes[i].base());
        let text = self
            .client
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(['{', ' ', ',']))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    async fn cny(&self, i: usize, token: &str) -> f64 {
        let body = self.get(i, "/v1/account", token).await;
        body["balances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["currency"] == "CNY")
            .map_or(0.0, |b| {
                b["available"].as_str().unwrap().parse::<f64>().unwrap()
                    + b["held"].as_str().unwrap().parse::<f64>().unwrap()
            })
    }

    async fn history_ids(&self, i: usize, token: &str) -> Vec<String> {
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..100 {
            let path = match &cursor {
                Some(c) => format!("/v1/transactions?limit=100&cursor={c}"),
                None => "/v1/transactions?limit=100".to_owned(),
            };
            let page = self.get(i, &path, token).await;
            for item in page["items"].as_array().unwrap() {
                if item["type"] == "transfer" {
                    ids.push(item["id"].as_str().unwrap().to_owned());
                }
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return ids,
            }
        }
        panic!("history does not end");
    }
}

/// Sends one request with an idempotency key, retrying the same key on the
/// next node while the answer is retryable (503, 429, a timeout, a dead node),
/// for at most 30 s. `Some(body)` once acknowledged (201).
async fn post_until_answered(
    client: &reqwest::Client,
    bases: &[String],
    first: usize,
    path: &str,
    token: &str,
    key: &str,
    body: &Value,
) -> Option<Value> {
    // Longer than a takeover (lease time + a tick) plus a remote timeout.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut attempt = 0;
    while Instant::now() < deadline {
        let base = &bases[(first + attempt) % bases.len()];
        attempt += 1;
        let sent = client
            .post(format!("{base}{path}"))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status() == 201 => return Some(r.json().await.unwrap()),
            // 408: the server timed the request out unread (a frozen node woke up).
            Ok(r) if [408, 409, 429, 503].contains(&r.status().as_u16()) => {}
            Ok(r) => panic!("{path} {key}: {} {}", r.status(), r.text().await.unwrap()),
            Err(_) => {} // a dead or stopped node: try the next one
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// The owner of every shard, from the lease keys.
async fn owners(url: &str) -> BTreeMap<ShardId, String> {
    let leases = Leases::new(
        RedisStore::connect(url).await.unwrap(),
        NodeId::parse("observer").unwrap(),
        ShardLayout::new(SHARDS).unwrap(),
        LeaseConfig::default(),
    );
    let mut out = BTreeMap::new();
    for s in 0..SHARDS {
        if let Some((node, _)) = leases.holder(ShardId(s)).await.unwrap() {
            out.insert(ShardId(s), node.as_str().to_owned());
        }
    }
    out
}

/// Waits (bounded) until every shard is owned by one of `live`, each of them
/// owning some.
async fn wait_spread(url: &str, live: &[&str]) -> BTreeMap<ShardId, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let owners = owners(url).await;
        let holders: BTreeSet<&str> = owners.values().map(String::as_str).collect();
        let wanted: BTreeSet<&str> = live.iter().copied().collect();
        if owners.len() == usize::from(SHARDS) && holders == wanted {
            return owners;
        }
        assert!(
            Instant::now() < deadline,
            "shards not spread over {live:?}: {owners:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct Acked {
    from: usize,
    to: usize,
    id: String,
}

/// The end-state checks shared by both tests, asked of node `via`.
async fn check_books(nodes: &Nodes, via: usize, users: &[(String, String)], acked: &[Acked]) {
    // Money conserved, nothing negative, nothing left in flight.
    let deadline = Instant::now() + Duration::from_secs(20);
    let ledger = loop {
        let ledger = nodes.get(via, "/v1/admin/ledger", ADMIN).await;
        if ledger["currencies"]["CNY"]["in_flight"] == "0.00" {
            break ledger;
        }
        assert!(Instant::now() < deadline, "money stuck in flight: {ledger}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(ledger["balanced"], true, "{ledger}");
    let mut total = 0.0;
    for (_, token) in users {
        let b = nodes.cny(via, token).await;
        assert!(b >= 0.0, "a negative balance: {b}");
        total += b;
    }
    assert!(
        (total - 100.0 * users.len() as f64).abs() < 1e-6,
        "money not conserved: {total}"
    );
    // Every acknowledged transfer exactly once in both histories.
    let mut histories = Vec::new();
    for (_, token) in users {
        histories.push(nodes.history_ids(via, token).await);
    }
    for t in acked {
        for side in [t.from, t.to] {
            let n = histories[side].iter().filter(|id| **id == t.id).count();
            assert_eq!(n, 1, "{} appears {n} times in user {side}'s history", t.id);
        }
    }
}

/// Kills process `pid` with SIGKILL once `after` transfers are acknowledged
/// (or after 60 s); yields when it did.
fn kill_after(
    pid: String,
    done: Arc<AtomicUsize>,
    after: usize,
) -> tokio::task::JoinHandle<Instant> {
    tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(60);
        while done.load(Ordering::Relaxed) < after && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = Command::new("kill").arg("-KILL").arg(&pid).status();
        Instant::now()
    })
}

/// `n` users registered through different nodes, each funded with 100.00 CNY
/// (deposits sent through yet other nodes).
async fn funded_users(nodes: &Nodes, n: usize, prefix: &str) -> Vec<(String, String)> {
    let mut users = Vec::new();
    for i in 0..n {
        users.push(nodes.user(i, &format!("{prefix}{i}@example.com")).await);
    }
    let bases = nodes.bases();
    for (i, (_, token)) in users.iter().enumerate() {
        let body = json!({"amount": "100.00", "currency": "CNY", "method": "bank_card", "card_number": CARD});
        let r = post_until_answered(
            &nodes.client,
            &bases,
            i + 1,
            "/v1/deposits",
            token,
            &format!("dep-{i}"),
            &body,
        )
        .await;
        assert!(r.is_some(), "deposit {i} not acknowledged");
    }
    users
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_share_the_shards_and_survive_a_kill() {
    let mut nodes = Nodes::start(3).await;
    let url = nodes.redis.url();
    wait_spread(&url, &["node-0", "node-1", "node-2"]).await;

    // Users registered, logged in and funded through different nodes.
    let users = funded_users(&nodes, 6, "u").await;
    // Every node reads every account (routed to the owner).
    for i in 0..3 {
        for (_, token) in &users {
            assert_eq!(nodes.cny(i, token).await, 100.0);
        }
    }

    // Transfers through all nodes.
    const PER_USER: usize = 12;
    let done = Arc::new(AtomicUsize::new(0));
    let acked = bank_load_keys(&nodes, &users, PER_USER, done, "a").await;
    assert_eq!(acked.len(), users.len() * PER_USER, "all answered");
    check_books(&nodes, 0, &users, &acked).await;
    // The hops are counted on each node's /metrics: commands and reads sent
    // to other nodes, saga entries (credits and their answers), and entries
    // served for other nodes.
    let mut hops = BTreeMap::new();
    for i in 0..3 {
        for kind in ["execute", "state", "saga"] {
            let name = format!("okpay_remote_requests_total{{kind=\"{kind}\"}}");
            *hops.entry(kind).or_insert(0.0) += nodes.metric(i, &name).await;
        }
        *hops.entry("served").or_insert(0.0) += nodes.metric(i, "okpay_remote_served_total").await;
    }
    // Every node read every user and sent transfers for every sender, so
    // commands and reads crossed; saga entries need a credit between users
    // whose shards two nodes own (all six users on one node's shards is
    // possible), so they are only reported.
    eprintln!("cross-node requests after the first round: {hops:?}");
    for kind in ["execute", "state", "served"] {
        assert!(hops[kind] > 0.0, "no {kind} hop counted: {hops:?}");
    }

    // Kill -9 under load: a second round with node-2 killed mid-way.
    let done = Arc::new(AtomicUsize::new(0));
    let killer = kill_after(
        nodes.nodes[2].pid(),
        done.clone(),
        users.len() * PER_USER / 3,
    );
    let second: Vec<Acked> = bank_load_keys(&nodes, &users, PER_USER, done, "k").await;
    let killed_at = killer.await.unwrap();
    nodes.nodes[2].kill9(); // reaps it
    let owners = wait_spread(&url, &["node-0", "node-1"]).await;
    eprintln!(
        "after the kill: shards {:?}, served again within {:?} of it",
        owners,
        killed_at.elapsed()
    );
    let mut all = acked;
    all.extend(second);
    check_books(&nodes, 1, &users, &all).await;

    // Then another: node-1 killed mid-way through a third round; node-0 alone
    // takes every shard.
    let done = Arc::new(AtomicUsize::new(0));
    let killer = kill_after(
        nodes.nodes[1].pid(),
        done.clone(),
        users.len() * PER_USER / 3,
    );
    let third: Vec<Acked> = bank_load_keys(&nodes, &users, PER_USER, done, "l").await;
    killer.await.unwrap();
    nodes.nodes[1].kill9();
    wait_spread(&url, &["node-0"]).await;
    all.extend(third);
    check_books(&nodes, 0, &users, &all).await;

    // Both come back under their names and get their shares again.
    for i in [1, 2] {
        let port = free_port();
        nodes.nodes[i] = nodes.spawn(&format!("node-{i}"), port);
        nodes.wait_ready(i).await;
    }
    wait_spread(&url, &["node-0", "node-1", "node-2"]).await;
    check_books(&nodes, 1, &users, &all).await;
    check_books(&nodes, 2, &users, &all).await;
}

/// Every user's transfers (1.00 each to the others in turn), concurrently,
/// spread over the nodes, keys prefixed by `prefix`; `done` counts the
/// acknowledged ones.
async fn bank_load_keys(
    nodes: &Nodes,
    users: &[(String, String)],
    per_user: usize,
    done: Arc<AtomicUsize>,
    prefix: &str,
) -> Vec<Acked> {
    let bases = nodes.bases();
    let tasks = users.iter().enumerate().map(|(u, (_, token))| {
        let (client, bases, done) = (nodes.client.clone(), bases.clone(), done.clone());
        let targets: Vec<(usize, String)> = (1..users.len())
            .map(|k| {
                (
                    (u + k) % users.len(),
                    users[(u + k) % users.len()].0.clone(),
                )
            })
            .collect();
        let token = token.clone();
        let prefix = prefix.to_owned();
        async move {
            let mut acked = Vec::new();
            for j in 0..per_user {
                let (to, to_id) = &targets[(j + 2) % targets.len()];
                let key = format!("{prefix}-{u}-{j}");
                let body = json!({"to": to_id, "amount": "1.00", "currency": "CNY"});
                if let Some(t) = post_until_answered(
                    &client,
                    &bases,
                    u + j,
                    "/v1/transfers",
                    &token,
                    &key,
                    &body,
                )
                .await
                {
                    acked.push(Acked {
                        from: u,
                        to: *to,
                        id: t["id"].as_str().unwrap().to_owned(),
                    });
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
            acked
        }
    });
    futures::future::join_all(tasks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_stopped_past_its_lease_steps_down_and_loses_nothing() {
    let nodes = Nodes::start(2).await;
    let url = nodes.redis.url();
    wait_spread(&url, &["node-0", "node-1"]).await;
    let users = funded_users(&nodes, 4, "s").await;

    // Load on both nodes; node-0 is frozen (SIGSTOP) for longer than its
    // lease, then resumed.
    let done = Arc::new(AtomicUsize::new(0));
    let stopper = async {
        let deadline = Instant::now() + Duration::from_secs(60);
        while done.load(Ordering::Relaxed) < 8 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        nodes.nodes[0].signal("STOP");
        let stopped = Instant::now();
        // node-1 takes every shard once node-0's leases expired.
        let owners = wait_spread(&url, &["node-1"]).await;
        eprintln!(
            "node-1 took every shard {:?} after the stop: {owners:?}",
            stopped.elapsed()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        nodes.nodes[0].signal("CONT");
    };
    let (acked, ()) = tokio::join!(
        bank_load_keys(&nodes, &users, 16, done.clone(), "s"),
        stopper
    );
    // The resumed node stepped down from what it held (its appends refused or
    // its renewals found lost), then the two share the shards again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nodes.nodes[0].log_text().contains("shard dropped") {
        assert!(
            Instant::now() < deadline,
            "node-0 never stepped down:\n{}",
            nodes.nodes[0].log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_spread(&url, &["node-0", "node-1"]).await;
    check_books(&nodes, 0, &users, &acked).await;
    check_books(&nodes, 1, &users, &acked).await;
}

/// The bank test on a Redis Cluster of 3 masters, found by the nodes from one
/// master's URL: a master killed with SIGKILL under load (no replica: its
/// slots are down until it restarts from its own AOF) loses nothing
/// acknowledged; requests meanwhile fail retryably and are retried with their
/// keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_on_a_redis_cluster_survive_a_master_kill() {
    let cluster = Backing::Cluster(std::sync::Mutex::new(RedisCluster::start()));
    let nodes = Nodes::start_on(3, cluster).await;
    let url = nodes.redis.url();
    wait_spread(&url, &["node-0", "node-1", "node-2"]).await;
    let users = funded_users(&nodes, 6, "c").await;
    let done = Arc::new(AtomicUsize::new(0));
    let acked = bank_load_keys(&nodes, &users, 6, done, "a").await;
    check_books(&nodes, 0, &users, &acked).await;

    // Master 1 killed a third of the way through a second round, restarted a
    // second later.
    let done = Arc::new(AtomicUsize::new(0));
    let total = users.len() * 6;
    let killer = async {
        let deadline = Instant::now() + Duration::from_secs(60);
        while done.load(Ordering::Relaxed) < total / 3 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let Backing::Cluster(c) = &nodes.redis else {
            unreachable!("a cluster test")
        };
        c.lock().unwrap().kill9(1);
        tokio::time::sleep(Duration::from_secs(1)).await;
        tokio::task::block_in_place(|| c.lock().unwrap().restart(1));
    };
    let (second, ()) = tokio::join!(bank_load_keys(&nodes, &users, 6, done.clone(), "m"), killer);
    let mut all = acked;
    all.extend(second);
    wait_spread(&url, &["node-0", "node-1", "node-2"]).await;
    for via in 0..3 {
        check_books(&nodes, via, &users, &all).await;
    }
}

/// Runs `okpay --strict-durability` against `redis_url` and waits (bounded)
/// for it to exit: `(exit code, what it printed)`. A process still serving
/// after 60 s fails the test.
fn strict_start(redis_url: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("okpay.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_okpay"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--redis")
        .arg(redis_url)
        .arg("--strict-durability")
        .env("OKPAY_ADMIN_TOKEN", ADMIN)
        .env("OKPAY_DEV", "1")
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .expect("start okpay");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!(
                "okpay still running under --strict-durability:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status.code(), std::fs::read_to_string(&log).unwrap())
}

/// `--strict-durability` refuses, at start-up, a Redis Cluster where one
/// master (not the one the URL names) fsyncs only every second, naming that
/// master; and a standalone Redis without AOF. The process exits non-zero.
#[test]
fn strict_durability_refuses_a_cluster_with_one_careless_master() {
    let cluster = RedisCluster::start();
    cluster.config_set(2, "appendfsync", "everysec");
    let (code, said) = strict_start(&cluster.node_url(0));
    assert!(code.is_some_and(|c| c != 0), "exit {code:?}:\n{said}");
    assert!(said.contains("--strict-durability"), "{said}");
    let careless = cluster.node_address(2);
    assert!(
        said.contains(&format!(
            "{careless}: appendfsync is `everysec`, must be `always`"
        )),
        "the careless master is not named:\n{said}"
    );
    for durable in [0, 1] {
        assert!(
            !said.contains(&format!("{}:", cluster.node_address(durable))),
            "a durable master was blamed:\n{said}"
        );
    }

    let standalone = RedisServer::start_without_aof();
    let (code, said) = strict_start(&standalone.url());
    assert!(code.is_some_and(|c| c != 0), "exit {code:?}:\n{said}");
    assert!(said.contains("appendonly is `no`, must be `yes`"), "{said}");
}
