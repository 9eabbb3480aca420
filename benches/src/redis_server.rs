//! A throwaway `redis-server` for the durable benchmarks: its own loopback port and
//! data directory, configured as production must be (`appendonly yes`,
//! `appendfsync always`, `maxmemory-policy noeviction`), killed and deleted on drop.
//!
//! Adapted from the engine's test harness (`engine/tests/support/redis_server.rs`),
//! which integration tests can't share with benches. Differences: no kill/pause/
//! restart (a benchmark never needs them), and automatic AOF rewrites are off, because
//! a rewrite forks a child that competes for this machine's two cores in the middle
//! of a measurement; durability is unchanged (every write is still fsync'd to the AOF
//! before Redis replies). If `redis-server` is not installed it is installed with
//! `apt-get`, once per process.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long a fresh server may take to answer PING.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How many fresh ports a start tries before giving up.
const START_ATTEMPTS: usize = 5;

/// A running `redis-server` child process.
pub struct RedisServer {
    port: u16,
    /// Owns the data directory (AOF files, log); deleted after the server is killed.
    dir: tempfile::TempDir,
    /// Always `Some` until drop.
    child: Option<Child>,
}

impl std::fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisServer")
            .field("port", &self.port)
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl RedisServer {
    /// Starts a durable server on a free loopback port and waits until it answers.
    pub fn start() -> RedisServer {
        let binary = redis_server_binary();
        // Picking a free port and then starting the server races with anything else
        // picking ports, so a start that fails to come up is retried on a new port.
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            let mut server = RedisServer {
                port: free_port(),
                dir: tempfile::tempdir().expect("tempdir for redis"),
                child: None,
            };
            match server.spawn_and_wait(binary) {
                Ok(()) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("redis-server did not start: {last_error}");
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Size in bytes of the append-only files written so far.
    pub fn aof_bytes(&self) -> u64 {
        fn walk(dir: &Path) -> u64 {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return 0;
            };
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk(&e.path()),
                    Ok(m) if e.file_name().to_string_lossy().contains(".aof") => m.len(),
                    _ => 0,
                })
                .sum()
        }
        walk(self.dir.path())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn spawn_and_wait(&mut self, binary: &Path) -> Result<(), String> {
        let mut cmd = Command::new(binary);
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--appendonly")
            .arg("yes")
            .arg("--appendfsync")
            .arg("always")
            .arg("--auto-aof-rewrite-percentage")
            .arg("0")
            .arg("--save")
            .arg("")
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--maxmemory-policy")
            .arg("noeviction")
            .arg("--logfile")
            .arg(self.log_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", binary.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if ping(self.port) {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                return Err(format!(
                    "redis-server exited with {status}; log:\n{}",
                    read_log(&self.log_path())
                ));
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!(
                    "no PONG on port {} within {READY_TIMEOUT:?}; log:\n{}",
                    self.port,
                    read_log(&self.log_path())
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Kills the server (SIGKILL: nothing left to flush, everything acknowledged was
    /// already fsync'd) and reaps it.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("(no log: {e})"))
}

/// True when a server on `port` answers `PING` with `+PONG` (not `-LOADING`).
fn ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(stream.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind port 0");
    listener.local_addr().expect("local addr").port()
}

/// The path of `redis-server`, installing it with apt on first use if missing.
fn redis_server_binary() -> &'static PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(path) = find_redis_server() {
            return path;
        }
        let install = || {
            Command::new("apt-get")
                .args(["install", "-y", "redis-server"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|s| s.success())
        };
        if !install() {
            // A fresh image often has no package lists yet.
            let updated = Command::new("apt-get")
                .arg("update")
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                updated && install(),
                "could not install redis-server with apt-get"
            );
        }
        find_redis_server().expect("redis-server still not found after installing it")
    })
}

fn find_redis_server() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("redis-server"))
        .find(|p| p.is_file())
}
