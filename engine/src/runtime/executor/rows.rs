//! The history rows of durable batches on their way to the store: written one
//! store call at a time behind the log (replies go out when the frames are
//! durable, and the rows of one batch are written while the next batch's frames
//! are), a few batches late so that a later version of a row (a transfer's
//! completion after its debit) replaces the earlier one in memory.
//!
//! The row of an operation still open — a transfer debited and not yet
//! completed or reversed, a withdrawal not yet settled — is held back when its
//! window closes, so that its final version is usually the only one written
//! (on Redis a second version costs a removal and a second member). Holding is
//! bounded ([`RowsHold`]): by batches and time since the row's record was
//! durable, and by the number of rows held; a history read of the account, a
//! shard that fails, moves or is passivated, lets its rows go at once.
//!
//! Rows are a projection of the log, so a crash before they land loses nothing:
//! recovery replays the frames after the checkpoint and writes their rows again
//! (the latest version of each, since it replays every later frame too), and a
//! checkpoint never passes a frame whose rows are not written: a shard's
//! `rows_lsn` advances only to the frames whose rows are all written, and
//! never to the frame of a row held back.

use std::hash::{Hash, Hasher};
use std::time::Instant;

use rustc_hash::FxHashMap;

use super::Reply;
use crate::codec::ShardId;
use crate::ids::AccountId;
use crate::runtime::RowsHold;
use crate::store::HistoryRow;

/// A history row of a record, as a batch carries it.
pub(super) struct BatchRow {
    pub shard: ShardId,
    pub account: AccountId,
    pub row: HistoryRow,
    /// The row describes an operation its record opened and left open (a
    /// later record will write its final version): it may be held back.
    pub open: bool,
}

/// A row of a durable batch, not yet handed to the store.
struct Pending {
    shard: ShardId,
    account: AccountId,
    row: HistoryRow,
    /// The frame of the row's first version not yet written. Only a held row's
    /// matters: its shard's `rows_lsn` stays below it.
    lsn: u64,
    /// The batch that frame was in, and when that batch was durable.
    batch: u64,
    at: Instant,
    /// Its operation is open: the row may be held back at the next write.
    open: bool,
    /// It was held back at a write, so its shard's `rows_lsn` was kept below
    /// `lsn`: the write that takes it must raise it again.
    held: bool,
    /// Let go: the next write takes it, open or not (a reader, a shard leaving).
    go: bool,
}

impl Pending {
    /// Held back now, and not due at the next write (unless a bound says so).
    fn holding(&self) -> bool {
        self.held && self.open && !self.go
    }
}

/// What one write of rows takes.
pub(super) struct Taken {
    pub rows: Vec<(ShardId, AccountId, HistoryRow)>,
    /// Per shard, how far its `rows_lsn` may go once the rows are written (lsn
    /// 0: the shard's recovery put rows in, nothing to raise).
    pub positions: Vec<(ShardId, u64)>,
    /// The number of this write (see [`Rows::wait`]).
    pub write: u64,
    /// Rows held back for the first time by this write.
    pub newly_held: u64,
    /// Held rows this write takes although their operation is still open (a
    /// bound, or a reader, let them go).
    pub written_open: u64,
}

/// The rows of durable batches not yet written, and the readers waiting for
/// them (see the module's comment).
#[derive(Default)]
pub(super) struct Rows {
    /// At most one row per (account, row key): a later row of the same
    /// operation replaces the earlier one in place. Held rows first, then the
    /// others in the order their batches were durable.
    pending: Vec<Pending>,
    /// The buffer the next write's kept rows go into (empty): `pending`'s
    /// of the write before.
    spare: Vec<Pending>,
    /// Where each (account, row key) of `pending` is, by a hash of the two.
    index: FxHashMap<u64, usize>,
    /// Rows of `pending` held back and still open (not due at the next write).
    holding: usize,
    /// When the batch of the oldest row held back was durable.
    oldest_held: Option<Instant>,
    /// The batch whose rows were the first to enter since the last write.
    pub pending_since: u64,
    /// When they entered (see `Store::rows_gather`).
    pub pending_since_at: Option<Instant>,
    /// The frames (shard, lsn) whose rows entered since the last write; lsn 0
    /// for shards whose recovery rewrites rows.
    positions: Vec<(ShardId, u64)>,
    /// Per shard, the last frame whose rows entered.
    entered: FxHashMap<ShardId, u64>,
    /// The last batch whose rows entered (pending or being written).
    pub pending_batch: u64,
    pub writing: Option<super::RowsFuture>,
    /// Every batch up to this one has its rows written, but for rows held back.
    pub written_batch: u64,
    /// Writes started and finished (numbered from 1).
    writes_started: u64,
    writes_done: u64,
    /// Write at the next chance, whether due or not: held rows were let go.
    pub force: bool,
    /// History reads waiting: (batch, write, reply), answered once that batch's
    /// rows and that write are done.
    waiters: Vec<(u64, u64, Reply<()>)>,
}

