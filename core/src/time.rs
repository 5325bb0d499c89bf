//! Time as an input.
//!
//! Machines never read a clock: every `handle_*` call takes a [`Instant`]
//! supplied by the caller. Adapters derive it from `std::time::Instant`; replay
//! derives it from capture timestamps; tests drive it by hand.

use core::ops::{Add, AddAssign, Sub};
use std::time::Duration;

/// A monotonic point in time, in microseconds since an epoch chosen by the
/// caller (process start, first packet of a capture, zero in a test).
///
/// Invariant: arithmetic saturates; an `Instant` never wraps or panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    /// The epoch itself.
    pub const ZERO: Instant = Instant(0);

    /// An instant `micros` microseconds after the epoch.
    pub const fn from_micros(micros: u64) -> Self {
        Instant(micros)
    }

    /// An instant `millis` milliseconds after the epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Instant(millis.saturating_mul(1000))
    }

    /// An instant `d` after the epoch.
    pub fn from_duration(d: Duration) -> Self {
        Instant(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Milliseconds since the epoch (truncated).
    pub const fn as_millis(self) -> u64 {
        self.0 / 1000
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        let d = u64::try_from(rhs.as_micros()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(d))
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, rhs: Duration) {
        *self = *self + rhs;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

/// Converts `std::time::Instant` readings into [`Instant`]s relative to a
/// fixed origin. Adapters own one of these; machines never see it.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: std::time::Instant,
}

impl Clock {
    /// A clock whose epoch is `origin`.
    pub fn new(origin: std::time::Instant) -> Self {
        Clock { origin }
    }

    /// The [`Instant`] for a `std::time::Instant` reading.
    pub fn instant(&self, at: std::time::Instant) -> Instant {
        Instant::from_duration(at.saturating_duration_since(self.origin))
    }

    /// The `std::time::Instant` for a machine deadline.
    pub fn to_std(&self, at: Instant) -> std::time::Instant {
        self.origin + Duration::from_micros(at.as_micros())
    }
}

/// Extends a wire counter of `BITS` bits (timestamps that wrap at 2^`BITS`:
/// RTMP's 32-bit ms, SRT's 32-bit µs, MPEG-TS's 33-bit 90 kHz) into one
/// continuous `i64` timeline, so streams of days never wrap.
///
/// Invariant: the first value maps to itself; every later value maps to its
/// representative nearest the previous result (within ±2^(`BITS`-1)), so a
/// forward step past the wrap adds 2^`BITS` and a small backward step
/// (B-frames, reordering) stays backward. `BITS` is 1..=62 (checked at
/// compile time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WrapExtender<const BITS: u32> {
    last: Option<i64>,
}

impl<const BITS: u32> WrapExtender<BITS> {
    const MODULUS: i64 = {
        assert!(BITS >= 1 && BITS <= 62, "WrapExtender supports 1..=62 bits");
        1i64 << BITS
    };

    /// A fresh extender; the first value is returned as is.
    pub const fn new() -> Self {
        WrapExtender { last: None }
    }

    /// Extends `raw` (only its low `BITS` bits are used).
    pub fn extend(&mut self, raw: u64) -> i64 {
        let v = match self.last {
            None => Self::low_bits(raw),
            Some(last) => Self::near(last, raw),
        };
        self.last = Some(v);
        v
    }

    /// The representative of `raw` nearest to `base`, without moving the
    /// extender (e.g. a PTS next to its already extended DTS).
    pub fn near(base: i64, raw: u64) -> i64 {
        let m = Self::MODULUS;
        let delta = (Self::low_bits(raw) - base.rem_euclid(m)).rem_euclid(m);
        let delta = if delta >= m / 2 { delta - m } else { delta };
        base.saturating_add(delta)
    }

    /// The last value returned by [`extend`](Self::extend).
    pub fn last(&self) -> Option<i64> {
        self.last
    }

    fn low_bits(raw: u64) -> i64 {
        // Lossless: fewer than 63 bits remain.
        (raw & (Self::MODULUS as u64 - 1)) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_extender_wraps_forward_and_keeps_small_backward_steps() {
        let mut e = WrapExtender::<32>::new();
        assert_eq!(e.extend(100), 100);
        assert_eq!(e.extend(90), 90);
        let mut e = WrapExtender::<32>::new();
        let max = u64::from(u32::MAX);
        assert_eq!(e.extend(max - 10), (max - 10) as i64);
        assert_eq!(e.extend(5), (1i64 << 32) + 5);
        assert_eq!(e.extend(2), (1i64 << 32) + 2);
        assert_eq!(e.extend(40), (1i64 << 32) + 40);
        // Backward across the wrap, and only the low bits count.
        assert_eq!(e.extend(max - 1), max as i64 - 1);
        assert_eq!(e.extend((7 << 32) | 50), (1i64 << 32) + 50);
        let mut w = WrapExtender::<33>::new();
        assert_eq!(w.extend((1 << 33) - 5), (1 << 33) - 5);
        assert_eq!(w.extend(3), (1 << 33) + 3);
        assert_eq!(WrapExtender::<33>::near(10, 3000), 3000);
        assert_eq!(
            WrapExtender::<33>::near((1 << 33) + 5, (1 << 33) - 5),
            (1 << 33) - 5
        );
    }

    proptest::proptest! {
        /// Steps of less than half the range are recovered exactly, for a
        /// timeline that crosses many wraps.
        #[test]
        fn wrap_extender_recovers_any_timeline(start in 0i64..1 << 40, steps in proptest::collection::vec(-(1i64 << 31) + 1..(1i64 << 31), 1..200)) {
            let mut e = WrapExtender::<32>::new();
            let mut t = start;
            let first = e.extend(t as u64);
            let offset = t - first;
            for s in steps {
                t += s;
                proptest::prop_assert_eq!(e.extend(t as u64) + offset, t);
            }
        }
    }

    #[test]
    fn saturates() {
        let t = Instant::from_micros(u64::MAX - 1);
        assert_eq!((t + Duration::from_secs(10)).as_micros(), u64::MAX);
        assert_eq!(Instant::ZERO - t, Duration::ZERO);
        assert_eq!(t - Instant::ZERO, Duration::from_micros(u64::MAX - 1));
    }
}
