//! Synchronisation primitives of the engine, swapped for `loom` models under
//! `cfg(loom)` so that the model tests (`core/tests/loom_engine.rs`) explore
//! every interleaving of the ring publication protocol and the notifier.
//!
//! What changes under `cfg(loom)`:
//! - the protocol atomics (ring head, GOP start, latest start point, live flag,
//!   notifier state word) and the notifier's mutex come from `loom`;
//! - a ring [`Slot`] is a `loom` mutex around `Option<Arc<T>>` instead of an
//!   `arc_swap::ArcSwapOption<T>`: `arc-swap` has no loom support, so loom
//!   models the slot as what arc-swap guarantees, a linearizable atomic
//!   register of an `Arc`. Loom therefore checks the ordering between slot
//!   writes, the head sequence and the readers' sequence checks, but not
//!   arc-swap's own internals (its debt lists), which are covered by its own
//!   test-suite.
//!
//! `Arc` (std) and the statistics counters stay std types in both builds: the
//! counters are plain monotonic `Relaxed` counters that carry no ordering.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64};
#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

use std::sync::Arc;

/// Locks `m`, ignoring poisoning (the protected data stays consistent: every
/// critical section in the engine is panic-free).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// An atomic `Option<Arc<T>>`: lock-free loads and stores (arc-swap), or a
/// loom model of one (see the module documentation).
pub(crate) struct Slot<T> {
    #[cfg(not(loom))]
    inner: arc_swap::ArcSwapOption<T>,
    #[cfg(loom)]
    inner: Mutex<Option<Arc<T>>>,
}

impl<T> Slot<T> {
    /// An empty slot.
    pub(crate) fn empty() -> Self {
        Slot {
            #[cfg(not(loom))]
            inner: arc_swap::ArcSwapOption::empty(),
            #[cfg(loom)]
            inner: Mutex::new(None),
        }
    }

    /// The current value (one reference count increment).
    pub(crate) fn load(&self) -> Option<Arc<T>> {
        #[cfg(not(loom))]
        {
            self.inner.load_full()
        }
        #[cfg(loom)]
        {
            lock(&self.inner).clone()
        }
    }

    /// Replaces the value; the old one is dropped by the caller's thread.
    pub(crate) fn store(&self, value: Option<Arc<T>>) {
        #[cfg(not(loom))]
        {
            self.inner.store(value);
        }
        #[cfg(loom)]
        {
            let old = std::mem::replace(&mut *lock(&self.inner), value);
            drop(old);
        }
    }
}

impl<T> core::fmt::Debug for Slot<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Slot")
    }
}
