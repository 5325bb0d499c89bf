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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturates() {
        let t = Instant::from_micros(u64::MAX - 1);
        assert_eq!((t + Duration::from_secs(10)).as_micros(), u64::MAX);
        assert_eq!(Instant::ZERO - t, Duration::ZERO);
        assert_eq!(t - Instant::ZERO, Duration::from_micros(u64::MAX - 1));
    }
}
