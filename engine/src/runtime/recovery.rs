//! Recovery: a shard comes back from its checkpoint and the log after it.
//!
//! Only what the log tail names is read: the accounts changed by frames after
//! the checkpoint, and those the checkpoint lists as having a transfer in flight.
//! Every other account stays in the store until a request needs it (then
//! [`load_account`] reads its checkpointed state, which is current: an account
//! leaves memory only once its state is checkpointed). So the time to ready grows
//! with the log tail, not with the number of accounts.

use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::codec::{checkpoint, BatchFrame, RecordKind, ShardId};
use crate::domain::event::EventBody;
use crate::domain::history::history_rows;
use crate::domain::state::LEGACY_DEBIT_LSN;
use crate::domain::{apply, AccountState};
use crate::ids::AccountId;
use crate::store::shard_log::{ShardHead, ShardLog};
use crate::store::{HistoryRow, StoreError};

/// Frames read per store call during recovery.
const READ_PAGE: usize = 512;
/// Checkpointed states read at once during recovery.
const LOAD_BATCH: usize = 512;

/// An account as recovered: its journal position and state.
pub(crate) struct Recovered {
    pub seq: u64,
    pub state: AccountState,
    /// The first frame after the checkpoint that changed it (0: none).
    pub dirty_lsn: u64,
}

