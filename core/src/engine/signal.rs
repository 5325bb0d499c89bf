//! A runtime-agnostic wake-up signal shared by async tasks (any executor) and
//! blocked threads.
//!
//! Invariant: a waiter that read epoch `e` and then waits for a change from
//! `e` is woken by any `notify` that happened after it read `e` — no lost
//! wake-ups.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

#[derive(Debug, Default)]
struct Inner {
    epoch: AtomicU64,
    wakers: Mutex<Vec<Waker>>,
    cond: Condvar,
}

/// A clonable handle to a stream's wake-up signal.
#[derive(Debug, Clone, Default)]
pub struct Signal {
    inner: Arc<Inner>,
}

impl Signal {
    /// A fresh signal at epoch 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current epoch; read it before checking for work, then wait from it.
    pub fn epoch(&self) -> u64 {
        self.inner.epoch.load(Ordering::Acquire)
    }

    /// Wakes every waiter.
    pub fn notify(&self) {
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
        let wakers = match self.inner.wakers.lock() {
            Ok(mut g) => std::mem::take(&mut *g),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        };
        for w in wakers {
            w.wake();
        }
        self.inner.cond.notify_all();
    }

    /// A future that completes once the epoch differs from `seen`.
    pub fn wait(&self, seen: u64) -> SignalWait {
        SignalWait {
            signal: self.clone(),
            seen,
        }
    }

    /// Blocks the thread until the epoch differs from `seen` or `timeout`
    /// passes; returns whether the epoch changed.
    pub fn wait_blocking(&self, seen: u64, timeout: Option<Duration>) -> bool {
        let guard = match self.inner.wakers.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let changed = |_: &mut Vec<Waker>| self.epoch() == seen;
        match timeout {
            Some(t) => match self.inner.cond.wait_timeout_while(guard, t, changed) {
                Ok((_g, _)) => self.epoch() != seen,
                Err(_) => self.epoch() != seen,
            },
            None => {
                drop(self.inner.cond.wait_while(guard, changed));
                self.epoch() != seen
            }
        }
    }
}

/// Future returned by [`Signal::wait`].
#[derive(Debug)]
pub struct SignalWait {
    signal: Signal,
    seen: u64,
}

impl Future for SignalWait {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.epoch() != self.seen {
            return Poll::Ready(());
        }
        let mut g = match self.signal.inner.wakers.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        // Re-check under the lock: `notify` bumps the epoch before taking it.
        if self.signal.epoch() != self.seen {
            return Poll::Ready(());
        }
        if !g.iter().any(|w| w.will_wake(cx.waker())) {
            g.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
