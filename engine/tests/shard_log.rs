//! The shard log (one batch log per shard, checkpoints per shard) on every backend:
//! the conformance suite on memory, embedded and Redis, and what only durable
//! backends can show — frames and checkpoints surviving a reopen or a SIGKILL of
//! Redis, a torn tail cut at open, and two writers racing for one shard where the
//! fence lets exactly one win.

mod support;

use okpay_engine::codec::{BatchFrame, ShardId, ShardLayout};
use okpay_engine::ids::AccountId;
use okpay_engine::store::shard_log::conformance::{self, frame};
use okpay_engine::store::shard_log::embedded::{EmbeddedShardLog, COMMIT_SHARD};
use okpay_engine::store::shard_log::memory::MemoryShardLog;
use okpay_engine::store::shard_log::redis::RedisShardLog;
use okpay_engine::store::shard_log::{ShardHead, ShardLog};
use okpay_engine::store::StoreError;
use support::redis_server::RedisServer;

#[tokio::test]
async fn memory_shard_log_conforms() {
    conformance::run_all(&MemoryShardLog::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_shard_log_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedShardLog::open(dir.path()).expect("open");
    conformance::run_all(&log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_shard_log_conforms() {
    let server = RedisServer::start();
    let log = RedisShardLog::connect(&server.url())
        .await
        .expect("connect");
    conformance::run_all(&log).await;
}

/// Writes frames 1..=3 of shard 0 (checkpointed at 1; frame 2 in the frame
/// format of builds before 2026-11-30, version 1) and 1 of shard 9.
async fn write_some(log: &dyn ShardLog) {
    let results = log
        .append(vec![frame(0, 1, b"a"), frame(9, 1, b"z")])
        .await
        .expect("append");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    for lsn in 2..=3 {
        let mut append = frame(0, lsn, b"b");
        if lsn == 2 {
            let decoded = BatchFrame::decode(&append.frame).expect("decode");
            append.frame = decoded.encode_version_1().expect("encode version 1");
        }
        let r = log.append(vec![append]).await.expect("append");
        assert_eq!(r, vec![Ok(())]);
    }
    log.checkpoint(ShardId(0), 1, vec![(AccountId(1), b"state".to_vec())])
        .await
        .expect("checkpoint");
    log.init_layout(ShardLayout::new(16).unwrap())
        .await
        .expect("layout");
}

/// Checks what `write_some` left, after a reopen.
async fn check_some(log: &dyn ShardLog) {
    assert_eq!(
        log.head(ShardId(0)).await.unwrap(),
        ShardHead {
            head: 3,
            checkpoint: 1
        }
    );
    assert_eq!(log.head(ShardId(9)).await.unwrap().head, 1);
    let lsns: Vec<u64> = log
        .read(ShardId(0), 0, 10)
        .await
        .unwrap()
        .iter()
        .map(|f| f.lsn)
        .collect();
    assert_eq!(lsns, vec![2, 3]);
    for f in log.read(ShardId(0), 0, 10).await.unwrap() {
        let decoded = BatchFrame::decode(&f.frame).expect("frames decode after a reopen");
        assert_eq!((decoded.shard, decoded.lsn), (ShardId(0), f.lsn));
        assert_eq!(decoded.records[0].payload, b"b");
        let version = u16::from_le_bytes([f.frame[4], f.frame[5]]);
        assert_eq!(version, if f.lsn == 2 { 1 } else { 2 }, "frame {}", f.lsn);
    }
    assert_eq!(
        log.load_account(ShardId(0), AccountId(1)).await.unwrap(),
        Some(b"state".to_vec())
    );
    let layout = log
        .init_layout(ShardLayout::new(64).unwrap())
        .await
        .unwrap();
    assert_eq!(layout.shards, 16, "the stored layout wins");
    let r = log.append(vec![frame(0, 3, b"stale")]).await.unwrap();
    assert!(matches!(r[0], Err(StoreError::Fenced { head: 3, .. })));
    let r = log.append(vec![frame(0, 4, b"next")]).await.unwrap();
    assert_eq!(r, vec![Ok(())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_shard_log_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = EmbeddedShardLog::open(dir.path()).expect("open");
        write_some(&log).await;
    }
    let log = EmbeddedShardLog::open(dir.path()).expect("reopen");
    check_some(&log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_shard_log_cuts_a_torn_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = EmbeddedShardLog::open(dir.path()).expect("open");
        write_some(&log).await;
    }
    // A crash in the middle of a write: half a frame after the last good one.
    let segment = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "log"))
        .expect("a segment file");
    let torn = frame(0, 4, b"never acknowledged").frame;
    let mut bytes = std::fs::read(&segment).unwrap();
    let good_len = bytes.len();
    bytes.extend_from_slice(&torn[..torn.len() - 3]);
    std::fs::write(&segment, &bytes).unwrap();

    let log = EmbeddedShardLog::open(dir.path()).expect("reopen cuts the tail");
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), good_len as u64);
    check_some(&log).await;
}

