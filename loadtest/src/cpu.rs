//! CPU time spent during the load phase, per acknowledged transfer: the
//! harness's own and, with `--server-pid`, the server's. On a small, shared
//! machine where the load generator, the server and its store compete for the
//! same cores, CPU per transfer is steadier than throughput from run to run, and
//! it says which side a change made cheaper.

use std::time::Duration;

use serde::Serialize;

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux).
const TICKS_PER_SECOND: u64 = 100;

/// User + system CPU time of process `pid` (this process when `None`) so far,
/// all threads; `None` when it can't be read (no such process, not Linux).
pub fn process_cpu(pid: Option<u32>) -> Option<Duration> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which ends with the last ')'): utime and
    // stime are the 12th and 13th of them.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis(
        (utime + stime) * 1000 / TICKS_PER_SECOND,
    ))
}

/// CPU at one instant, of the harness and (maybe) the server.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    client: Option<Duration>,
    server: Option<Duration>,
}

impl Mark {
    pub fn now(server_pid: Option<u32>) -> Mark {
        Mark {
            client: process_cpu(None),
            server: server_pid.and_then(|pid| process_cpu(Some(pid))),
        }
    }

    /// CPU per transfer between `self` and `later`, over `acked` transfers.
    pub fn per_transfer(&self, later: &Mark, acked: u64) -> CpuPerTransfer {
        let per = |a: Option<Duration>, b: Option<Duration>| {
            let spent = b?.checked_sub(a?)?;
            (acked > 0).then(|| spent.as_secs_f64() * 1e6 / acked as f64)
        };
        CpuPerTransfer {
            client_us: per(self.client, later.client),
            server_us: per(self.server, later.server),
        }
    }
}

/// Microseconds of CPU per acknowledged transfer during the load phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CpuPerTransfer {
    /// The harness itself (HTTP client, websocket subscribers, bookkeeping).
    pub client_us: Option<f64>,
    /// The server process named by `--server-pid` (all its threads).
    pub server_us: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_is_readable_and_grows_with_work() {
        let before = Mark::now(Some(std::process::id()));
        let mut x = 0u64;
        let t = std::time::Instant::now();
        while t.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_mul(31).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = Mark::now(Some(std::process::id()));
        let per = before.per_transfer(&after, 10);
        assert!(
            per.client_us.is_some() && per.server_us.is_some(),
            "{per:?}"
        );
        assert!(per.client_us.unwrap() >= 0.0);
        assert_eq!(before.per_transfer(&after, 0).client_us, None);
        assert_eq!(
            Mark::now(Some(u32::MAX)).server,
            None,
            "no such process: unknown"
        );
    }
}