impl Rows {
    /// The frame `lsn` of `shard` is durable; its rows enter next.
    pub fn frame_durable(&mut self, shard: ShardId, lsn: u64) {
        self.positions.push((shard, lsn));
        let entered = self.entered.entry(shard).or_default();
        *entered = (*entered).max(lsn);
    }

    /// The shard's recovery put rows in (they are written with the next rows).
    pub fn recovery_rows(&mut self, shard: ShardId) {
        self.positions.push((shard, 0));
    }

    /// Adds a row of the durable batch `batch` (durable `at`), replacing a
    /// pending row of the same operation (the newer one describes it as it is
    /// now). Returns whether it replaced one.
    pub fn push(&mut self, new: BatchRow, batch: u64, at: Instant) -> bool {
        let hash = row_hash(new.account, &new.row.key);
        self.push_at(hash, new, batch, at)
    }

    fn push_at(&mut self, hash: u64, new: BatchRow, batch: u64, at: Instant) -> bool {
        let BatchRow {
            shard,
            account,
            row,
            open,
        } = new;
        let next = self.pending.len();
        match self.index.entry(hash) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                let pending = &mut self.pending[*e.get()];
                if pending.account == account && pending.row.key == row.key {
                    // The pending row's `replaces` stays: whether a version is
                    // stored depends on what was written before it, not after.
                    // Its frame stays the first one not written (the bound on
                    // `rows_lsn`).
                    pending.row.payload = row.payload;
                    let was = pending.holding();
                    pending.open = open;
                    self.holding -= usize::from(was && !pending.holding());
                    return true;
                }
                // A collision: the older row stays as it is but is no longer
                // found, so it goes with the next write: a later version of it
                // (pushed after this one) then never lands before it.
                self.holding -= usize::from(pending.holding());
                pending.go = true;
                e.insert(next);
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(next);
            }
        }
        // Every fresh row's frame is in its batch; recovery's rows are not open.
        let lsn = if open {
            self.entered.get(&shard).copied().unwrap_or(0)
        } else {
            0
        };
        self.pending.push(Pending {
            shard,
            account,
            row,
            lsn,
            batch,
            at,
            open: open && lsn != 0,
            held: false,
            go: false,
        });
        false
    }

    /// Rows that the next write would take (every pending row but those held
    /// back and still open).
    pub fn due_rows(&self) -> usize {
        self.pending.len() - self.holding
    }

    /// Whether a held row is older than `hold` allows (then the next write
    /// takes it, even on an idle executor).
    pub fn held_too_long(&self, hold: &RowsHold, now: Instant) -> bool {
        self.holding > 0
            && self
                .oldest_held
                .is_some_and(|at| now.saturating_duration_since(at) >= hold.max_age)
    }

    /// Hands the pending rows over for one store call, holding back the rows
    /// of open operations within `hold`'s bounds.
    pub fn take(&mut self, hold: &RowsHold, now: Instant) -> Taken {
        self.index.clear();
        self.pending_since = 0;
        self.pending_since_at = None;
        self.force = false;
        self.writes_started += 1;
        let batch_now = self.pending_batch;
        let holdable = |p: &Pending| {
            p.open
                && !p.go
                && batch_now.saturating_sub(p.batch) < hold.batches
                && now.saturating_duration_since(p.at) < hold.max_age
        };
        let candidates = self.pending.iter().filter(|p| holdable(p)).count();
        // Past the bound on rows held, the oldest go (rows are in the order
        // their batches were durable).
        let mut excess = candidates.saturating_sub(hold.max_rows);
        let kept_n = candidates - excess;
        // The rows kept go into the spare buffer, which has the room an
        // earlier window had (up to a bound, so one burst doesn't pin
        // megabytes): growing a Vec of thousands of rows by doubling copied it
        // over and over, and a fresh buffer per write was fresh memory the
        // kernel zeroed each time (4% of the in-memory driver's samples).
        let mut kept = std::mem::take(&mut self.spare);
        kept.reserve(kept_n);
        let mut rows = Vec::with_capacity(self.pending.len() - kept_n);
        // Per shard: the first frame of a row held back, and whether a row
        // held back before goes now.
        let mut floors: Vec<(ShardId, u64)> = Vec::new();
        let mut released: Vec<ShardId> = Vec::new();
        let (mut newly_held, mut written_open) = (0, 0);
        for mut p in self.pending.drain(..) {
            let keep = holdable(&p) && {
                let over = excess > 0;
                excess = excess.saturating_sub(1);
                !over
            };
            if keep {
                newly_held += u64::from(!p.held);
                p.held = true;
                match floors.iter_mut().find(|(s, _)| *s == p.shard) {
                    Some((_, lsn)) => *lsn = (*lsn).min(p.lsn),
                    None => floors.push((p.shard, p.lsn)),
                }
                kept.push(p);
            } else {
                if p.held {
                    written_open += u64::from(p.open);
                    if !released.contains(&p.shard) {
                        released.push(p.shard);
                    }
                }
                rows.push((p.shard, p.account, p.row));
            }
        }
        for (i, p) in kept.iter().enumerate() {
            self.index.insert(row_hash(p.account, &p.row.key), i);
        }
        self.holding = kept.len();
        self.oldest_held = kept.iter().map(|p| p.at).min();
        let mut spare = std::mem::replace(&mut self.pending, kept);
        spare.clear();
        spare.shrink_to(ROWS_CAPACITY_KEPT);
        self.spare = spare;
        // Each shard whose frames' rows entered, or whose held rows go now, may
        // raise its `rows_lsn` to its last frame whose rows entered, but never
        // to the frame of a row still held back.
        let mut positions: Vec<(ShardId, u64)> = Vec::new();
        let mut shards = released;
        for (shard, lsn) in self.positions.drain(..) {
            if lsn == 0 {
                positions.push((shard, 0));
            } else if !shards.contains(&shard) {
                shards.push(shard);
            }
        }
        for shard in shards {
            let entered = self.entered.get(&shard).copied().unwrap_or(0);
            let lsn = match floors.iter().find(|(s, _)| *s == shard) {
                Some((_, floor)) => entered.min(floor.saturating_sub(1)),
                None => entered,
            };
            positions.push((shard, lsn));
        }
        Taken {
            rows,
            positions,
            write: self.writes_started,
            newly_held,
            written_open,
        }
    }

    /// Lets the held rows of `account` go with the next write; returns the
    /// number of that write when there were any.
    pub fn release_account(&mut self, account: AccountId) -> Option<u64> {
        if self.holding == 0 {
            return None;
        }
        self.release(|p| p.account == account)
            .then_some(self.writes_started + 1)
    }

    /// Lets the held rows of `shard` go with the next write.
    pub fn release_shard(&mut self, shard: ShardId) {
        if self.holding > 0 {
            self.release(|p| p.shard == shard);
        }
    }

    /// Lets every held row go with the next write.
    pub fn release_all(&mut self) {
        if self.holding > 0 {
            self.release(|_| true);
        }
    }

    fn release(&mut self, which: impl Fn(&Pending) -> bool) -> bool {
        let mut any = false;
        for p in self.pending.iter_mut().filter(|p| p.holding()) {
            if which(p) {
                p.go = true;
                self.holding -= 1;
                any = true;
            }
        }
        self.force |= any;
        any
    }

    /// Drops the pending rows of `shard`, which left this executor: its next
    /// host replays the frames they come from (no checkpoint passed them) and
    /// writes them again, under its own lease epoch.
    pub fn forget_shard(&mut self, shard: ShardId) {
        self.pending.retain(|p| p.shard != shard);
        self.positions.retain(|(s, _)| *s != shard);
        self.entered.remove(&shard);
        self.index.clear();
        for (i, p) in self.pending.iter().enumerate() {
            self.index.insert(row_hash(p.account, &p.row.key), i);
        }
        self.holding = self.pending.iter().filter(|p| p.holding()).count();
        self.oldest_held = self
            .pending
            .iter()
            .filter(|p| p.holding())
            .map(|p| p.at)
            .min();
    }

    /// A history read waits until the rows of `batch`, and write number
    /// `write` (0: none), are written.
    pub fn wait(&mut self, batch: u64, write: u64, reply: Reply<()>) {
        if batch <= self.written_batch && write <= self.writes_done {
            let _ = reply.send(Ok(()));
        } else {
            self.waiters.push((batch, write, reply));
        }
    }

    /// Whether history reads are waiting.
    pub fn has_waiters(&self) -> bool {
        !self.waiters.is_empty()
    }

    /// Write `write` (of the rows up to `batch`) finished with `result`.
    pub fn written(&mut self, batch: u64, write: u64, result: &Result<(), super::EngineError>) {
        self.written_batch = batch;
        self.writes_done = self.writes_done.max(write);
        let (batch, write) = (self.written_batch, self.writes_done);
        for (_, _, reply) in self
            .waiters
            .extract_if(.., |(b, w, _)| *b <= batch && *w <= write)
        {
            let _ = reply.send(result.clone());
        }
    }
}

