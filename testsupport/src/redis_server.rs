//! A throwaway `redis-server` for integration tests: own loopback port, own data
//! directory, durable settings (AOF with `appendfsync always`), killed on drop.
//!
//! Tests need a real Redis to prove what mocks can't (durability across a SIGKILL,
//! reconnection, server-side atomicity), and each test needs its own so they run in
//! parallel without sharing keys. If `redis-server` is not installed the harness
//! installs it with apt, once per process.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long a server may take to answer PING after start (AOF replay included).
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `redis-server` child process.
pub struct RedisServer {
    binary: PathBuf,
    port: u16,
    /// Owns the data directory (AOF files, log); deleted when the server is dropped.
    dir: tempfile::TempDir,
    appendonly: bool,
    /// `None` between `kill9` and `restart`.
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server configured as production must be: `appendonly yes`,
    /// `appendfsync always`, `maxmemory-policy noeviction`, no RDB snapshots.
    pub fn start() -> RedisServer {
        Self::start_with(true)
    }

    /// Starts a server with AOF off: what a careless deployment looks like.
    pub fn start_without_aof() -> RedisServer {
        Self::start_with(false)
    }

    fn start_with(appendonly: bool) -> RedisServer {
        let binary = redis_server_binary().clone();
        // Picking a free port and then starting the server races with other tests
        // picking ports too, so a start that fails to come up is retried on a new port.
        let mut last_error = String::new();
        for _ in 0..5 {
            let mut server = RedisServer {
                binary: binary.clone(),
                port: free_port(),
                dir: tempfile::tempdir().expect("tempdir for redis"),
                appendonly,
                child: None,
            };
            match server.spawn_and_wait() {
                Ok(()) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("redis-server did not start: {last_error}");
    }

    /// Bytes of AOF on disk (what durability costs in writes).
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

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server with SIGKILL: no shutdown hook runs, nothing is flushed
    /// beyond what Redis already fsync'd. Waits until the process is gone.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `Child::kill` sends SIGKILL on Unix.
            child.kill().expect("SIGKILL redis-server");
            child.wait().expect("reap redis-server");
        }
    }

    /// Freezes the server with SIGSTOP: it keeps its connections open but answers
    /// nothing, the case that only timeouts can detect.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("redis-server is running").id();
        let status = Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    /// Starts the server again on the same port and directory, so it replays its AOF.
    pub fn restart(&mut self) {
        self.kill9();
        let deadline = Instant::now() + READY_TIMEOUT;
        // The old socket is closed by the kernel at once, but retry briefly in case
        // the port is still being released.
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!("redis-server restart: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        // A server without AOF also gets the weaker fsync policy, so the durability
        // check has more than one problem to report.
        let (appendonly, appendfsync) = if self.appendonly {
            ("yes", "always")
        } else {
            ("no", "everysec")
        };
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--appendonly")
            .arg(appendonly)
            .arg("--appendfsync")
            .arg(appendfsync)
            // No background AOF rewrite competing for the cores mid-measurement;
            // durability is unchanged.
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
            .map_err(|e| format!("spawn {}: {e}", self.binary.display()))?;
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
                self.kill9();
                return Err(format!(
                    "no PONG on port {} within {READY_TIMEOUT:?}; log:\n{}",
                    self.port,
                    read_log(&self.log_path())
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill9();
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
pub(crate) fn redis_server_binary() -> &'static PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(path) = find_redis_server() {
            return path;
        }
        let install = || {
            Command::new("apt-get")
                .args([
                    "-o",
                    "DPkg::Lock::Timeout=600",
                    "install",
                    "-y",
                    "redis-server",
                ])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|s| s.success())
        };
        if !install() {
            // A fresh image often has no package lists yet.
            let updated = Command::new("apt-get")
                .args(["-o", "DPkg::Lock::Timeout=600", "update"])
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

/// The path of `redis-cli` (installed with `redis-server`: Debian's package depends
/// on `redis-tools`, which ships it).
pub(crate) fn redis_cli_binary() -> PathBuf {
    let server = redis_server_binary();
    find_binary("redis-cli")
        .or_else(|| server.parent().map(|dir| dir.join("redis-cli")))
        .expect("redis-cli not found next to redis-server")
}

fn find_redis_server() -> Option<PathBuf> {
    find_binary("redis-server")
}

fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}
