//! Crash tests of the shard log, 30 runs per durable backend: a writer appends
//! frames to several shards (one call per round, several shards per call, with a
//! checkpoint now and then) and is cut off at a random moment — the writing
//! process SIGKILLed (embedded) or Redis SIGKILLed (Redis). After a restart every
//! acknowledged frame and checkpoint must be there, each shard's frames must run
//! without a gap from its checkpoint to its head, and appending must go on at
//! head + 1.
//!
//! The embedded writer runs in a child process (this test binary again, running
//! only `child_writer`, told where to write by an environment variable), so the
//! kill is a real one: no destructor, no flush, possibly a half-written frame.
//! A process kill leaves the page cache intact, so this checks recovery (torn
//! tails, the index rebuilt from the segments, checkpoints in redb), not the
//! `fdatasync` itself; the Redis runs kill the server, whose AOF is fsync'd
//! before it answers (`appendfsync always`).

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use okpay_engine::codec::{BatchFrame, ShardId};
use okpay_engine::ids::AccountId;
use okpay_engine::store::shard_log::conformance::frame;
use okpay_engine::store::shard_log::embedded::EmbeddedShardLog;
use okpay_engine::store::shard_log::redis::RedisShardLog;
use okpay_engine::store::shard_log::ShardLog;
use support::redis_server::RedisServer;

const RUNS: u64 = 30;
const SHARDS: u16 = 8;
/// The child writer stops by itself after this many calls (every loop bounded).
const MAX_CALLS: u64 = 20_000;
/// Tells a child process where to write (and that it is the child).
const CHILD_DIR: &str = "OKPAY_SHARD_LOG_CRASH_CHILD_DIR";

/// What the writer saw acknowledged: per shard, the last frame and checkpoint.
#[derive(Default, Debug)]
struct Acked {
    frames: HashMap<u16, u64>,
    checkpoints: HashMap<u16, u64>,
}

impl Acked {
    fn apply_line(&mut self, line: &str) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        if let [kind, shard, lsn] = parts.as_slice() {
            let (Ok(shard), Ok(lsn)) = (shard.parse::<u16>(), lsn.parse::<u64>()) else {
                return;
            };
            let map = match *kind {
                "ack" => &mut self.frames,
                "ckpt" => &mut self.checkpoints,
                _ => return,
            };
            let e = map.entry(shard).or_default();
            *e = (*e).max(lsn);
        }
    }
}

/// One round of the writer: which shards the call touches varies by round.
fn shards_of_round(round: u64) -> impl Iterator<Item = u16> {
    (0..SHARDS).filter(move |s| !(round + u64::from(*s)).is_multiple_of(3))
}

/// Writes rounds to `log` from its stored heads until `MAX_CALLS` or the first
/// failure, reporting each acknowledged frame and checkpoint to `report`.
async fn write_rounds(log: &dyn ShardLog, first_round: u64, mut report: impl FnMut(String)) {
    let mut heads = HashMap::new();
    for s in 0..SHARDS {
        // The kill may come before the heads are read (a busy machine): then
        // nothing was acknowledged, which the verification handles like any run.
        let Ok(pos) = log.head(ShardId(s)).await else {
            return;
        };
        heads.insert(s, pos.head);
    }
    for round in first_round..first_round + MAX_CALLS {
        let batch = shards_of_round(round)
            .map(|s| frame(s, heads[&s] + 1, format!("round {round}").as_bytes()))
            .collect();
        let Ok(results) = log.append(batch).await else {
            return;
        };
        for (s, r) in shards_of_round(round).zip(results) {
            r.expect("a single writer is never fenced");
            let head = heads.get_mut(&s).unwrap();
            *head += 1;
            report(format!("ack {s} {head}"));
        }
        if round.is_multiple_of(25) {
            let s = (round / 25 % u64::from(SHARDS)) as u16;
            let lsn = heads[&s];
            let state = lsn.to_le_bytes().to_vec();
            if log
                .checkpoint(ShardId(s), lsn, vec![(AccountId(u64::from(s) + 1), state)])
                .await
                .is_err()
            {
                return;
            }
            report(format!("ckpt {s} {lsn}"));
        }
    }
}

