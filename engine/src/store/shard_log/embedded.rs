//! The shard log on local disk: the frames of every shard in append-only segment
//! files, one `fdatasync` per `append` call (however many shards it carries), and
//! checkpoints (account states, checkpoint positions, the layout) in a redb file.
//!
//! Why one segment stream for all shards rather than one file per shard: a batch
//! touching 64 shards would otherwise cost 64 fsyncs. Shards stay separable — every
//! frame names its shard — and an in-memory index per shard (rebuilt at open by
//! walking the segments) finds a shard's frames. A segment is deleted once every
//! frame in it is covered by its shard's checkpoint.
//!
//! Crash safety: a frame is acknowledged only after `fdatasync` of its segment (and,
//! for a new segment, of the directory). At open, the last segment is walked frame
//! by frame; the first frame that is incomplete or fails its checksum marks a torn
//! tail, which was never acknowledged, and the file is cut there. A bad frame in
//! an earlier segment is corruption and refuses to open. After any I/O error while
//! appending, the page cache no longer says what is on disk, so the log refuses
//! further appends (`Unavailable`) until it is opened again.
//!
//! **Appends land whole** ([`ShardLog::atomic_append`], since 2026-12-01): every
//! append ends with a **commit mark**, a frame of no records of the pseudo-shard
//! [`COMMIT_SHARD`] (numbered on from the last one), written in the same write as
//! the append's frames. At open, the frames after a segment's last commit mark
//! belong to an append that never completed (a crash tore it: some of its pages
//! reached the disk, not all), so they are cut with it, whole. A refused frame
//! (fenced) refuses its whole append. So a transfer's credit, decided into its
//! debit's batch, can never land without it. Segments from before commit marks
//! (numbered below the `appends_whole_from` entry of the database's meta table,
//! set at the first open by a build that writes them) are read as before.
//! Marks are numbered from 2: an older build takes them for frames of a shard
//! it does not host, whose first frame must be numbered 1, so it refuses to
//! open this log (corrupt) rather than read it without its marks or append
//! frames without marks that a later open would cut.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use redb::{Database, ReadableTable, TableDefinition};

use super::{
    check_checkpoint, check_fence, not_written, ShardAppend, ShardHead, ShardLog, StoredFrame,
};
use crate::codec::{BatchFrame, ShardId, ShardLayout};
use crate::ids::AccountId;
use crate::store::embedded::{begin_write, db_err};
use crate::store::{StoreError, StoreFuture};

/// A segment is closed for appends once it is this large.
const SEGMENT_MAX: u64 = 64 * 1024 * 1024;
/// The checkpoint database inside the data directory.
const DB_FILE: &str = "shards.redb";
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const CHECKPOINTS: TableDefinition<u16, u64> = TableDefinition::new("checkpoints");
const STATES: TableDefinition<(u16, u64), &[u8]> = TableDefinition::new("states");
/// The meta entry: the first segment whose appends end with a commit mark.
const WHOLE_FROM: &str = "appends_whole_from";

/// The pseudo-shard of commit marks: a frame of it, with no records, closes
/// every append written since commit marks. No layout has this many shards.
pub const COMMIT_SHARD: ShardId = ShardId(u16::MAX);

/// The number of the first commit mark (see the module doc: not 1).
pub const FIRST_MARK: u64 = 2;

fn segment_name(n: u64) -> String {
    format!("seg-{n:020}.log")
}

fn io_err(what: &str, e: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("shard log {what}: {e}"))
}

struct Segment {
    file: File,
    len: u64,
    /// Whether its appends end with a commit mark.
    whole: bool,
    /// The newest lsn of each shard with a frame here, to know when it may go.
    newest: HashMap<u16, u64>,
}

#[derive(Clone, Copy)]
struct Loc {
    segment: u64,
    offset: u64,
    len: u32,
}

#[derive(Default)]
struct Shard {
    pos: ShardHead,
    frames: BTreeMap<u64, Loc>,
}

struct Inner {
    dir: PathBuf,
    segments: BTreeMap<u64, Segment>,
    /// The segment appends go to (may not exist yet).
    active: u64,
    shards: HashMap<u16, Shard>,
    /// The first segment whose appends end with a commit mark.
    whole_from: u64,
    /// The last commit mark's number.
    commit_lsn: u64,
    poisoned: Option<String>,
}

