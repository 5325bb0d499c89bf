//! RTT estimation from ACK/ACKACK pairs and the timer periods derived from
//! it (draft-sharabayko-srt-01 §4.10 "Round-Trip Time Estimation", §4.8.1
//! "Packet Acknowledgement (ACKs, ACKACKs)", §4.8.2 periodic NAK).
//!
//! The receiver numbers each full ACK and remembers when it sent it; the
//! ACKACK echoing that number gives one RTT sample. Samples are smoothed as
//! `RTT = 7/8 RTT + 1/8 sample`, `RTTVar = 3/4 RTTVar + 1/4 |RTT - sample|`,
//! starting from 100 ms / 50 ms. The sender smooths the RTT carried in the
//! ACKs the same way.

use std::collections::VecDeque;
use std::time::Duration;

use crate::time::Instant;

/// Initial RTT (§4.10).
pub const INITIAL_RTT: Duration = Duration::from_millis(100);
/// Initial RTT variance (§4.10).
pub const INITIAL_RTT_VAR: Duration = Duration::from_millis(50);
/// Full ACK period (§4.8.1: every 10 ms).
pub const ACK_PERIOD: Duration = Duration::from_millis(10);
/// Smallest periodic NAK interval (§4.8.2: 20 ms).
pub const MIN_NAK_PERIOD: Duration = Duration::from_millis(20);
/// Most full ACKs awaiting their ACKACK (libsrt's ACK window is 1024).
pub const ACK_HISTORY: usize = 1024;

/// Smoothed RTT and RTT variance in µs (§4.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RttEstimator {
    rtt_us: u32,
    var_us: u32,
}

impl Default for RttEstimator {
    fn default() -> Self {
        RttEstimator {
            rtt_us: INITIAL_RTT.as_micros() as u32,
            var_us: INITIAL_RTT_VAR.as_micros() as u32,
        }
    }
}

impl RttEstimator {
    /// Smoothed RTT in µs (the ACK's "RTT" field).
    pub fn rtt_us(&self) -> u32 {
        self.rtt_us
    }

    /// RTT variance in µs (the ACK's "RTT Variance" field).
    pub fn var_us(&self) -> u32 {
        self.var_us
    }

    /// Folds in one sample (µs).
    pub fn update(&mut self, sample_us: u32) {
        let rtt = u64::from(self.rtt_us);
        let s = u64::from(sample_us);
        let diff = rtt.abs_diff(s);
        self.var_us = ((3 * u64::from(self.var_us) + diff) / 4) as u32;
        self.rtt_us = ((7 * rtt + s) / 8) as u32;
    }

    /// Periodic NAK interval: `(RTT + 4 RTTVar) / 2`, at least
    /// [`MIN_NAK_PERIOD`] (§4.8.2).
    pub fn nak_period(&self) -> Duration {
        let us = (u64::from(self.rtt_us) + 4 * u64::from(self.var_us)) / 2;
        Duration::from_micros(us).max(MIN_NAK_PERIOD)
    }
}

/// Full ACKs sent and not yet acknowledged by ACKACK, oldest first.
///
/// Invariant: at most [`ACK_HISTORY`] entries; ACK numbers increase
/// (wrapping) from front to back.
#[derive(Debug, Clone, Default)]
pub struct AckHistory {
    sent: VecDeque<(u32, Instant)>,
}

impl AckHistory {
    /// An empty history.
    pub fn new() -> Self {
        AckHistory::default()
    }

    /// Records that full ACK `ack_no` left at `now`; the oldest entry is
    /// forgotten when the history is full.
    pub fn record(&mut self, ack_no: u32, now: Instant) {
        if self.sent.len() == ACK_HISTORY {
            self.sent.pop_front();
        }
        self.sent.push_back((ack_no, now));
    }

    /// Handles the ACKACK for `ack_no`: returns the RTT sample and forgets
    /// that ACK and every older one. Unknown numbers return `None` and
    /// change nothing.
    pub fn on_ackack(&mut self, ack_no: u32, now: Instant) -> Option<Duration> {
        let idx = self.sent.iter().position(|&(n, _)| n == ack_no)?;
        let (_, at) = self.sent.get(idx).copied()?;
        self.sent.drain(..=idx);
        Some(now.saturating_duration_since(at))
    }

    /// Entries awaiting their ACKACK.
    pub fn len(&self) -> usize {
        self.sent.len()
    }

    /// `true` if no ACK awaits its ACKACK.
    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn smoothing_follows_the_spec() {
        let mut r = RttEstimator::default();
        assert_eq!((r.rtt_us(), r.var_us()), (100_000, 50_000));
        r.update(20_000);
        // RTTVar = (3*50000 + |100000-20000|)/4 = 57500; RTT = (7*100000+20000)/8 = 90000.
        assert_eq!((r.rtt_us(), r.var_us()), (90_000, 57_500));
        assert_eq!(
            r.nak_period(),
            Duration::from_micros((90_000 + 4 * 57_500) / 2)
        );
        for _ in 0..200 {
            r.update(20_000);
        }
        assert!((19_990..=20_010).contains(&r.rtt_us()), "{}", r.rtt_us());
        assert!(r.var_us() < 100);
        assert_eq!(r.nak_period(), MIN_NAK_PERIOD);
    }

    #[test]
    fn ack_history_pairs_and_bounds() {
        let mut h = AckHistory::new();
        for n in 0..2000u32 {
            h.record(n, Instant::from_millis(u64::from(n) * 10));
        }
        assert_eq!(h.len(), ACK_HISTORY);
        assert_eq!(
            h.on_ackack(5, Instant::from_millis(100_000)),
            None,
            "forgotten"
        );
        assert_eq!(
            h.on_ackack(1500, Instant::from_millis(15_000 + 23)),
            Some(Duration::from_millis(23))
        );
        assert_eq!(h.len(), 499, "1500 and everything older gone");
        assert_eq!(h.on_ackack(1500, Instant::from_millis(20_000)), None);
        assert_eq!(h.len(), 499);
    }

    proptest! {
        #[test]
        fn converges_to_a_constant_sample(sample in 0u32..5_000_000) {
            let mut r = RttEstimator::default();
            for _ in 0..400 {
                r.update(sample);
            }
            prop_assert!(r.rtt_us().abs_diff(sample) <= 8, "{} vs {}", r.rtt_us(), sample);
            prop_assert!(r.nak_period() >= MIN_NAK_PERIOD);
        }
    }
}
