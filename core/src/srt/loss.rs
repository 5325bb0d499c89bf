//! Loss set: the receiver's list of missing sequence numbers, and the
//! sender's list of sequence numbers to retransmit (draft-sharabayko-srt-01
//! §4.6 "Acknowledgement and Lost Packet Handling", §4.8.2 NAK reports).
//!
//! Missing packets are kept as sorted, disjoint, non-adjacent inclusive
//! ranges, compared wrap-aware ([`SeqNo`]). The whole set must fit inside a
//! window of `max_span` sequence numbers starting at its lowest member —
//! the receive (flow) window — which bounds both its memory (at most
//! `max_span / 2 + 1` ranges) and keeps wrap-aware comparison valid.

use std::collections::VecDeque;

use super::packet::LossList;
use super::seq::SeqNo;

/// Why an insertion was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LossError {
    /// `first` comes after `last`.
    #[error("loss range {first}..={last} runs backwards")]
    Backwards {
        /// Range start.
        first: SeqNo,
        /// Range end.
        last: SeqNo,
    },
    /// The set would span more than its window.
    #[error("loss set would span more than {max_span} sequence numbers")]
    WindowExceeded {
        /// The configured window.
        max_span: u32,
    },
}

/// A bounded set of lost sequence numbers (see the module docs).
///
/// Invariants: ranges are sorted, disjoint and separated by at least one
/// sequence number; `len` is the number of members; every member lies in
/// `lowest ..= lowest + max_span - 1`.
#[derive(Debug, Clone)]
pub struct LossSet {
    ranges: VecDeque<(SeqNo, SeqNo)>,
    len: u64,
    max_span: u32,
}

impl LossSet {
    /// An empty set whose members must fit in `max_span` consecutive
    /// sequence numbers (at least 1, at most 2^30).
    pub fn new(max_span: u32) -> Self {
        LossSet {
            ranges: VecDeque::new(),
            len: 0,
            max_span: max_span.clamp(1, SeqNo::HALF),
        }
    }

    /// Number of lost sequence numbers.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// `true` if nothing is lost.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The lowest lost sequence number.
    pub fn first(&self) -> Option<SeqNo> {
        self.ranges.front().map(|r| r.0)
    }