/// The embedded [`ShardLog`].
pub struct EmbeddedShardLog {
    inner: Arc<Mutex<Inner>>,
    db: Arc<Database>,
}

impl EmbeddedShardLog {
    /// Opens (or creates) the log in `dir`: reads the checkpoints, walks the
    /// segments, cuts a torn tail. Blocking; call at start-up.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| io_err("create dir", e))?;
        let db = Database::builder()
            .set_cache_size(16 * 1024 * 1024)
            .create(dir.join(DB_FILE))
            .map_err(db_err)?;
        let mut numbers: Vec<u64> = std::fs::read_dir(dir)
            .map_err(|e| io_err("list", e))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_prefix("seg-")?
                    .strip_suffix(".log")?
                    .parse()
                    .ok()
            })
            .collect();
        numbers.sort_unstable();
        let last = numbers.last().copied();
        let txn = begin_write(&db)?;
        let whole_from = {
            let mut meta = txn.open_table(META).map_err(db_err)?;
            let stored = meta
                .get(WHOLE_FROM)
                .map_err(db_err)?
                .map(|v| v.value().to_vec());
            match stored {
                Some(bytes) => u64::from_le_bytes(bytes.as_slice().try_into().map_err(|_| {
                    StoreError::Corrupt(format!("meta {WHOLE_FROM}: {} bytes", bytes.len()))
                })?),
                None => {
                    // The first open by a build writing commit marks: they
                    // start in a segment of their own.
                    let from = last.map_or(1, |n| n + 1);
                    meta.insert(WHOLE_FROM, from.to_le_bytes().as_slice())
                        .map_err(db_err)?;
                    from
                }
            }
        };
        txn.open_table(STATES).map_err(db_err)?;
        let mut shards: HashMap<u16, Shard> = HashMap::new();
        {
            let table = txn.open_table(CHECKPOINTS).map_err(db_err)?;
            for entry in table.iter().map_err(db_err)? {
                let (k, v) = entry.map_err(db_err)?;
                let ckpt = v.value();
                shards.entry(k.value()).or_default().pos = ShardHead {
                    head: ckpt,
                    checkpoint: ckpt,
                };
            }
        }
        txn.commit().map_err(db_err)?;

        let mut segments = BTreeMap::new();
        let mut commit_lsn = FIRST_MARK - 1;
        for n in numbers {
            let path = dir.join(segment_name(n));
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| io_err("open segment", e))?;
            let bytes = std::fs::read(&path).map_err(|e| io_err("read segment", e))?;
            let whole = n >= whole_from;
            let mut offset = 0usize;
            let mut newest = HashMap::new();
            // Frames of an append whose commit mark is not read yet, and where
            // the last complete append ends.
            let mut pending: Vec<(ShardId, u64, usize, usize)> = Vec::new();
            let mut end = 0usize;
            let mut torn = None;
            while offset < bytes.len() {
                match BatchFrame::verify(&bytes[offset..]) {
                    Ok((shard, lsn, len)) => {
                        if !whole {
                            pending.push((shard, lsn, offset, len));
                            end = offset + len;
                        } else if shard == COMMIT_SHARD {
                            commit_lsn = commit_lsn.max(lsn);
                            end = offset + len;
                        } else {
                            pending.push((shard, lsn, offset, len));
                        }
                        if !whole || shard == COMMIT_SHARD {
                            for (shard, lsn, at, len) in pending.drain(..) {
                                index_frame(&mut shards, &mut newest, n, shard, lsn, at, len)?;
                            }
                        }
                        offset += len;
                    }
                    Err(e) => {
                        torn = Some(e);
                        break;
                    }
                }
            }
            if torn.is_some() || end < bytes.len() {
                let why = torn.map_or_else(
                    || "an append without its commit mark".to_string(),
                    |e| e.to_string(),
                );
                if Some(n) != last {
                    return Err(StoreError::Corrupt(format!("segment {n} at {end}: {why}")));
                }
                tracing::warn!(segment = n, offset = end, error = %why, "cutting the torn tail of the shard log");
                file.set_len(end as u64)
                    .and_then(|()| file.sync_all())
                    .map_err(|e| io_err("cut torn tail", e))?;
            }
            segments.insert(
                n,
                Segment {
                    file,
                    len: end as u64,
                    whole,
                    newest,
                },
            );
        }
        // Appends go on in the last segment when it ends its appends with
        // commit marks, else in the first one that does.
        let active = last.map_or(whole_from, |n| n.max(whole_from));
        let mut inner = Inner {
            dir: dir.to_owned(),
            segments,
            active,
            shards,
            whole_from,
            commit_lsn,
            poisoned: None,
        };
        inner.drop_covered_segments();
        Ok(EmbeddedShardLog {
            inner: Arc::new(Mutex::new(inner)),
            db: Arc::new(db),
        })
    }

    /// Runs `work` on the blocking pool.
    async fn blocking<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Mutex<Inner>, &Database) -> Result<T, StoreError> + Send + 'static,
    {
        let (inner, db) = (Arc::clone(&self.inner), Arc::clone(&self.db));
        tokio::task::spawn_blocking(move || work(&inner, &db))
            .await
            .map_err(|e| StoreError::Unavailable(format!("shard log task failed: {e}")))?
    }
}