/// Checks a reopened log against what was acknowledged, and that it takes the
/// next frame of every shard.
async fn verify(log: &dyn ShardLog, acked: &Acked, run: u64) {
    for s in 0..SHARDS {
        let pos = log.head(ShardId(s)).await.expect("head");
        let want = acked.frames.get(&s).copied().unwrap_or(0);
        assert!(
            pos.head >= want,
            "run {run}: shard {s} head {} lost acknowledged frame {want}",
            pos.head
        );
        let ckpt = acked.checkpoints.get(&s).copied().unwrap_or(0);
        assert!(
            pos.checkpoint >= ckpt,
            "run {run}: shard {s} lost checkpoint {ckpt}"
        );
        if pos.checkpoint > 0 {
            let state = log
                .load_account(ShardId(s), AccountId(u64::from(s) + 1))
                .await
                .expect("load")
                .expect("a checkpointed state");
            let at = u64::from_le_bytes(state.as_slice().try_into().expect("8 bytes"));
            assert_eq!(
                at, pos.checkpoint,
                "run {run}: shard {s} state is the checkpoint's"
            );
        }
        let frames = log.read(ShardId(s), 0, 1_000_000).await.expect("read");
        let lsns: Vec<u64> = frames.iter().map(|f| f.lsn).collect();
        let expected: Vec<u64> = (pos.checkpoint + 1..=pos.head).collect();
        assert_eq!(
            lsns, expected,
            "run {run}: shard {s} frames from checkpoint to head"
        );
        for f in &frames {
            let decoded = BatchFrame::decode(&f.frame).expect("every kept frame decodes");
            assert_eq!((decoded.shard, decoded.lsn), (ShardId(s), f.lsn));
        }
        let next = log
            .append(vec![frame(s, pos.head + 1, b"after restart")])
            .await
            .expect("append after restart");
        assert_eq!(next, vec![Ok(())], "run {run}: shard {s} takes head + 1");
    }
}

/// The child side of the embedded test: does nothing unless started by it.
#[test]
fn child_writer() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let log = EmbeddedShardLog::open(std::path::Path::new(&dir)).expect("child open");
        write_rounds(&log, 0, |line| {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        })
        .await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_acknowledged_frames_survive_sigkill_of_the_writer() {
    if std::env::var(CHILD_DIR).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let mut acked = Acked::default();
    for run in 0..RUNS {
        let mut child = Command::new(&exe)
            .args(["--exact", "child_writer", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the writer");
        let stdout = child.stdout.take().expect("piped stdout");
        // Kill after a varying number of acknowledged frames.
        let kill_after = 20 + (run * 37) % 300;
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = 0;
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            acked.apply_line(&line);
            if line.starts_with("ack ") {
                seen += 1;
                if seen >= kill_after {
                    break;
                }
            }
        }
        child.kill().expect("SIGKILL the writer");
        // Lines already printed were acknowledged before the kill: count them too.
        for line in lines.map_while(Result::ok) {
            acked.apply_line(&line);
        }
        child.wait().expect("reap the writer");
        let log = EmbeddedShardLog::open(dir.path()).expect("reopen after SIGKILL");
        verify(&log, &acked, run).await;
        for s in 0..SHARDS {
            // The verification appended one frame per shard; the next child resumes there.
            *acked.frames.entry(s).or_default() = log.head(ShardId(s)).await.unwrap().head;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_acknowledged_frames_survive_sigkill_of_redis() {
    let mut server = RedisServer::start();
    let mut round = 0;
    for run in 0..RUNS {
        let acked = Arc::new(Mutex::new(Acked::default()));
        let log = Arc::new(
            RedisShardLog::connect(&server.url())
                .await
                .expect("connect"),
        );
        let writer = {
            let (log, acked) = (log.clone(), acked.clone());
            tokio::spawn(async move {
                write_rounds(log.as_ref(), round, |line| {
                    acked.lock().unwrap().apply_line(&line)
                })
                .await;
            })
        };
        tokio::time::sleep(Duration::from_millis(20 + (run * 13) % 120)).await;
        server.kill9();
        tokio::time::timeout(Duration::from_secs(30), writer)
            .await
            .expect("the writer stops once redis is gone")
            .expect("writer task");
        server.restart();
        let log = RedisShardLog::connect(&server.url())
            .await
            .expect("reconnect");
        let acked = std::mem::take(&mut *acked.lock().unwrap());
        verify(&log, &acked, run).await;
        round += MAX_CALLS;
    }
}
