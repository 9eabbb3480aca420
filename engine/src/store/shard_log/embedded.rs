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

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use redb::{Database, ReadableTable, TableDefinition};

use super::{check_checkpoint, check_fence, ShardAppend, ShardHead, ShardLog, StoredFrame};
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

fn segment_name(n: u64) -> String {
    format!("seg-{n:020}.log")
}

fn io_err(what: &str, e: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("shard log {what}: {e}"))
}

struct Segment {
    file: File,
    len: u64,
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
        let txn = begin_write(&db)?;
        txn.open_table(META).map_err(db_err)?;
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
        let mut segments = BTreeMap::new();
        let last = numbers.last().copied();
        for n in numbers {
            let path = dir.join(segment_name(n));
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| io_err("open segment", e))?;
            let bytes = std::fs::read(&path).map_err(|e| io_err("read segment", e))?;
            let mut offset = 0usize;
            let mut newest = HashMap::new();
            while offset < bytes.len() {
                let (shard, lsn, len) = match BatchFrame::verify(&bytes[offset..]) {
                    Ok(v) => v,
                    Err(e) if Some(n) == last => {
                        tracing::warn!(segment = n, offset, error = %e, "cutting the torn tail of the shard log");
                        file.set_len(offset as u64)
                            .and_then(|()| file.sync_all())
                            .map_err(|e| io_err("cut torn tail", e))?;
                        break;
                    }
                    Err(e) => {
                        return Err(StoreError::Corrupt(format!("segment {n} at {offset}: {e}")))
                    }
                };
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
                offset += len;
            }
            segments.insert(
                n,
                Segment {
                    file,
                    len: offset as u64,
                    newest,
                },
            );
        }
        let active = last.unwrap_or(1);
        let mut inner = Inner {
            dir: dir.to_owned(),
            segments,
            active,
            shards,
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

impl Inner {
    /// Appends `bytes` to the active segment (creating it, or rolling to a new one)
    /// and syncs it. Returns (segment, offset).
    fn write(&mut self, bytes: &[u8]) -> Result<(u64, u64), StoreError> {
        if self
            .segments
            .get(&self.active)
            .is_some_and(|s| s.len >= SEGMENT_MAX)
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
            // Check every fence first, then write the accepted frames as one buffer:
            // one write, one fdatasync.
            let mut heads: HashMap<u16, u64> = HashMap::new();
            let mut results = Vec::with_capacity(batch.len());
            let mut accepted = Vec::new();
            let mut bytes = Vec::with_capacity(batch.iter().map(|a| a.frame.len()).sum());
            for a in batch {
                let head = *heads
                    .entry(a.shard.0)
                    .or_insert_with(|| inner.shards.get(&a.shard.0).map_or(0, |s| s.pos.head));
                let checked = check_fence(a.shard, head, a.lsn).and_then(|()| {
                    match BatchFrame::verify(&a.frame) {
                        Ok((shard, lsn, len))
                            if shard == a.shard && lsn == a.lsn && len == a.frame.len() =>
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
            if accepted.is_empty() {
                return Ok(results);
            }
            let (segment, base) = match inner.write(&bytes) {
                Ok(at) => at,
                Err(e) => {
                    inner.poisoned = Some(e.to_string());
                    return Err(e);
                }
            };
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
}