/// Where a pending row of (account, row key) is found in [`Rows::index`].
fn row_hash(account: AccountId, key: &str) -> u64 {
    let mut hasher = rustc_hash::FxHasher::default();
    (account, key).hash(&mut hasher);
    hasher.finish()
}

/// The most room [`Rows::take`] keeps for the next window's rows.
const ROWS_CAPACITY_KEPT: usize = 65_536;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn row(key: &str, payload: &str, replaces: bool) -> HistoryRow {
        HistoryRow {
            key: key.into(),
            payload: payload.as_bytes().to_vec(),
            replaces,
        }
    }

    fn batch_row(shard: u16, account: AccountId, r: HistoryRow, open: bool) -> BatchRow {
        BatchRow {
            shard: ShardId(shard),
            account,
            row: r,
            open,
        }
    }

    fn hold(batches: u64, max_rows: usize) -> RowsHold {
        RowsHold {
            batches,
            max_age: Duration::from_secs(3600),
            max_rows,
        }
    }

    /// Batch `batch` of shard 1 is durable as frame `lsn` with `rows`.
    fn enter(rows: &mut Rows, batch: u64, lsn: u64, new: Vec<BatchRow>, at: Instant) -> u64 {
        rows.frame_durable(ShardId(1), lsn);
        rows.pending_batch = batch;
        new.into_iter()
            .map(|r| u64::from(rows.push(r, batch, at)))
            .sum()
    }

    fn lsn_of(taken: &Taken, shard: u16) -> Option<u64> {
        taken
            .positions
            .iter()
            .filter(|(s, _)| *s == ShardId(shard))
            .map(|(_, l)| *l)
            .max()
    }

    #[test]
    fn an_open_row_is_held_and_its_final_version_is_the_only_one_written() {
        let (a, now) = (AccountId::random(), Instant::now());
        let mut rows = Rows::default();
        let debit = batch_row(1, a, row("k1", "processing", false), true);
        let other = batch_row(1, a, row("k2", "deposit", false), false);
        enter(&mut rows, 1, 10, vec![debit, other], now);
        let taken = rows.take(&hold(24, 100), now);
        assert_eq!(taken.rows.len(), 1, "only the closed operation's row goes");
        assert_eq!(taken.rows[0].2.key, "k2");
        assert_eq!(taken.newly_held, 1);
        assert_eq!(
            lsn_of(&taken, 1),
            Some(9),
            "rows_lsn stays below the held row"
        );
        assert_eq!(rows.due_rows(), 0);
        // The completion, a few batches on, replaces the held row in memory.
        let done = batch_row(1, a, row("k1", "completed", true), false);
        assert_eq!(enter(&mut rows, 3, 12, vec![done], now), 1);
        assert_eq!(rows.due_rows(), 1);
        let taken = rows.take(&hold(24, 100), now);
        assert_eq!(taken.rows.len(), 1);
        let (_, _, written) = &taken.rows[0];
        assert_eq!(written.payload, b"completed");
        assert!(!written.replaces, "no earlier version was ever written");
        assert_eq!(taken.written_open, 0);
        assert_eq!(
            lsn_of(&taken, 1),
            Some(12),
            "nothing held: up to the last frame"
        );
    }

    #[test]
    fn a_row_open_too_long_goes_anyway() {
        let (a, now) = (AccountId::random(), Instant::now());
        let mut rows = Rows::default();
        let debit = batch_row(1, a, row("k1", "processing", false), true);
        enter(&mut rows, 1, 10, vec![debit], now);
        assert!(rows.take(&hold(4, 100), now).rows.is_empty());
        enter(&mut rows, 4, 13, Vec::new(), now);
        let taken = rows.take(&hold(4, 100), now);
        assert!(taken.rows.is_empty(), "3 batches on: still held");
        assert_eq!(lsn_of(&taken, 1), Some(9));
        enter(&mut rows, 5, 14, Vec::new(), now);
        let taken = rows.take(&hold(4, 100), now);
        assert_eq!(taken.rows.len(), 1, "4 batches on: written while open");
        assert_eq!(taken.written_open, 1);
        assert_eq!(lsn_of(&taken, 1), Some(14));
        // By age too, whatever the batches.
        let debit = batch_row(1, a, row("k3", "processing", false), true);
        enter(&mut rows, 6, 15, vec![debit], now);
        let aged = RowsHold {
            max_age: Duration::from_millis(10),
            ..hold(1000, 100)
        };
        assert!(rows.take(&aged, now).rows.is_empty());
        assert!(!rows.held_too_long(&aged, now));
        let later = now + Duration::from_millis(10);
        assert!(rows.held_too_long(&aged, later));
        assert_eq!(rows.take(&aged, later).rows.len(), 1);
    }

    #[test]
    fn past_the_bound_on_held_rows_the_oldest_go() {
        let (a, now) = (AccountId::random(), Instant::now());
        let mut rows = Rows::default();
        for (i, lsn) in (1..=5).zip(10..) {
            let debit = batch_row(1, a, row(&format!("k{i}"), "processing", false), true);
            enter(&mut rows, i, lsn, vec![debit], now);
        }
        let taken = rows.take(&hold(24, 3), now);
        let keys: Vec<&str> = taken.rows.iter().map(|r| r.2.key.as_str()).collect();
        assert_eq!(keys, ["k1", "k2"]);
        assert_eq!(
            lsn_of(&taken, 1),
            Some(11),
            "below the oldest held (frame 12)"
        );
        assert_eq!(rows.due_rows(), 0);
    }

    #[test]
    fn a_reader_lets_its_accounts_held_rows_go_with_the_next_write() {
        let (a, b, now) = (AccountId::random(), AccountId::random(), Instant::now());
        let mut rows = Rows::default();
        let debits = vec![
            batch_row(1, a, row("ka", "processing", false), true),
            batch_row(1, b, row("kb", "processing", false), true),
        ];
        enter(&mut rows, 1, 10, debits, now);
        let first = rows.take(&hold(24, 100), now);
        rows.written(1, first.write, &Ok(()));
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let write = rows.release_account(a).expect("a has a held row");
        rows.wait(1, write, tx);
        assert!(rows.force);
        assert!(rx.try_recv().is_err(), "waits for the write of its rows");
        let taken = rows.take(&hold(24, 100), now);
        assert_eq!(taken.write, write);
        let keys: Vec<&str> = taken.rows.iter().map(|r| r.2.key.as_str()).collect();
        assert_eq!(keys, ["ka"]);
        assert_eq!(lsn_of(&taken, 1), Some(9), "b's row is still held");
        rows.written(1, taken.write, &Ok(()));
        assert!(matches!(rx.try_recv(), Ok(Ok(()))));
        assert_eq!(rows.release_account(a), None, "nothing of a held any more");
    }

    #[test]
    fn a_hash_collision_never_lets_an_older_version_land_later() {
        let (a, now) = (AccountId::random(), Instant::now());
        let mut rows = Rows::default();
        let h = row_hash(a, "k1");
        let debit = batch_row(1, a, row("k1", "processing", false), true);
        enter(&mut rows, 1, 10, vec![debit], now);
        rows.take(&hold(24, 100), now);
        assert_eq!(rows.due_rows(), 0, "k1 is held");
        // Another row with k1's hash takes its place in the index...
        rows.frame_durable(ShardId(1), 11);
        rows.pending_batch = 2;
        let other = batch_row(1, a, row("other", "x", false), false);
        assert!(!rows.push_at(h, other, 2, now));
        // ...so k1's completion is not found and enters as a row of its own.
        let done = batch_row(1, a, row("k1", "completed", true), false);
        assert!(!rows.push_at(h, done, 2, now));
        let taken = rows.take(&hold(24, 100), now);
        let order: Vec<&[u8]> = taken.rows.iter().map(|r| r.2.payload.as_slice()).collect();
        assert_eq!(
            order,
            [&b"processing"[..], b"x", b"completed"],
            "the latest lands last"
        );
        assert_eq!(lsn_of(&taken, 1), Some(11));
    }
}
