//! A throwaway Redis Cluster for integration tests: three masters (no replicas) on
//! free loopback ports, each with its own data directory and the production
//! durability settings (AOF, `appendfsync always`), joined with
//! `redis-cli --cluster create` and ready once every node reports
//! `cluster_state:ok`. Any master can be killed with SIGKILL and restarted on the
//! same port and directory (so it replays its AOF and rejoins with its
//! `nodes.conf`); everything is killed and deleted on drop.
//!
//! Tests of the cluster-safe storage need the real thing: only a real cluster
//! answers `CROSSSLOT` to a script spanning two slots and `MOVED` to a command sent
//! to the wrong master.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::redis_server::{redis_cli_binary, redis_server_binary};

/// How long a node may take to answer PING after start (AOF replay included).
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the cluster may take to reach `cluster_state:ok` after creation or a
/// master's restart.
const CLUSTER_OK_TIMEOUT: Duration = Duration::from_secs(30);
/// Masters in the test cluster: the smallest number `redis-cli --cluster create`
/// accepts.
const MASTERS: usize = 3;

/// One master: its process, port and directory.
struct Node {
    port: u16,
    /// Owns the data directory (AOF, nodes.conf, log); deleted on drop.
    dir: tempfile::TempDir,
    /// `None` between `kill9` and `restart`.
    child: Option<Child>,
}

/// A running three-master Redis Cluster.
pub struct RedisCluster {
    binary: PathBuf,
    appendfsync: &'static str,
    nodes: Vec<Node>,
}

impl RedisCluster {
    /// Starts three masters with `appendonly yes`, `appendfsync always`, joins them
    /// and waits until the cluster serves every slot.
    pub fn start() -> RedisCluster {
        Self::start_with("always")
    }

    /// Like [`start`](Self::start) but with `appendfsync everysec` on every master:
    /// a cluster that may lose a second of acknowledged writes.
    pub fn start_with_everysec() -> RedisCluster {
        Self::start_with("everysec")
    }

    fn start_with(appendfsync: &'static str) -> RedisCluster {
        let binary = redis_server_binary().clone();
        // Picking free ports races with other tests picking ports too (and a cluster
        // node also listens on port + 10000), so a failed start is retried afresh.
        let mut last_error = String::new();
        for _ in 0..5 {
            let mut cluster = RedisCluster {
                binary: binary.clone(),
                appendfsync,
                nodes: Vec::new(),
            };
            match cluster.create() {
                Ok(()) => return cluster,
                Err(e) => last_error = e,
            }
        }
        panic!("redis cluster did not start: {last_error}");
    }

    fn create(&mut self) -> Result<(), String> {
        for _ in 0..MASTERS {
            let node = Node {
                port: free_cluster_port(),
                dir: tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?,
                child: None,
            };
            self.nodes.push(node);
            let i = self.nodes.len() - 1;
            self.spawn_and_wait(i)?;
        }
        let mut cmd = Command::new(redis_cli_binary());
        cmd.arg("--cluster").arg("create");
        for node in &self.nodes {
            cmd.arg(format!("127.0.0.1:{}", node.port));
        }
        let out = cmd
            .arg("--cluster-replicas")
            .arg("0")
            .arg("--cluster-yes")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("run redis-cli --cluster create: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        self.wait_cluster_ok()
    }

    /// `redis://127.0.0.1:<port>/` of the first master; any master's URL works for
    /// a client that discovers the cluster.
    pub fn url(&self) -> String {
        self.node_url(0)
    }

    /// `redis://127.0.0.1:<port>/` of master `i` (0, 1 or 2).
    pub fn node_url(&self, i: usize) -> String {
        format!("redis://127.0.0.1:{}/", self.nodes[i].port)
    }

    /// Number of masters.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: a cluster has masters.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// `CONFIG SET <name> <value>` on master `i` alone (e.g. one careless master
    /// among durable ones); panics unless the master answers `+OK`.
    pub fn config_set(&self, i: usize, name: &str, value: &str) {
        let command = format!("CONFIG SET {name} {value}\r\n");
        let reply = ask(self.nodes[i].port, command.as_bytes());
        assert!(
            reply.as_deref().is_some_and(|r| r.starts_with("+OK")),
            "CONFIG SET {name} {value} on master {i}: {reply:?}"
        );
    }

    /// `127.0.0.1:<port>` of master `i`, as the cluster names it.
    pub fn node_address(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.nodes[i].port)
    }