/// The one segment file of the log in `dir` numbered `n`.
fn segment_path(dir: &std::path::Path, n: u64) -> std::path::PathBuf {
    dir.join(format!("seg-{n:020}.log"))
}

/// Heads of shards 0 and 1.
async fn heads01(log: &dyn ShardLog) -> (u64, u64) {
    (
        log.head(ShardId(0)).await.expect("head").head,
        log.head(ShardId(1)).await.expect("head").head,
    )
}

/// A crash tears an append of two frames: its first frame reached the disk
/// whole, its second did not, or both did and its commit mark did not. Either
/// way the reopened log has neither: an append lands whole or not at all, so a
/// credit decided into its debit's batch never lands without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_shard_log_cuts_a_torn_append_whole() {
    // Where the tear starts, counted back from the end of the last append:
    // inside its second frame, or exactly its commit mark.
    for tear in ["second frame", "commit mark"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (kept, second_len) = {
            let log = EmbeddedShardLog::open(dir.path()).expect("open");
            let r = log
                .append(vec![frame(0, 1, b"a1"), frame(1, 1, b"b1")])
                .await
                .expect("append");
            assert_eq!(r, vec![Ok(()), Ok(())]);
            let kept = std::fs::metadata(segment_path(dir.path(), 1))
                .expect("segment 1")
                .len();
            // The append's last frame is its mark, numbered so that an older
            // build (which wants a shard's first frame numbered 1) refuses
            // the log instead of reading it without its marks.
            let bytes = std::fs::read(segment_path(dir.path(), 1)).expect("segment 1");
            let mut at = 0;
            let mut last = None;
            while at < bytes.len() {
                let (shard, lsn, len) = BatchFrame::verify(&bytes[at..]).expect("a frame");
                last = Some((shard, lsn));
                at += len;
            }
            assert_eq!(last, Some((COMMIT_SHARD, 2)));
            let second = frame(1, 2, b"b2");
            let r = log
                .append(vec![frame(0, 2, b"a2"), second.clone()])
                .await
                .expect("append");
            assert_eq!(r, vec![Ok(()), Ok(())]);
            assert_eq!(heads01(&log).await, (2, 2));
            (kept, second.frame.len() as u64)
        };
        let path = segment_path(dir.path(), 1);
        let full = std::fs::metadata(&path).expect("segment").len();
        let mark = BatchFrame {
            shard: COMMIT_SHARD,
            lsn: 3,
            records: Vec::new(),
        }
        .encode()
        .expect("a mark encodes")
        .len() as u64;
        let cut_at = match tear {
            "second frame" => full - mark - second_len / 2,
            _ => full - mark,
        };
        assert!(cut_at > kept, "{tear}: the first frame stays whole");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open segment");
        file.set_len(cut_at).expect("tear");
        drop(file);
        let log = EmbeddedShardLog::open(dir.path()).expect("reopen cuts the torn append");
        assert_eq!(heads01(&log).await, (1, 1), "{tear}: neither frame is kept");
        assert_eq!(
            std::fs::metadata(&path).expect("segment").len(),
            kept,
            "{tear}"
        );
        // The positions are free again, and the log goes on from them.
        let r = log
            .append(vec![frame(0, 2, b"a2"), frame(1, 2, b"b2")])
            .await
            .expect("append");
        assert_eq!(r, vec![Ok(()), Ok(())], "{tear}");
        drop(log);
        let log = EmbeddedShardLog::open(dir.path()).expect("reopen");
        assert_eq!(heads01(&log).await, (2, 2), "{tear}");
    }
}

