//! Playlist text helpers (RFC 8216 §4: `decimal-floating-point` durations).

use core::fmt::Write as _;

/// Formats `us` microseconds as seconds with 5 decimals, rounded to nearest
/// (the `EXTINF` / `EXT-X-PART:DURATION` values, RFC 8216 §4.3.2.1).
pub(crate) fn secs_nearest(us: u64) -> String {
    fixed5(us.saturating_add(5) / 10)
}

/// Formats `us` as seconds with 5 decimals, rounded up (targets: every
/// duration printed by [`secs_nearest`] is ≤ the printed target).
pub(crate) fn secs_ceil(us: u64) -> String {
    fixed5(us.div_ceil(10))
}

/// Appends [`secs_nearest`] of `us` to `out` without allocating.
pub(crate) fn write_secs_nearest(out: &mut String, us: u64) {
    write_fixed5(out, us.saturating_add(5) / 10);
}

fn fixed5(hundred_thousandths: u64) -> String {
    let mut s = String::with_capacity(12);
    write_fixed5(&mut s, hundred_thousandths);
    s
}

fn write_fixed5(out: &mut String, hundred_thousandths: u64) {
    let _ = write!(
        out,
        "{}.{:05}",
        hundred_thousandths / 100_000,
        hundred_thousandths % 100_000
    );
}

/// Seconds rounded to the nearest integer (RFC 8216 §4.3.3.1: every
/// `EXTINF` rounded to the nearest integer must be ≤ `EXT-X-TARGETDURATION`).
pub(crate) fn round_secs(us: u64) -> u64 {
    us.saturating_add(500_000) / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(secs_nearest(2_000_000), "2.00000");
        assert_eq!(secs_nearest(200_224), "0.20022");
        assert_eq!(secs_nearest(200_225), "0.20023");
        assert_eq!(secs_ceil(200_221), "0.20023");
        assert_eq!(secs_ceil(200_220), "0.20022");
        assert_eq!(round_secs(2_499_999), 2);
        assert_eq!(round_secs(2_500_000), 3);
    }
}