    /// Kills master `i` with SIGKILL and waits until the process is gone. With no
    /// replicas, its slots are unavailable until [`restart`](Self::restart).
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            // `Child::kill` sends SIGKILL on Unix.
            child.kill().expect("SIGKILL redis-server");
            child.wait().expect("reap redis-server");
        }
    }

    /// Starts master `i` again on its port and directory (it replays its AOF and
    /// rejoins from its `nodes.conf`), then waits for `cluster_state:ok`.
    pub fn restart(&mut self, i: usize) {
        self.kill9(i);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.spawn_and_wait(i) {
                Ok(()) => break,
                Err(e) if Instant::now() > deadline => panic!("redis-server restart: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        if let Err(e) = self.wait_cluster_ok() {
            panic!("cluster after restarting master {i}: {e}");
        }
    }

    fn spawn_and_wait(&mut self, i: usize) -> Result<(), String> {
        let node = &mut self.nodes[i];
        let log = node.dir.path().join("redis.log");
        let child = Command::new(&self.binary)
            .arg("--port")
            .arg(node.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--cluster-enabled")
            .arg("yes")
            .arg("--cluster-config-file")
            .arg(node.dir.path().join("nodes.conf"))
            // Short enough that a restarted master is seen again quickly; there are
            // no replicas to fail over to, so it never triggers a failover.
            .arg("--cluster-node-timeout")
            .arg("2000")
            .arg("--appendonly")
            .arg("yes")
            .arg("--appendfsync")
            .arg(self.appendfsync)
            .arg("--auto-aof-rewrite-percentage")
            .arg("0")
            .arg("--save")
            .arg("")
            .arg("--dir")
            .arg(node.dir.path())
            .arg("--maxmemory-policy")
            .arg("noeviction")
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.binary.display()))?;
        node.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if ask(node.port, b"PING\r\n").is_some_and(|r| r.starts_with("+PONG")) {
                return Ok(());
            }
            let exited = node
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                node.child = None;
                return Err(format!(
                    "redis-server exited with {status}; log:\n{}",
                    read_log(&log)
                ));
            }
            if Instant::now() > deadline {
                if let Some(mut child) = node.child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                return Err(format!(
                    "no PONG on port {} within {READY_TIMEOUT:?}",
                    node.port
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits until every running master reports `cluster_state:ok`.
    fn wait_cluster_ok(&self) -> Result<(), String> {
        let deadline = Instant::now() + CLUSTER_OK_TIMEOUT;
        loop {
            let states: Vec<bool> = self
                .nodes
                .iter()
                .filter(|n| n.child.is_some())
                .map(|n| {
                    ask(n.port, b"CLUSTER INFO\r\n").is_some_and(|r| r.contains("cluster_state:ok"))
                })
                .collect();
            if states.iter().all(|ok| *ok) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "cluster_state not ok within {CLUSTER_OK_TIMEOUT:?} ({states:?})"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill9(i);
        }
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("(no log: {e})"))
}

/// Sends one inline command and returns what the server answered in one read
/// (enough for PING and CLUSTER INFO), or `None` when it could not be asked.
fn ask(port: u16, command: &[u8]) -> Option<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    stream.write_all(command).ok()?;
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// A free loopback port whose cluster bus port (port + 10000) is free too.
fn free_cluster_port() -> u16 {
    loop {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind port 0");
        let port = listener.local_addr().expect("local addr").port();
        if port < 55_535 && TcpListener::bind((Ipv4Addr::LOCALHOST, port + 10_000)).is_ok() {
            return port;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `redis-cli -c` (follows MOVED) against master `i`.
    fn cli(cluster: &RedisCluster, i: usize, args: &[&str]) -> String {
        let out = Command::new(redis_cli_binary())
            .arg("-c")
            .arg("-p")
            .arg(cluster.nodes[i].port.to_string())
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    #[test]
    fn a_cluster_serves_every_slot_and_a_killed_master_comes_back_with_its_data() {
        let mut cluster = RedisCluster::start();
        let info = ask(cluster.nodes[1].port, b"CLUSTER INFO\r\n").expect("cluster info");
        assert!(info.contains("cluster_slots_assigned:16384"), "{info}");
        assert!(info.contains("cluster_known_nodes:3"), "{info}");
        // Keys on every master (these tags hash to slots of different masters).
        for (i, key) in ["{a}k", "{b}k", "{c}k"].iter().enumerate() {
            assert_eq!(cli(&cluster, i, &["SET", key, "v"]), "OK");
        }
        for i in 0..cluster.len() {
            cluster.restart(i);
        }
        for key in ["{a}k", "{b}k", "{c}k"] {
            assert_eq!(cli(&cluster, 2, &["GET", key]), "v", "{key} after restarts");
        }
    }
}