/// A log written before commit marks (frames alone, no meta entry) still
/// reads frame by frame, its torn tail cut at the first bad frame as before;
/// appends after it go to a new segment, with marks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_shard_log_reads_segments_from_before_commit_marks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = segment_path(dir.path(), 1);
    let mut bytes = Vec::new();
    for f in [frame(0, 1, b"a1"), frame(1, 1, b"b1"), frame(0, 2, b"a2")] {
        bytes.extend_from_slice(&f.frame);
    }
    let good = bytes.len() as u64;
    let torn = frame(1, 2, b"b2").frame;
    bytes.extend_from_slice(&torn[..torn.len() / 2]);
    std::fs::write(&old, &bytes).expect("write an old segment");
    {
        let log = EmbeddedShardLog::open(dir.path()).expect("open an old log");
        assert_eq!(heads01(&log).await, (2, 1), "every whole frame is kept");
        assert_eq!(std::fs::metadata(&old).expect("segment").len(), good);
        let r = log
            .append(vec![frame(0, 3, b"a3"), frame(1, 2, b"b2")])
            .await
            .expect("append");
        assert_eq!(r, vec![Ok(()), Ok(())]);
    }
    assert_eq!(std::fs::metadata(&old).expect("segment").len(), good);
    assert!(
        segment_path(dir.path(), 2).exists(),
        "a new segment, with marks"
    );
    let log = EmbeddedShardLog::open(dir.path()).expect("reopen");
    assert_eq!(heads01(&log).await, (3, 2));
    let frames = log.read(ShardId(0), 0, 10).await.expect("read");
    assert_eq!(
        frames.iter().map(|f| f.lsn).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_shard_log_refuses_a_second_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _log = EmbeddedShardLog::open(dir.path()).expect("open");
    assert!(EmbeddedShardLog::open(dir.path()).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_shard_log_survives_sigkill() {
    let mut server = RedisServer::start();
    {
        let log = RedisShardLog::connect(&server.url())
            .await
            .expect("connect");
        write_some(&log).await;
    }
    server.kill9();
    server.restart();
    let log = RedisShardLog::connect(&server.url())
        .await
        .expect("reconnect");
    check_some(&log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_racing_for_a_shard_one_wins_each_position() {
    let server = RedisServer::start();
    let a = RedisShardLog::connect(&server.url())
        .await
        .expect("connect");
    let b = RedisShardLog::connect(&server.url())
        .await
        .expect("connect");
    for lsn in 1..=50u64 {
        let (ra, rb) = tokio::join!(
            a.append(vec![frame(3, lsn, b"a")]),
            b.append(vec![frame(3, lsn, b"b")])
        );
        let (ra, rb) = (ra.unwrap().remove(0), rb.unwrap().remove(0));
        assert!(
            ra.is_ok() != rb.is_ok(),
            "exactly one writer wins lsn {lsn}: {ra:?} {rb:?}"
        );
    }
    assert_eq!(a.head(ShardId(3)).await.unwrap().head, 50);
    assert_eq!(a.read(ShardId(3), 0, 100).await.unwrap().len(), 50);
}