/// Indexes the frame `lsn` of `shard` at `offset` of segment `n` (`len` bytes).
fn index_frame(
    shards: &mut HashMap<u16, Shard>,
    newest: &mut HashMap<u16, u64>,
    n: u64,
    shard: ShardId,
    lsn: u64,
    offset: usize,
    len: usize,
) -> Result<(), StoreError> {
    let s = shards.entry(shard.0).or_default();
    if lsn > s.pos.checkpoint {
        if lsn != s.pos.head + 1 {
            return Err(StoreError::Corrupt(format!(
                "{shard}: frame {lsn} follows {}",
                s.pos.head
            )));
        }
        s.pos.head = lsn;
        s.frames.insert(
            lsn,
            Loc {
                segment: n,
                offset: offset as u64,
                len: len as u32,
            },
        );
    }
    newest.insert(shard.0, lsn);
    Ok(())
}

impl Inner {
    /// Appends `bytes` to the active segment (creating it, or rolling to a new one)
    /// and syncs it. Returns (segment, offset).
    fn write(&mut self, bytes: &[u8]) -> Result<(u64, u64), StoreError> {
        if self
            .segments
            .get(&self.active)
            .is_some_and(|s| s.len >= SEGMENT_MAX || !s.whole)
        {
            self.active += 1;
        }
        if !self.segments.contains_key(&self.active) {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(self.dir.join(segment_name(self.active)))
                .map_err(|e| io_err("create segment", e))?;
            // The new file's directory entry must be durable too.
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_err("sync dir", e))?;
            self.segments.insert(
                self.active,
                Segment {
                    file,
                    len: 0,
                    whole: self.active >= self.whole_from,
                    newest: HashMap::new(),
                },
            );
        }
        let n = self.active;
        // unwrap: inserted above when missing.
        let seg = self.segments.get_mut(&n).unwrap();
        let offset = seg.len;
        seg.file
            .write_all_at(bytes, offset)
            .and_then(|()| seg.file.sync_data())
            .map_err(|e| io_err("append", e))?;
        seg.len += bytes.len() as u64;
        Ok((n, offset))
    }

    /// Deletes closed segments whose every frame is covered by a checkpoint.
    fn drop_covered_segments(&mut self) {
        let covered: Vec<u64> = self
            .segments
            .iter()
            .filter(|(&n, _)| n != self.active)
            .filter(|(_, seg)| {
                seg.newest.iter().all(|(shard, &lsn)| {
                    self.shards
                        .get(shard)
                        .is_some_and(|s| lsn <= s.pos.checkpoint)
                })
            })
            .map(|(&n, _)| n)
            .collect();
        for n in covered {
            // A segment that fails to go is only disk space: it is retried later,
            // and its frames are skipped at open since the checkpoint covers them.
            if std::fs::remove_file(self.dir.join(segment_name(n))).is_ok() {
                self.segments.remove(&n);
            }
        }
    }
}

