//! An account's retained notifications, packed: each one in the state
//! format's notification encoding (`codec::state::pack_notification`, about
//! 20–35 bytes) back to back in one buffer, instead of an 88-byte
//! [`Notification`] each. A busy account keeps 256 of them for clients that
//! resume a stream, so unpacked they were most of its memory (22.5 KiB of a
//! ~32 KiB state in the engine benchmark) and, while rings filled, most of the
//! fresh memory the kernel zeroed. Reads unpack on the way out; the newest are
//! found from the back, so publishing what a batch added never walks the ring.
//!
//! Packing needs an account to leave out of op ids and a time to count from;
//! the ring picks both from the first notification it takes when empty (not
//! from its owner, so a ring deserializes alone) and keeps them while it holds
//! anything.

use std::collections::VecDeque;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::state::{pack_notification, packed_notification_head, unpack_notification};
use crate::domain::notification::{Notification, NotificationKind};
use crate::ids::AccountId;

/// The notifications of one account, oldest first, packed (see the module).
#[derive(Clone)]
pub struct NotificationRing {
    /// The packed notifications from `start`; the bytes before it are dropped
    /// ones, cut off once they are as many as the live ones.
    bytes: Vec<u8>,
    start: usize,
    /// Each live notification's packed length, oldest first.
    lens: VecDeque<u32>,
    /// What every packed notification was packed against.
    own: AccountId,
    base: i64,
}

impl Default for NotificationRing {
    fn default() -> Self {
        NotificationRing {
            bytes: Vec::new(),
            start: 0,
            lens: VecDeque::new(),
            own: AccountId(0),
            base: 0,
        }
    }
}

impl NotificationRing {
    /// How many notifications it holds.
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Adds `note` as the newest.
    pub fn push_back(&mut self, note: Notification) {
        if self.lens.is_empty() {
            self.bytes.clear();
            self.start = 0;
            self.own = owner_hint(&note.kind).unwrap_or(self.own);
            self.base = note.at.millis();
        }
        let before = self.bytes.len();
        pack_notification(self.own, self.base, &note, &mut self.bytes);
        // A notification is a few strings of bounded inputs at most: far from 4 GiB.
        let len = u32::try_from(self.bytes.len() - before).expect("a notification under 4 GiB");
        self.lens.push_back(len);
    }

    /// Drops the oldest.
    pub fn pop_front(&mut self) {
        let Some(len) = self.lens.pop_front() else {
            return;
        };
        self.start += len as usize;
        // Cut the dropped bytes off once they are as many as the live ones:
        // each byte is moved at most once per time it is dropped before.
        if self.start >= self.bytes.len() - self.start {
            self.bytes.drain(..self.start);
            self.start = 0;
        }
    }

    /// The heap memory it holds (both buffers' capacity).
    pub fn heap_bytes(&self) -> usize {
        self.bytes.capacity() + self.lens.capacity() * std::mem::size_of::<u32>()
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.start = 0;
        self.lens.clear();
    }

    /// The notifications, oldest first.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            ring: self,
            front: self.start,
            back: self.bytes.len(),
            lens: self.lens.iter(),
        }
    }

    pub fn front(&self) -> Option<Notification> {
        self.iter().next()
    }

    pub fn back(&self) -> Option<Notification> {
        self.iter().next_back()
    }

    /// The notifications with a seq above `after`, oldest first, found from
    /// the back by their seqs alone: only the ones returned are unpacked.
    pub fn after(&self, after: u64) -> Iter<'_> {
        let (mut skip, mut front) = (self.lens.len(), self.bytes.len());
        for &len in self.lens.iter().rev() {
            let bytes = &self.bytes[front - len as usize..front];
            if head(bytes).0 <= after {
                break;
            }
            (skip, front) = (skip - 1, front - len as usize);
        }
        Iter {
            ring: self,
            front,
            back: self.bytes.len(),
            lens: self.lens.range(skip..),
        }
    }

    /// Of [`after`](Self::after), the alerts and status changes (what
    /// operators watch), the others not even unpacked: publishing an account
    /// nobody subscribed to looks at no more.
    pub fn after_for_operators(&self, after: u64) -> impl Iterator<Item = Notification> + '_ {
        let mut notes = self.after(after);
        std::iter::from_fn(move || notes.next_raw())
            .filter(|bytes| head(bytes).1)
            .map(|bytes| self.unpack(bytes))
    }

    fn unpack(&self, bytes: &[u8]) -> Notification {
        // The ring packed these bytes itself with this `own` and `base`.
        unpack_notification(self.own, self.base, bytes).expect("a packed notification unpacks")
    }
}

/// A packed notification's seq and whether operators see it.
fn head(bytes: &[u8]) -> (u64, bool) {
    // Packed by the ring itself (see `unpack`).
    packed_notification_head(bytes).expect("a packed notification unpacks")
}

/// The account an op-carrying notification belongs to (that of its op id).
fn owner_hint(kind: &NotificationKind) -> Option<AccountId> {
    match kind {
        NotificationKind::TransactionUpdated { id, .. }
        | NotificationKind::AlertRaised { id, .. }
        | NotificationKind::SessionCreated { session: id, .. } => Some(id.account),
        _ => None,
    }
}

/// The notifications of a [`NotificationRing`], unpacked one by one.
pub struct Iter<'a> {
    ring: &'a NotificationRing,
    /// The unread bytes are `front..back` of the ring's buffer.
    front: usize,
    back: usize,
    lens: std::collections::vec_deque::Iter<'a, u32>,
}

