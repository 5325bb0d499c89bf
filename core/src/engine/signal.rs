//! A runtime-agnostic wake-up signal: async tasks (any executor) wait on it
//! through [`SignalWait`]; blocked threads wait through the same waker
//! registration (`arcly_blocking::BlockingWait`, a waker that unparks a
//! thread), so core holds no condvar and never blocks.
//!
//! # Protocol and invariant (no lost wake-ups)
//!
//! One atomic word, `state`, holds `epoch << 1 | SLEEPERS`:
//! - [`Signal::notify`] bumps the epoch with a single read-modify-write
//!   (`fetch_add(2)`). Only if the `SLEEPERS` bit was set in the value it
//!   replaced does it take the waiter lock (slow path): it clears the bit,
//!   takes every registered waker, then wakes them outside the lock. With nobody waiting, a notify is one atomic
//!   instruction: it never blocks and never allocates.
//! - A waiter that saw epoch `seen` takes the waiter lock, sets `SLEEPERS`
//!   with a read-modify-write (`fetch_or(1)`) and checks the epoch in the
//!   value that RMW returned. Only if it still equals `seen` does it register
//!   its waker — still under the lock.
//!
//! Both sides are RMWs of the same word, so they are totally ordered: either
//! the waiter's `fetch_or` comes later and sees the new epoch (it does not
//! sleep), or the notifier's `fetch_add` comes later and sees `SLEEPERS` (it
//! takes the lock, which the waiter holds until it is registered, so the
//! waiter is found and woken). The bit is cleared
//! only under the lock, by a notifier that wakes every registered waiter; a
//! woken waiter that must sleep again re-sets it under the lock first.
//!
//! **Invariant:** a waiter that read epoch `e` and then waits for a change
//! from `e` is woken by any `notify` that happened after it read `e`.
//! Checked by the loom models in `core/tests/loom_engine.rs` (async waiters,
//! and blocked threads through `arcly_blocking::BlockingWait`).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use super::sync::{lock, AtomicU64, Mutex};

/// The `SLEEPERS` bit of `state`: some waiter may be registered or sleeping.
const SLEEPERS: u64 = 1;

#[derive(Debug, Default)]
struct Waiters {
    /// Bumped each time the task list is drained, so a [`SignalWait`] knows
    /// whether its entry (generation, index) is still there.
    gen: u64,
    /// Registered task wakers; `None` marks an entry removed by its future.
    tasks: Vec<Option<Waker>>,
    /// Indices of `None` entries in `tasks`, reused first (the list stays as
    /// long as the number of live futures even if futures come and go while
    /// the stream is stalled).
    free: Vec<usize>,
    /// Empty vector kept to swap in on drain (no allocation per notify).
    spare: Vec<Option<Waker>>,
}

#[derive(Debug)]
struct Inner {
    state: AtomicU64,
    waiters: Mutex<Waiters>,
}

/// A clonable handle to a stream's wake-up signal.
///
/// Usage: read [`epoch`](Self::epoch), check for work, and if there is
/// none, wait from that epoch with [`wait`](Self::wait) (async, or a thread
/// through `arcly_blocking::BlockingWait::wait_blocking`).
#[derive(Debug, Clone)]
pub struct Signal {
    inner: Arc<Inner>,
}

impl Default for Signal {
    fn default() -> Self {
        Self::new()
    }
}

impl Signal {
    /// A fresh signal at epoch 0.
    pub fn new() -> Self {
        Signal {
            inner: Arc::new(Inner {
                state: AtomicU64::new(0),
                waiters: Mutex::new(Waiters::default()),
            }),
        }
    }

    /// Whether `self` and `other` are handles to the same signal.
    pub fn ptr_eq(&self, other: &Signal) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The current epoch; read it before checking for work, then wait from it.
    pub fn epoch(&self) -> u64 {
        self.inner.state.load(Ordering::Acquire) >> 1
    }

    /// Wakes every waiter. One atomic RMW when nobody waits; never blocks on
    /// a subscriber (the slow path holds the waiter lock only to swap lists).
    pub fn notify(&self) {
        let prev = self.inner.state.fetch_add(2, Ordering::AcqRel);
        if prev & SLEEPERS != 0 {
            self.notify_slow();
        }
    }

    #[cold]
    fn notify_slow(&self) {
        let mut tasks = {
            let mut w = lock(&self.inner.waiters);
            // Every waiter registered now is woken below; a woken waiter that
            // sleeps again re-sets the bit under this lock.
            self.inner.state.fetch_and(!SLEEPERS, Ordering::AcqRel);
            w.gen = w.gen.wrapping_add(1);
            w.free.clear();
            let spare = std::mem::take(&mut w.spare);
            std::mem::replace(&mut w.tasks, spare)
        };
        for waker in tasks.drain(..).flatten() {
            waker.wake();
        }
        let mut w = lock(&self.inner.waiters);
        if w.spare.capacity() < tasks.capacity() {
            w.spare = tasks;
        }
    }