impl ShardLog for EmbeddedShardLog {
    fn init_layout(&self, proposed: ShardLayout) -> StoreFuture<'_, ShardLayout> {
        Box::pin(self.blocking(move |_, db| {
            let txn = begin_write(db)?;
            let stored = {
                let mut meta = txn.open_table(META).map_err(db_err)?;
                let existing = meta
                    .get("layout")
                    .map_err(db_err)?
                    .map(|v| v.value().to_vec());
                match existing {
                    Some(bytes) => bytes,
                    None => {
                        let bytes = proposed.encode();
                        meta.insert("layout", bytes.as_slice()).map_err(db_err)?;
                        bytes
                    }
                }
            };
            txn.commit().map_err(db_err)?;
            ShardLayout::decode(&stored)
                .map_err(|e| StoreError::Corrupt(format!("stored shard layout: {e}")))
        }))
    }

    fn append(&self, batch: Vec<ShardAppend>) -> StoreFuture<'_, Vec<Result<(), StoreError>>> {
        Box::pin(self.blocking(move |inner, _| {
            let mut inner = inner.lock();
            if let Some(why) = &inner.poisoned {
                return Err(StoreError::Unavailable(format!(
                    "shard log failed earlier: {why}"
                )));
            }
            // Check every fence first, then write the frames and the commit
            // mark as one buffer: one write, one fdatasync. One refused frame
            // refuses the whole append (see the module doc).
            let mut heads: HashMap<u16, u64> = HashMap::new();
            let mut results = Vec::with_capacity(batch.len());
            let mut accepted = Vec::new();
            let mut bytes =
                Vec::with_capacity(batch.iter().map(|a| a.frame.len()).sum::<usize>() + 64);
            for a in &batch {
                let head = *heads
                    .entry(a.shard.0)
                    .or_insert_with(|| inner.shards.get(&a.shard.0).map_or(0, |s| s.pos.head));
                let checked = check_fence(a.shard, head, a.lsn).and_then(|()| {
                    match BatchFrame::verify(&a.frame) {
                        Ok((shard, lsn, len))
                            if shard == a.shard
                                && shard != COMMIT_SHARD
                                && lsn == a.lsn
                                && len == a.frame.len() =>
                        {
                            Ok(())
                        }
                        _ => Err(StoreError::Corrupt(format!(
                            "{}: frame {} is not a valid frame of that position",
                            a.shard, a.lsn
                        ))),
                    }
                });
                if checked.is_ok() {
                    heads.insert(a.shard.0, a.lsn);
                    accepted.push((a.shard.0, a.lsn, bytes.len() as u64, a.frame.len() as u32));
                    bytes.extend_from_slice(&a.frame);
                }
                results.push(checked);
            }
            if results.iter().any(Result::is_err) {
                return Ok(batch
                    .iter()
                    .zip(results)
                    .map(|(a, r)| r.and(Err(not_written(a.shard, a.lsn))))
                    .collect());
            }
            if accepted.is_empty() {
                return Ok(results);
            }
            let mark = BatchFrame {
                shard: COMMIT_SHARD,
                lsn: inner.commit_lsn + 1,
                records: Vec::new(),
            };
            bytes.extend_from_slice(
                &mark
                    .encode()
                    .map_err(|e| StoreError::Corrupt(format!("commit mark: {e}")))?,
            );
            let (segment, base) = match inner.write(&bytes) {
                Ok(at) => at,
                Err(e) => {
                    inner.poisoned = Some(e.to_string());
                    return Err(e);
                }
            };
            inner.commit_lsn = mark.lsn;
            for (shard, lsn, offset, len) in accepted {
                let s = inner.shards.entry(shard).or_default();
                s.pos.head = lsn;
                s.frames.insert(
                    lsn,
                    Loc {
                        segment,
                        offset: base + offset,
                        len,
                    },
                );
                // unwrap: `write` just wrote to this segment.
                inner
                    .segments
                    .get_mut(&segment)
                    .unwrap()
                    .newest
                    .insert(shard, lsn);
            }
            Ok(results)
        }))
    }

    fn head(&self, shard: ShardId) -> StoreFuture<'_, ShardHead> {
        let pos = self
            .inner
            .lock()
            .shards
            .get(&shard.0)
            .map(|s| s.pos)
            .unwrap_or_default();
        Box::pin(async move { Ok(pos) })
    }

    fn read(&self, shard: ShardId, after: u64, limit: usize) -> StoreFuture<'_, Vec<StoredFrame>> {
        Box::pin(self.blocking(move |inner, _| {
            let inner = inner.lock();
            let Some(s) = inner.shards.get(&shard.0) else {
                return Ok(Vec::new());
            };
            s.frames
                .range(after + 1..)
                .take(limit)
                .map(|(&lsn, loc)| {
                    let seg = inner.segments.get(&loc.segment).ok_or_else(|| {
                        StoreError::Corrupt(format!("{shard}: frame {lsn} in a missing segment"))
                    })?;
                    let mut frame = vec![0u8; loc.len as usize];
                    seg.file
                        .read_exact_at(&mut frame, loc.offset)
                        .map_err(|e| io_err("read", e))?;
                    Ok(StoredFrame { lsn, frame })
                })
                .collect()
        }))
    }

    fn checkpoint(
        &self,
        shard: ShardId,
        lsn: u64,
        states: Vec<(AccountId, Vec<u8>)>,
    ) -> StoreFuture<'_, ()> {
        Box::pin(self.blocking(move |inner, db| {
            let now = inner
                .lock()
                .shards
                .get(&shard.0)
                .map(|s| s.pos)
                .unwrap_or_default();
            if !check_checkpoint(shard, now, lsn)? {
                return Ok(());
            }
            // The redb commit runs without the log's lock (appends go on meanwhile);
            // redb serializes writers, and the stored position only moves forward.
            let txn = begin_write(db)?;
            let advanced = {
                let mut ckpts = txn.open_table(CHECKPOINTS).map_err(db_err)?;
                let stored = ckpts.get(shard.0).map_err(db_err)?.map_or(0, |v| v.value());
                if lsn > stored {
                    let mut table = txn.open_table(STATES).map_err(db_err)?;
                    for (account, state) in &states {
                        table
                            .insert((shard.0, account.0), state.as_slice())
                            .map_err(db_err)?;
                    }
                    ckpts.insert(shard.0, lsn).map_err(db_err)?;
                }
                lsn > stored
            };
            txn.commit().map_err(db_err)?;
            if advanced {
                let mut inner = inner.lock();
                let s = inner.shards.entry(shard.0).or_default();
                if lsn > s.pos.checkpoint {
                    s.pos.checkpoint = lsn;
                    s.frames = s.frames.split_off(&(lsn + 1));
                }
                inner.drop_covered_segments();
            }
            Ok(())
        }))
    }

    fn load_account(&self, shard: ShardId, account: AccountId) -> StoreFuture<'_, Option<Vec<u8>>> {
        Box::pin(self.blocking(move |_, db| {
            let txn = db.begin_read().map_err(db_err)?;
            let table = txn.open_table(STATES).map_err(db_err)?;
            let state = table
                .get((shard.0, account.0))
                .map_err(db_err)?
                .map(|v| v.value().to_vec());
            Ok(state)
        }))
    }

    fn load_accounts<'a>(
        &'a self,
        shard: ShardId,
        accounts: &'a [AccountId],
    ) -> StoreFuture<'a, Vec<Option<Vec<u8>>>> {
        let ids: Vec<u64> = accounts.iter().map(|a| a.0).collect();
        Box::pin(self.blocking(move |_, db| {
            // One read transaction for the lot, in key order (the callers pass
            // sorted ids, so the B-tree pages are visited once each).
            let txn = db.begin_read().map_err(db_err)?;
            let table = txn.open_table(STATES).map_err(db_err)?;
            ids.iter()
                .map(|&id| {
                    Ok(table
                        .get((shard.0, id))
                        .map_err(db_err)?
                        .map(|v| v.value().to_vec()))
                })
                .collect()
        }))
    }

    fn accounts(&self, shard: ShardId) -> StoreFuture<'_, Vec<AccountId>> {
        Box::pin(self.blocking(move |_, db| {
            let txn = db.begin_read().map_err(db_err)?;
            let table = txn.open_table(STATES).map_err(db_err)?;
            let mut ids = Vec::new();
            for entry in table
                .range((shard.0, 0)..=(shard.0, u64::MAX))
                .map_err(db_err)?
            {
                let (k, _) = entry.map_err(db_err)?;
                ids.push(AccountId(k.value().1));
            }
            Ok(ids)
        }))
    }

    fn backend_name(&self) -> &'static str {
        "embedded"
    }

    /// Every append ends with a commit mark, and one refused frame refuses
    /// it whole (see the module doc).
    fn atomic_append(&self) -> bool {
        true
    }
}