impl<'a> Iter<'a> {
    /// The next notification still packed.
    fn next_raw(&mut self) -> Option<&'a [u8]> {
        let len = *self.lens.next()? as usize;
        let bytes = &self.ring.bytes[self.front..self.front + len];
        self.front += len;
        Some(bytes)
    }
}

impl Iterator for Iter<'_> {
    type Item = Notification;

    fn next(&mut self) -> Option<Notification> {
        let bytes = self.next_raw()?;
        Some(self.ring.unpack(bytes))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.lens.size_hint()
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Notification> {
        let len = *self.lens.next_back()? as usize;
        let bytes = &self.ring.bytes[self.back - len..self.back];
        self.back -= len;
        Some(self.ring.unpack(bytes))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a NotificationRing {
    type Item = Notification;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl PartialEq for NotificationRing {
    fn eq(&self, other: &Self) -> bool {
        if self.len() != other.len() {
            return false;
        }
        // Packed against the same account and time, equal notifications are
        // equal bytes (the encoding is deterministic).
        if (self.own, self.base) == (other.own, other.base) {
            return self.lens == other.lens
                && self.bytes[self.start..] == other.bytes[other.start..];
        }
        self.iter().eq(other.iter())
    }
}

impl Eq for NotificationRing {}

impl fmt::Debug for NotificationRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl FromIterator<Notification> for NotificationRing {
    fn from_iter<I: IntoIterator<Item = Notification>>(notes: I) -> Self {
        let mut ring = NotificationRing::default();
        for note in notes {
            ring.push_back(note);
        }
        ring
    }
}

/// As the sequence of notifications it holds: the shape of the
/// `VecDeque<Notification>` it replaced, so state format 3 (postcard of the
/// state) reads and writes the same bytes.
impl Serialize for NotificationRing {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for NotificationRing {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let notes = VecDeque::<Notification>::deserialize(deserializer)?;
        Ok(notes.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::notification::{Direction, TxStatus};
    use crate::ids::{OpId, OpKind};
    use crate::money::Currency;
    use crate::time::Timestamp;
    use rust_decimal::Decimal;

    fn cny() -> Currency {
        Currency::new("CNY", 2).expect("a currency")
    }

    /// A mix of kinds, two accounts' op ids, amounts with and without cents.
    fn note(seq: u64) -> Notification {
        let kind = match seq % 3 {
            0 => NotificationKind::BalanceUpdated {
                currency: cny(),
                available: Decimal::new(seq as i64 * 101, 2),
                held: Decimal::new(5, 1),
            },
            1 => NotificationKind::TransactionUpdated {
                id: OpId {
                    account: AccountId(7),
                    n: seq,
                },
                kind: OpKind::Transfer,
                status: TxStatus::Completed,
                amount: Decimal::new(1234, 2),
                fee: Decimal::ZERO,
                currency: cny(),
                direction: Direction::Out,
                counterparty: Some(AccountId(9)),
            },
            _ => NotificationKind::TransactionUpdated {
                id: OpId {
                    account: AccountId(9),
                    n: seq,
                },
                kind: OpKind::Transfer,
                status: TxStatus::Processing,
                amount: Decimal::new(1, 0),
                fee: Decimal::new(1, 2),
                currency: cny(),
                direction: Direction::In,
                counterparty: None,
            },
        };
        Notification {
            seq,
            at: Timestamp(1_764_500_000_000 + seq as i64 * 37),
            kind,
        }
    }

    #[test]
    fn it_gives_back_what_it_took_in_order_from_either_end() {
        let mut ring = NotificationRing::default();
        let mut model = VecDeque::new();
        for seq in 1..=700 {
            ring.push_back(note(seq));
            model.push_back(note(seq));
            if model.len() > 256 {
                ring.pop_front();
                model.pop_front();
            }
            assert_eq!(ring.len(), model.len());
        }
        assert!(ring.iter().eq(model.iter().cloned()));
        assert!(ring.iter().rev().eq(model.iter().rev().cloned()));
        assert_eq!(ring.front(), model.front().cloned());
        assert_eq!(ring.back(), model.back().cloned());
        let after: Vec<u64> = ring.after(690).map(|n| n.seq).collect();
        assert_eq!(after, (691..=700).collect::<Vec<_>>());
        assert_eq!(ring.after(0).count(), 256);
        // Dropped bytes are cut off: the buffer stays within twice the live ones.
        let live: u32 = ring.lens.iter().sum();
        assert!(
            ring.bytes.len() <= 2 * live as usize,
            "{} for {live}",
            ring.bytes.len()
        );
        assert!(
            (live as usize) < 256 * 40,
            "packed notifications are small: {live} bytes for 256"
        );
    }

    #[test]
    fn rings_of_the_same_notifications_are_equal_however_they_were_filled() {
        let filled: NotificationRing = (1..=20).map(note).collect();
        let mut slid = NotificationRing::default();
        for seq in 0..=20 {
            slid.push_back(note(seq));
        }
        slid.pop_front();
        assert_eq!(filled, slid);
        slid.pop_front();
        assert_ne!(filled, slid);
        let mut emptied = filled.clone();
        emptied.clear();
        assert!(emptied.is_empty() && emptied.back().is_none());
        emptied.push_back(note(5));
        assert_eq!(emptied.back(), Some(note(5)));
    }

    #[test]
    fn it_serializes_as_the_list_it_replaced() {
        let notes: VecDeque<Notification> = (1..=9).map(note).collect();
        let ring: NotificationRing = notes.iter().cloned().collect();
        let bytes = postcard::to_stdvec(&ring).expect("serializes");
        assert_eq!(bytes, postcard::to_stdvec(&notes).expect("serializes"));
        let back: NotificationRing = postcard::from_bytes(&bytes).expect("deserializes");
        assert_eq!(back, ring);
    }
}
