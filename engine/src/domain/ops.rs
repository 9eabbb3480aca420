//! An account's operations of the day by number: a deque kept in ascending
//! order instead of a B-tree. Numbers are minted in increasing order
//! (`next_op`), so a new operation is appended, and compaction keeps the
//! numbers nearly consecutive, so the operation a saga step or a history row
//! asks about is found at the index its distance from the newest gives: one
//! read, where a B-tree walked three or four nodes of a busy account's day
//! (the walk and the inserts were ~6% of the executors' samples in the
//! in-memory bench, 2026-12-01). Any other number is found by a binary search.
//!
//! Serialized exactly as the `BTreeMap<u64, OpRecord>` it replaces (a map in
//! ascending order), so stored snapshots of every version read and write the
//! same bytes; a map read in another order, or with a number twice, is taken
//! as the B-tree took it (sorted, the last value of a number kept).

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::domain::state::OpRecord;

/// Below this many slots a deque keeps its room after a compaction.
const SHRINK_ABOVE: usize = 64;

/// Operations by number, ascending (see the module doc).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ops(VecDeque<(u64, OpRecord)>);

impl Ops {
    pub fn new() -> Self {
        Ops(VecDeque::new())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Where operation `n` is (`Ok`) or would go (`Err`), as a binary search
    /// answers; first at the place consecutive numbers would put it.
    fn position(&self, n: u64) -> Result<usize, usize> {
        let len = self.0.len();
        let Some(&(last, _)) = self.0.back() else {
            return Err(0);
        };
        if last < n {
            return Err(len);
        }
        if let Ok(back) = usize::try_from(last - n) {
            if back < len && self.0[len - 1 - back].0 == n {
                return Ok(len - 1 - back);
            }
        }
        self.0.binary_search_by_key(&n, |(k, _)| *k)
    }

    pub fn get(&self, n: &u64) -> Option<&OpRecord> {
        self.position(*n).ok().map(|i| &self.0[i].1)
    }

    pub fn get_mut(&mut self, n: &u64) -> Option<&mut OpRecord> {
        self.position(*n).ok().map(|i| &mut self.0[i].1)
    }

    pub fn contains_key(&self, n: &u64) -> bool {
        self.position(*n).is_ok()
    }

    /// Inserts operation `n`, returning the one it replaces.
    pub fn insert(&mut self, n: u64, op: OpRecord) -> Option<OpRecord> {
        match self.position(n) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, op)),
            Err(i) if i == self.0.len() => {
                self.0.push_back((n, op));
                None
            }
            Err(i) => {
                self.0.insert(i, (n, op));
                None
            }
        }
    }

    /// Keeps the operations `keep` answers `true` for, in order. When that
    /// leaves the deque under a quarter full, it gives the room back (down to
    /// twice what is left): a burst's day must not pin its memory after
    /// compaction has dropped it, as a B-tree's freed nodes did not.
    pub fn retain(&mut self, mut keep: impl FnMut(&u64, &mut OpRecord) -> bool) {
        self.0.retain_mut(|(n, op)| keep(n, op));
        if self.0.capacity() > SHRINK_ABOVE && self.0.len() * 4 < self.0.capacity() {
            self.0.shrink_to(self.0.len() * 2);
        }
    }

    /// The operations, ascending by number.
    pub fn iter(&self) -> Iter<'_> {
        Iter(self.0.iter())
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &u64> + ExactSizeIterator {
        self.0.iter().map(|(n, _)| n)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &OpRecord> + ExactSizeIterator {
        self.0.iter().map(|(_, op)| op)
    }
}

/// The operations of an [`Ops`], ascending by number.
pub struct Iter<'a>(std::collections::vec_deque::Iter<'a, (u64, OpRecord)>);

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a u64, &'a OpRecord);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(n, op)| (n, op))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(|(n, op)| (n, op))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a Ops {
    type Item = (&'a u64, &'a OpRecord);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl std::ops::Index<&u64> for Ops {
    type Output = OpRecord;

    /// Panics when there is no operation `n`, as a map's index does.
    fn index(&self, n: &u64) -> &OpRecord {
        self.get(n).expect("no operation with that number")
    }
}

impl From<BTreeMap<u64, OpRecord>> for Ops {
    fn from(map: BTreeMap<u64, OpRecord>) -> Self {
        Ops(map.into_iter().collect())
    }
}

impl FromIterator<(u64, OpRecord)> for Ops {
    /// In any order; a number given twice keeps its last operation.
    fn from_iter<I: IntoIterator<Item = (u64, OpRecord)>>(iter: I) -> Self {
        let mut ops = Ops::new();
        for (n, op) in iter {
            ops.insert(n, op);
        }
        ops
    }
}

