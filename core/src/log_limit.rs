//! Rate limits for log lines that a peer can cause.
//!
//! Every refused or dropped peer gets one log line, but a flood of them must
//! not fill the disk. A [`LogLimiter`] lets `burst` lines through per
//! `window`; the rest are counted, and the next line that passes says how
//! many similar lines were suppressed since the last one. Time is an input,
//! like everywhere in the kernel.
//!
//! One limiter per kind of event (e.g. "RTMP connection refused", "HTTP 503
//! parked-request limit"), usually a `static`:
//!
//! ```
//! use arcly::log_limit::LogLimiter;
//! use std::time::Duration;
//! static REFUSED: LogLimiter = LogLimiter::new(10, Duration::from_secs(10));
//! # let now = arcly::Instant::from_millis(0);
//! if let Some(suppressed) = REFUSED.check(now) {
//!     tracing::warn!(suppressed, "connection refused: limit reached");
//! }
//! ```

use std::sync::Mutex;
use std::time::Duration;

use crate::time::Instant;

/// Lets at most `burst` log lines through per `window`, counting the rest.
///
/// Invariant: `passed <= burst` within the current window; `suppressed` is
/// the number of [`check`](Self::check) calls answered `None` since the last
/// call answered `Some`, and is reset by that answer.
#[derive(Debug)]
pub struct LogLimiter {
    burst: u32,
    window: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Clone, Copy)]
struct State {
    window_start: Option<Instant>,
    passed: u32,
    suppressed: u64,
}

impl LogLimiter {
    /// A limiter letting `burst` lines through per `window`.
    pub const fn new(burst: u32, window: Duration) -> Self {
        Self {
            burst,
            window,
            state: Mutex::new(State {
                window_start: None,
                passed: 0,
                suppressed: 0,
            }),
        }
    }

    /// Whether a line may be logged at `now`: `Some(n)` says yes, and that
    /// `n` similar lines were suppressed since the last one that passed
    /// (mention it when `n > 0`); `None` says skip this line.
    pub fn check(&self, now: Instant) -> Option<u64> {
        // A poisoned lock only means another thread panicked while holding
        // this small counter: the counts are still usable.
        let mut s = match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let fresh = match s.window_start {
            None => true,
            Some(start) => now.saturating_duration_since(start) >= self.window,
        };
        if fresh {
            s.window_start = Some(now);
            s.passed = 0;
        }
        if s.passed < self.burst {
            s.passed += 1;
            let n = s.suppressed;
            s.suppressed = 0;
            Some(n)
        } else {
            s.suppressed = s.suppressed.saturating_add(1);
            None
        }
    }

    /// How many lines were suppressed since the last one that passed.
    pub fn pending_suppressed(&self) -> u64 {
        match self.state.lock() {
            Ok(g) => g.suppressed,
            Err(poisoned) => poisoned.into_inner().suppressed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_counts_then_reports() {
        let l = LogLimiter::new(3, Duration::from_secs(10));
        let t0 = Instant::from_millis(1_000);
        assert_eq!(l.check(t0), Some(0));
        assert_eq!(l.check(t0), Some(0));
        assert_eq!(l.check(t0), Some(0));
        for _ in 0..1000 {
            assert_eq!(l.check(t0 + Duration::from_secs(1)), None);
        }
        assert_eq!(l.pending_suppressed(), 1000);
        // Next window: the first line reports what was suppressed.
        assert_eq!(l.check(t0 + Duration::from_secs(10)), Some(1000));
        assert_eq!(l.check(t0 + Duration::from_secs(10)), Some(0));
        assert_eq!(l.pending_suppressed(), 0);
    }

    #[test]
    fn a_flood_logs_a_bounded_number_of_lines() {
        let l = LogLimiter::new(10, Duration::from_secs(10));
        let mut logged = 0u32;
        // 20 000 events per second for 60 s.
        for ms in 0..60_000u64 {
            for _ in 0..20 {
                if l.check(Instant::from_millis(ms)).is_some() {
                    logged += 1;
                }
            }
        }
        assert_eq!(logged, 60);
    }
}
