//! Waiting for any of several [`Signal`]s at once, on any executor or on a
//! blocked thread (through a waker that notifies the thread's own signal).
//!
//! A datagram driver serves many connections on one socket; the connections
//! that play read from several streams, each with its own [`Signal`]
//! (`DatagramService::media_signals` in `crate::datagram`). The driver keeps
//! one [`SignalSet`]:
//!
//! 1. each loop iteration it collects the service's current signals and asks
//!    [`SignalSet::changed`]: a signal that is new (not at the same position
//!    as when armed) or whose epoch moved since it was armed means media is
//!    due;
//! 2. before calling `handle_media` it calls [`SignalSet::arm`], which reads
//!    every epoch *before* the media is pulled (no lost wake-ups, the same
//!    rule as a single [`Signal`]);
//! 3. when it has nothing else to do it polls [`SignalSet::poll_changed`],
//!    which registers the task's waker with every signal and completes once
//!    any epoch differs from the armed one.
//!
//! Registrations are kept across polls for signals whose armed epoch did not
//! change, so a re-poll costs one lock per signal and no allocation.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::signal::{Signal, SignalWait};

/// One armed signal.
#[derive(Debug)]
struct Entry {
    signal: Signal,
    seen: u64,
    wait: Option<SignalWait>,
}

/// A set of [`Signal`]s armed at known epochs; completes when any moves.
///
/// Bounded by what the caller passes to [`arm`](Self::arm) (one entry per
/// signal; the driver passes each stream once).
#[derive(Debug, Default)]
pub struct SignalSet {
    entries: Vec<Entry>,
}

impl SignalSet {
    /// An empty set (never completes until armed with some signal).
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of armed signals.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no signal is armed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `current` differs from the armed set: another length, another
    /// signal at some position, or an epoch that moved since
    /// [`arm`](Self::arm). O(n); a reordering counts as a change (harmless:
    /// one extra `handle_media`).
    pub fn changed(&self, current: &[Signal]) -> bool {
        current.len() != self.entries.len()
            || current
                .iter()
                .zip(&self.entries)
                .any(|(s, e)| !s.ptr_eq(&e.signal) || s.epoch() != e.seen)
    }

    /// Arms the set with `signals` at their current epochs. Call right
    /// before pulling media, so a notify during the pull is not missed.
    /// Registrations of entries that stay the same are kept.
    pub fn arm(&mut self, signals: &[Signal]) {
        for (i, s) in signals.iter().enumerate() {
            let epoch = s.epoch();
            match self.entries.get_mut(i) {
                Some(e) if e.signal.ptr_eq(s) && e.seen == epoch => {}
                Some(e) => {
                    *e = Entry {
                        signal: s.clone(),
                        seen: epoch,
                        wait: None,
                    }
                }
                None => self.entries.push(Entry {
                    signal: s.clone(),
                    seen: epoch,
                    wait: None,
                }),
            }
        }
        self.entries.truncate(signals.len());
    }

    /// Pushes onto `out` the position of every armed signal whose epoch
    /// moved since it was armed, and re-arms those at their current epoch
    /// (read now, before the caller pulls their media: no lost wake-ups).
    /// One atomic load per signal; registrations of unmoved signals are
    /// kept.
    pub fn take_fired(&mut self, out: &mut Vec<usize>) {
        for (i, e) in self.entries.iter_mut().enumerate() {
            let epoch = e.signal.epoch();
            if epoch != e.seen {
                e.seen = epoch;
                e.wait = None;
                out.push(i);
            }
        }
    }

    /// Drops every signal and registration.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Ready once any armed signal's epoch differs from the one it was armed
    /// at; otherwise registers `cx`'s waker with every armed signal.
    /// Stays ready until [`arm`](Self::arm) is called again.
    pub fn poll_changed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut ready = false;
        for e in &mut self.entries {
            let wait = e.wait.get_or_insert_with(|| e.signal.wait(e.seen));
            if Pin::new(wait).poll(cx).is_ready() {
                e.wait = None;
                ready = true;
            }
        }
        if ready {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Wake, Waker};

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn completes_when_any_signal_moves() {
        let (a, b, c) = (Signal::new(), Signal::new(), Signal::new());
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut set = SignalSet::new();
        let all = [a.clone(), b.clone(), c.clone()];
        assert!(set.changed(&all), "a new set is a change");
        set.arm(&all);
        assert!(!set.changed(&all));
        assert!(set.poll_changed(&mut cx).is_pending());
        assert!(set.poll_changed(&mut cx).is_pending(), "re-poll is fine");
        b.notify();
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "woken once");
        assert!(set.changed(&all));
        assert!(set.poll_changed(&mut cx).is_ready());
        set.arm(&all);
        assert!(!set.changed(&all));
        assert!(set.poll_changed(&mut cx).is_pending());
        c.notify();
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        assert!(set.poll_changed(&mut cx).is_ready());
    }

    #[test]
    fn notify_between_arm_and_poll_is_not_lost() {
        let a = Signal::new();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut set = SignalSet::new();
        set.arm(std::slice::from_ref(&a));
        a.notify(); // e.g. during handle_media
        assert!(set.poll_changed(&mut cx).is_ready());
    }

    #[test]
    fn take_fired_names_only_the_moved_signals_and_rearms_them() {
        let all = [Signal::new(), Signal::new(), Signal::new()];
        let mut set = SignalSet::new();
        set.arm(&all);
        let mut fired = Vec::new();
        set.take_fired(&mut fired);
        assert!(fired.is_empty());
        all[2].notify();
        all[0].notify();
        set.take_fired(&mut fired);
        assert_eq!(fired, [0, 2]);
        assert!(!set.changed(&all), "re-armed at the epochs read");
        fired.clear();
        set.take_fired(&mut fired);
        assert!(fired.is_empty());
    }

    #[test]
    fn a_replaced_signal_is_a_change_even_at_the_same_epoch() {
        let (a, b) = (Signal::new(), Signal::new());
        let mut set = SignalSet::new();
        set.arm(std::slice::from_ref(&a));
        assert_eq!(a.epoch(), b.epoch());
        assert!(set.changed(std::slice::from_ref(&b)));
        set.arm(std::slice::from_ref(&b));
        assert!(!set.changed(std::slice::from_ref(&b)));
        set.arm(&[]);
        assert!(set.is_empty());
        assert!(!set.changed(&[]));
    }

    #[test]
    fn wakes_a_blocked_thread_through_a_bridge_waker() {
        struct Bridge(Signal);
        impl Wake for Bridge {
            fn wake(self: Arc<Self>) {
                self.0.notify();
            }
        }
        let own = Signal::new();
        let waker = Waker::from(Arc::new(Bridge(own.clone())));
        let mut cx = Context::from_waker(&waker);
        let media = Signal::new();
        let mut set = SignalSet::new();
        set.arm(std::slice::from_ref(&media));
        let seen = own.epoch();
        assert!(set.poll_changed(&mut cx).is_pending());
        let m = media.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            m.notify();
        });
        assert!(crate::engine::signal::test_wait_blocking(
            &own,
            seen,
            std::time::Duration::from_secs(5)
        ));
        t.join().unwrap();
        assert!(set.poll_changed(&mut cx).is_ready());
    }
}
