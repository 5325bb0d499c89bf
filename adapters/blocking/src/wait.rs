//! Blocking a thread on an engine [`Signal`]: the one place where a thread
//! sleeps until a signal moves. Core holds no condvar and never blocks; a
//! blocked thread waits through the same waker registration as an async task
//! ([`Signal::wait`]), with a waker that unparks it.
//!
//! # No lost wake-ups
//!
//! [`BlockingWait::wait_blocking`] polls a [`SignalWait`](arcly::engine::SignalWait)
//! created from `seen`. A `Pending` poll has registered the waker under the
//! signal's waiter lock after checking, in the same read-modify-write as the
//! notifier's, that the epoch is still `seen` (see the protocol in
//! `arcly::engine::Signal`). Any later `notify` therefore calls the waker,
//! which unparks this thread; an unpark that comes before the `park` is kept
//! as the thread's token, so `park` returns at once. Spurious unparks only
//! cause one more poll. Checked by the loom models in
//! `core/tests/loom_engine.rs` (threads blocked here, under `--cfg loom`).

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use arcly::engine::Signal;

#[cfg(loom)]
use loom::thread as threads;
#[cfg(not(loom))]
use std::thread as threads;

/// Blocking waits on a [`Signal`] (import the trait, then
/// `signal.wait_blocking(seen, timeout)`).
pub trait BlockingWait {
    /// Blocks the thread until the epoch differs from `seen` or `timeout`
    /// passes (`None`: no timeout); returns whether the epoch changed.
    fn wait_blocking(&self, seen: u64, timeout: Option<Duration>) -> bool;
}

/// Wakes the waiting thread.
struct Unpark(threads::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

impl BlockingWait for Signal {
    fn wait_blocking(&self, seen: u64, timeout: Option<Duration>) -> bool {
        if self.epoch() != seen {
            return true;
        }
        let deadline = timeout.and_then(|t| std::time::Instant::now().checked_add(t));
        let waker = Waker::from(Arc::new(Unpark(threads::current())));
        let mut cx = Context::from_waker(&waker);
        let mut wait = pin!(self.wait(seen));
        loop {
            if wait.as_mut().poll(&mut cx).is_ready() {
                return true;
            }
            match deadline {
                None => threads::park(),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return self.epoch() != seen;
                    }
                    park_timeout(left);
                }
            }
        }
    }
}

#[cfg(not(loom))]
fn park_timeout(left: Duration) {
    threads::park_timeout(left);
}

/// loom has no timed park; its models wait without a timeout.
#[cfg(loom)]
fn park_timeout(_left: Duration) {
    threads::park();
}

#[cfg(all(test, not(loom)))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn blocking_wait_times_out_and_wakes() {
        let s = Signal::new();
        let e = s.epoch();
        assert!(!s.wait_blocking(e, Some(Duration::from_millis(20))));
        let s2 = s.clone();
        let t = std::thread::spawn(move || s2.wait_blocking(e, None));
        std::thread::sleep(Duration::from_millis(20));
        s.notify();
        assert!(t.join().unwrap());
        assert!(s.wait_blocking(e, None), "stale epoch returns at once");
    }

    /// A notify that lands between the registration and the park is not
    /// lost: the unpark token makes the park return.
    #[test]
    fn many_waits_and_notifies_never_hang() {
        let s = Signal::new();
        let s2 = s.clone();
        let t = std::thread::spawn(move || {
            let mut seen = s2.epoch();
            while seen < 2000 {
                s2.wait_blocking(seen, Some(Duration::from_secs(10)));
                seen = s2.epoch();
            }
            seen
        });
        for _ in 0..2000 {
            s.notify();
            std::thread::yield_now();
        }
        assert!(t.join().unwrap() >= 2000);
    }
}
