//! Activity marks of a rolling window with their amounts' running totals, so
//! a fraud rule sums the window in time proportional to the marks that aged
//! out since the last compaction, not to the whole window: the split-payment
//! rule's window is a day, and a busy sender's day holds thousands of marks
//! that were all summed on every operation before (2026-12-01).
//!
//! Marks are kept in time order: one stamped earlier than the last (a wall
//! clock stepped back) is recorded at the last one's time, which keeps it in
//! the window no shorter than it would have been. The totals are derived:
//! (de)serialized as the plain list of marks (the stored bytes of version 3
//! and of version 4's postcard part are unchanged) and recomputed on reading.

use std::collections::VecDeque;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thin_vec::ThinVec;

use crate::time::Timestamp;

/// A mark of a window: when, how much, and what it is summed by (`()` for a
/// window summed across currencies, the currency otherwise).
pub trait Mark {
    type Key: Copy + Eq + std::fmt::Debug;
    fn at(&self) -> Timestamp;
    fn set_at(&mut self, at: Timestamp);
    fn key(&self) -> Self::Key;
    fn amount(&self) -> Decimal;
}

/// The marks of a window, oldest first, and their total per key (equal when
/// the marks are: the totals are derived).
#[derive(Clone, Debug)]
pub struct Window<M: Mark> {
    marks: VecDeque<M>,
    /// One word, pointing at a shared empty header while there is no mark:
    /// a window adds one word to an idle account and allocates nothing.
    totals: ThinVec<(M::Key, Decimal)>,
}

impl<M: Mark> Default for Window<M> {
    fn default() -> Self {
        Window {
            marks: VecDeque::new(),
            totals: ThinVec::new(),
        }
    }
}

impl<M: Mark> Window<M> {
    /// Appends `mark`, at the last mark's time if it is stamped earlier.
    pub fn push(&mut self, mut mark: M) {
        if let Some(last) = self.marks.back() {
            if mark.at() < last.at() {
                mark.set_at(last.at());
            }
        }
        self.add(mark.key(), mark.amount());
        self.marks.push_back(mark);
    }

    /// Drops the marks at or before `until` from the front.
    pub fn drop_until(&mut self, until: i64) {
        while let Some(m) = self.marks.front() {
            if m.at().millis() > until {
                break;
            }
            let (key, amount) = (m.key(), m.amount());
            self.marks.pop_front();
            self.add(key, -amount);
        }
        if self.marks.is_empty() {
            self.totals.clear();
        }
    }

    pub fn clear(&mut self) {
        self.marks.clear();
        self.totals.clear();
    }

    /// The marks, oldest first.
    pub fn marks(&self) -> &VecDeque<M> {
        &self.marks
    }

    pub fn len(&self) -> usize {
        self.marks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.marks.is_empty()
    }

    /// How many marks are after `since` (ms).
    pub fn count_after(&self, since: i64) -> usize {
        self.marks.len() - self.aged(since)
    }

    /// The total of the marks of `key` after `since` (ms): the running total
    /// less the marks that aged out, which compaction keeps few.
    pub fn sum_after(&self, key: M::Key, since: i64) -> Decimal {
        let total = self
            .totals
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(Decimal::ZERO, |(_, t)| *t);
        let aged = self
            .marks
            .range(..self.aged(since))
            .filter(|m| m.key() == key)
            .fold(Decimal::ZERO, |sum, m| sum.saturating_add(m.amount()));
        total.saturating_sub(aged)
    }

    /// How many marks from the front are at or before `since`.
    fn aged(&self, since: i64) -> usize {
        aged_prefix(&self.marks, |m| m.at().millis() <= since)
    }

    /// Saturating: no command makes amounts whose sum overflows a `Decimal`
    /// (limits stop them far below), but a corrupt or hand-made state can,
    /// and reading it must be an error or a value, never a panic.
    fn add(&mut self, key: M::Key, amount: Decimal) {
        match self.totals.iter_mut().find(|(k, _)| *k == key) {
            Some((_, total)) => *total = total.saturating_add(amount),
            None => self.totals.push((key, amount)),
        }
    }
}

/// The length of the prefix of `marks` (oldest first) for which `aged` holds,
/// as `partition_point` gives it, found by galloping from the front: the
/// answer is almost always 0 or a few marks (compaction drops what ages out),
/// so this reads one or two marks where a binary search over a busy account's
/// thousands read a dozen scattered ones (4.7% of the executors' samples in
/// the in-memory bench, 2026-12-01).
pub fn aged_prefix<T>(marks: &VecDeque<T>, aged: impl Fn(&T) -> bool) -> usize {
    let n = marks.len();
    if n == 0 || !aged(&marks[0]) {
        return 0;
    }
    // `lo` is aged; `hi` is not, or is the end.
    let mut lo = 0;
    let mut hi = 1;
    while hi < n && aged(&marks[hi]) {
        lo = hi;
        hi = (hi * 2).min(n);
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if aged(&marks[mid]) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

impl<M: Mark + PartialEq> PartialEq for Window<M> {
    fn eq(&self, other: &Self) -> bool {
        self.marks == other.marks
    }
}

impl<M: Mark + Eq> Eq for Window<M> {}

impl<M: Mark> From<VecDeque<M>> for Window<M> {
    /// Marks as stored (in the order stored, even out of time order as
    /// states from before kept them), with their totals.
    fn from(marks: VecDeque<M>) -> Self {
        let mut w = Window::default();
        for m in &marks {
            w.add(m.key(), m.amount());
        }
        w.marks = marks;
        w
    }
}

impl<M: Mark + Serialize> Serialize for Window<M> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.marks.serialize(s)
    }
}

