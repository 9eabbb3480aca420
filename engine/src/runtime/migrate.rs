//! Moving data written by the actor runtime (one journal and snapshot per
//! account) into the shard logs, once, at start-up.
//!
//! Each stored account is rebuilt from its snapshot and journal exactly as the
//! actor runtime did, then written as a checkpointed state of its shard (behind
//! an empty frame, so the checkpoint has a log position to stand on). A mark in
//! the store's indexes records that the move is done; until it is, a crashed
//! move is simply done again (checkpointed states are overwritten whole). The
//! old journals are left in place, read by nothing afterwards.

use rustc_hash::FxHashMap;

use crate::codec::{checkpoint, BatchFrame, ShardId, ShardLayout};
use crate::domain::state::LEGACY_DEBIT_LSN;
use crate::domain::{apply, AccountState};
use crate::ids::AccountId;
use crate::store::shard_log::{ShardAppend, ShardLog};
use crate::store::{Loaded, Store, StoreError};

/// Where the mark lives.
const MARK_INDEX: &str = "okpay:migrations";
const MARK_KEY: &str = "journals-to-shard-logs";
/// Accounts moved per round (bounds memory during the move).
const PAGE: usize = 1000;

/// Rebuilds an account stored by the actor runtime from its snapshot and the
/// journal after it.
pub fn rebuild_from_journal(id: AccountId, loaded: &Loaded) -> Result<AccountState, StoreError> {
    let mut state = match &loaded.snapshot {
        // The snapshot codec also reads the untagged layouts older code wrote.
        Some(s) => crate::codec::state::decode_state(&s.payload)
            .map_err(|e| StoreError::Corrupt(format!("snapshot of {id}: {e}")))?,
        None => AccountState::new(id),
    };
    for record in &loaded.records {
        let events = crate::domain::event::decode_events(&record.payload)
            .map_err(|e| StoreError::Corrupt(format!("record {} of {id}: {e}", record.seq)))?;
        for e in &events {
            apply(&mut state, e);
        }
    }
    Ok(state)
}

/// Moves every account of the per-account journals into the shard logs, unless
/// that was done already. Returns how many accounts were moved.
pub(crate) async fn journals_to_shard_logs(
    store: &dyn Store,
    log: &dyn ShardLog,
    layout: ShardLayout,
) -> Result<usize, StoreError> {
    if store.get_index(MARK_INDEX, MARK_KEY).await?.is_some() {
        return Ok(0);
    }
    let mut moved = 0;
    let mut after = None;
    loop {
        let page = store.list_accounts(after, PAGE).await?;
        let Some(last) = page.last().copied() else {
            break;
        };
        let mut by_shard: FxHashMap<ShardId, Vec<(AccountId, Vec<u8>)>> = FxHashMap::default();
        let mut in_flight: FxHashMap<ShardId, Vec<(AccountId, u64, u64)>> = FxHashMap::default();
        for id in &page {
            let state = rebuild_from_journal(*id, &store.load(*id).await?)?;
            if !state.opened {
                continue; // listed but never opened (a crash between two writes)
            }
            let shard = layout.shard_of(*id);
            // Their debits' positions in a shard log never existed: legacy.
            in_flight.entry(shard).or_default().extend(
                state
                    .open_transfers()
                    .map(|(n, _)| (*id, n, LEGACY_DEBIT_LSN)),
            );
            by_shard
                .entry(shard)
                .or_default()
                .push((*id, checkpoint::encode_account(0, &state)));
            moved += 1;
        }
        for (shard, mut states) in by_shard {
            // Transfers in flight are driven on by recovery, which finds them
            // through the shard's own entry.
            if let Some(debits) = in_flight.remove(&shard).filter(|d| !d.is_empty()) {
                let mut listed = match log.load_account(shard, checkpoint::SHARD_ENTRY).await? {
                    Some(bytes) => checkpoint::decode_shard(&bytes)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    None => checkpoint::ShardEntry::default(),
                };
                listed.debits.extend(debits);
                listed.debits.sort_unstable();
                listed.debits.dedup();
                states.push((
                    checkpoint::SHARD_ENTRY,
                    checkpoint::encode_shard(&listed.debits, &listed.settled),
                ));
            }
            let head = log.head(shard).await?;
            let lsn = head.head + 1;
            let frame = BatchFrame {
                shard,
                lsn,
                records: Vec::new(),
            }
            .encode()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            for r in log
                .append(vec![ShardAppend {
                    shard,
                    lsn,
                    frame,
                    epoch: None,
                }])
                .await?
            {
                r?;
            }
            log.checkpoint(shard, lsn, states).await?;
        }
        if page.len() < PAGE {
            break;
        }
        after = Some(last);
    }
    store.claim_index(MARK_INDEX, MARK_KEY, "done").await?;
    if moved > 0 {
        tracing::info!(
            accounts = moved,
            "moved per-account journals into the shard logs"
        );
    }
    Ok(moved)
}
