//! Wall-clock time for `EXT-X-PROGRAM-DATE-TIME` (draft-pantos-hls-rfc8216bis
//! §4.4.4.6). Core reads no clock: the caller says which UTC time its
//! [`Instant`] epoch is ([`WallClock`]), or passes wall times directly
//! ([`HlsMuxer::push_at`](super::HlsMuxer::push_at)).

use std::fmt::Write as _;

use crate::time::Instant;

/// Maps the caller's monotonic [`Instant`]s (µs since its
/// [`Clock`](crate::time::Clock) origin) to UTC: the wall-clock anchor of
/// the HLS playlists' `EXT-X-PROGRAM-DATE-TIME` tags (rfc8216bis §4.4.4.6).
///
/// The adapter that owns the `Clock` reads the system clock once, at the
/// same moment it fixes the `Clock`'s origin; core never reads a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WallClock {
    /// Microseconds since 1970-01-01T00:00:00Z (Unix time) at
    /// [`Instant::ZERO`].
    pub unix_micros_at_zero: u64,
}

impl WallClock {
    /// The anchor: `Instant::ZERO` is `unix_micros_at_zero` µs after the Unix epoch.
    pub const fn new(unix_micros_at_zero: u64) -> Self {
        WallClock {
            unix_micros_at_zero,
        }
    }

    /// Unix time (µs, UTC) of `at` (saturating).
    pub const fn unix_micros(&self, at: Instant) -> u64 {
        self.unix_micros_at_zero.saturating_add(at.as_micros())
    }
}

/// Appends `unix_micros` as an ISO 8601 / RFC 3339 date-time in UTC with
/// milliseconds (truncated), e.g. `2026-11-26T13:05:00.123Z`: the
/// `date-time` value of `EXT-X-PROGRAM-DATE-TIME` (rfc8216bis §4.4.4.6
/// asks for millisecond accuracy and a time zone).
pub(crate) fn write_date_time(out: &mut String, unix_micros: u64) {
    let ms = unix_micros / 1000;
    let secs = ms / 1000;
    let days = secs / 86_400;
    let sod = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        ms % 1000
    );
}

/// (year, month 1–12, day 1–31) of the proleptic Gregorian calendar for
/// `days` days after 1970-01-01: the 400-year cycle (146 097 days) counted
/// from 0000-03-01, so that the leap day is the last day of a cycle year.
pub(crate) fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Days from 0000-03-01 to 1970-01-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365], from March 1st
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = era * 400 + yoe + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(us: u64) -> String {
        let mut s = String::new();
        write_date_time(&mut s, us);
        s
    }

    #[test]
    fn known_dates() {
        assert_eq!(fmt(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(fmt(999), "1970-01-01T00:00:00.000Z");
        assert_eq!(fmt(1_000), "1970-01-01T00:00:00.001Z");
        assert_eq!(fmt(86_399_999_999), "1970-01-01T23:59:59.999Z");
        // Leap day of a year divisible by 400.
        assert_eq!(fmt(951_782_400_000_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(fmt(951_868_799_000_000), "2000-02-29T23:59:59.000Z");
        assert_eq!(fmt(951_868_800_000_000), "2000-03-01T00:00:00.000Z");
        // 2^31 s: past the signed 32-bit time_t.
        assert_eq!(fmt(2_147_483_648_000_000), "2038-01-19T03:14:08.000Z");
        assert_eq!(fmt(1_795_611_900_123_000), "2026-11-25T13:05:00.123Z");
        // 2100 is not a leap year, 2400 is.
        assert_eq!(fmt(4_107_542_400_000_000), "2100-03-01T00:00:00.000Z");
        assert_eq!(fmt(4_107_456_000_000_000), "2100-02-28T00:00:00.000Z");
        assert_eq!(fmt(13_574_563_200_000_000), "2400-02-29T00:00:00.000Z");
        assert_eq!(fmt(1_704_067_199_999_999), "2023-12-31T23:59:59.999Z");
        assert_eq!(fmt(1_709_164_800_000_000), "2024-02-29T00:00:00.000Z");
    }

    #[test]
    fn every_day_follows_the_previous_one() {
        // 1970 … 2500: month lengths and leap years of the Gregorian calendar.
        let mut prev = civil_from_days(0);
        for day in 1..194_000u64 {
            let (y, m, d) = civil_from_days(day);
            let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
            let (py, pm, pd) = prev;
            let len = match pm {
                2 if leap || (py % 4 == 0 && (py % 100 != 0 || py % 400 == 0)) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            if pd < len {
                assert_eq!((y, m, d), (py, pm, pd + 1), "day {day}");
            } else if pm < 12 {
                assert_eq!((y, m, d), (py, pm + 1, 1), "day {day}");
            } else {
                assert_eq!((y, m, d), (py + 1, 1, 1), "day {day}");
            }
            prev = (y, m, d);
        }
    }

    #[test]
    fn wall_clock_maps_instants() {
        let w = WallClock::new(1_000);
        assert_eq!(w.unix_micros(Instant::from_micros(5)), 1_005);
        assert_eq!(
            WallClock::new(u64::MAX).unix_micros(Instant::from_micros(5)),
            u64::MAX
        );
        // u64::MAX µs formats without panicking (year ~586 000).
        assert!(fmt(u64::MAX).ends_with('Z'));
    }
}
