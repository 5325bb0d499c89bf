//! Wrap-aware SRT number spaces: 31-bit packet sequence numbers, 26-bit
//! message numbers and 32-bit microsecond timestamps (draft-sharabayko-srt-01
//! §3.1 "Data Packets", §4.5 "Timestamps").
//!
//! Sequence numbers live on a circle of 2^31 values. Two numbers are compared
//! by the shortest way round the circle, so `SeqNo::MAX + 1 == SeqNo::ZERO`
//! and `SeqNo::MAX` is "before" `SeqNo::ZERO`. The comparison is only
//! meaningful while the two numbers are less than 2^30 apart, which live mode
//! guarantees (flow windows are a few thousand packets).

use core::cmp::Ordering;
use core::fmt;

/// A 31-bit packet sequence number (draft-sharabayko-srt-01 §3.1, "Packet
/// Sequence Number").
///
/// Invariant: the inner value is `<= SeqNo::MAX.value()` (the top bit is
/// never set). All arithmetic wraps modulo 2^31.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqNo(u32);

impl SeqNo {
    /// Number of distinct sequence numbers (2^31).
    pub const MODULUS: u32 = 1 << 31;
    /// The largest sequence number, 2^31 - 1.
    pub const MAX: SeqNo = SeqNo(Self::MODULUS - 1);
    /// Sequence number zero.
    pub const ZERO: SeqNo = SeqNo(0);
    /// Half the circle: the largest distance that [`SeqNo::offset_to`] reports
    /// with a correct sign.
    pub const HALF: u32 = 1 << 30;

    /// A sequence number from the low 31 bits of `v` (the top bit, which is
    /// the F flag on the wire, is dropped).
    pub const fn new(v: u32) -> Self {
        SeqNo(v & (Self::MODULUS - 1))
    }

    /// The value, in `0..2^31`.
    pub const fn value(self) -> u32 {
        self.0
    }

    /// `self + n`, wrapping modulo 2^31.
    #[must_use]
    pub const fn add(self, n: u32) -> Self {
        SeqNo::new(self.0.wrapping_add(n))
    }

    /// `self - n`, wrapping modulo 2^31.
    #[must_use]
    pub const fn sub(self, n: u32) -> Self {
        SeqNo::new(self.0.wrapping_sub(n))
    }

    /// The next sequence number.
    #[must_use]
    pub const fn next(self) -> Self {
        self.add(1)
    }

    /// Signed distance from `self` to `other` along the shortest way round
    /// the circle: positive when `other` comes after `self`. The result lies
    /// in `-2^30 ..= 2^30 - 1`; a distance of exactly 2^30 is reported as
    /// `-2^30`.
    pub const fn offset_to(self, other: SeqNo) -> i32 {
        let d = other.0.wrapping_sub(self.0) & (Self::MODULUS - 1);
        if d >= Self::HALF {
            // d - 2^31 (in -2^30..0): sign-extend the 31-bit value.
            (d | Self::MODULUS) as i32
        } else {
            d as i32
        }
    }

    /// Wrap-aware ordering: `Less` when `self` comes before `other`.
    pub const fn cmp_wrapped(self, other: SeqNo) -> Ordering {
        let off = self.offset_to(other);
        if off > 0 {
            Ordering::Less
        } else if off < 0 {
            Ordering::Greater
        } else {
            Ordering::Equal
        }
    }

    /// `true` if `self` comes strictly before `other` (wrap-aware).
    pub const fn is_before(self, other: SeqNo) -> bool {
        self.offset_to(other) > 0
    }

    /// `true` if `self` comes strictly after `other` (wrap-aware).
    pub const fn is_after(self, other: SeqNo) -> bool {
        self.offset_to(other) < 0
    }

    /// Number of sequence numbers in the inclusive range `self ..= last`
    /// (`None` if `last` comes before `self`).
    pub const fn range_len(self, last: SeqNo) -> Option<u32> {
        let off = self.offset_to(last);
        if off < 0 {
            None
        } else {
            Some(off as u32 + 1)
        }
    }
}

impl fmt::Debug for SeqNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SeqNo({})", self.0)
    }
}

impl fmt::Display for SeqNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A 26-bit message number (draft-sharabayko-srt-01 §3.1, "Message Number").
///
/// Invariant: the inner value is `< 2^26`. Arithmetic wraps modulo 2^26.
/// libsrt starts message numbers at 1 and skips 0 after wrapping; this type
/// does not enforce that.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MsgNo(u32);

impl MsgNo {
    /// Number of distinct message numbers (2^26).
    pub const MODULUS: u32 = 1 << 26;
    /// The largest message number.
    pub const MAX: MsgNo = MsgNo(Self::MODULUS - 1);

    /// A message number from the low 26 bits of `v`.
    pub const fn new(v: u32) -> Self {
        MsgNo(v & (Self::MODULUS - 1))
    }

    /// The value, in `0..2^26`.
    pub const fn value(self) -> u32 {
        self.0
    }

    /// The next message number, wrapping modulo 2^26.
    #[must_use]
    pub const fn next(self) -> Self {
        MsgNo::new(self.0.wrapping_add(1))
    }
}

impl fmt::Debug for MsgNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MsgNo({})", self.0)
    }
}

