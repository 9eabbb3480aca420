//! The [`ShardLog`] contract as executable checks, run against every backend
//! (memory, embedded, Redis) by `engine/tests/shard_log.rs`. Each check uses its
//! own shard numbers, so all checks can share one store; [`run_all`] panics
//! listing every failed check by backend and name.

use super::{ShardAppend, ShardHead, ShardLog, StoredFrame};
use crate::codec::{BatchFrame, LogRecord, RecordKind, ShardId, ShardLayout};
use crate::ids::AccountId;
use crate::store::StoreError;

/// The result of one check: `Err` says what was wrong.
pub type Check = Result<(), String>;

/// Fails the check with a message when `cond` is false.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

macro_rules! ensure_eq {
    ($left:expr, $right:expr, $($fmt:tt)+) => {{
        let (left, right) = (&$left, &$right);
        if left != right {
            return Err(format!("{}: got {:?}, want {:?}", format!($($fmt)+), left, right));
        }
    }};
}

fn fail(what: &str) -> impl Fn(StoreError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// A valid frame of `shard` at `lsn` with one record whose payload is `tag`.
pub fn frame(shard: u16, lsn: u64, tag: &[u8]) -> ShardAppend {
    let bytes = BatchFrame {
        shard: ShardId(shard),
        lsn,
        records: vec![LogRecord {
            kind: RecordKind::Events,
            account: AccountId(u64::from(shard) + 1),
            seq: lsn,
            payload: tag.to_vec(),
        }],
    }
    .encode()
    // unwrap: a small frame always encodes.
    .unwrap();
    ShardAppend {
        shard: ShardId(shard),
        lsn,
        frame: bytes,
        epoch: None,
    }
}

/// The payloads of the stored frames, as written by [`frame`].
fn tags(frames: &[StoredFrame]) -> Result<Vec<(u64, Vec<u8>)>, String> {
    frames
        .iter()
        .map(|f| {
            let decoded =
                BatchFrame::decode(&f.frame).map_err(|e| format!("frame {}: {e}", f.lsn))?;
            Ok((f.lsn, decoded.records[0].payload.clone()))
        })
        .collect()
}

async fn append_one(log: &dyn ShardLog, a: ShardAppend) -> Result<Result<(), StoreError>, String> {
    let mut r = log.append(vec![a]).await.map_err(fail("append"))?;
    r.pop()
        .ok_or_else(|| "append answered no result".to_owned())
}

/// The layout is stored on first use and never changed afterwards.
pub async fn layout_is_stored_once(log: &dyn ShardLog) -> Check {
    let first = log
        .init_layout(ShardLayout::new(64).unwrap())
        .await
        .map_err(fail("init"))?;
    ensure_eq!(first.shards, 64, "first layout");
    let again = log
        .init_layout(ShardLayout::new(8).unwrap())
        .await
        .map_err(fail("init again"))?;
    ensure_eq!(
        again.shards,
        64,
        "a later proposal does not change the layout"
    );
    Ok(())
}

/// Only the frame at head + 1 is written; anything else is fenced and not written.
pub async fn appends_are_fenced(log: &dyn ShardLog) -> Check {
    let s = 1;
    let gap = append_one(log, frame(s, 2, b"gap")).await?;
    ensure_eq!(
        gap,
        Err(StoreError::Fenced {
            shard: s,
            head: 0,
            got: 2
        }),
        "a gap is refused"
    );
    ensure_eq!(
        append_one(log, frame(s, 1, b"one")).await?,
        Ok(()),
        "the next frame"
    );
    let stale = append_one(log, frame(s, 1, b"stale")).await?;
    ensure_eq!(
        stale,
        Err(StoreError::Fenced {
            shard: s,
            head: 1,
            got: 1
        }),
        "a stale writer's frame is refused"
    );
    let head = log.head(ShardId(s)).await.map_err(fail("head"))?;
    ensure_eq!(
        head,
        ShardHead {
            head: 1,
            checkpoint: 0
        },
        "head"
    );
    let frames = log.read(ShardId(s), 0, 10).await.map_err(fail("read"))?;
    ensure_eq!(
        tags(&frames)?,
        vec![(1, b"one".to_vec())],
        "only the accepted frame is kept"
    );
    Ok(())
}

/// One call carries several shards; each shard's outcome is its own, in order
/// — or, on a log whose appends land whole ([`ShardLog::atomic_append`]), a
/// refused frame refuses the call: nothing is written, the others are answered
/// `Unavailable`, and the same frames land once the refused one is left out.
pub async fn one_call_many_shards(log: &dyn ShardLog) -> Check {
    let results = log
        .append(vec![
            frame(2, 1, b"a"),
            frame(3, 5, b"b"),
            frame(4, 1, b"c"),
        ])
        .await
        .map_err(fail("append"))?;
    let fenced = Err(StoreError::Fenced {
        shard: 3,
        head: 0,
        got: 5,
    });
    let whole = log.atomic_append();
    if whole {
        ensure!(
            matches!(&results[..], [Err(StoreError::Unavailable(_)), f, Err(StoreError::Unavailable(_))] if *f == fenced),
            "a whole append refused with its fenced frame: {results:?}"
        );
        for s in [2u16, 3, 4] {
            let frames = log.read(ShardId(s), 0, 10).await.map_err(fail("read"))?;
            ensure!(
                frames.is_empty(),
                "shard {s}: nothing written, read {} frames",
                frames.len()
            );
        }
        let again = log
            .append(vec![frame(2, 1, b"a"), frame(4, 1, b"c")])
            .await
            .map_err(fail("append"))?;
        ensure_eq!(again, vec![Ok(()), Ok(())], "the rest, alone");
    } else {
        ensure_eq!(results, vec![Ok(()), fenced, Ok(())], "per-shard results");
    }
    for (s, want) in [
        (2u16, vec![(1u64, b"a".to_vec())]),
        (3, vec![]),
        (4, vec![(1, b"c".to_vec())]),
    ] {
        let frames = log.read(ShardId(s), 0, 10).await.map_err(fail("read"))?;
        ensure_eq!(tags(&frames)?, want, "shard {s}");
    }
    Ok(())
}

/// Reads return frames after a position, in order, bounded by the limit.
pub async fn reads_are_ordered_and_bounded(log: &dyn ShardLog) -> Check {
    let s = 5;
    for lsn in 1..=5u64 {
        let r = append_one(log, frame(s, lsn, format!("f{lsn}").as_bytes())).await?;
        ensure_eq!(r, Ok(()), "append {lsn}");
    }
    let frames = log.read(ShardId(s), 2, 2).await.map_err(fail("read"))?;
    ensure_eq!(
        tags(&frames)?,
        vec![(3, b"f3".to_vec()), (4, b"f4".to_vec())],
        "read after 2, limit 2"
    );
    let rest = log.read(ShardId(s), 4, 100).await.map_err(fail("read"))?;
    ensure_eq!(tags(&rest)?, vec![(5, b"f5".to_vec())], "read after 4");
    let empty = log.read(ShardId(99), 0, 100).await.map_err(fail("read"))?;
    ensure_eq!(empty.len(), 0, "an unused shard has no frames");
    Ok(())
}

/// A checkpoint stores states, advances the position, trims what it covers;
/// an older one changes nothing; one past the head is refused; the head survives
/// a full trim.
pub async fn checkpoints_store_states_and_trim(log: &dyn ShardLog) -> Check {
    let s = 6;
    let (a, b) = (AccountId(0x00ff_0000_0000_0001), AccountId(7));
    for lsn in 1..=4u64 {
        ensure_eq!(
            append_one(log, frame(s, lsn, b"x")).await?,
            Ok(()),
            "append {lsn}"
        );
    }
    log.checkpoint(ShardId(s), 2, vec![(a, vec![0, 1, 0xff])])
        .await
        .map_err(fail("checkpoint 2"))?;
    ensure_eq!(
        log.head(ShardId(s)).await.map_err(fail("head"))?,
        ShardHead {
            head: 4,
            checkpoint: 2
        },
        "positions after checkpoint 2"
    );
    let kept: Vec<u64> = log
        .read(ShardId(s), 0, 10)
        .await
        .map_err(fail("read"))?
        .iter()
        .map(|f| f.lsn)
        .collect();
    ensure_eq!(
        kept,
        vec![3, 4],
        "frames covered by the checkpoint are trimmed"
    );
    ensure_eq!(
        log.load_account(ShardId(s), a)
            .await
            .map_err(fail("load"))?,
        Some(vec![0, 1, 0xff]),
        "checkpointed state"
    );
    ensure_eq!(
        log.load_account(ShardId(s), b)
            .await
            .map_err(fail("load"))?,
        None,
        "unknown account"
    );
    log.checkpoint(ShardId(s), 1, vec![(a, b"old".to_vec())])
        .await
        .map_err(fail("older checkpoint"))?;
    ensure_eq!(
        log.load_account(ShardId(s), a)
            .await
            .map_err(fail("load"))?,
        Some(vec![0, 1, 0xff]),
        "an older checkpoint writes nothing"
    );
    let past = log.checkpoint(ShardId(s), 9, vec![]).await;
    ensure_eq!(
        past,
        Err(StoreError::Fenced {
            shard: s,
            head: 4,
            got: 9
        }),
        "a checkpoint past the head"
    );
    log.checkpoint(
        ShardId(s),
        4,
        vec![(a, b"new".to_vec()), (b, b"b".to_vec())],
    )
    .await
    .map_err(fail("checkpoint 4"))?;
    ensure_eq!(
        log.read(ShardId(s), 0, 10)
            .await
            .map_err(fail("read"))?
            .len(),
        0,
        "fully trimmed"
    );
    ensure_eq!(
        log.load_account(ShardId(s), a)
            .await
            .map_err(fail("load"))?,
        Some(b"new".to_vec()),
        "newer state"
    );
    let c = AccountId(a.0 ^ 0x5555);
    ensure_eq!(
        log.load_accounts(ShardId(s), &[b, c, a])
            .await
            .map_err(fail("load many"))?,
        vec![Some(b"b".to_vec()), None, Some(b"new".to_vec())],
        "states of several accounts, in their order, unknown ones None"
    );
    ensure_eq!(
        log.load_accounts(ShardId(s), &[])
            .await
            .map_err(fail("load none"))?,
        Vec::<Option<Vec<u8>>>::new(),
        "no accounts asked, none answered"
    );
    ensure_eq!(
        append_one(log, frame(s, 5, b"after")).await?,
        Ok(()),
        "append after a full trim"
    );
    ensure_eq!(
        append_one(log, frame(s, 4, b"stale")).await?,
        Err(StoreError::Fenced {
            shard: s,
            head: 5,
            got: 4
        }),
        "the head survives the trim"
    );
    Ok(())
}

/// A shard's log may hold frames of both formats (version 1 written by builds
/// before 2026-11-30, version 2 after, LZ4-compressed when that is smaller):
/// the store accepts and returns each byte for byte, and each decodes.
pub async fn frames_of_every_version_read(log: &dyn ShardLog) -> Check {
    let s = 7;
    let records = |n: u64| -> Vec<LogRecord> {
        (1..=n)
            .map(|seq| LogRecord {
                kind: RecordKind::Events,
                account: AccountId(0x1a91_e3a2_a972_26b6),
                seq,
                payload: format!("transfer {seq} of CNY 12.50 to acc_067802d95c42618c")
                    .into_bytes(),
            })
            .collect()
    };
    let frames: Vec<BatchFrame> = (1..=3u64)
        .map(|lsn| BatchFrame {
            shard: ShardId(s),
            lsn,
            records: records(lsn * 4),
        })
        .collect();
    let written = [
        frames[0].encode_version_1(),
        frames[1].encode(),
        frames[2].encode_version_1(),
    ]
    .into_iter()
    .collect::<Result<Vec<Vec<u8>>, _>>()
    .map_err(|e| format!("encode: {e}"))?;
    for (f, bytes) in frames.iter().zip(&written) {
        let r = append_one(
            log,
            ShardAppend {
                shard: ShardId(s),
                lsn: f.lsn,
                frame: bytes.clone(),
                epoch: None,
            },
        )
        .await?;
        ensure_eq!(r, Ok(()), "append {}", f.lsn);
    }
    let stored = log.read(ShardId(s), 0, 10).await.map_err(fail("read"))?;
    ensure_eq!(stored.len(), 3, "frames read");
    for ((f, want), got) in frames.iter().zip(written).zip(stored) {
        ensure_eq!(got.frame, want, "frame {} byte for byte", f.lsn);
        let decoded =
            BatchFrame::decode(&got.frame).map_err(|e| format!("frame {}: {e}", f.lsn))?;
        ensure_eq!(decoded, *f, "frame {} decoded", f.lsn);
    }
    Ok(())
}

/// Runs every check against `log` and panics listing each failed one.
pub async fn run_all(log: &dyn ShardLog) {
    let results = [
        ("layout_is_stored_once", layout_is_stored_once(log).await),
        ("appends_are_fenced", appends_are_fenced(log).await),
        ("one_call_many_shards", one_call_many_shards(log).await),
        (
            "reads_are_ordered_and_bounded",
            reads_are_ordered_and_bounded(log).await,
        ),
        (
            "checkpoints_store_states_and_trim",
            checkpoints_store_states_and_trim(log).await,
        ),
        (
            "frames_of_every_version_read",
            frames_of_every_version_read(log).await,
        ),
    ];
    let failed: Vec<String> = results
        .into_iter()
        .filter_map(|(name, r)| r.err().map(|e| format!("{name}: {e}")))
        .collect();
    assert!(
        failed.is_empty(),
        "{} shard log: {} check(s) failed:\n{}",
        log.backend_name(),
        failed.len(),
        failed.join("\n")
    );
}