impl<'de, M: Mark + Deserialize<'de>> Deserialize<'de> for Window<M> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        VecDeque::<M>::deserialize(d).map(Window::from)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::security::UnchallengedMark;
    use crate::domain::state::OutgoingMark;
    use crate::money::{Amount, Currency};

    fn unchallenged(at: i64, cents: i64, currency: Currency) -> UnchallengedMark {
        UnchallengedMark {
            at: Timestamp(at),
            amount: Amount::new(Decimal::new(cents, 2), currency).unwrap(),
        }
    }

    #[test]
    fn a_mark_stamped_before_the_last_is_kept_at_the_last_ones_time() {
        let mut w = Window::default();
        w.push(OutgoingMark {
            at: Timestamp(1_000),
            amount: Decimal::ONE,
        });
        w.push(OutgoingMark {
            at: Timestamp(400),
            amount: Decimal::TWO,
        });
        assert_eq!(w.marks()[1].at, Timestamp(1_000));
        assert_eq!(w.count_after(999), 2);
        assert_eq!(w.sum_after((), 999), Decimal::from(3));
        w.drop_until(1_000);
        assert!(w.is_empty());
        assert_eq!(w.sum_after((), 0), Decimal::ZERO);
    }

    /// Amounts no command can make (a corrupt or hand-made state: decimals
    /// near `Decimal::MAX`) saturate the totals instead of panicking on
    /// overflow, through reading, pushing, summing and dropping.
    #[test]
    fn absurd_amounts_saturate_instead_of_panicking() {
        let mark = |at, amount| OutgoingMark {
            at: Timestamp(at),
            amount,
        };
        let huge = VecDeque::from([mark(1, Decimal::MAX), mark(2, Decimal::MAX)]);
        let mut w = Window::from(huge);
        assert_eq!(w.sum_after((), 0), Decimal::MAX);
        w.push(mark(3, Decimal::MIN));
        w.push(mark(4, Decimal::MIN));
        assert_eq!(w.sum_after((), 2), Decimal::MIN);
        w.drop_until(3);
        assert_eq!(w.len(), 1);
        w.drop_until(4);
        assert_eq!(w.sum_after((), 0), Decimal::ZERO);
    }

    proptest! {
        /// Galloping from the front finds what a binary search finds, for
        /// every split of a sorted sequence.
        #[test]
        fn aged_prefix_is_the_partition_point(
            mut times in prop::collection::vec(0i64..1_000, 0..300),
            since in -10i64..1_010,
        ) {
            times.sort_unstable();
            let marks: VecDeque<i64> = times.into_iter().collect();
            prop_assert_eq!(
                aged_prefix(&marks, |t| *t <= since),
                marks.partition_point(|t| *t <= since)
            );
        }

        /// The totals answer what summing the marks answers, by key, through
        /// pushes, compactions and a serde round trip.
        #[test]
        fn sums_match_summing_the_marks(
            steps in prop::collection::vec((0i64..50, 1i64..100_000, any::<bool>(), 0u8..4), 1..200),
            since_back in 0i64..400,
        ) {
            let (cny, usd) = (Currency::new("CNY", 2).unwrap(), Currency::new("USD", 2).unwrap());
            let mut w = Window::default();
            let mut t = 0i64;
            for (dt, cents, in_usd, op) in steps {
                // Mostly forward in time, sometimes a step back.
                t += dt - 10;
                w.push(unchallenged(t, cents, if in_usd { usd } else { cny }));
                if op == 0 {
                    w.drop_until(t - 300);
                }
            }
            let back: Window<UnchallengedMark> =
                serde_json::from_str(&serde_json::to_string(&w).unwrap()).unwrap();
            prop_assert_eq!(&back, &w);
            let since = t - since_back;
            for currency in [cny, usd] {
                let summed: Decimal = w
                    .marks()
                    .iter()
                    .filter(|m| m.at.millis() > since && m.amount.currency() == currency)
                    .map(|m| m.amount.value())
                    .sum();
                prop_assert_eq!(w.sum_after(currency, since), summed);
            }
            let counted = w.marks().iter().filter(|m| m.at.millis() > since).count();
            prop_assert_eq!(w.count_after(since), counted);
            prop_assert!(w.marks().iter().zip(w.marks().iter().skip(1)).all(|(a, b)| a.at <= b.at));
        }
    }
}