/// A 32-bit packet timestamp in microseconds since the connection's start
/// time (draft-sharabayko-srt-01 §3 "Timestamp", §4.5). It wraps every
/// 2^32 µs (about 71.6 minutes); use [`TimestampUnwrapper`] to extend it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
pub struct Timestamp(pub u32);

impl Timestamp {
    /// The wire value in microseconds.
    pub const fn micros(self) -> u32 {
        self.0
    }

    /// `self + micros`, wrapping modulo 2^32.
    #[must_use]
    pub const fn add_micros(self, micros: u32) -> Self {
        Timestamp(self.0.wrapping_add(micros))
    }

    /// Signed distance in µs from `self` to `later` along the shortest way
    /// round the 2^32 circle (positive when `later` is after `self`).
    pub const fn offset_to(self, later: Timestamp) -> i32 {
        later.0.wrapping_sub(self.0) as i32
    }
}

/// Extends wrapping 32-bit [`Timestamp`]s to a 64-bit µs count
/// (draft-sharabayko-srt-01 §4.5.1.1 "TSBPD Time Base Calculation": the time
/// base moves forward by 2^32 µs at each wrap).
///
/// Invariant: the first input maps to its own value; each later input is
/// interpreted as the value closest (on the 2^32 circle) to the previous
/// input, so inputs may be reordered by up to 2^31 µs without confusion.
/// A timestamp from before the first one (a reordered packet just before a
/// wrap) may map below zero, hence the signed result.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimestampUnwrapper {
    inner: crate::time::WrapExtender<32>,
}

impl TimestampUnwrapper {
    /// A fresh unwrapper; the first timestamp maps to its own value.
    pub const fn new() -> Self {
        TimestampUnwrapper {
            inner: crate::time::WrapExtender::new(),
        }
    }

    /// The 64-bit extension of `ts`.
    pub fn unwrap(&mut self, ts: Timestamp) -> i64 {
        self.inner.extend(u64::from(ts.0))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wraps_at_31_bits() {
        assert_eq!(SeqNo::MAX.next(), SeqNo::ZERO);
        assert_eq!(SeqNo::ZERO.sub(1), SeqNo::MAX);
        assert_eq!(SeqNo::MAX.offset_to(SeqNo::ZERO), 1);
        assert_eq!(SeqNo::ZERO.offset_to(SeqNo::MAX), -1);
        assert!(SeqNo::MAX.is_before(SeqNo::new(5)));
        assert_eq!(SeqNo::MAX.range_len(SeqNo::new(2)), Some(4));
        assert_eq!(SeqNo::new(2).range_len(SeqNo::MAX), None);
        assert_eq!(SeqNo::new(0x8000_0005), SeqNo::new(5));
        assert_eq!(SeqNo::ZERO.offset_to(SeqNo::new(SeqNo::HALF)), -(1 << 30));
    }

    #[test]
    fn timestamps_unwrap_across_the_wrap() {
        let mut u = TimestampUnwrapper::new();
        assert_eq!(u.unwrap(Timestamp(u32::MAX - 10)), i64::from(u32::MAX) - 10);
        assert_eq!(u.unwrap(Timestamp(5)), (1i64 << 32) + 5);
        // Slight reordering back across the wrap.
        assert_eq!(u.unwrap(Timestamp(u32::MAX)), i64::from(u32::MAX));
        assert_eq!(u.unwrap(Timestamp(100)), (1i64 << 32) + 100);
        let mut u = TimestampUnwrapper::new();
        assert_eq!(u.unwrap(Timestamp(10)), 10);
        assert_eq!(
            u.unwrap(Timestamp(u32::MAX)),
            -1,
            "reordered from before the wrap"
        );
    }

    proptest! {
        #[test]
        fn offset_matches_add(a in 0u32..SeqNo::MODULUS, n in 0u32..SeqNo::HALF) {
            let a = SeqNo::new(a);
            let b = a.add(n);
            prop_assert_eq!(a.offset_to(b), n as i32);
            prop_assert_eq!(b.offset_to(a), -(n as i32));
            prop_assert_eq!(b.sub(n), a);
            if n > 0 {
                prop_assert!(a.is_before(b));
                prop_assert!(b.is_after(a));
                prop_assert_eq!(a.cmp_wrapped(b), Ordering::Less);
            } else {
                prop_assert_eq!(a.cmp_wrapped(b), Ordering::Equal);
            }
            prop_assert_eq!(a.range_len(b), Some(n + 1));
        }

        #[test]
        fn offset_is_antisymmetric(a in any::<u32>(), b in any::<u32>()) {
            let (a, b) = (SeqNo::new(a), SeqNo::new(b));
            let ab = a.offset_to(b);
            let ba = b.offset_to(a);
            prop_assert!((-(1 << 30)..(1 << 30)).contains(&ab));
            if ab != -(1 << 30) {
                prop_assert_eq!(ab, -ba);
            }
            prop_assert_eq!(a.add(ab as u32), b);
        }

        #[test]
        fn unwrapper_is_monotonic_for_forward_steps(start in any::<u32>(), steps in proptest::collection::vec(0u32..(1 << 31), 1..50)) {
            let mut u = TimestampUnwrapper::new();
            let mut ts = Timestamp(start);
            let mut expect = i64::from(start);
            prop_assert_eq!(u.unwrap(ts), expect);
            for s in steps {
                ts = ts.add_micros(s);
                expect += i64::from(s);
                prop_assert_eq!(u.unwrap(ts), expect);
            }
        }
    }
}