    /// Whether the `SLEEPERS` bit is set: some waiter registered since the
    /// last slow-path notify (with it clear, `notify` is one `fetch_add`).
    #[cfg(test)]
    pub(crate) fn has_sleepers(&self) -> bool {
        self.inner.state.load(Ordering::Acquire) & SLEEPERS != 0
    }

    /// A future that completes once the epoch differs from `seen`.
    pub fn wait(&self, seen: u64) -> SignalWait {
        SignalWait {
            signal: self.clone(),
            seen,
            reg: None,
        }
    }
}

/// Future returned by [`Signal::wait`]: completes once the epoch differs
/// from the one it was created with. Dropping it unregisters its waker.
#[derive(Debug)]
pub struct SignalWait {
    signal: Signal,
    seen: u64,
    /// (generation, index) of this future's entry in the task list.
    reg: Option<(u64, usize)>,
}

impl SignalWait {
    fn unregister(&mut self) {
        if let Some((gen, idx)) = self.reg.take() {
            let mut w = lock(&self.signal.inner.waiters);
            if w.gen == gen {
                if let Some(entry) = w.tasks.get_mut(idx) {
                    if entry.take().is_some() {
                        w.free.push(idx);
                    }
                }
            }
        }
    }
}

impl Future for SignalWait {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.epoch() != self.seen {
            self.unregister();
            return Poll::Ready(());
        }
        let this = &mut *self;
        let inner = &this.signal.inner;
        let mut w = lock(&inner.waiters);
        let prev = inner.state.fetch_or(SLEEPERS, Ordering::AcqRel);
        if prev >> 1 != this.seen {
            drop(w);
            this.unregister();
            return Poll::Ready(());
        }
        let gen = w.gen;
        match this.reg {
            Some((g, idx)) if g == gen => {
                if let Some(entry) = w.tasks.get_mut(idx) {
                    match entry {
                        Some(old) if old.will_wake(cx.waker()) => {}
                        _ => *entry = Some(cx.waker().clone()),
                    }
                }
            }
            _ => {
                let waker = Some(cx.waker().clone());
                let reused = w.free.pop().and_then(|idx| {
                    let entry = w.tasks.get_mut(idx)?;
                    *entry = waker.clone();
                    Some(idx)
                });
                let idx = match reused {
                    Some(idx) => idx,
                    None => {
                        w.tasks.push(waker);
                        w.tasks.len() - 1
                    }
                };
                this.reg = Some((gen, idx));
            }
        }
        Poll::Pending
    }
}

impl Drop for SignalWait {
    fn drop(&mut self) {
        self.unregister();
    }
}

/// A blocked-thread wait for the unit tests of this crate (the real one is
/// `arcly_blocking::BlockingWait`, outside core): polls [`SignalWait`] with
/// a waker that unparks the test thread.
#[cfg(all(test, not(loom)))]
pub(crate) fn test_wait_blocking(signal: &Signal, seen: u64, timeout: std::time::Duration) -> bool {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut wait = std::pin::pin!(signal.wait(seen));
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if wait.as_mut().poll(&mut cx).is_ready() {
            return true;
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::park_timeout(deadline - now);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn notify_without_waiters_stays_on_fast_path() {
        let s = Signal::new();
        s.notify();
        s.notify();
        assert_eq!(s.epoch(), 2);
        assert_eq!(s.inner.state.load(Ordering::SeqCst) & SLEEPERS, 0);
    }

    #[test]
    fn future_registers_once_and_is_woken() {
        let s = Signal::new();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut fut = Box::pin(s.wait(s.epoch()));
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        assert_eq!(
            lock(&s.inner.waiters).tasks.len(),
            1,
            "re-poll must not re-register"
        );
        s.notify();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(fut.as_mut().poll(&mut cx).is_ready());
        // After the slow path the bit is clear again: next notify is fast.
        assert_eq!(s.inner.state.load(Ordering::SeqCst) & SLEEPERS, 0);
    }

    #[test]
    fn dropped_future_unregisters() {
        let s = Signal::new();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        for _ in 0..100 {
            let mut fut = Box::pin(s.wait(s.epoch()));
            assert!(fut.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(lock(&s.inner.waiters).tasks.len(), 1, "entries are reused");
        s.notify();
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            0,
            "dropped futures are not woken"
        );
    }

    #[test]
    fn blocked_thread_times_out_and_wakes() {
        let s = Signal::new();
        let e = s.epoch();
        assert!(!test_wait_blocking(
            &s,
            e,
            std::time::Duration::from_millis(20)
        ));
        let s2 = s.clone();
        let t = std::thread::spawn(move || {
            test_wait_blocking(&s2, e, std::time::Duration::from_secs(10))
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        s.notify();
        assert!(t.join().unwrap());
        assert!(
            test_wait_blocking(&s, e, std::time::Duration::ZERO),
            "stale epoch returns at once"
        );
    }
}