    /// The ranges, lowest first.
    pub fn ranges(&self) -> impl Iterator<Item = (SeqNo, SeqNo)> + '_ {
        self.ranges.iter().copied()
    }

    /// `true` if `seq` is in the set.
    pub fn contains(&self, seq: SeqNo) -> bool {
        let i = self.ranges.partition_point(|r| r.1.is_before(seq));
        self.ranges.get(i).is_some_and(|r| !seq.is_before(r.0))
    }

    /// Adds `first ..= last`, merging with neighbours. Refused (nothing
    /// changes) if the range runs backwards or the set would no longer fit
    /// its window.
    pub fn insert(&mut self, first: SeqNo, last: SeqNo) -> Result<(), LossError> {
        if first.is_after(last) {
            return Err(LossError::Backwards { first, last });
        }
        let lo = match self.ranges.front() {
            Some(f) if f.0.is_before(first) => f.0,
            _ => first,
        };
        let hi = match self.ranges.back() {
            Some(b) if b.1.is_after(last) => b.1,
            _ => last,
        };
        if lo.range_len(hi).map_or(true, |n| n > self.max_span) {
            return Err(LossError::WindowExceeded {
                max_span: self.max_span,
            });
        }
        // Ranges ending before `first - 1` stay as they are.
        let i = self.ranges.partition_point(|r| r.1.next().is_before(first));
        let mut new = (first, last);
        while let Some(&r) = self.ranges.get(i) {
            if r.0.is_after(last.next()) {
                break;
            }
            if r.0.is_before(new.0) {
                new.0 = r.0;
            }
            if r.1.is_after(new.1) {
                new.1 = r.1;
            }
            self.len -= u64::from(r.0.range_len(r.1).unwrap_or(0));
            self.ranges.remove(i);
        }
        self.len += u64::from(new.0.range_len(new.1).unwrap_or(0));
        self.ranges.insert(i, new);
        Ok(())
    }

    /// Removes `seq` (a packet arrived or was retransmitted); returns
    /// whether it was a member.
    pub fn remove(&mut self, seq: SeqNo) -> bool {
        let i = self.ranges.partition_point(|r| r.1.is_before(seq));
        let Some(r) = self.ranges.get_mut(i) else {
            return false;
        };
        if seq.is_before(r.0) {
            return false;
        }
        self.len -= 1;
        if r.0 == r.1 {
            self.ranges.remove(i);
        } else if seq == r.0 {
            r.0 = seq.next();
        } else if seq == r.1 {
            r.1 = seq.sub(1);
        } else {
            let tail = (seq.next(), r.1);
            r.1 = seq.sub(1);
            self.ranges.insert(i + 1, tail);
        }
        true
    }

    /// Removes every member of `first ..= last` (a DROPREQ, §3.2.9);
    /// returns how many were removed. Costs O(ranges touched), whatever
    /// the width of the range; a backwards range removes nothing.
    pub fn remove_range(&mut self, first: SeqNo, last: SeqNo) -> u64 {
        if first.is_after(last) {
            return 0;
        }
        let mut removed = 0u64;
        let mut i = self.ranges.partition_point(|r| r.1.is_before(first));
        while let Some(&r) = self.ranges.get(i) {
            if r.0.is_after(last) {
                break;
            }
            let lo = if r.0.is_before(first) { first } else { r.0 };
            let hi = if r.1.is_after(last) { last } else { r.1 };
            removed += u64::from(lo.range_len(hi).unwrap_or(0));
            let left = r.0.is_before(first).then(|| (r.0, first.sub(1)));
            let right = r.1.is_after(last).then(|| (last.next(), r.1));
            match (left, right) {
                (None, None) => {
                    self.ranges.remove(i);
                }
                (Some(l), None) => {
                    if let Some(x) = self.ranges.get_mut(i) {
                        *x = l;
                    }
                    i += 1;
                }
                (None, Some(rt)) => {
                    if let Some(x) = self.ranges.get_mut(i) {
                        *x = rt;
                    }
                    break;
                }
                (Some(l), Some(rt)) => {
                    if let Some(x) = self.ranges.get_mut(i) {
                        *x = l;
                    }
                    self.ranges.insert(i + 1, rt);
                    break;
                }
            }
        }
        self.len -= removed;
        removed
    }

    /// Removes every member before `seq` (acknowledged or dropped as too
    /// late); returns how many were removed.
    pub fn remove_before(&mut self, seq: SeqNo) -> u64 {
        let mut removed = 0u64;
        while let Some(r) = self.ranges.front_mut() {
            if !r.0.is_before(seq) {
                break;
            }
            if r.1.is_before(seq) {
                removed += u64::from(r.0.range_len(r.1).unwrap_or(0));
                self.ranges.pop_front();
            } else {
                removed += u64::from(r.0.range_len(seq.sub(1)).unwrap_or(0));
                r.0 = seq;
                break;
            }
        }
        self.len -= removed;
        removed
    }

    /// The lowest ranges as a NAK loss list (§3.2.5), as many as fit one
    /// packet.
    pub fn to_nak(&self) -> LossList {
        let mut list = LossList::new();
        for &(a, b) in &self.ranges {
            if !list.push(a, b) {
                break;
            }
        }
        list
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn merges_splits_and_wraps() {
        let mut s = LossSet::new(1000);
        let base = SeqNo::MAX.sub(5);
        s.insert(base, base.add(2)).unwrap();
        s.insert(base.add(3), base.add(9)).unwrap(); // adjacent: merges across the wrap
        assert_eq!(s.ranges().collect::<Vec<_>>(), vec![(base, base.add(9))]);
        assert_eq!(s.len(), 10);
        assert!(s.remove(SeqNo::ZERO));
        assert!(!s.remove(SeqNo::ZERO));
        assert_eq!(s.ranges().count(), 2);
        assert!(s.contains(SeqNo::MAX) && !s.contains(SeqNo::ZERO));
        assert_eq!(s.remove_before(SeqNo::new(2)), 7);
        assert_eq!(s.first(), Some(SeqNo::new(2)));
        assert_eq!(s.len(), 2);
        assert_eq!(
            s.insert(SeqNo::new(5), SeqNo::new(4)),
            Err(LossError::Backwards {
                first: SeqNo::new(5),
                last: SeqNo::new(4)
            })
        );
        assert_eq!(
            s.insert(SeqNo::new(1002), SeqNo::new(1002)),
            Err(LossError::WindowExceeded { max_span: 1000 })
        );
        assert_eq!(s.len(), 2, "refused inserts change nothing");
        s.insert(SeqNo::new(1001), SeqNo::new(1001)).unwrap(); // span exactly 1000
        assert_eq!(s.len(), 3);
        // An absurd DROPREQ range (2^30 packets) costs the ranges it
        // touches, and a backwards one removes nothing.
        assert_eq!(s.remove_range(SeqNo::new(0), SeqNo::new((1 << 30) - 1)), 3);
        assert!(s.is_empty());
        s.insert(SeqNo::new(10), SeqNo::new(20)).unwrap();
        assert_eq!(s.remove_range(SeqNo::new(20), SeqNo::new(10)), 0);
        assert_eq!(s.remove_range(SeqNo::new(12), SeqNo::new(14)), 3);
        assert_eq!(s.ranges().count(), 2);
        assert_eq!(s.len(), 8);
    }

    #[test]
    fn nak_is_bounded_by_one_packet() {
        let mut s = LossSet::new(1 << 20);
        for i in 0..2000u32 {
            s.insert(SeqNo::new(i * 2), SeqNo::new(i * 2)).unwrap();
        }
        let nak = s.to_nak();
        assert!(nak.encoded_len() <= super::super::packet::MAX_PACKET_SIZE - 16);
        assert_eq!(nak.ranges().first(), Some(&(SeqNo::ZERO, SeqNo::ZERO)));
        assert!(nak.ranges().len() > 300);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u32, u32),
        Remove(u32),
        RemoveBefore(u32),
        RemoveRange(u32, u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u32..300, 0u32..20).prop_map(|(a, n)| Op::Insert(a, n)),
            (0u32..320).prop_map(Op::Remove),
            (0u32..320).prop_map(Op::RemoveBefore),
            (0u32..320, 0u32..60).prop_map(|(a, n)| Op::RemoveRange(a, n)),
        ]
    }

    proptest! {
        /// The set behaves like a `BTreeSet` of unwrapped numbers, with a
        /// base that makes the window straddle the 2^31 wrap.
        #[test]
        fn matches_a_model(base in prop_oneof![Just(SeqNo::MAX.sub(150).value()), 0u32..SeqNo::MODULUS], ops in proptest::collection::vec(op(), 1..80)) {
            let base = SeqNo::new(base);
            let mut s = LossSet::new(256);
            let mut model = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Insert(a, n) => {
                        let mut m2 = model.clone();
                        m2.extend(a..=a + n);
                        let span = m2.last().unwrap() - m2.first().unwrap() + 1;
                        let r = s.insert(base.add(a), base.add(a + n));
                        if span <= 256 {
                            prop_assert!(r.is_ok());
                            model = m2;
                        } else {
                            prop_assert!(r.is_err());
                        }
                    }
                    Op::Remove(x) => {
                        prop_assert_eq!(s.remove(base.add(x)), model.remove(&x));
                    }
                    Op::RemoveBefore(x) => {
                        let before: Vec<u32> = model.range(..x).copied().collect();
                        for v in &before {
                            model.remove(v);
                        }
                        prop_assert_eq!(s.remove_before(base.add(x)), before.len() as u64);
                    }
                    Op::RemoveRange(a, n) => {
                        let hit: Vec<u32> = model.range(a..=a + n).copied().collect();
                        for v in &hit {
                            model.remove(v);
                        }
                        prop_assert_eq!(s.remove_range(base.add(a), base.add(a + n)), hit.len() as u64);
                    }
                }
                let got: Vec<u32> = s
                    .ranges()
                    .flat_map(|(a, b)| {
                        let a = base.offset_to(a) as u32;
                        let b = base.offset_to(b) as u32;
                        a..=b
                    })
                    .collect();
                prop_assert_eq!(&got, &model.iter().copied().collect::<Vec<_>>());
                prop_assert_eq!(s.len(), model.len() as u64);
                // Disjoint and non-adjacent.
                let rs: Vec<_> = s.ranges().collect();
                for w in rs.windows(2) {
                    if let [x, y] = w {
                        prop_assert!(x.1.next().is_before(y.0));
                    }
                }
            }
        }
    }
}