/// A shard as recovered: every account the log tail touched or that had a
/// transfer in flight, with the log replayed onto them.
pub(crate) struct RecoveredShard {
    pub head: ShardHead,
    pub accounts: FxHashMap<AccountId, Recovered>,
    /// History rows of every record in the frames after the checkpoint, to be
    /// written again (a crash may have come between a frame and its rows, and
    /// the checkpoint may hold a state past a record whose rows were not
    /// written).
    pub history: Vec<(AccountId, HistoryRow)>,
    /// Every transfer in flight: account, number, the position of its debit
    /// (see `saga`): as the checkpoint lists it, else its frame in the tail,
    /// else unknown ([`LEGACY_DEBIT_LSN`], only for a transfer debited before
    /// checkpoints recorded positions).
    pub debits: Vec<(AccountId, u64, u64)>,
    /// The watermarks per source shard the checkpoint recorded.
    pub settled: Vec<(ShardId, u64)>,
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// Reads an account's checkpointed state; `None` for an account never
/// checkpointed (new, or never opened).
pub(crate) async fn load_account(
    log: Arc<dyn ShardLog>,
    shard: ShardId,
    account: AccountId,
) -> Result<Option<(u64, AccountState)>, StoreError> {
    match log.load_account(shard, account).await? {
        None => Ok(None),
        Some(bytes) => checkpoint::decode_account(&bytes)
            .map(Some)
            .map_err(|e| corrupt(format!("checkpoint of {account}: {e}"))),
    }
}

/// Loads `shard`: checkpoint position, the frames after it, and the states of
/// the accounts they name; then replays the frames.
pub(crate) async fn recover_shard(
    log: Arc<dyn ShardLog>,
    shard: ShardId,
) -> Result<RecoveredShard, StoreError> {
    let head = log.head(shard).await?;
    let mut frames = Vec::new();
    let mut after = head.checkpoint;
    loop {
        let page = log.read(shard, after, READ_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.lsn;
        for stored in page {
            let frame = BatchFrame::decode(&stored.frame)
                .map_err(|e| corrupt(format!("{shard} frame {}: {e}", stored.lsn)))?;
            if frame.lsn != stored.lsn || frame.shard != shard {
                return Err(corrupt(format!(
                    "{shard} frame {} is misplaced",
                    stored.lsn
                )));
            }
            frames.push(frame);
        }
    }
    let entry = match log.load_account(shard, checkpoint::SHARD_ENTRY).await? {
        Some(bytes) => checkpoint::decode_shard(&bytes)
            .map_err(|e| corrupt(format!("{shard} checkpoint entry: {e}")))?,
        None => checkpoint::ShardEntry::default(),
    };
    let mut wanted = entry.in_flight.clone();
    // An account whose first record in the tail opens it is rebuilt from the
    // tail alone: any checkpoint of it is a prefix of what the tail replays, so
    // reading it would be a wasted round trip — and after a burst of openings
    // that is every account of the tail. (Seq 1 alone does not say so: an
    // account moved from the old journals has a checkpoint at seq 0.)
    let mut accounts: FxHashMap<AccountId, Recovered> = FxHashMap::default();
    let listed: FxHashSet<AccountId> = wanted.iter().copied().collect();
    let mut seen: FxHashSet<AccountId> = FxHashSet::default();
    for record in frames.iter().flat_map(|f| &f.records) {
        if !record.kind.holds_events() || !seen.insert(record.account) {
            continue;
        }
        if record.seq == 1 && !listed.contains(&record.account) && opens(record)? {
            accounts.insert(
                record.account,
                Recovered {
                    seq: 0,
                    state: AccountState::new(record.account),
                    dirty_lsn: 0,
                },
            );
        } else {
            wanted.push(record.account);
        }
    }
    wanted.sort_unstable();
    wanted.dedup();
    for chunk in wanted.chunks(LOAD_BATCH) {
        let states = log.load_accounts(shard, chunk).await?;
        for (id, bytes) in chunk.iter().zip(states) {
            let loaded = match bytes {
                None => None,
                Some(bytes) => Some(
                    checkpoint::decode_account(&bytes)
                        .map_err(|e| corrupt(format!("checkpoint of {id}: {e}")))?,
                ),
            };
            let (seq, state) = loaded.unwrap_or_else(|| (0, AccountState::new(*id)));
            accounts.insert(
                *id,
                Recovered {
                    seq,
                    state,
                    dirty_lsn: 0,
                },
            );
        }
    }
    let (history, tail_debits) = replay(&mut accounts, &frames)?;
    let listed: FxHashMap<(AccountId, u64), u64> = entry
        .debits
        .iter()
        .map(|&(a, n, lsn)| ((a, n), lsn))
        .collect();
    let mut debits = Vec::new();
    for (id, r) in &accounts {
        for (n, _) in r.state.open_transfers() {
            let lsn = listed
                .get(&(*id, n))
                .or_else(|| tail_debits.get(&(*id, n)))
                .copied()
                .unwrap_or(LEGACY_DEBIT_LSN);
            debits.push((*id, n, lsn));
        }
    }
    debits.sort_unstable();
    Ok(RecoveredShard {
        head,
        accounts,
        history,
        debits,
        settled: entry.settled,
    })
}

/// The events of an events record of either format.
fn record_events(
    record: &crate::codec::LogRecord,
) -> Result<Vec<crate::domain::Event>, StoreError> {
    crate::codec::events::decode_record(record.kind, &record.payload)
        .map_err(|e| corrupt(format!("record {} of {}: {e}", record.seq, record.account)))?
        .ok_or_else(|| {
            corrupt(format!(
                "record {} of {} holds no events",
                record.seq, record.account
            ))
        })
}

/// Whether `record` is an account's opening (its first event opens it).
fn opens(record: &crate::codec::LogRecord) -> Result<bool, StoreError> {
    let events = record_events(record)?;
    Ok(matches!(
        events.first().map(|e| &e.body),
        Some(crate::domain::event::EventBody::Opened { .. })
    ))
}

/// The frame positions of the transfers debited in the replayed records.
type TailDebits = FxHashMap<(AccountId, u64), u64>;

/// Applies `frames` in order onto `accounts`, skipping records a checkpointed
/// state already holds; returns the history rows of what it applied and where
/// the transfers it debited were debited.
fn replay(
    accounts: &mut FxHashMap<AccountId, Recovered>,
    frames: &[BatchFrame],
) -> Result<(Vec<(AccountId, HistoryRow)>, TailDebits), StoreError> {
    let mut history = Vec::new();
    let mut debits = TailDebits::default();
    for frame in frames {
        for record in &frame.records {
            match record.kind {
                RecordKind::Events | RecordKind::EventsV2 => {}
                // Reserved; nothing writes it (watermarks travel with the saga's
                // requests and are kept in checkpoints instead).
                RecordKind::CreditWatermark => continue,
            }
            let account = accounts
                .get_mut(&record.account)
                .ok_or_else(|| corrupt(format!("{} not loaded for replay", record.account)))?;
            let decode = || record_events(record);
            if record.seq <= account.seq {
                // Already in the checkpointed state, but its rows may not be
                // written: a checkpoint encodes an account as it is now, while
                // the rows of its last records may still wait (their window, or
                // held back while their operation is open); only the frames it
                // trims are known to have their rows written. The checkpointed
                // state describes them: every later version of an operation's
                // row comes from a later record, replayed after this one.
                history.extend(replayed_rows(record.account, &account.state, &decode()?));
                continue;
            }
            if record.seq != account.seq + 1 {
                return Err(corrupt(format!(
                    "{}: record {} follows {} in frame {}",
                    record.account, record.seq, account.seq, frame.lsn
                )));
            }
            let events = decode()?;
            for e in &events {
                if let EventBody::TransferDebited { op, .. } = e.body {
                    debits.insert((record.account, op), frame.lsn);
                }
                apply(&mut account.state, e);
            }
            account.seq = record.seq;
            if account.dirty_lsn == 0 {
                account.dirty_lsn = frame.lsn;
            }
            history.extend(replayed_rows(record.account, &account.state, &events));
        }
    }
    Ok((history, debits))
}

/// The history rows of a replayed record's `events`, given the state after
/// them. A replayed frame's rows may be stored already (with a later version,
/// even): each one replaces what is there.
fn replayed_rows(
    account: AccountId,
    state: &AccountState,
    events: &[crate::domain::Event],
) -> impl Iterator<Item = (AccountId, HistoryRow)> {
    history_rows(state, events).into_iter().map(move |row| {
        (
            account,
            HistoryRow {
                replaces: true,
                ..row
            },
        )
    })
}

/// Rebuilds `account` from what the store holds — its shard's checkpoint and the
/// log after it — independently of any running engine: tests compare it with the
/// live state, operators with what the engine reports. `None` for an account the
/// store has never seen.
pub async fn rebuild(
    store: &dyn crate::store::Store,
    account: AccountId,
) -> Result<Option<AccountState>, StoreError> {
    let log = store.shard_log().await?;
    let layout = log
        .init_layout(crate::codec::ShardLayout::default())
        .await?;
    let shard = layout.shard_of(account);
    // A checkpoint running meanwhile may trim frames between the reads: retry.
    let mut last_err = None;
    for _ in 0..5 {
        match recover_shard(log.clone(), shard).await {
            Ok(mut recovered) => {
                return match recovered.accounts.remove(&account) {
                    Some(r) => Ok(Some(r.state)),
                    None => Ok(load_account(log, shard, account).await?.map(|(_, s)| s)),
                }
            }
            Err(e @ StoreError::Corrupt(_)) => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| StoreError::Unavailable("rebuild did not settle".into())))
}