impl Serialize for Ops {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Ops {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        BTreeMap::<u64, OpRecord>::deserialize(d).map(Ops::from)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    use super::*;
    use crate::domain::command::DepositMethod;
    use crate::money::{Amount, Currency};
    use crate::time::Timestamp;

    fn deposit(cents: i64) -> OpRecord {
        OpRecord::Deposit {
            amount: Amount::new(Decimal::new(cents, 2), Currency::new("CNY", 2).unwrap()).unwrap(),
            fee: Decimal::ZERO,
            method: DepositMethod::BankCard,
            card: "6222".into(),
            at: Timestamp(cents),
        }
    }

    proptest! {
        /// Inserts (mostly ascending, some anywhere, some again), lookups,
        /// retains and the serialized bytes all answer what the B-tree answers.
        #[test]
        fn answers_what_a_btree_answers(
            steps in prop::collection::vec((0u8..8, 0u64..40, 1i64..1_000), 1..200),
            probes in prop::collection::vec(0u64..300, 0..40),
        ) {
            let mut ops = Ops::new();
            let mut map = BTreeMap::new();
            let mut next = 1u64;
            for (what, n, cents) in steps {
                match what {
                    // Mostly the next number, as `next_op` mints them.
                    0..=4 => {
                        prop_assert_eq!(ops.insert(next, deposit(cents)), map.insert(next, deposit(cents)));
                        next += 1;
                    }
                    5 => prop_assert_eq!(ops.insert(n * 7, deposit(cents)), map.insert(n * 7, deposit(cents))),
                    6 => {
                        ops.retain(|k, _| (k + n) % 3 != 0);
                        map.retain(|k, _| (k + n) % 3 != 0);
                    }
                    _ => {
                        if let (Some(a), Some(b)) = (ops.get_mut(&n), map.get_mut(&n)) {
                            *a = deposit(cents);
                            *b = deposit(cents);
                        }
                    }
                }
            }
            prop_assert_eq!(ops.len(), map.len());
            prop_assert!(ops.iter().eq(map.iter()));
            prop_assert!(ops.keys().rev().eq(map.keys().rev()));
            for p in probes {
                prop_assert_eq!(ops.get(&p), map.get(&p));
                prop_assert_eq!(ops.contains_key(&p), map.contains_key(&p));
            }
            prop_assert_eq!(postcard::to_stdvec(&ops).unwrap(), postcard::to_stdvec(&map).unwrap());
            prop_assert_eq!(serde_json::to_string(&ops).unwrap(), serde_json::to_string(&map).unwrap());
            let back: Ops = postcard::from_bytes(&postcard::to_stdvec(&map).unwrap()).unwrap();
            prop_assert_eq!(back, ops);
        }
    }

    #[test]
    fn compaction_gives_a_bursts_room_back() {
        let mut ops = Ops::new();
        for n in 1..=10_000 {
            ops.insert(n, deposit(1));
        }
        assert!(ops.0.capacity() >= 10_000);
        ops.retain(|n, _| *n > 9_900);
        assert_eq!(ops.len(), 100);
        assert!(ops.0.capacity() <= 256, "room kept: {}", ops.0.capacity());
        assert_eq!(ops.keys().next(), Some(&9_901));
        // A small deque keeps its room.
        let mut small: Ops = (1..=40).map(|n| (n, deposit(1))).collect();
        let before = small.0.capacity();
        small.retain(|n, _| *n == 40);
        assert_eq!(small.0.capacity(), before);
    }

    #[test]
    fn a_map_out_of_order_or_with_a_number_twice_reads_as_the_btree_reads_it() {
        let pairs = vec![
            (5, deposit(1)),
            (2, deposit(2)),
            (5, deposit(3)),
            (9, deposit(4)),
        ];
        // A postcard map is its length and its pairs: the bytes of a list of
        // pairs, in whatever order an old writer put them.
        let bytes = postcard::to_stdvec(&pairs).unwrap();
        let read: Ops = postcard::from_bytes(&bytes).unwrap();
        let btree: BTreeMap<u64, OpRecord> = postcard::from_bytes(&bytes).unwrap();
        assert!(read.iter().eq(btree.iter()));
        assert_eq!(read.keys().copied().collect::<Vec<_>>(), vec![2, 5, 9]);
        assert_eq!(read[&5], deposit(3));
        assert_eq!(read.get(&3), None);
        // Collected in any order, the same.
        let collected: Ops = pairs.into_iter().collect();
        assert_eq!(collected, read);
    }
}
